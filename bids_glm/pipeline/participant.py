"""The participant level, end to end: discover, plan, fit run by run, combine, write.

This is the only module that knows every layer; each layer below it knows nothing of
the others (see DESIGN.md, "The one-way flow").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from bids_glm.derivatives import files as derivatives
from bids_glm.derivatives import manifest
from bids_glm.derivatives import maps as outputs
from bids_glm.derivatives.methods import compile_templates, methods_facts, write_methods
from bids_glm.derivatives.stats_model import MODEL_NAME, model_from_summaries, model_options
from bids_glm.design.contrasts import missing_columns
from bids_glm.errors import BidsGlmError, InputError
from bids_glm.glm.contrast import compute_contrast
from bids_glm.glm.fit import fit_glm
from bids_glm.glm.fixed_effects import fixed_effects
from bids_glm.glm.results import ContrastMaps
from bids_glm.glm.scaling import scale_signal
from bids_glm.image.io import read_masked_series
from bids_glm.inputs.discovery import PendingDiscovery
from bids_glm.inputs.layout import RunInput, discover_runs
from bids_glm.pipeline import batch
from bids_glm.pipeline import reports as reporting
from bids_glm.pipeline.analysis_mask import build_analysis_mask
from bids_glm.pipeline.plan import ContrastPlan, RunDesign
from bids_glm.pipeline.units import (
    AnalysisUnit,
    plan_units,
    remove_interrupted_writes,
    software_versions,
    unit_fingerprint,
    unit_name,
    unit_outputs,
)
from bids_glm.runtime.logs import captured_warnings
from bids_glm.runtime.threads import thread_budget
from bids_glm.runtime.workers import map_runs
from bids_glm.settings import Settings

LOGGER = logging.getLogger("bids_glm")


def fit_run(design: RunDesign, mask, affine, settings: Settings):
    """Read, scale and fit one run's kept volumes.

    Returns the fit, the usable in-mask voxels and the run's (unsmoothed) mean volume.
    """
    run = design.run
    started = time.perf_counter()
    series = read_masked_series(
        run.bold_path,
        mask,
        affine,
        settings.model.smoothing_fwhm_mm,
        keep_volumes=design.kept_volumes,
    )
    data = scale_signal(series.data, settings.model.signal_scaling)
    with np.errstate(divide="ignore", invalid="ignore"):
        fit = fit_glm(
            design.fitted_matrix(),
            data,
            list(design.matrix.columns),
            noise_model=settings.model.noise_model,
        )
    LOGGER.info(
        "%s: fitted %s on %d voxels x %d volumes in %.1f s",
        run.label,
        settings.model.noise_model,
        data.shape[1],
        data.shape[0],
        time.perf_counter() - started,
    )
    return fit, series.usable, series.mean_volume


def run_entities(run: RunInput) -> dict[str, str]:
    """Entities of the run's output names, in BIDS order."""
    keep = derivatives.RUN_LEVEL_ENTITIES
    return {k: run.entities[k] for k in keep if k in run.entities}


@dataclass(frozen=True)
class RunOutcome:
    """What the fixed-effects step needs from one fitted run.

    Attributes
    ----------
    usable : ndarray of bool, shape (V,)
        In-mask voxels with finite, non-constant data in this run.
    maps : dict of str to ContrastMaps
        Contrast label -> this run's maps as fixed effects need them (statistics dropped);
        contrasts whose columns the run lacks are absent.
    source : str
        The run's BOLD file as a BIDS URI.
    design_path : Path
        The run's written ``_design.tsv``.
    skipped_contrasts : dict of str to str
        Contrast name -> why this run does not contribute to it.
    warnings : list of str
        Warnings logged while the run was processed (possibly in a worker process).
    mean_volume : ndarray of float32, shape (x, y, z), or None
        Time-mean of the run's kept volumes before smoothing (the reports' underlay).
    """

    usable: np.ndarray
    maps: dict[str, ContrastMaps]
    source: str
    design_path: Path
    mean_volume: np.ndarray | None = None
    skipped_contrasts: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def process_run(
    design: RunDesign,
    contrasts: Sequence[ContrastPlan],
    mask: np.ndarray,
    affine: np.ndarray,
    settings: Settings,
) -> RunOutcome:
    """Fit one run, write its design and run-level maps, return its contrast maps."""
    with captured_warnings() as messages, derivatives.background_map_writes():
        outcome = _process_run(design, contrasts, mask, affine, settings)
    outcome.warnings.extend(messages)
    return outcome


def _process_run(design, contrasts, mask, affine, settings: Settings) -> RunOutcome:
    entities = run_entities(design.run)
    folder = derivatives.subject_func_dir(settings.output_dir, entities)
    fit, usable, mean_volume = fit_run(design, mask, affine, settings)
    design_path = outputs.write_design(design, folder, entities, settings)
    source = outputs.source_path(design.run.bold_path, settings)
    if settings.model_maps:
        outputs.write_model_maps(folder, entities, fit, usable, mask, affine, source)
    columns = list(design.matrix.columns)
    outcome = RunOutcome(
        usable=usable, maps={}, source=source, design_path=design_path, mean_volume=mean_volume
    )
    for plan in contrasts:
        absent = missing_columns(plan.columns, columns)
        if absent:
            reason = f"column(s) {', '.join(absent)} absent from its design"
            LOGGER.warning("%s: contrast %s skipped, %s", design.run.label, plan.name, reason)
            outcome.skipped_contrasts[plan.name] = reason
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            maps = compute_contrast(fit, plan.weights_matrix(columns), plan.stat_type, plan.name)
        outputs.write_contrast_maps(
            folder, entities, plan, maps, usable, mask, affine, settings, [source], "run"
        )
        outcome.maps[plan.label] = _inputs_of_fixed_effects(maps)
    return outcome


def _inputs_of_fixed_effects(maps: ContrastMaps) -> ContrastMaps:
    """The run's maps without its statistics, which fixed effects recompute.

    stat, z and p become one shared zero-stride view, so a participant's memory grows by
    only the effect and variance (or F estimate) of each run, not five maps per contrast.
    """
    nothing = np.broadcast_to(np.float64(0.0), maps.stat.shape)
    return replace(maps, stat=nothing, z=nothing, p=nothing)


def analyse_unit(unit: AnalysisUnit, settings: Settings) -> tuple[list[RunOutcome], Path]:
    """Fit every run of the unit, write run-level maps, then fixed-effects maps.

    Returns the runs' outcomes and the path of the unit's mean BOLD image.
    """
    mask, affine = build_analysis_mask(unit.designs, settings)
    folder = derivatives.subject_func_dir(settings.output_dir, unit.entities)
    entities = {
        k: unit.entities[k] for k in derivatives.SUBJECT_LEVEL_ENTITIES if k in unit.entities
    }
    # one writer for the unit: a run's maps are compressed while the next run is read
    with derivatives.background_map_writes(thread_budget()):
        outcomes = map_runs(
            process_run, unit.designs, (unit.contrasts, mask, affine, settings), settings
        )
        usable = np.logical_and.reduce([o.usable for o in outcomes])
        n_unusable = int((~usable).sum())
        if n_unusable:
            LOGGER.warning(
                "%d of %d in-mask voxel(s) excluded: non-finite or constant in some run",
                n_unusable,
                usable.size,
            )
        final_mask = mask.copy()
        final_mask[mask] = usable
        name = derivatives.bids_name(entities, tuple(entities), {}, "mask")
        derivatives.write_mask(folder / f"{name}.nii.gz", final_mask, affine)
        means = [o.mean_volume for o in outcomes]
        sources = [o.source for o in outcomes]
        mean_image = outputs.write_mean_image(folder, entities, means, sources, affine)
        for plan in unit.contrasts:
            _write_fixed_effects(plan, outcomes, usable, mask, affine, folder, entities, settings)
    return outcomes, mean_image


def _write_fixed_effects(plan, outcomes, usable, mask, affine, folder, entities, settings):
    """One contrast's subject-level maps and cluster table, over the runs that have it."""
    present = [o for o in outcomes if plan.label in o.maps]
    if not present:
        LOGGER.warning("contrast %s: no run has its columns; nothing written", plan.name)
        return
    with np.errstate(divide="ignore", invalid="ignore"):
        runs = [o.maps[plan.label] for o in present]
        combined = fixed_effects(runs, settings.model.fixed_effects)
    level_sources = ([o.source for o in present], "subject")
    outputs.write_contrast_maps(
        folder, entities, plan, combined, usable, mask, affine, settings, *level_sources
    )
    outputs.write_cluster_table(folder, entities, plan, combined, usable, mask, affine, settings)


def unit_summary(
    unit: AnalysisUnit,
    settings: Settings,
    outcomes: Sequence[RunOutcome],
    mean_image: Path,
    warnings: Sequence[str],
    elapsed_s: float,
) -> dict:
    """What the methods text and the report need to know about a completed unit."""
    used, excluded = [], []
    for design, outcome in zip(unit.designs, outcomes, strict=True):
        run = design.run
        used.append(
            {
                "Run": run.label,
                "Design": _relative(outcome.design_path, settings),
                "EventsPath": None if run.events_path is None else str(run.events_path),
                "ConfoundsPath": None if run.confounds_path is None else str(run.confounds_path),
            }
        )
        excluded.extend(
            {"Run": run.label, "Contrast": contrast, "Reason": reason}
            for contrast, reason in outcome.skipped_contrasts.items()
        )
    run_warnings = [m for o in outcomes for m in o.warnings]
    return {
        "Participant": unit.entities["sub"],
        "Session": unit.entities.get("ses"),
        "Task": unit.entities["task"],
        "Space": unit.entities.get("space"),
        "Runs": len(unit.designs),
        "RepetitionTimes": sorted({d.run.tr_s for d in unit.designs}),
        "Conditions": sorted({c for d in unit.designs for c in d.conditions}),
        "Confounds": list(dict.fromkeys(c for d in unit.designs for c in d.confound_columns)),
        "RunsUsed": used,
        "RunsExcluded": excluded,
        "Warnings": list(dict.fromkeys([*unit.planning_warnings, *run_warnings, *warnings])),
        "Settings": {"HRFModel": str(settings.model.hrf_model), **model_options(settings)},
        "CommandLine": settings.command_line,
        "Software": software_versions(),
        "MeanImage": _relative(mean_image, settings),
        "ElapsedSeconds": round(elapsed_s, 3),
    }


def dry_run(units: Sequence[AnalysisUnit], settings: Settings) -> None:
    """Write every run's design (TSV + JSON) and print the plan; fit nothing."""
    for unit in units:
        what = " ".join(f"{k}-{v}" for k, v in unit.entities.items())
        print(f"{what}: {len(unit.designs)} run(s)")
        for design in unit.designs:
            entities = run_entities(design.run)
            folder = derivatives.subject_func_dir(settings.output_dir, entities)
            outputs.write_design(design, folder, entities, settings)
            n_censored = 0 if design.censored is None else int(design.censored.sum())
            print(
                f"  {design.run.label}: {design.run.n_volumes} volumes, TR {design.run.tr_s} s, "
                f"{design.dummy_scans} dummy, {n_censored} censored; "
                f"columns: {', '.join(design.matrix.columns)}"
            )
        for plan in unit.contrasts:
            print(f"  contrast {plan.label} ({plan.stat_type}): {plan.expression}")
    print(f"designs written to {settings.output_dir}; nothing was fitted (--dry-run)")


def write_methods_text(settings: Settings) -> None:
    """``logs/CITATION.*`` and the effective BIDS Stats Model, over every completed unit."""
    with manifest.summaries_lock(settings.output_dir):  # job arrays share OUTPUT_DIR
        summaries = manifest.completed_summaries(settings.output_dir)
        if not summaries:
            return
        spaces = sorted({s["Space"] for s in summaries if s["Space"]})
        facts = methods_facts(
            settings,
            n_participants=len({s["Participant"] for s in summaries}),
            tasks=[s["Task"] for s in summaries],
            n_runs=sum(s["Runs"] for s in summaries),
            space=", ".join(spaces) or None,
            tr_s=[tr for s in summaries for tr in s["RepetitionTimes"]],
            command_line=settings.command_line,
            conditions=[c for s in summaries for c in s["Conditions"]],
        )
        write_methods(settings.output_dir, facts)
        derivatives.write_json(
            settings.output_dir / f"model-{MODEL_NAME}_smdl.json",
            model_from_summaries(settings, summaries),
        )


def run_participant_level(settings: Settings, discovery: PendingDiscovery | None = None) -> None:
    """Discover, plan and fit every requested participant; write BIDS derivatives.

    A participant whose inputs or analysis fail does not stop the others: the run ends
    with a one-line summary and raises when any unit failed (see ``batch``). ``discovery``,
    if given, is the discovery already started for ``settings`` (`start_discovery`).
    """
    if settings.reports_only:
        reporting.rerender_reports(settings)
        return
    if discovery is None:
        runs = discover_runs(settings)
    else:
        compile_templates()  # for the methods text, while the discovery child works
        runs = discovery.runs()
    units, planning_failures = plan_units(runs, settings.model)
    if settings.dry_run:
        for failure in planning_failures:
            raise InputError(failure.reason)
        settings.output_dir.mkdir(parents=True, exist_ok=True)
        dry_run(units, settings)
        return
    results = [
        batch.UnitResult(unit_name(f.entities), batch.FAILED, f.reason, InputError(f.reason))
        for f in planning_failures
    ]
    for failure in results:
        LOGGER.error("%s: %s", failure.name, failure.reason)
    if units:
        settings.output_dir.mkdir(parents=True, exist_ok=True)
    done: list[AnalysisUnit] = []
    for index, unit in enumerate(units, start=1):
        LOGGER.info(
            "[%d/%d] %s: %d run(s), %d contrast(s)",
            index,
            len(units),
            unit.name,
            len(unit.designs),
            len(unit.contrasts),
        )
        result = _run_unit(unit, settings)
        results.append(result)
        if result.status == batch.DONE:
            done.append(unit)
    if done:
        links = derivatives.dataset_links(settings.bids_dir, settings.derivatives)
        derivatives.write_dataset_description(settings.output_dir, settings.bids_dir, links)
        write_methods_text(settings)
        LOGGER.info("outputs written to %s", settings.output_dir)
    if settings.write_reports:
        labels = reporting.participants_to_report(units, done, settings)
        reports = reporting.render_participant_reports(settings, labels)
        results.extend(r for r in reports if r.status == batch.FAILED)
    LOGGER.log(
        logging.ERROR if any(r.status == batch.FAILED for r in results) else logging.INFO,
        batch.summary_line(results),
    )
    batch.raise_for_failures(results)


def _relative(path: Path, settings: Settings) -> str:
    return path.relative_to(settings.output_dir).as_posix()


def _run_unit(unit: AnalysisUnit, settings: Settings) -> batch.UnitResult:
    """Analyse one unit unless complete; never leave partial outputs behind."""
    record = manifest.manifest_path(settings.output_dir, unit.entities)
    fingerprint = unit_fingerprint(unit, settings)
    if not settings.overwrite and manifest.is_complete(record, fingerprint):
        reason = "outputs complete with the same settings"
        LOGGER.info("%s: %s; skipped (--overwrite redoes them)", unit.name, reason)
        return batch.UnitResult(unit.name, batch.SKIPPED, reason)
    manifest.invalidate(record)
    remove_interrupted_writes(unit, settings)
    started = time.perf_counter()
    try:
        with captured_warnings() as messages:
            outcomes, mean_image = analyse_unit(unit, settings)
    except KeyboardInterrupt:
        _remove_outputs(unit, settings)
        raise
    except Exception as err:  # one unit's failure must not stop the batch
        _remove_outputs(unit, settings)
        LOGGER.log(
            logging.ERROR if settings.verbosity >= 1 else logging.DEBUG,
            "%s failed",
            unit.name,
            exc_info=True,  # the traceback with -v, as for the whole command
        )
        reason = str(err) if isinstance(err, BidsGlmError) else f"{type(err).__name__}: {err}"
        LOGGER.error("%s: failed: %s", unit.name, reason)
        return batch.UnitResult(unit.name, batch.FAILED, reason, err)
    elapsed_s = time.perf_counter() - started
    summary = unit_summary(unit, settings, outcomes, mean_image, messages, elapsed_s)
    manifest.record(record, fingerprint, unit_outputs(unit, settings), summary)
    return batch.UnitResult(unit.name, batch.DONE)


def _remove_outputs(unit: AnalysisUnit, settings: Settings) -> None:
    for path in unit_outputs(unit, settings):
        path.unlink(missing_ok=True)
