r"""Durability of insulin independence over the 5-year follow-up: **scenarios, not findings**.

Zimislecel has one year of published follow-up. What share of a phase 3 cohort is still insulin independent at
years 2-5 depends on graft attrition after year 1, which no zimislecel data inform. This module projects it under
attrition scenarios borrowed from deceased-donor islet transplantation (``data/published/durability.csv``):

.. math::
    \Pr(\text{II at year } y) = p_1 \, S(y - 1), \qquad y = 1, \dots, 5,

with :math:`p_1` the year-1 rate (phase 1/2 posterior, e.g. Beta(11, 3) for 10/12 under a uniform prior) and
:math:`S(t)` the probability that someone insulin independent at year 1 still is :math:`t` years later. Each scenario
is a parametric :math:`S` fitted to one published durability figure, with its sampling uncertainty propagated by
drawing the figure from a beta posterior (uniform prior) of its count, or of an **approximate** count where only a
percentage is published (the effective denominators are stated in the output):

* ``citr2008_weibull``: of recipients who ever became insulin independent, 71% still were 1 year later and 52% 2
  years later (CITR 2008). Weibull :math:`S(t) = \exp(-H_1 t^k)` through both points:
  :math:`H_1 = -\log S(1)`, :math:`k = \log_2(\log S(2) / \log S(1))`.
* ``shapiro2006_exponential``: 5 of the 16 insulin independent at 1 year still were at 2 years; exponential
  :math:`S(t) = S(1)^t`, :math:`S(1) \sim \mathrm{Beta}(6, 12)`.
* ``tiwari_weibull``: 69/54/44% of 1-year responders kept the composite end point at 2/3/4 years (CITR analysis by
  Tiwari et al.; Kaplan-Meier, composite end point rather than insulin independence); Weibull by least squares of
  :math:`\log(-\log S)` on :math:`\log t`.
* ``ryan2005_exponential``: median duration of insulin independence 15 months among 44 (Ryan 2005); exponential
  with rate :math:`\ln 2 / 1.25` per year, measured from the onset of insulin independence; memorylessness is what
  lets it apply from year 1. Rate uncertainty: Gamma(44, 44 / rate) (as if all 44 had lost it: approximate).
* ``no_attrition``: :math:`S \equiv 1`, an upper bound.

Every scenario transfers donor-islet attrition (with repeated infusions, different immunosuppression and
different end-point definitions) to a single-infusion stem-cell product: an assumption, not evidence.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import pandas as pd
from pydantic import Field

from isletbayes.analyses.config import DurabilityConfig
from isletbayes.analyses.provenance import provenance
from isletbayes.analyses.results import AnalysisResult, Frame, ResultModel
from isletbayes.data.errors import InputError

YEARS = np.arange(1, 6)
LABEL = ("SCENARIOS, NOT FINDINGS: attrition after year 1 is borrowed from deceased-donor islet studies; no "
         "zimislecel data beyond one year inform it.")
# Effective denominators where only a percentage is published (assumptions, reported with the results):
CITR2008_EVER_II = 0.70 * 325  # "70% achieved II at least once" of 325 islet-alone recipients (CITR 2008)
TIWARI_RESPONDERS = 0.59 * 347  # about 59% of 347 met the composite at 1 year (Tiwari et al.)


class Scenario(ResultModel):
    """One attrition scenario: where it comes from, what it assumes, and the projected shares by year."""

    description: str
    source_ids: list[str]
    assumptions: str
    parameters: dict[str, float]
    projection: Frame  # index year: median, lower, upper (95%), retained_median


class DurabilityResult(AnalysisResult):
    """Result of :func:`run_durability`."""

    JSON_FILE: ClassVar[str] = "durability.json"
    ANALYSIS: ClassVar[str] = "durability"

    label: str
    year1_prior: dict[str, float | str]
    scenarios: dict[str, Scenario]
    settings: dict = Field(default_factory=dict)


def _figure(df, source_id: str, measure: str) -> list[float]:
    rows = df[(df["source_id"] == source_id) & (df["measure"] == measure)]
    if rows.empty:
        raise InputError(f"no {measure} row from {source_id}", file="durability.csv", key=source_id)
    return [float(v) for v in rows["value"]]


def _beta_draws(p: float, m: float, rng, size) -> np.ndarray:
    """A proportion p observed as about p*m of m: Beta(p m + 1, (1 - p) m + 1) draws."""
    return rng.beta(p * m + 1.0, (1.0 - p) * m + 1.0, size=size)


def attrition_scenarios(rng: np.random.Generator, n_draws: int, durability=None) -> dict:
    """Draws of S(t), t = 0..4 years after year 1, for each scenario: name -> (S array (draws, 5), metadata)."""
    from isletbayes.data import load_durability

    df = load_durability() if durability is None else durability
    t = YEARS - 1.0
    out = {}

    s1, s2 = (v / 100 for v in _figure(df, "citr2008", "insulin_independence_retained"))
    d1 = _beta_draws(s1, CITR2008_EVER_II, rng, n_draws)
    d21 = _beta_draws(s2 / s1, s1 * CITR2008_EVER_II, rng, n_draws)  # still II at 2 years given still at 1
    h1, h2 = -np.log(d1), -np.log(d1 * d21)
    k = np.log2(h2 / h1)
    out["citr2008_weibull"] = (np.exp(-h1[:, None] * t[None, :] ** k[:, None]), {
        "description": "Weibull through CITR 2008 retention of insulin independence (71% at +1 y, 52% at +2 y)",
        "source_ids": ["citr2008"], "parameters": {"H1_median": float(np.median(h1)), "k_median": float(np.median(k))},
        "assumptions": f"denominator about {CITR2008_EVER_II:.0f} (70% of 325), not published; time counted from "
                       "first insulin independence"})

    row = df[(df["source_id"] == "shapiro2006") & (df["measure"] == "insulin_independence_retained")].iloc[0]
    r, n = int(row["r"]), int(row["n"])
    d = rng.beta(r + 1.0, n - r + 1.0, size=n_draws)
    out["shapiro2006_exponential"] = (d[:, None] ** t[None, :], {
        "description": f"exponential: {r} of {n} insulin independent at 1 year still were at 2 years (Shapiro 2006)",
        "source_ids": ["shapiro2006"], "parameters": {"S1_median": float(np.median(d))},
        "assumptions": "constant hazard after year 1"})

    km = [v / 100 for v in _figure(df, "tiwari_citr", "composite_retained")]  # at 1, 2, 3 years after year 1
    at_risk, surv, conds = TIWARI_RESPONDERS, np.ones(n_draws), []
    prev = 1.0
    for s in km:
        c = _beta_draws(s / prev, at_risk * prev, rng, n_draws)
        surv = surv * c
        conds.append(surv.copy())
        prev = s
    log_t = np.log(np.arange(1.0, len(km) + 1))
    log_h = np.log(-np.log(np.stack(conds, axis=1)))  # (draws, 3)
    slope = ((log_t - log_t.mean()) * (log_h - log_h.mean(axis=1, keepdims=True))).sum(axis=1) / (
        (log_t - log_t.mean()) ** 2).sum()
    intercept = log_h.mean(axis=1) - slope * log_t.mean()
    out["tiwari_weibull"] = (np.exp(-np.exp(intercept)[:, None] * t[None, :] ** slope[:, None]), {
        "description": "Weibull fitted to CITR 1-year responders keeping the composite (69/54/44% at 2/3/4 years)",
        "source_ids": ["tiwari_citr"],
        "parameters": {"H1_median": float(np.median(np.exp(intercept))), "k_median": float(np.median(slope))},
        "assumptions": f"composite end point (SHE-free, HbA1c <= 6.5%), not insulin independence; Kaplan-Meier "
                       f"figures treated as if from about {TIWARI_RESPONDERS:.0f} responders (59% of 347)"})

    row = df[(df["source_id"] == "ryan2005") & (df["measure"] == "insulin_independence_duration")].iloc[0]
    median_years, n_ii = float(row["value"]) / 12.0, int(row["n"])
    rate_hat = math.log(2.0) / median_years
    rate = rng.gamma(n_ii, rate_hat / n_ii, size=n_draws)
    out["ryan2005_exponential"] = (np.exp(-rate[:, None] * t[None, :]), {
        "description": f"exponential with median duration {row['value']:g} months (Ryan 2005, {n_ii} patients)",
        "source_ids": ["ryan2005"], "parameters": {"rate_per_year": rate_hat},
        "assumptions": "duration counted from onset, applied from year 1 by memorylessness; uncertainty as if all "
                       f"{n_ii} had lost insulin independence"})

    out["no_attrition"] = (np.ones((n_draws, t.size)), {
        "description": "no loss after year 1 (upper bound)", "source_ids": [], "parameters": {},
        "assumptions": "none lose insulin independence"})
    return out


def run_durability(config: DurabilityConfig, *, seed: int, phase12: tuple[int, int],
                   durability: pd.DataFrame) -> DurabilityResult:
    """Projected share insulin independent at years 1-5 under each scenario, with 95% credible intervals.

    ``phase12``: the day-365 insulin-independence count (r, n); the year-1 rate is its posterior under a uniform
    prior. ``durability``: the validated durability table (:func:`isletbayes.data.load_durability`)."""
    r, n = phase12
    n_draws = config.n_draws
    rng = np.random.default_rng(seed)
    a, b = 1.0 + r, 1.0 + n - r
    p1 = rng.beta(a, b, size=n_draws)
    scenarios = {}
    for name, (surv, meta) in attrition_scenarios(rng, n_draws, durability).items():
        share = p1[:, None] * surv
        projection = pd.DataFrame({"median": np.median(share, axis=0), "lower": np.quantile(share, 0.025, axis=0),
                                   "upper": np.quantile(share, 0.975, axis=0),
                                   "retained_median": np.median(surv, axis=0)},
                                  index=pd.Index(YEARS.tolist(), name="year"))
        scenarios[name] = Scenario(projection=projection, **meta)
    settings = {"r": r, "n": n, "year1_prior": "Beta(1, 1)", "n_draws": n_draws, "seed": seed}
    return DurabilityResult(label=LABEL, year1_prior={"a": a, "b": b, "from": f"{r}/{n} under Beta(1, 1)"},
                            scenarios=scenarios, settings=settings, provenance=provenance(**settings))
