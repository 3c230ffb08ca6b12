"""Discovery in a forked child process, while the parent loads the fitting modules.

At start-up one core is idle: checking the file names (`validate_dataset`, ~0.06 s),
importing pybids and indexing the dataset (~0.35 s) do not depend on the numerical modules
and methods templates the parent loads next (pandas, scipy, jinja2: ~0.5 s), and the
settings are typed without pandas, so the fork comes early. On Linux, with no other thread
running, `start_discovery` forks a child that does both and sends back the runs and the log
records it emitted, while the parent loads; the parent then replays the child's records, so
the log reads as if `discover_runs` had run in place. Anywhere else, or when the child fails
in any way (an input error, a signal, a result that cannot be pickled), the parent validates
and discovers again, and so logs and raises exactly what an in-place discovery would.
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
import threading
from dataclasses import dataclass

from bids_glm.inputs.layout import requested_participants, validated_runs
from bids_glm.inputs.run_input import DiscoveredRuns
from bids_glm.runtime.logs import CAPTURED_LOGGERS
from bids_glm.settings import Settings

LOGGER = logging.getLogger("bids_glm")


@dataclass(frozen=True)
class _ChildResult:
    found: DiscoveredRuns
    records: list[logging.LogRecord]


class _Recorder(logging.Handler):
    """Keeps the child's log records, made picklable (message formatted, no arguments)."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        record.msg, record.args = record.getMessage(), None
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        self.records.append(record)


@dataclass
class PendingDiscovery:
    """Discovery started by `start_discovery`; `result` waits for it (once)."""

    settings: Settings
    participants: list[str]
    child_pid: int | None = None
    result_fd: int | None = None

    def result(self) -> DiscoveredRuns:
        """What `discover_runs` returns, its log records replayed; raises what it raises."""
        result = self._child_result()
        if result is None:
            return validated_runs(self.settings, self.participants)
        for record in result.records:
            logger = logging.getLogger(record.name)
            if logger.isEnabledFor(record.levelno):
                logger.handle(record)
        return result.found

    def _child_result(self) -> _ChildResult | None:
        if self.child_pid is None:
            return None
        with os.fdopen(self.result_fd, "rb") as stream:
            payload = stream.read()
        os.waitpid(self.child_pid, 0)
        self.child_pid = None
        try:
            return pickle.loads(payload) if payload else None
        except Exception:  # a truncated payload: the child was killed while writing
            LOGGER.debug("discovery child sent an unreadable result; discovering again")
            return None


def can_fork() -> bool:
    """Whether forking is safe here: Linux, and no thread but this one."""
    return sys.platform == "linux" and threading.active_count() == 1


def start_discovery(settings: Settings) -> PendingDiscovery:
    """Start discovering the runs for ``settings`` in a forked child, where that is safe.

    The participants are resolved here, so an unknown label raises at once (``InputError``).

    Returns
    -------
    PendingDiscovery
        Its `result` method gives what discovery found.
    """
    participants = requested_participants(settings)
    if not can_fork():
        return PendingDiscovery(settings, participants)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_fd)
        _discover_in_child(settings, participants, write_fd)
    os.close(write_fd)
    return PendingDiscovery(settings, participants, pid, read_fd)


def _discover_in_child(settings: Settings, participants: list[str], write_fd: int) -> None:
    status = 1
    try:
        recorder = _Recorder()
        for name in CAPTURED_LOGGERS:  # the records are replayed in the parent
            logging.getLogger(name).handlers[:] = [recorder]
        found = validated_runs(settings, participants)
        payload = pickle.dumps(_ChildResult(found, recorder.records))
        with os.fdopen(write_fd, "wb") as stream:
            stream.write(payload)
        status = 0
    except BaseException:  # the parent discovers again, and logs and raises what it meets
        pass
    finally:
        os._exit(status)  # no atexit handlers, no flushing of the parent's buffers
