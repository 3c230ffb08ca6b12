"""Shared fixtures: tiny hand-made BIDS datasets for discovery and CLI tests."""

from __future__ import annotations

import os
import sys

# Tests run the CLI both in this process and in subprocesses and compare bytes; BLAS results
# can differ in the last bit between thread counts, so use one thread everywhere, as the CLI
# does by default (--n-cpus 1). Must happen before numpy is first imported.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"
assert "numpy" not in sys.modules, "numpy was imported before tests/conftest.py"

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import settings as hypothesis_settings

from bids_glm.settings import Settings

# With $CI set (.ci/run sets it, as CI services do), property tests replay the same examples
# on every run, so landing never hangs on a new random example; local runs keep exploring
# fresh ones (a random example found the grid-rounding tie in tests/test_design_matrix.py).
hypothesis_settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

REPO_ROOT = Path(__file__).resolve().parents[1]
REALDATA = REPO_ROOT.parent / "shared" / "realdata"
SPACE = "MNI152NLin2009cAsym"


def write_json(path: Path, document: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2))


def write_bold(path: Path, data: np.ndarray, tr_s: float, affine=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(data, np.diag([3.0, 3.0, 3.0, 1.0]) if affine is None else affine)
    image.header.set_xyzt_units("mm", "sec")
    zooms = image.header.get_zooms()
    image.header.set_zooms((*zooms[:3], tr_s))
    image.to_filename(path)


def cgroup_tree(root: Path, proc_lines: list[str], files: dict[str, str]) -> tuple[Path, Path]:
    """A fake ``/proc/self/cgroup`` (``proc_lines``) and ``/sys/fs/cgroup`` holding ``files``
    (path under it -> text), under ``root``; returns both paths."""
    root.mkdir(parents=True, exist_ok=True)
    proc = root / "cgroup"
    proc.write_text("\n".join(proc_lines) + "\n")
    mounted = root / "sys"
    for relative, text in files.items():
        (mounted / relative).parent.mkdir(parents=True, exist_ok=True)
        (mounted / relative).write_text(text + "\n")
    return proc, mounted


def make_tiny_dataset(
    root: Path,
    subjects=("01",),
    runs=("1",),
    task="tiny",
    shape=(6, 7, 5),
    n_volumes=30,
    tr_s=2.0,
    derivative_run_label=None,
    root_level_events=False,
    sessions=(),
    seed=0,
) -> Path:
    """Write a minimal raw dataset plus fMRIPrep-like derivatives under ``root``.

    ``derivative_run_label`` lets the derivatives spell run labels differently from the
    raw data (e.g. raw ``run-1``, derivatives ``run-01``).
    """
    rng = np.random.default_rng(seed)
    write_json(root / "dataset_description.json", {"Name": "tiny", "BIDSVersion": "1.9.0"})
    write_json(root / f"task-{task}_bold.json", {"RepetitionTime": tr_s, "TaskName": task})
    fmriprep = root / "derivatives" / "fmriprep"
    write_json(
        fmriprep / "dataset_description.json",
        {
            "Name": "fmriprep-like",
            "BIDSVersion": "1.9.0",
            "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "fMRIPrep-like test fixture"}],
        },
    )
    events = "onset\tduration\ttrial_type\n2\t4\ta\n20\t4\tb\n34\t4\ta\n44\t2\tb\n"
    if root_level_events:
        (root / f"task-{task}_events.tsv").write_text(events)
    mask = np.zeros(shape, dtype=np.uint8)
    mask[1:-1, 1:-1, 1:-1] = 1
    baseline = np.where(mask[..., None] > 0, 1000.0, 30.0)  # brain and dim background
    for subject in subjects:
        for session in sessions or (None,):
            for run in runs:
                ses = f"_ses-{session}" if session else ""
                ses_dir = f"ses-{session}/" if session else ""
                raw_name = f"sub-{subject}{ses}_task-{task}_run-{run}"
                func = root / f"sub-{subject}" / ses_dir / "func"
                data = (baseline + rng.normal(0, 10, (*shape, n_volumes))).astype(np.float32)
                write_bold(func / f"{raw_name}_bold.nii.gz", data, tr_s)
                if not root_level_events:
                    (func / f"{raw_name}_events.tsv").write_text(events)
                deriv_run = derivative_run_label(run) if derivative_run_label else run
                stem = f"sub-{subject}{ses}_task-{task}_run-{deriv_run}"
                dfunc = fmriprep / f"sub-{subject}" / ses_dir / "func"
                write_bold(dfunc / f"{stem}_space-{SPACE}_desc-preproc_bold.nii.gz", data, tr_s)
                write_json(
                    dfunc / f"{stem}_space-{SPACE}_desc-preproc_bold.json",
                    {"RepetitionTime": tr_s, "SkullStripped": False},
                )
                nib.Nifti1Image(mask, np.diag([3.0, 3.0, 3.0, 1.0])).to_filename(
                    dfunc / f"{stem}_space-{SPACE}_desc-brain_mask.nii.gz"
                )
                confounds = "trans_x\tframewise_displacement\n" + "".join(
                    f"{rng.normal():.4f}\t{'n/a' if t == 0 else abs(rng.normal()):}\n"
                    for t in range(n_volumes)
                )
                (dfunc / f"{stem}_desc-confounds_timeseries.tsv").write_text(confounds)
    return root


def settings_for(bids: Path, tmp_path: Path, **kwargs) -> Settings:
    """Participant-level settings for a dataset made by :func:`make_tiny_dataset`."""
    defaults = {
        "bids_dir": bids,
        "output_dir": tmp_path / "out",
        "analysis_level": "participant",
        "work_dir": tmp_path / "work",
        "derivatives": (bids / "derivatives" / "fmriprep",),
    }
    return Settings(**{**defaults, **kwargs})


def tree_digest(root: Path) -> str:
    """Hash of every file's relative path, bytes and mode under ``root``."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(oct(path.lstat().st_mode).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def make_read_only(root: Path) -> None:
    """Remove write permission from every file and folder under ``root``."""
    for path in [*root.rglob("*"), root]:
        mode = path.stat().st_mode
        os.chmod(path, mode & ~0o222)


def make_writable(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        os.chmod(path, path.stat().st_mode | 0o200)


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    return make_tiny_dataset(tmp_path / "bids")
