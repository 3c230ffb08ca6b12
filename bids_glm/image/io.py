"""Streamed reading of 4-D NIfTI series: one decompression pass, volume by volume.

A NIfTI file stores its volumes one after the other, so a 4-D series can be read
from a single sequential stream (``.nii.gz`` through ISA-L's inflater when available)
into a small ring of reusable buffers; each volume is converted, smoothed on the mask's
bounding box and reduced to in-mask voxels (`bids_glm.image.volume_reducer`) by a pool of
threads while the next volumes are inflated. Peak memory is the (T, V_mask) float32 result,
never the whole 4-D array; `bids_glm.image.stream` reads the same way without holding even that.
"""

from __future__ import annotations

import gzip
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import BinaryIO

import numpy as np

from bids_glm.errors import InputError
from bids_glm.image.mask import same_grid
from bids_glm.image.series_layout import SeriesLayout, series_layout
from bids_glm.image.smooth import sigma_voxels
from bids_glm.image.usable import log_unusable
from bids_glm.image.volume_reducer import VolumeReducer
from bids_glm.runtime.progress import Progress
from bids_glm.runtime.threads import spare_cores, thread_budget

try:  # ISA-L inflates gzip several times faster than zlib
    from isal import igzip, igzip_threaded
except ImportError:  # pragma: no cover - isal is a declared dependency
    igzip = igzip_threaded = None


@dataclass(frozen=True)
class MaskedSeries:
    """In-mask time series of one run.

    Attributes
    ----------
    data : ndarray, shape (n_volumes, n_voxels), float32
        Values of the mask's voxels (C order of the mask), after optional smoothing.
    usable : ndarray of bool, shape (n_voxels,)
        Voxels whose values were finite in every volume and not constant over time.
    mean_volume : ndarray, shape (x, y, z), float32
        Time mean of the kept volumes over the whole grid, unsmoothed (non-finite -> 0).
    """

    data: np.ndarray
    usable: np.ndarray
    mean_volume: np.ndarray


# Bytes inflated per hand-over from ISA-L's thread: its reader keeps 8 of them buffered and
# 2 queued (python-isal's default of 1 MiB held ~12 MB per open series; as fast at 256 KiB).
INFLATE_BLOCK_BYTES = 256 * 1024


def _open_gzip(path: Path, inflate_ahead: bool = True) -> BinaryIO:
    """A gzip reader; with ``inflate_ahead``, inflating in a thread of its own
    (overlapping the caller's compute), else in the caller's ``readinto`` (straight into
    the caller's buffer, no copy; ISA-L releases the GIL meanwhile)."""
    if igzip_threaded is None:  # pragma: no cover
        return gzip.open(path, "rb")
    if not inflate_ahead:
        return igzip.open(path, "rb")
    return igzip_threaded.open(path, "rb", threads=1, block_size=INFLATE_BLOCK_BYTES)


@contextmanager
def _open_stream(path: Path, inflate_ahead: bool = True) -> Iterator[BinaryIO]:
    opener = (
        partial(_open_gzip, inflate_ahead=inflate_ahead)
        if path.name.endswith(".gz")
        else partial(open, mode="rb")
    )
    try:
        with opener(path) as stream:
            yield stream
    except (OSError, EOFError) as err:
        raise InputError(f"{path}: cannot read the image data ({err})") from None


def _read_exact(stream: BinaryIO, buffer: bytearray | np.ndarray, path: Path) -> None:
    view = memoryview(buffer)
    filled = 0
    while filled < len(buffer):
        got = stream.readinto(view[filled:])
        if not got:
            raise InputError(f"{path}: file ends early (truncated image data)")
        filled += got


def volume_buffers(layout: SeriesLayout, n_buffers: int) -> list[np.ndarray]:
    """``n_buffers`` new buffers for `stored_volumes`: one volume's stored bytes each."""
    return [np.empty(layout.volume_bytes, dtype=np.uint8) for _ in range(max(n_buffers, 1))]


def stored_view(buffer: np.ndarray, layout: SeriesLayout) -> np.ndarray:
    """A buffer of `volume_buffers` as the volume it holds: stored values, (x, y, z), F order."""
    return buffer.view(layout.dtype).reshape(layout.volume_shape, order="F")


def stored_volumes(
    path: Path,
    layout: SeriesLayout,
    buffers: Sequence[np.ndarray] | None = None,
    inflate_ahead: bool | None = None,
) -> Iterator[np.ndarray]:
    """Yield each volume's stored values (Fortran order), read into a ring of buffers.

    Volume ``t`` is read into ``buffers[t % len(buffers)]`` (1-D uint8 arrays of one
    volume's bytes, e.g. from `volume_buffers`; one new buffer if None) and yielded as a view
    of it, overwritten when volume ``t + len(buffers)`` is read: a consumer must be done
    with it by then. ``inflate_ahead``: gzip is inflated in a thread of its own while the
    caller works, else when a volume is asked for (straight into its buffer); by default,
    ahead where the thread budget has a core to spare.
    """
    if inflate_ahead is None:
        inflate_ahead = spare_cores() > 0
    buffers = volume_buffers(layout, 1) if buffers is None else buffers
    views = [stored_view(buffer, layout) for buffer in buffers]
    with _open_stream(path, inflate_ahead) as stream:
        if layout.offset:
            _read_exact(stream, bytearray(layout.offset), path)
        for index in range(layout.shape[3]):
            _read_exact(stream, buffers[index % len(buffers)], path)
            yield views[index % len(buffers)]


def for_each_volume(
    path: Path,
    layout: SeriesLayout,
    keep_volumes: np.ndarray,
    process: Callable[[int, np.ndarray], None],
    n_threads: int = 1,
    in_order: Callable[[np.ndarray], None] | None = None,
) -> None:
    """Call ``process(row, stored)`` for each kept volume, in up to ``n_threads`` threads.

    ``row`` counts kept volumes (0, 1, ...); ``stored`` holds the volume's stored values and
    is valid only during the call. Decompression stays in order in the calling thread (and
    ISA-L's own thread) while the calls run concurrently; at most ``2 * n_threads + 1``
    volumes are held at once; with one thread, everything runs in the calling thread.
    ``in_order(stored)``, if given, is called for each kept volume in the calling thread, in
    time order, before ``process``. An exception raised by ``process`` is re-raised here.
    """
    rows = np.cumsum(keep_volumes) - 1
    progress = Progress(path.name, int(np.count_nonzero(keep_volumes)), "volumes read")
    if n_threads <= 1:  # one core: inflated here too, not ahead in a thread
        for index, stored in enumerate(stored_volumes(path, layout, inflate_ahead=False)):
            if keep_volumes[index]:
                if in_order is not None:
                    in_order(stored)
                process(int(rows[index]), stored)
                progress.update(int(rows[index]) + 1)
        return
    n_buffers = 2 * n_threads + 1
    pending: deque[tuple[int, Future]] = deque()
    with ThreadPoolExecutor(n_threads, thread_name_prefix="bids-glm-volume") as pool:
        buffers = volume_buffers(layout, n_buffers)
        for index, stored in enumerate(stored_volumes(path, layout, buffers)):
            if keep_volumes[index]:
                if in_order is not None:
                    in_order(stored)
                pending.append((index, pool.submit(process, int(rows[index]), stored)))
                progress.update(int(rows[index]) + 1)
            # the next read reuses the buffer of volume index + 1 - n_buffers
            while pending and pending[0][0] <= index + 1 - n_buffers:
                pending.popleft()[1].result()
        for _, future in pending:
            future.result()


def iter_volumes(path: Path) -> Iterator[np.ndarray]:
    """Yield the 3-D volumes of a 4-D NIfTI file as float32, scaled, in order.

    The same buffer is reused: copy a yielded volume if it must outlive the next step.

    Parameters
    ----------
    path : Path
        ``.nii`` or ``.nii.gz`` NIfTI-1/2 file.

    Yields
    ------
    ndarray, shape (x, y, z), float32, Fortran order
    """
    layout = series_layout(path)
    volume = np.empty(layout.volume_shape, dtype=np.float32, order="F")
    for stored in stored_volumes(path, layout):
        yield layout.to_float32(stored, volume)


def checked_layout(
    path: Path, mask: np.ndarray, mask_affine: np.ndarray, keep_volumes: np.ndarray | None
) -> tuple[SeriesLayout, np.ndarray]:
    """The series' layout and kept volumes, checked against the mask's grid."""
    layout = series_layout(path)
    if not same_grid(layout.shape, layout.affine, mask.shape, mask_affine):
        raise InputError(
            f"{path}: the mask's grid {mask.shape} differs from the image's {layout.shape[:3]} "
            "(shape or affine)"
        )
    n_volumes = layout.shape[3]
    if keep_volumes is None:
        keep_volumes = np.ones(n_volumes, dtype=bool)
    elif keep_volumes.shape != (n_volumes,):
        raise InputError(
            f"{path}: {n_volumes} volumes, but the model describes {keep_volumes.shape[0]}"
        )
    return layout, keep_volumes


def read_masked_series(
    path: Path,
    mask: np.ndarray,
    mask_affine: np.ndarray,
    smoothing_fwhm_mm: float = 0.0,
    keep_volumes: np.ndarray | None = None,
    n_threads: int | None = None,
) -> MaskedSeries:
    """Read a 4-D series once, smoothing each volume and keeping the mask's voxels.

    Parameters
    ----------
    path : Path
        The 4-D NIfTI series.
    mask : ndarray of bool, shape (x, y, z)
        Voxels to keep; must be on the series' grid.
    mask_affine : ndarray, shape (4, 4)
        The mask's affine (checked against the series').
    smoothing_fwhm_mm : float
        Isotropic Gaussian FWHM, 0 for none; smoothing uses the mask's bounding box grown
        by the kernel radius, so in-mask values equal smoothing of the whole volume.
    keep_volumes : ndarray of bool, shape (n_volumes,), optional
        Volumes to keep (dummy scans and censored volumes False); the others are
        decompressed in passing but neither smoothed nor stored.
    n_threads : int, optional
        Threads converting, smoothing and reducing volumes while the next ones are
        decompressed; default: the process's `thread_budget`. The result does not depend
        on it.

    Returns
    -------
    MaskedSeries
        Non-finite values are set to 0 (before smoothing) and their voxels marked unusable.
    """
    layout, keep_volumes = checked_layout(path, mask, mask_affine, keep_volumes)
    sigma = sigma_voxels(smoothing_fwhm_mm, layout.affine)
    n_kept = int(keep_volumes.sum())
    data = np.empty((n_kept, int(mask.sum())), dtype=np.float32)
    reducer = VolumeReducer(mask, sigma, data, layout)
    n_threads = thread_budget() if n_threads is None else max(int(n_threads), 1)
    for_each_volume(path, layout, keep_volumes, reducer, n_threads, reducer.add_to_mean)
    finite = reducer.finite_voxels()
    varying = np.ptp(data, axis=0) > 0
    log_unusable(path, finite & varying, "in-mask voxel(s)")
    return MaskedSeries(data=data, usable=finite & varying, mean_volume=reducer.mean_volume())
