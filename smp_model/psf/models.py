"""PSF models: what a manifest's PSF file becomes.

Every PSF source (a Piff file, a PSFEx model, a pixelised PSF image, an analytic galsim
profile) is
reduced to one thing: the *pixel-integrated* PSF at a CCD position, as a galsim profile in
CCD pixel units with unit flux (`PSFModel.pixel_profile`).  Drawing that profile with
``method='no_pixel'`` on a grid of scale 1 gives the expected counts per pixel of a unit
point source; evaluating it anywhere gives the value a pixel centred there would have.

The renderer that draws such profiles fast at many positions is
`smp_model.psf.oversampled.OversampledPSF`.

Coordinates: CCD positions are 1-indexed (galsim/FITS); ``origin = (x0, y0)`` is the CCD
pixel of array element ``[0, 0]`` of a stamp, so element ``[j, i]`` is CCD ``(x0+i, y0+j)``.
"""
from __future__ import annotations

import os
import warnings
from abc import ABC, abstractmethod
from pathlib import Path

import galsim
import numpy as np
from astropy.io import fits

from ..errors import MissingDependencyError, PSFError
from ..files import open_input_fits, require_fits_file
from .piff_io import PiffFile

__all__ = ["PIFF_EXTNAME", "PIXELIZED_PSF_EXTNAME", "PSFEX_EXTNAME", "GalsimPSF", "PSFExPSF", "PSFModel",
           "PiffPSF", "PixelizedPSF", "draw_profile", "load_psf"]

PIXELIZED_PSF_EXTNAME = "PIXPSF"
PIFF_EXTNAME = "PSF"        # what piff.PSF.read looks for (its default name, 'psf')
PSFEX_EXTNAME = "PSF_DATA"  # the table of PSFEx's model (psfex -> *.psf)


class PSFModel(ABC):
    """A PSF that varies over a CCD, with the CCD's WCS (CCD pixels -> sky).

    ``color`` is the g-i colour of the sources drawn with it: a colour-dependent WCS
    (pixmappy) gives its local Jacobian at that colour (None: the WCS's default colour).
    """

    path: Path | None = None
    color: float | None = None

    @property
    @abstractmethod
    def wcs(self) -> galsim.BaseWCS:
        """WCS mapping 1-indexed CCD pixels to sky."""

    @abstractmethod
    def pixel_profile(self, x: float, y: float) -> galsim.GSObject:
        """Pixel-integrated PSF at CCD (x, y) in CCD pixel units, unit flux, centred at 0."""

    def draw(self, x: float, y: float, origin: tuple[int, int], shape: tuple[int, int],
             center: tuple[float, float]) -> np.ndarray:
        """Exact galsim draw of the PSF evaluated at (x, y), centred at CCD ``center``,
        on the stamp grid ``origin``/``shape`` (ny, nx).  Reference for `OversampledPSF`."""
        return draw_profile(self.pixel_profile(x, y), origin, shape, center)


def draw_profile(profile: galsim.GSObject, origin: tuple[int, int], shape: tuple[int, int],
                 center: tuple[float, float]) -> np.ndarray:
    """Draw a pixel-unit profile (already pixel-integrated) at CCD ``center`` on a stamp."""
    ny, nx = shape
    image = galsim.ImageD(nx, ny, xmin=origin[0], ymin=origin[1], scale=1.0)
    profile.drawImage(image, method="no_pixel", center=galsim.PositionD(*center))
    return image.array


class PiffPSF(PSFModel):
    """A Piff PSF file (one CCD).  Piff's models include the pixel response, so
    ``get_profile`` returns ``method='no_pixel'``; we honour whatever it returns (a profile
    that asks for ``'auto'`` is convolved with the pixel here, once)."""

    def __init__(self, piff_psf, path: Path | None = None, chipnum=None,
                 color: float | None = None):
        self.psf = piff_psf
        self.path = path
        self.color = color
        self.chipnum = chipnum if chipnum is not None else next(iter(piff_psf.wcs))

    @property
    def wcs(self) -> galsim.BaseWCS:
        return self.psf.wcs[self.chipnum]

    def pixel_profile(self, x: float, y: float) -> galsim.GSObject:
        prof, method = self.psf.get_profile(x, y, chipnum=self.chipnum)
        jac = self.wcs.local(galsim.PositionD(x, y), color=self.color)
        image_prof = jac.profileToImage(prof)
        if method != "no_pixel":
            image_prof = galsim.Convolve(image_prof, galsim.Pixel(1.0))
        return image_prof


class PixelizedPSF(PSFModel):
    """A PSF stored as an oversampled image of the pixel-integrated PSF, in CCD pixel units,
    constant over the CCD, with the CCD's WCS in the same file.

    File layout (FITS): primary header = the CCD's celestial WCS (any WCS galsim's
    ``GSFitsWCS`` reads: TAN, TAN-SIP, TPV); image HDU ``PIXPSF`` whose header has
    ``OVERSAMP`` (samples per CCD pixel); the PSF's centre is the image's true centre.
    Used for simulated data and for surveys that provide pixelised PSFs.
    """

    def __init__(self, image: np.ndarray, oversampling: int, wcs: galsim.BaseWCS,
                 path: Path | None = None):
        self.image = np.asarray(image, float)
        self.oversampling = int(oversampling)
        self._wcs = wcs
        self.path = path
        img = galsim.ImageD(self.image, scale=1.0 / self.oversampling)
        # The stored samples are values of the pixel-integrated PSF (per CCD pixel); as a
        # galsim surface brightness on the fine grid they need the fine-pixel area.
        self._profile = galsim.InterpolatedImage(img, x_interpolant="quintic",
                                                 normalization="sb",
                                                 use_true_center=True, calculate_stepk=False,
                                                 calculate_maxk=False)

    @property
    def wcs(self) -> galsim.BaseWCS:
        return self._wcs

    def pixel_profile(self, x: float, y: float) -> galsim.GSObject:
        return self._profile

    @classmethod
    def read(cls, path: str | os.PathLike) -> "PixelizedPSF":
        path = Path(path)
        try:
            with open_input_fits(path, PSFError, "PSF file") as hdul:
                hdu = hdul[PIXELIZED_PSF_EXTNAME]
                image = np.asarray(hdu.data, float)
                oversampling = int(hdu.header["OVERSAMP"])
            wcs = galsim.GSFitsWCS(str(path), hdu=0)
        except KeyError as exc:
            raise PSFError(f"pixelised PSF file lacks {exc}", path) from None
        except (OSError, ValueError, TypeError, galsim.GalSimError) as exc:
            raise PSFError(f"cannot read pixelised PSF ({exc})", path) from None
        if image.ndim != 2 or not np.all(np.isfinite(image)) or image.sum() <= 0:
            raise PSFError("PIXPSF must be a finite 2-d image with positive sum", path)
        if oversampling < 1:
            raise PSFError(f"OVERSAMP must be a positive integer, got {oversampling}", path)
        return cls(image, oversampling, wcs, path)

    def write(self, path: str | os.PathLike, wcs_header: fits.Header,
              overwrite: bool = False) -> None:
        """Write in the layout `read` expects; ``wcs_header`` describes the CCD WCS."""
        hdu = fits.ImageHDU(self.image.astype(np.float64), name=PIXELIZED_PSF_EXTNAME)
        hdu.header["OVERSAMP"] = (self.oversampling, "PSF samples per CCD pixel")
        hdu.header["COMMENT"] = "Pixel-integrated PSF per CCD pixel, centred on the image centre"
        fits.HDUList([fits.PrimaryHDU(header=wcs_header), hdu]).writeto(path, overwrite=overwrite)


class PSFExPSF(PSFModel):
    """A PSFEx model of one CCD (``*.psf``, as DES, DECaLS and NOIRLab's Community Pipeline
    write them), read by GalSim's `galsim.des.DES_PSFEx`, with the CCD's WCS from a FITS
    header (``galsim.FitsWCS``).

    PSFEx fits the PSF to the pixel values of stars: its model is already the
    pixel-integrated PSF, in CCD pixel units, sampled every ``PSF_SAMP`` pixels (and
    varying with CCD position as a polynomial), so `pixel_profile` returns GalSim's
    interpolated image of it as it is, without another pixel convolution.
    """

    def __init__(self, psfex, wcs: galsim.BaseWCS, path: Path | None = None,
                 wcs_header: Path | None = None):
        self.psfex = psfex
        self._wcs = wcs
        self.path = path
        self.wcs_header = wcs_header

    @property
    def wcs(self) -> galsim.BaseWCS:
        return self._wcs

    def pixel_profile(self, x: float, y: float) -> galsim.GSObject:
        # DES_PSFEx made without a WCS returns the profile in image coordinates.
        return self.psfex.getPSF(galsim.PositionD(x, y))

    @classmethod
    def read(cls, path: str | os.PathLike, wcs_header: str | os.PathLike) -> "PSFExPSF":
        """Read a PSFEx file and the WCS of the primary header of ``wcs_header`` (any WCS
        GalSim reads: TPV, TAN-SIP, TAN, ...); `PSFError` names the file at fault."""
        import galsim.des

        path, wcs_header = Path(path), Path(wcs_header)
        require_fits_file(path, PSFError, "PSFEx file")
        require_fits_file(wcs_header, PSFError, "WCS header file")
        with fits.open(path, memmap=False) as hdul:
            if PSFEX_EXTNAME not in {hdu.name for hdu in hdul}:
                raise PSFError(f"not a PSFEx model (no {PSFEX_EXTNAME!r} table)", path)
        try:
            psfex = galsim.des.DES_PSFEx(str(path))
        except (OSError, KeyError, ValueError, IndexError, TypeError, galsim.GalSimError) as exc:
            raise PSFError(f"cannot read PSFEx model ({type(exc).__name__}: {exc})",
                           path) from None
        return cls(psfex, _celestial_wcs(wcs_header), path, wcs_header)


def _celestial_wcs(path: Path) -> galsim.BaseWCS:
    """The celestial WCS of a FITS file's primary header (GalSim falls back to a pixel
    scale, with a warning, when it finds none: refused here)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wcs = galsim.FitsWCS(str(path), suppress_warning=True)
    except (OSError, KeyError, ValueError, TypeError, galsim.GalSimError) as exc:
        raise PSFError(f"cannot read a WCS from the header ({exc})", path) from None
    if not wcs.isCelestial():
        raise PSFError("the primary header has no celestial WCS (CTYPE1/2, CRVAL, CD...)",
                       path)
    return wcs


class GalsimPSF(PSFModel):
    """An analytic galsim PSF given in sky units (arcsec), seen through a CCD WCS; the
    pixel response is convolved in here."""

    def __init__(self, profile: galsim.GSObject, wcs: galsim.BaseWCS,
                 color: float | None = None):
        self.profile = profile
        self._wcs = wcs
        self.color = color

    @property
    def wcs(self) -> galsim.BaseWCS:
        return self._wcs

    def pixel_profile(self, x: float, y: float) -> galsim.GSObject:
        jac = self._wcs.local(galsim.PositionD(x, y), color=self.color)
        return galsim.Convolve(jac.profileToImage(self.profile), galsim.Pixel(1.0))


def load_psf(path: str | os.PathLike, color: float | None = None, stars: bool = True, *,
             psf_format: str = "piff", wcs_header: str | os.PathLike | None = None
             ) -> PSFModel:
    """Read a PSF file: a pixelised PSF (HDU ``PIXPSF``) or a Piff file; ``color`` (g-i)
    is the sources' colour for a colour-dependent WCS (`PSFModel.color`); ``stars=False``
    leaves a Piff PSF's stars unread (drawing does not use them; `PiffFile`).  With
    ``psf_format="psfex"``, a PSFEx model whose CCD WCS is in ``wcs_header`` (`PSFExPSF`).

    Raises `PSFError` for a missing or corrupt file and `MissingDependencyError` when the
    file pickles a pixmappy WCS and pixmappy is not installed.
    """
    if psf_format == "psfex":
        if wcs_header is None:
            raise PSFError("a PSFEx PSF needs the FITS header of its CCD's WCS", path)
        return PSFExPSF.read(path, wcs_header)
    path = Path(path)
    require_fits_file(path, PSFError, "PSF file")
    try:
        # opened once: to tell the kind, then to read Piff's
        psf_file = PiffFile(path, stars=stars)
    except (OSError, ValueError) as exc:
        raise PSFError(f"not a readable FITS file ({exc})", path) from None
    with psf_file:
        names = {name.upper() for name in psf_file.extnames}
        if PIXELIZED_PSF_EXTNAME in names:
            return PixelizedPSF.read(path)
        if PIFF_EXTNAME not in names:
            raise PSFError(f"not a PSF file: neither a Piff file (no {PIFF_EXTNAME!r} HDU) "
                           f"nor a pixelised PSF (no {PIXELIZED_PSF_EXTNAME!r} HDU)", path)
        return PiffPSF(_read_piff(psf_file, path), path, color=color)


def _read_piff(psf_file: PiffFile, path: Path):
    try:
        with warnings.catch_warnings():
            # Piff 1.7 reading DES models warns about a deprecated interpolant argument.
            warnings.simplefilter("ignore", galsim.GalSimDeprecationWarning)
            return psf_file.read_psf()
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == "pixmappy":
            raise MissingDependencyError(
                "this Piff file stores a pixmappy WCS, and pixmappy is not installed; install "
                "it (pip install git+https://github.com/gbernstein/pixmappy) or use a Piff "
                "file with a galsim-native WCS", path) from None
        raise PSFError(f"cannot read Piff PSF: missing module {exc.name!r}", path) from None
    except Exception as exc:   # Piff raises many kinds on corrupt input; all mean the same
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise PSFError(f"cannot read Piff PSF ({detail})", path) from None


