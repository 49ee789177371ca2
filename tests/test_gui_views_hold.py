"""What a careful user checks on the inspector's screen (issue 25): the flux table shows
every number whole, and a zoom the user chose stays through window resizes until they
reset it (View > Reset zoom, or a double-click). Driven by real wheel, mouse, key and
resize events under pytest-qt on the small simulated demo."""
from __future__ import annotations

import dataclasses

import numpy as np

import pyqtgraph as pg
import pytest
from PyQt6.QtCore import QEvent, QPoint, QPointF, QRectF, Qt
from PyQt6.QtGui import QMouseEvent, QWheelEvent
from PyQt6.QtWidgets import QApplication

from smp_model.simulation.demo import demo_manifest_path
from tests.test_gui import press
from tests.test_gui_inspector import menu_action, store_dir, window  # noqa: F401 - fixtures

pytestmark = pytest.mark.gui
pg.setConfigOption("mouseRateLimit", -1)

START = (0.0, 1.0, 0.0, 1.0)
TIMEOUT_MS = 60_000


def opened(qtbot, window, **kwargs):
    with qtbot.waitSignal(window.fitDisplayed, timeout=TIMEOUT_MS):
        assert window.open_detection(demo_manifest_path(), **kwargs)
    qtbot.waitUntil(lambda: not window.controller.busy and window.result is not None
                    and window.result.request_id == window.controller.last_submitted,
                    timeout=TIMEOUT_MS)


# -- the flux table ------------------------------------------------------------------------

def test_flux_table_numbers_are_never_cut_and_tooltips_are_exact(qtbot, window):
    window.resize(1280, 800)
    opened(qtbot, window, mode="binary", offsets=START)
    # the user narrows the right-hand docks as far as they go
    window.resizeDocks([window.results_dock], [120], Qt.Orientation.Horizontal)
    qtbot.wait(100)
    table = window.results_table.table
    metrics = table.fontMetrics()
    # Qt's item view elides text wider than the cell less its text margins
    # (QCommonStyle: PM_FocusFrameHMargin + 1 on each side)
    margin = 2 * (table.style().pixelMetric(table.style().PixelMetric.PM_FocusFrameHMargin) + 1)
    header = table.horizontalHeader()
    for r in range(table.rowCount()):
        span = table.columnSpan(r, 0)
        for c in range(0, table.columnCount(), span):
            text = table.item(r, c).text()
            width = sum(header.sectionSize(c + k) for k in range(span))
            assert width >= metrics.horizontalAdvance(text) + margin, (r, c, text, width)
    # the ± error of the offsets is whole, and the tooltip has the number unrounded
    labels = [table.verticalHeaderItem(r).text() for r in range(table.rowCount())]
    primary = window.result.summary.sources[0]
    dx = table.item(labels.index("dx (px)"), 0)
    assert dx.text() == f"{primary.dx:.3f} ± {primary.dx_err:.3f}" or "±" not in dx.text()
    flux = table.item(labels.index("flux (ZP 30)"), 0)
    assert flux.toolTip() == repr(float(primary.flux))
    assert float(flux.toolTip()) == primary.flux
    # a table wider than its dock scrolls to its last column instead of eliding it
    if sum(header.sectionSize(c) for c in range(table.columnCount())) \
            > table.viewport().width():
        assert table.horizontalScrollBar().maximum() > 0
    window.resize(1600, 900)


# -- a zoom that stays ---------------------------------------------------------------------

def _wheel(qtbot, view, scene_pos: QPointF, clicks: int):
    pos = view.mapFromScene(scene_pos)
    event = QWheelEvent(QPointF(pos), QPointF(view.viewport().mapToGlobal(pos)), QPoint(0, 0),
                        QPoint(0, 120 * clicks), Qt.MouseButton.NoButton,
                        Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(view.viewport(), event)
    qtbot.wait(30)


def _double_click(qtbot, view, scene_pos: QPointF):
    pos = QPointF(view.mapFromScene(scene_pos))
    glob = QPointF(view.viewport().mapToGlobal(pos.toPoint()))
    left = Qt.MouseButton.LeftButton
    for kind, buttons in ((QEvent.Type.MouseButtonPress, left),
                          (QEvent.Type.MouseButtonRelease, Qt.MouseButton.NoButton),
                          (QEvent.Type.MouseButtonDblClick, left),
                          (QEvent.Type.MouseButtonRelease, Qt.MouseButton.NoButton)):
        QApplication.sendEvent(view.viewport(), QMouseEvent(
            kind, pos, glob, left, buttons, Qt.KeyboardModifier.NoModifier))
        qtbot.wait(10)


def _shown_width(viewbox) -> float:
    """Stamp pixels across the narrower side of the panel (the zoom the user sees)."""
    (x0, x1), (y0, y1) = viewbox.viewRange()
    return min(x1 - x0, y1 - y0)


def test_a_wheel_zoom_survives_resizes_until_reset(qtbot, window):
    opened(qtbot, window, mode="binary", offsets=START)
    window.resize(1600, 900)
    qtbot.wait(150)
    pv = window.panels_view
    vb = pv.plots["image"].getViewBox()
    whole = _shown_width(vb)
    ny, nx = pv.panels["image"].shape
    centre = vb.mapViewToScene(QPointF(0.5 * (nx - 1), 0.5 * (ny - 1)))
    _wheel(qtbot, pv.graphics, centre, 3)
    zoomed = _shown_width(vb)
    assert zoomed < 0.8 * whole
    (x0, x1), (y0, y1) = vb.viewRange()
    middle = (0.5 * (x0 + x1), 0.5 * (y0 + y1))
    for size in ((1200, 760), (1900, 1000), (1400, 1000)):
        window.resize(*size)
        qtbot.wait(150)
        # the same part of the stamp at the centre, at the same stamp pixels per screen
        # pixel as the panel had (the panel's size changed, the zoom did not)
        (x0, x1), (y0, y1) = vb.viewRange()
        assert (0.5 * (x0 + x1), 0.5 * (y0 + y1)) == pytest.approx(middle, abs=0.5), size
        assert _shown_width(vb) < 0.8 * whole_at(pv), size
    # the Δχ² map appearing beside the panels is a resize too
    with qtbot.waitSignal(window.chi2MapDisplayed, timeout=TIMEOUT_MS):
        window.request_chi2map(half_width=0.4, step=0.2)
    qtbot.wait(150)
    assert _shown_width(vb) < 0.8 * whole_at(pv)
    # a double-click on a panel shows the whole stamp again ...
    box = vb.sceneBoundingRect()          # a spot of the panel away from the markers
    _double_click(qtbot, pv.graphics, box.topLeft() + QPointF(0.2 * box.width(),
                                                              0.2 * box.height()))
    assert _shown_width(vb) == pytest.approx(whole_at(pv), rel=0.02)
    assert pv.fit_view
    # ... and so does View > Reset zoom after another zoom
    _wheel(qtbot, pv.graphics, vb.sceneBoundingRect().center(), 2)
    assert _shown_width(vb) < 0.9 * whole_at(pv)
    menu_action(window, "View", "Reset zoom").trigger()
    assert _shown_width(vb) == pytest.approx(whole_at(pv), rel=0.02)
    press(qtbot, window, Qt.Key.Key_M, Qt.KeyboardModifier.ControlModifier
          | Qt.KeyboardModifier.ShiftModifier)      # hide the map again
    window.resize(1600, 900)


def whole_at(pv) -> float:
    """Stamp pixels across the narrower side when the whole stamp is shown."""
    ny, nx = pv.panels["image"].shape
    vb = pv.plots["image"].getViewBox()
    box = vb.sceneBoundingRect()
    per_pixel = min(box.width() / nx, box.height() / ny)     # screen px per stamp px
    return min(box.width(), box.height()) / per_pixel


# -- the sky-aligned view: one frame, or a notice ----------------------------------------

def test_sky_aligned_notice_when_a_wcs_cannot_be_inverted(qtbot, window, monkeypatch):
    """An exposure whose WCS gives no frame at the target was drawn unaligned, silently."""
    from smp_gui.inspector import sky_overlays
    real = sky_overlays.exposure_overlays
    opened(qtbot, window, mode="binary", offsets=START)
    bad = int(window.result.fit.scene.exposures[1].entry.expnum)

    def failing_wcs(exposure, *args):
        if int(exposure.entry.expnum) == bad:
            raise ValueError("WCS does not invert here")
        return real(exposure, *args)

    monkeypatch.setattr(sky_overlays, "exposure_overlays", failing_wcs)
    press(qtbot, window, Qt.Key.Key_A)                       # sky-aligned on
    assert window.panels_view.is_sky_frame and window.frame_notice.text() == ""
    while int(window.result.fit.scene.exposures[window.selected_index].entry.expnum) != bad:
        press(qtbot, window, Qt.Key.Key_BracketRight)
    assert not window.panels_view.is_sky_frame
    notice = window.frame_notice
    assert notice.isVisible() and str(bad) in notice.text() and "not sky-aligned" in notice.text()
    press(qtbot, window, Qt.Key.Key_BracketRight)            # a good exposure: aligned again
    assert window.panels_view.is_sky_frame and notice.text() == ""
    press(qtbot, window, Qt.Key.Key_A)                       # off: nothing to say
    assert not window.panels_view.sky_aligned and notice.text() == ""


def test_smp_fit_figure_sky_aligned_draws_the_windows_frame(qtbot, window, tmp_path):
    import matplotlib.image as mpimg

    from smp_model.cli.command import main
    from smp_model.outputs.figures import five_panel_figure
    from tests.test_gui import exported
    opened(qtbot, window, mode="binary", offsets=START)
    press(qtbot, window, Qt.Key.Key_A)
    shown = exported(qtbot, window, window.export_figure, tmp_path / "shown.png")
    press(qtbot, window, Qt.Key.Key_A)
    aligned, plain = tmp_path / "aligned.png", tmp_path / "plain.png"
    common = ["fit", "--demo", "--binary=0,1,0,1", "--quiet"]
    assert main([*common, "--figure", str(aligned), "--sky-aligned"]) == 0
    assert main([*common, "--figure", str(plain)]) == 0
    a, p, s = (mpimg.imread(f)[..., :3] for f in (aligned, plain, shown))
    assert a.shape == s.shape == p.shape
    # the demo's CCD axes are at 81 degrees to the sky's: aligned is another picture ...
    assert np.abs(a - p).mean() > 0.01
    # ... with the window's frame: the same panel limits (arcsec, north up, east left)
    # in the CLI's figure and in the one exported from the sky-aligned window
    fit = window.result.fit
    from smp_model.outputs.display import PUBLISHED_STYLE
    cli_style = dataclasses.replace(PUBLISHED_STYLE, sky_aligned=True)
    gui_style = dataclasses.replace(window.panels_view.style(), sky_aligned=True)
    for ax_cli, ax_gui in zip(five_panel_figure(fit, style=cli_style).axes[:5],
                              five_panel_figure(fit, style=gui_style).axes[:5]):
        assert ax_cli.get_xlim() == pytest.approx(ax_gui.get_xlim())
        assert ax_cli.get_ylim() == pytest.approx(ax_gui.get_ylim())
        assert ax_cli.get_xlim()[0] < 0 < ax_cli.get_xlim()[1]     # target at the origin


def test_sky_aligned_compass_and_scale_bar_sit_on_every_rotated_stamp(qtbot, window):
    """The compass was placed in the corner of the rectangle that holds every exposure's
    rotated stamp: on some exposures, off the stamp (on the empty background)."""
    from PyQt6.QtGui import QPolygonF
    opened(qtbot, window, mode="binary", offsets=START)
    pv = window.panels_view
    press(qtbot, window, Qt.Key.Key_A)
    try:
        for _ in range(len(window.browser.expnums())):
            ny, nx = pv.panels["image"].shape
            stamp = pv.stamp_transform.map(QPolygonF(QRectF(-0.5, -0.5, nx, ny)))
            xs, ys = pv.overlay_items.compass_lines.getData()
            points = [QPointF(x, y) for x, y in zip(xs, ys)]
            points += [label.pos() for label in pv.overlay_items.compass_labels]
            xs, ys = pv.overlay_items.scale_bar.getData()           # and the scale bar
            points += [QPointF(x, y) for x, y in zip(xs, ys)] + [pv.overlay_items.scale_label.pos()]
            outside = [p for p in points if not stamp.containsPoint(p, Qt.FillRule.OddEvenFill)]
            assert not outside, (window.selected_index, outside)
            press(qtbot, window, Qt.Key.Key_BracketRight)
    finally:
        press(qtbot, window, Qt.Key.Key_A)
