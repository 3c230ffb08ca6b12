"""How many threads the numerical work of one process may use, and running work in them.

Reading (decompression, smoothing) and fitting split their work over Python threads, since
numpy, scipy and BLAS release the GIL; BLAS itself then runs one thread per call (its own
threads would compete with ours and spin on small products). The budget travels in an
environment variable so that worker processes inherit their share.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

THREADS_VARIABLE = "BIDS_GLM_THREADS"
ARENA_VARIABLE = "MALLOC_ARENA_MAX"  # glibc's tunable, read when a process starts
M_ARENA_MAX = -8  # its mallopt parameter, for the running process
BLAS_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity: cgroups, SLURM, taskset).

    Returns
    -------
    int
        The size of the affinity set; off Linux, ``os.cpu_count()`` (1 when unknown).
    """
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def limit_threads(n_threads: int) -> None:
    """Give this process a budget of ``n_threads`` threads; BLAS/OpenMP get one each.

    bids-glm's reading and fitting use up to ``n_threads`` threads of their own, each
    calling single-threaded BLAS (BLAS's own threads would oversubscribe the cores and
    spin on the many small products). BLAS variables already set in the environment are
    kept. Effective for BLAS only before numpy is first imported (the CLI imports it
    lazily for this).

    Parameters
    ----------
    n_threads : int
        Threads for this process (values below 1 count as 1).
    """
    for variable in BLAS_VARIABLES:
        os.environ.setdefault(variable, "1")
    os.environ[THREADS_VARIABLE] = str(max(n_threads, 1))
    share_one_malloc_arena()


def share_one_malloc_arena() -> None:
    """Have glibc's malloc serve all of this process's threads from one arena.

    By default each thread that allocates while another does gets an arena of its own,
    and what is freed there stays in the process: with reading, fitting and writing in
    threads, a participant run's peak memory was ~10 MB higher for it, for no speed (the
    large arrays are mapped and unmapped by the system either way). Worker processes
    inherit the setting through ``MALLOC_ARENA_MAX``; a value already set is kept. No-op
    off glibc.
    """
    if ARENA_VARIABLE in os.environ or not sys.platform.startswith("linux"):
        return
    os.environ[ARENA_VARIABLE] = "1"
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # pragma: no cover - a C library without mallopt
        return
    mallopt(ctypes.c_int(M_ARENA_MAX), ctypes.c_int(1))


def thread_budget() -> int:
    """Threads for one process's reading and fitting: ``$BIDS_GLM_THREADS``, else 1.

    Returns
    -------
    int
        At least 1; a value that is not a positive integer counts as 1.
    """
    text = os.environ.get(THREADS_VARIABLE, "1")
    return max(int(text), 1) if text.strip().isdigit() else 1


def for_each_in_threads(
    function: Callable[[object], None], items: Sequence, n_threads: int, name: str
) -> None:
    """Call ``function(item)`` for every item, in up to ``n_threads`` threads.

    Serially when one thread (or one item) suffices. The calls must write disjoint outputs;
    an exception raised by one is re-raised here.
    """
    if n_threads <= 1 or len(items) <= 1:
        for item in items:
            function(item)
        return
    n_workers = min(n_threads, len(items))
    with ThreadPoolExecutor(n_workers, thread_name_prefix=f"bids-glm-{name}") as pool:
        list(pool.map(function, items))
