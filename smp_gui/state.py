"""The inspector's state, without Qt: what is being measured, what is shown, and the
undo history of every change that alters the measurement.

The pattern is napari's ``ViewerModel``: a plain evented model that the Qt window only
observes and forwards user actions to, so the rules (what an undo restores, when a shown
fit no longer belongs to the offsets on screen) are tested without a display.  The model
writes its session (`InspectorModel.session`); `smp_gui.session` reads one back.

Offsets are the engine's `TargetOffsets`: px in the detection exposure relative to the
target's WCS position, in the frame of the settings' pixel convention; written in the
published order (``(dx, dy)``, ``(dx1, dx2, dy1, dy2)``) in sessions.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from smp_model.fit.request import FitRequest, TargetOffsets, default_offsets
from smp_model.settings import FitSettings

__all__ = ["SESSION_FORMAT", "SETTINGS_KEYS", "SWAP_NOTE", "Edit", "Event", "InspectorModel",
           "Measurement", "describes", "search_edit_text", "search_message"]

# The session file's format and the settings it holds (read by `smp_gui.session`).
SESSION_FORMAT = "smp-session/1"
SETTINGS_KEYS = {"grid_size": int, "grid_step_arcsec": float, "fit_sky": bool,
                 "convention": str, "oversampling": int, "psf_normalization": str}

# A binary search numbers its components by flux (1, the primary, is the brighter), not by
# where they started (`smp_model.fit.results.BinaryFit.swapped_from_start`): when that
# renumbered the pair on screen, the window says so in these words (flux table, status
# bar, the edit's name in Edit > Undo).
SWAP_NOTE = "1 ↔ 2: renumbered by the search"
_SWAP_DETAIL = ("1, the primary (the brighter), is the component that was 2 on screen; "
                "Ctrl+Z brings the old numbering back")


def search_edit_text(swapped: bool) -> str:
    """The name of a position search's edit (Edit > Undo ...)."""
    return "Optimize positions" + (" (1 ↔ 2 renumbered)" if swapped else "")


def search_message(elapsed_s: float, n_evaluations: int, swapped: bool) -> str:
    """The status bar's line after a position search."""
    line = f"optimised in {elapsed_s:.2f} s ({n_evaluations} chi2 evaluations)"
    return f"{line}; {SWAP_NOTE}: {_SWAP_DETAIL}" if swapped else line


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

    Attributes
    ----------
    mode : str
        ``"single"`` or ``"binary"``.
    single, binary : TargetOffsets
        The single target's and the binary's offsets (both kept: switching mode and back
        returns to where the markers were).
    settings : FitSettings
    gain : float or None
        Shot-noise refit gain (electrons per SCI unit of the detection stamp); None: off.
    shot_noise_iterations : int
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

    def apply(self, text: str, measurement: Measurement, merge: bool = False) -> bool:
        """Make ``measurement`` current as one undoable edit named ``text`` (False: no
        change).  With ``merge``, an edit of the same name just before (nothing undone
        since) grows to take this one in: a run of nudges of a marker is one step."""
        before = self._gesture_base or self.measurement
        self._gesture_base = None
        if merge and self._undo and not self._redo and self._undo[-1].text == text \
                and self._undo[-1].after == before:
            before = self._undo.pop().before      # where the run started
            self.history_changed.emit()
        if measurement == before:
            if measurement != self.measurement:
                self._set(measurement)
            return False
        self._undo.append(Edit(text, before, measurement))
        self._redo.clear()
        self._set(measurement)
        self.history_changed.emit()
        return True

    def move(self, text: str, offsets: TargetOffsets, merge: bool = False) -> bool:
        """Offsets of their mode changed by the user (undoable; ``merge``: see `apply`)."""
        return self.apply(text, self.measurement.with_offsets(offsets), merge)

    def preview(self, offsets: TargetOffsets) -> None:
        """Offsets during a gesture (a marker drag): shown and fitted, recorded in the
        history as one edit when the gesture ends with `move`."""
        if self._gesture_base is None:
            self._gesture_base = self.measurement
        self._set(self.measurement.with_offsets(offsets))

    @property
    def gesture_start(self) -> Measurement:
        """The measurement the gesture under way started from (the current one when
        there is none): a drag's displacements are added to it."""
        return self._gesture_base or self.measurement

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
