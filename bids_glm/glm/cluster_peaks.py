"""Clusters of a thresholded map and their peaks: labels, local maxima, subpeaks.

The peak rules are nilearn 0.14's ``get_clusters_table`` (see :mod:`bids_glm.glm.clusters`,
which tabulates what these helpers find):
local maxima within a cluster over its 3x3x3 neighbourhood, plateaus reduced to their
value-weighted centre (snapped back into the plateau), subpeaks kept only farther than a
minimum distance from every higher peak of their cluster.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

FACES = ndimage.generate_binary_structure(3, 1)  # face connectivity (6 neighbours), as nilearn


def signed_clusters(
    signed: np.ndarray,
    z_threshold: float,
    affine: np.ndarray,
    min_distance_mm: float,
    origin: np.ndarray,
) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Clusters of ``signed > z_threshold``, by decreasing peak.

    Parameters
    ----------
    signed : numpy.ndarray
        3D values (z, or -z for negative clusters): the part of a volume that starts
        at voxel ``origin``.
    z_threshold : float
        Cluster-forming threshold.
    affine : numpy.ndarray
        The whole volume's 4x4 voxel-to-mm affine (for peak distances).
    min_distance_mm : float
        A peak closer than this to a higher peak of its cluster is dropped.
    origin : numpy.ndarray
        Voxel index (3,) of ``signed[0, 0, 0]`` in the whole volume.

    Returns
    -------
    list of tuple
        Per cluster, by decreasing peak: ``(size in voxels, (n, 3) peak indices in the
        whole volume, (n,) peak values)``, peaks sorted by decreasing value and pared by
        distance.
    """
    cluster_labels, n_clusters = ndimage.label(signed > z_threshold, FACES)
    if n_clusters == 0:
        return []
    cluster_ids = np.arange(1, n_clusters + 1)
    sizes = np.bincount(cluster_labels.ravel(), minlength=n_clusters + 1)
    cluster_values = np.where(cluster_labels > 0, signed, 0)
    maxima = cluster_local_maxima(cluster_values, cluster_labels)
    plateaus, n_plateaus = ndimage.label(maxima, FACES)
    plateau_ids = np.arange(1, n_plateaus + 1)
    # centres in the whole volume's voxel indices, so that rounding does not depend on the crop
    centres = _weighted_centres(cluster_values, plateaus, n_plateaus, origin)
    rounded = np.round(centres).astype(int) - origin
    peaks_ijk = _snap_into_plateaus(rounded, plateaus, plateau_ids)
    peak_values = cluster_values[tuple(peaks_ijk.T)]
    peak_cluster = cluster_labels[tuple(peaks_ijk.T)]
    peaks_ijk = peaks_ijk + origin

    in_cluster = cluster_labels > 0
    cluster_peaks = np.full(n_clusters + 1, -np.inf)
    np.maximum.at(cluster_peaks, cluster_labels[in_cluster], cluster_values[in_cluster])
    by_cluster = np.argsort(peak_cluster, kind="stable")
    starts = np.searchsorted(peak_cluster[by_cluster], np.arange(n_clusters + 2))
    clusters = []
    for cluster_id in cluster_ids[np.argsort(-cluster_peaks[1:], kind="stable")]:
        own = by_cluster[starts[cluster_id] : starts[cluster_id + 1]]
        ijk, values = peaks_ijk[own], peak_values[own]
        order = np.argsort(-values)
        ijk, values = ijk[order], values[order]
        keep = _distant_peaks(apply_affine(affine, ijk), min_distance_mm)
        clusters.append((int(sizes[cluster_id]), ijk[keep], values[keep]))
    return clusters


def _weighted_centres(
    values: np.ndarray, labels: np.ndarray, n_labels: int, origin: np.ndarray
) -> np.ndarray:
    """Value-weighted centre of each label ``1..n_labels``: (n_labels, 3), in the voxel
    indices of an array of which ``values`` starts at index ``origin``."""
    ijk = np.nonzero(labels)
    label_of = labels[ijk]
    weights = values[ijk].astype(np.float64)
    total = np.bincount(label_of, weights, minlength=n_labels + 1)[1:]
    return np.stack(
        [
            np.bincount(label_of, weights * (axis + start), minlength=n_labels + 1)[1:] / total
            for axis, start in zip(ijk, origin, strict=True)
        ],
        axis=1,
    )


def cluster_local_maxima(cluster_values: np.ndarray, cluster_labels: np.ndarray) -> np.ndarray:
    """Voxels that equal the maximum of their 3x3x3 neighbourhood within their cluster.

    Flat neighbourhoods (maximum == minimum) are not maxima, unless the whole
    cluster is constant (e.g. a binary map). A neighbour outside the voxel's cluster counts
    as 0; beyond the array's faces the neighbourhood is reflected (``scipy.ndimage``'s
    default). Only the clusters' voxels are visited (26 neighbour gathers each).

    Parameters
    ----------
    cluster_values : numpy.ndarray
        3D values, 0 outside clusters.
    cluster_labels : numpy.ndarray
        3D integer cluster labels of the same shape (0 = no cluster).

    Returns
    -------
    numpy.ndarray
        Boolean 3D array, True at local maxima.
    """
    inside = cluster_labels > 0
    ijk = np.nonzero(inside)
    labels_in, values_in = cluster_labels[ijk], cluster_values[ijk]
    highest, lowest = values_in.copy(), values_in.copy()
    last = [n - 1 for n in cluster_labels.shape]
    for offset in np.ndindex(3, 3, 3):
        if offset == (1, 1, 1):
            continue
        neighbour = tuple(
            np.clip(axis + step - 1, 0, end)
            for axis, step, end in zip(ijk, offset, last, strict=True)
        )
        own = np.where(cluster_labels[neighbour] == labels_in, cluster_values[neighbour], 0.0)
        np.maximum(highest, own, out=highest)
        np.minimum(lowest, own, out=lowest)
    n_clusters = int(labels_in.max(initial=0))
    cluster_max = np.full(n_clusters + 1, -np.inf)
    cluster_min = np.full(n_clusters + 1, np.inf)
    np.maximum.at(cluster_max, labels_in, values_in)
    np.minimum.at(cluster_min, labels_in, values_in)
    flat_cluster = np.isclose(cluster_max, cluster_min)[labels_in]
    is_max = (values_in == highest) & (flat_cluster | (highest - lowest > 0))
    maxima = np.zeros(cluster_labels.shape, dtype=bool)
    maxima[tuple(axis[is_max] for axis in ijk)] = True
    return maxima


def _snap_into_plateaus(
    ijk: np.ndarray, plateaus: np.ndarray, plateau_ids: np.ndarray
) -> np.ndarray:
    """Move each rounded centre that left its plateau to the plateau's nearest voxel."""
    outside = plateaus[tuple(ijk.T)] != plateau_ids
    if not outside.any():
        return ijk
    ijk = ijk.copy()
    plateau_voxels = np.argwhere(plateaus > 0)
    voxel_plateau = plateaus[tuple(plateau_voxels.T)]
    for row in np.flatnonzero(outside):
        candidates = plateau_voxels[voxel_plateau == plateau_ids[row]]
        distances = np.linalg.norm(candidates - ijk[row], axis=1)
        ijk[row] = candidates[np.argmin(distances)]
    return ijk


def _distant_peaks(peaks_xyz_mm: np.ndarray, min_distance_mm: float) -> np.ndarray:
    """Greedy selection (peaks sorted by value): keep a peak farther than the
    minimum distance from every peak already kept."""
    distances = np.linalg.norm(peaks_xyz_mm[:, None, :] - peaks_xyz_mm[None, :, :], axis=-1)
    keep = np.zeros(len(peaks_xyz_mm), dtype=bool)
    for i in range(len(peaks_xyz_mm)):
        keep[i] = not np.any(distances[i, keep] <= min_distance_mm)
    return keep


def apply_affine(affine: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    """Millimetre coordinates of voxel indices ``ijk`` (n, 3) under a 4x4 affine."""
    return ijk @ affine[:3, :3].T + affine[:3, 3]
