"""Limits set on a process's cgroup and its ancestors: by container engines (``docker run
--cpus``, ``--memory``), Kubernetes, SLURM. Read without numpy, before it is imported.

cgroup v2 has one hierarchy whose folders hold every controller's files; v1 has a hierarchy
per controller, mounted at ``/sys/fs/cgroup/<controller>``. ``/proc/self/cgroup`` names the
process's group in each.
"""

from __future__ import annotations

import math
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def group_files(
    v2_name: str,
    v1_controller: str,
    v1_name: str,
    proc_cgroup: Path = PROC_CGROUP,
    root: Path = CGROUP_ROOT,
) -> list[Path]:
    """The limit files of this process's group and of each of its ancestors (root first).

    Parameters
    ----------
    v2_name : str
        The file's name in cgroup v2 (e.g. ``memory.max``).
    v1_controller, v1_name : str
        The v1 controller whose hierarchy holds it, and its name there.
    proc_cgroup, root : Path
        Where the process's groups are listed, and where the hierarchies are mounted.

    Returns
    -------
    list of Path
        Empty when ``proc_cgroup`` cannot be read; the files need not exist.
    """
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return []
    files = []
    for line in lines:
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        _, controllers, group = fields
        if controllers == "":  # v2: one unified hierarchy
            folder, name = root, v2_name
        elif v1_controller in controllers.split(","):
            folder, name = root / v1_controller, v1_name
        else:
            continue
        parts = [part for part in group.split("/") if part]
        files += [folder.joinpath(*parts[:depth]) / name for depth in range(len(parts) + 1)]
    return files


def cpu_quota_cores(proc_cgroup: Path = PROC_CGROUP, root: Path = CGROUP_ROOT) -> int | None:
    """The CPU time this process's groups allow, in whole cores (rounded up), or None.

    A quota of ``q`` microseconds every ``p`` (v2's ``cpu.max``: ``"q p"``, ``"max p"`` for
    none; v1's ``cpu.cfs_quota_us``, -1 for none, and ``cpu.cfs_period_us``) lets the group
    run ``q / p`` cores' worth at most, however many cores it may run on: what ``docker run
    --cpus`` and Kubernetes CPU limits set. The smallest along the group's path counts.
    """
    quotas = []
    for path in group_files("cpu.max", "cpu", "cpu.cfs_quota_us", proc_cgroup, root):
        if path.name == "cpu.max":
            fields = _read(path).split()
            quota, period = [*fields, "", ""][:2]
        else:
            quota, period = _read(path), _read(path.with_name("cpu.cfs_period_us"))
        if quota.isdigit() and period.isdigit() and int(quota) > 0 and int(period) > 0:
            quotas.append(max(math.ceil(int(quota) / int(period)), 1))
    return min(quotas) if quotas else None


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""
