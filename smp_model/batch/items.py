"""The detection list of a batch: one row per detection naming a manifest or giving the
folder-input fields (`read_batch_list`), with a distinct key per detection
(`detection_key`, `distinct_keys`).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SMPError, one_line
from ..files import TABLE_FORMATS, read_input_table
from ..inputs.manifest import DetectionManifest, read_manifest_bytes

__all__ = ["FOLDER_COLUMNS", "OPTIONAL_FOLDER_COLUMNS", "BatchError", "BatchItem",
           "detection_key", "distinct_keys", "psf_sources_outside", "read_batch_list"]

FOLDER_COLUMNS = ("stamps", "psfs", "zeropoints", "name", "ra", "dec", "band", "expnum",
                  "ccdnum")


OPTIONAL_FOLDER_COLUMNS = ("color_gi", "origin_rule")


class BatchError(SMPError):
    """The batch as a whole cannot run (bad list, work directory from other settings)."""


@dataclass(frozen=True)
class BatchItem:
    """One detection of a batch.

    ``row`` is the 1-based data row in the list file; ``input`` says where the detection
    comes from (the manifest path, or the stamp directory and detection of a folder row).
    Exactly one of ``manifest`` and ``folder`` (keyword arguments of
    `smp_model.inputs.folder.manifest_from_folder`) is set, unless the row itself is unusable, in
    which case ``error`` holds (error type, one-line message) and nothing is fitted.
    """
    row: int
    key: str
    input: str
    manifest: DetectionManifest | None = None
    folder: dict | None = None
    error: tuple[str, str] | None = None
    # the manifest file's bytes as parsed (read once, for the fingerprint too)
    manifest_text: bytes = dataclasses.field(default=b"", repr=False, compare=False)

    @functools.cached_property
    def fingerprint(self) -> str:
        """Hash (hex) of what the row says: the manifest's path and text, or the folder
        row's fields.  A finished result is reused only for the same fingerprint, so an
        edited manifest or row is fitted again (files it names that changed on disk under
        the same names are not noticed: use --force)."""
        if self.manifest is not None:
            what = str(self.manifest.path).encode() + b"\0" + (
                self.manifest_text or _bytes_or_empty(self.manifest.path))
        else:
            what = json.dumps(self.folder, sort_keys=True, default=str).encode()
        return hashlib.sha256(what).hexdigest()


def _bytes_or_empty(path) -> bytes:
    """A manifest's bytes for an item built without them (not by `read_batch_list`)."""
    try:
        return Path(path).read_bytes()
    except (OSError, TypeError):
        return b""


def detection_key(name: str, expnum: int, ccdnum: int) -> str:
    """File-name-safe key ``<name>_<expnum>_<ccdnum>`` of a detection."""
    key = re.sub(r"[^A-Za-z0-9._+-]+", "_", f"{name}_{expnum}_{ccdnum}")
    return key.lstrip(".") or "_"


def read_batch_list(path: str | os.PathLike) -> list[BatchItem]:
    """The detections of a batch list (ECSV, CSV or FITS table).

    Columns (case-insensitive): ``manifest`` (a manifest path), or the folder-input fields
    ``stamps, psfs, zeropoints, name, ra, dec, band, expnum, ccdnum`` (ra/dec ICRS degrees;
    optional ``color_gi``, ``origin_rule``).  A row with an empty ``manifest`` cell uses the
    folder fields.  Relative paths are relative to the list file.  A row that cannot be
    used (manifest missing or unreadable, folder field empty) becomes an item with
    ``error`` set; problems with the list itself raise `BatchError`.
    """
    path = Path(path)
    fmt = TABLE_FORMATS.get(path.suffix.lower())
    if fmt is None and path.is_file():
        raise BatchError(f"unknown list format {path.suffix!r}; use "
                         f"{', '.join(sorted(TABLE_FORMATS))}", path)
    table = read_input_table(path, BatchError, "batch list", fmt)
    columns = {c.lower(): c for c in table.colnames}
    has_folder = all(c in columns for c in FOLDER_COLUMNS)
    if "manifest" not in columns and not has_folder:
        missing = [c for c in FOLDER_COLUMNS if c not in columns]
        raise BatchError("batch list needs a 'manifest' column or the folder columns "
                         f"{', '.join(FOLDER_COLUMNS)} (missing: {', '.join(missing)})", path)
    base = path.parent
    items = []
    for number, row in enumerate(table, start=1):
        cells = {name: _cell(row[col]) for name, col in columns.items()}
        if cells.get("manifest") is not None:
            items.append(_manifest_item(number, base, cells["manifest"]))
        elif has_folder:
            items.append(_folder_item(number, base, cells, path))
        else:
            items.append(BatchItem(number, f"row{number}", f"{path} row {number}",
                                   error=("ManifestError", f"{path}: row {number}: empty "
                                          "'manifest' cell and no folder columns")))
    return items


def _cell(value) -> Any:
    """A table cell as a Python value; masked or blank cells are None."""
    if value is None or value is np.ma.masked:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        value = value.strip()
        return value or None
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _resolve(base: Path, value) -> Path:
    return Path(os.path.normpath(base.absolute() / str(value)))


def _manifest_item(number: int, base: Path, value) -> BatchItem:
    path = _resolve(base, value)
    try:
        text = read_manifest_bytes(path)   # once: parsed here, hashed by the fingerprint
        manifest = DetectionManifest.parse(text, path)
    except SMPError as exc:
        key = detection_key(path.stem if path.stem != "detection" else path.parent.name,
                            "row", number)
        return BatchItem(number, key, str(path), error=(type(exc).__name__, exc.one_line()))
    key = detection_key(manifest.name, manifest.detection_expnum, manifest.detection_ccdnum)
    return BatchItem(number, key, str(path), manifest=manifest, manifest_text=text)


def _folder_item(number: int, base: Path, cells: dict, list_path: Path) -> BatchItem:
    missing = [c for c in FOLDER_COLUMNS if cells.get(c) is None]
    name = cells.get("name") or f"row{number}"
    label = f"{cells.get('stamps')} [{name} {cells.get('expnum')} {cells.get('ccdnum')}]"
    if missing:
        return BatchItem(number, detection_key(name, cells.get("expnum"), cells.get("ccdnum")),
                         label, error=("ManifestError", f"{list_path}: row {number}: empty "
                                       f"folder field(s) {', '.join(missing)}"))
    try:
        folder = {"stamps": _resolve(base, cells["stamps"]),
                  "psfs": _resolve(base, cells["psfs"]),
                  "zeropoints": _resolve(base, cells["zeropoints"]),
                  "name": str(cells["name"]), "ra": float(cells["ra"]),
                  "dec": float(cells["dec"]), "band": str(cells["band"]),
                  "expnum": int(cells["expnum"]), "ccdnum": int(cells["ccdnum"])}
        if cells.get("color_gi") is not None:
            folder["color_gi"] = float(cells["color_gi"])
        if cells.get("origin_rule") is not None:
            folder["origin_rule"] = str(cells["origin_rule"])
    except (TypeError, ValueError) as exc:
        return BatchItem(number, detection_key(name, cells["expnum"], cells["ccdnum"]), label,
                         error=("ManifestError",
                                f"{list_path}: row {number}: {one_line(exc)}"))
    key = detection_key(folder["name"], folder["expnum"], folder["ccdnum"])
    label = f"{folder['stamps']} [{folder['name']} {folder['expnum']} {folder['ccdnum']}]"
    problem = _folder_problem(cells, folder)
    if problem:
        return BatchItem(number, key, label,
                         error=("ManifestError", f"{list_path}: row {number}: {problem}"))
    return BatchItem(number, key, label, folder=folder)


def _folder_problem(cells: dict, folder: dict) -> str | None:
    """What is wrong with the values of a folder row (checked on the client, before any
    work), or None."""
    from ..inputs.folder import ORIGIN_RULES
    for column in ("expnum", "ccdnum"):
        value = cells[column]
        if isinstance(value, bool) or float(value) != int(float(value)):
            return f"'{column}' must be an integer, got {value!r}"
    if not 0 <= folder["ra"] <= 360:
        return f"'ra' must be in [0, 360] degrees, got {folder['ra']!r}"
    if not -90 <= folder["dec"] <= 90:
        return f"'dec' must be in [-90, 90] degrees, got {folder['dec']!r}"
    if not math.isfinite(folder.get("color_gi", 0.0)):
        return f"'color_gi' must be a finite number, got {folder['color_gi']!r}"
    rule = folder.get("origin_rule", "des")
    if rule not in ORIGIN_RULES:
        return f"'origin_rule' must be {' or '.join(ORIGIN_RULES)}, got {rule!r}"
    return None


def psf_sources_outside(items: Sequence[BatchItem], folder: str | os.PathLike) -> list[Path]:
    """PSF files (manifest rows) and PSF folders (folder rows) of ``items`` that lie
    outside ``folder`` (the list's folder): reading a Piff file runs code stored in it,
    so a batch of someone else's list should say what it will read."""
    from ..inputs.manifest import paths_outside
    paths: list[Path] = []
    for item in items:
        if item.manifest is not None:
            paths += [e.psf for e in item.manifest.exposures]
        elif item.folder is not None:
            paths.append(item.folder["psfs"])
    return paths_outside(paths, folder)


def distinct_keys(items: Sequence[BatchItem]) -> list[BatchItem]:
    """Every row of the list gets its own key, so that no detection is lost.

    Rows whose keys collide but that describe different detections (``eris x`` and
    ``eris_x`` at different RA) all get ``<key>-<hash>``, a short hash of what the row
    says (stable across re-runs and list orders).  A row that repeats an earlier row
    exactly becomes a failure that names the row it repeats (it is fitted once)."""
    groups: dict[str, list[BatchItem]] = {}
    for item in items:
        groups.setdefault(item.key, []).append(item)
    out = []
    for item in items:
        group = groups[item.key]
        if len(group) == 1 or item.error:
            out.append(item)
            continue
        fingerprint = item.fingerprint
        first = next(other for other in group if other.fingerprint == fingerprint)
        key = item.key
        if len({other.fingerprint for other in group}) > 1:
            key = f"{item.key}-{fingerprint[:8]}"
        if first is not item:
            out.append(dataclasses.replace(
                item, key=f"{key}-row{item.row}", manifest=None, folder=None,
                error=("DuplicateRow", f"row {item.row} repeats row {first.row} "
                       f"({item.input}); fitted once, as row {first.row}")))
        else:
            out.append(dataclasses.replace(item, key=key))
    return out
