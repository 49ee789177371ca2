"""Labels and overlays as a careful user sees them (issue 28, item 6), driven through the
user's path on the simulated demo binary: a real drag of the secondary, the zoom and
sky-aligned keys, the colour-map combo box, Fit > Optimize by its key, mouse moves over
the panels.  Each test names what the user saw go wrong."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import pytest
from PyQt6.QtCore import QEvent, Qt
from PyQt6.QtWidgets import QApplication

from smp_model.fit.binary_search import swapped_from_start
from smp_model.inputs.mask_bits import mask_bit_names
from smp_model.outputs.display import COLORMAPS
from smp_model.simulation.demo import demo_manifest_path, demo_start_offsets
from smp_gui.state import SWAP_NOTE
from tests.test_gui import _send_mouse, drag_marker, exported, press
from tests.test_gui_inspector import choose, menu_action, settled

pytestmark = pytest.mark.gui
pg.setConfigOption("mouseRateLimit", -1)

TIMEOUT_MS = 60_000
CTRL = Qt.KeyboardModifier.ControlModifier
# Nearer than this (RGB distance, of 441) to some colour of the map, an overlay can vanish
# into the image: the blue marker on viridis was ~110 from its blues.
MIN_CONTRAST = 140.0


@pytest.fixture
def window(fresh_inspector):
    return fresh_inspector


def open_demo(qtbot, window, offsets=None):
    with qtbot.waitSignal(window.fitDisplayed, timeout=TIMEOUT_MS):
        assert window.open_detection(demo_manifest_path(), mode="binary",
                                     offsets=offsets or demo_start_offsets())
    settled(qtbot, window)


def screen_px_per_stamp_px(window) -> float:
    pv = window.panels_view
    a, b = pv.view_to_scene("image", 0.0, 0.0), pv.view_to_scene("image", 1.0, 0.0)
    view = pv.graphics
    return float(np.hypot(b.x() - a.x(), b.y() - a.y()) * view.transform().m11())


def drag_into_close_pair(qtbot, window, separation_px: float = 1.5):
    """Drag the secondary with the mouse to ``separation_px`` from the primary, along the
    line between them (zoomed in first as a user does for a 1 px move: pyqtgraph starts
    a drag only after a few screen pixels)."""
    while screen_px_per_stamp_px(window) < 25:
        press(qtbot, window, Qt.Key.Key_Plus)
    p1, p2 = (np.array(p) for p in window.markers.positions)
    step = p2 - p1
    target = p1 + separation_px * step / np.hypot(*step)
    drag_marker(qtbot, window, 1, *(target - p2))
    settled(qtbot, window)
    p1, p2 = (np.array(p) for p in window.markers.positions)
    assert np.hypot(*(p2 - p1)) == pytest.approx(separation_px, abs=0.3)


def labels_on_screen(window, plot_index: int = 0):
    """(marker centre, label rectangle) of both components in scene coordinates (screen
    pixels, y down), once the panels have been repainted."""
    QApplication.processEvents()
    out = []
    for k in range(2):
        item = window.markers.item(k, plot_index)
        out.append((item.scenePos(), item.label().sceneBoundingRect()))
    return out


def assert_labels_apart(window):
    """Each number lies on the side of its marker away from the other component, the two
    numbers do not overlap and neither covers the other component's centre; the markers
    are exactly where their positions put them."""
    for plot_index in range(len(window.markers.plots)):
        (m1, r1), (m2, r2) = labels_on_screen(window, plot_index)
        for (m, r), other in (((m1, r1), m2), ((m2, r2), m1)):
            away = np.array([r.center().x() - m.x(), r.center().y() - m.y()])
            separation = np.array([m.x() - other.x(), m.y() - other.y()])
            assert away @ separation > 0, (plot_index, away, separation)
            assert not r.contains(other)
        assert not r1.intersects(r2), (plot_index, r1, r2)
    pv = window.panels_view
    for k, (u, v) in enumerate(window.markers.positions):
        scene = pv.view_to_scene("image", u, v)
        drawn = window.markers.item(k, 0).scenePos()
        assert (drawn.x(), drawn.y()) == pytest.approx((scene.x(), scene.y()), abs=0.01)


# -- the "1"/"2" labels of a close pair -------------------------------------------------------

def test_a_close_pairs_numbers_stay_apart_zoomed_and_sky_aligned(qtbot, window):
    open_demo(qtbot, window)
    drag_into_close_pair(qtbot, window, 1.5)
    assert_labels_apart(window)
    for key in (Qt.Key.Key_Plus, Qt.Key.Key_Plus):          # View > Zoom in
        press(qtbot, window, key)
    assert_labels_apart(window)
    for key in (Qt.Key.Key_Minus,) * 3:                      # View > Zoom out
        press(qtbot, window, key)
    assert_labels_apart(window)
    press(qtbot, window, Qt.Key.Key_A)                       # sky-aligned: rotated pair
    assert window.panels_view.is_sky_frame
    assert_labels_apart(window)
    drag_into_close_pair(qtbot, window, 1.2)                 # dragging it sky-aligned
    assert_labels_apart(window)
    press(qtbot, window, Qt.Key.Key_A)


# -- overlays on every colour map ---------------------------------------------------------------

def map_colours(name: str) -> np.ndarray:
    """The colour map's colours (256, 3), 0-255, as the panels draw them (matplotlib's)."""
    import matplotlib
    return matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3] * 255


def rgb(colour) -> np.ndarray:
    return np.array(pg.mkColor(colour).getRgb()[:3], float)


def overlay_colours(window) -> dict[str, np.ndarray]:
    """What each overlay is drawn in now, read from the items on screen."""
    pv, markers = window.panels_view, window.markers
    items = pv.overlay_items
    out = {}
    for k in range(2):
        out[f"marker {k + 1}"] = rgb(markers.item(k).pen.color())
        out[f"label {k + 1}"] = rgb(markers.item(k).label().color)
    out["target +"] = rgb(items.target_marks[1].opts["pen"].color())
    out["grid outline"] = rgb(items.grid_outlines[0].opts["pen"].color())
    out["compass"] = rgb(items.compass_lines.opts["pen"].color())
    out["scale bar"] = rgb(items.scale_bar.opts["pen"].color())
    out["N"] = rgb(items.compass_labels[0].color)
    return out


def test_overlays_stand_out_on_every_colour_map(qtbot, window, tmp_path):
    open_demo(qtbot, window)
    combo = window.panels_view.cmap_box
    for name in ["viridis", *(c for c in COLORMAPS if c != "viridis")]:
        choose(qtbot, combo, name)                          # the real control, by keys
        assert window.panels_view.colormap_name == name
        colours = overlay_colours(window)
        lut = map_colours(name)
        for what, colour in colours.items():
            contrast = np.min(np.linalg.norm(lut - colour, axis=1))
            assert contrast >= MIN_CONTRAST, (name, what, colour, contrast)
        # the two components stay told apart
        assert np.linalg.norm(colours["marker 1"] - colours["marker 2"]) > 150
    # the exported figure draws the components in the colours of the screen's map
    choose(qtbot, combo, "viridis")
    on_screen = overlay_colours(window)
    path = exported(qtbot, window, window.export_figure, tmp_path / "shown.svg")
    svg = path.read_text()
    for k in (1, 2):
        group = svg[svg.index(f'id="component-{k}"'):]
        hex_colour = "#{:02x}{:02x}{:02x}".format(*on_screen[f"marker {k}"].astype(int))
        style = group[group.index("<use"):][:400]              # the marker's symbol
        assert f"stroke: {hex_colour}" in style, (k, style)
    choose(qtbot, combo, "gray_r")


# -- a search that renumbers the pair -----------------------------------------------------------

def test_a_search_that_swaps_primary_and_secondary_says_so(qtbot, window):
    dx1, dx2, dy1, dy2 = demo_start_offsets()
    # marker 1 on the fainter component, marker 2 on the brighter one
    open_demo(qtbot, window, offsets=(dx2, dx1, dy2, dy1))
    before = [np.array(p) for p in window.markers.positions]
    window.markers.select(1)         # the user had the secondary selected (marker 2)
    with qtbot.waitSignal(window.fitDisplayed, timeout=TIMEOUT_MS):
        press(qtbot, window, Qt.Key.Key_P, CTRL)           # Fit > Optimize positions
    settled(qtbot, window)
    after = [np.array(p) for p in window.markers.positions]
    # the engine numbered by flux: the new 1 is where 2 was
    assert np.hypot(*(after[0] - before[1])) < np.hypot(*(after[0] - before[0]))
    sources = window.result.summary.sources
    assert sources[0].flux > sources[1].flux
    message = window.statusBar().currentMessage()
    assert SWAP_NOTE in message and "was 2" in message, message
    assert window.result.summary.swapped_from_start
    assert SWAP_NOTE in window.results_table.as_text()
    assert "renumbered" in menu_action(window, "Edit", "Undo").text()
    assert window.markers.selected_index == 0           # the same component, now 1
    # a search that keeps the numbering says nothing of it
    with qtbot.waitSignal(window.fitDisplayed, timeout=TIMEOUT_MS):
        press(qtbot, window, Qt.Key.Key_P, CTRL)
    settled(qtbot, window)
    assert not window.result.summary.swapped_from_start
    assert SWAP_NOTE not in window.statusBar().currentMessage()
    assert SWAP_NOTE not in window.results_table.as_text()


def test_swapped_from_start_pairs_ends_with_the_nearer_starts():
    start = np.array([[0.0, 0.0], [2.0, 0.0]])
    assert not swapped_from_start(start, start + 0.3)
    assert swapped_from_start(start, start[::-1] + 0.3)
    # sliding past each other along the line: the nearer pairing wins
    assert swapped_from_start(start, np.array([[1.6, 0.0], [0.3, 0.0]]))


# -- the readout in words, with units, and the mask's bits named ----------------------------

def hover_stamp_pixel(window, i: int, j: int) -> str:
    pv = window.panels_view
    widget = pv.graphics.mapFromScene(pv.view_to_scene("image", float(i), float(j)))
    _send_mouse(pv.graphics.viewport(), QEvent.Type.MouseMove, widget,
                Qt.MouseButton.NoButton)
    return pv.readout.text()


def test_readout_names_its_quantities_with_units_and_the_mask_bits(qtbot, window):
    open_demo(qtbot, window)
    panels = window.panels_view.panels
    j, i = (int(n) for n in np.argwhere(panels.mask_bits != 0)[0])
    value = int(panels.mask_bits[j, i])
    text = hover_stamp_pixel(window, i, j)
    lines = text.split("\n")
    names = mask_bit_names(value)
    assert names and all(not n.startswith("bit ") for n in names)   # DES's names
    assert f"mask {value} {'+'.join(names)}" in lines[0], lines[0]
    assert "0x" not in text and "I-S" not in text
    shown = lines[0].split(" px")[0].split()[1:]               # CCD x=... y=... px
    assert [float(part.split("=")[1]) for part in shown] == pytest.approx(
        [i + panels.origin[0], j + panels.origin[1]], abs=0.2)
    assert lines[1].startswith("RA ") and "°" in lines[1] and "(ICRS)" in lines[1]
    ra_hms = lines[1].split()[1]
    assert ra_hms.count(":") == 2
    for name, key in (("image", "image"), ("model", "model"),
                      ("image − background", "image_minus_background"),
                      ("image − target", "image_minus_target"),
                      ("residual", "residual")):
        assert f"{name} {panels[key][j, i]:.4g}" in text, name
    assert "[flux per pixel (ZP 30)]" in lines[-1]
    # an unmasked pixel says so in words
    j, i = (int(n) for n in np.argwhere(panels.mask_bits == 0)[0])
    assert "mask 0 (good)" in hover_stamp_pixel(window, i, j)


# -- panels say which exposure they show -------------------------------------------------------

def test_the_panels_name_the_exposure_they_show(qtbot, window):
    open_demo(qtbot, window)
    pv = window.panels_view
    for _ in window.browser.expnums():
        title = pv.plots["image"].titleLabel.text
        assert str(pv.panels.expnum) in title
        assert ("(detection)" in title) == pv.panels.is_detection
        press(qtbot, window, Qt.Key.Key_BracketRight)       # the next exposure
    assert window.selected_index == window.result.fit.scene.detection_index
