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
at a time by one matrix product (BLAS), in float64. Volumes must be added in time order and
are the kept (uncensored) ones only: lags run over the retained rows, exactly as a fit of the
censored series does. Each block is cut into voxel chunks (shared by threads), so peak memory
is the ``(2p + 3, V)`` sums plus a few chunk-sized float64 temporaries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from bids_glm.glm.ols import neighbour_sum, voxel_chunks
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

    Parameters
    ----------
    design : ndarray, shape (n, p)
        The fitted design (kept rows only), float64.
    n_voxels : int
        Columns of each block.
    n_threads : int, optional
        Threads sharing each block's voxels; default: the process's `thread_budget`. The
        sums do not depend on it.
    chunk_voxels : int
        Voxels per product: small enough for the block's float64 copy to stay in cache.
    """

    def __init__(
        self,
        design: np.ndarray,
        n_voxels: int,
        n_threads: int | None = None,
        chunk_voxels: int = 16_384,
    ) -> None:
        self.design = np.asarray(design, dtype=np.float64)
        self.operator = sum_operator(self.design)
        self.n_scans, self.p = self.design.shape
        # separate arrays, so the (p, V) ones can outlive the rest (they become the fit's)
        self.projected = np.zeros((self.p, n_voxels))
        self.neighbour = np.zeros((self.p, n_voxels))
        self.constants = np.zeros((3, n_voxels))
        self.squares = np.zeros(n_voxels)
        self.lag1 = np.zeros(n_voxels)
        self.running_sum32 = np.zeros(n_voxels, dtype=np.float32)
        self.shift: np.ndarray | None = None
        self.previous: np.ndarray | None = None
        self.n_added = 0
        self.n_threads = thread_budget() if n_threads is None else max(int(n_threads), 1)
        self.chunk_voxels = int(chunk_voxels)

    def add(self, block: np.ndarray) -> None:
        """Add the next ``block`` (b, V) of kept volumes (any float dtype), in time order."""
        if block.shape[0] == 0:
            return
        stop = self.n_added + block.shape[0]
        if stop > self.n_scans:
            raise ValueError(f"{stop} volumes added to sums over {self.n_scans} kept volumes")
        if self.shift is None:
            self.shift = block[0].astype(np.float64)
            self.previous = np.zeros_like(self.shift)  # d_0 = 0: no lag term before it
        for volume in block:  # in time order, as numpy's float32 mean over axis 0
            self.running_sum32 += volume
        operator = self.operator[:, self.n_added : stop]
        chunks = list(voxel_chunks(block.shape[1], self.chunk_voxels))
        for_each_in_threads(
            lambda chunk: self._add_chunk(operator, block, chunk), chunks, self.n_threads, "sums"
        )
        self.n_added = stop

    def _add_chunk(self, operator: np.ndarray, block: np.ndarray, chunk: slice) -> None:
        """The block's contribution to the voxels ``chunk`` (disjoint between threads)."""
        shifted = block[:, chunk].astype(np.float64)
        shifted -= self.shift[chunk]
        products = operator @ shifted
        p = self.p
        self.projected[:, chunk] += products[:p]
        self.neighbour[:, chunk] += products[p : 2 * p]
        self.constants[:, chunk] += products[2 * p :]
        self.squares[chunk] += np.einsum("tv,tv->v", shifted, shifted)
        self.lag1[chunk] += np.einsum("tv,tv->v", shifted[:-1], shifted[1:])
        self.lag1[chunk] += self.previous[chunk] * shifted[0]
        self.previous[chunk] = shifted[-1]

    def result(self) -> RunSums:
        """The sums, once every kept volume was added (``ValueError`` otherwise)."""
        if self.n_added != self.n_scans or self.shift is None or self.previous is None:
            raise ValueError(f"{self.n_added} of {self.n_scans} kept volumes were added")
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
