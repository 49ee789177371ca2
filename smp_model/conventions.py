"""Pixel conventions: on which CCD grid PSFs are drawn and how the target is placed.

``exact`` (default)
    Every PSF is drawn on the stamp's own grid (``SCI[j, i]`` = CCD ``(x0+i, y0+j)``) at the
    true CCD position of its source; the target sits at its WCS position plus an offset
    (default 0, 0).
``legacy`` (``bernardinelli2023``)
    Reproduces the published code: PSFs are drawn into Piff's own box around the target
    (``psf.draw(x_t, y_t, stamp_size=N)``, whose ``[0, 0]`` is CCD ``ceil(x_t) - 15`` for
    N = 30, one pixel off the data), the target is drawn at ``(x_t - 1, y_t - 1)`` (offset
    default -1, -1, which compensates the box), every background stamp is rotated by
    180 degrees before use.

In both conventions the PSF's shape on the sky is evaluated at the target's CCD position
and, as Piff's ``draw`` does, each source (grid and target) is imaged through the WCS
Jacobian at its own CCD position: the pixel map changes across a stamp by 0.1-0.8 % (tree
rings) and by up to 8 % near a CCD edge, and one Jacobian for all sources biases every
exposure's sky level (`SceneModel`).

The conventions also differ in how PSF stamps are rendered by default
(`Convention.psf_normalization`, `PSF_NORMALIZATIONS`): ``exact`` removes the PSF model's
spatial frequencies at and above the pixel's Nyquist frequency (``"band-limited"``), which
makes a Piff model's flux independent of the source's sub-pixel position; ``legacy`` uses
the model's stamps as drawn, as published.

Target offsets are always pixels relative to the WCS position ``(x_t, y_t)`` of the
detection in the detection exposure, in the chosen convention's frame: a legacy offset
(-1, -1) is the exact offset (0, 0) for stamps cut with the DES rule.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

__all__ = ["CONVENTIONS", "EXACT", "LEGACY", "PSF_NORMALIZATIONS", "Convention",
           "get_convention", "piff_box_origin"]

if TYPE_CHECKING:   # numpy is not needed to import this module (the CLI's start-up)
    import numpy as np

# How rendered PSF stamps are conditioned (`smp_model.psf.oversampled.OversampledPSF`,
# docs/validation/psf_phase.rst): as the model draws them, with their pixel sum or sum of
# squares made independent of the sub-pixel position, or with the frequencies the pixel
# lattice aliases removed.
PSF_NORMALIZATIONS = ("model", "unit-sum", "psf-weighted", "band-limited")


@dataclass(frozen=True)
class Convention:
    name: str
    default_offset: tuple[float, float]
    rotate_background: bool
    draw_in_piff_box: bool
    psf_normalization: str        # the default of `FitSettings.psf_normalization`

    def sampling_origin(self, stamp_origin: tuple[int, int], target_xy: tuple[float, float],
                        shape: tuple[int, int]) -> tuple[int, int]:
        """CCD pixel at which the model stamps' ``[0, 0]`` is evaluated."""
        if not self.draw_in_piff_box:
            return stamp_origin
        return piff_box_origin(target_xy, shape)

    def orient_background(self, stamps: np.ndarray) -> np.ndarray:
        """Background-source stamps (K, ny, nx) as the convention uses them."""
        return stamps[:, ::-1, ::-1] if self.rotate_background else stamps


def piff_box_origin(target_xy: tuple[float, float], shape: tuple[int, int]) -> tuple[int, int]:
    """``[0, 0]`` of Piff's ``draw(x, y, stamp_size=N)`` box: Piff centres the image at
    ``ceil(x - 0.5)`` for odd N and ``ceil(x)`` for even N, and galsim's ``setCenter`` puts
    ``xmin = centre - N // 2``."""
    ny, nx = shape
    x, y = target_xy
    return (math.ceil(x - (0.5 if nx % 2 else 0.0)) - nx // 2,
            math.ceil(y - (0.5 if ny % 2 else 0.0)) - ny // 2)


EXACT = Convention("exact", (0.0, 0.0), rotate_background=False, draw_in_piff_box=False,
                   psf_normalization="band-limited")
LEGACY = Convention("legacy", (-1.0, -1.0), rotate_background=True, draw_in_piff_box=True,
                    psf_normalization="model")
CONVENTIONS = {"exact": EXACT, "legacy": LEGACY, "bernardinelli2023": LEGACY}


def get_convention(name: str) -> Convention:
    try:
        return CONVENTIONS[name]
    except KeyError:
        raise ValueError(f"unknown convention {name!r}; choose one of "
                         f"{', '.join(sorted(CONVENTIONS))}") from None
