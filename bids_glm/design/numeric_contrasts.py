"""Numeric contrast vectors and matrices (``[1, -1]``, ``[[1, 0], [0, 1]]``) and their columns.

A numeric contrast gives weights by column position, as nilearn's ``compute_contrast``
takes them: the first weight is the design's first column. The text is read by a small
strict tokenizer (never ``eval``) accepting JSON-like lists of finite numbers::

    weights := vector | '[' vector (',' vector)* ']'
    vector  := '[' NUMBER (',' NUMBER)* ']'

A vector shorter than a design is padded with zeros; :func:`named_rows` turns the
positions into column names once, so that everything downstream sees named weights.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from bids_glm.design.contrasts import ContrastError, contrast_error

_TOKEN = re.compile(
    r"\s*(?:(?P<number>[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
    r"|(?P<punct>[\[\],]))"
)
NumericRows = tuple[tuple[float, ...], ...]


def is_numeric(text: str) -> bool:
    """Whether a contrast's text is a numeric vector or matrix (it starts with ``[``)."""
    return text.strip().startswith("[")


def _tokens(text: str) -> list[tuple[str, int]]:
    """(token text, position) pairs, then ("", len(text)) at the end."""
    tokens, position = [], 0
    while text[position:].strip():
        match = _TOKEN.match(text, position)
        if match is None:
            start = len(text) - len(text[position:].lstrip())
            raise contrast_error(
                f"unexpected {text[start]!r} (expected numbers, ',', '[' or ']')", text, start
            )
        kind = "number" if match["number"] else "punct"
        tokens.append((match[kind], match.start(kind)))
        position = match.end()
    return [*tokens, ("", len(text))]


class _Reader:
    """Reads the tokens of one numeric contrast into rows."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.index = 0

    def _peek(self) -> str:
        return self.tokens[self.index][0]

    def _fail(self, message: str) -> ContrastError:
        return contrast_error(message, self.text, self.tokens[self.index][1])

    def _take(self, token: str, message: str) -> None:
        if self._peek() != token:
            raise self._fail(message)
        self.index += 1

    def _number(self, in_matrix: bool) -> float:
        token, position = self.tokens[self.index]
        if token in (",", "]"):
            raise self._fail("empty element: expected a number")
        if token == "[":
            nested = "lists nested deeper than a matrix" if in_matrix else "a list inside a vector"
            raise self._fail(f"{nested}; write a matrix as [[1, 0], [0, 1]]")
        if not token:
            raise self._fail("unexpected end: expected a number and a closing ']'")
        value = float(token)
        if not math.isfinite(value):
            raise contrast_error(f"weight {token!r} is not a finite number", self.text, position)
        self.index += 1
        return value

    def _list(self, read_item, what: str) -> list:
        self._take("[", f"expected '[' to open a {what}")
        if self._peek() == "]":
            raise self._fail(f"empty {what}: expected at least one weight")
        items = [read_item()]
        while self._peek() == ",":
            self.index += 1
            items.append(read_item())
        closing = "unexpected end" if not self._peek() else f"unexpected {self._peek()!r}"
        self._take("]", f"{closing}: expected ',' or ']' in a {what}")
        return items

    def _row(self) -> tuple[float, ...]:
        if self._peek() != "[":
            raise self._fail("a number among rows; write a matrix as [[1, 0], [0, 1]]")
        return tuple(self._list(lambda: self._number(True), "row"))

    def read(self) -> NumericRows:
        if len(self.tokens) > 2 and self.tokens[1][0] == "[":
            rows = self._list(self._row, "matrix")
        else:
            rows = [tuple(self._list(lambda: self._number(False), "vector"))]
        if self._peek():
            raise self._fail(f"unexpected {self._peek()!r} after the closing ']'")
        return tuple(rows)


def parse_numeric_weights(text: str) -> NumericRows:
    """Read a numeric contrast: a vector ``[1, -1]`` or a matrix ``[[1, 0], [0, 1]]``.

    Parameters
    ----------
    text : str
        JSON-like list syntax; numbers only (``1``, ``-0.5``, ``1e-3``), finite.

    Returns
    -------
    tuple of tuple of float
        One tuple per row (a vector gives one row); every row has the same length.

    Raises
    ------
    ContrastError
        On an empty list or element (``[]``, ``[1,,2]``), text, a non-finite number,
        nesting deeper than a matrix, rows of unequal length, or a row of zeros.
    """
    stripped = text.strip()
    if not stripped:
        raise ContrastError("empty contrast: expected e.g. [1, -1]")
    rows = _Reader(stripped).read()
    lengths = [len(row) for row in rows]
    if len(set(lengths)) > 1:
        shown = ", ".join(f"row {k} has {n}" for k, n in enumerate(lengths, start=1))
        raise ContrastError(
            f"rows of unequal length in {stripped!r}: {shown} weight(s); "
            "every row needs one weight per column"
        )
    for number, row in enumerate(rows, start=1):
        if not any(row):
            which = "" if len(rows) == 1 else f"row {number} of "
            raise ContrastError(f"{which}{stripped!r} has only zero weights: it weighs no column")
    return rows


def named_rows(rows: NumericRows, columns: Sequence[str]) -> tuple[dict[str, float], ...]:
    """Give a numeric contrast's weights their column names (zero weights dropped).

    Parameters
    ----------
    rows : tuple of tuple of float
        From :func:`parse_numeric_weights`; no longer than ``columns``.
    columns : sequence of str
        A design's column names, in order; the columns past a row's end get weight 0.

    Returns
    -------
    tuple of dict of str to float
        Column name -> weight, one mapping per row, in column order.
    """
    return tuple(
        {column: weight for column, weight in zip(columns, row, strict=False) if weight != 0.0}
        for row in rows
    )


def weights_text(rows: Sequence[dict[str, float]]) -> str:
    """Named weights for messages, e.g. ``face=1, house=-1`` (rows separated by ``;``)."""
    return "; ".join(", ".join(f"{c}={w:g}" for c, w in row.items()) for row in rows)


def _labels(labels: Sequence[str], shown: int = 4) -> str:
    more = len(labels) - shown
    return ", ".join(labels[:shown]) + (f" and {more} more" if more > 0 else "")


def _misaligned(resolved: dict[str, tuple], runs: Sequence[tuple[str, Sequence[str]]]) -> str:
    by_weights: dict[str, list[str]] = {}
    for label, rows in resolved.items():
        by_weights.setdefault(weights_text(rows), []).append(label)
    by_columns: dict[tuple[str, ...], list[str]] = {}
    for label, columns in runs:
        by_columns.setdefault(tuple(columns), []).append(label)
    weights = "".join(f"\n  {text} in {_labels(labels)}" for text, labels in by_weights.items())
    columns = "".join(
        f"\n  {_labels(labels)}: {', '.join(names)}" for names, labels in by_columns.items()
    )
    return (
        "the runs' designs order their columns differently, so these weights by position "
        f"would fall on different regressors in different runs:{weights}\n"
        f"columns of each run:{columns}\n"
        "give the contrast by column names instead (e.g. NAME=face - house), which weighs "
        "the same regressors in every run"
    )


def resolve_numeric(
    rows: NumericRows, runs: Sequence[tuple[str, Sequence[str]]]
) -> tuple[tuple[dict[str, float], ...], list[str]]:
    """Name a numeric contrast's weights by the runs' columns, refusing runs that disagree.

    Parameters
    ----------
    rows : tuple of tuple of float
        From :func:`parse_numeric_weights`.
    runs : sequence of (str, sequence of str)
        Each run's label and its design's column names, in order.

    Returns
    -------
    rows : tuple of dict of str to float
        The named weights (the same in every run).
    notes : list of str
        One note per run whose design is wider than the weights: the columns the weights
        fall on and the zero-padded ones.

    Raises
    ------
    ContrastError
        A row is longer than a run's design (naming the run, the lengths and the columns),
        or the weighted columns differ between runs (listing each run's columns).
    """
    width = len(rows[0])
    per_row = " per row" if len(rows) > 1 else ""
    resolved: dict[str, tuple[dict[str, float], ...]] = {}
    notes = []
    for label, columns in runs:
        columns = [str(c) for c in columns]
        if width > len(columns):
            raise ContrastError(
                f"{width} weights per row, but the design of {label} has {len(columns)} "
                f"columns: {', '.join(columns)}"
            )
        resolved[label] = named_rows(rows, columns)
        if width < len(columns):
            notes.append(
                f"{width} weight(s){per_row} for the {len(columns)} columns of {label}: "
                f"they fall on {', '.join(columns[:width])}; zero-padded over the other "
                f"{len(columns) - width}: {', '.join(columns[width:])}"
            )
    if len({tuple(tuple(sorted(r.items())) for r in named) for named in resolved.values()}) > 1:
        raise ContrastError(_misaligned(resolved, runs))
    return next(iter(resolved.values())), notes
