"""Do the default fits pass every diagnostic whatever the seed? (issue 10, item 4)

Fits each model of the default main job's C-peptide section to the published data at ``--n-seeds`` sampler seeds
and records the diagnostics the section records for it (``analyses.cpeptide.fit_checked``:
:func:`~isletbayes.models.sampling.check_diagnostics` of every posterior variable): R-hat <= 1.01, bulk and tail
ESS >= 100 per chain, no divergent transitions, E-BFMI >= 0.3. A seed whose fit fails is reported with its
failures; nothing is dropped or refitted.

The fits are the section's own, built by the functions it builds them with (``analyses.cpeptide.model_spec`` and
``sensitivity_specs`` on the default configuration, each with its own sampler settings: ``SamplerConfig``'s
4 chains x 1000 draws after 1000 tuning steps, nutpie, ``cpeptide.target_accept``, the joint and means-only models
at their own ``cpeptide.graft_function_draws`` and ``cpeptide.means_draws`` draws per chain); a refit that is the
main fit (the default spread prior) is counted once:

* ``graft_function_hypothetical``: the main fit, the joint model of every published aggregate
  (:mod:`isletbayes.models.graft_function`), glucocorticoid exposure under the hypothetical strategy;
* ``graft_function_treatment_policy``: the same model under the treatment-policy strategy;
* ``graft_function_spread_<s>``: the joint model with both between-participant sds ~ HalfNormal(s), for each
  alternative spread prior;
* ``cpeptide_means_only_exponential`` and ``cpeptide_means_only_free_shape``: the means-only model (the four
  cohort means, no link) with an exponential rise and with a free rise shape h.

``--only cpeptide_means`` also runs the model of ``--aggregate-model cohort_means`` (the means with the logit link
to 10/12, free rise shape), which the default job does not fit. Models not run keep their kept rows, each with
the commit it was run at.

``python -m isletbayes.analyses.seed_robustness`` writes ``analyses/results/seed_robustness.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from isletbayes.analyses import cpeptide as ca
from isletbayes.analyses.calibration import RESULTS_DIR
from isletbayes.analyses.config import CpeptideConfig, DataConfig, SamplerConfig
from isletbayes.analyses.inputs import load_inputs
from isletbayes.analyses.provenance import provenance
from isletbayes.data.io import write_json_atomic
from isletbayes.models.graft_function import graft_function_data_from_tables

#: the model of ``--aggregate-model cohort_means`` (not a fit of the default job; run with ``--only``)
COHORT_MEANS_OPTION = "cpeptide_means"


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
    draws: int  # per chain


def _fit_name(group: str, label: str, spec: ca.ModelSpec) -> str:
    if spec.mode != "graft_function":
        return f"cpeptide_means_only_{'free_shape' if spec.rise_shape else 'exponential'}"
    if group == "spread":
        return f"graft_function_spread_{spec.priors.spread_plateau_scale:g}"
    if group == "link":
        return "graft_function_link_" + "_".join(label.lower().split())
    return f"graft_function_{spec.strategy}"


def main_job_fits(config: CpeptideConfig | None = None, inputs=None) -> dict[str, ca.ModelSpec]:
    """The C-peptide section's fits on the bundled published data (``inputs``: already loaded), by name (module
    docstring), main fit first."""
    config = config or CpeptideConfig()
    inputs = inputs or load_inputs(DataConfig())
    data = graft_function_data_from_tables(inputs.cpeptide_means, inputs.continuous, inputs.counts)
    main = ca.model_spec(config, data)
    fits = {_fit_name("main", "", main): main}
    for group, label, spec in ca.sensitivity_specs(main, has_link="alpha" in main.build().named_vars):
        if not ca.same_model(spec, main):
            name = _fit_name(group, label, spec)
            if name in fits:  # cannot happen with the refits above; never let two fits share a row
                raise ValueError(f"two fits of the C-peptide section are both named {name!r}")
            fits[name] = spec
    return fits


def seed_robustness_fits(config: CpeptideConfig) -> dict[str, ca.ModelSpec]:
    """Every model this check can run, by name: the section's fits, then the model of ``--aggregate-model
    cohort_means`` (:data:`COHORT_MEANS_OPTION`)."""
    inputs = load_inputs(DataConfig())
    fits = main_job_fits(config, inputs)
    fits[COHORT_MEANS_OPTION] = ca.model_spec(config.model_copy(update={"model": "cohort_means", "rise_shape": True}),
                                              inputs.cohort_means())
    return fits


def run(fits: dict[str, ca.ModelSpec], n_seeds: int = 20, first_seed: int = 1,
        sampler: SamplerConfig = SamplerConfig(), target_accept: float | None = None,
        progress: bool = True) -> list[SeedFit]:
    """Fit each of ``fits`` at ``n_seeds`` seeds from ``first_seed`` (``target_accept``: the C-peptide analysis's,
    ``cpeptide.target_accept``), as the section fits it."""
    out = []
    for name, spec in fits.items():
        for seed in range(first_seed, first_seed + n_seeds):
            start = time.perf_counter()
            settings = sampler.settings(seed, target_accept)
            _, _, d = ca.fit_checked(spec, settings)
            fit = SeedFit(name, seed, d.ok, d.max_rhat, d.min_ess_bulk, d.min_ess_tail, d.divergences, d.min_ebfmi,
                          d.failures, time.perf_counter() - start, spec.sampler_settings(settings).draws)
            out.append(fit)
            if progress:
                print(f"{name} seed {seed}: {'ok' if d.ok else 'FAILED ' + '; '.join(d.failures)} "
                      f"(R-hat {d.max_rhat:.4f}, ESS {d.min_ess_bulk:.0f}/{d.min_ess_tail:.0f}, "
                      f"{fit.seconds:.0f} s)", file=sys.stderr, flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    config = CpeptideConfig()
    models = seed_robustness_fits(config)
    parser = argparse.ArgumentParser(prog="python -m isletbayes.analyses.seed_robustness",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--n-seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--cores", type=int, default=None, help="chains sampled in parallel (the draws do not "
                                                                   "depend on it; default: sampler.cores)")
    parser.add_argument("--only", choices=list(models), action="append", default=None,
                        help="run this model only (repeatable); default: every fit of the default main job")
    parser.add_argument("--out", default=str(RESULTS_DIR / "seed_robustness.json"))
    args = parser.parse_args(argv)
    sampler = SamplerConfig(cores=args.cores)
    run_here = provenance(sampler=sampler.settings(args.first_seed, config.target_accept).as_dict(),
                          n_seeds=args.n_seeds, first_seed=args.first_seed, target_accept=config.target_accept,
                          graft_function_draws=config.graft_function_draws, means_draws=config.means_draws)
    which = args.only or [name for name in models if name != COHORT_MEANS_OPTION]
    fits = run({name: models[name] for name in which}, args.n_seeds, args.first_seed, sampler, config.target_accept)
    summary = {}
    for name in dict.fromkeys(f.model for f in fits):
        mine = [f for f in fits if f.model == name]
        summary[name] = {"n_fits": len(mine), "n_failing": sum(not f.ok for f in mine),
                         "max_rhat": max(f.max_rhat for f in mine), "min_ess_bulk": min(f.min_ess_bulk for f in mine),
                         "min_ess_tail": min(f.min_ess_tail for f in mine),
                         "total_divergences": sum(f.divergences for f in mine),
                         "min_ebfmi": min(f.min_ebfmi for f in mine),
                         "median_seconds": sorted(f.seconds for f in mine)[len(mine) // 2],
                         "draws_per_chain": mine[0].draws, "git_commit": run_here["git_commit"]}
        print(f"{name}: {summary[name]['n_failing']} of {len(mine)} fits failing; max R-hat "
              f"{summary[name]['max_rhat']:.4f}; min ESS {summary[name]['min_ess_bulk']:.0f}/"
              f"{summary[name]['min_ess_tail']:.0f}; divergences {summary[name]['total_divergences']}")
    # the models not run now keep their kept results and the commit they were run at (``--only`` refreshes one
    # model, not the file)
    kept = json.loads(Path(args.out).read_text(encoding="utf-8")) if Path(args.out).exists() else {}
    kept_commit = kept.get("provenance", {}).get("git_commit")
    summary = {**{k: {"git_commit": kept_commit, **v} for k, v in kept.get("summary", {}).items()
                  if k not in summary}, **summary}
    run_now = {f.model for f in fits}
    fit_rows = [row for row in kept.get("fits", []) if row["model"] not in run_now] + [asdict(f) for f in fits]
    write_json_atomic(args.out, {"analysis": "seed_robustness", "summary": summary, "fits": fit_rows,
                                 "provenance": run_here})
    print(f"wrote {args.out}")
    return 0 if all(f.ok for f in fits) else 1


if __name__ == "__main__":
    sys.exit(main())
