"""What bids-glm writes for a run or a participant: maps, design tables, their sidecars.

File naming and atomic writing live in ``derivatives.py``; this module decides the
content: which maps a contrast produces and what each sidecar records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from bids_glm import __version__
from bids_glm.derivatives import files as derivatives
from bids_glm.design.contrasts import unique_labels
from bids_glm.glm.clusters import cluster_table, height_threshold
from bids_glm.glm.results import ContrastMaps, RunFit
from bids_glm.inputs.events import EventSpec
from bids_glm.pipeline.plan import ContrastPlan, RunDesign
from bids_glm.settings import Settings

MAPS_BY_TEST = {
    "t": ("effect", "variance", "t", "z", "p"),
    "F": ("F", "z", "p"),
}
MODEL_MAPS = ("rSquared", "residualSd", "ar1")


def source_path(path: Path, settings: Settings) -> str:
    """The BIDS URI of an input file (``bids:raw:sub-01/...``, ``bids:fmriprep:...``)."""
    return derivatives.bids_uri(
        path, derivatives.dataset_links(settings.bids_dir, settings.derivatives)
    )


def _map_values(maps: ContrastMaps, stat: str) -> np.ndarray:
    return {
        "effect": maps.effect,
        "variance": maps.variance,
        "t": maps.stat,
        "F": maps.stat,
        "z": maps.z,
        "p": maps.p,
    }[stat]


def contrast_sidecar(
    plan: ContrastPlan,
    maps: ContrastMaps,
    stat: str,
    settings: Settings,
    sources: Sequence[str],
    level: str,
) -> dict:
    """Sidecar of one statistical map: what was tested, how, on which inputs."""
    model = settings.model
    sidecar = {
        "ContrastName": plan.name,
        "ContrastLabel": plan.label,
        "ContrastExpression": plan.expression,
        "ContrastWeights": plan.sidecar_weights(),
        "Statistic": stat,
        "Test": maps.stat_type,
        "DegreesOfFreedom": float(maps.dof),
        "NoiseModel": model.noise_model,
        "SmoothingFWHMmm": model.smoothing_fwhm_mm,
        "HRFModel": str(model.hrf_model),
        "Level": level,
        "Sources": list(sources),
        "SoftwareName": "bids-glm",
        "SoftwareVersion": __version__,
    }
    if maps.stat_type == "F":
        sidecar["NumeratorDegreesOfFreedom"] = float(maps.dof_num)
    if level == "subject":
        sidecar["FixedEffects"] = model.fixed_effects
    return sidecar


def write_contrast_maps(
    folder: Path,
    entities: Mapping[str, str],
    plan: ContrastPlan,
    maps: ContrastMaps,
    valid: np.ndarray,
    mask: np.ndarray,
    affine: np.ndarray,
    settings: Settings,
    sources: Sequence[str],
    level: str,
) -> None:
    """Write a contrast's maps (zero where ``valid`` is False) with their sidecars.

    ``valid`` is over the mask's voxels: False for voxels whose data were unusable.
    """
    for stat in MAPS_BY_TEST[maps.stat_type]:
        values = np.where(valid, _map_values(maps, stat), 0.0)
        name = derivatives.bids_name(
            entities, tuple(entities), {"contrast": plan.label, "stat": stat}, "statmap"
        )
        sidecar = contrast_sidecar(plan, maps, stat, settings, sources, level)
        derivatives.write_map(folder / f"{name}.nii.gz", values, mask, affine, sidecar)


def write_cluster_table(
    folder: Path,
    entities: Mapping[str, str],
    plan: ContrastPlan,
    maps: ContrastMaps,
    valid: np.ndarray,
    mask: np.ndarray,
    affine: np.ndarray,
    settings: Settings,
) -> None:
    """Threshold a z map and write its clusters (``desc-<label>_clusters.tsv`` + JSON)."""
    z_threshold = height_threshold(
        maps.z[valid], settings.height_control, settings.alpha, threshold_none=settings.alpha
    )
    z_volume = np.zeros(mask.shape)
    z_volume[mask] = np.where(valid, maps.z, 0.0)
    table = cluster_table(z_volume, affine, z_threshold, settings.cluster_extent)
    name = derivatives.bids_name(entities, tuple(entities), {"desc": plan.label}, "clusters")
    derivatives.write_tsv(folder / f"{name}.tsv", table)
    derivatives.write_json(
        folder / f"{name}.json",
        {
            "ContrastName": plan.name,
            "HeightControl": settings.height_control,
            "Alpha": float(settings.alpha),
            "ZThreshold": z_threshold,
            "ClusterExtentVoxels": int(settings.cluster_extent),
            "Connectivity": "faces (6 neighbours)",
            "SubpeakMinimumDistanceMm": 8.0,
            "SoftwareName": "bids-glm",
            "SoftwareVersion": __version__,
        },
    )


def write_model_maps(
    folder: Path,
    entities: Mapping[str, str],
    fit: RunFit,
    valid: np.ndarray,
    mask: np.ndarray,
    affine: np.ndarray,
    source: str,
) -> None:
    """Per-run model maps: every column's beta, r-squared, residual SD and AR(1).

    Betas are named ``desc-<column label>_stat-beta``; their sidecars name the column.
    """
    common = {
        "NoiseModel": fit.noise_model,
        "DegreesOfFreedom": float(fit.dof),
        "Sources": [source],
        "SoftwareName": "bids-glm",
        "SoftwareVersion": __version__,
    }
    maps = []
    labels = unique_labels(fit.column_names)
    for index, column in enumerate(fit.column_names):
        extra = {"desc": labels[column], "stat": "beta"}
        maps.append((extra, fit.beta[index], {"Statistic": "beta", "Column": column}))
    values = {"rSquared": fit.r_squared, "residualSd": np.sqrt(fit.sigma2), "ar1": fit.ar1}
    for stat in MODEL_MAPS:
        if values[stat] is not None:
            maps.append(({"stat": stat}, values[stat], {"Statistic": stat}))
    for extra, map_values, sidecar in maps:
        name = derivatives.bids_name(entities, tuple(entities), extra, "statmap")
        masked = np.where(valid, map_values, 0.0)
        derivatives.write_map(
            folder / f"{name}.nii.gz", masked, mask, affine, {**common, **sidecar}
        )


def write_design(
    design: RunDesign, folder: Path, entities: Mapping[str, str], settings: Settings
) -> Path:
    """The run's design matrix as TSV, and a JSON with everything needed to rebuild it.

    Returns the TSV's path.
    """
    name = derivatives.bids_name(entities, tuple(entities), {}, "design")
    derivatives.write_tsv(folder / f"{name}.tsv", design.matrix)
    model = settings.model
    events = model.events or EventSpec()
    run = design.run
    censored = [] if design.censored is None else np.flatnonzero(design.censored).tolist()
    derivatives.write_json(
        folder / f"{name}.json",
        {
            "RepetitionTime": run.tr_s,
            "SliceTimeRef": design.slice_time_ref,
            "FrameTimes": [float(t) for t in design.matrix.index],
            "DummyScans": design.dummy_scans,
            "CensoredVolumes": [design.dummy_scans + i for i in censored],
            "Columns": list(design.matrix.columns),
            "Conditions": list(design.conditions),
            "ConditionColumn": events.condition_column,
            "AmplitudeColumn": events.amplitude_column or "modulation (when present)",
            "ParametricModulators": list(events.parametric_modulators),
            "HRFModel": str(model.hrf_model),
            "FIRDelays": list(model.fir_delays_scans) if model.hrf_model.base == "fir" else [],
            "DriftModel": model.drift_model,
            "HighPassHz": model.high_pass_hz,
            "DriftOrder": model.drift_order,
            "NoiseModel": model.noise_model,
            "SignalScaling": model.signal_scaling,
            "Confounds": design.confounds_by_source or {},
            "Sources": [
                source_path(p, settings)
                for p in (run.bold_path, run.events_path, run.confounds_path)
                if p is not None
            ],
        },
    )
    return folder / f"{name}.tsv"


def write_mean_image(
    folder: Path,
    entities: Mapping[str, str],
    mean_volumes: Sequence[np.ndarray],
    sources: Sequence[str],
    affine: np.ndarray,
) -> Path:
    """``..._desc-mean_boldref.nii.gz`` (+ JSON): the runs' mean BOLD, the reports' underlay.

    Returns the image's path.
    """
    mean = np.mean(mean_volumes, axis=0, dtype=np.float64)
    name = derivatives.bids_name(entities, tuple(entities), {"desc": "mean"}, "boldref")
    sidecar = {
        "Description": "Time-mean of the preprocessed BOLD over the volumes fitted, before "
        "smoothing, averaged over runs",
        "Sources": list(sources),
    }
    whole_grid = np.ones(mean.shape, dtype=bool)  # a map without a mask (queued if writing)
    derivatives.write_map(folder / f"{name}.nii.gz", mean.ravel(), whole_grid, affine, sidecar)
    return folder / f"{name}.nii.gz"
