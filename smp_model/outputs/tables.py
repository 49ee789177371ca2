"""Fit results as flux tables.

The flux table follows photutils: an astropy `QTable` with one row per fitted source,
``_err`` columns, units, a ``flags`` column and ``meta`` holding every setting needed to
repeat the fit, all from the fit's one record (`smp_model.outputs.record`).  It is written
as ECSV (through astropy's registry: everything kept), FITS (`smp_model.outputs.fits_tables`:
TUNIT/TCOMM, standard cards and a PROVENANCE extension), VOTable
(`smp_model.outputs.votable`) or CSV (values only: CSV has no place for units or metadata).
FITS cubes and DS9 regions are written by `smp_model.outputs.cubes` and
`smp_model.outputs.regions`.  Fluxes are on the common zeropoint 30
(``mag = 30 - 2.5 log10 flux``, AB), with ``flux_njy`` in nJy.
"""
from __future__ import annotations

import os
from pathlib import Path

from astropy.table import QTable, Table

from ..files import TABLE_FORMATS, atomic_output
from ..fit.results import SceneFit
from .record import fit_record

__all__ = ["fit_table", "read_flux_table", "table_format", "write_table"]


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
    """Write the flux table (ECSV, FITS, VOTable or CSV by extension: `TABLE_FORMATS`);
    atomic, no silent overwrite.  CSV keeps the values only (no units, no metadata)."""
    from .fits_tables import write_fits_table
    from .votable import write_votable
    table = fit_table(fit_or_table) if isinstance(fit_or_table, SceneFit) else fit_or_table
    fmt = table_format(path, format)
    if fmt == "fits":
        return write_fits_table(table, path, overwrite)
    if fmt == "votable":
        return write_votable(table, path, overwrite)
    out = table.copy()
    if fmt == "ascii.csv":
        out.meta = {}
    with atomic_output(path, overwrite) as tmp:
        out.write(tmp, format=fmt, overwrite=True)
    return Path(path)


def read_flux_table(path: str | os.PathLike, format: str | None = None) -> QTable:
    """A table written by `write_table`, as a `QTable` with what its format kept: for
    ECSV, FITS and VOTable the units (AB magnitudes as ``mag(AB)``), descriptions and
    metadata; for CSV the values."""
    from .fits_tables import read_fits_table
    from .votable import read_votable
    fmt = table_format(path, format)
    if fmt == "fits":
        return read_fits_table(path)
    if fmt == "votable":
        return read_votable(path)
    return QTable.read(path, format=fmt)
