"""One writer per batch output (issue 27): two ``smp batch`` runs on one ``--out`` never
both report success; a killed run's lock does not block the next one; SIGTERM ends a
batch with a message, its lock released and no leaked-semaphore warning."""
from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from astropy.table import QTable, Table

from smp_model.batch.lock import lock_path
from smp_model.batch.work import BatchPaths
from smp_model.cli.command import main
from smp_model.inputs.manifest import DetectionManifest

REPO = Path(__file__).resolve().parent.parent


def small_list(des_sample: Path, directory: Path, names=("eris", "2014vv39")) -> Path:
    """A batch list of sample detections cut to 2 exposures each (fast)."""
    manifests = []
    for name in names:
        manifest = DetectionManifest.read(des_sample / name / "detection.toml")
        det = manifest.detection_exposure
        other = next(e for e in manifest.exposures if e is not det)
        folder = directory / name
        folder.mkdir()
        manifests.append(str(manifest.with_exposures((det, other)).write(
            folder / "detection.toml")))
    listing = directory / "list.ecsv"
    Table({"manifest": manifests}).write(listing)
    return listing


def smp_batch(*args) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.Popen([sys.executable, "-m", "smp_model.cli", "batch", *map(str, args),
                             "--workers", "1", "--quiet"], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_two_batches_started_together_on_one_output(des_sample, tmp_path):
    """Issue 27: both exited 0 and the output held one run's rows only.  Now the one that
    comes second refuses at once, in one line naming the running one."""
    listing = small_list(des_sample, tmp_path)
    out = tmp_path / "fluxes.ecsv"
    runs = {"grid 10": smp_batch(listing, "--out", out, "--grid", "10"),
            "default": smp_batch(listing, "--out", out)}
    results = {what: (p.wait(timeout=300), *p.communicate()) for what, p in runs.items()}
    codes = sorted(code for code, _, _ in results.values())
    assert codes == [0, 2], results
    winner = next(what for what, (code, _, _) in results.items() if code == 0)
    loser_err = next(err for code, _, err in results.values() if code == 2)
    assert "Traceback" not in loser_err
    lines = [line for line in loser_err.strip().splitlines()   # the list's trust warning
             if not line.startswith("smp: warning: ")]
    assert len(lines) == 1 and lines[0].startswith("smp: error: "), loser_err
    assert str(out) in lines[0] and "another smp batch is writing this output" in lines[0]
    assert f"pid {runs[winner].pid} on host " in lines[0]
    table = QTable.read(out)
    assert len(table) == 2
    grid = json.loads(BatchPaths(out).options_file.read_text())["settings"]["grid_size"]
    assert grid == (10 if winner == "grid 10" else 20)
    assert not lock_path(out).exists()


def unreadable_rows_list(tmp_path: Path) -> Path:
    """A list whose rows fail without a cluster: a batch that only takes its lock,
    records the failures and writes its outputs."""
    listing = tmp_path / "list.ecsv"
    Table({"manifest": ["missing.toml"]}).write(listing)
    return listing


def held_lock(out: Path):
    """The lock of ``out`` held, as by a batch (pid 4242 on survey-node-7) still running:
    an open file holding the flock (closing it releases the lock)."""
    lock = lock_path(out)
    lock.write_text(json.dumps({"pid": 4242, "host": "survey-node-7",
                                "started": "2026-01-01T00:00:00Z"}) + "\n")
    held = open(lock)
    fcntl.flock(held, fcntl.LOCK_EX)
    return held


def test_a_held_lock_refuses_the_run_and_writes_nothing(tmp_path, capsys):
    listing, out = unreadable_rows_list(tmp_path), tmp_path / "fluxes.csv"
    with held_lock(out):
        code = main(["batch", str(listing), "--out", str(out), "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [
        f"smp: error: {out}: another smp batch is writing this output (pid 4242 on host "
        "survey-node-7, started 2026-01-01T00:00:00Z); wait for it to end (--wait) or choose "
        "another --out"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fluxes.csv.lock", "list.ecsv"]


def test_a_killed_runs_lock_is_taken_over_and_said_so(tmp_path, capsys):
    """A run killed with SIGKILL leaves its lock file; the kernel released its lock, so
    the next run takes it over (and says whose it was)."""
    listing, out = unreadable_rows_list(tmp_path), tmp_path / "fluxes.csv"
    lock_path(out).write_text(json.dumps({"pid": 999999, "host": "old-host",
                                          "started": "2026-01-01T00:00:00Z"}) + "\n")
    assert main(["batch", str(listing), "--out", str(out), "--workers", "1"]) == 1
    err = capsys.readouterr().err
    assert f"took over {lock_path(out)} left by pid 999999 on host old-host" in err
    assert len(Table.read(out)) == 0 and not lock_path(out).exists()


def test_sigterm_ends_a_batch_with_a_message(des_sample, tmp_path):
    """Issue 27: SIGTERM ended the batch without a word, and the resource tracker warned
    of leaked semaphores.  Now: one line saying what is kept, exit 143, the cluster closed,
    the lock released, and the re-run resumes."""
    listing = small_list(des_sample, tmp_path, names=("eris", "2014vv39", "2014lq28"))
    out = tmp_path / "fluxes.ecsv"
    work = BatchPaths(out).work_dir
    proc = smp_batch(listing, "--out", out)
    deadline = time.monotonic() + 180
    while not list(work.glob("*_*_*.ecsv")) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=120)
    _, err = proc.communicate()
    assert code == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and "leaked semaphore" not in err, err
    assert err.strip().splitlines()[-1] == (
        f"smp: batch stopped (SIGTERM); the finished results are kept in {work}: run the "
        "same command again to resume")
    assert not lock_path(out).exists() and not out.exists()
    assert main(["batch", str(listing), "--out", str(out), "--workers", "1", "--quiet"]) == 0
    assert len(QTable.read(out)) == 3


def flock_waiter_blocked(path: Path, timeout: float = 60.0) -> bool:
    """Whether a process is blocked waiting for the flock of ``path`` (Linux /proc/locks
    lists a blocked request with "->"), polled up to ``timeout`` seconds."""
    inode = f":{path.stat().st_ino} "
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any("->" in line and inode in line
               for line in Path("/proc/locks").read_text().splitlines()):
            return True
        time.sleep(0.02)
    return False


def test_wait_waits_for_the_running_batch(tmp_path, capsys):
    """``--wait``: the second run says whom it waits for, then runs once the lock is free."""
    listing, out = unreadable_rows_list(tmp_path), tmp_path / "fluxes.csv"
    lock = lock_path(out)
    held = held_lock(out)
    waited = []

    def running_batch_ends():   # once the run waits: its lock file removed, then released
        waited.append(flock_waiter_blocked(lock))
        lock.unlink()
        held.close()
    releaser = threading.Thread(target=running_batch_ends)
    releaser.start()
    try:
        code = main(["batch", str(listing), "--out", str(out), "--workers", "1", "--wait"])
    finally:
        releaser.join()
    assert waited == [True]
    assert code == 1   # its one row fails
    err = capsys.readouterr().err
    assert (f"smp: warning: waiting for the smp batch writing {out} (pid 4242 on host "
            "survey-node-7, started 2026-01-01T00:00:00Z) to end") in err
    assert "took over" not in err   # the lock file it waited on was gone: a new one made
    assert len(Table.read(out)) == 0 and not lock.exists()
