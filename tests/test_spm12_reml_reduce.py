"""``spm_reml``'s fallback: redundant covariance components dropped, the others re-estimated."""

from __future__ import annotations

import numpy as np
import pytest

from bids_glm.glm import spm_reml as spm_reml_module
from bids_glm.glm.spm_reml import spm_reml
from bids_glm.glm.spm_reml_reduce import kept_components, log_evidence_reduce, spm_logdet

HYPER_PRECISION = float(np.exp(-8.0))


def test_logdet_of_diagonal_symmetric_and_indefinite_matrices():
    diagonal = np.diag([2.0, 0.0, 3.0])  # rows with a zero diagonal are left out
    assert spm_logdet(diagonal) == pytest.approx(np.log(6.0))
    rng = np.random.default_rng(1)
    factor = rng.normal(size=(4, 4))
    positive = factor @ factor.T + np.eye(4)
    assert spm_logdet(positive) == pytest.approx(np.linalg.slogdet(positive)[1])
    indefinite = np.array([[1.0, 2.0], [2.0, 1.0]])  # eigenvalues 3 and -1: log |det|
    assert spm_logdet(indefinite) == pytest.approx(np.log(3.0))


def test_reduced_evidence_is_the_savage_dickey_ratio():
    """Switching the prior of h_0 off (h_0 = 0): F = log p(h_0 = 0 | y) - log p(h_0 = 0)."""
    mean = np.array([0.3, 1.2])
    covariance = np.array([[0.04, 0.01], [0.01, 0.09]])
    prior = np.eye(2) * 4.0
    reduced = prior.copy()
    reduced[0, :] = reduced[:, 0] = 0.0
    change, reduced_mean, reduced_covariance = log_evidence_reduce(
        mean, covariance, prior, reduced
    )
    expected = 0.5 * np.log(prior[0, 0] / covariance[0, 0]) - 0.5 * mean[0] ** 2 / covariance[0, 0]
    assert change == pytest.approx(expected, rel=1e-6)
    conditional = mean[1] - covariance[1, 0] / covariance[0, 0] * mean[0]
    assert reduced_mean[0] == pytest.approx(0.0, abs=1e-6)
    assert reduced_mean[1] == pytest.approx(conditional, rel=1e-6)
    partial = covariance[1, 1] - covariance[1, 0] ** 2 / covariance[0, 0]
    assert reduced_covariance[1, 1] == pytest.approx(partial, rel=1e-6)


def test_redundant_component_is_dropped_and_the_others_re_estimated(monkeypatch):
    """Two identical components make ReML's precision singular (log cond > 16), so spm_reml
    reduces the model: a third component (extra variance of the first 10 scans) that the data
    fix near 0 is dropped (h = 0), the two identical ones stay, re-estimated with sharper
    priors until the precision is well conditioned; their sum is the data's variance."""
    rng = np.random.default_rng(0)
    n_scans = 60
    data = rng.normal(scale=0.1, size=(n_scans, 400))
    sample_covariance = data @ data.T / data.shape[1]
    design = np.ones((n_scans, 1))
    identity = np.eye(n_scans)
    first_scans = np.diag((np.arange(n_scans) < 10).astype(float))
    components = (identity, identity.copy(), first_scans)
    result = spm_reml(sample_covariance, design, components)
    monkeypatch.setattr(spm_reml_module, "needs_reduction", lambda *args: False)
    plain = spm_reml(sample_covariance, design, components)
    assert plain.hyperparameters[2] != 0  # without the fallback the third one stays
    assert result.hyperparameters[2] == 0.0
    assert result.hyperparameters[0] == pytest.approx(result.hyperparameters[1], rel=1e-12)
    variance = result.hyperparameters.sum()
    assert np.allclose(result.covariance, variance * identity, rtol=1e-12, atol=0)
    centred = data - data.mean(axis=0)  # the ReML variance: residual sum of squares / (n - 1)
    assert variance == pytest.approx(
        np.sum(centred**2) / centred.shape[1] / (n_scans - 1), rel=1e-3
    )


def test_well_determined_components_are_all_kept():
    precision = np.array([[50.0, 5.0], [5.0, 40.0]])
    assert kept_components(np.array([1.0, 0.8]), precision, HYPER_PRECISION) == [0, 1]
