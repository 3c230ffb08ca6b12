"""Progress lines of long work (`bids_glm.runtime.progress`), and a run's as it is read."""

from __future__ import annotations

import logging
import re

import nibabel as nib
import numpy as np
import pytest

from bids_glm.image.io import read_masked_series
from bids_glm.image.stream import stream_masked_series
from bids_glm.runtime import progress
from bids_glm.runtime.progress import Progress


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bids_glm"]


def test_one_line_per_interval_with_the_time_to_go(caplog):
    clock = _Clock()
    caplog.set_level(logging.INFO, logger="bids_glm")
    work = Progress("bold.nii.gz", 1000, "volumes read", interval_s=10.0, clock=clock)
    clock.now += 9.9
    work.update(240)  # within the first interval: nothing yet
    assert _lines(caplog) == []
    clock.now += 0.1
    work.update(250)  # 10 s for 250 volumes: 30 s for the 750 left
    clock.now += 5.0
    work.update(400)  # 5 s after the last line: nothing
    clock.now += 10.0
    work.update(999)
    assert _lines(caplog) == [
        "bold.nii.gz: 250 of 1000 volumes read (25%), about 30 s to go",
        "bold.nii.gz: 999 of 1000 volumes read (99%), about 0 s to go",
    ]


def test_the_last_item_and_short_work_log_nothing(caplog):
    clock = _Clock()
    caplog.set_level(logging.INFO, logger="bids_glm")
    work = Progress("x", 3, "volumes read", interval_s=10.0, clock=clock)
    clock.now += 60.0
    work.update(3)  # done: the work's own end says so
    quick = Progress("y", 500, "volumes read", interval_s=10.0, clock=clock)
    for done in range(1, 501):
        quick.update(done)  # the clock does not move: all within one interval
    assert _lines(caplog) == []


def test_advance_adds_items_finished_in_any_thread(caplog):
    from concurrent.futures import ThreadPoolExecutor

    clock = _Clock()
    caplog.set_level(logging.INFO, logger="bids_glm")
    work = Progress("fit", 4096 * 8, "voxels fitted", interval_s=10.0, clock=clock)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(work.advance, [4096] * 7))
    clock.now += 10.0
    work.advance(100)  # the total so far, whichever thread finished what
    assert _lines(caplog) == ["fit: 28772 of 32768 voxels fitted (87%), about 1 s to go"]


@pytest.mark.parametrize("streamed", [True, False])
def test_a_run_reports_volumes_read_in_order(tmp_path, monkeypatch, caplog, streamed):
    """Streamed (summed as read) or held (`read_masked_series`, in threads)."""
    monkeypatch.setattr(progress, "PROGRESS_INTERVAL_S", 0.0)  # a line for every volume
    caplog.set_level(logging.INFO, logger="bids_glm")
    data = np.random.default_rng(2).normal(100, 5, (6, 5, 4, 12)).astype(np.float32)
    path = tmp_path / "sub-01_bold.nii.gz"
    nib.Nifti1Image(data, np.eye(4)).to_filename(path)
    keep = np.ones(12, bool)
    keep[[3, 7]] = False
    mask = np.ones((6, 5, 4), bool)
    if streamed:
        stream_masked_series(path, mask, np.eye(4), lambda block: None, keep_volumes=keep)
    else:
        read_masked_series(path, mask, np.eye(4), keep_volumes=keep, n_threads=2)
    counts = [
        int(m.group(1))
        for line in _lines(caplog)
        if (m := re.match(r"sub-01_bold\.nii\.gz: (\d+) of 10 volumes read", line))
    ]
    assert counts == list(range(1, 10))  # kept volumes only; none for the last
