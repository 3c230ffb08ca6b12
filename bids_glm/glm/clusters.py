"""Cluster tables of z maps: each cluster's peak, subpeaks and size.

Pure functions on arrays, numerically equivalent to nilearn 0.14's
``nilearn.reporting.get_clusters_table`` (see ``tests/test_clusters.py``), with two
deliberate differences:

- every reported subpeak lies more than ``min_distance_mm`` from *every* higher
  (sub)peak of its cluster (nilearn only checks the last one it kept);
- with ``two_sided=True`` negative clusters are numbered right after the positive
  ones (nilearn continues from the number of rows, which leaves gaps).

Clusters are face-connected (6-neighbourhood), like nilearn; their peaks are found by
:mod:`bids_glm.glm.cluster_peaks`, from the voxels beyond the threshold alone
(:mod:`bids_glm.glm.voxel_sets`). The height threshold that forms them comes from
:mod:`bids_glm.glm.thresholding`. Non-finite z values are treated as 0.
"""

from __future__ import annotations

from string import ascii_lowercase

import numpy as np
import pandas as pd

from bids_glm.glm.cluster_peaks import Cluster, apply_affine, signed_clusters
from bids_glm.glm.thresholding import (
    as_volume,
    check_cluster_extent,
    check_non_negative_threshold,
)
from bids_glm.glm.voxel_sets import VoxelSet

CLUSTER_TABLE_COLUMNS = (
    "Cluster ID",
    "X",
    "Y",
    "Z",
    "Peak Stat",
    "Cluster Size (mm3)",
    "Cluster Size (voxels)",
)
CLUSTER_TABLE_DTYPES = {  # the columns' types, also when a written table is read back
    "Cluster ID": str,
    "X": np.float64,
    "Y": np.float64,
    "Z": np.float64,
    "Peak Stat": np.float64,
    "Cluster Size (mm3)": "Int64",
    "Cluster Size (voxels)": "Int64",
}


def cluster_table(
    z_volume: np.ndarray,
    affine: np.ndarray,
    z_threshold: float,
    cluster_extent: int = 0,
    min_distance_mm: float = 8.0,
    max_subpeaks: int = 3,
    two_sided: bool = False,
) -> pd.DataFrame:
    """Tabulate the clusters of a z map: peak, subpeaks and size.

    Parameters
    ----------
    z_volume : numpy.ndarray
        3D z map (already thresholded or not).
    affine : numpy.ndarray
        4x4 voxel-to-mm affine.
    z_threshold : float
        Cluster-forming threshold (non-negative); clusters are voxels with
        ``z > z_threshold`` (and ``z < -z_threshold`` when ``two_sided``).
    cluster_extent : int
        Clusters with fewer voxels are left out.
    min_distance_mm : float
        A subpeak is reported only if it is more than this far from every
        higher-ranked (sub)peak of its cluster.
    max_subpeaks : int
        At most this many subpeaks per cluster.
    two_sided : bool
        Also tabulate negative clusters (after the positive ones).

    Returns
    -------
    pandas.DataFrame
        Columns ``CLUSTER_TABLE_COLUMNS``; one row per cluster peak (ID ``"1"``,
        ``"2"``, ...; clusters of each sign sorted by decreasing ``|peak|``) followed
        by its subpeaks (``"1a"``, ``"1b"``, ...; sizes missing). Peak coordinates are
        in mm; ``Peak Stat`` keeps the sign of z; ``Cluster Size (mm3)`` is truncated
        to an integer. Empty (with the columns) when no voxel passes.
    """
    z_volume = as_volume(z_volume, "z_volume")
    with np.errstate(invalid="ignore"):
        beyond = (np.abs(z_volume) if two_sided else z_volume) >= z_threshold
    flat = np.flatnonzero(beyond)  # C order, whatever the volume's memory order
    values = z_volume[np.unravel_index(flat, z_volume.shape)]
    options = (cluster_extent, min_distance_mm, max_subpeaks, two_sided)
    return cluster_table_of_voxels(values, flat, z_volume.shape, affine, z_threshold, *options)


def cluster_table_of_voxels(
    z_values: np.ndarray,
    flat_indices: np.ndarray,
    shape: tuple[int, int, int],
    affine: np.ndarray,
    z_threshold: float,
    cluster_extent: int = 0,
    min_distance_mm: float = 8.0,
    max_subpeaks: int = 3,
    two_sided: bool = False,
) -> pd.DataFrame:
    """`cluster_table` of a z map given at some voxels of a grid, 0 at the others.

    Parameters
    ----------
    z_values : numpy.ndarray, shape (n,)
        z at the voxels ``flat_indices``.
    flat_indices : numpy.ndarray of int, shape (n,)
        Their flat indices in the grid's C order, increasing (e.g. a mask's voxels).
    shape : tuple of int
        The grid's shape (3 axes).
    affine, z_threshold, cluster_extent, min_distance_mm, max_subpeaks, two_sided
        As for `cluster_table`.

    Returns
    -------
    pandas.DataFrame
        The table `cluster_table` gives for the volume holding these values.
    """
    z_values = np.asarray(z_values)
    if z_values.shape != np.shape(flat_indices) or z_values.ndim != 1 or len(shape) != 3:
        raise ValueError(
            f"z_values and flat_indices must be 1-D of the same length on a 3-D grid; got "
            f"shapes {z_values.shape} and {np.shape(flat_indices)}, grid {tuple(shape)}"
        )
    affine = np.asarray(affine, dtype=np.float64)
    _check_table_arguments(affine, z_threshold, cluster_extent, min_distance_mm, max_subpeaks)
    with np.errstate(invalid="ignore"):
        beyond = (np.abs(z_values) if two_sided else z_values) >= z_threshold
    flat = np.asarray(flat_indices, dtype=np.intp)[beyond]
    if np.any(np.diff(flat) <= 0):
        raise ValueError("flat_indices must be increasing (voxels in the grid's C order)")
    values = z_values[beyond]
    usable = np.isfinite(values) & (values != 0)  # non-finite z counts as 0
    voxels, values = VoxelSet(tuple(int(n) for n in shape), flat[usable]), values[usable]
    found = []
    for sign in (1, -1) if two_sided else (1,):
        signed = values * sign
        tail = signed > 0
        clusters = signed_clusters(
            voxels.subset(tail),
            signed[tail],
            z_threshold,
            cluster_extent,
            affine,
            min_distance_mm,
            int(max_subpeaks) + 1,
        )
        found += [(sign, cluster) for cluster in clusters]
    voxel_volume_mm3 = float(np.prod(np.linalg.norm(affine[:3, :3], axis=0)))
    return _table(found, affine, voxel_volume_mm3, int(max_subpeaks))


def _table(
    found: list[tuple[int, Cluster]],
    affine: np.ndarray,
    voxel_volume_mm3: float,
    max_subpeaks: int,
) -> pd.DataFrame:
    """The table of clusters ``(sign, (size, peaks_ijk, peak_values))``, numbered in order:
    per cluster its peak (ID ``"<number>"``, with the sizes), then up to ``max_subpeaks``
    subpeaks (``"<number>a"``, ...; sizes missing). Built column by column."""
    ids, peaks_ijk, peak_stats, sizes, is_peak = [], [], [], [], []
    for number, (sign, (size_voxels, ijk, values)) in enumerate(found, start=1):
        n_rows = min(len(values), max_subpeaks + 1)
        ids += [str(number)] + [f"{number}{letter}" for letter in ascii_lowercase[: n_rows - 1]]
        peaks_ijk.append(ijk[:n_rows])
        peak_stats.append(np.asarray(values[:n_rows], dtype=np.float64) * sign)
        sizes += [size_voxels] + [0] * (n_rows - 1)
        is_peak += [True] + [False] * (n_rows - 1)
    if not found:
        return pd.DataFrame(columns=list(CLUSTER_TABLE_COLUMNS)).astype(CLUSTER_TABLE_DTYPES)
    xyz = apply_affine(affine, np.concatenate(peaks_ijk))
    sizes_voxels = np.array(sizes, dtype=np.int64)
    missing = ~np.array(is_peak)
    columns = {
        "Cluster ID": np.array(ids, dtype=object),
        "X": xyz[:, 0],
        "Y": xyz[:, 1],
        "Z": xyz[:, 2],
        "Peak Stat": np.concatenate(peak_stats),
        "Cluster Size (mm3)": pd.arrays.IntegerArray(
            (sizes_voxels * voxel_volume_mm3).astype(np.int64), missing
        ),
        "Cluster Size (voxels)": pd.arrays.IntegerArray(sizes_voxels, missing.copy()),
    }
    return pd.DataFrame(columns)


def _check_table_arguments(
    affine: np.ndarray,
    z_threshold: float,
    cluster_extent: int,
    min_distance_mm: float,
    max_subpeaks: int,
) -> None:
    if affine.shape != (4, 4):
        raise ValueError(f"affine must be a 4x4 array; got shape {affine.shape}")
    check_non_negative_threshold(z_threshold)
    check_cluster_extent(cluster_extent)
    if not min_distance_mm > 0:
        raise ValueError(f"min_distance_mm must be positive; got {min_distance_mm}")
    if max_subpeaks < 0 or int(max_subpeaks) != max_subpeaks:
        raise ValueError(f"max_subpeaks must be a non-negative integer; got {max_subpeaks}")
    if max_subpeaks > len(ascii_lowercase):
        raise ValueError(
            f"max_subpeaks must be at most 26 (subpeaks are lettered); got {max_subpeaks}"
        )
