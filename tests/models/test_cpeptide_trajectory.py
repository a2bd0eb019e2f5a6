"""C-peptide trajectory and link models: exact pieces against closed forms, likelihoods against scipy, simulation
against its own distributional facts, input validation. No MCMC here (see test_cpeptide_fits.py)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import pytest
from scipy import integrate, stats
from scipy.special import roots_legendre

from isletbayes.data import PARTICIPANT_EXAMPLE, load_participant_data
from isletbayes.models.validation import ModelInputError
from isletbayes.models import cpeptide_trajectory as cpm
from isletbayes.models.graft_link import LinkPriors, link_logit, poisson_binomial_pmf

TRUTH = cpm.PopulationParameters(1200.0, 90.0, 0.35, 0.3, 0.2, alpha=1.5, beta=1.0)
DAYS = [90.0, 180.0, 270.0, 365.0]


# ---------------------------------------------------------------------------------- Poisson-binomial
def test_poisson_binomial_matches_enumeration():
    p = np.array([0.1, 0.5, 0.93, 0.7, 0.25, 0.6])
    brute = np.zeros(p.size + 1)
    for outcome in itertools.product((0, 1), repeat=p.size):
        o = np.array(outcome)
        brute[o.sum()] += np.prod(np.where(o == 1, p, 1 - p))
    np.testing.assert_allclose(poisson_binomial_pmf(p), brute, atol=1e-14)


def test_poisson_binomial_equal_p_is_binomial():
    np.testing.assert_allclose(poisson_binomial_pmf(np.full(12, 0.83)), stats.binom.pmf(np.arange(13), 12, 0.83),
                               atol=1e-13)


# ------------------------------------------------------------------------------------------------ curves
def test_half_plateau_at_t_half_for_any_shape():
    for h in (0.7, 1.0, 2.3):
        k = cpm.rate_from_t_half(90.0, h)
        assert math.exp(cpm.log_trajectory(math.log(1200.0), k, 90.0, rise_shape=h)) == pytest.approx(600.0)


def test_late_decline_starts_at_t0():
    k = cpm.rate_from_t_half(60.0)
    before = cpm.log_trajectory(0.0, k, 365.0, decline_rate_per_year=0.5)
    after = cpm.log_trajectory(0.0, k, 365.0 + 365.25, decline_rate_per_year=0.5)
    assert before == pytest.approx(np.log(-np.expm1(-k * 365.0)))
    assert after - np.log(-np.expm1(-k * 730.25)) == pytest.approx(-0.5)


# ------------------------------------------------------------------------------------------- simulation
def test_simulate_participants_long_format_and_reproducible(seed):
    df = cpm.simulate_participants(TRUTH, 7, [30, 90, 365], rng=np.random.default_rng(seed(5)))
    again = cpm.simulate_participants(TRUTH, 7, [30, 90, 365], rng=np.random.default_rng(seed(5)))
    pd.testing.assert_frame_equal(df, again)
    assert list(df.columns) == ["participant", "cohort", "dose", "day", "measure", "value", "unit", "below_lod", "lod"]
    cp = df[df["measure"] == "cpeptide"]
    ii = df[df["measure"] == "insulin_independent"]
    assert len(cp) == 21 and len(ii) == 7
    assert set(cp["unit"]) == {"pmol/L"} and set(ii["day"]) == {365.0} and set(ii["value"]) <= {0.0, 1.0}
    assert (cp.loc[cp["below_lod"], "value"] == 13.0).all() and (cp.loc[~cp["below_lod"], "value"] > 13.0).all()
    assert "insulin_independent" not in set(cpm.simulate_participants(TRUTH, 3, [90], link=False)["measure"])


def test_simulated_values_follow_the_model(seed):
    # Far beyond the rise C_i = A_i, so log y = log A + sd_A z_A + sigma eps: Normal(log A, sqrt(sd_A^2 + sigma^2)).
    df = cpm.simulate_participants(TRUTH, 20000, [1e5], rng=np.random.default_rng(seed(1)), link=False)
    logs = np.log(df["value"].to_numpy())
    se = math.hypot(0.35, 0.2) / math.sqrt(20000)
    assert abs(logs.mean() - math.log(1200.0)) < 4 * se
    assert logs.std() == pytest.approx(math.hypot(0.35, 0.2), rel=0.03)
    # At t_half with no spread in k, the median participant's value is A / 2.
    p = cpm.PopulationParameters(1200.0, 90.0, 0.0, 0.0, 0.2, alpha=1.5, beta=1.0)
    half = cpm.simulate_participants(p, 20000, [90.0], rng=np.random.default_rng(seed(2)), link=False)
    assert np.median(half["value"]) == pytest.approx(600.0, rel=0.01)


def test_simulated_insulin_independence_follows_the_link(seed):
    p = cpm.PopulationParameters(1000.0, 60.0, 0.0, 0.0, 0.1, alpha=0.8, beta=1.0)
    df = cpm.simulate_participants(p, 40000, [365.0], rng=np.random.default_rng(seed(3)))
    ii = df.loc[df["measure"] == "insulin_independent", "value"].to_numpy()
    c365 = 1000.0 * (1 - math.exp(-math.log(2) / 60.0 * 365.0))
    expected = 1 / (1 + math.exp(-link_logit(0.8, 1.0, math.log(c365))))
    assert abs(ii.mean() - expected) < 4 * math.sqrt(expected * (1 - expected) / ii.size)


def test_prior_draws_match_the_priors(seed):
    rng = np.random.default_rng(seed(4))
    draws = [cpm.draw_prior_parameters(cpm.TrajectoryPriors(), LinkPriors(), rng) for _ in range(4000)]
    log_plateau = np.log([d.plateau_pmol_l for d in draws])
    assert stats.kstest(log_plateau, stats.norm(math.log(1000), 1.0).cdf).pvalue > 1e-3
    assert stats.kstest([d.sd_log_rate for d in draws], stats.halfnorm(scale=0.5).cdf).pvalue > 1e-3
    assert stats.kstest([d.beta for d in draws], stats.norm(1.0, 1.0).cdf).pvalue > 1e-3
    # the measurement sd's informative prior (MMTT repeatability)
    assert stats.kstest([d.measurement_sd for d in draws],
                        cpm.TrajectoryPriors().measurement_sd_distribution().cdf).pvalue > 1e-3


# ----------------------------------------------------------------------------------------- likelihoods
def _point(model, params: cpm.PopulationParameters, z_a=None, z_k=None, alpha=None, beta=None, misfit=None):
    point = {"plateau_pmol_l_log__": math.log(params.plateau_pmol_l), "t_half_days_log__": math.log(params.t_half_days),
             "sd_log_plateau_log__": math.log(params.sd_log_plateau), "sd_log_rate_log__": math.log(params.sd_log_rate),
             "measurement_sd_log__": math.log(params.measurement_sd), "log_plateau_effect": z_a, "log_rate_effect": z_k,
             "rise_shape_log__": math.log(params.rise_shape),
             "curve_misfit_sd_log__": None if misfit is None else math.log(misfit)}
    if alpha is not None:
        point.update(alpha=alpha, beta=beta)
    return {k: v for k, v in point.items() if k in {v.name for v in model.value_vars}}


def test_the_log_trajectory_at_a_fixed_day_is_computed_in_double_precision():
    """The link's day 365 is a Python number: PyTensor made it a float32 constant and took its log in float32, 2e-7
    off, so the insulin-independence terms differed from their reference by 5e-8 (found at seed shift 20000)."""
    log_rate = np.log(np.array([1 / 400.0, 1 / 120.0, 1 / 30.0]))
    got = cpm._log_trajectory_tensor(math.log(1000.0), pt.as_tensor(log_rate), 365.0, None, 365.0, None).eval()
    np.testing.assert_allclose(got, cpm.log_trajectory(math.log(1000.0), np.exp(log_rate), 365.0), rtol=1e-14)


def test_participant_likelihood_matches_censored_lognormal_and_bernoulli(seed):
    df = cpm.simulate_participants(TRUTH, 5, [1.0, 90.0, 365.0], rng=np.random.default_rng(seed(6)))
    data = cpm.participant_data_from_long(df)
    assert data.obs_censored.any()  # day 1 is mostly below the LLOD: exercises the censored term
    model = cpm.build_participant_model(data, parametrisation="non_centred")  # its coordinates are the z's
    rng = np.random.default_rng(seed(7))
    z_a, z_k = rng.standard_normal(5), rng.standard_normal(5)
    point = _point(model, TRUTH, z_a, z_k, alpha=1.5, beta=1.0)
    logp = model.compile_logp(vars=[model["cpeptide"], model["insulin_independent"]], jacobian=False)(point)

    log_a = math.log(TRUTH.plateau_pmol_l) + TRUTH.sd_log_plateau * z_a
    k = cpm.rate_from_t_half(TRUTH.t_half_days) * np.exp(TRUTH.sd_log_rate * z_k)
    mu = cpm.log_trajectory(log_a[data.obs_participant], k[data.obs_participant], data.obs_day)
    dist = stats.lognorm(s=TRUTH.measurement_sd, scale=np.exp(mu))
    expected = np.where(data.obs_censored, dist.logcdf(data.obs_lod), dist.logpdf(data.obs_value)).sum()
    p = 1 / (1 + np.exp(-link_logit(1.5, 1.0, cpm.log_trajectory(log_a, k, 365.0))))
    expected += stats.bernoulli.logpmf(data.ii_value, p[data.ii_participant]).sum()
    assert logp == pytest.approx(expected, rel=1e-9)


def _effects_and_log_jacobian(model):
    """The centred model's coordinates (log A, log A_i, log k_i, log sd_A, log sd_k) as functions of the adaptive
    model's value variables, and log |det| of their Jacobian with respect to the adaptive model's own coordinates
    (the median level at the reference day, the effects and the spreads' normal scores; the other coordinates are
    shared), by automatic differentiation: an independent check of the hand-derived change of variables."""
    import pytensor
    from pytensor.gradient import jacobian

    outputs = [pt.log(model["plateau_pmol_l"]).reshape((1,)), pt.log(model["plateau_participant"]),
               -pt.log(model["t_half_participant"]),  # log k_i up to the constant log(ln 2) / h
               pt.log(model["sd_log_plateau"]).reshape((1,)), pt.log(model["sd_log_rate"]).reshape((1,))]
    outputs = model.replace_rvs_by_values(outputs)
    own = [model.rvs_to_values[model[name]] for name in ADAPTIVE_OWN_RVS]
    theta = pt.concatenate(outputs)
    jac = pt.concatenate([jacobian(theta, v).reshape((theta.shape[0], -1)) for v in own], axis=1)
    compiled = pytensor.function(list(model.value_vars), [*outputs, jac], on_unused_input="ignore")

    def transform(**point):
        log_plateau, log_a, log_k, log_sd_a, log_sd_k, jac = compiled(**point)
        return float(log_plateau[0]), log_a, log_k, float(log_sd_a[0]), float(log_sd_k[0]), np.linalg.slogdet(jac)[1]

    return transform


#: the random variables whose coordinates the adaptive model changes (the others it shares with the centred one)
ADAPTIVE_OWN_RVS = ("log_median_cpeptide_reference_day", "log_plateau_effect", "log_rate_effect", "sd_log_plateau",
                    "sd_log_rate")


@pytest.mark.parametrize("rise_shape", [False, True])
def test_adaptive_parametrisation_is_a_change_of_variables_of_the_same_model(seed, rise_shape):
    """The adaptive model's density at its coordinates u equals the centred model's density at
    (log A, log A_i, log k_i) = theta(u) times |det d theta / d u| (the likelihood and priors are the same), at
    random coordinates and population values, with censored values."""
    df = cpm.simulate_participants(TRUTH, 7, [1.0, 30.0, 90.0, 365.0], rng=np.random.default_rng(seed(60)))
    data = cpm.participant_data_from_long(df)
    assert data.obs_censored.any()
    adaptive = cpm.build_participant_model(data, parametrisation="adaptive", rise_shape=rise_shape)
    centred = cpm.build_participant_model(data, parametrisation="centred", rise_shape=rise_shape)
    transform = _effects_and_log_jacobian(adaptive)
    logp_adaptive, logp_centred = adaptive.compile_logp(), centred.compile_logp()
    rng = np.random.default_rng(seed(61))
    for _ in range(5):
        point = {name: np.asarray(value) + rng.normal(0.0, 0.5, np.shape(value))
                 for name, value in adaptive.initial_point().items()}
        log_plateau, log_a, log_k, log_sd_a, log_sd_k, log_det = transform(**point)
        h = math.exp(point["rise_shape_log__"]) if rise_shape else 1.0
        own = {adaptive.rvs_to_values[adaptive[name]].name for name in ADAPTIVE_OWN_RVS}
        shared = {k: v for k, v in point.items() if k not in own}
        theta_point = {**shared, "plateau_pmol_l_log__": log_plateau, "log_plateau_effect": log_a,
                       "log_rate_effect": log_k + math.log(math.log(2.0)) / h,
                       "sd_log_plateau_log__": log_sd_a, "sd_log_rate_log__": log_sd_k}
        assert logp_adaptive(point) == pytest.approx(logp_centred(theta_point) + log_det, rel=1e-10, abs=1e-8)


def test_adaptive_geometry_follows_the_information(seed):
    # a participant whose rise is complete by the first visit tells little about the rate (small information), a
    # slow riser a lot; the summaries sit near the true rates where the data inform them, and the population
    # reference day lies among the visits
    slow = cpm.PopulationParameters(1000.0, 150.0, 0.3, 0.05, 0.1)
    fast = cpm.PopulationParameters(1000.0, 5.0, 0.3, 0.05, 0.1)
    days = [90.0, 180.0, 270.0, 365.0]
    frames = [cpm.simulate_participants(p, 30, days, rng=np.random.default_rng(seed(62 + i)), link=False)
              .assign(participant=lambda d, i=i: f"{i}-" + d["participant"]) for i, p in enumerate((slow, fast))]
    data = cpm.participant_data_from_long(pd.concat(frames, ignore_index=True))
    g = cpm.participant_geometry(data)
    assert np.median(g.rate_information[:30]) > 2 * np.median(g.rate_information[30:])
    # 30 slow participants: the median of their rate summaries sits near the true log rate. The summary is the
    # normal approximation of each participant's skewed profile likelihood (participant_geometry), so it carries a
    # small bias: over 300 seeds the median's error had mean -0.09 and sd 0.084 (worst -0.36), and the earlier
    # bound of 0.2 failed at 34 of them. The bound is the bias plus five of its sds; the fast participants' true
    # log rate lies 3.4 away
    assert np.median(g.rate_estimate[:30]) == pytest.approx(math.log(cpm.rate_from_t_half(150.0)), abs=0.5)
    assert 90.0 <= g.reference_day <= 365.0
    arrays = cpm.participant_arrays(data)
    np.testing.assert_array_equal(arrays["rate_reference"], g.rate_reference)
    assert "rate_reference" not in cpm.participant_arrays(data, centring=False)


# The cohort-means likelihood against an independent computation: the exact moments of the mean of n participants
# by scipy's adaptive quadrature (not the model's grid), the multivariate lognormal of the module docstring, and
# Binomial(n, p_bar) with p_bar by scipy's two-dimensional quadrature.
def _normal_expectation(f):
    return integrate.quad(lambda z: f(z) * stats.norm.pdf(z), -12, 12, epsabs=0, epsrel=1e-11, limit=500)[0]


def _scipy_cohort_moments(p: cpm.PopulationParameters, days, n):
    k = cpm.rate_from_t_half(p.t_half_days, p.rise_shape)

    def g(z, t):
        return -math.expm1(-((k * math.exp(p.sd_log_rate * z) * t) ** p.rise_shape))

    g1 = np.array([_normal_expectation(lambda z: g(z, t)) for t in days])
    g2 = np.array([[_normal_expectation(lambda z: g(z, t) * g(z, u)) for u in days] for t in days])
    s2a, s2 = p.sd_log_plateau**2, p.measurement_sd**2
    m = p.plateau_pmol_l * math.exp(s2a / 2 + s2 / 2) * g1
    e_eps = np.where(np.eye(len(days)) == 1, math.exp(2 * s2), math.exp(s2))  # E[eps_t eps_t'] of lognormal errors
    second = p.plateau_pmol_l**2 * math.exp(2 * s2a) * g2 * e_eps
    return m, (second - np.outer(m, m)) / n


def _reference_p_bar(p: cpm.PopulationParameters):
    """p_bar by 600 x 600-point Gauss-Legendre on [-10, 10]^2 (a different rule from the model's grid)."""
    z, w = roots_legendre(600)
    z, w = 10 * z, 10 * w * stats.norm.pdf(10 * z)
    k = cpm.rate_from_t_half(p.t_half_days, p.rise_shape)
    log_c = (math.log(p.plateau_pmol_l) + p.sd_log_plateau * z[:, None]
             + np.log(-np.expm1(-((k * np.exp(p.sd_log_rate * z[None, :]) * 365.0) ** p.rise_shape))))
    return float(w @ (1 / (1 + np.exp(-link_logit(p.alpha, p.beta, log_c)))) @ w)


# (parameters, documented absolute accuracy of the model's p_bar grid there): the second case sits in a corner of
# the prior (h, sd_k and beta each about two prior sds out), where the rate axis of the grid is coarsest
MEANS_CASES = {
    "exponential": (TRUTH, 1e-8),
    "steep lagged rise, wide spreads": (cpm.PopulationParameters(800.0, 250.0, 0.9, 1.0, 0.1, alpha=-1.0, beta=2.5,
                                                                 rise_shape=2.5), 1e-4),
}


@pytest.mark.parametrize("case", MEANS_CASES)
def test_means_likelihood_is_the_moment_matched_lognormal_and_binomial(case):
    p, p_bar_accuracy = MEANS_CASES[case]
    means = cpm.CohortMeans(days=DAYS, means=[424.0, 1036.0, 1104.0, 1274.0], n_participants=12, ii_count=10)
    model = cpm.build_means_model(means, rise_shape=p.rise_shape != 1.0)
    misfit = 0.07
    point = {k: v for k, v in _point(model, p, alpha=p.alpha, beta=p.beta, misfit=misfit).items() if v is not None}
    logp_means = model.compile_logp(vars=[model["cohort_mean"]], jacobian=False)(point)
    logp_count = model.compile_logp(vars=[model["insulin_independent_count"]], jacobian=False)(point)

    m, cov = _scipy_cohort_moments(p, DAYS, 12)
    rel = cov / np.outer(m, m)
    log_var = np.log1p(np.diag(rel))
    log_cov = rel * np.sqrt(np.outer(log_var, log_var) / np.outer(np.diag(rel), np.diag(rel)))
    log_means = np.log(means.means)
    # the curve misfit delta_t ~ Normal(0, misfit) adds misfit^2 to each visit's log variance, not to its centre
    expected = (stats.multivariate_normal(np.log(m) - log_var / 2, log_cov + misfit**2 * np.eye(4)).logpdf(log_means)
                - log_means.sum())
    assert logp_means == pytest.approx(expected, rel=1e-7)
    p_bar = _reference_p_bar(p)
    # |d/dp log Binomial(10 | 12, p)| <= 12 / (p (1 - p)): the accuracy of p_bar bounds that of the log-likelihood
    tolerance = 12 * p_bar_accuracy / (p_bar * (1 - p_bar))
    assert logp_count == pytest.approx(stats.binom.logpmf(10, 12, p_bar), abs=tolerance)


def _moments(p: cpm.PopulationParameters, days, n):
    log_m, rel = cpm.cohort_mean_moments_tensor(math.log(p.plateau_pmol_l),
                                                math.log(cpm.rate_from_t_half(p.t_half_days, p.rise_shape)),
                                                p.sd_log_plateau, p.sd_log_rate, p.measurement_sd,
                                                pt.as_tensor(np.asarray(days, dtype=float)), n,
                                                shape=p.rise_shape)
    m = np.exp(log_m.eval())
    return m, rel.eval() * np.outer(m, m)


def _simulated_cohorts(p: cpm.PopulationParameters, n_cohorts, n, days, seed):
    _, measured, log_c365 = cpm._simulate_latent(p, n_cohorts * n, np.asarray(days, dtype=float),
                                                 np.random.default_rng(seed))
    return measured.reshape(n_cohorts, n, len(days)).mean(axis=1), log_c365.reshape(n_cohorts, n)


def test_cohort_mean_moments_match_simulated_cohorts(seed):
    # mean and covariance of the means of 12 simulated participants: the model's moments are exact
    p = cpm.PopulationParameters(1200.0, 90.0, 0.5, 0.4, 0.25, rise_shape=1.8)
    m, cov = _moments(p, DAYS, 12)
    sims, _ = _simulated_cohorts(p, 50000, 12, DAYS, seed=seed(9))
    se = np.sqrt(np.diag(cov) / sims.shape[0])
    assert np.all(np.abs(sims.mean(axis=0) - m) < 4 * se)
    np.testing.assert_allclose(np.cov(sims, rowvar=False), cov, rtol=0.05)
    assert np.corrcoef(sims, rowvar=False)[2, 3] > 0.5  # shared participants: the means are correlated


def test_insulin_independence_count_is_binomial_over_iid_participants(seed):
    # averaged over cohorts, the exact Poisson-binomial count of 12 participants is Binomial(12, p_bar)
    p = cpm.PopulationParameters(900.0, 80.0, 0.6, 0.5, 0.2, alpha=0.5, beta=1.5, rise_shape=1.5)
    _, log_c365 = _simulated_cohorts(p, 20000, 12, DAYS, seed=seed(10))
    prob = 1 / (1 + np.exp(-link_logit(p.alpha, p.beta, log_c365)))
    averaged = poisson_binomial_pmf(prob).mean(axis=0)
    logit_p_bar = cpm.population_share_insulin_independent_tensor(
        math.log(p.plateau_pmol_l), math.log(cpm.rate_from_t_half(p.t_half_days, p.rise_shape)), p.sd_log_plateau,
        p.sd_log_rate, p.alpha, p.beta, shape=p.rise_shape).eval()
    binomial = stats.binom.pmf(np.arange(13), 12, 1 / (1 + math.exp(-logit_p_bar)))
    np.testing.assert_allclose(averaged, binomial, atol=4 * math.sqrt(0.25 / 20000))


def test_published_spread_enters_the_likelihood():
    sd = np.array([np.nan, 500.0, np.nan, 600.0])
    with_sd = cpm.CohortMeans(days=DAYS, means=[424.0, 1036.0, 1104.0, 1274.0], n_participants=12, spread_sd=sd)
    model = cpm.build_means_model(with_sd, link_priors=None)
    assert "cohort_sd" in model.named_vars and model["cohort_sd_obs"].get_value().shape == (2,)
    assert cpm.spread_to_sd("se", 100.0, 12) == pytest.approx(100 * math.sqrt(12))
    assert cpm.spread_to_sd("ci95_halfwidth", 100.0, 12) == pytest.approx(100 * math.sqrt(12) / stats.t.ppf(0.975, 11))
    with pytest.raises(ModelInputError, match="spread kind"):
        cpm.spread_to_sd("iqr", 1.0, 12)


def test_set_data_swaps_the_observations_in_the_same_model(seed):
    d1 = cpm.participant_data_from_long(cpm.simulate_participants(TRUTH, 4, DAYS, rng=np.random.default_rng(seed(10))))
    d2 = cpm.participant_data_from_long(cpm.simulate_participants(TRUTH, 4, DAYS, rng=np.random.default_rng(seed(11))))
    model = cpm.build_participant_model(d1)
    fresh = cpm.build_participant_model(d2)
    point = model.initial_point()
    pm.set_data(cpm.participant_arrays(d2), model=model)
    assert model.compile_logp()(point) == pytest.approx(fresh.compile_logp()(point), rel=1e-12)


# ------------------------------------------------------------------------------------------------ input
def test_participant_data_from_the_example_file():
    frame = load_participant_data(PARTICIPANT_EXAMPLE)
    data = cpm.participant_data_from_long(frame)
    assert data.n_participants == 6 and data.n_baseline_excluded == 6
    assert data.obs_day.min() > 0 and data.ii_value.size == 6
    # SYN03 is given in nmol/L: the loader converts it and the model sees pmol/L.
    syn03 = data.participant_ids.index("SYN03")
    assert data.obs_value[data.obs_participant == syn03].min() > 500


def test_bad_participant_data_is_refused(seed):
    df = cpm.simulate_participants(TRUTH, 2, [90.0], rng=np.random.default_rng(seed(12)))
    with pytest.raises(ModelInputError, match="missing column"):
        cpm.participant_data_from_long(df.drop(columns="lod"))
    bad = df.copy()
    bad.loc[0, ["day", "below_lod", "value"]] = [0.0, False, 200.0]
    with pytest.raises(ModelInputError, match="day 0"):
        cpm.participant_data_from_long(bad)
    bad = df.copy()
    bad.loc[0, "unit"] = "ng/mL"
    with pytest.raises(ModelInputError, match="pmol/L"):
        cpm.participant_data_from_long(bad)


def test_bad_priors_and_schedules_are_refused():
    with pytest.raises(ModelInputError, match="spread_plateau_scale"):
        cpm.TrajectoryPriors(spread_plateau_scale=0.0)
    with pytest.raises(ModelInputError, match="beta_sd"):
        LinkPriors(beta_sd=-1.0)
    with pytest.raises(ModelInputError, match="days"):
        cpm.simulate_participants(TRUTH, 3, [0.0, 90.0])
    with pytest.raises(ModelInputError, match="outside"):
        cpm.CohortMeans(days=DAYS, means=[1.0] * 4, n_participants=12, ii_count=13)


@pytest.mark.parametrize("scale", [0.3, 0.5, 1.0])
def test_spreads_on_the_normal_scores_scale_keep_their_half_normal_prior(scale):
    """HalfNormalScoresTransform is a change of coordinates only: under the prior the sampled coordinate is exactly
    Normal(0, 1) (so the HalfNormal density is unchanged), forward and backward invert each other, and the density
    and its gradient stay finite far into both tails (no overflow in the branch not taken)."""
    import pytensor

    with pm.Model() as model:
        pm.HalfNormal("sd", sigma=scale, default_transform=cpm.HalfNormalScoresTransform())
    (value,) = model.value_vars
    assert value.name == "sd_halfnormalscores__"
    logp, dlogp = model.compile_logp(), model.compile_dlogp()
    z = np.array([-35.0, -8.0, -3.0, -0.7, 0.0, 0.4, 2.5, 8.0, 12.0])
    for zi in z:
        assert logp({value.name: zi}) == pytest.approx(stats.norm.logpdf(zi), rel=1e-12, abs=1e-12)
        assert dlogp({value.name: zi}) == pytest.approx(-zi, rel=1e-9, abs=1e-9)
    transform = cpm.HalfNormalScoresTransform()
    zv = pt.dvector("z")
    sd = transform.backward(zv, scale)
    back_and_forth = pytensor.function([zv], [sd, transform.forward(sd, scale)])
    inner = np.array([-6.0, -3.0, -0.7, 0.0, 0.4, 2.5, 6.0])
    sds, again = back_and_forth(inner)
    # sd is the prior's quantile at Phi(z): checked by the cdf in the lower tail and the survival function in the
    # upper one, where each is precise (halfnorm.ppf(norm.cdf(z)) itself loses 7 digits at |z| = 6)
    lower, prior = inner < 0, stats.halfnorm(scale=scale)
    np.testing.assert_allclose(prior.cdf(sds[lower]), stats.norm.cdf(inner[lower]), rtol=1e-12)
    np.testing.assert_allclose(prior.sf(sds[~lower]), stats.norm.sf(inner[~lower]), rtol=1e-12)
    np.testing.assert_allclose(again, inner, rtol=1e-9, atol=1e-9)
