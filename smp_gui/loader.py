"""Building a `DetectionPhotometry` in a child process, for the window's worker thread.

Why a process: a cold build (reading Piff files and stamps, running the WCS code stored in
DES Piff files, rendering the PSF grid) is ~1 s of mostly Python-level work.  In a thread it
competes with the GUI thread for the GIL, and every Qt call the GUI thread makes has to win
the GIL back, so a repaint that takes 20 ms alone took 50-100 ms during a build.  In a child
the build runs on the other core and the window only receives the finished object.

Transport: the child pickles the result with protocol 5, numpy arrays out of band (raw
bytes received straight into writable buffers, no copy through pickle) and each exposure
separately, so the parent unpickles it in pieces of a few milliseconds each: one big
``pickle.loads`` holds the GIL for ~170 ms.

Children are forked from a forkserver that has the engine imported (`start_server`), so a
build starts in ~20 ms, not after the engine's 3 s of imports.  This module imports no Qt:
the forkserver and its children import it.  As with any multiprocessing start method but
fork, a script that opens the window must guard its top level with
``if __name__ == "__main__":`` (children import the main module); or set
`smp_gui.controller.BUILD_IN_CHILD_PROCESS` to False to build in the worker thread.
"""
from __future__ import annotations

import io
import multiprocessing
import pickle
import traceback
import warnings
from collections.abc import Callable, Sequence

from smp_model.errors import SMPError
from smp_model.fit.photometry import DetectionPhotometry
from smp_model.settings import FitSettings

__all__ = ["PROCESS_NAME", "BuildCache", "BuildProcessError", "available", "build_here",
           "build_in_child", "prefetched", "start_server"]

_PRELOAD = ["smp_model.fit.photometry", "smp_model.psf.piff_io", "piff", "smp_gui.loader"]
PROCESS_NAME = "smp-build"   # of every build child (multiprocessing.active_children())
_POLL_S = 0.05


def _context():
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


def start_server() -> None:
    """Start the forkserver now (its imports take seconds; call at start-up so that the
    first detection does not wait for them).  Idempotent."""
    _context()
    from multiprocessing import forkserver
    forkserver.ensure_running()


def available() -> bool:
    """Whether this platform can fork children from a server (POSIX)."""
    return "forkserver" in multiprocessing.get_all_start_methods()


class BuildProcessError(SMPError):
    """The child process building the detection died without a result."""


def build_in_child(manifest_path: str, settings: FitSettings,
                   progress: Callable[[float, str], None],
                   check_cancel: Callable[[], None]) -> DetectionPhotometry:
    """`DetectionPhotometry(manifest_path, settings)` built in a child process.

    ``progress(fraction, message)`` is called in this thread with the child's progress
    and ``check_cancel()`` before each message and at least every 50 ms; either may raise
    to cancel: the child is then terminated and the exception propagates.  An exception
    raised in the child (an `SMPError` for bad input) is re-raised here, the child's
    traceback chained to it.
    """
    ctx = _context()
    receiver, sender = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child_main, args=(sender, manifest_path, settings),
                        name=PROCESS_NAME, daemon=True)
    child.start()
    sender.close()   # only the child writes: EOF when it dies
    try:
        exposures = []
        while True:
            # before every wait, not only after a quiet one: a child that streams progress
            # faster than the poll interval must still be cancellable
            check_cancel()
            if not receiver.poll(_POLL_S):
                continue
            try:
                kind, payload = receiver.recv()
                if kind == "progress":
                    progress(*payload)
                elif kind == "exposure":
                    exposures.append(_receive_object(receiver, payload))
                elif kind == "photometry":
                    return _receive_object(receiver, payload, exposures)
                else:   # "error"
                    error, text = payload
                    raise error from _ChildTraceback(text)
            except EOFError:   # the child is gone, possibly mid-message
                child.join(1)
                raise BuildProcessError(
                    f"the process reading the detection ended unexpectedly (exit code "
                    f"{child.exitcode})", manifest_path) from None
    finally:
        receiver.close()
        if child.is_alive():
            child.terminate()
        child.join()


class _ChildTraceback(Exception):
    """The child's traceback, chained under the re-raised error for --debug output."""


def build_here(manifest_path: str, settings: FitSettings,
               progress: Callable[[float, str], None]) -> DetectionPhotometry:
    """The same build in this process (the child's, and the fallback without one)."""
    with warnings.catch_warnings():
        # Dropped exposures are reported by the window from `.dropped`.
        warnings.simplefilter("ignore")
        return DetectionPhotometry(manifest_path, settings, progress=progress)


def _child_main(sender, manifest_path: str, settings: FitSettings) -> None:
    try:
        photometry = build_here(manifest_path, settings,
                                lambda fraction, message: sender.send(
                                    ("progress", (fraction, message))))
        for exposure in photometry.exposures:
            _send_object(sender, "exposure", exposure)
        _send_object(sender, "photometry", photometry, photometry.exposures)
    except BaseException as exc:   # noqa: BLE001 - everything goes to the parent
        sender.send(("error", (_picklable(exc), traceback.format_exc())))
    finally:
        sender.close()


def _picklable(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:   # noqa: BLE001 - any exception type may refuse pickling
        return RuntimeError(f"{type(exc).__name__}: {exc}")


class _Pickler(pickle.Pickler):
    """Pickles the objects in ``external`` as references to their index."""

    def __init__(self, file, external: Sequence, **kwargs):
        super().__init__(file, protocol=5, **kwargs)
        self._index = {id(obj): k for k, obj in enumerate(external)}

    def persistent_id(self, obj):
        return self._index.get(id(obj))


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, external: Sequence, **kwargs):
        super().__init__(file, **kwargs)
        self._external = external

    def persistent_load(self, pid):
        return self._external[pid]


def _send_object(sender, kind: str, obj, external: Sequence = ()) -> None:
    buffers: list[pickle.PickleBuffer] = []
    stream = io.BytesIO()
    _Pickler(stream, external, buffer_callback=buffers.append).dump(obj)
    raws = [buffer.raw() for buffer in buffers]
    sender.send((kind, (stream.getvalue(), [raw.nbytes for raw in raws])))
    for raw in raws:
        sender.send_bytes(raw)


def _receive_object(receiver, payload, external: Sequence = ()):
    data, sizes = payload
    buffers = []
    for size in sizes:
        buffer = bytearray(size)   # writable: arrays built on it may be modified
        receiver.recv_bytes_into(buffer)
        buffers.append(buffer)
    return _Unpickler(io.BytesIO(data), external, buffers=buffers).load()


# -- prefetching ------------------------------------------------------------------------

class _PrefetchCancelled(Exception):
    """Raised through a prefetch build's cancel check when the cache drops it."""


class BuildCache:
    """Detections built ahead of time (the survey view prefetches the neighbours of the
    detection shown), keyed by (resolved manifest path, settings).

    `prefetch` queues a build in a child process (one at a time, on a background thread);
    `take` hands a finished or running build to the window's worker, which waits for it
    instead of starting a second build of the same detection.  At most ``max_items``
    builds are kept; the oldest is dropped (and cancelled if still running)."""

    def __init__(self, max_items: int = 3):
        import threading
        from collections import OrderedDict
        self.max_items = max_items
        self._lock = threading.Lock()
        self._futures: "OrderedDict[tuple, object]" = OrderedDict()
        self._cancelled: set[tuple] = set()
        self._executor = None
        self.builds_started = 0

    @staticmethod
    def key(manifest_path, settings: FitSettings) -> tuple:
        from pathlib import Path
        return (str(Path(manifest_path).resolve()), settings)

    def prefetch(self, manifest_path, settings: FitSettings) -> None:
        """Start building ``manifest_path`` with ``settings`` unless cached or queued."""
        from concurrent.futures import ThreadPoolExecutor
        key = self.key(manifest_path, settings)
        with self._lock:
            if key in self._futures:
                self._futures.move_to_end(key)
                return
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="smp-prefetch")
            self._cancelled.discard(key)
            self._futures[key] = self._executor.submit(self._build, key)
            self.builds_started += 1
            while len(self._futures) > self.max_items:
                old, future = self._futures.popitem(last=False)
                self._cancelled.add(old)
                future.cancel()

    def _build(self, key: tuple) -> DetectionPhotometry:
        def check_cancel():
            if key in self._cancelled:
                raise _PrefetchCancelled
        check_cancel()
        if available():
            return build_in_child(key[0], key[1], lambda *_: None, check_cancel)
        return build_here(key[0], key[1], lambda *_: None)

    def take(self, manifest_path, settings: FitSettings,
             check_cancel: Callable[[], None]) -> DetectionPhotometry | None:
        """The prefetched build of this detection (waiting for it if it is running), or
        None when there is none or it failed (the caller then builds it itself, and
        reports the error).  ``check_cancel()`` is called every 50 ms while waiting."""
        import concurrent.futures
        key = self.key(manifest_path, settings)
        with self._lock:
            future = self._futures.get(key)
        if future is None or future.cancelled():
            return None
        while True:
            try:
                return future.result(timeout=_POLL_S)
            except concurrent.futures.TimeoutError:
                check_cancel()
            except Exception:   # noqa: BLE001 - the caller's own build reports it
                with self._lock:
                    self._futures.pop(key, None)
                return None

    def is_ready(self, manifest_path, settings: FitSettings) -> bool:
        with self._lock:
            future = self._futures.get(self.key(manifest_path, settings))
        return future is not None and future.done() and not future.cancelled() \
            and future.exception() is None

    def clear(self) -> None:
        """Drop every build (running ones are cancelled)."""
        with self._lock:
            for key, future in self._futures.items():
                self._cancelled.add(key)
                future.cancel()
            self._futures.clear()


#: The window's prefetched builds (filled by the survey view, read by the worker).
prefetched = BuildCache()
