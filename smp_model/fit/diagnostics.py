"""Per-exposure diagnostics of a fit: where the scene model does not describe the data.

A "static" exposure whose chi2 per pixel stands out hints at a bad PSF model, a moving
object or artefact in it, or wrong weights.  Each exposure is compared with the others:
it is flagged when its chi2 per usable pixel exceeds the median over exposures by more
than `OUTLIER_SIGMA` times the scatter expected from chi2 statistics (sqrt(2 / n)).
"""
from __future__ import annotations

import numpy as np
from astropy.table import Table

from .results import SceneFit

__all__ = ["OUTLIER_SIGMA", "WORST_RESIDUALS", "diagnostic_columns", "diagnostics_records",
           "exposure_diagnostics", "outlier_flags"]

OUTLIER_SIGMA = 5.0
WORST_RESIDUALS = 3


def exposure_diagnostics(fit: SceneFit) -> Table:
    """One row per fitted exposure (order of ``fit.scene.exposures``): the columns of
    `diagnostic_columns` as an astropy table."""
    return Table(diagnostic_columns(fit))


def diagnostic_columns(fit: SceneFit) -> dict[str, np.ndarray | list]:
    """The per-exposure diagnostics as plain columns (one entry per exposure, order of
    ``fit.scene.exposures``); cheap enough for every refit of a marker drag, where an
    astropy table costs ~4 ms to build.

    Columns: identity (expnum, ccdnum, band, zeropoint, is_detection), stamp geometry
    (x0, y0, target_x, target_y; 1-indexed CCD pixels), n_usable, usable_fraction, chi2,
    chi2_per_pixel, sky (zeropoint 30, NaN when not fitted), max_abs_residual_sigma and
    worst_pixels (the largest ``|residual| / sigma`` and their stamp indices "j,i"), outlier.
    """
    scene = fit.scene
    images = np.stack([ex.image for ex in scene.exposures])
    weights = scene.weight.reshape(images.shape)
    normalised = (images - fit.model) * np.sqrt(weights)
    n_usable = fit.usable_pixels_per_exposure
    chi2_pp = fit.reduced_chi2_per_exposure
    sky = fit.sky_levels if scene.n_sky else np.full(len(scene.exposures), np.nan)
    abs_normalised = np.abs(normalised).reshape(len(scene.exposures), -1)
    worst = np.argsort(abs_normalised, axis=1)[:, ::-1][:, :WORST_RESIDUALS]
    nx = images.shape[2]
    exposures = scene.exposures
    columns = {
        "expnum": [ex.entry.expnum for ex in exposures],
        "ccdnum": [ex.entry.ccdnum for ex in exposures],
        "band": [ex.entry.band for ex in exposures],
        "zeropoint": [ex.entry.zeropoint for ex in exposures],
        "is_detection": np.arange(len(exposures)) == scene.detection_index,
        "x0": [ex.origin[0] for ex in exposures],
        "y0": [ex.origin[1] for ex in exposures],
        "target_x": [ex.target_xy[0] for ex in exposures],
        "target_y": [ex.target_xy[1] for ex in exposures],
        "n_usable": np.asarray(n_usable, int),
        "usable_fraction": [ex.usable_fraction for ex in exposures],
        "chi2": np.asarray(fit.chi2_per_exposure, float),
        "chi2_per_pixel": np.asarray(chi2_pp, float),
        "sky": np.asarray(sky, float),
        "max_abs_residual_sigma": abs_normalised.max(axis=1),
        "worst_pixels": [";".join(f"{k // nx},{k % nx}" for k in row) for row in worst],
    }
    columns["outlier"] = outlier_flags(chi2_pp, n_usable)
    return columns


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
