"""Preprocessed variants: which ``desc``, ``res`` and ``den`` of the BOLD series are analysed.

fMRIPrep writes one preprocessed series per space and, for a template space asked for at a
given grid (``--output-spaces MNI152NLin2009cAsym:res-2``), a ``res`` entity in its name:
``sub-01_task-x_space-MNI152NLin2009cAsym_res-2_desc-preproc_bold.nii.gz``. A space asked
for without a resolution (fMRIPrep's ``res-native``: the BOLD's own voxel size) has no
``res`` entity. CIFTI and surface outputs carry a density (``den-91k``) instead. Other
preprocessed variants differ by ``desc`` (``desc-smoothAROMAnonaggr`` in fMRIPrep < 23).

``--space SPACE[:res-<label>][:den-<label>]`` names a space and optionally its grid, with
fMRIPrep's ``--output-spaces`` syntax. When the grid is not named and the series exist at
several, one is chosen by a fixed rule (`default_label`) and the log says which.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bids_glm.errors import InputError
from bids_glm.inputs.entities import raw_entities, split_name

LOGGER = logging.getLogger("bids_glm")
LABEL = re.compile(r"^[A-Za-z0-9]+$")
# entity -> Settings attribute and the word used in messages
GRID_ENTITIES = {"res": "resolution", "den": "density"}
NATIVE = "native"  # fMRIPrep's res-native: written without a res entity


@dataclass(frozen=True)
class SpaceOption:
    """``--space`` typed: the space and the grid entities asked for.

    Attributes
    ----------
    space : str
        The ``space`` label, e.g. ``MNI152NLin2009cAsym``.
    resolution, density : str or None
        The ``res`` / ``den`` label asked for (``native``: no ``res`` entity); None when
        not given.
    """

    space: str
    resolution: str | None = None
    density: str | None = None


# Entities that tell a space's preprocessed series apart, in the order `bold_variant` lists
VARIANT_ENTITIES = ("desc", *GRID_ENTITIES)


def bold_variant(entities: Mapping[str, str]) -> tuple[str, ...]:
    """The ``desc``, ``res`` and ``den`` entities of a BOLD series' name, as written there
    (e.g. ``("desc-preproc", "res-2")``): which of the space's preprocessed series it is."""
    return tuple(f"{key}-{entities[key]}" for key in VARIANT_ENTITIES if key in entities)


# Spaces whose preprocessed BOLD is a GIfTI pair (one file per hemisphere), not a NIfTI.
SURFACE_SPACES = frozenset({"fsaverage", "fsaverage5", "fsaverage6", "fsnative"})


# Spaces whose preprocessed BOLD is a CIFTI-2 dense time series (grayordinates).
CIFTI_SPACES = frozenset({"fsLR"})


def is_cifti_space(space: str | None) -> bool:
    """Whether ``--space`` names CIFTI-2 grayordinates (fsLR, ``den-91k`` or ``den-170k``)."""
    return space in CIFTI_SPACES


def is_surface_space(space: str | None) -> bool:
    """Whether ``--space`` names surface data (fsaverage*, fsnative)."""
    return space in SURFACE_SPACES


def parse_space_option(text: str) -> SpaceOption:
    """Parse ``SPACE[:res-<label>][:den-<label>]`` (fMRIPrep's ``--output-spaces`` syntax).

    Parameters
    ----------
    text : str
        The value of ``--space``, e.g. ``MNI152NLin2009cAsym:res-2`` or ``fsLR:den-91k``.

    Returns
    -------
    SpaceOption

    Raises
    ------
    ValueError
        A label that is not letters and digits, a modifier other than ``res``/``den``, or
        one given twice; the message says what was expected.
    """
    space, *modifiers = text.split(":")
    if not LABEL.match(space):
        raise ValueError(
            f"{text!r}: the space must be a BIDS label (letters and digits), e.g. "
            "MNI152NLin2009cAsym or MNI152NLin2009cAsym:res-2"
        )
    grid: dict[str, str] = {}
    for modifier in modifiers:
        key, _, label = modifier.partition("-")
        if key not in GRID_ENTITIES or not LABEL.match(label):
            raise ValueError(
                f"{text!r}: {modifier!r} is not res-<label> or den-<label> "
                "(e.g. MNI152NLin2009cAsym:res-2, fsLR:den-91k)"
            )
        if key in grid:
            raise ValueError(f"{text!r}: {key} given twice")
        grid[key] = label
    return SpaceOption(space, grid.get("res"), grid.get("den"))


def check_desc(text: str) -> str:
    """The ``--desc`` label, or ``ValueError`` when it is not letters and digits."""
    label = text.removeprefix("desc-")
    if not LABEL.match(label):
        raise ValueError(
            f"{text!r}: a desc label has only letters and digits, e.g. preproc or "
            "smoothAROMAnonaggr"
        )
    return label


def _normalised(label: str | None) -> str | None:
    """A grid label as compared: no entity and ``native`` are the same grid."""
    return None if label in (None, NATIVE) else label


def _same_label(found: str | None, wanted: str | None) -> bool:
    found, wanted = _normalised(found), _normalised(wanted)
    if found is not None and wanted is not None and found.isdigit() and wanted.isdigit():
        return int(found) == int(wanted)
    return found == wanted


def describe(key: str, label: str | None) -> str:
    """``res-2``, or ``no res entity (native)`` for an absent label."""
    if _normalised(label) is None:
        return f"no {key} entity" + (" (res-native)" if key == "res" else "")
    return f"{key}-{label}"


def default_label(labels: set[str | None]) -> str | None:
    """The grid used when several exist and none is asked for.

    The series without the entity first (fMRIPrep writes a space asked for without a
    resolution at the BOLD's own grid, res-native, with no ``res`` entity: that is what a
    bare space name means to fMRIPrep); else the lowest index, numerically by its leading
    digits (TemplateFlow's ``res-1`` is a template's finest grid; ``den-91k`` before
    ``den-170k``), then by text.
    """
    if any(_normalised(label) is None for label in labels):
        return None

    def order(label: str) -> tuple[int, str]:
        digits = re.match(r"\d*", label).group()
        return (int(digits) if digits else 1 << 30, label)

    return min((label for label in labels if label is not None), key=order)


def _run_key(path: str) -> tuple[tuple[str, str], ...]:
    entities = split_name(path)[0]
    return tuple((k, v) for k, v in entities.items() if k not in GRID_ENTITIES)


def select_grid(bolds: Sequence[str], space: str | None, requested: Mapping[str, str | None]):
    """Keep the series at one resolution and density: the requested ones or the default.

    Parameters
    ----------
    bolds : sequence of str
        Preprocessed BOLD files of one space and desc.
    space : str or None
        That space, for messages.
    requested : mapping of str to str or None
        ``{"res": label or None, "den": label or None}`` from ``--space``.

    Returns
    -------
    list of str
        The files kept. Runs that have no file at the chosen grid are left out with a
        warning naming the grids they have.

    Raises
    ------
    InputError
        A requested grid that no file has (exit 3), with the grids available.
    """
    kept = list(bolds)
    for key in GRID_ENTITIES:
        labels = {split_name(b)[0].get(key) for b in kept}
        wanted = requested.get(key)
        if wanted is None:
            if len(labels) <= 1:
                continue
            wanted = default_label(labels)
            LOGGER.info(
                "space %s: preprocessed BOLD at several %s (%s); using %s (choose with "
                "--space %s:%s-<label>)",
                space,
                "resolutions" if key == "res" else "densities",
                ", ".join(describe(key, label) for label in _sorted(labels)),
                describe(key, wanted),
                space,
                key,
            )
        chosen = [b for b in kept if _same_label(split_name(b)[0].get(key), wanted)]
        if not chosen:
            raise InputError(
                f"--space {space}:{key}-{requested[key]}: no preprocessed BOLD at that "
                f"{GRID_ENTITIES[key]}; available: "
                f"{', '.join(describe(key, label) for label in _sorted(labels))}"
            )
        _warn_left_out(kept, chosen, key, wanted)
        kept = chosen
    return kept


def _sorted(labels: set[str | None]) -> list[str | None]:
    remaining, ordered = set(labels), []
    while remaining:
        first = default_label(remaining)
        ordered.append(first)
        remaining -= {first} if first is not None else {None, NATIVE}
    return ordered


def _warn_left_out(before: Sequence[str], after: Sequence[str], key: str, wanted) -> None:
    """Warn about runs whose series exist only at other grids than the one chosen."""
    kept_runs = {_run_key(b) for b in after}
    missing: dict[tuple, list[str | None]] = {}
    for bold in before:
        if _run_key(bold) not in kept_runs:
            missing.setdefault(_run_key(bold), []).append(split_name(bold)[0].get(key))
    for run, labels in sorted(missing.items()):
        LOGGER.warning(
            "%s: no preprocessed BOLD with %s (found %s); run not analysed",
            " ".join(f"{k}-{v}" for k, v in raw_entities(dict(run)).items()),
            describe(key, wanted),
            ", ".join(describe(key, label) for label in labels),
        )
