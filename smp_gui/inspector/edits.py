"""What the user does to the markers and the Fit panel, as named, undoable edits of the
inspector's measurement (`smp_gui.state.InspectorModel.apply`): the names are those the
Edit menu shows ("Undo nudge primary").

Offsets are px relative to the target's WCS position in the convention's frame; marker
displacements are in stamp coordinates, which differ from that frame by a constant shift,
so a displacement is the same in both.
"""
from __future__ import annotations

import dataclasses

from smp_model.fit.request import TargetOffsets

from ..state import Measurement

__all__ = ["COMPONENT_NAMES", "NUDGE_PX", "Edits"]

NUDGE_PX = 0.1
COMPONENT_NAMES = {1: ("target",), 2: ("primary", "secondary")}


class Edits:
    """The edits of ``window``'s measurement that its widgets ask for.

    Parameters
    ----------
    window : InspectorWindow
    """

    def __init__(self, window):
        self.window = window
        self.model = window.model
        self.dragging = False      # a marker is being dragged

    def connect(self):
        """Listen to the Fit panel and the markers (once the window has built them)."""
        w = self.window
        fc = w.fit_controls
        fc.settingsChanged.connect(self.change_settings)
        fc.modeChanged.connect(self.switch_mode)
        fc.offsetsEdited.connect(lambda offsets: self.model.move(
            "Edit offsets", TargetOffsets.from_published(offsets)))
        fc.shotNoiseChanged.connect(self.change_shot_noise)
        w.markers.dragged.connect(self.drag)
        w.markers.dragFinished.connect(self.end_drag)

    def set_offsets(self, offsets, mode: str | None = None, text: str = "Edit offsets"):
        """`InspectorWindow.set_offsets`."""
        measurement = self.model.measurement.with_offsets(
            TargetOffsets.from_published(offsets))
        self.model.apply(text, dataclasses.replace(measurement,
                                                   mode=mode or self.model.mode))

    def nudge(self, ddx: float, ddy: float):
        """Move the selected marker by (ddx, ddy) px; a run of nudges of one marker is
        one undo step."""
        markers = self.window.markers
        if self.window.result is None or markers.count == 0:
            return
        k = min(markers.selected_index, markers.count - 1)
        self.model.move(f"Nudge {self._component_name(k)}",
                        self.model.offsets.shifted(k, ddx, ddy), merge=True)

    def nudge_on_screen(self, right: int, up: int):
        """Arrow keys: move the selected marker by `NUDGE_PX` px in the direction the key
        points to on screen (sky-aligned, Up is north; otherwise +y)."""
        du, dv = self.window.panels_view.stamp_direction(right, up)
        self.nudge(du * NUDGE_PX, dv * NUDGE_PX)

    def drag(self, k: int, u0: float, v0: float, u1: float, v1: float):
        """Marker ``k``, grabbed at stamp (u0, v0), is at (u1, v1): shown and fitted,
        one edit when the drag ends."""
        self.dragging = True
        self.model.preview(self.model.gesture_start.offsets.shifted(k, u1 - u0, v1 - v0))

    def end_drag(self, k: int, u0: float, v0: float, u1: float, v1: float):
        """The drag of marker ``k`` from (u0, v0) ended at (u1, v1): one edit."""
        self.dragging = False
        self.model.move(f"Move {self._component_name(k)}",
                        self.model.gesture_start.offsets.shifted(k, u1 - u0, v1 - v0))
        last = self.window.controller.last_job
        if last is not None and last.preview:
            # the drag's refits were previews: the full fit of where it ended (the
            # exposure list's columns, the exact chi2 of every exposure)
            self.window.request_fit()

    def _component_name(self, k: int) -> str:
        names = COMPONENT_NAMES[len(self.model.offsets)]
        return names[min(k, len(names) - 1)]

    def change_settings(self):
        """The Fit panel's settings: a new scene model, whose first fit may fail (then the
        window goes back to what it showed, `smp_gui.inspector.opening.Transition`)."""
        w = self.window
        # The controls set what they show; the oversampling (not shown: a session's) is
        # kept from the model.
        new = dataclasses.replace(w.fit_controls.settings(),
                                  oversampling=w.settings.oversampling)
        if new == w.settings:
            return
        w.opener.transition.begin()
        m = self.model.measurement
        if new.convention != m.settings.convention:
            # offsets are in the convention's frame: start again from its defaults
            changed = Measurement.defaults(new, m.mode, gain=m.gain,
                                           shot_noise_iterations=m.shot_noise_iterations)
        else:
            changed = dataclasses.replace(m, settings=new)
        self.model.apply("Change the fit settings", changed)
        if w.manifest_path is not None:
            w.opener.transition.wait_for(w.controller.last_submitted, replace=False)

    def switch_mode(self, mode: str):
        """Single or binary (each keeps its own offsets)."""
        self.model.apply(f"Switch to {mode}", dataclasses.replace(self.model.measurement,
                                                                   mode=mode))

    def change_shot_noise(self):
        """The Fit panel's shot-noise refit: on with its gain and iterations, or off."""
        options = self.window.fit_controls.shot_noise_options()
        self.window.statusBar().showMessage(
            "shot-noise refit off" if options is None else
            f"shot-noise refit with gain {options[0]:g} e⁻/ADU", 3000)
        gain, iterations = options if options is not None else (None, 1)
        self.model.apply("Change the shot-noise refit", dataclasses.replace(
            self.model.measurement, gain=gain, shot_noise_iterations=iterations))
