"""t and F contrasts of a fitted run, as nilearn's ``nilearn.glm.contrasts.compute_contrast``.

t contrast (weights ``c``, shape (p,)): ``effect = c @ beta``, ``variance = c cov_b c^T sigma2``
with ``cov_b`` the unscaled covariance of the voxel's AR bin, ``t = effect / sqrt(variance)``.

F contrast (weights ``C``, shape (q, p)): with ``M_b = C cov_b C^T`` and ``W_b = M_b^(-1/2)``,
``effect = W_b C beta`` (q, V), ``variance = sigma2`` and
``F = sum(effect**2, axis=0) / (r * sigma2)``, i.e. ``(C beta)^T M_b^-1 (C beta) / (r sigma2)``.
nilearn inverts ``M_b`` exactly and uses ``r = q``; here ``M_b^(-1/2)`` is a pseudo-inverse
square root (eigenvalues below ``1e-10`` times the largest are dropped) and ``r = rank(M_b)``,
which equals nilearn's result for every contrast nilearn can invert and stays well defined for
rank-deficient ones (e.g. redundant rows). F maps also carry the unwhitened ``C beta`` and the
per-bin ``M_b`` (see `ContrastMaps`), which fixed effects need to pool F contrasts over runs.

As in nilearn, variances are floored at ``1e-50`` when forming the statistic.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from bids_glm.glm.results import STAT_TYPES, ContrastMaps, RunFit

_VARIANCE_FLOOR = 1e-50
_RANK_RTOL = 1e-10


def _contrast_matrix(fit: RunFit, weights: np.ndarray, name: str) -> np.ndarray:
    matrix = np.asarray(weights, dtype=np.float64)
    if matrix.ndim not in (1, 2) or matrix.size == 0:
        raise ValueError(
            f"contrast {name!r}: weights must have shape (p,) or (q, p); received shape "
            f"{matrix.shape}"
        )
    matrix = np.atleast_2d(matrix)
    if matrix.shape[1] != fit.n_regressors:
        raise ValueError(
            f"contrast {name!r} has {matrix.shape[1]} weights per row but the design has "
            f"{fit.n_regressors} columns: {list(fit.column_names)}"
        )
    if not np.all(np.isfinite(matrix)):
        raise ValueError(f"contrast {name!r}: weights contain NaN or infinite values")
    if not np.any(matrix):
        raise ValueError(f"contrast {name!r}: all weights are zero")
    return matrix


def _inverse_sqrt(matrix: np.ndarray) -> tuple[np.ndarray, int]:
    """Pseudo-inverse symmetric square root of a PSD matrix, and its numerical rank."""
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    keep = eigenvalues > _RANK_RTOL * max(eigenvalues.max(), 0.0)
    basis = eigenvectors[:, keep]
    return (basis / np.sqrt(eigenvalues[keep])) @ basis.T, int(keep.sum())


def _t_estimates(fit: RunFit, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A t contrast's effect and variance maps."""
    effect = weights @ fit.beta
    bin_variance = np.einsum("i,bij,j->b", weights, fit.bin_cov, weights)
    return effect, bin_variance[fit.voxel_bin] * fit.sigma2


def _t_contrast(fit: RunFit, weights: np.ndarray, name: str) -> ContrastMaps:
    effect, variance = _t_estimates(fit, weights)
    stat = effect / np.sqrt(np.maximum(variance, _VARIANCE_FLOOR))
    return ContrastMaps.for_t(name, effect, variance, stat, fit.dof)


@dataclass(frozen=True)
class _FEstimates:
    """An F contrast's whitened effect, rank, unwhitened estimate and per-bin covariance."""

    effect: np.ndarray
    rank: int
    estimate: np.ndarray
    covariance: np.ndarray


def _f_estimates(fit: RunFit, matrix: np.ndarray, name: str) -> _FEstimates:
    raw_effect = matrix @ fit.beta
    bin_covariance = np.einsum("ij,bjk,lk->bil", matrix, fit.bin_cov, matrix)
    whiteners, ranks = zip(*(_inverse_sqrt(cov) for cov in bin_covariance), strict=True)
    rank = max(ranks)
    if rank == 0:
        raise ValueError(
            f"F contrast {name!r} has zero variance under the design "
            f"{list(fit.column_names)}: it tests nothing estimable"
        )
    effect = np.empty_like(raw_effect)
    for bin_index, whitener in enumerate(whiteners):
        voxels = np.flatnonzero(fit.voxel_bin == bin_index)
        effect[:, voxels] = whitener @ raw_effect[:, voxels]
    return _FEstimates(effect, rank, raw_effect, bin_covariance)


def _f_contrast(fit: RunFit, matrix: np.ndarray, name: str) -> ContrastMaps:
    parts = _f_estimates(fit, matrix, name)
    variance = fit.sigma2.copy()
    stat = np.sum(parts.effect**2, axis=0) / parts.rank / np.maximum(variance, _VARIANCE_FLOOR)
    return ContrastMaps.for_f(
        name,
        parts.effect,
        variance,
        stat,
        parts.rank,
        fit.dof,
        estimate=parts.estimate,
        covariance=parts.covariance,
        covariance_bin=fit.voxel_bin,
    )


def compute_contrast(
    fit: RunFit, weights: np.ndarray, stat_type: str | None = None, name: str = ""
) -> ContrastMaps:
    """Statistical maps of a t or F contrast on one fitted run.

    Parameters
    ----------
    fit : RunFit
        The fitted run.
    weights : ndarray, shape (p,) or (q, p)
        Contrast weights over the run's design columns, in ``fit.column_names`` order. A length
        other than p is an error (no zero-padding).
    stat_type : {None, "t", "F"}
        None: "t" for one row, "F" for several. "t" requires one row; "F" accepts any q >= 1.
    name : str
        Contrast name stored in the result.

    Returns
    -------
    ContrastMaps
        effect, variance, statistic, z and p maps with the run's residual dof.

    Raises
    ------
    ValueError
        On a weight length that differs from the number of design columns (the message lists
        the columns), a several-row t contrast, all-zero or non-finite weights, or an unknown
        ``stat_type``.
    """
    matrix, stat_type = _checked(fit, weights, stat_type, name)
    if stat_type == "t":
        return _t_contrast(fit, matrix[0], name)
    return _f_contrast(fit, matrix, name)


def contrast_estimates(
    fit: RunFit, weights: np.ndarray, stat_type: str | None = None, name: str = ""
) -> ContrastMaps:
    """What fixed effects take from a run's contrast: `compute_contrast` without statistics.

    The effect and variance (and an F contrast's estimate and covariance) are computed as
    `compute_contrast` computes them, bit for bit; stat, z and p, which fixed effects
    recompute, are one shared zero-stride view. Parameters and errors as `compute_contrast`.
    """
    matrix, stat_type = _checked(fit, weights, stat_type, name)
    nothing = np.broadcast_to(np.float64(0.0), fit.sigma2.shape)
    if stat_type == "t":
        effect, variance = _t_estimates(fit, matrix[0])
        return ContrastMaps(name, "t", effect, variance, nothing, nothing, nothing, fit.dof)
    parts = _f_estimates(fit, matrix, name)
    return ContrastMaps(
        name,
        "F",
        parts.effect,
        fit.sigma2.copy(),
        nothing,
        nothing,
        nothing,
        fit.dof,
        dof_num=float(parts.rank),
        estimate=parts.estimate,
        covariance=parts.covariance,
        covariance_bin=fit.voxel_bin,
    )


def _checked(
    fit: RunFit, weights: np.ndarray, stat_type: str | None, name: str
) -> tuple[np.ndarray, str]:
    """The contrast's (q, p) weight matrix and its statistic, checked as documented."""
    matrix = _contrast_matrix(fit, weights, name)
    if stat_type is None:
        stat_type = "t" if matrix.shape[0] == 1 else "F"
    if stat_type not in STAT_TYPES:
        raise ValueError(f"stat_type must be None, 't' or 'F'; received {stat_type!r}")
    if stat_type == "t" and matrix.shape[0] != 1:
        raise ValueError(
            f"t contrast {name!r} must have one row of weights; received "
            f"{matrix.shape[0]} rows (use stat_type='F')"
        )
    return matrix, stat_type


@dataclass(frozen=True)
class LazyContrasts(Mapping):
    """A run's contrasts as fixed effects take them, formed from the run's fit when asked.

    Maps a contrast label to `contrast_estimates` of the held fit, which keeps only what
    those need (beta, sigma2, the AR bins): holding ``p + 2`` values per voxel instead of
    two or more per contrast, and nothing per contrast while the run's maps are written.

    Attributes
    ----------
    fit : RunFit
        The run's fit (its ``ar1`` and ``r_squared`` may be dropped).
    contrasts : dict of str to tuple
        Label -> ``(weights, stat_type, name)`` as `compute_contrast` takes them.
    """

    fit: RunFit
    contrasts: dict[str, tuple[np.ndarray, str | None, str]]

    def __getitem__(self, label: str) -> ContrastMaps:
        weights, stat_type, name = self.contrasts[label]
        with np.errstate(divide="ignore", invalid="ignore"):
            return contrast_estimates(self.fit, weights, stat_type, name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.contrasts)

    def __len__(self) -> int:
        return len(self.contrasts)
