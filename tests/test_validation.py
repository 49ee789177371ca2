"""Small versions of `smp validate`: injected fluxes must come back unbiased with honest
errors.  The bounds are wide enough for 20-40 injections (fixed seeds) but fail when the
errors are off by ~50 % or the fluxes are biased by more than ~half a sigma."""
import json
import math

import numpy as np
import pytest

from smp_model import DetectionPhotometry
from smp_model.cli.command import main
from smp_model.simulation.detection import simulate_detection
from smp_model.validation.injection import (PullStats, Recovery, ValidationReport,
                                            delta_chi2_summary, relabelled_manifests,
                                            run_validation)


@pytest.fixture(scope="module")
def report(des_sample):
    return run_validation(32, seed=1, binary=True, real=des_sample, n_delta_chi2=4,
                          n_binary=3, n_real=27)


def test_pull_statistics_of_known_values():
    stats = PullStats.of([-2.0, -0.5, 0.0, 0.5, 2.0, math.nan])
    assert stats.n == 5 and stats.bias_sigma == 0.0
    assert stats.pull_std == pytest.approx(np.std([-2, -0.5, 0, 0.5, 2], ddof=1))
    assert stats.coverage_1sigma == pytest.approx(0.6)
    assert Recovery("single", "x", 100.0, 110.0, 5.0).pull == 2.0
    d = delta_chi2_summary([1.0, 5.0, 10.0, 30.0])
    assert d["fraction_above"] == {"4": 0.75, "9": 0.5, "16": 0.25, "25": 0.25}


def test_refit_with_new_data_equals_a_fresh_fit(tmp_path):
    a = simulate_detection(tmp_path / "a", seed=3, n_exposures=3, flux=1000.0)
    b = simulate_detection(tmp_path / "b", seed=3, n_exposures=3, flux=4000.0)
    phot_a, phot_b = DetectionPhotometry(a.manifest_path), DetectionPhotometry(b.manifest_path)
    stale = phot_a.fit_binary((0, 1, 0, 1)).chi2_single   # fills phot_a's caches
    refit = phot_a.with_images([ex.image for ex in phot_b.exposures])
    fresh, reused = phot_b.fit_single(), refit.fit_single()
    expected = phot_b.fit_binary((0, 1, 0, 1)).chi2_single
    assert expected != pytest.approx(stale, rel=1e-9)   # the data differ (by ~1e-6)
    assert refit.fit_binary((0, 1, 0, 1)).chi2_single == pytest.approx(expected, rel=1e-10)
    assert reused.flux == pytest.approx(fresh.flux, rel=1e-10)
    assert reused.chi2 == pytest.approx(fresh.chi2, rel=1e-10)
    assert reused.flux_err == pytest.approx(fresh.flux_err, rel=1e-12)
    assert phot_a.fit_single().flux == pytest.approx(1000.0, abs=4 * fresh.flux_err)


def test_single_source_fluxes_are_unbiased_with_honest_errors(report):
    s = report.summary()["single"]
    assert s["n"] == 32
    assert abs(s["bias_sigma"]) < 0.5
    assert 0.7 < s["pull_std"] < 1.35
    assert 0.5 < s["coverage_1sigma"] < 0.9
    assert set(s["by_blending"]) == {"isolated", "on_galaxy"}
    snrs = [r.snr for r in report.single]
    assert min(snrs) >= 4.99 and max(snrs) <= 200.01


def test_single_sources_rarely_look_binary(report):
    d = report.summary()["single"]["delta_chi2"]
    assert d["n"] == 4
    assert d["median"] < 9 and d["fraction_above"]["25"] == 0.0


def test_binary_fluxes_and_separations(report):
    b = report.summary()["binary"]
    assert b["n_pairs"] == 3 and b["n"] == 6
    # The engine's flux errors ignore the position search (published method); with the
    # position uncertainty propagated the pulls must be unit-width.
    honest = b["with_position_errors"]
    assert abs(honest["bias_sigma"]) < 0.6
    assert 0.6 < honest["pull_std"] < 1.6
    assert b["pull_std"] >= honest["pull_std"]
    assert 0.4 < b["separation_pull_std"] < 2.0
    assert "close_pairs" in b and b["close_pairs"]["n_pairs"] == 6
    for section in (b, b["close_pairs"]):
        assert section["total_flux"]["n"] == section["n_pairs"]
        assert 0.0 <= section["recommended"]["unresolved_fraction"] <= 1.0
        resolved = 2 * round(section["n_pairs"]
                             * (1 - section["recommended"]["unresolved_fraction"]))
        assert section["recommended"]["n"] == resolved


def test_real_injections_recovered_within_errors(report):
    r = report.summary()["real"]
    assert r["n"] == 27
    assert len(r["by_detection"]) >= 2
    assert abs(r["bias_sigma"]) < 0.6
    assert 0.6 < r["pull_std"] < 1.4


def test_relabelled_manifests_leave_out_the_moving_object(des_sample):
    manifests = relabelled_manifests(des_sample)
    assert len(manifests) == 5 + 7 + 10
    for m in manifests:
        assert len(m.exposures) in (5, 7, 10)
        assert m.path.is_relative_to(des_sample)


def test_report_summary_has_the_documented_shape(report):
    summary = report.summary()
    for key in ("single", "binary", "real"):
        assert {"bias_sigma", "pull_std", "coverage_1sigma", "n"} <= set(summary[key])
    assert "separation_pull_std" in summary["binary"]
    assert ValidationReport(single=report.single).summary()["binary"] is None


def test_cli_json_and_plot(tmp_path, capsys):
    plot = tmp_path / "pulls.png"
    assert main(["validate", "--n", "4", "--delta-chi2", "1", "--json", "--plot", str(plot),
                 "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["single"]["n"] == 4
    assert summary["binary"] is None and summary["real"] is None
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["validate", "--n", "2", "--plot", str(plot), "--quiet"]) == 2


def test_validation_seed_314_runs_through(capsys):
    """`smp validate --seed 314` stopped with "array must not contain infs or NaNs": the
    75th binary search proposed a step onto coincident sources, where chi2 has no
    derivatives, and the trust-region method took the norm of their NaNs."""
    assert main(["validate", "--n", "120", "--seed", "314", "--delta-chi2", "75", "--json",
                 "--quiet"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["single"]["delta_chi2"]["n"] == 75
    assert 0.8 < doc["single"]["pull_std"] < 1.2


def test_pair_flux_debiased_is_summarised(report):
    """``smp validate --json`` reports the pulls of the debiased pair flux beside the raw
    one, for 2-4 px and close pairs."""
    b = report.summary()["binary"]
    for section in (b, b["close_pairs"]):
        assert section["total_flux_debiased"]["n"] == section["n_pairs"]
        assert section["total_flux_debiased"]["bias_sigma"] != section["total_flux"][
            "bias_sigma"]
