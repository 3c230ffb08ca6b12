"""The Boutiques descriptor (boutiques/bids-glm.json) against the command line it describes.

The descriptor is written by hand; these tests compare it with ``build_parser()`` option by
option (names, flags, types, lists, choices, defaults, exclusive groups), validate it with
``bosh validate`` and check that the command lines ``bosh exec simulate`` builds from
invocations parse back to the values the invocations gave. Nothing here needs Docker or the
network: ``simulate`` only prints the command.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

import pytest
from boutiques.invocationSchemaHandler import InvocationValidationError
from boutiques.validator import DescriptorValidationError

from bids_glm import __version__
from bids_glm.cli.parser import build_parser
from bids_glm.cli.validate import settings_from_args
from boutiques import bosh

DESCRIPTOR_PATH = Path(__file__).resolve().parents[1] / "boutiques" / "bids-glm.json"
DESCRIPTOR = json.loads(DESCRIPTOR_PATH.read_text())
INPUTS = {item["id"]: item for item in DESCRIPTOR["inputs"]}


def parser_actions() -> dict[str, argparse.Action]:
    """``dest -> action`` for every argument that takes part in a run (not --help/--version)."""
    return {
        action.dest: action
        for action in build_parser()._actions
        if not isinstance(action, (argparse._HelpAction, argparse._VersionAction))
    }


ACTIONS = parser_actions()


def is_list(action: argparse.Action) -> bool:
    return action.nargs in ("+", "*") or isinstance(action, argparse._AppendAction)


def expected_type(action: argparse.Action) -> set[str]:
    if isinstance(action, argparse._StoreTrueAction):
        return {"Flag"}
    if isinstance(action, argparse._CountAction):
        return {"String"}  # "-v", "-vv", ...: see test_count_option_is_a_choice_of_repeats
    if action.type in (int, float):
        return {"Number"}
    if action.type is Path:
        return {"File", "String"}  # String for folders the tool creates (output, work)
    assert action.type is None, f"{action.dest}: type {action.type} not mapped"
    return {"String"}


def simulate(invocation: dict, tmp_path: Path) -> list[str]:
    """The argv ``bosh exec simulate`` builds for ``invocation`` (without the program)."""
    path = tmp_path / "invocation.json"
    path.write_text(json.dumps(invocation))
    output = bosh(["exec", "simulate", "-i", str(path), str(DESCRIPTOR_PATH)])
    argv = shlex.split(output.shell_command)
    assert argv[0] == "bids-glm"
    return argv[1:]


def typed(input_id: str, value):
    """What argparse should hold for the descriptor value ``value`` of ``input_id``."""
    action = ACTIONS[input_id]
    if isinstance(action, argparse._CountAction):
        return len(value) - 1  # "-vv" -> 2
    convert = action.type or (lambda v: v)
    if isinstance(value, list):
        return [convert(v) for v in value]
    return convert(value)


# ---- the descriptor itself ------------------------------------------------------------------


def test_bosh_validate_accepts_the_descriptor(tmp_path):
    assert bosh(["validate", str(DESCRIPTOR_PATH)]) is None  # raises when invalid
    broken = tmp_path / "broken.json"  # and it does check
    broken.write_text(json.dumps({**DESCRIPTOR, "schema-version": "0.4"}))
    with pytest.raises(DescriptorValidationError):
        bosh(["validate", str(broken)])


def test_schema_version_tool_version_and_container_image():
    assert DESCRIPTOR["schema-version"] == "0.5"
    assert DESCRIPTOR["tool-version"] == __version__
    assert DESCRIPTOR["container-image"] == {
        "type": "docker",
        "image": f"bidsglm/bids-glm:{__version__}",
    }


def test_outputs_include_the_dataset_description_and_reports():
    templates = {item["id"]: item["path-template"] for item in DESCRIPTOR["output-files"]}
    assert templates["dataset_description"] == "[OUTPUT_DIR]/dataset_description.json"
    assert templates["participant_reports"] == "[OUTPUT_DIR]/sub-*.html"
    assert all(t.startswith(INPUTS["output_dir"]["value-key"]) for t in templates.values())


def test_error_codes_are_the_documented_exit_codes():
    epilog = build_parser().epilog
    for item in DESCRIPTOR["error-codes"]:
        assert f"{item['code']} " in epilog


# ---- every parser option in the descriptor and back -----------------------------------------


def test_same_options_in_parser_and_descriptor():
    assert set(INPUTS) == set(ACTIONS)


@pytest.mark.parametrize("dest", sorted(ACTIONS))
def test_option_matches_parser(dest):
    action, item = ACTIONS[dest], INPUTS[dest]
    assert item["type"] in expected_type(action)
    if action.option_strings:
        assert item["optional"] is True
        if not isinstance(action, argparse._CountAction):
            assert item["command-line-flag"] in action.option_strings
    else:  # positional
        assert item["optional"] is False
        assert "command-line-flag" not in item
    if action.type is int:
        assert item.get("integer") is True
    if action.type is float:
        assert item.get("integer", False) is False
    assert item.get("list", False) is is_list(action)
    if isinstance(action, argparse._AppendAction):
        # each value gets its own flag: "--contrast A --contrast B"
        assert item["list-separator"] == f" {item['command-line-flag']} "
    if action.choices is not None:
        assert item["value-choices"] == list(action.choices)
    elif not isinstance(action, argparse._CountAction):
        assert "value-choices" not in item
    undocumented = action.default is None or action.default is False or action.default == []
    if undocumented or isinstance(action, argparse._CountAction):
        assert "default-value" not in item
    else:
        assert typed(dest, item["default-value"]) == action.default
    assert item["description"]


def test_count_option_is_a_choice_of_repeats():
    for dest, action in ACTIONS.items():
        if isinstance(action, argparse._CountAction):
            short = next(o for o in action.option_strings if not o.startswith("--"))
            assert INPUTS[dest]["value-choices"] == [
                "-" + short[1] * n for n in range(1, len(INPUTS[dest]["value-choices"]) + 1)
            ]


def test_value_keys_each_once_positionals_first_in_order():
    command = DESCRIPTOR["command-line"]
    assert command.split()[0] == "bids-glm"
    keys = [INPUTS[dest]["value-key"] for dest in ACTIONS]
    assert len(set(keys)) == len(keys)
    for key in keys:
        assert command.count(key) == 1
        assert all(other == key or key not in other for other in keys)  # no key inside another
    positionals = [d for d, a in ACTIONS.items() if not a.option_strings]
    assert command.split()[1 : 1 + len(positionals)] == [
        INPUTS[d]["value-key"] for d in positionals
    ]


def test_mutually_exclusive_groups_match():
    parser_groups = [
        {a.dest for a in g._group_actions} for g in build_parser()._mutually_exclusive_groups
    ]
    descriptor_groups = [
        set(g["members"]) for g in DESCRIPTOR.get("groups", []) if g.get("mutually-exclusive")
    ]
    assert sorted(map(sorted, parser_groups)) == sorted(map(sorted, descriptor_groups))


# ---- bosh exec simulate -> bids-glm's parser ------------------------------------------------


def sample_value(item: dict):
    """A value of the input's type, list-ness and choices, different from its default."""
    if item["type"] == "Flag":
        return True
    if "value-choices" in item:
        value = item["value-choices"][-1]
    elif item["type"] == "Number":
        value = 2 if item.get("integer") else 0.5
    elif item["type"] == "File":
        value = f"/inputs/{item['id']} dir/file"
    else:
        value = f"{item['id']}=a - b; c*"  # spaces, '=', ';' and a wildcard must survive quoting
    if item.get("list"):
        second = value + 1 if isinstance(value, int) else value
        return [value, second if not isinstance(value, str) else value + "2"]
    return value


def test_simulate_minimal_invocation_parses_to_the_defaults(tmp_path):
    invocation = {"bids_dir": "/data/bids", "output_dir": "/data/out", "analysis_level": "group"}
    args = build_parser().parse_args(simulate(invocation, tmp_path))
    assert args.bids_dir == Path("/data/bids")
    assert args.output_dir == Path("/data/out")
    assert args.analysis_level == "group"
    defaults = build_parser().parse_args(["/data/bids", "/data/out", "group"])
    assert vars(args) == vars(defaults)


def test_simulate_every_option_parses_to_the_invocation_values(tmp_path):
    groups = [g["members"] for g in DESCRIPTOR["groups"] if g["mutually-exclusive"]]
    exclusive = {member for members in groups for member in members[1:]}
    invocation = {i: sample_value(item) for i, item in INPUTS.items() if i not in exclusive}
    args = vars(build_parser().parse_args(simulate(invocation, tmp_path)))
    for input_id, value in invocation.items():
        assert args[input_id] == typed(input_id, value), input_id
    for input_id in exclusive:
        assert args[input_id] == ACTIONS[input_id].default


def test_simulate_typical_invocation(tmp_path, tiny_dataset):
    invocation = {
        "bids_dir": str(tiny_dataset),
        "output_dir": str(tmp_path / "out"),
        "analysis_level": "participant",
        "participant_label": ["01", "sub-01"],
        "task": ["tiny"],
        "contrast": ["faceVsHouse=face - house", "face=face"],
        "f_contrast": ["effects=face; house"],
        "confounds": ["motion6", "scrub:FD=0.5,DVARS=1.5", "a_comp_cor_0*"],
        "hrf_model": "spm + derivative",
        "smoothing_fwhm": 5,
        "n_cpus": 2,
        "work_dir": str(tmp_path / "work dir"),
        "no_pdf": True,
        "overwrite": True,
        "verbose": "-vv",
    }
    argv = simulate(invocation, tmp_path)
    assert argv.count("--contrast") == 2
    args = build_parser().parse_args(argv)
    assert args.participant_label == ["01", "sub-01"]
    assert args.contrast == ["faceVsHouse=face - house", "face=face"]
    assert args.f_contrast == ["effects=face; house"]
    assert args.confounds == ["motion6", "scrub:FD=0.5,DVARS=1.5", "a_comp_cor_0*"]
    assert args.hrf_model == "spm + derivative"
    assert args.smoothing_fwhm == 5.0
    assert args.work_dir == tmp_path / "work dir"
    assert (args.no_pdf, args.overwrite, args.verbose, args.quiet) == (True, True, 2, False)
    settings = settings_from_args(args)  # the options are valid, not only parseable
    assert settings.participant_labels == ("01",)
    assert settings.n_cpus == 2
    assert not settings.write_pdf


def test_simulate_refuses_what_the_parser_refuses(tmp_path):
    base = {"bids_dir": "/b", "output_dir": "/o"}
    with pytest.raises(InvocationValidationError):
        simulate({**base, "analysis_level": "both"}, tmp_path)
    # -v with -q: boutiques 0.5.33 refuses it, though its message breaks inside jsonschema
    with pytest.raises((InvocationValidationError, TypeError)):
        both = {**base, "analysis_level": "participant", "verbose": "-v", "quiet": True}
        simulate(both, tmp_path)


def test_simulate_leaves_preset_options_out_unless_given(tmp_path, tiny_dataset):
    """Options whose absence means "the preset's default" have no default-value: a minimal
    invocation keeps SPM's 128 s cut-off, and one giving bids-glm's 0.01 Hz gets 100 s."""
    base = {
        "bids_dir": str(tiny_dataset),
        "output_dir": str(tmp_path / "out"),
        "analysis_level": "participant",
        "preset": "spm12",
    }
    argv = simulate(base, tmp_path)
    assert "--high-pass" not in argv and "--hrf-model" not in argv
    assert settings_from_args(build_parser().parse_args(argv)).spm12.high_pass_cutoff_s == 128
    argv = simulate({**base, "high_pass": 0.01}, tmp_path)
    spm12 = settings_from_args(build_parser().parse_args(argv)).spm12
    assert spm12.high_pass_cutoff_s == pytest.approx(100.0)
    without = {key: value for key, value in base.items() if key != "preset"}
    default_mode = settings_from_args(build_parser().parse_args(simulate(without, tmp_path)))
    assert default_mode.model.high_pass_hz == 0.01 and default_mode.spm12 is None
