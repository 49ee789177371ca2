"""The Δχ² map shares the sky-aligned frame of the stamps (issue 25, item 5): drawn through
the detection exposure's WCS Jacobian, read out and clicked in it, and in CCD axes with a
notice when that exposure's WCS cannot be inverted.  Through the user's path: key A,
a map computed by the window, mouse moves and clicks on the map's cell.

The demo's detection exposure is rotated by ~81 degrees to the sky, so CCD offsets and
sky-aligned positions differ by much more than a cell.
"""
from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
import pytest
from PyQt6.QtCore import QEvent, QPointF, Qt

from smp_model.simulation.demo import demo_manifest_path
from tests.test_gui import _send_mouse, press
from tests.test_gui_careful import BINARY, TIMEOUT_MS, computed_map, open_demo_binary
from tests.test_gui_inspector import settled

pytestmark = pytest.mark.gui
pg.setConfigOption("mouseRateLimit", -1)

CELL = (0, 3)     # a corner-ish cell of the 5 x 5 map: far from where CCD axes put it


@pytest.fixture
def window(fresh_inspector):
    return fresh_inspector


def secondary_view_point(window, dx: float, dy: float) -> tuple[float, float]:
    """Where the stamps draw a secondary at offset (dx, dy) px: the secondary marker's
    stamp point moved by the offset change, through the panels' own transform."""
    u, v = window.markers.positions[1]
    sdx, sdy = window.offsets["binary"][1], window.offsets["binary"][3]
    return window.panels_view.stamp_to_view(u + dx - sdx, v + dy - sdy)


def map_widget_pos(view, x: float, y: float):
    gv = view.host.graphics
    return gv.mapFromScene(view.plot.getViewBox().mapViewToScene(QPointF(x, y)))


def hover(view, x: float, y: float):
    gv = view.host.graphics
    _send_mouse(gv.viewport(), QEvent.Type.MouseMove, map_widget_pos(view, x, y),
                Qt.MouseButton.NoButton)


def click(qtbot, view, x: float, y: float):
    gv = view.host.graphics
    pos = map_widget_pos(view, x, y)
    _send_mouse(gv.viewport(), QEvent.Type.MouseMove, pos, Qt.MouseButton.NoButton)
    qtbot.wait(15)
    _send_mouse(gv.viewport(), QEvent.Type.MouseButtonPress, pos, Qt.MouseButton.LeftButton)
    _send_mouse(gv.viewport(), QEvent.Type.MouseButtonRelease, pos, Qt.MouseButton.NoButton)


def sky_offset_arcsec(window, dx: float, dy: float) -> tuple[float, float]:
    """(ΔRA cos δ, ΔDec) arcsec of a secondary at (dx, dy) from the target's WCS position,
    from the WCS itself (not the frame's arithmetic)."""
    scene = window.result.fit.scene
    exposure = scene.exposures[scene.detection_index]
    u, v = window.markers.positions[1]
    sdx, sdy = window.offsets["binary"][1], window.offsets["binary"][3]
    x = u + dx - sdx + exposure.origin[0]
    y = v + dy - sdy + exposure.origin[1]
    ra, dec = (float(c) for c in exposure.pixel_to_sky(x, y))
    ra0, dec0 = (float(c) for c in exposure.pixel_to_sky(*exposure.target_xy))
    east = ((ra - ra0 + 180.0) % 360.0 - 180.0) * math.cos(math.radians(dec0)) * 3600.0
    return east, (dec - dec0) * 3600.0


def test_sky_aligned_map_is_drawn_read_out_and_clicked_in_the_stamps_frame(qtbot, window):
    open_demo_binary(qtbot, window)
    view = computed_map(qtbot, window)
    m = view.chi2map
    press(qtbot, window, Qt.Key.Key_A)                       # View > Sky-aligned
    qtbot.wait(50)
    assert window.panels_view.is_sky_frame
    # the axes say what they are
    assert "ΔRA" in view.plot.getAxis("bottom").labelText
    assert "ΔDec" in view.plot.getAxis("left").labelText
    assert "″" in view.plot.getAxis("left").labelText
    # view X is west: the bottom axis labels a point right of the target with its
    # (negative) east offset
    assert view.plot.getAxis("bottom").tickStrings([0.5, 0.0], 1.0, 0.5) == ["-0.5", "0"]
    # the components' marks lie where the stamps draw them (arcsec, north up, east left)
    marks = [(p.pos().x(), p.pos().y()) for p in view.points.points()]
    for k, mark in enumerate(marks):
        stamp = window.panels_view.stamp_to_view(*window.markers.positions[k])
        assert mark == pytest.approx(stamp, abs=1e-6)
    # the image goes through the same affine: every cell centre where the stamps would
    # draw a secondary at that cell's offset
    for i, j in [(0, 0), (4, 0), CELL, (2, 2)]:
        centre = view.image.mapToView(QPointF(i + 0.5, j + 0.5))
        assert (centre.x(), centre.y()) == pytest.approx(
            secondary_view_point(window, m.dx[i], m.dy[j]), abs=1e-6)
    # hover a cell: Δχ², the offset on the sky (arcsec), and the engine's CCD px
    i, j = CELL
    hover(view, *secondary_view_point(window, m.dx[i], m.dy[j]))
    east, north = sky_offset_arcsec(window, m.dx[i], m.dy[j])
    text = view.readout.text()
    assert text.startswith(f"Δχ²={m.delta_chi2[j, i]:.2f} at ")
    numbers = [float(s.split("=")[1].rstrip("″")) for s in text.split("(")[0].split()[2:]
               if "=" in s]
    assert numbers == pytest.approx([east, north], abs=2e-3)
    assert f"(dx={m.dx[i]:+.2f} dy={m.dy[j]:+.2f} CCD px)" in text
    assert window.offsets["binary"] == BINARY               # hovering moves nothing
    # click it: the secondary moves to that cell's CCD offset, the primary stays
    with qtbot.waitSignal(window.fitDisplayed, timeout=TIMEOUT_MS):
        click(qtbot, view, *secondary_view_point(window, m.dx[i], m.dy[j]))
    settled(qtbot, window)
    dx1, dx2, dy1, dy2 = window.offsets["binary"]
    assert (dx1, dy1) == (BINARY[0], BINARY[2])
    assert (dx2, dy2) == pytest.approx((m.dx[i], m.dy[j]), abs=1e-9)
    # and the secondary's marks, on the map and on the stamps, moved there together
    mark = view.points.points()[1].pos()
    assert (mark.x(), mark.y()) == pytest.approx(
        window.panels_view.stamp_to_view(*window.markers.positions[1]), abs=1e-6)


def test_the_sky_aligned_map_turns_with_the_stamps_and_back(qtbot, window):
    """The direction from primary to secondary is the same on the map and on the stamps,
    and differs from the CCD axes' by the exposure's rotation; key A again: CCD axes."""
    open_demo_binary(qtbot, window)
    view = computed_map(qtbot, window)

    def angle(points):
        (x1, y1), (x2, y2) = points
        return math.degrees(math.atan2(y2 - y1, x2 - x1))

    def map_marks():
        return [(p.pos().x(), p.pos().y()) for p in view.points.points()]

    ccd = angle(map_marks())
    press(qtbot, window, Qt.Key.Key_A)
    qtbot.wait(50)
    stamps = angle([window.panels_view.stamp_to_view(*p) for p in window.markers.positions])
    sky = angle(map_marks())
    assert sky == pytest.approx(stamps, abs=0.01)
    assert abs((sky - ccd + 180) % 360 - 180) > 45            # the demo turns by ~81°
    press(qtbot, window, Qt.Key.Key_A)                        # off again: CCD px
    qtbot.wait(50)
    assert angle(map_marks()) == pytest.approx(ccd, abs=1e-6)
    assert view.plot.getAxis("bottom").labelText == "secondary dx (CCD px)"
    m = view.chi2map
    i, j = CELL
    hover(view, m.dx[i], m.dy[j])
    assert view.readout.text() == (f"Δχ²={m.delta_chi2[j, i]:.2f} at dx={m.dx[i]:+.2f} "
                                   f"dy={m.dy[j]:+.2f} px")


def test_map_in_ccd_axes_with_a_notice_when_the_detection_wcs_cannot_be_inverted(
        qtbot, window, monkeypatch):
    """As the panels: the demo's WCS made to fail everywhere (the worker's overlays and
    the window's)."""
    from smp_gui import controller
    from smp_gui.inspector import sky_overlays

    def failing_wcs(exposure, *args):
        raise ValueError("WCS does not invert here")

    monkeypatch.setattr(sky_overlays, "exposure_overlays", failing_wcs)
    monkeypatch.setattr(controller, "exposure_overlays", failing_wcs)
    open_demo_binary(qtbot, window)
    view = computed_map(qtbot, window)
    m = view.chi2map
    scene = window.result.fit.scene
    bad = int(scene.exposures[scene.detection_index].entry.expnum)
    press(qtbot, window, Qt.Key.Key_A)
    qtbot.wait(50)
    assert not window.panels_view.is_sky_frame             # the panels say so ...
    assert "not sky-aligned" in window.frame_notice.text()
    notice = view.frame_label                                 # ... and so does the map
    assert notice.isVisible() and str(bad) in notice.text()
    assert "CCD axes" in notice.text() and "not sky-aligned" in notice.text()
    assert view.plot.getAxis("bottom").labelText == "secondary dx (CCD px)"
    i, j = CELL
    hover(view, m.dx[i], m.dy[j])                             # in CCD px, as drawn
    assert view.readout.text().endswith(f"at dx={m.dx[i]:+.2f} dy={m.dy[j]:+.2f} px")
    with qtbot.waitSignal(window.fitDisplayed, timeout=TIMEOUT_MS):
        click(qtbot, view, m.dx[i], m.dy[j])
    settled(qtbot, window)
    assert window.offsets["binary"][1::2] == pytest.approx((m.dx[i], m.dy[j]), abs=1e-9)
    press(qtbot, window, Qt.Key.Key_A)                       # off: nothing to say
    assert view.frame_label.text() == ""


def test_legacy_convention_map_lies_on_the_stamps_marks_sky_aligned(qtbot, window):
    """Legacy offsets are shifted by (-1, -1) px from the exact ones: the map's frame goes
    through the engine's data frame, as the markers do."""
    from smp_model.settings import FitSettings
    legacy = FitSettings(convention="legacy")
    window.resize(1920, 1080)
    offsets = (-1.0, 0.0, -1.0, 0.0)
    with qtbot.waitSignal(window.fitDisplayed, timeout=TIMEOUT_MS):
        assert window.open_detection(demo_manifest_path(), settings=legacy, mode="binary",
                                     offsets=offsets)
    settled(qtbot, window)
    view = computed_map(qtbot, window)
    press(qtbot, window, Qt.Key.Key_A)
    qtbot.wait(50)
    marks = [(p.pos().x(), p.pos().y()) for p in view.points.points()]
    for k, mark in enumerate(marks):
        stamp = window.panels_view.stamp_to_view(*window.markers.positions[k])
        assert mark == pytest.approx(stamp, abs=1e-6)
    # the legacy default offset (-1, -1) is the target's WCS position: the sky origin
    assert np.hypot(*view.frame.offset_to_view(-1.0, -1.0)) < 1e-6
