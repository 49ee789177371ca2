"""SAMP (issue 24): `smp send` and the engine's `SampLink` against a real pyvo.samp hub in
the test process, with clients named like TOPCAT, DS9 and Aladin that record what
arrives: message types, tables that read back with their units, row indices."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from smp_model.cli.command import main
from smp_model.fit.measure import measure
from smp_model.fit.panels import five_panels
from smp_model.fit.photometry import DetectionPhotometry
from smp_model.fit.request import FitRequest
from smp_model.outputs.samp import SampError, SampLink
from smp_model.outputs.tables import fit_table
from smp_model.simulation.detection import simulate_detection
from tests.samp_helpers import no_hub, samp_hub, tools  # noqa: F401 - fixtures


@pytest.fixture(scope="module")
def fit(tmp_path_factory):
    truth = simulate_detection(tmp_path_factory.mktemp("samp"), seed=3, n_exposures=3)
    return measure(DetectionPhotometry(truth.manifest_path), FitRequest())


@pytest.fixture(scope="module")
def outputs(fit, tmp_path_factory):
    folder = tmp_path_factory.mktemp("outputs")
    assert main(["fit", str(fit.manifest.path), "--table", str(folder / "t.ecsv"),
                 "--fits", str(folder / "cube.fits")]) == 0
    return folder


def test_smp_send_delivers_the_table_with_its_rows_and_units(outputs, tools, capsys):
    assert main(["send", str(outputs / "t.ecsv")]) == 0
    written = Table.read(outputs / "t.ecsv")
    for name, tool in tools.items():
        (params, table), = tool.wait_for("table.load.votable")
        assert params["name"] == "t.ecsv"
        assert len(table) == len(written) == 1
        assert table["flux"][0] == pytest.approx(written["flux"][0], rel=1e-12)
        assert table["flux_njy"].unit == written["flux_njy"].unit == "nJy"
        assert table["ra"].unit == "deg" and table["x"].unit == "pix"
        assert str(table["mag"].unit) == "mag"   # VOUnits have no AB magnitude
        assert "AB" in table["mag"].description
    assert "sent" in capsys.readouterr().err


def test_smp_send_to_one_tool_and_images_by_path(outputs, tools):
    assert main(["send", "--to", "ds9", str(outputs / "cube.fits")]) == 0
    (params, content), = tools["ds9"].wait_for("image.load.fits")
    assert content == (outputs / "cube.fits").read_bytes()
    time.sleep(0.2)
    assert not tools["topcat"].of("image.load.fits") and not tools["Aladin"].messages


def test_smp_send_without_a_hub_is_one_line_and_exit_1_quickly(outputs, no_hub, capsys):
    start = time.monotonic()
    assert main(["send", str(outputs / "t.ecsv")]) == 1
    assert time.monotonic() - start < 10
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no SAMP hub" in err


def test_smp_send_a_missing_file_is_a_usage_error(tmp_path, no_hub, capsys):
    assert main(["send", str(tmp_path / "nothing.ecsv")]) == 2
    assert "nothing.ecsv" in capsys.readouterr().err


def test_send_to_a_tool_that_is_not_there_names_it(outputs, samp_hub):
    with SampLink() as link, pytest.raises(SampError, match="no 'topcat'"):
        link.send_table(Table.read(outputs / "t.ecsv"), "t", "topcat")


def test_panels_arrive_as_fits_images_with_the_stamps_wcs(fit, tools):
    with SampLink() as link:
        paths = link.send_panels(fit, "ds9")
        received = tools["ds9"].wait_for("image.load.fits", 5)
    assert len(paths) == 5 and not tools["topcat"].messages
    det = fit.scene.detection
    residual = fits.HDUList.fromstring(received[4][1])[0]
    assert residual.header["PANEL"] == "Residual" and residual.header["BUNIT"] == "ct"
    assert np.allclose(residual.data, five_panels(fit)["residual"], rtol=1e-6, atol=1e-3)
    # the WCS puts the target where the engine puts it: stamp pixel of target_xy
    ra, dec = det.pixel_to_sky(*det.target_xy)
    px, py = WCS(residual.header).all_world2pix(ra, dec, 1)
    assert px == pytest.approx(det.target_xy[0] - det.origin[0] + 1, abs=0.02)
    assert py == pytest.approx(det.target_xy[1] - det.origin[1] + 1, abs=0.02)


def test_rows_both_ways(fit, tools):
    table = fit_table(fit)
    with SampLink() as link:
        chosen = []
        link.on_rows(chosen.append)
        sent = link.send_table(table, "fluxes", "topcat")
        link.highlight_row(sent, 0, "topcat")
        link.select_rows(sent, [0], "topcat")
        (highlight, _), = tools["topcat"].wait_for("table.highlight.row")
        (select, _), = tools["topcat"].wait_for("table.select.rowList")
        assert highlight == {"table-id": sent.table_id, "url": sent.url, "row": "0"}
        assert select["row-list"] == ["0"]
        tools["topcat"].send("table.select.rowList", **{"table-id": sent.table_id,
                                                         "url": sent.url,
                                                         "row-list": ["0", "2"]})
        tools["topcat"].send("table.highlight.row", **{"table-id": sent.table_id,
                                                        "url": sent.url, "row": "1"})
        deadline = time.monotonic() + 10
        while len(chosen) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert [(m.kind, m.table_id, m.rows) for m in chosen] == [
        ("table.select.rowList", sent.table_id, (0, 2)),
        ("table.highlight.row", sent.table_id, (1,))]


def test_a_registration_that_answers_after_the_timeout_is_undone(samp_hub):
    # A hub slow to answer: connect gives up, and when the registration does complete
    # the client unregisters, so the hub lists no stray "SMP Inspector".
    link = SampLink(timeout=0.2)
    real_connect, registered = link._client.connect, threading.Event()

    def slow_connect():
        time.sleep(0.6)
        real_connect()
        registered.set()
    link._client.connect = slow_connect
    with pytest.raises(SampError, match="no answer within 0.2 s"):
        link.connect()
    assert registered.wait(10)
    with SampLink() as observer:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "SMP Inspector" in observer.clients().values():
            time.sleep(0.05)
        assert "SMP Inspector" not in observer.clients().values()
    assert not link.connected
    link.close()
