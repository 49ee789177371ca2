"""The windows' way to SAMP: one `smp_model.outputs.samp.SampLink` per window, used off
the GUI thread (every SAMP call may wait on the hub or a tool for seconds), with results
and the tools' row choices delivered as Qt signals in the GUI thread."""
from __future__ import annotations

import threading
from collections.abc import Callable

from PyQt6.QtCore import QObject, pyqtSignal

from smp_model.outputs.samp import SampLink

__all__ = ["SampController"]


class SampController(QObject):
    """Runs ``job(link)`` calls one at a time in a worker thread, registering with the hub
    on first use (and again when the hub no longer answers, so that a hub started later
    is found).

    Signals: finished(what, result, error) after each job (error None on success);
    rowsChosen(RowMessage) when a tool highlights or selects rows of a table we sent.
    """

    finished = pyqtSignal(str, object, object)
    rowsChosen = pyqtSignal(object)

    def __init__(self, name: str, parent=None):
        super().__init__(parent)
        self.name = name
        self._link: SampLink | None = None
        self._lock = threading.Lock()        # one SAMP job at a time
        self._threads: list[threading.Thread] = []

    @property
    def busy(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def run(self, what: str, job: Callable[[SampLink], object]) -> None:
        """Run ``job(link)`` in a worker thread; ``finished`` reports it."""
        def work():
            with self._lock:
                try:
                    result = job(self._connected_link())
                except Exception as exc:   # noqa: BLE001 - shown to the user
                    self.finished.emit(what, None, exc)
                else:
                    self.finished.emit(what, result, None)
        self._threads = [t for t in self._threads if t.is_alive()]
        thread = threading.Thread(target=work, name=f"samp {what}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def wait(self, timeout: float = 30.0) -> None:
        """Wait for the running jobs (tests and shutdown)."""
        for thread in list(self._threads):
            thread.join(timeout)

    def _connected_link(self) -> SampLink:
        if self._link is not None and not self._link.alive():
            self._drop_link()   # the hub went away since: register with the running one
        if self._link is None:
            link = SampLink(name=self.name)
            link.on_rows(self.rowsChosen.emit)   # emitted from the SAMP thread: queued
            self._link = link.connect()
        return self._link

    def _drop_link(self) -> None:
        if self._link is not None:
            self._link.close()
            self._link = None

    def shutdown(self) -> None:
        """Unregister from the hub (waits a few seconds at most)."""
        self.wait(timeout=10.0)
        with self._lock:
            self._drop_link()
