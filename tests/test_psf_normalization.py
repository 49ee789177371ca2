"""PSF normalisation (``--psf-normalization``): pixel sums of rendered sources against
analytic truths, the unit-sum and band-limited renderers, and the option through
FitSettings, the CLI and the GUI's settings."""
from __future__ import annotations

import argparse
import math

import galsim
import numpy as np
import pytest

from smp_model.cli.arguments import add_model_arguments, settings_from_args
from smp_model.conventions import PSF_NORMALIZATIONS
from smp_model.psf.oversampled import OversampledPSF, band_limited_samples
from smp_model.settings import FitSettings

RNG = np.random.default_rng(17)


def gaussian_lattice_sum(sigma: float, cx: float, cy: float) -> float:
    """Sum over integer pixels n of a unit-flux circular Gaussian (sigma px) sampled at
    n - (cx, cy): the product of two one-dimensional sums."""
    n = np.arange(-80, 81)

    def one_axis(c: float) -> float:
        phase = c - round(c)
        return float(np.exp(-(n - phase) ** 2 / (2 * sigma ** 2)).sum()
                     / (math.sqrt(2 * math.pi) * sigma))
    return one_axis(cx) * one_axis(cy)


def brute_force_sums(renderer: OversampledPSF, cx, cy, distortions=None) -> np.ndarray:
    """Sum of each rendered source over a stamp that holds all of it."""
    half = renderer.radius + 3
    out = []
    for k, (x, y) in enumerate(zip(cx, cy)):
        origin = (round(x) - half, round(y) - half)
        d = None if distortions is None else distortions[k:k + 1]
        out.append(renderer.render([x], [y], origin, (2 * half + 1, 2 * half + 1), d).sum())
    return np.array(out)


CENTRES = (np.r_[0.0, 0.5, -0.5, 0.25, 1234.37, -7.81, RNG.uniform(-50, 50, 6)],
           np.r_[0.0, 0.5, 0.1, -0.25, 2001.92, 3.49, RNG.uniform(-50, 50, 6)])


@pytest.mark.parametrize("oversampling", [4, 6, 8])
def test_pixel_sums_are_the_sums_of_the_rendered_source(oversampling):
    # A point-sampled Gaussian narrow enough that its lattice sum varies by +-3 %.
    renderer = OversampledPSF(galsim.Gaussian(sigma=0.45), 20, oversampling)
    cx, cy = CENTRES
    sums = renderer.pixel_sums(cx, cy)
    np.testing.assert_allclose(sums, brute_force_sums(renderer, cx, cy), rtol=0, atol=1e-12)
    assert np.ptp(sums) > 0.05


def test_pixel_sums_follow_the_analytic_lattice_sum():
    renderer = OversampledPSF(galsim.Gaussian(sigma=0.45), 20, 8)
    cx, cy = CENTRES
    truth = [gaussian_lattice_sum(0.45, x, y) for x, y in zip(cx, cy)]
    # the spline's own approximation of the profile, ~1e-4 of the peak per pixel
    np.testing.assert_allclose(renderer.pixel_sums(cx, cy), truth, rtol=0, atol=5e-4)
    assert renderer.mean_pixel_sum == pytest.approx(1.0, abs=1e-5)   # the integral


def test_unit_sum_makes_the_sum_independent_of_the_phase():
    profile = galsim.Gaussian(sigma=0.45)
    model = OversampledPSF(profile, 20, 6)
    unit = OversampledPSF(profile, 20, 6, normalization="unit-sum")
    cx, cy = CENTRES
    sums = brute_force_sums(unit, cx, cy)
    np.testing.assert_allclose(sums, model.mean_pixel_sum, rtol=0, atol=1e-12)
    # ... by rescaling each stamp as a whole: the shape is the model's
    origin, shape = (1220, 1990), (30, 30)
    factor = unit.phase_factors(cx[4], cy[4])[0]
    assert factor == pytest.approx(model.pixel_sums(cx[4], cy[4])[0] / model.mean_pixel_sum)
    assert abs(factor - 1) > 1e-3
    np.testing.assert_allclose(model.phase_factors(cx, cy), 1.0, rtol=0, atol=0)
    expected = model.render(cx[4:5], cy[4:5], origin, shape) / factor
    np.testing.assert_allclose(unit.render(cx[4:5], cy[4:5], origin, shape), expected,
                               rtol=1e-12, atol=0)


def test_a_pixel_integrated_profile_is_left_unchanged():
    # A pixel-integrated profile sums to its flux at every phase: unit-sum changes nothing.
    profile = galsim.Convolve(galsim.Gaussian(sigma=1.0), galsim.Pixel(1.0))
    model = OversampledPSF(profile, 20, 6)
    unit = OversampledPSF(profile, 20, 6, normalization="unit-sum")
    cx, cy = CENTRES
    np.testing.assert_allclose(model.pixel_sums(cx, cy), 1.0, rtol=0, atol=1e-5)
    origin, shape = (-15, -15), (31, 31)
    a = model.render(cx[:4], cy[:4], origin, shape)
    b = unit.render(cx[:4], cy[:4], origin, shape)
    assert np.abs(b - a).max() < 1e-5 * a.max()


def test_distorted_sources_keep_most_of_the_correction():
    # Sources drawn through another WCS Jacobian (A = J_ref^-1 J_k; |A - I| ~ 1e-3 for the
    # legacy convention on the DES sample): the undistorted profile's phase factor is not
    # exact for them, but removes >= 95 % of a +-1 % modulation (documented limit).
    profile = galsim.Gaussian(sigma=0.55)
    model = OversampledPSF(profile, 20, 6)
    unit = OversampledPSF(profile, 20, 6, normalization="unit-sum")
    cx, cy = CENTRES
    distortions = np.eye(2)[None] + RNG.normal(0.0, 1e-3, (cx.size, 2, 2))
    before = np.abs(brute_force_sums(model, cx, cy, distortions) - 1.0).max()
    after = np.abs(brute_force_sums(unit, cx, cy, distortions) - 1.0).max()
    assert before > 0.005
    assert after < 0.05 * before


# -- the option -------------------------------------------------------------------------

def test_settings_default_to_the_conventions_normalisation():
    # exact: band-limited (docs/validation/psf_phase.rst); legacy: the model's stamps, as published
    assert FitSettings().psf_normalization == "band-limited"
    assert FitSettings(convention="legacy").psf_normalization == "model"
    assert FitSettings(convention="bernardinelli2023").psf_normalization == "model"
    assert FitSettings(psf_normalization="unit-sum").psf_normalization == "unit-sum"
    assert FitSettings(convention="legacy", psf_normalization="band-limited") \
        .psf_normalization == "band-limited"
    with pytest.raises(ValueError, match="PSF normalization"):
        FitSettings(psf_normalization="peak")


@pytest.mark.parametrize("value", PSF_NORMALIZATIONS)
def test_the_option_round_trips_through_meta_and_the_cli(value):
    settings = FitSettings(convention="legacy", psf_normalization=value, grid_size=12)
    meta = settings.as_meta()
    assert meta["psf_normalization"] == value
    assert FitSettings(**meta) == settings
    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    args = parser.parse_args(["--convention", "legacy", "--grid", "12",
                              "--psf-normalization", value])
    assert settings_from_args(args) == settings
    assert settings_from_args(parser.parse_args([])) == FitSettings()
    legacy = settings_from_args(parser.parse_args(["--convention", "legacy"]))
    assert legacy.psf_normalization == "model"


def test_the_scene_renders_target_and_grid_with_the_option(tmp_path):
    from smp_model.fit.photometry import DetectionPhotometry
    from smp_model.simulation.detection import simulate_detection
    truth = simulate_detection(tmp_path / "sim", seed=3, n_exposures=3)
    model = DetectionPhotometry(truth.manifest_path, FitSettings(psf_normalization="model"))
    unit = DetectionPhotometry(truth.manifest_path, FitSettings(psf_normalization="unit-sum"))
    scene_m, scene_u = model.scene, unit.scene
    assert all(r.normalization == "unit-sum" for r in scene_u.renderers)
    assert all(r.normalization == "model" for r in scene_m.renderers)
    offsets = np.array([[0.3, -0.2]])
    m = scene_u.detection_index
    centre = scene_u.target_centers(offsets)[0]
    factor = scene_u.renderers[m].phase_factors(*centre)[0]
    np.testing.assert_allclose(scene_u.target_stamps(offsets),
                               scene_m.target_stamps(offsets) / factor, rtol=1e-12)
    for k, rows in enumerate(scene_u.rows):
        factors = scene_u.renderers[k].phase_factors(*scene_u.grid_xy[k])
        np.testing.assert_allclose(scene_u.static_design[rows, :scene_u.n_grid],
                                   scene_m.static_design[rows, :scene_m.n_grid] / factors,
                                   rtol=1e-12, atol=1e-300)
    # The simulator's PSFs are pixel-integrated: the option moves their fluxes by < 0.1 mmag.
    f_m = model.fit_single((0.0, 0.0)).sources[0].flux
    f_u = unit.fit_single((0.0, 0.0)).sources[0].flux
    assert abs(2.5 * math.log10(f_u / f_m)) < 1e-4


# -- psf-weighted ------------------------------------------------------------------------

def brute_force_square_sums(renderer: OversampledPSF, cx, cy) -> np.ndarray:
    half = renderer.radius + 3
    return np.array([(renderer.render([x], [y], (round(x) - half, round(y) - half),
                                      (2 * half + 1, 2 * half + 1)) ** 2).sum()
                     for x, y in zip(cx, cy)])


def test_square_sums_are_exact_on_the_fine_grid_and_close_between():
    renderer = OversampledPSF(galsim.Gaussian(sigma=0.5), 20, 6)
    nodes = np.arange(6) / 6.0 + 17.0            # phases on the fine grid
    np.testing.assert_allclose(renderer.square_sums(nodes, nodes[::-1] - 40.0),
                               brute_force_square_sums(renderer, nodes, nodes[::-1] - 40.0),
                               rtol=1e-12)
    cx, cy = CENTRES
    truth = brute_force_square_sums(renderer, cx, cy)
    modulation = np.ptp(truth)
    assert modulation > 0.05 * truth.mean()
    assert np.abs(renderer.square_sums(cx, cy) - truth).max() < 0.02 * modulation


def test_psf_weighted_makes_the_sum_of_squares_independent_of_the_phase():
    profile = galsim.Gaussian(sigma=0.5)
    model = OversampledPSF(profile, 20, 6)
    weighted = OversampledPSF(profile, 20, 6, normalization="psf-weighted")
    cx, cy = CENTRES
    before = brute_force_square_sums(model, cx, cy)
    after = brute_force_square_sums(weighted, cx, cy)
    assert np.ptp(before) > 0.05 * before.mean()
    assert np.ptp(after) < 0.02 * np.ptp(before)
    np.testing.assert_allclose(after.mean(), model.mean_square_sum, rtol=0.01)


def test_psf_weighted_leaves_a_smooth_pixel_integrated_profile_unchanged():
    profile = galsim.Convolve(galsim.Gaussian(sigma=1.2), galsim.Pixel(1.0))
    model = OversampledPSF(profile, 20, 6)
    weighted = OversampledPSF(profile, 20, 6, normalization="psf-weighted")
    cx, cy = CENTRES
    np.testing.assert_allclose(weighted.phase_factors(cx, cy), 1.0, rtol=0, atol=1e-5)
    origin, shape = (-15, -15), (31, 31)
    a = model.render(cx[:4], cy[:4], origin, shape)
    assert np.abs(weighted.render(cx[:4], cy[:4], origin, shape) - a).max() < 1e-5 * a.max()


def test_an_unknown_normalization_is_refused():
    with pytest.raises(ValueError, match="PSF normalization"):
        OversampledPSF(galsim.Gaussian(sigma=1.0), 10, normalization="peak")


def test_psf_weighted_rescales_an_undersampled_pixel_integrated_profile_slightly():
    # Its limit (documented in OversampledPSF): the sum of squares of a true
    # pixel-integrated PSF varies with the phase when the PSF is undersampled.
    profile = galsim.Convolve(galsim.Gaussian(sigma=0.9), galsim.Pixel(1.0))
    factors = OversampledPSF(profile, 20, 6, normalization="psf-weighted").phase_factors(
        *CENTRES)
    assert 5e-5 < np.abs(factors - 1.0).max() < 5e-4


# -- band-limited ---------------------------------------------------------------------------

def lanczos_grid_profile(fwhm_px: float = 4.0, scale: float = 1.14) -> galsim.GSObject:
    """A Piff-like model in CCD pixel units: a Kolmogorov PSF's samples every ``scale``
    pixels (DES: 0.30 / 0.263 arcsec) interpolated with Lanczos(3), axes along the pixels'
    (as on DECam), unit flux."""
    truth = galsim.Convolve(galsim.Kolmogorov(fwhm=fwhm_px), galsim.Pixel(1.0))
    samples = truth.drawImage(nx=17, ny=17, scale=scale, method="no_pixel")
    return galsim.InterpolatedImage(samples, x_interpolant=galsim.Lanczos(3, True),
                                    normalization="flux").withFlux(1.0)


def test_band_limited_samples_of_a_band_limited_profile_are_its_samples():
    # A Gaussian of sigma 1.7 px has ~1e-5 of its Fourier amplitude above 0.375 cycles per
    # pixel: the filter must give back its exact samples (also off-centre: the phase
    # convention of the transform).
    profile = galsim.Gaussian(sigma=1.7).shift(0.3, -0.2)
    ov, radius = 6, 15
    n = 2 * radius * ov + 1
    fine = galsim.ImageD(n, n, scale=1.0 / ov)
    profile.drawImage(fine, method="no_pixel", center=fine.true_center)
    exact = fine.array * ov ** 2
    filtered = band_limited_samples(profile, radius, ov)
    assert filtered.shape == exact.shape
    assert np.abs(filtered - exact).max() < 1e-4 * exact.max()
    assert filtered.sum() / ov ** 2 == pytest.approx(1.0, abs=1e-6)


def test_band_limited_piff_like_model_sums_to_its_flux_at_every_phase():
    # The analytic truth (Poisson summation): a profile without power at and above
    # 0.5 cycles per pixel sums to its flux over the pixel lattice at every phase (to the
    # spline's and the sampled box's ~4e-5, 0.04 mmag).
    profile = lanczos_grid_profile()
    model = OversampledPSF(profile, 20, 6)
    limited = OversampledPSF(profile, 20, 6, normalization="band-limited")
    cx, cy = CENTRES
    assert np.ptp(model.pixel_sums(cx, cy)) > 3e-3          # the DES models' swing
    sums = brute_force_sums(limited, cx, cy)
    np.testing.assert_allclose(sums, 1.0, rtol=0, atol=1e-4)
    np.testing.assert_allclose(limited.pixel_sums(cx, cy), sums, rtol=0, atol=1e-12)


def test_band_limited_stamps_are_the_same_shape_at_every_phase():
    # Below the lattice's Nyquist frequency a sampled profile is shift-invariant: a PSF-fit
    # flux of the same source (sum P D / sum P^2 with D = P at another phase, both sampled
    # from the band-limited model) is 1 at every phase, where the raw model's swings.
    profile = lanczos_grid_profile()
    origin, shape = (-20, -20), (41, 41)
    phases = np.linspace(-0.5, 0.5, 9)
    for normalization, low, high in (("model", 2e-3, 1.0), ("band-limited", 0.0, 2e-5)):
        renderer = OversampledPSF(profile, 20, 6, normalization=normalization)
        stamps = renderer.render(phases, -0.5 * phases, origin, shape)
        fluxes = (stamps * stamps[4]).sum(axis=(1, 2)) / (stamps[4] ** 2).sum()
        # a source at phase p fitted with the model at phase 0 shifted to p: compare the
        # sums of squares, which a fit's flux error depends on
        squares = (stamps ** 2).sum(axis=(1, 2))
        spread = np.ptp(squares) / squares.mean()
        assert low <= spread <= high, (normalization, spread)
        assert np.all(fluxes <= 1.0 + 1e-12)


def test_band_limited_keeps_a_physical_psf():
    # A DES-like PSF (Kolmogorov FWHM 0.9 arcsec = 3.4 px, pixel-integrated) has almost
    # nothing above 0.375 cycles per pixel: its stamps change by < 2e-3 of the peak.
    profile = galsim.Convolve(galsim.Kolmogorov(fwhm=3.4), galsim.Pixel(1.0))
    origin, shape = (-15, -15), (31, 31)
    a = OversampledPSF(profile, 15, 6).render([0.2], [-0.3], origin, shape)
    b = OversampledPSF(profile, 15, 6, normalization="band-limited").render(
        [0.2], [-0.3], origin, shape)
    assert np.abs(b - a).max() < 2e-3 * a.max()
