"""The real pixmappy: original DES Piff files fitted at the manifest's colour, and pixmappy's
own colour-dependent test map through every conversion of `smp_model.wcs.transforms`.

Needs pixmappy (``./dev setup`` installs ``../shared/vendor/pixmappy-1.0.0.tar.gz``); the
tests that need it skip when it is absent.  The missing-pixmappy error is tested without it.
"""
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import galsim
import numpy as np
import pytest

from smp_model.wcs.transforms import (local_jacobians, local_pixel_scale, pixel_to_sky,
                                      sky_to_pixel)

REPO = Path(__file__).resolve().parent.parent


def real_pixmappy():
    """The installed pixmappy (skip without it), not a throwaway stand-in that another
    test module may have left in ``sys.modules``."""
    module = sys.modules.get("pixmappy")
    if module is not None and not hasattr(module, "PixelMapCollection"):
        del sys.modules["pixmappy"]
    return pytest.importorskip("pixmappy")


@pytest.fixture(scope="module")
def pixmappy_sample(des_sample) -> Path:
    path = des_sample.parent / "des-sample-pixmappy"
    if not path.is_dir():
        pytest.skip(f"{path} not found (original DES Piff files)")
    return path


@pytest.fixture(scope="module")
def fits_pair(pixmappy_sample, des_sample):
    """The same detection fitted from the original files (pixmappy WCS) and from the
    galsim-native sample."""
    real_pixmappy()
    from smp_model import DetectionPhotometry
    original = DetectionPhotometry(pixmappy_sample / "2014lq28.toml")
    native = DetectionPhotometry(des_sample / "2014lq28" / "detection.toml")
    return original, native


def _by_expnum(phot):
    return {ex.entry.expnum: (ex, xy)
            for ex, xy in zip(phot.scene.exposures, phot.scene.grid_xy)}


def test_original_files_place_every_source_where_the_native_sample_does(fits_pair):
    original, native = fits_pair
    nat = _by_expnum(native)
    assert len(original.scene.exposures) == 9
    worst = 0.0
    for expnum, (ex, (gx, gy)) in _by_expnum(original).items():
        ex_n, (gx_n, gy_n) = nat[expnum]
        assert type(ex.psf.wcs).__module__.split(".")[0] == "pixmappy"
        assert ex.color_gi == pytest.approx(0.61)
        worst = max(worst, np.max(np.abs(np.subtract(ex.target_xy, ex_n.target_xy))),
                    np.max(np.abs(gx - gx_n)), np.max(np.abs(gy - gy_n)))
    assert worst <= 1e-3
    a, b = original.fit_single(), native.fit_single()
    assert abs(a.flux - b.flux) <= 0.002 * b.flux_err
    assert a.flux_err == pytest.approx(b.flux_err, rel=1e-4)


def test_the_colour_moves_sources_by_the_documented_amount(fits_pair):
    """At the colour stored in the pickles (0) the target moves by 0.01-0.03 px: the
    comparison above would fail if the colour were not passed."""
    original, _ = fits_pair
    for ex in original.scene.exposures:
        wcs = ex.psf.wcs
        x0, y0 = map(float, sky_to_pixel(wcs, original.manifest.ra, original.manifest.dec,
                                         color=0.0))
        shift = np.hypot(x0 - ex.target_xy[0], y0 - ex.target_xy[1])
        assert 0.005 < shift < 0.05
        # the WCS's own default colour is the pickled 0
        xd, yd = map(float, sky_to_pixel(wcs, original.manifest.ra, original.manifest.dec))
        assert (xd, yd) == pytest.approx((x0, y0), abs=1e-8)
        ra, dec = pixel_to_sky(wcs, *ex.target_xy, color=0.61)
        assert float(ra) == pytest.approx(original.manifest.ra, abs=1e-10)
        assert float(dec) == pytest.approx(original.manifest.dec, abs=1e-10)


def _vendored_pixmappy(des_sample) -> Path:
    path = des_sample.parent / "vendor" / "pixmappy-1.0.0.tar.gz"
    if not path.is_file():
        pytest.skip(f"{path} not found (pixmappy's test map)")
    return path


@pytest.fixture(scope="module")
def colour_map(des_sample, tmp_path_factory):
    """pixmappy's colour-dependent test map (``tests/input/complex_wcs.astro``, read from the
    vendored archive) and its reference table (x, y, colour, RA, Dec)."""
    pixmappy = real_pixmappy()
    folder = tmp_path_factory.mktemp("pixmappy-test-map")
    with tarfile.open(_vendored_pixmappy(des_sample)) as archive:
        for name in ("complex_wcs.astro", "complex_wcs.results"):
            member = archive.extractfile(f"pixmappy-1.0.0/tests/input/{name}")
            (folder / name).write_bytes(member.read())
    reference = np.genfromtxt(folder / "complex_wcs.results", names=True)
    wcs = pixmappy.GalSimWCS(yaml_file=str(folder / "complex_wcs.astro"), wcs_name="TEST/N1",
                             cache=False)
    return wcs, reference


def test_colour_dependent_map_needs_the_colour(colour_map):
    wcs, ref = colour_map
    with pytest.raises(Exception, match="ColorTerm requires non-null c"):
        pixel_to_sky(wcs, ref["xpix"][0], ref["ypix"][0])


def test_colour_dependent_map_through_every_conversion(colour_map):
    wcs, ref = colour_map
    for row in ref:
        x, y, c = row["xpix"], row["ypix"], row["color"]
        ra, dec = pixel_to_sky(wcs, x, y, color=c)
        # the reference table has 7 decimals (0.2 mas)
        assert float(ra) == pytest.approx(row["RA"], abs=6e-8)
        assert float(dec) == pytest.approx(row["Dec"], abs=6e-8)
        bx, by = sky_to_pixel(wcs, ra, dec, color=c)
        assert (float(bx), float(by)) == pytest.approx((x, y), abs=1e-8)
        jac = local_jacobians(wcs, x, y, color=c)[0]
        np.testing.assert_allclose(jac, wcs.jacobian(galsim.PositionD(x, y), color=c)
                                   .getMatrix(), rtol=0, atol=1e-9)
        assert local_pixel_scale(wcs, x, y, color=c) == pytest.approx(
            np.sqrt(abs(np.linalg.det(jac))), rel=1e-9)
    # Two rows share a pixel at colours 0 and 1: the colour moves the sky position by
    # tens of mas, and the inverse follows it.
    same = ref[:2]
    ra0, dec0 = pixel_to_sky(wcs, same["xpix"][0], same["ypix"][0], color=0.0)
    x1, y1 = sky_to_pixel(wcs, ra0, dec0, color=1.0)
    assert np.hypot(x1 - same["xpix"][0], y1 - same["ypix"][0]) > 0.01


def test_psf_profile_jacobian_uses_the_colour(colour_map):
    """A PSF seen through the colour-dependent map: drawing needs the colour too."""
    from smp_model.psf.models import GalsimPSF
    wcs, ref = colour_map
    x, y = ref["xpix"][2], ref["ypix"][2]
    with pytest.raises(Exception, match="ColorTerm"):
        GalsimPSF(galsim.Gaussian(fwhm=1.0), wcs).pixel_profile(x, y)
    profile = GalsimPSF(galsim.Gaussian(fwhm=1.0), wcs, color=0.5).pixel_profile(x, y)
    assert profile.flux == pytest.approx(1.0)


def test_cli_without_pixmappy_says_how_to_install_it(pixmappy_sample):
    """With pixmappy not importable, ``smp fit`` on the original files exits 2 with one line
    saying what to install."""
    code = ("import sys; sys.modules['pixmappy'] = None; "
            "from smp_model.cli.command import main; sys.exit(main(sys.argv[1:]))")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code, "fit",
                             str(pixmappy_sample / "2014lq28.toml"), "--json", "--quiet"],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("smp: error: ")
    assert "pixmappy is not installed" in lines[0]
    assert "pip install git+https://github.com/gbernstein/pixmappy" in lines[0]


def test_per_exposure_colour_overrides_the_detection_colour(pixmappy_sample, tmp_path):
    real_pixmappy()
    from dataclasses import replace

    from smp_model.inputs.manifest import DetectionManifest
    from smp_model.scene.exposures import load_exposure
    manifest = DetectionManifest.read(pixmappy_sample / "2014lq28.toml")
    entry = replace(manifest.detection_exposure, color_gi=0.0)
    changed = manifest.with_exposures((entry,))
    path = changed.write(tmp_path / "m.toml")
    again = DetectionManifest.read(path)
    assert again.exposures[0].color_gi == 0.0 and again.color_gi == pytest.approx(0.61)
    ex = load_exposure(again.exposures[0], again)
    assert ex.color_gi == 0.0 and ex.psf.color == 0.0
    expected = sky_to_pixel(ex.psf.wcs, manifest.ra, manifest.dec, color=0.0)
    assert ex.target_xy == pytest.approx(tuple(map(float, expected)), abs=1e-8)
    at_061 = load_exposure(manifest.detection_exposure, manifest)
    assert np.hypot(*np.subtract(ex.target_xy, at_061.target_xy)) > 0.005
