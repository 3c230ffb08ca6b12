"""Find the runs to analyse with pybids: preprocessed BOLD, masks, events, confounds, TR.

:func:`discover_runs` chooses the participants, validates the dataset and calls
:func:`find_runs`, which picks the space and grid of the preprocessed series; the
participants and the pybids index are in `dataset_index`, each run's files and TR in
`run_files` (`repetition_time` beneath), the GIfTI pairs of surface spaces in
`surface_runs`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from bids_glm.errors import InputError
from bids_glm.inputs.cifti_runs import cifti_bolds
from bids_glm.inputs.dataset_index import indexer_ignore, open_layout, select_participants
from bids_glm.inputs.entities import split_name
from bids_glm.inputs.filters import pybids_filters, restrict_participants
from bids_glm.inputs.run_files import CandidateFiles, build_run_input
from bids_glm.inputs.run_input import DiscoveredRuns, RunFailure
from bids_glm.inputs.sidecars import JsonFiles, read_json_files, unusable_runs
from bids_glm.inputs.surface_runs import hemisphere_pairs, surface_bolds
from bids_glm.inputs.validation import validate_dataset
from bids_glm.inputs.variants import is_cifti_space, is_surface_space, select_grid
from bids_glm.settings import DEFAULT_FMRIPREP_SPACE, Settings

LOGGER = logging.getLogger("bids_glm")
NIFTI_EXTENSIONS = (".nii", ".nii.gz")


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


def discover_runs(settings: Settings) -> DiscoveredRuns:
    """Find every preprocessed run of the requested participants, tasks and sessions.

    The three steps below, in one call: `requested_participants`, `validate_dataset`
    (unless ``--skip-bids-validator``) and `find_runs`.

    Raises
    ------
    InputError
        Unknown participants, no derivatives, no runs for the task (a run that cannot be
        used is a `RunFailure` of the result instead).
    """
    return validated_runs(settings, requested_participants(settings))


def validated_runs(settings: Settings, participants: Sequence[str]) -> DiscoveredRuns:
    """`validate_dataset` (unless ``--skip-bids-validator``), then `find_runs`."""
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


def find_runs(settings: Settings, participants: Sequence[str]) -> DiscoveredRuns:
    """The preprocessed runs of ``participants`` (pybids index of the raw data and derivatives).

    A run whose own files cannot be used (an unreadable BOLD header or sidecar, no usable
    RepetitionTime) becomes a `RunFailure`, so that one participant's broken file fails that
    participant's analysis only.

    Raises
    ------
    InputError
        No derivatives, no runs for the task.
    """
    if not settings.derivatives:
        raise InputError(
            f"no derivatives: {settings.bids_dir / 'derivatives' / 'fmriprep'} does not exist; "
            "point --derivatives at fMRIPrep outputs"
        )
    roots = [settings.bids_dir, *settings.derivatives]
    json_files = read_json_files(roots, indexer_ignore(participants))
    layout = open_layout(settings, participants, json_files.unreadable)
    filters = {"subject": participants}
    if settings.tasks:
        filters["task"] = list(settings.tasks)
    if settings.sessions:
        filters["session"] = list(settings.sessions)
    user_filters = {k: v for k, v in settings.bids_filters.items() if k != "subject"}
    filters = {**pybids_filters(user_filters), **filters}
    bolds, space = _chosen_bolds(layout, filters, settings, participants)
    refused = unusable_runs(bolds, json_files.unreadable, settings.bids_dir)
    design_dir = settings.model.design_dir
    candidates = _candidates(layout, settings, json_files)
    runs, failures = [], []
    if is_surface_space(settings.space):  # each run's hemisphere pair; the left names the run
        pairs, unpaired = hemisphere_pairs(bolds)
        sources = [(pair[0], pair) for pair in pairs]
        failures += [RunFailure(split_name(f)[0], f, reason) for f, reason in unpaired]
    else:  # a NIfTI or CIFTI series per run
        sources = [(Path(bold), ()) for bold in sorted(bolds)]
    for bold, pair in sources:
        try:
            for path in (bold, *pair):
                if path in refused:
                    raise InputError(refused[path])
            runs.append(
                build_run_input(bold, settings.bids_dir, candidates, design_dir is None, pair)
            )
        except InputError as err:  # this run's own files: its unit fails, not the batch
            failures.append(RunFailure(split_name(bold)[0], bold, str(err)))
    if design_dir is not None:  # the designs replace the events
        # deferred: reading designs needs pandas, which discovery otherwise does without
        from bids_glm.inputs.user_design import attach_user_designs

        runs = attach_user_designs(runs, design_dir)
    LOGGER.info(
        "found %d run(s)%s for %d participant(s) in space %s%s%s",
        len(runs) + len(failures),
        f" ({len(failures)} not usable)" if failures else "",
        len(participants),
        space,
        "".join(f", {k}-{v}" for k, v in _grid(bolds).items()),
        "".join(f", desc-{v}" for v in {split_name(b)[0].get("desc") for b in bolds} if v),
    )
    for run in runs:
        mask = run.mask_path.name if run.mask_path else "none"
        LOGGER.debug("%s: BOLD %s, mask %s", run.label, run.bold_path.name, mask)
    return DiscoveredRuns(runs, failures)


def _chosen_bolds(layout, filters, settings: Settings, participants) -> tuple[list[str], str]:
    """The preprocessed series to analyse (one space, one grid) and that space."""
    if is_surface_space(settings.space):
        return surface_bolds(layout, filters, settings), settings.space
    if is_cifti_space(settings.space):
        return cifti_bolds(layout, filters, settings), settings.space
    bolds = _preprocessed_bolds(layout, filters, settings)
    if not bolds:
        _no_bold(layout, filters, settings, participants)
    space = _choose_space({split_name(b)[0].get("space") for b in bolds}, settings.space)
    bolds = [b for b in bolds if split_name(b)[0].get("space") == space]
    requested = {"res": settings.resolution, "den": settings.density}
    return select_grid(bolds, space, requested), space


def _candidates(layout, settings: Settings, json_files: JsonFiles) -> CandidateFiles:
    """Files a run's inputs are chosen from: brain masks, confounds, events, sidecars."""
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
    events = layout.get(scope="raw", suffix="events", extension=".tsv", return_type="filename")
    sidecars = layout.get(scope="raw", suffix="bold", extension=".json", return_type="filename")
    bold_sidecars = layout.get(
        scope="derivatives", suffix="bold", extension=".json", return_type="filename"
    )
    return CandidateFiles(
        masks=masks,
        confounds=confounds,
        events=[Path(p) for p in events],
        raw_sidecars=[Path(p) for p in sidecars],
        bold_sidecars=[Path(p) for p in bold_sidecars],
        derivative_roots=list(settings.derivatives),
        json_documents=json_files.documents,
    )


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
