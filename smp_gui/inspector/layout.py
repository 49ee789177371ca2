"""How the inspector window shares its width between the stamps and its docks, and keeps
its size, place and docks between launches (QSettings).

The stamps come first: the side docks take at most their share of the width
(`DOCK_SHARES`), a smaller window shrinks them with the stamps and a larger one gives its
room to the stamps (the docks do not grow).  In a window narrower than `STACK_BELOW_PX`
at its first start the exposures become a tab beside the flux table: one column of
docks on the right, wide enough for the table's numbers, instead of two.  This happens
only to the docks' default arrangement, and is not undone when the window grows (the
user drags the tab back; the arrangement is kept between launches).
"""
from __future__ import annotations

from PyQt6.QtCore import QSize, Qt
from PyQt6.QtGui import QGuiApplication

__all__ = ["DEFAULT_SIZE", "DOCK_SHARES", "DOCKS_KEY", "FIRST_WIDTHS", "GEOMETRY_KEY",
           "SIZE_KEY", "STACKED_SHARE", "STACK_BELOW_PX", "WindowLayout", "first_size"]

# Where the window's geometry and its docks' arrangement are kept between launches.
GEOMETRY_KEY = "inspector/geometry"
SIZE_KEY = "inspector/size"
DOCKS_KEY = "inspector/docks"
# (share of the window's width, least and most px) of the left (exposures) and right
# (fit, flux table) docks.
DOCK_SHARES = ((0.17, 180, 372), (0.22, 260, 420))
# A first start narrower than this (px) stacks the exposures with the flux table: three
# columns (exposures, stamps, fit) leave the stamps under 8 screen px per CCD px of a
# 30 px stamp at 1280 px, or the flux table too narrow for its numbers.
STACK_BELOW_PX = 1500
# The docks' widths at a first start (px) before `DOCK_SHARES` narrows them: the flux
# table shows both components' numbers.
FIRST_WIDTHS = (372, 420)
# The one right-hand column's share when the exposures are stacked there.
STACKED_SHARE = (0.30, 300, 420)
# The window's size at a first start, on a screen that holds it (px).
DEFAULT_SIZE = QSize(1600, 900)
# What a window manager's title bar and frame take beyond the window's own size (px).
_FRAME = QSize(16, 48)


def first_size(available: QSize | None, platform: str) -> QSize:
    """The window's size at a first start: `DEFAULT_SIZE`, or what the screen's available
    area holds of it with the window manager's frame (on a 1280x720 screen the window
    opened larger than the screen, its docks and status bar off it).  The offscreen
    platform's screen (800x600) is no screen anyone sees: headless runs keep the default.
    """
    if available is None or platform == "offscreen":
        return QSize(DEFAULT_SIZE)
    return DEFAULT_SIZE.boundedTo(available - _FRAME)


class WindowLayout:
    """The dock widths and the saved layout of ``window`` (an `InspectorWindow` with
    ``browser_dock``, ``controls_dock``, ``results_dock`` and ``store``)."""

    def __init__(self, window):
        self.window = window
        self.restored = False     # the docks are as the user left them last time
        self.arranged = False     # the first show's arrangement is done

    @property
    def stacked(self) -> bool:
        """The exposures are a tab of the right-hand column."""
        w = self.window
        return w.dockWidgetArea(w.browser_dock) == w.dockWidgetArea(w.results_dock)

    def restore(self):
        """The window's size, place and docks as the user left them last time (a first
        start: `first_size`)."""
        w = self.window
        screen = w.screen() or QGuiApplication.primaryScreen()
        w.resize(first_size(screen.availableGeometry().size() if screen else None,
                            QGuiApplication.platformName()))
        geometry, size = w.store.value(GEOMETRY_KEY), w.store.value(SIZE_KEY)
        if geometry is not None:
            w.restoreGeometry(geometry)
        if size is not None and not w.isMaximized():
            w.resize(size)     # restoreGeometry shrinks a window larger than the screen
        state = w.store.value(DOCKS_KEY)
        if state is not None:
            self.restored = bool(w.restoreState(state))

    def save(self):
        w = self.window
        w.store.setValue(GEOMETRY_KEY, w.saveGeometry())
        w.store.setValue(SIZE_KEY, w.size())
        w.store.setValue(DOCKS_KEY, w.saveState())

    def first_shown(self):
        """At the first show, at whatever size the window was given: a layout the user
        left is kept; else a narrow window stacks the exposures with the flux table (the
        right-hand column then takes its share).  Docks wider than their share are
        narrowed."""
        if self.arranged:
            return
        self.arranged = True
        w = self.window
        if self.restored:
            self.share_width(grow=False)
        elif self.stack_if_narrow():
            self.share_width(grow=True)
        else:
            widths = [min(first, max(low, int(share * w.width())), high)
                      for first, (share, low, high) in zip(FIRST_WIDTHS, DOCK_SHARES)]
            w.resizeDocks([w.browser_dock, w.controls_dock], widths,
                          Qt.Orientation.Horizontal)

    def resized(self):
        """The window's width changed: the docks are narrowed to their shares (stacking
        is decided at the first show only: a layout that changes under the user's hand
        while a window is dragged smaller would surprise)."""
        self.share_width(grow=False)

    def stack_if_narrow(self) -> bool:
        """Stack the exposures with the flux table when the window is narrower than
        `STACK_BELOW_PX` and its docks are in their default arrangement; True if done."""
        w = self.window
        left = Qt.DockWidgetArea.LeftDockWidgetArea
        default = (w.dockWidgetArea(w.browser_dock) == left and not w.browser_dock.isFloating()
                   and not w.results_dock.isFloating() and w.results_dock.isVisible())
        if w.width() >= STACK_BELOW_PX or not default:
            return False
        w.tabifyDockWidget(w.results_dock, w.browser_dock)
        w.results_dock.raise_()
        return True

    def share_width(self, grow: bool):
        """Docks at their share of the width (``grow`` False: only narrower)."""
        w = self.window
        if self.stacked:
            docks, shares = [w.controls_dock], [STACKED_SHARE]
        else:
            docks, shares = [w.browser_dock, w.controls_dock], list(DOCK_SHARES)
        widths = []
        for dock, (share, low, high) in zip(docks, shares):
            width = min(max(low, int(share * w.width())), high)
            widths.append(width if grow else min(dock.width(), width))
        w.resizeDocks(docks, widths, Qt.Orientation.Horizontal)
