"""Restricted maximum likelihood covariance hyperparameters, as ``spm_reml.m`` computes them.

The model is ``Cov(y) = sum_i h_i Q_i`` with the design ``X`` as fixed effects. SPM
maximises the free energy by Fisher scoring regularised through ``spm_dx`` (a matrix
exponential step with log-time ``t``, starting at 4), with a weak hyperprior (mean 0,
precision ``e^-8``), starting from ``h_i = 1`` for the first component covering each
diagonal element and 0 otherwise. It stops as soon as the predicted change of the free
energy falls below 0.1 (after two iterations on typical fMRI data), not at convergence:
a faithful port must keep that rule to give SPM's numbers. When the estimate is not positive
definite or its precision is ill-conditioned, redundant components are dropped and the others
re-estimated, as ``spm_reml.m`` does (``glm/spm_reml_reduce.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from bids_glm.errors import AnalysisError
from bids_glm.glm.spm_reml_reduce import kept_components, needs_reduction

__all__ = ["RemlResult", "spm_dx", "spm_reml"]

_MAX_ITERATIONS = 32
_START_LOG_TIME = 4.0
_HYPER_PRECISION = float(np.exp(-8.0))
_STOP_FREE_ENERGY_CHANGE = 0.1


@dataclass(frozen=True)
class RemlResult:
    """Outcome of ``spm_reml``.

    Attributes
    ----------
    covariance : numpy.ndarray
        ``V = sum_i h_i Q_i``.
    hyperparameters : numpy.ndarray
        The ``h_i``.
    n_iterations : int
        Fisher-scoring steps taken.
    """

    covariance: np.ndarray
    hyperparameters: np.ndarray
    n_iterations: int


def _log_abs_determinant(matrix: np.ndarray) -> float:
    """``spm_logdet`` of a symmetric matrix that is not positive definite: sum of log |s|."""
    singular = np.linalg.svd(matrix, compute_uv=False)
    singular = singular[(singular > 1e-16) & (singular < 1e16)]
    return float(np.sum(np.log(singular)))


def spm_dx(jacobian: np.ndarray, gradient: np.ndarray, log_time: float) -> np.ndarray:
    """SPM's regularised Newton step ``spm_dx(dfdx, f, {t})``.

    Parameters
    ----------
    jacobian : numpy.ndarray
        ``(n, n)`` curvature ``dF/dhh``.
    gradient : numpy.ndarray
        ``(n,)`` gradient ``dF/dh``.
    log_time : float
        ``t``: the step integrates the local linear flow for time
        ``exp(t - logdet(dfdx) / n)``.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` update.
    """
    n = gradient.size
    time = np.exp(log_time - _log_abs_determinant(jacobian) / n)
    if time > np.exp(16.0):
        return -np.linalg.pinv(jacobian) @ gradient
    augmented = np.zeros((n + 1, n + 1))
    augmented[1:, 0] = time * gradient
    augmented[1:, 1:] = time * jacobian
    return np.real(scipy.linalg.expm(augmented)[1:, 0])


def _orthonormal_columns(design: np.ndarray) -> np.ndarray:
    """An orthonormal basis of the design's column space (``spm_svd(X, 0)``)."""
    design = design[:, np.any(design != 0, axis=0)]
    left, singular, _ = np.linalg.svd(design, full_matrices=False)
    squared = singular**2
    keep = squared * squared.size / squared.sum() > 64 * np.finfo(float).eps
    return left[:, keep]


def _initial_hyperparameters(components: tuple[np.ndarray, ...]) -> np.ndarray:
    """1 for a component covering diagonal elements no earlier component covers, else 0."""
    covered = np.zeros(components[0].shape[0], dtype=bool)
    start = np.zeros(len(components))
    for index, component in enumerate(components):
        diagonal = np.diag(component) != 0
        start[index] = float(np.any(diagonal & ~covered))
        covered |= diagonal
    return start


def _score(
    sample_covariance: np.ndarray,
    basis: np.ndarray,
    components: tuple[np.ndarray, ...],
    hyperparameters: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and curvature of the free energy at ``hyperparameters`` (no prior)."""
    n = sample_covariance.shape[0]
    covariance = sum(h * q for h, q in zip(hyperparameters, components, strict=True))
    tolerance = max(np.spacing(np.abs(covariance).sum(axis=1).max()) * n, np.exp(-32.0))
    inverse = np.linalg.inv(covariance + np.eye(n) * tolerance)
    inverse_basis = inverse @ basis
    projector = inverse - inverse_basis @ np.linalg.inv(basis.T @ inverse_basis) @ inverse_basis.T
    unexplained = np.eye(n) - projector @ sample_covariance
    weighted = [projector @ q for q in components]
    m = len(components)
    gradient = np.array([-np.sum(pq * unexplained.T) / 2.0 for pq in weighted])
    curvature = np.empty((m, m))
    for i in range(m):
        for j in range(i, m):
            curvature[i, j] = curvature[j, i] = -np.sum(weighted[i] * weighted[j].T) / 2.0
    return gradient, curvature


def spm_reml(
    sample_covariance: np.ndarray,
    design: np.ndarray,
    components: tuple[np.ndarray, ...],
    hyper_precision: float = _HYPER_PRECISION,
    log_time: float = _START_LOG_TIME,
) -> RemlResult:
    """Estimate covariance hyperparameters by ReML with SPM12's schedule and stopping rule.

    Parameters
    ----------
    sample_covariance : numpy.ndarray
        ``(n, n)`` ``YY'`` averaged over voxels (``xVi.Cy`` restricted to a session).
    design : numpy.ndarray
        ``(n, p)`` fixed effects (the session's rows of ``X`` and its drift basis).
    components : tuple of numpy.ndarray
        The ``Q_i``, each ``(n, n)``.
    hyper_precision : float
        Prior precision of the hyperparameters (SPM: ``e^-8``).
    log_time : float
        Initial ``t`` of ``spm_dx`` (SPM: 4).

    Returns
    -------
    RemlResult
    """
    basis = _orthonormal_columns(design)
    hyperparameters = _initial_hyperparameters(components)
    m = len(components)
    previous_change = np.inf
    n_iterations = 0
    while n_iterations < _MAX_ITERATIONS:
        n_iterations += 1
        gradient, curvature = _score(sample_covariance, basis, components, hyperparameters)
        gradient = gradient - hyper_precision * hyperparameters
        curvature = curvature - hyper_precision * np.eye(m)
        step = spm_dx(curvature, gradient, log_time)
        hyperparameters = hyperparameters + step
        predicted_change = float(gradient @ step)
        if predicted_change > previous_change:
            log_time = max(log_time - 1.0, -8.0)
        else:
            log_time = min(log_time + 0.25, 8.0)
        if not np.isfinite(predicted_change) or np.abs(step).max() > 1e6:
            return spm_reml(sample_covariance, design, components, 2 * hyper_precision, log_time)
        previous_change = predicted_change
        if previous_change < _STOP_FREE_ENERGY_CHANGE:
            break
    covariance = sum(h * q for h, q in zip(hyperparameters, components, strict=True))
    if needs_reduction(covariance, -curvature, log_time):
        return _reduced(
            sample_covariance,
            design,
            components,
            (hyperparameters, -curvature),
            (hyper_precision, log_time, n_iterations),
        )
    return RemlResult(covariance, hyperparameters, n_iterations)


def _reduced(
    sample_covariance: np.ndarray,
    design: np.ndarray,
    components: tuple[np.ndarray, ...],
    estimate: tuple[np.ndarray, np.ndarray],
    schedule: tuple[float, float, int],
) -> RemlResult:
    """ReML again on the components that are not redundant; the others get ``h = 0``.

    Parameters
    ----------
    sample_covariance, design, components
        As for :func:`spm_reml`.
    estimate : tuple
        The hyperparameters and their posterior precision ``-dF/dhh`` at the end of ReML.
    schedule : tuple
        The hyperprior precision, ``spm_dx``'s log-time and the iterations so far; the new
        estimate starts from that log-time with twice the precision, as ``spm_reml.m`` does.
    """
    hyperparameters, posterior_precision = estimate
    hyper_precision, log_time, n_iterations = schedule
    kept = kept_components(hyperparameters, posterior_precision, hyper_precision)
    if not kept:
        raise AnalysisError(
            "SPM12 ReML: every covariance component is redundant; the pooled covariance "
            "cannot be modelled (too few voxels in the ReML pool?)"
        )
    subset = tuple(components[i] for i in kept)
    result = spm_reml(sample_covariance, design, subset, 2 * hyper_precision, log_time)
    full = np.zeros(len(components))
    full[kept] = result.hyperparameters
    return RemlResult(result.covariance, full, n_iterations + result.n_iterations)
