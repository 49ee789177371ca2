"""What a simulation is made of: `SimulationConfig` and the constants of the simulated
camera (DECam-like pixel scale and CCD size, mask bits, PSF storage, galsim accuracy).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import galsim
import numpy as np

from ..inputs.mask_bits import mask_bit

__all__ = ["CCD_MARGIN_PX", "CCD_NX", "CCD_NY", "DES_CCDS", "EXPOSURES_FILENAME", "GSPARAMS",
           "MANIFEST_FILENAME", "MASK_BPM", "MASK_CRAY", "PIXEL_SCALE_ARCSEC",
           "PSF_MIN_HALF_SIZE_PX", "PSF_OVERSAMPLING", "SURVEY_MJD0", "SimulationConfig"]

MANIFEST_FILENAME = "detection.toml"


EXPOSURES_FILENAME = "exposures.ecsv"


SURVEY_MJD0 = 57000.0               # MJD of the first exposure with ccd_images


PIXEL_SCALE_ARCSEC = 0.263          # DECam, arcsec per pixel at the CCD centre


CCD_NX, CCD_NY = 2048, 4096


CCD_MARGIN_PX = 150                 # target kept this far from the CCD edges


PSF_OVERSAMPLING = 8


# The stored PSF covers +-(stamp half size + 1) CCD pixels, at least +-16: the engine's
# model of a source ends where the stored PSF ends, and Moffat/Kolmogorov wings still hold
# ~0.7 % of the flux beyond 12 px (enough to bias fluxes by 0.1 % through the sky level).
PSF_MIN_HALF_SIZE_PX = 16


# DES BADPIX bits used for the simulated defects (`smp_model.inputs.mask_bits`).
MASK_BPM = mask_bit("BPM")          # bad pixel / column (bad-pixel mask)


MASK_CRAY = mask_bit("CRAY")        # cosmic ray


# Accurate galsim drawing: the engine must reproduce these draws to ~1e-4 of the peak.
GSPARAMS = galsim.GSParams(folding_threshold=1e-3, maxk_threshold=2e-4)


# DECam CCDs in the DES wide survey (2 and 61 failed, 31 is unstable).
DES_CCDS = tuple(c for c in range(1, 63) if c not in (2, 31, 61))


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that determines a simulated detection (with the seed, all of it).

    Attributes
    ----------
    flux
        target flux (ZP30); for a binary the primary's, the secondary has
        ``flux * flux_ratio``.
    separation_px
        binary separation in detection-exposure pixels (position angle random).
    galaxy
        put a Sersic galaxy beside the target, ``galaxy_distance_px`` away
        (None: random 4-6 px); 0 puts the target on the galaxy's centre.
    n_stars
        field stars 7-12 px from the target (always the same sky positions).
    fwhm_range_arcsec
        seeing FWHM range; each exposure draws one.
    zeropoint_range
        SCI zeropoints (mag), one per exposure.
    sky_sigma_range
        sky noise (SCI counts per pixel), one per exposure.
    shot_noise_gain
        electrons per SCI count for source Poisson noise (None: no source
        noise); written to the manifest as the exposures' ``gain``.
    noise
        False writes noiseless images (the WGT plane is still the sky's).
    ccd_images
        DECam-layout WCSs, and write full CCD images and the survey's exposure
        table (module docstring).
    target_offset_px
        (dx, dy) detection-exposure pixels by which the target (both
        sources of a binary) is displaced from the manifest (ra, dec); the truth offsets
        include it.  Default (0, 0): the manifest position is the target's.
    aligned_axes
        CCD axes along the sky's (the random rotation rounded to a multiple of
        90 degrees), as on DECam, instead of at any angle.
    """

    seed: int = 0
    n_exposures: int = 6
    binary: bool = False
    separation_px: float = 2.8
    flux: float = 2000.0
    flux_ratio: float = 0.7
    galaxy: bool = True
    galaxy_distance_px: float | None = None
    n_stars: int = 2
    name: str | None = None
    band: str = "r"
    stamp_size: int = 30
    fwhm_range_arcsec: tuple[float, float] = (0.8, 1.3)
    zeropoint_range: tuple[float, float] = (31.2, 31.8)
    sky_sigma_range: tuple[float, float] = (35.0, 45.0)
    shot_noise_gain: float | None = None
    noise: bool = True
    target_offset_px: tuple[float, float] = (0.0, 0.0)
    aligned_axes: bool = False
    ccd_images: bool = False

    def __post_init__(self):
        if self.n_exposures < 2:
            raise ValueError(f"need at least 2 exposures, got {self.n_exposures}")
        if self.stamp_size < 8:
            raise ValueError(f"stamp size must be >= 8 pixels, got {self.stamp_size}")
        if self.binary and not self.separation_px > 0:
            raise ValueError(f"binary separation must be > 0 px, got {self.separation_px}")
        if self.flux_ratio < 0:
            raise ValueError(f"flux ratio must be >= 0, got {self.flux_ratio}")
        if self.shot_noise_gain is not None and not self.shot_noise_gain > 0:
            raise ValueError(f"gain must be > 0, got {self.shot_noise_gain}")
        offset = tuple(float(v) for v in self.target_offset_px)
        if len(offset) != 2 or not all(math.isfinite(v) for v in offset):
            raise ValueError(f"target offset must be two finite pixel values, got "
                             f"{self.target_offset_px!r}")
        object.__setattr__(self, "target_offset_px", offset)
        if self.name is not None and (not self.name or any(c in self.name for c in "/\\ ")):
            raise ValueError(f"name must be a non-empty word usable in file names, "
                             f"got {self.name!r}")

    @property
    def detection_name(self) -> str:
        return self.name if self.name is not None else f"sim{self.seed}"

    def rng(self, stream: int) -> np.random.Generator:
        """Independent random stream ``stream`` of this seed (0 layout, 1 exposures,
        2 noise), so that e.g. the noise does not change the layout."""
        return np.random.default_rng([self.seed, stream])
