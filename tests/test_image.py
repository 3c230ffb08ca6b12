"""Streamed reading, masking and smoothing against nibabel and nilearn on the same images."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from bids_glm.errors import InputError
from bids_glm.image.io import iter_volumes, read_masked_series
from bids_glm.image.mask import bounding_box

AFFINE = np.array(
    [[2.0, 0, 0, -20], [0, 2.5, 0, -30], [0, 0, 3.0, -10], [0, 0, 0, 1]]
)  # anisotropic voxels


def _image(tmp_path, data, name="bold.nii.gz", slope=None, inter=None):
    image = nib.Nifti1Image(data, AFFINE)
    if slope is not None:
        image.header.set_slope_inter(slope, inter)
    path = tmp_path / name
    image.to_filename(path)
    return path


def _sphere_mask(shape, centre, radius):
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius**2


@pytest.mark.parametrize("name", ["bold.nii.gz", "bold.nii"])
@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.float64, ">i2"])
def test_streamed_volumes_equal_nibabel(tmp_path, name, dtype):
    rng = np.random.default_rng(0)
    data = rng.normal(100, 30, (9, 8, 7, 5)).astype(dtype)
    path = _image(tmp_path, data, name)
    expected = nib.load(path).get_fdata()
    got = np.stack([v.copy() for v in iter_volumes(path)], axis=-1)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_scaled_int16_applies_slope_and_intercept(tmp_path):
    data = np.arange(4 * 3 * 2 * 3, dtype=np.int16).reshape(4, 3, 2, 3)
    path = _image(tmp_path, data, slope=0.5, inter=10.0)
    expected = nib.load(path).get_fdata()
    got = np.stack([v.copy() for v in iter_volumes(path)], axis=-1)
    np.testing.assert_allclose(got, expected)
    assert got[0, 0, 0, 0] == pytest.approx(10.0)


def test_truncated_file_is_an_input_error(tmp_path):
    path = _image(tmp_path, np.ones((5, 5, 5, 4), np.float32), "bold.nii")
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(InputError, match="truncated"):
        list(iter_volumes(path))


@pytest.mark.parametrize("centre", [(12, 13, 8), (3, 3, 2)])  # interior, touching the edge
@pytest.mark.parametrize("fwhm_mm", [5.0, 8.0])
def test_box_smoothing_equals_nilearn_whole_image(tmp_path, centre, fwhm_mm):
    from nilearn.image import smooth_img
    from nilearn.maskers import NiftiMasker

    rng = np.random.default_rng(1)
    shape = (24, 26, 16)
    data = rng.normal(500, 50, (*shape, 6)).astype(np.float32)
    path = _image(tmp_path, data)
    mask = _sphere_mask(shape, centre, 4)
    series = read_masked_series(path, mask, AFFINE, smoothing_fwhm_mm=fwhm_mm)
    smoothed = smooth_img(nib.load(path), fwhm_mm).get_fdata()
    expected = smoothed[mask].T
    np.testing.assert_allclose(series.data, expected, rtol=1e-5)
    masker = NiftiMasker(nib.Nifti1Image(mask.astype(np.uint8), AFFINE), smoothing_fwhm=fwhm_mm)
    np.testing.assert_allclose(series.data, masker.fit_transform(path), rtol=1e-5)
    assert series.usable.all()


def test_non_finite_and_constant_voxels_are_marked_unusable(tmp_path):
    rng = np.random.default_rng(2)
    data = rng.normal(100, 5, (6, 6, 6, 8)).astype(np.float32)
    data[2, 2, 2, 3] = np.nan
    data[3, 3, 3, :] = 7.0
    mask = np.ones((6, 6, 6), bool)
    series = read_masked_series(_image(tmp_path, data), mask, AFFINE)
    flat_index = {np.ravel_multi_index(ijk, mask.shape) for ijk in [(2, 2, 2), (3, 3, 3)]}
    assert set(np.flatnonzero(~series.usable)) == flat_index
    assert np.isfinite(series.data).all()


def test_mask_on_another_grid_is_refused(tmp_path):
    path = _image(tmp_path, np.ones((5, 5, 5, 3), np.float32))
    with pytest.raises(InputError, match="grid"):
        read_masked_series(path, np.ones((5, 5, 4), bool), AFFINE)


def test_bounding_box_is_clipped_to_the_image():
    mask = np.zeros((10, 10, 10), bool)
    mask[1:3, 4:6, 7:9] = True
    box = bounding_box(mask, (2, 1, 3))
    assert box == (slice(0, 5), slice(3, 7), slice(4, 10))


def test_keep_volumes_selects_rows_without_storing_the_others(tmp_path):
    rng = np.random.default_rng(3)
    data = rng.normal(100, 5, (5, 6, 4, 9)).astype(np.float32)
    mask = np.ones((5, 6, 4), bool)
    keep = np.array([0, 0, 1, 1, 0, 1, 1, 1, 0], bool)
    series = read_masked_series(_image(tmp_path, data), mask, AFFINE, 4.0, keep_volumes=keep)
    full = read_masked_series(_image(tmp_path, data, "b.nii.gz"), mask, AFFINE, 4.0)
    assert series.data.shape == (5, mask.sum())
    np.testing.assert_array_equal(series.data, full.data[keep])
    with pytest.raises(InputError, match="9 volumes, but the model describes 8"):
        read_masked_series(_image(tmp_path, data), mask, AFFINE, keep_volumes=keep[:8])


@pytest.mark.parametrize("centre", [(12, 13, 8), (3, 3, 2)])  # interior, touching the edge
@pytest.mark.parametrize("dtype", [np.int16, ">i2", np.uint8, np.float32])
def test_smoothing_integer_storage_is_scipy_on_float32_bit_for_bit(tmp_path, centre, dtype):
    """Integers up to 16 bits are smoothed straight from the stored volume (no float32 box
    copy): the result must be scipy's on the float32 data nilearn smooths, to the bit."""
    from scipy.ndimage import gaussian_filter1d

    from bids_glm.image.smooth import sigma_voxels

    rng = np.random.default_rng(4)
    shape = (24, 26, 16)
    data = rng.integers(0, 250, (*shape, 4)).astype(dtype)
    path = _image(tmp_path, data)
    mask = _sphere_mask(shape, centre, 5)
    series = read_masked_series(path, mask, AFFINE, smoothing_fwhm_mm=6.0)
    for t in range(data.shape[-1]):
        expected = np.asarray(data[..., t], dtype=np.float32)
        for axis, sigma in enumerate(sigma_voxels(6.0, AFFINE)):
            expected = gaussian_filter1d(expected, sigma, axis=axis, mode="reflect")
        np.testing.assert_array_equal(series.data[t], expected[mask])
