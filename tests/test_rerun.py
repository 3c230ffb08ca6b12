"""Safe, repeatable writing: byte-identical reruns, skip and --overwrite, SIGKILL, job arrays."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import pytest

from bids_glm.cli.main import main
from bids_glm.demo.dataset import make_demo_dataset
from bids_glm.derivatives.manifest import summaries_lock
from bids_glm.derivatives.naming import MANIFEST_FOLDER


@pytest.fixture(scope="module")
def bids(tmp_path_factory) -> Path:
    """Three demo subjects with one run each."""
    root = tmp_path_factory.mktemp("rerun") / "bids"
    make_demo_dataset(root, n_subjects=3, n_runs=1)
    return root


@pytest.fixture(scope="module")
def reference(bids, tmp_path_factory) -> dict[str, bytes]:
    """Outputs of one clean run of every participant: relative path -> bytes."""
    out = tmp_path_factory.mktemp("reference") / "out"
    assert run(bids, out) == 0
    return snapshot(out)


def run(bids: Path, out: Path, *options: str) -> int:
    work = out.parent / f"work{os.getpid()}"
    return main([str(bids), str(out), "participant", "--work-dir", str(work), *options])


def command(bids: Path, out: Path, work: Path, *options: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bids_glm",
        str(bids),
        str(out),
        "participant",
        "--work-dir",
        str(work),
        *options,
    ]


def snapshot(out: Path) -> dict[str, bytes]:
    """Every output's bytes, but the logs and reports (they quote the command line and the
    run's duration)."""
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file()
        and "logs" not in p.relative_to(out).parts
        and p.suffix not in {".html", ".pdf"}
    }


def test_rerun_with_overwrite_is_byte_identical(bids, reference, tmp_path):
    out = tmp_path / "out"
    assert run(bids, out) == 0
    assert run(bids, out, "--overwrite") == 0
    assert snapshot(out) == reference


def test_rerun_skips_complete_participants(bids, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(bids, out, "--participant-label", "01") == 0
    maps = sorted(out.rglob("*_statmap.nii.gz"))
    stamps = [p.stat().st_mtime_ns for p in maps]
    capsys.readouterr()
    assert run(bids, out, "--participant-label", "01") == 0
    assert "outputs complete with the same settings; skipped" in capsys.readouterr().err
    assert [p.stat().st_mtime_ns for p in maps] == stamps
    assert run(bids, out, "--participant-label", "01", "--overwrite") == 0
    assert "settings; skipped" not in capsys.readouterr().err
    assert [p.stat().st_mtime_ns for p in maps] != stamps


def test_changed_settings_redo_the_participant_and_drop_stale_outputs(bids, tmp_path):
    out = tmp_path / "out"
    assert run(bids, out, "--participant-label", "01", "--contrast", "fvh=face - house") == 0
    assert list(out.rglob("*contrast-fvh_*"))
    assert run(bids, out, "--participant-label", "01") == 0
    assert not list(out.rglob("*contrast-fvh_*"))
    manifest = json.loads(next((out / "logs" / "manifests").glob("*.json")).read_text())
    assert all((out / name).is_file() for name in manifest["Outputs"])


def test_sigkill_leaves_no_broken_file_and_a_rerun_repairs(bids, reference, tmp_path):
    out = tmp_path / "out"
    process = subprocess.Popen(
        command(bids, out, tmp_path / "work", "--participant-label", "01", "02", "03"),
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(out.rglob("*_statmap.nii.gz"))) < 5:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = list(out.rglob("*_statmap.nii.gz"))
    assert written, "the process was killed before writing anything"
    for path in written:  # every visible file is complete
        nib.load(path).get_fdata()
    manifests = list((out / "logs" / "manifests").glob("*.json"))
    assert len(manifests) < 3  # the unit being written has none
    assert run(bids, out) == 0
    assert snapshot(out) == reference  # repaired, and no temporary file left behind


def test_three_concurrent_participants_into_one_folder(bids, reference, tmp_path):
    out = tmp_path / "out"
    processes = [
        subprocess.Popen(
            command(bids, out, tmp_path / f"work{label}", "--participant-label", label),
            stderr=subprocess.PIPE,
        )
        for label in ("01", "02", "03")
    ]
    for process in processes:
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err.decode()
    assert snapshot(out) == reference
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert "3 runs of 3 participants" in (out / "logs" / "CITATION.md").read_text()


def test_same_command_twice_gives_the_same_methods_text(bids, tmp_path):
    out = tmp_path / "out"
    texts = []
    for _ in range(2):
        assert run(bids, out, "--participant-label", "01", "--overwrite") == 0
        texts.append({p.name: p.read_bytes() for p in (out / "logs").glob("CITATION.*")})
    assert texts[0] == texts[1] and len(texts[0]) == 4


def test_methods_text_names_the_settings_used(bids, tmp_path):
    plain, custom = tmp_path / "plain" / "out", tmp_path / "custom" / "out"
    assert run(bids, plain, "--participant-label", "01") == 0
    options = ("--participant-label", "01", "--smoothing-fwhm", "5", "--noise-model", "ols")
    assert run(bids, custom, *options) == 0
    plain_text = (plain / "logs" / "CITATION.md").read_text()
    custom_text = (custom / "logs" / "CITATION.md").read_text()
    assert "5 mm full width at half maximum" in custom_text
    assert "5 mm full width at half maximum" not in plain_text
    assert "AR(1)" in plain_text and "AR(1)" not in custom_text
    assert "--smoothing-fwhm 5" in custom_text


def test_a_failing_participant_leaves_no_partial_outputs(bids, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(bids, broken)
    bold = next((broken / "derivatives").rglob("sub-02_*desc-preproc_bold.nii.gz"))
    bold.unlink()  # the raw BOLD is a hard link: truncate a copy, not the shared inode
    bold.write_bytes((bids / bold.relative_to(broken)).read_bytes()[:-50000])
    out = tmp_path / "out"
    capsys.readouterr()
    assert run(broken, out, "--skip-bids-validator") == 1  # some failed, others done
    err = capsys.readouterr().err
    assert "participant level: 2 done, 0 skipped, 1 failed (sub-02_task-" in err
    assert "1 of 3 analysis unit(s) failed: sub-02_task-" in err
    assert list((out / "sub-01").rglob("*_statmap.nii.gz"))  # completed before the failure
    assert list((out / "sub-03").rglob("*_statmap.nii.gz"))  # the batch went on
    assert not list((out / "sub-02").rglob("*.nii.gz"))
    assert not list((out / "sub-02").rglob(".*.tmp"))


def test_methods_text_is_written_under_the_output_lock(tmp_path):
    """While one process rewrites the methods text, another cannot start reading summaries."""
    with summaries_lock(tmp_path):
        other = os.open(tmp_path / MANIFEST_FOLDER, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(other)
    other = os.open(tmp_path / MANIFEST_FOLDER, os.O_RDONLY)
    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when the block ended
    os.close(other)
    assert [p.name for p in (tmp_path / MANIFEST_FOLDER).iterdir()] == []  # no lock file
