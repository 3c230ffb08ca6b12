"""The process's thread budget and malloc settings, as worker processes inherit them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest
from conftest import cgroup_tree

from bids_glm.errors import InputError
from bids_glm.runtime import cgroups
from bids_glm.runtime.threads import MALLOC_SETTINGS, NUMPY_SETTINGS, read_ahead

PROBE = """
import json, os
from bids_glm.runtime.threads import limit_threads, thread_budget
limit_threads(3)
import numpy
names = ["BIDS_GLM_THREADS", "OPENBLAS_NUM_THREADS", *{settings}]
core = getattr(numpy, "_core", None) or numpy.core  # numpy 2 / 1
huge_pages = core.multiarray._get_madvise_hugepage()
print(json.dumps({{"budget": thread_budget(), "huge_pages": huge_pages,
                  **{{n: os.environ.get(n) for n in names}}}}))
"""


def _probe(env: dict) -> dict:
    code = PROBE.format(settings=[*MALLOC_SETTINGS, *NUMPY_SETTINGS])
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_budget_and_malloc_settings_reach_worker_processes():
    env = {k: v for k, v in os.environ.items() if k not in MALLOC_SETTINGS}
    env.pop("OPENBLAS_NUM_THREADS", None)
    env.pop("NUMPY_MADVISE_HUGEPAGE", None)
    seen = _probe(env)
    assert seen["NUMPY_MADVISE_HUGEPAGE"] == "0" and seen["huge_pages"] is False
    assert seen["budget"] == 3 and seen["BIDS_GLM_THREADS"] == "3"
    assert seen["OPENBLAS_NUM_THREADS"] == "1"  # BLAS runs one thread per call of ours
    for variable, (_, value) in MALLOC_SETTINGS.items():
        assert seen[variable] == str(value)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_a_users_malloc_setting_is_kept():
    env = {k: v for k, v in os.environ.items() if k not in MALLOC_SETTINGS}
    env["MALLOC_ARENA_MAX"] = "4"
    env["NUMPY_MADVISE_HUGEPAGE"] = "1"
    seen = _probe(env)
    assert seen["MALLOC_ARENA_MAX"] == "4"
    assert seen["NUMPY_MADVISE_HUGEPAGE"] == "1"
    assert seen["MALLOC_TRIM_THRESHOLD_"] == str(MALLOC_SETTINGS["MALLOC_TRIM_THRESHOLD_"][1])


def test_read_ahead_hands_every_item_in_order_from_another_thread():
    produced_in = set()

    def items():
        for index in range(50):
            produced_in.add(threading.current_thread().name)
            yield index

    assert list(read_ahead(items(), 2, "probe")) == list(range(50))
    assert produced_in == {"bids-glm-probe"}


def test_read_ahead_raises_the_producers_error_where_its_item_was():
    def items():
        yield 1
        yield 2
        raise InputError("run.func.gii: data array 3: damaged")

    got = []
    with pytest.raises(InputError, match="data array 3: damaged"):
        for item in read_ahead(items(), 1, "probe"):
            got.append(item)
    assert got == [1, 2]


def test_read_ahead_stops_its_producer_when_the_caller_stops():
    closed = threading.Event()
    produced = []

    def items():
        try:
            for index in range(1000):
                produced.append(index)
                yield index
        finally:
            closed.set()

    ahead = read_ahead(items(), 2, "probe")
    assert next(ahead) == 0
    ahead.close()
    assert closed.is_set()  # the producer closed its source before the caller went on
    assert len(produced) <= 4  # one taken, at most two waiting, one being handed over
    assert not any(t.name == "bids-glm-probe" for t in threading.enumerate())


def test_a_cpu_quota_counts_in_whole_cores_the_smallest_on_the_path(tmp_path):
    # v2 (docker run --cpus 1.5 inside a group allowing 4): cpu.max is "quota period"
    proc, root = cgroup_tree(
        tmp_path / "v2",
        ["0::/kubepods/pod1/ctr"],
        {
            "cpu.max": "max 100000",
            "kubepods/pod1/cpu.max": "400000 100000",
            "kubepods/pod1/ctr/cpu.max": "150000 100000",
        },
    )
    assert cgroups.cpu_quota_cores(proc, root) == 2  # 1.5 cores' worth: 2 threads
    # v1: quota and period in two files of the cpu hierarchy; -1 is no quota
    proc, root = cgroup_tree(
        tmp_path / "v1",
        ["5:cpu,cpuacct:/docker/abc", "4:memory:/docker/abc"],
        {
            "cpu/cpu.cfs_quota_us": "-1",
            "cpu/cpu.cfs_period_us": "100000",
            "cpu/docker/abc/cpu.cfs_quota_us": "50000",
            "cpu/docker/abc/cpu.cfs_period_us": "100000",
        },
    )
    assert cgroups.cpu_quota_cores(proc, root) == 1
    proc, root = cgroup_tree(tmp_path / "none", ["0::/"], {"cpu.max": "max 100000"})
    assert cgroups.cpu_quota_cores(proc, root) is None
    assert cgroups.cpu_quota_cores(tmp_path / "absent", root) is None


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="CPU affinity is Linux's")
def test_available_cores_are_the_affinity_within_the_quota(monkeypatch):
    from bids_glm.runtime import threads

    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5})
    monkeypatch.setattr(threads, "cpu_quota_cores", lambda: None)
    assert threads.available_cores() == 6
    monkeypatch.setattr(threads, "cpu_quota_cores", lambda: 2)
    assert threads.available_cores() == 2
    monkeypatch.setattr(threads, "cpu_quota_cores", lambda: 16)
    assert threads.available_cores() == 6
