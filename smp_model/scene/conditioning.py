"""Solving the static part of the scene: its normal matrix factorised once, and what to do
when the data do not constrain all of it.

The static parameters (grid amplitudes, one sky per exposure) are Jacobi-scaled (each
divided by the square root of its normal-matrix diagonal, so that 1 is the parameter's
error if it were fitted alone) and Cholesky-factorised.  That is the whole story for a
well-conditioned scene: condition number (LAPACK's 1-norm estimate) below
`MAX_CONDITION`, every parameter on some usable pixel.

Otherwise the scene has directions no pixel constrains, and the fit is made well-posed the
way least-squares codes do (a truncated eigen-decomposition, as ``numpy.linalg.lstsq``'s
``rcond`` or ``scipy.linalg.pinvh``, with a threshold set by what double precision can
carry):

* grid sources that touch no usable pixel (under masks in every exposure, off every
  stamp) are dropped: their amplitude is fixed at 0;
* of the rest, the directions of the scaled normal matrix whose eigenvalue is below the
  largest over `MAX_CONDITION` are cut (amplitude 0 along them).  With a band-limited PSF
  these are combinations of neighbouring grid sources that alternate in sign (spatial
  frequencies near the 0.5 cycle per pixel that the renderer removes): a grid finer than
  the seeing of every exposure can show.

The solution is then the least-squares fit over the directions kept (the minimum-norm
solution in the scaled parameters).  What this does to the target flux is bounded by the
target's ``share``, the fraction of its information that lies in the cut directions
(`TruncatedSolver.cut_share`, per solve): freeing those directions would raise its error
by 1/sqrt(1 - share) and move it by about sqrt(share) of its error rms; and if the true
scene has amplitudes along them that explain chi2_cut of the data, the cut moves the
flux by at most sqrt(share * chi2_cut) of its error (Cauchy-Schwarz), where chi2_cut is
tiny because the eigenvalues are.  `SceneModel` refuses a target whose share exceeds
`MAX_TARGET_CUT_SHARE`: it would not be determined by the data alone.  Fits that meet the
first paragraph's conditions are solved by Cholesky as before, bit for bit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from ..errors import FitError

__all__ = ["MAX_CONDITION", "MAX_DROPPED_GRID_FRACTION", "MAX_TARGET_CUT_SHARE",
           "Conditioning", "StaticSolver", "TruncatedSolver", "factorise_static"]

# Above this condition number of the Jacobi-scaled normal matrix, solving it by Cholesky
# gives errors that carry ~cond * 1e-16 relative error, and its pivots start to be
# dominated by rounding: directions below 1/MAX_CONDITION of the largest eigenvalue are
# then cut instead.
MAX_CONDITION = 1e12
# A grid of which more than this fraction touches no usable pixel does not describe the
# stamps (a grid step far too large, an exposure set that misses the grid): refused, not
# fitted with the few sources left.
MAX_DROPPED_GRID_FRACTION = 0.5
# Largest share of a target flux's information that may lie in cut directions.  Freeing
# them would raise the flux error by 1/sqrt(1 - share) (at most 2.6 %) and move the flux by
# about sqrt(share) sigma rms (at most 0.22 sigma): both estimates are honest (the stress
# run of `smp validate`), the cut one assumes what the data cannot say, that the grid has
# no pattern the seeing erases.  Beyond it the target is not determined by the data alone.
MAX_TARGET_CUT_SHARE = 0.05


@dataclass(frozen=True)
class Conditioning:
    """How the static system was solved.

    condition_number : of the Jacobi-scaled normal matrix of the static parameters that
        touch a usable pixel (LAPACK's 1-norm estimate from its Cholesky factor; inf when
        that fails).
    solved_condition_number : of the system actually solved: ``condition_number`` when
        nothing was fixed, else the ratio of the largest to the smallest eigenvalue kept
        (at most `MAX_CONDITION`).
    dropped_grid_sources : indices of the grid sources that touch no usable pixel
        (fixed at 0).
    modes_cut : directions (of the remaining static parameters) with eigenvalue below
        the largest over `MAX_CONDITION`, fixed at 0.
    """

    condition_number: float
    solved_condition_number: float
    dropped_grid_sources: tuple[int, ...] = ()
    modes_cut: int = 0

    @property
    def engaged(self) -> bool:
        """Whether any scene direction was fixed at 0 (dropped or cut)."""
        return bool(self.dropped_grid_sources) or self.modes_cut > 0

    @property
    def n_fixed(self) -> int:
        """Static directions fixed at 0: they are not free parameters of the fit."""
        return len(self.dropped_grid_sources) + self.modes_cut

    def as_meta(self) -> dict:
        return {"condition_number": self.condition_number,
                "solved_condition_number": self.solved_condition_number,
                "grid_sources_dropped": len(self.dropped_grid_sources),
                "dropped_grid_source_indices": list(self.dropped_grid_sources),
                "scene_modes_cut": self.modes_cut,
                "max_condition": MAX_CONDITION}


class StaticSolver:
    """``N_bb^-1`` applied to right-hand sides, from the Cholesky factor of the
    Jacobi-scaled normal matrix (``scale``: the Jacobi factors, 0 for dropped
    parameters)."""

    def __init__(self, scale: np.ndarray, cholesky):
        self.scale = scale
        self._cho = cholesky

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """N_bb^-1 rhs (rhs (P,) or (P, k))."""
        s = self.scale if rhs.ndim == 1 else self.scale[:, None]
        return s * scipy.linalg.cho_solve(self._cho, s * rhs, check_finite=False)

    def cut_share(self, coupling: np.ndarray, schur: np.ndarray) -> np.ndarray:
        """Per target (n_t,): the information the target columns lose to the cut
        directions, relative to the Schur complement's diagonal (what the fit keeps).

        ``coupling``: N_bt (P, n_t); ``schur``: S = N_tt - N_tb N_bb^+ N_bt (n_t, n_t).
        Nothing is cut here: zeros."""
        return np.zeros(coupling.shape[1])


class TruncatedSolver(StaticSolver):
    """The pseudo-inverse of the scaled normal matrix over the eigen-directions kept
    (``vectors`` (P, k), ``values`` (k,)); ``cut_vectors``/``cut_values`` are the
    directions fixed at 0."""

    def __init__(self, scale: np.ndarray, vectors: np.ndarray, values: np.ndarray,
                 cut_vectors: np.ndarray, cut_values: np.ndarray):
        super().__init__(scale, None)
        self._vectors, self._inverse_values = vectors, 1.0 / values
        self._cut_vectors, self._cut_values = cut_vectors, cut_values

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        s = self.scale if rhs.ndim == 1 else self.scale[:, None]
        inverse = self._inverse_values if rhs.ndim == 1 else self._inverse_values[:, None]
        return s * (self._vectors @ (inverse * (self._vectors.T @ (s * rhs))))

    def cut_share(self, coupling: np.ndarray, schur: np.ndarray) -> np.ndarray:
        projection = self._cut_vectors.T @ (self.scale[:, None] * coupling)
        lost = np.sum(projection ** 2 / self._cut_values[:, None], axis=0)
        return lost / np.diag(schur)


def factorise_static(normal: np.ndarray, n_grid: int, describe) -> tuple[StaticSolver,
                                                                          Conditioning]:
    """Factorise the static normal matrix ``normal`` (P, P) whose first ``n_grid``
    parameters are grid amplitudes (the rest skies): Cholesky when well-conditioned, else
    the truncated eigen-decomposition of the module docstring.

    ``describe(indices)`` names parameters for the error messages.  Raises `FitError`
    when a sky touches no usable pixel, or when more than `MAX_DROPPED_GRID_FRACTION` of
    the grid does.
    """
    diag = np.diag(normal).copy()
    dead = np.flatnonzero(~(diag > 0))
    _check_dead(dead, n_grid, describe)
    live = np.ones(diag.size, bool)
    live[dead] = False
    scale = np.zeros(diag.size)
    scale[live] = 1.0 / np.sqrt(diag[live])
    scaled = (normal * np.outer(scale, scale) if dead.size == 0
              else normal[np.ix_(live, live)] * np.outer(scale[live], scale[live]))
    cholesky, condition = _cholesky_condition(scaled)
    if dead.size == 0 and condition < MAX_CONDITION:
        return StaticSolver(scale, cholesky), Conditioning(condition, condition)
    return _truncated(scaled, scale, live, condition)


def _check_dead(dead: np.ndarray, n_grid: int, describe) -> None:
    skies = dead[dead >= n_grid]
    if skies.size:
        raise FitError(f"{skies.size} scene parameter(s) touch no usable pixel "
                       f"({describe(skies)}); the system is singular", "fit")
    if dead.size > MAX_DROPPED_GRID_FRACTION * n_grid:
        raise FitError(f"{dead.size} of {n_grid} grid sources touch no usable pixel "
                       f"({describe(dead)}); the system is singular: the grid does not "
                       "cover the stamps (reduce the grid step or size)", "fit")


def _cholesky_condition(scaled: np.ndarray) -> tuple[tuple | None, float]:
    """(Cholesky factor or None, condition-number estimate) of a scaled normal matrix."""
    try:
        cho = scipy.linalg.cho_factor(scaled, lower=True, check_finite=False)
        # LAPACK's 1-norm estimate from the factor: O(n^2), unlike an eigen-solve.
        rcond, _ = scipy.linalg.lapack.dpocon(cho[0], np.abs(scaled).sum(0).max(), uplo="L")
    except np.linalg.LinAlgError:
        return None, math.inf
    return cho, (1.0 / rcond if rcond > 0 else math.inf)


def _truncated(scaled: np.ndarray, scale: np.ndarray, live: np.ndarray, condition: float
               ) -> tuple[StaticSolver, Conditioning]:
    """The solver over the eigen-directions of ``scaled`` (the live parameters' scaled
    normal matrix) above the largest eigenvalue over `MAX_CONDITION`."""
    values, vectors = scipy.linalg.eigh(scaled, check_finite=False)
    keep = values > values[-1] / MAX_CONDITION
    embedded = np.zeros((live.size, values.size))
    embedded[live] = vectors
    # Cut directions whose eigenvalue rounding made <= 0 carry no information either
    # (their coupling to any column is rounding too): a floor keeps the share finite.
    cut_values = np.maximum(values[~keep], values[-1] * np.finfo(float).eps)
    solver = TruncatedSolver(scale, embedded[:, keep], values[keep], embedded[:, ~keep],
                             cut_values)
    dropped = tuple(int(i) for i in np.flatnonzero(~live))
    return solver, Conditioning(condition, float(values[-1] / values[keep][0]), dropped,
                                int(np.count_nonzero(~keep)))
