"""Scratch arrays held in unnamed files of the work folder (``runtime/spill.py``)."""

from __future__ import annotations

import errno
import logging
import mmap

import numpy as np

from bids_glm.runtime import spill


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
