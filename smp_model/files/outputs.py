"""Safe file writing: every output is written to a temporary file and renamed into place,
so an interrupted run never leaves a half-written file, and an existing file is replaced
only when the caller says so (`atomic_output`); several outputs of one run are written all
or none (`OutputFiles`)."""
from __future__ import annotations

import contextlib
import contextvars
import datetime as _dt
import os
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from ..errors import SMPError, exception_text

__all__ = ["OutputExistsError", "OutputFiles", "OutputPathError", "OutputWriteError",
           "atomic_output", "atomic_write", "atomic_write_bytes", "check_writable",
           "utc_timestamp"]


class OutputPathError(SMPError):
    """An output path that cannot be written: two outputs named by one path, an input of
    the run, a directory, a folder that cannot be written."""


class OutputExistsError(OutputPathError):
    """The output file exists and overwriting was not requested."""


class OutputWriteError(OutputPathError, OSError):
    """Writing an output failed (disk full, no permission): names the file asked for, never
    the temporary file it was being written to."""


def check_writable(path: str | os.PathLike, overwrite: bool) -> Path:
    """Return ``path`` as a Path, or raise `OutputExistsError` if it exists and
    ``overwrite`` is false."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError("exists; not overwritten (use overwrite/--overwrite)", path)
    return path


# The `OutputFiles` whose block is running, if any: `atomic_output` then leaves its
# temporary file to it instead of renaming it at once.
_TRANSACTION: contextvars.ContextVar["OutputFiles | None"] = contextvars.ContextVar(
    "smp_output_transaction", default=None)


@contextmanager
def atomic_output(path: str | os.PathLike, overwrite: bool = False):
    """Yield a temporary path in the destination folder; on success rename it to ``path``
    (inside an `OutputFiles` block: when the whole block succeeds).

    The temporary file keeps the destination's suffix so that writers that choose a
    format by extension (astropy, matplotlib) behave as for the real name.  Every failure
    to write raises `OutputWriteError` naming ``path``.
    """
    path = check_writable(path, overwrite)
    transaction = _TRANSACTION.get()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix,
                                   dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise _write_error(exc, path) from None
    tmp_path = Path(tmp)
    staged = False   # handed to the transaction, which renames or removes it
    try:
        yield tmp_path
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        os.chmod(tmp_path, 0o666 & ~_umask())
        if transaction is not None:
            transaction._stage(tmp_path, path, overwrite)
            staged = True
            return
        _move_into_place(tmp_path, path, overwrite)
    except OSError as exc:
        raise _write_error(exc, path) from None
    finally:
        if not staged:
            tmp_path.unlink(missing_ok=True)


def _move_into_place(tmp: Path, path: Path, overwrite: bool) -> None:
    if not overwrite and path.exists():   # created by someone else meanwhile
        raise OutputExistsError("appeared while writing; not overwritten", path)
    os.replace(tmp, path)


def _write_error(exc: OSError, path: Path) -> OSError:
    """The temporary name means nothing to the user: the error names the file asked for."""
    if isinstance(exc, OutputPathError):
        return exc
    return OutputWriteError(f"not written ({exc.strerror or exception_text(exc)})", path)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None],
                 overwrite: bool = False) -> Path:
    """Call ``write(tmp_path)`` and move the result to ``path`` atomically."""
    with atomic_output(path, overwrite) as tmp:
        write(tmp)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, overwrite: bool = False) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), overwrite)


class OutputFiles:
    """Several output files written as one transaction: all of them, or none.

    Made before the work that produces them, it checks every path at once (`check`):
    distinct, none an input of the run, none a directory, none existing unless
    ``overwrite``, each folder writable (a file is created and removed there).  Writers
    called inside its ``with`` block write through `atomic_output` as always; their
    temporary files are renamed into place only when the block ends without an exception,
    and then all together (an existing file is kept aside until every rename succeeded).
    On any failure every temporary file and every folder made for the outputs is removed:
    nothing new is left and nothing the user had is changed.

    Parameters
    ----------
    outputs : mapping of str to path or None
        What names each output (``"--table"``) and its path; None entries are not asked for.
    overwrite : bool
        Whether existing files may be replaced.
    """

    def __init__(self, outputs: dict[str, str | os.PathLike | None], overwrite: bool = False):
        self.outputs = {what: Path(path) for what, path in outputs.items() if path}
        self.overwrite = overwrite
        self._staged: list[tuple[Path, Path]] = []
        self._made: list[Path] = []
        self.check()

    def check(self, inputs: dict[str, list] | None = None) -> None:
        """Refuse (`OutputPathError`, `OutputExistsError`) an output path that cannot be
        written; ``inputs`` ({what: paths}, e.g. ``{"manifest": [...]}``) are files of the
        run that no output may replace, even with ``overwrite``."""
        seen: dict[str, str] = {}
        for what, path in self.outputs.items():
            real = os.path.realpath(path)
            if real in seen:
                raise OutputPathError(f"named by both {seen[real]} and {what}; give each "
                                      "output its own file", path)
            seen[real] = what
            if path.is_dir():
                raise OutputPathError(f"is a directory; {what} needs a file name", path)
            check_writable(path, self.overwrite)
            _probe_folder(path)
        for kind, paths in (inputs or {}).items():
            for path in paths:
                what = seen.get(os.path.realpath(path))
                if what:
                    raise OutputPathError(f"is the {kind} this run reads and cannot be its "
                                          f"{what}; not overwritten, even with --overwrite",
                                          path)

    def __enter__(self) -> "OutputFiles":
        self._made = [folder for path in self.outputs.values()
                      for folder in _missing_folders(path.parent)]
        self._token = _TRANSACTION.set(self)
        return self

    def __exit__(self, kind, exc, traceback) -> None:
        _TRANSACTION.reset(self._token)
        if kind is None:
            self._commit()
        else:
            self._roll_back()

    def _stage(self, tmp: Path, path: Path, overwrite: bool) -> None:
        check_writable(path, overwrite)
        self._staged.append((tmp, path))

    def _commit(self) -> None:
        done: list[tuple[Path, Path | None]] = []   # (file placed, the file it replaced)
        try:
            for tmp, path in self._staged:
                aside = _set_aside(path) if self.overwrite else None
                try:
                    _move_into_place(tmp, path, self.overwrite)
                except BaseException:
                    if aside is not None:
                        os.replace(aside, path)
                    raise
                done.append((path, aside))
        except OSError as exc:
            for placed, aside in reversed(done):
                if aside is not None:
                    os.replace(aside, placed)
                else:
                    placed.unlink(missing_ok=True)
            self._roll_back()
            raise _write_error(exc, path) from None
        for _, aside in done:
            if aside is not None:
                aside.unlink(missing_ok=True)
        self._staged = []

    def _roll_back(self) -> None:
        for tmp, _ in self._staged:
            tmp.unlink(missing_ok=True)
        self._staged = []
        for folder in sorted(set(self._made), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                folder.rmdir()   # only if empty: what others put there stays


def _probe_folder(path: Path) -> None:
    """Raise `OutputPathError` unless a file can be created beside ``path`` (in its folder,
    or the deepest folder of it that exists): the check that holds for root and for
    read-only file systems alike, unlike `os.access`."""
    folder = next((p for p in (path.parent, *path.parent.parents) if p.exists()), Path("/"))
    if not folder.is_dir():
        raise OutputPathError(f"cannot be written: {folder} is not a folder", path)
    try:
        fd, probe = tempfile.mkstemp(prefix=".smp-probe.", dir=folder)
    except OSError as exc:
        raise OutputPathError(f"cannot be written: {folder} is not writable "
                              f"({exc.strerror or exc})", path) from None
    os.close(fd)
    os.unlink(probe)


def _missing_folders(folder: Path) -> list[Path]:
    return [p for p in (folder, *folder.parents) if not p.exists()]


def _set_aside(path: Path) -> Path | None:
    """Move an existing ``path`` to a hidden name beside it (restored if the transaction
    fails); None when there is nothing to keep."""
    if not path.exists():
        return None
    fd, aside = tempfile.mkstemp(prefix=f".{path.stem}.old.", suffix=path.suffix,
                                 dir=path.parent)
    os.close(fd)
    os.replace(path, aside)
    return Path(aside)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def utc_timestamp() -> str:
    """The current time as an ISO 8601 UTC timestamp to the second (``created`` and
    ``updated`` of outputs and review entries)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
