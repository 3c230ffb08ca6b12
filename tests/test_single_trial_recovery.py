"""Single-trial estimates (issue 19): recovery of planted trial amplitudes, nilearn as oracle.

The data are generated with the demo's own response model (`bids_glm.demo.signal`: Glover HRF
on a fine grid, independent of the design code); the designs are built as the pipeline builds
them (`make_design_matrix`, then `trial_design`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bids_glm.demo.signal import event_regressor
from bids_glm.design.hrf_spec import parse_hrf_model
from bids_glm.design.matrix import frame_times, make_design_matrix
from bids_glm.design.single_trial import trial_design
from bids_glm.glm.fit import fit_glm
from bids_glm.glm.single_trial import TrialLayout, lsa_layout, lss_design, lss_fit

TR_S = 2.0
N_SCANS = 200
N_TRIALS = 60
BLOB = 40  # voxels carrying the trial responses, then background voxels


def _planted_run(seed: int = 3):
    """Events (ISI 4-8 s, so responses overlap), one amplitude per trial, and the data."""
    rng = np.random.default_rng(seed)
    onsets = 6.0 + np.concatenate([[0.0], np.cumsum(rng.uniform(4.0, 8.0, N_TRIALS - 1))])
    onsets = np.round(onsets, 2)
    conditions = np.where(rng.permutation(N_TRIALS) % 2 == 0, "left", "right")
    amplitude = np.where(conditions == "left", 1.0, 1.5) + rng.normal(0.0, 0.5, N_TRIALS)
    events = pd.DataFrame(
        {"onset": onsets, "duration": 1.0, "trial_type": conditions.astype(object)}
    )
    response = sum(
        a * event_regressor(np.array([o]), np.array([1.0]), N_SCANS, TR_S)
        for a, o in zip(amplitude, onsets, strict=True)
    )
    n_voxels = BLOB + 300
    noise = rng.normal(size=(N_SCANS, n_voxels))
    for t in range(1, N_SCANS):  # AR(1) noise, rho 0.3
        noise[t] += 0.3 * noise[t - 1]
    drift = np.linspace(-1.0, 1.0, N_SCANS)[:, np.newaxis] * rng.normal(size=n_voxels)
    data = 0.8 * noise + drift
    data[:, :BLOB] += 2.0 * response[:, np.newaxis] / response.std()
    return events, amplitude, data.astype(np.float32)


def _lsa(events):
    hrf = parse_hrf_model("glover")
    matrix = make_design_matrix(frame_times(N_SCANS, TR_S), events, hrf_model=hrf)
    events = events.assign(modulation=1.0)
    return trial_design(matrix, events, ["left", "right"], hrf)


@pytest.mark.parametrize("noise_model", ["ols", "ar1"])
@pytest.mark.parametrize("estimator", ["lss", "lsa"])
def test_blob_mean_estimates_follow_the_planted_amplitudes(estimator, noise_model):
    events, amplitude, data = _planted_run()
    design = _lsa(events)
    columns = list(design.matrix.columns)
    trials = design.trials
    lsa = design.matrix.to_numpy()
    if estimator == "lss":
        layout = lsa_layout(columns, list(trials["column"]), list(trials["condition"]))
        beta = lss_fit(lsa, data, layout, noise_model).beta
    else:
        fit = fit_glm(lsa, data, columns, noise_model=noise_model)
        beta = fit.beta[[columns.index(c) for c in trials["column"]]]
    estimates = beta[:, :BLOB].mean(axis=1)
    truth = amplitude[trials["event"].to_numpy()]
    assert len(trials) == N_TRIALS
    r = np.corrcoef(estimates, truth)[0, 1]
    assert r >= 0.85, f"{estimator}/{noise_model}: r = {r:.3f}"


def _nilearn_lss(design, data, layout, noise_model):
    """Brute force with nilearn's run_glm: every trial's LSS design fitted alone."""
    from nilearn.glm.first_level import run_glm

    betas, rhos = [], []
    for trial in range(layout.n_trials):
        model = lss_design(design, layout, trial)
        labels, results = run_glm(data.astype(np.float64), model, noise_model=noise_model)
        beta = np.empty(data.shape[1])
        for label, result in results.items():
            beta[labels == label] = result.theta[0]
        betas.append(beta)
        rhos.append(labels.astype(float) if noise_model == "ar1" else labels)
    return np.stack(betas), np.stack(rhos)


@pytest.mark.parametrize("noise_model", ["ols", "ar1"])
def test_lss_equals_nilearn_run_glm_per_trial(noise_model):
    events, _, data = _planted_run(seed=5)
    design = _lsa(events)
    trials = design.trials
    layout = lsa_layout(
        list(design.matrix.columns), list(trials["column"]), list(trials["condition"])
    )
    lsa = design.matrix.to_numpy()
    estimates = lss_fit(lsa, data, layout, noise_model, keep_ar1=True)
    expected, labels = _nilearn_lss(lsa, data, layout, noise_model)
    scale = np.abs(expected).max()
    close = np.abs(estimates.beta - expected) <= 1e-6 * scale
    if noise_model == "ols":
        assert close.all()
        return
    # nilearn's bin labels are the truncated coefficients; a voxel whose coefficient is
    # within rounding of a bin edge may land in the neighbouring bin (then it differs)
    scaled = estimates.ar1 * 100
    on_edge = np.abs(scaled - np.round(scaled)) < 1e-9
    np.testing.assert_allclose(np.trunc(scaled)[~on_edge] / 100, labels[~on_edge], atol=1e-12)
    assert not np.any(~close & ~on_edge)
    assert on_edge.mean() < 0.01


def test_rank_deficient_models_are_fitted_trial_by_trial():
    events, _, data = _planted_run(seed=7)
    design = _lsa(events)
    trials = design.trials
    matrix = design.matrix.assign(copy=design.matrix["constant"] * 2.0)  # collinear
    columns = list(matrix.columns)
    layout = lsa_layout(columns, list(trials["column"]), list(trials["condition"]))
    lsa = matrix.to_numpy()
    estimates = lss_fit(lsa, data[:, :50], layout, "ols").beta
    for trial in (0, 17, 59):
        model = lss_design(lsa, layout, trial)
        fit = fit_glm(model, data[:, :50], [str(k) for k in range(model.shape[1])], "ols")
        np.testing.assert_allclose(estimates[trial], fit.beta[0], rtol=1e-10, atol=1e-12)


def test_a_trial_alone_in_its_condition_gets_the_condition_estimate():
    events, _, data = _planted_run(seed=9)
    lonely = events.copy()
    lonely.loc[10, "trial_type"] = "catch"
    hrf = parse_hrf_model("glover")
    matrix = make_design_matrix(frame_times(N_SCANS, TR_S), lonely, hrf_model=hrf)
    design = trial_design(matrix, lonely.assign(modulation=1.0), ["catch", "left"], hrf)
    trials = design.trials
    columns = list(design.matrix.columns)
    layout = lsa_layout(columns, list(trials["column"]), list(trials["condition"]))
    lsa = design.matrix.to_numpy()
    for noise_model in ("ols", "ar1"):
        estimates = lss_fit(lsa, data, layout, noise_model).beta
        ordinary = fit_glm(matrix.to_numpy(), data, list(matrix.columns), noise_model)
        catch = int(np.flatnonzero(trials["condition"] == "catch")[0])
        expected = ordinary.beta[list(matrix.columns).index("catch")]
        np.testing.assert_allclose(estimates[catch], expected, rtol=0, atol=1e-8)
        # the other trials' models: their own column, the rest of "left", "catch" and
        # "right" (not split) as single columns, the nuisance columns
        for trial in (0, 20):
            model = lss_design(lsa, layout, trial)
            fit = fit_glm(model, data, [str(k) for k in range(model.shape[1])], noise_model)
            scale = np.abs(fit.beta[0]).max()
            close = np.isclose(estimates[trial], fit.beta[0], rtol=0, atol=1e-6 * scale)
            assert close.mean() > 0.99


def test_layout_checks_its_columns():
    with pytest.raises(ValueError, match="distinct"):
        TrialLayout((0, 0), (0, 0), 3)


@pytest.mark.parametrize("noise_model", ["ols", "ar1"])
def test_lss_variances_equal_the_per_trial_fits(noise_model):
    """The t series' variances: sigma^2 w^T G^-1 w of each trial's model fitted alone."""
    events, _, data = _planted_run(seed=5)
    design = _lsa(events)
    trials = design.trials
    layout = lsa_layout(
        list(design.matrix.columns), list(trials["column"]), list(trials["condition"])
    )
    lsa = design.matrix.to_numpy()
    estimates = lss_fit(lsa, data, layout, noise_model, keep_ar1=True, variance=True)
    off_edge = np.ones(estimates.beta.shape, dtype=bool)
    if noise_model == "ar1":
        scaled = estimates.ar1 * 100
        off_edge = np.abs(scaled - np.round(scaled)) >= 1e-9
    for trial in (0, 21, 59):
        model = lss_design(lsa, layout, trial)
        fit = fit_glm(model, data, [str(k) for k in range(model.shape[1])], noise_model)
        expected = fit.bin_cov[fit.voxel_bin, 0, 0] * fit.sigma2
        keep = off_edge[trial]
        np.testing.assert_allclose(
            estimates.variance[trial][keep], expected[keep], rtol=0, atol=1e-8 * expected.max()
        )
        assert estimates.dof[trial] == fit.dof
