"""The DECam focal plane: which CCD of an exposure, and which pixel, sees a sky position.

The layout (`resources/decam_ccd_layout.ecsv`, source cited in its metadata) gives the
focal-plane centre (mm) of each of the 62 science CCDs (2048 x 4096 pixels of 15 micron).
An exposure's pointing (ra0, dec0, ICRS degrees) is the pole of a gnomonic projection in
which a focal-plane point (x_mm, y_mm) lies at (xi, eta) = (y_mm, -x_mm) x 17.51 arcsec/mm
(xi east, eta north): CCD pixel x runs south, pixel y east.  This ignores the optical
distortion and each exposure's rotation; on the 26 DES exposures of the sample it places
CCD centres within 4 arcsec (15 px) of the DES astrometric solutions, so positions closer
than that to a CCD edge need the exposure's own WCS (see `smp_model.inputs.discovery`).

CCD pixel coordinates are 1-indexed (galsim/FITS): a CCD covers 0.5 <= x <= 2048.5,
0.5 <= y <= 4096.5.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
from astropy.io import fits
from astropy.table import Table

from .transforms import sky_from_tangent, tangent_offsets

__all__ = ["LAYOUT_RESOURCE", "FocalPlane", "ccd_positions", "ccd_tan_header", "focal_plane",
           "load_ccd_layout", "locate", "on_ccd", "pointing_for"]

LAYOUT_RESOURCE = "decam_ccd_layout.ecsv"


@lru_cache(maxsize=1)
def load_ccd_layout() -> Table:
    """The layout table (one row per science CCD: ccdnum, detpos, x_mm, y_mm)."""
    with resources.files("smp_model.resources").joinpath(LAYOUT_RESOURCE).open("r") as f:
        return Table.read(f.read(), format="ascii.ecsv")


@dataclass(frozen=True)
class FocalPlane:
    """Geometry constants of the layout file."""

    ccdnum: np.ndarray
    x_mm: np.ndarray
    y_mm: np.ndarray
    pixel_mm: float
    nx: int
    ny: int
    plate_scale: float      # arcsec per mm

    @property
    def pixel_scale(self) -> float:
        """arcsec per pixel."""
        return self.pixel_mm * self.plate_scale

    def ccd_centre_pixel(self) -> tuple[float, float]:
        return (self.nx + 1) / 2.0, (self.ny + 1) / 2.0


@lru_cache(maxsize=1)
def focal_plane() -> FocalPlane:
    t = load_ccd_layout()
    return FocalPlane(ccdnum=np.asarray(t["ccdnum"], int), x_mm=np.asarray(t["x_mm"], float),
                      y_mm=np.asarray(t["y_mm"], float), pixel_mm=float(t.meta["pixel_mm"]),
                      nx=int(t.meta["nx"]), ny=int(t.meta["ny"]),
                      plate_scale=float(t.meta["plate_scale_arcsec_per_mm"]))


def ccd_positions(ra, dec, ra0: float, dec0: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For sky positions (degrees) and one pointing: pixel (x, y) on every CCD.

    Returns ``(ccdnum (C,), x (N, C), y (N, C))``; a position lies on CCD ``c`` when its
    (x, y) are within ``0.5 .. nx + 0.5`` and ``0.5 .. ny + 0.5`` (`on_ccd`).
    """
    fp = focal_plane()
    u, v = tangent_offsets(np.atleast_1d(ra), np.atleast_1d(dec), ra0, dec0)
    xi, eta = -u, v                        # galsim's u points west
    x_mm, y_mm = -eta / fp.plate_scale, xi / fp.plate_scale
    cx, cy = fp.ccd_centre_pixel()
    x = cx + (x_mm[:, None] - fp.x_mm[None, :]) / fp.pixel_mm
    y = cy + (y_mm[:, None] - fp.y_mm[None, :]) / fp.pixel_mm
    return fp.ccdnum, x, y


def on_ccd(x, y, margin: float = 0.0) -> np.ndarray:
    """True where 1-indexed (x, y) lies on a CCD (pixel edges included), grown by
    ``margin`` pixels (negative: shrunk)."""
    fp = focal_plane()
    x, y = np.asarray(x), np.asarray(y)
    return ((x >= 0.5 - margin) & (x <= fp.nx + 0.5 + margin)
            & (y >= 0.5 - margin) & (y <= fp.ny + 0.5 + margin))


def locate(ra: float, dec: float, ra0: float, dec0: float, margin: float = 0.0
           ) -> list[tuple[int, float, float]]:
    """``[(ccdnum, x, y), ...]`` of the CCDs of a pointing whose footprint (grown by
    ``margin`` px) contains (ra, dec); at most one for ``margin`` below half a CCD gap."""
    ccds, x, y = ccd_positions(ra, dec, ra0, dec0)
    hit = np.flatnonzero(on_ccd(x[0], y[0], margin))
    return [(int(ccds[i]), float(x[0, i]), float(y[0, i])) for i in hit]


def ccd_tan_header(ra0: float, dec0: float, ccdnum: int) -> fits.Header:
    """A TAN FITS WCS (1-indexed CRPIX) of one CCD of a pointing in the layout model: what
    the simulator writes with its full CCD images."""
    fp = focal_plane()
    row = int(np.flatnonzero(fp.ccdnum == ccdnum)[0])
    cx, cy = fp.ccd_centre_pixel()
    scale = fp.pixel_scale / 3600.0
    h = fits.Header()
    h["WCSAXES"] = 2
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CUNIT1"], h["CUNIT2"] = "deg", "deg"
    h["CRVAL1"], h["CRVAL2"] = float(ra0), float(dec0)
    # the pointing's pixel: where (x_mm, y_mm) = (0, 0)
    h["CRPIX1"] = cx - fp.x_mm[row] / fp.pixel_mm
    h["CRPIX2"] = cy - fp.y_mm[row] / fp.pixel_mm
    # xi (east, FITS intermediate x) grows with pixel y; eta (north) falls with pixel x
    h["CD1_1"], h["CD1_2"] = 0.0, scale
    h["CD2_1"], h["CD2_2"] = -scale, 0.0
    h["CCDNUM"] = ccdnum
    return h


def pointing_for(ra: float, dec: float, ccdnum: int, x: float, y: float
                 ) -> tuple[float, float]:
    """The pointing (ra0, dec0) that puts sky position (ra, dec) on CCD pixel (x, y) of
    ``ccdnum`` in the layout model (for simulations and tests)."""
    fp = focal_plane()
    row = int(np.flatnonzero(fp.ccdnum == ccdnum)[0])
    cx, cy = fp.ccd_centre_pixel()
    x_mm = fp.x_mm[row] + (x - cx) * fp.pixel_mm
    y_mm = fp.y_mm[row] + (y - cy) * fp.pixel_mm
    xi, eta = y_mm * fp.plate_scale, -x_mm * fp.plate_scale
    return _solve_pointing(ra, dec, xi, eta)


def _solve_pointing(ra: float, dec: float, xi: float, eta: float) -> tuple[float, float]:
    """Pointing whose gnomonic projection puts (ra, dec) at (xi, eta) arcsec: Newton on the
    pointing, with the projection's own Jacobian by finite differences."""
    # Start: the point offset by (-xi, -eta) from (ra, dec) in its own tangent plane.
    ra0, dec0 = (float(v) for v in sky_from_tangent(xi, -eta, ra, dec))
    for _ in range(20):
        u, v = tangent_offsets(ra, dec, ra0, dec0)
        r = np.array([-float(u) - xi, float(v) - eta])
        if np.max(np.abs(r)) < 1e-7:
            break
        h = 1e-4
        jac = np.empty((2, 2))
        for k, (dra, ddec) in enumerate(((h, 0.0), (0.0, h))):
            u2, v2 = tangent_offsets(ra, dec, ra0 + dra, dec0 + ddec)
            jac[:, k] = [(-float(u2) + float(u)) / h, (float(v2) - float(v)) / h]
        step = np.linalg.solve(jac, -r)
        ra0, dec0 = ra0 + step[0], dec0 + step[1]
    return float(ra0) % 360.0, float(dec0)
