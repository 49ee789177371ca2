"""The PSF phase study (`smp_model.validation.psf_phase`): its Piff setup against the sample's files,
its DES-like PixelGrid model against the DES models' pixel sums, and a small run whose
control (SMP with the true PSF) is unbiased."""
from __future__ import annotations

import dataclasses

import galsim
import numpy as np
import pytest

from smp_model.conventions import PSF_NORMALIZATIONS
from smp_model.psf.oversampled import OversampledPSF
from smp_model.validation.psf_phase import (CONTROL, SAMPLE_PIFF_FILE, SAMPLED,
                                            PhaseStudyConfig, PiffSetup, SampledPixelGridPSF,
                                            default_setup, format_study, run_phase_study)

PHASES = np.meshgrid(np.linspace(0, 1, 12, endpoint=False), np.linspace(0, 1, 12,
                                                                          endpoint=False))


def test_the_built_in_setup_is_the_sample_files(des_sample):
    read = PiffSetup.from_piff_file(des_sample / SAMPLE_PIFF_FILE)
    built_in = PiffSetup()
    differ = {f.name for f in dataclasses.fields(PiffSetup)
              if getattr(read, f.name) != getattr(built_in, f.name)}
    assert differ == {"source"}
    interpolant = read.interpolant()
    assert isinstance(interpolant, galsim.Lanczos)
    assert (interpolant.n, interpolant.conserve_dc) == (3, True)
    assert default_setup(des_sample).source == str(des_sample / SAMPLE_PIFF_FILE)
    assert default_setup(None) == built_in


@pytest.mark.parametrize("fwhm, des_half_range", [(0.8, 0.0054), (0.95, 0.0045),
                                                  (1.45, 0.0020)])
def test_sampled_pixel_grid_has_the_des_models_pixel_sums(fwhm, des_half_range):
    # The DES sample's models at these FWHMs (docs/validation/psf_phase.rst); CCD axes
    # along (u, v).
    wcs = galsim.JacobianWCS(0.0, -0.263, -0.263, 0.0)
    psf = SampledPixelGridPSF(galsim.Kolmogorov(fwhm=fwhm), wcs, PiffSetup())
    sums = OversampledPSF(psf.pixel_profile(1000.0, 2000.0), 20).pixel_sums(
        PHASES[0].ravel(), PHASES[1].ravel())
    assert np.ptp(sums) / 2 == pytest.approx(des_half_range, abs=0.0006)
    # At 45 degrees to (u, v) the grid's aliases miss the pixel frequencies.
    rotated = galsim.JacobianWCS(0.186, -0.186, -0.186, -0.186)
    psf = SampledPixelGridPSF(galsim.Kolmogorov(fwhm=fwhm), rotated, PiffSetup())
    sums = OversampledPSF(psf.pixel_profile(1000.0, 2000.0), 20).pixel_sums(
        PHASES[0].ravel(), PHASES[1].ravel())
    assert np.ptp(sums) / 2 < 2e-4


def test_a_small_study_without_piff_fits(tmp_path):
    config = PhaseStudyConfig(n_phase=3, n_noise=2, piff_fit=False)
    study = run_phase_study(config, PiffSetup(), tmp_path)
    assert set(study.results) == {f"{kind}, {name}" for kind in (CONTROL, SAMPLED)
                                  for name in PSF_NORMALIZATIONS}
    control = study.results[f"{CONTROL}, model"]
    assert control.bias_mmag.shape == (3, 3) and control.pulls.size == 18
    assert control.max_abs_bias_mmag < 1.0          # the experiment's own floor
    grid_model = study.results[f"{SAMPLED}, model"]
    grid_weighted = study.results[f"{SAMPLED}, psf-weighted"]
    assert grid_weighted.phase_amplitude_mmag < 0.5 * grid_model.phase_amplitude_mmag
    assert "psf-weighted" in format_study(study)


def test_an_isolated_target_has_no_phase_bias_with_the_band_limited_model(tmp_path):
    # Without neighbours only the phase moves the flux: the DES-like grid's swing (+-4 mmag)
    # is periodic (the same one pixel further) and the band-limited rendering removes it.
    # What stays is the constant offset of the model's footprint (true PSF flux outside
    # the 17 x 0.30 arcsec box) plus the share of those wings the fitted sky takes.
    config = PhaseStudyConfig(n_phase=4, n_noise=0, piff_fit=False, neighbours=False)
    study = run_phase_study(config, PiffSetup(), tmp_path,
                            options=("model", "band-limited"))
    model = study.results[f"{SAMPLED}, model"]
    limited = study.results[f"{SAMPLED}, band-limited"]
    assert model.phase_amplitude_mmag > 2.0
    assert model.non_periodic_mmag < 0.2
    assert limited.phase_amplitude_mmag < 0.1
    assert 20.0 < study.footprint_mmag < limited.mean_bias_mmag < study.footprint_mmag + 5.0
    control = study.results[f"{CONTROL}, band-limited"]
    assert control.max_abs_bias_mmag < 0.1
    assert np.isnan(control.grid_flux_mmag)          # no scene to compare with
    assert "isolated target" in format_study(study)
