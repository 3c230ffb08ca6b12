"""Discovery in a forked child: same runs, same log records, same errors as in place."""

from __future__ import annotations

import logging
import os
import threading
import time

import pytest
from conftest import make_tiny_dataset
from test_inputs import settings_for

from bids_glm.errors import InputError
from bids_glm.inputs.discovery import start_discovery
from bids_glm.inputs.layout import discover_runs
from bids_glm.runtime import forked_call
from bids_glm.runtime.forked_call import can_fork
from bids_glm.runtime.threads import THREADS_VARIABLE

pytestmark = pytest.mark.skipif(not can_fork(), reason="forking is used on Linux only")


@pytest.fixture(autouse=True)
def two_cores(monkeypatch):
    """A thread budget with a core to spare, where discovery is forked (`--n-cpus 2`)."""
    monkeypatch.setenv(THREADS_VARIABLE, "2")


@pytest.fixture
def bids_glm_records():
    """Records reaching the ``bids_glm`` logger's handlers, at INFO."""
    logger = logging.getLogger("bids_glm")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    saved = logger.handlers[:], logger.level, logger.propagate
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield records
    logger.handlers[:], logger.level, logger.propagate = saved


def test_forked_discovery_equals_discovery_in_place(tmp_path, bids_glm_records):
    bids = make_tiny_dataset(tmp_path / "bids", subjects=("01", "02"), runs=("1", "2"))
    (bids / "sub-02" / "func" / "sub-02_task-tiny_run-2_events.tsv").unlink()
    (bids / "sub-01" / "func" / "sub-01_task-tiny_notes.txt").write_text("not BIDS\n")
    settings = settings_for(bids, tmp_path)
    pending = start_discovery(settings)
    assert pending.child is not None  # really forked
    forked = pending.result()
    forked_log = [(r.levelno, r.getMessage()) for r in bids_glm_records]
    bids_glm_records.clear()
    in_place = discover_runs(settings)
    assert forked == in_place and len(forked.runs) == 4 and not forked.failures
    assert forked_log == [(r.levelno, r.getMessage()) for r in bids_glm_records]
    messages = [message for _, message in forked_log]
    assert "do not follow BIDS naming" in messages[0]  # checked first, by the child
    assert any("no events.tsv applies" in message for message in messages)
    assert threading.active_count() == 1


def test_a_failed_run_found_by_the_child_reaches_the_parent(tmp_path):
    bids = make_tiny_dataset(tmp_path / "bids", subjects=("01", "02"))
    func = bids / "derivatives" / "fmriprep" / "sub-02" / "func"
    (bold,) = func.glob("*_desc-preproc_bold.nii.gz")
    bold.write_bytes(bold.read_bytes()[:100])  # a truncated header
    settings = settings_for(bids, tmp_path)
    pending = start_discovery(settings)
    assert pending.child is not None
    forked = pending.result()
    assert forked == discover_runs(settings)
    assert [run.subject for run in forked.runs] == ["01"]
    (failure,) = forked.failures
    assert failure.bold_path == bold and failure.entities["sub"] == "02"
    assert str(bold) in failure.reason and "not a readable NIfTI image" in failure.reason


def test_an_input_error_in_the_child_is_raised_by_the_parent(tmp_path):
    bids = make_tiny_dataset(tmp_path / "bids")
    settings = settings_for(bids, tmp_path, tasks=("absent",))
    with pytest.raises(InputError) as in_place:
        discover_runs(settings)
    pending = start_discovery(settings)
    with pytest.raises(InputError) as forked:
        pending.result()
    assert str(forked.value) == str(in_place.value)


def test_without_fork_discovery_runs_when_asked(tmp_path, monkeypatch):
    bids = make_tiny_dataset(tmp_path / "bids")
    monkeypatch.setattr(forked_call, "can_fork", lambda: False)
    pending = start_discovery(settings_for(bids, tmp_path))
    assert pending.child is None
    assert pending.result() == discover_runs(settings_for(bids, tmp_path))


def test_with_no_core_to_spare_discovery_runs_in_place(tmp_path, monkeypatch):
    """``--n-cpus 1`` keeps a run to one core: no child, the same runs."""
    bids = make_tiny_dataset(tmp_path / "bids", runs=("1", "2"))
    monkeypatch.setenv(THREADS_VARIABLE, "1")
    pending = start_discovery(settings_for(bids, tmp_path))
    assert pending.child is None
    assert forked_call.start_forked_call(bytes, 8) is None
    found = pending.result()
    assert found == discover_runs(settings_for(bids, tmp_path)) and len(found.runs) == 2


def test_a_dataset_error_found_by_the_child_is_raised_by_the_parent(tmp_path):
    bids = make_tiny_dataset(tmp_path / "bids")
    (bids / "dataset_description.json").unlink()
    pending = start_discovery(settings_for(bids, tmp_path))
    assert pending.child is not None
    with pytest.raises(InputError, match=r"dataset_description\.json: missing"):
        pending.result()
    assert pending.child is None  # reaped


def test_a_child_with_a_large_result_exits_before_it_is_read():
    call = forked_call.start_forked_call(bytes, 600_000)
    assert call is not None
    deadline = time.monotonic() + 60
    while os.waitpid(call.pid, os.WNOHANG) == (0, 0):  # reaps it once it has exited
        assert time.monotonic() < deadline, "the child waits for its result to be read"
        time.sleep(0.01)
    assert call.result() == (True, bytes(600_000))
    assert call.result() == (False, None)  # taken once
