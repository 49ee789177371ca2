"""The SMP Inspector window driven as a user would (pytest-qt, headless), on the real
2014 LQ28 sample; every number the window shows is compared with a direct engine call."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyqtgraph as pg
import pytest
from astropy.io import fits
from astropy.table import Table
from PyQt6.QtCore import QEvent, QPoint, QPointF, Qt
from PyQt6.QtGui import QMouseEvent
from PyQt6.QtWidgets import QApplication, QMessageBox

from smp_gui.controller import FitController, FitJob
from smp_gui.inspector import InspectorWindow
from smp_gui.inspector.coordinates import ccd_to_view, pixel_rect, view_to_ccd, view_to_pixel
from smp_gui.inspector.results_table import summary_rows
from smp_model.fit.panels import PANEL_KEYS, five_panels
from smp_model.fit.photometry import DetectionPhotometry
from smp_model.fit.request import FitRequest as EngineFitRequest
from smp_model.inputs.manifest import DetectionManifest
from smp_model.settings import FitSettings
from tests.helpers import shown_inspector, wait_layout_still

pytestmark = pytest.mark.gui

# pyqtgraph drops mouse moves < 10 ms apart unless told otherwise (QT_NOTES.md).
pg.setConfigOption("mouseRateLimit", -1)

START = (0.0, 1.0, 0.0, 1.0)
FIT_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def lq28_path(des_sample):
    return des_sample / "2014lq28" / "detection.toml"


@pytest.fixture(scope="module")
def engine(lq28_path):
    """The engine on its own, for reference numbers."""
    with pytest.warns(Warning):   # two exposures of the sample have no usable pixel
        return DetectionPhotometry(lq28_path)


def _new_window(tmp_path_factory):
    """A window of its own (`shown_inspector`). Sessions saved under tmp_path name the
    sample's PSF files: a folder the user trusts (the question: tests/test_gui_careful.py).
    """
    sample = os.environ.get("SMP_DES_SAMPLE") or str(
        Path(__file__).resolve().parents[2] / "shared" / "des-sample")
    return shown_inspector(tmp_path_factory.mktemp("qsettings") / "smp.ini", [sample])


def _window_lifetime(tmp_path_factory):
    with _new_window(tmp_path_factory) as window:
        yield window


@pytest.fixture(scope="module")
def window(qapp, tmp_path_factory):
    """One window for the module: the engine's cold build (~3 s) happens once; each test
    re-opens the detection (a cache hit in the worker) to start from a known state."""
    yield from _window_lifetime(tmp_path_factory)


def open_and_wait(qtbot, window, path, **kwargs):
    with qtbot.waitSignal(window.fitDisplayed, timeout=FIT_TIMEOUT_MS) as blocker:
        assert window.open_detection(path, **kwargs)
    return blocker.args[0]


def press(qtbot, window, key, modifier=Qt.KeyboardModifier.NoModifier):
    """A key press on the window, as a user types it (menu shortcuts included)."""
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window, timeout=2000)
    qtbot.keyClick(window, key, modifier)


def undo(qtbot, window):
    press(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)


def redo(qtbot, window):
    press(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier
          | Qt.KeyboardModifier.ShiftModifier)


def wait_settled(qtbot, window):
    """Wait until the worker is idle and its last result is shown."""
    qtbot.waitUntil(lambda: not window.controller.busy
                    and window.result is not None
                    and window.result.request_id == window.controller.last_submitted,
                    timeout=FIT_TIMEOUT_MS)


# -- pixel convention -------------------------------------------------------------------

def test_pixel_convention_roundtrip():
    origin = (1061, 3813)
    assert ccd_to_view(1061, 3813, origin) == (0.0, 0.0)
    assert view_to_ccd(*ccd_to_view(1074.3, 3826.8, origin), origin) == \
        pytest.approx((1074.3, 3826.8))
    # Pixel centres at integers: the pixel under (i +- 0.49, j +- 0.49) is (i, j).
    assert view_to_pixel(4.49, 7.0) == (4, 7)
    assert view_to_pixel(3.51, 6.51) == (4, 7)
    rect = pixel_rect((30, 20))
    assert (rect.left(), rect.bottom(), rect.width(), rect.height()) == (-0.5, 29.5, 20, 30)


def test_marker_sits_on_its_pixel(qtbot, window, lq28_path):
    result = open_and_wait(qtbot, window, lq28_path, mode="binary", offsets=START)
    fit = result.fit
    origin = fit.scene.exposures[fit.scene.detection_index].origin
    image_item = window.panels_view.images["image"]
    for k, source in enumerate(fit.sources):
        u, v = window.markers.positions[k]
        assert (u, v) == pytest.approx(ccd_to_view(source.x, source.y, origin))
        i, j = view_to_pixel(u, v)
        # The CCD pixel whose centre is nearest the source ...
        assert (origin[0] + i, origin[1] + j) == (round(source.x), round(source.y))
        # ... is the array element the image item draws under the marker.
        item_point = image_item.mapFromView(QPointF(u, v))
        assert (math.floor(item_point.x()), math.floor(item_point.y())) == (i, j)
        # and the marker item itself is there on every panel
        for item in window.markers.items[k]:
            assert (item.pos().x(), item.pos().y()) == pytest.approx((u, v))


# -- opening, panels --------------------------------------------------------------------

def test_open_shows_engine_panels(qtbot, window, lq28_path, engine):
    result = open_and_wait(qtbot, window, lq28_path, mode="binary", offsets=START)
    expected = five_panels(engine.fit_binary(START))
    assert result.summary.offsets == START
    for key in PANEL_KEYS:
        np.testing.assert_allclose(window.panels_view.images[key].image, expected[key],
                                   rtol=1e-10, atol=1e-8)
    assert window.panels_view.levels() == pytest.approx(expected.levels)
    # exposure browser: every exposure, the detection selected and highlighted
    assert window.browser.expnums() == [ex.entry.expnum for ex in engine.exposures]
    det = engine.scene.detection_index
    assert window.browser.current_index == det
    assert window.browser.table.item(det, 1).text().endswith("★")
    # flux table numbers are the engine's
    fit = engine.fit_binary(START)
    rows = result.summary.sources
    assert rows[0].flux == pytest.approx(fit.primary.flux, rel=1e-9)
    assert rows[1].flux == pytest.approx(fit.secondary.flux, rel=1e-9)
    assert result.summary.delta_chi2 == pytest.approx(fit.delta_chi2, rel=1e-9)
    assert result.summary.separation_arcsec == pytest.approx(fit.separation_arcsec)
    assert "1411.9" in window.results_table.as_text() or \
        f"{fit.primary.flux:.1f}" in window.results_table.as_text()


def test_browse_exposures_and_readout(qtbot, window, lq28_path, engine):
    open_and_wait(qtbot, window, lq28_path, mode="binary", offsets=START)
    other = 0 if engine.scene.detection_index != 0 else 1
    window.browser.table.setFocus()
    window.browser.select(other)
    expected = five_panels(window.result.fit, other)
    np.testing.assert_array_equal(window.panels_view.images["image"].image,
                                  expected["image"])
    assert not any(item.isVisible() for group in window.markers.items for item in group)
    qtbot.keyClick(window.browser.table, Qt.Key.Key_Down)
    assert window.selected_index == other + 1
    # masked pixels are marked
    masked = five_panels(window.result.fit, window.selected_index).usable
    overlay = window.panels_view.masks["image"].image
    assert (overlay[..., 3] > 0).sum() == (~masked).sum()
    # readout of a pixel: CCD, stamp indices and every panel's value
    text = window.panels_view.readout_text(3.0, 4.0)
    p = window.panels_view.panels
    assert "stamp pixel i=3 j=4" in text and f"CCD x={p.origin[0] + 3:.2f}" in text
    assert f"image {p['image'][4, 3]:.4g} |" in text and "RA " in text
    window.browser.select(engine.scene.detection_index)


# -- dragging ---------------------------------------------------------------------------

def _send_mouse(widget, kind, pos: QPoint, buttons):
    button = (Qt.MouseButton.LeftButton if kind != QEvent.Type.MouseMove
              else Qt.MouseButton.NoButton)
    event = QMouseEvent(kind, QPointF(pos), QPointF(widget.mapToGlobal(pos)), button,
                        buttons, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, event)


def drag_marker(qtbot, window, k: int, du: float, dv: float, steps: int = 8,
                panel: str = "image", pause_ms: int = 15):
    """Drag marker k by (du, dv) px of the panel with simulated mouse events,
    ``pause_ms`` between two moves."""
    gv = window.panels_view.graphics
    viewport = gv.viewport()
    u0, v0 = window.markers.positions[k]

    def to_widget(u, v):
        return gv.mapFromScene(window.panels_view.view_to_scene(panel, u, v))

    start = to_widget(u0, v0)
    none, left = Qt.MouseButton.NoButton, Qt.MouseButton.LeftButton
    _send_mouse(viewport, QEvent.Type.MouseMove, start, none)       # hover first
    qtbot.wait(15)
    _send_mouse(viewport, QEvent.Type.MouseButtonPress, start, left)
    for n in range(1, steps + 1):
        pos = to_widget(u0 + du * n / steps, v0 + dv * n / steps)
        _send_mouse(viewport, QEvent.Type.MouseMove, pos, left)
        qtbot.wait(pause_ms)
    end = to_widget(u0 + du, v0 + dv)
    _send_mouse(viewport, QEvent.Type.MouseButtonRelease, end, none)


def test_drag_secondary_refits(qtbot, window, lq28_path, engine):
    first = open_and_wait(qtbot, window, lq28_path, mode="binary", offsets=START)
    # the first open's layout passes rescale the view: a drag then lands elsewhere (run
    # alone, this test dragged by -1.1 px for -0.6)
    wait_layout_still(qtbot, window.panels_view.plots["image"].getViewBox())
    marker_start = window.markers.positions[1]
    n_before = window.fits_displayed
    flux_before = first.summary.sources[1].flux
    drag_marker(qtbot, window, 1, 1.0, -0.6)
    wait_settled(qtbot, window)
    assert window.fits_displayed - n_before >= 2          # refits during the drag
    offsets = window.offsets["binary"]
    # the secondary moved by the marker's displacement, the primary stayed; the mouse
    # went (1.0, -0.6) px, up to the rounding of a screen pixel (~0.25 px here)
    assert offsets[0] == START[0] and offsets[2] == START[2]
    marker_end = window.markers.positions[1]
    assert offsets[1] - START[1] == pytest.approx(marker_end[0] - marker_start[0], abs=1e-9)
    assert offsets[3] - START[3] == pytest.approx(marker_end[1] - marker_start[1], abs=1e-9)
    assert offsets[1] - START[1] == pytest.approx(1.0, abs=0.3)
    assert offsets[3] - START[3] == pytest.approx(-0.6, abs=0.3)
    shown = window.result.summary
    assert shown.offsets == pytest.approx(offsets, abs=1e-12)
    assert shown.sources[1].flux != pytest.approx(flux_before, rel=1e-3)
    direct = engine.fit_binary(offsets)
    assert shown.sources[0].flux == pytest.approx(direct.primary.flux, rel=1e-9)
    assert shown.sources[1].flux == pytest.approx(direct.secondary.flux, rel=1e-9)
    assert shown.chi2 == pytest.approx(direct.chi2, rel=1e-9)
    expected = five_panels(direct)
    for key in PANEL_KEYS:   # unchanged arrays are not re-sent: all must still be right
        np.testing.assert_allclose(window.panels_view.images[key].image, expected[key],
                                   rtol=1e-9, atol=1e-8, err_msg=key)
    # the marker sits where the fitted secondary is
    origin = direct.scene.exposures[direct.scene.detection_index].origin
    assert window.markers.positions[1] == pytest.approx(
        ccd_to_view(direct.secondary.x, direct.secondary.y, origin), abs=1e-9)
    # one undo step restores the start
    assert window.menus.undo_action.text() == "&Undo move secondary"
    undo(qtbot, window)
    wait_settled(qtbot, window)
    assert window.offsets["binary"] == START
    assert window.result.summary.offsets == START


def test_arrow_keys_nudge_selected_marker(qtbot, window, lq28_path):
    open_and_wait(qtbot, window, lq28_path, mode="binary", offsets=START)
    window.markers.select(0)
    window.panels_view.graphics.setFocus()
    qtbot.keyClick(window.panels_view.graphics, Qt.Key.Key_Right)
    qtbot.keyClick(window.panels_view.graphics, Qt.Key.Key_Up)
    wait_settled(qtbot, window)
    assert window.offsets["binary"] == pytest.approx((0.1, 1.0, 0.1, 1.0))
    assert window.result.summary.offsets == pytest.approx((0.1, 1.0, 0.1, 1.0))
    assert window.menus.undo_action.text() == "&Undo nudge primary"
    undo(qtbot, window)                  # the run of two nudges is one step
    wait_settled(qtbot, window)
    assert window.offsets["binary"] == pytest.approx(START)
    redo(qtbot, window)
    wait_settled(qtbot, window)
    assert window.offsets["binary"] == pytest.approx((0.1, 1.0, 0.1, 1.0))


def test_optimize_moves_markers_to_engine_optimum(qtbot, window, lq28_path, engine):
    open_and_wait(qtbot, window, lq28_path, mode="binary", offsets=START)
    with qtbot.waitSignal(window.fitDisplayed, timeout=FIT_TIMEOUT_MS,
                          check_params_cb=lambda r: r.request.fit.optimize):
        window.fit_controls.optimize_button.click()
    best = engine.optimize_binary(START)
    assert window.offsets["binary"] == pytest.approx(best.published_offsets, abs=1e-9)
    origin = best.scene.exposures[best.scene.detection_index].origin
    for k, source in enumerate(best.sources):
        assert window.markers.positions[k] == pytest.approx(
            ccd_to_view(source.x, source.y, origin), abs=1e-9)
        x, _ = window.markers.ellipses[k][0].getData()
        assert x is not None and len(x) > 0                # error ellipse drawn
    s = window.result.summary
    assert s.separation_err_px == pytest.approx(best.separation_err_px, rel=1e-6)
    assert s.delta_chi2 == pytest.approx(best.delta_chi2, rel=1e-9)
    undo(qtbot, window)
    wait_settled(qtbot, window)
    assert window.offsets["binary"] == START


def test_single_mode(qtbot, window, lq28_path, engine):
    result = open_and_wait(qtbot, window, lq28_path, mode="single", offsets=(0.0, 0.0))
    direct = engine.fit_single()
    assert result.summary.sources[0].flux == pytest.approx(direct.flux, rel=1e-9)
    assert window.markers.count == 1
    with qtbot.waitSignal(window.fitDisplayed, timeout=FIT_TIMEOUT_MS,
                          check_params_cb=lambda r: r.request.fit.mode == "binary"):
        window.fit_controls.set_mode("binary")
    assert window.markers.count == 2
    assert len(window.result.summary.sources) == 2


def test_chi2_map_and_click(qtbot, window, lq28_path, engine):
    open_and_wait(qtbot, window, lq28_path, mode="binary", offsets=START)
    with qtbot.waitSignal(window.chi2MapDisplayed, timeout=FIT_TIMEOUT_MS) as blocker:
        window.request_chi2map(half_width=0.4, step=0.2)
    m = blocker.args[0].chi2map
    assert m.chi2.shape == (5, 5)
    j, i = 1, 3
    expected = engine.chi2(np.array([[0.0, 0.0], [m.dx[i], m.dy[j]]]))
    assert m.chi2[j, i] == pytest.approx(expected, rel=1e-10)
    window.chi2map_control.move_secondary(i, j)
    wait_settled(qtbot, window)
    assert window.offsets["binary"] == pytest.approx((0.0, m.dx[i], 0.0, m.dy[j]))


# -- export -----------------------------------------------------------------------------

def exported(qtbot, window, method, *args, **kwargs):
    """Run an export (written off the GUI thread) and wait until it is written."""
    with qtbot.waitSignal(window.exportFinished, timeout=FIT_TIMEOUT_MS) as blocker:
        assert method(*args, **kwargs) is not None
    assert blocker.args[0] is not None
    return Path(blocker.args[0])


def test_exports_read_back(qtbot, window, lq28_path, tmp_path, monkeypatch):
    result = open_and_wait(qtbot, window, lq28_path, mode="binary", offsets=START)
    for suffix in (".png", ".pdf", ".svg"):
        path = exported(qtbot, window, window.export_figure, tmp_path / f"fig{suffix}")
        assert path.stat().st_size > 1000
    assert exported(qtbot, window, window.export_figure, tmp_path / "all.pdf",
                    exposures="all").stat().st_size > 1000
    for suffix in (".ecsv", ".fits", ".vot", ".csv"):
        path = exported(qtbot, window, window.export_table, tmp_path / f"flux{suffix}")
        table = Table.read(path)
        assert len(table) == 2
        assert table["flux"][1] == pytest.approx(result.summary.sources[1].flux, rel=1e-6)
    meta = Table.read(tmp_path / "flux.ecsv").meta
    assert meta["settings"]["grid_size"] == 20
    # the detection was built in the child process: dropped exposures still by expnum
    assert meta["exposures_dropped"] == [239649, 580880]
    assert meta["offsets"] == list(result.fit.published_offsets)
    path = exported(qtbot, window, window.export_fits, tmp_path / "model.fits")
    with fits.open(path) as hdul:
        n_exp = len(result.fit.scene.exposures)
        assert [hdul["MODEL", k + 1].data.shape for k in range(n_exp)] == [(30, 30)] * n_exp
        # the panel on screen (the detection's) and the exported residual (the detection
        # first in the cube) are one definition
        assert hdul["RESIDUAL", 1].header["DETECTN"]
        np.testing.assert_allclose(hdul["RESIDUAL", 1].data,
                                   window.panels_view.images["residual"].image, rtol=1e-6,
                                   atol=1e-6)

    # never overwrite silently: asked, and "No" keeps the file
    target = tmp_path / "flux.ecsv"
    before = target.read_bytes()
    asked = []
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *a, **k: asked.append(a) or QMessageBox.StandardButton.No)
    assert window.export_table(target) is None
    assert asked and target.read_bytes() == before
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *a, **k: QMessageBox.StandardButton.Yes)
    assert exported(qtbot, window, window.export_table, target) == target


# -- errors -----------------------------------------------------------------------------

def test_broken_manifest_shows_dialog_and_window_stays_usable(qtbot, window, lq28_path,
                                                              tmp_path):
    open_and_wait(qtbot, window, lq28_path, mode="binary", offsets=START)
    broken = tmp_path / "detection.toml"
    broken.write_text("format = 'smp-detection/1'\nname = 'x'\nra = [\n")
    assert not window.open_path(broken)
    dialog = window.error_dialog
    assert dialog is not None and dialog.isVisible()
    assert str(broken) in dialog.text()
    dialog.close()
    assert not window.open_path(tmp_path / "no-such-folder")
    assert "no-such-folder" in window.error_dialog.text()
    window.error_dialog.close()
    # a manifest whose stamp is missing fails in the worker: dialog, old detection kept
    text = lq28_path.read_text().replace('stamp = "stamps/', f'stamp = "{lq28_path.parent}/stamps/')
    text = text.replace(f'{lq28_path.parent}/stamps/2014lq28_696265.fits', "missing.fits")
    text = text.replace('psf = "../', f'psf = "{lq28_path.parent.parent}/')
    bad_stamp = tmp_path / "bad" / "detection.toml"
    bad_stamp.parent.mkdir()
    bad_stamp.write_text(text)
    with qtbot.waitSignal(window.errorShown, timeout=FIT_TIMEOUT_MS):
        window.open_path(bad_stamp)
    assert "missing.fits" in window.error_dialog.text()
    window.error_dialog.close()
    # still usable: a drag-free refit of the detection that was shown
    assert window.manifest_path == lq28_path.resolve()
    with qtbot.waitSignal(window.fitDisplayed, timeout=FIT_TIMEOUT_MS):
        window.set_offsets((0.0, 1.2, 0.0, 1.0), "binary")
    assert window.result.summary.offsets == (0.0, 1.2, 0.0, 1.0)


# -- sessions ---------------------------------------------------------------------------

def test_session_roundtrip(qtbot, window, lq28_path, tmp_path, tmp_path_factory):
    open_and_wait(qtbot, window, lq28_path, mode="binary", offsets=(0.2, 1.1, -0.1, 0.9))
    window.browser.select(2)
    window.panels_view.set_stretch("zscale")
    window.panels_view.set_colormap("viridis")
    saved = window.session_state()
    path = window.save_session(tmp_path / "lq28.smpsession.json")
    assert json.loads(path.read_text())["offsets"]["binary"] == [0.2, 1.1, -0.1, 0.9]

    with _new_window(tmp_path_factory) as other:
        with qtbot.waitSignal(other.fitDisplayed, timeout=FIT_TIMEOUT_MS):
            assert other.open_path(path)
        restored = other.session_state()
        for key in ("detection", "settings", "mode", "offsets", "selected_expnum"):
            assert restored[key] == saved[key], key
        assert restored["view"]["stretch"] == "zscale"
        assert restored["view"]["colormap"] == "viridis"
        assert restored["view"]["levels"] == pytest.approx(saved["view"]["levels"])
        assert other.result.summary.offsets == (0.2, 1.1, -0.1, 0.9)
        other.deleteLater()
    # saving again over the file asks first
    window.browser.select(window.result.fit.scene.detection_index)


def test_bad_session_file(qtbot, window, tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"format": "something else"}')
    assert not window.open_path(path)
    assert "x.json" in window.error_dialog.text()
    window.error_dialog.close()


# -- controller -------------------------------------------------------------------------

def binary_request(engine, offsets) -> EngineFitRequest:
    return EngineFitRequest(mode="binary", offsets=offsets, settings=engine.settings)


def test_controller_latest_request_wins(qtbot, lq28_path, engine):
    controller = FitController()
    delivered = []
    controller.fitFinished.connect(delivered.append)
    try:
        offsets = [(0.0, 1.0 + 0.05 * n, 0.0, 1.0) for n in range(30)]
        ids = [controller.submit(FitJob(str(lq28_path), binary_request(engine, o)))
               for o in offsets]
        qtbot.waitUntil(lambda: bool(delivered) and delivered[-1].request_id == ids[-1],
                        timeout=FIT_TIMEOUT_MS)
        got = [r.request_id for r in delivered]
        assert got == sorted(got)                      # never an older one after a newer
        assert len(got) < len(ids)                     # pending requests were replaced
        assert delivered[-1].summary.offsets == offsets[-1]
        # cancel: nothing of the cancelled requests is delivered
        n = len(delivered)
        controller.submit(FitJob(str(lq28_path), binary_request(engine, START)))
        controller.cancel()
        assert controller.wait_idle(30)
        qtbot.wait(50)
        assert len(delivered) == n
    finally:
        controller.shutdown()


# -- command line -----------------------------------------------------------------------

@pytest.mark.slow
def test_screenshot_command(lq28_path, tmp_path):
    out = tmp_path / "shot.png"
    exe = shutil.which("smp-gui") or f"{sys.prefix}/bin/smp-gui"
    proc = subprocess.run([exe, str(lq28_path), "--binary=0,1,0,1", "--optimize",
                           "--screenshot", str(out)], capture_output=True, text=True,
                          timeout=300, env={**__import__("os").environ,
                                            "QT_QPA_PLATFORM": "offscreen"})
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 10_000


# -- bad inputs (issue 6): a dialog naming the file/problem, the detection shown kept -----

def _eris_doc(des_sample):
    from badinputs import manifest_doc
    return manifest_doc(des_sample, "eris", n_exposures=2)


def _open_broken(window, tmp_path, doc):
    from badinputs import write_doc
    window.open_path(write_doc(tmp_path, doc))


def _manifest_missing_key(window, tmp_path, des_sample, monkeypatch):
    from badinputs import write_doc
    doc = _eris_doc(des_sample)
    doc.pop("ra")
    path = write_doc(tmp_path, doc)
    assert not window.open_path(path)          # read on the GUI thread: refused at once
    return [str(path), "missing required key 'ra'"]


def _stamp_truncated(window, tmp_path, des_sample, monkeypatch):
    from badinputs import detection_entry, truncated_copy
    doc = _eris_doc(des_sample)
    entry = detection_entry(doc)
    stamp = truncated_copy(entry["stamp"], tmp_path / Path(entry["stamp"]).name)
    entry["stamp"] = str(stamp)
    _open_broken(window, tmp_path, doc)
    return [str(stamp), "truncated"]


def _psf_garbage(window, tmp_path, des_sample, monkeypatch):
    from badinputs import detection_entry, garbage_file
    doc = _eris_doc(des_sample)
    entry = detection_entry(doc)
    psf = garbage_file(tmp_path / "x_piff.fits", 20000)
    entry["psf"] = str(psf)
    _open_broken(window, tmp_path, doc)
    return [str(psf), "not a FITS file"]


def _psf_needs_pixmappy(window, tmp_path, des_sample, monkeypatch):
    from badinputs import BlockImports, detection_entry, pixmappy_piff
    doc = _eris_doc(des_sample)
    entry = detection_entry(doc)
    psf = pixmappy_piff(tmp_path, Path(entry["psf"]))
    entry["psf"] = str(psf)
    monkeypatch.setattr(sys, "meta_path", [BlockImports("pixmappy")] + sys.meta_path)
    for name in [m for m in sys.modules if m.split(".")[0] == "pixmappy"]:
        monkeypatch.delitem(sys.modules, name)
    # Build in this process, where the import is blocked: the build server's children
    # would import a real pixmappy installed in the environment (./dev installs one).
    from smp_gui import controller
    monkeypatch.setattr(controller, "BUILD_IN_CHILD_PROCESS", False)
    _open_broken(window, tmp_path, doc)
    return [str(psf), "pixmappy", "not installed"]


def _grid_too_large(window, tmp_path, des_sample, monkeypatch):
    window.fit_controls.grid_size.setValue(2000)     # typed in the fit controls
    return ["2000x2000", "GiB"]


def _binary_on_top(window, tmp_path, des_sample, monkeypatch):
    boxes = window.fit_controls.binary_boxes
    for name, value in (("dx1", 0.5), ("dx2", 0.5), ("dy1", -0.25), ("dy2", -0.25)):
        boxes[name].setValue(value)                   # as typed, one field at a time
    return ["degenerate"]


BAD_INPUTS = {
    "manifest-missing-key": _manifest_missing_key,
    "stamp-truncated": _stamp_truncated,
    "psf-garbage": _psf_garbage,
    "psf-needs-pixmappy": _psf_needs_pixmappy,
    "grid-too-large": _grid_too_large,
    "binary-components-on-top": _binary_on_top,
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_dialog_keeps_detection(name, qtbot, window, lq28_path, tmp_path,
                                          des_sample, monkeypatch):
    before = open_and_wait(qtbot, window, lq28_path, mode="binary", offsets=START)
    title = window.windowTitle()
    with qtbot.waitSignal(window.errorShown, timeout=FIT_TIMEOUT_MS) as blocker:
        fragments = BAD_INPUTS[name](window, tmp_path, des_sample, monkeypatch)
    dialog = blocker.args[0]
    assert dialog is window.error_dialog and dialog.isVisible()
    for fragment in fragments:
        assert fragment in dialog.text(), (fragment, dialog.text())
    dialog.close()
    wait_settled_or_idle(qtbot, window)
    # the detection shown before is intact: same file, settings, title, panels
    assert window.manifest_path == lq28_path.resolve()
    assert window.settings == FitSettings() == window.fit_controls.settings()
    assert window.windowTitle() == title
    assert window.result.request.manifest_path == before.request.manifest_path
    if name != "binary-components-on-top":      # (the first fields typed were fitted)
        assert window.result is before
        assert window.offsets["binary"] == START
    # ... and the window is usable at once (the engine kept that detection's model)
    t0 = time.perf_counter()
    with qtbot.waitSignal(window.fitDisplayed, timeout=FIT_TIMEOUT_MS) as blocker:
        window.set_offsets((0.0, 1.2, 0.0, 1.0), "binary")
    assert time.perf_counter() - t0 < 2.0                   # no cold rebuild
    assert blocker.args[0].summary.offsets == (0.0, 1.2, 0.0, 1.0)
    assert blocker.args[0].fit.scene is before.fit.scene


def wait_settled_or_idle(qtbot, window):
    qtbot.waitUntil(lambda: not window.controller.busy, timeout=FIT_TIMEOUT_MS)
    qtbot.wait(20)


# -- sessions are written atomically and never replace a file without asking -------------

def test_session_save_refuses_overwrite(qtbot, window, lq28_path, tmp_path, monkeypatch):
    import smp_model.files as io_utils
    open_and_wait(qtbot, window, lq28_path, mode="binary", offsets=START)
    used = []
    real = io_utils.atomic_output
    monkeypatch.setattr(io_utils, "atomic_output",
                        lambda *a, **k: used.append(a) or real(*a, **k))
    path = tmp_path / "s.smpsession.json"
    assert window.save_session(path) == path and used      # through atomic_output
    before = path.read_bytes()
    window.set_offsets((0.0, 1.3, 0.0, 1.0), "binary")
    wait_settled(qtbot, window)
    asked = []
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *a, **k: asked.append(a) or QMessageBox.StandardButton.No)
    assert window.save_session(path) is None
    assert asked and path.read_bytes() == before
    # a write that fails half-way leaves the old file and no temporary file
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *a, **k: QMessageBox.StandardButton.Yes)

    def broken_write(self, *a, **k):
        raise OSError(28, "No space left on device")
    with monkeypatch.context() as m:
        m.setattr(Path, "write_text", broken_write)
        assert window.save_session(path) is None
    assert "No space left" in window.error_dialog.text()
    window.error_dialog.close()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    # asked and answered yes: replaced
    assert window.save_session(path) == path
    assert json.loads(path.read_text())["offsets"]["binary"] == [0.0, 1.3, 0.0, 1.0]


# -- issue 7 in the window ---------------------------------------------------------------

def test_optimize_single_position(qtbot, window, lq28_path, engine):
    open_and_wait(qtbot, window, lq28_path, mode="single", offsets=(0.0, 0.0))
    button = window.fit_controls.optimize_button
    assert button.text() == "Optimize position"
    assert "position" in window.menus.optimize_action.text()
    with qtbot.waitSignal(window.fitDisplayed, timeout=FIT_TIMEOUT_MS,
                          check_params_cb=lambda r: r.request.fit.optimize):
        button.click()
    best = engine.optimize_single((0.0, 0.0))
    row = window.result.summary.sources[0]
    for name in ("dx", "dy", "dx_err", "dy_err", "ra", "dec", "flux", "flux_err"):
        assert getattr(row, name) == pytest.approx(getattr(best.primary, name),
                                                   rel=1e-6, abs=1e-9), name
    assert window.offsets["single"] == pytest.approx((best.primary.dx, best.primary.dy))
    text = window.results_table.as_text()
    p = best.primary
    assert f"{p.dx:.3f} ± {p.dx_err:.3f}" in text and f"{p.dy:.3f} ± {p.dy_err:.3f}" in text
    assert f"{p.ra:.6f}" in text and f"{p.dec:.6f}" in text
    x, _ = window.markers.ellipses[0][0].getData()
    assert x is not None and len(x) > 0                     # error ellipse drawn
    window.fit_controls.set_mode("binary")
    assert window.fit_controls.optimize_button.text() == "Optimize positions"
    wait_settled(qtbot, window)


def test_shot_noise_option(qtbot, window, lq28_path, engine):
    open_and_wait(qtbot, window, lq28_path, mode="binary", offsets=START)
    fc = window.fit_controls
    assert not fc.gain.isEnabled()
    fc.gain.setValue(4.0)                                   # off: no refit
    with qtbot.waitSignal(window.fitDisplayed, timeout=FIT_TIMEOUT_MS,
                          check_params_cb=lambda r: r.summary.has_shot_noise):
        fc.shot_noise.setChecked(True)
    assert fc.gain.isEnabled()
    expected = engine.with_shot_noise(engine.fit_binary(START), 4.0, 1).shot_noise
    rows = window.result.summary.sources
    for k in range(2):
        assert rows[k].flux_sn == pytest.approx(expected.flux[k], rel=1e-9)
        assert rows[k].flux_err_sn == pytest.approx(expected.flux_err[k], rel=1e-9)
    names, table_rows = summary_rows(window.result.summary)
    shown_text = {name: [cell.text for cell in cells] for name, cells in table_rows}
    assert shown_text["flux_sn (ZP 30)"] == [f"{f:.1f}" for f in expected.flux]
    assert shown_text["err_sn"] == [f"{e:.1f}" for e in expected.flux_err]
    shown = [window.results_table.table.verticalHeaderItem(r).text()
             for r in range(window.results_table.table.rowCount())]
    assert "flux_sn (ZP 30)" in shown and "err_sn" in shown
    # the plain numbers stay those of the plain fit
    assert rows[0].flux == pytest.approx(engine.fit_binary(START).primary.flux, rel=1e-9)
    # a new gain refits
    with qtbot.waitSignal(window.fitDisplayed, timeout=FIT_TIMEOUT_MS,
                          check_params_cb=lambda r: r.summary.shot_noise_gain == 2.0):
        fc.gain.setValue(2.0)
    expected = engine.with_shot_noise(engine.fit_binary(START), 2.0, 1).shot_noise
    assert window.result.summary.sources[1].flux_err_sn == pytest.approx(
        expected.flux_err[1], rel=1e-9)
    assert window.session_state()["shot_noise"] == {"enabled": True, "gain": 2.0,
                                                     "iterations": 1}
    with qtbot.waitSignal(window.fitDisplayed, timeout=FIT_TIMEOUT_MS,
                          check_params_cb=lambda r: not r.summary.has_shot_noise):
        fc.shot_noise.setChecked(False)
    assert "flux_sn (ZP 30)" not in window.results_table.as_text()


def test_dropped_exposures_listed_in_the_browser(qtbot, window, lq28_path):
    result = open_and_wait(qtbot, window, lq28_path, mode="binary", offsets=START)
    assert len(result.dropped) == 2              # two exposures have no usable pixel
    label = window.browser.dropped_label
    assert label.isVisible()
    for reason in result.dropped:
        assert reason in label.text()


def test_exposure_diagnostics_in_browser(qtbot, window, lq28_path, engine):
    from smp_gui.inspector.exposure_browser import (COL_CHI2, COL_MAXRES, COL_OUTLIER,
                                                    OUTLIER_MARK)
    from smp_model.fit.diagnostics import exposure_diagnostics
    open_and_wait(qtbot, window, lq28_path, mode="binary", offsets=START)
    diag = exposure_diagnostics(engine.fit_binary(START))
    table = window.browser.table
    assert table.rowCount() == len(diag)
    for row in range(len(diag)):
        assert table.item(row, 1).text().startswith(str(diag["expnum"][row]))
        assert table.item(row, COL_CHI2).text() == f"{diag['chi2_per_pixel'][row]:.2f}"
        assert table.item(row, COL_MAXRES).text() == \
            f"{diag['max_abs_residual_sigma'][row]:.1f}"
        assert (table.item(row, COL_OUTLIER).text() == OUTLIER_MARK) == \
            bool(diag["outlier"][row])
    # an exposure flagged by the engine is marked (the sample has none: flag one)
    flagged = diag.copy()
    flagged["outlier"][3] = True
    window.browser.set_fit(window.result.fit, flagged)
    assert window.browser.outlier_rows() == [3]
    assert "outlier" in table.item(3, COL_OUTLIER).toolTip()
    window.browser.set_fit(window.result.fit, window.result.diagnostics)
    assert window.browser.outlier_rows() == []



def test_drag_refits_show_the_shown_panels_and_settle_to_the_full_fit(
        qtbot, window, lq28_path, engine, monkeypatch):
    """During a mouse drag each refit models only the shown exposure (not all of them) and
    the panels and flux table follow the marker; when the drag ends, the fit of where it
    ended fills the exposure list's columns with the numbers of a full engine fit."""
    from smp_gui.inspector.exposure_browser import COL_CHI2, COL_MAXRES
    from smp_model.fit.diagnostics import diagnostic_columns
    from smp_model.scene.model import SceneModel
    open_and_wait(qtbot, window, lq28_path, mode="binary", offsets=START)
    det = window.result.fit.scene.detection_index
    before = window.browser.diagnostics
    full_models = []
    real = SceneModel.model_stamps
    monkeypatch.setattr(SceneModel, "model_stamps",
                        lambda self, *a: full_models.append(1) or real(self, *a))
    during = []

    def on_shown(result):
        if window.edits.dragging:
            # what is on screen now: the panels and the table of this fit's offsets
            during.append((result, {k: window.panels_view.images[k].image.copy()
                                    for k in PANEL_KEYS}, window.browser.diagnostics))
    window.fitDisplayed.connect(on_shown)
    try:
        drag_marker(qtbot, window, 1, 0.8, 0.5, steps=6, pause_ms=120)
        wait_settled(qtbot, window)
    finally:
        window.fitDisplayed.disconnect(on_shown)
    assert len(during) >= 2
    n_during = len(full_models)
    for result, images, diagnostics in during:
        direct = engine.fit_binary(result.summary.offsets)
        assert result.summary.sources[1].flux == pytest.approx(direct.secondary.flux,
                                                                rel=1e-9)
        assert result.summary.chi2 == pytest.approx(direct.chi2, rel=1e-10)
        expected = five_panels(direct)
        for key in PANEL_KEYS:
            np.testing.assert_allclose(images[key], expected[key], rtol=1e-9, atol=1e-8,
                                       err_msg=key)
        assert diagnostics is before    # the list's columns wait for the drag's end
    # no refit of the drag modelled every exposure: only the fit when it ended did
    assert n_during == 1
    assert all(result.fit.preview for result, _, _ in during)
    # settled: the fit of the final offsets, a full one
    shown = window.result
    assert not shown.preview and not window.model.is_stale
    offsets = window.offsets["binary"]
    assert shown.summary.offsets == pytest.approx(offsets, abs=1e-12)
    direct = engine.fit_binary(offsets)
    assert shown.fit.chi2 == pytest.approx(direct.chi2, rel=1e-12)
    # the exposure list shows the numbers of the full record of the shown fit ...
    got = window.browser.diagnostics
    full = diagnostic_columns(shown.fit)
    reference = diagnostic_columns(direct)
    table = window.browser.table
    for name in ("chi2", "chi2_per_pixel", "max_abs_residual_sigma", "outlier"):
        np.testing.assert_array_equal(got[name], full[name], err_msg=name)
        # ... which are the engine's at these offsets
        np.testing.assert_allclose(np.asarray(got[name], float),
                                   np.asarray(reference[name], float), rtol=1e-9,
                                   err_msg=name)
    for row in range(table.rowCount()):
        assert table.item(row, COL_CHI2).text() == f"{full['chi2_per_pixel'][row]:.2f}"
        assert table.item(row, COL_MAXRES).text() == \
            f"{full['max_abs_residual_sigma'][row]:.1f}"
    assert shown.fit.chi2 == float(shown.fit.chi2_per_exposure.sum())
    for key in PANEL_KEYS:
        np.testing.assert_array_equal(window.panels_view.images[key].image,
                                      five_panels(shown.fit, det)[key], err_msg=key)


# -- speed: a drag never computes the full scene covariance -------------------------------

def test_drag_does_not_compute_full_covariance(qtbot, window, lq28_path, engine,
                                               monkeypatch):
    from smp_model.scene.model import SceneModel
    calls = []
    real = SceneModel.full_covariance
    monkeypatch.setattr(SceneModel, "full_covariance",
                        lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    engine.fit_binary(START)
    if calls:
        pytest.skip("the engine still computes the scene covariance with every fit")
    open_and_wait(qtbot, window, lq28_path, mode="binary", offsets=START)
    for n in range(5):
        window.set_offsets((0.0, 1.0 + 0.1 * n, 0.0, 1.0), "binary")
        wait_settled(qtbot, window)
    assert calls == []


def test_help_states_that_psf_files_run_code(qtbot, window):
    """The trust boundary is said in the app itself (issue 6 item 5), with the CLI's words."""
    from smp_model.errors import PSF_FILES_RUN_CODE
    help_menu = [a for a in window.menuBar().actions() if a.text() == "&Help"][0].menu()
    assert [a.text() for a in help_menu.actions()] == ["&Keyboard shortcuts…", "&Data safety…"]
    box = window.show_data_safety()
    assert "run" in box.text() and "code" in box.text() and box.text() == PSF_FILES_RUN_CODE
    box.close()


# -- opening by recent files and drag-and-drop; cancelling a cold build ----------------------

@pytest.fixture
def fresh_window(qapp, tmp_path_factory):
    """A window of its own: its worker has built nothing yet (every open is cold)."""
    yield from _window_lifetime(tmp_path_factory)


def test_cancel_button_stops_a_cold_build(qtbot, fresh_window, lq28_path):
    import multiprocessing

    from smp_gui import loader
    window = fresh_window
    shown = []
    window.fitDisplayed.connect(shown.append)
    assert window.open_detection(lq28_path, mode="binary", offsets=START)
    qtbot.waitUntil(lambda: window.progress_bar.isVisible(), timeout=FIT_TIMEOUT_MS)
    qtbot.mouseClick(window.fit_controls.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not window.controller.busy, timeout=FIT_TIMEOUT_MS)
    assert not window.progress_bar.isVisible()
    assert "cancelled" in window.statusBar().currentMessage()
    # The build process is gone, nothing was shown, and the window still works.
    assert [p for p in multiprocessing.active_children()
            if p.name == loader.PROCESS_NAME] == []
    qtbot.wait(300)
    assert shown == [] and window.result is None
    result = open_and_wait(qtbot, window, lq28_path, mode="binary", offsets=START)
    assert result.summary.kind == "binary"


def test_recent_files_menu_reopens_a_detection(qtbot, fresh_window, des_sample, lq28_path):
    window = fresh_window
    eris = des_sample / "eris" / "detection.toml"
    open_and_wait(qtbot, window, eris)
    open_and_wait(qtbot, window, lq28_path)
    assert window.recent_files()[:2] == [str(lq28_path), str(eris)]
    actions = {a.text(): a for a in window.menus.recent_menu.actions()}
    assert list(actions)[:2] == [str(lq28_path), str(eris)]
    with qtbot.waitSignal(window.fitDisplayed, timeout=FIT_TIMEOUT_MS) as blocker:
        actions[str(eris)].trigger()
    assert window.manifest_path == eris
    assert blocker.args[0].fit.manifest.name == DetectionManifest.read(eris).name
    assert window.recent_files()[:2] == [str(eris), str(lq28_path)]
    # The list is kept in the settings store: a new window sees it.
    store = window.store
    store.sync()
    again = InspectorWindow(store)
    try:
        assert again.recent_files()[:2] == [str(eris), str(lq28_path)]
    finally:
        again.shutdown()
        again.close()


def test_dropping_a_manifest_opens_it(qtbot, fresh_window, des_sample):
    from PyQt6.QtCore import QMimeData, QUrl
    from PyQt6.QtGui import QDragEnterEvent, QDropEvent
    window = fresh_window
    eris = des_sample / "eris" / "detection.toml"
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(eris))])
    where = QPointF(window.width() / 2, window.height() / 2)
    enter = QDragEnterEvent(where.toPoint(), Qt.DropAction.CopyAction, mime,
                            Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, enter)
    assert enter.isAccepted()
    drop = QDropEvent(where, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.fitDisplayed, timeout=FIT_TIMEOUT_MS) as blocker:
        QApplication.sendEvent(window, drop)
    assert window.manifest_path == eris
    assert blocker.args[0].fit.manifest.name == DetectionManifest.read(eris).name
    # Text that is not a local file is refused at the door.
    other = QMimeData()
    other.setText("not a file")
    refused = QDragEnterEvent(where.toPoint(), Qt.DropAction.CopyAction, other,
                              Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, refused)
    assert not refused.isAccepted()


# -- panel grid ------------------------------------------------------------------------------

def test_best_columns_fills_the_space():
    from smp_gui.inspector.panel_items import best_columns
    assert best_columns(1500, 300, 5, 1.0) == 5          # wide: one row
    assert best_columns(300, 1500, 5, 1.0) == 1          # narrow and tall: one column
    assert best_columns(630, 720, 5, 1.0, 22) == 3       # 3 + 2 (2 columns: 4 % larger)
    assert best_columns(400, 1000, 5, 2.0) == 1          # wide stamps stack


def test_tall_window_shows_panels_in_rows(qtbot, window, lq28_path):
    open_and_wait(qtbot, window, lq28_path, mode="binary", offsets=START)
    view = window.panels_view
    grid = view.graphics.ci.layout

    def cells():
        found = {}
        for n in range(grid.count()):
            item = grid.itemAt(n)
            for key, plot in view.plots.items():
                if item is plot:
                    found[key] = (round(plot.geometry().top()), round(plot.geometry().left()))
        return found

    # The Δχ² map of an earlier test shares the central layout (its line under the
    # panels), which would lay the panels out again at once: a bare grid here.
    window.chi2map_view.hide()
    QApplication.processEvents()
    view.graphics.resize(1500, 300)
    qtbot.waitUntil(lambda: view.columns == 5)
    view.graphics.resize(700, 900)
    qtbot.waitUntil(lambda: view.columns < 5)
    QApplication.processEvents()
    rows = {top for top, _ in cells().values()}
    assert len(rows) == math.ceil(5 / view.columns) > 1
    widths = {round(p.geometry().width()) for p in view.plots.values()}
    assert max(widths) - min(widths) <= 2             # equal panels
    # Still linked and still showing the engine's arrays.
    assert view.images["residual"].image is not None
    view.plots["image"].getViewBox().setXRange(3, 9, padding=0)
    assert view.plots["residual"].getViewBox().viewRange()[0] == pytest.approx([3, 9])


def test_thread_build_fallback_gives_the_same_fit(qtbot, fresh_window, des_sample,
                                                  monkeypatch):
    """Without the build process (BUILD_IN_CHILD_PROCESS False, or no forkserver), the
    worker thread builds the detection itself; the window shows the same numbers."""
    import multiprocessing

    from smp_gui import controller, loader
    monkeypatch.setattr(controller, "BUILD_IN_CHILD_PROCESS", False)
    eris = des_sample / "eris" / "detection.toml"
    seen = []
    monkeypatch.setattr(loader, "build_in_child", lambda *a, **k: seen.append(a))
    result = open_and_wait(qtbot, fresh_window, eris)
    assert seen == []
    assert [p for p in multiprocessing.active_children()
            if p.name == loader.PROCESS_NAME] == []
    direct = DetectionPhotometry(eris).fit_single()
    assert result.summary.sources[0].flux == pytest.approx(direct.flux, rel=1e-12)
