"""Typed exceptions of the engine.

Every error that a user can cause with their input carries the file (or exposure) it is
about, so that the CLI can print one line and the GUI one dialog naming it.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["PSF_FILES_RUN_CODE", "Cancelled", "FitError", "ManifestError",
           "MissingDependencyError", "PSFError", "ResourceLimitError", "SMPError",
           "StampError", "ZeropointError", "exception_text", "is_numpy_warning", "one_line"]


# The trust boundary, stated once for the CLI help and the GUI (here: the CLI's help must
# not import the engine).
PSF_FILES_RUN_CODE = (
    "Piff PSF files are Python pickles, and the WCS inside DES Piff files is Python source "
    "that is evaluated when the file is read: opening a detection runs code from every Piff "
    "file its manifest names (anywhere on disk). Open only data you trust. Stamps, "
    "zeropoint tables and pixelised PSF files (PIXPSF) are plain data and run no code.")


class SMPError(Exception):
    """Base class of every error the engine raises on purpose.

    Parameters
    ----------
    message : str
        What is wrong, in words a user understands.
    source : str or Path, optional
        The file, folder or exposure the problem is about.
    """

    def __init__(self, message: str, source: str | Path | None = None):
        self.message = message
        self.source = None if source is None else str(source)
        super().__init__(self.one_line())

    def __reduce__(self):
        # Pickle (to and from worker processes) with both parts, not the joined text.
        return type(self), (self.message, self.source)

    def one_line(self) -> str:
        """``"<source>: <message>"`` (or just the message), without newlines."""
        text = self.message if self.source is None else f"{self.source}: {self.message}"
        return " ".join(text.split())


class ManifestError(SMPError):
    """A detection manifest or folder description is missing, malformed or inconsistent."""


class StampError(SMPError):
    """A stamp file is missing, not FITS, lacks an HDU, or holds unusable values."""


class ZeropointError(SMPError):
    """A zeropoint table is unreadable or lacks an exposure."""


class PSFError(SMPError):
    """A PSF file is missing, corrupt, or cannot be evaluated at the target."""


class MissingDependencyError(SMPError):
    """An optional package (pixmappy, destnosim) is needed for this input but not installed."""


class FitError(SMPError):
    """The linear system is singular or too ill-conditioned to give trustworthy errors."""


class ResourceLimitError(SMPError):
    """A requested fit would need more memory than allowed; refused before allocating."""


class Cancelled(Exception):
    """A long engine job (a Δχ² map, a search) stopped because its caller asked it to,
    through the job's progress or cancel callback.  Not an `SMPError`: nothing is wrong."""


def one_line(exc: BaseException) -> str:
    """The exception as one line: an `SMPError`'s own line (naming its source), else the
    message with its white space folded, else the exception's type name."""
    if isinstance(exc, SMPError):
        return exc.one_line()
    return " ".join(str(exc).split()) or type(exc).__name__


def exception_text(exc: BaseException) -> str:
    """``"module.Type: message"`` (``"zlib.error: Error -3 ..."``; builtins without module),
    on one line: how a decoder's own error is quoted in a message about a file."""
    kind = type(exc).__name__
    module = type(exc).__module__.lstrip("_")
    if module not in ("builtins", ""):
        kind = f"{module.split('.')[0]}.{kind}"
    text = " ".join(str(exc).split())
    return f"{kind}: {text}" if text else kind


_NUMPY_WARNINGS = ("encountered in", "Mean of empty slice", "Degrees of freedom <= 0",
                   "invalid value", "divide by zero", "overflow", "underflow")


def is_numpy_warning(message: str) -> bool:
    """Whether a RuntimeWarning's text is one of numpy's floating-point or empty-reduction
    warnings ("overflow encountered in multiply"): they say nothing a user can act on, so
    they are not shown (the input checks name the file and value instead).  numpy
    attributes them to the calling line, so only the text tells them apart."""
    return any(text in message for text in _NUMPY_WARNINGS)
