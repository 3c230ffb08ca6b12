"""SPM12 designs and high-pass bases against SPM12 r7771's own (``spm12_planted``)."""

from __future__ import annotations

import numpy as np
import pytest
from spm12_reference import MODELS, events_session, load_model, needs_reference

from bids_glm.design.spm_basis import spm_basis_set, spm_canonical_hrf, spm_orth
from bids_glm.design.spm_microtime import MicrotimeGrid, matlab_round, stimulus_function
from bids_glm.design.spm_session_design import spm_design
from bids_glm.glm.spm_filter import apply_high_pass, dct_high_pass_basis

pytestmark = needs_reference


def _design(model):
    n_scans = [int(n) for n in np.atleast_1d(model.export["nscan"])]
    sessions = tuple(events_session(run, n) for run, n in zip(model.runs, n_scans, strict=True))
    basis = spm_basis_set(model.tr_s / 16, *model.derivatives)
    return spm_design(sessions, model.tr_s, basis, fmri_t=16, fmri_t0=model.fmri_t0)


@pytest.mark.parametrize("name", MODELS)
def test_design_equals_spm(name):
    model = load_model(name)
    design = _design(model)
    reference = model.csv("design_matrix.csv")
    header = (model.folder / "column_names.txt").read_text().split("\n")
    assert list(design.column_names) == [line for line in header if line]
    assert design.matrix.shape == reference.shape
    scale = np.abs(reference).max(axis=0)
    assert np.all(np.abs(design.matrix - reference).max(axis=0) <= 1e-6 * scale)


@pytest.mark.parametrize("name", ["multisession_ar1", "run2_hpf64", "run1_ar1"])
def test_high_pass_bases_equal_spm(name):
    model = load_model(name)
    n_scans = np.atleast_1d(model.export["nscan"])
    for session, n in enumerate(n_scans, start=1):
        reference = model.csv(f"hpf_X0_sess{session}.csv")
        basis = dct_high_pass_basis(int(n), model.tr_s, model.cutoff_s)
        assert basis.shape == reference.shape
        assert np.abs(basis - reference).max() <= 1e-10


def test_basis_set_equals_spm_get_bf():
    model = load_model("run1_derivs")
    reference = np.asarray(model.export["xBF"]["bf"])
    basis = spm_basis_set(model.tr_s / 16, True, True)
    assert basis.shape == reference.shape == (257, 3)
    assert np.abs(basis - reference).max() <= 1e-12 * np.abs(reference).max()


def test_canonical_hrf_has_unit_sum_and_spm_length():
    hrf = spm_canonical_hrf(0.125)
    assert hrf.shape == (257,)
    assert hrf.sum() == pytest.approx(1.0)
    assert hrf[0] == 0.0


def test_spm_orth_pads_zero_and_dependent_columns():
    columns = np.array([[1.0, 0.0, 2.0, 1.0], [1.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    orthogonal = spm_orth(columns)
    assert np.allclose(orthogonal[:, 0], columns[:, 0])
    assert np.all(orthogonal[:, 1] == 0) and np.all(orthogonal[:, 2] == 0)
    assert orthogonal[:, 0] @ orthogonal[:, 3] == pytest.approx(0.0)


def test_stimulus_rounds_half_away_and_sticks_are_scaled():
    assert list(matlab_round(np.array([0.5, 1.5, 2.5, -0.5]))) == [1.0, 2.0, 3.0, -1.0]
    grid = MicrotimeGrid(tr_s=2.0, fmri_t=16, fmri_t0=8, n_scans=4)
    boxcar = stimulus_function(grid, np.array([1.0]), np.array([0.5]))
    assert np.flatnonzero(boxcar).tolist() == list(range(40, 45))
    sticks = stimulus_function(grid, np.array([1.0]), np.array([0.0]))
    assert np.flatnonzero(sticks).tolist() == [40]
    assert sticks[40] == pytest.approx(8.0)


def test_high_pass_removes_cosines_per_session():
    rows = (np.arange(0, 50), np.arange(50, 90))
    bases = (dct_high_pass_basis(50, 2.0, 128.0), dct_high_pass_basis(40, 2.0, 128.0))
    drift = np.concatenate([bases[0] @ np.ones(bases[0].shape[1]), bases[1][:, 0]])[:, None]
    assert np.abs(apply_high_pass(drift, rows, bases)).max() < 1e-12
