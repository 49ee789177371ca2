"""Publication figures of the five panels (matplotlib, published style: ``gray_r``, origin
lower, the same ``[-3 sigma, +4 sigma]`` limits on all five panels).

Figures are built with the object-oriented API on an Agg canvas (no pyplot state), so this
is safe from worker threads and from the GUI.  Science figures carry no interactive
markers.
"""
from __future__ import annotations

import os
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from .fit import SceneFit
from .io_utils import atomic_output
from .panels import PANEL_KEYS, PANEL_TITLES, ExposurePanels, five_panels
from .record import fit_record

FIGURE_FORMATS = (".png", ".pdf", ".svg")
PANEL_SIZE_IN = 2.4


def _draw_row(axes, panels: ExposurePanels, cmap: str) -> None:
    lo, hi = panels.levels
    for ax, key in zip(axes, PANEL_KEYS):
        ax.imshow(panels[key], cmap=cmap, origin="lower", vmin=lo, vmax=hi,
                  interpolation="nearest")
        ax.set_title(PANEL_TITLES[key], fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    label = f"{panels.expnum}" + (" (detection)" if panels.is_detection else "")
    axes[0].set_ylabel(f"exposure {label}", fontsize=8)


def five_panel_figure(fit: SceneFit, indices: list[int] | None = None,
                      cmap: str = "gray_r") -> Figure:
    """Figure with one row of five panels per exposure index (default: the detection)."""
    indices = [fit.scene.detection_index] if indices is None else list(indices)
    fig = Figure(figsize=(5 * PANEL_SIZE_IN, len(indices) * PANEL_SIZE_IN + 0.9),
                 layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(indices), 5, squeeze=False)
    for row, m in zip(axes, indices):
        _draw_row(row, five_panels(fit, m), cmap)
    fig.suptitle(fit_record(fit).caption(), fontsize=9)
    return fig


def save_figure(fit: SceneFit, path: str | os.PathLike, exposures: str = "detection",
                overwrite: bool = False, cmap: str = "gray_r") -> Path:
    """Write the five-panel figure as PNG, PDF or SVG (by extension), atomically.

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
                    pdf.savefig(five_panel_figure(fit, [m], cmap))
        else:
            indices = list(range(n_exp)) if exposures == "all" else None
            five_panel_figure(fit, indices, cmap).savefig(tmp, dpi=150)
    return path
