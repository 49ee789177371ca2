"""Simulated detections drawn with a real PSFEx model and a real CCD WCS.

`build_psfex_field` is `smp_model.simulation.field.build_field` with the exposures' PSF and
WCS taken from a PSFEx file (``*.psf``) and its CCD's FITS header instead of analytic
profiles and random TAN-SIP WCSs:

* the detection exposure *is* that CCD: its expnum, CCD number and band come from the
  header (``EXPNUM``, ``CCDNUM``, ``FILTER``), its WCS is the header's, and the target sits
  at a random CCD position (whose sky position becomes the detection's (ra, dec));
* every other exposure sees the same sky through a copy of that WCS turned by a random
  angle about the reference pixel and moved so that (ra, dec) falls at another random CCD
  position, with the same PSFEx model in its own pixel frame (a PSFEx model is a function
  of CCD position, in pixels);
* sources are drawn with the PSFEx model evaluated at each source's own CCD position,
  as it is (PSFEx models are pixel-integrated already: drawn without a further pixel).

`SimulatedField.write` then writes a manifest whose PSF entries name the PSFEx file and, per
exposure, a WCS header ``psfs/<expnum>/<expnum>_<ccdnum>_wcs.fits``.  Zeropoints, noise,
defects and the static scene are drawn as for every simulation (`SimulationConfig`).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import galsim
import numpy as np
from astropy.io import fits

from ..errors import PSFError
from ..files import atomic_output
from ..inputs.manifest import PSFEX, ExposureEntry, des_stamp_origin
from ..psf.models import PSFExPSF
from .config import CCD_MARGIN_PX, CCD_NX, CCD_NY, GSPARAMS, SimulationConfig
from .detection import check_output_dir, write_detection
from .field import (SimulatedExposure, SimulatedField, draw_defects, draw_scene,
                    place_on_ccd, scene_sources)
from .truth import ExposureTruth, SimulationTruth

__all__ = ["PSFExExposure", "build_psfex_field", "simulate_psfex_detection",
           "wcs_header_relpath"]


@dataclass(eq=False)
class PSFExExposure(SimulatedExposure):
    """A simulated exposure whose PSF is a PSFEx model (`PSFExPSF`) in its pixel frame
    (``psf_profile``, the analytic sky PSF of other simulations, is None)."""

    psfex: PSFExPSF | None = None

    def psf_fields(self, outdir: Path) -> dict:
        t = self.truth
        return dict(psf=self.psfex.path, psf_format=PSFEX,
                    psf_wcs_header=outdir / wcs_header_relpath(t.expnum, t.ccdnum))

    def write_psf(self, entry: ExposureEntry, overwrite: bool) -> None:
        # The PSFEx file is named, not copied; the exposure's WCS is its own header.
        with atomic_output(entry.psf_wcs_header, overwrite) as tmp:
            fits.PrimaryHDU(header=self.wcs_header).writeto(tmp, overwrite=True)

    def draw(self, profile: galsim.GSObject, x: float, y: float) -> np.ndarray:
        """SCI-count stamp of a sky ``profile`` (arcsec, ZP30 flux) centred at CCD (x, y),
        seen through the WCS Jacobian at (x, y) and convolved with the PSFEx model there
        (pixel-integrated already: drawn with ``no_pixel``)."""
        ny, nx = self.shape
        image = galsim.ImageD(nx, ny, xmin=self.origin[0], ymin=self.origin[1], scale=1.0)
        jac = self.wcs.local(galsim.PositionD(x, y))
        convolved = galsim.Convolve(jac.profileToImage(profile),
                                    self.psfex.pixel_profile(x, y), gsparams=GSPARAMS)
        convolved.drawImage(image, center=galsim.PositionD(x, y), method="no_pixel")
        return image.array / self.flux_scale


def wcs_header_relpath(expnum: int, ccdnum: int) -> Path:
    return Path("psfs") / str(expnum) / f"{expnum}_{ccdnum}_wcs.fits"


def simulate_psfex_detection(outdir: str | os.PathLike, psfex: str | os.PathLike,
                             header: str | os.PathLike, *, overwrite: bool = False,
                             **options) -> SimulationTruth:
    """`simulate_detection` with the PSF and WCS of a PSFEx file and its CCD header
    (module docstring); ``options`` are the fields of `SimulationConfig` (``band`` comes
    from the header's ``FILTER``)."""
    outdir = Path(outdir).absolute()
    check_output_dir(outdir, overwrite)
    return write_detection(build_psfex_field(psfex, header, SimulationConfig(**options)),
                           outdir, overwrite)


def build_psfex_field(psfex: str | os.PathLike, header: str | os.PathLike,
                      config: SimulationConfig = SimulationConfig()) -> SimulatedField:
    """The static part of a PSFEx simulation (deterministic in ``config.seed``); the band
    is the header's, whatever ``config.band`` says."""
    model = PSFExPSF.read(psfex, header)
    base = _primary_header(Path(header))
    config = replace(config, band=_band(base))
    layout = config.rng(0)
    target_xy = _ccd_position(layout)
    ra, dec = (float(v) for v in model.wcs.xyToradec(*target_xy, units="deg"))
    ra %= 360.0
    scene = scene_sources(config, layout, ra, dec)
    rng = config.rng(1)
    detection_index = int(rng.integers(config.n_exposures))
    det_expnum, ccdnum = int(base.get("EXPNUM", 0)), int(base.get("CCDNUM", 0))
    others = iter(np.sort(rng.choice(np.setdiff1d(np.arange(100000, 900000), [det_expnum]),
                                     config.n_exposures - 1, replace=False)))
    exposures = []
    for m in range(config.n_exposures):
        if m == detection_index:
            exposures.append(_exposure(config, rng, model, base, det_expnum, ccdnum,
                                       target_xy, 0.0, True))
            continue
        rotation = float(rng.uniform(0.0, 360.0))
        xy = _ccd_position(rng)
        header_m = place_on_ccd(_rotated(base, rotation), xy, ra, dec)
        header_m["EXPNUM"] = expnum = int(next(others))
        exposures.append(_exposure(config, rng, model, header_m, expnum, ccdnum, xy,
                                   rotation, False))
    for ex in exposures:
        ex.scene_sci = draw_scene(ex, scene)
    return SimulatedField(config=config, ra=ra, dec=dec, scene=scene, exposures=exposures,
                          detection_index=detection_index)


def _primary_header(path: Path) -> fits.Header:
    try:
        return fits.getheader(path, 0)
    except (OSError, ValueError) as exc:
        raise PSFError(f"cannot read the FITS header ({exc})", path) from None


def _band(header: fits.Header) -> str:
    """The band letter of a DECam ``FILTER`` card (``'Y DECam c0005 10095.0 1130.0'``)."""
    words = str(header.get("FILTER", "")).split()
    return words[0] if words else "r"


def _ccd_position(rng: np.random.Generator) -> tuple[float, float]:
    return (float(rng.uniform(CCD_MARGIN_PX, CCD_NX + 1 - CCD_MARGIN_PX)),
            float(rng.uniform(CCD_MARGIN_PX, CCD_NY + 1 - CCD_MARGIN_PX)))


def _rotated(header: fits.Header, degrees: float) -> fits.Header:
    """A copy of ``header`` whose CCD axes are turned by ``degrees`` about CRPIX (the CD
    matrix times a rotation: the distortion terms stay as they are)."""
    out = header.copy()
    theta = math.radians(degrees)
    rotation = np.array([[math.cos(theta), -math.sin(theta)],
                         [math.sin(theta), math.cos(theta)]])
    cd = np.array([[header.get(f"CD{i}_{j}", 0.0) for j in (1, 2)] for i in (1, 2)])
    for (i, j), value in np.ndenumerate(cd @ rotation):
        out[f"CD{i + 1}_{j + 1}"] = float(value)
    return out


def _exposure(config: SimulationConfig, rng: np.random.Generator, model: PSFExPSF,
              header: fits.Header, expnum: int, ccdnum: int, target_xy: tuple[float, float],
              rotation: float, is_detection: bool) -> PSFExExposure:
    zeropoint = float(rng.uniform(*config.zeropoint_range))
    sky_sigma = float(rng.uniform(*config.sky_sigma_range))
    shape = (config.stamp_size, config.stamp_size)
    mask, defects = draw_defects(rng, shape, sky_sigma)
    wcs = galsim.GSFitsWCS(header=header)
    truth = ExposureTruth(
        expnum=expnum, ccdnum=ccdnum, zeropoint=zeropoint,
        fwhm_arcsec=_fwhm_arcsec(model, wcs, target_xy), psf_kind=PSFEX, psf_g1=0.0,
        psf_g2=0.0, rotation_deg=rotation, sky_sigma=sky_sigma,
        sky_offset=float(rng.uniform(-0.1, 0.1) * sky_sigma), target_xy=target_xy,
        stamp_origin=des_stamp_origin(*target_xy, shape), n_masked=int((mask != 0).sum()),
        is_detection=is_detection)
    return PSFExExposure(truth=truth, wcs=wcs, wcs_header=header, psf_profile=None,
                         shape=shape, mask=mask, defects=defects, psfex=model)


def _fwhm_arcsec(model: PSFExPSF, wcs: galsim.BaseWCS, xy: tuple[float, float]) -> float:
    """FWHM of the PSFEx model at CCD ``xy`` from its adaptive second moments (as for a
    Gaussian: 2.355 sigma), in arcsec at the local pixel scale."""
    image = model.pixel_profile(*xy).drawImage(nx=41, ny=41, scale=1.0, method="no_pixel")
    sigma_px = image.FindAdaptiveMom().moments_sigma
    scale = math.sqrt(abs(wcs.local(galsim.PositionD(*xy)).pixelArea()))
    return float(2.0 * math.sqrt(2.0 * math.log(2.0)) * sigma_px * scale)
