"""Sphinx configuration of the SMP Inspector documentation.

Build it with ``./dev docs`` (warnings are errors).  The API pages under ``api/`` import
every module they document.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(ROOT))   # the checkout's packages, even without an install
# The GUI modules import PyQt6; documenting them needs no display.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

project = "SMP Inspector"
author = "SMP Inspector developers"
copyright = "SMP Inspector developers (BSD-3-Clause)"


def _version() -> str:
    import tomllib
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)["project"]["version"]


release = _version()
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "smp_docs",          # docs/_ext/smp_docs.py: column and flag tables from the registry
]

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
suppress_warnings: list[str] = []

# Docstrings are numpy style.  Attributes become :ivar: fields, so that an "Attributes"
# section and autodoc's own entry for a dataclass field never describe one name twice.
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_ivar = True
napoleon_use_rtype = False

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"show-inheritance": True}
# `name` in a docstring links to that object when Sphinx knows it, and is code otherwise.
default_role = "py:obj"

html_theme = "furo"
html_title = f"SMP Inspector {release}"
html_static_path: list[str] = []
html_show_sourcelink = False
pygments_style = "sphinx"
pygments_dark_style = "monokai"
