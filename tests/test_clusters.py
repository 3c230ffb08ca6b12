"""Thresholds (``glm.thresholding``) and cluster tables (``glm.clusters``) against nilearn 0.14."""

from __future__ import annotations

import ast
import re
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nilearn.glm import threshold_stats_img
from nilearn.reporting import get_clusters_table
from scipy import ndimage

import bids_glm.glm
from bids_glm.glm.clusters import CLUSTER_TABLE_COLUMNS, cluster_table
from bids_glm.glm.thresholding import Threshold, height_threshold, threshold_map

SHAPE = (30, 34, 28)
AFFINE = np.array([[-3.0, 0, 0, 90.0], [0, 3.0, 0, -126.0], [0, 0, 3.0, -72.0], [0, 0, 0, 1]])
# (centre in voxels, peak z, Gaussian sigma in voxels)
BLOBS = (
    ((8, 10, 9), 7.0, 1.6),
    ((20, 22, 16), 5.5, 2.2),
    ((22, 9, 20), -6.5, 1.8),
    ((12, 25, 8), 6.0, 1.5),
    ((13, 11, 10), 6.0, 1.4),  # near the first blob: two peaks in one cluster
)


def _planted_z(seed: int = 0) -> np.ndarray:
    """Gaussian blobs of known centre and sign on smooth unit-variance noise."""
    rng = np.random.default_rng(seed)
    grid = np.indices(SHAPE).astype(float)
    noise = ndimage.gaussian_filter(rng.standard_normal(SHAPE), 1.0)
    z = noise / noise.std()
    for centre, peak, sigma in BLOBS:
        squared = sum((grid[axis] - centre[axis]) ** 2 for axis in range(3))
        z += peak * np.exp(-squared / (2 * sigma**2))
    return z


def _brain_mask() -> np.ndarray:
    grid = np.indices(SHAPE).astype(float)
    radii = (np.array(SHAPE) - 2) / 2
    centre = (np.array(SHAPE) - 1) / 2
    return sum(((grid[a] - centre[a]) / radii[a]) ** 2 for a in range(3)) <= 1


@pytest.fixture(scope="module")
def z_map() -> np.ndarray:
    return _planted_z()


@pytest.fixture(scope="module")
def mask() -> np.ndarray:
    return _brain_mask()


def _nilearn_threshold(z, mask, height_control, alpha, cluster_extent, two_sided):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image, z_threshold = threshold_stats_img(
            nib.Nifti1Image(z, AFFINE),
            mask_img=nib.Nifti1Image(mask.astype(np.uint8), AFFINE),
            alpha=alpha,
            threshold=3.09 if height_control == "none" else None,
            height_control=None if height_control == "none" else height_control,
            cluster_threshold=cluster_extent,
            two_sided=two_sided,
        )
    return np.asarray(image.dataobj), float(z_threshold)


@pytest.mark.parametrize("two_sided", [False, True])
@pytest.mark.parametrize("cluster_extent", [0, 10])
@pytest.mark.parametrize(
    ("height_control", "alpha"),
    [("fpr", 0.001), ("fpr", 0.01), ("fdr", 0.05), ("bonferroni", 0.05), ("none", 0.0)],
)
def test_threshold_map_equals_nilearn(
    z_map, mask, height_control, alpha, cluster_extent, two_sided
):
    ours, applied = threshold_map(
        z_map, mask, height_control, alpha, cluster_extent, two_sided, threshold_none=3.09
    )
    expected, expected_threshold = _nilearn_threshold(
        z_map, mask, height_control, alpha, cluster_extent, two_sided
    )
    assert applied.z_threshold == pytest.approx(expected_threshold, abs=1e-10)
    np.testing.assert_array_equal(ours, expected)
    assert applied == Threshold(
        height_control, alpha, cluster_extent, applied.z_threshold, two_sided
    )
    # the planted blobs survive; nothing survives outside the mask
    assert np.count_nonzero(ours) > 0
    assert not ours[~mask].any()


@pytest.mark.parametrize("height_control", ["fpr", "fdr", "bonferroni"])
def test_threshold_map_equals_nilearn_on_float32(z_map, mask, height_control):
    z32 = z_map.astype(np.float32)
    ours, applied = threshold_map(z32, mask, height_control, 0.05, 10, two_sided=True)
    expected, expected_threshold = _nilearn_threshold(z32, mask, height_control, 0.05, 10, True)
    assert ours.dtype == np.float32
    assert applied.z_threshold == pytest.approx(expected_threshold, abs=1e-10)
    np.testing.assert_array_equal(ours, expected)


def test_height_threshold_closed_forms(z_map, mask):
    in_mask = z_map[mask]
    assert height_threshold(in_mask, "fpr", 0.001) == pytest.approx(3.090232306167813, abs=1e-12)
    assert height_threshold(in_mask, "fpr", 0.05, two_sided=True) == pytest.approx(
        1.959963984540054, abs=1e-12
    )
    bonferroni = height_threshold(in_mask, "bonferroni", 0.05)
    assert (
        bonferroni
        > height_threshold(in_mask, "fdr", 0.05)
        > height_threshold(in_mask, "fpr", 0.05)
    )
    assert height_threshold(in_mask, "none", threshold_none=2.5) == 2.5


def test_fdr_rejecting_nothing_gives_infinite_threshold_and_empty_map(mask):
    flat = np.zeros(SHAPE)
    thresholded, applied = threshold_map(flat, mask, "fdr", 0.05)
    assert applied.z_threshold == np.inf
    assert not thresholded.any()


def test_fdr_on_the_nilearn_docstring_example():
    z = np.array([4.0, 3.5, 2.8, 2.5, 1.9, 1.2])
    assert round(height_threshold(z, "fdr", 0.05), 2) == 1.9


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"height_control": "holm"}, "height_control must be one of"),
        ({"alpha": 0.0}, "alpha must be in"),
        ({"cluster_extent": -1}, "cluster_extent must be"),
        ({"height_control": "none", "threshold_none": -1.0}, "must be non-negative"),
    ],
)
def test_threshold_map_rejects_bad_arguments(z_map, mask, arguments, message):
    with pytest.raises(ValueError, match=message):
        threshold_map(z_map, mask, **arguments)


def test_threshold_map_rejects_mask_of_other_shape(z_map):
    with pytest.raises(ValueError, match=r"mask must have the z map's shape"):
        threshold_map(z_map, np.ones((2, 2, 2)))


def _harmonised_nilearn_table(z, threshold, cluster_extent, two_sided) -> pd.DataFrame:
    """nilearn's table with our dtypes and consecutive cluster numbers."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = get_clusters_table(
            nib.Nifti1Image(z, AFFINE),
            stat_threshold=threshold,
            cluster_threshold=cluster_extent,
            two_sided=two_sided,
        )
    numbers = table["Cluster ID"].astype(str).str.extract(r"^(\d+)([a-z]?)$")
    renumbered = {n: str(i) for i, n in enumerate(dict.fromkeys(numbers[0]), start=1)}
    table["Cluster ID"] = numbers[0].map(renumbered) + numbers[1]
    table["Cluster Size (mm3)"] = pd.to_numeric(
        table["Cluster Size (mm3)"].replace("", pd.NA)
    ).astype("Int64")
    return table.astype({"X": float, "Y": float, "Z": float, "Peak Stat": float})


def _distinct_peaks_per_cluster(table: pd.DataFrame, min_distance_mm: float) -> bool:
    clusters = table["Cluster ID"].str.extract(r"^(\d+)")[0]
    for _, rows in table.groupby(clusters):
        xyz = rows[["X", "Y", "Z"]].to_numpy()
        distances = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)
        if np.any(distances[np.triu_indices(len(xyz), 1)] <= min_distance_mm):
            return False
    return True


@pytest.mark.parametrize("two_sided", [False, True])
@pytest.mark.parametrize("cluster_extent", [0, 5])
@pytest.mark.parametrize("threshold", [2.3, 3.1])
def test_cluster_table_equals_nilearn(z_map, threshold, cluster_extent, two_sided):
    ours = cluster_table(z_map, AFFINE, threshold, cluster_extent, two_sided=two_sided)
    expected = _harmonised_nilearn_table(z_map, threshold, cluster_extent, two_sided)
    assert list(ours.columns) == list(CLUSTER_TABLE_COLUMNS)
    voxel_mm3 = 27.0
    np.testing.assert_array_equal(
        ours["Cluster Size (mm3)"].dropna().to_numpy(),
        (ours["Cluster Size (voxels)"].dropna().to_numpy() * voxel_mm3).astype(int),
    )
    # nilearn's paring quirk (see the test below) does not arise on this map
    assert _distinct_peaks_per_cluster(expected, 8.0)
    assert expected["Cluster ID"].str.contains("[a-z]").any()  # subpeaks are compared too
    pd.testing.assert_frame_equal(
        ours.drop(columns="Cluster Size (voxels)"), expected, check_exact=False, atol=1e-9
    )
    assert (ours["Peak Stat"].abs() > threshold).all()
    assert two_sided == (ours["Peak Stat"] < 0).any()


def test_cluster_table_finds_planted_blob_centres_and_sizes(z_map):
    table = cluster_table(z_map, AFFINE, 3.1, cluster_extent=5, two_sided=True)
    peaks = table[table["Cluster Size (voxels)"].notna()]
    for centre, peak, _ in BLOBS[:4]:
        centre_mm = AFFINE[:3, :3] @ np.array(centre) + AFFINE[:3, 3]
        distances = np.linalg.norm(table[["X", "Y", "Z"]].to_numpy() - centre_mm, axis=1)
        nearest = table.iloc[int(np.argmin(distances))]
        assert distances.min() <= np.sqrt(3) * 3.0 + 1e-9  # within one voxel
        assert np.sign(nearest["Peak Stat"]) == np.sign(peak)
    assert list(peaks["Cluster ID"]) == [str(i) for i in range(1, len(peaks) + 1)]
    positive = peaks[peaks["Peak Stat"] > 0]["Peak Stat"].to_numpy()
    assert np.all(np.diff(positive) <= 0)


def _flat_cube_with_bump() -> np.ndarray:
    """A 9-voxel cube at z=4 (flat inside) with one raised corner: flat voxels are no peaks."""
    z = np.zeros(SHAPE)
    z[5:14, 5:14, 5:14] = 4.0
    z[6:8, 6:8, 6:8] = [[[5.0, 5.5], [5.2, 6.0]], [[5.1, 5.4], [5.3, 5.9]]]
    return z


def _peaks_exactly_8_mm_apart() -> np.ndarray:
    """On a 2 mm grid, a second peak 4 voxels (8.0 mm) and a third 5 voxels away."""
    z = np.zeros(SHAPE)
    x = np.arange(SHAPE[0], dtype=float)
    profile = 3.5 + sum(
        height * np.exp(-((x - at) ** 2) / 2) for at, height in ((10, 5.0), (14, 4.0), (19, 3.0))
    )
    z[4:26, 10:12, 10:12] = profile[4:26, None, None]
    return z


@pytest.mark.parametrize(
    ("make_z", "affine"),
    [(_flat_cube_with_bump, AFFINE), (_peaks_exactly_8_mm_apart, np.diag([2.0, 2.0, 2.0, 1.0]))],
)
def test_cluster_table_edge_cases_equal_nilearn(make_z, affine):
    z = make_z()
    ours = cluster_table(z, affine, 3.0).drop(columns="Cluster Size (voxels)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = get_clusters_table(nib.Nifti1Image(z, affine), 3.0)
    expected = expected.astype({"Cluster ID": str, "X": float, "Y": float, "Z": float})
    expected["Cluster Size (mm3)"] = pd.to_numeric(
        expected["Cluster Size (mm3)"].replace("", pd.NA)
    ).astype("Int64")
    pd.testing.assert_frame_equal(ours, expected, check_exact=False, atol=1e-9)
    assert len(ours) == 2  # one peak plus one subpeak in both cases


def test_cluster_size_of_a_binary_cube_and_its_centre():
    z = np.zeros(SHAPE)
    z[10:14, 10:14, 10:14] = 5.0  # 64 voxels, centre of mass at 11.5 -> rounds to 12
    table = cluster_table(z, AFFINE, 3.0)
    assert len(table) == 1
    row = table.iloc[0]
    assert row["Cluster Size (voxels)"] == 64
    assert row["Cluster Size (mm3)"] == 64 * 27
    np.testing.assert_allclose(
        row[["X", "Y", "Z"]].to_numpy(float), AFFINE[:3, :3] @ [12, 12, 12] + AFFINE[:3, 3]
    )
    pd.testing.assert_frame_equal(
        table.drop(columns="Cluster Size (voxels)"),
        _harmonised_nilearn_table(z, 3.0, 0, False),
    )


def _bar_of_peaks(length: int, peaks: dict[int, float], sigma: float) -> np.ndarray:
    """A 2x2-voxel bar along x (1 mm voxels): Gaussian peaks on a floor of 2."""
    x = np.arange(length, dtype=float)
    profile = 2.0 + sum(
        (height - 2.0) * np.exp(-((x - at) ** 2) / (2 * sigma**2)) for at, height in peaks.items()
    )
    z = np.zeros((length, 6, 6))
    z[:, 2:4, 2:4] = profile[:, None, None]
    z[[0, -1]] = 0
    return z


def test_subpeaks_closer_than_min_distance_are_dropped_unlike_nilearn():
    # Peaks A > B > C on a line: B is 9 mm from A, C is 6 mm from A and 15 mm from B.
    # nilearn only compares C with B (the last peak it kept) and reports it.
    z = _bar_of_peaks(40, {14: 9.0, 23: 8.0, 8: 7.0}, sigma=2.0)
    table = cluster_table(z, np.eye(4), 3.0)
    assert list(table["Cluster ID"]) == ["1", "1a"]
    np.testing.assert_array_equal(table["X"], [14.0, 23.0])
    assert _distinct_peaks_per_cluster(table, 8.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nilearn_table = get_clusters_table(nib.Nifti1Image(z, np.eye(4)), 3.0)
    assert list(nilearn_table["Cluster ID"]) == [1, "1a", "1b"]
    np.testing.assert_array_equal(nilearn_table["X"], [14.0, 23.0, 8.0])


def test_max_subpeaks_limits_rows():
    z = _bar_of_peaks(60, {at: 10.0 - at / 10 for at in range(5, 56, 10)}, sigma=3.0)
    full = cluster_table(z, np.eye(4), 3.0, max_subpeaks=3)
    assert list(full["Cluster ID"]) == ["1", "1a", "1b", "1c"]
    np.testing.assert_array_equal(full["X"], [5.0, 15.0, 25.0, 35.0])
    only_peak = cluster_table(z, np.eye(4), 3.0, max_subpeaks=0)
    assert list(only_peak["Cluster ID"]) == ["1"]
    with pytest.raises(ValueError, match="at most 26"):
        cluster_table(z, np.eye(4), 3.0, max_subpeaks=27)


def test_nothing_above_threshold_gives_empty_table_with_columns(z_map):
    table = cluster_table(z_map, AFFINE, 50.0, two_sided=True)
    assert table.empty
    assert list(table.columns) == list(CLUSTER_TABLE_COLUMNS)


def test_cluster_table_rejects_negative_threshold(z_map):
    with pytest.raises(ValueError, match=re.escape("must be non-negative")):
        cluster_table(z_map, AFFINE, -1.0)


@settings(max_examples=30, deadline=None)
@given(
    low=st.floats(0.0, 6.0),
    step=st.floats(0.0, 3.0),
    extent=st.integers(0, 20),
    two_sided=st.booleans(),
)
def test_raising_the_threshold_never_adds_voxels(low, step, extent, two_sided):
    z = _planted_z(seed=1)
    mask = _brain_mask()
    lower, _ = threshold_map(z, mask, "none", 0.0, extent, two_sided, threshold_none=low)
    higher, _ = threshold_map(z, mask, "none", 0.0, extent, two_sided, threshold_none=low + step)
    assert np.count_nonzero(higher) <= np.count_nonzero(lower)
    assert not (higher.astype(bool) & ~lower.astype(bool)).any()


def test_cluster_size_of_a_planted_blob_within_20_percent(z_map):
    """Each isolated blob's cluster has the size of its noiseless supra-threshold core."""
    grid = np.indices(SHAPE).astype(float)
    table = cluster_table(z_map, AFFINE, 3.1, two_sided=True)
    peaks = table[table["Cluster Size (voxels)"].notna()]
    for centre, peak, sigma in BLOBS[1:4]:  # blobs 0 and 4 merge into one cluster
        squared = sum((grid[axis] - centre[axis]) ** 2 for axis in range(3))
        expected = int((abs(peak) * np.exp(-squared / (2 * sigma**2)) > 3.1).sum())
        centre_mm = AFFINE[:3, :3] @ np.array(centre) + AFFINE[:3, 3]
        distances = np.linalg.norm(peaks[["X", "Y", "Z"]].to_numpy() - centre_mm, axis=1)
        found = peaks.iloc[int(np.argmin(distances))]
        assert distances.min() <= np.sqrt(3) * 3.0 + 1e-9  # its centre within one voxel
        assert found["Cluster Size (voxels)"] == pytest.approx(expected, rel=0.2)
        assert found["Cluster Size (mm3)"] == int(found["Cluster Size (voxels)"] * 27)


def _maxima_cluster_by_cluster(values, labels):
    """Reference: each cluster alone (others set to 0), scipy's 3x3x3 filters on its box."""
    maxima = np.zeros(labels.shape, dtype=bool)
    for cluster_id, box in enumerate(ndimage.find_objects(labels), start=1):
        grown = tuple(
            slice(max(s.start - 1, 0), min(s.stop + 1, n))
            for s, n in zip(box, labels.shape, strict=True)
        )
        inside = labels[grown] == cluster_id
        own = np.where(inside, values[grown], 0)
        highest = ndimage.maximum_filter(own, size=3)
        is_max = (own == highest) & inside
        if not np.isclose(own[inside].max(), own[inside].min()):
            is_max &= highest - ndimage.minimum_filter(own, size=3) > 0
        maxima[grown] |= is_max
    return maxima


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_local_maxima_visiting_cluster_voxels_equal_filters_on_each_cluster(seed):
    from bids_glm.glm.cluster_peaks import cluster_local_maxima

    rng = np.random.default_rng(seed)
    z = ndimage.gaussian_filter(rng.standard_normal((30, 28, 26)), 0.8) * 4
    z[2:6, 2:6, 2:6] = 5.0  # a flat cluster (plateau)
    z[-3:, :4, :4] = 6.0 + rng.uniform(0, 1, (3, 4, 4))  # touches the array's faces
    labels, n_clusters = ndimage.label(z > 1.0)  # face-connected; many touch diagonally
    values = np.where(labels > 0, z, 0)
    expected = _maxima_cluster_by_cluster(values, labels)
    assert n_clusters > 20 and expected.sum() > 20
    np.testing.assert_array_equal(cluster_local_maxima(values, labels), expected)


def test_glm_statistics_import_nothing_above_glm():
    """glm computes; the report, the derivatives, the pipeline and the CLI only call it."""
    upper = ("bids_glm.report", "bids_glm.derivatives", "bids_glm.pipeline", "bids_glm.cli")
    for path in Path(bids_glm.glm.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            assert not [n for n in names if n.startswith(upper)], (path.name, names)
