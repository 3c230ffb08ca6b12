"""SPM12's multi-session design matrix (``spm_fMRI_design.m``).

Each session contributes a block of its conditions' regressors (each condition's basis
columns side by side, orthogonalised with ``spm_orth``); the blocks sit on the diagonal,
followed by one constant column per session. A condition absent from a session is absent
from its block; a session's extra regressors (SPM's "multiple regressors", e.g. motion)
follow its conditions, mean-centred (``spm_detrend``). Column names follow SPM:
``Sn(s) <condition>*bf(k)``, ``Sn(s) <regressor>``, ``Sn(s) constant``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.linalg

from bids_glm.design.spm_basis import spm_orth
from bids_glm.design.spm_microtime import MicrotimeGrid, convolve_and_sample, stimulus_function

__all__ = ["SpmCondition", "SpmDesign", "SpmSession", "spm_design", "spm_session"]


@dataclass(frozen=True)
class SpmCondition:
    """One condition of a session: its name, onsets and durations in seconds."""

    name: str
    onsets_s: tuple[float, ...]
    durations_s: tuple[float, ...]


@dataclass(frozen=True)
class SpmSession:
    """One session (run): its scans and conditions, in model order.

    ``regressors`` (``(n_scans, r)``, or None) are extra columns named ``regressor_names``.
    ``dummy_scans`` volumes precede the session's first scan (``--dummy-scans``): onsets
    count from the run's start, the regressors are built over the whole run and their
    first ``dummy_scans`` rows dropped before ``spm_orth``.
    """

    n_scans: int
    conditions: tuple[SpmCondition, ...]
    regressors: np.ndarray | None = None
    regressor_names: tuple[str, ...] = ()
    dummy_scans: int = 0


@dataclass(frozen=True)
class SpmDesign:
    """The design matrix ``xX.X`` of a multi-session SPM model.

    Attributes
    ----------
    matrix : numpy.ndarray
        ``(total scans, columns)``: condition blocks, then one constant per session.
    column_names : tuple of str
        SPM's names (``Sn(1) face*bf(1)``, ..., ``Sn(1) constant``).
    session_rows : tuple of numpy.ndarray
        Row indices of each session.
    session_columns : tuple of numpy.ndarray
        Column indices of each session's conditions and regressors (without its constant).
    constant_columns : numpy.ndarray
        Column index of each session's constant (SPM's ``iB``).
    condition_columns : tuple of dict
        Per session, each condition's name -> its first (canonical) column.
    """

    matrix: np.ndarray
    column_names: tuple[str, ...]
    session_rows: tuple[np.ndarray, ...]
    session_columns: tuple[np.ndarray, ...]
    constant_columns: np.ndarray
    condition_columns: tuple[dict[str, int], ...]


def spm_session(
    events: pd.DataFrame,
    n_scans: int,
    regressors: pd.DataFrame | None = None,
    dummy_scans: int = 0,
) -> SpmSession:
    """One session from cleaned events (``onset``, ``duration``, ``trial_type``).

    Conditions are sorted by name (bids-glm's order); each keeps its events in file order.
    Amplitudes are not used: SPM12 models every event at height 1.

    Parameters
    ----------
    events : pandas.DataFrame
        The run's cleaned events.
    n_scans : int
        Scans of the session.
    regressors : pandas.DataFrame, optional
        Extra regressors, one row per scan (e.g. the chosen confounds).
    dummy_scans : int
        Volumes before the session's first scan (onsets count from the run's start).

    Returns
    -------
    SpmSession
    """
    conditions = []
    for name in sorted(events["trial_type"].unique()):
        rows = events[events["trial_type"] == name]
        conditions.append(
            SpmCondition(
                str(name),
                tuple(rows["onset"].astype(float)),
                tuple(rows["duration"].astype(float)),
            )
        )
    if regressors is None or regressors.shape[1] == 0:
        return SpmSession(n_scans, tuple(conditions), dummy_scans=dummy_scans)
    names = tuple(str(name) for name in regressors.columns)
    values = regressors.to_numpy(dtype=float)
    return SpmSession(n_scans, tuple(conditions), values, names, dummy_scans)


def _session_block(
    session: SpmSession, tr_s: float, fmri_t: int, fmri_t0: int, basis: np.ndarray
) -> np.ndarray:
    """Regressors of one session's conditions, ``(n_scans, n_conditions * n_basis)``."""
    grid = MicrotimeGrid(tr_s, fmri_t, fmri_t0, session.dummy_scans + session.n_scans)
    blocks = []
    for condition in session.conditions:
        stimulus = stimulus_function(grid, condition.onsets_s, condition.durations_s)
        sampled = convolve_and_sample(grid, stimulus, basis)[session.dummy_scans :]
        blocks.append(spm_orth(sampled))
    if session.regressors is not None and session.regressors.shape[1]:
        regressors = np.asarray(session.regressors, dtype=float)
        blocks.append(regressors - regressors.mean(axis=0))
    if not blocks:
        return np.zeros((session.n_scans, 0))
    return np.column_stack(blocks)


def spm_design(
    sessions: tuple[SpmSession, ...],
    tr_s: float,
    basis: np.ndarray,
    fmri_t: int = 16,
    fmri_t0: int = 8,
) -> SpmDesign:
    """Build SPM12's design matrix over sessions.

    Parameters
    ----------
    sessions : tuple of SpmSession
        The sessions, in model order.
    tr_s : float
        Repetition time in seconds (shared by the sessions).
    basis : numpy.ndarray
        ``(n_samples, n_basis)`` basis set on the microtime grid (``spm_basis_set``).
    fmri_t, fmri_t0 : int
        Microtime resolution and onset bin.

    Returns
    -------
    SpmDesign
        ``xX.X`` with its names and per-session indices.
    """
    n_basis = basis.shape[1]
    blocks, names, rows, columns, condition_columns = [], [], [], [], []
    first_row = first_column = 0
    for number, session in enumerate(sessions, start=1):
        block = _session_block(session, tr_s, fmri_t, fmri_t0, basis)
        blocks.append(block)
        rows.append(np.arange(first_row, first_row + session.n_scans))
        columns.append(np.arange(first_column, first_column + block.shape[1]))
        condition_columns.append(
            {c.name: first_column + i * n_basis for i, c in enumerate(session.conditions)}
        )
        names += [
            f"Sn({number}) {c.name}*bf({k + 1})"
            for c in session.conditions
            for k in range(n_basis)
        ]
        names += [f"Sn({number}) {name}" for name in session.regressor_names]
        first_row += session.n_scans
        first_column += block.shape[1]
    constants = scipy.linalg.block_diag(*[np.ones((s.n_scans, 1)) for s in sessions])
    names += [f"Sn({number}) constant" for number in range(1, len(sessions) + 1)]
    matrix = np.column_stack([scipy.linalg.block_diag(*blocks), constants])
    return SpmDesign(
        matrix=matrix,
        column_names=tuple(names),
        session_rows=tuple(rows),
        session_columns=tuple(columns),
        constant_columns=np.arange(first_column, first_column + len(sessions)),
        condition_columns=tuple(condition_columns),
    )
