"""Fixed effects over runs: closed form, nilearn 0.14.1's multi-run formulas, properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from nilearn.glm.contrasts import (
    _compute_fixed_effects_params,
    compute_fixed_effect_contrast,
)
from nilearn.glm.first_level import run_glm

from bids_glm.glm.contrast import compute_contrast
from bids_glm.glm.fit import fit_glm
from bids_glm.glm.fixed_effects import fixed_effects
from bids_glm.glm.results import ContrastMaps
from bids_glm.glm.stats import t_to_p_z


def _t_maps(effect, variance, dof, name="faces"):
    effect = np.asarray(effect, dtype=np.float64)
    variance = np.asarray(variance, dtype=np.float64)
    stat = effect / np.sqrt(variance)
    p, z = t_to_p_z(stat, dof)
    return ContrastMaps(name, "t", effect, variance, stat, z, p, float(dof))


def _random_runs(rng, n_runs=3, n_voxels=500):
    return [
        _t_maps(
            rng.normal(1.0, 2.0, n_voxels),
            rng.uniform(0.2, 3.0, n_voxels),
            dof=rng.integers(100, 300),
        )
        for _ in range(n_runs)
    ]


def test_precision_weighting_closed_form():
    rng = np.random.default_rng(0)
    runs = _random_runs(rng)
    combined = fixed_effects(runs)
    weights = np.array([1.0 / run.variance for run in runs])
    variance = 1.0 / weights.sum(axis=0)
    effect = variance * np.sum(weights * np.array([run.effect for run in runs]), axis=0)
    dof = sum(run.dof for run in runs)
    np.testing.assert_allclose(combined.variance, variance, rtol=1e-13)
    np.testing.assert_allclose(combined.effect, effect, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(combined.stat, effect / np.sqrt(variance), rtol=1e-12, atol=1e-14)
    expected_p, expected_z = t_to_p_z(effect / np.sqrt(variance), dof)
    np.testing.assert_allclose(combined.z, expected_z, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(combined.p, expected_p, rtol=1e-10, atol=1e-300)
    assert combined.dof == dof and combined.n_runs == 3 and combined.name == "faces"


@pytest.mark.parametrize("precision_weighted", [True, False])
def test_matches_nilearn_compute_fixed_effects(precision_weighted):
    rng = np.random.default_rng(1)
    runs = _random_runs(rng, n_runs=4)
    effect, variance, stat, z = _compute_fixed_effects_params(
        np.array([run.effect for run in runs]),
        np.array([run.variance for run in runs]),
        precision_weighted,
        [run.dof for run in runs],
    )
    ours = fixed_effects(runs, "precision" if precision_weighted else "unweighted")
    np.testing.assert_allclose(ours.effect, effect, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ours.variance, variance, rtol=1e-12)
    np.testing.assert_allclose(ours.stat, stat, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ours.z, z, rtol=0, atol=1e-9)


def test_unweighted_matches_nilearn_first_level_multi_run():
    """Two runs fitted and combined as FirstLevelModel.compute_contrast does for runs."""
    rng = np.random.default_rng(2)
    n_scans, n_voxels = 120, 300
    weights = np.array([1.0, -1.0, 0.0, 0.0])
    labels, results, maps = [], [], []
    for _ in range(2):
        X = np.column_stack(
            [rng.standard_normal((n_scans, 2)), np.linspace(-1, 1, n_scans), np.ones(n_scans)]
        )
        noise = rng.standard_normal((n_scans, n_voxels))
        noise[1:] += 0.4 * noise[:-1]
        Y = (X @ rng.normal(0.0, 0.3, (4, n_voxels)) + noise).astype(np.float32)
        run_labels, run_results = run_glm(Y, X, noise_model="ar1")
        labels.append(run_labels)
        results.append(run_results)
        fit = fit_glm(X, Y, ["a", "b", "trend", "constant"])
        maps.append(compute_contrast(fit, weights, name="aMinusB"))
    expected = compute_fixed_effect_contrast(labels, results, [weights, weights])
    ours = fixed_effects(maps, weighting="unweighted")
    assert ours.dof == expected.dof == 2 * (n_scans - 4)
    np.testing.assert_allclose(ours.effect, expected.effect_size(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.variance, expected.effect_variance(), rtol=1e-9)
    np.testing.assert_allclose(ours.stat, expected.stat(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.z, expected.z_score(), rtol=0, atol=1e-8)
    np.testing.assert_allclose(ours.p, expected.p_value(), rtol=1e-8, atol=1e-14)


def test_zero_variance_voxels_stay_finite():
    runs = [_t_maps([0.0, 1.0], [1.0, 1.0], 50), _t_maps([0.0, 1.0], [1.0, 1.0], 50)]
    empty = [ContrastMaps("x", "t", np.zeros(2), np.zeros(2), *np.zeros((3, 2)), 50.0)] * 2
    for maps in (runs, empty):
        for weighting in ("precision", "unweighted"):
            combined = fixed_effects(maps, weighting, name="x")
            assert np.all(np.isfinite(combined.z)) and np.all(np.isfinite(combined.effect))


def test_invalid_inputs():
    rng = np.random.default_rng(3)
    run = _random_runs(rng, n_runs=1)[0]
    with pytest.raises(ValueError, match="at least one"):
        fixed_effects([])
    with pytest.raises(ValueError, match="different shapes"):
        fixed_effects([run, _t_maps(run.effect[:10], run.variance[:10], 100)])
    with pytest.raises(ValueError, match="weighting"):
        fixed_effects([run], weighting="median")
    with pytest.raises(ValueError, match="differently named"):
        fixed_effects([run, _t_maps(run.effect, run.variance, 100, name="houses")])
    f_maps = ContrastMaps(
        "f", "F", np.ones((2, 3)), np.ones(3), np.ones(3), np.zeros(3), np.ones(3), 10.0, 2.0
    )
    with pytest.raises(ValueError, match="different types"):
        fixed_effects([run, f_maps])
    with pytest.raises(NotImplementedError, match="F contrasts"):
        fixed_effects([f_maps, f_maps])


effects = arrays(np.float64, 6, elements=st.floats(-1e3, 1e3))
variances = arrays(np.float64, 6, elements=st.floats(1e-3, 1e3))


@settings(max_examples=80, deadline=None)
@given(effects, variances, st.integers(2, 5), st.sampled_from(["precision", "unweighted"]))
def test_identical_runs_keep_the_effect_and_divide_the_variance(
    effect, variance, n_runs, weighting
):
    run = _t_maps(effect, variance, 90)
    combined = fixed_effects([run] * n_runs, weighting)
    np.testing.assert_allclose(combined.effect, effect, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(combined.variance, variance / n_runs, rtol=1e-12)
    np.testing.assert_allclose(combined.stat, run.stat * np.sqrt(n_runs), rtol=1e-11, atol=1e-12)
    assert combined.dof == 90 * n_runs and combined.n_runs == n_runs


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(effects, variances, st.integers(20, 400)), min_size=2, max_size=5),
    st.randoms(use_true_random=False),
    st.sampled_from(["precision", "unweighted"]),
)
def test_permutation_invariance_and_bounds(runs_data, random, weighting):
    runs = [_t_maps(effect, variance, dof) for effect, variance, dof in runs_data]
    shuffled = runs.copy()
    random.shuffle(shuffled)
    combined = fixed_effects(runs, weighting)
    reordered = fixed_effects(shuffled, weighting)
    np.testing.assert_allclose(reordered.effect, combined.effect, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(reordered.variance, combined.variance, rtol=1e-12)
    np.testing.assert_allclose(reordered.z, combined.z, rtol=1e-9, atol=1e-9)
    # a weighted mean lies between the smallest and the largest run effect
    stacked = np.array([run.effect for run in runs])
    assert np.all(combined.effect >= stacked.min(axis=0) - 1e-9)
    assert np.all(combined.effect <= stacked.max(axis=0) + 1e-9)
    if weighting == "precision":  # pooling never loses precision
        assert np.all(combined.variance <= np.min([run.variance for run in runs], axis=0))
