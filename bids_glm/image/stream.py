"""Streamed reading of a 4-D series in blocks of in-mask volumes, never holding the run.

The streaming form of `bids_glm.image.io.read_masked_series`: each kept volume is inflated,
converted, smoothed and reduced to its in-mask voxels exactly as there, but into a ring of
two blocks of ``block_volumes`` rows; each completed block is handed, in time order, to a
consumer (typically `bids_glm.glm.cross_products.CrossProductAccumulator.add`) in a thread of
its own. So three kinds of work overlap: inflation (in the calling thread), the per-volume
reduction (``n_threads`` forked processes on Linux, `bids_glm.image.forked_reducers`; else
threads, and ISA-L then inflates ahead in a thread of its own) and the consumer (one thread).
With one forked child and a consumer that can share its sums (`CrossProductAccumulator`:
``share``, ``add_share``), there is no consumer thread: the child and the calling thread both
add each block the child completes, claiming its voxel chunks as they come, so the work goes
to whichever of the two has time (800-volume run: stream 6.46 -> 5.74 s; a third busy thread
had kept ~10 % of the two cores idle, woken on the busy one). With no core to spare
(``n_threads=0``, ``--n-cpus 1``) all three run in the calling thread.
Peak memory is two blocks plus what the consumer keeps, whatever the run's length. Long runs
log their progress (`bids_glm.runtime.progress`).
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bids_glm.image.forked_reducers import ForkedReducers, forking_available
from bids_glm.image.io import checked_layout, stored_view, stored_volumes, volume_buffers
from bids_glm.image.series_layout import SeriesLayout
from bids_glm.image.smooth import sigma_voxels
from bids_glm.image.usable import log_unusable
from bids_glm.image.volume_reducer import VolumeReducer
from bids_glm.runtime.progress import Progress
from bids_glm.runtime.shared_memory import shared_array
from bids_glm.runtime.threads import thread_budget

LOGGER = logging.getLogger("bids_glm")

# Rows per block handed to the consumer (one GEMM each). The sums are read and written once
# a block (~95 MB at p = 16 on the MNI brain), so 16 halve that traffic of 8: 0.3-0.6 s less
# at 800 volumes (3 of 3 interleaved pairs), for a ring 22 MB larger (the 200-volume run's
# streaming phase, ~240 MiB, stays below its end, where its peak memory is, ~248 MiB).
BLOCK_VOLUMES = 16


@dataclass(frozen=True)
class StreamedSeries:
    """What reading a series leaves besides the blocks given to the consumer.

    Attributes
    ----------
    n_volumes : int
        Kept volumes streamed.
    usable : ndarray of bool, shape (n_voxels,)
        Voxels whose values were finite in every volume and not constant over time.
    mean_volume : ndarray, shape (x, y, z), float32
        Time mean of the kept volumes over the whole grid, unsmoothed (non-finite -> 0).
    """

    n_volumes: int
    usable: np.ndarray
    mean_volume: np.ndarray


class _Blocks:
    """The ring of two blocks (``rows``, (2 block_volumes, n_voxels) float32), and the
    in-order hand-over of completed ones: to a consumer thread, or (``inline``) consumed
    at once in the calling thread."""

    def __init__(
        self,
        rows: np.ndarray,
        block_volumes: int,
        consume: Callable,
        track_range: bool,
        inline: bool = False,
        shared: Callable[[], None] | None = None,
    ) -> None:
        self.rows = rows
        self.shared = shared  # the child's liveness check, when the child adds blocks too
        n_voxels = rows.shape[1]
        self.block_volumes = block_volumes
        self.consume = consume
        self.minimum = self.maximum = None  # each voxel's range, if asked
        if track_range:
            self.minimum = np.full(n_voxels, np.inf, dtype=np.float32)
            self.maximum = np.full(n_voxels, -np.inf, dtype=np.float32)
        self.handed: list[Future] = []
        inline = inline or shared is not None
        self.consumer = (
            None if inline else ThreadPoolExecutor(1, thread_name_prefix="bids-glm-sums")
        )

    def _take(self, start: int, stop: int) -> None:
        ring = start % self.rows.shape[0]
        block = self.rows[ring : ring + stop - start]
        if self.minimum is not None:
            np.minimum(self.minimum, block.min(axis=0), out=self.minimum)
            np.maximum(self.maximum, block.max(axis=0), out=self.maximum)
        if self.shared is None:
            self.consume(block)
        else:  # this process's share; the child adds the rest
            self.consume.add_share(start // self.block_volumes, block, self.shared)

    def hand_over(self, start: int, stop: int) -> None:
        """Give rows ``start:stop`` (one block, all reduced) to the consumer thread (inline:
        consume them now)."""
        if self.consumer is None:
            done: Future = Future()
            self._take(start, stop)
            done.set_result(None)
            self.handed.append(done)
        else:
            self.handed.append(self.consumer.submit(self._take, start, stop))

    def wait_for(self, block_index: int) -> None:
        """Block until block ``block_index`` was consumed (its ring rows are free)."""
        self.handed[block_index].result()
        if self.shared is not None:
            self.consume.wait_added(block_index, self.shared)

    def close(self) -> None:
        """Stop the consumer thread (blocks not yet consumed are dropped)."""
        if self.consumer is not None:
            self.consumer.shutdown(wait=True, cancel_futures=True)


class _InlineReducers:
    """Volume reductions in the calling thread, at once (no core to spare); the interface of
    `bids_glm.image.forked_reducers.ForkedReducers`."""

    def __init__(
        self, reducer: VolumeReducer, buffers: list[np.ndarray], stored: list[np.ndarray]
    ) -> None:
        self.buffers, self._stored, self._reducer = buffers, stored, reducer

    def submit(self, row: int, buffer: int) -> Callable[[], None]:
        self._reducer(row, self._stored[buffer])
        return _nothing

    def finite_voxels(self) -> np.ndarray:
        return self._reducer.finite_voxels()

    def __enter__(self) -> _InlineReducers:
        return self

    def __exit__(self, *error) -> None:
        pass


def _nothing() -> None:
    """What waiting for a volume reduced in place does."""


class _ThreadReducers:
    """Volume reductions in a pool of threads (where processes cannot be forked); the
    interface of `bids_glm.image.forked_reducers.ForkedReducers`."""

    def __init__(
        self, reducer: VolumeReducer, buffers: list[np.ndarray], stored: list[np.ndarray], n: int
    ) -> None:
        self.buffers, self._stored, self._reducer = buffers, stored, reducer
        self._pool = ThreadPoolExecutor(n, thread_name_prefix="bids-glm-volume")

    def submit(self, row: int, buffer: int) -> Callable[[], None]:
        return self._pool.submit(self._reducer, row, self._stored[buffer]).result

    def finite_voxels(self) -> np.ndarray:
        return self._reducer.finite_voxels()

    def __enter__(self) -> _ThreadReducers:
        return self

    def __exit__(self, *error) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _reducers(
    mask: np.ndarray,
    layout: SeriesLayout,
    sigma_vox: np.ndarray,
    rows: np.ndarray,
    n_workers: int,
    in_processes: bool,
    after_volume: Callable[[int], None] | None = None,
) -> tuple[VolumeReducer, ForkedReducers | _ThreadReducers | _InlineReducers]:
    """The reducer and who runs it: forked processes (``rows`` in shared memory), or threads
    (also where a fork fails, e.g. under a process limit or strict memory overcommit), or,
    without workers, the calling thread.

    ``2 n_workers + 2`` volume buffers: each worker's volume and the next, and the one being
    inflated; one without workers.
    """
    reducer = VolumeReducer(mask, sigma_vox, rows, layout)
    n_buffers = 2 * n_workers + 2 if n_workers else 1
    if n_workers == 0:
        buffers = volume_buffers(layout, n_buffers)
        stored = [stored_view(buffer, layout) for buffer in buffers]
        return reducer, _InlineReducers(reducer, buffers, stored)
    if in_processes:
        buffers = [shared_array((layout.volume_bytes,), np.uint8) for _ in range(n_buffers)]
    else:
        buffers = volume_buffers(layout, n_buffers)
    stored = [stored_view(buffer, layout) for buffer in buffers]
    if in_processes:
        try:
            return reducer, ForkedReducers(reducer, buffers, stored, n_workers, after_volume)
        except OSError as err:
            LOGGER.info("volumes reduced in threads: no process could be forked (%s)", err)
    return reducer, _ThreadReducers(reducer, buffers, stored, n_workers)


def _child_share(
    consume, rows: np.ndarray, block_volumes: int, n_kept: int
) -> Callable[[int], None]:
    """What the reducing child does after each volume it has reduced (``n_done`` so far):
    its share of the block that volume completes (`CrossProductAccumulator.add_share`)."""
    parent = os.getpid()

    def parent_alive() -> None:
        if os.getppid() != parent:
            raise ProcessLookupError("the reading process is gone")

    def after_volume(n_done: int) -> None:
        if n_done % block_volumes and n_done != n_kept:
            return
        start = (n_done - 1) // block_volumes * block_volumes
        ring = start % rows.shape[0]
        block = rows[ring : ring + n_done - start]
        consume.add_share(start // block_volumes, block, parent_alive)

    return after_volume


def _stream_blocks(
    path: Path,
    layout: SeriesLayout,
    keep_volumes: np.ndarray,
    reducer: VolumeReducer,
    workers: ForkedReducers | _ThreadReducers | _InlineReducers,
    blocks: _Blocks,
) -> None:
    """Inflate in order, reduce volumes in the workers, hand over each completed block."""
    n_kept = int(keep_volumes.sum())
    size, ring_rows = blocks.block_volumes, blocks.rows.shape[0]
    rows = np.cumsum(keep_volumes) - 1
    n_buffers = len(workers.buffers)
    pending: deque[tuple[int, int, Callable[[], None]]] = deque()
    progress = Progress(path.name, n_kept, "volumes read")

    def finish_oldest() -> None:
        _, row, wait = pending.popleft()
        wait()
        if row % size == size - 1 or row == n_kept - 1:
            blocks.hand_over(row - row % size, row + 1)

    # with forked reducers, this thread has little else to do than inflate: it does so into
    # the shared buffers directly (no inflating thread, no copy: -0.3 s of CPU at 800 volumes)
    inflate_ahead = isinstance(workers, _ThreadReducers)
    volumes = stored_volumes(path, layout, workers.buffers, inflate_ahead)
    for index, stored in enumerate(volumes):
        if keep_volumes[index]:
            row = int(rows[index])
            if row % size == 0 and row >= ring_rows:  # reuses the rows of block k - 2
                while pending and pending[0][1] < row - size:
                    finish_oldest()
                blocks.wait_for(row // size - 2)
            reducer.add_to_mean(stored)
            pending.append((index, row, workers.submit(row % ring_rows, index % n_buffers)))
            progress.update(row + 1)
        while pending and pending[0][0] <= index + 1 - n_buffers:  # frees its buffer
            finish_oldest()
    while pending:
        finish_oldest()
    for handed in blocks.handed:
        handed.result()


def stream_masked_series(
    path: Path,
    mask: np.ndarray,
    mask_affine: np.ndarray,
    consume: Callable[[np.ndarray], None],
    smoothing_fwhm_mm: float = 0.0,
    keep_volumes: np.ndarray | None = None,
    n_threads: int | None = None,
    block_volumes: int = BLOCK_VOLUMES,
    in_processes: bool | None = None,
    varying: Callable[[], np.ndarray] | None = None,
) -> StreamedSeries:
    """Read a 4-D series once, handing blocks of smoothed in-mask volumes to ``consume``.

    Parameters
    ----------
    path, mask, mask_affine, smoothing_fwhm_mm, keep_volumes
        As `bids_glm.image.io.read_masked_series`.
    n_threads : int, optional
        Workers reducing volumes while the calling thread inflates the next ones (default:
        the process's `thread_budget`); 0: inflation, reduction and ``consume`` all in the
        calling thread (one core: no process forked, no thread started). The result does
        not depend on it.
    consume : callable
        Called with each block, an array (b, n_voxels) float32 of consecutive kept volumes
        (``b <= block_volumes``), in time order, from one thread; the block is valid only
        during the call. Its rows equal those `read_masked_series` returns. A consumer with
        ``share``, ``add_share`` and ``wait_added`` (`CrossProductAccumulator`) is instead
        shared with the reducing child, when there is exactly one.
    block_volumes : int
        Rows per block.
    in_processes : bool, optional
        Reduce volumes in forked processes, if there are workers (default: where
        `forking_available`).
    varying : callable, optional
        Called once every block was consumed: the voxels whose values were not all equal
        (bool, (n_voxels,)), as the consumer knows them (e.g.
        `bids_glm.glm.cross_products.CrossProductAccumulator.varying`). If None, the
        stream finds them itself, from each voxel's minimum and maximum (~0.2 ms a volume).

    Returns
    -------
    StreamedSeries
    """
    layout, keep_volumes = checked_layout(path, mask, mask_affine, keep_volumes)
    n_workers = thread_budget() if n_threads is None else max(int(n_threads), 0)
    in_processes = forking_available() if in_processes is None else in_processes
    in_processes = in_processes and n_workers > 0
    block_volumes = max(int(block_volumes), 1)
    shape = (2 * block_volumes, int(mask.sum()))
    rows = shared_array(shape, np.float32) if in_processes else np.empty(shape, np.float32)
    sigma_vox = sigma_voxels(smoothing_fwhm_mm, layout.affine)
    share = in_processes and n_workers == 1 and hasattr(consume, "add_share")
    after_volume = None
    if share:  # the child adds each block it completes, with this process
        consume.share(block_volumes)
        after_volume = _child_share(consume, rows, block_volumes, int(keep_volumes.sum()))
    reducer, workers = _reducers(
        mask, layout, sigma_vox, rows, n_workers, in_processes, after_volume
    )
    alive = workers.raise_if_gone if share and isinstance(workers, ForkedReducers) else None
    blocks = _Blocks(
        rows, block_volumes, consume, varying is None, inline=n_workers == 0, shared=alive
    )
    try:
        with workers:
            _stream_blocks(path, layout, keep_volumes, reducer, workers, blocks)
    finally:
        blocks.close()
    finite = workers.finite_voxels()
    usable = finite & (blocks.maximum > blocks.minimum if varying is None else varying())
    log_unusable(path, usable, "in-mask voxel(s)")
    return StreamedSeries(
        n_volumes=int(keep_volumes.sum()), usable=usable, mean_volume=reducer.mean_volume()
    )
