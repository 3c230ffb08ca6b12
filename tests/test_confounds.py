"""Confound strategies on real fMRIPrep confounds files of three naming generations.

Files used:

- fMRIPrep 20.2.1 (real, ``../shared/realdata/fmriprep_confounds``; skipped when absent);
- the two confounds files shipped inside the nilearn wheel: a 1.4 - 20.1 era
  ``desc-confounds_regressors`` file (``a_comp_cor_NN`` for all three masks) and a 21+
  ``desc-confounds_timeseries`` file (``c_comp_cor`` / ``w_comp_cor`` split out);
- fMRIPrep 1.0 - 1.1 CamelCase: nilearn ships none, so it is built here from the 1.4-era file
  by keeping the columns that generation wrote and renaming them (``X``, ``RotX``,
  ``aCompCor00``, ``FramewiseDisplacement``, ...); no derivative/power columns, no sidecar.

nilearn's ``load_confounds`` is the oracle where its semantics match ours. Where they differ
(and how the comparison accounts for it): nilearn fills first-row n/a with the second row,
we use the column mean (rows >= 1 are compared, row 0 is checked against the mean); nilearn
always censors non-steady-state volumes, we only with ``non_steady_state``; nilearn's scrub
also drops segments shorter than 5 volumes (``scrub=0`` here switches that off); nilearn
demeans (``demean=False`` here) and sorts columns by name (sets are compared); nilearn's
``n_compcor="all"`` takes every combined-mask component in the file, we stop at 50 % of
variance (identical on fMRIPrep's default output); nilearn rejects CamelCase files.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bids_glm.inputs.confounds import (
    PRESETS,
    ConfoundError,
    ConfoundStrategy,
    ScrubRule,
    parse_confound_strategy,
    read_confounds,
    read_confounds_sidecar,
    select_confounds,
)

REAL_TSV = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "realdata"
    / "fmriprep_confounds"
    / "sub-04_task-mixedgamblestask_run-01_desc-confounds_timeseries.tsv"
)
MOTION = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
SUFFIXES = ["", "_derivative1", "_power2", "_derivative1_power2"]
# fMRIPrep 1.0 - 1.1 spelling of each current column that generation wrote.
CAMEL = {
    "trans_x": "X",
    "trans_y": "Y",
    "trans_z": "Z",
    "rot_x": "RotX",
    "rot_y": "RotY",
    "rot_z": "RotZ",
    "framewise_displacement": "FramewiseDisplacement",
    "std_dvars": "stdDVARS",
    "dvars": "non-stdDVARS",
    "global_signal": "GlobalSignal",
    "white_matter": "WhiteMatter",
    "csf": "CSF",
}
CAMEL_NUMBERED = {
    "a_comp_cor_": "aCompCor",
    "t_comp_cor_": "tCompCor",
    "cosine": "Cosine",
    "non_steady_state_outlier": "NonSteadyStateOutlier",
}


def nilearn_data() -> Path:
    nilearn = pytest.importorskip("nilearn")
    return Path(nilearn.__file__).parent / "interfaces" / "fmriprep" / "data"


def to_camel_case(table: pd.DataFrame) -> pd.DataFrame:
    """Keep the columns fMRIPrep 1.0 - 1.1 wrote, under their names of that time."""
    renamed = {}
    for column in table.columns:
        if column in CAMEL:
            renamed[column] = CAMEL[column]
        for stem, camel in CAMEL_NUMBERED.items():
            if re.fullmatch(rf"{stem}\d+", column):
                renamed[column] = camel + column[len(stem) :]
    return table[list(renamed)].rename(columns=renamed)


def load(path: Path):
    return read_confounds(path), read_confounds_sidecar(path)


def generation(name: str):
    """(table, sidecar, path) of one naming generation."""
    if name == "20.2.1-real":
        if not REAL_TSV.is_file():
            pytest.skip(f"real data absent: {REAL_TSV}")
        return (*load(REAL_TSV), REAL_TSV)
    if name == "21-nilearn":
        path = nilearn_data() / "test-v21_desc-confounds_timeseries.tsv"
        return (*load(path), path)
    path = nilearn_data() / "test_desc-confounds_regressors.tsv"
    if name == "1.4-nilearn":
        return (*load(path), path)
    return to_camel_case(read_confounds(path)), None, path.with_name("legacy_confounds.tsv")


def acompcor_from_json(sidecar: dict, columns) -> list[str]:
    """Combined-mask components, by cumulative variance, until 50 % is reached."""
    combined = sorted(
        (meta["CumulativeVarianceExplained"], name)
        for name, meta in sidecar.items()
        if meta.get("Method") == "aCompCor" and meta.get("Mask") == "combined"
    )
    kept = []
    for cumulative, name in combined:
        if name in columns:
            kept.append(name)
            if cumulative >= 0.5:
                break
    return kept


def numbered(stem: str, numbers) -> list[str]:
    return [f"{stem}{n:02d}" for n in numbers]


GENERATIONS = ["20.2.1-real", "1.4-nilearn", "21-nilearn", "1.0-camelcase"]
MODERN_EXPECTED = {
    "motion6": MOTION,
    "motion24": [m + s for m in MOTION for s in SUFFIXES],
    "wm_csf": ["white_matter", "csf"],
    "global_signal": ["global_signal"],
}
EXPECTED = {
    "20.2.1-real": {
        **MODERN_EXPECTED,
        "acompcor": numbered("a_comp_cor_", range(62, 114)),
        "cosine": numbered("cosine", range(4)),
        "non_steady_state": [],
    },
    "1.4-nilearn": {
        **MODERN_EXPECTED,
        "acompcor": numbered("a_comp_cor_", range(57)),
        "cosine": numbered("cosine", range(4)),
        "non_steady_state": ["non_steady_state_outlier00"],
    },
    "21-nilearn": {
        **MODERN_EXPECTED,
        "acompcor": numbered("a_comp_cor_", range(5)),
        "cosine": ["cosine00"],
        "non_steady_state": numbered("non_steady_state_outlier", range(3)),
    },
    "1.0-camelcase": {
        "motion6": ["X", "Y", "Z", "RotX", "RotY", "RotZ"],
        "motion24": [m + s for m in ["X", "Y", "Z", "RotX", "RotY", "RotZ"] for s in SUFFIXES],
        "wm_csf": ["WhiteMatter", "CSF"],
        "global_signal": ["GlobalSignal"],
        "acompcor": numbered("aCompCor", range(5)),
        "cosine": numbered("Cosine", range(4)),
        "non_steady_state": ["NonSteadyStateOutlier00"],
    },
}
CENSORED_NON_STEADY = {
    "20.2.1-real": [],
    "1.4-nilearn": [0],
    "21-nilearn": [0, 1, 2],
    "1.0-camelcase": [0],
}


@pytest.mark.parametrize("gen", GENERATIONS)
@pytest.mark.parametrize("preset", [*PRESETS, "non_steady_state"])
def test_preset_selects_expected_columns(gen, preset):
    table, sidecar, path = generation(gen)
    selection = select_confounds(
        table, sidecar, parse_confound_strategy([preset]), path, len(table)
    )
    expected = EXPECTED[gen][preset]
    assert selection.columns_by_source[preset] == expected
    if preset == "non_steady_state":
        assert selection.regressors.shape == (len(table), 0)
        assert np.flatnonzero(selection.censored).tolist() == CENSORED_NON_STEADY[gen]
        return
    assert list(selection.regressors.columns) == expected
    assert not selection.censored.any()
    assert not selection.regressors.isna().to_numpy().any()
    in_file = [c for c in expected if c in table.columns]
    observed = table[in_file].notna().to_numpy()
    np.testing.assert_array_equal(
        selection.regressors[in_file].to_numpy()[observed], table[in_file].to_numpy()[observed]
    )


@pytest.mark.parametrize("gen", ["20.2.1-real", "1.4-nilearn", "21-nilearn"])
def test_acompcor_matches_sidecar_variance_rule(gen):
    table, sidecar, path = generation(gen)
    selection = select_confounds(
        table, sidecar, parse_confound_strategy(["acompcor"]), path, len(table)
    )
    assert selection.columns_by_source["acompcor"] == acompcor_from_json(sidecar, table.columns)


def test_acompcor_without_sidecar_takes_first_five_and_warns(caplog):
    table, _, path = generation("1.4-nilearn")
    with caplog.at_level(logging.WARNING, logger="bids_glm"):
        selection = select_confounds(
            table, None, parse_confound_strategy(["acompcor"]), path, len(table)
        )
    assert selection.columns_by_source["acompcor"] == numbered("a_comp_cor_", range(5))
    assert "first 5 a_comp_cor" in caplog.text


def test_acompcor_stops_at_half_variance_when_all_components_kept():
    """With every component in the file (no fMRIPrep truncation), 50 % still decides."""
    names = numbered("a_comp_cor_", range(6))
    sidecar = {
        n: {"Method": "aCompCor", "Mask": "combined", "CumulativeVarianceExplained": c}
        for n, c in zip(names, [0.2, 0.35, 0.49, 0.5, 0.7, 0.9], strict=True)
    }
    sidecar["a_comp_cor_06"] = {
        "Method": "aCompCor",
        "Mask": "CSF",
        "CumulativeVarianceExplained": 0.1,
    }
    table = pd.DataFrame(np.arange(70.0).reshape(10, 7), columns=[*names, "a_comp_cor_06"])
    selection = select_confounds(
        table, sidecar, parse_confound_strategy(["acompcor"]), Path("c.tsv"), 10
    )
    assert list(selection.regressors.columns) == names[:4]


def test_computed_motion_expansions_equal_fmriprep_columns():
    """Dropping fMRIPrep's derivative/power columns and recomputing them gives the same values."""
    table, _, path = generation("21-nilearn")
    expansions = [m + s for m in MOTION for s in SUFFIXES[1:]]
    selection = select_confounds(
        table.drop(columns=expansions), None, parse_confound_strategy(["motion24"]), path, 30
    )
    computed = selection.regressors[expansions]
    reference = table[expansions]
    observed = reference.notna().to_numpy()
    assert observed[1:].all()
    assert (~observed[0]).sum() == 12  # derivative1 and derivative1_power2 start with n/a
    np.testing.assert_allclose(computed.to_numpy()[observed], reference.to_numpy()[observed])
    np.testing.assert_allclose(
        computed.to_numpy()[0, ~observed[0]], reference.mean().to_numpy()[~observed[0]]
    )


def test_camelcase_motion24_equals_modern_motion24():
    modern, _, path = generation("1.4-nilearn")
    legacy, _, _ = generation("1.0-camelcase")
    strategy = parse_confound_strategy(["motion24"])
    ours = select_confounds(legacy, None, strategy, path, 30).regressors
    drop_first = modern.drop(columns=[m + s for m in MOTION for s in SUFFIXES[1:]])
    reference = select_confounds(drop_first, None, strategy, path, 30).regressors
    np.testing.assert_array_equal(ours.to_numpy(), reference.to_numpy())


def nilearn_load(tmp_path: Path, tsv: Path, **kwargs):
    """nilearn's load_confounds on a copy of ``tsv`` (+ sidecar) next to a stub image."""
    interfaces = pytest.importorskip("nilearn.interfaces.fmriprep")
    stem = "sub-01_task-t"
    shutil.copy(tsv, tmp_path / f"{stem}_desc-confounds_timeseries.tsv")
    shutil.copy(tsv.with_suffix(".json"), tmp_path / f"{stem}_desc-confounds_timeseries.json")
    image = tmp_path / f"{stem}_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz"
    image.touch()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return interfaces.load_confounds(str(image), demean=False, **kwargs)


NILEARN_CASES = [
    (["motion6"], {"strategy": ("motion",), "motion": "basic"}),
    (["motion24"], {"strategy": ("motion",), "motion": "full"}),
    (["wm_csf"], {"strategy": ("wm_csf",), "wm_csf": "basic"}),
    (["global_signal"], {"strategy": ("global_signal",), "global_signal": "basic"}),
    (
        ["acompcor", "cosine"],
        {"strategy": ("compcor", "high_pass"), "compcor": "anat_combined", "n_compcor": "all"},
    ),
]


@pytest.mark.parametrize("gen", ["20.2.1-real", "1.4-nilearn", "21-nilearn"])
@pytest.mark.parametrize(("items", "kwargs"), NILEARN_CASES)
def test_regressors_match_nilearn(tmp_path, gen, items, kwargs):
    table, sidecar, path = generation(gen)
    ours = select_confounds(table, sidecar, parse_confound_strategy(items), path, len(table))
    theirs, _ = nilearn_load(tmp_path, path, **kwargs)
    assert set(ours.regressors.columns) == set(theirs.columns)
    columns = list(ours.regressors.columns)
    np.testing.assert_allclose(
        ours.regressors.iloc[1:].to_numpy(), theirs[columns].iloc[1:].to_numpy(), rtol=1e-12
    )
    first_row_na = [c for c in columns if c in table.columns and pd.isna(table[c].iloc[0])]
    np.testing.assert_allclose(
        ours.regressors[first_row_na].iloc[0], table[first_row_na].mean(), rtol=1e-12
    )


@pytest.mark.parametrize("gen", ["20.2.1-real", "1.4-nilearn", "21-nilearn"])
@pytest.mark.parametrize(("fd_quantile", "dvars_quantile"), [(0.8, 0.8), (0.7, None), (None, 0.6)])
def test_scrubbing_matches_nilearn(tmp_path, gen, fd_quantile, dvars_quantile):
    """Thresholds at quantiles of each file's own FD / std_dvars (scales differ by file)."""
    table, sidecar, path = generation(gen)
    fd_mm, dvars = (
        None if q is None else float(np.nanquantile(table[column], q))
        for column, q in (("framewise_displacement", fd_quantile), ("std_dvars", dvars_quantile))
    )
    rule = ScrubRule(fd_mm, dvars)
    strategy = ConfoundStrategy(scrub=rule, non_steady_state=True)
    ours = select_confounds(table, sidecar, strategy, path, len(table))
    _, sample_mask = nilearn_load(
        tmp_path,
        path,
        strategy=("scrub",),
        scrub=0,
        fd_threshold=np.inf if fd_mm is None else fd_mm,
        std_dvars_threshold=np.inf if dvars is None else dvars,
    )
    kept = np.arange(len(table)) if sample_mask is None else sample_mask
    assert 0 < len(kept) < len(table)
    np.testing.assert_array_equal(np.flatnonzero(~ours.censored), kept)


def scrub_table(legacy: bool = False) -> pd.DataFrame:
    table = pd.DataFrame(
        {
            "framewise_displacement": [np.nan, 0.1, 0.6, 0.5, 0.2, 0.7],
            "std_dvars": [np.nan, 1.0, 1.0, 1.6, 1.5, 2.0],
            "trans_x": [0.0, 0.1, 0.2, 0.3, 0.2, 0.1],
        }
    )
    return table.rename(columns=CAMEL) if legacy else table


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize(
    ("item", "censored", "columns"),
    [
        ("scrub:FD=0.5", [2, 5], ["framewise_displacement"]),
        ("scrub:DVARS=1.5", [3, 5], ["std_dvars"]),
        ("scrub:FD=0.5,DVARS=1.5", [2, 3, 5], ["framewise_displacement", "std_dvars"]),
        ("scrub: dvars = 1.5 , fd = 0.5", [2, 3, 5], ["framewise_displacement", "std_dvars"]),
        ("scrub:FD=0.05", [1, 2, 3, 4, 5], ["framewise_displacement"]),
    ],
)
def test_scrub_thresholds(legacy, item, censored, columns):
    table = scrub_table(legacy)
    strategy = parse_confound_strategy(["trans_*" if not legacy else "X", item])
    selection = select_confounds(table, None, strategy, Path("c.tsv"), 6)
    assert np.flatnonzero(selection.censored).tolist() == censored
    expected_columns = [CAMEL[c] for c in columns] if legacy else columns
    assert selection.columns_by_source[strategy.scrub.spec] == expected_columns
    assert selection.regressors.shape == (6, 1)


def test_scrub_rule_missing_column_lists_columns():
    table = scrub_table().drop(columns="std_dvars")
    with pytest.raises(ConfoundError, match=r"std_dvars \(or stdDVARS\).*trans_x"):
        select_confounds(table, None, parse_confound_strategy(["scrub:DVARS=1"]), Path("c.tsv"), 6)


def test_censoring_everything_is_an_error():
    strategy = parse_confound_strategy(["scrub:FD=0.01"])
    table = scrub_table().fillna(1.0)
    with pytest.raises(ConfoundError, match="censors all 6 volumes"):
        select_confounds(table, None, strategy, Path("c.tsv"), 6)


def test_non_steady_state_only_when_requested():
    table, sidecar, path = generation("21-nilearn")
    plain = select_confounds(table, sidecar, parse_confound_strategy(["motion6"]), path, 30)
    assert not plain.censored.any()
    assert not any("non_steady" in c for c in plain.regressors.columns)


def test_n_a_filled_with_column_mean_not_zero():
    table = pd.DataFrame(
        {
            "trans_x": [1.0, 2.0, 4.0, 8.0],
            "trans_x_derivative1": [np.nan, 1.0, 2.0, 6.0],
            "white_matter": [10.0, np.nan, 30.0, 50.0],
            "csf": ["n/a", "1", "2", "3"],
        }
    )
    selection = select_confounds(
        table, None, parse_confound_strategy(["trans_x*", "wm_csf"]), Path("c.tsv"), 4
    )
    regressors = selection.regressors
    assert regressors["trans_x_derivative1"].tolist() == [3.0, 1.0, 2.0, 6.0]
    assert regressors["white_matter"].tolist() == [10.0, 30.0, 30.0, 50.0]
    assert regressors["csf"].tolist() == [2.0, 1.0, 2.0, 3.0]
    assert regressors.dtypes.eq(float).all()


def test_order_and_duplicates_kept_once():
    table, sidecar, path = generation("1.4-nilearn")
    items = ["wm_csf", "motion6", "motion24", "trans_x", "rot_*", "csf", "motion6"]
    selection = select_confounds(table, sidecar, parse_confound_strategy(items), path, 30)
    motion24 = [m + s for m in MOTION for s in SUFFIXES]
    expected = ["white_matter", "csf", *MOTION] + [c for c in motion24 if c not in MOTION]
    assert list(selection.regressors.columns) == expected
    assert selection.columns_by_source["trans_x"] == ["trans_x"]
    assert selection.columns_by_source["rot_*"] == [
        c for c in table.columns if c.startswith("rot_")
    ]
    assert list(selection.columns_by_source) == [
        "wm_csf",
        "motion6",
        "motion24",
        "trans_x",
        "rot_*",
        "csf",
    ]


def test_parse_strategy_fields():
    strategy = parse_confound_strategy(
        ["motion24", "trans_*", "non_steady_state", "scrub:FD=0.5,DVARS=1.5", "GlobalSignal"]
    )
    assert strategy == ConfoundStrategy(
        presets=("motion24",),
        patterns=("trans_*", "GlobalSignal"),
        scrub=ScrubRule(fd_mm=0.5, dvars=1.5),
        non_steady_state=True,
    )
    assert strategy.scrub.spec == "scrub:FD=0.5,DVARS=1.5"


@pytest.mark.parametrize(
    ("item", "hint"),
    [
        ("motion12", "unknown preset"),
        ("Motion24", "did you mean 'motion24'"),
        ("wm-csf", "did you mean 'wm_csf'"),
        ("compcor", "unknown preset"),
        ("acompcor:5", "unknown option 'acompcor'"),
        ("", "empty"),
    ],
)
def test_unknown_preset_lists_presets(item, hint):
    with pytest.raises(ConfoundError) as info:
        parse_confound_strategy(["motion6", item])
    message = str(info.value)
    assert hint in message
    if item:
        assert all(preset in message for preset in PRESETS)


@pytest.mark.parametrize(
    "item",
    [
        "scrub",
        "scrub:",
        "scrub:FD",
        "scrub:FD=",
        "scrub:FD=abc",
        "scrub:FD=-1",
        "scrub:FD=nan",
        "scrub:XY=1",
        "scrub:FD=0.5,FD=0.3",
        "scrub:FD=0.5;DVARS=2",
    ],
)
def test_malformed_scrub_shows_expected_form(item):
    with pytest.raises(ConfoundError, match=re.escape("scrub:FD=<mm>,DVARS=<std>")):
        parse_confound_strategy([item])


def test_two_scrub_rules_rejected():
    with pytest.raises(ConfoundError, match="only one scrub rule"):
        parse_confound_strategy(["scrub:FD=0.5", "scrub:DVARS=2"])


def test_unknown_preset_in_strategy_object_rejected():
    with pytest.raises(ConfoundError, match=r"motion12.*presets: motion6"):
        ConfoundStrategy(presets=("motion12",))


def test_pattern_matching_nothing_lists_columns():
    table = scrub_table()
    with pytest.raises(ConfoundError) as info:
        select_confounds(table, None, parse_confound_strategy(["tran_*"]), Path("c.tsv"), 6)
    message = str(info.value)
    assert message.startswith("c.tsv: --confounds 'tran_*'")
    assert "columns present: framewise_displacement, std_dvars, trans_x" in message


def test_preset_missing_column_lists_columns():
    table = scrub_table()
    with pytest.raises(ConfoundError) as info:
        select_confounds(table, None, parse_confound_strategy(["wm_csf"]), Path("c.tsv"), 6)
    message = str(info.value)
    assert "preset 'wm_csf' needs column(s) white_matter (or WhiteMatter), csf (or CSF)" in message
    assert "columns present: framewise_displacement, std_dvars, trans_x" in message


def test_row_count_must_match_volumes():
    with pytest.raises(ConfoundError, match="6 rows, expected one per volume \\(5 volumes\\)"):
        select_confounds(scrub_table(), None, parse_confound_strategy(["trans_x"]), Path("c"), 5)


def test_non_numeric_value_is_an_error():
    table = scrub_table().astype(object)
    table.loc[3, "trans_x"] = "oops"
    with pytest.raises(ConfoundError, match="'trans_x' row 4 holds 'oops'"):
        select_confounds(table, None, parse_confound_strategy(["trans_x"]), Path("c"), 6)


def test_all_n_a_column_is_an_error():
    table = scrub_table().assign(csf=np.nan, white_matter=1.0)
    with pytest.raises(ConfoundError, match="csf hold no numbers"):
        select_confounds(table, None, parse_confound_strategy(["wm_csf"]), Path("c"), 6)


def test_sidecar_reading(tmp_path):
    tsv = tmp_path / "x_desc-confounds_timeseries.tsv"
    scrub_table().to_csv(tsv, sep="\t", index=False, na_rep="n/a")
    assert read_confounds_sidecar(tsv) is None
    table = read_confounds(tsv)
    assert np.isnan(table["framewise_displacement"].iloc[0])
    tsv.with_suffix(".json").write_text(json.dumps({"csf": {"Method": "Mean"}}))
    assert read_confounds_sidecar(tsv) == {"csf": {"Method": "Mean"}}
    tsv.with_suffix(".json").write_text("{not json")
    with pytest.raises(ConfoundError, match="not a readable JSON sidecar"):
        read_confounds_sidecar(tsv)
