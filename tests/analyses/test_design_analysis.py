"""Phase 3 planning (run_design): the estimand, the calibrated rule, the design-prior panel and the p0 panel, all
exact and checked against the exact layer and scipy; the durability analysis behind the persistence estimand."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from isletbayes.analyses import design as ad
from isletbayes.analyses.config import DataConfig, DesignConfig, DurabilityConfig, MainJobConfig, config_from_dict
from isletbayes.analyses.durability import DurabilityResult, run_durability
from isletbayes.analyses.inputs import load_inputs
from isletbayes.data.errors import InputError
from isletbayes.models import operating_characteristics as exact
from isletbayes.models.mixtures import BetaMixture

# the day-365 estimand with nothing multiplying the phase 1/2 rate: its design prior is Beta(11, 3) exactly
DAY365 = {"preset": "insulin_independence_day365", "death": "hypothetical", "withdrawal": "hypothetical",
          "withdrawal_probability": 0.0}
EXACT_PANEL = ["phase12", "discounted", "robust"]  # no MAP fit: these tests stay exact and fast


@pytest.fixture(scope="module")
def inputs():
    config = MainJobConfig()
    return ad.DesignInputs(load_inputs(config.data), config.priors, config.sampler, config.durability)


def design(**kw) -> DesignConfig:
    doc = {"estimand": DAY365, "design_priors": EXACT_PANEL, "n_min": 20, "n_max": 100, **kw}
    return DesignConfig.model_validate(doc)


@pytest.fixture(scope="module")
def day365(inputs):
    return ad.run_design(design(p0=0.44), seed=1, design=inputs)


def test_design_priors_of_the_day365_estimand_are_the_phase12_beliefs(day365):
    phase12, discounted, robust = day365.design_priors
    assert phase12.mixture.allclose(BetaMixture.single(11, 3))
    d = 4.0 / 12  # power-prior weight giving ESS 6 = 2 (uniform) + 12 d
    assert discounted.mixture.allclose(BetaMixture.single(1 + 10 * d, 1 + 2 * d))
    assert discounted.ess_moment == pytest.approx(6.0)
    assert robust.mixture.n_components == 2 and robust.mixture.weights[1] == pytest.approx(0.5)
    assert day365.phase12["r"] == 10 and day365.phase12["n"] == 12


def test_the_calibrated_rule_keeps_type1_at_alpha_at_every_n_exactly(day365):
    rule = day365.rule
    assert rule.gamma_calibrated and rule.p0 == 0.44
    n = np.asarray(day365.table.index)
    # exact type I error of the boundaries, straight from scipy's binomial: never above alpha
    type1 = stats.binom.sf(day365.table["boundary"].to_numpy() - 1, n, 0.44)
    assert np.allclose(type1, day365.table["type1"], rtol=1e-12) and (type1 <= 0.025).all()
    # gamma = 0.975 is not calibrated: at n = 50 its type I error is 0.0325
    fixed = exact.single_arm_oc([50], rule="bayes", p0=0.44, gamma=0.975, analysis_prior=BetaMixture.single(1, 1))
    assert fixed.type1[0] == pytest.approx(0.0325, abs=5e-5) and fixed.type1[0] > 0.025
    assert rule.gamma > 0.975
    # assurance under the primary design prior is the exact layer's
    oc = exact.single_arm_oc(n, rule="bayes", p0=0.44, gamma=rule.gamma, analysis_prior=BetaMixture.single(1, 1),
                             design_prior=BetaMixture.single(11, 3))
    assert np.allclose(day365.table["assurance"], oc.assurance, rtol=1e-12)
    assert list(day365.assurance.columns) == EXACT_PANEL


def test_every_design_prior_gets_a_recommendation_with_its_reason(day365):
    assert [r.design_prior for r in day365.recommendations] == EXACT_PANEL
    for rec in day365.recommendations:
        if rec.n.first is not None:
            row = day365.table.loc[rec.n.first]
            assert row["type1"] <= 0.025 and row["power_p1"] >= 0.8
            assert day365.assurance.loc[rec.n.first, rec.design_prior] >= 0.8
            assert f"n = {rec.n.first}" in rec.reason
        else:
            assert "no n from 20 to 100" in rec.reason
        # assurance can never exceed P(rate > p0) under the design prior
        assert rec.max_assurance <= rec.assurance_limit + 1e-12


def test_p0_panel_and_conditional_assurance(day365):
    panel = day365.p0_panel
    assert list(panel.index) == [0.44, 0.2, 0.3, 0.4, 0.5]
    assert panel.loc[0.44, "benchmark"] and not panel.loc[0.5, "benchmark"]
    # a higher null rate cannot need fewer participants
    firsts = panel.sort_index()["first_n"].dropna().to_numpy()
    assert (np.diff(firsts) >= 0).all()
    # conditional assurance: power averaged over the design prior above p1, by quadrature
    p1 = day365.rule.p1
    n, c = 50, int(day365.table.loc[50, "boundary"])
    theta = np.linspace(p1, 1, 20001)
    dens = stats.beta.pdf(theta, 11, 3)
    power = stats.binom.sf(c - 1, n, theta)
    assert day365.table.loc[50, "conditional_assurance"] == pytest.approx(
        np.trapezoid(power * dens, theta) / np.trapezoid(dens, theta), abs=1e-6)


def test_glucocorticoid_hypothetical_sets_the_exposed_participants_aside(inputs):
    res = ad.run_design(design(p0=0.44, estimand={**DAY365, "glucocorticoid": "hypothetical"}), seed=1,
                        design=inputs)
    assert (res.phase12["r"], res.phase12["n"]) == (10, 10)
    assert res.design_priors[0].mixture.allclose(BetaMixture.single(11, 1))


def test_composite_strategies_lower_the_rate(inputs):
    composite = ad.run_design(design(p0=0.44, estimand={**DAY365, "death": "composite", "withdrawal": "composite",
                                                         "withdrawal_probability": 0.1}), seed=1, design=inputs)
    plain = composite.design_priors[0]
    # survival to day 365 (2 deaths in 14 participant-years) and 10% withdrawal, both counted as failures
    assert plain.mean < 11 / 14 * 0.9 < 11 / 14
    assert any("withdrawal" in n and "survival" in n for n in composite.notes)


def test_benchmark_rules(inputs):
    from isletbayes.analyses.config import PriorsConfig
    from isletbayes.analyses.donor_benchmark import benchmark

    data = inputs.inputs
    pooled = benchmark("insulin_independence", data, PriorsConfig(), inputs.sampler, 1)
    assert pooled.value == pytest.approx(36 / 66) and "36/66" in pooled.description
    named = benchmark("insulin_independence", data,
                      PriorsConfig(benchmark="study:Shapiro 2006 (international Edmonton-protocol trial)"),
                      inputs.sampler, 1)
    assert named.value == pytest.approx(16 / 36)
    with pytest.raises(InputError, match="benchmark_any_endpoint") as err:
        benchmark("insulin_independence", data, PriorsConfig(benchmark="study:CIT-07 (Hering 2016)"),
                  inputs.sampler, 1)
    assert err.value.key == "priors.benchmark"
    allowed = benchmark("insulin_independence", data,
                        PriorsConfig(benchmark="study:CIT-07 (Hering 2016)", benchmark_any_endpoint=True),
                        inputs.sampler, 1)
    assert allowed.value == pytest.approx(42 / 48) and "applied to insulin_independence by request" in \
        allowed.description
    # the design's p0 follows the same rule for its estimand's end point
    res = ad.run_design(design(), seed=1, design=inputs)
    assert res.rule.p0 == pytest.approx(36 / 66) and "donor-islet benchmark" in res.rule.p0_source


def test_the_design_prior_panel_reads_no_setting_its_cache_key_leaves_out(inputs):
    # the kept panel is found by a key of PANEL_SETTINGS only: computing it must read no other design setting
    read: set[str] = set()

    class Recording(DesignConfig):
        def __getattribute__(self, name):
            if name in DesignConfig.model_fields:
                read.add(name)
            return super().__getattribute__(name)

    # the default (persistence) estimand: carried by the durability model, p0 a derived benchmark
    config = Recording.model_validate({"design_priors": ["phase12", "robust"]})
    read.clear()  # what the configuration's own validators read
    ad.estimand_priors(config, inputs, 1, None)
    ad.estimand_benchmark(config, inputs, 1)
    assert {"estimand", "design_priors", "p0"} <= read <= ad.PANEL_SETTINGS


def test_a_design_reuses_its_kept_panel_when_only_the_grid_or_the_rule_changes(inputs, tmp_path):
    from isletbayes.analyses.cache import FitCache

    cache = FitCache(tmp_path / "cache")
    # death as a composite: the panel is a beta mixture fitted to seeded draws, not a closed form
    estimand = {**DAY365, "death": "composite"}
    first = ad.run_design(design(estimand=estimand), seed=1, design=inputs, panel_cache=cache)
    changed = design(estimand=estimand, n_min=30, n_max=60, alpha=0.05, power_target=0.7, interim=[0.5])
    kept = ad.run_design(changed, seed=1, design=inputs, panel_cache=cache)
    fresh = ad.run_design(changed, seed=1, design=inputs)
    assert [e.status for e in cache.events] == ["miss", "hit"]
    assert kept.summary() == fresh.summary()  # to the last digit
    assert [p.mixture.to_dict() for p in kept.design_priors] == [p.mixture.to_dict() for p in first.design_priors]
    # a panel setting, or the seed, is a different panel
    ad.run_design(design(estimand=estimand, discount_ess=8.0), seed=1, design=inputs, panel_cache=cache)
    ad.run_design(design(estimand=estimand), seed=2, design=inputs, panel_cache=cache)
    assert [e.status for e in cache.events] == ["miss", "hit", "miss", "miss"]


def test_interims_report_binding_and_nonbinding_type1(inputs):
    res = ad.run_design(design(p0=0.44, n_min=40, n_max=60, interim=[0.5], efficacy="posterior",
                               efficacy_threshold=0.999), seed=1, design=inputs)
    table = res.interim
    assert len(table) == 21
    # ignoring futility stops can only add successes: non-binding type I >= binding
    assert (table["type1_nonbinding"] >= table["type1_binding"] - 1e-15).all()
    assert (table["expected_n_p1"] <= table.index.to_numpy()).all()


def test_overlapping_cohort_counts_phase12_once(inputs):
    res = ad.run_design(design(p0=0.44, overlap_phase12=True), seed=1, design=inputs)
    over = res.overlap
    n, row = 50, res.overlap.loc[50]
    needed = int(res.table.loc[n, "boundary"]) - 10
    # the predictive of the 38 to come under the uniform prior updated once by 10/12: Beta(11, 3)
    assert row["probability_of_success"] == pytest.approx(stats.betabinom.sf(needed - 1, n - 12, 11, 3), rel=1e-10)
    assert over.index.min() >= 12


def test_estimand_presets_and_their_errors():
    config = MainJobConfig()
    resolved = config.design.estimand.resolved()
    assert resolved == {"endpoint": "insulin_independence", "anchor": "onset", "window_start_day": 0.0,
                        "window_end_day": 365.0, "persistence_days": 365.0, "she_free": True}
    with pytest.raises(InputError) as err:
        config_from_dict({"design": {"estimand": {"preset": "composite_day365", "persistence_days": 180}}})
    assert err.value.key == "design.estimand" and "adjust an insulin-independence estimand" in err.value.message
    with pytest.raises(InputError, match="needs p_mcid"):
        config_from_dict({"design": {"rule": "dual"}})


def test_result_round_trips(day365, tmp_path):
    files = day365.save(tmp_path)
    assert files == ["design.json", "design_table.csv"]
    back = ad.DesignResult.load(tmp_path)
    assert back.summary() == day365.summary()
    assert (tmp_path / "design_table.csv").read_text().splitlines()[0].startswith("n,boundary,type1")


@pytest.fixture(scope="module")
def durability():
    config = DurabilityConfig(follow_up_years=[1.0, 3.0], follow_up_simulations=10)
    return run_durability(config, seed=3, phase12=(10, 12), durability=load_inputs(DataConfig()).durability)


def test_durability_shares_and_retention(durability, tmp_path):
    shares = durability.shares
    for year in range(1, 6):
        composite = shares[(shares["year"] == year) & (shares["estimand"] == "composite")].iloc[0]
        hypothetical = shares[(shares["year"] == year) & (shares["estimand"] == "hypothetical")].iloc[0]
        # dying can only lower the share: alive and insulin independent <= insulin independent had no one died
        assert composite["median"] <= hypothetical["median"] + 1e-12
        assert 0 <= composite["lower"] <= composite["median"] <= composite["upper"] <= 1
    retention = durability.retention.set_index("years_since_onset")["median"]
    assert (np.diff(retention.to_numpy()) < 0).all()
    assert "BORROWED" in durability.label and len(durability.conventions) >= 5
    assert list(durability.follow_up.index) == [1.0, 3.0]
    durability.save(tmp_path)
    assert DurabilityResult.load(tmp_path).summary() == durability.summary()
