"""The AR(1) refit of every LSS model, each with its own AR(1) coefficients, from `LssPass`.

Each trial model ``[C, r_i]`` (see `bids_glm.glm.lss_terms`) gets, per voxel, the coefficient
nilearn would estimate from that model's own OLS residuals (centred on their own global mean)
and binned as nilearn bins it; the voxel is then refitted as `bids_glm.glm.ar_refit` refits:
``beta_b = beta_ols + G_b^-1 z`` with ``G_b = X^T W_b^T W_b X`` and
``z = X^T W^T W e = -rho N(X)^T e - rho^2 x_{n-1} e_{n-1}``. Only trial ``i``'s estimate,
``w^T beta`` with ``w = e_g + alpha_i e_r``, is needed, so only ``k = G_b^-1 w`` enters:

* ``G_b``'s ``C`` block is shared by all trials of bin ``b`` (``W_b C = Q_b R_b``, one QR per
  bin), the trial's column adds one row and column, and a Schur complement gives ``k``
  for all trials of the bin at once (``(p, K)`` products);
* ``k^T z`` per voxel is ``-rho [k_C^T N(C)^T E - gamma k_C^T N(C)^T r_i
  + k_r ((N r_i)^T E - gamma (N r_i)^T r_i)] - rho^2 (k_C^T c_{n-1} + k_r r_{i,n-1}) e_{i,n-1}``:
  one ``(K, p) @ (p, voxels)`` product per bin for ``k_C^T N(C)^T E``, with voxels grouped
  by the lowest bin among their trials (a voxel's trial models differ by one column, so
  their bins differ by little), and per-(bin, trial) numbers for the rest.

No model is refitted to the data; the result equals per-trial refits (`bids_glm.glm.fit.fit_glm`
on each LSS design) to rounding, except voxels whose coefficient is within rounding of a bin
edge.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from bids_glm.glm.ar import LAST, whiten_ar1
from bids_glm.glm.lss_terms import LssPass, LssTerms, trial_ar1
from bids_glm.glm.ols import voxel_chunks
from bids_glm.runtime.threads import for_each_in_threads


@dataclass(frozen=True)
class BinTables:
    """Per AR(1) bin ``b`` (rows: consecutive bins from ``first_step``) and trial, the
    refit's coefficients with the bin's ``rho`` (or ``rho^2``) folded in.

    Trial ``i``'s AR(1) estimate at a voxel of bin ``b`` is
    ``beta_C[g] - gain_b^T N(C)^T E + gamma_i weight - trial (N r_i)^T E - last e_{n-1}``.

    Attributes
    ----------
    first_step : int
        Bin of row 0, as ``trunc(rho * n_bins)``.
    rho : ndarray, shape (S,)
    gain : ndarray, shape (S, K, p)
        ``rho k_C^T`` of every trial.
    weight : ndarray, shape (S, K)
        What ``gamma_i`` multiplies: ``alpha_i + rho k_C^T N(C)^T r_i + trial (N r_i)^T r_i
        + last r_{i,n-1}``.
    trial : ndarray, shape (S, K)
        ``rho k_r``.
    last : ndarray, shape (S, K)
        ``rho^2 (k_C^T c_{n-1} + k_r r_{i,n-1})``.
    """

    first_step: int
    rho: np.ndarray
    gain: np.ndarray
    weight: np.ndarray
    trial: np.ndarray
    last: np.ndarray


@dataclass(frozen=True)
class BinSolve:
    """The condition block of one bin's whitened Gram matrix and every trial's Schur update.

    Attributes
    ----------
    triangle_inverse : ndarray, shape (p, p)
        ``R_b^-1`` with ``W_b C = Q_b R_b``.
    covariance : ndarray, shape (p, p)
        ``G_C^-1 = R_b^-1 R_b^-T``.
    update : ndarray, shape (p, K)
        ``u_i = G_C^-1 C^T W^T W r_i``.
    inverse_schur : ndarray, shape (K,)
        ``1 / (r_i^T W^T W r_i - u_i^T C^T W^T W r_i)`` (0 for trials alone in their condition).
    """

    triangle_inverse: np.ndarray
    covariance: np.ndarray
    update: np.ndarray
    inverse_schur: np.ndarray


def bin_solve(terms: LssTerms, rho: float) -> BinSolve:
    """`BinSolve` of the bin with coefficient ``rho``."""
    basis, triangle = scipy.linalg.qr(whiten_ar1(terms.conditions.copy(), rho), mode="economic")
    whitened = whiten_ar1(terms.residual.copy(), rho)
    projected = basis.T @ whitened  # (p, K)
    schur = np.einsum("tk,tk->k", whitened, whitened) - np.einsum("pk,pk->k", projected, projected)
    inverse = scipy.linalg.solve_triangular(triangle, np.eye(triangle.shape[0]))
    return BinSolve(
        triangle_inverse=inverse,
        covariance=inverse @ inverse.T,
        update=inverse @ projected,
        inverse_schur=np.divide(1.0, schur, out=np.zeros_like(schur), where=~terms.alone),
    )


def gains(terms: LssTerms, solve: BinSolve) -> tuple[np.ndarray, np.ndarray]:
    """``k = G^-1 w`` of every trial: ``k_C`` (p, K) and ``k_r`` (K,)."""
    trials = np.arange(terms.n_trials)
    update_g = solve.update[terms.group_column, trials]
    scale = (update_g - terms.alpha) * solve.inverse_schur
    gain = solve.covariance[:, terms.group_column] + solve.update * scale
    return gain, (terms.alpha - update_g) * solve.inverse_schur


def _bin_row(terms: LssTerms, rho: float) -> tuple[np.ndarray, ...]:
    """``k_C^T`` (K, p), ``k_C^T N(C)^T r_i``, ``k_r``, ``k^T x_{n-1}`` of one bin."""
    gain, trial = gains(terms, bin_solve(terms, rho))
    lag = np.einsum("pk,pk->k", gain, terms.neighbour_cross)
    last = terms.conditions[-1] @ gain + trial * terms.last
    return gain.T, lag, trial, last


def bin_tables(
    terms: LssTerms,
    first_step: int,
    last_step: int,
    n_bins: int,
    computed: dict[float, tuple] | None = None,
) -> BinTables:
    """`BinTables` for the bins ``first_step .. last_step`` (``rho = step / n_bins``).

    ``computed``: each bin's row, by ``rho``, kept from earlier calls (and added to), so
    that blocks of voxels sharing bins compute each bin once.
    """
    rho = np.arange(first_step, last_step + 1) / n_bins
    computed = {} if computed is None else computed
    rows = []
    for value in rho.tolist():
        if value not in computed:
            computed[value] = _bin_row(terms, value)
        rows.append(computed[value])
    gain, lag, trial, last = (np.stack(column) for column in zip(*rows, strict=True))
    factor = rho[:, np.newaxis]
    trial *= factor
    last *= factor**2
    weight = terms.alpha + lag * factor + trial * (2.0 * terms.lag) + last * terms.last
    return BinTables(int(first_step), rho, gain * factor[:, :, np.newaxis], weight, trial, last)


def sorted_runs(rows: np.ndarray):
    """Voxels sorted by their lowest row, and the runs of voxels sharing it.

    Returns ``order`` (sorted voxel positions), ``offsets`` ((K, v): each trial's row minus
    its voxel's lowest, in sorted order), ``base`` (lowest row per sorted voxel) and the
    ``(start, stop)`` of each run.
    """
    base = rows.min(axis=0)
    # rows of 100 bins per unit fit in 16 bits, which numpy sorts stably by radix (linear time)
    keys = base.astype(np.int16) if base.size and base.max() < 2**15 else base
    order = np.argsort(keys, kind="stable")
    sorted_base = base[order]
    offsets = np.take(rows, order, axis=1)
    offsets -= sorted_base
    starts = np.flatnonzero(np.diff(sorted_base, prepend=sorted_base[0] - 1))
    runs = list(zip(starts, np.append(starts[1:], order.size), strict=True))
    return order, offsets, sorted_base, runs


def unsort(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    """``values`` (..., v) in sorted voxel order back in the original order."""
    inverse = np.empty_like(order)
    inverse[order] = np.arange(order.size)
    return np.take(values, inverse, axis=-1)


def binned_products(gain: np.ndarray, rows: np.ndarray, lag_cross: np.ndarray) -> np.ndarray:
    """``gain[rows[i, v], i] @ lag_cross[:, v]`` for every trial i and voxel v, shape (K, v).

    Voxels are sorted by their lowest row; each run of voxels sharing it takes one product
    ``gain[low : high + 1]`` (stacked, ``((high - low + 1) K, p)``) ``@ lag_cross[:, run]``,
    from which every trial picks its row.
    """
    n_trials, n_columns = gain.shape[1], gain.shape[2]
    order, offsets, base, runs = sorted_runs(rows)
    offsets *= n_trials
    offsets += np.arange(n_trials)[:, np.newaxis]  # row of the stacked product
    cross = np.take(lag_cross, order, axis=1)
    products = np.empty(rows.shape)
    for start, stop in runs:
        index = offsets[:, start:stop]
        low = int(base[start])
        high = low + int(index.max()) // n_trials
        stacked = gain[low : high + 1].reshape(-1, n_columns) @ cross[:, start:stop]
        index *= stop - start
        index += np.arange(stop - start)
        products[:, start:stop] = np.take(stacked, index)
    return unsort(products, order)


def binned_steps(
    terms: LssTerms,
    summary: LssPass,
    means: np.ndarray,
    n_bins: int,
    chunks: list[slice],
    n_threads: int,
    coefficients: np.ndarray | None,
) -> np.ndarray:
    """Every trial model's AR(1) bin at every voxel, ``trunc(rho * n_bins)``, (K, V) int16.

    ``means``: each model's global residual mean (`bids_glm.glm.lss_terms.trial_means`).
    Clipped to ``|rho| <= n / (n - 1)`` (the largest an estimate can take). The coefficients
    themselves are written to ``coefficients`` (K, V) if given.
    """
    n_scans = terms.conditions.shape[0]
    bound = int(np.trunc(n_bins * n_scans / (n_scans - 1.0)))
    steps = np.empty(summary.gamma.shape, dtype=np.int16 if bound < 2**15 else np.intp)

    def bin_chunk(chunk: slice) -> None:
        rho = trial_ar1(terms, summary, means, chunk)
        if coefficients is not None:
            coefficients[:, chunk] = rho
        rho *= n_bins
        np.trunc(rho, out=rho)
        np.clip(rho, -bound, bound, out=rho)
        steps[:, chunk] = rho

    for_each_in_threads(bin_chunk, chunks, n_threads, "lss")
    return steps


def ar1_estimates(
    terms: LssTerms,
    summary: LssPass,
    means: np.ndarray,
    n_bins: int,
    chunk_voxels: int,
    n_threads: int,
    out: tuple[np.ndarray, np.ndarray | None, np.ndarray | None],
    variance: Callable | None = None,
    computed: dict[float, tuple] | None = None,
) -> None:
    """Every trial's AR(1) LSS estimate at the voxels of ``summary`` and, if asked, its
    model's AR(1) coefficient and the estimate's variance, written to ``out``: three
    (K, v) arrays (or views), the coefficients' and variances' None when not asked.

    The models' coefficients are binned first (`binned_steps`, from the global residual
    ``means``), so that the bins' tables cover only the bins in use (``computed``: bins'
    rows kept across calls, see `bin_tables`); the voxels are processed in chunks of
    ``chunk_voxels``. ``variance(rho_values)`` returns a function ``(rows, voxels) -> (K, v)``
    variances (`bids_glm.glm.lss_variance`); required when ``out`` asks for variances.
    """
    estimates, coefficients, variances = out
    chunks = list(voxel_chunks(summary.gamma.shape[1], chunk_voxels))
    steps = binned_steps(terms, summary, means, n_bins, chunks, n_threads, coefficients)
    low, high = (int(steps.min()), int(steps.max())) if steps.size else (0, 0)
    tables = bin_tables(terms, low, high, n_bins, computed)
    chunk_variance = None if variances is None else variance(tables.rho)
    n_trials = terms.n_trials
    trials = np.arange(n_trials)[:, np.newaxis]

    def refit(chunk: slice) -> None:
        rows = steps[:, chunk].astype(np.intp)
        rows -= low  # rows of the tables
        if chunk_variance is not None:
            variances[:, chunk] = chunk_variance(rows, chunk)
        estimate = binned_products(tables.gain, rows, summary.lag_cross[:, chunk])
        np.negative(estimate, out=estimate)
        rows *= n_trials
        rows += trials  # rows of the flattened (S * K) tables
        term = np.take(tables.weight, rows)
        term *= summary.gamma[:, chunk]
        estimate += term
        np.take(tables.trial, rows, out=term)
        term *= summary.trial_lag_cross[:, chunk]
        estimate -= term
        np.take(tables.last, rows, out=term)
        term *= summary.moments[LAST, chunk]
        estimate -= term
        np.take(summary.beta[:, chunk], terms.group_column, axis=0, out=term)
        np.add(estimate, term, out=estimates[:, chunk])

    for_each_in_threads(refit, chunks, n_threads, "lss")
