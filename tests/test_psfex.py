"""PSFEx PSFs (issue 24): a manifest entry names a PSFEx model and its CCD's WCS header;
the engine reads it with GalSim's DES_PSFEx, simulates detections drawn from it, fits them
with every PSF normalisation and validates the fluxes.  Uses the real DECam PSFEx model
in ../shared/vendor/galsim-des-data (exposure 154912, CCD 12, Y band)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from smp_model.cli.command import main
from smp_model.errors import ManifestError, PSFError
from smp_model.inputs.manifest import DetectionManifest
from smp_model.psf.models import PSFExPSF, load_psf
from smp_model.psf.oversampled import OversampledPSF
from smp_model.simulation.truth import SimulationTruth

DATA = Path(__file__).resolve().parents[2] / "shared" / "vendor" / "galsim-des-data"
PSFEX = DATA / "DECam_00154912_12_psfcat.psf"
HEADER = DATA / "DECam_00154912_12_header.fits"

pytestmark = pytest.mark.skipif(not PSFEX.is_file(), reason=f"{DATA} not found")


@pytest.fixture(scope="module")
def psf() -> PSFExPSF:
    return load_psf(PSFEX, psf_format="psfex", wcs_header=HEADER)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> SimulationTruth:
    out = tmp_path_factory.mktemp("psfex") / "sim"
    assert main(["simulate", "--psfex", str(PSFEX), "--header", str(HEADER), str(out)]) == 0
    return SimulationTruth.read(out / "truth.json")


def test_the_model_is_galsims_reading_with_the_readme_numbers(psf):
    # README: a unit-flux draw at CCD (1000, 2000) has adaptive sigma 1.84 px (at the
    # header's 0.263"; in CCD pixels, the model's own frame, GalSim gives 1.82).
    image = psf.pixel_profile(1000, 2000).drawImage(nx=41, ny=41, scale=1.0,
                                                    method="no_pixel")
    assert image.FindAdaptiveMom().moments_sigma == pytest.approx(1.83, abs=0.02)
    # pixel-integrated already: its integral is one, and the band-limited rendering's
    # pixel sum is one at every sub-pixel phase
    renderer = OversampledPSF(psf.pixel_profile(1000, 2000), 15,
                              normalization="band-limited")
    phases = np.linspace(0, 1, 7)
    sums = renderer.pixel_sums(1000 + phases, 2000 + phases[::-1])
    assert np.ptp(sums) < 1e-5 and sums.mean() == pytest.approx(1.0, abs=1e-4)


def test_the_wcs_is_the_headers_as_astropy_reads_it(psf):
    x, y = np.array([1.0, 1000.0, 2048.0]), np.array([1.0, 2000.0, 4096.0])
    ra, dec = psf.wcs.xyToradec(x, y, units="deg")
    ref = WCS(fits.getheader(HEADER)).all_pix2world(x, y, 1)
    dra = (ra - ref[0] + 180) % 360 - 180
    assert np.max(np.hypot(dra * np.cos(np.radians(dec)), dec - ref[1])) * 3.6e6 < 1.0  # mas


def test_bad_psfex_inputs_name_the_file(tmp_path):
    with pytest.raises(PSFError, match="not a PSFEx model") as info:
        load_psf(HEADER, psf_format="psfex", wcs_header=HEADER)
    assert str(HEADER) in str(info.value)
    with pytest.raises(PSFError, match="no celestial WCS") as info:
        load_psf(PSFEX, psf_format="psfex", wcs_header=PSFEX)
    assert str(PSFEX) in str(info.value)


def test_manifest_psf_tables_round_trip_and_bad_ones_name_the_key(simulated, tmp_path):
    manifest = DetectionManifest.read(simulated.manifest_path)
    assert {e.psf_format for e in manifest.exposures} == {"psfex"}
    assert {e.psf.resolve() for e in manifest.exposures} == {PSFEX.resolve()}
    assert len({e.psf_wcs_header for e in manifest.exposures}) == len(manifest.exposures)
    again = manifest.write(tmp_path / "again.toml")
    assert DetectionManifest.read(again).exposures == manifest.exposures
    text = simulated.manifest_path.read_text()
    broken = tmp_path / "broken.toml"
    broken.write_text(text.replace('wcs_header = "psfs', 'wcs_headr = "psfs', 1))
    with pytest.raises(ManifestError, match=r"wcs_headr in 'exposures\[0\]\.psf'") as info:
        DetectionManifest.read(broken)
    assert str(broken) in str(info.value)
    broken.write_text(text.replace('format = "psfex"', 'format = "psfx"', 1))
    with pytest.raises(ManifestError, match=r"exposures\[0\]\.psf\.format"):
        DetectionManifest.read(broken)


def test_simulate_then_fit_recovers_the_truth_with_every_normalisation(simulated, capsys):
    manifest = DetectionManifest.read(simulated.manifest_path)
    assert manifest.band == "Y" and manifest.detection_expnum == 154912
    assert manifest.detection_ccdnum == 12
    capsys.readouterr()
    fluxes = {}
    for norm in ("model", "unit-sum", "psf-weighted", "band-limited"):
        assert main(["fit", str(simulated.manifest_path), "--json", "--psf-normalization",
                     norm]) == 0
        row = json.loads(capsys.readouterr().out)
        row = row[0] if isinstance(row, list) else row
        fluxes[norm] = (row["flux"], row["flux_err"])
        assert abs(row["flux"] - simulated.fluxes[0]) < 2 * row["flux_err"], norm
    # the normalisations move this flux by much less than its error
    values = [f for f, _ in fluxes.values()]
    assert np.ptp(values) < 0.5 * fluxes["model"][1]


def test_the_detections_psf_is_the_psfex_model_at_the_target(simulated):
    from smp_model.fit.photometry import DetectionPhotometry
    phot = DetectionPhotometry(simulated.manifest_path)
    det = phot.scene.detection
    assert isinstance(det.psf, PSFExPSF)
    truth = next(e for e in simulated.exposures if e.is_detection)
    assert det.target_xy == pytest.approx(truth.target_xy, abs=1e-4)
    # the stamp's sky comes from the header's own WCS
    ref = WCS(fits.getheader(HEADER)).all_pix2world(*det.target_xy, 1)
    assert (float(ref[0]), float(ref[1])) == pytest.approx((simulated.ra, simulated.dec),
                                                           abs=1e-8)


def test_validate_psfex_reports_pulls(capsys):
    assert main(["validate", "--psfex", str(PSFEX), "--header", str(HEADER), "--n", "24",
                 "--delta-chi2", "0", "--json", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["psf"]["format"] == "psfex"
    single = summary["single"]
    assert single["n"] == 24
    # 24 pulls: std within ~4 sigma of 1 (its own error is ~0.15), bias within ~4 sigma of 0
    assert 0.5 < single["pull_std"] < 1.6 and abs(single["bias_sigma"]) < 0.8


@pytest.mark.slow
def test_validate_psfex_with_400_injections_meets_the_issue():
    from functools import partial

    from smp_model.simulation.psfex import build_psfex_field
    from smp_model.validation.injection import run_validation
    # docs/validation/injection.rst, "A real PSFEx model": ~100 s
    report = run_validation(400, n_delta_chi2=0,
                            builder=partial(build_psfex_field, PSFEX, HEADER))
    single = report.summary()["single"]
    assert 0.9 <= single["pull_std"] <= 1.1 and abs(single["bias_sigma"]) <= 0.1


@pytest.mark.parametrize("argv, message", [
    (["simulate", "--psfex", str(PSFEX), "OUT"], "--psfex and --header go together"),
    (["validate", "--header", str(HEADER)], "--psfex and --header go together"),
    (["validate", "--psfex", str(HEADER), "--header", str(HEADER)], "not a PSFEx model"),
])
def test_cli_refuses_half_or_wrong_psfex_inputs_in_one_line(argv, message, capsys, tmp_path,
                                                           monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "OUT").exists()


def test_fits_of_psfex_need_no_pixmappy_and_no_piff_file(simulated):
    # what a fit reads: the PSFEx file (named, not copied) and one small header each
    folder = simulated.manifest_path.parent
    assert not list(folder.rglob("*.psf"))
    headers = sorted(folder.rglob("*_wcs.fits"))
    assert len(headers) == len(simulated.exposures)
    assert all(fits.getheader(h)["CTYPE1"].startswith("RA---TPV") for h in headers)
    assert math.isfinite(simulated.exposures[0].fwhm_arcsec)
