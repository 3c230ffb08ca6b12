"""Scratch arrays held in unnamed files of the work folder (``runtime/spill.py``)."""

from __future__ import annotations

import errno
import logging
import mmap

import numpy as np
from conftest import cgroup_tree

from bids_glm.runtime import memory_limits, spill


def mapped(array: np.ndarray) -> bool:
    """Whether ``array`` views a memory map."""
    while isinstance(array, np.ndarray):
        array = array.base
    return isinstance(array, memoryview) and isinstance(array.obj, mmap.mmap)


def test_small_arrays_and_no_folder_stay_in_memory(tmp_path, monkeypatch):
    assert not mapped(spill.scratch_array((4, 5), np.float32, tmp_path))
    monkeypatch.setattr(spill, "SPILL_MIN_BYTES", 0)
    assert not mapped(spill.scratch_array((4, 5), np.float32, None))


def test_large_arrays_are_mapped_from_a_file_that_has_no_name(tmp_path, monkeypatch):
    monkeypatch.setattr(spill, "SPILL_MIN_BYTES", 1)
    array = spill.scratch_array((300, 70), np.float32, tmp_path)
    assert mapped(array) and array.shape == (300, 70) and array.flags.writeable
    assert array.dtype == np.float32
    values = np.arange(array.size, dtype=np.float32).reshape(array.shape)
    array[:] = values
    np.testing.assert_array_equal(array[:, 5:9], values[:, 5:9])
    assert list(tmp_path.iterdir()) == []  # nothing to clean up, even if killed now


def test_a_folder_without_room_gives_a_warning_and_memory(tmp_path, monkeypatch, caplog):
    def no_room(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spill.os, "posix_fallocate", no_room)
    monkeypatch.setattr(spill, "SPILL_MIN_BYTES", 1)
    with caplog.at_level(logging.WARNING, logger="bids_glm"):
        array = spill.scratch_array((1000, 1000), np.float32, tmp_path)
    assert not mapped(array) and array.shape == (1000, 1000)
    assert f"{tmp_path}: cannot hold a scratch file of 4 MB (No space left" in caplog.text
    assert list(tmp_path.iterdir()) == []


def test_memory_limit_is_the_smallest_on_the_groups_path(tmp_path):
    # v2: the job's group and its parent (a SLURM step inside its job); "max" is none
    proc, root = cgroup_tree(
        tmp_path / "v2",
        ["0::/slurm/job_7/step_0"],
        {
            "memory.max": "max",
            "slurm/job_7/memory.max": str(3 * 2**30),
            "slurm/job_7/step_0/memory.max": str(4 * 2**30),
        },
    )
    assert memory_limits.memory_limit_bytes(proc, root) == 3 * 2**30
    # v1: the memory controller's own hierarchy; "no limit" is a number near 2**63
    proc, root = cgroup_tree(
        tmp_path / "v1",
        ["9:cpu,cpuacct:/docker/abc", "4:memory:/docker/abc", "1:name=systemd:/"],
        {
            "memory/memory.limit_in_bytes": "9223372036854771712",
            "memory/docker/abc/memory.limit_in_bytes": str(2**30),
        },
    )
    assert memory_limits.memory_limit_bytes(proc, root) == 2**30
    proc, root = cgroup_tree(tmp_path / "none", ["0::/"], {"memory.max": "max"})
    assert memory_limits.memory_limit_bytes(proc, root) is None
    assert memory_limits.memory_limit_bytes(tmp_path / "absent", root) is None


def test_a_memory_limit_lowers_the_size_from_which_arrays_are_mapped(tmp_path, monkeypatch):
    """An eighth of the limit: a 2 MB array stays in memory without a limit, and is mapped
    from a file under a 12 MB one (threshold 1.5 MB)."""
    monkeypatch.setattr(spill, "memory_limit_bytes", lambda: None)
    assert spill.spill_threshold() == spill.SPILL_MIN_BYTES
    assert not mapped(spill.scratch_array((2**18,), np.float64, tmp_path))
    monkeypatch.setattr(spill, "memory_limit_bytes", lambda: 12 * 2**20)
    assert spill.spill_threshold() == 12 * 2**20 // 8
    assert mapped(spill.scratch_array((2**18,), np.float64, tmp_path))


def test_a_work_folder_held_in_memory_is_found_and_warned_about_once(
    tmp_path, monkeypatch, caplog
):
    """Scratch files in a tmpfs (a RAM-backed /tmp, a SLURM job's /tmp) take memory: the
    innermost mount above the folder decides, and the run is told once per folder."""
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "/dev/vda / ext4 rw 0 0\n"
        f"tmpfs {tmp_path}/ram tmpfs rw 0 0\n"
        f"/dev/vdb {tmp_path}/ram/disk ext4 rw 0 0\n"
        f"tmpfs {tmp_path}/with\\040space tmpfs rw 0 0\n"
    )
    assert spill.memory_filesystem(tmp_path / "ram" / "work", mounts) == "tmpfs"
    assert spill.memory_filesystem(tmp_path / "ram", mounts) == "tmpfs"
    assert spill.memory_filesystem(tmp_path / "ram" / "disk" / "work", mounts) is None
    assert spill.memory_filesystem(tmp_path / "with space" / "w", mounts) == "tmpfs"
    assert spill.memory_filesystem(tmp_path / "elsewhere", mounts) is None
    assert spill.memory_filesystem(tmp_path, tmp_path / "no-mounts") is None

    monkeypatch.setattr(spill, "SPILL_MIN_BYTES", 1)
    monkeypatch.setattr(spill, "memory_filesystem", lambda folder: "tmpfs")
    with caplog.at_level(logging.WARNING, logger="bids_glm"):
        for _ in range(3):
            assert mapped(spill.scratch_array((10,), np.float32, tmp_path / "w"))
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        f"{tmp_path / 'w'} is on tmpfs, a file system held in memory"
    ]
