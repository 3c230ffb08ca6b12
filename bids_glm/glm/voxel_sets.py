"""Sparse sets of voxels of a 3-D grid: neighbours and face-connected components.

A z map thresholded at p < 0.001 keeps a few thousand of a million voxels; its clusters and
peaks are found from those voxels alone (their flat indices, sorted), without a pass over the
grid per step: labelling a dense volume (``scipy.ndimage.label``) and gathering neighbours from
it made a cluster table cost ~18 ms a map on the 2 mm MNI grid; from the sparse set, 3.4 ms.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass(frozen=True, eq=False)
class VoxelSet:
    """Voxels of a grid, listed by their flat index in the grid's C order.

    Attributes
    ----------
    shape : tuple of int
        The grid's shape (3 axes).
    flat : ndarray of intp, shape (n,)
        The voxels' flat C-order indices, strictly increasing.
    """

    shape: tuple[int, int, int]
    flat: np.ndarray

    @property
    def size(self) -> int:
        """Number of voxels."""
        return int(self.flat.size)

    @cached_property
    def ijk(self) -> np.ndarray:
        """Voxel indices, shape (n, 3), in the set's order."""
        return np.stack(np.unravel_index(self.flat, self.shape), axis=1)

    @cached_property
    def strides(self) -> np.ndarray:
        """Steps of the three axes in flat C-order indices."""
        _, n_y, n_z = self.shape
        return np.array([n_y * n_z, n_z, 1], dtype=np.intp)

    def subset(self, keep: np.ndarray) -> VoxelSet:
        """The voxels where the boolean ``keep`` (n,) is true (the order is kept)."""
        return VoxelSet(self.shape, self.flat[keep])

    def find(self, flat: np.ndarray) -> np.ndarray:
        """Position in the set of each flat index of ``flat``; -1 where it is not in the set."""
        if self.size == 0:
            return np.full(np.shape(flat), -1, dtype=np.intp)
        at = np.minimum(np.searchsorted(self.flat, flat), self.size - 1)
        return np.where(self.flat[at] == flat, at, -1)

    def neighbourhood(self) -> Iterator[np.ndarray]:
        """For each of the 26 offsets of a 3x3x3 neighbourhood (C order, the centre left
        out), the position in the set of each voxel's neighbour there, -1 where that
        neighbour is not in the set. At the grid's faces a step out stays on the face
        (``scipy.ndimage``'s ``reflect`` mode, for a neighbourhood this size)."""
        steps = [
            [np.clip(axis + step, 0, length - 1) * stride for step in (-1, 0, 1)]
            for axis, length, stride in zip(self.ijk.T, self.shape, self.strides, strict=True)
        ]
        for i, j, k in np.ndindex(3, 3, 3):
            if (i, j, k) != (1, 1, 1):
                yield self.find(steps[0][i] + steps[1][j] + steps[2][k])


def face_components(voxels: VoxelSet) -> tuple[np.ndarray, int]:
    """Label the face-connected (6-neighbour) components of a set of voxels.

    Components are numbered 1, 2, ... in the order of their first voxel in the grid's C
    order, as ``scipy.ndimage.label`` numbers them.

    Parameters
    ----------
    voxels : VoxelSet

    Returns
    -------
    labels : ndarray of intp, shape (voxels.size,)
        Each voxel's component.
    n_components : int
    """
    first, second = _face_pairs(voxels)
    root = np.arange(voxels.size)
    # hook each tree under the smaller root of a tree it touches, then flatten the trees;
    # a component's root ends as its smallest index, i.e. its first voxel in C order
    while first.size:
        root_first, root_second = root[first], root[second]
        apart = root_first != root_second
        first, second = first[apart], second[apart]
        if not first.size:
            break
        low = np.minimum(root_first[apart], root_second[apart])
        high = np.maximum(root_first[apart], root_second[apart])
        np.minimum.at(root, high, low)
        root = _flattened(root)
    is_root = root == np.arange(voxels.size)
    number = np.cumsum(is_root)
    return number[root], int(number[-1]) if voxels.size else 0


def _face_pairs(voxels: VoxelSet) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(a, b)`` of the pairs of face neighbours of the set, ``b`` one step
    further than ``a`` along an axis."""
    firsts, seconds = [], []
    for axis in range(3):
        has_next = voxels.ijk[:, axis] < voxels.shape[axis] - 1
        at = np.flatnonzero(has_next)
        found = voxels.find(voxels.flat[at] + voxels.strides[axis])
        firsts.append(at[found >= 0])
        seconds.append(found[found >= 0])
    return np.concatenate(firsts), np.concatenate(seconds)


def _flattened(parent: np.ndarray) -> np.ndarray:
    """Pointer jumping until every element points at its tree's root."""
    while True:
        grand = parent[parent]
        if np.array_equal(grand, parent):
            return parent
        parent = grand
