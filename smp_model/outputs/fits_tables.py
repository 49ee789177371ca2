"""Tables as FITS that every client reads alike: units in TUNITn, descriptions in TCOMMn,
AB magnitudes as ``mag`` with "AB magnitude" in the description (FITS has no AB unit), the
standard DATE, ORIGIN, CREATOR and HISTORY cards, a few short keywords (OBJECT, FILTER,
...), and the whole metadata in a PROVENANCE table extension (key, value as JSON) rather
than in ``HIERARCH`` cards, which STILTS and TOPCAT drop.
"""
from __future__ import annotations

import os
import textwrap
import warnings
from pathlib import Path

from astropy.io import fits
from astropy.table import QTable, Table

from ..files import atomic_output, utc_timestamp
from .columns import ab_magnitudes, plain_magnitudes
from .provenance import ORIGIN, fits_keywords, history_lines, meta_from_rows, provenance_rows

__all__ = ["PROVENANCE_EXTNAME", "TABLE_EXTNAME", "declare_long_strings", "describe_header",
           "fits_date", "origin_cards", "provenance_hdu", "read_fits_meta", "read_fits_table",
           "table_hdu", "write_fits_table", "write_hdus"]

#: EXTNAME of the table (HDU 1) and of the metadata extension (HDU 2) of a FITS table file.
TABLE_EXTNAME = "SOURCES"
PROVENANCE_EXTNAME = "PROVENANCE"


def write_fits_table(table: Table, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """``table`` as a FITS file: an empty primary HDU, the table (HDU 1, EXTNAME
    `TABLE_EXTNAME`, `table_hdu`, described by `describe_header`) and, when it has
    metadata, the PROVENANCE table (HDU 2, `provenance_hdu`)."""
    meta = dict(table.meta)
    hdu = table_hdu(table)
    hdu.name = TABLE_EXTNAME
    describe_header(hdu.header, meta)
    primary = fits.PrimaryHDU()
    describe_header(primary.header, meta, history=False)
    hdus = [primary, hdu] + ([provenance_hdu(meta)] if meta else [])
    return write_hdus(hdus, meta, path, overwrite)


def write_hdus(hdus: list, meta: dict, path: str | os.PathLike,
               overwrite: bool = False) -> Path:
    """Write ``hdus`` to ``path`` (atomic, no silent overwrite), each with the DATE,
    ORIGIN and CREATOR cards (`origin_cards`), which every FITS viewer shows of the HDU
    it opens."""
    for hdu in hdus:
        origin_cards(hdu.header, meta)
    with atomic_output(path, overwrite) as tmp:
        fits.HDUList(hdus).writeto(tmp, overwrite=True)
    return Path(path)


def table_hdu(table: Table) -> fits.BinTableHDU:
    """``table``'s columns as a FITS binary table: TUNITn (AB magnitudes as ``mag``,
    `plain_magnitudes`) and TCOMMn (each column's description).  The table's ``meta`` is
    not written here (`describe_header`, `provenance_hdu`)."""
    out = plain_magnitudes(table)
    out.meta = {}
    hdu = fits.table_to_hdu(out)
    header = hdu.header
    for n, name in enumerate(out.colnames, start=1):
        description = out[name].info.description
        if description:
            after = f"TUNIT{n}" if f"TUNIT{n}" in header else f"TFORM{n}"
            header.insert(after, (f"TCOMM{n}", description), after=True)
    declare_long_strings(header)
    return hdu


def describe_header(header: fits.Header, meta: dict, history: bool = True) -> None:
    """The cards every client shows: `origin_cards`, the short keywords of
    `fits_keywords` and, with ``history``, HISTORY lines saying how the file was made."""
    origin_cards(header, meta)
    for keyword, value, comment in fits_keywords(meta):
        header[keyword] = (value, comment)
    if history:
        for line in history_lines(meta):
            for card_text in textwrap.wrap(line, 72):   # one HISTORY card holds 72
                header.add_history(card_text)
    declare_long_strings(header)


def origin_cards(header: fits.Header, meta: dict) -> None:
    """DATE (of ``meta['created']``, else now), ORIGIN and CREATOR (this software)."""
    from .. import __version__
    header["DATE"] = (fits_date(meta.get("created") or utc_timestamp()),
                      "file creation date (UTC)")
    header["ORIGIN"] = (ORIGIN, "software that wrote this file")
    header["CREATOR"] = (f"smp-inspector {__version__}", "program and version")


def provenance_hdu(meta: dict) -> fits.BinTableHDU:
    """Every metadata entry as a row (key: nested keys joined by ``.``; value: JSON), an
    extension any FITS table reader shows (TOPCAT: open HDU PROVENANCE)."""
    keys, values = provenance_rows(meta)
    table = Table({"key": keys, "value": values})
    table["key"].info.description = "metadata entry (nested keys joined by '.')"
    table["value"].info.description = "its value as JSON"
    hdu = table_hdu(table)
    hdu.name = PROVENANCE_EXTNAME
    return hdu


def read_fits_meta(hdul: fits.HDUList) -> dict:
    """The metadata of a file written here (the PROVENANCE extension); of a file from
    before it existed, the ``HIERARCH SMP`` cards of HDU ``1`` (flat keys, as written)."""
    if PROVENANCE_EXTNAME in hdul:
        data = hdul[PROVENANCE_EXTNAME].data
        return meta_from_rows(data["key"], data["value"])
    header = hdul[1].header
    return {key[4:]: value for key, value in header.items() if key.startswith("SMP ")}


def read_fits_table(path: str | os.PathLike) -> QTable:
    """A FITS table written by `write_fits_table`, back as a `QTable`: units, AB
    magnitudes (`ab_magnitudes`), descriptions from TCOMMn and the metadata."""
    with fits.open(path, memmap=False) as hdul:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fits.verify.VerifyWarning)
            table = Table.read(hdul[1], character_as_bytes=False, mask_invalid=False)
        header = hdul[1].header
        for n, name in enumerate(table.colnames, start=1):
            table[name].info.description = header.get(f"TCOMM{n}")
        table.meta = read_fits_meta(hdul)
    return ab_magnitudes(table)


def fits_date(timestamp: str) -> str:
    """An ISO 8601 UTC timestamp (``...+00:00``) as a FITS DATE value."""
    return timestamp[:19]


def declare_long_strings(header: fits.Header) -> None:
    """Add LONGSTRN when a string value continues over CONTINUE cards (the OGIP
    convention, FITS standard 4.2.1.2; fitsverify warns without it)."""
    if "LONGSTRN" not in header and any(len(card.image) > fits.Card.length
                                        for card in header.cards):
        header["LONGSTRN"] = ("OGIP 1.0", "The OGIP long string convention may be used")
