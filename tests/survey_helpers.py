"""A tiny simulated survey fitted by the real batch, shared by the survey tests."""
from __future__ import annotations

import contextlib
from pathlib import Path

from smp_model.batch.items import read_batch_list
from smp_model.batch.run import run_batch
from smp_model.batch.worker import BatchOptions
from smp_model.simulation.survey import SurveyObject, simulate_survey

TINY = (SurveyObject("rotator", 6, 20.6, period_hours=7.3, amplitude_mag=0.6,
                     bands=("r",)),
        SurveyObject("binary", 2, 20.8, binary=True),
        SurveyObject("flagged", 2, 21.0, flagged_detection=1))


@contextlib.contextmanager
def threads_client():
    """The batch's dask client on an in-process cluster (no worker start-up)."""
    from distributed import Client, LocalCluster
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


def make_tiny_survey(folder: Path):
    """(folder, batch output, truth table): 10 detections, `smp batch --binary-search-if
    25` with default settings."""
    truth = simulate_survey(folder, seed=3, objects=TINY, n_exposures=4)
    out = folder / "fluxes.ecsv"
    report = run_batch(read_batch_list(folder / "detections.ecsv"), out,
                       BatchOptions(binary_search_if=25.0), client_factory=threads_client,
                       list_path=folder / "detections.ecsv")
    assert report.counts["failed"] == 0
    return folder, out, truth
