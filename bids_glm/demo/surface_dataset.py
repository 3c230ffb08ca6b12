"""The surface demo: a faces task on fsaverage5 GIfTI pairs or fsLR CIFTI grayordinates.

``make_surface_demo(bids_dir, "fsaverage5")`` writes raw events and fMRIPrep-like
derivatives ``sub-<s>/func/sub-<s>_task-faces_run-<r>_hemi-<L|R>_space-fsaverage5_bold
.func.gii`` (one data array per volume, the medial wall all zeros as in fMRIPrep's
output); ``"fsLR"`` writes ``..._space-fsLR_den-91k_bold.dtseries.nii`` whose
``BrainModelAxis`` leaves the medial wall out and adds subcortical voxel structures. The
meshes (:mod:`bids_glm.demo.surface_mesh`) go to ``templateflow_dir`` with TemplateFlow's
names. Planted patches: ``face`` in the left hemisphere (and, for CIFTI, the left
thalamus), ``house`` in the right hemisphere; the truth (indices over the analysed vector:
left vertices then right ones, or grayordinates in file order) is in
``code/demo_truth.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.cifti2 import cifti2_axes
from nibabel.gifti import GiftiDataArray, GiftiImage, GiftiMetaData

from bids_glm.demo.files import write_derivatives_description, write_json, write_raw_description
from bids_glm.demo.signal import event_regressor, simulate_events
from bids_glm.demo.surface_mesh import (
    Mesh,
    fibonacci_sphere,
    icosphere,
    placed,
    template_mesh_path,
    write_mesh,
)

TASK = "faces"
TR_S = 2.0
CONDITIONS = ("face", "house", "scrambled")
HEMISPHERES = ("L", "R")
BASELINE = 1000.0
NOISE_SD = 10.0  # 1 % of baseline
AMPLITUDE = 25.0  # planted response, 2.5 % of baseline at its plateau
PATCH_RADIUS_RAD = 0.3
MEDIAL_WALL_X = 0.8  # unit-sphere |x| beyond which, on the medial side, is the medial wall
# patch centres on the unit sphere (x lateral for the left hemisphere is negative)
PATCHES = {"face": ("L", (-0.8, 0.3, 0.5)), "house": ("R", (0.8, -0.4, 0.45))}
SUBCORTICAL = {"thalamus_left": (0, 0, 0), "thalamus_right": (5, 0, 0)}  # 4^3-voxel blocks
SUBCORTICAL_PLANTED = {"face": "thalamus_left"}
TRUTH_PATH = Path("code", "demo_truth.json")


@dataclass(frozen=True)
class SurfaceSpec:
    """One demo space: its template, how its meshes are made, and its file kind."""

    template: str
    cifti: bool
    mesh_size: int  # icosphere order (GIfTI) or vertices per hemisphere (CIFTI)


SPACES = {
    "fsaverage5": SurfaceSpec("fsaverage", cifti=False, mesh_size=5),
    "fsLR": SurfaceSpec("fsLR", cifti=True, mesh_size=32492),
}


def _sphere(spec: SurfaceSpec, mesh_size: int | None) -> Mesh:
    size = spec.mesh_size if mesh_size is None else mesh_size
    return fibonacci_sphere(size) if spec.cifti else icosphere(size)


def medial_wall(sphere: Mesh, hemi: str) -> np.ndarray:
    """The vertices on the hemisphere's medial side (towards the midline)."""
    x = sphere.vertices[:, 0]
    return x > MEDIAL_WALL_X if hemi == "L" else x < -MEDIAL_WALL_X


def patch(sphere: Mesh, centre) -> np.ndarray:
    """Vertices within :data:`PATCH_RADIUS_RAD` (great-circle angle) of ``centre``."""
    direction = np.asarray(centre, dtype=float) / np.linalg.norm(centre)
    return sphere.vertices @ direction > np.cos(PATCH_RADIUS_RAD)


def brain_models(sphere: Mesh) -> cifti2_axes.BrainModelAxis:
    """Both cortices without their medial walls, then the subcortical voxel blocks."""
    axis = None
    for hemi in HEMISPHERES:
        name = "CortexLeft" if hemi == "L" else "CortexRight"
        part = cifti2_axes.BrainModelAxis.from_mask(~medial_wall(sphere, hemi), name=name)
        axis = part if axis is None else axis + part
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = (-10.0, -20.0, -10.0)
    for name, corner in SUBCORTICAL.items():
        mask = np.zeros((10, 6, 6), dtype=bool)
        mask[corner[0] : corner[0] + 4, 1:5, 1:5] = True
        axis = axis + cifti2_axes.BrainModelAxis.from_mask(mask, name=name, affine=affine)
    return axis


def planted_columns(sphere: Mesh, cifti: bool) -> dict[str, np.ndarray]:
    """Condition -> indices of its planted locations in the analysed vector."""
    n = len(sphere.vertices)
    if not cifti:
        return {
            c: np.flatnonzero(patch(sphere, centre)) + (0 if hemi == "L" else n)
            for c, (hemi, centre) in PATCHES.items()
        }
    axis, planted = brain_models(sphere), {}
    for condition, (hemi, centre) in PATCHES.items():
        where = np.zeros(len(axis), dtype=bool)
        for name, slc, part in axis.iter_structures():
            idx = np.arange(len(axis))[slc]
            if name == f"CIFTI_STRUCTURE_CORTEX_{'LEFT' if hemi == 'L' else 'RIGHT'}":
                where[idx] = patch(sphere, centre)[part.vertex]
            elif condition in SUBCORTICAL_PLANTED and name == _structure(condition):
                where[idx] = True
        planted[condition] = np.flatnonzero(where)
    return planted


def _structure(condition: str) -> str:
    """The CIFTI structure name of the subcortical block planted for ``condition``."""
    return cifti2_axes.BrainModelAxis.to_cifti_brain_structure_name(SUBCORTICAL_PLANTED[condition])


def simulate_run(
    rng: np.random.Generator, n_columns: int, planted: dict[str, np.ndarray], n_volumes: int
) -> tuple[np.ndarray, object]:
    """A run's (T, V) float32 data (baseline, white noise, planted responses), its events."""
    events = simulate_events(rng, CONDITIONS, n_volumes * TR_S)
    data = BASELINE + NOISE_SD * rng.standard_normal((n_volumes, n_columns))
    for condition, columns in planted.items():
        chosen = events[events.trial_type == condition]
        response = event_regressor(
            chosen.onset.to_numpy(), chosen.duration.to_numpy(), n_volumes, TR_S
        )
        data[:, columns] += AMPLITUDE * response[:, None]
    return data.astype(np.float32), events


def write_gifti_series(path: Path, series: np.ndarray, hemi: str) -> None:
    """One hemisphere's series as fMRIPrep writes it: one data array per volume."""
    structure = "CortexLeft" if hemi == "L" else "CortexRight"
    arrays = [
        GiftiDataArray(row, intent="NIFTI_INTENT_TIME_SERIES", datatype="NIFTI_TYPE_FLOAT32")
        for row in series
    ]
    meta = GiftiMetaData({"AnatomicalStructurePrimary": structure})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(GiftiImage(meta=meta, darrays=arrays).to_bytes())


def write_dtseries(path: Path, series: np.ndarray, axis: cifti2_axes.BrainModelAxis) -> None:
    """A CIFTI-2 dense time series (``ConnDenseSeries``) with a SeriesAxis in seconds."""
    time = cifti2_axes.SeriesAxis(start=0.0, step=TR_S, size=series.shape[0], unit="SECOND")
    image = nib.Cifti2Image(series, header=(time, axis))
    image.nifti_header.set_intent("ConnDenseSeries")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.to_filename(path)


def _write_run(func: Path, stem: str, data: np.ndarray, sphere: Mesh, cifti: bool) -> None:
    """The run's BOLD file(s) and derivative sidecar(s) in ``func``."""
    sidecar = {"RepetitionTime": TR_S}
    if cifti:
        name = f"{stem}_space-fsLR_den-91k_bold"
        write_dtseries(func / f"{name}.dtseries.nii", data, brain_models(sphere))
        write_json(func / f"{name}.json", sidecar)
        return
    n = len(sphere.vertices)
    for hemi, part in zip(HEMISPHERES, (data[:, :n], data[:, n:]), strict=True):
        part = part.copy()
        part[:, medial_wall(sphere, hemi)] = 0.0  # fMRIPrep's medial wall: all zeros
        name = f"{stem}_hemi-{hemi}_space-fsaverage5_bold"
        write_gifti_series(func / f"{name}.func.gii", part, hemi)
        write_json(func / f"{name}.json", sidecar)


def make_surface_demo(
    bids_dir: Path,
    space: str,
    *,
    templateflow_dir: Path | None = None,
    n_subjects: int = 3,
    n_runs: int = 2,
    n_volumes: int = 120,
    mesh_size: int | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Write the surface demo dataset (see the module docstring).

    Parameters
    ----------
    bids_dir : Path
        Created; must be absent or empty.
    space : {"fsaverage5", "fsLR"}
    templateflow_dir : Path, optional
        Where the meshes go (``tpl-<template>/...surf.gii``); not written when None.
    n_subjects, n_runs, n_volumes : int
    mesh_size : int, optional
        Icosphere order (fsaverage5, default 5: 10242 vertices) or vertices per hemisphere
        (fsLR, default 32492); smaller meshes make quick tests.
    seed : int
        The same seed gives the same data.
    progress : callable, optional
        Called with one line of text per run written.

    Returns
    -------
    dict
        The truth, also written to ``code/demo_truth.json``.
    """
    if space not in SPACES:
        raise ValueError(f"space {space!r}: expected one of {sorted(SPACES)}")
    bids_dir = Path(bids_dir)
    if bids_dir.exists() and any(bids_dir.iterdir()):
        raise FileExistsError(f"{bids_dir} exists and is not empty")
    spec = SPACES[space]
    sphere = _sphere(spec, mesh_size)
    if templateflow_dir is not None:
        for hemi in HEMISPHERES:
            path = template_mesh_path(templateflow_dir, spec.template, hemi)
            write_mesh(path, placed(sphere, hemi), hemi)
    planted = planted_columns(sphere, spec.cifti)
    n_columns = len(brain_models(sphere)) if spec.cifti else 2 * len(sphere.vertices)
    write_raw_description(
        bids_dir, f"bids-glm surface demo ({space})", TASK, "Faces, houses, scrambled.", TR_S, 1
    )
    write_derivatives_description(bids_dir)
    subjects = [f"{i + 1:02d}" for i in range(n_subjects)]
    for i_sub, subject in enumerate(subjects):
        for run in range(1, n_runs + 1):
            rng = np.random.default_rng([seed, i_sub, run])
            data, events = simulate_run(rng, n_columns, planted, n_volumes)
            stem = f"sub-{subject}_task-{TASK}_run-{run}"
            raw = bids_dir / f"sub-{subject}" / "func"
            raw.mkdir(parents=True, exist_ok=True)
            events.to_csv(raw / f"{stem}_events.tsv", sep="\t", index=False, na_rep="n/a")
            func = bids_dir / "derivatives" / "fmriprep" / f"sub-{subject}" / "func"
            _write_run(func, stem, data, sphere, spec.cifti)
            if progress is not None:
                progress(f"  wrote sub-{subject} run-{run}")
    truth = {
        "space": space,
        "subjects": subjects,
        "n_columns": n_columns,
        "planted": {c: columns.tolist() for c, columns in planted.items()},
    }
    write_json(bids_dir / TRUTH_PATH, truth)
    return json.loads(json.dumps(truth))
