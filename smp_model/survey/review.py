"""The review sidecar of a survey: marks (good / bad / binary candidate), notes and refits
saved from the inspector, kept in ``<out stem>.review.ecsv`` beside the batch output and
written atomically; the batch output itself is never written.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table

from ..files import atomic_write, utc_timestamp
from .tables import SurveyError

__all__ = ["MARKS", "REVIEWED_FLOAT_COLUMNS", "REVIEWED_STR_COLUMNS", "REVIEW_SUFFIX",
           "ReviewEntry", "ReviewSidecar"]

REVIEW_SUFFIX = ".review.ecsv"


MARKS = ("good", "bad", "binary")     # "binary": binary candidate


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
        entry.updated = utc_timestamp()
        if not (entry.mark or entry.note or entry.reviewed):
            del self.entries[key]

    def set_reviewed(self, key: str, fit_table: Table, request_meta: dict | None = None
                     ) -> None:
        """Keep a refit of ``key`` (its `smp_model.outputs.tables.fit_table`) as the reviewed
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
        entry.updated = utc_timestamp()

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

