r"""Phase 3 planning: the trial's estimand, calibrated decision rules, design-prior panels, exact OC and assurance.

**Estimand** (ICH E9(R1); ``design.estimand``). The default is the phase 3 primary end point as described (a
secondary source): insulin independent, and free of severe hypoglycaemia, one year after first becoming insulin
independent (``phase3_persistence``); day-365 insulin independence and the phase 1/2 composite remain presets, and
the C-peptide end point is simulated. Intercurrent events: death and withdrawal count as failure (composite) or are
set aside (hypothetical); prohibited glucocorticoid exposure likewise (hypothetical: the two exposed phase 1/2
participants, both not insulin independent, leave the phase 1/2 count). For an insulin-independence estimand the
per-participant success probability :math:`\theta_E` comes from the multi-state durability model
(:mod:`isletbayes.analyses.durability`): onset within the window, still insulin independent (and alive, under the
composite strategy) ``persistence_days`` later, times the probability of staying free of severe hypoglycaemia
(phase 1/2: 12/12, Beta(13, 1)), times :math:`1 - w` for withdrawal :math:`w` under the composite strategy.

**Two priors kept apart** (O'Hagan, Stevens and Campbell 2005; Spiegelhalter, Abrams and Myles 2004, ch. 6). The
*design prior* is what we believe :math:`\theta_E` is; it drives assurance, and it is a **panel**
(``design.design_priors``): the phase 1/2 posterior; discounted to a chosen effective sample size (power prior,
Ibrahim and Chen 2000); robustified with a uniform component (Schmidli et al. 2014); the donor-islet MAP prior
updated by phase 1/2 ("map_updated"); and the MAP prior itself ("donor_like": zimislecel performs like donor
islets). Each panel member is a belief about day-365 insulin independence (or the composite) that the
durability model carries to the estimand; the result is approximated by a beta mixture (EM on 4,000 seeded draws)
so that every design calculation stays exact. The *analysis prior* is what the phase 3 analysis uses (uniform by
default); it sets the decision rule.

**Calibrated rule.** Success when :math:`P(\theta_E > p_0 \mid r, n) \ge \gamma`; ``gamma: calibrated`` takes the
smallest :math:`\gamma` (4 decimals) that keeps the exact type I error :math:`\le \alpha` at every n of the grid
(:func:`isletbayes.models.operating_characteristics.calibrate_gamma`). :math:`p_0` is the donor-islet benchmark of
the estimand's end point by the one rule ``priors.benchmark`` (:mod:`isletbayes.analyses.donor_benchmark`); for the
persistence estimand it is the day-365 insulin-independence benchmark times the donor-islet retention over the
persistence period (the durability model fitted to the donor figures alone, posterior median): a derived
benchmark, labelled so. The dual rule adds :math:`P(\theta_E > p_{mcid}) \ge \gamma_{mcid}` (RBesT decision1S with
two conditions).

Everything for binary estimands is exact: boundaries, type I error, power, assurance per design prior, conditional
assurance (power averaged over the design prior given :math:`\theta_E > p_{mcid}`), the p0 panel, interims with
efficacy and futility stops (binding and non-binding type I error), the overlapping cohort (phase 1/2
participants counted in the phase 3 n), and a two-arm alternative against a concurrent control with the donor-islet
MAP prior. The C-peptide estimand is simulated (:mod:`isletbayes.analyses.simulation`) from the C-peptide
re-analysis posterior.

Entry point: :func:`run_design` (the ``design`` block and what it draws on in; :class:`DesignResult` out).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Sequence

import numpy as np
import pandas as pd
from pydantic import Field
import scipy

from isletbayes.analyses.config import DesignConfig, DurabilityConfig, PriorsConfig, SamplerConfig
from isletbayes.analyses.inputs import AnalysisInputs
from isletbayes.analyses.provenance import provenance
from isletbayes.analyses.results import AnalysisResult, BetaMix, FitCheck, Frame, ResultModel
from isletbayes.data.errors import InputError
from isletbayes.models import operating_characteristics as oc
from isletbayes.models.mixtures import BetaMixture, fit_beta_mixture
from isletbayes.models.validation import ModelInputError

if TYPE_CHECKING:
    from isletbayes.analyses.cache import FitCache

PANEL_PRIORS = {"uniform": (1.0, 1.0), "jeffreys": (0.5, 0.5)}
#: Phase 1/2 participants with protocol-prohibited high-dose glucocorticoid exposure: the two who were not
#: insulin independent at day 365 (data/published/zimislecel_continuous.csv, dose-cut rows and their caveats).
PHASE12_GLUCOCORTICOID_EXPOSED = 2
ESTIMAND_DRAWS = 4000  # seeded draws of theta_E from which its beta-mixture design prior is fitted
AROUND_PLANNED = 5  # the report's per-n table shows n within this many of the planned n
DESIGN_PRIOR_LABELS = {
    "phase12": "phase 1/2 posterior",
    "discounted": "phase 1/2, discounted",
    "robust": "phase 1/2, robustified",
    "map_updated": "donor-islet MAP prior updated by phase 1/2",
    "donor_like": "like donor islets (MAP prior, not updated)",
}


# --------------------------------------------------------------------------------------------------------------
# priors
# --------------------------------------------------------------------------------------------------------------
def parse_prior(spec: str, key: str) -> BetaMixture:
    """'uniform' | 'jeffreys' | 'beta:A,B' | 'mix:W,A,B;W,A,B;...' -> BetaMixture (InputError naming ``key``)."""
    text = str(spec).strip().lower()
    if text in PANEL_PRIORS:
        return BetaMixture.single(*PANEL_PRIORS[text])
    try:
        if text.startswith("beta:"):
            a, b = (float(x) for x in text[5:].split(","))
            return BetaMixture.single(a, b)
        if text.startswith("mix:"):
            comps = [tuple(float(x) for x in part.split(",")) for part in text[4:].split(";") if part.strip()]
            if any(len(c) != 3 for c in comps):
                raise ValueError("each component needs W,A,B")
            w, a, b = zip(*comps)
            return BetaMixture(list(w), list(a), list(b))
    except ValueError as err:
        raise InputError(f"cannot read prior {spec!r}: {err}", key=key) from None
    raise InputError(f"unknown prior {spec!r}; use uniform, jeffreys, beta:A,B or mix:W,A,B;W,A,B", key=key)


def power_prior(r: int, n: int, ess: float, panel: str = "uniform") -> tuple[BetaMixture, float]:
    """The phase 1/2 posterior down-weighted to effective sample size ``ess`` (power prior), and its weight."""
    a0, b0 = PANEL_PRIORS[panel]
    if not a0 + b0 < ess <= a0 + b0 + n:
        raise InputError(f"must lie in ({a0 + b0:g}, {a0 + b0 + n:g}] (the panel prior's ESS up to the full phase "
                         f"1/2 posterior's), got {ess:g}", key="design.discount_ess")
    weight = (ess - a0 - b0) / n
    return BetaMixture.single(a0 + weight * r, b0 + weight * (n - r)), weight


class PriorSpec(ResultModel):
    """A prior as asked for (``name``) and as built."""

    name: str
    label: str
    mixture: BetaMix
    mean: float
    interval95: tuple[float, float]
    ess_moment: float
    description: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def of(cls, name: str, label: str, mixture: BetaMixture, **description) -> "PriorSpec":
        lo, hi = mixture.eti(0.95)
        return cls(name=name, label=label, mixture=mixture, mean=mixture.mean(), interval95=(float(lo), float(hi)),
                   ess_moment=mixture.ess("moment"), description=description)


# --------------------------------------------------------------------------------------------------------------
# result
# --------------------------------------------------------------------------------------------------------------
class SmallestN(ResultModel):
    """The smallest n meeting a set of targets, and the n from which every larger n in the grid meets them
    (both: because of the sawtooth a design at the first n may fail at n + 1)."""

    first: int | None = None
    stable: int | None = None


class Recommendation(ResultModel):
    """The planner's answer under one design prior: the smallest n meeting every target, and why."""

    design_prior: str
    label: str
    n: SmallestN
    assurance_at_n: float | None = None
    max_assurance: float
    max_assurance_n: int
    assurance_limit: float | None = None  # P(theta_E > p0) under the design prior: assurance as n grows
    reason: str


class Rule(ResultModel):
    """The decision rule as applied."""

    rule: str
    p0: float
    p0_source: str
    gamma: float | None = None
    gamma_calibrated: bool = False
    alpha: float
    p1: float
    p_mcid: float | None = None
    gamma_mcid: float | None = None
    statement: str


class SimulationSummary(ResultModel):
    """Simulation-based assurance at one n, with its Monte Carlo error and what the simulations drew from."""

    n: int
    n_sims: int
    n_success: int
    assurance: float
    mcse: float
    n_diagnostic_failures: int
    settings: dict[str, Any]
    source_fit: FitCheck | None = None


class Assumption(ResultModel):
    what: str
    value: str
    source: str


class DesignResult(AnalysisResult):
    """Result of :func:`run_design`."""

    JSON_FILE: ClassVar[str] = "design.json"
    CSV: ClassVar[dict[str, str]] = {"table": "design_table.csv"}
    ANALYSIS: ClassVar[str] = "design"

    settings: dict[str, Any]
    estimand: dict[str, Any] = Field(default_factory=dict)
    estimand_statement: str = ""
    phase12: dict[str, Any] = Field(default_factory=dict)
    rule: Rule | None = None
    analysis_prior: PriorSpec | None = None
    design_priors: list[PriorSpec] = Field(default_factory=list)
    table: Frame = Field(default_factory=pd.DataFrame)  # one row per n, under the primary design prior
    assurance: Frame | None = None  # index n, one column per design prior
    calibration: Frame | None = None
    recommendations: list[Recommendation] = Field(default_factory=list)
    p0_panel: Frame | None = None
    power_curve: Frame | None = None  # P(success | theta_E): index theta, one column per n
    interim: Frame | None = None
    two_sample: Frame | None = None
    overlap: Frame | None = None
    planned_n: int
    simulation: SimulationSummary | None = None
    assumptions: list[Assumption] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    def fit_checks(self) -> list[FitCheck]:
        checks = []
        if self.simulation is not None and self.simulation.source_fit is not None:
            checks.append(self.simulation.source_fit)
        return checks

    def row(self, n: int) -> pd.Series | None:
        return self.table.loc[n] if n in self.table.index else None

    @property
    def recommendation(self) -> Recommendation | None:
        """The primary design prior's recommendation."""
        return self.recommendations[0] if self.recommendations else None


# --------------------------------------------------------------------------------------------------------------
# the estimand's design priors
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DesignInputs:
    """What the design draws on besides its own block: the data, the shared priors and sampler settings (the MAP
    prior, the benchmark), and the durability model's settings."""

    inputs: AnalysisInputs
    priors: PriorsConfig
    sampler: SamplerConfig
    durability: DurabilityConfig


def _phase12(config: DesignConfig, inputs: AnalysisInputs) -> tuple[int, int, str]:
    """The phase 1/2 count of the estimand's end point, with the glucocorticoid strategy applied."""
    endpoint = config.estimand.endpoint
    r, n = inputs.count(endpoint)
    note = f"{r}/{n} ({endpoint.replace('_', ' ')}, phase 1/2)"
    if config.estimand.glucocorticoid == "hypothetical":
        if inputs.participant is not None:
            raise InputError("the hypothetical glucocorticoid strategy needs to know who was exposed; the "
                             "participant format does not record it", key="design.estimand.glucocorticoid")
        # the exposed participants were the two not insulin independent, and both met the composite: set aside,
        # the first count loses two failures, the second two successes
        k = PHASE12_GLUCOCORTICOID_EXPOSED
        r, n = (r, n - k) if endpoint == "insulin_independence" else (r - k, n - k)
        note = (f"{r}/{n} ({endpoint.replace('_', ' ')}, phase 1/2, the {k} participants with prohibited "
                "glucocorticoid exposure set aside: hypothetical strategy)")
    return r, n, note


def _base_priors(config: DesignConfig, r: int, n: int, map_fit) -> list[tuple[str, str, BetaMixture, dict]]:
    """The panel's beliefs about the phase 1/2 end point's rate (before the estimand's durability)."""
    out = []
    for name in config.design_priors:
        key = name.strip().lower()
        if key == "phase12":
            out.append((name, DESIGN_PRIOR_LABELS["phase12"], BetaMixture.single(1.0 + r, 1.0 + n - r),
                        {"from": f"{r}/{n} under a uniform prior"}))
        elif key == "discounted":
            prior, weight = power_prior(r, n, config.discount_ess)
            out.append((name, f"{DESIGN_PRIOR_LABELS['discounted']} to ESS {config.discount_ess:g}", prior,
                        {"power_prior_weight": weight}))
        elif key == "robust":
            prior = BetaMixture.single(1.0 + r, 1.0 + n - r).robustify(config.design_robust, mean=0.5, n=1.0)
            out.append((name, f"{DESIGN_PRIOR_LABELS['robust']} (weight {config.design_robust:g})", prior,
                        {"robust_weight": config.design_robust}))
        elif key in ("map_updated", "donor_like"):
            if map_fit is None:
                raise InputError(f"the {key} design prior needs donor-islet comparator studies of this end point",
                                 key="design.design_priors")
            robust = map_fit.robust_mixture if map_fit.robust_mixture is not None else map_fit.mixture
            prior = robust.posterior(r, n) if key == "map_updated" else robust
            out.append((name, DESIGN_PRIOR_LABELS[key], prior, {"map_prior": robust.to_dict()}))
        else:
            out.append((name, f"user prior {name}", parse_prior(name, "design.design_priors"), {}))
    return out


def _durability_fits(design: DesignInputs, years1: list[BetaMixture]):
    """The durability model fitted once per year-1 belief."""
    from isletbayes.analyses.durability import durability_model
    from isletbayes.models import durability_multistate as dm

    return [dm.fit_durability(durability_model(design.durability, design.inputs.durability, y1)) for y1 in years1]


def _estimand_endpoint(resolved: dict, config: DesignConfig, she_free):
    from isletbayes.models import durability_multistate as dm

    return dm.PersistenceEndpoint(anchor=resolved["anchor"],
                                  window_days=(resolved["window_start_day"], resolved["window_end_day"]),
                                  persistence_days=resolved["persistence_days"],
                                  she_free=she_free if resolved["she_free"] else None,
                                  death_strategy=config.estimand.death)


def _estimand_prior(share_draws: np.ndarray, seed: int) -> BetaMixture:
    fit = fit_beta_mixture(np.clip(share_draws, 1e-9, 1 - 1e-9), max_components=3, criterion="bic", seed=seed)
    return fit.mixture


def _is_day365(resolved: dict) -> bool:
    """The phase 1/2 end point itself: insulin independent at day 365 (assessed once, no persistence)."""
    return (resolved["anchor"] == "infusion" and resolved["window_start_day"] == resolved["window_end_day"] == 365.0
            and not resolved["persistence_days"])


def estimand_priors(config: DesignConfig, design: DesignInputs, seed: int, map_fit
                    ) -> tuple[list[PriorSpec], dict[str, Any], list[str]]:
    """The design-prior panel on the estimand's scale, the phase 1/2 count used, and notes.

    The day-365 estimands take each panel member as it is, times P(alive at day 365) under the composite death
    strategy (death hazard ~ Gamma posterior of the phase 1/2 deaths), times freedom from severe hypoglycaemia where
    required, times 1 - w for withdrawal under the composite strategy. An onset-anchored (persistence) estimand is
    carried by the durability model. Where anything multiplies the rate, the product is fitted by a beta mixture."""
    resolved = config.estimand.resolved()
    r, n, count_note = _phase12(config, design.inputs)
    bases = _base_priors(config, r, n, map_fit)
    w = config.estimand.withdrawal_probability if config.estimand.withdrawal == "composite" else 0.0
    she = None
    if resolved.get("she_free"):
        she_r, she_n = design.inputs.count("she_free")
        she = BetaMixture.single(1.0 + she_r, 1.0 + she_n - she_r)
    death = None
    if resolved["endpoint"] == "insulin_independence" and config.estimand.death == "composite":
        from isletbayes.models import durability_multistate as dm

        death = dm.DeathRate(deaths=design.durability.deaths,
                             exposure_years=design.durability.death_exposure_years).posterior()
    notes = []
    specs: list[PriorSpec] = []
    children = np.random.SeedSequence(seed, spawn_key=(7,)).spawn(len(bases))
    onset = resolved["endpoint"] == "insulin_independence" and not _is_day365(resolved)
    fits = _durability_fits(design, [base for _, _, base, _ in bases]) if onset else [None] * len(bases)
    for (name, label, base, desc), fit, child in zip(bases, fits, children):
        rng = np.random.default_rng(child)
        if onset:
            share = fit.persistence(_estimand_endpoint(resolved, config, she))
            draws, exact = share.sample(ESTIMAND_DRAWS, rng) * (1.0 - w), False
        else:
            draws, exact = base.rvs(ESTIMAND_DRAWS, rng), True
            if death is not None:
                draws = draws * np.exp(-rng.gamma(death[0], 1.0 / death[1], size=draws.size))
                exact = False
            if she is not None:
                draws, exact = draws * she.rvs(draws.size, rng), False
            if w:
                draws, exact = draws * (1.0 - w), False
        mixture = base if exact else _estimand_prior(draws, int(child.generate_state(1)[0]))
        specs.append(PriorSpec.of(name, label, mixture, rate_prior=base.to_dict(), withdrawal=w, **desc))
    factors = []
    if onset:
        factors.append(f"the durability model (donor-islet attrition at weight {design.durability.transfer_weight:g})")
    elif death is not None:
        factors.append(f"survival to day 365 ({design.durability.deaths} deaths in "
                       f"{design.durability.death_exposure_years:g} participant-years in phase 1/2)")
    if she is not None:
        factors.append(f"freedom from severe hypoglycaemia ({she_r}/{she_n} in phase 1/2)")
    if w:
        factors.append(f"{1 - w:.2f} for withdrawal (composite strategy)")
    if factors:
        notes.append("Each design prior is a belief about the phase 1/2 end point's rate carried to the estimand by "
                     + ", ".join(factors) + f"; the product is fitted by a beta mixture ({ESTIMAND_DRAWS} seeded "
                     "draws).")
    return specs, {"r": r, "n": n, "statement": count_note}, notes


# --------------------------------------------------------------------------------------------------------------
# the benchmark (p0) of the estimand
# --------------------------------------------------------------------------------------------------------------
def estimand_benchmark(config: DesignConfig, design: DesignInputs, seed: int) -> tuple[float, str]:
    """p0 and where it comes from: the user's number, or the donor-islet benchmark of the estimand's end point."""
    from isletbayes.analyses.donor_benchmark import benchmark

    if config.p0 is not None:
        return float(config.p0), f"p0 = {config.p0:g}, chosen by the user (design.p0)"
    resolved = config.estimand.resolved()
    mark = benchmark(resolved["endpoint"], design.inputs, design.priors, design.sampler, seed)
    if mark is None:
        raise InputError(f"no donor-islet comparator study reports {resolved['endpoint']}: give design.p0",
                         key="design.p0")
    if resolved["endpoint"] != "insulin_independence" or _is_day365(resolved):
        return mark.value, f"donor-islet benchmark: {mark.description}"
    # a persistence estimand: the day-365 benchmark carried over the persistence period by donor-islet retention
    from isletbayes.models import durability_multistate as dm

    figures = dm.donor_retention_figures(design.inputs.durability,
                                         include_tiwari=design.durability.include_tiwari,
                                         overdispersion=design.durability.overdispersion)
    model = dm.DurabilityModel(retention_figures=tuple(figures), death=dm.DeathRate(0, 1.0), year1=None,
                               transfer_weight=1.0)
    years = resolved["persistence_days"] / dm.DAYS_PER_YEAR
    retained = float(dm.fit_durability(model).retention(years_since_onset=(years,))["median"].iloc[0])
    value = mark.value * retained
    return value, (f"derived donor-islet benchmark: {mark.description} = {mark.value:.2f}, times the donor-islet "
                   f"retention of insulin independence over {resolved['persistence_days']:g} days since onset "
                   f"({retained:.2f}, posterior median of the durability model on the donor figures at full weight)")


# --------------------------------------------------------------------------------------------------------------
# the design-prior panel and p0, kept between calls
# --------------------------------------------------------------------------------------------------------------
#: The design settings the design-prior panel and p0 are computed from. The other design settings (the n grid,
#: the rule, alpha, gamma, p1, the targets, the analysis prior, interims, the p0 panel, ...) only use the panel, so
#: a design that changes one of them reuses a kept panel.
PANEL_SETTINGS = frozenset({"estimand", "design_priors", "discount_ess", "design_robust", "p0"})


class DesignPriorPanel(AnalysisResult):
    """The design-prior panel on the estimand's scale, the phase 1/2 count it uses, notes, and p0 with its source:
    the part of an exact design that costs an MCMC fit (the MAP prior) and grid posteriors (the durability
    model). Result of :func:`design_prior_panel`."""

    JSON_FILE: ClassVar[str] = "design_prior_panel.json"
    ANALYSIS: ClassVar[str] = "design_prior_panel"

    design_priors: list[PriorSpec]
    phase12: dict[str, Any]
    notes: list[str] = Field(default_factory=list)
    p0: float
    p0_source: str


def key_inputs(design: DesignInputs) -> dict[str, Any]:
    """The data and shared priors a design depends on, as a cache key's ``data`` and ``priors`` (one place for the
    main job's design section and the design-prior panel)."""
    inputs, priors = design.inputs, design.priors
    return {"data": {"counts": inputs.counts, "comparators": inputs.comparators, "durability": inputs.durability,
                     "participant": inputs.participant},
            "priors": {"map": priors.map, "benchmark": priors.benchmark,
                       "benchmark_any_endpoint": priors.benchmark_any_endpoint}}


def design_prior_panel(config: DesignConfig, design: DesignInputs, seed: int,
                       cache: FitCache | None = None) -> DesignPriorPanel:
    """The design-prior panel and p0 of an exact design (:func:`estimand_priors`, :func:`estimand_benchmark`).

    Computed from the :data:`PANEL_SETTINGS` of ``config`` alone (every other design setting at its default), so
    the panel cannot depend on a setting its cache key leaves out. With ``cache`` it is looked up by a key of those
    settings, the data, the shared priors, the sampler and durability settings, the seed, the package versions
    and the code (:func:`isletbayes.analyses.cache.key_material`), and computed and kept only when absent."""
    panel_config = DesignConfig.model_validate(config.model_dump(include=set(PANEL_SETTINGS)))

    def compute() -> DesignPriorPanel:
        from isletbayes.analyses.donor_benchmark import comparator_rows, endpoint_map

        # the MAP prior (an MCMC fit) only where a design prior is built from it
        map_fit = None
        if any(name.strip().lower() in ("map_updated", "donor_like") for name in panel_config.design_priors):
            rows = comparator_rows(design.inputs, panel_config.estimand.endpoint, design.priors)
            map_fit = endpoint_map(rows, design.priors, design.sampler, seed, design.inputs.comparators)
        priors, phase12, notes = estimand_priors(panel_config, design, seed, map_fit)
        p0, p0_source = estimand_benchmark(panel_config, design, seed)
        return DesignPriorPanel(design_priors=priors, phase12=phase12, notes=notes, p0=p0, p0_source=p0_source,
                                provenance=provenance(seed=seed, design=panel_config.model_dump(mode="json"),
                                                      sampler=design.sampler.model_dump(mode="json")))

    if cache is None:
        return compute()
    from isletbayes.analyses.cache import key_material

    material = key_material(DesignPriorPanel.ANALYSIS, module="isletbayes.analyses.design",
                            **key_inputs(design), settings={"design": panel_config, "durability": design.durability,
                                                            "sampler": design.sampler, "seed": seed})
    panel, _ = cache.get_or_compute(DesignPriorPanel.ANALYSIS, material, compute, lambda p, folder: p.save(folder),
                                    lambda folder: DesignPriorPanel.load(folder, draws=False))
    return panel


# --------------------------------------------------------------------------------------------------------------
# exact operating characteristics
# --------------------------------------------------------------------------------------------------------------
def _withdrawal_mix(values_by_m: np.ndarray, n_values: np.ndarray, keep: float) -> np.ndarray:
    """sum_m Bin(m; n, keep) values[m] for each planned n (values_by_m indexed m = 0..n_max)."""
    out = np.empty((len(n_values),) + values_by_m.shape[1:])
    for i, n in enumerate(n_values):
        weights = scipy.stats.binom.pmf(np.arange(n + 1), n, keep)
        out[i] = np.tensordot(weights, values_by_m[: n + 1], axes=(0, 0))
    return out


@dataclass
class _Rule:
    boundary: Callable[[np.ndarray], np.ndarray]  # n values -> boundaries
    gamma: float | None
    calibration: Any = None


def _rule(config: DesignConfig, analysis_prior: BetaMixture, p0: float, n_grid: np.ndarray) -> _Rule:
    if config.rule == "binomial":
        return _Rule(lambda n: oc.binomial_boundaries(n, p0, config.alpha), None)
    calibration = None
    if config.gamma == "calibrated":
        calibration = oc.calibrate_gamma(analysis_prior, n_grid, p0, config.alpha)
        gamma = calibration.gamma
    else:
        gamma = float(config.gamma)
    if config.rule == "bayes":
        return _Rule(lambda n: oc.bayes_boundaries(analysis_prior, n, p0, gamma), gamma, calibration)
    return _Rule(lambda n: oc.dual_criterion_boundaries(analysis_prior, n, p0, gamma, config.p_mcid,
                                                        config.gamma_mcid)[0], gamma, calibration)


def _rule_statement(config: DesignConfig, p0: float, gamma: float | None) -> str:
    if config.rule == "binomial":
        return f"an exact one-sided binomial test of rate <= {p0:.3f} rejects at level {config.alpha:g}"
    text = f"P(rate > {p0:.3f} | data) >= {gamma:.4g}"
    if config.rule == "dual":
        text += f" and P(rate > {config.p_mcid:g} | data) >= {config.gamma_mcid:g}"
    return text


def _oc_table(config: DesignConfig, rule: _Rule, n_values: np.ndarray, p0: float,
              priors: Sequence[PriorSpec], theta_grid: np.ndarray):
    """Boundaries, type I, power at p1, power curve and assurance per design prior, for every planned n (the
    hypothetical withdrawal strategy mixes over the number of evaluable participants)."""
    hypothetical_withdrawal = config.estimand.withdrawal == "hypothetical" and config.estimand.withdrawal_probability
    if hypothetical_withdrawal:
        keep = 1.0 - config.estimand.withdrawal_probability
        m = np.arange(0, int(n_values.max()) + 1)
        c = np.where(m > 0, rule.boundary(np.maximum(m, 1)), 1)  # m = 0: no trial, no success
        type1 = _withdrawal_mix(oc.success_probability(c, m, [p0])[:, 0], n_values, keep)
        power = _withdrawal_mix(oc.success_probability(c, m, theta_grid), n_values, keep)
        power_p1 = _withdrawal_mix(oc.success_probability(c, m, [config.p1])[:, 0], n_values, keep)
        assurance = {p.name: _withdrawal_mix(oc.assurance(c, m, p.mixture), n_values, keep) for p in priors}
        boundary = rule.boundary(n_values)
    else:
        boundary = rule.boundary(n_values)
        type1 = oc.success_probability(boundary, n_values, [p0])[:, 0]
        power = oc.success_probability(boundary, n_values, theta_grid)
        power_p1 = oc.success_probability(boundary, n_values, [config.p1])[:, 0]
        assurance = {p.name: oc.assurance(boundary, n_values, p.mixture) for p in priors}
    return boundary, type1, power_p1, power, assurance


def _recommendations(config: DesignConfig, n_values, type1, power_p1, assurance: dict[str, np.ndarray],
                     priors: Sequence[PriorSpec], p0: float) -> list[Recommendation]:
    meets_type1 = type1 <= config.alpha
    meets_power = power_p1 >= config.power_target
    out = []
    for prior in priors:
        a = assurance[prior.name]
        found = SmallestN(**oc.smallest_n(n_values, meets_type1 & meets_power & (a >= config.assurance_target)))
        best = int(np.argmax(a))
        limit = float(prior.mixture.sf(p0)) if config.rule != "binomial" else None
        if found.first is not None:
            at = float(a[n_values == found.first][0])
            reason = (f"n = {found.first} is the smallest n with type I error <= {config.alpha:g}, power >= "
                      f"{config.power_target:.0%} at rate {config.p1:g} and assurance >= "
                      f"{config.assurance_target:.0%} ({at:.0%}) under this design prior"
                      + (f"; every n from {found.stable} on meets them" if found.stable is not None else
                         "; some larger n in the grid do not (sawtooth)"))
        else:
            at = None
            reason = (f"no n from {n_values[0]} to {n_values[-1]} reaches assurance {config.assurance_target:.0%}"
                      f" with the other targets: the highest assurance is {a[best]:.0%} (n = {n_values[best]})"
                      + (f", and assurance cannot exceed P(rate > p0) = {limit:.0%} under this prior however large "
                         "the trial" if limit is not None and limit < config.assurance_target else ""))
        out.append(Recommendation(design_prior=prior.name, label=prior.label, n=found, assurance_at_n=at,
                                  max_assurance=float(a[best]), max_assurance_n=int(n_values[best]),
                                  assurance_limit=limit, reason=reason))
    return out


def _interim_table(config: DesignConfig, analysis_prior: BetaMixture, n_values, boundaries, p0: float,
                   design_prior: BetaMixture) -> pd.DataFrame:
    """Exact OC of each n with the interim looks (efficacy and/or futility), assurance by quadrature."""
    nodes, weights = oc._quadrature([], n_panels=100, order=16)
    dens = np.asarray(design_prior.pdf(nodes), dtype=float)
    rows = []
    for n, c in zip(n_values, boundaries):
        looks = sorted({int(round(f * n)) for f in config.interim})
        looks = [k for k in looks if 0 < k < n]
        if not looks:
            continue
        seq = oc.sequential_design(analysis_prior, looks, int(n), int(c), np.append(nodes, [config.p1]),
                                   futility_threshold=config.futility,
                                   efficacy=None if config.efficacy == "none" else config.efficacy,
                                   efficacy_threshold=config.efficacy_threshold, p0=p0)
        k = nodes.size
        rows.append({"n": int(n), "looks": ",".join(map(str, looks)),
                     "futility_boundaries": ",".join(map(str, seq.futility)),
                     "efficacy_boundaries": ",".join(map(str, seq.efficacy)),
                     "type1_binding": seq.type1_binding, "type1_nonbinding": seq.type1_nonbinding,
                     "power_p1": float(seq.success[k]), "early_stop_efficacy_p1": float(seq.early_stop_efficacy[k]),
                     "early_stop_futility_p1": float(seq.early_stop_futility[k]),
                     "expected_n_p1": float(seq.expected_n[k]),
                     "assurance": float(np.sum(weights * dens * seq.success[:k]))})
    return pd.DataFrame(rows).set_index("n") if rows else pd.DataFrame()


def _two_sample_table(config: DesignConfig, analysis_prior: BetaMixture, control_prior: BetaMixture,
                      design_prior: BetaMixture, n_values, gamma: float) -> pd.DataFrame:
    """Two-arm trial against a concurrent control with the MAP prior (RBesT's oc2S): type I (the largest over
    control rates), power at (p1, benchmark), assurance (treatment from the design prior, control from the MAP
    prior), every fifth n of the grid."""
    n_t = n_values[:: max(1, len(n_values) // 16)]
    result = oc.two_sample_oc_grid(analysis_prior, control_prior, n_t, ratio=config.control_ratio,
                                   delta=config.delta, gamma=gamma, theta_c=np.linspace(0.05, 0.95, 19),
                                   design_t=design_prior, design_c=control_prior)
    return result.to_frame()


def run_design(config: DesignConfig, *, seed: int, design: DesignInputs, simulation_draws: Sequence | None = None,
               simulation_source: FitCheck | None = None, simulation_dir: str | Path | None = None,
               on_record: Callable[[dict], None] | None = None, panel_cache: FitCache | None = None
               ) -> DesignResult:
    """The phase 3 plan (see the module docstring).

    ``design``: the data and shared settings the design draws on. ``panel_cache``: where the design-prior panel
    and p0 are kept between calls (:func:`design_prior_panel`; None: computed every time). For
    ``config.simulate`` > 0:
    ``simulation_draws`` are draws of the C-peptide model's population parameters (the re-analysis posterior),
    ``simulation_source`` that fit's diagnostics, ``simulation_dir`` the folder where each finished simulation is
    kept (a rerun resumes) and ``on_record`` is called after each one.
    """
    n_values = np.arange(config.n_min, config.n_max + 1, config.n_step)
    resolved = config.estimand.resolved()
    result = DesignResult(settings=config.model_dump(mode="json"), estimand=resolved,
                          estimand_statement=estimand_statement(config), planned_n=config.planned_n)
    if resolved["endpoint"] != "cpeptide":
        _exact_design(result, config, design, seed, n_values, panel_cache)
    if config.simulate:
        result.simulation = _simulate(result, config, seed, n_values, simulation_draws, simulation_source,
                                      simulation_dir, on_record)
    result.provenance = provenance(seed=seed, design=config.model_dump(mode="json"))
    return result


def estimand_statement(config: DesignConfig) -> str:
    e = config.estimand
    r = e.resolved()
    if r["endpoint"] == "cpeptide":
        what = ("the fraction of participants whose day-365 stimulated C-peptide exceeds "
                f"{config.cpeptide_threshold:g} pmol/L")
    elif r["endpoint"] == "composite_primary":
        what = "the phase 1/2 composite (free of severe hypoglycaemia with HbA1c < 7% or a 1-point fall) at day 365"
    elif r["anchor"] == "onset":
        what = (f"insulin independent {r['persistence_days']:g} days after first becoming insulin independent "
                f"(onset between days {r['window_start_day']:g} and {r['window_end_day']:g})"
                + (", and free of severe hypoglycaemia" if r["she_free"] else ""))
    else:
        start, end = r["window_start_day"], r["window_end_day"]
        when = f"at day {end:g}" if start == end else f"from day {start:g} to day {end:g}"
        what = f"insulin independent {when}" + (", and free of severe hypoglycaemia" if r["she_free"] else "")
    return (f"Estimand ({e.preset}): the share of participants {what}. Intercurrent events: death {e.death}, "
            f"withdrawal {e.withdrawal} (probability {e.withdrawal_probability:g}, a convention), prohibited "
            f"glucocorticoid exposure {e.glucocorticoid}.")


def _exact_design(result: DesignResult, config: DesignConfig, design: DesignInputs, seed: int,
                  n_values: np.ndarray, panel_cache: FitCache | None) -> None:
    panel = design_prior_panel(config, design, seed, cache=panel_cache)
    priors, phase12 = panel.design_priors, panel.phase12
    result.design_priors, result.phase12 = priors, phase12
    result.notes.extend(panel.notes)
    p0, p0_source = panel.p0, panel.p0_source
    if config.p1 is None:  # the convention: 20 points above the benchmark
        config = config.model_copy(update={"p1": min(p0 + 0.20, 0.99)})
    analysis = parse_prior(config.analysis_prior, "design.analysis_prior")
    result.analysis_prior = PriorSpec.of(config.analysis_prior, f"analysis prior {config.analysis_prior}", analysis)
    rule = _rule(config, analysis, p0, np.arange(1, int(n_values.max()) + 1)
                 if config.estimand.withdrawal == "hypothetical" else n_values)
    result.rule = Rule(rule=config.rule, p0=p0, p0_source=p0_source, gamma=rule.gamma,
                       gamma_calibrated=config.gamma == "calibrated", alpha=config.alpha, p1=config.p1,
                       p_mcid=config.p_mcid, gamma_mcid=config.gamma_mcid if config.rule == "dual" else None,
                       statement=_rule_statement(config, p0, rule.gamma))
    if rule.calibration is not None:
        result.calibration = rule.calibration.to_frame()
    theta = np.round(np.linspace(0, 1, 101), 2)
    boundary, type1, power_p1, power, assurance = _oc_table(config, rule, n_values, p0, priors, theta)
    primary = priors[0]
    a = assurance[primary.name]
    mcid = config.p_mcid if config.p_mcid is not None else config.p1
    conditional = oc.conditional_assurance(boundary, n_values, primary.mixture, mcid)
    result.table = pd.DataFrame({
        "boundary": boundary.astype(int), "type1": type1, "power_p1": power_p1, "assurance": a,
        "conditional_assurance": conditional, "meets_type1": type1 <= config.alpha,
        "meets_power": power_p1 >= config.power_target, "meets_assurance": a >= config.assurance_target},
        index=pd.Index(n_values.tolist(), name="n"))
    result.assurance = pd.DataFrame(assurance, index=pd.Index(n_values.tolist(), name="n"))
    result.power_curve = pd.DataFrame(power.T, index=pd.Index(theta.tolist(), name="theta"),
                                      columns=[str(n) for n in n_values])
    result.recommendations = _recommendations(config, n_values, type1, power_p1, assurance, priors, p0)
    result.p0_panel = _p0_panel(config, analysis, n_values, p0, primary, theta)
    if config.interim:
        result.interim = _interim_table(config, analysis, n_values, boundary, p0, primary.mixture)
    if config.overlap_phase12:
        keep = n_values[n_values >= phase12["n"]]
        over = oc.overlapping_cohort_success(keep, boundary[n_values >= phase12["n"]], phase12["r"], phase12["n"],
                                             BetaMixture.single(1.0, 1.0), p0=p0)
        result.overlap = over.to_frame()
    if config.two_sample:
        from isletbayes.analyses.donor_benchmark import comparator_rows, endpoint_map

        rows = comparator_rows(design.inputs, config.estimand.endpoint, design.priors)
        map_fit = endpoint_map(rows, design.priors, design.sampler, seed, design.inputs.comparators)
        control = map_fit.robust_mixture if map_fit is not None and map_fit.robust_mixture is not None else None
        if control is None:
            raise InputError("the two-arm design needs donor-islet comparator studies of the end point for the "
                             "control arm's MAP prior", key="design.two_sample")
        gamma = rule.gamma if rule.gamma is not None else 1.0 - config.alpha
        result.two_sample = _two_sample_table(config, analysis, control, primary.mixture, n_values, gamma)
    result.assumptions = _assumptions(config, result, design)


def _p0_panel(config: DesignConfig, analysis: BetaMixture, n_values, p0: float, primary: PriorSpec,
              theta) -> pd.DataFrame:
    """For each null rate of the panel (the benchmark first): the calibrated rule and the smallest n meeting the
    targets under the primary design prior."""
    rows = []
    for value in dict.fromkeys([p0, *config.p0_panel]):
        cfg = config.model_copy(update={"p0": value})
        rule = _rule(cfg, analysis, value, n_values)
        boundary, type1, power_p1, _, assurance = _oc_table(cfg, rule, n_values, value, [primary], theta)
        a = assurance[primary.name]
        found = oc.smallest_n(n_values, (type1 <= config.alpha) & (power_p1 >= config.power_target)
                              & (a >= config.assurance_target))
        at = None if found["first"] is None else int(np.flatnonzero(n_values == found["first"])[0])
        rows.append({"p0": value, "benchmark": value == p0, "gamma": rule.gamma, "first_n": found["first"],
                     "stable_n": found["stable"],
                     "type1_at_n": None if at is None else float(type1[at]),
                     "power_at_n": None if at is None else float(power_p1[at]),
                     "assurance_at_n": None if at is None else float(a[at])})
    return pd.DataFrame(rows).set_index("p0")


def _assumptions(config: DesignConfig, result: DesignResult, design: DesignInputs) -> list[Assumption]:
    out = [Assumption(what="estimand", value=result.estimand_statement,
                      source="configuration (design.estimand); the phase 3 end point as described by a secondary "
                             "source (reference_values.csv)"),
           Assumption(what="null rate p0", value=f"{result.rule.p0:.3f}", source=result.rule.p0_source),
           Assumption(what="rate at which power is shown p1", value=f"{result.rule.p1:.3f}",
                      source="configuration (design.p1; null = p0 + 0.20): a planning convention, no published "
                             "source"),
           Assumption(what="phase 1/2 count", value=result.phase12.get("statement", ""),
                      source="data/published/zimislecel_counts.csv"),
           Assumption(what="analysis prior", value=config.analysis_prior,
                      source="configuration (design.analysis_prior)"),
           Assumption(what="phase 3 size as announced", value=f"about {config.planned_n}",
                      source="reference_values.csv (Managed Healthcare Executive, secondary)")]
    for prior in result.design_priors:
        out.append(Assumption(what=f"design prior: {prior.label}",
                              value=f"mean {prior.mean:.2f} (95% {prior.interval95[0]:.2f}-{prior.interval95[1]:.2f})",
                              source="configuration (design.design_priors)"))
    if config.estimand.endpoint == "insulin_independence":
        from isletbayes.analyses.durability import conventions

        for line in conventions(design.durability):
            out.append(Assumption(what="durability model", value=line, source="configuration (durability)"))
    return out


def _simulate(result: DesignResult, config: DesignConfig, seed: int, n_values, draws, source, folder,
              on_record) -> SimulationSummary:
    from isletbayes.analyses import simulation as sim

    if folder is None:
        raise InputError("simulations are written as they finish and need an output folder", key="design.simulate")
    if not draws:
        raise InputError("simulations need draws of the C-peptide re-analysis posterior", key="design.simulate")
    n = config.simulate_n
    if n is None:
        first = result.recommendation.n.first if result.recommendation else None
        n = first or int(n_values[-1])
    simulator = sim.TrialSimulator(int(n))
    gamma = config.cpeptide_gamma if config.gamma == "calibrated" else float(config.gamma)
    if config.estimand.endpoint == "cpeptide":
        try:
            analysis = sim.CpeptideDay365Analysis(threshold_pmol_l=config.cpeptide_threshold,
                                                  min_fraction_above=config.cpeptide_fraction, gamma=gamma,
                                                  method=config.simulate_analysis)
        except ModelInputError as err:
            key = {"threshold_pmol_l": "design.cpeptide_threshold", "min_fraction_above": "design.cpeptide_fraction",
                   "gamma": "design.gamma"}.get(err.parameter, "design")
            raise InputError(err.message, key=key) from None
    else:
        prior = parse_prior(config.analysis_prior, "design.analysis_prior")
        analysis = sim.InsulinIndependenceAnalysis(rule="bayes" if config.rule == "dual" else config.rule,
                                                   p0=result.rule.p0, gamma=result.rule.gamma or gamma,
                                                   alpha=config.alpha, analysis_prior=prior.to_dict())
    summary = sim.run_simulations(simulator, analysis, draws, n_sims=config.simulate, seed=seed,
                                  outdir=Path(folder), workers=config.workers, scheduler=config.scheduler,
                                  on_record=on_record)
    return SimulationSummary(n=int(n), n_sims=summary.n_sims, n_success=summary.n_success,
                             assurance=summary.assurance, mcse=summary.mcse,
                             n_diagnostic_failures=summary.n_diagnostic_failures, settings=summary.settings,
                             source_fit=source)
