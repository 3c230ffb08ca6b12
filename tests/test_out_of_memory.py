"""Running out of memory is reported as such, with the limits in force, not as a bug."""

from __future__ import annotations

import errno
import mmap
import resource
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import pytest

from bids_glm.cli.main import main
from bids_glm.errors import EXIT_ANALYSIS_FAILURE
from bids_glm.pipeline import run
from bids_glm.runtime import out_of_memory
from bids_glm.runtime.memory_limits import address_space_limit_bytes
from bids_glm.runtime.out_of_memory import (
    OutOfMemoryError,
    ProcessKilled,
    is_out_of_memory,
    out_of_memory_error,
)

GIB = 2**30


def _refused_allocation() -> MemoryError:
    try:
        np.empty(2**62, dtype=np.uint8)  # more than any address space
    except MemoryError as err:
        return err
    raise AssertionError("an exabyte array was allocated")


def _refused_map() -> OSError:
    try:
        mmap.mmap(-1, 2**62)
    except OSError as err:
        return err
    raise AssertionError("an exabyte map was made")


def test_refused_allocations_and_killed_helpers_count_as_out_of_memory():
    assert is_out_of_memory(_refused_allocation())
    assert is_out_of_memory(_refused_map())
    assert is_out_of_memory(OSError(errno.ENOMEM, "Cannot allocate memory"))
    assert is_out_of_memory(ImportError("libx.so: failed to map segment from shared object"))
    assert is_out_of_memory(BrokenProcessPool("a process in the pool was terminated abruptly"))
    assert is_out_of_memory(ProcessKilled("the volume-reducing process ended (signal 9)"))
    assert not is_out_of_memory(OSError(errno.ENOSPC, "No space left on device"))
    assert not is_out_of_memory(ImportError("No module named 'x'"))
    assert not is_out_of_memory(ValueError("shapes do not match"))


def test_the_message_names_the_limits_and_what_to_do(monkeypatch):
    monkeypatch.setattr(out_of_memory, "address_space_limit_bytes", lambda: 3 * GIB // 2)
    monkeypatch.setattr(out_of_memory, "memory_limit_bytes", lambda: 4 * GIB)
    cause = _refused_allocation()
    error = out_of_memory_error(cause)
    assert isinstance(error, OutOfMemoryError) and error.__cause__ is cause
    text = str(error)
    assert text.startswith("out of memory (MemoryError: ")
    assert "address space (ulimit -v) 1.50 GiB" in text and "memory (cgroup) 4.00 GiB" in text
    assert "peak resident memory so far" in text and "raise the memory limit" in text
    assert "SLURM --mem" in text  # an address-space limit counts mapped work files too

    monkeypatch.setattr(out_of_memory, "address_space_limit_bytes", lambda: None)
    monkeypatch.setattr(out_of_memory, "memory_limit_bytes", lambda: None)
    killed = str(out_of_memory_error(BrokenProcessPool("a process was terminated abruptly")))
    assert killed.startswith("a process was terminated abruptly: most often the kernel's")
    assert "address space (ulimit -v) none, memory (cgroup) none" in killed
    assert "a lower --n-cpus" in killed and "SLURM --mem" not in killed


def test_the_address_space_limit_is_read_from_the_process():
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    expected = None if soft == resource.RLIM_INFINITY else soft
    assert address_space_limit_bytes() == expected


def test_a_run_out_of_memory_exits_1_naming_the_limits_and_leaves_nothing(
    tiny_dataset, tmp_path, monkeypatch, capsys
):
    def no_memory(*args, **kwargs):
        raise _refused_allocation()

    monkeypatch.setattr(run, "fit_run_as_read", no_memory)
    out = tmp_path / "out"
    code = main([str(tiny_dataset), str(out), "participant", "--work-dir", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert code == EXIT_ANALYSIS_FAILURE
    assert "bids-glm: error: out of memory (MemoryError: " in err
    assert "address space (ulimit -v)" in err
    assert "internal error" not in err and "please report" not in err
    assert not list(out.rglob("*.nii.gz"))


@pytest.mark.parametrize("failure", [MemoryError, KeyError])
def test_only_memory_failures_of_the_whole_command_are_told_apart(
    tiny_dataset, tmp_path, monkeypatch, capsys, failure
):
    def fails(*args, **kwargs):
        raise failure("at start-up")

    monkeypatch.setattr("bids_glm.cli.main.settings_from_args", fails)
    code = main([str(tiny_dataset), str(tmp_path / "out"), "participant"])
    err = capsys.readouterr().err
    assert code == EXIT_ANALYSIS_FAILURE
    if failure is MemoryError:
        assert err.startswith("bids-glm: error: out of memory (MemoryError: at start-up)")
    else:
        assert "internal error: KeyError" in err and "please report it" in err
