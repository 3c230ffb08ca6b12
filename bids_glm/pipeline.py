"""The participant level, end to end: discover, plan, fit run by run, combine, write.

This is the only module that knows every layer; each layer below it knows nothing of
the others (see DESIGN.md, "The one-way flow").
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from bids_glm import derivatives, manifest, outputs
from bids_glm.analysis_mask import build_analysis_mask
from bids_glm.design.contrasts import missing_columns
from bids_glm.glm.contrast import compute_contrast
from bids_glm.glm.fit import fit_glm
from bids_glm.glm.fixed_effects import fixed_effects
from bids_glm.glm.results import ContrastMaps
from bids_glm.glm.scaling import scale_signal
from bids_glm.image.io import read_masked_series
from bids_glm.inputs.layout import RunInput, discover_runs
from bids_glm.methods import methods_facts, write_methods
from bids_glm.parallel import map_runs
from bids_glm.plan import ContrastPlan, RunDesign, build_run_design, plan_contrasts
from bids_glm.settings import ModelSettings, Settings
from bids_glm.stats_model import MODEL_NAME, model_from_summaries

LOGGER = logging.getLogger("bids_glm")


@dataclass(frozen=True)
class AnalysisUnit:
    """Runs of one participant, session, task and space, combined by fixed effects."""

    entities: dict[str, str]
    designs: tuple[RunDesign, ...]
    contrasts: tuple[ContrastPlan, ...]


def group_runs(runs: Sequence[RunInput]) -> dict[tuple, list[RunInput]]:
    """Runs keyed by (subject, session, task, space), in discovery order."""
    groups: dict[tuple, list[RunInput]] = defaultdict(list)
    for run in runs:
        groups[(run.subject, run.session, run.task, run.space)].append(run)
    return dict(groups)


def plan_units(runs: Sequence[RunInput], model: ModelSettings) -> list[AnalysisUnit]:
    """Build every design matrix and contrast before anything is fitted."""
    units = []
    for (subject, session, task, space), members in group_runs(runs).items():
        designs = tuple(build_run_design(run, model) for run in members)
        entities = {"sub": subject, "task": task}
        if session is not None:
            entities["ses"] = session
        if space is not None:
            entities["space"] = space
        units.append(AnalysisUnit(entities, designs, tuple(plan_contrasts(designs, model))))
    return units


def fit_run(design: RunDesign, mask, affine, settings: Settings):
    """Read, scale and fit one run's kept volumes; return the fit and its usable voxels."""
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
    return fit, series.usable


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
    """

    usable: np.ndarray
    maps: dict[str, ContrastMaps]
    source: str


def process_run(
    design: RunDesign,
    contrasts: Sequence[ContrastPlan],
    mask: np.ndarray,
    affine: np.ndarray,
    settings: Settings,
) -> RunOutcome:
    """Fit one run, write its design and run-level maps, return its contrast maps."""
    entities = run_entities(design.run)
    folder = derivatives.subject_func_dir(settings.output_dir, entities)
    fit, usable = fit_run(design, mask, affine, settings)
    outputs.write_design(design, folder, entities, settings)
    source = outputs.source_path(design.run.bold_path, settings)
    if settings.model_maps:
        outputs.write_model_maps(folder, entities, fit, usable, mask, affine, source)
    columns = list(design.matrix.columns)
    outcome = RunOutcome(usable=usable, maps={}, source=source)
    for plan in contrasts:
        absent = missing_columns(plan.columns, columns)
        if absent:
            LOGGER.warning(
                "%s: contrast %s skipped, column(s) %s absent",
                design.run.label,
                plan.name,
                ", ".join(absent),
            )
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


def analyse_unit(unit: AnalysisUnit, settings: Settings) -> None:
    """Fit every run of the unit, write run-level maps, then fixed-effects maps."""
    mask, affine = build_analysis_mask(unit.designs, settings)
    folder = derivatives.subject_func_dir(settings.output_dir, unit.entities)
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
    entities = {
        k: unit.entities[k] for k in derivatives.SUBJECT_LEVEL_ENTITIES if k in unit.entities
    }
    for plan in unit.contrasts:
        present = [o for o in outcomes if plan.label in o.maps]
        if not present:
            LOGGER.warning("contrast %s: no run has its columns; nothing written", plan.name)
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            combined = fixed_effects(
                [o.maps[plan.label] for o in present], settings.model.fixed_effects
            )
        sources = [o.source for o in present]
        outputs.write_contrast_maps(
            folder, entities, plan, combined, usable, mask, affine, settings, sources, "subject"
        )
        outputs.write_cluster_table(
            folder, entities, plan, combined, usable, mask, affine, settings
        )
    final_mask = mask.copy()
    final_mask[mask] = usable
    name = derivatives.bids_name(entities, tuple(entities), {}, "mask")
    derivatives.write_mask(folder / f"{name}.nii.gz", final_mask, affine)


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


def unit_outputs(unit: AnalysisUnit, settings: Settings) -> list[Path]:
    """Every file the unit has written (its participant, session, task and space)."""
    folder = derivatives.subject_func_dir(settings.output_dir, unit.entities)
    return [
        p
        for p in folder.glob(f"{_unit_prefix(unit)}_*")
        if _unit_space(unit) in p.name and p.is_file()
    ]


def _unit_prefix(unit: AnalysisUnit) -> str:
    keys = ("sub", "ses", "task")
    return "_".join(f"{k}-{unit.entities[k]}" for k in keys if k in unit.entities)


def _unit_space(unit: AnalysisUnit) -> str:
    return f"_space-{unit.entities['space']}_" if "space" in unit.entities else ""


def _remove_interrupted_writes(unit: AnalysisUnit, settings: Settings) -> None:
    """Delete temporary files that a killed earlier run of this unit left behind."""
    folder = derivatives.subject_func_dir(settings.output_dir, unit.entities)
    for stale in folder.glob(f".{_unit_prefix(unit)}_*.tmp"):
        if _unit_space(unit) in stale.name:
            stale.unlink(missing_ok=True)


def unit_fingerprint(unit: AnalysisUnit, settings: Settings) -> str:
    """Hash of everything that decides the unit's outputs: settings and input files."""
    inputs = [
        path
        for design in unit.designs
        for path in (
            design.run.bold_path,
            design.run.mask_path,
            design.run.events_path,
            design.run.confounds_path,
        )
        if path is not None
    ]
    if settings.mask is not None:
        inputs.append(settings.mask)
    description = repr((settings.model, settings.mask_combine, settings.model_maps))
    return manifest.fingerprint(description, inputs)


def unit_summary(unit: AnalysisUnit) -> dict:
    """What the methods text needs to know about a completed unit."""
    return {
        "Participant": unit.entities["sub"],
        "Task": unit.entities["task"],
        "Space": unit.entities.get("space"),
        "Runs": len(unit.designs),
        "RepetitionTimes": sorted({d.run.tr_s for d in unit.designs}),
        "Conditions": sorted({c for d in unit.designs for c in d.conditions}),
        "Confounds": list(dict.fromkeys(c for d in unit.designs for c in d.confound_columns)),
    }


def write_methods_text(settings: Settings) -> None:
    """``logs/CITATION.*`` and the effective BIDS Stats Model, over every completed unit."""
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


def run_participant_level(settings: Settings) -> None:
    """Discover, plan and fit every requested participant; write BIDS derivatives."""
    runs = discover_runs(settings)
    units = plan_units(runs, settings.model)
    settings.output_dir.mkdir(parents=True, exist_ok=True)
    if settings.dry_run:
        dry_run(units, settings)
        return
    for index, unit in enumerate(units, start=1):
        what = " ".join(f"{k}-{v}" for k, v in unit.entities.items())
        record = manifest.manifest_path(settings.output_dir, unit.entities)
        fingerprint = unit_fingerprint(unit, settings)
        if not settings.overwrite and manifest.is_complete(record, fingerprint):
            LOGGER.info(
                "[%d/%d] %s: outputs complete with the same settings; skipped "
                "(--overwrite redoes them)",
                index,
                len(units),
                what,
            )
            continue
        LOGGER.info(
            "[%d/%d] %s: %d run(s), %d contrast(s)",
            index,
            len(units),
            what,
            len(unit.designs),
            len(unit.contrasts),
        )
        manifest.invalidate(record)
        _remove_interrupted_writes(unit, settings)
        try:
            analyse_unit(unit, settings)
        except BaseException:  # leave nothing partial behind, then report the failure
            for path in unit_outputs(unit, settings):
                path.unlink(missing_ok=True)
            raise
        manifest.record(record, fingerprint, unit_outputs(unit, settings), unit_summary(unit))
    links = derivatives.dataset_links(settings.bids_dir, settings.derivatives)
    derivatives.write_dataset_description(settings.output_dir, settings.bids_dir, links)
    write_methods_text(settings)
    LOGGER.info("outputs written to %s", settings.output_dir)
