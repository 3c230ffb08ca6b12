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


def _payload(spans: list[tuple[int, int]], n_bytes: int, seed: int = 0) -> np.ndarray:
    """Random non-zero bytes in ``spans``, zeros elsewhere."""
    payload = np.zeros(n_bytes, dtype=np.uint8)
    rng = np.random.default_rng(seed)
    for start, stop in spans:
        payload[start:stop] = rng.integers(1, 256, stop - start)
    return payload


def _decoded_by_every_reader(data: bytes) -> list[bytes]:
    return [gzip.decompress(data), igzip.decompress(data), gzip_ng.decompress(data)]


def _spans_from_lengths(lengths: list[tuple[int, int]]) -> tuple[list[tuple[int, int]], int]:
    """(zeros, data) lengths -> spans and the payload length."""
    spans, position = [], 0
    for zeros, data in lengths:
        spans.append((position + zeros, position + zeros + data))
        position += zeros + data
    return spans, position


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3 * MAX_MATCH + 5), st.integers(0, 700)), max_size=12),
    st.integers(0, 2 * MAX_MATCH + 3),
)
def test_any_layout_decodes_to_the_payload(lengths, trailing_zeros):
    spans, n_bytes = _spans_from_lengths(lengths)
    payload = _payload(spans, n_bytes + trailing_zeros)
    data = sparse_gzip_bytes(
        plan_sparse_gzip(np.array(spans).reshape(-1, 2), payload.size), payload
    )
    assert all(out == payload.tobytes() for out in _decoded_by_every_reader(data))


def test_every_zero_run_length_around_the_longest_match():
    # a literal, full 258-byte matches, then a shorter match or up to two literals
    lengths = [(zeros, 3) for zeros in range(1, 3 * MAX_MATCH + 8)]
    spans, n_bytes = _spans_from_lengths(lengths)
    payload = _payload(spans, n_bytes)
    plan = plan_sparse_gzip(np.array(spans), n_bytes)
    assert all(
        out == payload.tobytes()
        for out in _decoded_by_every_reader(sparse_gzip_bytes(plan, payload))
    )


def test_long_data_and_long_zeros():
    spans = [(5, 5 + 3 * MAX_STORED_BYTES + 17), (4_000_000, 4_000_001)]
    payload = _payload(spans, 4_500_000)
    plan = plan_sparse_gzip(np.array(spans), payload.size)
    assert max(stop - start for start, stop in plan.spans) <= MAX_STORED_BYTES
    data = sparse_gzip_bytes(plan, payload)
    assert all(out == payload.tobytes() for out in _decoded_by_every_reader(data))
    assert len(data) < 3 * MAX_STORED_BYTES + 17 + 4_500_000 // 100  # the zeros coded


def test_all_zero_and_all_data_payloads():
    zeros = np.zeros(100_000, dtype=np.uint8)
    coded = sparse_gzip_bytes(plan_sparse_gzip(np.empty((0, 2)), zeros.size), zeros)
    assert gzip.decompress(coded) == zeros.tobytes() and len(coded) < 1_000
    full = _payload([(0, 70_000)], 70_000)
    stored = sparse_gzip_bytes(plan_sparse_gzip(np.array([[0, 70_000]]), full.size), full)
    assert igzip.decompress(stored) == full.tobytes()


def test_a_payload_of_the_wrong_length_is_refused():
    plan = plan_sparse_gzip(np.array([[0, 10]]), 100)
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


def test_a_grid_without_zeros_is_compressed():
    geometry = VolumeGeometry.whole_grid((20, 20, 20), AFFINE)
    values = np.ones(geometry.n_values, dtype=np.float32)
    written = geometry.encode(values)
    assert len(written) < 32_000 // 2  # compressed, not 32,000 stored bytes
    np.testing.assert_array_equal(
        nib.Nifti1Image.from_bytes(zlib.decompress(written, 31)).get_fdata(), 1.0
    )


def test_an_empty_mask_gives_an_all_zero_map():
    geometry = VolumeGeometry(np.zeros((10, 12, 14), dtype=bool), AFFINE)
    image = nib.Nifti1Image.from_bytes(gzip.decompress(geometry.encode(np.empty(0))))
    assert image.shape == (10, 12, 14) and not np.asarray(image.dataobj).any()
