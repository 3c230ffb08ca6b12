"""Written maps read back as flat vectors over every location of their geometry.

The group level reads participants' effect maps and masks of any kind: a NIfTI volume,
a GIfTI pair (left then right hemisphere) or a CIFTI-2 ``.dscalar.nii``. Each is read as
one vector over all locations of its geometry (a volume's voxels in C order, both
hemispheres' vertices, every grayordinate), with the geometry holding every location
(``whole``); ``whole.restricted(keep)`` then gives the geometry of a subset, whatever the kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_glm.errors import InputError
from bids_glm.image.cifti import DENSE_SCALAR_EXTENSION, CiftiGeometry
from bids_glm.image.geometry import VolumeGeometry
from bids_glm.image.mask import load_image, same_grid
from bids_glm.image.surface import GIFTI_EXTENSION, SurfaceGeometry, load_gifti_series

Geometry = VolumeGeometry | SurfaceGeometry | CiftiGeometry


def _cifti_row(path: Path) -> tuple[np.ndarray, CiftiGeometry]:
    try:
        image = nib.load(str(path))
    except Exception as err:  # nibabel raises many kinds for a bad file
        raise InputError(f"{path}: not a readable CIFTI-2 file ({err})") from None
    if not isinstance(image, nib.Cifti2Image):
        raise InputError(f"{path}: expected a CIFTI-2 dense scalar map (.dscalar.nii)")
    data = np.asarray(image.dataobj, dtype=np.float64)
    return data[0], CiftiGeometry.whole(image.header.get_axis(1))


def read_map(files: Sequence[Path]) -> tuple[np.ndarray, Geometry]:
    """A written map's values over all its locations, and the geometry holding them all.

    Parameters
    ----------
    files : sequence of Path
        The map's files: one ``.nii.gz`` or ``.dscalar.nii``, or the left and right
        hemispheres' ``.func.gii``.

    Returns
    -------
    values : ndarray of float64, shape (n_locations,)
    whole : VolumeGeometry, SurfaceGeometry or CiftiGeometry
        Every location analysed (``whole.n_values == values.size``).
    """
    first = Path(files[0])
    if first.name.endswith(DENSE_SCALAR_EXTENSION):
        return _cifti_row(first)
    if first.name.endswith(GIFTI_EXTENSION):
        parts = [load_gifti_series(Path(f))[0].astype(np.float64) for f in files]
        counts = (parts[0].size, parts[1].size)
        return np.concatenate(parts), SurfaceGeometry.whole_surface(counts)
    image = load_image(first)
    data = np.asanyarray(image.dataobj, dtype=np.float64)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    return data.reshape(-1), VolumeGeometry.whole_grid(data.shape, image.affine)


def read_map_series(files: Sequence[Path]) -> np.ndarray:
    """A written series of maps (a beta series) as (n_maps, n_locations) float64.

    The locations are those of :func:`read_map` for the same kind of file: a 4D NIfTI's
    voxels in C order, both hemispheres' vertices (one data array per map in each
    ``.func.gii``), every grayordinate of a ``.dscalar.nii`` (one scalar per map).
    """
    first = Path(files[0])
    if first.name.endswith(DENSE_SCALAR_EXTENSION):
        return np.asarray(nib.load(str(first)).dataobj, dtype=np.float64)
    if first.name.endswith(GIFTI_EXTENSION):
        return np.concatenate([load_gifti_series(Path(f)) for f in files], axis=1).astype(
            np.float64
        )
    data = np.asanyarray(load_image(first).dataobj, dtype=np.float64)
    data = data.reshape((*data.shape[:3], -1))  # a one-trial series may be 3D
    return np.moveaxis(data, -1, 0).reshape(data.shape[3], -1)


def read_map_series_at(files: Sequence[Path], location: int, n_locations: int) -> np.ndarray:
    """One location's values in a written series of maps, (n_maps,) float64.

    ``location`` indexes the locations of `read_map_series`, of which the series must have
    ``n_locations`` (a map's of the same geometry; else ValueError). A 4D NIfTI is not
    loaded: its voxel is sliced from the file (nibabel reads a compressed file through,
    keeping only that voxel's values), so a long run's beta series costs no memory to look
    into. GIfTI and CIFTI series, small beside a volume's, are read whole.
    """
    first = Path(files[0])
    if first.name.endswith((DENSE_SCALAR_EXTENSION, GIFTI_EXTENSION)):
        series = read_map_series(files)
        _check_locations(series.shape[1], n_locations)
        return series[:, location]
    image = load_image(first)
    _check_locations(int(np.prod(image.shape[:3])), n_locations)
    voxel = np.unravel_index(int(location), image.shape[:3])
    return np.asarray(image.dataobj[voxel], dtype=np.float64).reshape(-1)


def _check_locations(found: int, expected: int) -> None:
    if found != expected:
        raise ValueError(f"{found} locations in the series, {expected} in the map")


def same_locations(a: Geometry, b: Geometry) -> bool:
    """Whether two geometries hold the same locations (grid, vertex counts, grayordinates)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, VolumeGeometry):
        return same_grid(a.shape, a.affine, b.shape, b.affine)
    if isinstance(a, SurfaceGeometry):
        return a.n_vertices == b.n_vertices
    return a.brain_models == b.brain_models
