"""Find the runs to analyse with pybids: preprocessed BOLD, masks, events, confounds, TR.

Only the requested participants are indexed, in memory: nothing is written, so the input
dataset can be mounted read-only.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib

from bids_glm.errors import InputError
from bids_glm.image.mask import load_image
from bids_glm.inputs.entities import applicable_files, applies_to, raw_entities, split_name
from bids_glm.inputs.filters import pybids_filters, restrict_participants
from bids_glm.inputs.sidecars import check_run_sidecars, ignore_patterns, unreadable_json
from bids_glm.inputs.surface_runs import hemisphere_pairs, surface_bolds, surface_run_facts
from bids_glm.inputs.user_design import attach_user_designs
from bids_glm.inputs.validation import validate_dataset
from bids_glm.inputs.variants import is_surface_space, select_grid
from bids_glm.settings import DEFAULT_FMRIPREP_SPACE, Settings

LOGGER = logging.getLogger("bids_glm")
NIFTI_EXTENSIONS = (".nii", ".nii.gz")
TR_RELATIVE_TOLERANCE = 1e-3
MASK_IGNORED = frozenset({"desc"})
CONFOUNDS_IGNORED = frozenset({"desc", "space", "res", "den"})


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

    @property
    def image_paths(self) -> tuple[Path, ...]:
        """The files holding the run's data: the 4-D NIfTI, or both hemispheres' GIfTIs."""
        return self.surface_paths or (self.bold_path,)

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


def available_participants(bids_dir: Path) -> list[str]:
    """Participant labels that have a ``sub-<label>`` folder in the dataset."""
    return sorted(p.name[4:] for p in bids_dir.glob("sub-*") if p.is_dir())


def select_participants(bids_dir: Path, requested: Sequence[str]) -> list[str]:
    """Return the participants to analyse, or raise ``InputError`` for unknown labels."""
    present = available_participants(bids_dir)
    if not present:
        raise InputError(f"{bids_dir}: no sub-<label> folders; is this a BIDS dataset?")
    missing = [label for label in requested if label not in present]
    if missing:
        raise InputError(
            f"participant(s) {', '.join('sub-' + m for m in missing)} not found in {bids_dir}; "
            f"present: {', '.join('sub-' + p for p in present)}"
        )
    return list(requested) or present


def _indexer_ignore(participants: Sequence[str]) -> list[re.Pattern]:
    keep = "|".join(re.escape(p) for p in participants)
    return [
        re.compile(r"^/(code|stimuli|sourcedata|models|derivatives|logs)(/|$)"),
        re.compile(r"/\."),
        re.compile(rf"^/sub-(?!({keep})(/|$))[^/]+"),
    ]


def open_layout(settings: Settings, participants: Sequence[str], unreadable=()):
    """Index the raw dataset and the derivatives for ``participants`` only.

    ``unreadable`` JSON files (`bids_glm.inputs.sidecars.unreadable_json`) are left out.

    Returns
    -------
    bids.BIDSLayout
        Layout with the derivatives attached. Its index is held in memory: nothing is
        written, so the inputs may be read-only (an on-disk index costs twice the time and
        would be rebuilt on every run anyway).
    """
    from bids import BIDSLayout, BIDSLayoutIndexer
    from bids.exceptions import BIDSValidationError

    ignore = [*_indexer_ignore(participants), *ignore_patterns(unreadable)]
    indexer = BIDSLayoutIndexer(validate=False, ignore=ignore)
    try:
        return BIDSLayout(
            settings.bids_dir,
            validate=False,
            derivatives=[str(d) for d in settings.derivatives] or False,
            indexer=indexer,
        )
    except (BIDSValidationError, ValueError, OSError) as err:  # OSError: a JSON file changed
        cause = f" ({err.__cause__})" if err.__cause__ else ""
        raise InputError(f"cannot index {settings.bids_dir} with pybids: {err}{cause}") from None


def _choose_space(spaces: set[str | None], requested: str | None) -> str | None:
    if requested is not None:
        if requested not in spaces:
            listed = ", ".join(sorted(str(s) for s in spaces))
            raise InputError(f"--space {requested}: no preprocessed BOLD in it; found: {listed}")
        return requested
    if len(spaces) == 1:
        return next(iter(spaces))
    if DEFAULT_FMRIPREP_SPACE in spaces:
        LOGGER.info(
            "several spaces present; using %s (choose with --space)", DEFAULT_FMRIPREP_SPACE
        )
        return DEFAULT_FMRIPREP_SPACE
    listed = ", ".join(sorted(str(s) for s in spaces))
    raise InputError(f"preprocessed BOLD exists in several spaces ({listed}); choose with --space")


def _header_tr_s(image: nib.Nifti1Image) -> float | None:
    zooms = image.header.get_zooms()
    if len(zooms) < 4 or zooms[3] <= 0:
        return None
    _, time_unit = image.header.get_xyzt_units()
    return float(zooms[3]) * {"msec": 1e-3, "usec": 1e-6}.get(time_unit, 1.0)


def resolve_tr_s(
    bold_path: Path,
    derivative_meta: Mapping,
    raw_meta: Mapping,
    header_tr_s: float | None,
    header_name: str = "NIfTI header",
) -> float:
    """Repetition time from the derivative sidecar, then the raw sidecar, then the header.

    A warning names the sources when they disagree.
    """
    sources = {
        "derivative sidecar": derivative_meta.get("RepetitionTime"),
        "raw sidecar": raw_meta.get("RepetitionTime"),
        header_name: header_tr_s,
    }
    try:
        found = {name: float(v) for name, v in sources.items() if v is not None}
    except (TypeError, ValueError):
        values = ", ".join(f"{v!r} ({n})" for n, v in sources.items() if v is not None)
        raise InputError(
            f"{bold_path}: RepetitionTime {values}: expected a number of seconds"
        ) from None
    if not found:
        raise InputError(
            f"{bold_path}: no RepetitionTime in its sidecars and no TR in the {header_name}"
        )
    chosen_name, chosen = next(iter(found.items()))
    if chosen <= 0:
        raise InputError(f"{bold_path}: RepetitionTime {chosen} ({chosen_name}) must be > 0 s")
    for name, value in found.items():
        if abs(value - chosen) > TR_RELATIVE_TOLERANCE * chosen:
            LOGGER.warning(
                "%s: TR %.4g s (%s) disagrees with %.4g s (%s); using the %s",
                bold_path.name,
                value,
                name,
                chosen,
                chosen_name,
                chosen_name,
            )
    return chosen


def _merged_json(paths: Sequence[Path]) -> dict:
    merged: dict = {}
    for path in paths:
        try:
            merged.update(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as err:
            raise InputError(f"{path}: not readable JSON ({err})") from None
    return merged


def _matching_derivative(
    candidates: Sequence[str], entities: Mapping[str, str], ignore: frozenset[str]
) -> Path | None:
    """The candidate whose entities, apart from ``ignore``, are exactly the run's."""
    wanted = {k: v for k, v in entities.items() if k not in ignore}
    for candidate in sorted(candidates):
        found = {k: v for k, v in split_name(candidate)[0].items() if k not in ignore}
        if found.keys() == wanted.keys() and applies_to(found, wanted):
            return Path(candidate)
    return None


def discover_runs(settings: Settings) -> list[RunInput]:
    """Find every preprocessed run of the requested participants, tasks and sessions.

    The three steps below, in one call: `requested_participants`, `validate_dataset`
    (unless ``--skip-bids-validator``) and `find_runs`.

    Raises
    ------
    InputError
        Unknown participants, no derivatives, no runs for the task, unreadable sidecars.
    """
    participants = requested_participants(settings)
    if not settings.skip_bids_validator:
        validate_dataset(settings.bids_dir, participants)
    return find_runs(settings, participants)


def requested_participants(settings: Settings) -> list[str]:
    """The participants to analyse (labels and ``--bids-filter-file``); ``InputError`` if none."""
    participants = select_participants(settings.bids_dir, settings.participant_labels)
    if settings.bids_filters:
        participants = restrict_participants(
            participants, settings.bids_filters, settings.bids_filter_file
        )
    return participants


def find_runs(settings: Settings, participants: Sequence[str]) -> list[RunInput]:
    """The preprocessed runs of ``participants`` (pybids index of the raw data and derivatives).

    Raises
    ------
    InputError
        No derivatives, no runs for the task, unreadable sidecars.
    """
    if not settings.derivatives:
        raise InputError(
            f"no derivatives: {settings.bids_dir / 'derivatives' / 'fmriprep'} does not exist; "
            "point --derivatives at fMRIPrep outputs"
        )
    roots = [settings.bids_dir, *settings.derivatives]
    unreadable = unreadable_json(roots, _indexer_ignore(participants))
    layout = open_layout(settings, participants, unreadable)
    filters = {"subject": participants}
    if settings.tasks:
        filters["task"] = list(settings.tasks)
    if settings.sessions:
        filters["session"] = list(settings.sessions)
    user_filters = {k: v for k, v in settings.bids_filters.items() if k != "subject"}
    filters = {**pybids_filters(user_filters), **filters}
    surface = is_surface_space(settings.space)
    if surface:
        bolds = surface_bolds(layout, filters, settings)
        space = settings.space
    else:
        bolds = _preprocessed_bolds(layout, filters, settings)
        if not bolds:
            _no_bold(layout, filters, settings, participants)
        space = _choose_space({split_name(b)[0].get("space") for b in bolds}, settings.space)
        bolds = [b for b in bolds if split_name(b)[0].get("space") == space]
        requested = {"res": settings.resolution, "den": settings.density}
        bolds = select_grid(bolds, space, requested)
    masks = layout.get(
        scope="derivatives",
        desc="brain",
        suffix="mask",
        extension=list(NIFTI_EXTENSIONS),
        return_type="filename",
    )
    confounds = layout.get(
        scope="derivatives",
        desc="confounds",
        suffix=["timeseries", "regressors"],
        extension=".tsv",
        return_type="filename",
    )
    events = [
        Path(p)
        for p in layout.get(scope="raw", suffix="events", extension=".tsv", return_type="filename")
    ]
    raw_sidecars = [
        Path(p)
        for p in layout.get(scope="raw", suffix="bold", extension=".json", return_type="filename")
    ]
    check_run_sidecars(bolds, unreadable, settings.bids_dir)
    design_dir = settings.model.design_dir
    candidates = (masks, confounds, events, raw_sidecars)
    if surface:  # each run's hemisphere pair; the left file names the run
        sources = [(pair[0], pair) for pair in hemisphere_pairs(bolds)]
    else:
        sources = [(Path(bold), ()) for bold in sorted(bolds)]
    runs = [
        _run_input(bold, layout, settings.bids_dir, candidates, design_dir is None, pair)
        for bold, pair in sources
    ]
    if design_dir is not None:  # the designs replace the events
        runs = attach_user_designs(runs, design_dir)
    LOGGER.info(
        "found %d run(s) for %d participant(s) in space %s%s, desc-%s",
        len(runs),
        len(participants),
        space,
        "".join(f", {k}-{v}" for k, v in _grid(bolds).items()),
        settings.desc,
    )
    for run in runs:
        mask = run.mask_path.name if run.mask_path else "none"
        LOGGER.debug("%s: BOLD %s, mask %s", run.label, run.bold_path.name, mask)
    return runs


def _grid(bolds: Sequence[str]) -> dict[str, str]:
    """The res/den entities the chosen series share (for the log)."""
    first = split_name(bolds[0])[0]
    return {k: first[k] for k in ("res", "den") if k in first}


def _no_bold(layout, filters: Mapping[str, object], settings: Settings, participants) -> None:
    """Raise the ``InputError`` for no preprocessed BOLD: tasks and desc labels present."""
    tasks = sorted(layout.get_tasks(scope="derivatives", subject=participants))
    what = f"task(s) {', '.join(settings.tasks)}" if settings.tasks else "any task"
    if any(key != "subject" for key in settings.bids_filters):
        what += f" with --bids-filter-file {settings.bids_filter_file}"
    variants = sorted(
        {
            split_name(p)[0].get("desc", "(none)")
            for p in layout.get(
                scope="derivatives",
                suffix="bold",
                extension=list(NIFTI_EXTENSIONS),
                return_type="filename",
                **filters,
            )
        }
    )
    raise InputError(
        f"no desc-{settings.desc}_bold NIfTI for {what} and participant(s) "
        f"{', '.join(participants)} in {', '.join(map(str, settings.derivatives))}; "
        f"tasks with preprocessed BOLD: {', '.join(tasks) or 'none'}; desc labels of "
        f"their BOLD (choose with --desc): {', '.join(variants) or 'none'}"
    )


def _preprocessed_bolds(layout, filters: Mapping[str, object], settings: Settings) -> list[str]:
    try:
        return layout.get(
            scope="derivatives",
            desc=settings.desc,
            suffix="bold",
            extension=list(NIFTI_EXTENSIONS),
            return_type="filename",
            **filters,
        )
    except ValueError as err:  # pybids: an entity it does not know
        reason = str(err).split(". If you")[0]
        raise InputError(
            f"--bids-filter-file {settings.bids_filter_file}: {reason} (use pybids' entity "
            "names: session, run, acquisition, echo, ...)"
        ) from None


def _run_input(
    bold, layout, bids_dir, candidates, events_needed: bool = True, surface_pair=()
) -> RunInput:
    """One run's inputs: a 4-D NIfTI ``bold``, or a surface ``surface_pair`` (L, R)."""
    masks, confounds, events, raw_sidecars = candidates
    if surface_pair:
        entities, n_volumes, header_tr_s = surface_run_facts(surface_pair)
        header_name = "GIfTI TimeStep"  # FreeSurfer writes milliseconds: converted
    else:
        entities, _, _ = split_name(bold)
        image = load_image(bold)
        if len(image.shape) != 4:
            raise InputError(f"{bold}: expected a 4-D BOLD series, found shape {image.shape}")
        n_volumes, header_tr_s = int(image.shape[3]), _header_tr_s(image)
        header_name = "NIfTI header"
    raw = raw_entities(entities)
    run_dir = bids_dir / f"sub-{raw['sub']}"
    if "ses" in raw:
        run_dir = run_dir / f"ses-{raw['ses']}"
    run_dir = run_dir / "func"
    events_files = applicable_files(events, raw, bids_dir, run_dir)
    if not events_files and events_needed:
        LOGGER.warning("%s: no events.tsv applies to this run", bold.name)
    derivative_meta = layout.get_metadata(str(bold))
    raw_meta = _merged_json(applicable_files(raw_sidecars, raw, bids_dir, run_dir))
    tr_s = resolve_tr_s(bold, derivative_meta, raw_meta, header_tr_s, header_name)
    start_time = derivative_meta.get("StartTime")
    return RunInput(
        entities=entities,
        bold_path=bold,
        # surfaces have no brain mask: constant vertices are left out after reading
        mask_path=None if surface_pair else _matching_derivative(masks, entities, MASK_IGNORED),
        events_path=events_files[-1] if events_files else None,
        confounds_path=_matching_derivative(confounds, entities, CONFOUNDS_IGNORED),
        tr_s=tr_s,
        start_time_s=None if start_time is None else float(start_time),
        n_volumes=n_volumes,
        surface_paths=tuple(surface_pair),
    )
