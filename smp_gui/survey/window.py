"""The survey view: a `smp batch` output as a table of detections with linked plots, the
failures, review marks, and the inspector one keystroke away.

Keys (menu Detection): Enter / double click opens the current detection in the inspector
with the batch's settings, fit kind and fitted offsets; N / P step to the next / previous
detection of the filtered, sorted table (in the inspector too, when it is open); G / B / C
mark good, bad, binary candidate, U clears the mark, E edits the note (Alt+G, Alt+B,
Alt+C, Alt+U, Alt+N also in the inspector, whose plain G, B, C are its own).  Ctrl+F focuses the filter.

Marks are saved at once in the review sidecar (`smp_model.survey.review.ReviewSidecar`); the batch
output is only read.  While a detection is shown, its neighbours in the table are built
ahead in child processes (`smp_gui.loader.prefetched`) so that stepping shows them at once.
"""
from __future__ import annotations

from pathlib import Path

from PyQt6.QtCore import QEvent, QItemSelection, QItemSelectionModel, QSettings, Qt, pyqtSignal
from PyQt6.QtGui import QAction, QKeySequence, QShortcut
from PyQt6.QtWidgets import (QAbstractItemView, QFileDialog, QHBoxLayout, QHeaderView,
                             QInputDialog, QLabel, QLineEdit, QMainWindow, QMessageBox,
                             QSplitter, QTableView, QTableWidget, QTableWidgetItem, QTabWidget,
                             QVBoxLayout, QWidget)

from smp_model.errors import SMPError
from smp_model.outputs.samp import SEND_TARGETS
from smp_model.survey.core import Survey
from smp_model.survey.filters import FilterError
from smp_model.survey.review import MARKS

from .. import loader
from ..dialogs import TABLE_FILTER, dropped_local_file
from .plots import SurveyPlots
from .sending import SurveySamp
from .table_model import SurveyTableModel

__all__ = ["FILTER_EXAMPLES", "PREFETCH_NEIGHBOURS", "SurveyWindow"]

PREFETCH_NEIGHBOURS = 1   # detections built ahead on each side of the current one
_BAD_FILTER_STYLE = "QLineEdit { border: 2px solid #c00; }"
FILTER_EXAMPLES = ("chi2_dof > 1.5", "flags & exposure_dropped != 0", "flags != 0",
                   "binary_delta_chi2 > 25", 'name == "rotator"', 'mark == "bad"')


class SurveyWindow(QMainWindow):
    """Signals: surveyOpened(Survey); currentChanged(key); inspectorOpened(key) when a
    detection was sent to the inspector; marked(key, mark)."""

    surveyOpened = pyqtSignal(object)
    currentChanged = pyqtSignal(str)
    inspectorOpened = pyqtSignal(str)
    marked = pyqtSignal(str, str)

    def __init__(self, settings_store: QSettings | None = None, inspector=None,
                 inspector_factory=None):
        """``inspector``: the five-panel window to browse in (default: one made on first
        use by ``inspector_factory()``, and closed with this window; without a factory,
        detections cannot be opened).  `smp_gui.windows.WindowManager` gives both."""
        super().__init__()
        self.setWindowTitle("SMP Inspector — survey")
        self.setAcceptDrops(True)
        self.store = settings_store or QSettings("smp-inspector", "SMP Inspector")
        self.survey: Survey | None = None
        self.model: SurveyTableModel | None = None
        self._applied_filter = ""     # the filter the table shows
        self.plots: SurveyPlots | None = None
        self.inspector = inspector   # the five-panel InspectorWindow
        self._owns_inspector = inspector is None
        self._inspector_factory = inspector_factory
        self.error_dialog: QMessageBox | None = None
        self._build_widgets()
        self.samp = SurveySamp(self)
        self._build_menus()
        self.resize(1500, 850)

    # -- construction -------------------------------------------------------------------

    def _build_widgets(self):
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("filter, e.g. " + "   ".join(FILTER_EXAMPLES[:4]))
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.returnPressed.connect(self.apply_filter)
        self.count_label = QLabel("")
        self.filter_error = QLabel("")
        self.filter_error.setStyleSheet("color: #b00;")
        self.filter_error.setWordWrap(True)
        self.filter_error.hide()
        self.table = QTableView()
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setSortingEnabled(True)
        self.table.setAlternatingRowColors(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.Interactive)
        self.table.doubleClicked.connect(lambda _: self.open_in_inspector())
        self.table.installEventFilter(self)
        self.failures = QTableWidget(0, 4)
        self.failures.setHorizontalHeaderLabels(["key", "input", "error", "message"])
        self.failures.horizontalHeader().setStretchLastSection(True)
        self.failures.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)

        left = QWidget()
        layout = QVBoxLayout(left)
        row = QHBoxLayout()
        row.addWidget(QLabel("Filter:"))
        row.addWidget(self.filter_edit, 1)
        row.addWidget(self.count_label)
        layout.addLayout(row)
        layout.addWidget(self.filter_error)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.table, "Detections")
        self.tabs.addTab(self.failures, "Failures")
        layout.addWidget(self.tabs, 1)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.placeholder = QLabel("Open a batch output (File > Open batch…), e.g. the "
                                  "fluxes.ecsv written by smp batch.")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.splitter.addWidget(self.placeholder)
        self.setCentralWidget(self.splitter)
        self.info_label = QLabel("")
        self.statusBar().addPermanentWidget(self.info_label)

    def _action(self, menu, text, slot, shortcut=None, application_wide=False) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
            if application_wide:   # also while the inspector window has the focus
                action.setShortcutContext(Qt.ShortcutContext.ApplicationShortcut)
        action.triggered.connect(lambda _=False: slot())
        menu.addAction(action)
        return action

    def _application_shortcut(self, key: str, slot) -> QShortcut:
        shortcut = QShortcut(QKeySequence(key), self)
        shortcut.setContext(Qt.ShortcutContext.ApplicationShortcut)
        shortcut.activated.connect(slot)
        return shortcut

    def _build_menus(self):
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self._action(file_menu, "&Open batch…", self.open_dialog,
                     QKeySequence.StandardKey.Open)
        self.export_action = self._action(file_menu, "&Export curated table…",
                                          lambda: self.export_curated(), "Ctrl+Shift+E")
        self.export_filtered_action = self._action(
            file_menu, "Export &filtered rows…", lambda: self.export_curated(filtered=True))
        send = file_menu.addMenu("Sen&d to")
        for name in SEND_TARGETS:   # the filtered rows, over SAMP
            self._action(send, name, lambda n=name: self.samp.send_to(n))
        file_menu.addSeparator()
        self._action(file_menu, "&Close", self.close, QKeySequence.StandardKey.Close)

        det = bar.addMenu("&Detection")
        self.open_action = self._action(det, "&Open in inspector\tEnter",
                                        self.open_in_inspector)
        self.next_action = self._action(det, "&Next detection", lambda: self.step(1), "N",
                                        application_wide=True)
        self.previous_action = self._action(det, "&Previous detection",
                                            lambda: self.step(-1), "P",
                                            application_wide=True)
        det.addSeparator()
        # Plain letters here; with Alt also in the inspector, whose own letters (G regions,
        # B blink, C crosshair, Shift+B) would make them ambiguous there.
        self.mark_actions = {}
        for mark, text, key in (("good", "Mark &good", "G"), ("bad", "Mark &bad", "B"),
                                ("binary", "Mark binary &candidate", "C"),
                                ("", "&Clear mark", "U")):
            self.mark_actions[mark] = self._action(
                det, f"{text}\t{key}, Alt+{key}", lambda m=mark: self.mark_current(m),
                key)
            self._application_shortcut(f"Alt+{key}", lambda m=mark: self.mark_current(m))
        self.note_action = self._action(det, "Edit &note…\tE, Alt+N", self.edit_note, "E")
        self._application_shortcut("Alt+N", self.edit_note)
        det.addSeparator()
        self.save_reviewed_action = self._action(
            det, "&Save inspector fit as reviewed result", self.save_reviewed, "Ctrl+R",
            application_wide=True)
        view = bar.addMenu("&View")
        self._action(view, "&Filter…", self.focus_filter, QKeySequence.StandardKey.Find)
        self._action(view, "&Clear filter", lambda: self.set_filter(""))

    # -- opening --------------------------------------------------------------------------

    def open_dialog(self):
        path, _ = QFileDialog.getOpenFileName(self, "Open a batch output", str(Path.cwd()),
                                              f"Batch outputs ({TABLE_FILTER})")
        if path:
            self.open_survey(path)

    def dragEnterEvent(self, event):
        if dropped_local_file(event):
            event.acceptProposedAction()

    def dropEvent(self, event):
        path = dropped_local_file(event)
        if path:
            event.acceptProposedAction()
            self.open_survey(path)

    def open_survey(self, path: str | Path) -> bool:
        """Read a batch output (errors: a dialog, nothing changes) and show it."""
        try:
            survey = Survey.open(path)
        except (SMPError, OSError, ValueError) as exc:
            self.show_error("Cannot open batch output", exc)
            return False
        self.survey = survey
        self.model = SurveyTableModel(survey, self)
        self.table.setModel(self.model)
        self.table.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.table.selectionModel().currentRowChanged.connect(self._on_current_row)
        self.table.selectionModel().selectionChanged.connect(
            lambda *_: self._update_plot_selection())
        self.model.orderChanged.connect(self._on_order_changed)
        old, self.plots = self.plots, SurveyPlots(survey)
        self.plots.pointClicked.connect(self.select_index)
        self.plots.binClicked.connect(self.select_indices)
        self.splitter.replaceWidget(1, self.plots)
        if old is not None:
            old.deleteLater()
        self.placeholder.hide()
        self.splitter.setSizes([850, 650])
        self._fill_failures()
        widths = {"key": 150, "flags_text": 150, "mjd": 90, "name": 70, "band": 45}
        for column, name in enumerate(self.model.columns):
            self.table.setColumnWidth(column, widths.get(name, 75))
        self.setWindowTitle(f"SMP Inspector — survey {survey.path.name} ({survey.path})")
        self._on_order_changed()
        if len(survey):
            self.table.selectRow(0)
        notes = "; ".join(survey.notes)
        self.statusBar().showMessage(
            f"{len(survey)} detections, {0 if survey.failures is None else len(survey.failures)}"
            f" failures" + (f"; {notes}" if notes else ""), 15000)
        self.surveyOpened.emit(survey)
        return True

    def _fill_failures(self):
        failures = self.survey.failures
        n = 0 if failures is None else len(failures)
        self.failures.setRowCount(n)
        for r in range(n):
            row = failures[r]
            for c, name in enumerate(("key", "input", "error_type", "message")):
                value = str(row[name]) if name in failures.colnames else ""
                self.failures.setItem(r, c, QTableWidgetItem(value))
        self.tabs.setTabText(1, f"Failures ({n})")

    # -- filter and selection ---------------------------------------------------------

    def focus_filter(self):
        self.filter_edit.setFocus()
        self.filter_edit.selectAll()

    def apply_filter(self):
        self.set_filter(self.filter_edit.text())

    def set_filter(self, expression: str) -> bool:
        """Show the detections matching ``expression``.  A bad expression is shown where
        it was typed (red border, the problem under it) and the table keeps the rows of
        the filter before, which the count beside the filter names."""
        if self.model is None:
            return False
        if self.filter_edit.text() != expression:
            self.filter_edit.setText(expression)
        current = self.current_index()
        try:
            self.model.set_filter(expression)
        except FilterError as exc:
            self._show_filter_problem(expression, str(exc))
            return False
        self._applied_filter = expression.strip()
        self._show_filter_problem(None)
        if current is not None and self.model.row_of(current) is not None:
            self.select_index(current)
        elif self.model.rowCount():
            self.table.selectRow(0)
        return True

    def _show_filter_problem(self, expression: str | None, problem: str = ""):
        """``problem`` of filter ``expression`` where it was typed; None: no problem."""
        bad = expression is not None
        self.filter_error.setText(f"filter not applied: {problem}" if bad else "")
        self.filter_error.setVisible(bad)
        self.filter_edit.setStyleSheet(_BAD_FILTER_STYLE if bad else "")
        self.filter_edit.setToolTip(problem)
        self._update_count()

    def _update_count(self):
        if self.model is None:
            return
        n, total = self.model.rowCount(), len(self.survey)
        text = f"{n} of {total} detections"
        if self.filter_error.text():
            before = self._applied_filter
            text += f" (of the filter before: {before})" if before else " (no filter)"
        self.count_label.setText(text)

    def _on_order_changed(self):
        self._update_count()
        self.plots.set_order(self.model.order)
        self._update_plot_selection()

    def current_index(self) -> int | None:
        """Survey index of the current row (None when the table is empty)."""
        if self.model is None:
            return None
        row = self.table.currentIndex().row()
        if not 0 <= row < len(self.model.order):
            return None
        return int(self.model.order[row])

    def current_key(self) -> str | None:
        index = self.current_index()
        return None if index is None else str(self.survey.columns["key"][index])

    def select_index(self, survey_index: int) -> bool:
        """Make detection ``survey_index`` the current row (False when filtered out)."""
        row = self.model.row_of(survey_index)
        if row is None:
            return False
        self.table.selectRow(row)
        self.table.scrollTo(self.model.index(row, 0))
        return True

    def select_indices(self, survey_indices: list[int]) -> None:
        """Select the rows of these detections (those the filter shows); the first in
        table order becomes the current row."""
        rows = sorted(r for r in map(self.model.row_of, survey_indices) if r is not None)
        if not rows:
            return
        model = self.table.selectionModel()
        selection = QItemSelection()
        last = self.model.columnCount() - 1
        for r in rows:
            selection.select(self.model.index(r, 0), self.model.index(r, last))
        flags = QItemSelectionModel.SelectionFlag
        model.setCurrentIndex(self.model.index(rows[0], 0), flags.NoUpdate)
        model.select(selection, flags.ClearAndSelect | flags.Rows)
        self.table.scrollTo(self.model.index(rows[0], 0))

    def select_key(self, key: str) -> bool:
        return self.select_index(self.survey.index_of(key))

    def selected_indices(self) -> list[int]:
        rows = sorted({i.row() for i in self.table.selectionModel().selectedRows()})
        return [int(self.model.order[r]) for r in rows]

    def _on_current_row(self, *_):
        self._update_plot_selection()
        key = self.current_key()
        if key is not None:
            self.info_label.setText(self._describe(self.current_index()))
            self.currentChanged.emit(key)

    def _update_plot_selection(self):
        if self.plots is not None and self.model is not None:
            self.plots.set_current(self.current_index(), self.selected_indices())

    def _describe(self, i: int) -> str:
        c = self.survey.columns
        mark = f"  [{c['mark'][i]}]" if c["mark"][i] else ""
        return (f"{c['key'][i]}: {c['fit_kind'][i]}, mag {c['mag'][i]:.3f} ± "
                f"{c['mag_err'][i]:.3f}, χ²/dof {c['chi2_dof'][i]:.2f}{mark}")

    def eventFilter(self, obj, event):
        if obj is self.table and event.type() == QEvent.Type.KeyPress \
                and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.open_in_inspector()
            return True
        return super().eventFilter(obj, event)

    # -- browsing in the inspector ------------------------------------------------------

    def ensure_inspector(self):
        """The inspector to browse in, made when there is none (or it was closed); None
        when this window was given no way to make one."""
        if self.inspector is not None and not \
                self.inspector.controller.worker_thread.isRunning():
            self.inspector = None   # closed by the user: its worker is gone
        if self.inspector is None and self._inspector_factory is not None:
            self._owns_inspector = True
            self.inspector = self._inspector_factory()
        return self.inspector

    def open_in_inspector(self, key: str | None = None) -> bool:
        """Show detection ``key`` (default: the current row) in the five-panel inspector
        with the batch's settings, fit kind and fitted offsets; build its neighbours
        ahead."""
        if self.survey is None:
            return False
        key = key or self.current_key()
        if key is None:
            return False
        try:
            spec = self.survey.open_spec(key)
        except SMPError as exc:
            self.show_error("Cannot open detection", exc)
            return False
        inspector = self.ensure_inspector()
        if inspector is None:
            self.statusBar().showMessage("this survey window has no inspector", 5000)
            return False
        if not inspector.isVisible():
            inspector.show()
        if not inspector.open_detection(spec.manifest, settings=spec.settings,
                                        mode=spec.mode, offsets=spec.offsets,
                                        search=spec.searched):
            return False
        inspector.setWindowTitle(f"SMP Inspector — {key} (survey {self.survey.path.name})")
        self.prefetch_neighbours()
        self.inspectorOpened.emit(key)
        return True

    def prefetch_neighbours(self, count: int | None = None):
        """Build the ``count`` (default `PREFETCH_NEIGHBOURS`) detections before and after
        the current row ahead, in child processes."""
        from .. import controller
        count = PREFETCH_NEIGHBOURS if count is None else count
        row = self.table.currentIndex().row()
        if row < 0 or not (controller.BUILD_IN_CHILD_PROCESS and loader.available()):
            return   # builds in this process would compete with the window for the GIL
        for step in [s for k in range(1, count + 1) for s in (k, -k)]:
            other = row + step
            if 0 <= other < self.model.rowCount():
                try:
                    spec = self.survey.open_spec(self.model.key_at(other))
                except SMPError:
                    continue
                loader.prefetched.prefetch(spec.manifest, spec.settings)

    def step(self, delta: int) -> bool:
        """Go to the next (+1) or previous (-1) detection of the table; in the inspector
        too when it is open."""
        if self.model is None or not self.model.rowCount():
            return False
        row = self.table.currentIndex().row()
        new = min(max(row + delta, 0), self.model.rowCount() - 1)
        if new == row:
            self.statusBar().showMessage("last detection" if delta > 0
                                         else "first detection", 3000)
            return False
        self.table.selectRow(new)
        self.table.scrollTo(self.model.index(new, 0))
        if self.inspector is not None and self.inspector.isVisible():
            return self.open_in_inspector()
        return True

    # -- curation -------------------------------------------------------------------------

    def mark_current(self, mark: str) -> bool:
        """Mark the selected detections (good, bad, binary or "" to clear); saved at once
        in the sidecar."""
        if self.survey is None:
            return False
        indices = self.selected_indices() or [self.current_index()]
        indices = [i for i in indices if i is not None]
        if not indices:
            return False
        if mark and mark not in MARKS:
            raise ValueError(mark)
        try:
            for i in indices:
                key = str(self.survey.columns["key"][i])
                self.survey.set_mark(key, mark=mark)
                self.model.refresh_rows(i)
                self.marked.emit(key, mark)
        except (SMPError, OSError) as exc:
            self.show_error("Cannot save the review", exc)
            return False
        self.statusBar().showMessage(
            f"{len(indices)} detection(s) marked {mark or 'unmarked'} "
            f"(saved in {self.survey.review.path.name})", 5000)
        self._on_current_row()
        return True

    def edit_note(self, text: str | None = None) -> bool:
        key = self.current_key()
        if key is None:
            return False
        if text is None:
            old = str(self.survey.columns["note"][self.current_index()])
            text, ok = QInputDialog.getText(self, "Note", f"Note for {key}:", text=old)
            if not ok:
                return False
        try:
            self.survey.set_mark(key, note=text)
        except (SMPError, OSError) as exc:
            self.show_error("Cannot save the review", exc)
            return False
        self.model.refresh_rows(self.current_index())
        return True

    def save_reviewed(self) -> bool:
        """Keep the inspector's current fit of the current detection (e.g. after moving a
        secondary) as its reviewed result in the sidecar, with its request."""
        key = self.current_key()
        inspector = self.inspector
        if key is None or inspector is None or inspector.result is None:
            self.statusBar().showMessage("open the detection in the inspector first", 5000)
            return False
        spec = self.survey.open_spec(key)
        shown = Path(inspector.result.request.manifest_path).resolve()
        if shown != spec.manifest.resolve():
            self.statusBar().showMessage(f"the inspector shows another detection ({shown})",
                                         5000)
            return False
        from smp_model.outputs.tables import fit_table
        fit = inspector.result.fit
        request = getattr(fit, "request", None)
        try:
            self.survey.review.set_reviewed(key, fit_table(fit),
                                            request.as_meta() if request else None)
            self.survey.review.save()
        except (SMPError, OSError) as exc:
            self.show_error("Cannot save the review", exc)
            return False
        self.statusBar().showMessage(f"{key}: reviewed {fit.kind} fit saved in "
                                     f"{self.survey.review.path.name}", 5000)
        return True

    def export_curated(self, path: str | Path | None = None, filtered: bool = False
                       ) -> Path | None:
        """Write the batch rows with the marks joined (all, or the filtered ones)."""
        if self.survey is None:
            return None
        overwrite = False
        if path is None:
            suggestion = self.survey.path.with_name(self.survey.path.stem + ".curated.ecsv")
            path, _ = QFileDialog.getSaveFileName(self, "Export the curated table",
                                                  str(suggestion),
                                                  f"Tables ({TABLE_FILTER})")
            if not path:
                return None
            overwrite = Path(path).exists()   # the dialog asked already
        keys = None
        if filtered:
            keys = [self.model.key_at(r) for r in range(self.model.rowCount())]
        try:
            written = self.survey.export_curated(path, keys, overwrite=overwrite)
        except (SMPError, OSError, ValueError) as exc:
            self.show_error("Cannot export", exc)
            return None
        self.statusBar().showMessage(f"wrote {written}", 5000)
        return written

    # -- errors and shutdown -----------------------------------------------------------

    def show_error(self, title: str, error: BaseException) -> QMessageBox:
        text = error.one_line() if isinstance(error, SMPError) else \
            " ".join(str(error).split())
        self.statusBar().showMessage(text, 10000)
        box = QMessageBox(QMessageBox.Icon.Warning, title, text, parent=self)
        box.setModal(False)
        box.show()
        self.error_dialog = box
        return box

    def closeEvent(self, event):
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self):
        loader.prefetched.clear()
        self.samp.shutdown()
        if self.inspector is not None and self._owns_inspector:
            self.inspector.shutdown()
            self.inspector.close()
