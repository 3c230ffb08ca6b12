"""Where a process's threads spend a run: on a CPU, waiting for one, switching (Linux).

``python benchmarks/thread_schedstat.py -- COMMAND ...`` runs the command and samples
``/proc/<pid>/task/<tid>/schedstat`` of its threads every 20 ms; at the end it prints, per
thread that used more than 50 ms, when it was first seen, its seconds on a CPU, its seconds
runnable but waiting for a CPU, and its context switches (the kernel's counters: exact, not
sampled; only a thread's last 20 ms can be missed). Threads of the command's child processes
are included, marked ``child``. Python does not name its threads for the kernel, so threads
are listed in the order they started; `streaming.py --threads` runs it on the 800-volume
participant run, where the order is: main (which also inflates), the discovery child,
template compiler, the volume-reducing child (smoothing), sums, then statistics and writers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from tree_memory import child_pids  # a sibling script

SAMPLE_S = 0.02


@dataclass
class ThreadTimes:
    """One thread's kernel counters, as last read."""

    first_seen_s: float
    in_child: bool = False
    on_cpu_s: float = 0.0
    waiting_s: float = 0.0
    switches: int = 0


def _read_threads(
    pid: int, started: float, threads: dict[int, ThreadTimes], in_child: bool = False
) -> bool:
    """Update ``threads`` from ``/proc`` (the process's and its descendants'); False once
    the process is gone."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return False
    for child in child_pids(pid):
        _read_threads(child, started, threads, in_child=True)
    for tid in map(int, tids):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as stream:
                on_cpu_ns, waiting_ns, switches = map(int, stream.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
        now = time.perf_counter() - started
        times = threads.setdefault(tid, ThreadTimes(now, in_child))
        times.on_cpu_s, times.waiting_s, times.switches = (
            on_cpu_ns / 1e9,
            waiting_ns / 1e9,
            switches,
        )
    return True


def thread_times(command: Sequence[str]) -> tuple[float, dict[int, ThreadTimes]]:
    """Run ``command`` (output discarded); return its wall time and its threads' counters."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    threads: dict[int, ThreadTimes] = {}
    while process.poll() is None and _read_threads(process.pid, started, threads):
        time.sleep(SAMPLE_S)
    wall_s = time.perf_counter() - started
    if process.wait() != 0:
        raise RuntimeError(f"command failed with exit code {process.returncode}: {command}")
    return wall_s, threads


def print_thread_times(wall_s: float, threads: dict[int, ThreadTimes]) -> None:
    """The table described in the module docstring."""
    print(f"wall {wall_s:.2f} s; threads in the order they started:")
    print(f"{'first seen s':>13}{'on CPU s':>10}{'waiting s':>11}{'switches':>10}")
    for times in sorted(threads.values(), key=lambda t: t.first_seen_s):
        if times.on_cpu_s > 0.05:
            print(
                f"{times.first_seen_s:13.2f}{times.on_cpu_s:10.2f}"
                f"{times.waiting_s:11.2f}{times.switches:10d}"
                + ("  child" if times.in_child else "")
            )
    total = sum(t.on_cpu_s for t in threads.values())
    print(f"total on CPU {total:.2f} s = {total / wall_s:.2f} cores on average over the run")


def main(argv: Sequence[str] | None = None) -> int:
    command = list(sys.argv[1:] if argv is None else argv)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command or not sys.platform.startswith("linux"):
        print("usage (Linux): python benchmarks/thread_schedstat.py -- COMMAND ...")
        return 2
    print_thread_times(*thread_times(command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
