"""Fit one run's first-level GLM (OLS or AR(1) prewhitened), reading the data once.

The data matrix is never copied to float64 as a whole: `bids_glm.glm.ols.ols_pass` casts one
chunk of ``chunk_voxels`` columns at a time, fits it and keeps a few numbers per voxel. AR(1)
then estimates every voxel's coefficient from those residual moments (the estimate depends on
the global residual mean, hence a complete first pass), bins the coefficients, and refits each
voxel from the same summaries (`bids_glm.glm.ar_refit`), exactly as a second pass over the
prewhitened data would.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bids_glm.glm.ar import bin_ar1, yule_walker_ar1
from bids_glm.glm.ar_refit import ar1_voxel_fits, ols_voxel_fits, whitened_operators
from bids_glm.glm.ols import OlsPass, design_operators, design_rank, ols_pass
from bids_glm.glm.results import NOISE_MODELS, RunFit
from bids_glm.runtime.threads import thread_budget

# voxels per block of the AR(1) refit: (p, block) arrays only, so large blocks are cheap and
# keep the per-bin Python loop short
REFIT_CHUNK_VOXELS = 32_768


def check_model(X: np.ndarray, column_names: Sequence[str], noise_model: str, n_bins: int) -> None:
    """``ValueError`` unless the design, its names, the noise model and bins are fittable."""
    if X.ndim != 2:
        raise ValueError(f"X must be (n_scans, p); received X {X.shape}")
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
    check_model(X, column_names, noise_model, n_bins)
    if int(chunk_voxels) != chunk_voxels or chunk_voxels < 1:
        raise ValueError(f"chunk_voxels must be a positive integer; received {chunk_voxels!r}")


def fit_glm(
    X: np.ndarray,
    Y: np.ndarray,
    column_names: Sequence[str],
    noise_model: str = "ar1",
    n_bins: int = 100,
    chunk_voxels: int = 4096,
    n_threads: int | None = None,
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
        Voxels per chunk: peak extra memory is about two ``n_scans * chunk_voxels`` float64
        arrays per thread. The result does not depend on it.
    n_threads : int, optional
        Threads sharing the pass over the data; default: the process's `thread_budget`.
        The result does not depend on it.

    Returns
    -------
    RunFit
        Parameter estimates, residual variance, degrees of freedom ``n_scans - rank(X)`` and
        per-bin covariances.
    """
    X = np.asarray(X, dtype=np.float64)
    _validate(X, Y, column_names, noise_model, n_bins, chunk_voxels)
    n_threads = thread_budget() if n_threads is None else max(int(n_threads), 1)
    ols = ols_pass(
        design_operators(X),
        Y,
        int(chunk_voxels),
        lag_cross=noise_model == "ar1",
        n_threads=n_threads,
    )
    return fit_from_ols(X, ols, column_names, noise_model, int(n_bins), n_threads)


def fit_from_ols(
    X: np.ndarray,
    ols: OlsPass,
    column_names: Sequence[str],
    noise_model: str,
    n_bins: int,
    n_threads: int,
    consume: bool = False,
) -> RunFit:
    """Finish a fit from its OLS summaries: AR(1) estimate, binning and refit, or OLS.

    Parameters
    ----------
    X : ndarray, shape (n_scans, p), float64
        The fitted design.
    ols : OlsPass
        Per-voxel OLS summaries (with ``lag_cross`` for AR(1)), from the data
        (`bids_glm.glm.ols.ols_pass`) or from sums over volumes
        (`bids_glm.glm.fit_from_sums`).
    column_names, noise_model, n_bins, n_threads
        As in `fit_glm`.
    consume : bool
        Whether ``ols.beta`` may be overwritten (the AR(1) refit then writes its estimates
        there, saving a (p, V) array).

    Returns
    -------
    RunFit
    """
    n_scans, p = X.shape
    dof = float(n_scans - design_rank(X))
    n_voxels = ols.beta.shape[1]
    if noise_model == "ar1":
        ar1 = yule_walker_ar1(ols.moments, n_scans)
        bin_rho, voxel_bin = bin_ar1(ar1, n_bins)
        bin_operators = whitened_operators(X, bin_rho)
        fits = ar1_voxel_fits(
            X, ols, bin_rho, voxel_bin, bin_operators, REFIT_CHUNK_VOXELS, n_threads, consume
        )
        bin_cov = np.stack([operator.cov for operator in bin_operators])
    else:
        ar1, bin_rho = None, np.zeros(1)
        voxel_bin = np.zeros(n_voxels, dtype=np.intp)
        fits = ols_voxel_fits(X, ols)
        bin_cov = design_operators(X).cov[np.newaxis]
    return RunFit(
        column_names=tuple(column_names),
        noise_model=noise_model,
        beta=fits.beta,
        sigma2=fits.rss / (n_scans - p),
        dof=dof,
        bin_rho=bin_rho,
        bin_cov=bin_cov,
        voxel_bin=voxel_bin,
        ar1=ar1,
        r_squared=fits.r_squared,
    )
