"""Exact design layer: boundaries, OC, assurance, two-sample and interim designs against independent computations."""

from __future__ import annotations

import itertools
import numpy as np
import pytest
from scipy import integrate, stats

from isletbayes.models import operating_characteristics as d
from isletbayes.models.mixtures import BetaMixture as mix, prob_difference_greater
from isletbayes.models.validation import ModelInputError


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


# ----------------------------------------------------------------------------------------------------------------
# exact kernels: beta-binomial tails, bisection boundaries, binomial tails
# ----------------------------------------------------------------------------------------------------------------
def rational_betabinom_tail(c, n, a, b):
    """P(X >= c), X ~ BetaBin(n, a, b), in exact rational arithmetic: pmf = C(n, x) (a)_x (b)_{n-x} / (a + b)_n."""
    from fractions import Fraction
    from math import comb

    a, b = Fraction(a).limit_denominator(1000), Fraction(b).limit_denominator(1000)
    rise_a, rise_b, rise_ab = [Fraction(1)], [Fraction(1)], Fraction(1)
    for i in range(n):
        rise_a.append(rise_a[-1] * (a + i))
        rise_b.append(rise_b[-1] * (b + i))
        rise_ab *= a + b + i
    return float(sum(comb(n, x) * rise_a[x] * rise_b[n - x] for x in range(max(c, 0), n + 1)) / rise_ab)


def test_assurance_is_exact_against_rational_arithmetic():
    design = mix([0.3, 0.5, 0.2], [0.5, 11.0, 200.5], [0.5, 3.0, 150.2])
    n_values = np.array([1, 7, 40, 120, 333, 600])
    for c_frac in (0.0, 0.3, 0.55, 0.9, 1.0):
        c = np.minimum(np.round(c_frac * n_values).astype(int) + (c_frac == 1.0), n_values + 1)
        got = d.assurance(c, n_values, design)
        expected = [sum(w * rational_betabinom_tail(int(ci), int(ni), a, b)
                        for w, a, b in zip(design.weights, design.a, design.b)) for ci, ni in zip(c, n_values)]
        assert np.allclose(got, expected, atol=2e-15, rtol=0)


def test_beta_binomial_kernel_against_scipy_and_edges():
    for n, a, b in [(30, 0.3, 0.7), (75, 11.0, 3.0), (150, 1.0, 1.0), (12, 400.5, 2.0)]:
        c = np.arange(-1, n + 3)
        expected = np.where(c > n, 0.0, stats.betabinom.sf(c - 1, n, a, b))
        got = d._betabinom_sums(c, n, a, b)
        assert np.allclose(got, expected, atol=1e-13, rtol=0)
    assert d._betabinom_sums(0, 10, 2.0, 3.0) == 1.0 and d._betabinom_sums(11, 10, 2.0, 3.0) == 0.0
    # a uniform prior predicts every count with probability 1 / (n + 1)
    n = np.arange(1, 60)
    assert np.allclose(d._betabinom_sums(n // 3, n, 1.0, 1.0), (n - n // 3 + 1) / (n + 1), atol=1e-15)


@pytest.mark.parametrize("prior", [UNIFORM, ROBUST, mix([0.5, 0.5], [0.5, 4.0], [0.5, 12.0]),
                                   mix([0.6, 0.3, 0.1], [19.0, 4.0, 1.0], [29.0, 5.0, 1.0])])
def test_bisection_boundaries_equal_the_full_enumeration(prior):
    """Every r of every n evaluated by the mixture layer: the least winning r is the bisection's boundary."""
    from isletbayes.models.mixtures import posterior_prob_above

    n_values = np.arange(1, 301)
    for p0, gamma in [(0.2, 0.9), (0.44, 0.975), (0.7, 0.99)]:
        r = np.arange(301)
        prob = posterior_prob_above(prior, np.minimum(r[None, :], n_values[:, None]), n_values[:, None], p0)
        wins = (prob >= gamma) & (r[None, :] <= n_values[:, None])
        full = np.where(wins.any(axis=1), np.argmax(wins, axis=1), n_values + 1)
        assert np.array_equal(d.bayes_boundaries(prior, n_values, p0, gamma), full)
    for p0, alpha in [(0.2, 0.01), (0.44, 0.025), (0.7, 0.05)]:
        p_value = stats.binom.sf(np.arange(301)[None, :] - 1, n_values[:, None], p0)
        wins = (p_value <= alpha) & (np.arange(301)[None, :] <= n_values[:, None])
        full = np.where(wins.any(axis=1), np.argmax(wins, axis=1), n_values + 1)
        assert np.array_equal(d.binomial_boundaries(n_values, p0, alpha), full)


def test_success_probability_is_scipy_binomial_tail():
    n_values = np.arange(1, 200)
    c = np.clip(np.round(0.5 * n_values + 3), 0, n_values + 1).astype(int)
    theta = np.linspace(0, 1, 21)
    assert np.allclose(d.success_probability(c, n_values, theta),
                       stats.binom.sf(c[:, None] - 1, n_values[:, None], theta[None, :]), atol=1e-15, rtol=0)


# ----------------------------------------------------------------------------------------------------------------
# calibrated and dual-criterion rules
# ----------------------------------------------------------------------------------------------------------------
def test_calibrated_gamma_meets_the_type1_target_exactly():
    n_values = np.arange(20, 101)
    p0, alpha = 0.44, 0.025
    # the default rule at n = 50: type I error 0.0325, above alpha
    c = d.bayes_boundary(UNIFORM, 50, p0, 0.975)
    assert stats.binom.sf(c - 1, 50, p0) == pytest.approx(0.0325, abs=5e-5)
    assert stats.binom.sf(c - 1, 50, p0) > alpha
    cal = d.calibrate_gamma(UNIFORM, n_values, p0, alpha)
    i50 = int(np.flatnonzero(n_values == 50)[0])
    for i, n in enumerate(n_values):
        n = int(n)
        cn = int(cal.boundary[i])
        # the most powerful boundary meeting alpha, by scipy directly
        assert stats.binom.sf(cn - 1, n, p0) <= alpha < stats.binom.sf(cn - 2, n, p0)
        assert cal.type1[i] == pytest.approx(stats.binom.sf(cn - 1, n, p0), abs=1e-15)
        # the gamma interval gives exactly that boundary: inside it, and just outside it gives another
        for g in (np.nextafter(cal.gamma_low[i], 1.0), cal.gamma_high[i]):
            assert d.bayes_boundary(UNIFORM, n, p0, g) == cn
        assert d.bayes_boundary(UNIFORM, n, p0, cal.gamma_low[i]) == cn - 1
        # one gamma for the whole grid: type I error <= alpha everywhere, by scipy directly
        assert stats.binom.sf(int(cal.boundary_at_gamma[i]) - 1, n, p0) <= alpha
    assert cal.gamma > cal.gamma_infimum and round(cal.gamma, 4) == cal.gamma
    assert np.all(cal.type1_at_gamma <= alpha) and np.all(cal.boundary_at_gamma >= cal.boundary)
    assert cal.type1_at_gamma[i50] <= alpha < 0.0325
    # at the n where the infimum is attained the grid-wide gamma keeps the per-n optimum
    binding = int(np.argmax(cal.gamma_low))
    assert cal.boundary_at_gamma[binding] == cal.boundary[binding]
    frame = cal.to_frame()
    assert list(frame.index) == n_values.tolist() and frame.loc[50, "type1_at_gamma"] <= alpha


def test_dual_criterion_rule_against_brute_force():
    from isletbayes.models.mixtures import posterior_prob_above

    prior, design_prior = ROBUST, mix([1.0], [11.0], [3.0])
    n_values = np.arange(10, 81)
    p0, gamma, p_mcid, gamma_mcid = 0.44, 0.975, 0.6, 0.5
    oc = d.single_arm_oc(n_values, rule="dual", p0=p0, gamma=gamma, p_mcid=p_mcid, gamma_mcid=gamma_mcid,
                         analysis_prior=prior, design_prior=design_prior, theta=[0.44, 0.6, 0.75])
    for i, n in enumerate(n_values):
        r = np.arange(n + 1)
        both = (posterior_prob_above(prior, r, n, p0) >= gamma) & (posterior_prob_above(prior, r, n, p_mcid)
                                                                     >= gamma_mcid)
        c = int(np.argmax(both)) if both.any() else n + 1
        assert both[c:].all()  # the region is an upper set of r
        assert oc.boundary[i] == c
        assert oc.type1[i] == pytest.approx(stats.binom.pmf(r, n, p0)[both].sum(), abs=1e-13)
        assert oc.assurance[i] == pytest.approx(stats.betabinom.pmf(r, n, 11, 3)[both].sum(), abs=1e-13)
    # clinical relevance drives the boundary at large n, significance at small n
    assert np.all(oc.boundary == np.maximum(oc.boundary_significance, oc.boundary_relevance))
    assert (oc.boundary_relevance > oc.boundary_significance).any()
    assert (oc.boundary_relevance < oc.boundary_significance).any()
    frame = oc.to_frame(p1=[0.65])
    assert {"boundary_significance", "boundary_relevance", "assurance", "power_0.65"} <= set(frame.columns)
    with pytest.raises(ModelInputError):
        d.single_arm_oc(n_values, rule="dual", p0=p0, analysis_prior=prior)


# ----------------------------------------------------------------------------------------------------------------
# conditional assurance, smallest n, overlapping cohort
# ----------------------------------------------------------------------------------------------------------------
def test_conditional_assurance_against_quadrature():
    design_prior = mix([0.8, 0.2], [11.0, 1.0], [3.0, 1.0])
    n_values = np.array([20, 35, 50, 80])
    c = d.bayes_boundaries(UNIFORM, n_values, 0.44, 0.975)
    theta_min = 0.6
    got = d.conditional_assurance(c, n_values, design_prior, theta_min)
    mass = design_prior.sf(theta_min)
    for i, n in enumerate(n_values):
        expected = integrate.quad(lambda t: stats.binom.sf(c[i] - 1, n, t) * design_prior.pdf(t), theta_min, 1,
                                  epsabs=1e-13, limit=200)[0] / mass
        assert got[i] == pytest.approx(expected, abs=1e-10)
    assert np.allclose(d.conditional_assurance(c, n_values, design_prior, 0.0), d.assurance(c, n_values,
                                                                                           design_prior), atol=1e-14)
    assert np.all(got > d.assurance(c, n_values, design_prior))  # conditioning on an effect raises it


def test_smallest_n_reaching_a_target_assurance():
    n_values = np.arange(20, 101)
    oc = d.single_arm_oc(n_values, rule="bayes", p0=0.44, gamma=0.975, analysis_prior=UNIFORM,
                         design_prior=mix([0.5, 0.5], [11.0, 1.0], [3.0, 1.0]))
    found = d.smallest_n_reaching(n_values, oc.assurance, 0.6)
    ok = oc.assurance >= 0.6
    assert found.first == n_values[ok][0] and found.target == 0.6
    assert np.all(ok[n_values >= found.stable]) and not ok[n_values == found.stable - 1].any()
    assert d.smallest_n_reaching(n_values, oc.assurance, 0.99).first is None


def test_overlapping_cohort_counts_the_phase12_data_once():
    n_values = np.arange(12, 61, 4)
    c = d.bayes_boundaries(UNIFORM, n_values, 0.44, 0.975)
    res = d.overlapping_cohort_success(n_values, c, 10, 12, UNIFORM, p0=0.44)
    posterior = UNIFORM.posterior(10, 12)  # Beta(11, 3): the phase 1/2 data, once
    for i, n in enumerate(n_values):
        m = int(n) - 12
        needed = int(c[i]) - 10
        expected = integrate.quad(lambda t: stats.binom.sf(needed - 1, m, t) * posterior.pdf(t), 0, 1,
                                  epsabs=1e-13, limit=200)[0] if m else float(needed <= 0)
        assert res.probability_of_success[i] == pytest.approx(expected, abs=1e-10)
        assert res.conditional_type1[i] == pytest.approx(stats.binom.sf(needed - 1, m, 0.44), abs=1e-14)
    # double counting (the phase 1/2 posterior as design prior for all n, plus 10/12 in the count) would differ
    naive = d.assurance(c, n_values, posterior)
    assert not np.allclose(naive, res.probability_of_success)
    frame = res.to_frame()
    assert frame.loc[12, "still_to_come"] == 0 and frame["needed"].tolist() == (c - 10).tolist()
    with pytest.raises(ModelInputError):
        d.overlapping_cohort_success([10], [8], 10, 12, UNIFORM)


# ----------------------------------------------------------------------------------------------------------------
# interim efficacy and futility, binding and non-binding
# ----------------------------------------------------------------------------------------------------------------
def enumerate_sequences(looks, n_max, c, futility, efficacy, thetas, binding=True):
    """Every participant sequence, stopping rules applied look by look: success, stops per reason, expected n."""
    success = np.zeros(len(thetas))
    stop_e = np.zeros((len(looks), len(thetas)))
    stop_f = np.zeros((len(looks), len(thetas)))
    exp_n = np.zeros(len(thetas))
    for seq in itertools.product([0, 1], repeat=n_max):
        s = sum(seq)
        prob = thetas ** s * (1 - thetas) ** (n_max - s)
        n_used, win = n_max, None
        for j, (look, f, e) in enumerate(zip(looks, futility, efficacy)):
            x = sum(seq[:look])
            if x >= e:
                n_used, win = look, True
                stop_e[j] += prob
                break
            if binding and x <= f:
                n_used, win = look, False
                stop_f[j] += prob
                break
        if win is None:
            win = s >= c
        success += prob * win
        exp_n += prob * n_used
    return success, stop_e, stop_f, exp_n


@pytest.mark.parametrize("efficacy", ["posterior", "predictive"])
def test_efficacy_and_futility_looks_against_enumeration_of_every_sequence(efficacy):
    looks, n_max, p0 = [4, 8], 12, 0.3
    c = d.bayes_boundary(UNIFORM, n_max, p0, 0.9)
    thetas = np.array([0.3, 0.5, 0.7])
    threshold = 0.95 if efficacy == "posterior" else 0.9
    des = d.sequential_design(UNIFORM, looks, n_max, c, thetas, futility_threshold=0.2, efficacy=efficacy,
                              efficacy_threshold=threshold, p0=p0)
    assert any(f >= 0 for f in des.futility) and any(e <= n for e, n in zip(des.efficacy, looks))
    success, stop_e, stop_f, exp_n = enumerate_sequences(looks, n_max, c, des.futility, des.efficacy, thetas)
    assert np.allclose(des.success, success, atol=1e-13)
    assert np.allclose(des.stop_efficacy_by_look, stop_e, atol=1e-13)
    assert np.allclose(des.stop_futility_by_look, stop_f, atol=1e-13)
    assert np.allclose(des.expected_n, exp_n, atol=1e-12)
    free, _, _, free_n = enumerate_sequences(looks, n_max, c, des.futility, des.efficacy, thetas, binding=False)
    assert np.allclose(des.success_nonbinding, free, atol=1e-13)
    assert np.allclose(des.expected_n_nonbinding, free_n, atol=1e-12)
    assert des.type1_binding == pytest.approx(success[0], abs=1e-13)
    assert des.type1_nonbinding == pytest.approx(free[0], abs=1e-13)
    assert des.type1_nonbinding >= des.type1_binding  # ignoring futility stops can only add successes
    # the boundaries are those of the stated rules
    for look, e, pp in zip(looks, des.efficacy, des.pp):
        values = posterior_prob_by_quadrature_all(UNIFORM, look, p0) if efficacy == "posterior" else pp
        wins = np.flatnonzero(values >= threshold)
        assert e == (wins.min() if wins.size else look + 1)
    frame = des.to_frame()
    assert list(frame.index) == thetas.tolist() and "stop_efficacy_at_4" in frame.columns


def posterior_prob_by_quadrature_all(prior, n, p0):
    return np.array([posterior_prob_by_quadrature(prior, r, n, p0) for r in range(n + 1)])


def test_sequential_design_reduces_to_futility_only_interim_design():
    c = d.bayes_boundary(UNIFORM, 40, 0.44, 0.95)
    old = d.interim_design(UNIFORM, [15, 25], 40, c, 0.1, [0.44, 0.6, 0.7])
    new = d.sequential_design(UNIFORM, [15, 25], 40, c, [0.44, 0.6, 0.7], futility_threshold=0.1)
    assert new.futility == old.futility and new.efficacy == [16, 26]
    assert np.allclose(new.success, old.success, atol=1e-15)
    assert np.allclose(new.early_stop_futility, old.early_stop, atol=1e-15)
    assert np.allclose(new.expected_n, old.expected_n, atol=1e-12)
    assert np.allclose(old.to_frame()["success"], old.success)
    with pytest.raises(ModelInputError):
        d.sequential_design(UNIFORM, [15], 40, c, [0.5], efficacy="posterior", efficacy_threshold=0.99)
    with pytest.raises(ModelInputError):
        d.sequential_oc([15], 40, c, [9], [9], [0.5])  # futility and efficacy regions overlap


# ----------------------------------------------------------------------------------------------------------------
# two-sample grid with a MAP control prior (RBesT's oc2S)
# ----------------------------------------------------------------------------------------------------------------
# RBesT's introduction vignette (ankylosing spondylitis, Baeten et al. 2013): the MAP prior as printed there
AS_MAP = mix([0.4612914, 0.1917812, 0.1893896, 0.1575378], [33.9513487, 19.4400089, 12.2692310, 2.2521243],
             [103.0146367, 41.5205219, 55.9202833, 5.4812202])


def test_rbest_introduction_oc2S_binary_example():
    """The delta at which each design reaches 80% power (vignette table, 3 decimals), decisions and the analysis."""
    from scipy import optimize

    robust = AS_MAP.robustify(0.2, 0.5)
    treat = mix([1.0], [0.5], [1.0])
    mean_control = 0.25545885
    assert AS_MAP.mean() == pytest.approx(mean_control, abs=1e-8)
    published = {"non-robust": (treat, AS_MAP, 24, 6, 0.302), "uniform 24:24": (UNIFORM, UNIFORM, 24, 24, 0.341),
                 "robust": (treat, robust, 24, 6, 0.368), "uniform": (UNIFORM, UNIFORM, 24, 6, 0.529)}
    for prior_t, prior_c, n_t, n_c, delta in published.values():
        region = d.two_sample_decision(prior_t, prior_c, n_t, n_c, 0.0, 0.95)
        root = optimize.brentq(lambda x: d.two_sample_success_probability(region, [mean_control + x],
                                                                           [mean_control])[0] - 0.8,
                               0.0, 1 - mean_control, xtol=1e-10)
        assert abs(root - delta) <= 0.0005
    region = d.two_sample_decision(treat, AS_MAP, 24, 6, 0.0, 0.95)
    assert region[15, 3] and not region[14, 4]
    assert d.two_sample_posterior_prob(treat, robust, 24, 6)[14, 1] == pytest.approx(0.9917197, abs=1e-7)


def test_two_sample_oc_grid_against_per_n_decisions():
    map_prior = mix([0.8, 0.2], [4.0, 1.0], [12.0, 1.0])
    n_t = np.array([12, 20, 30])
    grid = np.array([0.1, 0.25, 0.5])
    design_t, design_c = mix([1.0], [11.0], [3.0]), mix([1.0], [4.0], [12.0])
    for kwargs, n_c in [({"n_c": 8}, [8, 8, 8]), ({"ratio": 0.5}, [6, 10, 15])]:
        res = d.two_sample_oc_grid(UNIFORM, map_prior, n_t, gamma=0.95, theta_c=grid, power_at=[(0.6, 0.25)],
                                   design_t=design_t, design_c=design_c, **kwargs)
        assert res.n_c.tolist() == n_c
        for i, (nt, nc) in enumerate(zip(n_t, n_c)):
            region = d.two_sample_decision(UNIFORM, map_prior, int(nt), nc, 0.0, 0.95)
            assert np.allclose(res.type1[i], d.two_sample_success_probability(region, grid, grid), atol=1e-15)
            assert res.power[i, 0] == pytest.approx(d.two_sample_success_probability(region, [0.6], [0.25])[0],
                                                    abs=1e-15)
            assert res.assurance[i] == pytest.approx(d.two_sample_assurance(region, design_t, design_c), abs=1e-15)
        frame = res.to_frame()
        assert frame.index.tolist() == n_t.tolist() and np.allclose(frame["type1_max"], res.type1.max(axis=1))
        assert res.type1_frame().shape == (3, 3)
    with pytest.raises(ModelInputError):
        d.two_sample_oc_grid(UNIFORM, map_prior, n_t, n_c=8, ratio=0.5)


def test_single_arm_frame_and_input_errors():
    oc = d.single_arm_oc([20, 30], rule="binomial", p0=0.44, alpha=0.025, design_prior=ROBUST)
    frame = oc.to_frame(p1=[0.65])
    assert frame.index.name == "n" and frame.loc[30, "boundary"] == oc.boundary[1]
    assert frame.loc[20, "power_0.65"] == pytest.approx(oc.power_at(0.65)[0])
    with pytest.raises(ModelInputError) as err:
        d.bayes_boundaries(UNIFORM, [0, 10], 0.44, 0.9)
    assert err.value.parameter == "n_values"
    with pytest.raises(ModelInputError):
        d.single_arm_oc([20], rule="bayes", p0=1.2, analysis_prior=UNIFORM)
    with pytest.raises(ModelInputError):
        d.single_arm_oc([20], rule="frequentist", p0=0.4)
