"""Analysis masks: loading, combining across runs, bounding boxes.

Combination rules (the ``--mask-combine`` option) follow the threshold convention of
nilearn's ``intersect_masks``: ``fraction:F`` keeps a voxel when *more than* ``F`` of the
masks contain it (``F = 1`` meaning all of them), so ``union`` is the limit ``F -> 0``
and ``intersection`` is ``F = 1``. No connected-component filtering is applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_glm.errors import InputError

AFFINE_TOLERANCE_MM = 1e-3
MASK_RULE_FORMS = "'intersection', 'union' or 'fraction:F' with 0 < F <= 1 (e.g. 'fraction:0.5')"


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


def _parse_rule(text: str) -> tuple[str, float]:
    """Split a mask rule into its kind and the fraction of masks a voxel must exceed."""
    if not isinstance(text, str):
        raise ValueError(f"mask combination rule: expected {MASK_RULE_FORMS}, got {text!r}")
    rule = text.strip().lower()
    if rule == "intersection":
        return "intersection", 1.0
    if rule == "union":
        return "union", 0.0
    kind, separator, value = rule.partition(":")
    if kind == "fraction" and separator:
        try:
            fraction = float(value)
        except ValueError:
            fraction = float("nan")
        if 0.0 < fraction <= 1.0:
            return "fraction", fraction
    raise ValueError(f"mask combination rule: expected {MASK_RULE_FORMS}, got {text!r}")


def parse_mask_rule(text: str) -> str:
    """Validate a ``--mask-combine`` value and return it in canonical form.

    Parameters
    ----------
    text : str
        ``"intersection"``, ``"union"`` or ``"fraction:F"`` with ``0 < F <= 1``
        (case and surrounding spaces ignored).

    Returns
    -------
    str
        ``"intersection"``, ``"union"`` or ``"fraction:<F as a Python float>"``.

    Raises
    ------
    ValueError
        When the text is none of the accepted forms; the message lists them.
    """
    kind, fraction = _parse_rule(text)
    return f"fraction:{fraction!r}" if kind == "fraction" else kind


def combine_masks(masks: Sequence[np.ndarray], rule: str = "intersection") -> np.ndarray:
    """Combine masks on one grid voxel by voxel.

    Parameters
    ----------
    masks : sequence of ndarray, all of one shape
        Masks (non-zero means inside).
    rule : str
        ``"intersection"`` (in every mask), ``"union"`` (in any mask) or ``"fraction:F"``:
        in more than ``F * len(masks)`` masks, or in all of them when ``F = 1`` (the
        threshold convention of nilearn's ``intersect_masks``).

    Returns
    -------
    ndarray of bool
        The combined mask.

    Raises
    ------
    ValueError
        No masks, masks of different shapes, or a rule not of the accepted forms.
    """
    _, fraction = _parse_rule(rule)
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
    if fraction >= 1.0:
        return counts == len(masks)
    return counts > fraction * len(masks)


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
