"""The flux table of the current fit: one column per source (target, or primary and
secondary), one row per quantity; copy to the clipboard as tab-separated text.

Every number is read from the engine's result (`controller.FitSummary`); fluxes are on
zeropoint 30, offsets px in the convention's frame.  After a binary search that renumbered
the pair (1 is the brighter), a ``numbering`` row says so.
"""
from __future__ import annotations

import math
from typing import NamedTuple

from PyQt6.QtCore import Qt
from PyQt6.QtGui import QGuiApplication, QKeySequence, QShortcut
from PyQt6.QtWidgets import (QAbstractItemView, QHeaderView, QPushButton, QTableWidget,
                             QTableWidgetItem, QVBoxLayout, QWidget)

from ..controller import FitSummary
from ..state import SWAP_NOTE

__all__ = ["Cell", "ResultsTable", "summary_rows"]


class Cell(NamedTuple):
    """A cell of the flux table: the rounded text shown and the same number(s) at full
    precision (the tooltip)."""
    text: str
    full: str = ""


_BLANK = Cell("")


def _fmt(value: float, digits: int = 3, err: float | None = None, note: str = "") -> Cell:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Cell("—", "undefined")
    text, full = f"{value:.{digits}f}", repr(float(value))
    if err is not None and not math.isnan(err):
        text += f" ± {err:.{digits}f}"
        full += f" ± {float(err)!r}"
    return Cell(text + note, full + note)


def _plain(text: str) -> Cell:
    return Cell(text, text)


def summary_rows(summary: FitSummary) -> tuple[list[str], list[tuple[str, list[Cell]]]]:
    """(column headers, [(quantity, [cell per source])]) of a fit summary."""
    names = [s.component for s in summary.sources]
    per_source = [
        ("flux (ZP 30)", [_fmt(s.flux, 1) for s in summary.sources]),
        ("flux err", [_fmt(s.flux_err, 1) for s in summary.sources]),
        ("mag", [_fmt(s.mag, 3) for s in summary.sources]),
        ("mag err", [_fmt(s.mag_err, 3) for s in summary.sources]),
    ]
    if any(not math.isnan(s.flux_err_total) for s in summary.sources):
        per_source += [("flux err (total)",
                        [_fmt(s.flux_err_total, 1) for s in summary.sources])]
    if summary.has_shot_noise:
        per_source += [
            ("flux_sn (ZP 30)", [_fmt(s.flux_sn, 1) for s in summary.sources]),
            ("err_sn", [_fmt(s.flux_err_sn, 1) for s in summary.sources]),
            ("mag_sn", [_fmt(s.mag_sn, 3, s.mag_err_sn) for s in summary.sources]),
        ]
    per_source += [
        ("dx (px)", [_fmt(s.dx, 3, s.dx_err) for s in summary.sources]),
        ("dy (px)", [_fmt(s.dy, 3, s.dy_err) for s in summary.sources]),
        ("CCD x", [_fmt(s.x, 2) for s in summary.sources]),
        ("CCD y", [_fmt(s.y, 2) for s in summary.sources]),
        ("RA (deg)", [_fmt(s.ra, 6) for s in summary.sources]),
        ("Dec (deg)", [_fmt(s.dec, 6) for s in summary.sources]),
    ]

    def shared(cell: Cell) -> list[Cell]:   # fit-wide numbers: first column only
        return [cell] + [_BLANK] * (len(names) - 1)

    fit_wide = [
        ("chi2", shared(_fmt(summary.chi2, 2))),
        ("dof", shared(_plain(str(summary.dof)))),
    ]
    if summary.has_shot_noise:
        iterations = summary.shot_noise_iterations
        fit_wide += [("shot-noise gain (e⁻/ADU)",
                      shared(_fmt(summary.shot_noise_gain, 3, note=(
                          f" ({iterations} refit{'s' if iterations != 1 else ''})"))))]
    if summary.kind == "binary":
        fit_wide += [
            ("Δχ² vs single fitted alike", shared(_fmt(summary.delta_chi2, 2))),
            ("Δχ² vs single at default (published)",
             shared(_fmt(summary.delta_chi2_default, 2))),
            ("total flux (ZP 30)", shared(_fmt(
                summary.total_flux, 1, summary.total_flux_err,
                note=" (unresolved: quote this)" if summary.unresolved else ""))),
            ("separation (px)", shared(_fmt(summary.separation_px, 3,
                                            summary.separation_err_px))),
            ("separation (arcsec)", shared(_fmt(summary.separation_arcsec, 3,
                                                summary.separation_err_arcsec))),
            ("PA (deg E of N)", shared(_fmt(summary.position_angle_deg, 1,
                                            summary.position_angle_err_deg))),
        ]
        if summary.swapped_from_start:   # the numbers on screen changed owner
            fit_wide += [("numbering", shared(_plain(f"{SWAP_NOTE} (1 = brighter)")))]
    return names, per_source + fit_wide


class ResultsTable(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.summary: FitSummary | None = None
        self._labels = None
        self._widths: list[int] = []   # px per column: they only grow within a layout
        self.table = QTableWidget(0, 0)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        # Numbers are never cut: each column is as wide as its widest cell (a scroll bar
        # when the dock is narrower than that).
        columns = self.table.horizontalHeader()
        columns.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        columns.setDefaultSectionSize(40)    # below any number: the widths are measured
        self.table.setTextElideMode(Qt.TextElideMode.ElideNone)
        # One line per row: a fixed height (ResizeToContents re-measures every row at each
        # cell change, ~0.25 ms per cell, at every refit of a drag).
        header = self.table.verticalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        header.setDefaultSectionSize(self.table.fontMetrics().height() + 3)
        self.copy_button = QPushButton("Copy table")
        self.copy_button.clicked.connect(self.copy_to_clipboard)
        shortcut = QShortcut(QKeySequence.StandardKey.Copy, self.table)
        shortcut.activated.connect(self.copy_to_clipboard)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table)
        layout.addWidget(self.copy_button)

    def set_summary(self, summary: FitSummary | None):
        self.summary = summary
        if summary is None:
            self.table.setRowCount(0)
            self._labels = None
            return
        names, rows = summary_rows(summary)
        labels = (tuple(names), tuple(q for q, _ in rows))
        # Called at every refit during a drag: touch only the cells that change (each
        # change re-measures the rows), with updates off meanwhile.
        self.table.setUpdatesEnabled(False)
        try:
            if labels != self._labels:
                self.table.setColumnCount(len(names))
                self.table.setRowCount(len(rows))
                self.table.setHorizontalHeaderLabels(names)
                self.table.setVerticalHeaderLabels(list(labels[1]))
                self._labels = labels
                self._widths = []       # a new layout: the columns fit it afresh
                # Fit-wide numbers (chi2, delta chi2, total flux, separation ...) fill only
                # the first cell: let it span the row so "value ± error" is not cut off.
                self.table.clearSpans()
                for r, (_, cells) in enumerate(rows):
                    if len(cells) > 1 and not any(c.text for c in cells[1:]):
                        self.table.setSpan(r, 0, 1, len(cells))
            for r, (_, cells) in enumerate(rows):
                for c, cell in enumerate(cells):
                    item = self.table.item(r, c)
                    if item is None:
                        item = QTableWidgetItem()
                        item.setTextAlignment(Qt.AlignmentFlag.AlignRight
                                              | Qt.AlignmentFlag.AlignVCenter)
                        self.table.setItem(r, c, item)
                    if item.text() != cell.text:
                        item.setText(cell.text)
                        item.setToolTip(cell.full)
            self._fit_columns(rows)
        finally:
            self.table.setUpdatesEnabled(True)

    def _fit_columns(self, rows: list[tuple[str, list[Cell]]]):
        """Widen the columns to their widest text (measured here rather than by Qt's
        ResizeToContents, which ignores spanned cells and re-measures at every refit);
        a row spanning the table widens the last column. Columns have room for two more
        digits and only grow, so that a drag does not make them jitter. The dock keeps
        its width (resizing it would move the panels under the mouse): a table wider
        than the dock scrolls."""
        metrics = self.table.fontMetrics()
        pad = 2 * self.table.style().pixelMetric(
            self.table.style().PixelMetric.PM_FocusFrameHMargin) + 12 \
            + metrics.horizontalAdvance("00")
        n = self.table.columnCount()
        need = [0] * n
        span_need = 0
        for _, cells in rows:
            widths = [metrics.horizontalAdvance(c.text) + pad for c in cells]
            if n > 1 and not any(c.text for c in cells[1:]):
                span_need = max(span_need, widths[0])
            else:
                need = [max(a, b) for a, b in zip(need, widths)]
        need[-1] = max(need[-1], span_need - sum(need[:-1]))
        if len(self._widths) != n:
            self._widths = [0] * n
        self._widths = need = [max(a, b) for a, b in zip(self._widths, need)]
        header = self.table.horizontalHeader()
        for c, width in enumerate(need):
            if header.sectionSize(c) != width:
                header.resizeSection(c, width)

    def as_text(self) -> str:
        """Tab-separated text of the table (what the clipboard gets)."""
        if self.summary is None:
            return ""
        names, rows = summary_rows(self.summary)
        lines = ["quantity\t" + "\t".join(names)]
        lines += [q + "\t" + "\t".join(c.text for c in cells) for q, cells in rows]
        return "\n".join(lines) + "\n"

    def copy_to_clipboard(self):
        QGuiApplication.clipboard().setText(self.as_text())
