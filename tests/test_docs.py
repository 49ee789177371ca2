"""The documentation site builds with no warning, as ``./dev docs`` builds it.

A broken docstring (bad indentation, an unknown role, a stray ``|``), a link to a page
that does not exist, or a column registry the docs extension cannot read fails this test,
and with it ``./dev test`` and CI.  The build imports every module the API pages document
(the engine, and PyQt6 offscreen for the GUI pages).
"""
from __future__ import annotations

import html
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"

pytest.importorskip("sphinx", reason="the docs extra (sphinx, furo) is not installed")
pytest.importorskip("furo", reason="the docs extra (sphinx, furo) is not installed")


def engine_has_api_layout() -> bool:
    """The API pages document the engine's subpackage layout (``smp_model.outputs`` and its
    siblings); a checkout from before that layout cannot build them."""
    return importlib.util.find_spec("smp_model.outputs") is not None


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site built as ``./dev docs`` builds it (warnings are errors); its HTML folder."""
    out = tmp_path_factory.mktemp("docs")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    if not engine_has_api_layout():
        env["SMP_DOCS_SKIP_API"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-j", "auto", "-q",
         "-b", "html", "-d", str(out / "doctrees"), str(DOCS), str(out / "html")],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=600,
        stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"sphinx-build exited {proc.returncode}:\n{proc.stderr[-8000:]}"
    assert proc.stderr.strip() == "", proc.stderr[-8000:]
    return out / "html"


def test_docs_build_without_warnings(site):
    for page in ("index", "install", "quickstart", "method", "conventions",
                 "reference/outputs", "validation/injection", "validation/psf_phase",
                 "validation/reference", "performance", "developer/architecture",
                 "changelog", "user_guide/trust"):
        assert (site / f"{page}.html").is_file(), page
    if engine_has_api_layout():
        assert (site / "api" / "index.html").is_file()


def test_outputs_page_lists_every_column_and_flag(site):
    """The tables of the outputs page are generated from the engine's registry: every
    column and flag it registers appears there, with its meaning."""
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        import smp_docs
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    registry = smp_docs.registry()
    page = html.unescape((site / "reference" / "outputs.html").read_text())
    columns = smp_docs.registry_columns(registry)
    names = {c.name for c in columns}
    assert {"flux", "flux_err", "flux_err_total", "total_flux", "flags"} <= names
    for column in columns:
        assert f">{column.name}<" in page, column.name
        assert column.description in page, column.name
    for flag in registry.FLAGS:
        assert f">{flag.name}<" in page and flag.meaning in page, flag.name

