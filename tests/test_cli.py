"""Command-line contract: options, documented exit codes, messages without tracebacks."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bids_glm import __version__
from bids_glm.cli.main import main
from bids_glm.cli.parser import build_parser
from bids_glm.cli.validate import settings_from_args


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bids_glm", *args], capture_output=True, text=True, timeout=300
    )


def test_version_via_python_m():
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"bids-glm {__version__}"


def test_unknown_option_is_usage_error(tiny_dataset, tmp_path, capsys):
    code = main([str(tiny_dataset), str(tmp_path / "out"), "participant", "--frobnicate"])
    assert code == 2
    assert "unrecognized arguments: --frobnicate" in capsys.readouterr().err


def test_group_level_without_participant_outputs_is_an_input_error(tiny_dataset, tmp_path):
    assert main([str(tiny_dataset), str(tmp_path / "out"), "group"]) == 3


def test_unknown_participant_exit_3_without_traceback(tiny_dataset, tmp_path):
    result = run_cli(
        str(tiny_dataset), str(tmp_path / "out"), "participant", "--participant-label", "sub-42"
    )
    assert result.returncode == 3
    assert "sub-42 not found" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_task_without_runs_exit_3(tiny_dataset, tmp_path, capsys):
    code = main([str(tiny_dataset), str(tmp_path / "out"), "participant", "--task", "rest"])
    assert code == 3
    assert "tasks with preprocessed BOLD: tiny" in capsys.readouterr().err


def test_contrast_syntax_error_exit_3(tiny_dataset, tmp_path, capsys):
    code = main(
        [str(tiny_dataset), str(tmp_path / "out"), "participant", "--contrast", "bad=a - )"]
    )
    assert code == 3
    assert "unexpected ')'" in capsys.readouterr().err


def test_contrast_on_unknown_column_lists_columns(tiny_dataset, tmp_path, capsys):
    code = main(
        [
            str(tiny_dataset),
            str(tmp_path / "out"),
            "participant",
            "--work-dir",
            str(tmp_path / "work"),
            "--contrast",
            "x=a - nothere",
        ]
    )
    assert code == 3
    err = capsys.readouterr().err
    assert "nothere" in err and "columns: a, b" in err
    assert not (tmp_path / "out").exists()


def test_output_inside_input_is_refused(tiny_dataset, capsys):
    code = main([str(tiny_dataset), str(tiny_dataset / "out"), "participant"])
    assert code == 3
    assert "inside BIDS_DIR" in capsys.readouterr().err


def test_participant_labels_with_and_without_prefix(tiny_dataset, tmp_path):
    args = build_parser().parse_args(
        [
            str(tiny_dataset),
            str(tmp_path / "o"),
            "participant",
            "--participant-label",
            "01",
            "sub-02",
            "sub-01",
        ]
    )
    settings = settings_from_args(args)
    assert settings.participant_labels == ("01", "02")
    assert settings.derivatives == (tiny_dataset / "derivatives" / "fmriprep",)
    assert settings.model.noise_model == "ar1" and str(settings.model.hrf_model) == "glover"


@pytest.mark.parametrize("label", ["../etc", "01/..", "sub-0_1"])
def test_participant_label_must_be_a_bids_label(tiny_dataset, tmp_path, label, capsys):
    code = main(
        [str(tiny_dataset), str(tmp_path / "o"), "participant", "--participant-label", label]
    )
    assert code == 3
    assert "only letters and digits" in capsys.readouterr().err
