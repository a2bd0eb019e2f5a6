"""Exact mixture layer: closed forms, independent numerics, and RBesT's published numbers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, special, stats

from isletbayes.models.mixtures import (
    DEFAULT_ESS_METHOD,
    ESS_METHODS,
    BetaMixture,
    NormalMixture,
    ess_all,
    ess_table,
    fit_beta_mixture,
    fit_normal_mixture,
    posterior_prob_above,
    posterior_prob_below,
    prior_data_conflict,
    prob_above_with_borrowing,
    prob_difference_greater,
    reference_prior_name,
    tipping_point,
)
from isletbayes.models.validation import ModelInputError

# RBesT's MAP prior for the ankylosing-spondylitis placebo data (introduction vignette, automixfit output)
AS_MAP = BetaMixture([0.6167463, 0.3832537], [19.1916387, 3.5278745], [57.7779318, 9.3735980])
BIMODAL = BetaMixture([0.3, 0.7], [4.0, 30.0], [20.0, 8.0])


# --- construction ------------------------------------------------------------------------------------------
def test_validation_rejects_bad_parameters():
    with pytest.raises(ValueError, match="sum to 1"):
        BetaMixture([0.5, 0.4], [1, 2], [1, 2])
    with pytest.raises(ValueError, match="> 0"):
        BetaMixture([1.0], [0.0], [1.0])
    with pytest.raises(ValueError, match="same non-zero length"):
        BetaMixture([0.5, 0.5], [1, 2], [1])
    with pytest.raises(ValueError, match=">= 0"):
        BetaMixture([1.2, -0.2], [1, 2], [1, 2])
    with pytest.raises(ValueError, match="sd must be > 0"):
        NormalMixture([1.0], [0.0], [0.0])
    m = BetaMixture.single(2, 3)
    with pytest.raises(ValueError):
        m.a[0] = 5.0  # read-only arrays: a frozen mixture stays frozen


def test_dict_round_trip():
    assert BetaMixture.from_dict(AS_MAP.to_dict()).allclose(AS_MAP)
    nm = NormalMixture([0.4, 0.6], [0.0, 1.0], [1.0, 2.0], sigma=3.0)
    back = NormalMixture.from_dict(nm.to_dict())
    assert np.allclose(back.means, nm.means) and np.allclose(back.sds, nm.sds) and back.sigma == 3.0


# --- densities, quantiles, moments -------------------------------------------------------------------------
def test_single_beta_matches_scipy():
    m = BetaMixture.single(2.5, 7.0)
    x = np.linspace(0.01, 0.99, 25)
    assert np.allclose(m.pdf(x), stats.beta.pdf(x, 2.5, 7.0), rtol=1e-12)
    assert np.allclose(m.cdf(x), stats.beta.cdf(x, 2.5, 7.0), rtol=1e-12)
    assert np.allclose(m.sf(x), stats.beta.sf(x, 2.5, 7.0), rtol=1e-12)
    assert m.mean() == pytest.approx(2.5 / 9.5, rel=1e-14)
    assert m.var() == pytest.approx(stats.beta.var(2.5, 7.0), rel=1e-12)


def test_mixture_pdf_integrates_to_one_and_cdf_is_its_integral():
    total, _ = integrate.quad(lambda t: float(BIMODAL.pdf(t)), 0, 1, epsabs=1e-12, limit=200)
    assert total == pytest.approx(1.0, abs=1e-10)
    part, _ = integrate.quad(lambda t: float(BIMODAL.pdf(t)), 0, 0.4, epsabs=1e-12, limit=200)
    assert float(BIMODAL.cdf(0.4)) == pytest.approx(part, abs=1e-10)


@pytest.mark.parametrize("mix", [AS_MAP, BIMODAL, AS_MAP.robustify(0.2, 0.5)])
def test_quantiles_invert_the_cdf(mix):
    q = np.array([1e-6, 0.001, 0.025, 0.1, 0.5, 0.9, 0.975, 0.999, 1 - 1e-6])
    x = mix.ppf(q)
    assert np.all(np.diff(x) > 0)
    assert np.max(np.abs(mix.cdf(x) - q)) < 1e-10
    assert mix.ppf(0.0) == 0.0 and mix.ppf(1.0) == 1.0
    grid = mix.ppf(np.array([[0.1, 0.2], [0.3, 0.4]]))  # any shape
    assert grid.shape == (2, 2) and float(mix.ppf(0.3)) == pytest.approx(grid[1, 0], abs=1e-14)


def test_normal_mixture_quantiles_invert_the_cdf():
    nm = NormalMixture([0.3, 0.7], [-2.0, 1.0], [0.5, 1.5])
    q = np.linspace(0.001, 0.999, 41)
    assert np.max(np.abs(nm.cdf(nm.ppf(q)) - q)) < 1e-10


def test_moments_against_monte_carlo(seed):
    draws = BIMODAL.rvs(200_000, rng=np.random.default_rng(seed(11)))
    se_mean = draws.std() / np.sqrt(draws.size)
    assert abs(draws.mean() - BIMODAL.mean()) < 5 * se_mean
    # sd of the sample variance ~ sqrt((m4 - var^2) / N)
    m4 = np.mean((draws - draws.mean()) ** 4)
    se_var = np.sqrt((m4 - draws.var() ** 2) / draws.size)
    assert abs(draws.var() - BIMODAL.var()) < 5 * se_var
    nm = NormalMixture([0.3, 0.7], [-2.0, 1.0], [0.5, 1.5])
    nd = nm.rvs(200_000, rng=np.random.default_rng(seed(12)))
    assert abs(nd.mean() - nm.mean()) < 5 * nd.std() / np.sqrt(nd.size)
    # closed form of a normal mixture's variance
    assert nm.var() == pytest.approx(0.3 * (0.25 + 4) + 0.7 * (2.25 + 1) - nm.mean() ** 2, rel=1e-12)


# --- conjugate updates and predictive ----------------------------------------------------------------------
def test_conjugate_posterior_single_beta():
    post = BetaMixture.single(1, 1).posterior(10, 12)
    assert post.allclose(BetaMixture.single(11, 3))
    assert post.mean() == pytest.approx(11 / 14, rel=1e-14)


def test_mixture_posterior_matches_numerical_bayes():
    r, n = 7, 20
    post = BIMODAL.posterior(r, n)
    like = lambda t: stats.binom.pmf(r, n, t)  # noqa: E731
    evidence, _ = integrate.quad(lambda t: float(BIMODAL.pdf(t)) * like(t), 0, 1, epsabs=1e-14, limit=200)
    for t in (0.1, 0.25, 0.4, 0.6):
        assert float(post.pdf(t)) == pytest.approx(float(BIMODAL.pdf(t)) * like(t) / evidence, rel=1e-8)
    # weights by marginal likelihood, in closed form
    a, b = BIMODAL.a, BIMODAL.b
    lw = np.log(BIMODAL.weights) + special.betaln(a + r, b + n - r) - special.betaln(a, b)
    assert np.allclose(post.weights, np.exp(lw) / np.exp(lw).sum(), rtol=1e-12)
    assert np.allclose(post.a, BIMODAL.a + r) and np.allclose(post.b, BIMODAL.b + n - r)
    assert BIMODAL.log_marginal_likelihood(r, n) == pytest.approx(np.log(evidence), rel=1e-9)


def test_beta_binomial_predictive_matches_scipy():
    pred = BetaMixture.single(2.0, 5.0).predictive(15)
    k = np.arange(16)
    assert np.allclose(pred.pmf(k), stats.betabinom.pmf(k, 15, 2.0, 5.0), rtol=1e-12)
    assert np.allclose(pred.cdf(k), stats.betabinom.cdf(k, 15, 2.0, 5.0), rtol=1e-12)
    assert pred.mean() == pytest.approx(15 * 2 / 7, rel=1e-14)
    assert pred.var() == pytest.approx(stats.betabinom.var(15, 2.0, 5.0), rel=1e-10)
    mix_pred = BIMODAL.predictive(12)
    pmf = mix_pred.pmf(np.arange(13))
    assert pmf.sum() == pytest.approx(1.0, abs=1e-12)
    expected = sum(w * stats.betabinom.pmf(np.arange(13), 12, a, b)
                   for w, a, b in zip(BIMODAL.weights, BIMODAL.a, BIMODAL.b))
    assert np.allclose(pmf, expected, rtol=1e-12)
    assert np.allclose(mix_pred.sf(np.arange(13)), 1 - np.cumsum(pmf), atol=1e-12)
    assert mix_pred.ppf(0.5) == int(np.searchsorted(np.cumsum(pmf), 0.5))


def test_normal_posterior_closed_form():
    sigma, n, ybar = 2.0, 8, 1.3
    prior = NormalMixture.single(0.0, 1.5, sigma=sigma)
    post = prior.posterior(ybar, n)
    prec = 1 / 1.5**2 + n / sigma**2
    assert post.means[0] == pytest.approx((ybar * n / sigma**2) / prec, rel=1e-12)
    assert post.sds[0] == pytest.approx(np.sqrt(1 / prec), rel=1e-12)
    mix = NormalMixture([0.5, 0.5], [-1.0, 2.0], [0.7, 1.0], sigma=sigma)
    mpost = mix.posterior(ybar, n)
    like = lambda m: stats.norm.pdf(ybar, m, sigma / np.sqrt(n))  # noqa: E731
    ev, _ = integrate.quad(lambda m: float(mix.pdf(m)) * like(m), -15, 15, epsabs=1e-14, limit=200)
    for m in (-1.0, 0.5, 1.5):
        assert float(mpost.pdf(m)) == pytest.approx(float(mix.pdf(m)) * like(m) / ev, rel=1e-8)
    pred = mix.predictive(n)
    assert np.allclose(pred.sds, np.sqrt(mix.sds**2 + sigma**2 / n))
    with pytest.raises(ValueError, match="sigma"):
        NormalMixture.single(0, 1).posterior(0.0, 3)


# --- robustify and ESS (RBesT) -----------------------------------------------------------------------------
def test_robustify_matches_rbest():
    rob = AS_MAP.robustify(0.2, mean=0.5)
    assert np.allclose(rob.weights, [0.493397, 0.306603, 0.2], atol=5e-7)  # RBesT prints 6 decimals
    assert rob.a[-1] == 1.0 and rob.b[-1] == 1.0  # Beta(mean (n+1), (1-mean)(n+1)), n = 1
    r2 = AS_MAP.robustify(0.1, mean=0.2, n=4)
    assert r2.a[-1] == pytest.approx(1.0) and r2.b[-1] == pytest.approx(4.0)
    nm = NormalMixture.single(1.0, 0.5, sigma=2.0).robustify(0.3, mean=0.0)
    assert np.allclose(nm.weights, [0.7, 0.3]) and nm.sds[-1] == 2.0 and nm.means[-1] == 0.0


def _elir_independent(mix: BetaMixture) -> float:
    """ELIR by a different route: analytic p, p', p'' of the mixture, plain quadrature on theta."""

    def dens_derivs(t):
        f = stats.beta.pdf(t, mix.a, mix.b)
        g = (mix.a - 1) / t - (mix.b - 1) / (1 - t)
        h = -(mix.a - 1) / t**2 - (mix.b - 1) / (1 - t) ** 2
        p = np.sum(mix.weights * f)
        dp = np.sum(mix.weights * f * g)
        d2p = np.sum(mix.weights * f * (h + g**2))
        return p, dp, d2p

    def integrand(t):
        p, dp, d2p = dens_derivs(t)
        info = (dp / p) ** 2 - d2p / p
        return p * info * t * (1 - t)

    val, err = integrate.quad(integrand, 0, 1, epsabs=1e-12, epsrel=1e-12, limit=1000, points=[0.1, 0.25, 0.5])
    assert err < 1e-8
    return val


def test_ess_of_rbest_map_prior():
    # RBesT prints round(ess(map)): 37 (elir), 26 (moment)
    elir, moment = AS_MAP.ess("elir"), AS_MAP.ess("moment")
    assert round(elir) == 37 and round(moment) == 26
    # unrounded: moment is a closed form of the mixture's moments; elir is checked by an independent quadrature
    m = np.sum(AS_MAP.weights * AS_MAP.a / (AS_MAP.a + AS_MAP.b))
    ab = AS_MAP.a + AS_MAP.b
    v = np.sum(AS_MAP.weights * AS_MAP.a * (AS_MAP.a + 1) / (ab * (ab + 1))) - m**2
    assert moment == pytest.approx(m * (1 - m) / v - 1, rel=1e-12)
    assert elir == pytest.approx(_elir_independent(AS_MAP), abs=1e-6)
    # RBesT's documented ordering: moment conservative, morita liberal
    assert moment < elir < AS_MAP.ess("morita")


@pytest.mark.parametrize("a,b", [(1.0, 1.0), (3.0, 9.0), (19.19, 57.78), (0.5, 0.5), (13.0, 1.0)])
def test_ess_of_single_beta_is_a_plus_b(a, b):
    m = BetaMixture.single(a, b)
    assert m.ess("elir") == pytest.approx(a + b, rel=1e-12)
    assert m.ess("moment") == pytest.approx(a + b, rel=1e-10)


def test_elir_integration_matches_a_plus_b_for_a_one_component_mixture_in_disguise():
    # the same Beta(4, 9) split into two identical components: the quadrature path must still give a + b
    m = BetaMixture([0.4, 0.6], [4.0, 4.0], [9.0, 9.0])
    assert m.ess("elir") == pytest.approx(13.0, rel=1e-8)


def test_morita_symmetric_beta_closed_form():
    # at the mode 1/2 RBesT's Morita ESS of Beta(a, a) is 2a - 1/s (flattened prior Beta(1/(2s), 1/(2s)))
    for a in (2.0, 10.0, 40.0):
        assert BetaMixture.single(a, a).ess("morita") == pytest.approx(2 * a - 1 / 100, rel=1e-10)


def test_elir_refuses_mixtures_with_parameters_below_one():
    with pytest.raises(ValueError, match="undefined"):
        BetaMixture([0.5, 0.5], [0.5, 3.0], [0.5, 3.0]).ess("elir")
    with pytest.raises(ValueError, match="unknown ESS"):
        AS_MAP.ess("foo")


def test_normal_ess_closed_forms():
    nm = NormalMixture.single(0.0, 0.5, sigma=2.0)
    assert nm.ess("elir") == pytest.approx(16.0, rel=1e-12)
    assert nm.ess("moment") == pytest.approx(16.0, rel=1e-12)
    assert nm.ess("morita") == pytest.approx(16.0 - 4.0 / (100 * 0.25), rel=1e-10)
    two = NormalMixture([0.5, 0.5], [0.0, 0.0], [0.5, 0.5], sigma=2.0)
    assert two.ess("elir") == pytest.approx(16.0, rel=1e-8)


# --- intervals -------------------------------------------------------------------------------------------
def test_hdi_unimodal_has_equal_density_ends():
    m = BetaMixture.single(11, 3)
    lo, hi = m.hdi(0.95)
    assert float(m.cdf(hi) - m.cdf(lo)) == pytest.approx(0.95, abs=1e-10)
    assert float(m.pdf(lo)) == pytest.approx(float(m.pdf(hi)), rel=1e-5)
    assert hi - lo < np.subtract(*m.eti(0.95)[::-1])
    (hdr,) = m.hdr(0.95)
    assert hdr == pytest.approx((lo, hi), abs=1e-6)


def test_hdi_monotone_density_touches_the_edge():
    lo, hi = BetaMixture.single(13, 1).hdi(0.95)  # density 13 t^12: HDI = [0.05^(1/13), 1]
    assert lo == pytest.approx(0.05 ** (1 / 13), abs=1e-9) and hi == 1.0


def test_hdr_of_a_bimodal_mixture_is_two_intervals():
    mix = BetaMixture([0.5, 0.5], [5.0, 40.0], [40.0, 5.0])
    region = mix.hdr(0.9)
    assert len(region) == 2
    mass = sum(float(mix.cdf(r) - mix.cdf(l)) for l, r in region)
    assert mass == pytest.approx(0.9, abs=1e-8)
    ends = [t for iv in region for t in iv]
    dens = mix.pdf(np.array(ends))
    assert np.allclose(dens, dens[0], rtol=1e-6)
    lo, hi = mix.hdi(0.9)  # the shortest single interval spans the valley
    assert lo < region[0][1] and hi > region[1][0]


# --- design helpers ------------------------------------------------------------------------------------------
def test_posterior_prob_above_is_vectorised_and_exact():
    n, p0 = 20, 0.3
    r = np.arange(n + 1)
    above = posterior_prob_above(AS_MAP, r, n, p0)
    loop = np.array([float(AS_MAP.posterior(int(k), n).sf(p0)) for k in r])
    assert np.allclose(above, loop, rtol=1e-12, atol=1e-15)
    assert np.all(np.diff(above) > 0)
    assert np.allclose(above + posterior_prob_below(AS_MAP, r, n, p0), 1.0, atol=1e-12)
    uni = posterior_prob_above(BetaMixture.single(1, 1), r, n, p0)
    assert np.allclose(uni, stats.beta.sf(p0, 1 + r, 1 + n - r), rtol=1e-12)


def test_prob_difference_closed_form_and_monte_carlo(seed):
    u = BetaMixture.single(1, 1)
    for delta in (0.0, 0.2, -0.3):
        exact = (1 - delta) ** 2 / 2 if delta >= 0 else 1 - (1 + delta) ** 2 / 2
        assert prob_difference_greater(u, u, delta) == pytest.approx(exact, abs=1e-9)
    t = BetaMixture.single(15.5, 10)
    c = AS_MAP.robustify(0.2, 0.5).posterior(1, 6)
    p = prob_difference_greater(t, c, 0.1)
    rng = np.random.default_rng(seed(3))
    diff = t.rvs(400_000, rng) - c.rvs(400_000, rng)
    mc = np.mean(diff > 0.1)
    assert abs(p - mc) < 5 * np.sqrt(mc * (1 - mc) / diff.size)


def test_prior_data_conflict():
    prior = BetaMixture.single(2, 8)  # mean 0.2
    check = prior_data_conflict(prior, 10, 12)
    pmf = stats.betabinom.pmf(np.arange(13), 12, 2, 8)
    assert check.p_upper == pytest.approx(pmf[10:].sum(), rel=1e-10)
    assert check.p_lower == pytest.approx(pmf[:11].sum(), rel=1e-10)
    assert check.p_box == pytest.approx(pmf[pmf <= pmf[10]].sum(), rel=1e-10)
    assert check.p_box < 0.01 and check.p_two_sided == pytest.approx(2 * check.p_upper)
    assert check.p_lower + check.p_upper - pmf[10] == pytest.approx(1.0, abs=1e-12)
    assert prior_data_conflict(prior, 2, 12).p_box > 0.5  # data at the prior's centre: no conflict
    # the headline p-value is one-sided in the direction of the data: 10/12 against a prior centred at 0.2
    assert check.applicable and check.direction == "upper" and check.p_value == check.p_upper
    low = prior_data_conflict(BetaMixture.single(8, 2), 3, 12)
    assert low.direction == "lower" and low.p_value == pytest.approx(
        stats.betabinom.cdf(3, 12, 8, 2), rel=1e-10)
    assert check.r == 10 and check.as_dict()["observed"] == 10


@pytest.mark.parametrize("prior", [BetaMixture.single(1, 1), BetaMixture.single(0.5, 0.5)])
def test_conflict_is_not_applicable_under_a_reference_prior(prior):
    check = prior_data_conflict(prior, 10, 12)
    assert not check.applicable and reference_prior_name(prior) is not None
    assert check.p_value is None and check.p_box is None and check.direction is None
    assert "not applicable" in check.note
    # explicitly declared: any prior can be marked as a reference prior, and a reference prior can be tested
    assert prior_data_conflict(BetaMixture.single(2, 8), 10, 12, reference=True).p_value is None
    assert prior_data_conflict(prior, 10, 12, reference=False).p_value is not None
    assert reference_prior_name(BetaMixture.single(2, 8)) is None


def test_conflict_for_a_normal_prior_is_the_predictive_tail():
    prior = NormalMixture([0.7, 0.3], [-50.0, -40.0], [10.0, 30.0], sigma=88.0)
    check = prior_data_conflict(prior, -10.0, 40)
    pred_sds = np.sqrt(prior.sds**2 + 88.0**2 / 40)
    upper = float(np.sum(prior.weights * stats.norm.sf(-10.0, prior.means, pred_sds)))
    assert check.direction == "upper" and check.p_value == pytest.approx(upper, rel=1e-12)
    assert check.p_box is None and check.p_two_sided == pytest.approx(2 * upper)
    assert prior_data_conflict(prior, -80.0, 40).direction == "lower"
    with pytest.raises(ModelInputError):
        prior_data_conflict(prior, 0.0, 0)


# --- EM fit --------------------------------------------------------------------------------------------------
def test_fit_beta_mixture_recovers_a_known_mixture(seed):
    truth = BetaMixture([0.6, 0.4], [30.0, 3.0], [70.0, 9.0])
    draws = truth.rvs(4000, rng=np.random.default_rng(seed(5)))
    res = fit_beta_mixture(draws, max_components=3, criterion="bic", seed=seed(1))
    assert res.n_components == 2 and res.converged
    assert res.ks_distance < 0.02 and res.max_abs_quantile_error < 0.01
    assert np.allclose(res.mixture.weights, truth.weights, atol=0.06)
    # the fitted mixture's moments match the sample's within its Monte Carlo error
    assert abs(res.mixture.mean() - draws.mean()) < 3 * draws.std() / np.sqrt(draws.size)
    again = fit_beta_mixture(draws, max_components=3, criterion="bic", seed=seed(1))
    assert again.mixture.allclose(res.mixture, rtol=0)  # reproducible


def test_fit_beta_mixture_single_beta_sample(seed):
    draws = BetaMixture.single(12, 30).rvs(3000, rng=np.random.default_rng(seed(6)))
    res = fit_beta_mixture(draws, max_components=3, criterion="bic", seed=seed(2))
    assert res.n_components == 1
    a_hat, b_hat = res.mixture.a[0], res.mixture.b[0]
    # MLE recovers (12, 30) within a few standard errors (sd of the MLE of a, b here ~ 0.3 and 0.8)
    assert abs(a_hat - 12) < 1.5 and abs(b_hat - 30) < 4
    with pytest.raises(ValueError):
        fit_beta_mixture(np.array([0.5, 1.5] * 10))
    with pytest.raises(ValueError, match="criterion"):
        fit_beta_mixture(draws, criterion="dic")


def test_elir_at_parameter_one_follows_the_integral_for_mixtures():
    # the integrand's boundary term (a - 1)(1 - x)/x vanishes at a = 1: RBesT's integral gives 0 for a mixture of
    # uniforms, while a single Beta(1, 1) is reported as a + b = 2 (the limit a, b -> 1+); documented in the module
    assert BetaMixture([0.4, 0.6], [1.0, 1.0], [1.0, 1.0]).ess("elir") == pytest.approx(0.0, abs=1e-12)
    assert BetaMixture.single(1.0, 1.0).ess("elir") == 2.0
    # and the limit: a single beta just above 1 integrates to a + b
    near = BetaMixture([0.5, 0.5], [1.001, 1.001], [3.0, 3.0])
    assert near.ess("elir") == pytest.approx(4.001, rel=1e-6)


def test_weighted_beta_mle_stops_on_the_bound_at_the_constrained_optimum(seed):
    # Draws from Beta(0.5, 3): with a, b >= 1 the optimum has a on its bound and b interior (KKT conditions:
    # d/da <= 0 at a = 1, d/db = 0), reached in few Newton steps rather than by stalling on the projection.
    from scipy import special

    from isletbayes.models.mixtures import _beta_weighted_mle

    x = stats.beta(0.5, 3).rvs(20000, random_state=seed(3))
    x = np.clip(x, 1e-12, 1 - 1e-12)
    c1, c2 = np.array([np.log(x).mean()]), np.array([np.log1p(-x).mean()])
    a, b = _beta_weighted_mle(c1, c2, np.array([2.0]), np.array([2.0]), 1.0)
    ga = c1 - special.digamma(a) + special.digamma(a + b)
    gb = c2 - special.digamma(b) + special.digamma(a + b)
    assert a[0] == 1.0 and ga[0] <= 0
    assert abs(gb[0]) < 1e-8
    # the 1-d optimum in b with a fixed at 1 solves digamma(1 + b) - digamma(b) = -c2, i.e. 1/b = -c2
    assert b[0] == pytest.approx(-1 / c2[0], rel=1e-8)


# --- comparisons carrying the comparator's uncertainty -------------------------------------------------------
def test_prob_difference_is_vectorised_over_delta(seed):
    t = BetaMixture.single(11, 3)  # 10/12 under a uniform prior
    c = AS_MAP.robustify(0.2, 0.5)
    deltas = np.array([-0.3, -0.1, 0.0, 0.1, 0.25, 0.5])
    vec = prob_difference_greater(t, c, deltas)
    assert vec.shape == deltas.shape and np.all(np.diff(vec) < 0)
    assert np.allclose(vec, [prob_difference_greater(t, c, float(d)) for d in deltas], rtol=0, atol=1e-13)
    assert isinstance(prob_difference_greater(t, c, 0.1), float)
    grid = prob_difference_greater(t, c, deltas.reshape(2, 3))
    assert grid.shape == (2, 3) and np.allclose(grid.ravel(), vec, atol=1e-13)
    # against Monte Carlo: every delta within 4 binomial standard errors
    rng = np.random.default_rng(seed(41))
    diff = t.rvs(400_000, rng) - c.rvs(400_000, rng)
    mc = np.mean(diff[:, None] > deltas, axis=0)
    assert np.all(np.abs(vec - mc) < 4 * np.sqrt(mc * (1 - mc) / diff.size) + 1e-12)
    # a mixture with an integrable singularity at 0 (Beta(1/2, 1/2)) still integrates exactly: against the
    # independent route of adaptive quadrature on the control's density
    j = BetaMixture.single(0.5, 0.5)
    for d in (-0.2, 0.3):
        ref, _ = integrate.quad(lambda x: float(j.pdf(x)) * float(t.sf(min(max(x + d, 0.0), 1.0))), 0, 1,
                                epsabs=1e-13, limit=500, points=[max(-d, 0.0), min(1 - d, 1.0)])
        assert prob_difference_greater(t, j, d) == pytest.approx(ref, abs=1e-9)


def test_prob_difference_of_normals_is_closed_form(seed):
    a, b = NormalMixture.single(1.0, 0.5), NormalMixture.single(0.2, 1.2)
    deltas = np.array([-1.0, 0.0, 0.5, 2.0])
    exact = stats.norm.sf((deltas - 0.8) / np.sqrt(0.25 + 1.44))
    assert np.allclose(prob_difference_greater(a, b, deltas), exact, rtol=1e-13)
    mix_t = NormalMixture([0.3, 0.7], [0.0, 2.0], [1.0, 0.5])
    mix_c = NormalMixture([0.6, 0.4], [-1.0, 1.5], [0.8, 2.0])
    rng = np.random.default_rng(seed(43))
    diff = mix_t.rvs(400_000, rng) - mix_c.rvs(400_000, rng)
    mc = np.mean(diff[:, None] > deltas, axis=0)
    vec = prob_difference_greater(mix_t, mix_c, deltas)
    assert np.all(np.abs(vec - mc) < 4 * np.sqrt(mc * (1 - mc) / diff.size) + 1e-12)
    with pytest.raises(ModelInputError):
        prob_difference_greater(mix_t, AS_MAP, 0.0)
    with pytest.raises(ModelInputError):
        prob_difference_greater(AS_MAP, AS_MAP, 1.5)


# --- ESS by every method -------------------------------------------------------------------------------------
def test_ess_all_and_table_name_the_default():
    robust = AS_MAP.robustify(0.2, 0.5)
    values = ess_all(robust)
    assert list(values) == list(ESS_METHODS) and DEFAULT_ESS_METHOD == ESS_METHODS[0] == "elir"
    assert values["moment"] < values["elir"] < values["morita"]  # the order the docstring explains
    table = ess_table({"map": AS_MAP, "robust": robust, "below_one": BetaMixture([0.5, 0.5], [0.5, 3], [0.5, 3])})
    assert table.attrs["default_method"] == "elir" and list(table.columns) == list(ESS_METHODS)
    assert table.loc["robust", "elir"] == pytest.approx(robust.ess("elir"))
    assert np.isnan(table.loc["below_one", "elir"])  # undefined, reported as missing rather than raised


def test_normal_elir_against_independent_quadrature():
    nm = NormalMixture([0.65, 0.29, 0.06], [-47.4, -51.3, -68.8], [9.4, 30.5, 6.1], sigma=88.0)

    def integrand(x):
        f = stats.norm.pdf(x, nm.means, nm.sds)
        g = -(x - nm.means) / nm.sds**2
        p = np.sum(nm.weights * f)
        dp = np.sum(nm.weights * f * g)
        d2p = np.sum(nm.weights * f * (g**2 - 1 / nm.sds**2))
        return (dp / p) ** 2 - d2p / p if p > 0 else 0.0

    val = sum(integrate.quad(lambda x: float(nm.pdf(x)) * integrand(x), a, b, epsabs=1e-14, epsrel=1e-12,
                             limit=500)[0] for a, b in ((-400, -60), (-60, -40), (-40, 300)))
    assert nm.ess("elir") == pytest.approx(val * 88.0**2, rel=1e-8)


# --- tipping point -------------------------------------------------------------------------------------------
def test_tipping_point_is_the_exact_crossing():
    # 10/12, a comparator mean of 0.545 borrowed with growing weight, tested against p0 = 0.545 at 95%
    tp = tipping_point(10, 12, prior_mean=0.545, p0=0.545, gamma=0.95)
    assert tp.ess is not None and 0 < tp.ess < 1000
    assert float(prob_above_with_borrowing(10, 12, 0.545, 0.545, tp.ess)) == pytest.approx(0.95, abs=1e-10)
    a, b = 0.545 * tp.ess, 0.455 * tp.ess
    assert stats.beta.sf(0.545, a + 10, b + 2) == pytest.approx(0.95, abs=1e-10)  # independently
    table = tp.table
    assert table["ess"].iloc[0] == 0 and bool(table["success"].iloc[0])
    assert np.all(table.loc[table["ess"] < tp.ess, "success"]) and not np.any(table.loc[table["ess"] > tp.ess,
                                                                                      "success"])
    assert np.all(np.diff(table["prob_above_p0"]) < 0)  # more borrowing from a lower mean, less certainty
    assert np.allclose(table["prior_a"] + table["prior_b"], np.maximum(table["ess"], 1e-9))
    assert tp.as_dict()["ess"] == tp.ess


def test_tipping_point_edge_cases():
    # a comparator mean above p0 only adds certainty: the conclusion never tips
    assert tipping_point(10, 12, prior_mean=0.7, p0=0.5, gamma=0.9).ess is None
    # data alone fail: it has tipped without any borrowing
    assert tipping_point(4, 12, prior_mean=0.3, p0=0.5, gamma=0.9).ess == 0.0
    # 12 of 12 (b = 0 without borrowing) is handled as the limit of vanishing borrowing
    tp = tipping_point(12, 12, prior_mean=0.545, p0=0.545, gamma=0.975, ess_grid=[0, 5, 50])
    assert tp.ess is not None and list(tp.table["ess"]) == [0, 5, 50]
    with pytest.raises(ModelInputError) as err:
        tipping_point(10, 12, prior_mean=1.2, p0=0.5)
    assert err.value.parameter == "prior_mean"


# --- EM fit of normal mixtures ------------------------------------------------------------------------------
def test_fit_normal_mixture_recovers_a_known_mixture(seed):
    truth = NormalMixture([0.7, 0.3], [-50.0, -45.0], [10.0, 30.0], sigma=88.0)
    draws = truth.rvs(4000, rng=np.random.default_rng(seed(7)))
    res = fit_normal_mixture(draws, max_components=3, seed=seed(8), sigma=88.0)
    assert res.n_components == 2 and res.converged and res.mixture.sigma == 88.0
    # the fit is a maximum-likelihood estimate: its mean matches the draws' within their Monte Carlo error
    assert abs(res.mixture.mean() - draws.mean()) < 4 * draws.std() / np.sqrt(draws.size)
    assert res.ks_distance < 1.95 / np.sqrt(draws.size)
    again = fit_normal_mixture(draws, max_components=3, seed=seed(8), sigma=88.0)
    assert np.array_equal(again.mixture.means, res.mixture.means)
    single = fit_normal_mixture(np.random.default_rng(seed(9)).normal(3.0, 2.0, 3000), max_components=3)
    assert single.n_components == 1
    assert single.mixture.means[0] == pytest.approx(3.0, abs=4 * 2.0 / np.sqrt(3000))
    with pytest.raises(ValueError, match="criterion"):
        fit_normal_mixture(draws, criterion="dic")
    with pytest.raises(ValueError):
        fit_normal_mixture(np.ones(50))


def test_em_never_settles_on_a_spike_over_one_draw(seed):
    # the likelihood of a mixture is unbounded as a component collapses onto a single draw: with one outlying
    # draw among 500, such a spike must not be the fit that is kept
    rng = np.random.default_rng(seed(21))
    draws = np.append(rng.normal(0.0, 1.0, 500), 40.0)
    res = fit_normal_mixture(draws, max_components=3, seed=seed(22))
    assert np.all(res.mixture.weights * draws.size >= 5 - 1e-6)
    assert np.all(res.mixture.sds > 0.05)
    beta_draws = np.append(BetaMixture.single(20, 60).rvs(500, rng=rng), 0.97)
    beta_fit = fit_beta_mixture(beta_draws, max_components=3, seed=seed(23))
    assert np.all(beta_fit.mixture.weights * beta_draws.size >= 5 - 1e-6)
    assert beta_fit.as_dict()["excluded"] == {str(k): v for k, v in beta_fit.excluded.items()}


def test_rebuilding_a_mixture_from_its_weights_is_exact():
    # a posterior's weights come out of a normalisation; rebuilding the mixture from them (as a saved result is
    # loaded) must give the very same numbers
    post = AS_MAP.robustify(0.2, 0.5).posterior(10, 12)
    again = BetaMixture.from_dict(post.to_dict())
    assert np.array_equal(again.weights, post.weights)
    with pytest.raises(ValueError, match="sum to 1"):
        BetaMixture([0.5, 0.4], [1, 2], [1, 2])
    scaled = BetaMixture([0.5 + 1e-8, 0.5], [1, 2], [1, 2])  # close enough to 1: normalised
    assert scaled.weights.sum() == pytest.approx(1.0, abs=1e-15)


def test_beta_component_functions_are_scipy_stats_beta_bit_for_bit():
    """cdf, sf and ppf call the incomplete beta function and its inverse directly (so that the exact layer need
    not import scipy.stats): on one component they must be what scipy.stats.beta returns, bit for bit, including
    outside [0, 1], at the ends and for NaN."""
    rng = np.random.default_rng(2025)
    a, b = np.exp(rng.uniform(-2.5, 5.0, 300)), np.exp(rng.uniform(-2.5, 5.0, 300))
    x = np.concatenate([rng.uniform(0, 1, 40), [-0.5, 0.0, 1.0, 1.5, np.nan, -np.inf, np.inf, 1e-300, 1 - 1e-16]])
    q = np.concatenate([rng.uniform(0, 1, 40), [-0.1, 0.0, 0.025, 0.975, 1.0, 1.1, np.nan]])
    for ai, bi in zip(a, b):
        one = BetaMixture([1.0], [ai], [bi])
        np.testing.assert_array_equal(one.cdf(x), stats.beta.cdf(x, ai, bi))
        np.testing.assert_array_equal(one.sf(x), stats.beta.sf(x, ai, bi))
        np.testing.assert_array_equal(one.ppf(q), stats.beta.ppf(q, ai, bi))
