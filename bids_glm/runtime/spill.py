"""Large scratch arrays backed by unnamed files in the work folder.

A model that needs a whole series at once (SPM12's: one dense serial-correlation model over
every session) holds it as long as the fit runs. Held in anonymous memory, a long run's
series must fit in the job's memory limit (a SLURM allocation, a container's limit) or the
kernel kills the job. Mapped from a file, the same array is page cache: pages the kernel may
write out and drop when the limit is reached, and read back when they are touched again, so
the job needs disk space for it rather than memory.
"""

from __future__ import annotations

import logging
import mmap
import os
import tempfile
from pathlib import Path

import numpy as np

LOGGER = logging.getLogger("bids_glm")

# Arrays from this size on are mapped from a file; smaller ones stay in memory, where they
# cost nothing to write back (2,000 scans of the MNI brain as float32: 2.9 GB).
SPILL_MIN_BYTES = 512 * 2**20


def scratch_array(
    shape: tuple[int, ...],
    dtype: np.dtype | type,
    folder: Path | None,
) -> np.ndarray:
    """An uninitialised array: in memory, or mapped from an unnamed file in ``folder``.

    Parameters
    ----------
    shape : tuple of int
        The array's shape.
    dtype : dtype
        Its element type.
    folder : Path or None
        Where the backing file is made (the work folder); None keeps every array in memory,
        as it does arrays smaller than `SPILL_MIN_BYTES`.

    Returns
    -------
    ndarray
        A view of a shared map of a file that has no name (deleted as it is made, so nothing
        is left behind even when the process is killed; its space is freed when the array
        is), or a plain array. The file's space is reserved first (``posix_fallocate``):
        a disk too full for it gives a warning and an array in memory, never a SIGBUS
        when a page is written later.
    """
    dtype = np.dtype(dtype)
    n_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if folder is None or n_bytes < SPILL_MIN_BYTES or not hasattr(os, "posix_fallocate"):
        return np.empty(shape, dtype)
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder) as backing:
            os.posix_fallocate(backing.fileno(), 0, n_bytes)
            # the map keeps its own descriptor of the file: closing ours leaves it open
            pages = mmap.mmap(backing.fileno(), n_bytes)
    except OSError as err:
        LOGGER.warning(
            "%s: cannot hold a scratch file of %.0f MB (%s); the data are held in memory",
            folder,
            n_bytes / 1e6,
            err.strerror or err,
        )
        return np.empty(shape, dtype)
    return np.frombuffer(pages, dtype=dtype).reshape(shape)
