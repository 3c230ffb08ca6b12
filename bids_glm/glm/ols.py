"""Ordinary least squares in one pass over the data, and the design quantities it needs.

Conventions follow nilearn 0.14 (``OLSModel``): the pseudo-inverse is scipy's (relative cut-off
``max(n, p) * eps``), the rank uses the absolute tolerance ``sum(|X|) * eps``, and the residual
variance divides by ``n - p`` while the degrees of freedom are ``n - rank(X)``.

`ols_pass` reads the (float32) data once, chunk by chunk: each chunk is cast to float64, fitted,
turned into residuals in place, and reduced to a few numbers per voxel (`OlsPass`). Everything
the AR(1) refit needs is among them, so the data are never read twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from bids_glm.glm.ar import residual_moments
from bids_glm.runtime.threads import for_each_in_threads


@dataclass(frozen=True)
class DesignOperators:
    """A (possibly whitened) design and the matrices derived from it.

    Attributes
    ----------
    design : ndarray, shape (n, p)
        The design matrix as fitted.
    pinv : ndarray, shape (p, n)
        Moore-Penrose pseudo-inverse of ``design``.
    cov : ndarray, shape (p, p)
        Unscaled parameter covariance ``pinv @ pinv.T`` (the pseudo-inverse of
        ``design.T @ design`` with the cut-off of ``pinv``).
    gram : ndarray, shape (p, p)
        ``design.T @ design`` (made once: with a column per trial it costs as much as
        refitting a block of voxels).
    """

    design: np.ndarray
    pinv: np.ndarray
    cov: np.ndarray
    gram: np.ndarray


def design_operators(design: np.ndarray) -> DesignOperators:
    """Pseudo-inverse and unscaled covariance of a design.

    Parameters
    ----------
    design : ndarray, shape (n, p), float64

    Returns
    -------
    DesignOperators
    """
    pinv = scipy.linalg.pinv(design)
    return DesignOperators(design=design, pinv=pinv, cov=pinv @ pinv.T, gram=design.T @ design)


def design_rank(design: np.ndarray) -> int:
    """Rank of a design with nilearn's absolute tolerance ``sum(|X|) * eps``.

    Parameters
    ----------
    design : ndarray, shape (n, p)

    Returns
    -------
    int
    """
    tolerance = np.abs(design).sum() * np.finfo(np.float64).eps
    return int(np.linalg.matrix_rank(design, tol=tolerance))


def neighbour_sum(design: np.ndarray) -> np.ndarray:
    """Rows ``x_{t-1} + x_{t+1}`` of a design (missing neighbours count as zero).

    ``neighbour_sum(X).T @ e`` is ``sum_t x_t (e_{t-1} + e_{t+1})``, the lag-one cross-product
    of design and residuals that AR(1) whitening mixes in.
    """
    out = np.zeros_like(design)
    out[1:] += design[:-1]
    out[:-1] += design[1:]
    return out


@dataclass(frozen=True)
class OlsPass:
    """Per-voxel summaries of an OLS fit.

    Attributes
    ----------
    beta : ndarray, shape (p, V), float64
        ``pinv(X) @ Y``.
    moments : ndarray, shape (5, V), float64
        Residual moments, rows as in `bids_glm.glm.ar.residual_moments`.
    lag_cross : ndarray, shape (p, V), float64, or None
        ``neighbour_sum(X).T @ residuals`` (only when requested, for AR(1)).
    """

    beta: np.ndarray
    moments: np.ndarray
    lag_cross: np.ndarray | None


def voxel_chunks(n_voxels: int, chunk_voxels: int) -> Iterator[slice]:
    """Consecutive slices of at most ``chunk_voxels`` voxels covering ``range(n_voxels)``."""
    for start in range(0, n_voxels, chunk_voxels):
        yield slice(start, min(start + chunk_voxels, n_voxels))


def ols_pass(
    operators: DesignOperators,
    data: np.ndarray,
    chunk_voxels: int,
    lag_cross: bool = False,
    n_threads: int = 1,
) -> OlsPass:
    """Fit OLS to every voxel and summarise the residuals, reading ``data`` once.

    Parameters
    ----------
    operators : DesignOperators
        The (unwhitened) design and its pseudo-inverse.
    data : ndarray, shape (n, V)
        Time series in columns (float32 or float64); not modified.
    chunk_voxels : int
        Voxels per chunk: extra memory is about two ``(n, chunk_voxels)`` float64 arrays
        per thread. The result does not depend on it.
    lag_cross : bool
        Also compute ``neighbour_sum(X).T @ residuals`` (needed by the AR(1) refit).
    n_threads : int
        Chunks processed concurrently (numpy and BLAS release the GIL).

    Returns
    -------
    OlsPass
    """
    return ols_pass_over_columns(
        operators, lambda chunk: data[:, chunk], data.shape[1], chunk_voxels, lag_cross, n_threads
    )


def ols_pass_over_columns(
    operators: DesignOperators,
    read_columns: Callable[[slice], np.ndarray],
    n_voxels: int,
    chunk_voxels: int,
    lag_cross: bool = False,
    n_threads: int = 1,
) -> OlsPass:
    """`ols_pass` over data handed out a chunk of columns at a time.

    ``read_columns(chunk)`` returns the (n, chunk) time series of voxels ``chunk`` (a
    slice of ``range(n_voxels)``), e.g. read from a file as they are needed: the data are
    then never held whole. It is called once per chunk, possibly from several threads at
    once (``n_threads``), with disjoint chunks; its result is not modified.
    """
    p = operators.design.shape[1]
    beta = np.empty((p, n_voxels))
    moments = np.empty((5, n_voxels))
    cross = np.empty((p, n_voxels)) if lag_cross else None
    neighbours = neighbour_sum(operators.design).T.copy() if lag_cross else None

    def fit_chunk(chunk: slice) -> None:
        residuals = read_columns(chunk).astype(np.float64)
        chunk_beta = operators.pinv @ residuals
        residuals -= operators.design @ chunk_beta
        beta[:, chunk] = chunk_beta
        moments[:, chunk] = residual_moments(residuals)
        if cross is not None:
            cross[:, chunk] = neighbours @ residuals

    for_each_in_threads(fit_chunk, list(voxel_chunks(n_voxels, chunk_voxels)), n_threads, "fit")
    return OlsPass(beta=beta, moments=moments, lag_cross=cross)
