"""AR(1) refit of every voxel from its OLS summaries, without reading the data again.

nilearn refits each AR bin ``b`` (coefficient ``rho``, whitening ``W``, whitened design
``wX = W X``) as ``beta_b = pinv(wX) W y``. Writing ``y = X beta_ols + e`` (OLS fit and
residuals) and ``pinv(wX) = cov_b wX^T`` with ``cov_b = pinv(wX) pinv(wX)^T``:

``beta_b = beta_ols + delta``,  ``delta = cov_b wX^T W e = cov_b X^T W^T W e``,

and, because ``X^T e = 0`` and ``W^T W = I - rho (S + S^T) + rho^2 diag(1, ..., 1, 0)``
(``S`` the one-step delay), ``X^T W^T W e = -rho N^T e - rho^2 x_{n-1} e_{n-1}`` with
``N = neighbour_sum(X)``. The whitened residual sum of squares follows from the residual
moments: ``|W e|^2 = (1 + rho^2) S_0 - 2 rho S_1 - rho^2 e_{n-1}^2`` and
``rss_b = |W e|^2 - delta^T X^T W^T W e``. Only ``(p, V)`` arrays and ``(p, p)`` products per
bin are involved, and every term is of the residuals' size, so no precision is lost to
cancellation (the quantities equal nilearn's explicit computation to ~1e-13 relative).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bids_glm.glm.ar import LAST, SUM, SUM_LAG1, SUM_SQUARES, whiten_ar1
from bids_glm.glm.ols import DesignOperators, OlsPass, design_operators, voxel_chunks
from bids_glm.runtime.threads import for_each_in_threads


@dataclass(frozen=True)
class VoxelFits:
    """Per-voxel results of a (whitened) least-squares fit.

    Attributes
    ----------
    beta : ndarray, shape (p, V)
    rss : ndarray, shape (V,)
        Sum of squared (whitened) residuals.
    r_squared : ndarray, shape (V,)
        ``var(wX beta) / var(W y)`` over time; 0 where the (whitened) data are constant.
    """

    beta: np.ndarray
    rss: np.ndarray
    r_squared: np.ndarray


def whitened_operators(design: np.ndarray, bin_rho: np.ndarray) -> list[DesignOperators]:
    """Whitened design, pseudo-inverse and unscaled covariance for each AR(1) bin.

    Parameters
    ----------
    design : ndarray, shape (n, p), float64
    bin_rho : ndarray, shape (B,)

    Returns
    -------
    list of DesignOperators, length B
    """
    return [design_operators(whiten_ar1(design.copy(), rho)) for rho in bin_rho]


def explained_fraction(
    fit_squares: np.ndarray,
    fit_sum: np.ndarray,
    residual_squares: np.ndarray,
    residual_sum: np.ndarray,
    n_scans: int,
) -> np.ndarray:
    """``var(fitted) / var(data)`` from sums, with data = fitted + residuals (orthogonal).

    Returns 0 where the data variance is not positive.
    """
    fit_variance = np.maximum(fit_squares / n_scans - (fit_sum / n_scans) ** 2, 0.0)
    data_sum = fit_sum + residual_sum
    data_squares = fit_squares + residual_squares
    data_variance = np.maximum(data_squares / n_scans - (data_sum / n_scans) ** 2, 0.0)
    return np.divide(
        fit_variance, data_variance, out=np.zeros_like(data_variance), where=data_variance > 0
    )


def _fitted_sums(
    design: np.ndarray, gram: np.ndarray, beta: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``sum_t (X beta)_t**2`` and ``sum_t (X beta)_t`` per voxel, from ``gram = X^T X``."""
    return np.einsum("iv,iv->v", beta, gram @ beta), design.sum(axis=0) @ beta


def ols_voxel_fits(design: np.ndarray, ols: OlsPass) -> VoxelFits:
    """The OLS fit's beta, residual sum of squares and R^2 per voxel.

    Parameters
    ----------
    design : ndarray, shape (n, p)
    ols : OlsPass

    Returns
    -------
    VoxelFits
    """
    rss = ols.moments[SUM_SQUARES]
    fit_squares, fit_sum = _fitted_sums(design, design.T @ design, ols.beta)
    r_squared = explained_fraction(fit_squares, fit_sum, rss, ols.moments[SUM], design.shape[0])
    return VoxelFits(beta=ols.beta, rss=rss, r_squared=r_squared)


def _refit_bin(
    design: np.ndarray,
    operators: DesignOperators,
    rho: float,
    beta_ols: np.ndarray,
    moments: np.ndarray,
    lag_cross: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Refit the voxels of one bin (columns of the inputs); return beta, rss, R^2."""
    last = moments[LAST]
    whitened_cross = -rho * lag_cross - rho**2 * np.outer(design[-1], last)
    delta = operators.cov @ whitened_cross
    beta = beta_ols + delta
    squares = moments[SUM_SQUARES]
    whitened_squares = (1.0 + rho**2) * squares - 2.0 * rho * moments[SUM_LAG1] - (rho * last) ** 2
    rss = np.maximum(whitened_squares - np.einsum("iv,iv->v", delta, whitened_cross), 0.0)
    residual_total = moments[SUM] - design.sum(axis=0) @ delta
    residual_last = last - design[-1] @ delta
    whitened_residual_sum = residual_total - rho * (residual_total - residual_last)
    fit_squares, fit_sum = _fitted_sums(operators.design, operators.gram, beta)
    r_squared = explained_fraction(
        fit_squares, fit_sum, rss, whitened_residual_sum, design.shape[0]
    )
    return beta, rss, r_squared


def ar1_voxel_fits(
    design: np.ndarray,
    ols: OlsPass,
    bin_rho: np.ndarray,
    voxel_bin: np.ndarray,
    operators: list[DesignOperators],
    chunk_voxels: int = 16384,
    n_threads: int = 1,
    overwrite_ols: bool = False,
) -> VoxelFits:
    """Refit every voxel with the AR(1) whitening of its bin.

    Parameters
    ----------
    design : ndarray, shape (n, p)
        The unwhitened design.
    ols : OlsPass
        OLS summaries computed with ``lag_cross=True``.
    bin_rho : ndarray, shape (B,)
        Coefficient of each bin.
    voxel_bin : ndarray, shape (V,), intp
        Bin of each voxel.
    operators : list of DesignOperators
        `whitened_operators` of ``design`` for ``bin_rho``.
    chunk_voxels : int
        Voxels refitted together (bounds the temporary memory).
    n_threads : int
        Threads sharing the blocks of voxels; the result does not depend on it.
    overwrite_ols : bool
        Write the refitted beta into ``ols.beta`` (saving a (p, V) array): each block reads
        its voxels' OLS estimates before it writes theirs.

    Returns
    -------
    VoxelFits
        As nilearn's ``pinv(wX) @ wY`` fit, its whitened residual sum of squares and
        pseudo-R^2.
    """
    if ols.lag_cross is None:
        raise ValueError("the OLS pass must be computed with lag_cross=True for an AR(1) refit")
    # a stable sort of small integers is a radix sort (8x faster than on intp)
    small = np.int16 if voxel_bin.size == 0 or voxel_bin.max() < 2**15 else np.intp
    order = np.argsort(voxel_bin.astype(small, copy=False), kind="stable")
    sorted_bins = voxel_bin[order]
    beta = ols.beta if overwrite_ols else np.empty_like(ols.beta)
    rss = np.empty(order.size)
    r_squared = np.empty(order.size)

    def refit_block(block: slice) -> None:
        """Voxels ``order[block]`` (consecutive in bin order: each bin a run of columns)."""
        voxels = order[block]
        block_bins = sorted_bins[block]
        inputs = tuple(
            np.take(values, voxels, axis=1) for values in (ols.beta, ols.moments, ols.lag_cross)
        )
        outputs = (np.empty_like(inputs[0]), np.empty(voxels.size), np.empty(voxels.size))
        present = np.unique(block_bins)
        edges = np.searchsorted(block_bins, np.append(present, present[-1] + 1))
        for bin_index, start, stop in zip(present, edges[:-1], edges[1:], strict=True):
            part = slice(start, stop)
            fitted = _refit_bin(
                design,
                operators[bin_index],
                float(bin_rho[bin_index]),
                *(values[:, part] for values in inputs),
            )
            for target, values in zip(outputs, fitted, strict=True):
                target[..., part] = values
        beta[:, voxels], rss[voxels], r_squared[voxels] = outputs  # disjoint per block

    blocks = list(voxel_chunks(order.size, chunk_voxels))
    for_each_in_threads(refit_block, blocks, n_threads, "refit")
    return VoxelFits(beta=beta, rss=rss, r_squared=r_squared)
