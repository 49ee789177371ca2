"""Exposure discovery (`smp_model.wcs.decam`, `find_exposures`, `smp discover`) against a
brute-force footprint check, CCD edges and gaps, the real DES exposure table, and a
simulated survey."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table
from astropy.wcs import WCS

from smp_model.errors import ManifestError
from smp_model.inputs.discovery import find_exposures, read_exposure_table
from smp_model.wcs import decam

REPO = Path(__file__).resolve().parent.parent
RNG_SEED = 11


def brute_force(ra: float, dec: float, ra0: float, dec0: float) -> list[tuple[int, float, float]]:
    """Every CCD of a pointing whose footprint holds (ra, dec), by an independent path: one
    astropy TAN WCS per CCD built from the raw layout table (no engine geometry code)."""
    layout = Table.read(REPO / "resources" / "decam_ccd_layout.ecsv")
    s = layout.meta["pixel_mm"] * layout.meta["plate_scale_arcsec_per_mm"] / 3600.0
    found = []
    for row in layout:
        w = WCS(naxis=2)
        w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        w.wcs.crval = [ra0, dec0]
        w.wcs.crpix = [1024.5 - row["x_mm"] / 0.015, 2048.5 - row["y_mm"] / 0.015]
        w.wcs.cd = [[0.0, s], [-s, 0.0]]      # xi = +y (east), eta = -x (north)
        x, y = w.all_world2pix(ra, dec, 1)
        if 0.5 <= x <= 2048.5 and 0.5 <= y <= 4096.5:
            found.append((int(row["ccdnum"]), float(x), float(y)))
    return found


def test_layout_resource_is_the_62_science_ccds():
    layout = decam.load_ccd_layout()
    assert len(layout) == 62 and sorted(layout["ccdnum"]) == list(range(1, 63))
    assert "decaminfo.py" in layout.meta["source"]
    fp = decam.focal_plane()
    assert fp.pixel_scale == pytest.approx(0.263, abs=0.001)


def test_random_positions_agree_with_brute_force():
    rng = np.random.default_rng(RNG_SEED)
    n_on = 0
    for _ in range(300):
        ra0, dec0 = rng.uniform(0, 360), rng.uniform(-70, 10)
        # within the field of view, gaps and the outside included
        r, angle = 1.2 * np.sqrt(rng.uniform()), rng.uniform(0, 2 * np.pi)
        from smp_model.wcs.transforms import sky_from_tangent
        ra, dec = (float(v) for v in sky_from_tangent(r * 3600 * np.cos(angle),
                                                      r * 3600 * np.sin(angle), ra0, dec0))
        got = decam.locate(ra, dec, ra0, dec0)
        want = brute_force(ra, dec, ra0, dec0)
        assert [c for c, _, _ in got] == [c for c, _, _ in want]
        for (_, x, y), (_, bx, by) in zip(got, want):
            assert (x, y) == pytest.approx((bx, by), abs=1e-6)
        n_on += bool(got)
    assert 150 < n_on < 280     # both outcomes well represented


@pytest.mark.parametrize("ccd, x, y, inside", [
    (32, 0.51, 2000.0, True), (32, 0.49, 2000.0, False),          # CCD edge, x low
    (32, 2048.49, 100.0, True), (32, 2048.51, 100.0, False),      # x high
    (45, 1000.0, 0.51, True), (45, 1000.0, 0.49, False),          # y low
    (45, 1000.0, 4096.49, True), (45, 1000.0, 4096.51, False),    # y high
    (32, 1024.0, 4096.5 + 80.0, False),                           # gap N1 | N2 (163 px)
    (28, 2048.5 + 100.0, 2048.0, False),                          # gap S4 | N4 (206 px)
    (1, -2.5, 2048.0, False),                                     # beyond the focal plane
    (62, 1.0, 1.0, True), (62, 2048.0, 4096.0, True),             # corners
])
def test_edges_and_gaps(ccd, x, y, inside):
    ra, dec = 40.0, -20.0
    ra0, dec0 = decam.pointing_for(ra, dec, ccd, x, y)
    got = decam.locate(ra, dec, ra0, dec0)
    assert [c for c, _, _ in brute_force(ra, dec, ra0, dec0)] == [c for c, _, _ in got]
    if inside:
        assert len(got) == 1 and got[0][0] == ccd
        assert got[0][1:] == pytest.approx((x, y), abs=1e-6)
    else:
        assert got == []


def test_real_des_exposure_table_finds_the_sample_ccds(des_sample):
    """2014lq28 in the sample's survey table: the same exposures and CCDs as its manifest,
    positions from each PSF file's WCS matching the manifest's reference target_xy."""
    from smp_model.inputs.manifest import DetectionManifest
    manifest = DetectionManifest.read(des_sample / "2014lq28" / "detection.toml")
    table = read_exposure_table(des_sample / "exposures.ecsv")
    layout_only = find_exposures(table, manifest.ra, manifest.dec, band="r")
    found = find_exposures(table, manifest.ra, manifest.dec, band="r",
                           psfs=des_sample / "psfs")
    expected = {(e.expnum, e.ccdnum): e.target_xy for e in manifest.exposures}
    for t in (layout_only, found):
        assert {(int(r["expnum"]), int(r["ccdnum"])) for r in t} == set(expected)
    assert set(found["wcs"]) == {"psf"}
    for r in found:
        assert (r["x"], r["y"]) == pytest.approx(expected[(r["expnum"], r["ccdnum"])],
                                                 abs=1e-4)
    # the layout model alone is good to its documented ~15 px
    offsets = np.hypot(layout_only["x"] - found["x"], layout_only["y"] - found["y"])
    assert offsets.max() < 20.0


def test_mjd_window_and_missing_columns(tmp_path):
    t = Table({"EXPNUM": [1, 2], "Band": ["r", "r"], "RA": [10.0, 10.0],
               "DEC": [0.0, 0.0], "MJD": [57000.0, 58000.0]})
    t.write(tmp_path / "e.csv")
    table = read_exposure_table(tmp_path / "e.csv")
    ra, dec = 10.0, 0.0
    ra0, dec0 = decam.pointing_for(ra, dec, 35, 1000.0, 2000.0)
    table["ra"], table["dec"] = ra0, dec0
    assert list(find_exposures(table, ra, dec)["expnum"]) == [1, 2]
    assert list(find_exposures(table, ra, dec, mjd_range=(57500, None))["expnum"]) == [2]
    assert list(find_exposures(table, ra, dec, mjd_range=(None, 57500))["expnum"]) == [1]
    del t["MJD"], t["RA"]
    t.write(tmp_path / "bad.csv")
    with pytest.raises(ManifestError, match=r"bad.csv.*lacks column\(s\) ra"):
        read_exposure_table(tmp_path / "bad.csv")


class FakeDestnosimSurvey:
    """destnosim's Survey interface, answering with the brute-force footprints."""

    def __init__(self, table):
        self.expnum, self.ra, self.dec = (np.asarray(table[c]) for c in ("expnum", "ra", "dec"))
        self.band = np.asarray(table["band"])
        self.asked = []

    def __getitem__(self, expnum):
        i = int(np.flatnonzero(self.expnum == expnum)[0])
        survey = self

        class Exposure:
            def checkInCCDFast(self, ra, dec, ccdsize):
                survey.asked.append(expnum)
                hit = brute_force(float(ra[0]), float(dec[0]), survey.ra[i], survey.dec[i])
                return ([0], [hit[0][0]]) if hit else ([], None)
        return Exposure()


def _simulate(tmp_path_factory):
    from smp_model.simulation.detection import simulate_detection
    out = tmp_path_factory.mktemp("survey")
    truth = simulate_detection(out, seed=3, ccd_images=True)
    return out, truth


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    return _simulate(tmp_path_factory)


def test_simulated_survey_finds_its_exposures_and_rejects_the_decoys(survey):
    out, truth = survey
    table = read_exposure_table(out / "exposures.ecsv")
    assert len(table) == len(truth.exposures) + 3
    real = {(e.expnum, e.ccdnum): e.target_xy for e in truth.exposures}
    for kwargs in ({}, {"psfs": out / "psfs"},
                   {"survey": FakeDestnosimSurvey(table)}):
        found = find_exposures(table, truth.ra, truth.dec, band="r", **kwargs)
        assert {(int(r["expnum"]), int(r["ccdnum"])) for r in found} == set(real)
        for r in found:
            assert (r["x"], r["y"]) == pytest.approx(real[(r["expnum"], r["ccdnum"])],
                                                     abs=1e-5)
    anyband = find_exposures(table, truth.ra, truth.dec)
    assert len(anyband) == len(real) + 1 and set(anyband["band"]) == {"r", "g"}


def test_smp_discover_cli_writes_table_and_manifest(survey, tmp_path):
    out, truth = survey
    run = [sys.executable, "-m", "smp_model.cli", "discover", "--exposures",
           out / "exposures.ecsv", "--ra", repr(truth.ra), "--dec", repr(truth.dec),
           "--band", "r", "--psfs", out / "psfs", "--json", "--out", tmp_path / "found.ecsv",
           "--write-manifest", tmp_path / "m.toml", "--stamps", out / "stamps",
           "--zeropoints", out / "zeropoints.ecsv", "--name", truth.name,
           "--expnum", str(truth.detection_expnum)]
    result = subprocess.run([str(a) for a in run], capture_output=True, text=True,
                            timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {(r["expnum"], r["ccdnum"]) for r in rows} == {
        (e.expnum, e.ccdnum) for e in truth.exposures}
    assert len(Table.read(tmp_path / "found.ecsv")) == len(rows)
    from smp_model.inputs.manifest import DetectionManifest
    written = DetectionManifest.read(tmp_path / "m.toml")
    shipped = DetectionManifest.read(out / "detection.toml")
    assert written.detection_ccdnum == truth.detection_ccdnum
    assert [(e.expnum, e.ccdnum, e.stamp_origin, e.zeropoint) for e in written.exposures] == \
        [(e.expnum, e.ccdnum, e.stamp_origin, e.zeropoint) for e in shipped.exposures]
    # the output is never overwritten silently
    again = subprocess.run([str(a) for a in run], capture_output=True, text=True,
                           timeout=120, cwd=REPO)
    assert again.returncode == 2 and "exists" in again.stderr


@pytest.mark.parametrize("content, problem", [
    (None, "exposure table not found"),
    ("expnum,band\n1,r\n", "lacks column(s) ra, dec"),
    ("\x00\x01garbage", "exposure table"),
])
def test_cli_bad_exposure_table_is_one_line(tmp_path, content, problem):
    path = tmp_path / "exposures.csv"
    if content is not None:
        path.write_text(content)
    result = subprocess.run([sys.executable, "-m", "smp_model.cli", "discover", "--exposures",
                             str(path), "--ra", "10", "--dec", "0"],
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("smp: error: ")
    assert str(path) in lines[0] and problem in lines[0]
