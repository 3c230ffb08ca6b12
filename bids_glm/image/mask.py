"""Analysis masks: loading, combining across runs, bounding boxes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_glm.errors import InputError

AFFINE_TOLERANCE_MM = 1e-3


def load_image(path: Path) -> nib.spatialimages.SpatialImage:
    """``nibabel.load`` with an ``InputError`` naming the file when it is not an image."""
    try:
        return nib.load(path)
    except (OSError, EOFError, nib.filebasedimages.ImageFileError) as err:
        raise InputError(f"{path}: not a readable NIfTI image ({err})") from None


def load_mask(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a 3-D mask image.

    Returns
    -------
    mask : ndarray of bool, shape (x, y, z)
        Voxels with a non-zero, finite value.
    affine : ndarray, shape (4, 4)
    """
    image = load_image(path)
    data = np.asanyarray(image.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"{path}: a mask must be 3-D, found shape {data.shape}")
    mask = np.isfinite(data) & (data != 0)
    if not mask.any():
        raise InputError(f"{path}: the mask is empty")
    return mask, image.affine


def same_grid(shape_a, affine_a, shape_b, affine_b) -> bool:
    """Whether two images share voxel grid (shape and affine within 1 micrometre)."""
    return tuple(shape_a[:3]) == tuple(shape_b[:3]) and np.allclose(
        affine_a, affine_b, atol=AFFINE_TOLERANCE_MM
    )


def intersect_masks(masks: Sequence[np.ndarray]) -> np.ndarray:
    """Voxels present in every mask."""
    combined = np.array(masks[0], dtype=bool)
    for mask in masks[1:]:
        combined &= mask
    return combined


def bounding_box(mask: np.ndarray, margin_vox: Sequence[int]) -> tuple[slice, ...]:
    """Slices of the mask's bounding box grown by ``margin_vox`` and clipped to the image."""
    slices = []
    for axis, margin in enumerate(margin_vox):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        present = np.flatnonzero(mask.any(axis=other))
        start = max(int(present[0]) - int(margin), 0)
        stop = min(int(present[-1]) + 1 + int(margin), mask.shape[axis])
        slices.append(slice(start, stop))
    return tuple(slices)
