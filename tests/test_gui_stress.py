"""GUI stress (issue 6, item 4): a thousand rapid marker moves and a window closed in the
middle of a cold fit, headless, on the real 2014 LQ28 sample.

* 1000 moves go through the code path of a drag (a marker item marked ``moving`` gets
  ``setPos``, which emits ``sigPositionChanged`` -> `MarkerLayer` -> the window's drag
  handler -> a `FitJob`), plus a few hundred real mouse-move events on a marker.  The
  controller keeps one job running and one pending (latest wins), so far fewer than 1000
  fits are computed, and the numbers shown at the end equal a direct engine fit at the
  final marker positions.
* Closing the window while the engine is still building the scene model stops the
  worker: no exception, no thread left behind.
"""
from __future__ import annotations

import os
import threading
import time

import numpy as np
import pyqtgraph as pg
import pytest
from PyQt6.QtCore import QEvent, QPoint, QPointF, Qt, QThreadPool
from PyQt6.QtGui import QMouseEvent
from PyQt6.QtWidgets import QApplication

from smp_gui.inspector.coordinates import ccd_to_view
from smp_model.fit.panels import five_panels
from smp_model.fit.photometry import DetectionPhotometry
from smp_model.inputs.manifest import DetectionManifest
from tests.helpers import new_inspector, shown_inspector

pytestmark = pytest.mark.gui

# pyqtgraph drops mouse moves < 10 ms apart unless told otherwise (QT_NOTES.md).
pg.setConfigOption("mouseRateLimit", -1)

START = (0.0, 1.0, 0.0, 1.0)
FIT_TIMEOUT_MS = 60_000
N_PROGRAMMATIC_MOVES = 1000
N_MOUSE_MOVES = 300


@pytest.fixture(scope="module")
def lq28_path(des_sample):
    return des_sample / "2014lq28" / "detection.toml"


@pytest.fixture
def window(qapp, tmp_path):
    with shown_inspector(tmp_path / "smp.ini") as w:
        yield w


def settled(window) -> bool:
    return (not window.controller.busy and window.result is not None
            and window.result.request_id == window.controller.last_submitted)


def send_mouse(widget, kind, pos, buttons):
    button = (Qt.MouseButton.LeftButton if kind != QEvent.Type.MouseMove
              else Qt.MouseButton.NoButton)
    event = QMouseEvent(kind, QPointF(pos), QPointF(widget.mapToGlobal(pos)), button,
                        buttons, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, event)


def mouse_drag(window, k: int, steps_px, panel: str = "image"):
    """Drag marker k with real mouse events: press on it, then one move per entry of
    ``steps_px`` (screen-pixel offsets from the press point; Qt maps mouse events to the
    scene at whole pixels, so each entry should differ from the previous one), as fast as
    they come (no rate limit, events processed every few moves), then release."""
    gv = window.panels_view.graphics
    viewport = gv.viewport()
    none, left = Qt.MouseButton.NoButton, Qt.MouseButton.LeftButton
    start = gv.mapFromScene(window.panels_view.view_to_scene(
        panel, *window.markers.positions[k]))
    # approach the marker as a hand would: the hover decides which item gets the drag
    for dx in (6, 3, 0):
        send_mouse(viewport, QEvent.Type.MouseMove, start + QPoint(dx, 0), none)
        QApplication.processEvents()
    send_mouse(viewport, QEvent.Type.MouseButtonPress, start, left)
    for n, (dx, dy) in enumerate(steps_px):
        send_mouse(viewport, QEvent.Type.MouseMove, start + QPoint(dx, dy), left)
        if n % 10 == 0:
            QApplication.processEvents()
    dx, dy = steps_px[-1]
    send_mouse(viewport, QEvent.Type.MouseButtonRelease, start + QPoint(dx, dy), none)


def zigzag_px(n: int, width: int = 12) -> list[tuple[int, int]]:
    """n distinct-from-the-previous screen offsets: right and back ``width`` px at a time
    while going down and up 5 px (away from the primary, which is up and left)."""
    steps = []
    for i in range(1, n + 1):
        phase = i % (2 * width)
        dx = phase if phase <= width else 2 * width - phase
        dy = (i // (2 * width)) % 6
        steps.append((dx + 1, dy))
    return steps


def test_thousand_marker_moves_latest_wins(qtbot, window, lq28_path):
    with qtbot.waitSignal(window.fitDisplayed, timeout=FIT_TIMEOUT_MS):
        assert window.open_detection(lq28_path, mode="binary", offsets=START)
    controller = window.controller
    fits_before = controller.fits_computed
    replaced_before = controller.fits_replaced
    submitted_before = controller.last_submitted
    rng = np.random.default_rng(6)

    # 1) 1000 moves through the drag code path, in 10 drags alternating the component
    #    and the panel grabbed; results arrive (and are drawn) while the moves go on.
    t0 = time.perf_counter()
    n_moves = 0
    for drag in range(10):
        k = drag % 2
        item = window.markers.item(k, plot_index=drag % 5)
        u0, v0 = item.pos().x(), item.pos().y()
        item.moving = True                              # what mouseDragEvent's start does
        for n in range(N_PROGRAMMATIC_MOVES // 10):
            du, dv = rng.uniform(-0.8, 0.8, 2)
            item.setPos(u0 + du, v0 + dv)               # sigPositionChanged -> refit
            n_moves += 1
            if n % 20 == 0:
                QApplication.processEvents()
        item.moving = False                             # ... and its finish
        item.sigPositionChangeFinished.emit(item)
    assert n_moves == N_PROGRAMMATIC_MOVES
    assert controller.last_submitted - submitted_before >= N_PROGRAMMATIC_MOVES

    # 2) a few hundred real mouse moves dragging the secondary to and fro
    submitted = controller.last_submitted
    mouse_drag(window, 1, zigzag_px(N_MOUSE_MOVES))
    # every mouse move once the drag has started (3 px from the press) was a refit request;
    # a few fewer on a loaded machine (289 of 300 seen once at load ~5, cause not traced:
    # a move that leaves the offsets unchanged makes no request)
    assert controller.last_submitted - submitted >= N_MOUSE_MOVES - 30
    moves_s = time.perf_counter() - t0

    qtbot.waitUntil(lambda: settled(window), timeout=FIT_TIMEOUT_MS)
    assert controller.wait_idle(10)
    computed = controller.fits_computed - fits_before
    replaced = controller.fits_replaced - replaced_before
    requested = controller.last_submitted - submitted_before
    print(f"\n{requested} fit requests in {moves_s:.2f} s; {computed} fits computed, "
          f"{replaced} replaced while pending; {controller.dropped_results} stale results "
          "dropped")
    # Latest wins: every request is computed or replaced by a newer one before it starts
    # (none queues behind another); how many are replaced depends on the refit's speed.
    assert computed + replaced == requested, (computed, replaced, requested)
    assert replaced > 0 and computed < requested

    # The numbers shown are those of a direct engine fit at the final marker positions.
    final = window.offsets["binary"]
    shown = window.result
    assert shown.request.fit.offsets.published == final
    assert shown.summary.offsets == pytest.approx(final, abs=1e-12)
    manifest = DetectionManifest.read(lq28_path)
    with pytest.warns(Warning):   # two exposures of the sample have no usable pixel
        direct = DetectionPhotometry(manifest, window.settings).fit_binary(final)
    for row, source in zip(shown.summary.sources, direct.sources):
        assert row.flux == pytest.approx(source.flux, rel=1e-9)
        assert row.flux_err == pytest.approx(source.flux_err, rel=1e-9)
    assert shown.summary.chi2 == pytest.approx(direct.chi2, rel=1e-9)
    assert shown.summary.delta_chi2 == pytest.approx(direct.delta_chi2, rel=1e-9)
    table = window.results_table.as_text()
    assert f"{direct.primary.flux:.1f}" in table and f"{direct.secondary.flux:.1f}" in table
    np.testing.assert_allclose(window.panels_view.images["residual"].image,
                               five_panels(direct)["residual"], rtol=1e-9, atol=1e-8)
    # the markers sit on the fitted sources, on every panel
    origin = direct.scene.exposures[direct.scene.detection_index].origin
    for k, source in enumerate(direct.sources):
        expected = ccd_to_view(source.x, source.y, origin)
        assert window.markers.positions[k] == pytest.approx(expected, abs=1e-9)
        for item in window.markers.items[k]:
            assert (item.pos().x(), item.pos().y()) == pytest.approx(expected, abs=1e-9)
    assert len(window.model.history) == 11     # one step per drag
    assert window.error_dialog is None


def _live_threads(baseline: set[int]) -> list[threading.Thread]:
    """Python threads started since ``baseline`` that still run.  A ``_DummyThread``
    (a foreign thread, e.g. a QThread, that touched `threading`) stays in the registry
    after its thread ended: it counts only while its OS thread exists."""
    live = []
    for t in threading.enumerate():
        if t.ident in baseline:
            continue
        if isinstance(t, threading._DummyThread) and os.path.isdir("/proc/self/task"):
            if not os.path.exists(f"/proc/self/task/{t.native_id}"):
                continue
        live.append(t)
    return live


def test_close_window_during_cold_fit(qtbot, qapp, lq28_path, tmp_path):
    baseline = {t.ident for t in threading.enumerate()}
    window = new_inspector(tmp_path / "smp.ini")
    worker = window.controller.worker_thread
    displayed = []
    window.fitDisplayed.connect(displayed.append)
    try:
        # The cold fit: reading the exposures, rendering the PSF grid (seconds).
        with qtbot.waitSignal(window.controller.progress, timeout=FIT_TIMEOUT_MS):
            assert window.open_detection(lq28_path, mode="binary", offsets=START)
        assert window.controller.busy and worker.isRunning()
        t0 = time.perf_counter()
        window.close()                   # closeEvent stops the worker and waits for it
        close_s = time.perf_counter() - t0
        assert worker.isFinished() and not worker.isRunning()
        window.close()                   # closing twice is harmless
        qtbot.wait(100)                  # anything still queued is delivered
        assert not displayed and window.result is None
        assert window.error_dialog is None
        print(f"\nclosed in {close_s:.2f} s during the cold fit")
        assert close_s < 10
    finally:
        window.shutdown()
        window.deleteLater()
    qtbot.wait(10)
    assert QThreadPool.globalInstance().activeThreadCount() == 0
    assert _live_threads(baseline) == []
