"""Dialogs: errors that name the file and the problem, and the overwrite question.

Error dialogs are window-modal but opened without blocking (``QMessageBox.open``), so the
event loop keeps running (fits continue, tests and ``--screenshot`` are not stuck); the
window keeps the last one in ``error_dialog``.
"""
from __future__ import annotations

from pathlib import Path

from PyQt6.QtWidgets import QMessageBox, QWidget

from smp_model.errors import SMPError
from smp_model.files import TABLE_FORMATS

__all__ = ["TABLE_FILTER", "TABLE_SUFFIXES", "confirm_overwrite", "describe_error",
           "dropped_local_file", "show_error"]

#: Table files the product reads and writes (ECSV, FITS, VOTable, CSV), as file-dialog
#: patterns: `smp batch` outputs open in the survey view.
TABLE_SUFFIXES = tuple(TABLE_FORMATS)
TABLE_FILTER = " ".join(f"*{suffix}" for suffix in TABLE_SUFFIXES)


def describe_error(error: BaseException, context: str | None = None) -> tuple[str, str]:
    """(file or subject, problem) of an error, in words for a user."""
    if isinstance(error, SMPError):
        return (error.source or context or "", error.message)
    if isinstance(error, OSError) and error.filename:
        return (str(error.filename), error.strerror or str(error))
    return (context or "", f"{type(error).__name__}: {error}")


def show_error(parent: QWidget | None, title: str, error: BaseException,
               context: str | None = None, details: str | None = None) -> QMessageBox:
    """Open a non-blocking error dialog naming the file and the problem."""
    subject, problem = describe_error(error, context)
    box = QMessageBox(QMessageBox.Icon.Warning, title, title, QMessageBox.StandardButton.Ok,
                      parent)
    text = f"<b>{title}</b>"
    if subject:
        text += f"<p>File: <tt>{_escape(subject)}</tt></p>"
    text += f"<p>{_escape(problem)}</p>"
    box.setText(text)
    if details:
        box.setDetailedText(details)
    box.setObjectName("errorDialog")
    box.open()
    return box


def confirm_overwrite(parent: QWidget | None, path: str | Path) -> bool:
    """Ask before replacing an existing file; True only if the user says so."""
    answer = QMessageBox.question(
        parent, "Replace file?", f"{path}\nexists. Replace it?",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes


def _escape(text: str) -> str:
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))


def dropped_local_file(event) -> str | None:
    """The local file a drag or drop event carries (its first URL), or None: both windows
    accept a single local file dropped on them."""
    urls = event.mimeData().urls()
    return urls[0].toLocalFile() if urls and urls[0].isLocalFile() else None
