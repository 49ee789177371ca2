"""Tables as VOTable, the Virtual Observatory's table format (TOPCAT, Aladin, SAMP):
`votable_of` builds the document in memory (for a file, or a SAMP message), written with
astropy.io.votable.

Units are VOUnits (VOTable 1.4+): AB magnitudes are ``mag``, with "AB magnitude" at the
start of the FIELD's DESCRIPTION and the UCD ``phot.mag`` (there is no AB unit); columns
carry the registry's UCDs (`smp_model.outputs.columns`).  The metadata are PARAMs named by
their flattened keys (`smp_model.outputs.provenance.flat_meta`): numbers, booleans and text
as such, lists and nulls as JSON text (DESCRIPTION `JSON_DESCRIPTION`).

astropy's registry writer (``Table.write(format="votable")``) keeps the columns but not
the table's ``meta``; this module builds the same document (`astropy.io.votable.from_table`)
and adds the PARAMs.  Any VOTable reader, ``Table.read`` included, reads the file.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path
from xml.sax.saxutils import unescape

from astropy.io.votable import from_table, parse
from astropy.io.votable.tree import Param, VOTableFile
from astropy.table import QTable, Table

from ..files import atomic_output
from ..fit.results import SceneFit
from .columns import COLUMNS, EXPOSURE_COLUMNS, ab_magnitudes, plain_magnitudes
from .provenance import flat_meta, json_ready, meta_from_flat, scalar
from .record import fit_record

__all__ = ["JSON_DESCRIPTION", "TABLE_ID", "read_votable", "votable_bytes", "votable_of",
           "write_votable"]

#: DESCRIPTION of the PARAMs whose value is JSON text (lists, nulls).
JSON_DESCRIPTION = "value as JSON text"

#: ID of the TABLE element.
TABLE_ID = "smp_table"


def votable_of(fit_or_table: SceneFit | Table) -> VOTableFile:
    """The VOTable of a fit's flux table (or of any table): one RESOURCE with one TABLE,
    FIELDs with units, UCDs and descriptions, PARAMs with the metadata."""
    table = (fit_record(fit_or_table).table() if isinstance(fit_or_table, SceneFit)
             else fit_or_table)
    plain = plain_magnitudes(table)
    plain.meta = {}
    for name in plain.colnames:
        column_meta = plain[name].info.meta
        known = COLUMNS.get(name) or EXPOSURE_COLUMNS.get(name)
        if known is not None and known.ucd and "ucd" not in column_meta:
            column_meta["ucd"] = known.ucd
        if plain[name].dtype.kind == "U":
            # ASCII text as variable-length char (arraysize="1" is deprecated)
            column_meta.update(_votable_string_dtype="char", _votable_arraysize="*")
    document = from_table(plain, table_id=TABLE_ID)
    element = document.get_first_table()
    element.name = str(table.meta.get("name") or TABLE_ID)
    if table.meta.get("description"):
        element.description = str(table.meta["description"])
    # The metadata as PARAMs of the RESOURCE: names such as "ra" or "band" would repeat
    # FIELD names within the TABLE.
    resource = document.resources[0]
    for n, (key, value) in enumerate(flat_meta(dict(table.meta)).items()):
        resource.params.append(_param(document, f"meta{n}", key, value))
    return document


def votable_bytes(fit_or_table: SceneFit | Table) -> bytes:
    """`votable_of` as the bytes of a VOTable file (what a SAMP table message sends)."""
    stream = io.BytesIO()
    votable_of(fit_or_table).to_xml(stream)
    return stream.getvalue()


def write_votable(fit_or_table: SceneFit | Table, path: str | os.PathLike,
                  overwrite: bool = False) -> Path:
    """Write `votable_of` to ``path`` (atomic, no silent overwrite)."""
    document = votable_of(fit_or_table)
    with atomic_output(path, overwrite) as tmp:
        document.to_xml(str(tmp))
    return Path(path)


def read_votable(path: str | os.PathLike) -> QTable:
    """A VOTable written by `write_votable`, back as a `QTable`: units, AB magnitudes
    (`smp_model.outputs.columns.ab_magnitudes`), descriptions and the metadata from the
    PARAMs."""
    document = parse(str(path))
    table = document.get_first_table().to_table(use_names_over_ids=True)
    flat = {}
    for param in document.resources[0].params:
        value = param.value
        if param.description == JSON_DESCRIPTION:
            value = json.loads(value)
        elif hasattr(value, "item"):
            value = value.item()
        flat[param.name] = value
    table.meta = meta_from_flat(flat)
    return ab_magnitudes(table)


def _param(document: VOTableFile, param_id: str, key: str, meta_value) -> Param:
    value = scalar(meta_value)   # None for lists and nulls: JSON text
    common = {"ID": param_id, "name": key}
    if isinstance(value, bool):
        return Param(document, datatype="boolean", value=value, **common)
    if isinstance(value, int):
        return Param(document, datatype="long", value=value, **common)
    if isinstance(value, float):
        return Param(document, datatype="double", value=value, **common)
    if value is None:
        param = _text_param(document, json.dumps(json_ready(meta_value)), common)
        param.description = JSON_DESCRIPTION
        return param
    return _text_param(document, value, common)


def _text_param(document: VOTableFile, text: str, common: dict) -> Param:
    """A char PARAM of ``text``.  astropy 8.0 escapes a char PARAM's value twice (its
    converter escapes it as element text, then the writer as an attribute: ``<`` becomes
    ``&amp;lt;``, and every reader shows ``&lt;``); the converter's output is unescaped
    here so that the attribute is escaped once."""
    param = Param(document, datatype="char", arraysize="*", value=text, **common)
    escaped_output = param.converter.output
    param.converter.output = lambda value, mask: unescape(escaped_output(value, mask))
    return param
