"""The position search (variable projection): its derivatives are those of the scene's own
solve, and the binary search ends at the deepest minimum from every start in tens of
solves per start."""
from __future__ import annotations

import numpy as np
import pytest

from smp_model.fit.photometry import DetectionPhotometry
from smp_model.fit.position_search import minimize_positions, profiled_chi2
from smp_model.simulation.detection import simulate_detection


@pytest.fixture(scope="module")
def close_pair(tmp_path_factory):
    """A simulated 1.6 px pair (TAN-SIP WCS, real-sized PSF) and its photometry."""
    truth = simulate_detection(tmp_path_factory.mktemp("close_pair"), seed=21, binary=True,
                               flux=5000.0, flux_ratio=0.7, separation_px=1.6)
    return truth, DetectionPhotometry(truth.manifest_path)


def _central_differences(function, point: np.ndarray, step: float) -> np.ndarray:
    """d function / d point (function's shape + point's size) by central differences."""
    columns = []
    for k in range(point.size):
        delta = np.zeros(point.size)
        delta[k] = step
        shape = point.shape
        columns.append((np.asarray(function(point + delta.reshape(shape)))
                        - np.asarray(function(point - delta.reshape(shape)))) / (2 * step))
    return np.stack(columns, axis=-1)


@pytest.mark.parametrize("offsets", [[[0.4, -0.3]], [[-0.8, 0.2], [0.9, -0.1]]])
def test_profiled_chi2_derivatives_are_those_of_the_solve(close_pair, offsets):
    """Gradient and flux Jacobian against differences of `SceneModel.solve`, which
    re-renders and re-solves everything at each point."""
    _, phot = close_pair
    scene = phot.scene
    offsets = np.array(offsets, float)
    here = profiled_chi2(scene, offsets)
    solution = scene.solve(offsets)
    assert here.chi2 == pytest.approx(solution.chi2, rel=1e-10)
    assert here.fluxes == pytest.approx(solution.target, rel=1e-9)
    assert here.flux_covariance == pytest.approx(solution.target_covariance, rel=1e-8)
    gradient = _central_differences(lambda p: scene.solve(p).chi2, offsets, 1e-3)
    assert np.abs(here.gradient - gradient).max() < 1e-5 * np.abs(gradient).max()
    # the Hessian against differences of that gradient (checked against the solve above)
    hessian = _central_differences(lambda p: profiled_chi2(scene, p).gradient, offsets, 1e-3)
    assert np.abs(here.hessian - hessian).max() < 1e-4 * np.abs(hessian).max()
    jacobian = _central_differences(lambda p: scene.solve(p).target, offsets, 1e-3)
    assert np.abs(here.flux_jacobian - jacobian).max() < 1e-5 * np.abs(jacobian).max()


def test_search_converges_to_a_minimum_in_few_solves(close_pair):
    truth, phot = close_pair
    start = np.round(truth.offsets * 2) / 2
    search = minimize_positions(phot.scene, start)
    assert search.converged and search.n_evaluations < 20
    here = profiled_chi2(phot.scene, search.offsets)
    assert np.all(np.linalg.eigvalsh(here.hessian) > 0)
    assert np.abs(here.newton_step).max() < 1e-4
    for k in range(4):
        for h in (-1e-3, 1e-3):
            moved = search.offsets.ravel().copy()
            moved[k] += h
            assert phot.chi2(moved.reshape(2, 2)) > search.chi2


@pytest.mark.parametrize("start", [(0.0, 0.0, 0.0, 0.0), (3.0, -3.0, 3.0, -3.0)])
def test_binary_search_is_independent_of_the_start(close_pair, start):
    """From the pair on one point (degenerate: no chi2 there) or pixels away, the search
    ends where a start at the rounded truth does, to 1e-4 px."""
    truth, phot = close_pair
    rounded = np.round(truth.offsets * 2) / 2
    reference = phot.optimize_binary((rounded[0, 0], rounded[1, 0], rounded[0, 1],
                                      rounded[1, 1]))
    fit = phot.optimize_binary(start)
    assert fit.chi2 == pytest.approx(reference.chi2, abs=1e-6)
    assert np.abs(fit.offsets - reference.offsets).max() < 1e-4
    # the scan's 252 solves, then tens per start (Powell needed ~1000 in all)
    assert fit.n_chi2_evaluations < 252 + 30 * fit.search_starts


def test_debiased_separation_removes_the_least_squares_bias(tmp_path):
    """100 noise realisations of one 1.5 px pair (flux ratio 0.8, S/N 120 together): the
    least-squares separation is too wide by ~0.4 sigma, the debiased one is not."""
    from smp_model.simulation.config import SimulationConfig
    from smp_model.validation.injection import SimulatedFieldFit

    field = SimulatedFieldFit.create(SimulationConfig(seed=77700, galaxy=False), tmp_path)
    truth = np.array([[-0.6, 0.1], [0.9, 0.1]])
    total = 120 * field.flux_errors(np.zeros((1, 2)))[0]
    fluxes = np.array([total / 1.8, 0.8 * total / 1.8])
    rng = np.random.default_rng(5)
    fitted, debiased = [], []
    for _ in range(100):
        fit = field.realisation(rng, fluxes, truth).optimize_binary(
            (-0.5, 1.0, 0.0, 0.0))
        fitted.append((fit.separation_px - 1.5) / fit.separation_err_px)
        debiased.append((fit.separation_debiased_px - 1.5) / fit.separation_err_px)
    # standard error of each mean ~0.08
    assert np.mean(fitted) > 0.25
    assert abs(np.mean(debiased)) < 0.2
    assert 0.8 < np.std(debiased) < 1.2


@pytest.mark.parametrize("seed", [1, 6])
def test_unresolved_pair_total_flux_is_the_blends(tmp_path, seed):
    """A faint 1.2 px pair: the best binary puts its secondary pixels away on the noise,
    and the sum of the two fluxes misses the pair's by ~3 sigma; the total flux quoted for
    an unresolved pair is that of the pair searched from the close split."""
    truth = simulate_detection(tmp_path, seed=seed, binary=True, flux=2500.0,
                               flux_ratio=0.8, separation_px=1.2)
    fit = DetectionPhotometry(truth.manifest_path).optimize_binary()
    true_total = truth.fluxes.sum()
    assert fit.unresolved and fit.separation_px > 3 and fit.blend is not None
    components = fit.primary.flux + fit.secondary.flux
    assert abs(components - true_total) > 2.5 * fit.total_flux_err
    assert fit.total_flux == fit.blend.total_flux
    assert abs(fit.total_flux - true_total) < 2 * fit.total_flux_err


def test_collapsed_pair_total_flux_is_the_blends(tmp_path):
    """A faint 1.5 px pair whose best binary puts both components on one point, with
    fluxes of +-8e5 that cancel to 1617 for a pair of 2028 (-3 sigma), and no position
    errors: its total flux is that of the pair searched from the close split, and no
    first-order correction is applied to it."""
    truth = simulate_detection(tmp_path, seed=28, binary=True, flux=1300.0,
                               flux_ratio=0.56, separation_px=1.5, galaxy=False)
    fit = DetectionPhotometry(truth.manifest_path).optimize_binary()
    true_total = truth.fluxes.sum()
    assert fit.separation_px < 0.01 and fit.position_errors_undefined and fit.unresolved
    assert min(fit.primary.flux, -fit.secondary.flux) > 100 * true_total
    components = fit.primary.flux + fit.secondary.flux
    assert abs(components - true_total) > 2.5 * fit.total_flux_err
    assert fit.blend is not None and fit.total_flux == fit.blend.total_flux
    assert abs(fit.total_flux - true_total) < 0.5 * fit.total_flux_err
    assert fit.total_flux_debiased == fit.total_flux


def test_separation_below_ten_sigma_is_unresolved(close_pair):
    """Pairs measured at 7-10 sigma are those the noise widened (+0.65 sigma after the
    first-order correction): the 1.6 px pair, its position errors scaled so that its
    separation is 8.5 of its errors, is flagged; at 12 it is not."""
    import dataclasses

    _, phot = close_pair
    fit = phot.optimize_binary()
    assert not fit.unresolved

    def at(significance):
        scale = (fit.separation_px / fit.separation_err_px / significance) ** 2
        return dataclasses.replace(fit, position_covariance=fit.position_covariance * scale,
                                   position_bias=np.zeros((2, 2)))

    assert at(8.5).separation_px / at(8.5).separation_err_px == pytest.approx(8.5)
    assert at(8.5).unresolved
    assert not at(12.0).unresolved


def test_large_flux_bias_is_not_corrected(close_pair):
    """The first-order bias describes the estimate only while it is small against the
    error: beyond half of ``total_flux_err`` the total is quoted uncorrected."""
    import dataclasses

    _, phot = close_pair
    fit = phot.optimize_binary()
    err = fit.total_flux_err
    small = dataclasses.replace(fit, flux_bias=np.array([0.2, 0.2]) * err)
    assert small.total_flux_debiased == pytest.approx(fit.total_flux - 0.4 * err)
    large = dataclasses.replace(fit, flux_bias=np.array([0.4, 0.2]) * err)
    assert large.total_flux_debiased == fit.total_flux


def test_total_flux_debiased_is_the_sum_less_its_first_order_bias(close_pair):
    """A searched pair's ``total_flux_debiased`` (a table column) is the components' sum
    less the sum of their least-squares flux biases; at fixed positions there is no bias
    to correct."""
    from smp_model.outputs.record import fit_record

    truth, phot = close_pair
    fit = phot.optimize_binary()
    assert fit.blend is None and not fit.unresolved
    bias = float(np.sum(fit.flux_bias))
    # high: the least-squares sum of a close pair is biased high by a fraction of its error
    assert 0 < bias < 0.5 * fit.total_flux_err
    assert fit.total_flux_bias == pytest.approx(bias)
    assert fit.total_flux_debiased == pytest.approx(fit.total_flux - bias)
    row = fit_record(fit).rows[0]
    assert row["total_flux_debiased"] == pytest.approx(fit.total_flux_debiased)
    fixed = phot.fit_binary(fit.published_offsets)
    assert np.isnan(fixed.total_flux_debiased)
    assert np.isnan(fit_record(fixed).rows[0]["total_flux_debiased"])


def test_blend_total_flux_is_not_debiased(tmp_path):
    """The blend's total (a second search, conditioned on the best binary having missed
    the pair) is quoted as it is: the expansion about the best binary does not describe
    it (the pair of `test_unresolved_pair_total_flux_is_the_blends`, seed 1)."""
    truth = simulate_detection(tmp_path, seed=1, binary=True, flux=2500.0,
                               flux_ratio=0.8, separation_px=1.2)
    fit = DetectionPhotometry(truth.manifest_path).optimize_binary()
    assert fit.blend is not None
    assert fit.total_flux_debiased == fit.total_flux
