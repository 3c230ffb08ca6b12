"""Single-trial outputs: per condition a beta series and its sidecar; the LSA design.

A beta series holds one map per trial of its condition, in onset order: a 4D NIfTI; for
surfaces one ``.func.gii`` per hemisphere with one data array per trial; for CIFTI one
``.dscalar.nii`` with one scalar map per trial (arrays and maps named
``trial-<index>_onset-<s>``). Its sidecar lists the trials (the volume index, the onset and
duration as in the events file, the condition, the amplitude when the events scale trials)
and how the estimates were made; a TSV of the same name has one row per map (``index``,
``onset``, ``duration``, ``trial_type``, ``amplitude`` when the events scale trials). With
``--single-trial-maps t`` the t series (``_stat-t_desc-<condition>_betaseries``) has the same
maps and a sidecar that adds each trial's degrees of freedom.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bids_glm.derivatives import naming
from bids_glm.derivatives.files import write_bytes_atomic, write_json, write_tsv
from bids_glm.derivatives.maps import MapTarget, label_record
from bids_glm.design.run_design import RunDesign
from bids_glm.settings import Settings

ESTIMATORS = {
    "lsa": "least squares - all: one model with one regressor per trial (Mumford et al. 2012)",
    "lss": (
        "least squares - separate: per trial, a model with that trial, one regressor for the "
        "other trials of its condition and one per other condition (Mumford et al. 2012)"
    ),
}


def model_record(design: RunDesign, settings: Settings, sources: list[str]) -> dict:
    """What the beta series of a run share: estimator, noise model, design settings."""
    model = settings.model
    return {
        "Estimator": settings.single_trial.upper(),
        "EstimatorDescription": ESTIMATORS[settings.single_trial],
        "NoiseModel": model.noise_model,
        "HRFModel": str(model.hrf_model),
        "DriftModel": model.drift_model,
        "HighPassHz": model.high_pass_hz,
        "DriftOrder": model.drift_order,
        "SignalScaling": model.signal_scaling,
        "SmoothingFWHMmm": model.smoothing_fwhm_mm,
        "Confounds": design.confounds_by_source or {},
        "DummyScans": design.dummy_scans,
        "CensoredVolumes": [
            design.dummy_scans + int(i)
            for i in ([] if design.censored is None else np.flatnonzero(design.censored))
        ],
        "RepetitionTime": design.run.tr_s,
        "Sources": sources,
    }


def trial_records(trials: pd.DataFrame, onset_shift_s: float) -> list[dict]:
    """The sidecar's trial list; onsets as in the events file (before dummy scans)."""
    scaled = bool((trials["amplitude"] != 1.0).any())
    records = []
    for row in trials.itertuples(index=False):
        record = {
            "index": int(row.index),
            "onset": float(row.onset) + onset_shift_s,
            "duration": float(row.duration),
            "trial_type": str(row.condition),
            "event_row": int(row.event),
            "design_column": str(row.column),
        }
        if scaled:
            record["amplitude"] = float(row.amplitude)
        records.append(record)
    return records


@dataclass(frozen=True)
class TrialSeries:
    """One condition's trial-wise estimates.

    Attributes
    ----------
    condition, label : str
        The condition and its BIDS-safe label.
    trials : DataFrame
        The condition's rows of `bids_glm.design.single_trial.TrialDesign.trials`.
    beta : ndarray, shape (n_trials, V), float32
        As written (values outside the valid locations are set to 0 as they are).
    t : ndarray, shape (n_trials, V), float32, or None
        With ``--single-trial-maps t``; as ``beta``.
    dof : ndarray, shape (n_trials,), or None
        Degrees of freedom of each trial's t statistic.
    """

    condition: str
    label: str
    trials: pd.DataFrame
    beta: np.ndarray
    t: np.ndarray | None = None
    dof: np.ndarray | None = None


def trials_table(trials: pd.DataFrame, onset_shift_s: float) -> pd.DataFrame:
    """The ``_betaseries.tsv`` table: one row per volume of the series, in volume order."""
    return pd.DataFrame(trial_records(trials, onset_shift_s)).drop(
        columns=["event_row", "design_column"]
    )


def map_names(trials: pd.DataFrame, onset_shift_s: float) -> list[str]:
    """Each volume's name in formats that hold one: ``trial-003_onset-12.5`` (events' onset)."""
    return [
        f"trial-{record['index']:03d}_onset-{record['onset']:g}"
        for record in trial_records(trials, onset_shift_s)
    ]


def _write_series(path: Path, target: MapTarget, values: np.ndarray, names: list[str]) -> list:
    """The series' files through the data's geometry; returns them.

    One 4D NIfTI for volumes, one multi-array ``.func.gii`` per hemisphere for surfaces,
    one ``.dscalar.nii`` (one scalar per map, named ``names``) for CIFTI. ``values``
    (float32) are set to 0 at the locations that are not valid, in place.
    """
    if values.dtype != np.float32:
        raise TypeError(f"series are written as float32; received {values.dtype}")
    path.parent.mkdir(parents=True, exist_ok=True)
    geometry = target.geometry
    written = []
    values[:, ~np.asarray(target.valid, dtype=bool)] = 0.0
    for extra, payload in geometry.encode_series_files(values, names):
        written.append(naming.geometry_file_path(path, extra, geometry.extension))
        write_bytes_atomic(written[-1], payload)
    return written


def write_beta_series(target: MapTarget, series: TrialSeries, record: dict) -> list[Path]:
    """Write one condition's beta series (and t series), its sidecar and its trials' table.

    Returns the paths of the image files and the table.
    """
    shift_s = record["DummyScans"] * record["RepetitionTime"]
    extension = target.geometry.extension
    path = naming.beta_series_path(target.folder, target.entities, series.label, None, extension)
    names = map_names(series.trials, shift_s)
    written = _write_series(path, target, series.beta, names)
    content = {
        **record,
        "Condition": series.condition,
        "NumberOfTrials": len(series.beta),
        "Trials": trial_records(series.trials, shift_s),
        **label_record(target.entities),
    }
    write_json(naming.sidecar_path(path), content)
    table = naming.beta_series_path(
        target.folder, target.entities, series.label, extension=naming.TSV
    )
    write_tsv(table, trials_table(series.trials, shift_s))
    written.append(table)
    if series.t is not None:
        t_path = naming.beta_series_path(
            target.folder, target.entities, series.label, "t", extension
        )
        written.extend(_write_series(t_path, target, series.t, names))
        dof = [float(d) for d in series.dof]
        write_json(
            naming.sidecar_path(t_path), {**content, "Statistic": "t", "DegreesOfFreedom": dof}
        )
    return written


def write_trial_design(
    matrix: pd.DataFrame, folder: Path, entities: dict[str, str], record: dict
) -> Path:
    """The run's LSA design (full timeline) as ``_desc-lsa_design.tsv`` with its sidecar."""
    path = naming.trial_design_path(folder, entities, "lsa")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_tsv(path, matrix)
    write_json(
        naming.sidecar_path(path),
        {
            **record,
            "FrameTimes": [float(t) for t in matrix.index],
            "Columns": list(matrix.columns),
            **label_record(entities),
        },
    )
    return path
