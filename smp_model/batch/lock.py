"""One writer per batch output: an exclusive lock on ``<out>.lock`` held for the whole run.

The lock is ``fcntl.flock`` on a lock file beside ``--out``, taken before anything is
checked or written.  The kernel releases it when the process ends, however it ends, so a
run killed with SIGKILL leaves no lock that blocks the next one (its lock file stays, with
its pid and host, and the next run says it took it over).  The file holds the owner's pid,
host and start time, for the message a second run prints.

Safe: any number of runs on one host, on a local file system.  On NFS, Linux maps flock to
POSIX byte-range locks of the NFS lock manager (NFSv4, or NFSv3 with lockd): runs on
several hosts exclude each other when the server supports locking; when it does not (an
export mounted ``nolock``, some FUSE file systems), each host only excludes its own runs.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from ..files import utc_timestamp
from .items import BatchError

__all__ = ["LOCK_SUFFIX", "BatchLockedError", "lock_path", "output_lock"]

LOCK_SUFFIX = ".lock"


class BatchLockedError(BatchError):
    """Another batch is writing the same output."""


def lock_path(out: str | os.PathLike) -> Path:
    """The lock file of the batch output ``out``: ``<out>.lock`` beside it."""
    out = Path(out)
    return out.with_name(out.name + LOCK_SUFFIX)


@contextlib.contextmanager
def output_lock(out: str | os.PathLike, say=None, wait: bool = False) -> Iterator[Path]:
    """Hold the exclusive lock of the batch output ``out`` for the ``with`` block.

    Parameters
    ----------
    out : path
        The batch's merged table (``--out``); the lock file is `lock_path` of it.
    say : callable, optional
        ``say(text)`` is told when the run waits for another one, and when a lock file
        left by a run that ended without removing it (killed) is taken over.
    wait : bool
        Wait for a running batch to end instead of raising `BatchLockedError` at once,
        naming it (pid, host, start time).

    The lock file is removed on exit.
    """
    path = lock_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _locked_fd(path, Path(out), say if wait else None)
    try:
        previous = _owner(fd)
        if previous and say:
            say(f"took over {path} left by {_describe(previous)}, which ended without "
                "removing it")
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": utc_timestamp()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        yield path
    finally:
        # Unlinked while still held: a run that opened the old file finds it gone from
        # the folder when it gets the lock (`_locked_fd` checks) and starts again.
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)


def _locked_fd(path: Path, out: Path, waiting=None) -> int:
    """A descriptor of ``path`` holding its flock, the file being the one now at ``path``;
    with ``waiting`` (a callable, told once) it waits for the owner instead of raising."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise BatchError(f"cannot create the batch lock file ({exc.strerror or exc})",
                             path) from None
        try:
            if not _try_lock(fd, path):
                owner = _describe(_owner(fd))
                if waiting is None:
                    raise BatchLockedError(
                        f"another smp batch is writing this output ({owner}); wait for it "
                        "to end (--wait) or choose another --out", out)
                waiting(f"waiting for the smp batch writing {out} ({owner}) to end")
                waiting = _said
                fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)   # the owner removed the file as we waited: lock the new one


def _said(text: str) -> None:
    """Told again after the first wait: nothing to add."""


def _try_lock(fd: int, path: Path) -> bool:
    """Take the flock of ``fd`` if free; False when another open file holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise BatchError(f"cannot lock the batch output ({exc.strerror or exc})",
                         path) from None
    return True


def _owner(fd: int) -> dict | None:
    try:
        owner = json.loads(os.pread(fd, 4096, 0).decode() or "null")
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return owner if isinstance(owner, dict) else None


def _describe(owner: dict | None) -> str:
    if not owner:
        return "a run that has not yet written its pid"
    return (f"pid {owner.get('pid')} on host {owner.get('host')}, started "
            f"{owner.get('started')}")
