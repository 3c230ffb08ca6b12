"""AR(1) noise model: Yule-Walker estimate from OLS residuals, binning, and prewhitening.

Numerics follow nilearn 0.14 (``run_glm`` with ``noise_model="ar1"``):

* the residuals of *all* voxels are centred on their single global mean ``m``;
* with ``y = e - m``, ``r_k = sum_t y_t y_{t+k} / ((n - k) n)`` and ``rho = r_1 / r_0``;
* ``rho`` is truncated (towards zero) to a multiple of ``1 / n_bins``; voxels sharing a
  truncated value form one bin, refitted with that value;
* whitening keeps row 0 and replaces row ``t >= 1`` by ``x_t - rho x_{t-1}``.

Because the global mean needs every voxel's residuals, the residuals are reduced chunk by chunk
to five per-voxel moments (see `residual_moments`), from which ``r_0`` and ``r_1`` of the
centred residuals follow exactly. One deliberate difference: a voxel whose centred residuals
are all zero gets ``rho = 0`` where nilearn computes ``0 / 0``. (A constant voxel usually still
has ``rho ~ 1``, as in nilearn, because the global mean is a tiny non-zero number; its fit is
zero whatever the bin.)
"""

from __future__ import annotations

import numpy as np

# Rows of the array returned by residual_moments.
SUM_SQUARES, SUM_LAG1, SUM, FIRST, LAST = range(5)


def residual_moments(residuals: np.ndarray) -> np.ndarray:
    """Per-voxel moments of OLS residuals needed by the AR(1) estimate.

    Parameters
    ----------
    residuals : ndarray, shape (n, k), float64

    Returns
    -------
    ndarray, shape (5, k), float64
        Rows: ``sum_t e_t**2``, ``sum_t e_t e_{t+1}``, ``sum_t e_t``, ``e_0``, ``e_{n-1}``.
    """
    moments = np.empty((5, residuals.shape[1]), dtype=np.float64)
    moments[SUM_SQUARES] = np.einsum("ij,ij->j", residuals, residuals)
    moments[SUM_LAG1] = np.einsum("ij,ij->j", residuals[:-1], residuals[1:])
    moments[SUM] = residuals.sum(axis=0)
    moments[FIRST] = residuals[0]
    moments[LAST] = residuals[-1]
    return moments


def yule_walker_ar1(
    moments: np.ndarray, n_scans: int, mean: float | np.ndarray | None = None
) -> np.ndarray:
    """AR(1) coefficient of every voxel from its residual moments.

    Parameters
    ----------
    moments : ndarray, shape (5, V) or (5, ...)
        Output of `residual_moments` for all V voxels (chunks concatenated along axis 1).
    n_scans : int
        Number of time points n.
    mean : float or ndarray, optional
        The residuals' global mean (over all voxels and time points), broadcast against
        ``moments[0]``; default: computed from ``moments`` (which must then hold all voxels).

    Returns
    -------
    ndarray, shape (V,), float64
        ``r_1 / r_0`` of the residuals minus their global mean; 0 where ``r_0 == 0``.
    """
    n = float(n_scans)
    total = moments[SUM]
    if mean is None:
        mean = total.sum() / (n * moments.shape[1])
    centred_squares = moments[SUM_SQUARES] - 2.0 * mean * total + n * mean**2
    centred_lag1 = (
        moments[SUM_LAG1]
        - mean * (2.0 * total - moments[FIRST] - moments[LAST])
        + (n - 1.0) * mean**2
    )
    r0 = centred_squares / (n * n)
    r1 = centred_lag1 / ((n - 1.0) * n)
    return np.divide(r1, r0, out=np.zeros_like(r1), where=r0 > 0)


def bin_ar1(rho: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Group voxels by their AR(1) coefficient truncated to a multiple of ``1 / n_bins``.

    Parameters
    ----------
    rho : ndarray, shape (V,)
        Per-voxel AR(1) coefficients.
    n_bins : int
        Number of bins per unit of rho (100 gives bins of 0.01).

    Returns
    -------
    bin_rho : ndarray, shape (B,)
        Distinct truncated coefficients, ascending.
    voxel_bin : ndarray, shape (V,), intp
        Index of each voxel's bin in ``bin_rho``.
    """
    steps = np.trunc(rho * n_bins).ravel()
    lowest, highest = (steps.min(), steps.max()) if steps.size else (0.0, 0.0)
    if not (np.isfinite(lowest) and np.isfinite(highest) and highest - lowest < steps.size):
        unique_steps, voxel_bin = np.unique(steps, return_inverse=True)
        return unique_steps / n_bins, voxel_bin.astype(np.intp).reshape(rho.shape)
    # whole steps in a short range: counted, not sorted (as np.unique, 5x faster)
    offsets = (steps - lowest).astype(np.intp)
    present = np.flatnonzero(np.bincount(offsets))
    index_of_offset = np.zeros(int(highest - lowest) + 1, dtype=np.intp)
    index_of_offset[present] = np.arange(present.size)
    return (present + lowest) / n_bins, index_of_offset[offsets].reshape(rho.shape)


def whiten_ar1(data: np.ndarray, rho: float | np.ndarray) -> np.ndarray:
    """Prewhiten time series in place: rows ``t >= 1`` become ``x_t - rho * x_{t-1}``.

    Parameters
    ----------
    data : ndarray, shape (n, k), float64
        Time series in columns; **overwritten**.
    rho : float or ndarray of shape (k,)
        One coefficient, or one per column.

    Returns
    -------
    ndarray
        ``data``, whitened.
    """
    data[1:] -= np.asarray(rho) * data[:-1]
    return data
