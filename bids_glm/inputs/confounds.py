"""Confound strategies (``--confounds``) applied to fMRIPrep confounds TSVs.

A strategy is a list of items:

- presets ``motion6``, ``motion24``, ``wm_csf``, ``global_signal``, ``acompcor``, ``cosine``
  (columns: see :mod:`bids_glm.inputs.confound_presets`; every fMRIPrep naming generation);
- ``non_steady_state``: volumes that fMRIPrep flags in its ``non_steady_state_outlierNN``
  (``NonSteadyStateOutlierNN``) columns are *censored* (removed from data and design), not
  regressed; a file without such columns (fMRIPrep found none) censors nothing;
- ``scrub:FD=0.5,DVARS=1.5`` (either threshold alone is allowed): censor volumes whose
  ``framewise_displacement`` exceeds FD mm or whose ``std_dvars`` exceeds DVARS (strictly
  greater; the first row's n/a never censors);
- anything else is a column name or shell wildcard (``'trans_*'``) matched, case-sensitively,
  against the file's own column names; each must match at least one column.

Regressor order: presets in the order given, each in its documented order, then patterns in the
order given, each in file order; a column already chosen is not repeated. n/a values (the first
row of derivative columns, or anywhere) become the column's mean over its numeric rows.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

import numpy as np
import pandas as pd

from bids_glm.errors import InputError
from bids_glm.inputs.confound_presets import (
    column_index,
    numbered_columns,
    numeric_column,
    preset_columns,
    require,
)
from bids_glm.inputs.confound_strategy import (
    NON_STEADY_STATE,
    PRESETS,
    SCRUB_FORM,
    ConfoundError,
    ConfoundStrategy,
    ScrubRule,
    parse_confound_strategy,
)
from bids_glm.inputs.events import NA_VALUES

__all__ = [
    "NON_STEADY_STATE",
    "PRESETS",
    "SCRUB_FORM",
    "ConfoundError",
    "ConfoundSelection",
    "ConfoundStrategy",
    "ScrubRule",
    "parse_confound_strategy",
    "read_confounds",
    "read_confounds_sidecar",
    "select_confounds",
]


@dataclass(frozen=True)
class ConfoundSelection:
    """The confounds chosen for one run.

    Attributes
    ----------
    regressors : DataFrame
        (n_volumes, k) float, no NaN, columns in the order documented in this module.
    censored : ndarray of bool
        (n_volumes,): volumes to remove from data and design (scrubbing, non-steady-state).
    columns_by_source : dict of str to list of str
        Each preset / pattern -> the regressor columns it chose; ``non_steady_state`` and the
        scrub rule (``scrub:FD=...``) -> the file columns that decided censoring.
    """

    regressors: pd.DataFrame
    censored: np.ndarray
    columns_by_source: dict[str, list[str]]


def read_confounds(path: Path) -> pd.DataFrame:
    """Read a confounds TSV (n/a as missing); raise ``InputError`` when unreadable."""
    try:
        table = pd.read_csv(path, sep="\t", na_values=NA_VALUES, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not a readable confounds TSV ({err})") from None
    table.columns = [str(c).strip() for c in table.columns]
    return table


def read_confounds_sidecar(path: Path) -> dict | None:
    """The JSON sidecar next to a confounds TSV (same name, ``.json``), or None if absent.

    Raises
    ------
    ConfoundError
        The sidecar exists but is not a readable JSON object.
    """
    sidecar = Path(path).with_suffix(".json")
    if not sidecar.is_file():
        return None
    try:
        document = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfoundError(f"{sidecar}: not a readable JSON sidecar ({err})") from None
    if not isinstance(document, dict):
        raise ConfoundError(f"{sidecar}: expected a JSON object, got {type(document).__name__}")
    return document


def _pattern_columns(table: pd.DataFrame, pattern: str, path: Path) -> list[str]:
    """The file's columns matching ``pattern``; ConfoundError listing them when none do."""
    matches = [c for c in table.columns if fnmatchcase(c, pattern)]
    if not matches:
        close = difflib.get_close_matches(pattern, list(table.columns), n=3)
        hint = f" (closest: {', '.join(close)})" if close else ""
        raise ConfoundError(
            f"{path}: --confounds {pattern!r} is not a preset ({', '.join(PRESETS)}) and "
            f"matches no column{hint}; columns present: {', '.join(table.columns)}"
        )
    return matches


def _scrub_mask(table: pd.DataFrame, rule: ScrubRule, path: Path) -> tuple[np.ndarray, list[str]]:
    """Volumes over the rule's thresholds, and the columns tested."""
    index = column_index(table.columns)
    censored = np.zeros(len(table), dtype=bool)
    used: list[str] = []
    for canonical, threshold in (
        ("framewise_displacement", rule.fd_mm),
        ("std_dvars", rule.dvars),
    ):
        if threshold is None:
            continue
        (column,) = require(index, [canonical], rule.spec, path, table.columns)
        values = numeric_column(table, column, path).to_numpy()
        censored |= np.nan_to_num(values, nan=-np.inf) > threshold
        used.append(column)
    return censored, used


def _non_steady_state_mask(table: pd.DataFrame, path: Path) -> tuple[np.ndarray, list[str]]:
    """Volumes fMRIPrep flags as non-steady-state, and its flag columns."""
    index = column_index(table.columns)
    columns = [index[n] for n in numbered_columns(index, "non_steady_state_outlier")]
    censored = np.zeros(len(table), dtype=bool)
    for column in columns:
        censored |= np.nan_to_num(numeric_column(table, column, path).to_numpy()) != 0
    return censored, columns


def _fill_with_means(chosen: dict[str, pd.Series], path: Path, n_volumes: int) -> pd.DataFrame:
    """The chosen columns as one float frame, n/a replaced by each column's mean."""
    regressors = pd.DataFrame(chosen, index=pd.RangeIndex(n_volumes), dtype=float)
    empty = [c for c in regressors.columns if regressors[c].isna().all()]
    if empty:
        raise ConfoundError(f"{path}: confound column(s) {', '.join(empty)} hold no numbers")
    return regressors.fillna(regressors.mean())


def select_confounds(
    table: pd.DataFrame,
    sidecar: Mapping | None,
    strategy: ConfoundStrategy,
    path: Path,
    n_volumes: int,
) -> ConfoundSelection:
    """Apply a confound strategy to one run's confounds table.

    Parameters
    ----------
    table : DataFrame
        The confounds file's content (see ``read_confounds``), one row per volume.
    sidecar : mapping or None
        The file's JSON sidecar (``read_confounds_sidecar``), used by ``acompcor``.
    strategy : ConfoundStrategy
        What to select and censor.
    path : Path
        The confounds file, for messages.
    n_volumes : int
        The run's number of volumes; the table must have as many rows.

    Returns
    -------
    ConfoundSelection
        Regressors (order and n/a rule in the module docstring), censored volumes, and the
        columns chosen by each item.

    Raises
    ------
    ConfoundError
        Wrong row count, a preset's column or a pattern's match missing (the message lists
        the file's columns), non-numeric values, or every volume censored.
    """
    if len(table) != n_volumes:
        raise ConfoundError(
            f"{path}: {len(table)} rows, expected one per volume ({n_volumes} volumes)"
        )
    table = table.reset_index(drop=True)
    chosen: dict[str, pd.Series] = {}
    by_source: dict[str, list[str]] = {}
    for preset in strategy.presets:
        frame = preset_columns(preset, table, sidecar, path)
        by_source[preset] = list(frame.columns)
        for column in frame.columns:
            chosen.setdefault(column, frame[column])
    for pattern in strategy.patterns:
        by_source[pattern] = _pattern_columns(table, pattern, path)
        for column in by_source[pattern]:
            if column not in chosen:
                chosen[column] = numeric_column(table, column, path)
    regressors = _fill_with_means(chosen, path, n_volumes)

    censored = np.zeros(n_volumes, dtype=bool)
    if strategy.non_steady_state:
        flagged, by_source[NON_STEADY_STATE] = _non_steady_state_mask(table, path)
        censored |= flagged
    if strategy.scrub is not None:
        flagged, by_source[strategy.scrub.spec] = _scrub_mask(table, strategy.scrub, path)
        censored |= flagged
    if censored.all():
        raise ConfoundError(f"{path}: the confound strategy censors all {n_volumes} volumes")
    return ConfoundSelection(regressors, censored, by_source)
