"""The inspector's Qt-free model: undo history, staleness, sessions validated whole.
No display and no Qt: the model must import without it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from smp_gui.session import SessionError, parse_session
from smp_gui.state import SESSION_FORMAT, InspectorModel, Measurement
from smp_model.fit.request import TargetOffsets
from smp_model.inputs.manifest import DetectionManifest, ExposureEntry
from smp_model.settings import FitSettings


def binary(*values) -> TargetOffsets:
    return TargetOffsets.from_published(values)


@pytest.fixture
def model(tmp_path):
    m = InspectorModel()
    m.open(tmp_path / "detection.toml", Measurement.defaults(FitSettings(), "binary"))
    return m


def test_model_imports_without_qt(repo_root):
    code = ("import sys, smp_gui.state; "
            "sys.exit(any(name.startswith('PyQt') for name in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], cwd=repo_root).returncode == 0


def test_undo_redo_restore_each_edit_with_its_name(model):
    start = model.offsets
    texts = []
    model.history_changed.connect(lambda: texts.append(model.undo_text))
    assert model.move("Move secondary", start.shifted(1, 0.5, -0.2))
    assert model.move("Nudge primary", model.offsets.shifted(0, 0.1, 0.0))
    assert model.undo_text == "Nudge primary" and texts[-1] == "Nudge primary"
    assert model.undo() and model.offsets == start.shifted(1, 0.5, -0.2)
    assert model.redo_text == "Nudge primary"
    assert model.undo() and model.offsets == start
    assert not model.undo()
    assert model.redo() and model.offsets == start.shifted(1, 0.5, -0.2)
    # a new edit drops what could be redone
    model.move("Move primary", model.offsets.shifted(0, 1.0, 1.0))
    assert model.redo_text is None


def test_a_drag_is_one_edit(model):
    start = model.offsets
    for step in range(1, 6):
        model.preview(start.shifted(1, 0.1 * step, 0.0))
    assert model.undo_text is None            # nothing recorded mid-drag
    model.move("Move secondary", start.shifted(1, 0.5, 0.0))
    assert model.undo_text == "Move secondary"
    model.undo()
    assert model.offsets == start and model.undo_text is None


def test_mode_and_settings_changes_are_undoable(model):
    before = model.measurement
    model.apply("Switch to single", Measurement.defaults(FitSettings(), "single"))
    settings = FitSettings(grid_size=12)
    model.apply("Change the fit settings", Measurement.defaults(settings, "single"))
    assert model.measurement.settings == settings
    model.undo()
    model.undo()
    assert model.measurement == before


def test_shown_fit_goes_stale_and_back(model):
    changes = []
    model.displayed_changed.connect(lambda: changes.append(model.is_stale))
    assert model.is_stale                                  # nothing shown yet
    request = model.measurement.request()
    model.show_fit(request, model.offsets)
    assert not model.is_stale
    model.move("Move secondary", model.offsets.shifted(1, 0.2, 0.0))
    assert model.is_stale and changes[-1] is True          # the table must grey out
    model.undo()
    assert not model.is_stale                              # back to what is shown: no refit
    # a search: asked from a start, shown at the optimum
    optimum = model.offsets.shifted(1, 0.37, -0.11)
    model.show_fit(model.measurement.request(optimize=True), optimum)
    assert model.is_stale
    model.move("Optimize positions", optimum)
    assert not model.is_stale
    # the shot-noise refit is part of the measurement
    model.apply("Shot noise", Measurement(**{**model.measurement.__dict__, "gain": 4.0}))
    assert model.is_stale


def write_session(tmp_path, **changes) -> Path:
    state = {"format": SESSION_FORMAT, "detection": "detection.toml",
             "settings": {"grid_size": 20, "grid_step_arcsec": 0.35, "fit_sky": True,
                          "convention": "exact"},
             "mode": "binary", "offsets": {"single": [0, 0], "binary": [0, 1, 0, 1]},
             "shot_noise": {"enabled": False, "gain": 4.0, "iterations": 1},
             "view": {"stretch": "zscale", "colormap": "viridis", "levels": [1, 2],
                      "range": [[0, 10], [0, 10]]}}
    for key, value in changes.items():
        if value is KeyError:
            state.pop(key)
        else:
            state[key] = value
    path = tmp_path / "s.smpsession.json"
    path.write_text(json.dumps(state))
    return path


def test_session_roundtrip_through_the_model(model, tmp_path):
    model.move("Move secondary", binary(0.1, 1.3, -0.2, 0.8))
    model.select(490229)
    path = tmp_path / "s.json"
    path.write_text(json.dumps(model.session(view={"stretch": "log"})))
    session = parse_session(path.read_text(), path)
    assert session.measurement == model.measurement
    assert session.selected_expnum == 490229 and session.view == {"stretch": "log"}
    assert session.fit is None     # nothing shown: nothing to re-run


BAD_SESSIONS = {
    "mode triple": ({"mode": "triple"}, "'mode' must be one of"),
    "settings as a string": ({"settings": "grid=20"}, "'settings' must be a table"),
    "gain abc": ({"shot_noise": {"enabled": True, "gain": "abc"}}, "'shot_noise.gain'"),
    "grid size 0": ({"settings": {"grid_size": 0}}, "grid size must be"),
    "grid size 2.5": ({"settings": {"grid_size": 2.5}}, "'settings.grid_size'"),
    "offsets of 3": ({"offsets": {"binary": [0, 1, 0]}}, "'offsets.binary'"),
    "offset NaN": ({"offsets": {"single": [float("nan"), 0]}}, "'offsets.single'"),
    "offset 1e300": ({"offsets": {"single": [1e300, 0]}}, "'offsets.single'"),
    "levels reversed": ({"view": {"levels": [2, 1]}}, "'view.levels'"),
    "levels infinite": ({"view": {"levels": [0, float("inf")]}}, "'view.levels'"),
    "colormap unknown": ({"view": {"colormap": "jet2"}}, "'view.colormap'"),
    "stretch unknown": ({"view": {"stretch": "cube"}}, "'view.stretch'"),
    "sky_aligned text": ({"view": {"sky_aligned": "yes"}}, "'view.sky_aligned'"),
    "normalization unknown": ({"settings": {"psf_normalization": "x"}},
                              "unknown PSF normalization"),
    "range huge": ({"view": {"range": [[0, 1e30], [0, 1]]}}, "'view.range'"),
    "range flat": ({"view": {"range": [[0, 0], [0, 1]]}}, "'view.range'"),
    "no detection": ({"detection": KeyError}, "missing entry 'detection'"),
    "expnum text": ({"selected_expnum": "x"}, "'selected_expnum'"),
}


@pytest.mark.parametrize("name", list(BAD_SESSIONS))
def test_bad_session_is_refused_whole_with_one_line(name, tmp_path):
    changes, message = BAD_SESSIONS[name]
    path = write_session(tmp_path, **changes)
    with pytest.raises(SessionError, match=message.replace("(", r"\(")) as info:
        parse_session(path.read_text(), path)
    assert "\n" not in str(info.value)


def test_sky_aligned_view_is_optional(tmp_path):
    """Sessions saved before the sky-aligned display have no such key: they load."""
    path = write_session(tmp_path)
    assert "sky_aligned" not in parse_session(path.read_text(), path).view
    path = write_session(tmp_path, view={"sky_aligned": True, "range": [[-4, 4], [-5, 5]]})
    view = parse_session(path.read_text(), path).view
    assert view["sky_aligned"] is True and view["range"] == [[-4, 4], [-5, 5]]


def test_deeply_nested_json_is_refused(tmp_path):
    path = tmp_path / "deep.json"
    text = "[" * 100_000 + "]" * 100_000
    with pytest.raises(SessionError, match="nested too deeply|too large|not valid"):
        parse_session(text, path)


def test_psf_files_outside_the_folder(tmp_path):
    inside = tmp_path / "psf" / "a.fits"
    outside = tmp_path.parent / "elsewhere" / "b.fits"
    # the rule the window's session opening asks the manifest for
    exposures = tuple(ExposureEntry(expnum, 1, "r", 30.0, tmp_path / "s.fits", psf, (1, 1))
                      for expnum, psf in ((1, inside), (2, outside)))
    manifest = DetectionManifest("t", 10.0, 0.0, "r", 1, 1, exposures)
    assert manifest.psf_files_outside(tmp_path) == [outside.resolve()]
