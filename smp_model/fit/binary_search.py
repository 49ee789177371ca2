"""Starting points of a binary position search.

A pair's chi2 surface has several basins (the pair swapped, a companion on either side), so
the search polishes a few seeds instead of one start: the best pairs of a coarse scan about
the best single position (`binary_seeds`).  Offsets are detection-exposure pixels in the
convention's frame (`smp_model.fit.request.TargetOffsets`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..scene.model import SceneModel
from .position_search import pair_chi2

__all__ = ["ANCHORED_RADIUS", "ANCHORED_STEP", "COINCIDENT_PX", "N_SEEDS", "SPLIT_RADIUS",
           "SPLIT_STEP", "BinarySeeds", "binary_seeds", "split_if_coincident",
           "swapped_from_start"]

# Coarse scan for binary seeds (px): the secondary about the best single position on a
# grid of ANCHORED_STEP out to ANCHORED_RADIUS (an unequal pair: the single fit sits on
# the brighter component), and the pair split symmetrically about it every SPLIT_STEP out
# to SPLIT_RADIUS (a near-equal pair: the single fit sits between them).
ANCHORED_STEP, ANCHORED_RADIUS = 1.0, 8.0
SPLIT_STEP, SPLIT_RADIUS = 0.5, 3.0
N_SEEDS = 3
# Sources closer than this (px) are one point for a search's start.
COINCIDENT_PX = 1e-3


@dataclass(frozen=True)
class BinarySeeds:
    """Starts of a binary search (`binary_seeds`): ``seeds`` (each (2, 2) px), the best
    symmetric split within `SPLIT_RADIUS` (``blend``: the start of the blend fit of an
    unresolved pair) and ``n_solves``, the scan's solves."""

    seeds: list[np.ndarray]
    blend: np.ndarray
    n_solves: int


def binary_seeds(scene: SceneModel, single: np.ndarray, n_seeds: int = N_SEEDS
                 ) -> BinarySeeds:
    """Starts for a binary search: the ``n_seeds`` best pairs of a coarse scan about the
    best single position ``single`` (dx, dy), at least a pixel apart (pairs compared up
    to the swap of the two sources), and the scan's best symmetric split.

    The best anchored pair always comes first: it keeps the single source where it was and
    adds a free-flux secondary, so it fits at least as well as one source.
    """
    anchored = _separation_grid(ANCHORED_STEP, ANCHORED_RADIUS)
    split = _separation_grid(SPLIT_STEP, SPLIT_RADIUS, half_plane=True)
    pairs = ([np.array([single, single + d]) for d in anchored]
             + [np.array([single - d / 2, single + d / 2]) for d in split])
    chi2 = pair_chi2(scene, np.array(pairs))
    n_anchored = len(anchored)
    first = int(np.argmin(chi2[:n_anchored]))
    seeds = [pairs[first]]
    for k in np.argsort(chi2):
        if len(seeds) >= n_seeds or not np.isfinite(chi2[k]):
            break
        if all(_pair_distance(pairs[k], s) > 1.0 for s in seeds):
            seeds.append(pairs[k])
    blend = pairs[n_anchored + int(np.argmin(chi2[n_anchored:]))]
    return BinarySeeds(seeds=seeds, blend=blend, n_solves=len(pairs))


def _separation_grid(step: float, radius: float, half_plane: bool = False) -> np.ndarray:
    """Separation vectors (k, 2) px on a square grid of ``step`` within ``radius``, zero
    left out; ``half_plane`` keeps one of each +-d (a symmetric split about a point is the
    same pair for d and -d)."""
    axis = np.arange(-radius, radius + step / 2, step)
    d = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)
    length = np.hypot(*d.T)
    d = d[(length <= radius + 1e-9) & (length > 0)]
    if half_plane:
        d = d[(d[:, 1] > 0) | ((d[:, 1] == 0) & (d[:, 0] > 0))]
    return d


def _pair_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Largest source displacement between two pairs, the smaller over both labellings."""
    return min(np.abs(a - b).max(), np.abs(a - b[::-1]).max())


def split_if_coincident(start: np.ndarray) -> np.ndarray:
    """A two-source start whose sources coincide (their fluxes are then degenerate: no
    chi2, no gradient) split symmetrically along x by the split scan's step; any other
    start as it is."""
    start = np.array(start, float)
    if start.shape == (2, 2) and np.hypot(*(start[1] - start[0])) < COINCIDENT_PX:
        centre = start.mean(axis=0)
        half = np.array([SPLIT_STEP / 2, 0.0])
        start = np.array([centre - half, centre + half])
    return start


def swapped_from_start(start: np.ndarray, end: np.ndarray) -> bool:
    """Whether a two-source search from ``start`` to ``end`` (each (2, 2) px, rows
    (dx, dy) of sources 1 and 2) swapped the sources' numbers: the pairing of each end
    with the other start moves them less (total squared displacement) than the pairing
    by number.  A search numbers its end by flux, so a start whose source 1 was the
    fainter one, or a search that slid the pair past each other, swaps them."""
    start, end = np.asarray(start, float), np.asarray(end, float)
    kept = np.sum((end - start) ** 2)
    swapped = np.sum((end - start[::-1]) ** 2)
    return bool(swapped < kept)
