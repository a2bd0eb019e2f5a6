"""``isletbayes design``: phase 3 sample size, exact operating characteristics and assurance over a grid of n,
interims, and simulation-based assurance."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from isletbayes.analyses.cli.console import progress_enabled, progress_reporter
from isletbayes.analyses.cli.options import config_command, extra_option

CACHE_HELP = ("fit cache folder, where the design-prior panel is kept between calls (default: "
              "$ISLETBAYES_CACHE_DIR, else ~/.cache/isletbayes/fits)")
KEYS = ("seed", "allow_large_jobs", "design", "priors.map", "priors.benchmark", "priors.benchmark_any_endpoint",
        "durability",
        "data.participant_data", "data.counts", "data.comparators", "data.include_unverified", "data.allow_outliers",
        "cpeptide", "sampler")


@config_command(KEYS, [
    extra_option("out", Optional[Path], None, "--out",
                 help="output folder (design.json, design_table.csv; simulation/ for simulated trials)"),
    extra_option("as_json", bool, False, "--json", help="print the result as JSON"),
    extra_option("quiet", bool, False, "--quiet", "-q", help="no progress display (failures are still printed)"),
    extra_option("cache_dir", Optional[Path], None, "--cache-dir", help=CACHE_HELP),
    extra_option("no_cache", bool, False, "--no-cache", help="compute the design-prior panel anew; keep nothing"),
])
def design(config, out: Path | None = None, as_json: bool = False, quiet: bool = False,
           cache_dir: Path | None = None, no_cache: bool = False) -> None:
    """Phase 3 sample size: exact OC and assurance over a grid of n, interims, simulation-based assurance.

    The design-prior panel and p0 (the MAP prior's MCMC fit, the durability model) are kept in the fit cache, so
    a design that changes only the grid, the rule, the targets or the interims answers without refitting them.
    Simulations (--simulate N) draw phase 3 trials from the C-peptide re-analysis posterior, fitted with the
    same cpeptide and sampler settings as `isletbayes cpeptide`."""
    from isletbayes.analyses import budget, interrupts
    from isletbayes.analyses.cache import FitCache, default_cache_dir
    from isletbayes.analyses.design import DesignInputs, DesignResult, run_design
    from isletbayes.analyses.inputs import load_inputs
    from isletbayes.analyses.main_job import data_size
    from isletbayes.analyses.outputs import OutputLock, check_output_folder, staging_folder
    from isletbayes.data.errors import InputError
    from isletbayes.data.io import to_json

    cfg = config.design
    if out is not None:  # checked before any work: a folder that cannot be written is refused now, not later
        out = check_output_folder(out, option="--out", marker=(DesignResult.JSON_FILE, "simulation"))
    elif cfg.simulate:
        raise InputError("simulations are written as they finish and need an output folder", option="--out")
    inputs = load_inputs(config.data)
    design_inputs = DesignInputs(inputs, config.priors, config.sampler, config.durability)
    participants, observations = data_size(inputs)
    budget.check(budget.estimate_design(config, n_participants=participants, n_observations=observations),
                 allow=budget.allow_large(config))
    panel_cache = None if no_cache else FitCache(Path(cache_dir) if cache_dir else default_cache_dir(None))
    if cfg.simulate and cfg.scheduler:  # refused in seconds, before the posterior fit and before any write
        from isletbayes.analyses.simulation import check_scheduler

        check_scheduler(cfg.scheduler)

    def compute(simulation_dir: Path | None):
        with progress_reporter(progress_enabled(quiet, as_json)) as progress:
            draws = source = None
            if cfg.simulate:
                from isletbayes.analyses.cpeptide import run_cpeptide

                with progress.status("C-peptide posterior the simulated trials draw from"):
                    fit = run_cpeptide(config.cpeptide.model_copy(update={"sensitivity": False, "psense": False,
                                                                      "holdout_check": False}),
                                       sampler=config.sampler, seed=config.seed, inputs=inputs)
                interrupts.checkpoint()  # a fit cut short by Ctrl-C must not seed the simulations
                draws, source = fit.parameter_draws(4000, config.seed), fit.diagnostics
            with progress.status("phase 3 design: exact operating characteristics and assurance"
                                 + (f", {cfg.simulate} simulated trials" if cfg.simulate else "")):
                return run_design(cfg, seed=config.seed, design=design_inputs, simulation_draws=draws,
                                  simulation_source=source, simulation_dir=simulation_dir,
                                  panel_cache=panel_cache)

    if out is None:
        result = compute(None)
    else:
        def kept() -> str:
            from isletbayes.analyses.simulation import finished_indices

            n = len(finished_indices(out / "simulation")) if cfg.simulate else 0
            if not n:
                return f"nothing was finished; {out} is as it was: rerun the same command to start again"
            return (f"{n} finished simulations are kept in {out / 'simulation'}: rerun the same command to resume "
                    "(they are not run again)")

        interrupts.set_resume_hint(kept)
        with OutputLock(out, on_wait=lambda m: print(f"isletbayes: warning: {m}", file=sys.stderr),
                        option="--out"):
            result = compute(out / "simulation")
            # design.json, the table and the simulations replace the folder together (records hard-linked)
            with staging_folder(out, keep=("simulation",)) as stage:
                result.save(stage)
    if as_json:
        print(to_json(result.summary()))
    else:
        print(format_table(result))
        if out is not None:
            print(f"written: {Path(out) / result.JSON_FILE}, {Path(out) / result.CSV['table']}")


def _mix_label(mix) -> str:
    parts = [f"{w:.2f} Beta({a:.3g}, {b:.3g})" for w, a, b in zip(mix.weights, mix.a, mix.b)]
    return parts[0].split(" ", 1)[1] if len(parts) == 1 else " + ".join(parts)


def _pct(x) -> str:
    return "-" if x is None or x != x else f"{100 * x:.0f}%"


def format_table(result) -> str:
    """The planner's answer first, then the exact OC per n (every n: the sawtooth is visible)."""
    s = result.settings
    lines = [result.estimand_statement]
    if result.rule is not None:
        rule = result.rule
        lines.append(f"success: {rule.statement}; p0 from the {rule.p0_source}")
        lines.append(f"phase 1/2: {result.phase12['statement']}; analysis prior: {result.analysis_prior.name}")
        lines.append("design priors (belief about the estimand's rate):")
        for p in result.design_priors:
            lines.append(f"  {p.name:<12} {p.label:<48} mean {p.mean:.2f} (95% {p.interval95[0]:.2f}-"
                         f"{p.interval95[1]:.2f})")
        lines.append("recommended n per design prior:")
        for rec in result.recommendations:
            lines.append(f"  {rec.design_prior:<12} {rec.reason}")
        lines.append(f"{'n':>5} {'wins at':>8} {'type I':>8} {'power':>7} {'assurance':>10}  targets"
                     f"   (power at rate {rule.p1:.2f}; assurance under {result.design_priors[0].name})")
        for n, row in result.table.iterrows():
            marks = "".join(m if ok else "-" for m, ok in (("T", row["meets_type1"]), ("P", row["meets_power"]),
                                                            ("A", row["meets_assurance"])))
            lines.append(f"{n:>5} {int(row['boundary']):>8} {row['type1']:>8.4f} {row['power_p1']:>7.4f} "
                         f"{row['assurance']:>10.4f}  {marks}")
        lines.append("targets: T type I <= alpha, P power >= target at p1, A assurance >= target")
        if result.p0_panel is not None:
            lines.append("p0 panel (calibrated rule; smallest n meeting every target under the primary design prior):")
            for p0, row in result.p0_panel.iterrows():
                missing = row["first_n"] is None or row["first_n"] != row["first_n"]  # None or NaN
                first = "none in grid" if missing else int(row["first_n"])
                lines.append(f"  p0 = {p0:.3f}{' (benchmark)' if row['benchmark'] else ''}: gamma "
                             f"{row['gamma'] if row['gamma'] == row['gamma'] else '-'}, n = {first}")
    if result.interim is not None and len(result.interim):
        lines.append(f"with interim looks (futility: predictive probability < {s['futility']}; efficacy: "
                     f"{s['efficacy']}):")
        lines.append(f"{'n':>5} {'looks':>10} {'type I (binding / non-binding)':>32} {'power':>7} {'E[N]':>7} "
                     f"{'assurance':>10}")
        for n, row in result.interim.iterrows():
            lines.append(f"{n:>5} {row['looks']:>10} {row['type1_binding']:>15.4f} / {row['type1_nonbinding']:<14.4f} "
                         f"{row['power_p1']:>7.4f} {row['expected_n_p1']:>7.2f} {row['assurance']:>10.4f}")
    if result.simulation is not None:
        sm = result.simulation
        lines.append(f"simulation-based assurance at n = {sm.n}: {sm.assurance:.4f} (MCSE {sm.mcse:.4f}, "
                     f"{sm.n_success}/{sm.n_sims} simulated trials succeeded)")
        if sm.n_diagnostic_failures:
            lines.append(f"FAILED diagnostics in {sm.n_diagnostic_failures} of {sm.n_sims} refits")
        if sm.source_fit is not None and not sm.source_fit.ok:
            lines.append("FAILED diagnostics of the C-peptide fit the simulations draw from: "
                         + "; ".join(sm.source_fit.failures))
    for note in result.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)
