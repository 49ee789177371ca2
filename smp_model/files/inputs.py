"""The checks an input file passes before a reader opens it: the path can be opened
(`input_path_problem`: not missing, no symbolic-link loop, not too long) and a FITS file is
complete, compressed or not (`fits_file_problem`); and the readers that apply them to the
tables (`read_input_table`) and FITS files (`open_input_fits`) a user gives."""
from __future__ import annotations

import bz2
import errno
import gzip
import lzma
import os
import stat
import warnings
import zlib
from contextlib import contextmanager
from pathlib import Path

from ..errors import SMPError, exception_text
from ..limits import MAX_DECOMPRESSED_BYTES

__all__ = ["FITS_BLOCK", "TABLE_FORMATS", "fits_file_problem", "input_path_problem",
           "open_input_fits", "path_length_problem", "read_input_table", "require_fits_file"]

# astropy table format of each file suffix we read and write (ECSV, FITS, VOTable, CSV).
TABLE_FORMATS = {".ecsv": "ascii.ecsv", ".fits": "fits", ".fit": "fits", ".fts": "fits",
                 ".vot": "votable", ".xml": "votable", ".csv": "ascii.csv"}


FITS_BLOCK = 2880
_CARD = 80
# Compressed FITS files astropy (and cfitsio) open: magic bytes, the name used in messages and
# the stream reader.  Zip archives are left to astropy.
_COMPRESSED = ((b"\x1f\x8b", "gzip", gzip.open), (b"BZh", "bzip2", bz2.open),
               (b"\xfd7zXZ\x00", "xz", lzma.open))
_ZIP_MAGIC = b"PK\x03\x04"
# What the stream readers raise on damaged data: zlib.error (invalid deflate data),
# gzip.BadGzipFile (CRC or length check, a bad header), EOFError (truncated stream),
# lzma.LZMAError, and OSError (bzip2's "Invalid data stream").
_DECODING_ERRORS = (zlib.error, EOFError, lzma.LZMAError, OSError, ValueError)


def fits_file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not a complete FITS file (``None`` if it looks like one).

    Walks the headers (without reading data) and checks that every HDU's data fits in
    the file.  Done before astropy opens the file: astropy reads a truncated file with
    warnings (several lines on stderr) and then fails or returns partial data.  A gzip,
    bzip2 or xz file is first decompressed once to the end (its checksum tested, never held
    in memory), then walked the same way: astropy reads a damaged stream as "HDUs" of
    garbage, for minutes, or lets the decoder's own error escape.
    """
    try:
        size = os.stat(path).st_size
        if size == 0:
            return "empty file (0 bytes), not a FITS file"
        with open(path, "rb") as f:
            magic = f.read(9)
            if magic.startswith(_ZIP_MAGIC):
                return None
            for prefix, name, opener in _COMPRESSED:
                if magic.startswith(prefix):
                    return _compressed_fits_problem(path, name, opener)
            f.seek(0)
            return _walk_fits(f, size)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"


def _compressed_fits_problem(path, name: str, opener) -> str | None:
    try:
        size = 0
        with opener(path, "rb") as stream:
            while chunk := stream.read(1 << 20):
                size += len(chunk)
                if size > MAX_DECOMPRESSED_BYTES:
                    return (f"{name} file expands to more than "
                            f"{MAX_DECOMPRESSED_BYTES / 1024**3:g} GiB; not an input file")
        if size == 0:
            return f"{name} file holds no data, not a FITS file"
        with opener(path, "rb") as stream:
            problem = _walk_fits(stream, size)
    except _DECODING_ERRORS as exc:
        return f"damaged {name} stream ({exception_text(exc)}); the file cannot be decompressed"
    return None if problem is None else f"{problem} (inside the {name} stream)"


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


def read_input_table(path: str | os.PathLike, error: type[SMPError], what: str,
                     format: str | None = None):
    """A table a user gives (ECSV/FITS/CSV by extension, else astropy's guess, or
    ``format``), as an astropy `Table`; a missing or unreadable file raises ``error``
    naming the file and ``what`` it should have been, in one line."""
    from astropy.table import Table
    path = Path(path)
    format = format or TABLE_FORMATS.get(path.suffix.lower())
    problem = input_path_problem(path, what) or (format == "fits" and fits_file_problem(path))
    if problem:
        raise error(problem, path)
    try:
        return Table.read(path, format=format)
    except Exception as exc:   # astropy raises many types for unreadable tables
        detail = " ".join(str(exc).split()) or type(exc).__name__
        if not isinstance(exc, ValueError | TypeError | KeyError):   # a decoder's own error
            detail = exception_text(exc)
        raise error(f"cannot read {what} ({detail})", path) from None


def require_fits_file(path: Path, error: type[SMPError], what: str) -> None:
    """Raise ``error`` naming ``path`` if it cannot be opened (`input_path_problem`) or is
    not sound FITS (`fits_file_problem`); ``what`` names the file kind in the message
    ("stamp file")."""
    problem = input_path_problem(path, what) or fits_file_problem(path)
    if problem:
        raise error(problem, path)


# What astropy raises on a file it cannot decode, besides the decoders' own errors.
def _astropy_errors() -> tuple[type[BaseException], ...]:
    from astropy.io.fits.verify import VerifyError
    return (*_DECODING_ERRORS, TypeError, IndexError, KeyError, VerifyError)


@contextmanager
def open_input_fits(path: str | os.PathLike, error: type[SMPError], what: str):
    """The input FITS file ``path`` opened with astropy (whole, not memory-mapped), after
    `require_fits_file`; every failure to decode it, at opening or in any header card,
    raises ``error`` naming the file in one line (never astropy's warnings on stderr).
    Reading the data inside the ``with`` block is the caller's to guard."""
    from astropy.io import fits
    path = Path(path)
    require_fits_file(path, error, what)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # astropy's header warnings: reported below
            hdul = fits.open(path, memmap=False)
            hdul.readall()
    except _astropy_errors() as exc:
        raise error(f"not a readable FITS file ({_astropy_text(exc)})", path) from None
    with hdul:
        problem = _header_problem(hdul)
        if problem:
            raise error(problem, path)
        yield hdul


def _header_problem(hdul) -> str | None:
    """The first HDU whose header astropy could not parse, with the card that fails."""
    from astropy.io.fits.verify import VerifyError
    for number, hdu in enumerate(hdul):
        try:
            for card in hdu.header.cards:
                card.value   # parses the card (astropy parses lazily, then raises later)
        except VerifyError as exc:
            return f"damaged FITS header in HDU {number} ({_astropy_text(exc)})"
        if type(hdu).__name__ == "_CorruptedHDU":
            return f"damaged FITS header in HDU {number} (not a readable extension)"
    return None


def _astropy_text(exc: BaseException) -> str:
    """astropy's message without its advice to repair the file in place."""
    text = " ".join(str(exc).split()).replace(", fix it first with .verify('fix').", "")
    return text if type(exc).__module__.startswith("astropy") and text else exception_text(exc)


# Limits of path lengths where the system does not say (Linux's NAME_MAX and PATH_MAX).
_NAME_MAX, _PATH_MAX = 255, 4096


def input_path_problem(path: str | os.PathLike, what: str) -> str | None:
    """Why the input file ``path`` cannot be opened, in words, or None: not found (naming a
    dangling symbolic link's target), a symbolic-link loop, a path too long
    (`path_length_problem`), not a regular file, no permission.  ``what`` names the file
    kind ("stamp file not found")."""
    problem = path_length_problem(path)
    if problem:
        return problem
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return _open_problem(Path(path), exc, what)
    return None if stat.S_ISREG(mode) else "is not a file"


def _open_problem(path: Path, exc: OSError, what: str) -> str:
    if exc.errno == errno.ELOOP:
        return "symbolic link loop (following the links leads back to them), not a file"
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        if path.is_symlink():
            target = Path(os.path.normpath(path.parent / os.readlink(path)))
            return f"symbolic link to {target}, which does not exist"
        return f"{what} not found"
    if exc.errno == errno.EACCES:
        return "cannot be read (permission denied)"
    if exc.errno == errno.ENAMETOOLONG:
        return "path too long for the file system"
    return f"cannot be read ({exc.strerror or exc})"


def path_length_problem(path: str | os.PathLike) -> str | None:
    """``"path too long (...)"`` when ``path`` (as given, made absolute) has a name longer
    than the file system allows (NAME_MAX, usually 255 bytes) or is longer as a whole than
    the system opens (PATH_MAX, 4096 bytes with the final NUL), else None.  Checked without
    touching the file, so that a manifest entry can be named before anything is read."""
    path = Path(os.path.abspath(path))
    name_max, path_max = _path_limits(path)
    longest = max((len(os.fsencode(part)) for part in path.parts[1:]), default=0)
    if longest > name_max:
        return (f"path too long (a name of {longest} bytes; the file system allows "
                f"{name_max})")
    total = len(os.fsencode(path))
    if total >= path_max:
        return f"path too long ({total} bytes; the system allows {path_max - 1})"
    return None


def _path_limits(path: Path) -> tuple[int, int]:
    """NAME_MAX and PATH_MAX of the file system that holds ``path`` (of its deepest folder
    that exists)."""
    folder = next((p for p in path.parents if os.path.isdir(p)), Path(path.anchor))
    try:
        return (os.pathconf(folder, "PC_NAME_MAX") or _NAME_MAX,
                os.pathconf(folder, "PC_PATH_MAX") or _PATH_MAX)
    except (OSError, ValueError):
        return _NAME_MAX, _PATH_MAX
