"""Run ``bids-glm`` with a timeline of its start-up (the child process of ``startup.py``).

``python startup_trace.py EVENTS.tsv -- BIDS_DIR OUTPUT_DIR participant ...`` runs the command
line in this process and appends to ``EVENTS.tsv`` one row per event: process id, event,
seconds since this script started, CPU seconds of the process, peak RSS in MiB (Linux). Events are
the start and end (``+``/``-``) of the imports and calls named in :data:`TIMED` (wrapped as
their modules finish loading) and the first opening of the BOLD series, mask, events and
confounds files (an audit hook). The discovery child records its own rows before it exits.
Only the standard library is imported before ``bids-glm``, so its imports are timed as in a
plain run.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import atexit  # noqa: E402  (after the clock starts)
import functools  # noqa: E402
import importlib.abc  # noqa: E402
import importlib.machinery  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

# module -> (attribute, event) wrapped when the module has loaded; missing ones are skipped
TIMED = {
    "bids_glm.cli.main": [("settings_from_args", "settings")],
    "bids_glm.inputs.layout": [("validate_dataset", "validation"), ("find_runs", "pybids")],
    "bids_glm.inputs.discovery": [
        ("start_discovery", "fork"),
        ("validate_dataset", "validation"),  # checkouts that validated in the parent
    ],
    "bids_glm.pipeline.participant": [
        ("compile_templates", "templates"),
        ("plan_units", "design"),
        ("build_geometry", "geometry"),
    ],
}
OPENED = ("_bold.nii.gz", "_mask.nii.gz", "_events.tsv", "_timeseries.tsv")
EVENTS: list[tuple[int, str, float, float, float]] = []


def peak_rss_mib() -> float:
    """This process's peak RSS (``VmHWM``: unlike ``ru_maxrss``, not inherited over exec)."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def record(event: str) -> None:
    """One row: pid, event, wall s, CPU s, peak RSS MiB."""
    wall_s = time.perf_counter() - STARTED
    EVENTS.append((os.getpid(), event, wall_s, time.process_time(), peak_rss_mib()))


def timed(function, event: str):
    """``function`` recording ``event+`` and ``event-`` around each call."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        record(event + "+")
        try:
            return function(*args, **kwargs)
        finally:
            record(event + "-")

    return wrapper


class _Timer(importlib.abc.MetaPathFinder):
    """Times the loading of the modules of :data:`TIMED` and wraps their functions."""

    def find_spec(self, name, path, target=None):
        if name not in TIMED:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        load = spec.loader.exec_module

        def exec_module(module):
            record(f"import {name}+")
            load(module)
            for attribute, event in TIMED[name]:
                if hasattr(module, attribute):
                    setattr(module, attribute, timed(getattr(module, attribute), event))
            if hasattr(module, "PendingDiscovery"):
                pending = module.PendingDiscovery
                pending.result = timed(pending.result, "wait child")
            record(f"import {name}-")

        spec.loader.exec_module = exec_module
        return spec


def _audit(event: str, args) -> None:
    if event == "open" and isinstance(args[0], str):
        for ending in OPENED:
            key = f"open {ending}"
            if args[0].endswith(ending) and not any(
                row[0] == os.getpid() and row[1] == key for row in EVENTS
            ):
                record(key)


def main() -> int:
    events_path, arguments = sys.argv[1], sys.argv[3:]

    def write() -> None:
        record("exit")
        with open(events_path, "a") as stream:
            for pid, event, wall_s, cpu_s, rss_mib in EVENTS:
                if pid == os.getpid():
                    stream.write(f"{pid}\t{event}\t{wall_s:.4f}\t{cpu_s:.4f}\t{rss_mib:.1f}\n")

    exit_now = os._exit

    def exit_child(status: int) -> None:  # the discovery child leaves by os._exit
        write()
        exit_now(status)

    atexit.register(write)
    os._exit = exit_child
    sys.meta_path.insert(0, _Timer())
    sys.addaudithook(_audit)
    record("main+")
    from bids_glm.cli.main import main as bids_glm_main

    return bids_glm_main(arguments)


if __name__ == "__main__":
    sys.exit(main())
