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
  row per source per detection (columns of `smp_model.outputs.tables.fit_table` plus ``key`` and
  ``input``), the settings and the software version in ``meta``.

Detection key: ``<name>_<expnum>_<ccdnum>`` of the detection exposure, with characters
other than letters, digits, ``. _ + -`` replaced by ``_``; rows whose keys collide get
distinct keys (`distinct_keys`), so every row ends in the table or the failures.

One batch at a time writes an output: a second run on the same ``out`` refuses at once,
naming the running one (`smp_model.batch.lock`).  The batch writes only where it owns
the path (`check_outputs`): never over the list itself, and over an existing table or
failures file only when the work directory exists (or with ``force``).  Both outputs are rewritten by every run.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import time
import uuid
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ..errors import one_line
from ..outputs.tables import table_format
from .items import BatchError, BatchItem, distinct_keys
from .lock import BatchLockedError, output_lock  # noqa: F401 (named in the docstring)
from .work import (BatchPaths, BatchReport, DetectionOutcome, check_outputs, prepare_work_dir,
                   write_results, write_work_file)
from .worker import BatchOptions, fit_detection

__all__ = ["FIT_MEMORY_SHARE", "ClientFactory", "OutcomeCallback", "open_client", "run_batch"]

# Share of a worker's memory limit that one fit may plan to use (the engine refuses larger
# fits with ResourceLimitError before allocating; the rest is head room for Python/Piff).
FIT_MEMORY_SHARE = 0.5


# -- the batch (runs on the client) -----------------------------------------------------


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
              on_outcome: OutcomeCallback | None = None,
              wait: bool = False) -> BatchReport:
    """Fit the detections ``items`` and write the merged table ``out`` (see module doc).

    ``client_factory()`` is entered only when some detection needs fitting.  Without
    ``force``: detections with a work file are skipped, and an existing ``out`` is replaced
    only when it belongs to this batch (its work directory exists); a work directory made
    with other options raises `BatchError`.  With ``force`` everything is recomputed and
    ``out`` replaced.  Another batch writing ``out`` raises `BatchLockedError` at once, or
    with ``wait`` is waited for.
    """
    paths = BatchPaths(Path(out))
    table_format(paths.out)   # unknown extension: ValueError before any work
    # One writer per output: taken before anything is checked, so that the checks below
    # and the writes see no other run (see smp_model.batch.lock).
    with output_lock(paths.out, say=lambda text: warnings.warn(text, stacklevel=3),
                     wait=wait):
        return _run_locked(items, paths, options, client_factory, force, list_path,
                           on_start, on_outcome)


def _run_locked(items, paths: BatchPaths, options: BatchOptions, client_factory, force: bool,
                list_path, on_start, on_outcome) -> BatchReport:
    check_outputs(paths, options, force, list_path)
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
            prepare_work_dir(paths, options)
            _compute(client, pending, options, paths, report, record, on_start)
    else:
        prepare_work_dir(paths, options)
        if on_start:
            on_start(report)
    report.compute_finished = time.perf_counter()
    write_results(items, report, options, list_path)
    return report


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
        raise BatchError(f"the Dask workers cannot import smp_model ({one_line(exc)}); "
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
                      "message": f"{item.input}: {one_line(exc)}", "seconds": 0.0,
                      "cpu_seconds": 0.0, "warnings": []}
        future.release()
        report.attempted += 1
        if result["ok"]:
            try:
                write_work_file(paths.work_file(item), result["table"])
                for stale in paths.stale_work_files(item):
                    stale.unlink(missing_ok=True)
            except OSError as exc:
                result = {**result, "ok": False, "error_type": type(exc).__name__,
                          "message": f"cannot write result: {one_line(exc)}"}
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
    import smp_model.fit.photometry  # noqa: F401
    import smp_model.inputs.folder  # noqa: F401
    import smp_model.outputs.tables  # noqa: F401


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
