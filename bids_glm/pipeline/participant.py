"""The participant level, end to end: discover, plan, fit run by run, combine, write.

This is the only module that knows every layer; each layer below it knows nothing of
the others (see ARCHITECTURE.md). One run's work is in :mod:`bids_glm.pipeline.run`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from bids_glm.derivatives import manifest, naming
from bids_glm.derivatives import maps as outputs
from bids_glm.derivatives.dataset import dataset_links, write_dataset_description
from bids_glm.derivatives.files import MapWriter, write_json, write_mask
from bids_glm.derivatives.methods import compile_templates, methods_facts, write_methods
from bids_glm.derivatives.stats_model import model_from_summaries, model_options
from bids_glm.derivatives.summary import RunExcluded, RunUsed, UnitSummary, resolved_contrasts
from bids_glm.design.contrasts import weights_text
from bids_glm.design.run_design import ContrastPlan
from bids_glm.errors import BidsGlmError, InputError
from bids_glm.glm.fixed_effects import fixed_effects
from bids_glm.image.geometry import VolumeGeometry
from bids_glm.inputs.discovery import PendingDiscovery
from bids_glm.inputs.layout import discover_runs
from bids_glm.inputs.variants import bold_variant
from bids_glm.pipeline import batch
from bids_glm.pipeline import reports as reporting
from bids_glm.pipeline.analysis_mask import build_geometry
from bids_glm.pipeline.plan import plan_units
from bids_glm.pipeline.run import RunOutcome, SubjectLevel, process_run
from bids_glm.pipeline.single_trial import check_single_trial_plan
from bids_glm.pipeline.subject_clusters import write_subject_clusters
from bids_glm.pipeline.surface_meshes import with_meshes
from bids_glm.pipeline.units import (
    AnalysisUnit,
    remove_interrupted_writes,
    software_versions,
    unit_fingerprint,
    unit_outputs,
)
from bids_glm.runtime.logs import captured_warnings
from bids_glm.runtime.out_of_memory import is_out_of_memory, out_of_memory_error
from bids_glm.runtime.workers import map_runs, worker_count
from bids_glm.settings import Settings

LOGGER = logging.getLogger("bids_glm")


def _fit_runs(
    unit: AnalysisUnit,
    geometry: VolumeGeometry,
    settings: Settings,
    writer: MapWriter,
    subject: SubjectLevel | None,
) -> list[RunOutcome]:
    """Every run of the unit, in worker processes when the cores allow, else here.

    ``subject``: the unit has one run, whose maps are also its subject-level maps (written
    by that run, here).
    """
    args = (unit.contrasts, geometry, settings)
    if subject is None and worker_count(settings.n_cpus, len(unit.designs)) > 1:
        return map_runs(process_run, unit.designs, args, settings)  # each its own writer
    return [process_run(design, *args, writer=writer, subject=subject) for design in unit.designs]


def analyse_unit(unit: AnalysisUnit, settings: Settings) -> tuple[list[RunOutcome], Path]:
    """Fit every run of the unit, write run-level maps, then fixed-effects maps.

    Returns the runs' outcomes and the path of the unit's mean BOLD image.
    """
    geometry = build_geometry(unit.designs, settings, unit.meshes)
    entities = naming.subject_level_entities(unit.entities)
    folder = naming.subject_func_dir(settings.output_dir, entities)
    # one writer for the unit: a run's maps are compressed while the next run is read
    with MapWriter.for_budget() as writer:
        # fixed effects of one run are that run: its maps are written there as they are made
        subject = SubjectLevel(folder, entities) if len(unit.designs) == 1 else None
        outcomes = _fit_runs(unit, geometry, settings, writer, subject)
        usable = np.logical_and.reduce([o.usable for o in outcomes])
        if not usable.any():
            raise InputError(_nothing_usable(unit, outcomes))
        n_unusable = int((~usable).sum())
        if n_unusable:
            LOGGER.warning(
                "%d of %d %s excluded: non-finite or constant in some run",
                n_unusable,
                usable.size,
                geometry.locations,
            )
        write_mask(naming.mask_path(folder, entities), geometry.restricted(usable))
        mean_image = None
        if isinstance(geometry, VolumeGeometry):  # surfaces: no underlay image (yet)
            mean_image = naming.mean_image_path(folder, entities)
            if subject is None:  # a single run wrote its own
                outputs.write_mean_image(
                    writer,
                    folder,
                    entities,
                    [o.mean_volume for o in outcomes],
                    [o.source for o in outcomes],
                    geometry.affine,
                )
        if subject is None:  # a single run wrote its subject-level maps itself
            target = outputs.MapTarget(folder, entities, geometry, usable)
            for plan in unit.contrasts:
                _write_fixed_effects(writer, target, plan, outcomes, settings)
    return outcomes, mean_image


def _nothing_usable(unit: AnalysisUnit, outcomes: Sequence[RunOutcome]) -> str:
    """Why no voxel is left: the runs with no usable voxel, or their disjoint masks."""
    pairs = zip(unit.designs, outcomes, strict=True)
    empty = [str(design.run.bold_path) for design, o in pairs if not o.usable.any()]
    if empty:
        return (
            f"{', '.join(empty)}: no in-mask voxel has finite, non-constant values; "
            "expected a BOLD series with signal (not NaN, infinite or constant)"
        )
    return (
        f"{unit.name}: no in-mask voxel has finite, non-constant values in every run "
        f"({', '.join(str(d.run.bold_path) for d in unit.designs)}); expected runs that "
        "share usable voxels"
    )


def _write_fixed_effects(
    writer: MapWriter,
    target: outputs.MapTarget,
    plan: ContrastPlan,
    outcomes: Sequence[RunOutcome],
    settings: Settings,
) -> None:
    """One contrast's subject-level maps and cluster table, over the runs that have it."""
    present = [o for o in outcomes if plan.label in o.maps]
    if not present:
        LOGGER.warning("contrast %s: no run has its columns; nothing written", plan.name)
        return
    with np.errstate(divide="ignore", invalid="ignore"):
        runs = [o.maps[plan.label] for o in present]
        combined = fixed_effects(runs, settings.model.fixed_effects)
    sources = tuple(o.source for o in present)
    provenance = outputs.Provenance(settings.model, sources, "subject")
    outputs.write_contrast_maps(writer, target, plan, combined, provenance)
    # in the background, as the maps' compression
    writer.submit(write_subject_clusters, target, plan, combined.z, settings)


def unit_summary(
    unit: AnalysisUnit,
    settings: Settings,
    outcomes: Sequence[RunOutcome],
    mean_image: Path | None,
    warnings: Sequence[str],
    elapsed_s: float,
) -> UnitSummary:
    """What the methods text and the report need to know about a completed unit."""
    used, excluded = [], []
    for design, outcome in zip(unit.designs, outcomes, strict=True):
        run = design.run
        used.append(
            RunUsed(
                run=run.label,
                design=_relative(outcome.design_path, settings),
                events_path=(
                    None
                    if run.events_path is None or design.user_design is not None
                    else str(run.events_path)
                ),
                confounds_path=None if run.confounds_path is None else str(run.confounds_path),
            )
        )
        excluded.extend(
            RunExcluded(run.label, contrast, reason)
            for contrast, reason in outcome.skipped_contrasts.items()
        )
    run_warnings = [m for o in outcomes for m in o.warnings]
    return UnitSummary(
        participant=unit.entities["sub"],
        session=unit.entities.get("ses"),
        task=unit.entities["task"],
        space=unit.entities.get("space"),
        bold_variant=bold_variant(unit.designs[0].run.entities),
        voxel_size_mm=unit.designs[0].run.voxel_size_mm or (),
        n_runs=len(unit.designs),
        repetition_times_s=tuple(sorted({d.run.tr_s for d in unit.designs})),
        conditions=tuple(sorted({c for d in unit.designs for c in d.conditions})),
        confounds=tuple(dict.fromkeys(c for d in unit.designs for c in d.confound_columns)),
        runs_used=tuple(used),
        runs_excluded=tuple(excluded),
        warnings=tuple(dict.fromkeys([*unit.planning_warnings, *run_warnings, *warnings])),
        settings={"HRFModel": str(settings.model.hrf_model), **model_options(settings)},
        command_line=settings.command_line,
        software=software_versions(),
        mean_image=None if mean_image is None else _relative(mean_image, settings),
        elapsed_s=round(elapsed_s, 3),
        resolved_contrasts=resolved_contrasts(unit.contrasts, settings.model),
        meshes=tuple(str(p) for p in unit.meshes.paths) if unit.meshes else (),
    )


def dry_run(units: Sequence[AnalysisUnit], settings: Settings) -> None:
    """Write every run's design (TSV + JSON) and print the plan; fit nothing."""
    for unit in units:
        what = " ".join(f"{k}-{v}" for k, v in unit.entities.items())
        print(f"{what}: {len(unit.designs)} run(s)")
        if settings.spm12 is not None:  # one SPM12 model over the runs
            from bids_glm.pipeline.spm_subject import spm_dry_run  # only --preset spm12

            spm_dry_run(unit, settings)
            continue
        for design in unit.designs:
            entities = naming.run_level_entities(design.run.entities)
            folder = naming.subject_func_dir(settings.output_dir, entities)
            outputs.write_design(design, folder, entities, settings)
            n_censored = 0 if design.censored is None else int(design.censored.sum())
            print(
                f"  {design.run.label}: {design.run.n_volumes} volumes, TR {design.run.tr_s} s, "
                f"{design.dummy_scans} dummy, {n_censored} censored; "
                f"columns: {', '.join(design.matrix.columns)}"
            )
            mask = design.run.mask_path.name if design.run.mask_path else "none (EPI mask)"
            mask = f"{settings.mask.name} (--mask)" if settings.mask else mask
            if design.run.on_surface:  # vertices or grayordinates: constant ones left out
                bold = " + ".join(p.name for p in design.run.image_paths)
                print(f"    BOLD {bold}; no mask (constant vertices left out)")
            else:
                print(f"    BOLD {design.run.bold_path.name}; mask {mask}")
            if design.user_design is not None:
                print(f"    design {design.user_design} (--design-dir, used as given)")
        if unit.meshes is not None:
            meshes = " + ".join(str(p) for p in unit.meshes.paths)
            use = "smoothed along" if settings.model.smoothing_fwhm_mm > 0 else "drawn on"
            print(f"  {use} the meshes {meshes}")
        numeric = {c.name for c in resolved_contrasts(unit.contrasts, settings.model)}
        for plan in unit.contrasts:
            resolved = ""
            if plan.name in numeric:  # the columns its positions fell on in these runs
                resolved = ", i.e. " + "; ".join(weights_text(row) for row in plan.rows)
            print(f"  contrast {plan.label} ({plan.stat_type}): {plan.expression}{resolved}")
    print(f"designs written to {settings.output_dir}; nothing was fitted (--dry-run)")


def write_methods_text(settings: Settings) -> None:
    """``logs/CITATION.*`` and the effective BIDS Stats Model, over every completed unit."""
    with manifest.summaries_lock(settings.output_dir):  # job arrays share OUTPUT_DIR
        summaries = manifest.completed_summaries(settings.output_dir)
        if not summaries:
            return
        spaces = sorted({s.space for s in summaries if s.space})
        facts = methods_facts(
            settings,
            n_participants=len({s.participant for s in summaries}),
            tasks=[s.task for s in summaries],
            n_runs=sum(s.n_runs for s in summaries),
            space=", ".join(spaces) or None,
            tr_s=[tr for s in summaries for tr in s.repetition_times_s],
            command_line=settings.command_line,
            conditions=[c for s in summaries for c in s.conditions],
            bold_variant=[e for s in summaries for e in s.bold_variant],
            voxel_sizes_mm=[s.voxel_size_mm for s in summaries if s.voxel_size_mm],
        )
        write_methods(settings.output_dir, facts)
        write_json(
            naming.effective_model_path(settings.output_dir),
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
        found = discover_runs(settings)
    else:
        compile_templates()  # for the methods text, while the discovery child works
        found = discovery.result()
    units, planning_failures = plan_units(found.runs, settings.model, found.failures)
    check_single_trial_plan(units, settings)
    units, mesh_failures = with_meshes(units, settings)  # smoothing meshes, before any fit
    planning_failures += mesh_failures
    if settings.dry_run:
        for failure in planning_failures:
            raise InputError(failure.reason)
        settings.output_dir.mkdir(parents=True, exist_ok=True)
        dry_run(units, settings)
        return
    results = [
        batch.UnitResult(
            naming.unit_name(f.entities), batch.FAILED, f.reason, InputError(f.reason)
        )
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
        links = dataset_links(settings.bids_dir, settings.derivatives)
        write_dataset_description(settings.output_dir, settings.bids_dir, links)
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
    record = naming.manifest_path(settings.output_dir, unit.entities)
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
            analyse = analyse_unit if settings.spm12 is None else _spm_analysis()
            outcomes, mean_image = analyse(unit, settings)
    except KeyboardInterrupt:
        _remove_outputs(unit, settings)
        raise
    except Exception as err:  # one unit's failure must not stop the batch
        _remove_outputs(unit, settings)
        err = out_of_memory_error(err) if is_out_of_memory(err) else err
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


def _spm_analysis() -> Callable[[AnalysisUnit, Settings], tuple]:
    """`analyse_spm_unit`, loaded where ``--preset spm12`` asks for it (its ~20 modules take
    ~20 ms of every other run's start-up otherwise)."""
    from bids_glm.pipeline.spm_subject import analyse_spm_unit

    return analyse_spm_unit
