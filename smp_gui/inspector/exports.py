"""File > Export: the five-panel figure, the flux table, the model/residual FITS file and
the DS9 region file of the fit on screen, written by the engine (`smp_model.outputs.figures`,
`smp_model.outputs.tables`) in a thread so that the window stays live.

An export is refused while the numbers on screen are stale (they would not be those of
the offsets on screen), never replaces a file without asking, and starts in the last
export folder, else the user's documents (never the data folder, which may be
read-only).
"""
from __future__ import annotations

import re
import threading
from pathlib import Path

from PyQt6.QtCore import QObject, QStandardPaths, pyqtSignal
from PyQt6.QtWidgets import QFileDialog

from smp_model.errors import SMPError

from .. import dialogs

__all__ = ["EXPORT_FORMATS", "STALE_MESSAGE", "Exporter", "export_stem"]

EXPORT_FORMATS = {"figure": (".png", ".pdf", ".svg"), "flux table": (".ecsv", ".fits", ".csv"),
                  "model/residual FITS": (".fits",), "region file": (".reg",)}
STALE_MESSAGE = ("the numbers on screen are not those of the offsets on screen yet (a "
                 "refit is pending or was cancelled): wait for it or press F5")


class Exporter(QObject):
    """The exports of ``window``; the window's ``exportFinished`` says when each is
    written.

    Parameters
    ----------
    window : InspectorWindow
    """

    _done = pyqtSignal(str, object, object)   # what, path, error (from a thread)

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self._threads: list[threading.Thread] = []
        self._done.connect(self._on_done)

    def export_dir(self) -> Path:
        """The last export folder, else the user's documents."""
        last = self.window.store.value("export_dir", "")
        if last and Path(str(last)).is_dir():
            return Path(str(last))
        docs = QStandardPaths.writableLocation(
            QStandardPaths.StandardLocation.DocumentsLocation)
        return Path(docs) if docs and Path(docs).is_dir() else Path.home()

    def figure(self, path=None, exposures: str = "detection") -> Path | None:
        """The five-panel figure drawn as the panels are (`InspectorWindow.export_figure`)."""
        from smp_model.outputs.figures import save_figure
        w = self.window
        style, shown = w.panels_view.style(), w.selected_index
        return self._export(
            "figure", lambda fit, p, ow: save_figure(fit, p, exposures=exposures,
                                                     overwrite=ow, style=style,
                                                     shown_index=shown),
            path, self._stem("panels" if exposures == "detection" else "panels-all"))

    def table(self, path=None) -> Path | None:
        """The flux table (`InspectorWindow.export_table`)."""
        from smp_model.outputs.tables import write_table
        return self._export("flux table",
                            lambda fit, p, ow: write_table(fit, p, overwrite=ow),
                            path, self._stem("fluxes"))

    def fits(self, path=None) -> Path | None:
        """The model/residual FITS file (`InspectorWindow.export_fits`)."""
        from smp_model.outputs.cubes import write_fits
        return self._export("model/residual FITS",
                            lambda fit, p, ow: write_fits(fit, p, overwrite=ow),
                            path, self._stem("cubes"))

    def regions(self, path=None) -> Path | None:
        """The DS9 region file (`InspectorWindow.export_regions`)."""
        from smp_model.outputs.regions import write_regions
        return self._export("region file",
                            lambda fit, p, ow: write_regions(fit, p, overwrite=ow),
                            path, self._stem("regions"))

    def finish(self) -> None:
        """Wait for the exports still being written: quitting ends the process (daemon
        threads with it), and an export the user asked for must not be dropped."""
        for thread in self._threads:
            thread.join()
        self._threads = []

    # -- one export -----------------------------------------------------------------------

    def _export(self, what: str, writer, path, stem: str) -> Path | None:
        """Write ``writer(fit, path, overwrite)`` in a thread (refused while the numbers
        on screen are stale); the path written, or None when nothing will be."""
        w = self.window
        if w.result is None:
            w.show_error(f"Cannot export {what}", SMPError("no fit to export yet"))
            return None
        if w.model.is_stale:
            w.show_error(f"Cannot export {what}", SMPError(STALE_MESSAGE))
            return None
        path = self._ask_path(what, stem) if path is None else Path(path)
        if path is None:
            return None
        overwrite = path.exists()
        if overwrite and not dialogs.confirm_overwrite(w, path):
            w.statusBar().showMessage(f"{path} exists: not overwritten", 5000)
            return None
        self._start(what, writer, w.result.fit, path, overwrite)
        w.statusBar().showMessage(f"writing {path}…")
        return path

    def _start(self, what: str, writer, fit, path: Path, overwrite: bool):
        def job():
            try:
                writer(fit, path, overwrite)
            except Exception as exc:   # noqa: BLE001 - shown to the user
                self._done.emit(what, path, exc)
            else:
                self._done.emit(what, path, None)
        thread = threading.Thread(target=job, name=f"export {what}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _ask_path(self, what: str, stem: str) -> Path | None:
        suffixes = EXPORT_FORMATS[what]
        filters = [f"{s[1:].upper()} (*{s})" for s in suffixes]
        name, chosen = QFileDialog.getSaveFileName(
            self.window, f"Export {what}", str(self.export_dir() / f"{stem}{suffixes[0]}"),
            ";;".join(filters))
        if not name:
            return None
        path = Path(name)
        if path.suffix.lower() not in suffixes:   # the chosen format's extension
            index = filters.index(chosen) if chosen in filters else 0
            path = path.with_name(path.name + suffixes[index])
        return path

    def _on_done(self, what: str, path, error):
        w = self.window
        self._threads = [t for t in self._threads if t.is_alive()]
        if error is not None:
            w.show_error(f"Cannot export {what}", error, context=str(path))
            w.exportFinished.emit(None)
            return
        w.store.setValue("export_dir", str(Path(path).parent))
        w.statusBar().showMessage(f"wrote {path}", 5000)
        w.exportFinished.emit(path)

    def _stem(self, kind: str) -> str:
        w = self.window
        return export_stem(w.manifest.name if w.manifest else "", w.mode, kind)


def export_stem(name: str, mode: str, kind: str) -> str:
    """The file name (without extension) an export dialog proposes: the detection's name
    made safe for a file name, ``-binary`` for a binary fit (unless the name says it
    already), and what is exported: ``demo-binary-panels``, ``Eris-fluxes``,
    ``2014_LQ28-binary-cubes``."""
    words = [w for w in re.split(r"[^A-Za-z0-9.+]+", name) if w.strip(".")] or ["detection"]
    safe = re.sub(r"[^A-Za-z0-9.+-]+", "_", name.strip()).strip("_.") or "detection"
    said = {word.lower() for word in words}
    mode_part = f"-{mode}" if mode != "single" and mode.lower() not in said else ""
    return f"{safe}{mode_part}-{kind}"
