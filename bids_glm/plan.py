"""What will be fitted: each run's design matrix and each contrast's weights, before any fit.

Everything that can fail because of the input is checked here, so a bad events file or
a contrast naming an unknown column stops the analysis before a single map is written.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from bids_glm.design.contrasts import ContrastError, missing_columns, unique_labels
from bids_glm.design.matrix import frame_times, make_design_matrix
from bids_glm.errors import InputError
from bids_glm.inputs.confounds import read_confounds, select_confounds
from bids_glm.inputs.events import clean_events, read_events
from bids_glm.inputs.layout import RunInput
from bids_glm.settings import ModelSettings

LOGGER = logging.getLogger("bids_glm")


@dataclass(frozen=True)
class RunDesign:
    """One run and the design matrix built for it.

    Attributes
    ----------
    run : RunInput
        The discovered input files.
    matrix : DataFrame, shape (n_volumes, p)
        Conditions, confounds, drifts, constant.
    conditions : tuple of str
        Conditions present in this run's events (sorted).
    slice_time_ref : float
        Fraction of the TR at which regressors are sampled.
    """

    run: RunInput
    matrix: pd.DataFrame
    conditions: tuple[str, ...]
    slice_time_ref: float


@dataclass(frozen=True)
class ContrastPlan:
    """A t contrast to compute on every run that has its columns.

    Attributes
    ----------
    name : str
        As the user wrote it (or the condition name).
    label : str
        BIDS-safe camelCase label used in file names.
    weights : dict of str to float
        Column name -> weight.
    expression : str
        The expression text it was parsed from.
    """

    name: str
    label: str
    weights: dict[str, float]
    expression: str


def slice_time_ref(run: RunInput, model: ModelSettings) -> float:
    """The slice-timing reference: the user's, else StartTime / TR, else 0."""
    if model.slice_time_ref is not None:
        return model.slice_time_ref
    if run.start_time_s is not None:
        reference = run.start_time_s / run.tr_s
        if not 0 <= reference <= 1:
            raise InputError(
                f"{run.bold_path}: StartTime {run.start_time_s} s is outside [0, TR={run.tr_s}]"
            )
        return reference
    return 0.0


def build_run_design(run: RunInput, model: ModelSettings) -> RunDesign:
    """Read the run's events (and confounds) and build its design matrix.

    Raises
    ------
    InputError
        Unreadable or malformed events or confounds.
    """
    if run.events_path is not None:
        events = clean_events(
            read_events(run.events_path), run.events_path, run.n_volumes * run.tr_s
        )
    else:
        events = pd.DataFrame(columns=["onset", "duration", "trial_type", "modulation"])
    confounds = None
    if model.confounds:
        if run.confounds_path is None:
            raise InputError(f"{run.bold_path}: --confounds given but no confounds TSV found")
        table = read_confounds(run.confounds_path)
        confounds = select_confounds(
            table, model.confounds, run.confounds_path, run.n_volumes
        ).reset_index(drop=True)
    reference = slice_time_ref(run, model)
    try:
        matrix = make_design_matrix(
            frame_times(run.n_volumes, run.tr_s, reference),
            events if len(events) else None,
            hrf_model=model.hrf_model,
            drift_model=model.drift_model,
            high_pass_hz=model.high_pass_hz,
            drift_order=model.drift_order,
            fir_delays=model.fir_delays_scans,
            confounds=confounds,
        )
    except ValueError as err:
        raise InputError(f"{run.label}: cannot build the design matrix: {err}") from None
    conditions = tuple(sorted(events["trial_type"].unique())) if len(events) else ()
    return RunDesign(run=run, matrix=matrix, conditions=conditions, slice_time_ref=reference)


def condition_weights(condition: str, columns: Sequence[str]) -> dict[str, float]:
    """Weights of a condition's own contrast: its main column, or the sum of its FIR delays."""
    if condition in columns:
        return {condition: 1.0}
    delays = [c for c in columns if c.startswith(f"{condition}_delay_")]
    return dict.fromkeys(delays, 1.0)


def plan_contrasts(designs: Sequence[RunDesign], model: ModelSettings) -> list[ContrastPlan]:
    """One t contrast per condition, then the user's contrasts, with unique labels.

    Raises
    ------
    InputError
        A user contrast names a column that no run has, or two labels collide.
    """
    conditions = sorted({c for d in designs for c in d.conditions})
    plans: list[tuple[str, dict[str, float], str]] = []
    for condition in conditions:
        weights: dict[str, float] = {}
        for design in designs:
            weights.update(condition_weights(condition, list(design.matrix.columns)))
        plans.append((condition, weights, condition))
    for spec in model.contrasts:
        if spec.name in conditions:
            raise InputError(
                f"--contrast {spec.name}: the name is already a condition's own contrast; "
                "choose another name"
            )
        weights = dict(spec.weights)
        usable = [d for d in designs if not missing_columns(weights, list(d.matrix.columns))]
        if not usable:
            every = sorted({c for d in designs for c in d.matrix.columns})
            absent = sorted(
                {m for d in designs for m in missing_columns(weights, list(d.matrix.columns))}
            )
            raise InputError(
                f"--contrast {spec.name}={spec.expression}: column(s) {', '.join(absent)} "
                f"in no run's design; columns: {', '.join(every)}"
            )
        plans.append((spec.name, weights, spec.expression))
    try:
        labels = unique_labels([name for name, _, _ in plans])
    except ContrastError as err:
        raise InputError(f"contrast names: {err}") from None
    return [
        ContrastPlan(name=name, label=labels[name], weights=w, expression=e)
        for name, w, e in plans
    ]
