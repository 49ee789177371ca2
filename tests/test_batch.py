"""`smp batch`: the three real sample detections plus a broken one on a 2-worker
LocalCluster, compared with single fits in this process; resume, failures, folder rows."""
from __future__ import annotations

import dataclasses
import io
import json
import logging
import math
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.table import QTable, Table

from smp_model.batch.items import BatchItem, detection_key, read_batch_list
from smp_model.batch.work import BatchPaths, BatchReport, DetectionOutcome
from smp_model.cli.batch import BatchProgress
from smp_model.cli.command import main
from smp_model.fit.photometry import DetectionPhotometry
from smp_model.inputs.folder import manifest_from_folder
from smp_model.inputs.manifest import DetectionManifest
from smp_model.settings import FitSettings

SAMPLE = ("eris", "2014vv39", "2014lq28")
KEYS = {"eris": "eris_234928_20", "2014vv39": "2014vv39_572637_9",
        "2014lq28": "2014lq28_696265_32"}
LQ28_FOLDER = {"name": "2014lq28", "ra": 356.18539123, "dec": -0.620161911, "band": "r",
               "expnum": 696265, "ccdnum": 32}
RTOL = 1e-9


@pytest.fixture(scope="module")
def cluster():
    """A 2-worker LocalCluster shared by the tests; closed even when a test fails."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=logging.ERROR) as c:
        yield c


def fit_in_process(manifest):
    """What `smp fit` computes for one detection (default settings, single target)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # dropped-exposure warnings of the sample
        return DetectionPhotometry(manifest, FitSettings()).fit_single()


@pytest.fixture(scope="module")
def reference_fluxes(des_sample):
    return {name: fit_in_process(des_sample / name / "detection.toml").flux
            for name in SAMPLE}


def broken_manifest(des_sample, tmp_path):
    """2014 LQ28 renamed, with its detection exposure's stamp pointing at a missing file."""
    manifest = DetectionManifest.read(des_sample / "2014lq28" / "detection.toml")
    exposures = tuple(dataclasses.replace(e, stamp=tmp_path / "missing_stamp.fits")
                      if e is manifest.detection_exposure else e
                      for e in manifest.exposures)
    broken = dataclasses.replace(manifest, name="broken", exposures=exposures)
    return broken.write(tmp_path / "broken" / "detection.toml")


def work_mtimes(out):
    work = BatchPaths(out).work_dir
    return {p.name: p.stat().st_mtime_ns for p in work.glob("*.ecsv")}


def test_batch_sample_plus_broken_then_resume(des_sample, tmp_path, cluster,
                                              reference_fluxes, capsys):
    broken = broken_manifest(des_sample, tmp_path)
    listing = tmp_path / "detections.ecsv"
    Table({"manifest": [str(des_sample / n / "detection.toml") for n in SAMPLE]
           + [str(broken)]}).write(listing)
    out = tmp_path / "results" / "fluxes.ecsv"

    code = main(["batch", str(listing), "--out", str(out),
                 "--scheduler", cluster.scheduler_address])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "3 fitted, 0 skipped, 1 failed" in err

    table = QTable.read(out)
    assert len(table) == 3   # one source per single-target detection
    assert list(table["key"]) == [KEYS[n] for n in SAMPLE]   # list order
    for row, name in zip(table, SAMPLE):
        assert row["name"] == name and row["fit_kind"] == "single"
        assert row["flux"] == pytest.approx(reference_fluxes[name], rel=RTOL)
    assert table.meta["software"].startswith("smp-inspector ")
    assert table.meta["settings"]["convention"] == "exact"
    assert table.meta["n_failed"] == 1

    failures = Table.read(BatchPaths(out).failures)
    assert len(failures) == 1
    failure = failures[0]
    assert failure["key"] == "broken_696265_32"
    assert failure["error_type"] == "StampError"
    assert "missing_stamp.fits" in failure["message"]
    assert failure["input"] == str(broken) and failure["row"] == 4

    # Second run, default code path (its own LocalCluster): nothing is refitted, the
    # broken detection is retried and fails again, the table is rewritten unchanged.
    before = work_mtimes(out)
    assert {name.split("~")[0] for name in before} == {KEYS[n] for n in SAMPLE}
    code = main(["batch", str(listing), "--out", str(out), "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "0 fitted, 3 skipped, 1 failed" in err
    assert work_mtimes(out) == before
    again = QTable.read(out)
    assert np.array_equal(again["flux"], table["flux"])

    # Other settings on the same work directory: refused, nothing touched.
    code = main(["batch", str(listing), "--out", str(out), "--convention", "legacy",
                 "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "other settings" in err and "convention" in err
    assert work_mtimes(out) == before


def test_batch_folder_row_with_binary_search(des_sample, tmp_path, cluster, capsys):
    """A CSV list of folder-input fields with paths relative to the list file; 2014 LQ28
    is the published binary, so --binary-search-if 10 keeps the binary fit."""
    rel = os.path.relpath(des_sample, tmp_path)
    listing = tmp_path / "folders.csv"
    Table([{"stamps": f"{rel}/2014lq28/stamps", "psfs": f"{rel}/psfs",
            "zeropoints": f"{rel}/zeropoints.ecsv", **LQ28_FOLDER}]).write(listing)
    out = tmp_path / "fluxes.fits"

    code = main(["batch", str(listing), "--out", str(out), "--quiet",
                 "--binary-search-if", "10", "--scheduler", cluster.scheduler_address])
    assert code == 0, capsys.readouterr().err
    assert not BatchPaths(out).failures.exists()
    table = QTable.read(out)
    assert list(table["key"]) == [KEYS["2014lq28"]] * 2
    assert list(table["component"]) == ["primary", "secondary"]
    assert list(table["fit_kind"]) == ["binary", "binary"]

    manifest = manifest_from_folder(des_sample / "2014lq28" / "stamps", des_sample / "psfs",
                                    des_sample / "zeropoints.ecsv", **LQ28_FOLDER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = DetectionPhotometry(manifest, FitSettings()).optimize_binary((0, 1, 0, 1))
    assert expected.delta_chi2 > 10
    assert np.allclose(table["binary_delta_chi2"], expected.delta_chi2, rtol=RTOL)
    for row, source in zip(table, expected.sources):
        assert row["flux"] == pytest.approx(source.flux, rel=RTOL)


def test_usage_errors_exit_2(tmp_path, capsys):
    out = tmp_path / "fluxes.ecsv"
    assert main(["batch", str(tmp_path / "nope.ecsv"), "--out", str(out)]) == 2
    assert "batch list not found" in capsys.readouterr().err

    listing = tmp_path / "bad.csv"
    Table({"path": ["x.toml"]}).write(listing)
    assert main(["batch", str(listing), "--out", str(out)]) == 2
    assert "'manifest' column" in capsys.readouterr().err

    # An --out that is not from a batch (no work directory) is never replaced.
    Table({"manifest": ["missing.toml"]}).write(listing, overwrite=True)
    out.write_text("precious")
    assert main(["batch", str(listing), "--out", str(out)]) == 2
    assert "not overwritten" in capsys.readouterr().err
    assert out.read_text() == "precious"


def test_unreadable_rows_fail_without_a_cluster(tmp_path, capsys):
    """Rows that cannot become a detection are failures; no cluster is started for them."""
    listing = tmp_path / "list.ecsv"
    Table({"manifest": ["missing.toml"]}).write(listing)
    out = tmp_path / "fluxes.csv"
    assert main(["batch", str(listing), "--out", str(out), "--workers", "1"]) == 1
    assert "0 fitted" in capsys.readouterr().err
    failures = Table.read(BatchPaths(out).failures)
    assert failures["error_type"][0] == "ManifestError"
    assert str(tmp_path / "missing.toml") in failures["message"][0]
    # Written even without a result (0 rows), so it never outlives an earlier run.
    assert len(Table.read(out)) == 0


def test_read_batch_list_mixed_rows(tmp_path):
    listing = tmp_path / "mixed.ecsv"
    table = Table({"manifest": ["", "nowhere/detection.toml"],
                   "stamps": ["s", ""], "psfs": ["p", ""], "zeropoints": ["z.ecsv", ""],
                   "name": ["2014 LQ/28", ""], "ra": [1.0, 0.0], "dec": [2.0, 0.0],
                   "band": ["r", ""], "expnum": [5, 0], "ccdnum": [7, 0]})
    table.write(listing)
    folder, manifest = read_batch_list(listing)
    assert folder.key == "2014_LQ_28_5_7" and folder.error is None
    assert folder.folder["stamps"] == tmp_path / "s"
    assert manifest.error[0] == "ManifestError"
    assert detection_key("../x", 1, 2) == "_x_1_2"


def test_progress_is_throttled_off_a_terminal():
    stream = io.StringIO()
    progress = BatchProgress(stream=stream, interval=3600)
    report = BatchReport(total=100, paths=BatchPaths(Path("o.ecsv")), workers=2,
                         to_compute=100, compute_started=time.perf_counter() - 10)
    progress.start(report)
    for i in range(100):
        outcome = DetectionOutcome(BatchItem(i + 1, f"k{i}", "in"), "computed", 1.0)
        report.add(outcome)
        report.attempted += 1
        progress.update(outcome, report)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3   # start, first status, final status
    assert lines[-1].endswith("detections/s") and "100/100 done" in lines[-1]


# -- issue 7 options: position search and the source shot-noise refit --------------------

def simulated(tmp_path, name, **options):
    from smp_model.simulation.detection import simulate_detection
    return simulate_detection(tmp_path / name, seed=options.pop("seed"), name=name,
                              **options).manifest_path


def test_batch_position_search_and_shot_noise(tmp_path, cluster, capsys):
    """--optimize-position and --shot-noise on two simulated detections, one with a gain
    in its manifest and one without (which fails); the options are part of the work
    directory's settings, so changing them needs --force."""
    with_gain = simulated(tmp_path, "gained", seed=31, flux=20000.0, shot_noise_gain=4.0,
                          target_offset_px=(0.3, -0.2))
    no_gain = simulated(tmp_path, "plain", seed=32, flux=8000.0)
    listing = tmp_path / "sims.ecsv"
    Table({"manifest": [str(with_gain), str(no_gain)]}).write(listing)
    out = tmp_path / "fluxes.ecsv"
    scheduler = ["--scheduler", cluster.scheduler_address]

    code = main(["batch", str(listing), "--out", str(out), "--optimize-position",
                 "--shot-noise", *scheduler])
    err = capsys.readouterr().err
    assert code == 1 and "1 fitted, 0 skipped, 1 failed" in err, err
    failures = Table.read(BatchPaths(out).failures)
    assert list(failures["key"]) == [detection_key("plain", *_det(no_gain))]
    assert "no gain" in failures["message"][0] and "--gain" in failures["message"][0]

    phot = DetectionPhotometry(with_gain)
    expected = phot.with_shot_noise(phot.optimize_single())
    table = QTable.read(out)
    assert len(table) == 1
    row = table[0]
    assert row["fit_kind"] == "single" and row["positions"] == "searched"
    assert row["dx"].value == pytest.approx(expected.primary.dx, abs=1e-9)
    assert row["dy"].value == pytest.approx(expected.primary.dy, abs=1e-9)
    assert row["dx_err"].value == pytest.approx(expected.primary.dx_err, rel=1e-6)
    assert row["ra"].value == pytest.approx(expected.primary.ra, abs=1e-12)
    assert row["flux"] == pytest.approx(expected.flux, rel=RTOL)
    assert row["flux_sn"] == pytest.approx(expected.shot_noise.flux[0], rel=RTOL)
    assert row["flux_err_sn"] == pytest.approx(expected.shot_noise.flux_err[0], rel=RTOL)
    assert row["flux_err_sn"] > row["flux_err"]
    assert abs(row["dx"].value - 0.3) < 4 * row["dx_err"].value
    assert table.meta["optimize_position"] is True
    assert table.meta["shot_noise"] == {"gain": None, "iterations": 1}
    stored = json.loads(BatchPaths(out).options_file.read_text())
    assert stored["optimize_position"] is True and stored["shot_noise"]["gain"] is None

    # Another gain is another result: refused without --force, nothing touched.
    before = work_mtimes(out)
    code = main(["batch", str(listing), "--out", str(out), "--optimize-position",
                 "--gain", "2.5", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "other settings" in err and "shot_noise" in err, err
    assert work_mtimes(out) == before

    # With --force and a gain for every detection both are fitted.
    code = main(["batch", str(listing), "--out", str(out), "--optimize-position",
                 "--gain", "2.5", "--force", "--quiet", *scheduler])
    assert code == 0, capsys.readouterr().err
    assert not BatchPaths(out).failures.exists()
    table = QTable.read(out)
    assert len(table) == 2 and table.meta["shot_noise"] == {"gain": 2.5, "iterations": 1}
    phot = DetectionPhotometry(no_gain)
    expected = phot.with_shot_noise(phot.optimize_single(), gain=2.5)
    assert table["flux_sn"][1] == pytest.approx(expected.shot_noise.flux[0], rel=RTOL)


def _det(manifest_path):
    m = DetectionManifest.read(manifest_path)
    return m.detection_expnum, m.detection_ccdnum


def test_batch_options_in_the_work_directory(tmp_path):
    """Resume compares the new options too; work directories written before they existed
    count as made with their defaults."""
    from smp_model.batch.items import BatchError
    from smp_model.batch.work import check_outputs
    from smp_model.batch.worker import BatchOptions
    paths = BatchPaths(tmp_path / "fluxes.ecsv")
    paths.work_dir.mkdir()
    old = {"settings": FitSettings().as_meta(), "binary_search_if": None}
    paths.options_file.write_text(json.dumps(old))
    check_outputs(paths, BatchOptions(), force=False)   # same as before: accepted
    with pytest.raises(BatchError, match="optimize_position: False then, True now"):
        check_outputs(paths, BatchOptions(optimize_position=True), force=False)
    with pytest.raises(BatchError, match="shot_noise"):
        check_outputs(paths, BatchOptions(gain=4.0), force=False)

    options = BatchOptions(gain=4)
    assert options.shot_noise and options.gain == 4.0
    assert options.as_meta()["shot_noise"] == {"gain": 4.0, "iterations": 1}
    assert BatchOptions(shot_noise=True).as_meta()["shot_noise"] == {"gain": None,
                                                                     "iterations": 1}
    assert BatchOptions().as_meta()["shot_noise"] is None
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="gain"):
            BatchOptions(gain=bad)


def test_batch_bad_gain_exits_2(tmp_path, capsys):
    listing = tmp_path / "list.ecsv"
    Table({"manifest": ["missing.toml"]}).write(listing)
    assert main(["batch", str(listing), "--out", str(tmp_path / "o.ecsv"),
                 "--gain", "0"]) == 2
    err = capsys.readouterr().err
    assert "--gain: expected a finite number > 0, got '0'" in err
    assert len(err.strip().splitlines()) == 1


def test_killed_batch_keeps_finished_results(des_sample, tmp_path, reference_fluxes):
    """A batch killed mid-run (SIGKILL to its whole process group, no clean-up at all)
    leaves each finished detection's result complete and readable, and the re-run only
    fits what was missing (issue 6 item 3)."""
    import signal
    import subprocess
    import sys
    listing = tmp_path / "list.ecsv"
    Table({"manifest": [str(des_sample / n / "detection.toml") for n in SAMPLE]}).write(listing)
    out = tmp_path / "fluxes.ecsv"
    work = BatchPaths(out).work_dir
    cmd = [sys.executable, "-m", "smp_model.cli", "batch", str(listing), "--out", str(out),
           "--workers", "1", "--quiet"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not results(work) and time.monotonic() < deadline:
            assert proc.poll() is None, "the batch ended before it could be interrupted"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finished = results(work)
    assert finished and len(finished) < len(SAMPLE), "kill did not land mid-batch"
    assert not out.exists()
    by_key = {v: k for k, v in KEYS.items()}
    for path in finished:   # complete, readable, and the right numbers
        table = QTable.read(path)
        name = by_key[path.stem.split("~")[0]]
        assert table["flux"][0] == pytest.approx(reference_fluxes[name], rel=RTOL)
    before = {p.name: p.stat().st_mtime_ns for p in finished}
    assert main(["batch", str(listing), "--out", str(out), "--workers", "1", "--quiet"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in finished} == before   # not refitted
    assert len(QTable.read(out)) == len(SAMPLE)
    assert len(results(work)) == len(SAMPLE)
    assert not [p.name for p in work.iterdir() if p.name.startswith(".")]   # no temp left


def results(work: Path) -> list[Path]:
    """Finished per-detection results (not the hidden temporaries being written)."""
    return sorted(p for p in work.glob("*_*_*.ecsv") if not p.name.startswith("."))


# -- issue 13: a batch never overwrites or loses ------------------------------------------

def small_sample_manifest(des_sample, directory, name="eris", n_exposures=2):
    """A sample detection cut to ``n_exposures`` exposures (fast), written in
    ``directory`` with absolute paths."""
    manifest = DetectionManifest.read(des_sample / name / "detection.toml")
    det = manifest.detection_exposure
    others = [e for e in manifest.exposures if e is not det][:n_exposures - 1]
    return manifest.with_exposures((det, *others)).write(Path(directory) / "detection.toml")


def test_list_named_like_the_failures_file_is_never_replaced(tmp_path, capsys):
    """Finding 1: ``fluxes.failures.ecsv`` as the list with ``--out fluxes.ecsv`` used to
    be replaced by the failures table; now refused up front, even with --force."""
    listing = tmp_path / "fluxes.failures.ecsv"
    Table({"manifest": ["missing.toml"]}).write(listing)
    before = listing.read_bytes()
    for extra in ([], ["--force"]):
        code = main(["batch", str(listing), "--out", str(tmp_path / "fluxes.ecsv"), *extra])
        err = capsys.readouterr().err
        assert code == 2, err
        assert len(err.strip().splitlines()) == 1
        assert str(listing) in err and "batch list itself" in err
        assert listing.read_bytes() == before
        assert sorted(p.name for p in tmp_path.iterdir()) == [listing.name]


def test_foreign_failures_file_is_never_replaced(tmp_path, capsys):
    listing = tmp_path / "list.ecsv"
    Table({"manifest": ["missing.toml"]}).write(listing)
    out = tmp_path / "fluxes.ecsv"
    foreign = BatchPaths(out).failures
    foreign.write_text("someone's notes\n")
    code = main(["batch", str(listing), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and str(foreign) in err and "not overwritten" in err
    assert foreign.read_text() == "someone's notes\n"
    assert not BatchPaths(out).work_dir.exists() and not out.exists()


def test_list_given_as_out_is_refused(tmp_path, capsys):
    listing = tmp_path / "list.ecsv"
    Table({"manifest": ["missing.toml"]}).write(listing)
    before = listing.read_bytes()
    assert main(["batch", str(listing), "--out", str(listing), "--force"]) == 2
    assert "batch list itself" in capsys.readouterr().err
    assert listing.read_bytes() == before


def test_rerun_rewrites_both_outputs(des_sample, tmp_path, cluster, capsys):
    """Finding 2: a re-run in which every detection fails used to leave --out with the old
    successful row of a detection that the failures file now lists."""
    manifest = small_sample_manifest(des_sample, tmp_path / "eris")
    listing = tmp_path / "list.ecsv"
    Table({"manifest": [str(manifest)]}).write(listing)
    out = tmp_path / "fluxes.ecsv"
    scheduler = ["--scheduler", cluster.scheduler_address, "--quiet"]
    assert main(["batch", str(listing), "--out", str(out), *scheduler]) == 0
    assert list(QTable.read(out)["key"]) == [KEYS["eris"]]

    # The detection's stamp goes missing; --force refits it, and it fails.
    broken = DetectionManifest.read(manifest)
    exposures = tuple(dataclasses.replace(e, stamp=tmp_path / "gone.fits")
                      if e is broken.detection_exposure else e for e in broken.exposures)
    broken.with_exposures(exposures).write(manifest, overwrite=True)
    assert main(["batch", str(listing), "--out", str(out), "--force", *scheduler]) == 1
    capsys.readouterr()
    failures = Table.read(BatchPaths(out).failures)
    assert list(failures["key"]) == [KEYS["eris"]]
    table = QTable.read(out)
    assert len(table) == 0 and table.meta["n_failed"] == 1
    assert not list(BatchPaths(out).work_dir.glob("*.ecsv"))


def test_an_edited_manifest_is_fitted_again_without_force(des_sample, tmp_path, cluster,
                                                           capsys):
    """A re-run used to match finished results by key alone: a manifest edited in place
    (same name, expnum and CCD) kept its old result.  Now the result belongs to what the
    row says; the old one is replaced, an unchanged detection is still skipped."""
    eris = small_sample_manifest(des_sample, tmp_path / "eris")
    vv39 = small_sample_manifest(des_sample, tmp_path / "vv39", name="2014vv39")
    listing = tmp_path / "list.ecsv"
    Table({"manifest": [str(eris), str(vv39)]}).write(listing)
    out = tmp_path / "fluxes.ecsv"
    scheduler = ["--scheduler", cluster.scheduler_address, "--quiet"]
    assert main(["batch", str(listing), "--out", str(out), *scheduler]) == 0
    first = {row["key"]: float(row["flux"]) for row in QTable.read(out)}
    untouched = work_mtimes(out)

    manifest = DetectionManifest.read(eris)    # the detection 0.5 arcsec further east
    moved = dataclasses.replace(manifest, ra=manifest.ra + 0.5 / 3600)
    moved.write(eris, overwrite=True)
    assert main(["batch", str(listing), "--out", str(out), *scheduler]) == 0
    second = {row["key"]: float(row["flux"]) for row in QTable.read(out)}
    assert second[KEYS["2014vv39"]] == first[KEYS["2014vv39"]]
    assert second[KEYS["eris"]] == pytest.approx(fit_in_process(eris).flux, rel=RTOL)
    assert second[KEYS["eris"]] != pytest.approx(first[KEYS["eris"]], rel=1e-3)
    now = work_mtimes(out)
    assert len(now) == 2                                  # the stale result is gone
    vv39_file = next(n for n in now if n.startswith(KEYS["2014vv39"]))
    assert now[vv39_file] == untouched[vv39_file]         # not refitted


def test_colliding_keys_are_all_kept(des_sample, tmp_path, cluster, capsys):
    """Finding 3: two rows whose names sanitise to one key (``eris x``, ``eris_x``, other
    RA) used to give one result and lose the other; now each row is in the table or the
    failures, under its own key; an exactly repeated row is a failure naming the row."""
    rel = os.path.relpath(des_sample, tmp_path)
    row = {"stamps": f"{rel}/eris/stamps", "psfs": f"{rel}/psfs",
           "zeropoints": f"{rel}/zeropoints.ecsv", "band": "Y", "expnum": 234928,
           "ccdnum": 20, "dec": -3.41797168}
    listing = tmp_path / "list.csv"
    Table([{**row, "name": "eris x", "ra": 25.62472153},
           {**row, "name": "eris_x", "ra": 25.63},
           {**row, "name": "eris x", "ra": 25.62472153}]).write(listing)
    items = read_batch_list(listing)
    assert {i.key for i in items} == {"eris_x_234928_20"}

    from smp_model.batch.items import distinct_keys
    keys = [i.key for i in distinct_keys(items)]
    assert len(set(keys)) == 3
    assert keys[0].startswith("eris_x_234928_20-") and keys[1].startswith("eris_x_234928_20-")
    assert keys[0] != keys[1]
    assert distinct_keys(items)[2].error[0] == "DuplicateRow"
    assert "repeats row 1" in distinct_keys(items)[2].error[1]
    # keys follow what a row says, not where it is: stable when the list is reordered
    assert [i.key for i in distinct_keys(list(reversed(items)))][:2] == keys[:2]

    out = tmp_path / "fluxes.ecsv"
    code = main(["batch", str(listing), "--out", str(out), "--quiet",
                 "--scheduler", cluster.scheduler_address])
    assert code == 1, capsys.readouterr().err
    failures = Table.read(BatchPaths(out).failures)
    # no stamp is named "eris x_<expnum>.fits": rows 1 and 2 fail on the worker, row 3
    # repeats row 1; every row is accounted for.
    assert sorted(failures["row"]) == [1, 2, 3]
    assert len(set(failures["key"])) == 3
    assert len(QTable.read(out)) == 0


def test_no_work_directory_when_the_cluster_is_unreachable(tmp_path, des_sample):
    """Finding 9: an unreachable --scheduler used to leave an empty .work folder."""
    from smp_model.batch.run import run_batch

    def unreachable():
        raise OSError("Timed out trying to connect to tcp://10.255.255.1:8786")

    listing = tmp_path / "list.ecsv"
    Table({"manifest": [str(des_sample / "eris" / "detection.toml")]}).write(listing)
    out = tmp_path / "fluxes.ecsv"
    with pytest.raises(OSError, match="Timed out"):
        run_batch(read_batch_list(listing), out, client_factory=unreachable,
                  list_path=listing)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["list.ecsv"]


def test_too_large_detection_is_a_recorded_failure_on_the_worker(des_sample, tmp_path):
    """Finding 4 on a worker: refused from the manifest (no PSF read) and recorded."""
    from smp_model.batch.worker import BatchOptions, fit_detection
    manifest = DetectionManifest.read(des_sample / "eris" / "detection.toml")
    # The other exposures' PSF files do not exist: refused before any of them is opened.
    manifest = manifest.with_exposures(tuple(
        e if e is manifest.detection_exposure
        else dataclasses.replace(e, psf=tmp_path / f"no_psf_{e.expnum}.fits")
        for e in manifest.exposures))
    item = BatchItem(1, "eris", "eris", manifest=manifest)
    settings = dataclasses.replace(FitSettings(), memory_limit_bytes=10 * 1024 ** 2)
    t0 = time.perf_counter()
    result = fit_detection(item, BatchOptions(settings))
    assert time.perf_counter() - t0 < 2.0
    assert result["ok"] is False and result["error_type"] == "ResourceLimitError"
    assert "needs about" in result["message"]


def test_list_reading_psf_files_elsewhere_says_so(des_sample, tmp_path, capsys):
    """Finding 8 (batch part): a list that makes the batch read PSF files (code) from
    outside its own folder says so in one warning line, before any work."""
    from smp_model.batch.items import psf_sources_outside
    listing = tmp_path / "list.ecsv"
    Table({"manifest": [str(des_sample / n / "detection.toml") for n in SAMPLE]}).write(listing)
    items = read_batch_list(listing)
    outside = psf_sources_outside(items, tmp_path)
    assert len(outside) == sum(len(i.manifest.exposures) for i in items)
    assert all(des_sample / "psfs" in p.parents for p in outside)
    assert psf_sources_outside(items, des_sample) == []

    out = tmp_path / "fluxes.ecsv"
    out.write_text("precious")   # refused after the warning: nothing is fitted
    assert main(["batch", str(listing), "--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("smp: warning: ") and str(des_sample / "psfs") in lines[0]
    assert f"{len(outside)} PSF file(s)" in lines[0] and "runs code" in lines[0]
    assert lines[1].startswith("smp: error: ")


def test_manifest_psf_files_outside(des_sample):
    manifest = DetectionManifest.read(des_sample / "eris" / "detection.toml")
    assert manifest.psf_files_outside(des_sample / "eris") == [e.psf for e in manifest.exposures]
    assert manifest.psf_files_outside(des_sample) == []


@pytest.mark.parametrize("change, message", [
    ({"expnum": 234928.5}, "'expnum' must be an integer"),
    ({"ra": math.inf}, "'ra' must be in [0, 360]"),
    ({"dec": 91.0}, "'dec' must be in [-90, 90]"),
    ({"color_gi": math.inf}, "'color_gi' must be a finite number"),
    ({"origin_rule": "middle"}, "'origin_rule' must be des or piff"),
])
def test_bad_folder_row_values_fail_that_row(change, message, tmp_path):
    listing = tmp_path / "list.ecsv"
    row = {"stamps": "s", "psfs": "p", "zeropoints": "z.ecsv", "name": "x", "ra": 1.0,
           "dec": 2.0, "band": "r", "expnum": 5.0, "ccdnum": 7, "color_gi": 0.6,
           "origin_rule": "des"}
    Table([row, {**row, **change}]).write(listing)
    good, bad = read_batch_list(listing)
    assert good.error is None
    assert bad.error[0] == "ManifestError"
    assert f"{listing}: row 2: {message}" in bad.error[1]


def test_too_large_folder_row_is_refused_before_reading_psfs(des_sample, monkeypatch):
    """The folder form on a worker: refused from the stamps found (kills a surviving
    mutant that dropped the settings from the worker's folder call)."""
    import smp_model.inputs.folder
    from smp_model.batch.worker import BatchOptions, fit_detection

    def no_psf(*args):
        raise RuntimeError("a PSF file was read")
    monkeypatch.setattr(smp_model.inputs.folder, "load_psf", no_psf)
    folder = {"stamps": des_sample / "eris" / "stamps", "psfs": des_sample / "psfs",
              "zeropoints": des_sample / "zeropoints.ecsv", "name": "eris",
              "ra": 25.62472153, "dec": -3.41797168, "band": "Y", "expnum": 234928,
              "ccdnum": 20}
    item = BatchItem(1, "eris_234928_20", "eris", folder=folder)
    settings = dataclasses.replace(FitSettings(), memory_limit_bytes=10 * 1024 ** 2)
    result = fit_detection(item, BatchOptions(settings))
    assert result["ok"] is False and result["error_type"] == "ResourceLimitError", result
    assert str(des_sample / "eris" / "stamps") in result["message"]


def test_numpy_warnings_are_not_recorded():
    from smp_model.batch.worker import _warning_lines
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with np.errstate(all="warn"):
            np.array([1e300]) * 1e300
        warnings.warn("exposure 1 (CCD 2) dropped: no usable pixel")
    assert _warning_lines(caught) == ["exposure 1 (CCD 2) dropped: no usable pixel"]


def test_each_manifest_is_read_once_to_parse_and_fingerprint(tmp_path, monkeypatch):
    """The batch read every manifest twice: to parse it and again for its fingerprint."""
    from smp_model.simulation.demo import demo_manifest_path
    manifest = demo_manifest_path()
    listing = tmp_path / "list.ecsv"
    Table({"manifest": [str(manifest)]}).write(listing)
    opened = []
    real_open = Path.open

    def counting_open(self, *args, **kwargs):
        if self.name == manifest.name:
            opened.append(self)
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", counting_open)
    [item] = read_batch_list(listing)
    fingerprint = item.fingerprint
    assert len(opened) == 1
    # and the fingerprint is of the file's bytes, as before
    import hashlib
    assert fingerprint == hashlib.sha256(str(manifest).encode() + b"\0"
                                         + manifest.read_bytes()).hexdigest()
