"""Shared test helpers: small synthetic detections whose truth is known analytically.

A synthetic detection is a set of stamps, pixelised PSF files (`smp_model.psf.models.PixelizedPSF`
layout: primary header = a plain TAN WCS, HDU ``PIXPSF``) and a ``detection.toml`` written
into a temporary directory.  The PSF is a circular Gaussian of ``sigma_px`` CCD pixels whose
pixel-integrated value is known in closed form (`pixel_integrated_gaussian`), so tests can
compare what the engine renders and fits with an independent truth.

Conventions follow the engine's: CCD pixels are 1-indexed (pixel centres at integers);
``SCI[j, i]`` is CCD ``(x0 + i, y0 + j)``; fluxes are on zeropoint 30 unless stated.
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tomli_w
from astropy.io import fits
from astropy.wcs import WCS
from scipy.special import ndtr

PIXEL_SCALE = 0.263           # arcsec / px of the synthetic TAN WCS
CCD_CENTRE = (1024.5, 2048.5)


def tan_header(ra0: float, dec0: float, scale: float = PIXEL_SCALE,
               crpix: tuple[float, float] = CCD_CENTRE) -> fits.Header:
    """A north-up, east-left TAN WCS header (1-indexed CRPIX, as FITS)."""
    h = fits.Header()
    h["WCSAXES"] = 2
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CUNIT1"], h["CUNIT2"] = "deg", "deg"
    h["CRVAL1"], h["CRVAL2"] = ra0, dec0
    h["CRPIX1"], h["CRPIX2"] = crpix
    h["CD1_1"], h["CD1_2"] = -scale / 3600.0, 0.0
    h["CD2_1"], h["CD2_2"] = 0.0, scale / 3600.0
    return h


def pixel_to_sky(header: fits.Header, x, y):
    """(ra, dec) degrees of 1-indexed CCD pixel positions, with astropy (independent of
    the engine's galsim WCS code)."""
    return WCS(header).all_pix2world(x, y, 1)


def sky_to_pixel(header: fits.Header, ra, dec):
    """1-indexed CCD (x, y) of sky positions, with astropy."""
    return WCS(header).all_world2pix(ra, dec, 1)


def pixel_integrated_gaussian(dx, dy, sigma_px: float):
    """Fraction of a unit-flux circular Gaussian (sigma in px) centred at offset (0, 0)
    that falls in the unit pixel centred at (dx, dy): the exact pixel-integrated PSF."""
    def axis(d):
        d = np.asarray(d, float)
        return ndtr((d + 0.5) / sigma_px) - ndtr((d - 0.5) / sigma_px)
    return axis(dx) * axis(dy)


def render_truth(centres, fluxes, origin, shape, sigma_px):
    """Exact stamp (ny, nx) of point sources at CCD ``centres`` [(x, y), ...]."""
    ny, nx = shape
    xs = origin[0] + np.arange(nx)[None, :]
    ys = origin[1] + np.arange(ny)[:, None]
    out = np.zeros(shape)
    for (xc, yc), f in zip(centres, fluxes):
        out += f * pixel_integrated_gaussian(xs - xc, ys - yc, sigma_px)
    return out


def pixelized_psf_image(sigma_px: float, oversampling: int = 8, half_size_px: int = 7):
    """Samples of the pixel-integrated Gaussian every 1/oversampling px, centred on the
    image's true centre (the `PixelizedPSF` layout)."""
    n = 2 * half_size_px * oversampling + 1
    offsets = (np.arange(n) - (n - 1) / 2) / oversampling
    return pixel_integrated_gaussian(offsets[None, :], offsets[:, None], sigma_px)


@dataclass
class SyntheticExposure:
    """One exposure of a synthetic detection (what goes into the files)."""

    expnum: int
    zeropoint: float
    header: fits.Header            # its TAN WCS
    origin: tuple[int, int]        # CCD pixel of SCI[0, 0]
    sci: np.ndarray                # SCI units (zeropoint ``zeropoint``)
    wgt: np.ndarray
    msk: np.ndarray
    truth_zp30: np.ndarray = field(repr=False)   # noise-free image on zeropoint 30


@dataclass
class SyntheticDetection:
    """A written synthetic detection and its truth."""

    manifest_path: Path
    ra: float
    dec: float
    exposures: list[SyntheticExposure]
    detection_index: int
    target_flux: float
    static_sources: list[tuple[float, float, float]]   # (ra, dec, flux zp30)
    sky_zp30: list[float]
    sigma_px: float
    noise_zp30: float

    @property
    def detection(self) -> SyntheticExposure:
        return self.exposures[self.detection_index]

    def target_xy(self, index: int | None = None) -> tuple[float, float]:
        ex = self.exposures[self.detection_index if index is None else index]
        x, y = sky_to_pixel(ex.header, self.ra, self.dec)
        return float(x), float(y)


def zp_scale(zeropoint: float) -> float:
    """SCI -> zeropoint-30 factor, written out here independently of the engine."""
    return 10.0 ** (-0.4 * (zeropoint - 30.0))


def des_origin(x: float, y: float, shape=(30, 30)) -> tuple[int, int]:
    """The DES stamp rule, ``ceil(x) - 14`` for 30 px, written out independently."""
    ny, nx = shape
    return math.ceil(x) - nx // 2 + 1, math.ceil(y) - ny // 2 + 1


def make_synthetic_detection(directory: Path, *, n_exposures: int = 3, shape=(30, 30),
                             sigma_px: float = 0.9, target_flux: float = 5000.0,
                             target_ccd_xy: tuple[float, float] | None = None,
                             detection_origin: tuple[int, int] | None = None,
                             static_sources: list[tuple[float, float, float]] | None = None,
                             sky_zp30: list[float] | None = None, noise_zp30: float = 5.0,
                             add_noise: bool = True, seed: int = 0,
                             zeropoints: list[float] | None = None,
                             name: str = "synth", detection_index: int = 0,
                             oversampling: int = 8,
                             pointing: tuple[float, float] = (150.0, 2.0)
                             ) -> SyntheticDetection:
    """Write a synthetic detection into ``directory`` and return it with its truth.

    Each exposure has its own TAN WCS (pointing shifted by a fraction of a pixel and some
    pixels, so the target lands at different sub-pixel phases).  ``target_ccd_xy`` puts
    the target at that CCD position of the detection exposure (default: near the CCD
    centre at a generic sub-pixel phase).  ``detection_origin`` overrides the DES stamp
    rule for the detection exposure.  ``static_sources`` are (du, dv, flux) arcsec offsets east/north of the
    target and zeropoint-30 fluxes.  ``pointing`` (ra, dec degrees) is the detection
    exposure's CCD centre.  Noise is Gaussian with standard deviation
    ``noise_zp30`` on the zeropoint-30 scale; WGT is its inverse variance in SCI units.
    """
    import galsim

    from smp_model.psf.models import PixelizedPSF

    directory = Path(directory)
    (directory / "stamps").mkdir(parents=True, exist_ok=True)
    (directory / "psfs").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    zeropoints = zeropoints or [30.0 + 0.37 * m - 0.5 for m in range(n_exposures)]
    sky_zp30 = sky_zp30 if sky_zp30 is not None else [20.0 + 3.0 * m for m in range(n_exposures)]
    static_sources = static_sources if static_sources is not None else \
        [(1.3, -0.8, 3000.0), (-2.1, 1.7, 1500.0)]
    ra0, dec0 = pointing
    # The target's sky position: a chosen CCD position of the detection exposure.
    det_header = tan_header(ra0, dec0)
    tx, ty = target_ccd_xy or (1030.37, 2040.81)
    ra, dec = (float(v) for v in pixel_to_sky(det_header, tx, ty))
    cos_dec = math.cos(math.radians(dec))
    static_sky = [(ra + du / 3600.0 / cos_dec, dec + dv / 3600.0, f)
                  for du, dv, f in static_sources]
    psf_image = pixelized_psf_image(sigma_px, oversampling)
    exposures = []
    entries = []
    for m in range(n_exposures):
        header = det_header if m == detection_index else tan_header(
            ra0 + (37.31 * m) * PIXEL_SCALE / 3600.0, dec0 - (21.77 * m) * PIXEL_SCALE / 3600.0)
        x, y = (float(v) for v in sky_to_pixel(header, ra, dec))
        origin = (tuple(detection_origin) if detection_origin and m == detection_index
                  else des_origin(x, y, shape))
        centres, fluxes = [], []
        for sra, sdec, f in static_sky:
            sx, sy = sky_to_pixel(header, sra, sdec)
            centres.append((float(sx), float(sy)))
            fluxes.append(f)
        if m == detection_index:
            centres.append((x, y))
            fluxes.append(target_flux)
        truth = render_truth(centres, fluxes, origin, shape, sigma_px) + sky_zp30[m]
        noisy = truth + (rng.normal(0.0, noise_zp30, shape) if add_noise else 0.0)
        scale = zp_scale(zeropoints[m])
        sci = noisy / scale
        wgt = np.full(shape, (scale / noise_zp30) ** 2)
        msk = np.zeros(shape, np.int16)
        expnum = 100001 + m
        stamp_path = directory / "stamps" / f"{name}_{expnum}.fits"
        write_stamp(stamp_path, sci, msk, wgt)
        psf_path = directory / "psfs" / f"{expnum}_1_pixpsf.fits"
        PixelizedPSF(psf_image, oversampling, galsim.GSFitsWCS(header=header)).write(
            psf_path, header)
        exposures.append(SyntheticExposure(expnum, zeropoints[m], header, origin, sci, wgt,
                                           msk, truth))
        entries.append(dict(expnum=expnum, ccdnum=1, band="r", zeropoint=zeropoints[m],
                            stamp=f"stamps/{stamp_path.name}", psf=f"psfs/{psf_path.name}",
                            stamp_origin=list(origin), target_xy=[x, y]))
    doc = dict(format="smp-detection/1", name=name, ra=ra, dec=dec, band="r", color_gi=0.61,
               detection=dict(expnum=exposures[detection_index].expnum, ccdnum=1),
               exposures=entries)
    manifest_path = directory / "detection.toml"
    manifest_path.write_text(tomli_w.dumps(doc))
    return SyntheticDetection(manifest_path, ra, dec, exposures, detection_index, target_flux,
                              static_sky, list(sky_zp30), sigma_px, noise_zp30)


def write_stamp(path: Path, sci, msk, wgt) -> None:
    """A stamp file with HDUs SCI, MSK, WGT."""
    fits.HDUList([fits.PrimaryHDU(),
                  fits.ImageHDU(np.asarray(sci, np.float32), name="SCI"),
                  fits.ImageHDU(np.asarray(msk, np.int16), name="MSK"),
                  fits.ImageHDU(np.asarray(wgt, np.float32), name="WGT")]).writeto(path)


def read_toml(path: Path) -> dict:
    import tomllib
    with open(path, "rb") as f:
        return tomllib.load(f)


def write_toml(path: Path, doc: dict) -> Path:
    path.write_text(tomli_w.dumps(doc))
    return path


def absolute_manifest_dict(manifest_path: Path) -> dict:
    """A manifest as a dict with every stamp/psf path made absolute (so the dict can be
    written anywhere)."""
    doc = read_toml(manifest_path)
    for e in doc["exposures"]:
        for key in ("stamp", "psf"):
            e[key] = str((manifest_path.parent / e[key]).resolve())
    return doc


def wait_layout_still(qtbot, item, still_s: float = 0.3, timeout_s: float = 10.0):
    """Wait until ``item``'s size has not changed for ``still_s``."""
    size, since, deadline = item.size(), time.monotonic(), time.monotonic() + timeout_s
    while time.monotonic() - since < still_s:
        assert time.monotonic() < deadline, "the layout did not settle"
        qtbot.wait(20)
        if item.size() != size:
            size, since = item.size(), time.monotonic()


def new_inspector(settings_file: Path, trusted=()):
    """A shown inspector window whose settings live in ``settings_file`` (nothing carried
    over from the user's or another test's), trusting the PSF folders ``trusted``."""
    from PyQt6.QtCore import QSettings

    from smp_gui.consent import TRUSTED_FOLDERS_KEY
    from smp_gui.inspector.window import InspectorWindow
    store = QSettings(str(settings_file), QSettings.Format.IniFormat)
    if trusted:
        store.setValue(TRUSTED_FOLDERS_KEY, [str(folder) for folder in trusted])
    window = InspectorWindow(store)
    window.show()
    return window


@contextmanager
def shown_inspector(settings_file: Path, trusted=()):
    """`new_inspector` for the ``with`` block, then shut down, closed and deleted."""
    window = new_inspector(settings_file, trusted)
    try:
        yield window
    finally:
        window.shutdown()
        window.close()
        window.deleteLater()
