"""A run's single-trial estimates (``--single-trial lsa|lss``), beside its ordinary GLM.

The ordinary outputs of the run (its ``_design.tsv``, contrast maps, fixed effects) are
unchanged; the beta series are added. The trials are those of the cleaned events (n/a rows
dropped); the same scaled, smoothed, censored data and the same confounds, drifts and noise
model as the ordinary GLM enter the fits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bids_glm.derivatives import beta_series as outputs
from bids_glm.derivatives.maps import MapTarget
from bids_glm.design.contrasts import unique_labels
from bids_glm.design.run_design import RunDesign
from bids_glm.design.single_trial import TrialDesign, trial_design
from bids_glm.errors import InputError
from bids_glm.glm.lsa import lsa_fit
from bids_glm.glm.single_trial import TrialEstimates, lsa_layout, lss_fit
from bids_glm.pipeline.kept_series import KeptSeries
from bids_glm.pipeline.plan import run_events
from bids_glm.pipeline.units import AnalysisUnit
from bids_glm.runtime.threads import for_each_in_threads, thread_budget
from bids_glm.settings import Settings

LOGGER = logging.getLogger("bids_glm")


def check_single_trial_plan(units: Sequence[AnalysisUnit], settings: Settings) -> None:
    """Before any fit: every condition of ``--single-trial-conditions`` has trials in every run.

    Raises
    ------
    InputError
        A condition no run has (the runs' conditions are listed), or runs lacking one.
    """
    wanted = settings.single_trial_conditions
    if settings.single_trial is None or not wanted:
        return
    designs = [design for unit in units for design in unit.designs]
    found = sorted({condition for design in designs for condition in design.conditions})
    unknown = [condition for condition in wanted if condition not in found]
    if unknown:
        raise InputError(
            f"--single-trial-conditions {' '.join(unknown)}: no run has trials of "
            f"{', '.join(unknown)}; the runs' conditions (trial_type values after dropping "
            f"n/a rows): {', '.join(found) or 'none'}"
        )
    lacking = [
        f"{design.run.label} has no trials of {', '.join(absent)}"
        for design in designs
        if (absent := [c for c in wanted if c not in design.conditions])
    ]
    if lacking:
        raise InputError(
            f"--single-trial-conditions: {'; '.join(lacking)}: leave the condition out, or "
            "select the runs that have it (--task, --session, --bids-filter-file)"
        )


@dataclass(frozen=True)
class SingleTrials:
    """A run's single-trial estimates, ready to be written (the data no longer needed).

    Attributes
    ----------
    design : RunDesign
        The run's ordinary design.
    trials : TrialDesign
        The trial-wise (LSA) design and its trials.
    conditions : list of str
        The conditions whose trials were estimated.
    estimates : TrialEstimates
        One estimate (and variance, for t series) per trial and voxel.
    seconds : float
        Time the estimation took.
    """

    design: RunDesign
    trials: TrialDesign
    conditions: list[str]
    estimates: TrialEstimates
    seconds: float


def estimate_single_trials(
    design: RunDesign, data: np.ndarray | KeptSeries, settings: Settings
) -> SingleTrials:
    """Estimate every trial of the chosen conditions from the run's scaled ``data`` (held,
    or kept as it streamed and read back a block of voxels at a time).

    Raises
    ------
    InputError
        When the trial-wise design cannot be built from the run's events.
    """
    started = time.perf_counter()
    model = settings.model
    conditions = list(settings.single_trial_conditions or design.conditions)
    events = run_events(design.run, model, design.dummy_scans)
    try:
        trials = trial_design(
            design.matrix, events, conditions, model.hrf_model, model.fir_delays_scans
        )
    except ValueError as err:
        message = f"{design.run.label}: cannot build the single-trial design: {err}"
        raise InputError(message) from None
    columns = list(trials.matrix.columns)
    lsa = trials.matrix.to_numpy(dtype=float)[design.fitted_rows]
    layout = lsa_layout(columns, list(trials.trials["column"]), list(trials.trials["condition"]))
    estimates = _estimate(lsa, data, layout, settings)
    seconds = time.perf_counter() - started
    return SingleTrials(design, trials, conditions, estimates, seconds)


def write_single_trials(
    single: SingleTrials, target: MapTarget, source: str, settings: Settings
) -> list:
    """Write the beta series of each condition (and the LSA design); return the paths."""
    trials, conditions, estimates = single.trials, single.conditions, single.estimates
    record = outputs.model_record(single.design, settings, [source])
    # the trial-wise (LSA) design: LSA's model, and the columns LSS combines per trial
    written = [outputs.write_trial_design(trials.matrix, target.folder, target.entities, record)]
    record = {**record, "Design": written[0].name}
    labels = unique_labels(conditions)
    with_t = "t" in settings.single_trial_maps
    written_by_condition: dict[str, list] = {}

    def write_condition(condition: str) -> None:
        selected = (trials.trials["condition"] == condition).to_numpy()
        rows = np.flatnonzero(selected)
        series = outputs.TrialSeries(
            condition=condition,
            label=labels[condition],
            trials=trials.trials[selected],
            beta=estimates.beta_float32(rows),
            t=estimates.t_float32(rows) if with_t else None,
            dof=estimates.dof[selected] if with_t else None,
        )
        written_by_condition[condition] = outputs.write_beta_series(target, series, record)

    # each condition's files are its own; their compression runs in parallel
    for_each_in_threads(write_condition, list(conditions), thread_budget(), "betaseries")
    written.extend(path for condition in conditions for path in written_by_condition[condition])
    LOGGER.info(
        "%s: %s estimates of %d trial(s) in %.1f s",
        single.design.run.label,
        settings.single_trial.upper(),
        estimates.beta.shape[0],
        single.seconds,
    )
    return written


def _estimate(
    lsa: np.ndarray, data: np.ndarray | KeptSeries, layout, settings: Settings
) -> TrialEstimates:
    """LSA (one fit of the LSA design) or LSS estimates, with variances for t series."""
    fit = lss_fit if settings.single_trial == "lss" else lsa_fit
    with np.errstate(divide="ignore", invalid="ignore"):
        return fit(
            lsa,
            data,
            layout,
            noise_model=settings.model.noise_model,
            variance="t" in settings.single_trial_maps,
            scratch_dir=settings.work_dir,
        )
