"""Issue 17, items 2 and 3, beyond the corpus: several participants, the run's mix of
good and bad sidecars, and the redefinition of a condition's own contrast."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_tiny_dataset, tree_digest

from bids_glm.cli.main import main
from bids_glm.inputs.sidecars import read_json_object

SPACE = "MNI152NLin2009cAsym"


def _run(bids: Path, out: Path, *extra: str) -> int:
    return main([str(bids), str(out), "participant", "--no-reports", *extra])


def test_a_participant_without_conditions_fails_alone(tmp_path, capsys):
    bids = make_tiny_dataset(tmp_path / "bids", subjects=("01", "02"))
    events = bids / "sub-02" / "func" / "sub-02_task-tiny_run-1_events.tsv"
    events.write_text("onset\tduration\ttrial_type\n2\t4\tn/a\n")
    code = _run(bids, tmp_path / "out")
    err = capsys.readouterr().err
    assert code == 1  # one of two units failed: an analysis failure, not an input error
    assert str(events) in err and "no condition to model" in err
    assert list((tmp_path / "out" / "sub-01").rglob("*_statmap.nii.gz"))
    assert not list((tmp_path / "out" / "sub-02").rglob("*.nii.gz"))


def test_every_participant_without_conditions_is_exit_3(tmp_path, capsys):
    bids = make_tiny_dataset(tmp_path / "bids", subjects=("01", "02"))
    for label in ("01", "02"):
        path = bids / f"sub-{label}" / "func" / f"sub-{label}_task-tiny_run-1_events.tsv"
        path.write_text("onset\tduration\ttrial_type\n")
    assert _run(bids, tmp_path / "out") == 3
    assert "no condition to model" in capsys.readouterr().err


def test_one_run_without_conditions_fails_its_participant(tmp_path, capsys):
    bids = make_tiny_dataset(tmp_path / "bids", runs=("1", "2"))
    events = bids / "sub-01" / "func" / "sub-01_task-tiny_run-2_events.tsv"
    events.write_text("onset\tduration\ttrial_type\n2\t4\tn/a\n")
    assert _run(bids, tmp_path / "out") == 3
    assert str(events) in capsys.readouterr().err


def test_bad_sidecar_of_another_participant_is_only_a_warning(tmp_path, capsys):
    bids = make_tiny_dataset(tmp_path / "bids", subjects=("01", "02"))
    bad = _derivative(bids, "02", "run-1", "desc-preproc_bold.json")
    bad.write_text("")
    before = tree_digest(bids)
    assert _run(bids, tmp_path / "out", "--participant-label", "01") == 0
    assert tree_digest(bids) == before
    # sub-02 is not indexed at all: its sidecar is neither read nor reported
    assert str(bad) not in capsys.readouterr().err


def test_a_needed_sidecar_that_is_unreadable_fails_its_participant_alone(tmp_path, capsys):
    bids = make_tiny_dataset(tmp_path / "bids", subjects=("01", "02", "03"))
    bad = _derivative(bids, "02", "run-1", "desc-preproc_bold.json")
    bad.write_text("")
    before = tree_digest(bids)
    assert _run(bids, tmp_path / "out") == 1  # one of three units failed
    assert tree_digest(bids) == before
    err = capsys.readouterr().err
    assert str(bad) in err and "empty file" in err and "RepetitionTime" in err
    assert "1 of 3 analysis unit(s) failed: sub-02_task-tiny" in err
    for label in ("01", "03"):
        assert list((tmp_path / "out" / f"sub-{label}").rglob("*_statmap.nii.gz"))
    assert not (tmp_path / "out" / "sub-02").exists()


def test_an_unreadable_bold_fails_its_participant_alone(tmp_path, capsys):
    bids = make_tiny_dataset(tmp_path / "bids", subjects=("01", "02"))
    bold = _derivative(bids, "01", "run-1", "desc-preproc_bold.nii.gz")
    bold.write_bytes(bold.read_bytes()[:100])  # a truncated download
    assert _run(bids, tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert str(bold) in err and "not a readable NIfTI image" in err
    assert list((tmp_path / "out" / "sub-02").rglob("*_statmap.nii.gz"))
    assert not (tmp_path / "out" / "sub-01").exists()


def test_a_run_without_repetition_time_fails_its_whole_unit(tmp_path, capsys):
    """Fixed effects over the other run only would be another analysis: the unit fails."""
    bids = make_tiny_dataset(tmp_path / "bids", runs=("1", "2"))
    sidecar = _derivative(bids, "01", "run-2", "desc-preproc_bold.json")
    sidecar.write_text(json.dumps({"RepetitionTime": "two seconds"}))
    assert _run(bids, tmp_path / "out", "--dry-run") == 3
    assert _run(bids, tmp_path / "out") == 3  # the only unit failed: unusable input
    err = capsys.readouterr().err
    assert "run-2" in err and "'two seconds'" in err and "expected a number of seconds" in err
    assert "its 1 other run(s) are not analysed either" in err
    assert not list((tmp_path / "out").rglob("*.nii.gz"))


def _derivative(bids: Path, label: str, run: str, suffix: str) -> Path:
    """A file of the tiny dataset's fMRIPrep derivatives."""
    func = bids / "derivatives" / "fmriprep" / f"sub-{label}" / "func"
    return func / f"sub-{label}_task-tiny_{run}_space-{SPACE}_{suffix}"


def test_bad_json_beside_a_good_sidecar_keeps_the_metadata(tmp_path, capsys):
    """An empty JSON elsewhere in the derivatives leaves the run's TR and StartTime read."""
    bids = make_tiny_dataset(tmp_path / "bids")
    func = bids / "derivatives" / "fmriprep" / "sub-01" / "func"
    sidecar = func / f"sub-01_task-tiny_run-1_space-{SPACE}_desc-preproc_bold.json"
    sidecar.write_text(json.dumps({"RepetitionTime": 2.0, "StartTime": 1.0}))
    (func / f"sub-01_task-tiny_run-1_space-{SPACE}_desc-brain_mask.json").write_text("")
    assert _run(bids, tmp_path / "out", "--dry-run") == 0
    captured = capsys.readouterr()
    assert "desc-brain_mask.json: empty file" in captured.err
    design = next((tmp_path / "out").rglob("*_design.json"))
    assert json.loads(design.read_text())["SliceTimeRef"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty file"),
        ("  \n", "empty file"),
        ("{", "invalid JSON"),
        ("[1]", "a JSON list"),
        ('"x"', "a JSON str"),
        ('{"RepetitionTime": 2}', None),
        ('\ufeff{"a": 1}', None),
    ],
)
def test_json_problem(tmp_path, text, problem):
    path = tmp_path / "x.json"
    path.write_text(text, encoding="utf-8")
    document, found = read_json_object(path)
    assert (found is None) if problem is None else (problem in found)
    assert (document is None) == (problem is not None)


def test_own_contrast_redefined_with_same_weights_is_the_same_outputs(tmp_path):
    bids = make_tiny_dataset(tmp_path / "bids")
    assert _run(bids, tmp_path / "plain") == 0
    assert _run(bids, tmp_path / "same", "--contrast", "a=a", "--contrast", "b = 1.0*b") == 0
    names = sorted(p.name for p in (tmp_path / "plain").rglob("*_statmap.nii.gz"))
    assert names == sorted(p.name for p in (tmp_path / "same").rglob("*_statmap.nii.gz"))
    for name in names:
        left = next((tmp_path / "plain").rglob(name)).read_bytes()
        assert left == next((tmp_path / "same").rglob(name)).read_bytes()


@pytest.mark.parametrize(
    "option", [("--contrast", "a=2*a"), ("--contrast", "a=a-b"), ("--f-contrast", "a=a")]
)
def test_own_contrast_redefined_differently_is_refused(tmp_path, capsys, option):
    bids = make_tiny_dataset(tmp_path / "bids")
    assert _run(bids, tmp_path / "out", "--dry-run", *option) == 3
    err = capsys.readouterr().err
    assert "already the condition a's own contrast" in err and "other weights" in err


def test_disk_full_leaves_nothing_partial(tmp_path, monkeypatch, capsys):
    import errno
    import os

    from bids_glm.derivatives import files

    bids = make_tiny_dataset(tmp_path / "bids")
    real_write, calls = files._write_payload, []

    def write(stream, payload):
        calls.append(stream.name)
        if len(calls) == 8:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(stream, payload)

    monkeypatch.setattr(files, "_write_payload", write)
    out = tmp_path / "out"
    assert _run(bids, out) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and str(out) in err
    assert not [p for p in out.rglob("*") if p.is_file() and p.suffix in (".gz", ".tsv")]
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert not (out / "logs" / "manifests").exists() or not list(
        (out / "logs" / "manifests").glob("*.json")
    )


def test_bad_sidecar_holding_the_only_tr_is_named(tmp_path, capsys):
    """Without a TR elsewhere, the message still names the unreadable sidecar."""
    bids = make_tiny_dataset(tmp_path / "bids")
    (bids / "task-tiny_bold.json").write_text('{"RepetitionTime": 2.0,}')
    func = bids / "derivatives" / "fmriprep" / "sub-01" / "func"
    (func / f"sub-01_task-tiny_run-1_space-{SPACE}_desc-preproc_bold.json").write_text("{}")
    assert _run(bids, tmp_path / "out") == 3
    err = capsys.readouterr().err
    assert f"{bids / 'task-tiny_bold.json'}: invalid JSON" in err and "line 1" in err
