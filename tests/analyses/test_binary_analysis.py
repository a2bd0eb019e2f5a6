"""Binary re-analysis: closed forms for the reference priors, a small real MAP run, save/load, CLI errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from isletbayes.analyses.binary import (
    SCEPTICAL_ESS,
    BinaryResult,
    parse_comparator_names,
    run_binary,
)
from isletbayes.analyses.cli import main
from isletbayes.data import load_comparators
from isletbayes.data.errors import InputError
from isletbayes.models.sampling import SamplerSettings

EXACT_PRIORS = ("uniform", "jeffreys", "sceptical", "enthusiastic")
SMALL = SamplerSettings(draws=1000, tune=1000, chains=4, target_accept=0.95, nuts_sampler="pymc", seed=7)


@pytest.fixture(scope="module")
def exact_result():
    return run_binary(priors=EXACT_PRIORS, predictive_m=20)


@pytest.fixture(scope="module")
def map_result():
    return run_binary(endpoints=("insulin_independence",), priors=("uniform", "map", "robust_map"),
                      settings=SMALL, predictive_m=20, include_safety=False)


def test_uniform_and_jeffreys_posteriors_are_the_conjugate_betas(exact_result):
    ep = exact_result.summary["endpoints"]["insulin_independence"]
    assert (ep["r"], ep["n"]) == (10, 12)
    uni = ep["priors"]["uniform"]
    assert uni["mean"] == pytest.approx(11 / 14, rel=1e-12)
    assert uni["median"] == pytest.approx(stats.beta.ppf(0.5, 11, 3), rel=1e-10)
    assert uni["eti95"] == pytest.approx(list(stats.beta.ppf([0.025, 0.975], 11, 3)), rel=1e-10)
    assert uni["p_above"]["0.5"] == pytest.approx(stats.beta.sf(0.5, 11, 3), rel=1e-10)
    assert uni["ess"]["elir"] == 2.0 and uni["ess"]["moment"] == pytest.approx(2.0)
    jef = ep["priors"]["jeffreys"]
    assert jef["mean"] == pytest.approx(10.5 / 13, rel=1e-12)
    # the predictive for the next 20 is beta-binomial(20, 11, 3)
    pmf = np.array(uni["predictive"]["pmf"])
    assert np.allclose(pmf, stats.betabinom.pmf(np.arange(21), 20, 11, 3), rtol=1e-10)
    assert uni["predictive"]["mean"] == pytest.approx(20 * 11 / 14, rel=1e-12)


def test_all_successes_give_an_edge_hdi(exact_result):
    ep = exact_result.summary["endpoints"]["composite_primary"]
    uni = ep["priors"]["uniform"]  # Beta(13, 1): density 13 t^12, HDI [0.05^(1/13), 1]
    assert uni["hdi95"][0] == pytest.approx(0.05 ** (1 / 13), abs=1e-8) and uni["hdi95"][1] == 1.0


def test_clopper_pearson_closed_form(exact_result):
    ep = exact_result.summary["endpoints"]["insulin_independence"]
    lo, hi = stats.beta.ppf(0.025, 10, 3), stats.beta.ppf(0.975, 11, 2)
    assert ep["clopper_pearson95"] == pytest.approx([lo, hi], rel=1e-8)
    cp12 = exact_result.summary["endpoints"]["composite_primary"]["clopper_pearson95"]
    assert cp12 == pytest.approx([0.025 ** (1 / 12), 1.0], rel=1e-8)


def test_sceptical_and_enthusiastic_follow_the_comparator_rate(exact_result):
    comps = load_comparators()
    rows = comps[(comps.endpoint == "insulin_independence") & comps.in_default_map]
    pooled = rows.r.sum() / rows.n.sum()
    ep = exact_result.summary["endpoints"]["insulin_independence"]
    assert ep["comparators"]["pooled_rate"] == pytest.approx(pooled)
    assert ep["thresholds"]["comparator"] == pytest.approx(pooled)
    sc = ep["priors"]["sceptical"]
    a, b = pooled * SCEPTICAL_ESS, (1 - pooled) * SCEPTICAL_ESS
    assert sc["prior_mean"] == pytest.approx(pooled) and sc["ess"]["elir"] == pytest.approx(SCEPTICAL_ESS)
    assert sc["mean"] == pytest.approx((a + 10) / (SCEPTICAL_ESS + 12), rel=1e-12)
    # Box's p-value against the beta-binomial predictive
    pmf = stats.betabinom.pmf(np.arange(13), 12, a, b)
    assert sc["conflict"]["p_box"] == pytest.approx(pmf[pmf <= pmf[10] * (1 + 1e-9)].sum(), rel=1e-9)
    en = ep["priors"]["enthusiastic"]
    assert en["prior_mean"] == pytest.approx(pooled + (1 - pooled) / 2)


def test_endpoints_without_comparators_say_so(exact_result):
    ep = exact_result.summary["endpoints"]["hba1c_below_7"]
    assert set(ep["priors"]) == {"uniform", "jeffreys"}
    assert "comparator" not in ep["thresholds"]
    assert any("no comparator study" in note for note in ep["notes"])


def test_safety_posteriors(exact_result):
    neut = exact_result.summary["safety"]["serious_neutropenia"]
    assert (neut["r"], neut["n"]) == (3, 14)
    uni = neut["priors"]["uniform"]
    assert uni["mean"] == pytest.approx(4 / 16) and uni["p_above"]["0.1"] == pytest.approx(stats.beta.sf(0.1, 4, 12))
    assert "3 of 14" in uni["plain_language"] and "25%" in uni["plain_language"]
    death = exact_result.summary["safety"]["death"]["priors"]["jeffreys"]
    assert death["mean"] == pytest.approx(2.5 / 15)


def test_result_is_json_with_provenance(exact_result):
    text = json.dumps(exact_result.to_dict(), allow_nan=False)
    back = json.loads(text)
    prov = back["provenance"]
    assert prov["settings"]["seed"] == exact_result.summary["provenance"]["settings"]["seed"]
    assert "pymc" in prov["package_versions"]
    assert "insulin_independence" in prov["settings"]["comparator_set"]


def test_map_run(map_result, tmp_path):
    ep = map_result.summary["endpoints"]["insulin_independence"]
    assert ep["map"] is not None
    diag = ep["map"]["diagnostics"]
    assert diag["ok"], diag["failures"]  # a real fit that passes the checks
    assert [s["study"] for s in ep["comparators"]["studies"]] == list(ep["map"]["inputs"]["study_names"])
    rob = ep["priors"]["robust_map"]["prior"]
    assert rob["weights"][-1] == pytest.approx(0.2) and rob["a"][-1] == 1.0 and rob["b"][-1] == 1.0
    # the exact update of the MAP mixture
    mix = map_result.prior("insulin_independence", "map")
    assert map_result.posterior("insulin_independence", "map").allclose(mix.posterior(10, 12))
    # save and load round trip
    map_result.save(tmp_path)
    assert (tmp_path / "binary.json").exists() and (tmp_path / "map_insulin_independence.nc").exists()
    back = BinaryResult.load(tmp_path)
    assert back.summary["endpoints"]["insulin_independence"]["priors"]["map"]["mean"] == pytest.approx(
        ep["priors"]["map"]["mean"], rel=1e-15)
    draws = back.map_draws["insulin_independence"]["posterior"]["theta_pred"].values
    orig = map_result.map_draws["insulin_independence"]["posterior"]["theta_pred"].values
    assert np.array_equal(draws, orig)


def test_load_missing_result_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no binary analysis result"):
        BinaryResult.load(tmp_path)


@pytest.mark.slow
def test_same_seed_same_numbers():
    tiny = SamplerSettings(draws=200, tune=200, chains=2, target_accept=0.95, nuts_sampler="pymc", seed=3)
    kwargs = dict(endpoints=("composite_primary",), priors=("map",), settings=tiny, include_safety=False,
                  predictive_m=5)
    one, two = run_binary(**kwargs), run_binary(**kwargs)
    assert one.summary["endpoints"] == two.summary["endpoints"]


def test_comparator_names_with_commas_are_recognised():
    known = sorted(load_comparators()["study"].unique())
    got = parse_comparator_names(["CITR (Barton 2012), era 2003-2006,CIT-07 (Hering 2016)"], known)
    assert got == ["CITR (Barton 2012), era 2003-2006", "CIT-07 (Hering 2016)"]
    with pytest.raises(InputError, match="Nowhere 1999"):
        parse_comparator_names(["CIT-07 (Hering 2016), Nowhere 1999"], known)


def test_user_comparators_drive_the_sceptical_prior():
    res = run_binary(endpoints=("insulin_independence",), priors=("sceptical",), include_safety=False,
                     comparators=["CITR (Barton 2012), era 2007-2010"])
    ep = res.summary["endpoints"]["insulin_independence"]
    assert ep["comparators"]["pooled_rate"] == pytest.approx(92 / 208)
    assert ep["comparators"]["basis"].startswith("studies selected")


# --- CLI ---------------------------------------------------------------------------------------------------
def test_cli_json(capsys):
    code = main(["binary", "--prior", "uniform", "--endpoint", "insulin_independence", "--threshold", "0.6",
                 "--predict-m", "10", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    uni = out["endpoints"]["insulin_independence"]["priors"]["uniform"]
    assert uni["p_above"]["0.6"] == pytest.approx(stats.beta.sf(0.6, 11, 3), rel=1e-10)
    assert uni["predictive"]["m"] == 10


def test_cli_table_and_out(capsys, tmp_path):
    code = main(["binary", "--prior", "uniform", "--prior", "jeffreys", "--out", str(tmp_path)])
    assert code == 0
    text = capsys.readouterr().out
    assert "insulin_independence: 10/12" in text and "Safety" in text
    assert BinaryResult.load(tmp_path).summary["settings"]["priors"] == ["uniform", "jeffreys"]


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
    assert needle in err and "Traceback" not in err
