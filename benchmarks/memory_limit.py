"""Run a command inside a memory limit, as a SLURM allocation or a container would impose.

    python benchmarks/memory_limit.py LIMIT_GB -- COMMAND ...

Makes a memory cgroup (v1's ``memory`` controller, or v2's ``memory.max``; needs root), puts
a child in it, runs ``COMMAND`` there and prints its wall time, exit status (137: killed by
the kernel's OOM killer) and the group's peak usage, which counts the page cache of files the
command reads and writes as well as its own memory. See ``benchmarks/README.md`` (the SPM12
preset on 2,000 scans in 2 GB).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

V1 = Path("/sys/fs/cgroup/memory")
V2 = Path("/sys/fs/cgroup")


def make_group(limit_bytes: int) -> tuple[Path, str]:
    """A fresh memory cgroup with ``limit_bytes``; its folder and its peak-usage file."""
    name = f"bids_glm_limit_{os.getpid()}"
    if (V1 / "memory.limit_in_bytes").exists():
        group = V1 / name
        group.mkdir()
        (group / "memory.limit_in_bytes").write_text(str(limit_bytes))
        return group, "memory.max_usage_in_bytes"
    group = V2 / name
    group.mkdir()
    (group / "memory.max").write_text(str(limit_bytes))
    (group / "memory.swap.max").write_text("0")
    return group, "memory.peak"


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    limit_bytes = int(float(argv[0]) * 2**30)
    group, peak_file = make_group(limit_bytes)
    started = time.perf_counter()
    # the child joins the group before it runs the command: everything it starts is in it
    join = f'echo $$ > {group / "cgroup.procs"} && exec "$@"'
    code = subprocess.run(["sh", "-c", join, "sh", *argv[2:]], check=False).returncode
    wall_s = time.perf_counter() - started
    peak_gib = int((group / peak_file).read_text()) / 2**30
    status = "killed (out of memory)" if code in (137, -9) else f"exit {code}"
    print(f"limit {argv[0]} GiB: {status} after {wall_s:.1f} s; group peak {peak_gib:.2f} GiB")
    group.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
