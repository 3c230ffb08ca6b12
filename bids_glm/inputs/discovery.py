"""Discovery in a forked child process, while the parent loads the fitting modules.

At start-up one core is idle: checking the file names (`validate_dataset`, ~0.06 s),
importing pybids and indexing the dataset (~0.35 s) do not depend on the numerical modules
and methods templates the parent loads next (pandas, scipy, jinja2: ~0.5 s), and the
settings are typed without pandas, so the fork comes early. On Linux, with no other thread
running, `start_discovery` forks a child (`bids_glm.runtime.forked_call`) that does both and
sends back the runs and the log records it emitted, while the parent loads; the parent then
replays the child's records, so the log reads as if `discover_runs` had run in place.
Anywhere else, or when the child fails in any way (an input error, a signal, a result that
cannot be pickled), the parent validates and discovers again, and so logs and raises exactly
what an in-place discovery would.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bids_glm.inputs.layout import requested_participants, validated_runs
from bids_glm.inputs.run_input import DiscoveredRuns
from bids_glm.runtime.forked_call import ForkedCall, start_forked_call
from bids_glm.runtime.logs import CAPTURED_LOGGERS
from bids_glm.settings import Settings


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
    child: ForkedCall | None = None

    def result(self) -> DiscoveredRuns:
        """What `discover_runs` returns, its log records replayed; raises what it raises."""
        returned, result = (False, None) if self.child is None else self.child.result()
        self.child = None
        if not returned:
            return validated_runs(self.settings, self.participants)
        for record in result.records:
            logger = logging.getLogger(record.name)
            if logger.isEnabledFor(record.levelno):
                logger.handle(record)
        return result.found


def start_discovery(settings: Settings) -> PendingDiscovery:
    """Start discovering the runs for ``settings`` in a forked child, where that is safe.

    The participants are resolved here, so an unknown label raises at once (``InputError``).

    Returns
    -------
    PendingDiscovery
        Its `result` method gives what discovery found.
    """
    participants = requested_participants(settings)
    child = start_forked_call(_discover_recording, settings, participants)
    return PendingDiscovery(settings, participants, child)


def _discover_recording(settings: Settings, participants: list[str]) -> _ChildResult:
    """`validated_runs`, with the log records it emitted (to replay in the parent)."""
    recorder = _Recorder()
    for name in CAPTURED_LOGGERS:
        logging.getLogger(name).handlers[:] = [recorder]
    return _ChildResult(validated_runs(settings, participants), recorder.records)
