"""A batch result as a survey: one row per detection, filtered, sorted and curated.

`Survey.open` reads a `smp batch` output (ECSV, FITS or CSV; see `smp_model.batch`) and
keeps, per detection, the row of its target (single fit) or primary (binary) with the
columns a reviewer needs (``key, name, band, mjd, fit_kind, flux, flux_err, mag, mag_err,
total_flux`` (of a pair), ``chi2_dof, binary_delta_chi2, flags, n_exposures, n_dropped``
and the rest of the batch
columns), the failures of ``<out stem>.failures.ecsv``, and the marks of the review
sidecar.  Everything is plain numpy columns so that a 10,000-detection survey filters and
sorts in milliseconds.  No Qt here: the survey window (`smp_gui.survey`) shows this model.

Filters are a small safe language (`compile_filter`; nothing is evaluated as Python):
comparisons of columns with numbers, quoted strings or other columns, joined by ``and``,
``or``, ``not`` and parentheses, e.g. ``chi2_dof > 1.5 and flags & exposure_dropped != 0``
(flag names stand for their bits, `FLAG_NAMES`).

Review marks (good / bad / binary candidate, a note, and optionally a refit saved from the
inspector) live in the sidecar ``<out stem>.review.ecsv`` next to the batch output
(`ReviewSidecar`), written atomically; the batch output itself is never written.

Units and conventions are the batch's: fluxes on zeropoint 30, magnitudes
``30 - 2.5 log10 flux``, offsets in detection-exposure pixels (published order), MJD of the
detection exposure (NaN when unknown).
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table

from .errors import SMPError
from .io_utils import TABLE_FORMATS, atomic_write
from .record import FLAG_BITS, FLAGS
from .scene import FitSettings

REVIEW_SUFFIX = ".review.ecsv"
FAILURES_SUFFIX = ".failures.ecsv"   # as `smp_model.batch.FAILURES_SUFFIX`
MARKS = ("good", "bad", "binary")     # "binary": binary candidate
#: The record's flag for lost exposures; batch outputs written before the record had it
#: get it from their ``n_dropped`` column.
FLAG_EXPOSURE_DROPPED = FLAG_BITS["exposure_dropped"]
#: Bit -> name of every flag (the record's registry).  Filters may use the names:
#: ``flags & exposure_dropped != 0``.
FLAG_NAMES = {f.bit: f.name for f in FLAGS}
#: Columns shown first, in this order (the others follow as in the batch).
DISPLAY_COLUMNS = ("key", "name", "band", "mjd", "fit_kind", "flux", "flux_err", "mag",
                   "mag_err", "total_flux", "chi2_dof", "binary_delta_chi2", "flags", "flags_text",
                   "n_exposures", "n_dropped", "mark", "note")
# Columns the view needs, with what an older batch output without them gets.
_DEFAULTS = {"name": "", "band": "", "fit_kind": "single", "input": "", "flux": math.nan,
             "flux_err": math.nan, "mag": math.nan, "mag_err": math.nan, "chi2": math.nan,
             "dof": 0, "flags": 0, "n_exposures": -1, "n_dropped": -1, "mjd": math.nan,
             "binary_delta_chi2": math.nan, "dx": math.nan, "dy": math.nan}
# Reading every manifest for its MJD is a fallback for small, older batches only.
MJD_FROM_MANIFESTS_MAX = 2000


class SurveyError(SMPError):
    """A batch output or review sidecar that cannot be used."""


class FilterError(ValueError):
    """A filter expression that cannot be parsed or applied (message for the user)."""


# -- reading ------------------------------------------------------------------------------

def read_table(path: str | os.PathLike) -> Table:
    """A batch output table (plain columns, units dropped, meta kept).

    ECSV is read with astropy's fast C reader for the data and astropy's YAML header
    reader for the columns and meta: the pure-Python ECSV reader takes ~1.5 s for 10,000
    rows here, the C reader ~0.2 s."""
    path = Path(path)
    if not path.is_file():
        raise SurveyError("batch output not found" if not path.exists() else "is not a file",
                          path)
    fmt = TABLE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise SurveyError(f"unknown table format {path.suffix!r}; use "
                          f"{', '.join(sorted(TABLE_FORMATS))}", path)
    try:
        if fmt == "ascii.ecsv":
            return _read_ecsv_fast(path)
        if fmt == "fits":
            return _read_fits(path)
        return Table.read(path, format=fmt)
    except SurveyError:
        raise
    except Exception as exc:   # astropy raises many types for unreadable tables
        raise SurveyError(f"cannot read table ({' '.join(str(exc).split())})", path) from None


def _read_ecsv_fast(path: Path) -> Table:
    from astropy.io import ascii
    from astropy.table.meta import get_header_from_yaml
    header_lines = []
    with open(path, encoding="utf-8") as stream:
        first = stream.readline()
        if not first.startswith("# %ECSV"):
            raise SurveyError("not an ECSV file (no '# %ECSV' first line)", path)
        for line in stream:
            if not line.startswith("#"):
                break
            header_lines.append(line[2:].rstrip("\n"))
    header = get_header_from_yaml(header_lines)
    datatypes = {c["name"]: c.get("datatype", "string") for c in header["datatype"]}
    if any(c.get("subtype") for c in header["datatype"]):
        return _plain(Table.read(path, format="ascii.ecsv"))   # multidimensional cells
    data = ascii.read(path, format="fast_basic", delimiter=" ", comment="#", quotechar='"',
                      guess=False, fast_reader=True)
    if any(datatypes.get(name, "string") == "string" and data[name].dtype.kind != "U"
           for name in data.colnames):
        # text that reads as numbers ("007"): only the ECSV reader keeps it as written
        return _plain(Table.read(path, format="ascii.ecsv"))
    table = Table(meta=dict(header.get("meta") or {}))
    table.meta.pop("__serialized_columns__", None)
    for name in data.colnames:
        kind = datatypes.get(name, "string")
        column = np.asarray(data[name])
        if kind == "string":
            if hasattr(data[name], "mask"):
                column = np.where(np.ma.getmaskarray(data[name]), "", column)
        elif kind == "bool":
            column = _bools(data[name])
        else:
            column = np.ma.filled(data[name].astype(kind), _fill(kind))
        table[name] = column
    return table


def _plain(table: Table) -> Table:
    """Plain columns (Quantity columns of a QTable-like read lose their units)."""
    out = Table(meta=dict(table.meta))
    out.meta.pop("__serialized_columns__", None)
    for name in table.colnames:
        out[name] = np.asarray(getattr(table[name], "value", table[name]))
    return out


def _bools(column) -> np.ndarray:
    values = np.asarray(np.ma.filled(column.astype(str), "False"))
    return np.char.lower(values) == "true"


def _fill(kind: str):
    return math.nan if kind.startswith("float") else 0


def _read_fits(path: Path) -> Table:
    from astropy.io import fits
    with fits.open(path, memmap=False) as hdus:
        table = Table(hdus[1].data)
        meta = _unflatten_fits_meta(hdus[1].header)
    for name in table.colnames:
        table[name].unit = None
        if table[name].dtype.kind == "S":
            table[name] = np.char.decode(table[name]).astype(str)
    table.meta = meta
    return table


def _unflatten_fits_meta(header) -> dict:
    """The flattened ``SMP ...`` cards of `smp_model.results.write_table`, as far as they
    can be recovered (settings for the inspector)."""
    meta: dict = {}
    settings = {}
    for key, value in header.items():
        if not key.startswith("SMP "):
            continue
        name = key[4:].lower()
        if name.startswith("settings_"):
            settings[name[len("settings_"):]] = value
        else:
            meta[name] = value
    if settings:
        meta["settings"] = settings
    return meta


def detection_mjd(manifest_path: str | os.PathLike) -> float:
    """MJD of a manifest's detection exposure: its optional ``mjd`` key, else the
    ``MJD-OBS`` card of its stamp file; NaN when neither is there or readable."""
    try:
        path = Path(manifest_path)
        if path.is_dir():
            path = path / "detection.toml"
        doc = tomllib.loads(path.read_text())
        det = doc.get("detection", {})
        for entry in doc.get("exposures", []):
            if (entry.get("expnum"), entry.get("ccdnum")) != (det.get("expnum"),
                                                              det.get("ccdnum")):
                continue
            if entry.get("mjd") is not None:
                return float(entry["mjd"])
            return _stamp_mjd(path.parent / entry["stamp"])
    except (OSError, ValueError, KeyError, TypeError, tomllib.TOMLDecodeError):
        pass
    return math.nan


def _stamp_mjd(stamp: Path) -> float:
    from astropy.io import fits
    with fits.open(stamp, memmap=False) as hdus:
        for hdu in hdus:
            if "MJD-OBS" in hdu.header:
                return float(hdu.header["MJD-OBS"])
    return math.nan


def settings_from_meta(meta: dict) -> FitSettings | None:
    """The batch's `FitSettings` from its table meta (None when absent or unusable)."""
    settings = meta.get("settings")
    if not isinstance(settings, dict):
        return None
    known = {k: settings[k] for k in ("grid_size", "grid_step_arcsec", "fit_sky",
                                      "convention", "oversampling") if k in settings}
    try:
        if "fit_sky" in known and isinstance(known["fit_sky"], str):
            known["fit_sky"] = known["fit_sky"].lower() == "true"
        return FitSettings(**known)
    except (TypeError, ValueError):
        return None


def decode_flags(flags: int) -> str:
    """Names of the bits set in ``flags`` (`FLAG_NAMES`), comma separated."""
    flags = int(flags)
    names = [name for bit, name in FLAG_NAMES.items() if flags & bit]
    unknown = flags & ~sum(FLAG_NAMES)
    if unknown:
        names.append(f"bits {unknown}")
    return ", ".join(names)


# -- the survey ---------------------------------------------------------------------------

@dataclass(frozen=True)
class OpenSpec:
    """How to show one detection of the batch in the inspector: its manifest, the batch's
    settings, the kept fit kind and the offsets of the batch's kept fit (published order:
    (dx, dy) or (dx1, dx2, dy1, dy2), detection-exposure pixels)."""
    key: str
    manifest: Path
    settings: FitSettings
    mode: str
    offsets: tuple[float, ...]


@dataclass
class Survey:
    """One row per detection of a batch output (see the module docstring).

    ``columns``: name -> numpy array, one entry per detection in batch order.
    ``rows``: the batch table itself (one row per source).  ``failures``: the failures
    table (None when the batch had none or it is missing).  ``notes``: what was missing
    from an older batch output and how the survey degrades.
    """
    path: Path
    rows: Table
    columns: dict[str, np.ndarray]
    meta: dict
    settings: FitSettings
    failures: Table | None
    review: "ReviewSidecar"
    notes: list[str] = field(default_factory=list)
    _key_index: dict[str, int] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, path: str | os.PathLike) -> "Survey":
        path = Path(path).absolute()
        rows = read_table(path)
        if "key" not in rows.colnames:
            raise SurveyError("not a `smp batch` output (no 'key' column)", path)
        notes = []
        settings = settings_from_meta(rows.meta)
        if settings is None:
            notes.append("no settings in the batch meta: the inspector uses the defaults")
            settings = FitSettings()
        keys = np.asarray(rows["key"]).astype(str)
        _, first = np.unique(keys, return_index=True)
        first.sort()   # batch order
        counts = np.diff(np.append(first, len(keys)))
        columns: dict[str, np.ndarray] = {}
        for name in rows.colnames:
            columns[name] = np.asarray(rows[name])[first]
        for name, default in _DEFAULTS.items():
            if name not in columns:
                if name not in ("binary_delta_chi2", "mjd"):
                    notes.append(f"no '{name}' column in the batch output")
                columns[name] = np.full(len(first), default)
        columns["n_sources"] = counts
        with np.errstate(divide="ignore", invalid="ignore"):
            columns["chi2_dof"] = (columns["chi2"].astype(float)
                                   / columns["dof"].astype(float))
        columns["chi2_dof"][~np.isfinite(columns["chi2_dof"])] = math.nan
        if "mjd" not in rows.colnames:
            columns["mjd"] = _mjd_from_manifests(columns["input"], notes)
        flags = columns["flags"].astype(np.int64)
        dropped = columns["n_dropped"].astype(np.int64) > 0
        columns["flags"] = flags | np.where(dropped, FLAG_EXPOSURE_DROPPED, 0)
        unique_flags = {int(f): decode_flags(f) for f in np.unique(columns["flags"])}
        columns["flags_text"] = np.array([unique_flags[int(f)] for f in columns["flags"]],
                                         dtype=object).astype(str)
        failures = _read_failures(path)
        review = ReviewSidecar.for_batch(path)
        survey = cls(path, rows, columns, dict(rows.meta), settings, failures, review, notes)
        survey._key_index = {k: i for i, k in enumerate(columns["key"].astype(str))}
        survey.refresh_marks()
        return survey

    def __len__(self) -> int:
        return len(self.columns["key"])

    @property
    def column_names(self) -> list[str]:
        """Display order: `DISPLAY_COLUMNS` first, then the other batch columns."""
        rest = [c for c in self.columns if c not in DISPLAY_COLUMNS]
        return [c for c in DISPLAY_COLUMNS if c in self.columns] + rest

    @property
    def keys(self) -> np.ndarray:
        return self.columns["key"]

    def index_of(self, key: str) -> int:
        try:
            return self._key_index[key]
        except KeyError:
            raise KeyError(f"no detection {key!r} in {self.path.name}") from None

    def refresh_marks(self) -> None:
        """Copy the sidecar's marks and notes into the ``mark`` and ``note`` columns."""
        marks = np.full(len(self), "", dtype=object)
        notes = np.full(len(self), "", dtype=object)
        for key, entry in self.review.entries.items():
            i = self._key_index.get(key)
            if i is not None:
                marks[i], notes[i] = entry.mark, entry.note
        self.columns["mark"] = marks.astype(str) if len(self) else np.array([], str)
        self.columns["note"] = notes.astype(str) if len(self) else np.array([], str)

    def set_mark(self, key: str, mark: str | None = None, note: str | None = None) -> None:
        """Mark ``key`` (good/bad/binary, "" to clear; None: unchanged) and/or set its
        note, and save the sidecar."""
        i = self.index_of(key)
        self.review.set(key, mark=mark, note=note)
        self.review.save()
        entry = self.review.entries.get(key)
        self.columns["mark"] = _set_str(self.columns["mark"], i, entry.mark if entry else "")
        self.columns["note"] = _set_str(self.columns["note"], i, entry.note if entry else "")

    # -- finding ---------------------------------------------------------------------

    def select(self, expression: str = "", sort_by: str | None = None,
               descending: bool = False) -> np.ndarray:
        """Indices of the detections matching ``expression`` (all when blank), in batch
        order or sorted by ``sort_by`` (NaN and blanks last)."""
        mask = compile_filter(expression, self.columns)
        indices = np.flatnonzero(mask)
        if sort_by:
            indices = sort_indices(self.columns, indices, sort_by, descending)
        return indices

    def open_spec(self, key: str) -> OpenSpec:
        """How to show ``key`` in the inspector (`OpenSpec`); SurveyError when the batch
        row does not name a manifest."""
        i = self.index_of(key)
        manifest = Path(str(self.columns["input"][i]))
        if not manifest.name or not (manifest.suffix == ".toml" or manifest.is_dir()):
            raise SurveyError(f"detection {key} was not fitted from a manifest "
                              f"({manifest}); open its folder with File > Open folder",
                              self.path)
        mode = "binary" if str(self.columns["fit_kind"][i]) == "binary" else "single"
        rows = self.source_rows(key)
        dx = [float(v) for v in np.asarray(rows["dx"], float)] if "dx" in rows.colnames \
            else []
        dy = [float(v) for v in np.asarray(rows["dy"], float)] if "dy" in rows.colnames \
            else []
        n = 2 if mode == "binary" else 1
        if len(dx) == n and all(math.isfinite(v) for v in dx + dy):
            offsets = tuple(dx + dy) if n == 2 else (dx[0], dy[0])
        else:   # an older output without offsets: the convention's default start
            offsets = (self.settings.default_binary_offsets if n == 2
                       else self.settings.default_offset)
        return OpenSpec(key, manifest, self.settings, mode, tuple(offsets))

    def source_rows(self, key: str) -> Table:
        """The batch rows (one per source) of ``key``."""
        mask = np.asarray(self.rows["key"]).astype(str) == key
        return self.rows[mask]

    # -- light curves --------------------------------------------------------------------

    def light_curve(self, name: str, indices: np.ndarray | None = None
                    ) -> dict[str, dict[str, np.ndarray]]:
        """Per band: ``{"index", "mjd", "mag", "mag_err"}`` of object ``name`` (restricted
        to ``indices`` when given), sorted by MJD; detections without MJD or magnitude are
        left out."""
        cols = self.columns
        chosen = np.arange(len(self)) if indices is None else np.asarray(indices)
        chosen = chosen[cols["name"][chosen].astype(str) == name]
        good = np.isfinite(cols["mjd"][chosen].astype(float)) & \
            np.isfinite(cols["mag"][chosen].astype(float))
        chosen = chosen[good]
        out = {}
        for band in sorted(set(cols["band"][chosen].astype(str))):
            idx = chosen[cols["band"][chosen].astype(str) == band]
            idx = idx[np.argsort(cols["mjd"][idx].astype(float), kind="stable")]
            out[band] = {"index": idx, "mjd": cols["mjd"][idx].astype(float),
                         "mag": cols["mag"][idx].astype(float),
                         "mag_err": cols["mag_err"][idx].astype(float)}
        return out

    # -- export --------------------------------------------------------------------------

    def curated_table(self, keys: Iterable[str] | None = None) -> Table:
        """The batch rows (all sources) of ``keys`` (default all), with ``mark``,
        ``note`` and the reviewed refit columns of the sidecar joined on ``key``."""
        rows = self.rows
        if keys is not None:
            wanted = set(keys)
            rows = rows[np.isin(np.asarray(rows["key"]).astype(str), list(wanted))]
        out = Table(rows, copy=True)
        keys_col = np.asarray(out["key"]).astype(str)
        entries = [self.review.entries.get(k) for k in keys_col]
        out["mark"] = np.array([e.mark if e else "" for e in entries], dtype=str) \
            if len(out) else np.array([], str)
        out["note"] = np.array([e.note if e else "" for e in entries], dtype=str) \
            if len(out) else np.array([], str)
        for name in REVIEWED_FLOAT_COLUMNS:
            out[name] = [e.reviewed.get(name, math.nan) if e else math.nan for e in entries]
        for name in REVIEWED_STR_COLUMNS:
            out[name] = [e.reviewed.get(name, "") if e else "" for e in entries]
        out.meta = dict(self.meta)
        out.meta["review"] = {"batch": str(self.path), "sidecar": str(self.review.path),
                              "marks": {m: int(np.sum(out["mark"] == m)) for m in MARKS}}
        return out

    def export_curated(self, path: str | os.PathLike, keys: Iterable[str] | None = None,
                       overwrite: bool = False) -> Path:
        """Write `curated_table` (ECSV, FITS or CSV by extension; atomic, no silent
        overwrite).  Refuses to write over the batch output or its sidecar."""
        from .results import write_table
        target = Path(path).absolute()
        if target in (self.path, self.review.path):
            raise SurveyError("refusing to overwrite the batch output or its review "
                              "sidecar; export to another file", target)
        return write_table(self.curated_table(keys), target, overwrite=overwrite)


def _set_str(column: np.ndarray, i: int, value: str) -> np.ndarray:
    if column.dtype.kind == "U" and len(value) > column.dtype.itemsize // 4:
        column = column.astype(f"U{max(len(value), 8)}")
    column[i] = value
    return column


def _mjd_from_manifests(inputs: np.ndarray, notes: list[str]) -> np.ndarray:
    if len(inputs) > MJD_FROM_MANIFESTS_MAX:
        notes.append("no 'mjd' column and too many detections to read their manifests: "
                     "no light curves")
        return np.full(len(inputs), math.nan)
    cache: dict[str, float] = {}
    values = np.array([cache.setdefault(s, detection_mjd(s)) if s.endswith(".toml")
                       else math.nan for s in inputs.astype(str)], float)
    if len(values) and not np.isfinite(values).any():
        notes.append("no 'mjd' column and no MJD in the manifests or stamps: no light curves")
    return values


def _read_failures(path: Path) -> Table | None:
    failures = path.with_name(path.stem + FAILURES_SUFFIX)
    if not failures.is_file():
        return None
    try:
        return Table.read(failures, format="ascii.ecsv")
    except Exception:   # noqa: BLE001 - a damaged failures list must not hide the results
        return None


def sort_indices(columns: dict[str, np.ndarray], indices: np.ndarray, by: str,
                 descending: bool = False) -> np.ndarray:
    """``indices`` ordered by column ``by`` (stable; NaN and empty strings last either
    way)."""
    if by not in columns:
        raise FilterError(f"no column {by!r}")
    values = columns[by][indices]
    if values.dtype.kind in "fiub":
        values = values.astype(float)
        missing = np.isnan(values)
        key = np.where(missing, 0.0, -values if descending else values)
    else:
        values = values.astype(str)
        missing = values == ""
        _, ranks = np.unique(values, return_inverse=True)
        key = -ranks if descending else ranks
    # lexsort: the last key is the primary one; equal values keep batch order
    return indices[np.lexsort((key, missing))]


# -- rotation ---------------------------------------------------------------------------

@dataclass(frozen=True)
class RotationFit:
    """A sinusoid fitted to a light curve folded at ``period_hours``:
    ``mag = mean_mag + (amplitude_mag / 2) cos(2 pi (phase - phase_max_faint))`` where
    ``phase = frac(mjd * 24 / period_hours)``; ``amplitude_mag`` is peak to peak."""
    period_hours: float
    mean_mag: float
    amplitude_mag: float
    amplitude_err: float
    phase_max_faint: float
    chi2: float
    n: int

    def model(self, phase: np.ndarray) -> np.ndarray:
        return self.mean_mag + 0.5 * self.amplitude_mag * np.cos(
            2 * np.pi * (np.asarray(phase) - self.phase_max_faint))


def fold(mjd: np.ndarray, period_hours: float) -> np.ndarray:
    """Rotational phase in [0, 1) of MJDs (days) for a period in hours."""
    return np.mod(np.asarray(mjd, float) * 24.0 / period_hours, 1.0)


def fit_rotation(mjd, mag, mag_err, period_hours: float) -> RotationFit | None:
    """Weighted linear least-squares sinusoid at a known period (None with fewer than 4
    usable points)."""
    mjd, mag, err = (np.asarray(v, float) for v in (mjd, mag, mag_err))
    good = np.isfinite(mjd) & np.isfinite(mag) & np.isfinite(err) & (err > 0)
    if good.sum() < 4:
        return None
    phase = 2 * np.pi * fold(mjd[good], period_hours)
    design = np.column_stack([np.ones(good.sum()), np.cos(phase), np.sin(phase)])
    w = 1.0 / err[good]
    coef, *_ = np.linalg.lstsq(design * w[:, None], mag[good] * w, rcond=None)
    cov = np.linalg.inv((design * w[:, None]).T @ (design * w[:, None]))
    chi2 = float(np.sum(((design @ coef - mag[good]) * w) ** 2))
    a, b = coef[1], coef[2]
    half = math.hypot(a, b)
    grad = np.array([a, b]) / half if half > 0 else np.zeros(2)
    half_err = math.sqrt(max(float(grad @ cov[1:, 1:] @ grad), 0.0))
    return RotationFit(period_hours, float(coef[0]), 2 * half, 2 * half_err,
                       (math.atan2(b, a) / (2 * math.pi)) % 1.0, chi2, int(good.sum()))


# -- the filter language -------------------------------------------------------------------

_TOKEN = re.compile(r"""\s*(?:
    (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)\b)
  | (?P<string>"[^"]*"|'[^']*')
  | (?P<op>==|!=|<=|>=|<|>|&|\(|\))
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  )""", re.VERBOSE | re.IGNORECASE)
_COMPARE = {"==": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal,
            ">": np.greater, ">=": np.greater_equal}
_KEYWORDS = ("and", "or", "not")
_FLAG_BITS = {name: bit for bit, name in FLAG_NAMES.items()}


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise FilterError(f"cannot read {text[pos:].strip()[:20]!r} (at character "
                              f"{pos + 1})")
        kind = match.lastgroup
        value = match.group(kind)
        if kind == "name" and value.lower() in _KEYWORDS:
            kind, value = "keyword", value.lower()
        out.append((kind, value))
        pos = match.end()
    return out


class _Parser:
    """Recursive descent over: or := and ('or' and)*; and := not ('and' not)*;
    not := 'not' not | '(' or ')' | comparison; comparison := operand OP operand;
    operand := atom ('&' atom)?; atom := column | number | string."""

    def __init__(self, tokens, columns: dict[str, np.ndarray]):
        self.tokens, self.pos, self.columns = tokens, 0, columns
        self.n = len(next(iter(columns.values()))) if columns else 0

    def peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else (None, None)

    def take(self):
        token = self.peek()
        self.pos += 1
        return token

    def parse(self) -> np.ndarray:
        mask = self.or_()
        if self.pos != len(self.tokens):
            raise FilterError(f"unexpected {self.peek()[1]!r}")
        return mask

    def or_(self):
        mask = self.and_()
        while self.peek() == ("keyword", "or"):
            self.take()
            mask = mask | self.and_()
        return mask

    def and_(self):
        mask = self.not_()
        while self.peek() == ("keyword", "and"):
            self.take()
            mask = mask & self.not_()
        return mask

    def not_(self):
        if self.peek() == ("keyword", "not"):
            self.take()
            return ~self.not_()
        if self.peek() == ("op", "("):
            self.take()
            mask = self.or_()
            if self.take() != ("op", ")"):
                raise FilterError("missing ')'")
            return mask
        return self.comparison()

    def comparison(self):
        left = self.operand()
        kind, op = self.take()
        if kind != "op" or op not in _COMPARE:
            raise FilterError("expected a comparison (==, !=, <, <=, >, >=) after "
                              f"{left[1]!r}" + (f", got {op!r}" if op else ""))
        right = self.operand()
        return _compare(op, left, right, self.n)

    def operand(self):
        value = self.atom()
        if self.peek() == ("op", "&"):
            self.take()
            mask = self.atom()
            a, b = _numeric(value), _numeric(mask)
            if a is None or b is None:
                raise FilterError("'&' needs integer operands (e.g. flags & 4)")
            return ("value", np.bitwise_and(np.asarray(a).astype(np.int64),
                                            np.asarray(b).astype(np.int64)),
                    f"{value[2]} & {mask[2]}")
        return value

    def atom(self):
        kind, text = self.take()
        if kind == "number":
            return ("value", float(text), text)
        if kind == "string":
            return ("string", text[1:-1], text)
        if kind == "name":
            column = self.columns.get(text)
            if column is None:
                lower = {c.lower(): c for c in self.columns}
                if text.lower() in lower:
                    column = self.columns[lower[text.lower()]]
                elif text.lower() in _FLAG_BITS:
                    return ("value", float(_FLAG_BITS[text.lower()]), text)
                else:
                    raise FilterError(f"no column or flag {text!r}; columns: "
                                      f"{', '.join(sorted(self.columns))}; flags: "
                                      f"{', '.join(_FLAG_BITS)}")
            return ("column", column, text)
        raise FilterError("expected a column, number or quoted string"
                          + (f", got {text!r}" if text else " at the end"))


def _numeric(operand):
    kind, value, _ = operand
    if kind == "string":
        return None
    array = np.asarray(value)
    if array.dtype.kind in "fiub":
        return value
    return None


def _compare(op: str, left, right, n: int) -> np.ndarray:
    a_num, b_num = _numeric(left), _numeric(right)
    if a_num is not None and b_num is not None:
        with np.errstate(invalid="ignore"):
            result = _COMPARE[op](np.asarray(a_num, float), np.asarray(b_num, float))
    else:
        if op not in ("==", "!="):
            raise FilterError(f"{left[2]} {op} {right[2]}: text compares with == or != only")
        if (a_num is not None and left[0] != "column") or \
                (b_num is not None and right[0] != "column"):
            raise FilterError(f"{left[2]} {op} {right[2]}: compares text with a number")
        a = np.asarray(left[1]).astype(str)
        b = np.asarray(right[1]).astype(str)
        result = _COMPARE[op](a, b)
    return np.broadcast_to(np.asarray(result, bool), (n,)).copy()


def compile_filter(expression: str, columns: dict[str, np.ndarray]) -> np.ndarray:
    """Boolean mask (one per detection) of the rows matching ``expression``.

    Grammar: comparisons ``A op B`` (op: ``== != < <= > >=``; A, B: a column name, a
    number, ``nan``/``inf``, a flag name (its bit, `FLAG_NAMES`) or a quoted string;
    ``A & N`` tests bits), joined by ``and``,
    ``or``, ``not`` and parentheses.  Comparisons with NaN are false.  Text compares
    with ``==``/``!=`` only.  Raises `FilterError` with a message for the user.  Nothing
    in the expression is run as code."""
    n = len(next(iter(columns.values()))) if columns else 0
    if not expression or not expression.strip():
        return np.ones(n, bool)
    tokens = _tokens(expression)
    return _Parser(tokens, columns).parse()


# -- the review sidecar ---------------------------------------------------------------------

REVIEWED_FLOAT_COLUMNS = ("reviewed_flux", "reviewed_flux_err", "reviewed_mag",
                          "reviewed_mag_err", "reviewed_flux2", "reviewed_flux2_err",
                          "reviewed_chi2", "reviewed_dof", "reviewed_delta_chi2")
REVIEWED_STR_COLUMNS = ("reviewed_fit_kind", "reviewed_offsets", "reviewed_request")


@dataclass
class ReviewEntry:
    """The review of one detection: ``mark`` (good, bad, binary or ""), a ``note``, when
    it was last changed (ISO UTC) and the reviewed refit (`REVIEWED_*_COLUMNS`; empty
    when none was saved)."""
    mark: str = ""
    note: str = ""
    updated: str = ""
    reviewed: dict[str, Any] = field(default_factory=dict)


@dataclass
class ReviewSidecar:
    """Marks, notes and reviewed refits of a batch, in ``<out stem>.review.ecsv``.

    The sidecar is a plain ECSV table (one row per reviewed detection) written
    atomically on every `save`; the batch output is never written."""
    path: Path
    batch: Path
    entries: dict[str, ReviewEntry] = field(default_factory=dict)

    @classmethod
    def for_batch(cls, batch: str | os.PathLike) -> "ReviewSidecar":
        batch = Path(batch).absolute()
        sidecar = cls(batch.with_name(batch.stem + REVIEW_SUFFIX), batch)
        if sidecar.path.is_file():
            sidecar.load()
        return sidecar

    def load(self) -> None:
        try:
            table = Table.read(self.path, format="ascii.ecsv")
        except Exception as exc:   # noqa: BLE001 - astropy raises many types
            raise SurveyError(f"cannot read the review sidecar "
                              f"({' '.join(str(exc).split())})", self.path) from None
        if "key" not in table.colnames:
            raise SurveyError("not a review sidecar (no 'key' column)", self.path)
        self.entries = {}
        for name in table.colnames:   # ECSV reads empty text back as masked
            if hasattr(table[name], "mask"):
                table[name] = table[name].filled("" if table[name].dtype.kind in "US"
                                                 else math.nan)
        for row in table:
            reviewed = {}
            for name in REVIEWED_FLOAT_COLUMNS:
                if name in table.colnames and math.isfinite(float(row[name])):
                    reviewed[name] = float(row[name])
            for name in REVIEWED_STR_COLUMNS:
                if name in table.colnames and str(row[name]):
                    reviewed[name] = str(row[name])
            self.entries[str(row["key"])] = ReviewEntry(
                str(row["mark"]) if "mark" in table.colnames else "",
                str(row["note"]) if "note" in table.colnames else "",
                str(row["updated"]) if "updated" in table.colnames else "", reviewed)

    def set(self, key: str, mark: str | None = None, note: str | None = None) -> None:
        if mark is not None and mark not in MARKS + ("",):
            raise ValueError(f"mark must be one of {', '.join(MARKS)} or empty, got {mark!r}")
        entry = self.entries.setdefault(key, ReviewEntry())
        if mark is not None:
            entry.mark = mark
        if note is not None:
            entry.note = " ".join(note.split())
        entry.updated = _now()
        if not (entry.mark or entry.note or entry.reviewed):
            del self.entries[key]

    def set_reviewed(self, key: str, fit_table: Table, request_meta: dict | None = None
                     ) -> None:
        """Keep a refit of ``key`` (its `smp_model.results.fit_table`) as the reviewed
        result, with the request (settings, offsets) that made it."""
        rows = fit_table
        first = rows[0]
        second = rows[1] if len(rows) > 1 else None

        def value(row, name):
            if row is None or name not in rows.colnames:
                return math.nan
            return float(getattr(row[name], "value", row[name]))

        meta = rows.meta
        offsets = meta.get("offsets") or []
        reviewed = {
            "reviewed_fit_kind": str(first["fit_kind"]),
            "reviewed_flux": value(first, "flux"), "reviewed_flux_err": value(first, "flux_err"),
            "reviewed_mag": value(first, "mag"), "reviewed_mag_err": value(first, "mag_err"),
            "reviewed_flux2": value(second, "flux"),
            "reviewed_flux2_err": value(second, "flux_err"),
            "reviewed_chi2": value(first, "chi2"), "reviewed_dof": value(first, "dof"),
            "reviewed_delta_chi2": value(first, "delta_chi2"),
            "reviewed_offsets": ",".join(f"{float(v):.6g}" for v in offsets),
            "reviewed_request": json.dumps(request_meta if request_meta is not None else
                                           {"settings": meta.get("settings"),
                                            "fit_kind": meta.get("fit_kind")},
                                           sort_keys=True),
        }
        entry = self.entries.setdefault(key, ReviewEntry())
        entry.reviewed = {k: v for k, v in reviewed.items()
                          if not (isinstance(v, float) and math.isnan(v))}
        entry.updated = _now()

    def table(self) -> Table:
        keys = sorted(self.entries)
        entries = [self.entries[k] for k in keys]
        table = Table()
        table["key"] = np.array(keys, dtype=str) if keys else np.array([], str)
        table["mark"] = np.array([e.mark for e in entries], dtype=str) if keys \
            else np.array([], str)
        table["note"] = np.array([e.note for e in entries], dtype=str) if keys \
            else np.array([], str)
        table["updated"] = np.array([e.updated for e in entries], dtype=str) if keys \
            else np.array([], str)
        for name in REVIEWED_FLOAT_COLUMNS:
            table[name] = np.array([e.reviewed.get(name, math.nan) for e in entries], float)
        for name in REVIEWED_STR_COLUMNS:
            table[name] = np.array([e.reviewed.get(name, "") for e in entries], dtype=str) \
                if keys else np.array([], str)
        table.meta = {"description": "review marks (good, bad, binary = binary candidate), "
                                     "notes and reviewed refits of a smp batch output",
                      "batch": str(self.batch)}
        return table

    def save(self) -> Path:
        """Write the sidecar atomically (a crash leaves the previous one intact)."""
        if self.path == self.batch:
            raise SurveyError("the review sidecar would overwrite the batch output",
                              self.path)
        table = self.table()
        return atomic_write(self.path, lambda tmp: table.write(tmp, format="ascii.ecsv",
                                                               overwrite=True),
                            overwrite=True)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

