"""C-peptide trajectory and link models: exact pieces against closed forms, likelihoods against scipy, simulation
against its own distributional facts, input validation. No MCMC here (see test_cpeptide_fits.py)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pymc as pm
import pytest
from scipy import stats

from isletbayes.data import PARTICIPANT_EXAMPLE, InputError, load_participant_data
from isletbayes.models import cpeptide as cpm
from isletbayes.models.graft_link import (
    LinkPriors,
    link_logit,
    poisson_binomial_pmf,
    poisson_binomial_pmf_tensor,
)

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


def test_poisson_binomial_tensor_matches_numpy():
    import pytensor.tensor as pt

    p = np.linspace(0.05, 0.95, 12)
    pv = pt.vector("p")
    np.testing.assert_allclose(poisson_binomial_pmf_tensor(pv, 12).eval({pv: p}), poisson_binomial_pmf(p),
                               atol=1e-12)


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
def test_simulate_participants_long_format_and_reproducible():
    df = cpm.simulate_participants(TRUTH, 7, [30, 90, 365], rng=np.random.default_rng(5))
    again = cpm.simulate_participants(TRUTH, 7, [30, 90, 365], rng=np.random.default_rng(5))
    pd.testing.assert_frame_equal(df, again)
    assert list(df.columns) == ["participant", "cohort", "dose", "day", "measure", "value", "unit", "below_lod", "lod"]
    cp = df[df["measure"] == "cpeptide"]
    ii = df[df["measure"] == "insulin_independent"]
    assert len(cp) == 21 and len(ii) == 7
    assert set(cp["unit"]) == {"pmol/L"} and set(ii["day"]) == {365.0} and set(ii["value"]) <= {0.0, 1.0}
    assert (cp.loc[cp["below_lod"], "value"] == 13.0).all() and (cp.loc[~cp["below_lod"], "value"] > 13.0).all()
    assert "insulin_independent" not in set(cpm.simulate_participants(TRUTH, 3, [90], link=False)["measure"])


def test_simulated_values_follow_the_model():
    # Far beyond the rise C_i = A_i, so log y = log A + sd_A z_A + sigma eps: Normal(log A, sqrt(sd_A^2 + sigma^2)).
    df = cpm.simulate_participants(TRUTH, 20000, [1e5], rng=np.random.default_rng(1), link=False)
    logs = np.log(df["value"].to_numpy())
    se = math.hypot(0.35, 0.2) / math.sqrt(20000)
    assert abs(logs.mean() - math.log(1200.0)) < 4 * se
    assert logs.std() == pytest.approx(math.hypot(0.35, 0.2), rel=0.03)
    # At t_half with no spread in k, the median participant's value is A / 2.
    p = cpm.PopulationParameters(1200.0, 90.0, 0.0, 0.0, 0.2, alpha=1.5, beta=1.0)
    half = cpm.simulate_participants(p, 20000, [90.0], rng=np.random.default_rng(2), link=False)
    assert np.median(half["value"]) == pytest.approx(600.0, rel=0.01)


def test_simulated_insulin_independence_follows_the_link():
    p = cpm.PopulationParameters(1000.0, 60.0, 0.0, 0.0, 0.1, alpha=0.8, beta=1.0)
    df = cpm.simulate_participants(p, 40000, [365.0], rng=np.random.default_rng(3))
    ii = df.loc[df["measure"] == "insulin_independent", "value"].to_numpy()
    c365 = 1000.0 * (1 - math.exp(-math.log(2) / 60.0 * 365.0))
    expected = 1 / (1 + math.exp(-link_logit(0.8, 1.0, math.log(c365))))
    assert abs(ii.mean() - expected) < 4 * math.sqrt(expected * (1 - expected) / ii.size)


def test_prior_draws_match_the_priors():
    rng = np.random.default_rng(4)
    draws = [cpm.draw_prior_parameters(cpm.TrajectoryPriors(), LinkPriors(), rng) for _ in range(4000)]
    log_plateau = np.log([d.plateau_pmol_l for d in draws])
    assert stats.kstest(log_plateau, stats.norm(math.log(1000), 1.0).cdf).pvalue > 1e-3
    assert stats.kstest([d.sd_log_rate for d in draws], stats.halfnorm(scale=0.5).cdf).pvalue > 1e-3
    assert stats.kstest([d.beta for d in draws], stats.norm(1.0, 1.0).cdf).pvalue > 1e-3


# ----------------------------------------------------------------------------------------- likelihoods
def _point(model, params: cpm.PopulationParameters, z_a, z_k, alpha=None, beta=None):
    point = {"plateau_pmol_l_log__": math.log(params.plateau_pmol_l), "t_half_days_log__": math.log(params.t_half_days),
             "sd_log_plateau_log__": math.log(params.sd_log_plateau), "sd_log_rate_log__": math.log(params.sd_log_rate),
             "measurement_sd_log__": math.log(params.measurement_sd), "z_log_plateau": z_a, "z_log_rate": z_k}
    if alpha is not None:
        point.update(alpha=alpha, beta=beta)
    return {k: v for k, v in point.items() if k in {v.name for v in model.value_vars}}


def test_participant_likelihood_matches_censored_lognormal_and_bernoulli():
    df = cpm.simulate_participants(TRUTH, 5, [1.0, 90.0, 365.0], rng=np.random.default_rng(6))
    data = cpm.participant_data_from_long(df)
    assert data.obs_censored.any()  # day 1 is mostly below the LLOD: exercises the censored term
    model = cpm.build_participant_model(data)
    rng = np.random.default_rng(7)
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


def test_means_likelihood_is_fenton_wilkinson_and_poisson_binomial():
    means = cpm.CohortMeans(days=DAYS, means=[424.0, 1036.0, 1104.0, 1274.0], n_participants=12, ii_count=10)
    model = cpm.build_means_model(means)
    rng = np.random.default_rng(8)
    z_a, z_k = rng.standard_normal(12), rng.standard_normal(12)
    point = _point(model, TRUTH, z_a, z_k, alpha=1.5, beta=1.0)
    logp = model.compile_logp(vars=[model["cohort_mean"], model["insulin_independent_count"]], jacobian=False)(point)

    log_a = math.log(TRUTH.plateau_pmol_l) + TRUTH.sd_log_plateau * z_a
    k = cpm.rate_from_t_half(TRUTH.t_half_days) * np.exp(TRUTH.sd_log_rate * z_k)
    c = np.exp(cpm.log_trajectory(log_a[:, None], k[:, None], np.array(DAYS)[None, :]))
    s2 = TRUTH.measurement_sd**2
    m = math.exp(s2 / 2) * c.mean(axis=0)
    v = math.exp(s2) * math.expm1(s2) * (c**2).sum(axis=0) / 144
    s = np.sqrt(np.log1p(v / m**2))
    expected = stats.lognorm(s=s, scale=m * np.exp(-s**2 / 2)).logpdf(means.means).sum()
    p = 1 / (1 + np.exp(-link_logit(1.5, 1.0, cpm.log_trajectory(log_a, k, 365.0))))
    expected += math.log(poisson_binomial_pmf(p)[10])
    assert logp == pytest.approx(expected, rel=1e-9)


def test_fenton_wilkinson_moments_match_simulated_means():
    # The lognormal approximation has the exact mean and variance of a mean of n lognormal measurements.
    c = np.array([300.0, 800.0, 1500.0] * 4)
    sigma = 0.4
    rng = np.random.default_rng(9)
    sims = (c * np.exp(sigma * rng.standard_normal((200000, 12)))).mean(axis=1)
    assert sims.mean() == pytest.approx(math.exp(sigma**2 / 2) * c.mean(), rel=0.002)
    assert sims.var() == pytest.approx(math.exp(sigma**2) * math.expm1(sigma**2) * (c**2).sum() / 144, rel=0.02)


def test_published_spread_enters_the_likelihood():
    sd = np.array([np.nan, 500.0, np.nan, 600.0])
    with_sd = cpm.CohortMeans(days=DAYS, means=[424.0, 1036.0, 1104.0, 1274.0], n_participants=12, spread_sd=sd)
    model = cpm.build_means_model(with_sd, link_priors=None)
    assert "cohort_sd" in model.named_vars and model["cohort_sd"].eval().shape == (2,)
    assert cpm.spread_to_sd("se", 100.0, 12) == pytest.approx(100 * math.sqrt(12))
    assert cpm.spread_to_sd("ci95_halfwidth", 100.0, 12) == pytest.approx(100 * math.sqrt(12) / stats.t.ppf(0.975, 11))
    with pytest.raises(InputError, match="spread kind"):
        cpm.spread_to_sd("iqr", 1.0, 12)


def test_set_data_swaps_the_observations_in_the_same_model():
    d1 = cpm.participant_data_from_long(cpm.simulate_participants(TRUTH, 4, DAYS, rng=np.random.default_rng(10)))
    d2 = cpm.participant_data_from_long(cpm.simulate_participants(TRUTH, 4, DAYS, rng=np.random.default_rng(11)))
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


def test_bad_participant_data_is_refused():
    df = cpm.simulate_participants(TRUTH, 2, [90.0], rng=np.random.default_rng(12))
    with pytest.raises(InputError, match="missing column"):
        cpm.participant_data_from_long(df.drop(columns="lod"))
    bad = df.copy()
    bad.loc[0, ["day", "below_lod", "value"]] = [0.0, False, 200.0]
    with pytest.raises(InputError, match="day 0"):
        cpm.participant_data_from_long(bad)
    bad = df.copy()
    bad.loc[0, "unit"] = "ng/mL"
    with pytest.raises(InputError, match="pmol/L"):
        cpm.participant_data_from_long(bad)


def test_bad_priors_and_schedules_are_refused():
    with pytest.raises(InputError, match="spread_plateau_scale"):
        cpm.TrajectoryPriors(spread_plateau_scale=0.0)
    with pytest.raises(InputError, match="beta_sd"):
        LinkPriors(beta_sd=-1.0)
    with pytest.raises(InputError, match="days"):
        cpm.simulate_participants(TRUTH, 3, [0.0, 90.0])
    with pytest.raises(InputError, match="outside"):
        cpm.CohortMeans(days=DAYS, means=[1.0] * 4, n_participants=12, ii_count=13)
