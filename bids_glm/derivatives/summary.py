"""What a completed unit (one participant's task in one space) was: recorded in its manifest.

The participant level writes a :class:`UnitSummary` into the unit's manifest
(``logs/manifests/``); the methods text, the effective model and the reports read it back,
also for units other processes completed (job arrays). Its JSON form keeps the manifest's
field names; fields an older manifest lacks read back as None.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bids_glm.design.run_design import ContrastPlan
from bids_glm.inputs.confounds import ConfoundError, parse_confound_strategy
from bids_glm.settings import ModelSettings


@dataclass(frozen=True)
class RunUsed:
    """A run that was fitted: its label, written design and the events/confounds read."""

    run: str
    design: str  # relative to OUTPUT_DIR
    events_path: str | None = None
    confounds_path: str | None = None

    def to_json(self) -> dict:
        return {
            "Run": self.run,
            "Design": self.design,
            "EventsPath": self.events_path,
            "ConfoundsPath": self.confounds_path,
        }


@dataclass(frozen=True)
class RunExcluded:
    """A run left out of one contrast, and why."""

    run: str
    contrast: str
    reason: str

    def to_json(self) -> dict:
        return {"Run": self.run, "Contrast": self.contrast, "Reason": self.reason}


@dataclass(frozen=True)
class ResolvedContrast:
    """A numeric user contrast (``[1, -1]``) as planning named it: weights over columns.

    The settings hold such a contrast by position only; the effective model needs the
    columns the positions fell on, which only the unit's designs tell.
    """

    name: str
    test: str  # "t" or "F"
    rows: tuple[dict[str, float], ...]

    def to_json(self) -> dict:
        return {"Name": self.name, "Test": self.test, "Weights": [dict(r) for r in self.rows]}

    @classmethod
    def from_json(cls, document: Mapping) -> ResolvedContrast:
        rows = document.get("Weights") or []
        return cls(
            name=str(document.get("Name") or ""),
            test="F" if document.get("Test") == "F" else "t",
            rows=tuple(
                {str(c): float(w) for c, w in row.items()}
                for row in rows
                if isinstance(row, Mapping)
            ),
        )


def resolved_contrasts(
    plans: Sequence[ContrastPlan], model: ModelSettings
) -> tuple[ResolvedContrast, ...]:
    """The plans of the model's numeric contrasts, with their named weights."""
    numeric = {s.name for s in (*model.contrasts, *model.f_contrasts) if s.numeric is not None}
    return tuple(
        ResolvedContrast(p.name, p.stat_type, tuple(dict(r) for r in p.rows))
        for p in plans
        if p.name in numeric
    )


@dataclass(frozen=True)
class UnitSummary:
    """A completed unit, as the methods text, the effective model and the reports need it.

    Attributes
    ----------
    participant, task : str
    session, space : str or None
    bold_variant : tuple of str
        The entities of the runs' BOLD file names that choose among fMRIPrep's outputs in
        that space (``desc-preproc``, ``res-2``, ``den-91k``), as written there.
    voxel_size_mm : tuple of float
        The voxel edges (x, y, z) of the runs' grid; empty for surfaces and CIFTI.
    n_runs : int
        Runs fitted.
    repetition_times_s : tuple of float
        Distinct repetition times of the runs.
    conditions, confounds : tuple of str
        Condition and confound regressors over the runs' designs.
    runs_used : tuple of RunUsed, or None when not recorded
    runs_excluded : tuple of RunExcluded, or None when not recorded
    warnings : tuple of str, or None when not recorded
        Warnings raised while the unit was planned and fitted.
    settings : dict
        The model settings as written (HRF model and the effective model's options).
    command_line : str or None
    software : dict of str to str
        Versions of bids-glm and the libraries its numbers depend on.
    mean_image : str or None
        The mean BOLD image, relative to OUTPUT_DIR.
    elapsed_s : float or None
    resolved_contrasts : tuple of ResolvedContrast
        The numeric contrasts' named weights (written only when there are any).
    meshes : tuple of str
        Surface data: the left and right meshes found (absolute paths; written only then).
    """

    participant: str
    task: str
    session: str | None = None
    space: str | None = None
    bold_variant: tuple[str, ...] = ()
    voxel_size_mm: tuple[float, ...] = ()
    n_runs: int = 0
    repetition_times_s: tuple[float, ...] = ()
    conditions: tuple[str, ...] = ()
    confounds: tuple[str, ...] = ()
    runs_used: tuple[RunUsed, ...] | None = None
    runs_excluded: tuple[RunExcluded, ...] | None = None
    warnings: tuple[str, ...] | None = None
    settings: dict = field(default_factory=dict)
    command_line: str | None = None
    software: dict = field(default_factory=dict)
    mean_image: str | None = None
    elapsed_s: float | None = None
    resolved_contrasts: tuple[ResolvedContrast, ...] = ()
    meshes: tuple[str, ...] = ()

    @property
    def fd_threshold_mm(self) -> float | None:
        """The framewise-displacement censoring threshold of the recorded confounds, if any."""
        try:
            strategy = parse_confound_strategy(self.settings.get("Confounds") or ())
        except ConfoundError:
            return None
        return None if strategy.scrub is None else strategy.scrub.fd_mm

    def to_json(self) -> dict:
        """The manifest's ``Summary`` object."""
        document = {
            "Participant": self.participant,
            "Session": self.session,
            "Task": self.task,
            "Space": self.space,
            "BoldVariant": list(self.bold_variant),
            "VoxelSizeMM": list(self.voxel_size_mm),
            "Runs": self.n_runs,
            "RepetitionTimes": list(self.repetition_times_s),
            "Conditions": list(self.conditions),
            "Confounds": list(self.confounds),
            "RunsUsed": [r.to_json() for r in self.runs_used or ()],
            "RunsExcluded": [r.to_json() for r in self.runs_excluded or ()],
            "Warnings": list(self.warnings or ()),
            "Settings": self.settings,
            "CommandLine": self.command_line,
            "Software": self.software,
            "MeanImage": self.mean_image,
            "ElapsedSeconds": self.elapsed_s,
        }
        if self.resolved_contrasts:
            document["ResolvedContrasts"] = [c.to_json() for c in self.resolved_contrasts]
        if self.meshes:
            document["Meshes"] = list(self.meshes)
        return document

    @classmethod
    def from_json(cls, document: Mapping) -> UnitSummary:
        """Read a manifest's ``Summary``; absent or malformed fields become None/empty."""
        used = _records(document, "RunsUsed")
        excluded = _records(document, "RunsExcluded")
        warnings = document.get("Warnings")
        return cls(
            participant=str(document.get("Participant") or ""),
            task=str(document.get("Task") or ""),
            session=document.get("Session"),
            space=document.get("Space"),
            bold_variant=tuple(str(e) for e in document.get("BoldVariant") or ()),
            voxel_size_mm=tuple(float(v) for v in document.get("VoxelSizeMM") or ()),
            n_runs=int(document.get("Runs") or 0),
            repetition_times_s=tuple(float(t) for t in document.get("RepetitionTimes") or ()),
            conditions=tuple(str(c) for c in document.get("Conditions") or ()),
            confounds=tuple(str(c) for c in document.get("Confounds") or ()),
            runs_used=None
            if used is None
            else tuple(
                RunUsed(
                    str(u.get("Run") or ""),
                    str(u["Design"]),
                    u.get("EventsPath"),
                    u.get("ConfoundsPath"),
                )
                for u in used
                if u.get("Design")
            ),
            runs_excluded=None
            if excluded is None
            else tuple(
                RunExcluded(str(r.get("Run")), str(r.get("Contrast")), str(r.get("Reason")))
                for r in excluded
            ),
            warnings=None if warnings is None else tuple(str(w) for w in warnings),
            settings=dict(document.get("Settings") or {}),
            command_line=document.get("CommandLine"),
            software=dict(document.get("Software") or {}),
            mean_image=document.get("MeanImage"),
            elapsed_s=document.get("ElapsedSeconds"),
            resolved_contrasts=tuple(
                ResolvedContrast.from_json(c)
                for c in _records(document, "ResolvedContrasts") or ()
            ),
            meshes=tuple(str(m) for m in document.get("Meshes") or ()),
        )


def _records(document: Mapping, key: str) -> list[Mapping] | None:
    if key not in document:
        return None
    return [r for r in document.get(key) or [] if isinstance(r, Mapping)]
