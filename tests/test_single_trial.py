"""Single-trial estimates (issue 19): LSA and LSS against per-trial fits of fit_glm."""

from __future__ import annotations

import numpy as np
import pytest

from bids_glm.design.drift import cosine_drift
from bids_glm.glm.fit import fit_glm
from bids_glm.glm.single_trial import TrialLayout, lss_combinations, lss_design, lss_fit


def _problem(seed=0, n=120, n_voxels=400):
    rng = np.random.default_rng(seed)
    trials = rng.random((n, 12)) ** 3
    design = np.column_stack(
        [trials, rng.normal(size=(n, 1)) * 5, cosine_drift(0.01, np.arange(n) * 2.0), np.ones(n)]
    )
    walk = np.cumsum(rng.normal(size=(n, n_voxels)), axis=0)
    noise = walk * 0.3 + rng.normal(size=(n, n_voxels))
    data = (design @ rng.normal(size=(design.shape[1], n_voxels)) + noise).astype(np.float32)
    layout = TrialLayout(tuple(range(12)), (0,) * 5 + (1,) * 4 + (2,) * 3, design.shape[1])
    return design, data, layout


def _brute_force(design, data, layout, noise_model):
    fits = []
    for trial in range(layout.n_trials):
        model = lss_design(design, layout, trial)
        names = [f"c{k}" for k in range(model.shape[1])]
        fits.append(fit_glm(model, data, names, noise_model=noise_model))
    return fits


def test_lss_models_have_trial_other_trials_other_conditions_and_nuisance():
    design, _, layout = _problem()
    models = lss_combinations(layout)
    # trial, other trials of its condition, 2 other conditions, 1 confound + drifts + constant
    assert models[0].shape == (design.shape[1], 1 + 1 + 2 + design.shape[1] - 12)
    np.testing.assert_array_equal(models[0][:, 0], np.eye(design.shape[1])[:, 0])
    np.testing.assert_array_equal(models[0][:5, 1], [0, 1, 1, 1, 1])


@pytest.mark.parametrize("noise_model", ["ols", "ar1"])
def test_lss_equals_brute_force(noise_model):
    design, data, layout = _problem()
    estimates = lss_fit(design, data, layout, noise_model, keep_ar1=True)
    fits = _brute_force(design, data, layout, noise_model)
    brute = np.stack([fit.beta[0] for fit in fits])
    if noise_model == "ols":
        np.testing.assert_allclose(estimates.beta, brute, rtol=0, atol=1e-8 * np.abs(brute).max())
        return
    rho = np.stack([fit.ar1 for fit in fits])
    np.testing.assert_allclose(estimates.ar1, rho, rtol=0, atol=1e-12)
    scaled = rho * 100
    on_edge = np.abs(scaled - np.round(scaled)) < 1e-9
    differs = ~np.isclose(estimates.beta, brute, rtol=0, atol=1e-8 * np.abs(brute).max())
    assert not np.any(differs & ~on_edge)
    assert on_edge.mean() < 0.01


def test_lsa_is_one_fit_of_the_trial_design():
    design, data, layout = _problem()
    fit = fit_glm(design, data, [f"c{k}" for k in range(design.shape[1])], noise_model="ar1")
    assert fit.beta[list(layout.trial_columns)].shape == (12, data.shape[1])
