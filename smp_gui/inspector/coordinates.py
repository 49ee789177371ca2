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

from smp_model.fit.panels import PANEL_KEYS, PANEL_UNIT, ExposurePanels
from smp_model.inputs.mask_bits import mask_text

__all__ = ["EMPTY_READOUT", "READOUT_LINES", "READOUT_NAMES", "affine_transform", "ccd_to_view",
           "pixel_rect", "readout_text", "sexagesimal", "view_to_ccd", "view_to_pixel"]

# The panels' values in the readout, in PANEL_KEYS order: in words (their unit,
# `PANEL_UNIT`, is said once on the line).
READOUT_NAMES = ("image", "model", "image − background", "image − target", "residual")
# Blank lines, as many as `readout_text` has: the readout keeps its height while it says
# nothing.
READOUT_LINES = 4
EMPTY_READOUT = "\n".join([" "] * READOUT_LINES)


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
    return " ".join(_sexagesimal(ra_deg, dec_deg))


def _sexagesimal(ra_deg: float, dec_deg: float) -> tuple[str, str]:
    ra = Angle(ra_deg, "deg").to_string(unit="hour", sep=":", precision=3, pad=True)
    dec = Angle(dec_deg, "deg").to_string(unit="deg", sep=":", precision=2, pad=True,
                                          alwayssign=True)
    return ra, dec


def readout_text(panels: ExposurePanels, u: float, v: float, pixel_to_sky=None) -> str:
    """`READOUT_LINES` lines that fit a 1280 px window, each quantity named in words with
    its unit: the CCD pixel position, the stamp pixel and its mask value with the bits
    named (`smp_model.inputs.mask_bits`); RA and Dec (sexagesimal and degrees, ICRS);
    every panel's value and the pixel's sigma (flux per pixel on zeropoint 30, said once).

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
    position = [f"CCD x={x:.2f} y={y:.2f} px", f"stamp pixel i={i} j={j}"]
    sky = ""
    if pixel_to_sky is not None:
        ra, dec = (float(c) for c in pixel_to_sky(x, y))
        ra_hms, dec_dms = _sexagesimal(ra, dec)
        sky = f"RA {ra_hms} = {ra:.6f}°  Dec {dec_dms} = {dec:+.6f}°  (ICRS)"
    if not (0 <= i < nx and 0 <= j < ny):
        return "\n".join((" | ".join(position), sky, "outside the stamp", ""))
    position.append(f"mask {mask_text(panels.mask_bits[j, i])}")
    values = [f"{name} {panels[key][j, i]:.4g}" for key, name in
              zip(PANEL_KEYS, READOUT_NAMES)]
    sigma = panels.sigma[j, i]
    noise = f"σ {sigma:.4g}" if np.isfinite(sigma) else "σ ∞ (not fitted)"
    # the panels' values on two lines; the second ends with sigma and the unit of all
    return "\n".join((" | ".join(position), sky, " | ".join(values[:3]),
                      " | ".join([*values[3:], noise]) + f"   [{PANEL_UNIT}]"))
