"""The process's thread budget and malloc settings, as worker processes inherit them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bids_glm.runtime.threads import MALLOC_SETTINGS

PROBE = """
import json, os
from bids_glm.runtime.threads import limit_threads, thread_budget
limit_threads(3)
names = ["BIDS_GLM_THREADS", "OPENBLAS_NUM_THREADS", *{settings}]
print(json.dumps({{"budget": thread_budget(), **{{n: os.environ.get(n) for n in names}}}}))
"""


def _probe(env: dict) -> dict:
    code = PROBE.format(settings=list(MALLOC_SETTINGS))
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_budget_and_malloc_settings_reach_worker_processes():
    env = {k: v for k, v in os.environ.items() if k not in MALLOC_SETTINGS}
    env.pop("OPENBLAS_NUM_THREADS", None)
    seen = _probe(env)
    assert seen["budget"] == 3 and seen["BIDS_GLM_THREADS"] == "3"
    assert seen["OPENBLAS_NUM_THREADS"] == "1"  # BLAS runs one thread per call of ours
    for variable, (_, value) in MALLOC_SETTINGS.items():
        assert seen[variable] == str(value)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_a_users_malloc_setting_is_kept():
    env = {k: v for k, v in os.environ.items() if k not in MALLOC_SETTINGS}
    env["MALLOC_ARENA_MAX"] = "4"
    seen = _probe(env)
    assert seen["MALLOC_ARENA_MAX"] == "4"
    assert seen["MALLOC_TRIM_THRESHOLD_"] == str(MALLOC_SETTINGS["MALLOC_TRIM_THRESHOLD_"][1])
