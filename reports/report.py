"""The posterior report: one self-contained HTML file (and a PDF of it) built from a results folder.

:func:`build_report` reads ``<out>/results.json`` (written by :mod:`isletbayes.analyses.main_job`), loads each
section's saved result with its analysis' own ``load()`` (without the posterior draws, which no part of the report
shows: their netCDF files are most of a load's time), draws the figures (:mod:`isletbayes.reports.figures`),
and renders ``templates/report.html.j2`` with jinja2, autoescape on, so any text that comes from a data file or
a configuration is escaped. Figures are embedded PNG data URIs; the page loads nothing from anywhere else.
The PDF is the same HTML printed by headless Chromium, or by WeasyPrint where no Chromium is installed
(:mod:`isletbayes.reports.pdf`); which one is stated in the report's provenance.

Every number the report quotes in its plain-language summary is returned in ``ReportFiles.numbers`` and stored
in results.json under ``report.numbers``.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from isletbayes.analyses.binary import BinaryResult
from isletbayes.analyses.config import MainJobConfig
from isletbayes.analyses.cpeptide_result import CpeptideResult
from isletbayes.analyses.design import AROUND_PLANNED, DesignResult
from isletbayes.analyses.durability import DurabilityResult
from isletbayes.analyses.main_job import ResultsIndex, read_index
from isletbayes.analyses.results import FitCheck
from isletbayes.data.io import write_text_atomic
from isletbayes.models.mixtures import BetaMixture
from isletbayes.reports import figures
from isletbayes.reports.figure_cache import FigureCache

TEMPLATE = "report.html.j2"
WIDE_TABLE_COLUMNS = 7
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
    # a table of many columns is printed on a landscape page (see the template's print CSS)
    return {"kind": "table", "columns": columns, "rows": out_rows, "caption": caption, "note": note,
            "wide": len(columns) > WIDE_TABLE_COLUMNS}


def text(t: str) -> dict:
    return {"kind": "text", "text": t}


def heading(t: str, anchor: str | None = None) -> dict:
    return {"kind": "heading", "text": t, "anchor": anchor}


def note(t: str) -> dict:
    return {"kind": "note", "text": t}


def figure(ctx: ReportContext, draw: partial, alt: str, caption: str) -> dict:
    """A figure block: ``draw()``, a :mod:`figures` function with its numbers, as an embedded PNG (kept in the
    report's figure cache, so an unchanged figure is not drawn again)."""
    return {"kind": "figure", "uri": ctx.figure_cache.uri(draw), "alt": alt, "caption": caption}


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

    index: ResultsIndex
    out: Path
    summary: list[str] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)
    alerts: list[str] = field(default_factory=list)
    assumptions: list[tuple[str, str, str]] = field(default_factory=list)  # (what, value, where it comes from)
    data: dict[str, Any] = field(default_factory=dict)  # the input tables, reloaded
    problems: list[str] = field(default_factory=list)  # sections that could not be drawn
    figure_cache: FigureCache = field(default_factory=lambda: FigureCache(None))

    @property
    def config(self) -> MainJobConfig:
        return self.index.config


@dataclass
class ReportFiles:
    html: Path
    pdf: Path | None
    pdf_engine: str | None
    pdf_error: str | None
    numbers: dict[str, Any]
    problems: list[str] = field(default_factory=list)

    def as_dict(self, out: Path) -> dict[str, Any]:
        def rel(p: Path | None) -> str | None:
            return None if p is None else str(Path(p).relative_to(out)) if Path(p).is_relative_to(out) else str(p)

        return {"html": rel(self.html), "pdf": rel(self.pdf), "pdf_engine": self.pdf_engine,
                "pdf_error": self.pdf_error, "numbers": self.numbers, "problems": self.problems}


# --- sections ---------------------------------------------------------------------------------------------


def _load_inputs(ctx: ReportContext):
    """The data the analyses used, reloaded from the files recorded in results.json (validated again)."""
    from isletbayes import data as d

    cfg = ctx.config.data
    return {
        "counts": d.load_counts(cfg.counts, include_unverified=True),
        "cpeptide": d.load_cpeptide_means(cfg.cpeptide_means, include_unverified=cfg.include_unverified),
        "comparators": d.load_comparators(cfg.comparators, include_unverified=True),
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
    pdata = ctx.index.data.get("participant_data")
    if pdata is not None:
        sec.blocks.append(note(f"Participant-level data were supplied ({pdata.path}, SHA-256 "
                               f"{pdata.sha256[:16]}...) and replace the published aggregates where a model "
                               "can use them."))
    return sec


def design_section(ctx: ReportContext, result: DesignResult) -> Section:
    sec = Section("design", "Phase 3 planning")
    sec.blocks.append(text(result.estimand_statement))
    rule = result.rule
    if rule is None:
        sec.blocks.append(note("This estimand has no exact answer: its assurance is simulated (below)."))
        _simulation_blocks(sec, result)
        return sec
    n = np.asarray(result.table.index, dtype=int)
    recs = result.recommendations
    # the planner's question first: how many participants, under each belief about the product
    rows = []
    for rec in recs:
        found = rec.n.first
        rows.append([cell(rec.label), cell("none in grid" if found is None else found, "num"),
                     cell(pct(rec.assurance_at_n) if rec.assurance_at_n is not None else "-", "num"),
                     cell(f"{pct(rec.max_assurance)} at n = {rec.max_assurance_n}", "num"),
                     cell(pct(rec.assurance_limit) if rec.assurance_limit is not None else "-", "num"),
                     cell(rec.reason)])
    sec.blocks.append(table(["design prior", "recommended n", "assurance there", "highest assurance in grid",
                             "limit as n grows", "why"], rows,
                            caption="Recommended phase 3 size under each design prior",
                            note=f"Success: {rule.statement}. Targets: type I error <= {pct(rule.alpha, 1)}, power "
                                 f">= {pct(ctx.config.design.power_target)} at rate {rule.p1:.2f}, assurance >= "
                                 f"{pct(ctx.config.design.assurance_target)}. Each design prior is an assumption "
                                 "about the product, not data."))
    sec.blocks.append(text(
        f"The null rate p0 = {rule.p0:.2f} is the {rule.p0_source}. The rule's threshold "
        + (f"gamma = {rule.gamma:.4f} is calibrated: it is the smallest value (4 decimals) that keeps the exact type I "
           f"error at or below {pct(rule.alpha, 1)} at every n from {n[0]} to {n[-1]}."
           if rule.gamma_calibrated else f"gamma = {rule.gamma} is fixed by the configuration.")
        + f" Phase 1/2: {result.phase12.get('statement', '')}."))
    marks = {f"planned n = {result.planned_n}": result.planned_n} if n[0] <= result.planned_n <= n[-1] else {}
    draw = partial(
        figures.design_curves,
        n, {"type I error (rate = p0)": result.table["type1"].to_numpy()},
        targets={f"alpha {rule.alpha:g}": rule.alpha}, title="Type I error (exact), on its own scale",
        ylabel="type I error", marks=marks, ylim=None)
    sec.blocks.append(figure(ctx, draw, "Type I error against phase 3 sample size",
                             f"Exact type I error at p0 = {rule.p0:.2f} for each n from {n[0]} to {n[-1]}: the "
                             "sawtooth of a discrete design, against alpha."))
    if result.assurance is not None:
        labels = {p.name: p.label for p in result.design_priors}
        draw = partial(
            figures.design_curves,
            n, {labels[c]: result.assurance[c].to_numpy() for c in result.assurance.columns},
            targets={f"assurance target {ctx.config.design.assurance_target:g}": ctx.config.design.assurance_target},
            title="Assurance under each design prior", marks=marks)
        sec.blocks.append(figure(ctx, draw, "Assurance against phase 3 sample size, one curve per design prior",
                                 "Probability of success averaged over each design prior (exact). The design priors "
                                 "are assumptions about how zimislecel performs: phase 1/2 as observed, discounted, "
                                 "robustified, borrowed from donor islets, or like donor islets."))
    lo, hi = result.planned_n - AROUND_PLANNED, result.planned_n + AROUND_PLANNED
    around = result.table.loc[(result.table.index >= lo) & (result.table.index <= hi)]
    if len(around):
        rows = [[cell(int(m), "num"), cell(int(r["boundary"]), "num"), cell(f"{r['type1']:.4f}", "num"),
                 cell(pct(r["power_p1"]), "num"), cell(pct(r["assurance"]), "num"),
                 cell(pct(r["conditional_assurance"]), "num")] for m, r in around.iterrows()]
        sec.blocks.append(table(["n", "wins at", "type I error", f"power at {rule.p1:.2f}",
                                 f"assurance ({recs[0].label})", "assurance given a meaningful effect"], rows,
                                caption=f"Around the planned n = {result.planned_n}",
                                note="Assurance given a meaningful effect: power averaged over the design prior "
                                     "restricted to rates above the clinically meaningful rate (p_mcid, else p1)."))
    if result.p0_panel is not None and len(result.p0_panel):
        rows = [[cell(f"{p0:.2f}" + (" (benchmark)" if r["benchmark"] else ""), "num"),
                 cell("-" if r["gamma"] is None or r["gamma"] != r["gamma"] else f"{r['gamma']:.4f}", "num"),
                 cell("none in grid" if r["first_n"] is None or r["first_n"] != r["first_n"] else int(r["first_n"]),
                      "num"),
                 cell(pct(r["assurance_at_n"]) if r["assurance_at_n"] == r["assurance_at_n"]
                      and r["assurance_at_n"] is not None else "-", "num")] for p0, r in result.p0_panel.iterrows()]
        sec.blocks.append(table(["p0", "calibrated gamma", "recommended n", "assurance there"], rows,
                                caption="p0 panel: the same question under other null rates",
                                note=f"Assurance under the primary design prior ({recs[0].label})."))
    if result.interim is not None and len(result.interim):
        rows = [[cell(int(m), "num"), cell(r["looks"]), cell(f"{r['type1_binding']:.4f}", "num"),
                 cell(f"{r['type1_nonbinding']:.4f}", "num"), cell(pct(r["power_p1"]), "num"),
                 cell(f"{r['expected_n_p1']:.1f}", "num"), cell(pct(r["assurance"]), "num")]
                for m, r in result.interim.loc[(result.interim.index >= lo) & (result.interim.index <= hi)].iterrows()]
        sec.blocks.append(table(["n", "looks", "type I (binding)", "type I (non-binding)", "power", "E[N] at p1",
                                 "assurance"], rows, caption="With interim looks"))
    if result.overlap is not None and len(result.overlap):
        rows = [[cell(int(m), "num"), cell(int(r["still_to_come"]), "num"), cell(int(r["needed"]), "num"),
                 cell(pct(r["probability_of_success"]), "num")]
                for m, r in result.overlap.loc[(result.overlap.index >= lo) & (result.overlap.index <= hi)].iterrows()]
        sec.blocks.append(table(["n", "still to come", "successes still needed", "probability of success"], rows,
                                caption="If the phase 1/2 participants count toward the phase 3 n"))
    if result.two_sample is not None and len(result.two_sample):
        frame = result.two_sample
        cols = list(frame.columns)[:6]
        rows = [[cell(str(i), "num")] + [cell(f"{v:.3f}" if isinstance(v, float) else str(v), "num")
                                          for v in r[cols]] for i, r in frame.iterrows()]
        sec.blocks.append(table([str(frame.index.name or "n"), *cols], rows,
                                caption="Two-arm alternative: a concurrent control arm with the donor-islet MAP prior"))
    _simulation_blocks(sec, result)
    for line in result.notes:
        sec.blocks.append(note(line))
    first = recs[0]
    row = result.row(first.n.first) if first.n.first is not None else None
    ctx.numbers["design"] = {"estimand": result.estimand, "p0": rule.p0, "p1": rule.p1, "gamma": rule.gamma,
                             "recommendations": {r.design_prior: r.n.first for r in recs},
                             "first_n": first.n.first,
                             "type1_at_first_n": None if row is None else float(row["type1"]),
                             "assurance_at_first_n": None if row is None else float(row["assurance"]),
                             "max_assurance": {"n": first.max_assurance_n, "assurance": first.max_assurance}}
    answered = [r for r in recs if r.n.first is not None]
    if answered:
        spread = ", ".join(f"{r.n.first} ({r.label})" for r in answered)
        ctx.summary.append(f"Phase 3 planning ({result.settings['estimand']['preset'].replace('_', ' ')}): the "
                           f"smallest sample size meeting the type I error, power and assurance targets is {spread}; "
                           f"the answer depends on what one believes about the product, shown side by side.")
    else:
        ctx.summary.append(
            f"Phase 3 planning ({result.settings['estimand']['preset'].replace('_', ' ')}): under none of the design "
            f"priors does any n from {n[0]} to {n[-1]} reach assurance {pct(ctx.config.design.assurance_target)} "
            f"against p0 = {rule.p0:.2f}; the highest is {pct(first.max_assurance)} ({first.label}). "
            "See the planning section for why.")
    for a in result.assumptions:
        ctx.assumptions.append((a.what, a.value, a.source))
    return sec


def _simulation_blocks(sec: Section, result: DesignResult) -> None:
    sm = result.simulation
    if sm is None:
        return
    sec.blocks.append(text(
        f"Simulation-based assurance at n = {sm.n}: {pct(sm.assurance)} (Monte Carlo standard error "
        f"{100 * sm.mcse:.1f} points; {sm.n_success} of {sm.n_sims} simulated trials succeeded). The simulated "
        "trials are drawn from the C-peptide re-analysis posterior, so the between-participant spread they carry "
        "comes from its prior."))


def durability_section(ctx: ReportContext, result: DurabilityResult) -> Section:
    sec = Section("durability", "Beyond year 1: durability")
    sec.blocks.append(note(result.label))
    sec.blocks.append(text(
        "A multi-state model (onset of insulin independence after the infusion, loss of it since onset with a "
        "Weibull hazard, death from any state) carries the phase 1/2 year-1 state "
        f"({result.year1}) forward. How fast insulin independence is lost is learned from donor-islet studies, "
        "each at its own time origin and discounted; the posterior is computed on a grid."))
    shares = result.shares
    years = np.asarray(sorted(set(shares["year"])), dtype=int)
    bands = {}
    for estimand, label in (("composite", "insulin independent and alive"),
                            ("hypothetical", "insulin independent, had no one died")):
        part = shares[shares["estimand"] == estimand].sort_values("year")
        bands[label] = {"median": part["median"].to_numpy(), "lower": part["lower"].to_numpy(),
                        "upper": part["upper"].to_numpy()}
    draw = partial(figures.scenario_bands, years, bands)
    sec.blocks.append(figure(ctx, draw, "Projected share insulin independent in years 1 to 5",
                             "Posterior median and 95% interval of the share insulin independent by year after "
                             "infusion. Beyond year 1 the loss rate is borrowed from donor-islet studies (a "
                             "discounted prior), not observed."))
    rows = []
    for estimand, label in (("composite", "insulin independent and alive"),
                            ("hypothetical", "insulin independent, had no one died")):
        part = shares[shares["estimand"] == estimand].sort_values("year")
        rows.append([cell(label)] + [cell(f"{pct(m)} ({pct(lo)}-{pct(hi)})", "num")
                                     for m, lo, hi in zip(part["median"], part["lower"], part["upper"])])
    sec.blocks.append(table(["share", *[f"year {y}" for y in years]], rows,
                            caption="Share insulin independent, median (95% interval)"))
    rows = [[cell(f"{r.years_since_onset:g}", "num"), cell(f"{pct(r.median)} ({pct(r.lower)}-{pct(r.upper)})", "num")]
            for r in result.retention.itertuples()]
    sec.blocks.append(table(["years since onset", "still insulin independent, median (95% interval)"], rows,
                            caption="Retention of insulin independence since its onset"))
    check = result.figure_check
    rows = [[cell(r.source_id), cell(str(r.time_origin).replace("_", " ")), cell(f"{r.years_after_origin:g}", "num"),
             cell(pct(r.published_retained), "num"),
             cell(f"{r.effective_denominator:.0f}" + ("" if r.denominator_exact else " (approximate)"), "num"),
             cell(f"{pct(r.fitted_mean)} ({pct(r.fitted_lower)}-{pct(r.fitted_upper)})", "num")]
            for r in check.itertuples(index=False)]
    sec.blocks.append(table(["source", "time origin", "years after it", "published share retained",
                             "effective n", "fitted, mean (95% interval)"], rows,
                            caption="Donor-islet figures against the fitted retention",
                            note="Where a published figure lies outside its fitted interval the donor sources "
                                 "disagree with one another; the fit is a compromise between them."))
    follow = result.follow_up
    rows = [[cell(f"{t:g}", "num"), cell(f"+/- {h:.3f}", "num"), cell(f"{m:.3f}", "num")]
            for t, h, m in zip(follow.index, follow["expected_half_width"], follow["mcse"])]
    target = ctx.config.durability.follow_up_half_width
    answer = result.follow_up_answer
    sec.blocks.append(table(["follow-up (years)", "expected half-width of the 95% interval", "MCSE"], rows,
                            caption=f"How long must {ctx.config.durability.follow_up_participants} participants be "
                                    "followed to estimate 5-year retention?",
                            note=(f"A half-width of +/- {target:g} needs {answer:g} years of follow-up."
                                  if answer is not None else
                                  f"No follow-up length shown reaches +/- {target:g}.")
                                 + " Preposterior Monte Carlo over the durability posterior (design prior)."))
    for line in result.conventions:
        sec.blocks.append(note(line))
    composite = shares[shares["estimand"] == "composite"].set_index("year")["median"]
    ctx.numbers["durability"] = {"share_median_composite": {int(k): float(v) for k, v in composite.items()},
                                 "follow_up_years_for_target": answer}
    ctx.summary.append(
        "Durability is not observed: zimislecel has one year of published follow-up. Borrowing the loss of insulin "
        f"independence from donor-islet studies (discounted), the share still insulin independent and alive is "
        f"{pct(composite.get(2.0))} at year 2 and {pct(composite.get(5.0))} at year 5 (posterior medians; the "
        "intervals are wide).")
    for line in result.conventions:
        ctx.assumptions.append(("durability model", line, "configuration (durability)"))
    return sec


def _threshold_label(label: str, value: float) -> str:
    return f"comparator rate {value:.2f} (fixed benchmark)" if label == "comparator" else f"{value:g}"


def binary_section(ctx: ReportContext, result: BinaryResult) -> Section | None:
    if not ctx.config.sections.binary:
        return None
    sec = Section("binary", "Binary end points under a panel of priors, and the MAP prior")
    sec.blocks.append(text(
        "Each end point is r of n participants. Its rate gets an exact posterior (a beta mixture) under each prior "
        "of the panel: reference priors (uniform, Jeffreys), a sceptical prior centred on the comparator "
        "(donor-islet) rate, an enthusiastic one, and the meta-analytic-predictive (MAP) prior borrowed from the "
        "comparator studies, plain and robustified. Where the priors disagree, the data alone cannot settle the "
        "question; where they agree, the conclusion does not hang on the prior."))
    numbers: dict[str, Any] = {}
    for ep, e in result.endpoints.items():
        m = e.map
        if m is None:
            continue
        name = ep.replace("_", " ")
        sec.blocks.append(heading(f"Comparator studies and the MAP prior: {name}"))
        studies = [{"label": st.study, "r": st.r, "n": st.n, "group": st.group}
                   for st in e.comparators.studies.itertuples()]
        tp = m.theta_pred
        summaries = [{"label": "MAP prior (predictive for a new study)", "mean": tp["mean"], "lo": tp["q2.5"],
                      "hi": tp["q97.5"], "colour": figures.PALETTE[3]}]
        if m.robust_mixture is not None:
            # kept with the fit; results written before robust_eti95 existed have it computed here
            lo, hi = m.robust_eti95 if m.robust_eti95 is not None else m.robust_mixture.eti(0.95)
            summaries.append({"label": "robust MAP prior", "mean": m.robust_mixture.mean(), "lo": lo, "hi": hi,
                              "colour": figures.PALETTE[4]})
        if "uniform" in e.table.index:
            u = e.table.loc["uniform"]
            summaries.append({"label": f"zimislecel {e.r}/{e.n} (uniform-prior posterior)", "mean": u["mean"],
                              "lo": u["eti_low"], "hi": u["eti_high"], "colour": figures.PALETTE[0]})
        draw = partial(figures.forest_plot, studies, summaries, xlabel=f"{name} rate")
        sec.blocks.append(figure(ctx, draw, f"Forest plot of comparator studies for {name} with the MAP prior",
                                 "Comparator studies (observed rate, Jeffreys 95% interval; marker size grows "
                                 "with n) and, below, the MAP prior, the robust MAP prior and zimislecel's own "
                                 "posterior (diamonds: mean and 95% interval). The MAP prior's width comes mostly "
                                 "from the prior on the between-study sd (tau)."))
        tau = m.tau
        rows = [[cell("between-study sd tau (logit scale)"),
                 cell(f"{tau['median']:.2f} (95% CrI {tau['q2.5']:.2f} to {tau['q97.5']:.2f})", "num")],
                [cell("MAP prior: predictive rate for a new study"),
                 cell(f"{tp['mean']:.2f} (95% {tp['q2.5']:.2f} to {tp['q97.5']:.2f})", "num")],
                [cell("beta-mixture approximation"), cell(_mixture_label(m.mixture))]]
        if m.robust_mixture is not None:
            rows.append([cell("robust MAP prior"), cell(_mixture_label(m.robust_mixture))])
        for mixture, ess in m.ess.iterrows():
            label = "MAP prior" if mixture == "mixture" else "robust MAP prior"
            for method in ("elir", "moment", "morita"):
                rows.append([cell(f"effective sample size of the {label} ({method})"), num(ess[method], ".1f")])
        sec.blocks.append(table(["quantity", "value"], rows, caption=f"MAP prior for {name}",
                                note=f"Comparators: {e.comparators.basis}; pooled rate "
                                     f"{e.comparators.pooled_rate:.2f}. ELIR is the default ESS (RBesT's); the "
                                     "moment-matched and Morita ESS differ for mixtures because a mixture's "
                                     "information is not that of one beta with its mean and variance."))
        sec.blocks.extend(_borrowing_blocks(ctx, e, name))
    panels = []
    for ep, e in result.endpoints.items():
        thr = e.thresholds
        p0 = thr.get("comparator", next(iter(thr.values()), None))
        panels.append({"title": ep.replace("_", " "), "r": e.r, "n": e.n, "p0": p0,
                       "curves": {PRIOR_SHORT.get(k, k): v for k, v in e.posteriors.items()}})
    if panels:
        sec.blocks.append(heading("Posteriors under the prior panel"))
        draw = partial(figures.posterior_densities, panels)
        sec.blocks.append(figure(ctx, draw, "Posterior densities of each end point's rate under each prior",
                                 "Posterior density of each rate under each prior of the panel (each prior is an "
                                 "assumption; the sceptical and enthusiastic ones are conventions); the triangle "
                                 "marks the observed proportion, the dashed line the pooled comparator rate (or, "
                                 "for an end point without comparator studies, the first threshold)."))
    for ep, e in result.endpoints.items():
        thr = e.thresholds
        rows = []
        for name, pr in e.table.iterrows():
            conflict = pr["conflict_p"]
            if conflict is None or conflict != conflict:  # a reference prior predicts nothing: no conflict test
                conflict_cell = cell("n/a (reference prior)", "num")
            else:
                direction = pr["conflict_direction"] if isinstance(pr["conflict_direction"], str) else ""
                conflict_cell = cell(f"{conflict:.2f}" + (f" ({direction})" if direction else ""),
                                     "num fail" if conflict < 0.05 else "num")
            rows.append({"fail": False, "cells": [
                cell(pr["label"]), num(pr["prior_mean"], ".2f"), num(pr["ess_elir"], ".1f"),
                num(pr["mean"], ".2f"), cell(f"{pr['eti_low']:.2f} to {pr['eti_high']:.2f}", "num")]
                + [num(pr[f"p_above_{lbl}"], ".2f") for lbl in thr]
                + [conflict_cell]})
        sec.blocks.append(table(
            ["prior", "prior mean", "prior ESS (ELIR)", "posterior mean", "95% credible interval",
             *[f"P(rate > {_threshold_label(lbl, v)})" for lbl, v in thr.items()],
             "prior-data conflict p (one-sided)"],
            rows, caption=f"{ep.replace('_', ' ')}: {e.r}/{e.n} (Clopper-Pearson 95% "
                          f"{e.clopper_pearson95[0]:.2f} to {e.clopper_pearson95[1]:.2f})",
            note="Prior ESS: expected local-information-ratio (ELIR) effective sample size. Conflict: the one-sided "
                 "prior-predictive p-value in the direction of the data (small = the data are surprising under that "
                 "prior); n/a for reference priors, which predict nothing."))
        for line in e.notes:
            sec.blocks.append(note(line))
        numbers[ep] = {"r": e.r, "n": e.n, "posterior_mean": e.table["mean"].to_dict(),
                       "eti95": {k: [r["eti_low"], r["eti_high"]] for k, r in e.table.iterrows()},
                       "p_above": {k: {lbl: r[f"p_above_{lbl}"] for lbl in thr} for k, r in e.table.iterrows()}}
    ctx.numbers["binary"] = numbers
    ii = result.endpoints.get("insulin_independence")
    if ii is not None:
        numbers["insulin_independence_observed"] = ii.r / ii.n
        line = f"Insulin independence at day 365: {ii.r} of {ii.n} ({pct(ii.r / ii.n)})."
        comp = ii.thresholds.get("comparator")
        if "uniform" in ii.table.index:
            u = ii.table.loc["uniform"]
            line += (f" With a uniform prior the underlying rate is {pct(u['mean'])} (95% credible interval "
                     f"{interval(u['eti_low'], u['eti_high'])}).")
        cmp_ = ii.comparison
        if cmp_ is not None and "uniform" in cmp_.index:
            delta = ctx.config.binary.delta
            line += (f" Against donor islets, taken as a distribution (the robust MAP prior's predictive for a new "
                     f"donor-islet study), the probability that zimislecel's rate is higher is "
                     f"{pct(cmp_.loc['uniform', 'p_better'])}, and higher by more than {100 * delta:.0f} percentage points "
                     f"{pct(cmp_.loc['uniform', 'p_better_by_delta'])}")
            if "sceptical" in cmp_.index:
                line += f" (for the sceptic: {pct(cmp_.loc['sceptical', 'p_better'])})"
            line += "."
            if ii.tau_panel:
                lo = min(t.p_better for t in ii.tau_panel)
                hi = max(t.p_better for t in ii.tau_panel)
                line += (f" How much is borrowed depends on the prior for the between-study sd: across the tau-prior "
                         f"block that probability runs from {pct(lo)} to {pct(hi)}.")
        if comp is not None and "uniform" in ii.table.index:
            line += (f" Against a fixed benchmark of {pct(comp)} ({ii.comparators.benchmark_rule or 'pooled rate'}), "
                     f"it would be {pct(ii.table.loc['uniform', 'p_above_comparator'])}, which ignores the "
                     "comparator's own uncertainty.")
        if len(ii.table) > 1:
            line += (f" Across the prior panel the posterior mean ranges from {pct(ii.table['mean'].min())} to "
                     f"{pct(ii.table['mean'].max())}.")
        ctx.summary.append(line)
    cp = result.endpoints.get("composite_primary")
    if cp is not None and "uniform" in cp.table.index:
        u = cp.table.loc["uniform"]
        ctx.summary.append(
            f"Primary composite end point (free of severe hypoglycaemia with HbA1c < 7% or a 1-point fall): "
            f"{cp.r} of {cp.n}. That does not make the true rate 100%: with a uniform prior it lies between "
            f"{pct(u['eti_low'])} and {pct(u['eti_high'])} with 95% probability.")
    if ii is not None and "uniform" in ii.table.index:
        u = ii.table.loc["uniform"]
        ctx.summary.append(
            f"How sure can we be? With {ii.n} participants and no control arm, the 95% credible interval for "
            f"insulin independence spans {100 * (u['eti_high'] - u['eti_low']):.0f} percentage points, and the "
            "published analyses were interim and not prespecified. Comparisons with donor islets rest on "
            "comparator studies with different end-point definitions and time anchors (see the assumptions).")
    mp = ctx.config.priors.map
    ctx.assumptions.append(("exchangeability of comparator studies with zimislecel",
                            "assumed by the sceptical, enthusiastic and MAP priors",
                            "comparators count from the last of up to 3 donor-islet infusions; zimislecel is a "
                            "single infusion of stem-cell-derived islets"))
    ctx.assumptions.append(("MAP prior settings",
                            f"tau ~ {mp.tau_prior}({mp.tau_scale:g}), mu ~ Normal(0, {mp.mu_prior_sd:g}), robust "
                            f"weight {mp.robust_weight:g}", "configuration (priors.map)"))
    ctx.assumptions.append(("sceptical and enthusiastic priors", "each worth 10 participants",
                            "a convention of isletbayes.models.prior_panel, not data"))
    return sec


def _borrowing_blocks(ctx: ReportContext, e, name: str) -> list:
    """Comparison against the comparator distribution, the tau-prior block, the tipping point and the definition
    differences of one end point with a MAP prior (issue 11)."""
    blocks = []
    delta = ctx.config.binary.delta
    if e.comparison is not None:
        rows = [[cell(PRIOR_SHORT.get(prior, prior)), num(r["p_better"], ".2f"), num(r["p_better_by_delta"], ".2f")]
                for prior, r in e.comparison.iterrows()]
        blocks.append(table(["prior for zimislecel's rate", "P(rate - donor-islet rate > 0)",
                             f"P(rate - donor-islet rate > {delta:g})"], rows,
                            caption=f"{name}: zimislecel against the donor-islet rate as a distribution",
                            note="The donor-islet rate of a new study is drawn from the robust MAP prior's "
                                 "predictive, not fixed at the pooled rate (RBesT's pmixdiff). delta "
                                 f"{delta:g} is a convention (binary.delta)."))
    if e.tau_panel:
        rows = []
        for t in e.tau_panel:
            ok = t.diagnostics.ok
            rows.append({"fail": not ok, "cells": [
                cell(t.tau_prior), cell(f"{t.tau_median:.2f} ({t.tau_q975:.2f})", "num"), num(t.map_ess_elir, ".1f"),
                num(t.robust_map_ess_elir, ".1f"),
                cell(f"{t.map_mean:.2f} ({t.map_interval95[0]:.2f} to {t.map_interval95[1]:.2f})", "num"),
                num(t.p_better, ".2f"), num(t.p_better_by_delta, ".2f"),
                cell("yes" if t.conclusive else "no", "ok" if t.conclusive else ""),
                cell("ok" if ok else "FAILED", "ok" if ok else "fail")]})
        prob = ctx.config.binary.conclusion_probability
        blocks.append(table(["tau prior", "tau median (97.5%)", "MAP ESS (ELIR)", "robust MAP ESS (ELIR)",
                             "MAP mean (95%)", "P(better)", f"P(better by {delta:g})", f"P(better) >= {prob:g}?",
                             "diagnostics"], rows, caption=f"{name}: the tau-prior block",
                            note="With two or three comparator studies the prior on the between-study sd decides "
                                 "how much is borrowed. P(better): P(rate - donor-islet rate > 0), zimislecel's "
                                 "rate under a uniform prior, the donor-islet rate from that row's robust MAP "
                                 f"prior. The threshold {prob:g} is a convention (binary.conclusion_probability)."))
    tp = e.tipping_point
    if tp is not None:
        tab = tp.table
        map_ess = {}
        if e.map is not None and "elir" in e.map.ess.columns:
            map_ess = {f"{'MAP' if k == 'mixture' else 'robust MAP'} ESS {v:.0f}": float(v)
                       for k, v in e.map.ess["elir"].items() if v == v}
        draw = partial(figures.tipping_point, tab["ess"].to_numpy(), tab["prob_above_p0"].to_numpy(), tp.probability,
                       tp.ess, f"{tp.benchmark:.2f}", map_ess)
        blocks.append(figure(ctx, draw, f"Tipping point of the {name} comparison",
                             f"P({name} rate > {tp.benchmark:.2f}) against the effective sample size of a beta prior "
                             f"centred on that fixed benchmark; the conclusion P >= {tp.probability:g} {tp.verdict}. "
                             "The benchmark and the threshold are conventions; the dash-dotted lines mark what the "
                             "MAP priors borrow."))
    if e.definitions is not None and len(e.definitions):
        rows = [[cell(study), cell(r["difference"]), cell(r["favours"])] for study, r in e.definitions.iterrows()]
        blocks.append(table(["comparator study", "how its definition differs from zimislecel's", "favours"], rows,
                            caption=f"{name}: definition differences and their direction"))
    if e.map is not None and e.map.exchangeability is not None:
        ex = e.map.exchangeability
        rows = [[cell(str(study)), *[num(v, ".2f") for v in r.to_numpy()]] for study, r in ex.iterrows()]
        blocks.append(table(["study", *[str(c).replace("_", " ") for c in ex.columns]], rows,
                            caption=f"{name}: EXNEX, each comparator's probability of exchangeability"))
    if e.map is not None and e.map.definition_shifts is not None:
        sh = e.map.definition_shifts
        rows = [[cell(str(k)), *[num(v, ".2f") for v in r.to_numpy()]] for k, r in sh.iterrows()]
        blocks.append(table(["definition class", *[str(c).replace("_", " ") for c in sh.columns]], rows,
                            caption=f"{name}: bias shift per definition class (logit scale, elicited prior)"))
    return blocks


def safety_section(ctx: ReportContext, result: BinaryResult) -> Section | None:
    safety = result.safety
    if not ctx.config.sections.safety or not safety:
        return None
    sec = Section("safety", "Safety")
    n_dosed = max(e.n for e in safety.values())
    # the 97.5% quantile of Beta(1, n + 1) (0 events, uniform prior), in closed form: F(x) = 1 - (1 - x)^(n + 1)
    zero_upper = -math.expm1(math.log1p(-0.975) / (n_dosed + 1))
    sec.blocks.append(text(
        "Adverse events among all dosed participants, with exact posteriors under a uniform prior (Jeffreys "
        f"beside it in results.json). The trial is too small to rule out uncommon events: even zero events in "
        f"{n_dosed} would leave rates up to {pct(zero_upper)} inside the 95% credible interval."))
    rows_fig, rows = [], []
    first = next(iter(safety.values()))
    thresholds = [c for c in first.table.columns if c.startswith("p_above_")]
    for ep, e in safety.items():
        u = e.table.loc["uniform"]
        rows_fig.append({"label": f"{ep.replace('_', ' ')} ({e.r}/{e.n})", "mean": u["mean"],
                         "lo": u["eti_low"], "hi": u["eti_high"], "r": e.r, "n": e.n})
        rows.append([cell(ep.replace("_", " ")), cell(f"{e.r}/{e.n}", "num"), num(u["mean"], ".2f"),
                     cell(f"{u['eti_low']:.2f} to {u['eti_high']:.2f}", "num")]
                    + [num(u[c], ".2f") for c in thresholds]
                    + [cell(f"{e.clopper_pearson95[0]:.2f} to {e.clopper_pearson95[1]:.2f}", "num"),
                       cell(e.source_id), _evidence_badge(e.evidence_type)])
    draw = partial(figures.interval_plot, rows_fig, xlabel="event rate")
    sec.blocks.append(figure(ctx, draw, "Adverse-event rates with 95% credible intervals",
                             "Posterior mean (dot) and 95% credible interval of each adverse-event rate under a "
                             "uniform prior; crosses mark the observed proportions."))
    sec.blocks.append(table(["event", "r/n", "posterior mean", "95% credible interval",
                             *[f"P(rate > {c.removeprefix('p_above_')})" for c in thresholds],
                             "Clopper-Pearson 95%", "source", "evidence"], rows, caption="Adverse events"))
    for ep, e in safety.items():
        sec.blocks.append(text(e.plain_language))
        if e.caveat:
            sec.blocks.append(note(f"{ep.replace('_', ' ')}: {e.caveat}"))
    ctx.numbers["safety"] = {ep: {"r": e.r, "n": e.n, "mean": float(e.table.loc["uniform", "mean"]),
                                  "eti95": [float(e.table.loc["uniform", "eti_low"]),
                                            float(e.table.loc["uniform", "eti_high"])]}
                             for ep, e in safety.items()}
    parts = [f"{ep.replace('_', ' ')} {e.r} of {e.n} ({interval(e.table.loc['uniform', 'eti_low'], e.table.loc['uniform', 'eti_high'])})"
             for ep, e in safety.items()]
    ctx.summary.append(f"Safety (all {n_dosed} dosed; 95% credible intervals, uniform prior): " + "; ".join(parts)
                       + ". Without a control arm these rates cannot separate the product from the "
                         "immunosuppression it requires (the sources' attributions are in the safety section).")
    return sec


def _mixture_label(mix: BetaMixture) -> str:
    parts = [f"{w:.2f} x Beta({a:.2f}, {b:.2f})" for w, a, b in zip(mix.weights, mix.a, mix.b, strict=True)]
    return " + ".join(parts)


def sig(x: float | None) -> str:
    """A number with sensible precision for a table: 1391, 176, 0.325, 1.46."""
    if x is None or not math.isfinite(x):
        return "n/a"
    ax = abs(x)
    return f"{x:.0f}" if ax >= 100 else f"{x:.1f}" if ax >= 10 else f"{x:.3g}" if ax >= 0.01 else f"{x:.2g}"


def _ci(frame, name: str, fmt: str | None = None) -> str:
    if name not in frame.index:
        return "n/a"
    r = frame.loc[name]
    f = (lambda v: format(v, fmt)) if fmt else sig
    return f"{f(r['median'])} ({f(r['q05'])} to {f(r['q95'])})"


def _verdicts_text(verdict: dict, names) -> tuple[bool, str]:
    """(any not informed by the data, "sd_log_plateau: prior only, ...")."""
    found = [(n, verdict[n]) for n in names if n in verdict]
    return any(v != "informed by the data" for _, v in found), ", ".join(f"{n} {v}" for n, v in found)


SENSITIVITY_TABLES = (
    ("glucocorticoid", "Glucocorticoid exposure: the two participants not insulin independent under each strategy",
     ("p_insulin_independent_population", "need_median_pmol_l", "sd_log_need")),
    ("link", "Link sensitivity: the slope under different priors", ("beta", "alpha")),
    ("spread", "Spread sensitivity: prior scale of the between-participant sds",
     ("plateau_pmol_l", "sd_log_plateau", "sd_log_rate", "need_median_pmol_l")),
    ("shape", "Model check: shape of the rise (means-only model)", ("plateau_pmol_l", "t_half_days", "rise_shape")),
)


def cpeptide_section(ctx: ReportContext, result: CpeptideResult) -> Section:
    sec = Section("cpeptide", "C-peptide trajectory and graft function")
    sec.blocks.append(text(result.model_description))
    for line in result.notes:
        sec.blocks.append(note(line))
    verdict = result.contraction["verdict"].to_dict()
    traj = result.trajectory
    days = np.asarray(traj.index, dtype=float)
    obs_days = np.asarray(result.ppc.index, dtype=float)
    obs = result.ppc["observed"].to_numpy()
    means = ctx.data.get("cpeptide")
    lod = float(means["lod_pmol_l"].min()) if means is not None and len(means) else None
    published = result.mode in ("graft_function", "cohort_means")
    draw = partial(
        figures.cpeptide_trajectory,
        days, {"median": traj["population_mean_median"].to_numpy(), "lo": traj["population_mean_q05"].to_numpy(),
               "hi": traj["population_mean_q95"].to_numpy()}, obs_days, obs, lod=lod,
        new_participant={"lo": traj["new_participant_q05"].to_numpy(), "hi": traj["new_participant_q95"].to_numpy()},
        band_label="cohort mean, 90% credible band", new_label="new participant, 90% predictive band",
        observed_label="published cohort mean" if published else "observed visit mean")
    spread_prior, spread_words = _verdicts_text(verdict, ("sd_log_plateau", "sd_log_rate"))
    spread_note = (f" The width of the new-participant band rests partly on the priors of the between-participant "
                   f"spread ({spread_words}; contraction table)." if spread_prior else "")
    shape_prior, shape_words = _verdicts_text(verdict, ("rise_shape",))
    shape_note = (f" The shape of the rise rests partly on the prior of the rise shape ({shape_words})."
                  if shape_prior else "")
    sec.blocks.append(figure(ctx, draw, "Posterior C-peptide trajectory with credible bands and the observed means",
                             "Population-mean C-peptide (posterior median and 90% credible band), the 90% "
                             "predictive band for a new participant (measurement noise included, curve misfit of the "
                             "published means not), and the observed means (points). Beyond the last visit the "
                             "curve is a model extrapolation." + spread_note + shape_note))
    rows = []
    for day, r in result.ppc.iterrows():
        flag = bool(r["outside_90"])
        rows.append({"fail": flag, "cells": [cell(f"{day:g}", "num"), num(r["observed"], ".0f"),
                                              num(r["predicted_median"], ".0f"),
                                              cell(f"{r['predicted_q05']:.0f} to {r['predicted_q95']:.0f}", "num"),
                                              num(r["p_rep_below_observed"], ".2f"),
                                              cell("outside" if flag else "inside", "fail" if flag else "ok")]})
    sec.blocks.append(table(["day", "observed mean", "predicted median", "90% predictive interval",
                             "P(replicate <= observed)", "observed vs 90% interval"], rows,
                            caption="Posterior predictive check of the means"))
    contraction = result.contraction
    side = "ratio_means_only" in contraction.columns
    labels = result.parameters["label"].to_dict()
    rows = []
    for name, c in contraction.iterrows():
        p = result.parameters.loc[name] if name in result.parameters.index else None
        cells = [cell(labels.get(name, name.replace("_", " "))),
                 cell("" if p is None else sig(p["median"]), "num"),
                 cell("" if p is None else f"{sig(p['q05'])} to {sig(p['q95'])}", "num"),
                 num(c["ratio"], ".2f"), cell(c["verdict"])]
        if side:
            other = c["ratio_means_only"]
            cells.append(cell("not in that model" if other != other else f"{other:.2f} ({c['verdict_means_only']})"))
        rows.append(cells)
    header = ["parameter", "posterior median", "90% credible interval", "posterior sd / prior sd",
              "learned from the data?", *(("means-only model",) if side else ())]
    sec.blocks.append(table(header, rows, caption="Parameters and how much the data inform each",
                            note=result.contraction_rule + (". Right: the same ratio when only the four means and "
                                                            "10/12 are fitted." if side else ".")))
    check = result.model_check
    sec.blocks.append(heading("Model checks"))
    (sec.alerts if check.misfit_flagged else sec.blocks).append(
        check.statement if check.misfit_flagged else text(check.statement))
    if result.holdout is not None:
        h = result.holdout
        (sec.alerts if h.outside_90 else sec.blocks).append(
            ("Holdout check: " + h.statement) if h.outside_90 else text("Holdout check: " + h.statement))
    if result.calibration is not None:
        rows = [{"fail": not bool(r["uniform"]), "cells": [
            cell(str(model)), num(r["replicates"], ".0f"), num(r["min_rank_p"], ".2g"),
            num(r.get("rank_p_threshold"), ".2g"),  # n/a in a result saved before the column
            cell(f"{r['failing_fits']} of {r['replicates']}", "num"),
            cell("uniform" if r["uniform"] else "NOT uniform", "ok" if r["uniform"] else "fail")]}
            for model, r in result.calibration.iterrows()]
        sec.blocks.append(table(["model", "replicates", "smallest rank-uniformity p", "fails below",
                                 "fits failing a diagnostic", "ranks"], rows,
                                caption="Simulation-based calibration of the C-peptide models",
                                note="Kept run (python -m isletbayes.analyses.calibration; "
                                     "analyses/results/sbc_cpeptide.json): data simulated from the prior, refitted "
                                     "with the analysis's sampler settings; every fit counted, failing or not. A "
                                     "parameter's ranks fail their chi-square test of uniformity below 1% divided by "
                                     "the model's number of parameters (Bonferroni; 'fails below')."))

    sec.blocks.append(heading("Graft function and insulin independence"))
    curve = result.link_curve
    if curve is not None:
        marks = {}
        if published and len(obs):
            marks[f"published day-365 mean {obs[-1]:.0f}"] = float(obs[-1])
        ii = ctx.numbers.get("binary", {}).get("insulin_independence_observed")
        grid = np.asarray(curve.index, dtype=float)
        draw = partial(figures.graft_link, grid, {"lo": curve["q025"].to_numpy(), "median": curve["median"].to_numpy(),
                                                  "hi": curve["q975"].to_numpy()}, observed_rate=ii,
                       observed_label="observed share insulin independent", cpeptide_marks=marks)
        slope = "sd_log_need" if "sd_log_need" in verdict else "beta"
        prior_shaped, words = _verdicts_text(verdict, (slope,))
        how = ("a participant is insulin independent when their day-365 C-peptide exceeds their insulin-need "
               "threshold, log-normal across participants" if slope == "sd_log_need"
               else "a logistic link on log C-peptide")
        sec.blocks.append(figure(ctx, draw, "Probability of insulin independence against day-365 C-peptide",
                                 f"P(insulin independent at day 365) against a participant's day-365 C-peptide ({how}):"
                                 " posterior median and 95% credible band."
                                 + (f" The steepness of the curve rests partly on its prior ({words})."
                                    if prior_shaped else "")))
    for group, caption, names in SENSITIVITY_TABLES:
        group_rows = result.sensitivity_group(group)
        if not group_rows:
            continue
        rows = []
        for row in group_rows:
            ok = row.diagnostics.ok
            rows.append({"fail": not ok, "cells": [cell(row.label)]
                         + [cell(_ci(row.parameters, n), "num") for n in names]
                         + [cell("ok" if ok else "FAILED", "ok" if ok else "fail")]})
        sec.blocks.append(table(["fit", *[n.replace("_", " ") for n in names], "diagnostics"], rows,
                                caption=caption, note="Median (90% credible interval)."))
    if result.psense is not None:
        rows = [[cell(name), num(r["prior"], ".3f"), num(r["likelihood"], ".3f"), cell(r["diagnosis"])]
                for name, r in result.psense.iterrows()]
        sec.blocks.append(table(["parameter", "prior sensitivity", "likelihood sensitivity", "diagnosis"], rows,
                                caption="Power-scaling sensitivity (ArviZ psense)",
                                note="Values above about 0.05 flag a parameter whose posterior moves when the prior "
                                     "(or likelihood) is raised to a power near 1."))
    params = result.parameters

    def _row(name):
        return None if name not in params.index else params.loc[name]

    plateau, t_half, beta, need = _row("plateau_pmol_l"), _row("t_half_days"), _row("beta"), _row("need_median_pmol_l")
    at365 = traj.loc[365.0] if 365.0 in traj.index else None
    ctx.numbers["cpeptide"] = {
        "plateau_pmol_l": None if plateau is None else {k: float(plateau[k]) for k in ("median", "q05", "q95")},
        "t_half_days": None if t_half is None else {k: float(t_half[k]) for k in ("median", "q05", "q95")},
        "link_beta": None if beta is None else {k: float(beta[k]) for k in ("median", "q05", "q95")},
        "need_median_pmol_l": None if need is None else {k: float(need[k]) for k in ("median", "q05", "q95")},
        "median_participant_day365": None if at365 is None else {
            "median": float(at365["median_participant_median"]), "q05": float(at365["median_participant_q05"]),
            "q95": float(at365["median_participant_q95"])},
        "ppc_outside_90": [float(d) for d in result.ppc.index[result.ppc["outside_90"]]],
        "diagnostics_ok": result.diagnostics_ok}
    if at365 is not None:
        line = (f"C-peptide: the median participant's stimulated C-peptide at day 365, within the observed range, "
                f"is {at365['median_participant_median']:.0f} pmol/L (90% credible interval "
                f"{at365['median_participant_q05']:.0f} to {at365['median_participant_q95']:.0f}).")
        if plateau is not None:
            line += (f" The plateau the curve levels off at, {plateau['median']:.0f} pmol/L "
                     f"({plateau['q05']:.0f} to {plateau['q95']:.0f}), is a model extrapolation beyond the data.")
        if spread_prior:
            line += " How much participants differ from one another rests partly on the prior (contraction table)."
        ctx.summary.append(line)
    if need is not None:
        strategy = ctx.config.cpeptide.glucocorticoid.replace("_", " ")
        line = (f"Graft function and insulin independence: the median participant needs about {need['median']:.0f} "
                f"pmol/L of day-365 C-peptide to be insulin independent (90% credible interval {need['q05']:.0f} to "
                f"{need['q95']:.0f}; {strategy} strategy for the two participants with prohibited glucocorticoid "
                "exposure).")
        share = _row("p_insulin_independent_population")
        if share is not None:
            line += (f" The share of participants insulin independent at day 365 is {pct(share['median'])} "
                     f"(90% credible interval {interval(share['q05'], share['q95'])}) under the {strategy} strategy")
            other = result.sensitivity_group("glucocorticoid")
            if other and "p_insulin_independent_population" in other[0].parameters.index:
                o = other[0].parameters.loc["p_insulin_independent_population"]
                line += (f", {pct(o['median'])} ({interval(o['q05'], o['q95'])}) under the {other[0].label}: the "
                         "data cannot say which strategy is right, so both are shown")
            line += "."
        ctx.summary.append(line)
    elif beta is not None and "beta" in verdict:
        base = (f"Graft function and insulin independence: the link's slope is {beta['median']:.2f} "
                f"(90% credible interval {beta['q05']:.2f} to {beta['q95']:.2f}) log-odds per e-fold of C-peptide")
        ctx.summary.append(base + (f"; judged against its prior it is '{verdict['beta']}', so conclusions that "
                                   "depend on it rest largely on the prior."
                                   if verdict["beta"] != "informed by the data" else "."))
    cp = ctx.config.cpeptide
    pri, lp, gp = cp.priors, cp.link_priors, cp.graft_priors
    ctx.assumptions.append(("C-peptide trajectory priors",
                            f"plateau ~ LogNormal(log {pri.plateau_median_pmol_l:g}, {pri.plateau_log_sd:g}); "
                            f"time to half plateau ~ LogNormal(log {pri.t_half_median_days:g}, "
                            f"{pri.t_half_log_sd:g}); spreads ~ HalfNormal({pri.spread_plateau_scale:g}, "
                            f"{pri.spread_rate_scale:g}); rise shape ~ LogNormal(0, {pri.rise_shape_log_sd:g})",
                            "configuration (cpeptide.priors)"))
    ctx.assumptions.append(("measurement noise of C-peptide",
                            f"sd of log C-peptide ~ LogNormal(log {pri.measurement_sd_median:g}, "
                            f"{pri.measurement_sd_log_sd:g})", "MMTT repeatability (mmtt_repeatability2021)"))
    ctx.assumptions.append(("curve misfit of the published means",
                            f"sd ~ Gamma(2, 2 / {pri.curve_misfit_scale:g}); not passed on to new participants",
                            "convention (cpeptide.priors.curve_misfit_scale)"))
    if result.mode == "graft_function":
        ctx.assumptions.append(("insulin-need threshold",
                                f"median ~ LogNormal(log {gp.need_median_pmol_l:g}, {gp.need_log_sd:g}); "
                                f"spread ~ HalfNormal({gp.need_spread_scale:g})",
                                "configuration (cpeptide.graft_priors)"))
        ctx.assumptions.append(("glucocorticoid exposure (two participants)",
                                f"{cp.glucocorticoid.replace('_', ' ')} strategy; the other strategy shown beside it",
                                "configuration (cpeptide.glucocorticoid)"))
    elif cp.link:
        ctx.assumptions.append(("graft-function link priors",
                                f"alpha ~ Normal({lp.alpha_mean:g}, {lp.alpha_sd:g}), "
                                f"beta ~ Normal({lp.beta_mean:g}, {lp.beta_sd:g})",
                                "configuration (cpeptide.link_priors)"))
    if not cp.late_decline:
        ctx.assumptions.append(("no loss of graft function after the last visit", "flat beyond day 365",
                                "configuration (cpeptide.late_decline: false)"))
    return sec


#: name -> (result type, section builders): the report's own map of what each section of results.json holds.
SECTION_BUILDERS = {
    "binary": (BinaryResult, (binary_section, safety_section)),
    "cpeptide": (CpeptideResult, (cpeptide_section,)),
    "design": (DesignResult, (design_section,)),
    "durability": (DurabilityResult, (durability_section,)),
}


def diagnostics_table(checks: list[FitCheck]) -> dict:
    rows = []
    for d in checks:
        name = d.fit + (f" (also used as: {', '.join(d.also)})" if d.also else "")
        rows.append({"fail": not d.ok, "cells": [
            cell(name), num(d.max_rhat, ".3f"), num(d.min_ess_bulk, ".0f"), num(d.min_ess_tail, ".0f"),
            cell(d.divergences, "num"), num(d.min_ebfmi, ".2f"), cell(f"{d.n_chains} x {d.n_draws}", "num"),
            cell("ok" if d.ok else "FAILED: " + "; ".join(d.failures), "ok" if d.ok else "fail")]})
    return table(["fit", "max R-hat", "min bulk ESS", "min tail ESS", "divergences", "min E-BFMI",
                  "chains x draws", "result"], rows)


def _provenance_rows(index: ResultsIndex, engine: str | None) -> list[tuple[str, str]]:
    prov = index.provenance
    rows = [
        ("created (UTC)", prov.created_utc),
        ("git commit", prov.git_commit),
        ("configuration", index.config_file),
        ("configuration SHA-256", index.config_sha256),
    ]
    for name, meta in index.data.items():
        rows.append((f"data: {name}", f"{meta.path}  sha256 {meta.sha256}"))
    rows.append(("seed", str(index.config.seed)))
    rows.append(("sampler", ", ".join(f"{k}={v}" for k, v in index.config.sampler.model_dump().items())))
    for name, sec in index.sections.items():
        cache = sec.cache or {}
        what = sec.status if sec.status != "ok" else (
            f"{cache.get('status', '')} ({sec.seconds:.1f} s), cache key {cache.get('key', '')[:16]}")
        rows.append((f"section: {name}", what))
    rows.append(("analyses run time", f"{index.timings_s.get('analyses', float('nan')):.1f} s"))
    rows.append(("fit cache", f"{index.cache.dir} ({'on' if index.cache.enabled else 'off'})"))
    rows.append(("PDF rendered by", engine or "no PDF requested"))
    rows.append(("platform", prov.platform))
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


def render_html(out: Path, pdf_engine_description: str | None, figure_cache: Path | None = None
                ) -> tuple[str, dict[str, Any], list[str]]:
    """The report's HTML text, the numbers its summary quotes, and the problems found while building it;
    rendered figures are kept in ``figure_cache`` (:mod:`isletbayes.reports.figure_cache`; None: not kept)."""
    from isletbayes.analyses.provenance import package_versions
    from isletbayes.models.diagnostic_thresholds import EBFMI_MIN, ESS_MIN_PER_CHAIN, RHAT_MAX

    index = read_index(out)
    ctx = ReportContext(index, Path(out), figure_cache=FigureCache(figure_cache))
    inputs = _load_inputs(ctx)
    ctx.data = inputs
    sections = [data_section(ctx, inputs)]
    checks: list[FitCheck] = []
    for name, entry in index.sections.items():
        builder = SECTION_BUILDERS.get(name)
        if entry.status != "ok" or builder is None:
            reason = entry.reason or "no report section for it in this version"
            sections.append(Section(name, entry.title, unavailable=f"Not in this report: {reason}."))
            if builder is None:
                ctx.alerts.append(f"The {name} section is missing from this report: {reason}.")
            continue
        result_type, builds = builder
        result = result_type.load(Path(out) / entry.dir, draws=False)  # the report shows no draws
        built = []
        for build in builds:
            try:
                sec = build(ctx, result)
            except Exception as err:  # noqa: BLE001 - one section that cannot be drawn must not sink the report
                logging.getLogger(__name__).debug("section %s", name, exc_info=True)
                message = (f"The {name} section could not be drawn ({type(err).__name__}: {err}); its results are "
                           f"in {entry.dir}/ and results.json.")
                ctx.alerts.append(message)
                ctx.problems.append(message)
                sec = Section(name, entry.title, unavailable=message)
            if sec is not None:
                built.append(sec)
        for d in result.fit_checks():
            checks.append(d)
            if not d.ok:
                also = f" (also used as {', '.join(d.also)})" if d.also else ""
                msg = f"Fit '{d.fit}'{also} FAILED its convergence checks: {'; '.join(d.failures)}."
                if built:
                    built[0].alerts.append(msg + " Numbers that depend on it are not trustworthy.")
                ctx.alerts.append(msg)
        sections.extend(built)
    ctx.assumptions.extend(_data_assumptions(inputs))
    versions = index.provenance.package_versions or package_versions()
    context = {
        "title": TITLE,
        "subtitle": ("Reichman et al., N Engl J Med 2025;393:858-868 (NCT04786262): 12 full-dose participants, "
                     "aggregate results only, no control arm. Report generated "
                     f"{index.provenance.created_utc}."),
        "alerts": ctx.alerts,
        "summary": ctx.summary or ["No analysis section ran; see below."],
        "sections": sections,
        "diagnostics": diagnostics_table(checks),
        "thresholds": {"rhat": RHAT_MAX, "ess_per_chain": ESS_MIN_PER_CHAIN, "ebfmi": EBFMI_MIN},
        "assumptions": table(["what", "value", "where it comes from"],
                             [[cell(a), cell(b), cell(c)] for a, b, c in ctx.assumptions]),
        "provenance": _provenance_rows(index, pdf_engine_description),
        "packages": table(["package", "version"], [[cell(k), cell(v)] for k, v in versions.items()]),
        "provenance_version": versions.get("isletbayes", ""),
    }
    html = _environment().get_template(TEMPLATE).render(**context)
    ctx.problems.extend(unresolved_references(html, sections))
    return html, ctx.numbers, ctx.problems


_SEE = re.compile(r"\bsee the ([a-z][a-z -]*?)(?= table| figure|[).,;:]|$)", re.IGNORECASE)


def unresolved_references(html: str, sections: list[Section]) -> list[str]:
    """Problems of a rendered report: internal links whose target is missing, and text that sends the reader to
    "the X" (a table or figure) that the report does not hold."""
    problems = []
    ids = set(re.findall(r'\bid="([^"]+)"', html))
    for target in sorted(set(re.findall(r'href="#([^"]+)"', html)) - ids):
        problems.append(f"the report links to #{target}, which it does not hold")
    titles = " | ".join([s.title for s in sections]
                        + [b.get("caption", "") + " " + b.get("text", "") for s in sections for b in s.blocks
                           if b["kind"] in ("table", "heading", "figure")]).lower()
    prose = [b["text"] for s in sections for b in s.blocks if b["kind"] in ("text", "note")]
    prose += [a for s in sections for a in s.alerts]
    for phrase in sorted({m.group(1).strip().lower() for t in prose for m in _SEE.finditer(t)}):
        if phrase not in titles:
            problems.append(f"the report refers to 'the {phrase}', which it does not hold")
    return problems


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


def build_report(out: str | Path, pdf: bool = True, figure_cache: str | Path | None = None) -> ReportFiles:
    """Write ``<out>/report.html`` and (if ``pdf``) ``<out>/report.pdf``; say which engine made the PDF. Rendered
    figures are kept in ``figure_cache`` (the main job's fit cache has a ``figures/`` folder) and reused while their
    numbers and the figure code are unchanged."""
    from isletbayes.reports import pdf as pdfmod

    out = Path(out)
    html_path = out / HTML_NAME
    engines = pdfmod.available_engines() if pdf else []
    errors: list[str] = []
    if pdf and not engines:
        errors.append("no PDF engine here (install chromium, or WeasyPrint with its Pango library)")
    for engine in engines:
        html, numbers, problems = render_html(out, engine.description, figure_cache)
        write_text_atomic(html_path, html)
        try:
            pdfmod.render_pdf(html_path, out / PDF_NAME, engine)
        except (pdfmod.PdfError, OSError) as err:
            errors.append(f"{engine.name}: {err}")
            continue
        return ReportFiles(html_path, out / PDF_NAME, engine.description, None, numbers, problems)
    html, numbers, problems = render_html(out, None if not pdf else "none (" + "; ".join(errors) + ")",
                                          figure_cache)
    write_text_atomic(html_path, html)
    (out / PDF_NAME).unlink(missing_ok=True)  # an older PDF would no longer match this HTML
    return ReportFiles(html_path, None, None, "; ".join(errors) or None, numbers, problems)
