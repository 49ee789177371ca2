"""The shape of the code: a layered engine with no Qt, no import cycles, modules of a
readable size.

The import graph is read from the source with `ast`, counting every import: at module
level, inside functions (deferred imports) and under ``TYPE_CHECKING``, since a cycle that
is only hidden by deferring one side is still two modules that cannot be understood apart.
"""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
from scipy.sparse import csr_array
from scipy.sparse.csgraph import connected_components

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("smp_model", "smp_gui")
MAX_MODULE_LINES = 600
QT_MODULES = ("PyQt6", "PyQt5", "PySide6", "PySide2", "pyqtgraph", "qtpy", "smp_gui")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _imported(path: Path, name: str) -> set[str]:
    """Every module name ``path`` (module ``name``) imports, resolved to absolute names;
    ``from package import submodule`` counts as an import of the submodule."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            targets.add(module)
            targets.update(f"{module}.{a.name}" for a in node.names)
    return targets


def _internal_edges() -> list[tuple[str, str]]:
    edges = []
    for name, path in MODULES.items():
        for target in _imported(path, name):
            if target in MODULES and target != name:
                edges.append((name, target))
    return edges


def test_no_import_cycles():
    names = sorted(MODULES)
    index = {n: i for i, n in enumerate(names)}
    edges = _internal_edges()
    graph = csr_array((np.ones(len(edges)), ([index[a] for a, _ in edges],
                                             [index[b] for _, b in edges])),
                      shape=(len(names), len(names)))
    n, labels = connected_components(graph, directed=True, connection="strong")
    cycles = [sorted(names[i] for i in np.flatnonzero(labels == k)) for k in range(n)]
    assert [c for c in cycles if len(c) > 1] == []


def test_the_engine_imports_no_qt():
    offenders = {name: sorted(t for t in _imported(path, name)
                              if t.split(".")[0] in QT_MODULES)
                 for name, path in MODULES.items() if name.startswith("smp_model")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_modules_stay_readable():
    sizes = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    assert {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_every_module_declares_its_public_names():
    missing = [name for name, path in MODULES.items()
               if path.name not in ("__init__.py", "__main__.py")
               and "__all__" not in path.read_text()]
    assert missing == []


def test_the_command_line_parser_imports_no_science_stack():
    """``smp --version`` and ``smp fit --help`` build every command's parser; they answer
    in a tenth of a second only while no parser imports numpy/astropy/galsim at module
    level (a command's work imports them when it runs)."""
    import subprocess
    import sys
    code = ("import sys; from smp_model.cli.command import build_parser; build_parser(); "
            "print(sorted({m.split('.')[0] for m in sys.modules} "
            "& {'numpy', 'astropy', 'galsim', 'piff', 'scipy', 'pyvo', 'matplotlib'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
