"""BIDS entities read from file names, and the inheritance rule that matches files to runs."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

ENTITY_PATTERN = re.compile(r"^([a-zA-Z]+)-([a-zA-Z0-9+]+)$")
# Entities that only derivatives carry: ignored when matching a derivative run to raw files.
DERIVATIVE_ENTITIES = frozenset({"space", "res", "den", "desc", "label", "atlas", "roi"})


def split_name(path: Path | str) -> tuple[dict[str, str], str, str]:
    """Split a BIDS file name into entities, suffix and extension.

    Parameters
    ----------
    path : Path or str
        A file path such as ``sub-01/func/sub-01_task-x_run-1_bold.nii.gz``.

    Returns
    -------
    entities : dict of str to str
        Entity key to value, in file-name order, values exactly as written (``run-01``
        stays ``"01"``).
    suffix : str
        The part after the last entity, e.g. ``"bold"``.
    extension : str
        Everything from the first dot, e.g. ``".nii.gz"``.
    """
    entities, suffix, extension = _split_file_name(os.path.basename(os.fspath(path)))
    return dict(entities), suffix, extension


@functools.lru_cache(maxsize=65_536)  # discovery matches every candidate file to every run
def _split_file_name(name: str) -> tuple[tuple[tuple[str, str], ...], str, str]:
    stem, dot, rest = name.partition(".")
    extension = dot + rest
    *head, last = stem.split("_")
    suffix = "" if ENTITY_PATTERN.match(last) else last
    if not suffix:
        head.append(last)
    entities = {}
    for part in head:
        match = ENTITY_PATTERN.match(part)
        if match:
            entities[match.group(1)] = match.group(2)
    return tuple(entities.items()), suffix, extension


def same_value(key: str, left: str, right: str) -> bool:
    """Whether two entity values are equal; ``run`` and ``echo`` compare as integers."""
    if key in ("run", "echo") and left.isdigit() and right.isdigit():
        return int(left) == int(right)
    return left == right


def applies_to(file_entities: Mapping[str, str], run_entities: Mapping[str, str]) -> bool:
    """Whether a file with ``file_entities`` applies to a run (BIDS inheritance rule).

    Every entity of the file must be present in the run with the same value.
    """
    return all(
        key in run_entities and same_value(key, value, run_entities[key])
        for key, value in file_entities.items()
    )


def applicable_files(
    candidates: Iterable[Path], run_entities: Mapping[str, str], root: Path, run_dir: Path
) -> list[Path]:
    """Files that apply to a run, least specific first (BIDS inheritance principle).

    Parameters
    ----------
    candidates : iterable of Path
        Files with the right suffix and extension (e.g. every ``events.tsv``).
    run_entities : mapping
        The run's entities (derivative-only entities removed).
    root : Path
        Dataset root.
    run_dir : Path
        The folder the run's raw data lives in, e.g. ``root/sub-01/ses-1/func``.

    Returns
    -------
    list of Path
        Candidates whose entities are a subset of the run's and whose folder is the
        run's folder or one of its parents, sorted by (number of entities, depth).
    """
    ancestors = {run_dir, *run_dir.parents}
    chosen = []
    for path in candidates:
        entities, _, _ = split_name(path)
        if path.parent in ancestors and applies_to(entities, run_entities):
            try:
                depth = len(path.parent.relative_to(root).parts)
            except ValueError:
                continue
            chosen.append((len(entities), depth, str(path), path))
    return [item[-1] for item in sorted(chosen)]


def raw_entities(entities: Mapping[str, str]) -> dict[str, str]:
    """Drop derivative-only entities (space, desc, ...) from an entity mapping."""
    return {k: v for k, v in entities.items() if k not in DERIVATIVE_ENTITIES}
