"""Delta-chi2 map of a binary: chi2 over a grid of secondary positions.

For each cell the secondary sits at that offset and the linear problem (fluxes, scene,
skies) is re-solved; the primary is either held at its position or re-optimised (Powell
over its two offsets).  Useful to see whether a second component is real and how well its
position is constrained.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from ..errors import Cancelled, FitError
from ..blas import single_threaded_blas
from .photometry import DetectionPhotometry

__all__ = ["PRIMARY_XTOL", "Chi2Map", "chi2_map"]

# Powell's position tolerance (px) for a re-optimised primary: the published single-source
# search's.
PRIMARY_XTOL = 0.01


@dataclass(frozen=True, eq=False)
class Chi2Map:
    """chi2 of the binary model with the secondary at (dx[i], dy[j]) -> ``chi2[j, i]``.

    Offsets are pixels in the convention's frame (like all target offsets);
    ``primary[j, i]`` is the primary's (dx, dy) for that cell; ``chi2_single`` is the
    single-source chi2 at the convention's default offset, so ``chi2_single - chi2`` is the
    improvement a secondary there brings.  Cells where the fit is degenerate are NaN.
    """

    dx: np.ndarray
    dy: np.ndarray
    chi2: np.ndarray
    primary: np.ndarray
    chi2_single: float
    reoptimized_primary: bool

    @property
    def delta_chi2(self) -> np.ndarray:
        """chi2 - min(chi2): 0 at the best cell."""
        return self.chi2 - np.nanmin(self.chi2)

    @property
    def best(self) -> tuple[float, float]:
        """Secondary (dx, dy) of the best cell."""
        j, i = np.unravel_index(np.nanargmin(self.chi2), self.chi2.shape)
        return (float(self.dx[i]), float(self.dy[j]))

    def best_offsets(self) -> tuple[float, float, float, float]:
        """(dx1, dx2, dy1, dy2) of the best cell, in the published order."""
        j, i = np.unravel_index(np.nanargmin(self.chi2), self.chi2.shape)
        p = self.primary[j, i]
        return (float(p[0]), float(self.dx[i]), float(p[1]), float(self.dy[j]))


def chi2_map(phot: DetectionPhotometry, primary: Sequence[float], center: Sequence[float],
             half_width: float = 2.0, step: float = 0.2, reoptimize_primary: bool = False,
             progress: Callable[[float, str], None] | None = None,
             should_stop: Callable[[], bool] | None = None) -> Chi2Map:
    """Map chi2 over secondary offsets ``center +- half_width`` px every ``step`` px, with
    the primary at ``primary`` (dx, dy), held or re-optimised per cell.  ``should_stop`` is
    polled per row and raises `Cancelled` when it returns True."""
    n = int(round(half_width / step))
    dx = float(center[0]) + step * np.arange(-n, n + 1)
    dy = float(center[1]) + step * np.arange(-n, n + 1)
    start = np.asarray(primary, float)
    chi2 = np.full((dy.size, dx.size), math.nan)
    primaries = np.empty((dy.size, dx.size, 2))
    with single_threaded_blas():
        for j, y in enumerate(dy):
            if should_stop and should_stop():
                raise Cancelled()
            if progress:
                progress(j / dy.size, "mapping chi2 over secondary positions")
            for i, x in enumerate(dx):
                p = _best_primary(phot, start, (x, y)) if reoptimize_primary else start
                primaries[j, i] = p
                chi2[j, i] = _chi2_or_nan(phot, np.array([p, (x, y)]))
    chi2_single = phot.chi2(np.array([phot.default_offset]))
    return Chi2Map(dx=dx, dy=dy, chi2=chi2, primary=primaries, chi2_single=chi2_single,
                   reoptimized_primary=reoptimize_primary)


def _chi2_or_nan(phot: DetectionPhotometry, offsets: np.ndarray) -> float:
    try:
        return phot.chi2(offsets)
    except FitError:   # secondary on top of the primary: degenerate
        return math.nan


def _best_primary(phot, start: np.ndarray, secondary) -> np.ndarray:
    def objective(p):
        value = _chi2_or_nan(phot, np.array([p, secondary]))
        return math.inf if math.isnan(value) else value
    return minimize(objective, start, method="Powell", options={"xtol": PRIMARY_XTOL}).x
