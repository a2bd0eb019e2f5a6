"""Do the default fits pass every diagnostic whatever the seed? (issue 10, item 4)

Fits each default model to the published data at ``--n-seeds`` sampler seeds (compiled once, refitted through
nutpie) and records :func:`~isletbayes.models.sampling.check_diagnostics` of every fit: R-hat <= 1.01, bulk and tail
ESS >= 100 per chain, no divergent transitions, E-BFMI >= 0.3. A seed whose fit fails is reported with its
failures; nothing is dropped or refitted.

Models (the analysis defaults, nutpie, 4 chains x 1000 draws, the joint model its own number, after 1000 tuning
steps):

* ``cpeptide_means``: the cohort-means model (free rise shape, curve misfit, logit link to 10/12) (its posterior
  keeps a mild funnel between the curve and the noise scales: at target_accept 0.9 the published-means fit shows a
  few divergent transitions per 4000 draws, none at 0.99);
* ``graft_function_hypothetical`` and ``graft_function_treatment_policy``: the joint model of every published
  aggregate (:mod:`isletbayes.models.graft_function`) under each strategy for glucocorticoid exposure.

All at the C-peptide analysis defaults (``cpeptide.target_accept``; the joint model at its own
``cpeptide.graft_function_draws`` draws per chain: :data:`isletbayes.analyses.calibration.CPEPTIDE_TARGET_ACCEPT`
and ``GRAFT_FUNCTION_DRAWS``).

``python -m isletbayes.analyses.seed_robustness`` writes ``analyses/results/seed_robustness.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from isletbayes.analyses.calibration import CPEPTIDE_TARGET_ACCEPT, GRAFT_FUNCTION_DRAWS, RESULTS_DIR
from isletbayes.analyses.provenance import provenance
from isletbayes.data.io import write_json_atomic
from isletbayes.models import cpeptide_trajectory as cpm
from isletbayes.models import graft_function as gfm
from isletbayes.models.graft_link import IntercurrentStrategy
from isletbayes.models.sampling import SamplerSettings, check_diagnostics

MODELS = ("cpeptide_means", "graft_function_hypothetical", "graft_function_treatment_policy")


@dataclass(frozen=True)
class SeedFit:
    """One fit's diagnostics."""

    model: str
    seed: int
    ok: bool
    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    divergences: int
    min_ebfmi: float
    failures: list[str]
    seconds: float


def published_models(which=MODELS):
    """(name, model, parameter names, target_accept, draws per chain or None) of each default model on the bundled
    published data."""
    from isletbayes.data import load_continuous, load_counts, load_cpeptide_means

    cp, cont, counts = load_cpeptide_means(), load_continuous(), load_counts()
    out = []
    if "cpeptide_means" in which:
        used = cp[cp["used_by_default"]].sort_values("day")
        ii = counts[(counts["endpoint"] == "insulin_independence") & (counts["cohort"] == "full_dose")
                    & counts["used_by_default"]]
        means = cpm.CohortMeans(days=used["day"].to_numpy(float), means=used["mean_pmol_l"].to_numpy(float),
                                n_participants=int(used["n"].iloc[0]), ii_count=int(ii["r"].iloc[0]))
        model = cpm.build_means_model(means, rise_shape=True)
        names = list(cpm.POPULATION_PARAMETERS) + ["curve_misfit_sd", "rise_shape", "alpha", "beta"]
        out.append(("cpeptide_means", model, names, CPEPTIDE_TARGET_ACCEPT, None))
    data = gfm.graft_function_data_from_tables(cp, cont, counts)
    for strategy in IntercurrentStrategy:
        name = f"graft_function_{strategy.value}"
        if name in which:
            model = gfm.build_graft_function_model(data, strategy=strategy)
            out.append((name, model, list(gfm.GRAFT_FUNCTION_PARAMETERS), CPEPTIDE_TARGET_ACCEPT,
                        GRAFT_FUNCTION_DRAWS))
    return out


def run(n_seeds: int = 20, first_seed: int = 1, which=MODELS, settings: SamplerSettings = SamplerSettings(),
        progress: bool = True) -> list[SeedFit]:
    fits = []
    for name, model, names, target_accept, draws in published_models(which):
        refit = cpm.CompiledRefit(model)
        for seed in range(first_seed, first_seed + n_seeds):
            start = time.perf_counter()
            idata = refit.sample({}, replace(settings, seed=seed, target_accept=target_accept,
                                             draws=draws or settings.draws))
            d = check_diagnostics(idata, var_names=names)
            fit = SeedFit(name, seed, d.ok, d.max_rhat, d.min_ess_bulk, d.min_ess_tail, d.divergences, d.min_ebfmi,
                          d.failures, time.perf_counter() - start)
            fits.append(fit)
            if progress:
                print(f"{name} seed {seed}: {'ok' if d.ok else 'FAILED ' + '; '.join(d.failures)} "
                      f"(R-hat {d.max_rhat:.4f}, ESS {d.min_ess_bulk:.0f}/{d.min_ess_tail:.0f}, "
                      f"{fit.seconds:.0f} s)", file=sys.stderr, flush=True)
    return fits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m isletbayes.analyses.seed_robustness",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--n-seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--only", choices=MODELS, action="append", default=None)
    parser.add_argument("--out", default=str(RESULTS_DIR / "seed_robustness.json"))
    args = parser.parse_args(argv)
    settings = SamplerSettings(draws=1000, tune=1000, chains=4, cores=args.cores, nuts_sampler="nutpie")
    which = tuple(args.only) if args.only else MODELS
    fits = run(args.n_seeds, args.first_seed, which, settings)
    summary = {}
    for name in which:
        mine = [f for f in fits if f.model == name]
        summary[name] = {"n_fits": len(mine), "n_failing": sum(not f.ok for f in mine),
                         "max_rhat": max(f.max_rhat for f in mine), "min_ess_bulk": min(f.min_ess_bulk for f in mine),
                         "min_ess_tail": min(f.min_ess_tail for f in mine),
                         "total_divergences": sum(f.divergences for f in mine),
                         "min_ebfmi": min(f.min_ebfmi for f in mine),
                         "median_seconds": sorted(f.seconds for f in mine)[len(mine) // 2]}
        print(f"{name}: {summary[name]['n_failing']} of {len(mine)} fits failing; max R-hat "
              f"{summary[name]['max_rhat']:.4f}; min ESS {summary[name]['min_ess_bulk']:.0f}/"
              f"{summary[name]['min_ess_tail']:.0f}; divergences {summary[name]['total_divergences']}")
    # the models not run now keep their kept results (``--only`` refreshes one model, not the file)
    kept = json.loads(Path(args.out).read_text(encoding="utf-8")) if Path(args.out).exists() else {}
    summary = {**{k: v for k, v in kept.get("summary", {}).items() if k not in which}, **summary}
    fit_rows = [f for f in kept.get("fits", []) if f["model"] not in which] + [asdict(f) for f in fits]
    write_json_atomic(args.out, {"analysis": "seed_robustness", "summary": summary,
                                 "fits": fit_rows,
                                 "provenance": provenance(sampler=settings.as_dict(), n_seeds=args.n_seeds,
                                                          first_seed=args.first_seed,
                                                          target_accept=CPEPTIDE_TARGET_ACCEPT,
                                                          graft_function_draws=GRAFT_FUNCTION_DRAWS)})
    print(f"wrote {args.out}")
    return 0 if all(f.ok for f in fits) else 1


if __name__ == "__main__":
    sys.exit(main())
