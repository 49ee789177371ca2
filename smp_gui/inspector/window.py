"""The SMP Inspector window: five panels in the middle (the Δχ² map in the sixth cell of
their grid), exposures on the left, fit controls and the flux table on the right.

The inspector's state (detection, measurement = mode, offsets, settings, shot noise; its
undo history; which fit is shown and whether it is stale) lives in the Qt-free
`smp_gui.state.InspectorModel`; the window forwards user actions to it and observes it.
Offsets are the engine's `TargetOffsets` (px relative to the target's WCS position in the
convention's frame).  Every change of the measurement becomes a `FitJob` for the
controller; results come back as `FitResult` and are shown by `_show_result`, which emits
`fitDisplayed`.

The window is the shell: widgets, the model's observers, fitting and display.  Its menus
(`smp_gui.inspector.actions`), opening (`opening`), exports (`exports`), session files
(`sessions`), Δχ² maps (`chi2map_control`) and the undoable edits its widgets ask for
(`edits`) are collaborators that hold a reference to it; the window's public methods for
them are one line each.
"""
from __future__ import annotations

from pathlib import Path

from PyQt6.QtCore import QSettings, Qt, QTimer, pyqtSignal
from PyQt6.QtWidgets import (QDockWidget, QLabel, QMainWindow, QMessageBox, QProgressBar,
                             QVBoxLayout, QWidget)

from smp_model.errors import SMPError
from smp_model.fit.panels import five_panels
from smp_model.fit.request import TargetOffsets
from smp_model.inputs.manifest import DetectionManifest
from smp_model.outputs.display import overlay_colors
from smp_model.settings import FitSettings

from .. import dialogs
from ..controller import FitController, FitJob, FitResult, JobFailure
from ..keys import keep_combo_keys
from ..state import InspectorModel, Measurement, search_edit_text, search_message
from .actions import MenuActions
from .chi2map_control import Chi2MapControl
from .chi2map_view import Chi2MapView
from .edits import Edits
from .exports import Exporter
from .exposure_browser import ExposureBrowser
from .fit_controls import FitControls, scrollable
from .layout import WindowLayout
from .markers import MarkerLayer, component_offset, fitted_markers
from .opening import DetectionOpener
from .panels_view import PanelsView
from .results_table import ResultsTable
from .sending import SampSender
from .sessions import SessionFiles
from .sky_overlays import SkyGeometry

__all__ = ["STALE_GREY_MS", "InspectorWindow"]

STALE_GREY_MS = 150


class InspectorWindow(QMainWindow):
    """The five-panel inspector of one detection.

    Signals: fitDisplayed(FitResult) once panels and numbers show a new fit;
    chi2MapDisplayed(Chi2MapResult); errorShown(QMessageBox); exportFinished(path or
    None) when an export has been written (None: it failed, the error is shown).

    Parameters
    ----------
    settings_store : QSettings, optional
        Where the recent files, the export folder, the trusted PSF folders and the
        window's geometry and docks are kept (default: the user's).
    survey_factory : callable, optional
        ``survey_factory(window)`` makes a survey window that browses in this one, for
        batch outputs (`smp_gui.windows.WindowManager`); None: they cannot be opened.
    """

    fitDisplayed = pyqtSignal(object)
    chi2MapDisplayed = pyqtSignal(object)
    errorShown = pyqtSignal(object)
    exportFinished = pyqtSignal(object)

    def __init__(self, settings_store: QSettings | None = None, survey_factory=None):
        super().__init__()
        self.setWindowTitle("SMP Inspector")
        self.setAcceptDrops(True)
        self.store = settings_store or QSettings("smp-inspector", "SMP Inspector")
        self.controller = FitController(self)
        self.model = InspectorModel()
        self.manifest: DetectionManifest | None = None
        self.result: FitResult | None = None
        self.selected_index: int | None = None
        self.error_dialog: QMessageBox | None = None
        self.consent_dialog = None   # the PSF question while it is open (`smp_gui.consent`)
        self.survey_window = None   # a batch output opened here (`opener.open_survey`)
        self.fits_displayed = 0
        self._displayed_path: Path | None = None
        self.sky_geometry = SkyGeometry()
        self._controls_show: Measurement | None = None   # what the fit controls show
        # Numbers that stay stale this long are greyed out (not at every move of a drag,
        # whose refit arrives within milliseconds: the table would flicker).
        self._stale_timer = QTimer(self)
        self._stale_timer.setSingleShot(True)
        self._stale_timer.setInterval(STALE_GREY_MS)
        self._stale_timer.timeout.connect(self._grey_if_stale)
        self.opener = DetectionOpener(self, survey_factory)
        self.exporter = Exporter(self)
        self.samp = SampSender(self)
        self.session_files = SessionFiles(self)
        self.chi2map_control = Chi2MapControl(self)
        self.edits = Edits(self)
        self._build_widgets()
        keep_combo_keys(self)    # letters typed into a combo box search its items
        self.menus = MenuActions(self)
        self._connect()
        self.layout_keeper = WindowLayout(self)
        self.layout_keeper.restore()
        self.opener.refresh_recent_menu()

    # -- the model's state, read through the window (tests and the app read these) ------

    @property
    def manifest_path(self) -> Path | None:
        return self.model.detection

    @property
    def settings(self) -> FitSettings:
        return self.model.measurement.settings

    @property
    def mode(self) -> str:
        return self.model.mode

    @property
    def offsets(self) -> dict[str, tuple[float, ...]]:
        """Offsets of both modes in the published order."""
        m = self.model.measurement
        return {"single": m.single.published, "binary": m.binary.published}

    @property
    def is_stale(self) -> bool:
        return self.model.is_stale

    # -- construction -------------------------------------------------------------------

    def _build_widgets(self):
        self.panels_view = PanelsView()
        self.markers = MarkerLayer(self.panels_view.plots.values(), self)
        self.placeholder = QLabel("Open a detection: File > Open (a detection.toml or its "
                                  "folder), or drop a manifest on the window.")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.placeholder)
        layout.addWidget(self.panels_view, 1)
        self.setCentralWidget(central)
        # The map's plot takes the panels' sixth cell; its explanation goes below them.
        self.chi2map_view = Chi2MapView(self.panels_view)
        layout.addWidget(self.chi2map_view)
        self.chi2map_view.hide()     # shown with the first map
        self._build_docks()
        self._build_status_bar()

    def _build_docks(self):
        self.browser = ExposureBrowser()
        self.fit_controls = FitControls()
        self.results_table = ResultsTable()
        self.browser_dock = self._dock("Exposures", self.browser,
                                       Qt.DockWidgetArea.LeftDockWidgetArea)
        self.controls_dock = self._dock("Fit", scrollable(self.fit_controls),
                                        Qt.DockWidgetArea.RightDockWidgetArea)
        self.results_dock = self._dock("Flux table", self.results_table,
                                       Qt.DockWidgetArea.RightDockWidgetArea)
        self.resizeDocks([self.controls_dock, self.results_dock], [330, 520],
                         Qt.Orientation.Vertical)

    def _dock(self, title: str, widget: QWidget, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(title)
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _build_status_bar(self):
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 100)
        self.progress_bar.setMaximumWidth(220)
        self.progress_bar.hide()
        self.fit_label = QLabel("")
        self.stale_label = QLabel("")
        # sky-aligned on, but the shown exposure's WCS gives no frame: say so
        self.frame_notice = QLabel("")
        self.frame_notice.setStyleSheet("color: #b35c00; font-weight: bold;")
        self.statusBar().addPermanentWidget(self.frame_notice)   # not hidden by messages
        self.stale_label.setStyleSheet("color: #b35c00; font-weight: bold;")
        for label in (self.stale_label, self.fit_label, self.progress_bar):
            self.statusBar().addPermanentWidget(label)

    def _connect(self):
        c = self.controller
        c.fitFinished.connect(self._show_result)
        c.chi2MapFinished.connect(self.chi2map_control.show)
        c.failed.connect(self._on_failed)
        c.progress.connect(self._on_progress)
        c.busyChanged.connect(self._on_busy)
        fc = self.fit_controls
        self.edits.connect()
        fc.optimizeRequested.connect(self.optimize)
        fc.cancelRequested.connect(self.cancel)
        fc.chi2MapRequested.connect(self.request_chi2map)
        self.browser.exposureSelected.connect(self.select_exposure)
        self.browser.blinkToggled.connect(self.panels_view.set_blink_model)
        self.panels_view.frameChanged.connect(
            lambda: self.markers.set_transform(self.panels_view.stamp_transform))
        self.panels_view.styleChanged.connect(lambda: self.markers.set_colors(
            overlay_colors(self.panels_view.colormap_name)))
        self.chi2map_view.cellClicked.connect(self.chi2map_control.move_secondary)
        self.model.measurement_changed.connect(self._on_measurement_changed)
        self.model.displayed_changed.connect(self._show_staleness)

    # -- opening, sessions, exports and help (the collaborators do the work) ------------

    def open_path(self, path: str | Path, ask_consent: bool = True) -> bool:
        """Open a manifest, a folder holding detection.toml, a saved session, or a
        `smp batch` output (in a survey window); False: an error is shown, or the user
        cancelled reading PSF files from outside the folder (``ask_consent``: asked
        first, `smp_gui.consent`)."""
        return self.opener.open_path(path, ask_consent)

    def open_detection(self, path: str | Path, settings: FitSettings | None = None,
                       mode: str | None = None, offsets=None, keep_gain: bool = False,
                       measurement: Measurement | None = None, search: bool = False
                       ) -> bool:
        """Read the manifest (errors: dialog, nothing changes) and start the cold fit.

        Parameters
        ----------
        path : str or Path
            A manifest, or its folder.
        settings, mode : optional
            Of the new measurement (default: the current settings, and single mode: the
            status bar says so when the detection before was a binary), which starts from
            the defaults of both modes' offsets.
        offsets : sequence of float, optional
            Offsets of ``mode`` in the published order (px).
        keep_gain : bool
            Keep the current shot-noise gain instead of the manifest's (its detection
            exposure's, when it has one).
        measurement : Measurement, optional
            The whole measurement (a session's); the other parameters are then ignored.
        search : bool
            Then search the positions from ``offsets`` (a batch row whose positions were
            searched: its own fit, with the positions' errors, is shown).

        Returns
        -------
        bool
            False when the manifest could not be read (the error is shown).
        """
        return self.opener.open_detection(path, settings, mode, offsets, keep_gain,
                                          measurement, search=search)

    def recent_files(self) -> list[str]:
        """The detections opened last that fitted, newest first."""
        return self.opener.recent_files()

    def session_state(self) -> dict:
        """The session of what is shown, as a JSON-able dict (`smp_gui.session`)."""
        return self.session_files.state()

    def save_session(self, path=None) -> Path | None:
        """Write the session as JSON, atomically (a temporary file renamed into place by
        `smp_model.files.atomic_output`), never replacing a file without asking;
        refused while the numbers on screen are stale.  None: not saved."""
        return self.session_files.save(path)

    def open_session(self, path) -> bool:
        """Restore a saved session: the whole file is validated first (one error dialog
        naming the entry, nothing applied); then detection, settings, mode, offsets,
        exposure and view, and the shown fit is run again (a position search from its
        start: the same numbers as when the session was saved).  PSF files outside the
        session's folder are read only after the user consents (`smp_gui.consent`)."""
        return self.session_files.open(path)

    def export_figure(self, path=None, exposures: str = "detection") -> Path | None:
        """Five-panel figure (PNG/PDF/SVG by extension) drawn as the panels are (stretch,
        levels, colour map, mask overlay); ``exposures='all'`` writes one page (PDF) or
        row per exposure.  Written in a thread: `exportFinished` says when."""
        return self.exporter.figure(path, exposures)

    def export_table(self, path=None) -> Path | None:
        """Flux table (ECSV/FITS/CSV by extension) with the fit settings in its meta."""
        return self.exporter.table(path)

    def export_fits(self, path=None) -> Path | None:
        """Per-exposure image, model, residual, target, weight and mask HDUs with a WCS
        each, plus tables, as one FITS file."""
        return self.exporter.fits(path)

    def export_regions(self, path=None) -> Path | None:
        """DS9 region file (icrs) of the fitted sources and the grid outline."""
        return self.exporter.regions(path)

    def shortcut_table(self) -> list[tuple[str, str]]:
        """(menu action, its shortcuts) for every menu action that has one, plus the
        panel keys."""
        return self.menus.shortcut_table()

    def show_shortcuts(self) -> QMessageBox:
        """Help > Keyboard shortcuts, non-modal."""
        return self.menus.show_shortcuts()

    def show_data_safety(self) -> QMessageBox:
        """The trust boundary (PSF files run code), non-modal."""
        return self.menus.show_data_safety()

    def dragEnterEvent(self, event):
        self.opener.accept_drag(event)

    def dropEvent(self, event):
        self.opener.drop(event)

    # -- observing the model ------------------------------------------------------------

    def _on_measurement_changed(self, m: Measurement):
        """Show the measurement in the controls and markers; refit unless the fit on
        screen already is its fit (an undo back to it, an optimisation's result)."""
        self.fit_controls.show_measurement(m, self._controls_show)
        self._controls_show = m
        self.menus.update_optimize_text(m.mode)
        self.place_markers()
        self.chi2map_control.check_stale()
        if not self.opener.opening and self.model.detection is not None \
                and self.model.is_stale:
            self.request_fit()

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

    # -- fitting ------------------------------------------------------------------------

    def request_fit(self, optimize: bool = False) -> int | None:
        """Fit the measurement on screen (``optimize``: search the positions from it);
        the job's id, or None when no detection is open."""
        if self.manifest_path is None:
            return None
        job = FitJob(str(self.manifest_path), self.model.measurement.request(optimize),
                     panel_index=self.selected_index,
                     preview=self.edits.dragging and not optimize)
        request_id = self.controller.submit(job)
        if optimize:
            self.statusBar().showMessage("optimising positions…")
        self._show_staleness()
        return request_id

    def optimize(self) -> int | None:
        """Search the position(s) from the current markers: the single target's (dx, dy)
        (`optimize_single`) or both binary components (`optimize_binary`); the flux table
        then shows the offsets with their errors and the fitted RA/Dec."""
        return self.request_fit(optimize=True)

    def request_chi2map(self, half_width: float = 2.0, step: float = 0.2,
                        reoptimize_primary: bool = False, confirmed: bool = False
                        ) -> int | None:
        """Compute the Δχ² map of the secondary (px around it); one estimated to take
        longer than `MAP_CONFIRM_S` asks first (non-blocking dialog,
        ``chi2map_control.confirm_dialog``).  The job's id, or None."""
        return self.chi2map_control.request(half_width, step, reoptimize_primary, confirmed)

    def cancel(self):
        """Stop what runs (a Δχ² map, a search, a cold build).  The numbers must stay
        those of the offsets on screen: when the detection is loaded already, the
        pending refit runs again at once (milliseconds)."""
        self.controller.cancel()
        self.chi2map_control.stopped()
        self.progress_bar.hide()
        if self.chi2map_view.chi2map is None:     # a first map cancelled: no empty plot
            self.menus.show_map_action(False)
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
        self.edits.set_offsets(offsets, mode, text)

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
        self.opener.fitted(result.request_id)   # only detections that fitted are recent
        self._take_fit(result, first_of_detection)
        fit = result.fit
        self.placeholder.hide()
        if not result.preview:   # a drag's refit: the list's columns wait for its end
            self.browser.set_fit(fit, result.diagnostics)   # may select the detection
        self.browser.set_dropped(result.dropped)
        if self.selected_index is None or self.selected_index >= len(fit.scene.exposures):
            self.selected_index = fit.scene.detection_index
        self._update_panels()
        self.results_table.set_summary(result.summary)
        s = result.summary
        self.fit_label.setText(f"χ²/dof = {s.chi2:.1f}/{s.dof}  "
                               f"fit {1000 * result.elapsed_s:.0f} ms")
        self.session_files.apply_pending_view()
        self._show_staleness()
        self.fits_displayed += 1
        self.fitDisplayed.emit(result)

    def _take_fit(self, result: FitResult, first_of_detection: bool):
        """The model learns which fit is shown; a search's result becomes the offsets."""
        job = result.request
        fitted = TargetOffsets.from_published(result.summary.offsets)
        self.model.show_fit(job.fit, fitted)
        if not job.fit.optimize and not first_of_detection:   # not the cold one
            self.chi2map_control.refit_seconds = result.fit_s
        if job.fit.optimize and job.fit.mode == self.mode:
            swapped = result.summary.swapped_from_start
            if swapped:     # the selection follows the component, not its number
                self.markers.select(1 - self.markers.selected_index)
            self.model.move(search_edit_text(swapped), fitted)
            self.statusBar().showMessage(search_message(
                result.elapsed_s, result.fit.n_chi2_evaluations, swapped),
                15000 if swapped else 5000)
        elif first_of_detection or self.opener.mode_note:    # (reopened: the same scene)
            note, self.opener.mode_note = self.opener.mode_note, ""
            name = self.manifest.name if self.manifest else ""
            self.statusBar().showMessage(f"{name}: fitted" + (f"; {note}" if note else ""),
                                         15000 if note else 5000)

    def select_exposure(self, index: int):
        """Show exposure ``index`` (of the fit's exposures) in the panels."""
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
            self.panels_view.set_sky_extent(self.sky_geometry.sky_extent(fit.scene))
        self.panels_view.set_panels(panels, exposure.pixel_to_sky)
        self.panels_view.set_overlays(self.sky_geometry.overlays(
            exposure, fit.settings, self.manifest.ra, self.manifest.dec, self.result.overlays))
        self.markers.set_visible(index == fit.scene.detection_index)
        self.place_markers()
        self._show_frame_notice()

    def _show_frame_notice(self):
        pv = self.panels_view
        unaligned = pv.sky_aligned and pv.panels is not None and not pv.is_sky_frame
        self.frame_notice.setText(
            f"exposure {pv.panels.expnum}: its WCS cannot be inverted at the target; "
            "drawn in CCD axes, not sky-aligned" if unaligned else "")
        self.chi2map_control.update_frame()    # the map shares the frame, or says why not

    def set_sky_aligned(self, on: bool):
        """Draw the exposures north up, east left (View menu, A: aligned to the sky; N is
        the survey view's next detection) or in stamp coordinates."""
        if on and self.result is not None:
            self.panels_view.set_sky_extent(
                self.sky_geometry.sky_extent(self.result.fit.scene))
        self.panels_view.set_sky_aligned(on)
        self._show_frame_notice()

    def place_markers(self):
        """Markers where the offsets on screen put the fitted sources (`fitted_markers`),
        on the detection exposure only."""
        if self.result is None:
            return
        fit = self.result.fit
        current = self.offsets[self.mode]
        if len(fit.sources) != (1 if self.mode == "single" else 2):
            self.markers.set_positions([])
            return
        positions, ellipses = fitted_markers(fit, current)
        if not self.edits.dragging:
            self.markers.set_positions(positions)
        self.markers.set_visible(self.selected_index == fit.scene.detection_index)
        self.markers.set_ellipses(ellipses)
        if self.chi2map_view.chi2map is not None and self.mode == "binary":
            self.chi2map_view.set_components(component_offset(current, 0),
                                             component_offset(current, 1))

    # -- errors and shutdown ------------------------------------------------------------

    def show_error(self, title: str, error: BaseException, context: str | None = None,
                   details: str | None = None) -> QMessageBox:
        """An error dialog (kept as ``error_dialog``) and its line in the status bar;
        emits ``errorShown``."""
        self.error_dialog = dialogs.show_error(self, title, error, context, details)
        subject, problem = dialogs.describe_error(error, context)
        line = f"{title}: {subject}: {problem}" if subject else f"{title}: {problem}"
        self.statusBar().showMessage(line, 10000)
        self.errorShown.emit(self.error_dialog)
        return self.error_dialog

    def _on_failed(self, failure: JobFailure):
        job = failure.request
        if isinstance(job, FitJob):
            # A new detection or new settings that cannot be fitted: back to what is
            # shown (the worker kept that detection's model, so it keeps working).
            self.opener.failed(job.request_id)
        else:
            self.chi2map_control.stopped()
        title = ("Fit failed" if isinstance(job, FitJob) else "Δχ² map failed")
        details = None if isinstance(failure.error, SMPError) else failure.traceback
        self.show_error(title, failure.error, context=job.manifest_path, details=details)

    def resizeEvent(self, event):
        """The side docks keep at most their share of the width (`smp_gui.inspector.layout`):
        the room of a larger window goes to the stamps."""
        super().resizeEvent(event)
        if 0 < event.oldSize().width() != event.size().width():
            self.layout_keeper.resized()

    def showEvent(self, event):
        super().showEvent(event)
        if not event.spontaneous():
            self.layout_keeper.first_shown()

    def closeEvent(self, event):
        self.layout_keeper.save()
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self):
        """Finish the exports being written, stop the worker thread and leave the SAMP
        hub (idempotent)."""
        self.exporter.finish()
        self.controller.shutdown()
        self.samp.shutdown()
