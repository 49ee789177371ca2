"""The survey's filter language: a small safe expression language over the survey's columns
(nothing is evaluated as Python).

Comparisons of columns with numbers, quoted strings or other columns, joined by ``and``,
``or``, ``not`` and parentheses, e.g. ``chi2_dof > 1.5 and flags & exposure_dropped != 0``;
a flag name stands for its bit (`smp_model.outputs.columns.FLAG_BITS`).
"""
from __future__ import annotations

import re

import numpy as np

from ..outputs.columns import FLAG_BITS

__all__ = ["FilterError", "compile_filter"]


class FilterError(ValueError):
    """A filter expression that cannot be parsed or applied (message for the user)."""


_TOKEN = re.compile(r"""\s*(?:
    (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)\b)
  | (?P<string>"[^"]*"|'[^']*')
  | (?P<op>==|!=|<=|>=|<|>|&|\(|\))
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  )""", re.VERBOSE | re.IGNORECASE)


_COMPARE = {"==": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal,
            ">": np.greater, ">=": np.greater_equal}


_KEYWORDS = ("and", "or", "not")




def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise FilterError(f"cannot read {text[pos:].strip()[:20]!r} (at character "
                              f"{pos + 1})")
        kind = match.lastgroup
        value = match.group(kind)
        if kind == "name" and value.lower() in _KEYWORDS:
            kind, value = "keyword", value.lower()
        out.append((kind, value))
        pos = match.end()
    return out


class _Parser:
    """Recursive descent over: or := and ('or' and)*; and := not ('and' not)*;
    not := 'not' not | '(' or ')' | comparison; comparison := operand OP operand;
    operand := atom ('&' atom)?; atom := column | number | string."""

    def __init__(self, tokens, columns: dict[str, np.ndarray]):
        self.tokens, self.pos, self.columns = tokens, 0, columns
        self.n = len(next(iter(columns.values()))) if columns else 0

    def peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else (None, None)

    def take(self):
        token = self.peek()
        self.pos += 1
        return token

    def parse(self) -> np.ndarray:
        mask = self.or_()
        if self.pos != len(self.tokens):
            raise FilterError(f"unexpected {self.peek()[1]!r}")
        return mask

    def or_(self):
        mask = self.and_()
        while self.peek() == ("keyword", "or"):
            self.take()
            mask = mask | self.and_()
        return mask

    def and_(self):
        mask = self.not_()
        while self.peek() == ("keyword", "and"):
            self.take()
            mask = mask & self.not_()
        return mask

    def not_(self):
        if self.peek() == ("keyword", "not"):
            self.take()
            return ~self.not_()
        if self.peek() == ("op", "("):
            self.take()
            mask = self.or_()
            if self.take() != ("op", ")"):
                raise FilterError("missing ')'")
            return mask
        return self.comparison()

    def comparison(self):
        left = self.operand()
        kind, op = self.take()
        if kind != "op" or op not in _COMPARE:
            raise FilterError("expected a comparison (==, !=, <, <=, >, >=) after "
                              f"{left[2]!r}" + (f", got {op!r}" if op else ""))
        right = self.operand()
        return _compare(op, left, right, self.n)

    def operand(self):
        value = self.atom()
        if self.peek() == ("op", "&"):
            self.take()
            mask = self.atom()
            a, b = _numeric(value), _numeric(mask)
            if a is None or b is None or not (_whole(a) and _whole(b)):
                raise FilterError("'&' needs integer operands (e.g. flags & 4), got "
                                  f"{value[2]} & {mask[2]}")
            return ("value", np.bitwise_and(np.asarray(a).astype(np.int64),
                                            np.asarray(b).astype(np.int64)),
                    f"{value[2]} & {mask[2]}")
        return value

    def atom(self):
        kind, text = self.take()
        if kind == "number":
            return ("value", float(text), text)
        if kind == "string":
            return ("string", text[1:-1], text)
        if kind == "name":
            column = self.columns.get(text)
            if column is None:
                lower = {c.lower(): c for c in self.columns}
                if text.lower() in lower:
                    column = self.columns[lower[text.lower()]]
                elif text.lower() in FLAG_BITS:
                    return ("value", float(FLAG_BITS[text.lower()]), text)
                elif text.lower() == "position_fixed":
                    raise FilterError("position_fixed is no longer a flag: use "
                                      "positions == \"fixed\"")
                else:
                    raise FilterError(f"no column or flag {text!r}; columns: "
                                      f"{', '.join(sorted(self.columns))}; flags: "
                                      f"{', '.join(FLAG_BITS)}")
            return ("column", column, text)
        raise FilterError("expected a column, number or quoted string"
                          + (f", got {text!r}" if text else " at the end"))


def _whole(value) -> bool:
    """Every value a whole number (a float column of integers counts: flags read back)."""
    array = np.asarray(value)
    return array.dtype.kind in "iub" or bool(np.all(np.mod(array[np.isfinite(array)], 1) == 0)
                                             and np.all(np.isfinite(array)))


def _numeric(operand):
    kind, value, _ = operand
    if kind == "string":
        return None
    array = np.asarray(value)
    if array.dtype.kind in "fiub":
        return value
    return None


def _compare(op: str, left, right, n: int) -> np.ndarray:
    a_num, b_num = _numeric(left), _numeric(right)
    if a_num is not None and b_num is not None:
        with np.errstate(invalid="ignore"):
            result = _COMPARE[op](np.asarray(a_num, float), np.asarray(b_num, float))
    else:
        if op not in ("==", "!="):
            raise FilterError(f"{left[2]} {op} {right[2]}: text compares with == or != only")
        if (a_num is not None and left[0] != "column") or \
                (b_num is not None and right[0] != "column"):
            raise FilterError(f"{left[2]} {op} {right[2]}: compares text with a number")
        a = np.asarray(left[1]).astype(str)
        b = np.asarray(right[1]).astype(str)
        result = _COMPARE[op](a, b)
    return np.broadcast_to(np.asarray(result, bool), (n,)).copy()


def compile_filter(expression: str, columns: dict[str, np.ndarray]) -> np.ndarray:
    """Boolean mask (one per detection) of the rows matching ``expression``.

    Grammar: comparisons ``A op B`` (op: ``== != < <= > >=``; A, B: a column name, a
    number, ``nan``/``inf``, a flag name (its bit, `FLAG_BITS`) or a quoted string;
    ``A & N`` tests bits), joined by ``and``,
    ``or``, ``not`` and parentheses.  Comparisons with NaN are false.  Text compares
    with ``==``/``!=`` only.  Raises `FilterError` with a message for the user.  Nothing
    in the expression is run as code."""
    n = len(next(iter(columns.values()))) if columns else 0
    if not expression or not expression.strip():
        return np.ones(n, bool)
    tokens = _tokens(expression)
    return _Parser(tokens, columns).parse()
