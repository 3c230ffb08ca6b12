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
    voxels = np.nonzero(cluster_labels)  # every cluster voxel, once, in C order
    labels_in, values_in = cluster_labels[voxels], signed[voxels]
    sizes = np.bincount(labels_in, minlength=n_clusters + 1)
    is_max = _maxima_among(voxels, labels_in, values_in, cluster_labels, signed)
    peaks_ijk, peak_cluster = _plateau_peaks(
        np.stack([axis[is_max] for axis in voxels], axis=1), cluster_labels, signed, origin
    )
    peak_values = signed[tuple(peaks_ijk.T)]
    peaks_ijk = peaks_ijk + origin

    cluster_peaks = np.full(n_clusters + 1, -np.inf)
    np.maximum.at(cluster_peaks, labels_in, values_in)
    by_cluster = np.argsort(peak_cluster, kind="stable")
    starts = np.searchsorted(peak_cluster[by_cluster], np.arange(n_clusters + 2))
    clusters = []
    for cluster_id in np.argsort(-cluster_peaks[1:], kind="stable") + 1:
        own = by_cluster[starts[cluster_id] : starts[cluster_id + 1]]
        if own.size > 1:  # most clusters of a noisy map have one peak: nothing to order
            own = own[np.argsort(-peak_values[own])]
            own = own[_distant_peaks(apply_affine(affine, peaks_ijk[own]), min_distance_mm)]
        clusters.append((int(sizes[cluster_id]), peaks_ijk[own], peak_values[own]))
    return clusters


def _flat_view(values: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int]]:
    """A 1-D view of a 3D array (a copy unless it is C- or Fortran-contiguous) and the
    steps of its three axes in it."""
    n_x, n_y, n_z = values.shape
    if values.flags.f_contiguous and not values.flags.c_contiguous:
        return values.ravel(order="F"), (1, n_x, n_x * n_y)
    return values.ravel(), (n_y * n_z, n_z, 1)


def _plateau_peaks(
    maxima_ijk: np.ndarray, labels: np.ndarray, values: np.ndarray, origin: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One peak per plateau of local maxima (face-connected maxima; numbered as
    ``ndimage.label`` numbers them): its value-weighted centre, rounded in the whole volume's
    voxel indices and snapped back into the plateau. Returns the peaks' indices (n, 3) in
    ``values`` and their cluster labels.

    Maxima rarely touch (on noisy maps, never): then each is its own plateau and its own
    centre, and no labelling pass over the volume is needed.
    """
    maxima = np.zeros(labels.shape, dtype=bool)
    maxima[tuple(maxima_ijk.T)] = True
    if not _any_face_neighbours(maxima_ijk, maxima):
        return maxima_ijk, labels[tuple(maxima_ijk.T)]
    plateaus, n_plateaus = ndimage.label(maxima, FACES)
    plateau_ids = np.arange(1, n_plateaus + 1)
    # centres in the whole volume's voxel indices, so that rounding does not depend on the crop
    centres = _weighted_centres(values, plateaus, n_plateaus, origin)
    rounded = np.round(centres).astype(int) - origin
    peaks_ijk = _snap_into_plateaus(rounded, plateaus, plateau_ids)
    return peaks_ijk, labels[tuple(peaks_ijk.T)]


def _any_face_neighbours(ijk: np.ndarray, marked: np.ndarray) -> bool:
    """Whether any of the voxels ``ijk`` (n, 3) has a face neighbour marked in ``marked``."""
    for axis, length in enumerate(marked.shape):
        for step in (-1, 1):
            moved = ijk.copy()
            moved[:, axis] += step
            inside = (moved[:, axis] >= 0) & (moved[:, axis] < length)
            if marked[tuple(moved[inside].T)].any():
                return True
    return False


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
        3D values (those outside clusters are not read).
    cluster_labels : numpy.ndarray
        3D integer cluster labels of the same shape (0 = no cluster).

    Returns
    -------
    numpy.ndarray
        Boolean 3D array, True at local maxima.
    """
    voxels = np.nonzero(cluster_labels)
    labels_in, values_in = cluster_labels[voxels], cluster_values[voxels]
    is_max = _maxima_among(voxels, labels_in, values_in, cluster_labels, cluster_values)
    maxima = np.zeros(cluster_labels.shape, dtype=bool)
    maxima[tuple(axis[is_max] for axis in voxels)] = True
    return maxima


def _maxima_among(
    voxels: tuple[np.ndarray, ...],
    labels_in: np.ndarray,
    values_in: np.ndarray,
    labels: np.ndarray,
    values: np.ndarray,
) -> np.ndarray:
    """`cluster_local_maxima` at the cluster ``voxels`` (their labels and values given):
    a boolean per voxel. Neighbours are gathered by flat index (each array in its own memory
    order): each axis's three clipped positions are formed once, and each of the 26 offsets
    adds one of each."""
    flat_labels, label_steps = _flat_view(labels)
    flat_values, value_steps = _flat_view(values)
    label_shifts, value_shifts = (
        [
            [np.clip(axis + step, 0, length - 1) * stride for step in (-1, 0, 1)]
            for axis, length, stride in zip(voxels, labels.shape, steps, strict=True)
        ]
        for steps in (label_steps, value_steps)
    )
    highest, lowest = values_in.copy(), values_in.copy()
    for offset in np.ndindex(3, 3, 3):
        if offset == (1, 1, 1):
            continue
        i, j, k = offset
        at_label = label_shifts[0][i] + label_shifts[1][j] + label_shifts[2][k]
        at_value = value_shifts[0][i] + value_shifts[1][j] + value_shifts[2][k]
        own = np.where(flat_labels[at_label] == labels_in, flat_values[at_value], 0.0)
        np.maximum(highest, own, out=highest)
        np.minimum(lowest, own, out=lowest)
    n_clusters = int(labels_in.max(initial=0))
    cluster_max = np.full(n_clusters + 1, -np.inf)
    cluster_min = np.full(n_clusters + 1, np.inf)
    np.maximum.at(cluster_max, labels_in, values_in)
    np.minimum.at(cluster_min, labels_in, values_in)
    flat_cluster = np.isclose(cluster_max, cluster_min)[labels_in]
    return (values_in == highest) & (flat_cluster | (highest - lowest > 0))


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
