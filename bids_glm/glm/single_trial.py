"""Single-trial estimates: LSA (one model, one regressor per trial) and LSS (one model per trial).

LSS (Mumford et al. 2012) fits, for each trial ``i``, the model ``X_i = A M_i``: the LSA design
``A`` (n, q) combined by ``M_i`` (q, p_i) into trial ``i``'s column, the sum of the other
trials of its condition, the sum of each other condition's trials and the nuisance columns
as they are. No model is refitted to the data: every ``X_i`` spans the ordinary design plus
one column, so one pass over the data gives every model's OLS fit and residual moments
(`bids_glm.glm.lss_terms`), and each model's own AR(1) coefficients and refit follow from
small per-bin products (`bids_glm.glm.lss_ar1`). The result equals fitting each trial's model
to the data (`bids_glm.glm.fit.fit_glm`) to rounding, except, for AR(1), voxels whose
coefficient falls within rounding of a bin edge. Designs where a model is rank-deficient are
fitted trial by trial instead (slow, but the same estimator).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bids_glm.glm.fit import fit_glm
from bids_glm.glm.lss_ar1 import ar1_estimates
from bids_glm.glm.lss_terms import (
    LssPass,
    LssTerms,
    lss_pass,
    lss_terms,
    ols_estimates,
    trial_means,
)
from bids_glm.glm.lss_variance import ar1_variance, ols_variance, variance_tables
from bids_glm.glm.ols import voxel_chunks
from bids_glm.runtime.spill import scratch_array
from bids_glm.runtime.threads import thread_budget

LOGGER = logging.getLogger("bids_glm")
# voxels per chunk of the AR(1) step: a few (K, chunk) arrays, near the cache's size
REFIT_CHUNK_VOXELS = 4096
# voxels per chunk of the pass over the data: its (scans, chunk) float64 residuals, read by
# several products and sums, stay in a 2-4 MB cache (1024 x 200 scans: 1.6 MB)
PASS_CHUNK_VOXELS = 1024
# the voxels' summaries held at once (`lss_pass`: 2 p + 5 + 2 K float64 a voxel for AR(1)):
# estimates are made a block of voxels at a time, so memory is the data, the estimates and
# one block; blocks are whole refit chunks, so each voxel is computed as in one block
BLOCK_BYTES = 64 * 2**20
# and a block's data as float32 at most (data read back from a file come as a copy)
DATA_BLOCK_BYTES = 64 * 2**20


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
    variance : ndarray, shape (n_trials, V), or None
        Variance of each estimate (as `bids_glm.glm.contrast` computes a t contrast's).
    dof : ndarray, shape (n_trials,), or None
        Degrees of freedom of each trial's model (scans minus the rank of its design).
    """

    beta: np.ndarray
    ar1: np.ndarray | None = None
    variance: np.ndarray | None = None
    dof: np.ndarray | None = None

    def beta_float32(self, trials: np.ndarray) -> np.ndarray:
        """The estimates of ``trials`` (indices), shape (k, V), rounded to float32 a row at a
        time (no (k, V) float64 copy of a possibly file-backed array)."""
        return self._rows_float32(trials, lambda row: self.beta[row])

    def t_float32(self, trials: np.ndarray) -> np.ndarray:
        """``beta / sqrt(variance)`` of ``trials`` (indices; 0 where the variance is 0),
        computed in float64 and rounded to float32 a row at a time."""

        def t_of(row: int) -> np.ndarray:
            beta, scale = self.beta[row], np.sqrt(self.variance[row])
            return np.divide(beta, scale, out=np.zeros_like(beta), where=scale > 0)

        return self._rows_float32(trials, t_of)

    def _rows_float32(
        self, trials: np.ndarray, row_values: Callable[[int], np.ndarray]
    ) -> np.ndarray:
        rows = np.asarray(trials, dtype=np.intp)
        values = np.empty((rows.size, self.beta.shape[1]), dtype=np.float32)
        for index, row in enumerate(rows):
            values[index] = row_values(row)
        return values


def lss_fit(
    lsa: np.ndarray,
    data: np.ndarray,
    layout: TrialLayout,
    noise_model: str = "ar1",
    n_bins: int = 100,
    chunk_voxels: int = PASS_CHUNK_VOXELS,
    keep_ar1: bool = False,
    variance: bool = False,
    scratch_dir: Path | None = None,
) -> TrialEstimates:
    """Least-squares-separate estimates of every trial, from one pass over the data.

    The pass keeps per-voxel summaries that grow with the trials; voxels are therefore
    taken a block at a time (`BLOCK_BYTES` of summaries, `DATA_BLOCK_BYTES` of data), each
    block's estimates made before the next is read, so the memory beyond the data is the
    estimates and one block. For AR(1), each model's global residual mean comes first
    (`trial_means`).

    Parameters
    ----------
    lsa : ndarray, shape (n, q)
        The LSA design (fitted rows only).
    data : ndarray or array-like, shape (n, V)
        Scaled data, as given to `bids_glm.glm.fit.fit_glm`; not modified. Read only as
        ``data[:, start:stop]`` (so anything that returns arrays for that will do).
    layout : TrialLayout
    noise_model : {"ar1", "ols"}
    n_bins : int
        AR(1) bins per unit of the coefficient, as in ``fit_glm``.
    chunk_voxels : int
        Voxels per chunk of the pass over the data.
    keep_ar1 : bool
        Return each trial model's AR(1) coefficients too.
    variance : bool
        Return each estimate's variance too (for t statistics).
    scratch_dir : Path, optional
        Where the (n_trials, V) estimates are held in a file when large
        (`bids_glm.runtime.spill.scratch_array`).

    Returns
    -------
    TrialEstimates
    """
    design = np.asarray(lsa, dtype=np.float64)
    if noise_model not in ("ar1", "ols"):
        raise ValueError(f"noise_model must be 'ar1' or 'ols'; received {noise_model!r}")
    if design.shape[0] != data.shape[0] or design.shape[1] != layout.n_columns:
        raise ValueError(f"design {design.shape} does not match data {data.shape} and layout")
    terms = lss_terms(design, np.asarray(layout.trial_columns), np.asarray(layout.trial_groups))
    if terms is None:
        LOGGER.warning(
            "an LSS model is rank-deficient: fitting the %d trials one by one", layout.n_trials
        )
        return _refit_each_trial(design, data, layout, noise_model, n_bins)
    n_threads = thread_budget()
    shape = (terms.n_trials, data.shape[1])

    def estimates() -> np.ndarray:
        return scratch_array(shape, np.float64, scratch_dir)

    if noise_model == "ols":
        beta, variances = _ols_by_blocks(terms, data, chunk_voxels, n_threads, estimates, variance)
        rho = None
    else:
        beta, rho, variances = _ar1_by_blocks(
            terms, data, int(n_bins), chunk_voxels, n_threads, estimates, keep_ar1, variance
        )
    dof = (design.shape[0] - terms.n_columns).astype(float)
    return TrialEstimates(beta=beta, ar1=rho, variance=variances, dof=dof)


def _ols_by_blocks(
    terms: LssTerms,
    data: np.ndarray,
    chunk_voxels: int,
    n_threads: int,
    estimates: Callable[[], np.ndarray],
    variance: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    """OLS LSS estimates (and their variances), a block of voxels at a time, into the
    (K, V) arrays ``estimates`` makes."""
    beta = estimates()
    variances = estimates() if variance else None
    everything = slice(None)
    for block in voxel_chunks(data.shape[1], _block_voxels(terms, False, data.shape[0])):
        summary = lss_pass(terms, data[:, block], chunk_voxels, False, n_threads, variance)
        beta[:, block] = ols_estimates(terms, summary, everything)
        if variance:
            variances[:, block] = ols_variance(terms, summary, everything)
    return beta, variances


def _ar1_by_blocks(
    terms: LssTerms,
    data: np.ndarray,
    n_bins: int,
    chunk_voxels: int,
    n_threads: int,
    estimates: Callable[[], np.ndarray],
    keep_ar1: bool,
    variance: bool,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """AR(1) LSS estimates, coefficients and variances (the last two if asked), a block of
    voxels at a time, into the (K, V) arrays ``estimates`` makes; each AR(1) bin's tables
    are made once, whichever blocks use it."""
    outputs = (
        estimates(),
        estimates() if keep_ar1 else None,
        estimates() if variance else None,
    )
    means = trial_means(terms, data)
    refit_rows: dict[float, tuple] = {}
    variance_rows: dict[float, tuple] = {}
    for block in voxel_chunks(data.shape[1], _block_voxels(terms, True, data.shape[0])):
        summary = lss_pass(terms, data[:, block], chunk_voxels, True, n_threads)
        out = tuple(None if values is None else values[:, block] for values in outputs)
        variance_of = _binned_variance(terms, summary, variance_rows) if variance else None
        ar1_estimates(
            terms,
            summary,
            means,
            n_bins,
            REFIT_CHUNK_VOXELS,
            n_threads,
            out,
            variance_of,
            refit_rows,
        )
    return outputs


def _block_voxels(terms: LssTerms, ar1: bool, n_scans: int) -> int:
    """Voxels per block of `lss_fit`: `BLOCK_BYTES` of summaries and `DATA_BLOCK_BYTES` of
    float32 data at most, whole refit chunks."""
    p, n_trials = terms.conditions.shape[1], terms.n_trials
    per_voxel = (2 * p + 5 + 2 * n_trials if ar1 else p + 5 + n_trials) * 8
    by_summaries = BLOCK_BYTES // (per_voxel * REFIT_CHUNK_VOXELS)
    by_data = DATA_BLOCK_BYTES // (4 * n_scans * REFIT_CHUNK_VOXELS)
    return int(max(min(by_summaries, by_data), 1) * REFIT_CHUNK_VOXELS)


def _binned_variance(terms: LssTerms, summary: LssPass, computed: dict[float, tuple]):
    """``variance`` for `bids_glm.glm.lss_ar1.ar1_estimates` at ``summary``'s voxels (the
    bins' variance rows kept in ``computed``)."""

    def of_bins(rho_values: np.ndarray):
        tables = variance_tables(terms, rho_values, computed)
        return lambda rows, voxels: ar1_variance(terms, summary, tables, rows, voxels)

    return of_bins


def _refit_each_trial(
    design: np.ndarray, data: np.ndarray, layout: TrialLayout, noise_model: str, n_bins: int
) -> TrialEstimates:
    """LSS by fitting every trial's model to the data (`fit_glm`)."""
    beta, ar1, variance, dof = [], [], [], []
    for model in lss_combinations(layout):
        columns = design @ model
        names = [f"column{k}" for k in range(columns.shape[1])]
        fit = fit_glm(columns, data, names, noise_model=noise_model, n_bins=n_bins)
        beta.append(fit.beta[0])
        ar1.append(fit.ar1)
        variance.append(fit.bin_cov[fit.voxel_bin, 0, 0] * fit.sigma2)
        dof.append(fit.dof)
    rho = np.stack(ar1) if noise_model == "ar1" else None
    return TrialEstimates(
        beta=np.stack(beta), ar1=rho, variance=np.stack(variance), dof=np.array(dof)
    )


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
