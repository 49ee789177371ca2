"""Batch photometry: many detections fitted in parallel with dask.distributed, resumable.

A batch is a list of detections (`read_batch_list`): each row names a manifest or gives the
folder-input fields.  `run_batch` fits every detection that has no result yet on a Dask
cluster (a `LocalCluster` or an existing scheduler, see `open_client`) and streams the
results back one detection at a time:

* the workers only read inputs and return one small flux table per detection (no images,
  no whole-batch arrays); the client writes each table atomically to the work directory
  ``<out>.work/<key>.ecsv`` as soon as it arrives, so an interrupted batch loses at most
  the detections being fitted;
* a re-run skips every detection whose work file exists (resume is the default; ``force``
  recomputes everything) and retries the failed ones;
* a detection that fails is recorded (key, input, error type, one-line message) in
  ``<out stem>.failures.ecsv`` and does not stop the others;
* the final table ``out`` merges the work files of the listed detections in list order: one
  row per source per detection (columns of `smp_model.results.fit_table` plus ``key`` and
  ``input``), the settings and the software version in ``meta``.

Detection key: ``<name>_<expnum>_<ccdnum>`` of the detection exposure, with characters
other than letters, digits, ``. _ + -`` replaced by ``_``; rows whose keys collide get
distinct keys (`distinct_keys`), so every row ends in the table or the failures.

The batch writes only where it owns the path (`_check_outputs`): never over the list
itself, and over an existing table or failures file only when the work directory exists
(or with ``force``).  Both outputs are rewritten by every run.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import functools
import glob
import hashlib
import json
import math
import os
import re
import time
import uuid
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import QTable, Table, vstack

from .errors import SMPError, is_numpy_warning
from .io_utils import TABLE_FORMATS, OutputExistsError, atomic_write, read_input_table
from .manifest import DetectionManifest
from .request import FitRequest
from .results import table_format
from .scene import FitSettings

WORK_SUFFIX = ".work"
OPTIONS_FILE = "batch.json"
FAILURES_SUFFIX = ".failures.ecsv"
FOLDER_COLUMNS = ("stamps", "psfs", "zeropoints", "name", "ra", "dec", "band", "expnum",
                  "ccdnum")
OPTIONAL_FOLDER_COLUMNS = ("color_gi", "origin_rule")
# Share of a worker's memory limit that one fit may plan to use (the engine refuses larger
# fits with ResourceLimitError before allocating; the rest is head room for Python/Piff).
FIT_MEMORY_SHARE = 0.5


class BatchError(SMPError):
    """The batch as a whole cannot run (bad list, work directory from other settings)."""


# -- the list ---------------------------------------------------------------------------

@dataclass(frozen=True)
class BatchItem:
    """One detection of a batch.

    ``row`` is the 1-based data row in the list file; ``input`` says where the detection
    comes from (the manifest path, or the stamp directory and detection of a folder row).
    Exactly one of ``manifest`` and ``folder`` (keyword arguments of
    `smp_model.folder.manifest_from_folder`) is set, unless the row itself is unusable, in
    which case ``error`` holds (error type, one-line message) and nothing is fitted.
    """
    row: int
    key: str
    input: str
    manifest: DetectionManifest | None = None
    folder: dict | None = None
    error: tuple[str, str] | None = None

    @functools.cached_property
    def fingerprint(self) -> str:
        """Hash (hex) of what the row says: the manifest's path and text, or the folder
        row's fields.  A finished result is reused only for the same fingerprint, so an
        edited manifest or row is fitted again (files it names that changed on disk under
        the same names are not noticed: use --force)."""
        if self.manifest is not None:
            try:
                text = Path(self.manifest.path).read_bytes()
            except (OSError, TypeError):
                text = b""
            what = str(self.manifest.path).encode() + b"\0" + text
        else:
            what = json.dumps(self.folder, sort_keys=True, default=str).encode()
        return hashlib.sha256(what).hexdigest()


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
        manifest = DetectionManifest.read(path)
    except SMPError as exc:
        key = detection_key(path.stem if path.stem != "detection" else path.parent.name,
                            "row", number)
        return BatchItem(number, key, str(path), error=(type(exc).__name__, exc.one_line()))
    key = detection_key(manifest.name, manifest.detection_expnum, manifest.detection_ccdnum)
    return BatchItem(number, key, str(path), manifest=manifest)


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
                                f"{list_path}: row {number}: {_one_line(exc)}"))
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
    from .folder import ORIGIN_RULES
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
    from .manifest import _outside
    paths: list[Path] = []
    for item in items:
        if item.manifest is not None:
            paths += [e.psf for e in item.manifest.exposures]
        elif item.folder is not None:
            paths.append(item.folder["psfs"])
    return _outside(paths, folder)


# -- one detection (runs on a worker) ---------------------------------------------------

@dataclass(frozen=True)
class BatchOptions:
    """What is fitted for every detection.

    The single fit puts the target at the convention's default offset, or, with
    ``optimize_position``, searches its position from there
    (`DetectionPhotometry.optimize_single`: dx, dy, their errors and the fitted RA/Dec
    in the table).

    With ``binary_search_if`` set, a binary search (`DetectionPhotometry.optimize_binary`,
    from the convention's default offset and one pixel further in x and y) follows the
    single fit, and the binary result is kept when its delta chi2 (best single minus best
    binary) exceeds ``binary_search_if``; the column ``binary_delta_chi2`` records the
    value either way and ``fit_kind`` says which fit was kept.

    With ``shot_noise`` the kept fit is refitted with the source's Poisson variance
    (`DetectionPhotometry.with_shot_noise`, ``shot_noise_iterations`` refits) using
    ``gain`` (electrons per SCI unit of the detection stamp) or, when ``gain`` is None,
    the detection exposure's ``gain`` in the manifest (a detection without one fails);
    the table then has ``flux_sn, flux_err_sn, mag_sn, mag_err_sn``.  A ``gain`` implies
    ``shot_noise``.
    """
    settings: FitSettings = FitSettings()
    binary_search_if: float | None = None
    optimize_position: bool = False
    shot_noise: bool = False
    gain: float | None = None
    shot_noise_iterations: int = 1

    def __post_init__(self):
        request = self.request   # checks the values, once, where every fit request is
        object.__setattr__(self, "gain", request.gain)
        object.__setattr__(self, "shot_noise", request.shot_noise)

    @property
    def request(self) -> FitRequest:
        """What is fitted for every detection, as the engine's one request type."""
        return FitRequest(mode="single", optimize=self.optimize_position,
                          shot_noise=self.shot_noise, gain=self.gain,
                          shot_noise_iterations=self.shot_noise_iterations,
                          binary_search_if=self.binary_search_if, settings=self.settings)

    def as_meta(self) -> dict:
        """Everything that changes the results (stored in the work directory: a resumed
        batch must have the same)."""
        return {"settings": self.settings.as_meta(),
                "binary_search_if": self.binary_search_if,
                "optimize_position": self.optimize_position,
                "shot_noise": ({"gain": self.gain, "iterations": self.shot_noise_iterations}
                               if self.shot_noise else None)}


def fit_detection(item: BatchItem, options: BatchOptions) -> dict:
    """Fit one detection; never raises for a bad detection.

    Returns ``{"key", "ok": True, "table": QTable, "seconds", "cpu_seconds", "warnings"}``
    or ``{"key", "ok": False, "error_type", "message", "seconds", "cpu_seconds",
    "warnings"}`` (wall and worker-process CPU time).  Only the small flux table travels
    back to the client.
    """
    from .fit import DetectionPhotometry
    from .folder import manifest_from_folder
    from .request import measure
    from .results import fit_table

    t0, cpu0 = time.perf_counter(), time.process_time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            manifest = item.manifest or manifest_from_folder(**item.folder,
                                                             settings=options.settings)
            phot = DetectionPhotometry(manifest, options.settings)
            table = fit_table(measure(phot, options.request))   # binary_delta_chi2 included
        # One bad detection must not end a batch of thousands: every error, including an
        # unexpected one, is reported with its type and recorded as a failure.
        except Exception as exc:   # noqa: BLE001
            return {"key": item.key, "ok": False, "error_type": type(exc).__name__,
                    "message": _one_line(exc), "seconds": time.perf_counter() - t0,
                    "cpu_seconds": time.process_time() - cpu0,
                    "warnings": _warning_lines(caught)}
    table.add_column(item.key, name="key", index=0)
    table.add_column(item.input, name="input", index=1)
    used, dropped = table.meta["exposures_used"], table.meta["exposures_dropped"]
    table["n_exposures"] = len(used)
    table["n_dropped"] = len(dropped)
    table.meta["batch"] = {"key": item.key, "input": item.input, "row": item.row,
                           **options.as_meta(), "warnings": _warning_lines(caught)}
    return {"key": item.key, "ok": True, "table": table,
            "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - cpu0,
            "warnings": _warning_lines(caught)}


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, SMPError):
        return exc.one_line()
    return " ".join(str(exc).split()) or type(exc).__name__


def _warning_lines(caught) -> list[str]:
    return [" ".join(str(w.message).split()) for w in caught
            if not (issubclass(w.category, RuntimeWarning) and is_numpy_warning(str(w.message)))]


# -- the batch (runs on the client) -----------------------------------------------------

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


@contextlib.contextmanager
def open_client(scheduler: str | None = None, workers: int | None = None) -> Iterator:
    """A dask.distributed `Client`: of the scheduler at ``scheduler`` (``tcp://host:port``),
    or of a new `LocalCluster` of ``workers`` single-threaded worker processes (default: one
    per CPU core), each with an equal share of the machine's memory as its limit.  The
    cluster (if created here) and the client are closed on exit.

    LocalCluster starts its workers with multiprocessing's "spawn": a script that calls
    this needs the ``if __name__ == "__main__":`` guard."""
    from distributed import Client, LocalCluster
    if scheduler:
        with Client(scheduler, timeout="15s") as client:
            yield client
        return
    if workers is None:
        workers = os.cpu_count() or 1
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      memory_limit="auto", dashboard_address=None) as cluster, \
            Client(cluster) as client:
        yield client


ClientFactory = Callable[[], contextlib.AbstractContextManager]
OutcomeCallback = Callable[[DetectionOutcome, BatchReport], None]


def run_batch(items: Sequence[BatchItem], out: str | os.PathLike,
              options: BatchOptions = BatchOptions(), *,
              client_factory: ClientFactory = open_client, force: bool = False,
              list_path: str | os.PathLike | None = None,
              on_start: Callable[[BatchReport], None] | None = None,
              on_outcome: OutcomeCallback | None = None) -> BatchReport:
    """Fit the detections ``items`` and write the merged table ``out`` (see module doc).

    ``client_factory()`` is entered only when some detection needs fitting.  Without
    ``force``: detections with a work file are skipped, and an existing ``out`` is replaced
    only when it belongs to this batch (its work directory exists); a work directory made
    with other options raises `BatchError`.  With ``force`` everything is recomputed and
    ``out`` replaced.
    """
    paths = BatchPaths(Path(out))
    table_format(paths.out)   # unknown extension: ValueError before any work
    _check_outputs(paths, options, force, list_path)
    items = distinct_keys(items)
    report = BatchReport(total=len(items), paths=paths)

    def record(outcome: DetectionOutcome) -> None:
        report.add(outcome)
        if on_outcome:
            on_outcome(outcome, report)

    pending = []
    for item in items:
        if item.error:
            record(DetectionOutcome(item, "failed", error_type=item.error[0],
                                    message=item.error[1]))
        elif not force and paths.work_file(item).is_file():
            record(DetectionOutcome(item, "skipped"))
        else:
            pending.append(item)
    report.to_compute = len(pending)
    if pending:
        # The work directory marks the outputs as this batch's: made only once the
        # cluster is reached, so an unreachable scheduler leaves nothing behind.
        with client_factory() as client:
            _prepare_work_dir(paths, options)
            _compute(client, pending, options, paths, report, record, on_start)
    else:
        _prepare_work_dir(paths, options)
        if on_start:
            on_start(report)
    report.compute_finished = time.perf_counter()
    _write_results(items, report, options, list_path)
    return report


def _prepare_work_dir(paths: BatchPaths, options: BatchOptions) -> None:
    paths.work_dir.mkdir(parents=True, exist_ok=True)
    # A run killed while writing (no chance to clean up) can leave the hidden temporary
    # file of `atomic_output` behind; the result itself was never renamed into place.
    for leftover in paths.work_dir.glob(".*.ecsv"):
        leftover.unlink(missing_ok=True)
    atomic_write(paths.options_file,
                 lambda tmp: tmp.write_text(json.dumps(options.as_meta(), indent=2) + "\n"),
                 overwrite=True)


def _check_outputs(paths: BatchPaths, options: BatchOptions, force: bool,
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


def _compute(client, pending: list[BatchItem], options: BatchOptions, paths: BatchPaths,
             report: BatchReport, record: Callable[[DetectionOutcome], None],
             on_start: Callable[[BatchReport], None] | None) -> None:
    """Stream ``pending`` through the cluster, a bounded number of tasks at a time."""
    from distributed import as_completed
    threads = _cluster_threads(client)
    options = _with_worker_memory(client, options)
    report.workers = threads
    try:   # fail early and clearly if the workers lack smp_model; warm them up too
        client.run(_import_engine)
    except Exception as exc:   # noqa: BLE001 (whatever the workers raised)
        raise BatchError(f"the Dask workers cannot import smp_model ({_one_line(exc)}); "
                         "install smp-inspector in the workers' environment",
                         client.scheduler.address) from None
    if on_start:
        on_start(report)
    report.compute_started = time.perf_counter()
    queue = deque(pending)
    in_flight: dict[str, BatchItem] = {}
    window = max(8, 2 * threads)
    completed = as_completed()
    run_id = uuid.uuid4().hex[:8]

    def submit() -> None:
        item = queue.popleft()
        future = client.submit(fit_detection, item, options, pure=False,
                               key=f"smp-batch-{run_id}-{item.row}")
        in_flight[future.key] = item
        completed.add(future)

    while queue and len(in_flight) < window:
        submit()
    for future in completed:
        item = in_flight.pop(future.key)
        if future.status == "finished":
            result = future.result()
        else:   # the task itself never raises: a worker died (memory) or was lost
            exc = future.exception()
            result = {"ok": False, "error_type": type(exc).__name__,
                      "message": f"{item.input}: {_one_line(exc)}", "seconds": 0.0,
                      "cpu_seconds": 0.0, "warnings": []}
        future.release()
        report.attempted += 1
        if result["ok"]:
            try:
                _write_work_file(paths.work_file(item), result["table"])
                for stale in paths.stale_work_files(item):
                    stale.unlink(missing_ok=True)
            except OSError as exc:
                result = {**result, "ok": False, "error_type": type(exc).__name__,
                          "message": f"cannot write result: {_one_line(exc)}"}
        if result["ok"]:
            record(DetectionOutcome(item, "computed", result["seconds"],
                                    result["cpu_seconds"], warnings=result["warnings"]))
        else:
            # A result from an earlier run is stale once the detection fails now.
            for stale in (paths.work_file(item), *paths.stale_work_files(item)):
                stale.unlink(missing_ok=True)
            record(DetectionOutcome(item, "failed", result["seconds"],
                                    result["cpu_seconds"], result["error_type"],
                                    result["message"], result["warnings"]))
        if queue:
            submit()


def _import_engine() -> None:
    import smp_model.fit  # noqa: F401
    import smp_model.folder  # noqa: F401
    import smp_model.results  # noqa: F401


def _cluster_threads(client) -> int:
    """Worker threads now in the cluster (waits up to 60 s for the first worker)."""
    threads = sum(client.nthreads().values())
    if not threads:
        client.wait_for_workers(1, timeout=60)
        threads = sum(client.nthreads().values())
    return threads


def _with_worker_memory(client, options: BatchOptions) -> BatchOptions:
    """Cap the per-fit memory at a share of the smallest worker memory limit, so that a
    too-large fit is refused (and recorded) instead of killing a worker."""
    limits = [w.get("memory_limit") or 0
              for w in client.scheduler_info(n_workers=-1)["workers"].values()]
    limits = [m for m in limits if m > 0]
    if not limits:
        return options
    cap = int(FIT_MEMORY_SHARE * min(limits))
    if cap >= options.settings.memory_limit_bytes:
        return options
    settings = dataclasses.replace(options.settings, memory_limit_bytes=cap)
    return dataclasses.replace(options, settings=settings)


def _write_work_file(path: Path, table: QTable) -> None:
    def write(tmp: Path) -> None:
        table.write(tmp, format="ascii.ecsv", overwrite=True)
    atomic_write(path, write, overwrite=True)


def _write_results(items: Sequence[BatchItem], report: BatchReport, options: BatchOptions,
                   list_path) -> None:
    from . import __version__
    from .results import write_table
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
            raise BatchError(f"unreadable batch result ({_one_line(exc)}); use --force",
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
