"""The inspector as a careful user sees it (issue 28), driven through the user's path on
the small simulated demo: the real File > Open, real clicks on the real dialogs, mouse
moves over the panels, resizes.  Each test names what the user saw go wrong."""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pyqtgraph as pg
import pytest
from astropy.table import Table
from PyQt6.QtCore import QEvent, QPoint, QPointF, QSettings, Qt, QTimer
from PyQt6.QtWidgets import QApplication, QFileDialog

from smp_gui.inspector import InspectorWindow
from smp_model.simulation.demo import demo_manifest_path
from tests.helpers import make_synthetic_detection, read_toml, write_toml
from tests.test_gui import _send_mouse
from tests.test_gui_inspector import menu_action, readout_degrees, settled

pytestmark = pytest.mark.gui
pg.setConfigOption("mouseRateLimit", -1)

TIMEOUT_MS = 60_000
DAY_S = 86_400.0


@pytest.fixture
def window(fresh_inspector):
    return fresh_inspector


def detection_with_psfs_elsewhere(root: Path) -> tuple[Path, list[Path]]:
    """The demo copied to ``root/detection`` with its PSF files in ``root/psfs`` (named by
    absolute paths), each file's access time set a day before its modification time,
    so that reading it shows (ext4/tmpfs relatime: the next read updates the atime)."""
    demo = demo_manifest_path()
    folder = root / "detection"
    shutil.copytree(demo.parent, folder, ignore=shutil.ignore_patterns("psfs"))
    doc = read_toml(demo)
    psfs = []
    for entry in doc["exposures"]:
        target = root / "psfs" / Path(entry["psf"]).name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(demo.parent / entry["psf"], target)
        entry["psf"] = str(target)
        psfs.append(target)
    now = time.time()
    for path in psfs:
        os.utime(path, (now - 2 * DAY_S, now - DAY_S))
    return write_toml(folder / "detection.toml", doc), psfs


def read_since_prepared(psfs: list[Path]) -> list[Path]:
    """The PSF files read since `detection_with_psfs_elsewhere` prepared them."""
    return [p for p in psfs if os.stat(p).st_atime > os.stat(p).st_mtime]


def answer_consent(qtbot, window, button: str, tick: bool = False, seen: dict | None = None):
    """When the modal PSF question is up: record what it shows and what had been read
    or submitted by then into ``seen``, then tick the trust box (``tick``) and click
    ``button`` ('open' or 'cancel') with the mouse."""
    def act():
        dialog = QApplication.activeModalWidget()
        if dialog is None or dialog.objectName() != "psfConsentDialog":
            QTimer.singleShot(20, act)
            return
        if seen is not None:
            seen.update(dialog=dialog, text=dialog.paths.toPlainText(),
                        wraps=dialog.paths.lineWrapMode(),
                        submitted=window.controller.last_submitted,
                        visible=dialog.isVisible(), modal=dialog.isModal(),
                        psfs_read=read_since_prepared(seen.get("psfs", [])))
        if tick:
            qtbot.mouseClick(dialog.trust_box, Qt.MouseButton.LeftButton,
                             pos=QPoint(8, dialog.trust_box.height() // 2))
        target = dialog.open_button if button == "open" else dialog.cancel_button
        qtbot.mouseClick(target, Qt.MouseButton.LeftButton)
    QTimer.singleShot(0, act)


def file_open(monkeypatch, window, path: Path):
    """File > Open, choosing ``path`` in the file dialog."""
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        lambda *a, **k: (str(path), "Detection manifests (*.toml)"))
    menu_action(window, "File", "Open…").trigger()


# -- 1: consent before code runs ----------------------------------------------------------

def test_file_open_asks_before_any_psf_file_is_read_and_cancel_fits_nothing(
        qtbot, window, tmp_path, monkeypatch):
    manifest, psfs = detection_with_psfs_elsewhere(tmp_path)
    seen = {"psfs": psfs}
    answer_consent(qtbot, window, "cancel", seen=seen)
    file_open(monkeypatch, window, manifest)
    # the question came before anything was read or submitted, modal, one path a line
    assert seen["visible"] and seen["modal"]
    assert seen["psfs_read"] == [] and seen["submitted"] == 0
    assert seen["text"].splitlines() == [str(p) for p in psfs]
    assert seen["wraps"] == seen["dialog"].paths.LineWrapMode.NoWrap
    # Cancel: nothing read, nothing fitted, nothing remembered
    qtbot.wait(300)
    assert read_since_prepared(psfs) == []
    assert window.result is None and window.manifest_path is None
    assert window.controller.last_submitted == 0
    assert "no PSF file was read" in window.statusBar().currentMessage()
    assert window.recent_files() == []


def test_the_question_names_the_real_files_outside_once(qtbot, window, tmp_path,
                                                        monkeypatch):
    """The trust rule through File > Open (as through `smp fit` and `smp batch`,
    tests/test_trust_rule.py): a link inside the folder to a file outside is outside,
    ``..`` that comes back in is inside, one outside file named twice is listed once."""
    manifest, psfs = detection_with_psfs_elsewhere(tmp_path)
    folder = manifest.parent
    (folder / "sub").mkdir()
    doc = read_toml(manifest)
    exposures = doc["exposures"]
    (folder / "psf0.fits").symlink_to(psfs[0])
    exposures[0]["psf"] = "psf0.fits"
    shutil.copy(psfs[1], folder / "psf1.fits")
    exposures[1]["psf"] = "sub/../psf1.fits"
    for entry in exposures[2:]:
        entry["psf"] = str(psfs[0])   # the linked file again, by its own name
    write_toml(manifest, doc)
    seen = {"psfs": psfs}
    answer_consent(qtbot, window, "cancel", seen=seen)
    file_open(monkeypatch, window, manifest)
    assert seen["text"].splitlines() == [str(psfs[0])]
    assert seen["submitted"] == 0   # asked before the fit (the copy above read psfs[1])


def test_open_after_consent_reads_and_fits_and_a_ticked_folder_is_not_asked_again(
        qtbot, window, tmp_path, monkeypatch):
    manifest, psfs = detection_with_psfs_elsewhere(tmp_path)
    seen = {"psfs": psfs}
    answer_consent(qtbot, window, "open", tick=True, seen=seen)
    with qtbot.waitSignal(window.fitDisplayed, timeout=TIMEOUT_MS):
        file_open(monkeypatch, window, manifest)
    settled(qtbot, window)
    assert seen["psfs_read"] == []
    assert sorted(read_since_prepared(psfs)) == sorted(psfs)   # the check can see reads
    assert window.manifest_path == manifest.resolve()
    # the ticked folder is trusted from now on: opening again asks nothing
    assert window.open_path(manifest)
    assert window.consent_dialog is None
    settled(qtbot, window)


def test_consent_without_the_tick_asks_again_next_time(qtbot, window, tmp_path):
    manifest, psfs = detection_with_psfs_elsewhere(tmp_path)
    answer_consent(qtbot, window, "open")
    with qtbot.waitSignal(window.fitDisplayed, timeout=TIMEOUT_MS):
        assert window.open_path(manifest)
    settled(qtbot, window)
    seen: dict = {}
    answer_consent(qtbot, window, "cancel", seen=seen)
    assert not window.open_path(manifest)
    assert "dialog" in seen


def test_session_with_psf_files_outside_asks_first_and_cancel_keeps_what_was_shown(
        qtbot, window, tmp_path):
    demo = demo_manifest_path()
    with qtbot.waitSignal(window.fitDisplayed, timeout=TIMEOUT_MS):
        assert window.open_detection(demo, mode="binary", offsets=(0.0, 1.0, 0.0, 1.0))
    settled(qtbot, window)
    state = window.session_state()
    state["offsets"]["binary"] = [0.2, 1.2, 0.0, 1.0]
    path = tmp_path / "elsewhere.smpsession.json"
    path.write_text(json.dumps(state))
    shown, submitted = window.result, window.controller.last_submitted
    seen: dict = {}
    answer_consent(qtbot, window, "cancel", seen=seen)
    assert not window.open_path(path)
    assert seen["submitted"] == submitted and ".fits" in seen["text"]
    qtbot.wait(200)
    assert window.controller.last_submitted == submitted and window.result is shown
    assert window.offsets["binary"] == (0.0, 1.0, 0.0, 1.0)
    # accepted: the session is restored (and fitted)
    answer_consent(qtbot, window, "open")
    with qtbot.waitSignal(window.fitDisplayed, timeout=TIMEOUT_MS):
        assert window.open_path(path)
    settled(qtbot, window)
    assert window.offsets["binary"] == pytest.approx((0.2, 1.2, 0.0, 1.0))


# -- 2: the readout follows the detection and the exposure shown ----------------------------

def hover_panel_centre(window):
    """A real mouse move onto the middle of the Image panel; the readout's text."""
    pv = window.panels_view
    ny, nx = pv.panels["image"].shape
    scene = pv.view_to_scene("image", (nx - 1) / 2, (ny - 1) / 2)
    widget = pv.graphics.mapFromScene(scene)
    _send_mouse(pv.graphics.viewport(), QEvent.Type.MouseMove, widget,
                Qt.MouseButton.NoButton)
    return pv.readout.text()


def readout_ra_dec(text: str) -> tuple[float, float] | None:
    lines = text.split("\n")
    if len(lines) < 2 or not lines[1].startswith("RA "):
        return None
    return readout_degrees(lines[1])


def test_readout_does_not_keep_the_previous_detection_after_opening_another(
        qtbot, window, tmp_path):
    demo = demo_manifest_path()
    with qtbot.waitSignal(window.fitDisplayed, timeout=TIMEOUT_MS):
        assert window.open_path(demo)
    settled(qtbot, window)
    before = hover_panel_centre(window)
    assert readout_ra_dec(before) is not None
    other = make_synthetic_detection(tmp_path / "synth", n_exposures=2).manifest_path
    with qtbot.waitSignal(window.fitDisplayed, timeout=TIMEOUT_MS):
        assert window.open_path(other)
    settled(qtbot, window)
    text = window.panels_view.readout.text()
    assert text != before
    radec = readout_ra_dec(text)
    manifest = window.manifest
    # nothing, or a point of the detection now shown (within its stamp)
    assert radec is None or (abs(radec[0] - manifest.ra) < 30 / 3600
                             and abs(radec[1] - manifest.dec) < 30 / 3600)
    # and the mouse over it reads the new detection
    radec = readout_ra_dec(hover_panel_centre(window))
    assert abs(radec[0] - manifest.ra) < 10 / 3600 and abs(radec[1] - manifest.dec) < 10 / 3600


def test_readout_does_not_keep_the_previous_exposure(qtbot, window):
    with qtbot.waitSignal(window.fitDisplayed, timeout=TIMEOUT_MS):
        assert window.open_path(demo_manifest_path())
    settled(qtbot, window)
    before = hover_panel_centre(window)
    table = window.browser.table
    table.setFocus()
    qtbot.keyClick(table, Qt.Key.Key_Down)
    qtbot.waitUntil(lambda: window.panels_view.panels.expnum
                    != window.result.fit.scene.exposures[0].entry.expnum or
                    window.selected_index != window.result.fit.scene.detection_index,
                    timeout=5000)
    text = window.panels_view.readout.text()
    assert text != before
    if text.strip():     # recomputed under the pointer: a pixel of the new exposure
        panels = window.panels_view.panels
        x, y = (float(p.split("=")[1]) for p in text.split(" | ")[0][4:].split()[:2])
        (ny, nx), (x0, y0) = panels["image"].shape, panels.origin
        assert x0 <= x <= x0 + nx and y0 <= y <= y0 + ny


# -- 3: pixels get the room; 4: the Δχ² map -------------------------------------------------

BINARY = (0.0, 1.0, 0.0, 1.0)


def open_demo_binary(qtbot, window, size=(1920, 1080)):
    window.resize(*size)
    with qtbot.waitSignal(window.fitDisplayed, timeout=TIMEOUT_MS):
        assert window.open_detection(demo_manifest_path(), mode="binary", offsets=BINARY)
    settled(qtbot, window)
    qtbot.wait(100)


def screen_px_per_ccd_px(window) -> float:
    vb = window.panels_view.plots["image"].getViewBox()
    a, b = vb.mapViewToScene(QPointF(0, 0)), vb.mapViewToScene(QPointF(1, 0))
    return abs(b.x() - a.x())


def computed_map(qtbot, window, half_width=0.4):
    with qtbot.waitSignal(window.chi2MapDisplayed, timeout=TIMEOUT_MS):
        window.request_chi2map(half_width=half_width, step=0.2)
    qtbot.wait(100)
    return window.chi2map_view


def test_the_map_takes_the_sixth_cell_and_the_stamps_keep_their_size(qtbot, window):
    open_demo_binary(qtbot, window)
    without = screen_px_per_ccd_px(window)
    view = computed_map(qtbot, window)
    assert screen_px_per_ccd_px(window) >= 8
    # (the map's line of explanation under the panels takes a little height)
    assert screen_px_per_ccd_px(window) == pytest.approx(without, rel=0.15)
    # the map's plot is a cell of the panels' grid, beside the panels, overlapping none
    pv = window.panels_view
    assert view.plot.scene() is pv.graphics.scene() and view.plot.isVisible()
    cell = view.plot.sceneBoundingRect()
    sizes = []
    for plot in pv.plots.values():
        assert not cell.intersects(plot.sceneBoundingRect())
        sizes.append(min(plot.getViewBox().width(), plot.getViewBox().height()))
    assert max(sizes) == pytest.approx(min(sizes), rel=0.05)     # both rows alike
    assert pv.graphics.sceneRect().contains(cell.center())
    # hidden (View menu key), the sixth cell goes away
    qtbot.keyClick(window, Qt.Key.Key_M, Qt.KeyboardModifier.ControlModifier
                   | Qt.KeyboardModifier.ShiftModifier)
    qtbot.wait(100)
    assert not view.plot.isVisible() and not view.isVisible()


def test_hovering_a_map_cell_reads_it_out_without_moving_the_secondary(qtbot, window):
    open_demo_binary(qtbot, window)
    view = computed_map(qtbot, window)
    m = view.chi2map
    i, j = 1, 3
    scene = view.plot.getViewBox().mapViewToScene(QPointF(m.dx[i], m.dy[j]))
    gv = window.panels_view.graphics
    _send_mouse(gv.viewport(), QEvent.Type.MouseMove, gv.mapFromScene(scene),
                Qt.MouseButton.NoButton)
    assert view.readout.text() == (f"Δχ²={m.delta_chi2[j, i]:.2f} at dx={m.dx[i]:+.2f} "
                                   f"dy={m.dy[j]:+.2f} px")
    assert window.offsets["binary"] == BINARY


def test_map_colour_scale_asinh_and_log(qtbot, window):
    open_demo_binary(qtbot, window)
    view = computed_map(qtbot, window)
    delta = view.chi2map.delta_chi2
    linear = view.image.image.copy()
    np.testing.assert_allclose(linear, delta)
    box = view.scale_box
    box.setFocus()
    qtbot.keyClick(box, Qt.Key.Key_Down)      # linear -> log
    np.testing.assert_allclose(view.image.image, np.log10(1 + delta))
    qtbot.keyClick(box, Qt.Key.Key_Down)      # -> asinh
    np.testing.assert_allclose(view.image.image, np.arcsinh(delta))
    lo, hi = view.colorbar.levels()
    assert hi == pytest.approx(np.arcsinh(max(np.percentile(delta, 99), 1.5 * 11.83)))
    # the 1-sigma contour stays at Δχ² = 2.30
    assert view.contours[0].level == pytest.approx(np.arcsinh(2.30))


def test_the_map_is_marked_out_of_date_when_the_primary_moves_or_a_new_one_runs(
        qtbot, window):
    open_demo_binary(qtbot, window)
    view = computed_map(qtbot, window)
    assert view.stale_label.text() == ""
    window.panels_view.graphics.setFocus()
    qtbot.keyClick(window.panels_view.graphics, Qt.Key.Key_1)      # select the primary
    qtbot.keyClick(window.panels_view.graphics, Qt.Key.Key_Right)  # nudge it
    settled(qtbot, window)
    assert window.offsets["binary"][0] != BINARY[0]
    assert "primary moved" in view.stale_label.text()
    assert "OUT OF DATE" in view.plot.titleLabel.text
    with qtbot.waitSignal(window.chi2MapDisplayed, timeout=TIMEOUT_MS):
        window.request_chi2map(half_width=0.4, step=0.2)
        assert "being computed" in view.stale_label.text()
    assert view.stale_label.text() == "" and "OUT OF DATE" not in view.plot.titleLabel.text


def test_a_map_worse_than_the_single_source_says_why(qtbot, window, tmp_path):
    single = make_synthetic_detection(tmp_path / "single", n_exposures=2).manifest_path
    window.resize(1920, 1080)
    # the primary held 1.5 px off the star, the secondary searched 3 px away from it:
    # no cell fits as well as the single source at its default offset
    with qtbot.waitSignal(window.fitDisplayed, timeout=TIMEOUT_MS):
        assert window.open_detection(single, mode="binary", offsets=(1.5, 3.0, 0.0, 3.0))
    settled(qtbot, window)
    view = computed_map(qtbot, window)
    m = view.chi2map
    assert m.chi2_single < np.nanmin(m.chi2)
    assert "Negative" in view.info.text() and "≥ 0" in view.info.text()


def test_window_size_and_docks_come_back_at_the_next_launch(qtbot, qapp, tmp_path):
    store = QSettings(str(tmp_path / "smp.ini"), QSettings.Format.IniFormat)
    first = InspectorWindow(store)
    first.show()
    first.resize(1400, 780)
    qtbot.wait(50)
    menu_action(first, "View", "Flux table").trigger()      # the user hides a dock
    assert not first.results_dock.isVisible()
    first.close()
    again = InspectorWindow(QSettings(str(tmp_path / "smp.ini"), QSettings.Format.IniFormat))
    again.show()
    qtbot.wait(50)
    try:
        assert (again.width(), again.height()) == (1400, 780)
        assert not again.results_dock.isVisible() and again.controls_dock.isVisible()
    finally:
        again.close()


def test_a_session_brings_its_zoom_back_exactly(qtbot, window, tmp_path):
    open_demo_binary(qtbot, window, size=(1600, 900))
    pv = window.panels_view
    pv.graphics.setFocus()
    for _ in range(3):
        qtbot.keyClick(pv.graphics, Qt.Key.Key_Plus)
    qtbot.wait(50)
    scale = screen_px_per_ccd_px(window)
    centre = pv.plots["image"].getViewBox().viewRect().center()
    path = window.save_session(tmp_path / "zoomed.smpsession.json")
    store = QSettings(str(tmp_path / "other.ini"), QSettings.Format.IniFormat)
    store.setValue("trusted_psf_folders", [str(demo_manifest_path().parent)])
    other = InspectorWindow(store)
    other.show()
    other.resize(1600, 900)
    try:
        with qtbot.waitSignal(other.fitDisplayed, timeout=TIMEOUT_MS):
            assert other.open_path(path)
        settled(qtbot, other)
        qtbot.wait(200)
        assert screen_px_per_ccd_px(other) == pytest.approx(scale, rel=0.01)
        got = other.panels_view.plots["image"].getViewBox().viewRect().center()
        assert (got.x(), got.y()) == pytest.approx((centre.x(), centre.y()), abs=0.05)
    finally:
        other.shutdown()
        other.close()



# -- 5: the exported figure carries what the screen shows; 7: the names it proposes ---------

def test_exported_figure_has_colour_bar_markers_compass_and_exposures(
        qtbot, window, tmp_path, monkeypatch):
    open_demo_binary(qtbot, window, size=(1600, 900))
    proposed = []

    def save_dialog(parent, caption, directory, filters):
        proposed.append(Path(directory).name)
        return str(tmp_path / "figure.svg"), "SVG (*.svg)"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", save_dialog)
    with qtbot.waitSignal(window.exportFinished, timeout=TIMEOUT_MS) as done:
        menu_action(window, "File", "Export", "Five-panel figure (detection)").trigger()
    assert done.args[0] == tmp_path / "figure.svg"
    assert proposed == ["demo-binary-panels.png"]
    svg = (tmp_path / "figure.svg").read_text()
    # matplotlib writes each text as a comment before its glyphs
    expnum = window.result.fit.scene.exposures[window.result.fit.scene.detection_index]\
        .entry.expnum
    assert svg.count(f"<!-- exposure {expnum} -->") == 5        # every panel says it
    assert "<!-- flux per pixel (ZP 30) -->" in svg and 'id="colorbar"' in svg
    assert 'id="component-1"' in svg and 'id="component-2"' in svg
    assert "<!-- N -->" in svg and "<!-- E -->" in svg and 'id="scale-bar"' in svg
    record = window.result.summary
    assert f"{record.sources[0].flux:.1f}" in svg and "χ²/dof" in svg


def test_at_1280x720_the_stamps_get_the_room_and_the_labels_show_whole(qtbot, window):
    open_demo_binary(qtbot, window, size=(1600, 900))
    window.resize(1280, 720)
    qtbot.wait(200)
    pv = window.panels_view
    # the exposures keep at most their share, or (issue 28 item 3) are a tab beside the
    # flux table, so that one column of docks is left
    assert window.layout_keeper.stacked or window.browser_dock.width() <= 0.17 * 1280 + 1
    for label in (pv.mask_label, pv.invert_box):
        assert label.width() >= label.sizeHint().width(), label.text()
    # grown again, the room goes to the stamps, not to the docks
    docks = window.browser_dock.width(), window.controls_dock.width()
    window.resize(1920, 1080)
    qtbot.wait(200)
    assert (window.browser_dock.width(), window.controls_dock.width()) == docks
    assert screen_px_per_ccd_px(window) >= 8


def test_the_map_fills_its_cell_at_1280x720(qtbot, window):
    open_demo_binary(qtbot, window, size=(1280, 720))
    view = computed_map(qtbot, window, half_width=1.0)
    qtbot.wait(200)
    vb = view.plot.getViewBox()
    shown = view.image.mapRectToScene(view.image.boundingRect())
    box = vb.sceneBoundingRect()
    # the map spans its cell's narrower side (within the 2 % padding)
    assert max(shown.width() / box.width(), shown.height() / box.height()) > 0.9


def test_an_export_being_written_when_the_user_quits_is_finished(qtbot, window, tmp_path,
                                                                   monkeypatch):
    # Exports are written in a daemon thread and smp-gui ends its process at once after
    # the window closes: File > Export then Ctrl+Q dropped the file without a word.
    import smp_model.outputs.tables as tables
    open_demo_binary(qtbot, window)
    real = tables.write_table

    def slow_write(*args, **kwargs):
        time.sleep(1.0)   # a table on a slow disk
        return real(*args, **kwargs)
    monkeypatch.setattr(tables, "write_table", slow_write)
    out = tmp_path / "fluxes.ecsv"
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        lambda *a, **k: (str(out), "ECSV (*.ecsv)"))
    menu_action(window, "File", "Export", "Flux table").trigger()
    qtbot.keyClick(window, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)
    assert not window.isVisible()
    assert out.exists() and len(Table.read(out)) == 2
