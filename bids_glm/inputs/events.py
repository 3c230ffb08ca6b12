"""Read a BIDS ``events.tsv`` and clean it into the table the design matrix expects.

Reading (:func:`read_events`) tolerates what real files contain: a UTF-8 byte-order
mark, CRLF line ends, blank lines, trailing tabs, spaces around names and values. Every
cell is kept as text (``n/a``, ``NA``, ``nan`` and empty cells become missing) so that a
condition ``1`` stays ``"1"``; rows are indexed by their line number in the file.

Cleaning (:func:`clean_events`) follows these rules; every change to the events is
logged as a warning on the ``bids_glm`` logger that names the file and counts the rows:

- ``onset`` and ``duration`` are required. The condition column is ``trial_type`` unless
  :class:`EventSpec` names another one (``--condition-column``), which must then exist.
  Without a ``trial_type`` column every event belongs to one condition, ``events``.
- A value in ``onset``, ``duration``, the amplitude column or a parametric-modulator
  column that is neither a finite number nor n/a is an error naming the line and value.
- Rows with an n/a onset or an n/a (or blank) condition are dropped.
- An n/a duration, and a negative duration, become 0 s: the event is modelled as an
  impulse, the least-assuming shape for an event of unknown length.
- Negative onsets are kept silently (the model starts 24 s before the first scan).
  Onsets at or after the end of the scan are kept with a warning: they add nothing.
- Conditions are text, stripped of surrounding spaces; an integral number read as a
  float by another reader (``1.0``) becomes ``"1"``.
- Amplitude: the ``modulation`` column when present (or the column named by
  ``EventSpec.amplitude_column``), else 1. Rows with an n/a amplitude are dropped: an
  event of unknown size cannot be modelled, and guessing 1 would bias the estimate.
- Parametric modulators (``EventSpec.parametric_modulators``): for each column and each
  condition, the condition's events are repeated as condition ``<condition>_x_<column>``
  whose amplitude is the column's values minus their mean over that condition's events
  in this run (mean-centring as in SPM and FitLins, so the unmodulated condition keeps
  the average response). The amplitude column does not scale them. A column that is
  constant within a condition gives nothing after centring and is skipped for it with a
  warning; an n/a value (say, the reaction time of a missed response) gets its condition's
  mean, 0 after centring, with a warning naming the lines.
- A file without events (zero bytes, header only, or none left after cleaning) gives an
  empty table and a "no events" warning.
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from bids_glm.errors import InputError
from bids_glm.inputs.event_spec import DEFAULT_CONDITION_COLUMN, DEFAULT_EVENT_SPEC, EventSpec

LOGGER = logging.getLogger("bids_glm")
NA_VALUES = ["n/a", "N/A", "NA", "na", "nan", "NaN", ""]
DEFAULT_AMPLITUDE_COLUMN = "modulation"
SINGLE_CONDITION = "events"
MODULATOR_SEPARATOR = "_x_"


def read_events(path: Path) -> pd.DataFrame:
    """Read an events TSV, every cell as text, with BIDS n/a handling.

    Parameters
    ----------
    path : Path
        The ``_events.tsv`` file.

    Returns
    -------
    DataFrame
        One column per named header field (names stripped), values as stripped ``str``
        or ``None`` for n/a and empty cells, indexed by line number in the file (the
        header is line 1). Zero bytes or only blank lines give a table with no columns.

    Raises
    ------
    InputError
        The file cannot be read as UTF-8 text, a row has more values than the header has
        names, or a column name is repeated.
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
        reader = csv.reader(io.StringIO(text), delimiter="\t")
        rows = [(reader.line_num, fields) for fields in reader if any(f.strip() for f in fields)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"{path}: not a readable TSV ({err})") from None
    if not rows:
        return pd.DataFrame(index=pd.Index([], name="line"))
    names = [name.strip() for name in rows[0][1]]
    lines = [line for line, _ in rows[1:]]
    cells = [_row_cells(fields, len(names), line, path) for line, fields in rows[1:]]
    columns = {}
    for position, name in enumerate(names):
        values = [row[position] for row in cells]
        if not name:
            if any(value is not None for value in values):
                LOGGER.warning(
                    "%s: column %d has values but no name in the header; ignored",
                    path,
                    position + 1,
                )
            continue
        if name in columns:
            raise InputError(f"{path}: column '{name}' appears twice in the header")
        columns[name] = values
    return pd.DataFrame(columns, index=pd.Index(lines, name="line"), dtype=object)


def _row_cells(fields: list[str], n_names: int, line: int, path: Path) -> list[str | None]:
    """Stripped cells of one data row, padded with n/a to the header's width."""
    cells = [field.strip() for field in fields]
    extra = [cell for cell in cells[n_names:] if cell]
    if extra:
        raise InputError(
            f"{path}: line {line} has {len(cells)} values but the header names "
            f"{n_names} columns (extra: {extra!r})"
        )
    cells = cells[:n_names] + [""] * (n_names - len(cells))
    return [None if cell in NA_VALUES else cell for cell in cells]


def clean_events(
    table: pd.DataFrame,
    path: Path,
    scan_duration_s: float,
    spec: EventSpec = DEFAULT_EVENT_SPEC,
) -> pd.DataFrame:
    """Apply this module's cleaning rules to one run's events.

    Parameters
    ----------
    table : DataFrame
        Events as returned by :func:`read_events` (or any table with the same columns;
        its index labels are quoted as line numbers in error messages).
    path : Path
        The file the events came from, named in messages.
    scan_duration_s : float
        Duration of the scan (n_volumes * TR) in seconds, to flag late events.
    spec : EventSpec, optional
        Condition, amplitude and parametric-modulator columns.

    Returns
    -------
    DataFrame
        Columns ``onset`` (s), ``duration`` (s, >= 0), ``trial_type`` (str) and
        ``modulation`` (amplitude), all finite, on a fresh 0..n-1 index: the kept events
        in file order, then the parametric-modulator events.

    Raises
    ------
    InputError
        A required or requested column is missing, a value is not a number, or a
        modulator's regressor name is taken.
    """
    if len(table.columns) == 0:
        LOGGER.warning("%s: no events; the run has no condition regressors", path)
        return _empty_events()
    amplitude_column = _check_columns(table, path, spec)
    lines = table.index.to_numpy()
    table = table.set_axis(pd.RangeIndex(len(table)))
    onset = _numeric(table, "onset", path, lines)
    duration = _numeric(table, "duration", path, lines)
    condition = _conditions(table, spec.condition_column)
    if amplitude_column is None:
        amplitude = pd.Series(1.0, index=table.index)
    else:
        amplitude = _numeric(table, amplitude_column, path, lines)

    unusable = onset.isna() | condition.isna()
    _warn(path, unusable, f"event(s) with n/a onset or n/a {spec.condition_column} dropped")
    no_amplitude = ~unusable & amplitude.isna()
    _warn(
        path,
        no_amplitude,
        f"event(s) with n/a {amplitude_column} (amplitude) dropped: "
        "an unknown amplitude cannot be modelled",
    )
    kept = ~(unusable | no_amplitude)
    _warn(path, kept & duration.isna(), "event(s) with n/a duration modelled as impulses (0 s)")
    _warn(path, kept & (duration < 0), "event(s) with negative duration set to 0 s (impulse)")
    _warn(
        path,
        kept & (onset >= scan_duration_s),
        f"event(s) start at or after the end of the scan ({scan_duration_s:g} s); "
        "kept, but they add nothing to the regressors",
    )
    events = pd.DataFrame(
        {
            "onset": onset,
            "duration": duration.fillna(0.0).clip(lower=0.0),
            "trial_type": condition.astype(object),
            "modulation": amplitude,
        }
    ).loc[kept]
    blocks = [events]
    for column in spec.parametric_modulators:
        values = _numeric(table, column, path, lines)[kept]
        blocks.append(_modulator_events(events, values, column, path, lines))
    clean = pd.concat(blocks, ignore_index=True) if len(blocks) > 1 else events
    _check_unique_conditions(clean, events, path)
    if clean.empty:
        LOGGER.warning("%s: no events; the run has no condition regressors", path)
        return _empty_events()
    return clean.reset_index(drop=True)


def _empty_events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "onset": pd.Series(dtype=float),
            "duration": pd.Series(dtype=float),
            "trial_type": pd.Series(dtype=object),
            "modulation": pd.Series(dtype=float),
        }
    )


def _check_columns(table: pd.DataFrame, path: Path, spec: EventSpec) -> str | None:
    """Raise for missing columns; return the amplitude column in use (None: all 1)."""
    found = ", ".join(map(str, table.columns))
    missing = [c for c in ("onset", "duration") if c not in table.columns]
    if missing:
        raise InputError(
            f"{path}: required column(s) {', '.join(missing)} missing; found: {found}"
        )
    requested = {"parametric modulator": spec.parametric_modulators}
    if spec.condition_column != DEFAULT_CONDITION_COLUMN:
        requested["condition (--condition-column)"] = (spec.condition_column,)
    if spec.amplitude_column is not None:
        requested["amplitude (--amplitude-column)"] = (spec.amplitude_column,)
    for role, names in requested.items():
        absent = [name for name in names if name not in table.columns]
        if absent:
            raise InputError(
                f"{path}: {role} column(s) {', '.join(absent)} missing; found: {found}"
            )
    repeated = sorted(
        {c for c in spec.parametric_modulators if spec.parametric_modulators.count(c) > 1}
    )
    if repeated:
        raise InputError(
            f"--parametric-modulators lists column(s) {', '.join(repeated)} more than once"
        )
    if spec.amplitude_column is not None:
        return spec.amplitude_column
    return DEFAULT_AMPLITUDE_COLUMN if DEFAULT_AMPLITUDE_COLUMN in table.columns else None


def _numeric(table: pd.DataFrame, column: str, path: Path, lines: np.ndarray) -> pd.Series:
    """A column as float (n/a -> NaN); anything else that is not a finite number raises."""
    raw = table[column]
    values = pd.to_numeric(raw, errors="coerce").astype(float)
    bad = (raw.notna() & ~np.isfinite(values)).to_numpy()
    if bad.any():
        first = np.flatnonzero(bad)[0]
        raise InputError(
            f"{path}: column '{column}' line {lines[first]}: expected a number or n/a, "
            f"found {raw.iloc[first]!r}"
        )
    return values


def _conditions(table: pd.DataFrame, column: str) -> pd.Series:
    """Condition labels as stripped text; None where n/a or blank."""
    if column not in table.columns:
        return pd.Series(SINGLE_CONDITION, index=table.index, dtype=object)
    return table[column].map(_label, na_action="ignore").astype(object)


def _label(value: object) -> str | None:
    if isinstance(value, float | np.floating) and float(value).is_integer():
        value = int(value)
    text = str(value).strip()
    return None if text in NA_VALUES else text


def _modulator_events(
    events: pd.DataFrame, values: pd.Series, column: str, path: Path, lines: np.ndarray
) -> pd.DataFrame:
    """Events of ``<condition>_x_<column>``: the column centred within each condition.

    An n/a value (e.g. a missed response's reaction time) gets its condition's mean, i.e.
    0 after centring, with a warning; a condition without two distinct values gets no
    modulator regressor.
    """
    missing = values.isna()
    if missing.any():
        LOGGER.warning(
            "%s: parametric modulator '%s' is n/a for %d event(s) (line(s) %s); they get "
            "their condition's mean (0 after centring)",
            path,
            column,
            missing.sum(),
            ", ".join(str(lines[i]) for i in values.index[missing][:5]),
        )
    by_condition = values.groupby(events["trial_type"])
    spread = by_condition.transform("max") - by_condition.transform("min")
    constant = (spread == 0) | spread.isna()
    if constant.any():
        LOGGER.warning(
            "%s: parametric modulator '%s' is constant within condition(s) %s "
            "(%d event(s)); nothing is left after centring, so no %s regressor for them",
            path,
            column,
            ", ".join(sorted(events.loc[constant, "trial_type"].unique())),
            constant.sum(),
            f"<condition>{MODULATOR_SEPARATOR}{column}",
        )
    modulated = events.loc[~constant].copy()
    modulated["trial_type"] = modulated["trial_type"] + f"{MODULATOR_SEPARATOR}{column}"
    centred = (values - by_condition.transform("mean")).fillna(0.0)
    modulated["modulation"] = centred[~constant]
    return modulated


def _check_unique_conditions(clean: pd.DataFrame, events: pd.DataFrame, path: Path) -> None:
    """A modulator regressor must not share its name with a condition of the file."""
    clashing = sorted(set(clean["trial_type"].iloc[len(events) :]) & set(events["trial_type"]))
    if clashing:
        raise InputError(
            f"{path}: parametric modulator regressor(s) {', '.join(clashing)} "
            "have the name of a condition in the file; rename the condition or the column"
        )


def _warn(path: Path, rows: pd.Series, what: str) -> None:
    count = int(rows.sum())
    if count:
        LOGGER.warning("%s: %d %s", path, count, what)
