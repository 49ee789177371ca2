"""The SMP Inspector window: five panels in the middle, exposures on the left, fit controls
and the flux table on the right, the Δχ² map below.

The inspector's state (detection, measurement = mode, offsets, settings, shot noise; its
undo history; which fit is shown and whether it is stale) lives in the Qt-free
`smp_gui.state.InspectorModel`; the window forwards user actions to it and observes it.
Offsets are the engine's `TargetOffsets` (px relative to the target's WCS position in the
convention's frame).  Every change of the measurement becomes a `FitJob` for the
controller; results come back as `FitResult` and are shown by `_show_result`, which emits
`fitDisplayed`.
"""
from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

import numpy as np
from PyQt6.QtCore import QSettings, QStandardPaths, Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QAction, QActionGroup, QKeySequence, QShortcut
from PyQt6.QtWidgets import (QDockWidget, QFileDialog, QLabel, QMainWindow, QMessageBox,
                             QProgressBar, QSplitter, QVBoxLayout, QWidget)

from smp_model.display import STRETCHES
from smp_model.errors import PSF_FILES_RUN_CODE, ManifestError, SMPError
from smp_model.manifest import DetectionManifest
from smp_model.panels import five_panels
from smp_model.request import TargetOffsets
from smp_model.scene import FitSettings

from . import dialogs
from .chi2map_view import Chi2MapView
from .controller import Chi2MapJob, FitController, FitJob, FitResult, JobFailure
from .exposure_browser import ExposureBrowser
from .fit_controls import FitControls
from .keys import keep_combo_keys
from .markers import MarkerLayer, component_offset
from .panels import ccd_to_view
from .results_table import ResultsTable
from .session import SESSION_SUFFIX, SessionError, parse_session
from .state import InspectorModel, Measurement

MANIFEST_NAME = "detection.toml"
MAX_RECENT = 8
NUDGE_PX = 0.1
ZOOM_STEP = 1.25
EXPOSURE_BLINK_MS = 700
# A Δχ² map estimated to take longer than this asks first.
MAP_CONFIRM_S = 10.0
# One χ² evaluation of a map cell over one refit (fluxes, errors, both Δχ²): measured 1.4
# vs 11 ms on the demo.
MAP_CELL_PER_FIT = 0.15
STALE_GREY_MS = 150
COMPONENT_NAMES = {1: ("target",), 2: ("primary", "secondary")}
EXPORT_FORMATS = {"figure": (".png", ".pdf", ".svg"), "flux table": (".ecsv", ".fits", ".csv"),
                  "model/residual FITS": (".fits",), "region file": (".reg",)}


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


class MainWindow(QMainWindow):
    """Signals: fitDisplayed(FitResult) once panels and numbers show a new fit;
    chi2MapDisplayed(Chi2MapResult); errorShown(QMessageBox); exportFinished(path or
    None) when an export has been written (None: it failed, the error is shown)."""

    fitDisplayed = pyqtSignal(object)
    chi2MapDisplayed = pyqtSignal(object)
    errorShown = pyqtSignal(object)
    exportFinished = pyqtSignal(object)
    _exportDone = pyqtSignal(str, object, object)   # what, path, error (from a thread)

    def __init__(self, settings_store: QSettings | None = None):
        super().__init__()
        self.setWindowTitle("SMP Inspector")
        self.setAcceptDrops(True)
        self.store = settings_store or QSettings("smp-inspector", "SMP Inspector")
        self.controller = FitController(self)
        self.model = InspectorModel()

        self.manifest: DetectionManifest | None = None
        self.result: FitResult | None = None
        self.chi2map_result = None
        self.selected_index: int | None = None
        self.error_dialog: QMessageBox | None = None
        self.survey_window = None   # a batch output opened here (`open_survey`)
        self.fits_displayed = 0
        self._displayed_path: Path | None = None
        self._dragging = False
        self._pending_view: dict | None = None
        self._optimize_id = 0
        self._opening = False          # model.open in progress: one fit, requested after
        self._recent_pending: Path | None = None   # into Recent once it has fitted
        self._export_threads: list[threading.Thread] = []
        self.map_confirm_dialog: QMessageBox | None = None
        self.psf_notice: QMessageBox | None = None
        self._fit_seconds = 0.0       # the last refit's time, for map estimates
        self._overlay_cache: dict = {}
        self._sky_extent_cache: dict = {}
        self._controls_show: Measurement | None = None   # what the fit controls show
        # Numbers that stay stale this long are greyed out (not at every move of a drag,
        # whose refit arrives within milliseconds: the table would flicker).
        self._stale_timer = QTimer(self)
        self._stale_timer.setSingleShot(True)
        self._stale_timer.setInterval(STALE_GREY_MS)
        self._stale_timer.timeout.connect(self._grey_if_stale)
        # A new detection or new settings: the state shown before, restored when the
        # first fit of the new state fails (bad input, grid too large), and the id of
        # that first fit (0: nothing in transition).
        self._fallback: dict | None = None
        self._transition_id = 0

        self._build_widgets()
        keep_combo_keys(self)    # letters typed into a combo box search its items
        self._build_menus()
        self._connect()
        self.resize(1600, 900)
        self._refresh_recent_menu()
        self._on_history_changed()

    # -- the model's state, read through the window (tests and the app read these) ------

    @property
    def manifest_path(self) -> Path | None:
        return self.model.detection

    @property
    def settings(self) -> FitSettings:
        return self.model.measurement.settings

    @property
    def offsets(self) -> dict[str, tuple[float, ...]]:
        """Offsets of both modes in the published order."""
        m = self.model.measurement
        return {"single": m.single.published, "binary": m.binary.published}

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
        self.resizeDocks([self.browser_dock, self.controls_dock], [372, 420],
                         Qt.Orientation.Horizontal)
        self.resizeDocks([self.controls_dock, self.results_dock], [330, 520],
                         Qt.Orientation.Vertical)

        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 100)
        self.progress_bar.setMaximumWidth(220)
        self.progress_bar.hide()
        self.fit_label = QLabel("")
        self.stale_label = QLabel("")
        self.stale_label.setStyleSheet("color: #b35c00; font-weight: bold;")
        self.statusBar().addPermanentWidget(self.stale_label)
        self.statusBar().addPermanentWidget(self.fit_label)
        self.statusBar().addPermanentWidget(self.progress_bar)

        # Nudges only while the image panels have the focus (their frame shows it): the
        # stretch and colour combos beside them keep their own arrow keys.
        for key, (dx, dy) in {Qt.Key.Key_Left: (-1, 0), Qt.Key.Key_Right: (1, 0),
                              Qt.Key.Key_Up: (0, 1), Qt.Key.Key_Down: (0, -1)}.items():
            shortcut = QShortcut(QKeySequence(key), self.panels_view.graphics)
            shortcut.setContext(Qt.ShortcutContext.WidgetShortcut)
            shortcut.activated.connect(lambda dx=dx, dy=dy: self.nudge_on_screen(dx, dy))
        for n in (0, 1):
            shortcut = QShortcut(QKeySequence(str(n + 1)), self.panels_view.graphics)
            shortcut.setContext(Qt.ShortcutContext.WidgetShortcut)
            shortcut.activated.connect(lambda n=n: n < self.markers.count
                                       and self.markers.select(n))

    def _dock(self, title: str, widget: QWidget, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(title)
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _action(self, menu, text, slot, shortcut=None, tip=None,
                checkable: bool = False) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            shortcuts = shortcut if isinstance(shortcut, list) else [shortcut]
            action.setShortcuts([QKeySequence(k) for k in shortcuts])
        if tip:
            action.setStatusTip(tip)
        action.setCheckable(checkable)
        if checkable:
            action.toggled.connect(slot)
        else:
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
        # Kept on the window: an action only the menu refers to would be collected.
        self.undo_action = self._action(edit, "&Undo", self.model.undo, "Ctrl+Z")
        self.redo_action = self._action(edit, "&Redo", self.model.redo,
                                        ["Ctrl+Shift+Z", "Ctrl+Y"])
        self._action(edit, "Copy flux table", self.results_table.copy_to_clipboard)

        fit = bar.addMenu("F&it")
        self._action(fit, "&Refit", self.request_fit, "F5")
        self.optimize_action = self._action(fit, "&Optimize positions", self.optimize,
                                            "Ctrl+P")
        self._update_optimize_text(self.mode)
        self._action(fit, "&Δχ² map", lambda: self.fit_controls.map_button.click(), "Ctrl+M")
        self._action(fit, "&Cancel", self.cancel, "Esc")

        view = bar.addMenu("&View")
        pv = self.panels_view
        self._action(view, "Reset &levels", pv.reset_levels, "R")
        self._action(view, "Reset &zoom (fit the stamp)", pv.reset_zoom, ["0", "Ctrl+0"])
        self._action(view, "Zoom &in", lambda: pv.zoom(ZOOM_STEP), ["+", "=", "Ctrl++"])
        self._action(view, "Zoom &out", lambda: pv.zoom(1 / ZOOM_STEP), ["-", "Ctrl+-"])
        stretch_menu = view.addMenu("&Stretch")
        self.stretch_actions = QActionGroup(self)
        for n, (key, label) in enumerate(STRETCHES.items()):
            action = self._action(stretch_menu, label, lambda key=key: pv.set_stretch(key),
                                  f"Ctrl+{n + 1}")
            action.setCheckable(True)
            action.setChecked(key == pv.stretch)
            action.setData(key)
            self.stretch_actions.addAction(action)
        pv.stretchChanged.connect(self._check_stretch_action)
        self.invert_action = self._action(view, "&Invert colour map", pv.set_inverted, "I",
                                          checkable=True)
        self.mask_action = self._action(view, "Show &mask overlay", pv.set_show_mask, "M",
                                        checkable=True)
        self.mask_action.setChecked(True)
        pv.styleChanged.connect(self._sync_view_actions)
        self.crosshair_action = self._action(view, "&Crosshair", pv.set_crosshair, "C",
                                             checkable=True)
        self.regions_action = self._action(
            view, "&Regions (target's sky position, scene grid)", pv.set_show_regions, "G",
            checkable=True)
        self.regions_action.setChecked(True)
        self.compass_action = self._action(view, "Compass and scale &bar",
                                           pv.set_show_compass, "K", checkable=True)
        self.compass_action.setChecked(True)
        self.sky_action = self._action(view, "S&ky-aligned (north up, east left)",
                                       self.set_sky_aligned, "A", checkable=True,
                                       tip="Every exposure drawn north up, east left at one "
                                           "angular scale: stepping through them keeps the "
                                           "sky in place")
        view.addSeparator()
        self._action(view, "&Next exposure", lambda: self.step_exposure(1),
                     ["]", "PgDown"])
        self._action(view, "&Previous exposure", lambda: self.step_exposure(-1),
                     ["[", "PgUp"])
        self.blink_exposures_action = self._action(
            view, "&Blink exposures", self.set_blink_exposures, "B", checkable=True)
        self._action(view, "Blink image/&model",
                     lambda: self.browser.blink.toggle(), "Shift+B")
        self.map_action = self._action(view, "Show Δχ² &map", self.set_map_visible,
                                       "Ctrl+Shift+M", checkable=True)
        self.map_action.setEnabled(False)
        view.addSeparator()
        for dock in (self.browser_dock, self.controls_dock, self.results_dock):
            view.addAction(dock.toggleViewAction())
        self._blink_timer = QTimer(self)
        self._blink_timer.setInterval(EXPOSURE_BLINK_MS)
        self._blink_timer.timeout.connect(lambda: self.step_exposure(1))

        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "&Keyboard shortcuts…", self.show_shortcuts, "F1")
        self._action(help_menu, "&Data safety…", self.show_data_safety)

    def _check_stretch_action(self, stretch: str):
        for action in self.stretch_actions.actions():
            if action.data() == stretch:
                action.setChecked(True)

    def _sync_view_actions(self):
        for action, value in ((self.invert_action, self.panels_view.inverted),
                              (self.mask_action, self.panels_view.show_mask),
                              (self.sky_action, self.panels_view.sky_aligned)):
            action.blockSignals(True)
            action.setChecked(value)
            action.blockSignals(False)

    def shortcut_table(self) -> list[tuple[str, str]]:
        """(menu action, its shortcuts) for every menu action that has one, plus the
        panel keys."""
        rows = []

        def walk(menu, prefix=""):
            for action in menu.actions():
                if action.menu() is not None:
                    walk(action.menu(), action.text().replace("&", "") + ": ")
                elif action.shortcuts():
                    keys = ", ".join(k.toString() for k in action.shortcuts())
                    rows.append((prefix + action.text().replace("&", ""), keys))
        for top in self.menuBar().actions():
            walk(top.menu())
        rows += [("Nudge the selected marker by 0.1 px (panels focused)", "Arrow keys"),
                 ("Select marker 1 / 2 (panels focused)", "1, 2"),
                 ("Contrast and bias", "Right-drag on a panel"),
                 ("Pan / zoom", "Left-drag / wheel on a panel")]
        return rows

    def show_shortcuts(self) -> QMessageBox:
        rows = "".join(f"<tr><td>{_html(a)}</td><td><b>{_html(k)}</b></td></tr>"
                       for a, k in self.shortcut_table())
        box = QMessageBox(QMessageBox.Icon.NoIcon, "Keyboard shortcuts",
                          f"<table cellspacing=4>{rows}</table>",
                          QMessageBox.StandardButton.Ok, self)
        box.setObjectName("shortcutsDialog")
        box.setModal(False)
        box.show()
        self.shortcuts_dialog = box
        return box

    def step_exposure(self, step: int):
        """Show the next (step 1) or previous (-1) exposure, wrapping around."""
        n = len(self.browser.expnums())
        if n:
            current = self.browser.current_index
            self.browser.select((max(current, 0) + step) % n)

    def set_blink_exposures(self, on: bool):
        """Cycle through the exposures (the image panel's levels follow each)."""
        if on:
            self._blink_timer.start()
        else:
            self._blink_timer.stop()

    def set_map_visible(self, visible: bool):
        self.chi2map_view.setVisible(visible)

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
        fc.offsetsEdited.connect(self._on_offsets_edited)
        fc.optimizeRequested.connect(self.optimize)
        fc.shotNoiseChanged.connect(self._on_shot_noise_changed)
        fc.mode_box.currentTextChanged.connect(self._update_optimize_text)
        fc.cancelRequested.connect(self.cancel)
        fc.chi2MapRequested.connect(self.request_chi2map)
        self.browser.exposureSelected.connect(self.select_exposure)
        self.browser.blinkToggled.connect(self.panels_view.set_blink_model)
        self.panels_view.frameChanged.connect(
            lambda: self.markers.set_transform(self.panels_view.stamp_transform))
        self.markers.dragged.connect(self._on_marker_dragged)
        self.markers.dragFinished.connect(self._on_marker_drag_finished)
        self.chi2map_view.cellClicked.connect(self._on_map_cell_clicked)
        self.model.measurement_changed.connect(self._on_measurement_changed)
        self.model.history_changed.connect(self._on_history_changed)
        self.model.displayed_changed.connect(self._show_staleness)
        self._exportDone.connect(self._on_export_done)

    # -- observing the model ------------------------------------------------------------

    def _on_measurement_changed(self, m: Measurement):
        """Show the measurement in the controls and markers; refit unless the fit on
        screen already is its fit (an undo back to it, an optimisation's result)."""
        fc = self.fit_controls
        shown = self._controls_show   # only what changed: a drag changes one mode's offsets
        fc.blockSignals(True)
        try:
            if shown is None or shown.settings != m.settings:
                fc.set_settings(m.settings)
            if fc.mode != m.mode:
                fc.set_mode(m.mode)
            for mode in ("single", "binary"):
                if shown is None or getattr(shown, mode) != getattr(m, mode):
                    fc.set_offsets(getattr(m, mode).published, mode)
            if shown is None or (shown.gain, shown.shot_noise_iterations) != \
                    (m.gain, m.shot_noise_iterations):
                fc.set_shot_noise(m.gain is not None, m.gain, m.shot_noise_iterations)
        finally:
            fc.blockSignals(False)
        self._controls_show = m
        self._update_optimize_text(m.mode)
        self._place_markers()
        if not self._opening and self.model.detection is not None and self.model.is_stale:
            self.request_fit()

    def _on_history_changed(self):
        for action, verb, text in ((self.undo_action, "Undo", self.model.undo_text),
                                   (self.redo_action, "Redo", self.model.redo_text)):
            action.setEnabled(text is not None)
            action.setText(f"&{verb} {text[0].lower() + text[1:]}" if text else f"&{verb}")

    def _show_staleness(self):
        """Grey out the numbers whenever they are not those of the offsets on screen
        (after `STALE_GREY_MS`; at once when they belong again)."""
        if self.result is not None and self.model.is_stale:
            if not self.results_table.isEnabled():
                self._grey_if_stale()      # greyed already: keep the label current
            elif not self._stale_timer.isActive():
                self._stale_timer.start()
            return
        self._stale_timer.stop()
        if not self.results_table.isEnabled():
            self.results_table.setEnabled(True)
            self.fit_label.setEnabled(True)
        if self.stale_label.text():
            self.stale_label.setText("")

    def _grey_if_stale(self):
        if self.result is None or not self.model.is_stale:
            return
        self.results_table.setEnabled(False)
        self.fit_label.setEnabled(False)
        self.stale_label.setText("numbers pending: refitting…" if self.controller.busy
                                 else "numbers stale: press F5 to refit")

    @property
    def is_stale(self) -> bool:
        return self.model.is_stale

    # -- opening ------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        return self.model.mode

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
                       keep_gain: bool = False,
                       measurement: Measurement | None = None) -> bool:
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
        if measurement is None:
            settings = settings or self.settings
            mode = mode or self.mode
            current = self.model.measurement
            measurement = Measurement.defaults(settings, mode, gain=current.gain,
                                               shot_noise_iterations=current
                                               .shot_noise_iterations)
            if offsets is not None:
                measurement = measurement.with_offsets(TargetOffsets.from_published(offsets))
        gain = manifest.detection_exposure.gain
        if gain is not None and gain > 0 and not keep_gain:
            self.fit_controls.gain.blockSignals(True)
            self.fit_controls.gain.setValue(gain)
            self.fit_controls.gain.blockSignals(False)
            if measurement.gain is not None:
                measurement = dataclasses.replace(measurement, gain=float(gain))
        self._begin_transition()
        self.manifest = manifest
        self._opening = True
        try:
            self.model.open(manifest_path, measurement)
        finally:
            self._opening = False
        self.selected_index = None
        self.setWindowTitle(f"SMP Inspector — {manifest.name} ({manifest_path})")
        self._recent_pending = manifest_path
        self._transition_id = self.request_fit()
        return True

    # a detection or settings change that may fail -------------------------------------

    def _begin_transition(self):
        """Remember what is shown (once per transition), to go back to it if the first
        fit of the new detection/settings fails."""
        if self._transition_id:
            return   # still in the previous transition: keep what was shown before it
        self._fallback = {
            "detection": self.model.detection, "manifest": self.manifest,
            "measurement": self.model.measurement,
            "displayed": (self.model.displayed_request, self.model.displayed_offsets),
            "selected_index": self.selected_index, "title": self.windowTitle(),
        }

    def _end_transition(self, request_id: int, failed: bool) -> bool:
        """Called with every result/failure; True if the state was restored."""
        if not self._transition_id or request_id < self._transition_id:
            return False
        fallback, self._fallback, self._transition_id = self._fallback, None, 0
        if not failed or fallback is None:
            return False
        self.manifest = fallback["manifest"]
        self._recent_pending = None
        self.model.restore(fallback["detection"], fallback["measurement"],
                           *fallback["displayed"])
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
        """Where Open starts: the open detection's folder, else the working folder."""
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
        if dialogs.dropped_local_file(event):
            event.acceptProposedAction()

    def dropEvent(self, event):
        path = dialogs.dropped_local_file(event)
        if path:
            event.acceptProposedAction()
            self.open_path(path)

    # -- fitting ------------------------------------------------------------------------

    def request_fit(self, optimize: bool = False) -> int | None:
        if self.manifest_path is None:
            return None
        m = self.model.measurement
        request = FitJob(str(self.manifest_path), m.request(optimize),
                             panel_index=self.selected_index)
        request_id = self.controller.submit(request)
        if optimize:
            self._optimize_id = request_id
            self.statusBar().showMessage("optimising positions…")
        self._show_staleness()
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
        gain, iterations = options if options is not None else (None, 1)
        self.model.apply("Change the shot-noise refit", dataclasses.replace(
            self.model.measurement, gain=gain, shot_noise_iterations=iterations))

    def cancel(self):
        """Stop what runs (a Δχ² map, a search, a cold build).  The numbers must stay
        those of the offsets on screen: when the detection is loaded already, the
        pending refit runs again at once (milliseconds)."""
        self.controller.cancel()
        self.progress_bar.hide()
        if self.chi2map_view.chi2map is None:     # a first map cancelled: no empty plot
            self.map_action.setChecked(False)
            self.map_action.setEnabled(False)
        displayed = self.model.displayed_request
        if (self.model.is_stale and displayed is not None and self.result is not None
                and displayed.settings == self.settings
                and self._displayed_path == self.manifest_path):
            self.request_fit()
            self.statusBar().showMessage("cancelled; refitting the offsets on screen", 3000)
        else:
            self.statusBar().showMessage("cancelled", 3000)
        self._show_staleness()

    def set_offsets(self, offsets, mode: str | None = None, text: str = "Edit offsets"):
        """Make ``offsets`` (published order) the current ones of ``mode`` (undoable)."""
        mode = mode or self.mode
        measurement = self.model.measurement.with_offsets(
            TargetOffsets.from_published(offsets))
        self.model.apply(text, dataclasses.replace(measurement, mode=mode))

    def _component_name(self, k: int) -> str:
        names = COMPONENT_NAMES[len(self.model.offsets)]
        return names[min(k, len(names) - 1)]

    def _on_offsets_edited(self, offsets):
        self.model.move("Edit offsets", TargetOffsets.from_published(offsets))

    def nudge(self, ddx: float, ddy: float):
        """Move the selected marker by (ddx, ddy) px (arrow keys: 0.1 px)."""
        if self.result is None or self.markers.count == 0:
            return
        k = min(self.markers.selected_index, self.markers.count - 1)
        self.model.move(f"Nudge {self._component_name(k)}",
                        self.model.offsets.shifted(k, ddx, ddy))

    def nudge_on_screen(self, right: int, up: int):
        """Arrow keys: move the selected marker by `NUDGE_PX` px in the direction the key
        points to on screen (sky-aligned, Up is north; otherwise +y)."""
        du, dv = self.panels_view.stamp_direction(right, up)
        self.nudge(du * NUDGE_PX, dv * NUDGE_PX)

    def _on_marker_dragged(self, k: int, u0: float, v0: float, u1: float, v1: float):
        # Offsets and view differ by a constant shift: displacements are equal.
        base = self.model._gesture_base or self.model.measurement
        self._dragging = True
        self.model.preview(base.offsets.shifted(k, u1 - u0, v1 - v0))

    def _on_marker_drag_finished(self, k, u0, v0, u1, v1):
        self._dragging = False
        base = self.model._gesture_base or self.model.measurement
        self.model.move(f"Move {self._component_name(k)}",
                        base.offsets.shifted(k, u1 - u0, v1 - v0))

    def _on_settings_changed(self):
        # The controls set what they show; the oversampling (not shown: a session's) is
        # kept from the model.
        new = dataclasses.replace(self.fit_controls.settings(),
                                  oversampling=self.settings.oversampling)
        if new == self.settings:
            return
        self._begin_transition()
        m = self.model.measurement
        if new.convention != m.settings.convention:
            # offsets are in the convention's frame: start again from its defaults
            changed = Measurement.defaults(new, m.mode, gain=m.gain,
                                           shot_noise_iterations=m.shot_noise_iterations)
        else:
            changed = dataclasses.replace(m, settings=new)
        self.model.apply("Change the fit settings", changed)
        if not self._transition_id and self.manifest_path is not None:
            self._transition_id = self.controller.last_submitted

    def _on_mode_changed(self, mode: str):
        self.model.apply(f"Switch to {mode}", dataclasses.replace(self.model.measurement,
                                                                   mode=mode))

    def _on_progress(self, _request_id: int, fraction: float, message: str):
        self.progress_bar.show()
        self.progress_bar.setValue(int(round(100 * fraction)))
        self.statusBar().showMessage(message)

    def _on_busy(self, busy: bool):
        self.fit_controls.set_busy(busy)
        if not busy:
            self.progress_bar.hide()
        self._show_staleness()

    # -- results ------------------------------------------------------------------------

    def _show_result(self, result: FitResult):
        first_of_detection = (self.result is None
                              or self._displayed_path != Path(result.request.manifest_path)
                              or self.result.fit.scene is not result.fit.scene)
        self.result = result
        self._displayed_path = Path(result.request.manifest_path)
        self._end_transition(result.request_id, failed=False)
        if self._recent_pending is not None:
            self._add_recent(self._recent_pending)   # only detections that fitted
            self._recent_pending = None
        request = result.request
        fitted = TargetOffsets.from_published(result.summary.offsets)
        self.model.show_fit(request.fit, fitted)
        if not request.fit.optimize and not first_of_detection:   # not the cold one
            self._fit_seconds = result.fit_s
        if request.fit.optimize and request.fit.mode == self.mode:
            self.model.move("Optimize positions", fitted)
            self.statusBar().showMessage(
                f"optimised in {result.elapsed_s:.2f} s "
                f"({result.fit.n_chi2_evaluations} chi2 evaluations)", 5000)
        elif first_of_detection:
            self.statusBar().showMessage(f"{self.manifest.name if self.manifest else ''}: "
                                         f"fitted", 5000)
        fit = result.fit
        self.placeholder.hide()
        self.browser.set_fit(fit, result.diagnostics)   # may select the detection (first fit)
        self.browser.set_dropped(result.dropped)
        if self.selected_index is None or self.selected_index >= len(fit.scene.exposures):
            self.selected_index = fit.scene.detection_index
        self._update_panels()
        self.results_table.set_summary(result.summary)
        s = result.summary
        self.fit_label.setText(f"χ²/dof = {s.chi2:.1f}/{s.dof}  fit {1000 * result.elapsed_s:.0f} ms")
        if self._pending_view is not None:
            view, self._pending_view = self._pending_view, None
            self._apply_view(view)
        self._show_staleness()
        self.fits_displayed += 1
        self.fitDisplayed.emit(result)

    def select_exposure(self, index: int):
        self.selected_index = index
        if self.result is not None:
            exposures = self.result.fit.scene.exposures
            if 0 <= index < len(exposures):
                self.model.select(int(exposures[index].entry.expnum))
            self._update_panels()

    def _update_panels(self):
        fit = self.result.fit
        index = self.selected_index
        ready = self.result.panels
        panels = (ready if ready is not None and ready.expnum ==
                  fit.scene.exposures[index].entry.expnum else five_panels(fit, index))
        exposure = fit.scene.exposures[index]
        if self.panels_view.sky_aligned:
            self.panels_view.set_sky_extent(self._sky_extent(fit.scene))
        self.panels_view.set_panels(panels, exposure.pixel_to_sky)
        self.panels_view.set_overlays(self._overlays(exposure, fit.settings))
        on_detection = index == fit.scene.detection_index
        self.markers.set_visible(on_detection)
        self._place_markers()

    def _overlays(self, exposure, settings):
        """Regions, compass and scale of an exposure (cached: a drag refits often; the
        worker computes them with the fit for the exposure it prepared panels of)."""
        from smp_model.display import exposure_overlays
        key = (id(exposure), settings)
        ready = self.result.overlays if self.result is not None else None
        if self._overlay_cache.get("key") != key and ready is not None \
                and ready[0] is exposure:
            self._overlay_cache = {"key": key, "value": ready[1], "exposure": exposure}
        if self._overlay_cache.get("key") != key:
            try:
                value = exposure_overlays(exposure, self.manifest.ra, self.manifest.dec,
                                          settings)
            except Exception:   # noqa: BLE001 - a WCS that cannot invert: no overlay
                value = None
            self._overlay_cache = {"key": key, "value": value, "exposure": exposure}
        return self._overlay_cache["value"]

    def set_sky_aligned(self, on: bool):
        """Draw the exposures north up, east left (View menu, A: aligned to the sky; N is
        the survey view's next detection) or in stamp coordinates."""
        if on and self.result is not None:
            self.panels_view.set_sky_extent(self._sky_extent(self.result.fit.scene))
        self.panels_view.set_sky_aligned(on)

    def _sky_extent(self, scene):
        """The view that holds every exposure's stamp sky-aligned (once per scene: one
        WCS Jacobian per exposure, ~0.5 ms each on DES data)."""
        from smp_model.display import exposure_sky_affine, stamp_extent
        if self._sky_extent_cache.get("scene") is not scene:
            affines, shapes = [], []
            for exposure in scene.exposures:
                try:
                    affines.append(exposure_sky_affine(exposure))
                except Exception:   # noqa: BLE001 - a WCS that fails: not in the extent
                    continue
                shapes.append(exposure.shape)
            value = stamp_extent(affines, shapes) if affines else None
            self._sky_extent_cache = {"scene": scene, "value": value}
        return self._sky_extent_cache["value"]

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
        if not self._dragging:
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

    def chi2map_estimate_s(self, half_width: float, step: float,
                           reoptimize_primary: bool) -> float:
        """Seconds a map would take: cells x a χ² evaluation, estimated from the last
        measured refit (`MAP_CELL_PER_FIT`; x 30 when the primary is re-optimised in every
        cell, a search of ~30 evaluations)."""
        n = (2 * int(round(half_width / step)) + 1) ** 2
        per_cell = MAP_CELL_PER_FIT * max(self._fit_seconds, 1e-3)
        return n * per_cell * (30 if reoptimize_primary else 1)

    def request_chi2map(self, half_width: float = 2.0, step: float = 0.2,
                        reoptimize_primary: bool = False, confirmed: bool = False
                        ) -> int | None:
        """Compute the Δχ² map of the secondary; one estimated to take longer than
        `MAP_CONFIRM_S` asks first (non-blocking dialog, ``map_confirm_dialog``)."""
        if self.manifest_path is None or self.mode != "binary":
            return None
        estimate = self.chi2map_estimate_s(half_width, step, reoptimize_primary)
        if estimate > MAP_CONFIRM_S and not confirmed:
            box = QMessageBox(QMessageBox.Icon.Question, "Long Δχ² map",
                              f"This map has {(2 * int(round(half_width / step)) + 1) ** 2} "
                              f"cells and will take about {estimate:.0f} s (it can be "
                              f"cancelled with Esc). Compute it?",
                              QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                              self)
            box.setObjectName("mapConfirmDialog")
            box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            box.accepted.connect(lambda: self.request_chi2map(
                half_width, step, reoptimize_primary, confirmed=True))
            self.map_confirm_dialog = box
            box.open()
            return None
        offsets = self.offsets["binary"]
        request = Chi2MapJob(str(self.manifest_path), self.settings,
                             primary=component_offset(offsets, 0),
                             center=component_offset(offsets, 1),
                             half_width=half_width, step=step,
                             reoptimize_primary=reoptimize_primary)
        self.map_action.setEnabled(True)
        self.map_action.setChecked(True)
        self.statusBar().showMessage(f"computing the Δχ² map (about {estimate:.0f} s)…")
        return self.controller.submit(request)

    def _show_chi2map(self, result):
        self.chi2map_result = result
        self.map_action.setEnabled(True)
        self.map_action.setChecked(True)
        self.chi2map_view.show()
        self.chi2map_view.set_map(result.chi2map)
        offsets = self.offsets["binary"]
        self.chi2map_view.set_components(component_offset(offsets, 0),
                                         component_offset(offsets, 1))
        self.statusBar().showMessage("Δχ² map ready", 3000)
        self.chi2MapDisplayed.emit(result)

    def _on_map_cell_clicked(self, i: int, j: int):
        m = self.chi2map_view.chi2map
        old = self.model.measurement.binary
        p = m.primary[j, i] if m.reoptimized_primary else old.positions[0]
        new = TargetOffsets(((float(p[0]), float(p[1])), (float(m.dx[i]), float(m.dy[j]))))
        self.model.apply("Move secondary (Δχ² map)",
                         dataclasses.replace(self.model.measurement.with_offsets(new),
                                             mode="binary"))

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
        if isinstance(request, FitJob):
            self._end_transition(request.request_id, failed=True)
        title = ("Fit failed" if isinstance(request, FitJob) else "Δχ² map failed")
        details = None if isinstance(failure.error, SMPError) else failure.traceback
        self.show_error(title, failure.error, context=request.manifest_path, details=details)

    # -- export -------------------------------------------------------------------------

    STALE_MESSAGE = ("the numbers on screen are not those of the offsets on screen yet (a "
                     "refit is pending or was cancelled): wait for it or press F5")

    def export_dir(self) -> Path:
        """The last export folder, else the user's documents (never the data folder,
        which may be read-only)."""
        last = self.store.value("export_dir", "")
        if last and Path(str(last)).is_dir():
            return Path(str(last))
        docs = QStandardPaths.writableLocation(
            QStandardPaths.StandardLocation.DocumentsLocation)
        return Path(docs) if docs and Path(docs).is_dir() else Path.home()

    def _ask_export_path(self, what: str, stem: str) -> Path | None:
        suffixes = EXPORT_FORMATS[what]
        filters = [f"{s[1:].upper()} (*{s})" for s in suffixes]
        name, chosen = QFileDialog.getSaveFileName(
            self, f"Export {what}", str(self.export_dir() / f"{stem}{suffixes[0]}"),
            ";;".join(filters))
        if not name:
            return None
        path = Path(name)
        if path.suffix.lower() not in suffixes:   # the chosen format's extension
            index = filters.index(chosen) if chosen in filters else 0
            path = path.with_name(path.name + suffixes[index])
        return path

    def _export(self, what: str, writer, path, stem: str) -> Path | None:
        """Write ``writer(fit, path, overwrite)`` in a thread; `exportFinished` says
        when.  Refused while the numbers on screen are stale."""
        if self.result is None:
            self.show_error(f"Cannot export {what}", SMPError("no fit to export yet"))
            return None
        if self.model.is_stale:
            self.show_error(f"Cannot export {what}", SMPError(self.STALE_MESSAGE))
            return None
        if path is None:
            path = self._ask_export_path(what, stem)
            if path is None:
                return None
        path = Path(path)
        overwrite = False
        if path.exists():
            if not dialogs.confirm_overwrite(self, path):
                self.statusBar().showMessage(f"{path} exists: not overwritten", 5000)
                return None
            overwrite = True
        fit = self.result.fit

        def job():
            try:
                writer(fit, path, overwrite)
            except Exception as exc:   # noqa: BLE001 - shown to the user
                self._exportDone.emit(what, path, exc)
            else:
                self._exportDone.emit(what, path, None)
        thread = threading.Thread(target=job, name=f"export {what}", daemon=True)
        self._export_threads.append(thread)
        thread.start()
        self.statusBar().showMessage(f"writing {path}…")
        return path

    def _on_export_done(self, what: str, path, error):
        self._export_threads = [t for t in self._export_threads if t.is_alive()]
        if error is not None:
            self.show_error(f"Cannot export {what}", error, context=str(path))
            self.exportFinished.emit(None)
            return
        self.store.setValue("export_dir", str(Path(path).parent))
        self.statusBar().showMessage(f"wrote {path}", 5000)
        self.exportFinished.emit(path)

    def _stem(self, kind: str) -> str:
        name = self.manifest.name if self.manifest else "detection"
        return f"{name.replace(' ', '_')}-{self.mode}-{kind}"

    def export_figure(self, path=None, exposures: str = "detection") -> Path | None:
        """Five-panel figure (PNG/PDF/SVG by extension) drawn as the panels are (stretch,
        levels, colour map, mask overlay); ``exposures='all'`` writes one page (PDF) or
        row per exposure."""
        from smp_model.figures import save_figure
        style, shown = self.panels_view.style(), self.selected_index
        return self._export(
            "figure", lambda fit, p, ow: save_figure(fit, p, exposures=exposures,
                                                     overwrite=ow, style=style,
                                                     shown_index=shown),
            path, self._stem("panels"))

    def export_table(self, path=None) -> Path | None:
        """Flux table (ECSV/FITS/CSV by extension) with the fit settings in its meta."""
        from smp_model.results import write_table
        return self._export("flux table",
                            lambda fit, p, ow: write_table(fit, p, overwrite=ow),
                            path, self._stem("fluxes"))

    def export_fits(self, path=None) -> Path | None:
        """Per-exposure image, model, residual, target, weight and mask HDUs with a WCS
        each, plus tables, as one FITS file."""
        from smp_model.results import write_fits
        return self._export("model/residual FITS",
                            lambda fit, p, ow: write_fits(fit, p, overwrite=ow),
                            path, self._stem("cubes"))

    def export_regions(self, path=None) -> Path | None:
        """DS9 region file (fk5) of the fitted sources and the grid outline."""
        from smp_model.results import write_regions
        return self._export("region file",
                            lambda fit, p, ow: write_regions(fit, p, overwrite=ow),
                            path, self._stem("regions"))

    # -- sessions -----------------------------------------------------------------------

    def session_state(self) -> dict:
        pv = self.panels_view
        return self.model.session(view={
            "stretch": pv.stretch, "colormap": pv.colormap_name, "invert": pv.inverted,
            "show_mask": pv.show_mask, "sky_aligned": pv.sky_aligned,
            "levels": list(pv.levels()), "range": pv.view_range()})

    def save_session(self, path=None) -> Path | None:
        """Write the session as JSON, atomically (a temporary file renamed into place by
        `smp_model.io_utils.atomic_output`), never replacing a file without asking;
        refused while the numbers on screen are stale."""
        from smp_model.io_utils import atomic_output
        if self.manifest_path is None:
            self.show_error("Cannot save session", SMPError("no detection is open"))
            return None
        if self.model.is_stale:
            self.show_error("Cannot save session", SMPError(self.STALE_MESSAGE))
            return None
        overwrite = False
        if path is None:
            name, _ = QFileDialog.getSaveFileName(
                self, "Save session", str(self.export_dir() / f"{self.manifest.name}"
                                          f"{SESSION_SUFFIX}"),
                f"Sessions (*{SESSION_SUFFIX} *.json)")
            if not name:
                return None
            path = Path(name)
            if not path.name.endswith(".json"):
                path = path.with_name(path.name + SESSION_SUFFIX)
            overwrite = path.exists()
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
        """Restore a saved session: the whole file is validated first (one error dialog
        naming the entry, nothing applied); then detection, settings, mode, offsets,
        exposure and view, and the shown fit is run again (a position search from its
        start: the same numbers as when the session was saved)."""
        path = Path(path)
        try:
            session = parse_session(path.read_text(), path)
            manifest_path = resolve_detection_path(session.detection)
            manifest = DetectionManifest.read(manifest_path)
        except SessionError as exc:
            self.show_error("Cannot open session", ManifestError(str(exc), path))
            return False
        except SMPError as exc:
            self.show_error("Cannot open session", exc, context=str(path))
            return False
        except (OSError, UnicodeDecodeError) as exc:
            self.show_error("Cannot open session", ManifestError(str(exc), path))
            return False
        outside = manifest.psf_files_outside(path.parent)
        if outside:
            self.show_psf_notice(path, outside)
        if not self.open_detection(manifest_path, measurement=session.measurement,
                                   keep_gain=True):
            return False
        if session.fit is not None:
            self._transition_id = self.controller.submit(FitJob(
                str(manifest_path), session.fit.replace(optimize=True)))
        self._pending_view = {"selected_expnum": session.selected_expnum, **session.view}
        return True

    def show_psf_notice(self, path: Path, psf_files: list[Path]) -> QMessageBox:
        """Say which PSF files outside the session's folder will be read (they run
        code); non-modal."""
        listed = "\n".join(str(p) for p in psf_files[:20])
        more = f"\n… and {len(psf_files) - 20} more" if len(psf_files) > 20 else ""
        box = QMessageBox(QMessageBox.Icon.Warning, "PSF files outside the session's folder",
                          f"{path} reads {len(psf_files)} PSF file(s) outside its folder "
                          f"({path.parent}). PSF files run code when read: open only data "
                          f"you trust.\n\n{listed}{more}",
                          QMessageBox.StandardButton.Ok, self)
        box.setObjectName("psfNotice")
        box.setModal(False)
        box.show()
        self.psf_notice = box
        self.statusBar().showMessage(f"reading {len(psf_files)} PSF file(s) outside "
                                     f"{path.parent}", 10000)
        return box

    def _apply_view(self, view: dict):
        """A validated view (`smp_gui.session.parse_session`)."""
        expnum = view.get("selected_expnum")
        if expnum is not None and self.result is not None:
            expnums = [ex.entry.expnum for ex in self.result.fit.scene.exposures]
            if expnum in expnums:
                self.browser.select(expnums.index(expnum))
        pv = self.panels_view
        if view.get("colormap"):
            pv.set_colormap(view["colormap"])
        if view.get("stretch"):
            pv.set_stretch(view["stretch"])
        if view.get("invert") is not None:
            pv.set_inverted(view["invert"])
        if view.get("show_mask") is not None:
            pv.set_show_mask(view["show_mask"])
        if view.get("levels"):
            pv.set_levels(*view["levels"])
        # Sessions saved before the sky-aligned display have none: their range is in
        # stamp coordinates, so they are shown as saved, not sky-aligned.
        self.set_sky_aligned(bool(view.get("sky_aligned", False)))
        if view.get("range"):
            pv.set_view_range(view["range"])
            pv.fit_view = False

    # -- shutdown -----------------------------------------------------------------------

    def closeEvent(self, event):
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self):
        """Stop the worker thread (idempotent)."""
        self.controller.shutdown()



def _html(text: str) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
