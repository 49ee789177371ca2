"""A simulated field: the static scene (stars, Sersic galaxies) seen in several exposures,
each with its own PSF, WCS, zeropoint, noise and defects, drawn with galsim, and written
in the on-disk form of the DES sample (`SimulatedField.write`).  See
`smp_model.simulation.detection` for the files and conventions.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import galsim
import numpy as np
from astropy.io import fits
from astropy.table import Table

from ..files import atomic_output
from ..inputs.manifest import DetectionManifest, ExposureEntry, des_stamp_origin
from ..inputs.stamps import flux_scale
from ..psf.models import PixelizedPSF
from ..wcs.transforms import (separation_and_position_angle, sky_from_tangent, sky_to_pixel,
                              tangent_offsets)
from .config import (CCD_MARGIN_PX, CCD_NX, CCD_NY, DES_CCDS, EXPOSURES_FILENAME, GSPARAMS,
                     MANIFEST_FILENAME, MASK_BPM, MASK_CRAY, PIXEL_SCALE_ARCSEC,
                     PSF_MIN_HALF_SIZE_PX, PSF_OVERSAMPLING, SURVEY_MJD0, SimulationConfig)
from .truth import ExposureTruth, SceneSource, SimulationTruth, TargetSource

__all__ = ["SimulatedExposure", "SimulatedField", "binary_geometry", "build_field",
           "ccd_image_relpath", "draw_defects", "draw_scene", "place_on_ccd", "psf_relpath",
           "scene_sources", "stamp_relpath", "tan_sip_header"]


@dataclass(eq=False)
class SimulatedExposure:
    """One simulated exposure: its WCS, PSF, stamp grid, noise and defects.

    ``scene_sci`` is the noiseless static scene in SCI counts (without sky offset);
    ``defects`` the SCI counts added on masked pixels (cosmic rays, bad columns).
    """

    truth: ExposureTruth
    wcs: galsim.GSFitsWCS
    wcs_header: fits.Header
    psf_profile: galsim.GSObject          # arcsec, unit flux, no pixel
    shape: tuple[int, int]
    mask: np.ndarray
    defects: np.ndarray
    scene_sci: np.ndarray = field(default=None)

    @property
    def origin(self) -> tuple[int, int]:
        return self.truth.stamp_origin

    @property
    def flux_scale(self) -> float:
        """ZP30 counts per SCI count."""
        return flux_scale(self.truth.zeropoint)

    @property
    def weight(self) -> np.ndarray:
        """WGT plane: inverse sky variance (SCI units)."""
        return np.full(self.shape, 1.0 / self.truth.sky_sigma ** 2)

    def pixelized_psf(self) -> PixelizedPSF:
        """The pixel-integrated PSF at the target's CCD position, sampled every
        1/`PSF_OVERSAMPLING` pixel (values per CCD pixel), covering the whole stamp."""
        jac = self.wcs.local(galsim.PositionD(*self.truth.target_xy))
        pixel_psf = galsim.Convolve(jac.profileToImage(self.psf_profile),
                                    galsim.Pixel(1.0), gsparams=GSPARAMS)
        half_size = max(PSF_MIN_HALF_SIZE_PX, max(self.shape) // 2 + 1)
        n = 2 * half_size * PSF_OVERSAMPLING + 1
        fine = galsim.ImageD(n, n, scale=1.0 / PSF_OVERSAMPLING)
        pixel_psf.drawImage(fine, method="no_pixel", center=fine.true_center)
        return PixelizedPSF(fine.array * PSF_OVERSAMPLING ** 2, PSF_OVERSAMPLING, self.wcs)

    def psf_fields(self, outdir: Path) -> dict:
        """The `ExposureEntry` fields naming this exposure's PSF files under ``outdir``."""
        return dict(psf=outdir / psf_relpath(self.truth.expnum, self.truth.ccdnum))

    def write_psf(self, entry: ExposureEntry, overwrite: bool) -> None:
        """Write the PSF files `psf_fields` names (atomically)."""
        with atomic_output(entry.psf, overwrite) as tmp:
            self.pixelized_psf().write(tmp, self.wcs_header, overwrite=True)

    def draw(self, profile: galsim.GSObject, x: float, y: float) -> np.ndarray:
        """SCI-count stamp of a sky ``profile`` (arcsec, ZP30 flux) centred at CCD (x, y),
        convolved with this exposure's PSF and pixel, through the WCS Jacobian at (x, y)."""
        ny, nx = self.shape
        image = galsim.ImageD(nx, ny, xmin=self.origin[0], ymin=self.origin[1])
        convolved = galsim.Convolve(profile, self.psf_profile, gsparams=GSPARAMS)
        convolved.drawImage(image, wcs=self.wcs.local(galsim.PositionD(x, y)),
                            center=galsim.PositionD(x, y), method="auto")
        return image.array / self.flux_scale

    def point_source(self, flux: float, x: float, y: float) -> np.ndarray:
        """SCI-count stamp of a point source of ``flux`` (ZP30) at CCD (x, y)."""
        return self.draw(galsim.DeltaFunction(flux=flux, gsparams=GSPARAMS), x, y)


@dataclass(eq=False)
class SimulatedField:
    """The static part of a simulation: sky position, scene, exposures.

    `realise` adds a target and noise, `write` writes a detection; the validation draws
    many realisations of one field.
    """

    config: SimulationConfig
    ra: float
    dec: float
    scene: tuple[SceneSource, ...]
    exposures: list[SimulatedExposure]
    detection_index: int

    @property
    def detection(self) -> SimulatedExposure:
        return self.exposures[self.detection_index]

    def target_sources(self, fluxes, offsets) -> tuple[TargetSource, ...]:
        """Target point sources of ``fluxes`` (ZP30) at ``offsets`` (n_t, 2) pixels from
        the manifest position in the detection exposure."""
        det = self.detection
        xt, yt = det.truth.target_xy
        out = []
        for flux, (dx, dy) in zip(fluxes, np.atleast_2d(offsets)):
            ra, dec = det.wcs.xyToradec(xt + dx, yt + dy, units="deg")
            out.append(TargetSource(flux=float(flux), x=float(xt + dx), y=float(yt + dy), dx=float(dx),
                                    dy=float(dy), ra=float(ra) % 360.0, dec=float(dec)))
        return tuple(out)

    def target_sci(self, sources) -> np.ndarray:
        """SCI-count image of the target source(s) in the detection exposure."""
        det = self.detection
        total = np.zeros(det.shape)
        for s in sources:
            total += det.point_source(s.flux, s.x, s.y)
        return total

    def realise(self, rng: np.random.Generator, sources=(), noise: bool = True,
                gain: float | None = None) -> list[np.ndarray]:
        """SCI stamps (float64) of one realisation: scene + target (detection exposure
        only) + sky offset + noise + defects.  ``gain``: electrons per SCI count for source
        Poisson noise (None: sky noise only)."""
        target = self.target_sci(sources)
        stamps = []
        for m, ex in enumerate(self.exposures):
            signal = ex.scene_sci + (target if m == self.detection_index else 0.0)
            sci = signal + ex.truth.sky_offset
            if noise:
                sci = sci + rng.normal(0.0, ex.truth.sky_sigma, ex.shape)
                if gain is not None:
                    electrons = np.clip(signal, 0.0, None) * gain
                    sci = sci + (rng.poisson(electrons) - electrons) / gain
            stamps.append(sci + ex.defects)
        return stamps

    # -- writing ----------------------------------------------------------------------

    def manifest(self, outdir: Path) -> DetectionManifest:
        name = self.config.detection_name
        entries = []
        for ex in self.exposures:
            t = ex.truth
            entries.append(ExposureEntry(
                expnum=t.expnum, ccdnum=t.ccdnum, band=self.config.band,
                zeropoint=t.zeropoint, stamp=outdir / stamp_relpath(name, t.expnum),
                **ex.psf_fields(outdir), stamp_origin=t.stamp_origin,
                target_xy=t.target_xy, gain=self.config.shot_noise_gain))
        det = self.detection.truth
        return DetectionManifest(name=name, ra=self.ra, dec=self.dec, band=self.config.band,
                                 detection_expnum=det.expnum, detection_ccdnum=det.ccdnum,
                                 exposures=tuple(entries))

    def write(self, outdir: str | os.PathLike, stamps: list[np.ndarray],
              overwrite: bool = False) -> Path:
        """Write stamps (SCI counts), PSFs, zeropoints and the manifest; returns the
        manifest path.  Every file is written atomically."""
        outdir = Path(outdir).absolute()
        manifest = self.manifest(outdir)
        for ex, entry, sci in zip(self.exposures, manifest.exposures, stamps):
            _write_stamp(entry.stamp, sci, ex.mask, ex.weight, overwrite)
            ex.write_psf(entry, overwrite)
        _write_zeropoints(outdir / "zeropoints.ecsv", manifest, overwrite)
        if self.config.ccd_images:
            self._write_survey(outdir, stamps, overwrite)
        return manifest.write(outdir / MANIFEST_FILENAME, overwrite=overwrite)

    def _write_survey(self, outdir: Path, stamps: list[np.ndarray], overwrite: bool) -> None:
        """Full CCD images holding the stamps, and the exposure table with decoys."""
        from ..inputs.cutout import write_ccd_image
        from ..wcs.decam import focal_plane, pointing_for
        fp = focal_plane()
        band = self.config.band
        rows = []
        for k, (ex, sci) in enumerate(zip(self.exposures, stamps)):
            t = ex.truth
            planes = {"SCI": np.zeros((fp.ny, fp.nx), np.float32),
                      "MSK": np.zeros((fp.ny, fp.nx), np.int16),
                      "WGT": np.zeros((fp.ny, fp.nx), np.float32)}
            region = (slice(t.stamp_origin[1] - 1, t.stamp_origin[1] - 1 + ex.shape[0]),
                      slice(t.stamp_origin[0] - 1, t.stamp_origin[0] - 1 + ex.shape[1]))
            for name, values in (("SCI", sci), ("MSK", ex.mask), ("WGT", ex.weight)):
                planes[name][region] = values
            write_ccd_image(outdir / ccd_image_relpath(t.expnum, band, t.ccdnum), planes,
                            ex.wcs_header, overwrite)
            rows.append((t.expnum, band, *t.pointing, SURVEY_MJD0 + 10.0 * k))
        # Decoys (expnums above the real ones): the target in the gap above CCD 32, just
        # beyond the focal plane's outer edge (CCD 1, x = -2.5), and on CCD 20 in band g.
        first = max(ex.truth.expnum for ex in self.exposures) + 1
        decoys = [(band, 32, 1024.0, fp.ny + 80.0), (band, 1, -2.5, 2048.0),
                  ("g" if band != "g" else "r", 20, 1000.0, 2000.0)]
        for n, (b, ccd, x, y) in enumerate(decoys):
            rows.append((first + n, b, *pointing_for(self.ra, self.dec, ccd, x, y),
                         SURVEY_MJD0 + 5.0 + 10.0 * n))
        table = Table(rows=rows, names=("expnum", "band", "ra", "dec", "mjd"))
        table["ra"].unit = table["dec"].unit = "deg"
        table["mjd"].unit = "d"
        table.meta["comments"] = [
            "Simulated survey exposure list: pointings (ICRS degrees, DECam layout) and MJD; "
            f"expnums >= {first} are decoys that do not contain {self.config.detection_name}"
            " in its band."]
        with atomic_output(outdir / EXPOSURES_FILENAME, overwrite) as tmp:
            table.write(tmp, format="ascii.ecsv", overwrite=True)

    def truth(self, manifest_path: Path, sources) -> SimulationTruth:
        det = self.detection.truth
        geometry = binary_geometry(sources) if len(sources) == 2 else (None, None, None)
        return SimulationTruth(
            name=self.config.detection_name, seed=self.config.seed,
            manifest_path=manifest_path, ra=self.ra, dec=self.dec, band=self.config.band,
            detection_expnum=det.expnum, detection_ccdnum=det.ccdnum, sources=tuple(sources),
            exposures=tuple(ex.truth for ex in self.exposures), scene=self.scene,
            config=self.config, separation_px=geometry[0], separation_arcsec=geometry[1],
            position_angle_deg=geometry[2])


def ccd_image_relpath(expnum: int, band: str, ccdnum: int) -> Path:
    """Where ``ccd_images`` puts a CCD image, named as DES single-epoch files are."""
    return Path("images") / f"D{expnum:08d}_{band}_c{ccdnum:02d}_sim_immasked.fits.fz"


def stamp_relpath(name: str, expnum: int) -> Path:
    return Path("stamps") / f"{name}_{expnum}.fits"


def psf_relpath(expnum: int, ccdnum: int) -> Path:
    return Path("psfs") / str(expnum) / f"{expnum}_{ccdnum}_psf.fits"


def _write_stamp(path: Path, sci: np.ndarray, mask: np.ndarray, weight: np.ndarray,
                 overwrite: bool) -> None:
    hdul = fits.HDUList([fits.PrimaryHDU(),
                         fits.ImageHDU(sci.astype(np.float32), name="SCI"),
                         fits.ImageHDU(mask.astype(np.int16), name="MSK"),
                         fits.ImageHDU(weight.astype(np.float32), name="WGT")])
    with atomic_output(path, overwrite) as tmp:
        hdul.writeto(tmp, overwrite=True)


def _write_zeropoints(path: Path, manifest: DetectionManifest, overwrite: bool) -> None:
    table = Table(rows=[(e.expnum, e.ccdnum, e.band, e.zeropoint, manifest.name, True)
                        for e in manifest.exposures],
                  names=("expnum", "ccdnum", "band", "zeropoint", "object", "has_stamp"))
    table["zeropoint"].unit = "mag"
    table.meta["comments"] = ["Simulated zeropoints: mag = zeropoint - 2.5 log10(SCI); "
                              "flux at ZP=30 is SCI * 10**(-0.4*(zeropoint-30))."]
    with atomic_output(path, overwrite) as tmp:
        table.write(tmp, format="ascii.ecsv", overwrite=True)


def binary_geometry(sources) -> tuple[float, float, float]:
    """(separation px, separation arcsec, position angle deg east of north) of the
    secondary from the primary (CCD pixels of the detection exposure; sky from ra/dec)."""
    p, s = sources
    return (float(math.hypot(s.x - p.x, s.y - p.y)),
            *separation_and_position_angle(p.ra, p.dec, s.ra, s.dec))


def build_field(config: SimulationConfig) -> SimulatedField:
    """Draw the static part of a simulation (deterministic in ``config.seed``)."""
    layout = config.rng(0)
    ra = float(layout.uniform(0.0, 360.0))
    dec = float(layout.uniform(-10.0, 10.0))   # near the ecliptic, like DES TNO fields
    scene = scene_sources(config, layout, ra, dec)
    rng = config.rng(1)
    expnums = np.sort(rng.choice(np.arange(200000, 900000), config.n_exposures,
                                 replace=False))
    detection_index = int(rng.integers(config.n_exposures))
    exposures = [_exposure(config, rng, int(e), ra, dec, m == detection_index)
                 for m, e in enumerate(expnums)]
    for ex in exposures:
        ex.scene_sci = draw_scene(ex, scene)
    return SimulatedField(config=config, ra=ra, dec=dec, scene=scene, exposures=exposures,
                          detection_index=detection_index)


def scene_sources(config: SimulationConfig, rng: np.random.Generator, ra: float,
                   dec: float) -> tuple[SceneSource, ...]:
    """Static sources around (ra, dec): the blending galaxy (optional) and field stars."""
    sources = []

    def place(distance_px: float, **kw) -> SceneSource:
        angle = rng.uniform(0.0, 2 * math.pi)
        u = distance_px * PIXEL_SCALE_ARCSEC * math.cos(angle)
        v = distance_px * PIXEL_SCALE_ARCSEC * math.sin(angle)
        sra, sdec = sky_from_tangent(u, v, ra, dec)
        return SceneSource(u=u, v=v, ra=float(sra), dec=float(sdec), **kw)

    # Draw every random number whether or not it is used, so that switching the galaxy
    # off leaves the stars (and everything else) where they were.
    gal_distance = rng.uniform(4.0, 6.0)
    gal = dict(kind="galaxy", flux=float(np.exp(rng.uniform(np.log(4000), np.log(12000)))),
               sersic_n=float(rng.choice([1.0, 1.5, 2.0])),
               half_light_radius=float(rng.uniform(0.5, 0.9)),
               g1=float(rng.uniform(-0.25, 0.25)), g2=float(rng.uniform(-0.25, 0.25)))
    galaxy = place(config.galaxy_distance_px if config.galaxy_distance_px is not None
                   else gal_distance, **gal)
    if config.galaxy:
        sources.append(galaxy)
    for _ in range(config.n_stars):
        flux = float(np.exp(rng.uniform(np.log(3000), np.log(30000))))
        sources.append(place(rng.uniform(7.0, 12.0), kind="star", flux=flux))
    return tuple(sources)


def _exposure(config: SimulationConfig, rng: np.random.Generator, expnum: int, ra: float,
              dec: float, is_detection: bool) -> SimulatedExposure:
    """One exposure: CCD, zeropoint, seeing/PSF, WCS placing (ra, dec) at a random CCD
    position, noise level and defects."""
    ccdnum = int(rng.choice(DES_CCDS))
    zeropoint = float(rng.uniform(*config.zeropoint_range))
    fwhm = float(rng.uniform(*config.fwhm_range_arcsec))
    psf_kind = str(rng.choice(["kolmogorov", "moffat"]))
    g1, g2 = (float(g) for g in rng.normal(0.0, 0.03, 2).clip(-0.08, 0.08))
    rotation = float(rng.uniform(0.0, 360.0))
    if config.aligned_axes:
        rotation = 90.0 * round(rotation / 90.0) % 360.0
    target_xy = (float(rng.uniform(CCD_MARGIN_PX, CCD_NX + 1 - CCD_MARGIN_PX)),
                 float(rng.uniform(CCD_MARGIN_PX, CCD_NY + 1 - CCD_MARGIN_PX)))
    header = tan_sip_header(rng, rotation, target_xy, ra, dec)
    pointing = None
    if config.ccd_images:   # after the SIP draws, so that the other draws stay the same
        from ..wcs import decam
        pointing = decam.pointing_for(ra, dec, ccdnum, *target_xy)
        header = decam.ccd_tan_header(*pointing, ccdnum)
        rotation = math.nan
    sky_sigma = float(rng.uniform(*config.sky_sigma_range))
    shape = (config.stamp_size, config.stamp_size)
    mask, defects = draw_defects(rng, shape, sky_sigma)
    truth = ExposureTruth(
        expnum=expnum, ccdnum=ccdnum, zeropoint=zeropoint, fwhm_arcsec=fwhm,
        psf_kind=psf_kind, psf_g1=g1, psf_g2=g2, rotation_deg=rotation, sky_sigma=sky_sigma,
        sky_offset=float(rng.uniform(-0.1, 0.1) * sky_sigma), target_xy=target_xy,
        stamp_origin=des_stamp_origin(*target_xy, shape), n_masked=int((mask != 0).sum()),
        is_detection=is_detection, pointing=pointing)
    return SimulatedExposure(truth=truth, wcs=galsim.GSFitsWCS(header=header),
                             wcs_header=header, psf_profile=_psf(psf_kind, fwhm, g1, g2),
                             shape=shape, mask=mask, defects=defects)


def _psf(kind: str, fwhm: float, g1: float, g2: float) -> galsim.GSObject:
    """Atmospheric PSF (arcsec, unit flux), slightly elliptical."""
    if kind == "kolmogorov":
        profile = galsim.Kolmogorov(fwhm=fwhm, gsparams=GSPARAMS)
    else:
        profile = galsim.Moffat(beta=3.0, fwhm=fwhm, gsparams=GSPARAMS)
    return profile.shear(g1=g1, g2=g2)


def draw_scene(ex: SimulatedExposure, scene) -> np.ndarray:
    """Noiseless static scene of one exposure (SCI counts)."""
    total = np.zeros(ex.shape)
    if not scene:
        return total
    ra = np.array([s.ra for s in scene])
    dec = np.array([s.dec for s in scene])
    xs, ys = sky_to_pixel(ex.wcs, ra, dec)
    for source, x, y in zip(scene, np.atleast_1d(xs), np.atleast_1d(ys)):
        total += ex.draw(source.profile(), float(x), float(y))
    return total


def draw_defects(rng: np.random.Generator, shape: tuple[int, int], sky_sigma: float
             ) -> tuple[np.ndarray, np.ndarray]:
    """A few masked pixels and the junk SCI counts they hold: cosmic rays (1-3 px tracks,
    bit `MASK_CRAY`) and, sometimes, a bad-column segment (bit `MASK_BPM`)."""
    ny, nx = shape
    mask = np.zeros(shape, np.int16)
    junk = np.zeros(shape)
    for _ in range(int(rng.poisson(1.5))):
        j, i = int(rng.integers(ny)), int(rng.integers(nx))
        length, horizontal = int(rng.integers(1, 4)), bool(rng.integers(2))
        rows = slice(j, j + 1) if horizontal else slice(j, min(j + length, ny))
        cols = slice(i, min(i + length, nx)) if horizontal else slice(i, i + 1)
        mask[rows, cols] |= MASK_CRAY
        junk[rows, cols] += rng.uniform(20.0, 200.0) * sky_sigma
    bad_column = rng.uniform() < 0.3
    i, j0, length = int(rng.integers(nx)), int(rng.integers(ny)), int(rng.integers(3, 9))
    if bad_column:
        mask[j0:j0 + length, i] |= MASK_BPM
        junk[j0:j0 + length, i] += rng.uniform(-5.0, 50.0) * sky_sigma
    return mask, junk


def tan_sip_header(rng: np.random.Generator, rotation_deg: float,
                   target_xy: tuple[float, float], ra: float, dec: float) -> fits.Header:
    """A DES-like TAN-SIP FITS WCS for a 2048 x 4096 CCD: 0.263"/px, CCD axes rotated by
    ``rotation_deg`` on the sky (east left when north is up, as on the sky), a 2nd/3rd
    order SIP distortion of up to ~1 px at the CCD corners, and CRVAL chosen so that sky
    (ra, dec) (degrees) falls on the 1-indexed CCD position ``target_xy``."""
    theta = math.radians(rotation_deg)
    scale = PIXEL_SCALE_ARCSEC / 3600.0
    cd = scale * np.array([[-math.cos(theta), math.sin(theta)],
                           [math.sin(theta), math.cos(theta)]])
    header = fits.Header()
    header["CTYPE1"], header["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
    header["CRPIX1"], header["CRPIX2"] = (CCD_NX + 1) / 2, (CCD_NY + 1) / 2
    header["CUNIT1"], header["CUNIT2"] = "deg", "deg"
    for (i, j), value in np.ndenumerate(cd):
        header[f"CD{i + 1}_{j + 1}"] = float(value)
    header["A_ORDER"] = header["B_ORDER"] = 3
    for p in range(4):
        for q in range(4 - p):
            if p + q >= 2:
                sigma = 1e-7 if p + q == 2 else 2e-11
                header[f"A_{p}_{q}"] = float(rng.normal(0.0, sigma))
                header[f"B_{p}_{q}"] = float(rng.normal(0.0, sigma))
    header["CRVAL1"], header["CRVAL2"] = ra, dec
    return place_on_ccd(header, target_xy, ra, dec)


def place_on_ccd(header: fits.Header, target_xy: tuple[float, float], ra: float,
                  dec: float) -> fits.Header:
    """Move CRVAL until sky (ra, dec) maps to CCD ``target_xy`` (fixed-point iteration:
    shift CRVAL by the residual tangent offset; converges to 1e-8 arcsec, 4e-8 px, in a few
    steps; double precision in degrees cannot do much better)."""
    pos = galsim.PositionD(*target_xy)
    for _ in range(30):
        wcs = galsim.GSFitsWCS(header=header)
        got_ra, got_dec = wcs.xyToradec(pos.x, pos.y, units="deg")
        u, v = tangent_offsets(ra, dec, float(got_ra), float(got_dec))
        if math.hypot(u, v) < 1e-8:
            return header
        new_ra, new_dec = sky_from_tangent(u, v, header["CRVAL1"], header["CRVAL2"])
        header["CRVAL1"], header["CRVAL2"] = float(new_ra), float(new_dec)
    raise RuntimeError("could not place the target on the CCD (WCS iteration diverged)")
