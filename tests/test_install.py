"""The headless install: ``pip install .`` (no extras) in a fresh venv gives a working engine
and ``smp`` without Qt or dask, runs the engine tests, and says which extra the other
commands need.

It builds a venv (about a minute, from pip's cache; the versions are constrained to
requirements.lock so that nothing new is downloaded).  Set SMP_SKIP_INSTALL_TEST=1 to skip
it on a machine without access to the package index.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
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


@pytest.fixture(scope="module")
def headless(tmp_path_factory, des_sample):
    """A fresh venv (no system site packages) with ``pip install .`` and pytest only."""
    tmp = tmp_path_factory.mktemp("headless")
    src = tmp / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in PROJECT_FILES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    venv = tmp / "venv"
    env = _clean_env(tmp)
    made = _run([sys.executable, "-m", "venv", venv], env=env)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    # --no-compile: no byte-compiling of thousands of dependency files the test never imports
    pip = [python, "-m", "pip", "install", "-q", "--no-compile", "--disable-pip-version-check",
           "-c", REPO / "requirements.lock"]
    for attempt in range(2):   # one retry: a flaky index should not fail CI
        installed = _run(pip + [src, "pytest", "hypothesis"], timeout=PIP_TIMEOUT_S,
                         cwd=tmp, env=env)
        if installed.returncode == 0:
            break
    assert installed.returncode == 0, installed.stderr[-3000:]
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
