"""The thin controller between the window and the engine: one worker thread, latest
request wins.

The window describes what it wants as an immutable job (`FitJob`, `Chi2MapJob`) and
calls `FitController.submit`.  The worker thread keeps at most one job running and one
pending per channel ("fit", "map"); a newer job replaces the pending one.  Results come
back through Qt signals as immutable objects tagged with the job's id; a result is dropped
when the job was cancelled or when a newer job needs another detection or other settings
(its generation is over), so the window never shows numbers of a state it has left.

The engine's `DetectionPhotometry` (loading + PSF rendering + factorisation, about a
second) is built once per detection and settings, in a child process that the worker
waits on (`smp_gui.loader`: the build's Python-heavy work would otherwise compete with the
GUI thread for the GIL); fits after that take milliseconds, in the worker.  All engine
objects are used from the worker thread only, except the immutable fit results, which
the window reads.
"""
from __future__ import annotations

import dataclasses
import gc
import itertools
import math
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from PyQt6.QtCore import QObject, QThread, pyqtSignal

from smp_model.errors import Cancelled
from smp_model.fit.chi2map import Chi2Map, chi2_map
from smp_model.fit.diagnostics import diagnostic_columns
from smp_model.fit.measure import measure
from smp_model.fit.panels import ExposurePanels, five_panels
from smp_model.fit.photometry import DetectionPhotometry
from smp_model.fit.request import FitRequest
from smp_model.blas import limit_blas_threads
from smp_model.fit.results import SceneFit
from smp_model.outputs.columns import FLAG_BITS
from smp_model.outputs.display import exposure_overlays
from smp_model.outputs.record import FitRecord, fit_record
from smp_model.settings import FitSettings

from . import loader

__all__ = ["BUILD_IN_CHILD_PROCESS", "FIT", "GIL_SWITCH_INTERVAL_S", "MAP", "Chi2MapJob",
           "Chi2MapResult", "FitController", "FitJob", "FitResult", "FitSummary", "JobFailure",
           "SourceRow", "preload_engine", "summarize"]

FIT, MAP = "fit", "map"
# Cold builds run in a child process (see `smp_gui.loader`); False: in the worker thread.
BUILD_IN_CHILD_PROCESS = True
# The GUI thread must get the GIL back quickly while the worker runs Python code (refits,
# summaries, chi2 maps; the default is 5 ms, paid at every Qt call the GUI thread makes).
GIL_SWITCH_INTERVAL_S = 0.0005


def preload_engine(progress=None):
    """At start-up: start the process server that builds detections (its imports run on
    the other core meanwhile), and import the engine's lazily imported dependencies
    (GalSim, Piff) on the GUI thread: an import in the worker holds the import machinery
    and, in C extension initialisers, the GIL, which shows up as event-loop stalls.

    ``progress(fraction, stage)``, if given, is called before each stage (fraction of the
    preload done, 0 to 1) and once at the end with 1.0: the window shows the stages."""
    say = progress or (lambda fraction, stage: None)
    if BUILD_IN_CHILD_PROCESS and loader.available():
        say(0.0, "starting the process server")
        loader.start_server()
    say(0.1, "importing GalSim")
    import galsim  # noqa: F401
    say(0.6, "importing Piff")
    import piff  # noqa: F401

    # The ~150k objects of the imported libraries live as long as the process; left to
    # the cyclic collector, each full collection walks them all with the GIL held
    # (80-105 ms measured: a frozen window mid-drag).  Frozen, collections skip them.
    say(0.9, "settling the memory")
    gc.collect()
    gc.freeze()
    say(1.0, "engine ready")


@dataclass(frozen=True)
class FitJob:
    """Fit ``manifest_path`` as the engine's request ``fit`` says (`smp_model.fit.request`:
    mode, offsets, search, shot noise, settings), a job on the worker's fit channel.

    panel_index : exposure (index into the fit's exposures; None: the detection) whose
        five panels the worker prepares with the fit, so the GUI thread only draws.
    preview : a refit that follows a marker drag: only what the drag shows is computed
        (`smp_model.fit.measure.measure`'s preview fit and the shown exposure's panels;
        no per-exposure diagnostics).  The fit when the drag ends is a full one.
    """

    manifest_path: str
    fit: FitRequest
    panel_index: int | None = None
    preview: bool = False
    request_id: int = 0
    generation: int = 0

    channel = FIT

    @property
    def settings(self) -> FitSettings:
        return self.fit.settings


@dataclass(frozen=True)
class Chi2MapJob:
    """chi2 of the binary over secondary offsets ``center +- half_width`` px every
    ``step`` px, primary at ``primary`` (dx, dy) held or re-optimised (the map channel)."""

    manifest_path: str
    settings: FitSettings
    primary: tuple[float, float]
    center: tuple[float, float]
    half_width: float = 2.0
    step: float = 0.2
    reoptimize_primary: bool = False
    request_id: int = 0
    generation: int = 0

    channel = MAP


@dataclass(frozen=True)
class SourceRow:
    """One fitted source as the results table shows it: a row of the fit's record
    (`smp_model.outputs.record`; fluxes on zeropoint 30, offsets px in the convention's frame)."""

    component: str
    flux: float
    flux_err: float
    mag: float
    mag_err: float
    dx: float
    dy: float
    dx_err: float
    dy_err: float
    x: float
    y: float
    ra: float
    dec: float
    flux_err_total: float = math.nan   # with the fitted positions' uncertainty
    flux_njy: float = math.nan
    flags: int = 0
    flux_sn: float = math.nan          # shot-noise refit
    flux_err_sn: float = math.nan
    mag_sn: float = math.nan
    mag_err_sn: float = math.nan

    @classmethod
    def from_record(cls, row: dict) -> "SourceRow":
        """The row's values of this class's fields (the record's own names).

        Parameters
        ----------
        row : dict
            One source row of a `smp_model.outputs.record.FitRecord` (``record.rows``).

        Returns
        -------
        SourceRow
        """
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in fields})


@dataclass(frozen=True, eq=False)
class FitSummary:
    """The numbers the window shows: the fit's record (`smp_model.outputs.record.fit_record`,
    the projection every output reads), built once, in the worker."""

    record: FitRecord
    sources: tuple[SourceRow, ...]

    def _fit_wide(self, name: str) -> float:
        return self.record.fit_value(name)

    kind = property(lambda self: self.record.kind)
    chi2 = property(lambda self: self._fit_wide("chi2"))
    dof = property(lambda self: self._fit_wide("dof"))
    delta_chi2 = property(lambda self: self._fit_wide("delta_chi2"))
    delta_chi2_default = property(lambda self: self._fit_wide("delta_chi2_default"))
    total_flux = property(lambda self: self._fit_wide("total_flux"))
    total_flux_err = property(lambda self: self._fit_wide("total_flux_err"))
    separation_px = property(lambda self: self._fit_wide("separation"))
    separation_err_px = property(lambda self: self._fit_wide("separation_err"))
    separation_arcsec = property(lambda self: self._fit_wide("separation_arcsec"))
    separation_err_arcsec = property(lambda self: self._fit_wide("separation_arcsec_err"))
    position_angle_deg = property(lambda self: self._fit_wide("position_angle"))
    position_angle_err_deg = property(lambda self: self._fit_wide("position_angle_err"))

    @property
    def unresolved(self) -> bool:
        return bool(self.sources[0].flags & FLAG_BITS["unresolved"])

    @property
    def n_chi2_evaluations(self) -> int:
        return self.record.fit.n_chi2_evaluations

    @property
    def shot_noise_gain(self) -> float:
        sn = self.record.fit.shot_noise
        return math.nan if sn is None else float(sn.gain)

    @property
    def shot_noise_iterations(self) -> int:
        sn = self.record.fit.shot_noise
        return 0 if sn is None else int(sn.iterations)

    @property
    def has_shot_noise(self) -> bool:
        return self.record.fit.shot_noise is not None

    @property
    def offsets(self) -> tuple[float, ...]:
        """(dx, dy) for a single target, (dx1, dx2, dy1, dy2) for a binary."""
        return self.record.offsets

    @property
    def swapped_from_start(self) -> bool:
        """A binary search that renumbered its start's components (by flux: 1 is the
        brighter; `smp_model.fit.results.BinaryFit.swapped_from_start`)."""
        return bool(getattr(self.record.fit, "swapped_from_start", False))


def summarize(fit: SceneFit) -> FitSummary:
    """The numbers the window shows, from the fit's record.  Reads only what a fit at
    fixed positions has cheaply; never ``fit.covariance`` (the full scene covariance,
    which the engine computes only on demand) nor the record's metadata."""
    record = fit_record(fit)
    return FitSummary(record, tuple(SourceRow.from_record(row) for row in record.rows))


@dataclass(frozen=True, eq=False)
class FitResult:
    """A finished fit: the engine's immutable result, its summary, the five panels of the
    requested exposure and the per-exposure diagnostics (`diagnostic_columns`, one entry
    per exposure of ``fit.scene.exposures``; None for a preview: `FitJob.preview`)."""

    request: FitJob
    fit: SceneFit
    summary: FitSummary
    panels: ExposurePanels | None = None
    diagnostics: dict | None = None   # `diagnostic_columns`
    dropped: tuple[str, ...] = ()
    elapsed_s: float = 0.0     # request to result, including a cold build
    fit_s: float = 0.0         # the engine's fit alone (`measure`)
    overlays: tuple | None = None   # (exposure, `Overlays` or None) of the panels' exposure

    @property
    def request_id(self) -> int:
        return self.request.request_id

    @property
    def preview(self) -> bool:
        return self.request.preview


@dataclass(frozen=True, eq=False)
class Chi2MapResult:
    request: Chi2MapJob
    chi2map: Chi2Map

    @property
    def request_id(self) -> int:
        return self.request.request_id


@dataclass(frozen=True, eq=False)
class JobFailure:
    """A job that raised: ``error`` is the exception (an `SMPError` for bad input)."""

    request: object
    error: BaseException
    traceback: str = field(default="", repr=False)

    @property
    def request_id(self) -> int:
        return self.request.request_id


class _Worker(QThread):
    """Runs jobs one at a time; ``pending`` holds at most one request per channel."""

    finished_job = pyqtSignal(object)     # FitResult | Chi2MapResult | JobFailure
    progress = pyqtSignal(int, float, str)
    started_job = pyqtSignal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._cond = threading.Condition()
        self._pending: dict[str, object] = {}
        self._stop = False
        self._cancel_id = -1          # jobs with id <= this stop at their next progress
        self._running_id = 0
        self.jobs_done = {FIT: 0, MAP: 0}   # jobs computed to the end (not cancelled)
        self.jobs_replaced = {FIT: 0, MAP: 0}   # pending jobs a newer request replaced
        self._photometry: DetectionPhotometry | None = None
        self._photometry_key = None
        self._overlay_key, self._overlay_value = None, None

    # -- called from the GUI thread ----------------------------------------------------

    def put(self, request):
        with self._cond:
            if request.channel in self._pending:
                self.jobs_replaced[request.channel] += 1   # never computed: latest wins
            self._pending[request.channel] = request
            self._cond.notify()

    def cancel_all(self, up_to_id: int):
        with self._cond:
            self._pending.clear()
            self._cancel_id = up_to_id

    def stop(self):
        with self._cond:
            self._stop = True
            self._pending.clear()
            self._cancel_id = 1 << 62
            self._cond.notify()

    def is_idle(self) -> bool:
        with self._cond:
            return not self._pending and self._running_id == 0

    # -- the worker thread -------------------------------------------------------------

    def run(self):
        while True:
            with self._cond:
                while not self._pending and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                # Fits first: they follow the user's hand; a map can wait.
                channel = FIT if FIT in self._pending else MAP
                request = self._pending.pop(channel)
                self._running_id = request.request_id
            self.started_job.emit(request.request_id)
            try:
                result = self._execute(request)
            except Cancelled:
                result = None
            except BaseException as exc:   # noqa: BLE001 - reported to the window
                result = JobFailure(request, exc, traceback.format_exc())
            with self._cond:
                self._running_id = 0
                if result is not None:
                    self.jobs_done[request.channel] += 1
            if result is not None:
                self.finished_job.emit(result)

    def _check_cancel(self, request_id: int):
        if request_id <= self._cancel_id:
            raise Cancelled

    def _progress_callback(self, request_id: int):
        def callback(fraction: float, message: str):
            self._check_cancel(request_id)
            self.progress.emit(request_id, float(fraction), message)
        return callback

    def _get_photometry(self, request) -> DetectionPhotometry:
        key = (str(Path(request.manifest_path).resolve()), request.settings)
        if self._photometry_key != key:
            # The previous detection is kept until the new one is built: when that fails
            # (bad input, cancelled), going back to it costs nothing.
            photometry = self._build(request)
            self._photometry, self._photometry_key = photometry, key
        return self._photometry

    def _build(self, request) -> DetectionPhotometry:
        cancel = lambda: self._check_cancel(request.request_id)  # noqa: E731
        prefetched = loader.prefetched.take(request.manifest_path, request.settings, cancel)
        if prefetched is not None:   # built ahead by the survey view
            return prefetched
        progress = self._progress_callback(request.request_id)
        if BUILD_IN_CHILD_PROCESS and loader.available():
            return loader.build_in_child(request.manifest_path, request.settings, progress,
                                         lambda: self._check_cancel(request.request_id))
        return loader.build_here(request.manifest_path, request.settings, progress)

    def _execute(self, request):
        t0 = time.perf_counter()
        photometry = self._get_photometry(request)
        self._check_cancel(request.request_id)
        if isinstance(request, Chi2MapJob):
            progress = self._progress_callback(request.request_id)

            def progress_and_fits(fraction: float, message: str):
                progress(fraction, message)
                self._fits_between_rows(request)
            result = chi2_map(photometry, request.primary, request.center,
                              request.half_width, request.step, request.reoptimize_primary,
                              progress=progress_and_fits)
            return Chi2MapResult(request, result)
        return self._fit(request, photometry, t0)

    def _fits_between_rows(self, map_request):
        """While a map runs, the fits the user asks for (a marker moved) run between two
        of its rows, so the numbers follow the markers instead of waiting for the map."""
        with self._cond:
            request = self._pending.get(FIT)
            if request is None or (str(Path(request.manifest_path).resolve()),
                                   request.settings) != self._photometry_key:
                return
            del self._pending[FIT]
        try:
            result = self._fit(request, self._photometry, time.perf_counter())
        except Cancelled:
            return
        except BaseException as exc:   # noqa: BLE001 - reported to the window
            result = JobFailure(request, exc, traceback.format_exc())
        with self._cond:
            self.jobs_done[FIT] += 1
        self.finished_job.emit(result)

    def _fit(self, request, photometry, t0: float):
        t_fit = time.perf_counter()
        fit = measure(photometry, request.fit, preview=request.preview)
        fit_s = time.perf_counter() - t_fit
        index = request.panel_index
        if index is None or not 0 <= index < len(fit.scene.exposures):
            index = fit.scene.detection_index
        return FitResult(request, fit, summarize(fit), five_panels(fit, index),
                         None if request.preview else diagnostic_columns(fit),
                         tuple(photometry.dropped),
                         time.perf_counter() - t0, fit_s,
                         self._overlays(fit.scene.exposures[index], fit))

    def _overlays(self, exposure, fit):
        """The sky overlays of the shown exposure (WCS inverses: ~13 ms on DES data, so
        here rather than on the GUI thread, and once per exposure and settings)."""
        key = (id(exposure), fit.settings)
        if self._overlay_key != key:
            try:
                value = exposure_overlays(exposure, fit.manifest.ra, fit.manifest.dec,
                                          fit.settings)
            except Exception:   # noqa: BLE001 - a WCS that cannot invert: no overlay
                value = None
            self._overlay_key, self._overlay_value = key, (exposure, value)
        return self._overlay_value


class FitController(QObject):
    """Submits requests to the worker and delivers the results that are still wanted.

    Signals
    -------
    fitFinished(FitResult), chi2MapFinished(Chi2MapResult), failed(JobFailure),
    progress(request_id, fraction, message), busyChanged(bool).
    """

    fitFinished = pyqtSignal(object)
    chi2MapFinished = pyqtSignal(object)
    failed = pyqtSignal(object)
    progress = pyqtSignal(int, float, str)
    busyChanged = pyqtSignal(bool)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._ids = itertools.count(1)
        self._generation = 0
        self._generation_key = None
        self._last_submitted = 0
        self._last_job = None
        self._cancelled_up_to = 0
        self._last_delivered = {FIT: 0, MAP: 0}
        self.dropped_results = 0
        if sys.getswitchinterval() > GIL_SWITCH_INTERVAL_S:
            sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        limit_blas_threads()   # once per process (the app does it at start-up already)
        self._worker = _Worker()
        self._worker.finished_job.connect(self._on_finished)
        self._worker.progress.connect(self._on_progress)
        self._worker.start()

    @property
    def busy(self) -> bool:
        return not self._worker.is_idle()

    @property
    def last_submitted(self) -> int:
        return self._last_submitted

    @property
    def last_job(self):
        """The request submitted last (with its id), or None."""
        return self._last_job

    @property
    def fits_computed(self) -> int:
        """Fit jobs the worker computed to the end (a replaced pending request is never
        computed; a cancelled one stops early)."""
        return self._worker.jobs_done[FIT]

    @property
    def fits_replaced(self) -> int:
        """Fit requests replaced, while pending, by a newer one (never computed)."""
        return self._worker.jobs_replaced[FIT]

    @property
    def worker_thread(self) -> QThread:
        return self._worker

    def submit(self, request) -> int:
        """Queue ``request`` (replacing the pending one of its channel); returns its id."""
        key = (str(request.manifest_path), request.settings)
        if key != self._generation_key:
            # Another detection or other settings: everything older is stale.
            self._generation += 1
            self._generation_key = key
            self._worker.cancel_all(self._last_submitted)   # stop building the old one
        request_id = next(self._ids)
        request = dataclasses.replace(request, request_id=request_id,
                                      generation=self._generation)
        self._last_submitted = request_id
        self._last_job = request
        self._worker.put(request)
        self.busyChanged.emit(True)
        return request_id

    def cancel(self):
        """Drop pending requests and stop (or ignore) the running one."""
        self._generation += 1
        self._generation_key = None
        self._cancelled_up_to = self._last_submitted
        self._worker.cancel_all(self._last_submitted)
        self.busyChanged.emit(False)

    def wait_idle(self, timeout_s: float = 30.0) -> bool:
        """Block (without processing events) until the worker has nothing to do."""
        deadline = time.monotonic() + timeout_s
        while not self._worker.is_idle():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)
        return True

    def shutdown(self):
        """Stop the worker thread and wait for it (call before the window goes away)."""
        if self._worker.isRunning():
            self._worker.stop()
            self._worker.wait()

    # -- from the worker (queued into the GUI thread) ------------------------------------

    def _on_progress(self, request_id: int, fraction: float, message: str):
        if request_id > self._cancelled_up_to:
            self.progress.emit(request_id, fraction, message)

    def _on_finished(self, result):
        request = result.request
        stale = (request.generation != self._generation
                 or request.request_id <= self._last_delivered[request.channel])
        if self._worker.is_idle():
            self.busyChanged.emit(False)
        if stale:
            self.dropped_results += 1
            return
        self._last_delivered[request.channel] = request.request_id
        if isinstance(result, JobFailure):
            self.failed.emit(result)
        elif isinstance(result, Chi2MapResult):
            self.chi2MapFinished.emit(result)
        else:
            self.fitFinished.emit(result)
