"""Preprocessed variants: ``--desc``, and resolutions / densities given with ``--space``."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from conftest import SPACE, make_tiny_dataset, settings_for

from bids_glm.cli.main import main
from bids_glm.cli.parser import build_parser
from bids_glm.cli.validate import settings_from_args
from bids_glm.errors import InputError
from bids_glm.inputs.layout import discover_runs
from bids_glm.inputs.variants import SpaceOption, default_label, parse_space_option

AROMA_SPACE = "MNI152NLin6Asym"
AROMA = "smoothAROMAnonaggr"


def derivative_files(bids: Path, fragment: str) -> list[Path]:
    return sorted((bids / "derivatives" / "fmriprep").rglob(f"*{fragment}*"))


def copy_variant(bids: Path, old: str, new: str, move: bool = False) -> None:
    """Copy (or rename) every derivative whose name holds ``old`` to one holding ``new``."""
    for path in derivative_files(bids, old):
        target = path.with_name(path.name.replace(old, new))
        (shutil.move if move else shutil.copy)(path, target)


def aroma_dataset(root: Path) -> Path:
    """fMRIPrep 20.2 with --use-aroma: preproc in two spaces, AROMA in MNI152NLin6Asym."""
    bids = make_tiny_dataset(root, runs=("1", "2"))
    copy_variant(bids, f"space-{SPACE}_", f"space-{AROMA_SPACE}_")
    copy_variant(bids, f"space-{AROMA_SPACE}_desc-preproc_", f"space-{AROMA_SPACE}_desc-{AROMA}_")
    return bids


def resolutions_dataset(root: Path, labels=("1", "2"), keep_native=False, runs=("1",)) -> Path:
    """fMRIPrep >= 21 with --output-spaces SPACE:res-1 SPACE:res-2 (and SPACE if native)."""
    bids = make_tiny_dataset(root, runs=runs)
    for label in labels:
        copy_variant(bids, f"space-{SPACE}_desc", f"space-{SPACE}_res-{label}_desc")
    if not keep_native:
        for path in derivative_files(bids, f"space-{SPACE}_desc"):
            path.unlink()
    return bids


# --desc


def test_desc_selects_the_aroma_variant_its_space_mask_and_confounds(tmp_path):
    bids = aroma_dataset(tmp_path / "bids")
    runs = discover_runs(settings_for(bids, tmp_path, desc=AROMA)).runs
    assert [r.bold_path.name for r in runs] == [
        f"sub-01_task-tiny_run-{r}_space-{AROMA_SPACE}_desc-{AROMA}_bold.nii.gz" for r in (1, 2)
    ]
    for run in runs:
        assert run.space == AROMA_SPACE
        assert run.mask_path.name == run.bold_path.name.replace(f"{AROMA}_bold", "brain_mask")
        assert run.confounds_path.name.endswith(
            f"run-{run.entities['run']}_desc-confounds_timeseries.tsv"
        )
        assert run.events_path is not None


def test_default_desc_is_preproc_in_the_default_space(tmp_path):
    bids = aroma_dataset(tmp_path / "bids")
    runs = discover_runs(settings_for(bids, tmp_path)).runs
    assert all(r.bold_path.name.endswith(f"space-{SPACE}_desc-preproc_bold.nii.gz") for r in runs)
    aroma_space = discover_runs(settings_for(bids, tmp_path, space=AROMA_SPACE)).runs
    assert all(r.bold_path.name.endswith("_desc-preproc_bold.nii.gz") for r in aroma_space)


def test_unknown_desc_lists_the_desc_labels_present(tmp_path):
    bids = aroma_dataset(tmp_path / "bids")
    with pytest.raises(InputError, match=rf"no desc-nope_bold.*--desc\): preproc, {AROMA}"):
        discover_runs(settings_for(bids, tmp_path, desc="nope"))


def test_desc_in_a_space_without_it_lists_the_spaces(tmp_path):
    bids = aroma_dataset(tmp_path / "bids")
    with pytest.raises(InputError, match=rf"--space {SPACE}: no preprocessed BOLD"):
        discover_runs(settings_for(bids, tmp_path, desc=AROMA, space=SPACE))


# resolutions


def test_several_resolutions_default_to_the_lowest_index_and_say_so(tmp_path, caplog):
    bids = resolutions_dataset(tmp_path / "bids")
    with caplog.at_level(logging.INFO, logger="bids_glm"):
        runs = discover_runs(settings_for(bids, tmp_path)).runs
    assert [r.bold_path.name for r in runs] == [
        f"sub-01_task-tiny_run-1_space-{SPACE}_res-1_desc-preproc_bold.nii.gz"
    ]
    assert (
        runs[0].mask_path.name
        == f"sub-01_task-tiny_run-1_space-{SPACE}_res-1_desc-brain_mask.nii.gz"
    )
    assert "several resolutions (res-1, res-2); using res-1" in caplog.text
    assert f"--space {SPACE}:res-<label>" in caplog.text


def test_requested_resolution_and_its_mask(tmp_path):
    bids = resolutions_dataset(tmp_path / "bids")
    for label in ("2", "02"):
        (run,) = discover_runs(settings_for(bids, tmp_path, space=SPACE, resolution=label)).runs
        assert run.bold_path.name.endswith(f"space-{SPACE}_res-2_desc-preproc_bold.nii.gz")
        assert run.mask_path.name.endswith(f"space-{SPACE}_res-2_desc-brain_mask.nii.gz")
        assert run.confounds_path is not None


def test_missing_resolution_is_an_input_error_listing_the_available_ones(tmp_path):
    bids = resolutions_dataset(tmp_path / "bids")
    with pytest.raises(InputError, match=rf"--space {SPACE}:res-3: .*available: res-1, res-2"):
        discover_runs(settings_for(bids, tmp_path, space=SPACE, resolution="3"))


def test_missing_resolution_exits_3_from_the_command_line(tmp_path, capsys):
    bids = resolutions_dataset(tmp_path / "bids")
    code = main([str(bids), str(tmp_path / "out"), "participant", "--space", f"{SPACE}:res-3"])
    assert code == 3
    assert "available: res-1, res-2" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_unlabelled_native_resolution_comes_first(tmp_path, caplog):
    bids = resolutions_dataset(tmp_path / "bids", labels=("2",), keep_native=True)
    with caplog.at_level(logging.INFO, logger="bids_glm"):
        (run,) = discover_runs(settings_for(bids, tmp_path)).runs
    assert run.bold_path.name.endswith(f"space-{SPACE}_desc-preproc_bold.nii.gz")
    assert run.mask_path.name.endswith(f"space-{SPACE}_desc-brain_mask.nii.gz")
    assert "using no res entity (res-native)" in caplog.text
    (native,) = discover_runs(settings_for(bids, tmp_path, space=SPACE, resolution="native")).runs
    assert native.bold_path == run.bold_path


def test_a_single_resolution_is_used_without_asking(tmp_path, caplog):
    bids = resolutions_dataset(tmp_path / "bids", labels=("2",))
    with caplog.at_level(logging.INFO, logger="bids_glm"):
        (run,) = discover_runs(settings_for(bids, tmp_path)).runs
    assert "_res-2_desc-preproc_bold" in run.bold_path.name
    assert "several resolutions" not in caplog.text
    assert "res-2, desc-preproc" in caplog.text  # the summary line says what was used


def test_runs_without_the_chosen_resolution_are_left_out_with_a_warning(tmp_path, caplog):
    bids = resolutions_dataset(tmp_path / "bids", runs=("1", "2"))
    for path in derivative_files(bids, "run-2_space-"):
        if "_res-1_" in path.name:
            path.unlink()
    with caplog.at_level(logging.INFO, logger="bids_glm"):
        runs = discover_runs(settings_for(bids, tmp_path)).runs
    assert [r.entities["run"] for r in runs] == ["1"]
    assert "sub-01 task-tiny run-2: no preprocessed BOLD with res-1 (found res-2)" in caplog.text


def test_resolution_and_desc_combine(tmp_path):
    bids = resolutions_dataset(tmp_path / "bids")
    copy_variant(bids, "res-2_desc-preproc_bold", f"res-2_desc-{AROMA}_bold")
    (run,) = discover_runs(settings_for(bids, tmp_path, desc=AROMA)).runs
    assert run.bold_path.name.endswith(f"res-2_desc-{AROMA}_bold.nii.gz")
    assert run.mask_path.name.endswith("res-2_desc-brain_mask.nii.gz")


# --space and --desc on the command line


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("MNI152NLin2009cAsym", SpaceOption("MNI152NLin2009cAsym")),
        ("MNI152NLin2009cAsym:res-2", SpaceOption("MNI152NLin2009cAsym", "2")),
        ("MNI152NLin6Asym:res-native", SpaceOption("MNI152NLin6Asym", "native")),
        ("fsLR:den-91k", SpaceOption("fsLR", density="91k")),
        ("fsLR:res-2:den-91k", SpaceOption("fsLR", "2", "91k")),
    ],
)
def test_space_option_syntax(text, expected):
    assert parse_space_option(text) == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("MNI:cohort-1", "not res-<label> or den-<label>"),
        ("MNI:res-", "not res-<label> or den-<label>"),
        ("MNI:res-2:res-1", "res given twice"),
        ("MNI_x", "BIDS label"),
        ("", "BIDS label"),
    ],
)
def test_bad_space_option_exits_3_naming_it(tmp_path, capsys, text, words):
    bids = make_tiny_dataset(tmp_path / "bids")
    assert main([str(bids), str(tmp_path / "out"), "participant", "--space", text]) == 3
    err = capsys.readouterr().err
    assert "--space" in err and words in err


def test_bad_desc_exits_3(tmp_path, capsys):
    bids = make_tiny_dataset(tmp_path / "bids")
    assert main([str(bids), str(tmp_path / "out"), "participant", "--desc", "a_b"]) == 3
    assert "--desc 'a_b': a desc label has only letters and digits" in capsys.readouterr().err


def test_space_and_desc_are_typed_into_settings(tmp_path):
    bids = make_tiny_dataset(tmp_path / "bids")
    argv = [str(bids), str(tmp_path / "out"), "participant"]
    parser = build_parser()
    default = settings_from_args(parser.parse_args(argv))
    assert (default.space, default.resolution, default.density, default.desc) == (
        None,
        None,
        None,
        "preproc",
    )
    given = settings_from_args(
        parser.parse_args([*argv, "--space", f"{SPACE}:res-2", "--desc", f"desc-{AROMA}"])
    )
    assert (given.space, given.resolution, given.density, given.desc) == (SPACE, "2", None, AROMA)


def test_default_label_order():
    assert default_label({"2", None}) is None
    assert default_label({"2", "native"}) is None  # res-native: the unlabelled grid
    assert default_label({"10", "2"}) == "2"
    assert default_label({"170k", "91k"}) == "91k"


def test_dry_run_prints_the_files_each_run_uses(tmp_path, capsys):
    bids = resolutions_dataset(tmp_path / "bids")
    argv = [str(bids), str(tmp_path / "out"), "participant", "--dry-run"]
    assert main([*argv, "--space", f"{SPACE}:res-2"]) == 0
    printed = capsys.readouterr().out
    assert f"BOLD sub-01_task-tiny_run-1_space-{SPACE}_res-2_desc-preproc_bold.nii.gz" in printed
    assert f"mask sub-01_task-tiny_run-1_space-{SPACE}_res-2_desc-brain_mask.nii.gz" in printed
