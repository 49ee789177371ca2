"""The survey view driven as a user would (pytest-qt): open a batch output through the
File menu, filter by typing, sort by clicking headers, mark with the keyboard, click plot
points, open detections in the inspector with Enter and step with N, export through the
menu; every number compared with the batch output or the sidecar on disk."""
from __future__ import annotations

import shutil
import subprocess
import sys
import time

import numpy as np
import pyqtgraph as pg
import pytest
from astropy.table import Table
from PyQt6.QtCore import QEvent, QPoint, QPointF, QSettings, Qt
from PyQt6.QtGui import QMouseEvent
from PyQt6.QtWidgets import QApplication, QFileDialog, QInputDialog

from smp_gui import loader
from smp_gui.windows import WindowManager
from smp_model.outputs.tables import read_flux_table
from smp_model.outputs.votable import write_votable
from smp_model.survey.core import Survey

pytestmark = pytest.mark.gui
pg.setConfigOption("mouseRateLimit", -1)
FIT_TIMEOUT_MS = 90_000


@pytest.fixture
def batch(tiny_survey, tmp_path):
    """A private copy of the tiny survey's batch output (marks write a sidecar next to
    it); the input paths in it are absolute, so the copy opens the same detections."""
    _, out, truth = tiny_survey
    copy = tmp_path / "fluxes.ecsv"
    shutil.copy(out, copy)
    return copy, truth


@pytest.fixture
def window(qapp, tmp_path):
    store = QSettings(str(tmp_path / "smp.ini"), QSettings.Format.IniFormat)
    w = WindowManager(store).new_survey()
    w.show()
    yield w
    w.shutdown()
    w.close()
    w.deleteLater()


def open_by_menu(qtbot, window, path, monkeypatch):
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        staticmethod(lambda *a, **k: (str(path), "")))
    with qtbot.waitSignal(window.surveyOpened, timeout=10_000):
        menu_action(window, "&File", "&Open batch…").trigger()


def menu_action(window, menu_title: str, text: str):
    for action in window.menuBar().actions():
        if action.text() == menu_title:
            for item in action.menu().actions():
                if item.text().split("\t")[0] == text:
                    return item
    raise AssertionError(f"no menu item {menu_title} > {text}")


def table_keys(window) -> list[str]:
    return [window.model.key_at(r) for r in range(window.model.rowCount())]


def type_filter(qtbot, window, text: str):
    window.filter_edit.clear()
    qtbot.keyClicks(window.filter_edit, text)
    qtbot.keyClick(window.filter_edit, Qt.Key.Key_Return)


def click_header(qtbot, window, column: str):
    header = window.table.horizontalHeader()
    section = window.model.columns.index(column)
    window.table.scrollTo(window.model.index(0, section))
    x = header.sectionViewportPosition(section) + header.sectionSize(section) // 2
    qtbot.mouseClick(header.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(x, 5))


def text(column) -> list[str]:
    """A text column as read back (ECSV reads empty text as masked)."""
    return np.ma.filled(np.ma.asarray(column), "").astype(str).tolist()


def press(qtbot, widget, key):
    qtbot.keyClick(widget, key)
    qtbot.wait(10)


def test_open_filter_sort(qtbot, window, batch, monkeypatch):
    path, truth = batch
    Table(rows=[("lost_1_1", 11, "/gone/detection.toml", "ManifestError",
                 "/gone/detection.toml: manifest not found")],
          names=("key", "row", "input", "error_type", "message")).write(
        path.with_name("fluxes.failures.ecsv"))
    open_by_menu(qtbot, window, path, monkeypatch)
    survey = Survey.open(path)
    assert window.tabs.tabText(1) == "Failures (1)"
    assert [window.failures.item(0, c).text() for c in range(4)] == [
        "lost_1_1", "/gone/detection.toml", "ManifestError",
        "/gone/detection.toml: manifest not found"]
    assert window.model.rowCount() == 10 == len(truth)
    assert window.count_label.text() == "10 of 10 detections"
    # the binary under a delta chi2 filter, the flagged exposure under a flags filter
    type_filter(qtbot, window, "binary_delta_chi2 > 25")
    binaries = table_keys(window)
    assert binaries and all(k.startswith("binary_") for k in binaries)
    assert window.count_label.text() == f"{len(binaries)} of 10 detections"
    type_filter(qtbot, window, "flags & exposure_dropped != 0")
    assert table_keys(window) == list(truth["key"][truth["flagged_exposure"]])
    # a bad expression is explained and changes nothing
    type_filter(qtbot, window, "chi2_dof >")
    assert "expected a column" in window.filter_error.text()
    assert window.model.rowCount() == 1
    type_filter(qtbot, window, 'name == "rotator" or name == "flagged"')
    assert window.filter_error.text() == "" and window.model.rowCount() == 8
    # header clicks sort (ascending, then descending) within the filter
    click_header(qtbot, window, "mag")
    mags = [survey.columns["mag"][survey.index_of(k)] for k in table_keys(window)]
    assert mags == sorted(mags)
    click_header(qtbot, window, "mag")
    mags = [survey.columns["mag"][survey.index_of(k)] for k in table_keys(window)]
    assert mags == sorted(mags, reverse=True)
    # the plots show the filtered rows
    window.plots.tabBar().setCurrentIndex(2)
    assert len(window.plots.scatter.data) == 8
    window.plots.tabBar().setCurrentIndex(1)
    counts = [i for i in window.plots.hist_plots["chi2_dof"].items
              if isinstance(i, pg.PlotCurveItem)][0].getData()[1]
    assert counts.sum() == 8
    menu_action(window, "&View", "&Clear filter").trigger()
    assert window.model.rowCount() == 10


def test_open_dialog_offers_and_opens_a_votable_output(qtbot, window, batch, monkeypatch):
    """`smp batch --out x.vot` writes a VOTable: File > Open batch offers it and opens it
    with the same rows as the ECSV output."""
    path, _ = batch
    vot = write_votable(read_flux_table(path), path.with_suffix(".vot"))
    offered = []

    def choose(parent, caption, folder, filters):
        offered.append(filters)
        return str(vot), ""
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(choose))
    with qtbot.waitSignal(window.surveyOpened, timeout=10_000):
        menu_action(window, "&File", "&Open batch…").trigger()
    assert "*.vot" in offered[0] and "*.xml" in offered[0]
    assert table_keys(window) == list(dict.fromkeys(read_flux_table(path)["key"]))


def test_marks_notes_and_export_by_keyboard_and_menu(qtbot, window, batch, monkeypatch,
                                                     tmp_path):
    path, _ = batch
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    open_by_menu(qtbot, window, path, monkeypatch)
    window.table.setFocus()
    window.table.selectRow(0)
    keys = table_keys(window)
    press(qtbot, window.table, Qt.Key.Key_G)
    press(qtbot, window.table, Qt.Key.Key_N)
    assert window.current_key() == keys[1]
    press(qtbot, window.table, Qt.Key.Key_B)
    press(qtbot, window.table, Qt.Key.Key_N)
    press(qtbot, window.table, Qt.Key.Key_C)
    press(qtbot, window.table, Qt.Key.Key_P)
    assert window.current_key() == keys[1]
    monkeypatch.setattr(QInputDialog, "getText",
                        staticmethod(lambda *a, **k: ("faint wing of a star", True)))
    press(qtbot, window.table, Qt.Key.Key_E)
    press(qtbot, window.table, Qt.Key.Key_N)
    press(qtbot, window.table, Qt.Key.Key_U)     # clears the binary candidate
    sidecar = Table.read(path.with_name("fluxes.review.ecsv"))
    marks = dict(zip(sidecar["key"], text(sidecar["mark"])))
    assert marks == {keys[0]: "good", keys[1]: "bad"}
    notes = dict(zip(sidecar["key"], text(sidecar["note"])))
    assert notes[keys[1]] == "faint wing of a star"
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
    # the marks are in the table (and filterable)
    type_filter(qtbot, window, 'mark == "bad"')
    assert table_keys(window) == [keys[1]]
    # export through the menu: the batch rows with the marks joined
    out = tmp_path / "curated.fits"
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: (str(out), "")))
    menu_action(window, "&File", "&Export curated table…").trigger()
    curated = Table.read(out)
    batch_rows = Table.read(path)
    assert len(curated) == len(batch_rows)
    got = dict(zip(np.asarray(curated["key"]).astype(str),
                   np.asarray(curated["mark"]).astype(str)))
    assert got[keys[0]] == "good" and got[keys[1]] == "bad" and got[keys[2]] == ""
    assert np.asarray(curated["flux"]) == pytest.approx(np.asarray(batch_rows["flux"]))


def double_click(widget, pos: QPoint):
    """What a double click delivers: press, release, double-click, release.
    (qtbot.mouseDClick after earlier simulated clicks is not always taken as one.)"""
    left, none = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton
    for kind, buttons in ((QEvent.Type.MouseButtonPress, left),
                          (QEvent.Type.MouseButtonRelease, none),
                          (QEvent.Type.MouseButtonDblClick, left),
                          (QEvent.Type.MouseButtonRelease, none)):
        QApplication.sendEvent(widget, QMouseEvent(
            kind, QPointF(pos), QPointF(widget.mapToGlobal(pos)), left, buttons,
            Qt.KeyboardModifier.NoModifier))


def _click_plot_point(qtbot, plot_widget, x: float, y: float):
    _click_view_point(qtbot, plot_widget, plot_widget.getPlotItem(), x, y)


def test_plots_and_table_select_each_other(qtbot, window, batch, monkeypatch):
    path, truth = batch
    open_by_menu(qtbot, window, path, monkeypatch)
    survey = window.survey
    plots = window.plots
    # a row selects its object's light curve (MJD and magnitude of the batch)
    rotator = [k for k in table_keys(window) if k.startswith("rotator_")]
    window.select_key(rotator[2])
    assert plots.object_combo.currentText() == "rotator"
    points = np.concatenate([item.getData()[1] for item in plots.lc_items])
    assert sorted(points) == pytest.approx(sorted(
        survey.columns["mag"][survey.columns["name"] == "rotator"]))
    i = survey.index_of(rotator[2])
    hx, hy = plots.lc_highlight.getData()
    assert (hx.tolist(), hy.tolist()) == ([survey.columns["mjd"][i]], [survey.columns["mag"][i]])
    # folding at the period puts MJDs on a phase axis in [0, 1)
    plots.fold.setChecked(True)
    plots.period.setValue(7.3)
    x = np.concatenate([item.getData()[0] for item in plots.lc_items])
    assert x.min() >= 0 and x.max() < 1
    # clicking a point of the scatter selects its row
    plots.setCurrentIndex(2)
    plots.x_combo.setCurrentText("mjd")
    plots.y_combo.setCurrentText("mag")
    plots.scatter_plot.getPlotItem().getViewBox().autoRange()
    qtbot.wait(50)
    target = survey.index_of(rotator[4])
    _click_plot_point(qtbot, plots.scatter_plot, survey.columns["mjd"][target],
                      survey.columns["mag"][target])
    qtbot.waitUntil(lambda: window.current_key() == rotator[4], timeout=3000)
    sx, sy = plots.scatter_highlight.getData()
    assert survey.columns["mjd"][target] in sx.tolist()
    # a multi-row selection is outlined in the scatter
    window.table.selectRow(0)
    window.table.selectionModel().select(
        window.model.index(1, 0), window.table.selectionModel().SelectionFlag.Select
        | window.table.selectionModel().SelectionFlag.Rows)
    sx, _ = plots.scatter_highlight.getData()
    assert len(set(sx.tolist())) == 2


def wait_shown(qtbot, inspector, manifest):
    qtbot.waitUntil(lambda: inspector.result is not None
                    and str(inspector.result.request.manifest_path) == str(manifest)
                    and not inspector.controller.busy, timeout=FIT_TIMEOUT_MS)
    qtbot.wait(50)


def test_enter_opens_the_inspector_and_n_steps_it(qtbot, window, batch, monkeypatch):
    path, _ = batch
    open_by_menu(qtbot, window, path, monkeypatch)
    survey = window.survey
    # browse the binaries: the filtered, sorted list
    type_filter(qtbot, window, 'name == "binary" or name == "flagged"')
    click_header(qtbot, window, "mjd")
    keys = table_keys(window)
    window.table.setFocus()
    window.table.selectRow(0)
    press(qtbot, window.table, Qt.Key.Key_Return)
    inspector = window.inspector
    assert inspector is not None and inspector.isVisible()
    spec = survey.open_spec(keys[0])
    wait_shown(qtbot, inspector, spec.manifest)
    _assert_shows_batch_fit(inspector, survey, keys[0])
    # N pressed in the inspector steps to the next detection of the table; the
    # neighbour was being built meanwhile
    qtbot.waitUntil(lambda: loader.prefetched.is_ready(
        survey.open_spec(keys[1]).manifest, survey.settings), timeout=FIT_TIMEOUT_MS)
    inspector.activateWindow()
    t0 = time.perf_counter()
    press(qtbot, inspector, Qt.Key.Key_N)
    wait_shown(qtbot, inspector, survey.open_spec(keys[1]).manifest)
    step_seconds = time.perf_counter() - t0
    assert window.current_key() == keys[1]
    _assert_shows_batch_fit(inspector, survey, keys[1])
    assert step_seconds < 2.0, step_seconds    # prefetched (cold builds take 1-3 s)
    # a refit saved as the reviewed result (Ctrl+R), with its request
    qtbot.keyClick(inspector, Qt.Key.Key_B, Qt.KeyboardModifier.AltModifier)
    qtbot.keyClick(inspector, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    sidecar = Table.read(path.with_name("fluxes.review.ecsv"))
    row = sidecar[sidecar["key"] == keys[1]][0]
    assert row["mark"] == "bad"
    assert row["reviewed_flux"] == pytest.approx(inspector.result.fit.flux)
    assert '"grid_size": 20' in row["reviewed_request"]
    # a double click on a row opens that detection too
    rect = window.table.visualRect(window.model.index(2, 0))
    double_click(window.table.viewport(), rect.center())
    wait_shown(qtbot, inspector, survey.open_spec(keys[2]).manifest)
    assert window.current_key() == keys[2]
    _assert_shows_batch_fit(inspector, survey, keys[2])


def _assert_shows_batch_fit(inspector, survey, key):
    rows = survey.source_rows(key)
    fit = inspector.result.fit
    assert fit.kind == rows["fit_kind"][0]
    assert inspector.settings == survey.settings
    # a searched fit is searched again from the batch's optimum: equal to the search's
    # tolerance (~1e-6 here, a thousandth of the errors)
    rel = 1e-5 if rows["positions"][0] == "searched" else 1e-6
    assert [s.flux for s in fit.sources] == pytest.approx(list(rows["flux"]), rel=rel)
    assert fit.chi2 == pytest.approx(rows["chi2"][0], rel=1e-6)
    # the batch's own fit: the same degrees of freedom and, when its positions were
    # searched, their errors (not a refit at fixed positions)
    assert fit.dof == rows["dof"][0]
    assert (fit.position_covariance is not None) == (rows["positions"][0] == "searched")
    for name in ("flux_err", "flux_err_total", "dx_err", "dy_err"):
        shown = [getattr(s, name) for s in fit.sources]
        assert shown == pytest.approx(list(rows[name]), rel=1e-3, nan_ok=True), name


def test_cli_screenshot_and_export_table(batch, tmp_path):
    """``smp-gui OUT --select KEY --export-table T`` writes the batch's rows of KEY (a
    single fit at fixed positions: every shared column equal)."""
    path, truth = batch
    key = str(truth["key"][truth["flagged_exposure"]][0])
    shot = tmp_path / "survey.png"
    table = tmp_path / "one.ecsv"
    run = subprocess.run([sys.executable, "-m", "smp_gui.app", str(path), "--filter",
                          "flags & 16 != 0", "--select", key, "--export-table",
                          str(table), "--screenshot", str(shot)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert shot.stat().st_size > 10_000
    exported, rows = Table.read(table), Table.read(path)
    rows = rows[rows["key"] == key]
    shared = [c for c in exported.colnames if c in rows.colnames]
    assert len(shared) >= 30 and len(exported) == len(rows) == 1
    for name in shared:
        a, b = np.asarray(exported[name]), np.asarray(rows[name])
        if a.dtype.kind == "f":
            assert a == pytest.approx(b, rel=1e-9, nan_ok=True), name
        else:
            assert a.tolist() == b.tolist(), name
    # a VOTable output opens in the survey view too (`smp batch --out x.vot`)
    vot = write_votable(read_flux_table(path), tmp_path / "fluxes.vot")
    bad = subprocess.run([sys.executable, "-m", "smp_gui.app", str(vot), "--select",
                          "nope", "--export-table", str(tmp_path / "two.ecsv")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "no detection 'nope'" in bad.stderr


def _drop(window, path):
    from PyQt6.QtCore import QMimeData, QUrl
    from PyQt6.QtGui import QDragEnterEvent, QDropEvent
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    where = QPointF(window.width() / 2, window.height() / 2)
    enter = QDragEnterEvent(where.toPoint(), Qt.DropAction.CopyAction, mime,
                            Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, enter)
    assert enter.isAccepted()
    QApplication.sendEvent(window, QDropEvent(where, Qt.DropAction.CopyAction, mime,
                                              Qt.MouseButton.LeftButton,
                                              Qt.KeyboardModifier.NoModifier))


def test_drop_a_batch_output_on_either_window(qtbot, window, batch, tmp_path):
    path, truth = batch
    with qtbot.waitSignal(window.surveyOpened, timeout=10_000):
        _drop(window, path)
    assert window.model.rowCount() == len(truth)
    # on the inspector: a survey window opens and browses in that inspector
    store = QSettings(str(tmp_path / "inspector.ini"), QSettings.Format.IniFormat)
    inspector = WindowManager(store).new_inspector()
    inspector.show()
    try:
        _drop(inspector, path)
        survey = inspector.survey_window
        assert survey is not None and survey.isVisible()
        assert survey.model.rowCount() == len(truth) and survey.inspector is inspector
        # a file that is not a batch output: an error, no survey window
        bad = tmp_path / "other.ecsv"
        Table({"a": [1]}).write(bad)
        assert not inspector.open_path(bad)
        assert "no 'key' column" in inspector.error_dialog.text()
        survey.close()
        assert inspector.controller.worker_thread.isRunning()   # not the survey's to stop
    finally:
        inspector.shutdown()
        inspector.close()


@pytest.mark.slow
def test_des_sample_batch_screenshot_and_export(des_sample, tmp_path):
    """The issue's check on the real sample: `smp batch` of the three detections, then
    `smp-gui fluxes.ecsv --screenshot` and `--select KEY --export-table` (= batch rows)."""
    from survey_helpers import threads_client

    from smp_model.batch.items import read_batch_list
    from smp_model.batch.run import run_batch
    listing = tmp_path / "detections.ecsv"
    Table({"manifest": [str(des_sample / n / "detection.toml")
                        for n in ("eris", "2014vv39", "2014lq28")]}).write(listing)
    out = tmp_path / "fluxes.ecsv"
    run_batch(read_batch_list(listing), out, client_factory=threads_client,
              list_path=listing)
    shot = tmp_path / "sample.png"
    assert subprocess.run([sys.executable, "-m", "smp_gui.app", str(out), "--screenshot",
                           str(shot)], timeout=300).returncode == 0
    assert shot.stat().st_size > 10_000
    rows = Table.read(out)
    for key in rows["key"]:
        table = tmp_path / f"{key}.ecsv"
        assert subprocess.run([sys.executable, "-m", "smp_gui.app", str(out), "--select",
                               key, "--export-table", str(table)],
                              timeout=300).returncode == 0
        exported, mine = Table.read(table), rows[rows["key"] == key]
        shared = [c for c in exported.colnames if c in mine.colnames]
        assert len(shared) >= 30
        for name in shared:
            a, b = np.asarray(exported[name]), np.asarray(mine[name])
            if a.dtype.kind == "f":
                assert a == pytest.approx(b, rel=1e-9, nan_ok=True), (key, name)
            else:
                assert a.tolist() == b.tolist(), (key, name)


def test_build_cache_keeps_hands_over_and_forgets(tiny_survey, tmp_path):
    """`loader.BuildCache`: a prefetched build is handed over (the same object, no second
    build), a failed one gives None (the worker then builds and reports), the oldest is
    dropped beyond ``max_items``."""
    from smp_model.settings import FitSettings
    folder, out, truth = tiny_survey
    manifests = sorted(folder.glob("*/*/detection.toml"))[:3]
    cache = loader.BuildCache(max_items=2)
    settings = FitSettings()

    def never_cancel():
        pass
    try:
        cache.prefetch(manifests[0], settings)
        built = cache.take(manifests[0], settings, never_cancel)
        assert built.manifest.path == manifests[0] and built.settings == settings
        assert cache.take(manifests[0], settings, never_cancel) is built
        assert cache.builds_started == 1
        cache.prefetch(manifests[0], settings)          # already there: not rebuilt
        assert cache.builds_started == 1
        missing = tmp_path / "missing.toml"
        cache.prefetch(missing, settings)
        assert cache.take(missing, settings, never_cancel) is None
        cache.prefetch(manifests[1], settings)
        cache.prefetch(manifests[2], settings)          # drops manifests[0]
        assert cache.take(manifests[0], settings, never_cancel) is None
        assert cache.take(manifests[2], settings, never_cancel) is not None
        assert cache.take(manifests[1], FitSettings(grid_size=12), never_cancel) is None
    finally:
        cache.clear()


# -- issue 25: flags that mean something, histogram bars that select ------------------------

def test_flags_filter_lists_only_what_the_simulator_flagged(qtbot, window, batch, monkeypatch):
    """Every fit at fixed positions set flag bit 2, so "flags != 0" listed nearly every
    row; the fact is the positions column now."""
    path, truth = batch
    open_by_menu(qtbot, window, path, monkeypatch)
    type_filter(qtbot, window, "flags != 0")
    assert table_keys(window) == list(truth["key"][truth["flagged_exposure"]])
    assert window.filter_error.text() == ""
    # the column says how each fit placed its sources, and its values filter
    type_filter(qtbot, window, 'positions == "searched"')
    searched = table_keys(window)
    assert searched and len(searched) < 10
    assert set(searched) >= {k for k in truth["key"] if k.startswith("binary_")}
    # the table meta explains every bit (from the one registry)
    from smp_model.outputs.columns import FLAGS
    meta = Table.read(path).meta["flags"]
    assert {f.name: f.bit for f in FLAGS}.items() <= {n: m["bit"] for n, m in meta.items()}.items()


def _click_view_point(qtbot, view, plot, x: float, y: float):
    """A left click on a real graphics view at view coordinates (x, y) of ``plot``."""
    pos = view.mapFromScene(plot.getViewBox().mapViewToScene(QPointF(x, y)))
    viewport = view.viewport()
    for kind, buttons in ((QEvent.Type.MouseMove, Qt.MouseButton.NoButton),
                          (QEvent.Type.MouseButtonPress, Qt.MouseButton.LeftButton),
                          (QEvent.Type.MouseButtonRelease, Qt.MouseButton.NoButton)):
        button = Qt.MouseButton.NoButton if kind == QEvent.Type.MouseMove \
            else Qt.MouseButton.LeftButton
        QApplication.sendEvent(viewport, QMouseEvent(
            kind, QPointF(pos), QPointF(viewport.mapToGlobal(pos)), button, buttons,
            Qt.KeyboardModifier.NoModifier))
        qtbot.wait(15)


def test_a_histogram_bar_click_selects_its_rows_and_a_selection_fills_its_bars(
        qtbot, window, batch, monkeypatch):
    path, _ = batch
    open_by_menu(qtbot, window, path, monkeypatch)
    survey = window.survey
    plots = window.plots
    plots.setCurrentIndex(1)
    qtbot.wait(50)
    plot = plots.hist_plots["chi2_dof"]
    bars = [i for i in plot.items if isinstance(i, pg.PlotCurveItem)][0]
    edges, counts = bars.getData()
    k = int(np.argmax(counts))                       # the tallest bar
    values = survey.columns["chi2_dof"]
    inside = (values >= edges[k]) & ((values < edges[k + 1]) if k < len(counts) - 1
                                     else (values <= edges[k + 1]))
    expected = sorted(survey.columns["key"][inside].astype(str).tolist())
    assert len(expected) == counts[k] > 1
    _click_view_point(qtbot, plots.histograms, plot, 0.5 * (edges[k] + edges[k + 1]),
                      0.5 * counts[k])
    qtbot.waitUntil(lambda: len(window.selected_indices()) == counts[k], timeout=3000)
    assert sorted(survey.columns["key"][window.selected_indices()].astype(str)) == expected
    # the table's selection is drawn filled in the bars: here exactly the clicked bar
    _, filled = plots.hist_highlight["chi2_dof"].getData()
    assert filled[k] == counts[k] and filled.sum() == counts[k]
    # a selection made in the table fills the bars its rows are in
    window.table.selectRow(0)
    i = window.selected_indices()[0]
    _, filled = plots.hist_highlight["chi2_dof"].getData()
    j = min(int(np.searchsorted(edges, values[i], side="right")) - 1, len(counts) - 1)
    assert filled.sum() == 1 and filled[j] == 1
    # a click beside the bars (above the tallest) selects nothing new
    _click_view_point(qtbot, plots.histograms, plot, 0.5 * (edges[k] + edges[k + 1]),
                      counts[k] + 0.6)
    assert window.selected_indices() == [i]
