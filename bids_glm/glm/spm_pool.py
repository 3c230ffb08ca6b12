"""The voxels SPM12 pools to estimate serial correlations (``spm_est_non_sphericity.m``).

An OLS fit of the scaled, high-pass filtered (unwhitened) data selects the voxels whose F
statistic for "effects of interest" (every column but the session constants) exceeds the
``1 - UFp`` quantile of ``F(trMV, trRV)`` (``UFp = 0.001``; ``trRV = n - rank(KX)``). The
pooled covariance ``Cy`` is the mean of ``y y'`` over those voxels, using the *unfiltered*
scaled data, each voxel scaled by ``sqrt(trRV / ResSS)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from bids_glm.errors import AnalysisError
from bids_glm.glm.spm_filter import apply_high_pass
from bids_glm.glm.spm_space import design_space
from bids_glm.runtime.progress import Progress
from bids_glm.runtime.threads import for_each_in_threads, thread_budget

__all__ = ["SPM_UFP", "PooledCovariance", "pooled_covariance", "scaled_chunk", "voxel_chunks"]

SPM_UFP = 0.001
VOXEL_CHUNK = 2048


@dataclass(frozen=True)
class PooledCovariance:
    """``xVi.Cy`` and how it was pooled.

    Attributes
    ----------
    covariance : numpy.ndarray
        ``(n, n)`` mean of the pooled voxels' scaled ``y y'``.
    selected : numpy.ndarray
        ``(n_voxels,)`` bool: the pooled voxels.
    threshold_f : float
        ``UF``, the F threshold.
    interest_dof : int
        ``trMV``, numerator degrees of freedom of the F test.
    residual_dof : int
        ``trRV``, its denominator degrees of freedom.
    """

    covariance: np.ndarray
    selected: np.ndarray
    threshold_f: float
    interest_dof: int
    residual_dof: int

    @property
    def n_voxels(self) -> int:
        """Number of pooled voxels."""
        return int(self.selected.sum())


def voxel_chunks(n_voxels: int, chunk: int = VOXEL_CHUNK) -> list[slice]:
    """Consecutive slices of at most ``chunk`` voxels."""
    return [slice(start, min(start + chunk, n_voxels)) for start in range(0, n_voxels, chunk)]


def scaled_chunk(data: np.ndarray, scale: np.ndarray, block: slice) -> np.ndarray:
    """A chunk of voxels in float64, each scan multiplied by its scale factor."""
    scaled = data[:, block].astype(np.float64)
    scaled *= scale[:, None]
    return scaled


def _interest_basis(filtered_design: np.ndarray, nuisance_columns: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the filtered design's part orthogonal to its nuisance columns."""
    nuisance = design_space(filtered_design[:, nuisance_columns])
    interest = nuisance.residuals(filtered_design)
    return design_space(interest).basis


def pooled_covariance(
    data: np.ndarray,
    scale: np.ndarray,
    design: np.ndarray,
    session_rows: tuple[np.ndarray, ...],
    drift_bases: tuple[np.ndarray, ...],
    nuisance_columns: np.ndarray,
    ufp: float = SPM_UFP,
) -> PooledCovariance:
    """Select SPM's ReML voxels and average their covariance.

    Parameters
    ----------
    data : array_like
        ``(n, n_voxels)`` raw in-mask data (float32 is fine), read as ``data[:, start:stop]``
        (an array, or the pipeline's ``ChunkedSeries``).
    scale : numpy.ndarray
        ``(n,)`` per-scan scale factors ``gSF``.
    design : numpy.ndarray
        ``(n, p)`` ``xX.X``.
    session_rows, drift_bases
        Each session's rows and DCT basis.
    nuisance_columns : numpy.ndarray
        Columns left out of "effects of interest" (``iB``: the session constants).
    ufp : float
        Upper-tail probability of the F threshold.

    Returns
    -------
    PooledCovariance

    Raises
    ------
    AnalysisError
        When no voxel passes the F test (SPM: "There are no significant voxels").
    """
    filtered = apply_high_pass(design, session_rows, drift_bases)
    space = design_space(filtered)
    interest = _interest_basis(filtered, nuisance_columns)
    interest_dof = interest.shape[1]
    residual_dof = design.shape[0] - space.rank
    threshold = float(special.fdtri(interest_dof, residual_dof, 1.0 - ufp))
    n = design.shape[0]
    selected = np.zeros(data.shape[1], dtype=bool)
    chunks = voxel_chunks(data.shape[1])
    partial: dict[int, np.ndarray] = {}

    def pool_chunk(index: int) -> None:
        block = chunks[index]
        scaled = scaled_chunk(data, scale, block)
        kept = apply_high_pass(scaled, session_rows, drift_bases)
        residual_ss = np.sum(space.residuals(kept) ** 2, axis=0)
        extra_ss = np.sum((interest.T @ kept) ** 2, axis=0)
        passes = extra_ss / interest_dof > threshold * residual_ss / residual_dof
        selected[block] = passes
        weighted = scaled[:, passes] * np.sqrt(residual_dof / residual_ss[passes])
        partial[index] = weighted @ weighted.T

    # chunks in waves of one per thread, each wave's (n, n) products added in chunk order
    # as soon as it is done: the same sum to the bit as adding all chunks' products in
    # order, with n_threads of them alive instead of one per chunk (2,000 scans: 32 MB each,
    # 175 chunks on the MNI brain)
    covariance = np.zeros((n, n))
    n_threads = thread_budget()
    progress = Progress("SPM12 ReML pool", data.shape[1], "voxels tested")
    for first in range(0, len(chunks), n_threads):
        wave = range(first, min(first + n_threads, len(chunks)))
        for_each_in_threads(pool_chunk, wave, n_threads, "spm-pool")
        for index in wave:
            covariance += partial.pop(index)
        progress.update(chunks[wave[-1]].stop)
    if not selected.any():
        raise AnalysisError(
            "SPM12 serial correlations: no voxel passes the F test of effects of interest "
            f"at UFp = {ufp}; fit with --noise-model ols"
        )
    return PooledCovariance(
        covariance=covariance / selected.sum(),
        selected=selected,
        threshold_f=threshold,
        interest_dof=interest_dof,
        residual_dof=residual_dof,
    )
