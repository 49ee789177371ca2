"""Sky <-> CCD pixel conversions for any galsim celestial WCS.

Conventions: sky positions are ICRS degrees; pixel positions are 1-indexed CCD image
coordinates (galsim/FITS), pixel centres at integers.  Tangent-plane offsets (``u, v``)
are arcsec in galsim's gnomonic projection about a reference point.

DES Piff files carry either a ``galsim.RaDecFunction`` (no inverse: we invert it with a
Newton iteration on ``toWorld`` and the local Jacobian) or, in the original files, a pickled
pixmappy ``GalSimWCS`` (a galsim ``CelestialWCS`` with its own colour-dependent inverse).

Colour: DES astrometric solutions depend on the source's g-i colour (differential chromatic
refraction, lateral colour).  Every function here takes ``color`` (g-i, magnitudes) and hands
it to galsim's ``color=`` argument, which colour-aware WCSs (pixmappy) use and all others
ignore.  ``color=None`` means the WCS's own default colour (0 in the pickled DES files; a
pixmappy map with colour terms and no default colour refuses to convert without one).
"""
from __future__ import annotations

import galsim
import numpy as np

__all__ = ["local_jacobians", "local_pixel_scale", "pixel_to_sky",
           "separation_and_position_angle", "sky_from_tangent", "sky_to_pixel",
           "tangent_offsets"]

_NEWTON_TOL_PX = 1e-9
_NEWTON_MAX_ITER = 50
_JACOBIAN_REFRESH_PX = 2.0
# Steps that stop shrinking below this are the forward map's round-off: ~1e-9 px at
# RA ~ 360 in float64 degrees, ~1e-6 px within a minute of arc of a pole (galsim's
# deprojection there loses digits).
_ROUNDOFF_PX = 1e-5


def tangent_offsets(ra_deg, dec_deg, ref_ra_deg: float, ref_dec_deg: float):
    """Gnomonic (u, v) in arcsec of sky positions about a reference point (galsim's
    convention, the one its WCS Jacobians use)."""
    ref = galsim.CelestialCoord(ref_ra_deg * galsim.degrees, ref_dec_deg * galsim.degrees)
    u, v = ref.project_rad(np.radians(np.asarray(ra_deg, float)),
                           np.radians(np.asarray(dec_deg, float)), projection="gnomonic")
    return np.degrees(u) * 3600.0, np.degrees(v) * 3600.0


def sky_from_tangent(u_arcsec, v_arcsec, ref_ra_deg: float, ref_dec_deg: float):
    """Inverse of `tangent_offsets`: sky (ra, dec) in degrees of gnomonic offsets."""
    ref = galsim.CelestialCoord(ref_ra_deg * galsim.degrees, ref_dec_deg * galsim.degrees)
    ra, dec = ref.deproject_rad(np.radians(np.asarray(u_arcsec, float) / 3600.0),
                                np.radians(np.asarray(v_arcsec, float) / 3600.0),
                                projection="gnomonic")
    return np.degrees(ra) % 360.0, np.degrees(dec)


def pixel_to_sky(wcs: galsim.BaseWCS, x, y, color: float | None = None):
    """Sky (ra, dec) in degrees of 1-indexed CCD positions (arrays allowed), for a source
    of g-i colour ``color``."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    ra, dec = wcs.xyToradec(x, y, units="deg", color=color)
    return np.asarray(ra) % 360.0, np.asarray(dec)


def sky_to_pixel(wcs: galsim.BaseWCS, ra, dec, color: float | None = None,
                 guess: tuple[float, float] | None = None):
    """1-indexed CCD (x, y) of sky positions (degrees) of a source of g-i colour ``color``;
    arrays allowed.

    Newton iterations on the forward map, vectorised over positions, converged to 1e-9 px
    (to the forward map's round-off, ~1e-6 px, within a minute of arc of a pole), started from the WCS's own inverse of the first position where it has one (galsim's
    ``radecToxy``) or else from ``guess`` (default: the image centre of a DECam CCD).
    Why not the WCS's inverse for all: pixmappy's (``toPix``) solves one position at a time
    with a generic root finder (slow for a grid of sources) and stops at its map tolerance
    (up to 5e-4 px seen on DES files); this way the result is the exact inverse of the
    forward map that places the sources, for every kind of WCS.
    """
    ra = np.asarray(ra, float)
    dec = np.asarray(dec, float)
    if ra.size == 0 or dec.size == 0:
        empty = np.zeros(np.broadcast(ra, dec).shape)
        return empty, empty.copy()
    try:
        first = wcs.radecToxy(float(ra.flat[0]), float(dec.flat[0]), units="deg",
                              color=color)
        start = (float(np.asarray(first[0]).flat[0]), float(np.asarray(first[1]).flat[0]))
    except (NotImplementedError, galsim.GalSimError):
        start = guess or (1024.5, 2048.5)
    return _newton_inverse(wcs, ra, dec, start, color)


def _newton_inverse(wcs, ra, dec, start, color=None):
    """Quasi-Newton iterations for all positions from one starting point ``start``.

    Residuals are measured in one gnomonic tangent plane, about the first target, for every
    point, with the Jacobian of pixels into that plane.  Near a celestial pole a plane per
    point would not do: the local north turns across a CCD (one within a few arcmin of the
    pole has the pole on it), so one Jacobian cannot serve every point's own plane."""
    shape = np.broadcast(ra, dec).shape
    ra, dec = np.broadcast_arrays(ra, dec)
    ra, dec = ra.ravel(), dec.ravel()
    ref = float(ra[0]), float(dec[0])
    u_target, v_target = tangent_offsets(ra, dec, *ref)
    x = np.full(ra.shape, float(start[0]))
    y = np.full(ra.shape, float(start[1]))
    # Quasi-Newton for all points with the Jacobian at the first point, refreshed only
    # after a step longer than _JACOBIAN_REFRESH_PX: over a few pixels the Jacobian of a
    # DECam WCS changes by ~1e-5 of itself, so each step then gains ~5 digits, and a
    # forward evaluation (~1 ms for DES's RaDecFunction) is all an iteration costs.
    inv_jac = None
    last_step = np.inf
    for it in range(_NEWTON_MAX_ITER):
        if inv_jac is None:
            inv_jac = np.linalg.inv(_plane_jacobian(wcs, float(x[0]), float(y[0]), ref,
                                                    color))
        u, v = tangent_offsets(*pixel_to_sky(wcs, x, y, color), *ref)
        dx, dy = inv_jac @ np.vstack([u_target - u, v_target - v])
        x += dx
        y += dy
        step = max(np.max(np.abs(dx)), np.max(np.abs(dy)))
        # Also done when the steps stop shrinking at the forward map's round-off.
        if step < _NEWTON_TOL_PX or (step < _ROUNDOFF_PX and step >= last_step):
            return x.reshape(shape), y.reshape(shape)
        if step > _JACOBIAN_REFRESH_PX or not np.isfinite(step):
            inv_jac = None
        last_step = step
    raise galsim.GalSimError(f"sky_to_pixel did not converge (last step {step:.2g} px)")


def _plane_jacobian(wcs, x: float, y: float, ref: tuple[float, float], color) -> np.ndarray:
    """d(u, v)/d(x, y) (arcsec per pixel) at CCD (x, y) into the gnomonic plane about the
    sky position ``ref`` (degrees): central differences with 1-pixel steps, as galsim's
    own local Jacobians."""
    ra, dec = pixel_to_sky(wcs, np.array([x + 1, x - 1, x, x]),
                           np.array([y, y, y + 1, y - 1]), color)
    u, v = tangent_offsets(ra, dec, *ref)
    return 0.5 * np.array([[u[0] - u[1], u[2] - u[3]], [v[0] - v[1], v[2] - v[3]]])


def separation_and_position_angle(ra1: float, dec1: float, ra2: float, dec2: float
                                  ) -> tuple[float, float]:
    """(separation in arcsec, position angle in degrees east of north, in [0, 360)) of sky
    position 2 seen from position 1 (ICRS degrees)."""
    # astropy's functions on plain radians: the same formulae as SkyCoord's methods,
    # without building coordinate frames (2.5 ms -> 0.15 ms per call, which a marker drag
    # pays on every refit).
    from astropy.coordinates import angular_separation, position_angle
    lon1, lat1, lon2, lat2 = np.radians([ra1, dec1, ra2, dec2])
    separation = np.degrees(float(angular_separation(lon1, lat1, lon2, lat2))) * 3600.0
    angle = position_angle(lon1, lat1, lon2, lat2).to_value("deg")
    return separation, float(angle) % 360.0


def local_pixel_scale(wcs: galsim.BaseWCS, x: float, y: float,
                      color: float | None = None) -> float:
    """Linear pixel scale (arcsec per pixel, sqrt of ``|det J|``) at CCD position (x, y)."""
    jac = wcs.jacobian(galsim.PositionD(x, y), color=color)
    return float(np.sqrt(abs(jac.pixelArea())))


def local_jacobians(wcs: galsim.BaseWCS, x, y, color: float | None = None) -> np.ndarray:
    """Local Jacobians d(u, v)/d(x, y) in arcsec/pixel at CCD positions (K,) -> (K, 2, 2)
    for a source of g-i colour ``color``.

    Vectorised twin of galsim's ``CelestialWCS.local`` (central differences with 1-pixel
    steps, u = -dRA cos(dec) west, v = dDec north), so it reproduces the Jacobians galsim
    and Piff use when drawing at those positions.
    """
    x = np.atleast_1d(np.asarray(x, float))
    y = np.atleast_1d(np.asarray(y, float))
    if wcs.isUniform():
        return np.broadcast_to(wcs.jacobian(color=color).getMatrix(), (x.size, 2, 2)).copy()
    if not wcs.isCelestial():
        return np.array([wcs.jacobian(galsim.PositionD(a, b), color=color).getMatrix()
                         for a, b in zip(x, y)])
    # one call for the stencil and the centres: a DES WCS costs ~0.3 ms a call
    xs = np.concatenate([x + 1, x - 1, x, x, x])
    ys = np.concatenate([y, y, y + 1, y - 1, y])
    ra, dec = wcs.xyToradec(xs, ys, units="radians", color=color)
    ra = ra.reshape(5, -1)
    dec = dec.reshape(5, -1)
    dec0 = dec[4]
    dra = lambda a, b: (a - b + np.pi) % (2 * np.pi) - np.pi   # noqa: E731
    cosdec = np.cos(dec0)
    factor = 180.0 / np.pi * 3600.0
    dudx = -0.5 * dra(ra[0], ra[1]) * cosdec * factor
    dudy = -0.5 * dra(ra[2], ra[3]) * cosdec * factor
    dvdx = 0.5 * (dec[0] - dec[1]) * factor
    dvdy = 0.5 * (dec[2] - dec[3]) * factor
    return np.stack([np.stack([dudx, dudy], -1), np.stack([dvdx, dvdy], -1)], -2)
