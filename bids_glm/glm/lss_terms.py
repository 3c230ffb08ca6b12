"""LSS models as the ordinary model plus one column, and the one pass over the data they need.

Every LSS model (trial ``i``; the other trials of its condition; each other condition; the
nuisance columns) spans the columns of the *condition design* ``C`` (each condition's trials
summed, the other columns as they are: the ordinary design) plus trial ``i``'s column ``a_i``.
In the basis ``[C, r_i]`` with ``r_i = a_i - C pinv(C) a_i`` (the trial's column made
orthogonal to ``C``), the model's OLS fit is the ordinary fit plus one term (Frisch-Waugh):

* ``gamma_i = r_i^T E / r_i^T r_i`` with ``E`` the ordinary residuals; the coefficients of
  ``C`` stay the ordinary ``beta_C``;
* trial ``i``'s LSS estimate (its own column's coefficient in the LSS parametrisation) is
  ``beta_C[g] + (1 - pinv(C) a_i [g]) gamma_i``, ``g`` the column of its condition;
* the model's residuals are ``E - r_i gamma_i``: their moments (sum of squares, lag-1 sum,
  sum, first, last; what the AR(1) estimate needs) follow from the ordinary residuals'
  moments, ``gamma_i`` and ``(N r_i)^T E`` (``N`` the neighbour sum).

A trial alone in its condition has ``r_i = 0``: its LSS model is the ordinary model.

`lss_pass` reads the data once, chunk by chunk, as `bids_glm.glm.ols.ols_pass` does, and keeps
per voxel the ordinary fit's summaries plus ``gamma`` and ``(N r_i)^T E`` of every trial.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from bids_glm.glm.ar import SUM, residual_moments
from bids_glm.glm.ols import design_rank, neighbour_sum, voxel_chunks
from bids_glm.runtime.threads import for_each_in_threads

# |r_i|^2 below this fraction of |a_i|^2: trial i's column is (nearly) in the other columns'
# span, and the one-column update would lose precision (the caller falls back to refits)
COLLINEAR_FRACTION = 1e-10
# trials per band of scans in the pass over the data (see trial_bands)
BAND_TRIALS = 8
# a trial regressor's values below this fraction of its peak count as zero in trial_bands
NEGLIGIBLE_FRACTION = 1e-13
# voxels summed at a time by trial_means
MEAN_CHUNK_VOXELS = 8192


@dataclass(frozen=True)
class LssTerms:
    """The design-side quantities of every trial's LSS model.

    Attributes
    ----------
    conditions : ndarray, shape (n, p)
        The condition design ``C``: one column per trial group (its trials summed), then the
        LSA design's other columns.
    pinv, cov : ndarray, shapes (p, n) and (p, p)
        ``pinv(C)`` and ``pinv(C) pinv(C)^T``.
    group_column : ndarray, shape (K,), intp
        Column of ``C`` holding each trial's condition.
    alone : ndarray, shape (K,), bool
        Trials alone in their condition (their LSS model is ``C`` itself).
    trials : ndarray, shape (n, K)
        The trials' LSA columns ``a_i``.
    projection : ndarray, shape (p, K)
        ``pinv(C) a_i``.
    residual : ndarray, shape (n, K)
        ``r_i = a_i - C pinv(C) a_i`` (zero for trials alone in their condition).
    alpha : ndarray, shape (K,)
        ``1 - pinv(C) a_i [g]``: weight of ``gamma_i`` in the trial's estimate.
    squares, lag, total, first, last : ndarray, shape (K,)
        ``sum_t r_t^2``, ``sum_t r_t r_{t+1}``, ``sum_t r_t``, ``r_0``, ``r_{n-1}``.
    neighbour_cross : ndarray, shape (p, K)
        ``neighbour_sum(C)^T r_i``.
    n_columns : ndarray, shape (K,)
        Columns of each trial's LSS design (``p + 1``, or ``p`` when alone).
    """

    conditions: np.ndarray
    pinv: np.ndarray
    cov: np.ndarray
    group_column: np.ndarray
    alone: np.ndarray
    trials: np.ndarray
    projection: np.ndarray
    residual: np.ndarray
    alpha: np.ndarray
    squares: np.ndarray
    lag: np.ndarray
    total: np.ndarray
    first: np.ndarray
    last: np.ndarray
    neighbour_cross: np.ndarray
    n_columns: np.ndarray

    @property
    def n_trials(self) -> int:
        """Number of trials K."""
        return self.alpha.size


def lss_terms(
    lsa: np.ndarray, trial_columns: np.ndarray, trial_groups: np.ndarray
) -> LssTerms | None:
    """The `LssTerms` of an LSA design, or None if a model is (nearly) rank-deficient.

    Parameters
    ----------
    lsa : ndarray, shape (n, q), float64
        The LSA design (fitted rows only).
    trial_columns : ndarray, shape (K,), int
        LSA column of each trial.
    trial_groups : ndarray, shape (K,)
        Condition (group) label of each trial.
    """
    groups, group_index = np.unique(trial_groups, return_inverse=True)
    sums = np.stack(
        [lsa[:, trial_columns[group_index == k]].sum(axis=1) for k in range(groups.size)], axis=1
    )
    others = np.setdiff1d(np.arange(lsa.shape[1]), trial_columns)
    conditions = np.column_stack([sums, lsa[:, others]])
    if design_rank(conditions) < conditions.shape[1]:
        return None
    pinv = scipy.linalg.pinv(conditions)
    trials = lsa[:, trial_columns]
    projection = pinv @ trials
    counts = np.bincount(group_index)
    alone = counts[group_index] == 1
    residual = np.where(alone, 0.0, trials - conditions @ projection)
    squares = np.einsum("tk,tk->k", residual, residual)
    near = squares <= COLLINEAR_FRACTION * np.einsum("tk,tk->k", trials, trials)
    if np.any(near & ~alone):
        return None
    group_column = group_index.astype(np.intp)
    return LssTerms(
        conditions=conditions,
        pinv=pinv,
        cov=pinv @ pinv.T,
        group_column=group_column,
        alone=alone,
        trials=trials,
        projection=projection,
        residual=residual,
        alpha=1.0 - projection[group_column, np.arange(trials.shape[1])],
        squares=squares,
        lag=np.einsum("tk,tk->k", residual[:-1], residual[1:]),
        total=residual.sum(axis=0),
        first=residual[0].copy(),
        last=residual[-1].copy(),
        neighbour_cross=neighbour_sum(conditions).T @ residual,
        n_columns=conditions.shape[1] + np.where(alone, 0, 1),
    )


@dataclass(frozen=True)
class LssPass:
    """Per-voxel summaries of the ordinary fit and of every trial's extra column.

    Attributes
    ----------
    beta : ndarray, shape (p, V)
        ``pinv(C) Y``.
    moments : ndarray, shape (5, V), or None
        Moments of the ordinary residuals ``E`` (rows as in `bids_glm.glm.ar`); None when
        not asked (OLS estimates without variances need none).
    gamma : ndarray, shape (K, V)
        ``r_i^T E / r_i^T r_i`` (0 for trials alone in their condition).
    lag_cross : ndarray, shape (p, V), or None
        ``neighbour_sum(C)^T E`` (AR(1) only).
    trial_lag_cross : ndarray, shape (K, V), or None
        ``neighbour_sum(r_i)^T E`` (AR(1) only).
    """

    beta: np.ndarray
    moments: np.ndarray | None
    gamma: np.ndarray
    lag_cross: np.ndarray | None
    trial_lag_cross: np.ndarray | None


def trial_bands(
    trials: np.ndarray, ar1: bool, size: int = BAND_TRIALS
) -> list[tuple[slice, np.ndarray, np.ndarray]]:
    """Trials' columns (and their neighbour sums, for AR(1)) in bands of consecutive trials.

    A trial's regressor is zero outside a few scans after its onset (up to convolution's
    rounding: values under `NEGLIGIBLE_FRACTION` of the column's largest are left out);
    ``size`` trials close in time share one band of rows, so ``trials^T E`` costs a product
    per band instead of one over all scans. Returns ``(rows, trial indices, operator)`` per
    band, the operator ``(size or 2 size, rows)``: the trials' columns, then their
    neighbour sums.
    """
    n_scans = trials.shape[0]
    neighbours = neighbour_sum(trials)
    peaks = np.abs(trials).max(axis=0)
    used = np.abs(trials) + np.abs(neighbours) > NEGLIGIBLE_FRACTION * peaks
    first = np.argmax(used, axis=0)
    stop = n_scans - np.argmax(used[::-1], axis=0)
    order = np.argsort(first, kind="stable")
    bands = []
    for start in range(0, order.size, size):
        members = order[start : start + size]
        rows = slice(int(first[members].min()), int(stop[members].max()))
        columns = [trials[rows, members]] + ([neighbours[rows, members]] if ar1 else [])
        bands.append((rows, members, np.column_stack(columns).T.copy()))
    return bands


def lss_pass(
    terms: LssTerms,
    data: np.ndarray,
    chunk_voxels: int,
    ar1: bool,
    n_threads: int,
    with_moments: bool = True,
) -> LssPass:
    """Read ``data`` (n, V) once and return the `LssPass` summaries.

    The residuals' moments are computed only ``with_moments`` (always for AR(1)).

    ``r_i^T E`` is computed as ``a_i^T E`` and ``(N r_i)^T E`` as
    ``(N a_i)^T E - (pinv(C) a_i)^T N(C)^T E`` (``C^T E = 0``), on the trials' bands of
    scans (`trial_bands`). Extra memory per thread: a few ``(n, chunk_voxels)`` float64
    arrays; the result holds ``(p + K)`` (OLS; 5 more with moments) or ``(2 p + 5 + 2 K)``
    (AR(1)) float64 numbers per voxel.
    """
    p, n_trials, n_voxels = terms.conditions.shape[1], terms.n_trials, data.shape[1]
    bands = trial_bands(terms.trials, ar1)
    neighbours = neighbour_sum(terms.conditions).T.copy() if ar1 else None
    inverse_squares = np.divide(
        1.0, terms.squares, out=np.zeros_like(terms.squares), where=~terms.alone
    )[:, np.newaxis]
    beta = np.empty((p, n_voxels))
    moments = np.empty((5, n_voxels)) if with_moments or ar1 else None
    gamma = np.empty((n_trials, n_voxels))
    lag_cross = np.empty((p, n_voxels)) if ar1 else None
    trial_lag_cross = np.empty((n_trials, n_voxels)) if ar1 else None

    def fit_chunk(chunk: slice) -> None:
        residuals = data[:, chunk].astype(np.float64)
        chunk_beta = terms.pinv @ residuals
        residuals -= terms.conditions @ chunk_beta
        beta[:, chunk] = chunk_beta
        if moments is not None:
            moments[:, chunk] = residual_moments(residuals)
        for rows, members, operator in bands:
            product = operator @ residuals[rows]
            gamma[members, chunk] = product[: members.size]
            if ar1:
                trial_lag_cross[members, chunk] = product[members.size :]
        gamma[:, chunk] *= inverse_squares
        if ar1:
            lag_cross[:, chunk] = neighbours @ residuals
            trial_lag_cross[:, chunk] -= terms.projection.T @ lag_cross[:, chunk]

    for_each_in_threads(fit_chunk, list(voxel_chunks(n_voxels, chunk_voxels)), n_threads, "lss")
    return LssPass(beta, moments, gamma, lag_cross, trial_lag_cross)


def ols_estimates(terms: LssTerms, summary: LssPass, voxels: slice) -> np.ndarray:
    """Every trial's OLS LSS estimate, shape (K, v) for ``voxels``."""
    beta = summary.beta[:, voxels]
    return beta[terms.group_column] + terms.alpha[:, np.newaxis] * summary.gamma[:, voxels]


def trial_means(terms: LssTerms, data: np.ndarray) -> np.ndarray:
    """Global mean of every trial model's OLS residuals (over all voxels and scans), (K,).

    A residual's sum over voxels is the residual of the data's sum over voxels (both are
    linear in the data), so one pass over the (n,) voxel-summed series gives the means
    before any voxel's summaries exist, and voxels can then be processed block by block.
    """
    n_scans, n_voxels = data.shape
    summed = np.zeros((n_scans, 1))
    for chunk in voxel_chunks(n_voxels, MEAN_CHUNK_VOXELS):  # data read as data[:, chunk]
        summed[:, 0] += data[:, chunk].sum(axis=1, dtype=np.float64)
    whole = lss_pass(terms, summed, 1, ar1=False, n_threads=1, with_moments=True)
    totals = whole.moments[SUM, 0] - terms.total * whole.gamma[:, 0]
    return totals / (n_scans * n_voxels)


def trial_ar1(terms: LssTerms, summary: LssPass, means: np.ndarray, voxels: slice) -> np.ndarray:
    """Every trial model's AR(1) coefficient at ``voxels``, shape (K, v).

    `bids_glm.glm.ar.yule_walker_ar1` of the residuals ``E - r_i gamma_i`` centred on their
    global mean ``m_i`` (``means``), written in terms of the ordinary residuals' moments:
    ``r_0 ~ [S_0 - 2 m S + n m^2] + gamma (2 m sum(r) - gamma r^T r)`` and
    ``r_1 ~ [S_1 - m (2 S - e_0 - e_{n-1}) + (n - 1) m^2]
    + gamma (m (2 sum(r) - r_0 - r_{n-1}) + gamma sum(r_t r_{t+1}) - (N r)^T E)``.
    """
    n = float(terms.conditions.shape[0])
    n_trials = terms.n_trials
    squares, lag, total, first, last = summary.moments[:, voxels]
    gamma = summary.gamma[:, voxels]
    # the parts without gamma, both at once: (2 K, 5) per-trial weights @ (5, v) voxel sums
    weights = np.zeros((2 * n_trials, 5))
    weights[:n_trials, 0] = 1.0
    weights[:n_trials, 1] = -2.0 * means
    weights[:n_trials, 4] = n * means**2
    weights[n_trials:, 2] = 1.0
    weights[n_trials:, 3] = -means
    weights[n_trials:, 4] = (n - 1.0) * means**2
    sums = np.stack([squares, total, lag, 2.0 * total - first - last, np.ones_like(total)])
    shifts = weights @ sums
    centred_squares, centred_lag = shifts[:n_trials], shifts[n_trials:]
    # + gamma (2 m sum(r) - gamma r^T r), in place
    term = np.multiply(gamma, -terms.squares[:, np.newaxis])
    term += (2.0 * means * terms.total)[:, np.newaxis]
    term *= gamma
    centred_squares += term
    # + gamma (m (2 sum(r) - r_0 - r_{n-1}) + gamma sum(r_t r_{t+1}) - (N r)^T E)
    np.multiply(gamma, terms.lag[:, np.newaxis], out=term)
    term += (means * (2.0 * terms.total - terms.first - terms.last))[:, np.newaxis]
    term -= summary.trial_lag_cross[:, voxels]
    term *= gamma
    centred_lag += term
    positive = centred_squares > 0
    np.divide(centred_lag, centred_squares, out=centred_lag, where=positive)
    centred_lag *= positive * (n / (n - 1.0))  # 0 where the sum of squares is not positive
    return centred_lag
