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

from typing import TYPE_CHECKING

from .errors import ResourceLimitError

if TYPE_CHECKING:
    from .manifest import DetectionManifest
    from .scene import FitSettings

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
# Largest believable chi2 per degree of freedom of a fit (a model off by 1000 sigma in
# every pixel): above it the data, not the model, are wrong.
MAX_REDUCED_CHI2 = 1e6


def fit_memory_bytes(n_exposures: int, n_pixels: int, settings: "FitSettings") -> int:
    """Bytes a scene fit of ``n_exposures`` stamps of ``n_pixels`` pixels needs at most:
    the design matrix (rows x parameters) twice over while it is weighted, and the normal
    matrix three times (matrix, factor, a work copy)."""
    n_par = settings.grid_size ** 2 + n_exposures
    return 8 * (2 * n_exposures * n_pixels * n_par + 3 * n_par ** 2)


def memory_refusal(n_exposures: int, n_pixels: int, settings: "FitSettings",
                   source) -> ResourceLimitError | None:
    """The `ResourceLimitError` for a fit above ``settings.memory_limit_bytes``, or None."""
    estimate = fit_memory_bytes(n_exposures, n_pixels, settings)
    if estimate <= settings.memory_limit_bytes:
        return None
    n = settings.grid_size
    return ResourceLimitError(
        f"a {n}x{n} grid over {n_exposures} exposures of {n_pixels} pixels needs about "
        f"{estimate / 1024**3:.1f} GiB, above the limit of "
        f"{settings.memory_limit_bytes / 1024**3:.1f} GiB; use a smaller grid or fewer "
        "exposures", source)


def estimate_fit_memory(manifest: "DetectionManifest", settings: "FitSettings") -> int:
    """Bytes the fit of ``manifest`` with ``settings`` needs at most, from the manifest and
    the detection stamp alone (all stamps of a detection share its shape): no PSF file
    and no other stamp is read.  Raises `StampError` if the detection stamp is unusable."""
    return fit_memory_bytes(len(manifest.exposures), _detection_pixels(manifest), settings)


def check_fit_memory(manifest: "DetectionManifest", settings: "FitSettings") -> None:
    """Raise `ResourceLimitError` (naming the manifest) if the fit of ``manifest`` would
    need more than ``settings.memory_limit_bytes`` (`estimate_fit_memory`); call it before
    loading the detection."""
    error = memory_refusal(len(manifest.exposures), _detection_pixels(manifest), settings,
                           manifest.path or manifest.name)
    if error is not None:
        raise error


def _detection_pixels(manifest: "DetectionManifest") -> int:
    from .stamps import read_stamp
    return read_stamp(manifest.detection_exposure.stamp).sci.size
