"""How many threads the numerical work of one process may use.

Reading (decompression, smoothing) and fitting split their work over Python threads, since
numpy, scipy and BLAS release the GIL; BLAS itself then runs one thread per call (its own
threads would compete with ours and spin on small products). The budget travels in an
environment variable so that worker processes inherit their share.
"""

from __future__ import annotations

import os

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
