"""Test meshes: a jittered triangulated plane and icospheres, and writing them as GIfTI."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from nibabel.gifti import GiftiDataArray, GiftiImage

from bids_glm.image.mesh import Mesh


def plane_mesh(size_mm: float, spacing_mm: float, jitter: float = 0.15, seed: int = 0) -> Mesh:
    """A square of side ``size_mm`` centred on 0 (z = 0), triangulated on a jittered grid.

    Each grid square is cut along alternating diagonals; interior vertices move by up to
    ``jitter`` times the spacing, so triangles are irregular (some obtuse).
    """
    n = round(size_mm / spacing_mm) + 1
    axis = (np.arange(n) - (n - 1) / 2) * spacing_mm
    x, y = np.meshgrid(axis, axis, indexing="ij")
    points = np.stack([x.ravel(), y.ravel(), np.zeros(n * n)], axis=1)
    interior = (np.abs(points[:, :2]).max(axis=1) < axis[-1] - 1e-9) & (
        np.linalg.norm(points[:, :2], axis=1) > 1e-9  # the centre stays exactly at 0
    )
    shift = np.random.default_rng(seed).uniform(-jitter, jitter, (n * n, 2)) * spacing_mm
    points[interior, :2] += shift[interior]
    index = np.arange(n * n).reshape(n, n)
    a, b = index[:-1, :-1].ravel(), index[1:, :-1].ravel()
    c, d = index[1:, 1:].ravel(), index[:-1, 1:].ravel()
    flip = ((np.arange(n - 1)[:, None] + np.arange(n - 1)[None, :]) % 2).ravel() == 1
    first = np.where(flip[:, None], np.stack([a, b, d], 1), np.stack([a, b, c], 1))
    second = np.where(flip[:, None], np.stack([b, c, d], 1), np.stack([a, c, d], 1))
    return Mesh(points, np.concatenate([first, second]).astype(np.int64))


def icosphere(order: int, radius_mm: float = 70.0) -> Mesh:
    """An icosahedron subdivided ``order`` times, projected onto a sphere of ``radius_mm``."""
    t = (1 + 5**0.5) / 2
    points = [
        (-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t),
        (0, -1, -t), (0, 1, -t), (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1),
    ]  # fmt: skip
    faces = [
        (0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4),
        (11, 10, 2), (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8),
        (3, 8, 9), (4, 9, 5), (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1),
    ]  # fmt: skip
    vertices = [np.array(p, float) / np.linalg.norm(p) for p in points]
    triangles = np.array(faces)
    for _ in range(order):
        middle: dict[tuple[int, int], int] = {}
        refined = []
        for i, j, k in triangles:
            a, b, c = (_midpoint(vertices, middle, *e) for e in ((i, j), (j, k), (k, i)))
            refined += [(i, a, c), (j, b, a), (k, c, b), (a, b, c)]
        triangles = np.array(refined)
    return Mesh(np.array(vertices) * radius_mm, triangles.astype(np.int64))


def _midpoint(vertices: list, middle: dict, i: int, j: int) -> int:
    """Index of the (new, on-sphere) midpoint of edge (i, j)."""
    key = (min(i, j), max(i, j))
    if key not in middle:
        point = vertices[i] + vertices[j]
        vertices.append(point / np.linalg.norm(point))
        middle[key] = len(vertices) - 1
    return middle[key]


def write_surface(path: Path, mesh: Mesh) -> Path:
    """Write ``mesh`` as a GIfTI ``.surf.gii`` (pointset + triangle arrays)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = [
        GiftiDataArray(mesh.vertices_mm.astype(np.float32), intent="NIFTI_INTENT_POINTSET"),
        GiftiDataArray(mesh.triangles.astype(np.int32), intent="NIFTI_INTENT_TRIANGLE"),
    ]
    nib.save(GiftiImage(darrays=arrays), path)
    return path


def geodesic_patch(mesh: Mesh, centre: int, radius_mm: float) -> np.ndarray:
    """Vertices of a sphere mesh (centred on 0) within ``radius_mm`` along the surface."""
    unit = mesh.vertices_mm / np.linalg.norm(mesh.vertices_mm, axis=1, keepdims=True)
    radius = np.linalg.norm(mesh.vertices_mm[centre])
    angle = np.arccos(np.clip(unit @ unit[centre], -1.0, 1.0))
    return np.flatnonzero(angle * radius <= radius_mm)


def write_gifti_series(path: Path, series: np.ndarray, hemi: str) -> Path:
    """A (T, V) series as a GIfTI ``.func.gii``: one data array per volume."""
    arrays = [
        GiftiDataArray(row.astype(np.float32), intent="NIFTI_INTENT_TIME_SERIES") for row in series
    ]
    structure = {"L": "CortexLeft", "R": "CortexRight"}[hemi]
    image = GiftiImage(darrays=arrays)
    image.meta["AnatomicalStructurePrimary"] = structure
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, path)
    return path


def face_house_events(n_volumes: int, tr_s: float) -> pd.DataFrame:
    """Alternating 5 s ``face`` and ``house`` events every 15 s from 10 s."""
    onsets = np.arange(10.0, n_volumes * tr_s - 20, 15.0)
    kinds = np.where(np.arange(onsets.size) % 2 == 0, "face", "house")
    return pd.DataFrame({"onset": onsets, "duration": 5.0, "trial_type": kinds})


def face_response(events: pd.DataFrame, n_volumes: int, tr_s: float) -> np.ndarray:
    """The planted signal: the ``face`` events' boxcars through a gamma HRF, peak 1."""
    faces = events[events["trial_type"] == "face"]
    return boxcar_response(faces["onset"].to_numpy(), 5.0, n_volumes, tr_s)


def boxcar_response(onsets_s, duration_s: float, n_volumes: int, tr_s: float) -> np.ndarray:
    """Boxcars convolved with a gamma HRF at the frame times, peak 1."""
    from scipy.stats import gamma

    dt = 0.1
    grid = np.arange(0, n_volumes * tr_s, dt)
    box = np.zeros_like(grid)
    for onset in onsets_s:
        box[(grid >= onset) & (grid < onset + duration_s)] = 1.0
    signal = np.convolve(box, gamma.pdf(np.arange(0, 30, dt), 6))[: grid.size]
    return signal[:: round(tr_s / dt)][:n_volumes] / signal.max()


def make_mesh_dataset(root: Path, mesh: Mesh, patches: dict, space: str, seed: int = 0) -> dict:
    """Raw events and fMRIPrep-like GIfTI runs on ``mesh`` (both hemispheres), with patches.

    ``patches`` maps a hemisphere to the vertices responding to ``face`` (3% of the mean;
    noise 1%). Vertices with x > 45 mm are a medial wall of zeros. Two runs, TR 2 s.
    """
    n_volumes, tr_s = 80, 2.0
    rng = np.random.default_rng(seed)
    for folder, document in (
        (root, {"Name": "mesh", "BIDSVersion": "1.9.0"}),
        (
            root / "derivatives" / "fmriprep",
            {"Name": "fMRIPrep", "BIDSVersion": "1.9.0", "DatasetType": "derivative"},
        ),
    ):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "dataset_description.json").write_text(json.dumps(document))
    events = face_house_events(n_volumes, tr_s)
    response = face_response(events, n_volumes, tr_s)
    wall = mesh.vertices_mm[:, 0] > 45.0
    func = root / "derivatives" / "fmriprep" / "sub-01" / "func"
    raw_func = root / "sub-01" / "func"
    raw_func.mkdir(parents=True, exist_ok=True)
    for run in ("1", "2"):
        events.to_csv(raw_func / f"sub-01_task-faces_run-{run}_events.tsv", sep="\t", index=False)
        for hemi in ("L", "R"):
            series = 100.0 + rng.standard_normal((n_volumes, mesh.n_vertices))
            series[:, patches.get(hemi, [])] += 3.0 * response[:, None]
            series[:, wall] = 0.0
            name = f"sub-01_task-faces_run-{run}_hemi-{hemi}_space-{space}_bold"
            write_gifti_series(func / f"{name}.func.gii", series, hemi)
            (func / f"{name}.json").write_text(json.dumps({"RepetitionTime": tr_s}))
    return {"wall": wall, "events": events}
