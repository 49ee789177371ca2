"""Cutting DES stamps out of single-epoch CCD images, with the DES rule.

A DES single-epoch image holds HDUs ``SCI``, ``MSK`` and ``WGT`` (any order, any other HDUs
ignored; fpacked ``.fits.fz`` files are read by astropy as they are).  The stamp around CCD
position (x, y) (1-indexed) is ``astropy.nddata.Cutout2D(plane, (x, y), size,
mode='partial', fill_value=0)`` with the 1-indexed position passed as if it were 0-indexed,
as the DES stamps were made: its ``SCI[0, 0]`` is CCD pixel ``ceil(x) - 14`` for 30 pixels
(`smp_model.inputs.manifest.des_stamp_origin`).  Pixels beyond the CCD are 0 in all three planes
(WGT 0: no data).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.nddata import Cutout2D

from ..errors import StampError
from ..files import atomic_output, require_fits_file
from .manifest import des_stamp_origin
from .stamps import REQUIRED_HDUS

__all__ = ["STAMP_SIZE", "cut_stamp", "read_planes", "write_ccd_image", "write_stamp"]

STAMP_SIZE = 30


def read_planes(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The SCI, MSK and WGT images of a CCD image file (fpacked or not)."""
    path = Path(path)
    require_fits_file(path, StampError, "CCD image")
    try:
        with fits.open(path, memmap=False) as hdul, warnings.catch_warnings():
            warnings.simplefilter("ignore", fits.verify.VerifyWarning)
            found = {h.name.upper(): h for h in hdul}
            missing = [n for n in REQUIRED_HDUS if n not in found]
            if missing:
                raise StampError(f"missing HDU(s) {', '.join(missing)} "
                                 f"(has {', '.join(sorted(found))})", path)
            planes = {n: np.asarray(found[n].data) for n in REQUIRED_HDUS}
    except StampError:
        raise
    except (OSError, ValueError, TypeError, IndexError) as exc:
        raise StampError(f"not a readable FITS image ({exc})", path) from None
    shapes = {n: a.shape for n, a in planes.items()}
    if len(set(shapes.values())) != 1 or planes["SCI"].ndim != 2:
        raise StampError(f"SCI, MSK and WGT must be 2-d images of one shape, got {shapes}",
                         path)
    return planes


def cut_stamp(planes: dict[str, np.ndarray], x: float, y: float,
              size: int = STAMP_SIZE) -> tuple[dict[str, np.ndarray], tuple[int, int]]:
    """(stamp planes, stamp_origin) of the ``size`` x ``size`` stamp around 1-indexed CCD
    (x, y), by the DES rule (module docstring)."""
    out = {}
    origin = des_stamp_origin(x, y, (size, size))
    for name, plane in planes.items():
        cut = Cutout2D(plane, (x, y), (size, size), mode="partial", fill_value=0,
                       copy=True)
        out[name] = cut.data
    return out, origin


def write_stamp(path: str | os.PathLike, stamp: dict[str, np.ndarray],
                overwrite: bool = False) -> Path:
    """Write a stamp in the sample's format (empty primary HDU, then SCI, MSK, WGT)."""
    hdul = fits.HDUList([fits.PrimaryHDU()] + [fits.ImageHDU(stamp[n], name=n)
                                                for n in REQUIRED_HDUS])
    with atomic_output(path, overwrite) as tmp:
        hdul.writeto(tmp, overwrite=True)
    return Path(path)


def write_ccd_image(path: str | os.PathLike, planes: dict[str, np.ndarray],
                    header: fits.Header | None = None, overwrite: bool = False) -> Path:
    """Write a CCD image as DES does (SCI, MSK, WGT image HDUs, the WCS in each header);
    a name ending in ``.fz`` is written tile-compressed (lossless GZIP_2, no quantisation),
    as fpack does."""
    compress = str(path).endswith(".fz")
    hdus = [fits.PrimaryHDU()]
    for name in REQUIRED_HDUS:
        if compress:
            hdus.append(fits.CompImageHDU(planes[name], header=header, name=name,
                                          compression_type="GZIP_2", quantize_level=0.0))
        else:
            hdus.append(fits.ImageHDU(planes[name], header=header, name=name))
    with atomic_output(path, overwrite) as tmp:
        fits.HDUList(hdus).writeto(tmp, overwrite=True)
    return Path(path)
