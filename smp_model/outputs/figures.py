"""Figures of the five panels (matplotlib, origin lower, the same limits on all five
panels), drawn with a `DisplayStyle` (stretch, levels, colour map, mask overlay) so that
an export looks like the window; the published style (``gray_r``, ``[-3 sigma, +4 sigma]``,
no overlay) is `PUBLISHED_STYLE`, the default.  A sky-aligned style draws every exposure
north up, east left at one angular scale (arcsec from the target), as the window does:
each stamp is drawn through its `smp_model.outputs.display.sky_aligned_affine` (an affine
transform of the image, nearest-neighbour pixels, not a resampling), all panels with the
limits that hold every exposure's stamp.

Figures are built with the object-oriented API on an Agg canvas (no pyplot state), so this
is safe from worker threads and from the GUI.  Science figures carry no interactive
markers.
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
from ..fit.panels import PANEL_KEYS, PANEL_TITLES, ExposurePanels, five_panels
from ..fit.results import SceneFit
from .display import (PUBLISHED_STYLE, DisplayStyle, exposure_sky_affine, mask_overlay,
                      stamp_extent, stretch_curve, stretch_levels, stretched_colors)
from .record import fit_record

__all__ = ["FIGURE_FORMATS", "PANEL_SIZE_IN", "SKY_BACKGROUND", "five_panel_figure",
           "save_figure", "style_colormap"]

FIGURE_FORMATS = (".png", ".pdf", ".svg")
PANEL_SIZE_IN = 2.4


def style_colormap(style: DisplayStyle, panels: ExposurePanels,
                   levels: tuple[float, float]) -> ListedColormap:
    """The style's colour map re-spaced by its stretch (as the window draws it)."""
    base = matplotlib.colormaps[style.colormap](np.linspace(0.0, 1.0, 256))
    curve = stretch_curve(style.stretch, panels, levels)
    return ListedColormap(stretched_colors(base, curve, style.invert))


SKY_BACKGROUND = "0.55"   # around a sky-aligned stamp: neither black nor white data


def _draw_row(axes, panels: ExposurePanels, style: DisplayStyle,
              levels: tuple[float, float] | None = None,
              sky: tuple[np.ndarray, tuple[float, float, float, float]] | None = None
              ) -> None:
    """One exposure's five panels; ``sky``: (its sky-aligned affine, the limits (x0, x1,
    y0, y1) of every panel) to draw it north up, east left."""
    lo, hi = levels if levels is not None else stretch_levels(style.stretch, panels)
    cmap = style_colormap(style, panels, (lo, hi))
    overlay = mask_overlay(panels.usable) if style.show_mask else None
    for ax, key in zip(axes, PANEL_KEYS):
        # imshow's data coordinates are stamp coordinates (origin lower, pixel centres
        # at integers); sky-aligned, they are mapped to arcsec from the target
        transform = (Affine2D(np.vstack([sky[0], [0.0, 0.0, 1.0]])) + ax.transData
                     if sky is not None else ax.transData)
        ax.imshow(panels[key], cmap=cmap, origin="lower", vmin=lo, vmax=hi,
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
        ax.set_title(PANEL_TITLES[key], fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    label = f"{panels.expnum}" + (" (detection)" if panels.is_detection else "")
    if sky is not None:
        label += ", north up, east left"
    axes[0].set_ylabel(f"exposure {label}", fontsize=8)


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
    fig = Figure(figsize=(5 * PANEL_SIZE_IN, len(indices) * PANEL_SIZE_IN + 0.9),
                 layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(indices), 5, squeeze=False)
    affines = extent = None
    if style.sky_aligned:
        affines = [exposure_sky_affine(ex) for ex in fit.scene.exposures]
        extent = stamp_extent(affines, [ex.shape for ex in fit.scene.exposures])
    for row, m in zip(axes, indices):
        _draw_row(row, five_panels(fit, m), style, style.levels if m == shown else None,
                  (affines[m], extent) if affines is not None else None)
    fig.suptitle(fit_record(fit).caption(), fontsize=9)
    return fig


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
