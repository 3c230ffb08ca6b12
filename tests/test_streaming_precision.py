"""Sums over volumes on adversarial data: a large baseline, a tiny variance, a long run.

Single-pass sums of squares lose precision when a large mean cancels (``sum y^2 - n m^2``);
the accumulator shifts every voxel by its first volume, so the baseline cancels exactly
before anything is summed. Here the baseline is 10^4 times the noise (float32 keeps ~3
significant digits of the noise), the run 2,000 volumes. z must stay within 1e-3 of the
two-pass fit of the held float32 series (`fit_glm`, whose float32 percent scaling is itself
off by up to ~7e-4 here: the rounding of ``y / mean`` is 6e-8 of a signal whose noise is
1e-4 of it), and within 1e-6 of the two-pass fit of the same data scaled in float64.
"""

from __future__ import annotations

import numpy as np
import pytest

from bids_glm.glm.contrast import compute_contrast
from bids_glm.glm.cross_products import CrossProductAccumulator
from bids_glm.glm.fit import fit_glm
from bids_glm.glm.fit_from_sums import fit_from_sums
from bids_glm.glm.scaling import scale_signal

N_SCANS = 2000
N_VOXELS = 400


def _adversarial() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    t = np.arange(N_SCANS)
    task = (t % 40 < 20).astype(float)
    drift = np.column_stack([np.cos(np.pi * k * (t + 0.5) / N_SCANS) for k in range(1, 6)])
    X = np.column_stack([task, drift, np.ones(N_SCANS)])
    baseline = rng.uniform(2e4, 3e4, N_VOXELS)
    noise = np.zeros((N_SCANS, N_VOXELS))
    for k, step in enumerate(rng.normal(size=(N_SCANS, N_VOXELS))):
        noise[k] = (0.4 * noise[k - 1] if k else 0.0) + step
    amplitude = rng.choice([0.0, 1.0], N_VOXELS)
    Y = baseline * (1 + 1e-4 * (noise + amplitude * task[:, None] + 3 * drift[:, :1]))
    return X, Y.astype(np.float32)


@pytest.mark.parametrize("scaling", ["none", "percent"])
def test_z_from_sums_matches_the_two_pass_fit_on_adversarial_data(scaling):
    X, Y = _adversarial()
    names = [f"c{k}" for k in range(X.shape[1])]
    held = fit_glm(X, scale_signal(Y.copy(), scaling), names, noise_model="ar1")
    exact = fit_glm(X, scale_signal(Y.astype(np.float64), scaling), names, noise_model="ar1")
    sums = CrossProductAccumulator(X, N_VOXELS)
    for start in range(0, N_SCANS, 16):
        sums.add(Y[start : start + 16])
    summed = fit_from_sums(X, sums.result(), names, "ar1", signal_scaling=scaling)
    weights = np.eye(X.shape[1])[:1]
    z_held = compute_contrast(held, weights, "t", "task").z
    z_summed = compute_contrast(summed, weights, "t", "task").z
    z_exact = compute_contrast(exact, weights, "t", "task").z
    np.testing.assert_array_equal(summed.voxel_bin, exact.voxel_bin)
    assert np.all(np.abs(z_summed - z_exact) < 1e-6)
    edge = np.abs(held.ar1 * 100 - np.round(held.ar1 * 100)) < 1e-3
    assert np.all(np.abs(z_summed - z_held)[~edge] < 1e-3)
    assert np.mean(edge) < 0.2
    planted = np.abs(z_summed) > 8
    assert planted.sum() > N_VOXELS // 4  # the task is found


@pytest.mark.parametrize(("dtype", "block"), [(np.float32, 5), (np.float64, 5), (np.float32, 1)])
def test_sums_equal_a_float64_brute_force(dtype, block):
    """Every sum against its definition evaluated on the whole held series, in float64.

    Blocks of 5 (or 1) and chunks of 37 voxels (neither divides the run nor the voxels), two
    threads: the order of the float64 sums changes, their values agree to ~1e-13.
    """
    from bids_glm.glm.cross_products import constant_residual
    from bids_glm.glm.ols import neighbour_sum

    rng = np.random.default_rng(11)
    n, n_voxels = 43, 150
    X = np.column_stack([rng.normal(size=(n, 3)), np.arange(n) / n])  # no constant column
    Y = (rng.normal(900, 30, n_voxels) + rng.normal(0, 5, (n, n_voxels))).astype(dtype)
    accumulator = CrossProductAccumulator(X, n_voxels, n_threads=2, chunk_voxels=37)
    for start in range(0, n, block):
        accumulator.add(Y[start : start + block])
    sums = accumulator.result()
    d = Y.astype(np.float64) - Y[0].astype(np.float64)
    e1 = constant_residual(X)
    expected = {
        "projected": np.linalg.pinv(X) @ d,
        "neighbour": neighbour_sum(X).T @ d,
        "total": d.sum(axis=0),
        "constant_residual": e1 @ d,
        "constant_neighbour": neighbour_sum(e1[:, None])[:, 0] @ d,
        "squares": (d * d).sum(axis=0),
        "lag1": (d[:-1] * d[1:]).sum(axis=0),
        "last": d[-1],
    }
    for name, value in expected.items():
        scale = np.abs(value).max()
        np.testing.assert_allclose(getattr(sums, name), value, rtol=0, atol=1e-13 * scale)
    np.testing.assert_array_equal(sums.shift, Y[0].astype(np.float64))
    running = np.zeros(n_voxels, np.float32)
    for volume in Y:  # float32, volume after volume
        running += volume
    np.testing.assert_array_equal(sums.running_sum32, running)
    assert sums.n_scans == n
