"""Analysis units (one participant, session, task and space): planning and bookkeeping.

A unit's runs are combined by fixed effects. Planning builds every design matrix and
contrast before anything is fitted; a unit whose inputs cannot be used is reported as a
failure without stopping the others (batch runs over many participants).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bids_glm import __version__
from bids_glm.derivatives import manifest, naming
from bids_glm.design.run_design import ContrastPlan, RunDesign
from bids_glm.errors import InputError
from bids_glm.inputs.layout import RunInput
from bids_glm.pipeline.plan import build_run_design, plan_contrasts
from bids_glm.runtime.logs import captured_warnings
from bids_glm.settings import ModelSettings, Settings


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
    """

    entities: dict[str, str]
    designs: tuple[RunDesign, ...]
    contrasts: tuple[ContrastPlan, ...]
    planning_warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The unit's entities as in file names, e.g. ``sub-01_task-faces_space-MNI``."""
        return naming.unit_name(self.entities)


@dataclass(frozen=True)
class PlanningFailure:
    """A unit whose designs could not be built, and why."""

    entities: dict[str, str]
    reason: str


def group_runs(runs: Sequence[RunInput]) -> dict[tuple, list[RunInput]]:
    """Runs keyed by (subject, session, task, space), in discovery order."""
    groups: dict[tuple, list[RunInput]] = defaultdict(list)
    for run in runs:
        groups[(run.subject, run.session, run.task, run.space)].append(run)
    return dict(groups)


def plan_units(
    runs: Sequence[RunInput], model: ModelSettings
) -> tuple[list[AnalysisUnit], list[PlanningFailure]]:
    """Build every design matrix and contrast before anything is fitted.

    Returns
    -------
    units : list of AnalysisUnit
        Units whose designs and contrasts could be built.
    failures : list of PlanningFailure
        Units whose inputs cannot be used (the reason names the file and field).
    """
    units, failures = [], []
    for (subject, session, task, space), members in group_runs(runs).items():
        entities = {"sub": subject, "task": task}
        if session is not None:
            entities["ses"] = session
        if space is not None:
            entities["space"] = space
        with captured_warnings() as messages:
            try:
                designs = tuple(build_run_design(run, model) for run in members)
                contrasts = tuple(plan_contrasts(designs, model))
            except InputError as err:
                failures.append(PlanningFailure(entities, str(err)))
                continue
        units.append(AnalysisUnit(entities, designs, contrasts, messages))
    return units, failures


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
        )
        if path is not None
    ]
    if settings.mask is not None:
        inputs.append(settings.mask)
    description = repr((settings.model, settings.mask_combine, settings.model_maps))
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
