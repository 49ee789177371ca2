"""File > Send to in the inspector and the survey view, through the real menus, against a
real SAMP hub in the test process with TOPCAT/DS9/Aladin-named clients that record what
arrives (issue 24); and a PSFEx detection opened by the inspector like any other."""
from __future__ import annotations

import shutil
import time

import numpy as np
import pyqtgraph as pg
import pytest
from astropy.io import fits
from PyQt6.QtCore import QSettings

from smp_gui.inspector import InspectorWindow
from smp_gui.windows import WindowManager
from smp_model.psf.models import PSFExPSF
from smp_model.simulation.truth import SimulationTruth
from tests.samp_helpers import no_hub, samp_hub, tools  # noqa: F401 - fixtures
from tests.test_psfex import HEADER, PSFEX

pytestmark = pytest.mark.gui
pg.setConfigOption("mouseRateLimit", -1)
TIMEOUT_MS = 60_000


def menu_action(window, *path):
    actions = window.menuBar().actions()
    for name in path:
        action = next(a for a in actions if a.text().replace("&", "") == name)
        actions = action.menu().actions() if action.menu() else []
    return action


@pytest.fixture(scope="module")
def psfex_detection(tmp_path_factory) -> SimulationTruth:
    from smp_model.simulation.psfex import simulate_psfex_detection
    if not PSFEX.is_file():
        pytest.skip(f"{PSFEX} not found")
    return simulate_psfex_detection(tmp_path_factory.mktemp("psfex") / "sim", PSFEX, HEADER,
                                    seed=2, n_exposures=3)


@pytest.fixture
def inspector(fresh_inspector):
    return fresh_inspector


def open_fitted(qtbot, window, path):
    with qtbot.waitSignal(window.fitDisplayed, timeout=TIMEOUT_MS):
        assert window.open_detection(path)
    qtbot.waitUntil(lambda: not window.controller.busy and not window.model.is_stale,
                    timeout=TIMEOUT_MS)


def test_the_inspector_opens_a_psfex_detection_and_sends_it(qtbot, inspector,
                                                            psfex_detection, tools):
    open_fitted(qtbot, inspector, psfex_detection.manifest_path)
    fit = inspector.result.fit
    assert isinstance(fit.scene.detection.psf, PSFExPSF)
    flux, err = fit.sources[0].flux, fit.sources[0].flux_err
    assert abs(flux - psfex_detection.fluxes[0]) < 3 * err
    with qtbot.waitSignal(inspector.samp.controller.finished, timeout=TIMEOUT_MS) as done:
        menu_action(inspector, "File", "Send to", "TOPCAT").trigger()
    assert done.args[2] is None
    (params, table), = tools["topcat"].wait_for("table.load.votable")
    assert table["flux"][0] == pytest.approx(flux, rel=1e-9)
    assert table["flux_njy"].unit == "nJy" and table["name"][0] == fit.manifest.name
    assert not tools["ds9"].messages and not tools["Aladin"].messages

    with qtbot.waitSignal(inspector.samp.controller.finished, timeout=TIMEOUT_MS):
        menu_action(inspector, "File", "Send to", "DS9").trigger()
    images = tools["ds9"].wait_for("image.load.fits", 5)
    names = [fits.HDUList.fromstring(content)[0].header["PANEL"] for _, content in images]
    assert names == ["Image", "Model", "Image - background model", "Image - target",
                     "Residual"]
    header = fits.HDUList.fromstring(images[0][1])[0].header
    assert header["CTYPE1"].startswith("RA---TAN") and header["EXPNUM"] == 154912


def test_send_without_a_hub_says_so_in_one_dialog(qtbot, inspector, psfex_detection,
                                                  no_hub):
    open_fitted(qtbot, inspector, psfex_detection.manifest_path)
    start = time.monotonic()
    with qtbot.waitSignal(inspector.errorShown, timeout=15_000) as shown:
        menu_action(inspector, "File", "Send to", "all clients").trigger()
    assert time.monotonic() - start < 10
    assert "no SAMP hub" in shown.args[0].text()


@pytest.fixture
def survey_window(qapp, tmp_path, tiny_survey):
    _, out, _ = tiny_survey
    copy = tmp_path / "fluxes.ecsv"
    shutil.copy(out, copy)
    store = QSettings(str(tmp_path / "smp.ini"), QSettings.Format.IniFormat)
    w = WindowManager(store).new_survey()
    w.show()
    assert w.open_survey(copy)
    yield w
    w.shutdown()
    w.close()
    w.deleteLater()


def test_survey_rows_go_both_ways_with_topcat(qtbot, survey_window, tools):
    w = survey_window
    assert w.set_filter("chi2_dof > 0")   # a filter: the sent table is the filtered one
    shown = [w.model.key_at(r) for r in range(w.model.rowCount())]
    with qtbot.waitSignal(w.samp.controller.finished, timeout=TIMEOUT_MS) as done:
        menu_action(w, "File", "Send to", "TOPCAT").trigger()
    assert done.args[2] is None
    (params, table), = tools["topcat"].wait_for("table.load.votable")
    assert set(np.asarray(table["key"]).astype(str)) == set(shown)
    sent_keys = [str(k) for k in table["key"]]

    # TOPCAT selects rows 1 and 3 of what it received: those detections are selected
    tools["topcat"].send("table.select.rowList", **{"table-id": params["table-id"],
                                                     "url": params["url"],
                                                     "row-list": ["1", "3"]})
    wanted = {sent_keys[1], sent_keys[3]}
    qtbot.waitUntil(lambda: {str(w.survey.columns["key"][i])
                             for i in w.selected_indices()} == wanted, timeout=10_000)
    assert w.current_key() == sent_keys[1]

    # TOPCAT highlights row 5: it becomes the current detection
    tools["topcat"].send("table.highlight.row", **{"table-id": params["table-id"],
                                                    "url": params["url"], "row": "5"})
    qtbot.waitUntil(lambda: w.current_key() == sent_keys[5], timeout=10_000)

    # a row chosen here is highlighted in TOPCAT, at its row in the sent table
    key = next(k for k in shown if k not in (sent_keys[1], sent_keys[5]))
    assert w.select_key(key)
    highlights = tools["topcat"].wait_for("table.highlight.row")
    assert highlights[-1][0]["row"] == str(sent_keys.index(key))
    assert highlights[-1][0]["table-id"] == params["table-id"]
    # what came from TOPCAT was not echoed back to it
    assert [p["row"] for p, _ in highlights] == [str(sent_keys.index(key))]


def test_a_hub_restarted_between_sends_is_found(qtbot, inspector, psfex_detection, samp_hub,
                                                tmp_path):
    from pyvo.samp import SAMPHubServer

    from tests.samp_helpers import Recorder
    open_fitted(qtbot, inspector, psfex_detection.manifest_path)
    send = menu_action(inspector, "File", "Send to", "TOPCAT")
    first = Recorder("topcat")
    with qtbot.waitSignal(inspector.samp.controller.finished, timeout=TIMEOUT_MS):
        send.trigger()
    first.wait_for("table.load.votable")
    first.close()
    samp_hub.stop()   # TOPCAT quits, and a new one starts its own hub
    hub = SAMPHubServer(web_profile=False, lockfile=str(tmp_path / "samp-lock"),
                        mode="multiple")
    hub.start()
    try:
        second = Recorder("topcat")
        with qtbot.waitSignal(inspector.samp.controller.finished, timeout=TIMEOUT_MS) as done:
            send.trigger()
        assert done.args[2] is None
        (params, table), = second.wait_for("table.load.votable")
        assert table["flux"][0] == pytest.approx(inspector.result.fit.sources[0].flux)
        second.close()
    finally:
        hub.stop()
