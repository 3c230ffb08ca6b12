"""Run-level work in parallel worker processes, bounded by ``--n-cpus``.

Each worker handles one run at a time (read, fit, write), so memory grows with the
number of workers, not with the number of runs. Workers are started with the ``spawn``
method and an environment that gives each an equal share of the cores for BLAS.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

from bids_glm.settings import Settings

LOGGER = logging.getLogger("bids_glm")
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def limit_threads(n_threads: int) -> None:
    """Cap BLAS/OpenMP threads unless the environment already sets them.

    Effective only before numpy is first imported (the CLI imports it lazily for this).
    """
    for variable in THREAD_VARIABLES:
        os.environ.setdefault(variable, str(max(n_threads, 1)))


@contextmanager
def _thread_environment(n_threads: int):
    saved = {v: os.environ.get(v) for v in THREAD_VARIABLES}
    os.environ.update(dict.fromkeys(THREAD_VARIABLES, str(n_threads)))
    try:
        yield
    finally:
        for variable, value in saved.items():
            if value is None:
                os.environ.pop(variable, None)
            else:
                os.environ[variable] = value


def _configure_worker(level: int) -> None:
    from bids_glm.cli import configure_logging

    configure_logging(level)


def map_runs(function: Callable, items: Sequence, args: tuple, settings: Settings) -> list:
    """``[function(item, *args) for item in items]``, in up to ``settings.n_cpus`` processes.

    Results come back in the order of ``items``; an exception in a worker is re-raised.
    """
    n_workers = min(settings.n_cpus, len(items))
    if n_workers <= 1:
        return [function(item, *args) for item in items]
    LOGGER.info("processing %d runs in %d worker processes", len(items), n_workers)
    with (
        _thread_environment(max(settings.n_cpus // n_workers, 1)),
        ProcessPoolExecutor(
            n_workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_configure_worker,
            initargs=(settings.verbosity,),
        ) as pool,
    ):
        futures = [pool.submit(function, item, *args) for item in items]
        return [future.result() for future in futures]
