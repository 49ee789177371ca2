"""File > Send to: the fit shown, to TOPCAT, DS9, Aladin or every client of the SAMP hub
(the flux table as a VOTable to those that load tables, the detection exposure's five
panels as FITS images with their WCS to those that load images), through the window's
`SampController`."""
from __future__ import annotations

from smp_model.errors import SMPError
from smp_model.outputs.samp import SEND_TARGETS

from ..samp_controller import SampController
from .exports import STALE_MESSAGE

__all__ = ["SampSender"]


class SampSender:
    """The inspector's SAMP sending; ``controller`` reports each send (``finished``)."""

    def __init__(self, window):
        self.window = window
        self.controller = SampController("SMP Inspector", window)
        self.controller.finished.connect(self._on_finished)

    def send_to(self, menu_name: str) -> bool:
        """Send the fit on screen to the tool named ``menu_name`` (a key of
        `SEND_TARGETS`); False (and an error dialog) when there is nothing to send yet."""
        w = self.window
        title = f"Cannot send to {menu_name}"
        if w.result is None:
            w.show_error(title, SMPError("no fit to send yet"))
            return False
        if w.model.is_stale:
            w.show_error(title, SMPError(STALE_MESSAGE))
            return False
        fit, tool = w.result.fit, SEND_TARGETS[menu_name]
        self.controller.run(menu_name, lambda link: link.send_fit(fit, tool))
        w.statusBar().showMessage(f"sending to {menu_name}…")
        return True

    def _on_finished(self, menu_name: str, sent, error) -> None:
        w = self.window
        if error is not None:
            w.show_error(f"Cannot send to {menu_name}", error)
            return
        what = "the flux table and the five panels" if sent is not None else "the five panels"
        w.statusBar().showMessage(f"sent {what} to {menu_name}", 5000)

    def shutdown(self) -> None:
        self.controller.shutdown()
