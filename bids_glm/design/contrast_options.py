"""Contrast options of the command line: ``--contrast`` and ``--f-contrast`` values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bids_glm.design.contrasts import ContrastError, bids_label, parse_expression


@dataclass(frozen=True)
class ContrastSpec:
    """One user contrast: its name, its expression text and the parsed column weights."""

    name: str
    expression: str
    weights: Mapping[str, float]


@dataclass(frozen=True)
class FContrastSpec:
    """One user F contrast: its name, its text and one weight mapping per row."""

    name: str
    expression: str
    rows: tuple[Mapping[str, float], ...]


def parse_contrast_option(text: str) -> ContrastSpec:
    """Parse one ``--contrast NAME=EXPRESSION`` value, split on the first ``=``.

    Parameters
    ----------
    text : str
        E.g. ``"faceVsHouse=face - house"``.

    Returns
    -------
    ContrastSpec
        Stripped name and expression, and the expression's weights.

    Raises
    ------
    ContrastError
        Without ``=``, for a name that is empty or gives no BIDS label, or a bad expression.
    """
    name, equals, expression = text.partition("=")
    name = name.strip()
    if not equals or not name:
        raise ContrastError(
            f'expected --contrast NAME=EXPRESSION, e.g. --contrast "faceVsHouse=face - house"; '
            f"got {text!r}"
        )
    bids_label(name)
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
        E.g. ``"effectsOfInterest=face; house; scrambled"``.

    Returns
    -------
    FContrastSpec

    Raises
    ------
    ContrastError
        Without ``=``, for a bad name, an empty row or a bad expression (the row is named).
    """
    name, equals, expression = text.partition("=")
    name = name.strip()
    if not equals or not name:
        raise ContrastError(
            "expected --f-contrast NAME=ROW; ROW; ..., e.g. "
            f'--f-contrast "effectsOfInterest=face; house"; got {text!r}'
        )
    bids_label(name)
    rows = []
    for number, row in enumerate(expression.split(";"), start=1):
        try:
            rows.append(parse_expression(row))
        except ContrastError as error:
            raise ContrastError(f"F contrast {name!r}, row {number}: {error}") from error
    return FContrastSpec(name=name, expression=expression.strip(), rows=tuple(rows))
