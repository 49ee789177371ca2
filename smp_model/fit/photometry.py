"""Fitting a detection: single or binary target at fixed or optimised positions.

`DetectionPhotometry` loads a detection once and builds its `SceneModel`; every fit after
that (new offsets, binary instead of single, a position search) only re-solves the target
part.  Results are immutable `SingleFit` / `BinaryFit` objects (`smp_model.fit.results`).

Offsets are pixels in the detection exposure relative to the WCS position of the
detection's (ra, dec), in the frame of the chosen convention (`smp_model.conventions`).
Binary offsets are given in the order of the published code: ``(dx1, dx2, dy1, dy2)``
(or as a `TargetOffsets`, which converts).  Fluxes are on the common zeropoint 30.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import math
import time
from collections.abc import Sequence

import numpy as np

from ..inputs.manifest import DetectionManifest
from ..inputs.stamps import flux_scale, read_stamp
from ..scene.exposures import load_exposures
from ..scene.memory import check_fit_memory
from ..blas import single_threaded_blas
from ..scene.model import LinearSolution, Progress, SceneModel
from ..settings import FitSettings
from .binary_search import (SPLIT_RADIUS, binary_seeds, split_if_coincident,
                            swapped_from_start)
from .position_search import ProfiledChi2, minimize_positions, profiled_chi2
from .request import TargetOffsets, detection_gain
from .results import (BinaryFit, BlendEstimate, ExposureModels, SceneFit, ShotNoiseEstimate,
                      SingleFit, SourceEstimate, data_frame_centers)

__all__ = ["DetectionPhotometry"]


class DetectionPhotometry:
    """A detection loaded and modelled once, fitted as often as needed.

    Parameters
    ----------
    manifest : `DetectionManifest` (or a path to one).
    settings : `FitSettings`.
    progress : optional ``callback(fraction, message)`` for long steps.
    """

    def __init__(self, manifest: DetectionManifest | str, settings: FitSettings = FitSettings(),
                 progress: Progress | None = None):
        t0 = time.perf_counter()
        if not isinstance(manifest, DetectionManifest):
            manifest = DetectionManifest.read(manifest)
        self.manifest = manifest
        self.settings = settings
        # The detection stamp alone, then the memory check, before any other stamp or PSF
        # is read (issue 13); the loader reuses the stamp.
        detection_stamp = read_stamp(manifest.detection_exposure.stamp)
        check_fit_memory(manifest, settings, detection_stamp)
        if progress:
            progress(0.0, f"reading {len(manifest.exposures)} exposures of {manifest.name}")
        self.exposures, self.dropped = load_exposures(manifest, progress=progress,
                                                      detection_stamp=detection_stamp)
        t1 = time.perf_counter()
        det = [ex.entry for ex in self.exposures].index(manifest.detection_exposure)
        self.scene = SceneModel(self.exposures, det, manifest.ra, manifest.dec, settings,
                                progress)
        self.timings = {"load_s": t1 - t0, "build_s": time.perf_counter() - t1}

    @property
    def default_offset(self) -> tuple[float, float]:
        return self.settings.default_offset

    def with_images(self, images) -> "DetectionPhotometry":
        """This detection refitting other images (zeropoint 30, one (ny, nx) array per
        exposure in the order of ``exposures``: new noise, an injected source), reusing the
        rendered and factorised scene (`SceneModel.with_data`): milliseconds, not a rebuild.
        """
        clone = copy.copy(self)
        # Results cached from this object's data are not the clone's.
        clone.__dict__.pop("chi2_single_at_default_offset", None)
        clone.scene = self.scene.with_data(images)
        clone.exposures = clone.scene.exposures
        return clone

    # -- fixed positions ----------------------------------------------------------------

    def fit_single(self, offset: Sequence[float] | None = None, preview: bool = False
                   ) -> SingleFit:
        """Single point source at ``offset`` (dx, dy) px (default: the convention's);
        ``preview``: `SceneFit.preview`."""
        offsets = np.array([offset if offset is not None else self.default_offset], float)
        return self._result(SingleFit, offsets, None, 1, preview=preview)

    def fit_binary(self, offsets: Sequence[float] | TargetOffsets, preview: bool = False
                   ) -> BinaryFit:
        """Two point sources at ``(dx1, dx2, dy1, dy2)`` px (the published order) or at a
        `TargetOffsets`.  Positions are fixed, so both Δχ² references are the single source
        at the convention's default offset.  ``preview``: `SceneFit.preview`."""
        pos = (offsets if isinstance(offsets, TargetOffsets)
               else TargetOffsets.from_published(offsets)).array
        chi2_single = self.chi2_single_at_default_offset
        return self._result(BinaryFit, pos, None, 1, preview, chi2_single=chi2_single,
                            chi2_single_default=chi2_single)

    @functools.cached_property
    def chi2_single_at_default_offset(self) -> float:
        """chi2 of one target source at the convention's default offset (the reference
        of a fixed-position binary's delta chi2); the scene is fixed, so computed once."""
        return self.scene.solve([self.default_offset]).chi2

    def chi2(self, offsets) -> float:
        """Profiled chi2 with target sources at ``offsets`` (n_t, 2)."""
        return self.scene.solve(offsets).chi2

    def with_shot_noise(self, fit: SceneFit, gain: float | None = None,
                        iterations: int = 1) -> SceneFit:
        """``fit`` with a `ShotNoiseEstimate` attached.

        DES weight maps hold sky and read noise only.  As published, the detection stamp's
        variance is increased by the fitted model's Poisson variance (model / gain in the
        stamp's own units: on zeropoint 30 that is ``model * scale / gain`` with
        ``scale = 10**(-0.4 (zp - 30))``; negative model values add nothing) and the scene
        is solved again at the same positions.  ``iterations`` refits, each with the
        previous refit's model (1 = published; 0 = until the fluxes change by less than
        1e-3 sigma, at most 20).  ``gain`` defaults to the detection exposure's ``gain``
        in the manifest.
        """
        if iterations < 0:
            raise ValueError(f"shot-noise iterations must be >= 0, got {iterations}")
        gain = detection_gain(self.manifest, gain)
        scene, offsets = self.scene, fit.offsets
        m = scene.detection_index
        rows = scene.rows[m]
        scale = flux_scale(scene.detection.entry.zeropoint)
        base_var = np.zeros(rows.stop - rows.start)
        usable = scene.weight[rows] > 0
        base_var[usable] = 1.0 / scene.weight[rows][usable]
        model = fit.model[m].ravel()
        previous = np.asarray([s.flux for s in fit.sources])
        limit = 20 if iterations == 0 else iterations
        for done in range(1, limit + 1):
            weight = scene.weight.copy()
            var = base_var + np.clip(model, 0.0, None) * scale / gain
            weight[rows] = np.divide(1.0, var, out=np.zeros_like(var), where=usable)
            noisy = scene.with_weights(weight)
            solution = noisy.solve(offsets)
            model = noisy.model_stamps(offsets, solution)[0][m].ravel()
            errors = np.sqrt(np.diag(solution.target_covariance))
            converged = np.all(np.abs(solution.target - previous) < 1e-3 * errors)
            previous = solution.target
            if iterations == 0 and converged:
                break
        estimate = ShotNoiseEstimate(gain=float(gain), iterations=done,
                                     flux=tuple(float(f) for f in solution.target),
                                     flux_err=tuple(float(e) for e in errors))
        return dataclasses.replace(fit, shot_noise=estimate)

    # -- position searches --------------------------------------------------------------

    def optimize_single(self, start: Sequence[float] | None = None) -> SingleFit:
        """Minimise chi2 over the single target's (dx, dy) from ``start`` (default: the
        convention's offset), fluxes and scene solved exactly at every step
        (`minimize_positions`)."""
        start = np.asarray(start if start is not None else self.default_offset, float)
        t0 = time.perf_counter()
        search = minimize_positions(self.scene, start.reshape(1, 2))
        fit = self._result(SingleFit, search.offsets, self._curvature(search.offsets),
                           search.n_evaluations + 1)
        fit.timings["search_s"] = time.perf_counter() - t0
        return fit

    def optimize_binary(self, start: Sequence[float] | TargetOffsets | None = None
                        ) -> BinaryFit:
        """Minimise chi2 over both binary positions from ``start`` = (dx1, dx2, dy1, dy2)
        (default: the settings' `default_binary_offsets`) and from the best seeds of a
        coarse scan (`binary_seeds`), each searched to convergence
        (`minimize_positions`: fluxes and the whole scene solved exactly at every step);
        the deepest minimum is the result.  One search alone stops in local minima from
        poor starts (both sources on one point, a start pixels away); the seeds make the
        result independent of the start.

        The single-source reference is searched too, so that ``delta_chi2`` compares best
        fits; one seed is that single position with the secondary where it helps most, so
        the binary never fits worse than one source (``delta_chi2 >= 0``).
        """
        t0 = time.perf_counter()
        if start is None:
            start = self.default_binary_offsets
        start = (start if isinstance(start, TargetOffsets)
                 else TargetOffsets.from_published(start)).array
        single = minimize_positions(self.scene, np.array([self.default_offset], float))
        scan = binary_seeds(self.scene, single.offsets[0])
        searches = [minimize_positions(self.scene, seed)
                    for seed in [split_if_coincident(start), *scan.seeds]]
        best = min(searches, key=lambda search: search.chi2).offsets
        if np.subtract(*self.scene.solve(best).target) < 0:
            best = best[::-1]   # the primary is the brighter component
        n_eval = (single.n_evaluations + scan.n_solves + 1
                  + sum(search.n_evaluations for search in searches))
        fit = self._result(BinaryFit, best, self._curvature(best), n_eval,
                           chi2_single=self.scene.solve(single.offsets).chi2,
                           chi2_single_default=self.chi2_single_at_default_offset,
                           search_starts=len(searches),
                           swapped_from_start=swapped_from_start(start, best))
        if fit.unresolved and (fit.separation_px > SPLIT_RADIUS
                               or fit.position_errors_undefined):
            fit = dataclasses.replace(fit, blend=self._blend(scan.blend))
        fit.timings["search_s"] = time.perf_counter() - t0
        return fit

    def _blend(self, start: np.ndarray) -> BlendEstimate:
        """The pair's total flux from two sources searched from ``start``, the scan's best
        symmetric split within `SPLIT_RADIUS`: for an unresolved pair whose best
        secondary lies farther, on a noise fluctuation or another source, and would add
        that flux to the pair's, or whose best binary has no position errors (its
        components on one point: a dipole, whose sum missed a 1.5 px pair by 4.4 sigma)."""
        search = minimize_positions(self.scene, start)
        curvature = self._curvature(search.offsets)
        position_cov = self._position_covariance(curvature)
        solution = self.scene.solve(search.offsets)
        cov = self._flux_covariance_with_positions(solution, curvature, position_cov)
        cov = solution.target_covariance if cov is None else cov
        return BlendEstimate(total_flux=float(solution.target.sum()),
                             total_flux_err=float(math.sqrt(cov.sum())),
                             separation_px=float(np.hypot(*np.subtract(*search.offsets))))

    @property
    def default_binary_offsets(self) -> tuple[float, float, float, float]:
        return self.settings.default_binary_offsets

    def _curvature(self, best: np.ndarray) -> ProfiledChi2:
        """The profiled chi2's derivatives at searched positions ``best`` (n_t, 2): its
        Hessian H gives the position covariance 2 H^-1, its flux Jacobian the fluxes'
        share of the position errors."""
        with single_threaded_blas():
            return profiled_chi2(self.scene, best)

    # -- assembling results -------------------------------------------------------------

    def _result(self, cls, offsets: np.ndarray, curvature: ProfiledChi2 | None, n_eval: int,
                preview: bool = False, **extra):
        """The fit at ``offsets``; ``curvature`` (`_curvature`) when they were searched;
        ``preview``: `SceneFit.preview` (the exposures' models left until asked for)."""
        t0 = time.perf_counter()
        scene = self.scene
        solution = scene.solve(offsets)
        models = ExposureModels(scene, offsets, solution)
        chi2 = solution.chi2 if preview else float(models.chi2_per_exposure.sum())
        position_cov = flux_cov = None
        if curvature is not None:
            extra.update(position_bias=curvature.position_bias, flux_bias=curvature.flux_bias)
            position_cov = self._position_covariance(curvature)
            flux_cov = self._flux_covariance_with_positions(solution, curvature, position_cov)
        sources = self._sources(offsets, solution, position_cov, flux_cov)
        timings = dict(self.timings, solve_s=time.perf_counter() - t0)
        timings["total_s"] = sum(timings.values())
        usable = scene.weight.reshape(len(scene.exposures), *scene.shape) > 0
        return cls(sources=sources, chi2=chi2,
                   # fitted positions are parameters too
                   dof=scene.dof(len(sources)) - (offsets.size if position_cov is not None
                                                  else 0),
                   usable_pixels_per_exposure=np.count_nonzero(usable, axis=(1, 2)),
                   parameters=np.concatenate([solution.static, solution.target]),
                   target_covariance=solution.target_covariance, exposure_models=models,
                   preview=preview,
                   position_covariance=position_cov, flux_covariance_with_positions=flux_cov,
                   scene=scene, manifest=self.manifest,
                   n_chi2_evaluations=n_eval, timings=timings, **extra)

    def _sources(self, offsets, solution: LinearSolution, position_cov, flux_cov):
        centers = data_frame_centers(self.scene, offsets)
        ra, dec = self.scene.detection.pixel_to_sky(centers[:, 0], centers[:, 1])
        errs = (np.sqrt(np.diag(position_cov)).reshape(-1, 2) if position_cov is not None
                else np.full(offsets.shape, math.nan))
        total = (np.sqrt(np.diag(flux_cov)) if flux_cov is not None
                 else np.full(offsets.shape[0], math.nan))
        return tuple(
            SourceEstimate(flux=float(solution.target[t]),
                           flux_err=float(math.sqrt(solution.target_covariance[t, t])),
                           dx=float(offsets[t, 0]), dy=float(offsets[t, 1]),
                           x=float(centers[t, 0]), y=float(centers[t, 1]),
                           ra=float(ra[t]), dec=float(dec[t]),
                           dx_err=float(errs[t, 0]), dy_err=float(errs[t, 1]),
                           flux_err_total=float(total[t]))
            for t in range(offsets.shape[0]))

    @staticmethod
    def _position_covariance(curvature: ProfiledChi2) -> np.ndarray:
        """Covariance of the flattened positions [(dx1, dy1), (dx2, dy2)] as 2 H^-1, with
        H the Hessian of the profiled chi2; NaN where a variance is not positive (not at a
        minimum: errors undefined)."""
        n = curvature.gradient.size
        try:
            cov = 2.0 * np.linalg.inv(curvature.hessian)
        except np.linalg.LinAlgError:
            return np.full((n, n), math.nan)
        return cov if np.all(np.diag(cov) > 0) else np.full((n, n), math.nan)

    @staticmethod
    def _flux_covariance_with_positions(solution: LinearSolution, curvature: ProfiledChi2,
                                        position_cov: np.ndarray) -> np.ndarray | None:
        """Covariance of the target fluxes including the fitted positions' uncertainty,
        ``S^-1 + J C_pos J^T`` with J = d fluxes / d positions; None when the position
        covariance is undefined."""
        if not np.all(np.isfinite(position_cov)):
            return None
        jac = curvature.flux_jacobian
        return solution.target_covariance + jac @ position_cov @ jac.T
