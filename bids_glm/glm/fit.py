"""Fit one run's first-level GLM (OLS or AR(1) prewhitened) over voxel chunks.

The data matrix is never copied to float64 as a whole: each chunk of ``chunk_voxels`` columns
is cast to float64 for the algebra and released. AR(1) needs two passes over the data: one OLS
pass to estimate every voxel's coefficient (the estimate depends on the global residual mean),
and one refit in which each chunk's voxels are sorted by AR bin so that every bin is a single
matrix product.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from bids_glm.glm.ar import (
    bin_ar1,
    residual_moments,
    whiten_ar1,
    whitened_operators,
    yule_walker_ar1,
)
from bids_glm.glm.ols import design_operators, design_rank, fit_block
from bids_glm.glm.results import NOISE_MODELS, RunFit


def _chunks(n_voxels: int, chunk_voxels: int) -> Iterator[slice]:
    for start in range(0, n_voxels, chunk_voxels):
        yield slice(start, min(start + chunk_voxels, n_voxels))


def _validate(
    X: np.ndarray,
    Y: np.ndarray,
    column_names: Sequence[str],
    noise_model: str,
    n_bins: int,
    chunk_voxels: int,
) -> None:
    if X.ndim != 2 or Y.ndim != 2:
        raise ValueError(
            f"X must be (n_scans, p) and Y (n_scans, n_voxels); received X {X.shape}, Y {Y.shape}"
        )
    if Y.shape[1] < 1:
        raise ValueError("Y has no voxels (0 columns)")
    if X.shape[0] != Y.shape[0]:
        raise ValueError(
            f"X has {X.shape[0]} rows (scans) but Y has {Y.shape[0]}; they must be equal"
        )
    if len(column_names) != X.shape[1]:
        raise ValueError(
            f"{len(column_names)} column names given for a design with {X.shape[1]} columns"
        )
    if not np.all(np.isfinite(X)):
        raise ValueError("the design matrix X contains NaN or infinite values")
    if X.shape[0] <= X.shape[1]:
        raise ValueError(
            f"the design has {X.shape[1]} columns for {X.shape[0]} scans; a GLM needs more "
            "scans than columns"
        )
    if noise_model not in NOISE_MODELS:
        raise ValueError(f"noise_model must be one of {NOISE_MODELS}; received {noise_model!r}")
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer; received {n_bins!r}")
    if int(chunk_voxels) != chunk_voxels or chunk_voxels < 1:
        raise ValueError(f"chunk_voxels must be a positive integer; received {chunk_voxels!r}")


def _fit_ols(
    X: np.ndarray, Y: np.ndarray, column_names: Sequence[str], chunk_voxels: int, dof: float
) -> RunFit:
    n_scans, p = X.shape
    n_voxels = Y.shape[1]
    operators = design_operators(X)
    beta = np.empty((p, n_voxels))
    sigma2 = np.empty(n_voxels)
    r_squared = np.empty(n_voxels)
    for chunk in _chunks(n_voxels, chunk_voxels):
        block, _ = fit_block(operators, Y[:, chunk].astype(np.float64))
        beta[:, chunk] = block.beta
        sigma2[chunk] = block.rss / (n_scans - p)
        r_squared[chunk] = block.r_squared
    return RunFit(
        column_names=tuple(column_names),
        noise_model="ols",
        beta=beta,
        sigma2=sigma2,
        dof=dof,
        bin_rho=np.zeros(1),
        bin_cov=operators.cov[np.newaxis],
        voxel_bin=np.zeros(n_voxels, dtype=np.intp),
        ar1=None,
        r_squared=r_squared,
    )


def _estimate_ar1(X: np.ndarray, Y: np.ndarray, chunk_voxels: int) -> np.ndarray:
    operators = design_operators(X)
    moments = np.empty((5, Y.shape[1]))
    for chunk in _chunks(Y.shape[1], chunk_voxels):
        _, residuals = fit_block(operators, Y[:, chunk].astype(np.float64))
        moments[:, chunk] = residual_moments(residuals)
    return yule_walker_ar1(moments, X.shape[0])


def _fit_ar1(
    X: np.ndarray,
    Y: np.ndarray,
    column_names: Sequence[str],
    n_bins: int,
    chunk_voxels: int,
    dof: float,
) -> RunFit:
    n_scans, p = X.shape
    n_voxels = Y.shape[1]
    ar1 = _estimate_ar1(X, Y, chunk_voxels)
    bin_rho, voxel_bin = bin_ar1(ar1, n_bins)
    operators = whitened_operators(X, bin_rho)
    beta = np.empty((p, n_voxels))
    sigma2 = np.empty(n_voxels)
    r_squared = np.empty(n_voxels)
    for chunk in _chunks(n_voxels, chunk_voxels):
        order = np.argsort(voxel_bin[chunk], kind="stable")
        voxels = chunk.start + order
        chunk_bins = voxel_bin[voxels]
        data = Y[:, voxels].astype(np.float64)
        whiten_ar1(data, bin_rho[chunk_bins])
        present = np.unique(chunk_bins)
        bounds = np.searchsorted(chunk_bins, np.append(present, present[-1] + 1))
        for bin_index, start, stop in zip(present, bounds[:-1], bounds[1:], strict=True):
            block, _ = fit_block(operators[bin_index], data[:, start:stop])
            columns = voxels[start:stop]
            beta[:, columns] = block.beta
            sigma2[columns] = block.rss / (n_scans - p)
            r_squared[columns] = block.r_squared
    return RunFit(
        column_names=tuple(column_names),
        noise_model="ar1",
        beta=beta,
        sigma2=sigma2,
        dof=dof,
        bin_rho=bin_rho,
        bin_cov=np.stack([operator.cov for operator in operators]),
        voxel_bin=voxel_bin,
        ar1=ar1,
        r_squared=r_squared,
    )


def fit_glm(
    X: np.ndarray,
    Y: np.ndarray,
    column_names: Sequence[str],
    noise_model: str = "ar1",
    n_bins: int = 100,
    chunk_voxels: int = 16384,
) -> RunFit:
    """Fit a first-level GLM to one run, as nilearn's ``run_glm``.

    Parameters
    ----------
    X : ndarray, shape (n_scans, p)
        Design matrix (cast to float64).
    Y : ndarray, shape (n_scans, V)
        Masked (and usually signal-scaled) data, typically float32; not modified and never
        copied to float64 as a whole.
    column_names : sequence of str, length p
        Names of the design columns.
    noise_model : {"ar1", "ols"}
        ``"ols"``: ordinary least squares. ``"ar1"``: AR(1) estimated from the OLS residuals,
        binned to multiples of ``1 / n_bins`` and refitted per bin on prewhitened data.
    n_bins : int
        Bins per unit of the AR(1) coefficient (100 gives bins of width 0.01).
    chunk_voxels : int
        Voxels per chunk: peak extra memory is a few ``n_scans * chunk_voxels`` float64 arrays.
        The result does not depend on it.

    Returns
    -------
    RunFit
        Parameter estimates, residual variance, degrees of freedom ``n_scans - rank(X)`` and
        per-bin covariances.
    """
    X = np.asarray(X, dtype=np.float64)
    _validate(X, Y, column_names, noise_model, n_bins, chunk_voxels)
    dof = float(X.shape[0] - design_rank(X))
    if noise_model == "ols":
        return _fit_ols(X, Y, column_names, int(chunk_voxels), dof)
    return _fit_ar1(X, Y, column_names, int(n_bins), int(chunk_voxels), dof)
