"""`smp validate --stress`: simulated detections with a survey's variety (issue 26), the
remedy for ill-conditioned scenes checked against plain least squares on the same data."""
import json

import numpy as np

from smp_model.cli.command import main
from smp_model.scene import model as scene_model
from smp_model.validation.stress import draw_stress_detections, run_stress_detection

# The first stress detection of seed 32: two exposures of FWHM 1.30-1.60 arcsec, condition
# number 1.2e13, one direction cut; the second is well-conditioned.
ENGAGED_RUN = ["validate", "--stress", "2", "--seed", "32"]


def test_smp_validate_stress_reports_failures_flags_and_pulls_with_and_without_the_remedy(
        capsys):
    assert main([*ENGAGED_RUN, "--json", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["detections"] == 2 and summary["failed"] == 0
    assert summary["remedy_engaged"] == 1 and summary["scene_modes_cut"] == 1
    assert summary["injections"] == 40 + 10   # more injections where the remedy engaged
    assert summary["flagged_without_defect"] == 0 and summary["defect_not_flagged"] == 0
    pulls = summary["pulls"]
    assert pulls["remedy_engaged"]["n"] == pulls["remedy_engaged_solved_without_it"]["n"] == 40
    for group in ("remedy_engaged", "remedy_engaged_solved_without_it", "all"):
        assert 0.75 < pulls[group]["pull_std"] < 1.25, group
        assert abs(pulls[group]["bias_sigma"]) < 0.5, group
    assert 0.9 < summary["reduced_chi2"]["median"] < 1.1
    # The remedy changes the fluxes by a small fraction of their error here.
    assert summary["shift_sigma_without_remedy"]["max"] < 0.1
    assert main([*ENGAGED_RUN, "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "2 simulated detections, 0 failed, 50 injections fitted" in text
    assert "remedy engaged in 1 detection(s): 0 grid source(s) dropped, 1 scene direction(s) cut" \
        in text


def test_the_remedy_differs_from_plain_least_squares_by_what_freeing_the_cut_directions_predicts(
        tmp_path):
    """For nested least-squares fits of the same data, the unconstrained flux (plain least
    squares over every scene direction, by SVD) differs from the constrained one (cut
    directions fixed at 0) by noise of variance err_plain^2 - err^2, and err_plain =
    err / sqrt(1 - share).  A stress detection of large share (seed 0, number 14: two
    exposures of FWHM 1.42-1.72 arcsec, five directions cut, 1.2 % of the target's
    information in them) checks both: the share the engine reports, and that cutting
    costs no more than it says."""
    detection = draw_stress_detections(15, seed=0)[14]
    outcome = run_stress_detection(detection, tmp_path)
    assert outcome.failure is None and outcome.conditioning.modes_cut >= 3
    recoveries = outcome.recoveries
    shares = np.array([r.cut_share for r in recoveries])
    assert shares.max() > 1e-3     # the old limit (1e-3) refused this detection
    err, plain_err = (np.array([r.flux_err for r in recoveries]),
                      np.array([r.plain_flux_err for r in recoveries]))
    np.testing.assert_allclose(plain_err, err / np.sqrt(1 - shares), rtol=1e-6)
    shift = np.array([r.flux - r.plain_flux for r in recoveries])
    z = shift / np.sqrt(plain_err ** 2 - err ** 2)
    assert np.all(np.abs(z) < 4.5)
    assert 0.6 < np.std(z) < 1.4
    # Both are honest estimates of the injected flux.
    for pulls in ([r.pull for r in recoveries], [r.plain_pull for r in recoveries]):
        assert abs(np.mean(pulls)) < 0.5 and 0.7 < np.std(pulls, ddof=1) < 1.3


def test_a_detection_the_remedy_cannot_save_is_counted_with_its_reason(monkeypatch, capsys):
    """A target that depends on the cut directions is refused; the stress run counts it as
    a failure and prints the engine's one-line reason."""
    monkeypatch.setattr(scene_model, "MAX_TARGET_CUT_SHARE", 0.0)
    assert main([*ENGAGED_RUN, "--json", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["failed"] == 1 and summary["injections"] == 10
    failure, = summary["failures"]
    assert failure.startswith("seed 3200000: FitError: ")
    assert "target flux is not determined" in failure and "\n" not in failure
    assert summary["remedy_engaged"] == 0 and summary["pulls"]["remedy_engaged"]["n"] == 0


def test_stress_runs_alone(capsys):
    assert main(["validate", "--stress", "1", "--binary", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "smp: error: --stress runs alone: drop --binary"
