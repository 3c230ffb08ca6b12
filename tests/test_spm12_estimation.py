"""SPM12 estimation (scaling, masks, ReML, whitening, betas, t and F) against SPM12 r7771.

Each reference model of ``../shared/realdata/spm12_planted`` is fitted once from the BIDS
inputs and compared with SPM's images (float32 storage: agreement is at ~1e-7 relative).
"""

from __future__ import annotations

import numpy as np
import pytest
from spm12_reference import MODELS, fit_reference_model, needs_reference

from bids_glm.glm.spm_contrasts import f_contrast, replicate_over_sessions, t_contrast
from bids_glm.glm.spm_globals import analysis_thresholds

pytestmark = needs_reference
AR1_MODELS = tuple(name for name in MODELS if "ols" not in name)


@pytest.fixture(scope="module")
def fitted():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = fit_reference_model(name)
        return cache[name]

    return get


@pytest.mark.parametrize("name", ["multisession_ar1", "run1_implicit", "run2_hpf64"])
def test_globals_scaling_and_mask_equal_spm(fitted, name):
    model = fitted(name)
    table = model.reference.csv("scans_globals.csv")
    globals_, scale = model.data.globals_, model.scale
    assert np.allclose(globals_, table[:, 2], rtol=1e-12, atol=0)
    assert np.allclose(scale, table[:, 3], rtol=1e-12, atol=0)
    assert np.allclose(analysis_thresholds(globals_, scale), table[:, 4], rtol=1e-12, atol=0)
    for rows in model.design.session_rows:
        assert np.mean(globals_[rows] * scale[rows]) == pytest.approx(100.0)
    assert np.array_equal(model.data.mask, model.reference.image("mask") > 0)


@pytest.mark.parametrize("name", AR1_MODELS)
def test_reml_pool_hyperparameters_and_whitening_equal_spm(fitted, name):
    model = fitted(name)
    export = model.reference.export["xVi"]
    pool = model.noise.pool
    assert pool.n_voxels == export["reml_pool"]["n_voxels_log"]
    assert pool.interest_dof == export["reml_pool"]["trMV"]
    assert pool.residual_dof == export["reml_pool"]["trRV_unwhitened"]
    # SPM (Octave) inverts the F cdf to ~1e-8 relative; scipy is closer to exact
    assert pool.threshold_f == pytest.approx(export["reml_pool"]["UF"], rel=1e-7)
    pooled = np.zeros(model.data.mask.shape, dtype=bool)
    pooled[model.data.mask] = pool.selected
    assert np.array_equal(pooled, model.reference.image("reml_pool_mask") > 0)
    assert np.abs(pool.covariance - model.reference.csv("xVi_Cy.csv")).max() < 1e-9
    assert np.abs(model.noise.hyperparameters - np.asarray(export["h"])).max() < 1e-4
    assert np.abs(model.noise.hyperparameters - np.asarray(export["h"])).max() < 1e-10
    assert np.abs(model.noise.covariance - model.reference.csv("xVi_V.csv")).max() < 1e-10
    whitening = model.fit.model.whitening
    assert np.abs(whitening - model.reference.csv("xX_W.csv")).max() < 1e-10


@pytest.mark.parametrize("name", MODELS)
def test_betas_resms_and_dof_equal_spm(fitted, name):
    model = fitted(name)
    reference, fit, mask = model.reference, model.fit, model.data.mask
    export = reference.export["xX"]
    assert fit.model.erdf == pytest.approx(export["erdf"], abs=1e-6)
    assert fit.model.trace_rv == pytest.approx(export["trRV"], abs=1e-8)
    assert np.abs(fit.model.beta_covariance - reference.csv("xX_Bcov.csv")).max() < 1e-10
    kwx = reference.csv("design_matrix_filtered_whitened.csv")
    assert np.abs(fit.model.space.matrix - kwx).max() <= 1e-10 * np.abs(kwx).max()
    res_ms = reference.image("ResMS")[mask]
    assert np.all(np.abs(fit.res_ms - res_ms) <= 1e-4 * np.abs(res_ms))
    for column in range(fit.betas.shape[0]):
        beta = reference.image(f"beta_{column + 1:04d}")[mask]
        assert np.abs(fit.betas[column] - beta).max() <= 1e-6 * np.abs(beta).max()


@pytest.mark.parametrize("name", MODELS)
def test_t_and_f_maps_equal_spm(fitted, name):
    model = fitted(name)
    reference, mask = model.reference, model.data.mask
    for number, contrast in enumerate(reference.export["xCon"], start=1):
        weights = np.asarray(contrast["c"], dtype=float)
        if contrast["STAT"] == "T":
            maps = t_contrast(weights, model.fit)
            spm_t = reference.image(f"spmT_{number:04d}")[mask]
            error = np.abs(maps.t - spm_t)
            assert np.mean(error <= 1e-3) >= 0.999
            assert error.max() <= 1e-2
            con = reference.image(f"con_{number:04d}")[mask]
            assert np.abs(maps.effect - con).max() <= 1e-6 * np.abs(con).max()
        else:
            maps = f_contrast(weights, model.fit)
            spm_f = reference.image(f"spmF_{number:04d}")[mask]
            error = np.abs(maps.f - spm_f) / np.abs(spm_f).max()
            assert error.max() <= 1e-5
            assert maps.eidf == pytest.approx(contrast["eidf"], abs=1e-8)


def test_replicated_contrasts_equal_spm_replsc(fitted):
    model = fitted("multisession_ols")
    design = model.design
    exported = {
        c["name"]: np.atleast_2d(np.asarray(c["c"], float)) for c in model.reference.export["xCon"]
    }
    n_columns = design.matrix.shape[1]
    face, sessions = replicate_over_sessions({"face": [1.0]}, design.condition_columns, n_columns)
    assert sessions == (0, 1, 2)
    assert np.allclose(face, exported["face - All Sessions"][0])
    difference, _ = replicate_over_sessions(
        {"face": [1.0], "house": [-1.0]}, design.condition_columns, n_columns
    )
    assert np.allclose(difference, exported["faceMinusHouse - All Sessions"][0])
    catch, sessions = replicate_over_sessions(
        {"catch": [1.0]}, design.condition_columns, n_columns
    )
    assert sessions == (0, 1)
    assert catch.sum() == pytest.approx(1.0)
