"""The metadata of an output (settings, request, exposures, software) in the forms that
survive each file format.

ECSV keeps nested metadata as it is.  FITS and VOTable headers hold flat, typed scalars
only, and clients keep only some of them (STILTS and TOPCAT drop ``HIERARCH`` cards), so
there the metadata are flattened (`flat_meta`: nested keys joined by ``.``, list items
numbered) and written
whole as a key/value table (`provenance_rows`, values as JSON, so that every type comes
back: `meta_from_rows`), with the few facts a client shows (object, filter, date,
software) also as standard short keywords (`fits_keywords`).
"""
from __future__ import annotations

import json
import math

import numpy as np

__all__ = ["FITS_KEYWORDS", "ORIGIN", "fits_keywords", "flat_meta", "history_lines",
           "json_ready", "meta_from_flat", "meta_from_rows", "provenance_rows", "scalar"]

#: ORIGIN card of every FITS file written (FITS standard 4.4.2.1: who made the file).
ORIGIN = "SMP Inspector"

#: Flat metadata keys also written as short FITS keywords: (keyword, comment).
FITS_KEYWORDS = {
    "name": ("OBJECT", "target name"),
    "band": ("FILTER", "filter of the detection"),
    "detection_expnum": ("EXPNUM", "detection exposure"),
    "detection_ccdnum": ("CCDNUM", "detection CCD"),
    "mjd": ("MJD-OBS", "[d] start of the detection exposure (UTC)"),
    "ra": ("RA_OBJ", "[deg] target ICRS RA (the detection's)"),
    "dec": ("DEC_OBJ", "[deg] target ICRS Dec (the detection's)"),
    "fit_kind": ("FITKIND", "single or binary"),
    "settings.convention": ("CONVENTN", "pixel convention (exact or legacy)"),
    "zeropoint": ("MAGZERO", "zeropoint of the flux columns and ct unit (AB)"),
}


def flat_meta(meta: dict, prefix: str = "") -> dict:
    """``meta`` with nested dicts flattened (keys joined by ``.``), lists of dicts too (the
    items' keys numbered: ``per_exposure.0.expnum``); other values (lists of scalars, None)
    are kept as they are."""
    flat = {}
    for key, value in meta.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flat_meta(value, f"{name}."))
        elif _list_of_dicts(value):
            flat.update(flat_meta({str(n): item for n, item in enumerate(value)}, f"{name}."))
        else:
            flat[name] = value
    return flat


def meta_from_flat(flat: dict) -> dict:
    """Nested metadata from `flat_meta`'s form (numbered keys back as lists)."""
    meta: dict = {}
    for key, value in flat.items():
        *parents, last = key.split(".")
        node = meta
        for parent in parents:
            node = node.setdefault(parent, {})
        node[last] = value
    return _numbered_as_lists(meta)


def _list_of_dicts(value) -> bool:
    return isinstance(value, (list, tuple)) and bool(value) and \
        all(isinstance(item, dict) for item in value)


def _numbered_as_lists(node):
    """Dicts whose keys are ``0 .. n-1`` (`flat_meta`'s numbered items) as lists."""
    if not isinstance(node, dict):
        return node
    node = {key: _numbered_as_lists(value) for key, value in node.items()}
    if node and list(node) == [str(n) for n in range(len(node))]:
        return list(node.values())
    return node


def scalar(value):
    """``value`` as a FITS/VOTable scalar (bool, int, float, str), or None when it is
    not one (lists, None: those are written as JSON)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, str):
        return value
    return None


def provenance_rows(meta: dict) -> tuple[list[str], list[str]]:
    """(keys, values) of the provenance table: every `flat_meta` entry, its value as
    JSON (NaN written as ``NaN``, as Python reads it)."""
    flat = flat_meta(meta)
    return list(flat), [json.dumps(json_ready(v)) for v in flat.values()]


def meta_from_rows(keys, values) -> dict:
    """The metadata of a provenance table (`provenance_rows`)."""
    return meta_from_flat({str(k): json.loads(str(v)) for k, v in zip(keys, values)})


def fits_keywords(meta: dict) -> list[tuple[str, object, str]]:
    """(keyword, value, comment) of the short FITS keywords for ``meta``: those of
    `FITS_KEYWORDS` present with a finite scalar value."""
    flat = flat_meta(meta)
    cards = []
    for key, (keyword, comment) in FITS_KEYWORDS.items():
        value = scalar(flat.get(key))
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            continue
        cards.append((keyword, value, comment))
    return cards


def history_lines(meta: dict) -> list[str]:
    """What the file is and how it was made, as FITS HISTORY text."""
    flat = flat_meta(meta)
    lines = [f"Written by {flat.get('software', ORIGIN)} at {flat.get('created', '?')}."]
    if "fit_kind" in flat:
        lines.append(
            f"Scene-modelling photometry (Bernardinelli et al. 2023, ApJS 269, 18): "
            f"{flat['fit_kind']} fit of {flat.get('name')} in {flat.get('band')}, detection "
            f"exposure {flat.get('detection_expnum')} CCD {flat.get('detection_ccdnum')}, "
            f"{flat.get('settings.convention')} convention, "
            f"{flat.get('settings.grid_size')}x{flat.get('settings.grid_size')} grid at "
            f"{flat.get('settings.grid_step_arcsec')} arcsec.")
    if flat.get("manifest"):
        lines.append(f"Manifest: {flat['manifest']}")
    lines.append("Every setting: the PROVENANCE extension (key, value as JSON).")
    return lines


def json_ready(value):
    """``value`` ready for `json.dumps`: numpy scalars and arrays as Python values."""
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    as_scalar = scalar(value)
    return value if as_scalar is None else as_scalar
