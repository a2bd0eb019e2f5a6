"""The C-peptide analysis (``run_cpeptide``, ``isletbayes cpeptide``): small real fits of the joint graft-function
model and of the means-only model, shared by the tests; the summary, ArviZ groups, the holdout prediction, save/load
round trip, CLI behaviour on good and bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from isletbayes.analyses import cpeptide as ca
from isletbayes.analyses.cli import main
from isletbayes.analyses.config import CpeptideConfig, DataConfig, SamplerConfig
from isletbayes.analyses.inputs import load_inputs
from isletbayes.data import InputError
from isletbayes.models import cpeptide_trajectory as cpm

# two chains instead of four (the slow test fits at the analysis defaults); enough draws for the diagnostics to
# pass and for the log-scale posterior sds of the contraction table to be estimated
SMALL = SamplerConfig(draws=1000, tune=400, chains=2, cores=2)


@pytest.fixture(scope="session")
def published_result(seed):
    """The default model (joint graft function) on every published aggregate, without the refits."""
    return ca.run_cpeptide(CpeptideConfig(sensitivity=False, holdout_check=False), sampler=SMALL, seed=seed(4),
                           inputs=load_inputs(DataConfig()))


@pytest.fixture(scope="session")
def means_result(seed):
    """The means-only model (``--aggregate-model cohort_means``)."""
    return ca.run_cpeptide(CpeptideConfig(model="cohort_means", sensitivity=False, psense=False, holdout_check=False),
                           sampler=SMALL, seed=seed(5), inputs=load_inputs(DataConfig()))


def test_published_means_are_read_from_the_data_layer():
    inputs = load_inputs(DataConfig())
    means = inputs.cohort_means()
    np.testing.assert_array_equal(means.days, [90, 180, 270, 365])
    np.testing.assert_array_equal(means.means, [424, 1036, 1104, 1274])
    assert means.n_participants == 12 and means.ii_count == 10 and means.lod == 13.0 and not means.has_spread
    assert inputs.describe_means()["source_ids"]


def test_joint_model_is_the_default_and_reports_every_parameter(published_result, seed):
    from isletbayes.models.graft_function import GRAFT_FUNCTION_PARAMETERS

    r = published_result
    assert r.mode == "graft_function" and CpeptideConfig().model == "graft_function"
    assert list(r.parameters.index) == [*cpm.POPULATION_PARAMETERS, "curve_misfit_sd", "rise_shape",
                                        *cpm.NEED_PARAMETERS, *ca.DERIVED]
    # the contraction table covers every free parameter, the outcome models' ones too, and the derived quantities
    assert set(r.contraction.index) == set(GRAFT_FUNCTION_PARAMETERS) | set(ca.DERIVED)
    assert set(r.contraction["verdict"]) <= {"informed by the data", "partly informed", "prior only"}
    # the measurement sd has an informative prior: it is not learned from the means (issue 10: no inflation)
    assert r.contraction.loc["measurement_sd", "ratio"] > 0.5
    assert "every published aggregate" in r.model_description and "hypothetical strategy" in r.model_description
    assert "free rise shape" in r.model_description
    assert list(r.ppc["observed"]) == [424.0, 1036.0, 1104.0, 1274.0]
    assert (r.ppc["predicted_q05"] < r.ppc["predicted_median"]).all()
    assert (r.ppc["predicted_median"] < r.ppc["predicted_q95"]).all()
    assert not any("sensitivity" in n for n in r.notes)  # no reference to refits that were not run
    assert r.holdout is None and r.sensitivity == []
    curve = r.link_curve  # P(N_i <= C): increasing in C for every draw, so for every quantile
    assert (np.diff(curve["median"].to_numpy()) >= 0).all() and (curve["q025"] <= curve["q975"]).all()
    assert r.provenance.settings["seed"] == seed(4)


def test_joint_fit_stores_arviz_groups(published_result):
    import arviz as az

    idata = published_result.idata
    assert {"posterior", "prior", "log_likelihood", "observed_data", "posterior_predictive"} <= set(idata.children)
    assert set(idata["posterior_predictive"].data_vars) == set(ca.PREDICTIVE_VARIABLES["graft_function"])
    assert "cohort_mean" in idata["log_likelihood"] and "insulin" in idata["log_likelihood"]
    # the contraction table's prior sd is the stored prior group's
    prior_sd = np.log(idata["prior"]["plateau_pmol_l"].values).std()
    assert published_result.contraction.loc["plateau_pmol_l", "prior_sd"] == pytest.approx(prior_sd)
    assert np.isfinite(az.loo(idata, var_name="insulin").elpd)


def test_fit_to_published_means_reports_everything(means_result, seed):
    r = means_result
    assert r.mode == "cohort_means"
    names = list(r.parameters.index)
    # the means model has no latent graft function: of the derived quantities only the population share remains
    assert names == list(cpm.POPULATION_PARAMETERS) + ["curve_misfit_sd", "rise_shape", "alpha", "beta",
                                                       "p_insulin_independent_population"]
    assert "free rise shape" in r.model_description and "published cohort means" in r.model_description
    assert any("carried by its prior" in n for n in r.notes)
    ratio = r.contraction["ratio"]
    # the means inform the plateau; they cannot inform the spread or the link's slope much
    assert ratio["plateau_pmol_l"] < 0.9 and ratio["sd_log_plateau"] > 0.5 and ratio["beta"] > 0.5
    assert r.psense is None
    traj = r.trajectory
    assert traj.index[0] == 0.0 and traj["population_mean_median"].iloc[0] == 0.0
    assert traj["population_mean_median"].iloc[-1] == pytest.approx(r.ppc["predicted_median"].iloc[-1], rel=0.25)
    check = r.model_check
    assert check.fit.startswith("free rise shape") and check.statement
    assert check.early_rise["observed"] == pytest.approx(424 / 1036)
    assert check.early_rise["exponential_bound"] == pytest.approx(0.5)
    assert 0 <= check.rise_shape["p_above_1"] <= 1
    assert check.measurement_sd["q05"] < check.measurement_sd["q95"]
    assert check.shape_comparison == []  # no sensitivity fits here
    curve = r.link_curve
    assert list(curve.columns) == ["q025", "median", "q975"]
    assert (curve["q025"] <= curve["median"]).all() and (curve["median"] <= curve["q975"]).all()


def test_holdout_prediction_is_the_law_of_a_published_mean(seed):
    """predict_cohort_mean draws the mean of n new participants times the curve misfit: at one parameter value it
    has the law of models.cpeptide_trajectory.simulate_cohort_means (compared within Monte Carlo error)."""
    import xarray as xr

    values = {"plateau_pmol_l": 1200.0, "t_half_days": 100.0, "sd_log_plateau": 0.4, "sd_log_rate": 0.3,
              "measurement_sd": 0.2, "rise_shape": 1.4, "curve_misfit_sd": 0.1}
    n_draws = 20000
    post = xr.Dataset({k: (("chain", "draw"), np.full((1, n_draws), v)) for k, v in values.items()})
    idata = xr.DataTree.from_dict({"posterior": post})
    ours = np.log(ca.predict_cohort_mean(idata, 365.0, 12, seed(7), n_draws=n_draws))
    params = cpm.PopulationParameters(1200.0, 100.0, 0.4, 0.3, 0.2, rise_shape=1.4)
    rng = np.random.default_rng(seed(8))
    ref = np.log([cpm.simulate_cohort_means(params, 12, [365.0], rng, link=False, curve_misfit_sd=0.1).means[0]
                  for _ in range(4000)])
    se = math.sqrt(ours.var() / ours.size + ref.var() / ref.size)
    assert abs(ours.mean() - ref.mean()) < 4 * se
    se_sd = math.sqrt(ours.var() / (2 * ours.size) + ref.var() / (2 * ref.size))
    assert abs(ours.std() - ref.std()) < 4 * se_sd


def _holdout_specs(which: str):
    """The default joint model's spec (``run_cpeptide``'s), or the means-only model's."""
    from isletbayes.models.graft_function import GraftFunctionPriors, graft_function_data_from_tables

    inputs, config = load_inputs(DataConfig()), CpeptideConfig()
    priors = cpm.TrajectoryPriors(**config.priors.model_dump())
    if which == "cohort_means":
        return ca.ModelSpec(data=inputs.cohort_means(), priors=priors, rise_shape=True)
    data = graft_function_data_from_tables(inputs.cpeptide_means, inputs.continuous, inputs.counts)
    return ca.ModelSpec(data=data, priors=priors, graft_priors=GraftFunctionPriors(**config.graft_priors.model_dump()),
                        rise_shape=config.rise_shape)


def test_the_last_means_conditional_law_is_the_models(published_result, seed):
    """log p(y_T | y_E) from the posterior's deterministics is the model's log-likelihood of the means, all four
    less the first three (the joint law of the means is one multivariate lognormal)."""
    from scipy import stats

    post = published_result.idata["posterior"]
    means = published_result.idata["observed_data"]["cohort_mean"].values
    pick = np.random.default_rng(seed(30)).choice(post.sizes["draw"], 5, replace=False)
    location = cpm.cohort_mean_log_location(
        np.log(post["expected_cohort_mean"].values[0, pick]),
        post["cohort_mean_log_sd"].values[0, pick] ** 2 - post["curve_misfit_sd"].values[0, pick, None] ** 2)
    cov = post["cohort_mean_log_cov"].values[0, pick]
    # the model's own log-likelihood of the four means, from the fit's log_likelihood group
    np.testing.assert_allclose(
        [stats.multivariate_normal.logpdf(np.log(means), m, c) - np.log(means).sum() for m, c in zip(location, cov)],
        published_result.idata["log_likelihood"]["cohort_mean"].values[0, pick], rtol=1e-10)
    first = [stats.multivariate_normal.logpdf(np.log(means[:3]), m[:3], c[:3, :3]) - np.log(means[:3]).sum()
             for m, c in zip(location, cov)]
    np.testing.assert_allclose(cpm.last_mean_conditional_logpdf(location, cov, means),
                               published_result.idata["log_likelihood"]["cohort_mean"].values[0, pick] - first,
                               rtol=1e-10)


@pytest.mark.parametrize("which", ["cohort_means", "graft_function"])
def test_holdout_by_importance_sampling_matches_the_exact_refit(which, seed):
    """The main fit reweighted by holdout_log_weights is the posterior without the last mean: its means of the
    curve's parameters match an exact refit of without_last_visit within Monte Carlo error (both estimates')."""
    import arviz_stats as azs
    import xarray as xr

    spec = _holdout_specs(which)
    # four chains for the joint model: the day-365 mean moves it more (the weights' Pareto k-hat was 0.40 to 0.67 at
    # six seeds of 4 x 1000 draws). For either model, whether the k-hat crosses psis_k_max (where the analysis
    # refits instead: test_holdout_falls_back_to_an_exact_refit) is chance, so it is not asserted: for the means-only
    # model at 2 x 1000 draws it was 0.35 to 0.53 at seed shifts 1000, 2000, 5000, 6000, 8000 and 9000, and 0.75 at
    # 4000; the comparison below held at all seven.
    sampler = SMALL if which == "cohort_means" else SMALL.model_copy(update={"chains": 4})
    settings = sampler.settings(seed(31), CpeptideConfig().target_accept)
    _, full, _ = ca.fit_checked(spec, settings)
    _, refit, _ = ca.fit_checked(ca.without_last_visit(spec), settings)
    log_w, k = ca.holdout_log_weights(spec, full)
    assert np.isfinite(k) and k < 1.0  # beyond 1 the weights' variance is infinite: no comparison could be made
    w = np.exp(log_w)
    assert w.sum() == pytest.approx(1.0)
    for name in ("plateau_pmol_l", "t_half_days", "rise_shape", "curve_misfit_sd"):
        x = np.log(full["posterior"][name].values)
        psis = float(np.sum(w * x))
        # self-normalised importance sampling: Var ~ sum w^2 (x - mean)^2, over the draws' relative efficiency
        r_eff = float(azs.ess(xr.DataArray(x, dims=("chain", "draw")), method="mean")) / x.size
        se_psis = math.sqrt(np.sum(w**2 * (x - psis) ** 2) / r_eff)
        y = xr.DataArray(np.log(refit["posterior"][name].values), dims=("chain", "draw"))
        se_refit = float(azs.mcse(y, method="mean"))
        assert abs(psis - float(y.mean())) < 4 * math.hypot(se_psis, se_refit), name


def test_listing_the_fit_checks_leaves_the_result_unchanged(means_result):
    """A refit with the main fit's numbers is listed once, under the main fit's ``also``, however often the checks
    are listed, and the stored diagnostics are not changed by listing them."""
    from isletbayes.analyses.cpeptide_result import SensitivityFit

    main = means_result.diagnostics
    twin = SensitivityFit(group="spread", label="a refit identical to the main fit", parameters=means_result.parameters,
                          diagnostics=main.model_copy(update={"fit": "spread check: identical"}))
    result = means_result.model_copy(update={"sensitivity": [twin]})
    before = list(main.also)
    first, second = result.fit_checks(), result.fit_checks()
    assert [c.also for c in first] == [c.also for c in second] == [[*before, "spread check: identical"]]
    assert main.also == before and twin.diagnostics.also == []


def test_holdout_falls_back_to_an_exact_refit(monkeypatch, means_result, seed):
    """Weights above the Pareto k-hat threshold, or no main fit: the holdout refits, and its diagnostics count."""
    import isletbayes.models.diagnostic_thresholds as thresholds

    spec = _holdout_specs("cohort_means")
    settings = SMALL.settings(seed(32), CpeptideConfig().target_accept)
    monkeypatch.setattr(thresholds, "psis_k_max", lambda n_draws: -np.inf)
    check = ca.holdout_check(spec, settings, seed(33), main_idata=means_result.idata)
    assert check.method == "refit" and check.diagnostics is not None and check.pareto_k is not None
    assert "exact refit" in check.statement and f"k-hat {check.pareto_k:.2f}" in check.statement
    assert check.diagnostics in means_result.model_copy(update={"holdout": check}).fit_checks()
    monkeypatch.undo()
    check = ca.holdout_check(spec, settings, seed(33), main_idata=means_result.idata)
    assert check.method == "psis" and check.diagnostics is None and "importance sampling" in check.statement


def test_without_last_visit_keeps_every_other_aggregate(published_result):
    from isletbayes.models.graft_function import graft_function_data_from_tables

    inputs = load_inputs(DataConfig())
    joint = ca.ModelSpec(data=graft_function_data_from_tables(inputs.cpeptide_means, inputs.continuous,
                                                              inputs.counts))
    held = ca.without_last_visit(joint)
    assert held.mode == "graft_function" and list(held.means.days) == [90.0, 180.0, 270.0]
    assert held.data.tir_day365 == joint.data.tir_day365 and held.data.insulin is joint.data.insulin
    means = ca.without_last_visit(ca.ModelSpec(data=inputs.cohort_means()))
    assert means.mode == "cohort_means" and list(means.data.means) == [424.0, 1036.0, 1104.0]


def test_kept_calibration_lists_every_model_run():
    import json as _json
    from pathlib import Path

    table = ca.kept_calibration()
    doc = _json.loads((Path(ca.__file__).parent / "results" / "sbc_cpeptide.json").read_text())
    assert list(table.index) == [res["problem"] for res in doc["results"]]
    assert ((table["min_rank_p"] >= 0) & (table["min_rank_p"] <= 1)).all()
    # the verdict is the Bonferroni rule the threshold column states
    n_parameters = {res["problem"]: len(res["tests"]) for res in doc["results"]}
    for model, row in table.iterrows():
        assert row["rank_p_threshold"] == pytest.approx(0.01 / n_parameters[model])
        assert row["uniform"] == (row["min_rank_p"] >= row["rank_p_threshold"])


def test_result_round_trips_through_its_folder(published_result, tmp_path):
    files = published_result.save(tmp_path)
    assert files == ["cpeptide_posterior.nc", "cpeptide_summary.json"]
    back = ca.CpeptideResult.load(tmp_path)
    assert back.summary() == published_result.summary()
    shape = published_result.idata["posterior"]["plateau_pmol_l"].shape
    assert back.idata["posterior"]["plateau_pmol_l"].shape == shape
    light = ca.CpeptideResult.load(tmp_path, draws=False)  # what the report reads
    assert light.summary() == published_result.summary() and light.idata is None
    with pytest.raises(InputError):
        ca.CpeptideResult.load(tmp_path / "nothing-here")


def test_cohort_means_use_a_published_spread(tmp_path):
    from isletbayes.data import load_cpeptide_means

    means = load_cpeptide_means()
    means = means[means["used_by_default"]].copy()
    means["spread_kind"] = ["sd", "se", "", ""]
    means["spread_value"] = [200.0, 100.0, float("nan"), float("nan")]
    inputs = load_inputs(DataConfig())
    inputs.cpeptide_means = means
    cm = inputs.cohort_means()
    np.testing.assert_allclose(cm.spread_sd[:2], [200.0, 100.0 * math.sqrt(12)])
    inputs.counts = inputs.counts.assign(n=inputs.counts["n"].where(inputs.counts["endpoint"] != "insulin_independence",
                                                                     14))
    with pytest.raises(InputError, match="insulin-independence count is of 14"):
        inputs.cohort_means()


def test_cli_json_on_participant_data(tmp_path, capsys, seed):
    df = cpm.simulate_participants(cpm.PopulationParameters(1200.0, 90.0, 0.3, 0.3, 0.2, alpha=1.5, beta=1.0), 8,
                                   [90.0, 180.0, 365.0], rng=np.random.default_rng(seed(1)))
    path = tmp_path / "participants.csv"
    df.assign(value=df["value"].where(~df["below_lod"]), unit=df["unit"].where(df["measure"] == "cpeptide", "")
              ).to_csv(path, index=False)
    code = main(["cpeptide", "--data", str(path), "--draws", "200", "--tune", "300", "--chains", "2",
                 "--no-sensitivity", "--json", "--out", str(tmp_path / "out"), "--seed", str(seed(3))])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mode"] == "participant" and out["inputs"]["n_participants"] == 8
    assert out["settings"]["sampler"]["seed"] == seed(3) and "failures" in out["diagnostics"]
    assert out["model_check"]["early_rise"]["statistic"] == "mean at day 90 / mean at day 180"
    assert (tmp_path / "out" / "cpeptide_posterior.nc").exists()


@pytest.mark.parametrize("args, message", [
    (["--spread-plateau-scale", "0"], "--spread-plateau-scale"),
    (["--sampler", "stan"], "--sampler"),
    (["--data", "/no/such/file.csv"], "not found"),
    (["--chains", "0"], "--chains"),
])
def test_cli_bad_options_exit_2(args, message, capsys):
    assert main(["cpeptide", *args]) == 2
    assert message in capsys.readouterr().err


def test_cli_unknown_cohort_exits_2(capsys):
    from isletbayes.data import PARTICIPANT_EXAMPLE

    assert main(["cpeptide", "--data", str(PARTICIPANT_EXAMPLE), "--cohort", "nope"]) == 2
    assert "--cohort" in capsys.readouterr().err


def _check_row(shape_free: bool, ratio: float, p_below: float, sd_median: float) -> dict:
    early = {"statistic": "mean at day 90 / mean at day 180", "observed": ratio, "predicted_median": 0.6,
             "predicted_q05": 0.4, "predicted_q95": 1.0, "p_rep_below_observed": p_below,
             "outside_90": p_below < 0.05 or p_below > 0.95, "exponential_bound": 0.5}
    row = {"label": "free rise shape h (Weibull-type)" if shape_free else "exponential rise (h = 1)",
           "rise_shape_free": shape_free, "measurement_sd": {"median": sd_median, "q05": 0.3, "q95": 0.9},
           "ppc_outside_90": [], "early_rise": early}
    if shape_free:
        row["rise_shape"] = {"median": 1.5, "q05": 0.8, "q95": 2.7, "p_above_1": 0.83}
    return row


def test_model_check_flags_an_exponential_rise_that_cannot_produce_the_lag():
    exponential, shaped = _check_row(False, 0.41, 0.08, 0.50), _check_row(True, 0.41, 0.18, 0.41)
    check = ca.model_check(exponential, [exponential, shaped], cpm.TrajectoryPriors(), "cohort_means")
    # every mean inside its interval, yet the concave curve cannot make the ratio: flagged, with the sd inflation
    assert check["misfit_flagged"] and "cannot produce the observed lag" in check["statement"]
    assert "0.50 (90% CrI 0.30 to 0.90" in check["statement"]
    assert "informative prior with median 0.18" in check["statement"]
    assert "Side by side" in check["statement"] and len(check["shape_comparison"]) == 2
    ok = ca.model_check(shaped, [], cpm.TrajectoryPriors(), "cohort_means")
    assert not ok["misfit_flagged"] and "P(h > 1, a lag before the rise) = 0.83" in ok["statement"]
    assert ca.model_check(_check_row(True, 0.41, 0.01, 0.4), [], cpm.TrajectoryPriors(), "participant")[
        "misfit_flagged"]


@pytest.mark.parametrize("model", ["graft_function", "cohort_means"])
def test_every_refit_structure_is_the_main_fits_or_compiled_in_the_background(monkeypatch, tmp_path, model):
    """The background compile (``compile_refits_in_background``) covers every sensitivity refit whose compiled model
    is not the main fit's: none of them waits for a compile of its own. ``compile_ahead`` sends the main model and
    the same refits."""
    from isletbayes.models import compiled_models as cm
    from isletbayes.models.graft_function import graft_function_data_from_tables

    inputs = load_inputs(DataConfig())
    config = CpeptideConfig(model=model)
    data = (graft_function_data_from_tables(inputs.cpeptide_means, inputs.continuous, inputs.counts)
            if model == "graft_function" else inputs.cohort_means())
    spec = ca.model_spec(config, data)
    started = []
    monkeypatch.setenv(cm.CACHE_ENV, str(tmp_path))  # an empty cache: every structure is still to compile
    monkeypatch.setattr(cm, "_start_background_compile", lambda job: started.append(job))
    main_model = spec.build()
    keys = ca.compile_refits_in_background(spec, main_model, SamplerConfig().settings(0, config.target_accept))
    main = cm.model_structure_key(main_model)
    refits = {cm.model_structure_key(s.build())
              for _, _, s in ca.sensitivity_specs(spec, has_link="alpha" in main_model.named_vars)}
    assert len(started) == 1 and len(keys) == len(set(keys)) and main not in keys
    assert set(keys) == refits - {main}
    # the joint model: the two means-only models (its refits share its compiled model); the means-only model: the
    # other rise shape and the two other spread priors (constants of its graph)
    assert len(keys) == (2 if model == "graft_function" else 3)
    # compile_ahead (the main job, before its exact sections): the main model first, then the same refits
    monkeypatch.setenv(cm.CACHE_ENV, str(tmp_path / "ahead"))
    ahead = ca.compile_ahead(config, sampler=SamplerConfig(), seed=0, inputs=inputs)
    assert len(started) == 2 and ahead == [main, *keys]
    without = ca.compile_ahead(config.model_copy(update={"sensitivity": False}), sampler=SamplerConfig(), seed=0,
                               inputs=inputs)
    assert without == []  # the main model is being compiled already (by this cache's background process)
    assert ca.compile_ahead(config, sampler=SamplerConfig(nuts_sampler="pymc"), seed=0, inputs=inputs) == []


@pytest.mark.slow
def test_full_analysis_with_sensitivity_fits(seed):
    """Every fit of the default analysis (main, glucocorticoid, spread, both rise shapes of the means-only model, the
    holdout refit where one runs) passes its diagnostics at the analysis defaults."""
    r = ca.run_cpeptide(CpeptideConfig(), sampler=SamplerConfig(), seed=seed(20250620),
                        inputs=load_inputs(DataConfig()))
    assert r.diagnostics_ok, [c.failures for c in r.fit_checks()]
    assert r.holdout is not None and r.holdout.held_out_day == 365.0 and r.holdout.pareto_k is not None
    assert (r.holdout.method == "refit") == (r.holdout.diagnostics is not None)
    groups = [row.group for row in r.sensitivity]
    assert groups.count("glucocorticoid") == 1 and groups.count("spread") == 3 and groups.count("shape") == 2
    assert "ratio_means_only" in r.contraction.columns
    comparison = r.model_check.shape_comparison
    assert [row["rise_shape_free"] for row in comparison] == [False, True]
    assert "Side by side" in r.model_check.statement


def test_posterior_draws_feed_the_simulator(published_result, seed):
    draws = published_result.parameter_draws(5, seed(0))
    post = published_result.idata["posterior"]
    assert len(draws) == 5 and all(d.has_need_threshold and d.rise_shape in post["rise_shape"].values for d in draws)
    assert all(d.plateau_pmol_l in post["plateau_pmol_l"].values for d in draws)
    df = cpm.simulate_participants(draws[0], 30, [30.0, 365.0], rng=np.random.default_rng(seed(1)))
    assert df["participant"].nunique() == 30 and set(df["measure"]) == {"cpeptide", "insulin_independent"}
