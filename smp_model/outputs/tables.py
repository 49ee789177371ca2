"""Fit results as flux tables.

The flux table follows photutils: an astropy `QTable` with one row per fitted source,
``_err`` columns, units, a ``flags`` column and ``meta`` holding every setting needed to
repeat the fit, all from the fit's one record (`smp_model.outputs.record`).  It is written
through astropy's registry (ECSV, FITS, CSV).  FITS cubes and DS9 regions are written by
`smp_model.outputs.cubes` and `smp_model.outputs.regions`.  Fluxes are on the common zeropoint 30
(``mag = 30 - 2.5 log10 flux``, AB), with ``flux_njy`` in nJy.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import QTable, Table

from ..files import TABLE_FORMATS, atomic_output
from ..fit.results import SceneFit
from .record import fit_record

__all__ = ["fit_table", "flat_meta", "set_card", "table_format", "table_hdu",
           "without_ab_units", "write_table"]


def fit_table(fit: SceneFit) -> QTable:
    """The flux table of ``fit``: one row per target source (`smp_model.outputs.record`)."""
    return fit_record(fit).table()


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
        hdu = table_hdu(out)
        for key, value in flat_meta(table.meta).items():
            set_card(hdu.header, key, value)
        with atomic_output(path, overwrite) as tmp:
            fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp, overwrite=True)
        return Path(path)
    if fmt == "ascii.csv":
        out.meta = {}
    with atomic_output(path, overwrite) as tmp:
        out.write(tmp, format=fmt, overwrite=True)
    return Path(path)


def table_hdu(table: Table) -> fits.BinTableHDU:
    """A table as a FITS HDU (`without_ab_units`, no meta)."""
    return fits.table_to_hdu(without_ab_units(table, meta={}))


def without_ab_units(table: Table, meta: dict | None = None) -> Table:
    """A plain-column copy of ``table`` (with ``meta`` if given) for formats without an
    AB-magnitude unit (FITS, VOTable's VOUnits): such columns get the unit ``mag`` and say
    "AB" in their description, rather than a unit their readers warn about."""
    out = Table(table, meta=table.meta if meta is None else meta, copy=True)
    for name in out.colnames:
        unit = out[name].unit
        if isinstance(unit, u.MagUnit):
            out[name].unit = u.mag
            out[name].info.description = f"{out[name].info.description or ''} [AB]".strip()
    return out


def flat_meta(meta: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in meta.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flat_meta(value, f"{name}_"))
        elif isinstance(value, (list, tuple)) and value and isinstance(value[0], dict):
            for n, item in enumerate(value):
                flat.update(flat_meta(item, f"{name}_{n}_"))
        elif isinstance(value, (list, tuple)):
            flat[name] = ",".join(str(v) for v in value)
        elif value is not None:
            flat[name] = value
    return flat


def set_card(header: fits.Header, key: str, value) -> None:
    """Meta entries become ``HIERARCH SMP <key>`` cards (long strings continue over CONTINUE
    cards); values that cannot be cards become text."""
    if isinstance(value, (bool, int, float, str, np.integer, np.floating)):
        if isinstance(value, float) and not math.isfinite(value):
            value = str(value)
        card_value = value
    else:
        card_value = str(value)
    keyword = f"HIERARCH SMP {key}"
    header[keyword] = card_value
    if len(header.cards[keyword].image) > fits.Card.length and "LONGSTRN" not in header:
        # the value continues over CONTINUE cards: declare the OGIP convention (FITS
        # standard, section 4.2.1.2), as fitsverify asks
        header["LONGSTRN"] = ("OGIP 1.0", "The OGIP long string convention may be used")
