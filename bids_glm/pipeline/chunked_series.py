"""A run's in-mask series stored by voxel chunks.

Models that need each voxel's whole series (SPM12's dense serial-correlation model, the
single-trial estimates) read the data in passes over chunks of voxels, while the data arrive
a scan (or a block of scans) at a time, so each scan's values are scattered over the chunks as
they come; stored chunk after chunk (each chunk's ``(n_scans, VOXEL_CHUNK)`` values
contiguous), a pass then reads its chunks in order. That matters when the data are held in a
file (`bids_glm.runtime.spill.scratch_array`) and the kernel has dropped their pages: a chunk
comes back as one sequential read, where a scan-by-scan layout would need one small read per
scan and chunk.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bids_glm.glm.spm_pool import VOXEL_CHUNK
from bids_glm.runtime.spill import scratch_array

__all__ = ["ChunkedSeries"]


class ChunkedSeries:
    """``(n_scans, n_voxels)`` float32 values, stored by chunks of `VOXEL_CHUNK` voxels.

    Written by scans (`write_scans`, from any thread, different scans per call); read as
    ``series[:, voxels]`` for a slice of voxels (a new array). `keep_voxels` drops voxels
    without moving data.

    Parameters
    ----------
    n_scans, n_voxels : int
        The shape.
    scratch_dir : Path, optional
        Where large data are held in a file (`bids_glm.runtime.spill.scratch_array`).
    """

    def __init__(self, n_scans: int, n_voxels: int, scratch_dir: Path | None = None) -> None:
        self.n_scans, self.n_stored = int(n_scans), int(n_voxels)
        shape = (-(-self.n_stored // VOXEL_CHUNK), self.n_scans, VOXEL_CHUNK)
        self._chunks = scratch_array(shape, np.float32, scratch_dir)
        self._voxels = np.arange(self.n_stored)  # stored position of each kept voxel
        self._n_whole = self.n_stored // VOXEL_CHUNK

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_scans, kept voxels)``."""
        return self.n_scans, int(self._voxels.size)

    def write_scans(self, first: int, values: np.ndarray) -> None:
        """Store scans ``first, first + 1, ...`` of every stored voxel (``values``, (b, n_voxels)).

        Calls for different scans may come from different threads.
        """
        scans = slice(first, first + values.shape[0])
        whole = self._n_whole * VOXEL_CHUNK
        by_chunk = (
            values[:, :whole].reshape(len(values), self._n_whole, VOXEL_CHUNK).swapaxes(0, 1)
        )
        self._chunks[: self._n_whole, scans] = by_chunk
        if whole < self.n_stored:
            self._chunks[-1, scans, : self.n_stored - whole] = values[:, whole:]

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        """``series[:, voxels]``: every scan of a slice of the kept voxels, float32."""
        scans, voxels = key
        if scans != slice(None) or not isinstance(voxels, slice):
            raise TypeError("a ChunkedSeries is read as series[:, start:stop]")
        stored = self._voxels[voxels]
        values = np.empty((self.n_scans, stored.size), dtype=np.float32)
        chunk_of = stored // VOXEL_CHUNK
        starts = [0, *(np.flatnonzero(np.diff(chunk_of)) + 1)]
        for start, stop in zip(starts, [*starts[1:], stored.size], strict=True):
            if start == stop:  # no voxels at all
                break
            chunk = self._chunks[chunk_of[start]]
            within = stored[start:stop] - chunk_of[start] * VOXEL_CHUNK
            if within[-1] - within[0] == stop - start - 1:  # consecutive: one plain copy
                values[:, start:stop] = chunk[:, within[0] : within[-1] + 1]
            else:
                values[:, start:stop] = chunk[:, within]
        return values

    def varying(self) -> np.ndarray:
        """Kept voxels whose value changes over the scans (SPM: ``any(diff(Y))``)."""
        changes = np.empty(self._chunks.shape[0] * VOXEL_CHUNK, dtype=bool)
        for index, chunk in enumerate(self._chunks):
            part = changes[index * VOXEL_CHUNK : (index + 1) * VOXEL_CHUNK]
            np.any(chunk != chunk[0], axis=0, out=part)
        return changes[self._voxels]

    def keep_voxels(self, keep: np.ndarray) -> None:
        """Keep only the voxels where ``keep`` (bool over the kept voxels) is True."""
        self._voxels = self._voxels[np.asarray(keep, dtype=bool)]
