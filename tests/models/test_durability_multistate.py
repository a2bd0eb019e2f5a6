"""Multi-state durability model: closed forms, brute-force likelihood, recovery, Monte Carlo checks, preposterior."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from isletbayes.data import load_durability
from isletbayes.models.durability_multistate import (
    CITR2008_APPROXIMATE_DENOMINATOR,
    DeathRate,
    DurabilityModel,
    GridSpec,
    ObservedStates,
    OnsetTime,
    PersistenceEndpoint,
    ProcessParameters,
    RetentionFigure,
    WeibullLossPrior,
    donor_retention_figures,
    fit_durability,
    follow_up_precision,
    log_likelihood,
    observe,
    observed_states,
    persistence_probability,
    share_insulin_independent_at,
    simulate_event_times,
    to_long_table,
    transfer_weight_for_ess,
)
from isletbayes.models.mixtures import BetaMixture
from isletbayes.models.validation import ModelInputError

PHASE12_YEAR1 = BetaMixture.single(11, 3)  # 10/12 insulin independent at day 365 under a uniform prior
PHASE12_DEATHS = DeathRate(deaths=2, exposure_years=21.0)  # 2 of 14; exposure as a caller would give it


@pytest.fixture(scope="module")
def published_fit():
    figures = donor_retention_figures(load_durability())
    return fit_durability(DurabilityModel(figures, PHASE12_DEATHS, year1=PHASE12_YEAR1))


@dataclass(frozen=True)
class BetaRetentionPrior:
    """Exponential loss (shape 1): S(1) = exp(-1/lambda) ~ Beta(a, b), written as a density on log lambda."""

    a: float
    b: float

    def log_density(self, log_scale, log_shape):
        q = np.exp(-np.exp(-log_scale))
        return stats.beta.logpdf(q, self.a, self.b) + np.log(q) - log_scale  # |dq / dlog lambda| = q / lambda

    def box(self):
        lo, hi = stats.beta.ppf([1e-13, 1 - 1e-13], self.a, self.b)
        return (-math.log(-math.log(lo)), -math.log(-math.log(hi))), (0.0, 0.0)


# --- the grid posterior against closed forms ------------------------------------------------------------------
@pytest.mark.parametrize("a0, overdispersion", [(1.0, 0.0), (0.4, 0.0), (1.0, 0.02), (0.5, 0.02)])
def test_grid_posterior_matches_beta_closed_form(a0, overdispersion):
    """Exponential loss, S(1) ~ Beta(2, 3), r of n retained 1 year after onset, power weight a0, design effect:
    S(1) | data ~ Beta(2 + a0 n_eff r/n, 3 + a0 n_eff (1 - r/n)) exactly."""
    n, share = 60.0, 0.7
    figure = RetentionFigure("test", "insulin_independence", "onset", (1.0,), (share,), n, overdispersion == 0,
                             overdispersion)
    model = DurabilityModel((figure,), DeathRate(0, 1.0), transfer_weight=a0, loss_prior=BetaRetentionPrior(2, 3),
                            fixed_shape=1.0)
    fit = fit_durability(model, grid=GridSpec(n_fine=201))
    n_eff = n / (1 + (n - 1) * overdispersion)
    exact = stats.beta(2 + a0 * n_eff * share, 3 + a0 * n_eff * (1 - share))
    row = fit.retention((1.0,)).iloc[0]
    assert row["mean"] == pytest.approx(exact.mean(), abs=1e-5)
    for col, q in (("lower", 0.025), ("median", 0.5), ("upper", 0.975)):
        assert row[col] == pytest.approx(exact.ppf(q), abs=3e-4)


def test_approximate_denominator_discount_widens_the_interval():
    table = load_durability()
    exact, discounted = (donor_retention_figures(table, overdispersion=rho)[0] for rho in (0.0, 0.02))
    assert exact.source_id == discounted.source_id == "citr2008"
    assert discounted.effective_denominator == pytest.approx(
        CITR2008_APPROXIMATE_DENOMINATOR / (1 + (CITR2008_APPROXIMATE_DENOMINATOR - 1) * 0.02))
    widths = []
    for figure in (exact, discounted):
        fit = fit_durability(DurabilityModel((figure,), DeathRate(0, 1.0), transfer_weight=1.0))
        row = fit.retention((2.0,)).iloc[0]
        widths.append(row["upper"] - row["lower"])
    # the information ratio is the design effect; the weak initial prior keeps the width ratio below its root
    design_effect = exact.effective_denominator / discounted.effective_denominator
    assert 1.5 < widths[1] / widths[0] <= math.sqrt(design_effect) * 1.05


# --- interval-censored likelihood against brute-force integration ---------------------------------------------
def _brute_force_log_likelihood(visit_days, states, death_day, p: ProcessParameters) -> float:
    """Sum, over every cell (onset between two breakpoints) x (loss between two visits) whose states at the visits
    match the observed ones, of the double integral of the onset and loss densities (scipy dblquad)."""
    lo, hi, g = p.onset.low_years, p.onset.high_years, p.onset.density_per_year
    lam, k = p.loss_scale_years, p.loss_shape

    def density(l, s):
        v = l - s
        return g * (k / lam) * (v / lam) ** (k - 1) * math.exp(-((v / lam) ** k)) if v > 0 else 0.0

    v = [d / 365.0 for d in visit_days]
    total = (1 - p.ever_ii) * float(all(s == 0 for s in states))
    s_edges = sorted({lo, hi} | {t for t in v if lo < t < hi})
    for s0, s1 in zip(s_edges[:-1], s_edges[1:]):
        later = [t for t in v if t >= s1]
        cells = [(None, later[0] if later else math.inf)] + list(zip(later, later[1:] + [math.inf]))
        sm = 0.5 * (s0 + s1)
        for l0, l1 in cells:
            end = l1 if math.isfinite(l1) else (l0 if l0 is not None else sm) + 1.0
            lm = 0.5 * (sm + end) if l0 is None else 0.5 * (l0 + end)
            if [0 if t < sm else (1 if t < lm else 2) for t in v] != list(states):
                continue
            val, _ = integrate.dblquad(density, s0, s1, (lambda s: s) if l0 is None else l0, l1,
                                       epsabs=1e-14, epsrel=1e-11)
            total += p.ever_ii * val
    mu = p.death_rate_per_year
    exit_year = death_day / 365.0 if death_day is not None else v[-1]
    return math.log(total) + (math.log(mu) if death_day is not None else 0.0) - mu * exit_year


SEQUENCES = {  # visit days and states (0 not_ii, 1 ii, 2 lost_ii); death day or None
    "never II": ([91, 182, 365, 548], [0, 0, 0, 0], None),
    "II, censored": ([91, 182, 365, 548], [0, 1, 1, 1], None),
    "II then lost": ([91, 182, 365, 548, 730], [0, 0, 1, 2, 2], None),
    "lost unseen II": ([91, 182, 365], [0, 2, 2], None),
    "II then died": ([91, 182, 365], [0, 1, 1], 400.0),
    "died before II": ([91, 182], [0, 0], 300.0),
    "first visit II": ([182, 365, 730], [1, 1, 2], None),
}


@pytest.mark.parametrize("scale, shape", [(1.5, 0.8), (2.5, 1.6)])
def test_interval_censored_likelihood_matches_brute_force(scale, shape):
    params = ProcessParameters(scale, shape, 0.7, 0.1, OnsetTime(60.0, 330.0))
    rows = []
    for name, (days, states, death) in SEQUENCES.items():
        rows.append((name, 0.0, "not_ii"))
        rows.extend((name, float(d), ("not_ii", "ii", "lost_ii")[s]) for d, s in zip(days, states))
        if death is not None:
            rows.append((name, death, "dead"))
    table = pd.DataFrame(rows, columns=["participant", "day", "state"])
    data = observed_states(table)
    exact = dict(zip(data.participant, log_likelihood(data, params)))
    for name, (days, states, death) in SEQUENCES.items():
        assert exact[name] == pytest.approx(_brute_force_log_likelihood(days, states, death, params), abs=1e-7), name


# --- parameter recovery from simulated participant-level data ------------------------------------------------
@pytest.mark.parametrize("base", [101, 202, 303])
def test_recovers_parameters_from_interval_censored_participants(seed, base):
    rng = np.random.default_rng(seed(base))
    truth = ProcessParameters(2.0, 1.4, 0.8, 0.06)
    events = simulate_event_times(truth, 400, rng)
    visits = np.arange(91.25, 4 * 365 + 1, 91.25)  # quarterly for 4 years
    data = to_long_table(events, visits)
    model = DurabilityModel((), DeathRate(0, 0.0), transfer_weight=0.0)  # weak p0 only, uniform prior on pi
    fit = fit_durability(model, data)
    summary = fit.parameter_summary().set_index("parameter")
    ls, lk = np.meshgrid(fit.log_scale, fit.log_shape, indexing="ij")
    w = fit.theta_probability
    checks = {"log scale": (ls.ravel(), math.log(truth.loss_scale_years)),
              "log shape": (lk.ravel(), math.log(truth.loss_shape))}
    for name, (values, true) in checks.items():
        mean = w @ values
        sd = math.sqrt(w @ values**2 - mean**2)
        assert sd < 0.12, name  # informative: the test could fail
        assert abs(mean - true) < 4 * sd, name
    e = np.linspace(0, 1, fit.grid.n_ever_ii + 1)
    pi_mass = fit.cell_probability.sum(axis=0)
    pi_mean = pi_mass @ (0.5 * (e[1:] + e[:-1]))
    pi_sd = math.sqrt(pi_mass @ (0.5 * (e[1:] + e[:-1])) ** 2 - pi_mean**2)
    assert pi_sd < 0.03 and abs(pi_mean - truth.ever_ii) < 4 * pi_sd
    a, r = fit.death_posterior_shape, fit.death_posterior_rate
    assert abs(a / r - truth.death_rate_per_year) < 4 * math.sqrt(a) / r
    assert summary.loc["death_rate_per_year", "mean"] == pytest.approx(a / r)


def test_long_table_and_direct_interval_censoring_agree(seed):
    rng = np.random.default_rng(seed(7))
    events = simulate_event_times(ProcessParameters(1.5, 0.9, 0.75, 0.2), 300, rng)
    visits = [91, 182, 365, 730, 1095]
    withdrawal = rng.exponential(4.0, events.n)
    direct = observe(events, visits, withdrawal)
    parsed = observed_states(to_long_table(events, visits, withdrawal))
    assert list(parsed.participant) == list(direct.participant)
    for f in ("last_not_ii_day", "first_ii_day", "last_ii_day", "first_lost_day", "exit_day"):
        np.testing.assert_allclose(getattr(parsed, f), getattr(direct, f), equal_nan=True, err_msg=f)
    np.testing.assert_array_equal(parsed.died, direct.died)
    assert direct.died.any() and (~direct.died).any() and direct.onset_seen.any()


# --- exact probabilities against simulation of the process ----------------------------------------------------
ENDPOINTS = [
    PersistenceEndpoint(),  # the phase 3 end point as described: II one year after onset, onset by day 365
    PersistenceEndpoint(window_days=(120.0, 300.0), persistence_days=500.0),
    PersistenceEndpoint(anchor="infusion", window_days=(365.0, 730.0), persistence_days=0.0),
    PersistenceEndpoint(death_strategy="hypothetical"),
]


def _met(endpoint: PersistenceEndpoint, ev, death_matters: bool) -> np.ndarray:
    w0, w1 = (d / 365.0 for d in endpoint.window_days)
    death = ev.death_years if death_matters else np.full(ev.n, np.inf)
    if endpoint.anchor == "onset":
        end = ev.onset_years + endpoint.persistence_days / 365.0
        return (ev.onset_years >= w0) & (ev.onset_years <= w1) & (ev.loss_years > end) & (death > end)
    return (ev.onset_years <= w0) & (ev.loss_years > w1) & (death > w1)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=["phase3", "window", "infusion", "hypothetical"])
def test_persistence_probability_matches_process_simulation(seed, endpoint):
    rng = np.random.default_rng(seed(11))
    params = ProcessParameters(1.8, 1.3, 0.85, 0.15)
    n = 40_000
    ev = simulate_event_times(params, n, rng)
    hit = _met(endpoint, ev, endpoint.death_strategy == "composite")
    exact = persistence_probability(params, endpoint)
    assert abs(hit.mean() - exact) < 4 * math.sqrt(exact * (1 - exact) / n)


def test_share_insulin_independent_matches_process_simulation(seed):
    rng = np.random.default_rng(seed(12))
    params = ProcessParameters(2.2, 0.8, 0.9, 0.1)
    n = 40_000
    ev = simulate_event_times(params, n, rng)
    table = share_insulin_independent_at(params, [0.5, 1, 2, 5])
    for _, row in table.iterrows():
        y = row["year"]
        ii = (ev.onset_years <= y) & (ev.loss_years > y)
        for col, hit in (("composite", ii & (ev.death_years > y)), ("hypothetical", ii)):
            p = row[col]
            assert abs(hit.mean() - p) < 4 * math.sqrt(p * (1 - p) / n), (y, col)


def test_persistence_distribution_matches_simulation_over_the_posterior(seed, published_fit):
    """Mean and quantiles of p_persist (with an uncertain SHE-free factor) against parameter draws from the grid
    posterior, each draw's participant simulated through the multi-state process once."""
    she = BetaMixture.single(30, 4)
    dist = published_fit.persistence(PersistenceEndpoint(she_free=she))
    rng = np.random.default_rng(seed(13))
    n = 30_000
    d = published_fit.draw_parameters(n, rng)
    q_she = she.rvs(n, rng)
    onset = OnsetTime()
    onset_years = np.where(rng.random(n) < d["ever_ii"], onset.sample_years(n, rng), np.inf)
    loss_years = onset_years + np.exp(d["log_scale"]) * rng.exponential(1.0, n) ** np.exp(-d["log_shape"])
    death_years = rng.exponential(1.0 / d["death_rate_per_year"])
    end = onset_years + 1.0
    hits = (onset_years <= 1.0) & (loss_years > end) & (death_years > end) & (rng.random(n) < q_she)
    mean = dist.mean()
    assert abs(hits.mean() - mean) < 4 * math.sqrt(mean * (1 - mean) / n)
    probs = np.array([persistence_probability(ProcessParameters(math.exp(r.log_scale), math.exp(r.log_shape),
                                                                r.ever_ii, r.death_rate_per_year),
                                              PersistenceEndpoint()) for r in d.iloc[:4000].itertuples()])
    probs = probs * q_she[:4000]
    for q in (0.025, 0.5, 0.975):  # the exact cdf at the empirical quantile is q within its sampling error
        assert abs(float(dist.cdf(np.quantile(probs, q))) - q) < 4 * math.sqrt(q * (1 - q) / probs.size) + 2e-3


def test_share_distribution_is_consistent(seed, published_fit):
    dist = published_fit.share_distribution(3.0)
    q = np.array([0.025, 0.25, 0.5, 0.75, 0.975])
    np.testing.assert_allclose(dist.cdf(dist.ppf(q)), q, atol=1e-8)
    grid = dist.grid(101)
    assert np.all(np.diff(grid["cdf"]) >= 0) and grid["cdf"].iloc[-1] == pytest.approx(1.0)
    draws = dist.sample(20_000, np.random.default_rng(seed(14)))
    assert abs(draws.mean() - dist.mean()) < 4 * dist.sd() / math.sqrt(draws.size)
    assert abs(draws.std() - dist.sd()) < 0.05 * dist.sd()
    fitted = published_fit.persistence().fit_beta_mixture(n_draws=4000, seed=seed(15))
    pers = published_fit.persistence()
    assert abs(fitted.mixture.mean() - pers.mean()) < 4 * pers.sd() / math.sqrt(4000) + 1e-3
    assert fitted.ks_distance < 2.0 / math.sqrt(4000)  # the 99.9% point of the KS statistic for a perfect fit


def test_year1_share_reproduces_the_phase12_posterior_when_loss_is_negligible():
    slow = WeibullLossPrior(log_scale_mean=math.log(1e5), log_scale_sd=0.1, log_shape_mean=0.0, log_shape_sd=0.1)
    fit = fit_durability(DurabilityModel((), DeathRate(0, 1.0), year1=PHASE12_YEAR1, transfer_weight=0.0,
                                         loss_prior=slow))
    dist = fit.share_distribution(1.0, "hypothetical")
    for q in (0.025, 0.5, 0.975):
        assert float(dist.ppf(q)) == pytest.approx(stats.beta.ppf(q, 11, 3), abs=2e-3)
    assert dist.mean() == pytest.approx(11 / 14, abs=1e-3)


def test_figure_check_and_summaries_agree_with_the_retention_curve(published_fit):
    check = published_fit.figure_check()
    citr = check[check["source_id"] == "citr2008"]  # its origin is onset: fitted retention is S(t) itself
    curve = published_fit.retention(tuple(citr["years_after_origin"]))
    np.testing.assert_allclose(citr["fitted_mean"], curve["mean"], rtol=1e-12)
    np.testing.assert_allclose(citr["fitted_lower"], curve["lower"], rtol=1e-9)
    assert (check["transfer_weight"] == published_fit.model.transfer_weight).all()
    summary = published_fit.parameter_summary().set_index("parameter")
    assert summary.loc["death_rate_per_year", "mean"] == pytest.approx((0.5 + 2) / 21.0)
    assert (summary["lower"] < summary["median"]).all() and (summary["median"] < summary["upper"]).all()


def test_quantiles_stay_in_range_under_a_weak_prior():
    """With a0 = 0 the retention posterior spans [0, 1]: spreading cell masses must not push quantiles outside."""
    figures = donor_retention_figures(load_durability())
    fit = fit_durability(DurabilityModel(figures, PHASE12_DEATHS, year1=PHASE12_YEAR1, transfer_weight=0.0))
    curve = fit.retention((0.5, 2.0, 5.0, 10.0))
    assert ((curve["lower"] >= 0) & (curve["upper"] <= 1)).all()
    assert ((curve["lower"] <= curve["median"]) & (curve["median"] <= curve["upper"])).all()
    assert (curve["upper"] - curve["lower"]).iloc[1] > 0.5  # weak: the donor figures are switched off


def test_default_grid_is_accurate(published_fit):
    check = published_fit.check_grid(years=(2,), years_since_onset=(2.0, 5.0))
    assert check.max_abs_difference < 2e-3, check.table.sort_values("abs_difference").tail()


# --- follow-up length ---------------------------------------------------------------------------------------
def test_follow_up_precision_improves_with_follow_up(seed, published_fit):
    result = follow_up_precision(published_fit, [1, 3, 5], [40], seed=seed(21), n_simulations=20)
    hw = result.half_widths[:, 0, :]
    diffs = hw[:, :-1] - hw[:, 1:]
    se = diffs.std(axis=0, ddof=1) / math.sqrt(hw.shape[0])
    assert np.all(diffs.mean(axis=0) > -4 * se)  # never significantly worse with longer follow-up
    overall = hw[:, 0] - hw[:, -1]
    assert overall.mean() > 4 * overall.std(ddof=1) / math.sqrt(hw.shape[0])  # and clearly better overall
    table = result.table
    assert list(table["follow_up_years"]) == [1, 3, 5]
    # the smallest follow-up reaching +/- X: consistent with the table and monotone in X
    targets = np.sort(table["expected_half_width"].to_numpy())
    answers = []
    for x in np.r_[targets, targets[-1] + 0.01, targets[0] - 1e-3]:
        row = result.smallest_follow_up(float(x)).iloc[0]
        ok = table[table["expected_half_width"] <= x]
        assert (math.isnan(row["follow_up_years"]) if ok.empty else
                row["follow_up_years"] == ok["follow_up_years"].min())
        answers.append((x, row["follow_up_years"]))
    finite = sorted((x, t) for x, t in answers if not math.isnan(t))
    assert all(t1 >= t2 for (_, t1), (_, t2) in zip(finite, finite[1:]))


def test_follow_up_precision_is_reproducible(published_fit):
    kwargs = dict(seed=5, n_simulations=3, grid=GridSpec(n_coarse=11, n_fine=21, n_ever_ii=40))
    a = follow_up_precision(published_fit, [2], [20], **kwargs)
    b = follow_up_precision(published_fit, [2], [20], **kwargs)
    np.testing.assert_array_equal(a.half_widths, b.half_widths)


# --- inputs -------------------------------------------------------------------------------------------------
def test_donor_figures_keep_their_time_origins():
    table = load_durability()
    figures = {f.source_id: f for f in donor_retention_figures(table)}
    assert set(figures) == {"citr2008", "shapiro2006", "ryan2005"}
    assert figures["citr2008"].years_after_origin == (1.0, 2.0)
    assert figures["citr2008"].retained == (0.71, 0.52) and not figures["citr2008"].denominator_exact
    assert figures["shapiro2006"].retained == (5 / 16,) and figures["shapiro2006"].effective_denominator == 16
    assert figures["shapiro2006"].years_since_onset_at_origin == (0.5, 1.0)
    assert figures["ryan2005"].years_after_origin == pytest.approx((6.2 / 12, 15 / 12, 25.5 / 12))
    np.testing.assert_allclose(figures["ryan2005"].interval_counts(), [11, 11, 11, 11])
    with_tiwari = {f.source_id: f for f in donor_retention_figures(table, include_tiwari=True)}
    assert with_tiwari["tiwari_citr"].years_after_origin == (1.0, 2.0, 3.0)
    a0 = transfer_weight_for_ess(tuple(figures.values()), 30.0)
    assert a0 * sum(f.effective_denominator for f in figures.values()) == pytest.approx(30.0)


def test_bad_inputs_raise_model_input_errors():
    table = pd.DataFrame({"participant": ["a", "a", "a"], "day": [0, 365, 730], "state": ["not_ii", "lost_ii", "ii"]})
    with pytest.raises(ModelInputError, match="absorbing") as err:
        observed_states(table)
    assert err.value.line == 4 and err.value.column == "state"
    with pytest.raises(ModelInputError, match="unknown state"):
        observed_states(table.assign(state=["not_ii", "II", "ii"]))
    with pytest.raises(ModelInputError, match="day"):
        observed_states(table.assign(day=[0, -1, 2]))
    early = pd.DataFrame({"participant": ["a", "a"], "day": [0, 30], "state": ["not_ii", "ii"]})
    with pytest.raises(ModelInputError, match="onset-time distribution") as err:
        fit_durability(DurabilityModel((), DeathRate(0, 1.0), transfer_weight=0.0), early)
    assert err.value.parameter == "onset"
    with pytest.raises(ModelInputError) as err:
        DurabilityModel((), DeathRate(0, 1.0), transfer_weight=1.5)
    assert err.value.parameter == "transfer_weight"
    with pytest.raises(ModelInputError) as err:
        PersistenceEndpoint(anchor="infusion", window_days=(365, 365))
    assert err.value.parameter == "persistence_days"
    with pytest.raises(ModelInputError) as err:
        RetentionFigure("x", "ii", "onset", (1.0, 2.0), (0.5, 0.6), 10, True)
    assert err.value.parameter == "retained"
    with pytest.raises(ModelInputError) as err:
        fit_durability(DurabilityModel((), DeathRate(0, 0.0), transfer_weight=0.0))
    assert err.value.parameter == "death"
    assert isinstance(observed_states(table.iloc[:2]), ObservedStates)
