"""Zeropoint tables: ``expnum, ccdnum, zeropoint`` and optionally ``band`` per exposure, in
ECSV, CSV or FITS; read by the folder form of a detection and by discovery.  Zeropoints are
magnitudes of one SCI unit (`smp_model.limits.ZEROPOINT_RANGE`).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..errors import ZeropointError
from ..files import read_input_table
from .manifest import zeropoint_problem

__all__ = ["read_zeropoints"]


def read_zeropoints(path: str | os.PathLike) -> dict[tuple[int, int], tuple[float, str | None]]:
    """``{(expnum, ccdnum): (zeropoint, band or None)}`` from an ECSV/CSV/FITS table.

    Every cell is checked (`ZeropointError` naming the file, row and exposure): blank or
    non-numeric cells, non-integer exposure/CCD numbers, implausible zeropoints
    (`smp_model.inputs.manifest.zeropoint_problem`), and two rows for one exposure that disagree
    (identical repeats are accepted)."""
    path = Path(path)
    table = read_input_table(path, ZeropointError, "zeropoint table")
    names = {c.lower(): c for c in table.colnames}
    missing = [c for c in ("expnum", "ccdnum", "zeropoint") if c not in names]
    if missing:
        raise ZeropointError(f"zeropoint table lacks column(s) {', '.join(missing)}", path)
    band = names.get("band")
    out: dict[tuple[int, int], tuple[float, str | None]] = {}
    first_row: dict[tuple[int, int], int] = {}
    for number, row in enumerate(table, start=1):
        where = f"row {number}"
        key = (_integer(row[names["expnum"]], path, where, "expnum"),
               _integer(row[names["ccdnum"]], path, where, "ccdnum"))
        where = f"row {number} (exposure {key[0]}, CCD {key[1]})"
        zp = _number(row[names["zeropoint"]], path, where, "zeropoint")
        problem = zeropoint_problem(zp)
        if problem:
            raise ZeropointError(f"{where}: zeropoint {problem}", path)
        value = (zp, _text(row[band]) if band else None)
        if key in out and out[key] != value:
            raise ZeropointError(
                f"{where} conflicts with row {first_row[key]}: zeropoint/band "
                f"{value[0]!r}/{value[1]} vs {out[key][0]!r}/{out[key][1]}; keep one", path)
        out.setdefault(key, value)
        first_row.setdefault(key, number)
    return out


def _cell(value):
    """A table cell as a Python scalar; None for a masked or blank cell."""
    if value is None or value is np.ma.masked or np.ma.is_masked(value):
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def _number(value, path: Path, where: str, column: str) -> float:
    cell = _cell(value)
    try:
        if cell is None or isinstance(cell, bool):
            raise ValueError
        number = float(cell)
    except (TypeError, ValueError):
        raise ZeropointError(f"{where}: '{column}' must be a number, got "
                             f"{'a blank cell' if cell is None else repr(cell)}", path) from None
    if not math.isfinite(number):
        raise ZeropointError(f"{where}: '{column}' must be finite, got {number!r}", path)
    return number


def _integer(value, path: Path, where: str, column: str) -> int:
    number = _number(value, path, where, column)
    if number != int(number):
        raise ZeropointError(f"{where}: '{column}' must be an integer, got {number!r}", path)
    return int(number)


def _text(value) -> str | None:
    cell = _cell(value)
    return None if cell is None else str(cell)
