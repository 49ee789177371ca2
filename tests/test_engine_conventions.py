"""Pixel conventions, stamp-origin rules and the linear algebra of the solve, on tiny
synthetic detections whose truth is analytic (tests/helpers.py): a Gaussian PSF whose
pixel-integrated value is known in closed form, a plain TAN WCS, known fluxes.

Truths used: docs/method.rst and docs/conventions.rst (``SCI[j, i]`` is CCD
``(x0 + i, y0 + j)``; legacy draws in Piff's box, one pixel off, with the target at
``(x_t - 1, y_t - 1)`` and every background stamp rotated by 180 degrees), astropy's
``Cutout2D`` for the DES stamp rule, Piff's own ``draw(stamp_size=N)`` box, and
``scipy.linalg.lstsq`` / explicit sums for the solve.
"""
from __future__ import annotations

import math
import tracemalloc
from dataclasses import replace

import numpy as np
import pytest
import scipy.linalg
from astropy.nddata import Cutout2D
from helpers import (make_synthetic_detection, pixel_integrated_gaussian, render_truth,
                     sky_to_pixel, tan_header)

from smp_model.conventions import piff_box_origin
from smp_model.errors import FitError, ResourceLimitError
from smp_model.fit.photometry import DetectionPhotometry
from smp_model.inputs.manifest import DetectionManifest, des_stamp_origin
from smp_model.scene.exposures import load_exposures
from smp_model.scene.model import SceneModel
from smp_model.settings import FitSettings

SMALL_GRID = dict(grid_size=6, grid_step_arcsec=0.5)


def settings(convention="exact", **kw):
    # The model's own stamps in both conventions: these tests compare pixel placement with
    # the analytic truth and legacy with exact.  The exact default (psf-weighted) rescales
    # this undersampled Gaussian (sigma 0.9 px, FWHM 0.56" on DECam) by up to 2.6e-4
    # (tests/test_psf_normalization.py; docs/validation/psf_phase.rst).
    return FitSettings(convention=convention,
                       **{**SMALL_GRID, "psf_normalization": "model", **kw})


# -- a source on a given CCD pixel lands on the expected stamp pixel -----------------------

@pytest.mark.parametrize("i, j", [(14, 14), (3, 25), (26, 2)])
def test_exact_source_on_ccd_pixel_lands_on_stamp_pixel(tmp_path, i, j):
    x0, y0 = 1003, 2019
    det = make_synthetic_detection(tmp_path, n_exposures=2, target_ccd_xy=(x0 + i, y0 + j),
                                   detection_origin=(x0, y0), static_sources=[],
                                   add_noise=False, target_flux=4000.0)
    phot = DetectionPhotometry(det.manifest_path, settings("exact"))
    assert phot.scene.detection.target_xy == pytest.approx((x0 + i, y0 + j), abs=1e-6)
    stamp = phot.scene.target_stamps([(0.0, 0.0)])[0]
    assert np.unravel_index(np.argmax(stamp), stamp.shape) == (j, i)
    truth = render_truth([(x0 + i, y0 + j)], [1.0], (x0, y0), stamp.shape, det.sigma_px)
    assert np.abs(stamp - truth).max() < 1e-4 * truth.max()
    # The data (drawn independently on SCI[j, i] = CCD (x0+i, y0+j)) are fitted exactly.
    fit = phot.fit_single()
    assert fit.flux == pytest.approx(4000.0, rel=1e-3)
    assert fit.chi2 < 1e-3 * fit.dof
    assert (fit.primary.x, fit.primary.y) == pytest.approx((x0 + i, y0 + j), abs=1e-6)


@pytest.fixture(scope="module")
def des_rule_detection(tmp_path_factory):
    """Noise-free, no static sources, DES-rule stamp origins (as the legacy mode assumes)."""
    return make_synthetic_detection(tmp_path_factory.mktemp("des_rule"), n_exposures=3,
                                    static_sources=[], add_noise=False, target_flux=4000.0)


@pytest.fixture(scope="module")
def both_conventions(des_rule_detection):
    return {c: DetectionPhotometry(des_rule_detection.manifest_path, settings(c))
            for c in ("exact", "legacy")}


def test_legacy_target_at_minus_one_is_exact_target_at_zero(des_rule_detection,
                                                            both_conventions):
    exact, legacy = both_conventions["exact"], both_conventions["legacy"]
    assert legacy.default_offset == (-1.0, -1.0)
    assert exact.default_offset == (0.0, 0.0)
    a = exact.scene.target_stamps([(0.0, 0.0)])[0]
    b = legacy.scene.target_stamps([(-1.0, -1.0)])[0]
    assert np.abs(a - b).max() < 1e-6 * a.max()
    fit_e, fit_l = exact.fit_single(), legacy.fit_single()
    assert fit_l.flux == pytest.approx(des_rule_detection.target_flux, rel=1e-3)
    assert fit_e.flux == pytest.approx(des_rule_detection.target_flux, rel=1e-3)
    # Both report the same physical (data-frame) position: the true one.
    truth_xy = des_rule_detection.target_xy()
    for fit in (fit_e, fit_l):
        assert (fit.primary.x, fit.primary.y) == pytest.approx(truth_xy, abs=1e-6)
    # In legacy, the exact offset (0, 0) is one pixel off the data on both axes.
    assert legacy.fit_single((0.0, 0.0)).chi2 > 100 * max(fit_l.chi2, 1.0)


def test_grid_background_stamps_exact_and_rotated_in_legacy(des_rule_detection,
                                                            both_conventions):
    """Each grid column is the PSF drawn at the grid source's CCD position on the stamp grid
    (exact), or drawn in Piff's box around the target and rotated by 180 degrees (legacy)."""
    exact, legacy = both_conventions["exact"], both_conventions["legacy"]
    n_grid = exact.scene.n_grid
    sigma = des_rule_detection.sigma_px
    for m, ex in enumerate(des_rule_detection.exposures):
        shape = ex.sci.shape
        gx, gy = sky_to_pixel(ex.header, exact.scene.grid_ra, exact.scene.grid_dec)
        tx, ty = des_rule_detection.target_xy(m)
        box = (math.ceil(tx) - 15, math.ceil(ty) - 15)   # Piff's stamp_size=30 box
        rows = exact.scene.rows[m]
        cols_e = exact.scene.static_design[rows, :n_grid].T.reshape(n_grid, *shape)
        cols_l = legacy.scene.static_design[rows, :n_grid].T.reshape(n_grid, *shape)
        for k in range(n_grid):
            truth = render_truth([(gx[k], gy[k])], [1.0], ex.origin, shape, sigma)
            in_box = render_truth([(gx[k], gy[k])], [1.0], box, shape, sigma)
            peak = pixel_integrated_gaussian(0, 0, sigma)
            assert np.abs(cols_e[k] - truth).max() < 1e-4 * peak
            assert np.abs(cols_l[k] - in_box[::-1, ::-1]).max() < 1e-4 * peak
        # The sky columns are constant 1 on this exposure only.
        assert np.all(exact.scene.static_design[rows, n_grid + m] == 1.0)


def test_grid_positions_follow_the_published_layout(des_rule_detection, both_conventions):
    """n x n sources at linspace(-s n/2, s n/2, n) arcsec on both tangent-plane axes about
    the detection (ra, dec): measured with an astropy TAN projection about (ra, dec)."""
    scene = both_conventions["exact"].scene
    n, s = SMALL_GRID["grid_size"], SMALL_GRID["grid_step_arcsec"]
    tangent = tan_header(des_rule_detection.ra, des_rule_detection.dec, scale=1.0,
                         crpix=(0.0, 0.0))
    u, v = sky_to_pixel(tangent, scene.grid_ra, scene.grid_dec)   # arcsec, x = west
    axis = np.linspace(-s * n / 2, s * n / 2, n)
    assert scene.n_grid == n * n
    assert np.sort(np.unique(np.round(u, 6))) == pytest.approx(axis, abs=1e-6)
    assert np.sort(np.unique(np.round(v, 6))) == pytest.approx(axis, abs=1e-6)
    pairs = {(round(a, 6), round(b, 6)) for a, b in zip(u, v)}
    assert len(pairs) == n * n


# -- stamp-origin rules ---------------------------------------------------------------------

@pytest.mark.parametrize("size", [30, 31, 24, 25])
def test_des_stamp_origin_is_cutout2d_origin(size):
    """DES stamps are Cutout2D(image, (x, y), size, mode='partial') with the 1-indexed (x, y)
    used as a 0-indexed position, so SCI[0, 0] is CCD pixel origin_original + 1."""
    rng = np.random.default_rng(size)
    image = np.zeros((400, 300))
    xs = np.concatenate([rng.uniform(50, 250, 200), 100 + rng.uniform(0, 0.5, 50),
                         [120.0, 120.5, 121.25, 133.49, 133.51]])
    ys = np.concatenate([rng.uniform(50, 350, 200), 200 + rng.uniform(0, 0.5, 50),
                         [220.0, 220.5, 221.75, 233.49, 233.51]])
    for x, y in zip(xs, ys):
        cut = Cutout2D(image, (x, y), size, mode="partial")
        expected = (cut.origin_original[0] + 1, cut.origin_original[1] + 1)
        assert des_stamp_origin(x, y, (size, size)) == expected, (x, y)


@pytest.fixture(scope="module")
def piff_psf(des_sample):
    import piff
    return piff.PSF.read(str(des_sample / "psfs" / "234928" / "234928_20_piff.fits"))


@pytest.mark.parametrize("size", [30, 31, 24])
def test_piff_box_origin_is_piff_draw_bounds(piff_psf, size):
    rng = np.random.default_rng(100 + size)
    xs = np.concatenate([rng.uniform(100, 1900, 8), [871.0, 871.5, 871.49]])
    ys = np.concatenate([rng.uniform(100, 3900, 8), [2369.0, 2369.5, 2369.51]])
    for x, y in zip(xs, ys):
        image = piff_psf.draw(x, y, stamp_size=size)
        assert image.array.shape == (size, size)
        assert piff_box_origin((x, y), (size, size)) == (image.xmin, image.ymin), (x, y)


# -- the linear algebra ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def noisy_detection(tmp_path_factory):
    return make_synthetic_detection(tmp_path_factory.mktemp("noisy"), n_exposures=3,
                                    target_flux=800.0, noise_zp30=5.0, seed=3)


def full_design(phot, offsets):
    """Dense design [static | target columns] and data/weights, built from the scene's
    rendered columns (the solver, not the renderer, is under test here)."""
    scene = phot.scene
    offsets = np.atleast_2d(offsets)
    target = np.zeros((scene.data.size, offsets.shape[0]))
    target[scene.rows[scene.detection_index]] = \
        scene.target_stamps(offsets).reshape(offsets.shape[0], -1).T
    return np.hstack([scene.static_design, target]), scene.data, scene.weight


@pytest.mark.parametrize("fit_sky, offsets", [(True, [(0.2, -0.3)]), (False, [(0.0, 0.0)]),
                                              (True, [(-0.9, -0.6), (1.3, 1.1)])])
def test_solve_matches_lstsq_chi2_and_covariance(noisy_detection, fit_sky, offsets):
    phot = DetectionPhotometry(noisy_detection.manifest_path,
                               settings("exact", fit_sky=fit_sky))
    offsets = np.array(offsets)
    if len(offsets) == 1:
        fit = phot.fit_single(offsets[0])
    else:
        fit = phot.fit_binary((offsets[0, 0], offsets[1, 0], offsets[0, 1], offsets[1, 1]))
    design, data, weight = full_design(phot, offsets)
    root_w = np.sqrt(weight)
    expected, *_ = scipy.linalg.lstsq(design * root_w[:, None], data * root_w)
    scale = np.abs(expected).max()
    assert np.abs(fit.parameters - expected).max() < 1e-8 * scale
    # chi2: the explicit weighted residual sum, per exposure and in total.
    resid = data - design @ expected
    chi2 = float(np.sum(weight * resid ** 2))
    assert fit.chi2 == pytest.approx(chi2, rel=1e-9)
    assert phot.scene.solve(offsets).chi2 == pytest.approx(chi2, rel=1e-7)
    per_exposure = [np.sum((weight * resid ** 2)[rows]) for rows in phot.scene.rows]
    assert fit.chi2_per_exposure == pytest.approx(per_exposure, rel=1e-9)
    # dof = usable pixels - free parameters.
    assert fit.dof == np.count_nonzero(weight > 0) - design.shape[1]
    # covariance: the full inverse of A^T W A.
    cov = np.linalg.inv(design.T @ (design * weight[:, None]))
    assert np.abs(fit.covariance - cov).max() < 1e-8 * np.abs(cov).max()
    assert [s.flux_err for s in fit.sources] == pytest.approx(
        np.sqrt(np.diag(cov)[-len(offsets):]), rel=1e-8)
    # model cube = design @ parameters.
    assert fit.model.ravel() == pytest.approx(design @ expected, rel=1e-8, abs=1e-8 * scale)


def test_negative_flux_gives_nan_magnitude_and_a_3_sigma_limit(tmp_path):
    det = make_synthetic_detection(tmp_path, n_exposures=2, target_flux=-300.0, seed=5)
    fit = DetectionPhotometry(det.manifest_path, settings("exact")).fit_single()
    assert fit.flux < 0
    assert fit.flux == pytest.approx(-300.0, abs=4 * fit.flux_err)
    assert math.isnan(fit.mag) and math.isnan(fit.mag_err)
    limit = fit.primary.mag_limit_3sigma
    assert math.isfinite(limit)
    assert limit == pytest.approx(30.0 - 2.5 * math.log10(3 * fit.flux_err), abs=1e-9)


# -- refusals ---------------------------------------------------------------------------------

def test_exposure_without_usable_pixel_makes_the_system_singular(noisy_detection):
    """The sky column of an exposure with no usable pixel is all-zero in the weighted
    design: constructing the scene directly (bypassing the loader's drop) must refuse."""
    manifest = DetectionManifest.read(noisy_detection.manifest_path)
    exposures, _ = load_exposures(manifest)
    dead = replace(exposures[1], weight=np.zeros_like(exposures[1].weight))
    with pytest.raises(FitError, match="sky of"):
        SceneModel([exposures[0], dead, exposures[2]], 0, manifest.ra, manifest.dec,
                   settings("exact"))


def test_two_targets_on_the_same_position_raise_fit_error(noisy_detection):
    phot = DetectionPhotometry(noisy_detection.manifest_path, settings("exact"))
    with pytest.raises(FitError):
        phot.scene.solve([(0.3, 0.2), (0.3, 0.2)])
    with pytest.raises(FitError):
        phot.fit_binary((0.3, 0.3, 0.2, 0.2))
    with pytest.raises(FitError):   # a target far off the stamp touches no usable pixel
        phot.fit_single((200.0, 0.0))


def test_grid_too_large_is_refused_before_allocating(noisy_detection):
    manifest = DetectionManifest.read(noisy_detection.manifest_path)
    exposures, _ = load_exposures(manifest)
    tracemalloc.start()
    try:
        with pytest.raises(ResourceLimitError, match="3000x3000"):
            SceneModel(exposures, 0, manifest.ra, manifest.dec,
                       FitSettings(grid_size=3000))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 1024 ** 2
    # A limit below a normal grid's need is honoured too.
    with pytest.raises(ResourceLimitError):
        SceneModel(exposures, 0, manifest.ra, manifest.dec,
                   FitSettings(grid_size=20, memory_limit_bytes=1024 ** 2))
