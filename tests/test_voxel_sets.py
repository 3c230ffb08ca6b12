"""Sparse voxel sets and the cluster tables made from them, against dense references.

`face_components` must label like ``scipy.ndimage.label`` (same components, same numbering);
a cluster table from in-mask values must be the table of the volume holding them; the
extent rule must be the dense one (`threshold_volume`), voxels exactly at the threshold
included.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from bids_glm.glm.clusters import cluster_table, cluster_table_of_voxels
from bids_glm.glm.thresholding import FACES, threshold_volume
from bids_glm.glm.voxel_sets import VoxelSet, face_components

AFFINE = np.array([[-2.0, 0, 0, 90.0], [0, 2.0, 0, -126.0], [0, 0, 2.0, -72.0], [0, 0, 0, 1]])


def _voxels(marked: np.ndarray) -> VoxelSet:
    return VoxelSet(marked.shape, np.flatnonzero(marked))


@settings(max_examples=60, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 9), st.integers(1, 9), st.integers(1, 9)),
    density=st.floats(0.05, 0.9),
    seed=st.integers(0, 2**32 - 1),
)
def test_face_components_number_as_ndimage_label(shape, density, seed):
    marked = np.random.default_rng(seed).random(shape) < density
    expected, n_expected = ndimage.label(marked, FACES)
    voxels = _voxels(marked)
    labels, n_components = face_components(voxels)
    assert n_components == n_expected
    np.testing.assert_array_equal(labels, expected[tuple(voxels.ijk.T)])


def test_face_components_of_a_long_spiral_and_of_nothing():
    """A single component whose voxels come in a scrambled order of hooking (a snake
    folded through the grid): one label however long the chain."""
    marked = np.zeros((11, 11, 11), dtype=bool)
    marked[::2] = True  # planes ...
    marked[1::4, 0, :] = True  # ... joined at alternate ends
    marked[3::4, -1, :] = True
    labels, n_components = face_components(_voxels(marked))
    assert n_components == 1 and set(labels) == {1}
    empty_labels, n_empty = face_components(_voxels(np.zeros((3, 4, 5), dtype=bool)))
    assert n_empty == 0 and empty_labels.size == 0


def test_neighbourhood_finds_members_and_stays_on_the_faces():
    marked = np.zeros((3, 4, 5), dtype=bool)
    marked[0, 0, 0] = marked[1, 1, 1] = marked[0, 0, 1] = True
    voxels = _voxels(marked)  # C order: (0,0,0), (0,0,1), (1,1,1)
    found = np.array(list(voxels.neighbourhood()))  # (26 offsets, 3 voxels)
    offsets = [o for o in np.ndindex(3, 3, 3) if o != (1, 1, 1)]
    corner = {offsets[k]: found[k, 0] for k in range(26)}
    assert corner[(2, 2, 2)] == 2  # (1, 1, 1) is the corner's diagonal neighbour
    assert corner[(1, 1, 2)] == 1
    assert corner[(0, 0, 0)] == 0  # a step out of the grid stays on the voxel itself
    assert corner[(2, 1, 1)] == -1


def _z_and_mask(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.standard_normal((24, 26, 22)), 1.0)
    z = 1.2 * noise / noise.std()
    z[3:6, 3:6, 3:6] = 4.0  # a plateau
    grid = np.indices(z.shape)
    centre = (np.array(z.shape) - 1) / 2
    mask = sum(((grid[a] - centre[a]) / (z.shape[a] / 2)) ** 2 for a in range(3)) <= 1
    return z, mask


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(
    ("threshold", "extent", "two_sided"), [(2.3, 0, False), (1.5, 8, True), (2.5, 3, False)]
)
def test_table_of_in_mask_values_equals_the_table_of_their_volume(
    seed, threshold, extent, two_sided
):
    z, mask = _z_and_mask(seed)
    z[mask & (np.indices(z.shape)[0] == 12)] = np.nan  # a slab of unusable values
    flat = np.flatnonzero(mask)
    volume = np.where(mask, z, 0.0)
    expected = cluster_table(volume, AFFINE, threshold, extent, two_sided=two_sided)
    table = cluster_table_of_voxels(
        z.ravel()[flat], flat, z.shape, AFFINE, threshold, extent, two_sided=two_sided
    )
    assert len(expected) > 5
    pd.testing.assert_frame_equal(table, expected)
    fortran = cluster_table(
        np.asfortranarray(volume), AFFINE, threshold, extent, two_sided=two_sided
    )
    pd.testing.assert_frame_equal(fortran, expected)


def test_extent_counts_voxels_exactly_at_the_threshold_as_the_dense_rule_does():
    """Two 3-voxel bars joined by one voxel at exactly the threshold: a group of 7 for the
    extent rule, two clusters of 3 in the table (voxels at the threshold are not in
    clusters)."""
    z = np.zeros((5, 9, 5))
    z[2, 1:4, 2] = 5.0
    z[2, 4, 2] = 3.0
    z[2, 5:8, 2] = 4.0
    for extent, expected_sizes in ((7, [3, 3]), (8, [])):
        table = cluster_table(z, AFFINE, 3.0, extent)
        sizes = table["Cluster Size (voxels)"].dropna().tolist()
        assert sizes == expected_sizes
        dense = threshold_volume(z, 3.0, extent, two_sided=False)
        labels, _ = ndimage.label(dense > 3.0, FACES)
        assert sorted(np.bincount(labels.ravel())[1:].tolist()) == expected_sizes


def test_table_of_voxels_rejects_unordered_or_mismatched_input():
    z = np.array([4.0, 5.0, 4.5])
    with pytest.raises(ValueError, match="must be increasing"):
        cluster_table_of_voxels(z, np.array([5, 3, 9]), (3, 3, 3), AFFINE, 3.0)
    with pytest.raises(ValueError, match=re.escape("shapes (3,) and (2,)")):
        cluster_table_of_voxels(z, np.array([1, 2]), (3, 3, 3), AFFINE, 3.0)
    with pytest.raises(ValueError, match="must be non-negative"):
        cluster_table_of_voxels(z, np.array([1, 2, 3]), (3, 3, 3), AFFINE, -1.0)
