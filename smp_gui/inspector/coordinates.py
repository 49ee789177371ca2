"""The panels' coordinates, in one place (tested), and the cursor readout that names a
point in each of them.

Stamp coordinates ``(u, v)`` are stamp array coordinates with pixel centres at integers.
Array element ``[j, i]`` is the unit square centred on ``(u, v) = (i, j)`` (x to the
right, y up: origin lower, as the published figures), so CCD pixel ``(x, y)`` (1-indexed,
centres at integers) is at ``(x - origin[0], y - origin[1])`` where ``origin`` is the CCD
pixel of ``[0, 0]``.  Sky positions are ICRS degrees.
"""
from __future__ import annotations

import math

import numpy as np
from astropy.coordinates import Angle
from PyQt6.QtCore import QRectF
from PyQt6.QtGui import QTransform

from smp_model.fit.panels import PANEL_KEYS, ExposurePanels

__all__ = ["EMPTY_READOUT", "READOUT_NAMES", "affine_transform", "ccd_to_view", "pixel_rect",
           "readout_text", "sexagesimal", "view_to_ccd", "view_to_pixel"]

# The panels' values in the readout, in PANEL_KEYS order.
READOUT_NAMES = ("I", "M", "I-B", "I-S", "R")

# Three blank lines: the readout keeps its height while it says nothing.
EMPTY_READOUT = " \n \n "


def ccd_to_view(x: float, y: float, origin: tuple[int, int]) -> tuple[float, float]:
    """1-indexed CCD position -> panel view coordinates (= stamp array coordinates)."""
    return float(x) - origin[0], float(y) - origin[1]


def view_to_ccd(u: float, v: float, origin: tuple[int, int]) -> tuple[float, float]:
    """Panel view coordinates -> 1-indexed CCD position."""
    return float(u) + origin[0], float(v) + origin[1]


def view_to_pixel(u: float, v: float) -> tuple[int, int]:
    """Stamp array indices (i, j) of the pixel under view point (u, v)."""
    return int(math.floor(u + 0.5)), int(math.floor(v + 0.5))


def pixel_rect(shape: tuple[int, int]) -> QRectF:
    """Where an (ny, nx) array goes in stamp coordinates: pixel centres at integers."""
    ny, nx = shape
    return QRectF(-0.5, -0.5, nx, ny)


def affine_transform(affine) -> QTransform:
    """The QTransform of a (2, 3) affine map ``[x', y'] = A @ [x, y] + b``."""
    a = np.asarray(affine, float)
    return QTransform(a[0, 0], a[1, 0], a[0, 1], a[1, 1], a[0, 2], a[1, 2])


def sexagesimal(ra_deg: float, dec_deg: float) -> str:
    """RA as hh:mm:ss.sss and Dec as ±dd:mm:ss.ss."""
    ra = Angle(ra_deg, "deg").to_string(unit="hour", sep=":", precision=3, pad=True)
    dec = Angle(dec_deg, "deg").to_string(unit="deg", sep=":", precision=2, pad=True,
                                          alwayssign=True)
    return f"{ra} {dec}"


def readout_text(panels: ExposurePanels, u: float, v: float, pixel_to_sky=None) -> str:
    """Three lines that fit a 1280 px window: CCD x, y, stamp i, j, sigma and mask bits;
    RA/Dec (degrees and sexagesimal); every panel's value.

    Parameters
    ----------
    panels : smp_model.fit.panels.ExposurePanels
        The shown exposure's panels.
    u, v : float
        Stamp coordinates of the point.
    pixel_to_sky : callable, optional
        ``(x, y) -> (ra, dec)`` for 1-indexed CCD pixels, degrees; None: no sky line.

    Returns
    -------
    str
    """
    i, j = view_to_pixel(u, v)
    x, y = view_to_ccd(u, v, panels.origin)
    ny, nx = panels["image"].shape
    position = [f"CCD x={x:.2f} y={y:.2f}", f"stamp i={i} j={j}"]
    sky = ""
    if pixel_to_sky is not None:
        ra, dec = pixel_to_sky(x, y)
        sky = (f"RA={float(ra):.6f} Dec={float(dec):+.6f} "
               f"({sexagesimal(float(ra), float(dec))})")
    if 0 <= i < nx and 0 <= j < ny:
        sigma = panels.sigma[j, i]
        position.append(f"σ={sigma:.4g}" if np.isfinite(sigma) else "σ=∞ (unused)")
        position.append(f"mask=0x{int(panels.mask_bits[j, i]):x}")
        values = "  ".join(f"{short}={panels[key][j, i]:.4g}" for key, short in
                           zip(PANEL_KEYS, READOUT_NAMES))
    else:
        values = "outside the stamp"
    return "\n".join((" | ".join(position), sky, values))
