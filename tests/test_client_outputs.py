"""Every output of ``smp fit`` opened as astronomers open it (issue 29), on a binary fit of
2014 LQ28: astropy reads it back with units and AB; fitsverify (HEASARC's checker, where
installed; ``./dev test`` installs it on Debian) reports no warning; STILTS ``votlint`` and
``tpipe`` (where installed) read the VOTable and the FITS provenance; the documented DS9
command shows the detection with the region circles on their sources, checked by DS9's
own rule for which HDU it displays and, where DS9 is installed, by DS9 itself.
"""
from __future__ import annotations

import io
import re
import shlex
import shutil
import subprocess

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits, votable
from astropy.table import QTable, Table
from astropy.wcs import WCS

from smp_model.cli.command import main
from smp_model.inputs.manifest import DetectionManifest
from smp_model.outputs.clients import DS9_COMMAND
from smp_model.outputs.provenance import flat_meta
from smp_model.outputs.tables import read_flux_table

FITSVERIFY = shutil.which("fitsverify")
STILTS = shutil.which("stilts")

pytestmark = pytest.mark.filterwarnings(
    "ignore::smp_model.scene.exposures.DroppedExposureWarning")


@pytest.fixture(scope="module")
def lq28(des_sample, tmp_path_factory):
    """``smp fit 2014lq28 --binary=0,1,0,1`` with a cube, a FITS table and regions, and
    the same fit with a VOTable."""
    out = tmp_path_factory.mktemp("clients")
    paths = {"cube": out / "cube.fits", "table": out / "table.fits",
             "regions": out / "fit.reg", "votable": out / "table.vot"}
    manifest = des_sample / "2014lq28" / "detection.toml"
    fit = ["fit", str(manifest), "--binary=0,1,0,1", "--quiet"]
    assert main(fit + ["--fits", str(paths["cube"]), "--table", str(paths["table"]),
                       "--regions", str(paths["regions"])]) == 0
    assert main(fit + ["--table", str(paths["votable"])]) == 0
    return dict(paths, manifest=DetectionManifest.read(manifest))


# -- FITS --------------------------------------------------------------------------------------

def _fitsverify_counts(path) -> tuple[int, int]:
    """(warnings, errors) fitsverify reports for ``path``."""
    run = subprocess.run([FITSVERIFY, "-q", str(path)], capture_output=True, text=True,
                         timeout=60)
    found = re.search(r"(\d+) warnings? and (\d+) errors?", run.stdout)
    if "verification OK" in run.stdout:
        return 0, 0
    assert found, run.stdout + run.stderr
    return int(found[1]), int(found[2])


@pytest.mark.parametrize("which", ["cube", "table"])
def test_fits_outputs_verify_cleanly(lq28, which):
    with fits.open(lq28[which]) as hdul:
        hdul.verify("exception")
        for hdu in hdul:
            header = hdu.header
            # who wrote the file and when, in the standard cards; no HIERARCH cards
            assert header["ORIGIN"] == "SMP Inspector" and header["DATE"].startswith("20")
            assert not any(card.keyword.startswith("HIERARCH") or " " in card.keyword
                           for card in header.cards)
            if any(len(card.image) > 80 for card in header.cards):   # CONTINUE cards
                assert header["LONGSTRN"] == "OGIP 1.0"
        assert any("Scene-modelling photometry" in str(h.header.get("HISTORY", ""))
                   for h in hdul)
    if FITSVERIFY:
        assert _fitsverify_counts(lq28[which]) == (0, 0)


def test_fits_table_keeps_units_ab_descriptions_and_provenance(lq28):
    """Read back: TUNITn and TCOMMn for any FITS reader, AB magnitudes as TUNIT ``mag``
    with a description saying AB (FITS has no AB unit); `read_flux_table` returns them
    as astropy's ``mag(AB)`` and the metadata of the PROVENANCE extension."""
    with fits.open(lq28["table"]) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "SOURCES", "PROVENANCE"]
    plain = QTable.read(lq28["table"], hdu="SOURCES")
    assert plain["mag"].unit == u.mag and plain["flux_njy"].unit == u.nJy
    assert plain["ra"].unit == u.deg and plain["x"].unit == u.pix
    column = plain.colnames.index("mag") + 1
    assert plain.meta[f"TCOMM{column}"].startswith("AB magnitude")

    table = read_flux_table(lq28["table"])
    assert table["mag"].unit == u.ABmag and table["mag_limit_3sigma"].unit == u.ABmag
    assert table["mag_err"].unit == u.mag   # a difference of magnitudes: not AB
    np.testing.assert_allclose(table["flux_njy"].to(u.ABmag).value, table["mag"].value,
                               atol=1e-4)
    assert table["flux_njy"].info.description.startswith("flux in nJy")
    meta = table.meta
    assert meta["name"] == "2014lq28" and meta["offsets"] == [0.0, 1.0, 0.0, 1.0]
    assert meta["settings"]["grid_size"] == 20 and meta["settings"]["fit_sky"] is True
    assert meta["mjd"] is None and meta["exposures_dropped"] == [239649, 580880]
    assert [e["expnum"] for e in meta["per_exposure"]] == meta["exposures_used"]
    # the same metadata as the VOTable of the same fit run again, but for the time of
    # writing and the last digit of a float (two solves need not agree to the bit)
    other = flat_meta(read_flux_table(lq28["votable"]).meta)
    flat = flat_meta(meta)
    assert set(other) == set(flat)
    for key in set(flat) - {"created"}:
        if isinstance(flat[key], float):
            assert other[key] == pytest.approx(flat[key], rel=1e-12, nan_ok=True), key
        else:
            assert other[key] == flat[key], key


def test_cube_tables_have_units_and_no_orphan_time_cards(lq28):
    with fits.open(lq28["cube"]) as hdul:
        for hdu in hdul:
            # astropy's fit_wcs_from_points leaves MJDREF = 0.0 (a time reference of
            # nothing); the exposure's start is MJD-OBS where known
            assert "MJDREF" not in hdu.header and "DATEREF" not in hdu.header
        exposures = QTable.read(hdul["EXPOSURES"])
        sources = QTable.read(hdul["SOURCES"])
    assert exposures["x0"].unit == u.pix and exposures["target_x"].unit == u.pix
    assert exposures["zeropoint"].unit == u.mag and exposures["sky"].unit == u.ct
    assert sources["flux_njy"].unit == u.nJy and sources["mag"].unit == u.mag


def test_cube_sip_inverse_agrees_with_the_forward(lq28):
    """A client mapping sky to pixels with the SIP inverse (AP, BP: ``u = U + AP(U, V)``
    with U, V the intermediate pixel offsets of the linear WCS) lands where the forward
    polynomial says, to 0.01 px over each stamp, its corners included."""
    with fits.open(lq28["cube"]) as hdul:
        images = [h.header for h in hdul if h.name == "IMAGE"]
        assert len(images) == hdul[0].header["NEXPOSUR"] == 9
    for header in images:
        assert ("AP_ORDER" in header) == ("BP_ORDER" in header)
        if "AP_ORDER" not in header:
            continue
        wcs = WCS(header)
        ny, nx = header["NAXIS2"], header["NAXIS1"]
        px, py = (a.ravel() for a in np.meshgrid(np.linspace(0.5, nx + 0.5, 13),
                                                 np.linspace(0.5, ny + 0.5, 13)))
        ra, dec = wcs.all_pix2world(px, py, 1)                  # the forward SIP
        lx, ly = wcs.wcs_world2pix(ra, dec, 1)                   # the linear part only
        big_u, big_v = lx - header["CRPIX1"], ly - header["CRPIX2"]
        for axis, pixel, crpix in (("AP", px, "CRPIX1"), ("BP", py, "CRPIX2")):
            order = header[f"{axis}_ORDER"]
            terms = {(p, q): header[f"{axis}_{p}_{q}"] for p in range(order + 1)
                     for q in range(order + 1 - p) if f"{axis}_{p}_{q}" in header}
            assert len(terms) > 3, f"{axis}_ORDER without its coefficients"
            offset = big_u if axis == "AP" else big_v
            back = header[crpix] + offset + sum(c * big_u ** p * big_v ** q
                                                for (p, q), c in terms.items())
            assert np.max(np.abs(back - pixel)) < 0.01, (header["EXPNUM"], axis)
        assert header["SIPINVRS"] < 0.01


# -- DS9 ---------------------------------------------------------------------------------------

def _ds9_argv(lq28, extension: str = "") -> list[str]:
    """The documented command (an ``extension`` such as ``[RESIDUAL]`` after the cube's
    name, as the DS9 how-to shows for the other quantities)."""
    cube = shlex.quote(f"{lq28['cube']}{extension}")
    return shlex.split(DS9_COMMAND.format(cube=cube, regions=shlex.quote(str(lq28["regions"]))))


def _source_pixels(lq28) -> np.ndarray:
    """The fitted sources' FITS pixels in the detection's stamp (table x, y are 1-indexed
    CCD pixels; CCDX0, CCDY0 the CCD pixel of stamp FITS pixel (1, 1))."""
    with fits.open(lq28["cube"]) as hdul:
        sources = Table(hdul["SOURCES"].data)
        x0, y0 = hdul["IMAGE", 1].header["CCDX0"], hdul["IMAGE", 1].header["CCDY0"]
    return np.column_stack([sources["x"] - x0 + 1, sources["y"] - y0 + 1])


def test_documented_ds9_command_shows_the_detection_with_circles_on_its_sources(lq28):
    """DS9 given a file whose primary HDU is empty displays its first image extension
    with that extension's WCS (a named extension, ``file[RESIDUAL]``, the first of that
    name).  That HDU must be the detection, and its WCS must put the region file's
    circles on the fitted sources."""
    from regions import CircleSkyRegion, Regions
    argv = _ds9_argv(lq28)
    assert argv[0] == "ds9" and argv[argv.index("-regions") + 1] == str(lq28["regions"])
    with fits.open(argv[1]) as hdul:
        assert hdul[0].header["NAXIS"] == 0
        shown = next(h for h in hdul[1:] if h.is_image and h.header["NAXIS"] == 2)
        residual = hdul["RESIDUAL"]
        for hdu in (shown, residual):
            assert hdu.header["EXPNUM"] == lq28["manifest"].detection_expnum
            assert hdu.header["DETECTN"] is True
        header = shown.header
    circles = [s for s in Regions.read(lq28["regions"], format="ds9")
               if isinstance(s, CircleSkyRegion)]
    drawn = np.array([np.array(c.center.to_pixel(WCS(header))) + 1 for c in circles])
    np.testing.assert_allclose(drawn, _source_pixels(lq28), atol=0.01)


DS9_TOOLS = [shutil.which(t) for t in ("ds9", "xpaget", "xpaset", "Xvfb")]


@pytest.mark.skipif(not all(DS9_TOOLS), reason="needs ds9, xpaget/xpaset and Xvfb")
@pytest.mark.parametrize("extension, shown", [("", "IMAGE"), ("[RESIDUAL]", "RESIDUAL")])
def test_ds9_itself_shows_the_detection_with_circles_on_its_sources(lq28, tmp_path,
                                                                    extension, shown):
    """The documented commands run in DS9 (under Xvfb), asked over XPA which file and
    HDU it shows and where it drew the circles, in that HDU's image pixels."""
    with _ds9(_ds9_argv(lq28, extension), tmp_path) as xpaget:
        assert xpaget("file").strip() == f"{lq28['cube']}[{shown}]"
        header = fits.Header.fromstring(xpaget("fits", "header"), sep="\n")
        assert header["EXTNAME"] == shown
        assert header["EXPNUM"] == lq28["manifest"].detection_expnum and header["DETECTN"]
        drawn = _circles_drawn(xpaget)
    np.testing.assert_allclose(np.array(drawn, float), _source_pixels(lq28), atol=0.01)


def _circles_drawn(xpaget) -> list[tuple[str, str]]:
    """The circles DS9 drew, in image pixels, once it has loaded the region file (it
    answers XPA before that)."""
    import time
    deadline = time.monotonic() + 60
    while True:
        drawn = re.findall(r"circle\(([-\d.]+),([-\d.]+),",
                           xpaget("regions", "-system", "image"))
        if drawn or time.monotonic() > deadline:
            return drawn
        time.sleep(0.5)


class _ds9:
    """DS9 running ``argv`` on a private Xvfb display with a private XPA directory;
    yields a function returning ``xpaget ds9 <args>``'s output."""

    def __init__(self, argv, folder):
        self.argv, self.folder = argv, folder

    def __enter__(self):
        import os
        import time
        read_fd, write_fd = os.pipe()
        self.xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0",
                                      "1024x768x24", "-nolisten", "tcp"],
                                     pass_fds=(write_fd,), stderr=subprocess.DEVNULL)
        os.close(write_fd)
        with os.fdopen(read_fd) as stream:
            display = stream.readline().strip()
        (self.folder / "xpa").mkdir()
        self.env = dict(os.environ, DISPLAY=f":{display}", XPA_METHOD="local",
                        XPA_TMPDIR=str(self.folder / "xpa"))
        self.ds9 = subprocess.Popen(self.argv, env=self.env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while self._xpa("xpaget", "file").returncode != 0:
            assert self.ds9.poll() is None and time.monotonic() < deadline, "DS9 did not start"
            time.sleep(0.5)
        return lambda *args: self._xpa("xpaget", *args).stdout

    def _xpa(self, tool, *args):
        return subprocess.run([tool, "ds9", *args], env=self.env, capture_output=True,
                              text=True, timeout=30)

    def __exit__(self, *exc):
        self._xpa("xpaset", "-p", "exit")
        for process in (self.ds9, self.xvfb):
            process.terminate()
            process.wait(timeout=30)


# -- VOTable -----------------------------------------------------------------------------------

def test_votable_is_valid_with_vo_units_and_ab_said(lq28):
    """astropy's VOTable validator passes the file; it parses with every warning an error
    (W50: a unit VOUnit does not know); units, UCDs and AB are where VO clients look."""
    report = io.StringIO()
    assert votable.validate(str(lq28["votable"]), output=report), report.getvalue()
    document = votable.parse(str(lq28["votable"]), verify="exception")
    fields = {f.name: f for f in document.get_first_table().fields}
    for field in fields.values():
        if field.unit is not None:
            u.Unit(str(field.unit), format="vounit")
    assert str(fields["mag"].unit) == "mag" and fields["mag"].ucd == "phot.mag"
    assert fields["mag"].description.startswith("AB magnitude")
    assert fields["ra"].ucd == "pos.eq.ra;meta.main" and str(fields["ra"].unit) == "deg"
    assert str(fields["flux_njy"].unit) == "nJy"
    # through astropy's registry (any VOTable reader) and back with AB
    assert len(Table.read(lq28["votable"])) == 2
    table = read_flux_table(lq28["votable"])
    assert table["mag"].unit == u.ABmag
    fits_table = read_flux_table(lq28["table"])
    for name in ("flux", "flux_err", "mag", "ra", "dec", "x", "y", "component"):
        assert list(table[name]) == list(fits_table[name])


@pytest.mark.skipif(not STILTS, reason="STILTS is not installed")
def test_stilts_reads_the_votable_and_the_fits_provenance(lq28):
    def stilts(*args):
        run = subprocess.run([STILTS, *args], capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        return run.stdout + run.stderr

    assert stilts("votlint", f"votable={lq28['votable']}").strip() == ""
    meta = stilts("tpipe", f"in={lq28['votable']}", "omode=meta")
    assert re.search(r"mag\(Double\)/mag - AB magnitude", meta)
    assert "request.settings.grid_size" in meta
    meta = stilts("tpipe", f"in={lq28['table']}", "omode=meta")
    assert re.search(r"mag\(Double\)/mag - AB magnitude", meta)
    assert "Scene-modelling photometry" in meta and "ORIGIN" in meta
    assert "CONTINUE" not in meta and "HIERARCH" not in meta   # long TCOMMs read whole
    rows = stilts("tpipe", f"in={lq28['table']}#2", "omode=out", "ofmt=csv")
    provenance = dict(line.split(",", 1) for line in rows.splitlines()[1:])
    assert provenance["settings.grid_size"] == "20"
    assert provenance["per_exposure.0.expnum"] == "247494"
