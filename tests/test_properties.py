"""Property-based tests of the readers (issue 6): whatever a user hands them, the readers
either load it or raise the documented `SMPError` subclass, never anything else.

* `DetectionManifest.read`: random bytes and text, and TOML documents made from the real
  sample's manifest by dropping, retyping and mutating keys -> `ManifestError`.
* `read_stamp`: random HDU sets, shapes, dtypes and NaN/inf values, plus random cuts and
  byte flips of a real stamp -> `StampError`.
* `load_psf`: random bytes, random FITS files with the HDU names it looks for, byte flips
  of a real Piff file -> `PSFError` (or `MissingDependencyError`).
"""
from __future__ import annotations

import copy
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tomli_w
from astropy.io import fits
from badinputs import manifest_doc, write_hdus
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from smp_model.errors import ManifestError, MissingDependencyError, PSFError, StampError
from smp_model.inputs.manifest import DetectionManifest
from smp_model.inputs.stamps import read_stamp
from smp_model.psf.models import load_psf

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def scratch() -> Path:
    """One folder for all examples of the module (hypothesis re-runs a test body many
    times within one function-scoped fixture, so each example overwrites its file)."""
    with tempfile.TemporaryDirectory(prefix="smp-properties-") as folder:
        yield Path(folder)


# -- manifests -------------------------------------------------------------------------

toml_scalars = st.one_of(
    st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(), st.text(max_size=20), st.just(""))
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(min_size=1, max_size=8), inner,
                                            max_size=4)),
    max_leaves=8)


def _tables(doc: dict) -> list[dict]:
    """Every table of a manifest document (top level, [detection], each [[exposures]])."""
    tables = [doc]
    if isinstance(doc.get("detection"), dict):
        tables.append(doc["detection"])
    if isinstance(doc.get("exposures"), list):
        tables += [e for e in doc["exposures"] if isinstance(e, dict)]
    return tables


@st.composite
def mutated_manifests(draw, base: dict) -> dict:
    """``base`` after 1-4 edits: drop a key, give it a value of another type, nudge a
    number, or duplicate/drop an exposure."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 4))):
        tables = _tables(doc)
        table = tables[draw(st.integers(0, len(tables) - 1))]
        action = draw(st.sampled_from(["drop", "retype", "nudge", "exposures"]))
        keys = sorted(table)
        if action == "exposures" and isinstance(doc.get("exposures"), list) \
                and doc["exposures"]:
            exposures = doc["exposures"]
            n = draw(st.integers(0, len(exposures) - 1))
            if draw(st.booleans()):
                exposures.append(copy.deepcopy(exposures[n]))
            else:
                del exposures[n]
        elif not keys:
            continue
        else:
            key = draw(st.sampled_from(keys))
            if action == "drop":
                del table[key]
            elif action == "retype":
                table[key] = draw(toml_values)
            elif isinstance(table[key], bool):
                table[key] = not table[key]
            elif isinstance(table[key], (int, float)):
                table[key] = table[key] + draw(st.sampled_from([-1, 1, 0.5, 1e300]))
            elif isinstance(table[key], str):
                table[key] = draw(st.sampled_from(["", "x", table[key] * 2, "../" + table[key]]))
    return doc


@pytest.fixture(scope="module")
def base_manifest_doc(des_sample) -> dict:
    return manifest_doc(des_sample)


def assert_reads_or_manifest_error(path: Path) -> None:
    try:
        manifest = DetectionManifest.read(path)
    except ManifestError as exc:
        assert "\n" not in exc.one_line() and str(path) in exc.one_line()
        return
    # Loaded: what it holds must be usable as documented.
    assert manifest.exposures and manifest.detection_exposure in manifest.exposures
    assert math.isfinite(manifest.ra) and math.isfinite(manifest.dec)
    for e in manifest.exposures:
        assert e.stamp.is_absolute() and e.psf.is_absolute()
        assert all(isinstance(v, int) for v in e.stamp_origin)


def test_mutated_manifests(base_manifest_doc, scratch):
    path = scratch / "detection.toml"

    @SETTINGS
    @given(mutated_manifests(base_manifest_doc))
    def check(doc):
        path.write_text(tomli_w.dumps(doc))
        assert_reads_or_manifest_error(path)

    check()


@SETTINGS
@given(data=st.one_of(st.binary(max_size=400),
                      st.text(max_size=400).map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_random_bytes_as_manifest(data, scratch):
    path = scratch / "random.toml"
    path.write_bytes(data)
    assert_reads_or_manifest_error(path)


@SETTINGS
@given(doc=st.dictionaries(st.sampled_from(["format", "name", "ra", "dec", "band", "color_gi",
                                            "detection", "exposures", "other"]),
                           toml_values, max_size=9))
def test_random_documents_as_manifest(doc, scratch):
    path = scratch / "random_doc.toml"
    path.write_text(tomli_w.dumps(doc))
    assert_reads_or_manifest_error(path)


# -- stamps ----------------------------------------------------------------------------

DTYPES = [np.float32, np.float64, np.int16, np.int32, np.int64, np.uint8]


@st.composite
def hdu_arrays(draw, shape=None):
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    if shape is None:
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6))
    if dtype.kind == "f":
        elements = st.floats(allow_nan=True, allow_infinity=True, width=8 * dtype.itemsize)
    else:
        elements = st.integers(int(np.iinfo(dtype).min), int(np.iinfo(dtype).max))
    return draw(hnp.arrays(dtype, shape, elements=elements))


@st.composite
def stamp_hdus(draw) -> dict:
    """A random set of HDUs: mostly SCI/MSK/WGT, sometimes of one shape, sometimes not."""
    names = draw(st.lists(st.sampled_from(["SCI", "MSK", "WGT", "sci", "VAR", "PRIMARYX"]),
                          min_size=0, max_size=4, unique_by=str.upper))
    common = draw(st.one_of(st.none(), hnp.array_shapes(min_dims=2, max_dims=2, min_side=1,
                                                        max_side=6)))
    return {name: draw(hdu_arrays(common if draw(st.booleans()) else None)) for name in names}


def assert_reads_or_stamp_error(path: Path) -> None:
    try:
        stamp = read_stamp(path)
    except StampError as exc:
        assert "\n" not in exc.one_line() and str(path) in exc.one_line()
        return
    assert stamp.sci.ndim == 2 and stamp.sci.shape == stamp.msk.shape == stamp.wgt.shape
    assert np.all(np.isfinite(stamp.wgt)) and np.all(stamp.wgt[stamp.msk == 0] >= 0)
    image, weight = stamp.calibrated(30.0)
    assert np.all(np.isfinite(image)) and np.all(np.isfinite(weight))


def test_random_stamps(scratch):
    path = scratch / "stamp.fits"

    @SETTINGS
    @given(stamp_hdus())
    def check(hdus):
        try:
            write_hdus(path, hdus)
        except (ValueError, TypeError, OSError):
            assume(False)     # astropy cannot write this array: not an input anyone has
        assert_reads_or_stamp_error(path)

    check()


def test_damaged_real_stamps(des_sample, scratch):
    real = (des_sample / "eris" / "stamps" / "eris_234928.fits").read_bytes()
    path = scratch / "damaged.fits"

    @SETTINGS
    @given(cut=st.integers(0, len(real)),
           flips=st.lists(st.tuples(st.integers(0, len(real) - 1), st.integers(0, 255)),
                          max_size=6))
    def check(cut, flips):
        data = bytearray(real)
        for position, value in flips:
            data[position] = value
        path.write_bytes(bytes(data[:cut]) if cut < len(real) else bytes(data))
        assert_reads_or_stamp_error(path)

    check()


# -- PSFs ------------------------------------------------------------------------------

def assert_loads_or_psf_error(path: Path) -> None:
    try:
        load_psf(path)
    except (PSFError, MissingDependencyError) as exc:
        assert "\n" not in exc.one_line() and str(path) in exc.one_line()


@SETTINGS
@given(data=st.binary(max_size=6000))
def test_random_bytes_as_psf(data, scratch):
    path = scratch / "random_piff.fits"
    path.write_bytes(data)
    assert_loads_or_psf_error(path)


@st.composite
def psf_like_fits(draw) -> fits.HDUList:
    """FITS files with the HDU names `load_psf` dispatches on and random contents."""
    primary = fits.PrimaryHDU()
    if draw(st.booleans()):   # a plausible TAN WCS, sometimes with a bad value
        for key, value in [("CTYPE1", "RA---TAN"), ("CTYPE2", "DEC--TAN"), ("CRVAL1", 10.0),
                           ("CRVAL2", -5.0), ("CRPIX1", 1.0), ("CRPIX2", 1.0),
                           ("CD1_1", -7e-5), ("CD1_2", 0.0), ("CD2_1", 0.0),
                           ("CD2_2", draw(st.sampled_from([7e-5, 0.0])))]:
            primary.header[key] = value
    hdus = [primary]
    name = draw(st.sampled_from(["PIXPSF", "psf", "OTHER"]))
    if name == "psf":
        columns = [fits.Column(c, "D", array=[draw(st.floats())])
                   for c in draw(st.lists(st.sampled_from(["type", "model", "interp", "x"]),
                                          unique=True, max_size=3))]
        hdus.append(fits.BinTableHDU.from_columns(columns or [fits.Column("x", "D",
                                                                          array=[0.0])],
                                                  name=name))
    else:
        shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6))
        if draw(st.booleans()):   # a plausible PSF image
            image = draw(hnp.arrays(np.float64, shape, elements=st.floats(0.0, 1.0)))
        else:
            image = draw(hdu_arrays(shape))
        hdu = fits.ImageHDU(image, name=name)
        oversampling = draw(st.sampled_from([None, -2, 0, 1, 8, 2.5, "eight"]))
        if oversampling is not None:
            hdu.header["OVERSAMP"] = oversampling
        hdus.append(hdu)
    return fits.HDUList(hdus)


def test_random_psf_like_files(scratch):
    path = scratch / "psf_like.fits"

    @settings(SETTINGS, max_examples=60)
    @given(psf_like_fits())
    def check(hdul):
        try:
            hdul.writeto(path, overwrite=True)
        except (ValueError, TypeError, OSError):
            assume(False)
        assert_loads_or_psf_error(path)

    check()


def test_damaged_real_piff(des_sample, scratch):
    real = (des_sample / "psfs" / "234928" / "234928_20_piff.fits").read_bytes()
    path = scratch / "damaged_piff.fits"

    # Piff reads take ~0.1 s each: fewer examples.
    @settings(SETTINGS, max_examples=25)
    @given(cut=st.integers(0, len(real)),
           flips=st.lists(st.tuples(st.integers(0, len(real) - 1), st.integers(0, 255)),
                          max_size=4))
    def check(cut, flips):
        data = bytearray(real)
        for position, value in flips:
            data[position] = value
        path.write_bytes(bytes(data[:cut]) if cut < len(real) else bytes(data))
        assert_loads_or_psf_error(path)

    check()
