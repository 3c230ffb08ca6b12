"""Per-volume reductions in forked processes, each with a GIL of its own.

A streamed run keeps two cores busy with inflation, the per-volume reduction (smoothing and
in-mask gather) and the running sums (which the child and the reading thread share). In one
process the reduction's numpy calls each hand the GIL to and from the reading thread. In a
child process the reduction has a GIL of its own: on the 800-volume benchmark run the stream
took 5.9-6.3 s instead of 7.3-7.6 s (3 of 3 pairs, session 7).

Protocol: the parent inflates each volume into a ring of buffers in shared memory and sends
a child ``(ring row, buffer)``; the child reduces that buffer into the ring row (the block
rows are shared too) and answers with the same 8 bytes. Children take volumes in turn and
answer in order, so the parent waits for a volume by reading the next answer of the child it
went to. Finite-value flags (floating-point data) come back through shared memory when the
children stop. A child that fails sends its traceback, which the parent raises; a child that
dies is reported with its exit status; an error in the parent kills the children.

Forking a process that has threads (writers may still be compressing an earlier run's maps)
is safe here: a child only runs the reducer's numpy code and ``os.read``/``os.write`` on its
pipes, collects no garbage cycles (no finalizer of the parent's objects runs in it), and ends
with ``os._exit`` (no interpreter teardown, no ``atexit`` handlers, none of the parent's
buffers flushed twice). Its memory is mostly the parent's pages, shared until either writes
them (`benchmarks/tree_memory.py` measures the whole tree).
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import struct
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from bids_glm.image.volume_reducer import VolumeReducer
from bids_glm.runtime.out_of_memory import ProcessKilled
from bids_glm.runtime.shared_memory import shared_array

MESSAGE = struct.Struct("=ii")  # (ring row, buffer) both ways; (FAILED, n): n bytes of traceback
STOP = -1  # parent -> child: finish (write the finite flags) and exit
FAILED = -2  # child -> parent: a traceback follows


def forking_available() -> bool:
    """Whether reductions can go to forked processes (Linux: fork is cheap and reliable)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork")


def _read_message(fd: int, n_bytes: int) -> bytes:
    """Up to ``n_bytes`` from a pipe; fewer only at its end."""
    parts, got = [], 0
    while got < n_bytes:
        part = os.read(fd, n_bytes - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def _serve(
    reducer: VolumeReducer,
    stored: Sequence[np.ndarray],
    finite: np.ndarray,
    commands: int,
    answers: int,
    after_volume: Callable[[int], None] | None = None,
) -> int:
    """A child's loop: reduce the volumes it is sent until told to stop; its exit status.

    ``after_volume(n)`` is called once the ``n``-th volume is answered (work of its own).
    """
    n_done = 0
    try:
        while True:
            message = _read_message(commands, MESSAGE.size)
            if len(message) < MESSAGE.size:  # the parent is gone
                return 1
            row, buffer = MESSAGE.unpack(message)
            if row == STOP:
                finite[:] = reducer.finite_voxels()
                return 0
            reducer(row, stored[buffer])
            os.write(answers, message)
            n_done += 1
            if after_volume is not None:
                after_volume(n_done)
    except BaseException:  # everything goes back to the parent
        text = traceback.format_exc().encode()
        os.write(answers, MESSAGE.pack(FAILED, len(text)) + text)
        return 1


@dataclass
class _Child:
    """A forked reducing process and the parent's ends of its two pipes."""

    pid: int
    commands: int  # parent writes
    answers: int  # parent reads

    def send(self, row: int, buffer: int) -> None:
        try:
            os.write(self.commands, MESSAGE.pack(row, buffer))
        except BrokenPipeError:
            self._ended()

    def wait_for_answer(self) -> None:
        """Block until the child has reduced the oldest volume it was sent."""
        message = _read_message(self.answers, MESSAGE.size)
        if len(message) < MESSAGE.size:
            self._ended()
        row, n_bytes = MESSAGE.unpack(message)
        if row == FAILED:
            self._raise_traceback(n_bytes)

    def raise_if_gone(self) -> None:
        """Raise what ended the child, if it has ended: the traceback it sent, else how."""
        if not self.pid:
            return
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        if pid == 0:
            return
        # the pipe holds what it wrote before it ended: answers, perhaps a traceback
        while len(message := _read_message(self.answers, MESSAGE.size)) == MESSAGE.size:
            row, n_bytes = MESSAGE.unpack(message)
            if row == FAILED:
                self.pid = 0
                self._raise_traceback(n_bytes)
        self._ended(status)

    def _raise_traceback(self, n_bytes: int) -> None:
        text = _read_message(self.answers, n_bytes).decode(errors="replace")
        raise RuntimeError(f"reducing a volume failed in a child process:\n{text}")

    def _ended(self, status: int | None = None) -> None:
        """Reap a child that is gone unasked (``status``: reaped already); raise how it
        ended."""
        if status is None:
            _, status = os.waitpid(self.pid, 0)
        self.pid = 0
        message = f"the volume-reducing process ended unexpectedly ({_how(status)})"
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
            raise ProcessKilled(message)
        raise RuntimeError(message)

    def close(self, kill: bool) -> int:
        """Stop (or kill) the child, reap it, close the pipes; its exit status."""
        status = 0
        if self.pid:
            if kill:
                os.kill(self.pid, signal.SIGKILL)
            else:
                with contextlib.suppress(BrokenPipeError):  # gone already: reaped below
                    os.write(self.commands, MESSAGE.pack(STOP, 0))
            _, status = os.waitpid(self.pid, 0)
        os.close(self.commands)
        os.close(self.answers)
        return status


def _how(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


class ForkedReducers:
    """Reduce volumes in ``n_processes`` forked children; a context manager.

    Parameters
    ----------
    reducer : VolumeReducer
        Built before the fork, its ``out`` in shared memory (`shared_array`).
    buffers : sequence of ndarray
        The ring the parent inflates volumes into (1-D uint8, `shared_array`).
    stored : sequence of ndarray
        The same buffers as stored volumes (`bids_glm.image.io.stored_view`).
    n_processes : int
        Children; volumes go to them in turn.
    after_volume : callable, optional
        Called in a child with the number of volumes it has reduced, after answering each
        (e.g. its share of the sums of a block it completes; one child then).
    """

    def __init__(
        self,
        reducer: VolumeReducer,
        buffers: Sequence[np.ndarray],
        stored: Sequence[np.ndarray],
        n_processes: int,
        after_volume: Callable[[int], None] | None = None,
    ) -> None:
        self.buffers = buffers
        self._after_volume = after_volume
        self._finite = shared_array((max(n_processes, 1), reducer.out.shape[1]), bool)
        self._children: list[_Child] = []
        self._turn = 0
        try:
            for finite in self._finite:
                self._children.append(self._fork(reducer, stored, finite))
        except BaseException:
            self.close(kill=True)
            raise

    def _fork(
        self, reducer: VolumeReducer, stored: Sequence[np.ndarray], finite: np.ndarray
    ) -> _Child:
        """Fork one child that reduces into the shared rows and reports into ``finite``."""
        commands_in, commands_out = os.pipe()
        answers_in, answers_out = os.pipe()
        try:
            with warnings.catch_warnings():  # Python >= 3.12 warns when a threaded process forks
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
        except OSError:
            for fd in (commands_in, commands_out, answers_in, answers_out):
                os.close(fd)
            raise
        if pid == 0:  # the child: its own ends only, none of its siblings'
            # no cycle collection: it could run finalizers of the parent's objects (files
            # of writer threads...) here; what the child allocates is freed by refcounts
            gc.disable()
            status = 1
            try:
                for child in self._children:
                    os.close(child.commands)
                    os.close(child.answers)
                os.close(commands_out)
                os.close(answers_in)
                status = _serve(
                    reducer, stored, finite, commands_in, answers_out, self._after_volume
                )
            finally:
                os._exit(status)
        os.close(commands_in)
        os.close(answers_out)
        return _Child(pid, commands_out, answers_in)

    def submit(self, row: int, buffer: int) -> Callable[[], None]:
        """Send volume ``buffer`` to be reduced into ``row``; return the call that waits
        for it (call these in the order of submission)."""
        child = self._children[self._turn]
        self._turn = (self._turn + 1) % len(self._children)
        child.send(row, buffer)
        return child.wait_for_answer

    def raise_if_gone(self) -> None:
        """Raise if a child has ended (while the parent waits for work it shares)."""
        for child in self._children:
            child.raise_if_gone()

    def finite_voxels(self) -> np.ndarray:
        """Voxels finite in every volume reduced (valid after the context has exited)."""
        return np.logical_and.reduce(self._finite, axis=0)

    def close(self, kill: bool = False) -> None:
        """Stop the children (kill them after an error); raise if one failed on stopping."""
        statuses = [child.close(kill) for child in self._children]
        self._children = []
        failed = [status for status in statuses if status]
        if failed and not kill:
            raise RuntimeError(f"a volume-reducing process failed ({_how(failed[0])})")

    def __enter__(self) -> ForkedReducers:
        return self

    def __exit__(self, error_type, error, trace) -> None:
        self.close(kill=error_type is not None)
