"""The official BIDS validator (bids-validator-deno, a test extra) accepts the outputs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bids_glm.cli.main import main
from bids_glm.demo.dataset import make_demo_dataset


def _validate(folder) -> dict:
    beside_python = Path(sys.executable).with_name("bids-validator-deno")
    executable = shutil.which("bids-validator-deno") or (
        str(beside_python) if beside_python.exists() else None
    )
    if executable is None:
        pytest.skip("bids-validator-deno is not installed")
    result = subprocess.run(
        [executable, str(folder), "--json"], capture_output=True, text=True, timeout=600
    )
    return json.loads(result.stdout)


def _errors(report: dict) -> list[str]:
    return [
        f"{issue['code']}: {issue.get('location', '')}"
        for issue in report["issues"]["issues"]
        if issue["severity"] == "error"
    ]


def test_outputs_of_the_demo_have_no_validator_errors(tmp_path):
    bids = tmp_path / "bids"
    make_demo_dataset(bids, n_subjects=1, n_runs=1)
    assert _errors(_validate(bids)) == []  # the input is valid to begin with
    out = tmp_path / "out"
    assert main([str(bids), str(out), "participant", "--work-dir", str(tmp_path / "w")]) == 0
    assert _errors(_validate(out)) == []
    # the check has teeth: an output the specification does not allow is reported
    (out / "sub-01" / "func" / "sub-01_task-faces_notbids.txt").write_text("x")
    assert _errors(_validate(out))
