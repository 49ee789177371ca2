"""The SMP Inspector's two kinds of window and how each reaches the other.

An inspector (`smp_gui.inspector.InspectorWindow`) opens a `smp batch` output in a survey
window that browses in it; a survey window (`smp_gui.survey.SurveyWindow`) opens its
detections in an inspector, made on first use.  Neither window's module imports the
other: `WindowManager` makes the windows and gives each a factory of the other kind.
The windows keep the one they browse in or were opened from, as before; the manager keeps
no list of them, so a window the user closed and nothing refers to is freed.
"""
from __future__ import annotations

from PyQt6.QtCore import QSettings

from .inspector.window import InspectorWindow
from .survey.window import SurveyWindow

__all__ = ["WindowManager", "user_settings"]


def user_settings() -> QSettings:
    """The user's settings (window geometry, recent files, trusted folders); every
    instance reads and writes the same store."""
    return QSettings("smp-inspector", "SMP Inspector")


class WindowManager:
    """Makes the windows of one application, wired to each other.

    Parameters
    ----------
    settings_store : QSettings, optional
        Shared by every window it makes (recent files, export folder); default: the
        user's.
    """

    def __init__(self, settings_store: QSettings | None = None):
        self.store = settings_store or user_settings()

    def new_inspector(self) -> InspectorWindow:
        """An inspector window that opens batch outputs in survey windows of its own.

        Returns
        -------
        InspectorWindow
        """
        return InspectorWindow(self.store, survey_factory=self.new_survey)

    def new_survey(self, inspector: InspectorWindow | None = None) -> SurveyWindow:
        """A survey window.

        Parameters
        ----------
        inspector : InspectorWindow, optional
            The inspector to browse in (the one that opened the batch output); None: the
            survey window makes one on first use, and closes it with itself.

        Returns
        -------
        SurveyWindow
        """
        return SurveyWindow(self.store, inspector=inspector,
                            inspector_factory=self.new_inspector)
