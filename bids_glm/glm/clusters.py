"""Height and cluster-extent thresholding of z maps, and cluster tables.

Pure functions on arrays, numerically equivalent to nilearn 0.14's
``nilearn.glm.threshold_stats_img`` and ``nilearn.reporting.get_clusters_table``
(see ``tests/test_clusters.py``), with two deliberate differences in the table:

- every reported subpeak lies more than ``min_distance_mm`` from *every* higher
  (sub)peak of its cluster (nilearn only checks the last one it kept);
- with ``two_sided=True`` negative clusters are numbered right after the positive
  ones (nilearn continues from the number of rows, which leaves gaps).

Clusters are face-connected (6-neighbourhood), like nilearn. Non-finite z values are
treated as 0, as nilearn does when it reads an image.
"""

from __future__ import annotations

from dataclasses import dataclass
from string import ascii_lowercase

import numpy as np
import pandas as pd
from scipy import ndimage, special

from bids_glm.glm.cluster_peaks import FACES, apply_affine, signed_clusters
from bids_glm.image.mask import bounding_box

HEIGHT_CONTROLS = ("fpr", "fdr", "bonferroni", "none")
CLUSTER_TABLE_COLUMNS = (
    "Cluster ID",
    "X",
    "Y",
    "Z",
    "Peak Stat",
    "Cluster Size (mm3)",
    "Cluster Size (voxels)",
)
_FDR_MARGIN = 1.0e-12  # the threshold sits just below the last discovery, as in nilearn


@dataclass(frozen=True)
class Threshold:
    """The threshold applied to a z map.

    Attributes
    ----------
    height_control : str
        ``"fpr"``, ``"fdr"``, ``"bonferroni"`` or ``"none"``.
    alpha : float
        Error rate controlled by ``height_control`` (ignored for ``"none"``).
    cluster_extent : int
        Minimum cluster size in voxels (0 keeps every cluster).
    z_threshold : float
        The voxel-level z height actually used.
    two_sided : bool
        Whether negative z values were thresholded at ``-z_threshold`` too.
    """

    height_control: str
    alpha: float
    cluster_extent: int
    z_threshold: float
    two_sided: bool = False


def height_threshold(
    z_values: np.ndarray,
    height_control: str = "fpr",
    alpha: float = 0.001,
    threshold_none: float = 3.09,
    two_sided: bool = False,
) -> float:
    """Return the voxel-level z threshold for a height-control rule.

    Parameters
    ----------
    z_values : numpy.ndarray
        The in-mask z values (any shape; flattened). Needed for ``"fdr"``
        (Benjamini-Hochberg) and ``"bonferroni"`` (number of tests).
    height_control : {"fpr", "fdr", "bonferroni", "none"}
        ``"fpr"``: uncorrected p < alpha; ``"fdr"``: false discovery rate q < alpha;
        ``"bonferroni"``: family-wise p < alpha; ``"none"``: ``threshold_none``.
    alpha : float
        Error rate in (0, 1]; halved when ``two_sided``.
    threshold_none : float
        The z threshold returned for ``"none"`` (non-negative).
    two_sided : bool
        Test both tails: alpha is halved and FDR uses ``|z|``.

    Returns
    -------
    float
        The z threshold; ``inf`` when FDR rejects nothing.
    """
    _check_height_control(height_control, alpha)
    if height_control == "none":
        _check_non_negative_threshold(threshold_none)
        return float(threshold_none)
    alpha_per_tail = alpha / 2 if two_sided else alpha
    if height_control == "fpr":
        return float(-special.ndtri(alpha_per_tail))
    z_flat = _finite_or_zero(np.asarray(z_values, dtype=np.float64).ravel())
    if z_flat.size == 0:
        raise ValueError(f"height_control={height_control!r} needs at least one z value; got none")
    if two_sided:
        z_flat = np.abs(z_flat)
    if height_control == "bonferroni":
        return float(-special.ndtri(alpha_per_tail / z_flat.size))
    return _benjamini_hochberg_z(z_flat, alpha_per_tail)


def threshold_map(
    z_volume: np.ndarray,
    mask: np.ndarray,
    height_control: str = "fpr",
    alpha: float = 0.001,
    cluster_extent: int = 0,
    two_sided: bool = False,
    threshold_none: float = 3.09,
) -> tuple[np.ndarray, Threshold]:
    """Threshold a z volume by height and cluster extent.

    Parameters
    ----------
    z_volume : numpy.ndarray
        3D z map.
    mask : numpy.ndarray
        3D brain mask of the same shape (non-zero = in brain); it defines the tests
        for FDR and Bonferroni, and voxels outside it are set to 0.
    height_control, alpha, threshold_none, two_sided
        See :func:`height_threshold`.
    cluster_extent : int
        Clusters (face-connected, each sign separately) with fewer voxels are removed.

    Returns
    -------
    thresholded : numpy.ndarray
        Copy of ``z_volume`` with 0 outside the mask, below the height threshold
        (``|z|`` below it when ``two_sided``) and in clusters that are too small.
    threshold : Threshold
        What was applied.
    """
    z_volume = _as_volume(z_volume, "z_volume")
    mask = np.asarray(mask)
    if mask.shape != z_volume.shape:
        raise ValueError(
            f"mask must have the z map's shape {z_volume.shape}; got shape {mask.shape}"
        )
    _check_cluster_extent(cluster_extent)
    in_mask = mask != 0
    z_threshold = height_threshold(
        z_volume[in_mask], height_control, alpha, threshold_none, two_sided
    )
    masked = np.where(in_mask, z_volume, 0).astype(z_volume.dtype)
    thresholded = _threshold_volume(masked, z_threshold, cluster_extent, two_sided)
    applied = Threshold(height_control, float(alpha), int(cluster_extent), z_threshold, two_sided)
    return thresholded, applied


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
    z_volume = _as_volume(z_volume, "z_volume")
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise ValueError(f"affine must be a 4x4 array; got shape {affine.shape}")
    _check_non_negative_threshold(z_threshold)
    _check_cluster_extent(cluster_extent)
    if not min_distance_mm > 0:
        raise ValueError(f"min_distance_mm must be positive; got {min_distance_mm}")
    if max_subpeaks < 0 or int(max_subpeaks) != max_subpeaks:
        raise ValueError(f"max_subpeaks must be a non-negative integer; got {max_subpeaks}")
    region = _suprathreshold_region(z_volume, z_threshold, two_sided)
    origin = np.array([axis.start for axis in region])
    thresholded = _threshold_volume(z_volume[region], z_threshold, cluster_extent, two_sided)
    voxel_volume_mm3 = float(np.prod(np.linalg.norm(affine[:3, :3], axis=0)))
    rows: list[dict] = []
    n_clusters = 0
    for sign in (1, -1) if two_sided else (1,):
        signed = thresholded * sign
        for cluster in signed_clusters(signed, z_threshold, affine, min_distance_mm, origin):
            n_clusters += 1
            size_voxels, peaks_ijk, peak_values = cluster
            peaks_xyz = apply_affine(affine, peaks_ijk)
            for rank in range(min(len(peak_values), int(max_subpeaks) + 1)):
                is_peak = rank == 0
                rows.append(
                    {
                        "Cluster ID": str(n_clusters)
                        + ("" if is_peak else ascii_lowercase[rank - 1]),
                        "X": peaks_xyz[rank, 0],
                        "Y": peaks_xyz[rank, 1],
                        "Z": peaks_xyz[rank, 2],
                        "Peak Stat": float(peak_values[rank] * sign),
                        "Cluster Size (mm3)": (
                            int(size_voxels * voxel_volume_mm3) if is_peak else pd.NA
                        ),
                        "Cluster Size (voxels)": size_voxels if is_peak else pd.NA,
                    }
                )
    table = pd.DataFrame(rows, columns=list(CLUSTER_TABLE_COLUMNS))
    return table.astype(
        {
            "Cluster ID": str,
            "X": np.float64,
            "Y": np.float64,
            "Z": np.float64,
            "Peak Stat": np.float64,
            "Cluster Size (mm3)": "Int64",
            "Cluster Size (voxels)": "Int64",
        }
    )


def _suprathreshold_region(
    z_volume: np.ndarray, z_threshold: float, two_sided: bool
) -> tuple[slice, ...]:
    """Bounding box of the voxels beyond the threshold, grown by one voxel (zeros around
    every cluster, so the neighbourhood filters see what they see in the whole volume);
    the whole volume when no voxel passes."""
    with np.errstate(invalid="ignore"):
        beyond = (np.abs(z_volume) if two_sided else z_volume) > z_threshold
    if not beyond.any():
        return tuple(slice(0, n) for n in z_volume.shape)
    return bounding_box(beyond, (1, 1, 1))


def _threshold_volume(
    z_volume: np.ndarray, z_threshold: float, cluster_extent: int, two_sided: bool
) -> np.ndarray:
    """Zero voxels below the height (``|z|`` when two-sided) and small clusters."""
    z_volume = _finite_or_zero(z_volume)
    if two_sided:
        below = np.abs(z_volume) < z_threshold
    else:
        below = z_volume < z_threshold
    thresholded = np.where(below, 0, z_volume).astype(z_volume.dtype)
    if cluster_extent > 0:
        for tail in (thresholded > 0, thresholded < 0):
            labels, _ = ndimage.label(tail, FACES)
            too_small = np.bincount(labels.ravel()) < cluster_extent
            too_small[0] = False
            thresholded[too_small[labels]] = 0
    return thresholded


def _benjamini_hochberg_z(z_values: np.ndarray, alpha: float) -> float:
    """Smallest rejected z of the Benjamini-Hochberg step-up procedure, minus a hair."""
    z_descending = np.sort(z_values)[::-1]
    n_tests = z_descending.size
    p_values = special.ndtr(-z_descending)  # the normal's upper tail
    rejected = p_values < alpha * np.linspace(1 / n_tests, 1, n_tests)
    if not rejected.any():
        return float(np.inf)
    return float(z_descending[np.flatnonzero(rejected)[-1]] - _FDR_MARGIN)


def _as_volume(z_volume: np.ndarray, name: str) -> np.ndarray:
    z_volume = np.asarray(z_volume)
    if z_volume.ndim != 3:
        raise ValueError(f"{name} must be a 3D array; got {z_volume.ndim} dimensions")
    if not np.issubdtype(z_volume.dtype, np.floating):
        z_volume = z_volume.astype(np.float64)
    return z_volume


def _finite_or_zero(values: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(values), values, 0).astype(values.dtype)


def _check_height_control(height_control: str, alpha: float) -> None:
    if height_control not in HEIGHT_CONTROLS:
        raise ValueError(
            f"height_control must be one of {HEIGHT_CONTROLS}; got {height_control!r}"
        )
    if height_control != "none" and not 0 < alpha <= 1:
        raise ValueError(f"alpha must be in (0, 1]; got {alpha}")


def _check_non_negative_threshold(z_threshold: float) -> None:
    if not z_threshold >= 0:
        raise ValueError(
            f"the z threshold must be non-negative (use two_sided=True for negative "
            f"effects); got {z_threshold}"
        )


def _check_cluster_extent(cluster_extent: int) -> None:
    if cluster_extent < 0 or int(cluster_extent) != cluster_extent:
        raise ValueError(
            f"cluster_extent must be a non-negative number of voxels; got {cluster_extent}"
        )
