"""What a simulation drew, written beside it as ``truth.json``: the target and scene
sources and each exposure's PSF, WCS, zeropoint and noise (`SimulationTruth`).  Fluxes are
counts on zeropoint 30, positions ICRS degrees.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import galsim
import numpy as np

from ..files import atomic_write_bytes
from .config import GSPARAMS, MANIFEST_FILENAME, SimulationConfig

__all__ = ["TRUTH_FORMAT", "ExposureTruth", "SceneSource", "SimulationTruth", "TargetSource"]

TRUTH_FORMAT = "smp-simulation-truth/1"


@dataclass(frozen=True)
class TargetSource:
    """A point source of the moving target, in the detection exposure.

    flux : ZP30.  x, y : 1-indexed CCD position.  dx, dy : pixels from the WCS position of
    the manifest (ra, dec) (the engine's exact-convention offsets).  ra, dec : degrees.
    """

    flux: float
    x: float
    y: float
    dx: float
    dy: float
    ra: float
    dec: float


@dataclass(frozen=True)
class SceneSource:
    """A static source: ``kind`` 'star' or 'galaxy'; flux ZP30; (u, v) arcsec tangent-plane
    offsets from the manifest (ra, dec) (u west, v north); ra, dec degrees; galaxies have a
    Sersic index, half-light radius (arcsec) and shear (g1, g2)."""

    kind: str
    flux: float
    u: float
    v: float
    ra: float
    dec: float
    sersic_n: float = 0.0
    half_light_radius: float = 0.0
    g1: float = 0.0
    g2: float = 0.0

    def profile(self) -> galsim.GSObject:
        """The source before the PSF, in arcsec, with its total flux (ZP30)."""
        if self.kind == "star":
            return galsim.DeltaFunction(flux=self.flux, gsparams=GSPARAMS)
        return galsim.Sersic(self.sersic_n, half_light_radius=self.half_light_radius,
                             flux=self.flux, gsparams=GSPARAMS).shear(g1=self.g1, g2=self.g2)


@dataclass(frozen=True)
class ExposureTruth:
    """How one exposure was simulated.  ``target_xy``: 1-indexed CCD position of the
    manifest (ra, dec); ``sky_sigma`` and ``sky_offset``: SCI counts; ``rotation_deg``:
    angle of the CCD axes on the sky; ``psf_g1/g2``: PSF shear."""

    expnum: int
    ccdnum: int
    zeropoint: float
    fwhm_arcsec: float
    psf_kind: str
    psf_g1: float
    psf_g2: float
    rotation_deg: float
    sky_sigma: float
    sky_offset: float
    target_xy: tuple[float, float]
    stamp_origin: tuple[int, int]
    n_masked: int
    is_detection: bool
    pointing: tuple[float, float] | None = None   # (ra, dec) degrees, with ccd_images


@dataclass(frozen=True)
class SimulationTruth:
    """What `simulate_detection` drew (also stored as ``truth.json`` next to the manifest).

    ``sources``: the target's point source(s), primary first (ZP30 fluxes, CCD positions
    and offsets in the detection exposure).  For a binary, ``separation_px`` (detection
    exposure pixels), ``separation_arcsec`` and ``position_angle_deg`` (secondary from
    primary, east of north) are set; otherwise they are None.
    """

    name: str
    seed: int
    manifest_path: Path
    ra: float
    dec: float
    band: str
    detection_expnum: int
    detection_ccdnum: int
    sources: tuple[TargetSource, ...]
    exposures: tuple[ExposureTruth, ...]
    scene: tuple[SceneSource, ...]
    config: SimulationConfig
    separation_px: float | None = None
    separation_arcsec: float | None = None
    position_angle_deg: float | None = None

    @property
    def is_binary(self) -> bool:
        return len(self.sources) == 2

    @property
    def fluxes(self) -> np.ndarray:
        return np.array([s.flux for s in self.sources])

    @property
    def offsets(self) -> np.ndarray:
        """(n_t, 2) true (dx, dy) of the target source(s), pixels."""
        return np.array([[s.dx, s.dy] for s in self.sources])

    @property
    def published_offsets(self) -> tuple[float, float, float, float]:
        """True binary offsets in the engine's order (dx1, dx2, dy1, dy2)."""
        if not self.is_binary:
            raise ValueError("not a binary simulation")
        (dx1, dy1), (dx2, dy2) = self.offsets
        return float(dx1), float(dx2), float(dy1), float(dy2)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["format"] = TRUTH_FORMAT
        d["manifest_path"] = MANIFEST_FILENAME   # relative: the folder can be moved
        return d

    def write(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        text = json.dumps(self.to_dict(), indent=1) + "\n"
        return atomic_write_bytes(path, text.encode(), overwrite=overwrite)

    @classmethod
    def read(cls, path: str | os.PathLike) -> "SimulationTruth":
        """Read ``truth.json`` (the manifest path is resolved next to it)."""
        path = Path(path)
        d = json.loads(path.read_text())
        if d.pop("format", None) != TRUTH_FORMAT:
            raise ValueError(f"{path}: not a {TRUTH_FORMAT} file")
        config = d.pop("config")
        config = SimulationConfig(**{k: tuple(v) if isinstance(v, list) else v
                                     for k, v in config.items()})
        return cls(**{**d, "manifest_path": path.parent / d["manifest_path"],
                      "sources": tuple(TargetSource(**s) for s in d["sources"]),
                      "exposures": tuple(ExposureTruth(**_tuples(e)) for e in d["exposures"]),
                      "scene": tuple(SceneSource(**s) for s in d["scene"]),
                      "config": config})


def _tuples(d: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
