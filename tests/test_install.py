"""Installs in fresh venvs.

* The headless install: ``pip install .`` (no extras) gives a working engine and ``smp``
  without Qt or dask, runs the engine tests, and says which extra the other commands need.
* The wheel with the window: the project's wheel holds every package folder of the source
  tree, and installed with the ``gui`` extra it fits the demo and opens a batch output in
  the survey view, offscreen.

Each builds a venv (a minute or two, from pip's cache; the versions are constrained to
requirements.lock so that nothing new is downloaded).  Set SMP_SKIP_INSTALL_TEST=1 to skip
it on a machine without access to the package index.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# What the sdist of the project holds (copied so that pip builds outside the work tree
# and leaves no build/ or *.egg-info in it).
PROJECT_FILES = ("smp_model", "smp_gui", "resources", "pyproject.toml", "setup.py", "README.md",
                 "LICENSE")
# Engine tests that need neither Qt nor dask (the quick ones: this suite runs them again
# against the work tree).
ENGINE_TESTS = ("test_wcs.py", "test_engine_reference.py", "test_discovery.py",
                "test_discover.py::test_random_positions_agree_with_brute_force",
                "test_discover.py::test_edges_and_gaps",
                "test_cutout.py::test_des_rule_matches_index_arithmetic",
                "test_cutout.py::test_ccd_images_round_trip_exactly")
PIP_TIMEOUT_S = 600

pytestmark = pytest.mark.skipif(os.environ.get("SMP_SKIP_INSTALL_TEST") == "1",
                                reason="SMP_SKIP_INSTALL_TEST=1")


def _run(argv, timeout=300, cwd=None, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=env, stdin=subprocess.DEVNULL)


def _clean_env(tmp: Path) -> dict[str, str]:
    """No PYTHONPATH (the tests run with the work tree on it), nothing Qt."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["HOME"] = os.environ.get("HOME", str(tmp))
    return env


def _source_copy(tmp: Path) -> Path:
    src = tmp / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in PROJECT_FILES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    return src


def _fresh_venv(tmp: Path, requirements: list) -> tuple[Path, dict]:
    """A venv (no system site packages) with ``requirements`` installed, every version
    constrained to requirements.lock."""
    venv = tmp / "venv"
    env = _clean_env(tmp)
    made = _run([sys.executable, "-m", "venv", venv], env=env)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    # --no-compile: no byte-compiling of thousands of dependency files the test never imports
    pip = [python, "-m", "pip", "install", "-q", "--no-compile", "--disable-pip-version-check",
           "-c", REPO / "requirements.lock"]
    for attempt in range(2):   # one retry: a flaky index should not fail CI
        installed = _run(pip + requirements, timeout=PIP_TIMEOUT_S, cwd=tmp, env=env)
        if installed.returncode == 0:
            break
    assert installed.returncode == 0, installed.stderr[-3000:]
    return venv, env


@pytest.fixture(scope="module")
def headless(tmp_path_factory, des_sample):
    """A fresh venv with ``pip install .`` (no extras) and pytest only."""
    tmp = tmp_path_factory.mktemp("headless")
    venv, env = _fresh_venv(tmp, [_source_copy(tmp), "pytest", "hypothesis"])
    return venv, env, tmp


def test_headless_install_has_no_qt_or_dask(headless):
    venv, env, tmp = headless
    probe = _run([venv / "bin" / "python", "-c",
                  "import importlib.util as u, json, smp_model; print(json.dumps("
                  "{m: u.find_spec(m) is not None for m in "
                  "('PyQt6', 'pyqtgraph', 'dask', 'distributed')} | "
                  "{'smp_model': smp_model.__file__}))"], cwd=tmp, env=env)
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)
    assert found.pop("smp_model").startswith(str(venv))
    assert found == {"PyQt6": False, "pyqtgraph": False, "dask": False,
                     "distributed": False}
    resources = _run([venv / "bin" / "python", "-c",
                      "from smp_model.wcs.decam import load_ccd_layout; "
                      "print(len(load_ccd_layout()))"], cwd=tmp, env=env)
    assert resources.stdout.strip() == "62", resources.stderr


def test_headless_smp_fit_gives_the_development_result(headless, des_sample):
    venv, env, tmp = headless
    manifest = des_sample / "eris" / "detection.toml"
    result = _run([venv / "bin" / "smp", "fit", manifest, "--json", "--quiet"],
                  cwd=tmp, env=env)
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    from smp_model import DetectionPhotometry
    expected = DetectionPhotometry(manifest).fit_single()
    assert got["flux"] == pytest.approx(expected.flux, rel=1e-9)
    assert got["flux_err"] == pytest.approx(expected.flux_err, rel=1e-9)


def test_headless_commands_name_the_missing_extra(headless, tmp_path):
    venv, env, tmp = headless
    listing = tmp_path / "detections.ecsv"
    listing.write_text("manifest\nnone.toml\n")
    batch = _run([venv / "bin" / "smp", "batch", listing, "--out", tmp_path / "f.ecsv"],
                 cwd=tmp, env=env)
    assert batch.returncode == 2
    assert batch.stderr.strip().splitlines() == [
        "smp: error: smp batch needs distributed, which is not installed: "
        "pip install 'smp-inspector[batch]'"]
    gui = _run([venv / "bin" / "smp-gui", "--screenshot", tmp_path / "x.png"],
               cwd=tmp, env=env)
    assert gui.returncode == 2
    assert "pip install 'smp-inspector[gui]'" in gui.stderr
    assert len(gui.stderr.strip().splitlines()) == 1


def test_headless_install_runs_the_engine_tests(headless, des_sample):
    """The engine's own tests, against the installed package (not the work tree)."""
    venv, env, tmp = headless
    files = [f"{REPO / 'tests'}/{name}" for name in ENGINE_TESTS
             if (REPO / "tests" / name.split("::")[0]).exists()]
    env = {**env, "SMP_DES_SAMPLE": str(des_sample)}
    result = _run([venv / "bin" / "pytest", "-q", "-x", "-p", "no:cacheprovider",
                   "-c", REPO / "pyproject.toml", "--rootdir", REPO, *files],
                  timeout=600, cwd=tmp, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


# -- the wheel, installed with the window ------------------------------------------------


def _package_folders() -> set[str]:
    """Every package folder of the source tree, as a path inside the wheel."""
    found = {str(init.parent.relative_to(REPO)) for package in ("smp_model", "smp_gui")
             for init in (REPO / package).rglob("__init__.py")}
    return found | {"smp_model/resources"}


@pytest.fixture(scope="module")
def gui_wheel(tmp_path_factory):
    """(wheel, venv, env, tmp): the project's wheel, built from a copy of the tree and
    installed with the ``gui`` extra into a fresh venv."""
    tmp = tmp_path_factory.mktemp("gui-wheel")
    src, dist = _source_copy(tmp), tmp / "dist"
    built = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                  "--disable-pip-version-check", "-w", dist, src],
                 timeout=PIP_TIMEOUT_S, cwd=tmp, env=_clean_env(tmp))
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = dist.glob("smp_inspector-*.whl")
    venv, env = _fresh_venv(tmp, [f"{wheel}[gui]"])
    env = {**env, "QT_QPA_PLATFORM": "offscreen", "XDG_CACHE_HOME": str(tmp / "cache")}
    return wheel, venv, env, tmp


def test_the_wheel_holds_every_package_folder(gui_wheel):
    wheel = gui_wheel[0]
    with zipfile.ZipFile(wheel) as zf:
        folders = {name.rpartition("/")[0] for name in zf.namelist()
                   if name.endswith("/__init__.py")}
        data = [name for name in zf.namelist() if name.endswith(".ecsv")]
    assert folders == _package_folders()
    assert data == ["smp_model/resources/decam_ccd_layout.ecsv"]


def test_the_gui_install_fits_the_demo(gui_wheel, tmp_path):
    """``smp-gui`` from the wheel generates the demo, fits it in the window and exports
    the same flux as the development tree's ``smp fit --demo``."""
    _, venv, env, tmp = gui_wheel
    table = tmp_path / "demo.ecsv"
    run = _run([venv / "bin" / "smp-gui", "--export-table", table], timeout=600, cwd=tmp,
               env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    from astropy.table import Table
    got = Table.read(table)
    from smp_model.cli.command import main
    expected = tmp_path / "expected.ecsv"
    assert main(["fit", "--demo", "--table", str(expected), "--quiet"]) == 0
    assert list(got["flux"]) == pytest.approx(list(Table.read(expected)["flux"]), rel=1e-9)


def test_the_gui_install_opens_a_batch_output_in_the_survey_view(gui_wheel, tiny_survey,
                                                                 tmp_path):
    """The survey view (smp_gui.survey, once missing from the wheel) opens a batch output
    and hands a selected detection to the inspector, which refits it."""
    _, venv, env, tmp = gui_wheel
    _, batch_output, truth = tiny_survey
    from astropy.table import Table
    key = Table.read(batch_output)["key"][0]
    table = tmp_path / "selected.ecsv"
    shot = tmp_path / "survey.png"
    run = _run([venv / "bin" / "smp-gui", batch_output, "--select", key, "--export-table",
                table], timeout=600, cwd=tmp, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert Table.read(table)["name"][0] == Table.read(batch_output)["name"][0]
    run = _run([venv / "bin" / "smp-gui", batch_output, "--screenshot", shot], timeout=600,
               cwd=tmp, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert shot.stat().st_size > 10_000
