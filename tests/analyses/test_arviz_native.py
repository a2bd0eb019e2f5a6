"""MCMC results are ArviZ-native: posterior, prior, prior_predictive, posterior_predictive, observed_data and
log_likelihood groups where the model has them, so that ArviZ's own functions run on them unchanged.

Small real fits of the project's MAP meta-analysis model (the random-effects logit model of
:mod:`isletbayes.models.map_prior`, on the donor-islet insulin-independence studies) through
:func:`isletbayes.models.sampling.fit` with ``groups=GROUPS``; then ``az.loo``, ``az.summary`` and
arviz-plots' posterior-predictive and prior-posterior plots run on the result, and each added group is checked
against what it must hold: the pointwise log-likelihood against scipy's binomial pmf at the posterior draws, the
prior draws against the prior distributions, the posterior-predictive draws against the posterior mean count
(within Monte Carlo error).
"""

from __future__ import annotations

import arviz as az
import arviz_plots as azp
import matplotlib
import numpy as np
import pytest
from scipy import special, stats

from isletbayes.models.map_prior import meta_analysis_model
from isletbayes.models.sampling import GROUPS, SamplerSettings, fit

matplotlib.use("Agg")

R = np.array([16, 20, 19])  # illustrative comparator counts of the size of the donor-islet studies
N = np.array([36, 30, 30])
STUDIES = ["study A", "study B", "study C"]


def _fit(seed_value: int):
    model = meta_analysis_model(R, N, study_names=STUDIES, tau_scale=1.0)
    settings = SamplerSettings(draws=500, tune=500, chains=2, cores=1, target_accept=0.95, seed=seed_value)
    return model, settings, fit(model, settings, groups=GROUPS)


@pytest.fixture(scope="module")
def fitted(seed):
    return _fit(seed(20250620))


def test_every_group_is_there(fitted):
    _, settings, idata = fitted
    assert {"posterior", "sample_stats", "observed_data", "prior", "prior_predictive", "posterior_predictive",
            "log_likelihood"} <= set(idata.children)
    np.testing.assert_array_equal(idata["observed_data"]["r_obs"].values, R)
    assert list(idata["log_likelihood"]["r_obs"].coords["study"].values) == STUDIES
    assert idata["posterior_predictive"]["r_obs"].sizes == {"chain": 2, "draw": 500, "study": 3}
    assert idata["prior"].sizes["draw"] == settings.draws


def test_log_likelihood_is_the_binomial_pmf_at_the_posterior_draws(fitted):
    _, _, idata = fitted
    theta = idata["posterior"]["theta"].transpose("chain", "draw", "study").values
    expected = stats.binom.logpmf(R, N, theta)
    np.testing.assert_allclose(idata["log_likelihood"]["r_obs"].transpose("chain", "draw", "study").values,
                               expected, rtol=1e-9, atol=1e-9)


def test_prior_and_posterior_predictive_draws_follow_their_distributions(fitted):
    _, _, idata = fitted
    prior = idata["prior"]
    # the MAP model's priors (module defaults): mu ~ Normal(0, 2), tau ~ HalfNormal(1)
    assert stats.kstest(prior["mu"].values.ravel(), stats.norm(0.0, 2.0).cdf).pvalue > 1e-4
    assert stats.kstest(prior["tau"].values.ravel(), stats.halfnorm(scale=1.0).cdf).pvalue > 1e-4
    # the posterior predictive count of each study has mean n * E[theta | data], within Monte Carlo error
    rep = idata["posterior_predictive"]["r_obs"].transpose("chain", "draw", "study").values.reshape(-1, 3)
    theta = idata["posterior"]["theta"].transpose("chain", "draw", "study").values.reshape(-1, 3)
    ess = az.ess(idata, group="posterior_predictive", var_names=["r_obs"])["r_obs"].values
    mcse = rep.std(axis=0, ddof=1) / np.sqrt(np.minimum(ess, rep.shape[0]))
    assert np.all(np.abs(rep.mean(axis=0) - N * theta.mean(axis=0)) < 4 * mcse + 1e-12)
    assert np.all((rep >= 0) & (rep <= N))


# three studies, one of them influential: PSIS may flag a Pareto k above 0.67 (ArviZ warns; that is its job)
@pytest.mark.filterwarnings("ignore:Estimated shape parameter of Pareto distribution:UserWarning")
def test_arviz_functions_run_on_the_result(fitted):
    _, _, idata = fitted
    loo = az.loo(idata, pointwise=True)
    assert np.isfinite(loo.elpd) and loo.n_data_points == 3
    # elpd_loo + p_loo is the log pointwise predictive density of the stored log-likelihood draws
    lppd = special.logsumexp(idata["log_likelihood"]["r_obs"].values.reshape(-1, 3), axis=0) - np.log(1000)
    assert loo.elpd + loo.p == pytest.approx(lppd.sum(), rel=1e-6)
    assert loo.pareto_k.sizes["study"] == 3
    summary = az.summary(idata, var_names=["mu", "tau", "theta_pred"])
    assert {"mean", "sd", "ess_bulk", "r_hat"} <= set(summary.columns) and len(summary) == 3

    import matplotlib.pyplot as plt

    # counts: the rootogram is arviz-plots' posterior predictive check for discrete data
    for plot in (azp.plot_ppc_rootogram(idata, backend="matplotlib"),
                 azp.plot_prior_posterior(idata, var_names=["mu", "tau"], backend="matplotlib")):
        assert plot is not None
    plt.close("all")


def test_the_report_figures_drawn_by_arviz_plots(fitted, tmp_path):
    """reports.figures' standard figures come from arviz-plots and the fit's groups; a missing group is named."""
    from isletbayes.reports import figures

    _, _, idata = fitted
    assert "log_prior" in idata.children
    drawn = {"prior_posterior": figures.prior_posterior(idata, ["mu", "tau"], labels={"tau": "between-study sd"}),
             "ppc": figures.posterior_predictive_check(idata, ["r_obs"], discrete=True),
             "psense": figures.power_scaling(idata, ["mu", "tau"])}
    titles = [ax.get_title() for ax in drawn["prior_posterior"].axes]
    assert "between-study sd" in titles and "mu" in titles
    assert len(drawn["psense"].axes) >= 4  # prior and likelihood scaling for each of the two variables
    for name, fig in drawn.items():
        uri = figures.to_data_uri(fig)
        assert uri.startswith("data:image/png;base64,") and len(uri) > 1000, name
    posterior_only = idata.copy()
    del posterior_only["prior"]
    with pytest.raises(ValueError, match="no prior group"):
        figures.prior_posterior(posterior_only, ["mu"])
