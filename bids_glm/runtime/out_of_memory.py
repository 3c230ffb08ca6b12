"""Running out of memory, told as such: which limits the process ran into, and what to do.

An allocation refused under a job's limit surfaces as ``MemoryError``, as ``OSError`` with
``ENOMEM`` (a shared map, a thread that cannot get its stack), or as ``ImportError`` when a
library's segments cannot be mapped; a worker process the kernel kills leaves its pool
broken, and a forked helper killed so raises `ProcessKilled`. None of them is a bug of
bids-glm, and "please report it" would send the user the wrong way: `out_of_memory_error`
names the limits in force instead.
"""

from __future__ import annotations

import errno
import resource

from bids_glm.errors import AnalysisError
from bids_glm.runtime.memory_limits import address_space_limit_bytes, memory_limit_bytes

GIB = 2**30
# what the dynamic loader says when mmap refuses a shared library's segment (ENOMEM)
LOADER_OUT_OF_MEMORY = "failed to map segment"


class OutOfMemoryError(AnalysisError):
    """The analysis needed more memory than the process may have."""


class ProcessKilled(RuntimeError):
    """A helper process was killed (SIGKILL), as the kernel kills for lack of memory."""


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is an allocation refused for lack of memory, or a killed helper."""
    if isinstance(err, MemoryError) or _helper_killed(err):
        return True
    if isinstance(err, OSError) and err.errno == errno.ENOMEM:
        return True
    return isinstance(err, ImportError) and LOADER_OUT_OF_MEMORY in str(err)


def _helper_killed(err: BaseException) -> bool:
    """A worker pool broken by a killed process, or a killed forked helper."""
    from concurrent.futures.process import BrokenProcessPool  # only once something failed

    return isinstance(err, BrokenProcessPool | ProcessKilled)


def out_of_memory_error(err: BaseException) -> OutOfMemoryError:
    """An `OutOfMemoryError` for ``err`` (`is_out_of_memory`), caused by it, that names the
    limits in force and what to do."""
    if _helper_killed(err):
        what = (
            f"{err}: most often the kernel's doing, for lack of memory (the job's log or "
            "`dmesg` says so)"
        )
        advice = "run fewer runs at once (a lower --n-cpus) or raise the memory limit"
    else:
        what = f"out of memory ({type(err).__name__}: {err})"
        advice = "raise the memory limit"
    address_space = address_space_limit_bytes()
    advice += (
        "; an address-space limit also counts the files bids-glm maps from --work-dir "
        "(single-trial series, SPM12 data), which a resident-memory limit (SLURM --mem, a "
        "container's --memory) lets the kernel write out instead"
        if address_space is not None
        else ""
    )
    error = OutOfMemoryError(f"{what}. Limits: {_limits(address_space)}; {advice}")
    error.__cause__ = err  # its traceback, with -v
    return error


def _limits(address_space: int | None) -> str:
    memory = memory_limit_bytes()
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB  # KiB on Linux
    return ", ".join(
        [
            f"address space (ulimit -v) {_gib(address_space)}",
            f"memory (cgroup) {_gib(memory)}",
            f"peak resident memory so far {peak_gib:.2f} GiB",
        ]
    )


def _gib(n_bytes: int | None) -> str:
    return "none" if n_bytes is None else f"{n_bytes / GIB:.2f} GiB"
