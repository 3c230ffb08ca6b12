"""Events files as real datasets write them: reading, cleaning rules, parametric modulators."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bids_glm.design.hrf_spec import HrfSpec
from bids_glm.design.matrix import frame_times, make_design_matrix
from bids_glm.errors import InputError
from bids_glm.inputs.events import EventSpec, clean_events, read_events

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
CLEAN_COLUMNS = ["onset", "duration", "trial_type", "modulation"]
DEFAULT = EventSpec()


def write_tsv(path: Path, rows: list[str], *, end: str = "\n", prefix: bytes = b"") -> Path:
    path.write_bytes(prefix + "".join(row + end for row in rows).encode("utf-8"))
    return path


def clean_file(path: Path, caplog, scan_duration_s: float = 100.0, spec: EventSpec = DEFAULT):
    with caplog.at_level(logging.WARNING, logger="bids_glm"):
        return clean_events(read_events(path), path, scan_duration_s, spec)


def frame(onset, duration, trial_type, modulation) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "onset": np.asarray(onset, dtype=float),
            "duration": np.asarray(duration, dtype=float),
            "trial_type": pd.Series(trial_type, dtype=object),
            "modulation": np.asarray(modulation, dtype=float),
        }
    )


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# --- reading -------------------------------------------------------------------------------


def test_reading_tolerates_bom_crlf_trailing_tabs_blank_lines_and_padded_names(tmp_path):
    path = write_tsv(
        tmp_path / "sub-01_task-x_events.tsv",
        [
            " onset\tduration \ttrial_type\tstim_file\t",
            "1.5\t2\t face \tface1.png\t",
            "",
            "3\t2\t1\tn/a\t\t",
        ],
        end="\r\n",
        prefix=b"\xef\xbb\xbf",
    )
    table = read_events(path)
    assert list(table.columns) == ["onset", "duration", "trial_type", "stim_file"]
    assert list(table.index) == [2, 4]  # line numbers in the file, the blank line counted
    assert table.loc[2].tolist() == ["1.5", "2", "face", "face1.png"]
    assert table.loc[4].tolist() == ["3", "2", "1", None]


def test_short_rows_are_padded_with_na_and_long_rows_are_an_error(tmp_path):
    path = write_tsv(tmp_path / "events.tsv", ["onset\tduration\ttrial_type", "1\t2"])
    assert read_events(path).loc[2].tolist() == ["1", "2", None]
    write_tsv(path, ["onset\tduration", "1\t2", "3\t4\tleft"])
    with pytest.raises(
        InputError, match=r"events.tsv: line 3 has 3 values but the header names 2"
    ):
        read_events(path)


def test_repeated_or_unnamed_columns(tmp_path, caplog):
    path = write_tsv(tmp_path / "events.tsv", ["onset\tduration\t onset", "1\t2\t3"])
    with pytest.raises(InputError, match=r"column 'onset' appears twice in the header"):
        read_events(path)
    write_tsv(path, ["onset\t\tduration", "1\tx\t2"])
    with caplog.at_level(logging.WARNING, logger="bids_glm"):
        table = read_events(path)
    assert list(table.columns) == ["onset", "duration"]
    assert "events.tsv: column 2 has values but no name in the header; ignored" in caplog.text


@pytest.mark.parametrize("content", [b"", b"\n\n", b"onset\tduration\ttrial_type\n"])
def test_empty_events_file_gives_an_empty_table_and_a_warning(tmp_path, caplog, content):
    path = tmp_path / "sub-01_task-rest_events.tsv"
    path.write_bytes(content)
    clean = clean_file(path, caplog)
    assert clean.empty and list(clean.columns) == CLEAN_COLUMNS
    assert warnings_of(caplog) == [f"{path}: no events; the run has no condition regressors"]
    design = make_design_matrix(frame_times(10, 2.0), clean if len(clean) else None)
    assert list(design.columns)[-1] == "constant"


# --- required columns and malformed values ------------------------------------------------


def test_missing_onset_or_duration_names_the_file_and_the_columns_found(tmp_path, caplog):
    path = write_tsv(tmp_path / "events.tsv", ["onset\ttrial_type\tresponse_time", "1\ta\t0.5"])
    with pytest.raises(
        InputError,
        match=r"events.tsv: required column\(s\) duration missing; found: onset, trial_type, "
        r"response_time",
    ):
        clean_file(path, caplog)


def test_explicit_condition_column_must_exist(tmp_path, caplog):
    path = write_tsv(tmp_path / "events.tsv", ["onset\tduration\ttrial_type", "1\t2\ta"])
    with pytest.raises(
        InputError,
        match=r"condition \(--condition-column\) column\(s\) stim_type missing; "
        r"found: onset, duration, trial_type",
    ):
        clean_file(path, caplog, spec=EventSpec(condition_column="stim_type"))


def test_without_trial_type_all_events_form_one_condition(tmp_path, caplog):
    path = write_tsv(
        tmp_path / "events.tsv", ["onset\tduration\tresponse_time", "1\t2\tn/a", "10\t2\t0.7"]
    )
    clean = clean_file(path, caplog)
    pd.testing.assert_frame_equal(clean, frame([1, 10], [2, 2], ["events"] * 2, [1, 1]))
    assert warnings_of(caplog) == []


def test_non_numeric_onset_reports_file_column_line_and_value(tmp_path, caplog):
    path = write_tsv(
        tmp_path / "events.tsv", ["onset\tduration\ttrial_type", "1\t2\ta", "", "soon\t1\tb"]
    )
    with pytest.raises(
        InputError,
        match=r"events.tsv: column 'onset' line 4: expected a number or n/a, found 'soon'",
    ):
        clean_file(path, caplog)
    write_tsv(path, ["onset\tduration\ttrial_type", "1\tinf\ta"])
    with pytest.raises(InputError, match=r"column 'duration' line 2: .* found 'inf'"):
        clean_file(path, caplog)


# --- dropped and repaired rows -------------------------------------------------------------


def test_na_condition_and_na_onset_rows_are_dropped_and_counted(tmp_path, caplog):
    path = write_tsv(
        tmp_path / "sub-01_task-stroop_events.tsv",
        [
            "onset\tduration\ttrial_type\tresponse_time\tstim_file",
            "0.5\t1\tcongruent\t0.61\tstim/red.png",
            "2.5\t1\tn/a\tn/a\tn/a",
            "n/a\t1\tincongruent\t0.72\tstim/blue.png",
            "6.5\t1\t   \t0.55\tstim/red.png",
            "8.5\t1\tincongruent\tn/a\tstim/green.png",
        ],
    )
    clean = clean_file(path, caplog)
    pd.testing.assert_frame_equal(
        clean, frame([0.5, 8.5], [1, 1], ["congruent", "incongruent"], [1, 1])
    )
    assert warnings_of(caplog) == [f"{path}: 3 event(s) with n/a onset or n/a trial_type dropped"]


def test_na_and_negative_durations_become_impulses(tmp_path, caplog):
    path = write_tsv(
        tmp_path / "events.tsv",
        [
            "onset\tduration\ttrial_type",
            "1\tn/a\tcue",
            "3\t-0.5\tcue",
            "5\t2\tcue",
            "7\tn/a\tn/a",
            "9\t-2\tprobe",
        ],
    )
    clean = clean_file(path, caplog)
    pd.testing.assert_frame_equal(
        clean, frame([1, 3, 5, 9], [0, 0, 2, 0], ["cue", "cue", "cue", "probe"], [1] * 4)
    )
    assert f"{path}: 1 event(s) with n/a duration modelled as impulses (0 s)" in caplog.text
    assert f"{path}: 2 event(s) with negative duration set to 0 s (impulse)" in caplog.text


def test_negative_onsets_are_silent_and_late_onsets_warned(tmp_path, caplog):
    path = write_tsv(
        tmp_path / "events.tsv",
        ["onset\tduration\ttrial_type", "-4\t2\tpre", "50\t2\tgo", "100\t1\tgo", "130\t1\tgo"],
    )
    clean = clean_file(path, caplog, scan_duration_s=100.0)
    assert clean["onset"].tolist() == [-4.0, 50.0, 100.0, 130.0]
    assert warnings_of(caplog) == [
        f"{path}: 2 event(s) start at or after the end of the scan (100 s); kept, but they "
        "add nothing to the regressors"
    ]


def test_numeric_condition_values_stay_text(tmp_path, caplog):
    path = write_tsv(
        tmp_path / "events.tsv",
        ["onset\tduration\ttrial_type", "1\t1\t1", "3\t1\t2", "5\t1\t 2 ", "7\t1\t1.5"],
    )
    clean = clean_file(path, caplog)
    assert clean["trial_type"].tolist() == ["1", "2", "2", "1.5"]
    parsed = pd.DataFrame(
        {"onset": [1.0, 3.0, 5.0], "duration": 1.0, "trial_type": [1.0, 2.0, np.nan]}
    )
    clean = clean_events(parsed, Path("parsed.tsv"), 100.0)
    assert clean["trial_type"].tolist() == ["1", "2"]


# --- amplitude -----------------------------------------------------------------------------


def test_modulation_column_scales_and_na_amplitude_drops_the_row(tmp_path, caplog):
    path = write_tsv(
        tmp_path / "events.tsv",
        [
            "onset\tduration\ttrial_type\tmodulation",
            "1\t1\tgain\t2.5",
            "3\t1\tgain\tn/a",
            "5\t1\tloss\t-1",
            "7\t1\tn/a\tn/a",
        ],
    )
    clean = clean_file(path, caplog)
    pd.testing.assert_frame_equal(clean, frame([1, 5], [1, 1], ["gain", "loss"], [2.5, -1]))
    assert warnings_of(caplog) == [
        f"{path}: 1 event(s) with n/a onset or n/a trial_type dropped",
        f"{path}: 1 event(s) with n/a modulation (amplitude) dropped: an unknown amplitude "
        "cannot be modelled",
    ]


def test_named_amplitude_column(tmp_path, caplog):
    path = write_tsv(
        tmp_path / "events.tsv",
        [
            "onset\tduration\ttrial_type\tmodulation\tintensity",
            "1\t1\tshock\t9\t0.3",
            "4\t1\tshock\t9\t0.8",
        ],
    )
    clean = clean_file(path, caplog, spec=EventSpec(amplitude_column="intensity"))
    assert clean["modulation"].tolist() == [0.3, 0.8]
    with pytest.raises(InputError, match=r"amplitude \(--amplitude-column\) column\(s\) volume"):
        clean_file(path, caplog, spec=EventSpec(amplitude_column="volume"))
    with pytest.raises(InputError, match=r"column 'trial_type' line 2: .* found 'shock'"):
        clean_file(path, caplog, spec=EventSpec(amplitude_column="trial_type"))


# --- ds000117: conditions in stim_type ----------------------------------------------------

DS000117_ROWS = [
    "onset\tduration\tcircle_duration\tstim_type\ttrigger\tbutton_pushed\tresponse_time\tstim_file",
    "0.003\t0.908\t1.782\tFamous\t5\t4096\t1.149\tmeg/f001.bmp",
    "3.627\t0.858\t1.509\tScrambled\t17\tn/a\tn/a\tmeg/s065.bmp",
    "6.754\t0.925\t1.542\tUnfamiliar\t13\t4096\t0.911\tmeg/u042.bmp",
    "10.102\t0.867\t1.602\tFamous\t6\tn/a\tn/a\tmeg/f001.bmp",
]


def test_ds000117_conditions_from_stim_type(tmp_path, caplog):
    path = write_tsv(
        tmp_path / "sub-01_ses-mri_task-facerecognition_run-01_events.tsv", DS000117_ROWS
    )
    clean = clean_file(path, caplog, spec=EventSpec(condition_column="stim_type"))
    assert clean["trial_type"].tolist() == ["Famous", "Scrambled", "Unfamiliar", "Famous"]
    assert clean["duration"].tolist() == [0.908, 0.858, 0.925, 0.867]
    assert set(clean["modulation"]) == {1.0}
    triggers = clean_file(path, caplog, spec=EventSpec(condition_column="trigger"))
    assert triggers["trial_type"].tolist() == ["5", "17", "13", "6"]
    assert warnings_of(caplog) == []
    assert set(clean_file(path, caplog)["trial_type"]) == {"events"}


# --- parametric modulators -----------------------------------------------------------------

GAMBLE_ROWS = [
    "onset\tduration\ttrial_type\tgain\tloss\tresponse_time\tparticipant_response",
    "2\t3\tgamble\t20\t10\t1.2\taccept",
    "8\t3\tgamble\t12\t10\t0.9\treject",
    "14\t3\tgamble\t34\t10\t1.5\taccept",
    "20\t3\tcatch\t10\t10\tn/a\tn/a",
    "26\t3\tgamble\t18\t10\t1.1\treject",
    "32\t3\tcatch\t10\t10\t0.8\taccept",
    "38\t3\tn/a\tn/a\tn/a\tn/a\tn/a",
]


def test_parametric_modulators_are_centred_per_condition(tmp_path, caplog):
    path = write_tsv(tmp_path / "sub-01_task-mixedgamblestask_run-01_events.tsv", GAMBLE_ROWS)
    spec = EventSpec(parametric_modulators=("gain", "loss"))
    clean = clean_file(path, caplog, scan_duration_s=60.0, spec=spec)
    gamble_gain = [20 - 21, 12 - 21, 34 - 21, 18 - 21]  # mean gain over gambles: 21
    expected = frame(
        [2, 8, 14, 20, 26, 32, 2, 8, 14, 26],
        [3] * 10,
        ["gamble", "gamble", "gamble", "catch", "gamble", "catch"] + ["gamble_x_gain"] * 4,
        [1] * 6 + gamble_gain,
    )
    pd.testing.assert_frame_equal(clean, expected)
    assert warnings_of(caplog) == [
        f"{path}: 1 event(s) with n/a onset or n/a trial_type dropped",
        f"{path}: parametric modulator 'gain' is constant within condition(s) catch "
        "(2 event(s)); nothing is left after centring, so no <condition>_x_gain regressor "
        "for them",
        f"{path}: parametric modulator 'loss' is constant within condition(s) catch, gamble "
        "(6 event(s)); nothing is left after centring, so no <condition>_x_loss regressor "
        "for them",
    ]


def test_parametric_modulator_na_values_get_the_condition_mean(tmp_path, caplog):
    path = write_tsv(tmp_path / "events.tsv", GAMBLE_ROWS)
    clean = clean_file(path, caplog, spec=EventSpec(parametric_modulators=("response_time",)))
    # catch: one n/a and one known value, so nothing varies: no catch_x_response_time
    assert "catch_x_response_time" not in set(clean["trial_type"])
    gamble = clean[clean["trial_type"] == "gamble_x_response_time"]["modulation"]
    np.testing.assert_allclose(gamble, np.array([1.2, 0.9, 1.5, 1.1]) - 1.175)
    warnings = warnings_of(caplog)
    assert any("is n/a for 1 event(s) (line(s) 5)" in w for w in warnings)
    assert any("constant within condition(s) catch" in w for w in warnings)


def test_parametric_modulator_na_value_is_centred_to_zero(tmp_path, caplog):
    rows = ["onset\tduration\ttrial_type\trt", "1\t1\ta\t1", "5\t1\ta\tn/a", "9\t1\ta\t3"]
    clean = clean_file(
        write_tsv(tmp_path / "e.tsv", rows), caplog, spec=EventSpec(parametric_modulators=("rt",))
    )
    assert list(clean.loc[clean["trial_type"] == "a_x_rt", "modulation"]) == [-1.0, 0.0, 1.0]


def test_parametric_modulator_errors(tmp_path, caplog):
    path = write_tsv(tmp_path / "events.tsv", GAMBLE_ROWS)
    with pytest.raises(InputError, match=r"column 'participant_response' line 2: .*'accept'"):
        clean_file(path, caplog, spec=EventSpec(parametric_modulators=("participant_response",)))
    with pytest.raises(InputError, match=r"parametric modulator column\(s\) rt missing; found"):
        clean_file(path, caplog, spec=EventSpec(parametric_modulators=("rt",)))
    with pytest.raises(InputError, match=r"--parametric-modulators lists column\(s\) gain more"):
        clean_file(path, caplog, spec=EventSpec(parametric_modulators=("gain", "gain")))
    write_tsv(
        path, ["onset\tduration\ttrial_type\tv", "1\t1\ta\t1", "3\t1\ta\t2", "5\t1\ta_x_v\t0"]
    )
    with pytest.raises(InputError, match=r"regressor\(s\) a_x_v have the name of a condition"):
        clean_file(path, caplog, spec=EventSpec(parametric_modulators=("v",)))


def test_design_with_modulators_equals_nilearn_on_hand_built_events(tmp_path, caplog):
    first_level = pytest.importorskip("nilearn.glm.first_level")
    path = write_tsv(tmp_path / "events.tsv", GAMBLE_ROWS)
    clean = clean_file(path, caplog, spec=EventSpec(parametric_modulators=("gain",)))
    by_hand = frame(
        [2, 8, 14, 20, 26, 32, 2, 8, 14, 26],
        [3] * 10,
        ["gamble"] * 3 + ["catch", "gamble", "catch"] + ["gamble_x_gain"] * 4,
        [1] * 6 + [-1, -9, 13, -3],
    )
    times = frame_times(30, 2.0)
    ours = make_design_matrix(times, clean, hrf_model=HrfSpec("spm"))
    theirs = first_level.make_first_level_design_matrix(times, by_hand, hrf_model="spm")
    assert list(ours.columns) == list(theirs.columns)
    assert "gamble_x_gain" in ours.columns
    np.testing.assert_allclose(ours.to_numpy(), theirs.to_numpy(), rtol=0, atol=1e-10)


# --- property: any table cleans to finite events or fails with InputError -----------------

NUMBERS = ["0", "1", "-3.5", "2.25", "1e3", "100", "120", "7", "-0", "0.5", "12.0", "-24"]
NUMERIC_CELLS = st.sampled_from(NUMBERS * 3 + ["n/a", "", "NA", " n/a", "nan", "soon", "inf"])
LABEL_CELLS = st.sampled_from(["face", " house ", "1", "2.0", "a", "a_x_rt", "n/a", "", "NA"])
OPTIONAL_COLUMNS = ["trial_type", "modulation", "rt", "stim_type", "stim_file"]


@st.composite
def events_tsv(draw) -> list[str]:
    """Header and rows of an events file, mostly well-formed, with n/a anywhere."""
    required = draw(st.sampled_from([["onset", "duration"]] * 6 + [["onset"], ["duration"]]))
    columns = required + draw(st.lists(st.sampled_from(OPTIONAL_COLUMNS), unique=True))
    cell = {
        c: LABEL_CELLS if c in ("trial_type", "stim_type", "stim_file") else NUMERIC_CELLS
        for c in columns
    }
    rows = draw(st.lists(st.tuples(*(cell[c] for c in columns)), max_size=10))
    return ["\t".join(columns)] + ["\t".join(row) for row in rows]


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=events_tsv(),
    condition_column=st.sampled_from(["trial_type", "stim_type"]),
    amplitude_column=st.sampled_from([None, "rt"]),
    modulators=st.sampled_from([(), ("rt",), ("modulation", "rt")]),
)
def test_clean_events_only_raises_input_error_and_returns_finite_events(
    tmp_path, rows, condition_column, amplitude_column, modulators
):
    path = write_tsv(tmp_path / "events.tsv", rows)
    spec = EventSpec(condition_column, amplitude_column, modulators)
    as_text = read_events(path)
    as_parsed = pd.read_csv(path, sep="\t", na_values=["n/a", "NA"], keep_default_na=False)
    for table in (as_text, as_parsed):
        try:
            clean = clean_events(table, path, 100.0, spec)
        except InputError:
            continue
        assert list(clean.columns) == CLEAN_COLUMNS
        assert not clean.isna().any().any()
        assert np.isfinite(clean[["onset", "duration", "modulation"]].to_numpy(float)).all()
        assert (clean["duration"] >= 0).all()
        assert all(isinstance(t, str) and t == t.strip() and t for t in clean["trial_type"])
        modulated = clean["trial_type"].str.endswith(tuple(f"_x_{m}" for m in modulators))
        assert (~modulated).sum() <= len(table)


# --- real events files ---------------------------------------------------------------------


def real_file(*parts: str) -> Path:
    path = REALDATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path}")
    return path


def test_real_ds011_tone_counting_events_clean_without_warnings(caplog):
    path = real_file("spm12_ds011_tonecounting", "sub-01_task-tonecounting_events.tsv")
    clean = clean_file(path, caplog, scan_duration_s=104 * 2.0)
    assert warnings_of(caplog) == []
    assert clean["trial_type"].value_counts().to_dict() == {
        "tone counting": 32,
        "tone counting probe": 8,
    }
    assert clean["onset"].iloc[[0, -1]].tolist() == [0.0, 207.003]
    assert set(clean["modulation"]) == {1.0}


def test_real_haxby_events_clean_without_warnings(caplog):
    func = real_file("haxby2001_sub-1_25mm", "sub-1", "func")
    paths = sorted(func.glob("sub-1_task-objectviewing_run-*_events.tsv"))
    assert len(paths) == 12
    categories = {"bottle", "cat", "chair", "face", "house", "scissors", "scrambledpix", "shoe"}
    for path in paths:
        clean = clean_file(path, caplog, scan_duration_s=121 * 2.5)
        assert clean["trial_type"].value_counts().to_dict() == dict.fromkeys(categories, 12)
        assert set(clean["duration"]) == {0.5}
    assert warnings_of(caplog) == []
