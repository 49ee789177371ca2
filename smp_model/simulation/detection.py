"""Simulated detections of moving objects, written in the on-disk form of the DES sample.

`simulate_detection` draws, with galsim, a static sky scene (stars and Sersic galaxies at
fixed sky positions) seen in several exposures, each with its own seeing, PSF shape, WCS,
zeropoint, noise and masked pixels, plus a moving target (one point source, or two for a
binary) present only in the detection exposure.  It writes::

    OUTDIR/detection.toml                         manifest, format smp-detection/1
    OUTDIR/truth.json                             what was drawn (`SimulationTruth`)
    OUTDIR/zeropoints.ecsv                        expnum, ccdnum, band, zeropoint
    OUTDIR/stamps/<name>_<expnum>.fits            HDUs SCI, MSK, WGT (as DES stamps)
    OUTDIR/psfs/<expnum>/<expnum>_<ccdnum>_psf.fits   pixelised PSF + CCD WCS

and with ``ccd_images`` (a survey's view of the same data, for `smp discover` and
`smp cutout`)::

    OUTDIR/exposures.ecsv                         expnum, band, ra, dec (pointing), mjd
    OUTDIR/images/D<expnum>_<band>_c<ccdnum>_sim_immasked.fits.fz
                                                  full 2048 x 4096 CCD, HDUs SCI, MSK, WGT

In that mode each exposure's WCS is the DECam layout's (`smp_model.wcs.decam`: the target on
its CCD, the pointing derived) instead of a random rotation with SIP distortion, and the
exposure table also lists decoy pointings (target in a CCD gap, just beyond the focal
plane's edge, or in another band).  The CCD images hold the stamps' pixels, unchanged, at
their CCD position; elsewhere WGT = 0 (no data), so they compress to ~0.6 MB; cutting
them by the DES rule gives back the stamps exactly.

so every reader (and the GUI) is exercised exactly as with the DES sample.

PSF storage: the engine's `PixelizedPSF` format (HDU ``PIXPSF``: the pixel-integrated PSF
sampled 8x finer than the CCD pixels over +-16 px, and the exposure's TAN-SIP WCS in the
primary header).  A Piff file would need a fitted Piff model for a PSF we already know
exactly; the pixelised image is the same PSF interface (`load_psf`) with no fitting error,
so a fit of simulated data tests the photometry, not a PSF-modelling step.

Conventions
-----------
* Fluxes in the truth and in the arguments are counts on the common zeropoint 30 (ZP30);
  a stamp holds ``SCI = flux_zp30 / flux_scale(zeropoint)`` (`smp_model.inputs.stamps`).
* CCD positions are 1-indexed galsim/FITS pixels (centres at integers) on a 2048 x 4096
  DECam CCD; ``stamp_origin`` is the CCD pixel of ``SCI[0, 0]`` (DES rule,
  `des_stamp_origin`).
* Sky positions are ICRS degrees; tangent-plane offsets (u west, v north) are arcsec
  (`smp_model.wcs.transforms.tangent_offsets`); PSF and galaxy sizes are arcsec.
* The manifest's (ra, dec) is the target's position for a single source and the binary's
  flux-weighted photocentre (what a detection pipeline measures for an unresolved pair)
  for a binary.  Truth offsets ``(dx, dy)`` are detection-exposure pixels from the WCS
  position of that (ra, dec), i.e. the ``exact``-convention offsets the engine fits.
  ``target_offset_px = (dx, dy)`` displaces the whole target by that many detection
  pixels from the manifest position (a detection catalogue position that is off by a
  known amount, for testing position searches); the manifest (ra, dec) stays put.
* The WGT plane is the inverse sky variance only (no source Poisson term), as in DES.  With
  ``shot_noise_gain`` (electrons per SCI count) the sources also get Poisson noise, which
  the WGT plane then does not describe (as for bright sources in real data).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..files import OutputExistsError
from .config import SimulationConfig
from .field import SimulatedField, build_field
from .truth import SimulationTruth

__all__ = ["TRUTH_FILENAME", "check_output_dir", "simulate_detection", "target_layout",
           "write_detection"]

TRUTH_FILENAME = "truth.json"


# -- entry point ------------------------------------------------------------------------


def simulate_detection(outdir: str | os.PathLike, *, overwrite: bool = False,
                       **options) -> SimulationTruth:
    """Simulate a detection and write it to ``outdir`` (see the module docstring).

    ``options`` are the fields of `SimulationConfig` (seed, n_exposures, binary,
    separation_px, flux, flux_ratio, galaxy, name, stamp_size, shot_noise_gain,
    target_offset_px, ...).
    Deterministic for a given configuration.  Refuses to write into a non-empty ``outdir``
    unless ``overwrite`` (files of the same names are then replaced, others left alone).
    Returns the truth, also written as ``outdir/truth.json``.
    """
    config = SimulationConfig(**options)
    outdir = Path(outdir).absolute()
    check_output_dir(outdir, overwrite)
    return write_detection(build_field(config), outdir, overwrite)


def write_detection(sim_field: SimulatedField, outdir: Path,
                    overwrite: bool = False) -> SimulationTruth:
    """Add the target of ``sim_field.config`` (`target_layout`) and noise to a field and
    write the detection and its ``truth.json`` to ``outdir`` (checked by the caller)."""
    config = sim_field.config
    sources = sim_field.target_sources(*target_layout(config))
    stamps = sim_field.realise(config.rng(2), sources, noise=config.noise,
                               gain=config.shot_noise_gain)
    manifest_path = sim_field.write(outdir, stamps, overwrite=overwrite)
    truth = sim_field.truth(manifest_path, sources)
    truth.write(outdir / TRUTH_FILENAME, overwrite=overwrite)
    return truth


def target_layout(config: SimulationConfig) -> tuple[np.ndarray, np.ndarray]:
    """(fluxes (n_t,), offsets (n_t, 2) px) of the target: a single source at the manifest
    position, or a binary at a random position angle whose flux-weighted photocentre is
    the manifest position; both moved by ``config.target_offset_px``."""
    shift = np.asarray(config.target_offset_px, float)
    if not config.binary:
        return np.array([config.flux]), shift.reshape(1, 2)
    angle = config.rng(3).uniform(0.0, 2 * math.pi)
    fluxes = np.array([config.flux, config.flux * config.flux_ratio])
    step = config.separation_px * np.array([math.cos(angle), math.sin(angle)])
    primary = -step * fluxes[1] / fluxes.sum()
    return fluxes, np.array([primary, primary + step]) + shift


def check_output_dir(outdir: Path, overwrite: bool) -> None:
    """Refuse a non-empty existing directory (or a file) unless ``overwrite``."""
    if outdir.exists() and not outdir.is_dir():
        raise OutputExistsError("exists and is not a directory", outdir)
    if outdir.is_dir() and any(outdir.iterdir()) and not overwrite:
        raise OutputExistsError("directory is not empty; not written into "
                                "(use overwrite/--overwrite)", outdir)
