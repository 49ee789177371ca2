"""Draggable target markers (single target, or binary primary and secondary) on every
panel of the detection exposure, with position-error ellipses.

Positions are stamp coordinates (stamp array coordinates, pixel centres at integers; see
`smp_gui.inspector.coordinates`).  The marker items themselves live in the view boxes'
coordinates, which `set_transform` (the panels' ``stamp_transform``) maps stamp
coordinates to: pyqtgraph's `TargetItem` drags in view coordinates (``mapToView``), so a
marker must not be the child of a transformed item.  The markers only report where the
user puts them; the window turns stamp displacements into offset displacements (the
convention's frame differs from the data frame by a constant shift, so displacements are
the same in both).

Colours come from the colour map's overlay colours (`set_colors`,
`smp_model.outputs.display.overlay_colors`).  A binary's numbers sit each on the side away
from the other component, along their separation on screen (`_place_labels`, the
engine's `smp_model.outputs.display.label_directions`), at a fixed distance in screen
pixels: a pair 1-2 px apart keeps readable numbers at any zoom and when sky-aligned,
while the markers stay exactly on their positions.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QObject, QPointF, pyqtSignal
from PyQt6.QtGui import QTransform

from smp_model.outputs.display import (OverlayColors, label_backing, label_directions,
                                       overlay_colors)

from .coordinates import ccd_to_view

__all__ = ["COMPONENT_LABELS", "ELLIPSE_POINTS", "LABEL_DISTANCE_PX", "MARKER_SIZE",
           "OUTLINE_BRUSH", "MarkerLayer", "component_offset", "ellipse_points",
           "fitted_markers"]

COMPONENT_LABELS = ("1", "2")      # primary, secondary (the published order)
MARKER_SIZE = 16
# From a marker's centre to the nearest corner of its number (screen px): just outside
# the ring.
LABEL_DISTANCE_PX = MARKER_SIZE / 2 + 2
# A dark translucent disc under the coloured ring, so that the ring reads on light and
# dark pixels alike.
OUTLINE_BRUSH = pg.mkBrush(0, 0, 0, 90)
ELLIPSE_POINTS = 64


def ellipse_points(center, cov2: np.ndarray, n_sigma: float = 1.0,
                   n_points: int = ELLIPSE_POINTS) -> np.ndarray:
    """(n_points, 2) outline of the ``n_sigma`` ellipse of a 2x2 position covariance."""
    vals, vecs = np.linalg.eigh(np.asarray(cov2, float))
    vals = np.clip(vals, 0.0, None)
    t = np.linspace(0.0, 2 * np.pi, n_points)
    circle = np.stack([np.cos(t), np.sin(t)])
    outline = vecs @ (np.sqrt(vals)[:, None] * n_sigma * circle)
    return outline.T + np.asarray(center, float)[None, :]


def component_offset(offsets, k: int) -> tuple[float, float]:
    """(dx, dy) of component k in single ``(dx, dy)`` or binary ``(dx1, dx2, dy1, dy2)``."""
    if len(offsets) == 2:
        return float(offsets[0]), float(offsets[1])
    return float(offsets[k]), float(offsets[2 + k])


def fitted_markers(fit, offsets) -> tuple[list[tuple[float, float]], list | None]:
    """Where the markers of ``fit``'s sources go, and their error ellipses.

    Parameters
    ----------
    fit : smp_model.fit.results.SceneFit
        The fit shown, with one source per component of ``offsets``.
    offsets : sequence of float
        The offsets on screen, published order (px): the markers are at the fitted
        sources' CCD positions moved by any change not yet fitted (the view and the
        offsets differ by a constant shift).

    Returns
    -------
    positions : list of (float, float)
        Stamp coordinates of each marker.
    ellipses : list of (2, 2) arrays, or None
        The position covariances, while the fit shown is at the offsets on screen.
    """
    origin = fit.scene.exposures[fit.scene.detection_index].origin
    on_screen = [component_offset(offsets, k) for k in range(len(fit.sources))]
    positions = []
    for source, (cdx, cdy) in zip(fit.sources, on_screen):
        u, v = ccd_to_view(source.x, source.y, origin)
        positions.append((u + cdx - source.dx, v + cdy - source.dy))
    cov = fit.position_covariance
    if cov is None or not np.allclose(fit.offsets.ravel(), np.array(on_screen).ravel()):
        return positions, None
    return positions, [cov[2 * k:2 * k + 2, 2 * k:2 * k + 2] for k in range(len(on_screen))]


class MarkerLayer(QObject):
    """One marker per component on each of the given plots, kept in step.

    Signals
    -------
    dragged(k, u0, v0, u1, v1) : component k, grabbed at stamp (u0, v0), is now at (u1, v1).
    dragFinished(k, u0, v0, u1, v1) : a drag of component k from (u0, v0) ended at (u1, v1).
    selected(k) : component k was grabbed (the arrow keys nudge the selected one).
    """

    dragged = pyqtSignal(int, float, float, float, float)
    dragFinished = pyqtSignal(int, float, float, float, float)
    selected = pyqtSignal(int)

    def __init__(self, plots, parent=None):
        super().__init__(parent)
        self.plots = list(plots)
        self.items: list[list[pg.TargetItem]] = []      # [component][plot]
        self.ellipses: list[list[pg.PlotCurveItem]] = []
        self.positions: list[tuple[float, float]] = []
        self._ellipse_shown: list[bool] = []
        self.selected_index = 0
        self._drag_start: dict[int, tuple[float, float]] = {}
        self._syncing = False
        self.movable = True
        self._visible = True
        self.transform = QTransform()      # stamp -> view coordinates
        self._covariances = None
        self.colors: OverlayColors = overlay_colors("gray_r")

    def _to_view(self, u: float, v: float) -> QPointF:
        return self.transform.map(QPointF(u, v))

    def _to_stamp(self, point) -> tuple[float, float]:
        inverse, _ = self.transform.inverted()
        mapped = inverse.map(QPointF(point.x(), point.y()))
        return float(mapped.x()), float(mapped.y())

    def set_transform(self, transform: QTransform):
        """Stamp -> view coordinates of the panels (sky-aligned or not): the markers and
        ellipses are drawn again at their stamp positions."""
        if transform == self.transform:
            return
        self.transform = QTransform(transform)
        self.set_positions(self.positions)
        covariances, self._ellipse_shown = self._covariances, [True] * len(self.ellipses)
        self.set_ellipses(covariances)

    def set_colors(self, colors: OverlayColors):
        """Draw the markers, numbers and ellipses in ``colors.components`` (the colour
        map's, `smp_model.outputs.display.overlay_colors`)."""
        if colors == self.colors:
            return
        self.colors = colors
        for k, (group, curves) in enumerate(zip(self.items, self.ellipses)):
            colour = colors.components[k]
            for item in group:
                label = item.label()
                if label is not None:
                    label.setColor(colour)
                    label.fill = pg.mkBrush(label_backing(colour))
                    label.update()
            for curve in curves:
                curve.setPen(self._ellipse_pen(colour))
        self.select(self.selected_index)

    @property
    def count(self) -> int:
        return len(self.positions)

    def set_positions(self, positions):
        """Place the markers at stamp positions (one per component), without signals."""
        positions = [(float(u), float(v)) for u, v in positions]
        if len(positions) != len(self.items):
            self._rebuild(len(positions))
        self.positions = positions
        self._syncing = True
        try:
            for k, (u, v) in enumerate(positions):
                point = self._to_view(u, v)
                for item in self.items[k]:
                    if not item.moving:
                        item.setPos(point)
        finally:
            self._syncing = False
        self._place_labels()

    def set_visible(self, visible: bool):
        self._visible = visible
        for group in self.items + self.ellipses:
            for item in group:
                item.setVisible(visible)

    def set_movable(self, movable: bool):
        self.movable = movable
        for group in self.items:
            for item in group:
                item.movable = movable

    def set_ellipses(self, covariances):
        """1-sigma ellipses (2x2 covariance per component in stamp px, or None to hide)."""
        self._covariances = covariances
        for k, group in enumerate(self.ellipses):
            cov = covariances[k] if covariances is not None and k < len(covariances) else None
            shown = cov is not None and bool(np.all(np.isfinite(cov)))
            if not shown and not self._ellipse_shown[k]:
                continue    # nothing drawn, nothing to clear (every refit of a drag)
            pts = ellipse_points(self.positions[k], cov) if shown else None
            if pts is not None:
                pts = np.array([[p.x(), p.y()] for p in (self._to_view(u, v)
                                                         for u, v in pts)])
            for curve in group:
                if pts is None:
                    curve.setData([], [])
                else:
                    curve.setData(pts[:, 0], pts[:, 1])
            self._ellipse_shown[k] = shown

    def select(self, k: int):
        self.selected_index = k
        for n, group in enumerate(self.items):
            width = 3 if n == k else 2
            for item in group:
                item.setPen(pg.mkPen(self.colors.components[n], width=width))
                item.setBrush(OUTLINE_BRUSH)
        self.selected.emit(k)

    def item(self, k: int, plot_index: int = 0) -> pg.TargetItem:
        return self.items[k][plot_index]

    # -- internals ----------------------------------------------------------------------

    def _rebuild(self, n: int):
        for group in self.items + self.ellipses:
            for item in group:
                item.scene() and item.getViewBox() and item.getViewBox().removeItem(item)
        self.items, self.ellipses = [], []
        for k in range(n):
            label, colour = COMPONENT_LABELS[k], self.colors.components[k]
            group, curves = [], []
            for plot in self.plots:
                item = pg.TargetItem(pos=(0, 0), size=MARKER_SIZE, symbol="o",
                                     pen=pg.mkPen(colour, width=2), brush=OUTLINE_BRUSH,
                                     hoverPen=pg.mkPen("w", width=2),
                                     hoverBrush=(255, 255, 255, 40), movable=self.movable,
                                     label=label if n > 1 else None,
                                     labelOpts={"color": colour, "offset": (9, 9),
                                                "fill": label_backing(colour)})
                item.setZValue(20)
                item.sigPositionChanged.connect(
                    lambda it, k=k: self._on_moved(k, it))
                item.sigPositionChangeFinished.connect(
                    lambda it, k=k: self._on_finished(k, it))
                plot.addItem(item)
                curve = pg.PlotCurveItem(pen=self._ellipse_pen(colour))
                curve.setZValue(19)
                plot.addItem(curve)
                group.append(item)
                curves.append(curve)
            self.items.append(group)
            self.ellipses.append(curves)
        self.positions = [(0.0, 0.0)] * n
        self._ellipse_shown = [False] * n
        self.set_visible(self._visible)
        self.select(min(self.selected_index, n - 1))

    @staticmethod
    def _ellipse_pen(colour):
        return pg.mkPen(colour, width=1, style=pg.QtCore.Qt.PenStyle.DashLine)

    def _place_labels(self):
        """Each number on the far side of its marker from the other component, along the
        pair's separation on screen (the view boxes draw with equal scales on both axes,
        y up, so the view's directions are the screen's; sky-aligned included)."""
        if len(self.items) != 2:
            return
        view = [self._to_view(u, v) for u, v in self.positions]
        directions = label_directions([[p.x(), p.y()] for p in view])
        for group, (dx, dy) in zip(self.items, directions):
            # the text's anchor is its corner (or edge middle) nearest the marker
            reach = max(abs(dx), abs(dy))
            anchor = (0.5 - 0.5 * dx / reach, 0.5 + 0.5 * dy / reach)
            offset = pg.Point(LABEL_DISTANCE_PX * dx / reach, LABEL_DISTANCE_PX * dy / reach)
            for item in group:
                label = item.label()
                if label is None or (label.offset == offset
                                     and tuple(label.anchor) == anchor):
                    continue
                label.offset = offset
                label.setAnchor(anchor)
                label.viewTransformChanged()

    def _on_moved(self, k: int, source: pg.TargetItem):
        if self._syncing or not source.moving:
            return
        pos = source.pos()
        u, v = self._to_stamp(pos)
        if k not in self._drag_start:
            self._drag_start[k] = self.positions[k]
            if self.selected_index != k:
                self.select(k)
        self.positions[k] = (u, v)
        self._syncing = True
        try:
            for item in self.items[k]:
                if item is not source:
                    item.setPos(pos)
        finally:
            self._syncing = False
        self._place_labels()
        if self._ellipse_shown[k]:   # the error ellipse belonged to the old place
            for curve in self.ellipses[k]:
                curve.setData([], [])
            self._ellipse_shown[k] = False
        u0, v0 = self._drag_start[k]
        self.dragged.emit(k, u0, v0, u, v)

    def _on_finished(self, k: int, source: pg.TargetItem):
        start = self._drag_start.pop(k, None)
        if start is None:
            return
        u, v = self.positions[k]
        self.dragFinished.emit(k, start[0], start[1], u, v)
