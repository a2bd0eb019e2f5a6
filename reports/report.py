"""The posterior report: one self-contained HTML file (and a PDF of it) built from a results folder.

:func:`build_report` reads ``<out>/results.json`` (written by :mod:`isletbayes.analyses.main_job`), loads each
section's saved result with its analysis' own ``load()``, draws the figures (:mod:`isletbayes.reports.figures`),
and renders ``templates/report.html.j2`` with jinja2, autoescape on, so any text that comes from a data file or
a configuration is escaped. Figures are embedded PNG data URIs; the page loads nothing from anywhere else.
The PDF is the same HTML printed by headless Chromium, or by WeasyPrint where no Chromium is installed
(:mod:`isletbayes.reports.pdf`); which one is stated in the report's provenance.

Every number the report quotes in its plain-language summary is returned in ``ReportFiles.numbers`` and stored
in results.json under ``report.numbers``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from isletbayes.data.errors import InputError
from isletbayes.data.io import write_text_atomic
from isletbayes.reports import figures

TEMPLATE = "report.html.j2"
HTML_NAME = "report.html"
PDF_NAME = "report.pdf"
TITLE = "Zimislecel (VX-880) phase 1/2: a Bayesian re-analysis"
PRIOR_SHORT = {"uniform": "uniform", "jeffreys": "Jeffreys", "sceptical": "sceptical", "enthusiastic": "enthusiastic",
               "map": "MAP", "robust_map": "robust MAP"}


# --- small formatting helpers -----------------------------------------------------------------------------


def cell(text: Any, cls: str | None = None, badge: str | None = None) -> dict[str, Any]:
    return {"text": "" if text is None else str(text), "cls": cls, "badge": badge}


def num(x: Any, fmt: str = ".3f") -> dict[str, Any]:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return cell("n/a", "num")
    return cell(format(x, fmt), "num")


def pct(x: float | None, digits: int = 0) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{100 * x:.{digits}f}%"


def interval(lo: float, hi: float, digits: int = 0) -> str:
    return f"{pct(lo, digits)} to {pct(hi, digits)}"


def table(columns: list[str], rows: list[list[dict] | dict], caption: str = "", note: str = "") -> dict:
    out_rows = []
    for row in rows:
        if isinstance(row, dict) and "cells" in row:
            out_rows.append(row)
        else:
            out_rows.append({"cells": row, "fail": False})
    return {"kind": "table", "columns": columns, "rows": out_rows, "caption": caption, "note": note}


def text(t: str) -> dict:
    return {"kind": "text", "text": t}


def heading(t: str) -> dict:
    return {"kind": "heading", "text": t}


def note(t: str) -> dict:
    return {"kind": "note", "text": t}


def figure(fig, alt: str, caption: str) -> dict:
    return {"kind": "figure", "uri": figures.to_data_uri(fig), "alt": alt, "caption": caption}


@dataclass
class Section:
    id: str
    title: str
    blocks: list[dict] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)
    unavailable: str = ""


@dataclass
class ReportContext:
    """What the section builders add to as they go: summary lines, quoted numbers, alerts, assumptions."""

    index: dict[str, Any]
    out: Path
    summary: list[str] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)
    alerts: list[str] = field(default_factory=list)
    assumptions: list[tuple[str, str, str]] = field(default_factory=list)  # (what, value, where it comes from)
    data: dict[str, Any] = field(default_factory=dict)  # the input tables, reloaded
    problems: list[str] = field(default_factory=list)  # sections that could not be drawn

    @property
    def config(self) -> dict[str, Any]:
        return self.index["config"]

    def section_index(self, name: str) -> dict[str, Any]:
        return self.index["sections"].get(name, {"status": "unavailable", "reason": "not in results.json"})


@dataclass
class ReportFiles:
    html: Path
    pdf: Path | None
    pdf_engine: str | None
    pdf_error: str | None
    numbers: dict[str, Any]

    def as_dict(self, out: Path) -> dict[str, Any]:
        def rel(p: Path | None) -> str | None:
            return None if p is None else str(Path(p).relative_to(out)) if Path(p).is_relative_to(out) else str(p)

        return {"html": rel(self.html), "pdf": rel(self.pdf), "pdf_engine": self.pdf_engine,
                "pdf_error": self.pdf_error, "numbers": self.numbers}


# --- sections ---------------------------------------------------------------------------------------------


def _load_inputs(ctx: ReportContext):
    """The data the analyses used, reloaded from the files recorded in results.json (validated again)."""
    from isletbayes import data as d

    cfg = ctx.config["data"]
    inc = cfg.get("include_unverified", False)
    return {
        "counts": d.load_counts(cfg.get("counts"), include_unverified=True),
        "cpeptide": d.load_cpeptide_means(cfg.get("cpeptide_means"), include_unverified=inc),
        "comparators": d.load_comparators(cfg.get("comparators"), include_unverified=True),
        "sources": d.load_sources(),
    }


def _evidence_badge(kind: str) -> dict:
    return cell(kind, badge=kind if kind in ("primary", "secondary", "unverified") else None)


def data_section(ctx: ReportContext, inputs: dict) -> Section:
    sec = Section("data", "The data and where each figure comes from")
    sec.blocks.append(text(
        "Only aggregate results of the trial are public. Every number used below is listed here with its source, "
        "where in the source it appears, and its evidence type: primary (the paper's abstract, a congress "
        "abstract, a sponsor release or a registry), secondary (news or summaries quoting primary material) or "
        "unverified (not used as a model input unless asked for)."))
    counts = inputs["counts"]
    used = counts[counts["used_by_default"]] if "used_by_default" in counts.columns else counts
    rows = []
    for r in used.itertuples():
        rows.append([cell(r.endpoint.replace("_", " ")), cell(r.kind), cell(r.cohort.replace("_", " ")),
                     cell("" if r.timepoint_day != r.timepoint_day else int(r.timepoint_day), "num"),
                     cell(f"{int(r.r)}/{int(r.n)}", "num"), cell(r.definition), cell(r.source_id),
                     _evidence_badge(r.evidence_type), cell(r.caveat if isinstance(r.caveat, str) else "")])
    sec.blocks.append(table(["end point", "kind", "cohort", "day", "r/n", "definition", "source", "evidence",
                             "caveat"], rows, caption="Counts analysed (zimislecel, full dose and all dosed)",
                            note=f"{len(counts) - len(used)} further rows (earlier data cuts, other cohorts) are "
                                 "kept in the data files for context and not analysed."))
    means = inputs["cpeptide"]
    if len(means):
        rows = [[cell(int(r.day), "num"), cell(f"{r.mean_pmol_l:g}", "num"), cell(int(r.n), "num"),
                 cell(f"{r.lod_pmol_l:g}", "num"),
                 cell(f"{r.spread_kind} {r.spread_value:g}" if isinstance(r.spread_kind, str) and r.spread_kind
                      else "none published"),
                 cell(r.series.replace("_", " ")), cell(r.source_id), _evidence_badge(r.evidence_type)]
                for r in means.itertuples()]
        sec.blocks.append(table(["day", "mean (pmol/L)", "n", "LLOD", "spread", "series", "source", "evidence"],
                                rows, caption="Cohort-mean C-peptide (pmol/L)",
                                note=str(means["caveat"].iloc[0]) if isinstance(means["caveat"].iloc[0], str)
                                else ""))
    comps = inputs["comparators"]
    comps = comps[comps["r"].notna() & comps["n"].notna()]
    rows = []
    for r in comps.itertuples():
        rows.append([cell(r.study), cell(r.endpoint.replace("_", " ")), cell(f"{int(r.r)}/{int(r.n)}", "num"),
                     cell(r.timepoint), cell(str(r.time_anchor).replace("_", " ")),
                     cell(str(r.group).replace("_", " ")), cell("yes" if r.in_default_map else "no"),
                     cell(r.source_id), _evidence_badge(r.evidence_type)])
    sec.blocks.append(table(["study", "end point", "r/n", "time point", "anchored to", "group", "in default MAP",
                             "source", "evidence"], rows, caption="Comparator studies (with counts)"))
    src = inputs["sources"]
    cited = set(used["source_id"]) | set(means["source_id"]) | set(comps["source_id"])
    rows = [[cell(r.source_id), cell(r.citation), cell(r.url if isinstance(r.url, str) else "", "url"),
             _evidence_badge(r.evidence_type)] for r in src.itertuples() if r.source_id in cited]
    sec.blocks.append(table(["source", "citation", "address", "evidence"], rows, caption="Sources"))
    pdata = ctx.index.get("data", {}).get("participant_data")
    if pdata:
        sec.blocks.append(note(f"Participant-level data were supplied ({pdata['path']}, SHA-256 "
                               f"{pdata['sha256'][:16]}...) and replace the published aggregates where a model "
                               "can use them."))
    return sec


def design_section(ctx: ReportContext, result) -> Section:
    sec = Section("design", "Phase 3 planning: operating characteristics and assurance")
    s = result.settings
    tbl = result.table
    if not tbl:
        sec.unavailable = "The design run produced no exact table (no binary end point)."
        return sec
    n = np.array([row["n"] for row in tbl])
    rule = (f"the posterior probability that the rate exceeds {s['p0']:g} is at least {s['gamma']:g}"
            if s["rule"] == "bayes" else
            f"an exact one-sided binomial test of rate <= {s['p0']:g} rejects at level {s['alpha']:g}")
    dp = result.design_prior or {}
    sec.blocks.append(text(
        f"A single-arm phase 3 trial with end point {s['endpoint'].replace('_', ' ')} declares success when "
        f"{rule}. The analysis prior ({result.analysis_prior['spec']}) sets the decision boundary; the design prior "
        f"({dp.get('spec', 'n/a')}, mean {dp.get('mean', float('nan')):.2f}, effective sample size "
        f"{dp.get('ess_moment', float('nan')):.1f}) expresses what we believe the true rate to be, and averaging "
        "the probability of success over it gives the assurance. Every outcome is enumerated exactly; the "
        "curves are drawn as steps because a discrete design's error rates jump as n grows (the sawtooth)."))
    rec = result.recommendation
    marks = {}
    first = rec.get("type1_power", {}).get("first")
    if first is not None:
        marks[f"n = {first}"] = first
    fig = figures.design_curves(
        n, {"type I error (rate = p0)": np.array([r["type1"] for r in tbl]),
            f"power at rate {s['p1']:g}": np.array([r["power_p1"] for r in tbl])},
        targets={f"alpha {s['alpha']:g}": s["alpha"], f"power target {s['power_target']:g}": s["power_target"]},
        title="Operating characteristics", marks=marks)
    sec.blocks.append(figure(fig, "Type I error and power against phase 3 sample size",
                             f"Type I error at rate {s['p0']:g} and power at rate {s['p1']:g} for each n from "
                             f"{n[0]} to {n[-1]} (exact)."))
    fig = figures.design_curves(
        n, {"assurance": np.array([r["assurance"] for r in tbl])},
        targets={f"assurance target {s['assurance_target']:g}": s["assurance_target"],
                 **({"limit as n grows": rec["assurance_limit"]} if rec.get("assurance_limit") else {})},
        title="Assurance (probability of success under the design prior)", marks=marks)
    sec.blocks.append(figure(fig, "Assurance against phase 3 sample size",
                             "Probability of success averaged over the design prior, for each n (exact)."))
    rows = []
    for key, label in (("type1_power", "type I error and power targets"),
                       ("type1_power_assurance", "type I error, power and assurance targets"),
                       ("assurance_only", "assurance target")):
        r = rec.get(key, {})
        rows.append([cell(label), cell(r.get("first") if r.get("first") is not None else "none in grid", "num"),
                     cell(r.get("stable") if r.get("stable") is not None else "-", "num")])
    sec.blocks.append(table(["smallest n meeting", "first n", "every n from"], rows,
                            caption="Sample size",
                            note=f"Highest assurance in the grid: {rec['max_assurance']['assurance']:.3f} at n = "
                                 f"{rec['max_assurance']['n']}."))
    chosen = next((row for row in tbl if row["n"] == first), None)
    ctx.numbers["design"] = {"endpoint": s["endpoint"], "p0": s["p0"], "p1": s["p1"], "first_n": first,
                             "type1_at_first_n": chosen["type1"] if chosen else None,
                             "power_at_first_n": chosen["power_p1"] if chosen else None,
                             "assurance_at_first_n": chosen["assurance"] if chosen else None,
                             "max_assurance": rec["max_assurance"]}
    if first is not None and chosen is not None:
        ctx.summary.append(
            f"Phase 3 planning: with the rule '{rule}', about {first} participants keep the type I error at "
            f"{pct(chosen['type1'], 1)} (target {pct(s['alpha'], 1)}) with {pct(chosen['power_p1'])} power if the "
            f"true rate is {pct(s['p1'])}. Averaged over what phase 1/2 suggests about the rate, the probability "
            f"of success (assurance) at that size is {pct(chosen['assurance'])}.")
    else:
        ctx.summary.append(f"Phase 3 planning: no sample size from {n[0]} to {n[-1]} meets both the type I error "
                           "and the power target under this configuration.")
    ctx.assumptions.append(("phase 3 null and alternative rates", f"p0 = {s['p0']:g}, p1 = {s['p1']:g}",
                            "configuration (design.p0, design.p1); p0 defaults to the donor-islet rate 16/36"))
    ctx.assumptions.append(("design prior", f"{dp.get('spec')} (robust weight {dp.get('robust_weight', 0):g})",
                            "configuration (design.design_prior): how far phase 1/2 is believed to carry over"))
    return sec


def durability_section(ctx: ReportContext, result) -> Section:
    sec = Section("durability", "Beyond year 1: durability scenarios")
    sec.blocks.append(note(result.label))
    sec.blocks.append(text(
        f"The year-1 rate is the phase 1/2 posterior, Beta({result.year1_prior['a']:g}, "
        f"{result.year1_prior['b']:g}) ({result.year1_prior['from']}). After year 1 each scenario applies a loss "
        "of insulin independence fitted to one published deceased-donor islet figure, with that figure's "
        "sampling uncertainty carried through."))
    years = np.asarray(next(iter(result.scenarios.values()))["years"])
    fig = figures.scenario_bands(years, {name.replace("_", " "): sc for name, sc in result.scenarios.items()})
    sec.blocks.append(figure(fig, "Projected share insulin independent in years 1 to 5 under each scenario",
                             "Median and 95% interval of the share still insulin independent, per scenario."))
    rows = []
    for name, sc in result.scenarios.items():
        rows.append([cell(name.replace("_", " "))]
                    + [cell(f"{m:.2f} ({lo:.2f}-{hi:.2f})", "num")
                       for m, lo, hi in zip(sc["median"], sc["lower"], sc["upper"], strict=True)]
                    + [cell(sc.get("assumptions", ""))])
    sec.blocks.append(table(["scenario", *[f"year {y}" for y in years], "assumption"], rows,
                            caption="Share insulin independent, median (95% interval)"))
    year5 = {name: sc["median"][-1] for name, sc in result.scenarios.items()}
    ctx.numbers["durability"] = {"year5_median": year5}
    lo_name, hi_name = min(year5, key=year5.get), max(year5, key=year5.get)
    ctx.summary.append(
        "Durability is not observed: zimislecel has one year of published follow-up. Borrowing attrition from "
        f"donor-islet studies, the share still insulin independent at year 5 ranges from {pct(year5[lo_name])} "
        f"({lo_name.replace('_', ' ')}) to {pct(year5[hi_name])} ({hi_name.replace('_', ' ')}) across scenarios.")
    ctx.assumptions.append(("graft attrition after year 1", "donor-islet scenarios",
                            "data/published/durability.csv; no zimislecel data beyond one year"))
    return sec


def _threshold_label(label: str, value: float) -> str:
    return f"comparator rate {value:.2f}" if label == "comparator" else f"{value:g}"


def binary_section(ctx: ReportContext, result) -> Section:
    from isletbayes.models.mixtures import BetaMixture

    if not ctx.config["sections"].get("binary", True):
        return None
    sec = Section("binary", "Binary end points under a panel of priors, and the MAP prior")
    summary = result.to_dict()
    eps = summary["endpoints"]
    sec.blocks.append(text(
        "Each end point is r of n participants. Its rate gets an exact posterior (a beta mixture) under each prior "
        "of the panel: reference priors (uniform, Jeffreys), a sceptical prior centred on the comparator "
        "(donor-islet) rate, an enthusiastic one, and the meta-analytic-predictive (MAP) prior borrowed from the "
        "comparator studies, plain and robustified. Where the priors disagree, the data alone cannot settle the "
        "question; where they agree, the conclusion does not hang on the prior."))
    numbers: dict[str, Any] = {}
    for ep, e in eps.items():
        m = e.get("map")
        if not m:
            continue
        name = ep.replace("_", " ")
        sec.blocks.append(heading(f"Comparator studies and the MAP prior: {name}"))
        studies = [{"label": st["study"], "r": st["r"], "n": st["n"], "group": st.get("group", "")}
                   for st in e["comparators"]["studies"]]
        tp = m["theta_pred"]
        summaries = [{"label": "MAP prior (predictive for a new study)", "mean": tp["mean"], "lo": tp["q2.5"],
                      "hi": tp["q97.5"], "colour": figures.PALETTE[3]}]
        if m.get("robust_mixture"):
            rob = BetaMixture.from_dict(m["robust_mixture"])
            lo, hi = rob.eti(0.95)
            summaries.append({"label": "robust MAP prior", "mean": rob.mean(), "lo": lo, "hi": hi,
                              "colour": figures.PALETTE[4]})
        if "uniform" in e["priors"]:
            u = e["priors"]["uniform"]
            summaries.append({"label": f"zimislecel {e['r']}/{e['n']} (uniform-prior posterior)", "mean": u["mean"],
                              "lo": u["eti95"][0], "hi": u["eti95"][1], "colour": figures.PALETTE[0]})
        fig = figures.forest_plot(studies, summaries, xlabel=f"{name} rate")
        sec.blocks.append(figure(fig, f"Forest plot of comparator studies for {name} with the MAP prior",
                                 "Comparator studies (observed rate, Jeffreys 95% interval; marker size grows "
                                 "with n) and, below, the MAP prior, the robust MAP prior and zimislecel's own "
                                 "posterior (diamonds: mean and 95% interval)."))
        tau = m["tau"]
        ess = m.get("ess", {})
        ess_map = ess.get("map", ess) if isinstance(ess, dict) else {}
        rows = [[cell("between-study sd tau (logit scale)"),
                 cell(f"{tau['median']:.2f} (95% CrI {tau['q2.5']:.2f} to {tau['q97.5']:.2f})", "num")],
                [cell("MAP prior: predictive rate for a new study"),
                 cell(f"{tp['mean']:.2f} (95% {tp['q2.5']:.2f} to {tp['q97.5']:.2f})", "num")],
                [cell("beta-mixture approximation"), cell(_mixture_label(m["mixture"]))]]
        if m.get("robust_mixture"):
            rows.append([cell("robust MAP prior"), cell(_mixture_label(m["robust_mixture"]))])
        for method in ("elir", "moment", "morita"):
            value = ess_map.get(method) if isinstance(ess_map, dict) else None
            if isinstance(value, (int, float)):
                rows.append([cell(f"effective sample size of the MAP prior ({method})"), num(value, ".1f")])
        sec.blocks.append(table(["quantity", "value"], rows, caption=f"MAP prior for {name}",
                                note=f"Comparators: {e['comparators']['basis']}; pooled rate "
                                     f"{e['comparators']['pooled_rate']:.2f}."))
    panels = []
    for ep, e in eps.items():
        curves = {PRIOR_SHORT.get(name, name): BetaMixture.from_dict(pr["posterior"])
                  for name, pr in e["priors"].items()}
        p0 = e["thresholds"].get("comparator", next(iter(e["thresholds"].values()), None))
        panels.append({"title": ep.replace("_", " "), "r": e["r"], "n": e["n"], "p0": p0, "curves": curves})
    if panels:
        sec.blocks.append(heading("Posteriors under the prior panel"))
        fig = figures.posterior_densities(panels)
        sec.blocks.append(figure(fig, "Posterior densities of each end point's rate under each prior",
                                 "Posterior density of each rate under each prior of the panel; the triangle marks "
                                 "the observed proportion, the dashed line the pooled comparator rate (or, for an "
                                 "end point without comparator studies, the first threshold)."))
    for ep, e in eps.items():
        thr = e["thresholds"]
        rows = []
        for pr in e["priors"].values():
            conflict = pr["conflict"]["p_box"]
            rows.append({"fail": False, "cells": [
                cell(pr["label"]), num(pr["prior_mean"], ".2f"), num(pr["ess"].get("moment"), ".1f"),
                num(pr["mean"], ".3f"), cell(f"{pr['eti95'][0]:.3f} to {pr['eti95'][1]:.3f}", "num")]
                + [num(pr["p_above"].get(lbl), ".3f") for lbl in thr]
                + [cell(f"{conflict:.3f}", "num fail" if conflict < 0.05 else "num")]})
        sec.blocks.append(table(
            ["prior", "prior mean", "prior ESS", "posterior mean", "95% credible interval",
             *[f"P(rate > {_threshold_label(lbl, v)})" for lbl, v in thr.items()], "prior-data conflict p"],
            rows, caption=f"{ep.replace('_', ' ')}: {e['r']}/{e['n']} (Clopper-Pearson 95% "
                          f"{e['clopper_pearson95'][0]:.3f} to {e['clopper_pearson95'][1]:.3f})",
            note="Prior ESS: moment-matched effective sample size. Conflict: Box's prior-predictive p-value (small = "
                 "the data are surprising under that prior)."))
        for line in e.get("notes", []):
            sec.blocks.append(note(line))
        means = {name: pr["mean"] for name, pr in e["priors"].items()}
        numbers[ep] = {"r": e["r"], "n": e["n"], "posterior_mean": means,
                       "eti95": {name: pr["eti95"] for name, pr in e["priors"].items()},
                       "p_above": {name: pr["p_above"] for name, pr in e["priors"].items()}}
    ctx.numbers["binary"] = numbers
    ii = eps.get("insulin_independence")
    if ii:
        numbers["insulin_independence_observed"] = ii["r"] / ii["n"]
        ctx.numbers["binary"]["insulin_independence_observed"] = ii["r"] / ii["n"]
        line = f"Insulin independence at day 365: {ii['r']} of {ii['n']} ({pct(ii['r'] / ii['n'])})."
        u = ii["priors"].get("uniform")
        comp = ii["thresholds"].get("comparator")
        if u:
            line += (f" With a uniform prior the underlying rate is {pct(u['mean'])} (95% credible interval "
                     f"{interval(*u['eti95'])})")
            if comp is not None:
                line += (f", and the probability that it exceeds the donor-islet comparator rate of {pct(comp)} is "
                         f"{pct(u['p_above']['comparator'], 1)}")
            line += "."
        means = [pr["mean"] for pr in ii["priors"].values()]
        if len(means) > 1:
            sc = ii["priors"].get("sceptical")
            line += (f" Across the prior panel the posterior mean ranges from {pct(min(means))} to "
                     f"{pct(max(means))}")
            if sc and comp is not None:
                line += (f"; even the sceptic, who expects no better than donor islets, puts "
                         f"{pct(sc['p_above']['comparator'], 1)} on zimislecel doing better")
            line += "."
        ctx.summary.append(line)
    cp = eps.get("composite_primary")
    if cp and "uniform" in cp["priors"]:
        u = cp["priors"]["uniform"]
        ctx.summary.append(
            f"Primary composite end point (free of severe hypoglycaemia with HbA1c < 7% or a 1-point fall): "
            f"{cp['r']} of {cp['n']}. That does not make the true rate 100%: with a uniform prior it lies between "
            f"{pct(u['eti95'][0])} and {pct(u['eti95'][1])} with 95% probability.")
    if ii and "uniform" in ii["priors"]:
        u = ii["priors"]["uniform"]
        ctx.summary.append(
            f"How sure can we be? With {ii['n']} participants and no control arm, the 95% credible interval for "
            f"insulin independence spans {100 * (u['eti95'][1] - u['eti95'][0]):.0f} percentage points, and the "
            "published analyses were interim and not prespecified. Comparisons with donor islets rest on "
            "comparator studies with different end-point definitions and time anchors (see the assumptions).")
    mp = ctx.config.get("priors", {}).get("map", {})
    ctx.assumptions.append(("exchangeability of comparator studies with zimislecel",
                            "assumed by the sceptical, enthusiastic and MAP priors",
                            "comparators count from the last of up to 3 donor-islet infusions; zimislecel is a "
                            "single infusion of stem-cell-derived islets"))
    if mp:
        ctx.assumptions.append(("MAP prior settings",
                                f"tau ~ {mp.get('tau_prior')}({mp.get('tau_scale')}), mu ~ Normal(0, "
                                f"{mp.get('mu_prior_sd')}), robust weight {mp.get('robust_weight')}",
                                "configuration (priors.map)"))
    ctx.assumptions.append(("sceptical and enthusiastic priors", "each worth 10 participants",
                            "a convention of isletbayes.analyses.binary, not data"))
    return sec


def safety_section(ctx: ReportContext, result) -> Section:
    safety = result.to_dict().get("safety", {})
    if not ctx.config["sections"].get("safety", True) or not safety:
        return None
    sec = Section("safety", "Safety")
    from scipy import stats

    n_dosed = max(e["n"] for e in safety.values())
    zero_upper = float(stats.beta.ppf(0.975, 1, n_dosed + 1))
    sec.blocks.append(text(
        "Adverse events among all dosed participants, with exact posteriors under a uniform prior (Jeffreys "
        f"beside it in results.json). The trial is too small to rule out uncommon events: even zero events in "
        f"{n_dosed} would leave rates up to {pct(zero_upper)} inside the 95% credible interval."))
    rows_fig, rows = [], []
    for ep, e in safety.items():
        u = e["priors"]["uniform"]
        rows_fig.append({"label": f"{ep.replace('_', ' ')} ({e['r']}/{e['n']})", "mean": u["mean"],
                         "lo": u["eti95"][0], "hi": u["eti95"][1], "r": e["r"], "n": e["n"]})
        rows.append([cell(ep.replace("_", " ")), cell(f"{e['r']}/{e['n']}", "num"), num(u["mean"], ".3f"),
                     cell(f"{u['eti95'][0]:.3f} to {u['eti95'][1]:.3f}", "num")]
                    + [num(v, ".3f") for v in u["p_above"].values()]
                    + [cell(f"{e['clopper_pearson95'][0]:.3f} to {e['clopper_pearson95'][1]:.3f}", "num"),
                       cell(e.get("source_id", "")), _evidence_badge(e.get("evidence_type", ""))])
    fig = figures.interval_plot(rows_fig, xlabel="event rate")
    sec.blocks.append(figure(fig, "Adverse-event rates with 95% credible intervals",
                             "Posterior mean (dot) and 95% credible interval of each adverse-event rate under a "
                             "uniform prior; crosses mark the observed proportions."))
    first = next(iter(safety.values()))
    sec.blocks.append(table(["event", "r/n", "posterior mean", "95% credible interval",
                             *[f"P(rate > {t})" for t in first["priors"]["uniform"]["p_above"]],
                             "Clopper-Pearson 95%", "source", "evidence"], rows, caption="Adverse events"))
    for ep, e in safety.items():
        sec.blocks.append(text(e["priors"]["uniform"]["plain_language"]))
        if e.get("caveat"):
            sec.blocks.append(note(f"{ep.replace('_', ' ')}: {e['caveat']}"))
    ctx.numbers["safety"] = {ep: {"r": e["r"], "n": e["n"], "mean": e["priors"]["uniform"]["mean"],
                                  "eti95": e["priors"]["uniform"]["eti95"]} for ep, e in safety.items()}
    parts = [f"{ep.replace('_', ' ')} {e['r']} of {e['n']} ({interval(*e['priors']['uniform']['eti95'])})"
             for ep, e in safety.items()]
    ctx.summary.append(f"Safety (all {n_dosed} dosed; 95% credible intervals, uniform prior): " + "; ".join(parts)
                       + ". Without a control arm these rates cannot separate the product from the "
                         "immunosuppression it requires (the sources' attributions are in the safety section).")
    return sec


def _mixture_label(d: dict) -> str:
    parts = [f"{w:.2f} x Beta({a:.2f}, {b:.2f})" for w, a, b in zip(d["weights"], d["a"], d["b"], strict=True)]
    return " + ".join(parts)


def _param(rows: list[dict], name: str) -> dict | None:
    return next((r for r in rows if r["name"] == name), None)


def sig(x: float | None) -> str:
    """A number with sensible precision for a table: 1391, 176, 0.325, 1.46."""
    if x is None or not math.isfinite(x):
        return "n/a"
    ax = abs(x)
    return f"{x:.0f}" if ax >= 100 else f"{x:.1f}" if ax >= 10 else f"{x:.3g}" if ax >= 0.01 else f"{x:.2g}"


def _ci(r: dict | None, fmt: str | None = None) -> str:
    if r is None:
        return "n/a"
    f = (lambda v: format(v, fmt)) if fmt else sig
    return f"{f(r['median'])} ({f(r['q05'])} to {f(r['q95'])})"


def link_curve(idata, grid: np.ndarray, seed: int, n_draws: int = 2000) -> dict[str, np.ndarray] | None:
    """P(insulin independent | day-365 C-peptide) over ``grid``: posterior median and 95% band."""
    from isletbayes.models.graft_link import link_logit

    if idata is None or "alpha" not in idata["posterior"] or "beta" not in idata["posterior"]:
        return None
    alpha = np.asarray(idata["posterior"]["alpha"].values, dtype=float).ravel()
    beta = np.asarray(idata["posterior"]["beta"].values, dtype=float).ravel()
    pick = np.random.default_rng(seed).choice(alpha.size, size=min(n_draws, alpha.size), replace=False)
    logit = link_logit(alpha[pick, None], beta[pick, None], np.log(grid)[None, :])
    prob = 1.0 / (1.0 + np.exp(-logit))
    lo, med, hi = np.quantile(prob, [0.025, 0.5, 0.975], axis=0)
    return {"lo": lo, "median": med, "hi": hi}


def cpeptide_section(ctx: ReportContext, result) -> Section:
    sec = Section("cpeptide", "C-peptide trajectory and the graft-function link")
    d = result.to_dict()
    mode = "the published cohort means" if result.mode == "cohort_means" else "participant-level data"
    sec.blocks.append(text(
        f"Fitted to {mode}. Each participant's stimulated C-peptide rises from undetectable to a plateau, "
        "C(t) = A (1 - exp(-k t)), with participant-level random effects on the plateau and the rate, lognormal "
        "measurement error and censoring below the detection limit; the probability of insulin independence "
        "at day 365 depends on that participant's day-365 C-peptide through a logistic link, fitted jointly."))
    for line in result.notes:
        sec.blocks.append(note(line))
    traj = result.trajectory
    days = np.asarray(traj["days"], dtype=float)
    pm_band = traj["population_mean"]
    new = traj["new_participant"]
    obs_days = np.array([r["day"] for r in result.ppc])
    obs = np.array([r["observed"] for r in result.ppc])
    means = ctx.data.get("cpeptide")
    lod = float(means["lod_pmol_l"].min()) if means is not None and len(means) else None
    fig = figures.cpeptide_trajectory(
        days, {"median": np.asarray(pm_band["median"]), "lo": np.asarray(pm_band["q05"]),
               "hi": np.asarray(pm_band["q95"])}, obs_days, obs, lod=lod,
        new_participant={"lo": np.asarray(new["q05"]), "hi": np.asarray(new["q95"])},
        band_label="cohort mean, 90% credible band", new_label="new participant, 90% predictive band",
        observed_label="published cohort mean" if result.mode == "cohort_means" else "observed visit mean")
    sec.blocks.append(figure(fig, "Posterior C-peptide trajectory with credible bands and the observed means",
                             "Population-mean C-peptide (posterior median and 90% credible band), the 90% "
                             "predictive band for a new participant, and the observed means (points)."))
    rows = []
    for r in result.ppc:
        flag = r["outside_90"]
        rows.append({"fail": flag, "cells": [cell(f"{r['day']:g}", "num"), num(r["observed"], ".0f"),
                                              num(r["predicted_median"], ".0f"),
                                              cell(f"{r['predicted_q05']:.0f} to {r['predicted_q95']:.0f}", "num"),
                                              num(r["p_rep_below_observed"], ".2f"),
                                              cell("outside" if flag else "inside", "fail" if flag else "ok")]})
    sec.blocks.append(table(["day", "observed mean", "predicted median", "90% predictive interval",
                             "P(replicate <= observed)", "observed vs 90% interval"], rows,
                            caption="Posterior predictive check of the means"))
    verdict = {r["name"]: r["verdict"] for r in result.contraction}
    rows = [[cell(r["label"]), cell(sig(r["median"]), "num"), cell(f"{sig(r['q05'])} to {sig(r['q95'])}", "num"),
             cell(verdict.get(r["name"], ""))] for r in result.parameters]
    sec.blocks.append(table(["parameter", "posterior median", "90% credible interval", "learned from the data?"],
                            rows, caption="Parameters", note=d["contraction"]["rule"]))

    sec.blocks.append(heading("Graft function and insulin independence"))
    grid = np.geomspace(50, 5000, 200)
    curve = link_curve(result.idata, grid, seed=int(ctx.config.get("seed", 0)))
    if curve is not None:
        marks = {}
        if result.mode == "cohort_means" and len(obs):
            marks[f"published day-365 mean {obs[-1]:.0f}"] = float(obs[-1])
        ii = ctx.numbers.get("binary", {}).get("insulin_independence_observed")
        fig = figures.graft_link(grid, curve, observed_rate=ii, observed_label="observed share insulin independent",
                                 cpeptide_marks=marks)
        sec.blocks.append(figure(fig, "Probability of insulin independence against day-365 C-peptide",
                                 "P(insulin independent at day 365) as a function of a participant's day-365 "
                                 "C-peptide: posterior median and 95% credible band."))
    beta = _param(result.parameters, "beta")
    if result.link_sensitivity:
        rows = []
        for row in result.link_sensitivity:
            b, a = _param(row["parameters"], "beta"), _param(row["parameters"], "alpha")
            ok = row["diagnostics"].get("ok", False)
            rows.append({"fail": not ok, "cells": [cell(row["label"]), cell(_ci(b, ".2f"), "num"),
                                                   cell(_ci(a, ".2f"), "num"),
                                                   cell("ok" if ok else "FAILED", "ok" if ok else "fail")]})
        sec.blocks.append(table(["prior on the link slope", "slope beta, median (90% CrI)",
                                 "intercept alpha, median (90% CrI)", "diagnostics"], rows,
                                caption="Link sensitivity: the slope under different priors"))
    for group, caption, names in (
            (result.spread_sensitivity, "Spread sensitivity: prior scale of the between-participant sds",
             ("plateau_pmol_l", "sd_log_plateau", "beta")),
            (result.shape_check, "Model check: shape of the rise", ("plateau_pmol_l", "t_half_days", "rise_shape"))):
        if not group:
            continue
        rows = []
        for row in group:
            ok = row["diagnostics"].get("ok", False)
            rows.append({"fail": not ok, "cells": [cell(row["label"])]
                         + [cell(_ci(_param(row["parameters"], n)), "num") for n in names]
                         + [cell("ok" if ok else "FAILED", "ok" if ok else "fail")]})
        sec.blocks.append(table(["fit", *[n.replace("_", " ") for n in names], "diagnostics"], rows,
                                caption=caption, note="Median (90% credible interval)."))
    if result.psense:
        rows = [[cell(r["name"]), num(r["prior"], ".3f"), num(r["likelihood"], ".3f"), cell(r["diagnosis"])]
                for r in result.psense]
        sec.blocks.append(table(["parameter", "prior sensitivity", "likelihood sensitivity", "diagnosis"], rows,
                                caption="Power-scaling sensitivity (ArviZ psense)",
                                note="Values above about 0.05 flag a parameter whose posterior moves when the prior "
                                     "(or likelihood) is raised to a power near 1."))
    plateau, t_half = _param(result.parameters, "plateau_pmol_l"), _param(result.parameters, "t_half_days")
    ctx.numbers["cpeptide"] = {"plateau_pmol_l": plateau, "t_half_days": t_half, "link_beta": beta,
                               "ppc_outside_90": [r["day"] for r in result.ppc if r["outside_90"]],
                               "diagnostics_ok": result.ok}
    if plateau and t_half:
        line = (f"C-peptide: the median participant's stimulated C-peptide is estimated to level off at "
                f"{plateau['median']:.0f} pmol/L (90% credible interval {plateau['q05']:.0f} to "
                f"{plateau['q95']:.0f}), reaching half of that by day {t_half['median']:.0f} "
                f"({t_half['q05']:.0f} to {t_half['q95']:.0f}).")
        if result.mode == "cohort_means":
            line += (" Only cohort means are published, so how much participants differ from one another comes "
                     "from the prior, not the data.")
        ctx.summary.append(line)
    if beta is not None and "beta" in verdict:
        ctx.summary.append(
            f"Graft function and insulin independence: the link's slope is {beta['median']:.2f} "
            f"(90% credible interval {beta['q05']:.2f} to {beta['q95']:.2f}) log-odds per e-fold of C-peptide; "
            f"judged against its prior it is '{verdict['beta']}', so conclusions that depend on it rest largely on "
            "the prior." if verdict["beta"] != "informed by the data" else
            f"Graft function and insulin independence: the link's slope is {beta['median']:.2f} "
            f"(90% credible interval {beta['q05']:.2f} to {beta['q95']:.2f}) log-odds per e-fold of C-peptide.")
    cp = ctx.config.get("cpeptide", {})
    pri, lp = cp.get("priors", {}), cp.get("link_priors", {})
    if pri:
        ctx.assumptions.append(("C-peptide trajectory priors",
                                f"plateau ~ LogNormal(log {pri['plateau_median_pmol_l']:g}, "
                                f"{pri['plateau_log_sd']:g}); "
                                f"time to half plateau ~ LogNormal(log {pri['t_half_median_days']:g}, "
                                f"{pri['t_half_log_sd']:g}); spreads ~ HalfNormal({pri['spread_plateau_scale']:g}, "
                                f"{pri['spread_rate_scale']:g})", "configuration (cpeptide.priors)"))
    if lp and cp.get("link", True):
        ctx.assumptions.append(("graft-function link priors",
                                f"alpha ~ Normal({lp['alpha_mean']:g}, {lp['alpha_sd']:g}), "
                                f"beta ~ Normal({lp['beta_mean']:g}, {lp['beta_sd']:g})",
                                "configuration (cpeptide.link_priors)"))
    if not cp.get("late_decline", False):
        ctx.assumptions.append(("no loss of graft function after the last visit", "flat beyond day 365",
                                "configuration (cpeptide.late_decline: false)"))
    return sec


SECTION_BUILDERS = {
    "binary": ("isletbayes.analyses.binary", "BinaryResult", (binary_section, safety_section)),
    "cpeptide": ("isletbayes.analyses.cpeptide", "CpeptideResult", (cpeptide_section,)),
    "design": ("isletbayes.analyses.design", "DesignResult", (design_section,)),
    "durability": ("isletbayes.analyses.durability", "DurabilityResult", (durability_section,)),
}


def diagnostics_table(index: dict[str, Any]) -> dict:
    rows = []
    for d in index.get("diagnostics", []):
        ok = bool(d.get("ok", False))
        name = d["fit"] + (f" (also used as: {', '.join(d['also'])})" if d.get("also") else "")
        rows.append({"fail": not ok, "cells": [
            cell(name), num(d.get("max_rhat"), ".3f"), num(d.get("min_ess_bulk"), ".0f"),
            num(d.get("min_ess_tail"), ".0f"), cell(d.get("divergences", ""), "num"),
            num(d.get("min_ebfmi"), ".2f"), cell(f"{d.get('n_chains')} x {d.get('n_draws')}", "num"),
            cell("ok" if ok else "FAILED: " + "; ".join(d.get("failures", [])), "ok" if ok else "fail")]})
    return table(["fit", "max R-hat", "min bulk ESS", "min tail ESS", "divergences", "min E-BFMI",
                  "chains x draws", "result"], rows)


def _provenance_rows(index: dict[str, Any], engine: str | None) -> list[tuple[str, str]]:
    prov = index.get("provenance", {})
    cfg = index["config"]
    rows = [
        ("created (UTC)", prov.get("created_utc", "")),
        ("git commit", prov.get("git_commit", "")),
        ("configuration", index.get("config_file", "")),
        ("configuration SHA-256", index.get("config_sha256", "")),
    ]
    for name, meta in index.get("data", {}).items():
        rows.append((f"data: {name}", f"{meta['path']}  sha256 {meta['sha256']}"))
    rows.append(("seed", str(cfg.get("seed"))))
    rows.append(("sampler", ", ".join(f"{k}={v}" for k, v in cfg.get("sampler", {}).items())))
    for name, sec in index.get("sections", {}).items():
        cache = sec.get("cache") or {}
        what = sec["status"] if sec["status"] != "ok" else (
            f"{cache.get('status', '')} ({sec.get('seconds', 0):.1f} s), cache key {cache.get('key', '')[:16]}")
        rows.append((f"section: {name}", what))
    rows.append(("analyses run time", f"{index.get('timings_s', {}).get('analyses', float('nan')):.1f} s"))
    rows.append(("fit cache", f"{index.get('cache', {}).get('dir', '')} "
                              f"({'on' if index.get('cache', {}).get('enabled') else 'off'})"))
    rows.append(("PDF rendered by", engine or "no PDF requested"))
    rows.append(("platform", prov.get("platform", "")))
    return rows


# --- build ------------------------------------------------------------------------------------------------


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("isletbayes.reports", "templates"),
        autoescape=True,  # text from data files and configurations is escaped, always
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def read_index(out: Path) -> dict[str, Any]:
    path = Path(out) / "results.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("no results.json here; run `isletbayes run --out DIR` first", file=path) from None
    except json.JSONDecodeError as err:
        raise InputError(f"not valid JSON: {err.msg}", file=path, line=err.lineno) from None


def render_html(out: Path, pdf_engine_description: str | None) -> tuple[str, dict[str, Any]]:
    """The report's HTML text and the numbers its summary quotes."""
    import importlib

    from isletbayes.analyses.provenance import package_versions
    from isletbayes.models.sampling import EBFMI_MIN, ESS_MIN_PER_CHAIN, RHAT_MAX

    index = read_index(out)
    ctx = ReportContext(index, Path(out))
    inputs = _load_inputs(ctx)
    ctx.data = inputs
    sections = [data_section(ctx, inputs)]
    for name, entry in index["sections"].items():
        builder = SECTION_BUILDERS.get(name)
        if entry["status"] != "ok" or builder is None:
            title = entry.get("title", name)
            reason = entry.get("reason") or "no report section for it in this version"
            sections.append(Section(name, title, unavailable=f"Not in this report: {reason}."))
            if entry["status"] == "unavailable" or builder is None:
                ctx.alerts.append(f"The {name} section is missing from this report: {reason}.")
            continue
        module_name, class_name, builds = builder
        cls = getattr(importlib.import_module(module_name), class_name)
        result = cls.load(Path(out) / entry["dir"])
        built = []
        for build in builds:
            try:
                sec = build(ctx, result)
            except Exception as err:  # noqa: BLE001 - one section that cannot be drawn must not sink the report
                title = entry.get("title", name)
                message = (f"The {name} section could not be drawn ({type(err).__name__}: {err}); its results are "
                           f"in {entry['dir']}/ and results.json.")
                ctx.alerts.append(message)
                ctx.problems.append(message)
                sec = Section(name, title, unavailable=message)
            if sec is not None:
                built.append(sec)
        for d in entry.get("diagnostics", []):
            if not d.get("ok", False):
                also = f" (also used as {', '.join(d['also'])})" if d.get("also") else ""
                msg = f"Fit '{d['fit']}'{also} FAILED its convergence checks: {'; '.join(d.get('failures', []))}."
                if built:
                    built[0].alerts.append(msg + " Numbers that depend on it are not trustworthy.")
                ctx.alerts.append(msg)
        sections.extend(built)
    ctx.assumptions.extend(_data_assumptions(inputs))
    versions = index.get("provenance", {}).get("package_versions", package_versions())
    context = {
        "title": TITLE,
        "subtitle": ("Reichman et al., N Engl J Med 2025;393:858-868 (NCT04786262): 12 full-dose participants, "
                     "aggregate results only, no control arm. Report generated "
                     f"{index.get('provenance', {}).get('created_utc', '')}."),
        "alerts": ctx.alerts,
        "summary": ctx.summary or ["No analysis section ran; see below."],
        "sections": sections,
        "diagnostics": diagnostics_table(index),
        "thresholds": {"rhat": RHAT_MAX, "ess_per_chain": ESS_MIN_PER_CHAIN, "ebfmi": EBFMI_MIN},
        "assumptions": table(["what", "value", "where it comes from"],
                             [[cell(a), cell(b), cell(c)] for a, b, c in ctx.assumptions]),
        "provenance": _provenance_rows(index, pdf_engine_description),
        "packages": table(["package", "version"], [[cell(k), cell(v)] for k, v in versions.items()]),
        "provenance_version": versions.get("isletbayes", ""),
    }
    if ctx.problems:
        ctx.numbers["report_problems"] = ctx.problems
    return _environment().get_template(TEMPLATE).render(**context), ctx.numbers


def _data_assumptions(inputs: dict) -> list[tuple[str, str, str]]:
    out = []
    means = inputs["cpeptide"]
    if len(means):
        series = str(means["series"].iloc[0])
        if series.endswith("_assumed"):
            out.append(("which C-peptide series the published means are",
                        series.removesuffix("_assumed").replace("_", " "),
                        "data file zimislecel_cpeptide.csv (series column); the source does not say"))
        if means["spread_kind"].isna().all() or (means["spread_kind"].astype(str).str.strip() == "").all():
            out.append(("between-participant spread of C-peptide", "carried by its prior",
                        "no SD or CI of the means is published"))
    return out


def build_report(out: str | Path, pdf: bool = True) -> ReportFiles:
    """Write ``<out>/report.html`` and (if ``pdf``) ``<out>/report.pdf``; say which engine made the PDF."""
    from isletbayes.reports import pdf as pdfmod

    out = Path(out)
    html_path = out / HTML_NAME
    engines = pdfmod.available_engines() if pdf else []
    errors: list[str] = []
    if pdf and not engines:
        errors.append("no PDF engine here (install chromium, or WeasyPrint with its Pango library)")
    for engine in engines:
        html, numbers = render_html(out, engine.description)
        write_text_atomic(html_path, html)
        try:
            pdfmod.render_pdf(html_path, out / PDF_NAME, engine)
        except (pdfmod.PdfError, OSError) as err:
            errors.append(f"{engine.name}: {err}")
            continue
        return ReportFiles(html_path, out / PDF_NAME, engine.description, None, numbers)
    html, numbers = render_html(out, None if not pdf else "none (" + "; ".join(errors) + ")")
    write_text_atomic(html_path, html)
    (out / PDF_NAME).unlink(missing_ok=True)  # an older PDF would no longer match this HTML
    return ReportFiles(html_path, None, None, "; ".join(errors) or None, numbers)
