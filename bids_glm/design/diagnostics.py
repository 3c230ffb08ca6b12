"""Rank and conditioning of a design matrix, naming the columns that cause trouble."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.linalg import qr

MAX_CONDITION_NUMBER = 1e10


@dataclass(frozen=True)
class DesignDiagnostics:
    """How well a design's columns can be told apart.

    Attributes
    ----------
    n_columns, rank : int
        Number of columns and numerical rank.
    condition_number : float
        Ratio of extreme singular values of the design with unit-norm columns (so it
        measures collinearity, not differences of scale); ``inf`` when rank deficient.
    collinear_columns : tuple of str
        Columns that pivoted QR finds (nearly) explained by the others (chosen beyond the
        rank, or with a diagonal below ``1 / MAX_CONDITION_NUMBER`` of the first), plus the
        columns that explain them; all-zero columns included. Design order.
    """

    n_columns: int
    rank: int
    condition_number: float
    collinear_columns: tuple[str, ...]

    @property
    def is_ill_conditioned(self) -> bool:
        """Rank deficient, or condition number above ``MAX_CONDITION_NUMBER``."""
        return self.rank < self.n_columns or self.condition_number > MAX_CONDITION_NUMBER


def diagnose_design(design: np.ndarray, column_names: Sequence[str]) -> DesignDiagnostics:
    """Rank, condition number and collinear columns of a design matrix.

    Parameters
    ----------
    design : ndarray, shape (n_scans, p)
        The design (rows actually fitted, i.e. after censoring).
    column_names : sequence of str
        Names of the p columns.

    Returns
    -------
    DesignDiagnostics
    """
    design = np.asarray(design, dtype=float)
    norms = np.linalg.norm(design, axis=0)
    zero = norms == 0
    unit = design / np.where(zero, 1.0, norms)
    singular = np.linalg.svd(unit, compute_uv=False)
    tolerance = singular.max(initial=0.0) * max(design.shape) * np.finfo(float).eps
    rank = int(np.sum(singular > tolerance))
    condition = float(singular[0] / singular[-1]) if rank == design.shape[1] else np.inf
    _, r_factor, pivots = qr(unit, mode="economic", pivoting=True)
    diagonal = np.abs(np.diag(r_factor))
    weak = diagonal < max(diagonal[0] / MAX_CONDITION_NUMBER, tolerance) if diagonal.size else []
    suspects = {int(p) for p, w in zip(pivots, weak, strict=True) if w}
    suspects |= {int(p) for p in pivots[rank:]}
    involved = set(suspects)
    independent = [int(p) for p in pivots if int(p) not in suspects]
    for column in suspects - {int(i) for i in np.flatnonzero(zero)}:
        weights = np.linalg.lstsq(unit[:, independent], unit[:, column], rcond=None)[0]
        involved |= {independent[i] for i in np.flatnonzero(np.abs(weights) > 1e-6)}
    return DesignDiagnostics(
        n_columns=design.shape[1],
        rank=rank,
        condition_number=condition,
        collinear_columns=tuple(column_names[i] for i in sorted(involved)),
    )
