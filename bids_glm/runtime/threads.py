"""How many threads the numerical work of one process may use, and running work in them.

Reading (decompression, smoothing) and fitting split their work over Python threads, since
numpy, scipy and BLAS release the GIL; BLAS itself then runs one thread per call (its own
threads would compete with ours and spin on small products). The budget travels in an
environment variable so that worker processes inherit their share.
"""

from __future__ import annotations

import ctypes
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from bids_glm.runtime.cgroups import cpu_quota_cores

Item = TypeVar("Item")

THREADS_VARIABLE = "BIDS_GLM_THREADS"
# glibc malloc tunables: environment variable (read when a process starts) -> mallopt
# parameter (for the running process) and value; see `tune_malloc`
MALLOC_SETTINGS = {
    "MALLOC_ARENA_MAX": (-8, 1),  # M_ARENA_MAX
    "MALLOC_MMAP_THRESHOLD_": (-3, 32 * 1024 * 1024),  # M_MMAP_THRESHOLD, glibc's maximum
    "MALLOC_TRIM_THRESHOLD_": (-1, 512 * 1024 * 1024),  # M_TRIM_THRESHOLD
}
# numpy asks for transparent huge pages on every array of 4 MiB or more; where the kernel
# must first assemble one (compaction of fragmented memory, the usual state of a machine
# that has been up a while), the first touch of the streamed sums alone took ~0.4 s of CPU
# (200-volume run, 7 interleaved pairs: wall 2.89 -> 2.69 s, CPU 4.91 -> 4.52 s; 800
# volumes, 4 pairs: 6.87 -> 6.53 s; session 16)
NUMPY_SETTINGS = {"NUMPY_MADVISE_HUGEPAGE": "0"}
BLAS_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def available_cores() -> int:
    """Cores this process may use: those it may run on (its CPU affinity: cpusets, SLURM,
    ``taskset``), at most the CPU time its cgroup allows (``docker run --cpus``, Kubernetes
    limits: `bids_glm.runtime.cgroups.cpu_quota_cores`, rounded up).

    Returns
    -------
    int
        The smaller of the two; off Linux, ``os.cpu_count()`` (1 when unknown).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
    quota = cpu_quota_cores()
    return cores if quota is None else max(min(cores, quota), 1)


def limit_threads(n_threads: int) -> None:
    """Give this process a budget of ``n_threads`` threads; BLAS/OpenMP get one each.

    bids-glm's reading and fitting use up to ``n_threads`` threads of their own, each
    calling single-threaded BLAS (BLAS's own threads would oversubscribe the cores and
    spin on the many small products). BLAS variables already set in the environment are
    kept. numpy's huge-page requests are turned off (`NUMPY_SETTINGS`) unless the
    environment sets them. Effective only before numpy is first imported (the CLI imports
    it lazily for this).

    Parameters
    ----------
    n_threads : int
        Threads for this process (values below 1 count as 1).
    """
    for variable in BLAS_VARIABLES:
        os.environ.setdefault(variable, "1")
    for variable, value in NUMPY_SETTINGS.items():
        os.environ.setdefault(variable, value)
    os.environ[THREADS_VARIABLE] = str(max(n_threads, 1))
    tune_malloc()


def tune_malloc() -> None:
    """Set glibc's malloc for long numerical work in threads (`MALLOC_SETTINGS`).

    * One arena for all threads: by default each thread that allocates while another does
      gets an arena of its own, and what is freed there stays in the process (a participant
      run's peak memory was ~10 MB higher for it, for no speed).
    * Blocks up to 32 MiB (glibc's largest mmap threshold) from the heap, and freed heap
      memory kept up to 512 MiB: otherwise every per-volume temporary above 128 KiB is
      mapped, faulted in page by page and unmapped again. On the 800-volume benchmark run
      that was once 3 of 4.4 s of system time (wall 12.3 -> 10.4 s), for < 2 % more peak
      memory; how much depends on the kernel's state (other times the old settings cost
      ~1.3 s in all).

    Worker processes inherit the settings through glibc's environment variables; a value a
    user already set is kept (and not applied here). No-op off glibc.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # pragma: no cover - a C library without mallopt
        return
    for variable, (parameter, value) in MALLOC_SETTINGS.items():
        if variable in os.environ:
            continue
        os.environ[variable] = str(value)
        mallopt(ctypes.c_int(parameter), ctypes.c_int(value))


def thread_budget() -> int:
    """Threads for one process's reading and fitting: ``$BIDS_GLM_THREADS``, else 1.

    Returns
    -------
    int
        At least 1; a value that is not a positive integer counts as 1.
    """
    text = os.environ.get(THREADS_VARIABLE, "1")
    return max(int(text), 1) if text.strip().isdigit() else 1


def spare_cores() -> int:
    """Cores of the budget beyond the calling thread's: ``thread_budget() - 1``.

    What helpers running beside the calling thread may use: forked children (discovery,
    volume reduction, template compilation) and background threads (map writers). With
    none (``--n-cpus 1``), everything runs in the calling thread, so a run keeps to one core.
    """
    return thread_budget() - 1


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


def read_ahead(items: Iterable[Item], depth: int, name: str) -> Iterator[Item]:
    """``items``, produced in a thread of their own up to ``depth`` items ahead.

    For producers whose work releases the GIL in part (decompression), so it overlaps
    with the caller's. Items must not be reused by the producer once handed over. An
    exception raised while producing is raised here, where the item would have been;
    when the caller stops early, the producer stops at its next item.
    """
    handed: queue.Queue = queue.Queue(maxsize=max(int(depth), 1))
    stop = threading.Event()
    done = object()

    def produce() -> None:
        outcome: tuple[object, BaseException | None] = (done, None)
        try:
            for item in items:
                if not _hand_over(handed, (item, None), stop):
                    return
        except BaseException as err:  # re-raised in the caller's thread
            outcome = (done, err)
        finally:
            getattr(items, "close", lambda: None)()
        _hand_over(handed, outcome, stop)

    producer = threading.Thread(target=produce, name=f"bids-glm-{name}", daemon=True)
    producer.start()
    try:
        while True:
            item, error = handed.get()
            if item is done:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        while producer.is_alive():  # a producer blocked on a full queue sees the stop
            producer.join(timeout=0.05)


def _hand_over(handed: queue.Queue, entry: tuple, stop: threading.Event) -> bool:
    """Put ``entry`` once there is room; False if the consumer stopped meanwhile."""
    while not stop.is_set():
        try:
            handed.put(entry, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False
