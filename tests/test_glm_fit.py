"""GLM fits and contrasts of bids_glm.glm against nilearn 0.14.1 on identical arrays."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
from nilearn.glm.contrasts import compute_contrast as nilearn_contrast
from nilearn.glm.first_level import mean_scaling, run_glm

from bids_glm.glm.contrast import compute_contrast
from bids_glm.glm.fit import fit_glm
from bids_glm.glm.scaling import scale_signal

N_SCANS = 180
N_VOXELS = 2500
CONDITIONS = ("faces", "houses", "scrambled")


def _design(rng: np.random.Generator, n_scans: int = N_SCANS) -> tuple[np.ndarray, list[str]]:
    """Smoothed block regressors (events-like), four cosine drifts and a constant."""
    time = np.arange(n_scans)
    kernel = np.exp(-0.5 * ((np.arange(15) - 5) / 2.0) ** 2)
    events = []
    for _ in CONDITIONS:
        boxcar = np.zeros(n_scans)
        for onset in rng.choice(n_scans - 10, size=8, replace=False):
            boxcar[onset : onset + 4] = 1.0
        events.append(np.convolve(boxcar, kernel)[:n_scans])
    drifts = [
        np.sqrt(2.0 / n_scans) * np.cos(np.pi / n_scans * (time + 0.5) * k) for k in range(1, 5)
    ]
    X = np.column_stack([*events, *drifts, np.ones(n_scans)])
    names = [*CONDITIONS, *(f"cosine{k:02d}" for k in range(4)), "constant"]
    return X, names


def _data(rng: np.random.Generator, X: np.ndarray, n_voxels: int = N_VOXELS) -> np.ndarray:
    """AR(1) noise with rho varying over voxels in [-0.3, 0.9] plus planted betas; float32."""
    n_scans, p = X.shape
    rho = rng.uniform(-0.3, 0.9, n_voxels)
    noise = rng.standard_normal((n_scans, n_voxels))
    for t in range(1, n_scans):
        noise[t] += rho * noise[t - 1]
    beta = rng.normal(0.0, 2.0, (p, n_voxels))
    beta[-1] = rng.uniform(500.0, 1500.0, n_voxels)
    # "faces": no effect in the first half of the voxels, a clear one in the second half
    beta[0, : n_voxels // 2] = 0.0
    beta[0, n_voxels // 2 :] = rng.choice([-1.0, 1.0], n_voxels - n_voxels // 2) * 6.0
    return (X @ beta + 3.0 * noise).astype(np.float32)


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(20240611)
    X, names = _design(rng)
    Y = _data(rng, X)
    Y = scale_signal(Y)
    return X, names, Y


def _nilearn_maps(labels, results, n_voxels, p):
    beta = np.zeros((p, n_voxels))
    dispersion = np.zeros(n_voxels)
    r_square = np.zeros(n_voxels)
    for label, result in results.items():
        voxels = labels == label
        beta[:, voxels] = result.theta
        dispersion[voxels] = result.dispersion
        r_square[voxels] = result.r_square
    return beta, dispersion, r_square


CONTRASTS = {
    "faces": np.array([1, 0, 0, 0, 0, 0, 0, 0.0]),
    "facesMinusHouses": np.array([1, -1, 0, 0, 0, 0, 0, 0.0]),
    "allVsScrambled": np.array([0.5, 0.5, -1, 0, 0, 0, 0, 0.0]),
    "effectsOfInterest": np.eye(8)[:3],
}


@pytest.mark.parametrize("noise_model", ["ols", "ar1"])
def test_fit_and_contrasts_match_nilearn(problem, noise_model):
    X, names, Y = problem
    labels, results = run_glm(Y, X, noise_model=noise_model)
    fit = fit_glm(X, Y, names, noise_model=noise_model)

    beta, dispersion, r_square = _nilearn_maps(labels, results, Y.shape[1], X.shape[1])
    np.testing.assert_allclose(fit.beta, beta, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(fit.sigma2, dispersion, rtol=1e-9)
    # nilearn's OLS r_square takes np.var of the float32 data in float32 arithmetic
    r_squared_rtol = 1e-5 if noise_model == "ols" else 1e-9
    np.testing.assert_allclose(fit.r_squared, r_square, rtol=r_squared_rtol)
    assert fit.dof == next(iter(results.values())).df_residuals == N_SCANS - X.shape[1]
    if noise_model == "ar1":
        # same AR bins, voxel by voxel (nilearn labels are the binned coefficients)
        np.testing.assert_array_equal(fit.bin_rho[fit.voxel_bin], labels.astype(float))
        assert fit.bin_rho.size == len(results) > 50
    else:
        assert fit.ar1 is None and fit.bin_rho.tolist() == [0.0]

    for name, weights in CONTRASTS.items():
        expected = nilearn_contrast(labels, results, weights)
        ours = compute_contrast(fit, weights, name=name)
        assert ours.stat_type == expected.stat_type
        assert ours.dof == expected.dof
        np.testing.assert_allclose(ours.effect, expected.effect_size(), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(ours.variance, expected.effect_variance(), rtol=1e-9)
        np.testing.assert_allclose(ours.stat, expected.stat(), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(ours.z, expected.z_score(), rtol=0, atol=1e-8)
        np.testing.assert_allclose(ours.p, expected.p_value(), rtol=1e-8, atol=1e-14)
    # the planted effect is found: "faces" is active in the second half of the voxels only
    # (false positives are checked for AR(1) only: OLS is anti-conservative under AR noise)
    faces = compute_contrast(fit, CONTRASTS["faces"])
    assert np.mean(np.abs(faces.z[N_VOXELS // 2 :]) > 3.1) > 0.8
    if noise_model == "ar1":
        assert np.mean(np.abs(faces.z[: N_VOXELS // 2]) > 3.1) < 0.01


def test_ar1_without_constant_centres_residuals_on_their_global_mean(problem):
    """Without a constant column the residual means differ per voxel: nilearn removes one
    global mean (over voxels and time) before the Yule-Walker estimate, and so must we."""
    X, names, Y = problem
    X_no_constant = X[:, :-1]
    data = Y[:, :600] + np.linspace(-3.0, 5.0, 600, dtype=np.float32)
    labels, results = run_glm(data, X_no_constant, noise_model="ar1")
    fit = fit_glm(X_no_constant, data, names[:-1], chunk_voxels=128)
    np.testing.assert_array_equal(fit.bin_rho[fit.voxel_bin], labels.astype(float))
    beta, dispersion, _ = _nilearn_maps(labels, results, data.shape[1], X_no_constant.shape[1])
    np.testing.assert_allclose(fit.beta, beta, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(fit.sigma2, dispersion, rtol=1e-9)


def test_ar1_estimate_tracks_planted_rho():
    rng = np.random.default_rng(7)
    X, names = _design(rng, n_scans=400)
    rho = np.linspace(-0.4, 0.8, 300)
    noise = rng.standard_normal((400, 300))
    for t in range(1, 400):
        noise[t] += rho * noise[t - 1]
    fit = fit_glm(X, (X[:, -1:] * 100 + noise).astype(np.float32), names)
    # Yule-Walker on OLS residuals is biased towards 0 by ~p/n; the slope stays close to 1
    slope = np.polyfit(rho, fit.ar1, 1)[0]
    assert 0.85 < slope < 1.05
    assert np.all(np.abs(fit.bin_rho[fit.voxel_bin] - fit.ar1) < 0.01)


@pytest.mark.parametrize("noise_model", ["ols", "ar1"])
def test_chunking_does_not_change_the_fit(problem, noise_model):
    X, names, Y = problem
    whole = fit_glm(X, Y, names, noise_model=noise_model, chunk_voxels=10**6)
    chunked = fit_glm(X, Y, names, noise_model=noise_model, chunk_voxels=97)
    for field in ("beta", "sigma2", "r_squared", "bin_rho", "bin_cov", "voxel_bin"):
        np.testing.assert_allclose(
            getattr(chunked, field), getattr(whole, field), rtol=1e-12, atol=1e-12
        )
    if noise_model == "ar1":
        np.testing.assert_allclose(chunked.ar1, whole.ar1, rtol=1e-12, atol=1e-14)


def test_fit_does_not_modify_or_upcast_the_data(problem):
    X, names, Y = problem
    before = Y.copy()
    fit_glm(X, Y, names, chunk_voxels=500)
    assert Y.dtype == np.float32
    np.testing.assert_array_equal(Y, before)


def test_rank_deficient_design_matches_nilearn():
    rng = np.random.default_rng(3)
    X, names = _design(rng)
    X = np.column_stack([X[:, :1], X])  # "faces" twice: rank p - 1
    names = ["facesCopy", *names]
    Y = _data(rng, X[:, 1:], n_voxels=400)
    labels, results = run_glm(Y, X, noise_model="ar1")
    fit = fit_glm(X, Y, names)
    assert fit.dof == N_SCANS - (X.shape[1] - 1)
    assert fit.dof == next(iter(results.values())).df_residuals
    weights = np.zeros(X.shape[1])
    weights[[0, 1]] = 0.5  # estimable: the sum of the duplicated columns
    expected = nilearn_contrast(labels, results, weights)
    ours = compute_contrast(fit, weights)
    np.testing.assert_allclose(ours.stat, expected.stat(), rtol=1e-8)
    np.testing.assert_allclose(ours.z, expected.z_score(), atol=1e-8)


def test_redundant_f_rows_reduce_to_the_rank(problem):
    X, names, Y = problem
    fit = fit_glm(X, Y, names, noise_model="ols")
    row = CONTRASTS["facesMinusHouses"]
    redundant = compute_contrast(fit, np.stack([row, 2 * row]), name="twice")
    single_t = compute_contrast(fit, row)
    assert redundant.dof_num == 1.0
    np.testing.assert_allclose(redundant.stat, single_t.stat**2, rtol=1e-9)
    two_sided_t = 2 * scipy.stats.t.sf(np.abs(single_t.stat), fit.dof)
    np.testing.assert_allclose(redundant.p, two_sided_t, rtol=1e-9)


def test_constant_voxels_give_finite_maps(problem):
    X, names, Y = problem
    data = Y[:, :50].copy()
    data[:, :5] = 0.0  # e.g. a constant voxel after percent scaling
    fit = fit_glm(X, data, names)
    assert np.all(fit.beta[:, :5] == 0.0) and np.all(fit.sigma2[:5] == 0.0)
    assert np.all(np.isfinite(fit.ar1))
    maps = compute_contrast(fit, CONTRASTS["faces"])
    assert np.all(np.isfinite(maps.z)) and np.all(maps.z[:5] == 0.0)


def test_contrast_length_mismatch_lists_the_columns(problem):
    X, names, Y = problem
    fit = fit_glm(X, Y[:, :20], names, noise_model="ols")
    with pytest.raises(ValueError, match=r"3 weights.*8 columns.*'faces', 'houses'.*constant"):
        compute_contrast(fit, [1, -1, 0], name="short")
    with pytest.raises(ValueError, match="one row"):
        compute_contrast(fit, np.eye(8)[:2], stat_type="t")
    with pytest.raises(ValueError, match="all weights are zero"):
        compute_contrast(fit, np.zeros(8))


def test_fit_input_errors(problem):
    X, names, Y = problem
    with pytest.raises(ValueError, match="180 rows"):
        fit_glm(X, Y[:-1], names)
    with pytest.raises(ValueError, match="7 column names"):
        fit_glm(X, Y, names[:-1])
    with pytest.raises(ValueError, match="noise_model"):
        fit_glm(X, Y, names, noise_model="ar2")


@pytest.mark.filterwarnings("ignore:Mean values of 0 observed:UserWarning")
def test_percent_scaling_matches_nilearn_mean_scaling():
    rng = np.random.default_rng(11)
    raw = rng.uniform(200.0, 2000.0, (120, 300)) * (1 + 0.05 * rng.standard_normal((120, 300)))
    raw[:, 0] = 0.0  # empty voxel: mean 0
    raw[:, 1] -= raw[:, 1].mean()  # centred voxel
    raw[:, 2] = rng.uniform(-5.0, 0.5, 120)  # negative mean
    raw[:, 3] = 0.25  # mean below 1
    raw = raw.astype(np.float32)

    expected64, _ = mean_scaling(raw.astype(np.float64))
    expected32, _ = mean_scaling(raw)
    data = raw.copy()
    with pytest.warns(UserWarning, match="4 voxel"):
        scaled = scale_signal(data)
    assert scaled is data and scaled.dtype == np.float32
    # nilearn's own float32 arithmetic, bit for bit (AR(1) bins depend on the last bits)
    np.testing.assert_array_equal(scaled, expected32)
    # and within float32 rounding of the exact scaling
    np.testing.assert_allclose(scaled, expected64, rtol=1e-5, atol=2e-3)
    assert scale_signal(raw, mode="none") is raw
    with pytest.raises(ValueError, match="scaling mode"):
        scale_signal(raw, mode="zscore")


def test_f_maps_carry_estimate_and_covariance_of_nilearn(problem):
    """F maps keep C beta and C cov C^T sigma2 per voxel: nilearn's ``vcov`` of each bin."""
    X, names, Y = problem
    labels, results = run_glm(Y, X, noise_model="ar1")
    fit = fit_glm(X, Y, names)
    weights = CONTRASTS["effectsOfInterest"]
    maps = compute_contrast(fit, weights, name="effectsOfInterest")
    assert maps.poolable and maps.covariance.shape == (fit.bin_rho.size, 3, 3)
    np.testing.assert_allclose(maps.estimate, weights @ fit.beta, rtol=1e-12, atol=1e-12)
    covariance = maps.estimate_covariance()
    for label, result in results.items():
        voxels = np.flatnonzero(labels == label)
        expected = (
            result.vcov(matrix=weights, dispersion=1.0)[np.newaxis]
            * (result.dispersion[:, np.newaxis, np.newaxis])
        )
        np.testing.assert_allclose(covariance[voxels], expected, rtol=1e-9)
    assert compute_contrast(fit, weights[0]).estimate is None


@pytest.mark.filterwarnings("ignore:Mean values of 0 observed:UserWarning")
def test_global_scaling_matches_nilearn_grand_mean_scaling():
    rng = np.random.default_rng(12)
    raw = rng.uniform(200.0, 2000.0, (120, 300)) * (1 + 0.05 * rng.standard_normal((120, 300)))
    raw[:, 0] = 0.0  # an empty voxel does not change the rule: one mean for all
    raw = raw.astype(np.float32)
    expected64, grand_mean = mean_scaling(raw.astype(np.float64), axis=(0, 1))
    assert np.ndim(grand_mean) == 0
    data = raw.copy()
    scaled = scale_signal(data, mode="global")
    assert scaled is data and scaled.dtype == np.float32
    np.testing.assert_array_equal(scaled, mean_scaling(raw.copy(), axis=(0, 1))[0])
    np.testing.assert_allclose(scaled, expected64, rtol=1e-5, atol=2e-3)
    percent = scale_signal(raw[:, 1:].copy(), mode="percent")
    assert not np.allclose(scaled[:, 1:], percent, atol=1.0)
    # centred data: the grand mean (about 0) is floored at 1, as nilearn does
    centred = raw[:, 1:] - raw[:, 1:].mean()
    expected_centred, _ = mean_scaling(centred.astype(np.float64), axis=(0, 1))
    with pytest.warns(UserWarning, match="floored at 1"):
        scaled_centred = scale_signal(centred.copy(), mode="global")
    np.testing.assert_allclose(scaled_centred, expected_centred, rtol=1e-6, atol=1e-2)
    integers = np.full((10, 4), 500, dtype=np.int16)
    assert np.all(scale_signal(integers, mode="global") == 0.0)
