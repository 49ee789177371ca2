"""The pyqtgraph pieces of one image panel: its view box (pan, zoom, DS9's right-drag
contrast), its title, how an image item is given a new array, and the colour map re-spaced
by a stretch, and where the pointer is."""
from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QPointF, QRectF, Qt, pyqtSignal
from PyQt6.QtGui import QCursor
from PyQt6.QtWidgets import QGraphicsItem

from smp_model.fit.panels import PANEL_TITLES, ExposurePanels
from smp_model.outputs.display import stretch_curve, stretched_colors

__all__ = ["PanelViewBox", "best_columns", "cache_as_pixmap", "cursor_scene_pos", "make_colormap",
           "panel_titles", "set_title", "set_titles", "show_image"]


class PanelViewBox(pg.ViewBox):
    """A panel's view: left-drag pans, wheel zooms, right-drag changes contrast and
    bias (DS9's habit): ``levelsDragged(dx, dy)`` in fractions of the panel's size;
    a left double-click asks for the whole stamp again (``resetZoomRequested``)."""

    levelsDragged = pyqtSignal(float, float)
    resetZoomRequested = pyqtSignal()

    def mouseClickEvent(self, ev):
        if ev.double() and ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            self.resetZoomRequested.emit()
            return
        super().mouseClickEvent(ev)

    def mouseDragEvent(self, ev, axis=None):
        if ev.button() != Qt.MouseButton.RightButton:
            return super().mouseDragEvent(ev, axis)
        ev.accept()
        delta = ev.pos() - ev.lastPos()
        rect = self.boundingRect()
        self.levelsDragged.emit(float(delta.x()) / max(rect.width(), 1.0),
                                -float(delta.y()) / max(rect.height(), 1.0))


def show_image(item: pg.ImageItem, array: np.ndarray, rect: QRectF, levels) -> None:
    """Give ``item`` a new array unless it shows an equal one already: during a marker
    drag the image and the mask overlays stay the same, and re-rendering them was a
    third of each repaint."""
    current = item.image
    if current is not None and current.shape == array.shape and \
            np.array_equal(current, array, equal_nan=True):
        return
    item.setImage(array, autoLevels=False, levels=levels)
    item.setRect(rect)


def cache_as_pixmap(item: QGraphicsItem) -> None:
    """Paint ``item`` from a pixmap of it at the view's resolution, redrawn only when the
    item changes or the view zooms.  For what stays put during a marker drag (the data
    image, the mask overlays, the target marks and grid outlines): the refit's new model
    and residual images repaint the panels under them, and drawing those items again each
    time was most of the repaint."""
    item.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)


def set_title(plot: pg.PlotItem, text: str) -> None:
    """Set a panel's title without letting a long one widen its column: all five panels
    get one width."""
    label = plot.titleLabel
    if not getattr(label, "_width_free", False):
        # pyqtgraph's LabelItem sets its minimum and preferred width to the text's on
        # every text change and resize (``updateMin``); keep only the height.
        def update_min(label=label):
            height = label.itemRect().height()
            label.setMinimumWidth(0)
            label.setMinimumHeight(height)
            label._sizeHint = {Qt.SizeHint.MinimumSize: (0, height),
                               Qt.SizeHint.PreferredSize: (0, height),
                               Qt.SizeHint.MaximumSize: (-1, -1),
                               Qt.SizeHint.MinimumDescent: (0, 0)}
            label.updateGeometry()
        label.updateMin = update_min
        label._width_free = True
    plot.setTitle(text, size="9pt")


def panel_titles(panels: ExposurePanels | None, blink_model: bool = False) -> dict[str, str]:
    """Each panel's title: the Image panel's names the exposure shown (and whether it
    is the detection; all five panels show that exposure), and says when it blinks the
    model."""
    titles = dict(PANEL_TITLES)
    if blink_model:
        titles["image"] = "Model (blink)"
    if panels is not None:
        titles["image"] += f" · {panels.expnum}" + (" (detection)" if panels.is_detection
                                                    else "")
    return titles


def set_titles(plots: dict, panels: ExposurePanels | None, blink_model: bool = False) -> None:
    """Give the panels ``plots`` (by panel key) their `panel_titles`."""
    for key, text in panel_titles(panels, blink_model).items():
        set_title(plots[key], text)


def make_colormap(name: str, stretch: str = "published", invert: bool = False,
                  panels: ExposurePanels | None = None,
                  levels: tuple[float, float] | None = None) -> pg.ColorMap:
    """Colour map ``name`` (matplotlib's) re-spaced by the stretch's curve
    (`smp_model.outputs.display.stretch_curve`), so a linear level range shows the stretch."""
    base = pg.colormap.get(name, source="matplotlib")
    t = np.linspace(0.0, 1.0, 256)
    colors = stretched_colors(base.map(t, mode="byte"),
                              stretch_curve(stretch, panels, levels), invert)
    return pg.ColorMap(t, colors.astype(np.uint8))


def cursor_scene_pos(view) -> QPointF | None:
    """Scene position of the mouse pointer over the graphics view ``view``; None when the
    pointer is elsewhere."""
    local = view.mapFromGlobal(QCursor.pos())
    if not view.underMouse() or not view.rect().contains(local):
        return None
    return view.mapToScene(local)


def best_columns(width: float, height: float, n: int, aspect: float,
                 title_height: float = 0.0) -> int:
    """Columns (1..n) of the grid that draws ``n`` panels of ``aspect`` (width / height)
    largest in ``width`` x ``height`` pixels, each panel with a title row above it.  Grids
    within 5 % of the largest count as equal, and the widest of them wins: the panels
    then read in their published order, left to right, as far as the space allows."""
    def panel_height(columns: int) -> float:
        rows = math.ceil(n / columns)
        return min(width / columns / aspect, height / rows - title_height)
    best = max(panel_height(c) for c in range(1, n + 1))
    return max(c for c in range(1, n + 1) if panel_height(c) >= 0.95 * best)
