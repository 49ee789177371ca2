"""Issue 7, verified on simulated truths and the real sample: the single-source position
search, the source shot-noise refit and the per-exposure diagnostics.

Noise realisations share one scene model (`SceneModel.with_data`, as the validation
does), so a realisation costs a fit, not a rebuild.  Fluxes are on zeropoint 30; the
simulator's gain is electrons per SCI count, as `DetectionPhotometry.with_shot_noise`
takes it.  Numbers measured when the tests were written are in the comments.
"""
from __future__ import annotations

import json
import math
import time
import warnings

import numpy as np
import pytest
from astropy.io import fits

from smp_model.cli.command import main
from smp_model.fit.diagnostics import exposure_diagnostics
from smp_model.fit.photometry import DetectionPhotometry
from smp_model.outputs.cubes import write_fits
from smp_model.outputs.tables import fit_table
from smp_model.settings import FitSettings
from smp_model.simulation.config import SimulationConfig
from smp_model.simulation.detection import simulate_detection
from smp_model.simulation.field import build_field
from smp_model.validation.injection import SimulatedFieldFit

GAIN = 4.0            # electrons per SCI count (DECam-like)


def pull_std(pulls) -> float:
    """Standard deviation of pulls (about their mean)."""
    return float(np.std(np.asarray(pulls)))


# -- single-source position search ------------------------------------------------------

def position_pulls(tmp_path, seed: int, n: int, snr: float = 30.0, **field):
    """``n`` realisations of a target displaced from the manifest position by a random
    sub-pixel offset, searched from the manifest position: pulls of (dx, dy).  ``field``:
    `SimulationConfig` options (default: no galaxy, two field stars)."""
    config = SimulationConfig(seed=seed, **{"galaxy": False, **field})
    field_fit = SimulatedFieldFit.create(config, tmp_path)
    rng = np.random.default_rng([seed, 7])
    pulls, errors = [], []
    for _ in range(n):
        true = rng.uniform(-0.5, 0.5, (1, 2))
        flux = snr * field_fit.flux_errors(true)[0]
        fit = field_fit.realisation(rng, [flux], true).optimize_single((0.0, 0.0))
        s = fit.primary
        pulls.append(((s.dx - true[0, 0]) / s.dx_err, (s.dy - true[0, 1]) / s.dy_err))
        errors.append((s.dx_err, s.dy_err))
    return np.array(pulls), np.array(errors)


def check_position_pulls(pulls: np.ndarray, errors: np.ndarray) -> None:
    assert np.all(np.isfinite(pulls)) and np.all(errors > 0)
    for axis in (0, 1):
        assert 0.8 <= pull_std(pulls[:, axis]) <= 1.2, pull_std(pulls[:, axis])
        assert abs(np.mean(pulls[:, axis])) < 0.3
    assert 0.85 <= pull_std(pulls.ravel()) <= 1.15


def test_position_search_recovers_injected_offsets(tmp_path):
    # 200 realisations at S/N 30 (dx_err ~ 0.1 px), ~14 s: pull std dx 1.08, dy 0.98,
    # both together 1.04 (each +-0.05 from 200 draws).
    pulls, errors = position_pulls(tmp_path, seed=11, n=200)
    check_position_pulls(pulls, errors)
    assert np.median(errors) < 0.2   # sub-pixel errors at S/N 30


@pytest.mark.slow
@pytest.mark.parametrize("seed, field", [(12, {}),
                                         (13, {"galaxy": True, "galaxy_distance_px": 1.0})],
                         ids=["isolated", "on_galaxy"])
def test_position_search_pulls_many_realisations(tmp_path, seed, field):
    # 400 realisations each (~1 min).  Pull std isolated dx 1.02, dy 0.97; on a galaxy
    # (its centre 1 px away) dx 1.10, dy 1.04.  (A static galaxy that the grid represents
    # changes nothing: the fit is linear in the data; the same seed gives the same pulls
    # with and without it to 1e-3.)
    pulls, errors = position_pulls(tmp_path, seed=seed, n=400, **field)
    check_position_pulls(pulls, errors)
    assert 0.9 <= pull_std(pulls.ravel()) <= 1.1


def test_position_search_on_disk_with_displaced_target(tmp_path):
    """`target_offset_px`: the manifest position is not the source's; the search from it
    finds the source and its sky position (what `smp fit --optimize` reports)."""
    offset = (0.6, -0.4)
    truth = simulate_detection(tmp_path / "sim", seed=5, flux=6000.0,
                               target_offset_px=offset)
    assert truth.config.target_offset_px == offset
    assert truth.offsets == pytest.approx(np.array([offset]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        phot = DetectionPhotometry(truth.manifest_path)
    fit = phot.optimize_single()
    s, true = fit.primary, truth.sources[0]
    assert abs(s.dx - true.dx) < 4 * s.dx_err and abs(s.dy - true.dy) < 4 * s.dy_err
    assert max(s.dx_err, s.dy_err) < 0.1
    # the fitted RA/Dec is the source's, not the manifest's (0.263"/px)
    cos_dec = math.cos(math.radians(true.dec))
    sep = 3600 * math.hypot((s.ra - true.ra) * cos_dec, s.dec - true.dec)
    assert sep < 4 * 0.263 * max(s.dx_err, s.dy_err)
    manifest_sep = 3600 * math.hypot((s.ra - truth.ra) * cos_dec, s.dec - truth.dec)
    assert manifest_sep > 0.1


@pytest.fixture(scope="module")
def eris(des_sample):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the sample's dropped exposures
        return DetectionPhotometry(des_sample / "eris" / "detection.toml")


def test_position_search_on_the_sample_is_fast(eris):
    eris.optimize_single()   # warm-up (imports, caches)
    t0 = time.perf_counter()
    fit = eris.optimize_single()
    seconds = time.perf_counter() - t0
    # Measured 0.05 s (83 chi2 evaluations) on an idle 2-core machine, 0.3 s with both
    # cores busy; the issue asks for well under a second, 2 s allowed for loaded machines.
    assert seconds < 2.0, seconds
    s = fit.primary
    assert np.all(np.isfinite([s.dx_err, s.dy_err])) and max(s.dx_err, s.dy_err) < 0.5
    assert fit.n_chi2_evaluations < 300
    assert fit.chi2 <= eris.fit_single().chi2 + 1e-6   # the search can only improve chi2


def test_binary_geometry_from_the_sources_equals_the_scene_geometry(eris):
    """BinaryFit reads separation and angle off its sources' positions; the general
    function (used for the error propagation) must agree at the fitted offsets."""
    from smp_model.fit.results import BinaryFit
    fit = eris.fit_binary((0.0, 2.0, 0.0, 1.5))
    expected = BinaryFit.scene_geometry(fit.scene, fit.offsets)
    got = (fit.separation_px, fit.separation_arcsec, fit.position_angle_deg)
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-9)
    assert fit.separation_px == pytest.approx(2.5)   # sqrt(2^2 + 1.5^2)


# -- source shot-noise term -------------------------------------------------------------
#
# Each realisation needs a shot-noise refit, which refactorises the scene.  The default
# tests use a bare field (target on sky, no galaxy or stars) and a 10x10 grid (~60 ms a
# realisation) so that a few hundred realisations pin the pull std to +-0.05; the slow
# test repeats them on the default field (galaxy and stars, 20x20 grid, ~160 ms).

def shot_noise_field(tmp_path, seed: int, bare: bool) -> SimulatedFieldFit:
    if bare:
        return SimulatedFieldFit.create(
            SimulationConfig(seed=seed, shot_noise_gain=GAIN, galaxy=False, n_stars=0),
            tmp_path, FitSettings(grid_size=10))
    return SimulatedFieldFit.create(SimulationConfig(seed=seed, shot_noise_gain=GAIN),
                                    tmp_path)


@pytest.fixture(scope="module")
def bare_field(tmp_path_factory):
    return shot_noise_field(tmp_path_factory.mktemp("shot-noise"), 21, bare=True)


def shot_noise_pulls(field_fit: SimulatedFieldFit, snr: float, n: int, seed: int):
    """Plain and shot-noise (pulls, errors) over ``n`` realisations of a target of S/N
    ``snr`` (by the plain error) at the manifest position."""
    offset = np.zeros((1, 2))
    flux = snr * field_fit.flux_errors(offset)[0]
    rng = np.random.default_rng([seed, 8])
    plain, shot = [], []
    for _ in range(n):
        phot = field_fit.realisation(rng, [flux], offset, gain=GAIN)
        fit = phot.with_shot_noise(phot.fit_single(offset[0]), gain=GAIN)
        assert fit.shot_noise.gain == GAIN and fit.shot_noise.iterations == 1
        plain.append(((fit.flux - flux) / fit.flux_err, fit.flux_err))
        shot.append(((fit.shot_noise.flux[0] - flux) / fit.shot_noise.flux_err[0],
                     fit.shot_noise.flux_err[0]))
    return np.array(plain), np.array(shot)


def peak_variances(field_fit: SimulatedFieldFit, snr: float) -> tuple[float, float]:
    """(source Poisson, sky) variance at the target's peak, SCI units."""
    det = field_fit.sim.detection
    flux = snr * field_fit.flux_errors(np.zeros((1, 2)))[0]
    peak = det.point_source(flux, *det.truth.target_xy).max()
    return peak / GAIN, det.truth.sky_sigma ** 2


def test_simulated_poisson_noise_matches_the_shot_noise_model(bare_field):
    """The simulator's source noise is what `with_shot_noise` models: on zeropoint 30
    (image = SCI * scale), variance = sky variance + model * scale / gain."""
    sim = bare_field.sim
    det = sim.detection
    scale = det.flux_scale
    source = sim.target_sources([2e5], np.zeros((1, 2)))
    model = (det.scene_sci + sim.target_sci(source)) * scale    # noiseless, ZP30
    rng = np.random.default_rng(3)
    images = np.array([sim.realise(rng, source, gain=GAIN)[sim.detection_index] * scale
                       for _ in range(400)])
    var = images.var(axis=0, ddof=1)
    expected = (det.truth.sky_sigma * scale) ** 2 + np.clip(model, 0, None) * scale / GAIN
    bright = model > model.max() / 4   # Poisson variance > 2x the sky's
    assert np.count_nonzero(bright) >= 5
    assert np.mean(var[bright] / expected[bright]) == pytest.approx(1.0, abs=0.05)
    faint = model < 0.01 * model.max()
    assert np.median(var[faint] / expected[faint]) == pytest.approx(1.0, abs=0.05)


def check_bright(plain: np.ndarray, shot: np.ndarray) -> None:
    assert pull_std(plain[:, 0]) > 1.2, pull_std(plain[:, 0])
    assert 0.9 <= pull_std(shot[:, 0]) <= 1.1, pull_std(shot[:, 0])
    assert abs(np.mean(shot[:, 0])) < 0.2
    assert np.all(shot[:, 1] > 1.3 * plain[:, 1])


def check_faint(plain: np.ndarray, shot: np.ndarray, max_ratio: float) -> None:
    for pulls in (plain[:, 0], shot[:, 0]):
        assert 0.85 <= pull_std(pulls) <= 1.15, pull_std(pulls)
        assert abs(np.mean(pulls)) < 0.3
    assert abs(pull_std(shot[:, 0]) - pull_std(plain[:, 0])) < 0.05
    ratio = shot[:, 1] / plain[:, 1]
    assert np.all(ratio >= 1.0) and np.all(ratio < max_ratio), (ratio.min(), ratio.max())


BRIGHT_SNR = 1000.0   # by the plain error; the source's Poisson variance at its peak is
FAINT_SNR = 20.0      # ~2.2x the sky's when bright, ~5 % of it when faint (gain 4)


def test_shot_noise_errors_cover_bright_targets(bare_field):
    # 250 realisations, ~13 s: pull std plain 1.40, shot noise 0.96; errors 1.42x larger.
    poisson, sky = peak_variances(bare_field, BRIGHT_SNR)
    assert poisson > 2 * sky
    plain, shot = shot_noise_pulls(bare_field, BRIGHT_SNR, n=250, seed=1)
    check_bright(plain, shot)


def test_shot_noise_agrees_with_plain_errors_on_faint_targets(bare_field):
    # 150 realisations, ~7 s: pull std plain 0.93, shot noise 0.92; errors 1.1 % larger.
    poisson, sky = peak_variances(bare_field, FAINT_SNR)
    assert poisson < 0.1 * sky
    plain, shot = shot_noise_pulls(bare_field, FAINT_SNR, n=150, seed=2)
    check_faint(plain, shot, max_ratio=1.03)


@pytest.mark.slow
def test_shot_noise_on_the_default_field(tmp_path):
    """Target beside a galaxy with two field stars (whose Poisson noise, in every
    exposure, the refit of the detection stamp alone does not describe)."""
    # 400 + 400 realisations, ~3 min: bright plain 1.39, shot noise 0.99 (errors 1.37x);
    # faint plain 0.98, shot noise 0.96 (errors 1.8 % larger).
    field_fit = shot_noise_field(tmp_path, 22, bare=False)
    check_bright(*shot_noise_pulls(field_fit, BRIGHT_SNR, n=400, seed=3))
    # the galaxy's own shot noise makes even a faint target's errors ~2.5 % larger
    check_faint(*shot_noise_pulls(field_fit, FAINT_SNR, n=400, seed=4), max_ratio=1.05)


# -- per-exposure diagnostics -----------------------------------------------------------

def add_moving_object(truth, m: int, flux: float, dxy=(4.0, -3.0)) -> tuple[int, int]:
    """Add a point source of ``flux`` (ZP30) to exposure ``m``'s stamp file, ``dxy`` px
    from the manifest position; returns its stamp index (j, i)."""
    sim = build_field(truth.config)   # deterministic: the same exposures as written
    ex = sim.exposures[m]
    x, y = ex.truth.target_xy[0] + dxy[0], ex.truth.target_xy[1] + dxy[1]
    path = truth.manifest_path.parent / "stamps" / f"{truth.name}_{ex.truth.expnum}.fits"
    with fits.open(path, mode="update") as hdul:
        hdul["SCI"].data = (hdul["SCI"].data + ex.point_source(flux, x, y)).astype(np.float32)
    return round(y) - ex.origin[1], round(x) - ex.origin[0]


def test_diagnostics_in_table_fits_and_json_flag_the_bad_exposure(tmp_path, capsys):
    truth = simulate_detection(tmp_path / "sim", seed=3, flux=3000.0)
    det = next(k for k, e in enumerate(truth.exposures) if e.is_detection)
    bad = (det + 1) % len(truth.exposures)
    bad_expnum = truth.exposures[bad].expnum
    # A moving object of S/N ~40 in one static exposure: its residual is ~5/6 of it there,
    # ~1/6 (the part the shared static model absorbs) in the others.
    j, i = add_moving_object(truth, bad, 5000.0)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        phot = DetectionPhotometry(truth.manifest_path)
    fit = phot.fit_single()
    assert len(phot.exposures) == len(truth.exposures)
    diag = exposure_diagnostics(fit)
    flagged = [int(e) for e in diag["expnum"][diag["outlier"]]]
    assert flagged == [bad_expnum], diag["expnum", "chi2_per_pixel", "outlier"]
    row = diag[list(diag["expnum"]).index(bad_expnum)]
    worst = [tuple(int(v) for v in p.split(",")) for p in row["worst_pixels"].split(";")]
    assert abs(worst[0][0] - j) <= 2 and abs(worst[0][1] - i) <= 2
    assert row["max_abs_residual_sigma"] > 10
    clean = diag[~diag["outlier"]]
    assert np.all(clean["chi2_per_pixel"] < 1.2)

    # the table's meta
    records = fit_table(fit).meta["per_exposure"]
    assert [r["expnum"] for r in records] == list(diag["expnum"])
    for r, d in zip(records, diag):
        assert r["outlier"] == bool(d["outlier"])
        assert r["chi2_per_pixel"] == pytest.approx(d["chi2_per_pixel"])
        assert set(r) >= {"usable_fraction", "sky", "max_abs_residual_sigma",
                          "worst_pixels", "is_detection", "n_usable", "chi2"}
    assert sum(r["is_detection"] for r in records) == 1

    # the FITS file (written directly and through the CLI) and the CLI JSON
    direct = write_fits(fit, tmp_path / "direct.fits")
    out = tmp_path / "cli.fits"
    code = main(["fit", str(truth.manifest_path), "--json", "--quiet", "--fits", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out)
    per_exposure = summary["per_exposure"]
    assert [r["expnum"] for r in per_exposure if r["outlier"]] == [bad_expnum]
    assert [r["expnum"] for r in per_exposure] == [int(e) for e in diag["expnum"]]
    for r, d in zip(per_exposure, diag):
        assert r["chi2_per_pixel"] == pytest.approx(d["chi2_per_pixel"], rel=1e-6)
    for path in (direct, out):
        with fits.open(path) as hdul:
            table = hdul["EXPOSURES"].data
            assert {"chi2_per_pixel", "outlier", "usable_fraction", "sky",
                    "max_abs_residual_sigma", "worst_pixels"} <= set(table.names)
            assert list(table["expnum"][table["outlier"]]) == [bad_expnum]
            assert hdul["EXPOSURES"].header["NAXIS2"] == len(truth.exposures)


def test_clean_detection_flags_no_exposure(tmp_path):
    truth = simulate_detection(tmp_path / "sim", seed=4, flux=3000.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = DetectionPhotometry(truth.manifest_path).fit_single()
    diag = exposure_diagnostics(fit)
    assert not np.any(diag["outlier"]), diag["expnum", "chi2_per_pixel"]
    assert np.all(np.abs(diag["chi2_per_pixel"] - 1) < 0.2)
