"""SPM12's Gaussian smoothing of a volume (``spm_smooth``, ``spm_smoothkern``, ``spm_conv_vol``).

The kernel of each axis is a Gaussian of the FWHM in voxels of that axis convolved with a
linear (1st-degree B-spline) interpolation kernel, sampled at the integers within
``round(6 sigma)`` and scaled to sum 1. The three axes are convolved in turn in float64:
along x and y the volume is taken as 0 outside the grid (edge voxels lose weight), along z
the kernel is truncated at the grid's faces and re-normalised by the weights kept; values
that are not finite count as 0. ``spm_smooth`` writes its ``s*`` images in the input's type
and scaling, so the values SPM then reads are those rounded to that type
(``as_stored``): float32 for float32 series, steps of the scale slope for integer ones.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import convolve1d
from scipy.special import erf

__all__ = ["as_stored", "spm_kernel", "spm_kernels", "spm_smooth_volume"]

FWHM_PER_SIGMA = float(np.sqrt(8.0 * np.log(2.0)))
EPS = float(np.finfo(float).eps)  # MATLAB's eps, added to the kernel's variance


def spm_kernel(fwhm_voxels: float) -> np.ndarray:
    """One axis' kernel: ``spm_smoothkern(fwhm, -r:r, 1)``, ``r = round(6 sigma)``, sum 1.

    Parameters
    ----------
    fwhm_voxels : float
        FWHM along the axis in voxels (``--smoothing-fwhm`` mm over the voxel size).

    Returns
    -------
    numpy.ndarray
        ``(2 r + 1,)`` float64 weights, symmetric, summing to 1 (``[1.]`` for FWHM 0).
    """
    sigma = fwhm_voxels / FWHM_PER_SIGMA
    radius = int(np.floor(6.0 * sigma + 0.5))  # MATLAB round, sigma >= 0
    x = np.arange(-radius, radius + 1, dtype=float)
    variance = sigma**2 + EPS
    w1, w2, w3 = 0.5 * np.sqrt(2.0 / variance), -0.5 / variance, np.sqrt(variance / 2.0 / np.pi)
    kernel = 0.5 * (
        erf(w1 * (x + 1)) * (x + 1) + erf(w1 * (x - 1)) * (x - 1) - 2.0 * erf(w1 * x) * x
    ) + w3 * (np.exp(w2 * (x + 1) ** 2) + np.exp(w2 * (x - 1) ** 2) - 2.0 * np.exp(w2 * x**2))
    kernel[kernel < 0] = 0.0
    return kernel / kernel.sum()


def spm_kernels(fwhm_mm: float, affine: np.ndarray) -> tuple[np.ndarray, ...]:
    """The x, y and z kernels of an isotropic FWHM in mm on the grid of ``affine``."""
    voxel_mm = np.sqrt(np.sum(np.asarray(affine, dtype=float)[:3, :3] ** 2, axis=0))
    return tuple(spm_kernel(fwhm_mm / size) for size in voxel_mm)


def spm_smooth_volume(volume: np.ndarray, kernels: tuple[np.ndarray, ...]) -> np.ndarray:
    """Smooth one ``(x, y, z)`` volume as ``spm_conv_vol`` does.

    Parameters
    ----------
    volume : numpy.ndarray
        ``(x, y, z)`` values (scaled, as SPM reads them).
    kernels : tuple of numpy.ndarray
        The x, y and z kernels (``spm_kernels``).

    Returns
    -------
    numpy.ndarray
        ``(x, y, z)`` smoothed volume, float64.
    """
    kx, ky, kz = kernels
    values = np.array(volume, dtype=np.float64)
    values[~np.isfinite(values)] = 0.0
    values = convolve1d(values, kx, axis=0, mode="constant", cval=0.0)
    values = convolve1d(values, ky, axis=1, mode="constant", cval=0.0)
    values = convolve1d(values, kz, axis=2, mode="constant", cval=0.0)
    kept_weight = convolve1d(np.ones(volume.shape[2]), kz, mode="constant", cval=0.0)
    values /= kept_weight[None, None, :]
    return values


def as_stored(
    values: np.ndarray, dtype: np.dtype, slope: float = 1.0, intercept: float = 0.0
) -> np.ndarray:
    """Values written in ``dtype`` with ``slope``/``intercept`` and read back, as float32.

    Integer types are rounded to the nearest step and clipped to the type's range.
    """
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.integer):
        return values.astype(dtype).astype(np.float32, copy=False)
    info = np.iinfo(dtype)
    stored = np.clip(np.rint((values - intercept) / slope), info.min, info.max)
    return (stored * slope + intercept).astype(np.float32)
