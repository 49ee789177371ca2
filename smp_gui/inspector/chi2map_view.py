"""The Δχ² map of the secondary (computed by `smp_model.fit.chi2map` off the GUI thread):
chi2 - min(chi2) over secondary offsets, with 1, 2, 3 sigma contours (2 parameters),
the current primary and secondary, and click-to-move of the secondary.

Axes are the secondary's (dx, dy) offsets in px (the convention's frame); cell (i, j) is
centred on ``(map.dx[i], map.dy[j])``.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QRectF, pyqtSignal
from PyQt6.QtGui import QTransform
from PyQt6.QtWidgets import QLabel, QVBoxLayout, QWidget

from smp_model.fit.chi2map import Chi2Map

__all__ = ["CONTOUR_LEVELS", "DISPLAY_PERCENTILE", "MIN_DISPLAY_MAX", "Chi2MapView",
           "display_range"]

# Δχ² of 1, 2, 3 sigma for two parameters.
CONTOUR_LEVELS = (2.30, 6.18, 11.83)
# The colour range: 0 to the 99th percentile of the map, at least past the 3-sigma contour.
DISPLAY_PERCENTILE = 99.0
MIN_DISPLAY_MAX = 1.5 * CONTOUR_LEVELS[-1]


def display_range(delta: np.ndarray) -> tuple[float, float]:
    """Colour range of a Δχ² map (NaN cells ignored)."""
    finite = delta[np.isfinite(delta)]
    top = float(np.percentile(finite, DISPLAY_PERCENTILE)) if finite.size else 0.0
    return 0.0, max(top, MIN_DISPLAY_MAX)


class Chi2MapView(QWidget):
    """Signal cellClicked(i, j): the user clicked map cell (column i, row j)."""

    cellClicked = pyqtSignal(int, int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.chi2map: Chi2Map | None = None
        self.plot_widget = pg.PlotWidget()
        self.plot = self.plot_widget.getPlotItem()
        self.plot.setAspectLocked(True)
        self.plot.setLabel("bottom", "secondary dx (px)")
        self.plot.setLabel("left", "secondary dy (px)")
        self.image = pg.ImageItem(axisOrder="row-major")
        self.plot.addItem(self.image)
        self.colorbar = pg.ColorBarItem(values=(0.0, MIN_DISPLAY_MAX), label="Δχ²",
                                        colorMap=pg.colormap.get("viridis"),
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
        self.info = QLabel("Compute a map from the fit controls (binary mode).")
        self.info.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot_widget, 1)
        layout.addWidget(self.info)
        self.plot.scene().sigMouseClicked.connect(self._on_click)

    def set_map(self, chi2map: Chi2Map):
        self.chi2map = chi2map
        delta = np.where(np.isfinite(chi2map.chi2), chi2map.delta_chi2, np.nan)
        lo, hi = display_range(delta)
        shown = np.nan_to_num(delta, nan=hi)
        self.image.setImage(shown, autoLevels=False, levels=(lo, hi))
        self.colorbar.setLevels((lo, hi))
        step_x = chi2map.dx[1] - chi2map.dx[0] if chi2map.dx.size > 1 else 1.0
        step_y = chi2map.dy[1] - chi2map.dy[0] if chi2map.dy.size > 1 else 1.0
        self.image.setRect(QRectF(chi2map.dx[0] - step_x / 2, chi2map.dy[0] - step_y / 2,
                                  step_x * chi2map.dx.size, step_y * chi2map.dy.size))
        for curve in self.contours:
            # IsocurveItem draws in the image's pixel frame with data indexed [x, y].
            curve.setData(shown.T)
        best = chi2map.best
        primary = "re-optimised in each cell" if chi2map.reoptimized_primary else "held"
        self.info.setText(
            f"Δχ² = χ² − min χ² (contours 1, 2, 3 σ); best secondary at dx={best[0]:.2f}, "
            f"dy={best[1]:.2f} px; primary {primary}; min χ² = "
            f"{np.nanmin(np.where(np.isfinite(chi2map.chi2), chi2map.chi2, np.nan)):.2f}, "
            f"single χ² = {chi2map.chi2_single:.2f}.  Click a cell to move the secondary.")
        self.plot.autoRange()

    def set_components(self, primary, secondary):
        """Show the current primary and secondary (dx, dy) offsets."""
        self.points.setData([
            {"pos": primary, "brush": pg.mkBrush(0, 190, 255), "symbol": "o"},
            {"pos": secondary, "brush": pg.mkBrush(255, 140, 0), "symbol": "o"},
        ])

    def cell_at(self, dx: float, dy: float) -> tuple[int, int] | None:
        m = self.chi2map
        if m is None:
            return None
        i = int(np.argmin(np.abs(m.dx - dx)))
        j = int(np.argmin(np.abs(m.dy - dy)))
        step = (m.dx[1] - m.dx[0]) if m.dx.size > 1 else 1.0
        if abs(m.dx[i] - dx) > step / 2 + 1e-9 or abs(m.dy[j] - dy) > step / 2 + 1e-9:
            return None
        return i, j

    def _on_click(self, event):
        if self.chi2map is None:
            return
        vb = self.plot.getViewBox()
        if not vb.sceneBoundingRect().contains(event.scenePos()):
            return
        point = vb.mapSceneToView(event.scenePos())
        cell = self.cell_at(point.x(), point.y())
        if cell is not None:
            self.cellClicked.emit(*cell)
