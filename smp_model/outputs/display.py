"""How panels are drawn: stretch presets (levels and the curve from level to colour), colour
maps, the mask overlay and the sky-aligned frame, shared by the GUI's panels and the
exported figures so that what is seen is what is exported.

Sky-aligned display: `sky_aligned_affine` maps an exposure's stamp coordinates to arcsec
from the target, north up and east left, from its WCS Jacobian (`pixel_jacobian`), and
`stamp_extent` gives the view that holds every exposure's stamp.

A stretch has two parts: ``stretch_levels`` (the data values mapped to the two ends of the
colour map) and ``stretch_curve`` (how values in between are spaced, t in [0, 1] to
[0, 1]).  Colour maps are re-spaced by the curve (``stretched_colors``), so a linear level
range drawn with the re-spaced colours shows the stretch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..fit.panels import ExposurePanels

__all__ = ["ASINH_SOFTENING", "COINCIDENT_LABEL_DIRECTIONS", "COLORMAPS", "CURVE_POINTS",
           "LOG_EXPONENT", "MASK_RGBA", "OVERLAY_COLORS", "PUBLISHED_STYLE", "STRETCHES",
           "DisplayStyle", "OverlayColors", "Overlays", "exposure_overlays",
           "exposure_sky_affine", "label_backing", "label_directions", "mask_overlay",
           "overlay_colors", "pixel_jacobian", "sky_aligned_affine", "stamp_extent",
           "stretch_curve", "stretch_levels", "stretched_colors"]

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


@dataclass(frozen=True)
class OverlayColors:
    """Colours (RGB, 0-255) of what is drawn over panels of one colour map, each far from
    every colour of the map (in RGB, at least ~150 of 441; tests/test_display.py), so
    that nothing vanishes into the image whatever the stretch puts where.

    components : the markers and labels of component 1 (the primary, or the single
        target) and component 2 (the secondary).
    sky : the target's sky position, the scene grid's outline, the compass and the scale
        bar.
    """

    components: tuple[tuple[int, int, int], tuple[int, int, int]]
    sky: tuple[int, int, int]

    def hex(self, rgb: tuple[int, int, int]) -> str:
        """``"#rrggbb"`` of one of these colours (matplotlib's form)."""
        return "#{:02x}{:02x}{:02x}".format(*rgb)


# One table, read by the window's panels and by the exported figures.  A reversed map
# (invert) has the same colours, so the same overlay colours.
OVERLAY_COLORS = {
    "gray_r": OverlayColors(((0, 230, 255), (255, 0, 255)), (255, 220, 0)),
    "gray": OverlayColors(((0, 230, 255), (255, 0, 255)), (255, 220, 0)),
    "viridis": OverlayColors(((255, 0, 255), (255, 255, 255)), (255, 60, 0)),
    "magma": OverlayColors(((0, 255, 255), (60, 255, 60)), (0, 128, 255)),
    "cividis": OverlayColors(((0, 255, 255), (255, 0, 255)), (0, 255, 0)),
    "coolwarm": OverlayColors(((60, 255, 60), (255, 0, 255)), (0, 0, 0)),
}


def overlay_colors(colormap: str) -> OverlayColors:
    """The overlay colours of colour map ``colormap`` (one of `COLORMAPS`)."""
    if colormap not in OVERLAY_COLORS:
        raise ValueError(f"unknown colour map {colormap!r}")
    return OVERLAY_COLORS[colormap]


def label_backing(rgb: tuple[int, int, int]) -> tuple[int, int, int, int]:
    """RGBA of the translucent box behind text in colour ``rgb``: dark behind light
    text, light behind dark text (black on coolwarm)."""
    luminance = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return (0, 0, 0, 200) if luminance >= 100 else (255, 255, 255, 200)


# Where the labels of coincident components go (unit vectors, y up): 1 up-left, 2
# down-right, as for a pair whose secondary lies down-right of its primary.
COINCIDENT_LABEL_DIRECTIONS = ((-math.sqrt(0.5), math.sqrt(0.5)),
                               (math.sqrt(0.5), -math.sqrt(0.5)))


def label_directions(points) -> np.ndarray:
    """Unit vectors (n, 2) along which to put each component's number so that the
    numbers of a close pair never sit on each other: each away from the other component,
    along their separation.  ``points`` (n, 2) are where the components are drawn (on
    screen or on the page, any frame with equal scales on its axes; the directions are in
    that frame).  One component, or two closer than 1e-9 of the frame's unit:
    `COINCIDENT_LABEL_DIRECTIONS`."""
    points = np.atleast_2d(np.asarray(points, float))
    out = np.array(COINCIDENT_LABEL_DIRECTIONS[:len(points)], float)
    if len(points) == 2:
        step = points[0] - points[1]
        length = float(np.hypot(*step))
        if length > 1e-9:
            out = np.array([step / length, -step / length])
    return out


# asinh softening: the stretch is asinh(t / a) / asinh(1 / a) for t in [0, 1].
ASINH_SOFTENING = 0.1
# DS9's log stretch: log10(a t + 1) / log10(a + 1) with a = 1000.
LOG_EXPONENT = 1000.0
MASK_RGBA = (255, 40, 40, 110)
CURVE_POINTS = 256


@dataclass(frozen=True)
class DisplayStyle:
    """What the panels show: ``levels`` None means the stretch's own levels per exposure;
    ``sky_aligned``: every exposure drawn north up, east left at one angular scale
    (`sky_aligned_affine`), else in stamp array coordinates."""

    stretch: str = "published"
    colormap: str = "gray_r"
    invert: bool = False
    levels: tuple[float, float] | None = None
    show_mask: bool = True
    sky_aligned: bool = False     # north up, east left (`sky_aligned_affine`)

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


@dataclass(frozen=True)
class Overlays:
    """Where the sky lies on an exposure's panels, in stamp coordinates (stamp array
    coordinates, pixel centres at integers; see `smp_gui.panels`).

    Attributes
    ----------
    target
        the detection's (ra, dec) in this exposure.
    grid
        (5, 2) closed outline of the scene grid's corner sources.
    north, east
        unit vectors (stamp px) pointing to increasing Dec and increasing RA.
    arcsec_px
        stamp px per arcsec (for a scale bar).
    jacobian
        (2, 2) d(east, north) / d(x, y) at the target, arcsec per px
        (`pixel_jacobian`).
    """

    target: tuple[float, float]
    grid: np.ndarray
    north: tuple[float, float]
    east: tuple[float, float]
    arcsec_px: float
    jacobian: np.ndarray

    @property
    def sky_affine(self) -> np.ndarray:
        """`sky_aligned_affine` of this exposure."""
        return sky_aligned_affine(self.jacobian, self.target)


def pixel_jacobian(exposure) -> np.ndarray:
    """(2, 2) Jacobian d(east, north) / d(x, y) of a loaded exposure's WCS at its target
    position (``exposure.target_xy``, 1-indexed CCD px), in arcsec per px, by differences
    of one pixel: column 0 is a step of +1 px in x, column 1 in y; east is the RA offset
    times cos(Dec)."""
    tx, ty = exposure.target_xy
    ra0, dec0 = exposure.pixel_to_sky(tx, ty)
    cols = []
    for dx, dy in ((1.0, 0.0), (0.0, 1.0)):
        r, d = exposure.pixel_to_sky(tx + dx, ty + dy)
        dra = ((float(r) - float(ra0) + 180.0) % 360.0 - 180.0) * np.cos(np.radians(dec0))
        cols.append((dra * 3600.0, (float(d) - float(dec0)) * 3600.0))
    return np.array(cols).T


def sky_aligned_affine(jacobian, target) -> np.ndarray:
    """The affine map (2, 3) from stamp coordinates (u, v) to sky-aligned coordinates
    (X, Y): arcsec from the target's sky position, X = -(east offset), Y = +(north offset),
    so that drawn with X to the right and Y up, north is up and east is left (the sky as
    seen from the ground), at the same angular scale for every exposure.

    ``[X, Y] = A @ [u, v] + b`` with ``A = diag(-1, 1) @ jacobian`` (`pixel_jacobian`,
    arcsec per px, taken as constant over the stamp) and ``b = -A @ target`` (``target``:
    the target's stamp coordinates, so the target is at the origin)."""
    a = np.diag([-1.0, 1.0]) @ np.asarray(jacobian, float)
    return np.hstack([a, -(a @ np.asarray(target, float))[:, None]])


def exposure_sky_affine(exposure) -> np.ndarray:
    """`sky_aligned_affine` of a loaded exposure, from its WCS at its target."""
    tx, ty = exposure.target_xy
    ox, oy = exposure.origin
    return sky_aligned_affine(pixel_jacobian(exposure), (tx - ox, ty - oy))


def stamp_extent(affines, shapes) -> tuple[float, float, float, float]:
    """(x0, x1, y0, y1): the smallest rectangle holding every pixel of each stamp (pixel
    edges at half integers) mapped by its affine map (2, 3): ``affines[k]`` and
    ``shapes[k]`` (ny, nx) are those of exposure k, e.g. all exposures of a detection
    drawn sky-aligned."""
    points = []
    for affine, (ny, nx) in zip(affines, shapes, strict=True):
        corners = np.array([[-0.5, -0.5, 1.0], [nx - 0.5, -0.5, 1.0],
                            [-0.5, ny - 0.5, 1.0], [nx - 0.5, ny - 0.5, 1.0]]).T
        points.append(np.asarray(affine, float) @ corners)
    points = np.hstack(points)
    return (float(points[0].min()), float(points[0].max()),
            float(points[1].min()), float(points[1].max()))


def exposure_overlays(exposure, ra: float, dec: float, settings) -> Overlays:
    """The `Overlays` of a loaded exposure (`smp_model.scene.exposures.LoadedExposure`) for the
    detection at (ra, dec) fitted with ``settings`` (`FitSettings`)."""
    from ..scene.model import grid_sky_positions
    ox, oy = exposure.origin
    tx, ty = exposure.target_xy
    n = settings.grid_size
    gra, gdec = grid_sky_positions(ra, dec, settings)
    corners = [0, n - 1, n * n - 1, n * (n - 1), 0]
    points = [exposure.sky_to_pixel(float(np.asarray(gra)[k]), float(np.asarray(gdec)[k]))
              for k in corners]
    grid = np.array([(float(x) - ox, float(y) - oy) for x, y in points])
    jacobian = pixel_jacobian(exposure)  # d(east, north) / d(x, y), arcsec per px
    inverse = np.linalg.inv(jacobian)    # px per arcsec
    east, north = inverse[:, 0], inverse[:, 1]
    unit = lambda v: tuple(float(c) for c in v / np.hypot(*v))   # noqa: E731
    scale = float(1.0 / np.sqrt(abs(np.linalg.det(jacobian))))
    return Overlays(target=(float(tx) - ox, float(ty) - oy), grid=grid, north=unit(north),
                    east=unit(east), arcsec_px=scale, jacobian=jacobian)
