"""The column space of a design as ``spm_sp.m`` handles it: rank, orthonormal basis, pinv.

SPM decides the rank of ``X`` with the tolerance ``max(size(X)) * max(s) * eps`` on its
singular values ``s``; the residual-forming matrix, the pseudo-inverse and the traces of
``spm_SpUtil`` all use that rank.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DesignSpace", "design_space", "residual_traces"]


@dataclass(frozen=True)
class DesignSpace:
    """A design's orthonormal column basis and pseudo-inverse.

    Attributes
    ----------
    matrix : numpy.ndarray
        ``(n, p)`` the design.
    basis : numpy.ndarray
        ``(n, rank)`` orthonormal basis of its columns (``sX.u(:, 1:rk)``).
    pseudo_inverse : numpy.ndarray
        ``(p, n)`` ``pinv`` at SPM's rank.
    """

    matrix: np.ndarray
    basis: np.ndarray
    pseudo_inverse: np.ndarray

    @property
    def rank(self) -> int:
        """Rank of the design."""
        return int(self.basis.shape[1])

    def residuals(self, values: np.ndarray) -> np.ndarray:
        """Residuals of ``values`` after projecting on the column space."""
        return values - self.basis @ (self.basis.T @ values)


def design_space(matrix: np.ndarray) -> DesignSpace:
    """Factor a design as ``spm_sp('Set', X)`` does.

    Parameters
    ----------
    matrix : numpy.ndarray
        ``(n, p)`` design.

    Returns
    -------
    DesignSpace
    """
    left, singular, right_t = np.linalg.svd(matrix, full_matrices=False)
    tolerance = (
        max(matrix.shape) * (singular.max() if singular.size else 0.0) * np.finfo(float).eps
    )
    rank = int(np.sum(singular > tolerance))
    pseudo_inverse = (right_t[:rank].T / singular[:rank]) @ left[:, :rank].T
    return DesignSpace(matrix=matrix, basis=left[:, :rank], pseudo_inverse=pseudo_inverse)


def residual_traces(space: DesignSpace, covariance: np.ndarray) -> tuple[float, float]:
    """``trace(R V)`` and ``trace(R V R V)`` for the residual-forming ``R`` (``spm_SpUtil``).

    Parameters
    ----------
    space : DesignSpace
        The (filtered, whitened) design's space.
    covariance : numpy.ndarray
        ``(n, n)`` ``xX.V``.

    Returns
    -------
    tuple of float
        ``(trRV, trRVRV)``; the effective degrees of freedom are ``trRV**2 / trRVRV``.
    """
    u = space.basis
    covariance_u = covariance @ u
    trace_rv = np.trace(covariance) - np.sum(u * covariance_u)
    trace_rvrv = (
        np.sum(covariance**2) - 2.0 * np.sum(covariance_u**2) + np.sum((u.T @ covariance_u) ** 2)
    )
    return float(trace_rv), float(trace_rvrv)
