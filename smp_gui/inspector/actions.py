"""The inspector's menus, their actions and keyboard shortcuts, and the table of shortcuts
shown by Help > Keyboard shortcuts.

`MenuActions` builds the menu bar of an `InspectorWindow` and keeps the actions whose
text, check state or enabled state follow the window's state (undo/redo names, the
optimise wording of the mode, the view toggles, the Δχ² map); it observes the model and
the panels for that itself.  The slots are the window's (or its panels').
"""
from __future__ import annotations

from PyQt6.QtCore import Qt, QTimer
from PyQt6.QtGui import QAction, QActionGroup, QKeySequence, QShortcut
from PyQt6.QtWidgets import QMessageBox

from smp_model.errors import PSF_FILES_RUN_CODE
from smp_model.outputs.display import STRETCHES
from smp_model.outputs.samp import SEND_TARGETS

__all__ = ["EXPOSURE_BLINK_MS", "PANEL_KEYS_HELP", "ZOOM_STEP", "MenuActions"]

ZOOM_STEP = 1.25
EXPOSURE_BLINK_MS = 700
# The keys of the panels themselves (not menu actions), as Help lists them.
PANEL_KEYS_HELP = (("Nudge the selected marker by 0.1 px (panels focused)", "Arrow keys"),
                   ("Select marker 1 / 2 (panels focused)", "1, 2"),
                   ("Contrast and bias", "Right-drag on a panel"),
                   ("Pan / zoom", "Left-drag / wheel on a panel"))
_ARROWS = {Qt.Key.Key_Left: (-1, 0), Qt.Key.Key_Right: (1, 0),
           Qt.Key.Key_Up: (0, 1), Qt.Key.Key_Down: (0, -1)}


class MenuActions:
    """The menu bar of ``window`` and the actions that follow its state.

    Parameters
    ----------
    window : InspectorWindow
        Built up to its widgets (panels, docks, fit controls, flux table).
    """

    def __init__(self, window):
        self.window = window
        self.shortcuts_dialog: QMessageBox | None = None
        bar = window.menuBar()
        self._file_menu(bar.addMenu("&File"))
        self._edit_menu(bar.addMenu("&Edit"))
        self._fit_menu(bar.addMenu("F&it"))
        self._view_menu(bar.addMenu("&View"))
        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "&Keyboard shortcuts…", self.show_shortcuts, "F1")
        self._action(help_menu, "&Data safety…", self.show_data_safety)
        self._panel_keys()
        window.model.history_changed.connect(self.show_history)
        window.fit_controls.mode_box.currentTextChanged.connect(self.update_optimize_text)
        self.show_history()

    def _action(self, menu, text, slot, shortcut=None, tip=None,
                checkable: bool = False) -> QAction:
        action = QAction(text, self.window)
        if shortcut is not None:
            shortcuts = shortcut if isinstance(shortcut, list) else [shortcut]
            action.setShortcuts([QKeySequence(k) for k in shortcuts])
        if tip:
            action.setStatusTip(tip)
        action.setCheckable(checkable)
        if checkable:
            action.toggled.connect(slot)
        else:
            action.triggered.connect(lambda _=False: slot())
        menu.addAction(action)
        return action

    # -- the menus ----------------------------------------------------------------------

    def _file_menu(self, menu):
        w = self.window
        self._action(menu, "&Open…", w.opener.open_dialog, QKeySequence.StandardKey.Open,
                     "Open a detection manifest or a saved session")
        self._action(menu, "Open &folder…", w.opener.open_folder_dialog)
        self.recent_menu = menu.addMenu("Open &recent")
        menu.addSeparator()
        self._action(menu, "&Save session…", lambda: w.save_session(),
                     QKeySequence.StandardKey.Save)
        menu.addSeparator()
        export = menu.addMenu("&Export")
        self._action(export, "Five-panel figure (detection)…",
                     lambda: w.export_figure(exposures="detection"))
        self._action(export, "Five-panel figure (all exposures)…",
                     lambda: w.export_figure(exposures="all"))
        self._action(export, "Flux table…", lambda: w.export_table())
        self._action(export, "Model/residual FITS…", lambda: w.export_fits())
        self._action(export, "DS9 region file…", lambda: w.export_regions())
        send = menu.addMenu("Sen&d to")
        for name in SEND_TARGETS:
            self._action(send, name, lambda n=name: w.samp.send_to(n),
                         tip="over SAMP: the flux table to tools that load tables, the "
                             "detection's five panels (FITS, with WCS) to image viewers")
        menu.addSeparator()
        # Ctrl+Q itself: the platform's Quit binding is empty on Windows and offscreen
        self._action(menu, "&Quit", w.close, "Ctrl+Q")

    def _edit_menu(self, menu):
        w = self.window
        # Kept here: an action only the menu refers to would be collected.
        self.undo_action = self._action(menu, "&Undo", w.model.undo, "Ctrl+Z")
        self.redo_action = self._action(menu, "&Redo", w.model.redo,
                                        ["Ctrl+Shift+Z", "Ctrl+Y"])
        self._action(menu, "Copy flux table", w.results_table.copy_to_clipboard)

    def _fit_menu(self, menu):
        w = self.window
        self._action(menu, "&Refit", w.request_fit, "F5")
        self.optimize_action = self._action(menu, "&Optimize positions", w.optimize,
                                            "Ctrl+P")
        self.update_optimize_text(w.mode)
        self._action(menu, "&Δχ² map", lambda: w.fit_controls.map_button.click(), "Ctrl+M")
        self._action(menu, "&Cancel", w.cancel, "Esc")

    def _view_menu(self, menu):
        w, pv = self.window, self.window.panels_view
        self._action(menu, "Reset &levels", pv.reset_levels, "R")
        self._action(menu, "Reset &zoom (fit the stamp)", pv.reset_zoom, ["0", "Ctrl+0"])
        self._action(menu, "Zoom &in", lambda: pv.zoom(ZOOM_STEP), ["+", "=", "Ctrl++"])
        self._action(menu, "Zoom &out", lambda: pv.zoom(1 / ZOOM_STEP), ["-", "Ctrl+-"])
        self._stretch_menu(menu.addMenu("&Stretch"))
        self._view_toggles(menu)
        menu.addSeparator()
        self._action(menu, "&Next exposure", lambda: self.step_exposure(1), ["]", "PgDown"])
        self._action(menu, "&Previous exposure", lambda: self.step_exposure(-1),
                     ["[", "PgUp"])
        self.blink_exposures_action = self._action(
            menu, "&Blink exposures", self.set_blink_exposures, "B", checkable=True)
        self._action(menu, "Blink image/&model", lambda: w.browser.blink.toggle(), "Shift+B")
        self.map_action = self._action(menu, "Show Δχ² &map", w.chi2map_view.setVisible,
                                       "Ctrl+Shift+M", checkable=True)
        self.map_action.setEnabled(False)
        menu.addSeparator()
        for dock in (w.browser_dock, w.controls_dock, w.results_dock):
            menu.addAction(dock.toggleViewAction())
        self._blink_timer = QTimer(w)
        self._blink_timer.setInterval(EXPOSURE_BLINK_MS)
        self._blink_timer.timeout.connect(lambda: self.step_exposure(1))

    def _stretch_menu(self, menu):
        pv = self.window.panels_view
        self.stretch_actions = QActionGroup(self.window)
        for n, (key, label) in enumerate(STRETCHES.items()):
            action = self._action(menu, label, lambda key=key: pv.set_stretch(key),
                                  f"Ctrl+{n + 1}")
            action.setCheckable(True)
            action.setChecked(key == pv.stretch)
            action.setData(key)
            self.stretch_actions.addAction(action)
        pv.stretchChanged.connect(self._check_stretch_action)

    def _view_toggles(self, menu):
        """Checkable actions that mirror what the panels draw."""
        pv = self.window.panels_view
        self.invert_action = self._action(menu, "&Invert colour map", pv.set_inverted, "I",
                                          checkable=True)
        self.mask_action = self._action(menu, "Show &mask overlay", pv.set_show_mask, "M",
                                        checkable=True)
        self.mask_action.setChecked(True)
        pv.styleChanged.connect(self._sync_view_actions)
        self.crosshair_action = self._action(menu, "&Crosshair", pv.set_crosshair, "C",
                                             checkable=True)
        self.regions_action = self._action(
            menu, "&Regions (target's sky position, scene grid)", pv.set_show_regions, "G",
            checkable=True)
        self.regions_action.setChecked(True)
        self.compass_action = self._action(menu, "Compass and scale &bar",
                                           pv.set_show_compass, "K", checkable=True)
        self.compass_action.setChecked(True)
        self.sky_action = self._action(menu, "S&ky-aligned (north up, east left)",
                                       self.window.set_sky_aligned, "A", checkable=True,
                                       tip="Every exposure drawn north up, east left at one "
                                           "angular scale: stepping through them keeps the "
                                           "sky in place")

    def _panel_keys(self):
        """Nudges only while the image panels have the focus (their frame shows it): the
        stretch and colour combos beside them keep their own arrow keys."""
        w = self.window
        graphics = w.panels_view.graphics
        for key, (dx, dy) in _ARROWS.items():
            shortcut = QShortcut(QKeySequence(key), graphics)
            shortcut.setContext(Qt.ShortcutContext.WidgetShortcut)
            shortcut.activated.connect(lambda dx=dx, dy=dy: w.edits.nudge_on_screen(dx, dy))
        for n in (0, 1):
            shortcut = QShortcut(QKeySequence(str(n + 1)), graphics)
            shortcut.setContext(Qt.ShortcutContext.WidgetShortcut)
            shortcut.activated.connect(lambda n=n: n < w.markers.count
                                       and w.markers.select(n))

    # -- following the window's state ---------------------------------------------------

    def show_history(self):
        """Name the edit that Undo / Redo would undo or redo (disabled: none)."""
        model = self.window.model
        for action, verb, text in ((self.undo_action, "Undo", model.undo_text),
                                   (self.redo_action, "Redo", model.redo_text)):
            action.setEnabled(text is not None)
            action.setText(f"&{verb} {text[0].lower() + text[1:]}" if text else f"&{verb}")

    def update_optimize_text(self, mode: str):
        """Fit > Optimize says position (single) or positions (binary)."""
        self.optimize_action.setText("&Optimize position" if mode == "single"
                                     else "&Optimize positions")

    def show_map_action(self, available: bool):
        """The Δχ² map's View action: enabled and checked while there is a map (or one
        is being computed)."""
        self.map_action.setEnabled(available)
        self.map_action.setChecked(available)

    def _check_stretch_action(self, stretch: str):
        for action in self.stretch_actions.actions():
            if action.data() == stretch:
                action.setChecked(True)

    def _sync_view_actions(self):
        pv = self.window.panels_view
        for action, value in ((self.invert_action, pv.inverted),
                              (self.mask_action, pv.show_mask),
                              (self.sky_action, pv.sky_aligned)):
            action.blockSignals(True)
            action.setChecked(value)
            action.blockSignals(False)

    # -- what the View menu does ----------------------------------------------------------

    def step_exposure(self, step: int):
        """Show the next (step 1) or previous (-1) exposure, wrapping around."""
        browser = self.window.browser
        n = len(browser.expnums())
        if n:
            browser.select((max(browser.current_index, 0) + step) % n)

    def set_blink_exposures(self, on: bool):
        """Cycle through the exposures (the image panel's levels follow each)."""
        if on:
            self._blink_timer.start()
        else:
            self._blink_timer.stop()

    # -- Help -----------------------------------------------------------------------------

    def shortcut_table(self) -> list[tuple[str, str]]:
        """The keyboard shortcuts, as Help lists them.

        Returns
        -------
        list of (str, str)
            (menu action, its shortcuts) for every menu action that has one, then the
            panel keys (`PANEL_KEYS_HELP`).
        """
        rows = []

        def walk(menu, prefix=""):
            for action in menu.actions():
                if action.menu() is not None:
                    walk(action.menu(), action.text().replace("&", "") + ": ")
                elif action.shortcuts():
                    keys = ", ".join(k.toString() for k in action.shortcuts())
                    rows.append((prefix + action.text().replace("&", ""), keys))
        for top in self.window.menuBar().actions():
            walk(top.menu())
        return rows + list(PANEL_KEYS_HELP)

    def show_shortcuts(self) -> QMessageBox:
        """Help > Keyboard shortcuts, non-modal."""
        rows = "".join(f"<tr><td>{_html(a)}</td><td><b>{_html(k)}</b></td></tr>"
                       for a, k in self.shortcut_table())
        box = QMessageBox(QMessageBox.Icon.NoIcon, "Keyboard shortcuts",
                          f"<table cellspacing=4>{rows}</table>",
                          QMessageBox.StandardButton.Ok, self.window)
        box.setObjectName("shortcutsDialog")
        box.setModal(False)
        box.show()
        self.shortcuts_dialog = box
        return box

    def show_data_safety(self) -> QMessageBox:
        """The trust boundary (PSF files run code), non-modal so tests can read it."""
        box = QMessageBox(QMessageBox.Icon.Information, "Data safety", PSF_FILES_RUN_CODE,
                          QMessageBox.StandardButton.Ok, self.window)
        box.setModal(False)
        box.show()
        return box


def _html(text: str) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
