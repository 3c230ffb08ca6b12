"""The geometry of the analysed data: which values of an in-mask vector go where.

The GLM works on a (T, V) array of V analysed locations; this object turns a vector of V
values into the image file that holds them, and an image back into V values. Today the
data are volumes (a 3-D grid, its affine and a mask of analysed voxels); surfaces and
CIFTI grayordinates will be further kinds with the same methods, so the GLM, the writers
and the naming never ask which kind they have.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from bids_glm.image.io import MaskedSeries, read_masked_series
from bids_glm.image.nifti_bytes import (
    masked_map_gz_bytes,
    nifti_gz_bytes,
    nifti_series_gz_bytes,
    plan_masked_map,
)
from bids_glm.image.sparse_gzip import SparseGzipPlan


@dataclass(frozen=True, eq=False)
class VolumeGeometry:
    """Voxels of a 3-D grid analysed as one vector.

    Attributes
    ----------
    mask : ndarray of bool, shape (x, y, z)
        The analysed voxels; a vector's values fill them in C order of the grid.
    affine : ndarray, shape (4, 4)
        Voxel indices to world coordinates (mm).
    """

    mask: np.ndarray
    affine: np.ndarray
    # flat position of each analysed voxel, per memory order ("C", "F"), made when first used
    _positions: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False)

    extension = ".nii.gz"
    locations = "voxels"  # what the analysed values are, for messages

    @classmethod
    def whole_grid(cls, shape: tuple[int, ...], affine: np.ndarray) -> VolumeGeometry:
        """Every voxel of a grid (e.g. for an underlay image)."""
        return cls(np.ones(shape, dtype=bool), affine)

    @property
    def shape(self) -> tuple[int, ...]:
        """The grid's shape in voxels."""
        return self.mask.shape

    @property
    def n_values(self) -> int:
        """Length of the vectors this geometry holds (analysed voxels)."""
        return int(np.count_nonzero(self.mask))

    def to_volume(self, values: np.ndarray, dtype=np.float32, order: str = "C") -> np.ndarray:
        """The 3-D volume holding ``values`` in the mask and zero elsewhere, in memory
        ``order`` ("F": NIfTI's, which `encode` compresses without a transposing copy)."""
        if self._whole_grid:  # the values are the grid in C order: a (transposing) copy
            return np.array(np.reshape(values, self.shape), dtype=dtype, order=order)
        volume = np.zeros(self.shape, dtype=dtype, order=order)
        # placed by index (positions kept per order): ~4x faster than by the boolean mask
        volume.reshape(-1, order=order)[self._flat_positions(order)] = values
        return volume

    @cached_property
    def _whole_grid(self) -> bool:
        """Whether every voxel of the grid is analysed."""
        return bool(self.mask.all())

    def flat_indices(self) -> np.ndarray:
        """Flat index of each analysed voxel in the grid flattened in C order (increasing)."""
        return self._flat_positions("C")

    def _flat_positions(self, order: str) -> np.ndarray:
        """Where the vectors' values lie in the grid flattened in memory ``order``."""
        if order not in self._positions:
            self._positions[order] = np.ravel_multi_index(
                np.nonzero(self.mask), self.shape, order=order
            )
        return self._positions[order]

    def from_volume(self, volume: np.ndarray) -> np.ndarray:
        """The in-mask values of a volume on this grid."""
        return np.asarray(volume)[self.mask]

    def restricted(self, keep: np.ndarray) -> VolumeGeometry:
        """The same grid with only the analysed voxels where ``keep`` (over values) is True."""
        mask = self.mask.copy()
        mask[self.mask] = keep
        return VolumeGeometry(mask, self.affine)

    def encode(self, values: np.ndarray) -> bytes:
        """The ``.nii.gz`` bytes of a float32 map of ``values`` (zero outside the mask).

        The voxels outside the mask are coded as the zeros they are, the others stored
        (`bids_glm.image.sparse_gzip`); a grid without such voxels is compressed.
        """
        if self._sparse_gzip_plan is None:
            return nifti_gz_bytes(self.to_volume(values, order="F"), self.affine)
        positions = self._flat_positions("F")
        return masked_map_gz_bytes(values, positions, self._sparse_gzip_plan)

    @cached_property
    def _sparse_gzip_plan(self) -> SparseGzipPlan | None:
        """The layout of a map's gzip stream (None for a mask without zeros), made once."""
        if self._whole_grid:
            return None
        return plan_masked_map(self.shape, self.affine, self._flat_positions("F"))

    def encode_mask(self) -> bytes:
        """The ``.nii.gz`` bytes of the mask itself (uint8)."""
        return nifti_gz_bytes(self.mask.astype(np.uint8), self.affine)

    def file_entities(self) -> list[dict[str, str]]:
        """Entities each file of a map adds to its name: one file, none added."""
        return [{}]

    def encode_files(
        self, values: np.ndarray, label: str = ""
    ) -> list[tuple[dict[str, str], bytes]]:
        """The files of a map: one, with no entity added (``[({}, .nii.gz bytes)]``).

        ``label`` names the map inside formats that hold names (a CIFTI scalar axis);
        NIfTI has none.

        Surfaces give one file per hemisphere (``{"hemi": "L"}``, ...): writers use this
        form, so they never ask which kind of geometry they have.
        """
        return [({}, self.encode(values))]

    def exclusion_record(self, valid: np.ndarray) -> dict[str, object]:
        """Sidecar fields on locations left out of a map: none (the mask file shows them)."""
        return {}

    def encode_series_files(
        self, values: np.ndarray, labels: Sequence[str] = ()
    ) -> list[tuple[dict[str, str], bytes]]:
        """The files of a series of maps (``values``: (n_maps, V)): one 4D image, no entity.

        ``labels`` name the maps in formats that hold names (GIfTI array meta, a CIFTI
        scalar axis); NIfTI has none. (A surface geometry gives one multi-array GIfTI file
        per hemisphere, CIFTI one ``.dscalar.nii``.)
        """
        volumes = (self.to_volume(v, order="F") for v in values)  # compressed one by one
        payload = nifti_series_gz_bytes(volumes, self.shape, len(values), self.affine)
        return [({}, payload)]

    def location_name(self, index: int) -> str:
        """Where value ``index`` of an all-voxel vector (C order) lies (for figure titles)."""
        return f"voxel {tuple(int(i) for i in np.unravel_index(index, self.shape))}"

    def encode_mask_files(self) -> list[tuple[dict[str, str], bytes]]:
        """The files of the mask: one, with no entity added."""
        return [({}, self.encode_mask())]

    def read_series(
        self, paths, smoothing_fwhm_mm: float = 0.0, keep_volumes=None
    ) -> MaskedSeries:
        """The run's (T, V) in-mask series of its one 4-D file (``paths[0]``)."""
        return read_masked_series(
            paths[0], self.mask, self.affine, smoothing_fwhm_mm, keep_volumes=keep_volumes
        )
