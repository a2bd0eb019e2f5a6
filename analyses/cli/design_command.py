"""``isletbayes design``: phase 3 sample size, exact operating characteristics and assurance over a grid of n,
interims, and simulation-based assurance."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from isletbayes.analyses.cli.options import config_command, extra_option

KEYS = ("seed", "design", "data.participant_data", "data.counts", "data.include_unverified",
        "data.allow_outliers", "cpeptide", "sampler")


@config_command(KEYS, [
    extra_option("out", Optional[Path], None, "--out",
                 help="output folder (design.json, design_table.csv; simulation/ for simulated trials)"),
    extra_option("as_json", bool, False, "--json", help="print the result as JSON"),
])
def design(config, out: Path | None = None, as_json: bool = False) -> None:
    """Phase 3 sample size: exact OC and assurance over a grid of n, interims, simulation-based assurance.

    Simulations (--simulate N) draw phase 3 trials from the C-peptide re-analysis posterior, fitted with the
    same cpeptide and sampler settings as `isletbayes cpeptide`."""
    from isletbayes.analyses.design import run_design
    from isletbayes.analyses.inputs import load_inputs
    from isletbayes.data.errors import InputError
    from isletbayes.data.io import to_json

    cfg = config.design
    inputs = load_inputs(config.data)
    phase12 = inputs.count(cfg.endpoint) if cfg.endpoint != "cpeptide" else None
    draws = source = None
    if cfg.simulate:
        if out is None:
            raise InputError("simulations are written as they finish and need an output folder", option="--out")
        from isletbayes.analyses.cpeptide import run_cpeptide

        fit = run_cpeptide(config.cpeptide.model_copy(update={"sensitivity": False, "psense": False}),
                           sampler=config.sampler, seed=config.seed, inputs=inputs)
        draws, source = fit.parameter_draws(4000, config.seed), fit.diagnostics
    try:
        result = run_design(cfg, seed=config.seed, phase12=phase12, simulation_draws=draws,
                            simulation_source=source,
                            simulation_dir=None if out is None else Path(out) / "simulation")
    except KeyboardInterrupt:
        if out is not None:
            from isletbayes.analyses.simulation import finished_indices

            kept = len(finished_indices(Path(out) / "simulation"))
            print(f"isletbayes: interrupted; {kept} finished simulations are kept in {out}; rerun the same command "
                  "to resume", file=sys.stderr)
        raise
    if out is not None:
        result.save(out)
    if as_json:
        print(to_json(result.summary()))
    else:
        print(format_table(result))
        if out is not None:
            print(f"written: {Path(out) / result.JSON_FILE}, {Path(out) / result.CSV['table']}")


def _mix_label(mix) -> str:
    parts = [f"{w:.2f} Beta({a:g}, {b:g})" for w, a, b in zip(mix.weights, mix.a, mix.b)]
    return parts[0].split(" ", 1)[1] if len(parts) == 1 else " + ".join(parts)


def format_table(result) -> str:
    """A plain-text table of the exact OC per n (every n: the sawtooth is visible)."""
    s = result.settings
    lines = []
    if result.design_prior is not None:
        dp = result.design_prior
        lines.append(f"design prior: {dp.spec} -> {_mix_label(dp.mixture)} (mean {dp.mean:.3f}, "
                     f"ESS {dp.ess_moment:.1f}); analysis prior: {result.analysis_prior.spec} -> "
                     f"{_mix_label(result.analysis_prior.mixture)}")
        rule = (f"P(rate > {s['p0']:g} | data) >= {s['gamma']:g}" if s["rule"] == "bayes"
                else f"exact binomial test of rate <= {s['p0']:g} at one-sided alpha {s['alpha']:g}")
        lines.append(f"end point: {s['endpoint']}; success: {rule}; power at p1 = {s['p1']:g}")
        lines.append(f"{'n':>5} {'wins at':>8} {'type I':>8} {'power':>7} {'assurance':>10}  targets")
        for n, row in result.table.iterrows():
            marks = "".join(m if ok else "-" for m, ok in (("T", row["meets_type1"]), ("P", row["meets_power"]),
                                                            ("A", row["meets_assurance"])))
            lines.append(f"{n:>5} {int(row['boundary']):>8} {row['type1']:>8.4f} {row['power_p1']:>7.4f} "
                         f"{row['assurance']:>10.4f}  {marks}")
        rec = result.recommendation
        lines.append("targets: T type I <= alpha, P power >= target at p1, A assurance >= target")
        for found, label in ((rec.type1_power, "type I + power"),
                             (rec.type1_power_assurance, "type I + power + assurance")):
            lines.append(f"smallest n meeting {label}: {found.first if found.first is not None else 'none in grid'}"
                         f" (all n from {found.stable if found.stable is not None else '-'} on)")
        limit = (f"; limit as n grows: P(rate > p0) under the design prior = {rec.assurance_limit:.4f}"
                 if rec.assurance_limit else "")
        lines.append(f"highest assurance in grid: {rec.max_assurance:.4f} at n = {rec.max_assurance_n}{limit}")
    if result.interim is not None and len(result.interim):
        lines.append(f"with futility looks (Lee & Liu predictive probability < {s['futility']:g}):")
        lines.append(f"{'n':>5} {'looks':>12} {'stop if <=':>12} {'type I':>8} {'power':>7} {'PET(p0)':>8} "
                     f"{'E[N](p0)':>9} {'assurance':>10}")
        for n, row in result.interim.iterrows():
            lines.append(f"{n:>5} {row['looks']:>12} {row['futility_boundaries']:>12} {row['type1']:>8.4f} "
                         f"{row['power_p1']:>7.4f} {row['early_stop_p0']:>8.4f} {row['expected_n_p0']:>9.2f} "
                         f"{row['assurance']:>10.4f}")
    if result.simulation is not None:
        sm = result.simulation
        lines.append(f"simulation-based assurance at n = {sm.n}: {sm.assurance:.4f} (MCSE {sm.mcse:.4f}, "
                     f"{sm.n_success}/{sm.n_sims} simulated trials succeeded)")
        if sm.n_diagnostic_failures:
            lines.append(f"FAILED diagnostics in {sm.n_diagnostic_failures} of {sm.n_sims} refits")
        if sm.source_fit is not None and not sm.source_fit.ok:
            lines.append("FAILED diagnostics of the C-peptide fit the simulations draw from: "
                         + "; ".join(sm.source_fit.failures))
    return "\n".join(lines)
