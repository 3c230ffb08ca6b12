"""Thresholds and peak tables of surface z maps (per hemisphere), and of CIFTI voxel structures.

The height threshold is the volumes' (:func:`bids_glm.glm.thresholding.height_threshold`,
over the analysed vertices); clusters are the connected components of the suprathreshold
vertices of one sign along the mesh's edges, and the cluster extent counts vertices. A
cluster's size is given in vertices and in mm^2 (the sum of its vertices' areas: one third
of each incident triangle). Without a mesh there is no adjacency: the table then lists the
highest suprathreshold vertices, without cluster sizes or coordinates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse import csgraph

from bids_glm.glm.thresholding import Threshold, check_cluster_extent, height_threshold
from bids_glm.image.mesh import Mesh

SURFACE_TABLE_COLUMNS = (
    "Cluster ID",
    "Hemisphere",
    "Vertex",
    "X",
    "Y",
    "Z",
    "Peak Stat",
    "Cluster Size (vertices)",
    "Cluster Size (mm2)",
)
SURFACE_TABLE_DTYPES = {  # the columns' types, also when a written table is read back
    "Cluster ID": str,
    "Hemisphere": str,
    "Vertex": "Int64",
    "X": np.float64,
    "Y": np.float64,
    "Z": np.float64,
    "Peak Stat": np.float64,
    "Cluster Size (vertices)": "Int64",
    "Cluster Size (mm2)": np.float64,
}
STRUCTURE_TABLE_COLUMNS = (
    "Structure",
    "X",
    "Y",
    "Z",
    "Peak Stat",
    "Voxels Above",
    "Volume Above (mm3)",
    "Voxels",
)
MAX_PEAKS_WITHOUT_MESH = 20


@dataclass(frozen=True)
class HemisphereMap:
    """One hemisphere's z values, and its mesh when one is available.

    Attributes
    ----------
    hemisphere : str
        ``"L"`` or ``"R"``.
    z_values : ndarray, shape (V,)
        z per vertex; 0 or non-finite where not analysed.
    mesh : Mesh or None
        The mesh the values live on (same vertex count).
    """

    hemisphere: str
    z_values: np.ndarray
    mesh: Mesh | None = None

    @property
    def analysed(self) -> np.ndarray:
        """Vertices with a finite, non-zero z (the others were left out of the fit)."""
        return np.isfinite(self.z_values) & (self.z_values != 0)


def threshold_surface(
    hemispheres: Sequence[HemisphereMap],
    height_control: str = "fpr",
    alpha: float = 0.001,
    cluster_extent: int = 0,
    threshold_none: float = 3.09,
    other_z: np.ndarray | None = None,
) -> tuple[list[np.ndarray], Threshold]:
    """Threshold both hemispheres' z maps by height (over all analysed vertices) and extent.

    ``other_z``: z values of other analysed elements tested with them (a CIFTI map's
    voxels), which count for FDR and Bonferroni.

    Returns
    -------
    thresholded : list of ndarray
        Per hemisphere, z where it passes (0 elsewhere). The cluster extent applies to
        hemispheres with a mesh only (without one, clusters are unknown).
    threshold : Threshold
        What was applied.
    """
    check_cluster_extent(cluster_extent)
    extra = [] if other_z is None else [np.ravel(other_z)]
    analysed = np.concatenate([h.z_values[h.analysed] for h in hemispheres] + extra)
    z_threshold = height_threshold(analysed, height_control, alpha, threshold_none)
    thresholded = apply_surface_threshold(hemispheres, z_threshold, cluster_extent)
    applied = Threshold(height_control, float(alpha), int(cluster_extent), float(z_threshold))
    return thresholded, applied


def apply_surface_threshold(
    hemispheres: Sequence[HemisphereMap], z_threshold: float, cluster_extent: int = 0
) -> list[np.ndarray]:
    """Per hemisphere, z where it reaches ``z_threshold`` in a large enough cluster, else 0.

    The cluster extent (vertices) applies to hemispheres with a mesh only.
    """
    thresholded = []
    for hemi in hemispheres:
        values = np.where(hemi.analysed & (hemi.z_values >= z_threshold), hemi.z_values, 0.0)
        if hemi.mesh is not None and cluster_extent > 0:
            labels = _cluster_labels(hemi.mesh, values > 0)
            sizes = np.bincount(labels[labels >= 0], minlength=1)
            values[(labels >= 0) & (sizes[np.maximum(labels, 0)] < cluster_extent)] = 0.0
        thresholded.append(values)
    return thresholded


def mesh_adjacency(mesh: Mesh) -> sparse.csr_matrix:
    """Symmetric (V, V) vertex adjacency of ``mesh`` (1 for an edge, no diagonal)."""
    edges = mesh.edges()
    ones = np.ones(2 * len(edges))
    rows = np.concatenate([edges[:, 0], edges[:, 1]])
    cols = np.concatenate([edges[:, 1], edges[:, 0]])
    return sparse.csr_matrix((ones, (rows, cols)), shape=(mesh.n_vertices,) * 2)


def _cluster_labels(mesh: Mesh, above: np.ndarray) -> np.ndarray:
    """Connected components of the ``above`` vertices along the mesh's edges (-1 elsewhere)."""
    labels = np.full(above.shape, -1, dtype=np.int64)
    if not above.any():
        return labels
    inside = np.flatnonzero(above)
    graph = mesh_adjacency(mesh)[inside][:, inside]
    _, components = csgraph.connected_components(graph, directed=False)
    labels[inside] = components
    return labels


def surface_cluster_table(thresholded: Sequence[np.ndarray], hemispheres: Sequence[HemisphereMap]):
    """The peak vertex of each cluster of thresholded maps, both hemispheres, highest first.

    Parameters
    ----------
    thresholded : sequence of ndarray
        Per hemisphere, z where it passes and 0 elsewhere (:func:`threshold_surface`).
    hemispheres : sequence of HemisphereMap
        The hemispheres (their meshes give clusters, coordinates and areas).

    Returns
    -------
    pandas.DataFrame
        Columns ``SURFACE_TABLE_COLUMNS``: a cluster's ID (``"1"``, ``"2"``, ... by
        decreasing peak), hemisphere, peak vertex (index in its hemisphere's mesh), the
        vertex's mesh coordinates in mm, peak z, and size in vertices and mm^2. Without a
        mesh, one row per suprathreshold vertex (the highest :data:`MAX_PEAKS_WITHOUT_MESH`),
        coordinates and sizes missing.
    """
    rows = []
    for values, hemi in zip(thresholded, hemispheres, strict=True):
        rows += _hemisphere_rows(np.asarray(values, dtype=np.float64), hemi)
    rows.sort(key=lambda row: -row["Peak Stat"])
    for number, row in enumerate(rows, start=1):
        row["Cluster ID"] = str(number)
    table = pd.DataFrame(rows, columns=list(SURFACE_TABLE_COLUMNS))
    return table.astype({"Vertex": "Int64", "Cluster Size (vertices)": "Int64"})


def _hemisphere_rows(values: np.ndarray, hemi: HemisphereMap) -> list[dict]:
    if hemi.mesh is None:
        order = np.argsort(-values, kind="stable")[:MAX_PEAKS_WITHOUT_MESH]
        return [
            _row(hemi.hemisphere, int(v), values[v], None, None, None)
            for v in order
            if values[v] > 0
        ]
    labels = _cluster_labels(hemi.mesh, values > 0)
    areas_mm2 = hemi.mesh.vertex_areas_mm2()
    rows = []
    for label in range(labels.max() + 1):
        members = np.flatnonzero(labels == label)
        peak = int(members[np.argmax(values[members])])
        area_mm2 = float(areas_mm2[members].sum())
        rows.append(
            _row(
                hemi.hemisphere,
                peak,
                values[peak],
                hemi.mesh.vertices_mm[peak],
                members.size,
                area_mm2,
            )
        )
    return rows


def _row(hemisphere, vertex, peak, xyz_mm, n_vertices, area_mm2) -> dict:
    x, y, z = (np.nan, np.nan, np.nan) if xyz_mm is None else (float(c) for c in xyz_mm)
    return {
        "Cluster ID": "",
        "Hemisphere": hemisphere,
        "Vertex": vertex,
        "X": x,
        "Y": y,
        "Z": z,
        "Peak Stat": float(peak),
        "Cluster Size (vertices)": n_vertices,
        "Cluster Size (mm2)": np.nan if area_mm2 is None else area_mm2,
    }


def mesh_cluster_table(
    cortex: Mapping[str, np.ndarray],
    meshes: Mapping[str, Mesh],
    z_threshold: float,
    cluster_extent: int = 0,
) -> pd.DataFrame:
    """The cluster table of a map on the cortex, thresholded at ``z_threshold``.

    Parameters
    ----------
    cortex : mapping of str to ndarray
        Hemisphere (``"L"``, ``"R"``) -> z over its whole mesh (0 where not analysed).
    meshes : mapping of str to Mesh
        Each hemisphere's mesh (same vertex count).
    z_threshold : float
        The height threshold.
    cluster_extent : int
        Smallest cluster kept, in vertices.

    Returns
    -------
    pandas.DataFrame
        As :func:`surface_cluster_table`.
    """
    hemispheres = [HemisphereMap(hemi, z, meshes[hemi]) for hemi, z in cortex.items()]
    thresholded = apply_surface_threshold(hemispheres, z_threshold, cluster_extent)
    return surface_cluster_table(thresholded, hemispheres)


def structure_peak_table(structures, z_threshold: float) -> pd.DataFrame:
    """One row per CIFTI voxel structure: its peak voxel and how much of it passes.

    Parameters
    ----------
    structures : iterable of (name, z_values, voxels_ijk, affine)
        Each structure's z per voxel (n,), voxel indices (n, 3) and voxel-to-mm affine.
    z_threshold : float
        The height threshold (the map's, from :func:`threshold_surface`).

    Returns
    -------
    pandas.DataFrame
        Columns ``STRUCTURE_TABLE_COLUMNS``, by decreasing peak z: the peak voxel's
        coordinates in mm, its z, the voxels with z above the threshold and their volume.
    """
    rows = []
    for name, z_values, voxels_ijk, affine in structures:
        z_values = np.where(np.isfinite(z_values), z_values, 0.0)
        if z_values.size == 0:
            continue
        peak = int(np.argmax(z_values))
        affine = np.asarray(affine, dtype=np.float64)
        x, y, z = affine[:3, :3] @ np.asarray(voxels_ijk[peak], float) + affine[:3, 3]
        above = int((z_values > z_threshold).sum())
        voxel_mm3 = abs(float(np.linalg.det(affine[:3, :3])))
        rows.append(
            {
                "Structure": name,
                "X": x,
                "Y": y,
                "Z": z,
                "Peak Stat": float(z_values[peak]),
                "Voxels Above": above,
                "Volume Above (mm3)": above * voxel_mm3,
                "Voxels": int(z_values.size),
            }
        )
    rows.sort(key=lambda row: -row["Peak Stat"])
    return pd.DataFrame(rows, columns=list(STRUCTURE_TABLE_COLUMNS))
