"""Saved inspector sessions (``*.smpsession.json``, format ``smp-session/1``), read back
without Qt.

A session names a detection and holds a measurement (settings, mode, both modes' offsets
in the published order, shot noise), the shown fit's request, the selected exposure and
the view.  It comes from someone else as often as from this machine, so the whole file is
validated before anything is applied: `parse_session` returns a `Session` or raises one
`SessionError` naming the entry and the problem.  The model writes sessions
(`smp_gui.state.InspectorModel.session`).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from smp_model.fit.request import MODES, FitRequest, TargetOffsets, default_offsets
from smp_model.outputs.display import COLORMAPS, STRETCHES
from smp_model.settings import FitSettings

from .state import SESSION_FORMAT, SETTINGS_KEYS, Measurement

__all__ = ["MAX_OFFSET_PX", "MAX_SESSION_BYTES", "SESSION_SUFFIX", "Session",
           "SessionError", "parse_session"]

SESSION_SUFFIX = ".smpsession.json"
# A session is a few hundred bytes; anything far larger is not one.
MAX_SESSION_BYTES = 1 << 20
# Offsets further than this from the target's position are not a user's (px).
MAX_OFFSET_PX = 1000.0


class SessionError(ValueError):
    """A session that does not validate; the message names the entry and the problem."""


@dataclass(frozen=True)
class Session:
    """A validated session: nothing is applied before all of it has been checked."""

    detection: Path
    measurement: Measurement
    fit: FitRequest | None
    selected_expnum: int | None
    view: dict


def parse_session(text: str, path: Path) -> Session:
    """Validate a whole session before anything is applied.

    Parameters
    ----------
    text : str
        The JSON text of the session file.
    path : Path
        Where it was read from; a relative ``detection`` is relative to its folder.

    Returns
    -------
    Session

    Raises
    ------
    SessionError
        With one line naming the entry and the problem.
    """
    state = _load(text)
    for key in ("detection", "settings", "mode", "offsets"):
        if key not in state:
            raise SessionError(f"missing entry {key!r}")
    detection = _detection(state["detection"], path)
    measurement = _measurement(state)
    fit = _fit(state.get("fit"), measurement)
    expnum = state.get("selected_expnum")
    if expnum is not None and (isinstance(expnum, bool) or not isinstance(expnum, int)):
        raise SessionError(f"'selected_expnum' must be an exposure number, got {expnum!r}")
    return Session(detection, measurement, fit, expnum, _view(state.get("view") or {}))


def _load(text: str) -> dict:
    """The JSON object of a session file of this format."""
    if len(text) > MAX_SESSION_BYTES:
        raise SessionError(f"too large for a session ({len(text)} bytes)")
    try:
        state = json.loads(text)
    except RecursionError:
        raise SessionError("not a session: nested too deeply") from None
    except ValueError as exc:
        raise SessionError(f"not valid JSON: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != SESSION_FORMAT:
        raise SessionError(f"not an SMP Inspector session (expected format "
                           f"{SESSION_FORMAT!r})")
    return state


def _detection(value, path: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise SessionError(f"'detection' must be a path, got {value!r}")
    detection = Path(value).expanduser()
    return detection if detection.is_absolute() else path.parent / detection


def _measurement(state: dict) -> Measurement:
    settings = _settings(state["settings"])
    mode = state["mode"]
    if mode not in MODES:
        raise SessionError(f"'mode' must be one of {', '.join(MODES)}, got {mode!r}")
    offsets = _table(state["offsets"], "'offsets'")
    single = (_offsets(offsets["single"], 2, "'offsets.single'") if "single" in offsets
              else default_offsets("single", settings))
    binary = (_offsets(offsets["binary"], 4, "'offsets.binary'") if "binary" in offsets
              else default_offsets("binary", settings))
    gain, iterations = _shot_noise(state.get("shot_noise") or {})
    return Measurement(mode=mode, single=single, binary=binary, settings=settings,
                       gain=gain, shot_noise_iterations=iterations)


def _shot_noise(value) -> tuple[float | None, int]:
    """(gain or None when off, iterations) of the shot-noise refit."""
    shot = _table(value, "'shot_noise'")
    enabled = shot.get("enabled", False)
    if not isinstance(enabled, bool):
        raise SessionError(f"'shot_noise.enabled' must be true or false, got {enabled!r}")
    gain = (_number(shot.get("gain"), "'shot_noise.gain'", positive=True) if enabled
            else None)
    iterations = shot.get("iterations", 1)
    if isinstance(iterations, bool) or not isinstance(iterations, int) or \
            not 0 <= iterations <= 1000:
        raise SessionError(f"'shot_noise.iterations' must be an integer 0..1000, got "
                           f"{iterations!r}")
    return gain, iterations


def _number(value, where: str, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or (positive and value <= 0):
        kind = "a positive number" if positive else "a finite number"
        raise SessionError(f"{where} must be {kind}, got {value!r}")
    return float(value)


def _table(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise SessionError(f"{where} must be a table, got {type(value).__name__}")
    return value


def _offsets(value, n: int, where: str) -> TargetOffsets:
    if not isinstance(value, list) or len(value) != n:
        raise SessionError(f"{where} must be a list of {n} numbers, got {value!r}")
    values = [_number(v, where) for v in value]
    if any(abs(v) > MAX_OFFSET_PX for v in values):
        raise SessionError(f"{where} must be within ±{MAX_OFFSET_PX:g} px, got {value!r}")
    return TargetOffsets.from_published(values)


def _settings(value) -> FitSettings:
    table = _table(value, "'settings'")
    kwargs = {}
    for key, kind in SETTINGS_KEYS.items():
        if key not in table:
            continue
        v = table[key]
        ok = (isinstance(v, bool) if kind is bool else isinstance(v, str) if kind is str
              else (not isinstance(v, bool) and isinstance(v, (int, float))
                    and (kind is float or float(v).is_integer())))
        if not ok:
            raise SessionError(f"'settings.{key}' must be {kind.__name__}, got {v!r}")
        kwargs[key] = kind(v)
    try:
        return FitSettings(**kwargs)
    except (ValueError, TypeError, KeyError) as exc:
        raise SessionError(f"'settings': {exc}") from None


def _view(value) -> dict:
    view = dict(_table(value, "'view'"))
    for key, allowed in (("stretch", STRETCHES), ("colormap", COLORMAPS)):
        if view.get(key) is not None and view[key] not in allowed:
            raise SessionError(f"'view.{key}' must be one of {', '.join(allowed)}, "
                               f"got {view[key]!r}")
    for key in ("invert", "show_mask", "sky_aligned"):   # sky_aligned: optional, off
        if view.get(key) is not None and not isinstance(view[key], bool):
            raise SessionError(f"'view.{key}' must be true or false, got {view[key]!r}")
    if view.get("levels") is not None:
        view["levels"] = _levels(view["levels"])
    if view.get("range") is not None:
        view["range"] = _range(view["range"])
    return view


def _levels(levels) -> list[float]:
    if not isinstance(levels, list) or len(levels) != 2:
        raise SessionError(f"'view.levels' must be [low, high], got {levels!r}")
    lo, hi = (_number(v, "'view.levels'") for v in levels)
    if not hi > lo:
        raise SessionError(f"'view.levels' must have low < high, got {levels!r}")
    return [lo, hi]


def _range(ranges) -> list[list[float]]:
    if not (isinstance(ranges, list) and len(ranges) == 2
            and all(isinstance(r, list) and len(r) == 2 for r in ranges)):
        raise SessionError(f"'view.range' must be [[x0, x1], [y0, y1]], got {ranges!r}")
    (x0, x1), (y0, y1) = ([_number(v, "'view.range'") for v in r] for r in ranges)
    if not (x1 > x0 and y1 > y0) or max(x1 - x0, y1 - y0) > 1e5:
        raise SessionError(f"'view.range' must be increasing and at most 1e5 px wide, "
                           f"got {ranges!r}")
    return [[x0, x1], [y0, y1]]


def _fit(value, measurement: Measurement) -> FitRequest | None:
    """The shown fit's request: kept only when it is an optimisation of this measurement
    (a fit at fixed offsets is the measurement's own request)."""
    if value is None:
        return None
    table = _table(value, "'fit'")
    optimize = table.get("optimize", False)
    if not isinstance(optimize, bool):
        raise SessionError(f"'fit.optimize' must be true or false, got {optimize!r}")
    if not optimize:
        return None
    n = 2 if measurement.mode == "single" else 4
    start = _offsets(table.get("offsets"), n, "'fit.offsets'")
    return measurement.request(optimize=True).replace(offsets=start)
