"""Keys that belong to the widget that has the focus.

The window's single-key shortcuts (``B`` blink, ``R`` reset levels, ...) are window-wide.
Qt gives a focused widget the first say on a key through a ``ShortcutOverride`` event:
line edits and spin boxes claim the characters typed into them, but a non-editable
QComboBox does not, so typing ``b`` into a focused combo box blinked the exposures instead
of selecting the item that starts with "b" (Qt's keyboard search).  `keep_combo_keys`
makes combo boxes claim unmodified printable keys, as line edits do.
"""
from __future__ import annotations

from PyQt6.QtCore import QEvent, QObject, Qt
from PyQt6.QtWidgets import QComboBox, QWidget

__all__ = ["ComboBoxKeys", "keep_combo_keys"]


class ComboBoxKeys(QObject):
    """Event filter: a focused, non-editable combo box keeps the printable keys typed
    without Ctrl/Alt/Meta (its keyboard search) from the window's shortcuts."""

    def eventFilter(self, watched, event):
        if event.type() == QEvent.Type.ShortcutOverride and isinstance(watched, QComboBox) \
                and not watched.isEditable():
            modifiers = event.modifiers() & ~Qt.KeyboardModifier.ShiftModifier
            text = event.text()
            if modifiers == Qt.KeyboardModifier.NoModifier and text and text.isprintable():
                event.accept()     # the key goes to the combo box, not to a shortcut
                return True
        return super().eventFilter(watched, event)


def keep_combo_keys(root: QWidget) -> ComboBoxKeys:
    """Install one `ComboBoxKeys` on every combo box below ``root`` (kept by ``root``)."""
    keys = ComboBoxKeys(root)
    for combo in root.findChildren(QComboBox):
        combo.installEventFilter(keys)
    return keys
