"""Argument types and option groups shared by the ``smp`` subcommands: validated numbers
and lists, the model options (grid, convention, PSF normalisation) and the shot-noise
options, and the progress line printed to stderr.
"""
from __future__ import annotations

import argparse
import math
import sys

from ..conventions import PSF_NORMALIZATIONS
from ..limits import MAX_GRID_STEP_ARCSEC

__all__ = ["Progress", "add_model_arguments", "add_shot_noise_arguments", "float_list",
           "number", "settings_from_args"]


def float_list(n: int):
    """argparse type for ``n`` comma-separated finite floats (``--binary=-1,0,-1,0``)."""
    def parse(text: str) -> tuple[float, ...]:
        try:
            values = tuple(float(v) for v in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {n} comma-separated numbers, "
                                             f"got {text!r}") from None
        if len(values) != n:
            raise argparse.ArgumentTypeError(f"expected {n} comma-separated numbers, "
                                             f"got {len(values)} in {text!r}")
        if not all(math.isfinite(v) for v in values):
            raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
        return values
    return parse


def number(low: float | None = None, high: float | None = None, *, integer: bool = False,
           low_open: bool = False):
    """argparse type for a finite number (an integer with ``integer``) within
    ``[low, high]`` (``(low, high]`` with ``low_open``); either bound may be None."""
    kind = "an integer" if integer else "a finite number"
    if low is not None and high is not None:
        kind += f" in {'(' if low_open else '['}{low:g}, {high:g}]"
    elif low is not None:
        kind += f" {'>' if low_open else '>='} {low:g}"
    elif high is not None:
        kind += f" <= {high:g}"

    def parse(text: str):
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
        below = low is not None and (value <= low if low_open else value < low)
        if not math.isfinite(value) or below or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}")
        return value
    return parse


def add_model_arguments(parser) -> None:
    """The scene-model options shared by ``smp fit`` and ``smp batch``."""
    m = parser.add_argument_group("model")
    m.add_argument("--convention", choices=("exact", "legacy"), default="exact")
    m.add_argument("--grid", type=number(1, integer=True), default=20, metavar="N",
                   help="N x N grid (20)")
    m.add_argument("--step", type=number(0, MAX_GRID_STEP_ARCSEC, low_open=True),
                   default=0.35, metavar="ARCSEC", help="grid step, arcsec (0.35)")
    m.add_argument("--no-sky", action="store_true", help="no per-exposure sky level")
    m.add_argument("--psf-normalization", choices=PSF_NORMALIZATIONS,
                   help="how PSF stamps are rendered (docs: validation/psf_phase): band-limited "
                        "(the exact convention's default): without the frequencies the pixels "
                        "alias, so fluxes do not depend on the sub-pixel position; model "
                        "(legacy's default, as published): as the PSF model draws them; "
                        "unit-sum / psf-weighted: each source's pixel sum / sum of squares "
                        "made independent of its sub-pixel position")
    return m


def add_shot_noise_arguments(group, gain_help: str) -> None:
    """``--gain`` and ``--shot-noise-iterations`` (``smp fit`` and ``smp batch``)."""
    group.add_argument("--gain", type=number(0, low_open=True), metavar="E_PER_UNIT",
                       help=gain_help)
    group.add_argument("--shot-noise-iterations", type=number(0, integer=True), default=1,
                       metavar="N",
                       help="refits for the shot-noise term (1 = published; 0 = to "
                            "convergence)")


def settings_from_args(args):
    """`FitSettings` from the options of `add_model_arguments`."""
    from ..settings import FitSettings
    return FitSettings(grid_size=args.grid, grid_step_arcsec=args.step,
                       fit_sky=not args.no_sky, convention=args.convention,
                       psf_normalization=args.psf_normalization)


class Progress:
    """Progress lines on stderr for long steps (silent when ``quiet``)."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet

    def __call__(self, fraction: float, message: str) -> None:
        if not self.quiet:
            print(f"smp: [{100 * fraction:3.0f}%] {message}", file=sys.stderr, flush=True)
