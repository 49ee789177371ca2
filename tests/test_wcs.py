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
