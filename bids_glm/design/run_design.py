"""What will be fitted: a run's design matrix with its censoring, and a contrast's weights.

Built by :mod:`bids_glm.pipeline.plan` before anything is fitted; read by the fit, the
writers and the reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from bids_glm.design.contrasts import weights_vector

if TYPE_CHECKING:  # the run is carried along, never inspected here
    from bids_glm.inputs.run_input import RunInput


@dataclass(frozen=True)
class RunDesign:
    """One run and the design matrix built for it.

    Attributes
    ----------
    run : RunInput
        The discovered input files.
    matrix : DataFrame, shape (n_volumes - dummy_scans, p)
        Conditions, confounds, drifts, constant, on the timeline after the dummy scans
        (censored volumes included: the design is built on the full timeline).
    conditions : tuple of str
        Conditions present in this run's events (sorted).
    slice_time_ref : float
        Fraction of the TR at which regressors are sampled.
    dummy_scans : int
        Leading volumes dropped from data and timeline.
    censored : ndarray of bool, shape (n_volumes - dummy_scans,)
        Rows of ``matrix`` removed from the fit (scrubbing, non-steady-state volumes).
    confounds_by_source : dict of str to list of str
        Confound columns chosen by each preset or pattern (including the columns that
        decided censoring).
    confound_columns : tuple of str
        The confound regressors in the design.
    node_contrasts : tuple of (ContrastSpec or FContrastSpec) or None
        With ``--model``: the Run node's contrasts (dummy ones first) resolved on this run's
        columns; they replace the automatic per-condition contrasts.
    user_design : Path or None
        The user's design file (``--design-dir``) the matrix was read from, used as given;
        None when bids-glm built the matrix.
    """

    run: RunInput
    matrix: pd.DataFrame
    conditions: tuple[str, ...]
    slice_time_ref: float
    dummy_scans: int = 0
    censored: np.ndarray | None = None
    confounds_by_source: dict[str, list[str]] | None = None
    confound_columns: tuple[str, ...] = ()
    node_contrasts: tuple | None = None
    user_design: Path | None = None

    @property
    def fitted_rows(self) -> np.ndarray:
        """Boolean mask of the design rows that enter the fit."""
        if self.censored is None:
            return np.ones(len(self.matrix), dtype=bool)
        return ~self.censored

    @property
    def kept_volumes(self) -> np.ndarray:
        """Boolean mask over the BOLD file's volumes: those read and fitted."""
        return np.concatenate([np.zeros(self.dummy_scans, dtype=bool), self.fitted_rows])

    def fitted_matrix(self) -> np.ndarray:
        """The design rows that enter the fit, as float64."""
        return self.matrix.to_numpy(dtype=float)[self.fitted_rows]


@dataclass(frozen=True)
class ContrastPlan:
    """A t or F contrast to compute on every run that has its columns.

    Attributes
    ----------
    name : str
        As the user wrote it (or the condition name).
    label : str
        BIDS-safe camelCase label used in file names.
    rows : tuple of dict of str to float
        Column name -> weight, one mapping per row (one row for a t contrast).
    expression : str
        The text it was parsed from.
    stat_type : str
        ``"t"`` or ``"F"``.
    """

    name: str
    label: str
    rows: tuple[dict[str, float], ...]
    expression: str
    stat_type: str = "t"

    @property
    def columns(self) -> dict[str, float]:
        """Every column the contrast weighs (with its first row's weight, for messages)."""
        merged: dict[str, float] = {}
        for row in self.rows:
            merged.update({k: v for k, v in row.items() if k not in merged})
        return merged

    def weights_matrix(self, column_names: Sequence[str]) -> np.ndarray:
        """Weights over a run's columns: (p,) for t, (q, p) for F."""
        matrix = np.stack([weights_vector(row, column_names) for row in self.rows])
        return matrix[0] if self.stat_type == "t" else matrix

    def sidecar_weights(self) -> dict[str, float] | list[dict[str, float]]:
        """Weights as recorded in sidecars: a mapping for t, a list of rows for F."""
        return dict(self.rows[0]) if self.stat_type == "t" else [dict(r) for r in self.rows]
