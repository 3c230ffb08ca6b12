"""``spm_reml``'s fallback: Bayesian model reduction of redundant covariance components.

When ReML ends with a covariance that is not positive definite, or a posterior precision of
the hyperparameters whose condition number exceeds ``e^16``, ``spm_reml.m`` removes the
components one at a time (in order) whenever switching its prior off raises the log evidence
by more than 2 (``spm_log_evidence_reduce``, prior mean 0) and re-estimates the others. These
are the pure pieces of that step, with SPM's regularised inverse and log determinant.
"""

from __future__ import annotations

import numpy as np

__all__ = ["kept_components", "log_evidence_reduce", "needs_reduction", "spm_logdet"]

_REDUCE_TOLERANCE = 1e-8  # spm_log_evidence_reduce's TOL
_LOGDET_TOLERANCE = 1e-16
_EVIDENCE_GAIN = 2.0  # a component goes when removing it raises the log evidence by more
_MAX_LOG_CONDITION = 16.0
_MIN_LOG_TIME = -4.0


def _inverse(matrix: np.ndarray, tolerance: float) -> np.ndarray:
    """``spm_inv(A, TOL)``: ``inv(A + TOL I)``."""
    return np.linalg.inv(matrix + np.eye(matrix.shape[0]) * tolerance)


def spm_logdet(matrix: np.ndarray) -> float:
    """``spm_logdet``: log |det| over the rows with a non-zero diagonal, robustly.

    Diagonal: sum of the logs of the entries in ``(1e-16, 1e16)``; symmetric: Cholesky, or
    the singular values in that range when not positive definite; otherwise singular values.
    """
    rows = np.flatnonzero(np.diag(matrix))
    matrix = matrix[np.ix_(rows, rows)]
    off_diagonal = matrix - np.diag(np.diag(matrix))
    if not off_diagonal.any():
        values = np.diag(matrix)
    elif np.abs(matrix - matrix.T).max() > _LOGDET_TOLERANCE:
        values = np.linalg.svd(matrix, compute_uv=False)
    else:
        try:
            return float(2.0 * np.sum(np.log(np.diag(np.linalg.cholesky(matrix)))))
        except np.linalg.LinAlgError:
            values = np.linalg.svd(matrix, compute_uv=False)
    values = values[(values > _LOGDET_TOLERANCE) & (values < 1.0 / _LOGDET_TOLERANCE)]
    return float(np.sum(np.log(values)))


def log_evidence_reduce(
    posterior_mean: np.ndarray,
    posterior_covariance: np.ndarray,
    prior_covariance: np.ndarray,
    reduced_covariance: np.ndarray,
) -> tuple[float, np.ndarray, np.ndarray]:
    """``spm_log_evidence_reduce`` with prior means 0, for diagonal prior covariances.

    Returns
    -------
    tuple
        The change in log evidence of the reduced prior, and the reduced posterior mean
        and covariance (zero outside the full prior's support).
    """
    support = np.flatnonzero(np.diag(prior_covariance))  # spm_svd(pC) of a diagonal pC
    block = np.ix_(support, support)
    mean = posterior_mean[support]
    posterior_precision = _inverse(posterior_covariance[block], _REDUCE_TOLERANCE)
    prior_precision = _inverse(prior_covariance[block], _REDUCE_TOLERANCE)
    reduced_precision = _inverse(reduced_covariance[block], _REDUCE_TOLERANCE)
    covariance = _inverse(
        posterior_precision + reduced_precision - prior_precision, _REDUCE_TOLERANCE
    )
    prior = _inverse(prior_precision, _REDUCE_TOLERANCE)
    weighted = posterior_precision @ mean
    change = spm_logdet(reduced_precision @ posterior_precision @ covariance @ prior) - (
        mean @ posterior_precision @ mean - weighted @ covariance @ weighted
    )
    reduced_mean = np.zeros_like(posterior_mean)
    reduced_mean[support] = covariance @ weighted
    reduced_covariance_out = np.zeros_like(posterior_covariance)
    reduced_covariance_out[block] = covariance
    return float(change / 2.0), reduced_mean, reduced_covariance_out


def needs_reduction(
    covariance: np.ndarray, posterior_precision: np.ndarray, log_time: float
) -> bool:
    """SPM's test: V not positive definite or ``log(cond(Ph)) > 16``, while ``t > -4``."""
    if log_time <= _MIN_LOG_TIME:
        return False
    not_positive = np.linalg.eigvalsh(covariance).min() < 0
    return bool(
        not_positive or np.log(np.linalg.cond(posterior_precision, 1)) > _MAX_LOG_CONDITION
    )


def kept_components(
    hyperparameters: np.ndarray, posterior_precision: np.ndarray, hyper_precision: float
) -> list[int]:
    """Indices of the components ``spm_reml`` keeps; the others are redundant.

    Parameters
    ----------
    hyperparameters : numpy.ndarray
        The ReML estimate ``h``.
    posterior_precision : numpy.ndarray
        ``Ph = -dF/dhh`` (hyperprior included).
    hyper_precision : float
        The hyperprior precision of each ``h_i``.
    """
    m = hyperparameters.size
    mean, covariance = hyperparameters, np.linalg.inv(posterior_precision)
    prior = np.eye(m) / hyper_precision
    kept = []
    for index in range(m):
        reduced = prior.copy()
        reduced[index, :] = reduced[:, index] = 0.0
        change, reduced_mean, reduced_cov = log_evidence_reduce(mean, covariance, prior, reduced)
        if change > _EVIDENCE_GAIN:
            mean, covariance, prior = reduced_mean, reduced_cov, reduced
        else:
            kept.append(index)
    return kept
