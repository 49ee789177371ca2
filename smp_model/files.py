"""Safe file writing: every output is written to a temporary file and renamed into place,
so an interrupted run never leaves a half-written file, and an existing file is replaced
only when the caller says so.  Also a cheap check that an input FITS file is complete."""
from __future__ import annotations

import datetime as _dt
import os
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from .errors import SMPError

__all__ = ["FITS_BLOCK", "TABLE_FORMATS", "OutputExistsError", "atomic_output", "atomic_write",
           "atomic_write_bytes", "check_writable", "fits_file_problem", "read_input_table",
           "require_fits_file", "utc_timestamp"]

# astropy table format of each file suffix we read and write (ECSV, FITS, VOTable, CSV).
TABLE_FORMATS = {".ecsv": "ascii.ecsv", ".fits": "fits", ".fit": "fits", ".fts": "fits",
                 ".vot": "votable", ".xml": "votable", ".csv": "ascii.csv"}


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
    except OSError as exc:
        # The temporary name means nothing to the user: report the file they asked for.
        if exc.filename is not None and Path(exc.filename) in (tmp_path, path) \
                or str(tmp_path) in str(exc):
            raise OSError(exc.errno, f"not written ({exc.strerror or 'write failed'})",
                          str(path)) from None
        raise
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


FITS_BLOCK = 2880
_CARD = 80
_COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"PK\x03\x04")   # gzip, bzip2, zip: astropy opens them


def fits_file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not a complete FITS file (``None`` if it looks like one).

    Walks the headers (without reading data) and checks that every HDU's data fits in
    the file.  Done before astropy opens the file: astropy reads a truncated file with
    warnings (several lines on stderr) and then fails or returns partial data.
    Compressed files are left to astropy.
    """
    try:
        size = os.stat(path).st_size
        if size == 0:
            return "empty file (0 bytes), not a FITS file"
        with open(path, "rb") as f:
            if f.read(9).startswith(_COMPRESSED_MAGIC):
                return None
            f.seek(0)
            return _walk_fits(f, size)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"


def _walk_fits(f, size: int) -> str | None:
    position, n_hdu = 0, 0
    while position < size:
        f.seek(position)
        first = f.read(FITS_BLOCK)
        start = b"SIMPLE  =" if n_hdu == 0 else b"XTENSION="
        if not first.startswith(start):
            if n_hdu == 0:
                return "not a FITS file (it does not start with a SIMPLE card)"
            if not (first + f.read()).strip(b"\0 "):
                return None   # blank padding after the last HDU
            return f"corrupt FITS file (bytes after HDU {n_hdu - 1} are not an extension)"
        cards, block = {}, first
        while True:
            if len(block) < FITS_BLOCK:
                return f"truncated FITS file (header of HDU {n_hdu} is cut off)"
            position += FITS_BLOCK
            for i in range(0, FITS_BLOCK, _CARD):
                card = block[i:i + _CARD]
                if card[:8] == b"END     ":
                    break
                if card[8:10] == b"= ":
                    cards[card[:8].strip()] = card[10:].split(b"/")[0].strip()
            else:
                block = f.read(FITS_BLOCK)
                continue
            break
        try:
            data = _data_size(cards)
        except (ValueError, KeyError):
            data = -1
        if data < 0:
            return f"corrupt FITS file (HDU {n_hdu} has missing or invalid size keywords)"
        position += -(-data // FITS_BLOCK) * FITS_BLOCK
        if position > size:
            return (f"truncated FITS file (HDU {n_hdu} needs {position} bytes, the file has "
                    f"{size})")
        n_hdu += 1
    return None


def _data_size(cards: dict[bytes, bytes]) -> int:
    """Bytes of data after a header (FITS standard 4.4.1), padding excluded."""
    naxis = int(cards.get(b"NAXIS", b"0"))
    if naxis == 0:
        return 0
    axes = [int(cards[b"NAXIS%d" % n]) for n in range(1, naxis + 1)]
    if axes[0] == 0 and cards.get(b"GROUPS") == b"T":   # random groups
        axes = axes[1:]
    count = 1
    for n in axes:
        count *= n
    bitpix = abs(int(cards[b"BITPIX"]))
    return bitpix // 8 * int(cards.get(b"GCOUNT", b"1")) * (int(cards.get(b"PCOUNT", b"0"))
                                                           + count)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_input_table(path: str | os.PathLike, error: type[SMPError], what: str,
                     format: str | None = None):
    """A table a user gives (ECSV/FITS/CSV by extension, else astropy's guess, or
    ``format``), as an astropy `Table`; a missing or unreadable file raises ``error``
    naming the file and ``what`` it should have been, in one line."""
    from astropy.table import Table
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} not found" if not path.exists() else "is not a file", path)
    try:
        return Table.read(path, format=format or TABLE_FORMATS.get(path.suffix.lower()))
    except Exception as exc:   # astropy raises many types for unreadable tables
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise error(f"cannot read {what} ({detail})", path) from None


def require_fits_file(path: Path, error: type[SMPError], what: str) -> None:
    """Raise ``error`` naming ``path`` if it is missing, not a file, or not sound FITS
    (`fits_file_problem`); ``what`` names the file kind in the message ("stamp file")."""
    if not path.is_file():
        raise error(f"{what} not found" if not path.exists() else "is not a file", path)
    problem = fits_file_problem(path)
    if problem:
        raise error(problem, path)


def utc_timestamp() -> str:
    """The current time as an ISO 8601 UTC timestamp to the second (``created`` and
    ``updated`` of outputs and review entries)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
