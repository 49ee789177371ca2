"""Detection manifests (format ``smp-detection/1``): what to fit and where the data are.

Conventions
-----------
* Sky coordinates are ICRS degrees.
* CCD pixel coordinates are galsim/FITS image coordinates: 1-indexed, pixel centres at
  integers.  ``stamp_origin = (x0, y0)`` is the CCD pixel of stamp pixel ``SCI[0, 0]``, so
  ``SCI[j, i]`` is CCD pixel ``(x0 + i, y0 + j)``.
* Paths in a manifest file are relative to that file; in memory they are absolute.
"""
from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import ManifestError
from ..files import input_path_problem, path_length_problem
from ..limits import DECAM_CCDNUMS, ZEROPOINT_RANGE

__all__ = ["DEFAULT_CAMERA", "DEFAULT_COLOR_GI", "FORMAT", "PSFEX", "PSF_FORMATS",
           "DetectionManifest", "ExposureEntry", "ccdnum_problem", "des_stamp_origin",
           "paths_outside", "read_manifest_bytes", "zeropoint_problem"]

FORMAT = "smp-detection/1"
DEFAULT_COLOR_GI = 0.61
# The camera of a manifest that names none: DES's (its CCD numbers are checked, 1-62).
DEFAULT_CAMERA = "DECam"
PSFEX = "psfex"
# What an exposure's ``psf`` may be: a Piff file or a pixelised PSF (told apart by the
# file's HDUs; the default, written as a plain path), or a PSFEx model with the FITS header
# that holds its CCD's WCS (``psf = {format = "psfex", path = "...", wcs_header = "..."}``).
PSF_FORMATS = ("piff", PSFEX)


@dataclass(frozen=True)
class ExposureEntry:
    """One exposure of a detection: a stamp, its PSF and its photometric zeropoint.

    ``zeropoint`` is in magnitudes (counts of 1 in SCI have magnitude ``zeropoint``).
    ``gain`` (electrons per SCI unit, optional) is used only by the shot-noise refit.
    ``color_gi`` (optional) overrides the detection's g-i colour for this exposure's
    colour-dependent WCS.
    ``mjd`` (optional): start of the exposure, MJD (UTC days), as DES's ``MJD-OBS``.
    ``psf_format`` is one of `PSF_FORMATS`; a ``"psfex"`` PSF has no WCS of its own, and
    ``psf_wcs_header`` is the FITS file whose primary header holds the CCD's WCS.
    """

    expnum: int
    ccdnum: int
    band: str
    zeropoint: float
    stamp: Path
    psf: Path
    stamp_origin: tuple[int, int]
    target_xy: tuple[float, float] | None = None
    gain: float | None = None
    mjd: float | None = None
    color_gi: float | None = None
    psf_format: str = "piff"
    psf_wcs_header: Path | None = None

    def __post_init__(self):
        if self.psf_format not in PSF_FORMATS:
            raise ValueError(f"unknown PSF format {self.psf_format!r}")
        if (self.psf_format == PSFEX) != (self.psf_wcs_header is not None):
            raise ValueError("a PSFEx PSF needs a WCS header, and only a PSFEx PSF has one")

    @property
    def psf_files(self) -> tuple[Path, ...]:
        """Every file read for this exposure's PSF and WCS."""
        return (self.psf,) if self.psf_wcs_header is None else (self.psf, self.psf_wcs_header)

    @property
    def label(self) -> str:
        """Human-readable identifier used in messages: ``"exposure 234928 (CCD 20)"``."""
        return f"exposure {self.expnum} (CCD {self.ccdnum})"


@dataclass(frozen=True)
class DetectionManifest:
    """A moving-object detection and every exposure of its sky patch.

    The detection exposure (the one that contains the moving target) is identified by
    ``(detection_expnum, detection_ccdnum)`` and must be one of ``exposures``.  ``camera``
    (default DECam) says which CCD numbers are plausible (`ccdnum_problem`).
    """

    name: str
    ra: float
    dec: float
    band: str
    detection_expnum: int
    detection_ccdnum: int
    exposures: tuple[ExposureEntry, ...]
    color_gi: float = DEFAULT_COLOR_GI
    camera: str = DEFAULT_CAMERA
    path: Path | None = field(default=None, compare=False)

    def __post_init__(self):
        numbered = [("detection.ccdnum", self.detection_ccdnum)] + [
            (f"exposures[{n}].ccdnum", e.ccdnum) for n, e in enumerate(self.exposures)]
        for key, ccdnum in numbered:
            problem = ccdnum_problem(ccdnum, self.camera)
            if problem:
                raise ManifestError(f"key '{key}' {problem}", self.path)
        keys = [(e.expnum, e.ccdnum) for e in self.exposures]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise ManifestError(f"duplicate exposure(s) {duplicates} (expnum, ccdnum)", self.path)
        if (self.detection_expnum, self.detection_ccdnum) not in keys:
            raise ManifestError(
                f"detection exposure {self.detection_expnum} (CCD {self.detection_ccdnum}) "
                "is not among the [[exposures]]", self.path)

    def color_of(self, entry: ExposureEntry) -> float:
        """g-i colour for ``entry``'s WCS: its own ``color_gi`` if given, else the
        detection's."""
        return self.color_gi if entry.color_gi is None else entry.color_gi

    @property
    def detection_index(self) -> int:
        """Index of the detection exposure in ``exposures``."""
        key = (self.detection_expnum, self.detection_ccdnum)
        return [(e.expnum, e.ccdnum) for e in self.exposures].index(key)

    @property
    def detection_exposure(self) -> ExposureEntry:
        return self.exposures[self.detection_index]

    @property
    def mjd(self) -> float | None:
        """MJD of the detection exposure, when the manifest gives it."""
        return self.detection_exposure.mjd

    @classmethod
    def read(cls, path: str | os.PathLike) -> "DetectionManifest":
        """Read a ``detection.toml`` manifest; raises `ManifestError` naming file and key."""
        return cls.parse(read_manifest_bytes(path), path)

    @classmethod
    def parse(cls, data: bytes, path: str | os.PathLike) -> "DetectionManifest":
        """The manifest whose text, read from ``path``, is ``data`` (relative paths
        resolve against its folder): for a caller that needs the bytes too (the batch's
        fingerprint), so that the file is read once."""
        path = Path(path)
        try:
            doc = tomllib.loads(data.decode("utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ManifestError(f"not valid TOML ({exc})", path) from None
        except UnicodeDecodeError as exc:
            raise ManifestError(f"cannot be read ({exc})", path) from None
        return cls.from_dict(doc, base=path.parent, path=path)

    @classmethod
    def from_dict(cls, doc: dict[str, Any], base: Path, path: Path | None = None
                  ) -> "DetectionManifest":
        """Build from a parsed manifest; relative paths are resolved against ``base``."""
        src = path if path is not None else base
        fmt = doc.get("format", FORMAT)
        if fmt != FORMAT:
            raise ManifestError(f"unknown format {fmt!r} (this version reads {FORMAT!r})", src)
        get = _Getter(doc, src, "")
        det = _Getter(get.subtable("detection"), src, "detection.")
        entries = doc.get("exposures")
        if not isinstance(entries, list) or not entries:
            raise ManifestError("needs at least one [[exposures]] table", src)
        exposures = tuple(_exposure_from_dict(e, base, src, n) for n, e in enumerate(entries))
        ra, dec = get.float("ra"), get.float("dec")
        if not 0 <= ra <= 360:
            raise get._bad("ra", ra, "in [0, 360] degrees")
        if not -90 <= dec <= 90:
            raise get._bad("dec", dec, "in [-90, 90] degrees")
        return cls(name=get.str("name"), ra=ra, dec=dec,
                   band=get.str("band"), color_gi=get.float("color_gi", DEFAULT_COLOR_GI),
                   detection_expnum=det.int("expnum"), detection_ccdnum=det.int("ccdnum"),
                   exposures=exposures, camera=get.str("camera", DEFAULT_CAMERA), path=path)

    def to_dict(self, relative_to: Path | None = None) -> dict[str, Any]:
        """The manifest as a TOML-ready dict; paths relative to ``relative_to`` if given."""
        def rel(p: Path) -> str:
            return Path(os.path.relpath(p, relative_to)).as_posix() if relative_to else str(p)

        exposures = []
        for e in self.exposures:
            d: dict[str, Any] = dict(expnum=e.expnum, ccdnum=e.ccdnum, band=e.band,
                                     zeropoint=e.zeropoint, stamp=rel(e.stamp),
                                     psf=rel(e.psf), stamp_origin=list(e.stamp_origin))
            if e.psf_format == PSFEX:
                d["psf"] = dict(format=PSFEX, path=rel(e.psf),
                                wcs_header=rel(e.psf_wcs_header))
            if e.target_xy is not None:
                d["target_xy"] = list(e.target_xy)
            if e.gain is not None:
                d["gain"] = e.gain
            if e.mjd is not None:
                d["mjd"] = e.mjd
            if e.color_gi is not None:
                d["color_gi"] = e.color_gi
            exposures.append(d)
        return dict(format=FORMAT, name=self.name, ra=self.ra, dec=self.dec, band=self.band,
                    color_gi=self.color_gi, camera=self.camera,
                    detection=dict(expnum=self.detection_expnum, ccdnum=self.detection_ccdnum),
                    exposures=exposures)

    def write(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write as TOML with paths relative to the new file (atomic; never clobbers
        an existing file unless ``overwrite``)."""
        import tomli_w

        from ..files import atomic_write_bytes
        path = Path(path).absolute()
        text = tomli_w.dumps(self.to_dict(relative_to=path.parent))
        atomic_write_bytes(path, text.encode(), overwrite=overwrite)
        return path

    def psf_files_outside(self, folder: str | os.PathLike) -> list[Path]:
        """The PSF files of this detection that are not inside ``folder`` (e.g. the folder
        of a session or batch list that names this manifest), as real paths, each once:
        `paths_outside`, the trust rule.  Reading a Piff file runs code stored in it, so a
        caller that opens someone else's list should say which files will be read."""
        return paths_outside([e.psf for e in self.exposures], folder)

    def with_exposures(self, exposures: tuple[ExposureEntry, ...]) -> "DetectionManifest":
        return replace(self, exposures=tuple(exposures))


class _Getter:
    """Typed access to a TOML table that names the file and key in every error."""

    def __init__(self, table: Any, source: Path, prefix: str):
        if not isinstance(table, dict):
            raise ManifestError(f"{prefix.rstrip('.') or 'document'} must be a table", source)
        self.table, self.source, self.prefix = table, source, prefix

    _MISSING = object()

    def _get(self, key: str, default: Any):
        if key in self.table:
            return self.table[key]
        if default is self._MISSING:
            raise ManifestError(f"missing required key '{self.prefix}{key}'", self.source)
        return default

    def _bad(self, key: str, value: Any, what: str) -> ManifestError:
        return ManifestError(f"key '{self.prefix}{key}' must be {what}, got {value!r}",
                             self.source)

    def subtable(self, key: str) -> Any:
        return self._get(key, self._MISSING)

    def str(self, key: str, default: Any = _MISSING) -> str:
        value = self._get(key, default)
        if not isinstance(value, str) or not value:
            raise self._bad(key, value, "a non-empty string")
        return value

    def int(self, key: str, default: Any = _MISSING) -> int:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(key, value, "an integer")
        return value

    def float(self, key: str, default: Any = _MISSING) -> float:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise self._bad(key, value, "a finite number")
        return float(value)

    def path(self, key: str, base: Path) -> Path:
        """A file path, relative to ``base`` (the manifest's folder) unless absolute; one the
        system cannot open for its length is refused here, naming the key."""
        path = _resolve(base, self.str(key))
        problem = path_length_problem(path)
        if problem:
            raise ManifestError(f"key '{self.prefix}{key}': {problem}", self.source)
        return path

    def pair(self, key: str, kind: type, default: Any = _MISSING) -> tuple | None:
        value = self._get(key, default)
        if value is None:
            return None
        ok = (isinstance(value, list) and len(value) == 2
              and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
              and (kind is float or all(isinstance(v, int) for v in value)))
        if not ok or not all(math.isfinite(v) for v in value):
            raise self._bad(key, value, f"a list of two {'integers' if kind is int else 'numbers'}")
        return tuple(kind(v) for v in value)


def _exposure_from_dict(entry: Any, base: Path, source: Path, n: int) -> ExposureEntry:
    get = _Getter(entry, source, f"exposures[{n}].")
    gain = get._get("gain", None)
    if gain is not None:
        gain = get.float("gain")
        if gain <= 0:
            raise get._bad("gain", gain, "positive")
    zeropoint = get.float("zeropoint")
    problem = zeropoint_problem(zeropoint)
    if problem:
        raise ManifestError(f"key '{get.prefix}zeropoint' {problem}", source)
    return ExposureEntry(
        expnum=get.int("expnum"), ccdnum=get.int("ccdnum"), band=get.str("band"),
        zeropoint=zeropoint, stamp=get.path("stamp", base),
        **_psf_from_dict(get, base, source), stamp_origin=get.pair("stamp_origin", int),
        target_xy=get.pair("target_xy", float, None), gain=gain,
        mjd=get.float("mjd") if "mjd" in entry else None,
        color_gi=get.float("color_gi", None) if "color_gi" in entry else None)


def _psf_from_dict(get: _Getter, base: Path, source: Path) -> dict[str, Any]:
    """``psf``, ``psf_format`` and ``psf_wcs_header`` of an exposure: ``psf`` is a path (a
    Piff or pixelised PSF file) or a table ``{format, path[, wcs_header]}``."""
    if not isinstance(get._get("psf", _Getter._MISSING), dict):
        return dict(psf=get.path("psf", base))
    table = _Getter(get.subtable("psf"), source, f"{get.prefix}psf.")
    fmt = table.str("format", "piff")
    if fmt not in PSF_FORMATS:
        raise table._bad("format", fmt, f"one of {', '.join(map(repr, PSF_FORMATS))}")
    unknown = sorted(set(table.table) - {"format", "path", "wcs_header"})
    if unknown:
        raise ManifestError(f"unknown key(s) {', '.join(unknown)} in '{get.prefix}psf'",
                            source)
    header = None
    if fmt == PSFEX:
        header = table.path("wcs_header", base)
    elif "wcs_header" in table.table:
        raise ManifestError(f"key '{get.prefix}psf.wcs_header' is only for format "
                            f"{PSFEX!r} (a Piff file carries its own WCS)", source)
    return dict(psf=table.path("path", base), psf_format=fmt, psf_wcs_header=header)


def read_manifest_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of the manifest file ``path`` (for `DetectionManifest.parse`); raises
    `ManifestError` naming it when it cannot be read."""
    problem = input_path_problem(path, "manifest file")
    if problem:
        raise ManifestError(problem, path)
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ManifestError(f"cannot be read ({exc})", path) from None


def zeropoint_problem(value: float) -> str | None:
    """What is wrong with a zeropoint (magnitudes of one SCI unit), or None if it is a
    plausible one (finite, within `smp_model.limits.ZEROPOINT_RANGE`)."""
    low, high = ZEROPOINT_RANGE
    if not math.isfinite(value) or not low <= value <= high:
        return (f"must be a zeropoint in [{low:g}, {high:g}] mag, got {value!r} "
                "(a flux scale or another unit?)")
    return None


def ccdnum_problem(ccdnum: int, camera: str = DEFAULT_CAMERA) -> str | None:
    """What is wrong with a CCD number for ``camera``, or None: DECam's are 1-62
    (`smp_model.limits.DECAM_CCDNUMS`); another camera's any number >= 0."""
    if camera == DEFAULT_CAMERA and ccdnum not in DECAM_CCDNUMS:
        return (f"must be a DECam CCD number ({DECAM_CCDNUMS.start}-{DECAM_CCDNUMS.stop - 1}), "
                f"got {ccdnum} (a manifest for another camera says so: camera = \"...\")")
    if ccdnum < 0:
        return f"must be a CCD number >= 0, got {ccdnum}"
    return None


def paths_outside(paths, folder: str | os.PathLike) -> list[Path]:
    """The trust rule: which of ``paths`` lie outside ``folder``, as the files that would
    be opened (every symbolic link and ``..`` followed, `os.path.realpath`), each file once
    however often and however spelled it is named, in the order first named.

    Reading a Piff file runs code stored in it, so every caller that opens a file someone
    else may have written (a session, a batch list, a manifest) names the PSF files it
    would read from outside that file's folder with this one function.  "Inside" is
    decided on the real paths, and where they differ as text by the file system's own
    identity of the folders (device and inode): a folder spelled in another case on a
    case-insensitive file system, or reached through a bind mount, is the same folder;
    on a case-sensitive one ``Data/`` and ``data/`` are two."""
    root = Path(os.path.realpath(folder))
    inside = _InsideTest(root)
    outside: dict[Path, None] = {}
    for path in paths:
        real = Path(os.path.realpath(path))
        if real not in outside and not inside(real):
            outside[real] = None
    return list(outside)


class _InsideTest:
    """Whether a real path lies in ``root``: by its text, else by the identity (device,
    inode) of its folders, each folder asked once."""

    def __init__(self, root: Path):
        self.root = root
        self.root_id = self._identity(root)
        self._known: dict[Path, bool] = {}

    def __call__(self, real: Path) -> bool:
        if real == self.root or self.root in real.parents:
            return True
        return self.root_id is not None and any(self._is_root(p) for p in real.parents)

    def _is_root(self, folder: Path) -> bool:
        if folder not in self._known:
            self._known[folder] = self._identity(folder) == self.root_id
        return self._known[folder]

    @staticmethod
    def _identity(path: Path) -> tuple[int, int] | None:
        try:
            status = os.stat(path)
        except OSError:   # a folder that does not exist (nothing in it will be read)
            return None
        return status.st_dev, status.st_ino


def _resolve(base: Path, relative: str) -> Path:
    """Absolute, normalised path (``..`` folded) of a manifest-relative path."""
    return Path(os.path.normpath(Path(base).absolute() / relative))


def des_stamp_origin(x: float, y: float, shape: tuple[int, int]) -> tuple[int, int]:
    """CCD pixel of ``SCI[0, 0]`` for a DES stamp of ``shape`` (ny, nx) around CCD (x, y).

    DES stamps are ``astropy.nddata.Cutout2D(image, (x, y), size)`` with the *1-indexed*
    CCD position passed as if it were 0-indexed; Cutout2D starts at ``ceil(p - n/2)``
    (0-indexed), i.e. CCD pixel ``ceil(p - n/2) + 1``: ``ceil(x) - 14`` for 30 pixels.
    """
    ny, nx = shape
    return math.ceil(x - nx / 2) + 1, math.ceil(y - ny / 2) + 1
