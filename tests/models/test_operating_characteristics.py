"""Exact design layer: boundaries, OC, assurance, two-sample and interim designs against independent computations."""

from __future__ import annotations

import itertools
import numpy as np
import pytest
from scipy import integrate, stats

from isletbayes.models import operating_characteristics as d
from isletbayes.models.mixtures import BetaMixture as mix, prob_difference_greater


UNIFORM = mix([1.0], [1.0], [1.0])
ROBUST = mix([0.8, 0.2], [11.0, 1.0], [3.0, 1.0])  # a robustified phase 1/2 posterior


def posterior_prob_by_quadrature(prior, r, n, p0):
    """P(theta > p0 | r, n) by integrating prior density x binomial likelihood directly (no conjugacy)."""
    def dens(t):
        return sum(w * stats.beta.pdf(t, a, b) for w, a, b in zip(prior.weights, prior.a, prior.b)) \
            * stats.binom.pmf(r, n, t)
    num = integrate.quad(dens, p0, 1.0, epsabs=1e-12, epsrel=1e-10, limit=200)[0]
    den = integrate.quad(dens, 0.0, 1.0, epsabs=1e-12, epsrel=1e-10, limit=200, points=[p0])[0]
    return num / den


def test_binomial_boundaries_match_scipy_binomtest_and_clopper_pearson():
    n_values = np.arange(20, 101)
    for p0, alpha in [(0.3, 0.025), (0.5, 0.05), (0.44, 0.025)]:
        c = d.binomial_boundaries(n_values, p0, alpha)
        for n, cn in zip(n_values, c):
            assert stats.binomtest(int(cn), int(n), p0, alternative="greater").pvalue <= alpha
            assert stats.binomtest(int(cn) - 1, int(n), p0, alternative="greater").pvalue > alpha
            low_win = stats.binomtest(int(cn), int(n), alternative="greater").proportion_ci(1 - alpha).low
            low_lose = stats.binomtest(int(cn) - 1, int(n), alternative="greater").proportion_ci(1 - alpha).low
            assert low_win > p0 - 1e-12 and low_lose < p0


def test_binomial_known_critical_value_and_type1_error():
    # n = 20, p0 = 0.5, one-sided 5%: P(X >= 15) = 0.0207, P(X >= 14) = 0.0577
    oc = d.single_arm_oc([20], rule="binomial", p0=0.5, alpha=0.05)
    assert oc.boundary[0] == 15
    assert oc.type1[0] == pytest.approx(0.020694732666015625, rel=1e-12)


def test_uniform_prior_posterior_matches_binomial_identity():
    # Beta(r+1, n-r+1) survival at p0 equals P(Bin(n+1, p0) <= r)
    n, p0 = 40, 0.44
    prob = d.posterior_prob_above_all(UNIFORM, n, p0)
    assert np.allclose(prob, stats.binom.cdf(np.arange(n + 1), n + 1, p0), atol=1e-12)


@pytest.mark.parametrize("prior", [UNIFORM, ROBUST, mix([0.5, 0.5], [0.5, 4.0], [0.5, 12.0])])
def test_bayes_boundaries_against_brute_force(prior):
    n_values = np.array([20, 27, 33, 40])
    p0, gamma = 0.44, 0.95
    c = d.bayes_boundaries(prior, n_values, p0, gamma)
    for n, cn in zip(n_values, c):
        n = int(n)
        # the boundary is where the brute-force probability first reaches gamma (it is monotone in r)
        assert posterior_prob_by_quadrature(prior, int(cn), n, p0) >= gamma
        assert posterior_prob_by_quadrature(prior, int(cn) - 1, n, p0) < gamma
        assert d.bayes_boundary(prior, n, p0, gamma) == cn
        exact = d.posterior_prob_above_all(prior, n, p0)
        assert np.all(np.diff(exact) >= -1e-15)
        for r in (0, n // 3, n - 2, n):
            assert exact[r] == pytest.approx(posterior_prob_by_quadrature(prior, r, n, p0), abs=1e-8)


def test_assurance_equals_power_averaged_over_design_prior():
    n_values = np.arange(20, 101, 10)
    design_prior = ROBUST
    oc = d.single_arm_oc(n_values, rule="bayes", p0=0.44, gamma=0.975, analysis_prior=UNIFORM,
                         design_prior=design_prior)
    for i, n in enumerate(n_values):
        def integrand(t):
            dens = sum(w * stats.beta.pdf(t, a, b) for w, a, b in zip(design_prior.weights, design_prior.a,
                                                                       design_prior.b))
            return stats.binom.sf(oc.boundary[i] - 1, n, t) * dens
        expected = integrate.quad(integrand, 0, 1, epsabs=1e-12, limit=200)[0]
        assert oc.assurance[i] == pytest.approx(expected, abs=1e-9)
    # power at p0 is the type I error, power is increasing in theta
    assert np.allclose(oc.power_at(0.44), oc.type1)
    assert np.all(np.diff(oc.power, axis=1) >= -1e-15)


def test_sawtooth_is_reported_not_smoothed_and_smallest_n():
    n_values = np.arange(20, 101)
    oc = d.single_arm_oc(n_values, rule="binomial", p0=0.44, alpha=0.025)
    steps = np.diff(oc.type1)
    assert (steps > 0).any() and (steps < 0).any()  # discrete designs: type I error goes up and down
    assert np.all(oc.type1 <= 0.025)
    power = oc.power_at(0.65)
    assert (np.diff(power) < 0).any()  # power is not monotone in n either
    res = d.smallest_n(n_values, power >= 0.9)
    assert power[n_values == res["first"]][0] >= 0.9
    assert np.all(power[n_values < res["first"]] < 0.9)
    assert np.all(power[n_values >= res["stable"]] >= 0.9)
    assert res["stable"] >= res["first"]
    assert d.smallest_n([1, 2, 3], np.array([False, True, False])) == {"first": 2, "stable": None}
    assert d.smallest_n([1, 2, 3], np.array([True, False, True])) == {"first": 1, "stable": 3}


# ----------------------------------------------------------------------------------------------------------------
# two-sample
# ----------------------------------------------------------------------------------------------------------------

def prob_diff_by_quadrature(post_t, post_c, delta):
    """P(theta_t - theta_c > delta) for two beta mixtures by adaptive quadrature."""
    def f_c(x):
        return sum(w * stats.beta.pdf(x, a, b) for w, a, b in zip(*post_c))

    def s_t(y):
        if y < 0:
            return 1.0
        if y > 1:
            return 0.0
        return sum(w * stats.beta.sf(y, a, b) for w, a, b in zip(*post_t))

    pts = [p for p in (1 - delta, -delta) if 0 < p < 1]
    return integrate.quad(lambda x: f_c(x) * s_t(x + delta), 0, 1, points=pts or None, limit=400,
                          epsabs=1e-12)[0]


def _post(prior, r, n):
    w, a, b = d._posterior_components(prior, np.array(r), n)
    return w, a, b


@pytest.mark.parametrize("delta", [0.0, 0.1, -0.05])
def test_two_sample_posterior_probability_against_quadrature(delta):
    map_prior = mix([0.7, 0.3], [6.0, 1.0], [9.0, 1.0])
    n_t, n_c = 15, 10
    prob = d.two_sample_posterior_prob(UNIFORM, map_prior, n_t, n_c, delta)
    for r_t, r_c in [(0, 0), (5, 3), (12, 2), (15, 10), (9, 7), (1, 9)]:
        expected = prob_diff_by_quadrature(_post(UNIFORM, r_t, n_t), _post(map_prior, r_c, n_c), delta)
        assert prob[r_t, r_c] == pytest.approx(expected, abs=1e-7)
    # and against the mixture layer's own (quantile-scale) implementation
    assert prob[9, 7] == pytest.approx(
        prob_difference_greater(UNIFORM.posterior(9, n_t), map_prior.posterior(7, n_c), delta), abs=1e-7)


def test_two_sample_oc_and_assurance_against_enumeration():
    map_prior = mix([0.8, 0.2], [4.0, 1.0], [12.0, 1.0])
    n_t, n_c = 12, 8
    decision = d.two_sample_decision(UNIFORM, map_prior, n_t, n_c, delta=0.0, gamma=0.95)
    # success region is monotone: more treatment successes or fewer control successes never lose
    assert np.all(np.diff(decision.astype(int), axis=0) >= 0)
    assert np.all(np.diff(decision.astype(int), axis=1) <= 0)
    pairs = [(0.25, 0.25), (0.5, 0.25), (0.7, 0.3)]
    got = d.two_sample_success_probability(decision, [p[0] for p in pairs], [p[1] for p in pairs])
    for (tt, tc), g in zip(pairs, got):
        brute = sum(stats.binom.pmf(rt, n_t, tt) * stats.binom.pmf(rc, n_c, tc)
                    for rt in range(n_t + 1) for rc in range(n_c + 1) if decision[rt, rc])
        assert g == pytest.approx(brute, abs=1e-13)
    design_t, design_c = mix([1.0], [11.0], [3.0]), mix([1.0], [4.0], [12.0])
    brute_assurance = sum(
        stats.betabinom.pmf(rt, n_t, 11, 3) * stats.betabinom.pmf(rc, n_c, 4, 12)
        for rt in range(n_t + 1) for rc in range(n_c + 1) if decision[rt, rc])
    assert d.two_sample_assurance(decision, design_t, design_c) == pytest.approx(brute_assurance, abs=1e-13)


# ----------------------------------------------------------------------------------------------------------------
# interim analyses
# ----------------------------------------------------------------------------------------------------------------

def test_predictive_probability_against_quadrature():
    prior, n1, n_max, c = ROBUST, 10, 25, 16
    pp = d.predictive_probability(prior, n1, n_max, c)
    for x in [0, 4, 7, 10]:
        w, a, b = _post(prior, x, n1)
        dens = lambda t: sum(wk * stats.beta.pdf(t, ak, bk) for wk, ak, bk in zip(w, a, b))  # noqa: E731
        expected = integrate.quad(lambda t: stats.binom.sf(c - x - 1, n_max - n1, t) * dens(t), 0, 1,
                                  epsabs=1e-12)[0]
        assert pp[x] == pytest.approx(expected, abs=1e-9)
    assert np.all(np.diff(pp) >= -1e-15)
    f = d.futility_boundary(pp, 0.1)
    assert pp[f] < 0.1 <= pp[f + 1]


def test_interim_oc_against_enumeration_of_every_sequence():
    """Brute force: all 2^12 participant sequences, stopping rule applied look by look."""
    looks, n_max, theta_l = [4, 8], 12, 0.2
    c = d.bayes_boundary(UNIFORM, n_max, 0.3, 0.9)
    thetas = np.array([0.3, 0.5, 0.7])
    design = d.interim_design(UNIFORM, looks, n_max, c, theta_l, thetas)
    success = np.zeros(3)
    stopped = np.zeros(3)
    exp_n = np.zeros(3)
    for seq in itertools.product([0, 1], repeat=n_max):
        s = sum(seq)
        prob = thetas ** s * (1 - thetas) ** (n_max - s)
        n_used, win = n_max, False
        for look, f in zip(looks, design.futility):
            if sum(seq[:look]) <= f:
                n_used = look
                break
        else:
            win = s >= c
        success += prob * win
        stopped += prob * (n_used < n_max)
        exp_n += prob * n_used
    assert np.allclose(design.success, success, atol=1e-13)
    assert np.allclose(design.early_stop, stopped, atol=1e-13)
    assert np.allclose(design.expected_n, exp_n, atol=1e-12)
    assert any(f >= 0 for f in design.futility)  # the example really has a futility rule


def test_interim_without_futility_reduces_to_single_stage():
    c = d.bayes_boundary(UNIFORM, 30, 0.44, 0.95)
    oc = d.interim_oc([15], 30, c, [-1], [0.44, 0.7])
    assert np.allclose(oc["success"], stats.binom.sf(c - 1, 30, [0.44, 0.7]))
    assert np.allclose(oc["expected_n"], 30)
    with pytest.raises(ValueError):
        d.interim_design(UNIFORM, [30], 30, c, 0.1, [0.5])
