"""A brain mask computed from the EPI data itself, for runs that come without one.

The algorithm is nilearn's ``compute_epi_mask`` (after T. Nichols):

1. the temporal mean image, lightly smoothed (Gaussian of FWHM 1 voxel) when an opening
   is asked for; non-finite values count as 0;
2. among the sorted voxel values between the ``lower_cutoff`` and ``upper_cutoff``
   quantiles, the largest gap between consecutive values; the threshold is its midpoint
   and the mask keeps the voxels at or above it;
3. ``opening`` binary erosions, the largest connected component (face connectivity),
   then ``2 * opening`` dilations and ``opening`` erosions, which closes small holes and
   notches at the brain's edge.

``scipy.ndimage`` is imported by the functions that use it: runs that come with a mask (most)
start without it (~0.05 s).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bids_glm.errors import InputError
from bids_glm.image.io import iter_volumes
from bids_glm.image.mask import load_image

FWHM_TO_SIGMA = 1.0 / np.sqrt(8.0 * np.log(2.0))
MEAN_SMOOTHING_FWHM_VOX = 1.0


def mean_volume(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Temporal mean of a 4-D NIfTI series, read in one streamed pass.

    Parameters
    ----------
    path : Path
        ``.nii`` or ``.nii.gz`` 4-D series.

    Returns
    -------
    mean : ndarray, shape (x, y, z), float64
        Mean over volumes, accumulated in float64 (NaN where any volume is NaN).
    affine : ndarray, shape (4, 4)
        The series' voxel-to-world affine.
    """
    path = Path(path)
    affine = load_image(path).affine
    total = None
    n_volumes = 0
    for volume in iter_volumes(path):
        if total is None:
            total = np.zeros(volume.shape, dtype=np.float64, order="F")
        total += volume
        n_volumes += 1
    if total is None:
        raise InputError(f"{path}: the series has no volumes")
    total /= n_volumes
    return total, affine


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest face-connected component of a non-empty boolean mask.

    Parameters
    ----------
    mask : ndarray of bool, shape (x, y, z)

    Returns
    -------
    ndarray of bool
        The component with the most voxels (the lowest label among equals).
    """
    from scipy.ndimage import label

    labels, n_components = label(mask)
    if n_components <= 1:
        return mask.astype(bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == sizes.argmax()


def _gap_threshold(values: np.ndarray, lower_cutoff: float, upper_cutoff: float) -> float:
    """Midpoint of the widest gap between sorted values within the cutoff quantiles."""
    ordered = np.sort(values, axis=None)
    first = int(np.floor(lower_cutoff * ordered.size))
    last = min(int(np.floor(upper_cutoff * ordered.size)), ordered.size - 1)
    window = ordered[first : last + 1]
    if window.size < 2:
        raise ValueError(
            f"compute_epi_mask: the cutoffs {lower_cutoff}-{upper_cutoff} leave fewer than "
            f"two of the {ordered.size} voxel values to search for a gap"
        )
    widest = int(np.diff(window).argmax())
    return 0.5 * (window[widest] + window[widest + 1])


def compute_epi_mask(
    mean_image: np.ndarray,
    lower_cutoff: float = 0.2,
    upper_cutoff: float = 0.85,
    opening: int = 2,
) -> np.ndarray:
    """Brain mask of an EPI series from its temporal mean image.

    Parameters
    ----------
    mean_image : ndarray, shape (x, y, z)
        Unsmoothed temporal mean of the series (:func:`mean_volume`); the light smoothing
        the method calls for is done here.
    lower_cutoff, upper_cutoff : float
        Quantiles (0 <= lower < upper <= 1) bounding the search for the histogram gap.
    opening : int
        Iterations of the morphological opening; 0 skips both the smoothing and the
        morphology (the largest connected component is still kept).

    Returns
    -------
    ndarray of bool, shape (x, y, z)
        Equal to ``nilearn.masking.compute_epi_mask`` on the 4-D series with the same
        cutoffs and opening (other arguments at their defaults).

    Raises
    ------
    ValueError
        Bad arguments, or an empty mask (data that are not EPI intensities, e.g. already
        demeaned or detrended).
    """
    from scipy.ndimage import binary_dilation, binary_erosion, gaussian_filter1d

    mean_image = np.asarray(mean_image)
    if mean_image.ndim != 3:
        raise ValueError(f"compute_epi_mask: expected a 3-D mean image, got {mean_image.shape}")
    if not 0.0 <= lower_cutoff < upper_cutoff <= 1.0:
        raise ValueError(
            "compute_epi_mask: expected 0 <= lower_cutoff < upper_cutoff <= 1, got "
            f"{lower_cutoff} and {upper_cutoff}"
        )
    opening = int(opening)
    if opening < 0:
        raise ValueError(f"compute_epi_mask: expected opening >= 0, got {opening}")
    values = np.where(np.isfinite(mean_image), mean_image, 0.0).astype(np.float64)
    if opening:
        sigma_vox = MEAN_SMOOTHING_FWHM_VOX * FWHM_TO_SIGMA
        for axis in range(3):
            gaussian_filter1d(values, sigma_vox, axis=axis, output=values)
        values[np.isnan(mean_image)] = 0.0
    mask = values >= _gap_threshold(values, lower_cutoff, upper_cutoff)
    if opening:
        mask = binary_erosion(mask, iterations=opening)
    if not mask.any():
        raise ValueError(
            "compute_epi_mask: the mask is empty; the image does not look like EPI "
            "intensities (demeaned or detrended data?)"
        )
    mask = largest_component(mask)
    if opening:
        mask = binary_dilation(mask, iterations=2 * opening)
        mask = binary_erosion(mask, iterations=opening)
    return mask
