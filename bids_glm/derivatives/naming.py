"""Every output name and folder bids-glm writes: built here, and parsed back here.

No other module spells an output suffix (``statmap``, ``design``, ``clusters``, ``mask``,
``boldref``) or a folder of OUTPUT_DIR: they ask this module for the path of what they
write or read. Names follow BIDS-Derivatives (statistical-model outputs)::

    sub-<s>/[ses-<x>/]func/sub-<s>[_ses-<x>]_task-<t>[_run-<r>]_space-<sp>_contrast-<c>
        _stat-<stat>_statmap.nii.gz  (one name; run-level with the run entity)
    sub-<s>/[ses-<x>/]func/sub-<s>[_ses-<x>]_task-<t>_run-<r>_space-<sp>_design.tsv
    sub-<s>/[ses-<x>/]func/sub-<s>[_ses-<x>]_task-<t>_space-<sp>_desc-<c>_clusters.tsv
    sub-<s>/[ses-<x>/]func/sub-<s>[_ses-<x>]_task-<t>_space-<sp>_mask.nii.gz
    sub-<s>/[ses-<x>/]func/sub-<s>[_ses-<x>]_task-<t>_space-<sp>_desc-mean_boldref.nii.gz
    group/task-<t>_space-<sp>_contrast-<c>_stat-<stat>_statmap.nii.gz  (+ design, mask)
    logs/manifests/sub-<s>[_ses-<x>]_task-<t>[_space-<sp>].json
    sub-<s>.html, group.html  (+ .pdf)

Every map and table has a JSON sidecar of the same stem (:func:`sidecar_path`).

File names must fit the 255-byte limit of file systems, with room for the temporary name
an atomic write uses (``.<name>.XXXXXXXX.tmp``). Labels longer than
:data:`MAX_LABEL_BYTES` (real datasets have 74-character task names and trial types that
are sentences) are shortened in every name the same way: their first bytes and a hash of
the whole label (:func:`short_label`), so the same inputs give the same names on every run,
a shortened label is its own short form (names parsed back build the same names), and
:func:`original_labels` tells the sidecars what each shortened label stood for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bids_glm.derivatives.name_limits import (
    MAX_LABEL_BYTES,
    checked_file,
    original_labels,
    short_label,
)
from bids_glm.inputs.entities import split_name

__all__ = ["MAX_LABEL_BYTES", "original_labels", "short_label"]  # re-exported: names use them

RUN_LEVEL_ENTITIES = (
    *("sub", "ses", "task", "acq", "ce", "rec", "dir", "run", "echo", "space"),
    "den",  # CIFTI grayordinates: den-91k, den-170k
)
SUBJECT_LEVEL_ENTITIES = ("sub", "ses", "task", "space", "den")
GROUP_FOLDER = "group"
LOGS_FOLDER = "logs"
MANIFEST_FOLDER = Path(LOGS_FOLDER) / "manifests"
EFFECTIVE_MODEL_NAME = "bidsglm"
CITATION_FORMATS = ("md", "html", "tex", "bib")  # logs/CITATION.<format>, in writing order
FIGURES_FOLDER = "figures"
NIFTI = ".nii.gz"
GIFTI = ".func.gii"
CIFTI_SCALAR = ".dscalar.nii"
TSV = ".tsv"
JSON = ".json"
# The output folder's README.md: what the names mean.
OUTPUT_README = """# bids-glm first-level statistics

Derivatives written by bids-glm: per-run design matrices (`*_design.tsv` + `.json`),
run-level and fixed-effects statistical maps (`*_statmap.nii.gz` + `.json`, one per
contrast and statistic) and analysis masks, in `sub-<label>/[ses-<label>/]func/`.
Each sidecar records the contrast, its weights per design column, the test, the degrees
of freedom and the input files (as BIDS URIs, see `DatasetLinks` in
`dataset_description.json`). The methods text with references is in `logs/`.
"""
# Outputs the BIDS specification does not (yet) define, hidden from the validator.
BIDS_IGNORED = (
    "*_statmap.nii.gz",
    "*_statmap.func.gii",
    "*_statmap.dscalar.nii",
    "*_statmap.json",
    "*_design.tsv",
    "*_design.json",
    "*_clusters.tsv",
    "*_clusters.json",
    "*_smdl.json",
    "*_mask.nii.gz",
    "*_mask.func.gii",
    "*_mask.dscalar.nii",
    "*_boldref.nii.gz",
    "*_boldref.json",
    "*_betaseries.nii.gz",
    "*_betaseries.func.gii",
    "*_betaseries.dscalar.nii",
    "*_betaseries.json",
    "*_betaseries.tsv",
    "*.html",
    "*.pdf",
    f"{LOGS_FOLDER}/",
    f"{FIGURES_FOLDER}/",
)
_STATMAP = "statmap"
_DESIGN = "design"
_CLUSTERS = "clusters"
_MASK = "mask"
_BOLDREF = "boldref"
_BETASERIES = "betaseries"
_SUBJECT_MAP_KEYS = frozenset({*SUBJECT_LEVEL_ENTITIES, "contrast", "stat"})


@dataclass(frozen=True)
class OutputName:
    """A file name split into its entities (in name order), suffix and extension."""

    entities: dict[str, str]
    suffix: str
    extension: str


def parse_name(path: Path | str) -> OutputName:
    """Split an output file name (``sub-01_task-x_stat-z_statmap.nii.gz``) into its parts."""
    entities, suffix, extension = split_name(path)
    return OutputName(entities, suffix, extension)


def select_entities(entities: Mapping[str, str], keys: tuple[str, ...]) -> dict[str, str]:
    """The ``keys`` present in ``entities``, in the order of ``keys``."""
    return {k: entities[k] for k in keys if k in entities}


def run_level_entities(entities: Mapping[str, str]) -> dict[str, str]:
    """Entities of a run's output names, in BIDS order."""
    return select_entities(entities, RUN_LEVEL_ENTITIES)


def subject_level_entities(entities: Mapping[str, str]) -> dict[str, str]:
    """Entities of a participant's fixed-effects output names: sub, ses, task, space."""
    return select_entities(entities, SUBJECT_LEVEL_ENTITIES)


def group_level_entities(
    task: str, space: str | None, density: str | None = None
) -> dict[str, str]:
    """Entities of the group level's output names: task, space (and a CIFTI density)."""
    return {
        "task": task,
        **({"space": space} if space else {}),
        **({"den": density} if density else {}),
    }


def unit_name(entities: Mapping[str, str]) -> str:
    """``sub-<s>[_ses-<x>]_task-<t>[_space-<sp>]``: one participant's task in one space."""
    return _stem(subject_level_entities(entities), {}, "")


def entities_text(entities: Mapping[str, str]) -> str:
    """Entities joined as in file names (``sub-01_task-x``), e.g. for HTML anchors."""
    return _stem(entities, {}, "")


def _stem(entities: Mapping[str, str], extra: Mapping[str, str], suffix: str) -> str:
    parts = [f"{k}-{short_label(v)}" for k, v in (*entities.items(), *extra.items())]
    return "_".join([*parts, suffix] if suffix else parts)


def subject_func_dir(output_dir: Path, entities: Mapping[str, str]) -> Path:
    """``OUTPUT_DIR/sub-<s>[/ses-<x>]/func``."""
    folder = Path(output_dir) / f"sub-{short_label(entities['sub'])}"
    if "ses" in entities:
        folder = folder / f"ses-{short_label(entities['ses'])}"
    return folder / "func"


def group_dir(output_dir: Path) -> Path:
    """``OUTPUT_DIR/group``: the group level's maps, masks and designs."""
    return Path(output_dir) / GROUP_FOLDER


def logs_dir(output_dir: Path) -> Path:
    """``OUTPUT_DIR/logs``: the methods text and the manifests."""
    return Path(output_dir) / LOGS_FOLDER


def citation_path(output_dir: Path, fmt: str) -> Path:
    """``OUTPUT_DIR/logs/CITATION.<fmt>``: the methods text (md, html, tex) or its bib."""
    return logs_dir(output_dir) / f"CITATION.{fmt}"


def manifests_dir(output_dir: Path) -> Path:
    """``OUTPUT_DIR/logs/manifests``."""
    return Path(output_dir) / MANIFEST_FOLDER


def manifest_path(output_dir: Path, entities: Mapping[str, str]) -> Path:
    """``OUTPUT_DIR/logs/manifests/sub-<s>[_ses-<x>]_task-<t>[_space-<sp>].json``."""
    return checked_file(manifests_dir(output_dir), unit_name(entities), JSON)


def effective_model_path(output_dir: Path) -> Path:
    """``OUTPUT_DIR/model-bidsglm_smdl.json``: the model that was run."""
    return Path(output_dir) / f"model-{EFFECTIVE_MODEL_NAME}_smdl{JSON}"


def report_path(
    output_dir: Path, participant_label: str | None = None, extension: str = ".html"
) -> Path:
    """``OUTPUT_DIR/sub-<label>.html``, or ``OUTPUT_DIR/group.html`` without a label; its
    PDF copy with ``extension=".pdf"``."""
    name = GROUP_FOLDER if participant_label is None else f"sub-{short_label(participant_label)}"
    return Path(output_dir) / f"{name}{extension}"


def stat_map_path(
    folder: Path,
    entities: Mapping[str, str],
    stat: str,
    *,
    contrast: str | None = None,
    desc: str | None = None,
) -> Path:
    """``<entities>[_contrast-<c>][_desc-<d>]_stat-<stat>_statmap.nii.gz`` in ``folder``."""
    extra = {"contrast": contrast, "desc": desc, "stat": stat}
    extra = {k: v for k, v in extra.items() if v is not None}
    return checked_file(folder, _stem(entities, extra, _STATMAP), NIFTI)


def design_path(folder: Path, entities: Mapping[str, str]) -> Path:
    """``<entities>_design.tsv`` in ``folder``."""
    return checked_file(folder, _stem(entities, {}, _DESIGN), TSV)


def clusters_path(folder: Path, entities: Mapping[str, str], contrast_label: str) -> Path:
    """``<entities>_desc-<label>_clusters.tsv`` in ``folder``."""
    return checked_file(folder, _stem(entities, {"desc": contrast_label}, _CLUSTERS), TSV)


def mask_path(folder: Path, entities: Mapping[str, str]) -> Path:
    """``<entities>_mask.nii.gz`` in ``folder``."""
    return checked_file(folder, _stem(entities, {}, _MASK), NIFTI)


def mean_image_path(folder: Path, entities: Mapping[str, str]) -> Path:
    """``<entities>_desc-mean_boldref.nii.gz`` in ``folder``."""
    return checked_file(folder, _stem(entities, {"desc": "mean"}, _BOLDREF), NIFTI)


def beta_series_path(
    folder: Path,
    entities: Mapping[str, str],
    condition_label: str,
    stat: str | None = None,
    extension: str = NIFTI,
) -> Path:
    """``<entities>[_stat-<stat>]_desc-<condition>_betaseries<extension>`` in ``folder``.

    One map per trial (the estimates; ``stat="t"``: their t statistics); with ``TSV``,
    the trials' table (one row per volume).
    """
    extra = ({"stat": stat} if stat else {}) | {"desc": condition_label}
    return checked_file(folder, _stem(entities, extra, _BETASERIES), extension)


def trial_design_path(folder: Path, entities: Mapping[str, str], estimator: str) -> Path:
    """``<entities>_desc-<estimator>_design.tsv`` in ``folder``: a run's single-trial design."""
    return checked_file(folder, _stem(entities, {"desc": estimator}, _DESIGN), TSV)


def sidecar_path(path: Path) -> Path:
    """The JSON sidecar of a ``.nii.gz``, ``.func.gii``, ``.dscalar.nii`` or ``.tsv`` output."""
    stem = path.name.removesuffix(NIFTI).removesuffix(GIFTI).removesuffix(TSV)
    stem = stem.removesuffix(CIFTI_SCALAR)
    return path.with_name(f"{stem}{JSON}")


def map_label(path: Path) -> str:
    """What a map holds, from its name: its ``stat`` (``z``), else ``desc``, else suffix."""
    name = parse_name(path)
    return name.entities.get("stat") or name.entities.get("desc") or name.suffix


def find_stat_maps(folder: Path, entities: Mapping[str, str], stat: str) -> list[tuple[str, Path]]:
    """``(contrast label, path)`` of the ``stat`` maps whose other entities are ``entities``.

    NIfTI, then GIfTI, then CIFTI maps, each sorted by file name. A GIfTI map is found
    once, by the name without ``hemi`` it is written under (:func:`map_part_files` gives
    its files). A run's maps are not a participant's: the entities must match exactly.
    """
    found = []
    for extension in (NIFTI, GIFTI, CIFTI_SCALAR):
        part = {"hemi": "L"} if extension == GIFTI else {}
        for path in sorted(Path(folder).glob(f"*_stat-{stat}_{_STATMAP}{extension}")):
            label = parse_name(path).entities.get("contrast")
            if label is None:
                continue
            nifti = stat_map_path(folder, entities, stat, contrast=label)
            logical = with_extension(nifti, extension)
            if path == geometry_file_path(logical, part, extension):
                found.append((label, logical))
    return found


def find_beta_series(folder: Path, entities: Mapping[str, str]) -> list[tuple[str, Path]]:
    """``(condition label, path)`` of a run's beta series (not t series), sorted by name.

    A GIfTI pair is found once, named without ``hemi`` (:func:`map_part_files` gives its files).
    """
    found = []
    for extension in (NIFTI, GIFTI, CIFTI_SCALAR):
        for path in sorted(Path(folder).glob(f"*_{_BETASERIES}{extension}")):
            name = parse_name(path)
            if extension == GIFTI and name.entities.pop("hemi", None) != "L":
                continue
            label = name.entities.get("desc")
            if label is None:
                continue
            logical = beta_series_path(folder, entities, label, extension=extension)
            if logical == checked_file(
                path.parent, _stem(name.entities, {}, name.suffix), extension
            ):
                found.append((label, logical))
    return sorted(found, key=lambda item: item[1].name)


def condition_z_map_path(series_path: Path) -> Path:
    """The run-level z map of the contrast named as a series' condition, of the same kind."""
    name = parse_name(series_path)
    entities = {k: v for k, v in name.entities.items() if k != "desc"}
    path = stat_map_path(series_path.parent, entities, "z", contrast=name.entities["desc"])
    return with_extension(path, name.extension)


def find_run_designs(folder: Path, unit_entities: Mapping[str, str]) -> list[Path]:
    """The run designs written in ``folder`` for a unit (same sub, ses, task and space)."""
    wanted = subject_level_entities(unit_entities)
    return [
        path
        for path in sorted(Path(folder).glob(f"*_{_DESIGN}{TSV}"))
        if subject_level_entities(parse_name(path).entities) == wanted
        and "desc" not in parse_name(path).entities  # single-trial designs are not run designs
    ]


def find_group_designs(output_dir: Path) -> list[Path]:
    """The group level's design tables (one per task and space)."""
    return sorted(group_dir(output_dir).glob(f"*_{_DESIGN}{TSV}"))


def find_subject_stat_maps(output_dir: Path, stat: str) -> list[tuple[dict[str, str], Path]]:
    """``(entities, path)`` of every participant-level (fixed-effects) ``stat`` map.

    Searches ``sub-*/func`` and ``sub-*/ses-*/func`` for NIfTI, GIfTI and CIFTI maps;
    run-level maps and files with other entities are left out. A surface map is found
    once, by its left hemisphere's file, as the name without ``hemi`` that the pipeline
    writes it under (:func:`map_part_files` gives its files back).
    """
    root = Path(output_dir)
    found = []
    for extension in (NIFTI, GIFTI, CIFTI_SCALAR):
        pattern = f"*_stat-{stat}_{_STATMAP}{extension}"
        paths = [*root.glob(f"sub-*/func/{pattern}"), *root.glob(f"sub-*/ses-*/func/{pattern}")]
        for path in sorted(paths):
            name = parse_name(path)
            if extension == GIFTI and name.entities.pop("hemi", None) != "L":
                continue
            keys = set(name.entities)
            if keys <= _SUBJECT_MAP_KEYS and {"sub", "task", "contrast"} <= keys:
                logical = checked_file(
                    path.parent, _stem(name.entities, {}, name.suffix), extension
                )
                found.append((name.entities, logical))
    return sorted(found, key=lambda item: item[1])


def map_part_files(path: Path) -> list[Path]:
    """The files of a map named ``path`` (as written): one per hemisphere for ``.func.gii``."""
    if path.name.endswith(GIFTI):
        return [geometry_file_path(path, {"hemi": hemi}, GIFTI) for hemi in ("L", "R")]
    return [path]


def with_extension(path: Path, extension: str) -> Path:
    """``path`` with another extension (a mask or map beside a surface or CIFTI map)."""
    return geometry_file_path(path, {}, extension)


def run_label(design: Path) -> str | None:
    """``run-<r>`` of a run's design file, None when its name has no run entity."""
    run = parse_name(design).entities.get("run")
    return None if run is None else f"run-{run}"


def manifest_entities(manifest: Path) -> dict[str, str]:
    """Entities from a manifest's name (``sub-01_ses-1_task-x_space-y.json``)."""
    return parse_name(manifest).entities


def unit_files(
    output_dir: Path, entities: Mapping[str, str], *, hidden: bool = False
) -> list[Path]:
    """Files of a unit (participant, session, task, space) in its folder.

    With ``hidden``, the temporary ``.<name>.tmp`` files an interrupted write left instead.
    """
    folder = subject_func_dir(output_dir, entities)
    prefix = _stem(select_entities(entities, ("sub", "ses", "task")), {}, "")
    space = f"_space-{short_label(entities['space'])}_" if "space" in entities else ""
    pattern = f".{prefix}_*.tmp" if hidden else f"{prefix}_*"
    return [p for p in folder.glob(pattern) if space in p.name and p.is_file()]


# Entities a geometry adds to a map's name (a surface's hemisphere), placed before these.
_GEOMETRY_ENTITIES_BEFORE = ("space", "den", "res", "contrast", "desc", "stat")


def geometry_file_path(path: Path, extra: Mapping[str, str], extension: str) -> Path:
    """The file of one part of a map: ``path`` with ``extra`` entities and ``extension``.

    A volume's map is one file (no extra entity, ``.nii.gz``): ``path`` itself. A
    surface's map is one file per hemisphere: ``..._run-1_hemi-L_space-fsaverage5_...
    _statmap.func.gii``, the ``hemi`` entity before ``space`` as BIDS orders entities.
    """
    if not extra and path.name.endswith(extension):
        return path
    name = parse_name(path)
    entities = dict(name.entities)
    position = next(
        (i for i, key in enumerate(entities) if key in _GEOMETRY_ENTITIES_BEFORE), len(entities)
    )
    items = list(entities.items())
    items[position:position] = [(k, v) for k, v in extra.items() if k not in entities]
    return checked_file(path.parent, _stem(dict(items), {}, name.suffix), extension)


def is_cifti_map(path: Path) -> bool:
    """Whether ``path`` is a CIFTI-2 dense scalar map (``.dscalar.nii``)."""
    return parse_name(path).extension == CIFTI_SCALAR
