"""Stamp files: ``SCI`` (image), ``MSK`` (non-zero = bad) and ``WGT`` (inverse variance of
SCI, 0 = no data) HDUs of one shape, cut from a CCD image.

Array convention: ``sci[j, i]`` is CCD pixel ``(x0 + i, y0 + j)`` for the stamp origin
``(x0, y0)`` of the manifest (1-indexed CCD pixels).
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import StampError, exception_text
from ..files import open_input_fits

__all__ = ["COMMON_ZEROPOINT", "REQUIRED_HDUS", "Stamp", "flux_scale", "read_stamp"]

COMMON_ZEROPOINT = 30.0
REQUIRED_HDUS = ("SCI", "MSK", "WGT")


def flux_scale(zeropoint: float) -> float:
    """Factor that brings counts at ``zeropoint`` to the common zeropoint 30 (the one place
    this fact lives): ``I = SCI * 10**(-0.4 (zp - 30))``."""
    return 10.0 ** (-0.4 * (zeropoint - COMMON_ZEROPOINT))


@dataclass(frozen=True, eq=False)
class Stamp:
    """The three arrays of one stamp, as stored (SCI units, not yet calibrated)."""

    sci: np.ndarray
    msk: np.ndarray
    wgt: np.ndarray
    path: Path
    mjd: float | None = None   # MJD-OBS of the exposure (UTC days), when the header has it

    @property
    def shape(self) -> tuple[int, int]:
        return self.sci.shape

    @property
    def usable(self) -> np.ndarray:
        """Boolean map of pixels that carry information: unmasked, finite, WGT > 0."""
        return (self.msk == 0) & (self.wgt > 0) & np.isfinite(self.sci) & np.isfinite(self.wgt)

    def calibrated(self, zeropoint: float) -> tuple[np.ndarray, np.ndarray]:
        """Image and inverse variance on the common zeropoint 30; weight 0 where unusable
        (and the image set to 0 there, so that NaNs never reach the solver)."""
        scale = flux_scale(zeropoint)
        usable = self.usable
        image = np.where(usable, self.sci, 0.0).astype(np.float64) * scale
        weight = np.where(usable, self.wgt, 0.0).astype(np.float64) / scale ** 2
        return image, weight


def read_stamp(path: str | os.PathLike) -> Stamp:
    """Read a stamp; raises `StampError` naming the file and the problem."""
    path = Path(path)
    with open_input_fits(path, StampError, "stamp file") as hdul:
        names = {h.name.upper() for h in hdul}
        missing = [n for n in REQUIRED_HDUS if n not in names]
        if missing:
            raise StampError(f"missing HDU(s) {', '.join(missing)} "
                             f"(has {', '.join(sorted(names))})", path)
        try:
            arrays = {n: hdul[n].data for n in REQUIRED_HDUS}
        except (OSError, ValueError, TypeError, IndexError) as exc:
            raise StampError(f"not a readable FITS stamp ({exception_text(exc)})",
                             path) from None
        mjd = _header_mjd(hdul)
    for name, a in arrays.items():
        if a is None or a.ndim != 2 or 0 in a.shape:
            raise StampError(f"HDU {name} holds no 2-d image", path)
    shapes = {n: a.shape for n, a in arrays.items()}
    if len(set(shapes.values())) != 1:
        raise StampError(f"HDU shapes differ: {shapes}", path)
    _check_sci_type(arrays["SCI"].dtype, path)
    if not np.issubdtype(arrays["MSK"].dtype, np.integer):
        raise StampError(f"MSK must be an integer bit mask, got {arrays['MSK'].dtype}", path)
    wgt = np.asarray(arrays["WGT"], dtype=np.float64)
    bad = (~np.isfinite(wgt) | (wgt < 0)) & (arrays["MSK"] == 0)
    if bad.any():
        raise StampError(f"WGT has {int(bad.sum())} negative or non-finite unmasked value(s); "
                         "an inverse variance must be >= 0", path)
    return Stamp(sci=np.asarray(arrays["SCI"], dtype=np.float64),
                 msk=np.asarray(arrays["MSK"]), wgt=np.where(np.isfinite(wgt), wgt, 0.0),
                 path=path, mjd=mjd)


def _check_sci_type(dtype: np.dtype, path: Path) -> None:
    """A sky-subtracted image has negative pixels and fractional counts: unsigned integers
    cannot hold it (a uint8 SCI gave a flux 12x too small without a word), so they are
    refused; signed integers can, to a count, and are used with a warning."""
    if np.issubdtype(dtype, np.unsignedinteger) or dtype == np.bool_:
        raise StampError(f"SCI is stored as {dtype} (unsigned integers), which cannot hold a "
                         "sky-subtracted image (it has negative pixels); write SCI as "
                         "floating point", path)
    if np.issubdtype(dtype, np.integer):
        warnings.warn(f"{path}: SCI is stored as {dtype} integers: a sky-subtracted image "
                      "rounded to whole counts (fitted as it is; float32 keeps it)",
                      stacklevel=3)


def _header_mjd(hdul) -> float | None:
    """``MJD-OBS`` of the SCI or primary header (DES single-epoch images carry it in both);
    None when absent or not a finite number."""
    for hdu in (hdul["SCI"], hdul[0]):
        value = hdu.header.get("MJD-OBS")
        if isinstance(value, (int, float)) and not isinstance(value, bool) \
                and math.isfinite(value):
            return float(value)
    return None
