"""Height and cluster-extent thresholding of z maps.

Pure functions on arrays. A height-control rule (``"fpr"``, ``"fdr"``, ``"bonferroni"``
or ``"none"``) becomes one voxel-level z threshold (:func:`height_threshold`), and
:func:`threshold_map` applies it, with a minimum cluster size, to a z volume; both are
numerically equivalent to nilearn 0.14's ``nilearn.glm.threshold_stats_img`` (see
``tests/test_clusters.py``). Cluster tables are in :mod:`bids_glm.glm.clusters`.

Clusters are face-connected (6-neighbourhood), like nilearn. Non-finite z values are
treated as 0, as nilearn does when it reads an image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

HEIGHT_CONTROLS = ("fpr", "fdr", "bonferroni", "none")
_FDR_MARGIN = 1.0e-12  # the threshold sits just below the last discovery, as in nilearn
# face connectivity (6 neighbours), as nilearn: scipy.ndimage.generate_binary_structure(3, 1)
FACES = np.zeros((3, 3, 3), dtype=bool)
FACES[1, 1, :] = FACES[1, :, 1] = FACES[:, 1, 1] = True


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
    check_height_control(height_control, alpha)
    if height_control == "none":
        check_non_negative_threshold(threshold_none)
        return float(threshold_none)
    alpha_per_tail = alpha / 2 if two_sided else alpha
    if height_control == "fpr":
        return float(-special.ndtri(alpha_per_tail))
    z_flat = finite_or_zero(np.asarray(z_values, dtype=np.float64).ravel())
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
    z_volume = as_volume(z_volume, "z_volume")
    mask = np.asarray(mask)
    if mask.shape != z_volume.shape:
        raise ValueError(
            f"mask must have the z map's shape {z_volume.shape}; got shape {mask.shape}"
        )
    check_cluster_extent(cluster_extent)
    in_mask = mask != 0
    z_threshold = height_threshold(
        z_volume[in_mask], height_control, alpha, threshold_none, two_sided
    )
    masked = np.where(in_mask, z_volume, 0).astype(z_volume.dtype)
    thresholded = threshold_volume(masked, z_threshold, cluster_extent, two_sided)
    applied = Threshold(height_control, float(alpha), int(cluster_extent), z_threshold, two_sided)
    return thresholded, applied


def threshold_volume(
    z_volume: np.ndarray, z_threshold: float, cluster_extent: int, two_sided: bool
) -> np.ndarray:
    """Zero the voxels below a z height and those in small clusters.

    Parameters
    ----------
    z_volume : numpy.ndarray
        3D z map (non-finite values count as 0).
    z_threshold : float
        Voxels with ``z < z_threshold`` (``|z| < z_threshold`` when ``two_sided``)
        are set to 0.
    cluster_extent : int
        Face-connected clusters of each sign with fewer voxels are set to 0.
    two_sided : bool
        Keep negative z values beyond ``-z_threshold``.

    Returns
    -------
    numpy.ndarray
        A thresholded copy, of ``z_volume``'s dtype.
    """
    z_volume = finite_or_zero(z_volume)
    if two_sided:
        below = np.abs(z_volume) < z_threshold
    else:
        below = z_volume < z_threshold
    thresholded = np.where(below, 0, z_volume).astype(z_volume.dtype, copy=False)
    if cluster_extent > 0:
        from scipy import ndimage  # here: a participant's tables need no labelled volume

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


def as_volume(z_volume: np.ndarray, name: str) -> np.ndarray:
    """``z_volume`` as a 3D floating-point array (integers become float64).

    Raises
    ------
    ValueError
        When the array is not 3D (``name`` says which argument).
    """
    z_volume = np.asarray(z_volume)
    if z_volume.ndim != 3:
        raise ValueError(f"{name} must be a 3D array; got {z_volume.ndim} dimensions")
    if not np.issubdtype(z_volume.dtype, np.floating):
        z_volume = z_volume.astype(np.float64)
    return z_volume


def finite_or_zero(values: np.ndarray) -> np.ndarray:
    """A copy of ``values`` with NaN and infinities replaced by 0."""
    return np.where(np.isfinite(values), values, 0).astype(values.dtype, copy=False)


def check_height_control(height_control: str, alpha: float) -> None:
    """Raise ValueError unless ``height_control`` is known and ``alpha`` in (0, 1].

    ``alpha`` is not checked for ``"none"``, where it is not an error rate.
    """
    if height_control not in HEIGHT_CONTROLS:
        raise ValueError(
            f"height_control must be one of {HEIGHT_CONTROLS}; got {height_control!r}"
        )
    if height_control != "none" and not 0 < alpha <= 1:
        raise ValueError(f"alpha must be in (0, 1]; got {alpha}")


def check_non_negative_threshold(z_threshold: float) -> None:
    """Raise ValueError unless ``z_threshold >= 0`` (NaN fails)."""
    if not z_threshold >= 0:
        raise ValueError(
            f"the z threshold must be non-negative (use two_sided=True for negative "
            f"effects); got {z_threshold}"
        )


def check_cluster_extent(cluster_extent: int) -> None:
    """Raise ValueError unless ``cluster_extent`` is a non-negative whole number."""
    if cluster_extent < 0 or int(cluster_extent) != cluster_extent:
        raise ValueError(
            f"cluster_extent must be a non-negative number of voxels; got {cluster_extent}"
        )
