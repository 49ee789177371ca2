"""PSF phase study: SMP fluxes of point sources drawn from a *known* PSF and fitted with a
Piff model of it, against the source's sub-pixel position.

A pixel-integrated PSF sampled at pixel centres sums to its flux at every sub-pixel
position; Piff's DES `PixelGrid` models (0.30 arcsec samples, Lanczos(3), coarser than the
0.263 arcsec pixels) do not: their pixel sum varies by up to +-0.55 % with the position.
Injection tests that draw their sources with the same Piff model cannot see what that does
to fluxes, so this experiment uses a truth that is not the model:

1. a simulated field (`smp_model.simulation.field.build_field`: DES-like WCS with the CCD axes
   along the sky's as on DECam, noise, Kolmogorov/Moffat PSFs of FWHM 0.9-1.3 arcsec
   convolved with the pixel), with a blending galaxy and two stars 2-3 arcsec from the
   target, or with the target alone (``neighbours=False``);
2. per exposure, a Piff model fitted the way DES fitted theirs (`PiffSetup`: the model, its
   interpolation over the CCD, outlier rejection, S/N cap and star stamp size read from a
   DES Piff file of the sample) to stars drawn exactly (galsim) from that exposure's true
   PSF at random CCD positions, with sky noise (`fit_piff`); and, to separate the model
   form from the fit, the same `PixelGrid` form holding the true PSF's own samples
   (`SampledPixelGridPSF`);
3. point sources drawn from the true PSF at sub-pixel phases spanning a pixel in the
   detection exposure, fitted by SMP with each model, once per ``psf_normalization``; the
   true PSF itself (the simulator's pixelised PSF) is fitted too, as a control of the
   experiment's own floor.

Fluxes are linear in the data, so the bias at each phase is measured exactly on noiseless
images.  Beside the phase, two things move them: the flux of the true PSF outside the
model's footprint (a Piff `PixelGrid` is normalised to unit flux on its ``size`` x
``scale`` box, so SMP with it measures the flux inside that box: a constant offset,
`PhaseStudy.footprint_mmag`), and, with neighbours, the residual of their wings that the
model lacks, which changes across the pixel the target moves over (absent with the true
PSF and without neighbours).  A re-fit of every phase one whole pixel further tells that
apart from a phase effect, which repeats there.  The pulls come from noisy realisations.  Phases are
``x - round(x)`` of the source's 1-indexed CCD position in the detection exposure (pixel
centres at integers), in [-0.5, 0.5).
Magnitude offsets are ``m_fit - m_true = -2.5 log10(flux_fit / flux_true)``, in mmag
(positive: measured too faint).

Run it with ``python benchmarks/psf_phase.py`` (docs/validation/psf_phase.rst).
"""
from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import galsim
import numpy as np

from ..conventions import PSF_NORMALIZATIONS
from ..inputs.manifest import DetectionManifest
from ..psf.models import PiffPSF, PSFModel
from ..psf.oversampled import OversampledPSF
from ..scene.exposures import load_exposures
from ..scene.model import SceneModel
from ..settings import FitSettings
from ..simulation.config import CCD_NX, CCD_NY, GSPARAMS, SimulationConfig
from ..simulation.field import SimulatedField, build_field

__all__ = ["CONTROL", "FITTED", "SAMPLED", "SAMPLE_PIFF_FILE", "PhaseResult", "PhaseStudy",
           "PhaseStudyConfig", "PiffSetup", "Progress", "SampledPixelGridPSF", "default_setup",
           "fit_piff", "format_study", "phase_figure", "run_phase_study"]

Progress = Callable[[float, str], None]

# 2014lq28's detection exposure (r band): the DES model whose pixel sum varies most.
SAMPLE_PIFF_FILE = Path("psfs") / "696265" / "696265_32_piff.fits"
CONTROL = "true PSF"          # the rows fitted with the true (simulated) PSF
SAMPLED = "DES-like grid"     # `SampledPixelGridPSF`
FITTED = "Piff fit"           # `fit_piff`
_STAR_MARGIN_PX = 30          # Piff stars kept this far from the CCD edges


@dataclass(frozen=True)
class PiffSetup:
    """How DES fitted a Piff model to one CCD (the values of the sample's Piff files).

    ``scale`` arcsec and ``size`` samples of the `PixelGrid`, its ``interp`` (galsim
    interpolant, as Piff stores it), the ``order`` of the polynomial over the CCD
    (`BasisPolynomial` in u, v), the outlier rejection (`ChisqOutliers` ``prob``,
    ``max_remove``), the iteration settings, the side of the star stamps (pixels) and the
    S/N above which Piff scales a star's weights down (``max_snr_weight``; the stars of
    the DES files all have S/N <= 100).
    """

    scale: float = 0.30
    size: int = 17
    interp: str = ("galsim.Lanczos(3, True, gsparams=galsim.GSParams(128,8192,0.005,5.0,"
                   "0.001,0.0001,1e-05,1,0.0001,1e-06,1e-06,1e-08,1e-05))")
    order: int = 3
    outlier_prob: float = 3.083451580056004e-08
    outlier_max_remove: float = 0.01
    chisq_thresh: float = 0.1
    min_iter: int = 2
    max_iter: int = 30
    stamp_size: int = 40
    max_snr_weight: float = 100.0
    source: str = "built-in (the values of the DES sample's Piff files)"

    @classmethod
    def from_piff_file(cls, path: str | os.PathLike) -> "PiffSetup":
        """The setup of a DES Piff file (a `SimplePSF` of a `PixelGrid`)."""
        from ..psf.models import load_psf
        psf = load_psf(path)
        if not isinstance(psf, PiffPSF):
            raise ValueError(f"{path}: not a Piff PSF file")
        piff_psf = psf.psf
        model, outliers = piff_psf.model.kwargs, piff_psf.outliers[0].kwargs
        bounds = piff_psf.stars[0].image.bounds
        return cls(scale=float(model["scale"]), size=int(model["size"]),
                   interp=str(model["interp"]), order=int(piff_psf.interp.kwargs["order"]),
                   outlier_prob=float(outliers["prob"]),
                   outlier_max_remove=float(outliers["max_remove"]),
                   chisq_thresh=float(piff_psf.chisq_thresh),
                   min_iter=int(piff_psf.min_iter), max_iter=int(piff_psf.max_iter),
                   stamp_size=int(bounds.xmax - bounds.xmin + 1),
                   max_snr_weight=float(max(s.data.properties["snr"] for s in piff_psf.stars)),
                   source=str(path))

    def interpolant(self) -> galsim.Interpolant:
        """The model's galsim interpolant, as Piff makes it from ``interp``."""
        import piff
        return piff.PixelGrid(self.scale, self.size, interp=self.interp).interp

    def new_psf(self):
        """An unfitted Piff PSF of this setup."""
        import piff
        return piff.SimplePSF(
            model=piff.PixelGrid(self.scale, self.size, interp=self.interp, centered=True),
            interp=piff.BasisPolynomial(self.order),
            outliers=[piff.ChisqOutliers(prob=self.outlier_prob,
                                         max_remove=self.outlier_max_remove)],
            chisq_thresh=self.chisq_thresh, min_iter=self.min_iter, max_iter=self.max_iter)


class SampledPixelGridPSF(PSFModel):
    """Piff's `PixelGrid` form (``setup.size`` x ``setup.size`` samples every
    ``setup.scale`` arcsec, interpolated with ``setup.interp``, unit flux) whose samples are
    the values of the true pixel-integrated PSF, in sky coordinates (u, v) as Piff's.

    It isolates the model form from the fit: the DES sample's Piff models' pixel sums vary
    with the sub-pixel position by +-0.54 % at FWHM 0.8 arcsec, 0.45 % at 0.95 and 0.20 %
    at 1.45, this model's (Kolmogorov, CCD axes along u, v) by 0.56, 0.44 and 0.18 %, and
    a Piff fit's (`fit_piff`) as much as this model's at the same PSF
    (docs/validation/psf_phase.rst).  With CCD axes at 45 degrees to (u, v) neither
    varies (the grid's aliases then miss the pixel frequencies).
    """

    def __init__(self, profile: galsim.GSObject, wcs: galsim.BaseWCS, setup: PiffSetup):
        self.profile = profile
        self.setup = setup
        self._wcs = wcs

    @property
    def wcs(self) -> galsim.BaseWCS:
        return self._wcs

    def pixel_profile(self, x: float, y: float) -> galsim.GSObject:
        samples = self._samples(x, y)
        model = galsim.InterpolatedImage(samples, x_interpolant=self.setup.interpolant(),
                                         normalization="flux").withFlux(1.0)
        return self._wcs.local(galsim.PositionD(x, y)).profileToImage(model)

    def footprint_flux(self, x: float, y: float) -> float:
        """The true PSF's flux on the grid's footprint (the sum of its samples): about the
        fraction of a source's flux that SMP with this model measures."""
        # no_pixel samples are surface brightness times the sample area already
        return float(self._samples(x, y).array.sum())

    def _samples(self, x: float, y: float) -> galsim.Image:
        jac = self._wcs.local(galsim.PositionD(x, y))
        sky = galsim.Convolve(self.profile, jac.toWorld(galsim.Pixel(1.0)), gsparams=GSPARAMS)
        n, scale = self.setup.size, self.setup.scale
        return sky.drawImage(nx=n, ny=n, scale=scale, method="no_pixel")


def fit_piff(profile: galsim.GSObject, wcs: galsim.BaseWCS, setup: PiffSetup,
             rng: np.random.Generator, n_stars: int = 60, sky_sigma: float = 40.0,
             snr_range: tuple[float, float] = (50.0, 1000.0)) -> PiffPSF:
    """A Piff model fitted to ``n_stars`` stars drawn from ``profile`` (arcsec, unit flux,
    without the pixel) through ``wcs`` (1-indexed CCD pixels -> sky) at uniformly random CCD
    positions, with Gaussian sky noise ``sky_sigma`` (counts per pixel) and peak-optimal
    S/N log-uniform in ``snr_range``; as Piff's star selection does, the weights of stars
    with S/N above ``setup.max_snr_weight`` are scaled down to that S/N."""
    import piff
    centre = galsim.PositionD((CCD_NX + 1) / 2, (CCD_NY + 1) / 2)
    pointing = wcs.toWorld(centre)
    jac = wcs.local(centre)
    # Effective number of noise pixels of the PSF: S/N = flux / (sigma sqrt(n_eff)).
    image = galsim.Convolve(jac.profileToImage(profile), galsim.Pixel(1.0)).drawImage(
        nx=setup.stamp_size, ny=setup.stamp_size, scale=1.0, method="no_pixel")
    n_eff = 1.0 / float((image.array ** 2).sum())
    stars = []
    for _ in range(n_stars):
        x = rng.uniform(_STAR_MARGIN_PX, CCD_NX + 1 - _STAR_MARGIN_PX)
        y = rng.uniform(_STAR_MARGIN_PX, CCD_NY + 1 - _STAR_MARGIN_PX)
        snr = math.exp(rng.uniform(*np.log(snr_range)))
        flux = snr * sky_sigma * math.sqrt(n_eff)
        # Bounds given at creation: moving an image afterwards (setCenter) moves its WCS
        # with it, and Piff would place every star at the first stamp's sky position.
        x0 = round(x) - setup.stamp_size // 2
        y0 = round(y) - setup.stamp_size // 2
        stamp = galsim.ImageD(galsim.BoundsI(x0, x0 + setup.stamp_size - 1,
                                             y0, y0 + setup.stamp_size - 1), wcs=wcs)
        (profile.withGSParams(GSPARAMS) * flux).drawImage(
            stamp, center=galsim.PositionD(x, y), method="auto")
        stamp.array[:] += rng.normal(0.0, sky_sigma, stamp.array.shape)
        weight = galsim.ImageD(stamp.bounds, init_value=sky_sigma ** -2, wcs=wcs)
        raw_snr = piff.util.calculateSNR(stamp, weight)
        if raw_snr > setup.max_snr_weight:
            weight *= (setup.max_snr_weight / raw_snr) ** 2
        data = piff.StarData(stamp, galsim.PositionD(x, y), weight=weight, pointing=pointing,
                             properties={"chipnum": 0})
        stars.append(piff.Star(data, None))
    psf = setup.new_psf()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # Piff's deprecation notes about its own API
        psf.fit(stars, {0: wcs}, pointing)
    return PiffPSF(psf, chipnum=0)


@dataclass(frozen=True)
class PhaseStudyConfig:
    """What the experiment does (deterministic in ``seed``).

    Attributes
    ----------
    n_exposures
        exposures of the simulated field (one of them the detection).
    n_phase
        phases per axis (an n x n grid of cells spanning a pixel).
    n_noise
        noisy realisations per phase cell for the pulls.
    snr
        S/N of the injected source in the noisy realisations.
    n_piff_stars
        stars per exposure for each Piff fit (the sample's files used 55).
    neighbours
        a galaxy 4-6 px and two stars 7-12 px from the target (False: the target
        alone, so that nothing but the phase moves its flux).
    """

    seed: int = 0
    n_exposures: int = 3
    n_phase: int = 8
    n_noise: int = 8
    snr: float = 50.0
    n_piff_stars: int = 60
    fwhm_range_arcsec: tuple[float, float] = (0.9, 1.3)
    neighbours: bool = True
    piff_fit: bool = True
    band: str = "r"

    def simulation(self) -> SimulationConfig:
        config = SimulationConfig(seed=self.seed, n_exposures=self.n_exposures,
                                  fwhm_range_arcsec=self.fwhm_range_arcsec,
                                  galaxy=self.neighbours, band=self.band, noise=False,
                                  aligned_axes=True)
        return config if self.neighbours else dataclasses.replace(config, n_stars=0)

    @property
    def field(self) -> str:
        return "blended" if self.neighbours else "isolated"

    @property
    def phases(self) -> np.ndarray:
        """Cell centres along one axis, pixels in [-0.5, 0.5)."""
        return -0.5 + (np.arange(self.n_phase) + 0.5) / self.n_phase


@dataclass(frozen=True, eq=False)
class PhaseResult:
    """One PSF option of the study.

    ``bias_mmag[iy, ix]``: m_fit - m_true at phase (``phases[ix]``, ``phases[iy]``), from
    noiseless images; ``next_pixel_bias_mmag`` the same with the target one whole pixel
    further along both axes (the same phases: a bias that depends only on the phase
    repeats there).  ``pulls``: (flux - truth) / flux_err of the noisy realisations.
    ``sky_bias`` (per exposure): fitted minus true sky, in units of the exposure's sky noise
    per pixel, averaged over the phases.  ``grid_flux_mmag``: magnitude of the summed grid
    amplitudes minus that of the true static scene, averaged over the phases (NaN without
    neighbours: there is no scene).
    """

    bias_mmag: np.ndarray
    next_pixel_bias_mmag: np.ndarray
    pulls: np.ndarray
    sky_bias: np.ndarray
    grid_flux_mmag: float

    @property
    def max_abs_bias_mmag(self) -> float:
        return float(np.max(np.abs(self.bias_mmag)))

    @property
    def mean_bias_mmag(self) -> float:
        return float(np.mean(self.bias_mmag))

    @property
    def phase_amplitude_mmag(self) -> float:
        """Largest ``|bias - its phase average|``: the part that depends on the phase."""
        return float(np.max(np.abs(self.bias_mmag - self.bias_mmag.mean())))

    @property
    def non_periodic_mmag(self) -> float:
        """Largest change of the bias at a phase when the target moves by a whole pixel
        (1, 1): 0 for a bias that depends on the phase alone, large when the position
        matters (neighbours)."""
        return float(np.max(np.abs(self.next_pixel_bias_mmag - self.bias_mmag)))

    @property
    def pull_std(self) -> float:
        return float(np.std(self.pulls, ddof=1)) if self.pulls.size > 1 else math.nan

    @property
    def pull_mean(self) -> float:
        return float(np.mean(self.pulls)) if self.pulls.size else math.nan

    def summary(self) -> dict:
        return {"max_abs_bias_mmag": self.max_abs_bias_mmag,
                "mean_bias_mmag": self.mean_bias_mmag,
                "phase_amplitude_mmag": self.phase_amplitude_mmag,
                "non_periodic_mmag": self.non_periodic_mmag,
                "pull_mean": self.pull_mean, "pull_std": self.pull_std, "n": int(self.pulls.size),
                "max_abs_sky_bias_sigma": float(np.max(np.abs(self.sky_bias))),
                "grid_flux_mmag": self.grid_flux_mmag}


@dataclass(frozen=True, eq=False)
class PhaseStudy:
    """The study's results: one `PhaseResult` per PSF option, plus what was fitted."""

    config: PhaseStudyConfig
    setup: PiffSetup
    results: dict[str, PhaseResult]
    pixel_sum_range: dict[str, tuple[float, float]]
    target_flux: float
    fwhm_arcsec: tuple[float, ...]
    detection_index: int
    footprint_mmag: float

    def summary(self) -> dict:
        return {"piff_setup": dataclasses.asdict(self.setup),
                "config": dataclasses.asdict(self.config),
                "detection_pixel_sum_range": {k: list(v)
                                              for k, v in self.pixel_sum_range.items()},
                "fwhm_arcsec": list(self.fwhm_arcsec),
                "detection_index": self.detection_index,
                "target_flux_zp30": self.target_flux,
                "footprint_mmag": self.footprint_mmag,
                "results": {name: r.summary() for name, r in self.results.items()}}


def default_setup(sample: str | os.PathLike | None) -> PiffSetup:
    """The Piff setup read from the DES sample's `SAMPLE_PIFF_FILE` (the built-in values,
    the same, when the sample is not there)."""
    if sample is not None and (Path(sample) / SAMPLE_PIFF_FILE).is_file():
        return PiffSetup.from_piff_file(Path(sample) / SAMPLE_PIFF_FILE)
    return PiffSetup()


def run_phase_study(config: PhaseStudyConfig = PhaseStudyConfig(),
                    setup: PiffSetup = PiffSetup(), workdir: str | os.PathLike | None = None,
                    options: Sequence[str] = PSF_NORMALIZATIONS,
                    progress: Progress | None = None) -> PhaseStudy:
    """Run the study (module docstring) in ``workdir`` (a temporary directory if None)."""
    import tempfile
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="smp-psf-phase-") as tmp:
            return run_phase_study(config, setup, tmp, options, progress)
    sim = build_field(config.simulation())
    manifest = sim.write(Path(workdir) / "field", sim.realise(np.random.default_rng(0),
                                                              noise=False))
    manifest = DetectionManifest.read(manifest)
    exposures, dropped = load_exposures(manifest)
    if dropped:
        raise RuntimeError("a simulated exposure was dropped; cannot pair images")
    models = {CONTROL: exposures,
              SAMPLED: [dataclasses.replace(ex, psf=SampledPixelGridPSF(
                  sim_ex.psf_profile, sim_ex.wcs, setup))
                        for ex, sim_ex in zip(exposures, sim.exposures)]}
    if config.piff_fit:
        rng = np.random.default_rng([config.seed, 17])
        fitted = []
        for m, (ex, sim_ex) in enumerate(zip(exposures, sim.exposures)):
            if progress:
                progress(m / len(exposures), f"fitting a Piff model to exposure {m + 1}/"
                                             f"{len(exposures)}")
            fitted.append(dataclasses.replace(ex, psf=fit_piff(
                sim_ex.psf_profile, sim_ex.wcs, setup, rng, n_stars=config.n_piff_stars,
                sky_sigma=sim_ex.truth.sky_sigma)))
        models[FITTED] = fitted
    det = sim.detection_index
    grid = np.meshgrid(config.phases, config.phases)
    results, sums, flux = {}, {}, None
    for k, (kind, exs) in enumerate(models.items()):
        renderer = OversampledPSF(exs[det].psf.pixel_profile(*exs[det].target_xy), 20)
        sums[kind] = renderer.pixel_sums(grid[0].ravel(), grid[1].ravel())
        for name in options:
            if progress:
                progress(k / len(models), f"fitting injections: {kind}, {name}")
            scene = SceneModel(exs, det, manifest.ra, manifest.dec,
                               FitSettings(psf_normalization=name))
            if flux is None:   # one flux for all: S/N config.snr with the true PSF
                flux = config.snr * math.sqrt(
                    scene.solve([(0.0, 0.0)]).target_covariance[0, 0])
            # the same noise for every row: their differences are not noise
            results[f"{kind}, {name}"] = _inject(scene, sim, config, flux,
                                                 np.random.default_rng([config.seed, 3]))
    return PhaseStudy(config=config, setup=setup, results=results,
                      pixel_sum_range={k: (float(v.min()), float(v.max()))
                                       for k, v in sums.items()},
                      target_flux=flux,
                      fwhm_arcsec=tuple(ex.truth.fwhm_arcsec for ex in sim.exposures),
                      detection_index=det,
                      footprint_mmag=-2500.0 * math.log10(
                          models[SAMPLED][det].psf.footprint_flux(*exposures[det].target_xy)))


def _inject(scene: SceneModel, sim: SimulatedField, config: PhaseStudyConfig, flux: float,
            rng: np.random.Generator) -> PhaseResult:
    """Sources of ``flux`` (ZP30) at every phase cell of the detection exposure, fitted at
    their true positions: noiseless once (the bias), noisy ``config.n_noise`` times."""
    det = sim.detection
    xt, yt = det.truth.target_xy
    phases = config.phases
    bias = np.zeros((2, phases.size, phases.size))
    pulls, sky, grid = [], [], []
    scales = np.array([ex.flux_scale for ex in sim.exposures])
    sky_truth = np.array([ex.truth.sky_offset for ex in sim.exposures]) * scales
    sky_sigma = np.array([ex.truth.sky_sigma for ex in sim.exposures]) * scales
    scene_flux = sum(s.flux for s in sim.scene)   # 0 without neighbours

    def noiseless(offset: np.ndarray):
        clean = sim.realise(rng, sim.target_sources([flux], offset), noise=False)
        solution = scene.with_data([s * c for s, c in zip(clean, scales)]).solve(offset)
        return solution, -2500.0 * math.log10(solution.target[0] / flux)

    for iy, py in enumerate(phases):
        for ix, px in enumerate(phases):
            # the source at CCD (round(xt) + px, round(yt) + py): phase (px, py)
            offset = np.array([[round(xt) + px - xt, round(yt) + py - yt]])
            sources = sim.target_sources([flux], offset)
            solution, bias[0, iy, ix] = noiseless(offset)
            # the same phase one whole pixel further along both axes
            bias[1, iy, ix] = noiseless(offset + 1.0)[1]
            sky.append((solution.static[scene.n_grid:] - sky_truth) / sky_sigma)
            grid.append(solution.static[:scene.n_grid].sum())
            error = math.sqrt(solution.target_covariance[0, 0])
            for _ in range(config.n_noise):
                noisy = sim.realise(rng, sources)
                fit = scene.with_data([s * c for s, c in zip(noisy, scales)]).solve(offset)
                pulls.append((fit.target[0] - flux) / error)
    return PhaseResult(bias_mmag=bias[0], next_pixel_bias_mmag=bias[1], pulls=np.array(pulls),
                       sky_bias=np.mean(sky, axis=0),
                       grid_flux_mmag=-2500.0 * math.log10(np.mean(grid) / scene_flux)
                       if scene_flux > 0 and np.mean(grid) > 0 else math.nan)


def format_study(study: PhaseStudy) -> str:
    """The study as the text the benchmark prints."""
    c = study.config
    lines = [
        f"PSF phase study, {c.field} target: {c.n_exposures} exposures (FWHM "
        + ", ".join(f"{f:.2f}" for f in study.fwhm_arcsec) + " arcsec), "
        f"{c.n_phase}x{c.n_phase} phases, {c.n_noise} noisy fits per phase at S/N {c.snr:g}",
        f"Piff setup from {study.setup.source}: PixelGrid {study.setup.scale:g} arcsec x "
        f"{study.setup.size}, {study.setup.interp}, BasisPolynomial order {study.setup.order}, "
        f"{c.n_piff_stars} stars of {study.setup.stamp_size} px per exposure",
        "pixel sum of the detection exposure's PSF over the phases: " + "; ".join(
            f"{k} {lo:.5f} - {hi:.5f}" for k, (lo, hi) in study.pixel_sum_range.items()),
        f"true PSF outside the PixelGrid's {study.setup.size * study.setup.scale:.2f} arcsec "
        f"footprint: {study.footprint_mmag:.2f} mmag (the constant offset expected with a "
        "model normalised on it)",
        "",
        f"{'PSF used by SMP, normalisation':<32} {'max|dm|':>8} {'mean dm':>8} {'phase':>7} "
        f"{'+1 px':>6} {'pull':>6} {'pull':>5} {'max|sky|':>9} {'grid':>7}",
        f"{'':<32} {'mmag':>8} {'mmag':>8} {'mmag':>7} {'mmag':>6} {'mean':>6} {'std':>5} "
        f"{'sigma':>9} {'mmag':>7}"]
    for name, r in study.results.items():
        s = r.summary()
        grid = "-" if math.isnan(s["grid_flux_mmag"]) else f"{s['grid_flux_mmag']:.2f}"
        lines.append(f"{name:<32} {s['max_abs_bias_mmag']:8.2f} {s['mean_bias_mmag']:8.2f} "
                     f"{s['phase_amplitude_mmag']:7.2f} {s['non_periodic_mmag']:6.2f} "
                     f"{s['pull_mean']:6.3f} "
                     f"{s['pull_std']:5.3f} {s['max_abs_sky_bias_sigma']:9.4f} {grid:>7}")
    lines += ["",
              "dm = m_fit - m_true over the phase cells (noiseless fits); phase = largest "
              "|dm - mean dm|;",
              "+1 px: largest change of dm at a phase when the target moves by one whole "
              "pixel (1, 1) (0 for a pure phase effect);",
              "sky: largest |fitted - true sky| over exposures, in sky sigma per pixel; "
              "grid: m(sum of grid amplitudes) - m(true scene flux)."]
    return "\n".join(lines)


def phase_figure(studies: Sequence[PhaseStudy]):
    """Phase-dependent flux bias against the phase along x: one row per study (field), one
    panel per PSF model, one line per normalisation (mean over the y phases, band: their
    range); each line is offset by its phase average, given in the legend."""
    from matplotlib.figure import Figure
    kinds = list(dict.fromkeys(name.split(", ")[0] for name in studies[0].results))
    fig = Figure(figsize=(4 * len(kinds), 3.4 * len(studies) + 0.4), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(studies), len(kinds), sharey=True, sharex=True,
                                      squeeze=False))
    for row, study in zip(axes, studies):
        phases = study.config.phases
        for ax, kind in zip(row, kinds):
            for name, r in study.results.items():
                if not name.startswith(kind + ", "):
                    continue
                values = r.bias_mmag - r.mean_bias_mmag
                line, = ax.plot(phases, values.mean(axis=0), marker="o", ms=3,
                                label=f"{name.split(', ')[1]} (mean {r.mean_bias_mmag:+.1f}, "
                                      f"max |dev| {r.phase_amplitude_mmag:.2f})")
                ax.fill_between(phases, values.min(axis=0), values.max(axis=0),
                                color=line.get_color(), alpha=0.2, lw=0)
            ax.axhline(0.0, color="k", lw=0.5)
            ax.set_title(f"{study.config.field} target, {kind} (pixel sum "
                         f"{study.pixel_sum_range[kind][0]:.4f}-"
                         f"{study.pixel_sum_range[kind][1]:.4f})", fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6.5, title="normalisation (mmag)", title_fontsize=7)
        row[0].set_ylabel("m_fit - m_true - phase mean (mmag)")
    for ax in axes[-1]:
        ax.set_xlabel("sub-pixel phase x (pixels); band: range over phase y")
    fig.suptitle("SMP flux bias against the target's sub-pixel position: sources drawn from "
                 "the true PSF, fitted with each PSF model", fontsize=10)
    return fig
