"""Maps written as stored data and coded zeros (`bids_glm.image.sparse_gzip`): every gzip
reader at hand decodes them to the very bytes, and NIfTI readers to the very image."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import zlib

import nibabel as nib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from isal import igzip
from zlib_ng import gzip_ng

from bids_glm.image import nifti_bytes
from bids_glm.image.geometry import VolumeGeometry
from bids_glm.image.sparse_gzip import (
    MAX_MATCH,
    MAX_STORED_BYTES,
    plan_sparse_gzip,
    sparse_gzip_bytes,
)

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def _items_from_lengths(lengths: list[tuple[int, int]]) -> tuple[np.ndarray, int]:
    """(zeros, data) lengths in items -> the positions of the data items, and how many."""
    positions, position = [], 0
    for zeros, data in lengths:
        positions.extend(range(position + zeros, position + zeros + data))
        position += zeros + data
    return np.array(positions, dtype=np.int64), position


def _encoded(prefix: bytes, positions, n_items: int, itemsize: int, seed: int = 0):
    """A payload with random non-zero items at ``positions``, and its sparse gzip file."""
    rng = np.random.default_rng(seed)
    items = np.zeros(n_items * itemsize, dtype=np.uint8).reshape(n_items, itemsize)
    items[positions] = rng.integers(1, 256, (len(positions), itemsize))
    payload = prefix + items.tobytes()
    plan = plan_sparse_gzip(prefix, rng.permutation(positions), n_items, itemsize)
    return payload, sparse_gzip_bytes(plan, payload)


def _decoded_by_every_reader(data: bytes) -> list[bytes]:
    return [gzip.decompress(data), igzip.decompress(data), gzip_ng.decompress(data)]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 150), st.integers(0, 120)), max_size=10),
    st.integers(0, 140),
    st.sampled_from([1, 2, 4, 8]),
    st.integers(0, 3),
)
def test_any_layout_decodes_to_the_payload(lengths, trailing, itemsize, prefix_items):
    positions, n_items = _items_from_lengths(lengths)
    prefix = bytes(range(1, 1 + prefix_items * itemsize))
    payload, data = _encoded(prefix, positions, n_items + trailing, itemsize)
    assert all(out == payload for out in _decoded_by_every_reader(data))


def test_every_zero_run_length_around_the_longest_match():
    # a literal, full 258-byte matches, then a shorter match or up to two literals
    positions, n_items = _items_from_lengths([(n, 3) for n in range(1, 3 * MAX_MATCH + 8)])
    payload, data = _encoded(b"", positions, n_items, 1)
    assert all(out == payload for out in _decoded_by_every_reader(data))


@pytest.mark.parametrize("itemsize", [2, 4, 8])
def test_long_data_and_long_zeros(itemsize):
    n_long = (3 * MAX_STORED_BYTES) // itemsize + 5  # split into several stored blocks
    lengths = [(3, n_long), (1_000_000 // itemsize, 1), (1, 1)]
    positions, n_items = _items_from_lengths(lengths)
    payload, data = _encoded(bytes(8), positions, n_items + 40_000, itemsize)
    assert all(out == payload for out in _decoded_by_every_reader(data))
    zero_bytes = len(payload) - (n_long + 2) * itemsize
    assert len(data) < (n_long + 2) * itemsize + 0.01 * zero_bytes + 200  # 13 bits a match


def test_all_zero_and_all_data_payloads():
    payload, data = _encoded(b"", np.empty(0, dtype=int), 100_000, 4)
    assert gzip.decompress(data) == payload and len(data) < 0.01 * len(payload)
    payload, data = _encoded(b"head", np.arange(20_000), 20_000, 4)
    assert igzip.decompress(data) == payload


def test_a_payload_of_the_wrong_length_is_refused():
    plan = plan_sparse_gzip(b"", np.arange(3), 25, 4)
    with pytest.raises(ValueError, match="99 bytes; the plan is for 100"):
        sparse_gzip_bytes(plan, np.zeros(99, dtype=np.uint8))


@pytest.mark.skipif(shutil.which("gzip") is None, reason="no gzip command")
def test_the_gzip_command_accepts_a_map(tmp_path):
    geometry = _brain_geometry((30, 36, 30))
    path = tmp_path / "map.nii.gz"
    path.write_bytes(geometry.encode(np.arange(geometry.n_values, dtype=np.float32)))
    subprocess.run(["gzip", "-t", str(path)], check=True)


def _brain_geometry(shape: tuple[int, int, int]) -> VolumeGeometry:
    """An ellipsoid filling about half of the grid (as a brain its bounding box)."""
    grid = np.indices(shape).astype(float)
    centre = (np.array(shape, dtype=float)[:, None, None, None] - 1) / 2
    mask = (((grid - centre) / (0.9 * centre)) ** 2).sum(axis=0) <= 1
    mask[0, 0, 0] = mask[-1, -1, -1] = True  # data at both ends of the payload
    return VolumeGeometry(mask, AFFINE)


def test_a_map_is_the_compressed_image_byte_for_byte():
    geometry = _brain_geometry((97, 115, 97))
    values = np.random.default_rng(1).standard_normal(geometry.n_values).astype(np.float32)
    values[:10] = [0.0, -0.0, np.nan, np.inf, -np.inf, 1e-45, 3e38, -1.0, 0.0, 2.0]
    written = geometry.encode(values)
    compressed = nifti_bytes.nifti_gz_bytes(geometry.to_volume(values, order="F"), AFFINE)
    assert gzip.decompress(written) == gzip.decompress(compressed)
    image = nib.Nifti1Image.from_bytes(gzip.decompress(written))
    np.testing.assert_array_equal(geometry.from_volume(np.asarray(image.dataobj)), values)
    assert image.get_data_dtype() == np.float32
    # the zeros cost next to nothing: the in-mask bytes and ~5 % (block headers); noisy
    # floats barely compress, so the file is ~11 % larger than zlib-ng's
    assert len(written) < 1.06 * 4 * geometry.n_values
    assert len(written) < 1.15 * len(compressed)


def test_a_grid_without_zeros_is_compressed_in_the_right_order():
    geometry = VolumeGeometry.whole_grid((20, 22, 24), AFFINE)
    values = np.tile(np.arange(22 * 24, dtype=np.float32), 20)  # runs along x (file order)
    written = geometry.encode(values)
    assert len(written) < 4 * geometry.n_values // 2  # compressed, not stored
    image = nib.Nifti1Image.from_bytes(zlib.decompress(written, 31))
    np.testing.assert_array_equal(image.get_fdata(), values.reshape(20, 22, 24))
    np.testing.assert_array_equal(geometry.from_volume(np.asarray(image.dataobj)), values)


def test_an_empty_mask_gives_an_all_zero_map():
    geometry = VolumeGeometry(np.zeros((10, 12, 14), dtype=bool), AFFINE)
    image = nib.Nifti1Image.from_bytes(gzip.decompress(geometry.encode(np.empty(0))))
    assert image.shape == (10, 12, 14) and not np.asarray(image.dataobj).any()
