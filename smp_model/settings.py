"""What determines a fit besides the data: `FitSettings`.

A plain value object at the bottom of the engine: inputs, the scene, the fit, outputs and
the GUI all read it, and it imports nothing heavier than the conventions and limits.
"""
from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass, field

from .conventions import PSF_NORMALIZATIONS, Convention, get_convention
from .limits import MAX_GRID_STEP_ARCSEC

__all__ = ["DEFAULT_MEMORY_LIMIT", "DEFAULT_OVERSAMPLING", "FitSettings"]

DEFAULT_MEMORY_LIMIT = 4 * 1024 ** 3   # bytes a fit may use (`smp_model.limits`)
DEFAULT_OVERSAMPLING = 6               # PSF samples per CCD pixel of the renderer


@dataclass(frozen=True)
class FitSettings:
    """Everything, besides the data, that determines a fit.

    Attributes
    ----------
    grid_size
        number of grid sources per axis (n; n x n sources).
    grid_step_arcsec
        nominal step s; offsets are ``linspace(-s n/2, s n/2, n)`` arcsec in
        both tangent-plane axes about the detection's (ra, dec), as published (so the
        actual spacing is ``s n / (n - 1)``).
    fit_sky
        one free constant sky level per exposure.
    convention
        ``"exact"`` or ``"legacy"`` (see `smp_model.conventions`).
    oversampling
        PSF samples per pixel for the spline renderer.
    psf_normalization
        ``"model"`` uses the PSF model's stamps as drawn (Piff's draw; the
        published code); ``"unit-sum"`` and ``"psf-weighted"`` rescale every rendered
        stamp (target and grid) so that its pixel sum, or its sum of squares, does not
        depend on the source's sub-pixel position; ``"band-limited"`` renders the model
        without its frequencies at and above 0.5 cycles per pixel, so that neither its sum
        nor its shape does (`OversampledPSF`).  None (the default): the convention's,
        band-limited for ``exact`` and model for ``legacy`` (docs/validation/psf_phase.rst).
    """

    grid_size: int = 20
    grid_step_arcsec: float = 0.35
    fit_sky: bool = True
    convention: str = "exact"
    oversampling: int = DEFAULT_OVERSAMPLING
    psf_normalization: str | None = None
    memory_limit_bytes: int = field(default=DEFAULT_MEMORY_LIMIT, compare=False)

    def __post_init__(self):
        convention = get_convention(self.convention)
        if self.psf_normalization is None:
            object.__setattr__(self, "psf_normalization", convention.psf_normalization)
        if self.psf_normalization not in PSF_NORMALIZATIONS:
            raise ValueError(f"unknown PSF normalization {self.psf_normalization!r}; choose "
                             f"one of {', '.join(PSF_NORMALIZATIONS)}")
        if isinstance(self.grid_size, bool) or not isinstance(self.grid_size, numbers.Integral) \
                or self.grid_size < 1:
            raise ValueError(f"grid size must be an integer >= 1, got {self.grid_size!r}")
        if not 0 < self.grid_step_arcsec <= MAX_GRID_STEP_ARCSEC:   # NaN fails too
            raise ValueError(f"grid step must be > 0 and <= {MAX_GRID_STEP_ARCSEC:g} arcsec, "
                             f"got {self.grid_step_arcsec}")

    @property
    def pixel_convention(self) -> Convention:
        return get_convention(self.convention)

    @property
    def default_offset(self) -> tuple[float, float]:
        return self.pixel_convention.default_offset

    @property
    def default_binary_offsets(self) -> tuple[float, float, float, float]:
        """Start of a binary search, (dx1, dx2, dy1, dy2) px: the published example's
        (-1, 0, -1, 0) in the legacy convention, i.e. the target and a companion one pixel
        away on both axes ((0, 1, 0, 1) in the exact convention)."""
        dx, dy = self.default_offset
        return (dx, dx + 1.0, dy, dy + 1.0)

    def as_meta(self) -> dict:
        d = asdict(self)
        d.pop("memory_limit_bytes")
        return d

