"""Phase 3 design speed, side by side in one run.

1. Exact assurance curve: boundaries, type I error, power and assurance for every n = 20..100 (Bayesian rule,
   mixture design prior). Target: well under a second.
2. Simulation-based assurance throughput (simulated trials per second) for the C-peptide end point
   (:mod:`isletbayes.models.cpeptide_endpoint` refitted per trial, 1000 draws x 2 chains after 500 tuning steps;
   every route simulates the trial, fits the same model, checks R-hat/ESS/divergences/E-BFMI and applies the same
   decision rule):
   * runner: :func:`isletbayes.analyses.simulation.run_simulations` (nutpie model compiled once per worker,
     ``with_data`` per trial, raw trace -> numpy diagnostics; one fsynced JSON file per trial), 1 and 2 local worker
     processes;
   * pm.Data + ``pm.set_data`` + ``pm.sample`` on one model (PyMC's own NUTS; the other compile-once route);
   * naive loop: rebuild the PyMC model and ``pm.sample`` it for every trial, ``check_diagnostics`` on the
     DataTree (PyMC NUTS, and nutpie via pm.sample, which recompiles per trial).
   Target: the runner 20x or more faster than the naive loop (the faster naive variant, PyMC NUTS).

``python -m benchmarks design`` (or ``make bench``); ``--quick`` for fewer trials.
"""

from __future__ import annotations

import logging
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import replace

import numpy as np


def _time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_exact() -> dict:
    from isletbayes.models import operating_characteristics as design
    from isletbayes.models.mixtures import BetaMixture

    analysis = BetaMixture.single(1, 1)
    design_prior = BetaMixture.single(11, 3).robustify(0.2)
    n_values = np.arange(20, 101)

    def run():
        return design.single_arm_oc(n_values, rule="bayes", p0=0.44, gamma=0.975, analysis_prior=analysis,
                                    design_prior=design_prior)

    run()
    t_bayes = _time(run, 20)
    t_binom = _time(lambda: design.single_arm_oc(n_values, rule="binomial", p0=0.44, alpha=0.025,
                                                 design_prior=design_prior), 20)
    t_two = _time(lambda: design.two_sample_decision(analysis, BetaMixture.single(4, 12), 60, 30, 0.0, 0.975), 5)
    return {"exact_curve_bayes_s": t_bayes, "exact_curve_binomial_s": t_binom, "two_sample_region_60x30_s": t_two}


def bench_simulation(n_runner: int, n_naive: int) -> dict:
    import pymc as pm

    from isletbayes.analyses import simulation as sim
    from isletbayes.models.cpeptide_trajectory import PopulationParameters
    from isletbayes.models.cpeptide_endpoint import PARAMETERS
    from isletbayes.models.sampling import check_diagnostics, fit

    logging.getLogger("pymc").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    draws = [PopulationParameters(1200.0, 60.0, 0.8, 0.3, 0.3, 1.5, 1.0),
             PopulationParameters(600.0, 90.0, 1.2, 0.3, 0.4, 0.5, 1.0)]
    simulator = sim.TrialSimulator(50)
    analysis = sim.CpeptideDay365Analysis()
    settings = analysis.sampler
    out = {}

    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as d:
            sim._PREPARED.clear()
            t0 = time.perf_counter()
            first = []
            summary = sim.run_simulations(simulator, analysis, draws, n_sims=n_runner, seed=1, outdir=d,
                                          workers=workers,
                                          on_record=lambda r: first.append(time.perf_counter()) if not first else None)
            total = time.perf_counter() - t0
        out[f"runner_{workers}w_total_s"] = total
        out[f"runner_{workers}w_trials_per_s"] = n_runner / total
        out[f"runner_{workers}w_diagnostic_failures"] = summary.n_diagnostic_failures
        if workers == 1:
            out["runner_1w_compile_s"] = first[0] - t0
            out["runner_1w_steady_trials_per_s"] = (n_runner - 1) / (total - (first[0] - t0))

    def naive(nuts_sampler: str) -> float:
        """What one would write without the runner: per trial simulate, rebuild, pm.sample, check, decide."""
        t0 = time.perf_counter()
        for i in range(n_naive):
            data_seq, fit_seed = sim.simulation_seeds(2, i)
            trial = simulator.simulate(draws[i % 2], np.random.default_rng(data_seq))
            idata = fit(analysis.model(trial), replace(settings, nuts_sampler=nuts_sampler, seed=fit_seed))
            post = idata["posterior"]
            analysis.decide(post["log_median_pmol_l"].values, post["sd_log"].values,
                            check_diagnostics(idata, var_names=list(PARAMETERS)))
        return n_naive / (time.perf_counter() - t0)

    out["naive_pymc_trials_per_s"] = naive("pymc")
    out["naive_nutpie_via_pm_sample_trials_per_s"] = naive("nutpie")

    trials = [simulator.simulate(draws[i % 2], np.random.default_rng(i)) for i in range(n_naive)]
    model = analysis.model(trials[0])
    t0 = time.perf_counter()
    for i, trial in enumerate(trials):
        from isletbayes.models.cpeptide_endpoint import day365_arrays

        with model:
            pm.set_data(day365_arrays(analysis.data(trial)))
        idata = fit(model, replace(settings, nuts_sampler="pymc", seed=i))
        post = idata["posterior"]
        analysis.decide(post["log_median_pmol_l"].values, post["sd_log"].values,
                        check_diagnostics(idata, var_names=list(PARAMETERS)))
    out["set_data_pymc_trials_per_s"] = n_naive / (time.perf_counter() - t0)
    return out


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    ex = bench_exact()
    print(f"exact OC + assurance, n = 20..100 (81 designs), Bayesian rule : {ex['exact_curve_bayes_s'] * 1e3:8.1f} ms")
    print(f"exact OC + assurance, n = 20..100, exact binomial rule        : {ex['exact_curve_binomial_s'] * 1e3:8.1f} ms")
    print(f"two-sample decision region, n_t = 60, n_c = 30               : {ex['two_sample_region_60x30_s'] * 1e3:8.1f} ms")
    n_runner, n_naive = (20, 3) if quick else (100, 6)
    s = bench_simulation(n_runner, n_naive)
    naive = s["naive_pymc_trials_per_s"]
    compile_s, steady = s["runner_1w_compile_s"], s["runner_1w_steady_trials_per_s"]
    print(f"\nsimulation-based assurance, C-peptide end point (day-365 censored lognormal, n = 50 per trial; "
          f"{n_runner} trials per runner run, {n_naive} per naive loop; every fit: 500 tune + 1000 draws x 2 chains, "
          "diagnostics checked, decision applied)")
    rows = [
        ("naive: rebuild model + pm.sample (PyMC NUTS) per trial", naive),
        ("naive: rebuild model + pm.sample (nutpie, recompiled)", s["naive_nutpie_via_pm_sample_trials_per_s"]),
        ("pm.Data + pm.set_data + pm.sample (PyMC NUTS)", s["set_data_pymc_trials_per_s"]),
        ("runner, 1 worker, incl. compile", s["runner_1w_trials_per_s"]),
        ("runner, 1 worker, after compile (steady state)", steady),
        ("runner, 2 workers, incl. worker start + compile in each", s["runner_2w_trials_per_s"]),
        ("runner, 1 worker, 1000 trials (computed: compile + 1000/steady)", 1000 / (compile_s + 1000 / steady)),
    ]
    for label, rate in rows:
        print(f"  {label:<66} {rate:8.2f} trials/s   {rate / naive:6.1f}x naive")
    print(f"  (runner compile once per worker: {compile_s:.1f} s; diagnostic failures in runner records: "
          f"{s['runner_1w_diagnostic_failures']} (1 worker), {s['runner_2w_diagnostic_failures']} (2 workers))")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
