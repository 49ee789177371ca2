"""Every exposure of the fit: thumbnail, expnum, band, zeropoint, usable-pixel fraction and
chi2 per usable pixel; the detection exposure highlighted; Up/Down (or PgUp/PgDn) to move
through them; "Blink image/model" alternates the Image panel with the model."""
from __future__ import annotations

import numpy as np
from PyQt6.QtCore import QSize, Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QBrush, QColor, QIcon, QImage, QPixmap
from PyQt6.QtWidgets import (QAbstractItemView, QCheckBox, QHeaderView, QTableWidget,
                             QTableWidgetItem, QVBoxLayout, QWidget)

from smp_model.fit import SceneFit
from smp_model.panels import display_levels

THUMB_SIZE = 44
COLUMNS = ("", "expnum", "band", "ZP", "usable", "χ²/N")
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
        self.table.currentCellChanged.connect(self._on_current)
        self.blink = QCheckBox("Blink image/model")
        self.blink.toggled.connect(self._on_blink)
        self._blink_timer = QTimer(self)
        self._blink_timer.setInterval(BLINK_INTERVAL_MS)
        self._blink_timer.timeout.connect(self._blink_tick)
        self._blink_state = False
        self._expnums: list[int] = []
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table)
        layout.addWidget(self.blink)

    @property
    def current_index(self) -> int:
        return self.table.currentRow()

    def expnums(self) -> list[int]:
        return list(self._expnums)

    def set_fit(self, fit: SceneFit):
        """Fill or update the rows (thumbnails only when the exposures change)."""
        scene = fit.scene
        expnums = [ex.entry.expnum for ex in scene.exposures]
        chi2_per_pixel = fit.reduced_chi2_per_exposure
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
                        QTableWidgetItem(f"{ex.entry.zeropoint:.3f}"),
                        QTableWidgetItem(f"{100 * ex.usable_fraction:.0f}%"),
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
            for row in range(len(expnums)):
                self.table.item(row, 5).setText(f"{chi2_per_pixel[row]:.2f}")
        finally:
            self.table.blockSignals(False)
        if rebuild:
            self.table.setCurrentCell(scene.detection_index, 1)
            self.exposureSelected.emit(scene.detection_index)

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

