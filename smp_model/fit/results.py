"""The immutable results of a fit: `SingleFit` and `BinaryFit` (both `SceneFit`), with one
`SourceEstimate` per target source and, after a shot-noise refit, a `ShotNoiseEstimate`.

Fluxes are counts on the common zeropoint 30 (``mag = 30 - 2.5 log10 flux``, AB); offsets
are detection-exposure pixels from the WCS position of the detection's (ra, dec), in the
frame of the fit's pixel convention.  Derived values (magnitudes, errors, the pair's
separation and total flux) are properties computed from the stored solution.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from ..inputs.manifest import DetectionManifest
from ..inputs.stamps import COMMON_ZEROPOINT
from ..blas import single_threaded_blas
from ..scene.model import LinearSolution, SceneModel
from ..settings import FitSettings
from ..wcs.transforms import separation_and_position_angle
from .request import FitRequest, TargetOffsets

__all__ = ["UNRESOLVED_BIAS_SIGMA", "UNRESOLVED_DELTA_CHI2", "UNRESOLVED_SEPARATION_SIGMA",
           "BinaryFit", "BlendEstimate", "ExposureModels", "SceneFit",
           "ShotNoiseEstimate", "SingleFit", "SourceEstimate", "data_frame_centers",
           "magnitude", "magnitude_error"]

# A searched binary is "unresolved" (its component fluxes and errors are not trustworthy;
# the pair's total is) below either threshold: delta chi2 under 25 is no evidence of a
# companion (a single source gains more than 16 in 1 % of cases), and a separation known
# to worse than 1/10 of itself marks pairs whose component fluxes scatter far beyond their
# errors.  Near that threshold the pairs that pass are those whose noise widened them: at 7
# (the earlier value) the pairs measured at 7-10 sigma were high by +0.65 sigma even after
# the first-order correction, those beyond 10 sigma by +0.08.  Chosen on simulated 1-2 px
# pairs (docs/validation/injection.rst).
UNRESOLVED_DELTA_CHI2 = 25.0
UNRESOLVED_SEPARATION_SIGMA = 10.0
# ... or when the separation's first-order bias (`BinaryFit.separation_bias_px`) exceeds
# this many of its errors: the first-order correction then no longer describes the
# estimate (on simulated 1-2 px pairs it removed the bias below this and over-corrected
# by a sigma above it: docs/validation/injection.rst).
UNRESOLVED_BIAS_SIGMA = 0.5


def magnitude(flux: float) -> float:
    """AB-like magnitude on the common zeropoint; NaN when the flux is not positive."""
    return COMMON_ZEROPOINT - 2.5 * math.log10(flux) if flux > 0 else math.nan


def magnitude_error(flux: float, flux_err: float) -> float:
    return 2.5 / math.log(10) * flux_err / flux if flux > 0 else math.nan


@dataclass(frozen=True)
class SourceEstimate:
    """One fitted point source of the target.

    Attributes
    ----------
    flux, flux_err
        counts on zeropoint 30.
    dx, dy
        offset (px) from the target's WCS position, convention frame.
    x, y
        1-indexed CCD position of the source in the detection exposure (data frame).
    ra, dec
        degrees, from the detection exposure's WCS.
    dx_err, dy_err
        1-sigma position errors from the chi2 curvature (NaN if the position
        was not fitted).
    flux_err_total
        flux error including the uncertainty of fitted positions,
        ``sqrt(S^-1 + J C_pos J^T)`` with ``J = d flux / d positions`` (fluxes profiled);
        NaN when positions were fixed.  ``flux_err`` is the published error, exact at fixed
        positions; for searched blended binaries it underestimates the flux
        scatter several-fold (docs/validation/injection.rst), ``flux_err_total`` does not.
    """

    flux: float
    flux_err: float
    dx: float
    dy: float
    x: float
    y: float
    ra: float
    dec: float
    dx_err: float = math.nan
    dy_err: float = math.nan
    flux_err_total: float = math.nan

    @property
    def mag(self) -> float:
        return magnitude(self.flux)

    @property
    def mag_err(self) -> float:
        return magnitude_error(self.flux, self.flux_err)

    @property
    def mag_limit_3sigma(self) -> float:
        """Magnitude of a 3-sigma flux: the limit to quote when the flux is not positive."""
        return magnitude(3 * self.flux_err)

    @property
    def snr(self) -> float:
        return self.flux / self.flux_err


@dataclass(frozen=True)
class ShotNoiseEstimate:
    """Fluxes refitted with the target's own Poisson variance added to the detection
    stamp (published columns FLUX_SN, FLUX_ERR_SN).

    gain : electrons per SCI unit of the detection stamp.
    iterations : refits done (each uses the previous model for the variance).
    flux, flux_err : per target source, zeropoint 30.
    """

    gain: float
    iterations: int
    flux: tuple[float, ...]
    flux_err: tuple[float, ...]

    @property
    def mag(self) -> tuple[float, ...]:
        return tuple(magnitude(f) for f in self.flux)

    @property
    def mag_err(self) -> tuple[float, ...]:
        return tuple(magnitude_error(f, e) for f, e in zip(self.flux, self.flux_err))


@dataclass(frozen=True)
class BlendEstimate:
    """An unresolved pair's total flux from two sources searched from the best symmetric
    split of the seed scan (within `smp_model.fit.binary_search.SPLIT_RADIUS`), when the
    searched binary's secondary lies farther or its components collapsed onto one point
    (`DetectionPhotometry.optimize_binary`);
    ``separation_px`` (px) is where that search ended.

    total_flux, total_flux_err : zeropoint 30; the error includes the positions'.
    """

    total_flux: float
    total_flux_err: float
    separation_px: float


class ExposureModels:
    """The model of every exposure of a solved scene, ``M`` and its target part ``S``
    ((n_exp, ny, nx), zeropoint 30, order of ``scene.exposures``), and each exposure's
    chi2 ``sum W (I - M)^2``: computed on first use and kept (the static design times the
    solution, the largest product of a refit at fixed positions).

    `exposure` gives one exposure's pair without the others: what a marker drag shows.
    """

    def __init__(self, scene: SceneModel, offsets: np.ndarray, solution: LinearSolution):
        self._scene, self._offsets, self._solution = scene, offsets, solution

    @functools.cached_property
    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(model, target_model) of every exposure (`SceneModel.model_stamps`)."""
        return self._scene.model_stamps(self._offsets, self._solution)

    @functools.cached_property
    def chi2_per_exposure(self) -> np.ndarray:
        scene = self._scene
        images = np.stack([ex.image for ex in scene.exposures])
        weights = scene.weight.reshape(images.shape)
        return _weighted_chi2(weights, images, self.arrays[0], axis=(1, 2))

    def exposure(self, m: int) -> tuple[np.ndarray, np.ndarray, float]:
        """(model, target_model, chi2) of exposure ``m`` alone: slices of `arrays` once
        those are computed, else from its own rows of the design (the same numbers to
        the last bits of a BLAS product's rounding)."""
        if "arrays" in self.__dict__:
            return (self.arrays[0][m], self.arrays[1][m],
                    float(self.chi2_per_exposure[m]))
        scene, solution = self._scene, self._solution
        rows = scene.rows[m]
        model = (scene.static_design[rows] @ solution.static).reshape(scene.shape)
        target = np.zeros_like(model)
        if m == scene.detection_index:
            target = np.tensordot(solution.target, scene.target_stamps(self._offsets),
                                  axes=1)
        model = model + target
        ex = scene.exposures[m]
        chi2 = float(_weighted_chi2(scene.weight[rows].reshape(scene.shape), ex.image, model))
        return model, target, chi2


def _weighted_chi2(weights, images, model, axis=None):
    """``sum W (I - M)^2`` over ``axis`` (every pixel: weights 0 where unusable)."""
    return np.sum(weights * (images - model) ** 2, axis=axis)


@dataclass(frozen=True, eq=False)
class SceneFit:
    """A solved scene: the target source(s), fit statistics and the model of every exposure.

    ``parameters``/``covariance`` are ordered grid amplitudes, sky levels (if fitted), then
    target fluxes.  ``model`` and ``target_model`` are (n_exp, ny, nx) on zeropoint 30, in
    the order of ``scene.exposures`` (`exposure_models`, computed on first use).

    ``preview``: a refit during a marker drag (`smp_model.fit.measure.measure`): ``chi2`` is
    the linear solve's profiled chi2, which equals the sum of ``chi2_per_exposure`` to
    ~1e-12 of itself without modelling every exposure; everything else is the same.
    """

    sources: tuple[SourceEstimate, ...]
    chi2: float
    dof: int
    usable_pixels_per_exposure: np.ndarray
    parameters: np.ndarray
    target_covariance: np.ndarray
    exposure_models: ExposureModels = field(repr=False)
    position_covariance: np.ndarray | None
    flux_covariance_with_positions: np.ndarray | None
    scene: SceneModel = field(repr=False)
    manifest: DetectionManifest = field(repr=False)
    n_chi2_evaluations: int = 1
    search_starts: int = 1
    timings: dict = field(default_factory=dict)
    shot_noise: ShotNoiseEstimate | None = None
    request: FitRequest | None = None
    binary_search_delta_chi2: float = math.nan
    position_bias: np.ndarray | None = None
    flux_bias: np.ndarray | None = None
    preview: bool = False

    kind = "scene"

    @property
    def model(self) -> np.ndarray:
        return self.exposure_models.arrays[0]

    @property
    def target_model(self) -> np.ndarray:
        return self.exposure_models.arrays[1]

    @property
    def chi2_per_exposure(self) -> np.ndarray:
        return self.exposure_models.chi2_per_exposure

    @property
    def settings(self) -> FitSettings:
        return self.scene.settings

    @functools.cached_property
    def target_cut_share(self) -> np.ndarray:
        """Per target: the share of its flux's information that lies in the scene
        directions the solve fixed at 0 (`smp_model.scene.conditioning`; zeros when none
        were)."""
        return self.scene.solve(self.offsets).target_cut_share

    @functools.cached_property
    def covariance(self) -> np.ndarray:
        """Full covariance of ``parameters`` (computed on first use: a few hundred
        parameters squared, more than an interactive refit needs)."""
        n_target = len(self.sources)
        solution = LinearSolution(static=self.parameters[:-n_target],
                                  target=self.parameters[-n_target:],
                                  target_covariance=self.target_covariance, chi2=self.chi2)
        with single_threaded_blas():
            return self.scene.full_covariance(self.offsets, solution)

    @property
    def primary(self) -> SourceEstimate:
        return self.sources[0]

    @property
    def flux(self) -> float:
        return self.primary.flux

    @property
    def flux_err(self) -> float:
        return self.primary.flux_err

    @property
    def mag(self) -> float:
        return self.primary.mag

    @property
    def mag_err(self) -> float:
        return self.primary.mag_err

    @property
    def offsets(self) -> np.ndarray:
        """(n_t, 2) target offsets (dx, dy) in pixels."""
        return self.target_offsets.array

    @property
    def target_offsets(self) -> TargetOffsets:
        """The fitted sources' offsets (`TargetOffsets`; ``.published`` for the CLI order)."""
        return TargetOffsets(tuple((s.dx, s.dy) for s in self.sources))

    @property
    def used_expnums(self) -> list[int]:
        """Exposures that entered the fit, in the order of ``scene.exposures``."""
        return [int(ex.entry.expnum) for ex in self.scene.exposures]

    @property
    def dropped_expnums(self) -> list[int]:
        """Exposures of the manifest left out of the fit (no usable pixel).  Compared by
        (expnum, ccdnum): a detection built in another process has other entry objects."""
        used = {(ex.entry.expnum, ex.entry.ccdnum) for ex in self.scene.exposures}
        return [int(e.expnum) for e in self.manifest.exposures
                if (e.expnum, e.ccdnum) not in used]

    @property
    def sky_levels(self) -> np.ndarray:
        n = self.scene.n_grid
        return self.parameters[n:n + self.scene.n_sky]

    @property
    def reduced_chi2_per_exposure(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.chi2_per_exposure / self.usable_pixels_per_exposure


@dataclass(frozen=True, eq=False)
class SingleFit(SceneFit):
    """One point source as the target."""

    kind = "single"


@dataclass(frozen=True, eq=False)
class BinaryFit(SceneFit):
    """Two point sources as the target, compared with one source in two ways:

    chi2_single : chi2 of the single-source fit treated as the binary was: its position
        searched when the binary's positions were searched, at the convention's default
        offset otherwise.  ``delta_chi2`` against it is the likelihood ratio to quote.
    chi2_single_default : chi2 of the single source at the convention's default offset,
        whatever was done to the binary (``delta_chi2_default``: the published definition).
    swapped_from_start : a position search's components are numbered by flux (1, the
        primary, is the brighter), not by where they started: True when the primary ended
        nearer the start's secondary than its primary (the pairing of ends and starts with
        the smaller total squared displacement), i.e. the search swapped the numbers of
        the start (`smp_model.fit.binary_search.swapped_from_start`).  False at fixed
        positions.
    """

    chi2_single: float = math.nan
    chi2_single_default: float = math.nan
    blend: BlendEstimate | None = None
    swapped_from_start: bool = False

    kind = "binary"

    @property
    def secondary(self) -> SourceEstimate:
        return self.sources[1]

    @property
    def delta_chi2(self) -> float:
        """chi2_single - chi2: how much better two sources fit than one, both treated
        alike (both searched, or both at fixed positions)."""
        return self.chi2_single - self.chi2

    @property
    def delta_chi2_default(self) -> float:
        """chi2_single_default - chi2 (the published definition)."""
        return self.chi2_single_default - self.chi2

    @property
    def published_offsets(self) -> tuple[float, float, float, float]:
        """(dx1, dx2, dy1, dy2), the order of the published code and the CLI."""
        return self.target_offsets.published

    @property
    def position_errors_undefined(self) -> bool:
        """Positions were searched and their covariance is undefined (the profiled chi2's
        Hessian there is not positive definite): typically both components on one point,
        with huge fluxes of opposite signs that cancel to about the pair's (seen on a
        simulated 1.5 px pair: 0.0015 px apart, +-9.7e5 for a pair of 2000)."""
        cov = self.position_covariance
        return cov is not None and not np.all(np.isfinite(cov))

    @property
    def unresolved(self) -> bool:
        """Positions were searched and the data cannot separate the components (delta
        chi2 < `UNRESOLVED_DELTA_CHI2`, or separation below `UNRESOLVED_SEPARATION_SIGMA`
        times its error or with no defined error, or its first-order bias above
        `UNRESOLVED_BIAS_SIGMA` times its error): quote ``total_flux``.  At fixed
        positions the component errors are exact, so this is False."""
        if self.position_covariance is None:
            return False
        error = self.separation_err_px
        return not (self.delta_chi2 >= UNRESOLVED_DELTA_CHI2
                    and self.separation_px > UNRESOLVED_SEPARATION_SIGMA * error
                    and abs(self.separation_bias_px) <= UNRESOLVED_BIAS_SIGMA * error)

    @property
    def total_flux(self) -> float:
        """Flux of the pair (zeropoint 30): what close pairs measure best.  The sum of the
        components' fluxes, except for an unresolved pair whose secondary was found beyond
        the detection's core: then the ``blend``'s (its secondary fitted noise or another
        source, whose flux the sum would add; docs: validation/injection)."""
        if self.blend is not None:
            return self.blend.total_flux
        return float(self.primary.flux + self.secondary.flux)

    @property
    def total_flux_err(self) -> float:
        """1-sigma error of ``total_flux`` with the covariance of the two fluxes, including
        the fitted positions' uncertainty when positions were searched and defined."""
        if self.blend is not None:
            return self.blend.total_flux_err
        cov = (self.flux_covariance_with_positions
               if self.flux_covariance_with_positions is not None else self.target_covariance)
        return float(math.sqrt(cov.sum()))

    @property
    def total_flux_bias(self) -> float:
        """First-order bias of ``total_flux`` (zeropoint 30) as an estimate of the pair's
        flux: the sum of the components' least-squares flux biases
        (`smp_model.fit.position_search.least_squares_bias`, at the fitted pair).  0 where
        ``total_flux`` is the ``blend``'s (a second search conditioned on the first having
        failed, which the expansion about the best binary does not describe), and where the
        bias exceeds `UNRESOLVED_BIAS_SIGMA` times ``total_flux_err`` (the expansion then no
        longer describes the estimate, as for the separation); NaN at fixed positions (no
        bias to correct: the fluxes are linear there)."""
        if self.blend is not None:
            return 0.0
        if self.flux_bias is None:
            return math.nan
        bias = float(np.sum(self.flux_bias))
        # a degenerate pair's expansion gave 8700 sigma: no correction beats a wrong one
        return bias if abs(bias) <= UNRESOLVED_BIAS_SIGMA * self.total_flux_err else 0.0

    @property
    def total_flux_debiased(self) -> float:
        """``total_flux`` less its first-order bias (`total_flux_bias`): the pair's flux to
        quote after a position search, with ``total_flux_err``; for close pairs the
        least-squares sum is high by about a tenth of its error
        (docs/validation/injection.rst).  NaN at fixed positions."""
        return self.total_flux - self.total_flux_bias

    def _geometry(self, offsets: np.ndarray) -> np.ndarray:
        return np.array(self.scene_geometry(self.scene, offsets))

    @staticmethod
    def scene_geometry(scene: SceneModel, offsets: np.ndarray) -> tuple[float, float, float]:
        """(separation px, separation arcsec, position angle deg E of N) of two sources."""
        centers = data_frame_centers(scene, offsets)
        sep_px = float(np.hypot(*(centers[1] - centers[0])))
        ra, dec = scene.detection.pixel_to_sky(centers[:, 0], centers[:, 1])
        return (sep_px, *separation_and_position_angle(ra[0], dec[0], ra[1], dec[1]))

    @functools.cached_property
    def _fitted_geometry(self) -> np.ndarray:
        # scene_geometry at the fitted offsets, from the positions the sources already
        # carry (a WCS evaluation less: ~1 ms for DES's RaDecFunction WCS).
        p, s = self.sources
        return np.array((float(np.hypot(s.x - p.x, s.y - p.y)),
                         *separation_and_position_angle(p.ra, p.dec, s.ra, s.dec)))

    @property
    def separation_px(self) -> float:
        return float(self._fitted_geometry[0])

    @property
    def separation_arcsec(self) -> float:
        return float(self._fitted_geometry[1])

    @property
    def position_angle_deg(self) -> float:
        """Position angle of the secondary from the primary, degrees east of north."""
        return float(self._fitted_geometry[2])

    @functools.cached_property
    def _geometry_errors(self) -> np.ndarray:
        """1-sigma errors of (separation px, separation arcsec, PA deg), linearly
        propagated from the position covariance (NaN when positions were not fitted)."""
        if self.position_covariance is None:
            return np.full(3, math.nan)
        base = self.offsets
        h = 1e-3
        grad = np.empty((3, 4))
        for n in range(4):
            step = np.zeros(4)
            step[n] = h
            plus = self._geometry(base + step.reshape(2, 2))
            minus = self._geometry(base - step.reshape(2, 2))
            diff = plus - minus
            diff[2] = (diff[2] + 180.0) % 360.0 - 180.0
            grad[:, n] = diff / (2 * h)
        return np.sqrt(np.diag(grad @ self.position_covariance @ grad.T))

    @property
    def separation_bias_px(self) -> float:
        """First-order bias (px) of ``separation_px`` as an estimate of the true separation,
        at the fitted pair (NaN when positions were not searched): the positions' own
        least-squares bias along the pair
        (`smp_model.fit.position_search.least_squares_bias`) plus the separation's
        curvature in the positions, ``var_perp / (2 s)`` (a length is biased high by the
        scatter across it).  Both scale as 1/(S/N)^2; for close pairs they make
        ``separation_px`` too wide by a few tenths of its error
        (docs/validation/injection.rst)."""
        if self.position_bias is None or self.position_covariance is None:
            return math.nan
        p, s = self.sources
        step = np.array([s.x - p.x, s.y - p.y])
        along = step / np.hypot(*step)
        across = np.array([-along[1], along[0]])
        cov = self.position_covariance
        difference_cov = cov[2:, 2:] - cov[2:, :2] - cov[:2, 2:] + cov[:2, :2]
        drift = float(along @ (self.position_bias[1] - self.position_bias[0]))
        return drift + float(across @ difference_cov @ across) / (2 * self.separation_px)

    @property
    def separation_debiased_px(self) -> float:
        """``separation_px`` less its first-order bias (`separation_bias_px`): the
        separation to quote for a searched pair that is not `unresolved` (its error is
        ``separation_err_px``); NaN at fixed positions."""
        return self.separation_px - self.separation_bias_px

    @property
    def separation_err_px(self) -> float:
        return float(self._geometry_errors[0])

    @property
    def separation_err_arcsec(self) -> float:
        return float(self._geometry_errors[1])

    @property
    def position_angle_err_deg(self) -> float:
        return float(self._geometry_errors[2])


def data_frame_centers(scene: SceneModel, offsets) -> np.ndarray:
    """CCD centres (n_t, 2) of target sources in the data's own pixel frame.

    In the legacy convention PSFs are drawn in Piff's box, shifted from the stamp grid;
    the source then sits at the drawn centre plus that shift on the real CCD."""
    m = scene.detection_index
    shift = np.subtract(scene.exposures[m].origin, scene.sampling_origins[m])
    return scene.target_centers(np.atleast_2d(offsets)) + shift[None, :]
