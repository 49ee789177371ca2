"""The batch's files: the work folder (``<out>.work/<key>.ecsv`` per detection, the run's
settings in ``batch.json``), the checks that the batch owns the paths it writes, and the
merged table and failures written at the end (`write_results`).
"""
from __future__ import annotations

import datetime as _dt
import glob
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from astropy.table import QTable, Table, vstack

from ..errors import one_line
from ..files import OutputExistsError, atomic_write
from .items import BatchError, BatchItem
from .worker import BatchOptions

__all__ = ["FAILURES_SUFFIX", "OPTIONS_FILE", "WORK_SUFFIX", "BatchPaths", "BatchReport",
           "DetectionOutcome", "check_outputs", "prepare_work_dir", "write_results",
           "write_work_file"]

WORK_SUFFIX = ".work"


OPTIONS_FILE = "batch.json"


FAILURES_SUFFIX = ".failures.ecsv"


@dataclass(frozen=True)
class BatchPaths:
    """Where a batch writing ``out`` keeps its files."""
    out: Path

    @property
    def work_dir(self) -> Path:
        return self.out.with_name(self.out.name + WORK_SUFFIX)

    @property
    def failures(self) -> Path:
        return self.out.with_name(self.out.stem + FAILURES_SUFFIX)

    @property
    def options_file(self) -> Path:
        return self.work_dir / OPTIONS_FILE

    def work_file(self, item: BatchItem) -> Path:
        """The result of ``item`` as its row reads now (`BatchItem.fingerprint`; ``~`` is
        in no key)."""
        return self.work_dir / f"{item.key}~{item.fingerprint[:16]}.ecsv"

    def stale_work_files(self, item: BatchItem) -> list[Path]:
        """Results under ``item``'s key made from what its row said before (an edited
        manifest or row), and from before results carried a fingerprint."""
        current = self.work_file(item)
        return [p for p in (*self.work_dir.glob(f"{glob.escape(item.key)}~*.ecsv"),
                            self.work_dir / f"{item.key}.ecsv")
                if p != current and p.is_file()]


@dataclass
class DetectionOutcome:
    """What happened to one detection in this run.

    ``status``: ``"computed"`` (fitted now), ``"skipped"`` (finished in an earlier run) or
    ``"failed"``.  ``seconds`` and ``cpu_seconds``: wall and CPU time on the worker.
    """
    item: BatchItem
    status: str
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    error_type: str = ""
    message: str = ""
    warnings: list[str] = field(default_factory=list)


@dataclass
class BatchReport:
    """Counts and outcomes of a batch run, updated as results arrive."""
    total: int
    paths: BatchPaths
    outcomes: list[DetectionOutcome] = field(default_factory=list)
    workers: int = 0            # worker threads of the cluster (0: no cluster needed)
    to_compute: int = 0
    attempted: int = 0          # detections that came back from the cluster so far
    started: float = field(default_factory=time.perf_counter)
    compute_started: float | None = None
    compute_finished: float | None = None
    n_rows: int = 0             # rows written to the final table

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("computed", "skipped", "failed"), 0))
    failed: list[DetectionOutcome] = field(default_factory=list)

    def add(self, outcome: DetectionOutcome) -> None:
        self.outcomes.append(outcome)
        self.counts[outcome.status] += 1
        if outcome.status == "failed":
            self.failed.append(outcome)

    @property
    def computed(self) -> int:
        return self.counts["computed"]

    @property
    def skipped(self) -> int:
        return self.counts["skipped"]

    @property
    def finished(self) -> int:
        """Detections with an outcome so far (computed, skipped or failed)."""
        return len(self.outcomes)

    @property
    def compute_seconds(self) -> float:
        if self.compute_started is None:
            return 0.0
        end = self.compute_finished or time.perf_counter()
        return end - self.compute_started

    @property
    def rate(self) -> float:
        """Detections back from the cluster (fitted or failed) per second since the first
        task was submitted; NaN before any came back."""
        seconds = self.compute_seconds
        return self.attempted / seconds if self.attempted and seconds > 0 else math.nan


def prepare_work_dir(paths: BatchPaths, options: BatchOptions) -> None:
    paths.work_dir.mkdir(parents=True, exist_ok=True)
    # A run killed while writing (no chance to clean up) can leave the hidden temporary
    # file of `atomic_output` behind; the result itself was never renamed into place.
    for leftover in paths.work_dir.glob(".*.ecsv"):
        leftover.unlink(missing_ok=True)
    atomic_write(paths.options_file,
                 lambda tmp: tmp.write_text(json.dumps(options.as_meta(), indent=2) + "\n"),
                 overwrite=True)


def check_outputs(paths: BatchPaths, options: BatchOptions, force: bool,
                   list_path: str | os.PathLike | None = None) -> None:
    """Refuse, before any work, to write where the batch does not own the path: the list
    itself (never, even with ``force``), or an existing ``out`` or failures file without
    the batch's work directory (unless ``force``).  Refuse to mix settings in one work
    directory (with ``force``: forget every result made with other settings)."""
    outputs = {"--out": paths.out, "failures file": paths.failures,
               "work directory": paths.work_dir}
    if list_path is not None:
        listed = Path(list_path).resolve()
        for what, path in outputs.items():
            if path.resolve() == listed:
                raise OutputExistsError(f"is the batch list itself and would be the batch's "
                                        f"{what}; choose another --out", path)
    if paths.work_dir.exists() and not paths.work_dir.is_dir():
        raise OutputExistsError("exists and is not a batch work directory; not replaced "
                                "(choose another --out)", paths.work_dir)
    owned = paths.work_dir.is_dir()
    for path in (paths.out, paths.failures):
        if not force and not owned and (path.exists() or path.is_symlink()):
            raise OutputExistsError(f"exists and has no batch work directory "
                                    f"({paths.work_dir.name}); not overwritten (use --force "
                                    "or another --out)", path)
        if path.is_dir():
            raise OutputExistsError("is a directory; not replaced", path)
    if not paths.options_file.is_file():
        return
    try:
        previous = json.loads(paths.options_file.read_text())
    except (OSError, ValueError):
        previous = None
    current = json.loads(json.dumps(options.as_meta()))   # as stored (tuples -> lists)
    if isinstance(previous, dict):
        # work directories from before an option existed were made with its default
        defaults = json.loads(json.dumps(BatchOptions().as_meta()))
        previous = {**{k: v for k, v in defaults.items() if k != "settings"}, **previous}
        if isinstance(previous.get("settings"), dict):
            # every result from before the option was made with the model's own stamps
            previous["settings"] = {"psf_normalization": "model", **previous["settings"]}
    if previous == current:
        return
    if not force:
        raise BatchError("holds results made with other settings "
                         f"({_difference(previous, current)}); use --force to recompute "
                         "them, or another --out", paths.work_dir)
    for stale in paths.work_dir.glob("*.ecsv"):
        stale.unlink()


def _difference(previous, current) -> str:
    if not isinstance(previous, dict):
        return "unreadable " + OPTIONS_FILE

    def flat(meta: dict) -> dict:
        settings = meta.get("settings")
        return {**(settings if isinstance(settings, dict) else {}),
                **{k: v for k, v in meta.items() if k != "settings"}}

    flat_prev, flat_cur = flat(previous), flat(current)
    return ", ".join(f"{k}: {flat_prev.get(k)!r} then, {v!r} now"
                     for k, v in flat_cur.items() if flat_prev.get(k) != v) or "other keys"


def write_work_file(path: Path, table: QTable) -> None:
    def write(tmp: Path) -> None:
        table.write(tmp, format="ascii.ecsv", overwrite=True)
    atomic_write(path, write, overwrite=True)


def write_results(items: Sequence[BatchItem], report: BatchReport, options: BatchOptions,
                   list_path) -> None:
    from .. import __version__
    from ..outputs.tables import write_table
    from ..outputs.columns import flags_meta
    paths = report.paths
    failed = {o.item.key for o in report.failed}
    tables = []
    for item in items:
        if item.key in failed:
            continue
        work = paths.work_file(item)
        try:
            tables.append(QTable.read(work, format="ascii.ecsv"))
        except Exception as exc:   # noqa: BLE001 (astropy raises many types)
            raise BatchError(f"unreadable batch result ({one_line(exc)}); use --force",
                             work) from None
    failures = _failures_table(report, list_path)
    if len(failures):
        write_table(failures, paths.failures, overwrite=True)
    else:
        paths.failures.unlink(missing_ok=True)   # left by an earlier run of this batch
    # Written even without a result, so that it never keeps rows of an earlier run that
    # the failures file now contradicts.
    merged = (vstack(tables, metadata_conflicts="silent") if tables
              else QTable(names=("key", "input"), dtype=(str, str)))
    merged.meta = {
        "software": f"smp-inspector {__version__}",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "batch_list": str(list_path) if list_path else None,
        **options.as_meta(),
        "zeropoint": 30.0,
        "flags": flags_meta(),
        "n_detections": report.total,
        "n_succeeded": len(tables),
        "n_failed": len(failed),
        "failures": str(paths.failures) if failed else None,
        "work_dir": str(paths.work_dir),
    }
    write_table(merged, paths.out, overwrite=True)
    report.n_rows = len(merged)


def _failures_table(report: BatchReport, list_path) -> Table:
    failed = sorted(report.failed, key=lambda o: o.item.row)
    table = Table(rows=[(o.item.key, o.item.row, o.item.input, o.error_type, o.message)
                        for o in failed] or None,
                  names=("key", "row", "input", "error_type", "message"),
                  dtype=(str, int, str, str, str))
    table.meta = {"batch_list": str(list_path) if list_path else None,
                  "description": "detections of the batch that failed (row: data row in "
                                 "the list, 1-based)"}
    return table
