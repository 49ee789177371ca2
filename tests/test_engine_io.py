"""Readers: manifests, stamps, zeropoint tables, the folder input, and the handling of
exposures without a usable pixel.  Every user-caused error names its file (and key)."""
from __future__ import annotations

import math
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table
from helpers import absolute_manifest_dict, read_toml, write_stamp, write_toml

from smp_model.errors import ManifestError, SMPError, StampError, ZeropointError
from smp_model.inputs.folder import manifest_from_folder
from smp_model.inputs.manifest import DetectionManifest
from smp_model.inputs.stamps import read_stamp
from smp_model.inputs.zeropoints import read_zeropoints
from smp_model.scene.exposures import DroppedExposureWarning, load_exposures

SAMPLE = {"eris": (6, 234928, 20), "2014vv39": (8, 572637, 9), "2014lq28": (11, 696265, 32)}


@pytest.fixture(scope="module")
def manifests(des_sample):
    return {name: DetectionManifest.read(des_sample / name / "detection.toml")
            for name in SAMPLE}


# -- manifests ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(SAMPLE))
def test_sample_manifests_load(manifests, des_sample, name):
    n, expnum, ccdnum = SAMPLE[name]
    m = manifests[name]
    assert m.name == name and m.path == des_sample / name / "detection.toml"
    assert len(m.exposures) == n
    assert (m.detection_exposure.expnum, m.detection_exposure.ccdnum) == (expnum, ccdnum)
    assert m.exposures[m.detection_index] is m.detection_exposure
    for e in m.exposures:
        assert e.stamp.is_file() and e.psf.is_file() and e.stamp.is_absolute()
        # The sample's origins follow the DES rule ceil(x) - 14 of its target_xy.
        assert e.stamp_origin == (math.ceil(e.target_xy[0]) - 14,
                                  math.ceil(e.target_xy[1]) - 14)


def write_variant(tmp_path, des_sample, edit, name="eris"):
    doc = absolute_manifest_dict(des_sample / name / "detection.toml")
    edit(doc)
    return write_toml(tmp_path / "detection.toml", doc)


def _del(keys):
    def edit(doc):
        table = doc
        for k in keys[:-1]:
            table = table[k]
        del table[keys[-1]]
    return edit


def _set(keys, value):
    def edit(doc):
        table = doc
        for k in keys[:-1]:
            table = table[k]
        table[keys[-1]] = value
    return edit


def _duplicate(doc):
    doc["exposures"].append(dict(doc["exposures"][1]))


BAD_MANIFESTS = {
    "missing ra": (_del(["ra"]), ["ra", "missing"]),
    "missing detection expnum": (_del(["detection", "expnum"]), ["detection.expnum"]),
    "missing exposure zeropoint": (_del(["exposures", 2, "zeropoint"]),
                                   ["exposures[2].zeropoint"]),
    "missing stamp_origin": (_del(["exposures", 0, "stamp_origin"]),
                             ["exposures[0].stamp_origin"]),
    "ra not a number": (_set(["ra"], "25.6"), ["ra", "number"]),
    "expnum not an integer": (_set(["exposures", 1, "expnum"], 384049.5), ["exposures[1].expnum"]),
    "fractional stamp_origin": (_set(["exposures", 1, "stamp_origin"], [1228.5, 2925]),
                                ["exposures[1].stamp_origin"]),
    "unknown format": (_set(["format"], "smp-detection/9"), ["smp-detection/9", "format"]),
    "duplicate exposure": (_duplicate, ["duplicate", "384049"]),
    "detection not listed": (_set(["detection", "expnum"], 999999), ["999999", "not among"]),
    "no exposures": (_set(["exposures"], []), ["exposures"]),
}


@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
def test_bad_manifest_raises_naming_file_and_key(tmp_path, des_sample, case):
    edit, words = BAD_MANIFESTS[case]
    path = write_variant(tmp_path, des_sample, edit)
    with pytest.raises(ManifestError) as info:
        DetectionManifest.read(path)
    line = info.value.one_line()
    assert str(path) in line and "\n" not in line
    for word in words:
        assert word in line, line


def test_missing_and_unparsable_manifest(tmp_path):
    with pytest.raises(ManifestError, match="not found"):
        DetectionManifest.read(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 'x\n[[exposures]\n")
    with pytest.raises(ManifestError) as info:
        DetectionManifest.read(bad)
    assert str(bad) in info.value.one_line()


def test_manifest_write_round_trip_and_no_overwrite(tmp_path, manifests):
    original = manifests["eris"]
    out = tmp_path / "sub" / "copy.toml"
    original.write(out)
    again = DetectionManifest.read(out)
    assert again == original   # every field, paths resolved to the same absolute files
    written = read_toml(out)   # paths in the file are relative to it
    assert all(not Path(e[k]).is_absolute() for e in written["exposures"]
               for k in ("stamp", "psf"))
    before = out.read_bytes()
    with pytest.raises(SMPError) as info:
        original.write(out)
    assert str(out) in info.value.one_line()
    assert out.read_bytes() == before
    replace(original, name="renamed").write(out, overwrite=True)
    assert DetectionManifest.read(out).name == "renamed"
    assert sorted(p.name for p in out.parent.iterdir()) == ["copy.toml"]   # no temp files


# -- stamps ---------------------------------------------------------------------------------

def _good():
    return (np.ones((30, 30)), np.zeros((30, 30), np.int16), np.full((30, 30), 2.0))


def test_good_stamp_reads(tmp_path):
    path = tmp_path / "ok.fits"
    sci, msk, wgt = _good()
    msk[3, 4] = 128
    wgt[3, 4] = -1.0      # negative weight on a masked pixel does not matter
    write_stamp(path, sci, msk, wgt)
    stamp = read_stamp(path)
    assert stamp.shape == (30, 30) and stamp.usable.sum() == 899


def _write_bad(path, kind):
    from astropy.io import fits
    sci, msk, wgt = _good()
    if kind == "not fits":
        path.write_text("SIMPLE = this is not a FITS file\n")
    elif kind == "missing HDU":
        fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(sci, name="SCI"),
                      fits.ImageHDU(msk, name="MSK")]).writeto(path)
    elif kind == "shape mismatch":
        write_stamp(path, sci, msk, wgt[:, :29])
    elif kind == "negative WGT":
        wgt[10, 11] = -0.5
        write_stamp(path, sci, msk, wgt)
    elif kind == "float mask":
        fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(sci, name="SCI"),
                      fits.ImageHDU(msk.astype(np.float32), name="MSK"),
                      fits.ImageHDU(wgt, name="WGT")]).writeto(path)


@pytest.mark.parametrize("kind, words", [("not fits", ["FITS"]), ("missing HDU", ["WGT"]),
                                         ("shape mismatch", ["shape"]),
                                         ("negative WGT", ["WGT", "negative"]),
                                         ("float mask", ["MSK"]), ("missing", ["not found"])])
def test_bad_stamp_raises_naming_file(tmp_path, kind, words):
    path = tmp_path / "stamp.fits"
    _write_bad(path, kind)
    with pytest.raises(StampError) as info:
        read_stamp(path)
    line = info.value.one_line()
    assert str(path) in line and "\n" not in line
    for word in words:
        assert word in line, line


# -- zeropoint tables -----------------------------------------------------------------------

@pytest.mark.parametrize("suffix, fmt", [(".ecsv", "ascii.ecsv"), (".csv", "ascii.csv"),
                                         (".fits", "fits")])
def test_zeropoint_tables_in_every_format(tmp_path, des_sample, suffix, fmt):
    sample = Table.read(des_sample / "zeropoints.ecsv")
    expected = {(int(r["expnum"]), int(r["ccdnum"])): (float(r["zeropoint"]), str(r["band"]))
                for r in sample}
    path = tmp_path / f"zp{suffix}"
    sample[["expnum", "ccdnum", "band", "zeropoint"]].write(path, format=fmt)
    assert read_zeropoints(path) == expected
    # Without the optional band column.
    path2 = tmp_path / f"zp_noband{suffix}"
    sample[["expnum", "ccdnum", "zeropoint"]].write(path2, format=fmt)
    assert read_zeropoints(path2) == {k: (v[0], None) for k, v in expected.items()}


def test_zeropoint_table_errors_name_the_file(tmp_path):
    path = tmp_path / "zp.csv"
    Table({"expnum": [1], "zeropoint": [30.0]}).write(path)
    with pytest.raises(ZeropointError) as info:
        read_zeropoints(path)
    assert str(path) in info.value.one_line() and "ccdnum" in info.value.one_line()
    with pytest.raises(ZeropointError):
        read_zeropoints(tmp_path / "missing.ecsv")


# -- folder input ---------------------------------------------------------------------------

def test_folder_input_equals_the_shipped_manifest(des_sample, manifests):
    shipped = manifests["eris"]
    built = manifest_from_folder(des_sample / "eris" / "stamps", des_sample / "psfs",
                                 des_sample / "eris" / ".." / "zeropoints.ecsv", name="eris",
                                 ra=shipped.ra, dec=shipped.dec, band=shipped.band,
                                 expnum=shipped.detection_expnum,
                                 ccdnum=shipped.detection_ccdnum)
    assert (built.detection_expnum, built.detection_ccdnum) == \
        (shipped.detection_expnum, shipped.detection_ccdnum)
    ours = {e.expnum: e for e in built.exposures}
    theirs = {e.expnum: e for e in shipped.exposures}
    assert ours.keys() == theirs.keys()
    for expnum, e in theirs.items():
        b = ours[expnum]
        assert b.stamp_origin == e.stamp_origin
        assert b.zeropoint == e.zeropoint
        assert (b.ccdnum, b.band) == (e.ccdnum, e.band)
        assert b.stamp.resolve() == e.stamp.resolve() and b.psf.resolve() == e.psf.resolve()
        assert b.target_xy == pytest.approx(e.target_xy, abs=1e-4)


def test_folder_input_missing_zeropoint_names_the_table(tmp_path, des_sample, manifests):
    shipped = manifests["eris"]
    table = Table.read(des_sample / "zeropoints.ecsv")
    table = table[table["expnum"] != 478971]
    path = tmp_path / "zp.ecsv"
    table.write(path)
    with pytest.raises(ZeropointError) as info:
        manifest_from_folder(des_sample / "eris" / "stamps", des_sample / "psfs", path,
                             name="eris", ra=shipped.ra, dec=shipped.dec, band="Y",
                             expnum=234928, ccdnum=20)
    assert "478971" in info.value.one_line() and str(path) in info.value.one_line()


# -- exposures without a usable pixel -------------------------------------------------------

ALL_MASKED = (239649, 580880)


@pytest.fixture(scope="module")
def lq28_small(manifests):
    """2014 LQ28 reduced to the detection and the two all-masked exposures (fast to load)."""
    m = manifests["2014lq28"]
    keep = tuple(e for e in m.exposures
                 if e.expnum in ALL_MASKED or e.expnum == m.detection_expnum)
    return m.with_exposures(keep)


def test_all_masked_exposures_are_dropped_with_a_warning(lq28_small):
    with pytest.warns(DroppedExposureWarning) as record:
        kept, dropped = load_exposures(lq28_small)
    assert [ex.entry.expnum for ex in kept] == [lq28_small.detection_expnum]
    assert len(dropped) == 2 and len(record) == 2
    for expnum, message in zip(ALL_MASKED, sorted(dropped)):
        assert str(expnum) in message


def test_all_masked_detection_exposure_raises(lq28_small):
    entry = next(e for e in lq28_small.exposures if e.expnum == ALL_MASKED[0])
    relabelled = replace(lq28_small, detection_expnum=entry.expnum,
                         detection_ccdnum=entry.ccdnum)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DroppedExposureWarning)
        with pytest.raises(StampError) as info:
            load_exposures(relabelled)
    assert str(entry.stamp) in info.value.one_line()
