"""First-level design matrix: conditions, confounds, drifts, constant (in that order)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from bids_glm.design.drift import cosine_drift, polynomial_drift
from bids_glm.design.hrf_spec import GLOVER, HrfSpec
from bids_glm.design.regressors import checked_frame_times, condition_regressors

DRIFT_MODELS: tuple[str, ...] = ("cosine", "polynomial", "none")
REQUIRED_EVENT_COLUMNS: tuple[str, ...] = ("onset", "duration", "trial_type")


def frame_times(n_scans: int, tr_s: float, slice_time_ref: float = 0.0) -> np.ndarray:
    """Return frame acquisition times ``linspace(s * TR, (n - 1 + s) * TR, n)``.

    Parameters
    ----------
    n_scans : int
        Number of frames (>= 2).
    tr_s : float
        Repetition time in seconds (> 0).
    slice_time_ref : float, default=0.0
        Reference slice time as a fraction ``s`` of the TR, in [0, 1].

    Returns
    -------
    numpy.ndarray
        Frame times in seconds.
    """
    if int(n_scans) != n_scans or n_scans < 2:
        raise ValueError(f"n_scans must be an integer >= 2, got {n_scans!r}")
    if not (np.isfinite(tr_s) and tr_s > 0):
        raise ValueError(f"tr_s must be a finite number of seconds > 0, got {tr_s!r}")
    if not 0.0 <= slice_time_ref <= 1.0:
        raise ValueError(
            f"slice_time_ref must be a fraction of the TR in [0, 1], got {slice_time_ref!r}"
        )
    n_scans = int(n_scans)
    return np.linspace(slice_time_ref * tr_s, (n_scans - 1 + slice_time_ref) * tr_s, n_scans)


def normalise_drift_model(drift_model: str | None) -> str:
    """Validate a drift model name: ``"cosine"``, ``"polynomial"`` or ``"none"``/``None``.

    Parameters
    ----------
    drift_model : str or None
        Drift model name (case ignored).

    Returns
    -------
    str
        The canonical name.
    """
    name = "none" if drift_model is None else str(drift_model).strip().lower()
    if name not in DRIFT_MODELS:
        raise ValueError(
            f"Unknown drift_model {drift_model!r}; expected one of: "
            f"{', '.join(DRIFT_MODELS)} (or None)"
        )
    return name


def make_design_matrix(
    frame_times_s: np.ndarray,
    events: pd.DataFrame | None = None,
    *,
    hrf_model: HrfSpec = GLOVER,
    drift_model: str | None = "cosine",
    high_pass_hz: float = 0.01,
    drift_order: int = 1,
    fir_delays: Sequence[int] | None = None,
    confounds: pd.DataFrame | None = None,
    oversampling: int = 50,
    min_onset_s: float = -24.0,
) -> pd.DataFrame:
    """Build a first-level design matrix equal to nilearn 0.14's on the same inputs.

    Parameters
    ----------
    frame_times_s : numpy.ndarray
        Strictly increasing frame times in seconds (see :func:`frame_times`).
    events : pandas.DataFrame or None
        Columns ``onset`` and ``duration`` (s), ``trial_type``, optional ``modulation``
        (amplitude, default 1). Duplicate events add up. Conditions are sorted by name.
    hrf_model : HrfSpec, default=GLOVER
        The HRF model of the conditions (:func:`bids_glm.design.hrf_spec.parse_hrf_model`).
    drift_model : {"cosine", "polynomial", "none", None}, default="cosine"
        Slow-drift model.
    high_pass_hz : float, default=0.01
        Cosine cut-off frequency in Hz.
    drift_order : int, default=1
        Polynomial degree.
    fir_delays : sequence of int or None
        FIR delays in scans (default ``[0]``); used by ``"fir"`` only.
    confounds : pandas.DataFrame or None
        Extra regressors, one row per frame (matched by position), columns kept as named.
    oversampling : int, default=50
        Grid samples per frame interval for convolution.
    min_onset_s : float, default=-24.0
        Start of the convolution grid relative to the first frame, in seconds.

    Returns
    -------
    pandas.DataFrame
        Index: frame times. Columns: ``<condition><suffix>`` per condition and basis
        function, confounds, ``drift_1``..``drift_K``, ``constant``.

    Notes
    -----
    Unlike nilearn, a rank-deficient matrix is returned as built (nilearn nudges all
    singular values when the condition number exceeds 1e15, which changes entries by
    about 1e-15 of the largest singular value); the GLM's pseudo-inverse handles it.
    Inputs nilearn accepts silently are rejected here: negative durations, a grid start
    after the first frame (``min_onset_s > 0``), a cosine cut-off at or above Nyquist.
    """
    times = checked_frame_times(frame_times_s)
    drift_name = normalise_drift_model(drift_model)
    blocks: list[pd.DataFrame] = []
    if events is not None:
        blocks.append(
            _condition_block(events, times, hrf_model, fir_delays, oversampling, min_onset_s)
        )
    if confounds is not None:
        blocks.append(_confound_block(confounds, times))
    blocks.append(_drift_block(drift_name, times, high_pass_hz, drift_order))
    design = pd.concat(blocks, axis=1)
    duplicated = design.columns[design.columns.duplicated()].unique().tolist()
    if duplicated:
        raise ValueError(f"Design matrix column names must be unique; repeated: {duplicated}")
    return design


def _condition_block(
    events: pd.DataFrame,
    times: np.ndarray,
    hrf_model: HrfSpec,
    fir_delays: Sequence[int] | None,
    oversampling: int,
    min_onset_s: float,
) -> pd.DataFrame:
    missing = [c for c in REQUIRED_EVENT_COLUMNS if c not in events.columns]
    if missing:
        raise ValueError(
            f"events lack required column(s) {missing}; got columns {list(events.columns)}"
        )
    trial_types = events["trial_type"].astype(str).to_numpy()
    onsets = _numeric_event_column(events, "onset")
    durations = _numeric_event_column(events, "duration")
    if "modulation" in events.columns:
        amplitudes = _numeric_event_column(events, "modulation")
    else:
        amplitudes = np.ones(len(events))
    columns: dict[str, np.ndarray] = {}
    for condition in np.unique(trial_types):
        selected = trial_types == condition
        regressors, suffixes = condition_regressors(
            onsets[selected],
            durations[selected],
            amplitudes[selected],
            hrf_model=hrf_model,
            frame_times_s=times,
            oversampling=oversampling,
            fir_delays=fir_delays,
            min_onset_s=min_onset_s,
        )
        for suffix, values in zip(suffixes, regressors.T, strict=True):
            columns[f"{condition}{suffix}"] = values
    return pd.DataFrame(columns, index=pd.Index(times), dtype=float)


def _numeric_event_column(events: pd.DataFrame, column: str) -> np.ndarray:
    try:
        values = events[column].to_numpy(dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(f"events column {column!r} must be numeric: {error}") from error
    if not np.all(np.isfinite(values)):
        raise ValueError(f"events column {column!r} must be finite (got NaN or infinite values)")
    return values


def _confound_block(confounds: pd.DataFrame, times: np.ndarray) -> pd.DataFrame:
    if len(confounds) != times.size:
        raise ValueError(
            f"confounds have {len(confounds)} rows but there are {times.size} frames; "
            "they must have one row per frame"
        )
    try:
        values = confounds.to_numpy(dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(f"confounds must be numeric: {error}") from error
    finite = np.isfinite(values).all(axis=0)
    bad = [str(c) for c, ok in zip(confounds.columns, finite, strict=True) if not ok]
    if bad:
        raise ValueError(f"confound column(s) {bad} hold NaN or infinite values")
    names = [str(c) for c in confounds.columns]
    return pd.DataFrame(values, columns=names, index=pd.Index(times))


def _drift_block(
    drift_model: str, times: np.ndarray, high_pass_hz: float, drift_order: int
) -> pd.DataFrame:
    if drift_model == "cosine":
        drifts = cosine_drift(high_pass_hz, times)
    elif drift_model == "polynomial":
        drifts = polynomial_drift(drift_order, times)
    else:
        drifts = np.empty((times.size, 0))
    names = [f"drift_{k}" for k in range(1, drifts.shape[1] + 1)]
    block = pd.DataFrame(drifts, columns=names, index=pd.Index(times))
    block["constant"] = 1.0
    return block
