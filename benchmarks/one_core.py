"""One core against two: the 200-volume run with ``--n-cpus 1`` and 2, alone and side by side.

``python benchmarks/one_core.py [--workdir DIR] [--repeats 3] [--compare SOURCE_DIR]`` runs
`streaming.py`'s 200-volume run on the MNI grid (5 mm, AR(1), 8 contrasts, no reports), each
in a child measured as `compare_nilearn.py` measures (wall, CPU seconds, peak RSS):

* ``--n-cpus 2``;
* ``--n-cpus 1``, free to run on any core (a second core used shows as CPU above wall);
* ``--n-cpus 1`` confined to one core (``taskset -c 0``, as a one-core allocation);
* two ``--n-cpus 1`` runs side by side, against two ``--n-cpus 2`` runs one after the other
  (the time until both are done: a node's throughput when it runs many participants).

With ``--compare``, a checkout of another revision (e.g. ``git worktree add /tmp/base
HEAD~1``) runs the same commands on ``PYTHONPATH``, interleaved with this tree's. Medians of
``--repeats``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from compare_nilearn import Measurement, bids_glm_command, compile_bytecode, measure
from streaming import make_run, preproc_path, read_into_page_cache

CASES = (
    "2 cores",
    "1 core, free",
    "1 core, taskset",
    "2 x 1 core side by side",
    "2 x 2 cores in turn",
)


def _command(bids_dir: Path, folder: Path, n_cpus: int, confined: bool) -> list[str]:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    args = argparse.Namespace(smoothing=5.0, noise_model="ar1", n_cpus=n_cpus)
    command = bids_glm_command(bids_dir, folder / "output", folder / "work", args)
    return ["taskset", "-c", "0", *command] if confined else command


def _one(bids_dir: Path, folder: Path, n_cpus: int, confined: bool = False) -> Measurement:
    command = _command(bids_dir, folder, n_cpus, confined)
    return measure(command, folder / "log.txt")


def _two(bids_dir: Path, folder: Path, n_cpus: int, side_by_side: bool) -> Measurement:
    """Two runs, at once or in turn: the time until both are done, their CPU summed."""
    started = time.perf_counter()
    folders = [folder / "a", folder / "b"]
    if side_by_side:
        with ThreadPoolExecutor(2) as pool:
            runs = list(pool.map(lambda f: _one(bids_dir, f, n_cpus), folders))
    else:
        runs = [_one(bids_dir, f, n_cpus) for f in folders]
    wall_s = time.perf_counter() - started
    return Measurement(wall_s, sum(r.cpu_s for r in runs), max(r.peak_rss_mib for r in runs))


def _round(bids_dir: Path, workdir: Path) -> dict[str, Measurement]:
    return {
        CASES[0]: _one(bids_dir, workdir / "two-cores", 2),
        CASES[1]: _one(bids_dir, workdir / "one-core", 1),
        CASES[2]: _one(bids_dir, workdir / "one-core-taskset", 1, confined=True),
        CASES[3]: _two(bids_dir, workdir / "side-by-side", 1, side_by_side=True),
        CASES[4]: _two(bids_dir, workdir / "in-turn", 2, side_by_side=False),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_dir = Path(__import__("tempfile").gettempdir()) / "bids_glm_stream_bench"
    parser.add_argument("--workdir", type=Path, default=default_dir)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compare", type=Path, help="another checkout's root, to interleave")
    args = parser.parse_args(argv)
    if shutil.which("taskset") is None:
        parser.error("taskset (util-linux) is needed to confine a run to one core")
    bids_dir = make_run(args.workdir, 200)
    read_into_page_cache(preproc_path(bids_dir))
    os.chdir(args.workdir)  # `python -m` puts the working folder first on a child's path
    trees = {"this": None} if args.compare is None else {"compared": args.compare, "this": None}
    for source in trees.values():
        compile_bytecode(None if source is None else source / "bids_glm")
    results: dict[str, dict[str, list[Measurement]]] = defaultdict(lambda: defaultdict(list))
    path = os.environ.get("PYTHONPATH")
    for repeat in range(args.repeats):
        for label, source in trees.items():
            os.environ.pop("PYTHONPATH", None)
            if source is not None:
                os.environ["PYTHONPATH"] = str(source)
            elif path is not None:
                os.environ["PYTHONPATH"] = path
            for case, measurement in _round(bids_dir, args.workdir / "one-core").items():
                results[label][case].append(measurement)
        print(f"repeat {repeat + 1}/{args.repeats} done (load {os.getloadavg()[0]:.1f})")
    print(f"\n{'wall s: median (min-max), CPU s':<32}" + "".join(f"{t:>30}" for t in trees))
    for case in CASES:
        cells = []
        for label in trees:
            runs = results[label][case]
            walls = [r.wall_s for r in runs]
            wall, cpu = statistics.median(walls), statistics.median(r.cpu_s for r in runs)
            cells.append(f"{wall:.2f} ({min(walls):.2f}-{max(walls):.2f}), {cpu:.2f} CPU")
        print(f"{case:<32}" + "".join(f"{cell:>30}" for cell in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
