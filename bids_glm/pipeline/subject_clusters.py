"""A participant-level contrast's cluster table: its height threshold, clusters, files.

Volumes get clusters of face-connected voxels, found from the analysed voxels' values
(:func:`bids_glm.glm.clusters.cluster_table_of_voxels`: no volume is formed);
surfaces and CIFTI cortex get clusters along the unit's meshes, when it has them
(:func:`bids_glm.pipeline.surface_tables.surface_cluster_table`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bids_glm.derivatives import maps as outputs
from bids_glm.design.run_design import ContrastPlan
from bids_glm.glm.clusters import cluster_table_of_voxels
from bids_glm.glm.thresholding import height_threshold
from bids_glm.image.geometry import VolumeGeometry
from bids_glm.pipeline.surface_tables import surface_cluster_table
from bids_glm.settings import Settings


def write_subject_clusters(
    target: outputs.MapTarget, plan: ContrastPlan, z_values: np.ndarray, settings: Settings
) -> None:
    """Threshold a subject-level z map as the settings ask and write its cluster table.

    Parameters
    ----------
    target : MapTarget
        Where the contrast's subject-level maps are written (geometry, valid locations).
    plan : ContrastPlan
        The contrast.
    z_values : ndarray, shape (target.geometry.n_values,)
        Its z map; locations not valid are ignored.
    settings : Settings
        Height control, alpha and cluster extent.
    """
    z_threshold = height_threshold(
        z_values[target.valid],
        settings.height_control,
        settings.alpha,
        threshold_none=settings.alpha,
    )
    z_valid = np.where(target.valid, z_values, 0.0)
    if not isinstance(target.geometry, VolumeGeometry):  # clusters along the meshes, if any
        table = surface_cluster_table(
            target.geometry, z_valid, z_threshold, settings.cluster_extent
        )
        if table is not None:
            outputs.write_cluster_table(target, plan, table, z_threshold, settings, on_mesh=True)
        return
    table = volume_cluster_table(target.geometry, z_valid, z_threshold, settings.cluster_extent)
    outputs.write_cluster_table(target, plan, table, z_threshold, settings)


def volume_cluster_table(
    geometry: VolumeGeometry, z_values: np.ndarray, z_threshold: float, cluster_extent: int
) -> pd.DataFrame:
    """The cluster table of a volume geometry's z values (no volume is formed)."""
    return cluster_table_of_voxels(
        z_values,
        geometry.flat_indices(),
        geometry.shape,
        geometry.affine,
        z_threshold,
        cluster_extent,
    )
