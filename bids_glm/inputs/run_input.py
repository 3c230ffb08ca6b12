"""What discovery finds: each preprocessed run's inputs (:class:`RunInput`), or why a run
cannot be used (:class:`RunFailure`), and the analysis unit a run belongs to (`unit_key`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bids_glm.image.cifti_header import CiftiHeader, is_cifti_series


@dataclass(frozen=True)
class RunInput:
    """Everything discovered about one preprocessed run.

    Attributes
    ----------
    entities : dict of str to str
        BIDS entities of the preprocessed BOLD, values as written in its name.
    bold_path, mask_path, events_path, confounds_path : Path or None
        Input files (mask, events and confounds may be missing).
    tr_s : float
        Repetition time in seconds.
    start_time_s : float or None
        ``StartTime`` of the derivative sidecar (slice-timing reference), if any.
    n_volumes : int
        Number of volumes of the BOLD series.
    design_path : Path or None
        With ``--design-dir``: the user's design matrix for this run, used as given.
    surface_paths : tuple of Path
        Surface data: the left and right hemisphere's ``.func.gii`` (``bold_path`` is the
        left one); empty for volumes.
    grayordinates : CiftiHeader or None
        CIFTI data: the series' header as discovery parsed it (its ``BrainModelAxis``,
        parsed once per run); None otherwise.
    voxel_size_mm : tuple of float, or None
        A 4-D NIfTI's voxel edges (x, y, z), from its affine; None for surfaces and CIFTI.
    """

    entities: Mapping[str, str]
    bold_path: Path
    mask_path: Path | None
    events_path: Path | None
    confounds_path: Path | None
    tr_s: float
    start_time_s: float | None
    n_volumes: int
    design_path: Path | None = None
    surface_paths: tuple[Path, ...] = ()
    grayordinates: CiftiHeader | None = field(default=None, compare=False, repr=False)
    voxel_size_mm: tuple[float, float, float] | None = None

    @property
    def image_paths(self) -> tuple[Path, ...]:
        """The files holding the run's data: the 4-D NIfTI, or both hemispheres' GIfTIs."""
        return self.surface_paths or (self.bold_path,)

    @property
    def on_surface(self) -> bool:
        """Surface data (a GIfTI pair or CIFTI grayordinates): no brain mask applies."""
        return bool(self.surface_paths) or is_cifti_series(self.bold_path)

    @property
    def subject(self) -> str:
        return self.entities["sub"]

    @property
    def session(self) -> str | None:
        return self.entities.get("ses")

    @property
    def task(self) -> str:
        return self.entities["task"]

    @property
    def space(self) -> str | None:
        return self.entities.get("space")

    @property
    def label(self) -> str:
        """Short human-readable name of the run, e.g. ``sub-01 ses-1 task-x run-2``."""
        keys = ("sub", "ses", "task", "acq", "dir", "run", "echo")
        return " ".join(f"{k}-{self.entities[k]}" for k in keys if k in self.entities)


def unit_key(entities: Mapping[str, str]) -> tuple[str, str | None, str, str | None]:
    """The analysis unit of a run with these entities: (subject, session, task, space).

    The runs of one unit are combined by fixed effects; a run that cannot be used fails its
    unit, not the others.
    """
    return entities["sub"], entities.get("ses"), entities["task"], entities.get("space")


@dataclass(frozen=True)
class RunFailure:
    """A run that was found but cannot be analysed, and why.

    Attributes
    ----------
    entities : dict of str to str
        BIDS entities of the preprocessed BOLD.
    bold_path : Path
        The preprocessed BOLD (a surface run: its left hemisphere).
    reason : str
        What is wrong, naming the file and what was expected (an ``InputError``'s text).
    """

    entities: Mapping[str, str]
    bold_path: Path
    reason: str


@dataclass(frozen=True)
class DiscoveredRuns:
    """What discovery returns: the usable runs and the failed ones, in discovery order."""

    runs: list[RunInput]
    failures: list[RunFailure] = field(default_factory=list)
