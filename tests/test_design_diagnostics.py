"""Rank and conditioning diagnostics name the collinear columns."""

from __future__ import annotations

import numpy as np

from bids_glm.design.diagnostics import diagnose_design

RNG = np.random.default_rng(0)


def test_well_conditioned_design_has_no_suspects():
    diagnostics = diagnose_design(RNG.normal(size=(60, 4)), list("abcd"))
    assert diagnostics.rank == 4
    assert diagnostics.condition_number < 10
    assert diagnostics.collinear_columns == ()
    assert not diagnostics.is_ill_conditioned


def test_exact_linear_combination_and_zero_column_are_named():
    base = RNG.normal(size=(60, 3))
    design = np.c_[base, base[:, 0] - 2 * base[:, 2], np.ones(60), np.zeros(60)]
    diagnostics = diagnose_design(design, ["a", "b", "c", "a_minus_2c", "constant", "empty"])
    assert diagnostics.rank == 4
    assert diagnostics.condition_number == np.inf
    assert diagnostics.collinear_columns == ("a", "c", "a_minus_2c", "empty")
    assert diagnostics.is_ill_conditioned


def test_near_collinearity_beyond_1e10_is_flagged_scale_free():
    base = RNG.normal(size=(60, 3))
    nearly = base[:, 1] + 1e-12 * RNG.normal(size=60)
    design = np.c_[base * [1.0, 1e6, 1e-6], nearly * 1e6]  # scales do not matter
    diagnostics = diagnose_design(design, ["a", "b", "c", "b_again"])
    assert diagnostics.condition_number > 1e10
    assert diagnostics.collinear_columns == ("b", "b_again")
    assert diagnostics.is_ill_conditioned
    scaled_only = diagnose_design(base * [1e8, 1.0, 1e-8], ["a", "b", "c"])
    assert not scaled_only.is_ill_conditioned
