"""`smp_model.psf.piff_io` reads what `piff.PSF.read` reads, on every Piff file of the sample."""

import warnings

import fitsio
import galsim
import numpy as np
import piff
import pytest

from smp_model.psf.piff_io import PiffFile, _has_wide_strings, read_piff


@pytest.fixture(scope="module")
def piff_files(des_sample):
    files = sorted((des_sample / "psfs").glob("*/*piff*.fits"))
    assert len(files) >= 20, "the sample should hold a Piff file per exposure"
    return files


def test_wide_string_tables_read_as_fitsio_reads_them(piff_files):
    seen = 0
    for path in piff_files:
        with PiffFile(path) as ours, fitsio.FITS(str(path)) as theirs:
            for name in ours.extnames:
                if not name or not _has_wide_strings(theirs[name]):
                    continue
                seen += 1
                expected, got = theirs[name].read(), ours[name].read()
                assert got.dtype == expected.dtype, (path.name, name)
                for column in expected.dtype.names:
                    np.testing.assert_array_equal(got[column], expected[column],
                                                  err_msg=f"{path.name}[{name}].{column}")
    assert seen >= len(piff_files)   # every DES file stores its WCS this way


def test_psf_and_wcs_equal_piffs_own_reader(piff_files):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", galsim.GalSimDeprecationWarning)
        for path in piff_files:
            expected, got = piff.PSF.read(str(path)), read_piff(path)
            assert type(got) is type(expected)
            assert list(got.wcs) == list(expected.wcs)
            chip = next(iter(expected.wcs))
            for x, y in [(40.2, 60.7), (1000.5, 2000.25), (2000.0, 4000.0)]:
                pos = galsim.PositionD(x, y)
                assert got.wcs[chip].toWorld(pos) == expected.wcs[chip].toWorld(pos)
                np.testing.assert_array_equal(got.draw(x, y, chipnum=chip).array,
                                              expected.draw(x, y, chipnum=chip).array)
            assert len(got.stars) == len(expected.stars)


def test_a_fit_reads_no_stars_and_draws_the_same(piff_files):
    """What the fit reads (``stars=False``) draws what Piff's reader draws."""
    from smp_model.psf.models import load_psf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", galsim.GalSimDeprecationWarning)
        for path in piff_files[:4]:
            expected, got = piff.PSF.read(str(path)), load_psf(path, stars=False).psf
            assert expected.stars and getattr(got, "stars", None) is None
            chip = next(iter(expected.wcs))
            for x, y in [(40.2, 60.7), (1000.5, 2000.25)]:
                np.testing.assert_array_equal(got.draw(x, y, chipnum=chip).array,
                                              expected.draw(x, y, chipnum=chip).array)


def test_a_galsim_wcs_map_skips_piffs_deepcopy_probe(piff_files, monkeypatch):
    """Piff deep-copies every WCS map it reads to detect a pixmappy map that needs
    repair, and a DES RaDecFunction's copy recompiles its function; the sample's galsim
    maps are read without it (and still equal Piff's, above)."""
    import piff.readers

    def refuse(obj, memo=None):
        raise AssertionError("Piff's deepcopy probe ran")

    monkeypatch.setattr(piff.readers.copy, "deepcopy", refuse)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", galsim.GalSimDeprecationWarning)
        psf = read_piff(piff_files[0], stars=False)
    assert type(next(iter(psf.wcs.values()))).__name__ == "RaDecFunction"
