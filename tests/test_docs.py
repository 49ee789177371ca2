"""The documentation site builds with no warning, as ``./dev docs`` builds it.

A broken docstring (bad indentation, an unknown role, a stray ``|``), a link to a page
that does not exist, or a column registry the docs extension cannot read fails this test,
and with it ``./dev test`` and CI.  The build imports every module the API pages document
(the engine, and PyQt6 offscreen for the GUI pages).
"""
from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"

pytest.importorskip("sphinx", reason="the docs extra (sphinx, furo) is not installed")
pytest.importorskip("furo", reason="the docs extra (sphinx, furo) is not installed")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site built as ``./dev docs`` builds it (warnings are errors); its HTML folder."""
    out = tmp_path_factory.mktemp("docs")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
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
    assert (site / "api" / "index.html").is_file()


def _package_modules() -> set[str]:
    found = set()
    for package in ("smp_model", "smp_gui"):
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            if parts[-1] != "__main__":
                found.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


def test_the_api_reference_documents_every_module(site):
    documented = set()
    for page in (DOCS / "api").glob("*.rst"):
        documented |= set(re.findall(r"^\.\. automodule:: (\S+)", page.read_text(), re.M))
    assert documented == _package_modules()


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

