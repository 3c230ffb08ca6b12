"""The memory limits a process runs under: its cgroup's, and its address space's.

Read without numpy, so that the command line can name them before numpy is imported.
"""

from __future__ import annotations

import resource
from pathlib import Path

from bids_glm.runtime.cgroups import CGROUP_ROOT, PROC_CGROUP, group_files

UNLIMITED_BYTES = 2**60  # cgroup v1 writes "no limit" as a number near 2**63


def memory_limit_bytes(proc_cgroup: Path = PROC_CGROUP, root: Path = CGROUP_ROOT) -> int | None:
    """The smallest memory limit on this process's cgroup and its ancestors, or None.

    Reads cgroup v2's ``memory.max`` or v1's ``memory.limit_in_bytes`` along the group's
    path (as ``proc_cgroup`` gives it) under ``root``: the limits a container engine or
    SLURM (``ConstrainRAMSpace``) sets. None when there is none or it cannot be read.
    """
    files = group_files("memory.max", "memory", "memory.limit_in_bytes", proc_cgroup, root)
    known = [limit for limit in map(_read_limit, files) if limit is not None]
    return min(known) if known else None


def _read_limit(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if not text.isdigit() or int(text) >= UNLIMITED_BYTES:  # v2 writes "max"
        return None
    return int(text)


def address_space_limit_bytes() -> int | None:
    """The process's address-space limit (``ulimit -v``, SGE's ``h_vmem``), None if none."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY or soft >= UNLIMITED_BYTES else int(soft)
