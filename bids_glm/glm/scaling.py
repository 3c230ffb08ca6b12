"""Signal scaling of masked data before the GLM (percent signal change, as nilearn).

nilearn's ``mean_scaling`` maps each voxel's series to ``100 * (Y / m - 1)`` with ``m`` the
voxel's temporal mean floored at 1 (``max(m, 1)``): zero-mean (e.g. already centred or empty)
and negative-mean voxels are divided by 1, so they are shifted and scaled by 100 rather than
blown up. The same is done here, chunk by chunk and in place; the only difference is that each
chunk's mean and division are computed in float64 (nilearn accumulates a float32 input in
float32), so float32 outputs are the correctly rounded values of the exact scaling.
"""

from __future__ import annotations

import warnings

import numpy as np

SCALING_MODES = ("percent", "none")


def scale_signal(Y: np.ndarray, mode: str = "percent", chunk_voxels: int = 16384) -> np.ndarray:
    """Scale each voxel's time series to percent signal change around its mean.

    Parameters
    ----------
    Y : ndarray, shape (n_scans, V)
        Data, time along axis 0. A floating-point array is **modified in place** and returned
        (no float64 copy of the whole array is made); any other dtype is first converted to a
        new float32 array.
    mode : {"percent", "none"}
        "percent": ``Y <- 100 * (Y / max(mean_t(Y), 1) - 1)`` per voxel. "none": ``Y`` is
        returned unchanged.
    chunk_voxels : int
        Voxels processed at a time (each chunk is cast to float64 for the arithmetic).

    Returns
    -------
    ndarray, shape (n_scans, V)
        The scaled data (the same array object as ``Y`` when ``Y`` is floating point).

    Warns
    -----
    UserWarning
        When some voxels have a temporal mean below 1 and are therefore divided by 1.
    """
    if mode not in SCALING_MODES:
        raise ValueError(f"scaling mode must be one of {SCALING_MODES}; received {mode!r}")
    if Y.ndim != 2:
        raise ValueError(f"Y must be a 2-D (n_scans, n_voxels) array; received shape {Y.shape}")
    if mode == "none":
        return Y
    if not np.issubdtype(Y.dtype, np.floating):
        Y = Y.astype(np.float32)
    n_floored = 0
    for start in range(0, Y.shape[1], chunk_voxels):
        chunk = slice(start, start + chunk_voxels)
        values = Y[:, chunk].astype(np.float64)
        mean = values.mean(axis=0)
        n_floored += int(np.count_nonzero(mean < 1))
        values /= np.maximum(mean, 1.0)
        values -= 1.0
        values *= 100.0
        Y[:, chunk] = values
    if n_floored:
        warnings.warn(
            f"{n_floored} voxel(s) have a temporal mean below 1 (centred, empty or negative "
            "data); their mean was floored at 1 before percent scaling, as nilearn does",
            UserWarning,
            stacklevel=2,
        )
    return Y
