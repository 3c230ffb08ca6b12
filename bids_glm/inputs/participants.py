"""Participant covariates for the group level: ``participants.tsv`` and ``participants.json``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from bids_glm.errors import InputError

LOGGER = logging.getLogger("bids_glm")


def read_covariates(bids_dir: Path, covariates: tuple[str, ...]) -> pd.DataFrame | None:
    """participants.tsv columns ``covariates`` indexed by label (no ``sub-``); n/a as NaN."""
    if not covariates:
        return None
    path = Path(bids_dir) / "participants.tsv"
    try:
        table = pd.read_csv(path, sep="\t", dtype=str, na_values=["n/a"], keep_default_na=False)
    except (OSError, pd.errors.ParserError) as err:
        raise InputError(f"{path}: needed for --group-covariates, not readable ({err})") from None
    absent = [name for name in ("participant_id", *covariates) if name not in table.columns]
    if absent:
        raise InputError(
            f"{path}: no column {absent}; expected participant_id and the covariates"
            f" {list(covariates)}; columns present: {list(table.columns)}"
        )
    table.index = table["participant_id"].str.removeprefix("sub-")
    return table[list(covariates)]


def categorical_columns(bids_dir: Path, covariates: tuple[str, ...]) -> set[str]:
    """Covariates that participants.json declares categorical (a ``Levels`` entry)."""
    path = Path(bids_dir) / "participants.json"
    try:
        described = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return set()
    return {
        name
        for name in covariates
        if isinstance(described.get(name), dict) and "Levels" in described[name]
    }


def usable_subjects(subjects: list[str], covariates: pd.DataFrame | None, what: str) -> list[str]:
    """Subjects with every covariate present; the others are named in a warning."""
    if covariates is None:
        return subjects
    complete = set(covariates.index[covariates.notna().all(axis=1)])
    lacking = [s for s in subjects if s not in complete]
    if lacking:
        LOGGER.warning(
            "%s: participants %s left out: a covariate (%s) is n/a or they have no row in"
            " participants.tsv",
            what,
            [f"sub-{s}" for s in lacking],
            ", ".join(covariates.columns),
        )
    return [s for s in subjects if s in complete]
