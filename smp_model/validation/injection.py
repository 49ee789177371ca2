"""Injection-recovery validation: are the fluxes unbiased and are their errors honest?

Three experiments, each a list of `Recovery` records summarised by `PullStats`
(pull = (fitted - true flux) / reported error):

* **single** (simulated): one point source injected with S/N 5-200 into simulated
  detections (`smp_model.simulation.detection`), isolated or on a galaxy, and fitted at its true
  position.  Many noise realisations share one scene model (`SceneModel.with_data`): the
  design does not depend on the data.  For a subset, a binary position search is run too
  and delta chi2 = chi2(single) - chi2(binary) is recorded: how often a single source looks
  binary at a given threshold.
* **binary** (simulated): two point sources (primary S/N 20-200, flux ratio 0.5-1),
  separations 2-4 px, and separately "close" pairs of 1-2 px, fitted with the full binary
  position search started from the truth rounded to 0.5 px.  Flux pulls of both components
  and pulls of the separation.
* **real**: point sources drawn with the real Piff PSF injected into real DES stamps.  For
  each detection of the sample, every other exposure with mostly usable pixels in turn is
  relabelled as the detection (the exposure that holds the TNO is left out), in memory:
  the sample is only read.  Sources of S/N 5-100 are injected at a ring of positions and
  fitted with the full scene model at the injected position.

Fluxes are counts on zeropoint 30; offsets are detection-exposure pixels from the WCS
position of the manifest (ra, dec), exact convention.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import StampError
from ..files import atomic_output
from ..fit.photometry import DetectionPhotometry
from ..inputs.manifest import DetectionManifest
from ..scene.exposures import DroppedExposureWarning
from ..settings import FitSettings
from ..simulation.config import SimulationConfig
from ..simulation.field import SimulatedField, build_field

__all__ = ["BINARY_FLUX_RATIO_RANGE", "BINARY_SNR_RANGE", "BLENDINGS", "CLOSE_PAIRS_PER_PAIR",
           "CLOSE_SEPARATION_RANGE_PX", "DELTA_CHI2_THRESHOLDS", "FieldBuilder",
           "INJECTIONS_PER_FIELD", "REAL_MIN_USABLE_FRACTION", "REAL_OFFSETS_PX",
           "REAL_SNR_RANGE",
           "SEPARATION_RANGE_PX", "SNR_BIN_EDGES", "SNR_RANGE", "START_ROUNDING_PX",
           "Progress", "PullStats", "Recovery", "SimulatedFieldFit", "ValidationReport",
           "binary_injections", "delta_chi2_summary", "log_uniform", "real_injections",
           "relabelled_manifests", "run_validation", "save_validation_figure",
           "single_injections", "validation_figure"]

SNR_RANGE = (5.0, 200.0)
BINARY_SNR_RANGE = (20.0, 200.0)            # of the primary
BINARY_FLUX_RATIO_RANGE = (0.5, 1.0)
SEPARATION_RANGE_PX = (2.0, 4.0)
CLOSE_SEPARATION_RANGE_PX = (1.0, 2.0)
# Close pairs fitted per 2-4 px pair.  A close pair's separation is quoted only where it is
# resolved (about a third of them), and telling a 0.3 sigma bias from noise on one seed
# takes some 80 resolved pairs (a statistical error of 0.11 sigma): the 30 close pairs of
# 120 that a quarter gave left 7-10, whose mean scattered by +-0.3 sigma.
CLOSE_PAIRS_PER_PAIR = 2
REAL_SNR_RANGE = (5.0, 100.0)
# Injection positions in real stamps: 6 px apart, so neighbours share little noise.
REAL_OFFSETS_PX = ((0, 0), (6, 0), (-6, 0), (0, 6), (0, -6), (6, 6), (-6, 6), (6, -6),
                   (-6, -6))
REAL_MIN_USABLE_FRACTION = 0.5
START_ROUNDING_PX = 0.5
DELTA_CHI2_THRESHOLDS = (4.0, 9.0, 16.0, 25.0)
SNR_BIN_EDGES = (5.0, 10.0, 20.0, 50.0, 100.0, 200.0)
INJECTIONS_PER_FIELD = 25                   # simulated fields are reused this often
BLENDINGS = {"isolated": dict(galaxy=False),
             "on_galaxy": dict(galaxy=True, galaxy_distance_px=1.0)}

Progress = Callable[[float, str], None]
FieldBuilder = Callable[[SimulationConfig], SimulatedField]


# -- statistics -------------------------------------------------------------------------


@dataclass(frozen=True)
class Recovery:
    """One injected flux and its recovery.  ``kind``: 'single', 'binary', 'close_binary'
    or 'real'; ``label``: blending or exposure; fluxes ZP30; separations px; ``delta_chi2``
    only for single injections that were also fitted as binaries."""

    kind: str
    label: str
    true_flux: float
    flux: float
    flux_err: float
    true_separation: float = math.nan
    separation: float = math.nan
    separation_err: float = math.nan
    separation_debiased: float = math.nan
    delta_chi2: float = math.nan
    flux_err_with_positions: float = math.nan
    # binaries: the pair (on both records of a pair) and the engine's `unresolved` flag
    true_total_flux: float = math.nan
    total_flux: float = math.nan
    total_flux_err: float = math.nan
    total_flux_debiased: float = math.nan
    unresolved: bool = False

    @property
    def pull(self) -> float:
        return (self.flux - self.true_flux) / self.flux_err

    @property
    def pull_with_positions(self) -> float:
        """Pull with the error that includes the fitted positions' uncertainty."""
        return (self.flux - self.true_flux) / self.flux_err_with_positions

    @property
    def snr(self) -> float:
        """True S/N: injected flux over the reported error."""
        return self.true_flux / self.flux_err

    @property
    def separation_pull(self) -> float:
        """Pull of the fitted (least-squares) separation."""
        return (self.separation - self.true_separation) / self.separation_err

    @property
    def separation_debiased_pull(self) -> float:
        """Pull of the separation less its first-order bias (what users quote)."""
        return (self.separation_debiased - self.true_separation) / self.separation_err

    @property
    def total_flux_pull(self) -> float:
        return (self.total_flux - self.true_total_flux) / self.total_flux_err

    @property
    def total_flux_debiased_pull(self) -> float:
        """Pull of the pair's flux less its first-order bias (what users quote)."""
        return (self.total_flux_debiased - self.true_total_flux) / self.total_flux_err


@dataclass(frozen=True)
class PullStats:
    """Mean (``bias_sigma``) and standard deviation of pulls, and the fraction with
    ``|pull| < 1`` (``coverage_1sigma``; 0.683 for honest Gaussian errors)."""

    n: int
    bias_sigma: float
    pull_std: float
    coverage_1sigma: float

    @classmethod
    def of(cls, pulls: Sequence[float]) -> "PullStats":
        p = np.asarray(pulls, float)
        p = p[np.isfinite(p)]
        if p.size == 0:
            return cls(0, math.nan, math.nan, math.nan)
        return cls(n=int(p.size), bias_sigma=float(p.mean()),
                   pull_std=float(p.std(ddof=1)) if p.size > 1 else math.nan,
                   coverage_1sigma=float(np.mean(np.abs(p) < 1)))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def delta_chi2_summary(values: Sequence[float]) -> dict:
    """Distribution of delta chi2 for single sources: quantiles and the fraction above each
    of `DELTA_CHI2_THRESHOLDS` (the false-binary rate at that threshold)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"n": 0}
    return {"n": int(v.size), "median": float(np.median(v)),
            "p90": float(np.quantile(v, 0.9)), "p99": float(np.quantile(v, 0.99)),
            "fraction_above": {f"{t:g}": float(np.mean(v > t))
                               for t in DELTA_CHI2_THRESHOLDS}}


def _flux_section(records: Sequence[Recovery]) -> dict:
    return PullStats.of([r.pull for r in records]).to_dict()


def _grouped(records: Sequence[Recovery], key: Callable[[Recovery], str]) -> dict:
    groups: dict[str, list[Recovery]] = {}
    for r in records:
        groups.setdefault(key(r), []).append(r)
    return {k: _flux_section(v) for k, v in groups.items()}


def _snr_bin(r: Recovery) -> str:
    edges = SNR_BIN_EDGES
    i = int(np.clip(np.searchsorted(edges, r.snr, side="right") - 1, 0, len(edges) - 2))
    return f"{edges[i]:g}-{edges[i + 1]:g}"


def _binary_section(records: Sequence[Recovery]) -> dict:
    """Pulls of a set of binaries (two records per pair, primary first): component
    fluxes with the published error (top level) and with ``flux_err_total``
    (``with_position_errors``); ``total_flux`` and ``total_flux_debiased`` (the pair's
    flux to quote) of every pair, with ``total_flux_err``; and what users are told to
    quote: ``recommended``, the components of the pairs not flagged ``unresolved`` with
    ``flux_err_total`` and their debiased separations (``separation``; the least-squares
    ones in ``separation_fitted``), with the flagged fraction.  The top-level
    ``separation_*`` numbers are of every pair's least-squares separation, unresolved
    pairs included, whose separations are not measurements."""
    section = _flux_section(records)
    section["with_position_errors"] = PullStats.of(
        [r.pull_with_positions for r in records]).to_dict()
    pairs = records[::2]   # pair-level numbers are on both records of a pair
    section["total_flux"] = PullStats.of([r.total_flux_pull for r in pairs]).to_dict()
    section["total_flux_debiased"] = PullStats.of(
        [r.total_flux_debiased_pull for r in pairs]).to_dict()
    resolved = [r for r in records if not r.unresolved]
    section["recommended"] = dict(
        PullStats.of([r.pull_with_positions for r in resolved]).to_dict(),
        unresolved_fraction=float(np.mean([r.unresolved for r in pairs])) if pairs else math.nan,
        separation=PullStats.of([r.separation_debiased_pull for r in resolved[::2]]).to_dict(),
        separation_fitted=PullStats.of([r.separation_pull for r in resolved[::2]]).to_dict())
    # one separation per pair: the primary's record carries it
    seps = [r for r in pairs if np.isfinite(r.separation_pull)]
    stats = PullStats.of([r.separation_pull for r in seps])
    section.update(separation_pull_std=stats.pull_std, separation_bias_sigma=stats.bias_sigma,
                   separation_coverage_1sigma=stats.coverage_1sigma, n_pairs=len(records) // 2,
                   n_pairs_without_position_errors=len(pairs) - len(seps))
    return section


@dataclass(frozen=True, eq=False)
class ValidationReport:
    """All recoveries of a validation run; `summary` is the ``--json`` document."""

    single: tuple[Recovery, ...]
    binary: tuple[Recovery, ...] | None = None
    close_binary: tuple[Recovery, ...] | None = None
    real: tuple[Recovery, ...] | None = None

    def summary(self) -> dict:
        single = _flux_section(self.single)
        by_snr = sorted(self.single, key=lambda r: r.snr)
        single.update(by_snr=_grouped(by_snr, _snr_bin),
                      by_blending=_grouped(sorted(self.single, key=lambda r: r.label),
                                           lambda r: r.label),
                      delta_chi2=delta_chi2_summary([r.delta_chi2 for r in self.single]))
        binary = None
        if self.binary is not None:
            binary = _binary_section(self.binary)
            binary["separation_range_px"] = list(SEPARATION_RANGE_PX)
            if self.close_binary:
                binary["close_pairs"] = dict(_binary_section(self.close_binary),
                                             separation_range_px=list(
                                                 CLOSE_SEPARATION_RANGE_PX))
        real = None
        if self.real is not None:
            real = _flux_section(self.real)
            name = lambda r: r.label.split("/")[0]   # noqa: E731
            real["by_detection"] = _grouped(sorted(self.real, key=name), name)
        return {"single": single, "binary": binary, "real": real}


# -- simulated injections ---------------------------------------------------------------


def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """A draw uniform in log between ``lo`` and ``hi`` (S/N ranges of the injections)."""
    return float(np.exp(rng.uniform(math.log(lo), math.log(hi))))


@dataclass(eq=False)
class SimulatedFieldFit:
    """A simulated field written once (without target, noiseless) and modelled once; each
    `realisation` is a new target and new noise fitted through the same scene model."""

    sim: SimulatedField
    phot: DetectionPhotometry

    @classmethod
    def create(cls, config: SimulationConfig, workdir: Path,
               settings: FitSettings = FitSettings(),
               builder: FieldBuilder = build_field,
               defects: Callable[[SimulatedField], None] | None = None) -> "SimulatedFieldFit":
        """Simulate ``config`` in a new folder under ``workdir`` and model it; ``builder``
        makes the field (`build_field`, or one that draws with a PSFEx model:
        `smp_model.simulation.psfex.build_psfex_field`); ``defects`` may change the
        simulated exposures (their masks) before they are written.  An exposure the loader
        drops (`DroppedExposureWarning`) is left out of the scene, as in a user's fit."""
        sim = builder(config)
        if defects is not None:
            defects(sim)
        folder = workdir / f"field-{config.seed}-{len(list(workdir.iterdir()))}"
        manifest = sim.write(folder, sim.realise(np.random.default_rng(0), noise=False))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DroppedExposureWarning)
            phot = DetectionPhotometry(manifest, settings)
        return cls(sim, phot)

    def flux_errors(self, offsets) -> np.ndarray:
        """Reported 1-sigma flux errors (ZP30) of sources at ``offsets`` (n_t, 2); they do
        not depend on the data."""
        return np.sqrt(np.diag(self.phot.scene.solve(offsets).target_covariance))

    def realisation(self, rng: np.random.Generator, fluxes, offsets,
                    gain: float | None = None) -> DetectionPhotometry:
        """Target of ``fluxes`` (ZP30) at ``offsets`` (n_t, 2) px plus new noise (with
        source Poisson noise when ``gain``, electrons per SCI count, is given)."""
        sources = self.sim.target_sources(fluxes, offsets)
        stamps = self.sim.realise(rng, sources, gain=gain)
        by_expnum = {ex.truth.expnum: sci * ex.flux_scale
                     for sci, ex in zip(stamps, self.sim.exposures)}
        return self.phot.with_images([by_expnum[ex.entry.expnum] for ex in self.phot.exposures])


def _fields(configs: Sequence[SimulationConfig], workdir: Path, progress: Progress | None,
            what: str, builder: FieldBuilder = build_field) -> list[SimulatedFieldFit]:
    fields = []
    for k, config in enumerate(configs):
        if progress:
            progress(k / len(configs), f"{what}: simulating field {k + 1}/{len(configs)}")
        fields.append(SimulatedFieldFit.create(config, workdir, builder=builder))
    return fields


def _n_fields(n: int) -> int:
    return max(1, math.ceil(n / INJECTIONS_PER_FIELD))


def single_injections(n: int, seed: int, workdir: Path, n_delta_chi2: int | None = None,
                      progress: Progress | None = None, builder: FieldBuilder = build_field
                      ) -> list[Recovery]:
    """``n`` single-source injections alternating isolated / on-galaxy fields (made by
    ``builder``); the first ``n_delta_chi2`` (default all) are also fitted as binaries for
    delta chi2."""
    rng = np.random.default_rng([seed, 1])
    per_blending = {name: _fields([SimulationConfig(seed=seed * 1000 + 10 * k + b, **opts)
                                   for k in range(_n_fields(n / len(BLENDINGS)))],
                                  workdir, progress, f"single ({name})", builder)
                    for b, (name, opts) in enumerate(BLENDINGS.items())}
    n_delta_chi2 = n if n_delta_chi2 is None else n_delta_chi2
    names = list(BLENDINGS)
    records = []
    for i in range(n):
        name = names[i % len(names)]
        fields = per_blending[name]
        field_fit = fields[(i // len(names)) % len(fields)]
        offset = rng.uniform(-0.5, 0.5, (1, 2))
        flux = log_uniform(rng, *SNR_RANGE) * field_fit.flux_errors(offset)[0]
        phot = field_fit.realisation(rng, [flux], offset)
        solution = phot.scene.solve(offset)
        delta = math.nan
        if i < n_delta_chi2:
            (dx, dy), = offset
            with warnings.catch_warnings():
                # a spurious secondary often sits where chi2 is flat: position errors NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                fit = phot.optimize_binary((dx - 0.5, dx + 0.5, dy - 0.5, dy + 0.5))
            delta = fit.delta_chi2
        records.append(Recovery("single", name, flux, float(solution.target[0]),
                                float(math.sqrt(solution.target_covariance[0, 0])),
                                delta_chi2=delta))
        if progress and (i + 1) % 10 == 0:
            progress((i + 1) / n, f"single injections: {i + 1}/{n}")
    return records


def binary_injections(n: int, seed: int, workdir: Path, separation_range=SEPARATION_RANGE_PX,
                      kind: str = "binary", progress: Progress | None = None,
                      builder: FieldBuilder = build_field) -> list[Recovery]:
    """``n`` binary injections (two records each, primary first) with separations drawn
    uniformly in ``separation_range`` px, fitted with the binary position search."""
    rng = np.random.default_rng([seed, 2, int(10 * separation_range[0])])
    names = list(BLENDINGS)
    per_blending = {name: _fields([SimulationConfig(seed=seed * 1000 + 500 + 10 * k + b,
                                                    **opts)
                                   for k in range(_n_fields(n / len(names)))],
                                  workdir, progress, f"{kind} ({name})", builder)
                    for b, (name, opts) in enumerate(BLENDINGS.items())}
    records = []
    for i in range(n):
        name = names[i % len(names)]
        fields = per_blending[name]
        field_fit = fields[(i // len(names)) % len(fields)]
        records.extend(_one_binary(field_fit, rng, separation_range, kind, name))
        if progress and (i + 1) % 10 == 0:
            progress((i + 1) / n, f"{kind} injections: {i + 1}/{n}")
    return records


def _one_binary(field_fit: SimulatedFieldFit, rng: np.random.Generator,
                separation_range, kind: str, label: str) -> list[Recovery]:
    separation = rng.uniform(*separation_range)
    angle = rng.uniform(0.0, 2 * math.pi)
    ratio = rng.uniform(*BINARY_FLUX_RATIO_RANGE)
    centre = rng.uniform(-0.5, 0.5, 2)
    primary_flux = log_uniform(rng, *BINARY_SNR_RANGE) * field_fit.flux_errors(
        centre[None, :])[0]
    fluxes = np.array([primary_flux, ratio * primary_flux])
    step = separation * np.array([math.cos(angle), math.sin(angle)])
    first = centre - step * fluxes[1] / fluxes.sum()   # photocentre at `centre`
    offsets = np.array([first, first + step])
    phot = field_fit.realisation(rng, fluxes, offsets)
    start = np.round(offsets / START_ROUNDING_PX) * START_ROUNDING_PX
    fit = phot.optimize_binary((start[0, 0], start[1, 0], start[0, 1], start[1, 1]))
    order = _match(fit.offsets, offsets)
    return [Recovery(kind, label, float(fluxes[t]), fit.sources[s].flux,
                     fit.sources[s].flux_err, true_separation=float(separation),
                     separation=fit.separation_px, separation_err=fit.separation_err_px,
                     separation_debiased=fit.separation_debiased_px,
                     flux_err_with_positions=fit.sources[s].flux_err_total,
                     true_total_flux=float(fluxes.sum()), total_flux=fit.total_flux,
                     total_flux_err=fit.total_flux_err,
                     total_flux_debiased=fit.total_flux_debiased, unresolved=fit.unresolved)
            for t, s in enumerate(order)]


def _match(fitted: np.ndarray, true: np.ndarray) -> tuple[int, int]:
    """Order of the fitted sources that best matches the true ones (by position)."""
    direct = np.hypot(*(fitted - true).T).sum()
    swapped = np.hypot(*(fitted[::-1] - true).T).sum()
    return (0, 1) if direct <= swapped else (1, 0)


# -- real-data injections ---------------------------------------------------------------


def relabelled_manifests(sample: Path) -> list[DetectionManifest]:
    """For every ``*/detection.toml`` under ``sample``: one manifest per other exposure,
    relabelled as the detection, without the exposure that holds the moving object.
    In memory only; the sample is never written."""
    out = []
    for path in sorted(Path(sample).glob("*/detection.toml")):
        manifest = DetectionManifest.read(path)
        others = tuple(e for e in manifest.exposures if e != manifest.detection_exposure)
        for entry in others:
            out.append(dataclasses.replace(manifest, exposures=others,
                                           detection_expnum=entry.expnum,
                                           detection_ccdnum=entry.ccdnum))
    return out


def real_injections(sample: Path, n: int, seed: int, progress: Progress | None = None
                    ) -> list[Recovery]:
    """Up to ``n`` injections of Piff-PSF point sources into real stamps (see module doc);
    the relabelled detections are used round-robin over the sample's objects."""
    rng = np.random.default_rng([seed, 3])
    candidates = _interleave_by_object(relabelled_manifests(sample))
    needed = math.ceil(n / len(REAL_OFFSETS_PX))
    records: list[Recovery] = []
    used = 0
    for manifest in candidates:
        if len(records) >= n or used >= needed:
            break
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DroppedExposureWarning)
                phot = DetectionPhotometry(manifest)
        except StampError:   # e.g. an all-masked exposure as the detection
            continue
        if phot.scene.detection.usable_fraction < REAL_MIN_USABLE_FRACTION:
            continue
        used += 1
        label = f"{manifest.name}/{manifest.detection_expnum}"
        for offset in REAL_OFFSETS_PX[:n - len(records)]:
            records.append(_inject_real(phot, rng, np.array([offset], float), label))
        if progress:
            progress(len(records) / n, f"real injections: {len(records)}/{n} ({label})")
    return records


def _interleave_by_object(manifests: list[DetectionManifest]) -> list[DetectionManifest]:
    """Round-robin over the objects, so that a few candidates already cover all of them."""
    by_name: dict[str, list[DetectionManifest]] = {}
    for m in manifests:
        by_name.setdefault(m.name, []).append(m)
    rounds = itertools.zip_longest(*by_name.values())
    return [m for group in rounds for m in group if m is not None]


def _inject_real(phot: DetectionPhotometry, rng: np.random.Generator, offset: np.ndarray,
                 label: str) -> Recovery:
    scene = phot.scene
    det = scene.detection
    centre = scene.target_centers(offset)[0]
    flux = log_uniform(rng, *REAL_SNR_RANGE) * math.sqrt(
        scene.solve(offset).target_covariance[0, 0])
    source = flux * det.psf.draw(*centre, origin=det.origin, shape=det.shape, center=centre)
    images = [ex.image + (source if m == scene.detection_index else 0.0)
              for m, ex in enumerate(scene.exposures)]
    solution = scene.with_data(images).solve(offset)
    return Recovery("real", label, flux, float(solution.target[0]),
                    float(math.sqrt(solution.target_covariance[0, 0])))


# -- the whole run ----------------------------------------------------------------------


def run_validation(n: int = 200, *, seed: int = 0, binary: bool = False,
                   real: str | Path | None = None, n_delta_chi2: int | None = None,
                   n_binary: int | None = None, n_real: int | None = None,
                   progress: Progress | None = None,
                   builder: FieldBuilder = build_field) -> ValidationReport:
    """Run the experiments: ``n`` single injections (the first ``n_delta_chi2``, default
    all, also fitted as binaries); with ``binary`` also ``n_binary`` (default ``n``) binary
    pairs 2-4 px apart and `CLOSE_PAIRS_PER_PAIR` times as many 1-2 px apart; with
    ``real`` (the DES sample folder) up to ``n_real`` (default ``n``) real-data
    injections.  ``builder`` makes the simulated
    fields (default `build_field`: analytic PSFs).  Simulated files live in a temporary
    folder that is removed afterwards."""
    n_binary = n if n_binary is None else n_binary
    n_real = n if n_real is None else n_real
    if min(n, n_binary, n_real) < 1:
        raise ValueError(f"injection counts must be >= 1, got {n}, {n_binary}, {n_real}")
    with tempfile.TemporaryDirectory(prefix="smp-validate-") as tmp:
        workdir = Path(tmp)
        single = single_injections(n, seed, workdir, n_delta_chi2, progress, builder)
        wide = close = None
        if binary:
            wide = binary_injections(n_binary, seed, workdir, progress=progress,
                                     builder=builder)
            close = binary_injections(CLOSE_PAIRS_PER_PAIR * n_binary, seed, workdir,
                                      CLOSE_SEPARATION_RANGE_PX, "close_binary", progress,
                                      builder)
    real_records = real_injections(Path(real), n_real, seed, progress) if real else None
    return ValidationReport(single=tuple(single),
                            binary=tuple(wide) if wide is not None else None,
                            close_binary=tuple(close) if close is not None else None,
                            real=tuple(real_records) if real_records is not None else None)


# -- figure ---------------------------------------------------------------------------


def validation_figure(report: ValidationReport):
    """Pull histograms (top) and recovered vs injected flux (bottom) of each experiment."""
    from matplotlib.figure import Figure

    sets = [("single", report.single), ("binary (>= 2 px)", report.binary),
            ("close binary (< 2 px)", report.close_binary), ("real DES stamps", report.real)]
    sets = [(title, records) for title, records in sets if records]
    fig = Figure(figsize=(4.2 * len(sets), 8.0), layout="constrained")
    axes = fig.subplots(2, len(sets), squeeze=False)
    grid = np.linspace(-5, 5, 201)
    for col, (title, records) in enumerate(sets):
        pulls = np.array([r.pull for r in records])
        stats = PullStats.of(pulls)
        ax = axes[0, col]
        ax.hist(np.clip(pulls, -5, 5), bins=np.linspace(-5, 5, 41), density=True,
                color="0.7", edgecolor="0.3")
        ax.plot(grid, np.exp(-grid ** 2 / 2) / math.sqrt(2 * math.pi), "k-", lw=1,
                label="N(0, 1)")
        if records[0].kind in ("binary", "close_binary"):
            # what users are told to quote: resolved components with flux_err_total,
            # the pair's total flux for every pair
            for label, values, color in (
                    ("resolved, flux_err_total",
                     [r.pull_with_positions for r in records if not r.unresolved], "C0"),
                    ("pair total flux", [r.total_flux_pull for r in records[::2]], "C1")):
                values = np.asarray(values, float)
                values = values[np.isfinite(values)]
                if values.size:
                    ax.hist(np.clip(values, -5, 5), bins=np.linspace(-5, 5, 41), density=True,
                            histtype="step", color=color, label=label)
        ax.set_title(f"{title}\nn={stats.n} bias={stats.bias_sigma:+.2f}σ "
                     f"std={stats.pull_std:.2f} cov={100 * stats.coverage_1sigma:.0f}%",
                     fontsize=9)
        ax.set_xlabel("(flux − true) / σ")
        ax.legend(fontsize=8)
        ax = axes[1, col]
        true = np.array([r.true_flux for r in records])
        flux = np.array([r.flux for r in records])
        unresolved = np.array([r.unresolved for r in records])
        for keep, color in ((~unresolved, "k"), (unresolved, "0.65")):
            if keep.any():
                ax.errorbar(true[keep], flux[keep],
                            yerr=np.array([r.flux_err for r in records])[keep], fmt=".", ms=3,
                            lw=0.5, color=color,
                            label="unresolved (quote the total)" if color != "k" else None)
        if unresolved.any():
            ax.legend(fontsize=8)
        shown = np.concatenate([true, flux[flux > 0]])
        lo, hi = shown.min() * 0.7, shown.max() * 1.4
        ax.plot([lo, hi], [lo, hi], "r-", lw=1)
        ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi),
               xlabel="injected flux (ZP 30)", ylabel="recovered flux (ZP 30)")
        if np.any(flux <= 0):
            ax.set_title(f"{int(np.sum(flux <= 0))} recovered flux(es) <= 0 not shown",
                         fontsize=8)
    return fig


def save_validation_figure(report: ValidationReport, path: str | Path,
                           overwrite: bool = False) -> Path:
    """Write `validation_figure` (format from the extension, e.g. PNG) atomically."""
    fig = validation_figure(report)
    with atomic_output(path, overwrite) as tmp:
        fig.savefig(tmp, dpi=110)
    return Path(path)
