"""``isletbayes data ...``: validate a data file, or summarise the bundled published data.

``data check FILE`` tells the file's kind from its header (or takes ``--kind``), validates every row and
prints a short summary (exit 0) or the one line naming file, line and column of the first problem (exit 2,
through :func:`isletbayes.analyses.cli.main`). ``data summary`` loads all bundled files, cross-checks their
sources and prints what a reader needs: the counts with their sources, the C-peptide means, the comparators
with their time anchors, and what is left out as unverified.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from isletbayes.data.errors import InputError

app = typer.Typer(name="data", help="Check data files; summarise the bundled published data.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

@app.command("check")
def check(
    file: Annotated[Path, typer.Argument(help="CSV file to validate (UTF-8, one header row).")],
    kind: Annotated[str | None, typer.Option(
        "--kind", help="File kind (sources, counts, cpeptide, continuous, comparators, durability, reference, "
                       "participant); told from the header if omitted.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    allow_outliers: Annotated[bool, typer.Option(
        "--allow-outliers", help="Keep values outside their plausibility bounds (listed, not refused).")] = False,
) -> None:
    """Validate FILE (exit 0 with a summary; exit 2 with the first problem, naming line and column)."""
    # --kind is checked here rather than by a typer Choice so that a bad value is an InputError: one line
    # and exit 2 through cli.main, whatever click the installed typer uses internally.
    from isletbayes.data import KINDS, check_file
    from isletbayes.data.io import to_json

    if kind is not None and kind not in KINDS:
        raise InputError(f"unknown kind '{kind}' (one of: {', '.join(KINDS)})", option="--kind")
    import warnings

    from isletbayes.data import ImplausibleValueWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImplausibleValueWarning)  # the summary lists every outlier kept
        summary = check_file(file, kind, allow_outliers=allow_outliers)
    if as_json:
        typer.echo(to_json(summary))
        return
    typer.echo(_format_check(summary))


def _format_check(summary: dict[str, Any]) -> str:
    lines = [f"{summary['file']}: valid {summary['kind']} file ({summary['description']}), {summary['rows']} rows"]
    kind = summary["kind"]
    if kind == "participant":
        cohorts = ", ".join(f"{c} ({n})" for c, n in summary["cohorts"].items())
        lines.append(f"  participants: {summary['participants']} in cohorts {cohorts}")
        lines.append("  measures: " + ", ".join(f"{m} ({n} rows)" for m, n in summary["measures"].items()))
        lines.append("  days: " + ", ".join(str(d) for d in summary["days"]))
        lines.append(f"  below LOD: {summary['below_lod_rows']} rows")
        for measure, conv in summary["converted_units"].items():
            lines.append(f"  converted {measure}: {', '.join(conv['from'])} -> {conv['to']}")
    if kind == "counts":
        for row in summary["default_counts"]:
            lines.append(f"  {row['endpoint']}: {row['r']}/{row['n']} ({row['cohort']}, day {row['timepoint_day']}; "
                         f"{row['source_id']})")
        lines.append(f"  rows not used by default: {summary['rows_not_used_by_default']}")
    if kind == "cpeptide":
        lines.append("  " + ", ".join(f"day {m['day']}: {m['mean_pmol_l']:g} pmol/L (n={m['n']})"
                                      for m in summary["means"]))
    if kind == "comparators":
        lines.append("  default MAP set: " + "; ".join(f"{d['study']} {d['endpoint']} {d['r']}/{d['n']}"
                                                       for d in summary["default_map"]))
    if kind in ("continuous", "durability"):
        lines.append("  measures: " + ", ".join(f"{m} ({n})" for m, n in summary["measures"].items()))
    for outlier in summary.get("outliers", []):
        lines.append(f"  kept outside its plausibility bound (--allow-outliers): line {outlier['line']}, "
                     f"column '{outlier['column']}': {outlier['message']}")
    if "unverified_rows" in summary:
        lines.append(f"  unverified rows (left out by default): {summary['unverified_rows']}")
    return "\n".join(lines)


def published_summary() -> dict[str, Any]:
    """Everything bundled, validated, as plain data (the body of ``data summary --json``).

    Read from the validated rows (:func:`isletbayes.data.loaders.validate_table`), not from DataFrames: the
    command imports neither pandas nor numpy."""
    from isletbayes.data.loaders import PUBLISHED_DIR, is_missing, validate_table

    sources = validate_table("sources")
    citation = dict(zip(sources.column("source_id"), sources.column("citation")))
    counts, cpeptide, continuous, comparators, durability = (
        validate_table(kind, include_unverified=True)
        for kind in ("counts", "cpeptide", "continuous", "comparators", "durability"))

    def provenance(row: dict[str, Any]) -> dict[str, Any]:
        return {"source_id": row["source_id"], "locator": row["locator"], "evidence_type": row["evidence_type"],
                "caveat": row["caveat"]}

    def opt_float(value) -> float | None:
        return None if is_missing(value) else float(value)

    excluded = []
    for table, label in [
        (counts, lambda r: f"{r['endpoint']} {r['r']}/{r['n']} ({r['cohort']})"),
        (cpeptide, lambda r: f"day {r['day']} mean {r['mean_pmol_l']:g} pmol/L"),
        (continuous, lambda r: f"{r['measure']} day {r['day']} {r['statistic']} {r['value']:g} {r['unit']}"),
        (comparators, lambda r: f"{r['study']}: {r['endpoint']}" + ("" if r["r"] is None else f" {r['r']}/{r['n']}")),
        (durability, lambda r: f"{r['study']}: {r['measure']} {r['value']:g} {r['unit']}"),
    ]:
        for row in table.records:
            if row["evidence_type"] == "unverified":
                excluded.append({"file": table.kind, "what": label(row), **provenance(row)})

    return {
        "folder": str(PUBLISHED_DIR),
        "sources": len(sources.records),
        "counts_default": [
            {"endpoint": r["endpoint"], "kind": r["kind"], "cohort": r["cohort"], "timepoint_day": r["timepoint_day"],
             "r": r["r"], "n": r["n"], "citation": citation[r["source_id"]], **provenance(r)}
            for r in counts.flagged("used_by_default")],
        "counts_other": [
            {"endpoint": r["endpoint"], "cohort": r["cohort"], "timepoint_day": r["timepoint_day"], "r": r["r"],
             "n": r["n"], **provenance(r)}
            for r in counts.flagged("used_by_default", False)],
        "cpeptide_means": [
            {"day": r["day"], "mean_pmol_l": float(r["mean_pmol_l"]), "n": r["n"],
             "lod_pmol_l": float(r["lod_pmol_l"]), "spread_kind": r["spread_kind"] or None, "series": r["series"],
             **provenance(r)}
            for r in cpeptide.records],
        "continuous_default": [
            {"measure": r["measure"], "cohort": r["cohort"], "day": r["day"], "statistic": r["statistic"],
             "value": float(r["value"]), "unit": r["unit"], **provenance(r)}
            for r in continuous.flagged("used_by_default")],
        "comparators": [
            {"study": r["study"], "endpoint": r["endpoint"], "r": r["r"], "n": r["n"],
             "percent": opt_float(r["percent"]), "timepoint": r["timepoint"], "time_anchor": r["time_anchor"],
             "group": r["group"], "in_default_map": r["in_default_map"], **provenance(r)}
            for r in comparators.records],
        "durability": [
            {"study": r["study"], "measure": r["measure"], "statistic": r["statistic"], "value": float(r["value"]),
             "unit": r["unit"], "timepoint": r["timepoint"], **provenance(r)}
            for r in durability.records],
        "excluded_unverified": excluded,
    }


def _format_summary(s: dict[str, Any]) -> str:
    out = [f"Bundled published data in {s['folder']}: all files valid; {s['sources']} sources.", ""]
    out.append("Zimislecel counts used by default (efficacy: full dose, n = 12; safety: all dosed, n = 14):")
    for c in s["counts_default"]:
        flag = "" if c["evidence_type"] == "primary" else f" [{c['evidence_type']}]"
        out.append(f"  {c['endpoint']:<22} {c['r']:>2}/{c['n']:<2}  day {c['timepoint_day']:<3}  "
                   f"{c['source_id']} ({c['locator']}){flag}")
    out.append(f"  + {len(s['counts_other'])} rows kept for context, not used by default (interim data cuts, "
               "earlier visits, part A, duplicates)")
    out.append("")
    first = s["cpeptide_means"][0]
    out.append(f"C-peptide cohort means, pmol/L (LLOD {first['lod_pmol_l']:g}; series {first['series']}; "
               f"{'no SD/CI published' if not first['spread_kind'] else first['spread_kind']}):")
    out.append("  " + ", ".join(f"day {m['day']}: {m['mean_pmol_l']:g} (n={m['n']})" for m in s["cpeptide_means"])
               + f"  [{first['source_id']}, {first['evidence_type']}]")
    out.append("")
    out.append("Continuous summaries used by default:")
    for c in s["continuous_default"]:
        out.append(f"  {c['measure']:<13} {c['cohort']:<34} day {c['day']:<3} {c['statistic']:<18} "
                   f"{c['value']:g} {c['unit']}  [{c['source_id']}]")
    out.append("")
    out.append("Comparators (* = in the default MAP set; anchor = what the time point counts from):")
    verified = [c for c in s["comparators"] if c["evidence_type"] != "unverified"]
    study_w = max(len(c["study"]) for c in verified)
    end_w = max(len(c["endpoint"]) for c in verified)
    time_w = max(len(c["timepoint"]) for c in verified)
    for c in verified:
        count = f"{c['r']}/{c['n']}" if c["r"] is not None else f"{c['percent']:g}% (no count)"
        star = "*" if c["in_default_map"] else " "
        out.append(f" {star} {c['study']:<{study_w}}  {c['endpoint']:<{end_w}}  {count:<16} "
                   f"{c['timepoint']:<{time_w}}  {c['time_anchor']:<14}  {c['group']}")
    out.append("")
    out.append("Durability (comparators):")
    durable = [d for d in s["durability"] if d["evidence_type"] != "unverified"]
    study_w = max(len(d["study"]) for d in durable)
    measure_w = max(len(d["measure"]) for d in durable)
    for d in durable:
        out.append(f"  {d['study']:<{study_w}}  {d['measure']:<{measure_w}}  {d['value']:g} {d['unit']}"
                   + (f"  ({d['timepoint']})" if d["timepoint"] else ""))
    out.append("")
    out.append(f"Excluded as unverified (include_unverified=False): {len(s['excluded_unverified'])} rows")
    for e in s["excluded_unverified"]:
        out.append(f"  {e['file']}: {e['what']}  [{e['source_id']}]")
    return "\n".join(out)


@app.command("summary")
def summary(
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Load and validate all bundled published data; print what it holds and where each figure comes from."""
    from isletbayes.data.io import to_json

    s = published_summary()
    typer.echo(to_json(s) if as_json else _format_summary(s))
