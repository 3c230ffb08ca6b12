"""Volume reductions in forked processes: failures come back as errors, no child is left."""

from __future__ import annotations

import os
import signal

import nibabel as nib
import numpy as np
import pytest

from bids_glm.errors import InputError
from bids_glm.image.forked_reducers import ForkedReducers, forking_available
from bids_glm.image.stream import stream_masked_series
from bids_glm.runtime.out_of_memory import ProcessKilled
from bids_glm.runtime.shared_memory import shared_array

pytestmark = pytest.mark.skipif(not forking_available(), reason="forked reducers: Linux only")

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


class _Reducer:
    """Stands for a VolumeReducer: copies a stored volume's first values into its row."""

    def __init__(self, out: np.ndarray, fail_at: int | None = None) -> None:
        self.out, self.fail_at = out, fail_at

    def __call__(self, row: int, stored: np.ndarray) -> None:
        if row == self.fail_at:
            raise ValueError(f"cannot reduce row {row}")
        self.out[row] = stored[: self.out.shape[1]]

    def finite_voxels(self) -> np.ndarray:
        return np.isfinite(self.out).all(axis=0)


def _children() -> set[int]:
    """This process's child processes, running or not yet reaped (Linux)."""
    found: set[int] = set()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children") as stream:
                found.update(int(pid) for pid in stream.read().split())
        except FileNotFoundError:  # a thread that ended since the listing has no children
            continue
    return found


@pytest.fixture(autouse=True)
def _no_children_left():
    """Each test leaves no child of its own behind (others' children do not count)."""
    before = _children()
    yield
    assert _children() <= before


def _ring(n_buffers: int = 4, n_values: int = 5):
    buffers = [shared_array((n_values,), np.float32) for _ in range(n_buffers)]
    return buffers, shared_array((3, n_values), np.float32)


@pytest.mark.parametrize("n_processes", [1, 2])
def test_children_reduce_into_shared_rows_and_report_finite_voxels(n_processes):
    buffers, out = _ring()
    for k, buffer in enumerate(buffers):
        buffer[:] = k + 1.0
    buffers[2][3] = np.inf
    with ForkedReducers(_Reducer(out), buffers, buffers, n_processes) as workers:
        waits = [workers.submit(row, buffer) for row, buffer in ((0, 1), (1, 2), (2, 0))]
        for wait in waits:
            wait()
        np.testing.assert_array_equal(out[:, 0], [2.0, 3.0, 1.0])
    np.testing.assert_array_equal(workers.finite_voxels(), [True, True, True, False, True])


def test_a_failing_child_sends_its_traceback():
    buffers, out = _ring()
    with pytest.raises(RuntimeError, match="cannot reduce row 1") as raised:
        with ForkedReducers(_Reducer(out, fail_at=1), buffers, buffers, 1) as workers:
            waits = [workers.submit(row, row) for row in range(3)]
            for wait in waits:
                wait()
    assert "ValueError" in str(raised.value)


@pytest.mark.parametrize("when", ["waiting", "sending"])
def test_a_child_that_dies_is_reported_with_how(when):
    buffers, out = _ring()
    with pytest.raises(ProcessKilled, match=r"ended unexpectedly \(killed by signal 9\)"):
        with ForkedReducers(_Reducer(out), buffers, buffers, 1) as workers:
            child = workers._children[0]
            os.kill(child.pid, signal.SIGKILL)
            if when == "sending":  # wait (not reaping) until it is gone: its pipe is closed
                os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
            workers.submit(0, 0)()


def test_a_child_that_dies_while_work_is_shared_is_reported_with_how():
    """`raise_if_gone`, polled while the parent waits for the child's share of the sums:
    a live child passes, a killed one is told as killed (e.g. by the kernel's OOM killer)."""
    buffers, out = _ring()
    with pytest.raises(ProcessKilled, match=r"ended unexpectedly \(killed by signal 9\)"):
        with ForkedReducers(_Reducer(out), buffers, buffers, 1) as workers:
            workers.raise_if_gone()
            child = workers._children[0]
            os.kill(child.pid, signal.SIGKILL)
            os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
            workers.raise_if_gone()


def test_an_error_while_streaming_stops_the_children(tmp_path):
    """A truncated series: the input error, not the children's, and no process left."""
    path = tmp_path / "bold.nii.gz"
    data = np.random.default_rng(0).normal(100, 5, (9, 8, 7, 30)).astype(np.float32)
    nib.Nifti1Image(data, AFFINE).to_filename(path)
    path.write_bytes(path.read_bytes()[:-2000])
    mask = np.ones(data.shape[:3], bool)
    with pytest.raises(InputError, match="cannot read the image data"):
        stream_masked_series(
            path, mask, AFFINE, lambda block: None, 4.0, n_threads=2, in_processes=True
        )


def test_an_error_of_the_consumer_stops_the_children(tmp_path):
    path = tmp_path / "bold.nii"
    data = np.random.default_rng(1).normal(100, 5, (9, 8, 7, 30)).astype(np.float32)
    nib.Nifti1Image(data, AFFINE).to_filename(path)

    def consume(block: np.ndarray) -> None:
        raise ArithmeticError("the sums overflowed")

    with pytest.raises(ArithmeticError, match="overflowed"):
        stream_masked_series(
            path, np.ones(data.shape[:3], bool), AFFINE, consume, 4.0, in_processes=True
        )


def test_where_no_process_can_be_forked_threads_reduce_the_same(tmp_path, monkeypatch):
    path = tmp_path / "bold.nii.gz"
    data = np.random.default_rng(2).normal(100, 5, (9, 8, 7, 20)).astype(np.float32)
    nib.Nifti1Image(data, AFFINE).to_filename(path)
    mask = np.zeros(data.shape[:3], bool)
    mask[2:7, 2:6, 1:6] = True

    def streamed() -> np.ndarray:
        blocks: list[np.ndarray] = []
        stream_masked_series(
            path, mask, AFFINE, lambda b: blocks.append(b.copy()), 4.0, in_processes=True
        )
        return np.concatenate(blocks)

    forked = streamed()

    def no_fork() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    open_files = len(os.listdir("/proc/self/fd"))
    np.testing.assert_array_equal(streamed(), forked)
    assert len(os.listdir("/proc/self/fd")) == open_files  # the pipes were closed
