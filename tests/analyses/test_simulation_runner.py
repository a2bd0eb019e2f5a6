"""Simulation runner: identical results whatever the workers (real Dask cluster), resume after interruption."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from dataclasses import replace

import numpy as np
import pytest

from isletbayes.analyses import simulation as sim
from isletbayes.data.errors import InputError
from isletbayes.models.cpeptide_trajectory import PopulationParameters

DRAWS = [PopulationParameters(1200.0, 60.0, 0.8, 0.3, 0.3, 1.5, 1.0),
         PopulationParameters(500.0, 90.0, 1.0, 0.3, 0.4, 0.0, 1.5),
         PopulationParameters(900.0, 45.0, 0.6, 0.2, 0.3, 1.0, 0.5)]
SIMULATOR = sim.TrialSimulator(20)
ANALYSIS = sim.InsulinIndependenceAnalysis(rule="bayes", p0=0.44, gamma=0.9)


def _run(outdir, **kw):
    kw.setdefault("n_sims", 16)
    return sim.run_simulations(SIMULATOR, ANALYSIS, DRAWS, seed=7, outdir=outdir, **kw)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("ref"), workers=1)


def test_seeds_depend_only_on_master_seed_and_index():
    a = sim.simulation_seeds(7, 3)
    b = sim.simulation_seeds(7, 3)
    assert a[1] == b[1] and np.array_equal(a[0].generate_state(4), b[0].generate_state(4))
    assert sim.simulation_seeds(7, 4)[1] != a[1]
    assert sim.pick_parameters(DRAWS, 7, 10) == sim.pick_parameters(DRAWS, 7, 20)[:10]


def test_reference_run_is_real(reference):
    assert reference.n_sims == 16
    assert 0 < reference.n_success < 16  # the rule does discriminate between simulated trials
    assert reference.mcse == pytest.approx(np.sqrt(reference.assurance * (1 - reference.assurance) / 16))
    assert {r["n"] for r in reference.records} == {20}


def test_identical_on_local_processes(reference, tmp_path):
    """Two local worker processes give the records of one (a real Dask cluster: tests/hardening/)."""
    on_procs = _run(tmp_path / "procs", workers=2)
    assert on_procs.records == reference.records


def test_every_seed_a_simulation_uses_is_derived_and_recorded(reference):
    picks = sim.pick_parameters(DRAWS, 7, 16)
    for record in reference.records:
        i = record["index"]
        data_seq, fit_seed = sim.simulation_seeds(7, i)
        assert record["fit_seed"] == fit_seed
        assert record["data_spawn_key"] == list(data_seq.spawn_key) == [i, 0]
        assert record["parameter_draw"] == picks[i]


@pytest.mark.parametrize("seed_value", [-1, 2**32, 1.5, True])
def test_the_master_seed_is_checked(tmp_path, seed_value):
    with pytest.raises(InputError, match="seed"):
        sim.run_simulations(SIMULATOR, ANALYSIS, DRAWS, n_sims=2, seed=seed_value, outdir=tmp_path)
    assert not tmp_path.joinpath(sim.MANIFEST).exists()


def _truncate(path):
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _flip_success(path):
    import json

    doc = json.loads(path.read_text())
    doc["records"][0]["success"] = not doc["records"][0]["success"]
    path.write_text(json.dumps(doc))


def _edit_a_number(path):
    text = path.read_text()
    assert '"r":' in text
    path.write_text(text.replace('"r":', '"r":1', 1))


def _empty(path):
    path.write_bytes(b"")


def _garbage(path):
    path.write_bytes(bytes(range(256)))


def _swap_with_the_next(path):
    other = path.with_name(f"sim_{int(path.stem.split('_')[1]) + 1:06d}.json")
    a, b = path.read_bytes(), other.read_bytes()
    path.write_bytes(b)
    other.write_bytes(a)


def _from_other_settings(path, tmp_path=None):
    foreign = path.parent.parent.parent / "foreign"
    sim.run_simulations(SIMULATOR, ANALYSIS, DRAWS, n_sims=6, seed=8, outdir=foreign)
    path.write_bytes((foreign / sim.SIM_DIR / path.name).read_bytes())


@pytest.mark.parametrize("damage, reason", [
    (_truncate, "not whole JSON"), (_flip_success, "checksum mismatch"), (_edit_a_number, "checksum mismatch"),
    (_empty, "not whole JSON"), (_garbage, "unreadable"), (_swap_with_the_next, "not the one its name says"),
    (_from_other_settings, "other settings"),
], ids=["truncated", "edited-success", "edited-number", "empty", "garbage", "swapped", "foreign"])
def test_a_damaged_record_is_detected_reported_and_recomputed(reference, tmp_path, damage, reason):
    folder = tmp_path / "sims"
    _run(folder)
    damage(folder / sim.SIM_DIR / "sim_000004.json")
    reports, redone = [], []
    again = _run(folder, on_damaged=reports.append, on_record=lambda r: redone.append(r["index"]))
    assert len(reports) >= 1 and reason in reports[0] and "sim_000004.json" in reports[0]
    assert 4 in redone and set(redone) <= {4, 5}
    assert again.records == reference.records  # recomputed, not used, not lost
    assert again.damaged and "sim_000004.json" in again.damaged[0]
    assert _run(folder, on_damaged=reports.append).damaged == []  # whole again


def test_a_damaged_record_is_a_warning_by_default(reference, tmp_path):
    _run(tmp_path)
    _truncate(tmp_path / sim.SIM_DIR / "sim_000002.json")
    with pytest.warns(sim.DamagedRecordWarning, match="sim_000002.json"):
        again = _run(tmp_path)
    assert again.records == reference.records


def test_a_damaged_manifest_is_rewritten_and_the_records_kept(reference, tmp_path):
    _run(tmp_path)
    (tmp_path / sim.MANIFEST).write_text('{"settings": ')
    reports, redone = [], []
    again = _run(tmp_path, on_damaged=reports.append, on_record=lambda r: redone.append(r["index"]))
    assert len(reports) == 1 and "damaged manifest" in reports[0]
    assert redone == [] and again.records == reference.records


def test_a_record_is_not_written_after_an_interrupt(tmp_path):
    """Under the command line's guard, a record finished after Ctrl-C (its fit possibly cut short) is not kept."""
    from isletbayes.analyses import interrupts

    seen = []

    def interrupt_after_three(record):
        seen.append(record["index"])
        if len(seen) == 3:
            guard.interrupted = True  # as the SIGINT handler does, when a sampler swallowed the interrupt

    with interrupts.InterruptGuard() as guard:
        with pytest.raises(KeyboardInterrupt):
            _run(tmp_path, on_record=interrupt_after_three)
    assert sim.finished_indices(tmp_path) == {0, 1, 2}


def test_resume_after_interrupt(reference, tmp_path):
    seen = []

    def stop_after_five(record):
        seen.append(record["index"])
        if len(seen) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, on_record=stop_after_five)
    assert sim.finished_indices(tmp_path) == set(range(5))
    assert not list((tmp_path / sim.SIM_DIR).glob(".*.tmp"))  # nothing half-written left behind
    redone = []
    resumed = _run(tmp_path, on_record=lambda r: redone.append(r["index"]))
    assert redone == list(range(5, 16))  # finished simulations are not run again
    assert resumed.records == reference.records


def test_resume_after_kill(tmp_path):
    """A separate process is SIGKILLed mid-run; the rerun completes and equals an uninterrupted run."""
    n = 300
    script = textwrap.dedent(f"""
        import sys
        from isletbayes.analyses import simulation as sim
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_simulation_runner import DRAWS, SIMULATOR, ANALYSIS
        sim.run_simulations(SIMULATOR, ANALYSIS, DRAWS, n_sims={n}, seed=11, outdir=sys.argv[1])
    """)
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "killed")])
    try:
        deadline = time.time() + 120
        while len(sim.finished_indices(tmp_path / "killed")) < 10 and time.time() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    partial = sim.finished_indices(tmp_path / "killed")
    assert 10 <= len(partial) < n
    resumed = sim.run_simulations(SIMULATOR, ANALYSIS, DRAWS, n_sims=n, seed=11, outdir=tmp_path / "killed")
    full = sim.run_simulations(SIMULATOR, ANALYSIS, DRAWS, n_sims=n, seed=11, outdir=tmp_path / "full")
    assert resumed.records == full.records


def test_other_settings_in_the_same_folder_are_refused(reference, tmp_path):
    _run(tmp_path, n_sims=2)
    with pytest.raises(InputError, match="--out"):
        sim.run_simulations(SIMULATOR, ANALYSIS, DRAWS, n_sims=2, seed=8, outdir=tmp_path)
    with pytest.raises(InputError, match="design.workers"):
        _run(tmp_path, n_sims=2, workers=0)


@pytest.fixture(scope="module")
def cpeptide_runs(tmp_path_factory):
    """Two identical 3-trial runs of the C-peptide end point by MCMC (one compile serves both) and the compiled
    model."""
    analysis = sim.CpeptideDay365Analysis(threshold_pmol_l=600.0, method="mcmc")
    sim._PREPARED.clear()
    root = tmp_path_factory.mktemp("cpeptide")
    a = sim.run_simulations(SIMULATOR, analysis, DRAWS, n_sims=3, seed=5, outdir=root / "a")
    n_compiled = len(sim._PREPARED)
    b = sim.run_simulations(SIMULATOR, analysis, DRAWS, n_sims=3, seed=5, outdir=root / "b")
    return analysis, a, b, n_compiled, next(iter(sim._PREPARED.values()))


def test_cpeptide_refit_compiles_once_and_is_reproducible(cpeptide_runs):
    analysis, a, b, n_compiled, _ = cpeptide_runs
    assert n_compiled == 1  # one compiled model served all three refits
    assert [r["posterior_prob"] for r in a.records] == [r["posterior_prob"] for r in b.records]
    assert all(r["diagnostics_ok"] for r in a.records), [r["diagnostics_failures"] for r in a.records]
    assert a.n_diagnostic_failures == 0 and all(r["diagnostics"]["n_draws"] == 1000 for r in a.records)
    assert all(0.0 <= r["posterior_prob_mcse"] < 0.05 for r in a.records)
    # the posterior median tracks the simulated truth's median participant at day 365 (plateau, nearly reached)
    for r in a.records:
        truth = r["params"]["plateau_pmol_l"]
        assert 0.3 * truth < r["median_posterior_mean"] < 2.5 * truth
        assert 0.0 <= r["fraction_above_posterior_mean"] <= 1.0


def _trial(seed=3):
    return SIMULATOR.simulate(DRAWS[1], np.random.default_rng(seed))


@pytest.mark.parametrize("draws, tune", [(1000, 500), (25, 25)])  # a converged fit and one that must fail
def test_array_diagnostics_equal_check_diagnostics_on_the_same_fit(cpeptide_runs, draws, tune):
    """The runner's numpy diagnostics are models.sampling.check_diagnostics, value for value, failure for failure."""
    import nutpie

    from isletbayes.models.cpeptide_endpoint import PARAMETERS, day365_arrays
    from isletbayes.models.sampling import SamplerSettings, check_diagnostics

    analysis, _, _, _, compiled = cpeptide_runs
    model = compiled.with_data(**day365_arrays(analysis.data(_trial())))
    settings = SamplerSettings(draws=draws, tune=tune, chains=2, cores=1, seed=11)
    fit = sim.sample_raw(model, settings, PARAMETERS)
    idata = nutpie.sample(model, draws=draws, tune=tune, chains=2, cores=1, seed=11, progress_bar=False,
                          save_warmup=False, target_accept=settings.target_accept)
    for name in PARAMETERS:  # the same draws, warm-up removed
        np.testing.assert_array_equal(fit.draws[name], idata["posterior"][name].values)
    fast, reference = sim.array_diagnostics(fit).as_dict(), check_diagnostics(idata, PARAMETERS).as_dict()
    assert fast.pop("failures") == reference.pop("failures")
    assert fast == pytest.approx(reference, rel=1e-12)
    assert reference["ok"] is (draws == 1000)


def test_failed_diagnostics_are_counted_in_the_summary(cpeptide_runs, tmp_path):
    from isletbayes.models.sampling import SamplerSettings

    analysis, _, _, _, _ = cpeptide_runs
    short = sim.CpeptideDay365Analysis(threshold_pmol_l=600.0, method="mcmc",
                                       sampler=SamplerSettings(draws=25, tune=25, chains=2, cores=1))
    summary = sim.run_simulations(SIMULATOR, short, DRAWS, n_sims=2, seed=5, outdir=tmp_path)
    assert len(sim._PREPARED) == 1  # same model, other sampler settings: the compiled model is reused
    assert summary.n_diagnostic_failures == 2
    assert all("ESS" in " ".join(r["diagnostics_failures"]) for r in summary.records)


def test_decision_settings_are_checked():
    from isletbayes.models.validation import ModelInputError

    with pytest.raises(ModelInputError, match="threshold_pmol_l"):
        sim.CpeptideDay365Analysis(threshold_pmol_l=0.0)
    with pytest.raises(ModelInputError, match="min_fraction_above"):
        sim.CpeptideDay365Analysis(min_fraction_above=1.0)
    with pytest.raises(ModelInputError, match="gamma"):
        sim.CpeptideDay365Analysis(gamma=1.0)
    with pytest.raises(ModelInputError, match="method"):
        sim.CpeptideDay365Analysis(method="laplace")



# ------------------------------------------------------------------------------------------------------------
# the quadrature route: batched, exact, the MCMC route's decisions
# ------------------------------------------------------------------------------------------------------------
SIMULATOR_50 = sim.TrialSimulator(50)


def _spread_of_draws(rng, n):
    """Population parameters spread so that posterior probabilities spread across gamma (a test scenario, as the
    benchmark's), some with late decline and a rise shape other than 1 (every branch of the simulator)."""
    return [PopulationParameters(plateau_pmol_l=float(np.exp(rng.normal(np.log(1000.0), 0.3))),
                                 t_half_days=float(np.exp(rng.normal(np.log(60.0), 0.3))),
                                 sd_log_plateau=float(rng.uniform(0.4, 2.2)), sd_log_rate=0.3,
                                 measurement_sd=float(rng.uniform(0.15, 0.35)), alpha=1.5, beta=1.0,
                                 decline_rate_per_year=float(rng.choice([0.0, 0.3])), decline_start_day=200.0,
                                 rise_shape=float(rng.choice([1.0, 1.7])))
            for _ in range(n)]


def test_the_batched_simulator_draws_the_per_trial_simulators_values(seed):
    draws = _spread_of_draws(np.random.default_rng(seed(50)), 6)
    seqs = [sim.simulation_seeds(seed(9), i)[0] for i in range(6)]
    measured = SIMULATOR_50.simulate_cpeptide(draws, [np.random.default_rng(q) for q in seqs])
    assert measured.shape == (6, 50, 4)
    for t, (params, q) in enumerate(zip(draws, seqs)):
        df = SIMULATOR_50.simulate(params, np.random.default_rng(q))
        rows = df[df["measure"] == "cpeptide"]
        values = rows["value"].to_numpy().reshape(50, 4)
        below = rows["below_lod"].to_numpy().reshape(50, 4)
        np.testing.assert_array_equal(measured[t] <= SIMULATOR_50.lod, below)
        np.testing.assert_array_equal(np.where(below, SIMULATOR_50.lod, measured[t]), values)  # the same draws


def test_a_batch_gives_each_trials_own_analysis(seed):
    """run_batch (vectorised) against the per-trial path (data frame, its statistics, the quadrature of one)."""
    rng = np.random.default_rng(seed(51))
    draws = _spread_of_draws(rng, 8)
    draws[0] = replace(draws[0], plateau_pmol_l=60.0, sd_log_plateau=1.5)  # many values below the LLOD
    analysis = sim.CpeptideDay365Analysis()
    batch = sim.run_batch(SIMULATOR_50, analysis, draws, seed(3), list(range(10, 18)))
    assert batch[0]["n_below_lod"] > 0
    for record, params in zip(batch, draws):
        one = sim.run_one(SIMULATOR_50, analysis, params, seed(3), record["index"])
        assert one.keys() == record.keys()
        for key in ("posterior_prob", "median_posterior_mean", "fraction_above_posterior_mean"):
            assert record[key] == pytest.approx(one[key], rel=1e-9, abs=1e-12)
        assert (record["success"], record["n_below_lod"], record["data_spawn_key"], record["fit_seed"]) == \
            (one["success"], one["n_below_lod"], one["data_spawn_key"], one["fit_seed"])
        assert record["quadrature_edge_mass"] < 1e-10


@pytest.fixture(scope="module")
def quadrature_reference(tmp_path_factory):
    draws = _spread_of_draws(np.random.default_rng(52), 40)
    summary = sim.run_simulations(SIMULATOR_50, sim.CpeptideDay365Analysis(), draws, n_sims=300, seed=13,
                                  outdir=tmp_path_factory.mktemp("quad"))
    return draws, summary


def _quad(outdir, draws, **kw):
    kw.setdefault("n_sims", 300)
    return sim.run_simulations(SIMULATOR_50, sim.CpeptideDay365Analysis(), draws, seed=13, outdir=outdir, **kw)


def test_quadrature_records_are_identical_whatever_the_workers_and_batches(quadrature_reference, tmp_path,
                                                                          monkeypatch):
    draws, reference = quadrature_reference
    assert 0 < reference.n_success < reference.n_sims and reference.n_diagnostic_failures == 0
    two = _quad(tmp_path / "two", draws, workers=2)
    monkeypatch.setattr(sim, "BATCH_TRIALS", 7)
    small = _quad(tmp_path / "small", draws)
    assert two.records == reference.records and small.records == reference.records
    assert len(list((tmp_path / "two" / sim.SIM_DIR).glob("sim_*.json"))) == 2  # one batch per worker
    assert len(list((tmp_path / "small" / sim.SIM_DIR).glob("sim_*.json"))) == 43  # ceil(300 / 7)


def test_quadrature_run_resumes_and_is_extended_batch_by_batch(quadrature_reference, tmp_path, monkeypatch):
    draws, reference = quadrature_reference
    monkeypatch.setattr(sim, "BATCH_TRIALS", 50)
    seen = []

    def stop_after_two_batches(record):
        seen.append(record["index"])
        if len(seen) == 100:
            raise KeyboardInterrupt

    _quad(tmp_path, draws, n_sims=120)  # a shorter run first: extended below to 300
    with pytest.raises(KeyboardInterrupt):
        _quad(tmp_path, draws, on_record=stop_after_two_batches)
    assert sim.finished_indices(tmp_path) == set(range(220))
    redone = []
    resumed = _quad(tmp_path, draws, on_record=lambda r: redone.append(r["index"]))
    assert redone == list(range(220, 300))
    assert resumed.records == reference.records


@pytest.mark.parametrize("damage, reason", [(_truncate, "not whole JSON"), (_flip_success, "checksum mismatch")],
                         ids=["truncated", "edited"])
def test_a_damaged_batch_file_is_recomputed_whole(quadrature_reference, tmp_path, monkeypatch, damage, reason):
    draws, reference = quadrature_reference
    monkeypatch.setattr(sim, "BATCH_TRIALS", 100)
    _quad(tmp_path, draws)
    damage(tmp_path / sim.SIM_DIR / "sim_000100.json")
    reports, redone = [], []
    again = _quad(tmp_path, draws, on_damaged=reports.append, on_record=lambda r: redone.append(r["index"]))
    assert len(reports) == 1 and reason in reports[0] and "sim_000100.json" in reports[0]
    assert redone == list(range(100, 200))
    assert again.records == reference.records


def test_overlapping_record_files_are_damaged(quadrature_reference, tmp_path, monkeypatch):
    draws, reference = quadrature_reference
    monkeypatch.setattr(sim, "BATCH_TRIALS", 100)
    _quad(tmp_path, draws)
    folder = tmp_path / sim.SIM_DIR
    # a whole file of this run whose name says 100 and whose simulations are 100..199, copied under another
    # name: it is then misnamed; a file holding 150..199 named 150 overlaps 100..199
    digest = sim._manifest_digest(tmp_path)
    batch = sim.read_record_file(folder / "sim_000100.json", digest)
    (folder / "sim_000150.json").write_text(sim.record_file_text(batch[50:], digest))
    scan = sim.scan_records(tmp_path)
    assert [(p.name, "sim_000100.json holds too" in why) for p, why in scan.damaged] == [("sim_000150.json", True)]
    assert [scan.records[i] for i in range(300)] == reference.records


def test_quadrature_and_mcmc_routes_decide_alike_within_monte_carlo_error(seed, tmp_path):
    """The same simulated trials analysed by both routes. Under the hypothesis that the MCMC route is unbiased, its
    probability p_i, a mean of 0/1 indicators with effective sample size ESS_i, has standard error
    se_i = sqrt(P_i (1 - P_i) / ESS_i) at the exact probability P_i (quadrature). ESS_i comes from the recorded
    MCSE, ESS_i = p_i (1 - p_i) / MCSE_i^2; the recorded MCSE itself is evaluated at p_i and is too small where
    the draws under-represent a rare side (P_i near 0 or 1), so it is not the yardstick here. Every p_i is within
    4 se_i of P_i (where all draws fall on one side, within 0.01); decisions differ only where P_i is within
    4 se_i of gamma; and no more of them than the MCMC error allows: the expected number of disagreements,
    sum_i Phi(-|P_i - gamma| / se_i), plus 4 of its Poisson sds and one."""
    from scipy.stats import norm

    draws = _spread_of_draws(np.random.default_rng(seed(53)), 40)
    n_sims = 36
    quad = sim.run_simulations(SIMULATOR_50, sim.CpeptideDay365Analysis(), draws, n_sims=n_sims, seed=seed(14),
                               outdir=tmp_path / "quad")
    mcmc = sim.run_simulations(SIMULATOR_50, sim.CpeptideDay365Analysis(method="mcmc"), draws, n_sims=n_sims,
                               seed=seed(14), outdir=tmp_path / "mcmc")
    assert mcmc.n_diagnostic_failures == 0
    exact = np.array([r["posterior_prob"] for r in quad.records])
    p = np.array([r["posterior_prob"] for r in mcmc.records])
    mcse = np.array([r["posterior_prob_mcse"] for r in mcmc.records])
    assert 0.0 < exact.min() < 0.5 < exact.max() < 1.0  # probabilities spread on both sides of 1/2
    informative = mcse > 0
    assert np.all(informative == ((p > 0) & (p < 1)))
    ess = p[informative] * (1 - p[informative]) / mcse[informative] ** 2
    se = np.sqrt(exact[informative] * (1 - exact[informative]) / ess)
    assert np.all(np.abs(p - exact)[informative] < 4.0 * se), np.column_stack([p, exact])[informative]
    assert np.all(np.abs(p - exact)[~informative] < 0.01)
    gamma = 0.975
    decisions_differ = (p >= gamma) != (exact >= gamma)
    assert not np.any(decisions_differ[~informative])
    differ = decisions_differ[informative]
    assert np.all(np.abs(exact[informative] - gamma)[differ] <= 4.0 * se[differ])
    expected = float(np.sum(norm.sf(np.abs(exact[informative] - gamma) / se)))
    assert differ.sum() <= expected + 4.0 * np.sqrt(expected) + 1.0
    assert [r["data_spawn_key"] for r in quad.records] == [r["data_spawn_key"] for r in mcmc.records]
