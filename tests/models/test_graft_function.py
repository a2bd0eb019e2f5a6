"""The joint graft-function model of every published aggregate: each likelihood term against an independent
scipy computation, the strategies for glucocorticoid exposure, the published data, the priors of the simulator
against the model's, and the simulator against the model's laws. No MCMC here (the SBC and the seed-robustness
runs are in analyses/results/; test_cpeptide_fits.py checks them)."""

from __future__ import annotations

import math

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest
import xarray as xr
from scipy import integrate, special, stats

from isletbayes.data import load_continuous, load_counts, load_cpeptide_means
from isletbayes.models import cpeptide_trajectory as cpm
from isletbayes.models import graft_function as gfm
from isletbayes.models.graft_link import IntercurrentStrategy, insulin_outcome_loglik
from isletbayes.models.validation import ModelInputError


#: PyMC's normal log-cdf (an erfc-based approximation with an asymptotic tail) agrees with scipy's to about 1e-8
#: relative; the terms built on it are compared at this tolerance
PYMC_LOGCDF_RTOL = 1e-6
#: one evaluation per compiled function here: the Python linker spares the C compilation
FAST = {"mode": "FAST_COMPILE"}


@pytest.fixture(scope="module")
def published():
    return gfm.graft_function_data_from_tables(load_cpeptide_means(), load_continuous(), load_counts())


def test_published_aggregates_are_read_from_the_bundled_tables(published):
    d = published
    assert d.n_participants == 12 and d.detectable == 12
    np.testing.assert_allclose(d.means.means, [424.0, 1036.0, 1104.0, 1274.0])
    assert (d.tir_day365.minimum, d.tir_day365.maximum, d.tir_day365.mean) == (79.5, 96.9, 93.3)
    assert (d.hba1c_baseline.minimum, d.hba1c_baseline.maximum, d.hba1c_baseline.mean) == (7.1, 9.9, 7.8)
    assert (d.hba1c_day120.minimum, d.hba1c_day120.maximum, d.hba1c_day120.mean) == (5.7, 6.7, None)
    assert (d.insulin_dose_baseline.minimum, d.insulin_dose_baseline.maximum) == (19.8, 52.0)
    assert d.insulin.independent.sum() == 10
    np.testing.assert_allclose(np.sort(d.insulin.dose_cut[d.insulin.independent == 0]), [0.36, 0.70])
    # the two not insulin independent are the two with prohibited glucocorticoid exposure
    assert np.array_equal(d.insulin.exposed, d.insulin.independent == 0)


def test_bad_summaries_are_refused():
    with pytest.raises(ModelInputError, match="outside the range"):
        gfm.RangeSummary(12, 7.1, 9.9, 10.5)
    with pytest.raises(ModelInputError, match="minimum < maximum"):
        gfm.RangeSummary(12, 9.9, 7.1)
    with pytest.raises(ModelInputError, match="dose cut"):
        gfm.InsulinOutcomes(independent=[1, 0], dose_cut=[1.0, 1.2], exposed=[False, False])


# ------------------------------------------------------------------------------------------ range likelihood
def _scipy_range_logp(lo, hi, mean, n, mu, sd, transform):
    """Order-statistic density of (min, max) on the model scale x, and the inner mean's normal law, by scipy."""
    f = stats.norm(mu, sd)
    to_x = np.log if transform == "log" else (lambda v: np.log(v / 100) - np.log1p(-v / 100))
    to_v = np.exp if transform == "log" else (lambda x: 100 / (1 + np.exp(-x)))
    a, b = to_x(lo), to_x(hi)
    mass = f.cdf(b) - f.cdf(a)
    logp = math.log(n * (n - 1)) + f.logpdf(a) + f.logpdf(b) + (n - 2) * math.log(mass)
    if mean is None:
        return logp
    m1 = integrate.quad(lambda x: to_v(x) * f.pdf(x), a, b, epsabs=0, epsrel=1e-12)[0] / mass
    m2 = integrate.quad(lambda x: to_v(x) ** 2 * f.pdf(x), a, b, epsabs=0, epsrel=1e-12)[0] / mass
    inner = (n * mean - lo - hi) / (n - 2)
    return logp + stats.norm.logpdf(inner, m1, math.sqrt((m2 - m1**2) / (n - 2)))


@pytest.mark.parametrize("transform, lo, hi, mean, mu, sd", [
    ("logit100", 79.5, 96.9, 93.3, 2.6, 0.6),
    ("log", 7.1, 9.9, 7.8, math.log(7.9), 0.1),
    ("log", 5.7, 6.7, None, math.log(6.1), 0.05),
])
def test_range_likelihood_is_the_order_statistic_density(transform, lo, hi, mean, mu, sd):
    value = pt.as_tensor(np.array([lo, hi, 0.0 if mean is None else mean]))
    logp = gfm.range_logp(value, pt.as_tensor(mu), pt.as_tensor(sd), 12, transform, pt.as_tensor(0.0),
                          mean is not None).eval(**FAST)
    # 16-node Gauss-Legendre truncated moments: relative accuracy about 1e-8 of the log-likelihood
    assert logp == pytest.approx(_scipy_range_logp(lo, hi, mean, 12, mu, sd, transform), rel=1e-6)


def test_range_likelihood_keeps_its_precision_far_in_a_tail():
    # both extremes 9 and 10 sd above the centre: Phi(b) - Phi(a) would round to 0 on the natural scale
    value = pt.as_tensor(np.array([math.exp(9.0), math.exp(10.0), 0.0]))
    logp = gfm.range_logp(value, pt.as_tensor(0.0), pt.as_tensor(1.0), 12, "log", pt.as_tensor(0.0),
                          False).eval(**FAST)
    log_mass = stats.norm.logsf(9.0) + math.log(-math.expm1(stats.norm.logsf(10.0) - stats.norm.logsf(9.0)))
    expected = math.log(132) + stats.norm.logpdf(9.0) + stats.norm.logpdf(10.0) + 10 * log_mass
    assert np.isfinite(logp) and logp == pytest.approx(expected, rel=PYMC_LOGCDF_RTOL)


@pytest.mark.parametrize("a, b", [
    (-40.0, -39.0), (-9.0, -8.5), (-3.0, -2.99), (-1.5, -0.2),  # lower tail
    (-2.0, 0.5), (-0.7, 1.3), (-0.01, 0.01), (-8.0, 8.0),  # straddling 0: both sides of the reflection
    (0.3, 2.0), (8.5, 9.0), (3.0, 3.01), (39.0, 40.0),  # upper tail
])
def test_log_normal_interval_is_accurate_everywhere(a, b):
    got = gfm._log_normal_interval(pt.as_tensor(a), pt.as_tensor(b)).eval(**FAST)
    # log(Phi(b) - Phi(a)) from the tail where both cdf values are small: no cancellation in scipy's reference
    lo, hi = (a, b) if a + b <= 0 else (-b, -a)
    expected = special.log_ndtr(hi) + math.log(-math.expm1(special.log_ndtr(lo) - special.log_ndtr(hi)))
    assert np.isfinite(got) and got == pytest.approx(expected, rel=PYMC_LOGCDF_RTOL)


def test_log_normal_interval_is_smooth_across_its_reflection():
    # a + b = 0 is where the interval is reflected; value and gradient agree from both sides
    a, b = pt.dscalar("a"), pt.dscalar("b")
    value = gfm._log_normal_interval(a, b)
    f = pytensor.function([a, b], [value, *pytensor.grad(value, [a, b])], **FAST)
    eps = 1e-9
    below, above = f(-0.8 - eps, 0.8), f(-0.8 + eps, 0.8)
    np.testing.assert_allclose(below, above, rtol=1e-7)
    # d/db log(Phi(b) - Phi(a)) = phi(b) / (Phi(b) - Phi(a))
    mass = stats.norm.cdf(0.8) - stats.norm.cdf(-0.8)
    assert above[2] == pytest.approx(stats.norm.pdf(0.8) / mass, rel=1e-6)
    assert above[1] == pytest.approx(-stats.norm.pdf(-0.8) / mass, rel=1e-6)


def test_order_statistic_density_integrates_to_one():
    # the density of (min, max) of n = 5 standard normals, integrated over x_min < x_max, is 1
    f = stats.norm()

    def density(b, a):
        return 20 * f.pdf(a) * f.pdf(b) * (f.cdf(b) - f.cdf(a)) ** 3

    total = integrate.dblquad(density, -9, 9, lambda a: a, 9)[0]
    assert total == pytest.approx(1.0, abs=1e-6)


# ------------------------------------------------------------------------------------------- insulin outcomes
@pytest.mark.parametrize("strategy", list(IntercurrentStrategy))
def test_insulin_term_matches_the_numpy_reference(strategy):
    independent = np.array([1, 1, 0, 0, 0, 1])
    cut = np.array([1.0, 1.0, 0.7, 0.36, 0.5, 1.0])
    exposed = np.array([False, True, True, True, False, False])
    values = np.stack([independent, cut, exposed.astype(float)], axis=1)
    mean, sd = 0.4, 0.45
    got = gfm.insulin_logp(pt.as_tensor(values), pt.as_tensor(mean), pt.as_tensor(sd), strategy).eval(**FAST)
    expected = insulin_outcome_loglik(np.array([mean]), sd, np.ones(1), independent, cut, exposed, strategy)
    np.testing.assert_allclose(got, expected, rtol=PYMC_LOGCDF_RTOL)
    # and from first principles, one participant of each kind
    tol = {"rel": PYMC_LOGCDF_RTOL}
    assert got[0] == pytest.approx(stats.norm.logsf(0.0, mean, sd), **tol)  # independent: P(log phi >= 0)
    assert got[4] == pytest.approx(stats.norm.logpdf(math.log(0.5), mean, sd), **tol)  # not exposed: cut density
    if strategy is IntercurrentStrategy.HYPOTHETICAL:
        assert got[2] == pytest.approx(stats.norm.logsf(math.log(0.7), mean, sd), **tol)  # exposed: a lower bound
        assert got[1] == pytest.approx(stats.norm.logsf(0.0, mean, sd), **tol)
    else:
        assert got[2] == pytest.approx(stats.norm.logpdf(math.log(0.7), mean, sd), **tol)


# -------------------------------------------------------------------------------------------- the joint model
def _reference_terms(d: gfm.GraftFunctionData, v: dict, strategy: IntercurrentStrategy) -> dict:
    """Every non-means term of the joint model from the module docstring, by numpy/scipy."""
    z, w = gfm.rate_nodes()
    k = cpm.rate_from_t_half(v["t_half_days"], v["rise_shape"]) * np.exp(v["sd_log_rate"] * z)

    def moments(day):
        log_g = np.log(-np.expm1(-((k * day) ** v["rise_shape"])))
        m = w @ log_g
        return math.log(v["plateau_pmol_l"]) + m, v["sd_log_plateau"] ** 2 + w @ (log_g - m) ** 2

    (m365, v365), (m120, v120) = moments(365.0), moments(120.0)
    p_det = stats.norm.sf(math.log(13.0), m365, math.sqrt(v365 + v["measurement_sd"] ** 2))
    ref = math.log(1000.0)
    n = d.n_participants

    def rng_term(s: gfm.RangeSummary, mu, sd, transform):
        return _scipy_range_logp(s.minimum, s.maximum, s.mean, n, mu, sd, transform)

    share_sd = math.sqrt(v365 + v["sd_log_need"] ** 2)
    return {
        "detectable": stats.binom.logpmf(d.detectable, n, p_det),
        "tir": rng_term(d.tir_day365, v["tir_logit_at_1000"] + v["tir_slope"] * (m365 - ref),
                        math.sqrt(v["tir_slope"] ** 2 * v365 + v["tir_residual_sd"] ** 2), "logit100"),
        "hba1c_baseline": rng_term(d.hba1c_baseline, v["hba1c_baseline_log_median"], v["hba1c_baseline_log_sd"],
                                   "log"),
        "hba1c_day120": rng_term(d.hba1c_day120, v["hba1c_baseline_log_median"] + v["hba1c_day120_log_change"]
                                 + v["hba1c_slope"] * (m120 - ref),
                                 math.sqrt(v["hba1c_slope"] ** 2 * v120 + v["hba1c_residual_sd"] ** 2), "log"),
        "insulin_dose_baseline": rng_term(d.insulin_dose_baseline, v["insulin_dose_log_median"], v["sd_log_need"],
                                          "log"),
        "insulin": insulin_outcome_loglik(np.array([m365 - math.log(v["need_median_pmol_l"])]), share_sd,
                                          np.ones(1), d.insulin.independent, d.insulin.dose_cut, d.insulin.exposed,
                                          strategy).sum(),
    }


#: posterior medians of the joint model on the published data (hypothetical strategy; rounded)
NEAR_POSTERIOR = {"plateau_pmol_l": 1326.0, "t_half_days": 131.0, "sd_log_plateau": 0.3, "sd_log_rate": 0.26,
                  "measurement_sd": 0.18, "curve_misfit_sd": 0.09, "rise_shape": 1.5, "need_median_pmol_l": 270.0,
                  "sd_log_need": 0.3, "tir_logit_at_1000": 2.6, "tir_slope": 0.64, "tir_residual_sd": 0.52,
                  "hba1c_baseline_log_median": 2.05, "hba1c_baseline_log_sd": 0.1, "hba1c_day120_log_change": -0.25,
                  "hba1c_slope": -0.05, "hba1c_residual_sd": 0.042, "insulin_dose_log_median": 3.64}


def _unconstrained_point(model, values):
    point = {}
    for rv in model.free_RVs:
        value_var = model.rvs_to_values[rv]
        transform = model.rvs_to_transforms[rv]
        x = values[rv.name]
        point[value_var.name] = np.log(x) if transform is not None else x
    return point


@pytest.mark.parametrize("strategy", list(IntercurrentStrategy))
def test_joint_model_terms_match_their_reference(published, strategy, seed):
    # rounding variance off (unit 0), so that the reference is the plain order-statistic law
    data = gfm.GraftFunctionData(
        means=published.means, detectable=published.detectable,
        tir_day365=gfm.RangeSummary(12, 79.5, 96.9, 93.3, rounding_unit=0.0),
        hba1c_baseline=gfm.RangeSummary(12, 7.1, 9.9, 7.8, rounding_unit=0.0), hba1c_day120=published.hba1c_day120,
        insulin_dose_baseline=gfm.RangeSummary(12, 19.8, 52.0, 39.3, rounding_unit=0.0), insulin=published.insulin)
    model = gfm.build_graft_function_model(data, strategy=strategy)
    # a point near the posterior of the published data, jittered by the seed (a prior draw can put the observed
    # ranges so far out that the scipy reference itself underflows)
    rng = np.random.default_rng(seed(40))
    values = {name: value * math.exp(0.1 * rng.standard_normal()) if name in gfm.POSITIVE_PARAMETERS
              else value + 0.05 * rng.standard_normal() for name, value in NEAR_POSTERIOR.items()}
    names = ["detectable", "tir", "hba1c_baseline", "hba1c_day120", "insulin_dose_baseline", "insulin"]
    logps = model.compile_logp(vars=[model[n] for n in names], jacobian=False, sum=False, **FAST)(
        _unconstrained_point(model, values))
    expected = _reference_terms(data, values, IntercurrentStrategy(strategy))
    for name, got in zip(names, logps):
        assert float(np.sum(got)) == pytest.approx(expected[name], rel=1e-6, abs=1e-8), name


def test_the_simulator_draws_from_the_models_priors(published, seed):
    model = gfm.build_graft_function_model(published)
    names = list(gfm.GRAFT_FUNCTION_PARAMETERS)
    model_draws = pm.draw([model[n] for n in names], draws=3000, random_seed=seed(41), **FAST)
    mine = gfm.prior_draws(cpm.TrajectoryPriors(), gfm.GraftFunctionPriors(), 3000, np.random.default_rng(seed(42)))
    for name, x in zip(names, model_draws):
        # two-sample KS at a Bonferroni level over the parameters: fails only if the two priors differ
        assert stats.ks_2samp(x, mine[name]).pvalue > 1e-3 / len(names), name


def test_simulated_insulin_independence_follows_the_models_law(seed):
    # with almost no spread in the rate the model's normal law of log C(365) is exact, so the share of simulated
    # participants insulin independent must match the model's P(phi >= 1) within Monte Carlo error
    values = gfm.draw_prior(cpm.TrajectoryPriors(), gfm.GraftFunctionPriors(), np.random.default_rng(seed(43)))
    values.update(plateau_pmol_l=900.0, t_half_days=80.0, sd_log_plateau=0.4, sd_log_rate=1e-4, rise_shape=1.3,
                  need_median_pmol_l=600.0, sd_log_need=0.3)
    sim = gfm.simulate_graft_function_data(values, np.random.default_rng(seed(44)), n_participants=40000,
                                           n_exposed=0, strategy="treatment_policy")
    k = cpm.rate_from_t_half(80.0, 1.3)
    m365 = math.log(900.0) + math.log(-math.expm1(-((k * 365.0) ** 1.3)))
    p = stats.norm.sf(0.0, m365 - math.log(600.0), math.hypot(0.4, 0.3))
    share = sim.insulin.independent.mean()
    assert abs(share - p) < 4 * math.sqrt(p * (1 - p) / 40000)
    # and a not-independent participant's dose cut is their share of the need covered: below 1
    cuts = sim.insulin.dose_cut[sim.insulin.independent == 0]
    assert cuts.size and (cuts < 1).all() and (cuts > 0).all()


def test_new_participants_carry_no_curve_misfit():
    values = gfm.draw_prior(cpm.TrajectoryPriors(), gfm.GraftFunctionPriors(), np.random.default_rng(0))
    params = gfm.population_parameters(values)
    assert "curve_misfit_sd" not in params.as_dict() and params.has_need_threshold
    assert params.measurement_sd == values["measurement_sd"]
    # simulate_participants uses the need threshold for insulin independence
    df = cpm.simulate_participants(params, 50, [90.0, 365.0], rng=np.random.default_rng(1))
    assert set(df.loc[df["measure"] == "insulin_independent", "value"]) <= {0.0, 1.0}


def test_contraction_of_the_prior_against_itself_is_one(seed):
    rng = np.random.default_rng(seed(45))
    prior = gfm.prior_draws(cpm.TrajectoryPriors(), gfm.GraftFunctionPriors(), 4000, rng)
    again = gfm.prior_draws(cpm.TrajectoryPriors(), gfm.GraftFunctionPriors(), 4000, rng)

    posterior = xr.Dataset({k: (("chain", "draw"), v.reshape(4, 1000)) for k, v in again.items()})
    table = gfm.contraction(prior, {"posterior": posterior})
    assert set(table["parameter"]) == set(gfm.GRAFT_FUNCTION_PARAMETERS)
    # ratio of two sds of 4000 independent draws: within a few standard errors (~1/sqrt(4000)) of 1
    assert np.all(np.abs(table["ratio"] - 1) < 0.1)
    assert set(table["verdict"]) <= {"prior only", "partly informed"}
