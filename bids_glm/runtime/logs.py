"""Collect the warnings logged while a piece of work runs (for manifests and reports)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

CAPTURED_LOGGERS = ("bids_glm", "py.warnings")


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
