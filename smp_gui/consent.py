"""Asking before PSF files outside a detection's (or session's) folder are read.

Piff PSF files are pickles: reading one runs code stored in it.  A manifest or session
whose PSF files lie outside its own folder (`smp_model.inputs.manifest.paths_outside`) may
point anywhere, so before anything is read the user is asked, modally, with Cancel
(nothing read, nothing fitted).  The paths are listed one per line, never wrapped inside a
path.  A folder is remembered as trusted (in the application's QSettings) only when the
user ticks that box; PSF files inside a trusted folder are then read without asking.
"""
from __future__ import annotations

import os
from pathlib import Path

from PyQt6.QtCore import QSettings
from PyQt6.QtGui import QFontDatabase
from PyQt6.QtWidgets import (QCheckBox, QDialog, QDialogButtonBox, QLabel, QPlainTextEdit,
                             QVBoxLayout, QWidget)

from smp_model.inputs.manifest import paths_outside

__all__ = ["TRUSTED_FOLDERS_KEY", "PsfConsentDialog", "ask_psf_consent", "trusted_folders",
           "untrusted_psf_files"]

TRUSTED_FOLDERS_KEY = "trusted_psf_folders"


def trusted_folders(store: QSettings) -> list[Path]:
    """The folders the user said they trust (their PSF files are read without asking)."""
    value = store.value(TRUSTED_FOLDERS_KEY, [])
    if isinstance(value, str):
        value = [value]
    return [Path(v) for v in (value or [])]


def untrusted_psf_files(psf_files, store: QSettings) -> list[Path]:
    """``psf_files`` that lie in none of the trusted folders."""
    remaining = list(psf_files)
    for folder in trusted_folders(store):
        remaining = paths_outside(remaining, folder)
    return remaining


def _common_folder(paths: list[Path]) -> Path:
    """The deepest folder that holds all ``paths``."""
    return Path(os.path.commonpath([os.path.realpath(p.parent) for p in paths]))


class PsfConsentDialog(QDialog):
    """The question: read these PSF files (which run code) or cancel?

    Parameters
    ----------
    source : Path
        The manifest or session that names the files.
    psf_files : list of Path
        The files outside ``source``'s folder that are not trusted yet.
    parent : QWidget, optional
    """

    def __init__(self, source: Path, psf_files: list[Path], parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("psfConsentDialog")
        self.setWindowTitle("Read PSF files from outside the folder?")
        self.setModal(True)
        self.folder = _common_folder(psf_files)
        intro = QLabel(
            f"<b>{_html(source.name)}</b> reads {len(psf_files)} PSF file(s) outside its "
            f"folder <tt>{_html(source.parent)}</tt>.<br>Piff PSF files run code when "
            f"they are read: open only data you trust. Nothing has been read yet.")
        intro.setWordWrap(True)
        self.paths = QPlainTextEdit("\n".join(str(p) for p in psf_files))
        self.paths.setReadOnly(True)
        self.paths.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)   # a path is one line
        self.paths.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.paths.setMinimumWidth(640)
        self.trust_box = QCheckBox(f"Trust PSF files in {self.folder} from now on")
        self.buttons = QDialogButtonBox()
        self.open_button = self.buttons.addButton(
            "Read them and fit", QDialogButtonBox.ButtonRole.AcceptRole)
        self.cancel_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        self.cancel_button.setDefault(True)      # Enter does not run code by accident
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.paths, 1)
        layout.addWidget(self.trust_box)
        layout.addWidget(self.buttons)


def ask_psf_consent(parent: QWidget | None, source: Path, psf_files: list[Path],
                    store: QSettings) -> bool:
    """Whether ``psf_files`` (outside ``source``'s folder) may be read: True at once when
    all lie in trusted folders, else the user's answer to a modal `PsfConsentDialog`
    (kept as ``parent.consent_dialog`` while it is open); a ticked box adds the folder
    to the trusted ones."""
    untrusted = untrusted_psf_files(psf_files, store)
    if not untrusted:
        return True
    dialog = PsfConsentDialog(Path(source), untrusted, parent)
    if parent is not None:
        parent.consent_dialog = dialog
    try:
        accepted = dialog.exec() == QDialog.DialogCode.Accepted
        if accepted and dialog.trust_box.isChecked():
            folders = [str(f) for f in trusted_folders(store)]
            store.setValue(TRUSTED_FOLDERS_KEY, folders + [str(dialog.folder)])
        return accepted
    finally:
        if parent is not None:
            parent.consent_dialog = None
        dialog.deleteLater()


def _html(text) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
