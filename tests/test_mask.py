"""Mask combination, nearest-neighbour resampling and EPI masks against nilearn."""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from bids_glm.demo.dataset import make_demo_dataset
from bids_glm.image.epi_mask import compute_epi_mask, largest_component, mean_volume
from bids_glm.image.mask import combine_masks
from bids_glm.image.mask_rule import INTERSECTION, UNION, MaskRule, parse_mask_rule
from bids_glm.image.resample import resample_mask_nearest

AFFINE = np.array(
    [
        [3.0, 0.0, 0.0, -30.0],
        [0.0, 3.0, 0.0, -36.0],
        [0.0, 0.0, 3.5, -20.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)
SHAPE = (20, 24, 18)


def _blobby_mask(seed: int, shape=SHAPE) -> np.ndarray:
    """A random mask made of smooth blobs (several components, irregular edges)."""
    noise = np.random.default_rng(seed).normal(size=shape)
    return gaussian_filter(noise, 2.0) > 0.02


def _nifti(mask: np.ndarray, affine=AFFINE) -> nib.Nifti1Image:
    return nib.Nifti1Image(mask.astype(np.int8), affine)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> tuple[Path, Path]:
    """Preprocessed BOLD and brain mask of a one-run demo subject."""
    bids_dir = tmp_path_factory.mktemp("demo") / "bids"
    make_demo_dataset(bids_dir, n_subjects=1, n_runs=1)
    func = bids_dir / "derivatives" / "fmriprep" / "sub-01" / "func"
    (bold,) = func.glob("*desc-preproc_bold.nii.gz")
    (brain,) = func.glob("*desc-brain_mask.nii.gz")
    return bold, brain


# --- combination rules ---------------------------------------------------------------


@pytest.mark.parametrize("n_masks", [1, 3, 4])
@pytest.mark.parametrize(
    ("rule", "threshold"),
    [("intersection", 1.0), ("union", 0.0), ("fraction:0.5", 0.5), ("fraction:0.25", 0.25)],
)
def test_combine_masks_matches_nilearn_intersect_masks(n_masks, rule, threshold):
    """Same voxels as nilearn's threshold rule (strictly more than F of the masks).

    With 4 masks and F = 0.5 a voxel in exactly 2 masks is out: the tie case.
    """
    from nilearn.masking import intersect_masks

    masks = [_blobby_mask(seed) for seed in range(n_masks)]
    expected = intersect_masks([_nifti(m) for m in masks], threshold=threshold, connected=False)
    combined = combine_masks(masks, parse_mask_rule(rule))
    assert combined.dtype == bool
    np.testing.assert_array_equal(combined, expected.get_fdata() != 0)


def test_combine_masks_rules_on_counts():
    """Planted counts: voxel k lies in exactly k of 4 masks."""
    counts = np.arange(5).reshape(5, 1, 1)
    masks = [counts > i for i in range(4)]
    assert combine_masks(masks).ravel().tolist() == [0, 0, 0, 0, 1]
    assert combine_masks(masks, UNION).ravel().tolist() == [0, 1, 1, 1, 1]
    assert combine_masks(masks, MaskRule("fraction", 0.5)).ravel().tolist() == [0, 0, 0, 1, 1]
    assert combine_masks(masks, MaskRule("fraction", 0.49)).ravel().tolist() == [0, 0, 1, 1, 1]
    assert combine_masks(masks, MaskRule("fraction", 1.0)).ravel().tolist() == [0, 0, 0, 0, 1]


@pytest.mark.parametrize(
    ("text", "rule", "canonical"),
    [
        ("intersection", INTERSECTION, "intersection"),
        (" Union ", UNION, "union"),
        ("fraction:0.5", MaskRule("fraction", 0.5), "fraction:0.5"),
        ("FRACTION:1", MaskRule("fraction", 1.0), "fraction:1.0"),
        ("fraction:.25", MaskRule("fraction", 0.25), "fraction:0.25"),
    ],
)
def test_parse_mask_rule_accepts_the_documented_forms(text, rule, canonical):
    """The parsed rule, and its text as outputs record it (``str``)."""
    assert parse_mask_rule(text) == rule
    assert str(parse_mask_rule(text)) == canonical
    assert parse_mask_rule(canonical) == rule


@pytest.mark.parametrize(
    "text",
    ["", "inter", "fraction", "fraction:", "fraction:0", "fraction:1.5", "fraction:-0.2",
     "fraction:abc", "fraction:nan", "fraction:inf", "fractions:0.5", "union:0.5"],
)  # fmt: skip
def test_parse_mask_rule_rejects_bad_values_and_lists_the_forms(text):
    with pytest.raises(ValueError, match="mask combination rule") as error:
        parse_mask_rule(text)
    message = str(error.value)
    for form in ("'intersection'", "'union'", "'fraction:F'", "0 < F <= 1", repr(text)):
        assert form in message


@pytest.mark.parametrize(
    ("kind", "fraction"),
    [
        ("majority", 0.5),
        ("intersection", 0.5),
        ("union", 1.0),
        ("fraction", 0.0),
        ("fraction", 2.0),
    ],
)
def test_a_mask_rule_is_checked_when_made(kind, fraction):
    with pytest.raises(ValueError, match="'fraction:F'"):
        MaskRule(kind, fraction)


def test_combine_masks_errors():
    mask = _blobby_mask(0)
    with pytest.raises(ValueError, match="at least one mask"):
        combine_masks([])
    with pytest.raises(ValueError, match=r"one shape.*\(20, 24, 18\)"):
        combine_masks([mask, mask[:-1]])


# --- nearest-neighbour resampling ------------------------------------------------------


def _rotated(affine: np.ndarray, angle_rad: float) -> np.ndarray:
    rotation = np.array(
        [
            [np.cos(angle_rad), -np.sin(angle_rad), 0.0],
            [np.sin(angle_rad), np.cos(angle_rad), 0.0],
            [0.0, 0.0, 1.0],
        ]
    )
    rotated = affine.copy()
    rotated[:3, :3] = rotation @ affine[:3, :3]
    return rotated


def _target_grids():
    coarse = AFFINE.copy()
    coarse[:3, :3] *= 2.0
    half_voxel = AFFINE.copy()
    half_voxel[:3, 3] += [1.5, -1.5, 1.75]
    shifted = AFFINE.copy()
    shifted[:3, 3] += [0.7, -2.2, 5.0]
    flipped = AFFINE.copy()
    flipped[0, 0], flipped[0, 3] = -3.0, 30.0
    zoomed_ties = half_voxel.copy()
    zoomed_ties[:3, :3] = np.diag([2.5, 2.0, 2.8])
    return {
        "2x coarser": (coarse, (10, 12, 9)),
        "half-voxel shift (rounding ties)": (half_voxel, SHAPE),
        "finer non-integer zoom with ties": (zoomed_ties, (24, 36, 22)),
        "shifted, other shape": (shifted, (22, 20, 19)),
        "flipped x": (flipped, SHAPE),
        "rotated 0.3 rad": (_rotated(AFFINE, 0.3), SHAPE),
    }


@pytest.mark.parametrize("grid", list(_target_grids()))
def test_resample_mask_nearest_matches_nilearn(grid):
    """Exact equality, including target centres half-way between source voxels.

    At such ties scipy's order-0 interpolation rounds differently for a full matrix and
    for a diagonal given as a vector (237 voxels differ on the "finer non-integer zoom"
    grid), so both sides must make the same call.
    """
    from nilearn.image import resample_img

    target_affine, target_shape = _target_grids()[grid]
    mask = _blobby_mask(7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = resample_img(
            _nifti(mask),
            target_affine=target_affine,
            target_shape=target_shape,
            interpolation="nearest",
            force_resample=True,
            copy_header=True,
        )
    resampled = resample_mask_nearest(mask, AFFINE, target_shape, target_affine)
    assert resampled.dtype == bool
    assert resampled.shape == target_shape
    assert resampled.any()
    np.testing.assert_array_equal(resampled, expected.get_fdata() != 0)


def test_resample_mask_nearest_coarser_grid_takes_every_other_voxel():
    """Planted truth: voxel centres of a 2x grid with the same origin are source voxels."""
    mask = _blobby_mask(3)
    coarse = AFFINE.copy()
    coarse[:3, :3] *= 2.0
    resampled = resample_mask_nearest(mask, AFFINE, (10, 12, 9), coarse)
    np.testing.assert_array_equal(resampled, mask[::2, ::2, ::2])


def test_resample_mask_nearest_same_grid_is_identity():
    mask = _blobby_mask(4)
    np.testing.assert_array_equal(resample_mask_nearest(mask, AFFINE, SHAPE, AFFINE), mask)


def test_resample_mask_nearest_errors():
    mask = _blobby_mask(0)
    with pytest.raises(ValueError, match="3-D mask"):
        resample_mask_nearest(mask[..., 0], AFFINE, SHAPE, AFFINE)
    with pytest.raises(ValueError, match="4x4 affine"):
        resample_mask_nearest(mask, AFFINE[:3], SHAPE, AFFINE)
    with pytest.raises(ValueError, match="three positive integers"):
        resample_mask_nearest(mask, AFFINE, (20, 24), AFFINE)


# --- mean volume and EPI mask -----------------------------------------------------------


def test_mean_volume_matches_nibabel_on_demo(demo_run):
    """int16 data: float64 sums of integers are exact, so the means are identical."""
    bold, _ = demo_run
    mean, affine = mean_volume(bold)
    image = nib.load(bold)
    assert mean.dtype == np.float64
    np.testing.assert_array_equal(mean, image.get_fdata().mean(axis=-1))
    np.testing.assert_array_equal(affine, image.affine)


def test_mean_volume_of_scaled_float_data(tmp_path):
    data = np.random.default_rng(1).normal(100.0, 20.0, size=(5, 6, 4, 9)).astype(np.float32)
    data[1, 2, 3, 4] = np.nan
    image = nib.Nifti1Image(data, AFFINE)
    path = tmp_path / "bold.nii"
    image.to_filename(path)
    mean, _ = mean_volume(path)
    expected = nib.load(path).get_fdata().mean(axis=-1)
    np.testing.assert_allclose(mean, expected, rtol=1e-13, atol=0)
    assert np.isnan(mean[1, 2, 3])
    assert np.isfinite(np.delete(mean.ravel(), np.ravel_multi_index((1, 2, 3), mean.shape))).all()


@pytest.mark.parametrize("opening", [2, 1, 0])
def test_compute_epi_mask_matches_nilearn_on_demo(demo_run, opening):
    """Exactly nilearn's mask: the demo is int16, so both means are the same float64 array.

    Also covers at least 99% of the demo's brain mask (the true brain) and adds no voxel
    outside it.
    """
    from nilearn.masking import compute_epi_mask as nilearn_compute_epi_mask

    bold, brain_path = demo_run
    mean, _ = mean_volume(bold)
    mask = compute_epi_mask(mean, opening=opening)
    expected = nilearn_compute_epi_mask(str(bold), opening=opening).get_fdata() != 0
    np.testing.assert_array_equal(mask, expected)
    brain = nib.load(brain_path).get_fdata() != 0
    assert (mask & brain).sum() >= 0.99 * brain.sum()
    assert not (mask & ~brain).any()


def _soft_edged_phantom(nan_fraction: float) -> np.ndarray:
    """An ellipsoid with a soft (sigmoid) edge, noise, scattered NaNs and a detached blob.

    The soft edge puts the histogram gap among graded values, so the light smoothing, the
    NaN handling and the connected-component step all change the result.
    """
    rng = np.random.default_rng(0)
    shape = (24, 26, 22)
    grid = np.indices(shape).astype(float)
    centre = np.array(shape) / 2.0 + rng.normal(0.0, 1.0, 3)
    semi_axes = np.array([8.0, 9.0, 7.5])
    scaled = (grid - centre[:, None, None, None]) / semi_axes[:, None, None, None]
    radius = np.sqrt((scaled**2).sum(axis=0))
    mean = 60.0 + 900.0 / (1.0 + np.exp((radius - 1.0) / 0.08)) + rng.normal(0.0, 40.0, shape)
    mean[1:4, 1:4, 1:4] = 950.0  # detached from the brain: not the largest component
    mean[rng.random(shape) < nan_fraction] = np.nan
    return mean


@pytest.mark.parametrize("nan_fraction", [0.0, 0.02, 0.2])
@pytest.mark.parametrize("opening", [2, 0])
@pytest.mark.parametrize("cutoffs", [(0.2, 0.85), (0.1, 0.95)])
def test_compute_epi_mask_matches_nilearn_on_a_soft_edged_phantom(nan_fraction, opening, cutoffs):
    from nilearn.masking import compute_epi_mask as nilearn_compute_epi_mask

    mean = _soft_edged_phantom(nan_fraction)
    mask = compute_epi_mask(mean, *cutoffs, opening=opening)
    expected = nilearn_compute_epi_mask(
        nib.Nifti1Image(mean, AFFINE), *cutoffs, opening=opening
    ).get_fdata()
    np.testing.assert_array_equal(mask, expected != 0)
    assert mask.any()
    assert not mask[1:4, 1:4, 1:4].any()


def test_largest_component_keeps_the_biggest_blob():
    mask = np.zeros((10, 10, 10), dtype=bool)
    mask[1:3, 1:3, 1:3] = True  # 8 voxels
    mask[5:9, 5:9, 5:9] = True  # 64 voxels
    mask[0, 9, 9] = True
    expected = np.zeros_like(mask)
    expected[5:9, 5:9, 5:9] = True
    np.testing.assert_array_equal(largest_component(mask), expected)


def test_compute_epi_mask_errors():
    with pytest.raises(ValueError, match="3-D mean image"):
        compute_epi_mask(np.ones((4, 4)))
    with pytest.raises(ValueError, match="lower_cutoff < upper_cutoff"):
        compute_epi_mask(np.ones((4, 4, 4)), 0.9, 0.2)
    with pytest.raises(ValueError, match="opening >= 0"):
        compute_epi_mask(np.ones((4, 4, 4)), opening=-1)
    with pytest.raises(ValueError, match="mask is empty"):
        compute_epi_mask(np.random.default_rng(0).normal(size=(6, 6, 6)), opening=2)
