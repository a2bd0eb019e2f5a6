"""``isletbayes durability``: insulin independence to year 5 under donor-islet attrition scenarios."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from isletbayes.analyses.cli.console import progress_enabled, progress_reporter
from isletbayes.analyses.cli.options import config_command, extra_option
from isletbayes.analyses.cli.saving import checked_output, locked_output, save_result

KEYS = ("seed", "durability", "data.participant_data", "data.counts", "data.include_unverified",
        "data.allow_outliers")


@config_command(KEYS, [
    extra_option("out", Optional[Path], None, "--out", help="output folder (durability.json)"),
    extra_option("as_json", bool, False, "--json", help="print the result as JSON"),
    extra_option("quiet", bool, False, "--quiet", "-q", help="no progress display (failures are still printed)"),
])
def durability(config, out: Path | None = None, as_json: bool = False, quiet: bool = False) -> None:
    """Durability of insulin independence to year 5 under donor-islet attrition scenarios (not findings)."""
    from isletbayes.analyses import budget, interrupts
    from isletbayes.analyses.durability import DurabilityResult, run_durability
    from isletbayes.analyses.inputs import load_inputs
    from isletbayes.data.io import to_json

    out = checked_output(out, DurabilityResult)
    inputs = load_inputs(config.data)
    budget.check(budget.durability_estimates(config.durability), allow=budget.allow_large(config))
    with locked_output(out):
        with progress_reporter(progress_enabled(quiet, as_json)) as progress, \
                progress.status("durability: multi-state model on a grid, follow-up precision by simulation"):
            result = run_durability(config.durability, seed=config.seed,
                                    phase12=inputs.count("insulin_independence"), durability=inputs.durability)
        interrupts.checkpoint()  # a run cut short by Ctrl-C is never written
        save_result(result, out)
    print(to_json(result.summary()) if as_json else format_durability(result))


def format_durability(result) -> str:
    """The borrowed-not-observed label, the share still insulin independent per year (both estimands), the
    retention since onset, the follow-up answer and the conventions."""
    shares = result.shares
    years = sorted(shares["year"].unique())
    lines = [result.label, f"year-1 state: {result.year1}",
             "share still insulin independent, median (95% credible interval):",
             f"{'estimand':<14}" + "".join(f"{'year ' + format(y, 'g'):>20}" for y in years)]
    for estimand, rows in shares.groupby("estimand", sort=False):
        rows = rows.set_index("year").loc[years]
        cells = "".join(f"{f'{m:.2f} ({lo:.2f}-{hi:.2f})':>20}"
                        for m, lo, hi in zip(rows["median"], rows["lower"], rows["upper"]))
        lines.append(f"{estimand:<14}{cells}")
    lines.append("composite: death counts as loss; hypothetical: as if no one died")
    ret = result.retention
    lines.append("retention since onset (donor-islet attrition, transferred), median (95% credible interval): "
                 + "; ".join(f"{t:g} y {m:.2f} ({lo:.2f}-{hi:.2f})" for t, m, lo, hi in
                             zip(ret["years_since_onset"], ret["median"], ret["lower"], ret["upper"])))
    cfg = result.settings.get("config", {})
    follow = "; ".join(f"{y:g} y: +/- {row['expected_half_width']:.3f} (MCSE {row['mcse']:.3f})"
                       for y, row in result.follow_up.iterrows())
    target = cfg.get("follow_up_half_width")
    answer = ("no follow-up in the grid reaches it" if result.follow_up_answer is None
              else f"{result.follow_up_answer:g} years reach it")
    lines.append(f"expected 95% half-width of 5-year retention with {cfg.get('follow_up_participants', '?')} "
                 f"participants followed: {follow}; target +/- {target}: {answer}")
    lines.append("conventions:")
    lines += [f"  {c}" for c in result.conventions]
    return "\n".join(lines)
