"""How many threads the numerical work of one process may use, and running work in them.

Reading (decompression, smoothing) and fitting split their work over Python threads, since
numpy, scipy and BLAS release the GIL; BLAS itself then runs one thread per call (its own
threads would compete with ours and spin on small products). The budget travels in an
environment variable so that worker processes inherit their share.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

THREADS_VARIABLE = "BIDS_GLM_THREADS"


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
