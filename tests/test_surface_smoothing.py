"""A GIfTI run smoothed along its meshes a block of volumes at a time (issue 18: memory
independent of the run's length) smooths exactly as the held run does, bit for bit,
including when the vertices to smooth among change after the first block."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from bids_glm.demo.surface_dataset import make_surface_demo
from bids_glm.errors import InputError
from bids_glm.image.mesh import MeshFiles
from bids_glm.image.surface import SurfaceGeometry, read_surface_series
from bids_glm.image.surface_smoothing import SmoothedSurfaceStream, surface_smoother

FWHM_MM = 6.0


@pytest.fixture(scope="module")
def surface_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoothing")
    make_surface_demo(
        root / "bids",
        "fsaverage5",
        templateflow_dir=root / "tf",
        n_subjects=1,
        n_runs=1,
        n_volumes=40,
        mesh_size=3,
    )
    paths = tuple(sorted((root / "bids").rglob("*_hemi-[LR]_*_bold.func.gii")))
    meshes = MeshFiles(*sorted((root / "tf").rglob("*_midthickness.surf.gii")))
    return paths, meshes


def _rewrite(path, source, change) -> None:
    image = nib.load(source)
    series = np.array([d.data for d in image.darrays], dtype=np.float32)
    change(series)
    for darray, row in zip(image.darrays, series, strict=True):
        darray.data = row
    nib.save(image, path)


@pytest.mark.parametrize("late", [None, "non-finite", "varying"])
def test_streamed_smoothing_is_the_held_smoothing(tmp_path, surface_files, late):
    """Blocks of 7 kept volumes against the held read (both smoothing 6 mm along the
    mesh): equal bit for bit. A vertex non-finite, or constant through the first block
    and varying after it, makes the first pass's guess wrong: the stream says so, and the
    second pass is the held read's smoothing."""
    (left, right), meshes = surface_files
    changed = tmp_path / left.name

    def change(series: np.ndarray) -> None:
        cortex = np.flatnonzero(np.ptp(series, axis=0) > 0)  # not the medial wall
        if late == "non-finite":
            series[30, cortex[10]] = np.nan
        elif late == "varying":
            series[:, cortex[11]] = 100.0
            series[31, cortex[11]] = 101.0

    _rewrite(changed, left, change)
    paths = (changed, right)
    n_vertices = (642, 642)
    analysed = np.ones(sum(n_vertices), dtype=bool)
    analysed[[0, 1, 700]] = False
    keep = np.ones(40, dtype=bool)
    keep[[0, 1, 20]] = False
    geometry = SurfaceGeometry(n_vertices, analysed, meshes)
    held = read_surface_series(paths, geometry, FWHM_MM, keep).data

    stream = SmoothedSurfaceStream(paths, meshes.paths, n_vertices, analysed, FWHM_MM, keep, 7)
    blocks = [block.copy() for block in stream.blocks()]
    assert [len(b) for b in blocks] == [7, 7, 7, 7, 7, 2]
    first = np.concatenate(blocks)
    first[~np.isfinite(first)] = 0.0  # as the held read leaves unusable vertices
    assert stream.settled == (late is None)
    if late is None:
        np.testing.assert_array_equal(first, held)
        return
    assert not np.array_equal(first, held)  # smoothed among the first block's guess
    second = np.concatenate([block.copy() for block in stream.blocks()])
    second[~np.isfinite(second)] = 0.0
    assert stream.settled
    np.testing.assert_array_equal(second, held)


def test_a_mesh_of_another_size_is_named(tmp_path, surface_files):
    _, meshes = surface_files
    with pytest.raises(InputError, match="642 vertices, but the data have 700"):
        surface_smoother(meshes.paths, (700, 642), FWHM_MM, np.ones(1342, dtype=bool))


def test_hemispheres_smoothed_in_threads_are_smoothed_as_in_one(surface_files):
    _, meshes = surface_files
    data = (100 + np.random.default_rng(2).standard_normal((9, 1284))).astype(np.float32)
    included = np.ones(1284, dtype=bool)
    included[[4, 900]] = False
    one, two = data.copy(), data.copy()
    surface_smoother(meshes.paths, (642, 642), FWHM_MM, included, n_threads=1)(one)
    surface_smoother(meshes.paths, (642, 642), FWHM_MM, included, n_threads=2)(two)
    assert not np.array_equal(one, data)
    np.testing.assert_array_equal(two, one)
