"""``isletbayes cpeptide``: the C-peptide trajectory and graft-function model, on the published means or
participant-level data (``--data``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from isletbayes.analyses.cli.console import console_for, print_failures, save_note
from isletbayes.analyses.cli.options import config_command, extra_option

KEYS = ("seed", "allow_large_jobs", "cpeptide", "sampler", "data.participant_data", "data.cpeptide_means", "data.counts",
        "data.include_unverified", "data.allow_outliers")


@config_command(KEYS, [
    extra_option("out", Optional[Path], None, "--out",
                 help="folder for cpeptide_posterior.nc and cpeptide_summary.json"),
    extra_option("as_json", bool, False, "--json", help="print the JSON summary to stdout"),
])
def cpeptide(config, out: Path | None = None, as_json: bool = False) -> None:
    """Fit the C-peptide trajectory and graft-function model; print and save the summary."""
    from isletbayes.analyses.cpeptide import run_cpeptide
    from isletbayes.analyses.inputs import load_inputs
    from isletbayes.data.io import to_json

    result = run_cpeptide(config.cpeptide, sampler=config.sampler, seed=config.seed,
                          inputs=load_inputs(config.data))
    if out is not None:
        result.save(out)
    if as_json:
        print(to_json(result.summary()))
    else:
        console = console_for()
        print_result(console, result)
        save_note(console, out, result.NETCDF["idata"], result.JSON_FILE)
    print_failures(result.fit_checks())


def print_result(console, result) -> None:
    from rich.table import Table

    title = ("published cohort means" if result.mode == "cohort_means"
             else f"participant data {result.inputs.get('source', '')}")
    console.print(result.model_description)
    table = Table(title=f"C-peptide trajectory and link, fitted to {title}")
    for col in ("parameter", "median", "90% interval", "post sd / prior sd", "data inform it?"):
        table.add_column(col)
    for name, row in result.parameters.iterrows():
        c = result.contraction.loc[name] if name in result.contraction.index else None
        table.add_row(row["label"], f"{row['median']:.3g}", f"{row['q05']:.3g} - {row['q95']:.3g}",
                      "" if c is None else f"{c['ratio']:.2f}", "" if c is None else c["verdict"])
    console.print(table)
    ppc = Table(title="Posterior predictive check of the means")
    for col in ("day", "observed", "predicted median", "90% predictive interval", "P(rep <= obs)"):
        ppc.add_column(col)
    for day, r in result.ppc.iterrows():
        flag = " [red]outside[/red]" if r["outside_90"] else ""
        ppc.add_row(f"{day:g}", f"{r['observed']:.0f}", f"{r['predicted_median']:.0f}",
                    f"{r['predicted_q05']:.0f} - {r['predicted_q95']:.0f}", f"{r['p_rep_below_observed']:.2f}{flag}")
    console.print(ppc)
    for group, name in (("link", "link slope prior"), ("spread", "between-participant spread prior"),
                        ("shape", "rise shape")):
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
    for note in result.notes:
        console.print(f"note: {note}")
    if result.diagnostics_ok:
        console.print("[green]diagnostics passed for every fit[/green]")
