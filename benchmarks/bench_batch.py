"""Detections per second of `smp batch` with 1 and 2 local workers on the same list.

The list is the three real sample detections repeated (each copy a renamed manifest, so
that every item is its own detection with its own work file).  Each worker count writes to
its own output folder, so nothing is skipped.  Two rates are printed per worker count:
fitting (from the first task submitted to the last result, as `smp batch` reports it) and
end to end (including starting and stopping the LocalCluster).

    .venv/bin/python benchmarks/bench_batch.py [--repeat 2] [--workers 1,2]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

from astropy.table import Table

from smp_model.batch.items import read_batch_list
from smp_model.batch.run import open_client, run_batch
from smp_model.batch.worker import BatchOptions
from smp_model.inputs.manifest import DetectionManifest

REPO = Path(__file__).resolve().parent.parent
SAMPLE = ("eris", "2014vv39", "2014lq28")


def sample_dir() -> Path:
    return Path(os.environ.get("SMP_DES_SAMPLE") or REPO.parent / "shared" / "des-sample")


def make_list(folder: Path, repeat: int) -> Path:
    """A batch list of the sample detections, ``repeat`` renamed copies of each."""
    paths = []
    for copy in range(repeat):
        for name in SAMPLE:
            manifest = DetectionManifest.read(sample_dir() / name / "detection.toml")
            renamed = dataclasses.replace(manifest, name=f"{name}-copy{copy}")
            paths.append(str(renamed.write(folder / f"{name}-copy{copy}.toml")))
    listing = folder / "list.ecsv"
    Table({"manifest": paths}).write(listing)
    return listing


def run(listing: Path, workers: int, out_dir: Path) -> tuple[float, float, int, float, float]:
    """(fitting rate, end-to-end rate, detections fitted, mean wall and mean CPU seconds
    per detection on a worker) with ``workers`` local workers."""
    items = read_batch_list(listing)
    t0 = time.perf_counter()
    report = run_batch(items, out_dir / f"fluxes-{workers}w.ecsv", BatchOptions(),
                       client_factory=lambda: open_client(workers=workers), force=True)
    wall = time.perf_counter() - t0
    if report.failed:
        raise SystemExit(f"{len(report.failed)} detection(s) failed: "
                         f"{report.failed[0].message}")
    done = report.outcomes
    return (report.rate, report.computed / wall, report.computed,
            sum(o.seconds for o in done) / len(done),
            sum(o.cpu_seconds for o in done) / len(done))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2, help="copies of each detection (2)")
    parser.add_argument("--workers", default="1,2", help="worker counts to compare (1,2)")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.workers.split(",")]
    # Other processes on the machine change the scaling: say how busy it was.
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="smp-bench-batch-") as tmp:
        listing = make_list(Path(tmp), args.repeat)
        rates = {}
        for n in counts:
            fit_rate, wall_rate, done, wall_each, cpu_each = run(listing, n, Path(tmp))
            rates[n] = (fit_rate, wall_rate)
            # CPU < wall per detection: the workers waited for a core (other processes).
            print(f"{n} worker(s): {done} detections, {fit_rate:.3f} detections/s fitting, "
                  f"{wall_rate:.3f} detections/s end to end; per detection on a worker "
                  f"{wall_each:.2f} s wall, {cpu_each:.2f} s CPU", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    base = counts[0]
    for n in counts[1:]:
        print(f"scaling {n} vs {base} worker(s): x{rates[n][0] / rates[base][0]:.2f} fitting, "
              f"x{rates[n][1] / rates[base][1]:.2f} end to end "
              f"(os.cpu_count() = {os.cpu_count()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
