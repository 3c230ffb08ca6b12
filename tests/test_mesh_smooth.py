"""Meshes and smoothing along them: measures, FWHM against the closed-form Gaussian, masks."""

from __future__ import annotations

import numpy as np
import pytest
from mesh_helpers import icosphere, plane_mesh, write_surface
from scipy.optimize import curve_fit

from bids_glm.errors import InputError
from bids_glm.glm.surface_clusters import mesh_adjacency
from bids_glm.image.mesh import mesh_vertex_count, read_mesh
from bids_glm.image.mesh_smooth import (
    FWHM_PER_SIGMA,
    heat_time_mm2,
    mesh_smoother,
    smooth_on_mesh,
    smooth_voxel_structure,
)


@pytest.fixture(scope="module")
def plane():
    return plane_mesh(size_mm=44.0, spacing_mm=0.4)


def test_mesh_measures_of_a_sphere_and_a_plane(tmp_path):
    sphere = icosphere(3, radius_mm=50.0)
    assert sphere.n_vertices == 642 and len(sphere.triangles) == 1280
    assert sphere.vertex_areas_mm2().sum() == pytest.approx(4 * np.pi * 50.0**2, rel=0.01)
    assert sphere.vertex_areas_mm2().sum() == pytest.approx(sphere.triangle_areas_mm2().sum())
    degree = np.asarray(mesh_adjacency(sphere).sum(axis=1)).ravel()
    assert sorted(set(degree)) == [5, 6] and (degree == 5).sum() == 12
    assert len(sphere.edges()) == 1920 and sphere.edge_lengths_mm().min() > 0
    path = write_surface(tmp_path / "sphere.surf.gii", sphere)
    assert mesh_vertex_count(path) == 642
    read = read_mesh(path)
    np.testing.assert_allclose(read.vertices_mm, sphere.vertices_mm, atol=1e-4)
    np.testing.assert_array_equal(read.triangles, sphere.triangles)
    flat = plane_mesh(10.0, 1.0)
    assert flat.vertex_areas_mm2().sum() == pytest.approx(100.0)


def test_unreadable_mesh_is_an_input_error(tmp_path):
    bad = tmp_path / "bad.surf.gii"
    bad.write_text("not xml")
    with pytest.raises(InputError, match=r"bad\.surf\.gii"):
        read_mesh(bad)
    with pytest.raises(InputError, match=r"bad\.surf\.gii"):
        mesh_vertex_count(bad)


def _gaussian(r, amplitude, sigma):
    return amplitude * np.exp(-0.5 * (r / sigma) ** 2)


@pytest.mark.parametrize("fwhm_mm", [4.0, 6.0, 8.0])
def test_impulse_spreads_to_the_closed_form_gaussian(plane, fwhm_mm):
    centre = int(np.argmin(np.linalg.norm(plane.vertices_mm, axis=1)))
    impulse = np.zeros(plane.n_vertices, np.float32)
    impulse[centre] = 1.0 / plane.vertex_areas_mm2()[centre]  # unit mass
    smoothed = smooth_on_mesh(impulse, plane, fwhm_mm).astype(float)
    r_mm = np.linalg.norm(plane.vertices_mm, axis=1)
    sigma_mm = fwhm_mm / FWHM_PER_SIGMA
    closed_form = _gaussian(r_mm, 1.0 / (2 * np.pi * sigma_mm**2), sigma_mm)
    (amplitude, sigma_fit), _ = curve_fit(_gaussian, r_mm, smoothed, p0=(smoothed.max(), 1.0))
    assert abs(sigma_fit) * FWHM_PER_SIGMA == pytest.approx(fwhm_mm, rel=0.10)
    assert amplitude == pytest.approx(closed_form.max(), rel=0.10)
    assert np.abs(smoothed - closed_form).max() < 0.05 * closed_form.max()
    # half maximum crossed at FWHM / 2 from the peak
    half = r_mm[smoothed >= smoothed.max() / 2].max()
    assert 2 * half == pytest.approx(fwhm_mm, rel=0.10)
    # mass conserved, no negative values to speak of
    assert (smoothed * plane.vertex_areas_mm2()).sum() == pytest.approx(1.0, rel=1e-3)
    assert smoothed.min() > -1e-9 * smoothed.max()  # no visible undershoot


def test_heat_time_matches_the_gaussian_variance():
    sigma_mm = 6.0 / FWHM_PER_SIGMA
    assert heat_time_mm2(6.0) == pytest.approx(sigma_mm**2 / 2)


def test_constant_stays_constant_and_time_series_are_smoothed_per_volume():
    sphere = icosphere(4, radius_mm=60.0)
    constant = np.full((3, sphere.n_vertices), 7.5, np.float32)
    np.testing.assert_allclose(smooth_on_mesh(constant, sphere, 8.0), 7.5, rtol=1e-5)
    rng = np.random.default_rng(0)
    series = rng.standard_normal((4, sphere.n_vertices)).astype(np.float32)
    smoother = mesh_smoother(sphere, 6.0)
    both = smoother.apply(series)
    np.testing.assert_allclose(both[2], smoother.apply(series[2]), rtol=1e-5, atol=1e-6)
    assert both.std() < 0.7 * series.std()  # noise is reduced
    both_hemispheres = np.concatenate([series, series], axis=1)  # smoothed in place, per part
    smoother.apply_in_place(both_hemispheres[:, sphere.n_vertices :])
    np.testing.assert_array_equal(both_hemispheres[:, : sphere.n_vertices], series)
    np.testing.assert_allclose(both_hemispheres[:, sphere.n_vertices :], both, rtol=1e-6)


def test_excluded_vertices_do_not_leak():
    sphere = icosphere(4, radius_mm=60.0)
    wall = sphere.vertices_mm[:, 0] > 40.0  # a cap standing for the medial wall
    data = np.where(wall, 1000.0, 1.0).astype(np.float32)[None, :]
    smoothed = smooth_on_mesh(data, sphere, 10.0, included=~wall)
    np.testing.assert_allclose(smoothed[0, ~wall], 1.0, rtol=1e-5)  # renormalised, no leak
    np.testing.assert_array_equal(smoothed[0, wall], 1000.0)  # left as they were
    impulse = np.zeros(sphere.n_vertices, np.float32)
    border = np.flatnonzero(~wall & (sphere.vertices_mm[:, 0] > 36.0))[0]
    impulse[border] = 1.0
    spread = smooth_on_mesh(impulse, sphere, 10.0, included=~wall)
    assert spread[wall].sum() == 0.0
    areas = sphere.vertex_areas_mm2()
    assert (spread * areas).sum() == pytest.approx(areas[border], rel=1e-4)  # mass kept


def test_voxel_structure_smoothing_stays_within_the_structure():
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    grid = np.stack(np.meshgrid(*[np.arange(15)] * 3, indexing="ij"), -1).reshape(-1, 3)
    ijk = grid[np.linalg.norm(grid - 7, axis=1) <= 7]  # a ball of voxels
    impulse = np.zeros((2, len(ijk)), np.float32)
    centre = int(np.flatnonzero((ijk == 7).all(axis=1))[0])
    impulse[0, centre] = 1.0
    impulse[1] = 3.0
    fwhm_mm = 6.0
    smoothed = smooth_voxel_structure(impulse, ijk, affine, fwhm_mm)
    np.testing.assert_allclose(smoothed[1], 3.0, rtol=1e-5)  # a constant: renormalised
    # dense reference: each voxel's truncated Gaussian weights over the ball, summing to 1
    sigma_mm = fwhm_mm / FWHM_PER_SIGMA
    distance_mm = np.linalg.norm((ijk[:, None] - ijk[None]) * 2.0, axis=2)
    weights = np.exp(-0.5 * (distance_mm / sigma_mm) ** 2) * (distance_mm <= 3 * sigma_mm)
    weights /= weights.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(smoothed[0], weights[:, centre], rtol=1e-4, atol=1e-8)
    inner = np.linalg.norm(ijk - 7, axis=1) * 2.0 <= 14.0 - 3 * sigma_mm
    r_mm = distance_mm[centre]
    gaussian = np.exp(-0.5 * (r_mm / sigma_mm) ** 2) * (r_mm <= 3 * sigma_mm)
    np.testing.assert_allclose(smoothed[0, inner], (gaussian / gaussian.sum())[inner], rtol=1e-4)
    np.testing.assert_array_equal(smooth_voxel_structure(impulse, ijk, affine, 0.0), impulse)


def _grayordinates(mesh, cortex_mask, voxels_ijk):
    """A BrainModelAxis: both cortices (vertices in ``cortex_mask``) and one voxel structure."""
    from nibabel.cifti2 import BrainModelAxis

    left = BrainModelAxis.from_mask(cortex_mask, name="CortexLeft")
    right = BrainModelAxis.from_mask(cortex_mask, name="CortexRight")
    volume = np.zeros((12, 12, 12), dtype=bool)
    volume[tuple(voxels_ijk.T)] = True
    thalamus = BrainModelAxis.from_mask(volume, name="ThalamusLeft", affine=np.diag([2, 2, 2, 1]))
    return left + right + thalamus


def test_grayordinates_are_smoothed_within_each_structure():
    from bids_glm.image.cifti_smooth import smooth_grayordinates

    sphere = icosphere(4, radius_mm=60.0)
    cortex_mask = sphere.vertices_mm[:, 0] < 40.0  # the medial wall is not a grayordinate
    grid = np.stack(np.meshgrid(*[np.arange(12)] * 3, indexing="ij"), -1).reshape(-1, 3)
    ijk = grid[np.linalg.norm(grid - 5.5, axis=1) <= 5]
    axis = _grayordinates(sphere, cortex_mask, ijk)
    n_cortex = int(cortex_mask.sum())
    rng = np.random.default_rng(0)
    data = (100 + rng.standard_normal((3, len(axis)))).astype(np.float32)
    data[:, 5] = np.nan  # an unusable vertex
    meshes = {"L": sphere, "R": sphere}
    smoothed = smooth_grayordinates(data, axis, meshes, 6.0)
    assert np.isnan(smoothed[:, 5]).all() and np.isfinite(np.delete(smoothed, 5, axis=1)).all()
    left = np.zeros((3, sphere.n_vertices), np.float32)
    left[:, cortex_mask] = data[:, :n_cortex]
    included = cortex_mask.copy()
    included[np.flatnonzero(cortex_mask)[5]] = False
    expected = smooth_on_mesh(left, sphere, 6.0, included)[:, cortex_mask]
    np.testing.assert_allclose(np.delete(smoothed[:, :n_cortex], 5, 1), np.delete(expected, 5, 1))
    voxels = slice(2 * n_cortex, None)
    np.testing.assert_allclose(
        smoothed[:, voxels],
        smooth_voxel_structure(data[:, voxels], ijk, np.diag([2, 2, 2, 1]), 6.0),
        rtol=1e-6,
    )
    # an impulse in the left cortex reaches neither the right one nor the voxels
    impulse = np.repeat(np.array([[1.0], [2.0]], np.float32), len(axis), axis=1)
    impulse[0, 10] = 50.0  # every grayordinate varies over time: all take part
    spread = smooth_grayordinates(impulse, axis, meshes, 6.0)
    np.testing.assert_allclose(spread[:, n_cortex:], impulse[:, n_cortex:], rtol=1e-5)
    assert spread[0, 10] < 50.0 and spread[0, :n_cortex].max() > 1.0  # spread on the left
    with pytest.raises(ValueError, match="hemi-R mesh"):
        smooth_grayordinates(data, axis, {"L": sphere}, 6.0)


def test_structures_smoothed_in_threads_are_smoothed_as_in_one():
    from bids_glm.image.cifti_smooth import grayordinate_smoother

    sphere = icosphere(4, radius_mm=60.0)
    cortex_mask = sphere.vertices_mm[:, 0] < 40.0
    grid = np.stack(np.meshgrid(*[np.arange(12)] * 3, indexing="ij"), -1).reshape(-1, 3)
    axis = _grayordinates(sphere, cortex_mask, grid[np.linalg.norm(grid - 5.5, axis=1) <= 5])
    data = (100 + np.random.default_rng(1).standard_normal((9, len(axis)))).astype(np.float32)
    included = np.ones(len(axis), dtype=bool)
    included[[3, 700]] = False
    meshes = {"L": sphere, "R": sphere}
    one, two = data.copy(), data.copy()
    grayordinate_smoother(axis, meshes, 6.0, included, n_threads=1)(one)
    grayordinate_smoother(axis, meshes, 6.0, included, n_threads=2)(two)
    assert not np.array_equal(one, data)
    np.testing.assert_array_equal(two, one)
