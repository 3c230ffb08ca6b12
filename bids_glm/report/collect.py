"""Read what the participant level wrote into plain records for the report.

Nothing here fits or thresholds: it finds files by their BIDS-Derivatives names, reads
tables and sidecars, and records a short note for every piece that is missing or
unreadable, so that the report can say so instead of failing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd

from bids_glm.derivatives import naming
from bids_glm.derivatives.summary import RunUsed, UnitSummary
from bids_glm.image.mesh import MeshFiles


@dataclass(frozen=True)
class StatMap:
    """A contrast's z map at one level, with what its sidecar says.

    Attributes
    ----------
    label : str
        BIDS-safe contrast label (``contrast-<label>`` in the file name).
    z_path : Path
        The z map's file.
    sidecar : dict
        Its JSON sidecar (empty when unreadable).
    run : str or None
        The run label for run-level maps, None for fixed effects.
    clusters_path : Path or None
        Where the participant level writes the map's cluster table (fixed effects only).
    surface_paths : tuple of Path
        A GIfTI surface map's left and right files (``z_path`` is the left one); empty
        for a volume or a CIFTI map.
    """

    label: str
    z_path: Path
    sidecar: dict
    run: str | None = None
    clusters_path: Path | None = None
    surface_paths: tuple[Path, ...] = ()

    @property
    def on_surface(self) -> bool:
        """Whether the map is a GIfTI hemisphere pair or a CIFTI grayordinate map."""
        return bool(self.surface_paths) or naming.is_cifti_map(self.z_path)

    @property
    def anchor(self) -> str:
        """An HTML id: the map's entities but the statistic (``sub-01_..._contrast-face``)."""
        entities = naming.parse_name(self.z_path).entities
        return naming.entities_text({k: v for k, v in entities.items() if k != "stat"})

    @property
    def name(self) -> str:
        """The contrast's original name (its label when not recorded)."""
        return str(self.sidecar.get("ContrastName", self.label))


@dataclass(frozen=True)
class RunRecord:
    """One fitted run: its design, events, motion and contrasts.

    Attributes
    ----------
    label : str
        ``run-<r>`` (or the run's entities when it has no run entity).
    design_path : Path
        The run's design table.
    design : DataFrame or None
        The design matrix (rows after the dummy scans).
    metadata : dict
        The design table's JSON sidecar.
    events : DataFrame or None
        ``onset``, ``duration``, ``trial_type`` of the run's events file.
    framewise_displacement_mm : ndarray or None
        The ``framewise_displacement`` column of the confounds file (all volumes).
    z_maps : list of StatMap
        The run-level z maps.
    notes : list of str
        What could not be read, in words.
    trial_design_path : Path or None
        The run's single-trial (LSA) design, when ``--single-trial`` wrote one.
    beta_series : list of (str, Path)
        Condition label and beta series of each condition with trial-wise estimates.
    """

    label: str
    design_path: Path
    design: pd.DataFrame | None
    metadata: dict
    events: pd.DataFrame | None
    framewise_displacement_mm: np.ndarray | None
    z_maps: list[StatMap]
    notes: list[str] = field(default_factory=list)
    trial_design_path: Path | None = None
    beta_series: list[tuple[str, Path]] = field(default_factory=list)

    @property
    def contrast_weights(self) -> dict:
        """Contrast name -> weights over design columns, from the run-level sidecars."""
        return {m.name: m.sidecar.get("ContrastWeights", {}) for m in self.z_maps}

    @property
    def tr_s(self) -> float | None:
        """Repetition time in seconds, if recorded."""
        value = self.metadata.get("RepetitionTime")
        return float(value) if value else None

    @property
    def dummy_scans(self) -> int:
        """Volumes discarded at the start of the run."""
        return int(self.metadata.get("DummyScans") or 0)

    @property
    def censored_volumes(self) -> list[int]:
        """Censored volumes, indexed over all the run's volumes."""
        return [int(v) for v in self.metadata.get("CensoredVolumes") or []]

    @property
    def censored_rows(self) -> list[int]:
        """Censored volumes, indexed over the design matrix rows."""
        return [v - self.dummy_scans for v in self.censored_volumes if v >= self.dummy_scans]

    @property
    def scan_duration_s(self) -> float | None:
        """Duration of the whole run (dummy scans included), in seconds."""
        if self.tr_s is None or self.design is None:
            return None
        return (len(self.design) + self.dummy_scans) * self.tr_s


@dataclass(frozen=True)
class UnitRecord:
    """One participant, session, task and space: what the manifest and files record.

    Attributes
    ----------
    entities : dict
        ``sub``, optional ``ses``, ``task`` and optional ``space``.
    summary : UnitSummary
        The manifest's summary (fields an older manifest lacks are None).
    runs : list of RunRecord
    subject_maps : list of StatMap
        Fixed-effects z maps, by contrast label.
    run_maps : list of StatMap
        Run-level z maps.
    mask_path, mean_path : Path or None
        The analysis mask and the time-mean BOLD image (the underlay), if present.
    meshes : MeshFiles or None
        Surface data: the left and right meshes the manifest records, if both exist.
    surface_mask_paths : tuple of Path
        Surface data: the analysed vertices' left and right GIfTI masks (both), or the
        CIFTI mask of the analysed grayordinates; empty when absent.
    """

    entities: dict
    summary: UnitSummary
    runs: list[RunRecord]
    subject_maps: list[StatMap]
    run_maps: list[StatMap]
    mask_path: Path | None
    mean_path: Path | None
    meshes: MeshFiles | None = None
    surface_mask_paths: tuple[Path, ...] = ()

    @property
    def title(self) -> str:
        """``sub-01 ses-1 task-faces space-MNI...``."""
        return " ".join(f"{k}-{v}" for k, v in self.entities.items())

    @property
    def anchor(self) -> str:
        """An HTML id made of the unit's entities."""
        return "_".join(f"{k}-{v}" for k, v in self.entities.items())


@dataclass(frozen=True)
class ParticipantRecord:
    """Everything the participant report shows.

    Attributes
    ----------
    label : str
        Participant label without ``sub-``.
    output_dir : Path
    units : list of UnitRecord
    dataset : dict
        The output ``dataset_description.json`` (empty when unreadable).
    methods_markdown : str or None
        ``logs/CITATION.md``.
    """

    label: str
    output_dir: Path
    units: list[UnitRecord]
    dataset: dict
    methods_markdown: str | None


def read_json(path: Path | None) -> dict:
    """A JSON object from ``path``, or an empty dict when absent or unreadable."""
    if path is None:
        return {}
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def read_text(path: Path) -> str | None:
    """The file's text, or None when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def read_summary(manifest_path: Path) -> UnitSummary:
    """The summary a unit's manifest records (empty fields when unreadable)."""
    document = read_json(manifest_path).get("Summary")
    return UnitSummary.from_json(document if isinstance(document, dict) else {})


def sidecar_of(path: Path) -> dict:
    """The JSON sidecar of a ``.nii.gz`` or ``.tsv`` file."""
    return read_json(naming.sidecar_path(path))


def participant_manifests(output_dir: Path, participant_label: str) -> list[Path]:
    """The manifests of one participant's completed units, in name order."""
    label = participant_label.removeprefix("sub-")
    folder = naming.manifests_dir(output_dir)
    return sorted(
        p
        for p in folder.glob(f"sub-{label}_*.json")
        if naming.manifest_entities(p).get("sub") == label
    )


def resolve_source(uri: str, dataset_links: Mapping[str, str]) -> Path | None:
    """Turn a ``bids:<dataset>:<path>`` or ``file://`` URI into a local path."""
    if uri.startswith("bids:"):
        _, key, relative = uri.split(":", 2)
        root = dataset_links.get(key)
        if root is None:
            return None
        base = resolve_source(root, {}) if root.startswith("file:") else Path(root)
        return None if base is None else base / relative
    if uri.startswith("file:"):
        return Path(unquote(urlparse(uri).path))
    return Path(uri) if uri.startswith("/") else None


def read_events(path: Path | None, condition_column: str) -> tuple[pd.DataFrame | None, str]:
    """Events as ``onset``, ``duration``, ``trial_type``; or None and the reason."""
    if path is None:
        return None, "events file not recorded"
    try:
        table = pd.read_csv(path, sep="\t", na_values="n/a", keep_default_na=False)
    except (OSError, ValueError) as error:
        return None, f"events file {path.name} unreadable ({error})"
    if not {"onset", "duration"} <= set(table.columns):
        return None, f"events file {path.name} lacks onset/duration columns"
    if condition_column in table.columns:
        trial_type = table[condition_column].astype(str)
    else:
        trial_type = pd.Series("events", index=table.index)
    events = pd.DataFrame(
        {"onset": table["onset"], "duration": table["duration"], "trial_type": trial_type}
    )
    return events.dropna(subset=["onset", "duration"]).reset_index(drop=True), ""


def read_framewise_displacement(path: Path | None) -> tuple[np.ndarray | None, str]:
    """The confounds file's ``framewise_displacement`` column (mm); or None and the reason."""
    if path is None:
        return None, "confounds file not recorded: no framewise displacement trace"
    try:
        table = pd.read_csv(
            path, sep="\t", usecols=lambda c: c == "framewise_displacement", na_values="n/a"
        )
    except (OSError, ValueError) as error:
        return None, f"confounds file {path.name} unreadable ({error})"
    if "framewise_displacement" not in table.columns:
        return None, f"{path.name} has no framewise_displacement column"
    return table["framewise_displacement"].to_numpy(dtype=float), ""


def _source_paths(metadata: dict, links: Mapping[str, str]) -> tuple[Path | None, Path | None]:
    """Events and confounds files among the design's recorded sources."""
    events = confounds = None
    for uri in metadata.get("Sources") or []:
        path = resolve_source(str(uri), links)
        if path is None:
            continue
        if path.name.endswith("_events.tsv"):
            events = path
        elif "confounds" in path.name and path.name.endswith(".tsv"):
            confounds = path
    return events, confounds


def _optional_path(value: str | None) -> Path | None:
    return Path(value) if value else None


def read_run(design_path: Path, used: RunUsed | None, links: Mapping[str, str]) -> RunRecord:
    """Read one run's design, events, motion and contrast weights."""
    notes = []
    metadata = sidecar_of(design_path)
    try:
        design = pd.read_csv(design_path, sep="\t", na_values="n/a", keep_default_na=False)
    except (OSError, ValueError) as error:
        design = None
        notes.append(f"design matrix unreadable ({error})")
    if not metadata:
        notes.append("design sidecar (.json) missing")
    events_path, confounds_path = _source_paths(metadata, links)
    if used is not None:  # the files the fit read, as its manifest records them
        events_path = _optional_path(used.events_path)
        confounds_path = _optional_path(used.confounds_path)
    events, why = read_events(events_path, str(metadata.get("ConditionColumn") or "trial_type"))
    notes += [why] if why else []
    motion, why = read_framewise_displacement(confounds_path)
    notes += [why] if why else []
    run_entities = naming.parse_name(design_path).entities
    recorded = used.run if used is not None else None
    label = naming.run_label(design_path) or recorded or naming.entities_text(run_entities)
    return RunRecord(
        label=label,
        design_path=design_path,
        design=design,
        metadata=metadata,
        events=events,
        framewise_displacement_mm=motion,
        z_maps=find_z_maps(design_path.parent, run_entities, label),
        notes=notes,
        trial_design_path=_existing(
            naming.trial_design_path(design_path.parent, run_entities, "lsa")
        ),
        beta_series=naming.find_beta_series(design_path.parent, run_entities),
    )


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None


def find_z_maps(
    folder: Path, entities: Mapping[str, str], run: str | None = None
) -> list[StatMap]:
    """The z maps of the contrasts whose other entities are ``entities``, by label.

    Volumes first, then GIfTI hemisphere pairs, then CIFTI maps.
    """
    maps = []
    for label, path in naming.find_stat_maps(folder, entities, "z"):
        parts = naming.map_part_files(path)  # a GIfTI map: its left and right files
        surface = tuple(parts) if len(parts) == 2 else ()
        maps.append(StatMap(label, parts[0], sidecar_of(parts[0]), run, surface_paths=surface))
    return maps


def _design_paths(
    output_dir: Path, entities: Mapping[str, str], summary: UnitSummary
) -> list[tuple[Path, RunUsed | None]]:
    """(design path, recorded run) per run: as the manifest records them, else found by name."""
    if summary.runs_used:
        return [(output_dir / used.design, used) for used in summary.runs_used]
    folder = naming.subject_func_dir(output_dir, entities)
    return [(p, None) for p in naming.find_run_designs(folder, entities)]


def read_unit(output_dir: Path, manifest_path: Path) -> UnitRecord:
    """Read one unit (participant, session, task, space) from its manifest and files."""
    output_dir = Path(output_dir)
    entities = naming.manifest_entities(manifest_path)
    summary = read_summary(manifest_path)
    links = read_json(output_dir / "dataset_description.json").get("DatasetLinks") or {}
    runs = [
        read_run(path, used, links) for path, used in _design_paths(output_dir, entities, summary)
    ]
    folder = naming.subject_func_dir(output_dir, entities)
    mask_path = naming.mask_path(folder, entities)
    mean = summary.mean_image
    mean_path = output_dir / mean if mean else naming.mean_image_path(folder, entities)
    return UnitRecord(
        entities=entities,
        summary=summary,
        runs=runs,
        subject_maps=[
            replace(m, clusters_path=naming.clusters_path(folder, entities, m.label))
            for m in find_z_maps(folder, naming.subject_level_entities(entities))
        ],
        run_maps=[m for run in runs for m in run.z_maps],
        mask_path=mask_path if mask_path.is_file() else None,
        mean_path=mean_path if mean_path.is_file() else None,
        meshes=_recorded_meshes(summary),
        surface_mask_paths=_surface_masks(mask_path),
    )


def _surface_masks(volume_mask: Path) -> tuple[Path, ...]:
    """The mask files of a surface unit: the GIfTI pair, else the CIFTI map; else ()."""
    pair = [naming.geometry_file_path(volume_mask, {"hemi": h}, naming.GIFTI) for h in "LR"]
    if all(p.is_file() for p in pair):
        return tuple(pair)
    cifti = naming.with_extension(volume_mask, naming.CIFTI_SCALAR)
    return (cifti,) if cifti.is_file() else ()


def _recorded_meshes(summary: UnitSummary) -> MeshFiles | None:
    """The manifest's left and right meshes, when both files are still there."""
    paths = [Path(p) for p in summary.meshes]
    if len(paths) != 2 or not all(p.is_file() for p in paths):
        return None
    return MeshFiles(*paths)


def read_participant(output_dir: Path, manifests: list[Path]) -> ParticipantRecord:
    """Read every unit of one participant (all its manifests)."""
    output_dir = Path(output_dir)
    units = [read_unit(output_dir, m) for m in manifests]
    label = units[0].entities.get("sub", "") if units else ""
    return ParticipantRecord(
        label=label,
        output_dir=output_dir,
        units=units,
        dataset=read_json(output_dir / "dataset_description.json"),
        methods_markdown=read_text(naming.citation_path(output_dir, "md")),
    )
