"""Logging: where records go (stderr, at the level ``-v``/``-q`` ask for), and collecting the
warnings logged while a piece of work runs (for manifests and reports)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

CAPTURED_LOGGERS = ("bids_glm", "py.warnings")
LOG_FORMAT = "%(asctime)s [%(levelname)s] %(message)s"
LOG_TIME_FORMAT = "%H:%M:%S"


def configure_logging(verbosity: int) -> None:
    """Send ``bids_glm`` records (and Python warnings) to stderr at the requested level.

    Parameters
    ----------
    verbosity : int
        -1 (``-q``) warnings and errors only; 0 or 1 (``-v``) information too; 2 or more
        (``-vv``) debugging records too.
    """
    level = {-1: logging.WARNING, 0: logging.INFO, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, LOG_TIME_FORMAT))
    # installed afresh on every call: logging installs its hook once per process, and a
    # caller's `warnings.catch_warnings` block (a test, an embedding program) removes it
    logging.captureWarnings(False)
    logging.captureWarnings(True)
    for name in CAPTURED_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False


class _ListHandler(logging.Handler):
    def __init__(self, messages: list[str]) -> None:
        super().__init__(level=logging.WARNING)
        self.messages = messages

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def captured_warnings() -> Iterator[list[str]]:
    """Yield a list that receives every WARNING (or worse) message logged inside the block.

    The messages still reach the normal handlers (stderr); nested blocks each get them.
    """
    messages: list[str] = []
    handler = _ListHandler(messages)
    loggers = [logging.getLogger(name) for name in CAPTURED_LOGGERS]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield messages
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
