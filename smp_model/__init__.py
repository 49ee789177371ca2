"""smp_model: scene-modelling photometry (SMP) of moving objects in survey images.

The engine of SMP Inspector, after Bernardinelli et al. (2023, ApJS 269, 18).  No Qt here:
everything is usable from scripts and notebooks::

    from smp_model import DetectionPhotometry, FitSettings
    phot = DetectionPhotometry("detection.toml", FitSettings(convention="exact"))
    fit = phot.fit_single()
    print(fit.flux, fit.flux_err, fit.mag)
"""
from __future__ import annotations

import importlib

from .errors import (FitError, ManifestError, MissingDependencyError, PSFError,
                     ResourceLimitError, SMPError, StampError, ZeropointError)

__version__ = "0.1.0"

# The engine classes are imported on first use (PEP 562): `smp --version`, `smp --help`
# and the batch client must not pay for galsim, Piff and scipy.
_LAZY = {
    # inputs
    "DetectionManifest": "inputs.manifest", "ExposureEntry": "inputs.manifest",
    "read_stamp": "inputs.stamps", "manifest_from_folder": "inputs.folder",
    "load_psf": "psf.models",
    # the fit
    "FitSettings": "settings", "SceneModel": "scene.model",
    "DetectionPhotometry": "fit.photometry", "SceneFit": "fit.results",
    "SingleFit": "fit.results", "BinaryFit": "fit.results", "SourceEstimate": "fit.results",
    "FitRequest": "fit.request", "TargetOffsets": "fit.request", "measure": "fit.measure",
    # outputs
    "fit_record": "outputs.record", "write_table": "outputs.tables",
    "write_fits": "outputs.cubes", "write_regions": "outputs.regions",
    # simulation and validation
    "simulate_detection": "simulation.detection", "run_validation": "validation.injection",
}

__all__ = sorted([*_LAZY, "FitError", "ManifestError", "MissingDependencyError",
                  "PSFError", "ResourceLimitError", "SMPError", "StampError",
                  "ZeropointError", "__version__"])


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
