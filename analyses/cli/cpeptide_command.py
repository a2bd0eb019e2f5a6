"""``isletbayes cpeptide``: the C-peptide trajectory and graft-function model, on the published means or
participant-level data (``--data``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from isletbayes.analyses.cli.console import (console_for, print_failures, progress_enabled, progress_reporter,
                                             save_note)
from isletbayes.analyses.cli.options import config_command, extra_option
from isletbayes.analyses.cli.saving import checked_output, locked_output, save_result

KEYS = ("seed", "allow_large_jobs", "cpeptide", "sampler", "data.participant_data", "data.cpeptide_means",
        "data.counts", "data.include_unverified", "data.allow_outliers")


@config_command(KEYS, [
    extra_option("out", Optional[Path], None, "--out",
                 help="folder for cpeptide_posterior.nc and cpeptide_summary.json (replaced whole)"),
    extra_option("as_json", bool, False, "--json", help="print the JSON summary to stdout"),
    extra_option("quiet", bool, False, "--quiet", "-q", help="no progress display (failures are still printed)"),
])
def cpeptide(config, out: Path | None = None, as_json: bool = False, quiet: bool = False) -> None:
    """Fit the C-peptide trajectory and graft-function model; print and save the summary."""
    from isletbayes.analyses import budget, interrupts
    from isletbayes.analyses.cpeptide import CpeptideResult, run_cpeptide
    from isletbayes.analyses.inputs import load_inputs
    from isletbayes.analyses.main_job import data_size
    from isletbayes.data.io import to_json

    out = checked_output(out, CpeptideResult)
    inputs = load_inputs(config.data)
    participants, observations = data_size(inputs)
    budget.check(budget.estimate_cpeptide(config, n_participants=participants, n_observations=observations),
                 allow=budget.allow_large(config))
    with locked_output(out):
        with progress_reporter(progress_enabled(quiet, as_json)) as progress:
            with progress.status("C-peptide model and its sensitivity refits"):
                result = run_cpeptide(config.cpeptide, sampler=config.sampler, seed=config.seed, inputs=inputs)
        interrupts.checkpoint()  # a fit cut short by Ctrl-C is never written
        save_result(result, out)
    if as_json:
        print(to_json(result.summary()))
    else:
        console = console_for()
        print_result(console, result)
        save_note(console, out, result.NETCDF["idata"], result.JSON_FILE)
    print_failures(result.fit_checks())


MODE_TITLES = {"graft_function": "every published aggregate (joint graft-function model)",
               "cohort_means": "the published cohort means"}
SENSITIVITY_TITLES = (("glucocorticoid", "glucocorticoid strategy"), ("link", "link slope prior"),
                      ("spread", "between-participant spread prior"), ("shape", "rise shape (means-only model)"))


def print_result(console, result) -> None:
    from rich.table import Table

    title = MODE_TITLES.get(result.mode) or f"participant data {result.inputs.get('source', '')}"
    console.print(result.model_description)
    table = Table(title=f"C-peptide model fitted to {title}")
    side = "ratio_means_only" in result.contraction.columns
    for col in ("parameter", "median", "90% interval", "post sd / prior sd", "data inform it?",
                *(("means-only model",) if side else ())):
        table.add_column(col)
    for name, row in result.parameters.iterrows():
        c = result.contraction.loc[name] if name in result.contraction.index else None
        cells = [row["label"], f"{row['median']:.3g}", f"{row['q05']:.3g} - {row['q95']:.3g}",
                 "" if c is None else f"{c['ratio']:.2f}", "" if c is None else c["verdict"]]
        if side:
            other = None if c is None else c["ratio_means_only"]
            cells.append("-" if other is None or other != other else f"{other:.2f} ({c['verdict_means_only']})")
        table.add_row(*cells)
    console.print(table)
    ppc = Table(title="Posterior predictive check of the means")
    for col in ("day", "observed", "predicted median", "90% predictive interval", "P(rep <= obs)"):
        ppc.add_column(col)
    for day, r in result.ppc.iterrows():
        flag = " [red]outside[/red]" if r["outside_90"] else ""
        ppc.add_row(f"{day:g}", f"{r['observed']:.0f}", f"{r['predicted_median']:.0f}",
                    f"{r['predicted_q05']:.0f} - {r['predicted_q95']:.0f}", f"{r['p_rep_below_observed']:.2f}{flag}")
    console.print(ppc)
    for group, name in SENSITIVITY_TITLES:
        rows = result.sensitivity_group(group)
        if not rows:
            continue
        sens = Table(title=f"Sensitivity to the {name}: posterior median [90% interval]")
        sens.add_column("parameter")
        for row in rows:
            sens.add_column(row.label)
        names = list(max(rows, key=lambda r: len(r.parameters)).parameters.index)
        for n in names:
            cells = []
            for row in rows:
                p = row.parameters.loc[n] if n in row.parameters.index else None
                cells.append("-" if p is None else f"{p['median']:.3g} [{p['q05']:.3g}, {p['q95']:.3g}]")
            sens.add_row(n, *cells)
        console.print(sens)
    if result.psense is not None:
        ps = Table(title="Power-scaling sensitivity (threshold 0.05)")
        for col in ("parameter", "prior", "likelihood", "diagnosis"):
            ps.add_column(col)
        for name, r in result.psense.iterrows():
            ps.add_row(name, f"{r['prior']:.3f}", f"{r['likelihood']:.3f}", r["diagnosis"])
        console.print(ps)
    check = result.model_check
    colour = "red" if check.misfit_flagged else "yellow"
    head = "MODEL CHECK FLAGS A MISFIT" if check.misfit_flagged else "model check"
    console.print(f"[bold {colour}]{head}[/bold {colour}]: {check.statement}")
    if result.holdout is not None:
        colour = "red" if result.holdout.outside_90 else "yellow"
        console.print(f"[bold {colour}]holdout check[/bold {colour}]: {result.holdout.statement}")
    if result.calibration is not None:
        cal = Table(title="Simulation-based calibration (kept run, analyses/results/sbc_cpeptide.json)")
        for col in ("model", "replicates", "smallest rank-uniformity p", "fails below (Bonferroni)",
                    "fits failing a diagnostic"):
            cal.add_column(col)
        for model, r in result.calibration.iterrows():
            cal.add_row(str(model), f"{r['replicates']}", f"{r['min_rank_p']:.2g}", f"{r['rank_p_threshold']:.2g}",
                        f"{r['failing_fits']}")
        console.print(cal)
    for note in result.notes:
        console.print(f"note: {note}")
    if result.diagnostics_ok:
        console.print("[green]diagnostics passed for every fit[/green]")
