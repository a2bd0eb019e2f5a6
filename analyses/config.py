"""The configuration models: the one place where every default, bound and choice of isletbayes is written.

Each block is a pydantic model whose fields carry their default, their bounds and a description. Every door
reads them from here:

* the main job's YAML (``isletbayes run --config FILE``): a user's file holds only the keys it changes; it is
  merged over the defaults (mappings key by key, lists and scalars replace) and validated as a whole;
  ``analyses/default_config.yaml`` is *rendered* from these models (:func:`render_default_config`; a test keeps
  the shipped file equal to the rendering), it is documentation, not a second copy of the defaults;
* the command line: each analysis command's options are built from the same fields
  (:mod:`isletbayes.analyses.cli.options`): an option's default, bounds and help are the field's, and its name is
  the field's name (``n_min`` -> ``--n-min``) unless the field names another (``option=``);
* the Python API: ``run_binary(BinaryConfig(...), ...)`` and friends take these blocks.

Any mistake (an unknown key, a value of the wrong type or out of range, an inconsistent pair such as
``design.n_max < design.n_min``) raises :class:`~isletbayes.data.errors.InputError` naming the file and the dotted
key; the command line names the option instead when the value came from an option.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from isletbayes.data.errors import InputError

DEFAULT_CONFIG_NAME = "default_config.yaml"
SEED_MAX = 2**32  # numpy's SeedSequence and every sampler accept seeds in [0, 2**32)

PanelMember = Literal["uniform", "jeffreys", "sceptical", "enthusiastic", "map", "robust_map"]
BinaryEndpoint = Literal["insulin_independence", "composite_primary", "she_free", "hba1c_below_7"]
TauPrior = Literal["halfnormal", "halfcauchy", "halft", "lognormal", "exponential"]
#: Classes of comparator end-point definitions that differ from zimislecel's (isletbayes.analyses.donor_benchmark)
DEFINITION_CLASSES = ("counted_from_last_infusion", "stricter_composite")
NutsSampler = Literal["nutpie", "pymc"]
MassMatrix = Literal["diag", "low_rank"]  # isletbayes.models.sampling.MASS_MATRICES


def setting(default: Any = ..., description: str = "", *, option: str | None = None, **constraints: Any) -> Any:
    """A configuration field: its default, its description (the YAML comment and the option's help), its bounds
    (pydantic's ge/gt/le/lt/...) and, where the command-line name is not the field's own, the option name."""
    extra = {"option": option} if option else None
    if callable(default) and not isinstance(default, type):
        return Field(default_factory=default, description=description, json_schema_extra=extra, **constraints)
    return Field(default, description=description, json_schema_extra=extra, **constraints)


class Block(BaseModel):
    """Base of every configuration block: unknown keys are errors; blocks are immutable once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class SectionsConfig(Block):
    """Which parts of the re-analysis the main job runs (a section switched off is named as such in the report)."""

    binary: bool = setting(True, "binary end points under the prior panel, with the MAP prior from comparators")
    safety: bool = setting(True, "adverse-event rates (exact posteriors)")
    cpeptide: bool = setting(True, "C-peptide trajectory model and its link to insulin independence (MCMC)")
    design: bool = setting(True, "phase 3 planning: exact operating characteristics and assurance over n")
    durability: bool = setting(True, "years 2-5 insulin independence under donor-islet attrition scenarios")


class DataConfig(Block):
    """Input files; null means the bundled published data (data/published/). Relative paths in a configuration
    file are relative to that file."""

    counts: Path | None = setting(None, "binary end points and adverse events as r of n (counts CSV)",
                                  option="--counts")
    cpeptide_means: Path | None = setting(None, "cohort-mean C-peptide by visit (C-peptide means CSV)")
    comparators: Path | None = setting(None, "comparator studies for the MAP prior (comparators CSV)",
                                       option="--comparators-file")
    participant_data: Path | None = setting(
        None, "participant-level long-format CSV: the C-peptide model is fitted to it, and the design and "
              "durability take their day-365 insulin-independence count from it", option="--data")
    include_unverified: bool = setting(False, "also use rows rated 'unverified' in the evidence table "
                                              "(not recommended)")
    allow_outliers: bool = setting(False, "keep values outside their plausibility bounds (data/units.py) instead of "
                                          "refusing them: for a deliberate outlier; each is listed in a warning")


class DefinitionShiftConfig(Block):
    """Elicited prior of a definition class's shift: logit(rate under the class's definition) - logit(rate under
    zimislecel's) ~ Normal(mean, sd^2)."""

    mean: float = setting(0.0, "prior mean of the shift on the logit scale", allow_inf_nan=False)
    sd: float = setting(0.5, "prior sd of the shift", gt=0.0, allow_inf_nan=False)


class MapPriorConfig(Block):
    """Meta-analytic-predictive prior from the comparator studies: logit(rate_h) ~ Normal(mu, tau^2)."""

    studies: Literal["default"] | list[str] = setting(
        "default", "'default' = the comparator rows marked in_default_map, or a list of study names",
        option="--comparators")
    tau_prior: TauPrior = setting("halfnormal", "prior family of the between-study sd tau")
    tau_scale: float = setting(1.0, "scale of the tau prior (HalfNormal(1) allows substantial heterogeneity)",
                               gt=0.0, allow_inf_nan=False)
    mu_prior_sd: float = setting(2.0, "mu ~ Normal(0, mu_prior_sd) on the logit scale", gt=0.0,
                                 allow_inf_nan=False)
    robust_weight: float = setting(0.2, "weight of the Beta(1, 1) component of the robust MAP prior", ge=0.0,
                                   le=1.0)
    draws: int = setting(4000, "draws per chain of the MAP fits (as RBesT's gMAP: 4000 iterations after warm-up; a "
                               "heavy-tailed tau prior mixes slowly, and with 1000 R-hat failed 1.01 at some seeds)",
                         option="--map-draws", ge=100, le=1_000_000)
    thin: int = setting(4, "the beta mixture is fitted to every thin-th draw (RBesT keeps 1 in 4)", option="--map-thin",
                        ge=1, le=1000)
    target_accept: float = setting(0.99, "NUTS target acceptance for the MAP fits (RBesT's gMAP uses adapt_delta "
                                         "0.99: with two or three studies the heavy-tailed tau priors leave a funnel)",
                                   option="--map-target-accept", gt=0.5, lt=1.0)
    group_studies: list[str] | None = setting(None, "differential discounting: these studies get their own, larger "
                                                    "between-study sd (null = none)")
    group_tau_scale: float | None = setting(None, "scale of the group's tau prior (null = twice tau_scale)", gt=0.0,
                                            allow_inf_nan=False)
    exnex: bool = setting(False, "EXNEX: each comparator study exchangeable with probability exnex_probability, "
                                 "else non-exchangeable with its own weakly-informative prior")
    exnex_probability: float = setting(0.5, "prior probability that a comparator study is exchangeable", gt=0.0,
                                       le=1.0)
    definition_shifts: dict[str, DefinitionShiftConfig] = setting(
        lambda: {}, "elicited shift per definition class (counted_from_last_infusion, stricter_composite), e.g. "
              "{stricter_composite: {mean: -0.5, sd: 0.5}}; empty = none (the report states each study's difference "
              "and its direction either way)", option="--definition-shift")

    @field_validator("definition_shifts")
    @classmethod
    def _known_classes(cls, v):
        unknown = sorted(set(v) - set(DEFINITION_CLASSES))
        if unknown:
            raise ValueError(f"unknown definition class(es) {unknown}; known: {', '.join(DEFINITION_CLASSES)}")
        return v

    @field_validator("studies")
    @classmethod
    def _nonempty(cls, v):
        if isinstance(v, list):
            if not v:
                raise ValueError("name at least one comparator study, or write 'default'")
            if len(set(v)) != len(v):
                raise ValueError("names a study twice")
        return v


class PriorsConfig(Block):
    """The prior panel under which the binary end points are analysed side by side."""

    @field_validator("tau_panel", check_fields=False)
    @classmethod
    def _tau_panel(cls, v):
        for entry in v:
            family, _, scale = str(entry).partition(":")
            if family not in get_args(TauPrior):
                raise ValueError(f"{entry!r}: the family must be one of {', '.join(get_args(TauPrior))}")
            try:
                ok = float(scale) > 0 and math.isfinite(float(scale))
            except ValueError:
                ok = False
            if not ok:
                raise ValueError(f"{entry!r}: write family:scale with a scale > 0, e.g. halfnormal:0.5")
        return v

    panel: list[PanelMember] = setting(
        lambda: ["uniform", "jeffreys", "sceptical", "enthusiastic", "map", "robust_map"],
        "members of the prior panel, in the order shown", option="--prior")
    map: MapPriorConfig = setting(MapPriorConfig(), "the MAP prior")
    tau_panel: list[str] = setting(
        lambda: ["halfnormal:0.25", "halfnormal:0.5", "halfnormal:1", "halfcauchy:1"],
        "tau priors (family:scale) under which the MAP prior and its decision are shown side by side: with two or "
        "three comparator studies the tau prior is the amount of borrowing")
    benchmark: str = setting("pooled", "the donor-islet benchmark rate of an end point, one rule for every analysis: "
                                       "pooled (sum r / sum n of the MAP studies), map_median (median of the MAP "
                                       "prior) or study:NAME (one named study of the same end point)")
    benchmark_any_endpoint: bool = setting(False, "allow a study:NAME benchmark whose end point differs from the "
                                                  "end point it is applied to (refused otherwise)")

    @field_validator("panel")
    @classmethod
    def _panel_ok(cls, v):
        if not v:
            raise ValueError("must name at least one prior")
        if len(set(v)) != len(v):
            raise ValueError("lists a prior twice")
        return v


Threshold = float | Literal["comparator"]


class BinaryConfig(Block):
    """Binary end points (r of n) and how their posteriors are summarised."""

    endpoints: list[BinaryEndpoint] = setting(
        lambda: ["insulin_independence", "composite_primary", "she_free", "hba1c_below_7"],
        "end points analysed, ids as in the counts file", option="--endpoint")
    thresholds: list[Threshold] = setting(
        lambda: [0.5, "comparator"],
        "report P(rate > t) for each t in (0, 1); 'comparator' = the pooled comparator rate", option="--threshold")
    predictive_m: int = setting(50, "predictive distribution of responders among the next m participants",
                                option="--predict-m", ge=1, le=10000)
    delta: float = setting(0.10, "clinically relevant difference: P(rate - donor-islet rate > delta) is reported "
                                 "beside P(... > 0) (a convention)", ge=0.0, lt=1.0)
    conclusion_probability: float = setting(0.95, "posterior probability at which a comparison is called "
                                                  "conclusive (tau-prior block, tipping point; a convention)",
                                            gt=0.5, lt=1.0)

    @field_validator("endpoints")
    @classmethod
    def _endpoints_ok(cls, v):
        if not v:
            raise ValueError("must name at least one end point")
        if len(set(v)) != len(v):
            raise ValueError("lists an end point twice")
        return v

    @field_validator("thresholds", mode="before")
    @classmethod
    def _threshold_words(cls, v):
        if not isinstance(v, list):
            return v
        out = []
        for t in v:
            if isinstance(t, str) and t.strip().lower() != "comparator":
                try:
                    t = float(t)
                except ValueError:
                    raise ValueError(f"a threshold is a number in (0, 1) or 'comparator', got {t!r}") from None
            out.append(t.strip().lower() if isinstance(t, str) else t)
        return out

    @field_validator("thresholds")
    @classmethod
    def _thresholds_ok(cls, v):
        for t in v:
            if not isinstance(t, str) and not (math.isfinite(t) and 0 < t < 1):
                raise ValueError(f"a threshold must lie strictly between 0 and 1, got {t:g}")
        if len(set(v)) != len(v):
            raise ValueError("lists a threshold twice")
        return v


class TrajectoryPriorsConfig(Block):
    """Priors of the C-peptide trajectory model on interpretable scales (isletbayes.models.cpeptide_trajectory)."""

    plateau_median_pmol_l: float = setting(1000.0, "population plateau A ~ LogNormal(log median, log_sd), pmol/L",
                                           option="--plateau-median", gt=0.0, allow_inf_nan=False)
    plateau_log_sd: float = setting(1.0, "log-sd of the plateau prior", gt=0.0, allow_inf_nan=False)
    t_half_median_days: float = setting(60.0, "time to half plateau ~ LogNormal(log median, log_sd), days",
                                        option="--t-half-median", gt=0.0, allow_inf_nan=False)
    t_half_log_sd: float = setting(1.0, "log-sd of the time-to-half-plateau prior", gt=0.0, allow_inf_nan=False)
    spread_plateau_scale: float = setting(0.5, "between-participant sd of log plateau ~ HalfNormal(scale)",
                                          gt=0.0, allow_inf_nan=False)
    spread_rate_scale: float = setting(0.5, "between-participant sd of log rate ~ HalfNormal(scale)", gt=0.0,
                                       allow_inf_nan=False)
    measurement_sd_median: float = setting(0.18, "assay and visit-to-visit sd of log C-peptide within a participant "
                                                 "~ LogNormal(log median, log_sd): MMTT repeatability, within-person "
                                                 "CV about 18% (mmtt_repeatability2021)",
                                           option="--measurement-sd", gt=0.0, allow_inf_nan=False)
    measurement_sd_log_sd: float = setting(0.3, "log-sd of the measurement sd prior", gt=0.0, allow_inf_nan=False)
    curve_misfit_scale: float = setting(0.1, "cohort-by-visit deviation of the published means from the curve, sd "
                                             "~ Gamma(2, 2 / scale) (published means only; not passed on to new "
                                             "participants; a convention)", gt=0.0, allow_inf_nan=False)
    decline_rate_scale_per_year: float = setting(0.2, "late decline rate ~ HalfNormal(scale) per year "
                                                      "(late_decline only)", gt=0.0, allow_inf_nan=False)
    decline_start_day: float = setting(365.0, "day the late decline starts", gt=0.0, le=36525.0)
    rise_shape_log_sd: float = setting(0.5, "rise shape h ~ LogNormal(0, log_sd) (rise_shape only)", gt=0.0,
                                       allow_inf_nan=False)


class LinkPriorsConfig(Block):
    """Normal priors of the graft-function link logit P(II) = alpha + beta (log C(365) - log 1000)."""

    alpha_mean: float = setting(0.0, "alpha ~ Normal(mean, sd): log-odds of II at 1000 pmol/L",
                                allow_inf_nan=False)
    alpha_sd: float = setting(1.5, "sd of the alpha prior", gt=0.0, allow_inf_nan=False)
    beta_mean: float = setting(1.0, "beta ~ Normal(mean, sd): change in log-odds per e-fold of C-peptide",
                               allow_inf_nan=False)
    beta_sd: float = setting(1.0, "sd of the beta prior", gt=0.0, allow_inf_nan=False)


class GraftPriorsConfig(Block):
    """Priors of the joint graft-function model's own parameters (isletbayes.models.graft_function; conventions,
    stated on natural scales)."""

    need_median_pmol_l: float = setting(500.0, "insulin need threshold N ~ LogNormal(log median, log_sd), pmol/L of "
                                               "day-365 C-peptide", gt=0.0, allow_inf_nan=False)
    need_log_sd: float = setting(1.0, "log-sd of the need prior", gt=0.0, allow_inf_nan=False)
    need_spread_scale: float = setting(0.5, "between-participant sd of log need ~ HalfNormal(scale)", gt=0.0,
                                       allow_inf_nan=False)
    tir_logit_mean: float = setting(1.5, "logit time in range at 1000 pmol/L ~ Normal(mean, sd)", allow_inf_nan=False)
    tir_logit_sd: float = setting(1.0, "sd of that prior", gt=0.0, allow_inf_nan=False)
    tir_slope_mean: float = setting(0.5, "logit time in range per e-fold of C-peptide ~ Normal(mean, sd)",
                                    allow_inf_nan=False)
    tir_slope_sd: float = setting(0.5, "sd of that prior", gt=0.0, allow_inf_nan=False)
    tir_residual_mean: float = setting(0.5, "residual sd of logit time in range ~ Gamma(2, 2 / mean)", gt=0.0,
                                       allow_inf_nan=False)
    hba1c_baseline_median: float = setting(8.0, "baseline HbA1c ~ LogNormal(log median, log_sd), %", gt=0.0,
                                           allow_inf_nan=False)
    hba1c_baseline_log_sd: float = setting(0.15, "log-sd of that prior", gt=0.0, allow_inf_nan=False)
    hba1c_baseline_spread_scale: float = setting(0.2, "between-participant sd of log baseline HbA1c ~ "
                                                      "HalfNormal(scale)", gt=0.0, allow_inf_nan=False)
    hba1c_change_mean: float = setting(-0.1, "log change of HbA1c by day 120 at 1000 pmol/L ~ Normal(mean, sd)",
                                       allow_inf_nan=False)
    hba1c_change_sd: float = setting(0.2, "sd of that prior", gt=0.0, allow_inf_nan=False)
    hba1c_slope_mean: float = setting(-0.05, "log HbA1c per e-fold of day-120 C-peptide ~ Normal(mean, sd)",
                                      allow_inf_nan=False)
    hba1c_slope_sd: float = setting(0.05, "sd of that prior", gt=0.0, allow_inf_nan=False)
    hba1c_residual_mean: float = setting(0.05, "residual sd of log HbA1c ~ Gamma(2, 2 / mean)", gt=0.0,
                                         allow_inf_nan=False)
    insulin_dose_median: float = setting(40.0, "baseline insulin dose ~ LogNormal(log median, log_sd), U/day", gt=0.0,
                                         allow_inf_nan=False)
    insulin_dose_log_sd: float = setting(0.5, "log-sd of that prior", gt=0.0, allow_inf_nan=False)


class CpeptideConfig(Block):
    """The C-peptide trajectory and graft-function analysis."""

    model: Literal["graft_function", "cohort_means"] = setting(
        "graft_function", "on published aggregates: graft_function (one latent graft function informed by every "
                          "published aggregate) or cohort_means (the four means and 10/12 only); participant data "
                          "always get the participant-level model", option="--aggregate-model")
    glucocorticoid: Literal["hypothetical", "treatment_policy"] = setting(
        "hypothetical", "the two participants with prohibited glucocorticoid exposure: hypothetical (their insulin "
                        "outcome as if unexposed: left out, their dose cut a lower bound) or treatment_policy "
                        "(counted as observed)", option="--glucocorticoid")
    link: bool = setting(True, "fit the graft-function link to the insulin-independence count jointly")
    sensitivity: bool = setting(True, "also refit under the other glucocorticoid strategy, alternative spread (and "
                                      "link) priors and the other rise shape, and fit the means-only model beside "
                                      "the joint one (shown side by side; part of the answer)")
    psense: bool = setting(True, "ArviZ power-scaling prior/likelihood sensitivity")
    holdout_check: bool = setting(True, "leave-one-visit-out check: predict the last published visit's mean from the "
                                        "posterior without it (the main fit reweighted by Pareto-smoothed importance "
                                        "sampling; an exact refit where its Pareto k-hat says the weights are "
                                        "unreliable; published aggregates only)")
    late_decline: bool = setting(False, "model a decline after day 365 (prior-only extrapolation with one year "
                                        "of data)")
    rise_shape: bool = setting(True, "free (Weibull-type) rise shape C = A(1 - exp(-(k t)^h)); false = the "
                                     "saturating exponential (h = 1)", option="--rise-shape/--exponential-rise")
    target_accept: float | None = setting(
        0.99, "NUTS target acceptance for this model (null = sampler.target_accept): the cohort-means likelihood "
              "keeps a mild funnel when all noise sds are small", option="--cpeptide-target-accept", gt=0.5,
        lt=1.0)
    graft_function_draws: int | None = setting(
        2000, "draws per chain of every fit of the joint graft-function model (null = sampler.draws): its slowest "
              "parameter, the plateau spread, has about 800 effective draws in 4 x 1000, and with 1000 draws 8 of 100 "
              "calibration fits failed R-hat <= 1.01 by chance", ge=10, le=1_000_000)
    means_draws: int | None = setting(
        2000, "draws per chain of every fit of the means-only model (null = sampler.draws): its plateau and "
              "half-time trade off along a ridge, with 640 to 1,220 effective draws in 4 x 1000, and with 1000 draws "
              "5 of the default job's 40 means-only fits at 20 seeds failed R-hat <= 1.01 by chance "
              "(analyses/results/seed_robustness_rejected_settings.json)", ge=10,
        le=1_000_000)
    cohort: str | None = setting(None, "fit one cohort of the participant data (null = all cohorts pooled)")
    priors: TrajectoryPriorsConfig = setting(TrajectoryPriorsConfig(), "trajectory priors")
    link_priors: LinkPriorsConfig = setting(LinkPriorsConfig(), "graft-function link priors (logit link of the "
                                                                "cohort-means and participant models)")
    graft_priors: GraftPriorsConfig = setting(GraftPriorsConfig(), "joint graft-function model priors")


EstimandPreset = Literal["phase3_persistence", "insulin_independence_day365", "composite_day365", "cpeptide_day365"]
Strategy = Literal["composite", "hypothetical"]

#: What each estimand preset sets (keys of EstimandConfig). The phase 3 primary end point as described by a
#: secondary source (reference_values.csv, Managed Healthcare Executive 2025): insulin independent, and free of
#: severe hypoglycaemia, one year after first becoming insulin independent.
ESTIMAND_PRESETS: dict[str, dict[str, Any]] = {
    "phase3_persistence": {"endpoint": "insulin_independence", "anchor": "onset", "window_start_day": 0.0,
                           "window_end_day": 365.0, "persistence_days": 365.0, "she_free": True},
    "insulin_independence_day365": {"endpoint": "insulin_independence", "anchor": "infusion",
                                    "window_start_day": 365.0, "window_end_day": 365.0, "persistence_days": 0.0,
                                    "she_free": False},
    "composite_day365": {"endpoint": "composite_primary"},
    "cpeptide_day365": {"endpoint": "cpeptide"},
}


class EstimandConfig(Block):
    """The phase 3 estimand (ICH E9(R1)): the end point, when it is assessed, and a strategy for each intercurrent
    event. A preset sets the end point and its timing; the timing keys (null = the preset's) adjust an
    insulin-independence preset."""

    preset: EstimandPreset = setting("phase3_persistence", "the estimand: phase3_persistence (insulin independent "
                                     "and free of severe hypoglycaemia one year after first becoming so, as the "
                                     "phase 3 is described), insulin_independence_day365, composite_day365 (the "
                                     "phase 1/2 primary end point) or cpeptide_day365 (simulated)", option="--estimand")
    anchor: Literal["onset", "infusion"] | None = setting(None, "what the assessment counts from: onset of insulin "
                                                                "independence or the infusion (null = the preset's)")
    window_start_day: float | None = setting(None, "first day (after infusion) on which onset counts, or on which "
                                                   "insulin independence is assessed (null = the preset's)",
                                             ge=0.0, le=3650.0)
    window_end_day: float | None = setting(None, "last such day (null = the preset's)", ge=0.0, le=3650.0)
    persistence_days: float | None = setting(None, "how long after onset insulin independence must last (0 = "
                                                   "none; null = the preset's)", ge=0.0, le=3650.0)
    she_free: bool | None = setting(None, "require freedom from severe hypoglycaemia (null = the preset's)",
                                    option="--she-free/--no-she-free")
    death: Strategy = setting("composite", "death before the assessment: composite (counts as failure) or "
                                           "hypothetical (as if no one died)", option="--death-strategy")
    withdrawal: Strategy = setting("composite", "withdrawal before the assessment: composite (counts as failure) "
                                                "or hypothetical (withdrawn participants leave the denominator)",
                                   option="--withdrawal-strategy")
    withdrawal_probability: float = setting(0.05, "probability that a participant withdraws before the assessment "
                                                  "(a planning convention)", ge=0.0, lt=1.0)
    glucocorticoid: Strategy = setting("composite", "prohibited high-dose glucocorticoid exposure: composite (the "
                                                    "participant's outcome counts as observed, failure included) or "
                                                    "hypothetical (as if unexposed: phase 1/2's two exposed "
                                                    "participants leave the count)",
                                       option="--glucocorticoid-strategy")

    @model_validator(mode="after")
    def _timing_applies(self):
        preset = ESTIMAND_PRESETS[self.preset]
        if preset["endpoint"] != "insulin_independence":
            given = [k for k in ("anchor", "window_start_day", "window_end_day", "persistence_days", "she_free")
                     if getattr(self, k) is not None]
            if given:
                raise ValueError(f"{', '.join(given)} adjust an insulin-independence estimand, not {self.preset}")
        return self

    def resolved(self) -> dict[str, Any]:
        """The preset with this block's adjustments: every timing key filled in."""
        out = dict(ESTIMAND_PRESETS[self.preset])
        for key in ("anchor", "window_start_day", "window_end_day", "persistence_days", "she_free"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if out.get("endpoint") == "insulin_independence":
            if out["window_end_day"] < out["window_start_day"]:
                raise ValueError("window_end_day must be >= window_start_day")
            if out["anchor"] == "infusion" and out["persistence_days"]:
                raise ValueError("with anchor 'infusion' the window is the persistence requirement: set "
                                 "persistence_days to 0")
        return out

    @property
    def endpoint(self) -> str:
        return ESTIMAND_PRESETS[self.preset]["endpoint"]


DesignPriorName = str
#: Design priors by name (analyses/design.py builds them); any other entry is a prior spec (prior_spec_problem).
DESIGN_PRIOR_NAMES = ("phase12", "discounted", "robust", "map_updated", "donor_like")
#: Prior specs by name: uniform Beta(1, 1) and Jeffreys Beta(1/2, 1/2) (analyses/design.py PANEL_PRIORS).
PRIOR_SPEC_NAMES = ("uniform", "jeffreys")
PRIOR_SPEC_FORMS = "uniform, jeffreys, beta:A,B or mix:W,A,B;W,A,B;..."
#: ESS of the uniform prior the discounted design prior starts from (its power prior down-weights phase 1/2).
DISCOUNT_BASE_ESS = 2.0


def prior_spec_problem(spec: str) -> str | None:
    """Why ``spec`` is not a beta-mixture prior as ``analyses.design.parse_prior`` reads it (None: it is one):
    'uniform' | 'jeffreys' | 'beta:A,B' (A, B > 0) | 'mix:W,A,B;W,A,B;...' (weights >= 0 summing to 1, A, B > 0).
    Plain Python, so that the configuration refuses a bad spec before any work without importing scipy."""
    text = str(spec).strip().lower()
    if text in PRIOR_SPEC_NAMES:
        return None
    if text.startswith("beta:"):
        parts = [text[5:].split(",")]
        kind = "beta:A,B needs two numbers A,B > 0"
    elif text.startswith("mix:"):
        parts = [part.split(",") for part in text[4:].split(";") if part.strip()]
        kind = "each component of mix:W,A,B;W,A,B;... needs three numbers W >= 0, A > 0, B > 0"
        if not parts:
            return f"cannot read prior {spec!r}: {kind}"
    else:
        return f"unknown prior {spec!r}; use {PRIOR_SPEC_FORMS}"
    weights = []
    for comp in parts:
        try:
            numbers = [float(x) for x in comp]
        except ValueError:
            return f"cannot read prior {spec!r}: {kind}"
        if len(numbers) != (2 if text.startswith("beta:") else 3) or not all(math.isfinite(x) for x in numbers):
            return f"cannot read prior {spec!r}: {kind}"
        *w, a, b = numbers
        if a <= 0 or b <= 0 or (w and w[0] < 0):
            return f"cannot read prior {spec!r}: {kind}"
        weights += w
    if weights and not abs(sum(weights) - 1.0) < 1e-6:
        return f"cannot read prior {spec!r}: the weights of mix:W,A,B;... must sum to 1, they sum to {sum(weights):g}"
    return None


class DesignConfig(Block):
    """Phase 3 planning over a grid of sample sizes: exact enumeration for binary estimands, simulation for the
    C-peptide end point."""

    estimand: EstimandConfig = setting(EstimandConfig(), "the estimand")
    rule: Literal["bayes", "binomial", "dual"] = setting(
        "bayes", "bayes: P(rate > p0 | data) >= gamma; binomial: exact one-sided test; dual: the bayes rule and "
                 "P(rate > p_mcid | data) >= gamma_mcid")
    p0: float | None = setting(None, "null rate; null = the donor-islet benchmark of the estimand's end point by "
                                     "priors.benchmark (a fixed number is labelled as chosen by the user)",
                               gt=0.0, lt=1.0)
    p1: float | None = setting(None, "rate at which power is reported; null = p0 + 0.20 (a planning convention: a "
                                     "clinically meaningful 20 points above the benchmark)", gt=0.0, lt=1.0)
    gamma: float | Literal["calibrated"] = setting(
        "calibrated", "posterior probability threshold of the bayes rule, or 'calibrated': the smallest threshold "
                      "(4 decimals) keeping the type I error <= alpha at every n of the grid, exactly")
    alpha: float = setting(0.025, "one-sided type I error target (and binomial test level)", gt=0.0, lt=1.0)
    p_mcid: float | None = setting(None, "clinically relevant rate: second criterion of the dual rule, and the "
                                         "effect conditional assurance conditions on (null = p1)", gt=0.0, lt=1.0)
    gamma_mcid: float = setting(0.5, "posterior probability threshold of the dual rule's relevance criterion",
                                gt=0.0, lt=1.0)
    design_priors: list[str] = setting(
        lambda: ["phase12", "discounted", "robust", "map_updated", "donor_like"],
        "design-prior panel, the first is the primary: phase12 (phase 1/2 posterior), discounted (to discount_ess), "
        "robust (with a uniform component of weight design_robust), map_updated (donor-islet MAP prior updated by "
        "phase 1/2), donor_like (as donor islets do), or beta:A,B / mix:W,A,B;...", option="--design-prior")
    discount_ess: float = setting(6.0, "effective sample size of the discounted design prior (power prior): above "
                                       "2 (the uniform prior's) and at most 2 + the phase 1/2 n", gt=0.0,
                                  allow_inf_nan=False)
    design_robust: float = setting(0.5, "weight of the uniform component of the robust design prior", gt=0.0,
                                   lt=1.0)
    analysis_prior: str = setting("uniform", "prior of the phase 3 analysis: uniform, jeffreys, beta:A,B, "
                                             "mix:W,A,B;...")
    p0_panel: list[float] = setting(lambda: [0.20, 0.30, 0.40, 0.50], "further null rates under which the "
                                    "calibrated rule and the sample size are shown (a p0 panel)")
    overlap_phase12: bool = setting(False, "the phase 1/2 participants are part of the phase 3 count: success is "
                                           "the predictive probability given the data in hand (no double counting)")
    n_min: int = setting(20, "smallest phase 3 sample size of the grid", ge=1)
    n_max: int = setting(100, "largest phase 3 sample size of the grid (>= n_min)", ge=1, le=5000)
    n_step: int = setting(1, "grid step", ge=1)
    power_target: float = setting(0.8, "smallest acceptable power at p1", gt=0.0, lt=1.0)
    assurance_target: float = setting(0.8, "smallest acceptable assurance", gt=0.0, lt=1.0)
    interim: list[float] | None = setting(None, "interim looks as fractions of n, e.g. [0.5]; null = none")
    futility: float | None = setting(0.05, "stop for futility when the predictive probability of success is below "
                                           "this (null = no futility stop)", ge=0.0, lt=1.0)
    efficacy: Literal["none", "posterior", "predictive"] = setting(
        "none", "interim efficacy stop: none, posterior (P(rate > p0) >= efficacy_threshold) or predictive "
                "(predictive probability of success >= efficacy_threshold)")
    efficacy_threshold: float = setting(0.999, "threshold of the interim efficacy stop", gt=0.0, le=1.0)
    two_sample: bool = setting(False, "also plan a two-arm trial against a concurrent control arm with the MAP prior "
                                      "of the donor-islet studies as its prior (as RBesT's oc2S)")
    control_ratio: float = setting(0.5, "two-arm trial: control participants per treated participant", gt=0.0,
                                   le=4.0)
    delta: float = setting(0.0, "two-arm trial: success when P(rate_t - rate_c > delta) >= gamma", ge=-0.5, lt=0.5)
    simulate: int = setting(0, "simulated trials for simulation-based assurance (0 = none; the C-peptide estimand "
                               "needs them)", ge=0, le=1_000_000)
    simulate_n: int | None = setting(None, "n of the simulated trials (null = the smallest n meeting type I and "
                                           "power, else n_max)", ge=1, le=5000)
    cpeptide_threshold: float = setting(970.0, "C-peptide end point: stimulated C-peptide level at day 365, "
                                               "pmol/L (Baidal et al. 2023)", gt=0.0, le=10000.0)
    cpeptide_fraction: float = setting(0.5, "C-peptide end point: fraction of participants above the level",
                                       ge=0.0, lt=1.0)
    cpeptide_gamma: float = setting(0.975, "C-peptide end point: posterior probability threshold when gamma is "
                                           "'calibrated' (calibration is exact for binary estimands only)",
                                    gt=0.0, lt=1.0)
    planned_n: int = setting(50, "the phase 3 size as announced (about 50): the report's per-n table is centred "
                                 "on it", ge=1, le=5000)
    simulate_analysis: Literal["quadrature", "mcmc"] = setting(
        "quadrature", "C-peptide end point: how each simulated trial is analysed: quadrature (deterministic "
                      "quadrature of the two-parameter posterior, trials in batches: no compile, no Monte Carlo "
                      "error, no diagnostics to fail) or mcmc (a NUTS refit per trial, diagnostics checked; slower, "
                      "to check the quadrature against)")
    workers: int = setting(1, "local worker processes for simulations", ge=1, le=256)
    scheduler: str | None = setting(None, "Dask scheduler address for simulations, e.g. tcp://host:8786")

    @field_validator("n_max")
    @classmethod
    def _n_max_ge_n_min(cls, v: int, info: ValidationInfo) -> int:
        n_min = info.data.get("n_min")
        if n_min is not None and v < n_min:
            raise ValueError(f"must be >= design.n_min ({n_min})")
        return v

    @field_validator("interim")
    @classmethod
    def _fractions(cls, v):
        if v is not None and any(not 0 < f < 1 for f in v):
            raise ValueError("interim looks are fractions of n strictly between 0 and 1")
        return v

    @field_validator("gamma")
    @classmethod
    def _gamma_in_unit(cls, v):
        if not isinstance(v, str) and not 0 < v < 1:
            raise ValueError(f"must lie strictly between 0 and 1, or be 'calibrated'")
        return v

    @field_validator("design_priors", "p0_panel")
    @classmethod
    def _nonempty_unique(cls, v, info: ValidationInfo):
        if info.field_name == "design_priors" and not v:
            raise ValueError("name at least one design prior")
        if len(set(v)) != len(v):
            raise ValueError("lists an entry twice")
        if info.field_name == "p0_panel" and any(not 0 < p < 1 for p in v):
            raise ValueError("null rates lie strictly between 0 and 1")
        return v

    @field_validator("design_priors")
    @classmethod
    def _design_priors_known(cls, v: list[str]) -> list[str]:
        for name in v:
            if str(name).strip().lower() in DESIGN_PRIOR_NAMES:
                continue
            problem = prior_spec_problem(name)
            if problem is not None:
                if problem.startswith("unknown prior"):
                    problem = (f"unknown design prior {name!r}; use {', '.join(DESIGN_PRIOR_NAMES)}, or a prior: "
                               f"{PRIOR_SPEC_FORMS}")
                raise ValueError(problem)
        return v

    @field_validator("analysis_prior")
    @classmethod
    def _analysis_prior_readable(cls, v: str) -> str:
        problem = prior_spec_problem(v)
        if problem is not None:
            raise ValueError(problem)
        return v

    @field_validator("discount_ess")
    @classmethod
    def _discount_above_the_base(cls, v: float) -> float:
        if not v > DISCOUNT_BASE_ESS:
            raise ValueError(f"must be > {DISCOUNT_BASE_ESS:g} (the uniform prior's effective sample size, from "
                             "which the discounted design prior adds part of phase 1/2)")
        return v

    @model_validator(mode="after")
    def _consistent(self):
        try:
            self.estimand.resolved()
        except ValueError as err:
            raise ValueError(f"estimand: {err}") from None
        if self.estimand.endpoint == "cpeptide" and not self.simulate:
            raise ValueError("the C-peptide end point has no exact answer: set design.simulate (--simulate N)")
        if self.rule == "dual" and self.p_mcid is None:
            raise ValueError("the dual rule needs p_mcid (--p-mcid)")
        if self.efficacy != "none" and not self.interim:
            raise ValueError("an interim efficacy stop needs interim looks (design.interim)")
        return self


class DurabilityConfig(Block):
    """Durability of insulin independence: the multi-state model (onset, loss, death) with donor-islet attrition
    borrowed at a discount (isletbayes.models.durability_multistate)."""

    transfer_weight: float = setting(0.5, "power-prior weight a0 of the donor-islet retention figures (0 = ignore "
                                          "them, 1 = full weight; a convention)", ge=0.0, le=1.0)
    overdispersion: float = setting(0.02, "intra-class correlation discounting registry figures with approximate "
                                          "denominators (a convention)", ge=0.0, lt=1.0)
    include_tiwari: bool = setting(False, "also use Tiwari et al.'s retention of the composite end point (a "
                                          "different end point)")
    onset_start_day: float = setting(90.0, "onset of insulin independence is uniform from this day (a convention: "
                                           "time to insulin independence is not published)", ge=0.0, le=3650.0)
    onset_end_day: float = setting(365.0, "... to this day", gt=0.0, le=3650.0)
    deaths: int = setting(2, "deaths among the phase 1/2 participants dosed (2 of 14)", ge=0, le=10_000)
    death_exposure_years: float = setting(14.0, "their participant-years of follow-up (14 dosed, each followed at "
                                                "least 12 months: a lower bound)", gt=0.0, le=1e6)
    follow_up_years: list[float] = setting(lambda: [1.0, 2.0, 3.0, 5.0], "phase 3 follow-up lengths at which the "
                                           "precision of the 5-year retention estimate is computed")
    follow_up_participants: int = setting(50, "phase 3 participants for the follow-up precision (about 50, as "
                                              "planned)", ge=1, le=5000)
    follow_up_half_width: float = setting(0.075, "target half-width of the 95% interval of 5-year retention", gt=0.0,
                                          lt=0.5)
    follow_up_simulations: int = setting(100, "simulated phase 3 data sets per follow-up length", ge=10,
                                         le=100_000)

    @model_validator(mode="after")
    def _onset_window(self):
        if self.onset_end_day <= self.onset_start_day:
            raise ValueError("onset_end_day must exceed onset_start_day")
        return self


class SamplerConfig(Block):
    """NUTS settings for every MCMC fit (isletbayes.models.sampling.SamplerSettings)."""

    draws: int = setting(1000, "draws per chain after tuning", ge=10, le=1_000_000)
    tune: int = setting(1000, "tuning (warm-up) steps per chain", ge=10, le=1_000_000)
    chains: int = setting(4, "independent chains (R-hat needs at least 2)", ge=1, le=64)
    cores: int | None = setting(None, "chains sampled in parallel (null = as many as there are chains, at most the "
                                      "machine's CPU cores); the draws do not depend on it", ge=1, le=256)
    target_accept: float = setting(0.95, "higher = smaller steps, fewer divergences, slower", gt=0.5, lt=1.0)
    nuts_sampler: NutsSampler = setting("nutpie", "nutpie (fastest passing sampler, benchmarks/bench_cpeptide.py) "
                                                  "or pymc", option="--sampler")
    mass_matrix: MassMatrix = setting("diag", "warm-up adaptation of the NUTS metric: diag (one scale per "
                                              "parameter) or low_rank (also the directions in which parameters "
                                              "move together; pymc: a dense metric)")

    def settings(self, seed: int, target_accept: float | None = None):
        """The models' SamplerSettings for one fit seeded ``seed`` (``target_accept`` overrides this block's)."""
        from isletbayes.models.sampling import SamplerSettings

        cores = self.cores or max(1, min(self.chains, os.cpu_count() or 1))
        return SamplerSettings(draws=self.draws, tune=self.tune, chains=self.chains, cores=cores,
                               target_accept=self.target_accept if target_accept is None else target_accept,
                               nuts_sampler=self.nuts_sampler, seed=int(seed),
                               mass_matrix=self.mass_matrix)


class MainJobConfig(Block):
    """The whole configuration of the main job (isletbayes run)."""

    seed: int = setting(20250620, "master random seed: every MCMC fit and Monte Carlo step derives its seed from "
                                  "it, so a rerun gives identical numbers", ge=0, lt=SEED_MAX)
    sections: SectionsConfig = setting(SectionsConfig(), "which parts of the re-analysis run")
    data: DataConfig = setting(DataConfig(), "input files")
    priors: PriorsConfig = setting(PriorsConfig(), "the prior panel and the MAP prior")
    binary: BinaryConfig = setting(BinaryConfig(), "binary end points")
    cpeptide: CpeptideConfig = setting(CpeptideConfig(), "C-peptide trajectory and graft-function link")
    design: DesignConfig = setting(DesignConfig(), "phase 3 planning")
    durability: DurabilityConfig = setting(DurabilityConfig(), "durability scenarios")
    sampler: SamplerConfig = setting(SamplerConfig(), "NUTS settings for every MCMC fit")
    allow_large_jobs: bool = setting(False, "run work whose up-front estimate exceeds this machine's memory or one "
                                            "day (analyses/budget.py); for users who mean it", option="--allow-large")


# --- loading ----------------------------------------------------------------------------------------------


def default_config_path() -> Path:
    return Path(__file__).resolve().parent / DEFAULT_CONFIG_NAME


def _read_yaml(path: Path) -> dict[str, Any]:
    if path.is_dir():
        raise InputError("is a folder, not a configuration file", file=path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("configuration file not found", file=path) from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read configuration ({err})", file=path) from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise InputError(
            f"not valid YAML: {problem}" + (f" (column {mark.column + 1})" if mark else ""),
            file=path, line=(mark.line + 1) if mark else None) from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise InputError(f"the top level must be a mapping of keys, not a {type(doc).__name__}", file=path)
    return doc


#: Keys of isletbayes 0.1 that 0.2 renamed or replaced (README, "Changes"): named in the error instead of
#: "unknown key"
RENAMED_KEYS = {
    "design.endpoint": "replaced by design.estimand.preset (phase3_persistence, insulin_independence_day365, "
                       "composite_day365, cpeptide_day365)",
    "durability.n_draws": "removed: the multi-state durability model computes on a fixed grid (see "
                          "durability.follow_up_simulations)",
    "cpeptide.priors.measurement_sd_scale": "replaced by cpeptide.priors.measurement_sd_median and "
                                            "measurement_sd_log_sd (an informative prior)",
}


def validation_problem(err: ValidationError) -> tuple[str, str]:
    """(dotted key, message) of a validation error's first problem, in the project's words."""
    first = err.errors(include_url=False)[0]
    loc = [str(p) for p in first["loc"]]
    # a union or list member's validator adds its type to the location (e.g. 'float', 'literal[...]')
    loc = [p for p in loc if not (p.startswith(("literal[", "function-", "list[")) or p in ("float", "int", "str"))]
    key = ".".join(loc)
    kind, msg = first["type"], first["msg"]
    if kind == "extra_forbidden":
        msg = (f"no longer a key: {RENAMED_KEYS[key]}" if key in RENAMED_KEYS
               else "unknown key (check its spelling; see analyses/default_config.yaml for every key)")
    elif kind == "literal_error":
        msg = msg.replace("Input should be", "must be one of")
    msg = msg.removeprefix("Value error, ")
    if "input" in first and kind not in ("extra_forbidden", "missing") and not isinstance(first["input"], dict):
        msg += f" (got {first['input']!r})"
    return key, msg


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def config_from_dict(doc: dict[str, Any], *, source: str | Path | None = None) -> MainJobConfig:
    """Validate ``doc`` (a user's keys; everything else takes its default); raise InputError naming the key."""
    try:
        config = MainJobConfig.model_validate(doc)
    except ValidationError as err:
        key, msg = validation_problem(err)
        raise InputError(msg, file=source, key=key or "(top level)") from None
    # relative data paths in a user's file are relative to that file
    if source is not None:
        base_dir = Path(source).resolve().parent
        updates = {name: (base_dir / p) for name, p in config.data.model_dump().items()
                   if isinstance(p, Path) and not p.is_absolute()}
        if updates:
            config = config.model_copy(update={"data": config.data.model_copy(update=updates)})
    return config


def load_config(path: str | Path | None = None) -> MainJobConfig:
    """The default configuration, or the file at ``path`` merged over it."""
    if path is None:
        return MainJobConfig()
    path = Path(path)
    return config_from_dict(_read_yaml(path), source=path)


def config_to_dict(config: MainJobConfig) -> dict[str, Any]:
    """A plain, JSON-ready dict of the full configuration (what results and provenance record)."""
    return config.model_dump(mode="json")


def merged(config: Block, override: dict[str, Any]) -> Block:
    """``config`` with the (nested) keys of ``override`` replaced, validated again."""
    return type(config).model_validate(_merge(config.model_dump(), override))


# --- the rendered default file ----------------------------------------------------------------------------


def _yaml_value(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000).strip()
    return text.removesuffix("...").strip()


def _render_block(cls: type[Block], indent: int, lines: list[str]) -> None:
    pad = "  " * indent
    for name, field in cls.model_fields.items():
        annotation = field.annotation
        default = field.get_default(call_default_factory=True)
        if isinstance(annotation, type) and issubclass(annotation, Block):
            lines.append(f"{pad}{name}:  # {_doc(annotation)}")
            _render_block(annotation, indent + 1, lines)
            continue
        value = default.model_dump(mode="json") if isinstance(default, BaseModel) else default
        if isinstance(value, Path):
            value = str(value)
        words = choices(annotation)
        note = field.description or ""
        if words:
            note += f" (one of: {', '.join(words)})"
        lines.append(f"{pad}{name}: {_yaml_value(value)}  # {note}")


def choices(annotation: Any) -> list[str]:
    """The allowed strings of a Literal annotation or of a list of Literals (a choice among words), else []."""
    if getattr(annotation, "__origin__", None) is Literal:
        return [str(a) for a in get_args(annotation)]
    if getattr(annotation, "__origin__", None) is list:
        return choices(get_args(annotation)[0])
    return []


def _doc(cls: type) -> str:
    return " ".join((cls.__doc__ or "").split())


def render_default_config() -> str:
    """The text of analyses/default_config.yaml: every key with its default and description, from the models."""
    lines = [
        "# isletbayes main job: the default configuration (`isletbayes run` uses it when no --config is given).",
        "#",
        "# This file is rendered from the configuration models in analyses/config.py, where every default, bound",
        "# and description is written once; a test keeps the two equal. A file of your own need hold only the",
        "# keys it changes: it is merged over these defaults (mappings key by key; lists and single values",
        "# replace), then checked as a whole. An unknown or misspelt key, a value of the wrong type or out of",
        "# range, is an error naming the key (exit status 2). Relative paths in your file are relative to it.",
        "",
    ]
    for name, field in MainJobConfig.model_fields.items():
        annotation = field.annotation
        doc = field.description or ""
        if isinstance(annotation, type) and issubclass(annotation, Block):
            lines.append(f"# {_doc(annotation)}")
            lines.append(f"{name}:")
            _render_block(annotation, 1, lines)
        else:
            lines.append(f"# {doc}")
            lines.append(f"{name}: {_yaml_value(field.get_default())}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
