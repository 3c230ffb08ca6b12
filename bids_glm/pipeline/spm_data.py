"""Read the runs of an SPM12 model: globals, the analysis mask and the in-mask data.

SPM12 keeps a voxel if it lies in the explicit mask (when one is given), exceeds 0.8 of
its scan's global in every scan of every session, and is not constant over time. The runs
are read once, volume by volume; each volume's values are kept only at the voxels still
eligible, so memory follows the brain rather than the whole grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bids_glm.errors import InputError
from bids_glm.glm.spm_globals import MASK_THRESHOLD_FRACTION, spm_global
from bids_glm.image.io import iter_volumes, series_layout

__all__ = ["SpmData", "read_spm_data"]


@dataclass(frozen=True)
class SpmData:
    """The unscaled in-mask data of every session, with SPM's globals.

    Attributes
    ----------
    data : numpy.ndarray
        ``(n_scans, n_voxels)`` float32 raw values (sessions stacked in time).
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

    data: np.ndarray
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


def read_spm_data(
    bold_paths: tuple[Path, ...],
    explicit_mask: np.ndarray | None = None,
    mask_path: Path | None = None,
    fraction: float = MASK_THRESHOLD_FRACTION,
) -> SpmData:
    """Stream the runs once: globals, SPM's analysis mask and the in-mask raw values.

    Parameters
    ----------
    bold_paths : tuple of Path
        One 4-D series per session, in model order.
    explicit_mask : numpy.ndarray, optional
        ``(x, y, z)`` bool explicit mask on the runs' grid; None: the threshold alone.
    mask_path : Path, optional
        The explicit mask's file, for messages.
    fraction : float
        Threshold as a fraction of each scan's global (SPM: 0.8).

    Returns
    -------
    SpmData
    """
    first = series_layout(bold_paths[0])
    shape = first.volume_shape
    if explicit_mask is not None and explicit_mask.shape != tuple(shape):
        raise InputError(f"{mask_path}: mask grid {explicit_mask.shape} differs from {shape}")
    eligible = np.flatnonzero(
        np.ones(shape, bool).ravel() if explicit_mask is None else explicit_mask.ravel()
    )
    kept: list[tuple[np.ndarray, np.ndarray]] = []
    globals_, n_scans, means = [], [], []
    for path in bold_paths:
        layout = series_layout(path)
        _check_grid(path, layout.shape, layout.affine, (first.shape, first.affine, bold_paths[0]))
        n_scans.append(int(layout.shape[3]))
        total = np.zeros(shape)
        for volume in iter_volumes(path):
            total += volume
            flat = volume.ravel()
            global_value = spm_global(flat)
            values = flat[eligible]
            kept.append((eligible, values))
            globals_.append(global_value)
            eligible = eligible[values > fraction * global_value]
        means.append((total / n_scans[-1]).astype(np.float32))
    data = np.empty((len(kept), eligible.size), dtype=np.float32)
    for row, (indices, values) in enumerate(kept):
        data[row] = values[np.searchsorted(indices, eligible)]
    varying = np.any(data[1:] != data[:-1], axis=0)
    mask = np.zeros(int(np.prod(shape)), dtype=bool)
    mask[eligible[varying]] = True
    return SpmData(
        data=np.ascontiguousarray(data[:, varying]),
        mask=mask.reshape(shape),
        affine=first.affine,
        globals_=np.asarray(globals_),
        n_scans=tuple(n_scans),
        mean_volumes=tuple(means),
    )
