"""Variance of every trial's LSS estimate (for its t statistic), without refitting a model.

As for a fitted model (`bids_glm.glm.contrast`), the variance of trial ``i``'s estimate is
``sigma^2 w^T G^-1 w`` with ``sigma^2 = rss / (n - p_i)`` (``p_i`` columns in the trial's LSS
design) and ``G`` the model's (whitened) Gram matrix; ``w^T G^-1 w = w^T k`` follows from the
bin's Schur update (`bids_glm.glm.lss_ar1.gains`).

* OLS: ``rss = S_0(E) - gamma_i^2 r_i^T r_i`` and ``w^T G^-1 w = (C^T C)^-1_gg + alpha_i^2 /
  r_i^T r_i``.
* AR(1): ``rss = |W e_i|^2 - z^T G^-1 z`` (`bids_glm.glm.ar_refit`) with
  ``z = -rho [y_C; y_r]``, ``y_C = N(C)^T E - gamma N(C)^T r_i + rho e_{i,n-1} c_{n-1}``,
  ``y_r = (N r_i)^T E - gamma (N r_i)^T r_i + rho e_{i,n-1} r_{i,n-1}``, and
  ``z^T G^-1 z = rho^2 [y_C^T G_C^-1 y_C + (u_i^T y_C - y_r)^2 / s_i]``; the voxel-dependent
  parts ``G_C^-1 N(C)^T E`` enter through one stacked product per bin (as the estimates do).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bids_glm.glm.ar import LAST, SUM_LAG1, SUM_SQUARES
from bids_glm.glm.lss_ar1 import bin_solve, gains, sorted_runs, unsort
from bids_glm.glm.lss_terms import LssPass, LssTerms


def ols_variance(terms: LssTerms, summary: LssPass, voxels: slice) -> np.ndarray:
    """Variance of every trial's OLS LSS estimate at ``voxels``, shape (K, v)."""
    gamma = summary.gamma[:, voxels]
    rss = summary.moments[SUM_SQUARES, voxels] - gamma**2 * terms.squares[:, np.newaxis]
    inverse_squares = np.divide(
        1.0, terms.squares, out=np.zeros_like(terms.squares), where=~terms.alone
    )
    factor = terms.cov[terms.group_column, terms.group_column] + terms.alpha**2 * inverse_squares
    dof = terms.conditions.shape[0] - terms.n_columns
    return np.maximum(rss, 0.0) * (factor / dof)[:, np.newaxis]


@dataclass(frozen=True)
class VarianceTables:
    """Per AR(1) bin (rows as in `bids_glm.glm.lss_ar1.BinTables`) and trial.

    Attributes
    ----------
    rho : ndarray, shape (S,)
    stack : ndarray, shape (S, 2 K + 1 + p, p)
        Rows ``psi_i^T G_C^-1`` (K), ``u_i^T`` (K), ``c^T G_C^-1`` (1), ``R^-T`` (p), with
        ``psi_i = N(C)^T r_i`` and ``c = c_{n-1}``.
    scalars : ndarray, shape (6, S, K)
        ``psi^T G_C^-1 psi``, ``psi^T G_C^-1 c``, ``u^T psi``, ``u^T c``, ``1 / s``,
        ``w^T G^-1 w``.
    last_last : ndarray, shape (S,)
        ``c^T G_C^-1 c``.
    """

    rho: np.ndarray
    stack: np.ndarray
    scalars: np.ndarray
    last_last: np.ndarray


def variance_tables(
    terms: LssTerms, rho: np.ndarray, computed: dict[float, tuple] | None = None
) -> VarianceTables:
    """`VarianceTables` of the bins with coefficients ``rho``.

    ``computed``: each bin's rows, by ``rho``, kept from earlier calls (and added to).
    """
    computed = {} if computed is None else computed
    stacks, scalars, last_last = [], [], []
    for value in np.asarray(rho, dtype=np.float64).tolist():
        if value not in computed:
            computed[value] = _variance_row(terms, value)
        stack, scalar, last_term = computed[value]
        stacks.append(stack)
        scalars.append(scalar)
        last_last.append(last_term)
    return VarianceTables(
        np.asarray(rho),
        np.stack(stacks),
        np.moveaxis(np.array(scalars), 1, 0),
        np.array(last_last),
    )


def _variance_row(terms: LssTerms, rho: float) -> tuple:
    """One bin's `VarianceTables` rows: its stack, scalars and ``c^T G_C^-1 c``."""
    last = terms.conditions[-1]
    trials = np.arange(terms.n_trials)
    solve = bin_solve(terms, rho)
    gain, trial = gains(terms, solve)
    cov_psi = solve.covariance @ terms.neighbour_cross
    cov_last = solve.covariance @ last
    stack = np.vstack([cov_psi.T, solve.update.T, cov_last, solve.triangle_inverse.T])
    scalars = [
        np.einsum("pk,pk->k", terms.neighbour_cross, cov_psi),
        last @ cov_psi,
        np.einsum("pk,pk->k", solve.update, terms.neighbour_cross),
        last @ solve.update,
        solve.inverse_schur,
        gain[terms.group_column, trials] + terms.alpha * trial,
    ]
    return stack, scalars, last @ cov_last


def binned_terms(stack: np.ndarray, rows: np.ndarray, lag_cross: np.ndarray) -> np.ndarray:
    """Per trial and voxel, at the trial's bin: ``psi^T G_C^-1 L``, ``u^T L``, ``c^T G_C^-1 L``,
    ``L^T G_C^-1 L`` with ``L = N(C)^T E`` of the voxel; shape (4, K, v)."""
    n_trials = rows.shape[0]
    linear_rows = 2 * n_trials + 1
    order, offsets, base, runs = sorted_runs(rows)
    cross = np.take(lag_cross, order, axis=1)
    out = np.empty((4, *rows.shape))
    trials = np.arange(n_trials)[:, np.newaxis]
    for start, stop in runs:
        offset = offsets[:, start:stop]
        low = int(base[start])
        high = low + int(offset.max())
        block = stack[low : high + 1] @ cross[:, start:stop]  # (bins, rows, run)
        columns = np.arange(stop - start)
        out[0, :, start:stop] = block[offset, trials, columns]
        out[1, :, start:stop] = block[offset, n_trials + trials, columns]
        out[2, :, start:stop] = block[offset, 2 * n_trials, columns]
        squares = np.einsum("brv,brv->bv", block[:, linear_rows:], block[:, linear_rows:])
        out[3, :, start:stop] = squares[offset, columns]
    return unsort(out, order)


def ar1_variance(
    terms: LssTerms,
    summary: LssPass,
    tables: VarianceTables,
    rows: np.ndarray,
    voxels: slice,
) -> np.ndarray:
    """Variance of every trial's AR(1) LSS estimate at ``voxels`` (bins ``rows``), (K, v)."""
    n_trials = terms.n_trials
    psi_l, update_l, last_l, l_l = binned_terms(tables.stack, rows, summary.lag_cross[:, voxels])
    flat = rows * n_trials + np.arange(n_trials)[:, np.newaxis]
    psi_psi, psi_last, update_psi, update_last, inverse_schur, factor = (
        np.take(values, flat) for values in tables.scalars
    )
    rho, last_last = tables.rho[rows], tables.last_last[rows]
    gamma = summary.gamma[:, voxels]
    column = (terms.squares, terms.lag, terms.last)
    squares, lag, last_r = (values[:, np.newaxis] for values in column)
    moments = summary.moments[:, voxels]
    last = moments[LAST] - gamma * last_r
    trial_lag = summary.trial_lag_cross[:, voxels] - gamma * 2.0 * lag
    condition_part = (
        l_l
        + gamma**2 * psi_psi
        + (rho * last) ** 2 * last_last
        - 2.0 * gamma * psi_l
        + 2.0 * rho * last * last_l
        - 2.0 * rho * gamma * last * psi_last
    )
    inner = (
        trial_lag
        + rho * last * last_r
        - (update_l - gamma * update_psi + rho * last * update_last)
    )
    reduction = rho**2 * (condition_part + inverse_schur * inner**2)
    residual_squares = moments[SUM_SQUARES] - gamma**2 * squares
    residual_lag = moments[SUM_LAG1] - gamma * summary.trial_lag_cross[:, voxels] + gamma**2 * lag
    whitened = (1.0 + rho**2) * residual_squares - 2.0 * rho * residual_lag - (rho * last) ** 2
    dof = (terms.conditions.shape[0] - terms.n_columns)[:, np.newaxis]
    return np.maximum(whitened - reduction, 0.0) / dof * factor
