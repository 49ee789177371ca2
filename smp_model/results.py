"""Fit results as tables and FITS files.

The flux table follows photutils: an astropy `QTable` with one row per fitted source,
``_err`` columns, units, a ``flags`` column and ``meta`` holding every setting needed to
repeat the fit.  It is written through astropy's registry (ECSV, FITS, CSV).  Fluxes are
on the common zeropoint 30 (``mag = 30 - 2.5 log10 flux``).
"""
from __future__ import annotations

import datetime as _dt
import math
import os
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import QTable, Table

from .diagnostics import diagnostics_records, exposure_diagnostics
from .fit import BinaryFit, SceneFit
from .io_utils import TABLE_FORMATS, atomic_output

# Bit flags of the ``flags`` column.
FLAG_NONPOSITIVE_FLUX = 1      # magnitude undefined: quote mag_limit_3sigma
FLAG_POSITION_FIXED = 2        # position not fitted: dx_err/dy_err are NaN
FLAG_POSITION_ERR_UNDEFINED = 4  # position fitted but chi2 curvature not positive-definite



def fit_meta(fit: SceneFit) -> dict:
    """Everything that determines the fit and where it came from."""
    from . import __version__
    scene, manifest = fit.scene, fit.manifest
    return {
        "software": f"smp-inspector {__version__}",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "manifest": str(manifest.path) if manifest.path else None,
        "name": manifest.name, "ra": manifest.ra, "dec": manifest.dec,
        "band": manifest.band, "color_gi": manifest.color_gi,
        "detection_expnum": manifest.detection_expnum,
        "detection_ccdnum": manifest.detection_ccdnum,
        "fit_kind": fit.kind,
        "offsets": [float(v) for v in fit.offsets.ravel()],
        "settings": fit.settings.as_meta(),
        "zeropoint": 30.0,
        "exposures_used": [int(ex.entry.expnum) for ex in scene.exposures],
        "exposures_dropped": fit.dropped_expnums,
        "condition_number": scene.condition_number,
        "n_chi2_evaluations": fit.n_chi2_evaluations,
        "shot_noise": (None if fit.shot_noise is None else
                       {"gain": fit.shot_noise.gain, "iterations": fit.shot_noise.iterations}),
        "per_exposure": diagnostics_records(fit),
    }


def _component_names(fit: SceneFit) -> list[str]:
    return ["primary", "secondary"] if isinstance(fit, BinaryFit) else ["target"]


def fit_table(fit: SceneFit) -> QTable:
    """One row per target source, with units; ``meta`` from `fit_meta`."""
    manifest = fit.manifest
    rows = []
    binary = isinstance(fit, BinaryFit)
    geometry = (fit.separation_px, fit.separation_err_px, fit.separation_arcsec,
                fit.separation_err_arcsec, fit.position_angle_deg,
                fit.position_angle_err_deg) if binary else (math.nan,) * 6
    dchi2 = fit.delta_chi2 if binary else math.nan
    for comp, s in zip(_component_names(fit), fit.sources):
        flags = 0
        if not s.flux > 0:
            flags |= FLAG_NONPOSITIVE_FLUX
        if fit.position_covariance is None:
            flags |= FLAG_POSITION_FIXED
        elif not np.all(np.isfinite([s.dx_err, s.dy_err])):
            flags |= FLAG_POSITION_ERR_UNDEFINED
        rows.append((manifest.name, manifest.detection_expnum, manifest.detection_ccdnum,
                     manifest.band, fit.kind, comp, s.flux, s.flux_err, s.flux_err_total,
                     s.mag, s.mag_err,
                     s.mag_limit_3sigma, s.x, s.y, s.dx, s.dy, s.dx_err, s.dy_err, s.ra, s.dec,
                     fit.chi2, fit.dof, dchi2, *geometry, fit.settings.convention,
                     fit.settings.grid_size, fit.settings.grid_step_arcsec,
                     fit.settings.fit_sky, flags))
    names = ("name", "expnum", "ccdnum", "band", "fit_kind", "component", "flux", "flux_err",
             "flux_err_total", "mag", "mag_err", "mag_limit_3sigma", "x", "y", "dx", "dy", "dx_err", "dy_err",
             "ra", "dec", "chi2", "dof", "delta_chi2", "separation", "separation_err",
             "separation_arcsec", "separation_arcsec_err", "position_angle",
             "position_angle_err", "convention", "grid_size", "grid_step", "fit_sky", "flags")
    table = QTable(rows=rows, names=names, meta=fit_meta(fit))
    units = {"mag": u.mag, "mag_err": u.mag, "mag_limit_3sigma": u.mag,
             "x": u.pix, "y": u.pix, "dx": u.pix, "dy": u.pix, "dx_err": u.pix,
             "dy_err": u.pix, "ra": u.deg, "dec": u.deg, "separation": u.pix,
             "separation_err": u.pix, "separation_arcsec": u.arcsec,
             "separation_arcsec_err": u.arcsec, "position_angle": u.deg,
             "position_angle_err": u.deg, "grid_step": u.arcsec}
    for name, unit in units.items():
        table[name] = table[name] * unit   # QTable turns these into Quantity columns
    if fit.shot_noise is not None:
        sn = fit.shot_noise
        table["flux_sn"] = sn.flux
        table["flux_err_sn"] = sn.flux_err
        table["mag_sn"] = sn.mag * u.mag
        table["mag_err_sn"] = sn.mag_err * u.mag
        table["flux_sn"].info.description = "flux refitted with the source shot-noise term"
    table["flux"].info.description = "target flux on zeropoint 30 (counts)"
    table["flux_err"].info.description = "1-sigma flux error at fixed positions (published)"
    table["flux_err_total"].info.description = ("1-sigma flux error including fitted-position "
                                                "uncertainty (NaN if positions were fixed)")
    table["mag_limit_3sigma"].info.description = "magnitude of 3 x flux_err"
    table["flags"].info.description = ("1: flux <= 0 (use mag_limit_3sigma); 2: position "
                                       "fixed; 4: position error undefined")
    return table


def table_format(path: str | os.PathLike, format: str | None = None) -> str:
    """astropy format name for ``path`` (by extension unless given)."""
    if format:
        return format
    suffix = Path(path).suffix.lower()
    try:
        return TABLE_FORMATS[suffix]
    except KeyError:
        raise ValueError(f"{path}: unknown table format {suffix!r}; use one of "
                         f"{', '.join(sorted(TABLE_FORMATS))}") from None


def write_table(fit_or_table: SceneFit | Table, path: str | os.PathLike,
                format: str | None = None, overwrite: bool = False) -> Path:
    """Write the flux table (ECSV, FITS or CSV by extension); atomic, no silent overwrite.
    FITS headers cannot hold nested meta, so it is stored there as flattened keywords."""
    table = fit_table(fit_or_table) if isinstance(fit_or_table, SceneFit) else fit_or_table
    fmt = table_format(path, format)
    out = table.copy()
    if fmt == "fits":
        # Build the header ourselves: astropy would warn once per long meta key.
        out.meta = {}
        hdu = fits.table_to_hdu(out)
        for key, value in _flat_meta(table.meta).items():
            _set_card(hdu.header, key, value)
        with atomic_output(path, overwrite) as tmp:
            fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp, overwrite=True)
        return Path(path)
    if fmt == "ascii.csv":
        out.meta = {}
    with atomic_output(path, overwrite) as tmp:
        out.write(tmp, format=fmt, overwrite=True)
    return Path(path)


def _flat_meta(meta: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in meta.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flat_meta(value, f"{name}_"))
        elif isinstance(value, (list, tuple)) and value and isinstance(value[0], dict):
            for n, item in enumerate(value):
                flat.update(_flat_meta(item, f"{name}_{n}_"))
        elif isinstance(value, (list, tuple)):
            flat[name] = ",".join(str(v) for v in value)
        elif value is not None:
            flat[name] = value
    return flat


def write_fits(fit: SceneFit, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """FITS file with cubes (n_exp, ny, nx) IMAGE, MODEL, RESIDUAL, TARGET (the fitted
    target part of the model) and WEIGHT on zeropoint 30, plus tables SOURCES (the flux
    table) and EXPOSURES (`exposure_diagnostics`, same order as the cube planes)."""
    scene = fit.scene
    images = np.stack([ex.image for ex in scene.exposures])
    weights = np.stack([ex.weight for ex in scene.exposures])
    primary = fits.PrimaryHDU()
    hdr = primary.header
    for key, value in _flat_meta(fit_meta(fit)).items():
        _set_card(hdr, key, value)
    hdr["FLUX"] = (fit.flux, "primary/target flux, zeropoint 30")
    hdr["FLUX_ERR"] = (fit.flux_err, "1-sigma flux error")
    hdr["CHI2"] = (fit.chi2, "total chi2")
    hdr["DOF"] = (fit.dof, "degrees of freedom")
    hdus = [primary]
    for name, cube, what in (("IMAGE", images, "calibrated image, ZP 30 (0 where unusable)"),
                             ("MODEL", fit.model, "full scene model"),
                             ("RESIDUAL", images - fit.model, "image - model"),
                             ("TARGET", fit.target_model, "fitted target part of the model"),
                             ("WEIGHT", weights, "inverse variance, ZP 30 (0 = unused)")):
        hdu = fits.ImageHDU(cube.astype(np.float32), name=name)
        hdu.header["COMMENT"] = what
        hdus.append(hdu)
    sources = fits.table_to_hdu(Table(fit_table(fit), meta={}))
    sources.name = "SOURCES"
    exposures = fits.table_to_hdu(exposure_diagnostics(fit))
    exposures.name = "EXPOSURES"
    hdus += [sources, exposures]
    with atomic_output(path, overwrite) as tmp:
        fits.HDUList(hdus).writeto(tmp, overwrite=True)
    return Path(path)


def _set_card(header: fits.Header, key: str, value) -> None:
    """Meta entries become ``HIERARCH SMP <key>`` cards (long strings continue over CONTINUE
    cards); values that cannot be cards become text."""
    if isinstance(value, (bool, int, float, str, np.integer, np.floating)):
        if isinstance(value, float) and not math.isfinite(value):
            value = str(value)
        card_value = value
    else:
        card_value = str(value)
    header[f"HIERARCH SMP {key}"] = card_value
