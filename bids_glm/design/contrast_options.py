"""Contrast options of the command line: ``--contrast`` and ``--f-contrast`` values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from bids_glm.design.contrasts import ContrastError, bids_label, parse_expression
from bids_glm.design.numeric_contrasts import NumericRows, is_numeric, parse_numeric_weights


@dataclass(frozen=True)
class ContrastSpec:
    """One user contrast: its name, its expression text and the parsed column weights.

    A numeric contrast (``[1, -1]``) has no named ``weights`` (empty) until planning gives
    its positions column names: ``numeric`` holds its one row of weights by position.
    """

    name: str
    expression: str
    weights: Mapping[str, float]
    numeric: NumericRows | None = field(default=None, repr=False)  # text is in expression


@dataclass(frozen=True)
class FContrastSpec:
    """One user F contrast: its name, its text and one weight mapping per row.

    A numeric matrix (``[[1, 0], [0, 1]]``) has no named ``rows`` (empty) until planning;
    ``numeric`` holds its rows of weights by position.
    """

    name: str
    expression: str
    rows: tuple[Mapping[str, float], ...]
    numeric: NumericRows | None = field(default=None, repr=False)  # text is in expression


def _numeric(name: str, text: str, option: str) -> NumericRows:
    try:
        return parse_numeric_weights(text)
    except ContrastError as error:
        raise ContrastError(f"{option} {name!r}: {error}") from error


def parse_contrast_option(text: str) -> ContrastSpec:
    """Parse one ``--contrast NAME=EXPRESSION`` value, split on the first ``=``.

    Parameters
    ----------
    text : str
        E.g. ``"faceVsHouse=face - house"``, or a numeric vector ``"x=[1, -1]"`` (weights
        of the design's first columns; a one-row matrix ``[[1, -1]]`` is accepted).

    Returns
    -------
    ContrastSpec
        Stripped name and expression, and the expression's weights.

    Raises
    ------
    ContrastError
        Without ``=``, for a name that is empty or gives no BIDS label, a bad expression,
        or a malformed numeric vector (or one with several rows).
    """
    name, equals, expression = text.partition("=")
    name = name.strip()
    if not equals or not name:
        raise ContrastError(
            f'expected --contrast NAME=EXPRESSION, e.g. --contrast "faceVsHouse=face - house"; '
            f"got {text!r}"
        )
    bids_label(name)
    if is_numeric(expression):
        rows = _numeric(name, expression, "contrast")
        if len(rows) > 1:
            raise ContrastError(
                f"contrast {name!r}: {expression.strip()!r} has {len(rows)} rows; --contrast "
                "takes one vector, e.g. [1, -1] (use --f-contrast for a matrix)"
            )
        return ContrastSpec(name, expression.strip(), {}, numeric=rows)
    try:
        weights = parse_expression(expression)
    except ContrastError as error:
        raise ContrastError(f"contrast {name!r}: {error}") from error
    return ContrastSpec(name=name, expression=expression.strip(), weights=weights)


def parse_f_contrast_option(text: str) -> FContrastSpec:
    """Parse one ``--f-contrast NAME=ROW; ROW; ...`` value (rows are linear expressions).

    Parameters
    ----------
    text : str
        E.g. ``"effectsOfInterest=face; house; scrambled"``, or a numeric matrix
        ``"effects=[[1, 0], [0, 1]]"`` (rows of weights of the design's first columns).

    Returns
    -------
    FContrastSpec

    Raises
    ------
    ContrastError
        Without ``=``, for a bad name, an empty row or a bad expression (the row is named),
        or a malformed numeric matrix.
    """
    name, equals, expression = text.partition("=")
    name = name.strip()
    if not equals or not name:
        raise ContrastError(
            "expected --f-contrast NAME=ROW; ROW; ..., e.g. "
            f'--f-contrast "effectsOfInterest=face; house"; got {text!r}'
        )
    bids_label(name)
    if is_numeric(expression):
        numeric = _numeric(name, expression, "F contrast")
        return FContrastSpec(name, expression.strip(), (), numeric=numeric)
    rows = []
    for number, row in enumerate(expression.split(";"), start=1):
        try:
            rows.append(parse_expression(row))
        except ContrastError as error:
            raise ContrastError(f"F contrast {name!r}, row {number}: {error}") from error
    return FContrastSpec(name=name, expression=expression.strip(), rows=tuple(rows))
