"""Group-level OLS over subjects: the design from covariates, the fit, and t contrasts.

The model at every voxel is ``y = X b + e`` over subjects, ``y`` the subjects' contrast
estimates (their fixed-effects ``effect`` maps), fitted by ordinary least squares:
``b = pinv(X) y``, ``sigma2 = RSS / (n - rank X)``; a t contrast ``c`` has
``effect = c b``, ``variance = c pinv(X) pinv(X)^T c^T sigma2``, ``t = effect / sqrt(variance)``,
``dof = n - rank X``. With the intercept alone this is the one-sample t test
(``scipy.stats.ttest_1samp``), with one two-level factor the two-sample (pooled-variance) t test.

Design columns, in this order: ``intercept``; then each covariate in the order given: a numeric
column demeaned over the subjects (named as the covariate), a categorical column dummy-coded
with its levels sorted and the first one dropped (one 0/1 column ``<covariate>_<level>`` per
other level), so that the intercept is the mean effect of the reference level at the mean of
the numeric covariates.

Voxels not covered by every subject (``present``) are fitted with the subjects that cover
them, one design per coverage pattern (a loop over patterns, vectorised over their voxels), so
their degrees of freedom can be lower. A voxel is *valid* when its subjects' design has full
column rank, ``dof >= 1`` and a non-zero residual variance; other voxels get zeros.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bids_glm.glm.stats import t_to_p_z

INTERCEPT = "intercept"


@dataclass(frozen=True)
class GroupDesign:
    """The group design matrix.

    Attributes
    ----------
    subjects : tuple of str
        Participant labels (without ``sub-``), one per row.
    columns : tuple of str
        Column names: ``intercept`` then the covariate columns.
    matrix : ndarray, shape (n_subjects, n_columns), float64
    covariates : tuple of str
        The participants.tsv columns the design was built from.
    """

    subjects: tuple[str, ...]
    columns: tuple[str, ...]
    matrix: np.ndarray
    covariates: tuple[str, ...] = ()

    def table(self) -> pd.DataFrame:
        """The design as a table with a leading ``participant_id`` (``sub-<label>``) column."""
        table = pd.DataFrame(self.matrix, columns=list(self.columns))
        table.insert(0, "participant_id", [f"sub-{s}" for s in self.subjects])
        return table

    def column_mapping(self) -> dict[str, list[float]]:
        """``{column: [value per subject]}`` (for JSON sidecars)."""
        return {name: self.matrix[:, i].tolist() for i, name in enumerate(self.columns)}


def _is_numeric(values: pd.Series) -> bool:
    return bool(pd.to_numeric(values, errors="coerce").notna().all())


def design_from_covariates(
    subjects: Sequence[str],
    covariates: pd.DataFrame | None = None,
    categorical: Collection[str] = (),
) -> GroupDesign:
    """Build the group design: intercept, demeaned numeric and dummy-coded categorical columns.

    Parameters
    ----------
    subjects : sequence of str
        Participant labels, one design row each.
    covariates : DataFrame or None
        Indexed by participant label (all of ``subjects``, no missing values), one column per
        covariate; None or no columns gives the one-sample design (intercept only).
    categorical : collection of str
        Covariates to treat as categorical even if their values are numbers. Others are
        categorical when any value is not a number.

    Returns
    -------
    GroupDesign

    Raises
    ------
    ValueError
        A subject without a row, a missing value, a covariate with a single value (numeric) or
        level (categorical) over the subjects, or two design columns with the same name.
    """
    subjects = tuple(subjects)
    columns: dict[str, np.ndarray] = {INTERCEPT: np.ones(len(subjects))}
    names: tuple[str, ...] = ()
    if covariates is not None and covariates.shape[1]:
        names = tuple(str(name) for name in covariates.columns)
        absent = [s for s in subjects if s not in covariates.index]
        if absent:
            raise ValueError(f"covariates: no row for participants {absent}")
        rows = covariates.loc[list(subjects)]
        for name in names:
            values = rows[name]
            if values.isna().any():
                missing = [s for s, v in zip(subjects, values.isna(), strict=True) if v]
                raise ValueError(f"covariate {name!r}: missing value for participants {missing}")
            if name not in categorical and _is_numeric(values):
                numbers = pd.to_numeric(values).to_numpy(dtype=np.float64)
                if np.ptp(numbers) == 0:
                    raise ValueError(
                        f"covariate {name!r}: expected values that differ between participants,"
                        f" all {len(subjects)} have {numbers[0]:g}"
                    )
                new = {name: numbers - numbers.mean()}
            else:
                text = values.astype(str).to_numpy()
                levels = sorted(set(text))
                if len(levels) < 2:
                    raise ValueError(
                        f"covariate {name!r}: expected at least 2 levels among the participants,"
                        f" found only {levels}"
                    )
                new = {
                    f"{name}_{level}": (text == level).astype(np.float64) for level in levels[1:]
                }
            clash = sorted(set(new) & set(columns))
            if clash:
                raise ValueError(f"covariate {name!r}: design column names {clash} repeat")
            columns.update(new)
    matrix = np.column_stack(list(columns.values()))
    return GroupDesign(subjects, tuple(columns), matrix, names)


@dataclass(frozen=True)
class GroupContrastMaps:
    """One group t contrast over voxels.

    Attributes
    ----------
    weights : ndarray, shape (n_columns,)
        Contrast weights over the design columns.
    effect, variance, t, z, p : ndarray, shape (V,), float64
        Estimate, its variance, t statistic, z-score, one-sided upper-tail p-value; at
        invalid voxels (see ``valid``) all are 0 except ``p = 1``.
    dof : ndarray, shape (V,), float64
        Residual degrees of freedom per voxel (``n - rank`` of the subjects covering it).
    valid : ndarray, shape (V,), bool
        Voxels where the contrast could be tested.
    """

    weights: np.ndarray
    effect: np.ndarray
    variance: np.ndarray
    t: np.ndarray
    z: np.ndarray
    p: np.ndarray
    dof: np.ndarray
    valid: np.ndarray


def _fit_rows(
    design: np.ndarray, effects: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float] | None:
    """OLS of ``effects`` (m, V) on ``design`` (m, p): (effect (k, V), variance (k, V), dof).

    None when the design is column-rank deficient or leaves no residual degree of freedom.
    """
    n_rows, n_columns = design.shape
    rank = np.linalg.matrix_rank(design)
    if rank < n_columns or n_rows - rank < 1:
        return None
    pseudo_inverse = np.linalg.pinv(design)
    beta = pseudo_inverse @ effects
    residuals = effects - design @ beta
    dof = float(n_rows - rank)
    sigma2 = np.einsum("sv,sv->v", residuals, residuals) / dof
    unscaled = np.einsum("kp,pq,kq->k", weights, pseudo_inverse @ pseudo_inverse.T, weights)
    return weights @ beta, unscaled[:, None] * sigma2[None, :], dof


def fit_group(
    design: np.ndarray,
    effects: np.ndarray,
    weights: np.ndarray,
    present: np.ndarray | None = None,
) -> list[GroupContrastMaps]:
    """Fit the group OLS at every voxel and test t contrasts.

    Parameters
    ----------
    design : ndarray, shape (n_subjects, n_columns)
    effects : ndarray, shape (n_subjects, V)
        The subjects' contrast estimates.
    weights : ndarray, shape (n_contrasts, n_columns) or (n_columns,)
        t contrast weights over the design columns.
    present : ndarray of bool, shape (n_subjects, V), optional
        Which subjects cover each voxel (default: all); each coverage pattern is fitted with
        its own rows of the design.

    Returns
    -------
    list of GroupContrastMaps
        One per row of ``weights``.

    Raises
    ------
    ValueError
        On shapes that do not match.
    """
    design = np.atleast_2d(np.asarray(design, dtype=np.float64))
    effects = np.atleast_2d(np.asarray(effects, dtype=np.float64))
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    n_subjects, n_columns = design.shape
    if effects.shape[0] != n_subjects or weights.shape[1] != n_columns:
        raise ValueError(
            f"fit_group: expected effects with {n_subjects} rows and weights with {n_columns}"
            f" columns (design {design.shape}); got effects {effects.shape},"
            f" weights {weights.shape}"
        )
    n_voxels = effects.shape[1]
    if present is None:
        present = np.ones(effects.shape, dtype=bool)
    elif np.shape(present) != effects.shape:
        raise ValueError(f"fit_group: present {np.shape(present)} must match {effects.shape}")
    n_contrasts = weights.shape[0]
    effect = np.zeros((n_contrasts, n_voxels))
    variance = np.zeros((n_contrasts, n_voxels))
    dof = np.zeros(n_voxels)
    patterns, pattern_of_voxel = np.unique(present, axis=1, return_inverse=True)
    pattern_of_voxel = pattern_of_voxel.ravel()
    for index in range(patterns.shape[1]):
        rows = patterns[:, index]
        voxels = np.flatnonzero(pattern_of_voxel == index)
        fitted = _fit_rows(design[rows], effects[np.ix_(rows, voxels)], weights)
        if fitted is not None:
            effect[:, voxels], variance[:, voxels], dof[voxels] = fitted
    results = []
    for row in range(n_contrasts):
        valid = (dof >= 1) & (variance[row] > 0)
        t = np.zeros(n_voxels)
        t[valid] = effect[row, valid] / np.sqrt(variance[row, valid])
        p = np.ones(n_voxels)
        z = np.zeros(n_voxels)
        for value in np.unique(dof[valid]):
            voxels = valid & (dof == value)
            p[voxels], z[voxels] = t_to_p_z(t[voxels], value)
        results.append(
            GroupContrastMaps(
                weights=weights[row],
                effect=np.where(valid, effect[row], 0.0),
                variance=np.where(valid, variance[row], 0.0),
                t=t,
                z=z,
                p=p,
                dof=np.where(valid, dof, 0.0),
                valid=valid,
            )
        )
    return results


def contrast_weights(columns: Sequence[str]) -> Mapping[str, np.ndarray]:
    """One t contrast per design column (unit weight on it), keyed by column name."""
    identity = np.eye(len(columns))
    return {name: identity[i] for i, name in enumerate(columns)}


def contrast_label(label: str, column: str) -> str:
    """The BIDS label of a design column's t contrast on the subjects' contrast ``label``.

    Parameters
    ----------
    label : str
        The subjects' contrast label, e.g. ``"face"``.
    column : str
        A design column, e.g. ``"intercept"``, ``"age"`` or ``"sex_M"``.

    Returns
    -------
    str
        ``label`` itself for the intercept, else ``label + "By" + CamelCaseColumn`` with only
        ASCII letters and digits kept: ``("face", "sex_M") -> "faceBySexM"``.
    """
    if column == INTERCEPT:
        return label
    pieces = [piece for piece in column.replace("-", "_").split("_") if piece]
    camel = "".join(piece[0].upper() + piece[1:] for piece in pieces)
    return f"{label}By{''.join(ch for ch in camel if ch.isascii() and ch.isalnum())}"


def precision_weighted_mean(
    effects: np.ndarray, variances: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-effects combination over the first axis (sessions of one subject).

    ``w = 1 / max(var, 1e-16)``, ``variance = 1 / sum w``, ``effect = variance * sum w effect``.

    Parameters
    ----------
    effects, variances : ndarray, shape (n_sessions, V)

    Returns
    -------
    effect, variance : ndarray, shape (V,)
    """
    precision = 1.0 / np.maximum(np.asarray(variances, dtype=np.float64), 1e-16)
    variance = 1.0 / precision.sum(axis=0)
    return variance * (precision * effects).sum(axis=0), variance
