"""smp_model.wcs.transforms against analytic truths and astropy's coordinate frames."""

import astropy.units as u
import galsim
import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from smp_model.wcs.transforms import pixel_to_sky, separation_and_position_angle, sky_to_pixel


@pytest.mark.parametrize("dra_arcsec, ddec_arcsec, pa", [
    (0.0, 1.0, 0.0), (1.0, 0.0, 90.0), (0.0, -1.0, 180.0), (-1.0, 0.0, 270.0)])
def test_position_angle_is_east_of_north(dra_arcsec, ddec_arcsec, pa):
    ra, dec = 30.0, 0.0      # on the equator RA offsets are true angles
    sep, angle = separation_and_position_angle(ra, dec, ra + dra_arcsec / 3600.0,
                                               dec + ddec_arcsec / 3600.0)
    assert sep == pytest.approx(1.0, rel=1e-9)
    assert (angle - pa + 180.0) % 360.0 - 180.0 == pytest.approx(0.0, abs=1e-6)


def test_separation_and_position_angle_equal_skycoords():
    rng = np.random.default_rng(3)
    for _ in range(20):
        ra1, dec1 = rng.uniform(0, 360), rng.uniform(-80, 80)
        ra2, dec2 = ra1 + rng.normal(0, 1e-3), dec1 + rng.normal(0, 1e-3)
        c1, c2 = SkyCoord(ra1 * u.deg, dec1 * u.deg), SkyCoord(ra2 * u.deg, dec2 * u.deg)
        sep, angle = separation_and_position_angle(ra1, dec1, ra2, dec2)
        assert sep == pytest.approx(c1.separation(c2).arcsec, rel=1e-9)
        assert angle == pytest.approx(c1.position_angle(c2).deg % 360.0, abs=1e-7)


def test_newton_inverse_round_trips_a_wcs_without_inverse():
    """A galsim RaDecFunction has no inverse: sky_to_pixel iterates, from any guess."""
    tan = galsim.FitsWCS(header={
        "CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": 30.0, "CRVAL2": -3.0,
        "CRPIX1": 1024.5, "CRPIX2": 2048.5, "CD1_1": -7.3e-5, "CD1_2": 1e-6,
        "CD2_1": 1.2e-6, "CD2_2": 7.3e-5})
    wcs = galsim.RaDecFunction(lambda x, y: tan._radec(x, y))
    x = np.array([10.0, 1000.3, 2040.7])
    y = np.array([20.0, 3000.9, 4090.1])
    ra, dec = pixel_to_sky(wcs, x, y)
    for guess in [None, (x[0] + 3.0, y[0] - 2.0)]:
        bx, by = sky_to_pixel(wcs, ra, dec, guess=guess)
        np.testing.assert_allclose(bx, x, atol=1e-7)
        np.testing.assert_allclose(by, y, atol=1e-7)


@pytest.mark.parametrize("dec0", [89.99, 89.995, 89.999, -89.995])
def test_newton_inverse_near_a_pole(dec0):
    """Issue 27: within a minute of arc of a pole a DECam CCD has the pole on it, and the
    inverse used to be refused as not converging.  Positions all over the CCD, of a WCS
    without an inverse (started from the CCD centre), come back to 1e-5 px."""
    tan = galsim.FitsWCS(header={
        "CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": 120.0, "CRVAL2": dec0,
        "CRPIX1": 1024.5, "CRPIX2": 2048.5, "CD1_1": -6.6e-5, "CD1_2": 3.1e-5,
        "CD2_1": 3.1e-5, "CD2_2": 6.6e-5})
    wcs = galsim.RaDecFunction(lambda x, y: tan._radec(x, y))
    rng = np.random.default_rng(4)
    x, y = rng.uniform(1, 2048, 50), rng.uniform(1, 4096, 50)
    ra, dec = pixel_to_sky(wcs, x, y)
    assert np.ptp(ra) > 180   # the CCD spans every RA: the pole is on it
    bx, by = sky_to_pixel(wcs, ra, dec)
    np.testing.assert_allclose(bx, x, atol=1e-5)
    np.testing.assert_allclose(by, y, atol=1e-5)


@pytest.mark.parametrize("dec0", [89.995, -89.993])
def test_fit_near_a_pole(dec0, tmp_path, capsys):
    """``smp fit`` of a synthetic detection pointed at |Dec| >= 89.99 gives the same flux
    as the same detection on the equator (a rigid move of the sky changes nothing)."""
    import json

    from helpers import make_synthetic_detection

    from smp_model.cli.command import main
    fluxes = []
    for dec in (2.0, dec0):
        det = make_synthetic_detection(tmp_path / str(dec), pointing=(150.0, dec))
        assert main(["fit", str(det.manifest_path), "--quiet", "--json"]) == 0
        fluxes.append(json.loads(capsys.readouterr().out))
    equator, pole = fluxes
    assert abs(pole["dec"]) > 89.99
    assert pole["flux"] == pytest.approx(equator["flux"], rel=1e-3)
    assert abs(pole["flux"] - det.target_flux) < 4 * pole["flux_err"]
