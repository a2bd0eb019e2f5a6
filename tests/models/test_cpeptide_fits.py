"""C-peptide models under MCMC: parameter recovery, refits of one compiled model on new data (nutpie
``with_data``), and simulation-based calibration. Each model is compiled once per session and refitted. The
default suite runs a small SBC of the participant model at the settings of the kept SBC (most fits pass their
diagnostics there); the larger SBC runs and the cohort-means SBC are slow-marked, and the kept result comes from
``python -m isletbayes.analyses.calibration`` (analyses/results/sbc_cpeptide.json)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from isletbayes.analyses import calibration
from isletbayes.models import cpeptide_trajectory as cpm
from isletbayes.models.sampling import SamplerSettings, check_diagnostics

DAYS = [90.0, 180.0, 270.0, 365.0]
RECOVERY = SamplerSettings(draws=1000, tune=1000, chains=4, cores=2, target_accept=0.95, seed=11)
# the settings of the kept SBC run (calibration.main): 4 x 1000 draws, so that most fits pass check_diagnostics
SBC_SETTINGS = SamplerSettings(draws=1000, tune=1000, chains=4, cores=2, target_accept=0.95, seed=3)


@pytest.fixture(scope="session")
def participant_problem():
    return calibration.cpeptide_participant_problem()


@pytest.fixture(scope="session")
def participant_refit(participant_problem):
    return cpm.CompiledRefit(participant_problem.model)


def _interval(idata, name, lo=0.01, hi=0.99):
    return np.quantile(idata["posterior"][name].values.ravel(), [lo, hi])


def _recover(refit, truth, n, seed):
    df = cpm.simulate_participants(truth, n, DAYS, rng=np.random.default_rng(seed))
    idata = refit.sample(cpm.participant_arrays(cpm.participant_data_from_long(df)), RECOVERY)
    diag = check_diagnostics(idata, var_names=list(cpm.POPULATION_PARAMETERS) + ["alpha", "beta"])
    assert diag.ok, f"recovery fit FAILED diagnostics: {diag.failures}"
    return idata


def test_one_compiled_model_refits_two_data_sets_and_recovers_both(participant_refit):
    """12 participants: the same compiled model, refitted with ``with_data``, recovers two different truths."""
    high = cpm.PopulationParameters(1500.0, 70.0, 0.3, 0.3, 0.15, alpha=1.5, beta=1.0)
    low = cpm.PopulationParameters(400.0, 150.0, 0.3, 0.3, 0.15, alpha=-0.5, beta=1.0)
    fits = {"high": _recover(participant_refit, high, 12, 21), "low": _recover(participant_refit, low, 12, 22)}
    for label, truth in (("high", high), ("low", low)):
        for name in ("plateau_pmol_l", "t_half_days", "measurement_sd"):
            lo, hi = _interval(fits[label], name)
            assert lo < getattr(truth, name) < hi, (label, name, lo, hi)
    # and the two posteriors are told apart: the plateau intervals do not overlap
    assert _interval(fits["low"], "plateau_pmol_l")[1] < _interval(fits["high"], "plateau_pmol_l")[0]


def test_participant_model_sbc_small(participant_problem):
    n = 8
    res = calibration.run_sbc(participant_problem, n, SBC_SETTINGS, seed=5)
    assert res["uniform"], res["tests"]
    assert all(len(r) == n and 0 <= min(r) and max(r) <= calibration.N_RANK_DRAWS for r in res["ranks"].values())
    # most fits pass their diagnostics, so the ranks mean something (15 of 100 failed in the kept run)
    assert res["n_fits_failing_diagnostics"] <= 3, res["diagnostic_failures"]


def test_kept_sbc_result_is_meaningful():
    """The kept SBC result: uniform ranks for every parameter, from fits of which most passed diagnostics."""
    kept = json.loads((calibration.RESULTS_DIR / "sbc_cpeptide.json").read_text(encoding="utf-8"))
    assert {r["problem"] for r in kept["results"]} == {"cpeptide_participant", "cpeptide_means"}
    for res in kept["results"]:
        assert res["uniform"] and not res["failed_parameters"], res["tests"]
        assert res["n_fits_failing_diagnostics"] <= 0.25 * res["n_replicates"]
        assert all(len(r) == res["n_replicates"] for r in res["ranks"].values())
        assert res["sampler"]["chains"] * res["sampler"]["draws"] >= 10 * calibration.N_RANK_DRAWS
    assert "provenance" in kept


def test_uniformity_test_detects_non_uniform_ranks():
    rng = np.random.default_rng(0)
    assert calibration.uniformity_test(rng.integers(0, 100, 200))["p_value"] > 0.001
    piled = np.concatenate([np.zeros(100, int), rng.integers(0, 100, 100)])  # truth below every draw, half the time
    assert calibration.uniformity_test(piled)["p_value"] < 1e-6
    assert calibration.rank_of(5.0, np.arange(1000.0)) == 1


@pytest.mark.slow
def test_means_model_sbc_small():
    problem = calibration.cpeptide_means_problem()
    res = calibration.run_sbc(problem, 12, SamplerSettings(draws=1000, tune=1000, chains=4, cores=2,
                                                            target_accept=problem.target_accept, seed=3), seed=6)
    assert res["uniform"], res["tests"]
    assert res["n_fits_failing_diagnostics"] <= 4, res["diagnostic_failures"]


@pytest.mark.slow
def test_recovery_with_50_participants():
    truth = cpm.PopulationParameters(1200.0, 90.0, 0.35, 0.3, 0.2, alpha=1.5, beta=1.0)
    template = cpm.participant_data_from_long(cpm.simulate_participants(truth, 50, DAYS, rng=np.random.default_rng(0)))
    refit = cpm.CompiledRefit(cpm.build_participant_model(template))
    idata = _recover(refit, truth, 50, 31)
    for name in cpm.POPULATION_PARAMETERS:
        lo, hi = _interval(idata, name)
        assert lo < getattr(truth, name) < hi, (name, lo, hi)
    lo, hi = _interval(idata, "plateau_pmol_l", 0.05, 0.95)
    assert hi / lo < 1.5  # 50 participants pin the plateau down to within about +-20%


@pytest.mark.slow
@pytest.mark.parametrize("which", ["participant", "means"])
def test_sbc_large(which):
    problem = (calibration.cpeptide_participant_problem() if which == "participant"
               else calibration.cpeptide_means_problem())
    res = calibration.run_sbc(problem, 50, SamplerSettings(draws=1000, tune=1000, chains=4, cores=2,
                                                            target_accept=problem.target_accept, seed=7), seed=8)
    assert res["uniform"], res["tests"]
    assert res["n_fits_failing_diagnostics"] <= 0.25 * 50, res["diagnostic_failures"]
