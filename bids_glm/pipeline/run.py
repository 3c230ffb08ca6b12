"""One run: fit it (:mod:`bids_glm.pipeline.run_fit`), write its design and run-level maps.

Runs in the participant's process, or in a worker process when runs go to a pool
(:mod:`bids_glm.runtime.workers`): everything it needs comes in as arguments and
everything the fixed effects need goes back in a :class:`RunOutcome`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from bids_glm.derivatives import maps as outputs
from bids_glm.derivatives import naming
from bids_glm.derivatives.files import MapWriter
from bids_glm.design.contrasts import missing_columns
from bids_glm.design.run_design import ContrastPlan, RunDesign
from bids_glm.glm.contrast import LazyContrasts, compute_contrast
from bids_glm.glm.results import ContrastMaps, RunFit
from bids_glm.image.geometry import VolumeGeometry
from bids_glm.pipeline.run_fit import fit_run_as_read
from bids_glm.pipeline.single_trial import estimate_single_trials, write_single_trials
from bids_glm.pipeline.subject_clusters import write_subject_clusters
from bids_glm.runtime.logs import captured_warnings
from bids_glm.settings import Settings

LOGGER = logging.getLogger("bids_glm")


@dataclass(frozen=True)
class SubjectLevel:
    """Where a one-run participant's subject-level maps go: they are its run's maps.

    Fixed effects of one run return that run, so its contrasts are written there too as they
    are computed (each image compressed once) with their cluster tables, instead of being
    formed again from the fit, recompressed and rewritten after the run.
    """

    folder: Path
    entities: dict[str, str]


@dataclass(frozen=True)
class RunOutcome:
    """What the fixed-effects step needs from one fitted run.

    Attributes
    ----------
    usable : ndarray of bool, shape (V,)
        In-mask voxels with finite, non-constant data in this run.
    maps : mapping of str to ContrastMaps
        Contrast label -> this run's maps as fixed effects need them (statistics dropped),
        possibly formed from the run's fit on access (`bids_glm.glm.contrast.LazyContrasts`);
        contrasts whose columns the run lacks are absent.
    source : str
        The run's BOLD file as a BIDS URI.
    design_path : Path
        The run's written design table.
    skipped_contrasts : dict of str to str
        Contrast name -> why this run does not contribute to it.
    warnings : list of str
        Warnings logged while the run was processed (possibly in a worker process).
    mean_volume : ndarray of float32, shape (x, y, z), or None
        Time-mean of the run's kept volumes before smoothing (the reports' underlay).
    """

    usable: np.ndarray
    maps: Mapping[str, ContrastMaps]
    source: str
    design_path: Path
    mean_volume: np.ndarray | None = None
    skipped_contrasts: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def process_run(
    design: RunDesign,
    contrasts: Sequence[ContrastPlan],
    geometry: VolumeGeometry,
    settings: Settings,
    writer: MapWriter | None = None,
    subject: SubjectLevel | None = None,
) -> RunOutcome:
    """Fit one run, write its design and run-level maps, return its contrast maps.

    Maps go to ``writer`` (the unit's, so they are compressed while the next run is read);
    without one (in a worker process), to a writer of the run's own. With ``subject`` (the
    participant has this run only), the subject-level maps and cluster tables are written
    too (and its mean image, first), and the outcome holds no maps for fixed effects.
    """
    own_writer = MapWriter(n_threads=1) if writer is None else nullcontext(writer)
    with captured_warnings() as messages, own_writer as run_writer:
        outcome = _process_run(design, contrasts, geometry, settings, run_writer, subject)
    outcome.warnings.extend(messages)
    return outcome


def _process_run(
    design: RunDesign,
    contrasts: Sequence[ContrastPlan],
    geometry: VolumeGeometry,
    settings: Settings,
    writer: MapWriter,
    subject: SubjectLevel | None,
) -> RunOutcome:
    entities = naming.run_level_entities(design.run.entities)
    folder = naming.subject_func_dir(settings.output_dir, entities)
    single_trial = settings.single_trial is not None
    fit, usable, mean_volume, data = fit_run_as_read(design, geometry, settings, single_trial)
    trials = estimate_single_trials(design, data, settings) if single_trial else None
    del data  # a held series is needed no further: released before any map is written
    design_path = outputs.write_design(design, folder, entities, settings)
    source = outputs.source_uri(design.run.bold_path, settings)
    if subject is not None and mean_volume is not None:  # first: compressed as maps are made
        outputs.write_mean_image(
            writer, subject.folder, subject.entities, [mean_volume], [source], geometry.affine
        )
    target = outputs.MapTarget(folder, entities, geometry, usable)
    if settings.model_maps:
        outputs.write_model_maps(writer, target, fit, source)
    provenance = outputs.Provenance(settings.model, (source,), "run")
    outcome = RunOutcome(
        usable=usable, maps={}, source=source, design_path=design_path, mean_volume=mean_volume
    )
    present = []
    for plan in contrasts:
        absent = missing_columns(plan.columns, list(design.matrix.columns))
        if absent:
            reason = f"column(s) {', '.join(absent)} absent from its design"
            LOGGER.warning("%s: contrast %s skipped, %s", design.run.label, plan.name, reason)
            outcome.skipped_contrasts[plan.name] = reason
        else:
            present.append(plan)
    also = ()
    if subject is not None:
        subject_target = outputs.MapTarget(subject.folder, subject.entities, geometry, usable)
        subject_provenance = outputs.Provenance(settings.model, (source,), "subject")
        also = ((subject_target, subject_provenance),)
    maps = _write_contrasts(fit, present, writer, target, provenance, also, settings)
    if trials is not None:
        write_single_trials(trials, target, source, settings)
    return replace(outcome, maps=maps)


def _write_contrasts(
    fit: RunFit,
    contrasts: Sequence[ContrastPlan],
    writer: MapWriter,
    target: outputs.MapTarget,
    provenance: outputs.Provenance,
    also: tuple[tuple[outputs.MapTarget, outputs.Provenance], ...],
    settings: Settings,
) -> Mapping[str, ContrastMaps]:
    """Compute and write each contrast's run-level maps; return what fixed effects take.

    That is the fit itself (`LazyContrasts`: beta, sigma2 and bins, p + 2 values per voxel)
    when p is at most the values per voxel of the contrasts' effects and variances, so
    none of those is held while the run's maps are written; otherwise those maps. With
    ``also`` (a one-run participant's subject level), the maps and their cluster tables
    are written there too, and nothing is returned.
    """
    weights = {plan.label: plan.weights_matrix(list(fit.column_names)) for plan in contrasts}
    n_kept = sum(2 * w.shape[0] + 1 if w.shape[0] > 1 else 2 for w in weights.values())
    lazy = fit.beta.shape[0] <= n_kept
    kept: dict[str, ContrastMaps] = {}
    for plan in contrasts:
        with np.errstate(divide="ignore", invalid="ignore"):
            maps = compute_contrast(fit, weights[plan.label], plan.stat_type, plan.name)
        outputs.write_contrast_maps(writer, target, plan, maps, provenance, also)
        for subject_target, _ in also:  # in the background, as the maps' compression
            writer.submit(write_subject_clusters, subject_target, plan, maps.z, settings)
        if not (lazy or also):
            kept[plan.label] = _inputs_of_fixed_effects(maps)
        del maps  # before the next contrast's are formed
    if also:
        return {}
    if not lazy:
        return kept
    nothing = np.broadcast_to(np.float64(0.0), fit.sigma2.shape)
    slim = replace(fit, ar1=None, r_squared=nothing)  # what the estimates do not use
    return LazyContrasts(
        slim, {plan.label: (weights[plan.label], plan.stat_type, plan.name) for plan in contrasts}
    )


def _inputs_of_fixed_effects(maps: ContrastMaps) -> ContrastMaps:
    """The run's maps without its statistics, which fixed effects recompute.

    stat, z and p become one shared zero-stride view, so a participant's memory grows by
    only the effect and variance (or F estimate) of each run, not five maps per contrast.
    """
    nothing = np.broadcast_to(np.float64(0.0), maps.stat.shape)
    return replace(maps, stat=nothing, z=nothing, p=nothing)
