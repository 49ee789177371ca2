"""Exposure discovery: which exposures of a survey contain a sky position.

A detection's exposures normally come from its manifest.  `find_exposures` lists them from
a survey's exposure table (pointings) with the DECam CCD layout (`smp_model.wcs.decam`), refined
by each exposure's WCS where a PSF file gives one: what the published code uses destnosim
for (``findAllExposures``).  Survey tools can be plugged in through `ExposureSource`; one
backend wraps destnosim survey objects (optional: destnosim is not a dependency, and
`smp discover` uses it only when it can be imported).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from astropy.table import Table

from ..errors import ManifestError
from ..files import read_input_table
from ..wcs.transforms import tangent_offsets

__all__ = ["DECAM_CCD_SIZE_DEG", "EXPOSURE_COLUMNS", "SEARCH_RADIUS_DEG",
           "WCS_CHECK_MARGIN_PX", "DestnosimExposures", "ExposureRef", "ExposureSource",
           "destnosim_survey", "exposures_for_detection", "find_exposures",
           "manifest_from_refs", "psf_file", "read_exposure_table", "read_found_table",
           "refs_of"]


@dataclass(frozen=True, order=True)
class ExposureRef:
    """One exposure/CCD that covers a position."""

    expnum: int
    ccdnum: int
    band: str


@runtime_checkable
class ExposureSource(Protocol):
    def exposures_containing(self, ra: float, dec: float) -> list[ExposureRef]:
        """Exposures (any band) whose CCDs contain (ra, dec) in ICRS degrees."""


# DECam CCD half-size used by destnosim's fast CCD test (degrees), as in the published code.
DECAM_CCD_SIZE_DEG = 0.149931
# Exposures whose pointing is farther than this cannot contain the position (DECam's
# field of view has a radius of about 1.1 deg).
SEARCH_RADIUS_DEG = 1.5


class DestnosimExposures:
    """`ExposureSource` over a destnosim survey (``DECamSurvey``/``DESSurvey``).

    The survey object needs arrays ``ra, dec, expnum, band`` (pointings, degrees) and
    item access by expnum returning an exposure with ``checkInCCDFast(ra, dec, ccdsize)``
    that returns ``(inside, ccdnum or None)``: the interface the published SMP code uses.
    Build the survey with destnosim in your own session and pass it in; destnosim itself
    is never imported here, so this module works without it.
    """

    def __init__(self, survey: Any):
        self.survey = survey

    def exposures_containing(self, ra: float, dec: float) -> list[ExposureRef]:
        s = self.survey
        u, v = tangent_offsets(np.asarray(s.ra, float), np.asarray(s.dec, float), ra, dec)
        near = np.flatnonzero(np.hypot(u, v) / 3600.0 < SEARCH_RADIUS_DEG)
        found = set()
        for i in near:
            expnum = int(np.asarray(s.expnum)[i])
            ccd = s[expnum].checkInCCDFast(np.array([ra]), np.array([dec]),
                                           ccdsize=DECAM_CCD_SIZE_DEG)[1]
            ccd = _scalar_or_none(ccd)
            if ccd is not None:
                found.add(ExposureRef(expnum, int(ccd), str(np.asarray(s.band)[i])))
        return sorted(found)


def _scalar_or_none(value):
    if value is None:
        return None
    arr = np.atleast_1d(np.asarray(value, dtype=object))
    return None if arr.size == 0 or arr[0] is None else arr[0]


def exposures_for_detection(source: ExposureSource, ra: float, dec: float,
                            band: str | None = None) -> list[ExposureRef]:
    """Exposures containing (ra, dec), restricted to ``band`` if given (SMP fits one band)."""
    refs = source.exposures_containing(ra, dec)
    return [r for r in refs if band is None or r.band == band]



# -- exposure tables and footprints ---------------------------------------------------

# Positions closer than this to a CCD edge in the layout model (px) are settled with the
# exposure's own WCS when a PSF file gives one: the model is good to ~15 px (decam.py).
WCS_CHECK_MARGIN_PX = 40.0
EXPOSURE_COLUMNS = ("expnum", "band", "ra", "dec")


def read_exposure_table(path: str | os.PathLike) -> Table:
    """A survey's exposure list (ECSV/FITS/CSV): ``expnum, band, ra, dec`` (pointing,
    ICRS degrees) and optionally ``mjd``; column names are case-insensitive.  Raises
    `ManifestError` naming the file and the problem."""
    path = Path(path)
    table = read_input_table(path, ManifestError, "exposure table")
    names = {c.lower(): c for c in table.colnames}
    missing = [c for c in EXPOSURE_COLUMNS if c not in names]
    if missing:
        raise ManifestError(f"exposure table lacks column(s) {', '.join(missing)} "
                            f"(needs {', '.join(EXPOSURE_COLUMNS)}, optional mjd)", path)
    out = Table()
    out["expnum"] = np.asarray(table[names["expnum"]], dtype=np.int64)
    out["band"] = np.asarray(table[names["band"]]).astype(str)
    for c in ("ra", "dec"):
        values = np.asarray(getattr(table[names[c]], "value", table[names[c]]), float)
        if not np.all(np.isfinite(values)):
            raise ManifestError(f"column {c} has non-finite values", path)
        out[c] = values
    if "mjd" in names:
        out["mjd"] = np.asarray(table[names["mjd"]], float)
    return out


def find_exposures(exposures: Table, ra: float, dec: float, band: str | None = None,
                   mjd_range: tuple[float | None, float | None] | None = None,
                   psfs: str | os.PathLike | None = None, color_gi: float = 0.61,
                   survey: Any = None) -> Table:
    """Every exposure and CCD whose footprint contains (ra, dec), with the CCD pixel.

    ``exposures`` is `read_exposure_table`'s table; ``band`` and ``mjd_range`` (inclusive,
    either end None) select exposures.  CCDs come from the DECam layout model
    (`smp_model.wcs.decam`), or from a destnosim ``survey`` when given (same output).  Where a
    PSF folder holds ``<expnum>/<expnum>_<ccdnum>_piff.fits`` the position is computed (and
    containment decided near CCD edges) with that file's WCS at colour ``color_gi``.

    Returns a table sorted by expnum: ``expnum, ccdnum, band, x, y`` (1-indexed CCD
    pixels), ``mjd`` (if known), ``wcs`` ('psf' or 'layout') and ``psf`` (path or '').
    """
    from ..wcs import decam
    keep = np.ones(len(exposures), bool)
    if band is not None:
        keep &= np.asarray(exposures["band"]) == band
    if mjd_range is not None and any(v is not None for v in mjd_range):
        if "mjd" not in exposures.colnames:
            raise ManifestError("an MJD window needs an mjd column in the exposure table")
        lo, hi = mjd_range
        mjd = np.asarray(exposures["mjd"], float)
        keep &= (mjd >= (-np.inf if lo is None else lo)) & (mjd <= (np.inf if hi is None else hi))
    u, v = tangent_offsets(np.asarray(exposures["ra"], float),
                           np.asarray(exposures["dec"], float), ra, dec)
    keep &= np.hypot(u, v) / 3600.0 < SEARCH_RADIUS_DEG
    destnosim_ccds = (_destnosim_ccds(survey, exposures[keep], ra, dec)
                      if survey is not None else None)
    rows = []
    for row in exposures[keep]:
        expnum = int(row["expnum"])
        pointing = float(row["ra"]), float(row["dec"])
        if destnosim_ccds is not None:     # destnosim chose the CCD; the layout gives x, y
            candidates = [c for c in decam.locate(ra, dec, *pointing, margin=np.inf)
                          if c[0] == destnosim_ccds.get(expnum)]
        else:                              # near an edge only a PSF file's WCS can tell
            candidates = decam.locate(ra, dec, *pointing,
                                      margin=WCS_CHECK_MARGIN_PX if psfs else 0.0)
        for ccdnum, x, y in candidates:
            psf_path = psf_file(psfs, expnum, ccdnum) if psfs else None
            if psf_path is not None:
                x, y = _psf_position(psf_path, ra, dec, color_gi, (x, y))
                inside = decam.on_ccd(x, y)
            else:
                inside = destnosim_ccds is not None or decam.on_ccd(x, y)
            if inside:
                rows.append(dict(
                    expnum=expnum, ccdnum=ccdnum, band=str(row["band"]), x=x, y=y,
                    mjd=float(row["mjd"]) if "mjd" in exposures.colnames else np.nan,
                    wcs="psf" if psf_path else "layout", psf=str(psf_path or "")))
    return _found_table(rows, "mjd" in exposures.colnames)


def _psf_position(path: Path, ra: float, dec: float, color_gi: float, guess):
    from ..psf.models import load_psf
    from ..wcs.transforms import sky_to_pixel
    x, y = sky_to_pixel(load_psf(path, color=color_gi).wcs, ra, dec, color=color_gi,
                        guess=guess)
    return float(x), float(y)


def _destnosim_ccds(survey: Any, exposures: Table, ra: float, dec: float) -> dict[int, int]:
    """{expnum: ccdnum} from a destnosim survey's fast CCD test."""
    source = DestnosimExposures(survey)
    wanted = set(int(e) for e in exposures["expnum"])
    return {r.expnum: r.ccdnum for r in source.exposures_containing(ra, dec)
            if r.expnum in wanted}


def destnosim_survey(exposures: Table) -> Any | None:
    """A destnosim ``Survey`` of the exposure table, or None when destnosim cannot be
    imported (destnosim 1.3.3 imports spacerocks, broken on the package index)."""
    try:
        from destnosim.des.decam import Survey
    except Exception:   # not installed, or its own imports fail
        return None
    mjd = (np.asarray(exposures["mjd"], float) if "mjd" in exposures.colnames
           else np.zeros(len(exposures)))
    survey = Survey(np.asarray(exposures["expnum"]).copy(),
                    np.asarray(exposures["ra"], float).copy(),
                    np.asarray(exposures["dec"], float).copy(), mjd,
                    np.asarray(exposures["band"]).copy())
    survey.createExposures()
    return survey


def _found_table(rows: list[dict], with_mjd: bool) -> Table:
    names = ["expnum", "ccdnum", "band", "x", "y"] + (["mjd"] if with_mjd else []) \
        + ["wcs", "psf"]
    dtypes = {"expnum": np.int64, "ccdnum": np.int64, "band": str, "x": float, "y": float,
              "mjd": float, "wcs": str, "psf": str}
    rows = sorted(rows, key=lambda r: (r["expnum"], r["ccdnum"]))
    table = Table({n: np.array([r[n] for r in rows], dtype=dtypes[n]) for n in names})
    table["x"].unit = table["y"].unit = "pix"
    table["x"].description = "1-indexed CCD x of (ra, dec)"
    table["y"].description = "1-indexed CCD y of (ra, dec)"
    if with_mjd:
        table["mjd"].unit = "d"
    return table


def refs_of(found: Table) -> list[ExposureRef]:
    """`ExposureRef` of each row of a `find_exposures` table."""
    return [ExposureRef(int(r["expnum"]), int(r["ccdnum"]), str(r["band"])) for r in found]


def psf_file(psfs: str | os.PathLike, expnum: int, ccdnum: int) -> Path | None:
    """The PSF file of an exposure/CCD in a PSF folder: ``<expnum>/<expnum>_<ccdnum>_piff.fits``
    (DES) or any ``<expnum>/<expnum>_<ccdnum>_*.fits`` (e.g. the simulator's ``_psf.fits``)."""
    folder = Path(psfs) / str(expnum)
    des = folder / f"{expnum}_{ccdnum}_piff.fits"
    if des.is_file():
        return des
    matches = sorted(folder.glob(f"{expnum}_{ccdnum}_*.fits"))
    return matches[0] if matches else None


def read_found_table(path: str | os.PathLike) -> list[ExposureRef]:
    """The exposures of an `smp discover` table (expnum, ccdnum, band)."""
    path = Path(path)
    table = read_input_table(path, ManifestError, "exposure list")
    missing = [c for c in ("expnum", "ccdnum", "band") if c not in table.colnames]
    if missing:
        raise ManifestError(f"exposure list lacks column(s) {', '.join(missing)}", path)
    return refs_of(table)


def manifest_from_refs(refs, *, stamps: str | os.PathLike, psfs: str | os.PathLike,
                       zeropoints: str | os.PathLike, name: str, ra: float, dec: float,
                       band: str, expnum: int, ccdnum: int, color_gi: float = 0.61):
    """The manifest of a detection over the exposures ``refs`` that have a stamp
    ``<stamps>/<name>_<expnum>.fits``: PSF files found by `psf_file`, zeropoints from the
    table, stamp origins by the DES rule at the PSF WCS's position of (ra, dec)."""
    from ..psf.models import load_psf
    from ..wcs.transforms import sky_to_pixel
    from .manifest import DetectionManifest, ExposureEntry, des_stamp_origin
    from .stamps import read_stamp
    from .zeropoints import read_zeropoints
    zps = read_zeropoints(zeropoints)
    entries = []
    for ref in sorted(set(refs)):
        stamp = Path(stamps) / f"{name}_{ref.expnum}.fits"
        if not stamp.is_file():
            continue
        psf = psf_file(psfs, ref.expnum, ref.ccdnum)
        if psf is None:
            raise ManifestError(f"no PSF file for exposure {ref.expnum} (CCD {ref.ccdnum})",
                                psfs)
        if (ref.expnum, ref.ccdnum) not in zps:
            raise ManifestError(f"no zeropoint for exposure {ref.expnum} (CCD {ref.ccdnum})",
                                zeropoints)
        x, y = (float(v) for v in sky_to_pixel(load_psf(psf, color=color_gi).wcs, ra, dec,
                                               color=color_gi))
        entries.append(ExposureEntry(
            expnum=ref.expnum, ccdnum=ref.ccdnum, band=ref.band,
            zeropoint=zps[(ref.expnum, ref.ccdnum)][0], stamp=stamp.absolute(),
            psf=psf.absolute(), stamp_origin=des_stamp_origin(x, y, read_stamp(stamp).shape),
            target_xy=(x, y)))
    return DetectionManifest(name=name, ra=float(ra), dec=float(dec), band=band,
                             detection_expnum=int(expnum), detection_ccdnum=int(ccdnum),
                             exposures=tuple(entries), color_gi=color_gi)
