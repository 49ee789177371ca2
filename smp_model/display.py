"""How panels are drawn: stretch presets (levels and the curve from level to colour), colour
maps and the mask overlay, shared by the GUI's panels and the exported figures so that
what is seen is what is exported.

A stretch has two parts: ``stretch_levels`` (the data values mapped to the two ends of the
colour map) and ``stretch_curve`` (how values in between are spaced, t in [0, 1] to
[0, 1]).  Colour maps are re-spaced by the curve (``stretched_colors``), so a linear level
range drawn with the re-spaced colours shows the stretch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .panels import ExposurePanels

STRETCHES = {
    "published": "Published (-3..+4 σ)",
    "zscale": "zscale",
    "percentile": "Percentile 0.5-99.5",
    "minmax": "min/max",
    "sqrt": "sqrt (min/max)",
    "log": "log (min/max)",
    "asinh": "asinh",
    "histeq": "Histogram equalisation",
}
COLORMAPS = ("gray_r", "gray", "viridis", "magma", "cividis", "coolwarm")
# asinh softening: the stretch is asinh(t / a) / asinh(1 / a) for t in [0, 1].
ASINH_SOFTENING = 0.1
# DS9's log stretch: log10(a t + 1) / log10(a + 1) with a = 1000.
LOG_EXPONENT = 1000.0
MASK_RGBA = (255, 40, 40, 110)
CURVE_POINTS = 256


@dataclass(frozen=True)
class DisplayStyle:
    """What the panels show: ``levels`` None means the stretch's own levels per exposure."""

    stretch: str = "published"
    colormap: str = "gray_r"
    invert: bool = False
    levels: tuple[float, float] | None = None
    show_mask: bool = True

    def __post_init__(self):
        if self.stretch not in STRETCHES:
            raise ValueError(f"unknown stretch {self.stretch!r}")
        if self.colormap not in COLORMAPS:
            raise ValueError(f"unknown colour map {self.colormap!r}")


#: The published figures' style: gray_r, median -3..+4 sigma, no overlay.
PUBLISHED_STYLE = DisplayStyle(show_mask=False)


def _values(panels: ExposurePanels) -> np.ndarray:
    image = panels["image"]
    values = image[panels.usable] if panels.usable.any() else image.ravel()
    return values[np.isfinite(values)]


def stretch_levels(stretch: str, panels: ExposurePanels) -> tuple[float, float]:
    """Display limits of the image panel for a stretch preset (used for all five)."""
    from astropy.visualization import PercentileInterval, ZScaleInterval
    values = _values(panels)
    if stretch not in STRETCHES:
        raise ValueError(f"unknown stretch {stretch!r}")
    if stretch == "published" or values.size < 2:
        return panels.levels
    if stretch == "zscale":
        lo, hi = ZScaleInterval().get_limits(values)
    elif stretch == "percentile":
        lo, hi = PercentileInterval(99.0).get_limits(values)
    elif stretch == "asinh":
        lo, hi = panels.levels[0], float(np.max(values))
    else:   # minmax, sqrt, log, histeq
        lo, hi = float(np.min(values)), float(np.max(values))
    return (float(lo), float(hi)) if hi > lo else panels.levels


def stretch_curve(stretch: str, panels: ExposurePanels | None = None,
                  levels: tuple[float, float] | None = None,
                  n: int = CURVE_POINTS) -> np.ndarray:
    """The stretch at ``n`` evenly spaced t in [0, 1] (t = 0 at the low level).
    Histogram equalisation needs the panels and levels (the image's distribution)."""
    t = np.linspace(0.0, 1.0, n)
    if stretch == "asinh":
        return np.arcsinh(t / ASINH_SOFTENING) / np.arcsinh(1.0 / ASINH_SOFTENING)
    if stretch == "sqrt":
        return np.sqrt(t)
    if stretch == "log":
        return np.log10(LOG_EXPONENT * t + 1.0) / np.log10(LOG_EXPONENT + 1.0)
    if stretch == "histeq" and panels is not None and levels is not None:
        lo, hi = levels
        values = np.clip(_values(panels), lo, hi)
        if values.size and hi > lo:
            cdf = np.searchsorted(np.sort(values), lo + t * (hi - lo), side="right")
            return cdf / values.size
    return t


def stretched_colors(base_rgba: np.ndarray, curve: np.ndarray,
                     invert: bool = False) -> np.ndarray:
    """Colours (n, 4) at evenly spaced t for a colour map sampled evenly (``base_rgba``,
    (m, 4)), re-spaced by ``curve`` and reversed when ``invert``."""
    base = np.asarray(base_rgba, float)
    if invert:
        base = base[::-1]
    grid = np.linspace(0.0, 1.0, len(base))
    return np.stack([np.interp(curve, grid, base[:, c]) for c in range(base.shape[1])],
                    axis=1)


def mask_overlay(usable: np.ndarray) -> np.ndarray:
    """RGBA (ny, nx, 4) uint8 image: translucent red on pixels that did not enter the fit."""
    rgba = np.zeros(usable.shape + (4,), np.uint8)
    rgba[~usable] = MASK_RGBA
    return rgba
