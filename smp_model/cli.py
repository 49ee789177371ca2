"""``smp`` command line: ``smp fit``, ``smp simulate``, ``smp validate``, ``smp batch``,
``smp discover``, ``smp cutout``.

Each subcommand lives in ``smp_model/commands/<name>.py`` and exposes
``register(subparsers)`` (adds its parser, with ``func`` set to a ``run(args) -> int``).
Results go to stdout (``--json``) or files; everything else goes to stderr.  Errors a user
can cause exit with code 2 and one line naming the file or exposure and the problem; a
traceback is shown only with ``--debug``.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import math
import os
import sys
import warnings

from .conventions import PSF_NORMALIZATIONS
from .errors import SMPError, is_numpy_warning
from .limits import MAX_GRID_STEP_ARCSEC

COMMANDS = ("fit", "simulate", "validate", "batch", "discover", "cutout")
EXIT_USER_ERROR = 2
EXIT_BROKEN_PIPE = 141   # what a shell reports for a process ended by SIGPIPE


class OneLineParser(argparse.ArgumentParser):
    """argparse parser whose usage errors are one line (``smp: error: ...``, exit 2) like
    every other error of ``smp``; ``--help`` still shows the usage.  Subparsers made by
    `add_subparsers` inherit the class."""

    def error(self, message: str):
        self.exit(EXIT_USER_ERROR, f"smp: error: {self.prog}: {' '.join(message.split())} "
                                   f"(see {self.prog} --help)\n")


# Optional packages (top-level module -> the pip extra that installs it).
OPTIONAL_EXTRAS = {"matplotlib": "plot", "distributed": "batch", "dask": "batch"}


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    parser = OneLineParser(
        prog="smp", description="Scene-modelling photometry of moving objects (SMP Inspector).")
    parser.add_argument("--version", action="version", version=f"smp {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f".commands.{name}", __package__)
        except ModuleNotFoundError as exc:
            if exc.name == f"{__package__}.commands.{name}":
                continue   # command not part of this installation
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:   # a usage error (one line, see OneLineParser) or --help
        return exc.code if isinstance(exc.code, int) else EXIT_USER_ERROR
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="smp: %(message)s", stream=sys.stderr)
    warnings.showwarning = _warning_to_stderr
    # This process is ours: keep BLAS on one thread for the whole run (see
    # smp_model.scene.single_threaded_blas for why; a solve is 5x slower threaded here).
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=1, user_api="blas")
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # The reader of our output went away (``smp fit --json | head``): nothing to say.
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except SMPError as exc:
        if args.debug:
            raise
        print(f"smp: error: {exc.one_line()}", file=sys.stderr)
        return EXIT_USER_ERROR
    except (ValueError, OSError) as exc:   # bad option values, unwritable outputs
        if args.debug:
            raise
        print(f"smp: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_USER_ERROR
    except ModuleNotFoundError as exc:
        extra = OPTIONAL_EXTRAS.get((exc.name or "").split(".")[0])
        if extra is None or args.debug:
            raise
        print(f"smp: error: smp {args.command} needs {exc.name}, which is not installed: "
              f"pip install 'smp-inspector[{extra}]'", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("smp: interrupted", file=sys.stderr)
        return 130


def _warning_to_stderr(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, RuntimeWarning) and is_numpy_warning(str(message)):
        # numpy's floating-point warnings ("overflow encountered in multiply") say nothing
        # a user can act on; the input checks name the file and value instead.
        logging.getLogger("smp").debug("numpy: %s (%s:%s)", message, filename, lineno)
        return
    print(f"smp: warning: {' '.join(str(message).split())}", file=sys.stderr)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush does not raise
    BrokenPipeError again (and print "Exception ignored ...") on the way out."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):   # stdout is not a real file (captured in tests)
        pass


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
                   help="how PSF stamps are rendered (README 'PSF phase'): band-limited "
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
    from .scene import FitSettings
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


if __name__ == "__main__":
    sys.exit(main())
