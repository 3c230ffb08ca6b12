"""User-supplied design matrices (``--design-dir``): find one per run, read it, check it.

A design file is a table with one row per volume of the run's BOLD series (dummy scans
included) and one column per regressor, its header naming the columns. It is found by its
name, with the entity matching used for the BOLD series (``run-1`` matches ``run-01``):

- bids-glm's own output, ``sub-<s>[_ses-<x>]_task-<t>[_acq-..]_run-<r>[_space-..]_design.tsv``;
- nilearn's ``save_glm_to_bids`` design tables (``[prefix]sub-.._run-<r>_design.tsv``,
  written without an index, the header naming the columns);
- the same names ending in ``.csv`` (comma-separated).

Every entity of the file's name must be one of the run's, with the same value, and the name
must carry ``sub``: a file such as ``run-1_design.tsv`` would apply to every participant.
When several files apply to a run, the one with the most entities is used; two files as
specific as each other are an error. A first column with an empty header (the frame times
or row numbers that ``DataFrame.to_csv`` writes by default) is taken as an index and dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd

from bids_glm.errors import InputError
from bids_glm.inputs.entities import applies_to, split_name

# a ``bids_glm.inputs.run_input.RunInput`` (a type variable: the user design needs none of it)
RunInput = TypeVar("RunInput")

LOGGER = logging.getLogger("bids_glm")
DESIGN_SUFFIX = "design"
SEPARATORS = {".tsv": "\t", ".csv": ","}


def design_files(design_dir: Path) -> list[Path]:
    """Every ``*_design.tsv`` / ``*_design.csv`` under ``design_dir`` (hidden ones left out)."""
    found = []
    for path in sorted(design_dir.rglob("*_design.*")):
        hidden = any(part.startswith(".") for part in path.relative_to(design_dir).parts)
        _, suffix, extension = split_name(path)
        if not hidden and path.is_file() and suffix == DESIGN_SUFFIX and extension in SEPARATORS:
            found.append(path)
    return found


def expected_name(run: RunInput) -> str:
    """The design file name bids-glm looks for first for ``run`` (for messages)."""
    entities = {k: v for k, v in run.entities.items() if k not in ("desc", "res", "den")}
    return "_".join(f"{k}-{v}" for k, v in entities.items()) + "_design.tsv"


def _design_for(run: RunInput, candidates: Sequence[Path]) -> Path | None:
    """The most specific candidate that applies to ``run``; ``InputError`` on a tie."""
    applying = []
    for path in candidates:
        entities, _, _ = split_name(path)
        if "sub" in entities and applies_to(entities, run.entities):
            applying.append((len(entities), path))
    if not applying:
        return None
    most = max(n for n, _ in applying)
    chosen = [path for n, path in applying if n == most]
    if len(chosen) > 1:
        raise InputError(
            f"--design-dir: several design files apply to {run.bold_path.name} "
            f"({', '.join(str(p) for p in chosen)}); expected exactly one"
        )
    return chosen[0]


def attach_user_designs(runs: Sequence[RunInput], design_dir: Path) -> list[RunInput]:
    """The runs with the design file of ``design_dir`` that applies to each.

    Raises
    ------
    InputError
        A run has no design file (every such run is named, with the file expected), or
        several apply equally.
    """
    candidates = design_files(design_dir)
    attached, missing = [], []
    for run in runs:
        path = _design_for(run, candidates)
        if path is None:
            missing.append(run)
        attached.append(replace(run, design_path=path))
    if missing:
        listed = "; ".join(
            f"{run.bold_path.name} (expected {design_dir / expected_name(run)} or a .csv)"
            for run in missing
        )
        raise InputError(
            f"--design-dir {design_dir}: no design file for {len(missing)} of {len(runs)} "
            f"run(s): {listed}; a design file is needed for every run analysed"
        )
    LOGGER.info(
        "--design-dir %s: %d run(s), each fitted with its design as given "
        "(no HRF, drift, confound or constant regressors are added)",
        design_dir,
        len(attached),
    )
    for run in attached:
        LOGGER.debug("%s: design %s", run.label, run.design_path)
    return attached


def _raw_table(path: Path) -> pd.DataFrame:
    """The file's cells as text, the header as row 0 (so duplicate names stay visible)."""
    try:
        return pd.read_csv(
            path,
            sep=SEPARATORS[split_name(path)[2]],
            header=None,
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=True,
        )
    except pd.errors.EmptyDataError:
        raise InputError(
            f"{path}: empty; expected a header naming the regressors, then one row per volume"
        ) from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as err:
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise InputError(
            f"{path}: not a readable table ({reason}); expected one row per volume and one "
            "column per regressor, with the same number of cells in every row"
        ) from None


def _column_names(path: Path, header: Sequence[str]) -> list[str]:
    names = [str(name).strip() for name in header]
    empty = [str(i + 1) for i, name in enumerate(names) if not name]
    if empty:
        raise InputError(
            f"{path}: column(s) {', '.join(empty)} have no name in the header; expected "
            "every regressor to be named"
        )
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise InputError(
            f"{path}: duplicate column name(s) {', '.join(duplicated)} in the header; "
            "expected each regressor to have its own name"
        )
    return names


def _numbers(path: Path, table: pd.DataFrame) -> pd.DataFrame:
    """The cells as float64; ``InputError`` naming the first cell that is not a finite number."""
    values = table.apply(lambda column: pd.to_numeric(column.str.strip(), errors="coerce"))
    values = values.astype(float)
    bad = ~np.isfinite(values.to_numpy())
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        column = table.columns[col]
        raise InputError(
            f"{path}: column {column!r}, row {row + 1} (line {row + 2} of the file): "
            f"{table.iat[row, col]!r} is not a finite number ({int(bad.sum())} such cell(s)); "
            "expected a number in every cell"
        )
    return values


def read_user_design(path: Path, n_volumes: int, n_dummy: int = 0) -> pd.DataFrame:
    """Read and check a user design: ``(n_volumes, p)`` float64, columns named as in the file.

    Parameters
    ----------
    path : Path
        The ``.tsv`` or ``.csv`` file.
    n_volumes : int
        Volumes of the run's BOLD series (dummy scans included).
    n_dummy : int
        ``--dummy-scans``, for the message when the design already lacks them.

    Raises
    ------
    InputError
        Unreadable, unnamed or duplicate columns, a cell that is not a finite number, or a
        number of rows other than ``n_volumes``; the message names the file and the field.
    """
    raw = _raw_table(path)
    header, body = raw.iloc[0].tolist(), raw.iloc[1:].reset_index(drop=True)
    if len(header) > 1 and not str(header[0]).strip():
        LOGGER.info("%s: first column has no name: taken as an index and left out", path.name)
        header, body = header[1:], body.iloc[:, 1:]
    body.columns = _column_names(path, header)
    if len(body) != n_volumes:
        hint = ""
        if n_dummy and len(body) == n_volumes - n_dummy:
            hint = (
                f" (--dummy-scans {n_dummy} removes the first rows itself: the design must "
                "cover every volume, dummy scans included)"
            )
        raise InputError(
            f"{path}: {len(body)} row(s) of regressors, but the BOLD series has {n_volumes} "
            f"volumes; expected one row per volume{hint}"
        )
    return _numbers(path, body)
