"""``--preset spm12`` options typed on top of the preset: a typed flag counts, even at our default.

The flags are parsed and validated (``settings_from_args``) on a tiny dataset; nothing is fitted.
"""

from __future__ import annotations

import pytest

from bids_glm.cli.parser import build_parser
from bids_glm.cli.validate import settings_from_args
from bids_glm.design.hrf_spec import HrfSpec
from bids_glm.errors import InputError


def _settings(tiny_dataset, tmp_path, *options: str):
    argv = [str(tiny_dataset), str(tmp_path / "out"), "participant", *options]
    return settings_from_args(build_parser().parse_args(argv))


def test_flags_left_out_take_spm_defaults_with_the_preset(tiny_dataset, tmp_path):
    settings = _settings(tiny_dataset, tmp_path, "--preset", "spm12")
    assert settings.spm12.high_pass_cutoff_s == 128.0
    assert settings.model.high_pass_hz == pytest.approx(1 / 128)
    assert settings.model.hrf_model == HrfSpec("spm")
    assert settings.model.signal_scaling == "global"


def test_flags_left_out_take_our_defaults_without_the_preset(tiny_dataset, tmp_path):
    settings = _settings(tiny_dataset, tmp_path)
    assert settings.spm12 is None
    model = settings.model
    assert (model.high_pass_hz, model.drift_model, model.signal_scaling) == (
        0.01,
        "cosine",
        "percent",
    )
    assert model.hrf_model == HrfSpec("glover")


def test_a_typed_flag_counts_even_at_our_default_value(tiny_dataset, tmp_path):
    settings = _settings(tiny_dataset, tmp_path, "--preset", "spm12", "--high-pass", "0.01")
    assert settings.spm12.high_pass_cutoff_s == pytest.approx(100.0)
    assert settings.model.high_pass_hz == pytest.approx(0.01)
    typed_spm = ("--drift-model", "cosine", "--signal-scaling", "global", "--hrf-model", "spm")
    settings = _settings(tiny_dataset, tmp_path, "--preset", "spm12", *typed_spm)
    assert settings.spm12.high_pass_cutoff_s == 128.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--hrf-model", "glover"), "--hrf-model glover: --preset spm12 fits SPM's canonical"),
        (("--drift-model", "cosine", "--drift-model", "none"), "--drift-model none:"),
        (("--drift-model", "polynomial"), "--drift-model polynomial: --preset spm12 always"),
        (("--signal-scaling", "percent"), "--signal-scaling percent: --preset spm12 always"),
    ],
)
def test_typed_values_without_spm_meaning_are_refused(tiny_dataset, tmp_path, options, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        _settings(tiny_dataset, tmp_path, "--preset", "spm12", *options)
