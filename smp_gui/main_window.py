"""The SMP Inspector window: five panels in the middle, exposures on the left, fit controls
and the flux table on the right, the Δχ² map below.

State the window owns (everything else is the engine's result): the detection path, the
fit settings, the mode and its offsets (single ``(dx, dy)``, binary
``(dx1, dx2, dy1, dy2)``, px relative to the target's WCS position in the convention's
frame), the selected exposure and the view.  Every change of offsets goes through
`set_offsets` and becomes a `FitRequest` for the controller; results come back as
`FitResult` and are shown by `_show_result`, which emits `fitDisplayed`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PyQt6.QtCore import QSettings, Qt, pyqtSignal
from PyQt6.QtGui import QAction, QKeySequence, QShortcut, QUndoCommand, QUndoStack
from PyQt6.QtWidgets import (QDockWidget, QFileDialog, QLabel, QMainWindow, QMessageBox,
                             QProgressBar, QSplitter, QVBoxLayout, QWidget)

from smp_model.errors import ManifestError, SMPError
from smp_model.manifest import DetectionManifest
from smp_model.errors import PSF_FILES_RUN_CODE
from smp_model.panels import five_panels
from smp_model.scene import FitSettings

from . import dialogs
from .chi2map_view import Chi2MapView
from .controller import Chi2MapRequest, FitController, FitRequest, FitResult, JobFailure
from .exposure_browser import ExposureBrowser
from .fit_controls import FitControls
from .markers import MarkerLayer, component_offset, moved_offsets
from .panels import ccd_to_view
from .results_table import ResultsTable

SESSION_FORMAT = "smp-session/1"
SESSION_SUFFIX = ".smpsession.json"
MANIFEST_NAME = "detection.toml"
MAX_RECENT = 8
NUDGE_PX = 0.1


def default_offsets(settings: FitSettings, mode: str) -> tuple[float, ...]:
    return settings.default_offset if mode == "single" else settings.default_binary_offsets


def resolve_detection_path(path: str | Path) -> Path:
    """A manifest path, or a folder holding ``detection.toml``."""
    path = Path(path).expanduser()
    if path.is_dir():
        candidate = path / MANIFEST_NAME
        if not candidate.is_file():
            raise ManifestError(f"no {MANIFEST_NAME} in this folder", path)
        return candidate.resolve()
    if not path.exists():
        raise ManifestError("file not found", path)
    return path.resolve()


class MoveMarkersCommand(QUndoCommand):
    """Undoable change of the offsets of one mode (a drag, a nudge, an optimisation)."""

    def __init__(self, window: "MainWindow", mode: str, old, new, text: str,
                 already_applied: bool = True):
        super().__init__(text)
        self.window, self.mode = window, mode
        self.old, self.new = tuple(old), tuple(new)
        self._skip_first_redo = already_applied

    def redo(self):
        if self._skip_first_redo:
            self._skip_first_redo = False
            return
        self.window.set_offsets(self.new, self.mode)

    def undo(self):
        self.window.set_offsets(self.old, self.mode)


class MainWindow(QMainWindow):
    """Signals: fitDisplayed(FitResult) once panels and numbers show a new fit;
    chi2MapDisplayed(Chi2MapResult); errorShown(QMessageBox)."""

    fitDisplayed = pyqtSignal(object)
    chi2MapDisplayed = pyqtSignal(object)
    errorShown = pyqtSignal(object)

    def __init__(self, settings_store: QSettings | None = None):
        super().__init__()
        self.setWindowTitle("SMP Inspector")
        self.setAcceptDrops(True)
        self.store = settings_store or QSettings("smp-inspector", "SMP Inspector")
        self.controller = FitController(self)
        self.undo_stack = QUndoStack(self)

        self.manifest_path: Path | None = None
        self.manifest: DetectionManifest | None = None
        self.settings = FitSettings()
        self.offsets: dict[str, tuple[float, ...]] = {
            m: default_offsets(self.settings, m) for m in ("single", "binary")}
        self.result: FitResult | None = None
        self.chi2map_result = None
        self.selected_index: int | None = None
        self.error_dialog: QMessageBox | None = None
        self.survey_window = None   # a batch output opened here (`open_survey`)
        self.fits_displayed = 0
        self._displayed_path: Path | None = None
        self._drag_base: tuple[float, ...] | None = None
        self._pending_view: dict | None = None
        self._optimize_id = 0
        # A new detection or new settings: the state shown before, restored when the
        # first fit of the new state fails (bad input, grid too large), and the id of
        # that first fit (0: nothing in transition).
        self._fallback: dict | None = None
        self._transition_id = 0

        self._build_widgets()
        self._build_menus()
        self._connect()
        self.resize(1600, 900)
        self._refresh_recent_menu()

    # -- construction -------------------------------------------------------------------

    def _build_widgets(self):
        from .panels import PanelsView
        self.panels_view = PanelsView()
        self.markers = MarkerLayer(self.panels_view.plots.values(), self)
        self.placeholder = QLabel("Open a detection: File > Open (a detection.toml or its "
                                  "folder), or drop a manifest on the window.")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.placeholder)
        self.central_splitter = QSplitter(Qt.Orientation.Vertical)
        self.central_splitter.addWidget(self.panels_view)
        layout.addWidget(self.central_splitter, 1)
        self.setCentralWidget(central)

        self.browser = ExposureBrowser()
        self.fit_controls = FitControls()
        self.results_table = ResultsTable()
        self.chi2map_view = Chi2MapView()
        self.central_splitter.addWidget(self.chi2map_view)
        self.chi2map_view.hide()     # shown with the first map
        self.browser_dock = self._dock("Exposures", self.browser,
                                       Qt.DockWidgetArea.LeftDockWidgetArea)
        self.controls_dock = self._dock("Fit", self.fit_controls,
                                        Qt.DockWidgetArea.RightDockWidgetArea)
        self.results_dock = self._dock("Flux table", self.results_table,
                                       Qt.DockWidgetArea.RightDockWidgetArea)
        self.resizeDocks([self.browser_dock, self.controls_dock], [400, 365],
                         Qt.Orientation.Horizontal)
        self.resizeDocks([self.controls_dock, self.results_dock], [330, 520],
                         Qt.Orientation.Vertical)

        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 100)
        self.progress_bar.setMaximumWidth(220)
        self.progress_bar.hide()
        self.fit_label = QLabel("")
        self.statusBar().addPermanentWidget(self.fit_label)
        self.statusBar().addPermanentWidget(self.progress_bar)

        for key, (dx, dy) in {Qt.Key.Key_Left: (-1, 0), Qt.Key.Key_Right: (1, 0),
                              Qt.Key.Key_Up: (0, 1), Qt.Key.Key_Down: (0, -1)}.items():
            shortcut = QShortcut(QKeySequence(key), self.panels_view)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(
                lambda dx=dx, dy=dy: self.nudge(dx * NUDGE_PX, dy * NUDGE_PX))
        for n in (0, 1):
            shortcut = QShortcut(QKeySequence(str(n + 1)), self.panels_view)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(lambda n=n: n < self.markers.count
                                       and self.markers.select(n))

    def _dock(self, title: str, widget: QWidget, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(title)
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _action(self, menu, text, slot, shortcut=None, tip=None) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setStatusTip(tip)
        action.triggered.connect(lambda _=False: slot())
        menu.addAction(action)
        return action

    def _build_menus(self):
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self._action(file_menu, "&Open…", self.open_dialog, QKeySequence.StandardKey.Open,
                     "Open a detection manifest or a saved session")
        self._action(file_menu, "Open &folder…", self.open_folder_dialog)
        self.recent_menu = file_menu.addMenu("Open &recent")
        file_menu.addSeparator()
        self._action(file_menu, "&Save session…", lambda: self.save_session(),
                     QKeySequence.StandardKey.Save)
        file_menu.addSeparator()
        export = file_menu.addMenu("&Export")
        self._action(export, "Five-panel figure (detection)…",
                     lambda: self.export_figure(exposures="detection"))
        self._action(export, "Five-panel figure (all exposures)…",
                     lambda: self.export_figure(exposures="all"))
        self._action(export, "Flux table…", lambda: self.export_table())
        self._action(export, "Model/residual FITS…", lambda: self.export_fits())
        self._action(export, "DS9 region file…", lambda: self.export_regions())
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)

        edit = bar.addMenu("&Edit")
        undo = self.undo_stack.createUndoAction(self, "&Undo")
        undo.setShortcut(QKeySequence.StandardKey.Undo)
        redo = self.undo_stack.createRedoAction(self, "&Redo")
        redo.setShortcut(QKeySequence.StandardKey.Redo)
        edit.addAction(undo)
        edit.addAction(redo)
        self._action(edit, "Copy flux table", self.results_table.copy_to_clipboard)

        fit = bar.addMenu("F&it")
        self._action(fit, "&Refit", self.request_fit, "F5")
        self.optimize_action = self._action(fit, "&Optimize positions", self.optimize,
                                            "Ctrl+P")
        self._update_optimize_text(self.mode)
        self._action(fit, "&Δχ² map", lambda: self.fit_controls.map_button.click(), "Ctrl+M")
        self._action(fit, "&Cancel", self.cancel, "Esc")

        view = bar.addMenu("&View")
        self._action(view, "Reset levels", self.panels_view.reset_levels)
        self._action(view, "Reset zoom",
                     lambda: self.panels_view.plots["image"].getViewBox().autoRange(
                         padding=0.0))
        for dock in (self.browser_dock, self.controls_dock, self.results_dock):
            view.addAction(dock.toggleViewAction())

        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "&Data safety…", self.show_data_safety)

    def show_data_safety(self) -> QMessageBox:
        """The trust boundary (PSF files run code), non-modal so tests can read it."""
        box = QMessageBox(QMessageBox.Icon.Information, "Data safety", PSF_FILES_RUN_CODE,
                          QMessageBox.StandardButton.Ok, self)
        box.setModal(False)
        box.show()
        return box

    def _connect(self):
        c = self.controller
        c.fitFinished.connect(self._show_result)
        c.chi2MapFinished.connect(self._show_chi2map)
        c.failed.connect(self._on_failed)
        c.progress.connect(self._on_progress)
        c.busyChanged.connect(self._on_busy)
        fc = self.fit_controls
        fc.settingsChanged.connect(self._on_settings_changed)
        fc.modeChanged.connect(self._on_mode_changed)
        fc.offsetsEdited.connect(lambda offsets: self._push_move(self.mode, offsets,
                                                                 "Edit offsets"))
        fc.optimizeRequested.connect(self.optimize)
        fc.shotNoiseChanged.connect(self._on_shot_noise_changed)
        fc.mode_box.currentTextChanged.connect(self._update_optimize_text)
        fc.cancelRequested.connect(self.cancel)
        fc.chi2MapRequested.connect(self.request_chi2map)
        self.browser.exposureSelected.connect(self.select_exposure)
        self.browser.blinkToggled.connect(self.panels_view.set_blink_model)
        self.markers.dragged.connect(self._on_marker_dragged)
        self.markers.dragFinished.connect(self._on_marker_drag_finished)
        self.chi2map_view.cellClicked.connect(self._on_map_cell_clicked)

    # -- opening ------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        return self.fit_controls.mode

    def open_path(self, path: str | Path) -> bool:
        """Open a manifest, a folder holding detection.toml, or a saved session."""
        path = Path(path)
        if path.name.endswith(".json"):
            return self.open_session(path)
        if path.suffix.lower() in (".ecsv", ".fits", ".csv"):   # a `smp batch` output
            return self.open_survey(path)
        return self.open_detection(path)

    def open_survey(self, path: str | Path) -> bool:
        """Show a `smp batch` output in a survey window that browses in this window."""
        from .survey import SurveyWindow
        survey = SurveyWindow(self.store, inspector=self)
        if not survey.open_survey(path):
            self.error_dialog = survey.error_dialog
            self.errorShown.emit(survey.error_dialog)
            return False
        survey.show()
        self.survey_window = survey
        return True

    def open_detection(self, path: str | Path, settings: FitSettings | None = None,
                       mode: str | None = None, offsets=None,
                       keep_gain: bool = False) -> bool:
        """Read the manifest (errors: dialog, nothing changes) and start the cold fit.
        The shot-noise gain becomes the manifest's (detection exposure) unless
        ``keep_gain`` or the manifest has none."""
        try:
            manifest_path = resolve_detection_path(path)
            manifest = DetectionManifest.read(manifest_path)
        except SMPError as exc:
            self.show_error("Cannot open detection", exc, context=str(path))
            return False
        except (OSError, ValueError) as exc:
            self.show_error("Cannot open detection", exc, context=str(path))
            return False
        self._begin_transition()
        self.manifest_path, self.manifest = manifest_path, manifest
        if settings is not None:
            self.settings = settings
            self.fit_controls.set_settings(settings)
        else:
            self.settings = self.fit_controls.settings()
        if mode is not None and mode != self.mode:
            self.fit_controls.blockSignals(True)   # one fit below, not one per change
            try:
                self.fit_controls.set_mode(mode)
            finally:
                self.fit_controls.blockSignals(False)
        self.offsets = {m: default_offsets(self.settings, m) for m in ("single", "binary")}
        if offsets is not None:
            self.offsets[self.mode] = tuple(float(v) for v in offsets)
        for m in ("single", "binary"):
            self.fit_controls.set_offsets(self.offsets[m], m)
        gain = manifest.detection_exposure.gain
        if gain is not None and gain > 0 and not keep_gain:
            self.fit_controls.set_shot_noise(self.fit_controls.shot_noise.isChecked(), gain)
        self.undo_stack.clear()
        self.selected_index = None
        self.setWindowTitle(f"SMP Inspector — {manifest.name} ({manifest_path})")
        self._add_recent(manifest_path)
        self._transition_id = self.request_fit()
        return True

    # a detection or settings change that may fail -------------------------------------

    def _begin_transition(self):
        """Remember what is shown (once per transition), to go back to it if the first
        fit of the new detection/settings fails."""
        if self._transition_id:
            return   # still in the previous transition: keep what was shown before it
        self._fallback = {
            "manifest_path": self.manifest_path, "manifest": self.manifest,
            "settings": self.settings, "mode": self.mode, "offsets": dict(self.offsets),
            "selected_index": self.selected_index, "title": self.windowTitle(),
        }

    def _end_transition(self, request_id: int, failed: bool) -> bool:
        """Called with every result/failure; True if the state was restored."""
        if not self._transition_id or request_id < self._transition_id:
            return False
        fallback, self._fallback, self._transition_id = self._fallback, None, 0
        if not failed or fallback is None:
            return False
        self.manifest_path, self.manifest = fallback["manifest_path"], fallback["manifest"]
        self.settings = fallback["settings"]
        self.fit_controls.set_settings(self.settings)
        if fallback["mode"] != self.mode:
            self.fit_controls.blockSignals(True)
            try:
                self.fit_controls.set_mode(fallback["mode"])
            finally:
                self.fit_controls.blockSignals(False)
        self.offsets = dict(fallback["offsets"])
        for m, offsets in self.offsets.items():
            self.fit_controls.set_offsets(offsets, m)
        self.selected_index = fallback["selected_index"]
        self.setWindowTitle(fallback["title"])
        self._place_markers()
        return True

    def open_dialog(self):
        self.statusBar().showMessage("Opening a detection reads its Piff PSF files, which run "
                                     "code: open only data you trust (Help > Data safety)",
                                     10000)
        path, _ = QFileDialog.getOpenFileName(
            self, "Open detection or session", str(self._last_dir()),
            f"Detections and sessions (*.toml *.json);;Detection manifests (*.toml);;"
            f"Batch outputs: survey view (*.ecsv *.fits *.csv);;"
            f"Sessions (*{SESSION_SUFFIX} *.json);;All files (*)")
        if path:
            self.open_path(path)

    def open_folder_dialog(self):
        path = QFileDialog.getExistingDirectory(self, "Open detection folder",
                                                str(self._last_dir()))
        if path:
            self.open_detection(path)

    def _last_dir(self) -> Path:
        return self.manifest_path.parent if self.manifest_path else Path.cwd()

    # recent files ---------------------------------------------------------------------

    def recent_files(self) -> list[str]:
        value = self.store.value("recent", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])]

    def _add_recent(self, path: Path):
        recent = [str(path)] + [p for p in self.recent_files() if p != str(path)]
        self.store.setValue("recent", recent[:MAX_RECENT])
        self._refresh_recent_menu()

    def _refresh_recent_menu(self):
        self.recent_menu.clear()
        recent = self.recent_files()
        for path in recent:
            action = self.recent_menu.addAction(path)
            action.triggered.connect(lambda _=False, p=path: self.open_path(p))
        self.recent_menu.setEnabled(bool(recent))

    # drag and drop ----------------------------------------------------------------------

    def dragEnterEvent(self, event):
        urls = event.mimeData().urls()
        if urls and urls[0].isLocalFile():
            event.acceptProposedAction()

    def dropEvent(self, event):
        urls = event.mimeData().urls()
        if urls and urls[0].isLocalFile():
            event.acceptProposedAction()
            self.open_path(urls[0].toLocalFile())

    # -- fitting ------------------------------------------------------------------------

    def request_fit(self, optimize: bool = False) -> int | None:
        if self.manifest_path is None:
            return None
        shot_noise = self.fit_controls.shot_noise_options()
        gain, iterations = shot_noise if shot_noise is not None else (None, 1)
        request = FitRequest(str(self.manifest_path), self.settings, self.mode,
                             tuple(self.offsets[self.mode]), optimize=optimize,
                             shot_noise_gain=gain, shot_noise_iterations=iterations,
                             panel_index=self.selected_index)
        request_id = self.controller.submit(request)
        if optimize:
            self._optimize_id = request_id
            self.statusBar().showMessage("optimising positions…")
        return request_id

    def optimize(self) -> int | None:
        """Search the position(s) from the current markers: the single target's (dx, dy)
        (`optimize_single`) or both binary components (`optimize_binary`); the flux table
        then shows the offsets with their errors and the fitted RA/Dec."""
        return self.request_fit(optimize=True)

    def _update_optimize_text(self, mode: str):
        self.optimize_action.setText("&Optimize position" if mode == "single"
                                     else "&Optimize positions")

    def _on_shot_noise_changed(self):
        options = self.fit_controls.shot_noise_options()
        self.statusBar().showMessage(
            "shot-noise refit off" if options is None else
            f"shot-noise refit with gain {options[0]:g} e⁻/ADU", 3000)
        self.request_fit()

    def cancel(self):
        self.controller.cancel()
        self.statusBar().showMessage("cancelled", 3000)
        self.progress_bar.hide()

    def set_offsets(self, offsets, mode: str | None = None):
        """Make ``offsets`` the current ones of ``mode`` and refit (used by undo/redo)."""
        mode = mode or self.mode
        self.offsets[mode] = tuple(float(v) for v in offsets)
        self.fit_controls.set_offsets(self.offsets[mode], mode)
        if mode != self.mode:
            self.fit_controls.set_mode(mode)   # refits through modeChanged
            return
        self._place_markers()
        self.request_fit()

    def _push_move(self, mode, new, text):
        old = self.offsets[mode]
        if tuple(new) == tuple(old):
            return
        self.undo_stack.push(MoveMarkersCommand(self, mode, old, new, text,
                                                already_applied=False))

    def nudge(self, ddx: float, ddy: float):
        """Move the selected marker by (ddx, ddy) px (arrow keys: 0.1 px)."""
        if self.result is None or self.markers.count == 0:
            return
        k = min(self.markers.selected_index, self.markers.count - 1)
        new = moved_offsets(self.offsets[self.mode], k, ddx, ddy)
        self._push_move(self.mode, new, f"Nudge marker {k + 1}")

    def _on_marker_dragged(self, k: int, u0: float, v0: float, u1: float, v1: float):
        # Offsets and view differ by a constant shift: displacements are equal.
        if self._drag_base is None:
            self._drag_base = self.offsets[self.mode]
        new = moved_offsets(self._drag_base, k, u1 - u0, v1 - v0)
        self.offsets[self.mode] = new
        self.fit_controls.set_offsets(new)
        self.request_fit()

    def _on_marker_drag_finished(self, k, u0, v0, u1, v1):
        base, self._drag_base = self._drag_base, None
        if base is None:
            return
        new = moved_offsets(base, k, u1 - u0, v1 - v0)
        self.offsets[self.mode] = new
        self.fit_controls.set_offsets(new)
        self.undo_stack.push(MoveMarkersCommand(self, self.mode, base, new,
                                                f"Drag marker {k + 1}"))
        self.request_fit()

    def _on_settings_changed(self):
        new = self.fit_controls.settings()
        if new == self.settings:
            return
        convention_changed = new.convention != self.settings.convention
        self._begin_transition()
        self.settings = new
        if convention_changed:   # offsets are in the convention's frame: start again
            self.offsets = {m: default_offsets(new, m) for m in ("single", "binary")}
            for m in ("single", "binary"):
                self.fit_controls.set_offsets(self.offsets[m], m)
            self.undo_stack.clear()
        request_id = self.request_fit()
        if request_id is not None and not self._transition_id:
            self._transition_id = request_id

    def _on_mode_changed(self, mode: str):
        self.fit_controls.set_offsets(self.offsets[mode], mode)
        self.request_fit()

    def _on_progress(self, _request_id: int, fraction: float, message: str):
        self.progress_bar.show()
        self.progress_bar.setValue(int(round(100 * fraction)))
        self.statusBar().showMessage(message)

    def _on_busy(self, busy: bool):
        self.fit_controls.set_busy(busy)
        if not busy:
            self.progress_bar.hide()

    # -- results ------------------------------------------------------------------------

    def _show_result(self, result: FitResult):
        first_of_detection = (self.result is None
                              or self._displayed_path != Path(result.request.manifest_path)
                              or self.result.fit.scene is not result.fit.scene)
        self.result = result
        self._displayed_path = Path(result.request.manifest_path)
        self._end_transition(result.request_id, failed=False)
        request = result.request
        if request.optimize and request.mode == self.mode:
            new = result.summary.offsets
            old = self.offsets[request.mode]
            self.offsets[request.mode] = new
            self.fit_controls.set_offsets(new, request.mode)
            self.undo_stack.push(MoveMarkersCommand(self, request.mode, old, new,
                                                    "Optimize positions"))
            self.statusBar().showMessage(
                f"optimised in {result.elapsed_s:.2f} s "
                f"({result.fit.n_chi2_evaluations} chi2 evaluations)", 5000)
        elif first_of_detection and result.dropped:
            self.statusBar().showMessage("; ".join(result.dropped), 10000)
        elif first_of_detection:
            self.statusBar().showMessage(f"{self.manifest.name if self.manifest else ''}: "
                                         f"fitted", 5000)
        fit = result.fit
        self.placeholder.hide()
        self.browser.set_fit(fit, result.diagnostics)   # may select the detection (first fit)
        if self.selected_index is None or self.selected_index >= len(fit.scene.exposures):
            self.selected_index = fit.scene.detection_index
        self._update_panels()
        self.results_table.set_summary(result.summary)
        s = result.summary
        self.fit_label.setText(f"χ²/dof = {s.chi2:.1f}/{s.dof}  fit {1000 * result.elapsed_s:.0f} ms")
        if self._pending_view is not None:
            view, self._pending_view = self._pending_view, None
            self._apply_view(view)
        self.fits_displayed += 1
        self.fitDisplayed.emit(result)

    def select_exposure(self, index: int):
        self.selected_index = index
        if self.result is not None:
            self._update_panels()

    def _update_panels(self):
        fit = self.result.fit
        index = self.selected_index
        ready = self.result.panels
        panels = (ready if ready is not None and ready.expnum ==
                  fit.scene.exposures[index].entry.expnum else five_panels(fit, index))
        exposure = fit.scene.exposures[index]
        self.panels_view.set_panels(panels, exposure.pixel_to_sky)
        on_detection = index == fit.scene.detection_index
        self.markers.set_visible(on_detection)
        self._place_markers()

    def _place_markers(self):
        """Markers at the fitted sources' CCD positions, moved by any offset change not yet
        fitted (the view and the offsets differ by a constant shift)."""
        if self.result is None:
            return
        fit = self.result.fit
        origin = fit.scene.exposures[fit.scene.detection_index].origin
        current = self.offsets[self.mode]
        positions = []
        n_components = 1 if self.mode == "single" else 2
        if len(fit.sources) != n_components:
            self.markers.set_positions([])
            return
        for k, source in enumerate(fit.sources):
            u, v = ccd_to_view(source.x, source.y, origin)
            cdx, cdy = component_offset(current, k)
            positions.append((u + cdx - source.dx, v + cdy - source.dy))
        if self._drag_base is None:
            self.markers.set_positions(positions)
        self.markers.set_visible(self.selected_index == fit.scene.detection_index)
        cov = fit.position_covariance
        fitted_here = np.allclose(fit.offsets.ravel(),
                                  np.array([component_offset(current, k)
                                            for k in range(n_components)]).ravel())
        if cov is not None and fitted_here:
            self.markers.set_ellipses([cov[2 * k:2 * k + 2, 2 * k:2 * k + 2]
                                       for k in range(n_components)])
        else:
            self.markers.set_ellipses(None)
        if self.chi2map_view.chi2map is not None and self.mode == "binary":
            self.chi2map_view.set_components(component_offset(current, 0),
                                             component_offset(current, 1))

    def marker_view_positions(self) -> list[tuple[float, float]]:
        return list(self.markers.positions)

    # -- chi2 map -----------------------------------------------------------------------

    def request_chi2map(self, half_width: float = 2.0, step: float = 0.2,
                        reoptimize_primary: bool = False) -> int | None:
        if self.manifest_path is None or self.mode != "binary":
            return None
        offsets = self.offsets["binary"]
        request = Chi2MapRequest(str(self.manifest_path), self.settings,
                                 primary=component_offset(offsets, 0),
                                 center=component_offset(offsets, 1),
                                 half_width=half_width, step=step,
                                 reoptimize_primary=reoptimize_primary)
        self.chi2map_view.show()
        self.statusBar().showMessage("computing the Δχ² map…")
        return self.controller.submit(request)

    def _show_chi2map(self, result):
        self.chi2map_result = result
        self.chi2map_view.show()
        self.chi2map_view.set_map(result.chi2map)
        offsets = self.offsets["binary"]
        self.chi2map_view.set_components(component_offset(offsets, 0),
                                         component_offset(offsets, 1))
        self.statusBar().showMessage("Δχ² map ready", 3000)
        self.chi2MapDisplayed.emit(result)

    def _on_map_cell_clicked(self, i: int, j: int):
        m = self.chi2map_view.chi2map
        old = self.offsets["binary"]
        p = m.primary[j, i] if m.reoptimized_primary else component_offset(old, 0)
        new = (float(p[0]), float(m.dx[i]), float(p[1]), float(m.dy[j]))
        self._push_move("binary", new, "Move secondary (Δχ² map)")

    # -- errors -------------------------------------------------------------------------

    def show_error(self, title: str, error: BaseException, context: str | None = None,
                   details: str | None = None) -> QMessageBox:
        self.error_dialog = dialogs.show_error(self, title, error, context, details)
        self.statusBar().showMessage(f"{title}: {dialogs.describe_error(error, context)[1]}",
                                     10000)
        self.errorShown.emit(self.error_dialog)
        return self.error_dialog

    def _on_failed(self, failure: JobFailure):
        request = failure.request
        # A new detection or new settings that cannot be fitted: back to what is shown
        # (the worker kept that detection's model, so it keeps working at once).
        if isinstance(request, FitRequest):
            self._end_transition(request.request_id, failed=True)
        title = ("Fit failed" if isinstance(request, FitRequest) else "Δχ² map failed")
        details = None if isinstance(failure.error, SMPError) else failure.traceback
        self.show_error(title, failure.error, context=request.manifest_path, details=details)

    # -- export -------------------------------------------------------------------------

    def _export(self, what: str, writer, path, file_filter: str) -> Path | None:
        if self.result is None:
            self.show_error(f"Cannot export {what}", SMPError("no fit to export yet"))
            return None
        if path is None:
            name, _ = QFileDialog.getSaveFileName(self, f"Export {what}",
                                                  str(self._last_dir()), file_filter)
            if not name:
                return None
            path = Path(name)
            overwrite = path.exists()    # the file dialog asked already
        else:
            path = Path(path)
            overwrite = False
            if path.exists():
                if not dialogs.confirm_overwrite(self, path):
                    self.statusBar().showMessage(f"{path} exists: not overwritten", 5000)
                    return None
                overwrite = True
        try:
            writer(self.result.fit, path, overwrite)
        except (SMPError, OSError, ValueError) as exc:
            self.show_error(f"Cannot export {what}", exc, context=str(path))
            return None
        self.statusBar().showMessage(f"wrote {path}", 5000)
        return path

    def export_figure(self, path=None, exposures: str = "detection") -> Path | None:
        """Five-panel figure (PNG/PDF/SVG by extension) through the engine's matplotlib
        figure; ``exposures='all'`` writes one page (PDF) or row per exposure."""
        from smp_model.figures import save_figure
        return self._export(
            "figure", lambda fit, p, ow: save_figure(fit, p, exposures=exposures,
                                                     overwrite=ow,
                                                     cmap=self.panels_view.colormap_name),
            path, "Figures (*.png *.pdf *.svg)")

    def export_table(self, path=None) -> Path | None:
        """Flux table (ECSV/FITS/CSV by extension) with the fit settings in its meta."""
        from smp_model.results import write_table
        return self._export("flux table",
                            lambda fit, p, ow: write_table(fit, p, overwrite=ow),
                            path, "Tables (*.ecsv *.fits *.csv)")

    def export_fits(self, path=None) -> Path | None:
        """Per-exposure image, model, residual, target, weight and mask HDUs with a WCS
        each, plus tables, as one FITS file."""
        from smp_model.results import write_fits
        return self._export("model/residual FITS",
                            lambda fit, p, ow: write_fits(fit, p, overwrite=ow),
                            path, "FITS (*.fits)")

    def export_regions(self, path=None) -> Path | None:
        """DS9 region file (fk5) of the fitted sources and the grid outline."""
        from smp_model.results import write_regions
        return self._export("region file",
                            lambda fit, p, ow: write_regions(fit, p, overwrite=ow),
                            path, "DS9 regions (*.reg)")

    # -- sessions -----------------------------------------------------------------------

    def session_state(self) -> dict:
        return {
            "format": SESSION_FORMAT,
            "detection": str(self.manifest_path) if self.manifest_path else None,
            "settings": self.settings.as_meta(),
            "mode": self.mode,
            "offsets": {m: list(v) for m, v in self.offsets.items()},
            "shot_noise": {"enabled": self.fit_controls.shot_noise.isChecked(),
                           "gain": self.fit_controls.gain.value(),
                           "iterations": int(self.fit_controls.sn_iterations.currentData())},
            "selected_expnum": (int(self.result.fit.scene.exposures[self.selected_index]
                                    .entry.expnum)
                                if self.result is not None and self.selected_index is not None
                                else None),
            "view": {
                "stretch": self.panels_view.stretch,
                "colormap": self.panels_view.colormap_name,
                "levels": list(self.panels_view.levels()),
                "range": self.panels_view.view_range(),
            },
        }

    def save_session(self, path=None) -> Path | None:
        """Write the session as JSON, atomically (a temporary file renamed into place by
        `smp_model.io_utils.atomic_output`), never replacing a file without asking."""
        from smp_model.io_utils import atomic_output
        if self.manifest_path is None:
            self.show_error("Cannot save session", SMPError("no detection is open"))
            return None
        overwrite = False
        if path is None:
            name, _ = QFileDialog.getSaveFileName(
                self, "Save session", str(self._last_dir() / f"{self.manifest.name}"
                                          f"{SESSION_SUFFIX}"),
                f"Sessions (*{SESSION_SUFFIX} *.json)")
            if not name:
                return None
            path, overwrite = Path(name), Path(name).exists()
        else:
            path = Path(path)
            if path.exists():
                if not dialogs.confirm_overwrite(self, path):
                    return None
                overwrite = True
        text = json.dumps(self.session_state(), indent=2) + "\n"
        try:
            with atomic_output(path, overwrite=overwrite) as tmp:
                tmp.write_text(text)
        except (SMPError, OSError) as exc:
            self.show_error("Cannot save session", exc, context=str(path))
            return None
        self.statusBar().showMessage(f"session saved to {path}", 5000)
        return path

    def open_session(self, path) -> bool:
        """Restore a saved session: detection, settings, mode, offsets, exposure, view;
        then refit."""
        path = Path(path)
        try:
            state = json.loads(path.read_text())
            if not isinstance(state, dict) or state.get("format") != SESSION_FORMAT:
                raise ManifestError(f"not an SMP Inspector session (expected format "
                                    f"{SESSION_FORMAT!r})", path)
            detection = Path(state["detection"])
            if not detection.is_absolute():
                detection = path.parent / detection
            known = {"grid_size", "grid_step_arcsec", "fit_sky", "convention", "oversampling"}
            settings = FitSettings(**{k: v for k, v in state["settings"].items()
                                      if k in known})
            mode = state["mode"]
            offsets = {m: tuple(float(v) for v in state["offsets"][m])
                       for m in ("single", "binary")}
            shot_noise = state.get("shot_noise") or {}
            if not isinstance(shot_noise, dict):
                raise ValueError("'shot_noise' must be a table")
        except SMPError as exc:
            self.show_error("Cannot open session", exc, context=str(path))
            return False
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problem = (f"missing entry {exc}" if isinstance(exc, KeyError) else str(exc))
            self.show_error("Cannot open session", ManifestError(problem, path))
            return False
        previous_shot_noise = (self.fit_controls.shot_noise.isChecked(),
                               self.fit_controls.gain.value(),
                               int(self.fit_controls.sn_iterations.currentData()))
        if shot_noise:
            self.fit_controls.set_shot_noise(bool(shot_noise.get("enabled")),
                                             shot_noise.get("gain"),
                                             shot_noise.get("iterations"))
        if not self.open_detection(detection, settings=settings, mode=mode,
                                   offsets=offsets[mode], keep_gain=bool(shot_noise)):
            self.fit_controls.set_shot_noise(*previous_shot_noise)
            return False
        other = "single" if mode == "binary" else "binary"
        self.offsets[other] = offsets[other]
        self.fit_controls.set_offsets(offsets[other], other)
        self._pending_view = {"selected_expnum": state.get("selected_expnum"),
                              **(state.get("view") or {})}
        return True

    def _apply_view(self, view: dict):
        expnum = view.get("selected_expnum")
        if expnum is not None and self.result is not None:
            expnums = [ex.entry.expnum for ex in self.result.fit.scene.exposures]
            if expnum in expnums:
                self.browser.select(expnums.index(expnum))
        if view.get("colormap"):
            self.panels_view.set_colormap(view["colormap"])
        if view.get("stretch"):
            self.panels_view.set_stretch(view["stretch"])
        if view.get("levels"):
            self.panels_view.set_levels(*view["levels"])
        if view.get("range"):
            self.panels_view.set_view_range(view["range"])

    # -- shutdown -----------------------------------------------------------------------

    def closeEvent(self, event):
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self):
        """Stop the worker thread (idempotent)."""
        self.controller.shutdown()

