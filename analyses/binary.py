r"""Re-analysis of zimislecel's binary end points under a panel of priors, with exact beta-mixture posteriors.

For each efficacy end point (r of n full-dose participants: insulin independence 10/12, composite primary 12/12,
SHE-free 12/12, HbA1c < 7% 12/12) and each prior :math:`p(\theta)` of the panel
(:func:`isletbayes.models.prior_panel.prior_panel`), the posterior is exact::

    theta | r  ~  sum_k w_k' Beta(a_k + r, b_k + n - r)        (isletbayes.models.mixtures)

The MAP and robust MAP members come from a random-effects meta-analysis of the comparator studies
(:func:`isletbayes.models.map_prior.map_prior`), fitted once per distinct comparator set. When an end point has no
comparator study with counts, the members that need one and the "comparator" threshold are left out, and the
result says so in its notes.

Per end point and prior: posterior mean, median, sd, 95% equal-tailed and highest-density intervals, P(rate >
threshold) for each threshold, the prior's effective sample size (ELIR, moment, Morita), Box's prior-data conflict
p-values and the beta-binomial predictive of responders among the next ``predictive_m`` participants;
Clopper-Pearson exact 95% intervals beside them. Safety rates (serious neutropenia 3/14, deaths 2/14, acute kidney
injury 2/14) get exact posteriors under the uniform and Jeffreys priors and a sentence in plain language.

Entry point: :func:`run_binary` (config blocks in, :class:`BinaryResult` out). The command line
(``isletbayes binary``) and the main job both call it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import Field
import scipy

from isletbayes.analyses.config import BinaryConfig, PriorsConfig, SamplerConfig
from isletbayes.analyses.donor_benchmark import benchmark, comparator_rows, definition_table, endpoint_map
from isletbayes.analyses.inputs import AnalysisInputs
from isletbayes.analyses.provenance import provenance, sha256_of
from isletbayes.analyses.results import AnalysisResult, BetaMix, DataTreeField, FitCheck, Frame, ResultModel
from isletbayes.data.endpoints import default_row
from isletbayes.models.mixtures import (BetaMixture, ess_all, prior_data_conflict, prob_difference_greater,
                                        tipping_point)
from isletbayes.models.prior_panel import NEEDS_COMPARATOR, PRIOR_LABELS, prior_panel

SAFETY_ENDPOINTS = ("serious_neutropenia", "death", "acute_kidney_injury")
SAFETY_THRESHOLDS = (0.05, 0.10, 0.20)
ESS_METHODS = ("elir", "moment", "morita")  # ELIR, RBesT's default, first: the one every table shows
ESS_NOTE = ("ESS: prior effective sample size by ELIR (expected local information ratio, RBesT's default); the "
            "moment and Morita ESS are in the JSON. For a mixture they differ: moment matching reads only the mean "
            "and variance, Morita the information at the mode, ELIR the information averaged over the prior.")


class ComparatorSet(ResultModel):
    """The comparator studies (with counts) used for one end point, how they were chosen, and the end point's
    donor-islet benchmark (priors.benchmark)."""

    basis: str
    studies: Frame  # study, r, n, group, source_id, time_anchor, definition
    pooled_rate: float | None = None
    benchmark: float | None = None
    benchmark_rule: str | None = None


class MapSummary(ResultModel):
    """The MAP prior of one end point: its mixture approximations, ESS, tau and the fit's diagnostics."""

    mixture: BetaMix
    robust_mixture: BetaMix | None = None
    #: the robust mixture's exact equal-tailed 95% interval, computed with the fit so that the report needs no
    #: quantile root-finding (nor scipy.optimize) to draw it
    robust_eti95: tuple[float, float] | None = None
    ess: Frame  # index: mixture, robust_mixture; columns: elir (the default), moment, morita
    tau: dict[str, float]
    theta_pred: dict[str, float]
    mixture_fit: dict[str, Any]
    inputs: dict[str, Any]
    diagnostics: FitCheck
    summary: Frame | None = None  # mu, tau (, tau_group, shifts) posterior summaries
    exchangeability: Frame | None = None  # EXNEX: each study's prior and posterior probability of exchangeability
    definition_shifts: Frame | None = None


class TauPriorRow(ResultModel):
    """The MAP prior and the comparison under one tau prior: with two or three studies, the amount of borrowing."""

    tau_prior: str
    map_ess_elir: float
    robust_map_ess_elir: float | None = None
    tau_median: float
    tau_q975: float
    map_mean: float
    map_interval95: tuple[float, float]
    posterior_mean: float  # zimislecel's rate under the robust MAP prior
    posterior_interval95: tuple[float, float]
    p_better: float  # P(rate_Z - rate_C > 0), rate_Z under a uniform prior, rate_C from this robust MAP prior
    p_better_by_delta: float
    conclusive: bool  # p_better >= binary.conclusion_probability
    diagnostics: FitCheck


class TippingPointSummary(ResultModel):
    """The borrowed ESS (a beta prior at the benchmark) at which "P(rate > benchmark) >= probability" fails."""

    benchmark: float
    probability: float
    ess: float | None  # None: holds at every ESS up to ess_max; 0: fails without borrowing
    ess_max: float
    table: Frame  # ess, posterior mean, P(rate > benchmark), conclusive

    @property
    def verdict(self) -> str:
        """What happens to the conclusion as borrowing grows, in words (the console and the report say it alike)."""
        if self.ess is None:
            return f"holds at every borrowed ESS up to {self.ess_max:g}"
        if self.ess == 0:
            return "fails even without borrowing"
        return f"fails once a prior at the benchmark is worth about {self.ess:.0f} participants"


class EndpointPanel(ResultModel):
    """One end point under every member of the prior panel."""

    endpoint: str
    r: int
    n: int
    definition: str
    source_id: str
    locator: str
    caveat: str | None = None
    evidence_type: str
    clopper_pearson95: tuple[float, float]
    thresholds: dict[str, float]  # label ('0.5', 'comparator') -> value
    comparators: ComparatorSet
    definitions: Frame | None = None  # each comparator's definition difference and whom it favours
    map: MapSummary | None = None
    comparison: Frame | None = None  # per panel prior: P(rate_Z - rate_C > 0), > delta; rate_C ~ robust MAP
    tau_panel: list[TauPriorRow] = Field(default_factory=list)
    tipping_point: TippingPointSummary | None = None
    priors: dict[str, BetaMix]
    posteriors: dict[str, BetaMix]
    table: Frame  # one row per panel member (see summarise_posterior)
    predictive_pmf: Frame  # responders among the next m: one column per member
    notes: list[str] = Field(default_factory=list)


class SafetyEvent(ResultModel):
    endpoint: str
    r: int
    n: int
    definition: str
    source_id: str
    evidence_type: str
    caveat: str | None = None
    clopper_pearson95: tuple[float, float]
    table: Frame  # one row per prior (uniform, jeffreys)
    plain_language: str


class BinaryResult(AnalysisResult):
    """Result of :func:`run_binary`."""

    JSON_FILE: ClassVar[str] = "binary.json"
    NETCDF: ClassVar[dict[str, str]] = {"map_draws": "map_{key}.nc"}
    ANALYSIS: ClassVar[str] = "binary"

    endpoints: dict[str, EndpointPanel]
    safety: dict[str, SafetyEvent] = Field(default_factory=dict)
    settings: dict[str, Any] = Field(default_factory=dict)
    map_draws: DataTreeField = Field(default_factory=dict)

    def fit_checks(self) -> list[FitCheck]:
        checks = []
        for ep in self.endpoints.values():
            if ep.map is not None:
                checks.append(ep.map.diagnostics)
            checks += [row.diagnostics for row in ep.tau_panel]
        return checks


# --------------------------------------------------------------------------------------------------------------
# summaries
# --------------------------------------------------------------------------------------------------------------
def clopper_pearson(r: int, n: int, level: float = 0.95) -> tuple[float, float]:
    ci = scipy.stats.binomtest(r, n).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def summarise_posterior(prior: BetaMixture, r: int, n: int, thresholds: dict[str, float],
                        predictive_m: int) -> tuple[dict[str, Any], BetaMixture, np.ndarray]:
    """One table row for an (end point, prior) pair, the posterior, and the predictive pmf of the next m."""
    post = prior.posterior(r, n)
    pred = post.predictive(predictive_m)
    pmf = np.asarray(pred.pmf(pred.support()), dtype=float)
    ess = ess_all(prior)
    conflict = prior_data_conflict(prior, r, n)
    eti, hdi = post.eti(0.95), post.hdi(0.95)
    row = {"prior_mean": prior.mean(), **{f"ess_{m}": ess.get(m, float("nan")) for m in ESS_METHODS},
           "mean": post.mean(), "median": float(post.ppf(0.5)), "sd": post.sd(),
           "eti_low": float(eti[0]), "eti_high": float(eti[1]), "hdi_low": float(hdi[0]),
           "hdi_high": float(hdi[1]),
           **{f"p_above_{label}": float(post.sf(value)) for label, value in thresholds.items()},
           "conflict_p": conflict.p_value, "conflict_direction": conflict.direction,
           "conflict_p_box": conflict.p_box,
           "predictive_mean": pred.mean(), "predictive_low": int(pred.ppf(0.025)),
           "predictive_high": int(pred.ppf(0.975)), "predictive_p_all": float(pmf[-1])}
    return row, post, pmf


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%" if x >= 0.1 else f"{100 * x:.1f}%"


def safety_event(row: pd.Series) -> SafetyEvent:
    r, n = int(row["r"]), int(row["n"])
    rows, sentence = [], ""
    for name, (a, b) in (("uniform", (1.0, 1.0)), ("jeffreys", (0.5, 0.5))):
        post = BetaMixture.single(a, b).posterior(r, n)
        lo, hi = post.eti(0.95)
        hdi = post.hdi(0.95)
        p_above = {f"p_above_{t:g}": float(post.sf(t)) for t in SAFETY_THRESHOLDS}
        rows.append({"prior": name, "mean": post.mean(), "median": float(post.ppf(0.5)), "eti_low": float(lo),
                     "eti_high": float(hi), "hdi_low": float(hdi[0]), "hdi_high": float(hdi[1]), **p_above})
        if name == "uniform":
            sentence = (f"{r} of {n} participants ({row['endpoint'].replace('_', ' ')}): under a uniform prior the "
                        f"rate is estimated at {_pct(post.mean())}, with 95% probability between {_pct(lo)} and "
                        f"{_pct(hi)}; the probability that it exceeds 10% is {_pct(p_above['p_above_0.1'])}.")
    return SafetyEvent(endpoint=row["endpoint"], r=r, n=n, definition=row["definition"], source_id=row["source_id"],
                       evidence_type=row["evidence_type"],
                       caveat=None if pd.isna(row["caveat"]) else row["caveat"],
                       clopper_pearson95=clopper_pearson(r, n), table=pd.DataFrame(rows).set_index("prior"),
                       plain_language=sentence)


def _map_summary(name: str, fit) -> MapSummary:
    ess = pd.DataFrame({name: values for name, values in fit.ess.items()}).T
    ess = ess.reindex(columns=list(ESS_METHODS)).astype(float)
    ess.index.name = "mixture"
    robust = fit.robust_mixture
    return MapSummary(mixture=fit.mixture, robust_mixture=robust, ess=ess,
                      robust_eti95=None if robust is None else tuple(float(v) for v in robust.eti(0.95)),
                      tau=dict(fit.tau_summary), theta_pred=dict(fit.theta_pred_summary),
                      mixture_fit=fit.fit.as_dict(), inputs=fit.inputs,
                      diagnostics=FitCheck.of(name, fit.diagnostics), summary=fit.summary(),
                      exchangeability=fit.exchangeability, definition_shifts=fit.definition_shifts)


def _comparator(fit) -> BetaMixture:
    """The donor-islet rate a new study would show: the robust MAP prior (the plain one if not robustified)."""
    return fit.robust_mixture if fit.robust_mixture is not None else fit.mixture


def comparison_table(posteriors: dict[str, BetaMixture], fit, delta: float) -> pd.DataFrame:
    """P(rate_Z - rate_C > 0) and > delta for each panel prior's posterior, rate_C from the robust MAP prior
    (RBesT's pmixdiff): the comparator is a distribution, not a constant."""
    control = _comparator(fit)
    rows = []
    for name, post in posteriors.items():
        p0, pd_ = prob_difference_greater(post, control, np.array([0.0, delta]))
        rows.append({"prior": name, "p_better": float(p0), "p_better_by_delta": float(pd_)})
    frame = pd.DataFrame(rows).set_index("prior")
    frame.attrs["delta"] = delta
    return frame


def tau_row(spec: str, endpoint: str, r: int, n: int, rows, priors: PriorsConfig, sampler: SamplerConfig, seed: int,
            inputs: AnalysisInputs, config: BinaryConfig) -> TauPriorRow:
    """The MAP prior and the comparison under the tau prior ``spec`` ('family:scale')."""
    family, _, scale = spec.partition(":")
    variant = priors.model_copy(update={"map": priors.map.model_copy(update={"tau_prior": family,
                                                                            "tau_scale": float(scale)})})
    fit = endpoint_map(rows, variant, sampler, seed, inputs.comparators)
    control = _comparator(fit)
    post = control.posterior(r, n)
    lo, hi = post.eti(0.95)
    mlo, mhi = fit.mixture.eti(0.95)
    uniform = BetaMixture.single(1.0 + r, 1.0 + n - r)
    p_better, p_delta = prob_difference_greater(uniform, control, np.array([0.0, config.delta]))
    robust_ess = ess_all(fit.robust_mixture).get("elir") if fit.robust_mixture is not None else None
    return TauPriorRow(tau_prior=spec, map_ess_elir=ess_all(fit.mixture).get("elir", float("nan")),
                       robust_map_ess_elir=robust_ess, tau_median=fit.tau_summary["median"],
                       tau_q975=fit.tau_summary["q97.5"], map_mean=fit.mixture.mean(),
                       map_interval95=(float(mlo), float(mhi)), posterior_mean=post.mean(),
                       posterior_interval95=(float(lo), float(hi)), p_better=float(p_better),
                       p_better_by_delta=float(p_delta),
                       conclusive=bool(p_better >= config.conclusion_probability),
                       diagnostics=FitCheck.of(f"MAP prior ({endpoint}), tau ~ {spec}", fit.diagnostics))


# --------------------------------------------------------------------------------------------------------------
# the analysis
# --------------------------------------------------------------------------------------------------------------
def run_binary(config: BinaryConfig, *, priors: PriorsConfig, sampler: SamplerConfig, seed: int,
               inputs: AnalysisInputs, safety: bool = True) -> BinaryResult:
    """Posterior of each efficacy end point under each prior of the panel, plus safety rates (module docstring).

    ``safety=False`` leaves the adverse events out. Each distinct comparator set is fitted once per run.
    """
    settings = sampler.settings(seed)
    endpoints: dict[str, EndpointPanel] = {}
    map_draws: dict[str, Any] = {}
    for endpoint in config.endpoints:
        row = default_row(inputs.counts, endpoint)
        r, n = int(row["r"]), int(row["n"])
        notes: list[str] = []
        rows = comparator_rows(inputs, endpoint, priors)
        mark = benchmark(endpoint, inputs, priors, sampler, seed)
        comp = ComparatorSet(basis=rows.basis, studies=rows.studies, pooled_rate=rows.pooled_rate,
                             benchmark=None if mark is None else mark.value,
                             benchmark_rule=None if mark is None else mark.description)
        pooled = rows.pooled_rate
        if pooled is None:
            notes.append(f"no comparator study with counts for {endpoint} ({rows.basis}): "
                         f"{', '.join(NEEDS_COMPARATOR)} priors and the 'comparator' threshold are left out")
        else:
            notes.append("comparator end-point definitions and time anchors differ from zimislecel's (single "
                         "infusion; comparators mostly 1 year after the last of up to 3 infusions): the "
                         "MAP/sceptical priors assume an exchangeability that is not established")
        thresholds = {}
        for t in config.thresholds:
            if t == "comparator":
                if mark is not None:
                    thresholds["comparator"] = mark.value
            else:
                thresholds[f"{t:g}"] = float(t)
        map_fit = None
        if pooled is not None:
            map_fit = endpoint_map(rows, priors, sampler, seed, inputs.comparators)
            map_draws[endpoint] = map_fit.idata
            if len(rows.studies) < 3:
                notes.append(f"only {len(rows.studies)} comparator studies: the between-study sd tau is informed "
                             "mostly by its prior, so the MAP prior's width reflects the tau prior (see the "
                             "tau-prior table)")
        panel = prior_panel(priors.panel, comparator_rate=pooled,
                            map_mixture=None if map_fit is None else map_fit.mixture,
                            robust_map_mixture=None if map_fit is None else map_fit.robust_mixture)
        table_rows, posts, pmfs = [], {}, {}
        for name, mix in panel.items():
            summary, posts[name], pmfs[name] = summarise_posterior(mix, r, n, thresholds, config.predictive_m)
            table_rows.append({"prior": name, "label": PRIOR_LABELS[name], **summary})
        table = pd.DataFrame(table_rows).set_index("prior")
        pmf = pd.DataFrame(pmfs)
        pmf.index.name = "responders"
        panel_ep = EndpointPanel(
            endpoint=endpoint, r=r, n=n, definition=row["definition"], source_id=row["source_id"],
            locator=row["locator"], caveat=None if pd.isna(row["caveat"]) else row["caveat"],
            evidence_type=row["evidence_type"], clopper_pearson95=clopper_pearson(r, n), thresholds=thresholds,
            comparators=comp, priors=panel, posteriors=posts, table=table, predictive_pmf=pmf, notes=notes)
        if map_fit is not None:
            panel_ep.map = _map_summary(f"MAP prior ({endpoint})", map_fit)
            panel_ep.definitions = definition_table(rows, inputs.comparators)
            panel_ep.comparison = comparison_table(posts, map_fit, config.delta)
            panel_ep.tau_panel = [tau_row(spec, endpoint, r, n, rows, priors, sampler, seed, inputs, config)
                                  for spec in priors.tau_panel]
            tp = tipping_point(r, n, mark.value, mark.value, config.conclusion_probability)
            panel_ep.tipping_point = TippingPointSummary(
                benchmark=mark.value, probability=config.conclusion_probability, ess=tp.ess, ess_max=tp.ess_max,
                table=tp.table)
        endpoints[endpoint] = panel_ep

    safety_events = {e: safety_event(default_row(inputs.counts, e)) for e in SAFETY_ENDPOINTS} if safety else {}
    run_settings = {"config": config.model_dump(mode="json"), "priors": priors.model_dump(mode="json"),
                    "sampler": settings.as_dict(), "safety": safety}
    return BinaryResult(
        endpoints=endpoints, safety=safety_events, settings=run_settings, map_draws=map_draws,
        provenance=provenance(seed=seed, sampler_settings=settings.as_dict(), analysis="binary",
                              counts_sha256=sha256_of(inputs.counts.to_csv(index=False)),
                              comparators_sha256=sha256_of(inputs.comparators.to_csv(index=False))))
