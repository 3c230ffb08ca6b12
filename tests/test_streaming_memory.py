"""What issue 18's memory cuts must not change: maps compressed in slabs, contrasts formed
again for fixed effects from a held fit, the mean volume summed in int32."""

from __future__ import annotations

import zlib

import nibabel as nib
import numpy as np
import pytest

from bids_glm.glm.contrast import LazyContrasts, compute_contrast, contrast_estimates
from bids_glm.glm.fit import fit_glm
from bids_glm.image import nifti_bytes
from bids_glm.image.series_layout import SeriesLayout
from bids_glm.image.volume_reducer import VolumeReducer

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def _map_volume(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Zeros outside an ellipsoid, noisy float32 values inside (as a written map)."""
    rng = np.random.default_rng(seed)
    volume = rng.standard_normal(shape).astype(np.float32)
    axes = np.ogrid[tuple(slice(0, n) for n in shape[:3])]
    inside = sum(((a - (n - 1) / 2) / (n / 2)) ** 2 for a, n in zip(axes, shape, strict=False))
    volume[inside > 1.0] = 0.0
    return volume


@pytest.mark.parametrize("order", ["C", "F"])  # slabs copied / read in place
@pytest.mark.parametrize("shape", [(61, 73, 61), (9, 11, 13, 4), (3, 4, 1)])
def test_slab_compression_equals_compressing_the_whole_image(monkeypatch, shape, order):
    volume = np.asarray(_map_volume(shape), order=order)
    whole = nifti_bytes.nifti_bytes(volume, AFFINE)
    compressor = nifti_bytes._zlib.compressobj(
        nifti_bytes.GZIP_LEVEL,
        nifti_bytes._zlib.DEFLATED,
        nifti_bytes.GZIP_WBITS,
        nifti_bytes.GZIP_MEMLEVEL,
        nifti_bytes._zlib.Z_RLE,
    )
    expected = compressor.compress(whole) + compressor.flush()
    for slab_bytes in (1, 4096, nifti_bytes.SLAB_BYTES):
        monkeypatch.setattr(nifti_bytes, "SLAB_BYTES", slab_bytes)
        got = nifti_bytes.nifti_gz_bytes(volume, AFFINE)
        assert got == expected
    assert zlib.decompress(got, 31) == whole


def _fit(noise_model: str):
    rng = np.random.default_rng(3)
    n, n_voxels = 80, 500
    X = np.column_stack([np.sin(np.arange(n) / 5.0), rng.standard_normal(n), np.ones(n)])
    Y = X @ rng.standard_normal((3, n_voxels)) + rng.standard_normal((n, n_voxels))
    return fit_glm(X, Y, ["a", "b", "constant"], noise_model=noise_model)


@pytest.mark.parametrize("noise_model", ["ar1", "ols"])
@pytest.mark.parametrize(
    ("weights", "stat_type"),
    [(np.array([1.0, -1.0, 0.0]), "t"), (np.array([[1.0, 0, 0], [0, 1.0, 0]]), "F")],
)
def test_estimates_for_fixed_effects_equal_the_written_contrast(noise_model, weights, stat_type):
    fit = _fit(noise_model)
    full = compute_contrast(fit, weights, stat_type, "c")
    lazy = LazyContrasts(fit, {"c": (weights, stat_type, "c")})
    assert list(lazy) == ["c"] and len(lazy) == 1 and "c" in lazy
    for maps in (lazy["c"], contrast_estimates(fit, weights, stat_type, "c")):
        np.testing.assert_array_equal(maps.effect, full.effect)
        np.testing.assert_array_equal(maps.variance, full.variance)
        assert maps.dof == full.dof and maps.dof_num == full.dof_num
        assert not maps.stat.any() and not maps.z.any() and not maps.p.any()
        if stat_type == "F":
            np.testing.assert_array_equal(maps.estimate, full.estimate)
            np.testing.assert_array_equal(maps.covariance, full.covariance)


def test_mean_volume_is_exact_across_the_int32_to_int64_switch(monkeypatch):
    import bids_glm.image.volume_reducer as module

    monkeypatch.setattr(module, "INT32_EXACT_VOLUMES", 3)
    mask = np.ones((2, 2, 2), dtype=bool)
    layout = SeriesLayout((2, 2, 2, 6), np.eye(4), np.dtype(np.int16), 1.0, 0.0, 352)
    reducer = VolumeReducer(mask, np.zeros(3), np.empty((1, 8), np.float32), layout)
    volumes = [np.full((2, 2, 2), 2**15 - 1 - k, dtype=np.int16) for k in range(6)]
    for volume in volumes:
        reducer.add_to_mean(volume)
    expected = np.mean(np.stack(volumes).astype(np.float64), axis=0).astype(np.float32)
    np.testing.assert_array_equal(reducer.mean_volume(), expected)


def test_a_series_compressed_volume_by_volume_is_the_stacked_image():
    volumes = [_map_volume((13, 11, 7), seed) for seed in range(5)]
    expected = nifti_bytes.nifti_gz_bytes(np.stack(volumes, axis=-1), AFFINE)
    got = nifti_bytes.nifti_series_gz_bytes(iter(volumes), (13, 11, 7), 5, AFFINE)
    assert got == expected
    image = nib.Nifti1Image.from_bytes(zlib.decompress(got, 31))
    assert image.shape == (13, 11, 7, 5)
    np.testing.assert_array_equal(image.get_fdata(dtype=np.float32)[..., 3], volumes[3])
    with pytest.raises(ValueError, match="4 volumes given; the header says 5"):
        nifti_bytes.nifti_series_gz_bytes(iter(volumes[:4]), (13, 11, 7), 5, AFFINE)
