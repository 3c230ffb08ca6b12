"""Numeric contrasts (``--contrast "x=[1,-1]"``, ``--f-contrast "F=[[1,0],[0,1]]"``).

Weights by column position, as nilearn takes them, named by the designs' columns once at
planning; runs whose columns would put the weights on different regressors are refused
(nilearn/nilearn#2396, #2687).
"""

from __future__ import annotations

import ast
import inspect
import json
import logging
import shutil
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bids_glm.cli.main import main
from bids_glm.demo.dataset import make_demo_dataset
from bids_glm.design import numeric_contrasts
from bids_glm.design.contrast_options import (
    ContrastSpec,
    FContrastSpec,
    parse_contrast_option,
    parse_f_contrast_option,
)
from bids_glm.design.contrasts import ContrastError
from bids_glm.design.numeric_contrasts import parse_numeric_weights, resolve_numeric
from bids_glm.design.run_design import RunDesign
from bids_glm.errors import InputError
from bids_glm.pipeline.plan import _check_numeric_across_units, plan_contrasts
from bids_glm.pipeline.units import AnalysisUnit
from bids_glm.settings import ModelSettings

SPACE = "MNI152NLin2009cAsym"

# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "rows"),
    [
        ("[1,-1]", ((1.0, -1.0),)),
        (" [ -1, -1 , 1,1 ] ", ((-1.0, -1.0, 1.0, 1.0),)),
        ("[1e-3, .5, +2, 0.25E1]", ((0.001, 0.5, 2.0, 2.5),)),
        ("[[1, 0], [0, 1]]", ((1.0, 0.0), (0.0, 1.0))),
        ("[[-1,-1,1,1]]", ((-1.0, -1.0, 1.0, 1.0),)),
    ],
)
def test_parse_numeric_weights(text, rows):
    assert parse_numeric_weights(text) == rows


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[1,,2]", "empty element: expected a number at position 3 in '[1,,2]'"),
        ("[1,2,]", "empty element: expected a number at position 5"),
        ("[]", "empty vector: expected at least one weight"),
        ("[[]]", "empty row: expected at least one weight"),
        ("[[1],[1,2]]", "rows of unequal length in '[[1],[1,2]]': row 1 has 1, row 2 has 2"),
        ("[a, b]", "unexpected 'a' (expected numbers, ',', '[' or ']') at position 1"),
        ("[1, nan]", "unexpected 'n'"),
        ("[1, inf]", "unexpected 'i'"),
        ("[1e999]", "weight '1e999' is not a finite number"),
        ("[1, 2", "unexpected end: expected ',' or ']' in a vector"),
        ("[1 2]", "unexpected '2': expected ',' or ']' in a vector"),
        ("[1, 2] + [1]", "unexpected '+'"),
        ("[[1]]]", "unexpected ']' after the closing ']'"),
        ("[[[1]]]", "lists nested deeper than a matrix"),
        ("[1, [2]]", "a list inside a vector"),
        ("[[1], 2]", "a number among rows"),
        ("[0, 0]", "'[0, 0]' has only zero weights"),
        ("[[1, 0], [0, 0]]", "row 2 of '[[1, 0], [0, 0]]' has only zero weights"),
        ("[__import__('os')]", "unexpected '_'"),
    ],
)
def test_malformed_numeric_weights_are_refused_precisely(text, fragment):
    with pytest.raises(ContrastError) as info:
        parse_numeric_weights(text)
    assert fragment in str(info.value)


def test_numeric_module_never_evaluates_text():
    tree = ast.parse(inspect.getsource(numeric_contrasts))
    called = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert not called & {"eval", "exec", "compile", "__import__"}
    assert "literal_eval" not in inspect.getsource(numeric_contrasts)
    assert "json" not in inspect.getsource(numeric_contrasts)


def test_contrast_options_accept_vectors_and_matrices():
    assert parse_contrast_option("x = [1, -1] ") == ContrastSpec(
        "x", "[1, -1]", {}, numeric=((1.0, -1.0),)
    )
    assert parse_contrast_option("x=[[1,-1]]").numeric == ((1.0, -1.0),)
    assert parse_f_contrast_option("eff=[[1,0],[0,1]]") == FContrastSpec(
        "eff", "[[1,0],[0,1]]", (), numeric=((1.0, 0.0), (0.0, 1.0))
    )
    with pytest.raises(ContrastError, match=r"contrast 'x': '\[\[1\],\[2\]\]' has 2 rows"):
        parse_contrast_option("x=[[1],[2]]")
    with pytest.raises(ContrastError, match=r"^F contrast 'eff': empty element"):
        parse_f_contrast_option("eff=[[1,0],[0,,1]]")


# --------------------------------------------------------------------------- naming the columns

RUN1 = ["face", "house", "scrambled", "drift_1", "constant"]
RUN2 = ["house", "scrambled", "drift_1", "constant"]


def test_resolve_pads_with_a_note_per_run_naming_the_columns():
    rows, notes = resolve_numeric(((1.0, -1.0),), [("run-1", RUN1), ("run-2", RUN1)])
    assert rows == ({"face": 1.0, "house": -1.0},)
    assert len(notes) == 2
    assert notes[1] == (
        "2 weight(s) for the 5 columns of run-2: they fall on face, house; "
        "zero-padded over the other 3: scrambled, drift_1, constant"
    )


def test_resolve_full_length_vector_needs_no_note():
    rows, notes = resolve_numeric(((0.0, 1.0, 0.0, 0.0, 0.5),), [("run-1", RUN1)])
    assert rows == ({"house": 1.0, "constant": 0.5},) and notes == []


def test_resolve_refuses_a_vector_longer_than_a_run_design():
    with pytest.raises(ContrastError) as info:
        resolve_numeric(((1.0, 0, 0, 0, 1.0),), [("run-1", RUN1), ("run-2", RUN2)])
    assert str(info.value) == (
        "5 weights per row, but the design of run-2 has 4 columns: "
        "house, scrambled, drift_1, constant"
    )


def test_resolve_refuses_runs_whose_columns_shift():
    with pytest.raises(ContrastError) as info:
        resolve_numeric(((1.0, -1.0),), [("run-1", RUN1), ("run-2", RUN2)])
    message = str(info.value)
    assert "would fall on different regressors in different runs" in message
    assert "face=1, house=-1 in run-1" in message
    assert "house=1, scrambled=-1 in run-2" in message
    assert "run-1: face, house, scrambled, drift_1, constant" in message
    assert "run-2: house, scrambled, drift_1, constant" in message


def test_resolve_accepts_runs_that_differ_only_past_the_weights():
    """A run lacking the third condition still puts [1, -1] on face and house."""
    rows, _ = resolve_numeric(((1.0, -1.0),), [("a", RUN1), ("b", ["face", "house", "constant"])])
    assert rows == ({"face": 1.0, "house": -1.0},)


def _design(label: str, columns: list[str]) -> RunDesign:
    matrix = pd.DataFrame(np.eye(len(columns) + 2, len(columns)), columns=columns)
    conditions = tuple(c for c in columns if not c.startswith(("drift", "constant")))
    return RunDesign(SimpleNamespace(label=label), matrix, conditions, 0.0)


def test_plan_names_the_weights_once_and_keeps_the_text(caplog):
    model = ModelSettings(
        contrasts=(parse_contrast_option("x=[1,-1]"), parse_contrast_option("face=[1]")),
        f_contrasts=(parse_f_contrast_option("eff=[[1,0],[0,1]]"),),
    )
    with caplog.at_level(logging.WARNING, logger="bids_glm"):
        plans = plan_contrasts([_design("run-1", RUN1), _design("run-2", RUN1)], model)
    by_name = {p.name: p for p in plans}
    assert list(by_name) == ["face", "house", "scrambled", "x", "eff"]  # face=[1] is face's own
    assert by_name["x"].rows == ({"face": 1.0, "house": -1.0},)
    assert by_name["x"].expression == "[1,-1]"
    assert by_name["eff"].rows == ({"face": 1.0}, {"house": 1.0})
    np.testing.assert_array_equal(by_name["eff"].weights_matrix(RUN1), np.eye(2, 5))
    padded = [r.getMessage() for r in caplog.records if "zero-padded" in r.getMessage()]
    assert len(padded) == 6  # three contrasts, two runs
    assert padded[0].startswith("--contrast x=[1,-1]: 2 weight(s) for the 5 columns of run-1")


def test_plan_refuses_shifted_columns_with_each_runs_columns():
    model = ModelSettings(contrasts=(parse_contrast_option("x=[1,-1]"),))
    with pytest.raises(InputError, match=r"^--contrast x=\[1,-1\]: the runs' designs"):
        plan_contrasts([_design("run-1", RUN1), _design("run-2", RUN2)], model)


def test_plan_refuses_units_whose_columns_shift():
    model = ModelSettings(f_contrasts=(parse_f_contrast_option("e=[[1,0],[0,1]]"),))
    units = [
        AnalysisUnit({"sub": "01", "task": "t"}, (_design("sub-01 run-1", RUN1),), ()),
        AnalysisUnit({"sub": "02", "task": "t"}, (_design("sub-02 run-1", RUN2),), ()),
    ]
    with pytest.raises(InputError) as info:
        _check_numeric_across_units(units, model)
    assert "sub-02 run-1: house, scrambled, drift_1, constant" in str(info.value)
    _check_numeric_across_units(units[:1], model)


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    bids = tmp_path_factory.mktemp("numeric") / "bids"
    make_demo_dataset(bids, n_subjects=1, n_runs=2)
    return bids


def participant(bids: Path, out: Path, *options: str) -> int:
    work = out.parent / f"work-{out.name}"
    argv = [str(bids), str(out), "participant", "--work-dir", str(work), "--no-reports"]
    return main([*argv, *options])


def fixed_effects_map(out: Path, label: str, stat: str) -> np.ndarray:
    path = out / "sub-01" / "func" / f"sub-01_task-faces_space-{SPACE}_contrast-{label}"
    return np.asarray(nib.load(f"{path}_stat-{stat}_statmap.nii.gz").dataobj)


def run_map(out: Path, run: int, label: str, stat: str) -> np.ndarray:
    name = f"sub-01_task-faces_run-{run}_space-{SPACE}_contrast-{label}_stat-{stat}_statmap"
    return np.asarray(nib.load(out / "sub-01" / "func" / f"{name}.nii.gz").dataobj)


def manifest_summary(out: Path) -> dict:
    (path,) = (out / "logs" / "manifests").glob("*.json")
    return json.loads(path.read_text())["Summary"]


@pytest.fixture(scope="module")
def named_and_numeric(demo, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("numeric-runs")
    named, numeric = root / "named", root / "numeric"
    assert (
        participant(demo, named, "--contrast", "x=face - house", "--f-contrast", "e=face; house")
        == 0
    )
    assert (
        participant(demo, numeric, "--contrast", "x=[1,-1]", "--f-contrast", "e=[[1,0],[0,1]]")
        == 0
    )
    return {"named": named, "numeric": numeric, "root": root}


def test_vector_gives_the_maps_of_the_expression(named_and_numeric):
    named, numeric = named_and_numeric["named"], named_and_numeric["numeric"]
    for stat in ("effect", "variance", "t", "z", "p"):
        np.testing.assert_array_equal(
            fixed_effects_map(numeric, "x", stat), fixed_effects_map(named, "x", stat)
        )
        for run in (1, 2):
            np.testing.assert_array_equal(
                run_map(numeric, run, "x", stat), run_map(named, run, "x", stat)
            )
    name = f"sub-01_task-faces_space-{SPACE}_contrast-x_stat-z_statmap.json"
    sidecar = json.loads((numeric / "sub-01" / "func" / name).read_text())
    assert sidecar["ContrastExpression"] == "[1,-1]"
    assert sidecar["ContrastWeights"] == {"face": 1.0, "house": -1.0}
    warnings = manifest_summary(numeric)["Warnings"]
    padded = [w for w in warnings if w.startswith("--contrast x=[1,-1]: 2 weight(s)")]
    assert len(padded) == 2  # one per run
    assert "of sub-01 task-faces run-2: they fall on face, house; zero-padded" in padded[1]
    assert "scrambled" in padded[1] and "constant" in padded[1]


def test_f_matrix_gives_the_maps_of_the_f_expression(named_and_numeric):
    named, numeric = named_and_numeric["named"], named_and_numeric["numeric"]
    for stat in ("F", "z", "p"):
        np.testing.assert_array_equal(
            fixed_effects_map(numeric, "e", stat), fixed_effects_map(named, "e", stat)
        )


def test_full_length_vector_is_not_padded(demo, named_and_numeric):
    design = pd.read_csv(
        named_and_numeric["named"]
        / "sub-01"
        / "func"
        / f"sub-01_task-faces_run-1_space-{SPACE}_design.tsv",
        sep="\t",
    )
    vector = [1, -1] + [0] * (design.shape[1] - 2)
    out = named_and_numeric["root"] / "full"
    assert participant(demo, out, "--contrast", f"x={vector}") == 0
    assert not [w for w in manifest_summary(out)["Warnings"] if "zero-padded" in w]
    np.testing.assert_array_equal(
        fixed_effects_map(out, "x", "z"), fixed_effects_map(named_and_numeric["named"], "x", "z")
    )


def test_effective_model_names_the_weights_and_reproduces_the_maps(demo, named_and_numeric):
    numeric = named_and_numeric["numeric"]
    model = numeric / "model-bidsglm_smdl.json"
    contrasts = json.loads(model.read_text())["Nodes"][0]["Contrasts"]
    assert contrasts == [
        {"Name": "x", "ConditionList": ["face", "house"], "Weights": [1.0, -1.0], "Test": "t"},
        {
            "Name": "e",
            "ConditionList": ["face", "house"],
            "Weights": [[1.0, 0.0], [0.0, 1.0]],
            "Test": "F",
        },
    ]
    rerun = named_and_numeric["root"] / "rerun"
    assert participant(demo, rerun, "--model", str(model)) == 0
    maps = sorted(p.relative_to(numeric) for p in numeric.rglob("sub-*/**/*.nii.gz"))
    assert len(maps) > 30
    assert maps == sorted(p.relative_to(rerun) for p in rerun.rglob("sub-*/**/*.nii.gz"))
    assert [m for m in maps if (numeric / m).read_bytes() != (rerun / m).read_bytes()] == []


def test_runs_whose_columns_shift_are_refused(demo, tmp_path, capsys):
    bids = tmp_path / "bids"
    shutil.copytree(demo, bids)
    events_path = bids / "sub-01" / "func" / "sub-01_task-faces_run-2_events.tsv"
    events = pd.read_csv(events_path, sep="\t")
    events[events["trial_type"] != "face"].to_csv(events_path, sep="\t", index=False)
    out = tmp_path / "out"
    assert participant(bids, out, "--contrast", "x=[1,-1]") == 3
    error = capsys.readouterr().err
    assert "--contrast x=[1,-1]: the runs' designs order their columns differently" in error
    assert "face=1, house=-1 in sub-01 task-faces run-1" in error
    assert "house=1, scrambled=-1 in sub-01 task-faces run-2" in error
    assert "sub-01 task-faces run-1: face, house, scrambled," in error
    assert "sub-01 task-faces run-2: house, scrambled," in error
    assert not list(out.rglob("*.nii.gz"))
    # named contrasts stay usable: run 2 is left out of x, with a warning
    assert participant(bids, tmp_path / "named", "--contrast", "x=face - house") == 0


@pytest.mark.parametrize(
    ("option", "fragment"),
    [
        ("x=[1,,2]", "contrast 'x': empty element: expected a number at position 3"),
        ("x=[]", "contrast 'x': empty vector"),
        ("x=[1, face]", "contrast 'x': unexpected 'f'"),
        ("x=[[1],[1,2]]", "contrast 'x': rows of unequal length"),
        ("x=[1, 1e400]", "weight '1e400' is not a finite number"),
    ],
)
def test_malformed_vectors_exit_3(demo, tmp_path, capsys, option, fragment):
    assert participant(demo, tmp_path / "out", "--contrast", option) == 3
    assert fragment in capsys.readouterr().err


def test_vector_longer_than_a_design_exits_3_naming_run_lengths_and_columns(
    demo, tmp_path, capsys
):
    vector = "[" + ", ".join(["1"] * 40) + "]"
    assert participant(demo, tmp_path / "out", "--contrast", f"x={vector}") == 3
    error = capsys.readouterr().err
    assert "40 weights per row, but the design of sub-01 task-faces run-1 has" in error
    assert "columns: face, house, scrambled," in error
