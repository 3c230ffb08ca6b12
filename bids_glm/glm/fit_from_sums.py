"""Fit one run from sums over its volumes (`bids_glm.glm.cross_products`), never holding it.

The OLS summaries that `bids_glm.glm.fit.fit_from_ols` needs (`bids_glm.glm.ols.OlsPass`:
coefficients, five residual moments, lag-one design-residual products) are linear or
quadratic in the data, so they follow from `RunSums` exactly:

* with ``b = pinv(X) d`` and ``e_d = d - X b`` (the residuals of the shifted data ``d``),
  ``|e_d|^2 = sum d^2 - b^T X^T X b``, ``sum_t e_t e_{t+1} = sum_t d_t d_{t+1} - b^T N^T d +
  b^T C b`` (``C`` the symmetrised lag-one Gram matrix ``sum_t x_t x_{t+1}^T``),
  ``N^T e_d = N^T d - N^T X b``, and the sum, first and last residuals are linear;
* scaling is a per-voxel affine map ``y -> g y + h`` (`bids_glm.glm.scaling.signal_affine`),
  so the scaled series is ``g d + c 1`` with ``c = g y_0 + h``, its residuals are
  ``g e_d + c e1`` (``e1`` the residual of the constant series, zero when the design has a
  constant), and each summary is expanded in ``g`` and ``c`` with the ``e1`` cross terms
  the accumulator collected.

Every sum is of data shifted by their first volume, so no large baseline cancels; the
subtractions above lose only about ``|d|^2 / |e_d|^2`` ulps (the data's variance explained by
the design, drifts included), see ``tests/test_streaming_precision.py``. What cannot be
reproduced is the float32 rounding of each scaled value that the in-memory path inherits from
nilearn: the sums are of the unrounded map (differences ~1e-7 relative, which move an AR(1)
coefficient across a 0.01 bin edge for a handful of voxels in a whole brain).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from bids_glm.glm.ar import FIRST, LAST, SUM, SUM_LAG1, SUM_SQUARES
from bids_glm.glm.cross_products import RunSums, constant_residual
from bids_glm.glm.fit import check_model, fit_from_ols
from bids_glm.glm.ols import OlsPass, neighbour_sum, voxel_chunks
from bids_glm.glm.results import RunFit
from bids_glm.glm.scaling import signal_affine
from bids_glm.runtime.threads import for_each_in_threads, thread_budget


def _quadratic(left: np.ndarray, matrix: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``left[:, v] @ matrix @ right[:, v]`` for every voxel v."""
    return np.einsum("iv,iv->v", left, matrix @ right)


def ols_from_sums(
    design: np.ndarray,
    sums: RunSums,
    gain: np.ndarray,
    offset: float,
    lag_cross: bool,
    chunk_voxels: int = 16_384,
    n_threads: int | None = None,
) -> OlsPass:
    """OLS summaries of the scaled series ``gain * y + offset``, from the run's sums.

    Parameters
    ----------
    design : ndarray, shape (n, p), float64
        The design the sums were accumulated with.
    sums : RunSums
        **Consumed**: its ``projected`` and ``neighbour`` arrays are overwritten (they become
        the result's ``beta`` and ``lag_cross``), so no further (p, V) copy is made.
    gain : ndarray, shape (V,)
    offset : float
    lag_cross : bool
        Whether the AR(1) refit's ``lag_cross`` is needed.
    chunk_voxels : int
        Voxels computed together (temporaries are a few ``(p, chunk_voxels)`` arrays).
    n_threads : int, optional
        Threads sharing the chunks (default: `thread_budget`); the result does not depend
        on it.

    Returns
    -------
    OlsPass
    """
    terms = _DesignTerms.of(design)
    moments = np.empty((5, sums.shift.size))

    def one_chunk(chunk: slice) -> None:  # writes only its own voxels' columns
        _ols_chunk(terms, sums, gain[chunk], offset, chunk, moments[:, chunk], lag_cross)

    chunks = list(voxel_chunks(sums.shift.size, chunk_voxels))
    n_threads = thread_budget() if n_threads is None else n_threads
    for_each_in_threads(one_chunk, chunks, n_threads, "ols")
    return OlsPass(
        beta=sums.projected, moments=moments, lag_cross=sums.neighbour if lag_cross else None
    )


@dataclass(frozen=True)
class _DesignTerms:
    """The (p, p) and (p,) design products the expansion uses."""

    X: np.ndarray
    gram: np.ndarray  # X^T X
    lag_gram: np.ndarray  # sum_t x_t x_{t+1}^T
    neighbour_gram: np.ndarray  # N^T X
    e1: np.ndarray  # residual of the constant series
    e1_neighbour_design: np.ndarray  # neighbour_sum(e1)^T X
    e1_design: np.ndarray  # e1^T X (zero up to rounding)
    neighbour_e1: np.ndarray  # N^T e1
    pinv_ones: np.ndarray  # pinv(X) 1

    @classmethod
    def of(cls, X: np.ndarray) -> _DesignTerms:
        neighbours = neighbour_sum(X)
        e1 = constant_residual(X)
        return cls(
            X=X,
            gram=X.T @ X,
            lag_gram=X[:-1].T @ X[1:],
            neighbour_gram=neighbours.T @ X,
            e1=e1,
            e1_neighbour_design=neighbour_sum(e1[:, None])[:, 0] @ X,
            e1_design=e1 @ X,
            neighbour_e1=neighbours.T @ e1,
            pinv_ones=scipy.linalg.pinv(X) @ np.ones(X.shape[0]),
        )


def _ols_chunk(
    terms: _DesignTerms,
    sums: RunSums,
    gain: np.ndarray,
    offset: float,
    chunk: slice,
    moments: np.ndarray,
    lag_cross: bool,
) -> None:
    """`ols_from_sums` for the voxels ``chunk`` (in place in ``sums``, into ``moments``)."""
    X, e1 = terms.X, terms.e1
    b, cross = sums.projected[:, chunk], sums.neighbour[:, chunk]
    c = gain * sums.shift[chunk] + offset
    squares_d = sums.squares[chunk] - _quadratic(b, terms.gram, b)
    lag_d = sums.lag1[chunk] - np.einsum("iv,iv->v", b, cross) + _quadratic(b, terms.lag_gram, b)
    e1_cross_d = sums.constant_neighbour[chunk] - terms.e1_neighbour_design @ b
    e1_d = sums.constant_residual[chunk] - terms.e1_design @ b
    moments[SUM_SQUARES] = gain**2 * squares_d + 2 * gain * c * e1_d + c**2 * (e1 @ e1)
    moments[SUM_LAG1] = gain**2 * lag_d + gain * c * e1_cross_d + c**2 * (e1[:-1] @ e1[1:])
    moments[SUM] = gain * (sums.total[chunk] - X.sum(axis=0) @ b) + c * e1.sum()
    moments[FIRST] = gain * -(X[0] @ b) + c * e1[0]
    moments[LAST] = gain * (sums.last[chunk] - X[-1] @ b) + c * e1[-1]
    if lag_cross:
        cross -= terms.neighbour_gram @ b
        cross *= gain
        cross += np.outer(terms.neighbour_e1, c)
    b *= gain
    b += np.outer(terms.pinv_ones, c)


def fit_from_sums(
    design: np.ndarray,
    sums: RunSums,
    column_names: Sequence[str],
    noise_model: str = "ar1",
    signal_scaling: str = "percent",
    n_bins: int = 100,
    n_threads: int | None = None,
) -> RunFit:
    """Fit a first-level GLM to one run from its sums, as `bids_glm.glm.fit.fit_glm` fits
    the held, scaled series.

    Parameters
    ----------
    design : ndarray, shape (n_scans, p)
        The fitted design (kept volumes), as given to the accumulator.
    sums : RunSums
        The run's sums over its kept volumes, of unscaled data (consumed, see
        `ols_from_sums`).
    column_names : sequence of str, length p
    noise_model : {"ar1", "ols"}
    signal_scaling : {"percent", "global", "none"}
        As `bids_glm.glm.scaling.scale_signal`, applied to the sums.
    n_bins : int
        AR(1) bins per unit of the coefficient.
    n_threads : int, optional
        Threads of the AR(1) refit; default: the process's `thread_budget`.

    Returns
    -------
    RunFit
    """
    X = np.asarray(design, dtype=np.float64)
    ols = scaled_ols(X, sums, column_names, noise_model, signal_scaling, n_bins)
    n_threads = thread_budget() if n_threads is None else max(int(n_threads), 1)
    return fit_from_ols(X, ols, column_names, noise_model, int(n_bins), n_threads, consume=True)


def scaled_ols(
    design: np.ndarray,
    sums: RunSums,
    column_names: Sequence[str],
    noise_model: str = "ar1",
    signal_scaling: str = "percent",
    n_bins: int = 100,
    usable: np.ndarray | None = None,
    locations: str = "voxel(s)",
) -> OlsPass:
    """The first half of `fit_from_sums`: the model checked, the OLS pass of the scaled data.

    `bids_glm.glm.fit.fit_from_ols` (with ``consume=True``) finishes the fit; in between,
    the caller can drop the sums the OLS pass does not keep (all but two (p, V) arrays).
    Parameters as `fit_from_sums`; ``usable`` and ``locations`` as
    `bids_glm.glm.scaling.scale_signal` (for the warning on means floored at 1).
    """
    X = np.asarray(design, dtype=np.float64)
    check_model(X, column_names, noise_model, n_bins)
    if sums.n_scans != X.shape[0]:
        raise ValueError(f"sums over {sums.n_scans} volumes for a design of {X.shape[0]} rows")
    gain, offset = signal_affine(sums.voxel_mean, signal_scaling, usable, locations)
    return ols_from_sums(X, sums, gain, offset, lag_cross=noise_model == "ar1")
