"""Arrays in anonymous shared memory: a process forked after one is made shares its values."""

from __future__ import annotations

import mmap

import numpy as np


def shared_array(shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """A zeroed array in anonymous shared memory: processes forked later share its values."""
    n_values = int(np.prod(shape))
    memory = mmap.mmap(-1, max(n_values * np.dtype(dtype).itemsize, 1), flags=mmap.MAP_SHARED)
    return np.frombuffer(memory, dtype=dtype, count=n_values).reshape(shape)
