"""``smp batch``: fit a list of detections in parallel (dask.distributed), resumable.

Exit codes: 0 every detection has a result, 1 some failed (see ``<out stem>.failures.ecsv``),
2 the batch could not run (missing or malformed list, --out not ours, bad options).
"""
from __future__ import annotations

import contextlib
import logging
import math
import signal
import sys
import time
import warnings
from pathlib import Path

from .arguments import (add_model_arguments, add_shot_noise_arguments, number,
                        settings_from_args)

__all__ = ["EXIT_TERMINATED", "BatchProgress", "Terminated", "register", "run"]


def register(sub) -> None:
    p = sub.add_parser(
        "batch", help="fit many detections in parallel (local cores or a Dask cluster)",
        description="Fit every detection of LIST in parallel with dask.distributed. Each "
                    "result is saved as it arrives in <out>.work/; a re-run skips the "
                    "detections already done (use --force to recompute) and retries failed "
                    "ones. Failures go to <out stem>.failures.ecsv. Exit code 1 if any "
                    "detection failed.")
    p.add_argument("list", metavar="LIST",
                   help="ECSV/CSV table with a 'manifest' column, or the folder columns "
                        "stamps, psfs, zeropoints, name, ra, dec, band, expnum, ccdnum "
                        "(paths relative to LIST)")
    p.add_argument("--out", required=True, metavar="TABLE",
                   help="merged flux table (.ecsv, .fits, .vot/.xml; .csv: values only), "
                        "one row per source per detection")
    c = p.add_argument_group("cluster")
    c.add_argument("--workers", type=number(1, integer=True), metavar="N",
                   help="worker processes of the local cluster (default: one per CPU core)")
    c.add_argument("--scheduler", metavar="ADDRESS",
                   help="use an existing Dask scheduler (tcp://host:8786) instead of a "
                        "local cluster")
    m = add_model_arguments(p)
    m.add_argument("--binary-search-if", type=number(), metavar="DCHI2",
                   help="also search for a binary (from the default offset and 1 px "
                        "further) and keep it when delta chi2 > DCHI2")
    m.add_argument("--optimize-position", action="store_true",
                   help="search the single target's position (from the default "
                        "offset): dx, dy, their errors and the fitted RA/Dec")
    m.add_argument("--shot-noise", action="store_true",
                   help="also refit with the source's Poisson variance (columns flux_sn, "
                        "flux_err_sn, ...; gain from each manifest's detection exposure, "
                        "or --gain; a detection without a gain fails)")
    add_shot_noise_arguments(m, "detection-stamp gain for every detection, electrons per "
                                "SCI unit (implies --shot-noise)")
    o = p.add_argument_group("output")
    o.add_argument("--force", action="store_true",
                   help="recompute every detection and replace --out")
    o.add_argument("--wait", action="store_true",
                   help="if another smp batch is writing --out, wait for it to end "
                        "(default: exit 2 at once, naming it)")
    o.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..batch.items import read_batch_list
    from ..batch.run import open_client, run_batch
    from ..batch.worker import BatchOptions
    if not args.debug:
        _quiet_dask_logging()
    if args.workers is not None and args.scheduler:
        raise ValueError("give --workers or --scheduler, not both (the scheduler's workers "
                         "are used)")
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    settings = settings_from_args(args)
    options = BatchOptions(settings, args.binary_search_if,
                           optimize_position=args.optimize_position,
                           shot_noise=args.shot_noise or args.gain is not None,
                           gain=args.gain, shot_noise_iterations=args.shot_noise_iterations)
    items = read_batch_list(args.list)
    _say_what_runs_code(items, args.list)
    progress = BatchProgress(quiet=args.quiet)
    try:
        with _sigterm_ends_the_run() as termination:
            def on_outcome(outcome, report):
                termination.check()
                progress.update(outcome, report)
            report = run_batch(items, args.out, options, force=args.force,
                               list_path=args.list,
                               client_factory=lambda: open_client(args.scheduler,
                                                                  args.workers),
                               on_start=progress.start, on_outcome=on_outcome,
                               wait=args.wait)
    except Terminated:
        from ..batch.work import BatchPaths
        progress.close()
        print(f"smp: batch stopped (SIGTERM); the finished results are kept in "
              f"{BatchPaths(Path(args.out)).work_dir}: run the same command again to "
              "resume", file=sys.stderr, flush=True)
        return EXIT_TERMINATED
    progress.finish(report)
    return 1 if report.failed else 0


EXIT_TERMINATED = 128 + signal.SIGTERM   # what a shell reports for a process ended by SIGTERM


class Terminated(BaseException):
    """SIGTERM arrived: raised in the main thread, so that every ``with`` block on the
    way out closes what it opened (the local cluster's worker processes and their
    semaphores, the batch lock) instead of the process dying with them open."""


class _Termination:
    """Whether SIGTERM arrived.  Its handler raises `Terminated` where the main thread
    is; Python drops an exception raised inside a garbage-collector callback (dask's
    runs one), so the flag stays and `check` raises it again at the next result."""

    def __init__(self):
        self.requested = False

    def __call__(self, signum, frame):
        self.requested = True
        raise Terminated

    def check(self) -> None:
        if self.requested:
            raise Terminated


@contextlib.contextmanager
def _sigterm_ends_the_run():
    import threading
    termination = _Termination()
    if threading.current_thread() is not threading.main_thread():
        yield termination   # only the main thread may handle signals (a caller's thread)
        return
    previous = signal.signal(signal.SIGTERM, termination)
    unraisable = sys.unraisablehook

    def quiet_when_dropped(info):   # the dropped `Terminated`: raised again by `check`
        if not isinstance(info.exc_value, Terminated):
            unraisable(info)
    sys.unraisablehook = quiet_when_dropped
    try:
        yield termination
    finally:
        signal.signal(signal.SIGTERM, previous)
        sys.unraisablehook = unraisable


def _say_what_runs_code(items, list_path) -> None:
    """One warning line when the list makes the batch read PSF files (which run code
    stored in them) from outside the list's own folder."""
    from pathlib import Path

    from ..batch.items import psf_sources_outside
    outside = psf_sources_outside(items, Path(list_path).absolute().parent)
    if outside:
        folders = sorted({str(p if p.suffix == "" else p.parent) for p in outside})
        shown = ", ".join(folders[:3]) + (f" and {len(folders) - 3} more" if len(folders) > 3
                                          else "")
        warnings.warn(f"{list_path} makes the batch read {len(outside)} PSF file(s)/folder(s) "
                      f"outside its folder, in {shown}; reading a PSF file runs code stored "
                      "in it: use only lists and data you trust (docs: user_guide/trust)",
                      stacklevel=2)


def _quiet_dask_logging() -> None:
    """dask logs every scheduler and worker event at INFO, and `smp`'s root handler would
    print them: keep its warnings (e.g. a worker restarted for memory) only.  Importing
    distributed configures its loggers, so this comes after the import."""
    import distributed  # noqa: F401
    for name in list(logging.root.manager.loggerDict):
        if name.split(".")[0] in ("distributed", "dask"):
            logger = logging.getLogger(name)
            if logger.level < logging.WARNING:
                logger.setLevel(logging.WARNING)


class BatchProgress:
    """Batch progress on stderr.

    On a terminal: one bar redrawn in place (failures printed above it).  Otherwise (logs,
    pipes): a line per failure and a status line at most every ``interval`` seconds, so
    thousands of detections do not flood a log.  ``quiet``: only the final line about
    failures.
    """

    BAR = 24

    def __init__(self, quiet: bool = False, stream=None, interval: float = 5.0):
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval
        self._last = -math.inf
        self._drawn = False
        self._started = False

    def _print(self, text: str) -> None:
        if self._drawn:
            self.stream.write("\r\033[K")
            self._drawn = False
        print(text, file=self.stream, flush=True)

    def start(self, report) -> None:
        if self.quiet:
            return
        skipped = report.skipped
        parts = [f"{report.total} detection(s)"]
        if skipped:
            parts.append(f"{skipped} done in an earlier run (skipped)")
        if report.to_compute:
            parts.append(f"{report.to_compute} to fit on {report.workers} worker thread(s)")
        self._print("smp: batch: " + ", ".join(parts))
        self._started = True
        self._status(report, force=True)

    def update(self, outcome, report) -> None:
        if self.quiet:
            return
        if outcome.status == "failed":
            self._print(f"smp: failed: {outcome.item.key}: {outcome.error_type}: "
                        f"{outcome.message}")
        if outcome.status != "skipped" and self._started:
            self._status(report)

    def _status(self, report, force: bool = False) -> None:
        now = time.monotonic()
        finished = report.finished
        last = finished == report.total
        if not self.tty and not (force or last or now - self._last >= self.interval):
            return
        self._last = now
        line = self._line(report)
        if self.tty:
            self.stream.write("\r\033[K" + line)
            self.stream.flush()
            self._drawn = True
        else:
            print(line, file=self.stream, flush=True)

    def _line(self, report) -> str:
        finished = report.finished
        fraction = finished / report.total if report.total else 1.0
        filled = round(self.BAR * fraction)
        rate = report.rate
        remaining = report.total - finished
        text = (f"smp: [{'#' * filled}{'.' * (self.BAR - filled)}] {finished}/{report.total}"
                f" done ({report.computed} fitted, {report.skipped} skipped, "
                f"{len(report.failed)} failed)")
        if math.isfinite(rate):
            text += f", {rate:.2f} detections/s"
            if remaining and rate > 0:
                text += f", ~{remaining / rate:.0f} s left"
        return text

    def close(self) -> None:
        """End a bar drawn in place, so that the next line starts on its own."""
        if self._drawn:
            self.stream.write("\n")
            self._drawn = False

    def finish(self, report) -> None:
        self.close()
        paths = report.paths
        if not self.quiet:
            rows = f"wrote {paths.out} ({report.n_rows} rows)"
            print(f"smp: batch finished in {time.perf_counter() - report.started:.1f} s: "
                  f"{report.computed} fitted, {report.skipped} skipped, "
                  f"{len(report.failed)} failed; {rows}", file=self.stream, flush=True)
        if report.failed:
            print(f"smp: {len(report.failed)} of {report.total} detection(s) failed; see "
                  f"{paths.failures}", file=self.stream, flush=True)
