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
import sys
import warnings

from .errors import SMPError

COMMANDS = ("fit", "simulate", "validate", "batch", "discover", "cutout")
EXIT_USER_ERROR = 2
# Optional packages (top-level module -> the pip extra that installs it).
OPTIONAL_EXTRAS = {"matplotlib": "plot", "distributed": "batch", "dask": "batch"}


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    parser = argparse.ArgumentParser(
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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="smp: %(message)s", stream=sys.stderr)
    warnings.showwarning = _warning_to_stderr
    # This process is ours: keep BLAS on one thread for the whole run (see
    # smp_model.scene.single_threaded_blas for why; a solve is 5x slower threaded here).
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=1, user_api="blas")
    try:
        return int(args.func(args) or 0)
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
    print(f"smp: warning: {message}", file=sys.stderr)


def float_list(n: int):
    """argparse type for ``n`` comma-separated floats (``--binary=-1,0,-1,0``)."""
    def parse(text: str) -> tuple[float, ...]:
        try:
            values = tuple(float(v) for v in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {n} comma-separated numbers, "
                                             f"got {text!r}") from None
        if len(values) != n:
            raise argparse.ArgumentTypeError(f"expected {n} comma-separated numbers, "
                                             f"got {len(values)} in {text!r}")
        return values
    return parse


def add_model_arguments(parser) -> None:
    """The scene-model options shared by ``smp fit`` and ``smp batch``."""
    m = parser.add_argument_group("model")
    m.add_argument("--convention", choices=("exact", "legacy"), default="exact")
    m.add_argument("--grid", type=int, default=20, metavar="N", help="N x N grid (20)")
    m.add_argument("--step", type=float, default=0.35, metavar="ARCSEC",
                   help="grid step, arcsec (0.35)")
    m.add_argument("--no-sky", action="store_true", help="no per-exposure sky level")
    return m


def settings_from_args(args):
    """`FitSettings` from the options of `add_model_arguments`."""
    from .scene import FitSettings
    return FitSettings(grid_size=args.grid, grid_step_arcsec=args.step,
                       fit_sky=not args.no_sky, convention=args.convention)


class Progress:
    """Progress lines on stderr for long steps (silent when ``quiet``)."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet

    def __call__(self, fraction: float, message: str) -> None:
        if not self.quiet:
            print(f"smp: [{100 * fraction:3.0f}%] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
