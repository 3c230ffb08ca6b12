"""A function called in a forked child process, its return value sent back pickled.

Start-up work that holds the GIL (pybids' indexing, compiling jinja2 templates) runs on an
idle core this way while the parent goes on. The child is forked only where that is safe
(Linux, no other thread) and the thread budget has a core to spare (not with ``--n-cpus 1``,
which keeps a run to one core), and any failure in it (an exception, a signal, a value that
cannot be pickled) comes back as "no result": the caller then does the work itself, so it
logs and raises exactly what doing it in place would.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bids_glm.runtime.threads import spare_cores

PIPE_BYTES = 1 << 20  # Linux's default limit for an unprivileged pipe (pipe-max-size)


def can_fork() -> bool:
    """Whether forking is safe here: Linux, and no thread but this one."""
    return sys.platform == "linux" and threading.active_count() == 1


@dataclass
class ForkedCall:
    """A call running in a forked child (`start_forked_call`); `result` waits for it once."""

    pid: int | None
    read_fd: int | None

    def result(self) -> tuple[bool, Any]:
        """``(True, value)`` if the call returned ``value``; ``(False, None)`` if it failed
        or the result was taken already."""
        if self.pid is None:
            return False, None
        with os.fdopen(self.read_fd, "rb") as stream:
            payload = stream.read()
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:  # reaped elsewhere
            pass
        self.pid = self.read_fd = None
        try:
            return (True, pickle.loads(payload)) if payload else (False, None)
        except Exception:  # a truncated payload: the child was killed while writing
            return False, None


def start_forked_call(function: Callable[..., Any], *args: Any) -> ForkedCall | None:
    """Call ``function(*args)`` in a forked child; None where forking is not safe or no
    core is spare (`bids_glm.runtime.threads.spare_cores`): the caller then does the work."""
    if spare_cores() < 1 or not can_fork():
        return None
    import fcntl  # POSIX only, as forking here is

    read_fd, write_fd = os.pipe()
    with contextlib.suppress(OSError, AttributeError):  # a child with up to 1 MiB to send
        fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)  # exits without waiting
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_fd)
        _call_in_child(function, args, write_fd)
    os.close(write_fd)
    return ForkedCall(pid, read_fd)


def _call_in_child(function: Callable[..., Any], args: tuple, write_fd: int) -> None:
    status = 1
    try:
        payload = pickle.dumps(function(*args))
        with os.fdopen(write_fd, "wb") as stream:
            stream.write(payload)
        status = 0
    except BaseException:  # the parent does the work again, and meets what failed
        pass
    finally:
        os._exit(status)  # no atexit handlers, no flushing of the parent's buffers
