"""``isletbayes durability``: insulin independence to year 5 under donor-islet attrition scenarios."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from isletbayes.analyses.cli.options import config_command, extra_option

KEYS = ("seed", "durability", "data.participant_data", "data.counts", "data.include_unverified",
        "data.allow_outliers")


@config_command(KEYS, [
    extra_option("out", Optional[Path], None, "--out", help="output folder (durability.json)"),
    extra_option("as_json", bool, False, "--json", help="print the result as JSON"),
])
def durability(config, out: Path | None = None, as_json: bool = False) -> None:
    """Durability of insulin independence to year 5 under donor-islet attrition scenarios (not findings)."""
    from isletbayes.analyses.durability import run_durability
    from isletbayes.analyses.inputs import load_inputs
    from isletbayes.data.io import to_json

    inputs = load_inputs(config.data)
    result = run_durability(config.durability, seed=config.seed, phase12=inputs.count("insulin_independence"),
                            durability=inputs.durability)
    if out is not None:
        result.save(out)
    print(to_json(result.summary()) if as_json else format_durability(result))


def format_durability(result) -> str:
    years = next(iter(result.scenarios.values())).projection.index
    lines = [result.label, f"year-1 insulin independence: Beta({result.year1_prior['a']:g}, "
                           f"{result.year1_prior['b']:g}) ({result.year1_prior['from']})",
             "share still insulin independent, median (95% credible interval):",
             f"{'scenario':<26}" + "".join(f"{'year ' + str(y):>20}" for y in years)]
    for name, sc in result.scenarios.items():
        p = sc.projection
        cells = "".join(f"{f'{m:.2f} ({lo:.2f}-{hi:.2f})':>20}" for m, lo, hi in
                        zip(p["median"], p["lower"], p["upper"]))
        lines.append(f"{name:<26}{cells}")
    lines.append("assumptions:")
    for name, sc in result.scenarios.items():
        lines.append(f"  {name}: {sc.description}; {sc.assumptions}")
    return "\n".join(lines)
