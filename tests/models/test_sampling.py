"""models/sampling.py: the thresholds (judge), check_diagnostics on ArviZ's own diagnose (tree depth included, for
nutpie's and PyMC's names of it), and ArviZ-native fits (prior, predictive and log-likelihood groups) that
az.loo, az.summary and arviz-plots accept, reproducible from the settings' seed."""

from __future__ import annotations

import arviz as az
import arviz_stats as azs
import numpy as np
import pandas as pd
import pymc as pm
import pytest
from scipy import special, stats

from isletbayes.models import sampling as smp
from isletbayes.models.validation import ModelInputError

KS_ALPHA = 1e-4


# ---------------------------------------------------------------------------------------------------------------
# thresholds
# ---------------------------------------------------------------------------------------------------------------
GOOD = dict(max_rhat=1.004, min_ess_bulk=900.0, min_ess_tail=800.0, divergences=0, min_ebfmi=0.8, n_chains=4,
            n_draws=1000)


@pytest.mark.parametrize("change, words", [
    ({"max_rhat": 1.011}, "R-hat 1.011 > 1.01"),
    ({"max_rhat": float("nan")}, "R-hat nan"),
    ({"min_ess_bulk": 399.0}, "bulk ESS 399 < 400"),
    ({"min_ess_tail": 350.0}, "tail ESS 350 < 400"),
    ({"n_chains": 2, "min_ess_tail": 199.0}, "tail ESS 199 < 200"),
    ({"divergences": 1}, "1 divergent transitions"),
    ({"min_ebfmi": 0.29}, "E-BFMI 0.29 < 0.3"),
    ({"n_draws": 1_000_000}, "ESS per draw 0.0002 < 0.001"),
])
def test_judge_names_each_failed_threshold(change, words):
    assert smp.judge(**GOOD).ok
    diag = smp.judge(**{**GOOD, **change})
    assert not diag.ok and len(diag.failures) == 1 and diag.failures[0].startswith(words), diag.failures


def test_judge_tree_depth_threshold():
    assert smp.judge(**GOOD).treedepth_saturated is None and smp.judge(**GOOD).ok  # not recorded: not checked
    assert smp.judge(**GOOD, treedepth_saturated=0).ok
    diag = smp.judge(**GOOD, treedepth_saturated=3)
    assert diag.failures == ["3 of 4000 transitions (0.1%) hit the maximum tree depth"]
    assert diag.as_dict()["treedepth_saturated"] == 3 and diag.as_dict()["ok"] is False


# ---------------------------------------------------------------------------------------------------------------
# check_diagnostics on real fits
# ---------------------------------------------------------------------------------------------------------------
def _hand_numbers(idata, var_names=None):
    """What check_diagnostics computed before it used arviz_stats.diagnose: the extremes, by hand."""
    post = idata["posterior"].to_dataset()
    if var_names is not None:
        post = post[list(var_names)]

    def extreme(ds, fn):
        return float(fn(np.concatenate([np.asarray(v.values, dtype=float).ravel() for v in ds.data_vars.values()])))

    return dict(max_rhat=extreme(azs.rhat(post), np.nanmax),
                min_ess_bulk=extreme(azs.ess(post, method="bulk"), np.nanmin),
                min_ess_tail=extreme(azs.ess(post, method="tail"), np.nanmin),
                divergences=int(idata["sample_stats"]["diverging"].values.sum()),
                min_ebfmi=float(np.min(azs.bfmi(idata)["energy"].values)))


def _correlated_gaussian(rho: float) -> pm.Model:
    with pm.Model() as model:
        pm.MvNormal("x", mu=np.zeros(2), cov=np.array([[1.0, rho], [rho, 1.0]]))
    return model


@pytest.mark.parametrize("nuts_sampler, flag", [("nutpie", "maxdepth_reached"), ("pymc", "reached_max_treedepth")])
def test_tree_depth_saturation_fails_the_fit_for_both_samplers(nuts_sampler, flag, seed):
    """A 0.999-correlated Gaussian wants long trajectories; with the tree depth capped at 2 most transitions hit it,
    and the fit fails on that count (whichever name the sampler gives the flag); the other numbers are the
    hand-computed ones (same estimators)."""
    model = _correlated_gaussian(0.999)
    capped = pm.sample(draws=300, tune=300, chains=2, cores=1, random_seed=seed(5), nuts_sampler=nuts_sampler,
                       nuts={"max_treedepth": 2}, progressbar=False, compute_convergence_checks=False, model=model)
    assert flag in capped["sample_stats"]
    saturated = int(capped["sample_stats"][flag].values.sum())
    diag = smp.check_diagnostics(capped)
    assert saturated > 0 and diag.treedepth_saturated == saturated
    assert any("maximum tree depth" in f for f in diag.failures) and not diag.ok
    hand = _hand_numbers(capped)
    assert {k: getattr(diag, k) for k in hand} == pytest.approx(hand, rel=1e-12)


def test_check_diagnostics_agrees_with_diagnose_and_the_hand_computed_numbers(seed):
    with pm.Model() as model:
        mu = pm.Normal("mu", 0, 5)
        sigma = pm.HalfNormal("sigma", 2)
        pm.Normal("y", mu, sigma, observed=np.random.default_rng(seed(9)).normal(1.0, 2.0, size=30))
    good = smp.fit(model, smp.SamplerSettings(seed=seed(10)))
    short = smp.fit(model, smp.SamplerSettings(draws=25, tune=25, chains=2, seed=seed(10)))
    for idata, expect_ok in ((good, True), (short, False)):
        diag = smp.check_diagnostics(idata)
        assert diag.ok is expect_ok, diag.failures
        assert diag.treedepth_saturated == int(idata["sample_stats"]["maxdepth_reached"].values.sum())
        hand = _hand_numbers(idata)
        assert {k: getattr(diag, k) for k in hand} == pytest.approx(hand, rel=1e-12)
        # ArviZ's own verdict (on the same thresholds, nutpie's tree-depth flag renamed) never passes a failing fit
        renamed = idata.copy()
        renamed["sample_stats"] = renamed["sample_stats"].to_dataset().rename(
            {"maxdepth_reached": "reached_max_treedepth"})
        flagged = azs.diagnose(renamed, ess_threshold=smp.ESS_MIN_PER_CHAIN * diag.n_chains, show_diagnostics=False)
        assert not (flagged and diag.ok)
        assert flagged is not expect_ok
    sub = smp.check_diagnostics(good, var_names=["mu"])
    assert sub.max_rhat == pytest.approx(float(azs.rhat(good["posterior"]["mu"].values)), rel=1e-12)


@pytest.mark.parametrize("nuts_sampler", ["nutpie", "pymc"])
def test_draws_do_not_depend_on_the_cores(nuts_sampler, seed):
    """sampler.cores defaults to the machine's cores (analyses/config.py): the same seed must give the same draws
    whether the chains run one after another or side by side."""
    with pm.Model() as model:
        mu = pm.Normal("mu", 0, 5)
        sigma = pm.HalfNormal("sigma", 2)
        pm.Normal("y", mu, sigma, observed=np.arange(10.0))
    fits = [smp.fit(model, smp.SamplerSettings(draws=200, tune=200, chains=4, cores=cores, seed=seed(3),
                                               nuts_sampler=nuts_sampler)) for cores in (1, 2)]
    for name in ("mu", "sigma"):
        np.testing.assert_array_equal(fits[0]["posterior"][name].values, fits[1]["posterior"][name].values)


# ---------------------------------------------------------------------------------------------------------------
# mass matrix
# ---------------------------------------------------------------------------------------------------------------
def test_mass_matrix_setting_is_checked_and_reaches_nutpie():
    assert smp.SamplerSettings().mass_matrix == "diag"
    assert smp.SamplerSettings(mass_matrix="low_rank").nutpie_options() == {"target_accept": 0.9,
                                                                          "adaptation": "low_rank"}
    with pytest.raises(ValueError, match="mass_matrix must be one of"):
        smp.SamplerSettings(mass_matrix="dense")


@pytest.mark.parametrize("nuts_sampler", ["nutpie", "pymc"])
def test_low_rank_mass_matrix_learns_correlated_directions(nuts_sampler, seed):
    """On a Gaussian whose four coordinates are 0.995-correlated, a diagonal metric leaves NUTS crawling along the
    long axis (about 60 effective draws of 1000 here); the low-rank metric (PyMC: dense) learns that axis (about
    1000). Asserted with a wide margin: at least 4 times the ESS, no divergent transition, and the right moments
    (Monte Carlo error of a mean of the low-rank fit's effective draws)."""
    rho = 0.995
    cov = np.full((4, 4), rho) + np.eye(4) * (1 - rho)
    with pm.Model() as model:
        pm.MvNormal("x", mu=np.zeros(4), cov=cov)
    ess = {}
    for mass_matrix in ("diag", "low_rank"):
        settings = smp.SamplerSettings(draws=500, tune=500, chains=2, seed=seed(21), nuts_sampler=nuts_sampler,
                                       mass_matrix=mass_matrix)
        idata = smp.fit(model, settings)
        ess[mass_matrix] = float(azs.ess(idata["posterior"].to_dataset())["x"].min())
    assert ess["low_rank"] > 4 * ess["diag"], ess
    # no divergence on a Gaussian; convergence is what the moments below check (R-hat is not asserted: with 2 x 500
    # draws it can cross 1.01 by chance)
    assert smp.check_diagnostics(idata).divergences == 0
    x = idata["posterior"]["x"].values.reshape(-1, 4)
    assert np.all(np.abs(x.mean(axis=0)) < 5 / np.sqrt(ess["low_rank"]))
    assert np.corrcoef(x.T)[np.triu_indices(4, 1)] == pytest.approx(rho, abs=0.01)


# ---------------------------------------------------------------------------------------------------------------
# ArviZ-native fits
# ---------------------------------------------------------------------------------------------------------------
N_OBS = 20
GROUPS = ("prior", "posterior_predictive", "log_likelihood", "observed_data")


def _normal_model(y) -> pm.Model:
    with pm.Model(coords={"obs": np.arange(len(y))}) as model:
        mu = pm.Normal("mu", 0.0, 10.0)
        sigma = pm.HalfNormal("sigma", 5.0)
        pm.Normal("y", mu, sigma, observed=y, dims="obs")
    return model


@pytest.fixture(scope="module")
def native(seed):
    y = np.random.default_rng(seed(31)).normal(2.0, 1.5, size=N_OBS)
    model = _normal_model(y)
    settings = smp.SamplerSettings(draws=500, tune=500, chains=2, seed=seed(32))
    return y, model, settings, smp.fit(model, settings, groups=GROUPS)


def test_groups_are_present_with_their_shapes(native):
    y, _, settings, idata = native
    assert {"posterior", "sample_stats", "prior", "prior_predictive", "posterior_predictive", "log_likelihood",
            "observed_data"} <= set(idata.children)
    assert idata["prior"]["mu"].shape == (1, settings.draws)
    assert idata["prior_predictive"]["y"].shape == (1, settings.draws, N_OBS)
    assert idata["posterior_predictive"]["y"].shape == (settings.chains, settings.draws, N_OBS)
    assert idata["log_likelihood"]["y"].dims == ("chain", "draw", "obs")
    np.testing.assert_array_equal(idata["observed_data"]["y"].values, y)
    # the diagnostics read the posterior and its sampler statistics, whatever other groups the fit carries (whether
    # a 2 x 500-draw fit passes R-hat <= 1.01 is chance: at seed shift 17000 it gave 1.014)
    diag = smp.check_diagnostics(idata)
    assert (diag.n_chains, diag.n_draws) == (settings.chains, settings.draws) and np.isfinite(diag.max_rhat)


def test_groups_hold_the_right_draws(native):
    """log_likelihood is the pointwise normal log density at each posterior draw; the posterior predictive, scaled by
    its own draw's (mu, sigma), is standard normal; the prior draws of mu follow N(0, 10^2)."""
    y, _, _, idata = native
    mu = idata["posterior"]["mu"].values[..., None]
    sigma = idata["posterior"]["sigma"].values[..., None]
    np.testing.assert_allclose(idata["log_likelihood"]["y"].values, stats.norm.logpdf(y, mu, sigma), rtol=1e-10)
    scaled = ((idata["posterior_predictive"]["y"].values - mu) / sigma).ravel()
    assert stats.kstest(scaled, "norm").pvalue > KS_ALPHA
    assert stats.kstest(idata["prior"]["mu"].values.ravel(), stats.norm(0.0, 10.0).cdf).pvalue > KS_ALPHA


def test_loo_summary_and_ppc_plot_run_on_the_fit(native):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import arviz_plots as azp
    import matplotlib.pyplot as plt

    _, _, _, idata = native
    loo = az.loo(idata)
    ll = idata["log_likelihood"]["y"].values.reshape(-1, N_OBS)
    lppd = float(np.sum(special.logsumexp(ll, axis=0) - np.log(ll.shape[0])))
    assert loo.elpd + loo.p == pytest.approx(lppd, rel=1e-9)  # loo works from our log_likelihood group
    assert np.asarray(loo.pareto_k).shape == (N_OBS,) and np.isfinite(loo.elpd) and np.isfinite(loo.se)
    summary = az.summary(idata)
    assert isinstance(summary, pd.DataFrame) and {"mu", "sigma"} <= set(summary.index)
    try:
        azp.plot_ppc_dist(idata, backend="matplotlib")
        azp.plot_prior_posterior(idata, var_names=["mu"], backend="matplotlib")
        assert plt.get_fignums()
    finally:
        plt.close("all")


def test_same_seed_same_draws_and_groups_leave_the_posterior_unchanged(native):
    y, model, settings, idata = native
    again = smp.fit(_normal_model(y), settings, groups=GROUPS)
    for group in ("posterior", "prior", "prior_predictive", "posterior_predictive", "log_likelihood"):
        for name, values in idata[group].data_vars.items():
            np.testing.assert_array_equal(again[group][name].values, values.values, err_msg=f"{group}/{name}")
    plain = smp.fit(model, settings)  # what existing callers get: the same NUTS draws, no added groups
    assert set(plain.children) == set(idata.children) - {"prior", "prior_predictive", "posterior_predictive",
                                                         "log_likelihood"}
    np.testing.assert_array_equal(plain["posterior"]["mu"].values, idata["posterior"]["mu"].values)
    other = smp.fit(model, smp.SamplerSettings(draws=500, tune=500, chains=2, seed=settings.seed + 1),
                    groups=("prior",))
    assert not np.array_equal(other["prior"]["mu"].values, idata["prior"]["mu"].values)
    assert not np.array_equal(other["posterior"]["mu"].values, idata["posterior"]["mu"].values)


def test_group_seeds_are_distinct_and_fixed():
    seeds = {g: smp.group_seed(20250620, g) for g in ("prior", "posterior_predictive")}
    assert len(set(seeds.values()) | {20250620}) == 3
    assert seeds == {g: smp.group_seed(20250620, g) for g in seeds}


def test_model_without_observations_gets_its_prior_only(seed):
    with pm.Model() as model:
        pm.Normal("x", 0.0, 1.0)
    idata = smp.fit(model, smp.SamplerSettings(draws=200, tune=200, chains=2, seed=seed(40)), groups=GROUPS)
    assert "prior" in idata.children
    assert not {"prior_predictive", "posterior_predictive", "log_likelihood"} & set(idata.children)


def test_bad_groups_and_missing_free_variables_are_refused(native):
    _, model, settings, _ = native
    with pytest.raises(ModelInputError) as err:
        smp.fit(model, settings, groups=("posterior_predictiv",))
    assert err.value.parameter == "groups"
    with pytest.raises(ModelInputError) as err:
        smp.fit(model, settings, var_names=["mu"], groups=("log_likelihood",))
    assert err.value.parameter == "var_names"
