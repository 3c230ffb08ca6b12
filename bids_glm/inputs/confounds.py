"""Select confound regressors from an fMRIPrep ``desc-confounds_timeseries.tsv``."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from bids_glm.errors import InputError
from bids_glm.inputs.events import NA_VALUES


def read_confounds(path: Path) -> pd.DataFrame:
    """Read a confounds TSV (n/a as missing); raise ``InputError`` when unreadable."""
    try:
        return pd.read_csv(path, sep="\t", na_values=NA_VALUES, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise InputError(f"{path}: not a readable confounds TSV ({err})") from None


def select_confounds(
    table: pd.DataFrame, patterns: Sequence[str], path: Path, n_volumes: int
) -> pd.DataFrame:
    """Columns matching ``patterns`` (shell wildcards), n/a filled with the column mean.

    Parameters
    ----------
    table : DataFrame
        The confounds file's content.
    patterns : sequence of str
        Column names or wildcards such as ``trans_*``; each must match a column.
    path : Path
        Source file, for messages.
    n_volumes : int
        Expected number of rows.

    Returns
    -------
    DataFrame
        Selected columns in file order, as float, no missing values.
    """
    if len(table) != n_volumes:
        raise InputError(f"{path}: {len(table)} rows, expected one per volume ({n_volumes})")
    chosen: list[str] = []
    for pattern in patterns:
        matches = fnmatch.filter(table.columns, pattern)
        if not matches:
            raise InputError(
                f"{path}: no column matches --confounds {pattern!r}; "
                f"columns: {', '.join(table.columns)}"
            )
        chosen += [m for m in matches if m not in chosen]
    chosen.sort(key=list(table.columns).index)
    selected = table[chosen].apply(pd.to_numeric, errors="coerce").astype(float)
    empty = [c for c in chosen if selected[c].isna().all()]
    if empty:
        raise InputError(f"{path}: confound column(s) {', '.join(empty)} hold no numbers")
    return selected.fillna(selected.mean())
