"""Safe linear contrast expressions over design-matrix columns, and BIDS-safe labels.

Expressions such as ``face - house`` or ``0.5*(a + b) - c`` are read by a small tokenizer and
recursive-descent parser (never ``eval``). Grammar::

    expression := term (('+' | '-') term)*
    term       := factor (('*' | '/') factor)*
    factor     := ('+' | '-')* primary
    primary    := NUMBER | NAME | '(' expression ')'

A NAME is ``[A-Za-z_][A-Za-z0-9_.]*`` or any text between backticks (```face-neutral```).
Every value is held as ``constant + sum(weight * column)``; products and quotients must keep
it linear, and the result must weigh at least one column and have no constant.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

_MAX_NESTING = 100
_SPACE = re.compile(r"\s*")
_TOKEN = re.compile(
    r"(?P<number>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?(?![A-Za-z0-9_.]))"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_.]*)|`(?P<quoted>[^`]+)`|(?P<operator>[-+*/()])"
    r"|(?P<malformed>\.?[0-9][A-Za-z0-9_.]*)"
)
_LABEL_SEPARATOR = re.compile(r"[^A-Za-z0-9]+")
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")  # a column name written without backticks


class ContrastError(ValueError):
    """A contrast expression, contrast name or contrast/design combination is not usable."""


@dataclass(frozen=True)
class _Token:
    kind: str  # "number", "name", "end" or the operator character itself
    text: str
    position: int


@dataclass(frozen=True)
class _Linear:
    """The value ``constant + sum(weight * column)``."""

    constant: float
    weights: dict[str, float]

    def scaled(self, factor: float, divide: bool = False) -> _Linear:
        apply = operator.truediv if divide else operator.mul
        weights = {name: apply(weight, factor) for name, weight in self.weights.items()}
        return _Linear(apply(self.constant, factor), weights)

    def plus(self, other: _Linear) -> _Linear:
        weights = dict(self.weights)
        for name, weight in other.weights.items():
            weights[name] = weights.get(name, 0.0) + weight
        return _Linear(self.constant + other.constant, weights)


def contrast_error(message: str, expression: str, position: int | None = None) -> ContrastError:
    """Build a ContrastError quoting the expression, with a caret under ``position``."""
    where = "" if position is None else f" at position {position}"
    text = f"{message}{where} in {expression!r}"
    if position is not None and expression.isprintable():
        text += f"\n    {expression}\n    {' ' * position}^"
    return ContrastError(text)


def _tokenize(expression: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = _SPACE.match(expression).end()
    while position < len(expression):
        match = _TOKEN.match(expression, position)
        if match is None:
            char = expression[position]
            problem = "empty or unclosed backtick name" if char == "`" else f"character {char!r}"
            raise contrast_error(f"unexpected {problem}", expression, position)
        if match["malformed"]:
            word = match["malformed"]
            hint = f"(a column name starting with a digit needs backticks: `{word}`)"
            raise contrast_error(f"malformed number {word!r} {hint}", expression, position)
        if match["number"] and not math.isfinite(float(match["number"])):
            raise contrast_error(f"number {match['number']!r} out of range", expression, position)
        kind = match.lastgroup
        text = match[kind]
        kind = {"quoted": "name", "operator": text}.get(kind, kind)
        tokens.append(_Token(kind, text, position))
        position = _SPACE.match(expression, match.end()).end()
    return [*tokens, _Token("end", "", len(expression))]


class _Parser:
    """Recursive-descent evaluator of one expression into a :class:`_Linear`."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.tokens = _tokenize(expression)
        self.index = 0
        self.depth = 0

    def _next_is(self, *kinds: str) -> bool:
        return self.tokens[self.index].kind in kinds

    def _take(self) -> _Token:
        self.index += 1
        return self.tokens[self.index - 1]

    def _fail(self, message: str, token: _Token) -> ContrastError:
        return contrast_error(message, self.expression, token.position)

    def _unexpected(self, token: _Token) -> ContrastError:
        if token.kind == "end":
            return self._fail("unexpected end of expression", token)
        kind = f"{token.kind} " if token.kind in ("name", "number") else ""
        return self._fail(f"unexpected {kind}{token.text!r}", token)

    def parse(self) -> _Linear:
        value = self._expression()
        if not self._next_is("end"):
            raise self._unexpected(self._take())
        return value

    def _expression(self) -> _Linear:
        value = self._term()
        while self._next_is("+", "-"):
            sign = 1.0 if self._take().kind == "+" else -1.0
            value = value.plus(self._term().scaled(sign))
        return value

    def _term(self) -> _Linear:
        value = self._factor()
        while self._next_is("*", "/"):
            op_token = self._take()
            right = self._factor()
            if op_token.kind == "*":
                if value.weights and right.weights:
                    raise self._fail("non-linear product of two column terms: '*'", op_token)
                value = (
                    right.scaled(value.constant) if right.weights else value.scaled(right.constant)
                )
            elif right.weights:
                raise self._fail("non-linear division by a column term: '/'", op_token)
            elif right.constant == 0.0:
                raise self._fail("division by zero: '/'", op_token)
            else:
                value = value.scaled(right.constant, divide=True)
        return value

    def _factor(self) -> _Linear:
        sign = 1.0
        while self._next_is("+", "-"):
            sign = -sign if self._take().kind == "-" else sign
        return self._primary().scaled(sign)

    def _primary(self) -> _Linear:
        token = self._take()
        if token.kind == "number":
            return _Linear(float(token.text), {})
        if token.kind == "name":
            return _Linear(0.0, {token.text: 1.0})
        if token.kind != "(":
            raise self._unexpected(token)
        self.depth += 1
        if self.depth > _MAX_NESTING:
            raise self._fail(f"parentheses nested deeper than {_MAX_NESTING}", token)
        value = self._expression()
        if self._next_is("end"):
            raise self._fail("unclosed '('", token)
        if not self._next_is(")"):
            raise self._unexpected(self._take())
        self._take()
        self.depth -= 1
        return value


def parse_expression(expression: str) -> dict[str, float]:
    """Parse a linear contrast expression into column weights.

    Parameters
    ----------
    expression : str
        Linear combination of column names, e.g. ``"0.5*(face + `face-neutral`) - house"``.

    Returns
    -------
    dict[str, float]
        Column name -> weight in order of first appearance; repeated names are summed
        (``a + a`` -> ``{"a": 2.0}``) and zero weights dropped.

    Raises
    ------
    ContrastError
        On a syntax error (with its position), a non-linear term, division by zero, a
        constant term, no column, or weights that all cancel or overflow.
    """
    if not expression.strip():
        raise ContrastError("empty contrast expression: expected e.g. 'face - house'")
    value = _Parser(expression).parse()
    if not value.weights:
        raise contrast_error("contrast expression names no design column", expression)
    if not all(map(math.isfinite, [value.constant, *value.weights.values()])):
        raise contrast_error("contrast weights overflow (not finite)", expression)
    if value.constant != 0.0:
        raise contrast_error(
            f"constant term {value.constant:g} not allowed (weigh columns only)", expression
        )
    weights = {name: weight for name, weight in value.weights.items() if weight != 0.0}
    if not weights:
        raise contrast_error("all contrast weights cancel to zero", expression)
    return weights


def missing_columns(weights: Mapping[str, float], column_names: Sequence[str]) -> list[str]:
    """List the weighted names, in weight order, that ``column_names`` lacks.

    Parameters
    ----------
    weights : Mapping[str, float]
        Column name -> weight.
    column_names : Sequence[str]
        A design's column names.

    Returns
    -------
    list[str]
        Absent names; empty when every weighted name is a column.
    """
    available = set(column_names)
    return [name for name in weights if name not in available]


def weights_text(weights: Mapping[str, float]) -> str:
    """Named weights as an expression `parse_expression` reads back: ``face - house``,
    ``0.5*face + 0.5*house``, ``2*`face-neutral``` (each weight in the fewest digits that
    give it back exactly)."""
    parts = []
    for column, weight in weights.items():
        name = column if _PLAIN_NAME.fullmatch(column) else f"`{column}`"
        size = abs(weight)
        short = f"{size:g}"
        term = name if size == 1 else f"{short if float(short) == size else repr(size)}*{name}"
        if parts:
            parts.append(f"{'-' if weight < 0 else '+'} {term}")
        else:
            parts.append(f"-{term}" if weight < 0 else term)
    return " ".join(parts) or "0"


def weights_vector(weights: Mapping[str, float], column_names: Sequence[str]) -> np.ndarray:
    """Expand named weights into a ``(p,)`` float64 contrast vector over a design's columns.

    Parameters
    ----------
    weights : Mapping[str, float]
        Column name -> weight, e.g. from :func:`parse_expression`.
    column_names : Sequence[str]
        The design's unique column names, in column order (zero weight when not named).

    Returns
    -------
    numpy.ndarray
        Contrast vector of length ``len(column_names)``.

    Raises
    ------
    ContrastError
        If a weighted name is not a column (listing missing and available columns), or if
        ``column_names`` repeats a name.
    """
    columns = list(column_names)
    position = {name: index for index, name in enumerate(columns)}
    if len(position) != len(columns):
        raise ContrastError(f"design column names must be unique; got {columns}")
    missing = missing_columns(weights, columns)
    if missing:
        raise ContrastError(
            f"contrast refers to column(s) not in the design: {', '.join(map(repr, missing))}; "
            f"available columns: {', '.join(map(repr, columns))}"
        )
    vector = np.zeros(len(columns), dtype=np.float64)
    for name, weight in weights.items():
        vector[position[name]] = weight
    return vector


def bids_label(name: str) -> str:
    """Turn a contrast name into a BIDS-safe camelCase label, e.g. ``dStMinusSSt``.

    The name is split on runs of anything but ASCII letters and digits; the first piece gets
    a lowercase first letter, later pieces an uppercase one, the rest is kept.

    Parameters
    ----------
    name : str
        Contrast name as the user gave it, e.g. ``"DSt_minus_SSt"``.

    Returns
    -------
    str
        Label matching ``^[A-Za-z0-9]+$``.

    Raises
    ------
    ContrastError
        If the name has no ASCII letter or digit.
    """
    pieces = [piece for piece in _LABEL_SEPARATOR.split(name) if piece]
    if not pieces:
        raise ContrastError(f"contrast name {name!r} has no ASCII letter or digit for a label")
    first, *rest = pieces
    return first[0].lower() + first[1:] + "".join(piece[0].upper() + piece[1:] for piece in rest)


def unique_labels(names: Sequence[str]) -> dict[str, str]:
    """Map contrast names to BIDS labels, refusing repeated names and label collisions.

    Parameters
    ----------
    names : Sequence[str]
        Contrast names.

    Returns
    -------
    dict[str, str]
        Name -> label, in the order of ``names``.

    Raises
    ------
    ContrastError
        If a name is repeated or gives no label, or two names give the same label.
    """
    labels: dict[str, str] = {}
    owners: dict[str, str] = {}
    for name in names:
        if name in labels:
            raise ContrastError(f"contrast name {name!r} is given more than once")
        label = bids_label(name)
        if label in owners:
            raise ContrastError(
                f"contrast names {owners[label]!r} and {name!r} both give the BIDS label "
                f"{label!r}; rename one of them"
            )
        labels[name] = label
        owners[label] = name
    return labels
