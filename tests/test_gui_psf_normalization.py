"""The PSF normalisation in the inspector (README "PSF phase"), chosen as a user does: the
Fit panel's combo boxes by keyboard, undone with Ctrl+Z."""
from __future__ import annotations

import pyqtgraph as pg
import pytest
from PyQt6.QtCore import QSettings, Qt

from smp_model.demo import demo_manifest_path
from smp_gui.main_window import MainWindow
from tests.test_gui import undo

pytestmark = pytest.mark.gui
pg.setConfigOption("mouseRateLimit", -1)
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def window(qapp, tmp_path_factory):
    store = QSettings(str(tmp_path_factory.mktemp("store") / "smp.ini"),
                      QSettings.Format.IniFormat)
    w = MainWindow(store)
    w.show()
    yield w
    w.shutdown()
    w.close()
    w.deleteLater()


def settled(qtbot, window):
    qtbot.waitUntil(lambda: not window.controller.busy and window.result is not None
                    and window.result.request_id == window.controller.last_submitted,
                    timeout=TIMEOUT_MS)


def choose(qtbot, combo, text: str):
    """Pick an item of a focused combo box with the arrow keys, as a keyboard user does
    (letters may be the window's single-key shortcuts)."""
    combo.setFocus()
    target = combo.findText(text)
    assert target >= 0
    key = Qt.Key.Key_Down if target > combo.currentIndex() else Qt.Key.Key_Up
    for _ in range(combo.count()):
        if combo.currentText() == text:
            break
        qtbot.keyClick(combo, key)
    assert combo.currentText() == text


def shown_normalization(window) -> str:
    return window.result.fit.settings.psf_normalization


def test_a_convention_brings_its_own_normalisation_and_the_user_can_choose(qtbot, window):
    with qtbot.waitSignal(window.fitDisplayed, timeout=TIMEOUT_MS):
        assert window.open_detection(demo_manifest_path())
    settled(qtbot, window)
    controls = window.fit_controls
    assert controls.psf_normalization.currentText() == "band-limited"
    assert shown_normalization(window) == "band-limited"

    choose(qtbot, controls.convention, "legacy")        # the published code's rendering
    settled(qtbot, window)
    assert controls.psf_normalization.currentText() == "model"
    assert (window.result.fit.settings.convention, shown_normalization(window)) == \
        ("legacy", "model")

    legacy_flux = window.result.fit.flux
    choose(qtbot, controls.psf_normalization, "unit-sum")   # one step: one undo entry
    settled(qtbot, window)
    assert shown_normalization(window) == "unit-sum"
    assert window.result.fit.settings.convention == "legacy"
    assert window.model.measurement.settings.psf_normalization == "unit-sum"
    assert window.result.fit.flux != legacy_flux

    undo(qtbot, window)                                 # back to legacy's own
    settled(qtbot, window)
    assert controls.psf_normalization.currentText() == "model"
    assert shown_normalization(window) == "model"
