"""A batch result as a survey: one row per detection, filtered, sorted and curated.

`Survey.open` reads a `smp batch` output (ECSV, FITS or CSV; see `smp_model.batch.run`) and
keeps, per detection, the row of its target (single fit) or primary (binary) with the
columns a reviewer needs (``key, name, band, mjd, fit_kind, flux, flux_err, mag, mag_err,
total_flux`` (of a pair), ``chi2_dof, binary_delta_chi2, flags, n_exposures, n_dropped``
and the rest of the batch
columns), the failures of ``<out stem>.failures.ecsv``, and the marks of the review
sidecar.  Everything is plain numpy columns so that a 10,000-detection survey filters and
sorts in milliseconds.  No Qt here: the survey window (`smp_gui.survey`) shows this model.

Filters are a small safe language (`smp_model.survey.filters.compile_filter`; nothing is
evaluated as Python), e.g. ``chi2_dof > 1.5 and flags & exposure_dropped != 0``.

Review marks (good / bad / binary candidate, a note, and optionally a refit saved from the
inspector) live in the sidecar ``<out stem>.review.ecsv`` next to the batch output
(`smp_model.survey.review.ReviewSidecar`), written atomically; the batch output itself
is never written.

Units and conventions are the batch's: fluxes on zeropoint 30, magnitudes
``30 - 2.5 log10 flux``, offsets in detection-exposure pixels (published order), MJD of the
detection exposure (NaN when unknown).
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.table import Table

from ..outputs.columns import FLAG_BITS, RETIRED_FLAGS, decode_flags
from ..settings import FitSettings
from .filters import FilterError, compile_filter
from .review import MARKS, REVIEWED_FLOAT_COLUMNS, REVIEWED_STR_COLUMNS, ReviewSidecar
from .tables import (COLUMN_DEFAULTS, SurveyError, mjd_from_manifests, read_failures,
                     read_table, settings_from_meta)

__all__ = ["DISPLAY_COLUMNS", "FLAG_EXPOSURE_DROPPED", "OpenSpec", "Survey", "flags_text",
           "sort_indices"]

#: The record's flag for lost exposures; batch outputs written before the record had it
#: get it from their ``n_dropped`` column.
FLAG_EXPOSURE_DROPPED = FLAG_BITS["exposure_dropped"]
#: Columns shown first, in this order (the others follow as in the batch).
DISPLAY_COLUMNS = ("key", "name", "band", "mjd", "fit_kind", "positions", "flux", "flux_err", "mag",
                   "mag_err", "total_flux", "chi2_dof", "binary_delta_chi2", "flags", "flags_text",
                   "n_exposures", "n_dropped", "mark", "note")


# -- reading ------------------------------------------------------------------------------


def flags_text(flags: int) -> str:
    """Names of the flags set in ``flags`` (`decode_flags`), comma separated."""
    return ", ".join(decode_flags(flags))


def _positions_from_retired_bit(columns: dict[str, np.ndarray], notes: list[str]) -> np.ndarray:
    """The ``flags`` of ``columns`` without the retired ``position_fixed`` bit; a batch
    output written while it was a flag gets its ``positions`` column from it."""
    flags = columns["flags"].astype(np.int64)
    bit = next(f.bit for f in RETIRED_FLAGS if f.name == "position_fixed")
    if "positions" not in columns:
        columns["positions"] = np.where(flags & bit, "fixed", "searched")
        notes.append("no 'positions' column in the batch output: read from its "
                     "position_fixed flag")
    return flags & ~bit


# -- the survey ---------------------------------------------------------------------------

@dataclass(frozen=True)
class OpenSpec:
    """How to show one detection of the batch in the inspector: its manifest, the batch's
    settings, the kept fit kind and the offsets of the batch's kept fit (published order:
    (dx, dy) or (dx1, dx2, dy1, dy2), detection-exposure pixels); ``searched``: the batch
    searched those positions (the inspector searches again from them, to show the same
    fit with the positions' errors, rather than a fit at fixed positions)."""
    key: str
    manifest: Path
    settings: FitSettings
    mode: str
    offsets: tuple[float, ...]
    searched: bool = False


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
        for name, default in COLUMN_DEFAULTS.items():
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
            columns["mjd"] = mjd_from_manifests(columns["input"], notes)
        flags = _positions_from_retired_bit(columns, notes)
        dropped = columns["n_dropped"].astype(np.int64) > 0
        columns["flags"] = flags | np.where(dropped, FLAG_EXPOSURE_DROPPED, 0)
        unique_flags = {int(f): flags_text(f) for f in np.unique(columns["flags"])}
        columns["flags_text"] = np.array([unique_flags[int(f)] for f in columns["flags"]],
                                         dtype=object).astype(str)
        failures = read_failures(path)
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
        searched = str(self.columns["positions"][i]) == "searched"
        return OpenSpec(key, manifest, self.settings, mode, tuple(offsets), searched)

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
        from ..outputs.tables import write_table
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
