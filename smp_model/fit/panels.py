"""The five inspection panels of an exposure (docs/method.rst, "The five panels"),
computed in one place for the CLI figures, the exports and the GUI.

1. image ``I``; 2. model ``M``; 3. image minus background model ``I - (M - S)`` (only the
target left); 4. image minus target ``I - S`` (only the scene left); 5. residual ``I - M``,
where ``S`` is the fitted target (both components of a binary).  All on zeropoint 30.
Display limits follow the published figures: ``[-3 sigma, +4 sigma]`` about the clipped
median, sigma a 4-sigma-clipped estimate of the image's pixel scatter, the same for all five.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
from astropy.stats import sigma_clipped_stats

from ..inputs.stamps import flux_scale
from .results import SceneFit

__all__ = ["PANEL_KEYS", "PANEL_TITLES", "PANEL_UNIT", "ExposurePanels", "display_levels",
           "exposure_levels", "five_panels"]

PANEL_KEYS = ("image", "model", "image_minus_background", "image_minus_target", "residual")
PANEL_TITLES = {
    "image": "Image",
    "model": "Model",
    "image_minus_background": "Image - background model",
    "image_minus_target": "Image - target",
    "residual": "Residual",
}
# What every panel's pixel values are (the readout's and the colour bars' unit).
PANEL_UNIT = "flux per pixel (ZP 30)"


@dataclass(frozen=True, eq=False)
class ExposurePanels:
    """The five panels of one exposure plus what is needed to show them honestly.

    Arrays are (ny, nx) with ``[j, i]`` = CCD ``(origin[0] + i, origin[1] + j)``;
    ``usable`` marks pixels that entered the fit (others are shown but not fitted).
    """

    expnum: int
    ccdnum: int
    is_detection: bool
    origin: tuple[int, int]
    arrays: dict[str, np.ndarray]
    usable: np.ndarray
    sigma: np.ndarray
    mask_bits: np.ndarray
    levels: tuple[float, float]
    chi2: float
    usable_pixels: int

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]


def five_panels(fit: SceneFit, index: int | None = None) -> ExposurePanels:
    """Panels of exposure ``index`` of ``fit.scene.exposures`` (default: the detection)."""
    scene = fit.scene
    m = scene.detection_index if index is None else index
    ex = scene.exposures[m]
    # The calibrated stamp as stored, masked pixels included (the fit gives them no weight).
    image = ex.stamp.sci * flux_scale(ex.entry.zeropoint)
    # this exposure's model only, unless the fit has modelled every exposure already
    model, target, chi2 = fit.exposure_models.exposure(m)
    arrays = {
        "image": image,
        "model": model,
        "image_minus_background": image - (model - target),
        "image_minus_target": image - target,
        "residual": image - model,
    }
    with np.errstate(divide="ignore"):
        sigma = np.where(ex.weight > 0, 1.0 / np.sqrt(ex.weight), np.inf)
    return ExposurePanels(expnum=ex.entry.expnum, ccdnum=ex.entry.ccdnum,
                          is_detection=m == scene.detection_index, origin=ex.origin,
                          arrays=arrays, usable=ex.usable, sigma=sigma,
                          mask_bits=np.asarray(ex.stamp.msk), levels=exposure_levels(ex),
                          chi2=chi2,
                          usable_pixels=int(fit.usable_pixels_per_exposure[m]))


# Display levels depend only on an exposure's image: computed once per exposure (a
# sigma-clip costs a few ms, which matters when a drag refits 30 times a second).
_LEVELS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def exposure_levels(ex) -> tuple[float, float]:
    """`display_levels` of a loaded exposure's usable pixels, cached per exposure."""
    if ex not in _LEVELS:
        _LEVELS[ex] = display_levels(ex.image, ex.usable)
    return _LEVELS[ex]


def display_levels(image: np.ndarray, usable: np.ndarray | None = None
                   ) -> tuple[float, float]:
    """Published stretch: median + [-3, +4] x 4-sigma-clipped std of the usable pixels."""
    values = image[usable] if usable is not None and usable.any() else image
    values = values[np.isfinite(values)]
    if values.size == 0:
        return (-1.0, 1.0)
    _, median, std = sigma_clipped_stats(values, sigma=4.0)
    if not std > 0:
        std = 1.0
    return (float(median - 3 * std), float(median + 4 * std))
