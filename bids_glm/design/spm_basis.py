"""SPM12's canonical basis set, as ``spm_get_bf.m`` and ``spm_hrf.m`` build it.

The canonical HRF is a difference of two gamma densities with SPM's parameters
``p = [6 16 1 1 6 0 32]`` (peak delay, undershoot delay, peak dispersion, undershoot
dispersion, peak/undershoot ratio, onset, length), sampled every microtime bin
``dt = TR / fmri_t`` over 0 to 32 s and scaled to unit sum. The time derivative is the
difference with the HRF delayed by 1 s; the dispersion derivative the difference with the
peak dispersion raised by 0.01, divided by 0.01. The set is then Gram-Schmidt
orthogonalised (``spm_orth``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from bids_glm.design.hrf import gamma_density

__all__ = [
    "SPM_HRF_PARAMETERS",
    "SpmHrfParameters",
    "spm_basis_set",
    "spm_canonical_hrf",
    "spm_orth",
]

TIME_DERIVATIVE_STEP_S = 1.0
DISPERSION_DERIVATIVE_STEP = 0.01
# spm_orth keeps a column when the L1 norm of its orthogonal part exceeds exp(-32).
_ORTH_TOLERANCE = float(np.exp(-32.0))


@dataclass(frozen=True)
class SpmHrfParameters:
    """The seven parameters of ``spm_hrf`` (SPM12 defaults)."""

    peak_delay_s: float = 6.0
    undershoot_delay_s: float = 16.0
    peak_dispersion: float = 1.0
    undershoot_dispersion: float = 1.0
    peak_undershoot_ratio: float = 6.0
    onset_s: float = 0.0
    length_s: float = 32.0


SPM_HRF_PARAMETERS = SpmHrfParameters()


def spm_canonical_hrf(
    dt_s: float, parameters: SpmHrfParameters = SPM_HRF_PARAMETERS
) -> np.ndarray:
    """Sample SPM's canonical HRF every ``dt_s`` seconds over ``[0, length]``, unit sum.

    Parameters
    ----------
    dt_s : float
        Microtime bin, ``TR / fmri_t`` seconds.
    parameters : SpmHrfParameters
        ``spm_hrf``'s ``p``.

    Returns
    -------
    numpy.ndarray
        ``floor(length / dt) + 1`` samples; sample ``k`` is the response ``k * dt`` seconds
        after the onset.
    """
    p = parameters
    n_samples = int(np.floor(p.length_s / dt_s)) + 1
    times_s = np.arange(n_samples) * dt_s - p.onset_s
    peak = gamma_density(times_s, p.peak_delay_s / p.peak_dispersion, p.peak_dispersion)
    undershoot = gamma_density(
        times_s, p.undershoot_delay_s / p.undershoot_dispersion, p.undershoot_dispersion
    )
    hrf = peak - undershoot / p.peak_undershoot_ratio
    return hrf / hrf.sum()


def spm_orth(columns: np.ndarray) -> np.ndarray:
    """Gram-Schmidt orthogonalise columns left to right, as ``spm_orth(X, 'pad')``.

    Parameters
    ----------
    columns : numpy.ndarray
        ``(n, m)`` matrix.

    Returns
    -------
    numpy.ndarray
        ``(n, m)``: each kept column minus its projection on the kept columns before it;
        all-zero columns, and columns once the rank is reached, are zero.
    """
    columns = np.asarray(columns, dtype=float)
    n_rows, n_columns = columns.shape
    result = np.zeros((n_rows, n_columns))
    nonzero = np.flatnonzero(np.any(columns != 0, axis=0))
    if nonzero.size == 0:
        return result
    kept = columns[:, nonzero]
    rank = np.linalg.matrix_rank(kept)
    basis = kept[:, :1]
    chosen = [0]
    for index in range(1, kept.shape[1]):
        if len(chosen) == rank:
            break
        residual = kept[:, index] - basis @ (np.linalg.pinv(basis) @ kept[:, index])
        if np.abs(residual).sum() > _ORTH_TOLERANCE:
            basis = np.column_stack([basis, residual])
            chosen.append(index)
    result[:, nonzero[chosen]] = basis
    return result


def spm_basis_set(
    dt_s: float, time_derivative: bool = False, dispersion_derivative: bool = False
) -> np.ndarray:
    """SPM12's "hrf", "hrf (with time derivative)" or "... and dispersion derivative" set.

    Parameters
    ----------
    dt_s : float
        Microtime bin in seconds.
    time_derivative, dispersion_derivative : bool
        Add the derivatives (the dispersion derivative requires the time derivative,
        as in SPM).

    Returns
    -------
    numpy.ndarray
        ``(n_samples, n_basis)``, orthogonalised as ``spm_get_bf`` does.
    """
    if dispersion_derivative and not time_derivative:
        raise ValueError("SPM's dispersion derivative comes with the time derivative")
    hrf = spm_canonical_hrf(dt_s)
    columns = [hrf]
    if time_derivative:
        delayed = replace(SPM_HRF_PARAMETERS, onset_s=TIME_DERIVATIVE_STEP_S)
        columns.append((hrf - spm_canonical_hrf(dt_s, delayed)) / TIME_DERIVATIVE_STEP_S)
    if dispersion_derivative:
        wider = replace(
            SPM_HRF_PARAMETERS,
            peak_dispersion=SPM_HRF_PARAMETERS.peak_dispersion + DISPERSION_DERIVATIVE_STEP,
        )
        columns.append((hrf - spm_canonical_hrf(dt_s, wider)) / DISPERSION_DERIVATIVE_STEP)
    return spm_orth(np.column_stack(columns))
