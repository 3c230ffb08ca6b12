"""Single-trial outputs: per condition a 4D beta series and its sidecar; the LSA design.

A beta series holds one volume per trial of its condition, in onset order; its sidecar lists
the trials (the volume index, the onset and duration as in the events file, the condition,
the amplitude when the events scale trials) and how the estimates were made.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bids_glm.derivatives import naming
from bids_glm.derivatives.files import write_bytes_atomic, write_json, write_tsv
from bids_glm.derivatives.maps import MapTarget, label_record
from bids_glm.design.run_design import RunDesign
from bids_glm.image.nifti_bytes import nifti_gz_bytes
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


def write_beta_series(
    target: MapTarget,
    condition: str,
    label: str,
    betas: np.ndarray,
    trials: pd.DataFrame,
    record: dict,
) -> Path:
    """Write one condition's beta series (``betas``: (n_trials, V), in onset order)."""
    path = naming.beta_series_path(target.folder, target.entities, label)
    volumes = [target.geometry.to_volume(np.where(target.valid, b, 0.0)) for b in betas]
    series = np.stack(volumes, axis=-1).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, nifti_gz_bytes(series, target.geometry.affine))
    write_json(
        naming.sidecar_path(path),
        {
            **record,
            "Condition": condition,
            "NumberOfTrials": len(betas),
            "Trials": trial_records(trials, record["DummyScans"] * record["RepetitionTime"]),
            **label_record(target.entities),
        },
    )
    return path


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
