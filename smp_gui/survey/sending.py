"""The survey view's SAMP: File > Send to sends the filtered table (with marks and
notes, `Survey.curated_table`) to TOPCAT, DS9, Aladin or every client; the tools' row
choices in that table (``table.select.rowList``, ``table.highlight.row``) select and
browse rows here, and the row made current here is highlighted in the tools."""
from __future__ import annotations

from PyQt6.QtCore import QItemSelection, QItemSelectionModel

from smp_model.errors import SMPError
from smp_model.outputs.samp import HIGHLIGHT_ROW, SEND_TARGETS, RowMessage, SentTable

from ..samp_controller import SampController

__all__ = ["SurveySamp"]

_SEND = "send"


class SurveySamp:
    """``sent``: the last table sent (None before); ``controller`` reports each job."""

    def __init__(self, window):
        self.window = window
        self.sent: SentTable | None = None
        self._echo_key: str | None = None   # a row a tool chose: not sent back to it
        self.controller = SampController("SMP Inspector survey", window)
        self.controller.finished.connect(self._on_finished)
        self.controller.rowsChosen.connect(self.show_rows)
        window.currentChanged.connect(self._highlight)

    def send_to(self, menu_name: str) -> bool:
        """Send the rows the filter keeps to ``menu_name`` (a key of `SEND_TARGETS`)."""
        w = self.window
        if w.survey is None:
            w.show_error(f"Cannot send to {menu_name}", SMPError("no survey open"))
            return False
        keys = [w.model.key_at(r) for r in range(w.model.rowCount())]
        table = w.survey.curated_table(keys)
        name = f"{w.survey.path.stem} ({len(keys)} detections)"
        tool = SEND_TARGETS[menu_name]
        self.controller.run(_SEND, lambda link: link.send_table(table, name, tool,
                                                               key_column="key"))
        w.statusBar().showMessage(f"sending {len(table)} rows to {menu_name}…")
        return True

    def _on_finished(self, what: str, result, error) -> None:
        w = self.window
        if what == _SEND:
            if error is not None:
                w.show_error("Cannot send the table", error)
                return
            self.sent = result
            w.statusBar().showMessage(f"sent {result.n_rows} rows ({result.name})", 5000)
        elif error is not None:   # a highlight: not worth a dialog
            w.statusBar().showMessage(f"SAMP: {error}", 5000)

    def _highlight(self, key: str) -> None:
        """The current row, highlighted in the tools that loaded the table."""
        if self.sent is None or key == self._echo_key:
            return
        rows = self.sent.rows_of(key)
        if rows:
            sent = self.sent
            self.controller.run(HIGHLIGHT_ROW,
                                lambda link: link.highlight_row(sent, rows[0]))

    def show_rows(self, message: RowMessage) -> None:
        """Select the detections of a tool's rows in the table (the first one current,
        which browses to it); rows of other tables are ignored."""
        w = self.window
        if self.sent is None or not self.sent.is_for(message) or w.survey is None:
            return
        keys = self.sent.keys_of(message.rows)
        rows = [r for r in (w.model.row_of(w.survey.index_of(k)) for k in keys)
                if r is not None]
        hidden = len(keys) - len(rows)
        if hidden:
            w.statusBar().showMessage(f"{hidden} of the chosen rows are filtered out", 5000)
        if not rows:
            return
        self._echo_key = keys[0]
        try:
            self._select(rows)
        finally:
            self._echo_key = None

    def _select(self, rows: list[int]) -> None:
        w = self.window
        selection = QItemSelection()
        last = w.model.columnCount() - 1
        for row in rows:
            selection.select(w.model.index(row, 0), w.model.index(row, last))
        flags = QItemSelectionModel.SelectionFlag
        model = w.table.selectionModel()
        model.setCurrentIndex(w.model.index(rows[0], 0), flags.NoUpdate)
        model.select(selection, flags.ClearAndSelect | flags.Rows)
        w.table.scrollTo(w.model.index(rows[0], 0))

    def shutdown(self) -> None:
        self.controller.shutdown()
