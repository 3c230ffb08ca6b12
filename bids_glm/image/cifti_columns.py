"""A CIFTI dense series read block by block of grayordinates, straight from its file.

A ``.dtseries.nii`` stores its (T, N) matrix volume index fastest (NIfTI order of dims 5
and 6): each grayordinate's whole series in turn, so consecutive grayordinates are one
contiguous range of bytes. :class:`CiftiColumns` reads such a range and returns it as a
(T_kept, n) float32 block, time along axis 0 as the GLM takes it. Blocks are independent
(each read opens the file), so threads may read different blocks at once.

The held reader (:func:`bids_glm.image.cifti.read_cifti_series`) assembles the whole run
from these blocks; a fit that needs no more than one block at a time
(:func:`bids_glm.pipeline.surface_fit.fit_column_run`) reads them as it goes, so its memory
does not grow with the run's length.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bids_glm.errors import InputError
from bids_glm.image.cifti_header import read_nifti2_header
from bids_glm.image.usable import finite_and_varying

READ_BYTES = 16 * 2**20  # stored bytes of whole series read at once (a pass over the file)


@dataclass(frozen=True)
class CiftiColumns:
    """Where a run's matrix lies in its file, and which volumes and grayordinates to take.

    Attributes
    ----------
    path : Path
        The ``.dtseries.nii``.
    data_offset : int
        Byte offset of the matrix.
    dtype : numpy.dtype
        Stored type (with the file's byte order).
    n_volumes : int
        Volumes in the file.
    n_grayordinates : int
        Grayordinates in the file.
    keep_volumes : ndarray of bool, shape (n_volumes,), or None
        Volumes to keep (None: all).
    analysed : ndarray of intp, shape (V,)
        File indices of the analysed grayordinates, increasing: column ``j`` of a block
        is grayordinate ``analysed[j]``.
    slope, intercept : float
        The header's scaling (1 and 0 when unscaled).
    """

    path: Path
    data_offset: int
    dtype: np.dtype
    n_volumes: int
    n_grayordinates: int
    keep_volumes: np.ndarray | None
    analysed: np.ndarray
    slope: float = 1.0
    intercept: float = 0.0

    @property
    def n_kept(self) -> int:
        """Kept volumes of the run (the rows of a block read by `grayordinates`)."""
        if self.keep_volumes is None:
            return self.n_volumes
        return int(np.count_nonzero(self.keep_volumes))

    @property
    def n_columns(self) -> int:
        """Analysed grayordinates (columns of the whole run)."""
        return int(self.analysed.size)

    def grayordinates(self, start: int, stop: int) -> np.ndarray:
        """File grayordinates ``start:stop`` (every one), as a (T_kept, stop - start) block.

        Raises
        ------
        InputError
            The file ends before the block does.
        """
        rows = slice(None) if self.keep_volumes is None else self.keep_volumes
        block = np.empty((self.n_kept, stop - start), dtype=np.float32)
        block[...] = self._series(start, stop).T[rows]
        return self._scaled(block)

    def volume_blocks(self, block_volumes: int) -> Iterator[np.ndarray]:
        """The analysed grayordinates' kept volumes in time order, ``block_volumes`` at a time.

        Each block is (b, V) float32, C-order. The file stores grayordinate after
        grayordinate, so each block reads the whole file again, :data:`READ_BYTES` at a
        time, and keeps its volumes (from the page cache after the first block: ~0.1 s per
        400 MB here); only a block and one read are held, whatever the run's length.

        Raises
        ------
        InputError
            The file is shorter than its header says.
        """
        kept = (
            np.arange(self.n_volumes)
            if self.keep_volumes is None
            else np.flatnonzero(self.keep_volumes)
        )
        reads = range(0, self.n_grayordinates, self._per_read())
        bounds = np.searchsorted(self.analysed, [*reads, self.n_grayordinates])
        for start in range(0, kept.size, block_volumes):
            rows = kept[start : start + block_volumes]
            block = np.empty((rows.size, self.analysed.size), dtype=np.float32)
            for first, column, end in zip(reads, bounds[:-1], bounds[1:], strict=True):
                if column == end:
                    continue
                taken = self.analysed[column:end]
                values = self._series(first, int(taken[-1]) + 1)
                block[:, column:end] = values[np.ix_(taken - first, rows)].T
            yield self._scaled(block)

    def finite_and_varying(self) -> tuple[np.ndarray, np.ndarray]:
        """Which of the file's grayordinates are finite, and not constant, over the kept
        volumes: two (n_grayordinates,) bool arrays, from one pass of :data:`READ_BYTES`
        reads."""
        finite = np.empty(self.n_grayordinates, dtype=bool)
        varying = np.empty(self.n_grayordinates, dtype=bool)
        for start in range(0, self.n_grayordinates, self._per_read()):
            stop = min(start + self._per_read(), self.n_grayordinates)
            finite[start:stop], varying[start:stop] = finite_and_varying(
                self.grayordinates(start, stop)
            )
        return finite, varying

    def _per_read(self) -> int:
        """Grayordinates whose whole series make up about :data:`READ_BYTES`."""
        return max(READ_BYTES // (self.n_volumes * self.dtype.itemsize), 1)

    def _series(self, start: int, stop: int) -> np.ndarray:
        """File grayordinates ``start:stop``, whole series: (stop - start, T), as stored."""
        n_values = (stop - start) * self.n_volumes
        with open(self.path, "rb") as stream:
            stream.seek(self.data_offset + start * self.n_volumes * self.dtype.itemsize)
            values = np.fromfile(stream, dtype=self.dtype, count=n_values)
        if values.size != n_values:
            raise _truncated(self.path)
        return values.reshape(stop - start, self.n_volumes)

    def _scaled(self, block: np.ndarray) -> np.ndarray:
        """``block`` (float32) with the header's scaling applied, in place."""
        if (self.slope, self.intercept) != (1.0, 0.0):
            block *= np.float32(self.slope)
            block += np.float32(self.intercept)
        return block

    def read(self, columns: slice) -> np.ndarray:
        """Analysed grayordinates ``columns`` (a slice of ``range(n_columns)``), (T_kept, n).

        The file's range from the first to the last of them is read once; grayordinates
        in it that are not analysed are dropped.
        """
        wanted = self.analysed[columns]
        if wanted.size == 0:
            return np.empty((self.n_kept, 0), dtype=np.float32)
        first, last = int(wanted[0]), int(wanted[-1])
        block = self.grayordinates(first, last + 1)
        if wanted.size == last + 1 - first:
            return block
        return np.ascontiguousarray(block[:, wanted - first])


def cifti_columns(
    path: Path,
    n_grayordinates: int,
    analysed: np.ndarray | None = None,
    keep_volumes: np.ndarray | None = None,
) -> CiftiColumns:
    """The block reader of a run's dense series, from its NIfTI-2 header alone.

    Parameters
    ----------
    path : Path
        The run's ``.dtseries.nii``.
    n_grayordinates : int
        Grayordinates of the unit's ``BrainModelAxis`` (the file must have as many).
    analysed : ndarray of bool, shape (n_grayordinates,), optional
        The grayordinates to read (default: all).
    keep_volumes : ndarray of bool, shape (n_volumes,), optional
        Volumes to keep.

    Raises
    ------
    InputError
        The file's grayordinate count is not ``n_grayordinates``, or ``keep_volumes`` does
        not match its volumes.
    """
    header = read_nifti2_header(path)
    n_volumes, n_found = header.get_data_shape()[4:]
    if n_found != n_grayordinates:
        raise InputError(
            f"{path}: {n_found} grayordinates, but the unit's BrainModelAxis has "
            f"{n_grayordinates}; expected runs on the same grayordinates"
        )
    if keep_volumes is not None and keep_volumes.shape != (n_volumes,):
        raise InputError(
            f"{path}: {n_volumes} volumes, but the model describes {keep_volumes.shape[0]}"
        )
    slope, intercept = header.get_slope_inter()
    mask = np.ones(n_found, dtype=bool) if analysed is None else analysed
    return CiftiColumns(
        path=Path(path),
        data_offset=int(header.get_data_offset()),
        dtype=header.get_data_dtype(),
        n_volumes=int(n_volumes),
        n_grayordinates=int(n_found),
        keep_volumes=keep_volumes,
        analysed=np.flatnonzero(mask),
        slope=1.0 if slope is None else float(slope),
        intercept=float(intercept or 0.0),
    )


def _truncated(path: Path) -> InputError:
    return InputError(f"{path}: shorter than its header says (truncated file?)")
