"""One location's values of a written beta series, without loading the series (reports)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from bids_glm.image.map_files import read_map_series, read_map_series_at
from bids_glm.image.surface import SurfaceGeometry


@pytest.mark.parametrize("n_maps", [7, 1])
def test_a_voxel_of_a_compressed_nifti_series_equals_the_loaded_series(tmp_path, n_maps):
    rng = np.random.default_rng(0)
    shape = (6, 5, 4) + ((n_maps,) if n_maps > 1 else ())  # a one-trial series may be 3D
    path = tmp_path / "series.nii.gz"
    nib.Nifti1Image(rng.standard_normal(shape).astype(np.float32), np.eye(4)).to_filename(path)
    whole = read_map_series([path])
    for location in (0, 37, 119):
        values = read_map_series_at([path], location, 120)
        assert values.shape == (n_maps,) and values.dtype == np.float64
        np.testing.assert_array_equal(values, whole[:, location])
    with pytest.raises(ValueError, match="120 locations in the series, 90 in the map"):
        read_map_series_at([path], 0, 90)


def test_a_vertex_of_a_gifti_pair_equals_the_loaded_series(tmp_path):
    geometry = SurfaceGeometry((4, 3), np.ones(7, dtype=bool))
    values = np.arange(21, dtype=np.float32).reshape(3, 7)
    paths = []
    for extra, payload in geometry.encode_series_files(values, ["a", "b", "c"]):
        paths.append(tmp_path / f"hemi-{extra['hemi']}_betaseries.func.gii")
        paths[-1].write_bytes(payload)
    for location in (0, 3, 4, 6):  # left, then right hemisphere's vertices
        np.testing.assert_array_equal(
            read_map_series_at(paths, location, 7), read_map_series(paths)[:, location]
        )
        np.testing.assert_array_equal(read_map_series_at(paths, location, 7), values[:, location])
