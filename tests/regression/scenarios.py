"""The runs whose outputs are pinned by ``tests/data/baseline_outputs.json.gz``.

Each scenario generates a demo dataset, runs the participant level (and the group level)
through the command line in subprocesses, and fingerprints every output. The stored baseline
was produced by ``python -m tests.regression.make_baseline`` on the code before the package
redesign (commit 493d34a); ``tests/test_regression_baseline.py`` reruns the same scenarios and
compares.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .fingerprint import tree_fingerprint

BASELINE = Path(__file__).resolve().parents[1] / "data" / "baseline_outputs.json.gz"
ENVIRONMENT = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


@dataclass(frozen=True)
class Scenario:
    """One demo dataset and the bids-glm commands run on it."""

    name: str
    demo_args: tuple[str, ...]
    participant_args: tuple[str, ...]
    group_args: tuple[str, ...] = ()
    model_rerun_args: tuple[str, ...] | None = None


SCENARIOS = (
    Scenario(
        name="demo",
        demo_args=(),
        participant_args=("--contrast", "faceVsHouse=face - house", "--no-pdf"),
        group_args=("--no-pdf",),
    ),
    Scenario(
        name="confounds_smoothing_ar1",
        demo_args=("--subjects", "4", "--seed", "3"),
        participant_args=(
            "--confounds", "motion6", "wm_csf", "scrub:FD=0.5",
            "--smoothing-fwhm", "6",
            "--noise-model", "ar1",
            "--hrf-model", "spm + derivative",
            "--contrast", "faceVsHouse=face - house",
            "--f-contrast", "effects=face; house",
            "--model-maps",
            "--dummy-scans", "2",
            "--mask-combine", "union",
            "--no-pdf",
        ),
        group_args=("--group-covariates", "age", "--no-pdf"),
        model_rerun_args=("--participant-label", "01", "--no-reports"),
    ),
)  # fmt: skip


def _run(command: list[str], cwd: Path) -> None:
    environment = {**os.environ, **ENVIRONMENT}
    done = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{command} exited {done.returncode}:\n{done.stderr[-3000:]}")


def run_scenario(scenario: Scenario, root: Path) -> dict:
    """Run one scenario under ``root``; return the fingerprints of its output trees."""
    bids_glm = [sys.executable, "-m", "bids_glm"]
    demo = [str(Path(sys.executable).parent / "bids-glm-demo")]
    _run([*demo, str(root / "demo"), "--no-run", *scenario.demo_args], root)
    bids, out, work = root / "demo" / "bids", root / "out", root / "work"
    common = ["--work-dir", str(work), "--n-cpus", "1"]
    for level, level_args in (
        ("participant", scenario.participant_args),
        ("group", scenario.group_args),
    ):
        _run([*bids_glm, str(bids), str(out), level, *common, *level_args], root)
    trees = {"out": tree_fingerprint(out, root)}
    if scenario.model_rerun_args is not None:
        rerun = root / "out_model"
        model = out / "model-bidsglm_smdl.json"
        command = [*bids_glm, str(bids), str(rerun), "participant", *common, "--model", str(model)]
        _run([*command, *scenario.model_rerun_args], root)
        trees["out_model"] = tree_fingerprint(rerun, root)
    return trees
