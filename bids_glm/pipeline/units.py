"""Analysis units (one participant, session, task and space) and their bookkeeping.

A unit's runs are combined by fixed effects. Units are planned by
:mod:`bids_glm.pipeline.plan`; here are the runs' grouping into units, the failure of a unit
that cannot be analysed, the files a unit writes, the fingerprint that tells whether its
outputs are complete with the same settings, and the software versions its numbers depend
on.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from bids_glm import __version__
from bids_glm.derivatives import manifest, naming
from bids_glm.design.run_design import ContrastPlan, RunDesign
from bids_glm.image.mesh import MeshFiles
from bids_glm.inputs.run_input import unit_key
from bids_glm.settings import Settings

Item = TypeVar("Item")


@dataclass(frozen=True)
class AnalysisUnit:
    """Runs of one participant, session, task and space, combined by fixed effects.

    Attributes
    ----------
    entities : dict of str to str
        ``sub``, ``task`` and, when present, ``ses`` and ``space``.
    designs : tuple of RunDesign
        One design per run, in discovery order.
    contrasts : tuple of ContrastPlan
        Contrasts estimated in every run that has their columns.
    planning_warnings : list of str
        Warnings logged while the designs were built (shown in the report).
    meshes : MeshFiles or None
        Surface data: both hemispheres' meshes (to smooth along, and for the report).
    """

    entities: dict[str, str]
    designs: tuple[RunDesign, ...]
    contrasts: tuple[ContrastPlan, ...]
    planning_warnings: list[str] = field(default_factory=list)
    meshes: MeshFiles | None = None

    @property
    def name(self) -> str:
        """The unit's entities as in file names, e.g. ``sub-01_task-faces_space-MNI``."""
        return naming.unit_name(self.entities)


@dataclass(frozen=True)
class PlanningFailure:
    """A unit that cannot be analysed (a run's files, its designs or contrasts), and why."""

    entities: dict[str, str]
    reason: str


def unit_entities(run_entities: Mapping[str, str]) -> dict[str, str]:
    """A unit's entities from one of its runs': ``sub``, ``task`` and, when present,
    ``ses``, ``space`` and (CIFTI) the density ``den`` its runs share."""
    subject, session, task, space = unit_key(run_entities)
    entities = {"sub": subject, "task": task}
    if session is not None:
        entities["ses"] = session
    if space is not None:
        entities["space"] = space
    if "den" in run_entities:
        entities["den"] = run_entities["den"]
    return entities


def group_by_unit(
    items: Iterable[Item], entities_of: Callable[[Item], Mapping[str, str]]
) -> dict[tuple, list[Item]]:
    """Runs (or failed runs) keyed by their unit (`unit_key`), in the order given."""
    groups: dict[tuple, list[Item]] = defaultdict(list)
    for item in items:
        groups[unit_key(entities_of(item))].append(item)
    return dict(groups)


def unit_outputs(unit: AnalysisUnit, settings: Settings) -> list[Path]:
    """Every file the unit has written (its participant, session, task and space)."""
    return naming.unit_files(settings.output_dir, unit.entities)


def remove_interrupted_writes(unit: AnalysisUnit, settings: Settings) -> None:
    """Delete temporary files that a killed earlier run of this unit left behind."""
    for stale in naming.unit_files(settings.output_dir, unit.entities, hidden=True):
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
            design.user_design,
        )
        if path is not None
    ]
    if settings.mask is not None:
        inputs.append(settings.mask)
    if unit.meshes is not None and settings.model.smoothing_fwhm_mm > 0:
        inputs += unit.meshes.paths  # the meshes decide the maps only when smoothing
    single_trial = (
        ()
        if settings.single_trial is None
        else (
            settings.single_trial,
            settings.single_trial_conditions,
            *((settings.single_trial_maps,) if settings.single_trial_maps else ()),
        )
    )
    spm12 = () if settings.spm12 is None else (settings.spm12,)
    description = repr(
        (settings.model, settings.mask_combine, settings.model_maps, *single_trial, *spm12)
    )
    return manifest.fingerprint(description, inputs)


def software_versions() -> dict[str, str]:
    """Versions of bids-glm and the libraries its numbers depend on."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {"bids-glm": __version__}
    for package in ("numpy", "scipy", "nibabel", "pandas", "pybids"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            continue
    return versions
