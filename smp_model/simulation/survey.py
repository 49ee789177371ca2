"""A small simulated survey to try the survey view on: a few moving objects, each detected
8-24 times over four years, written with the detection simulator (`smp_model.simulation.detection`).

`simulate_survey(outdir)` writes::

    OUTDIR/detections.ecsv           the batch list (column ``manifest``, relative paths)
    OUTDIR/truth.ecsv                per detection: key, object, band, mjd, true flux/mag
    OUTDIR/objects.json              per object: what was injected (period, amplitude, ...)
    OUTDIR/<object>/<nn>/detection.toml, stamps/, psfs/, zeropoints.ecsv, truth.json

The objects (`SURVEY_OBJECTS`):

* ``rotator``: a rotational light curve, ``mag(t) = mag0 + (amplitude / 2) sin(2 pi (t -
  t0) / period)`` with a known period (hours) and peak-to-peak amplitude (mag);
* ``binary``: a resolved-ish binary (separation 3 px, flux ratio 0.8) in every detection;
* ``flagged``: constant, but one detection has one exposure entirely masked (its MSK plane
  all bad), which the fit drops and flags (`exposure_dropped` of `smp_model.outputs.columns.FLAGS`);
* ``steady``: constant brightness.

Each detection is observed in band r or i (i 0.3 mag brighter; the rotator in r only, so
that its folded light curve reads at a glance), at an MJD drawn over
2013-2017; every exposure of a manifest carries an ``mjd`` key (the detection exposure
the detection's MJD), and every stamp the ``MJD-OBS`` card.  Magnitudes are on zeropoint
30 (``mag = 30 - 2.5 log10 flux``); deterministic in ``seed``.
"""
from __future__ import annotations

import json
import math
import os
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from ..files import atomic_write
from ..inputs.mask_bits import mask_bit
from .detection import check_output_dir, simulate_detection

__all__ = ["BAND_OFFSET_MAG", "MASK_ALL_BAD", "MJD_RANGE", "SURVEY_DEMO_BATCH",
           "SURVEY_DEMO_VERSION", "SURVEY_OBJECTS", "SurveyObject", "simulate_survey",
           "survey_demo_batch_path"]

MJD_RANGE = (56530.0, 58000.0)        # DES Y1-Y5 seasons, roughly
BAND_OFFSET_MAG = {"r": 0.0, "i": -0.3}
MASK_ALL_BAD = mask_bit("BPM")        # DES BADPIX bit used for the flagged exposure


@dataclass(frozen=True)
class SurveyObject:
    """One simulated moving object.  mag0: mean r magnitude (ZP30).  period_hours,
    amplitude_mag: rotational light curve (amplitude peak to peak; 0: none)."""
    name: str
    n_detections: int
    mag0: float
    period_hours: float = 0.0
    amplitude_mag: float = 0.0
    binary: bool = False
    flagged_detection: int | None = None   # index of the detection with a masked exposure
    bands: tuple[str, ...] = ("r", "i")

    def mag(self, band: str, mjd: float, t0: float = MJD_RANGE[0]) -> float:
        mag = self.mag0 + BAND_OFFSET_MAG[band]
        if self.amplitude_mag and self.period_hours:
            phase = 2 * math.pi * (mjd - t0) * 24.0 / self.period_hours
            mag += 0.5 * self.amplitude_mag * math.sin(phase)
        return mag


SURVEY_OBJECTS = (
    SurveyObject("rotator", 24, 20.9, period_hours=7.3, amplitude_mag=0.6, bands=("r",)),
    SurveyObject("binary", 10, 21.0, binary=True),
    SurveyObject("flagged", 10, 21.2, flagged_detection=4),
    SurveyObject("steady", 8, 21.4),
)


def simulate_survey(outdir: str | os.PathLike, *, seed: int = 0, overwrite: bool = False,
                    objects: tuple[SurveyObject, ...] = SURVEY_OBJECTS,
                    n_exposures: int = 4, progress=None) -> Table:
    """Write the survey (see the module docstring); returns the truth table.

    ``progress(done, total)`` is called after each detection."""
    outdir = Path(outdir).absolute()
    check_output_dir(outdir, overwrite)
    outdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 16])
    total = sum(o.n_detections for o in objects)
    rows, manifests, done = [], [], 0
    for number, obj in enumerate(objects):
        mjds = np.sort(rng.uniform(*MJD_RANGE, obj.n_detections))
        bands = rng.choice(list(obj.bands), obj.n_detections)
        for k, (mjd, band) in enumerate(zip(mjds, bands)):
            mag = obj.mag(str(band), float(mjd))
            flux = 10 ** (-0.4 * (mag - 30.0))
            folder = outdir / obj.name / f"{k:02d}"
            truth = simulate_detection(
                folder, overwrite=overwrite, seed=seed * 1000 + number * 100 + k,
                n_exposures=n_exposures, binary=obj.binary, separation_px=3.0,
                flux=flux / 1.8 if obj.binary else flux, flux_ratio=0.8,
                name=obj.name, band=str(band))
            flagged = obj.flagged_detection == k
            _stamp_times(truth, float(mjd), rng, flagged)
            manifests.append(str(truth.manifest_path.relative_to(outdir)))
            key = f"{obj.name}_{truth.detection_expnum}_{truth.detection_ccdnum}"
            rows.append((key, obj.name, str(band), float(mjd), flux, mag, obj.binary,
                         flagged))
            done += 1
            if progress:
                progress(done, total)
    truth_table = Table(rows=rows, names=("key", "name", "band", "mjd", "flux", "mag",
                                          "binary", "flagged_exposure"))
    truth_table["flux"].description = "true total flux of the target, zeropoint 30"
    truth_table.meta = {"seed": seed, "objects": [asdict(o) for o in objects]}
    atomic_write(outdir / "truth.ecsv", lambda tmp: truth_table.write(
        tmp, format="ascii.ecsv", overwrite=True), overwrite=True)
    listing = Table({"manifest": manifests})
    atomic_write(outdir / "detections.ecsv", lambda tmp: listing.write(
        tmp, format="ascii.ecsv", overwrite=True), overwrite=True)
    atomic_write(outdir / "objects.json", lambda tmp: tmp.write_text(json.dumps(
        [asdict(o) for o in objects], indent=2) + "\n"), overwrite=True)
    return truth_table


def _stamp_times(truth, mjd: float, rng: np.random.Generator, flagged: bool) -> None:
    """Give every exposure of a simulated detection an MJD (manifest ``mjd`` key and stamp
    ``MJD-OBS``), the detection's being ``mjd``; with ``flagged`` mask one template
    exposure entirely."""
    import tomli_w
    path = Path(truth.manifest_path)
    doc = tomllib.loads(path.read_text())
    det = (truth.detection_expnum, truth.detection_ccdnum)
    templates = [e for e in doc["exposures"] if (e["expnum"], e["ccdnum"]) != det]
    for entry in doc["exposures"]:
        is_detection = (entry["expnum"], entry["ccdnum"]) == det
        entry["mjd"] = mjd if is_detection else float(rng.uniform(*MJD_RANGE))
        stamp = path.parent / entry["stamp"]
        with fits.open(stamp, mode="update") as hdus:
            hdus[0].header["MJD-OBS"] = (entry["mjd"], "simulated time of the exposure")
            if flagged and entry is templates[0]:
                hdus["MSK"].data[:] = MASK_ALL_BAD
    atomic_write(path, lambda tmp: tmp.write_bytes(tomli_w.dumps(doc).encode()),
                 overwrite=True)


# -- the app's survey demo ------------------------------------------------------------------

SURVEY_DEMO_VERSION = "survey-demo-v2"
SURVEY_DEMO_BATCH = dict(binary_search_if=25.0)   # `smp batch ... --binary-search-if 25`


def survey_demo_batch_path(progress=None, workers: int | None = None) -> Path:
    """The batch output of the simulated survey in the user cache
    (`smp_model.simulation.demo.cache_dir`), simulated and fitted on first use (a few minutes:
    `smp batch` with ``--binary-search-if 25`` on a local cluster).  ``progress(text)``
    reports the steps."""
    from ..batch.items import read_batch_list
    from ..batch.run import open_client, run_batch
    from ..batch.worker import BatchOptions
    from .demo import cache_dir
    folder = cache_dir() / SURVEY_DEMO_VERSION
    out = folder / "fluxes.ecsv"
    if out.is_file():
        return out
    say = progress or (lambda text: None)
    listing = folder / "detections.ecsv"
    if not listing.is_file():
        say(f"simulating the survey ({sum(o.n_detections for o in SURVEY_OBJECTS)} "
            "detections)")
        simulate_survey(folder, overwrite=True,
                        progress=lambda done, total: say(f"simulated {done}/{total}"))
    say("fitting the survey with smp batch (a few minutes, once)")
    run_batch(read_batch_list(listing), out, BatchOptions(**SURVEY_DEMO_BATCH),
              client_factory=lambda: open_client(workers=workers), list_path=listing,
              on_outcome=lambda outcome, report: say(
                  f"fitted {report.finished}/{report.total}"))
    return out
