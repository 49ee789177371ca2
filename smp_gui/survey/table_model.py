"""The survey table: a Qt model over `smp_model.survey.core.Survey` showing the filtered,
sorted detections (``order``: survey indices, one per table row)."""
from __future__ import annotations

import math

import numpy as np
from PyQt6.QtCore import QAbstractTableModel, QModelIndex, Qt, pyqtSignal
from PyQt6.QtGui import QBrush, QColor

from smp_model.survey.core import Survey

__all__ = ["MARK_COLOURS", "SurveyTableModel", "format_cell"]

MARK_COLOURS = {"good": QColor(200, 240, 200), "bad": QColor(250, 205, 205),
                "binary": QColor(210, 220, 255)}
_DIGITS = {"flux": 1, "flux_err": 1, "total_flux": 1, "mag": 3, "mag_err": 3, "chi2_dof": 3,
           "binary_delta_chi2": 1, "mjd": 4, "chi2": 1, "ra": 6, "dec": 6}


def format_cell(value) -> str:
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else f"{value:.6g}"
    return str(value)


class SurveyTableModel(QAbstractTableModel):
    """Rows: ``order`` (survey indices); columns: ``survey.column_names``.

    ``orderChanged`` is emitted after the filter or the sort changed the rows."""

    orderChanged = pyqtSignal()

    def __init__(self, survey: Survey, parent=None):
        super().__init__(parent)
        self.survey = survey
        self.columns = survey.column_names
        self.expression = ""
        self.sort_by: str | None = None
        self.descending = False
        self.order = np.arange(len(survey))

    # -- Qt model ---------------------------------------------------------------------

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.order)

    def columnCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.columns)

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        i = int(self.order[index.row()])
        name = self.columns[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            value = self.survey.columns[name][i]
            if isinstance(value, (float, np.floating)) and name in _DIGITS:
                return "" if math.isnan(value) else f"{value:.{_DIGITS[name]}f}"
            return format_cell(value)
        if role == Qt.ItemDataRole.BackgroundRole:
            colour = MARK_COLOURS.get(str(self.survey.columns["mark"][i]))
            return QBrush(colour) if colour is not None else None
        if role == Qt.ItemDataRole.TextAlignmentRole:
            if self.survey.columns[name].dtype.kind in "fiu":
                return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        if orientation == Qt.Orientation.Horizontal:
            return self.columns[section]
        return str(section + 1)

    def sort(self, column: int, order=Qt.SortOrder.AscendingOrder) -> None:
        """Sort by a column (header click); column -1: batch order."""
        if not 0 <= column < len(self.columns):
            self.set_sort(None)
            return
        self.set_sort(self.columns[column], order == Qt.SortOrder.DescendingOrder)

    # -- the view's state ----------------------------------------------------------------

    def set_filter(self, expression: str) -> None:
        """Show the detections matching ``expression`` (raises `FilterError`, nothing
        changes then)."""
        order = self.survey.select(expression, self.sort_by, self.descending)
        self.expression = expression
        self._set_order(order)

    def set_sort(self, column: str | None, descending: bool = False) -> None:
        self.sort_by, self.descending = column, descending
        self._set_order(self.survey.select(self.expression, column, descending))

    def _set_order(self, order: np.ndarray) -> None:
        self.beginResetModel()
        self.order = order
        self.endResetModel()
        self.orderChanged.emit()

    def row_of(self, survey_index: int) -> int | None:
        rows = np.flatnonzero(self.order == survey_index)
        return int(rows[0]) if len(rows) else None

    def key_at(self, row: int) -> str:
        return str(self.survey.columns["key"][self.order[row]])

    def refresh_rows(self, survey_index: int) -> None:
        row = self.row_of(survey_index)
        if row is not None:
            self.dataChanged.emit(self.index(row, 0),
                                  self.index(row, len(self.columns) - 1))
