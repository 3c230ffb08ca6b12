"""Nearest-neighbour resampling of a mask onto another voxel grid.

Each target voxel takes the value of the source voxel nearest to its centre (in world
coordinates, through the two affines); target voxels whose centre falls outside the
source grid are outside the mask. The call into ``scipy.ndimage.affine_transform`` is
set up as nilearn's ``resample_img(..., interpolation="nearest")`` sets it up (same
matrix inverse, diagonal matrices passed as a vector), so that voxel centres falling
exactly half-way between source voxels are rounded the same way, and a grid equal to the
source's within ``numpy.allclose`` is taken as the source grid itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import linalg


def _check_affine(affine: np.ndarray, name: str) -> np.ndarray:
    affine = np.asarray(affine, dtype=float)
    if affine.shape != (4, 4):
        raise ValueError(f"{name}: expected a 4x4 affine, got shape {affine.shape}")
    return affine


def resample_mask_nearest(
    mask: np.ndarray,
    affine: np.ndarray,
    target_shape: Sequence[int],
    target_affine: np.ndarray,
) -> np.ndarray:
    """Resample a 3-D mask onto another grid by nearest neighbour.

    Parameters
    ----------
    mask : ndarray, shape (x, y, z)
        The mask (non-zero means inside).
    affine : ndarray, shape (4, 4)
        Voxel-to-world (mm) affine of ``mask``.
    target_shape : sequence of 3 int
        Shape of the target grid.
    target_affine : ndarray, shape (4, 4)
        Voxel-to-world (mm) affine of the target grid.

    Returns
    -------
    ndarray of bool, shape ``target_shape``
        The mask on the target grid; equal to nilearn's
        ``resample_img(mask_img, target_affine, target_shape, interpolation="nearest")``.
    """
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"resample_mask_nearest: expected a 3-D mask, got shape {mask.shape}")
    affine = _check_affine(affine, "affine")
    target_affine = _check_affine(target_affine, "target_affine")
    target_shape = tuple(int(n) for n in target_shape)
    if len(target_shape) != 3 or min(target_shape) < 1:
        raise ValueError(
            f"target_shape: expected three positive integers, got {tuple(target_shape)}"
        )
    if target_shape == mask.shape and np.allclose(target_affine, affine):
        return mask != 0
    if np.array_equal(affine, target_affine):
        target_to_source = np.eye(4)
    else:
        target_to_source = linalg.inv(affine) @ target_affine
    matrix = target_to_source[:3, :3]
    offset = target_to_source[:3, 3]
    if np.array_equal(np.diag(np.diag(matrix)), matrix):
        matrix = np.diag(matrix)
    from scipy.ndimage import affine_transform  # here: masks on the data's grid never need it

    resampled = affine_transform(
        (mask != 0).astype(np.uint8),
        matrix,
        offset=offset,
        output_shape=target_shape,
        order=0,
        mode="constant",
        cval=0,
    )
    return resampled != 0
