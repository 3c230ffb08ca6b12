"""Command-line contract: options, documented exit codes, messages without tracebacks."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bids_glm import __version__
from bids_glm.cli.main import main
from bids_glm.cli.parser import build_parser
from bids_glm.cli.validate import settings_from_args
from bids_glm.design.hrf_spec import GLOVER, HrfSpec
from bids_glm.image.mask_rule import INTERSECTION, UNION, MaskRule


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bids_glm", *args], capture_output=True, text=True, timeout=300
    )


def test_version_via_python_m():
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"bids-glm {__version__}"


def test_python_m_exits_with_every_line_written(monkeypatch):
    """The command ends the process without Python's teardown: its block-buffered output
    (stdout into a pipe) must still reach the reader whole, short or long."""
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)
    monkeypatch.setenv("COLUMNS", "100")
    for option, expected in (
        ("--version", f"bids-glm {__version__}\n"),
        ("--help", build_parser().format_help()),
    ):
        result = run_cli(option)
        assert result.returncode == 0
        assert result.stdout == expected


def test_command_exit_survives_a_failing_thread_exit_handler():
    """Python's exit ignores an error raised while it joins threads (3.11's process pools
    can raise one: a wake-up pipe closed by a pool shut down without waiting); so must the
    command's quick exit, keeping the run's exit code and output."""
    script = (
        "import sys, threading\n"
        "def closed_pipe():\n"
        "    raise OSError(9, 'Bad file descriptor')\n"
        "threading._register_atexit(closed_pipe)\n"
        "from bids_glm.cli.main import command\n"
        "sys.argv = ['bids-glm', '--version']\n"
        "command()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert (result.returncode, result.stdout) == (0, f"bids-glm {__version__}\n"), result.stderr
    assert "Traceback" not in result.stderr


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


@pytest.mark.parametrize(
    ("options", "smoothing_fwhm_mm", "mask_rule", "hrf_model"),
    [
        ((), 0.0, INTERSECTION, GLOVER),
        (("--smoothing-fwhm", "0"), 0.0, INTERSECTION, GLOVER),
        (
            ("--smoothing-fwhm", "6", "--mask-combine", " FRACTION:0.5", "--hrf-model",
             "spm + derivative + dispersion"),
            6.0,
            MaskRule("fraction", 0.5),
            HrfSpec("spm", time_derivative=True, dispersion_derivative=True),
        ),
        (("--mask-combine", "union", "--hrf-model", "fir"), 0.0, UNION, HrfSpec("fir")),
    ],
)  # fmt: skip
def test_string_options_are_typed_once(
    tiny_dataset, tmp_path, options, smoothing_fwhm_mm, mask_rule, hrf_model
):
    """Smoothing is a float (0 = none), the mask rule and the HRF model typed values."""
    expected = (smoothing_fwhm_mm, mask_rule, hrf_model)
    args = build_parser().parse_args([str(tiny_dataset), str(tmp_path / "o"), "group", *options])
    settings = settings_from_args(args)
    model = settings.model
    assert (model.smoothing_fwhm_mm, settings.mask_combine, model.hrf_model) == expected
    assert type(model.smoothing_fwhm_mm) is float


@pytest.mark.parametrize("label", ["../etc", "01/..", "sub-0_1"])
def test_participant_label_must_be_a_bids_label(tiny_dataset, tmp_path, label, capsys):
    code = main(
        [str(tiny_dataset), str(tmp_path / "o"), "participant", "--participant-label", label]
    )
    assert code == 3
    assert "only letters and digits" in capsys.readouterr().err
