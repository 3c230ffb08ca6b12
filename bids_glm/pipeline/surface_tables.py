"""Cluster tables of surface and CIFTI maps, written beside them as volumes' are.

A fixed-effects z map on the cortex gets the clusters of its suprathreshold vertices along
the unit's meshes (:func:`bids_glm.glm.surface_clusters.mesh_cluster_table`); without
meshes there is no adjacency, hence no table (the report then lists peak vertices).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bids_glm.image.cifti import CiftiGeometry
from bids_glm.image.mesh import read_mesh
from bids_glm.image.surface import SurfaceGeometry


def surface_cluster_table(
    geometry: SurfaceGeometry | CiftiGeometry,
    z_values: np.ndarray,
    z_threshold: float,
    cluster_extent: int,
) -> pd.DataFrame | None:
    """The cortex clusters of ``z_values`` (the analysed locations' z, 0 where not valid).

    Returns None when the geometry has no meshes. A CIFTI map's voxel structures are not
    in the table (the report tabulates them per structure).
    """
    if geometry.meshes is None:
        return None
    # deferred: clusters along a mesh (scipy.sparse) load only when a surface is analysed
    from bids_glm.glm.surface_clusters import mesh_cluster_table

    meshes = {"L": read_mesh(geometry.meshes.left), "R": read_mesh(geometry.meshes.right)}
    cortex = geometry.cortex_values(z_values)
    return mesh_cluster_table(cortex, meshes, z_threshold, cluster_extent)
