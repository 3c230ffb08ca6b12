"""Read the runs of an SPM12 model: globals, the analysis mask and the in-mask data.

SPM12 keeps a voxel if it lies in the explicit mask (when one is given), exceeds 0.8 of
its scan's global in every scan of every session, and is not constant over time. The runs
are read once, volume by volume; each volume's values are kept only at the voxels still
eligible, so memory follows the brain rather than the whole grid; the model needs them all
at once (one dense serial-correlation model), stored by voxel chunks (``chunked_series.py``), and
large ones in a file of the work folder the kernel can page (``runtime/spill.py``). With
``--smoothing-fwhm`` each volume is first smoothed as ``spm_smooth`` does
(``image/spm_smooth.py``), so the model sees what SPM's would after its smoothing step; with
``--dummy-scans N`` the first N volumes of each run are skipped.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bids_glm.errors import InputError
from bids_glm.glm.spm_globals import MASK_THRESHOLD_FRACTION, spm_global
from bids_glm.image.io import for_each_volume, iter_volumes
from bids_glm.image.series_layout import SeriesLayout, series_layout
from bids_glm.image.spm_smooth import as_stored, spm_smooth_volume
from bids_glm.pipeline.chunked_series import ChunkedSeries
from bids_glm.runtime.threads import thread_budget

__all__ = ["SpmData", "read_spm_data"]


@dataclass(frozen=True)
class SpmData:
    """The unscaled in-mask data of every session, with SPM's globals.

    Attributes
    ----------
    data : ChunkedSeries
        ``(n_scans, n_voxels)`` float32 raw values (sessions stacked in time), read by
        chunks of voxels (``data[:, start:stop]``).
    mask : numpy.ndarray
        ``(x, y, z)`` bool analysis mask.
    affine : numpy.ndarray
        The grid's affine.
    globals_ : numpy.ndarray
        ``(n_scans,)`` raw globals (``spm_global``).
    n_scans : tuple of int
        Scans per session.
    mean_volumes : tuple of numpy.ndarray
        Each session's time-mean volume (the reports' underlay).
    """

    data: ChunkedSeries
    mask: np.ndarray
    affine: np.ndarray
    globals_: np.ndarray
    n_scans: tuple[int, ...]
    mean_volumes: tuple[np.ndarray, ...]


def _check_grid(path: Path, shape: tuple[int, ...], affine: np.ndarray, reference) -> None:
    """Raise if a run's grid differs from the first run's (or the explicit mask's)."""
    if reference is None:
        return
    ref_shape, ref_affine, ref_path = reference
    if tuple(shape[:3]) != tuple(ref_shape[:3]) or not np.allclose(affine, ref_affine, atol=1e-4):
        raise InputError(
            f"{path}: its grid {tuple(shape[:3])} differs from {ref_path}'s; an SPM12 model "
            "needs every run (and the explicit mask) on one grid"
        )


def _scan_values(layout: SeriesLayout, volume: np.ndarray, kernels) -> np.ndarray:
    """A float32 volume as SPM reads it (smoothed first if ``kernels``), flat in F order."""
    if kernels is not None:
        smoothed = spm_smooth_volume(volume, kernels)
        volume = as_stored(smoothed, layout.dtype, layout.slope, layout.intercept)
    return volume.ravel(order="F")


class _ScanReducer:
    """One run's scans, each to its global, in-mask values and threshold flags.

    May be called from several threads at once (``for_each_volume``): each call writes its
    own scan of ``data`` and entry of ``globals_``; the threshold flags and scratch buffers
    are per thread, combined at the end; the running sum behind the mean volume is added
    in time order by the reading thread.
    """

    def __init__(self, layout: SeriesLayout, voxels_f: np.ndarray, rows, options):
        self.layout, self.voxels_f = layout, voxels_f
        self.fraction, self.kernels, self.n_kept = options
        self.data, self.globals_, self.first_row = rows
        self.total = np.zeros(layout.volume_shape, dtype=np.float32, order="F")
        self._local = threading.local()
        self._flags: list[np.ndarray] = []
        self._lock = threading.Lock()

    def add_to_mean(self, stored: np.ndarray) -> None:
        np.add(self.total, stored, out=self.total, casting="unsafe")

    def __call__(self, row: int, stored: np.ndarray) -> None:
        local = self._local
        if not hasattr(local, "volume"):
            local.volume = np.empty(self.layout.volume_shape, dtype=np.float32, order="F")
            local.scratch = np.empty(local.volume.size, dtype=np.float32)
            local.values = np.empty(self.voxels_f.size, dtype=np.float32)
            local.above = np.ones(self.voxels_f.size, dtype=bool)
            with self._lock:
                self._flags.append(local.above)
        volume = self.layout.to_float32(stored, local.volume)
        flat = _scan_values(self.layout, volume, self.kernels)
        global_value = spm_global(flat, local.scratch)
        self.globals_[self.first_row + row] = global_value
        values = np.take(flat, self.voxels_f, out=local.values)
        self.data.write_scans(self.first_row + row, values[np.newaxis])
        local.above &= values > np.float64(self.fraction * global_value)

    def above(self) -> np.ndarray:
        """Voxels above threshold in every scan of the run."""
        return np.logical_and.reduce(self._flags)

    def mean_volume(self) -> np.ndarray:
        """The run's time-mean volume (float32)."""
        mean = self.total / self.n_kept * self.layout.slope + self.layout.intercept
        return mean.astype(np.float32)


def _first_scan_voxels(path: Path, candidates: np.ndarray, options):
    """Candidate voxels above threshold in the first scan: (C-order, Fortran-order) indices.

    ``options`` are the threshold fraction, the smoothing kernels (or None) and the index
    of the first scan kept.

    Listed in C order, so that gathering a Fortran-ordered volume through the Fortran-order
    indices gives the columns in the geometry's (C) order.
    """
    shape = candidates.shape
    voxels_c = np.flatnonzero(candidates)
    voxels_f = np.ravel_multi_index(np.unravel_index(voxels_c, shape), shape, order="F")
    fraction, kernels, first_scan = options
    volumes = iter_volumes(path)
    for _ in range(first_scan):
        next(volumes)
    flat = _scan_values(series_layout(path), next(volumes), kernels)
    volumes.close()
    keep = flat[voxels_f] > np.float64(fraction * spm_global(flat))
    return voxels_c[keep], voxels_f[keep]


def read_spm_data(
    bold_paths: tuple[Path, ...],
    explicit_mask: np.ndarray | None = None,
    mask_path: Path | None = None,
    kernels: tuple[np.ndarray, ...] | None = None,
    dummy_scans: int = 0,
    scratch_dir: Path | None = None,
) -> SpmData:
    """Stream the runs once: globals, SPM's analysis mask and the in-mask raw values.

    The values are kept at the voxels above threshold in the first scan (within the
    explicit mask); voxels that fall below threshold in a later scan, or are constant, are
    dropped at the end.

    Parameters
    ----------
    bold_paths : tuple of Path
        One 4-D series per session, in model order.
    explicit_mask : numpy.ndarray, optional
        ``(x, y, z)`` bool explicit mask on the runs' grid; None: the threshold alone.
    mask_path : Path, optional
        The explicit mask's file, for messages.
    kernels : tuple of numpy.ndarray, optional
        SPM's x, y, z smoothing kernels (``spm_kernels``); None: no smoothing.
    dummy_scans : int
        Volumes skipped at the start of each run.
    scratch_dir : Path, optional
        Where large data are held in a file (`bids_glm.runtime.spill.scratch_array`);
        None: in memory.

    Returns
    -------
    SpmData
    """
    layouts = [series_layout(path) for path in bold_paths]
    first, shape = layouts[0], layouts[0].volume_shape
    if explicit_mask is not None and explicit_mask.shape != tuple(shape):
        raise InputError(f"{mask_path}: mask grid {explicit_mask.shape} differs from {shape}")
    for path, layout in zip(bold_paths, layouts, strict=True):
        _check_grid(path, layout.shape, layout.affine, (first.shape, first.affine, bold_paths[0]))
    n_scans = tuple(int(layout.shape[3]) - dummy_scans for layout in layouts)
    if min(n_scans) < 1:
        shortest = bold_paths[n_scans.index(min(n_scans))]
        raise InputError(f"--dummy-scans {dummy_scans}: leaves no volume of {shortest}")
    options = (MASK_THRESHOLD_FRACTION, kernels)
    candidates = np.ones(shape, bool) if explicit_mask is None else explicit_mask
    voxels_c, voxels_f = _first_scan_voxels(bold_paths[0], candidates, (*options, dummy_scans))
    data = ChunkedSeries(sum(n_scans), voxels_c.size, scratch_dir)
    globals_ = np.empty(sum(n_scans))
    above, means, first_row = np.ones(voxels_c.size, dtype=bool), [], 0
    for path, layout, n in zip(bold_paths, layouts, n_scans, strict=True):
        reducer = _ScanReducer(layout, voxels_f, (data, globals_, first_row), (*options, n))
        kept = np.arange(layout.shape[3]) >= dummy_scans
        for_each_volume(path, layout, kept, reducer, thread_budget(), reducer.add_to_mean)
        above &= reducer.above()
        means.append(reducer.mean_volume())
        first_row += n
    keep = above & data.varying()
    data.keep_voxels(keep)
    mask = np.zeros(int(np.prod(shape)), dtype=bool)
    mask[voxels_c[keep]] = True
    return SpmData(
        data=data,
        mask=mask.reshape(shape),
        affine=first.affine,
        globals_=globals_,
        n_scans=n_scans,
        mean_volumes=tuple(means),
    )
