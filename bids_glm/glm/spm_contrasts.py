"""SPM12's contrasts (``spm_contrasts.m``, ``spm_run_con.m``, ``spm_FcUtil.m``).

A t contrast ``c`` gives ``con = c' beta`` and ``t = con / sqrt(ResMS c' Bcov c)`` with
``erdf`` degrees of freedom. An F contrast ``C`` (rows are weight vectors) gives the extra
sum of squares ``ess`` of the filtered, whitened design's subspace ``X1o`` that ``C``
tests and ``F = ess / trMV / ResMS``, with ``trMV = trace(M xV)`` for ``M`` the projector
on ``X1o`` and ``eidf = trMV^2 / trMVMV``. Multi-session contrasts are replicated over
sessions and divided by their number (``replsc``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from bids_glm.glm.spm_fit import SpmFit
from bids_glm.glm.spm_space import design_space

__all__ = ["SpmFMaps", "SpmTMaps", "f_contrast", "replicate_over_sessions", "t_contrast"]


@dataclass(frozen=True)
class SpmTMaps:
    """``con``, its variance ``ResMS c' Bcov c`` and ``spmT`` over in-mask voxels."""

    effect: np.ndarray
    variance: np.ndarray
    t: np.ndarray


@dataclass(frozen=True)
class SpmFMaps:
    """``ess``, ``spmF`` and the F test's effective numerator degrees of freedom.

    ``projection`` holds the fitted data's coordinates in an orthonormal basis of the
    tested subspace ``X1o``: ``ess`` is the sum of their squares.
    """

    projection: np.ndarray
    extra_ss: np.ndarray
    f: np.ndarray
    interest_trace: float
    eidf: float


def replicate_over_sessions(
    weights: Mapping[str, Sequence[float]],
    condition_columns: Sequence[Mapping[str, int]],
    n_columns: int,
    scale: bool = True,
    sessions: Sequence[int] | None = None,
) -> tuple[np.ndarray, tuple[int, ...]]:
    """Copy condition weights into every session that has all the weighted conditions.

    Parameters
    ----------
    weights : mapping of str to sequence of float
        Per condition, the weights of its basis columns (canonical first).
    condition_columns : sequence of mapping
        Per session, each condition's first column (``SpmDesign.condition_columns``).
    n_columns : int
        Columns of the design.
    scale : bool
        Divide by the number of sessions used (SPM's ``replsc``).
    sessions : sequence of int, optional
        Use these sessions (0-based) instead of those having every weighted condition
        (the rows of an F contrast share one set).

    Returns
    -------
    tuple
        The ``(n_columns,)`` weight vector and the 0-based sessions it uses (empty when
        no session has every weighted condition).
    """
    vector = np.zeros(n_columns)
    if sessions is None:
        needed = [name for name, values in weights.items() if np.any(np.asarray(values) != 0)]
        sessions = tuple(
            index
            for index, columns in enumerate(condition_columns)
            if all(name in columns for name in needed)
        )
    sessions = tuple(sessions)
    for index in sessions:
        for name, values in weights.items():
            if name in condition_columns[index]:
                first = condition_columns[index][name]
                vector[first : first + len(values)] += np.asarray(values, dtype=float)
    if scale and sessions:
        vector /= len(sessions)
    return vector, sessions


def t_contrast(weights: np.ndarray, fit: SpmFit) -> SpmTMaps:
    """SPM's t statistic of one contrast vector at every voxel.

    Parameters
    ----------
    weights : numpy.ndarray
        ``(p,)`` contrast vector.
    fit : SpmFit
        The estimated model.

    Returns
    -------
    SpmTMaps
    """
    effect = weights @ fit.betas
    variance = fit.res_ms * float(weights @ fit.model.beta_covariance @ weights)
    return SpmTMaps(effect=effect, variance=variance, t=effect / np.sqrt(variance))


def f_contrast(matrix: np.ndarray, fit: SpmFit) -> SpmFMaps:
    """SPM's F statistic of a contrast matrix at every voxel.

    Parameters
    ----------
    matrix : numpy.ndarray
        ``(q, p)`` contrast rows.
    fit : SpmFit
        The estimated model.

    Returns
    -------
    SpmFMaps
    """
    space = fit.model.space
    design = space.matrix
    tested = design @ np.linalg.pinv(design.T @ design) @ np.atleast_2d(matrix).T
    basis = design_space(tested).basis
    projection = (basis.T @ design) @ fit.betas
    extra_ss = np.sum(projection**2, axis=0)
    projected = basis.T @ fit.model.covariance @ basis
    interest_trace = float(np.trace(projected))
    eidf = interest_trace**2 / float(np.sum(projected**2))
    f = extra_ss / interest_trace / fit.res_ms
    return SpmFMaps(
        projection=projection, extra_ss=extra_ss, f=f, interest_trace=interest_trace, eidf=eidf
    )
