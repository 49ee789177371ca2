"""Entry point of the SMP Inspector window: ``smp-gui [MANIFEST|FOLDER|SESSION]``.

With no argument the built-in demo detection opens.  ``--screenshot PATH`` opens the
detection, waits for the fit (and the position search with ``--optimize``), saves a
picture of the whole window to PATH and exits (0 on success, 2 on an error, one line on
stderr).  ``--export-table``, ``--export-figure`` and ``--export-cubes`` write what the
File > Export menu would, the same way, and exit; they never replace an existing file.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import NoReturn

__all__ = ["SCREENSHOT_TIMEOUT_MS", "build_parser", "demo_path", "is_batch_output",
           "main", "parse_offsets", "start_up_progress"]

SCREENSHOT_TIMEOUT_MS = 300_000


def parse_offsets(text: str) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not numbers: {text!r}") from None
    if len(values) != 4:
        raise argparse.ArgumentTypeError(
            f"expected 4 comma-separated offsets DX1,DX2,DY1,DY2 (px), got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smp-gui", description="SMP Inspector: scene-modelling photometry of a "
        "moving-object detection, interactively.")
    parser.add_argument("path", nargs="?", metavar="MANIFEST|FOLDER|BATCH",
                        help="detection manifest (detection.toml), its folder, a saved "
                        "session (.json), or a `smp batch` output (.ecsv/.fits/.vot/.csv: the "
                        "survey view); default: the built-in demo")
    parser.add_argument("--binary", type=parse_offsets, metavar="DX1,DX2,DY1,DY2",
                        help="start in binary mode with these offsets (px, relative to the "
                        "target's WCS position, in the convention's frame)")
    parser.add_argument("--optimize", action="store_true",
                        help="optimise the position(s) after the first fit")
    parser.add_argument("--screenshot", metavar="PATH",
                        help="save a picture of the window once fitted, then exit")
    parser.add_argument("--export-table", metavar="PATH",
                        help="write the flux table (.ecsv/.fits/.csv) once fitted, then exit "
                        "(with a batch output: of the --select detection, fitted with the "
                        "batch's settings)")
    parser.add_argument("--export-figure", metavar="PATH",
                        help="write the five-panel figure (.png/.pdf/.svg) as shown, then "
                        "exit")
    parser.add_argument("--export-cubes", metavar="PATH",
                        help="write the image/model/residual cubes (.fits), then exit")
    survey = parser.add_argument_group("survey view (a `smp batch` output)")
    survey.add_argument("--survey-demo", action="store_true",
                        help="open the simulated survey (simulated and fitted into the user "
                        "cache on first use, a few minutes)")
    survey.add_argument("--select", metavar="KEY",
                        help="select detection KEY (and, with --export-table, open it)")
    survey.add_argument("--filter", metavar="EXPR", help="filter the survey table")
    survey.add_argument("--fold", type=float, metavar="HOURS",
                        help="fold the light curve at this period (hours)")
    return parser


def is_batch_output(path) -> bool:
    """A table file (what `smp batch` writes) opens in the survey view."""
    from smp_model.files import TABLE_FORMATS
    return path is not None and Path(path).suffix.lower() in TABLE_FORMATS


def _exports(args) -> list[tuple[str, str]]:
    return [(kind, path) for kind, path in (("table", args.export_table),
                                            ("figure", args.export_figure),
                                            ("cubes", args.export_cubes)) if path]


def demo_path() -> Path | None:
    """The built-in demo's manifest, or None when `smp_model.simulation.demo` is not available."""
    try:
        from smp_model.simulation.demo import demo_manifest_path
    except ImportError:
        return None
    return Path(demo_manifest_path())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    exports = _exports(args)
    for _kind, out in exports:
        if Path(out).exists():
            print(f"smp-gui: error: {out} exists: not overwritten", file=sys.stderr)
            return 2
    if args.path is not None and not Path(args.path).exists():
        print(f"smp-gui: error: {args.path}: no such file or folder", file=sys.stderr)
        return 2
    headless = bool(args.screenshot or exports)

    try:
        import pyqtgraph as pg
        from PyQt6.QtCore import QTimer
        from PyQt6.QtWidgets import QApplication
    except ModuleNotFoundError as exc:   # a headless install (no [gui] extra)
        print(f"smp-gui: error: the window needs {exc.name}, which is not installed: "
              "pip install 'smp-inspector[gui]'", file=sys.stderr)
        return 2
    from .startup import StartupError, choose_platform, install_message_filter
    try:
        choose_platform(headless)
    except StartupError as exc:
        print(f"smp-gui: error: {exc}", file=sys.stderr)
        return 2
    install_message_filter()

    from smp_model.blas import limit_blas_threads

    from .controller import preload_engine
    from .windows import WindowManager

    app = QApplication.instance() or QApplication(sys.argv[:1])
    limit_blas_threads()   # one BLAS thread for the whole process
    app.setApplicationName("SMP Inspector")
    pg.setConfigOptions(antialias=True)
    if args.survey_demo or is_batch_output(args.path):
        preload_engine()
        from .survey.app import survey_main
        return survey_main(args, app)
    window = WindowManager().new_inspector()
    window.show()
    # The window first, then the engine's seconds of start-up, stage by stage in its
    # status bar; the first detection's reading and fit follow in the same bar.
    window.statusBar().showMessage("Starting the engine…")
    app.processEvents()
    preload_engine(start_up_progress(window, app))

    path = args.path
    if path is None:
        path = demo_path()
        if path is None:
            message = ("The built-in demo is not available (smp_model.simulation.demo is missing). "
                       "Open a detection with File > Open or give its path: "
                       "smp-gui path/to/detection.toml")
            if headless:
                print(f"smp-gui: {message}", file=sys.stderr)
                window.shutdown()
                return 2
            window.placeholder.setText(message)
    state = {"optimized": False, "rc": 0}

    def finish(rc: int):
        state["rc"] = rc
        window.shutdown()
        app.exit(rc)

    if headless:
        def on_fit(result):
            if args.optimize and not state["optimized"]:
                state["optimized"] = True
                window.optimize()
                return
            if window.controller.busy or window.is_stale:
                return     # a newer request is on its way
            # Let the panels, markers and table paint before grabbing.
            QTimer.singleShot(200, save_screenshot if args.screenshot else write_exports)

        def write_exports():
            state["pending"] = []
            for kind, out in exports:
                method = {"table": window.export_table, "figure": window.export_figure,
                          "cubes": window.export_fits}[kind]
                if method(out) is None:
                    finish(2)
                    return
                state["pending"].append(str(Path(out)))

        def on_export(path):
            if path is None:
                return      # the error line is printed by on_error
            print(f"smp-gui: wrote {path}", file=sys.stderr)
            if str(Path(path)) in state["pending"]:
                state["pending"].remove(str(Path(path)))
            if not state["pending"]:
                finish(0)

        def save_screenshot():
            out = Path(args.screenshot)
            if not window.grab().save(str(out)):
                print(f"smp-gui: cannot write the screenshot {out}", file=sys.stderr)
                finish(2)
                return
            print(f"smp-gui: screenshot written to {out}", file=sys.stderr)
            if exports:
                write_exports()
            else:
                finish(0)

        def on_error(dialog):
            print(f"smp-gui: error: {window.statusBar().currentMessage()}",
                  file=sys.stderr)
            finish(2)

        def on_timeout():
            print("smp-gui: timed out waiting for the fit", file=sys.stderr)
            finish(2)

        window.fitDisplayed.connect(on_fit)
        window.errorShown.connect(on_error)
        window.exportFinished.connect(on_export)
        QTimer.singleShot(SCREENSHOT_TIMEOUT_MS, on_timeout)

    if path is not None:
        mode = "binary" if args.binary else None
        opened = window.open_path(path, ask_consent=not headless) if mode is None else \
            window.open_detection(path, mode=mode, offsets=args.binary)
        if not opened and headless:
            return state["rc"] or 2
        if args.optimize and not headless:
            window.fitDisplayed.connect(_once(window.optimize))
    rc = app.exec()
    window.shutdown()
    return state["rc"] or rc


def start_up_progress(window, app):
    """``progress(fraction, stage)`` for `preload_engine`: the stage in ``window``'s
    status bar with its progress bar, painted at once (the preload blocks the loop)."""
    bar = window.progress_bar

    def progress(fraction: float, stage: str):
        if fraction >= 1.0:
            bar.hide()
            window.statusBar().showMessage("Engine ready.", 3000)   # opening says the rest
        else:
            bar.show()
            bar.setValue(int(round(100 * fraction)))
            window.statusBar().showMessage(f"Starting the engine: {stage}…")
        app.processEvents()
    return progress


def _once(callback):
    """A slot that calls ``callback()`` the first time only."""
    done = []

    def slot(*_):
        if not done:
            done.append(True)
            callback()
    return slot


def run() -> NoReturn:
    """The ``smp-gui`` command: `main`, then the process ends without Python's clean-up of
    Qt.  That clean-up (PyQt's ``cleanup_on_exit``) walks wrappers of widgets Qt has
    already deleted and crashed (SIGSEGV, status 139) in about one headless export run in
    ten under load, after every output was written; pyqtgraph's ``pg.exit`` is the same
    remedy.  Everything the run owns is finished by then: outputs renamed into place,
    settings written, the worker and SAMP link shut down."""
    rc = main()
    if "PyQt6.QtCore" in sys.modules:   # Qt writes settings lazily, or when destroyed
        from .windows import user_settings
        user_settings().sync()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


if __name__ == "__main__":
    run()
