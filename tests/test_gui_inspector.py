"""The inspector as the record of a measurement (issue 14), driven as a user would on the
small simulated demo: real key presses on the window, real menu actions, mouse drags.
Each test names the defect it guards against."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyqtgraph as pg
import pytest
from astropy.table import Table
from PyQt6.QtCore import QEvent, QPoint, QPointF, Qt
from PyQt6.QtGui import QMouseEvent
from PyQt6.QtWidgets import QApplication, QFileDialog, QMessageBox

from smp_model.outputs.figures import five_panel_figure
from smp_model.simulation.demo import demo_manifest_path
from tests.helpers import shown_inspector, wait_layout_still
from tests.test_gui import _send_mouse, drag_marker, exported, press, redo, undo

pytestmark = pytest.mark.gui
pg.setConfigOption("mouseRateLimit", -1)

START = (0.0, 1.0, 0.0, 1.0)
TIMEOUT_MS = 60_000
CTRL = Qt.KeyboardModifier.ControlModifier


@pytest.fixture(scope="module")
def demo():
    return demo_manifest_path()


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("store")


@pytest.fixture(scope="module")
def window(qapp, store_dir):
    # Sessions saved under tmp_path name the demo's PSF files: a folder the user trusts
    # (the question itself: tests/test_gui_careful.py).
    with shown_inspector(store_dir / "smp.ini", [demo_manifest_path().parent]) as window:
        yield window


def settled(qtbot, window):
    qtbot.waitUntil(lambda: not window.controller.busy and window.result is not None
                    and window.result.request_id == window.controller.last_submitted,
                    timeout=TIMEOUT_MS)


def opened(qtbot, window, path, **kwargs):
    with qtbot.waitSignal(window.fitDisplayed, timeout=TIMEOUT_MS):
        assert window.open_detection(path, **kwargs)
    settled(qtbot, window)


def menu_action(window, *path) -> "QAction":
    actions = window.menuBar().actions()
    for name in path:
        action = next(a for a in actions if a.text().replace("&", "").startswith(name))
        actions = action.menu().actions() if action.menu() else []
    return action


# -- 1: undo and redo exist ----------------------------------------------------------------

def test_ctrl_z_undoes_a_drag_named_in_the_edit_menu(qtbot, window, demo):
    opened(qtbot, window, demo, mode="binary", offsets=START)
    assert not menu_action(window, "Edit", "Undo").isEnabled()
    drag_marker(qtbot, window, 1, 0.8, 0.0)
    settled(qtbot, window)
    moved = window.offsets["binary"]
    assert moved[1] == pytest.approx(1.8, abs=0.3)
    undo_item = menu_action(window, "Edit", "Undo")
    assert undo_item.text() == "&Undo move secondary" and undo_item.isEnabled()
    undo(qtbot, window)
    settled(qtbot, window)
    assert window.offsets["binary"] == START and window.result.summary.offsets == START
    redo(qtbot, window)
    settled(qtbot, window)
    assert window.offsets["binary"] == moved and window.result.summary.offsets == moved
    menu_action(window, "Edit", "Undo").trigger()          # the menu item itself
    settled(qtbot, window)
    assert window.offsets["binary"] == START


# -- 2: arrow keys act on the control that has the focus ----------------------------------

def test_down_in_the_stretch_combo_changes_the_stretch_not_the_offsets(qtbot, window, demo):
    opened(qtbot, window, demo, mode="binary", offsets=START)
    combo = window.panels_view.stretch_box
    combo.setFocus()
    qtbot.keyClick(combo, Qt.Key.Key_Down)
    settled(qtbot, window)
    assert window.panels_view.stretch == "zscale"
    assert window.offsets["binary"] == START
    qtbot.keyClick(combo, Qt.Key.Key_Up)
    # with the panels focused the same key nudges the selected marker
    window.panels_view.graphics.setFocus()
    qtbot.keyClick(window.panels_view.graphics, Qt.Key.Key_Down)
    settled(qtbot, window)
    assert window.offsets["binary"] != START
    undo(qtbot, window)
    settled(qtbot, window)


# -- 3: no stale numbers -------------------------------------------------------------------

def test_markers_refit_during_a_map_and_cancel_keeps_their_numbers(qtbot, window, demo):
    opened(qtbot, window, demo, mode="binary", offsets=START)
    window.request_chi2map(half_width=5.0, step=0.05, confirmed=True)   # 40401 cells
    qtbot.wait(300)
    window.panels_view.graphics.setFocus()
    qtbot.keyClick(window.panels_view.graphics, Qt.Key.Key_1)       # the primary
    qtbot.keyClick(window.panels_view.graphics, Qt.Key.Key_Right)
    # the refit runs between two rows of the map: the numbers follow the marker
    qtbot.waitUntil(lambda: not window.is_stale, timeout=TIMEOUT_MS)
    assert window.controller.busy and window.chi2map_control.result is None   # map still running
    assert window.result.summary.offsets == pytest.approx((0.1, 1.0, 0.0, 1.0))
    press(qtbot, window, Qt.Key.Key_Escape)
    settled(qtbot, window)
    assert not window.is_stale and window.results_table.isEnabled()
    assert window.result.summary.offsets == pytest.approx(window.offsets["binary"])
    assert window.fit_controls.offsets("binary") == pytest.approx(window.offsets["binary"])
    undo(qtbot, window)
    settled(qtbot, window)


def test_cancel_reruns_a_dropped_refit(qtbot, window, demo):
    opened(qtbot, window, demo, mode="binary", offsets=START)
    window.panels_view.graphics.setFocus()
    qtbot.keyClick(window.panels_view.graphics, Qt.Key.Key_1)       # the primary
    qtbot.keyClick(window.panels_view.graphics, Qt.Key.Key_Right)
    press(qtbot, window, Qt.Key.Key_Escape)      # at once: the refit is dropped ...
    settled(qtbot, window)                       # ... and run again
    assert not window.is_stale
    assert window.result.summary.offsets == pytest.approx((0.1, 1.0, 0.0, 1.0))
    undo(qtbot, window)
    settled(qtbot, window)


def test_a_long_map_asks_first(qtbot, window, demo):
    opened(qtbot, window, demo, mode="binary", offsets=START)
    submitted = window.controller.last_submitted
    assert window.request_chi2map(half_width=10.0, step=0.02) is None   # 1001 x 1001
    box = window.chi2map_control.confirm_dialog
    assert box is not None and box.isVisible() and "1002001 cells" in box.text()
    box.button(QMessageBox.StandardButton.No).click()
    assert window.controller.last_submitted == submitted and not window.controller.busy


def test_export_and_save_refuse_stale_numbers(qtbot, window, demo, tmp_path):
    opened(qtbot, window, demo, mode="binary", offsets=START)
    window.controller.cancel()                   # as if the refit had been cancelled
    window.set_offsets((0.0, 1.5, 0.0, 1.0), "binary")
    window.controller.cancel()
    assert window.is_stale
    qtbot.waitUntil(lambda: not window.results_table.isEnabled(), timeout=2000)
    assert window.stale_label.text()
    assert window.export_table(tmp_path / "t.ecsv") is None
    assert "not those of the offsets on screen" in window.error_dialog.text()
    window.error_dialog.close()
    assert window.save_session(tmp_path / "s.json") is None
    window.error_dialog.close()
    assert not (tmp_path / "t.ecsv").exists() and not (tmp_path / "s.json").exists()
    submitted = window.controller.last_submitted
    press(qtbot, window, Qt.Key.Key_F5)          # refit: numbers belong again
    assert window.controller.last_submitted > submitted
    settled(qtbot, window)
    assert not window.is_stale
    assert window.save_session(tmp_path / "s.json") is not None


# -- 4: what you see is what you export ----------------------------------------------------

def test_figure_export_uses_the_panels_style(qtbot, window, demo, tmp_path):
    opened(qtbot, window, demo, mode="binary", offsets=START)
    window.panels_view.set_colormap("viridis")
    press(qtbot, window, Qt.Key.Key_3, CTRL)                 # min/max stretch
    lo, hi = window.panels_view.levels()
    path = exported(qtbot, window, window.export_figure, tmp_path / "shown.png")
    import matplotlib.image as mpimg
    rgb = mpimg.imread(path)[..., :3]
    colourful = np.ptp(rgb, axis=-1) > 0.2                    # not grey: viridis is drawn
    assert colourful.mean() > 0.05
    style = window.panels_view.style()
    assert style.levels == (lo, hi) and style.colormap == "viridis"
    fig = five_panel_figure(window.result.fit, style=style)
    image = fig.axes[0].images[0]
    assert image.get_clim() == pytest.approx((lo, hi))
    assert len(fig.axes[0].images) == 2                      # the mask overlay
    assert len(five_panel_figure(window.result.fit).axes[0].images) == 1   # published
    window.panels_view.set_colormap("gray_r")
    press(qtbot, window, Qt.Key.Key_1, CTRL)


def test_export_dialog_starts_outside_the_data_and_adds_the_extension(
        qtbot, window, demo, tmp_path, monkeypatch):
    opened(qtbot, window, demo, mode="binary", offsets=START)
    window.store.setValue("export_dir", str(tmp_path))
    seen = []

    def dialog(parent, caption, start, filters):
        seen.append(start)
        return str(tmp_path / "mine"), "CSV (*.csv)"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", dialog)
    with qtbot.waitSignal(window.exportFinished, timeout=TIMEOUT_MS) as blocker:
        menu_action(window, "File", "Export", "Flux table").trigger()
    assert Path(seen[0]).parent == tmp_path and Path(seen[0]).name.startswith("demo-binary")
    assert Path(blocker.args[0]) == tmp_path / "mine.csv"
    assert len(Table.read(tmp_path / "mine.csv")) == 2


# -- 5: layout -----------------------------------------------------------------------------

def stamp_fills_its_panel(window) -> float:
    """On-screen size of the stamp over the largest it could be in its panel (1: fills)."""
    pv = window.panels_view
    vb = pv.plots["image"].getViewBox()
    ny, nx = pv.panels["image"].shape
    corner0 = vb.mapViewToScene(QPointF(-0.5, -0.5))
    corner1 = vb.mapViewToScene(QPointF(nx - 0.5, ny - 0.5))
    width = abs(corner1.x() - corner0.x())
    box = vb.sceneBoundingRect()
    return width / min(box.width(), box.height() * nx / ny)


def test_panels_fill_the_window_after_the_map_and_a_resize(qtbot, window, demo):
    opened(qtbot, window, demo, mode="binary", offsets=START)
    window.resize(1280, 800)
    qtbot.wait(100)
    with qtbot.waitSignal(window.chi2MapDisplayed, timeout=TIMEOUT_MS):
        window.request_chi2map(half_width=0.4, step=0.2)
    press(qtbot, window, Qt.Key.Key_M, CTRL | Qt.KeyboardModifier.ShiftModifier)  # hide
    assert not window.chi2map_view.isVisible()
    window.resize(1900, 1000)
    qtbot.wait(200)
    assert stamp_fills_its_panel(window) == pytest.approx(1.0, abs=0.05)
    window.panels_view.graphics.setFocus()       # the user clicks on the panels
    press(qtbot, window, Qt.Key.Key_Plus)        # keyboard zoom
    qtbot.wait(100)
    assert stamp_fills_its_panel(window) == pytest.approx(1.25, abs=0.05)
    press(qtbot, window, Qt.Key.Key_0)           # reset zoom
    qtbot.wait(100)
    assert stamp_fills_its_panel(window) == pytest.approx(1.0, abs=0.05)
    window.resize(1600, 900)


def test_readout_fits_a_1280_window(qtbot, window, demo):
    opened(qtbot, window, demo, mode="binary", offsets=START)
    window.resize(1280, 800)
    qtbot.wait(100)
    label = window.panels_view.readout
    text = window.panels_view.readout_text(3.0, 4.0)
    label.setText(text)
    metrics = label.fontMetrics()
    lines = text.split("\n")
    assert len(lines) == 4 and "σ " in text and "mask " in text and "residual " in lines[3]
    assert label.height() >= 4 * metrics.lineSpacing()
    widths = [metrics.horizontalAdvance(line) for line in lines]
    assert max(widths) <= label.width(), (widths, label.width())
    # sexagesimal RA/Dec beside the degrees
    assert ":" in lines[1].split("RA ")[1]
    window.resize(1600, 900)


def test_map_has_a_colour_bar_and_a_hide_toggle(qtbot, window, demo):
    opened(qtbot, window, demo, mode="binary", offsets=START)
    with qtbot.waitSignal(window.chi2MapDisplayed, timeout=TIMEOUT_MS):
        window.request_chi2map(half_width=0.6, step=0.2)
    view = window.chi2map_view
    lo, hi = view.colorbar.levels()
    delta = view.chi2map.delta_chi2
    assert lo == 0.0 and hi == pytest.approx(max(np.nanpercentile(delta, 99), 1.5 * 11.83))
    assert view.isVisible()
    press(qtbot, window, Qt.Key.Key_M, CTRL | Qt.KeyboardModifier.ShiftModifier)
    assert not view.isVisible()
    press(qtbot, window, Qt.Key.Key_M, CTRL | Qt.KeyboardModifier.ShiftModifier)
    assert view.isVisible()
    view.hide()


def test_a_detection_that_fails_is_not_in_recent(qtbot, window, demo, tmp_path):
    opened(qtbot, window, demo, mode="binary", offsets=START)
    broken = tmp_path / "broken"
    broken.mkdir()
    text = demo.read_text()
    for line in text.splitlines():
        if line.strip().startswith("stamp"):
            text = text.replace(line, 'stamp = "missing.fits"', 1)
            break
    (broken / "detection.toml").write_text(text)
    with qtbot.waitSignal(window.errorShown, timeout=TIMEOUT_MS):
        window.open_detection(broken / "detection.toml")
    window.error_dialog.close()
    assert str((broken / "detection.toml").resolve()) not in window.recent_files()
    assert window.recent_files()[0] == str(demo.resolve())


# -- 6: viewer habits ----------------------------------------------------------------------

def test_viewer_keys(qtbot, window, demo):
    opened(qtbot, window, demo, mode="binary", offsets=START)
    pv = window.panels_view
    press(qtbot, window, Qt.Key.Key_I)
    assert pv.inverted and menu_action(window, "View", "Invert").isChecked()
    press(qtbot, window, Qt.Key.Key_I)
    assert not pv.inverted
    press(qtbot, window, Qt.Key.Key_C)
    assert pv.crosshair and pv.crosshairs[0].isVisible()
    press(qtbot, window, Qt.Key.Key_C)
    # regions (target's sky position, scene grid) and compass: shown, and G / K hide them
    assert pv.overlay_items.target_marks[0].isVisible() and pv.overlay_items.grid_outlines[0].isVisible()
    assert pv.overlay_items.compass_lines.isVisible() and pv.overlay_items.scale_label.toPlainText().endswith('"')
    press(qtbot, window, Qt.Key.Key_G)
    press(qtbot, window, Qt.Key.Key_K)
    assert not pv.overlay_items.target_marks[0].isVisible() and not pv.overlay_items.compass_lines.isVisible()
    press(qtbot, window, Qt.Key.Key_G)
    press(qtbot, window, Qt.Key.Key_K)
    assert pv.overlay_items.grid_outlines[0].isVisible() and pv.overlay_items.compass_lines.isVisible()
    first = window.browser.current_index
    press(qtbot, window, Qt.Key.Key_BracketRight)
    assert window.browser.current_index == (first + 1) % len(window.browser.expnums())
    press(qtbot, window, Qt.Key.Key_BracketLeft)
    assert window.browser.current_index == first
    for n, stretch in enumerate(("published", "zscale", "percentile", "minmax", "sqrt",
                                 "log", "asinh", "histeq")):
        press(qtbot, window, getattr(Qt.Key, f"Key_{n + 1}"), CTRL)
        assert pv.stretch == stretch
    press(qtbot, window, Qt.Key.Key_1, CTRL)
    published = pv.levels()
    # right-drag: contrast and bias, as in DS9; R resets
    gv = pv.graphics
    viewport = gv.viewport()
    centre = gv.mapFromScene(pv.view_to_scene("image", 5.0, 5.0))
    right = Qt.MouseButton.RightButton

    def send(kind, pos, buttons, button):
        QApplication.sendEvent(viewport, QMouseEvent(
            kind, QPointF(pos), QPointF(viewport.mapToGlobal(pos)), button, buttons,
            Qt.KeyboardModifier.NoModifier))
    send(QEvent.Type.MouseButtonPress, centre, right, right)
    for step in range(1, 6):
        send(QEvent.Type.MouseMove, centre + QPoint(8 * step, -6 * step), right,
             Qt.MouseButton.NoButton)
        qtbot.wait(10)
    send(QEvent.Type.MouseButtonRelease, centre + QPoint(40, -30), Qt.MouseButton.NoButton,
         right)
    assert pv.levels() != pytest.approx(published)
    press(qtbot, window, Qt.Key.Key_R)
    assert pv.levels() == pytest.approx(published)
    # every habit is listed in Help > Keyboard shortcuts
    window.show_shortcuts().close()
    listed = dict(window.shortcut_table())
    for name in ("Invert colour map", "Crosshair", "Next exposure", "Blink exposures",
                 "Zoom in", "Reset zoom (fit the stamp)", "Reset levels", "Undo"):
        assert any(a.startswith(name) for a in listed), name


# -- 6: exposures shown sky-aligned --------------------------------------------------------
# The demo's exposures are simulated with CCD axes at random angles on the sky (the
# detection exposure's +x points 8 degrees east of north), so the stamp display is not
# north up.  Truths come from the exposure's WCS; screen positions from the image item
# as drawn.

def sky_point(exposure, d_east: float, d_north: float) -> tuple[float, float]:
    """Stamp coordinates of the sky point (d_east, d_north) arcsec from the target."""
    ra0, dec0 = exposure.pixel_to_sky(*exposure.target_xy)
    ra = float(ra0) + d_east / 3600.0 / np.cos(np.radians(float(dec0)))
    x, y = exposure.sky_to_pixel(ra, float(dec0) + d_north / 3600.0)
    return float(x) - exposure.origin[0], float(y) - exposure.origin[1]


def on_screen(window, u: float, v: float) -> np.ndarray:
    """Scene position (y down) where the image panel draws stamp point (u, v): through
    the image item itself (its pixel [j, i] spans local (i, j) to (i + 1, j + 1)), once
    the panels have been repainted (pyqtgraph applies a new range at the next paint)."""
    QApplication.processEvents()
    point = window.panels_view.images["image"].mapToScene(QPointF(u + 0.5, v + 0.5))
    return np.array([point.x(), point.y()])


def shown_exposure(window):
    return window.result.fit.scene.exposures[window.selected_index]


def screen_directions(window) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors on screen (x right, y UP) from the target to 1" north and 1" east."""
    ex = shown_exposure(window)
    target = on_screen(window, *sky_point(ex, 0.0, 0.0))
    out = []
    for d_east, d_north in ((0.0, 1.0), (1.0, 0.0)):
        step = on_screen(window, *sky_point(ex, d_east, d_north)) - target
        step[1] = -step[1]
        out.append(step / np.hypot(*step))
    return out[0], out[1]


def north_up_east_left(window) -> bool:
    north, east = screen_directions(window)
    return bool(north == pytest.approx((0.0, 1.0), abs=0.01)
                and east == pytest.approx((-1.0, 0.0), abs=0.01))


@pytest.fixture
def sky_off(window):
    """Leave the shared window as the other tests expect it: not sky-aligned."""
    yield
    if window.panels_view.sky_aligned:
        menu_action(window, "View", "Sky-aligned").trigger()


def test_sky_aligned_from_the_menu_and_the_key(qtbot, window, demo, sky_off):
    opened(qtbot, window, demo, mode="binary", offsets=START)
    pv = window.panels_view
    assert not north_up_east_left(window)                  # the CCD axes are rotated
    action = menu_action(window, "View", "Sky-aligned")
    action.trigger()
    assert action.isChecked() and north_up_east_left(window)
    # the compass says so: N points up, E left, in the panel's view coordinates
    anchor = np.array(pv.overlay_items.compass_lines.getData())[:, 0]
    for label, want in zip(pv.overlay_items.compass_labels, ((0.0, 1.0), (-1.0, 0.0))):
        arrow = np.array([label.pos().x(), label.pos().y()]) - anchor
        assert arrow / np.hypot(*arrow) == pytest.approx(want, abs=1e-6)
    press(qtbot, window, Qt.Key.Key_A)                     # the key toggles it off ...
    assert not action.isChecked() and not north_up_east_left(window)
    press(qtbot, window, Qt.Key.Key_A)                     # ... and on
    assert action.isChecked() and north_up_east_left(window)
    assert pv.style().sky_aligned                           # what you see is exported
    # stepping through exposures (each at another angle) keeps the sky in place
    ex = shown_exposure(window)
    target = on_screen(window, *sky_point(ex, 0.0, 0.0))
    arcsec = np.hypot(*(on_screen(window, *sky_point(ex, 1.0, 0.0)) - target))
    for _ in range(len(window.browser.expnums()) - 1):
        press(qtbot, window, Qt.Key.Key_BracketRight)
        ex = shown_exposure(window)
        assert north_up_east_left(window), ex.entry.expnum
        assert on_screen(window, *sky_point(ex, 0.0, 0.0)) == pytest.approx(target, abs=0.5)
        step = np.hypot(*(on_screen(window, *sky_point(ex, 1.0, 0.0)) - target))
        assert step == pytest.approx(arcsec, rel=0.005)    # one angular scale
    press(qtbot, window, Qt.Key.Key_BracketRight)          # back to the detection
    assert window.selected_index == window.result.fit.scene.detection_index
    listed = dict(window.shortcut_table())
    assert listed["Sky-aligned (north up, east left)"] == "A"     # Help > Keyboard shortcuts


def test_sky_aligned_drag_puts_the_secondary_under_the_mouse(qtbot, window, demo, sky_off):
    opened(qtbot, window, demo, mode="binary", offsets=START)
    press(qtbot, window, Qt.Key.Key_A)
    assert north_up_east_left(window)
    ex = shown_exposure(window)
    source = window.result.fit.sources[1]
    ra0, dec0 = (float(c) for c in ex.pixel_to_sky(source.x, source.y))
    # drag the secondary 30 screen px to the right: due west on the sky
    pv, gv = window.panels_view, window.panels_view.graphics
    viewport = gv.viewport()
    start = gv.mapFromScene(pv.view_to_scene("image", *window.markers.positions[1]))
    none, left = Qt.MouseButton.NoButton, Qt.MouseButton.LeftButton
    _send_mouse(viewport, QEvent.Type.MouseMove, start, none)      # hover first
    qtbot.wait(15)
    _send_mouse(viewport, QEvent.Type.MouseButtonPress, start, left)
    for n in range(1, 7):
        _send_mouse(viewport, QEvent.Type.MouseMove, start + QPoint(5 * n, 0), left)
        qtbot.wait(15)
    end = start + QPoint(30, 0)
    _send_mouse(viewport, QEvent.Type.MouseButtonRelease, end, none)
    settled(qtbot, window)
    # the marker is under the mouse
    assert np.array([gv.mapFromScene(pv.view_to_scene(
        "image", *window.markers.positions[1])).x(), 0.0]) == pytest.approx(
            [end.x(), 0.0], abs=1.0)
    # the fitted secondary moved 30 screen px due west (RA down, Dec kept), by the WCS
    target = on_screen(window, *sky_point(ex, 0.0, 0.0))
    px_per_arcsec = np.hypot(*(on_screen(window, *sky_point(ex, 1.0, 0.0)) - target))
    scene_per_widget = 1.0 / gv.transform().m11()
    moved_arcsec = 30 * scene_per_widget / px_per_arcsec
    fit = window.result.fit
    assert fit.published_offsets == pytest.approx(window.offsets["binary"])
    moved = fit.sources[1]
    ra1, dec1 = (float(c) for c in ex.pixel_to_sky(moved.x, moved.y))
    west = (ra0 - ra1) * 3600.0 * np.cos(np.radians(dec0))
    assert west == pytest.approx(moved_arcsec, abs=0.03)
    assert (dec1 - dec0) * 3600.0 == pytest.approx(0.0, abs=0.03)
    # the offsets changed by the CCD displacement of that sky move; the primary stayed
    x, y = ex.sky_to_pixel(ra0 - moved_arcsec / 3600.0 / np.cos(np.radians(dec0)), dec0)
    offsets = window.offsets["binary"]
    assert (offsets[1] - START[1], offsets[3] - START[3]) == pytest.approx(
        (float(x) - source.x, float(y) - source.y), abs=0.1)
    assert (offsets[0], offsets[2]) == (START[0], START[2])
    # the Up key (panels focused) nudges the selected marker 0.1 px up on screen: north
    window.panels_view.graphics.setFocus()
    qtbot.keyClick(window.panels_view.graphics, Qt.Key.Key_Up)
    settled(qtbot, window)
    ddx, ddy = (window.offsets["binary"][1] - offsets[1],
                window.offsets["binary"][3] - offsets[3])
    assert np.hypot(ddx, ddy) == pytest.approx(0.1)
    x, y = moved.x, moved.y
    ra2, dec2 = (float(c) for c in ex.pixel_to_sky(x + 10 * ddx, y + 10 * ddy))
    east = (ra2 - ra1) * np.cos(np.radians(dec1))
    assert np.degrees(np.arctan2(east, dec2 - dec1)) == pytest.approx(0.0, abs=1.0)


def readout_degrees(line: str) -> tuple[float, float]:
    """(RA, Dec) degrees of the readout's sky line ("RA hh:mm:ss = d°  Dec ... = d°")."""
    ra, dec = (float(part.split("=")[1].split("°")[0]) for part in line.split("Dec"))
    return ra, dec


def test_sky_aligned_readout_under_the_cursor(qtbot, window, demo, sky_off):
    opened(qtbot, window, demo, mode="binary", offsets=START)
    press(qtbot, window, Qt.Key.Key_A)
    pv, gv = window.panels_view, window.panels_view.graphics
    ex = shown_exposure(window)
    # the sky point 2" north and 1" east of the target: sky-aligned, the panels' view
    # coordinates are arcsec from the target, x = -east, y = north
    u, v = sky_point(ex, 1.0, 2.0)
    scene = pv.plots["image"].getViewBox().mapViewToScene(QPointF(-1.0, 2.0))
    assert on_screen(window, u, v) == pytest.approx([scene.x(), scene.y()], abs=0.5)
    widget = gv.mapFromScene(scene)
    _send_mouse(gv.viewport(), QEvent.Type.MouseMove, widget, Qt.MouseButton.NoButton)
    lines = pv.readout.text().split("\n")
    x, y = (float(part.split("=")[1]) for part in lines[0].split(" | ")[0][4:].split()[:2])
    # a screen pixel is ~0.04 stamp px here
    assert (x, y) == pytest.approx((u + ex.origin[0], v + ex.origin[1]), abs=0.1)
    i, j = int(math.floor(u + 0.5)), int(math.floor(v + 0.5))
    assert f"stamp pixel i={i} j={j}" in lines[0]
    assert f"image {pv.panels['image'][j, i]:.4g} |" in lines[2]
    ra, dec = readout_degrees(lines[1])
    want_ra, want_dec = ex.pixel_to_sky(u + ex.origin[0], v + ex.origin[1])
    assert (ra, dec) == pytest.approx((float(want_ra), float(want_dec)), abs=0.03 / 3600)


def test_sky_aligned_is_kept_by_sessions(qtbot, window, demo, tmp_path, sky_off):
    opened(qtbot, window, demo, mode="binary", offsets=START)
    press(qtbot, window, Qt.Key.Key_A)
    window.panels_view.zoom(1.25)
    # Layout passes after the first sky-aligned display can narrow the panels by a few
    # pixels, which widens the aspect-locked range; what is saved is what is then shown.
    wait_layout_still(qtbot, window.panels_view.plots["image"].getViewBox())
    saved_range = window.panels_view.view_range()
    path = window.save_session(tmp_path / "sky.smpsession.json")
    assert json.loads(path.read_text())["view"]["sky_aligned"] is True
    press(qtbot, window, Qt.Key.Key_A)
    assert not window.panels_view.sky_aligned
    with qtbot.waitSignal(window.fitDisplayed, timeout=TIMEOUT_MS):
        assert window.open_session(path)
    settled(qtbot, window)
    qtbot.wait(50)
    assert menu_action(window, "View", "Sky-aligned").isChecked()
    assert north_up_east_left(window) and window.panels_view.style().sky_aligned
    assert np.array(window.panels_view.view_range()) == pytest.approx(np.array(saved_range),
                                                                      abs=1e-6)
    # a session saved before the sky-aligned display (no key): shown as saved
    state = json.loads(path.read_text())
    del state["view"]["sky_aligned"]
    state["view"]["range"] = [[-0.5, 29.5], [-0.5, 29.5]]
    old = tmp_path / "old.smpsession.json"
    old.write_text(json.dumps(state))
    with qtbot.waitSignal(window.fitDisplayed, timeout=TIMEOUT_MS):
        assert window.open_session(old)
    settled(qtbot, window)
    qtbot.wait(50)
    assert not window.panels_view.sky_aligned and not north_up_east_left(window)
    assert not menu_action(window, "View", "Sky-aligned").isChecked()


# -- sessions ------------------------------------------------------------------------------

def test_reloaded_optimised_session_shows_the_same_numbers(qtbot, window, demo, tmp_path):
    opened(qtbot, window, demo, mode="binary", offsets=START)
    with qtbot.waitSignal(window.fitDisplayed, timeout=TIMEOUT_MS,
                          check_params_cb=lambda r: r.request.fit.optimize):
        press(qtbot, window, Qt.Key.Key_P, CTRL)
    settled(qtbot, window)
    before = window.result.fit
    path = window.save_session(tmp_path / "opt.smpsession.json")
    opened(qtbot, window, demo, mode="single")
    with qtbot.waitSignal(window.fitDisplayed, timeout=TIMEOUT_MS,
                          check_params_cb=lambda r: r.request.fit.optimize):
        assert window.open_session(path)
    settled(qtbot, window)
    after = window.result.fit
    assert after.published_offsets == pytest.approx(before.published_offsets, abs=1e-12)
    assert after.delta_chi2 == pytest.approx(before.delta_chi2, rel=1e-12)
    assert after.delta_chi2_default == pytest.approx(before.delta_chi2_default, rel=1e-12)
    assert after.separation_err_px == pytest.approx(before.separation_err_px, rel=1e-9)
    assert not window.is_stale
    # both Δχ² definitions, labelled
    table = window.results_table.as_text()
    assert f"Δχ² vs single fitted alike\t{after.delta_chi2:.2f}" in table
    assert f"Δχ² vs single at default (published)\t{after.delta_chi2_default:.2f}" in table
    # fit-wide values span both source columns, so "value ± error" shows whole
    widget = window.results_table.table
    labels = [widget.verticalHeaderItem(r).text() for r in range(widget.rowCount())]
    assert widget.columnSpan(labels.index("total flux (ZP 30)"), 0) == 2
    assert widget.columnSpan(labels.index("flux (ZP 30)"), 0) == 1


def test_bad_session_gives_one_dialog_and_changes_nothing(qtbot, window, demo, tmp_path):
    opened(qtbot, window, demo, mode="binary", offsets=START)
    path = tmp_path / "bad.json"
    state = window.session_state()
    state["view"]["levels"] = [5, float("nan")]
    path.write_text(json.dumps(state))
    dialogs = []
    window.errorShown.connect(dialogs.append)
    assert not window.open_session(path)
    assert len(dialogs) == 1 and "'view.levels'" in dialogs[0].text()
    dialogs[0].close()
    assert window.offsets["binary"] == START and not window.is_stale


def test_session_selecting_another_detections_exposure_is_refused(qtbot, window, demo,
                                                                  tmp_path):
    """Issue 27: a session whose selected exposure is none of the detection's opened (and
    exported) as if it were fine."""
    opened(qtbot, window, demo, mode="binary", offsets=START)
    state = window.session_state()
    state["selected_expnum"] = 1234567
    path = tmp_path / "other.smpsession.json"
    path.write_text(json.dumps(state))
    dialogs = []
    window.errorShown.connect(dialogs.append)
    assert not window.open_session(path)
    assert len(dialogs) == 1
    text = dialogs[0].text()
    assert "'selected_expnum' 1234567 is no exposure of" in text and str(path) in text
    dialogs[0].close()
    assert window.offsets["binary"] == START and not window.is_stale


def _run(args, cwd, config_home: Path):
    """The app in a subprocess, with its settings (recent files, export folder) kept out
    of the user's."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(config_home)}
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)


def test_headless_exports_equal_smp_fit(repo_root, tmp_path):
    gui = _run(["-m", "smp_gui.app", "--binary=0,1,0,1", "--optimize",
                "--export-table", str(tmp_path / "gui.ecsv"),
                "--export-figure", str(tmp_path / "gui.png"),
                "--export-cubes", str(tmp_path / "gui.fits")], repo_root, tmp_path)
    assert gui.returncode == 0, gui.stderr
    cli = _run(["-m", "smp_model.cli", "fit", "--demo", "--binary=0,1,0,1", "--optimize",
                "--table", str(tmp_path / "cli.ecsv")], repo_root, tmp_path)
    assert cli.returncode == 0, cli.stderr
    a, b = Table.read(tmp_path / "gui.ecsv"), Table.read(tmp_path / "cli.ecsv")
    assert a.colnames == b.colnames and len(a) == len(b) == 2
    for name in a.colnames:
        assert a[name].unit == b[name].unit, name
        if a[name].dtype.kind == "f":
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
        else:
            assert list(a[name]) == list(b[name]), name
    assert a.meta["settings"] == b.meta["settings"]
    assert (tmp_path / "gui.png").stat().st_size > 1000
    assert (tmp_path / "gui.fits").stat().st_size > 1000
    # a session of that fit (saved after the search) exports the same table again
    session = {"format": "smp-session/1", "detection": str(demo_manifest_path()),
               "settings": dict(b.meta["settings"]), "mode": "binary",
               "offsets": {"binary": [float(b["dx"][0]), float(b["dx"][1]),
                                      float(b["dy"][0]), float(b["dy"][1])]},
               "fit": {"optimize": True, "offsets": [0.0, 1.0, 0.0, 1.0]}}
    (tmp_path / "s.smpsession.json").write_text(json.dumps(session))
    again = _run(["-m", "smp_gui.app", str(tmp_path / "s.smpsession.json"),
                  "--export-table", str(tmp_path / "session.ecsv")], repo_root, tmp_path)
    assert again.returncode == 0, again.stderr
    c = Table.read(tmp_path / "session.ecsv")
    for name in b.colnames:
        if b[name].dtype.kind == "f":
            np.testing.assert_array_equal(c[name], b[name], err_msg=name)
    # never replaces a file; a bad session ends with exit 2 and one line
    again = _run(["-m", "smp_gui.app", "--export-table", str(tmp_path / "gui.ecsv")],
                 repo_root, tmp_path)
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "smp-session/1", "detection": "x.toml",
                               "settings": {}, "mode": "triple", "offsets": {}}))
    run = _run(["-m", "smp_gui.app", str(bad), "--screenshot", str(tmp_path / "s.png")],
               repo_root, tmp_path)
    assert run.returncode == 2
    # the error alone (the offscreen plugin's line about size hints is dropped) and its file
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "'mode' must be one of" in lines[0] and str(bad) in lines[0]


# -- the PSF normalisation (docs/validation/psf_phase.rst), chosen in the Fit panel by keyboard

def choose(qtbot, combo, text: str):
    """Pick an item of a focused combo box with the arrow keys, as a keyboard user does
    (each step is a settings change of its own)."""
    combo.setFocus()
    target = combo.findText(text)
    assert target >= 0
    key = Qt.Key.Key_Down if target > combo.currentIndex() else Qt.Key.Key_Up
    for _ in range(combo.count()):
        if combo.currentText() == text:
            break
        qtbot.keyClick(combo, key)
    assert combo.currentText() == text


def shown_normalization(window) -> str:
    return window.result.fit.settings.psf_normalization


def test_a_convention_brings_its_own_psf_normalisation_and_the_user_can_choose(
        qtbot, window, demo):
    opened(qtbot, window, demo, mode="single")
    controls = window.fit_controls
    assert controls.psf_normalization.currentText() == "band-limited"
    assert shown_normalization(window) == "band-limited"

    choose(qtbot, controls.convention, "legacy")        # the published code's rendering
    settled(qtbot, window)
    assert controls.psf_normalization.currentText() == "model"
    assert (window.result.fit.settings.convention, shown_normalization(window)) == \
        ("legacy", "model")

    legacy_flux = window.result.fit.flux
    choose(qtbot, controls.psf_normalization, "unit-sum")   # one step: one undo entry
    settled(qtbot, window)
    assert shown_normalization(window) == "unit-sum"
    assert window.result.fit.settings.convention == "legacy"
    assert window.model.measurement.settings.psf_normalization == "unit-sum"
    assert window.result.fit.flux != legacy_flux

    undo(qtbot, window)                                 # back to legacy's own
    settled(qtbot, window)
    assert controls.psf_normalization.currentText() == "model"
    assert shown_normalization(window) == "model"


def test_letters_typed_into_a_combo_box_search_it_not_the_window_shortcuts(qtbot, window,
                                                                           demo):
    # Item 3 (combos keep their own keys): "b" in a focused combo box blinked the
    # exposures (View > Blink exposures is B) instead of selecting the "b..." item.
    opened(qtbot, window, demo, mode="single")
    combo = window.fit_controls.psf_normalization
    choose(qtbot, combo, "psf-weighted")
    settled(qtbot, window)
    blinking = window.menus.blink_exposures_action.isChecked()
    qtbot.keyClick(combo, "b")
    settled(qtbot, window)
    assert combo.currentText() == "band-limited"
    assert shown_normalization(window) == "band-limited"
    assert window.menus.blink_exposures_action.isChecked() == blinking
    # the shortcut still works where the panels have the focus
    window.panels_view.graphics.setFocus()
    qtbot.keyClick(window.panels_view.graphics, "b")
    assert window.menus.blink_exposures_action.isChecked() != blinking
    qtbot.keyClick(window.panels_view.graphics, "b")
    assert window.menus.blink_exposures_action.isChecked() == blinking


def test_a_settings_change_keeps_what_the_session_set_and_the_panel_does_not_show(
        qtbot, window, demo, tmp_path):
    # A session's oversampling (no control shows it) and PSF normalisation survive a
    # grid change made in the Fit panel: the refit is the session's measurement but for
    # the grid, not a default one.
    session = {"format": "smp-session/1", "detection": str(demo),
               "settings": {"grid_size": 20, "grid_step_arcsec": 0.35, "fit_sky": True,
                            "convention": "exact", "oversampling": 8,
                            "psf_normalization": "model"},
               "mode": "single", "offsets": {"single": [0, 0], "binary": [0, 1, 0, 1]},
               "shot_noise": {"enabled": False, "gain": 4.0, "iterations": 1}}
    path = tmp_path / "s.smpsession.json"
    path.write_text(json.dumps(session))
    with qtbot.waitSignal(window.fitDisplayed, timeout=TIMEOUT_MS):
        assert window.open_session(path)
    settled(qtbot, window)
    assert window.result.fit.settings.oversampling == 8
    grid = window.fit_controls.grid_size
    grid.setFocus()
    qtbot.keyClick(grid, Qt.Key.Key_Down)              # 20 -> 19, as a user steps it
    settled(qtbot, window)
    shown = window.result.fit.settings
    assert (shown.grid_size, shown.oversampling, shown.psf_normalization) == (19, 8, "model")
    undo(qtbot, window)
    settled(qtbot, window)
    assert window.result.fit.settings.grid_size == 20


# -- issue 28, item 7: a run of nudges is one undo step -----------------------------------

def test_a_run_of_nudges_is_one_undo_step_and_another_marker_starts_a_new_one(qtbot, window,
                                                                              demo):
    opened(qtbot, window, demo, mode="binary", offsets=START)
    graphics = window.panels_view.graphics
    graphics.setFocus()
    qtbot.keyClick(graphics, Qt.Key.Key_1)                       # the primary
    for key in (Qt.Key.Key_Right, Qt.Key.Key_Right, Qt.Key.Key_Right, Qt.Key.Key_Up):
        qtbot.keyClick(graphics, key)
    qtbot.keyClick(graphics, Qt.Key.Key_2)                       # the secondary
    qtbot.keyClick(graphics, Qt.Key.Key_Left)
    qtbot.keyClick(graphics, Qt.Key.Key_Left)
    settled(qtbot, window)
    dx1, dx2, dy1, dy2 = START
    assert window.offsets["binary"] == pytest.approx((dx1 + 0.3, dx2 - 0.2, dy1 + 0.1, dy2))
    assert window.result.summary.offsets == pytest.approx(window.offsets["binary"])
    assert window.model.history[-2:] == ("Nudge primary", "Nudge secondary")
    undo(qtbot, window)                           # both of the secondary's nudges
    settled(qtbot, window)
    assert window.offsets["binary"] == pytest.approx((dx1 + 0.3, dx2, dy1 + 0.1, dy2))
    assert window.menus.undo_action.text() == "&Undo nudge primary"
    undo(qtbot, window)                           # all four of the primary's
    settled(qtbot, window)
    assert window.offsets["binary"] == pytest.approx(START)
    assert window.result.summary.offsets == pytest.approx(START)
    redo(qtbot, window)
    settled(qtbot, window)
    assert window.offsets["binary"] == pytest.approx((dx1 + 0.3, dx2, dy1 + 0.1, dy2))
    undo(qtbot, window)
    settled(qtbot, window)


# -- the drag repaints only what changed ----------------------------------------------------
# The data image, the mask overlays, the target marks and the grid outlines are painted
# from cached pixmaps (they stay put while a drag refits).  A cache that is not redrawn
# when its item does change would show stale pixels: compare with the same panels drawn
# without any cache.

def drawn_panels(window):
    window.panels_view.graphics.viewport().repaint()
    return window.panels_view.graphics.grab().toImage()


def test_cached_panels_draw_what_changed(qtbot, window, demo):
    from PyQt6.QtWidgets import QGraphicsItem
    opened(qtbot, window, demo, mode="binary", offsets=START)
    pv = window.panels_view
    before = drawn_panels(window)
    drag_marker(qtbot, window, 1, 0.8, 0.0)
    settled(qtbot, window)
    press(qtbot, window, Qt.Key.Key_M)                   # mask overlay off
    window.browser.blink.setChecked(True)               # the image panel blinks the model
    window.browser.blink.setChecked(False)
    pv.set_blink_model(True)
    press(qtbot, window, Qt.Key.Key_G)                   # regions off and on again
    press(qtbot, window, Qt.Key.Key_G)
    cached = drawn_panels(window)
    items = pv.graphics.scene().items()
    modes = {item: item.cacheMode() for item in items}
    assert any(mode != QGraphicsItem.CacheMode.NoCache for mode in modes.values())
    for item in items:
        item.setCacheMode(QGraphicsItem.CacheMode.NoCache)
    uncached = drawn_panels(window)
    for item, mode in modes.items():
        item.setCacheMode(mode)
    assert cached != before        # the drag, the mask and the blink are on screen
    assert cached == uncached
    pv.set_blink_model(False)
    press(qtbot, window, Qt.Key.Key_M)
