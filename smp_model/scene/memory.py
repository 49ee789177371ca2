"""The memory a fit needs, estimated from the manifest and the detection stamp alone, so
that a detection too large for the machine is refused before any PSF file is read."""
from __future__ import annotations

from ..inputs.manifest import DetectionManifest
from ..inputs.stamps import Stamp, read_stamp
from ..limits import fit_memory_bytes, memory_refusal
from ..settings import FitSettings

__all__ = ["check_fit_memory", "estimate_fit_memory"]


def estimate_fit_memory(manifest: DetectionManifest, settings: FitSettings) -> int:
    """Bytes the fit of ``manifest`` with ``settings`` needs at most, from the manifest and
    the detection stamp alone (all stamps of a detection share its shape): no PSF file
    and no other stamp is read.  Raises `StampError` if the detection stamp is unusable."""
    return fit_memory_bytes(len(manifest.exposures), _detection_pixels(manifest),
                            settings.grid_size)


def check_fit_memory(manifest: DetectionManifest, settings: FitSettings,
                     detection_stamp: Stamp | None = None) -> None:
    """Raise `ResourceLimitError` (naming the manifest) if the fit of ``manifest`` would
    need more than ``settings.memory_limit_bytes`` (`estimate_fit_memory`); call it before
    loading the detection.  ``detection_stamp``: the detection exposure's stamp, when
    already read (it is read otherwise)."""
    pixels = (_detection_pixels(manifest) if detection_stamp is None
              else detection_stamp.sci.size)
    error = memory_refusal(len(manifest.exposures), pixels, settings.grid_size,
                           settings.memory_limit_bytes, manifest.path or manifest.name)
    if error is not None:
        raise error


def _detection_pixels(manifest: DetectionManifest) -> int:
    return read_stamp(manifest.detection_exposure.stamp).sci.size
