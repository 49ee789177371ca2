"""Per-exposure diagnostics of a fit: where the scene model does not describe the data.

A "static" exposure whose chi2 per pixel stands out hints at a bad PSF model, a moving
object or artefact in it, or wrong weights.  Each exposure is compared with the others:
it is flagged when its chi2 per usable pixel exceeds the median over exposures by more
than `OUTLIER_SIGMA` times the scatter expected from chi2 statistics (sqrt(2 / n)).
"""
from __future__ import annotations

import numpy as np
from astropy.table import Table

from .fit import SceneFit

OUTLIER_SIGMA = 5.0
WORST_RESIDUALS = 3


def exposure_diagnostics(fit: SceneFit) -> Table:
    """One row per fitted exposure (order of ``fit.scene.exposures``).

    Columns: identity (expnum, ccdnum, band, zeropoint, is_detection), stamp geometry
    (x0, y0, target_x, target_y; 1-indexed CCD pixels), n_usable, usable_fraction, chi2,
    chi2_per_pixel, sky (zeropoint 30, NaN when not fitted), max_abs_residual_sigma and
    worst_pixels (the largest |residual| / sigma and their stamp indices "j,i"), outlier.
    """
    scene = fit.scene
    images = np.stack([ex.image for ex in scene.exposures])
    weights = scene.weight.reshape(images.shape)
    normalised = (images - fit.model) * np.sqrt(weights)
    n_usable = fit.usable_pixels_per_exposure
    chi2_pp = fit.reduced_chi2_per_exposure
    sky = fit.sky_levels if scene.n_sky else np.full(len(scene.exposures), np.nan)
    rows = []
    for m, ex in enumerate(scene.exposures):
        order = np.argsort(np.abs(normalised[m]), axis=None)[::-1][:WORST_RESIDUALS]
        worst = [np.unravel_index(k, normalised[m].shape) for k in order]
        rows.append((ex.entry.expnum, ex.entry.ccdnum, ex.entry.band, ex.entry.zeropoint,
                     m == scene.detection_index, ex.origin[0], ex.origin[1],
                     ex.target_xy[0], ex.target_xy[1], int(n_usable[m]), ex.usable_fraction,
                     float(fit.chi2_per_exposure[m]), float(chi2_pp[m]), float(sky[m]),
                     float(np.abs(normalised[m]).max()),
                     ";".join(f"{j},{i}" for j, i in worst)))
    table = Table(rows=rows, names=(
        "expnum", "ccdnum", "band", "zeropoint", "is_detection", "x0", "y0", "target_x",
        "target_y", "n_usable", "usable_fraction", "chi2", "chi2_per_pixel", "sky",
        "max_abs_residual_sigma", "worst_pixels"))
    table["outlier"] = outlier_flags(chi2_pp, n_usable)
    return table


def outlier_flags(chi2_per_pixel: np.ndarray, n_usable: np.ndarray) -> np.ndarray:
    """True where chi2/pixel exceeds the median by > OUTLIER_SIGMA * sqrt(2 / n)."""
    reference = np.median(chi2_per_pixel)
    return chi2_per_pixel > reference * (1 + OUTLIER_SIGMA * np.sqrt(2.0 / n_usable))


def diagnostics_records(fit: SceneFit) -> list[dict]:
    """`exposure_diagnostics` as plain JSON-ready dicts."""
    table = exposure_diagnostics(fit)
    return [{name: _plain(row[name]) for name in table.colnames} for row in table]


def _plain(value):
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value) if np.isfinite(value) else None
    return str(value) if isinstance(value, np.str_) else value
