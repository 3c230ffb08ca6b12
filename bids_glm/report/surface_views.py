"""A surface contrast's section: GIfTI hemisphere pairs and CIFTI grayordinate z maps.

The counterpart of :func:`bids_glm.report.views.contrast_view` for maps on the cortex. The
z maps are read from their files, thresholded and tabulated by
:mod:`bids_glm.glm.surface_clusters` (clusters along the mesh) and drawn on the
hemispheres' meshes by :mod:`bids_glm.report.surface_figures`. Without a mesh, the table
has no coordinates or areas, and a histogram of z replaces the picture, with a sentence
saying why. A CIFTI map's cortex is drawn on the meshes the manifest records (fsLR 32k),
and each of its voxel structures gets a row of its own in a structure table.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from bids_glm.derivatives import naming
from bids_glm.errors import InputError
from bids_glm.glm.surface_clusters import (
    SURFACE_TABLE_DTYPES,
    HemisphereMap,
    structure_peak_table,
    surface_cluster_table,
    threshold_surface,
)
from bids_glm.image.cifti import grayordinate_parts
from bids_glm.image.map_files import read_map
from bids_glm.image.mesh import Mesh, MeshFiles, read_mesh
from bids_glm.image.surface import load_gifti_series
from bids_glm.report import collect
from bids_glm.report.surface_figures import surface_map_svg, z_histogram_svg
from bids_glm.report.views import (
    MAX_CLUSTERS,
    NOT_RECORDED,
    threshold_words,
    written_cluster_table,
)
from bids_glm.report.views import figure as embed

LOGGER = logging.getLogger("bids_glm")
NO_MESH = (
    "No picture on the cortex: no mid-thickness mesh with as many vertices as the data was "
    "recorded for these data (give --surface-mesh-dir, or a TemplateFlow copy through "
    "TEMPLATEFLOW_HOME, to the participant level); the histogram shows the z values instead."
)
NO_COMMON_MESH = (
    "No picture on the cortex: fsnative surfaces are each participant's own, so a group map "
    "has no common mesh to be drawn on (a template space such as fsaverage5 or fsLR has "
    "one); the histogram shows the z values instead."
)

SURFACE_MASK = "surface data: the analysed vertices are in the mask files beside the maps"


@dataclass(frozen=True)
class GrayordinateMap:
    """A z map on the cortex (all vertices of each hemisphere) and in voxel structures.

    Attributes
    ----------
    cortex : dict of str to ndarray
        Hemisphere (``"L"``, ``"R"``) -> z per vertex of its whole mesh (0 where absent).
    structures : list of (str, ndarray, ndarray, ndarray)
        Voxel structures: name, z per voxel, voxel indices (n, 3), voxel-to-mm affine.
    """

    cortex: dict[str, np.ndarray]
    structures: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]


def read_gifti_pair(paths: tuple[Path, ...]) -> GrayordinateMap:
    """The z maps of a left/right GIfTI pair."""
    return GrayordinateMap(
        {hemi: load_gifti_series(path)[0] for hemi, path in zip("LR", paths, strict=True)}, []
    )


def read_cifti_scalar(path: Path) -> GrayordinateMap:
    """The first map of a CIFTI-2 ``.dscalar.nii``, split by its BrainModelAxis."""
    image = nib.load(str(path))
    axis = image.header.get_axis(1)
    if not isinstance(axis, nib.cifti2.BrainModelAxis):
        raise ValueError(f"{path.name}: its second axis is not a BrainModelAxis")
    values = np.asarray(image.get_fdata(dtype=np.float32))[0]
    return GrayordinateMap(*grayordinate_parts(values, axis))


def _meshes(files: MeshFiles | None, cortex: dict[str, np.ndarray]) -> dict[str, Mesh]:
    """The recorded meshes of the hemispheres present, when their vertex counts fit."""
    if files is None:
        return {}
    meshes = {}
    for hemi, path in zip("LR", files.paths, strict=True):
        if hemi not in cortex:
            continue
        try:
            mesh = read_mesh(path)
        except InputError as error:
            LOGGER.warning("report: %s", error)
            return {}
        if mesh.n_vertices != cortex[hemi].size:
            LOGGER.warning(
                "report: %s has %d vertices, the map %d", path, mesh.n_vertices, cortex[hemi].size
            )
            return {}
        meshes[hemi] = mesh
    return meshes


def surface_contrast_view(
    stat_map: collect.StatMap,
    meshes: MeshFiles | None,
    options,
    heading: str,
    clusters_path: Path | None = None,
    no_mesh: str = NO_MESH,
) -> dict:
    """Threshold one surface z map, tabulate its clusters and draw it (or its histogram).

    The cluster table is the one written at ``clusters_path`` (by the participant level,
    along the meshes) when it was made with the report's threshold, else computed here.
    ``no_mesh``: the sentence saying why there is no picture, when there is none.
    """
    sidecar = stat_map.sidecar
    view = {
        "heading": heading,
        "name": stat_map.name,
        "anchor": stat_map.anchor,
        "test": sidecar.get("Test", NOT_RECORDED),
        "dof": sidecar.get("DegreesOfFreedom", NOT_RECORDED),
        "expression": sidecar.get("ContrastExpression", ""),
        "figures": [],
        "rows": [],
        "surface_rows": [],
        "structure_rows": [],
        "threshold": "",
        "note": "",
        "hidden_clusters": 0,
    }
    try:
        grayordinates = (
            read_gifti_pair(stat_map.surface_paths)
            if stat_map.surface_paths
            else read_cifti_scalar(stat_map.z_path)
        )
    except (OSError, ValueError, InputError, nib.filebasedimages.ImageFileError) as error:
        view["note"] = f"z map {stat_map.z_path.name} unreadable ({error})"
        return view
    on_mesh = _meshes(meshes, grayordinates.cortex)
    hemispheres = [HemisphereMap(h, z, on_mesh.get(h)) for h, z in grayordinates.cortex.items()]
    voxels = [z[np.isfinite(z) & (z != 0)] for _, z, _, _ in grayordinates.structures]
    thresholded, threshold = threshold_surface(
        hemispheres,
        options.height_control,
        options.alpha,
        options.cluster_extent,
        threshold_none=options.alpha,
        other_z=np.concatenate(voxels) if voxels else None,
    )
    n_tests = sum(int(h.analysed.sum()) for h in hemispheres) + sum(v.size for v in voxels)
    view["threshold"] = threshold_words(threshold, n_tests).replace("voxels", "vertices")
    table = _written_table(clusters_path, threshold, hemispheres)
    if table is None:
        table = surface_cluster_table(thresholded, hemispheres)
    view["surface_rows"] = surface_rows(table)[:MAX_CLUSTERS]
    view["hidden_clusters"] = max(len(table) - MAX_CLUSTERS, 0)
    view["structure_rows"] = structure_rows(
        structure_peak_table(grayordinates.structures, threshold.z_threshold)
    )
    view["figures"], view["note"] = _figures(
        stat_map.name, hemispheres, thresholded, threshold.z_threshold, no_mesh
    )
    if table.empty and not view["note"]:
        view["note"] = "No vertex survives the threshold."
    return view


def _written_table(clusters_path: Path | None, threshold, hemispheres) -> pd.DataFrame | None:
    """The participant level's cluster table, when made with ``threshold`` on the meshes
    the report uses (every hemisphere has one); None otherwise."""
    on_meshes = hemispheres and all(h.mesh is not None for h in hemispheres)
    if clusters_path is None or not on_meshes or not np.isfinite(threshold.z_threshold):
        return None
    return written_cluster_table(
        clusters_path, threshold, SURFACE_TABLE_DTYPES, "ClusterExtentVertices"
    )


def _figures(name, hemispheres, thresholded, z_threshold, no_mesh: str) -> tuple[list, str]:
    """The views on the meshes, or the z histogram and why there is no picture (``no_mesh``)."""
    if hemispheres and all(h.mesh is not None for h in hemispheres):
        pairs = [(h.hemisphere, h.mesh) for h in hemispheres]
        drawn = embed(
            surface_map_svg,
            pairs,
            thresholded,
            z_threshold,
            title=name,
            alt=f"{name}: thresholded z on the cortex, lateral and medial views",
            kind="wide",
        )
        return [drawn], ""
    analysed = np.concatenate([h.z_values[h.analysed] for h in hemispheres] or [np.zeros(0)])
    histogram = embed(
        z_histogram_svg,
        analysed,
        z_threshold,
        title=name,
        alt=f"{name}: histogram of z over the analysed vertices",
        kind="half",
    )
    return [histogram], no_mesh


def _cell(value: object, spec: str) -> str:
    return "" if pd.isna(value) else format(value, spec)


def surface_rows(table: pd.DataFrame) -> list[dict]:
    """A surface cluster table as rows of display strings."""
    return [
        {
            "id": row["Cluster ID"],
            "hemi": row["Hemisphere"],
            "vertex": _cell(row["Vertex"], "d"),
            "x": _cell(row["X"], ".1f"),
            "y": _cell(row["Y"], ".1f"),
            "z": _cell(row["Z"], ".1f"),
            "peak": _cell(row["Peak Stat"], ".2f"),
            "vertices": _cell(row["Cluster Size (vertices)"], "d"),
            "mm2": _cell(row["Cluster Size (mm2)"], ".0f"),
        }
        for row in table.to_dict("records")
    ]


def structure_rows(table: pd.DataFrame) -> list[dict]:
    """A CIFTI structure table as rows of display strings."""
    return [
        {
            "structure": row["Structure"],
            "x": _cell(row["X"], ".0f"),
            "y": _cell(row["Y"], ".0f"),
            "z": _cell(row["Z"], ".0f"),
            "peak": _cell(row["Peak Stat"], ".2f"),
            "above": _cell(row["Voxels Above"], "d"),
            "mm3": _cell(row["Volume Above (mm3)"], ".0f"),
            "voxels": _cell(row["Voxels"], "d"),
        }
        for row in table.to_dict("records")
    ]


def surface_unit_facts(unit: collect.UnitRecord) -> dict[str, str]:
    """A surface unit's facts in place of the volume ones: analysed vertices and meshes."""
    mask_size = NOT_RECORDED
    if unit.surface_mask_paths:
        try:
            values, _ = read_map(unit.surface_mask_paths)
        except InputError:
            values = None
        if values is not None:
            where = (
                "grayordinates" if naming.is_cifti_map(unit.surface_mask_paths[0]) else "vertices"
            )
            mask_size = f"{int((values > 0).sum())} of {values.size} {where} analysed"
    meshes = unit.meshes
    return {
        "Voxel size": "none (surface data)",
        "Mask size": mask_size,
        "Meshes": ", ".join(p.name for p in meshes.paths) if meshes else "none recorded",
    }
