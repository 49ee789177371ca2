"""What to fit, as one immutable request.

`TargetOffsets` holds the target's point-source positions as pixel offsets ``(dx, dy)``
per source, relative to the WCS position of the detection's (ra, dec) in the detection
exposure, in the frame of the chosen pixel convention (`smp_model.conventions`).  It is
the only place where the published order of a binary's offsets, ``(dx1, dx2, dy1, dy2)``,
is converted to and from the ``(n, 2)`` layout the engine uses.

`FitRequest` says what a user asked for (single or binary, where, search or not, the
source shot-noise refit, the batch's binary search) and `measure` runs it on a loaded
detection (`smp_model.fit.measure`).  The CLI, the GUI's worker and the batch all go
through `measure`.  This module imports no engine machinery: the CLI parses requests first.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import SMPError
from ..settings import FitSettings

__all__ = ["MODES", "PUBLISHED_ORDER", "FitRequest", "TargetOffsets", "default_offsets",
           "detection_gain"]

#: How offsets are written anywhere a user reads or types them (CLI, JSON, tables, sessions).
PUBLISHED_ORDER = {1: ("dx", "dy"), 2: ("dx1", "dx2", "dy1", "dy2")}
MODES = ("single", "binary")


@dataclass(frozen=True)
class TargetOffsets:
    """Pixel offsets of the target's sources: ``positions[t] = (dx, dy)`` of source t
    (one source: single target; two: primary and secondary of a binary).

    Pixels of the detection exposure, relative to the target's WCS position, in the frame
    of the fit's pixel convention.
    """

    positions: tuple[tuple[float, float], ...]

    def __post_init__(self):
        positions = tuple((float(dx), float(dy)) for dx, dy in self.positions)
        if len(positions) not in PUBLISHED_ORDER:
            raise ValueError(f"a target has 1 or 2 sources, got {len(positions)}")
        if not all(math.isfinite(v) for p in positions for v in p):
            raise ValueError(f"offsets must be finite numbers, got {positions}")
        object.__setattr__(self, "positions", positions)

    @classmethod
    def from_published(cls, values: Sequence[float]) -> "TargetOffsets":
        """From ``(dx, dy)`` (single) or ``(dx1, dx2, dy1, dy2)`` (binary, published order)."""
        values = [float(v) for v in values]
        if len(values) == 2:
            return cls(((values[0], values[1]),))
        if len(values) == 4:
            dx1, dx2, dy1, dy2 = values
            return cls(((dx1, dy1), (dx2, dy2)))
        raise ValueError("offsets are (dx, dy) for a single source or (dx1, dx2, dy1, dy2) "
                         f"for a binary, got {len(values)} values")

    @classmethod
    def from_array(cls, array: Iterable) -> "TargetOffsets":
        """From an ``(n, 2)`` array of (dx, dy) rows."""
        return cls(tuple(tuple(row) for row in np.asarray(array, float).reshape(-1, 2)))

    @property
    def published(self) -> tuple[float, ...]:
        """``(dx, dy)`` or ``(dx1, dx2, dy1, dy2)``: the order of ``--offset``/``--binary``."""
        if len(self.positions) == 1:
            return self.positions[0]
        (dx1, dy1), (dx2, dy2) = self.positions
        return (dx1, dx2, dy1, dy2)

    @property
    def published_names(self) -> tuple[str, ...]:
        return PUBLISHED_ORDER[len(self.positions)]

    @property
    def array(self) -> np.ndarray:
        """(n, 2) float array of (dx, dy) rows (a new array: callers may modify it)."""
        return np.array(self.positions, float)

    @property
    def mode(self) -> str:
        return MODES[len(self.positions) - 1]

    def __len__(self) -> int:
        return len(self.positions)

    def moved(self, index: int, dx: float, dy: float) -> "TargetOffsets":
        """These offsets with source ``index`` at ``(dx, dy)``."""
        positions = list(self.positions)
        positions[index] = (dx, dy)
        return TargetOffsets(tuple(positions))

    def shifted(self, index: int, ddx: float, ddy: float) -> "TargetOffsets":
        """These offsets with source ``index`` moved by ``(ddx, ddy)`` px."""
        dx, dy = self.positions[index]
        return self.moved(index, dx + ddx, dy + ddy)

    def __str__(self) -> str:
        return ",".join(f"{v:g}" for v in self.published)


def default_offsets(mode: str, settings: FitSettings) -> TargetOffsets:
    """The convention's default target position (single) or binary search start."""
    if mode == "single":
        return TargetOffsets.from_published(settings.default_offset)
    if mode == "binary":
        return TargetOffsets.from_published(settings.default_binary_offsets)
    raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")


@dataclass(frozen=True)
class FitRequest:
    """One fit of a detection, as asked for.

    Attributes
    ----------
    mode
        ``"single"`` or ``"binary"``.
    offsets
        where the sources are (or where a search starts); None: the convention's
        default (`default_offsets`).  Must have one source for ``single``, two for
        ``binary``.
    optimize
        search the positions starting at ``offsets`` (`minimize_positions`; the published
        code used Powell).
    shot_noise
        refit with the target's own Poisson variance
        (`DetectionPhotometry.with_shot_noise`); ``gain`` (electrons per SCI unit of the
        detection stamp; None: the manifest's) implies it; ``shot_noise_iterations``:
        1 as published, 0 until converged.
    binary_search_if
        single mode only: also search a binary from the default start and
        keep it when its delta chi2 exceeds this value (the batch option); the searched
        delta chi2 is recorded on the kept fit either way (``binary_search_delta_chi2``).
    settings
        grid, sky, convention, ... (`FitSettings`).
    """

    mode: str = "single"
    offsets: TargetOffsets | None = None
    optimize: bool = False
    shot_noise: bool = False
    gain: float | None = None
    shot_noise_iterations: int = 1
    binary_search_if: float | None = None
    settings: FitSettings = FitSettings()

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.offsets is not None and not isinstance(self.offsets, TargetOffsets):
            object.__setattr__(self, "offsets", TargetOffsets.from_published(self.offsets))
        if self.offsets is not None and self.offsets.mode != self.mode:
            names = PUBLISHED_ORDER[MODES.index(self.mode) + 1]
            raise ValueError(f"a {self.mode} fit needs offsets ({', '.join(names)}), got "
                             f"{self.offsets.published}")
        if self.gain is not None:
            if not (isinstance(self.gain, (int, float)) and math.isfinite(self.gain)
                    and self.gain > 0):
                raise ValueError(f"gain must be a positive number, got {self.gain!r}")
            object.__setattr__(self, "gain", float(self.gain))
            object.__setattr__(self, "shot_noise", True)
        if isinstance(self.shot_noise_iterations, bool) or not (
                isinstance(self.shot_noise_iterations, int) and self.shot_noise_iterations >= 0):
            raise ValueError("shot-noise iterations must be an integer >= 0 (0: to "
                             f"convergence), got {self.shot_noise_iterations!r}")
        if self.binary_search_if is not None:
            if self.mode != "single":
                raise ValueError("binary_search_if applies to single fits only")
            if not math.isfinite(float(self.binary_search_if)):
                raise ValueError("binary_search_if must be a finite number, got "
                                 f"{self.binary_search_if!r}")

    @property
    def target_offsets(self) -> TargetOffsets:
        """``offsets``, or the convention's default when None."""
        return self.offsets if self.offsets is not None else default_offsets(self.mode,
                                                                            self.settings)

    def check_gain(self, manifest) -> None:
        """Refuse a shot-noise request without a gain (``gain``, or the manifest's for
        the detection exposure) before any stamp or PSF is read (`detection_gain`)."""
        if self.shot_noise:
            detection_gain(manifest, self.gain)

    def replace(self, **changes) -> "FitRequest":
        return dataclasses.replace(self, **changes)

    def as_meta(self) -> dict:
        """What was asked for, for tables and sessions (offsets in the published order)."""
        offsets = self.target_offsets
        return {"mode": self.mode, "offsets": list(offsets.published),
                "offsets_order": ",".join(offsets.published_names),
                "optimize": self.optimize,
                "shot_noise": ({"gain": self.gain, "iterations": self.shot_noise_iterations}
                               if self.shot_noise else None),
                "binary_search_if": self.binary_search_if,
                "settings": self.settings.as_meta()}




def detection_gain(manifest, gain: float | None = None) -> float:
    """The gain (electrons per SCI unit of the detection stamp) of the shot-noise refit:
    ``gain``, else the manifest's for its detection exposure; `SMPError` naming the
    manifest when neither gives one."""
    entry = manifest.detection_exposure
    gain = entry.gain if gain is None else gain
    if gain is None:
        raise SMPError(f"no gain for the detection {entry.label}: give one (--gain) or "
                       "set 'gain' in the manifest", manifest.path)
    if not gain > 0:
        raise ValueError(f"gain must be positive, got {gain}")
    return float(gain)
