"""Peak memory of a command's whole process tree: the sum of its processes' PSS (Linux).

``ru_maxrss`` (what `compare_nilearn.measure` reports) is the largest single process's peak,
which says nothing of a forked helper's memory; adding RSS values counts every page two
processes share twice. PSS (proportional set size) charges each process its private pages
plus its share of the shared ones, so the sum over a tree is the memory the tree holds.

``python benchmarks/tree_memory.py -- COMMAND ...`` runs the command and prints the peak of
that sum, sampled every 20 ms from ``/proc/<pid>/smaps_rollup`` (reading it costs the
kernel a page-table walk, so runs timed for speed are not sampled).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence

SAMPLE_S = 0.02


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (from every thread's ``children`` list)."""
    found: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as stream:
                found.extend(int(child) for child in stream.read().split())
        except FileNotFoundError:
            continue
    return found


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as stream:
            for line in stream:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def tree_pss_kib(root: int) -> int:
    """Sum of the PSS of ``root`` and all its descendants, now."""
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += _pss_kib(pid)
        stack.extend(child_pids(pid))
    return total


def peak_tree_pss_mib(command: Sequence[str]) -> float:
    """Run ``command`` (output discarded); the peak of its tree's summed PSS, in MiB."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while process.poll() is None:
        peak = max(peak, tree_pss_kib(process.pid))
        time.sleep(SAMPLE_S)
    if process.wait() != 0:
        raise RuntimeError(f"command failed with exit code {process.returncode}: {command}")
    return peak / 1024.0


def main(argv: Sequence[str] | None = None) -> int:
    command = list(sys.argv[1:] if argv is None else argv)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command or not sys.platform.startswith("linux"):
        print("usage (Linux): python benchmarks/tree_memory.py -- COMMAND ...")
        return 2
    print(f"peak PSS of the process tree: {peak_tree_pss_mib(command):.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
