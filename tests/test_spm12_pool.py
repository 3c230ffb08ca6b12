"""SPM12's ReML pool (``spm_est_non_sphericity.m``): its definition, and its memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from bids_glm.glm.spm_filter import apply_high_pass, dct_high_pass_basis
from bids_glm.glm.spm_pool import VOXEL_CHUNK, pooled_covariance

N_SCANS = 240
TR_S = 2.0


def _model(n_voxels: int, seed: int = 0):
    """Raw data with a response in its first third of voxels, and the pool's arguments."""
    rng = np.random.default_rng(seed)
    time_s = np.arange(N_SCANS) * TR_S
    response = np.sin(2 * np.pi * time_s / 40.0)
    design = np.column_stack([response, np.cos(2 * np.pi * time_s / 64.0), np.ones(N_SCANS)])
    data = 1000.0 + 10.0 * rng.standard_normal((N_SCANS, n_voxels))
    data[:, : n_voxels // 3] += 8.0 * response[:, None]
    drifts = dct_high_pass_basis(N_SCANS, TR_S, 128.0)
    scale = np.full(N_SCANS, 100.0 / 1000.0)
    rows = (np.arange(N_SCANS),)
    return data.astype(np.float32), scale, design, rows, (drifts,), np.array([2])


def test_pool_is_spm_definition():
    """Voxels whose F of effects of interest passes ``UF``; Cy the mean of their
    ResSS-normalised ``y y'`` (unfiltered scaled data), over several voxel chunks."""
    data, scale, design, rows, drifts, nuisance = _model(2 * VOXEL_CHUNK + 300)
    pool = pooled_covariance(data, scale, design, rows, drifts, nuisance)

    scaled = data.astype(np.float64) * scale[:, None]
    filtered_y = apply_high_pass(scaled, rows, drifts)
    filtered_x = apply_high_pass(design, rows, drifts)
    residuals = filtered_y - filtered_x @ np.linalg.lstsq(filtered_x, filtered_y, rcond=None)[0]
    residual_ss = np.sum(residuals**2, axis=0)
    reduced_x = filtered_x[:, nuisance]
    reduced = filtered_y - reduced_x @ np.linalg.lstsq(reduced_x, filtered_y, rcond=None)[0]
    extra_ss = np.sum(reduced**2, axis=0) - residual_ss
    f_values = (extra_ss / pool.interest_dof) / (residual_ss / pool.residual_dof)

    assert pool.residual_dof == N_SCANS - np.linalg.matrix_rank(filtered_x)
    np.testing.assert_array_equal(pool.selected, f_values > pool.threshold_f)
    assert 0.2 < pool.selected.mean() < 0.5  # the responding third, give or take
    weighted = scaled[:, pool.selected] * np.sqrt(pool.residual_dof / residual_ss[pool.selected])
    np.testing.assert_allclose(
        pool.covariance, weighted @ weighted.T / pool.n_voxels, rtol=1e-10, atol=1e-12
    )


def test_pool_does_not_depend_on_threads(monkeypatch):
    data, *arguments = _model(3 * VOXEL_CHUNK + 17, seed=1)
    one = pooled_covariance(data, *arguments)
    monkeypatch.setattr("bids_glm.glm.spm_pool.thread_budget", lambda: 3)
    three = pooled_covariance(data, *arguments)
    np.testing.assert_array_equal(one.covariance, three.covariance)
    np.testing.assert_array_equal(one.selected, three.selected)


def _traced_peak_bytes(n_voxels: int) -> int:
    data, *arguments = _model(n_voxels, seed=2)
    tracemalloc.start()
    try:
        pooled_covariance(data, *arguments)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture
def one_thread(monkeypatch):
    """The passes in one thread, whatever budget earlier tests left: exact peaks, lines."""
    for module in ("spm_pool", "spm_fit"):
        monkeypatch.setattr(f"bids_glm.glm.{module}.thread_budget", lambda: 1)


def test_pool_memory_does_not_grow_with_voxel_chunks(one_thread):
    """The pool keeps one (n, n) product per thread, not one per voxel chunk (2,000 scans
    on the MNI brain had held 175 of 32 MB each)."""
    product_bytes = N_SCANS * N_SCANS * 8
    few, many = _traced_peak_bytes(2 * VOXEL_CHUNK), _traced_peak_bytes(12 * VOXEL_CHUNK)
    # the selected-voxel flags grow by one byte a voxel; ten more products would be 4.6 MB
    assert many - few < product_bytes


def test_pool_and_fit_say_how_far_they_are(one_thread, monkeypatch, caplog):
    """Passes over a long run's voxels log their progress (every interval; here every
    chunk)."""
    import logging

    from bids_glm.glm.spm_fit import fit_whitened, whitened_model

    monkeypatch.setattr("bids_glm.runtime.progress.PROGRESS_INTERVAL_S", 0.0)
    data, scale, design, rows, drifts, nuisance = _model(3 * VOXEL_CHUNK)
    with caplog.at_level(logging.INFO, logger="bids_glm"):
        pooled_covariance(data, scale, design, rows, drifts, nuisance)
        identity = np.eye(N_SCANS)
        model = whitened_model(design, identity, identity, rows, drifts)
        fit_whitened(data, scale, model, rows, drifts)
    total = 3 * VOXEL_CHUNK
    for label, what in (
        ("SPM12 ReML pool", "voxels tested"),
        ("SPM12 whitened fit", "voxels fitted"),
    ):
        assert f"{label}: {VOXEL_CHUNK} of {total} {what} (33%)" in caplog.text
        assert f"{label}: {2 * VOXEL_CHUNK} of {total} {what} (66%)" in caplog.text
        assert f"{total} of {total}" not in caplog.text  # the end says itself
