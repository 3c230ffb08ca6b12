"""Ordinary least squares on a block of voxels, and the design quantities it needs.

Conventions follow nilearn 0.14 (``OLSModel``): the pseudo-inverse is scipy's (relative cut-off
``max(n, p) * eps``), the rank uses the absolute tolerance ``sum(|X|) * eps``, and the residual
variance divides by ``n - p`` while the degrees of freedom are ``n - rank(X)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg


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
        Unscaled parameter covariance ``pinv @ pinv.T``.
    """

    design: np.ndarray
    pinv: np.ndarray
    cov: np.ndarray


@dataclass(frozen=True)
class BlockFit:
    """Least-squares fit of a block of k voxels.

    Attributes
    ----------
    beta : ndarray, shape (p, k)
        Parameter estimates.
    rss : ndarray, shape (k,)
        Residual sum of squares.
    r_squared : ndarray, shape (k,)
        ``var(design @ beta) / var(data)`` over time; 0 where the data are constant.
    """

    beta: np.ndarray
    rss: np.ndarray
    r_squared: np.ndarray


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
    return DesignOperators(design=design, pinv=pinv, cov=pinv @ pinv.T)


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


def _column_variance(values: np.ndarray) -> np.ndarray:
    """Population variance of each column, without an (n, k) temporary (float64 input)."""
    n_rows = values.shape[0]
    mean = values.sum(axis=0) / n_rows
    variance = np.einsum("ij,ij->j", values, values) / n_rows - mean * mean
    return np.maximum(variance, 0.0)


def fit_block(operators: DesignOperators, data: np.ndarray) -> tuple[BlockFit, np.ndarray]:
    """Least-squares fit of a block of voxels; the block becomes its residuals.

    Parameters
    ----------
    operators : DesignOperators
        The design (n, p) and its pseudo-inverse.
    data : ndarray, shape (n, k), float64
        Time series of k voxels. **Overwritten** with the residuals, to avoid another
        (n, k) copy.

    Returns
    -------
    fit : BlockFit
    residuals : ndarray, shape (n, k)
        ``data`` itself, now holding ``data - design @ beta``.
    """
    beta = operators.pinv @ data
    fitted = operators.design @ beta
    data_variance = _column_variance(data)
    fitted_variance = _column_variance(fitted)
    data -= fitted
    del fitted
    rss = np.einsum("ij,ij->j", data, data)
    r_squared = np.divide(
        fitted_variance,
        data_variance,
        out=np.zeros_like(data_variance),
        where=data_variance > 0,
    )
    return BlockFit(beta=beta, rss=rss, r_squared=r_squared), data
