"""Progress lines for long work: at most one per interval, none for work that ends sooner.

A 3,000-volume run streams for a minute or more with nothing else to say; a line every
`PROGRESS_INTERVAL_S` (how far, how long to go) tells a user, or a batch log, that it moves.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

LOGGER = logging.getLogger("bids_glm")
PROGRESS_INTERVAL_S = 10.0


class Progress:
    """Log ``done`` of ``total`` items now and then, as `update` is told.

    Parameters
    ----------
    label : str
        What is being worked on (starts each line), e.g. a file name.
    total : int
        Items in all.
    what : str
        What an item is, plural (``"volumes read"``).
    interval_s : float, optional
        Seconds between lines (default `PROGRESS_INTERVAL_S`); the first comes one interval
        after the start.
    clock : callable
        Seconds, monotonic (tests pass their own).
    """

    def __init__(
        self,
        label: str,
        total: int,
        what: str,
        interval_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.total, self.what = label, int(total), what
        self.interval_s = PROGRESS_INTERVAL_S if interval_s is None else float(interval_s)
        self.clock = clock
        self.started = self.last = clock()
        self._done, self._lock = 0, threading.Lock()

    def advance(self, n_items: int) -> None:
        """Record ``n_items`` more finished (from any thread); `update` with the total."""
        with self._lock:
            self._done += int(n_items)
            self.update(self._done)

    def update(self, done: int) -> None:
        """Record that ``done`` items are finished; log a line if an interval has passed
        since the last one (never for the last item: the work's own end says that)."""
        if done >= self.total:
            return
        now = self.clock()
        if now - self.last < self.interval_s:
            return
        self.last = now
        elapsed_s = now - self.started
        left_s = elapsed_s * (self.total - done) / done if done else float("nan")
        LOGGER.info(
            "%s: %d of %d %s (%d%%), about %.0f s to go",
            self.label,
            done,
            self.total,
            self.what,
            100 * done // self.total,
            left_s,
        )
