"""SPM12's serial-correlation components (``spm_Q.m``, ``spm_Ce.m``) and whitening.

``cvi = 'AR(1)'`` becomes ``spm_Ce('ar', nscan, 0.2)``: per session, the two components
``Q(a) - a dQ/da`` and ``Q(a) + a dQ/da`` at ``a = 0.2``, where ``Q(a)`` is the AR(a)
correlation ``toeplitz(a^lag)`` with entries ``<= 1e-4`` set to 0 (so zero beyond lag 5
at 0.2) and ``dQ/da`` a forward difference with step ``e^-8`` (``spm_diff``). This is a
first-order expansion of AR(a) around 0.2, not "AR(0.2) + white noise".
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

__all__ = ["SPM_AR_COEFFICIENT", "ar_components", "spm_ar_correlation", "whitening_matrix"]

SPM_AR_COEFFICIENT = 0.2
_TRUNCATION = 1e-4
_DIFFERENCE_STEP = float(np.exp(-8.0))
_WHITENING_ZERO = 1e-6


def spm_ar_correlation(coefficient: float, n_scans: int) -> np.ndarray:
    """``spm_Q(a, n)``: the truncated AR(a) correlation matrix.

    Parameters
    ----------
    coefficient : float
        The AR(1) coefficient ``a``.
    n_scans : int
        Size of the matrix.

    Returns
    -------
    numpy.ndarray
        ``(n, n)`` Toeplitz matrix of ``a^lag``, entries ``<= 1e-4`` in absolute value zeroed.
    """
    lags = np.arange(n_scans)
    first_column = coefficient**lags
    first_column = first_column * (np.abs(first_column) > _TRUNCATION)
    return scipy.linalg.toeplitz(first_column)


def ar_components(
    n_scans: int, coefficient: float = SPM_AR_COEFFICIENT
) -> tuple[np.ndarray, np.ndarray]:
    """The two covariance components ``spm_Ce`` builds for one session.

    Parameters
    ----------
    n_scans : int
        Scans of the session.
    coefficient : float
        Expansion point (SPM: 0.2).

    Returns
    -------
    tuple of numpy.ndarray
        ``(Q - a dQ/da, Q + a dQ/da)``, each ``(n_scans, n_scans)``.
    """
    correlation = spm_ar_correlation(coefficient, n_scans)
    shifted = spm_ar_correlation(coefficient + _DIFFERENCE_STEP, n_scans)
    derivative = (shifted - correlation) / _DIFFERENCE_STEP
    return correlation - derivative * coefficient, correlation + derivative * coefficient


def whitening_matrix(covariance: np.ndarray) -> np.ndarray:
    """``W = sqrtm(inv(V))`` with entries ``|W| <= 1e-6`` set to 0, as ``spm_spm`` does.

    Parameters
    ----------
    covariance : numpy.ndarray
        The symmetric serial covariance ``V`` (block diagonal over sessions).

    Returns
    -------
    numpy.ndarray
        The whitening matrix.
    """
    n = covariance.shape[0]
    tolerance = max(np.spacing(np.abs(covariance).sum(axis=1).max()) * n, np.exp(-32.0))
    inverse = np.linalg.inv(covariance + np.eye(n) * tolerance)
    inverse = (inverse + inverse.T) / 2.0
    values, vectors = np.linalg.eigh(inverse)
    root = (vectors * np.sqrt(np.abs(values))) @ vectors.T
    return root * (np.abs(root) > _WHITENING_ZERO)
