"""Which columns of a (T, V) series can be fitted, and how many a map leaves out."""

from __future__ import annotations

import numpy as np


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
    finite = np.isfinite(data).all(axis=0)
    if not finite.all():
        bad = data[:, ~finite]
        data[:, ~finite] = np.where(np.isfinite(bad), bad, 0.0)
    varying = np.ptp(data, axis=0) > 0 if data.shape[0] else np.zeros(data.shape[1], bool)
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
