"""Design priors, run_design/DesignResult, the `isletbayes design` CLI and the durability scenarios."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from isletbayes.analyses import design as ad
from isletbayes.analyses.cli import main
from isletbayes.analyses.durability import run_durability
from isletbayes.data.errors import InputError
from isletbayes.models import operating_characteristics as exact
from isletbayes.models.mixtures import BetaMixture


def test_design_prior_is_the_phase12_posterior_optionally_discounted_and_robustified():
    prior, desc = ad.make_design_prior(10, 12)
    assert prior.allclose(BetaMixture.single(11, 3))
    prior, desc = ad.make_design_prior(10, 12, discount_ess=8.0)
    d = 6.0 / 12  # power-prior weight giving ESS 8 = 2 (uniform) + 12 d
    assert prior.allclose(BetaMixture.single(1 + d * 10, 1 + d * 2)) and desc["power_prior_weight"] == d
    assert prior.ess("moment") == pytest.approx(8.0)  # the moment ESS of Beta(a, b) is a + b
    prior, _ = ad.make_design_prior(10, 12, robust_weight=0.2)
    assert prior.n_components == 2 and prior.weights[1] == pytest.approx(0.2)
    assert ad.make_design_prior(10, 12, "phase12-jeffreys")[0].allclose(BetaMixture.single(10.5, 2.5))
    with pytest.raises(InputError, match="--discount-ess"):
        ad.make_design_prior(10, 12, discount_ess=20)
    with pytest.raises(InputError, match="--design-prior"):
        ad.make_design_prior(10, 12, "beta:1")


def test_parse_prior_specs():
    assert ad.parse_prior("beta:2,8", "--analysis-prior").allclose(BetaMixture.single(2, 8))
    mix = ad.parse_prior("mix:0.7,11,3;0.3,1,1", "--analysis-prior")
    assert mix.n_components == 2
    with pytest.raises(InputError, match="--analysis-prior"):
        ad.parse_prior("cauchy", "--analysis-prior")


def test_run_design_matches_exact_layer_and_round_trips(tmp_path):
    res = ad.run_design(phase12=(10, 12), n_min=20, n_max=60, interim=[0.5], out=tmp_path)
    oc = exact.single_arm_oc(np.arange(20, 61), rule="bayes", p0=0.44, gamma=0.975,
                             analysis_prior=BetaMixture.single(1, 1), design_prior=BetaMixture.single(11, 3))
    assert [r["boundary"] for r in res.table] == oc.boundary.tolist()
    assert np.allclose([r["assurance"] for r in res.table], oc.assurance)
    first = res.recommendation["type1_power"]["first"]
    row = next(r for r in res.table if r["n"] == first)
    assert row["type1"] <= 0.025 and row["power_p1"] >= 0.8
    assert all(not (r["meets_type1"] and r["meets_power"]) for r in res.table if r["n"] < first)
    # assurance with interims: quadrature over the design prior agrees with Monte Carlo over it
    row = res.interim[10]
    rng = np.random.default_rng(1)
    thetas = rng.beta(11, 3, size=4000)
    c = next(r["boundary"] for r in res.table if r["n"] == row["n"])
    mc = exact.interim_oc(row["looks"], row["n"], c, row["futility_boundaries"], thetas)["success"]
    assert row["assurance"] == pytest.approx(mc.mean(), abs=4 * mc.std() / np.sqrt(mc.size) + 1e-3)
    back = ad.DesignResult.load(tmp_path)
    assert back.to_dict() == json.loads((tmp_path / "design.json").read_text())
    assert back.table[0]["n"] == 20 and "package_versions" in back.provenance
    assert (tmp_path / "design_table.csv").read_text().splitlines()[0].startswith("n,boundary,type1")


def test_binomial_rule_controls_type1_everywhere():
    res = ad.run_design(phase12=(10, 12), rule="binomial", n_min=20, n_max=100)
    assert all(r["type1"] <= 0.025 for r in res.table)
    for r in res.table[::20]:
        assert stats.binomtest(r["boundary"], r["n"], 0.44, alternative="greater").pvalue <= 0.025


def test_cli_prints_table_and_json(capsys):
    assert main(["design", "--n-min", "20", "--n-max", "30", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["design_prior"]["prior"]["a"] == [11.0] and len(out["table"]) == 11
    assert main(["design", "--n-min", "20", "--n-max", "25", "--rule", "binomial"]) == 0
    text = capsys.readouterr().out
    assert "smallest n meeting" in text and "   25 " in text


@pytest.mark.parametrize("args, option", [
    (["--p0", "1.5"], "--p0"), (["--endpoint", "hba1c"], "--endpoint"), (["--rule", "frequentist"], "--rule"),
    (["--n-min", "50", "--n-max", "40"], "--n-max"), (["--interim", "0.5,x"], "--interim"),
    (["--endpoint", "cpeptide"], "--simulate"), (["--discount-ess", "30"], "--discount-ess"),
    (["--analysis-prior", "beta:0,1"], "--analysis-prior"),
    (["--endpoint", "cpeptide", "--simulate", "2", "--cpeptide-fraction", "1.5"], "--cpeptide-fraction"),
    (["--endpoint", "cpeptide", "--simulate", "2", "--cpeptide-threshold", "-3"], "--cpeptide-threshold"),
])
def test_cli_bad_options_exit_2_naming_the_option(capsys, args, option):
    assert main(["design", *args]) == 2
    err = capsys.readouterr().err
    assert option in err and "Traceback" not in err


def test_durability_scenarios_reproduce_their_anchor_figures():
    res = run_durability(r=10, n=12, n_draws=20000, seed=3)
    assert "NOT FINDINGS" in res.label
    citr = res.scenarios["citr2008_weibull"]
    assert citr["retained_median"][1] == pytest.approx(0.71, abs=0.01)
    assert citr["retained_median"][2] == pytest.approx(0.52, abs=0.01)
    tiwari = res.scenarios["tiwari_weibull"]["retained_median"]
    assert np.allclose(tiwari[1:4], [0.69, 0.54, 0.44], atol=0.03)  # Weibull fitted to three points
    assert res.scenarios["shapiro2006_exponential"]["retained_median"][1] == pytest.approx(
        stats.beta(6, 12).median(), abs=0.01)
    ryan = res.scenarios["ryan2005_exponential"]["retained_median"]
    assert ryan[1] == pytest.approx(0.5 ** (12 / 15), abs=0.02)
    year1 = {sc["median"][0] for sc in res.scenarios.values()}
    assert max(year1) - min(year1) < 0.01  # every scenario starts from the same year-1 posterior
    assert res.scenarios["no_attrition"]["median"][4] == pytest.approx(stats.beta(11, 3).median(), abs=0.01)
    for sc in res.scenarios.values():
        assert all(lo <= m <= hi for lo, m, hi in zip(sc["lower"], sc["median"], sc["upper"]))
        assert all(np.diff(sc["median"]) <= 1e-12)
    assert run_durability(r=10, n=12, n_draws=1000, seed=3).scenarios == run_durability(
        r=10, n=12, n_draws=1000, seed=3).scenarios


def test_durability_cli(capsys):
    assert main(["durability", "--draws", "2000"]) == 0
    assert "SCENARIOS, NOT FINDINGS" in capsys.readouterr().out
    assert main(["durability", "--draws", "5"]) == 2
