"""The memory limits a process runs under: its cgroup's, and its address space's.

Read without numpy, so that the command line can name them before numpy is imported.
"""

from __future__ import annotations

import resource
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")
UNLIMITED_BYTES = 2**60  # cgroup v1 writes "no limit" as a number near 2**63


def memory_limit_bytes(proc_cgroup: Path = PROC_CGROUP, root: Path = CGROUP_ROOT) -> int | None:
    """The smallest memory limit on this process's cgroup and its ancestors, or None.

    Reads cgroup v2's ``memory.max`` or v1's ``memory.limit_in_bytes`` along the group's
    path (as ``proc_cgroup`` gives it) under ``root``: the limits a container engine or
    SLURM (``ConstrainRAMSpace``) sets. None when there is none or it cannot be read.
    """
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        _, controllers, group = fields
        if controllers == "":  # v2: one unified hierarchy
            folder, name = root, "memory.max"
        elif "memory" in controllers.split(","):
            folder, name = root / "memory", "memory.limit_in_bytes"
        else:
            continue
        parts = [part for part in group.split("/") if part]
        for depth in range(len(parts) + 1):
            limits.append(_read_limit(folder.joinpath(*parts[:depth]) / name))
    known = [limit for limit in limits if limit is not None]
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
