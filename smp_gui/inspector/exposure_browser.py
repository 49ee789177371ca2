"""Every exposure of the fit: thumbnail, expnum, band, zeropoint, usable-pixel fraction and
the engine's per-exposure diagnostics (`smp_model.fit.diagnostics.diagnostic_columns`: chi2
per usable pixel, the largest ``|residual| / sigma``, and a flag when the exposure's chi2 per
pixel is an outlier among the exposures: a hint of a bad PSF or of something moving in a
"static" exposure); the detection exposure highlighted; Up/Down (or PgUp/PgDn) to move
through them; "Blink image/model" alternates the Image panel with the model."""
from __future__ import annotations

import numpy as np
from PyQt6.QtCore import QSize, Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QBrush, QColor, QIcon, QImage, QPixmap
from PyQt6.QtWidgets import (QAbstractItemView, QCheckBox, QHeaderView, QLabel, QTableWidget,
                             QTableWidgetItem, QVBoxLayout, QWidget)

from smp_model.fit.panels import display_levels
from smp_model.fit.results import SceneFit

__all__ = ["BLINK_INTERVAL_MS", "COLUMNS", "DETECTION_BACKGROUND", "OUTLIER_COLOR",
           "OUTLIER_MARK", "OUTLIER_TIP", "THUMB_SIZE", "ExposureBrowser", "thumbnail"]

THUMB_SIZE = 44
COLUMNS = ("", "expnum", "band", "ZP", "usable", "χ²/pix", "max|r|/σ", "")
COL_CHI2, COL_MAXRES, COL_OUTLIER = 5, 6, 7
OUTLIER_MARK = "⚠"
OUTLIER_COLOR = QColor(200, 30, 30)
OUTLIER_TIP = ("χ²/pixel is an outlier among the exposures: bad PSF model, or something "
               "moving or an artefact in this exposure?")
DETECTION_BACKGROUND = QColor(255, 236, 170)
BLINK_INTERVAL_MS = 500


def thumbnail(image: np.ndarray, usable: np.ndarray) -> QPixmap:
    """Grey (gray_r) thumbnail with the published levels, origin lower."""
    lo, hi = display_levels(image, usable)
    scaled = np.clip((image - lo) / (hi - lo), 0.0, 1.0)
    grey = np.ascontiguousarray((255 * (1.0 - np.nan_to_num(scaled)))[::-1].astype(np.uint8))
    h, w = grey.shape
    qimage = QImage(grey.data, w, h, w, QImage.Format.Format_Grayscale8).copy()
    return QPixmap.fromImage(qimage).scaled(THUMB_SIZE, THUMB_SIZE,
                                           Qt.AspectRatioMode.KeepAspectRatio)


def _item(text: str, tip: str) -> QTableWidgetItem:
    item = QTableWidgetItem(text)
    item.setToolTip(tip)
    return item


class ExposureBrowser(QWidget):
    """Signals: exposureSelected(index into fit.scene.exposures), blinkToggled(bool)
    (True: the Image panel shows the model this tick)."""

    exposureSelected = pyqtSignal(int)
    blinkToggled = pyqtSignal(bool)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setIconSize(QSize(THUMB_SIZE, THUMB_SIZE))
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(THUMB_SIZE + 4)
        self.table.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setMinimumSectionSize(20)
        self.table.horizontalHeaderItem(COL_OUTLIER).setToolTip(
            "⚠: χ²/pixel is an outlier among the exposures")
        self.table.horizontalHeaderItem(COL_MAXRES).setToolTip(
            "largest |residual| / σ over the stamp's usable pixels")
        self.table.currentCellChanged.connect(self._on_current)
        self.blink = QCheckBox("Blink image/model")
        self.blink.toggled.connect(self._on_blink)
        self._blink_timer = QTimer(self)
        self._blink_timer.setInterval(BLINK_INTERVAL_MS)
        self._blink_timer.timeout.connect(self._blink_tick)
        self._blink_state = False
        self._expnums: list[int] = []
        self.diagnostics = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.dropped_label = QLabel("")
        self.dropped_label.setWordWrap(True)
        self.dropped_label.setStyleSheet("color: #b35c00;")
        self.dropped_label.hide()
        layout.addWidget(self.table)
        layout.addWidget(self.dropped_label)
        layout.addWidget(self.blink)

    @property
    def current_index(self) -> int:
        return self.table.currentRow()

    def expnums(self) -> list[int]:
        return list(self._expnums)

    def set_fit(self, fit: SceneFit, diagnostics=None):
        """Fill or update the rows (thumbnails only when the exposures change).

        ``diagnostics``: the `diagnostic_columns` of ``fit`` (computed here when
        not given)."""
        scene = fit.scene
        expnums = [ex.entry.expnum for ex in scene.exposures]
        if diagnostics is None:
            from smp_model.fit.diagnostics import diagnostic_columns
            diagnostics = diagnostic_columns(fit)
        self.diagnostics = diagnostics
        chi2_per_pixel = np.asarray(diagnostics["chi2_per_pixel"], float)
        max_res = np.asarray(diagnostics["max_abs_residual_sigma"], float)
        outlier = np.asarray(diagnostics["outlier"], bool)
        rebuild = expnums != self._expnums
        self.table.blockSignals(True)
        try:
            if rebuild:
                self._expnums = expnums
                self.table.setRowCount(len(expnums))
                for row, ex in enumerate(scene.exposures):
                    det = row == scene.detection_index
                    cells = [
                        QTableWidgetItem(QIcon(thumbnail(ex.image, ex.usable)), ""),
                        QTableWidgetItem(f"{ex.entry.expnum}{' ★' if det else ''}"),
                        QTableWidgetItem(ex.entry.band),
                        _item(f"{ex.entry.zeropoint:.2f}",
                              f"zeropoint {ex.entry.zeropoint:.4f}"),
                        QTableWidgetItem(f"{100 * ex.usable_fraction:.0f}%"),
                        QTableWidgetItem(""),
                        QTableWidgetItem(""),
                        QTableWidgetItem(""),
                    ]
                    for col, item in enumerate(cells):
                        if det:
                            item.setBackground(QBrush(DETECTION_BACKGROUND))
                            font = item.font()
                            font.setBold(True)
                            item.setFont(font)
                            item.setToolTip("detection exposure")
                        self.table.setItem(row, col, item)
            default = self.table.palette().text()
            for row in range(len(expnums)):
                # Every refit of a drag comes here: touch only what changes.
                cells = {COL_CHI2: f"{chi2_per_pixel[row]:.2f}",
                         COL_MAXRES: f"{max_res[row]:.1f}",
                         COL_OUTLIER: OUTLIER_MARK if outlier[row] else ""}
                for col, text in cells.items():
                    item = self.table.item(row, col)
                    if item.text() != text:
                        item.setText(text)
                flagged = bool(outlier[row])
                flag = self.table.item(row, COL_OUTLIER)
                if rebuild or (flag.toolTip() == OUTLIER_TIP) != flagged:
                    flag.setToolTip(OUTLIER_TIP if flagged else "")
                    brush = QBrush(OUTLIER_COLOR) if flagged else default
                    for col in (COL_CHI2, COL_OUTLIER):
                        self.table.item(row, col).setForeground(brush)
        finally:
            self.table.blockSignals(False)
        if rebuild:
            self.table.setCurrentCell(scene.detection_index, 1)
            self.exposureSelected.emit(scene.detection_index)

    def outlier_rows(self) -> list[int]:
        """Rows flagged as outliers (what the table shows)."""
        return [row for row in range(self.table.rowCount())
                if self.table.item(row, COL_OUTLIER).text() == OUTLIER_MARK]

    def set_dropped(self, reasons):
        """List the exposures of the manifest that were not fitted, each with its
        reason (the engine's one-line messages)."""
        reasons = list(reasons or ())
        self.dropped_label.setText("Not fitted:\n" + "\n".join(f"• {r}" for r in reasons))
        self.dropped_label.setVisible(bool(reasons))

    def select(self, index: int):
        self.table.setCurrentCell(index, 1)

    def _on_current(self, row, _col, prev_row, _prev_col):
        if row >= 0 and row != prev_row:
            self.exposureSelected.emit(row)

    def _on_blink(self, on: bool):
        self._blink_state = False
        if on:
            self._blink_timer.start()
        else:
            self._blink_timer.stop()
            self.blinkToggled.emit(False)

    def _blink_tick(self):
        self._blink_state = not self._blink_state
        self.blinkToggled.emit(self._blink_state)

