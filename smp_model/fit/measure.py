"""The one entry point that runs a `FitRequest` on a loaded detection: the CLI, the GUI's
worker and the batch all call `measure`.
"""
from __future__ import annotations

import dataclasses

from .photometry import DetectionPhotometry
from .request import FitRequest
from .results import SceneFit

__all__ = ["measure"]


def measure(photometry: "DetectionPhotometry", request: FitRequest, preview: bool = False
            ) -> "SceneFit":
    """Run ``request`` on a loaded detection (built with ``request.settings``).

    ``preview``: a refit that follows a marker drag; fixed-position fits are then
    `SceneFit.preview` fits (the same result, its chi2 from the linear solve and the
    exposures' models computed only when asked for)."""
    if photometry.settings != request.settings:
        raise ValueError("the detection was built with other settings than the request's")
    start = request.target_offsets.array
    if request.mode == "single":
        fit = (photometry.optimize_single(start[0]) if request.optimize
               else photometry.fit_single(start[0], preview=preview))
        if request.binary_search_if is not None:
            fit = _with_binary_search(photometry, fit, request.binary_search_if)
    else:
        published = request.target_offsets.published
        fit = (photometry.optimize_binary(published) if request.optimize
               else photometry.fit_binary(published, preview=preview))
    if request.shot_noise:
        fit = photometry.with_shot_noise(fit, request.gain, request.shot_noise_iterations)
    return dataclasses.replace(fit, request=request)


def _with_binary_search(photometry, single, threshold: float):
    """The batch's rule: search a binary from the default start; keep it when its delta
    chi2 (single optimised as the binary was) exceeds ``threshold``."""
    import warnings

    from ..errors import FitError
    try:
        binary = photometry.optimize_binary(photometry.settings.default_binary_offsets)
    except FitError as exc:
        warnings.warn(f"binary search failed, single fit kept: {exc.one_line()}",
                      stacklevel=2)
        return single
    kept = binary if binary.delta_chi2 > threshold else single
    return dataclasses.replace(kept, binary_search_delta_chi2=binary.delta_chi2)
