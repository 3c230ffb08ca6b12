"""Run-level work in parallel worker processes, bounded by ``--n-cpus``.

Each worker handles one run at a time (read, fit, write), so memory grows with the
number of workers, not with the number of runs. Workers are started with the ``spawn``
method and an environment that gives each an equal share of the cores as its thread
budget (`bids_glm.runtime.threads`); BLAS runs single-threaded inside those threads.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

from bids_glm.runtime.logs import configure_logging
from bids_glm.runtime.threads import BLAS_VARIABLES, THREADS_VARIABLE
from bids_glm.settings import Settings

LOGGER = logging.getLogger("bids_glm")
THREADS_PER_WORKER = 2


@contextmanager
def _thread_environment(n_threads: int):
    """Environment inherited by worker processes: ``n_threads`` each, BLAS single-threaded."""
    variables = (*BLAS_VARIABLES, THREADS_VARIABLE)
    saved = {v: os.environ.get(v) for v in variables}
    os.environ.update(dict.fromkeys(BLAS_VARIABLES, "1"))
    os.environ[THREADS_VARIABLE] = str(n_threads)
    try:
        yield
    finally:
        for variable, value in saved.items():
            if value is None:
                os.environ.pop(variable, None)
            else:
                os.environ[variable] = value


def worker_count(n_cpus: int, n_items: int) -> int:
    """Worker processes :func:`map_runs` starts for ``n_items``; 1 or less: none (in-process).

    None in a daemonic process (a ``multiprocessing.Pool`` worker running bids-glm), which
    may not have children.
    """
    if multiprocessing.current_process().daemon:
        return 0
    return min(n_cpus // THREADS_PER_WORKER, n_items)


def map_runs(function: Callable, items: Sequence, args: tuple, settings: Settings) -> list:
    """``[function(item, *args) for item in items]`` on ``settings.n_cpus`` cores.

    Runs go to worker processes only when every worker can have at least
    ``THREADS_PER_WORKER`` threads (one run's decompression keeps one core busy while
    the others smooth and fit); otherwise they are processed one after another in this
    process, each using all ``n_cpus`` threads, which needs less memory and no start-up.
    Results come back in the order of ``items``; an exception in a worker is re-raised.
    """
    n_workers = worker_count(settings.n_cpus, len(items))
    if n_workers <= 1:
        return [function(item, *args) for item in items]
    LOGGER.info("processing %d runs in %d worker processes", len(items), n_workers)
    with (
        _thread_environment(settings.n_cpus // n_workers),
        ProcessPoolExecutor(
            n_workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=configure_logging,
            initargs=(settings.verbosity,),
        ) as pool,
    ):
        futures = [pool.submit(function, item, *args) for item in items]
        return [future.result() for future in futures]
