"""Which columns of a (T, V) series can be fitted, and how many a map leaves out."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

LOGGER = logging.getLogger("bids_glm")
BLOCK_COLUMNS = 8192  # columns checked at a time: the (T, block) temporaries stay small


def finite_and_varying(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column of (T, V) ``data``: finite in every row, and not constant over the rows.

    Checked :data:`BLOCK_COLUMNS` columns at a time (a (T, V) bool array is a quarter of
    a float32 run). Returns two bool arrays of shape (V,).
    """
    finite = np.empty(data.shape[1], dtype=bool)
    varying = np.zeros(data.shape[1], dtype=bool)
    for start in range(0, data.shape[1], BLOCK_COLUMNS):
        part = data[:, start : start + BLOCK_COLUMNS]
        finite[start : start + BLOCK_COLUMNS] = np.isfinite(part).all(axis=0)
        if data.shape[0]:
            varying[start : start + BLOCK_COLUMNS] = np.ptp(part, axis=0) > 0
    return finite, varying


def log_unusable(path: Path, usable: np.ndarray, locations: str) -> None:
    """Log how many of a run's analysed ``locations`` cannot be fitted (if any)."""
    n_bad = int(np.count_nonzero(~usable))
    if n_bad:
        LOGGER.info("%s: %d %s constant or non-finite", Path(path).name, n_bad, locations)


def usable_columns(data: np.ndarray) -> np.ndarray:
    """Columns finite in every row and not constant over rows; non-finite values set to 0.

    Parameters
    ----------
    data : ndarray, shape (T, V)
        Modified in place: non-finite values become 0, so later sums stay finite.

    Returns
    -------
    ndarray of bool, shape (V,)
        True for the columns the GLM may fit (the others are excluded and counted, e.g.
        the medial wall of surface data, all zeros).
    """
    finite, varying = finite_and_varying(data)
    if not finite.all():
        bad = data[:, ~finite]
        data[:, ~finite] = np.where(np.isfinite(bad), bad, 0.0)
    return finite & varying


def exclusion_record(mask: np.ndarray, valid: np.ndarray, noun: str) -> dict[str, object]:
    """Sidecar fields on the locations a map leaves out (written as 0): how many, of all.

    ``mask`` covers every location of the geometry (True where analysed); ``valid`` the
    analysed ones, so locations not analysed count as left out too. ``noun`` names them
    (``Vertices``, ``Grayordinates``).
    """
    return {
        f"Excluded{noun}": int(mask.size - np.count_nonzero(valid)),
        f"Total{noun}": int(mask.size),
        "ExcludedValue": 0,
    }
