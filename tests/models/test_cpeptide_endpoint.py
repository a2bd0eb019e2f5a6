"""Day-365 C-peptide end point model: sufficient-statistic likelihood against per-participant pm.Censored, decision
quantity against its closed form, input validation, parameter recovery by NUTS."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pymc as pm
import pytest
from scipy import stats

from isletbayes.models.validation import ModelInputError
from isletbayes.models import cpeptide_endpoint as ce


def _long(values, lods, flags, day=365.0):
    n = len(values)
    return pd.DataFrame({"participant": [f"P{i:03d}" for i in range(n)], "day": day, "measure": "cpeptide",
                         "value": values, "below_lod": flags, "lod": lods, "unit": "pmol/L"})


def _reference_model(data: ce.Day365Data, priors: ce.Day365Priors) -> pm.Model:
    """The textbook form: one censored lognormal term per participant."""
    with pm.Model() as model:
        mu = pm.Normal("log_median_pmol_l", mu=math.log(priors.median_centre_pmol_l), sigma=priors.log_median_sd)
        s = pm.HalfNormal("sd_log", sigma=priors.sd_log_scale)
        pm.Censored("y", pm.LogNormal.dist(mu=mu, sigma=s), lower=data.lod_pmol_l, upper=None,
                    observed=data.cpeptide_pmol_l)
    return model


@pytest.mark.parametrize("lods", [[13.0] * 8, [13.0, 13.0, 20.0, 20.0, 13.0, 20.0, 13.0, 13.0]])
def test_sufficient_statistic_likelihood_is_the_censored_lognormal(lods):
    values = [5.0, 900.0, 15.0, 2500.0, 13.0, 40.0, 640.0, 1210.0]  # 5 and 13 (and 15 with LLOD 20) are censored
    data = ce.day365_data_from_long(_long(values, lods, [True, False, False, False, False, False, False, False]))
    assert data.censored.sum() == (3 if lods[2] == 20.0 else 2)
    priors = ce.Day365Priors(median_centre_pmol_l=700.0, log_median_sd=1.5, sd_log_scale=0.8)
    fast, reference = ce.build_day365_model(data, priors).compile_logp(), _reference_model(data, priors).compile_logp()
    for mu, log_s in [(6.5, 0.0), (2.0, -1.2), (8.0, 0.9), (math.log(13.0), -2.0)]:
        point = {"log_median_pmol_l": mu, "sd_log_log__": log_s}
        assert fast(point) == pytest.approx(reference(point), rel=1e-12, abs=1e-9)


def test_data_shapes_do_not_depend_on_how_many_are_censored():
    none = ce.day365_arrays(ce.day365_data_from_long(_long([100.0, 200.0, 300.0], [13.0] * 3, [False] * 3)))
    some = ce.day365_arrays(ce.day365_data_from_long(_long([13.0, 200.0, 2.0], [13.0] * 3, [True, False, False])))
    assert set(none) == set(ce.DATA_CONTAINERS)
    assert {k: np.shape(v) for k, v in none.items()} == {k: np.shape(v) for k, v in some.items()}
    assert some["n_censored_at_level"].tolist() == [2.0] and some["n_detected"] == 1.0
    assert none["mean_log_detected"] == pytest.approx(np.log([100.0, 200.0, 300.0]).mean())
    assert none["ssd_log_detected"] == pytest.approx(3 * np.log([100.0, 200.0, 300.0]).var())


def test_fraction_above_is_the_lognormal_tail_and_one_half_is_the_median_rule():
    rng = np.random.default_rng(1)
    mu, s = rng.normal(7.0, 0.5, 500), np.abs(rng.normal(0.8, 0.2, 500))
    frac = ce.fraction_above(mu, s, 970.0)
    np.testing.assert_allclose(frac, stats.lognorm(s=s, scale=np.exp(mu)).sf(970.0), rtol=1e-10)
    assert np.array_equal(frac > 0.5, mu > math.log(970.0))


def test_default_level_is_the_citr_cut_point_and_the_prior_is_neutral():
    assert ce.DEFAULT_THRESHOLD_PMOL_L == 970.0 and ce.DEFAULT_MIN_FRACTION_ABOVE == 0.5
    priors = ce.Day365Priors()
    # a priori P(e^mu > c0) = 1/2 when the prior is centred on c0
    assert stats.norm(math.log(priors.median_centre_pmol_l), priors.log_median_sd).sf(math.log(970.0)) == 0.5


@pytest.mark.parametrize("change, column", [
    (lambda df: df.drop(columns="lod"), "lod"),
    (lambda df: df.assign(lod=[13.0, -1.0, 13.0]), "lod"),
    (lambda df: df.assign(value=[100.0, -5.0, 300.0]), "value"),
    (lambda df: df.assign(participant=["A", "A", "B"]), "participant"),
    (lambda df: df.assign(day=[365.0, 180.0, 180.0]), "day"),
])
def test_bad_input_names_the_column(change, column):
    df = change(_long([100.0, 200.0, 300.0], [13.0] * 3, [False] * 3))
    with pytest.raises(ModelInputError) as err:
        ce.day365_data_from_long(df, source="trial.csv")
    assert err.value.column == column and err.value.source == "trial.csv"


def test_bad_priors_name_the_key():
    with pytest.raises(ModelInputError, match="log_median_sd"):
        ce.Day365Priors(log_median_sd=0.0)


def test_parameter_recovery():
    """500 participants from a known lognormal, 10% censored: the posterior covers the truth tightly."""
    from isletbayes.models.sampling import SamplerSettings, check_diagnostics, fit

    rng = np.random.default_rng(20250620)
    mu_true, s_true, lod = math.log(900.0), 0.9, 900.0 * math.exp(-0.9 * 1.2816)  # LLOD at the 10th percentile
    y = np.exp(rng.normal(mu_true, s_true, 500))
    data = ce.day365_data_from_long(_long(np.maximum(y, lod), [lod] * 500, y <= lod))
    idata = fit(ce.build_day365_model(data), SamplerSettings(draws=500, tune=500, chains=2, nuts_sampler="pymc",
                                                              seed=3))
    assert check_diagnostics(idata, list(ce.PARAMETERS)).ok
    post = idata["posterior"]
    for name, truth in (("log_median_pmol_l", mu_true), ("sd_log", s_true)):
        draws = post[name].values.ravel()
        assert abs(draws.mean() - truth) < 3.5 * draws.std()
        assert draws.std() < 0.06  # n = 500 pins both down (sampling sd ~ s / sqrt(n) and s / sqrt(2n))


# ---------------------------------------------------------------------------------------------------------------
# deterministic quadrature of the posterior
# ---------------------------------------------------------------------------------------------------------------
PRIORS = ce.Day365Priors()


def _trial(rng, median, sd, n, lod=13.0):
    """n values spread like a lognormal sample (normal quantiles, jittered), so censoring counts barely vary."""
    y = np.exp(math.log(median) + sd * (stats.norm.ppf((np.arange(n) + 0.5) / n) + rng.normal(0.0, 0.1, n)))
    censored = y <= lod
    return ce.Day365Data(np.where(censored, lod, y), np.full(n, lod), censored)


def _closed_form_reference(data: ce.Day365Data, priors, c0, q0):
    """No censoring: given s, mu | s, y is the conjugate normal, so P(pi > q0 | s, y), E[e^mu | s, y] and
    E[pi | s, y] are closed forms; integrating mu out of prod_i Normal(l_i; mu, s) Normal(mu; log m0, tau) leaves
    (2 pi s^2)^(-n/2) exp(-S / 2s^2) sqrt(2 pi s^2 / n) Normal(lbar; log m0, s^2/n + tau^2), which times the prior
    of s and the Jacobian s is the posterior of log s. One scipy.integrate.quad over log s does the rest."""
    from scipy import integrate

    ly = np.log(data.cpeptide_pmol_l)
    n, lbar, ssd = ly.size, ly.mean(), float(np.sum((ly - ly.mean()) ** 2))
    m0, tau, c = math.log(priors.median_centre_pmol_l), priors.log_median_sd, math.log(c0)
    zq = stats.norm.ppf(q0)

    def parts(eta):
        s = math.exp(eta)
        log_w = (stats.halfnorm.logpdf(s, scale=priors.sd_log_scale) + eta - n * eta - ssd / (2 * s * s) + eta
                 + stats.norm.logpdf(lbar, m0, math.sqrt(s * s / n + tau * tau)))
        post_var = 1.0 / (n / s**2 + 1.0 / tau**2)
        post_mean = post_var * (n * lbar / s**2 + m0 / tau**2)
        prob = stats.norm.sf((c + zq * s - post_mean) / math.sqrt(post_var))
        median = math.exp(post_mean + post_var / 2)
        fraction = stats.norm.cdf((post_mean - c) / math.sqrt(s * s + post_var))
        return log_w, (1.0, prob, median, fraction)

    mode = 0.5 * math.log(ssd / n)  # the mass lies within a few 1/sqrt(2n) of it
    peak = parts(mode)[0]
    out = [integrate.quad(lambda e: math.exp(parts(e)[0] - peak) * parts(e)[1][i], mode - 12.0, mode + 6.0,
                          points=[mode], epsabs=0.0, epsrel=1e-12, limit=400)[0] for i in range(4)]
    return out[1] / out[0], out[2] / out[0], out[3] / out[0]


def _gauss_legendre_reference(data: ce.Day365Data, priors, c0, q0, nodes=300):
    """Independent of the module's algebra: Gauss-Legendre in (mu, log s) on the per-participant censored
    lognormal likelihood, the mu rule split at the threshold mu = log c0 + s Phi^-1(q0) in every row; the box is
    the region where the joint density is within e^-40 of its largest, located on a scan."""
    from scipy.special import log_ndtr

    ly, log_lod, cen = np.log(data.cpeptide_pmol_l), np.log(data.lod_pmol_l), data.censored
    m0, tau, c = math.log(priors.median_centre_pmol_l), priors.log_median_sd, math.log(c0)
    zq = stats.norm.ppf(q0)

    def log_joint(mu, eta):  # mu (..., M), eta (..., 1): prior, HalfNormal prior with its Jacobian, likelihood
        s = np.exp(eta)
        out = -0.5 * ((mu - m0) / tau) ** 2 - 0.5 * (s / priors.sd_log_scale) ** 2 + eta
        for v in ly[~cen]:
            out = out - 0.5 * ((v - mu) / s) ** 2 - eta
        for v in log_lod[cen]:
            out = out + log_ndtr((v - mu) / s)
        return out

    mu_scan = np.linspace(m0 - 12 * tau, m0 + 12 * tau, 481)[None, :]
    eta_scan = np.linspace(-40.0, 4.0, 441)[:, None]
    scan = log_joint(mu_scan, eta_scan)
    keep = scan > scan.max() - 40.0
    mu_lo, mu_hi = mu_scan[0, keep.any(axis=0)][[0, -1]] + np.array([-0.1, 0.1])
    eta_lo, eta_hi = eta_scan[keep.any(axis=1), 0][[0, -1]] + np.array([-0.1, 0.1])
    x, w = np.polynomial.legendre.leggauss(nodes)
    eta = (0.5 * (eta_hi - eta_lo) * x + 0.5 * (eta_hi + eta_lo))[:, None]
    w_eta = (0.5 * (eta_hi - eta_lo) * w)[:, None]
    b = np.clip(c + zq * np.exp(eta), mu_lo, mu_hi)  # (rows, 1): the threshold in every row
    sums = np.zeros(4)
    for lo, hi, above in ((mu_lo, b, 0.0), (b, mu_hi, 1.0)):
        mu = 0.5 * (hi - lo) * x[None, :] + 0.5 * (hi + lo)
        f = np.exp(log_joint(mu, eta) - scan.max()) * 0.5 * (hi - lo) * w[None, :] * w_eta
        sums += [f.sum(), above * f.sum(), (f * np.exp(mu)).sum(), (f * stats.norm.cdf((mu - c) / np.exp(eta))).sum()]
    return sums[1] / sums[0], sums[2] / sums[0], sums[3] / sums[0]


@pytest.mark.parametrize("q0", [0.5, 0.3, 0.8])
def test_quadrature_matches_the_closed_form_without_censoring(seed, q0):
    rng = np.random.default_rng(seed(365))
    trials = [_trial(rng, 1100.0, 0.7, 50, lod=1e-9), _trial(rng, 900.0, 1.3, 12, lod=1e-9),
              _trial(rng, 2000.0, 0.4, 200, lod=1e-9)]
    quad = ce.day365_posterior_quadrature(trials, PRIORS, 970.0, q0)
    for i, data in enumerate(trials):
        prob, median, fraction = _closed_form_reference(data, PRIORS, 970.0, q0)
        assert quad.prob_fraction_above[i] == pytest.approx(prob, abs=1e-7)
        assert quad.median_posterior_mean[i] == pytest.approx(median, rel=1e-9)
        assert quad.fraction_above_posterior_mean[i] == pytest.approx(fraction, abs=1e-9)
    assert np.all(quad.edge_mass < ce.EDGE_MASS_TOL)


@pytest.mark.parametrize("q0", [0.5, 0.25])
def test_quadrature_matches_gauss_legendre_with_censoring(seed, q0):
    rng = np.random.default_rng(seed(1365))
    trials = [_trial(rng, 300.0, 2.0, 30), _trial(rng, 40.0, 1.5, 20), _trial(rng, 400.0, 2.5, 40)]
    # two LLODs in one trial
    two = _trial(rng, 100.0, 2.0, 25)
    lod = np.where(np.arange(25) % 2 == 0, 13.0, 40.0)
    y = two.cpeptide_pmol_l * np.exp(rng.normal(0, 0.01, 25))
    trials.append(ce.Day365Data(np.where(y <= lod, lod, y), lod, y <= lod))
    assert all(t.censored.sum() >= 1 for t in trials) and sum(t.censored.sum() for t in trials) >= 10
    quad = ce.day365_posterior_quadrature(trials, PRIORS, 970.0 if q0 == 0.5 else 150.0, q0)
    for i, data in enumerate(trials):
        prob, median, fraction = _gauss_legendre_reference(data, PRIORS, quad.threshold_pmol_l, q0)
        assert quad.prob_fraction_above[i] == pytest.approx(prob, abs=1e-7)
        assert quad.median_posterior_mean[i] == pytest.approx(median, rel=1e-8)
        assert quad.fraction_above_posterior_mean[i] == pytest.approx(fraction, abs=1e-8)


def test_quadrature_converges_in_the_grid_size(seed):
    """Against a grid 8 times finer: the probability's error falls by 2^6 per halving of the cells (the end
    corrections leave an O(h^6) error), the posterior means' faster still, and the default grid is within 1e-6."""
    rng = np.random.default_rng(seed(2365))
    trials = [_trial(rng, m, s, n) for m, s, n in [(1000, 0.8, 50), (900, 1.5, 20), (200, 2.0, 40), (970, 0.3, 12)]
              for _ in range(5)]
    finest = ce.day365_posterior_quadrature(trials, grid=(768, 384))
    errors = []
    for grid in [(24, 12), (48, 24), (96, 48), (192, 96)]:
        quad = ce.day365_posterior_quadrature(trials, grid=grid)
        errors.append(np.abs(quad.prob_fraction_above - finest.prob_fraction_above).max())
        if grid == ce.QUADRATURE_GRID:
            assert errors[-1] < 1e-6
            np.testing.assert_allclose(quad.median_posterior_mean, finest.median_posterior_mean, rtol=1e-9)
            np.testing.assert_allclose(quad.fraction_above_posterior_mean, finest.fraction_above_posterior_mean,
                                       atol=1e-9)
    assert errors[0] > 1e-7  # the coarsest grid is measurably wrong, so the ratios below mean something
    for coarse, fine in zip(errors, errors[1:]):
        assert fine < max(coarse / 16.0, 1e-10)


@pytest.mark.parametrize("case", ["all censored", "one detected", "single participant", "tied and censored"])
def test_quadrature_of_the_hard_trials_converges(case):
    """At most one detected value (or ties): the heavy tail in log s and the LLOD step get the finer grid."""
    values = {"all censored": ([5.0] * 10, [True] * 10), "one detected": ([500.0] + [5.0] * 9, [False] + [True] * 9),
              "single participant": ([1500.0], [False]), "tied and censored": ([500.0, 500.0, 5.0],
                                                                                 [False, False, True])}[case]
    vals, cen = np.asarray(values[0]), np.asarray(values[1])
    data = ce.Day365Data(np.where(cen, 13.0, vals), np.full(vals.size, 13.0), cen)
    default = ce.day365_posterior_quadrature(data)
    fine = ce.day365_posterior_quadrature(data, grid=(8 * 96, 8 * 48))
    assert default.prob_fraction_above[0] == pytest.approx(fine.prob_fraction_above[0], abs=1e-8)
    assert default.fraction_above_posterior_mean[0] == pytest.approx(fine.fraction_above_posterior_mean[0], abs=1e-8)
    # with every value censored the LLOD is a step in the integrand: first-order convergence of E[e^mu]
    rel = 1e-3 if case == "all censored" else 1e-9
    assert default.median_posterior_mean[0] == pytest.approx(fine.median_posterior_mean[0], rel=rel)


def test_improper_posterior_is_reported():
    data = ce.Day365Data(np.array([500.0, 500.0]), np.full(2, 13.0), np.array([False, False]))
    with pytest.raises(RuntimeError, match="proper"):
        ce.day365_posterior_quadrature(data)


def test_quadrature_decision_and_edge_cases(seed):
    rng = np.random.default_rng(seed(3365))
    trials = [_trial(rng, 1500.0, 0.5, 30), _trial(rng, 500.0, 0.5, 30)]
    quad = ce.day365_posterior_quadrature(trials)
    assert quad.success(0.975).tolist() == (quad.prob_fraction_above >= 0.975).tolist()
    assert quad.prob_fraction_above[0] > 0.99 and quad.prob_fraction_above[1] < 0.01
    # q0 = 0: pi(c0) > 0 always
    assert np.all(ce.day365_posterior_quadrature(trials, min_fraction_above=0.0).prob_fraction_above == 1.0)
    # one at a time and in batches of any size: the same numbers (a trial's box does not depend on its batch)
    mixed = trials + [_trial(rng, 300.0, 2.0, 30), _trial(rng, 5.0, 1.0, 8), _trial(rng, 900.0, 1.0, 12)]
    single = np.array([ce.day365_posterior_quadrature(t).prob_fraction_above[0] for t in mixed])
    for size in (1, 2, 32):
        batched = ce.day365_posterior_quadrature(mixed, batch_size=size)
        assert np.array_equal(batched.prob_fraction_above, single)
    with pytest.raises(ModelInputError, match="min_fraction_above"):
        ce.day365_posterior_quadrature(trials, min_fraction_above=1.0)
    with pytest.raises(ModelInputError) as err:
        ce.day365_posterior_quadrature(trials, grid=(8, 8))
    assert err.value.parameter == "grid"


def test_statistics_stack_trials_with_different_lods_and_are_validated():
    a = ce.Day365Data(np.array([13.0, 200.0, 300.0]), np.array([13.0, 13.0, 13.0]), np.array([True, False, False]))
    b = ce.Day365Data(np.array([20.0, 13.0, 500.0]), np.array([20.0, 13.0, 13.0]), np.array([True, True, False]))
    st = ce.day365_statistics([a, b])
    assert st.n_trials == 2 and st.log_lod_levels.shape == (2, 2)
    assert st.n_censored_at_level.tolist() == [[1.0, 0.0], [1.0, 1.0]]
    assert st.n_detected.tolist() == [2.0, 1.0]
    assert st.mean_log_detected[0] == pytest.approx(np.log([200.0, 300.0]).mean())
    for name, bad in [("n_detected", dict(n_detected=np.array([1.5, 1.0]))),
                      ("ssd_log_detected", dict(ssd_log_detected=np.array([-1.0, 0.0]))),
                      ("n_censored_at_level", dict(n_censored_at_level=np.array([[-1.0, 0.0], [1.0, 1.0]])))]:
        fields = {k: getattr(st, k) for k in ("n_detected", "mean_log_detected", "ssd_log_detected",
                                               "log_lod_levels", "n_censored_at_level")}
        fields.update(bad)
        with pytest.raises(ModelInputError) as err:
            ce.Day365Statistics(**fields)
        assert err.value.parameter == name


def test_quadrature_agrees_with_nuts_within_monte_carlo_error(seed):
    """NUTS on the same trials (one model, ``pm.set_data`` per trial): every estimate within 4 Monte Carlo
    standard errors of the quadrature's value. (The benchmark compares 800 trials with the simulations' nutpie
    route.)"""
    from arviz_stats.base import array_stats

    from isletbayes.models.sampling import SamplerSettings, check_diagnostics, fit

    rng = np.random.default_rng(seed(4365))
    trials = [_trial(rng, 1000.0, 0.9, 50), _trial(rng, 400.0, 2.2, 40)]
    assert not trials[0].censored.any() and trials[1].censored.sum() >= 2
    quad = ce.day365_posterior_quadrature(trials, threshold_pmol_l=800.0)
    model = ce.build_day365_model(trials[0], ce.Day365Priors(median_centre_pmol_l=800.0))
    for i, data in enumerate(trials):
        pm.set_data(ce.day365_arrays(data), model=model)
        idata = fit(model, SamplerSettings(draws=1000, tune=500, chains=2, nuts_sampler="pymc", seed=seed(20 + i)))
        assert check_diagnostics(idata, list(ce.PARAMETERS)).ok
        post = idata["posterior"]
        mu, s = post["log_median_pmol_l"].values, post["sd_log"].values
        fraction = ce.fraction_above(mu, s, 800.0)
        for draws, exact in ((fraction > 0.5, quad.prob_fraction_above[i]), (np.exp(mu), quad.median_posterior_mean[i]),
                             (fraction, quad.fraction_above_posterior_mean[i])):
            draws = np.asarray(draws, dtype=float)
            mcse = float(array_stats.mcse(draws, method="mean"))
            if mcse == 0.0:  # every draw on one side: then the exact probability is that close to 0 or 1
                assert abs(draws.mean() - exact) < 0.01
            else:
                assert abs(draws.mean() - exact) < 4.0 * mcse


def test_statistics_of_a_values_array_are_those_of_the_trials_one_by_one(seed):
    """The vectorised statistics (the simulations' route) against day365_statistics of each trial's Day365Data,
    with trials all detected, partly censored, with one detected value and all censored; then the quadrature of
    both agrees."""
    rng = np.random.default_rng(seed(365))
    values = np.exp(rng.normal(np.log([[900.0], [40.0], [5.0], [1.0]]), 1.0, size=(4, 30)))
    values[2, 1:] = 2.0  # one detected value at most
    values[2, 0] = 50.0
    values[3] = 1.0  # all censored
    values[1, 0] = 13.0  # exactly at the LLOD: censored, as day365_data_from_long reads it
    st = ce.day365_statistics_of_values(values, 13.0)
    trials = [ce.Day365Data(np.where(v <= 13.0, 13.0, v), np.full(30, 13.0), v <= 13.0) for v in values]
    one_by_one = ce.day365_statistics(trials)
    assert st.n_detected.tolist() == one_by_one.n_detected.tolist() == [30.0, float((values[1] > 13).sum()), 1.0, 0.0]
    assert 0 < st.n_detected[1] < 30
    np.testing.assert_allclose(st.mean_log_detected, one_by_one.mean_log_detected, rtol=1e-13, atol=0)
    np.testing.assert_allclose(st.ssd_log_detected, one_by_one.ssd_log_detected, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(st.log_lod_levels, one_by_one.log_lod_levels)
    np.testing.assert_array_equal(st.n_censored_at_level, one_by_one.n_censored_at_level)
    a, b = ce.day365_posterior_quadrature(st), ce.day365_posterior_quadrature(one_by_one)
    np.testing.assert_allclose(a.prob_fraction_above, b.prob_fraction_above, rtol=1e-9, atol=1e-12)
    for bad, parameter in ((values[0], "cpeptide_pmol_l"), (np.full((2, 3), np.nan), "cpeptide_pmol_l")):
        with pytest.raises(ModelInputError) as err:
            ce.day365_statistics_of_values(bad, 13.0)
        assert err.value.parameter == parameter
    with pytest.raises(ModelInputError) as err:
        ce.day365_statistics_of_values(values, 0.0)
    assert err.value.parameter == "lod_pmol_l"
