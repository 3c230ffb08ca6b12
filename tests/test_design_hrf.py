"""HRF kernels against nilearn, SPM's own canonical HRF and SPM12's real design matrices."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from nilearn.glm.first_level import hemodynamic_models as nl_hrf
from scipy.io import loadmat

from bids_glm.design.hrf import (
    GLOVER_SHAPE,
    HRF_MODELS,
    SPM_SHAPE,
    GammaDifferenceShape,
    basis_suffixes,
    dispersion_derivative_kernel,
    gamma_difference,
    glover_hrf,
    hrf_kernels,
    kernel_sample_times,
    sampled_hrf,
    spm_hrf,
    time_derivative_kernel,
)
from bids_glm.design.hrf_spec import HrfSpec, parse_hrf_model
from bids_glm.design.matrix import frame_times, make_design_matrix

SAMPLINGS = [(2.0, 50), (0.8, 50), (2.5, 16), (1.0, 1)]
SPM12_DIR = (
    Path(__file__).resolve().parents[2] / "shared" / "realdata" / "spm12_ds011_tonecounting"
)


def _nipy_test_file(name: str) -> Path:
    spec = importlib.util.find_spec("nipy")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("nipy (test-only reference data) is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "modalities/fmri/tests" / name
    if not path.is_file():
        pytest.skip(f"{name} not found in the nipy installation")
    return path


# --- against nilearn -------------------------------------------------------------------


@pytest.mark.parametrize(("tr_s", "oversampling"), SAMPLINGS)
@pytest.mark.parametrize(
    ("ours", "reference"),
    [
        (spm_hrf, nl_hrf.spm_hrf),
        (glover_hrf, nl_hrf.glover_hrf),
        (lambda *a: time_derivative_kernel(SPM_SHAPE, *a), nl_hrf.spm_time_derivative),
        (lambda *a: time_derivative_kernel(GLOVER_SHAPE, *a), nl_hrf.glover_time_derivative),
        (
            lambda *a: dispersion_derivative_kernel(SPM_SHAPE, *a),
            nl_hrf.spm_dispersion_derivative,
        ),
        (
            lambda *a: dispersion_derivative_kernel(GLOVER_SHAPE, *a),
            nl_hrf.glover_dispersion_derivative,
        ),
    ],
)
def test_kernels_equal_nilearn(ours, reference, tr_s, oversampling):
    for time_length_s, onset_s in [(32.0, 0.0), (20.0, 1.5)]:
        expected = reference(tr_s, oversampling, time_length_s, onset_s)
        got = ours(tr_s, oversampling, time_length_s, onset_s)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-14)


def test_hrf_values_from_nilearn_docstring():
    # published example values (TR 2 s, no oversampling, 20 s): fixed points of both codes
    np.testing.assert_allclose(
        spm_hrf(2.0, oversampling=1, time_length_s=20.0),
        [0.0, 0.0, 0.161, 0.443, 0.335, 0.139, 0.022, -0.028, -0.04, -0.033],
        atol=5e-4,
    )
    np.testing.assert_allclose(
        glover_hrf(2.0, oversampling=1, time_length_s=20.0),
        [0.0, 0.0, 0.226, 0.741, 0.5, 0.037, -0.181, -0.176, -0.103, -0.045],
        atol=5e-4,
    )


@pytest.mark.parametrize("hrf_model", HRF_MODELS)
def test_hrf_kernels_match_nilearn_kernel_lists(hrf_model):
    reference = nl_hrf._hrf_kernel(
        None if hrf_model == "none" else hrf_model, 2.0, 50, fir_delays=[0, 1, 3]
    )
    got = hrf_kernels(parse_hrf_model(hrf_model), 2.0, 50, fir_delays=[0, 1, 3])
    assert len(got) == len(reference)
    for ours, theirs in zip(got, reference, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-14)


# --- properties ------------------------------------------------------------------------


@pytest.mark.parametrize("hrf_model", HRF_MODELS)
@pytest.mark.parametrize(("tr_s", "oversampling"), SAMPLINGS)
def test_main_kernels_have_unit_sum_and_derivatives_zero_sum(hrf_model, tr_s, oversampling):
    spec = parse_hrf_model(hrf_model)
    kernels = hrf_kernels(spec, tr_s, oversampling, fir_delays=[0, 2])
    suffixes = basis_suffixes(spec, [0, 2])
    assert len(kernels) == len(suffixes)
    for suffix, kernel in zip(suffixes, kernels, strict=True):
        expected_sum = 0.0 if suffix in ("_derivative", "_dispersion") else 1.0
        assert kernel.sum() == pytest.approx(expected_sum, abs=1e-10)


def test_kernel_length_and_sampling_step():
    times = kernel_sample_times(2.0, 50, 32.0)
    assert times.size == 800
    assert times[0] == 0.0 and times[-1] == 32.0
    assert spm_hrf(2.0).size == 800


def test_onset_delays_the_response():
    dt_s = 2.0 / 50
    early = spm_hrf(2.0)
    late = spm_hrf(2.0, onset_s=10 * dt_s)
    peak_shift = np.argmax(late) - np.argmax(early)
    assert 9 <= peak_shift <= 11  # samples are spaced 32/799 s, not exactly dt


def test_fir_and_none_kernels_closed_form():
    fir = hrf_kernels(HrfSpec("fir"), 2.0, 4, fir_delays=[0, 2])
    np.testing.assert_array_equal(fir[0], [0.25] * 4)
    np.testing.assert_array_equal(fir[1], [0.0] * 8 + [0.25] * 4)
    np.testing.assert_array_equal(hrf_kernels(HrfSpec("none"), 2.0, 4)[0], [1.0, 0.0, 0.0, 0.0])


def test_unknown_hrf_model_lists_the_accepted_ones():
    with pytest.raises(ValueError, match=r"Unknown hrf_model 'canonical'.*spm \+ derivative"):
        parse_hrf_model("canonical")
    with pytest.raises(ValueError, match=r"Unknown hrf_model 'fir \+ derivative'.*glover"):
        HrfSpec("fir", time_derivative=True)
    with pytest.raises(ValueError, match=r"Unknown hrf_model 'spm \+ dispersion'"):
        HrfSpec("spm", dispersion_derivative=True)


@pytest.mark.parametrize("name", HRF_MODELS)
def test_hrf_model_names_parse_once_and_print_back(name):
    spec = parse_hrf_model(f"  {name.upper()} ")
    assert str(spec) == name
    assert parse_hrf_model(str(spec)) == spec
    assert spec.canonical == (spec.base in ("glover", "spm"))
    assert (spec.time_derivative, spec.dispersion_derivative) == (
        "derivative" in name,
        "dispersion" in name,
    )


@pytest.mark.parametrize("delays", [[-1], [0.5], [1, 1], []])
def test_bad_fir_delays_are_rejected(delays):
    with pytest.raises(ValueError, match="fir_delays"):
        hrf_kernels(HrfSpec("fir"), 2.0, fir_delays=delays)


@pytest.mark.parametrize(("tr_s", "oversampling"), [(0.0, 50), (-2.0, 50), (2.0, 0), (2.0, 1.5)])
def test_bad_sampling_is_rejected(tr_s, oversampling):
    with pytest.raises(ValueError, match=r"tr_s|oversampling"):
        spm_hrf(tr_s, oversampling)


# --- against SPM (files shipped in the nipy wheel) --------------------------------------


def test_gamma_difference_equals_spm_hrf_for_54_parameter_sets():
    """spm_hrfs.mat: SPM's spm_hrf(dt, p) from Octave over a grid of dt, delays, dispersions."""
    reference = loadmat(_nipy_test_file("spm_hrfs.mat"), squeeze_me=True)
    assert len(reference["params"]) == 54
    for params, spm_values in zip(reference["params"], reference["hrfs"], strict=True):
        dt_s, peak_delay, under_delay, peak_disp, under_disp, peak_to_under = params
        shape = GammaDifferenceShape(
            peak_delay, under_delay, peak_disp, under_disp, 1 / peak_to_under
        )
        ours = gamma_difference(np.arange(spm_values.size) * dt_s, shape)
        np.testing.assert_allclose(ours / ours.sum(), spm_values, rtol=1e-9, atol=1e-13)


@pytest.fixture(scope="module")
def spm_bases():
    """spm_bases.mat: SPM's canonical hrf and its two derivatives at dt = 0.01 s over 0-32 s."""
    bases = loadmat(_nipy_test_file("spm_bases.mat"), squeeze_me=True)
    dt_s = float(bases["dt"])
    times_s = np.arange(bases["hrf"].size) * dt_s
    # our kernel for TR 0.5 s x 50 has dt = 0.01 s; each sample stands dt late (gamma loc = dt)
    ours_times_s = kernel_sample_times(0.5, 50, 32.0) - 0.5 / 50
    return bases, times_s, ours_times_s


def test_spm_canonical_hrf_shape(spm_bases):
    bases, times_s, ours_times_s = spm_bases
    ours = spm_hrf(0.5, 50)
    spm_on_our_times = np.interp(ours_times_s, times_s, bases["hrf"])
    assert ours_times_s[np.argmax(ours)] == pytest.approx(
        times_s[np.argmax(bases["hrf"])], abs=0.01
    )
    assert np.corrcoef(ours, spm_on_our_times)[0, 1] > 0.99999
    # same density once both are normalised; residual from c = 0.167 vs SPM's 1/6
    scale = ours.max()
    np.testing.assert_allclose(
        ours / ours.sum(), spm_on_our_times / spm_on_our_times.sum(), atol=1e-3 * scale
    )


def test_spm_dispersion_derivative(spm_bases):
    bases, times_s, ours_times_s = spm_bases
    ours = dispersion_derivative_kernel(SPM_SHAPE, 0.5, 50)
    spm_on_our_times = np.interp(ours_times_s, times_s, bases["ddhrf"])
    assert np.corrcoef(ours, spm_on_our_times)[0, 1] > 0.99999


def test_onset_shift_reproduces_spm_time_derivative(spm_bases):
    """SPM's dhrf is h(t) - h(t - 1 s); our derivative uses the same shift with 0.1 s."""
    bases, times_s, ours_times_s = spm_bases
    one_second_difference = sampled_hrf(SPM_SHAPE, 0.5, 50) - sampled_hrf(
        SPM_SHAPE, 0.5, 50, onset_s=1.0
    )
    spm_on_our_times = np.interp(ours_times_s, times_s, bases["dhrf"])
    assert np.corrcoef(one_second_difference, spm_on_our_times)[0, 1] > 0.99999
    # and the 0.1 s derivative has the same sign pattern: rising before the peak, falling after
    ours = time_derivative_kernel(SPM_SHAPE, 0.5, 50)
    assert np.corrcoef(ours, spm_on_our_times)[0, 1] > 0.95


# --- against SPM12's real design matrices (ds011 tone counting) -------------------------

SPM12_DESIGNS = [
    ("spm_default", "spm"),
    ("spm_temporal_derivative", "spm + derivative"),
    ("spm_HRF_informed_basis", "spm + derivative + dispersion"),
]


def _spm12_design(folder: str) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    if not SPM12_DIR.is_dir():
        pytest.skip(f"real reference data not available at {SPM12_DIR}")
    meta = json.loads((SPM12_DIR / folder / "meta.json").read_text())
    conditions = json.loads((SPM12_DIR / folder / "onsets.json").read_text())
    events = pd.DataFrame(
        [
            (onset, duration, condition["name"].strip())
            for condition in conditions
            for onset, duration in zip(condition["ons"], condition["dur"], strict=True)
        ],
        columns=["onset", "duration", "trial_type"],
    )
    spm_matrix = pd.read_csv(SPM12_DIR / folder / "design_matrix.csv")
    return events, spm_matrix, meta


def _spm_slice_time_ref(meta: dict) -> float:
    """SPM samples microtime bin T0 (1-based) of T per scan: t = n*TR + (T0 - 1) * TR / T."""
    return (meta["xBF"]["T0"] - 1) / meta["xBF"]["T"]


def _spm_column(spm_matrix: pd.DataFrame, condition: str, basis: int) -> np.ndarray:
    return spm_matrix[f"Sn(1) {condition}*bf({basis})"].to_numpy()


@pytest.mark.parametrize(("folder", "hrf_model"), SPM12_DESIGNS)
def test_regressors_correlate_with_spm12_design(folder, hrf_model):
    events, spm_matrix, meta = _spm12_design(folder)
    slice_time_ref = _spm_slice_time_ref(meta)
    assert slice_time_ref == pytest.approx(7 / 16)
    times = frame_times(meta["nscan"], meta["RT"], slice_time_ref)
    spec = parse_hrf_model(hrf_model)
    ours = make_design_matrix(times, events, hrf_model=spec, drift_model=None)
    suffixes = basis_suffixes(spec)
    assert ours.shape[1] == spm_matrix.shape[1]
    for condition in sorted(events["trial_type"].unique()):
        for basis, suffix in enumerate(suffixes, start=1):
            r = np.corrcoef(ours[condition + suffix], _spm_column(spm_matrix, condition, basis))[
                0, 1
            ]
            # canonical columns agree closely; SPM's derivatives use other finite-difference
            # steps (1 s for time) so those agree less tightly
            assert r > (0.999 if suffix == "" else 0.97), (condition + suffix, r)


def test_spm12_timing_needs_the_matching_slice_time_ref():
    """The SPM reference is sharp enough to tell SPM's T0 from frame times at n*TR."""
    events, spm_matrix, meta = _spm12_design("spm_default")
    correlations = {}
    for slice_time_ref in (0.0, _spm_slice_time_ref(meta)):
        times = frame_times(meta["nscan"], meta["RT"], slice_time_ref)
        ours = make_design_matrix(times, events, hrf_model=HrfSpec("spm"), drift_model=None)
        correlations[slice_time_ref] = np.corrcoef(
            ours["task001 co"], _spm_column(spm_matrix, "task001 co", 1)
        )[0, 1]
    assert correlations[7 / 16] > 0.999 > correlations[0.0]
