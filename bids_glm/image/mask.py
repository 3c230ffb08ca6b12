"""Analysis masks: loading, combining across runs, bounding boxes.

Masks are combined by a :class:`~bids_glm.image.mask_rule.MaskRule` (the ``--mask-combine``
option; nilearn's ``intersect_masks`` threshold convention). No connected-component
filtering is applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_glm.errors import InputError
from bids_glm.image.mask_rule import INTERSECTION, MaskRule

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


def combine_masks(masks: Sequence[np.ndarray], rule: MaskRule = INTERSECTION) -> np.ndarray:
    """Combine masks on one grid voxel by voxel.

    Parameters
    ----------
    masks : sequence of ndarray, all of one shape
        Masks (non-zero means inside).
    rule : MaskRule
        Intersection (in every mask), union (in any mask) or ``fraction:F``: in more than
        ``F * len(masks)`` masks, or in all of them when ``F = 1`` (the threshold convention
        of nilearn's ``intersect_masks``).

    Returns
    -------
    ndarray of bool
        The combined mask.

    Raises
    ------
    ValueError
        No masks, or masks of different shapes.
    """
    if len(masks) == 0:
        raise ValueError("combine_masks: expected at least one mask, got none")
    shapes = {np.shape(mask) for mask in masks}
    if len(shapes) != 1:
        raise ValueError(
            f"combine_masks: expected masks of one shape, got shapes {sorted(shapes)}"
        )
    counts = np.zeros(shapes.pop(), dtype=np.int32)
    for mask in masks:
        counts += np.asarray(mask) != 0
    if rule.fraction >= 1.0:
        return counts == len(masks)
    return counts > rule.fraction * len(masks)


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
