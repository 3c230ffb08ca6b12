"""SPM12's serial-correlation components and ReML, from the exported ``Cy`` (no images)."""

from __future__ import annotations

import numpy as np
import pytest
from spm12_reference import load_model, needs_reference

from bids_glm.glm.spm_filter import dct_high_pass_basis
from bids_glm.glm.spm_noise import ar_components, spm_ar_correlation, whitening_matrix
from bids_glm.glm.spm_reml import spm_dx, spm_reml


def test_ar_correlation_is_truncated_beyond_lag_five():
    correlation = spm_ar_correlation(0.2, 12)
    assert correlation[0, 5] == pytest.approx(0.2**5)
    assert np.all(correlation[0, 6:] == 0)


def test_components_expand_ar_around_its_coefficient():
    low, high = ar_components(20)
    # (low + high) / 2 is AR(0.2); the lag-1 entry of the derivative term is 1
    assert np.allclose((low + high) / 2, spm_ar_correlation(0.2, 20))
    assert (high - low)[0, 1] / 0.4 == pytest.approx(1.0, rel=1e-3)


def test_whitening_matrix_whitens():
    covariance = spm_ar_correlation(0.3, 30)
    whitening = whitening_matrix(covariance)
    assert np.abs(whitening @ covariance @ whitening.T - np.eye(30)).max() < 1e-4


def test_spm_dx_with_long_time_is_a_newton_step():
    jacobian = np.array([[-2.0, 0.3], [0.3, -1.0]])
    gradient = np.array([1.0, -0.5])
    step = spm_dx(jacobian, gradient, 40.0)
    assert np.allclose(step, -np.linalg.solve(jacobian, gradient))


@needs_reference
@pytest.mark.parametrize("name", ["multisession_ar1", "run1_derivs", "run2_hpf64"])
def test_reml_on_exported_covariance_gives_spm_hyperparameters(name):
    model = load_model(name)
    design = model.csv("design_matrix.csv")
    pooled = model.csv("xVi_Cy.csv")
    rows_start, hyperparameters = 0, []
    for n_scans in np.atleast_1d(model.export["nscan"]):
        rows = np.arange(rows_start, rows_start + int(n_scans))
        rows_start += int(n_scans)
        drifts = dct_high_pass_basis(int(n_scans), model.tr_s, model.cutoff_s)
        components = ar_components(int(n_scans))
        if rows_start == int(n_scans):
            exported = model.csv("xVi_Vi_components_row1.csv")
            assert np.abs(components[0][0] - exported[0, : int(n_scans)]).max() < 1e-12
            assert np.abs(components[1][0] - exported[1, : int(n_scans)]).max() < 1e-12
        result = spm_reml(
            pooled[np.ix_(rows, rows)], np.column_stack([design[rows], drifts]), components
        )
        assert result.n_iterations == 2
        hyperparameters.extend(result.hyperparameters)
    assert np.abs(np.asarray(hyperparameters) - model.export["xVi"]["h"]).max() < 1e-10
