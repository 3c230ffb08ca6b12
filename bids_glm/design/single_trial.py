"""The LSA design of a run: each trial of the chosen conditions its own regressor.

Built from the run's ordinary design matrix: every chosen condition's column is replaced (in
place) by one column per trial, convolved exactly as the condition's regressor (the condition's
column is the sum of its trials' columns, up to rounding); the other conditions, confounds,
drifts and constant are kept as they are. Trials are numbered in onset order within their
condition (ties keep the events' order).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bids_glm.design.hrf_spec import HrfSpec
from bids_glm.design.regressors import condition_regressors

TRIAL_COLUMN = "{condition}_trial{number:03d}"


@dataclass(frozen=True)
class TrialDesign:
    """A run's LSA design and its trials.

    Attributes
    ----------
    matrix : DataFrame, shape (n_frames, q)
        The LSA design on the run's full timeline (same index as the ordinary design).
    trials : DataFrame
        One row per trial, grouped by condition (sorted) and in onset order within it:
        ``condition``, ``index`` (0-based position in its condition's beta series),
        ``onset``, ``duration``, ``amplitude``, ``event`` (row of the cleaned events),
        ``column`` (its LSA column).
    """

    matrix: pd.DataFrame
    trials: pd.DataFrame

    def condition_trials(self, condition: str) -> pd.DataFrame:
        """The trials of one condition, in onset order."""
        return self.trials[self.trials["condition"] == condition]


def trial_design(
    matrix: pd.DataFrame,
    events: pd.DataFrame,
    conditions: Sequence[str],
    hrf_model: HrfSpec,
    fir_delays: Sequence[int] | None = None,
) -> TrialDesign:
    """Split ``conditions``' columns of ``matrix`` into one column per trial.

    Parameters
    ----------
    matrix : DataFrame
        The run's ordinary design (built by `bids_glm.design.matrix.make_design_matrix`
        from ``events`` with the defaults for oversampling and grid start).
    events : DataFrame
        The cleaned events (``onset``, ``duration``, ``trial_type``, ``modulation``) on the
        design's timeline.
    conditions : sequence of str
        Conditions to split; each must be one column of ``matrix`` (one-column HRF).
    hrf_model : HrfSpec
    fir_delays : sequence of int, optional

    Raises
    ------
    ValueError
        A condition is absent from the design or has several basis columns.
    """
    times = matrix.index.to_numpy(dtype=float)
    replaced: dict[str, pd.DataFrame] = {}
    rows = []
    for condition in sorted(conditions):
        if condition not in matrix.columns:
            raise ValueError(
                f"condition {condition!r} has no single column in the design (columns: "
                f"{', '.join(map(str, matrix.columns))}); single-trial estimates need a "
                "condition in the events and a one-column HRF model"
            )
        selected = events[events["trial_type"].astype(str) == condition]
        selected = selected.sort_values("onset", kind="stable")
        columns = {}
        for number, (event, row) in enumerate(selected.iterrows(), start=1):
            regressors, suffixes = condition_regressors(
                [row["onset"]],
                [row["duration"]],
                [row["modulation"]] if "modulation" in row else [1.0],
                hrf_model=hrf_model,
                frame_times_s=times,
                fir_delays=fir_delays,
            )
            if list(suffixes) != [""]:
                raise ValueError(
                    f"single-trial estimates need a one-column HRF model; {hrf_model} gives "
                    f"{len(suffixes)} columns per condition"
                )
            name = TRIAL_COLUMN.format(condition=condition, number=number)
            columns[name] = regressors[:, 0]
            rows.append(
                {
                    "condition": condition,
                    "index": number - 1,
                    "onset": float(row["onset"]),
                    "duration": float(row["duration"]),
                    "amplitude": float(row["modulation"]) if "modulation" in row else 1.0,
                    "event": int(event),
                    "column": name,
                }
            )
        replaced[condition] = pd.DataFrame(columns, index=matrix.index, dtype=float)
    blocks = [replaced[name] if name in replaced else matrix[[name]] for name in matrix.columns]
    lsa = pd.concat(blocks, axis=1)
    duplicated = lsa.columns[lsa.columns.duplicated()].unique().tolist()
    if duplicated:
        raise ValueError(f"trial columns collide with design columns: {duplicated}")
    return TrialDesign(matrix=lsa, trials=pd.DataFrame(rows))


def condition_sum_error(design: TrialDesign, matrix: pd.DataFrame) -> float:
    """Largest ``|sum of a condition's trial columns - its column|`` (a self-check)."""
    errors = [0.0]
    for condition, trials in design.trials.groupby("condition"):
        total = design.matrix[list(trials["column"])].to_numpy().sum(axis=1)
        errors.append(float(np.max(np.abs(total - matrix[condition].to_numpy()))))
    return max(errors)
