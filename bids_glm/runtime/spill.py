"""Large scratch arrays backed by unnamed files in the work folder.

A model that needs a whole series at once (SPM12's: one dense serial-correlation model over
every session; the single-trial estimates: each voxel's whole series) holds it as long as the
fit runs, and single-trial estimates grow with the run as well. Held in anonymous memory,
such arrays must fit in the job's memory limit (a SLURM allocation, a container's limit) or
the kernel kills the job. Mapped from a file, the same array is page cache: pages the kernel
may write out and drop when the limit is reached, and read back when they are touched
again, so the job needs disk space for it rather than memory. The limit, where the process
has one, also lowers the size from which arrays are mapped (`spill_threshold`).
"""

from __future__ import annotations

import logging
import mmap
import os
import tempfile
from pathlib import Path

import numpy as np

from bids_glm.runtime.memory_limits import memory_limit_bytes

LOGGER = logging.getLogger("bids_glm")

# Arrays from this size on are mapped from a file; smaller ones stay in memory, where they
# cost nothing to write back (2,000 scans of the MNI brain as float32: 2.9 GB). Under a
# memory limit (a container's, a SLURM job's cgroup) the threshold is lower: an eighth of it.
SPILL_MIN_BYTES = 512 * 2**20
LIMIT_FRACTION = 8
PROC_MOUNTS = Path("/proc/self/mounts")
MEMORY_FILESYSTEMS = ("tmpfs", "ramfs")  # files there are memory (and count against a cgroup's)
_WARNED_FOLDERS: set[Path] = set()  # work folders in memory already warned about


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
        as it does arrays smaller than `spill_threshold`.

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
    if folder is None or n_bytes < spill_threshold() or not hasattr(os, "posix_fallocate"):
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
    _warn_if_in_memory(Path(folder))
    return np.frombuffer(pages, dtype=dtype).reshape(shape)


def _warn_if_in_memory(folder: Path) -> None:
    """Warn (once per folder) when scratch files go to a file system held in memory."""
    filesystem = memory_filesystem(folder)
    if filesystem is None or folder in _WARNED_FOLDERS:
        return
    _WARNED_FOLDERS.add(folder)
    LOGGER.warning(
        "%s is on %s, a file system held in memory: scratch files there take memory (and "
        "count against a job's memory limit); give --work-dir a folder on a disk for long runs",
        folder,
        filesystem,
    )


def memory_filesystem(folder: Path, mounts: Path = PROC_MOUNTS) -> str | None:
    """The type of the in-memory file system (`MEMORY_FILESYSTEMS`) holding ``folder``, or
    None (a disk, or the mounts cannot be read): the innermost mount point above it in
    ``mounts`` (``/proc/self/mounts``), the last one listed where a point is mounted over."""
    try:
        lines = mounts.read_text().splitlines()
    except OSError:
        return None
    target = Path(folder).resolve()
    innermost, filesystem = None, None
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = Path(fields[1].replace("\\040", " "))  # spaces are escaped in mounts
        inside = point == target or point in target.parents
        if inside and (innermost is None or len(point.parts) >= len(innermost.parts)):
            innermost, filesystem = point, fields[2]
    return filesystem if filesystem in MEMORY_FILESYSTEMS else None


def spill_threshold() -> int:
    """Bytes from which `scratch_array` maps an array from a file: `SPILL_MIN_BYTES`, or an
    eighth (`LIMIT_FRACTION`) of this process's cgroup memory limit if that is smaller."""
    limit = memory_limit_bytes()
    return SPILL_MIN_BYTES if limit is None else min(SPILL_MIN_BYTES, limit // LIMIT_FRACTION)
