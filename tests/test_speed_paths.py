"""The fast paths (banded smoothing, threaded reading and fitting, moment-based AR refit,
direct NIfTI bytes) against the straightforward computations they replace."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import scipy.linalg
from scipy.ndimage import gaussian_filter1d

from bids_glm.glm.ar import bin_ar1, whiten_ar1, yule_walker_ar1
from bids_glm.glm.ar_refit import ar1_voxel_fits, whitened_operators
from bids_glm.glm.fit import fit_glm
from bids_glm.glm.ols import design_operators, ols_pass
from bids_glm.image.io import read_masked_series
from bids_glm.image.nifti_bytes import nifti_bytes
from bids_glm.image.smooth import plan_box_smoother

AFFINE = np.array([[2.0, 0, 0, -20], [0, 2.5, 0, -30], [0, 0, 3.0, -10], [0, 0, 0, 1]])


def _scipy_smoothed(volume: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """nilearn's smoothing of a float32 volume: scipy, axis by axis, in place in float32."""
    out = volume.copy()
    for axis, s in enumerate(sigma):
        if s > 0:
            gaussian_filter1d(out, s, axis=axis, output=out)
    return out


@pytest.mark.parametrize("sigma", [(1.06, 0.85, 0.7), (2.3, 0.0, 1.2), (0.4, 3.5, 1.0)])
def test_banded_smoothing_is_bit_identical_to_scipy(sigma):
    rng = np.random.default_rng(0)
    shape = (23, 19, 11)  # short axes: the kernel reflects off both faces, even twice
    volume = np.asfortranarray(rng.normal(800, 60, shape).astype(np.float32))
    keep = (slice(3, 20), slice(0, 19), slice(2, 9))
    smoother = plan_box_smoother(shape, keep, np.array(sigma))
    got = smoother.apply(volume, smoother.workspace())
    expected = _scipy_smoothed(volume, np.array(sigma))[keep]
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, expected)


def _image(tmp_path, data, name="bold.nii.gz"):
    path = tmp_path / name
    nib.Nifti1Image(data, AFFINE).to_filename(path)
    return path


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_threaded_reading_equals_serial_and_gives_the_mean_volume(tmp_path, dtype):
    rng = np.random.default_rng(1)
    data = rng.normal(500, 40, (14, 12, 9, 23)).astype(dtype)
    path = _image(tmp_path, data)
    mask = np.zeros(data.shape[:3], bool)
    mask[3:11, 2:10, 2:8] = True
    keep = np.ones(23, bool)
    keep[[0, 1, 7, 15]] = False
    serial = read_masked_series(path, mask, AFFINE, 5.0, keep_volumes=keep, n_threads=1)
    threaded = read_masked_series(path, mask, AFFINE, 5.0, keep_volumes=keep, n_threads=3)
    np.testing.assert_array_equal(threaded.data, serial.data)
    np.testing.assert_array_equal(threaded.usable, serial.usable)
    np.testing.assert_array_equal(threaded.mean_volume, serial.mean_volume)
    # mean over the kept volumes of the unsmoothed data, over the whole grid
    expected = nib.load(path).get_fdata()[..., keep].mean(axis=-1)
    assert threaded.mean_volume.dtype == np.float32
    assert threaded.mean_volume.shape == data.shape[:3]
    np.testing.assert_allclose(threaded.mean_volume, expected, rtol=1e-6)


@pytest.mark.parametrize(("dtype", "high"), [(np.uint8, 255), (np.int32, 2**31 - 1)])
def test_mean_volume_of_integer_data_is_exact(tmp_path, dtype, high):
    # large int32 values: their sum over 20 volumes needs 64-bit integers
    rng = np.random.default_rng(6)
    data = rng.integers(high // 2, high, (6, 5, 4, 20), endpoint=True).astype(dtype)
    path = _image(tmp_path, data)
    mask = np.ones(data.shape[:3], bool)
    series = read_masked_series(path, mask, AFFINE, 0.0, n_threads=3)
    expected = (data.astype(np.int64).sum(axis=-1) / 20).astype(np.float32)
    np.testing.assert_array_equal(series.mean_volume, expected)


def test_threaded_reading_marks_non_finite_voxels_like_serial(tmp_path):
    rng = np.random.default_rng(2)
    data = rng.normal(100, 5, (8, 8, 8, 12)).astype(np.float32)
    data[2, 3, 4, 5] = np.nan
    data[5, 5, 5, 9] = np.inf
    mask = np.ones((8, 8, 8), bool)
    path = _image(tmp_path, data)
    serial = read_masked_series(path, mask, AFFINE, 4.0, n_threads=1)
    threaded = read_masked_series(path, mask, AFFINE, 4.0, n_threads=2)
    np.testing.assert_array_equal(threaded.usable, serial.usable)
    bad = {np.ravel_multi_index(ijk, mask.shape) for ijk in [(2, 3, 4), (5, 5, 5)]}
    assert set(np.flatnonzero(~threaded.usable)) == bad
    assert threaded.mean_volume[2, 3, 4] == 0.0  # non-finite mean shown as 0


def _explicit_ar1_refit(X, Y, rho_per_voxel):
    """nilearn's refit: whiten data and design with the voxel's coefficient, pinv fit."""
    beta = np.empty((X.shape[1], Y.shape[1]))
    rss = np.empty(Y.shape[1])
    for rho in np.unique(rho_per_voxel):
        voxels = rho_per_voxel == rho
        wX = whiten_ar1(X.copy(), rho)
        wY = whiten_ar1(Y[:, voxels].astype(np.float64), rho)
        beta[:, voxels] = scipy.linalg.pinv(wX) @ wY
        rss[voxels] = np.sum((wY - wX @ beta[:, voxels]) ** 2, axis=0)
    return beta, rss


@pytest.mark.parametrize("duplicate_column", [False, True])
def test_moment_based_ar1_refit_equals_explicit_whitened_refit(duplicate_column):
    rng = np.random.default_rng(3)
    n_scans, n_voxels = 120, 700
    t = np.arange(n_scans)
    X = np.column_stack([np.sin(t / 7.0), np.cos(t / 11.0) ** 2, t / n_scans, np.ones(n_scans)])
    if duplicate_column:
        X = np.column_stack([X[:, :1], X])  # rank p - 1
    rho = rng.uniform(-0.5, 0.95, n_voxels)
    noise = rng.standard_normal((n_scans, n_voxels))
    for i in range(1, n_scans):
        noise[i] += rho * noise[i - 1]
    Y = (X @ rng.normal(0, 3, (X.shape[1], n_voxels)) + noise).astype(np.float32)
    names = [f"c{i}" for i in range(X.shape[1])]
    fit = fit_glm(X, Y, names, noise_model="ar1", chunk_voxels=64, n_threads=3)
    beta, rss = _explicit_ar1_refit(X, Y, fit.bin_rho[fit.voxel_bin])
    np.testing.assert_allclose(fit.beta, beta, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(fit.sigma2 * (n_scans - X.shape[1]), rss, rtol=1e-9)


def test_fit_does_not_depend_on_the_number_of_threads():
    rng = np.random.default_rng(4)
    X = np.column_stack([rng.standard_normal((90, 3)), np.ones(90)])
    Y = rng.normal(50, 3, (90, 1000)).astype(np.float32)
    names = ["a", "b", "c", "constant"]
    one = fit_glm(X, Y, names, chunk_voxels=100, n_threads=1)
    three = fit_glm(X, Y, names, chunk_voxels=100, n_threads=3)
    for field in ("beta", "sigma2", "r_squared", "ar1", "voxel_bin"):
        np.testing.assert_array_equal(getattr(three, field), getattr(one, field))


def test_ar1_refit_does_not_depend_on_threads_or_blocks():
    rng = np.random.default_rng(5)
    X = np.column_stack([rng.standard_normal((80, 3)), np.ones(80)])
    Y = rng.normal(50, 3, (80, 3000)).astype(np.float32)
    ols = ols_pass(design_operators(X), Y, 500, lag_cross=True)
    bin_rho, voxel_bin = bin_ar1(yule_walker_ar1(ols.moments, 80), 100)
    operators = whitened_operators(X, bin_rho)
    whole = ar1_voxel_fits(X, ols, bin_rho, voxel_bin, operators, 3000, n_threads=1)
    serial = ar1_voxel_fits(X, ols, bin_rho, voxel_bin, operators, 256, n_threads=1)
    threaded = ar1_voxel_fits(X, ols, bin_rho, voxel_bin, operators, 256, n_threads=3)
    for field in ("beta", "rss", "r_squared"):
        np.testing.assert_array_equal(getattr(threaded, field), getattr(serial, field))
        # other blocks change only the last bits (BLAS kernels per block width)
        np.testing.assert_allclose(
            getattr(serial, field), getattr(whole, field), rtol=1e-10, atol=1e-12
        )


@pytest.mark.parametrize(
    "rho",
    [
        np.random.default_rng(6).normal(0.3, 0.2, (40, 50)).clip(-1, 1),  # counted
        np.array([0.5, -0.004, 0.0, -0.0, 0.999, -1.0, 0.004]),  # truncation towards 0
        np.array([0.2, np.nan, 0.1]),  # not finite: sorted, as np.unique
        np.array([1e6, -1e6, 0.3]),  # a range wider than the voxels: sorted
        np.array([]),
    ],
)
def test_ar1_bins_are_those_of_np_unique(rho):
    steps = np.trunc(rho * 100)
    unique_steps, inverse = np.unique(steps, return_inverse=True)
    bin_rho, voxel_bin = bin_ar1(rho, 100)
    np.testing.assert_array_equal(bin_rho, unique_steps / 100)
    np.testing.assert_array_equal(voxel_bin, inverse.reshape(rho.shape))
    assert voxel_bin.dtype == np.intp


@pytest.mark.parametrize("dtype", [np.float32, np.uint8, np.int16, np.float64])
def test_nifti_bytes_equal_nibabel(dtype):
    rng = np.random.default_rng(5)
    volume = np.abs(rng.normal(0, 50, (6, 7, 5))).astype(dtype)
    image = nib.Nifti1Image(volume, AFFINE)
    image.header.set_xyzt_units("mm", "sec")
    image.header.set_qform(AFFINE, code=1)
    image.header.set_sform(AFFINE, code=1)
    assert nifti_bytes(volume, AFFINE) == image.to_bytes()
