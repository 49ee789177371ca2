"""The scene model: a fixed-sky grid of point sources, one sky level per exposure and the
moving target (one or two point sources) in the detection exposure.

Pixel p of exposure mu is modelled as

    M[mu, p] = sum_k a_k P_mu(x_p - x_k,mu) + s_mu + [mu == det] sum_t f_t P_mu(x_p - x_t)

with fluxes on the common zeropoint 30.  The static part (grid amplitudes ``a`` and skies
``s``) does not depend on where the target is, so its normal matrix is built and factorised
once; moving the target only changes the few target columns, and a refit is a Schur-
complement update that costs well under a millisecond.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from ..blas import single_threaded_blas
from ..errors import FitError
from ..limits import MAX_REDUCED_CHI2, memory_refusal
from ..psf.oversampled import OversampledPSF
from ..settings import FitSettings
from ..wcs.transforms import local_jacobians, sky_from_tangent
from .conditioning import MAX_CONDITION, MAX_TARGET_CUT_SHARE, Conditioning, factorise_static
from .exposures import LoadedExposure

__all__ = ["DERIVATIVE_STEP", "DISTORTION_STEP", "MAX_CONDITION", "LinearSolution", "Progress",
           "SceneModel", "grid_offsets_arcsec",
           "grid_sky_positions"]

# Step (px) of the central differences that give the target stamps' position derivatives.
DERIVATIVE_STEP = 1e-4
# Step (px) of the central differences that give the WCS distortion's slope there.
DISTORTION_STEP = 1e-2

Progress = Callable[[float, str], None]

# Threads that render a scene's exposures (`SceneModel._render_all`): one per core of the
# 2-core machines it is tuned on; more would only queue for the GIL.
_RENDER_THREADS = 2


class _NormalMatrix:
    """The static normal matrix A^T W A of ``scene``, summed exposure by exposure
    (`add`, in the exposures' order: one order, one rounding) from the pixels with
    non-zero weight.

    Each share is B^T B with B = W^1/2 A so that numpy hands it to BLAS ``syrk`` (half the
    work of a general product; and unlike scipy's BLAS wrappers it releases the GIL).  B
    and the share go through work arrays: new ones per exposure cost more in page faults
    than the scaling itself."""

    def __init__(self, scene: "SceneModel"):
        self._scene = scene
        rows = scene.rows[0]
        n_params = scene.static_design.shape[1]
        self._work = np.empty((rows.stop - rows.start, n_params))
        self._share = np.empty((n_params, n_params))
        self.total: np.ndarray | None = None

    def add(self, m: int) -> None:
        """Add exposure m's share."""
        scene = self._scene
        rows = scene.rows[m]
        weight = scene.weight[rows]
        used = weight > 0
        scaled = self._work[:np.count_nonzero(used)]
        np.compress(used, scene.static_design[rows], axis=0, out=scaled)
        scaled *= np.sqrt(weight[used])[:, None]
        share = np.matmul(scaled.T, scaled, out=self._share)
        if self.total is None:
            self.total = share.copy()
        else:
            self.total += share


def grid_offsets_arcsec(settings: FitSettings) -> tuple[np.ndarray, np.ndarray]:
    """Tangent-plane (u, v) offsets of the grid sources, arcsec, flattened (n*n,)."""
    n, s = settings.grid_size, settings.grid_step_arcsec
    axis = np.linspace(-s * n / 2, s * n / 2, n)
    uu, vv = np.meshgrid(axis, axis)
    return uu.ravel(), vv.ravel()


def grid_sky_positions(ra: float, dec: float, settings: FitSettings):
    """(ra, dec) in degrees of the grid sources about the detection position."""
    u, v = grid_offsets_arcsec(settings)
    return sky_from_tangent(u, v, ra, dec)


@dataclass(frozen=True, eq=False)
class LinearSolution:
    """Result of one weighted least-squares solve at fixed target positions.

    ``static`` are the grid amplitudes followed by the skies, ``target`` the target fluxes
    (zeropoint 30); ``target_covariance`` their covariance with everything else profiled.
    ``target_cut_share``: per target, the share of its information that lies in static
    directions fixed at 0 (`SceneModel.conditioning`; 0 when none were).
    """

    static: np.ndarray
    target: np.ndarray
    target_covariance: np.ndarray
    chi2: float
    target_cut_share: np.ndarray | None = None


class SceneModel:
    """Design matrix of a detection at fixed settings, factorised for fast target updates.

    Parameters
    ----------
    exposures : the usable exposures (`load_exposures`).
    detection_index : index of the detection exposure in ``exposures``.
    ra, dec : detection position, degrees (the grid centre).
    settings : `FitSettings`.
    """

    def __init__(self, exposures: Sequence[LoadedExposure], detection_index: int,
                 ra: float, dec: float, settings: FitSettings = FitSettings(),
                 progress: Progress | None = None):
        self.exposures = list(exposures)
        self.detection_index = detection_index
        self.settings = settings
        self.convention = settings.pixel_convention
        self._check_memory()   # before anything grid-sized is allocated
        self.grid_ra, self.grid_dec = grid_sky_positions(ra, dec, settings)
        self.shape = self.exposures[0].shape
        npix = self.shape[0] * self.shape[1]
        n_exp = len(self.exposures)
        self.n_grid = self.grid_ra.size
        self.n_sky = n_exp if settings.fit_sky else 0
        self.rows = [slice(m * npix, (m + 1) * npix) for m in range(n_exp)]
        self.data = np.concatenate([ex.image.ravel() for ex in self.exposures])
        self.weight = np.concatenate([ex.weight.ravel() for ex in self.exposures])
        self.renderers: list[OversampledPSF] = [None] * n_exp
        self._last_target_stamps: tuple[bytes, np.ndarray] | None = None
        self.sampling_origins: list[tuple[int, int]] = [None] * n_exp
        self.grid_xy: list[tuple[np.ndarray, np.ndarray]] = [None] * n_exp
        # The WCS Jacobian at each exposure's target, the one its renderer's profile was
        # made with (once per scene: a DES WCS costs ~0.3 ms a call, and every refit of the
        # target asked for it again); set by `_render_exposure`.
        self._reference_jacobians: list[np.ndarray] = [None] * n_exp
        self.static_design = np.zeros((n_exp * npix, self.n_grid + self.n_sky))
        self._render_all(progress)

    # -- construction -----------------------------------------------------------------

    def _render_all(self, progress: Progress | None) -> None:
        """Render every exposure's grid into the design and factorise the normal matrix.

        The exposures are rendered on `_RENDER_THREADS` threads: the spline evaluation
        (``map_coordinates``) and numpy's operations on the stamps release the GIL, so one
        exposure's spline runs while another's Python (WCS, PSF profile) does.  Each
        exposure only touches its own rows, renderer and WCS.  Each exposure's share of the
        normal matrix is multiplied by BLAS (which releases the GIL too) on one more
        thread, in the exposures' order (one order, one rounding), as soon as its rendering
        is done.  Band-limited renderers multiply small matrices: BLAS on one thread."""
        n_exp = len(self.exposures)
        normal = _NormalMatrix(self)
        with single_threaded_blas(), \
                ThreadPoolExecutor(max_workers=_RENDER_THREADS) as render_pool, \
                ThreadPoolExecutor(max_workers=1) as sum_pool:
            renders = [render_pool.submit(self._render_exposure, m, ex)
                       for m, ex in enumerate(self.exposures)]
            try:
                shares = []
                for m, (ex, render) in enumerate(zip(self.exposures, renders)):
                    if progress:   # in the caller's thread; it may raise to cancel
                        progress(m / n_exp, f"rendering PSF grid of {ex.entry.label}")
                    render.result()
                    shares.append(sum_pool.submit(normal.add, m))   # one worker: in order
                for share in shares:
                    share.result()
            except BaseException:
                for render in renders:   # those not started; the pools wait for the rest
                    render.cancel()
                raise
            if progress:
                progress(1.0, "factorising the normal matrix")
            self._factorise(normal.total)

    def _check_memory(self):
        error = memory_refusal(len(self.exposures), self.exposures[0].image.size,
                               self.settings.grid_size, self.settings.memory_limit_bytes,
                               "grid")
        if error is not None:
            raise error

    def _render_exposure(self, m: int, ex: LoadedExposure):
        gx, gy = ex.sky_to_pixel(self.grid_ra, self.grid_dec)
        origin = self.convention.sampling_origin(ex.origin, ex.target_xy, ex.shape)
        ny, nx = ex.shape
        # Farthest any stamp pixel lies from any grid source or the target (+2 px for
        # target offsets); the PSF's own support usually bounds it much sooner.
        far_x = np.max(np.abs(np.r_[gx, ex.target_xy[0]][:, None]
                              - (origin[0] + np.array([0, nx - 1]))[None, :]))
        far_y = np.max(np.abs(np.r_[gy, ex.target_xy[1]][:, None]
                              - (origin[1] + np.array([0, ny - 1]))[None, :]))
        renderer = OversampledPSF(ex.psf.pixel_profile(*ex.target_xy),
                                  max(far_x, far_y) + 2, self.settings.oversampling,
                                  normalization=self.settings.psf_normalization)
        self.renderers[m] = renderer
        self.sampling_origins[m] = origin
        self.grid_xy[m] = (gx, gy)
        self._reference_jacobians[m] = local_jacobians(ex.psf.wcs, *ex.target_xy,
                                                       color=ex.color_gi)[0]
        block = self.static_design[self.rows[m]]
        # Drawn straight into the design's columns (as the convention orients them): a
        # view, so no stamp-sized copies.
        columns = self.convention.orient_background(block[:, :self.n_grid].T.reshape(
            self.n_grid, *ex.shape))
        renderer.render(gx, gy, origin, ex.shape, self._distortions(m, gx, gy), out=columns)
        if self.n_sky:
            block[:, self.n_grid + m] = 1.0

    def _distortions(self, m: int, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
        """``J_target^-1 J_k`` for sources at CCD (cx, cy) of exposure m: the renderer's
        profile is the PSF seen through the Jacobian at the target, and each source is
        imaged through the Jacobian at its own centre (as Piff's ``draw`` does)."""
        ex = self.exposures[m]
        return np.linalg.solve(self._reference_jacobians[m],
                               local_jacobians(ex.psf.wcs, cx, cy, color=ex.color_gi))

    def _factorise(self, normal: np.ndarray | None = None):
        """Factor the static normal matrix (`smp_model.scene.conditioning`: Cholesky, or
        with the directions no pixel constrains fixed at 0); ``normal``: that matrix, when
        already computed (`_static_normal_matrix`)."""
        self.conditioning: Conditioning
        self._static_solver, self.conditioning = factorise_static(
            self._static_normal_matrix() if normal is None else normal, self.n_grid,
            self._describe_params)
        self._set_data_terms()

    @property
    def condition_number(self) -> float:
        """Condition-number estimate of the Jacobi-scaled static normal matrix."""
        return self.conditioning.condition_number

    def _static_normal_matrix(self) -> np.ndarray:
        """A^T W A over the static columns, from the pixels with non-zero weight: the sum
        of the exposures' shares, in their order (`_NormalMatrix`)."""
        normal = _NormalMatrix(self)
        for m in range(len(self.exposures)):
            normal.add(m)
        return normal.total

    def _set_data_terms(self):
        """The data-dependent terms of the normal equations (the factor is not)."""
        self._rhs_static = self.static_design.T @ (self.weight * self.data)
        self._ywy = float(self.data @ (self.weight * self.data))
        self._static_solution = self._solve_static(self._rhs_static)
        # chi2 of the static scene alone (no target source)
        self.chi2_static = float(self._ywy - self._static_solution @ self._rhs_static)

    def with_weights(self, weight: np.ndarray) -> "SceneModel":
        """The same design and data with other inverse variances (flattened like
        ``weight``), factorised anew; the rendered PSF columns are shared, not copied."""
        weight = np.asarray(weight, float)
        if weight.shape != self.weight.shape:
            raise ValueError(f"weights of shape {weight.shape}, expected {self.weight.shape}")
        new = copy.copy(self)
        new.weight = weight
        with single_threaded_blas():
            new._factorise()
        return new

    def with_data(self, images: Sequence[np.ndarray]) -> "SceneModel":
        """The same design and weights with other images (another noise realisation, an
        injected source): shares the rendered columns and the factorisation and only
        recomputes the data terms (about a millisecond instead of a rebuild).

        ``images``: one (ny, nx) array per exposure, in the order of ``exposures``, on
        zeropoint 30 like `LoadedExposure.image`; pixels of weight 0 are ignored.  The new
        model's ``exposures`` carry the new images.
        """
        if len(images) != len(self.exposures):
            raise ValueError(f"expected {len(self.exposures)} images, got {len(images)}")
        exposures = []
        for ex, image, rows in zip(self.exposures, images, self.rows):
            image = np.asarray(image, float)
            if image.shape != ex.shape:
                raise ValueError(f"image of shape {image.shape} for {ex.entry.label}, "
                                 f"expected {ex.shape}")
            usable = self.weight[rows].reshape(ex.shape) > 0
            exposures.append(dataclasses.replace(ex, image=np.where(usable, image, 0.0)))
        new = copy.copy(self)
        new.exposures = exposures
        new.data = np.concatenate([ex.image.ravel() for ex in exposures])
        with single_threaded_blas():
            new._set_data_terms()
        return new

    def _describe_params(self, idx: np.ndarray) -> str:
        names = [f"grid source {i}" if i < self.n_grid
                 else f"sky of {self.exposures[i - self.n_grid].entry.label}" for i in idx[:3]]
        return ", ".join(names) + (" ..." if idx.size > 3 else "")

    def _solve_static(self, rhs: np.ndarray) -> np.ndarray:
        """N_bb^-1 rhs through the scaled factor (rhs (P,) or (P, k)); with directions
        fixed at 0, the pseudo-inverse over the others."""
        return self._static_solver.solve(rhs)

    # -- target -----------------------------------------------------------------------

    @property
    def detection(self) -> LoadedExposure:
        return self.exposures[self.detection_index]

    def target_centers(self, offsets: np.ndarray) -> np.ndarray:
        """CCD centres (n_t, 2) of target sources at pixel offsets (n_t, 2) from the
        detection's WCS position in the detection exposure."""
        return np.asarray(self.detection.target_xy)[None, :] + np.asarray(offsets, float)

    def target_stamps(self, offsets) -> np.ndarray:
        """Unit-flux target stamps (n_t, ny, nx) in the detection exposure (read-only).

        The last result is kept: a fit needs the stamps of one set of offsets twice (normal
        equations, then the model), and a drag asks for nothing else."""
        offsets = np.atleast_2d(np.asarray(offsets, float))
        key = offsets.tobytes()
        last = self._last_target_stamps   # one read: another thread may replace it
        if last is not None and last[0] == key:
            return last[1]
        stamps = self.render_target_sources(offsets)
        stamps.flags.writeable = False
        self._last_target_stamps = (key, stamps)
        return stamps

    def target_stamps_with_derivatives(self, offsets, step: float = DERIVATIVE_STEP
                                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unit-flux target stamps T (n_t, ny, nx) and their first and second derivatives
        with respect to the sources' offsets: dT/d(dx, dy) (n_t, 2, ny, nx) and
        d2T/d(dx, dy)^2 (n_t, 2, 2, ny, nx), per px and px^2.

        Central differences of ``step`` px, all drawn in one rendering call; the renderer
        is a cubic spline, smooth to its second derivative, so the differences are exact
        to ~1e-7 of the derivatives."""
        offsets = np.atleast_2d(np.asarray(offsets, float))
        n_t = offsets.shape[0]
        moves = step * np.array([[1, 0], [-1, 0], [0, 1], [0, -1],
                                 [1, 1], [1, -1], [-1, 1], [-1, -1]], float)
        shifted = (offsets[:, None, :] + moves[None, :, :]).reshape(-1, 2)
        drawn = self.render_target_sources(
            np.concatenate([offsets, shifted]),
            self._linearised_distortions(offsets, moves))
        stamps = drawn[:n_t]
        xp, xm, yp, ym, pp, pm, mp, mm = np.moveaxis(
            drawn[n_t:].reshape(n_t, len(moves), *self.shape), 1, 0)
        first = np.stack([xp - xm, yp - ym], axis=1) / (2 * step)
        xx = (xp - 2 * stamps + xm) / step ** 2
        yy = (yp - 2 * stamps + ym) / step ** 2
        xy = (pp - pm - mp + mm) / (4 * step ** 2)
        second = np.stack([np.stack([xx, xy], 1), np.stack([xy, yy], 1)], axis=1)
        return stamps, first, second

    def _linearised_distortions(self, offsets: np.ndarray, moves: np.ndarray) -> np.ndarray:
        """`_distortions` of sources at ``offsets`` (n, 2) followed by those of each source
        moved by each of ``moves`` (k, 2) px, (n (1 + k), 2, 2), the latter from the
        distortion's slope at the source (central differences of DISTORTION_STEP px).

        A DES WCS's local Jacobian changes by ~1e-3 per pixel, which the derivatives must
        see, but its evaluation rounds at ~1e-10, which second differences of a 1e-4 px
        step would amplify to the size of the derivatives themselves."""
        n = offsets.shape[0]
        h = DISTORTION_STEP
        stencil = np.array([[0, 0], [h, 0], [-h, 0], [0, h], [0, -h]])
        centers = (self.target_centers(offsets)[:, None, :] + stencil[None]).reshape(-1, 2)
        a = self._distortions(self.detection_index, centers[:, 0], centers[:, 1]
                              ).reshape(n, 5, 2, 2)
        slope_x, slope_y = (a[:, 1] - a[:, 2]) / (2 * h), (a[:, 3] - a[:, 4]) / (2 * h)
        moved = (a[:, None, 0] + moves[None, :, 0, None, None] * slope_x[:, None]
                 + moves[None, :, 1, None, None] * slope_y[:, None])
        return np.concatenate([a[:, 0], moved.reshape(-1, 2, 2)])

    def render_target_sources(self, offsets, distortions: np.ndarray | None = None
                              ) -> np.ndarray:
        """Unit-flux stamps (k, ny, nx) of point sources at ``offsets`` (k, 2) px in the
        detection exposure, drawn as the target's (uncached: for searches and scans);
        ``distortions`` (k, 2, 2): the sources' `_distortions` when already known."""
        centers = self.target_centers(np.atleast_2d(offsets))
        m = self.detection_index
        if distortions is None:
            distortions = self._distortions(m, centers[:, 0], centers[:, 1])
        return self.renderers[m].render(centers[:, 0], centers[:, 1], self.sampling_origins[m],
                                        self.shape, distortions)

    def profiled_terms(self, stamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normal-equation terms of extra columns in the detection exposure with the static
        scene profiled out: for k stamps C (k, ny, nx), the Gram matrix
        ``G = C^T W C - N_cb N_bb^-1 N_bc`` (k, k) and ``z = C^T W y - N_cb b0`` (k,),
        with b0 the static solution without target.  Target fluxes at those columns are
        ``G^-1 z`` and the chi2 is ``chi2_static - z^T G^-1 z`` (`chi2_static`)."""
        rows = self.rows[self.detection_index]
        cols = np.asarray(stamps).reshape(len(stamps), -1).T          # (npix, k)
        wcols = cols * self.weight[rows][:, None]
        n_bc = self.static_design[rows].T @ wcols
        gram = cols.T @ wcols - n_bc.T @ self._solve_static(n_bc)
        data = wcols.T @ self.data[rows] - n_bc.T @ self._static_solution
        return gram, data

    def solve(self, offsets) -> LinearSolution:
        with single_threaded_blas():
            return self._solve(offsets)

    def _solve(self, offsets) -> LinearSolution:
        """Weighted least squares with targets at ``offsets`` (n_t, 2), pixels.

        Partitioned solve: with N the normal matrix, b the static and t the target
        parameters, t = S^-1 (r_t - N_tb N_bb^-1 r_b) with the Schur complement
        S = N_tt - N_tb N_bb^-1 N_bt, and Cov(t) = S^-1.
        """
        n_bt, n_tt, r_t = self._target_normal_terms(offsets)
        x = self._solve_static(n_bt)
        schur = n_tt - n_bt.T @ x
        self._check_target_identifiable(schur, n_tt)
        cut_share = self._checked_cut_share(n_bt, schur)
        target_cov = np.linalg.inv(schur)
        target = target_cov @ (r_t - n_bt.T @ self._static_solution)
        static = self._static_solution - x @ target
        chi2 = float(self._ywy - static @ self._rhs_static - target @ r_t)
        self._check_plausible(target, chi2)
        return LinearSolution(static=static, target=target, target_covariance=target_cov,
                              chi2=chi2, target_cut_share=cut_share)

    def _check_plausible(self, target: np.ndarray, chi2: float) -> None:
        """Refuse results that only absurd data give (a SCI of 1e38, a WGT of 1e300):
        non-finite numbers, or a model off by ~1000 sigma in every pixel."""
        dof = max(self.dof(target.size), 1)
        if np.all(np.isfinite(target)) and math.isfinite(chi2) \
                and chi2 <= MAX_REDUCED_CHI2 * dof:
            return
        raise FitError(f"implausible fit (chi2/dof = {chi2 / dof:.3g}, target flux(es) "
                       f"{', '.join(f'{f:.3g}' for f in target)}): the stamps' SCI or WGT "
                       "values are not plausible (units? corrupt data?)",
                       self.detection.entry.stamp)

    def _check_target_identifiable(self, schur: np.ndarray, n_tt: np.ndarray):
        d = np.diag(n_tt)
        if np.any(d <= 0):
            raise FitError("a target source falls on no usable pixel of the detection "
                           "exposure", self.detection.entry.label)
        scaled = schur / np.sqrt(np.outer(d, d))
        eig = np.linalg.eigvalsh(scaled)
        if not eig[0] > 1.0 / MAX_CONDITION:
            raise FitError("the target flux(es) are degenerate with the scene model at these "
                           "positions (two sources on top of each other?)",
                           self.detection.entry.label)

    def _checked_cut_share(self, n_bt: np.ndarray, schur: np.ndarray) -> np.ndarray:
        """The targets' share of information in the static directions fixed at 0
        (`smp_model.scene.conditioning`); refuses targets that depend on them."""
        share = self._static_solver.cut_share(n_bt, schur)
        if np.any(share > MAX_TARGET_CUT_SHARE):
            c = self.conditioning
            raise FitError(f"the scene is ill-conditioned (condition number "
                           f"{c.condition_number:.3g}) and the target flux is not determined "
                           f"without the {c.n_fixed} scene direction(s) that the data do not "
                           f"constrain: {100 * share.max():.2g} % of its information lies "
                           "in them; reduce the grid size or increase the grid step",
                           self.detection.entry.label)
        return share

    def _target_normal_terms(self, offsets):
        """N_bt (P, n_t), N_tt (n_t, n_t) and r_t (n_t,) of targets at ``offsets``: only
        the detection exposure's rows carry target columns."""
        offsets = np.atleast_2d(np.asarray(offsets, float))
        rows = self.rows[self.detection_index]
        cols = self.target_stamps(offsets).reshape(offsets.shape[0], -1).T   # (npix, n_t)
        wcols = cols * self.weight[rows][:, None]
        return (self.static_design[rows].T @ wcols, cols.T @ wcols,
                wcols.T @ self.data[rows])

    def full_covariance(self, offsets, solution: LinearSolution) -> np.ndarray:
        """Covariance of all parameters (grid amplitudes, skies, target fluxes: the order of
        `SceneFit.parameters`) by block inversion around the factorised static part."""
        n_bt, _, _ = self._target_normal_terms(offsets)
        x = self._solve_static(n_bt)
        n_bb_inv = self._solve_static(np.eye(n_bt.shape[0]))
        s_inv = solution.target_covariance
        cov_bb = n_bb_inv + x @ s_inv @ x.T
        cov_bt = -x @ s_inv
        return np.block([[cov_bb, cov_bt], [cov_bt.T, s_inv]])

    def model_stamps(self, offsets, solution: LinearSolution) -> tuple[np.ndarray, np.ndarray]:
        """(model, target_model) arrays (n_exp, ny, nx) on the common zeropoint: the full
        model M and the fitted target part S (zero outside the detection exposure)."""
        n_exp = len(self.exposures)
        model = (self.static_design @ solution.static).reshape(n_exp, *self.shape)
        target = np.zeros_like(model)
        stamps = self.target_stamps(offsets)
        target[self.detection_index] = np.tensordot(solution.target, stamps, axes=1)
        return model + target, target

    @property
    def n_usable_pixels(self) -> int:
        return int(np.count_nonzero(self.weight > 0))

    def dof(self, n_target: int) -> int:
        """Usable pixels minus free parameters (the static directions fixed at 0 by
        `conditioning` are not free)."""
        return (self.n_usable_pixels - self.n_grid - self.n_sky + self.conditioning.n_fixed
                - n_target)
