"""Safe file writing: every output is written to a temporary file and renamed into place,
so an interrupted run never leaves a half-written file, and an existing file is replaced
only when the caller says so."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from .errors import SMPError


class OutputExistsError(SMPError):
    """The output file exists and overwriting was not requested."""


def check_writable(path: str | os.PathLike, overwrite: bool) -> Path:
    """Return ``path`` as a Path, or raise `OutputExistsError` if it exists and
    ``overwrite`` is false."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError("exists; not overwritten (use overwrite/--overwrite)", path)
    return path


@contextmanager
def atomic_output(path: str | os.PathLike, overwrite: bool = False):
    """Yield a temporary path in the destination folder; on success rename it to ``path``.

    The temporary file keeps the destination's suffix so that writers that choose a
    format by extension (astropy, matplotlib) behave as for the real name.
    """
    path = check_writable(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if not overwrite and path.exists():   # created by someone else meanwhile
            raise OutputExistsError("appeared while writing; not overwritten", path)
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None],
                 overwrite: bool = False) -> Path:
    """Call ``write(tmp_path)`` and move the result to ``path`` atomically."""
    with atomic_output(path, overwrite) as tmp:
        write(tmp)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, overwrite: bool = False) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), overwrite)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
