"""Design matrices against nilearn 0.14's make_first_level_design_matrix and SPM's DCT basis."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nilearn.glm.first_level import make_first_level_design_matrix

from bids_glm.design.drift import cosine_drift, polynomial_drift
from bids_glm.design.hrf_spec import HRF_MODELS, HrfSpec, parse_hrf_model
from bids_glm.design.matrix import frame_times, make_design_matrix
from bids_glm.design.regressors import condition_regressors

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
SPM_DERIVATIVE = HrfSpec("spm", time_derivative=True)


def nilearn_design(times, events=None, *, confounds=None, hrf_model="glover", **options):
    """nilearn's design matrix for the same inputs as ``make_design_matrix``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make_first_level_design_matrix(
            times,
            events,
            hrf_model=None if hrf_model == "none" else hrf_model,
            drift_model=options.get("drift_model", "cosine"),
            high_pass=options.get("high_pass_hz", 0.01),
            drift_order=options.get("drift_order", 1),
            fir_delays=options.get("fir_delays"),
            add_regs=confounds,
            min_onset=options.get("min_onset_s", -24),
            oversampling=options.get("oversampling", 50),
        )


def assert_same_design(times, events=None, *, hrf_model="glover", **options):
    expected = nilearn_design(times, events, hrf_model=hrf_model, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = make_design_matrix(times, events, hrf_model=parse_hrf_model(hrf_model), **options)
    assert list(got.columns) == list(expected.columns)
    np.testing.assert_allclose(got.index.to_numpy(), expected.index.to_numpy())
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=0, atol=1e-8)
    return got


def mixed_events() -> pd.DataFrame:
    """Blocks and impulses of three conditions, with modulation, given out of order."""
    return pd.DataFrame(
        {
            "onset": [30.0, 10.0, 72.5, 41.3, 5.0, 90.0, 60.0, 15.2, 100.0],
            "duration": [4.0, 2.0, 0.0, 3.5, 0.0, 10.0, 1.0, 0.0, 6.0],
            "trial_type": ["face", "house", "face", "scrambled", "house", "face", "house",
                           "scrambled", "scrambled"],
            "modulation": [1.0, 0.5, 2.0, 1.0, -1.0, 1.5, 1.0, 0.3, 1.0],
        }
    )  # fmt: skip


# --- conditions --------------------------------------------------------------------------


@pytest.mark.parametrize("hrf_model", HRF_MODELS)
@pytest.mark.parametrize("tr_s", [0.8, 2.0, 2.5])
def test_every_hrf_model_equals_nilearn(hrf_model, tr_s):
    times = frame_times(int(130 / tr_s), tr_s)
    design = assert_same_design(times, mixed_events(), hrf_model=hrf_model, fir_delays=[0, 1, 2])
    assert design.columns[0].startswith("face")


@pytest.mark.parametrize("hrf_model", HRF_MODELS)
@pytest.mark.parametrize("drift_model", ["cosine", "polynomial", None])
@pytest.mark.parametrize("slice_time_ref", [0.0, 0.5])
def test_every_hrf_and_drift_combination_equals_nilearn(hrf_model, drift_model, slice_time_ref):
    times = frame_times(70, 2.0, slice_time_ref)
    assert_same_design(
        times,
        mixed_events(),
        hrf_model=hrf_model,
        drift_model=drift_model,
        drift_order=2,
        high_pass_hz=0.02,
        fir_delays=[0, 2],
    )


def test_fir_column_names_and_default_delay():
    times = frame_times(60, 2.0)
    design = assert_same_design(times, mixed_events(), hrf_model="fir", fir_delays=[0, 1, 2])
    assert list(design.columns[:3]) == ["face_delay_0", "face_delay_1", "face_delay_2"]
    default = assert_same_design(times, mixed_events(), hrf_model="fir")
    assert list(default.columns[:3]) == ["face_delay_0", "house_delay_0", "scrambled_delay_0"]


def test_derivative_columns_are_orthogonal_to_preceding_ones():
    times = frame_times(80, 2.0)
    design = make_design_matrix(
        times, mixed_events(), hrf_model=parse_hrf_model("spm + derivative + dispersion")
    )
    basis = design[["house", "house_derivative", "house_dispersion"]].to_numpy()
    gram = basis.T @ basis
    off_diagonal = gram - np.diag(np.diag(gram))
    assert np.abs(off_diagonal).max() < 1e-10 * np.abs(gram).max()


def test_no_convolution_samples_the_boxcar():
    times = frame_times(20, 1.0)
    events = pd.DataFrame({"onset": [2.0], "duration": [3.0], "trial_type": ["a"]})
    design = assert_same_design(times, events, hrf_model="none", drift_model=None)
    np.testing.assert_allclose(design["a"].to_numpy()[:7], [0, 0, 1, 1, 1, 0, 0], atol=1e-12)


def test_duplicate_events_add_up():
    times = frame_times(50, 2.0)
    single = pd.DataFrame({"onset": [10.0], "duration": [2.0], "trial_type": ["a"]})
    doubled = pd.concat([single, single], ignore_index=True)
    design = assert_same_design(times, doubled)
    np.testing.assert_allclose(design["a"], 2 * make_design_matrix(times, single)["a"], atol=1e-12)


def test_negative_onsets_and_events_past_the_end():
    times = frame_times(40, 2.0)
    events = pd.DataFrame(
        {
            "onset": [-20.0, -3.0, 10.0, 75.0, 79.0, 120.0, -30.0],
            "duration": [5.0, 4.0, 2.0, 10.0, 0.0, 3.0, 2.0],
            "trial_type": ["early", "early", "mid", "late", "late", "after", "too_early"],
        }
    )
    with pytest.warns(UserWarning, match="start before"):
        make_design_matrix(times, events)
    design = assert_same_design(times, events)
    np.testing.assert_allclose(design["after"], 0.0, atol=1e-15)  # starts after the last frame


def test_single_condition_with_modulation():
    times = frame_times(60, 2.5)
    events = pd.DataFrame(
        {
            "onset": [5.0, 30.0, 60.0, 90.0],
            "duration": [1.0, 1.0, 1.0, 1.0],
            "trial_type": ["only"] * 4,
            "modulation": [0.2, 1.0, -0.7, 3.0],
        }
    )
    design = assert_same_design(times, events, hrf_model="glover + derivative")
    assert list(design.columns[:2]) == ["only", "only_derivative"]


def test_events_without_modulation_column_have_unit_amplitude():
    times = frame_times(60, 2.0)
    events = mixed_events()
    unmodulated = events.drop(columns="modulation")
    ones = events.assign(modulation=1.0)
    pd.testing.assert_frame_equal(
        assert_same_design(times, unmodulated), make_design_matrix(times, ones)
    )


def test_confounds_come_after_conditions_and_before_drifts():
    times = frame_times(70, 2.0)
    rng = np.random.default_rng(3)
    confounds = pd.DataFrame(
        rng.standard_normal((70, 3)), columns=["trans_x", "rot_z", "csf"], index=range(100, 170)
    )
    design = assert_same_design(times, mixed_events(), confounds=confounds, high_pass_hz=0.02)
    names = list(design.columns)
    assert names[3:6] == ["trans_x", "rot_z", "csf"]
    assert names[6] == "drift_1" and names[-1] == "constant"
    np.testing.assert_array_equal(design["csf"].to_numpy(), confounds["csf"].to_numpy())


def test_slice_time_ref_frame_times_follow_nilearn_convention():
    for n_scans, tr_s, ref in [(100, 2.0, 0.5), (37, 0.8, 0.0), (64, 2.5, 1.0)]:
        np.testing.assert_allclose(
            frame_times(n_scans, tr_s, ref),
            np.linspace(ref * tr_s, (n_scans - 1 + ref) * tr_s, n_scans),
            rtol=0,
            atol=1e-12,
        )
    assert frame_times(3, 2.0, 0.5).tolist() == [1.0, 3.0, 5.0]
    assert_same_design(frame_times(90, 2.0, 0.5), mixed_events(), hrf_model="spm + derivative")
    assert_same_design(
        frame_times(90, 0.8, 0.5), mixed_events(), hrf_model="fir", fir_delays=[1, 3]
    )


def test_no_events_gives_drifts_and_constant_only():
    design = assert_same_design(frame_times(50, 2.0))
    assert list(design.columns) == ["drift_1", "drift_2", "constant"]


# --- drifts ------------------------------------------------------------------------------


@pytest.mark.parametrize("high_pass_hz", [0.0, 0.005, 1 / 128, 0.01, 0.05])
@pytest.mark.parametrize("tr_s", [0.8, 2.0, 2.5])
def test_cosine_drift_equals_nilearn(high_pass_hz, tr_s):
    times = frame_times(150, tr_s)
    design = assert_same_design(times, mixed_events(), high_pass_hz=high_pass_hz)
    expected_k = int(np.floor(2 * 150 * high_pass_hz * tr_s))
    assert design.shape[1] == 3 + expected_k + 1


@pytest.mark.parametrize("order", [0, 1, 2, 3])
def test_polynomial_drift_equals_nilearn(order):
    times = frame_times(120, 2.0, 0.5)
    design = assert_same_design(times, mixed_events(), drift_model="polynomial", drift_order=order)
    assert list(design.columns[3:]) == [f"drift_{k}" for k in range(1, order + 1)] + ["constant"]
    drifts = polynomial_drift(order, times)
    gram = np.column_stack([np.ones(120), drifts])
    gram = gram.T @ gram
    assert np.abs(gram - np.diag(np.diag(gram))).max() < 1e-9


@pytest.mark.parametrize("drift_model", [None, "none", "None"])
def test_no_drift_leaves_the_constant(drift_model):
    design = assert_same_design(frame_times(50, 2.0), mixed_events(), drift_model=None)
    ours = make_design_matrix(frame_times(50, 2.0), mixed_events(), drift_model=drift_model)
    assert list(ours.columns) == list(design.columns) == ["face", "house", "scrambled", "constant"]


def test_cosine_drift_equals_spm12_high_pass_basis():
    """filter_X0.csv: SPM12's 128 s DCT basis (K.X0) for 104 scans of 2 s."""
    path = REALDATA / "spm12_ds011_tonecounting" / "spm_default" / "filter_X0.csv"
    if not path.is_file():
        pytest.skip(f"real reference data not available at {path}")
    spm_x0 = np.loadtxt(path, delimiter=",")
    np.testing.assert_allclose(cosine_drift(1 / 128, frame_times(104, 2.0)), spm_x0, atol=1e-12)


def test_cosine_drift_equals_spm_dctmtx_from_nipy():
    """spm_dmtx.npz: SPM's spm_dctmtx(20, 4) (constant first) for 1 s frames."""
    spec = importlib.util.find_spec("nipy")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("nipy (test-only reference data) is not installed")
    folder = Path(next(iter(spec.submodule_search_locations))) / "modalities/fmri/tests"
    spm_basis = np.load(folder / "spm_dmtx.npz")["cosbf_dt_1_nt_20_hcut_0p1"]
    ours = cosine_drift(0.1, np.arange(20.0))
    np.testing.assert_allclose(spm_basis[:, 0], 1.0)
    np.testing.assert_allclose(ours[:, :3], spm_basis[:, 1:], atol=1e-12)


# --- property test -----------------------------------------------------------------------

event_rows = st.tuples(
    st.one_of(
        st.integers(-120, 480).map(lambda q: q / 4),  # on exact grid points: boundary cases
        st.floats(-30.0, 130.0, allow_nan=False),
    ),
    st.one_of(st.just(0.0), st.integers(1, 40).map(lambda q: q / 4), st.floats(0.0, 20.0)),
    st.sampled_from(["a", "b", "c d", "B"]),
    # realistic amplitudes (and zero); subnormal ones make nilearn's own SVD fail
    st.one_of(st.just(0.0), st.floats(0.01, 3.0), st.floats(-3.0, -0.01)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(event_rows, min_size=1, max_size=25),
    tr_s=st.sampled_from([0.8, 2.0, 2.5]),
    n_scans=st.integers(10, 80),
    slice_time_ref=st.sampled_from([0.0, 0.5]),
    hrf_model=st.sampled_from(HRF_MODELS),
)
def test_random_event_tables_equal_nilearn(rows, tr_s, n_scans, slice_time_ref, hrf_model):
    events = pd.DataFrame(rows, columns=["onset", "duration", "trial_type", "modulation"])
    times = frame_times(n_scans, tr_s, slice_time_ref)
    assert_same_design(times, events, hrf_model=hrf_model, fir_delays=[0, 2], high_pass_hz=0.02)


# --- errors ------------------------------------------------------------------------------


def test_unknown_models_are_rejected_with_the_accepted_names():
    times = frame_times(30, 2.0)
    with pytest.raises(ValueError, match=r"Unknown hrf_model 'gamma'.*glover \+ derivative"):
        parse_hrf_model("gamma")
    with pytest.raises(ValueError, match=r"Unknown drift_model 'spline'.*cosine, polynomial"):
        make_design_matrix(times, drift_model="spline")


@pytest.mark.parametrize("bad_times", [[0.0, 2.0, 2.0, 4.0], [0.0, 4.0, 2.0], [1.0], [0, np.nan]])
def test_bad_frame_times_are_rejected(bad_times):
    with pytest.raises(ValueError, match="frame_times_s"):
        make_design_matrix(np.array(bad_times, dtype=float))


def test_too_high_high_pass_is_rejected():
    with pytest.raises(ValueError, match=r"high_pass_hz=0\.3 Hz asks for 60 cosine drift columns"):
        make_design_matrix(frame_times(50, 2.0), high_pass_hz=0.3)


def test_missing_event_columns_are_named():
    events = mixed_events().drop(columns=["duration"])
    with pytest.raises(ValueError, match=r"required column\(s\) \['duration'\]"):
        make_design_matrix(frame_times(30, 2.0), events)


def test_confound_length_mismatch_names_both_lengths():
    confounds = pd.DataFrame({"x": np.zeros(29)})
    with pytest.raises(ValueError, match="confounds have 29 rows but there are 30 frames"):
        make_design_matrix(frame_times(30, 2.0), confounds=confounds)


def test_confounds_with_nan_or_clashing_names_are_rejected():
    times = frame_times(30, 2.0)
    with pytest.raises(ValueError, match=r"\['x'\] hold NaN"):
        make_design_matrix(times, confounds=pd.DataFrame({"x": [np.nan] + [0.0] * 29}))
    with pytest.raises(ValueError, match=r"repeated: \['constant'\]"):
        make_design_matrix(times, confounds=pd.DataFrame({"constant": np.ones(30)}))


def test_bad_event_values_are_rejected():
    times = frame_times(30, 2.0)
    with pytest.raises(ValueError, match="durations_s must be >= 0"):
        make_design_matrix(times, mixed_events().assign(duration=-1.0))
    with pytest.raises(ValueError, match="'onset' must be finite"):
        make_design_matrix(times, mixed_events().assign(onset=np.nan))


def test_condition_regressors_direct_call_matches_design_column():
    times = frame_times(60, 2.0)
    regressors, suffixes = condition_regressors(
        [10.0, 40.0], [2.0, 0.0], [1.0, 2.0], hrf_model=SPM_DERIVATIVE, frame_times_s=times
    )
    events = pd.DataFrame(
        {
            "onset": [10.0, 40.0],
            "duration": [2.0, 0.0],
            "trial_type": "x",
            "modulation": [1.0, 2.0],
        }
    )
    design = make_design_matrix(times, events, hrf_model=SPM_DERIVATIVE)
    assert suffixes == ["", "_derivative"]
    np.testing.assert_array_equal(regressors, design[["x", "x_derivative"]].to_numpy())


def test_oversampled_grid_equals_nilearns_on_rounding_ties():
    # 51 scans, TR 0.8 s, slice_time_ref 0.5: the sample count is a tie (4051.5); computing
    # it in another order gave one more sample and moved every onset by one grid step
    from nilearn.glm.first_level.hemodynamic_models import _sample_condition

    from bids_glm.design.regressors import oversampled_grid

    checked = 0
    for n_scans in range(10, 90):
        for tr_s in (0.8, 1.5, 2.0, 2.5):
            for reference in (0.0, 0.5):
                times = frame_times(n_scans, tr_s, reference)
                _, expected = _sample_condition(np.array([[0.0], [0.0], [1.0]]), times, 50, -24)
                np.testing.assert_array_equal(oversampled_grid(times, 50, -24.0), expected)
                checked += 1
    assert checked == 640
    events = pd.DataFrame({"onset": [0.0], "duration": [0.0], "trial_type": ["a"]})
    assert_same_design(frame_times(51, 0.8, 0.5), events, hrf_model="glover")
