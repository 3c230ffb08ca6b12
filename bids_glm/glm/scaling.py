"""Signal scaling of masked data before the GLM, as nilearn's ``mean_scaling``.

Two scalings map the data to percent change around a mean ``m``, ``Y <- 100 * (Y / m - 1)``,
with ``m`` floored at 1 (``max(m, 1)``) so that zero-mean (e.g. already centred or empty) and
negative-mean data are shifted and scaled by 100 rather than blown up:

* ``"percent"`` (default): ``m`` is each voxel's temporal mean (nilearn's
  ``signal_scaling=0``);
* ``"global"``: ``m`` is the grand mean over all voxels and time points, one number for the
  run (nilearn's ``signal_scaling=(0, 1)``, "grand mean scaling").

Both work chunk by chunk and in place. The only difference from nilearn is that the means and
divisions are computed in float64 (nilearn accumulates a float32 input in float32), so float32
outputs are the correctly rounded values of the exact scaling.
"""

from __future__ import annotations

import warnings

import numpy as np

SCALING_MODES = ("percent", "global", "none")


def _voxel_chunks(n_voxels: int, chunk_voxels: int) -> list[slice]:
    return [slice(start, start + chunk_voxels) for start in range(0, n_voxels, chunk_voxels)]


def _grand_mean(Y: np.ndarray, chunk_voxels: int) -> float:
    total = sum(
        float(Y[:, chunk].sum(dtype=np.float64))
        for chunk in _voxel_chunks(Y.shape[1], chunk_voxels)
    )
    return total / Y.size


def _percent_change_in_place(Y: np.ndarray, chunk_voxels: int, grand_mean: float | None) -> int:
    """Scale ``Y`` chunk by chunk; return how many means were floored at 1."""
    n_floored = 0
    for chunk in _voxel_chunks(Y.shape[1], chunk_voxels):
        values = Y[:, chunk].astype(np.float64)
        if grand_mean is None:
            mean = values.mean(axis=0)
            n_floored += int(np.count_nonzero(mean < 1))
        else:
            mean = grand_mean
        values /= np.maximum(mean, 1.0)
        values -= 1.0
        values *= 100.0
        Y[:, chunk] = values
    return n_floored


def scale_signal(Y: np.ndarray, mode: str = "percent", chunk_voxels: int = 16384) -> np.ndarray:
    """Scale time series to percent signal change around their mean.

    Parameters
    ----------
    Y : ndarray, shape (n_scans, V)
        Data, time along axis 0. A floating-point array is **modified in place** and returned
        (no float64 copy of the whole array is made); any other dtype is first converted to a
        new float32 array.
    mode : {"percent", "global", "none"}
        "percent": ``Y <- 100 * (Y / max(mean_t(Y), 1) - 1)`` per voxel. "global": the same
        with one grand mean over all voxels and scans. "none": ``Y`` is returned unchanged.
    chunk_voxels : int
        Voxels processed at a time (each chunk is cast to float64 for the arithmetic).

    Returns
    -------
    ndarray, shape (n_scans, V)
        The scaled data (the same array object as ``Y`` when ``Y`` is floating point).

    Warns
    -----
    UserWarning
        When means below 1 (some voxels' for "percent", the grand mean for "global") are
        floored at 1.
    """
    if mode not in SCALING_MODES:
        raise ValueError(f"scaling mode must be one of {SCALING_MODES}; received {mode!r}")
    if Y.ndim != 2:
        raise ValueError(f"Y must be a 2-D (n_scans, n_voxels) array; received shape {Y.shape}")
    if int(chunk_voxels) != chunk_voxels or chunk_voxels < 1:
        raise ValueError(f"chunk_voxels must be a positive integer; received {chunk_voxels!r}")
    if mode == "none" or Y.size == 0:
        return Y
    if not np.issubdtype(Y.dtype, np.floating):
        Y = Y.astype(np.float32)
    chunk_voxels = int(chunk_voxels)
    if mode == "percent":
        n_floored = _percent_change_in_place(Y, chunk_voxels, None)
        if n_floored:
            warnings.warn(
                f"{n_floored} voxel(s) have a temporal mean below 1 (centred, empty or negative "
                "data); their mean was floored at 1 before percent scaling, as nilearn does",
                UserWarning,
                stacklevel=2,
            )
        return Y
    grand_mean = _grand_mean(Y, chunk_voxels)
    if grand_mean < 1:
        warnings.warn(
            f"the grand mean of the data is {grand_mean:.6g}, below 1 (centred, empty or "
            "negative data); it was floored at 1 before global scaling, as nilearn does",
            UserWarning,
            stacklevel=2,
        )
    _percent_change_in_place(Y, chunk_voxels, grand_mean)
    return Y
