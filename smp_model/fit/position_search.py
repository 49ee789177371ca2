"""Searching the target's positions: the chi2 with the fluxes solved exactly, minimised over
the positions alone.

The scene's chi2 is linear in every flux and smooth in the target's positions, so the
fluxes are profiled out exactly at every step (variable projection) and a trust-region
Newton method moves only the positions (2 per source), with the exact gradient of the
profiled chi2 and its exact Hessian, both from the target stamps' first and second
position derivatives (`SceneModel.target_stamps_with_derivatives`).  A search then needs
tens of solves where Powell's derivative-free search needed hundreds.

Offsets are detection-exposure pixels from the target's WCS position, in the convention's
frame; chi2 gradients are per pixel of offset.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg
from scipy.optimize import minimize

from ..errors import FitError
from ..blas import single_threaded_blas
from ..scene.model import MAX_CONDITION, SceneModel

__all__ = ["GRADIENT_TOLERANCE", "MAX_ITERATIONS", "STEP_TOLERANCE", "PositionSearch",
           "ProfiledChi2", "least_squares_bias", "minimize_positions", "pair_chi2",
           "profiled_chi2"]

# A search has converged when the Newton step left is below STEP_TOLERANCE px on every
# coordinate (the published Powell searches stopped at xtol 0.001-0.01 px) or the chi2
# gradient is below GRADIENT_TOLERANCE per px (flat directions of an unresolved pair, where
# the Newton step means nothing).
STEP_TOLERANCE = 1e-5
GRADIENT_TOLERANCE = 1e-6
MAX_ITERATIONS = 100
# First trust radius (px, over all coordinates): about a PSF core.
INITIAL_TRUST_RADIUS = 0.5


@dataclass(frozen=True)
class ProfiledChi2:
    """The chi2 at fixed target positions with all fluxes solved, and its derivatives.

    Attributes
    ----------
    chi2 : float
        inf where the target fluxes are not identifiable.
    fluxes : numpy.ndarray
        (n_t,) target fluxes, zeropoint 30.
    flux_covariance : numpy.ndarray
        (n_t, n_t) their covariance at these fixed positions.
    gradient : numpy.ndarray
        (2 n_t,) d chi2 / d offsets, flattened like ``offsets.ravel()`` (per px).
    hessian : numpy.ndarray
        (2 n_t, 2 n_t) d2 chi2 / d offsets^2 (per px^2), the fluxes' change with the
        positions included.
    flux_jacobian : numpy.ndarray
        (n_t, 2 n_t) d fluxes / d offsets (per px).
    position_bias, flux_bias : numpy.ndarray
        (n_t, 2) px and (n_t,): the first-order bias of the least-squares positions and
        fluxes if these were the true ones (`least_squares_bias`).
    """

    chi2: float
    fluxes: np.ndarray
    flux_covariance: np.ndarray
    gradient: np.ndarray
    hessian: np.ndarray
    flux_jacobian: np.ndarray
    position_bias: np.ndarray
    flux_bias: np.ndarray

    @property
    def newton_step(self) -> np.ndarray:
        """The Newton step (px) from here; inf where the Hessian is not positive-definite
        (no minimum nearby to step to)."""
        try:
            return -scipy.linalg.cho_solve(scipy.linalg.cho_factor(self.hessian),
                                           self.gradient)
        except (np.linalg.LinAlgError, ValueError):   # not positive-definite, or NaN
            return np.full_like(self.gradient, math.inf)


def profiled_chi2(scene: SceneModel, offsets: np.ndarray) -> ProfiledChi2:
    """`ProfiledChi2` of target sources at ``offsets`` (n_t, 2) px.

    The chi2 is min over the linear parameters theta of ``phi(p, theta) = |y - X(p)
    theta|^2_W``; its derivatives follow from phi's at the solved theta: gradient
    ``phi_p``, Hessian ``phi_pp - phi_p.theta phi_theta.theta^-1 phi_theta.p``.  With T
    the unit-flux target stamps, U and V their first and second position derivatives (per
    source), f the fluxes, e the residual and P the projection out of the scene and T, per
    position coordinates k, l (of sources t(k), t(l))::

        gradient_k = -2 f_t(k) a_k,            a = U^T W e
        hessian_kl = 2 f_k f_l (U^T W P U)_kl - 2 [t(k) = t(l)] f_t (V^T W e)_kl
                     + 2 (a_k f_l B_t(k),l + a_l f_k B_t(l),k) - 2 a_k a_l C_t(k),t(l)

    with C the fluxes' covariance and B = C (T^T W P' U) the regression of U on T after
    the scene is profiled out (P'); everything from `SceneModel.profiled_terms`.
    """
    offsets = np.atleast_2d(np.asarray(offsets, float))
    n_t = offsets.shape[0]
    stamps, first, second = scene.target_stamps_with_derivatives(offsets)
    # second derivatives xx, xy, yy per source
    curvature = second.reshape(n_t, 4, *scene.shape)[:, [0, 1, 3]]
    gram, data = scene.profiled_terms(np.concatenate(
        [stamps, first.reshape(-1, *scene.shape), curvature.reshape(-1, *scene.shape)]))
    t, u, v = slice(0, n_t), slice(n_t, 3 * n_t), slice(3 * n_t, None)
    try:
        factor = _identifiable_factor(gram[t, t])
    except FitError:
        nan = np.full(2 * n_t, math.nan)
        return ProfiledChi2(math.inf, np.full(n_t, math.nan), np.full((n_t, n_t), math.nan),
                            nan, np.diag(nan), np.full((n_t, 2 * n_t), math.nan),
                            np.full((n_t, 2), math.nan), np.full(n_t, math.nan))
    fluxes = scipy.linalg.cho_solve(factor, data[t])
    covariance = scipy.linalg.cho_solve(factor, np.eye(n_t))
    chi2 = scene.chi2_static - float(data[t] @ fluxes)
    source = np.repeat(np.arange(n_t), 2)                      # t(k)
    f = fluxes[source]
    a = data[u] - gram[u, t] @ fluxes                          # U^T W e
    b_v = (data[v] - gram[v, t] @ fluxes).reshape(n_t, 3)      # V^T W e: xx, xy, yy
    regression = covariance @ gram[t, u]                       # B (n_t, 2 n_t)
    projected = gram[u, u] - gram[u, t] @ regression           # U^T W P U
    hessian = 2.0 * f[:, None] * projected * f[None, :]
    for k in range(n_t):
        xx, xy, yy = b_v[k]
        hessian[2 * k:2 * k + 2, 2 * k:2 * k + 2] -= 2.0 * fluxes[k] * np.array(
            [[xx, xy], [xy, yy]])
    cross = a[:, None] * f[None, :] * regression[source, :]    # a_k f_l B_t(k),l
    hessian += 2.0 * (cross + cross.T) - 2.0 * np.outer(a, a) * covariance[np.ix_(source,
                                                                                  source)]
    jacobian = -(regression * f[None, :]) + covariance[:, source] * a[None, :]
    bias = least_squares_bias(gram, fluxes)
    return ProfiledChi2(chi2=chi2, fluxes=fluxes, flux_covariance=covariance,
                        gradient=-2.0 * f * a, hessian=hessian, flux_jacobian=jacobian,
                        position_bias=bias[:2 * n_t].reshape(n_t, 2), flux_bias=bias[2 * n_t:])


def least_squares_bias(gram: np.ndarray, fluxes: np.ndarray) -> np.ndarray:
    """First-order bias of the least-squares target positions and fluxes (Box 1971,
    J. R. Stat. Soc. B 33, 171): ``-1/2 M J^T W d`` with M the covariance of the
    parameters theta = (offsets (2 n_t), fluxes (n_t)) once the scene is profiled out, J
    the model's derivatives and ``d_i = tr(M H_i)``, H_i the Hessian of pixel i's model
    in theta.  The model ``sum_t f_t T_t(p_t)`` has second derivatives f_t V (positions,
    per source) and U (position and flux), so d is a combination of the stamps' first and
    second derivatives and the whole expression comes from their profiled Gram matrix
    ``gram`` over [T, U, V] (the columns of `profiled_chi2`).  Returns the (3 n_t,) bias
    of theta, zero for a linear model; NaN where M is undefined.  Valid while it is small
    against the parameters' errors (the estimate's distribution nearly Gaussian)."""
    n_t = fluxes.size
    t, u, v = slice(0, n_t), slice(n_t, 3 * n_t), slice(3 * n_t, None)
    f = np.repeat(fluxes, 2)
    fisher = np.block([[f[:, None] * gram[u, u] * f[None, :], f[:, None] * gram[u, t]],
                       [gram[t, u] * f[None, :], gram[t, t]]])
    try:
        cov = np.linalg.inv(fisher)
    except np.linalg.LinAlgError:
        return np.full(3 * n_t, math.nan)
    p = 2 * n_t
    on_v, on_u = np.zeros(3 * n_t), np.zeros(2 * n_t)
    for k in range(n_t):
        x, y = 2 * k, 2 * k + 1
        on_v[3 * k:3 * k + 3] = fluxes[k] * np.array([cov[x, x], 2 * cov[x, y], cov[y, y]])
        on_u[[x, y]] = 2 * cov[[x, y], p + k]
    # J^T W P d, P projecting out the static scene: J = [f U, T]
    projected = np.concatenate([f * (gram[u, v] @ on_v + gram[u, u] @ on_u),
                                gram[t, v] @ on_v + gram[t, u] @ on_u])
    return -0.5 * cov @ projected


def _identifiable_factor(gram: np.ndarray):
    """Cholesky factor of the targets' profiled Gram matrix; `FitError` where the target
    fluxes are degenerate (sources on top of each other), as `SceneModel.solve` refuses."""
    d = np.sqrt(np.diag(gram))
    if not np.all(d > 0) or np.linalg.eigvalsh(gram / np.outer(d, d))[0] <= 1 / MAX_CONDITION:
        raise FitError("the target fluxes are degenerate at these positions", "fit")
    return scipy.linalg.cho_factor(gram, lower=True, check_finite=False)


@dataclass(frozen=True)
class PositionSearch:
    """Where a search ended: ``offsets`` (n_t, 2) px, their ``chi2``, the number of chi2
    evaluations (each a solve with derivatives) and whether it ``converged``."""

    offsets: np.ndarray
    chi2: float
    n_evaluations: int
    converged: bool


def minimize_positions(scene: SceneModel, start: np.ndarray,
                       step_tolerance: float = STEP_TOLERANCE) -> PositionSearch:
    """Minimise the profiled chi2 over the target offsets from ``start`` (n_t, 2) px with
    scipy's exact trust-region method (``trust-exact``) on `profiled_chi2`."""
    start = np.atleast_2d(np.asarray(start, float))
    shape = start.shape
    cache: dict[bytes, ProfiledChi2] = {}

    def at(p: np.ndarray) -> ProfiledChi2:
        key = p.tobytes()
        if key not in cache:
            cache[key] = profiled_chi2(scene, p.reshape(shape))
        return cache[key]

    def converged(result) -> bool:
        here = at(np.asarray(result.x, float))
        if not math.isfinite(here.chi2):
            return False
        return bool(np.linalg.norm(here.gradient) < GRADIENT_TOLERANCE
                    or np.max(np.abs(here.newton_step)) < step_tolerance)

    def stop(intermediate_result):
        if converged(intermediate_result):
            raise StopIteration

    n = start.size

    def gradient(p):   # a degenerate point (chi2 inf) is only ever rejected, but
        here = at(p)   # trust-exact takes norms of its derivatives: finite stand-ins
        return here.gradient if math.isfinite(here.chi2) else np.zeros(n)

    def hessian(p):
        here = at(p)
        return here.hessian if math.isfinite(here.chi2) else np.eye(n)

    with single_threaded_blas(), np.errstate(invalid="ignore", over="ignore"):
        result = minimize(lambda p: at(p).chi2, start.ravel(), method="trust-exact",
                          jac=gradient, hess=hessian,
                          callback=stop,
                          options={"gtol": GRADIENT_TOLERANCE, "maxiter": MAX_ITERATIONS,
                                   "initial_trust_radius": INITIAL_TRUST_RADIUS})
    best = np.asarray(result.x, float)
    return PositionSearch(offsets=best.reshape(shape), chi2=float(at(best).chi2),
                          n_evaluations=len(cache), converged=converged(result))


def pair_chi2(scene: SceneModel, pairs: np.ndarray) -> np.ndarray:
    """Profiled chi2 (k,) of k two-source targets at ``pairs`` (k, 2, 2) px, in one pass:
    the distinct source positions are rendered once and their profiled Gram matrix gives
    every pair's 2x2 solve (inf where a pair is degenerate)."""
    pairs = np.asarray(pairs, float)
    unique, index = np.unique(pairs.reshape(-1, 2), axis=0, return_inverse=True)
    index = index.reshape(-1, 2)
    with single_threaded_blas():
        gram, data = scene.profiled_terms(scene.render_target_sources(unique))
    i, j = index[:, 0], index[:, 1]
    a, b, c = gram[i, i], gram[i, j], gram[j, j]
    zi, zj = data[i], data[j]
    det = a * c - b * b
    # chi2_static - z^T G^-1 z for each 2x2 block
    explained = (c * zi ** 2 - 2 * b * zi * zj + a * zj ** 2) / np.where(det > 0, det, 1.0)
    identifiable = (a > 0) & (c > 0) & (det > (1 / MAX_CONDITION) * a * c)
    return np.where(identifiable, scene.chi2_static - explained, math.inf)
