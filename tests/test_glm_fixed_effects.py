"""Fixed effects over runs: closed forms, nilearn 0.14.1's multi-run formulas, properties."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pytest
import scipy.stats
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
    with pytest.raises(ValueError, match="carry none"):
        fixed_effects([f_maps, f_maps])
    with pytest.raises(ValueError, match="chunk_voxels"):
        fixed_effects([run], chunk_voxels=0)


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


# ---------------------------------------------------------------- F contrasts over runs

N_SCANS = 150
F_WEIGHTS = np.eye(6)[:3]  # "a", "b", "c" against each other and baseline
COLUMNS = ["a", "b", "c", "trend", "curve", "constant"]


def _run_data(rng, n_voxels=400):
    """One run: three random regressors, two drifts, a constant; AR(1) noise; float32."""
    time = np.linspace(-1.0, 1.0, N_SCANS)
    X = np.column_stack([rng.standard_normal((N_SCANS, 3)), time, time**2, np.ones(N_SCANS)])
    noise = rng.standard_normal((N_SCANS, n_voxels))
    noise[1:] += rng.uniform(0.0, 0.6, n_voxels) * noise[:-1]
    beta = rng.normal(0.0, 0.4, (6, n_voxels))
    beta[-1] = 100.0
    return X, (X @ beta + rng.uniform(0.5, 2.0, n_voxels) * noise).astype(np.float32)


@pytest.fixture(scope="module")
def f_runs():
    """Four runs fitted by nilearn's run_glm and by fit_glm (AR(1)), with their F maps."""
    rng = np.random.default_rng(5)
    runs = []
    for _ in range(4):
        X, Y = _run_data(rng)
        labels, results = run_glm(Y, X, noise_model="ar1")
        fit = fit_glm(X, Y, COLUMNS)
        runs.append((labels, results, fit, compute_contrast(fit, F_WEIGHTS, "F", "abc")))
    return runs


@pytest.mark.filterwarnings("ignore:Running approximate fixed effects:UserWarning")
def test_f_unweighted_matches_nilearn_multi_run(f_runs):
    labels, results, _, maps = zip(*f_runs, strict=True)
    expected = compute_fixed_effect_contrast(labels, results, [F_WEIGHTS] * 4, "F")
    ours = fixed_effects(maps, weighting="unweighted")
    assert ours.stat_type == "F" and ours.dof_num == expected.dim == 3
    assert ours.dof == expected.dof == 4 * (N_SCANS - 6)
    assert ours.n_runs == 4 and not ours.poolable
    np.testing.assert_allclose(ours.effect, expected.effect_size(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.variance, expected.effect_variance(), rtol=1e-9)
    np.testing.assert_allclose(ours.stat, expected.stat(), rtol=1e-9)
    np.testing.assert_allclose(ours.z, expected.z_score(), rtol=0, atol=1e-8)
    np.testing.assert_allclose(ours.p, expected.p_value(), rtol=1e-8, atol=1e-14)


def test_f_precision_matches_generalised_least_squares_per_voxel(f_runs):
    """Per voxel, with explicit inverses: V = (sum V_r^-1)^-1, b = V sum V_r^-1 b_r,
    F = b^T V^-1 b / q, from each run's own beta, bin covariance and sigma2."""
    fits = [fit for _, _, fit, _ in f_runs]
    ours = fixed_effects([maps for *_, maps in f_runs])
    dof = sum(fit.dof for fit in fits)
    assert ours.dof == dof and ours.dof_num == 3.0 and ours.n_runs == 4
    for voxel in np.random.default_rng(0).choice(ours.n_voxels, 40, replace=False):
        precision_sum, weighted_sum = np.zeros((3, 3)), np.zeros(3)
        for fit in fits:
            cov = F_WEIGHTS @ fit.bin_cov[fit.voxel_bin[voxel]] @ F_WEIGHTS.T
            precision = np.linalg.inv(cov * fit.sigma2[voxel])
            precision_sum += precision
            weighted_sum += precision @ (F_WEIGHTS @ fit.beta[:, voxel])
        covariance = np.linalg.inv(precision_sum)
        estimate = covariance @ weighted_sum
        f_stat = estimate @ precision_sum @ estimate / 3
        np.testing.assert_allclose(ours.estimate[:, voxel], estimate, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(ours.estimate_covariance([voxel])[0], covariance, rtol=1e-9)
        np.testing.assert_allclose(ours.stat[voxel], f_stat, rtol=1e-9)
        np.testing.assert_allclose(ours.p[voxel], scipy.stats.f.sf(f_stat, 3, dof), rtol=1e-8)
    np.testing.assert_allclose(np.sum(ours.effect**2, axis=0) / 3, ours.stat, rtol=1e-12)
    # planted random effects: pooling four runs finds far more than single runs do
    assert np.mean(ours.p < 1e-3) > np.mean([m.p < 1e-3 for *_, m in f_runs])


def test_f_precision_pools_again_and_ignores_chunking(f_runs):
    maps = [m for *_, m in f_runs]
    whole = fixed_effects(maps)
    chunked = fixed_effects(maps, chunk_voxels=7)
    # GLS pooling is associative: pooling two pooled halves gives the pooled whole
    halves = fixed_effects([fixed_effects(maps[:2]), fixed_effects(maps[2:])])
    for other in (chunked, halves):
        np.testing.assert_allclose(other.estimate, whole.estimate, rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(other.stat, whole.stat, rtol=1e-8)
        np.testing.assert_allclose(other.z, whole.z, rtol=0, atol=1e-7)
        assert other.dof == whole.dof and other.n_runs == 4


def test_f_with_redundant_rows_reduces_to_squared_t(f_runs):
    row = np.array([1.0, -1.0, 0.0, 0.0, 0.0, 0.0])
    fits = [fit for _, _, fit, _ in f_runs]
    f_maps = [compute_contrast(fit, np.stack([row, 2 * row]), "F", "aMinusB") for fit in fits]
    t_maps = [compute_contrast(fit, row, "t", "aMinusB") for fit in fits]
    pooled_f = fixed_effects(f_maps)
    pooled_t = fixed_effects(t_maps)
    assert pooled_f.dof_num == 1.0 and pooled_f.dof == pooled_t.dof
    np.testing.assert_allclose(pooled_f.stat, pooled_t.stat**2, rtol=1e-8)
    np.testing.assert_allclose(
        pooled_f.p, 2 * scipy.stats.t.sf(np.abs(pooled_t.stat), pooled_t.dof), rtol=1e-7
    )


def _f_maps(estimate, covariance, dof, name="f"):
    """F maps of a run from its estimate (q, V) and per-voxel covariances (V, q, q)."""
    q, n_voxels = estimate.shape
    precision = np.linalg.inv(covariance)
    stat = np.einsum("iv,vij,jv->v", estimate, precision, estimate) / q
    p, z = scipy.stats.f.sf(stat, q, dof), np.zeros(n_voxels)
    return ContrastMaps(
        name,
        "F",
        estimate,
        np.ones(n_voxels),
        stat,
        z,
        p,
        float(dof),
        float(q),
        estimate=estimate,
        covariance=covariance,
        covariance_bin=np.arange(n_voxels, dtype=np.intp),
    )


@st.composite
def f_run_lists(draw):
    """2-4 runs of a q-row F contrast (q in 1..3) on 5 voxels, with random SPD covariances."""
    q = draw(st.integers(1, 3))
    n_runs = draw(st.integers(2, 4))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    runs = []
    for _ in range(n_runs):
        factor = rng.normal(0.0, 1.0, (5, q, q)) * rng.uniform(0.1, 3.0, (5, 1, 1))
        covariance = factor @ factor.transpose(0, 2, 1) + 0.05 * np.eye(q)
        estimate = rng.normal(0.0, 2.0, (q, 5))
        runs.append(_f_maps(estimate, covariance, draw(st.integers(20, 300))))
    return runs


@settings(max_examples=60, deadline=None)
@given(f_run_lists(), st.randoms(use_true_random=False))
def test_f_precision_properties(runs, random):
    pooled = fixed_effects(runs)
    q = runs[0].estimate.shape[0]
    # one run alone is returned unchanged; n identical runs multiply F by n
    alone = fixed_effects(runs[:1])
    np.testing.assert_allclose(alone.stat, runs[0].stat, rtol=1e-8)
    np.testing.assert_allclose(alone.estimate, runs[0].estimate, rtol=1e-8, atol=1e-10)
    copies = fixed_effects([runs[0]] * 3)
    np.testing.assert_allclose(copies.stat, 3 * runs[0].stat, rtol=1e-8)
    # order of the runs does not matter
    shuffled = runs.copy()
    random.shuffle(shuffled)
    np.testing.assert_allclose(fixed_effects(shuffled).stat, pooled.stat, rtol=1e-8)
    # pooling never loses precision: V <= V_r in the Loewner order
    for run in runs:
        gap = run.estimate_covariance() - pooled.estimate_covariance()
        assert np.all(np.linalg.eigvalsh(gap) > -1e-8 * np.abs(gap).max())
    assert pooled.dof == sum(run.dof for run in runs) and pooled.dof_num == q
    if q == 1:  # a one-row F is the square of the precision-weighted t
        t_runs = [
            _t_maps(run.estimate[0], run.estimate_covariance()[:, 0, 0], run.dof) for run in runs
        ]
        np.testing.assert_allclose(pooled.stat, fixed_effects(t_runs).stat ** 2, rtol=1e-8)


def test_contrast_maps_covariance_fields_are_checked():
    estimate, covariance = np.ones((2, 3)), np.tile(np.eye(2), (3, 1, 1))
    maps = _f_maps(estimate, covariance, 50)
    np.testing.assert_allclose(maps.estimate_covariance(slice(0, 2)), covariance[:2])
    with pytest.raises(ValueError, match="together"):
        ContrastMaps("f", "F", estimate, *np.ones((4, 3)), 50.0, 2.0, estimate=estimate)
    with pytest.raises(ValueError, match="covariance has shape"):
        replace(maps, covariance=covariance[:, :1, :1])
    with pytest.raises(ValueError, match="index 3 covariance"):
        replace(maps, covariance_bin=np.array([0, 1, 3]))
    t_run = _t_maps(np.ones(3), np.ones(3), 50)
    with pytest.raises(ValueError, match="carries no estimate covariance"):
        t_run.estimate_covariance()


def test_f_constant_voxels_add_no_information():
    """Constant data (zero residual variance) give V_r^+ = 0: such a run is ignored there."""
    rng = np.random.default_rng(8)
    maps = []
    for run in range(3):
        X, Y = _run_data(rng, n_voxels=30)
        Y[:, :4] = 0.0  # constant in every run
        if run == 0:
            Y[:, 4:8] = 0.0  # constant in the first run only
        maps.append(compute_contrast(fit_glm(X, Y, COLUMNS), F_WEIGHTS, "F", "abc"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pooled = fixed_effects(maps)
    assert np.all(pooled.stat[:4] == 0.0) and np.all(pooled.estimate[:, :4] == 0.0)
    without_first = fixed_effects(maps[1:])
    np.testing.assert_allclose(pooled.stat[4:8], without_first.stat[4:8], rtol=1e-9)
    assert np.all(np.isfinite(pooled.stat)) and np.all(pooled.p[:4] == 1.0)
