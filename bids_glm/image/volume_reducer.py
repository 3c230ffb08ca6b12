"""Per-volume reduction of a streamed series: box, smoothing, in-mask gather, running sums.

One `VolumeReducer` serves every volume of a run and may be called from several threads at
once: each call writes only its own row of the output, the finite-voxel flags are kept per
thread and combined at the end, and scratch buffers are per thread, so no lock is held while
numpy and BLAS work (they release the GIL). The running sum behind the run's mean volume is
added to in time order by the reading thread (`VolumeReducer.add_to_mean`), so the mean does
not depend on the number of threads.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

import numpy as np

from bids_glm.image.mask import bounding_box
from bids_glm.image.series_layout import SeriesLayout
from bids_glm.image.smooth import (
    BoxSmoother,
    SmoothingWorkspace,
    kernel_radius_voxels,
    plan_box_smoother,
)

# Volumes of values below 2**16 in magnitude (8- and 16-bit storage) whose sum int32 holds
# exactly; a longer run's sum moves to int64 there
INT32_EXACT_VOLUMES = 2**31 // 2**16


@dataclass
class _ThreadTotals:
    """Sums over the volumes one thread has processed."""

    finite: np.ndarray  # (n_voxels,) bool: finite in every volume seen
    box: np.ndarray  # scratch (box shape) float32, Fortran order
    smoothing: SmoothingWorkspace | None  # scratch of the smoother


class VolumeReducer:
    """Reduce each stored volume to its (smoothed) in-mask values.

    Parameters
    ----------
    mask : ndarray of bool, shape (x, y, z)
        Voxels to keep.
    sigma_vox : ndarray, shape (3,)
        Gaussian sigma per axis in voxels (zeros: no smoothing).
    out : ndarray, shape (n_rows, n_voxels), float32
        Receives one row per processed volume.
    layout : SeriesLayout
        How the series stores its values (the scaling to data values, whether they can be
        non-finite).
    """

    def __init__(
        self,
        mask: np.ndarray,
        sigma_vox: np.ndarray,
        out: np.ndarray,
        layout: SeriesLayout,
    ) -> None:
        smoothing = bool(np.any(np.asarray(sigma_vox) > 0))
        radius = kernel_radius_voxels(sigma_vox) if smoothing else np.zeros(3, dtype=int)
        self.box = bounding_box(mask, radius)
        self.smoother: BoxSmoother | None = None
        kept_region = bounding_box(mask, (0, 0, 0))
        region_mask = mask[kept_region]
        if smoothing:
            keep = tuple(
                slice(k.start - b.start, k.stop - b.start)
                for k, b in zip(kept_region, self.box, strict=True)
            )
            box_shape = tuple(b.stop - b.start for b in self.box)
            self.smoother = plan_box_smoother(box_shape, keep, sigma_vox, region_mask)
        # in-mask voxels in the C order of mask[...], addressed in the region's memory order:
        # C for the smoother's output (a gather along contiguous z runs), else the stored
        # volume's Fortran order
        self.region_order = "F" if self.smoother is None else "C"
        self.in_mask = np.ravel_multi_index(
            np.nonzero(region_mask), region_mask.shape, order=self.region_order
        )
        self.box_mask = mask[self.box]
        self.mask_shape = mask.shape
        self.out = out
        self.layout = layout
        self._local = threading.local()
        self._all_totals: list[_ThreadTotals] = []
        self._lock = threading.Lock()
        self._volume_sum = np.zeros(mask.shape, order="F")
        self._n_summed = 0

    def add_to_mean(self, stored: np.ndarray) -> None:
        """Add a volume's stored values to the running sum of `mean_volume`.

        Called once per kept volume, in time order, from one thread (so the sum, and
        hence the mean, does not depend on the number of threads).
        """
        if self._n_summed == 0 and stored.dtype.kind in "iub" and stored.dtype.itemsize <= 2:
            # exact whatever the order; several times faster than float64
            self._volume_sum = np.zeros(self.mask_shape, dtype=np.int32, order="F")
        elif self._n_summed == INT32_EXACT_VOLUMES and self._volume_sum.dtype == np.int32:
            self._volume_sum = self._volume_sum.astype(np.int64, order="F")
        np.add(self._volume_sum, stored, out=self._volume_sum)
        self._n_summed += 1

    def _totals(self) -> _ThreadTotals:
        totals = getattr(self._local, "totals", None)
        if totals is None:
            box_shape = tuple(b.stop - b.start for b in self.box)
            box = np.zeros(box_shape, dtype=np.float32, order="F")  # finite (smooth.py)
            smoothing = None
            if self.smoother is not None:  # the box doubles as the smoothing's spare buffer
                smoothing = self.smoother.workspace(spare=False)
                smoothing = replace(smoothing, spare=box.reshape(-1, order="F"))
            totals = _ThreadTotals(
                finite=np.ones(self.out.shape[1], dtype=bool), box=box, smoothing=smoothing
            )
            self._local.totals = totals
            with self._lock:
                self._all_totals.append(totals)
        return totals

    def __call__(self, row: int, stored: np.ndarray) -> None:
        """Reduce one volume of stored values (x, y, z) into ``out[row]``."""
        totals = self._totals()
        if self.smoother is not None and self.stored_is_data(stored):
            region = self.smoother.apply(stored[self.box], totals.smoothing)  # no box copy
        else:
            region = self._converted_region(stored, totals)
        np.take(region.ravel(order=self.region_order), self.in_mask, out=self.out[row])

    def _converted_region(self, stored: np.ndarray, totals: _ThreadTotals) -> np.ndarray:
        """The box as float32 data (scaled, non-finite values 0 and recorded), smoothed."""
        box = self.layout.to_float32(stored[self.box], totals.box)
        if self.layout.may_be_non_finite:
            bad = ~np.isfinite(box)
            if bad.any():
                totals.finite &= ~bad[self.box_mask]
                box[bad] = 0.0
        return box if self.smoother is None else self.smoother.apply(box, totals.smoothing)

    def stored_is_data(self, stored: np.ndarray) -> bool:
        """Whether stored values are the data as float32 holds them: integers of up to 16
        bits (finite, exact in float32 and float64), unscaled."""
        unscaled = self.layout.slope == 1.0 and not self.layout.intercept
        return unscaled and stored.dtype.kind in "iu" and stored.dtype.itemsize <= 2

    def finite_voxels(self) -> np.ndarray:
        """In-mask voxels finite in every processed volume (bool, shape (n_voxels,))."""
        finite = np.ones(self.out.shape[1], dtype=bool)
        for totals in self._all_totals:
            finite &= totals.finite
        return finite

    def mean_volume(self) -> np.ndarray:
        """Time mean of the volumes given to `add_to_mean`, unsmoothed, in data units.

        Returns
        -------
        ndarray, shape (x, y, z), float32
            Non-finite values (from non-finite data) are set to 0.
        """
        mean = np.divide(self._volume_sum, max(self._n_summed, 1))  # the one float64 copy
        mean *= self.layout.slope
        mean += self.layout.intercept
        np.nan_to_num(mean, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        return mean.astype(np.float32)
