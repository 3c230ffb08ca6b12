"""Signal scaling of masked data before the GLM, exactly as nilearn's ``mean_scaling``.

Two scalings map the data to percent change around a mean ``m``, ``Y <- 100 * (Y / m - 1)``,
with ``m`` floored at 1 (``max(m, 1)``) so that zero-mean (e.g. already centred or empty) and
negative-mean data are shifted and scaled by 100 rather than blown up:

* ``"percent"`` (default): ``m`` is each voxel's temporal mean (nilearn's
  ``signal_scaling=0``);
* ``"global"``: ``m`` is the grand mean over all voxels and time points, one number for the
  run (nilearn's ``signal_scaling=(0, 1)``, "grand mean scaling").

The arithmetic is nilearn's, in the data's own precision (float32 for BOLD: the mean is
accumulated in float32 by numpy, then divide, subtract 1, multiply by 100, each rounded to
float32), done in place. Reproducing it bit for bit matters: the AR(1) estimate is binned to
0.01, and a float64 mean moves estimates that sit within ~1e-5 of a bin edge into the
neighbouring bin, changing z there by up to ~0.03. The float32 mean's relative error
(~1e-7) is far below anything a statistic can resolve.
"""

from __future__ import annotations

import warnings

import numpy as np

SCALING_MODES = ("percent", "global", "none")


def scale_signal(
    Y: np.ndarray,
    mode: str = "percent",
    usable: np.ndarray | None = None,
    locations: str = "voxel(s)",
) -> np.ndarray:
    """Scale time series to percent signal change around their mean.

    Parameters
    ----------
    Y : ndarray, shape (n_scans, V)
        Data, time along axis 0. A floating-point array is **modified in place** and returned
        (no copy is made); any other dtype is first converted to a new float32 array.
    mode : {"percent", "global", "none"}
        "percent": ``Y <- 100 * (Y / max(mean_t(Y), 1) - 1)`` per voxel. "global": the same
        with one grand mean over all voxels and scans. "none": ``Y`` is returned unchanged.
    usable : ndarray of bool, shape (V,), optional
        The columns that will be fitted: only their floored means are warned about (the
        excluded ones, e.g. a surface's all-zero medial wall, are counted elsewhere).
    locations : str
        What the columns are, for the warning (``voxel(s)``, ``vertices``, ...).

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
    if mode == "none" or Y.size == 0:
        return Y
    if not np.issubdtype(Y.dtype, np.floating):
        Y = Y.astype(np.float32)
    if mode == "percent":
        warn_floored(percent_scale_columns(Y), mode, usable, locations)
        return Y
    mean = Y.mean(axis=(0, 1))
    warn_floored(mean, mode, usable, locations)
    return scale_around_mean(Y, mean)


def percent_scale_columns(Y: np.ndarray) -> np.ndarray:
    """``Y <- 100 * (Y / max(mean_t(Y), 1) - 1)`` per column, in place, without warnings.

    The arithmetic of `scale_signal` ("percent"), for a block of columns at a time (each
    column's result does not depend on the others). Returns the columns' temporal means,
    for `warn_floored` once every block was scaled.
    """
    mean = Y.mean(axis=0)
    scale_around_mean(Y, mean)
    return mean


def scale_around_mean(Y: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """``Y <- 100 * (Y / max(mean, 1) - 1)`` in place (``mean`` per column, or one value);
    returns ``Y``. The arithmetic of `scale_signal` once the mean is known."""
    Y /= np.maximum(mean, 1).astype(Y.dtype)
    Y -= 1
    Y *= 100
    return Y


def warn_floored(
    mean: np.ndarray, mode: str, usable: np.ndarray | None = None, locations: str = "voxel(s)"
) -> None:
    """Warn when means below 1 (of the ``usable`` columns) are floored at 1, as nilearn does."""
    floored = mean < 1
    if usable is not None and mode == "percent":
        floored = floored & usable
    n_floored = int(np.count_nonzero(floored))
    if n_floored:
        what = (
            f"{n_floored} {locations} have a temporal mean below 1"
            if mode == "percent"
            else f"the grand mean of the data is {float(mean):.6g}, below 1"
        )
        warnings.warn(
            f"{what} (centred, empty or negative data); floored at 1 before scaling, "
            "as nilearn does",
            UserWarning,
            stacklevel=3,
        )


def signal_affine(
    voxel_mean: np.ndarray,
    mode: str = "percent",
    usable: np.ndarray | None = None,
    locations: str = "voxel(s)",
) -> tuple[np.ndarray, float]:
    """The scaling of `scale_signal` as a per-voxel affine map ``y -> gain * y + offset``.

    Used when the data are not held but summed (`bids_glm.glm.cross_products`): the map is
    applied to the sums instead, in float64.

    Parameters
    ----------
    voxel_mean : ndarray, shape (V,)
        Each voxel's temporal mean (for "percent", ideally the float32 mean numpy forms, so
        the divisor is nilearn's).
    mode : {"percent", "global", "none"}
    usable, locations
        As `scale_signal`: the columns fitted (only their floored means are warned about)
        and what they are.

    Returns
    -------
    gain : ndarray, shape (V,), float64
    offset : float
        -100 for "percent" and "global", 0 for "none".

    Warns
    -----
    UserWarning
        As `scale_signal`, when means below 1 are floored at 1.
    """
    if mode not in SCALING_MODES:
        raise ValueError(f"scaling mode must be one of {SCALING_MODES}; received {mode!r}")
    voxel_mean = np.asarray(voxel_mean)
    if mode == "none" or voxel_mean.size == 0:
        return np.ones(voxel_mean.shape), 0.0
    mean = voxel_mean if mode == "percent" else np.mean(voxel_mean, dtype=np.float64)
    warn_floored(mean, mode, usable, locations)
    divisor = np.maximum(mean, 1).astype(voxel_mean.dtype).astype(np.float64)
    return np.broadcast_to(100.0 / divisor, voxel_mean.shape).copy(), -100.0
