"""Isotropic Gaussian smoothing in millimetres, on the mask's bounding box."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

FWHM_PER_SIGMA = float(np.sqrt(8.0 * np.log(2.0)))
TRUNCATE_SIGMAS = 4.0  # scipy's default support of the sampled kernel


def voxel_sizes_mm(affine: np.ndarray) -> np.ndarray:
    """Voxel edge lengths (mm) from the columns of an affine's 3x3 part."""
    return np.sqrt(np.sum(np.asarray(affine)[:3, :3] ** 2, axis=0))


def sigma_voxels(fwhm_mm: float, affine: np.ndarray) -> np.ndarray:
    """Per-axis Gaussian sigma in voxels for an isotropic FWHM in mm (anisotropic voxels)."""
    return fwhm_mm / (FWHM_PER_SIGMA * voxel_sizes_mm(affine))


def kernel_radius_voxels(sigma_vox: np.ndarray) -> np.ndarray:
    """Half-width of scipy's sampled Gaussian kernel per axis (``int(4 sigma + 0.5)``)."""
    return np.array([int(TRUNCATE_SIGMAS * s + 0.5) if s > 0 else 0 for s in sigma_vox])


def smooth_volume(volume: np.ndarray, sigma_vox: np.ndarray) -> np.ndarray:
    """Smooth a 3-D volume in place, one axis after the other.

    Parameters
    ----------
    volume : ndarray, shape (x, y, z), float32
        Data to smooth; overwritten.
    sigma_vox : ndarray, shape (3,)
        Sigma per axis in voxels; zero skips an axis.

    Returns
    -------
    ndarray
        ``volume`` itself. Boundaries are reflected, as in scipy's default (and nilearn),
        so smoothing a bounding box that reaches the image edge, or stays a full kernel
        radius away from it, gives in-mask values equal to smoothing the whole image.
    """
    for axis, sigma in enumerate(sigma_vox):
        if sigma > 0:
            gaussian_filter1d(volume, sigma, axis=axis, output=volume, truncate=TRUNCATE_SIGMAS)
    return volume
