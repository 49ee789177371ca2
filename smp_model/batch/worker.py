"""What a Dask worker runs: the fit of one detection of a batch (`fit_detection`), which
returns one small flux table (or the failure's one-line reason), never images.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

from ..errors import is_numpy_warning, one_line
from ..fit.request import FitRequest
from ..settings import FitSettings
from .items import BatchItem

__all__ = ["BatchOptions", "fit_detection"]


@dataclass(frozen=True)
class BatchOptions:
    """What is fitted for every detection.

    The single fit puts the target at the convention's default offset, or, with
    ``optimize_position``, searches its position from there
    (`DetectionPhotometry.optimize_single`: dx, dy, their errors and the fitted RA/Dec
    in the table).

    With ``binary_search_if`` set, a binary search (`DetectionPhotometry.optimize_binary`,
    from the convention's default offset and one pixel further in x and y) follows the
    single fit, and the binary result is kept when its delta chi2 (best single minus best
    binary) exceeds ``binary_search_if``; the column ``binary_delta_chi2`` records the
    value either way and ``fit_kind`` says which fit was kept.

    With ``shot_noise`` the kept fit is refitted with the source's Poisson variance
    (`DetectionPhotometry.with_shot_noise`, ``shot_noise_iterations`` refits) using
    ``gain`` (electrons per SCI unit of the detection stamp) or, when ``gain`` is None,
    the detection exposure's ``gain`` in the manifest (a detection without one fails);
    the table then has ``flux_sn, flux_err_sn, mag_sn, mag_err_sn``.  A ``gain`` implies
    ``shot_noise``.
    """
    settings: FitSettings = FitSettings()
    binary_search_if: float | None = None
    optimize_position: bool = False
    shot_noise: bool = False
    gain: float | None = None
    shot_noise_iterations: int = 1

    def __post_init__(self):
        request = self.request   # checks the values, once, where every fit request is
        object.__setattr__(self, "gain", request.gain)
        object.__setattr__(self, "shot_noise", request.shot_noise)

    @property
    def request(self) -> FitRequest:
        """What is fitted for every detection, as the engine's one request type."""
        return FitRequest(mode="single", optimize=self.optimize_position,
                          shot_noise=self.shot_noise, gain=self.gain,
                          shot_noise_iterations=self.shot_noise_iterations,
                          binary_search_if=self.binary_search_if, settings=self.settings)

    def as_meta(self) -> dict:
        """Everything that changes the results (stored in the work directory: a resumed
        batch must have the same)."""
        return {"settings": self.settings.as_meta(),
                "binary_search_if": self.binary_search_if,
                "optimize_position": self.optimize_position,
                "shot_noise": ({"gain": self.gain, "iterations": self.shot_noise_iterations}
                               if self.shot_noise else None)}


def fit_detection(item: BatchItem, options: BatchOptions) -> dict:
    """Fit one detection; never raises for a bad detection.

    Returns ``{"key", "ok": True, "table": QTable, "seconds", "cpu_seconds", "warnings"}``
    or ``{"key", "ok": False, "error_type", "message", "seconds", "cpu_seconds",
    "warnings"}`` (wall and worker-process CPU time).  Only the small flux table travels
    back to the client.
    """
    from ..fit.measure import measure
    from ..fit.photometry import DetectionPhotometry
    from ..inputs.folder import manifest_from_folder
    from ..outputs.tables import fit_table

    t0, cpu0 = time.perf_counter(), time.process_time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            manifest = item.manifest or manifest_from_folder(**item.folder,
                                                             settings=options.settings)
            options.request.check_gain(manifest)   # before any PSF is rendered
            phot = DetectionPhotometry(manifest, options.settings)
            table = fit_table(measure(phot, options.request))   # binary_delta_chi2 included
        # One bad detection must not end a batch of thousands: every error, including an
        # unexpected one, is reported with its type and recorded as a failure.
        except Exception as exc:   # noqa: BLE001
            return {"key": item.key, "ok": False, "error_type": type(exc).__name__,
                    "message": one_line(exc), "seconds": time.perf_counter() - t0,
                    "cpu_seconds": time.process_time() - cpu0,
                    "warnings": _warning_lines(caught)}
    table.add_column(item.key, name="key", index=0)
    table.add_column(item.input, name="input", index=1)
    used, dropped = table.meta["exposures_used"], table.meta["exposures_dropped"]
    table["n_exposures"] = len(used)
    table["n_dropped"] = len(dropped)
    table.meta["batch"] = {"key": item.key, "input": item.input, "row": item.row,
                           **options.as_meta(), "warnings": _warning_lines(caught)}
    return {"key": item.key, "ok": True, "table": table,
            "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - cpu0,
            "warnings": _warning_lines(caught)}


def _warning_lines(caught) -> list[str]:
    return [" ".join(str(w.message).split()) for w in caught
            if not (issubclass(w.category, RuntimeWarning) and is_numpy_warning(str(w.message)))]
