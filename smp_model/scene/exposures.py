"""Loading the exposures of a detection: calibrated stamps, PSFs and the target's CCD
position in each exposure."""
from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import ManifestError, SMPError, StampError
from ..inputs.manifest import DetectionManifest, ExposureEntry
from ..inputs.stamps import Stamp, read_stamp
from ..limits import COLOR_GI_RANGE, MAX_MEDIAN_PIXEL_SNR
from ..psf.models import PSFModel, load_psf
from ..wcs.transforms import local_pixel_scale, pixel_to_sky, sky_to_pixel

__all__ = ["DroppedExposureWarning", "LoadedExposure", "load_exposure", "load_exposures",
           "log", "manifest_target_xy", "manifest_warnings"]

log = logging.getLogger(__name__)


class DroppedExposureWarning(UserWarning):
    """An exposure carries no usable pixel and was left out of the fit."""


@dataclass(frozen=True, eq=False)
class LoadedExposure:
    """One exposure ready for fitting.

    ``image`` and ``weight`` are on the common zeropoint 30 (counts and inverse variance);
    ``weight`` is 0 on unusable pixels.  ``target_xy`` is the 1-indexed CCD position of the
    detection's (ra, dec) in this exposure.  ``color_gi`` is the g-i colour every sky <->
    pixel conversion and Jacobian of this exposure uses (colour-dependent WCSs).
    """

    entry: ExposureEntry
    stamp: Stamp
    psf: PSFModel
    image: np.ndarray
    weight: np.ndarray
    target_xy: tuple[float, float]
    color_gi: float

    @property
    def shape(self) -> tuple[int, int]:
        return self.image.shape

    @property
    def origin(self) -> tuple[int, int]:
        return self.entry.stamp_origin

    @property
    def usable(self) -> np.ndarray:
        return self.weight > 0

    @property
    def usable_fraction(self) -> float:
        return float(self.usable.mean())

    @property
    def pixel_scale(self) -> float:
        """arcsec per pixel at the target (from the WCS)."""
        return local_pixel_scale(self.psf.wcs, *self.target_xy, color=self.color_gi)

    def sky_to_pixel(self, ra, dec):
        return sky_to_pixel(self.psf.wcs, ra, dec, color=self.color_gi, guess=self.target_xy)

    def pixel_to_sky(self, x, y):
        return pixel_to_sky(self.psf.wcs, x, y, color=self.color_gi)

    def stamp_to_ccd(self, i, j):
        """CCD (x, y) of stamp array indices (column i, row j)."""
        return self.origin[0] + np.asarray(i), self.origin[1] + np.asarray(j)


def load_exposure(entry: ExposureEntry, manifest: DetectionManifest,
                  stamp: Stamp | None = None) -> LoadedExposure:
    """Stamp (read unless given), PSF and target position of one exposure."""
    stamp = read_stamp(entry.stamp) if stamp is None else stamp
    _check_pixel_values(entry, stamp)
    color = manifest.color_of(entry)
    psf = load_psf(entry.psf, color=color, stars=False,   # a fit never uses Piff's stars
                   psf_format=entry.psf_format, wcs_header=entry.psf_wcs_header)
    x, y = _place_target(entry, stamp, psf, manifest, color)
    image, weight = stamp.calibrated(entry.zeropoint)
    n_nan = int((~np.isfinite(stamp.sci) & (stamp.msk == 0) & (stamp.wgt > 0)).sum())
    if n_nan:
        warnings.warn(f"{entry.stamp}: {n_nan} unmasked non-finite SCI pixel(s) treated as "
                      "masked", stacklevel=2)
    return LoadedExposure(entry=entry, stamp=stamp, psf=psf, image=image, weight=weight,
                          target_xy=(float(x), float(y)), color_gi=color)


def _place_target(entry: ExposureEntry, stamp: Stamp, psf: PSFModel,
                  manifest: DetectionManifest, color: float) -> tuple[float, float]:
    """CCD position of the detection's (ra, dec) in this exposure at g-i colour ``color``;
    refuses a stamp_origin that puts the stamp away from it (stamps are cut around the
    detection's position)."""
    centre = _stamp_centre(entry, stamp)
    reach = max(stamp.shape)

    def near(xy) -> bool:
        return xy is not None and math.hypot(xy[0] - centre[0], xy[1] - centre[1]) <= reach

    try:
        xy = manifest_target_xy(psf, manifest, guess=centre, color=color)
    except Exception:   # noqa: BLE001 - retried below from the WCS's own start
        xy = None
    if not near(xy):
        # A far-off stamp_origin is a bad start for an iterated inverse (it may not
        # converge, or find a spurious root): place the target independently of it.
        try:
            xy = manifest_target_xy(psf, manifest, color=color)
        except Exception as exc:   # WCS code from a file can fail in any way
            raise SMPError(f"cannot place (ra, dec) on {entry.label} with the PSF file's "
                           f"WCS ({exc})", entry.psf) from None
        if not near(xy):
            distance = math.hypot(xy[0] - centre[0], xy[1] - centre[1])
            raise ManifestError(
                f"{entry.label}: stamp_origin {list(entry.stamp_origin)} puts the stamp "
                f"centre {distance:.0f} px from the detection's (ra, dec), which the PSF "
                f"file's WCS places at CCD ({xy[0]:.1f}, {xy[1]:.1f}); the stamp must "
                "contain it (wrong stamp_origin or wrong stamp?)",
                manifest.path or entry.stamp)
    return xy


def _check_pixel_values(entry: ExposureEntry, stamp: Stamp) -> None:
    """Refuse a stamp whose values no real image has (SCI of 1e38, WGT of 1e300): the
    fit would give zero fluxes or absurd chi2, or fail with a misleading message."""
    usable = stamp.usable
    if not usable.any():
        return
    with np.errstate(over="ignore", invalid="ignore"):
        snr = np.abs(stamp.sci[usable]) * np.sqrt(stamp.wgt[usable])
        median = float(np.median(snr))
    if not median <= MAX_MEDIAN_PIXEL_SNR:
        raise StampError(f"{entry.label}: values not plausible: median |SCI| x sqrt(WGT) of "
                         f"the usable pixels is {median:.3g} (at most "
                         f"{MAX_MEDIAN_PIXEL_SNR:.0e} in a real image; SCI or WGT in the "
                         "wrong units?)", entry.stamp)


def manifest_target_xy(psf: PSFModel, manifest: DetectionManifest,
                       guess: tuple[float, float] | None = None,
                       color: float | None = None) -> tuple[float, float]:
    """1-indexed CCD (x, y) of the detection's (ra, dec) through the PSF file's WCS, at g-i
    colour ``color`` (default: the manifest's); ``guess`` (a nearby CCD position) only
    speeds up WCSs inverted by iteration."""
    color = manifest.color_gi if color is None else color
    x, y = sky_to_pixel(psf.wcs, manifest.ra, manifest.dec, color=color, guess=guess)
    return float(x), float(y)


def _stamp_centre(entry: ExposureEntry, stamp: Stamp) -> tuple[float, float]:
    """CCD position of the stamp's central pixel: stamps are cut around the target."""
    ny, nx = stamp.shape
    return entry.stamp_origin[0] + (nx - 1) / 2.0, entry.stamp_origin[1] + (ny - 1) / 2.0


def load_exposures(manifest: DetectionManifest,
                   progress: Callable[[float, str], None] | None = None,
                   detection_stamp: Stamp | None = None
                   ) -> tuple[list[LoadedExposure], list[str]]:
    """Load every exposure of ``manifest``.

    Returns the usable exposures (the detection exposure among them) and one message per
    dropped exposure.  Exposures without a single usable pixel are dropped (they would
    make the normal matrix singular) with a `DroppedExposureWarning`; if that is the
    detection exposure, `StampError` is raised.  All stamps must have one shape.
    ``progress(fraction, message)`` is called after each exposure (it may raise to cancel).
    ``detection_stamp``: the detection exposure's stamp, when already read
    (`check_fit_memory` reads it first).
    """
    for message in manifest_warnings(manifest):
        warnings.warn(message, stacklevel=2)
    stamps = [detection_stamp if e is manifest.detection_exposure and detection_stamp
              is not None else read_stamp(e.stamp) for e in manifest.exposures]
    shapes = {st.shape for st in stamps}
    if len(shapes) > 1:
        detail = ", ".join(f"{e.expnum}: {st.shape}"
                           for e, st in zip(manifest.exposures, stamps))
        raise ManifestError(f"stamps of one detection must share a shape ({detail})",
                            manifest.path)
    # PSFs are read one at a time, and only for exposures that will be fitted: reading a
    # DES Piff file takes ~90 ms and peaks at ~120 MB while fitsio decodes its WCS strings
    # (2 MB stay); two reader threads were only 10-20 % faster and doubled that peak.
    kept, dropped = [], []
    for n, (entry, stamp) in enumerate(zip(manifest.exposures, stamps), start=1):
        if stamp.usable.any():
            kept.append(load_exposure(entry, manifest, stamp))
        elif entry is manifest.detection_exposure:
            raise StampError(f"detection {entry.label} has no usable pixel "
                             "(all masked or zero weight)", entry.stamp)
        else:
            message = (f"{entry.label} dropped: no usable pixel (all masked or zero weight) "
                       f"in {entry.stamp.name}")
            warnings.warn(message, DroppedExposureWarning, stacklevel=2)
            dropped.append(message)
        if progress:
            progress(n / len(manifest.exposures), f"read {entry.label}")
    return kept, dropped


def manifest_warnings(manifest: DetectionManifest) -> list[str]:
    """One line per thing in ``manifest`` that is allowed but probably a mistake: a stamp
    or PSF file used by two exposures, an exposure in another band than the detection's,
    a colour outside `COLOR_GI_RANGE` (the WCS colour term would be extrapolated)."""
    where = f"{manifest.path}: " if manifest.path else ""
    messages = []
    for kind, key in (("stamp", lambda e: e.stamp), ("psf", lambda e: e.psf_files)):
        users: dict = {}
        for e in manifest.exposures:
            users.setdefault(key(e), []).append(e.expnum)
        for files, expnums in users.items():
            if len(expnums) > 1:   # a PSFEx model counts once per WCS header
                path = files if kind == "stamp" else files[0]
                messages.append(f"{where}{kind} file {path} is used by exposures "
                                f"{', '.join(map(str, expnums))}")
    other = [e.expnum for e in manifest.exposures if e.band != manifest.band]
    if other:
        messages.append(f"{where}exposure(s) {', '.join(map(str, other))} are not in the "
                        f"detection's band {manifest.band!r}")
    low, high = COLOR_GI_RANGE
    if not low <= manifest.color_gi <= high:
        messages.append(f"{where}color_gi = {manifest.color_gi:g} is outside "
                        f"[{low:g}, {high:g}]; the WCS colour term is extrapolated")
    return messages
