"""SPM12's global signal, session scaling and analysis threshold (``spm_global.c``,
``spm_fmri_spm_ui.m``).

Each scan's global ``g`` is the mean of its finite voxels above (mean of all finite
voxels) / 8. Scaling is per session: every scan of session ``s`` is multiplied by
``gSF = 100 / mean(g over s)``, so each session's scaled global mean is 100. A voxel
enters the analysis only if it exceeds ``TH = 0.8 * g * gSF`` in every scan (on the
scaled data; equivalently ``0.8 * g`` on the raw data).
"""

from __future__ import annotations

import numpy as np

__all__ = ["analysis_thresholds", "session_scale_factors", "spm_global"]

GRAND_MEAN = 100.0
MASK_THRESHOLD_FRACTION = 0.8


def spm_global(volume: np.ndarray, scratch: np.ndarray | None = None) -> float:
    """Global value of one scan, as ``spm_global`` computes it.

    Parameters
    ----------
    volume : numpy.ndarray
        The scan's voxel values (any shape; non-finite values are ignored).
    scratch : numpy.ndarray, optional
        A buffer of ``volume``'s size and dtype, reused to spare an allocation per scan.

    Returns
    -------
    float
        Mean of the finite voxels above an eighth of the mean of all finite voxels.
    """
    values = np.asarray(volume).ravel()
    total = values.sum(dtype=np.float64)
    if not np.isfinite(total):  # a non-finite value: leave those out
        values = values[np.isfinite(values)]
        total = values.sum(dtype=np.float64)
    # sums in float64 (as spm_global.c), comparisons against a float64 threshold
    above = values > np.float64(total) / (8.0 * values.size)
    if scratch is None or scratch.size != values.size or scratch.dtype != values.dtype:
        scratch = np.empty_like(values)
    selected_sum = np.multiply(values, above, out=scratch.ravel()).sum(dtype=np.float64)
    return float(selected_sum / np.count_nonzero(above))


def session_scale_factors(
    globals_: np.ndarray, session_rows: tuple[np.ndarray, ...], grand_mean: float = GRAND_MEAN
) -> np.ndarray:
    """Per-scan scale factors ``gSF``: grand mean / the session's mean global.

    Parameters
    ----------
    globals_ : numpy.ndarray
        ``(n_scans,)`` raw globals of every scan (``spm_global``).
    session_rows : tuple of numpy.ndarray
        Row indices of each session.
    grand_mean : float
        Target session mean (SPM: 100).

    Returns
    -------
    numpy.ndarray
        ``(n_scans,)`` factors, constant within a session.
    """
    factors = np.empty(len(globals_))
    for rows in session_rows:
        factors[rows] = grand_mean / np.mean(globals_[rows])
    return factors


def analysis_thresholds(
    globals_: np.ndarray, scale_factors: np.ndarray, fraction: float = MASK_THRESHOLD_FRACTION
) -> np.ndarray:
    """Per-scan thresholds ``xM.TH = fraction * g * gSF`` on the scaled data."""
    return fraction * np.asarray(globals_) * np.asarray(scale_factors)
