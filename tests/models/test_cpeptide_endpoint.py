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
