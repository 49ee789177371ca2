"""smp_model: scene-modelling photometry (SMP) of moving objects in survey images.

The engine of SMP Inspector, after Bernardinelli et al. (2023, ApJS 269, 18).  No Qt here:
everything is usable from scripts and notebooks::

    from smp_model import DetectionPhotometry, FitSettings
    phot = DetectionPhotometry("detection.toml", FitSettings(convention="exact"))
    fit = phot.fit_single()
    print(fit.flux, fit.flux_err, fit.mag)
"""
from .errors import (FitError, ManifestError, MissingDependencyError, PSFError,
                     ResourceLimitError, SMPError, StampError, ZeropointError)
from .fit import BinaryFit, DetectionPhotometry, SceneFit, SingleFit, SourceEstimate
from .manifest import DetectionManifest, ExposureEntry
from .scene import FitSettings, SceneModel

__version__ = "0.1.0"

__all__ = [
    "BinaryFit", "DetectionManifest", "DetectionPhotometry", "ExposureEntry", "FitError",
    "FitSettings", "ManifestError", "MissingDependencyError", "PSFError",
    "ResourceLimitError", "SMPError", "SceneFit", "SceneModel", "SingleFit",
    "SourceEstimate", "StampError", "ZeropointError", "__version__",
]
