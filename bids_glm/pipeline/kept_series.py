"""A streamed run's series kept for the single-trial estimates, scaled as it is read back.

Single-trial estimates take each voxel's whole series (`bids_glm.glm.lss_terms.lss_pass`,
a block of voxels at a time), so a run that is summed as it streams
(`bids_glm.pipeline.run_fit.fit_streamed_run`, and the surface and CIFTI readers of
`bids_glm.pipeline.surface_fit`) keeps its smoothed blocks too: stored
by voxel chunks (`bids_glm.pipeline.chunked_series.ChunkedSeries`), in an unnamed file of the
work folder from `bids_glm.runtime.spill.SPILL_MIN_BYTES` on, so a long run needs disk
rather than memory. Read back a block of voxels at a time, they are scaled as the held path
scales the whole series (`bids_glm.glm.scaling.scale_signal`), around the means the stream's
sums formed (`bids_glm.glm.cross_products.RunSums.voxel_mean`: float32, summed scan after
scan as numpy sums a (T, V) array's axis 0), so "percent" values equal the held path's bit
for bit; "global" uses the mean of those means, as the streamed fit does (the held path's
float32 pairwise grand mean may differ from it in the last bit).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bids_glm.glm.scaling import SCALING_MODES, scale_around_mean
from bids_glm.pipeline.chunked_series import ChunkedSeries

__all__ = ["KeptSeries"]


class KeptSeries:
    """A run's ``(n_scans, n_voxels)`` float32 series, kept as it streams, read back scaled.

    Written with `add` (consecutive blocks of scans, in time order, from one thread: the
    stream's consumer); once every scan was added, `finish` takes the voxels' means and
    ``series[:, voxels]`` returns the scaled values of a slice of voxels (or vertices, or
    grayordinates; a new float32 array), which is all `bids_glm.glm.lsa.lsa_fit` and
    `bids_glm.glm.single_trial.lss_fit` read of their data.

    Parameters
    ----------
    n_scans, n_voxels : int
        The shape.
    signal_scaling : {"percent", "global", "none"}
        As `bids_glm.glm.scaling.scale_signal`.
    scratch_dir : Path, optional
        Where a large series is held in a file (`bids_glm.runtime.spill.scratch_array`).
    """

    ndim = 2
    dtype = np.dtype(np.float32)

    def __init__(
        self, n_scans: int, n_voxels: int, signal_scaling: str, scratch_dir: Path | None = None
    ) -> None:
        if signal_scaling not in SCALING_MODES:
            raise ValueError(
                f"scaling mode must be one of {SCALING_MODES}; received {signal_scaling!r}"
            )
        self.shape = (int(n_scans), int(n_voxels))
        self.signal_scaling = signal_scaling
        self._series = ChunkedSeries(n_scans, n_voxels, scratch_dir)
        self._n_added = 0
        self._means: np.ndarray | None = None  # what values are scaled around, once finished
        self._finished = False

    def add(self, block: np.ndarray) -> None:
        """Keep the next ``(b, n_voxels)`` scans (copied: the block may be reused after)."""
        self._series.write_scans(self._n_added, block)
        self._n_added += block.shape[0]

    def finish(self, voxel_mean: np.ndarray) -> None:
        """Fix the scaling once every scan was added, from each voxel's temporal mean
        (float32, as numpy's ``mean(axis=0)``; the sums' `RunSums.voxel_mean`).

        Means below 1 are floored at 1 as `bids_glm.glm.scaling.scale_signal` floors them;
        the warning about them is the fit's (`bids_glm.glm.scaling.signal_affine`).
        """
        if self._n_added != self.shape[0]:
            raise ValueError(f"{self._n_added} of {self.shape[0]} scans were added")
        if self.signal_scaling == "percent":
            self._means = np.array(voxel_mean, dtype=np.float32)
        elif self.signal_scaling == "global":
            self._means = np.mean(voxel_mean, dtype=np.float64)
        self._finished = True

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        """``series[:, voxels]``: every scan of a slice of voxels, scaled, float32."""
        if not self._finished:
            raise RuntimeError("a KeptSeries is read once every scan was added and finished")
        values = self._series[key]
        if self._means is None:
            return values
        means = self._means if self._means.ndim == 0 else self._means[key[1]]
        return scale_around_mean(values, means)
