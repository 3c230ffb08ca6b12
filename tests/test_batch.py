"""Batch runs: --bids-filter-file, the end-of-run summary, and what the manifest records."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from bids_glm.cli.main import main
from bids_glm.demo.dataset import make_demo_dataset
from bids_glm.errors import AnalysisError, InputError
from bids_glm.inputs.filters import read_bids_filters
from bids_glm.pipeline import batch


@pytest.fixture(scope="module")
def bids(tmp_path_factory) -> Path:
    """Two demo subjects with two runs each."""
    root = tmp_path_factory.mktemp("batch") / "bids"
    make_demo_dataset(root, n_subjects=2, n_runs=2)
    return root


def run(bids: Path, out: Path, *options: str) -> int:
    return main(
        [str(bids), str(out), "participant", "--work-dir", str(out.parent / "work"), *options]
    )


def write_filter(path: Path, content) -> Path:
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_filter_file_selects_runs(bids, tmp_path):
    filters = write_filter(tmp_path / "filters.json", {"bold": {"run": 2}, "t1w": {"run": None}})
    out = tmp_path / "out"
    assert run(bids, out, "--participant-label", "01", "--bids-filter-file", str(filters)) == 0
    designs = sorted(p.name for p in out.rglob("*_design.tsv"))
    assert designs == ["sub-01_task-faces_run-2_space-MNI152NLin2009cAsym_design.tsv"]
    z = out / "sub-01" / "func"
    sidecar = json.loads(
        (
            z / "sub-01_task-faces_space-MNI152NLin2009cAsym_contrast-face_stat-z_statmap.json"
        ).read_text()
    )
    assert len(sidecar["Sources"]) == 1 and "run-2" in sidecar["Sources"][0]


def test_filter_file_subject_list_narrows_participants(bids, tmp_path):
    filters = write_filter(tmp_path / "f.json", {"bold": {"subject": ["sub-02"]}})
    out = tmp_path / "out"
    assert run(bids, out, "--bids-filter-file", str(filters)) == 0
    assert not (out / "sub-01").exists() and (out / "sub-02").is_dir()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{\n  "bold": {"run": 1,}\n}', "not valid JSON (line 2"),
        ({"bold": {"desc": "preproc"}}, "bold.desc: bids-glm sets 'desc' itself"),
        ({"bold": {"run": 1.5}}, "bold.run: expected a string, an integer"),
        ({"bold": {"run": []}}, "bold.run: an empty list selects nothing"),
        ({"bolt": {"run": 1}}, "unknown query 'bolt'"),
        (["bold"], "expected a JSON object"),
    ],
)
def test_bad_filter_files_are_rejected_with_the_field(tmp_path, content, expected):
    path = write_filter(tmp_path / "bad.json", content)
    with pytest.raises(InputError, match="--bids-filter-file") as caught:
        read_bids_filters(path)
    assert expected in str(caught.value)
    assert str(path) in str(caught.value)


def test_unknown_entity_exits_3_naming_it(bids, tmp_path, capsys):
    filters = write_filter(tmp_path / "f.json", {"bold": {"colour": "blue"}})
    out = tmp_path / "out"
    assert run(bids, out, "--participant-label", "01", "--bids-filter-file", str(filters)) == 3
    err = capsys.readouterr().err
    assert "'colour' is not a recognized entity" in err and str(filters) in err
    assert "invalid_filters" not in err  # pybids' internals are not the user's business
    assert not out.exists()


def test_filter_that_matches_nothing_says_so(bids, tmp_path, capsys):
    filters = write_filter(tmp_path / "f.json", {"bold": {"run": 9}})
    assert run(bids, tmp_path / "out", "--bids-filter-file", str(filters)) == 3
    assert f"with --bids-filter-file {filters}" in capsys.readouterr().err


def test_summary_line_and_exit_status():
    done = batch.UnitResult("sub-01_task-a", batch.DONE)
    skipped = batch.UnitResult("sub-02_task-a", batch.SKIPPED, "complete")
    failed = batch.UnitResult("sub-03_task-a", batch.FAILED, "bad events", InputError("bad"))
    line = batch.summary_line([done, skipped, failed])
    assert line == "participant level: 1 done, 1 skipped, 1 failed (sub-03_task-a: bad events)"
    batch.raise_for_failures([done, skipped])
    with pytest.raises(AnalysisError, match="1 of 3 analysis unit"):
        batch.raise_for_failures([done, skipped, failed])
    with pytest.raises(InputError, match="bad"):  # all failed: the error itself (exit 3)
        batch.raise_for_failures([failed])


def test_unusable_events_fail_one_participant_and_the_batch_goes_on(bids, tmp_path, capsys):
    broken = tmp_path / "bids"
    shutil.copytree(bids, broken)
    events = broken / "sub-02" / "func" / "sub-02_task-faces_run-1_events.tsv"
    events.write_text("onset\tduration\ttrial_type\nsoon\t1\tface\n")
    out = tmp_path / "out"
    capsys.readouterr()
    assert run(broken, out, "--skip-bids-validator") == 1
    err = capsys.readouterr().err
    assert "1 done, 0 skipped, 1 failed (sub-02_task-faces_space-MNI152NLin2009cAsym: " in err
    assert "sub-02_task-faces_run-1_events.tsv" in err and "onset" in err
    assert list((out / "sub-01").rglob("*_statmap.nii.gz"))
    assert not (out / "sub-02").exists()


def test_manifest_records_warnings_and_runs_left_out_of_a_contrast(bids, tmp_path):
    edited = tmp_path / "bids"
    shutil.copytree(bids, edited)
    events_path = edited / "sub-01" / "func" / "sub-01_task-faces_run-2_events.tsv"
    events = pd.read_csv(events_path, sep="\t")
    events[events.trial_type != "scrambled"].to_csv(events_path, sep="\t", index=False)
    out = tmp_path / "out"
    assert run(edited, out, "--participant-label", "01", "--skip-bids-validator") == 0
    manifest = json.loads(
        (
            out / "logs" / "manifests" / "sub-01_task-faces_space-MNI152NLin2009cAsym.json"
        ).read_text()
    )
    summary = manifest["Summary"]
    assert summary["RunsExcluded"] == [
        {
            "Run": "sub-01 task-faces run-2",
            "Contrast": "scrambled",
            "Reason": "column(s) scrambled absent from its design",
        }
    ]
    assert any("contrast scrambled skipped" in w for w in summary["Warnings"])
    assert [r["Run"] for r in summary["RunsUsed"]] == [
        "sub-01 task-faces run-1",
        "sub-01 task-faces run-2",
    ]
    for used in summary["RunsUsed"]:
        assert (out / used["Design"]).is_file()
        assert Path(used["EventsPath"]).is_file() and Path(used["ConfoundsPath"]).is_file()
    assert summary["Settings"]["NoiseModel"] == "ar1"
    assert summary["Software"]["numpy"] and summary["ElapsedSeconds"] > 0
    assert (
        summary["CommandLine"].startswith("bids-glm ")
        and "--skip-bids-validator" in (summary["CommandLine"])
    )
