"""The ``group`` analysis level: group t tests on the participants' fixed-effects maps.

For every (task, space, contrast label) among the participants' subject-level t contrasts
(``sub-<s>/[ses-<x>/]func/sub-<s>[_ses-<x>]_task-<t>_space-<sp>_contrast-<c>_stat-effect_statmap``;
F contrasts are skipped with a log message), the subjects' ``effect`` maps are fitted by OLS
(:mod:`bids_glm.glm.group`) and written to ``OUTPUT_DIR/group/``:

* ``task-<t>_space-<sp>_contrast-<c>_stat-<effect|variance|t|z|p>_statmap.nii.gz`` (+ JSON): the
  intercept, i.e. the group mean (one-sample t), or with covariates the mean of the reference
  level(s) at the mean of the numeric covariates;
* ``task-<t>_space-<sp>_contrast-<c>By<Column>_stat-...``: one t contrast per covariate column
  of the design (``age`` -> ``faceByAge``; the dummy ``sex_M`` -> ``faceBySexM``, i.e. the
  two-sample difference M minus the reference level F);
* ``task-<t>_space-<sp>_mask.nii.gz``: the group mask, the subjects' masks combined with
  ``mask_rule`` (``intersection`` or ``fraction:F``), and ``task-<t>_space-<sp>_design.tsv``:
  the design over every subject used for that task and space.

Subjects are left out, with a warning that names them, when they lack a contrast that other
subjects have, when their fixed-effects dof is below 1, or when a covariate used is missing
(``n/a``, or no row in participants.tsv). A subject with several sessions contributes their
precision-weighted (fixed-effects) combination; its mask is the intersection of the sessions'.
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bids_glm import __version__
from bids_glm.derivatives import files as derivatives
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
from bids_glm.image.mask import (
    combine_masks,
    load_image,
    load_mask,
    same_grid,
)
from bids_glm.image.mask_rule import INTERSECTION, MaskRule

LOGGER = logging.getLogger("bids_glm")
GROUP_MAPS = ("effect", "variance", "t", "z", "p")
SUBJECT_MAP_KEYS = {"sub", "ses", "task", "space", "contrast", "stat"}
MAP_SUFFIX = "_statmap.nii.gz"


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


def _entities(filename: str) -> dict[str, str] | None:
    """Entities of a subject-level statmap name, None for other files (e.g. run level)."""
    pairs = [part.split("-", 1) for part in filename[: -len(MAP_SUFFIX)].split("_")]
    if any(len(pair) != 2 for pair in pairs):
        return None
    entities = dict(pairs)
    if set(entities) - SUBJECT_MAP_KEYS or not {"sub", "task", "contrast"} <= set(entities):
        return None
    return entities


def _read_sidecar(path: Path) -> dict:
    sidecar = path.with_name(path.name.replace(".nii.gz", ".json"))
    try:
        return json.loads(sidecar.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"{sidecar}: expected the map's JSON sidecar ({err})") from None


def find_subject_maps(options: GroupOptions) -> dict[tuple[str, str, str], list[SubjectMap]]:
    """Subject-level t-contrast maps keyed by (task, space, contrast label)."""
    root = Path(options.participant_outputs)
    wanted_subjects = {label.removeprefix("sub-") for label in options.participant_labels}
    found: dict[tuple[str, str, str], list[SubjectMap]] = defaultdict(list)
    skipped_f: set[str] = set()
    paths = [*root.glob(f"sub-*/func/*_stat-effect{MAP_SUFFIX}")]
    paths += root.glob(f"sub-*/ses-*/func/*_stat-effect{MAP_SUFFIX}")
    for path in sorted(paths):
        entities = _entities(path.name)
        if entities is None:
            continue
        if wanted_subjects and entities["sub"] not in wanted_subjects:
            continue
        if options.tasks and entities["task"] not in options.tasks:
            continue
        sidecar = _read_sidecar(path)
        names = options.contrast_names
        if names is not None and sidecar.get("ContrastName", entities["contrast"]) not in names:
            continue
        if sidecar.get("Test", "t") != "t":
            skipped_f.add(entities["contrast"])
            continue
        base = {k: v for k, v in entities.items() if k not in ("contrast", "stat")}
        mask_name = derivatives.bids_name(base, ("sub", "ses", "task", "space"), {}, "mask")
        key = (entities["task"], entities.get("space", ""), entities["contrast"])
        found[key].append(
            SubjectMap(
                subject=entities["sub"],
                session=entities.get("ses"),
                effect_path=path,
                variance_path=path.with_name(path.name.replace("stat-effect", "stat-variance")),
                mask_path=path.parent / f"{mask_name}.nii.gz",
                name=sidecar.get("ContrastName", entities["contrast"]),
                dof=float(sidecar.get("DegreesOfFreedom", 0.0)),
            )
        )
    if skipped_f:
        LOGGER.info("group level: F contrasts skipped (no group F test): %s", sorted(skipped_f))
    if not found:
        raise InputError(
            f"{root}: no participant fixed-effects t-contrast maps found (expected"
            f" sub-<label>/[ses-<label>/]func/*_contrast-<label>_stat-effect{MAP_SUFFIX}"
            " written by the participant level"
            + (f" for participants {sorted(wanted_subjects)}" if wanted_subjects else "")
            + (f" and tasks {list(options.tasks)}" if options.tasks else "")
            + ")"
        )
    return dict(found)


def read_covariates(bids_dir: Path, covariates: tuple[str, ...]) -> pd.DataFrame | None:
    """participants.tsv columns ``covariates`` indexed by label (no ``sub-``); n/a as NaN."""
    if not covariates:
        return None
    path = Path(bids_dir) / "participants.tsv"
    try:
        table = pd.read_csv(path, sep="\t", dtype=str, na_values=["n/a"], keep_default_na=False)
    except (OSError, pd.errors.ParserError) as err:
        raise InputError(f"{path}: needed for --group-covariates, not readable ({err})") from None
    absent = [name for name in ("participant_id", *covariates) if name not in table.columns]
    if absent:
        raise InputError(
            f"{path}: no column {absent}; expected participant_id and the covariates"
            f" {list(covariates)}; columns present: {list(table.columns)}"
        )
    table.index = table["participant_id"].str.removeprefix("sub-")
    return table[list(covariates)]


def categorical_columns(bids_dir: Path, covariates: tuple[str, ...]) -> set[str]:
    """Covariates that participants.json declares categorical (a ``Levels`` entry)."""
    path = Path(bids_dir) / "participants.json"
    try:
        described = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return set()
    return {
        name
        for name in covariates
        if isinstance(described.get(name), dict) and "Levels" in described[name]
    }


def usable_subjects(subjects: list[str], covariates: pd.DataFrame | None, what: str) -> list[str]:
    """Subjects with every covariate present; the others are named in a warning."""
    if covariates is None:
        return subjects
    complete = set(covariates.index[covariates.notna().all(axis=1)])
    lacking = [s for s in subjects if s not in complete]
    if lacking:
        LOGGER.warning(
            "%s: participants %s left out: a covariate (%s) is n/a or they have no row in"
            " participants.tsv",
            what,
            [f"sub-{s}" for s in lacking],
            ", ".join(covariates.columns),
        )
    return [s for s in subjects if s in complete]


def _load_values(path: Path, shape, affine, mask: np.ndarray) -> np.ndarray:
    image = load_image(path)
    if not same_grid(image.shape, image.affine, shape, affine):
        raise InputError(f"{path}: expected the voxel grid {shape} of the other subjects' maps")
    data = np.asanyarray(image.dataobj, dtype=np.float64).reshape(shape)
    return data[mask]


@dataclass(frozen=True)
class _TaskSpace:
    """The group mask and grid of one task and space, and what designs are built from."""

    mask: np.ndarray
    affine: np.ndarray
    subject_masks: dict[str, np.ndarray]
    covariates: pd.DataFrame | None
    categorical: set[str]


def _subject_mask(maps: list[SubjectMap], grid: tuple | None) -> tuple[np.ndarray, np.ndarray]:
    masks = []
    for item in maps:
        mask, affine = load_mask(item.mask_path)
        if not same_grid(mask.shape, affine, *(grid or (mask.shape, affine))):
            raise InputError(f"{item.mask_path}: expected the voxel grid of the other subjects")
        masks.append(mask)
    return np.logical_and.reduce(masks), affine


def _prepare_task_space(by_subject, options, covariates, categorical, what) -> _TaskSpace:
    subject_masks: dict[str, np.ndarray] = {}
    grid = None
    for subject, maps in sorted(by_subject.items()):
        subject_masks[subject], affine = _subject_mask(maps, grid)
        grid = grid or (subject_masks[subject].shape, affine)
    group_mask = combine_masks(list(subject_masks.values()), options.mask_rule)
    if not group_mask.any():
        raise InputError(f"{what}: the group mask ({options.mask_rule}) is empty")
    return _TaskSpace(group_mask, grid[1], subject_masks, covariates, categorical)


def _subject_effect(items: list[SubjectMap], mask: np.ndarray, affine) -> np.ndarray:
    """A subject's effect in the mask: its one session's, or the sessions' fixed effects."""
    effects = [_load_values(i.effect_path, mask.shape, affine, mask) for i in items]
    if len(effects) == 1:
        return effects[0]
    variances = [_load_values(i.variance_path, mask.shape, affine, mask) for i in items]
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
    mask, affine = space_data.mask, space_data.affine
    effects = np.array([_subject_effect(items, mask, affine) for items in by_subject.values()])
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
        sidecar["ContrastLabel"] = out_label
        lowest_dof = float(result.dof[result.valid].min())
        if lowest_dof < sidecar["DegreesOfFreedom"]:
            sidecar["DegreesOfFreedomMinimum"] = lowest_dof
        for stat in GROUP_MAPS:
            extra = {"contrast": out_label, "stat": stat}
            path = Path(options.output_dir) / (
                derivatives.bids_name(entities, ("task", "space"), extra, "statmap") + ".nii.gz"
            )
            values = getattr(result, stat)
            derivatives.write_map(path, values, mask, affine, {**sidecar, "Statistic": stat})
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
        The group statmaps written (NIfTI files; their JSON sidecars, the masks and design
        tables beside them are not listed).

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
    by_task_space: dict[tuple[str, str], dict[str, list[SubjectMap]]] = defaultdict(dict)
    for (task, space, label), maps in sorted(found.items()):
        by_task_space[(task, space)][label] = maps
    written: list[Path] = []
    for (task, space), contrasts in by_task_space.items():
        what = f"task-{task}" + (f" space-{space}" if space else "")
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
        entities = {"task": task, **({"space": space} if space else {})}
        prefix = derivatives.bids_name(entities, ("task", "space"), {}, "")
        derivatives.write_mask(
            Path(options.output_dir) / f"{prefix}mask.nii.gz", space_data.mask, space_data.affine
        )
        derivatives.write_tsv(Path(options.output_dir) / f"{prefix}design.tsv", design.table())
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
