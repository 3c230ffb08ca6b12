"""SPM12's estimation with a whitening matrix (``spm_spm.m``).

With ``W`` the whitening matrix (identity for ``cvi none``) and ``K`` the per-session
residual-forming high-pass filter: betas are ``pinv(KWX) KWY``, ``ResMS = ResSS / trRV``,
and the effective degrees of freedom ``erdf = trRV^2 / trRVRV`` over ``R xV`` with
``xV = K W V W' K'``; ``Bcov = pinv(KWX) xV pinv(KWX)'``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bids_glm.glm.spm_filter import apply_high_pass
from bids_glm.glm.spm_pool import scaled_chunk, voxel_chunks
from bids_glm.glm.spm_space import DesignSpace, design_space, residual_traces
from bids_glm.runtime.progress import Progress
from bids_glm.runtime.threads import for_each_in_threads, thread_budget

__all__ = ["SpmFit", "SpmWhitenedModel", "fit_whitened", "whitened_model"]


@dataclass(frozen=True)
class SpmWhitenedModel:
    """The data-independent part of an SPM fit.

    Attributes
    ----------
    whitening : numpy.ndarray
        ``(n, n)`` ``xX.W``.
    session_filters : tuple of numpy.ndarray or None
        Per session, the filter and whitening as one matrix ``K_s W_s`` when ``W`` is block
        diagonal over sessions (the same numbers to rounding, less work); None otherwise.
    space : DesignSpace
        Space of the filtered, whitened design ``KWX`` (``xX.xKXs``).
    covariance : numpy.ndarray
        ``(n, n)`` ``xX.V = K W V W' K'``.
    beta_covariance : numpy.ndarray
        ``(p, p)`` ``xX.Bcov``.
    trace_rv, trace_rvrv : float
        ``xX.trRV`` and ``xX.trRVRV``.
    """

    whitening: np.ndarray
    session_filters: tuple[np.ndarray, ...] | None
    space: DesignSpace
    covariance: np.ndarray
    beta_covariance: np.ndarray
    trace_rv: float
    trace_rvrv: float

    @property
    def erdf(self) -> float:
        """Effective residual degrees of freedom (Satterthwaite)."""
        return self.trace_rv**2 / self.trace_rvrv


@dataclass(frozen=True)
class SpmFit:
    """Betas and residual mean squares of every in-mask voxel.

    Attributes
    ----------
    betas : numpy.ndarray
        ``(p, n_voxels)``.
    res_ms : numpy.ndarray
        ``(n_voxels,)`` ``ResSS / trRV``.
    model : SpmWhitenedModel
        What the fit used.
    """

    betas: np.ndarray
    res_ms: np.ndarray
    model: SpmWhitenedModel


def whitened_model(
    design: np.ndarray,
    whitening: np.ndarray,
    serial_covariance: np.ndarray,
    session_rows: tuple[np.ndarray, ...],
    drift_bases: tuple[np.ndarray, ...],
) -> SpmWhitenedModel:
    """Filter and whiten the design; compute ``xX.V``, ``Bcov`` and the traces.

    Parameters
    ----------
    design : numpy.ndarray
        ``(n, p)`` ``xX.X``.
    whitening : numpy.ndarray
        ``(n, n)`` ``W``.
    serial_covariance : numpy.ndarray
        ``(n, n)`` ``xVi.V``.
    session_rows, drift_bases
        Each session's rows and DCT basis.

    Returns
    -------
    SpmWhitenedModel
    """

    def filtered(values: np.ndarray) -> np.ndarray:
        return apply_high_pass(values, session_rows, drift_bases)

    space = design_space(filtered(whitening @ design))
    covariance = filtered(filtered(whitening @ serial_covariance @ whitening.T).T)
    trace_rv, trace_rvrv = residual_traces(space, covariance)
    beta_covariance = space.pseudo_inverse @ covariance @ space.pseudo_inverse.T
    return SpmWhitenedModel(
        whitening=whitening,
        session_filters=_session_filters(whitening, session_rows, drift_bases),
        space=space,
        covariance=covariance,
        beta_covariance=beta_covariance,
        trace_rv=trace_rv,
        trace_rvrv=trace_rvrv,
    )


def _session_filters(
    whitening: np.ndarray, session_rows: tuple[np.ndarray, ...], drift_bases
) -> tuple[np.ndarray, ...] | None:
    """Per session, ``K W`` as one matrix (``W`` is block diagonal over sessions).

    None when ``W`` is the identity (then the DCT residual forming is cheaper) or has
    entries across sessions (then ``W`` and ``K`` are applied one after the other).
    """
    if np.array_equal(whitening, np.eye(whitening.shape[0])):
        return None
    blocks = tuple(whitening[np.ix_(rows, rows)] for rows in session_rows)
    if sum(np.count_nonzero(block) for block in blocks) != np.count_nonzero(whitening):
        return None
    return tuple(
        block - basis @ (basis.T @ block) for block, basis in zip(blocks, drift_bases, strict=True)
    )


def filter_and_whiten(
    model: SpmWhitenedModel, values: np.ndarray, session_rows, drift_bases
) -> np.ndarray:
    """``K W values`` (``values`` may be overwritten)."""
    if model.session_filters is not None:
        filtered = np.empty_like(values)
        for rows, operator in zip(session_rows, model.session_filters, strict=True):
            filtered[rows] = operator @ values[rows]
        return filtered
    if not np.array_equal(model.whitening, np.eye(model.whitening.shape[0])):
        values = model.whitening @ values
    return apply_high_pass(values, session_rows, drift_bases, in_place=True)


def fit_whitened(
    data: np.ndarray,
    scale: np.ndarray,
    model: SpmWhitenedModel,
    session_rows: tuple[np.ndarray, ...],
    drift_bases: tuple[np.ndarray, ...],
) -> SpmFit:
    """Estimate betas and ResMS voxel chunk by voxel chunk.

    Parameters
    ----------
    data : array_like
        ``(n, n_voxels)`` raw in-mask data, read as ``data[:, start:stop]``.
    scale : numpy.ndarray
        ``(n,)`` per-scan scale factors ``gSF``.
    model : SpmWhitenedModel
        From ``whitened_model``.
    session_rows, drift_bases
        Each session's rows and DCT basis.

    Returns
    -------
    SpmFit
    """
    n_columns = model.space.matrix.shape[1]
    betas = np.empty((n_columns, data.shape[1]))
    res_ms = np.empty(data.shape[1])

    progress = Progress("SPM12 whitened fit", data.shape[1], "voxels fitted")

    def fit_chunk(block: slice) -> None:
        scaled = scaled_chunk(data, scale, block)
        kept = filter_and_whiten(model, scaled, session_rows, drift_bases)
        betas[:, block] = model.space.pseudo_inverse @ kept
        res_ms[block] = np.sum(model.space.residuals(kept) ** 2, axis=0) / model.trace_rv
        progress.advance(block.stop - block.start)

    for_each_in_threads(fit_chunk, voxel_chunks(data.shape[1]), thread_budget(), "spm-fit")
    return SpmFit(betas=betas, res_ms=res_ms, model=model)
