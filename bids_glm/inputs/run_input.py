"""What discovery finds for one preprocessed run: :class:`RunInput`."""

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
