"""``smp-gui BATCH_OUTPUT`` (and ``--survey-demo``): the survey view, interactive or
headless (``--screenshot PATH``, ``--select KEY --export-table PATH``)."""
from __future__ import annotations

import sys
from pathlib import Path

from PyQt6.QtCore import QTimer

__all__ = ["SETTLE_MS", "TIMEOUT_MS", "survey_main"]

SETTLE_MS = 400   # let the table and plots paint before grabbing
TIMEOUT_MS = 300_000


def _say(text: str) -> None:
    print(f"smp-gui: {text}", file=sys.stderr, flush=True)


def survey_main(args, app) -> int:
    from ..windows import WindowManager
    if args.export_table and not args.select:
        _say("error: --export-table needs --select KEY")
        return 2
    if args.export_figure or args.export_cubes:
        _say("error: with a batch output only --export-table (with --select) is available")
        return 2
    path = args.path
    if args.survey_demo:
        from smp_model.simulation.survey import survey_demo_batch_path
        path = survey_demo_batch_path(progress=_say)
    window = WindowManager().new_survey()
    window.show()
    state = {"rc": 0}

    def finish(rc: int):
        state["rc"] = rc
        window.shutdown()
        app.exit(rc)

    if not window.open_survey(path):
        _say(f"error: {window.statusBar().currentMessage()}")
        window.shutdown()
        return 2
    if args.filter and not window.set_filter(args.filter):
        _say(f"error: {window.filter_error.text()}")
        window.shutdown()
        return 2
    if args.fold:
        window.plots.period.setValue(args.fold)
        window.plots.fold.setChecked(True)
    if args.select:
        try:
            selected = window.select_key(args.select)
        except KeyError as exc:
            _say(f"error: {exc.args[0]}")
            window.shutdown()
            return 2
        if not selected:
            _say(f"error: {args.select} is filtered out")
            window.shutdown()
            return 2
    if args.export_table:
        if not window.open_in_inspector():
            _say(f"error: {window.statusBar().currentMessage()}")
            window.shutdown()
            return 2
        inspector = window.inspector

        def on_fit(_result):
            if inspector.controller.busy or inspector.is_stale or state.get("exporting"):
                return
            state["exporting"] = True
            if inspector.export_table(Path(args.export_table)) is None:
                _say(f"error: {inspector.statusBar().currentMessage()}")
                finish(2)

        def on_export(written):   # the inspector writes in a thread
            if written is None:
                return   # the error dialog: on_error says it
            _say(f"flux table of {args.select} written to {written}")
            if args.screenshot:
                QTimer.singleShot(SETTLE_MS, save_screenshot)
            else:
                finish(0)

        inspector.fitDisplayed.connect(on_fit)
        inspector.exportFinished.connect(on_export)
        inspector.errorShown.connect(lambda _box: (_say(
            f"error: {inspector.statusBar().currentMessage()}"), finish(2)))
    elif args.screenshot:
        QTimer.singleShot(SETTLE_MS, lambda: save_screenshot())

    def save_screenshot():
        out = Path(args.screenshot)
        if not window.grab().save(str(out)):
            _say(f"cannot write the screenshot {out}")
            finish(2)
            return
        _say(f"screenshot written to {out}")
        finish(0)

    if args.screenshot or args.export_table:
        QTimer.singleShot(TIMEOUT_MS, lambda: (_say("timed out"), finish(2)))
    rc = app.exec()
    window.shutdown()
    return state["rc"] or rc
