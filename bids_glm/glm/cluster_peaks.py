"""Clusters of a thresholded map and their peaks: labels, local maxima, subpeaks.

The peak rules are nilearn 0.14's ``get_clusters_table`` (see :mod:`bids_glm.glm.clusters`,
which tabulates what these helpers find):
local maxima within a cluster over its 3x3x3 neighbourhood, plateaus reduced to their
value-weighted centre (snapped back into the plateau), subpeaks kept only farther than a
minimum distance from every higher peak of their cluster.
"""

from __future__ import annotations

import numpy as np

from bids_glm.glm.voxel_sets import VoxelSet, face_components

Cluster = tuple[int, np.ndarray, np.ndarray]  # size in voxels, peaks' (n, 3) indices, values


def signed_clusters(
    candidates: VoxelSet,
    values: np.ndarray,
    z_threshold: float,
    cluster_extent: int,
    affine: np.ndarray,
    min_distance_mm: float,
    max_peaks: int,
) -> list[Cluster]:
    """Clusters of the voxels with ``values > z_threshold``, by decreasing peak.

    Parameters
    ----------
    candidates : VoxelSet
        The voxels with ``values >= z_threshold`` and ``values > 0`` (finite); every other
        voxel of the grid counts as 0.
    values : numpy.ndarray
        Their values (z, or -z for negative clusters), shape (candidates.size,).
    z_threshold : float
        Cluster-forming threshold.
    cluster_extent : int
        Face-connected groups of candidates with fewer voxels are left out first (a
        voxel exactly at the threshold counts towards its group's size, as when a
        thresholded map is cleaned of small clusters).
    affine : numpy.ndarray
        The grid's 4x4 voxel-to-mm affine (for peak distances).
    min_distance_mm : float
        A peak closer than this to a higher peak of its cluster is dropped.
    max_peaks : int
        At most this many peaks per cluster (its highest and the subpeaks after it).

    Returns
    -------
    list of tuple
        Per cluster, by decreasing peak (ties: the cluster whose first voxel comes first in
        C order): ``(size in voxels, (n, 3) peak indices, (n,) peak values)``, peaks sorted
        by decreasing value and pared by distance.
    """
    beyond = values > z_threshold
    if cluster_extent > 0:
        groups, _ = face_components(candidates)
        beyond &= np.bincount(groups)[groups] >= cluster_extent
    voxels, values = candidates.subset(beyond), values[beyond]
    labels, n_clusters = face_components(voxels)
    if n_clusters == 0:
        return []
    sizes = np.bincount(labels, minlength=n_clusters + 1)
    is_max = _maxima_among(voxels, labels, values)
    peaks_ijk, peak_cluster, peak_values = _plateau_peaks(
        voxels.subset(is_max), labels[is_max], values[is_max]
    )
    cluster_peaks = np.full(n_clusters + 1, -np.inf)
    np.maximum.at(cluster_peaks, labels, values)
    by_cluster = np.argsort(peak_cluster, kind="stable")
    starts = np.searchsorted(peak_cluster[by_cluster], np.arange(n_clusters + 2))
    clusters = []
    for cluster_id in np.argsort(-cluster_peaks[1:], kind="stable") + 1:
        own = by_cluster[starts[cluster_id] : starts[cluster_id + 1]]
        if own.size > 1:  # most clusters of a noisy map have one peak: nothing to order
            own = own[np.argsort(-peak_values[own], kind="stable")]
            xyz_mm = apply_affine(affine, peaks_ijk[own])
            own = own[_distant_peaks(xyz_mm, min_distance_mm, max_peaks)]
        clusters.append((int(sizes[cluster_id]), peaks_ijk[own], peak_values[own]))
    return clusters


def _plateau_peaks(
    maxima: VoxelSet, labels: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One peak per plateau of local maxima (face-connected maxima, numbered by their first
    voxel): its value-weighted centre, rounded and snapped back into the plateau. Returns
    the peaks' indices (n, 3), cluster labels and values.

    Maxima rarely touch (on noisy maps, never): then each is its own plateau and its own
    centre.
    """
    plateaus, n_plateaus = face_components(maxima)
    if n_plateaus == maxima.size:
        return maxima.ijk, labels, values
    weights = values.astype(np.float64)
    total = np.bincount(plateaus, weights, minlength=n_plateaus + 1)[1:]
    centres = np.stack(
        [
            np.bincount(plateaus, weights * axis, minlength=n_plateaus + 1)[1:] / total
            for axis in maxima.ijk.T
        ],
        axis=1,
    )
    peaks = _snap_into_plateaus(np.round(centres).astype(np.intp), maxima, plateaus)
    return maxima.ijk[peaks], labels[peaks], values[peaks]


def cluster_local_maxima(cluster_values: np.ndarray, cluster_labels: np.ndarray) -> np.ndarray:
    """Voxels that equal the maximum of their 3x3x3 neighbourhood within their cluster.

    Flat neighbourhoods (maximum == minimum) are not maxima, unless the whole
    cluster is constant (e.g. a binary map). A neighbour outside the voxel's cluster counts
    as 0; beyond the array's faces the neighbourhood is reflected (``scipy.ndimage``'s
    default). Only the clusters' voxels are visited (26 neighbour lookups each).

    Parameters
    ----------
    cluster_values : numpy.ndarray
        3D values (those outside clusters are not read).
    cluster_labels : numpy.ndarray
        3D integer cluster labels of the same shape (0 = no cluster).

    Returns
    -------
    numpy.ndarray
        Boolean 3D array, True at local maxima.
    """
    voxels = VoxelSet(cluster_labels.shape, np.flatnonzero(cluster_labels))
    at = tuple(voxels.ijk.T)
    is_max = _maxima_among(voxels, cluster_labels[at], cluster_values[at])
    maxima = np.zeros(cluster_labels.shape, dtype=bool)
    maxima[tuple(voxels.ijk[is_max].T)] = True
    return maxima


def _maxima_among(voxels: VoxelSet, labels: np.ndarray, values: np.ndarray) -> np.ndarray:
    """`cluster_local_maxima` of the clusters ``labels`` (positive integers) of ``voxels``
    with ``values``: a boolean per voxel."""
    highest, lowest = values.copy(), values.copy()
    for at in voxels.neighbourhood():
        own = np.where((at >= 0) & (labels[at] == labels), values[at], 0.0)
        np.maximum(highest, own, out=highest)
        np.minimum(lowest, own, out=lowest)
    n_clusters = int(labels.max(initial=0))
    cluster_max = np.full(n_clusters + 1, -np.inf)
    cluster_min = np.full(n_clusters + 1, np.inf)
    np.maximum.at(cluster_max, labels, values)
    np.minimum.at(cluster_min, labels, values)
    flat_cluster = np.isclose(cluster_max, cluster_min)[labels]
    return (values == highest) & (flat_cluster | (highest - lowest > 0))


def _snap_into_plateaus(ijk: np.ndarray, maxima: VoxelSet, plateaus: np.ndarray) -> np.ndarray:
    """Positions in ``maxima`` of the rounded centres ``ijk`` (one per plateau, in plateau
    order); a centre that left its plateau moves to the plateau's nearest voxel (the first
    in C order among equally near ones)."""
    plateau_ids = np.arange(1, len(ijk) + 1)
    at = maxima.find(ijk @ maxima.strides)
    outside = (at < 0) | (plateaus[at] != plateau_ids)
    for row in np.flatnonzero(outside):
        candidates = np.flatnonzero(plateaus == plateau_ids[row])
        distances = np.linalg.norm(maxima.ijk[candidates] - ijk[row], axis=1)
        at[row] = candidates[np.argmin(distances)]
    return at


def _distant_peaks(peaks_xyz_mm: np.ndarray, min_distance_mm: float, max_peaks: int) -> np.ndarray:
    """Greedy selection (peaks sorted by value): the positions of the first ``max_peaks``
    peaks each farther than the minimum distance from every peak kept before it. (A low
    threshold makes clusters of thousands of peaks: no distance matrix is formed.)"""
    kept: list[int] = []
    for i, xyz in enumerate(peaks_xyz_mm):
        if not np.any(np.linalg.norm(peaks_xyz_mm[kept] - xyz, axis=1) <= min_distance_mm):
            kept.append(i)
            if len(kept) == max_peaks:
                break
    return np.array(kept, dtype=np.intp)


def apply_affine(affine: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    """Millimetre coordinates of voxel indices ``ijk`` (n, 3) under a 4x4 affine."""
    return ijk @ affine[:3, :3].T + affine[:3, 3]
