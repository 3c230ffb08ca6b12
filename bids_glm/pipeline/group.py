"""The ``group`` analysis level: group t tests on the participants' fixed-effects maps.

For every (task, space, contrast label) among the participants' subject-level t contrasts
(their ``effect`` and ``variance`` maps and masks; F contrasts are skipped with a log
message), the subjects' ``effect`` maps are fitted by OLS (:mod:`bids_glm.glm.group`) and
written to ``OUTPUT_DIR/group/`` with task and space entities (names from
:mod:`bids_glm.derivatives.naming`):

* maps ``effect, variance, t, z, p`` of contrast ``<c>``: the intercept, i.e. the group mean
  (one-sample t), or with covariates the mean of the reference level(s) at the mean of the
  numeric covariates;
* maps of contrast ``<c>By<Column>``: one t contrast per covariate column of the design
  (``age`` -> ``faceByAge``; the dummy ``sex_M`` -> ``faceBySexM``, i.e. the two-sample
  difference M minus the reference level F);
* the group mask (the subjects' masks combined with ``mask_rule``: ``intersection`` or
  ``fraction:F``) and the design table over every subject used for that task and space.

Subjects are left out, with a warning that names them, when they lack a contrast that other
subjects have, when their fixed-effects dof is below 1, or when a covariate used is missing
(``n/a``, or no row in participants.tsv). A subject with several sessions contributes their
precision-weighted (fixed-effects) combination; its mask is the intersection of the sessions'.
Maps may be volumes, GIfTI hemisphere pairs or CIFTI grayordinates: each is read as a
vector over its geometry's locations (:mod:`bids_glm.image.map_files`), and the group maps
are written through that geometry, so they have the participants' kind and extension.
A contrast with too few subjects for its design (``n - columns < 1``, or a covariate left with
one value among its subjects) is skipped with a warning. An ``InputError`` is raised, before
anything is written for that task, for unusable input (no participant maps, a covariate absent
from participants.tsv or constant over all the task's subjects, maps on different grids), and
at the end when no group map at all could be written.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bids_glm import __version__
from bids_glm.derivatives import naming
from bids_glm.derivatives.files import MapWriter, write_mask, write_tsv
from bids_glm.errors import InputError
from bids_glm.glm.group import (
    INTERCEPT,
    GroupDesign,
    contrast_label,
    contrast_weights,
    design_from_covariates,
    fit_group,
    precision_weighted_mean,
)
from bids_glm.image.map_files import Geometry, read_map, same_locations
from bids_glm.image.mask import combine_masks
from bids_glm.image.mask_rule import INTERSECTION, MaskRule
from bids_glm.inputs.participants import categorical_columns, read_covariates, usable_subjects
from bids_glm.inputs.smdl.graph import dataset_contrasts
from bids_glm.settings import Settings

LOGGER = logging.getLogger("bids_glm")
GROUP_MAPS = ("effect", "variance", "t", "z", "p")


@dataclass(frozen=True)
class GroupOptions:
    """What the group level reads and writes (see :func:`run_group_level`)."""

    participant_outputs: Path
    output_dir: Path
    bids_dir: Path
    participant_labels: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    covariates: tuple[str, ...] = ()
    mask_rule: MaskRule = INTERSECTION
    contrast_names: frozenset[str] | None = None  # --model's Dataset nodes: these only


@dataclass(frozen=True)
class SubjectMap:
    """One participant's fixed-effects t contrast (one session)."""

    subject: str
    session: str | None
    effect_path: Path
    variance_path: Path
    mask_path: Path
    name: str
    dof: float
    original_labels: dict[str, str] = field(default_factory=dict)  # entity -> unshortened


def _read_sidecar(path: Path) -> dict:
    sidecar = naming.sidecar_path(naming.map_part_files(path)[0])
    try:
        return json.loads(sidecar.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"{sidecar}: expected the map's JSON sidecar ({err})") from None


def find_subject_maps(
    options: GroupOptions,
) -> dict[tuple[str, str, str, str], list[SubjectMap]]:
    """Subject-level t-contrast maps keyed by (task, space, density, contrast label).

    Volumes, surfaces (GIfTI pairs) and grayordinates (CIFTI) alike; the density is empty
    but for CIFTI maps (``den-91k``).
    """
    root = Path(options.participant_outputs)
    wanted_subjects = {label.removeprefix("sub-") for label in options.participant_labels}
    found: dict[tuple[str, str, str, str], list[SubjectMap]] = defaultdict(list)
    skipped_f: set[str] = set()
    for entities, path in naming.find_subject_stat_maps(root, "effect"):
        if wanted_subjects and entities["sub"] not in wanted_subjects:
            continue
        if options.tasks and entities["task"] not in map(naming.short_label, options.tasks):
            continue
        sidecar = _read_sidecar(path)
        names = options.contrast_names
        if names is not None and sidecar.get("ContrastName", entities["contrast"]) not in names:
            continue
        if sidecar.get("Test", "t") != "t":
            skipped_f.add(entities["contrast"])
            continue
        base = {k: v for k, v in entities.items() if k not in ("contrast", "stat")}
        key = (*(entities["task"], entities.get("space", "")), entities.get("den", ""))
        key = (*key, entities["contrast"])
        extension = naming.parse_name(path).extension
        found[key].append(
            SubjectMap(
                subject=entities["sub"],
                session=entities.get("ses"),
                effect_path=path,
                variance_path=naming.with_extension(
                    naming.stat_map_path(
                        path.parent, base, "variance", contrast=entities["contrast"]
                    ),
                    extension,
                ),
                mask_path=naming.with_extension(naming.mask_path(path.parent, base), extension),
                name=sidecar.get("ContrastName", entities["contrast"]),
                dof=float(sidecar.get("DegreesOfFreedom", 0.0)),
                original_labels=dict(sidecar.get("OriginalLabels") or {}),
            )
        )
    if skipped_f:
        LOGGER.info("group level: F contrasts skipped (no group F test): %s", sorted(skipped_f))
    if not found:
        expected = naming.stat_map_path(root, {}, "effect", contrast="<label>")
        raise InputError(
            f"{root}: no participant fixed-effects t-contrast maps found (expected"
            f" sub-<label>/[ses-<label>/]func/*_{expected.name}"
            " written by the participant level"
            + (f" for participants {sorted(wanted_subjects)}" if wanted_subjects else "")
            + (f" and tasks {list(options.tasks)}" if options.tasks else "")
            + ")"
        )
    return dict(found)


def _read_on(path: Path, whole: Geometry | None) -> tuple[np.ndarray, Geometry]:
    """A map's values over all its locations; an error if they are not ``whole``'s."""
    values, found = read_map(naming.map_part_files(path))
    if whole is not None and not same_locations(found, whole):
        raise InputError(
            f"{path}: expected the locations of the other subjects' maps (the same voxel "
            "grid, vertex counts or CIFTI grayordinates)"
        )
    return values, found


@dataclass(frozen=True, eq=False)
class _TaskSpace:
    """The group mask over every location of one task and space, and what designs need.

    ``whole`` is the maps' geometry with every location; masks are flat over it.
    """

    mask: np.ndarray
    whole: Geometry
    subject_masks: dict[str, np.ndarray]
    covariates: pd.DataFrame | None
    categorical: set[str]


def _subject_mask(maps: list[SubjectMap], whole: Geometry | None) -> tuple[np.ndarray, Geometry]:
    masks = []
    for item in maps:
        values, whole = _read_on(item.mask_path, whole)
        masks.append(np.isfinite(values) & (values != 0))
    return np.logical_and.reduce(masks), whole


def _prepare_task_space(by_subject, options, covariates, categorical, what) -> _TaskSpace:
    subject_masks: dict[str, np.ndarray] = {}
    whole = None
    for subject, maps in sorted(by_subject.items()):
        subject_masks[subject], whole = _subject_mask(maps, whole)
    group_mask = combine_masks(list(subject_masks.values()), options.mask_rule)
    if not group_mask.any():
        raise InputError(f"{what}: the group mask ({options.mask_rule}) is empty")
    return _TaskSpace(group_mask, whole, subject_masks, covariates, categorical)


def _subject_effect(items: list[SubjectMap], mask: np.ndarray, whole: Geometry) -> np.ndarray:
    """A subject's effect in the mask: its one session's, or the sessions' fixed effects."""
    effects = [_read_on(i.effect_path, whole)[0][mask] for i in items]
    if len(effects) == 1:
        return effects[0]
    variances = [_read_on(i.variance_path, whole)[0][mask] for i in items]
    return precision_weighted_mean(np.array(effects), np.array(variances))[0]


def _contrast_subjects(what, maps, space_data, all_subjects) -> dict[str, list[SubjectMap]]:
    """Maps per usable subject; subjects with dof < 1 or lacking the contrast are warned of."""
    by_subject: dict[str, list[SubjectMap]] = defaultdict(list)
    for item in maps:
        if item.dof < 1:
            LOGGER.warning("%s: sub-%s left out: its dof is %g", what, item.subject, item.dof)
        elif item.subject in space_data.subject_masks:
            by_subject[item.subject].append(item)
    missing = [f"sub-{s}" for s in sorted(set(all_subjects) - set(by_subject))]
    if missing:
        LOGGER.warning("%s: participants %s lack this contrast and are left out", what, missing)
    return dict(sorted(by_subject.items()))


def _sidecar(name: str, column: str, design: GroupDesign, sources: list[str], options) -> dict:
    return {
        "ContrastName": name if column == INTERCEPT else f"{name} by {column}",
        "ContrastWeights": {column: 1.0},
        "Test": "t",
        "DegreesOfFreedom": float(len(design.subjects) - len(design.columns)),
        "Level": "group",
        "Subjects": [f"sub-{s}" for s in design.subjects],
        "Covariates": list(design.covariates),
        "DesignMatrix": design.column_mapping(),
        "MaskRule": str(options.mask_rule),
        "Sources": sources,
        "SoftwareName": "bids-glm",
        "SoftwareVersion": __version__,
    }


def _fit_contrast(entities, label, maps, space_data: _TaskSpace, options, all_subjects):
    """Fit and write one contrast; returns the written paths (none if it cannot be fitted)."""
    what = " ".join(f"{k}-{v}" for k, v in entities.items()) + f" contrast-{label}"
    by_subject = _contrast_subjects(what, maps, space_data, all_subjects)
    try:
        design = design_from_covariates(
            list(by_subject), space_data.covariates, space_data.categorical
        )
    except ValueError as err:
        LOGGER.warning("%s: %s; no group maps written", what, err)
        return []
    if len(by_subject) < 2 or len(by_subject) - len(design.columns) < 1:
        LOGGER.warning(
            "%s: %d usable participants for %d design columns; no group maps written",
            *(what, len(by_subject), len(design.columns)),
        )
        return []
    mask, whole = space_data.mask, space_data.whole
    geometry, writer = whole.restricted(mask), MapWriter()
    effects = np.array([_subject_effect(items, mask, whole) for items in by_subject.values()])
    present = np.array([space_data.subject_masks[s][mask] for s in by_subject])
    weights = contrast_weights(design.columns)
    results = fit_group(design.matrix, effects, np.array(list(weights.values())), present)
    root = Path(options.participant_outputs)
    sources = sorted(
        i.effect_path.relative_to(root).as_posix() for m in by_subject.values() for i in m
    )
    written = []
    for column, result in zip(weights, results, strict=True):
        out_label = contrast_label(label, column)
        if not result.valid.any():
            LOGGER.warning("%s: %s not estimable at any voxel; not written", what, out_label)
            continue
        sidecar = _sidecar(maps[0].name, column, design, sources, options)
        originals = {k: v for k, v in maps[0].original_labels.items() if k in entities}
        sidecar.update({"OriginalLabels": originals} if originals else {})
        sidecar["ContrastLabel"] = out_label
        lowest_dof = float(result.dof[result.valid].min())
        if lowest_dof < sidecar["DegreesOfFreedom"]:
            sidecar["DegreesOfFreedomMinimum"] = lowest_dof
        for stat in GROUP_MAPS:
            path = naming.stat_map_path(options.output_dir, entities, stat, contrast=out_label)
            values = getattr(result, stat)
            writer.write_map(path, values, geometry, {**sidecar, "Statistic": stat})
            written.append(path)
    return written


def run_group_level(options: GroupOptions) -> list[Path]:
    """Run the group level over every participant contrast found.

    Parameters
    ----------
    options : GroupOptions

    Returns
    -------
    list of Path
        The group maps written, by the name the pipeline gives them (a NIfTI name; surface
        maps are written per hemisphere and CIFTI maps as ``.dscalar.nii`` beside it, see
        ``naming.geometry_file_path``); their sidecars, masks and designs are not listed.

    Raises
    ------
    InputError
        No participant maps, participants.tsv unusable or lacking a covariate, maps or masks
        on different grids, a covariate constant over the subjects, an empty group mask, or
        no contrast with enough participants for its design.
    """
    found = find_subject_maps(options)
    covariates = read_covariates(options.bids_dir, options.covariates)
    categorical = categorical_columns(options.bids_dir, options.covariates)
    by_task_space: dict[tuple[str, str, str], dict[str, list[SubjectMap]]] = defaultdict(dict)
    for (task, space, density, label), maps in sorted(found.items()):
        by_task_space[(task, space, density)][label] = maps
    written: list[Path] = []
    for (task, space, density), contrasts in by_task_space.items():
        what = f"task-{task}" + (f" space-{space}" if space else "")
        what += f" den-{density}" if density else ""
        subjects = sorted({m.subject for maps in contrasts.values() for m in maps})
        usable = usable_subjects(subjects, covariates, what)
        by_subject: dict[str, list[SubjectMap]] = {}
        for maps in contrasts.values():
            for item in maps:
                if item.subject in usable:
                    by_subject.setdefault(item.subject, [])
                    if item.session not in {m.session for m in by_subject[item.subject]}:
                        by_subject[item.subject].append(item)
        if len(by_subject) < 2:
            LOGGER.warning("%s: fewer than 2 usable participants; no group maps", what)
            continue
        try:
            design = design_from_covariates(sorted(by_subject), covariates, categorical)
        except ValueError as err:
            raise InputError(f"{what}: {err}") from None
        space_data = _prepare_task_space(by_subject, options, covariates, categorical, what)
        entities = naming.group_level_entities(task, space, density)
        write_mask(
            naming.mask_path(options.output_dir, entities),
            space_data.whole.restricted(space_data.mask),
        )
        write_tsv(naming.design_path(options.output_dir, entities), design.table())
        for label, maps in contrasts.items():
            usable_maps = [m for m in maps if m.subject in by_subject]
            written += _fit_contrast(entities, label, usable_maps, space_data, options, usable)
    if not written:
        raise InputError(
            f"{options.participant_outputs}: no group map could be written (see the warnings:"
            " each contrast needs at least 2 participants and more participants than design"
            " columns)"
        )
    return written


def group_options(settings: Settings) -> GroupOptions:
    """What the group level of this invocation reads and writes."""
    return GroupOptions(
        participant_outputs=settings.participant_outputs or settings.output_dir,
        output_dir=naming.group_dir(settings.output_dir),
        bids_dir=settings.bids_dir,
        participant_labels=settings.participant_labels,
        tasks=settings.tasks,
        covariates=settings.group_covariates,
        mask_rule=settings.mask_combine,
        contrast_names=(
            None if settings.stats_model is None else dataset_contrasts(settings.stats_model)
        ),
    )
