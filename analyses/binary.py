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
from scipy import stats

from isletbayes.analyses.config import BinaryConfig, PriorsConfig, SamplerConfig
from isletbayes.analyses.donor_benchmark import benchmark, comparator_rows, endpoint_map
from isletbayes.analyses.inputs import AnalysisInputs
from isletbayes.analyses.provenance import provenance, sha256_of
from isletbayes.analyses.results import AnalysisResult, BetaMix, DataTreeField, FitCheck, Frame, ResultModel
from isletbayes.data.endpoints import default_row
from isletbayes.models.mixtures import BetaMixture, prior_data_conflict
from isletbayes.models.prior_panel import NEEDS_COMPARATOR, PRIOR_LABELS, prior_panel

SAFETY_ENDPOINTS = ("serious_neutropenia", "death", "acute_kidney_injury")
SAFETY_THRESHOLDS = (0.05, 0.10, 0.20)
ESS_METHODS = ("elir", "moment", "morita")


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
    ess: Frame  # index: mixture, robust_mixture; columns: elir, moment, morita
    tau: dict[str, float]
    theta_pred: dict[str, float]
    mixture_fit: dict[str, Any]
    inputs: dict[str, Any]
    diagnostics: FitCheck


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
    map: MapSummary | None = None
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
        return [ep.map.diagnostics for ep in self.endpoints.values() if ep.map is not None]


# --------------------------------------------------------------------------------------------------------------
# summaries
# --------------------------------------------------------------------------------------------------------------
def clopper_pearson(r: int, n: int, level: float = 0.95) -> tuple[float, float]:
    ci = stats.binomtest(r, n).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def prior_ess(mix: BetaMixture) -> dict[str, float]:
    out = {}
    for method in ESS_METHODS:
        try:
            out[method] = float(mix.ess(method))
        except ValueError:
            out[method] = float("nan")  # ELIR undefined for a mixture with a parameter < 1
    return out


def summarise_posterior(prior: BetaMixture, r: int, n: int, thresholds: dict[str, float],
                        predictive_m: int) -> tuple[dict[str, Any], BetaMixture, np.ndarray]:
    """One table row for an (end point, prior) pair, the posterior, and the predictive pmf of the next m."""
    post = prior.posterior(r, n)
    pred = post.predictive(predictive_m)
    pmf = np.asarray(pred.pmf(pred.support()), dtype=float)
    ess = prior_ess(prior)
    conflict = prior_data_conflict(prior, r, n)
    eti, hdi = post.eti(0.95), post.hdi(0.95)
    row = {"prior_mean": prior.mean(), **{f"ess_{m}": v for m, v in ess.items()},
           "mean": post.mean(), "median": float(post.ppf(0.5)), "sd": post.sd(),
           "eti_low": float(eti[0]), "eti_high": float(eti[1]), "hdi_low": float(hdi[0]),
           "hdi_high": float(hdi[1]),
           **{f"p_above_{label}": float(post.sf(value)) for label, value in thresholds.items()},
           "conflict_p_box": conflict.p_box, "conflict_p_lower": conflict.p_lower,
           "conflict_p_upper": conflict.p_upper,
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
    return MapSummary(mixture=fit.mixture, robust_mixture=fit.robust_mixture, ess=ess,
                      tau=dict(fit.tau_summary), theta_pred=dict(fit.theta_pred_summary),
                      mixture_fit=fit.fit.as_dict(), inputs=fit.inputs,
                      diagnostics=FitCheck.of(name, fit.diagnostics))


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
        if pooled is not None and {"map", "robust_map"} & set(priors.panel):
            map_fit = endpoint_map(rows, priors, sampler, seed)
            map_draws[endpoint] = map_fit.idata
            if len(rows.studies) < 3:
                notes.append(f"only {len(rows.studies)} comparator studies: the between-study sd tau is informed "
                             "mostly by its prior, so the MAP prior's width reflects the tau prior")
        panel = prior_panel(priors.panel, comparator_rate=pooled,
                            map_mixture=None if map_fit is None else map_fit.mixture,
                            robust_map_mixture=None if map_fit is None else map_fit.robust_mixture)
        rows, posts, pmfs = [], {}, {}
        for name, mix in panel.items():
            summary, posts[name], pmfs[name] = summarise_posterior(mix, r, n, thresholds, config.predictive_m)
            rows.append({"prior": name, "label": PRIOR_LABELS[name], **summary})
        table = pd.DataFrame(rows).set_index("prior")
        pmf = pd.DataFrame(pmfs)
        pmf.index.name = "responders"
        map_summary = None if map_fit is None else _map_summary(f"MAP prior ({endpoint})", map_fit)
        endpoints[endpoint] = EndpointPanel(
            endpoint=endpoint, r=r, n=n, definition=row["definition"], source_id=row["source_id"],
            locator=row["locator"], caveat=None if pd.isna(row["caveat"]) else row["caveat"],
            evidence_type=row["evidence_type"], clopper_pearson95=clopper_pearson(r, n), thresholds=thresholds,
            comparators=comp, map=map_summary, priors=panel, posteriors=posts, table=table, predictive_pmf=pmf,
            notes=notes)

    safety_events = {e: safety_event(default_row(inputs.counts, e)) for e in SAFETY_ENDPOINTS} if safety else {}
    run_settings = {"config": config.model_dump(mode="json"), "priors": priors.model_dump(mode="json"),
                    "sampler": settings.as_dict(), "safety": safety}
    return BinaryResult(
        endpoints=endpoints, safety=safety_events, settings=run_settings, map_draws=map_draws,
        provenance=provenance(seed=seed, sampler_settings=settings.as_dict(), analysis="binary",
                              counts_sha256=sha256_of(inputs.counts.to_csv(index=False)),
                              comparators_sha256=sha256_of(inputs.comparators.to_csv(index=False))))
