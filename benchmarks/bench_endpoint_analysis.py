"""Day-365 C-peptide end point: the simulations' MCMC route against deterministic quadrature, side by side; and
compiled models from the compile cache, cold and warm (``python -m benchmarks endpoint_analysis``).

1. Trials: phase 3 trials of 50 participants simulated by :class:`isletbayes.analyses.simulation.TrialSimulator`
   from a spread of population parameters (a benchmark scenario, a convention: plateau median ~ LogNormal(log 1000,
   0.3), between-participant sd of log plateau ~ Uniform(0.4, 2.2), measurement sd ~ Uniform(0.15, 0.35), t_half
   ~ LogNormal(log 60, 0.3), rate sd 0.3), so that posterior probabilities spread across gamma = 0.975 and a
   share of the trials has participants below the LLOD.
2. The same trials analysed two ways, with the default decision rule (970 pmol/L, q0 = 1/2, gamma = 0.975):
   * MCMC: ``CpeptideDay365Analysis(method="mcmc")``'s route (model compiled once through the compile cache,
     ``with_data`` per trial, 1000 draws x 2 chains after 500 tuning steps, raw trace, diagnostics on arrays);
   * quadrature: :func:`isletbayes.models.cpeptide_endpoint.day365_posterior_quadrature`, one trial per call and
     all trials in one call (the runner's default route calls it once per batch of trials).
   Printed: time per trial and the ratio; decisions that differ, each with the MCMC probability's distance from
   gamma in Monte Carlo standard errors (MCSE of the indicator's mean, ``arviz_stats``); z-scores
   (MCMC - exact) / MCSE of the three decision quantities.
3. Assurance at scale, end to end on one core: :func:`isletbayes.analyses.simulation.run_simulations` with the
   default (quadrature) route, 10,000 trials from 4,000 parameter draws: picking the draws, simulating the
   participants (vectorised), sufficient statistics, quadrature, decisions and checksummed record files in
   batches; beside it the same runner by MCMC (per-trial cost measured on a few hundred trials, times 10,000).
4. Grid convergence of the quadrature on the comparison trials.
5. Compile cache (:mod:`isletbayes.models.compiled_models`): for the day-365 model, the MAP meta-analysis and the
   two C-peptide trajectory models, in fresh processes: ``nutpie.compile_pymc_model``, a cold cache (compile +
   write), a warm cache in a new process (read + relink), a second model of the same structure in that process
   (memory), and whether the warm model's draws equal the cold one's.

``main(argv)`` returns the figures (``python -m benchmarks`` appends them to ``benchmarks/results/``). Flags:
``--quick`` (100 and 2,000 trials); run directly (``python benchmarks/bench_endpoint_analysis.py``) also
``--no-compile`` (skip 5), ``--trials N``, ``--assurance-trials N``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

GAMMA = 0.975
N_PARTICIPANTS = 50


def _flag(argv: list[str], name: str, default):
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return type(default)(argv[i + 1])
        if a.startswith(name + "="):
            return type(default)(a.split("=", 1)[1])
    return default


def _machine() -> dict:
    import nutpie
    import pymc
    import pytensor
    import scipy

    return {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "load_1_5_15": list(os.getloadavg()), "numpy": np.__version__, "scipy": scipy.__version__,
            "pymc": pymc.__version__, "pytensor": pytensor.__version__, "nutpie": nutpie.__version__,
            "time": time.strftime("%Y-%m-%d %H:%M:%S")}


def _parameters(rng: np.random.Generator, n: int):
    from isletbayes.models.cpeptide_trajectory import PopulationParameters

    return [PopulationParameters(plateau_pmol_l=float(np.exp(rng.normal(math.log(1000.0), 0.3))),
                                 t_half_days=float(np.exp(rng.normal(math.log(60.0), 0.3))),
                                 sd_log_plateau=float(rng.uniform(0.4, 2.2)), sd_log_rate=0.3,
                                 measurement_sd=float(rng.uniform(0.15, 0.35)), alpha=1.5, beta=1.0)
            for _ in range(n)]


def _simulate(n: int, seed: int):
    """n trials' day-365 data through the runner's simulator and the analysis' own data step; seconds per trial."""
    from isletbayes.analyses import simulation as sim

    simulator, analysis = sim.TrialSimulator(N_PARTICIPANTS), sim.CpeptideDay365Analysis()
    params = _parameters(np.random.default_rng(seed), n)
    start = time.perf_counter()
    data = []
    for i in range(n):
        data_seq, _ = sim.simulation_seeds(seed, i)
        data.append(analysis.data(simulator.simulate(params[i], np.random.default_rng(data_seq))))
    return data, (time.perf_counter() - start) / n


def _mcmc(data, seed: int) -> dict:
    """CpeptideDay365Analysis's route on every trial, keeping the MCSE of each decision quantity."""
    from arviz_stats.base import array_stats

    from isletbayes.analyses import simulation as sim
    from isletbayes.models.cpeptide_endpoint import PARAMETERS, build_day365_model, day365_arrays, fraction_above

    from isletbayes.models.compiled_models import default_cache

    analysis = sim.CpeptideDay365Analysis(method="mcmc")
    t0 = time.perf_counter()
    prepared = _compile_cached(build_day365_model(data[0], analysis.priors()))  # what analysis.prepare compiles
    compile_s = time.perf_counter() - t0
    compile_source = default_cache().last.source if default_cache().last else "?"
    out = {k: np.empty(len(data)) for k in ("prob", "prob_mcse", "median", "median_mcse", "fraction",
                                             "fraction_mcse")}
    failures = 0
    t0 = time.perf_counter()
    for i, d in enumerate(data):
        _, fit_seed = sim.simulation_seeds(seed, i)
        fit = sim.sample_raw(prepared.with_data(**day365_arrays(d)), replace(analysis.sampler, seed=fit_seed),
                             PARAMETERS)
        record = analysis.decide(fit.draws["log_median_pmol_l"], fit.draws["sd_log"], sim.array_diagnostics(fit))
        failures += not record["diagnostics_ok"]
        frac = fraction_above(fit.draws["log_median_pmol_l"], fit.draws["sd_log"], analysis.threshold_pmol_l)
        for name, draws in (("prob", frac > analysis.min_fraction_above),
                            ("median", np.exp(fit.draws["log_median_pmol_l"])), ("fraction", frac)):
            draws = np.asarray(draws, dtype=float)
            out[name][i] = draws.mean()
            out[name + "_mcse"][i] = float(array_stats.mcse(draws, method="mean"))
        assert abs(out["prob"][i] - record["posterior_prob"]) < 1e-12
    out.update(per_trial_s=(time.perf_counter() - t0) / len(data), compile_s=compile_s, compile_source=compile_source,
               diagnostic_failures=failures)
    return out


def _compile_cached(model):
    from isletbayes.models.compiled_models import compile_nutpie

    return compile_nutpie(model)


def _quadrature(data) -> dict:
    from isletbayes.models.cpeptide_endpoint import Day365Priors, day365_posterior_quadrature, day365_statistics

    priors = Day365Priors()  # centred on the threshold, as CpeptideDay365Analysis.priors()
    day365_posterior_quadrature(data[:5], priors)  # warm the imports
    t0 = time.perf_counter()
    single = [day365_posterior_quadrature(d, priors) for d in data]
    one_at_a_time = (time.perf_counter() - t0) / len(data)
    t0 = time.perf_counter()
    stats = day365_statistics(data)
    t_stats = time.perf_counter() - t0
    t0 = time.perf_counter()
    batch = day365_posterior_quadrature(stats, priors)
    t_batch = time.perf_counter() - t0
    assert np.array_equal(np.array([s.prob_fraction_above[0] for s in single]), batch.prob_fraction_above)
    return {"result": batch, "one_at_a_time_s": one_at_a_time, "vectorised_s": (t_stats + t_batch) / len(data),
            "statistics_s": t_stats / len(data)}


def _compare(mcmc: dict, quad) -> dict:
    exact = {"prob": quad.prob_fraction_above, "median": quad.median_posterior_mean,
             "fraction": quad.fraction_above_posterior_mean}
    out = {}
    for name, value in exact.items():
        mcse = mcmc[name + "_mcse"]
        informative = mcse > 0  # an MCMC probability of exactly 0 or 1 has MCSE 0
        z = (mcmc[name][informative] - value[informative]) / mcse[informative]
        out[name] = {"n": int(informative.sum()), "max_abs_z": float(np.max(np.abs(z))) if z.size else 0.0,
                     "share_abs_z_le_3": float(np.mean(np.abs(z) <= 3.0)) if z.size else 1.0,
                     "zero_mcse_max_abs_diff": float(np.max(np.abs(mcmc[name][~informative] - value[~informative]),
                                                            initial=0.0))}
    decision_mcmc, decision_quad = mcmc["prob"] >= GAMMA, quad.prob_fraction_above >= GAMMA
    differ = np.flatnonzero(decision_mcmc != decision_quad)
    out["decisions_agree"] = int(len(decision_mcmc) - differ.size)
    out["disagreements"] = [{"trial": int(i), "mcmc_prob": float(mcmc["prob"][i]),
                             "mcmc_mcse": float(mcmc["prob_mcse"][i]), "exact_prob": float(quad.prob_fraction_above[i]),
                             "mcses_from_gamma": float(abs(mcmc["prob"][i] - GAMMA) / mcmc["prob_mcse"][i])
                             if mcmc["prob_mcse"][i] > 0 else float("inf")} for i in differ]
    return out


ASSURANCE_DRAWS = 4000


def bench_assurance(n_trials: int, mcmc_per_trial_s: float) -> dict:
    """run_simulations end to end (quadrature route, one worker in this process), then a resume of the same run."""
    from isletbayes.analyses import simulation as sim

    draws = _parameters(np.random.default_rng(2), ASSURANCE_DRAWS)
    simulator, analysis = sim.TrialSimulator(N_PARTICIPANTS), sim.CpeptideDay365Analysis()
    phases = {"analyse_s": 0.0, "records_s": 0.0}
    real_batch, real_write, real_read = sim.run_batch, sim._write_records, sim.read_record_file

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                phases[name] += time.perf_counter() - t
        return wrapper

    with tempfile.TemporaryDirectory() as folder:
        sim.run_batch, sim._write_records = timed("analyse_s", real_batch), timed("records_s", real_write)
        sim.read_record_file = timed("records_s", real_read)
        try:
            t0 = time.perf_counter()
            summary = sim.run_simulations(simulator, analysis, draws, n_sims=n_trials, seed=2, outdir=folder)
            runner_s = time.perf_counter() - t0
        finally:
            sim.run_batch, sim._write_records, sim.read_record_file = real_batch, real_write, real_read
        t0 = time.perf_counter()
        resumed = sim.run_simulations(simulator, analysis, draws, n_sims=n_trials, seed=2, outdir=folder)
        resume_s = time.perf_counter() - t0
        files = len(list((Path(folder) / sim.SIM_DIR).glob("sim_*.json")))
    assert resumed.records == summary.records
    return {"trials": n_trials, "runner_s": runner_s, "analyse_s": phases["analyse_s"],
            "records_s": phases["records_s"], "setup_s": runner_s - phases["analyse_s"] - phases["records_s"],
            "resume_s": resume_s, "record_files": files, "assurance": summary.assurance, "mcse": summary.mcse,
            "max_edge_mass": max(r["quadrature_edge_mass"] for r in summary.records),
            "mcmc_estimate_s": mcmc_per_trial_s * n_trials}


def _convergence(data) -> list[dict]:
    from isletbayes.models.cpeptide_endpoint import day365_posterior_quadrature, day365_statistics

    stats = day365_statistics(data)
    finest = day365_posterior_quadrature(stats, grid=(384, 192))
    rows = []
    for grid in [(24, 12), (48, 24), (96, 48), (192, 96)]:
        t0 = time.perf_counter()
        q = day365_posterior_quadrature(stats, grid=grid)
        rows.append({"grid": list(grid), "per_trial_ms": 1e3 * (time.perf_counter() - t0) / len(data),
                     "max_abs_dprob": float(np.abs(q.prob_fraction_above - finest.prob_fraction_above).max()),
                     "max_rel_dmedian": float(np.abs(q.median_posterior_mean / finest.median_posterior_mean - 1).max()),
                     "max_abs_dfraction": float(np.abs(q.fraction_above_posterior_mean
                                                       - finest.fraction_above_posterior_mean).max()),
                     "decisions_differ": int(np.sum((q.prob_fraction_above >= GAMMA)
                                                    != (finest.prob_fraction_above >= GAMMA)))})
    return rows


# ---------------------------------------------------------------------------------------------------- compiling
_MODELS = {
    "day-365 endpoint (n = 50)": """
        from isletbayes.models import cpeptide_endpoint as ce
        def build(seed):
            rng = np.random.default_rng(seed)
            y = np.exp(rng.normal(6.9, 1.0, 50))
            return ce.build_day365_model(ce.Day365Data(np.maximum(y, 13.0), np.full(50, 13.0), y <= 13.0))
    """,
    "MAP meta-analysis (RBesT AS, 8 studies)": """
        from isletbayes.models.map_prior import meta_analysis_model
        def build(seed):
            r = np.array([23, 12, 19, 9, 39, 6, 9, 10]) + (seed % 2)
            return meta_analysis_model(r, [107, 44, 51, 39, 139, 20, 78, 35])
    """,
    "C-peptide participants (12 x 4 visits)": """
        from isletbayes.models import cpeptide_trajectory as cpm
        def build(seed):
            truth = cpm.PopulationParameters(1200.0, 90.0, 0.35, 0.3, 0.2, alpha=1.5, beta=1.0)
            df = cpm.simulate_participants(truth, 12, [90.0, 180.0, 270.0, 365.0], rng=np.random.default_rng(seed))
            return cpm.build_participant_model(cpm.participant_data_from_long(df))
    """,
    "C-peptide cohort means (free h)": """
        from isletbayes.models import cpeptide_trajectory as cpm
        def build(seed):
            means = [424.0, 1036.0, 1104.0, 1274.0] if seed % 2 else [400.0, 1000.0, 1150.0, 1200.0]
            return cpm.build_means_model(cpm.CohortMeans(days=np.array([90.0, 180.0, 270.0, 365.0]),
                                                         means=np.array(means), n_participants=12, ii_count=10),
                                         rise_shape=True)
    """,
}

_PROBE = """
import hashlib, json, sys, time
t_start = time.perf_counter()
import numpy as np
import nutpie
from isletbayes.models import compiled_models as cm
{model}
out = {{"import_s": time.perf_counter() - t_start}}
mode = sys.argv[1]
model = build(1)
cache = cm.default_cache()
t0 = time.perf_counter()
compiled = nutpie.compile_pymc_model(model) if mode == "nutpie" else cm.compile_nutpie(model)
out[mode + "_s"] = time.perf_counter() - t0
if mode != "nutpie":
    out[mode + "_source"] = cache.last.source
    t0 = time.perf_counter(); cm.compile_nutpie(build(2)); out["memory_s"] = time.perf_counter() - t0
    out["memory_source"] = cache.last.source
    t0 = time.perf_counter(); cm.model_structure_key(model); out["key_s"] = time.perf_counter() - t0
trace = nutpie.sample(compiled, draws=100, tune=100, chains=2, cores=1, seed=3, progress_bar=False)
out["draws_sha256"] = hashlib.sha256(b"".join(trace.posterior[k].values.tobytes()
                                              for k in sorted(trace.posterior.data_vars))).hexdigest()
print("RESULT " + json.dumps(out))
"""


def _probe(model_code: str, mode: str, folder: str) -> dict:
    script = _PROBE.format(model=textwrap.dedent(model_code))
    env = {**os.environ, "ISLETBAYES_COMPILE_CACHE": folder}
    done = subprocess.run([sys.executable, "-c", script, mode], env=env, capture_output=True, text=True, timeout=900)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"compile probe ({mode}) failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def bench_compile() -> list[dict]:
    rows = []
    for name, code in _MODELS.items():
        with tempfile.TemporaryDirectory() as folder:
            plain = _probe(code, "nutpie", folder)
            cold = _probe(code, "cold", folder)
            warm = _probe(code, "warm", folder)
        rows.append({"model": name, "nutpie_compile_s": plain["nutpie_s"], "cold_s": cold["cold_s"],
                     "cold_source": cold["cold_source"], "warm_s": warm["warm_s"], "warm_source": warm["warm_source"],
                     "memory_s": warm["memory_s"], "key_s": warm["key_s"], "import_s": warm["import_s"],
                     "same_draws": cold["draws_sha256"] == warm["draws_sha256"],
                     "same_draws_as_nutpie": plain["draws_sha256"] == cold["draws_sha256"]})
        print(f"  done: compile {name}", file=sys.stderr, flush=True)
    return rows


# ---------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict:
    argv = list(argv or [])
    quick = "--quick" in argv
    n_compare = _flag(argv, "--trials", 100 if quick else 800)
    n_assurance = _flag(argv, "--assurance-trials", 2000 if quick else 10_000)
    figures: dict = {"machine": _machine()}
    print(f"machine: {figures['machine']}")

    data, sim_s = _simulate(n_compare, seed=1)
    censored = float(np.mean([d.censored.any() for d in data]))
    mcmc = _mcmc(data, seed=1)
    quad = _quadrature(data)
    cmp = _compare(mcmc, quad["result"])
    figures.update(n_compare=n_compare, share_trials_with_censoring=censored, simulate_per_trial_s=sim_s,
                   mcmc={k: v for k, v in mcmc.items() if not isinstance(v, np.ndarray)},
                   quadrature={k: v for k, v in quad.items() if k != "result"}, agreement=cmp)

    print(f"\nDay-365 C-peptide end point: {n_compare} simulated trials of {N_PARTICIPANTS} participants "
          f"({100 * censored:.0f}% with a value below the LLOD); rule P(pi(970) > 1/2 | y) >= {GAMMA}")
    base = mcmc["per_trial_s"]
    rows = [("MCMC (nutpie compiled once, with_data, 1000 x 2 draws)", base),
            ("quadrature, one trial per call", quad["one_at_a_time_s"]),
            ("quadrature, all trials in one call", quad["vectorised_s"])]
    print(f"{'route':58s} {'ms/trial':>10s} {'x faster':>9s}")
    for label, t in rows:
        print(f"{label:58s} {1e3 * t:10.2f} {base / t:9.1f}")
    print(f"(MCMC compile once: {mcmc['compile_s']:.1f} s, not in the per-trial figure; MCMC diagnostic failures: "
          f"{mcmc['diagnostic_failures']}; simulating a trial: {1e3 * sim_s:.2f} ms)")
    print(f"decisions: {cmp['decisions_agree']} of {n_compare} agree")
    for d in cmp["disagreements"]:
        print(f"  trial {d['trial']:4d}: MCMC P = {d['mcmc_prob']:.4f} (MCSE {d['mcmc_mcse']:.4f}, "
              f"{d['mcses_from_gamma']:.1f} MCSE from gamma), exact P = {d['exact_prob']:.5f}")
    print(f"{'(MCMC - exact) / MCSE':24s} {'trials':>7s} {'max |z|':>8s} {'share |z|<=3':>13s} "
          f"{'max |diff| where MCSE = 0':>26s}")
    for name, label in (("prob", "P(pi > q0 | y)"), ("median", "E[e^mu | y]"), ("fraction", "E[pi | y]")):
        c = cmp[name]
        print(f"{label:24s} {c['n']:7d} {c['max_abs_z']:8.2f} {c['share_abs_z_le_3']:13.3f} "
              f"{c['zero_mcse_max_abs_diff']:26.2e}")

    figures["assurance"] = bench_assurance(n_assurance, mcmc_per_trial_s=base + sim_s)
    a = figures["assurance"]
    print(f"\nassurance end to end on one core: run_simulations, {n_assurance} trials of {N_PARTICIPANTS} from "
          f"{ASSURANCE_DRAWS} parameter draws (benchmark scenario), quadrature route, records in "
          f"{a['record_files']} checksummed files")
    print(f"{'route':58s} {'seconds':>10s} {'x faster':>9s}")
    print(f"{'MCMC runner (compiled once; simulate + fit per trial x trials)':58s} {a['mcmc_estimate_s']:10.1f} "
          f"{1.0:9.1f}")
    print(f"{'quadrature runner, end to end (target < 30 s)':58s} {a['runner_s']:10.2f} "
          f"{a['mcmc_estimate_s'] / a['runner_s']:9.1f}")
    print(f"  of which: picking draws + settings {a['setup_s']:.2f} s, simulating + analysing "
          f"{a['analyse_s']:.2f} s, writing and re-reading records {a['records_s']:.2f} s")
    print(f"assurance {a['assurance']:.4f}, MCSE {a['mcse']:.4f}; resumed run (all records read back, checked): "
          f"{a['resume_s']:.2f} s; largest quadrature edge mass {a['max_edge_mass']:.1e}")

    conv = _convergence(data)
    figures["convergence"] = conv
    print(f"\nquadrature grid convergence on the {n_compare} trials (against 384 x 192)")
    print(f"{'grid':>10s} {'ms/trial':>9s} {'max |dP|':>10s} {'max rel dE[e^mu]':>17s} {'max |dE[pi]|':>13s} "
          f"{'decisions differ':>17s}")
    for r in conv:
        print(f"{'x'.join(map(str, r['grid'])):>10s} {r['per_trial_ms']:9.3f} {r['max_abs_dprob']:10.1e} "
              f"{r['max_rel_dmedian']:17.1e} {r['max_abs_dfraction']:13.1e} {r['decisions_differ']:17d}")

    if "--no-compile" not in argv:
        comp = bench_compile()
        figures["compile"] = comp
        print("\ncompile cache (seconds; each row: three fresh processes, a new empty cache folder)")
        print(f"{'model':40s} {'nutpie':>7s} {'cold':>6s} {'warm':>6s} {'memory':>7s} {'key':>6s} {'x':>6s} "
              f"{'warm = cold draws':>18s} {'cold = nutpie draws':>20s}")
        for r in comp:
            print(f"{r['model']:40s} {r['nutpie_compile_s']:7.2f} {r['cold_s']:6.2f} {r['warm_s']:6.2f} "
                  f"{r['memory_s']:7.2f} {r['key_s']:6.3f} {r['nutpie_compile_s'] / r['warm_s']:6.1f} "
                  f"{str(r['same_draws']):>18s} {str(r['same_draws_as_nutpie']):>20s}")
        print("nutpie: nutpie.compile_pymc_model in its own process; cold: compile_nutpie on an empty cache (compile "
              "+ write) in the next; warm: compile_nutpie in a third (read + relink + initial-point function); "
              "memory: a second model of the same structure in that process; key: model_structure_key; "
              "x: nutpie / warm. Draws: 100 x 2 chains, one seed.")
        sources = {(r["cold_source"], r["warm_source"]) for r in comp}
        print(f"sources seen (cold, warm): {sorted(sources)}")

    figures["machine"]["load_after"] = list(os.getloadavg())
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
