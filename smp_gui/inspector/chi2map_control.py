"""The Δχ² map of a binary's secondary in the inspector: estimating how long a map takes
(a long one asks first), asking the worker for it, showing it below the panels in the
panels' frame (CCD axes, or sky-aligned as the detection exposure's stamps:
`chi2map_frame`), and moving the secondary to a clicked cell (one undoable edit).
"""
from __future__ import annotations

import dataclasses

from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import QMessageBox

from smp_model.fit.request import TargetOffsets

from ..controller import Chi2MapJob, Chi2MapResult
from .chi2map_frame import CCD_FRAME, MapFrame, sky_frame
from .markers import component_offset

__all__ = ["MAP_CELL_PER_FIT", "MAP_CONFIRM_S", "REOPTIMIZE_EVALUATIONS", "Chi2MapControl",
           "map_cells"]

# A Δχ² map estimated to take longer than this asks first.
MAP_CONFIRM_S = 10.0
# One χ² evaluation of a map cell over one refit (fluxes, errors, both Δχ²): measured 1.4
# vs 11 ms on the demo.
MAP_CELL_PER_FIT = 0.15
# Evaluations of a primary's re-optimisation in a cell (a search).
REOPTIMIZE_EVALUATIONS = 30


def map_cells(half_width: float, step: float) -> int:
    """Cells of a square map of secondary offsets ``±half_width`` px every ``step`` px."""
    return (2 * int(round(half_width / step)) + 1) ** 2


class Chi2MapControl:
    """Δχ² maps of the binary shown in ``window``.

    Parameters
    ----------
    window : InspectorWindow
    """

    def __init__(self, window):
        self.window = window
        self.result: Chi2MapResult | None = None     # the map shown
        self.confirm_dialog: QMessageBox | None = None
        self.refit_seconds = 0.0   # the last refit's time, for the estimates
        self.pending: int | None = None    # a map being computed (its request id)
        self._sky_frame: tuple | None = None   # (scene, its sky-aligned MapFrame)

    def estimate_s(self, half_width: float, step: float, reoptimize_primary: bool) -> float:
        """Seconds a map would take: cells x a χ² evaluation, estimated from the last
        measured refit (`MAP_CELL_PER_FIT`; x `REOPTIMIZE_EVALUATIONS` when the primary
        is re-optimised in every cell)."""
        per_cell = MAP_CELL_PER_FIT * max(self.refit_seconds, 1e-3)
        return (map_cells(half_width, step) * per_cell
                * (REOPTIMIZE_EVALUATIONS if reoptimize_primary else 1))

    def request(self, half_width: float = 2.0, step: float = 0.2,
                reoptimize_primary: bool = False, confirmed: bool = False) -> int | None:
        """`InspectorWindow.request_chi2map`."""
        w = self.window
        if w.manifest_path is None or w.mode != "binary":
            return None
        estimate = self.estimate_s(half_width, step, reoptimize_primary)
        if estimate > MAP_CONFIRM_S and not confirmed:
            self._confirm(half_width, step, reoptimize_primary, estimate)
            return None
        offsets = w.offsets["binary"]
        job = Chi2MapJob(str(w.manifest_path), w.settings,
                         primary=component_offset(offsets, 0),
                         center=component_offset(offsets, 1),
                         half_width=half_width, step=step,
                         reoptimize_primary=reoptimize_primary)
        w.menus.show_map_action(True)
        w.statusBar().showMessage(f"computing the Δχ² map (about {estimate:.0f} s)…")
        self.pending = w.controller.submit(job)
        self.check_stale()
        return self.pending

    def stopped(self):
        """The map being computed was cancelled or failed: the one shown stays."""
        self.pending = None
        self.check_stale()

    def check_stale(self):
        """Mark the map shown out of date while a new one is computed or when what it
        was computed for (detection, settings, a held primary) is no longer on screen."""
        w = self.window
        if self.result is None:
            return
        job = self.result.request
        primary = component_offset(w.offsets["binary"], 0)
        if self.pending is not None:
            why = "a new map is being computed"
        elif str(w.manifest_path) != job.manifest_path:
            why = "computed for another detection"
        elif w.settings != job.settings:
            why = "the fit settings changed"
        elif not job.reoptimize_primary and max(
                abs(a - b) for a, b in zip(primary, job.primary)) > 1e-9:
            why = "the primary moved since (the map held it)"
        else:
            why = ""
        w.chi2map_view.set_stale(bool(why), why)

    def _confirm(self, half_width: float, step: float, reoptimize_primary: bool,
                 estimate: float):
        """Ask (non-blocking) before a long map; Yes computes it."""
        box = QMessageBox(QMessageBox.Icon.Question, "Long Δχ² map",
                          f"This map has {map_cells(half_width, step)} cells and will take "
                          f"about {estimate:.0f} s (it can be cancelled with Esc). "
                          f"Compute it?",
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                          self.window)
        box.setObjectName("mapConfirmDialog")
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.accepted.connect(lambda: self.request(half_width, step, reoptimize_primary,
                                                  confirmed=True))
        self.confirm_dialog = box
        box.open()

    def show(self, result: Chi2MapResult):
        """A map has arrived: shown below the panels with the components on it."""
        w = self.window
        self.result = result
        if result.request_id == self.pending:
            self.pending = None
        w.menus.show_map_action(True)
        w.chi2map_view.show()
        w.chi2map_view.set_frame(self.frame())
        w.chi2map_view.set_map(result.chi2map)
        offsets = w.offsets["binary"]
        w.chi2map_view.set_components(component_offset(offsets, 0),
                                      component_offset(offsets, 1))
        self.check_stale()
        w.statusBar().showMessage("Δχ² map ready", 3000)
        w.chi2MapDisplayed.emit(result)

    def update_frame(self):
        """Draw the map in the panels' frame: sky-aligned as the detection exposure's
        stamps when View > Sky-aligned is on and that exposure's WCS inverts; else CCD
        axes (saying why when sky-aligned was asked for)."""
        self.window.chi2map_view.set_frame(self.frame())

    def frame(self) -> MapFrame:
        """The `MapFrame` the map shown is drawn in now (see `update_frame`)."""
        w = self.window
        if not w.panels_view.sky_aligned or w.result is None or self.result is None:
            return CCD_FRAME
        fit, job = w.result.fit, self.result.request
        # the offsets of a map of another detection or convention are not this scene's
        if job.manifest_path != str(w.manifest_path):
            return MapFrame(notice="map of another detection: CCD axes, not sky-aligned")
        if job.settings.convention != fit.settings.convention:
            return MapFrame(notice="map of another pixel convention: CCD axes, not "
                                   "sky-aligned")
        scene = fit.scene
        if self._sky_frame is None or self._sky_frame[0] is not scene:
            detection = scene.exposures[scene.detection_index]
            # the panels' own overlays of that exposure (cached there; None: no frame)
            overlays = w.sky_geometry.overlays(detection, fit.settings, w.manifest.ra,
                                               w.manifest.dec, w.result.overlays)
            frame = (sky_frame(scene, overlays) if overlays is not None else MapFrame(
                notice=f"detection exposure {detection.entry.expnum}: its WCS cannot be "
                       "inverted at the target; map in CCD axes, not sky-aligned"))
            self._sky_frame = (scene, frame)   # the scene is kept: its id is not reused
        return self._sky_frame[1]

    def move_secondary(self, i: int, j: int):
        """Put the secondary at cell (i, j) of the map shown (and the primary where the
        map re-optimised it there), as one undoable edit."""
        model = self.window.model
        m = self.window.chi2map_view.chi2map
        p = m.primary[j, i] if m.reoptimized_primary else model.measurement.binary.positions[0]
        new = TargetOffsets(((float(p[0]), float(p[1])), (float(m.dx[i]), float(m.dy[j]))))
        model.apply("Move secondary (Δχ² map)",
                    dataclasses.replace(model.measurement.with_offsets(new), mode="binary"))
