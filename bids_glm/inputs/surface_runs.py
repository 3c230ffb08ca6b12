"""Surface runs in fMRIPrep derivatives: each run's pair of hemisphere GIfTI files.

fMRIPrep names them in two generations, ``..._run-1_hemi-L_space-fsaverage5_bold.func.gii``
and the older ``..._run-1_space-fsaverage5_hemi-L_bold.func.gii``; both are paired here by
their other entities. :func:`surface_run_facts` gives what discovery needs from the files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from bids_glm.errors import InputError
from bids_glm.image.surface import GIFTI_EXTENSION, HEMISPHERES, gifti_header
from bids_glm.inputs.entities import split_name
from bids_glm.settings import Settings


def space_bolds(
    layout, filters: Mapping[str, object], settings: Settings, extension: str, pattern: str
) -> list[str]:
    """The derivatives' ``bold`` files of the requested space with ``extension``.

    Raises
    ------
    InputError
        None found: names ``pattern`` (what was looked for), the derivatives folders and the
        spaces their BOLD series do have.
    """
    found = layout.get(
        scope="derivatives",
        suffix="bold",
        extension=extension,
        space=settings.space,
        return_type="filename",
        **filters,
    )
    if not found:
        present = layout.get(scope="derivatives", suffix="bold", return_type="filename", **filters)
        spaces = sorted({str(split_name(p)[0].get("space")) for p in present})
        raise InputError(
            f"--space {settings.space}: no {pattern} in "
            f"{', '.join(map(str, settings.derivatives))} for the requested participants and "
            f"tasks; found spaces: {', '.join(spaces) or 'none'}"
        )
    return found


def surface_bolds(layout, filters: Mapping[str, object], settings: Settings) -> list[str]:
    """Both hemispheres' ``bold.func.gii`` of the requested surface space."""
    space = settings.space
    pattern = (
        f"*_hemi-<L|R>_space-{space}_bold{GIFTI_EXTENSION} "
        f"(or *_space-{space}_hemi-<L|R>_bold{GIFTI_EXTENSION})"
    )
    return space_bolds(layout, filters, settings, GIFTI_EXTENSION, pattern)


def hemisphere_pairs(
    files: Sequence[str],
) -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]]]:
    """The (left, right) GIfTI files of each run, in either fMRIPrep naming generation.

    Returns
    -------
    pairs : list of (Path, Path)
        Each run's left and right hemisphere, sorted.
    unpaired : list of (Path, str)
        Files that make no run, and why: no ``hemi`` entity, or one hemisphere only (naming
        the file expected). Each fails its run's unit only.
    """
    by_run: dict[tuple, dict[str, Path]] = {}
    unpaired = []
    for file in sorted(files):
        entities = split_name(file)[0]
        hemi = entities.get("hemi")
        if hemi not in HEMISPHERES:
            reason = f"{file}: expected a hemi-L or hemi-R entity in a surface series"
            unpaired.append((Path(file), reason))
            continue
        key = tuple(sorted((k, v) for k, v in entities.items() if k != "hemi"))
        by_run.setdefault(key, {})[hemi] = Path(file)
    pairs = []
    for found in by_run.values():
        missing = [h for h in HEMISPHERES if h not in found]
        if missing:
            present = next(iter(found.values()))
            expected = present.name.replace(f"hemi-{next(iter(found))}", f"hemi-{missing[0]}")
            reason = f"{present}: its other hemisphere is missing (expected {expected} beside it)"
            unpaired.append((present, reason))
            continue
        pairs.append((found["L"], found["R"]))
    return sorted(pairs), unpaired


def surface_run_facts(pair: tuple[Path, Path]) -> tuple[dict[str, str], int, float | None]:
    """A surface run's entities (no ``hemi``), volumes, and GIfTI time step in seconds.

    Raises
    ------
    InputError
        The hemispheres have different numbers of volumes.
    """
    left, right = pair
    entities = {k: v for k, v in split_name(left)[0].items() if k != "hemi"}
    header, n_right = gifti_header(left), gifti_header(right).n_volumes
    if header.n_volumes != n_right:
        raise InputError(f"{right}: {n_right} volumes, but {left.name} has {header.n_volumes}")
    return entities, header.n_volumes, header.time_step_s  # TimeStep: ms, converted
