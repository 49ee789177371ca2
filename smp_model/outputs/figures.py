"""Figures of the five panels (matplotlib, origin lower, the same limits on all five
panels), drawn with a `DisplayStyle` (stretch, levels, colour map, mask overlay) so that
an export looks like the window; the published style (``gray_r``, ``[-3 sigma, +4 sigma]``,
no overlay) is `PUBLISHED_STYLE`, the default.  A sky-aligned style draws every exposure
north up, east left at one angular scale (arcsec from the target), as the window does:
each stamp is drawn through its `smp_model.outputs.display.sky_aligned_affine` (an affine
transform of the image, nearest-neighbour pixels, not a resampling), all panels with the
limits that hold every exposure's stamp.

Each figure carries what the screen shows, so that it can go into a paper as it is: every
panel names its exposure, each row has a colour bar in the panels' unit (flux per pixel on
zeropoint 30), the detection row marks the fitted components (numbered in the published
order), the Image panel has a compass (N, E) and a scale bar in arcsec, and the title gives
the fit's key numbers (`smp_model.outputs.record.FitRecord.caption`).  Figure elements
carry SVG ids (``component-1``, ``compass``, ``scale-bar``, ``colorbar``).

Figures are built with the object-oriented API on an Agg canvas (no pyplot state), so this
is safe from worker threads and from the GUI.
"""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.transforms import Affine2D

from ..files import atomic_output
from ..fit.panels import PANEL_KEYS, PANEL_TITLES, PANEL_UNIT, ExposurePanels, five_panels
from ..fit.results import SceneFit
from .display import (PUBLISHED_STYLE, DisplayStyle, exposure_sky_affine, label_directions,
                      mask_overlay, overlay_colors, pixel_jacobian, stamp_extent,
                      stretch_curve, stretch_levels, stretched_colors)
from .record import fit_record

__all__ = ["COLORBAR_LABEL", "FIGURE_FORMATS", "LABEL_DISTANCE_PT", "PANEL_SIZE_IN",
           "SKY_BACKGROUND", "five_panel_figure", "save_figure", "scale_bar_arcsec",
           "style_colormap"]

FIGURE_FORMATS = (".png", ".pdf", ".svg")
PANEL_SIZE_IN = 2.4
COLORBAR_LABEL = PANEL_UNIT
# From a component's centre to the centre of its number (points).
LABEL_DISTANCE_PT = 9.0


def style_colormap(style: DisplayStyle, panels: ExposurePanels,
                   levels: tuple[float, float]) -> ListedColormap:
    """The style's colour map re-spaced by its stretch (as the window draws it)."""
    base = matplotlib.colormaps[style.colormap](np.linspace(0.0, 1.0, 256))
    curve = stretch_curve(style.stretch, panels, levels)
    return ListedColormap(stretched_colors(base, curve, style.invert))


SKY_BACKGROUND = "0.55"   # around a sky-aligned stamp: neither black nor white data


def scale_bar_arcsec(width_arcsec: float) -> float:
    """A round scale-bar length (1, 2 or 5 x 10^k arcsec) near a quarter of a panel that is
    ``width_arcsec`` wide."""
    target = 0.25 * width_arcsec
    decade = 10.0 ** np.floor(np.log10(target))
    return float(max((m * decade for m in (1, 2, 5) if m * decade <= target),
                     default=decade))


def _draw_row(axes, panels: ExposurePanels, style: DisplayStyle,
              levels: tuple[float, float] | None = None,
              sky: tuple[np.ndarray, tuple[float, float, float, float]] | None = None,
              exposure=None, sources=()) -> None:
    """One exposure's five panels; ``sky``: (its sky-aligned affine, the limits (x0, x1,
    y0, y1) of every panel) to draw it north up, east left; ``exposure`` (its loaded
    exposure): a compass and scale bar; ``sources``: the fitted components' stamp
    positions (u, v), marked on every panel."""
    lo, hi = levels if levels is not None else stretch_levels(style.stretch, panels)
    cmap = style_colormap(style, panels, (lo, hi))
    overlay = mask_overlay(panels.usable) if style.show_mask else None
    for ax, key in zip(axes, PANEL_KEYS):
        # imshow's data coordinates are stamp coordinates (origin lower, pixel centres
        # at integers); sky-aligned, they are mapped to arcsec from the target
        transform = (Affine2D(np.vstack([sky[0], [0.0, 0.0, 1.0]])) + ax.transData
                     if sky is not None else ax.transData)
        image = ax.imshow(panels[key], cmap=cmap, origin="lower", vmin=lo, vmax=hi,
                          interpolation="nearest", transform=transform)
        if overlay is not None:
            ax.imshow(overlay, origin="lower", interpolation="nearest",
                      transform=transform)
        if sky is not None:
            x0, x1, y0, y1 = sky[1]
            ax.set_xlim(x0, x1)
            ax.set_ylim(y0, y1)
            ax.set_aspect("equal")
            ax.set_facecolor(SKY_BACKGROUND)
        ax.set_title(f"{PANEL_TITLES[key]}\nexposure {panels.expnum}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        _mark_sources(ax, sources, sky[0] if sky is not None else None, style.colormap)
    label = f"{panels.expnum}" + (" (detection)" if panels.is_detection else "")
    if sky is not None:
        label += ", north up, east left"
    axes[0].set_ylabel(f"exposure {label}", fontsize=8)
    bar = axes[0].figure.colorbar(image, ax=list(axes), shrink=0.85, pad=0.01)
    bar.set_label(COLORBAR_LABEL, fontsize=8)
    bar.ax.tick_params(labelsize=7)
    bar.ax.set_gid("colorbar")
    if exposure is not None:
        colors = overlay_colors(style.colormap)
        _draw_compass(axes[0], exposure, sky[0] if sky is not None else None,
                      colors.hex(colors.sky))


def _to_drawn(points, affine) -> np.ndarray:
    """Stamp points (n, 2) in the axes' data coordinates (sky-aligned: by ``affine``)."""
    points = np.atleast_2d(np.asarray(points, float))
    if affine is None:
        return points
    return points @ np.asarray(affine)[:, :2].T + np.asarray(affine)[:, 2]


def _mark_sources(ax, sources, affine, colormap: str) -> None:
    """Open circles with their number at the fitted components (1 = primary), in the
    colour map's overlay colours (`smp_model.outputs.display.overlay_colors`, as the
    window)."""
    if not len(sources):
        return
    drawn = _to_drawn(sources, affine)
    colors = overlay_colors(colormap)
    directions = label_directions(drawn)
    for k, (x, y) in enumerate(drawn):
        color = colors.hex(colors.components[k % 2])
        ax.plot([x], [y], marker="o", markersize=9, markerfacecolor="none",
                markeredgecolor=color, markeredgewidth=1.2, gid=f"component-{k + 1}")
        # each number on the side away from the other component (a close pair's stay
        # apart); the axes have equal aspect, so data directions are page directions
        ex, ey = directions[k] * LABEL_DISTANCE_PT
        ax.annotate(str(k + 1), (x, y), xytext=(ex, ey), textcoords="offset points",
                    color=color, fontsize=7, ha="center", va="center")


def _draw_compass(ax, exposure, affine, color: str) -> None:
    """N and E arrows (top right) and a scale bar in arcsec (bottom left) on ``ax``, in the
    directions of ``exposure``'s WCS at its target as drawn, in ``color``."""
    jacobian = pixel_jacobian(exposure)          # d(east, north)/d(x, y), arcsec per px
    inverse = np.linalg.inv(jacobian)            # stamp px per arcsec east, north
    linear = np.eye(2) if affine is None else np.asarray(affine)[:, :2]
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    width, height = x1 - x0, y1 - y0
    length = 0.16 * min(abs(width), abs(height))
    anchor = np.array([x0 + 0.78 * width, y0 + 0.72 * height])
    for name, column in (("N", 1), ("E", 0)):
        direction = linear @ inverse[:, column]
        direction = direction / np.hypot(*direction) * length
        ax.annotate("", anchor + direction, anchor, gid="compass",
                    arrowprops=dict(arrowstyle="->", color=color, lw=1.2))
        ax.text(*(anchor + 1.35 * direction), name, color=color, fontsize=7,
                ha="center", va="center", gid="compass")
    per_arcsec = np.sqrt(abs(np.linalg.det(linear @ inverse)))   # drawn units per arcsec
    arcsec = scale_bar_arcsec(abs(width) / per_arcsec)
    start = np.array([x0 + 0.08 * width, y0 + 0.08 * height])
    ax.plot([start[0], start[0] + np.sign(width) * arcsec * per_arcsec], [start[1]] * 2,
            color=color, lw=2, gid="scale-bar")
    ax.text(start[0], start[1] + 0.04 * height, f"{arcsec:g}″", color=color,
            fontsize=7, va="bottom", gid="scale-bar")


def five_panel_figure(fit: SceneFit, indices: list[int] | None = None,
                      style: DisplayStyle = PUBLISHED_STYLE,
                      shown_index: int | None = None) -> Figure:
    """Figure with one row of five panels per exposure index (default: the detection).
    ``style.levels`` (if set) are those of exposure ``shown_index`` (the one on screen;
    default the detection); other rows use the style's stretch levels.  A sky-aligned
    style draws every row north up, east left with the limits that hold every exposure
    of the fit (as the window's whole-stamp zoom)."""
    indices = [fit.scene.detection_index] if indices is None else list(indices)
    shown = fit.scene.detection_index if shown_index is None else shown_index
    fig = Figure(figsize=(5 * PANEL_SIZE_IN + 0.8, len(indices) * PANEL_SIZE_IN + 1.1),
                 layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(indices), 5, squeeze=False)
    affines = [None] * len(fit.scene.exposures)
    extent = None
    if style.sky_aligned:
        affines = [_sky_affine(ex) for ex in fit.scene.exposures]
        good = [(a, ex.shape) for a, ex in zip(affines, fit.scene.exposures) if a is not None]
        extent = stamp_extent(*zip(*good)) if good else None
    for row, m in zip(axes, indices):
        exposure = fit.scene.exposures[m]
        sources = ([ccd_to_stamp(src.x, src.y, exposure.origin) for src in fit.sources]
                   if m == fit.scene.detection_index else [])
        sky = (affines[m], extent) if affines[m] is not None else None
        _draw_row(row, five_panels(fit, m), style, style.levels if m == shown else None,
                  sky, _compass_exposure(exposure), sources)
        if style.sky_aligned and sky is None:    # as the window's notice
            row[0].set_ylabel(f"exposure {exposure.entry.expnum}: WCS not invertible,\n"
                              "CCD axes (not sky-aligned)", fontsize=8, color="#b35c00")
    fig.suptitle(fit_record(fit).caption(), fontsize=9)
    return fig


def ccd_to_stamp(x: float, y: float, origin: tuple[int, int]) -> tuple[float, float]:
    """Stamp coordinates (0-indexed, pixel centres at integers) of 1-indexed CCD (x, y)."""
    return float(x) - origin[0], float(y) - origin[1]


def _sky_affine(exposure) -> np.ndarray | None:
    """`exposure_sky_affine`, or None when the exposure's WCS gives no Jacobian at the
    target (that row is drawn in stamp coordinates, and says so)."""
    try:
        return exposure_sky_affine(exposure)
    except Exception:   # noqa: BLE001 - a WCS that fails there: that row unaligned
        return None


def _compass_exposure(exposure):
    """``exposure`` when its WCS gives a Jacobian at the target (else no compass)."""
    try:
        pixel_jacobian(exposure)
    except Exception:   # noqa: BLE001 - a WCS that fails there: no compass, the rest stands
        return None
    return exposure


def save_figure(fit: SceneFit, path: str | os.PathLike, exposures: str = "detection",
                overwrite: bool = False, style: DisplayStyle = PUBLISHED_STYLE,
                shown_index: int | None = None) -> Path:
    """Write the five-panel figure as PNG, PDF or SVG (by extension), atomically, drawn
    with ``style`` (see `five_panel_figure`).

    ``exposures``: ``"detection"`` (one row) or ``"all"``: for PDF one page per exposure,
    for PNG/SVG one row per exposure.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FIGURE_FORMATS:
        raise ValueError(f"{path}: figure format must be one of {', '.join(FIGURE_FORMATS)}")
    if exposures not in ("detection", "all"):
        raise ValueError(f"exposures must be 'detection' or 'all', got {exposures!r}")
    n_exp = len(fit.scene.exposures)
    with atomic_output(path, overwrite) as tmp:
        if exposures == "all" and suffix == ".pdf":
            with PdfPages(tmp) as pdf:
                for m in range(n_exp):
                    pdf.savefig(five_panel_figure(fit, [m], style, shown_index))
        else:
            indices = list(range(n_exp)) if exposures == "all" else None
            five_panel_figure(fit, indices, style, shown_index).savefig(tmp, dpi=150)
    return path
