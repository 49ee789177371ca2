"""Tables generated from the engine's own registries, so that each fact lives in one place.

Directives:

``.. smp-columns::``
    The flux table's columns (name, unit, one row per source or per fit, meaning), from
    the column registry ``COLUMNS`` (and ``FIT_COLUMNS``, the columns that are the same in
    every row of a fit).
``.. smp-flags::``
    The bits of the ``flags`` column (bit, name, meaning), from ``FLAGS`` and the bits
    older releases set (``RETIRED_FLAGS``).
``.. smp-mask-bits::``
    The bits of a stamp's ``MSK`` HDU (value, name, meaning), from
    ``smp_model.inputs.mask_bits.MASK_BITS``.
``.. smp-public-api::``
    The names importable from ``smp_model`` itself, each linked to the module that
    defines it.

The registry is ``smp_model.outputs.columns``: one fact in one place.
"""
from __future__ import annotations

import importlib
from collections.abc import Iterable

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

def registry():
    """The engine's column and flag registry (`smp_model.outputs.columns`)."""
    return importlib.import_module("smp_model.outputs.columns")


def registry_columns(module) -> list:
    columns = module.COLUMNS
    return list(columns.values() if hasattr(columns, "values") else columns)


def _table(headers: Iterable[str], widths: Iterable[int], rows: Iterable[list]) -> nodes.table:
    """A docutils table; each cell is a node or a string (plain text)."""
    headers, widths = list(headers), list(widths)
    table = nodes.table(classes=["smp-registry"])
    group = nodes.tgroup(cols=len(headers))
    table += group
    for width in widths:
        group += nodes.colspec(colwidth=width)
    head = nodes.thead()
    group += head
    head += _row(headers)
    body = nodes.tbody()
    group += body
    for cells in rows:
        body += _row(cells)
    return table


def _row(cells) -> nodes.row:
    row = nodes.row()
    for cell in cells:
        entry = nodes.entry()
        # The registry's words verbatim: no curly quotes or dashes made from them.
        paragraph = nodes.paragraph(support_smartquotes=False)
        paragraph += cell if isinstance(cell, nodes.Node) else nodes.Text(str(cell))
        entry += paragraph
        row += entry
    return row


class ColumnsDirective(SphinxDirective):
    """The flux table's columns, in table order."""

    has_content = False

    def run(self):
        module = registry()
        fit_wide = set(getattr(module, "FIT_COLUMNS", ()))
        rows = [[nodes.literal(text=c.name), c.unit or "", "fit" if c.name in fit_wide
                 else "source", c.description] for c in registry_columns(module)]
        return [_table(("column", "unit", "per", "meaning"), (18, 8, 6, 68), rows)]


class FlagsDirective(SphinxDirective):
    """The bits of the ``flags`` column."""

    has_content = False

    def run(self):
        module = registry()
        flags = sorted((*module.FLAGS, *getattr(module, "RETIRED_FLAGS", ())),
                       key=lambda f: f.bit)
        rows = [[str(f.bit), nodes.literal(text=f.name), f.meaning] for f in flags]
        return [_table(("bit", "name", "meaning"), (6, 24, 70), rows)]


class MaskBitsDirective(SphinxDirective):
    """The bits of a stamp's mask (DES ``BADPIX``)."""

    has_content = False

    def run(self):
        module = importlib.import_module("smp_model.inputs.mask_bits")
        rows = [[str(b.value), nodes.literal(text=b.name), b.meaning] for b in module.MASK_BITS]
        return [_table(("value", "name", "meaning"), (8, 16, 76), rows)]


class PublicApiDirective(SphinxDirective):
    """``smp_model.__all__``, each name linked to where it is defined."""

    has_content = False

    def run(self):
        package = importlib.import_module("smp_model")
        items = nodes.bullet_list()
        for name in package.__all__:
            if name.startswith("__"):
                continue
            obj = getattr(package, name)
            home = getattr(obj, "__module__", "smp_model")
            target = f"{home}.{getattr(obj, '__qualname__', name)}"
            ref = addnodes.pending_xref("", refdomain="py", reftype="obj", reftarget=target,
                                        refexplicit=True, refwarn=False)
            ref += nodes.literal(text=name)
            paragraph = nodes.paragraph()
            paragraph += ref
            paragraph += nodes.Text(f"  ({home})")
            item = nodes.list_item()
            item += paragraph
            items += item
        return [items]


def setup(app: Sphinx) -> dict:
    app.add_directive("smp-columns", ColumnsDirective)
    app.add_directive("smp-flags", FlagsDirective)
    app.add_directive("smp-mask-bits", MaskBitsDirective)
    app.add_directive("smp-public-api", PublicApiDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
