"""``isletbayes binary``: the binary end points under the prior panel, with MAP priors, and the safety events."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from isletbayes.analyses.cli.console import (console_for, print_failures, progress_enabled, progress_reporter,
                                             save_note)
from isletbayes.analyses.cli.options import config_command, extra_option
from isletbayes.analyses.cli.saving import checked_output, locked_output, save_result

KEYS = ("seed", "allow_large_jobs", "binary", "priors", "sampler", "sections.safety", "data.counts", "data.comparators",
        "data.include_unverified", "data.allow_outliers")


@config_command(KEYS, [
    extra_option("out", Optional[Path], None, "--out", help="output folder (binary.json, map_<end point>.nc)"),
    extra_option("as_json", bool, False, "--json", help="print the result as JSON"),
    extra_option("quiet", bool, False, "--quiet", "-q", help="no progress display (failures are still printed)"),
])
def binary(config, out: Path | None = None, as_json: bool = False, quiet: bool = False) -> None:
    """Posteriors of the binary end points under a panel of priors (exact), with MAP priors from comparators."""
    from isletbayes.analyses import budget, interrupts
    from isletbayes.analyses.binary import BinaryResult, run_binary
    from isletbayes.analyses.inputs import load_inputs
    from isletbayes.data.io import to_json

    out = checked_output(out, BinaryResult)
    inputs = load_inputs(config.data)
    budget.check(budget.estimate_binary(config), allow=budget.allow_large(config))
    with locked_output(out):
        with progress_reporter(progress_enabled(quiet, as_json)) as progress, \
                progress.status("binary end points: prior panel, MAP priors from the comparator studies"):
            result = run_binary(config.binary, priors=config.priors, sampler=config.sampler, seed=config.seed,
                                inputs=inputs, safety=config.sections.safety)
        interrupts.checkpoint()  # a fit cut short by Ctrl-C is never written
        save_result(result, out)
    if as_json:
        print(to_json(result.summary()))
    else:
        console = console_for()
        for item in format_tables(result):
            console.print(item)
        save_note(console, out, result.JSON_FILE)
    print_failures(result.fit_checks())


def _fmt(x: float, spec: str) -> str:
    return "n/a" if x is None or x != x else format(x, spec)


def _comparison_items(ep) -> list[Any]:
    """The headline (the comparator as a distribution), the tau-prior block and the tipping point of one end
    point, where it has comparator studies."""
    from rich.table import Table
    from rich.text import Text

    if ep.comparison is None:
        return []
    delta = ep.comparison.attrs.get("delta", float("nan"))
    items: list[Any] = []
    headline = Table(title=f"{ep.endpoint}: zimislecel against the donor-islet rate as a distribution (robust MAP "
                           "predictive of a new donor-islet study)", title_justify="left")
    for col in ("prior", "P(rate - donor rate > 0)", f"P(rate - donor rate > {delta:g})"):
        headline.add_column(col, justify="left" if col == "prior" else "right")
    for name, row in ep.comparison.iterrows():
        headline.add_row(name, f"{row['p_better']:.0%}", f"{row['p_better_by_delta']:.0%}")
    items.append(headline)
    if ep.tau_panel:
        tau = Table(title="the amount of borrowing is the tau prior (uniform prior on zimislecel's rate)",
                    title_justify="left")
        for col in ("tau prior", "MAP ESS (ELIR)", "tau median", "MAP mean (95%)", "P(better)",
                    f"P(better by {delta:g})", "conclusive"):
            tau.add_column(col, justify="left" if col == "tau prior" else "right")
        for row in ep.tau_panel:
            lo, hi = row.map_interval95
            tau.add_row(row.tau_prior, f"{row.map_ess_elir:.1f}", f"{row.tau_median:.2f}",
                        f"{row.map_mean:.2f} ({lo:.2f}-{hi:.2f})", f"{row.p_better:.0%}",
                        f"{row.p_better_by_delta:.0%}", "yes" if row.conclusive else "no")
        items.append(tau)
    tp = ep.tipping_point
    if tp is not None:
        items.append(Text(f"tipping point: P(rate > {tp.benchmark:.2f}, a fixed benchmark) >= {tp.probability:g} "
                          f"{tp.verdict}"))
    return items


def format_tables(result) -> list[Any]:
    """One rich table per end point (rows: priors) plus a safety table, as a list of renderables."""
    from rich.table import Table
    from rich.text import Text

    items: list[Any] = []
    for endpoint, ep in result.endpoints.items():
        lo, hi = ep.clopper_pearson95
        m = ep.predictive_pmf.shape[0] - 1
        title = (f"{endpoint}: {ep.r}/{ep.n} (observed {ep.r / ep.n:.3f}; Clopper-Pearson exact 95% CI "
                 f"{lo:.3f}-{hi:.3f}); ESS = prior ELIR effective sample size; conflict p = Box's "
                 f"prior-predictive p; next {m}: predicted responders, mean (95% interval)")
        items += _comparison_items(ep)
        table = Table(title=title, title_justify="left")
        for col in ("prior", "prior mean", "ESS", "post. mean", "median", "95% ETI", "95% HDI"):
            table.add_column(col, justify="left" if col == "prior" else "right")
        for label, value in ep.thresholds.items():
            table.add_column(f"P(>{value:.2f}) fixed" if label == "comparator" else f"P(>{label})", justify="right")
        table.add_column("conflict p", justify="right")
        table.add_column(f"next {m}", justify="right")
        for name, row in ep.table.iterrows():
            cells = [name, f"{row['prior_mean']:.2f}", _fmt(row["ess_elir"], ".1f"), f"{row['mean']:.3f}",
                     f"{row['median']:.3f}", f"{row['eti_low']:.2f}-{row['eti_high']:.2f}",
                     f"{row['hdi_low']:.2f}-{row['hdi_high']:.2f}"]
            cells += [f"{row[f'p_above_{label}']:.3f}" for label in ep.thresholds]
            cells.append(_fmt(row["conflict_p_box"], ".2f"))
            cells.append(f"{row['predictive_mean']:.1f} ({row['predictive_low']:.0f}-{row['predictive_high']:.0f})")
            table.add_row(*cells)
        items.append(table)
        if ep.map is not None:
            diag = ep.map.diagnostics
            studies = ", ".join(f"{s.study} {s.r}/{s.n}" for s in ep.comparators.studies.itertuples())
            line = (f"MAP from {studies}; tau mean {ep.map.tau['mean']:.3f} (97.5% {ep.map.tau['q97.5']:.3f}); "
                    f"mixture: {ep.map.mixture}")
            items.append(Text(line))
            if diag.ok:
                items.append(Text(f"MAP fit diagnostics passed (R-hat {diag.max_rhat:.3f}, min bulk ESS "
                                  f"{diag.min_ess_bulk:.0f}, {diag.divergences} divergences)", style="green"))
        for note in ep.notes:
            items.append(Text(f"note: {note}", style="yellow"))
    if result.safety:
        table = Table(title="Safety (exact posteriors)", title_justify="left")
        for col in ("event", "r/n", "prior", "mean", "95% ETI", "P(>5%)", "P(>10%)", "P(>20%)", "exact 95% CI"):
            table.add_column(col, justify="left" if col in ("event", "prior") else "right")
        for endpoint, ev in result.safety.items():
            for name, row in ev.table.iterrows():
                table.add_row(endpoint, f"{ev.r}/{ev.n}", name, f"{row['mean']:.3f}",
                              f"{row['eti_low']:.2f}-{row['eti_high']:.2f}", f"{row['p_above_0.05']:.3f}",
                              f"{row['p_above_0.1']:.3f}", f"{row['p_above_0.2']:.3f}",
                              f"{ev.clopper_pearson95[0]:.2f}-{ev.clopper_pearson95[1]:.2f}")
        items.append(table)
        for ev in result.safety.values():
            items.append(Text(ev.plain_language))
    return items
