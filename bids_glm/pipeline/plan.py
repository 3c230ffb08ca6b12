"""What will be fitted: the units, each run's design matrix, each contrast's weights.

Runs are grouped into units (participant, session, task, space), and every design and
contrast is built before anything is fitted. Everything that can fail because of the
input is checked here, so a bad events file or a contrast naming an unknown column stops
its unit before a single map is written; a unit whose inputs cannot be used is reported
as a failure without stopping the others.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

import pandas as pd

from bids_glm.design.contrast_options import FContrastSpec
from bids_glm.design.contrasts import (
    ContrastError,
    missing_columns,
    unique_labels,
    weights_text,
)
from bids_glm.design.diagnostics import diagnose_design
from bids_glm.design.matrix import frame_times, make_design_matrix
from bids_glm.design.numeric_contrasts import resolve_numeric
from bids_glm.design.run_design import ContrastPlan, RunDesign
from bids_glm.errors import InputError
from bids_glm.inputs.confounds import (
    ConfoundError,
    ConfoundSelection,
    read_confounds,
    read_confounds_sidecar,
    select_confounds,
)
from bids_glm.inputs.events import EventSpec, clean_events, read_events
from bids_glm.inputs.run_input import RunFailure, RunInput
from bids_glm.inputs.user_design import read_user_design
from bids_glm.pipeline.units import AnalysisUnit, PlanningFailure, group_by_unit, unit_entities
from bids_glm.runtime.logs import captured_warnings
from bids_glm.settings import ModelSettings

LOGGER = logging.getLogger("bids_glm")


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


def run_events(run: RunInput, model: ModelSettings, n_dummy: int) -> pd.DataFrame:
    """Cleaned events with onsets shifted to the timeline after the dummy scans."""
    if run.events_path is None:
        return pd.DataFrame(columns=["onset", "duration", "trial_type", "modulation"])
    spec = model.events or EventSpec()
    events = clean_events(
        read_events(run.events_path), run.events_path, run.n_volumes * run.tr_s, spec
    )
    events["onset"] -= n_dummy * run.tr_s
    return events


def _run_confounds(run: RunInput, model: ModelSettings, n_dummy: int) -> ConfoundSelection | None:
    """The confound strategy applied to the run's TSV, rows after the dummy scans."""
    if model.confounds is None:
        return None
    if run.confounds_path is None:
        raise InputError(f"{run.bold_path}: --confounds given but no confounds TSV found")
    table = read_confounds(run.confounds_path).iloc[n_dummy:].reset_index(drop=True)
    try:
        return select_confounds(
            table,
            read_confounds_sidecar(run.confounds_path),
            model.confounds,
            run.confounds_path,
            run.n_volumes - n_dummy,
        )
    except ConfoundError as err:
        raise InputError(str(err)) from None


def _node_inputs(run: RunInput, model: ModelSettings, n_dummy: int):
    """The Run node of ``--model`` resolved on this run's events and confounds."""
    from bids_glm.inputs.smdl.run_node import map_run_node

    events = None
    if run.events_path is not None:
        events = read_events(run.events_path)
        events["onset"] = pd.to_numeric(events["onset"], errors="coerce") - n_dummy * run.tr_s
    confounds = None
    if run.confounds_path is not None:
        confounds = read_confounds(run.confounds_path).iloc[n_dummy:].reset_index(drop=True)
    return map_run_node(
        model.run_node,
        events,
        confounds,
        run.tr_s,
        run.n_volumes - n_dummy,
        default_hrf_model=model.hrf_model,
        default_high_pass_hz=model.high_pass_hz,
    )


def build_run_design(run: RunInput, model: ModelSettings) -> RunDesign:
    """Read the run's events (and confounds) and build its design matrix.

    Raises
    ------
    InputError
        Unreadable or malformed events or confounds, too many dummy scans, or fewer
        fitted volumes than design columns.
    """
    n_dummy = model.dummy_scans
    if n_dummy >= run.n_volumes:
        raise InputError(
            f"{run.bold_path}: --dummy-scans {n_dummy} leaves none of its {run.n_volumes} volumes"
        )
    if run.design_path is not None:
        return _user_run_design(run, model, n_dummy)
    selection = _run_confounds(run, model, n_dummy)
    regressors = None if selection is None else selection.regressors
    node_contrasts, hrf_model, high_pass_hz = None, model.hrf_model, model.high_pass_hz
    if model.run_node is None:
        events = run_events(run, model, n_dummy)
        fir_delays = model.fir_delays_scans
    else:  # the Run node decides the regressors; the confound strategy only censors
        inputs = _node_inputs(run, model, n_dummy)
        events, regressors, fir_delays = inputs.events, inputs.confounds, inputs.fir_delays_scans
        node_contrasts = (*inputs.contrasts, *inputs.f_contrasts)
        hrf_model, high_pass_hz = inputs.hrf_model, inputs.high_pass_hz
    reference = slice_time_ref(run, model)
    try:
        matrix = make_design_matrix(
            frame_times(run.n_volumes - n_dummy, run.tr_s, reference),
            events if len(events) else None,
            hrf_model=hrf_model,
            drift_model=model.drift_model,
            high_pass_hz=high_pass_hz,
            drift_order=model.drift_order,
            fir_delays=fir_delays,
            confounds=regressors,
        )
    except ValueError as err:
        raise InputError(f"{run.label}: cannot build the design matrix: {err}") from None
    design = RunDesign(
        run=run,
        matrix=matrix,
        conditions=tuple(sorted(events["trial_type"].unique())) if len(events) else (),
        node_contrasts=node_contrasts,
        slice_time_ref=reference,
        dummy_scans=n_dummy,
        censored=None if selection is None else selection.censored,
        confounds_by_source=None if selection is None else selection.columns_by_source,
        confound_columns=() if regressors is None else tuple(regressors.columns),
    )
    _check_design(design)
    return design


def _user_run_design(run: RunInput, model: ModelSettings, n_dummy: int) -> RunDesign:
    """The run's design read from ``--design-dir``, as given, less dummy and censored rows.

    No HRF, drift, confound or constant column is added: the confound strategy may only
    censor volumes (checked in ``cli/validate.py``).
    """
    table = read_user_design(run.design_path, run.n_volumes, n_dummy)
    selection = _run_confounds(run, model, n_dummy)
    reference = slice_time_ref(run, model)
    matrix = table.iloc[n_dummy:].set_index(
        pd.Index(frame_times(run.n_volumes - n_dummy, run.tr_s, reference))
    )
    design = RunDesign(
        run=run,
        matrix=matrix,
        conditions=(),
        slice_time_ref=reference,
        dummy_scans=n_dummy,
        censored=None if selection is None else selection.censored,
        confounds_by_source=None if selection is None else selection.columns_by_source,
        user_design=run.design_path,
    )
    _check_design(design)
    return design


def _check_design(design: RunDesign) -> None:
    n_rows, n_columns = int(design.fitted_rows.sum()), design.matrix.shape[1]
    if n_rows <= n_columns:
        source = "" if design.user_design is None else f" ({design.user_design})"
        raise InputError(
            f"{design.run.label}: {n_rows} volumes left to fit after dummy scans and censoring, "
            f"but the design{source} has {n_columns} columns"
        )
    if design.censored is not None and design.censored.any():
        LOGGER.info("%s: %d volume(s) censored", design.run.label, int(design.censored.sum()))
    diagnostics = diagnose_design(design.fitted_matrix(), list(design.matrix.columns))
    if diagnostics.is_ill_conditioned:
        LOGGER.warning(
            "%s: design is %s (rank %d of %d columns, condition number %.3g); "
            "collinear columns: %s",
            design.run.label,
            "rank deficient" if diagnostics.rank < n_columns else "ill-conditioned",
            diagnostics.rank,
            n_columns,
            diagnostics.condition_number,
            ", ".join(diagnostics.collinear_columns) or "none identified",
        )


def condition_weights(condition: str, columns: Sequence[str]) -> dict[str, float]:
    """Weights of a condition's own contrast: its main column, or the sum of its FIR delays."""
    if condition in columns:
        return {condition: 1.0}
    delays = [c for c in columns if c.startswith(f"{condition}_delay_")]
    return dict.fromkeys(delays, 1.0)


def _checked_user_contrast(spec, stat_type: str, designs: Sequence[RunDesign]) -> tuple:
    if spec.numeric is not None:
        return _numeric_contrast(spec, stat_type, designs)
    rows = tuple(dict(r) for r in (spec.rows if stat_type == "F" else (spec.weights,)))
    plan = ContrastPlan(spec.name, "", rows, spec.expression, stat_type)
    option = "--f-contrast" if stat_type == "F" else "--contrast"
    absent_everywhere = [missing_columns(plan.columns, list(d.matrix.columns)) for d in designs]
    if all(absent_everywhere):
        every = sorted({c for d in designs for c in d.matrix.columns})
        absent = sorted({m for missing in absent_everywhere for m in missing})
        raise InputError(
            f"{option} {spec.name}={spec.expression}: column(s) {', '.join(absent)} "
            f"in no run's design; columns: {', '.join(every)}"
        )
    return plan


def _numeric_contrast(spec, stat_type: str, designs: Sequence[RunDesign]) -> ContrastPlan:
    """A numeric contrast named by the runs' columns once (zero-padded; runs must agree)."""
    given = f"{'--f-contrast' if stat_type == 'F' else '--contrast'} {spec.name}={spec.expression}"
    runs = [(d.run.label, list(d.matrix.columns)) for d in designs]
    try:
        rows, notes = resolve_numeric(spec.numeric, runs)
    except ContrastError as err:
        raise InputError(f"{given}: {err}") from None
    for note in notes:
        LOGGER.warning("%s: %s", given, note)
    return ContrastPlan(spec.name, "", rows, spec.expression, stat_type)


def _check_numeric_across_units(units: Sequence[AnalysisUnit], model: ModelSettings) -> None:
    """A numeric contrast must weigh the same columns in every unit (the group combines them)."""
    specs = [(s, "t") for s in model.contrasts] + [(s, "F") for s in model.f_contrasts]
    for spec, stat_type in specs:
        if spec.numeric is None or len(units) < 2:
            continue
        runs = [(d.run.label, list(d.matrix.columns)) for u in units for d in u.designs]
        try:
            resolve_numeric(spec.numeric, runs)
        except ContrastError as err:
            option = "--f-contrast" if stat_type == "F" else "--contrast"
            raise InputError(f"{option} {spec.name}={spec.expression}: {err}") from None


def plan_contrasts(designs: Sequence[RunDesign], model: ModelSettings) -> list[ContrastPlan]:
    """One t contrast per condition, then the user's t and F contrasts, with unique labels.

    A numeric user contrast (``[1, -1]``) is named by the runs' columns here, once: it is
    zero-padded to each run's width (with a warning per run naming the columns).

    Raises
    ------
    InputError
        A user contrast names a column that no run has, reuses a condition's name, or two
        labels collide; a numeric contrast is longer than a run's design, or would weigh
        different columns in different runs.
    """
    if designs and designs[0].node_contrasts is not None:
        return _node_contrast_plans(designs)
    conditions = sorted({c for d in designs for c in d.conditions})
    plans = []
    for condition in conditions:
        weights: dict[str, float] = {}
        for design in designs:
            weights.update(condition_weights(condition, list(design.matrix.columns)))
        plans.append(ContrastPlan(condition, "", (weights,), condition))
    user = [(spec, "t") for spec in model.contrasts] + [(s, "F") for s in model.f_contrasts]
    own = {plan.name: plan for plan in plans}
    for spec, stat_type in user:
        numeric = None if spec.numeric is None else _numeric_contrast(spec, stat_type, designs)
        if spec.name in own:
            if stat_type == "t" and _same_weights(
                _t_weights(spec, numeric), own[spec.name].rows[0]
            ):
                continue  # e.g. --contrast face=face: the condition's own contrast, once
            raise InputError(
                f"contrast {spec.name}={spec.expression}: the name is already the condition "
                f"{spec.name}'s own contrast ({weights_text(own[spec.name].rows[0])}) with "
                "other weights; choose another name"
            )
        plans.append(numeric or _checked_user_contrast(spec, stat_type, designs))
    return _labelled(plans)


def _t_weights(spec, numeric: ContrastPlan | None):
    """A user t contrast's named weights: as parsed, or as planning named a vector."""
    return spec.weights if numeric is None else numeric.rows[0]


def _same_weights(left, right) -> bool:
    """Whether two column -> weight mappings are one contrast (zero weights ignored)."""
    nonzero = [{c: w for c, w in dict(m).items() if w != 0} for m in (left, right)]
    if nonzero[0].keys() != nonzero[1].keys():
        return False
    return all(abs(nonzero[0][c] - nonzero[1][c]) <= 1e-12 for c in nonzero[0])


def _node_contrast_plans(designs: Sequence[RunDesign]) -> list[ContrastPlan]:
    """The ``--model`` Run node's contrasts (the same names in every run)."""
    plans = []
    for spec in designs[0].node_contrasts:
        stat_type = "F" if isinstance(spec, FContrastSpec) else "t"
        plans.append(_checked_user_contrast(spec, stat_type, designs))
    return _labelled(plans)


def _labelled(plans: list[ContrastPlan]) -> list[ContrastPlan]:
    try:
        labels = unique_labels([plan.name for plan in plans])
    except ContrastError as err:
        raise InputError(f"contrast names: {err}") from None
    return [replace(plan, label=labels[plan.name]) for plan in plans]


def _check_something_to_model(
    design: RunDesign, contrasts: Sequence[ContrastPlan], model: ModelSettings
) -> None:
    """A run must give at least one contrast: a run without conditions is an input error.

    Fitting it would write a design and no map, and the participant would look analysed.
    """
    columns = list(design.matrix.columns)
    if design.conditions or any(not missing_columns(p.columns, columns) for p in contrasts):
        return  # contrasts this run lacks are skipped with a warning, as designed
    run = design.run
    if design.user_design is not None:
        raise InputError(
            f"{design.user_design}: no --contrast or --f-contrast weighs a column of this "
            f"design ({', '.join(columns)}); expected a contrast over its columns"
        )
    if run.events_path is None:
        raise InputError(
            f"{run.bold_path}: no events.tsv applies to this run, so there is no condition "
            "to model; expected a *_events.tsv beside the raw BOLD (or one that it inherits)"
        )
    column = (model.events.condition_column if model.events else None) or "trial_type"
    raise InputError(
        f"{run.events_path}: no condition to model: no event is left after cleaning "
        f"(e.g. every '{column}' is n/a, or the file has no rows); expected at least one "
        "event with a numeric onset and a condition"
    )


def plan_units(
    runs: Sequence[RunInput], model: ModelSettings, run_failures: Sequence[RunFailure] = ()
) -> tuple[list[AnalysisUnit], list[PlanningFailure]]:
    """Build every design matrix and contrast before anything is fitted.

    Parameters
    ----------
    runs : sequence of RunInput
        The usable runs discovery found.
    model : ModelSettings
    run_failures : sequence of RunFailure
        Runs discovery found but cannot use: each fails its unit (fixed effects without one
        of the unit's runs would silently be another analysis), not the other units.

    Returns
    -------
    units : list of AnalysisUnit
        Units whose designs and contrasts could be built.
    failures : list of PlanningFailure
        Units whose inputs cannot be used (the reason names the file and field).

    Raises
    ------
    InputError
        A numeric contrast would weigh different columns in different units.
    """
    units, failures = [], []
    failed_runs = group_by_unit(run_failures, lambda failure: failure.entities)
    runs_by_unit = group_by_unit(runs, lambda run: run.entities)
    for key, members in failed_runs.items():
        reason = "; ".join(failure.reason for failure in members)
        if key in runs_by_unit:
            reason += f" (so its {len(runs_by_unit[key])} other run(s) are not analysed either)"
        failures.append(PlanningFailure(unit_entities(members[0].entities), reason))
    for key, members in runs_by_unit.items():
        if key in failed_runs:
            continue
        entities = unit_entities(members[0].entities)
        with captured_warnings() as messages:
            try:
                designs = tuple(build_run_design(run, model) for run in members)
                contrasts = tuple(plan_contrasts(designs, model))
                for design in designs:
                    _check_something_to_model(design, contrasts, model)
            except InputError as err:
                failures.append(PlanningFailure(entities, str(err)))
                continue
        units.append(AnalysisUnit(entities, designs, contrasts, messages))
    _check_numeric_across_units(units, model)
    return units, failures
