"""Design priors, run_design/DesignResult, the `isletbayes design` CLI and the durability scenarios."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from isletbayes.analyses import design as ad
from isletbayes.analyses.cli import main
from isletbayes.analyses.config import DataConfig, DesignConfig, DurabilityConfig
from isletbayes.analyses.durability import run_durability
from isletbayes.analyses.inputs import load_inputs
from isletbayes.data.errors import InputError
from isletbayes.models import operating_characteristics as exact
from isletbayes.models.mixtures import BetaMixture


def test_design_prior_is_the_phase12_posterior_optionally_discounted_and_robustified():
    assert ad.make_design_prior(10, 12).mixture.allclose(BetaMixture.single(11, 3))
    prior = ad.make_design_prior(10, 12, discount_ess=8.0)
    d = 6.0 / 12  # power-prior weight giving ESS 8 = 2 (uniform) + 12 d
    assert prior.mixture.allclose(BetaMixture.single(1 + d * 10, 1 + d * 2))
    assert prior.description["power_prior_weight"] == d
    assert prior.ess_moment == pytest.approx(8.0)  # the moment ESS of Beta(a, b) is a + b
    robust = ad.make_design_prior(10, 12, robust_weight=0.2).mixture
    assert robust.n_components == 2 and robust.weights[1] == pytest.approx(0.2)
    assert ad.make_design_prior(10, 12, "phase12-jeffreys").mixture.allclose(BetaMixture.single(10.5, 2.5))
    with pytest.raises(InputError, match="must lie in") as err:
        ad.make_design_prior(10, 12, discount_ess=20)
    assert err.value.key == "design.discount_ess"
    with pytest.raises(InputError) as err:
        ad.make_design_prior(10, 12, "beta:1")
    assert err.value.key == "design.design_prior"


def test_parse_prior_specs():
    assert ad.parse_prior("beta:2,8", "design.analysis_prior").allclose(BetaMixture.single(2, 8))
    assert ad.parse_prior("mix:0.7,11,3;0.3,1,1", "design.analysis_prior").n_components == 2
    with pytest.raises(InputError, match="unknown prior"):
        ad.parse_prior("cauchy", "design.analysis_prior")


def test_run_design_matches_exact_layer_and_round_trips(tmp_path, seed):
    res = ad.run_design(DesignConfig(n_min=20, n_max=60, interim=[0.5]), seed=1, phase12=(10, 12))
    oc = exact.single_arm_oc(np.arange(20, 61), rule="bayes", p0=0.44, gamma=0.975,
                             analysis_prior=BetaMixture.single(1, 1), design_prior=BetaMixture.single(11, 3))
    assert res.table["boundary"].tolist() == oc.boundary.tolist()
    assert np.allclose(res.table["assurance"], oc.assurance)
    first = res.recommendation.type1_power.first
    row = res.row(first)
    assert row["type1"] <= 0.025 and row["power_p1"] >= 0.8
    before = res.table.loc[:first - 1]
    assert not (before["meets_type1"] & before["meets_power"]).any()
    # assurance with interims: quadrature over the design prior agrees with Monte Carlo over it
    row = res.interim.iloc[10]
    n = int(res.interim.index[10])
    thetas = np.random.default_rng(seed(1)).beta(11, 3, size=4000)
    looks = [int(x) for x in row["looks"].split(",")]
    futility = [int(x) for x in row["futility_boundaries"].split(",")]
    mc = exact.interim_oc(looks, n, int(res.table.loc[n, "boundary"]), futility, thetas)["success"]
    assert row["assurance"] == pytest.approx(mc.mean(), abs=4 * mc.std() / np.sqrt(mc.size) + 1e-3)
    files = res.save(tmp_path)
    assert files == ["design.json", "design_table.csv"]
    back = ad.DesignResult.load(tmp_path)
    assert back.summary() == res.summary()
    assert int(back.table.index[0]) == 20 and "numpy" in back.provenance.package_versions
    assert (tmp_path / "design_table.csv").read_text().splitlines()[0].startswith("n,boundary,type1")


def test_binomial_rule_controls_type1_everywhere():
    res = ad.run_design(DesignConfig(rule="binomial", n_min=20, n_max=100), seed=1, phase12=(10, 12))
    assert (res.table["type1"] <= 0.025).all()
    for n, r in res.table.iloc[::20].iterrows():
        assert stats.binomtest(int(r["boundary"]), n, 0.44, alternative="greater").pvalue <= 0.025


def test_cli_prints_table_and_json(capsys):
    assert main(["design", "--n-min", "20", "--n-max", "30", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["design_prior"]["mixture"]["a"] == [11.0] and len(out["table"]["index"]) == 11
    assert main(["design", "--n-min", "20", "--n-max", "25", "--rule", "binomial"]) == 0
    text = capsys.readouterr().out
    assert "smallest n meeting" in text and "   25 " in text


@pytest.mark.parametrize("args, option", [
    (["--p0", "1.5"], "--p0"), (["--endpoint", "hba1c"], "--endpoint"), (["--rule", "frequentist"], "--rule"),
    (["--n-min", "50", "--n-max", "40"], "--n-max"), (["--interim", "0.5,x"], "--interim"),
    (["--endpoint", "cpeptide"], "--simulate"), (["--discount-ess", "30"], "--discount-ess"),
    (["--endpoint", "cpeptide", "--simulate", "2"], "--out"),
    (["--analysis-prior", "beta:0,1"], "--analysis-prior"),
    (["--endpoint", "cpeptide", "--simulate", "2", "--cpeptide-fraction", "1.5"], "--cpeptide-fraction"),
    (["--endpoint", "cpeptide", "--simulate", "2", "--cpeptide-threshold", "-3"], "--cpeptide-threshold"),
])
def test_cli_bad_options_exit_2_naming_the_option(capsys, args, option):
    assert main(["design", *args]) == 2
    err = capsys.readouterr().err
    assert option in err and "Traceback" not in err


def test_durability_scenarios_reproduce_their_anchor_figures():
    durability = load_inputs(DataConfig()).durability
    res = run_durability(DurabilityConfig(n_draws=20000), seed=3, phase12=(10, 12), durability=durability)
    assert "NOT FINDINGS" in res.label
    retained = {name: sc.projection["retained_median"].to_numpy() for name, sc in res.scenarios.items()}
    assert retained["citr2008_weibull"][1] == pytest.approx(0.71, abs=0.01)
    assert retained["citr2008_weibull"][2] == pytest.approx(0.52, abs=0.01)
    assert np.allclose(retained["tiwari_weibull"][1:4], [0.69, 0.54, 0.44], atol=0.03)  # Weibull through 3 points
    assert retained["shapiro2006_exponential"][1] == pytest.approx(stats.beta(6, 12).median(), abs=0.01)
    assert retained["ryan2005_exponential"][1] == pytest.approx(0.5 ** (12 / 15), abs=0.02)
    year1 = {float(sc.projection["median"].iloc[0]) for sc in res.scenarios.values()}
    assert max(year1) - min(year1) < 0.01  # every scenario starts from the same year-1 posterior
    assert res.scenarios["no_attrition"].projection["median"].iloc[4] == pytest.approx(stats.beta(11, 3).median(),
                                                                                       abs=0.01)
    for sc in res.scenarios.values():
        p = sc.projection
        assert ((p["lower"] <= p["median"]) & (p["median"] <= p["upper"])).all()
        assert (np.diff(p["median"]) <= 1e-12).all()
    again = run_durability(DurabilityConfig(n_draws=1000), seed=3, phase12=(10, 12), durability=durability)
    assert again.summary() == run_durability(DurabilityConfig(n_draws=1000), seed=3, phase12=(10, 12),
                                             durability=durability).summary()


def test_durability_cli(capsys):
    assert main(["durability", "--draws", "2000"]) == 0
    assert "SCENARIOS, NOT FINDINGS" in capsys.readouterr().out
    assert main(["durability", "--draws", "5"]) == 2
