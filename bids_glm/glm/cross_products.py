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
peak memory is the ``(2p + 3, V)`` sums plus a chunk-sized scratch array per thread.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
from scipy.linalg.blas import dgemm as _dgemm

from bids_glm.glm.ols import neighbour_sum
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


class CrossProductAccumulator:
    """Accumulate `RunSums` from blocks of consecutive kept volumes.

    The projections are summed chunk-major: each voxel chunk's rows are one contiguous
    ``(rows, width)`` block, which BLAS ``dgemm`` updates in place (``beta = 1``), so a block
    of volumes costs one read and one write of the sums and no product temporaries.
    `result` rearranges them into ``(rows, V)`` arrays in place.

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
        Voxels per chunk, at most: small enough for a chunk of the block, in float64, to
        stay in cache (each thread keeps one such scratch array).
    """

    def __init__(
        self,
        design: np.ndarray,
        n_voxels: int,
        n_threads: int | None = None,
        chunk_voxels: int = 4096,
    ) -> None:
        self.design = np.asarray(design, dtype=np.float64)
        self.operator = sum_operator(self.design)
        self.n_scans, self.p = self.design.shape
        self.n_voxels = int(n_voxels)
        self.n_chunks, self.width = chunk_layout(self.n_voxels, int(chunk_voxels))
        # separate arrays, so the (p, V) ones can outlive the rest (they become the fit's)
        self.groups = (slice(0, self.p), slice(self.p, 2 * self.p), slice(2 * self.p, None))
        self.chunked = tuple(
            np.zeros((self.n_chunks, n_rows, self.width)) for n_rows in (self.p, self.p, 3)
        )
        self.squares = np.zeros(n_voxels)
        self.lag1 = np.zeros(n_voxels)
        self.running_sum32 = np.zeros(n_voxels, dtype=np.float32)
        self.shift: np.ndarray | None = None
        self.previous = np.zeros(n_voxels)  # d_{t-1}; d_0 = 0: no lag term before the first
        self.n_added = 0
        self.n_threads = thread_budget() if n_threads is None else max(int(n_threads), 1)
        self.scratch: list[np.ndarray] = []
        self.sums: RunSums | None = None

    def add(self, block: np.ndarray) -> None:
        """Add the next ``block`` (b, V) of kept volumes (any float dtype), in time order."""
        if block.shape[0] == 0:
            return
        stop = self.n_added + block.shape[0]
        if stop > self.n_scans:
            raise ValueError(f"{stop} volumes added to sums over {self.n_scans} kept volumes")
        if self.shift is None:
            self.shift = block[0].astype(np.float64)
        operators = [
            np.asfortranarray(self.operator[rows, self.n_added : stop].T) for rows in self.groups
        ]
        shares = _thread_shares(self.n_chunks, self.n_threads)
        if len(self.scratch) < len(shares) or self.scratch[0].shape[0] <= block.shape[0]:
            self.scratch = [np.zeros((block.shape[0] + 1, self.width)) for _ in shares]
        for_each_in_threads(
            lambda share: self._add_chunks(operators, block, *share),
            list(zip(shares, self.scratch, strict=False)),
            self.n_threads,
            "sums",
        )
        self.n_added = stop

    def _add_chunks(
        self, operators: list[np.ndarray], block: np.ndarray, chunks: range, scratch: np.ndarray
    ) -> None:
        """The block's contribution to the voxel ``chunks`` (disjoint between threads).

        ``scratch`` rows: ``d_{t-1}`` of the block's first volume, then the block's ``d``.
        """
        lagged = scratch[: block.shape[0] + 1]
        shifted = lagged[1:]
        for index in chunks:
            start = index * self.width
            voxels = slice(start, min(start + self.width, self.n_voxels))
            width = voxels.stop - start
            lagged[:, width:] = 0.0  # the last chunk's padding
            lagged[0, :width] = self.previous[voxels]
            shifted[:, :width] = block[:, voxels]
            shifted[:, :width] -= self.shift[voxels]
            for chunked, operator in zip(self.chunked, operators, strict=True):
                _dgemm(1.0, shifted.T, operator, beta=1.0, c=chunked[index].T, overwrite_c=True)
            d, d_lagged = lagged[1:, :width], lagged[:-1, :width]
            self.squares[voxels] += np.einsum("tv,tv->v", d, d)
            self.lag1[voxels] += np.einsum("tv,tv->v", d_lagged, d)
            self.previous[voxels] = lagged[-1, :width]
            running_sum32 = self.running_sum32[voxels]
            for volume in block[:, voxels]:  # in time order, as numpy's float32 mean
                np.add(running_sum32, volume, out=running_sum32)

    def result(self) -> RunSums:
        """The sums, once every kept volume was added (``ValueError`` otherwise).

        The first call rearranges the chunk-major sums in place (no further volume can be
        added); later calls return the same arrays.
        """
        if self.n_added != self.n_scans or self.shift is None:
            raise ValueError(f"{self.n_added} of {self.n_scans} kept volumes were added")
        if self.sums is None:
            projected, neighbour, constants = (
                rows_from_chunks(chunked, self.n_voxels) for chunked in self.chunked
            )
            self.chunked = ()
            self.sums = RunSums(
                n_scans=self.n_scans,
                shift=self.shift,
                projected=projected,
                neighbour=neighbour,
                total=constants[0],
                constant_residual=constants[1],
                constant_neighbour=constants[2],
                squares=self.squares,
                lag1=self.lag1,
                last=self.previous,
                running_sum32=self.running_sum32,
            )
        return self.sums


def chunk_layout(n_voxels: int, chunk_voxels: int) -> tuple[int, int]:
    """Chunks of equal width (a multiple of 8 voxels, at most ~``chunk_voxels``) covering
    ``n_voxels``: ``(n_chunks, width)``; the last chunk's excess is padding."""
    if chunk_voxels < 1:
        raise ValueError(f"chunk_voxels must be positive; received {chunk_voxels}")
    n_chunks = -(-n_voxels // chunk_voxels)
    width = -(-n_voxels // max(n_chunks, 1))
    return n_chunks, max(-(-width // 8) * 8, 8)


def rows_from_chunks(chunked: np.ndarray, n_voxels: int) -> np.ndarray:
    """Rearrange chunk-major sums ``(n_chunks, rows, width)`` into ``(rows, n_voxels)``.

    In place (temporaries: one chunk row and one voxel row), so the sums are never held
    twice. The input is consumed; the result is a C-contiguous view of its memory.
    """
    n_chunks, n_rows, width = chunked.shape
    pieces = chunked.reshape(n_chunks * n_rows, width)
    # transpose the (n_chunks, n_rows) grid of pieces by following its permutation's cycles
    done = np.zeros(n_chunks * n_rows, dtype=bool)
    for start in range(pieces.shape[0]):
        if done[start]:
            continue
        held, target = pieces[start].copy(), start
        while True:
            done[target] = True
            row, chunk = divmod(target, n_chunks)
            source = chunk * n_rows + row
            if source == start:
                pieces[target] = held
                break
            pieces[target] = pieces[source]
            target = source
    flat = chunked.reshape(-1)
    padded = n_chunks * width
    for row in range(1, n_rows):  # drop the padding: each row moves left (overlap is safe)
        flat[row * n_voxels : (row + 1) * n_voxels] = flat[row * padded : row * padded + n_voxels]
    return flat[: n_rows * n_voxels].reshape(n_rows, n_voxels)


def _thread_shares(n_chunks: int, n_threads: int) -> list[range]:
    """Consecutive runs of chunk indices, one per thread (the sums do not depend on it)."""
    n_shares = max(min(n_threads, n_chunks), 1)
    bounds = np.linspace(0, n_chunks, n_shares + 1).round().astype(int)
    return [range(bounds[k], bounds[k + 1]) for k in range(n_shares)]
