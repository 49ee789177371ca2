"""Limits on inputs and on the size of a fit, checked where the inputs enter.

Two kinds live here, so that the CLI, the GUI, batch workers and the engine share one
number for each:

* plausibility ranges of user-given values (zeropoints, colours, grid steps, pixel values):
  values outside them are typing or unit mistakes that would otherwise give silent
  nonsense or misleading errors deep inside the fit;
* the memory a fit needs, estimated from the manifest alone (`estimate_fit_memory`), so
  that a detection too large for the machine is refused before any PSF file is read.
"""
from __future__ import annotations

from .errors import ResourceLimitError

__all__ = ["COLOR_GI_RANGE", "DECAM_CCDNUMS", "MAX_DECOMPRESSED_BYTES", "MAX_GRID_STEP_ARCSEC",
           "MAX_MEDIAN_PIXEL_SNR", "MAX_REDUCED_CHI2", "ZEROPOINT_RANGE", "fit_memory_bytes",
           "memory_refusal"]

# Zeropoints (magnitudes of one SCI unit) of CCD images are ~25-35 in any unit in use
# (ADU, electrons, electrons/s, nJy); outside this range the value is a mistake (a flux
# scale, a zeropoint of another system) and 10**(-0.4 zp) under/overflows far out.
ZEROPOINT_RANGE = (10.0, 50.0)
# g - i colours of stars and solar-system bodies lie well inside this; the WCS colour term
# is only calibrated for real colours.
COLOR_GI_RANGE = (-1.0, 4.0)
# Largest grid step, arcsec: a grid wider than a degree is no longer a scene around a
# target (and the tangent-plane offsets stop being small).
MAX_GRID_STEP_ARCSEC = 60.0
# Largest believable median per-pixel signal-to-noise |SCI| sqrt(WGT) of a stamp: 1e6
# needs 1e12 electrons per pixel, a thousand times a CCD's full well.
MAX_MEDIAN_PIXEL_SNR = 1e6
# Largest size of a compressed input file (gzip, bzip2, xz) once decompressed: a DECam CCD
# image is ~70 MB, a Piff file a few MB; past this a file is a decompression bomb or a
# mistake, refused before astropy or cfitsio would expand it.
MAX_DECOMPRESSED_BYTES = 2 * 1024 ** 3
# DECam's CCD numbers (DES ``ccdnum``: 62 science CCDs, 1-62).  A manifest that names
# another camera may use any CCD number >= 0.
DECAM_CCDNUMS = range(1, 63)
# Largest believable chi2 per degree of freedom of a fit (a model off by 1000 sigma in
# every pixel): above it the data, not the model, are wrong.
MAX_REDUCED_CHI2 = 1e6


def fit_memory_bytes(n_exposures: int, n_pixels: int, grid_size: int) -> int:
    """Bytes a scene fit of ``n_exposures`` stamps of ``n_pixels`` pixels needs at most:
    the design matrix (rows x parameters) twice over while it is weighted, and the normal
    matrix three times (matrix, factor, a work copy)."""
    n_par = grid_size ** 2 + n_exposures
    return 8 * (2 * n_exposures * n_pixels * n_par + 3 * n_par ** 2)


def memory_refusal(n_exposures: int, n_pixels: int, grid_size: int, limit_bytes: int,
                   source) -> ResourceLimitError | None:
    """The `ResourceLimitError` (naming ``source``) for a fit of a ``grid_size`` squared
    grid that needs more than ``limit_bytes`` (`fit_memory_bytes`), or None."""
    estimate = fit_memory_bytes(n_exposures, n_pixels, grid_size)
    if estimate <= limit_bytes:
        return None
    n = grid_size
    return ResourceLimitError(
        f"a {n}x{n} grid over {n_exposures} exposures of {n_pixels} pixels needs about "
        f"{estimate / 1024**3:.1f} GiB, above the limit of "
        f"{limit_bytes / 1024**3:.1f} GiB; use a smaller grid or fewer "
        "exposures", source)


