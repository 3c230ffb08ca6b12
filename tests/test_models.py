"""BIDS Stats Models: loading, validation, transformations, Run-node mapping, node graph.

Real models from ``../shared/realdata/stats_models`` (skipped when absent) are each either
accepted and mapped onto a synthetic run, or rejected for a named unsupported feature.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from fnmatch import fnmatchcase
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bids_glm.derivatives.stats_model import effective_model
from bids_glm.design.contrast_options import parse_contrast_option, parse_f_contrast_option
from bids_glm.design.hrf_spec import HrfSpec
from bids_glm.design.matrix import frame_times, make_design_matrix
from bids_glm.image.mask_rule import INTERSECTION, MaskRule
from bids_glm.inputs.confounds import parse_confound_strategy, read_confounds
from bids_glm.inputs.smdl.graph import node_graph
from bids_glm.inputs.smdl.load import load_model
from bids_glm.inputs.smdl.model import ModelError
from bids_glm.inputs.smdl.options import node_overrides
from bids_glm.inputs.smdl.run_node import map_run_node
from bids_glm.inputs.smdl.schema import parse_model
from bids_glm.inputs.smdl.transformations import apply_instructions
from bids_glm.settings import ModelSettings, Settings

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
MODELS = REALDATA / "stats_models"
CONFOUNDS_TSV = (
    REALDATA
    / "fmriprep_confounds"
    / "sub-04_task-mixedgamblestask_run-01_desc-confounds_timeseries.tsv"
)
TR_S, N_SCANS = 2.0, 100

# Every file of the zoo, and what bids-glm does with it.
STATUS = {
    "ds-005_type-mfx_model.json": "rejected: Nodes[1].Model.VarianceComponents: "
    "Model.VarianceComponents (mixed-effects models) is not supported",
    "ds-005_type-test_model.json": "rejected: Nodes[0].Model.Formula: Model.Formula",
    "model-MoAE_smdl.json": "accepted",
    "model-ds003-001_smdl.json": "accepted",
    "model-ds2799_desc-compcop_smdl.json": "rejected: Options.LowPassFilterCutoffHz: "
    "low-pass filtering is not supported",
    "model-ds2799_desc-scrubbing_smdl.json": "rejected: LowPassFilterCutoffHz",
    "model-ds2799_desc-simple_smdl.json": "rejected: LowPassFilterCutoffHz",
    "model-example_smdl.json": "accepted",
    "model-narps_smdl.json": "rejected: Nodes[4].Model.Formula: Model.Formula",
    "model-walkthrough_smdl.json": "accepted",
}
DS003_CONFOUNDS = [
    "framewise_displacement", "trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z",
    *[f"a_comp_cor_0{i}" for i in range(6)],
]  # fmt: skip

needs_realdata = pytest.mark.skipif(not MODELS.is_dir(), reason="../shared/realdata absent")


def synthetic_run(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Events with every variable the zoo's accepted models name, and fMRIPrep-like confounds."""
    rng = np.random.default_rng(seed)
    n_events = 24
    levels = ["word", "pseudoword", "listening", "congruent", "incongruent"]
    events = pd.DataFrame(
        {
            "onset": np.sort(rng.uniform(0, (N_SCANS - 15) * TR_S, n_events)).round(2),
            "duration": rng.choice([0.0, 1.5, 3.0], n_events),
            "trial_type": [levels[i % len(levels)] for i in range(n_events)],
            "RT": rng.uniform(0.4, 1.5, n_events).round(3),
            "gain": rng.integers(0, 40, n_events).astype(float),
            "loss": rng.integers(5, 20, n_events).astype(float),
        }
    )
    names = [*DS003_CONFOUNDS, "nuissance1", "nuissance2", "csf", "white_matter"]
    confounds = pd.DataFrame(rng.normal(size=(N_SCANS, len(names))), columns=names)
    return events, confounds


def design_from(inputs) -> pd.DataFrame:
    return make_design_matrix(
        frame_times(N_SCANS, TR_S),
        inputs.events,
        hrf_model=inputs.hrf_model,
        high_pass_hz=inputs.high_pass_hz,
        fir_delays=inputs.fir_delays_scans,
        confounds=inputs.confounds,
    )


@needs_realdata
def test_status_lists_every_model_file():
    assert sorted(STATUS) == sorted(p.name for p in MODELS.glob("*.json"))


@needs_realdata
@pytest.mark.parametrize("filename", sorted(STATUS))
def test_zoo_model_is_accepted_and_mapped_or_rejected_precisely(filename):
    status = STATUS[filename]
    if status.startswith("rejected: "):
        with pytest.raises(ModelError) as caught:
            load_model(MODELS / filename)
        assert status.removeprefix("rejected: ") in str(caught.value)
        assert str(MODELS / filename) in str(caught.value)
        return
    model = load_model(MODELS / filename)
    steps = node_graph(model)
    assert steps[0].node.level == "Run"
    events, confounds = synthetic_run()
    inputs = map_run_node(steps[0].node, events, confounds, TR_S, N_SCANS)
    design = design_from(inputs)
    for condition in inputs.conditions:
        column = design[condition].to_numpy()
        assert np.ptp(column) > 0, f"{condition} regressor is flat"
    for spec in inputs.contrasts:
        assert set(spec.weights) <= set(design.columns)
    assert "constant" in design.columns


@needs_realdata
def test_ds003_design_matches_spm_convolution_of_the_same_events():
    model = load_model(MODELS / "model-ds003-001_smdl.json")
    events, confounds = synthetic_run(1)
    inputs = map_run_node(model.nodes[0], events, confounds, TR_S, N_SCANS)
    assert inputs.hrf_model == HrfSpec("spm") and inputs.intercept
    assert inputs.conditions == ("trial_type.word", "trial_type.pseudoword")
    assert inputs.confound_columns == tuple(DS003_CONFOUNDS)
    design = design_from(inputs)
    words = events[events["trial_type"].isin(["word", "pseudoword"])]
    reference = make_design_matrix(
        frame_times(N_SCANS, TR_S),
        words.assign(trial_type="trial_type." + words["trial_type"])[
            ["onset", "duration", "trial_type"]
        ],
        hrf_model=HrfSpec("spm"),
        confounds=confounds[DS003_CONFOUNDS],
    )
    expected = [
        "trial_type.pseudoword", "trial_type.word", *DS003_CONFOUNDS,
        *[c for c in reference.columns if c.startswith("drift_")], "constant",
    ]  # fmt: skip
    assert list(design.columns) == expected
    np.testing.assert_allclose(design.to_numpy(), reference[expected].to_numpy(), atol=1e-12)
    np.testing.assert_array_equal(design[DS003_CONFOUNDS], confounds[DS003_CONFOUNDS])
    weights = {spec.name: dict(spec.weights) for spec in inputs.contrasts}
    assert weights == {
        "trial_type.word": {"trial_type.word": 1.0},
        "trial_type.pseudoword": {"trial_type.pseudoword": 1.0},
        "word_gt_pseudo": {"trial_type.word": 1.0, "trial_type.pseudoword": -1.0},
        "task_vs_baseline": {"trial_type.word": 0.5, "trial_type.pseudoword": 0.5},
    }
    assert inputs.f_contrasts == ()


@needs_realdata
def test_ds003_graph_sends_filtered_contrasts_to_each_dataset_node():
    steps = {s.node.name: s for s in node_graph(load_model(MODELS / "model-ds003-001_smdl.json"))}
    assert list(steps) == ["subject", "t-test", "F-test"]
    t_test, f_test = steps["t-test"], steps["F-test"]
    assert set(t_test.contrasts_in) == {"task_vs_baseline", "word_gt_pseudo"}
    assert set(f_test.contrasts_in) == {"trial_type.word", "trial_type.pseudoword"}
    assert (t_test.design, f_test.design) == ("one_sample", "contrast_indicators")
    assert t_test.combine_runs and f_test.combine_runs
    assert set(t_test.contrasts_out) == {"task_vs_baseline", "word_gt_pseudo"}
    assert f_test.contrasts_out == ()  # its only contrast is an F test: terminal
    (any_words,) = f_test.node.contrasts
    assert any_words.weights == ((1.0, 0.0), (0.0, 1.0)) and any_words.test == "F"


@needs_realdata
def test_wildcards_of_ds2799_expand_on_real_fmriprep_columns():
    document = json.loads((MODELS / "model-ds2799_desc-compcop_smdl.json").read_text())
    del document["Nodes"][0]["Model"]["Options"]["LowPassFilterCutoffHz"]
    node = parse_model(document, "compcor.json").nodes[0]
    table = read_confounds(CONFOUNDS_TSV).apply(pd.to_numeric, errors="coerce")
    inputs = map_run_node(node, None, table, TR_S, len(table))
    columns = list(table.columns)
    expected = []
    for pattern in ("rot*", "trans*", "a_comp_cor_??"):
        expected += [c for c in columns if fnmatchcase(c, pattern) and c not in expected]
    assert inputs.confound_columns == tuple(expected)
    assert "rot_x_derivative1_power2" in expected and "a_comp_cor_05" in expected
    assert inputs.conditions == () and inputs.high_pass_hz == 0.01
    assert not inputs.confounds.isna().any().any()


# --- transformations against closed forms -------------------------------------------------


def transformed(instructions, seed: int = 2):
    events, confounds = synthetic_run(seed)
    return apply_instructions(instructions, events, confounds, TR_S, N_SCANS), events, confounds


def test_factor_gives_one_indicator_per_level():
    run, events, _ = transformed([{"Name": "Factor", "Input": ["trial_type"]}])
    assert "trial_type" not in run.sparse
    for level in events["trial_type"].unique():
        table = run.sparse[f"trial_type.{level}"]
        np.testing.assert_array_equal(table["amplitude"], (events["trial_type"] == level) * 1.0)
        np.testing.assert_array_equal(table["onset"], events["onset"])


def test_scale_demeans_and_divides_by_the_sample_sd():
    run, events, _ = transformed([{"Name": "Scale", "Input": ["RT"], "Output": ["RT_z"]}])
    rt = events["RT"].to_numpy()
    np.testing.assert_allclose(run.sparse["RT_z"]["amplitude"], (rt - rt.mean()) / rt.std(ddof=1))
    np.testing.assert_array_equal(run.sparse["RT"]["amplitude"], rt)  # input kept


def test_threshold_binarize_and_product():
    run, events, _ = transformed(
        [
            {"Name": "Threshold", "Input": ["gain"], "Threshold": 10, "Binarize": True,
             "Output": ["trials"]},
            {"Name": "Product", "Input": ["RT", "loss"], "Output": "rt_x_loss"},
        ]
    )  # fmt: skip
    np.testing.assert_array_equal(run.sparse["trials"]["amplitude"], events["gain"] >= 10)
    np.testing.assert_allclose(run.sparse["rt_x_loss"]["amplitude"], events["RT"] * events["loss"])


def test_orthogonalize_leaves_the_residual_of_an_ols_fit_with_intercept():
    run, events, _ = transformed(
        [{"Name": "Orthogonalize", "Input": ["RT"], "Other": ["gain"], "Output": ["RT_orth"]}]
    )
    x = np.column_stack([np.ones(len(events)), events["gain"]])
    beta = np.linalg.lstsq(x, events["RT"], rcond=None)[0]
    expected = events["RT"] - events["gain"] * beta[1]
    result = run.sparse["RT_orth"]["amplitude"].to_numpy()
    np.testing.assert_allclose(result, expected)
    assert abs(np.corrcoef(result, events["gain"])[0, 1]) < 1e-10


def test_split_keeps_each_levels_events():
    run, events, _ = transformed([{"Name": "Split", "Input": ["RT"], "By": ["trial_type"]}])
    for level in events["trial_type"].unique():
        table = run.sparse[f"RT.trial_type[{level}]"]
        chosen = events[events["trial_type"] == level]
        np.testing.assert_array_equal(table["onset"], chosen["onset"])
        np.testing.assert_array_equal(table["amplitude"], chosen["RT"])


def test_convolve_is_recorded_not_run_and_feeds_the_design():
    document = _ds003_like(
        [
            {"Name": "Factor", "Input": ["trial_type"]},
            {"Name": "Scale", "Input": ["RT"], "Rescale": False, "Output": ["rt_c"]},
            {"Name": "Convolve", "Input": ["trial_type.word", "rt_c"], "Model": "glover",
             "Derivative": True},
        ],
        ["trial_type.word", "rt_c", "csf", 1],
    )  # fmt: skip
    node = parse_model(document, "m.json").nodes[0]
    events, confounds = synthetic_run(3)
    inputs = map_run_node(node, events, confounds, TR_S, N_SCANS)
    assert inputs.hrf_model == HrfSpec("glover", time_derivative=True)
    rt_events = inputs.events[inputs.events["trial_type"] == "rt_c"]
    np.testing.assert_allclose(rt_events["modulation"], events["RT"] - events["RT"].mean())
    design = design_from(inputs)
    assert {"rt_c", "rt_c_derivative", "trial_type.word_derivative", "csf"} <= set(design)
    np.testing.assert_array_equal(design["csf"], confounds["csf"])


# --- bad models ---------------------------------------------------------------------------


def _ds003_like(instructions, x):
    return {
        "Name": "m",
        "BIDSModelVersion": "1.0.0",
        "Nodes": [
            {
                "Level": "Run",
                "Name": "run",
                "GroupBy": ["run", "subject"],
                "Transformations": {"Transformer": "pybids-transforms-v1",
                                    "Instructions": instructions},
                "Model": {"X": x, "Type": "glm"},
                "Contrasts": [
                    {"Name": "a", "ConditionList": ["trial_type.word"], "Weights": [1],
                     "Test": "t"}
                ],
            }
        ],
    }  # fmt: skip


def _mutated(change):
    document = _ds003_like([{"Name": "Factor", "Input": "trial_type"}], ["trial_type.word", 1])
    change(document)
    return document


BAD_MODELS = {
    "missing Level": (
        lambda d: d["Nodes"][0].pop("Level"),
        "Nodes[0].Level: required field missing",
    ),
    "weights length": (
        lambda d: d["Nodes"][0]["Contrasts"][0].update(Weights=[1, -1, 2]),
        "Nodes[0].Contrasts[0].Weights: 3 weights for 1 ConditionList entries",
    ),
    "test not t/F": (
        lambda d: d["Nodes"][0]["Contrasts"][0].update(Test="T"),
        "Nodes[0].Contrasts[0].Test: expected 't', 'F' or 'pass', got 'T'",
    ),
    "unknown transformation": (
        lambda d: d["Nodes"][0]["Transformations"]["Instructions"].append(
            {"Name": "Smooth", "Input": ["x"]}
        ),
        "Nodes[0].Transformations.Instructions[1].Name: unknown transformation 'Smooth'",
    ),
    "unknown argument": (
        lambda d: d["Nodes"][0]["Transformations"]["Instructions"][0].update(Levels=2),
        "Nodes[0].Transformations.Instructions[0].Levels: unknown field",
    ),
    "pandas query": (
        lambda d: d["Nodes"][0]["Transformations"]["Instructions"].append(
            {"Name": "Filter", "Input": ["RT"], "Query": "RT > 1"}
        ),
        "transformation Filter is not supported",
    ),
    "other transformer": (
        lambda d: d["Nodes"][0]["Transformations"].update(Transformer="fitlins-v2"),
        "Transformations.Transformer: Transformer 'fitlins-v2' is not supported",
    ),
    "session level": (
        lambda d: d["Nodes"][0].update(Level="Session"),
        "Nodes[0].Level: Level 'Session' is not supported",
    ),
    "model type": (
        lambda d: d["Nodes"][0]["Model"].update(Type="bayes"),
        "Nodes[0].Model.Type: expected 'glm' or 'meta', got 'bayes'",
    ),
    "x number": (
        lambda d: d["Nodes"][0]["Model"].update(X=["a", 2]),
        "Nodes[0].Model.X[1]: expected a variable name or 1, got 2",
    ),
    "t with 2-D weights": (
        lambda d: d["Nodes"][0]["Contrasts"][0].update(Weights=[[1], [1]]),
        "Nodes[0].Contrasts[0].Weights: a 't' contrast takes a 1-D list of weights",
    ),
    "F row length": (
        lambda d: d["Nodes"][0]["Contrasts"][0].update(Weights=[[1], [1, 0]], Test="F"),
        "Nodes[0].Contrasts[0].Weights[1]: 2 weights for 1 ConditionList entries",
    ),
    "edge to nowhere": (
        lambda d: d.update(Edges=[{"Source": "run", "Destination": "group"}]),
        "Edges[0].Destination: no node named 'group'",
    ),
    "convolve not last": (
        lambda d: (
            d["Nodes"][0]["Transformations"]["Instructions"][:0].clear()
            or d["Nodes"][0]["Transformations"]["Instructions"].insert(
                0, {"Name": "Convolve", "Input": ["trial_type"]}
            )
        ),
        "Instructions[1].Name: Factor after Convolve is not supported",
    ),
    "unknown hrf": (
        lambda d: d["Nodes"][0]["Model"].update(HRF={"Variables": ["a"], "Model": "afni"}),
        "Nodes[0].Model.HRF.Model: HRF model 'afni' is not supported",
    ),
    "low pass": (
        lambda d: d["Nodes"][0]["Model"].update(Options={"LowPassFilterCutoffHz": 0.1}),
        "Nodes[0].Model.Options.LowPassFilterCutoffHz: low-pass filtering is not supported",
    ),
    "version": (lambda d: d.update(BIDSModelVersion="0.9"), "BIDSModelVersion: expected 1.0.0"),
    "weight text": (
        lambda d: d["Nodes"][0]["Contrasts"][0].update(Weights=["half"]),
        "Nodes[0].Contrasts[0].Weights[0]: expected a number or a fraction",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_MODELS))
def test_bad_model_message_names_the_json_path(case):
    change, fragment = BAD_MODELS[case]
    with pytest.raises(ModelError, match=r"^bad\.json: ") as caught:
        parse_model(_mutated(change), "bad.json")
    assert fragment in str(caught.value)


def test_fractions_as_text_are_weights():
    document = _mutated(lambda d: d["Nodes"][0]["Contrasts"][0].update(Weights=["-1/3"]))
    assert parse_model(document, "m.json").nodes[0].contrasts[0].weights == ((-1 / 3,),)


def test_x_entry_matching_nothing_is_named_at_mapping_time():
    document = _ds003_like(
        [{"Name": "Factor", "Input": "trial_type"}], ["trial_type.word", "motion_*"]
    )
    node = parse_model(document, "m.json").nodes[0]
    events, confounds = synthetic_run()
    with pytest.raises(ModelError, match=r"m.json: Nodes\[0\].Model.X\[1\]: 'motion_\*' matches"):
        map_run_node(node, events, confounds, TR_S, N_SCANS)


def test_failing_transformation_is_named():
    document = _ds003_like([{"Name": "Scale", "Input": ["no_such_column"]}], [1])
    node = parse_model(document, "m.json").nodes[0]
    events, confounds = synthetic_run()
    with pytest.raises(ModelError, match=r"Instructions\[0\] \(Scale\)"):
        map_run_node(node, events, confounds, TR_S, N_SCANS)


def test_bad_json_syntax_gives_the_line(tmp_path):
    path = tmp_path / "model.json"
    path.write_text('{\n  "Name": "m",\n  "Nodes": [\n    {"Level": "Run",}\n  ]\n}\n')
    with pytest.raises(ModelError, match=r"model.json: not valid JSON: .* at line 4 column"):
        load_model(path)


def test_edges_default_to_node_order():
    document = _mutated(
        lambda d: d["Nodes"].append(
            {"Level": "Subject", "Name": "subject", "GroupBy": ["subject", "contrast"],
             "Model": {"X": [1], "Type": "meta"}, "DummyContrasts": {"Test": "t"}}
        )
    )  # fmt: skip
    model = parse_model(document, "m.json")
    assert [(e.source, e.destination) for e in model.edges] == [("run", "subject")]
    subject = node_graph(model)[1]
    assert subject.design == "fixed_effects" and subject.contrasts_in == ("a",)


# --- round trip of bids-glm's effective model --------------------------------------------


def written_model(tmp_path: Path, model: ModelSettings, conditions, confounds) -> Path:
    settings = Settings(tmp_path, tmp_path / "out", "participant", tmp_path / "work",
                        model=model, mask_combine=MaskRule("fraction", 0.5))  # fmt: skip
    path = tmp_path / "model-bidsglm_smdl.json"
    path.write_text(json.dumps(effective_model(settings, ["faces"], conditions, confounds)))
    return path


def test_effective_model_round_trip(tmp_path):
    original = ModelSettings(
        hrf_model=HrfSpec("spm", time_derivative=True),
        high_pass_hz=1 / 128,
        noise_model="ols",
        signal_scaling="none",
        smoothing_fwhm_mm=5.0,
        slice_time_ref=0.5,
        dummy_scans=2,
        fixed_effects="unweighted",
        confounds=parse_confound_strategy(["motion6", "csf", "scrub:FD=0.5"]),
        contrasts=(parse_contrast_option("faceVsHouse=face - 0.5*house - 0.5*scrambled"),),
        f_contrasts=(parse_f_contrast_option("anyFace=face; house"),),
    )
    conditions = ["face", "house", "scrambled"]
    confound_names = ["trans_x", "trans_y", "csf"]
    model = load_model(written_model(tmp_path, original, conditions, confound_names))
    model_overrides, settings_overrides = node_overrides(model.nodes[0])
    assert replace(ModelSettings(), **model_overrides) == original
    assert settings_overrides == {"mask_combine": MaskRule("fraction", 0.5)}
    rng = np.random.default_rng(4)
    events = pd.DataFrame(
        {
            "onset": np.arange(9) * 20.0,
            "duration": 2.0,
            "trial_type": conditions * 3,
            "modulation": rng.uniform(0.5, 2, 9),
        }
    )
    confounds = pd.DataFrame(rng.normal(size=(N_SCANS, 3)), columns=confound_names)
    inputs = map_run_node(model.nodes[0], events, confounds, TR_S, N_SCANS)
    assert inputs.conditions == tuple(conditions)
    assert [c.name for c in inputs.contrasts] == [*conditions, "faceVsHouse"]
    assert dict(inputs.contrasts[-1].weights) == dict(original.contrasts[0].weights)
    assert [dict(r) for r in inputs.f_contrasts[0].rows] == [{"face": 1.0}, {"house": 1.0}]
    reference = make_design_matrix(
        frame_times(N_SCANS, TR_S), events, hrf_model=original.hrf_model,
        high_pass_hz=original.high_pass_hz, confounds=confounds,
    )  # fmt: skip
    np.testing.assert_array_equal(design_from(inputs).to_numpy(), reference.to_numpy())


def test_demo_effective_model_loads_back_to_the_default_settings():
    path = Path("/tmp/smdemo/output/model-bidsglm_smdl.json")
    if not path.is_file():
        pytest.skip("run bids-glm-demo /tmp/smdemo to produce a written model")
    model = load_model(path)
    overrides, settings = node_overrides(model.nodes[0])
    assert replace(ModelSettings(), **overrides) == ModelSettings()
    assert settings == {"mask_combine": INTERSECTION}
    assert [s.design for s in node_graph(model)] == ["run", "fixed_effects", "one_sample"]


def test_model_without_hrf_convolves_with_the_default_and_keeps_model_copy_intact():
    document = _mutated(lambda d: None)
    frozen = copy.deepcopy(document)
    node = parse_model(document, "m.json").nodes[0]
    assert document == frozen
    events, confounds = synthetic_run()
    spm = HrfSpec("spm")
    inputs = map_run_node(node, events, confounds, TR_S, N_SCANS, default_hrf_model=spm)
    assert inputs.hrf_model == spm and inputs.conditions == ("trial_type.word",)
