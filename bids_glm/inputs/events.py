"""Read a BIDS ``events.tsv`` and clean it into the table the design matrix expects.

Cleaning rules (each logged as a warning that counts the rows affected):

- ``onset`` and ``duration`` columns are required; ``trial_type`` is the condition
  column (when absent, every event is one condition named ``events``).
- Rows whose onset or condition is n/a are dropped.
- n/a or negative durations become 0 s (an impulse).
- ``modulation``, when present, scales the event's amplitude; n/a there becomes 1.
- Events starting after the end of the scan are kept (they contribute nothing) with a
  warning; negative onsets are allowed (the model starts 24 s before the first scan).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from bids_glm.errors import InputError

LOGGER = logging.getLogger("bids_glm")
NA_VALUES = ["n/a", "N/A", "NA", "na", "nan", "NaN", ""]
SINGLE_CONDITION = "events"


def read_events(path: Path) -> pd.DataFrame:
    """Read an events TSV with BIDS n/a handling; raise ``InputError`` when unreadable."""
    try:
        table = pd.read_csv(
            path, sep="\t", na_values=NA_VALUES, keep_default_na=False, dtype={"trial_type": str}
        )
    except pd.errors.EmptyDataError:
        return pd.DataFrame(columns=["onset", "duration"])
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not a readable TSV ({err})") from None
    table.columns = [str(c).strip() for c in table.columns]
    return table


def _numeric(table: pd.DataFrame, column: str, path: Path) -> pd.Series:
    values = pd.to_numeric(table[column], errors="coerce")
    bad = values.isna() & table[column].notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0]) + 2  # header is line 1
        raise InputError(
            f"{path}: column '{column}' line {row}: expected a number or n/a, "
            f"found {table[column].iloc[row - 2]!r}"
        )
    return values.astype(float)


def clean_events(table: pd.DataFrame, path: Path, scan_duration_s: float) -> pd.DataFrame:
    """Apply the cleaning rules of this module.

    Parameters
    ----------
    table : DataFrame
        Events as read from ``path``.
    path : Path
        Where they came from (for messages).
    scan_duration_s : float
        n_volumes * TR, to flag events after the end of the scan.

    Returns
    -------
    DataFrame
        Columns ``onset``, ``duration``, ``trial_type``, ``modulation``.
    """
    missing = [c for c in ("onset", "duration") if c not in table.columns]
    if missing:
        raise InputError(
            f"{path}: required column(s) {', '.join(missing)} missing; "
            f"found: {', '.join(table.columns) or 'no columns'}"
        )
    onset = _numeric(table, "onset", path)
    duration = _numeric(table, "duration", path)
    if "trial_type" in table.columns:
        condition = table["trial_type"].astype("string").str.strip()
    else:
        condition = pd.Series(SINGLE_CONDITION, index=table.index, dtype="string")
    modulation = (
        _numeric(table, "modulation", path).fillna(1.0)
        if "modulation" in table.columns
        else pd.Series(1.0, index=table.index)
    )
    drop = onset.isna() | condition.isna() | (condition == "")
    if drop.any():
        LOGGER.warning(
            "%s: %d event(s) with n/a onset or trial_type dropped", path.name, drop.sum()
        )
    fix = ~drop & (duration.isna() | (duration < 0))
    if fix.any():
        LOGGER.warning("%s: %d n/a or negative duration(s) set to 0 s", path.name, fix.sum())
    duration = duration.where(~fix, 0.0)
    late = ~drop & (onset >= scan_duration_s)
    if late.any():
        LOGGER.warning(
            "%s: %d event(s) start after the end of the scan (%.1f s)",
            path.name,
            late.sum(),
            scan_duration_s,
        )
    clean = pd.DataFrame(
        {
            "onset": onset,
            "duration": duration,
            "trial_type": condition.astype(object),
            "modulation": modulation,
        }
    )
    return clean.loc[~drop].reset_index(drop=True)
