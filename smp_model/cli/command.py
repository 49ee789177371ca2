"""``smp`` command line: ``smp fit``, ``smp simulate``, ``smp validate``, ``smp batch``,
``smp discover``, ``smp cutout``.

Each subcommand lives in ``smp_model/cli/<name>.py`` and exposes
``register(subparsers)`` (adds its parser, with ``func`` set to a ``run(args) -> int``).
Results go to stdout (``--json``) or files; everything else goes to stderr.  Errors a user
can cause exit with code 2 and one line naming the file or exposure and the problem; a
traceback is shown only with ``--debug``.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings

from ..errors import SMPError, is_numpy_warning

__all__ = ["COMMANDS", "EXIT_BROKEN_PIPE", "EXIT_USER_ERROR", "OPTIONAL_EXTRAS",
           "OneLineParser", "build_parser", "main"]

COMMANDS = ("fit", "simulate", "validate", "batch", "discover", "cutout", "send")
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
    from .. import __version__
    parser = OneLineParser(
        prog="smp", description="Scene-modelling photometry of moving objects (SMP Inspector).")
    parser.add_argument("--version", action="version", version=f"smp {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f".{name}", __package__)
        except ModuleNotFoundError as exc:
            if exc.name == f"{__package__}.{name}":
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
    # This process is ours: keep BLAS on one thread for the whole run (smp_model.blas; a
    # solve is 5x slower threaded here).  It had no effect: numpy and scipy were not yet
    # loaded, and threadpoolctl limits only loaded libraries.
    from ..blas import limit_blas_threads
    limit_blas_threads()
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


if __name__ == "__main__":
    sys.exit(main())
