"""What bids-glm writes for a run or a participant: maps, design tables, their sidecars.

Names come from :mod:`bids_glm.derivatives.naming`, atomic writing from
:mod:`bids_glm.derivatives.files`; this module decides the content: which maps a contrast
produces and what each sidecar records.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bids_glm import __version__
from bids_glm.derivatives import naming
from bids_glm.derivatives.dataset import bids_uri, dataset_links
from bids_glm.derivatives.files import MapWriter, write_json, write_tsv
from bids_glm.design.contrasts import unique_labels
from bids_glm.design.run_design import ContrastPlan, RunDesign
from bids_glm.glm.results import ContrastMaps, RunFit
from bids_glm.image.geometry import VolumeGeometry
from bids_glm.inputs.events import EventSpec
from bids_glm.settings import ModelSettings, Settings

MAPS_BY_TEST = {
    "t": ("effect", "variance", "t", "z", "p"),
    "F": ("F", "z", "p"),
}
MODEL_MAPS = ("rSquared", "residualSd", "ar1")
SOFTWARE = {"SoftwareName": "bids-glm", "SoftwareVersion": __version__}


@dataclass(frozen=True, eq=False)
class MapTarget:
    """Where a set of maps goes: folder, name entities, geometry and the valid locations.

    Attributes
    ----------
    folder : Path
    entities : dict of str to str
        The entities every name starts with, in order.
    geometry : VolumeGeometry
        Turns the in-mask values into an image.
    valid : ndarray of bool, shape (geometry.n_values,)
        Locations whose values are written; the others are written as 0 (unusable data).
    """

    folder: Path
    entities: dict[str, str]
    geometry: VolumeGeometry
    valid: np.ndarray

    def write(
        self,
        writer: MapWriter,
        path: Path,
        values: np.ndarray,
        sidecar: dict,
        copies: dict[Path, dict] | None = None,
    ) -> None:
        """Write ``values`` (zero where not valid) to ``path`` with its sidecar.

        Surfaces and grayordinates record in the sidecar how many were left out.
        ``copies``: further paths (and their sidecars) of the same map, with this
        target's geometry and valid locations; the image is compressed once.
        """
        excluded = self.geometry.exclusion_record(self.valid)
        copies = {copy: {**extra, **excluded} for copy, extra in (copies or {}).items()}
        sidecar = {**sidecar, **excluded}
        values = np.where(self.valid, values, 0.0)
        writer.write_map(path, values, self.geometry, sidecar, copies)


@dataclass(frozen=True)
class Provenance:
    """How a contrast's maps were made: the model, the input files, the level."""

    model: ModelSettings
    sources: tuple[str, ...]
    level: str  # "run" or "subject"


def label_record(entities: dict[str, str]) -> dict:
    """``{"OriginalLabels": {entity: full label}}`` when names shorten a label, else ``{}``."""
    originals = naming.original_labels(entities)
    return {"OriginalLabels": originals} if originals else {}


def source_uri(path: Path, settings: Settings) -> str:
    """The BIDS URI of an input file (``bids:raw:sub-01/...``, ``bids:fmriprep:...``)."""
    return bids_uri(path, dataset_links(settings.bids_dir, settings.derivatives))


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
    plan: ContrastPlan, maps: ContrastMaps, stat: str, provenance: Provenance
) -> dict:
    """Sidecar of one statistical map: what was tested, how, on which inputs."""
    model = provenance.model
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
        "Level": provenance.level,
        "Sources": list(provenance.sources),
        **SOFTWARE,
    }
    if maps.stat_type == "F":
        sidecar["NumeratorDegreesOfFreedom"] = float(maps.dof_num)
    if provenance.level == "subject":
        sidecar["FixedEffects"] = model.fixed_effects
    return sidecar


def write_contrast_maps(
    writer: MapWriter,
    target: MapTarget,
    plan: ContrastPlan,
    maps: ContrastMaps,
    provenance: Provenance,
    also: tuple[tuple[MapTarget, Provenance], ...] = (),
) -> None:
    """Write a contrast's maps (``effect, variance, t, z, p`` or ``F, z, p``) and sidecars.

    ``also``: further places the same maps belong to, each with its provenance (a one-run
    participant's subject level is its run's); their targets must have ``target``'s
    geometry and valid locations. Each image is compressed once for all of them.
    """
    for stat in MAPS_BY_TEST[maps.stat_type]:
        path, sidecar = _contrast_file(target, plan, maps, stat, provenance)
        copies = dict(_contrast_file(other, plan, maps, stat, how) for other, how in also)
        target.write(writer, path, _map_values(maps, stat), sidecar, copies)


def _contrast_file(
    target: MapTarget, plan: ContrastPlan, maps: ContrastMaps, stat: str, provenance: Provenance
) -> tuple[Path, dict]:
    """Path and sidecar of one of a contrast's maps at ``target``."""
    path = naming.stat_map_path(target.folder, target.entities, stat, contrast=plan.label)
    sidecar = contrast_sidecar(plan, maps, stat, provenance)
    sidecar.update(label_record({**target.entities, "contrast": plan.label}))
    return path, sidecar


def write_cluster_table(
    target: MapTarget,
    plan: ContrastPlan,
    table: pd.DataFrame,
    z_threshold: float,
    settings: Settings,
    on_mesh: bool = False,
) -> None:
    """A contrast's cluster table (TSV) and how it was thresholded (JSON).

    ``on_mesh``: clusters of vertices along the meshes' edges (surface and CIFTI maps).
    """
    path = naming.clusters_path(target.folder, target.entities, plan.label)
    write_tsv(path, table)
    clustering = (
        {"ClusterExtentVertices": int(settings.cluster_extent), "Connectivity": "mesh edges"}
        if on_mesh
        else {
            "ClusterExtentVoxels": int(settings.cluster_extent),
            "Connectivity": "faces (6 neighbours)",
            "SubpeakMinimumDistanceMm": 8.0,
        }
    )
    write_json(
        naming.sidecar_path(path),
        {
            "ContrastName": plan.name,
            "HeightControl": settings.height_control,
            "Alpha": float(settings.alpha),
            # FDR with no discovery gives an infinite threshold: no number to record
            "ZThreshold": z_threshold if math.isfinite(z_threshold) else None,
            **clustering,
            **SOFTWARE,
            **label_record({**target.entities, "desc": plan.label}),
        },
    )


def write_model_maps(writer: MapWriter, target: MapTarget, fit: RunFit, source: str) -> None:
    """Per-run model maps: every column's beta, r-squared, residual SD and AR(1).

    Betas carry the column's label as their ``desc`` entity; their sidecars name the column.
    """
    common = {
        "NoiseModel": fit.noise_model,
        "DegreesOfFreedom": float(fit.dof),
        "Sources": [source],
        **SOFTWARE,
    }
    maps = []
    labels = unique_labels(fit.column_names)
    for index, column in enumerate(fit.column_names):
        path = naming.stat_map_path(target.folder, target.entities, "beta", desc=labels[column])
        labels_written = label_record({**target.entities, "desc": labels[column]})
        sidecar = {"Statistic": "beta", "Column": column, **labels_written}
        maps.append((path, fit.beta[index], sidecar))
    values = {"rSquared": fit.r_squared, "residualSd": np.sqrt(fit.sigma2), "ar1": fit.ar1}
    for stat in MODEL_MAPS:
        if values[stat] is not None:
            path = naming.stat_map_path(target.folder, target.entities, stat)
            maps.append((path, values[stat], {"Statistic": stat, **label_record(target.entities)}))
    for path, map_values, sidecar in maps:
        target.write(writer, path, map_values, {**common, **sidecar})


def write_design(
    design: RunDesign, folder: Path, entities: dict[str, str], settings: Settings
) -> Path:
    """The run's design matrix as TSV, and a JSON with everything needed to rebuild it.

    Returns the TSV's path.
    """
    path = naming.design_path(folder, entities)
    write_tsv(path, design.matrix)
    if design.user_design is not None:
        write_json(naming.sidecar_path(path), _user_design_sidecar(design, entities, settings))
        return path
    model = settings.model
    events = model.events or EventSpec()
    run = design.run
    write_json(
        naming.sidecar_path(path),
        {
            **_design_rows(design),
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
            **label_record(entities),
            "Sources": [
                source_uri(p, settings)
                for p in (run.bold_path, run.events_path, run.confounds_path)
                if p is not None
            ],
        },
    )
    return path


def _design_rows(design: RunDesign) -> dict:
    """What every design sidecar records of the timeline: TR, frame times, rows left out."""
    censored = [] if design.censored is None else np.flatnonzero(design.censored).tolist()
    return {
        "RepetitionTime": design.run.tr_s,
        "SliceTimeRef": design.slice_time_ref,
        "FrameTimes": [float(t) for t in design.matrix.index],
        "DummyScans": design.dummy_scans,
        "CensoredVolumes": [design.dummy_scans + i for i in censored],
        "Columns": list(design.matrix.columns),
    }


def _user_design_sidecar(design: RunDesign, entities: dict[str, str], settings: Settings) -> dict:
    """The sidecar of a ``--design-dir`` design: its source file, the rows fitted."""
    run = design.run
    return {
        **_design_rows(design),
        "DesignSource": "user",
        "UserDesignFile": str(design.user_design),
        "Description": "User-supplied design matrix (--design-dir), used as given: no HRF, "
        "drift, confound or constant regressor added; rows of dummy scans left out",
        "NoiseModel": settings.model.noise_model,
        "SignalScaling": settings.model.signal_scaling,
        "Confounds": design.confounds_by_source or {},
        **label_record(entities),
        "Sources": [
            source_uri(p, settings)
            for p in (run.bold_path, design.user_design, run.confounds_path)
            if p is not None
        ],
    }


def write_mean_image(
    writer: MapWriter,
    folder: Path,
    entities: dict[str, str],
    mean_volumes: Sequence[np.ndarray],
    sources: Sequence[str],
    affine: np.ndarray,
) -> Path:
    """The runs' mean BOLD image (+ JSON), the reports' underlay.

    Returns the image's path.
    """
    mean = np.mean(mean_volumes, axis=0, dtype=np.float64)
    path = naming.mean_image_path(folder, entities)
    sidecar = {
        "Description": "Time-mean of the preprocessed BOLD over the volumes fitted, before "
        "smoothing, averaged over runs",
        "Sources": list(sources),
    }
    writer.write_map(path, mean.ravel(), VolumeGeometry.whole_grid(mean.shape, affine), sidecar)
    return path
