"""Sums over volumes that hold everything a run's GLM needs, accumulated as volumes stream in.

The OLS fit, nilearn's AR(1) estimate and its per-bin refit (`bids_glm.glm.ar_refit`) depend
on the data ``Y`` (n, V) only through a few lag-0 and lag-1 cross-products of design and
data. With ``d_t = y_t - y_0`` (each voxel shifted by its first kept volume, which removes the
baseline exactly, so no sum below cancels a large mean) they are:

* ``pinv(X) d`` (p, V), the OLS coefficients of ``d``;
* ``N^T d`` (p, V), with ``N = neighbour_sum(X)``: the lag-one design-data products
  ``sum_t (x_{t-1} + x_{t+1}) d_t``;
* ``1^T d``, ``e1^T d`` and ``neighbour_sum(e1)^T d`` (V,), where ``e1`` is the OLS residual
  of the constant series (zero when the design spans a constant), so percent scaling (an
  affine map of each voxel's series) can be applied to the sums afterwards;
* ``sum_t d_t^2`` and ``sum_t d_t d_{t+1}`` (V,), and the last kept volume ``d_{n-1}``.

The projections are stacked in one ``(2p + 3, n)`` operator and applied to a block of volumes
at a time by BLAS ``dgemm`` accumulating in place, in float64. Volumes must be added in time
order and are the kept (uncensored) ones only: lags run over the retained rows, exactly as a
fit of the censored series does. Each block is cut into voxel chunks (shared by threads), each
turned into float64 once in a per-thread scratch array that stays in cache, from which the
projections, the squares, the lag-one products and the float32 running sum are all taken, so
peak memory is the ``(2p + 3, V)`` sums plus a chunk-sized scratch array per thread. Shared
(`CrossProductAccumulator.share`), the sums lie in shared memory and two processes add each
block together, claiming its chunks one at a time (`bids_glm.runtime.shared_claims`); each
voxel's arithmetic is the same, so the sums are the same to the bit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from bids_glm.glm.inplace_gemm import add_product
from bids_glm.glm.ols import neighbour_sum, voxel_chunks
from bids_glm.runtime.shared_claims import ChunkClaims
from bids_glm.runtime.shared_memory import shared_array
from bids_glm.runtime.threads import for_each_in_threads, thread_budget


@dataclass(frozen=True)
class RunSums:
    """Cross-products of one run's design and (shifted) data, over its kept volumes.

    Attributes
    ----------
    n_scans : int
        Kept volumes summed over.
    shift : ndarray, shape (V,), float64
        Each voxel's first kept value ``y_0``; every other sum is of ``d = y - y_0``.
    projected : ndarray, shape (p, V)
        ``pinv(X) @ d``.
    neighbour : ndarray, shape (p, V)
        ``neighbour_sum(X).T @ d``.
    total, constant_residual, constant_neighbour : ndarray, shape (V,)
        ``1^T d``, ``e1^T d`` and ``neighbour_sum(e1)^T d``.
    squares, lag1 : ndarray, shape (V,)
        ``sum_t d_t^2`` and ``sum_{t < n-1} d_t d_{t+1}``.
    last : ndarray, shape (V,)
        ``d_{n-1}``.
    running_sum32 : ndarray, shape (V,), float32
        ``sum_t y_t`` accumulated in float32 volume after volume, as numpy's
        ``Y.mean(axis=0)`` forms it (so percent scaling divides by the very mean it uses).
    """

    n_scans: int
    shift: np.ndarray
    projected: np.ndarray
    neighbour: np.ndarray
    total: np.ndarray
    constant_residual: np.ndarray
    constant_neighbour: np.ndarray
    squares: np.ndarray
    lag1: np.ndarray
    last: np.ndarray
    running_sum32: np.ndarray

    @property
    def voxel_mean(self) -> np.ndarray:
        """Each voxel's temporal mean, float32, as numpy's ``Y.mean(axis=0)`` gives it."""
        return self.running_sum32 / np.float32(self.n_scans)


def constant_residual(design: np.ndarray) -> np.ndarray:
    """OLS residual ``1 - X pinv(X) 1`` of the constant series (float64, shape (n,))."""
    ones = np.ones(design.shape[0])
    return ones - design @ (scipy.linalg.pinv(design) @ ones)


def sum_operator(design: np.ndarray) -> np.ndarray:
    """Rows ``pinv(X)``, ``N^T``, ``1``, ``e1``, ``neighbour_sum(e1)``: shape (2p + 3, n)."""
    residual = constant_residual(design)
    return np.vstack(
        [
            scipy.linalg.pinv(design),
            neighbour_sum(design).T,
            np.ones((1, design.shape[0])),
            residual[np.newaxis],
            neighbour_sum(residual[:, np.newaxis]).T,
        ]
    )


# the arrays a block adds to (in shared memory once `CrossProductAccumulator.share`d)
SUM_ARRAYS = (
    "projected",
    "neighbour",
    "constants",
    "squares",
    "lag1",
    "shift",
    "previous",
    "running_sum32",
)


class CrossProductAccumulator:
    """Accumulate `RunSums` from blocks of consecutive kept volumes.

    Parameters
    ----------
    design : ndarray, shape (n, p)
        The fitted design (kept rows only), float64.
    n_voxels : int
        Columns of each block.
    n_threads : int, optional
        Threads sharing each block's voxel chunks; default: the process's `thread_budget`.
        The sums do not depend on it.
    chunk_voxels : int
        Voxels per chunk; each thread keeps one float64 scratch of a chunk of the block
        (~2.1 MB for 16 volumes), which stays in cache. (With the smoothing in threads of
        the same process, 65,536 had been faster: 4x fewer calls, each a release and retake
        of the GIL the reading threads shared; with it in a forked process, 16,384 is
        0.1-0.25 s faster at 800 volumes, 3 of 3 interleaved pairs.)
    """

    def __init__(
        self,
        design: np.ndarray,
        n_voxels: int,
        n_threads: int | None = None,
        chunk_voxels: int = 16_384,
    ) -> None:
        self.design = np.asarray(design, dtype=np.float64)
        self.operator = np.ascontiguousarray(sum_operator(self.design))  # rows for BLAS
        self.n_scans, self.p = self.design.shape
        # separate arrays, so the (p, V) ones can outlive the rest (they become the fit's;
        # one array for the last p + 3 rows, one product a chunk, was ~0.1 ms a volume
        # faster but kept the constant rows alive in the AR(1) refit, where the peak is
        # at 800 volumes: +5-7 MiB)
        self.projected = np.zeros((self.p, n_voxels))
        self.neighbour = np.zeros((self.p, n_voxels))
        self.constants = np.zeros((3, n_voxels))
        self.squares = np.zeros(n_voxels)
        self.lag1 = np.zeros(n_voxels)
        self.running_sum32 = np.zeros(n_voxels, dtype=np.float32)
        self.shift = np.zeros(n_voxels)  # y_0, set by the first block
        self.previous = np.zeros(n_voxels)  # d_{t-1}; d_0 = 0: no lag term before the first
        self.n_added = 0
        self.n_threads = thread_budget() if n_threads is None else max(int(n_threads), 1)
        self.chunks = list(voxel_chunks(n_voxels, int(chunk_voxels)))
        self.chunk_voxels = max(min(int(chunk_voxels), n_voxels), 1)
        self.shares = _thread_shares(self.chunks, self.n_threads)
        self.scratch: list[np.ndarray] = []
        self._claims: ChunkClaims | None = None  # see `share`
        self._block_volumes = 0

    def __call__(self, block: np.ndarray) -> None:
        """`add`: the accumulator is a consumer of streamed blocks."""
        self.add(block)

    def add(self, block: np.ndarray) -> None:
        """Add the next ``block`` (b, V) of kept volumes (any float dtype), in time order."""
        if block.shape[0] == 0:
            return
        stop = self.n_added + block.shape[0]
        if stop > self.n_scans:
            raise ValueError(f"{stop} volumes added to sums over {self.n_scans} kept volumes")
        self._fit_scratch(block.shape[0], len(self.shares))
        operator = self.operator[:, self.n_added : stop]
        first = self.n_added == 0
        for_each_in_threads(
            lambda share: self._add_chunks(operator, block, *share, first),
            list(zip(self.shares, self.scratch, strict=True)),
            self.n_threads,
            "sums",
        )
        self.n_added = stop

    def share(self, block_volumes: int) -> None:
        """Hold the sums in shared memory, for this process and one forked after this call to
        add the blocks of ``block_volumes`` volumes together (`add_share`); before any block.
        """
        if self.n_added or self._claims is not None:
            raise ValueError("sums are shared before any block is added, once")
        for name in SUM_ARRAYS:
            zeros = getattr(self, name)
            setattr(self, name, shared_array(zeros.shape, zeros.dtype))
        self._block_volumes = int(block_volumes)
        n_blocks = -(-self.n_scans // self._block_volumes)
        self._claims = ChunkClaims(n_blocks, len(self.chunks))

    def add_share(self, index: int, block: np.ndarray, alive: Callable[[], None]) -> None:
        """Add this process's share of block ``index`` (rows ``index * block_volumes`` on).

        Both processes call this for every block: each claims voxel chunks one at a time
        until none is left, so the work splits by how busy each is. A block's chunks are
        claimed once the previous block's are all added (each voxel's volumes in time
        order). ``alive`` raises if the other process is gone (see `ChunkClaims`).
        """
        claims = self._claims
        claims.wait(index - 1, alive)
        start = index * self._block_volumes
        operator = self.operator[:, start : start + block.shape[0]]
        self._fit_scratch(block.shape[0], 1)
        while (chunk_index := claims.claim(index, alive)) is not None:
            chunk = self.chunks[chunk_index]
            self._add_chunks(operator, block, [chunk], self.scratch[0], index == 0)
            claims.finish(index, alive)

    def _fit_scratch(self, n_rows: int, n_arrays: int) -> None:
        """At least ``n_arrays`` scratch arrays for blocks of ``n_rows`` volumes (and the
        volume before them), one per thread adding chunks."""
        if len(self.scratch) < n_arrays or self.scratch[0].shape[0] <= n_rows:
            shape = (n_rows + 1, self.chunk_voxels)
            self.scratch = [np.empty(shape) for _ in range(n_arrays)]

    def wait_added(self, index: int, alive: Callable[[], None]) -> None:
        """Return once block ``index`` is added in whole (`add_share`)."""
        self._claims.wait(index, alive)

    def _add_chunks(
        self,
        operator: np.ndarray,
        block: np.ndarray,
        chunks: list[slice],
        scratch: np.ndarray,
        first: bool,
    ) -> None:
        """The block's contribution to the voxel ``chunks`` (disjoint between threads);
        ``first``: the run's first block, whose first volume is the shift ``y_0``.

        ``scratch`` rows: ``d`` of the volume before the block, then the block's ``d``.
        """
        p = self.p
        for chunk in chunks:
            if first:
                self.shift[chunk] = block[0, chunk]
            lagged = scratch[: block.shape[0] + 1, : chunk.stop - chunk.start]
            d = lagged[1:]
            lagged[0] = self.previous[chunk]
            d[...] = block[:, chunk]
            d -= self.shift[chunk]
            add_product(self.projected[:, chunk], operator[:p], d)
            add_product(self.neighbour[:, chunk], operator[p : 2 * p], d)
            add_product(self.constants[:, chunk], operator[2 * p :], d)
            self.squares[chunk] += np.einsum("tv,tv->v", d, d)
            self.lag1[chunk] += np.einsum("tv,tv->v", lagged[:-1], d)
            self.previous[chunk] = d[-1]
            running_sum32 = self.running_sum32[chunk]
            for volume in block[:, chunk]:  # in time order, as numpy's float32 mean
                np.add(running_sum32, volume, out=running_sum32)

    def varying(self) -> np.ndarray:
        """Voxels whose added values are not all equal (bool, shape (V,)).

        Exactly those with a positive ``sum_t d_t^2``: the float64 difference of two float32
        values is zero only when they are equal, and its square (>= 2e-90) does not
        underflow.
        """
        return self.squares > 0

    def result(self) -> RunSums:
        """The sums, once every kept volume was added (``ValueError`` otherwise)."""
        added = self.n_added
        if self._claims is not None and not added:
            added = min(self._claims.blocks_finished() * self._block_volumes, self.n_scans)
        if added != self.n_scans:
            raise ValueError(f"{added} of {self.n_scans} kept volumes were added")
        return RunSums(
            n_scans=self.n_scans,
            shift=self.shift,
            projected=self.projected,
            neighbour=self.neighbour,
            total=self.constants[0],
            constant_residual=self.constants[1],
            constant_neighbour=self.constants[2],
            squares=self.squares,
            lag1=self.lag1,
            last=self.previous,
            running_sum32=self.running_sum32,
        )


def _thread_shares(chunks: list[slice], n_threads: int) -> list[list[slice]]:
    """Consecutive runs of chunks, one per thread (the sums do not depend on the split)."""
    n_shares = max(min(n_threads, len(chunks)), 1)
    bounds = np.linspace(0, len(chunks), n_shares + 1).round().astype(int)
    return [chunks[bounds[k] : bounds[k + 1]] for k in range(n_shares)]
