"""Discovery with pybids: runs, inheritance, run-label padding, TR sources, errors."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from conftest import SPACE, make_tiny_dataset, settings_for, write_json

from bids_glm.errors import InputError
from bids_glm.inputs.entities import applicable_files, split_name
from bids_glm.inputs.layout import discover_runs


def test_split_name_keeps_padding_and_suffix():
    entities, suffix, ext = split_name("sub-01_task-x_run-01_space-MNI_desc-preproc_bold.nii.gz")
    assert entities == {"sub": "01", "task": "x", "run": "01", "space": "MNI", "desc": "preproc"}
    assert (suffix, ext) == ("bold", ".nii.gz")


def test_inheritance_prefers_the_most_specific_file(tmp_path):
    root = tmp_path
    func = root / "sub-01" / "func"
    func.mkdir(parents=True)
    top = root / "task-x_events.tsv"
    subject_level = root / "sub-01" / "sub-01_task-x_events.tsv"
    run_level = func / "sub-01_task-x_run-1_events.tsv"
    other_run = func / "sub-01_task-x_run-2_events.tsv"
    for path in (top, subject_level, run_level, other_run):
        path.write_text("onset\tduration\n")
    run = {"sub": "01", "task": "x", "run": "01"}
    chosen = applicable_files([other_run, run_level, top, subject_level], run, root, func)
    assert chosen == [top, subject_level, run_level]


def test_discovers_runs_and_matches_padded_run_labels(tmp_path):
    bids = make_tiny_dataset(
        tmp_path / "bids", runs=("1", "2"), derivative_run_label=lambda r: f"0{r}"
    )
    runs = discover_runs(settings_for(bids, tmp_path)).runs
    assert [r.entities["run"] for r in runs] == ["01", "02"]
    for run, raw_label in zip(runs, ("1", "2"), strict=True):
        assert run.events_path.name == f"sub-01_task-tiny_run-{raw_label}_events.tsv"
        assert run.mask_path.name.endswith(
            f"run-{run.entities['run']}_space-{SPACE}_desc-brain_mask.nii.gz"
        )
        assert run.confounds_path.name.endswith("desc-confounds_timeseries.tsv")
        assert run.tr_s == 2.0
        assert run.n_volumes == 30
        assert run.space == SPACE


def test_root_level_events_are_inherited(tmp_path):
    bids = make_tiny_dataset(tmp_path / "bids", root_level_events=True)
    (run,) = discover_runs(settings_for(bids, tmp_path)).runs
    assert run.events_path == bids / "task-tiny_events.tsv"


def test_only_requested_participants_are_indexed_and_nothing_written_to_input(tmp_path):
    bids = make_tiny_dataset(tmp_path / "bids", subjects=("01", "02", "03"))
    before = sorted(p.relative_to(bids) for p in bids.rglob("*"))
    runs = discover_runs(settings_for(bids, tmp_path, participant_labels=("02",))).runs
    assert {r.subject for r in runs} == {"02"}
    assert sorted(p.relative_to(bids) for p in bids.rglob("*")) == before
    assert not list((tmp_path / "work").rglob("*.sqlite"))  # pybids' index stays in memory


def test_tr_disagreement_warns_and_derivative_sidecar_wins(tmp_path, caplog):
    bids = make_tiny_dataset(tmp_path / "bids")
    write_json(bids / "task-tiny_bold.json", {"RepetitionTime": 2.5, "TaskName": "tiny"})
    with caplog.at_level(logging.WARNING, logger="bids_glm"):
        (run,) = discover_runs(settings_for(bids, tmp_path)).runs
    assert run.tr_s == 2.0
    assert "raw sidecar" in caplog.text and "disagrees" in caplog.text


def test_tr_falls_back_to_raw_sidecar_then_header(tmp_path):
    bids = make_tiny_dataset(tmp_path / "bids", tr_s=1.5)
    sidecar = next(bids.rglob("*desc-preproc_bold.json"))
    sidecar.write_text(json.dumps({"SkullStripped": False}))
    (run,) = discover_runs(settings_for(bids, tmp_path)).runs
    assert run.tr_s == 1.5
    (bids / "task-tiny_bold.json").write_text(json.dumps({"TaskName": "tiny"}))
    (run,) = discover_runs(settings_for(bids, tmp_path)).runs
    assert run.tr_s == pytest.approx(1.5)  # from the NIfTI header


def test_unknown_participant_is_a_precise_error(tmp_path):
    bids = make_tiny_dataset(tmp_path / "bids")
    with pytest.raises(InputError, match=r"sub-99 not found .*present: sub-01"):
        discover_runs(settings_for(bids, tmp_path, participant_labels=("99",)))


def test_unknown_task_lists_the_tasks_present(tmp_path):
    bids = make_tiny_dataset(tmp_path / "bids")
    with pytest.raises(InputError, match=r"task\(s\) nope.*tasks with preprocessed BOLD: tiny"):
        discover_runs(settings_for(bids, tmp_path, tasks=("nope",)))


def test_sessions_are_discovered(tmp_path):
    bids = make_tiny_dataset(tmp_path / "bids", sessions=("a", "b"))
    runs = discover_runs(settings_for(bids, tmp_path)).runs
    assert sorted(r.session for r in runs) == ["a", "b"]
    assert all(r.events_path and f"ses-{r.session}" in r.events_path.name for r in runs)
    runs = discover_runs(settings_for(bids, tmp_path, sessions=("b",))).runs
    assert [r.session for r in runs] == ["b"]


def test_validator_refuses_a_folder_without_description(tmp_path):
    bids = make_tiny_dataset(tmp_path / "bids")
    (bids / "dataset_description.json").unlink()
    with pytest.raises(
        InputError, match=r"dataset_description.json: missing.*--skip-bids-validator"
    ):
        discover_runs(settings_for(bids, tmp_path))
    runs = discover_runs(settings_for(bids, tmp_path, skip_bids_validator=True)).runs
    assert len(runs) == 1


def test_validator_warns_about_non_bids_names(tmp_path, caplog):
    bids = make_tiny_dataset(tmp_path / "bids")
    (bids / "sub-01" / "func" / "notes_about_run.txt").write_text("hello")
    with caplog.at_level(logging.WARNING, logger="bids_glm"):
        discover_runs(settings_for(bids, tmp_path))
    assert "1 file(s) do not follow BIDS naming" in caplog.text
    assert "/sub-01/func/notes_about_run.txt" in caplog.text


def _pybids_metadata_equals_ours(bids: Path, tmp_path: Path, **settings) -> int:
    """For every derivative BOLD: pybids' ``get_metadata`` (metadata indexed) against the
    sidecars discovery merges itself. Returns how many files were compared."""
    from bids import BIDSLayout

    from bids_glm.inputs import layout as discovery_layout
    from bids_glm.inputs.dataset_index import open_layout
    from bids_glm.inputs.sidecars import read_json_files

    config = settings_for(bids, tmp_path, **settings)
    roots = [config.bids_dir, *config.derivatives]
    json_files = read_json_files(roots, [])
    files = discovery_layout._candidates(open_layout(config, ["01", "02"]), config, json_files)
    reference = BIDSLayout(bids, validate=False, derivatives=[str(d) for d in config.derivatives])
    bolds = reference.get(scope="derivatives", suffix="bold", return_type="filename")
    bolds = [Path(b) for b in bolds if not b.endswith(".json")]
    for bold in bolds:
        assert files.derivative_metadata(bold) == reference.get_metadata(str(bold)), bold
    return len(bolds)


def test_derivative_metadata_is_pybids_get_metadata(tmp_path):
    """Sidecars next to the series, inherited from the derivatives' root, and overridden."""
    bids = make_tiny_dataset(tmp_path / "bids", subjects=("01", "02"), runs=("1", "2"))
    fmriprep = bids / "derivatives" / "fmriprep"
    (fmriprep / "task-tiny_bold.json").write_text('{"SkullStripped": false, "StartTime": 0.3}')
    (fmriprep / "sub-02" / f"sub-02_task-tiny_space-{SPACE}_desc-preproc_bold.json").write_text(
        '{"StartTime": 0.7, "Level": "subject"}'
    )
    assert _pybids_metadata_equals_ours(bids, tmp_path) == 4


@pytest.mark.parametrize("space", ["fsaverage5", "fsLR"])
def test_surface_and_cifti_metadata_is_pybids_get_metadata(tmp_path, space):
    from bids_glm.demo.surface_dataset import make_surface_demo

    bids = tmp_path / "bids"
    mesh_size = {"fsaverage5": 3, "fsLR": 600}[space]  # icosphere order, vertices
    make_surface_demo(bids, space, n_subjects=2, n_runs=1, n_volumes=20, mesh_size=mesh_size)
    assert _pybids_metadata_equals_ours(bids, tmp_path, space=space) >= 2


def test_a_sidecar_written_after_the_read_is_read_when_needed(tmp_path):
    from bids_glm.inputs.run_files import CandidateFiles

    late, broken = tmp_path / "late_bold.json", tmp_path / "broken_bold.json"
    late.write_text('{"RepetitionTime": 2.5}')
    broken.write_text("{")
    files = CandidateFiles([], [], [], [], [], [], json_documents={})
    assert files.metadata([late]) == {"RepetitionTime": 2.5}
    with pytest.raises(InputError, match=r"broken_bold\.json: invalid JSON"):
        files.metadata([late, broken])
