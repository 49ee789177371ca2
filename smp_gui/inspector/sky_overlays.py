"""Where the sky lies on the shown exposure, drawn over the panels: the target's sky
position (a +) and the scene grid's outline on every panel, in stamp coordinates; N/E
arrows and a scale bar on the image panel, in view coordinates.  Their colour is the
colour map's ``sky`` overlay colour (`smp_model.outputs.display.overlay_colors`,
`OverlayItems.set_colors`).

The positions are the engine's (`smp_model.outputs.display.exposure_overlays`, kept by
`SkyGeometry`); only where the compass and the scale bar go is chosen here.
"""
from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QPointF, QRectF, Qt
from PyQt6.QtGui import QPolygonF, QTransform

from smp_model.outputs.display import (OverlayColors, Overlays, exposure_overlays,
                                       exposure_sky_affine, label_backing, overlay_colors,
                                       stamp_extent)

from .panel_items import cache_as_pixmap

__all__ = ["SCALE_BAR_ARCSEC", "OverlayItems", "SkyGeometry"]

# Scale bar lengths offered (arcsec): the first at least 12 % of the view's width.
SCALE_BAR_ARCSEC = (1, 2, 5, 10, 20, 60)


class SkyGeometry:
    """The engine's sky geometry of the exposures shown, each computed once: a marker
    drag refits often, and WCS inverses cost ~13 ms an exposure on DES data."""

    def __init__(self):
        self._overlays: dict = {}
        self._extent: dict = {}

    def overlays(self, exposure, settings, ra: float, dec: float,
                 ready: tuple | None = None) -> Overlays | None:
        """Regions, compass and scale of ``exposure``.

        Parameters
        ----------
        exposure : smp_model.scene.exposures.LoadedExposure
        settings : smp_model.settings.FitSettings
        ra, dec : float
            The target's sky position (degrees).
        ready : tuple, optional
            ``(exposure, overlays)`` computed by the worker with the fit (for the
            exposure it prepared panels of), used when it is this exposure's.

        Returns
        -------
        smp_model.outputs.display.Overlays or None
            None when the exposure's WCS cannot be inverted.
        """
        key = (id(exposure), settings)
        if self._overlays.get("key") != key and ready is not None and ready[0] is exposure:
            self._overlays = {"key": key, "value": ready[1], "exposure": exposure}
        if self._overlays.get("key") != key:
            try:
                value = exposure_overlays(exposure, ra, dec, settings)
            except Exception:   # noqa: BLE001 - a WCS that cannot invert: no overlay
                value = None
            # the exposure is kept so that its id is not reused while it is the key
            self._overlays = {"key": key, "value": value, "exposure": exposure}
        return self._overlays["value"]

    def sky_extent(self, scene) -> tuple[float, float, float, float] | None:
        """(x0, x1, y0, y1) of the view that holds every exposure's stamp of ``scene``
        sky-aligned (`smp_model.outputs.display.stamp_extent`; one WCS Jacobian per exposure,
        ~0.5 ms each on DES data); None when no exposure's WCS gives one."""
        if self._extent.get("scene") is not scene:
            affines, shapes = [], []
            for exposure in scene.exposures:
                try:
                    affines.append(exposure_sky_affine(exposure))
                except Exception:   # noqa: BLE001 - a WCS that fails: not in the extent
                    continue
                shapes.append(exposure.shape)
            value = stamp_extent(affines, shapes) if affines else None
            self._extent = {"scene": scene, "value": value}
        return self._extent["value"]


class OverlayItems:
    """The pyqtgraph items of the overlays of one set of panels.

    Parameters
    ----------
    contents : iterable of pyqtgraph.ItemGroup
        Each panel's group of items in stamp coordinates (the target mark and the grid
        outline go there, so they follow the panel's stamp transform).
    image_plot : pyqtgraph.PlotItem
        The image panel, which gets the compass and the scale bar in view coordinates.
    """

    def __init__(self, contents, image_plot: pg.PlotItem):
        self.target_marks, self.target_outlines, self.grid_outlines = [], [], []
        for group in contents:
            # the + has an outline of the label backing's colour under it
            mark = pg.ScatterPlotItem(size=14, symbol="+", brush=None, pxMode=True)
            inner = pg.ScatterPlotItem(size=12, symbol="+", brush=None, pxMode=True)
            outline = pg.PlotCurveItem()
            for item in (outline, mark, inner):
                item.setZValue(12)
                cache_as_pixmap(item)   # fixed for an exposure
                group.addItem(item)
            self.target_marks += [mark, inner]
            self.target_outlines.append(mark)
            self.grid_outlines.append(outline)
        self.compass_lines = pg.PlotCurveItem(connect="pairs")
        self.scale_bar = pg.PlotCurveItem()
        self.compass_labels = [pg.TextItem(text, anchor=(0.5, 0.5)) for text in ("N", "E")]
        self.scale_label = pg.TextItem("", anchor=(0.5, 1.0))
        self.compass_items = [self.compass_lines, self.scale_bar, *self.compass_labels,
                              self.scale_label]
        for item in self.compass_items:
            item.setZValue(16)
            image_plot.addItem(item, ignoreBounds=True)
        self.colors: OverlayColors | None = None
        self.set_colors(overlay_colors("gray_r"))

    def set_colors(self, colors: OverlayColors) -> None:
        """Draw everything in ``colors.sky`` (the colour map's), the letters on a backing
        that sets them off (`smp_model.outputs.display.label_backing`)."""
        if colors == self.colors:
            return
        self.colors = colors
        sky, backing = colors.sky, label_backing(colors.sky)
        for mark in self.target_marks:
            outlined = mark in self.target_outlines
            mark.setPen(pg.mkPen(backing[:3], width=3) if outlined
                        else pg.mkPen(sky, width=1.5))
        for outline in self.grid_outlines:
            outline.setPen(pg.mkPen((*sky, 200), width=1, style=Qt.PenStyle.DashLine))
        self.compass_lines.setPen(pg.mkPen(sky, width=2))
        self.scale_bar.setPen(pg.mkPen(sky, width=2))
        for label in [*self.compass_labels, self.scale_label]:
            label.setColor(sky)
            label.fill = pg.mkBrush(backing)
            label.update()

    def hide(self) -> None:
        """Nothing drawn (an exposure whose WCS does not invert)."""
        for item in [*self.target_marks, *self.grid_outlines, *self.compass_items]:
            item.setVisible(False)

    def set_regions(self, overlays: Overlays) -> None:
        """Place the target marks and grid outlines (stamp coordinates)."""
        for mark in self.target_marks:
            mark.setData([overlays.target[0]], [overlays.target[1]])
        for outline in self.grid_outlines:
            outline.setData(overlays.grid[:, 0], overlays.grid[:, 1])

    def show_regions(self, visible: bool) -> None:
        """Target marks and grid outlines shown or hidden."""
        for item in [*self.target_marks, *self.grid_outlines]:
            item.setVisible(visible)

    def show_compass(self, visible: bool) -> None:
        """Compass and scale bar shown or hidden."""
        for item in self.compass_items:
            item.setVisible(visible)

    def draw_compass(self, overlays: Overlays, transform: QTransform, frame: QRectF,
                     stamp: QPolygonF | None = None) -> None:
        """N/E arrows in the top right corner of ``frame`` (shifted so that arrows and
        letters stay inside) and a scale bar in its bottom left, in view coordinates.

        Parameters
        ----------
        overlays : smp_model.outputs.display.Overlays
            The sky's directions and scale on the exposure (stamp px).
        transform : QTransform
            Stamp to view coordinates (the panels' ``stamp_transform``); the arrows are
            the sky's directions mapped by it.
        frame : QRectF
            The whole-stamp view rectangle (sky-aligned, the one that holds every
            exposure, so the compass stays put while stepping through them, as the sky
            does).
        stamp : QPolygonF, optional
            The shown stamp's outline in view coordinates: the arrows and letters are
            moved towards its centre until they lie on it (a rotated stamp leaves the
            corners of ``frame`` empty).
        """
        linear = np.array([[transform.m11(), transform.m21()],
                           [transform.m12(), transform.m22()]])
        self._draw_arrows(overlays, linear, frame, stamp)
        # view units per arcsec: stamp px per arcsec times the transform's scale
        self._draw_scale_bar(overlays.arcsec_px * math.sqrt(abs(np.linalg.det(linear))),
                             frame, stamp)

    def _draw_arrows(self, overlays: Overlays, linear: np.ndarray, frame: QRectF,
                     stamp: QPolygonF | None) -> None:
        x0, y0, w, h = frame.left(), frame.top(), frame.width(), frame.height()
        directions = []
        for vector in (overlays.north, overlays.east):
            mapped = linear @ np.asarray(vector)
            directions.append(mapped / np.hypot(*mapped))
        length = 0.13 * min(w, h)
        reach = 1.45 * length * np.array(directions)
        anchor = np.array([x0 + 0.93 * w, y0 + 0.93 * h]) - np.clip(reach.max(axis=0), 0, None)
        anchor = np.maximum(anchor, np.array([x0, y0]) - np.clip(reach.min(axis=0), None, 0)
                            + 0.05 * w)
        if stamp is not None:
            anchor = _onto(stamp, anchor, [np.zeros(2), *reach])
        points = []
        for label, direction in zip(self.compass_labels, directions):
            points += [anchor, anchor + length * direction]
            label.setPos(*(anchor + 1.35 * length * direction))
        points = np.array(points)
        self.compass_lines.setData(points[:, 0], points[:, 1])

    def _draw_scale_bar(self, per_arcsec: float, frame: QRectF,
                        stamp: QPolygonF | None = None) -> None:
        x0, y0, w, h = frame.left(), frame.top(), frame.width(), frame.height()
        arcsec = next((a for a in SCALE_BAR_ARCSEC if a * per_arcsec >= 0.12 * w),
                      SCALE_BAR_ARCSEC[-1])
        bx, by = x0 + 0.06 * w, y0 + 0.06 * h
        if stamp is not None:     # on the stamp, as the arrows
            bx, by = _onto(stamp, np.array([bx, by]), [np.zeros(2), np.array(
                [arcsec * per_arcsec, 0.0]), np.array([0.5 * arcsec * per_arcsec, 0.07 * h])])
        self.scale_bar.setData([bx, bx + arcsec * per_arcsec], [by, by])
        self.scale_label.setText(f'{arcsec}"')
        self.scale_label.setPos(bx + 0.5 * arcsec * per_arcsec, by + 0.07 * h)


def _onto(polygon: QPolygonF, anchor: np.ndarray, reach) -> np.ndarray:
    """``anchor`` moved along the line to ``polygon``'s centre just far enough that
    ``anchor + r`` lies inside for every ``r`` of ``reach`` (the centre when none does)."""
    centre = polygon.boundingRect().center()
    centre = np.array([centre.x(), centre.y()])
    for t in np.linspace(0.0, 1.0, 41):
        point = anchor + t * (centre - anchor)
        if all(polygon.containsPoint(QPointF(*(point + r)), Qt.FillRule.OddEvenFill)
               for r in reach):
            return point
    return centre
