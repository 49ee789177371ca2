"""Exposure discovery: which exposures of a survey contain a sky position.

A detection's exposures normally come from its manifest.  Survey tools can list them
instead; the engine talks to them through `ExposureSource`, and ships one backend for
destnosim survey objects (optional: destnosim is not a dependency).  Any object with the
same small interface (for example a catalogue of your own) works.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .wcs import tangent_offsets


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

