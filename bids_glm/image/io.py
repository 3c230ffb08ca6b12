"""Streamed reading of 4-D NIfTI series: one decompression pass, volume by volume.

A NIfTI file stores its volumes one after the other, so a 4-D series can be read
from a single sequential stream (``.nii.gz`` through ISA-L's inflater when available)
into a small reusable buffer, converted, smoothed on the mask's bounding box and
reduced to in-mask voxels before the next volume arrives. Peak memory is the
(T, V_mask) float32 result, never the whole 4-D array.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from bids_glm.errors import InputError
from bids_glm.image.mask import bounding_box, load_image, same_grid
from bids_glm.image.smooth import kernel_radius_voxels, sigma_voxels, smooth_volume

try:  # ISA-L inflates gzip several times faster than zlib
    from isal import igzip as _gzip
except ImportError:  # pragma: no cover - isal is a declared dependency
    _gzip = gzip

LOGGER = logging.getLogger("bids_glm")


@dataclass(frozen=True)
class MaskedSeries:
    """In-mask time series of one run.

    Attributes
    ----------
    data : ndarray, shape (n_volumes, n_voxels), float32
        Values of the mask's voxels (C order of the mask), after optional smoothing.
    usable : ndarray of bool, shape (n_voxels,)
        Voxels whose values were finite in every volume and not constant over time.
    """

    data: np.ndarray
    usable: np.ndarray


@contextmanager
def _open_stream(path: Path) -> Iterator[BinaryIO]:
    opener = _gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as stream:
            yield stream
    except (OSError, EOFError) as err:
        raise InputError(f"{path}: cannot read the image data ({err})") from None


def _read_exact(stream: BinaryIO, buffer: bytearray, path: Path) -> None:
    view = memoryview(buffer)
    filled = 0
    while filled < len(buffer):
        got = stream.readinto(view[filled:])
        if not got:
            raise InputError(f"{path}: file ends early (truncated image data)")
        filled += got


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
    proxy = load_image(path).dataobj  # header facts only; no data is read here
    shape = tuple(proxy.shape)
    if len(shape) != 4:
        raise InputError(f"{path}: expected a 4-D series, found shape {shape}")
    dtype = np.dtype(proxy.dtype)
    slope, intercept = float(proxy.slope), float(proxy.inter)
    offset = int(proxy.offset)
    volume_shape = shape[:3]
    n_bytes = int(np.prod(volume_shape)) * dtype.itemsize
    raw = bytearray(n_bytes)
    volume = np.empty(volume_shape, dtype=np.float32, order="F")
    with _open_stream(path) as stream:
        if offset:
            _read_exact(stream, bytearray(offset), path)
        for _ in range(shape[3]):
            _read_exact(stream, raw, path)
            values = np.frombuffer(raw, dtype=dtype).reshape(volume_shape, order="F")
            volume[...] = values
            if slope != 1.0:
                volume *= np.float32(slope)
            if intercept:
                volume += np.float32(intercept)
            yield volume


def read_masked_series(
    path: Path,
    mask: np.ndarray,
    mask_affine: np.ndarray,
    smoothing_fwhm_mm: float | None = None,
    keep_volumes: np.ndarray | None = None,
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
    smoothing_fwhm_mm : float or None
        Isotropic Gaussian FWHM; smoothing uses the mask's bounding box grown by the
        kernel radius, so in-mask values equal smoothing of the whole volume.
    keep_volumes : ndarray of bool, shape (n_volumes,), optional
        Volumes to keep (dummy scans and censored volumes False); the others are
        decompressed in passing but neither smoothed nor stored.

    Returns
    -------
    MaskedSeries
        Non-finite values are set to 0 (before smoothing) and their voxels marked unusable.
    """
    image = load_image(path)
    if not same_grid(image.shape, image.affine, mask.shape, mask_affine):
        raise InputError(
            f"{path}: the mask's grid {mask.shape} differs from the image's {image.shape[:3]} "
            "(shape or affine)"
        )
    if smoothing_fwhm_mm:
        sigma = sigma_voxels(smoothing_fwhm_mm, image.affine)
        box = bounding_box(mask, kernel_radius_voxels(sigma))
    else:
        sigma = np.zeros(3)
        box = bounding_box(mask, (0, 0, 0))
    box_mask = mask[box]
    n_volumes = image.shape[3]
    if keep_volumes is None:
        keep_volumes = np.ones(n_volumes, dtype=bool)
    elif keep_volumes.shape != (n_volumes,):
        raise InputError(
            f"{path}: {n_volumes} volumes, but the model describes {keep_volumes.shape[0]}"
        )
    rows = np.cumsum(keep_volumes) - 1
    data = np.empty((int(keep_volumes.sum()), int(mask.sum())), dtype=np.float32)
    finite = np.ones(data.shape[1], dtype=bool)
    box_values = np.empty(box_mask.shape, dtype=np.float32)
    for index, volume in enumerate(iter_volumes(path)):
        if not keep_volumes[index]:
            continue
        box_values[...] = volume[box]
        bad = ~np.isfinite(box_values)
        if bad.any():
            finite &= ~bad[box_mask]
            box_values[bad] = 0.0
        smooth_volume(box_values, sigma)
        data[rows[index]] = box_values[box_mask]
    varying = np.ptp(data, axis=0) > 0
    n_bad = int((~(finite & varying)).sum())
    if n_bad:
        LOGGER.info("%s: %d in-mask voxel(s) constant or non-finite", path.name, n_bad)
    return MaskedSeries(data=data, usable=finite & varying)
