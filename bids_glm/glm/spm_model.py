"""One SPM12 first-level estimation: serial correlations (ReML on the pooled voxels),
whitening, then the filtered, whitened fit (``spm_spm.m`` with
``spm_est_non_sphericity.m``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from bids_glm.glm.spm_fit import SpmFit, fit_whitened, whitened_model
from bids_glm.glm.spm_noise import ar_components, whitening_matrix
from bids_glm.glm.spm_pool import SPM_UFP, PooledCovariance, pooled_covariance
from bids_glm.glm.spm_reml import spm_reml

__all__ = ["SpmLayout", "SpmNoiseEstimate", "estimate_serial_covariance", "fit_spm_model"]


@dataclass(frozen=True)
class SpmLayout:
    """The design and its session structure, as the estimation needs them.

    Attributes
    ----------
    design : numpy.ndarray
        ``(n, p)`` ``xX.X``.
    session_rows : tuple of numpy.ndarray
        Each session's rows.
    drift_bases : tuple of numpy.ndarray
        Each session's DCT basis ``X0``.
    nuisance_columns : numpy.ndarray
        The session constants (``iB``), left out of "effects of interest".
    """

    design: np.ndarray
    session_rows: tuple[np.ndarray, ...]
    drift_bases: tuple[np.ndarray, ...]
    nuisance_columns: np.ndarray


@dataclass(frozen=True)
class SpmNoiseEstimate:
    """SPM's serial-correlation estimate.

    Attributes
    ----------
    covariance : numpy.ndarray
        ``(n, n)`` ``xVi.V``, scaled to trace ``n``.
    hyperparameters : numpy.ndarray
        ``xVi.h``: two per session.
    pool : PooledCovariance
        The pooled voxels and ``Cy``.
    n_iterations : tuple of int
        ReML iterations per session.
    """

    covariance: np.ndarray
    hyperparameters: np.ndarray
    pool: PooledCovariance
    n_iterations: tuple[int, ...]


def estimate_serial_covariance(
    data: np.ndarray, scale: np.ndarray, layout: SpmLayout, ufp: float = SPM_UFP
) -> SpmNoiseEstimate:
    """SPM12's "AR(1)": ReML per session on the pooled covariance, then ``V``.

    Parameters
    ----------
    data : array_like
        ``(n, n_voxels)`` raw in-mask data, read as ``data[:, start:stop]``.
    scale : numpy.ndarray
        ``(n,)`` scale factors ``gSF``.
    layout : SpmLayout
        Design and sessions.
    ufp : float
        The pool's F-test upper-tail probability.

    Returns
    -------
    SpmNoiseEstimate
    """
    pool = pooled_covariance(
        data,
        scale,
        layout.design,
        layout.session_rows,
        layout.drift_bases,
        layout.nuisance_columns,
        ufp,
    )
    blocks, hyperparameters, iterations = [], [], []
    for rows, drifts in zip(layout.session_rows, layout.drift_bases, strict=True):
        session_design = np.column_stack([layout.design[rows], drifts])
        result = spm_reml(
            pool.covariance[np.ix_(rows, rows)], session_design, ar_components(rows.size)
        )
        blocks.append(result.covariance)
        hyperparameters.extend(result.hyperparameters)
        iterations.append(result.n_iterations)
    covariance = scipy.linalg.block_diag(*blocks)
    covariance *= covariance.shape[0] / np.trace(covariance)
    return SpmNoiseEstimate(
        covariance=covariance,
        hyperparameters=np.asarray(hyperparameters),
        pool=pool,
        n_iterations=tuple(iterations),
    )


def fit_spm_model(
    data: np.ndarray, scale: np.ndarray, layout: SpmLayout, serial_correlations: bool
) -> tuple[SpmFit, SpmNoiseEstimate | None]:
    """Estimate an SPM12 model: ``cvi`` "AR(1)" (``serial_correlations``) or "none".

    Parameters
    ----------
    data : array_like
        ``(n, n_voxels)`` raw in-mask data, read as ``data[:, start:stop]``.
    scale : numpy.ndarray
        ``(n,)`` scale factors ``gSF``.
    layout : SpmLayout
        Design and sessions.
    serial_correlations : bool
        True for SPM's AR(1) model, False for ``cvi none`` (OLS).

    Returns
    -------
    tuple
        The fit and, for AR(1), the serial-correlation estimate.
    """
    n = layout.design.shape[0]
    noise = None
    if serial_correlations:
        noise = estimate_serial_covariance(data, scale, layout)
        covariance = noise.covariance
        whitening = whitening_matrix(covariance)
    else:
        covariance = np.eye(n)
        whitening = np.eye(n)
    model = whitened_model(
        layout.design, whitening, covariance, layout.session_rows, layout.drift_bases
    )
    fit = fit_whitened(data, scale, model, layout.session_rows, layout.drift_bases)
    return fit, noise
