"""Binary re-analysis: closed forms for the reference priors, a small real MAP run, save/load, CLI errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from isletbayes.analyses.binary import BinaryResult, run_binary
from isletbayes.analyses.donor_benchmark import check_studies
from isletbayes.analyses.cli import main
from isletbayes.analyses.config import BinaryConfig, DataConfig, PriorsConfig, SamplerConfig
from isletbayes.analyses.inputs import load_inputs
from isletbayes.data import load_comparators
from isletbayes.data.errors import InputError
from isletbayes.models.prior_panel import SCEPTICAL_ESS

EXACT_PRIORS = ["uniform", "jeffreys", "sceptical", "enthusiastic"]


@pytest.fixture(scope="module")
def inputs():
    return load_inputs(DataConfig())


@pytest.fixture(scope="module")
def exact_result(inputs):
    return run_binary(BinaryConfig(predictive_m=20), priors=PriorsConfig(panel=EXACT_PRIORS),
                      sampler=SamplerConfig(), seed=1, inputs=inputs)


@pytest.fixture(scope="module")
def map_result(inputs, seed):
    return run_binary(BinaryConfig(endpoints=["insulin_independence"], predictive_m=20),
                      priors=PriorsConfig(panel=["uniform", "map", "robust_map"]), sampler=SamplerConfig(),
                      seed=seed(7), inputs=inputs, safety=False)


def test_uniform_and_jeffreys_posteriors_are_the_conjugate_betas(exact_result):
    ep = exact_result.endpoints["insulin_independence"]
    assert (ep.r, ep.n) == (10, 12)
    uni = ep.table.loc["uniform"]
    assert uni["mean"] == pytest.approx(11 / 14, rel=1e-12)
    assert uni["median"] == pytest.approx(stats.beta.ppf(0.5, 11, 3), rel=1e-10)
    assert [uni["eti_low"], uni["eti_high"]] == pytest.approx(list(stats.beta.ppf([0.025, 0.975], 11, 3)), rel=1e-10)
    assert uni["p_above_0.5"] == pytest.approx(stats.beta.sf(0.5, 11, 3), rel=1e-10)
    assert uni["ess_elir"] == 2.0 and uni["ess_moment"] == pytest.approx(2.0)
    assert ep.table.loc["jeffreys", "mean"] == pytest.approx(10.5 / 13, rel=1e-12)
    # the predictive for the next 20 is beta-binomial(20, 11, 3)
    assert np.allclose(ep.predictive_pmf["uniform"], stats.betabinom.pmf(np.arange(21), 20, 11, 3), rtol=1e-10)
    assert uni["predictive_mean"] == pytest.approx(20 * 11 / 14, rel=1e-12)
    assert ep.posteriors["uniform"].allclose(ep.priors["uniform"].posterior(10, 12))


def test_all_successes_give_an_edge_hdi(exact_result):
    uni = exact_result.endpoints["composite_primary"].table.loc["uniform"]  # Beta(13, 1): density 13 t^12
    assert uni["hdi_low"] == pytest.approx(0.05 ** (1 / 13), abs=1e-8) and uni["hdi_high"] == 1.0


def test_clopper_pearson_closed_form(exact_result):
    ep = exact_result.endpoints["insulin_independence"]
    lo, hi = stats.beta.ppf(0.025, 10, 3), stats.beta.ppf(0.975, 11, 2)
    assert ep.clopper_pearson95 == pytest.approx((lo, hi), rel=1e-8)
    cp12 = exact_result.endpoints["composite_primary"].clopper_pearson95
    assert cp12 == pytest.approx((0.025 ** (1 / 12), 1.0), rel=1e-8)


def test_sceptical_and_enthusiastic_follow_the_comparator_rate(exact_result):
    comps = load_comparators()
    rows = comps[(comps.endpoint == "insulin_independence") & comps.in_default_map]
    pooled = rows.r.sum() / rows.n.sum()
    ep = exact_result.endpoints["insulin_independence"]
    assert ep.comparators.pooled_rate == pytest.approx(pooled)
    assert ep.thresholds["comparator"] == pytest.approx(pooled)
    sc = ep.table.loc["sceptical"]
    a, b = pooled * SCEPTICAL_ESS, (1 - pooled) * SCEPTICAL_ESS
    assert sc["prior_mean"] == pytest.approx(pooled) and sc["ess_elir"] == pytest.approx(SCEPTICAL_ESS)
    assert sc["mean"] == pytest.approx((a + 10) / (SCEPTICAL_ESS + 12), rel=1e-12)
    # Box's p-value against the beta-binomial predictive
    pmf = stats.betabinom.pmf(np.arange(13), 12, a, b)
    assert sc["conflict_p_box"] == pytest.approx(pmf[pmf <= pmf[10] * (1 + 1e-9)].sum(), rel=1e-9)
    assert ep.table.loc["enthusiastic", "prior_mean"] == pytest.approx(pooled + (1 - pooled) / 2)


def test_endpoints_without_comparators_say_so(exact_result):
    ep = exact_result.endpoints["hba1c_below_7"]
    assert list(ep.table.index) == ["uniform", "jeffreys"]
    assert "comparator" not in ep.thresholds
    assert any("no comparator study" in note for note in ep.notes)


def test_safety_posteriors(exact_result):
    neut = exact_result.safety["serious_neutropenia"]
    assert (neut.r, neut.n) == (3, 14)
    uni = neut.table.loc["uniform"]
    assert uni["mean"] == pytest.approx(4 / 16) and uni["p_above_0.1"] == pytest.approx(stats.beta.sf(0.1, 4, 12))
    assert "3 of 14" in neut.plain_language and "25%" in neut.plain_language
    assert exact_result.safety["death"].table.loc["jeffreys", "mean"] == pytest.approx(2.5 / 15)


def test_result_round_trips_exactly_with_provenance(exact_result, tmp_path):
    files = exact_result.save(tmp_path)
    # the MAP prior is fitted wherever an end point has comparator studies (the headline comparison needs it),
    # whatever the panel: its draws are saved beside the summary
    with_map = sorted(f"map_{name}.nc" for name, ep in exact_result.endpoints.items() if ep.map is not None)
    assert with_map and sorted(files) == ["binary.json", *with_map]
    back = BinaryResult.load(tmp_path)
    assert back.summary() == exact_result.summary()
    assert json.loads(json.dumps(back.summary(), allow_nan=False))
    assert back.provenance.settings["seed"] == 1 and "pymc" in back.provenance.package_versions


def test_map_run(map_result, tmp_path):
    ep = map_result.endpoints["insulin_independence"]
    assert ep.map is not None
    assert ep.map.diagnostics.ok, ep.map.diagnostics.failures  # a real fit that passes the checks
    assert list(ep.comparators.studies["study"]) == list(ep.map.inputs["study_names"])
    rob = ep.priors["robust_map"]
    assert rob.weights[-1] == pytest.approx(0.2) and rob.a[-1] == 1.0 and rob.b[-1] == 1.0
    assert ep.posteriors["map"].allclose(ep.priors["map"].posterior(10, 12))
    # the ESS of both mixtures is reported, by every method
    assert list(ep.map.ess.index) == ["mixture", "robust_mixture"]
    assert list(ep.map.ess.columns) == ["elir", "moment", "morita"]
    files = map_result.save(tmp_path)
    assert files == ["binary.json", "map_insulin_independence.nc"]
    back = BinaryResult.load(tmp_path)
    assert back.summary() == map_result.summary()
    draws = back.map_draws["insulin_independence"]["posterior"]["theta_pred"].values
    assert np.array_equal(draws, map_result.map_draws["insulin_independence"]["posterior"]["theta_pred"].values)
    # what the report reads: the same numbers, no draws, the netCDF file left unopened
    light = BinaryResult.load(tmp_path, draws=False)
    assert light.summary() == map_result.summary() and light.map_draws == {}
    # the report's forest plot reads the robust mixture's 95% interval as kept with the fit, bit for bit
    kept = light.endpoints["insulin_independence"].map
    assert kept.robust_eti95 == tuple(float(v) for v in ep.map.robust_mixture.eti(0.95))
    assert kept.robust_mixture.cdf(kept.robust_eti95[0]) == pytest.approx(0.025, abs=1e-12)


def test_load_missing_result_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no binary result"):
        BinaryResult.load(tmp_path)


def test_comparator_names_with_commas_are_recognised():
    known = sorted(load_comparators()["study"].unique())
    got = check_studies(["CITR (Barton 2012), era 2003-2006,CIT-07 (Hering 2016)"], known)
    assert got == ["CITR (Barton 2012), era 2003-2006", "CIT-07 (Hering 2016)"]
    with pytest.raises(InputError, match="Nowhere 1999") as err:
        check_studies(["CIT-07 (Hering 2016), Nowhere 1999"], known)
    assert err.value.key == "priors.map.studies"


def test_user_comparators_drive_the_sceptical_prior(inputs):
    res = run_binary(BinaryConfig(endpoints=["insulin_independence"]),
                     priors=PriorsConfig(panel=["sceptical"], map={"studies": ["CITR (Barton 2012), era 2007-2010"]}),
                     sampler=SamplerConfig(), seed=1, inputs=inputs, safety=False)
    ep = res.endpoints["insulin_independence"]
    assert ep.comparators.pooled_rate == pytest.approx(92 / 208)
    assert ep.comparators.basis.startswith("studies chosen")


# --- CLI ---------------------------------------------------------------------------------------------------
def test_cli_json(capsys):
    code = main(["binary", "--prior", "uniform", "--endpoint", "insulin_independence", "--threshold", "0.6",
                 "--predict-m", "10", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    ep = out["endpoints"]["insulin_independence"]
    uni = dict(zip(ep["table"]["columns"], ep["table"]["data"][0]))
    assert uni["p_above_0.6"] == pytest.approx(stats.beta.sf(0.6, 11, 3), rel=1e-10)
    assert len(ep["predictive_pmf"]["index"]) == 11


def test_cli_table_and_out(capsys, tmp_path):
    code = main(["binary", "--prior", "uniform", "--prior", "jeffreys", "--out", str(tmp_path)])
    assert code == 0
    text = capsys.readouterr().out
    assert "insulin_independence: 10/12" in text and "Safety" in text
    assert BinaryResult.load(tmp_path).settings["priors"]["panel"] == ["uniform", "jeffreys"]


@pytest.mark.parametrize("args,needle", [
    (["--threshold", "1.5"], "--threshold"),
    (["--threshold", "0"], "--threshold"),
    (["--threshold", "half"], "--threshold"),
    (["--comparators", "Nowhere Study 2020"], "Nowhere Study 2020"),
    (["--endpoint", "cure"], "--endpoint"),
    (["--prior", "optimistic"], "--prior"),
    (["--tau-prior", "flat"], "--tau-prior"),
    (["--tau-scale", "-1"], "--tau-scale"),
    (["--robust-weight", "1.5"], "--robust-weight"),
    (["--predict-m", "0"], "--predict-m"),
])
def test_cli_bad_options_exit_2(capsys, args, needle):
    code = main(["binary", "--prior", "uniform", *args])
    assert code == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and err.count("\n") == 1


def test_tipping_point_verdict_names_each_outcome():
    import pandas as pd

    from isletbayes.analyses.binary import TippingPointSummary

    def summary(ess):
        return TippingPointSummary(benchmark=0.55, probability=0.95, ess=ess, ess_max=200.0, table=pd.DataFrame())

    assert summary(None).verdict == "holds at every borrowed ESS up to 200"
    assert summary(0.0).verdict == "fails even without borrowing"
    assert summary(7.6).verdict == "fails once a prior at the benchmark is worth about 8 participants"
