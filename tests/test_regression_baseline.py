"""Outputs equal those of the code before the package redesign (names, maps to 1e-6, TSV, JSON).

The baseline (``tests/data/baseline_outputs.json.gz``) holds fingerprints of every file
written by the scenarios in ``tests/regression/scenarios.py`` (participant and group levels
on the demo, and on a demo with confounds, scrubbing, smoothing, AR(1), an F contrast,
model maps, and a rerun from the effective BIDS Stats Model), produced with commit 493d34a.
"""

from __future__ import annotations

import gzip
import json

import pytest
from regression.fingerprint import compare
from regression.scenarios import BASELINE, SCENARIOS, run_scenario


@pytest.fixture(scope="module")
def baseline() -> dict:
    with gzip.open(BASELINE, "rt") as stream:
        return json.load(stream)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_outputs_equal_the_baseline(scenario, baseline, tmp_path):
    actual = run_scenario(scenario, tmp_path)
    problems = compare(baseline[scenario.name], actual, scenario.name)
    assert not problems, "\n".join(problems[:40])


def test_a_changed_map_is_noticed(baseline):
    """The comparison is strict enough to see a 1e-5 relative change in one sampled voxel."""
    tree = baseline["demo"]["out"]
    name = next(n for n in tree if n.endswith("_stat-z_statmap.nii.gz"))
    changed = json.loads(json.dumps(tree[name]))
    changed["nifti"]["sample_value"][3] *= 1 + 1e-5
    assert compare(tree[name], changed)
    assert not compare(tree[name], json.loads(json.dumps(tree[name])))
