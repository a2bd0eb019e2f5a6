"""Simulation-based calibration (SBC) of the PyMC models (Talts et al. 2018, arXiv:1804.06788).

For each replicate r: draw parameters theta_r from the prior, simulate a data set from them, refit the model
(compiled once, refitted through nutpie's ``with_data``), and record the rank of theta_r among L = 99 thinned
posterior draws. If the model, the simulator and the sampler agree, every rank is uniform on 0..L.

Test of uniformity (stated before looking): the ranks of each parameter are grouped into B equal-width bins
(B = 5 below 50 replicates, 10 below 200, else 20; L + 1 = 100 is divisible by each) and compared with the uniform
by Pearson's chi-square test (B - 1 degrees of freedom). A parameter fails when p < 0.01 / (number of
parameters) (Bonferroni, family-wise level 1%). Fits failing ``check_diagnostics`` are counted and reported; they
are kept in the ranks (dropping them would bias the ranks).

The driver is generic: a :class:`SBCProblem` names a model (built once on data of the right shape), the
parameters to rank and a ``draw(rng) -> (truth, arrays)`` function giving the true values and the ``pm.Data``
arrays of one simulated data set. Replicate r uses ``numpy.random.default_rng([seed, r])`` and sampler seed
``seed + r``, so results do not depend on the order or number of workers.

``python -m isletbayes.analyses.calibration`` runs the problems, each at the settings its analysis fits it with:
the participant-level likelihood with the exponential rise, as the phase 3 simulations refit it
(:data:`PARTICIPANT_TARGET_ACCEPT`); the cohort-means likelihood with the free rise shape and the curve misfit, as
``isletbayes cpeptide`` fits it; and the joint model of every published aggregate
(:mod:`isletbayes.models.graft_function`, hypothetical strategy), at the C-peptide analysis's target acceptance
(:data:`CPEPTIDE_TARGET_ACCEPT`) and, for the joint and cohort-means models, their own draws per chain
(:data:`GRAFT_FUNCTION_DRAWS`, :data:`MEANS_DRAWS`). ``--only NAME --out FILE`` runs one. Defaults: 100 replicates per
problem, 4 chains x 1000 draws (the joint model: its own number) after 1000 tuning steps (a fit passing the ESS
check then has >= 400 effective draws, so the 99 thinned draws are close to independent). Each finished replicate
is appended to ``FILE.<problem>.jsonl``; a rerun with the same arguments resumes from it (the same replicates,
seeds and results), so a long run can be interrupted. On 2 cores a replicate takes 5 to 30 seconds (minutes when
the machine is shared). Runs at settings that were tried and rejected are kept in
``results/sbc_rejected_settings.json``.

Why not the kept library simuk: it draws the data from the model's own prior predictive and refits with
``pm.sample`` (one compilation per replicate). The cohort-means and joint models approximate the law of their
summaries (moment matching, composite likelihood), so their calibration must simulate the 12 participants with the
exact simulator, not the model's approximation; and compiling once and refitting through nutpie's ``with_data`` is
what makes 100 replicates affordable.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
from scipy import stats

from isletbayes.analyses.config import CpeptideConfig
from isletbayes.analyses.cpeptide_result import KEPT_CALIBRATION_PATH
from isletbayes.analyses.provenance import provenance
from isletbayes.data.io import write_json_atomic
from isletbayes.models import cpeptide_trajectory as cpm
from isletbayes.models import graft_function as gfm
from isletbayes.models.compiled_models import model_structure_key
from isletbayes.models.graft_link import IntercurrentStrategy, LinkPriors
from isletbayes.models.sampling import MASS_MATRICES, SamplerSettings, check_diagnostics

N_RANK_DRAWS = 99
#: the C-peptide analysis defaults the cohort-means and joint problems are fitted with (``cpeptide.target_accept``,
#: ``cpeptide.graft_function_draws``). target_accept: at 0.95, 6 of 20 fits of the joint model to the published data
#: failed a diagnostic (5 divergent transitions in all, R-hat up to 1.014); at 0.99, none of 20. Draws of the joint
#: model: see ``CpeptideConfig.graft_function_draws`` and analyses/results/sbc_rejected_settings.json
_CPEPTIDE_DEFAULTS = CpeptideConfig()
CPEPTIDE_TARGET_ACCEPT = _CPEPTIDE_DEFAULTS.target_accept
GRAFT_FUNCTION_DRAWS = _CPEPTIDE_DEFAULTS.graft_function_draws
#: draws per chain of the means-only model (``cpeptide.means_draws``; see analyses/seed_robustness.py)
MEANS_DRAWS = _CPEPTIDE_DEFAULTS.means_draws
#: target_accept of the participant-level model: at 0.95, 4 of the first 9 SBC fits had divergent transitions
PARTICIPANT_TARGET_ACCEPT = 0.99
FAMILY_ALPHA = 0.01
RESULTS_DIR = KEPT_CALIBRATION_PATH.parent


@dataclass(frozen=True)
class SBCProblem:
    name: str
    model: Any
    parameters: tuple[str, ...]
    draw: Callable[[np.random.Generator], tuple[dict[str, float], dict[str, np.ndarray]]]
    description: str = ""
    target_accept: float = 0.9  # the settings the model is fitted with in practice
    draws: int | None = None  # draws per chain, where the analysis fits this model with its own number


def n_bins(n_replicates: int) -> int:
    return 5 if n_replicates < 50 else 10 if n_replicates < 200 else 20


def rank_of(truth: float, draws: np.ndarray, n_rank: int = N_RANK_DRAWS) -> int:
    """Rank of ``truth`` among ``n_rank`` evenly thinned draws (0..n_rank)."""
    draws = np.asarray(draws, dtype=float).ravel()
    pick = np.linspace(0, draws.size - 1, n_rank).round().astype(int)
    return int(np.sum(draws[pick] < truth))


def uniformity_test(ranks: np.ndarray, n_rank: int = N_RANK_DRAWS, bins: int | None = None) -> dict:
    """Pearson chi-square test of ranks (0..n_rank) against the discrete uniform, in equal-width bins."""
    ranks = np.asarray(ranks, dtype=int)
    bins = bins or n_bins(ranks.size)
    if (n_rank + 1) % bins:
        raise ValueError(f"{n_rank + 1} possible ranks do not split into {bins} equal bins")
    counts = np.bincount(ranks * bins // (n_rank + 1), minlength=bins)
    chi2, p = stats.chisquare(counts)
    return {"bins": bins, "counts": counts.tolist(), "chi2": float(chi2), "p_value": float(p)}


def read_checkpoint(path: Path, settings: SamplerSettings | None = None, model_key: str | None = None) -> list[dict]:
    """The replicates of an interrupted run, in order (each with its ranks and diagnostics). With ``settings``,
    a replicate recorded at other sampler settings is an error, and with ``model_key``
    (:func:`~isletbayes.models.compiled_models.model_structure_key`) one recorded for another model structure
    (another model, parametrisation or package version): a resumed run must not mix settings or models. A
    replicate that does not record what is checked (written before the settings or the model were recorded) is an
    error too: what it was fitted with cannot be known, so it is never taken for a fit of this model."""
    records = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    if [r["replicate"] for r in records] != list(range(len(records))):
        raise ValueError(f"{path}: replicates are not 0, 1, 2, ... in order")
    checks = []
    if settings is not None:
        checks.append(("settings", _checkpoint_settings(settings), "sampler settings"))
    if model_key is not None:
        checks.append(("model_key", model_key, "model structure"))
    for field_name, wanted, what in checks:
        for r in records:
            if field_name not in r:
                raise ValueError(f"{path}: replicate {r['replicate']} does not record its {what}, so it cannot be "
                                 "resumed; move the file aside to run anew")
            if r[field_name] != wanted:
                raise ValueError(f"{path}: replicate {r['replicate']} was fitted with another {what} "
                                 f"({_shown(r[field_name])}, not {_shown(wanted)}); move the file aside to run anew")
    return records


def _shown(value):
    """A checkpoint field as an error message shows it: a structure key by its first 12 hex digits."""
    return value[:12] if isinstance(value, str) else value


def _checkpoint_settings(settings: SamplerSettings) -> dict:
    """The sampler settings a replicate's ranks depend on (not ``cores``)."""
    return {k: v for k, v in settings.as_dict().items() if k != "cores"}


def summarise_ranks(ranks: dict[str, list[int]], n_failing: int) -> dict:
    """Uniformity tests and the verdict for ranks gathered so far (also for a run still under way)."""
    n = len(next(iter(ranks.values())))
    threshold = FAMILY_ALPHA / len(ranks)
    tests = {name: uniformity_test(np.array(v)) for name, v in ranks.items()}
    failed = [name for name, t in tests.items() if t["p_value"] < threshold]
    return {"n_replicates": n, "tests": tests, "failed_parameters": failed, "uniform": not failed,
            "n_fits_failing_diagnostics": n_failing, "threshold": threshold}


def run_sbc(problem: SBCProblem, n_replicates: int, settings: SamplerSettings, seed: int = 1,
            progress: bool = False, checkpoint: Path | None = None) -> dict:
    """Run SBC for ``problem``; returns ranks, per-parameter tests, the verdict and diagnostics counts.
    With ``checkpoint``, the replicates finished so far are written there after each one (JSON lines of truth,
    ranks and diagnostics), so an interrupted run keeps them."""
    start = time.perf_counter()
    ranks = {name: [] for name in problem.parameters}
    failures, min_ess = [], []
    model_key = model_structure_key(problem.model) if checkpoint is not None else None
    done = read_checkpoint(checkpoint, settings, model_key) if checkpoint is not None and checkpoint.exists() else []
    for record in done[:n_replicates]:  # resume: the replicates already fitted are not fitted again
        for name in problem.parameters:
            ranks[name].append(record["ranks"][name])
        min_ess.append(round(min(record["diagnostics"]["min_ess_bulk"], record["diagnostics"]["min_ess_tail"])))
        if not record["diagnostics"]["ok"]:
            failures.append({"replicate": record["replicate"], "failures": record["diagnostics"]["failures"]})
    compile_s = 0.0
    if len(done) < n_replicates:  # compiled only when something is left to fit
        refit = cpm.CompiledRefit(problem.model)
        compile_s = time.perf_counter() - start
    for r in range(len(done), n_replicates):
        rng = np.random.default_rng([seed, r])
        truth, arrays = problem.draw(rng)
        idata = refit.sample(arrays, replace(settings, seed=seed + r))
        diag = check_diagnostics(idata, var_names=list(problem.parameters))
        min_ess.append(round(min(diag.min_ess_bulk, diag.min_ess_tail)))
        if not diag.ok:
            failures.append({"replicate": r, "failures": diag.failures})
        for name in problem.parameters:
            ranks[name].append(rank_of(truth[name], idata["posterior"][name].values))
        if checkpoint is not None:
            with open(checkpoint, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"replicate": r, "ranks": {k: v[-1] for k, v in ranks.items()},
                                     "truth": {k: float(truth[k]) for k in problem.parameters},
                                     "diagnostics": diag.as_dict(),
                                     "settings": _checkpoint_settings(settings),
                                     "model_key": model_key}) + "\n")
        if progress:
            print(f"  {problem.name}: replicate {r + 1}/{n_replicates}", file=sys.stderr, flush=True)
    threshold = FAMILY_ALPHA / len(problem.parameters)
    tests = {name: uniformity_test(np.array(v)) for name, v in ranks.items()}
    failed = [name for name, t in tests.items() if t["p_value"] < threshold]
    if failures:
        print(f"SBC {problem.name}: {len(failures)} of {n_replicates} fits FAILED diagnostics "
              f"(kept in the ranks; see 'diagnostic_failures')", file=sys.stderr)
    return {
        "problem": problem.name,
        "description": problem.description,
        "n_replicates": n_replicates,
        "n_rank_draws": N_RANK_DRAWS,
        "thinning": f"ranks among {N_RANK_DRAWS} draws evenly spaced over the {settings.chains} x {settings.draws} "
                    f"draws (every {settings.chains * settings.draws / N_RANK_DRAWS:.0f}th); a fit passing the ESS "
                    "check has at most that many draws per effective draw, so the thinned draws are close to "
                    "independent (Talts et al. 2018, section 5.1)",
        "test": "Pearson chi-square on binned ranks vs uniform",
        "threshold": f"p < {FAMILY_ALPHA} / {len(problem.parameters)} = {threshold:.4g} fails (Bonferroni)",
        "tests": tests,
        "ranks": ranks,
        "failed_parameters": failed,
        "uniform": not failed,
        "n_fits_failing_diagnostics": len(failures),
        "diagnostic_failures": failures,
        "min_ess_per_fit": min_ess,
        "sampler": settings.as_dict(),
        "compile_seconds": compile_s,
        "total_seconds": time.perf_counter() - start,
    }


# --------------------------------------------------------------------------------- C-peptide problems
SBC_DAYS = (90.0, 180.0, 270.0, 365.0)
SBC_PARAMETERS = cpm.POPULATION_PARAMETERS + ("alpha", "beta")


def _parameters(rise_shape: bool) -> tuple[str, ...]:
    return SBC_PARAMETERS + (("rise_shape",) if rise_shape else ())


def _shape_words(rise_shape: bool) -> str:
    return "free rise shape h" if rise_shape else "exponential rise (h = 1)"


def cpeptide_participant_problem(n_participants: int = 12, days=SBC_DAYS,
                                 priors: cpm.TrajectoryPriors = cpm.TrajectoryPriors(),
                                 link_priors: LinkPriors = LinkPriors(), rise_shape: bool = False,
                                 parametrisation: str = "adaptive") -> SBCProblem:
    """SBC of the participant-level likelihood: prior draw -> simulate_participants -> refit. The default is the
    exponential rise and the adaptive parametrisation, the participant model the phase 3 simulations refit; each
    refit passes the data set's own geometry constants (``participant_arrays``)."""
    template = cpm.simulate_participants(cpm.PopulationParameters(1000, 60, 0.3, 0.3, 0.2, 1, 1), n_participants,
                                         days, rng=np.random.default_rng(0))
    model = cpm.build_participant_model(cpm.participant_data_from_long(template), priors, link_priors,
                                        rise_shape=rise_shape, parametrisation=parametrisation)
    centring = parametrisation == "adaptive"

    def draw(rng):
        truth = cpm.draw_prior_parameters(priors, link_priors, rng, rise_shape=rise_shape)
        df = cpm.simulate_participants(truth, n_participants, days, rng=rng)
        return truth.as_dict(), cpm.participant_arrays(cpm.participant_data_from_long(df), centring=centring,
                                                       priors=priors)

    return SBCProblem("cpeptide_participant", model, _parameters(rise_shape), draw,
                      f"{n_participants} participants, visits at days {list(days)}, censored at 13 pmol/L, "
                      f"insulin independence at day 365 (Bernoulli); {_shape_words(rise_shape)}; "
                      f"{parametrisation} participant effects",
                      target_accept=PARTICIPANT_TARGET_ACCEPT)


def cpeptide_means_problem(n_participants: int = 12, days=SBC_DAYS,
                           priors: cpm.TrajectoryPriors = cpm.TrajectoryPriors(),
                           link_priors: LinkPriors = LinkPriors(), rise_shape: bool = True) -> SBCProblem:
    """SBC of the cohort-means likelihood: prior draw -> n simulated participants -> their exact means and
    insulin-independence count (the model approximates the means' joint law by moment matching and treats the
    count as independent of them given the population) -> refit. The default is the free rise shape, the
    default of ``isletbayes cpeptide``."""
    template = cpm.CohortMeans(days=list(days), means=[400.0, 1000.0, 1100.0, 1300.0][: len(days)],
                               n_participants=n_participants, ii_count=n_participants // 2)
    model = cpm.build_means_model(template, priors, link_priors, rise_shape=rise_shape)

    def draw(rng):
        truth = cpm.draw_prior_parameters(priors, link_priors, rng, rise_shape=rise_shape)
        misfit = float(rng.gamma(2.0, priors.curve_misfit_scale / 2.0))  # the model's Gamma(2, 2 / scale) prior
        means = cpm.simulate_cohort_means(truth, n_participants, days, rng=rng, curve_misfit_sd=misfit)
        return {**truth.as_dict(), "curve_misfit_sd": misfit}, cpm.means_arrays(means)

    return SBCProblem("cpeptide_means", model, _parameters(rise_shape) + ("curve_misfit_sd",), draw,
                      f"means of {n_participants} simulated participants at days {list(days)} (times the curve "
                      f"misfit exp(delta_t)) and their day-365 insulin-independence count; {_shape_words(rise_shape)}",
                      target_accept=CPEPTIDE_TARGET_ACCEPT, draws=MEANS_DRAWS)


def graft_function_problem(strategy: IntercurrentStrategy | str = IntercurrentStrategy.HYPOTHETICAL,
                           priors: cpm.TrajectoryPriors = cpm.TrajectoryPriors(),
                           graft_priors: gfm.GraftFunctionPriors = gfm.GraftFunctionPriors()) -> SBCProblem:
    """SBC of the joint model of every published aggregate: prior draw -> 12 participants simulated jointly
    (the model treats its summaries as independent given the population, and approximates each log graft
    function by a normal) -> their published summaries -> refit."""
    strategy = IntercurrentStrategy(strategy)
    rng0 = np.random.default_rng(0)
    template = gfm.simulate_graft_function_data(gfm.draw_prior(priors, graft_priors, rng0), rng0, strategy=strategy)
    model = gfm.build_graft_function_model(template, priors, graft_priors, strategy=strategy)

    def draw(rng):
        truth = gfm.draw_prior(priors, graft_priors, rng)
        data = gfm.simulate_graft_function_data(truth, rng, strategy=strategy)
        return truth, gfm.graft_function_arrays(data)

    return SBCProblem(f"graft_function_{strategy.value}", model, gfm.GRAFT_FUNCTION_PARAMETERS, draw,
                      f"every published aggregate of 12 participants simulated jointly (cohort means, detectable "
                      f"count, ranges of TIR, HbA1c and baseline insulin dose, insulin outcomes with 2 glucocorticoid-"
                      f"exposed participants); {strategy.assumption}", target_accept=CPEPTIDE_TARGET_ACCEPT,
                      draws=GRAFT_FUNCTION_DRAWS)





def merge_results(kept: list[dict], new: list[dict]) -> list[dict]:
    """The kept results with the problems run now replaced in place and new problems appended: the problems not
    run now keep their kept results (``--only`` refreshes one problem, not the file), each with the provenance it
    was run with (results kept before per-problem provenance was recorded have none; the file's provenance is
    that of its last writer)."""
    fresh = {r["problem"]: r for r in new}
    merged = [fresh.pop(r["problem"], r) for r in kept]
    return merged + list(fresh.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m isletbayes.analyses.calibration",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--replicates", type=int, default=100)
    parser.add_argument("--draws", type=int, default=None,
                        help="draws per chain (default: each problem's own, else 1000)")
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--target-accept", type=float, default=None,
                        help="default: each problem's own (0.99 for each)")
    parser.add_argument("--mass-matrix", choices=MASS_MATRICES, default="diag")
    parser.add_argument("--seed", type=int, default=20250620)
    parser.add_argument("--only", choices=["participant", "means", "graft_function"], default=None)
    parser.add_argument("--out", type=Path, default=KEPT_CALIBRATION_PATH)
    args = parser.parse_args(argv)
    problems = []
    if args.only in (None, "participant"):
        problems.append(cpeptide_participant_problem())
    if args.only in (None, "means"):
        problems.append(cpeptide_means_problem())
    if args.only in (None, "graft_function"):
        problems.append(graft_function_problem())
    results = []
    for problem in problems:
        settings = SamplerSettings(draws=args.draws or problem.draws or 1000, tune=args.tune, chains=args.chains,
                                   cores=args.cores, target_accept=args.target_accept or problem.target_accept,
                                   nuts_sampler="nutpie", seed=args.seed, mass_matrix=args.mass_matrix)
        res = run_sbc(problem, args.replicates, settings, seed=args.seed, progress=True,
                      checkpoint=args.out.with_suffix(f".{problem.name}.jsonl"))
        # each problem's own commit, versions and time: ``--only`` reruns one problem and keeps the others'
        res["provenance"] = provenance(seed=args.seed, replicates=args.replicates, sampler=res["sampler"])
        results.append(res)
        ps = ", ".join(f"{k} p={t['p_value']:.3f}" for k, t in res["tests"].items())
        print(f"{problem.name}: {'uniform' if res['uniform'] else 'NOT UNIFORM: ' + str(res['failed_parameters'])}"
              f" ({ps}); {res['n_fits_failing_diagnostics']} fits failing diagnostics; {res['total_seconds']:.0f} s")
    kept = json.loads(args.out.read_text(encoding="utf-8"))["results"] if args.out.exists() else []
    results = merge_results(kept, results)
    write_json_atomic(args.out, {"analysis": "sbc_cpeptide", "results": results,
                                 "provenance": provenance(seed=args.seed, replicates=args.replicates,
                                                          sampler={r["problem"]: r["sampler"] for r in results})})
    print(f"wrote {args.out}")
    return 0 if all(r["uniform"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
