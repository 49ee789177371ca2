"""The inspector's state, without Qt: what is being measured, what is shown, and the
undo history of every change that alters the measurement.

The pattern is napari's ``ViewerModel``: a plain evented model that the Qt window only
observes and forwards user actions to, so the rules (what an undo restores, when a shown
fit no longer belongs to the offsets on screen, what a session may contain) are tested
without a display.

Offsets are the engine's `TargetOffsets`: px in the detection exposure relative to the
target's WCS position, in the frame of the settings' pixel convention; written in the
published order (``(dx, dy)``, ``(dx1, dx2, dy1, dy2)``) in sessions.
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from smp_model.fit.request import MODES, FitRequest, TargetOffsets, default_offsets
from smp_model.outputs.display import COLORMAPS, STRETCHES
from smp_model.settings import FitSettings

SESSION_FORMAT = "smp-session/1"
SETTINGS_KEYS = {"grid_size": int, "grid_step_arcsec": float, "fit_sky": bool,
                 "convention": str, "oversampling": int, "psf_normalization": str}
# A session is a few hundred bytes; anything far larger is not one.
MAX_SESSION_BYTES = 1 << 20
# Offsets further than this from the target's position are not a user's (px).
MAX_OFFSET_PX = 1000.0


class SessionError(ValueError):
    """A session that does not validate; the message names the entry and the problem."""


class Event:
    """A list of callbacks called with the event's arguments (a minimal evented signal)."""

    def __init__(self):
        self._callbacks: list[Callable] = []

    def connect(self, callback: Callable) -> None:
        self._callbacks.append(callback)

    def disconnect(self, callback: Callable) -> None:
        self._callbacks.remove(callback)

    def emit(self, *args) -> None:
        for callback in list(self._callbacks):
            callback(*args)


@dataclass(frozen=True)
class Measurement:
    """Everything a fit of the open detection depends on, besides the data.

    offsets : the single target's and the binary's offsets (both kept: switching mode
        and back returns to where the markers were).
    gain : shot-noise refit gain (electrons per SCI unit of the detection stamp); None: off.
    """

    mode: str = "single"
    single: TargetOffsets = field(default_factory=lambda: default_offsets("single",
                                                                          FitSettings()))
    binary: TargetOffsets = field(default_factory=lambda: default_offsets("binary",
                                                                          FitSettings()))
    settings: FitSettings = FitSettings()
    gain: float | None = None
    shot_noise_iterations: int = 1

    @classmethod
    def defaults(cls, settings: FitSettings, mode: str = "single", **changes) -> "Measurement":
        return cls(mode=mode, single=default_offsets("single", settings),
                   binary=default_offsets("binary", settings), settings=settings, **changes)

    @property
    def offsets(self) -> TargetOffsets:
        """The offsets of the current mode."""
        return self.single if self.mode == "single" else self.binary

    def with_offsets(self, offsets: TargetOffsets) -> "Measurement":
        return dataclasses.replace(self, **{offsets.mode: offsets})

    def request(self, optimize: bool = False) -> FitRequest:
        """The engine's request for this measurement (the current mode's offsets)."""
        return FitRequest(mode=self.mode, offsets=self.offsets, optimize=optimize,
                          gain=self.gain, shot_noise_iterations=self.shot_noise_iterations,
                          settings=self.settings)


def _same_offsets(a: TargetOffsets, b: TargetOffsets, tol: float = 1e-9) -> bool:
    return len(a) == len(b) and all(abs(u - v) <= tol for u, v in zip(a.published,
                                                                       b.published))


def describes(measurement: Measurement, fitted: FitRequest,
              fitted_offsets: TargetOffsets) -> bool:
    """Whether a fit asked for as ``fitted`` and found at ``fitted_offsets`` is a fit of
    ``measurement`` (same mode, settings, shot noise, and the offsets on screen)."""
    return (fitted.mode == measurement.mode and fitted.settings == measurement.settings
            and fitted.gain == measurement.gain
            and (fitted.gain is None
                 or fitted.shot_noise_iterations == measurement.shot_noise_iterations)
            and _same_offsets(fitted_offsets, measurement.offsets))


@dataclass(frozen=True)
class Edit:
    """One undoable change: ``text`` names it ("Move secondary")."""

    text: str
    before: Measurement
    after: Measurement


class InspectorModel:
    """The open detection, the measurement and its history, the selection and the display,
    and which fit is shown.

    Events (callbacks get no argument unless said): ``measurement_changed(Measurement)``
    (any change, including undo/redo), ``history_changed`` (undo/redo texts),
    ``displayed_changed`` (a new fit is shown, or the shown one no longer matches),
    ``detection_changed``, ``selection_changed``.
    """

    def __init__(self):
        self.detection: Path | None = None
        self.measurement = Measurement()
        self.selected_expnum: int | None = None
        self._undo: list[Edit] = []
        self._redo: list[Edit] = []
        self._gesture_base: Measurement | None = None
        # What the shown fit was asked for and the offsets it ended at.
        self.displayed_request: FitRequest | None = None
        self.displayed_offsets: TargetOffsets | None = None
        self.measurement_changed = Event()
        self.history_changed = Event()
        self.displayed_changed = Event()
        self.detection_changed = Event()
        self.selection_changed = Event()

    # -- the measurement ----------------------------------------------------------------

    @property
    def mode(self) -> str:
        return self.measurement.mode

    @property
    def offsets(self) -> TargetOffsets:
        return self.measurement.offsets

    def open(self, detection: Path, measurement: Measurement) -> None:
        """A new detection: history cleared, nothing shown yet."""
        self.detection = Path(detection)
        self.measurement = measurement
        self.selected_expnum = None
        self.displayed_request = self.displayed_offsets = None
        self._gesture_base = None
        self._undo.clear()
        self._redo.clear()
        self.detection_changed.emit()
        self.measurement_changed.emit(measurement)
        self.history_changed.emit()
        self.displayed_changed.emit()

    def restore(self, detection: Path | None, measurement: Measurement,
                displayed_request: FitRequest | None = None,
                displayed_offsets: TargetOffsets | None = None) -> None:
        """Back to a detection and measurement shown before (a failed open or settings
        change; the edit that led there is dropped from the history)."""
        self.detection = detection
        self.displayed_request, self.displayed_offsets = displayed_request, displayed_offsets
        while self._undo and self._undo[-1].after != measurement and \
                self._undo[-1].before == measurement:
            self._undo.pop()
        self._set(measurement)
        self.detection_changed.emit()
        self.history_changed.emit()

    def apply(self, text: str, measurement: Measurement) -> bool:
        """Make ``measurement`` current as one undoable edit named ``text`` (False: no
        change)."""
        before = self._gesture_base or self.measurement
        self._gesture_base = None
        if measurement == before:
            if measurement != self.measurement:
                self._set(measurement)
            return False
        self._undo.append(Edit(text, before, measurement))
        self._redo.clear()
        self._set(measurement)
        self.history_changed.emit()
        return True

    def move(self, text: str, offsets: TargetOffsets) -> bool:
        """Offsets of their mode changed by the user (undoable)."""
        return self.apply(text, self.measurement.with_offsets(offsets))

    def preview(self, offsets: TargetOffsets) -> None:
        """Offsets during a gesture (a marker drag): shown and fitted, recorded in the
        history as one edit when the gesture ends with `move`."""
        if self._gesture_base is None:
            self._gesture_base = self.measurement
        self._set(self.measurement.with_offsets(offsets))

    def _set(self, measurement: Measurement) -> None:
        if measurement == self.measurement:
            return
        self.measurement = measurement
        self.measurement_changed.emit(measurement)
        self.displayed_changed.emit()

    # -- undo ---------------------------------------------------------------------------

    @property
    def history(self) -> tuple[str, ...]:
        """Names of the edits that can be undone, oldest first."""
        return tuple(edit.text for edit in self._undo)

    @property
    def undo_text(self) -> str | None:
        return self._undo[-1].text if self._undo else None

    @property
    def redo_text(self) -> str | None:
        return self._redo[-1].text if self._redo else None

    def undo(self) -> bool:
        if not self._undo:
            return False
        edit = self._undo.pop()
        self._redo.append(edit)
        self._gesture_base = None
        self._set(edit.before)
        self.history_changed.emit()
        return True

    def redo(self) -> bool:
        if not self._redo:
            return False
        edit = self._redo.pop()
        self._undo.append(edit)
        self._set(edit.after)
        self.history_changed.emit()
        return True

    # -- what is shown ------------------------------------------------------------------

    def show_fit(self, request: FitRequest, offsets: TargetOffsets) -> None:
        """A fit asked for as ``request`` that ended at ``offsets`` is now on screen."""
        self.displayed_request, self.displayed_offsets = request, offsets
        self.displayed_changed.emit()

    @property
    def is_stale(self) -> bool:
        """True when the shown numbers are not those of the measurement on screen (a fit
        is pending, was cancelled, or failed)."""
        if self.displayed_request is None:
            return self.detection is not None
        return not describes(self.measurement, self.displayed_request,
                             self.displayed_offsets)

    def select(self, expnum: int | None) -> None:
        if expnum != self.selected_expnum:
            self.selected_expnum = expnum
            self.selection_changed.emit()

    # -- sessions -----------------------------------------------------------------------

    def session(self, view: dict | None = None) -> dict:
        """The session as a JSON-able dict.  ``fit``: the request of the shown fit, so a
        reloaded session re-runs it (a position search from the same start gives the
        same numbers, including the searched Δχ²)."""
        m = self.measurement
        shown = (self.displayed_request.as_meta()
                 if self.displayed_request is not None and not self.is_stale else None)
        return {
            "format": SESSION_FORMAT,
            "detection": str(self.detection) if self.detection else None,
            "settings": {k: getattr(m.settings, k) for k in SETTINGS_KEYS},
            "mode": m.mode,
            "offsets": {"single": list(m.single.published),
                        "binary": list(m.binary.published)},
            "shot_noise": {"enabled": m.gain is not None,
                           "gain": m.gain, "iterations": m.shot_noise_iterations},
            "fit": shown,
            "selected_expnum": self.selected_expnum,
            "view": view or {},
        }


@dataclass(frozen=True)
class Session:
    """A validated session: nothing is applied before all of it has been checked."""

    detection: Path
    measurement: Measurement
    fit: FitRequest | None
    selected_expnum: int | None
    view: dict


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
    if view.get("stretch") is not None and view["stretch"] not in STRETCHES:
        raise SessionError(f"'view.stretch' must be one of {', '.join(STRETCHES)}, "
                           f"got {view['stretch']!r}")
    if view.get("colormap") is not None and view["colormap"] not in COLORMAPS:
        raise SessionError(f"'view.colormap' must be one of {', '.join(COLORMAPS)}, "
                           f"got {view['colormap']!r}")
    for key in ("invert", "show_mask", "sky_aligned"):   # sky_aligned: optional, off
        if view.get(key) is not None and not isinstance(view[key], bool):
            raise SessionError(f"'view.{key}' must be true or false, got {view[key]!r}")
    if view.get("levels") is not None:
        levels = view["levels"]
        if not isinstance(levels, list) or len(levels) != 2:
            raise SessionError(f"'view.levels' must be [low, high], got {levels!r}")
        lo, hi = (_number(v, "'view.levels'") for v in levels)
        if not hi > lo:
            raise SessionError(f"'view.levels' must have low < high, got {levels!r}")
        view["levels"] = [lo, hi]
    if view.get("range") is not None:
        ranges = view["range"]
        if not (isinstance(ranges, list) and len(ranges) == 2
                and all(isinstance(r, list) and len(r) == 2 for r in ranges)):
            raise SessionError(f"'view.range' must be [[x0, x1], [y0, y1]], got {ranges!r}")
        (x0, x1), (y0, y1) = ([_number(v, "'view.range'") for v in r] for r in ranges)
        if not (x1 > x0 and y1 > y0) or max(x1 - x0, y1 - y0) > 1e5:
            raise SessionError(f"'view.range' must be increasing and at most 1e5 px wide, "
                               f"got {ranges!r}")
        view["range"] = [[x0, x1], [y0, y1]]
    return view


def parse_session(text: str, path: Path) -> Session:
    """Validate a whole session (JSON text read from ``path``) before anything is
    applied; raises `SessionError` with one line naming the entry and the problem."""
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
    for key in ("detection", "settings", "mode", "offsets"):
        if key not in state:
            raise SessionError(f"missing entry {key!r}")
    if not isinstance(state["detection"], str) or not state["detection"]:
        raise SessionError(f"'detection' must be a path, got {state['detection']!r}")
    detection = Path(state["detection"]).expanduser()
    if not detection.is_absolute():
        detection = path.parent / detection
    settings = _settings(state["settings"])
    mode = state["mode"]
    if mode not in MODES:
        raise SessionError(f"'mode' must be one of {', '.join(MODES)}, got {mode!r}")
    offsets = _table(state["offsets"], "'offsets'")
    single = (_offsets(offsets["single"], 2, "'offsets.single'") if "single" in offsets
              else default_offsets("single", settings))
    binary = (_offsets(offsets["binary"], 4, "'offsets.binary'") if "binary" in offsets
              else default_offsets("binary", settings))
    shot = _table(state.get("shot_noise") or {}, "'shot_noise'")
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
    measurement = Measurement(mode=mode, single=single, binary=binary, settings=settings,
                              gain=gain, shot_noise_iterations=iterations)
    fit = _fit(state.get("fit"), measurement)
    expnum = state.get("selected_expnum")
    if expnum is not None and (isinstance(expnum, bool) or not isinstance(expnum, int)):
        raise SessionError(f"'selected_expnum' must be an exposure number, got {expnum!r}")
    return Session(detection, measurement, fit, expnum, _view(state.get("view") or {}))


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


def psf_files_outside(session_or_manifest_folder: Path, psf_paths) -> list[Path]:
    """The PSF files that lie outside ``session_or_manifest_folder`` (they will be read,
    and PSF files run code: the window names them before opening)."""
    folder = Path(session_or_manifest_folder).resolve()
    outside = []
    for p in psf_paths:
        p = Path(p).resolve()
        if folder != p and folder not in p.parents:
            outside.append(p)
    return outside
