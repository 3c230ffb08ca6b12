"""Single-trial estimates: LSA (one model, one regressor per trial) and LSS (one model per trial).

LSS (Mumford et al. 2012) fits, for each trial ``i``, the model ``X_i = A M_i``: the LSA design
``A`` (n, q) combined by ``M_i`` (q, p_i) into trial ``i``'s column, the sum of the other
trials of its condition, the sum of each other condition's trials and the nuisance columns
as they are. No model is refitted to the data. With ``A = Q R`` (thin QR), every column space
lies in ``range(Q)``, so

* OLS: ``pinv(X_i) Y = pinv(R M_i) Z`` with ``Z = Q^T Y`` (q, V), read once from the data;
* the OLS residuals are ``e_i = Y_perp + Q u_i`` with ``Y_perp = Y - Q Z`` (the LSA residuals)
  and ``u_i = (I - P_i) Z`` (``P_i`` the projector on ``range(R M_i)``), so the residual
  moments nilearn's AR(1) estimate needs (sum of squares, lag-1 sum, sum, first, last) follow
  from the LSA residual moments, ``N^T Y_perp`` (``N`` the neighbour sum of ``Q``) and small
  (q, q) products; every trial model gets its own AR(1) coefficients, with its own global
  residual mean, binned as nilearn bins them;
* the AR(1) refit of a voxel in bin ``rho`` is ``beta_ols + cov_b X_i^T W^T W e_i`` (see
  `bids_glm.glm.ar_refit`), with ``cov_b`` from ``pinv(R_b R M_i)`` where ``W Q = Q_b R_b``
  (one QR per bin value, shared by all trials) and
  ``Q^T W^T W e_i = (1 + rho^2) u_i - rho (N^T Y_perp + N^T Q u_i) - rho^2 q_{n-1} e_{i,n-1}``.

The result equals fitting each trial's model to the data (`bids_glm.glm.fit.fit_glm`) to
rounding, except, for AR(1), voxels whose coefficient falls within rounding of a bin edge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from bids_glm.glm.ar import (
    FIRST,
    LAST,
    SUM,
    SUM_LAG1,
    SUM_SQUARES,
    bin_ar1,
    whiten_ar1,
    yule_walker_ar1,
)
from bids_glm.glm.ols import design_operators, neighbour_sum, ols_pass
from bids_glm.runtime.threads import thread_budget


@dataclass(frozen=True)
class TrialLayout:
    """Where the trials are among the LSA design's columns.

    Attributes
    ----------
    trial_columns : tuple of int
        LSA column of each trial, in trial order.
    trial_groups : tuple of int
        Condition (group) of each trial; trials of one group are summed in LSS models.
    n_columns : int
        Columns of the LSA design; those not in ``trial_columns`` enter every model as they are.
    """

    trial_columns: tuple[int, ...]
    trial_groups: tuple[int, ...]
    n_columns: int

    def __post_init__(self) -> None:
        if len(self.trial_columns) != len(self.trial_groups):
            raise ValueError("one group per trial column is needed")
        if len(set(self.trial_columns)) != len(self.trial_columns):
            raise ValueError("trial columns must be distinct")
        if any(not 0 <= c < self.n_columns for c in self.trial_columns):
            raise ValueError("trial columns must be columns of the design")

    @property
    def n_trials(self) -> int:
        """Number of trials."""
        return len(self.trial_columns)


def lss_combinations(layout: TrialLayout) -> list[np.ndarray]:
    """``M_i`` of every trial: LSA columns -> that trial's LSS model columns.

    Columns of ``M_i``: the trial; the sum of the other trials of its group (if any); the sum
    of each other group's trials; every non-trial column as it is.
    """
    q = layout.n_columns
    trials = np.asarray(layout.trial_columns, dtype=int)
    groups = np.asarray(layout.trial_groups)
    others = [c for c in range(q) if c not in set(layout.trial_columns)]
    models = []
    for i in range(layout.n_trials):
        columns = [np.eye(q)[:, trials[i]]]
        same = trials[(groups == groups[i]) & (np.arange(trials.size) != i)]
        if same.size:
            columns.append(np.eye(q)[:, same].sum(axis=1))
        for group in np.unique(groups):
            if group != groups[i]:
                columns.append(np.eye(q)[:, trials[groups == group]].sum(axis=1))
        columns.extend(np.eye(q)[:, c] for c in others)
        models.append(np.stack(columns, axis=1))
    return models


def lss_design(lsa: np.ndarray, layout: TrialLayout, trial: int) -> np.ndarray:
    """The LSS design of one trial (its column first), for checks and brute force."""
    return np.asarray(lsa, dtype=np.float64) @ lss_combinations(layout)[trial]


@dataclass(frozen=True)
class TrialEstimates:
    """One estimate per trial and voxel.

    Attributes
    ----------
    beta : ndarray, shape (n_trials, V)
    ar1 : ndarray, shape (n_trials, V), or None
        LSS with AR(1): each trial model's (unbinned) AR(1) coefficient, for checks.
    """

    beta: np.ndarray
    ar1: np.ndarray | None = None


def lss_fit(
    lsa: np.ndarray,
    data: np.ndarray,
    layout: TrialLayout,
    noise_model: str = "ar1",
    n_bins: int = 100,
    chunk_voxels: int = 4096,
    keep_ar1: bool = False,
) -> TrialEstimates:
    """Least-squares-separate estimates of every trial, from one pass over the data.

    Parameters
    ----------
    lsa : ndarray, shape (n, q)
        The LSA design (fitted rows only).
    data : ndarray, shape (n, V)
        Scaled data, as given to `bids_glm.glm.fit.fit_glm`; not modified.
    layout : TrialLayout
    noise_model : {"ar1", "ols"}
    n_bins : int
        AR(1) bins per unit of the coefficient, as in ``fit_glm``.
    chunk_voxels : int
        Voxels per chunk of the pass over the data.
    keep_ar1 : bool
        Return each trial model's AR(1) coefficients too.

    Returns
    -------
    TrialEstimates
    """
    design = np.asarray(lsa, dtype=np.float64)
    if noise_model not in ("ar1", "ols"):
        raise ValueError(f"noise_model must be 'ar1' or 'ols'; received {noise_model!r}")
    if design.shape[0] != data.shape[0] or design.shape[1] != layout.n_columns:
        raise ValueError(f"design {design.shape} does not match data {data.shape} and layout")
    basis, triangle = scipy.linalg.qr(design, mode="economic")
    is_ar1 = noise_model == "ar1"
    summary = ols_pass(
        design_operators(basis), data, chunk_voxels, lag_cross=is_ar1, n_threads=thread_budget()
    )
    projected = summary.beta  # Q^T Y
    models = lss_combinations(layout)
    reduced = [triangle @ m for m in models]
    inverses = [scipy.linalg.pinv(b) for b in reduced]
    ols_beta = np.stack([inv[0] for inv in inverses]) @ projected
    if not is_ar1:
        return TrialEstimates(beta=ols_beta)
    refit = _Ar1Refit(basis, triangle, summary, int(n_bins))
    beta = np.empty_like(ols_beta)
    ar1 = np.empty_like(ols_beta) if keep_ar1 else None
    for i, (model, b, inv) in enumerate(zip(models, reduced, inverses, strict=True)):
        delta, rho = refit.trial_delta(model, b, inv)
        beta[i] = ols_beta[i] + delta
        if ar1 is not None:
            ar1[i] = rho
    return TrialEstimates(beta=beta, ar1=ar1)


class _Ar1Refit:
    """The AR(1) step of every LSS model from the LSA-level summaries."""

    def __init__(self, basis: np.ndarray, triangle: np.ndarray, summary, n_bins: int) -> None:
        self.basis, self.triangle, self.n_bins = basis, triangle, n_bins
        self.projected, self.moments, self.lag_cross = (
            summary.beta,
            summary.moments,
            summary.lag_cross,
        )
        self.n_scans = basis.shape[0]
        self.neighbour_gram = neighbour_sum(basis).T @ basis  # N^T Q
        self.lag_gram = basis[:-1].T @ basis[1:]  # sum_t q_t q_{t+1}^T
        self._whitened: dict[float, np.ndarray] = {}

    def _whitened_triangle(self, rho: float) -> np.ndarray:
        """``R_b`` of ``W Q = Q_b R_b`` (cached per bin value, shared by the trials)."""
        if rho not in self._whitened:
            whitened = whiten_ar1(self.basis.copy(), rho)
            self._whitened[rho] = scipy.linalg.qr(whitened, mode="economic")[1]
        return self._whitened[rho]

    def _residual_moments(self, u: np.ndarray) -> np.ndarray:
        base, q = self.moments, self.basis
        moments = np.empty_like(base)
        moments[SUM_SQUARES] = base[SUM_SQUARES] + np.einsum("iv,iv->v", u, u)
        moments[SUM_LAG1] = (
            base[SUM_LAG1]
            + np.einsum("iv,iv->v", u, self.lag_cross)
            + np.einsum("iv,iv->v", u, self.lag_gram @ u)
        )
        moments[SUM] = base[SUM] + q.sum(axis=0) @ u
        moments[FIRST] = base[FIRST] + q[0] @ u
        moments[LAST] = base[LAST] + q[-1] @ u
        return moments

    def trial_delta(
        self, model: np.ndarray, reduced: np.ndarray, inverse: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The AR(1) correction of the trial's OLS estimate, and its AR(1) coefficients."""
        u = self.projected - reduced @ (inverse @ self.projected)  # (I - P_i) Q^T Y
        moments = self._residual_moments(u)
        rho = yule_walker_ar1(moments, self.n_scans)
        bin_rho, voxel_bin = bin_ar1(rho, self.n_bins)
        lifted = (self.triangle @ model).T  # M_i^T R^T, (p_i, q)
        gains = np.empty((bin_rho.size, u.shape[0]))
        for b, value in enumerate(bin_rho):
            whitened_inverse = scipy.linalg.pinv(self._whitened_triangle(float(value)) @ reduced)
            cov = whitened_inverse @ whitened_inverse.T
            gains[b] = cov[0] @ lifted
        voxel_rho = bin_rho[voxel_bin]
        last = moments[LAST]
        whitened_cross = (
            (1.0 + voxel_rho**2) * u
            - voxel_rho * (self.lag_cross + self.neighbour_gram @ u)
            - np.outer(self.basis[-1], voxel_rho**2 * last)
        )
        delta = np.einsum("vi,iv->v", gains[voxel_bin], whitened_cross)
        return delta, rho


def lsa_layout(
    columns: Sequence[str], trial_columns: Sequence[str], groups: Sequence
) -> TrialLayout:
    """A `TrialLayout` from column names: the trials' columns and each trial's group label."""
    index = {name: k for k, name in enumerate(columns)}
    labels = {label: k for k, label in enumerate(dict.fromkeys(groups))}
    return TrialLayout(
        trial_columns=tuple(index[c] for c in trial_columns),
        trial_groups=tuple(labels[g] for g in groups),
        n_columns=len(columns),
    )
