"""Survey view speed (headless).

1. A synthetic 10,000-detection batch output (ECSV written by the batch's own writer, the
   columns of `smp batch --binary-search-if`, 1 in 10 detections a binary): time to read it
   into the survey model, to show it in the survey window (table, plots, painted), and to
   filter it (model only, and window: table reset + plots redrawn).  Targets: open < 1 s,
   filter < 0.1 s.
2. Stepping to the next detection in the inspector (N) on a real batch output (default:
   `smp batch` of the three DES sample detections, run here first): time from the key to
   the new detection's panels shown, (a) after the neighbour was prefetched, (b) with
   prefetching off (a cold build).  Target: < 0.3 s.

    python benchmarks/bench_survey.py [--rows 10000] [--batch OUT.ecsv] [--json]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OPEN_TARGET_S, FILTER_TARGET_S, STEP_TARGET_S = 1.0, 0.1, 0.3
FILTERS = ("chi2_dof > 1.5", "flags != 0", "binary_delta_chi2 > 25",
           'name == "obj0042"',
           'chi2_dof > 1.2 and (band == "r" or flags & exposure_dropped != 0)')


def synthetic_batch(path: Path, n: int, seed: int = 0) -> None:
    """``n`` detections of ``n // 20`` objects as `smp batch` writes them."""
    import numpy as np
    from astropy.table import Table

    from smp_model.outputs.tables import write_table
    rng = np.random.default_rng(seed)
    binary = rng.random(n) < 0.1
    det = np.repeat(np.arange(n), np.where(binary, 2, 1))
    m = len(det)
    flux = rng.lognormal(7.5, 0.6, m)
    cols = {
        "key": np.array([f"obj{d // 20:04d}_{200000 + d}_{1 + d % 60}" for d in det]),
        "input": np.array([f"/survey/obj{d // 20:04d}/{d:05d}/detection.toml" for d in det]),
        "name": np.array([f"obj{d // 20:04d}" for d in det]),
        "expnum": 200000 + det, "ccdnum": 1 + det % 60,
        "band": rng.choice(list("griz"), n)[det],
        "fit_kind": np.where(binary[det], "binary", "single"),
        "component": np.where(binary[det], np.where(np.r_[True, det[1:] != det[:-1]],
                                                    "primary", "secondary"), "target"),
        "flux": flux, "flux_err": flux * 0.03, "flux_err_total": np.full(m, math.nan),
        "mag": 30 - 2.5 * np.log10(flux), "mag_err": np.full(m, 0.0326),
        "mag_limit_3sigma": np.full(m, 24.0),
    }
    for name in ("x", "y", "dx", "dy", "dx_err", "dy_err", "ra", "dec"):
        cols[name] = rng.normal(size=m)
    cols["chi2"] = rng.normal(3000, 80, n)[det]
    cols["dof"] = np.full(m, 2900)
    for name in ("delta_chi2", "separation", "separation_err", "separation_arcsec",
                 "separation_arcsec_err", "position_angle", "position_angle_err"):
        cols[name] = np.where(binary[det], rng.random(m), math.nan)
    cols["convention"] = np.full(m, "exact")
    cols["grid_size"] = np.full(m, 20)
    cols["grid_step"] = np.full(m, 0.35)
    cols["fit_sky"] = np.ones(m, bool)
    cols["flags"] = np.where(binary[det], 0, 2)
    cols["n_exposures"] = np.full(m, 8)
    cols["n_dropped"] = (rng.random(n) < 0.02).astype(int)[det]
    cols["mjd"] = rng.uniform(56500, 58000, n)[det]
    cols["binary_delta_chi2"] = np.where(binary, rng.uniform(25, 300, n),
                                         rng.exponential(5, n))[det]
    table = Table(cols)
    table.meta = {"settings": {"convention": "exact", "fit_sky": True, "grid_size": 20,
                               "grid_step_arcsec": 0.35, "oversampling": 6},
                  "binary_search_if": 25.0, "optimize_position": False, "shot_noise": None}
    write_table(table, path, overwrite=True)


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_table(rows: int) -> dict:
    from PyQt6.QtWidgets import QApplication

    from smp_gui.survey import SurveyWindow
    from smp_model.survey.core import Survey
    app = QApplication.instance() or QApplication(sys.argv[:1])
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fluxes.ecsv"
        synthetic_batch(path, rows)
        Survey.open(path)   # warm the imports once (the app imports them at start-up)
        out["rows_in_file"] = sum(1 for line in open(path) if not line.startswith("#")) - 1
        out["open_model_s"] = median_time(lambda: Survey.open(path), 5)
        survey = Survey.open(path)
        out["filter_model_s"] = max(median_time(lambda e=e: survey.select(e), 20)
                                    for e in FILTERS)
        out["filter_sort_model_s"] = median_time(
            lambda: survey.select(FILTERS[0], "mag", True), 20)
        window = SurveyWindow()
        window.show()

        def open_window():
            window.open_survey(path)
            app.processEvents()
        out["open_window_s"] = median_time(open_window, 3)

        def filter_window(expression):
            window.set_filter(expression)
            app.processEvents()
        out["filter_window_s"] = max(median_time(lambda e=e: filter_window(e), 5)
                                     for e in FILTERS + ("",))
        window.shutdown()
        window.close()
    return out


@contextlib.contextmanager
def threads_client():
    from distributed import Client, LocalCluster
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


def sample_batch(folder: Path) -> Path:
    from astropy.table import Table

    from smp_model.batch.items import read_batch_list
    from smp_model.batch.run import run_batch
    sample = Path(os.environ.get("SMP_DES_SAMPLE") or ROOT.parent / "shared" / "des-sample")
    listing = folder / "detections.ecsv"
    Table({"manifest": [str(sample / n / "detection.toml")
                        for n in ("eris", "2014vv39", "2014lq28")]}).write(listing)
    out = folder / "fluxes.ecsv"
    run_batch(read_batch_list(listing), out, client_factory=threads_client,
              list_path=listing)
    return out


def bench_steps(batch: Path) -> dict:
    from PyQt6.QtWidgets import QApplication

    from smp_gui import loader
    from smp_gui.controller import preload_engine
    from smp_gui.survey import window as survey_window
    from smp_gui.windows import WindowManager
    from smp_model.blas import limit_blas_threads
    app = QApplication.instance() or QApplication(sys.argv[:1])
    limit_blas_threads()
    preload_engine()
    window = WindowManager().new_survey()
    window.show()
    window.open_survey(batch)
    survey = window.survey

    def wait(condition, timeout=180.0):
        deadline = time.perf_counter() + timeout
        while not condition():
            app.processEvents()
            time.sleep(0.001)
            if time.perf_counter() > deadline:
                raise TimeoutError

    def shown(key):
        inspector = window.inspector
        spec = survey.open_spec(key)
        return (inspector is not None and inspector.result is not None
                and Path(inspector.result.request.manifest_path) == spec.manifest
                and not inspector.controller.busy)

    def step_time(row) -> float:
        key = window.model.key_at(row + 1)
        t0 = time.perf_counter()
        window.next_action.trigger()
        wait(lambda: shown(key))
        app.processEvents()
        return time.perf_counter() - t0

    out = {"detections": len(survey)}
    n = window.model.rowCount()
    window.table.selectRow(0)
    window.open_in_inspector()
    wait(lambda: shown(window.model.key_at(0)))
    prefetched = []
    for row in range(n - 1):
        spec = survey.open_spec(window.model.key_at(row + 1))
        wait(lambda s=spec: loader.prefetched.is_ready(s.manifest, s.settings))
        prefetched.append(step_time(row))
    out["step_prefetched_s"] = prefetched
    # the same steps without prefetching: each a cold build in the child process
    loader.prefetched.clear()
    survey_window.PREFETCH_NEIGHBOURS = 0
    window.table.selectRow(0)
    window.open_in_inspector()
    wait(lambda: shown(window.model.key_at(0)))
    loader.prefetched.clear()
    cold = [step_time(row) for row in range(n - 1)]
    out["step_cold_s"] = cold
    window.shutdown()
    window.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--batch", type=Path, help="batch output to step through "
                        "(default: smp batch of the DES sample, run now)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = bench_table(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        batch = args.batch or sample_batch(Path(tmp))
        result.update(bench_steps(batch))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    verdict = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    print(f"survey table, {args.rows} detections ({result['rows_in_file']} rows):")
    print(f"  open: model {result['open_model_s']:.3f} s, window (table + plots painted) "
          f"{result['open_window_s']:.3f} s  (target < {OPEN_TARGET_S} s: "
          f"{verdict(result['open_window_s'] < OPEN_TARGET_S)})")
    print(f"  filter: model {1000 * result['filter_model_s']:.1f} ms (+ sort "
          f"{1000 * result['filter_sort_model_s']:.1f} ms), window "
          f"{1000 * result['filter_window_s']:.0f} ms  (target < "
          f"{1000 * FILTER_TARGET_S:.0f} ms: "
          f"{verdict(result['filter_window_s'] < FILTER_TARGET_S)})")
    pre, cold = result["step_prefetched_s"], result["step_cold_s"]
    print(f"next detection in the inspector ({result['detections']} detections):")
    print(f"  prefetched: {', '.join(f'{t:.3f}' for t in pre)} s  (target < "
          f"{STEP_TARGET_S} s: {verdict(max(pre) < STEP_TARGET_S)})")
    print(f"  cold (no prefetch): {', '.join(f'{t:.3f}' for t in cold)} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
