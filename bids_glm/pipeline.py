"""The participant level, end to end: discover, plan, fit run by run, combine, write.

This is the only module that knows every layer; each layer below it knows nothing of
the others (see DESIGN.md, "The one-way flow").
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bids_glm import __version__, derivatives
from bids_glm.design.contrasts import missing_columns, weights_vector
from bids_glm.errors import InputError
from bids_glm.glm.contrast import compute_contrast
from bids_glm.glm.fit import fit_glm
from bids_glm.glm.fixed_effects import fixed_effects
from bids_glm.glm.results import ContrastMaps
from bids_glm.glm.scaling import scale_signal
from bids_glm.image.io import read_masked_series
from bids_glm.image.mask import intersect_masks, load_mask, same_grid
from bids_glm.inputs.layout import RunInput, discover_runs
from bids_glm.parallel import map_runs
from bids_glm.plan import ContrastPlan, RunDesign, build_run_design, plan_contrasts
from bids_glm.settings import ModelSettings, Settings

LOGGER = logging.getLogger("bids_glm")
STAT_MAPS = ("effect", "variance", "t", "z", "p")


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


def analysis_mask(designs: Sequence[RunDesign]) -> tuple[np.ndarray, np.ndarray]:
    """Intersection of the runs' brain masks, checked to be on the BOLD grid."""
    masks, affine = [], None
    for design in designs:
        run = design.run
        if run.mask_path is None:
            raise InputError(
                f"{run.bold_path}: no matching desc-brain_mask in the derivatives "
                "(expected the same entities with desc-brain_mask.nii[.gz])"
            )
        mask, mask_affine = load_mask(run.mask_path)
        if affine is not None and not same_grid(mask.shape, mask_affine, masks[0].shape, affine):
            raise InputError(f"{run.mask_path}: not on the same grid as the other runs' masks")
        masks.append(mask)
        affine = mask_affine
    combined = intersect_masks(masks)
    if not combined.any():
        raise InputError("the runs' brain masks have no voxel in common")
    return combined, affine


def _source(path: Path, settings: Settings) -> str:
    for root in (*settings.derivatives, settings.bids_dir):
        if root in path.parents:
            return f"{root.name}/{path.relative_to(root).as_posix()}"
    return path.name


def _sidecar(plan, maps, stat, settings, sources, level) -> dict:
    model = settings.model
    sidecar = {
        "ContrastName": plan.name,
        "ContrastLabel": plan.label,
        "ContrastExpression": plan.expression,
        "ContrastWeights": plan.weights,
        "Statistic": stat,
        "Test": maps.stat_type,
        "DegreesOfFreedom": float(maps.dof),
        "NoiseModel": model.noise_model,
        "SmoothingFWHMmm": model.smoothing_fwhm_mm or 0.0,
        "HRFModel": model.hrf_model,
        "Level": level,
        "Sources": sources,
        "SoftwareName": "bids-glm",
        "SoftwareVersion": __version__,
    }
    if level == "subject":
        sidecar["FixedEffects"] = model.fixed_effects
    return sidecar


def _write_maps(folder, name_entities, plan, maps, mask, affine, settings, sources, level):
    for stat in STAT_MAPS:
        values = {
            "effect": maps.effect,
            "variance": maps.variance,
            "t": maps.stat,
            "z": maps.z,
            "p": maps.p,
        }[stat]
        extra = {"contrast": plan.label, "stat": stat}
        name = derivatives.bids_name(name_entities, tuple(name_entities), extra, "statmap")
        sidecar = _sidecar(plan, maps, stat, settings, sources, level)
        derivatives.write_map(folder / f"{name}.nii.gz", values, mask, affine, sidecar)


def _scatter(maps: ContrastMaps, usable: np.ndarray) -> ContrastMaps:
    """Put maps fitted on usable voxels back on the full mask (zero elsewhere)."""
    if usable.all():
        return maps
    fields = {}
    for key in ("effect", "variance", "stat", "z", "p"):
        full = np.zeros(usable.shape, dtype=np.float64)
        full[usable] = getattr(maps, key)
        fields[key] = full
    return ContrastMaps(name=maps.name, stat_type=maps.stat_type, dof=maps.dof, **fields)


def fit_run(design: RunDesign, mask, affine, settings: Settings):
    """Read, scale and fit one run; return the fit and the usable-voxel mask."""
    run = design.run
    started = time.perf_counter()
    series = read_masked_series(run.bold_path, mask, affine, settings.model.smoothing_fwhm_mm)
    data = series.data if series.usable.all() else series.data[:, series.usable]
    data = scale_signal(data, settings.model.signal_scaling)
    fit = fit_glm(
        design.matrix.to_numpy(dtype=float),
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


def _write_design(design: RunDesign, folder: Path, run_entities: dict, settings: Settings):
    name = derivatives.bids_name(run_entities, tuple(run_entities), {}, "design")
    derivatives.write_tsv(folder / f"{name}.tsv", design.matrix)
    model = settings.model
    derivatives.write_json(
        folder / f"{name}.json",
        {
            "RepetitionTime": design.run.tr_s,
            "SliceTimeRef": design.slice_time_ref,
            "Columns": list(design.matrix.columns),
            "Conditions": list(design.conditions),
            "HRFModel": model.hrf_model,
            "DriftModel": model.drift_model,
            "HighPassHz": model.high_pass_hz,
            "DriftOrder": model.drift_order,
            "NoiseModel": model.noise_model,
            "SignalScaling": model.signal_scaling,
            "Confounds": list(model.confounds),
            "Sources": [
                _source(p, settings)
                for p in (design.run.bold_path, design.run.events_path, design.run.confounds_path)
                if p is not None
            ],
        },
    )


def _run_entities(run: RunInput) -> dict[str, str]:
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
        Contrast label -> this run's maps (contrasts whose columns the run lacks are absent).
    source : str
        The run's BOLD file, relative to its dataset.
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
    run_entities = _run_entities(design.run)
    folder = derivatives.subject_func_dir(settings.output_dir, run_entities)
    fit, usable = fit_run(design, mask, affine, settings)
    _write_design(design, folder, run_entities, settings)
    columns = list(design.matrix.columns)
    source = _source(design.run.bold_path, settings)
    outcome = RunOutcome(usable=usable, maps={}, source=source)
    for plan in contrasts:
        absent = missing_columns(plan.weights, columns)
        if absent:
            LOGGER.warning(
                "%s: contrast %s skipped, column(s) %s absent",
                design.run.label,
                plan.name,
                ", ".join(absent),
            )
            continue
        weights = weights_vector(plan.weights, columns)
        with np.errstate(divide="ignore", invalid="ignore"):
            maps = _scatter(compute_contrast(fit, weights, "t", plan.name), usable)
        _write_maps(folder, run_entities, plan, maps, mask, affine, settings, [source], "run")
        outcome.maps[plan.label] = maps
    return outcome


def analyse_unit(unit: AnalysisUnit, settings: Settings) -> None:
    """Fit every run of the unit, write run-level maps, then fixed-effects maps."""
    mask, affine = analysis_mask(unit.designs)
    folder = derivatives.subject_func_dir(settings.output_dir, unit.entities)
    outcomes = map_runs(
        process_run, unit.designs, (unit.contrasts, mask, affine, settings), settings
    )
    usable_everywhere = np.logical_and.reduce([o.usable for o in outcomes])
    per_contrast = {
        plan.label: [o.maps[plan.label] for o in outcomes if plan.label in o.maps]
        for plan in unit.contrasts
    }
    sources = {
        plan.label: [o.source for o in outcomes if plan.label in o.maps] for plan in unit.contrasts
    }
    final_mask = mask.copy()
    final_mask[mask] = usable_everywhere
    subject_entities = {
        k: unit.entities[k] for k in derivatives.SUBJECT_LEVEL_ENTITIES if k in unit.entities
    }
    for plan in unit.contrasts:
        run_maps = per_contrast.get(plan.label)
        if not run_maps:
            LOGGER.warning("contrast %s: no run has its columns; nothing written", plan.name)
            continue
        combined = fixed_effects(
            [_restrict(m, usable_everywhere) for m in run_maps], settings.model.fixed_effects
        )
        _write_maps(
            folder,
            subject_entities,
            plan,
            combined,
            final_mask,
            affine,
            settings,
            sources[plan.label],
            "subject",
        )
    name = derivatives.bids_name(subject_entities, tuple(subject_entities), {}, "mask")
    derivatives.write_mask(folder / f"{name}.nii.gz", final_mask, affine)


def _restrict(maps: ContrastMaps, keep: np.ndarray) -> ContrastMaps:
    if keep.all():
        return maps
    fields = {k: getattr(maps, k)[keep] for k in ("effect", "variance", "stat", "z", "p")}
    return ContrastMaps(name=maps.name, stat_type=maps.stat_type, dof=maps.dof, **fields)


def run_participant_level(settings: Settings) -> None:
    """Discover, plan and fit every requested participant; write BIDS derivatives."""
    runs = discover_runs(settings)
    units = plan_units(runs, settings.model)
    settings.output_dir.mkdir(parents=True, exist_ok=True)
    for index, unit in enumerate(units, start=1):
        what = " ".join(f"{k}-{v}" for k, v in unit.entities.items())
        LOGGER.info(
            "[%d/%d] %s: %d run(s), %d contrast(s)",
            index,
            len(units),
            what,
            len(unit.designs),
            len(unit.contrasts),
        )
        analyse_unit(unit, settings)
    derivatives.write_dataset_description(settings.output_dir, settings.bids_dir)
    LOGGER.info("outputs written to %s", settings.output_dir)
