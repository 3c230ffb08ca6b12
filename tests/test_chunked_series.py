"""A run's series stored by voxel chunks (``pipeline/chunked_series.py``)."""

from __future__ import annotations

import numpy as np
import pytest

from bids_glm.glm.spm_pool import VOXEL_CHUNK, voxel_chunks
from bids_glm.pipeline.chunked_series import ChunkedSeries
from bids_glm.runtime import spill


@pytest.mark.parametrize("spilled", [False, True])
def test_chunks_read_back_what_scans_wrote_after_voxels_are_dropped(
    tmp_path, monkeypatch, spilled
):
    rng = np.random.default_rng(0)
    n_scans, n_voxels = 6, 2 * VOXEL_CHUNK + 333
    values = rng.standard_normal((n_scans, n_voxels)).astype(np.float32)
    values[:, 7] = values[0, 7]  # constant voxels
    values[:, VOXEL_CHUNK + 5] = 3.0
    if spilled:  # held in a file however small
        monkeypatch.setattr(spill, "SPILL_MIN_BYTES", 1)
    series = ChunkedSeries(n_scans, n_voxels, tmp_path)
    # threads write scans in any order, one or several at a time
    for first in rng.permutation(np.arange(0, n_scans, 2)):
        if first == 2:
            series.write_scans(first, values[first : first + 2].copy())
        else:
            for scan in (first, first + 1):
                series.write_scans(scan, values[scan : scan + 1].copy())
    assert series.shape == (n_scans, n_voxels)
    varying = series.varying()
    np.testing.assert_array_equal(varying, np.ptp(values, axis=0) > 0)
    keep = varying & (rng.random(n_voxels) > 0.3)
    series.keep_voxels(keep)
    kept = values[:, keep]
    assert series.shape == kept.shape
    for block in voxel_chunks(kept.shape[1]):  # chunks of kept voxels span stored chunks
        np.testing.assert_array_equal(series[:, block], kept[:, block])
    np.testing.assert_array_equal(series[:, 100:101], kept[:, 100:101])
    np.testing.assert_array_equal(series[:, :], kept)
    assert series[:, 5:5].shape == (n_scans, 0)
    with pytest.raises(TypeError):
        series[0, :]
