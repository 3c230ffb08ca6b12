"""t/F -> p/z conversions: mpmath in the far tails, scipy in the bulk, and properties."""

from __future__ import annotations

import mpmath as mp
import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from bids_glm.glm.stats import _log_upper_tail_t, f_to_p_z, t_to_p_z
from bids_glm.glm.t_tail_table import tail_table

mp.mp.dps = 40


def _z_from_log_tail(log_p):
    """The z whose standard-normal upper tail is exp(log_p), solved in high precision."""

    def equation(z):
        return mp.log(mp.erfc(z / mp.sqrt(2)) / 2) - log_p

    return mp.findroot(equation, mp.sqrt(-2 * log_p))


def _log_tail_by_quadrature(log_density, x, decay_rate):
    """log of int_x^inf exp(log_density(s)) ds, with the variable scaled by the decay rate."""
    g0 = log_density(x)
    integral = mp.quad(
        lambda u: mp.exp(log_density(x + u / decay_rate) - g0), [0, 1, 10, 100, 1000, mp.inf]
    )
    return g0 - mp.log(decay_rate) + mp.log(integral)


def _t_reference(t, dof):
    """Upper-tail log p of Student's t by direct integration of its density."""
    t, nu = mp.mpf(t), mp.mpf(dof)
    log_c = mp.loggamma((nu + 1) / 2) - mp.loggamma(nu / 2) - mp.log(nu * mp.pi) / 2

    def log_density(s):
        return log_c - (nu + 1) / 2 * mp.log1p(s * s / nu)

    return _log_tail_by_quadrature(log_density, t, (nu + 1) * t / (nu + t * t))


def _f_reference(f, d1, d2):
    """Upper-tail log p of Fisher's F by direct integration of its density."""
    f, d1, d2 = mp.mpf(f), mp.mpf(d1), mp.mpf(d2)
    log_c = d1 / 2 * mp.log(d1 / d2) - mp.log(mp.beta(d1 / 2, d2 / 2))

    def log_density(s):
        return log_c + (d1 / 2 - 1) * mp.log(s) - (d1 + d2) / 2 * mp.log1p(d1 * s / d2)

    decay_rate = (d1 + d2) / 2 * (d1 / d2) / (1 + d1 * f / d2) - (d1 / 2 - 1) / f
    return _log_tail_by_quadrature(log_density, f, decay_rate)


@pytest.mark.parametrize(
    ("t", "dof"),
    [
        (40.0, 200.0),  # p ~ 1e-97: scipy's range
        (200.0, 200.0),  # p ~ 1e-238
        (1e3, 200.0),  # p ~ 1e-457: underflows float64
        (1e5, 10.0),
        (3e8, 3.0),
        (60.0, 1e4),
        (45.0, 1e10),  # huge dof: the hypergeometric factor comes from quadrature
        (7.0, 1.0),
    ],
)
def test_t_tail_matches_mpmath(t, dof):
    log_p = _t_reference(t, dof)
    z_expected = float(_z_from_log_tail(log_p))
    p, z = t_to_p_z(np.array([t, -t]), dof)
    assert np.all(np.isfinite(z))
    assert z[0] == pytest.approx(z_expected, rel=1e-6)
    assert z[1] == -z[0]
    assert p[0] == pytest.approx(float(mp.exp(log_p)), rel=1e-6, abs=0.0)
    assert p[1] == pytest.approx(1.0 - float(mp.exp(log_p)), rel=1e-12)


@pytest.mark.parametrize(
    ("f", "dof_num", "dof_den"),
    [
        (1e3, 3.0, 200.0),  # p ~ 1e-120
        (1e5, 3.0, 200.0),  # p ~ 1e-330: underflows
        (1e12, 5.0, 50.0),
        (2e3, 20.0, 1e7),
        (1e4, 1.0, 1e10),  # huge dof: quadrature
    ],
)
def test_f_upper_tail_matches_mpmath(f, dof_num, dof_den):
    log_p = _f_reference(f, dof_num, dof_den)
    p, z = f_to_p_z(np.array([f]), dof_num, dof_den)
    assert np.isfinite(z[0])
    assert z[0] == pytest.approx(float(_z_from_log_tail(log_p)), rel=1e-6)
    assert p[0] == pytest.approx(float(mp.exp(log_p)), rel=1e-6, abs=0.0)


@pytest.mark.parametrize(("f", "dof_num", "dof_den"), [(1e-60, 20.0, 100.0), (1e-8, 2.0, 40.0)])
def test_f_lower_tail_matches_mpmath(f, dof_num, dof_den):
    # P(F <= f) = I_y(d1/2, d2/2) with y = d1 f / (d1 f + d2); z is its lower normal quantile
    y = mp.mpf(dof_num) * f / (mp.mpf(dof_num) * f + dof_den)
    log_cdf = mp.log(mp.betainc(mp.mpf(dof_num) / 2, mp.mpf(dof_den) / 2, 0, y, regularized=True))
    p, z = f_to_p_z(np.array([f]), dof_num, dof_den)
    assert z[0] == pytest.approx(-float(_z_from_log_tail(log_cdf)), rel=1e-6)
    assert p[0] == pytest.approx(1.0 - float(mp.exp(log_cdf)), rel=1e-12)


@pytest.mark.parametrize("dof", [4.0, 30.0, 250.0])
def test_t_bulk_matches_scipy(dof):
    t = np.linspace(-9.0, 9.0, 181)
    p, z = t_to_p_z(t, dof)
    expected_p = scipy.stats.t.sf(t, dof)
    # z from whichever tail is small, where scipy keeps full precision
    expected_z = np.where(
        t > 0,
        scipy.stats.norm.isf(expected_p),
        scipy.stats.norm.ppf(scipy.stats.t.cdf(t, dof)),
    )
    np.testing.assert_allclose(p, expected_p, rtol=1e-12, atol=0)
    np.testing.assert_allclose(z, expected_z, rtol=1e-10, atol=1e-12)
    assert z[90] == 0.0 and p[90] == 0.5


@pytest.mark.parametrize(("dof_num", "dof_den"), [(1.0, 20.0), (3.0, 150.0), (12.0, 600.0)])
def test_f_bulk_matches_scipy(dof_num, dof_den):
    f = np.concatenate([np.linspace(0.01, 1.0, 40), np.linspace(1.0, 40.0, 80)])
    p, z = f_to_p_z(f, dof_num, dof_den)
    expected_p = scipy.stats.f.sf(f, dof_num, dof_den)
    expected_z = np.where(
        expected_p < 0.5,
        scipy.stats.norm.isf(expected_p),
        scipy.stats.norm.ppf(scipy.stats.f.cdf(f, dof_num, dof_den)),
    )
    np.testing.assert_allclose(p, expected_p, rtol=1e-12, atol=0)
    np.testing.assert_allclose(z, expected_z, rtol=1e-10, atol=1e-12)


def test_special_values():
    p, z = t_to_p_z(np.array([np.nan, np.inf, -np.inf, 0.0]), 12.0)
    assert np.isnan(p[0]) and np.isnan(z[0])
    assert (p[1], z[1]) == (0.0, np.inf) and (p[2], z[2]) == (1.0, -np.inf)
    assert (p[3], z[3]) == (0.5, 0.0)
    p, z = f_to_p_z(np.array([np.nan, 0.0, np.inf]), 2.0, 30.0)
    assert np.isnan(p[0]) and np.isnan(z[0])
    assert (p[1], z[1]) == (1.0, -np.inf) and (p[2], z[2]) == (0.0, np.inf)
    p, z = t_to_p_z(np.ones((2, 3)), 5.0)
    assert p.shape == z.shape == (2, 3)


@pytest.mark.parametrize("dof", [0.0, -3.0, np.inf, np.nan])
def test_invalid_dof_is_rejected(dof):
    with pytest.raises(ValueError, match="finite positive"):
        t_to_p_z(np.ones(3), dof)
    with pytest.raises(ValueError, match="finite positive"):
        f_to_p_z(np.ones(3), 2.0, dof)


finite_t = st.floats(min_value=-1e8, max_value=1e8, allow_nan=False)
dofs = st.floats(min_value=1.0, max_value=1e9)


@settings(max_examples=150, deadline=None)
@given(st.lists(finite_t, min_size=2, max_size=20), dofs)
def test_z_is_monotone_and_odd_in_t(values, dof):
    t = np.sort(np.array(values))
    p, z = t_to_p_z(t, dof)
    _, z_negated = t_to_p_z(-t, dof)
    np.testing.assert_array_equal(z_negated, -z)
    # non-decreasing up to the last bits of float64 rounding
    assert np.all(np.diff(z) >= -1e-12 * np.maximum(np.abs(z[1:]), 1.0))
    assert np.all(np.diff(p) <= 1e-15)
    assert np.all(np.isfinite(z))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(min_value=0.0, max_value=1e12), min_size=2, max_size=20),
    st.integers(min_value=1, max_value=30),
    st.floats(min_value=1.0, max_value=1e6),
)
def test_z_is_monotone_in_f(values, dof_num, dof_den):
    f = np.sort(np.array(values))
    _, z = f_to_p_z(f, dof_num, dof_den)
    finite = np.isfinite(z)
    assert np.all(finite | (f == 0.0))
    assert np.all(np.diff(z[finite]) >= -1e-12 * np.maximum(np.abs(z[finite][1:]), 1.0))


@pytest.mark.parametrize("dof", [1.0, 2.5, 7.0, 30.0, 187.0, 1e3, 1e5, 1e9])
def test_t_table_path_matches_exact_path(dof):
    # maps of >= 10k voxels go through the interpolated tail table; small arrays do not
    rng = np.random.default_rng(int(dof) % 1000)
    t = np.concatenate(
        [rng.standard_normal(30_000) * 4, rng.uniform(-32.0, 32.0, 30_000), [0.0, 32.0, -32.0]]
    )
    assert tail_table(dof, _log_upper_tail_t) is not None  # the tables are used at all
    p, z = t_to_p_z(t, dof)
    p_exact = np.concatenate([t_to_p_z(part, dof)[0] for part in np.array_split(t, 20)])
    z_exact = np.concatenate([t_to_p_z(part, dof)[1] for part in np.array_split(t, 20)])
    np.testing.assert_allclose(p, p_exact, rtol=1e-11, atol=0)
    np.testing.assert_allclose(z, z_exact, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("t", "dof"), [(20.0, 200.0), (31.5, 12.0), (40.0, 200.0), (5.0, 3.0)])
def test_t_table_path_matches_mpmath(t, dof):
    log_p = _t_reference(t, dof)
    values = np.tile([t, -t, 0.5], 5_000)  # large enough for the table
    p, z = t_to_p_z(values, dof)
    assert z[0] == pytest.approx(float(_z_from_log_tail(log_p)), rel=1e-9)
    assert p[0] == pytest.approx(float(mp.exp(log_p)), rel=1e-9, abs=0.0)
    assert z[1] == -z[0] and p[1] == pytest.approx(1.0 - p[0], rel=1e-12)


def test_t_table_refuses_an_inaccurate_grid():
    def noisy_log_tail(u, dof):  # an "exact" function no smooth table can follow
        return np.log(scipy.stats.t.sf(u, dof)) + 1e-6 * np.sin(1e4 * u)

    assert tail_table(9.0, noisy_log_tail) is None
    t = np.linspace(-5, 5, 20_001)
    p, _ = t_to_p_z(t, 9.0)  # the real function gets its table
    np.testing.assert_allclose(p, scipy.stats.t.sf(t, 9.0), rtol=1e-11)
