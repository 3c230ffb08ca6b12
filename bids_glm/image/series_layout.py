"""Where and how a 4-D NIfTI file stores its voxel values, read from its header alone.

Shared by the readers (`bids_glm.image.io`, `bids_glm.image.stream`) and the per-volume
reduction (`bids_glm.image.volume_reducer`), which turns stored values into data values
(`SeriesLayout.to_float32`) as the readers do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bids_glm.errors import InputError
from bids_glm.image.mask import load_image


@dataclass(frozen=True)
class SeriesLayout:
    """Where and how a 4-D NIfTI file stores its voxel values."""

    shape: tuple[int, int, int, int]
    affine: np.ndarray
    dtype: np.dtype
    slope: float
    intercept: float
    offset: int

    @property
    def volume_shape(self) -> tuple[int, int, int]:
        return self.shape[:3]

    @property
    def volume_bytes(self) -> int:
        """Bytes of one stored volume."""
        return int(np.prod(self.volume_shape)) * self.dtype.itemsize

    @property
    def may_be_non_finite(self) -> bool:
        """Whether stored values can be NaN or infinite (floating-point storage)."""
        return self.dtype.kind == "f"

    def to_float32(self, raw: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Scaled float32 values of ``raw`` (stored values) written into ``out``."""
        np.copyto(out, raw, casting="unsafe")
        if self.slope != 1.0:
            out *= np.float32(self.slope)
        if self.intercept:
            out += np.float32(self.intercept)
        return out


def series_layout(path: Path) -> SeriesLayout:
    """Read a 4-D NIfTI header; ``InputError`` when the image is not 4-D."""
    image = load_image(path)
    proxy = image.dataobj  # header facts only; no data is read here
    shape = tuple(int(n) for n in proxy.shape)
    if len(shape) != 4:
        raise InputError(f"{path}: expected a 4-D series, found shape {shape}")
    return SeriesLayout(
        shape=shape,
        affine=image.affine,
        dtype=np.dtype(proxy.dtype),
        slope=float(proxy.slope),
        intercept=float(proxy.inter),
        offset=int(proxy.offset),
    )
