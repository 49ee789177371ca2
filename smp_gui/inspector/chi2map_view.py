"""The Δχ² map of the secondary (computed by `smp_model.fit.chi2map` off the GUI thread):
chi2 - min(chi2) over secondary offsets, with 1, 2, 3 sigma contours (2 parameters),
the current primary and secondary, a hover readout and click-to-move of the secondary.

The map's plot takes the sixth cell of the panels' grid (`PanelsView.set_extra_plot`),
so the five stamps keep their size when it is shown; this widget is the line under the
panels that explains the map, offers its colour scale, and says when it is out of date.

The map's data are the secondary's (dx, dy) offsets in px (the convention's frame); cell
(i, j) is centred on ``(map.dx[i], map.dy[j])``.  What lies in offsets (image, contours)
is drawn under one item whose transform is the map's frame (`chi2map_frame.MapFrame`): CCD
axes, or sky-aligned like the stamps; the components' marks, the hover readout and
click-to-move map between the two.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QRectF, pyqtSignal
from PyQt6.QtGui import QTransform
from PyQt6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout,
                             QWidget)

from smp_model.fit.chi2map import Chi2Map
from smp_model.outputs.display import overlay_colors

from .chi2map_frame import CCD_AXES, CCD_FRAME, SKY_AXES, MapFrame, OffsetAxis
from .panel_items import set_title

__all__ = ["CONTOUR_LEVELS", "DISPLAY_PERCENTILE", "MAP_COLORMAP", "MAP_SCALES", "MAP_TITLE",
           "MIN_DISPLAY_MAX", "Chi2MapView", "display_range", "scaled"]

# Δχ² of 1, 2, 3 sigma for two parameters.
CONTOUR_LEVELS = (2.30, 6.18, 11.83)
# The colour range: 0 to the 99th percentile of the map, at least past the 3-sigma contour.
DISPLAY_PERCENTILE = 99.0
MIN_DISPLAY_MAX = 1.5 * CONTOUR_LEVELS[-1]
# Colour scales of the map: the value the colours are spaced in (contours stay at their
# Δχ²).  asinh is linear below Δχ² ~ 1 and logarithmic far above it.
MAP_SCALES = {"linear": "linear", "log": "log₁₀(1 + Δχ²)", "asinh": "asinh(Δχ²)"}
MAP_TITLE = "Δχ² map (secondary)"
MAP_COLORMAP = "viridis"     # the components are drawn in its overlay colours


def display_range(delta: np.ndarray) -> tuple[float, float]:
    """Colour range of a Δχ² map (NaN cells ignored)."""
    finite = delta[np.isfinite(delta)]
    top = float(np.percentile(finite, DISPLAY_PERCENTILE)) if finite.size else 0.0
    return 0.0, max(top, MIN_DISPLAY_MAX)


def scaled(delta, scale: str):
    """Δχ² (>= 0) in the colour ``scale`` (a key of `MAP_SCALES`)."""
    if scale == "log":
        return np.log10(1.0 + np.asarray(delta))
    if scale == "asinh":
        return np.arcsinh(delta)
    return np.asarray(delta, float)


class Chi2MapView(QWidget):
    """The Δχ² map: its plot (in ``host``'s grid while this widget is shown) and its line.

    Signal cellClicked(i, j): the user clicked map cell (column i, row j);
    hovered(str): the hover readout of the cell under the pointer.

    Parameters
    ----------
    host : PanelsView
        The panels whose grid shows the map's plot.
    """

    cellClicked = pyqtSignal(int, int)
    hovered = pyqtSignal(str)

    def __init__(self, host, parent=None):
        super().__init__(parent)
        self.host = host
        self.chi2map: Chi2Map | None = None
        self.scale = "linear"
        self.stale = False
        self.frame = CCD_FRAME
        self._components = None      # (primary, secondary) offsets shown, px
        self.plot = pg.PlotItem(axisItems={"bottom": OffsetAxis("bottom")})
        set_title(self.plot, MAP_TITLE)
        # a cell like the panels': no larger preferred size that would shrink their row
        self.plot.setPreferredSize(60, 60)
        self.plot.setAspectLocked(True)
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self._label_axes()
        self.plot.setVisible(False)
        self.plot.getViewBox().sigResized.connect(self._fit_map)
        # what lies in offsets, under the frame's transform (zoom set by `_fit_map`)
        self.contents = pg.ItemGroup()
        self.plot.addItem(self.contents, ignoreBounds=True)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.contents.addItem(self.image)
        self.colorbar = pg.ColorBarItem(values=(0.0, MIN_DISPLAY_MAX), label="Δχ²",
                                        colorMap=pg.colormap.get(MAP_COLORMAP),
                                        interactive=False, width=12)
        self.colorbar.setImageItem(self.image, insert_in=self.plot)
        self.contours = [pg.IsocurveItem(level=level, pen=pg.mkPen("w", width=1))
                         for level in CONTOUR_LEVELS]
        for curve in self.contours:
            curve.setParentItem(self.image)
            # isocurve vertices are at array indices; pixel centres are at index + 0.5
            curve.setTransform(QTransform.fromTranslate(0.5, 0.5))
        self.points = pg.ScatterPlotItem(size=12, pxMode=True)
        self.points.setZValue(10)
        self.plot.addItem(self.points)
        self._build_line()
        scene = host.graphics.scene()
        scene.sigMouseClicked.connect(self._on_click)
        scene.sigMouseMoved.connect(self._on_hover)

    def _build_line(self):
        self.info = QLabel("Compute a map from the fit controls (binary mode).")
        self.info.setWordWrap(True)
        self.stale_label = QLabel("")
        self.stale_label.setStyleSheet("color: #b35c00; font-weight: bold;")
        self.readout = QLabel("")
        self.readout.setStyleSheet("font-family: monospace;")
        # its text must not resize the line (and so the panels' grid): the map would move
        # under the pointer between the readout of a cell and the click on it
        self.readout.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        # sky-aligned asked for, but the map cannot be: why (as the panels' notice)
        self.frame_label = QLabel("")
        self.frame_label.setStyleSheet("color: #b35c00; font-weight: bold;")
        self.frame_label.setWordWrap(True)
        self.frame_label.hide()
        self.scale_box = QComboBox()
        for key, label in MAP_SCALES.items():
            self.scale_box.addItem(label, key)
        self.scale_box.currentIndexChanged.connect(
            lambda _: self.set_scale(self.scale_box.currentData()))
        top = QHBoxLayout()
        top.addWidget(QLabel("Δχ² map colours:"))
        top.addWidget(self.scale_box)
        top.addWidget(self.readout, 1)
        top.addWidget(self.stale_label)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.frame_label)
        layout.addWidget(self.info)

    def setVisible(self, visible: bool):
        """Shown: the map's plot takes the sixth cell of the panels' grid."""
        super().setVisible(visible)
        self.host.set_extra_plot(self.plot if visible else None)

    def set_map(self, chi2map: Chi2Map):
        self.chi2map = chi2map
        self.set_stale(False)
        self._draw()
        step_x = chi2map.dx[1] - chi2map.dx[0] if chi2map.dx.size > 1 else 1.0
        step_y = chi2map.dy[1] - chi2map.dy[0] if chi2map.dy.size > 1 else 1.0
        self.image.setRect(QRectF(chi2map.dx[0] - step_x / 2, chi2map.dy[0] - step_y / 2,
                                  step_x * chi2map.dx.size, step_y * chi2map.dy.size))
        self.info.setText(self._explanation(chi2map))
        self._fit_map()

    def _fit_map(self, *_):
        """The whole map in its cell (again whenever the cell changes size: it is laid
        out after the map arrives)."""
        if self.chi2map is not None:
            offsets = self.image.mapRectToParent(self.image.boundingRect())
            self.plot.getViewBox().setRange(rect=self.frame.to_view.mapRect(offsets),
                                            padding=0.02)

    def set_frame(self, frame: MapFrame):
        """Draw the map in ``frame`` (`chi2map_frame`): its image, contours and the
        components' marks, axis labels, and the frame's notice."""
        if frame == self.frame:
            return      # every refit of a drag asks again
        self.frame = frame
        self.contents.setTransform(frame.to_view)
        self._label_axes()
        self.frame_label.setText(frame.notice)
        self.frame_label.setVisible(bool(frame.notice))
        if self._components is not None:
            self.set_components(*self._components)
        if self.chi2map is not None:
            self.info.setText(self._explanation(self.chi2map))
            self._fit_map()
        self.readout.setText("")    # it named the other frame's offsets

    def _label_axes(self):
        bottom, left = SKY_AXES if self.frame.sky else CCD_AXES
        self.plot.setLabel("bottom", bottom)
        self.plot.setLabel("left", left)
        self.plot.getAxis("bottom").set_negate(self.frame.sky)

    def _draw(self):
        """The image, colour bar and contours in the chosen scale."""
        m = self.chi2map
        delta = np.where(np.isfinite(m.chi2), m.delta_chi2, np.nan)
        lo, hi = display_range(delta)
        shown = scaled(np.nan_to_num(delta, nan=hi), self.scale)
        levels = (float(scaled(lo, self.scale)), float(scaled(hi, self.scale)))
        self.image.setImage(shown, autoLevels=False, levels=levels)
        self.colorbar.setLevels(levels)
        self.colorbar.getAxis("left").setLabel(
            MAP_SCALES[self.scale].replace("linear", "Δχ²"))
        for curve, level in zip(self.contours, CONTOUR_LEVELS):
            # IsocurveItem draws in the image's pixel frame with data indexed [x, y].
            curve.setLevel(float(scaled(level, self.scale)))
            curve.setData(shown.T)

    def _explanation(self, m: Chi2Map) -> str:
        best = m.best
        min_chi2 = float(np.nanmin(np.where(np.isfinite(m.chi2), m.chi2, np.nan)))
        primary = "re-optimised in each cell" if m.reoptimized_primary else "held"
        gain = m.chi2_single - min_chi2
        text = (f"Δχ² = χ² − min χ² (≥ 0; contours 1, 2, 3 σ); best secondary at "
                f"dx={best[0]:.2f}, dy={best[1]:.2f} px; primary {primary}; min χ² = "
                f"{min_chi2:.2f}, single χ² = {m.chi2_single:.2f}, so a secondary gains "
                f"{gain:.2f}.")
        if gain < 0:
            text += (" Negative: no cell of this map fits better than the single source "
                     "at its default offset (the primary is held, or the pair is not "
                     "resolved here).")
        if self.frame.sky:
            text += (" Drawn as the stamps: arcsec on the sky from the target, north up, "
                     "east left (the offsets are CCD px of the detection exposure).")
        return text + "  Click a cell to move the secondary."

    def set_scale(self, scale: str):
        """Colour the map in ``scale`` (a key of `MAP_SCALES`)."""
        if scale not in MAP_SCALES:
            raise ValueError(f"unknown map scale {scale!r}")
        self.scale = scale
        self.scale_box.blockSignals(True)
        self.scale_box.setCurrentIndex(list(MAP_SCALES).index(scale))
        self.scale_box.blockSignals(False)
        if self.chi2map is not None:
            self._draw()

    def set_stale(self, stale: bool, why: str = ""):
        """Mark the map shown as out of date (a new one is being computed, or what it was
        computed for changed: ``why``)."""
        self.stale = bool(stale)
        self.stale_label.setText(f"map out of date: {why}" if stale else "")
        set_title(self.plot, MAP_TITLE + (" — OUT OF DATE" if stale else ""))

    def set_components(self, primary, secondary):
        """Show the current primary and secondary (dx, dy) offsets (px), in the frame, in
        the map's overlay colours."""
        self._components = (tuple(primary), tuple(secondary))
        colours = overlay_colors(MAP_COLORMAP).components
        self.points.setData([{"pos": self.frame.offset_to_view(*pos),
                              "brush": pg.mkBrush(colour), "symbol": "o"}
                             for pos, colour in zip((primary, secondary), colours)])

    def cell_at(self, dx: float, dy: float) -> tuple[int, int] | None:
        """(i, j) of the cell holding secondary offset (dx, dy) px; None: off the map."""
        m = self.chi2map
        if m is None:
            return None
        i = int(np.argmin(np.abs(m.dx - dx)))
        j = int(np.argmin(np.abs(m.dy - dy)))
        step = (m.dx[1] - m.dx[0]) if m.dx.size > 1 else 1.0
        if abs(m.dx[i] - dx) > step / 2 + 1e-9 or abs(m.dy[j] - dy) > step / 2 + 1e-9:
            return None
        return i, j

    def _cell_under(self, scene_pos) -> tuple[int, int] | None:
        vb = self.plot.getViewBox()
        if (self.chi2map is None or not self.plot.isVisible()
                or not vb.sceneBoundingRect().contains(scene_pos)):
            return None
        point = vb.mapSceneToView(scene_pos)
        return self.cell_at(*self.frame.view_to_offset(point.x(), point.y()))

    def _on_click(self, event):
        cell = self._cell_under(event.scenePos())
        if cell is not None:
            self.cellClicked.emit(*cell)

    def _on_hover(self, scene_pos):
        """The cell under the pointer: Δχ², its offset in the frame shown (sky-aligned:
        from the target's sky position, arcsec) and dx, dy (the engine's CCD px); the
        secondary stays where it is."""
        cell = self._cell_under(scene_pos)
        if cell is None:
            return
        i, j = cell
        m = self.chi2map
        value = m.delta_chi2[j, i]
        text = (f"Δχ²={value:.2f}" if np.isfinite(value) else "Δχ²=— (degenerate fit)")
        ccd = f"dx={m.dx[i]:+.2f} dy={m.dy[j]:+.2f}"
        if self.frame.sky:
            east, north = self.frame.sky_offset(m.dx[i], m.dy[j])
            text += f" at ΔRA cos δ={east:+.3f}″ ΔDec={north:+.3f}″ ({ccd} CCD px)"
        else:
            text += f" at {ccd} px"
        self.readout.setText(text)
        self.hovered.emit(text)
