"""Plots beside the survey table (pyqtgraph), linked to it: a light curve of the current
object (magnitude against MJD, or against rotational phase when folded; one colour per
band, error bars), histograms of chi2/dof and binary delta chi2, and a scatter of any two
columns.  Clicking a point emits ``pointClicked(survey_index)``; the window selects that
row, and `set_highlight` marks the table's selection in every plot.

All plots show the filtered detections only (the window passes the table's ``order``).
Magnitudes are on zeropoint 30; the magnitude axis grows downwards, as astronomers read it.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QHBoxLayout, QLabel,
                             QTabWidget, QVBoxLayout, QWidget)

from smp_model.survey.core import Survey
from smp_model.survey.rotation import fit_rotation, fold

__all__ = ["BAND_COLOURS", "HIGHLIGHT", "CountAxis", "SurveyPlots"]

BAND_COLOURS = {"g": (40, 160, 60), "r": (210, 50, 40), "i": (230, 140, 20),
                "z": (140, 60, 170), "Y": (120, 80, 40)}
HIGHLIGHT = pg.mkPen((0, 0, 0), width=2)


class CountAxis(pg.AxisItem):
    """An axis of counts: ticks at whole numbers only (a histogram of a few detections
    had ticks at 0.5 detections)."""

    def tickSpacing(self, minVal, maxVal, size):
        levels = [(spacing, offset) for spacing, offset in
                  super().tickSpacing(minVal, maxVal, size)
                  if spacing >= 1 and float(spacing).is_integer()]
        return levels or [(1.0, 0.0)]

    def tickValues(self, minVal, maxVal, size):
        return [(spacing, [v for v in values if float(v).is_integer()])
                for spacing, values in super().tickValues(minVal, maxVal, size)]


def _band_colour(band: str):
    return BAND_COLOURS.get(band, (60, 90, 200))


class SurveyPlots(QTabWidget):
    """Signals: ``pointClicked(int)`` a survey index; ``binClicked(list)`` the survey
    indices in a histogram bar that was clicked."""

    pointClicked = pyqtSignal(int)
    binClicked = pyqtSignal(list)

    def __init__(self, survey: Survey, parent=None):
        super().__init__(parent)
        self.survey = survey
        self.order = np.arange(len(survey))
        self.current: int | None = None
        self.highlighted = np.array([], int)
        # Tabs whose plots wait for the new rows: only the visible tab is redrawn at once
        # (10,000 scatter points take ~45 ms to set; a filter must feel instant).
        self._stale: set[int] = set()
        self._build_light_curve()
        self._build_histograms()
        self._build_scatter()
        self._updaters = (self.update_light_curve, self.update_histograms,
                          self.update_scatter)
        self.currentChanged.connect(self._refresh_visible)

    # -- construction ------------------------------------------------------------------

    def _build_light_curve(self):
        page = QWidget()
        layout = QVBoxLayout(page)
        row = QHBoxLayout()
        self.object_combo = QComboBox()
        names = sorted(set(self.survey.columns["name"].astype(str)))
        self.object_combo.addItems(names)
        self.fold = QCheckBox("fold at period (h)")
        self.period = QDoubleSpinBox()
        self.period.setRange(0.01, 10000.0)
        self.period.setDecimals(4)
        self.period.setValue(8.0)
        row.addWidget(QLabel("object"))
        row.addWidget(self.object_combo, 1)
        row.addWidget(self.fold)
        row.addWidget(self.period)
        layout.addLayout(row)
        self.light_curve = pg.PlotWidget()
        self.light_curve.setBackground("w")
        self.light_curve.getPlotItem().invertY(True)
        self.light_curve.addLegend(offset=(-10, 10))
        self.light_curve.setLabel("left", "mag (ZP 30)")
        layout.addWidget(self.light_curve, 1)
        self.lc_info = QLabel("")
        layout.addWidget(self.lc_info)
        self.addTab(page, "Light curve")
        self.object_combo.currentTextChanged.connect(lambda _: self.update_light_curve())
        self.fold.toggled.connect(lambda _: self.update_light_curve())
        self.period.valueChanged.connect(lambda _: self.update_light_curve())
        self.lc_items: list[pg.ScatterPlotItem] = []

    def _build_histograms(self):
        self.histograms = pg.GraphicsLayoutWidget()
        self.histograms.setBackground("w")
        self.hist_plots = {}
        # per histogram: (bin edges, bin of each shown detection, their survey indices)
        self.hist_bins: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.hist_highlight: dict[str, pg.PlotCurveItem] = {}
        for name, label in (("chi2_dof", "χ²/dof"), ("binary_delta_chi2", "binary Δχ²")):
            plot = self.histograms.addPlot(title=label,
                                           axisItems={"left": CountAxis("left")})
            plot.setLabel("left", "detections")
            self.hist_plots[name] = plot
            self.histograms.nextRow()
        self.histograms.scene().sigMouseClicked.connect(self._on_histogram_clicked)
        self.addTab(self.histograms, "Histograms")

    def _build_scatter(self):
        page = QWidget()
        layout = QVBoxLayout(page)
        row = QHBoxLayout()
        numeric = [c for c in self.survey.column_names
                   if self.survey.columns[c].dtype.kind in "fiu"]
        self.x_combo, self.y_combo = QComboBox(), QComboBox()
        for combo, default in ((self.x_combo, "mag"), (self.y_combo, "chi2_dof")):
            combo.addItems(numeric)
            if default in numeric:
                combo.setCurrentText(default)
        row.addWidget(QLabel("x"))
        row.addWidget(self.x_combo, 1)
        row.addWidget(QLabel("y"))
        row.addWidget(self.y_combo, 1)
        layout.addLayout(row)
        self.scatter_plot = pg.PlotWidget()
        self.scatter_plot.setBackground("w")
        self.scatter = pg.ScatterPlotItem(size=6, pen=None,
                                          brush=pg.mkBrush(60, 90, 200, 150))
        self.scatter.sigClicked.connect(self._on_points_clicked)
        self.scatter_highlight = pg.ScatterPlotItem(size=11, pen=HIGHLIGHT, brush=None)
        self.scatter_plot.addItem(self.scatter)
        self.scatter.survey_index = np.array([], int)
        self.scatter_plot.addItem(self.scatter_highlight)
        layout.addWidget(self.scatter_plot, 1)
        self.addTab(page, "Scatter")
        self.x_combo.currentTextChanged.connect(lambda _: self.update_scatter())
        self.y_combo.currentTextChanged.connect(lambda _: self.update_scatter())

    # -- updates -------------------------------------------------------------------------

    def set_order(self, order: np.ndarray) -> None:
        """The filtered, sorted detections (survey indices) that the plots show."""
        self.order = np.asarray(order)
        self._stale = set(range(self.count()))
        self._refresh_visible()

    def _refresh_visible(self, *_):
        tab = self.currentIndex()
        if tab in self._stale:
            self._stale.discard(tab)
            self._updaters[tab]()

    def set_current(self, index: int | None, highlighted=()) -> None:
        """The current detection (its object's light curve is shown) and the selected
        ones (outlined in every plot)."""
        self.current = index
        self.highlighted = np.asarray(list(highlighted), int)
        if index is not None:
            name = str(self.survey.columns["name"][index])
            if name != self.object_combo.currentText():
                self.object_combo.setCurrentText(name)   # redraws the light curve
            else:
                self._highlight_light_curve()
        self._highlight_scatter()
        self._mark_histograms()

    def light_curve_data(self) -> dict:
        return self.survey.light_curve(self.object_combo.currentText(), self.order)

    def _x_of(self, mjd: np.ndarray) -> np.ndarray:
        if self.fold.isChecked():
            return fold(mjd, self.period.value())
        return mjd

    def update_light_curve(self):
        plot = self.light_curve.getPlotItem()
        plot.clear()
        self.lc_items = []
        self.lc_highlight = pg.ScatterPlotItem(size=13, pen=HIGHLIGHT, brush=None)
        data = self.light_curve_data()
        n, fits = 0, []
        for band, d in data.items():
            x = self._x_of(d["mjd"])
            colour = _band_colour(band)
            err = pg.ErrorBarItem(x=x, y=d["mag"], height=2 * d["mag_err"],
                                  pen=pg.mkPen(colour))
            plot.addItem(err)
            points = pg.ScatterPlotItem(x=x, y=d["mag"], size=8, pen=None,
                                        brush=pg.mkBrush(*colour), name=band)
            points.survey_index = d["index"]   # survey index of each point
            points.sigClicked.connect(self._on_points_clicked)
            plot.addItem(points)
            self.lc_items.append(points)
            n += len(x)
            rotation = fit_rotation(d["mjd"], d["mag"], d["mag_err"], self.period.value()) \
                if self.fold.isChecked() else None
            if rotation is not None:
                phase = np.linspace(0.0, 1.0, 200)
                plot.addItem(pg.PlotCurveItem(phase, rotation.model(phase), pen=pg.mkPen(
                    colour, width=2, style=pg.QtCore.Qt.PenStyle.DashLine)))
                fits.append(f"{band}: amplitude {rotation.amplitude_mag:.2f} ± "
                            f"{rotation.amplitude_err:.2f} mag, χ² {rotation.chi2:.1f}/"
                            f"{rotation.n - 3}")
        plot.addItem(self.lc_highlight)
        plot.setLabel("bottom", f"phase (period {self.period.value():g} h)"
                      if self.fold.isChecked() else "MJD")
        name = self.object_combo.currentText()
        text = (f"{name}: {n} detections with MJD and magnitude" if n
                else f"{name}: no detection with an MJD and a magnitude")
        if fits:
            text += "; sinusoid at this period, " + "; ".join(fits)
        self.lc_info.setText(text)
        self._highlight_light_curve()

    def _highlight_light_curve(self):
        chosen = self._chosen()
        xs, ys = [], []
        for item in self.lc_items:
            x, y = item.getData()
            hit = np.isin(item.survey_index, chosen)
            xs.extend(x[hit])
            ys.extend(y[hit])
        self.lc_highlight.setData(x=xs, y=ys)

    def _chosen(self) -> np.ndarray:
        chosen = list(self.highlighted)
        if self.current is not None:
            chosen.append(self.current)
        return np.asarray(chosen, int)

    def update_histograms(self):
        self.hist_bins.clear()
        self.hist_highlight.clear()
        for name, plot in self.hist_plots.items():
            plot.clear()
            values = self.survey.columns[name][self.order].astype(float)
            finite = np.isfinite(values)
            values = values[finite]
            if not len(values):
                plot.setTitle(f"{plot.titleLabel.text.split(' (')[0]} (none)")
                continue
            counts, edges = np.histogram(values, bins=min(50, max(5, len(values) // 3)))
            plot.addItem(pg.PlotCurveItem(edges, counts, stepMode="center", fillLevel=0,
                                          brush=(60, 90, 200, 120), pen=pg.mkPen("k")))
            # np.histogram's bins: [a, b) but the last [a, b]
            bins = np.clip(np.searchsorted(edges, values, side="right") - 1,
                           0, len(counts) - 1)
            self.hist_bins[name] = (edges, bins, self.order[finite])
            self.hist_highlight[name] = pg.PlotCurveItem(
                edges, np.zeros(len(counts)), stepMode="center", fillLevel=0,
                brush=(20, 30, 90, 200), pen=HIGHLIGHT)
            plot.addItem(self.hist_highlight[name])
        self._mark_histograms()

    def _on_histogram_clicked(self, event):
        """A click on a bar selects the detections in it."""
        for name, plot in self.hist_plots.items():
            viewbox = plot.getViewBox()
            if name not in self.hist_bins or \
                    not viewbox.sceneBoundingRect().contains(event.scenePos()):
                continue
            point = viewbox.mapSceneToView(event.scenePos())
            edges, bins, indices = self.hist_bins[name]
            k = int(np.searchsorted(edges, point.x(), side="right")) - 1
            if 0 <= k < len(edges) - 1 and 0 <= point.y() <= np.count_nonzero(bins == k):
                event.accept()
                self.binClicked.emit(indices[bins == k].tolist())
            return

    def _mark_histograms(self):
        for name, (edges, bins, indices) in self.hist_bins.items():
            chosen = np.isin(indices, self.highlighted)
            self.hist_highlight[name].setData(
                edges, np.bincount(bins[chosen], minlength=len(edges) - 1))
        for name, plot in self.hist_plots.items():
            for item in [i for i in plot.items if isinstance(i, pg.InfiniteLine)]:
                plot.removeItem(item)
            if self.current is None:
                continue
            value = float(self.survey.columns[name][self.current])
            if np.isfinite(value):
                plot.addItem(pg.InfiniteLine(value, pen=pg.mkPen((210, 50, 40), width=2)))

    def update_scatter(self):
        x_name, y_name = self.x_combo.currentText(), self.y_combo.currentText()
        if not x_name or not y_name:
            return
        x = self.survey.columns[x_name][self.order].astype(float)
        y = self.survey.columns[y_name][self.order].astype(float)
        good = np.isfinite(x) & np.isfinite(y)
        self.scatter.setData(x=x[good], y=y[good])
        self.scatter.survey_index = self.order[good]
        self.scatter_plot.setLabel("bottom", x_name)
        self.scatter_plot.setLabel("left", y_name)
        self._highlight_scatter()

    def _highlight_scatter(self):
        chosen = self._chosen()
        x_name, y_name = self.x_combo.currentText(), self.y_combo.currentText()
        if not x_name or not len(chosen):
            self.scatter_highlight.setData(x=[], y=[])
            return
        x = self.survey.columns[x_name][chosen].astype(float)
        y = self.survey.columns[y_name][chosen].astype(float)
        self.scatter_highlight.setData(x=x, y=y)

    def _on_points_clicked(self, item, points, *_):
        if len(points):
            self.pointClicked.emit(int(item.survey_index[points[0].index()]))
