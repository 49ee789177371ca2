"""The simulator against the engine's readers and fits: the truth it writes must be what
the engine recovers, within the reported errors."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from smp_model import DetectionManifest, DetectionPhotometry, FitSettings
from smp_model.cli.command import main
from smp_model.files import OutputExistsError
from smp_model.inputs.manifest import des_stamp_origin
from smp_model.inputs.stamps import read_stamp
from smp_model.psf.models import PixelizedPSF, load_psf
from smp_model.scene.exposures import load_exposures
from smp_model.simulation.config import MASK_BPM, MASK_CRAY, SimulationConfig
from smp_model.simulation.detection import simulate_detection
from smp_model.simulation.field import build_field
from smp_model.simulation.truth import SimulationTruth


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    return simulate_detection(tmp_path_factory.mktemp("single"), seed=11)


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    a = simulate_detection(tmp_path / "a", seed=4, n_exposures=3)
    b = simulate_detection(tmp_path / "b", seed=4, n_exposures=3)
    c = simulate_detection(tmp_path / "c", seed=5, n_exposures=3)
    assert a.to_dict() == b.to_dict()
    for ea, eb in zip(DetectionManifest.read(a.manifest_path).exposures,
                      DetectionManifest.read(b.manifest_path).exposures):
        assert np.array_equal(read_stamp(ea.stamp).sci, read_stamp(eb.stamp).sci)
        assert fits.getdata(ea.psf, "PIXPSF").tobytes() == fits.getdata(eb.psf,
                                                                         "PIXPSF").tobytes()
    assert (a.ra, a.dec) != (c.ra, c.dec)


def test_files_have_the_des_sample_layout(single):
    manifest = DetectionManifest.read(single.manifest_path)
    folder = single.manifest_path.parent
    assert len(manifest.exposures) == 6
    assert (manifest.detection_expnum, manifest.detection_ccdnum) == (
        single.detection_expnum, single.detection_ccdnum)
    zeropoints = Table.read(folder / "zeropoints.ecsv")
    assert {"expnum", "ccdnum", "band", "zeropoint"} <= set(zeropoints.colnames)
    for entry, row in zip(manifest.exposures, zeropoints):
        assert entry.stamp == folder / "stamps" / f"{manifest.name}_{entry.expnum}.fits"
        assert entry.psf == (folder / "psfs" / str(entry.expnum)
                             / f"{entry.expnum}_{entry.ccdnum}_psf.fits")
        assert (row["expnum"], row["ccdnum"], row["zeropoint"]) == (
            entry.expnum, entry.ccdnum, entry.zeropoint)
        with fits.open(entry.stamp) as hdul:
            assert [h.name for h in hdul[1:]] == ["SCI", "MSK", "WGT"]
            assert hdul["SCI"].data.dtype.kind == "f" and hdul["SCI"].data.itemsize == 4
            assert hdul["MSK"].data.dtype.kind == "i"
            assert hdul["SCI"].data.shape == (30, 30)
        assert isinstance(load_psf(entry.psf), PixelizedPSF)
        assert fits.getheader(entry.psf, 0)["CTYPE1"] == "RA---TAN-SIP"
        assert entry.stamp_origin == des_stamp_origin(*entry.target_xy, (30, 30))
    exposures, dropped = load_exposures(manifest)
    assert not dropped
    for ex in exposures:   # the WCS in the PSF file puts (ra, dec) where the manifest says
        assert np.allclose(ex.target_xy, ex.entry.target_xy, atol=1e-6)
    assert json.loads((folder / "truth.json").read_text())["format"] == \
        "smp-simulation-truth/1"
    assert SimulationTruth.read(folder / "truth.json") == single


def test_exposures_differ_like_real_data(single):
    exposures = single.exposures
    assert len({e.zeropoint for e in exposures}) == len(exposures)
    assert all(31.2 <= e.zeropoint <= 31.8 for e in exposures)
    assert all(0.8 <= e.fwhm_arcsec <= 1.3 for e in exposures)
    assert len({round(e.rotation_deg) for e in exposures}) == len(exposures)
    assert sum(e.is_detection for e in exposures) == 1
    manifest = DetectionManifest.read(single.manifest_path)
    masks = [read_stamp(e.stamp).msk for e in manifest.exposures]
    bits = np.bitwise_or.reduce([np.bitwise_or.reduce(m.ravel()) for m in masks])
    assert bits & ~(MASK_BPM | MASK_CRAY) == 0 and bits != 0


def test_weight_plane_describes_the_noise():
    config = SimulationConfig(seed=3, n_exposures=4)
    sim = build_field(config)
    noisy = sim.realise(np.random.default_rng(1), noise=True)
    clean = sim.realise(np.random.default_rng(1), noise=False)
    normalised = [(n - c) * np.sqrt(ex.weight) for n, c, ex in zip(noisy, clean, sim.exposures)]
    assert np.std(normalised) == pytest.approx(1.0, abs=0.04)


def test_engine_psf_model_reproduces_the_simulated_point_source(tmp_path):
    truth = simulate_detection(tmp_path, seed=2, noise=False)
    sim = build_field(truth.config)
    # The renderer's fidelity: the PSF as the model draws it ...
    phot = DetectionPhotometry(truth.manifest_path, FitSettings(psf_normalization="model"))
    # ... and the exact convention's default, which removes what the pixels alias: a
    # physical PSF has almost nothing there (docs/validation/psf_phase.rst).
    limited = DetectionPhotometry(truth.manifest_path)
    assert limited.settings.psf_normalization == "band-limited"
    det = sim.detection
    for offset in ([0.0, 0.0], [0.37, -0.21]):
        x, y = np.add(det.truth.target_xy, offset)
        drawn = det.point_source(1.0, x, y) * det.flux_scale
        model = phot.scene.target_stamps([offset])[0]
        assert np.abs(drawn - model).max() < 2e-4 * drawn.max()
        model = limited.scene.target_stamps([offset])[0]
        assert np.abs(drawn - model).max() < 1e-3 * drawn.max()


def test_noiseless_isolated_source_is_recovered_exactly(tmp_path):
    truth = simulate_detection(tmp_path, seed=6, noise=False, galaxy=False, n_stars=0)
    fit = DetectionPhotometry(truth.manifest_path).fit_single()
    assert fit.flux == pytest.approx(truth.fluxes[0], rel=1e-4)
    assert fit.chi2 < 1e-3


def test_single_source_recovered_within_errors(single):
    phot = DetectionPhotometry(single.manifest_path)
    fit = phot.fit_single()
    assert abs(fit.flux - single.fluxes[0]) < 3 * fit.flux_err
    assert 10 < fit.primary.snr < 40
    assert fit.chi2 / fit.dof == pytest.approx(1.0, abs=0.1)
    best = phot.optimize_single()
    assert np.hypot(*best.offsets[0]) < 3 * max(best.primary.dx_err, best.primary.dy_err)


def test_binary_recovers_both_fluxes_and_positions(tmp_path):
    truth = simulate_detection(tmp_path, seed=8, binary=True, flux=6000.0, flux_ratio=0.6,
                               separation_px=3.0)
    assert truth.separation_px == pytest.approx(3.0)
    photocentre = (truth.fluxes[:, None] * truth.offsets).sum(0) / truth.fluxes.sum()
    assert np.allclose(photocentre, 0.0, atol=1e-9)
    start = np.round(np.array(truth.published_offsets) * 2) / 2
    fit = DetectionPhotometry(truth.manifest_path).optimize_binary(start)
    for found, true in zip(fit.sources, truth.sources):
        assert abs(found.flux - true.flux) < 3 * found.flux_err
        assert abs(found.dx - true.dx) < max(3 * found.dx_err, 0.05)
        assert abs(found.dy - true.dy) < max(3 * found.dy_err, 0.05)
    assert abs(fit.separation_px - 3.0) < 3 * fit.separation_err_px
    assert fit.position_angle_deg == pytest.approx(truth.position_angle_deg,
                                                   abs=3 * fit.position_angle_err_deg)
    assert fit.delta_chi2 > 25


def test_shot_noise_option_adds_source_noise_and_records_the_gain(tmp_path):
    config = SimulationConfig(seed=3, n_exposures=2, flux=2e5, galaxy=False, n_stars=0)
    sim = build_field(config)
    sources = sim.target_sources([config.flux], [[0.0, 0.0]])
    draws = np.array([sim.realise(np.random.default_rng(k), sources, gain=1.0)
                      [sim.detection_index] for k in range(40)])
    clean = sim.realise(None, sources, noise=False)[sim.detection_index] - \
        sim.detection.defects
    peak = np.unravel_index(np.argmax(clean), clean.shape)
    sky_var = sim.detection.truth.sky_sigma ** 2
    assert draws[:, peak[0], peak[1]].var() > sky_var + 0.5 * clean[peak]
    truth = simulate_detection(tmp_path, seed=3, n_exposures=2, shot_noise_gain=4.0)
    assert all(e.gain == 4.0 for e in DetectionManifest.read(truth.manifest_path).exposures)


def test_refuses_non_empty_folder_unless_overwrite(tmp_path):
    (tmp_path / "other.txt").write_text("x")
    with pytest.raises(OutputExistsError):
        simulate_detection(tmp_path, seed=1, n_exposures=2)
    truth = simulate_detection(tmp_path, seed=1, n_exposures=2, overwrite=True)
    assert truth.manifest_path.is_file() and (tmp_path / "other.txt").is_file()


def test_cli_writes_and_prints_the_manifest(tmp_path, capsys):
    out = tmp_path / "sim"
    assert main(["simulate", str(out), "--seed", "2", "--exposures", "3", "--binary",
                 "--separation", "2.5", "--no-galaxy"]) == 0
    path = capsys.readouterr().out.strip()
    assert path == str(out / "detection.toml")
    truth = SimulationTruth.read(out / "truth.json")
    assert truth.is_binary and truth.separation_px == pytest.approx(2.5)
    assert not any(s.kind == "galaxy" for s in truth.scene)
    assert main(["simulate", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err


def test_demo_is_generated_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SMP_CACHE_DIR", str(tmp_path))
    from smp_model.simulation import demo
    path = demo.demo_manifest_path()
    assert path == tmp_path / "demo-v1" / "detection.toml" and path.is_file()
    mtime = path.stat().st_mtime_ns
    assert demo.demo_manifest_path().stat().st_mtime_ns == mtime
    truth = demo.demo_truth()
    assert truth.is_binary and any(s.kind == "galaxy" for s in truth.scene)
    start = np.array(demo.demo_start_offsets())
    assert np.all(np.abs(start - truth.published_offsets) <= 0.25 + 1e-9)
    assert [p.name for p in tmp_path.iterdir()] == ["demo-v1"]


def test_demo_generation_is_atomic_under_concurrency(tmp_path):
    code = ("from smp_model.simulation.demo import demo_manifest_path, demo_truth; "
            "p = demo_manifest_path(); demo_truth(); print(p)")
    env = dict(os.environ, SMP_CACHE_DIR=str(tmp_path), PYTHONPATH=os.pathsep.join(sys.path))
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert {o.strip() for o, _ in outputs} == {str(tmp_path / "demo-v1" / "detection.toml")}
    assert [p.name for p in tmp_path.iterdir()] == ["demo-v1"]
    DetectionManifest.read(tmp_path / "demo-v1" / "detection.toml")
