"""Cost per volume of `CrossProductAccumulator.add`, against an earlier version of it.

Blocks of 8 random float32 volumes around 900 on the 2 mm MNI benchmark grid's in-mask
voxel count, designs of p = 7 and p = 16 columns, one and two threads; CPU and wall
milliseconds per volume, medians over ``--repeats``. The earlier version is
``bids_glm/glm/cross_products.py`` as of ``--baseline`` (a git revision), loaded from git.
BLAS runs one thread (set before numpy is imported), as in bids-glm. Each timing includes
the first touch of the sums' memory, as a run does. Also prints the largest
difference between the two versions' sums, relative to each sum's largest value, and whether
the BLAS products let other threads run (the stream's reading threads need the GIL too).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

from bids_glm.runtime.threads import BLAS_VARIABLES

for _variable in BLAS_VARIABLES:
    os.environ[_variable] = "1"

import numpy as np  # noqa: E402

from bids_glm.glm import cross_products, inplace_gemm  # noqa: E402

N_VOXELS = 339_817  # in-mask voxels of the 2 mm MNI benchmark grid
BLOCK_VOLUMES = 8
SUM_NAMES = ("projected", "neighbour", "total", "constant_residual", "squares", "lag1", "last")


def baseline_module(revision: str) -> types.ModuleType:
    """``cross_products`` as it was at git ``revision``."""
    root = Path(__file__).resolve().parents[1]
    source = subprocess.run(
        ["git", "show", f"{revision}:bids_glm/glm/cross_products.py"],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    module = types.ModuleType(f"cross_products_{revision}")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{revision}:cross_products.py", "exec"), module.__dict__)
    return module


def timed_sums(module, design, blocks, n_threads):
    """CPU and wall seconds of adding every block, and the resulting sums."""
    sums = module.CrossProductAccumulator(design, blocks[0].shape[1], n_threads=n_threads)
    cpu, wall = time.process_time(), time.perf_counter()
    for block in blocks:
        sums.add(block)
    return time.process_time() - cpu, time.perf_counter() - wall, sums.result()


def largest_difference(old, new) -> float:
    """Largest difference of any sum, relative to that sum's largest magnitude."""
    worst = 0.0
    for name in SUM_NAMES:
        a, b = getattr(old, name), getattr(new, name)
        worst = max(worst, float(np.abs(a - b).max() / np.abs(a).max()))
    return worst


def python_steps_during(product) -> int:
    """Steps a Python loop makes in this thread while ``product()`` runs in another: near
    zero when the product holds the GIL."""
    finished = threading.Event()
    worker = threading.Thread(target=lambda: (product(), finished.set()))
    steps = 0
    worker.start()
    while not finished.is_set():
        steps += 1
    worker.join()
    return steps


def gil_comparison() -> None:
    """Does a large ``out += left @ right`` let other threads run: f2py's dgemm against
    `inplace_gemm.add_product`."""
    from scipy.linalg.blas import dgemm

    left, right = np.ones((2000, 2000)), np.ones((2000, 2000))
    out = np.zeros((2000, 2000))
    f2py = python_steps_during(
        lambda: dgemm(1.0, left.T, right.T, beta=1.0, c=out.T, overwrite_c=True)
    )
    ctypes_call = python_steps_during(lambda: inplace_gemm.add_product(out, left, right))
    print("Python steps in another thread during one 2000^3 product:")
    print(f"  scipy.linalg.blas.dgemm {f2py}, inplace_gemm.add_product {ctypes_call}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="509a0c2", help="git revision to compare with")
    parser.add_argument("--volumes", type=int, default=200, help="volumes summed per timing")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    versions = {args.baseline: baseline_module(args.baseline), "now": cross_products}
    rng = np.random.default_rng(0)
    distinct = [  # a few distinct blocks, repeated: memory stays small for long runs
        (900 + 30 * rng.standard_normal((BLOCK_VOLUMES, N_VOXELS))).astype(np.float32)
        for _ in range(5)
    ]
    blocks = [distinct[k % len(distinct)] for k in range(args.volumes // BLOCK_VOLUMES)]
    n_volumes = len(blocks) * BLOCK_VOLUMES
    print(f"ms per volume, V = {N_VOXELS}, blocks of {BLOCK_VOLUMES}, median of {args.repeats}")
    print(f"{'p':>3} {'threads':>7} {'version':>10} {'CPU':>7} {'wall':>7}")
    for p in (7, 16):
        design = np.column_stack([rng.standard_normal((n_volumes, p - 1)), np.ones(n_volumes)])
        for n_threads in (1, 2):
            results, seconds = {}, {label: [] for label in versions}
            for _ in range(args.repeats):  # versions interleaved: both see the same load
                for label, module in versions.items():
                    cpu, wall, results[label] = timed_sums(module, design, blocks, n_threads)
                    seconds[label].append((cpu, wall))
            for label, times in seconds.items():
                cpu, wall = (
                    1e3 * statistics.median(t) / n_volumes for t in zip(*times, strict=True)
                )
                print(f"{p:>3} {n_threads:>7} {label:>10} {cpu:7.2f} {wall:7.2f}")
            difference = largest_difference(*results.values())
            print(f"    largest relative difference of the sums: {difference:.1e}")
    gil_comparison()


if __name__ == "__main__":
    main()
