"""Folder input, the way DES users hold their data: a stamp directory
(``<name>_<expnum>.fits``), a PSF directory (``<expnum>/<expnum>_<ccdnum>_piff.fits``), a
zeropoint table (ECSV/CSV/FITS with ``expnum, ccdnum, zeropoint`` and optionally ``band``)
and the detection (ra, dec, band, expnum, ccdnum).  Builds a `DetectionManifest`, which can
be written out so that the run is reproducible.

The stamp origin of each exposure follows a rule applied to the target's CCD position
(from the PSF file's WCS): ``"des"`` (DES stamps, `des_stamp_origin`: ``ceil(x) - 14`` for
30-pixel stamps) or ``"piff"`` (Piff's draw box, ``ceil(x) - 15``); explicit per-exposure
origins override the rule.
"""
from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from ..conventions import piff_box_origin
from ..errors import ManifestError, PSFError, ZeropointError
from ..limits import memory_refusal
from ..psf.models import load_psf
from ..settings import FitSettings
from ..wcs.decam import focal_plane, on_ccd
from ..wcs.transforms import sky_to_pixel
from .discovery import ExposureRef
from .manifest import DEFAULT_COLOR_GI, DetectionManifest, ExposureEntry, des_stamp_origin
from .stamps import read_stamp
from .zeropoints import read_zeropoints

__all__ = ["ORIGIN_RULES", "OriginRule", "manifest_from_folder"]

OriginRule = Callable[[float, float, tuple[int, int]], tuple[int, int]]
ORIGIN_RULES: dict[str, OriginRule] = {
    "des": des_stamp_origin,
    "piff": lambda x, y, shape: piff_box_origin((x, y), shape),
}


def manifest_from_folder(stamps: str | os.PathLike, psfs: str | os.PathLike,
                         zeropoints: str | os.PathLike, *, name: str, ra: float, dec: float,
                         band: str, expnum: int, ccdnum: int,
                         color_gi: float = DEFAULT_COLOR_GI, origin_rule: str = "des",
                         origins: Mapping[int, tuple[int, int]] | None = None,
                         exposures: Iterable[ExposureRef] | None = None,
                         settings: "FitSettings | None" = None) -> DetectionManifest:
    """Build the manifest of a detection from DES-style folders (see module docstring).

    Exposures of other bands than ``band`` (when the zeropoint table has a band column)
    are left out with a warning, as the published code does.  ``exposures`` (e.g. from
    `smp_model.inputs.discovery`) restricts the stamps used to those exposures and fixes their
    CCDs; the detection exposure is always kept.  With ``settings``, a detection whose
    fit would need more memory than ``settings.memory_limit_bytes`` is refused
    (`ResourceLimitError`) before any PSF file is read.
    """
    stamps, psfs = Path(stamps), Path(psfs)
    if not stamps.is_dir():
        raise ManifestError("stamp directory not found", stamps)
    if not psfs.is_dir():
        raise ManifestError("PSF directory not found", psfs)
    try:
        rule = ORIGIN_RULES[origin_rule]
    except KeyError:
        raise ValueError(f"unknown stamp-origin rule {origin_rule!r}; choose "
                         f"{' or '.join(ORIGIN_RULES)}") from None
    zps = read_zeropoints(zeropoints)
    pattern = re.compile(rf"^{re.escape(name)}_(\d+)\.fits$")
    found = sorted((int(m.group(1)), p) for p in stamps.iterdir()
                   if (m := pattern.match(p.name)))
    if not found:
        raise ManifestError(f"no stamps named {name}_<expnum>.fits", stamps)
    wanted = None if exposures is None else {r.expnum: r.ccdnum for r in exposures}
    if wanted is not None:
        wanted[expnum] = ccdnum
        found = [(e, p) for e, p in found if e in wanted]
    if settings is not None:
        _check_memory(found, expnum, stamps, settings)
    entries, other_band = [], []
    for exp, stamp_path in found:
        ccd = wanted[exp] if wanted else (ccdnum if exp == expnum
                                          else _ccd_of(exp, zps, zeropoints))
        zp, zp_band = _zeropoint(exp, ccd, zps, zeropoints)
        if zp_band is not None and zp_band != band:
            other_band.append(exp)
            continue
        psf_path = psfs / str(exp) / f"{exp}_{ccd}_piff.fits"
        if not psf_path.is_file():
            raise PSFError(f"PSF file for exposure {exp} (CCD {ccd}) not found", psf_path)
        stamp = read_stamp(stamp_path)
        shape = stamp.shape
        x, y = (float(v) for v in sky_to_pixel(load_psf(psf_path).wcs, ra, dec, color=color_gi))
        _check_on_ccd(x, y, shape, exp, ccd, psf_path, detection=exp == expnum)
        origin = tuple((origins or {}).get(exp) or rule(x, y, shape))
        entries.append(ExposureEntry(expnum=exp, ccdnum=ccd, band=zp_band or band,
                                     zeropoint=zp, stamp=stamp_path.absolute(),
                                     psf=psf_path.absolute(), stamp_origin=origin,
                                     target_xy=(x, y), mjd=stamp.mjd))
    if other_band:
        warnings.warn(f"exposures {other_band} are not in band {band}; left out", stacklevel=2)
    return DetectionManifest(name=name, ra=float(ra), dec=float(dec), band=band,
                             detection_expnum=int(expnum), detection_ccdnum=int(ccdnum),
                             exposures=tuple(entries), color_gi=color_gi)


def _check_on_ccd(x: float, y: float, shape: tuple[int, int], expnum: int, ccdnum: int,
                  psf_path: Path, detection: bool) -> None:
    """Refuse a detection position that the PSF file's WCS puts more than half a stamp off
    the CCD: no stamp of this exposure can have been cut around it, so (ra, dec) or the CCD
    is wrong.  The folder form places every stamp by that position, so without this check
    a wrong position fits without complaint (the stamps' own headers carry no position)."""
    if on_ccd(x, y, margin=max(shape) / 2):
        return
    fp = focal_plane()
    culprit = "--ra/--dec or --ccdnum" if detection else "--ra/--dec or the zeropoint table's ccdnum"
    raise ManifestError(f"exposure {expnum} (CCD {ccdnum}): the detection's (ra, dec) falls at "
                        f"CCD pixel ({x:.1f}, {y:.1f}) by this PSF file's WCS, off the "
                        f"{fp.nx} x {fp.ny} CCD; check {culprit}", psf_path)


def _check_memory(found: list[tuple[int, Path]], expnum: int, stamps: Path,
                  settings: FitSettings) -> None:
    """`smp_model.limits.memory_refusal` for the stamps found, from the detection stamp's
    size (every stamp of a detection has its shape)."""
    detection = [p for e, p in found if e == expnum]
    if not detection:
        return   # reported as a missing detection exposure when the manifest is built
    error = memory_refusal(len(found), read_stamp(detection[0]).sci.size,
                           settings.grid_size, settings.memory_limit_bytes, stamps)
    if error is not None:
        raise error


def _ccd_of(expnum: int, zps, source) -> int:
    ccds = sorted({c for (e, c) in zps if e == expnum})
    if len(ccds) != 1:
        what = "no zeropoint" if not ccds else f"zeropoints for several CCDs {ccds}"
        raise ZeropointError(f"exposure {expnum} has {what}; cannot tell its CCD", source)
    return ccds[0]


def _zeropoint(expnum: int, ccdnum: int, zps, source) -> tuple[float, str | None]:
    try:
        return zps[(expnum, ccdnum)]
    except KeyError:
        raise ZeropointError(f"no zeropoint for exposure {expnum} (CCD {ccdnum})",
                             source) from None
