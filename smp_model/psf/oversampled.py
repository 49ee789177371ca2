"""Fast rendering of shifted, pixel-integrated PSF stamps.

`OversampledPSF` samples a model's pixel-integrated profile once per exposure on a grid
``oversampling`` times finer than the pixels and evaluates it at any shift with a cubic
spline: 400 grid stamps cost one spline evaluation instead of 400 galsim draws.  With the
default 6x oversampling it reproduces exact draws to about 1e-4 of the peak on the DES
sample (tested to 1e-3).  ``band-limited`` rendering (`band_limited_samples`) removes the
model's power at and above the pixel's Nyquist frequency, so that neither the pixel sum nor
the sampled shape depends on the sub-pixel position.

Coordinates: CCD positions are 1-indexed (galsim/FITS); ``origin = (x0, y0)`` is the CCD
pixel of array element ``[0, 0]`` of a stamp, so element ``[j, i]`` is CCD ``(x0+i, y0+j)``.
"""
from __future__ import annotations

import galsim
import numpy as np
from scipy import ndimage

from ..conventions import PSF_NORMALIZATIONS
from ..settings import DEFAULT_OVERSAMPLING

__all__ = ["BAND_LIMIT_CYCLES_PER_PIXEL", "BAND_LIMIT_TAPER_START", "OversampledPSF",
           "band_limited_samples"]

_SPLINE_ORDER = 3


_CHUNK_POINTS = 16_000      # stamp pixels per chunk of `OversampledPSF.render` (~2 ms)

# The cubic B-spline's half-width in fine pixels: beyond it from the sampled box every
# tap of the (zero-padded) coefficients is zero, so is the spline.
_SPLINE_REACH = (_SPLINE_ORDER + 1) / 2


_SUPPORT_THRESHOLD = 1e-7   # relative to the peak: beyond it the profile counts as zero


# Highest spatial frequency (cycles per CCD pixel) that ``"band-limited"`` keeps: the
# pixel lattice's Nyquist frequency, below which a sampled profile is the same shape at
# every sub-pixel position.
BAND_LIMIT_CYCLES_PER_PIXEL = 0.5


# The filter falls from 1 to 0 between this fraction of the cutoff and the cutoff: a sharp
# edge would ring across the stamp; starting at 0.9 instead moved the sample's fluxes by
# < 0.6 mmag and their chi2 by < 2.
BAND_LIMIT_TAPER_START = 0.75


class OversampledPSF:
    """The pixel-integrated PSF sampled on a fine grid and interpolated with a cubic
    B-spline, for fast evaluation at many shifts.

    Parameters
    ----------
    profile : galsim.GSObject
        Pixel-integrated PSF in CCD pixel units (`PSFModel.pixel_profile`).
    max_offset : float
        Largest ``|pixel - source centre|`` (pixels, either axis) that will be asked for; the
        sampled region is this or the profile's support, whichever is smaller.
    oversampling : int
        Samples per CCD pixel (`DEFAULT_OVERSAMPLING` keeps errors ~1e-4 of the peak for
        DES PSFs; the error falls as the 4th power of it).
    normalization : str
        ``"model"``: the profile's values as they are.  ``"unit-sum"``: every stamp is
        divided by its source's `phase_factors`, so that its sum over all CCD pixels is the
        same at every sub-pixel position (the profile's integral, 1 to 5e-6 for Piff's DES
        models), as for a true pixel-integrated PSF.  ``"psf-weighted"``: the stamps are
        scaled so that their sum of squares is the same at every sub-pixel position, which
        makes a sky-limited PSF-fit flux (sum of P * data / sum of P**2) independent of the
        position to first order in the model's deviation from a true pixel-integrated PSF.
        (A true pixel-integrated PSF's sum of squares is itself constant only when it is
        well sampled: the stamps of a Gaussian of sigma 0.9 px are rescaled by up to
        2.6e-4, of 1.1 px (FWHM 0.68 arcsec on DECam) by 5e-6, of 1.2 px by 5e-7.)
        ``"band-limited"``: the profile's spatial frequencies at and above
        `BAND_LIMIT_CYCLES_PER_PIXEL` (radially) are removed before it is sampled, so its
        samples at pixel centres have the same pixel sum and the same shape, shifted, at
        every sub-pixel position (Poisson summation: every alias of the pixel lattice
        falls where the spectrum is zero).  A physical PSF at DES seeing has almost no
        power there (a Kolmogorov of FWHM 0.9 arcsec: 2e-4 of its Fourier amplitude at 0.5
        cycles per 0.263 arcsec pixel), a Piff `PixelGrid` does: its Lanczos
        interpolation between samples 0.30 arcsec apart leaks the grid's aliases to the
        pixel frequencies, which is what makes its pixel sum vary.  Not for undersampled
        PSFs (FWHM below ~2.5 pixels), whose real power it would remove.
        Piff's DES models sum to 1 +- 0.55 % depending on the sub-pixel position, which
        moves fluxes by several mmag (docs/validation/psf_phase.rst).
    """

    def __init__(self, profile: galsim.GSObject, max_offset: float,
                 oversampling: int = DEFAULT_OVERSAMPLING, normalization: str = "model"):
        if normalization not in PSF_NORMALIZATIONS:
            raise ValueError(f"unknown PSF normalization {normalization!r}; choose one of "
                             f"{', '.join(PSF_NORMALIZATIONS)}")
        self.normalization = normalization
        self.oversampling = int(oversampling)
        radius = _support_radius(profile, max_offset)
        n = 2 * radius * self.oversampling + 1
        if normalization == "band-limited":
            samples = band_limited_samples(profile, radius, self.oversampling)
        else:
            fine = galsim.ImageD(n, n, scale=1.0 / self.oversampling)
            profile.drawImage(fine, method="no_pixel", center=fine.true_center)
            # no_pixel samples surface brightness times the fine-pixel area; scale back to
            # the value per CCD pixel.
            samples = fine.array * self.oversampling ** 2
        self.radius = radius
        # Coefficients of the spline that is zero outside the sampled box, padded with
        # zeros so that evaluating with mode='nearest' (30 % faster than 'grid-constant')
        # gives the same values everywhere: taps beyond the padding repeat its zeros.
        coefficients = ndimage.spline_filter(samples, order=_SPLINE_ORDER,
                                             mode="grid-constant")
        self._coefficients = np.pad(coefficients, _SPLINE_ORDER)
        self._centre = (n - 1) / 2.0 + _SPLINE_ORDER
        self._folded = _fold(self._coefficients, self.oversampling)
        # The phase average of the lattice sum: the spline's integral (its B-splines each
        # integrate to one fine pixel).
        self.mean_pixel_sum = float(self._folded.sum()) / self.oversampling ** 2
        # Sums of squares over the pixel lattice at the ov x ov phases of the fine grid
        # (exact there: the spline passes through the samples), interpolated between them
        # by a periodic cubic spline (the sums vary smoothly: ~1e-2 of their modulation).
        squares = _fold(samples ** 2, self.oversampling)
        self.mean_square_sum = float(squares.mean())
        self._squares = ndimage.spline_filter(squares, order=_SPLINE_ORDER, mode="grid-wrap")

    def pixel_sums(self, centers_x: np.ndarray, centers_y: np.ndarray) -> np.ndarray:
        """Sum over every CCD pixel (the infinite pixel lattice) of the rendered unit-flux
        source at each CCD centre (K,): 1 for an ideal pixel-integrated PSF, and a periodic
        function of the sub-pixel position otherwise.

        Exact for the spline: the spline's values at the lattice points ``n - c`` are those
        of a spline with period 1 pixel whose coefficients are the spline coefficients
        summed modulo `oversampling` (both axes), evaluated at the phase of ``c``.  A source
        drawn with a distortion ``A`` (`render`) is not covered exactly: by Poisson
        summation its sum's phase terms move from frequencies ``k`` to ``A^-T k``, which
        changes them by ~ ``10 |A - I|`` of themselves for DES-sized PSFs (measured: a
        +-1 % modulation leaves +-1.5e-4 at ``|A - I| ~ 1e-3``, the size of the legacy
        convention's distortions on the DES sample)."""
        fx, fy = self._phase_coordinates(centers_x, centers_y, self._centre)
        return ndimage.map_coordinates(self._folded, [fy, fx], order=_SPLINE_ORDER,
                                       mode="grid-wrap", prefilter=False)

    def square_sums(self, centers_x: np.ndarray, centers_y: np.ndarray) -> np.ndarray:
        """Sum over every CCD pixel of the squared unit-flux source at each CCD centre (K,)
        (exact at phases that are multiples of 1/`oversampling`, interpolated between)."""
        fx, fy = self._phase_coordinates(centers_x, centers_y, self._centre - _SPLINE_ORDER)
        return ndimage.map_coordinates(self._squares, [fy, fx], order=_SPLINE_ORDER,
                                       mode="grid-wrap", prefilter=False)

    def _phase_coordinates(self, centers_x, centers_y, centre: float):
        ov = self.oversampling
        cx = np.atleast_1d(np.asarray(centers_x, float))
        cy = np.atleast_1d(np.asarray(centers_y, float))
        return np.mod(centre - cx * ov, ov), np.mod(centre - cy * ov, ov)

    def phase_factors(self, centers_x: np.ndarray, centers_y: np.ndarray) -> np.ndarray:
        """Factors (K,) by which `normalization` divides the stamps of sources at these CCD
        centres: `pixel_sums` relative to their phase average (``"unit-sum"``), the square
        root of `square_sums` relative to theirs (``"psf-weighted"``), or ones."""
        if self.normalization == "unit-sum":
            return self.pixel_sums(centers_x, centers_y) / self.mean_pixel_sum
        if self.normalization == "psf-weighted":
            return np.sqrt(self.square_sums(centers_x, centers_y) / self.mean_square_sum)
        return np.ones(np.broadcast(np.atleast_1d(centers_x), np.atleast_1d(centers_y)).size)

    def render(self, centers_x: np.ndarray, centers_y: np.ndarray, origin: tuple[int, int],
               shape: tuple[int, int], distortions: np.ndarray | None = None,
               out: np.ndarray | None = None) -> np.ndarray:
        """Stamps (K, ny, nx) of unit-flux sources at CCD centres (K,) on a stamp grid.

        ``distortions`` (K, 2, 2), optional: for each source the matrix
        ``A = J_ref^-1 J_k`` between the WCS Jacobian at its centre and the one the profile
        was made with; the source is then drawn as ``P(A d) det A``, which is what drawing
        the same sky profile through the Jacobian at its own centre gives (as Piff's
        ``draw`` does).

        ``out`` (K, ny, nx), optional: the array to draw into (any strides, e.g. a view of
        a design matrix's columns), returned; every element is written.
        """
        centers_x = np.atleast_1d(np.asarray(centers_x, float))
        centers_y = np.atleast_1d(np.asarray(centers_y, float))
        ny, nx = shape
        n_src = centers_x.size
        if out is None:
            out = np.empty((n_src, ny, nx))
        det = None if distortions is None else np.linalg.det(distortions)
        phase = (self.phase_factors(centers_x, centers_y)
                 if self.normalization in ("unit-sum", "psf-weighted") else None)
        # Sources in chunks of about _CHUNK_POINTS pixels, through buffers allocated once:
        # fresh temporaries the size of a grid's stamps cost more in page faults in a new
        # process than the arithmetic on them (a whole grid in one chunk was ~25 % slower
        # in a cold fit).  map_coordinates releases the GIL (scipy 1.15 and 1.17 alike),
        # so exposures render on two threads (`SceneModel`).
        per_chunk = max(1, _CHUNK_POINTS // max(ny * nx, 1))
        work = _RenderBuffers(min(per_chunk, n_src), ny, nx)
        for k0 in range(0, n_src, per_chunk):
            k1 = min(k0 + per_chunk, n_src)
            self._render_chunk(centers_x[k0:k1], centers_y[k0:k1], origin, shape,
                               None if distortions is None else distortions[k0:k1],
                               None if det is None else det[k0:k1],
                               None if phase is None else phase[k0:k1], work, out[k0:k1])
        return out

    def _render_chunk(self, centers_x, centers_y, origin, shape, distortions, det, phase,
                      work: "_RenderBuffers", out: np.ndarray) -> None:
        """`render` of a few sources into ``out`` through the buffers ``work``; ``det``
        and ``phase``: their distortions' determinants and phase factors (or None)."""
        ny, nx = shape
        k = centers_x.size
        ov, c = self.oversampling, self._centre
        dx = (origin[0] + np.arange(nx))[None, None, :] - centers_x[:, None, None]  # (k,1,nx)
        dy = (origin[1] + np.arange(ny))[None, :, None] - centers_y[:, None, None]  # (k,ny,1)
        px, py = work.px[:k], work.py[:k]
        if distortions is not None:
            # each product stays (k, 1, nx) or (k, ny, 1); only the sums are full size
            a = distortions[:, :, :, None, None]
            np.add(a[:, 0, 0] * dx, a[:, 0, 1] * dy, out=px)
            np.add(a[:, 1, 0] * dx, a[:, 1, 1] * dy, out=py)
        else:
            px[...] = dx
            py[...] = dy
        # Only pixels within reach of the sampled box: the spline is exactly zero from
        # _SPLINE_REACH fine pixels beyond it on (its taps there are all padding zeros),
        # and on a 30x30 stamp that skips ~40 % of a 20x20 grid's pixels.
        reach = self.radius + _SPLINE_REACH / ov
        inside = work.inside[:k]
        np.abs(px, out=work.scratch[:k])
        np.less(work.scratch[:k], reach, out=inside)
        np.abs(py, out=work.scratch[:k])
        inside &= work.scratch[:k] < reach
        flat = inside.ravel()
        n = int(np.count_nonzero(flat))
        coords = work.coords[:2 * n].reshape(2, n)
        np.compress(flat, py.ravel(), out=coords[0])
        np.compress(flat, px.ravel(), out=coords[1])
        coords *= ov
        coords += c
        stamps = work.scratch[:k]
        stamps.fill(0.0)
        if n:
            values = work.values[:n]
            ndimage.map_coordinates(self._coefficients, coords, output=values,
                                    order=_SPLINE_ORDER, mode="nearest", prefilter=False)
            stamps[inside] = values
        if det is not None:
            stamps *= det[:, None, None]
        if phase is not None:
            stamps /= phase[:, None, None]
        out[...] = stamps


class _RenderBuffers:
    """Work arrays of `OversampledPSF.render` for chunks of up to ``k`` sources on a
    (ny, nx) stamp, allocated once per call."""

    def __init__(self, k: int, ny: int, nx: int):
        self.px = np.empty((k, ny, nx))        # source-to-pixel offsets (px), distorted
        self.py = np.empty((k, ny, nx))
        self.scratch = np.empty((k, ny, nx))   # |offsets|, then the chunk's stamps
        self.inside = np.empty((k, ny, nx), bool)
        self.coords = np.empty(2 * k * ny * nx)
        self.values = np.empty(k * ny * nx)


def band_limited_samples(profile: galsim.GSObject, radius: int, oversampling: int,
                         cutoff: float = BAND_LIMIT_CYCLES_PER_PIXEL) -> np.ndarray:
    """``profile`` (CCD pixel units, centred on the origin) without its spatial frequencies
    of ``cutoff`` cycles per pixel and above, sampled ``oversampling`` times per pixel on
    the (2 radius ov + 1)^2 grid centred on the origin; values per CCD pixel, as
    `OversampledPSF` samples.

    The profile's exact Fourier transform (galsim's ``drawKImage``, analytic for Piff's
    interpolated images) is multiplied by a filter that is 1 below
    `BAND_LIMIT_TAPER_START` x ``cutoff``, falls as a raised cosine and is 0 from
    ``cutoff`` on (radially: the filter has no preferred axes), and transformed back on a
    period of at least twice the box, so that neither the box's edge nor the periodic
    copies leak power back to the cut frequencies.  The smooth roll-off keeps the filtered
    profile's ringing within a few pixels; it changes little that a DES PSF has (the
    pixel-integrated Kolmogorov of FWHM 0.9 arcsec: 4e-3 of its Fourier amplitude at 0.375
    cycles per pixel, 2e-4 at 0.5).  Keeps the flux (the zero frequency) exactly.
    """
    period = 2 * (2 * radius + 8)                        # pixels; even
    half = int(np.ceil(cutoff * period))                 # highest frequency bin kept
    dk = 2.0 * np.pi / period                            # radians per pixel
    kimage = profile.drawKImage(nx=2 * half + 1, ny=2 * half + 1, scale=dk)
    k = np.arange(-half, half + 1) / period              # cycles per pixel
    rho = np.hypot(k[None, :], k[:, None]) / cutoff
    start = BAND_LIMIT_TAPER_START
    taper = np.where(rho <= start, 1.0, np.where(
        rho >= 1.0, 0.0, 0.5 + 0.5 * np.cos(np.pi * (rho - start) / (1.0 - start))))
    # The inverse transform evaluated on the box only (two small matrix products, cheaper
    # than an FFT of the whole oversampled period): f(x) = P^-2 sum_k F_k e^{2 pi i k x/P}
    # with galsim's F_k, the integral of f(x) e^{-ikx}.
    x = np.arange(-radius * oversampling, radius * oversampling + 1) / oversampling
    phases = np.exp(2j * np.pi * np.outer(x, np.arange(-half, half + 1)) / period)
    return (phases @ (kimage.array * taper) @ phases.T).real / period ** 2


def _fold(coefficients: np.ndarray, period: int) -> np.ndarray:
    """Spline coefficients (n, n) summed over indices congruent modulo ``period`` on each
    axis: (period, period), the coefficients of the periodic spline that is the sum of the
    shifted copies ``spline(t + k period)`` over all integers k."""
    n = coefficients.shape[0]
    padded = np.pad(coefficients, (0, (-n) % period))
    m = padded.shape[0] // period
    return padded.reshape(m, period, m, period).sum(axis=(0, 2))


def _support_radius(profile: galsim.GSObject, max_offset: float) -> int:
    """Half-size (whole pixels) of the box outside which the profile is negligible,
    at most ``ceil(max_offset) + 1``."""
    limit = int(np.ceil(max_offset)) + 1
    n = 2 * limit + 1
    coarse = galsim.ImageD(n, n, scale=1.0)
    profile.drawImage(coarse, method="no_pixel", center=coarse.true_center)
    a = np.abs(coarse.array)
    rows, cols = np.nonzero(a > _SUPPORT_THRESHOLD * a.max())
    extent = max(np.abs(rows - limit).max(), np.abs(cols - limit).max())
    return int(min(limit, extent + 2))
