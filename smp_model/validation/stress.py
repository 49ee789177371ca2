"""Stress run: many simulated detections with the variety a survey has, each fitted as a
user would, counting what fails or is flagged and checking the target-flux pulls.

Each detection (`StressDetection`) draws, deterministically in the seed: 2-6 exposures;
a seeing range per detection (lower end 0.75-1.45 arcsec, 0.3 arcsec wide: poor nights make
the scene ill-conditioned, `smp_model.scene.conditioning`); a Sersic galaxy (none, beside
the target, or under it); 0-3 field stars; and defects besides the simulator's cosmic rays
and bad columns: a static masked disc (a saturated star's core, in every exposure), a
masked stripe along one stamp edge of one exposure (a CCD edge), and one exposure masked
entirely (the survey's ``flagged`` defect; the fit drops it and sets ``exposure_dropped``).

Into each detection `INJECTIONS_PER_DETECTION` (`INJECTIONS_WHERE_ENGAGED` where the remedy
engaged) point sources of S/N 5-200 are injected at a random sub-pixel position, with new
noise, and fitted at that position through the user's path
(`DetectionPhotometry.fit_single`, `fit_record` for the flags).  Where the remedy of
`smp_model.scene.conditioning` engaged, the same injections are also solved without it by
an unregularised least-squares reference (`PlainLeastSquares`), so that the pulls with and
without the remedy can be compared on the same data.  Fluxes are counts on zeropoint 30.
"""
from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import SMPError
from ..outputs.columns import FLAG_BITS, decode_flags
from ..outputs.record import fit_record
from ..scene.conditioning import Conditioning
from ..scene.model import SceneModel
from ..simulation.config import MASK_BPM, PIXEL_SCALE_ARCSEC, SimulationConfig
from ..simulation.field import SimulatedField
from ..simulation.survey import MASK_ALL_BAD
from ..wcs.transforms import sky_from_tangent, sky_to_pixel
from .injection import SNR_RANGE, Progress, PullStats, SimulatedFieldFit, log_uniform

__all__ = ["EXPOSURE_COUNTS", "INJECTIONS_PER_DETECTION", "INJECTIONS_WHERE_ENGAGED",
           "SEEING_FLOOR_RANGE_ARCSEC", "SEEING_WIDTH_ARCSEC", "PlainLeastSquares",
           "StressDetection", "StressOutcome", "StressRecovery", "StressReport",
           "draw_stress_detections", "run_stress", "run_stress_detection"]

EXPOSURE_COUNTS = (2, 3, 4, 4, 6)          # drawn uniformly: few exposures are common
SEEING_FLOOR_RANGE_ARCSEC = (0.75, 1.45)   # best seeing of a detection's exposures
SEEING_WIDTH_ARCSEC = 0.3
INJECTIONS_PER_DETECTION = 10
# Where the remedy engaged, more injections (the scene model is shared, a realisation costs
# a refit): the pulls with and without it are the run's point.
INJECTIONS_WHERE_ENGAGED = 40
@dataclass(frozen=True)
class StressDetection:
    """What one stress detection is made of (see the module docstring).

    galaxy_distance_px : None for no galaxy, else its distance from the target (px).
    static_mask_px : radius of the masked disc in every exposure (0: none).
    edge_mask_px : width of the masked stripe along one edge of one exposure (0: none).
    masked_exposure : one non-detection exposure entirely masked.
    """

    seed: int
    n_exposures: int
    seeing_arcsec: tuple[float, float]
    galaxy_distance_px: float | None
    n_stars: int
    static_mask_px: float
    edge_mask_px: int
    masked_exposure: bool

    def config(self) -> SimulationConfig:
        return SimulationConfig(
            seed=self.seed, n_exposures=self.n_exposures,
            fwhm_range_arcsec=self.seeing_arcsec, galaxy=self.galaxy_distance_px is not None,
            galaxy_distance_px=self.galaxy_distance_px, n_stars=self.n_stars)

    @property
    def expected_flags(self) -> int:
        """The flag bits the defects placed should set (and no others)."""
        return FLAG_BITS["exposure_dropped"] if self.masked_exposure else 0


def draw_stress_detections(n: int, seed: int = 0) -> list[StressDetection]:
    """``n`` stress detections, deterministic in ``seed``."""
    rng = np.random.default_rng([seed, 26])
    out = []
    for k in range(n):
        n_exp = int(rng.choice(EXPOSURE_COUNTS))
        floor = float(rng.uniform(*SEEING_FLOOR_RANGE_ARCSEC))
        galaxy = rng.choice(["none", "beside", "under"], p=[0.4, 0.4, 0.2])
        distance = {"none": None, "beside": float(rng.uniform(2.0, 6.0)),
                    "under": float(rng.uniform(0.0, 1.0))}[str(galaxy)]
        out.append(StressDetection(
            seed=seed * 100000 + k, n_exposures=n_exp,
            seeing_arcsec=(floor, floor + SEEING_WIDTH_ARCSEC), galaxy_distance_px=distance,
            n_stars=int(rng.integers(0, 4)),
            static_mask_px=float(rng.uniform(2.0, 5.0)) if rng.uniform() < 0.3 else 0.0,
            edge_mask_px=int(rng.integers(3, 9)) if rng.uniform() < 0.2 else 0,
            masked_exposure=bool(n_exp >= 3 and rng.uniform() < 0.2)))
    return out


# -- simulating the defects ---------------------------------------------------------------


def _place_defects(sim: SimulatedField, detection: StressDetection,
                   rng: np.random.Generator) -> None:
    """Add the detection's mask defects to the simulated exposures' MSK planes."""
    others = [m for m in range(len(sim.exposures)) if m != sim.detection_index]
    if detection.static_mask_px:
        _mask_static_disc(sim, detection.static_mask_px, rng)
    if detection.edge_mask_px:
        ex = sim.exposures[int(rng.integers(len(sim.exposures)))]
        width = detection.edge_mask_px
        edge = [np.s_[:, :width], np.s_[:, -width:], np.s_[:width, :], np.s_[-width:, :]]
        ex.mask[edge[int(rng.integers(4))]] |= MASK_BPM
    if detection.masked_exposure:
        sim.exposures[int(rng.choice(others))].mask[:] = MASK_ALL_BAD


def _mask_static_disc(sim: SimulatedField, radius_px: float,
                      rng: np.random.Generator) -> None:
    """Mask, in every exposure, a disc about the first field star (a saturated core) or,
    without stars, about a random point 6-11 px from the target."""
    stars = [s for s in sim.scene if s.kind == "star"]
    if stars:
        ra, dec = stars[0].ra, stars[0].dec
    else:
        distance = rng.uniform(6.0, 11.0) * PIXEL_SCALE_ARCSEC
        angle = rng.uniform(0.0, 2 * math.pi)
        ra, dec = sky_from_tangent(distance * math.cos(angle), distance * math.sin(angle),
                                   sim.ra, sim.dec)
    for ex in sim.exposures:
        x, y = sky_to_pixel(ex.wcs, ra, dec)
        ny, nx = ex.shape
        jj, ii = np.mgrid[:ny, :nx]
        ex.mask[np.hypot(ex.origin[0] + ii - x, ex.origin[1] + jj - y) < radius_px] |= MASK_BPM


# -- the unregularised reference ------------------------------------------------------------


class PlainLeastSquares:
    """The target flux by least squares over every static direction, nothing cut.

    The static design, weighted and with its columns normalised, is decomposed once by SVD
    (its condition number is the square root of the normal matrix's: 1e6-1e7 where the
    normal matrix is refused, well within double precision); for each fit the target
    column is projected out of the static span and the flux follows from the residual
    (Frisch-Waugh-Lovell).  All-zero columns (grid sources on no usable pixel) add nothing
    to the span and are left out.
    """

    def __init__(self, scene: SceneModel):
        self.used = scene.weight > 0
        self.root_weight = np.sqrt(scene.weight[self.used])
        weighted = scene.static_design[self.used] * self.root_weight[:, None]
        norms = np.sqrt((weighted ** 2).sum(0))
        live = norms > 0
        u, s, _ = np.linalg.svd(weighted[:, live] / norms[live], full_matrices=False)
        # numerical rank, as numpy.linalg.lstsq's rcond: directions below it are rounding
        self.basis = u[:, s > s[0] * np.finfo(float).eps * max(weighted.shape)]
        self.singular_value_ratio = float(s[0] / s[-1])

    def solve(self, scene: SceneModel, offset) -> tuple[float, float]:
        """(flux, 1-sigma error) of one target at ``offset`` (dx, dy) px for the data of
        ``scene`` (the same design, other images)."""
        column = np.zeros(scene.data.size)
        rows = scene.rows[scene.detection_index]
        column[rows] = scene.target_stamps(np.atleast_2d(offset))[0].ravel()
        target = column[self.used] * self.root_weight
        residual = target - self.basis @ (self.basis.T @ target)
        information = float(residual @ residual)
        data = scene.data[self.used] * self.root_weight
        return float(residual @ data) / information, 1.0 / math.sqrt(information)


# -- the run ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StressRecovery:
    """One injection: true and fitted flux (ZP30) and error, the fit's flags and chi2,
    the target's share of information in cut directions (`LinearSolution`) and the
    unregularised reference's flux and error (NaN where the remedy did not engage)."""

    true_flux: float
    flux: float
    flux_err: float
    flags: int
    chi2: float
    dof: int
    cut_share: float = 0.0
    plain_flux: float = math.nan
    plain_flux_err: float = math.nan

    @property
    def pull(self) -> float:
        return (self.flux - self.true_flux) / self.flux_err

    @property
    def plain_pull(self) -> float:
        return (self.plain_flux - self.true_flux) / self.plain_flux_err

    @property
    def data_flags(self) -> int:
        # every flag says something about the data (positions fixed is a column now)
        return self.flags


@dataclass(frozen=True)
class StressOutcome:
    """A stress detection's result: its conditioning and recoveries, or why it failed."""

    detection: StressDetection
    conditioning: Conditioning | None = None
    failure: str | None = None
    recoveries: tuple[StressRecovery, ...] = field(default=())

    @property
    def engaged(self) -> bool:
        return self.conditioning is not None and self.conditioning.engaged


def run_stress_detection(detection: StressDetection, workdir: Path) -> StressOutcome:
    """Simulate ``detection`` in ``workdir``, inject and fit its point sources; a fit the
    engine refuses (`SMPError`) is the outcome's ``failure``, in one line."""
    rng = np.random.default_rng([detection.seed, 26, 1])
    try:
        field_fit = SimulatedFieldFit.create(
            detection.config(), workdir, defects=lambda sim: _place_defects(sim, detection, rng))
        conditioning = field_fit.phot.scene.conditioning
        plain = PlainLeastSquares(field_fit.phot.scene) if conditioning.engaged else None
        n = INJECTIONS_WHERE_ENGAGED if conditioning.engaged else INJECTIONS_PER_DETECTION
        recoveries = tuple(_inject(field_fit, plain, rng) for _ in range(n))
    except SMPError as exc:
        return StressOutcome(detection, failure=f"{type(exc).__name__}: {exc.one_line()}")
    return StressOutcome(detection, conditioning, recoveries=recoveries)


def _inject(field_fit: SimulatedFieldFit, plain: PlainLeastSquares | None,
            rng: np.random.Generator) -> StressRecovery:
    """One point source of S/N in `SNR_RANGE` at a random sub-pixel offset, new noise, fitted
    at that offset as ``smp fit --offset`` would."""
    offset = rng.uniform(-0.5, 0.5, (1, 2))
    flux = log_uniform(rng, *SNR_RANGE) * field_fit.flux_errors(offset)[0]
    phot = field_fit.realisation(rng, [flux], offset)
    fit = phot.fit_single(offset[0])
    plain_flux, plain_err = (plain.solve(phot.scene, offset[0]) if plain is not None
                             else (math.nan, math.nan))
    return StressRecovery(true_flux=flux, flux=fit.flux, flux_err=fit.flux_err,
                          flags=int(fit_record(fit).rows[0]["flags"]), chi2=fit.chi2,
                          dof=fit.dof, cut_share=float(fit.target_cut_share[0]),
                          plain_flux=plain_flux, plain_flux_err=plain_err)


@dataclass(frozen=True, eq=False)
class StressReport:
    """All stress outcomes; `summary` is the ``--json`` document."""

    outcomes: tuple[StressOutcome, ...]

    def summary(self) -> dict:
        fitted = [o for o in self.outcomes if o.failure is None]
        engaged = [r for o in fitted if o.engaged for r in o.recoveries]
        plain = [r for o in fitted if not o.engaged for r in o.recoveries]
        records = engaged + plain
        shifts = [abs(r.flux - r.plain_flux) / r.flux_err for r in engaged]
        return {
            "detections": len(self.outcomes),
            "failed": len(self.outcomes) - len(fitted),
            "failures": [f"seed {o.detection.seed}: {o.failure}" for o in self.outcomes
                         if o.failure is not None],
            "remedy_engaged": sum(o.engaged for o in fitted),
            "grid_sources_dropped": sum(len(o.conditioning.dropped_grid_sources)
                                        for o in fitted),
            "scene_modes_cut": sum(o.conditioning.modes_cut for o in fitted),
            "injections": len(records),
            "flagged": _flag_counts(records),
            "flagged_without_defect": sum(
                r.data_flags & ~o.detection.expected_flags != 0
                for o in fitted for r in o.recoveries),
            "defect_not_flagged": sum(
                o.detection.expected_flags & ~r.data_flags != 0
                for o in fitted for r in o.recoveries),
            "reduced_chi2": _quantiles([r.chi2 / r.dof for r in records]),
            "pulls": {"all": PullStats.of([r.pull for r in records]).to_dict(),
                      "remedy_not_engaged": PullStats.of([r.pull for r in plain]).to_dict(),
                      "remedy_engaged": PullStats.of([r.pull for r in engaged]).to_dict(),
                      "remedy_engaged_solved_without_it":
                          PullStats.of([r.plain_pull for r in engaged]).to_dict()},
            "shift_sigma_without_remedy": {
                "rms": float(np.sqrt(np.mean(np.square(shifts)))) if shifts else math.nan,
                "max": max(shifts) if shifts else math.nan},
            "max_target_cut_share": max((r.cut_share for r in engaged), default=0.0),
        }


def _flag_counts(records: Sequence[StressRecovery]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in records:
        for name in decode_flags(r.data_flags):
            counts[name] = counts.get(name, 0) + 1
    return counts


def _quantiles(values: Sequence[float]) -> dict:
    v = np.asarray(values, float)
    if v.size == 0:
        return {"median": math.nan, "p01": math.nan, "p99": math.nan}
    return {"median": float(np.median(v)), "p01": float(np.quantile(v, 0.01)),
            "p99": float(np.quantile(v, 0.99))}


def run_stress(n: int, seed: int = 0, progress: Progress | None = None) -> StressReport:
    """Fit ``n`` stress detections (`draw_stress_detections`), each with
    `INJECTIONS_PER_DETECTION` injections; simulated files live in a temporary folder."""
    if n < 1:
        raise ValueError(f"the stress run needs at least 1 detection, got {n}")
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="smp-stress-") as tmp:
        for k, detection in enumerate(draw_stress_detections(n, seed)):
            outcomes.append(run_stress_detection(detection, Path(tmp)))
            if progress:
                progress((k + 1) / n, f"stress: {k + 1}/{n} detections")
    return StressReport(tuple(outcomes))
