"""Chunks of numbered blocks shared out between two processes as they come.

Each process claims the next unclaimed chunk of a block under a lock in shared memory, works
on it and marks it finished; either may wait until every chunk of a block is finished. Made
before the fork. A wait or a claim calls ``alive`` every few milliseconds, which raises if
the other process is gone, so that neither waits for ever on one that died.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

from bids_glm.runtime.shared_memory import shared_array

POLL_S = 0.0002  # between looks at a block's finished count
LOCK_TIMEOUT_S = 0.05  # between checks that the other process lives, while the lock is held


class ChunkClaims:
    """``n_chunks`` chunks of each of ``n_blocks`` blocks, claimed and finished in turn.

    Parameters
    ----------
    n_blocks, n_chunks : int
        Blocks, and chunks per block.
    """

    def __init__(self, n_blocks: int, n_chunks: int) -> None:
        self.n_chunks = n_chunks
        self._lock = multiprocessing.get_context("fork").Lock()
        self._claimed = shared_array((max(n_blocks, 1),), np.int64)
        self._finished = shared_array((max(n_blocks, 1),), np.int64)

    def claim(self, block: int, alive: Callable[[], None]) -> int | None:
        """The next unclaimed chunk of ``block``, now this process's; None when none is left."""
        with self._locked(alive):
            chunk = int(self._claimed[block])
            if chunk >= self.n_chunks:
                return None
            self._claimed[block] = chunk + 1
        return chunk

    def finish(self, block: int, alive: Callable[[], None]) -> None:
        """Count one chunk of ``block`` as finished."""
        with self._locked(alive):
            self._finished[block] += 1

    def wait(self, block: int, alive: Callable[[], None]) -> None:
        """Return once every chunk of ``block`` is finished (at once for a negative index)."""
        while block >= 0 and self._finished[block] < self.n_chunks:
            alive()
            time.sleep(POLL_S)

    def blocks_finished(self) -> int:
        """Blocks whose every chunk is finished, counted from the first."""
        done = self._finished >= self.n_chunks
        return int(np.argmin(done)) if not done.all() else done.size

    @contextmanager
    def _locked(self, alive: Callable[[], None]) -> Iterator[None]:
        while not self._lock.acquire(timeout=LOCK_TIMEOUT_S):
            alive()
        try:
            yield
        finally:
            self._lock.release()
