"""One latent graft function informed by every published aggregate of the zimislecel phase 1/2 trial (PyMC).

The cohort-means model of :mod:`isletbayes.models.cpeptide_trajectory` sees four numbers. This model adds every
other published summary of the same 12 full-dose participants, each through a stated likelihood, so that the
between-participant spread of graft function is informed by data and not by its prior alone.

Participants (latent, i = 1..n, n = 12; integrated out, never sampled)
----------------------------------------------------------------------
    C_i(t)     = A_i (1 - exp(-(k_i t)^h)),   log A_i ~ N(log A, sd_A),   log k_i ~ N(log k, sd_k)   (graft function)
    Y_it       = C_i(t) exp(sigma eps_it)                         measured C-peptide; sigma: assay + visit-to-visit
    log N_i    = log N + s_N u_i,  log D0_i = mu_D + s_N u_i     insulin need (graft_link module docstring),
                                                                 proportional to the baseline insulin dose D0_i
    phi_i      = C_i(365) / N_i                                  share of the need the graft covers; II_i = [phi_i >= 1]
    logit(TIR_i / 100) = a_T + b_T (log C_i(365) - log 1000) + s_T e_i               time in range, day 365
    log H0_i   = mu_H + s_H0 e_i                                                     HbA1c at baseline (no graft yet)
    log H_i    = mu_H + d_H + b_H (log C_i(120) - log 1000) + s_H e_i                HbA1c at day 120

Given the population parameters the participants are independent and identically distributed. The participants'
log graft function at day t, log C_i(t) = log A_i + log g_t(z_k,i), is approximated by a normal with its exact
mean and variance, m_t = log A + E log g_t(z) and v_t = sd_A^2 + Var log g_t(z) (moments over the rate quantile z
by :data:`RATE_NODES`-point Gauss-Hermite quadrature). The approximation is exact when the rate does not vary and
close at day 120 and 365, when most participants are near their plateau; it keeps every term smooth (a mixture over
quadrature nodes is lumpy when the residual sds are small, and NUTS diverged there). Every term below is then the
law of a summary of n such participants.

Likelihood terms (the data of :class:`GraftFunctionData`)
---------------------------------------------------------
1. Cohort means of C-peptide at days 90/180/270/365: the moment-matched lognormal of the cohort-means model, times
   exp(delta_t), delta_t ~ N(0, tau) the cohort-by-visit **curve misfit**. tau belongs to the published means, not
   to any participant: simulated new participants carry only sigma.
2. C-peptide detectable after infusion, r of n: Binomial(n, P(Y_i(365) > LLOD)). The abstract's 14/14 includes two
   half-dose (part A) participants who are not of this population; 12/12 of the full dose is used (day 365).
3. Range (and mean) of n values of one measure (TIR at day 365; HbA1c at baseline and at day 120; the baseline
   insulin dose, 19.8-52.0 U/day, mean 39.3, which informs the spread s_N of the need). With f, F the
   density and cdf of one participant's value on the model's scale x (logit TIR, log HbA1c), the minimum and
   maximum of n have the order-statistic density (David & Nagaraja 2003, Order Statistics, eq. 2.2.1)

       p(x_min, x_max) = n (n - 1) f(x_min) f(x_max) [F(x_max) - F(x_min)]^(n - 2),

   and given them the other n - 2 values are independent draws of the distribution truncated to
   [x_min, x_max]. A reported mean M therefore adds, exactly in its conditioning, the law of the inner mean
   (n M - v_min - v_max) / (n - 2) ~ N(mu_trunc, var_trunc / (n - 2) + rounding), mu_trunc and var_trunc the
   moments of the value (natural scale) under the truncated law (Gauss-Legendre quadrature on [x_min, x_max];
   the normal law of a mean of 10 bounded draws is the one approximation), "rounding" the variance of the
   reported mean's last digit, (unit / 2)^2 / 3 (n / (n - 2))^2.
4. Insulin outcomes per participant under the need threshold: insulin independent contributes P(phi_i >= 1); not
   independent with dose cut c contributes the density of log phi_i at log c; the two participants with
   prohibited glucocorticoid exposure enter by the strategy chosen (:class:`~isletbayes.models.graft_link.
   IntercurrentStrategy`): counted as observed (treatment policy), or as the lower bound phi_i >= c
   (hypothetical; the default). With 10 of 12 independent, cuts of 70% and 36%, this is the only term whose scale
   is physiological rather than a prior's: log phi_i = log C_i(365) - log N_i ~ N(m_365 - log N,
   sqrt(v_365 + s_N^2)), and with s_N informed by the baseline doses the spread of the observed shares bounds sd_A.
   Assumed: the need for graft insulin is proportional to the baseline insulin dose (same s_N).

The terms are multiplied as if independent given the population parameters (a composite likelihood, Lindsay 1988,
Contemp. Math. 80:221). In truth they are summaries of the same 12 participants, so they are positively dependent
(a cohort whose grafts are strong has high means, high TIR and many insulin independent); the simulation-based
calibration of this model (``analyses/calibration.py``) simulates the 12 participants jointly and checks what
this costs.

Priors (:class:`GraftFunctionPriors`; the trajectory's are :class:`~isletbayes.models.cpeptide_trajectory.
TrajectoryPriors`). The measurement sd's is informative (MMTT repeatability, see cpeptide_trajectory). The need,
TIR and HbA1c priors are conventions, stated on their natural scales: need N ~ LogNormal(log 500, 1) pmol/L,
s_N ~ HalfNormal(0.5), baseline dose mu_D ~ N(log 40, 0.5); logit TIR at 1000 pmol/L a_T ~ N(1.5, 1) (82%, 37% to
97%), slope b_T ~ N(0.5, 0.5) per e-fold of C-peptide, s_T ~ Gamma(2, 2 / 0.5); baseline log HbA1c
mu_H ~ N(log 8, 0.15), s_H0 ~ HalfNormal(0.2); d_H ~ N(-0.1, 0.2), b_H ~ N(-0.05, 0.05), s_H ~ Gamma(2, 2 / 0.05).
The residual sds s_T and s_H have zero-avoiding Gamma(2) priors (TIR and HbA1c vary between people for reasons
other than graft function; with a prior piling at zero NUTS diverged where the residual vanishes). The TIR and
HbA1c slopes are what lets those ranges inform the graft-function spread; they are priors, and the contraction
table shows it. :func:`contraction` reports for each parameter how
much the data moved it (posterior sd / prior sd).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt

from isletbayes.models import cpeptide_trajectory as cpm
from isletbayes.models.graft_link import REFERENCE_CPEPTIDE_PMOL_L, IntercurrentStrategy
from isletbayes.models.validation import ModelInputError

LOG_REFERENCE = math.log(REFERENCE_CPEPTIDE_PMOL_L)
DETECTION_DAY = 365.0
HBA1C_DAY = 120.0
TIR_DAY = 365.0
#: Gauss-Legendre nodes for the moments of a value truncated to the observed range
TRUNCATED_MOMENT_NODES = 16
#: Gauss-Hermite nodes over the rate quantile z_k for the terms of this module (the cohort-means term keeps the
#: trajectory module's grid); exact for polynomials in z of degree < 40
RATE_NODES = 20


def rate_nodes() -> tuple[np.ndarray, np.ndarray]:
    """Probabilists' Gauss-Hermite nodes z_j and weights w_j (summing to 1): sum_j w_j f(z_j) ~ E f(Z)."""
    z, w = np.polynomial.hermite_e.hermegauss(RATE_NODES)
    return z, w / w.sum()

#: Parameters of the joint model, in report order (the trajectory's first)
GRAFT_FUNCTION_PARAMETERS = (cpm.POPULATION_PARAMETERS + ("curve_misfit_sd", "rise_shape")
                             + cpm.NEED_PARAMETERS
                             + ("tir_logit_at_1000", "tir_slope", "tir_residual_sd",
                                "hba1c_baseline_log_median", "hba1c_baseline_log_sd",
                                "hba1c_day120_log_change", "hba1c_slope", "hba1c_residual_sd",
                                "insulin_dose_log_median"))
POSITIVE_PARAMETERS = frozenset(cpm.POPULATION_PARAMETERS + ("curve_misfit_sd", "rise_shape") + cpm.NEED_PARAMETERS
                                + ("tir_residual_sd", "hba1c_baseline_log_sd", "hba1c_residual_sd"))


# ---------------------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class RangeSummary:
    """The minimum, maximum and (optionally) mean of ``n`` participants' values of one measure (natural units);
    ``rounding_unit`` is the last reported digit of the mean."""

    n: int
    minimum: float
    maximum: float
    mean: float | None = None
    rounding_unit: float = 0.1

    def __post_init__(self) -> None:
        if not (isinstance(self.n, (int, np.integer)) and self.n >= 3):
            raise ModelInputError(f"a range needs n >= 3 participants, got {self.n!r}", parameter="n")
        if not (math.isfinite(self.minimum) and math.isfinite(self.maximum) and self.minimum < self.maximum):
            raise ModelInputError(f"need minimum < maximum, got {self.minimum} and {self.maximum}", parameter="range")
        if self.mean is not None and not self.minimum < self.mean < self.maximum:
            raise ModelInputError(f"the mean {self.mean} is outside the range {self.minimum}-{self.maximum}",
                                  parameter="mean")


@dataclass(frozen=True)
class InsulinOutcomes:
    """Per participant at day 365: insulin independent (0/1), the dose cut (fraction of the baseline dose; ignored
    when independent) and prohibited glucocorticoid exposure (bool)."""

    independent: np.ndarray
    dose_cut: np.ndarray
    exposed: np.ndarray

    def __post_init__(self) -> None:
        ind = np.asarray(self.independent, dtype=np.int64)
        cut = np.asarray(self.dose_cut, dtype=float)
        exp_ = np.asarray(self.exposed, dtype=bool)
        if not (ind.shape == cut.shape == exp_.shape and ind.ndim == 1 and ind.size >= 1):
            raise ModelInputError("independent, dose_cut and exposed must be equal-length lists", parameter="insulin")
        if not np.isin(ind, (0, 1)).all():
            raise ModelInputError("independent must be 0 or 1", parameter="independent")
        bad = (ind == 0) & ~((cut > 0) & (cut < 1))
        if bad.any():
            raise ModelInputError("a participant not insulin independent needs a dose cut strictly between 0 and 1",
                                  parameter="dose_cut")
        object.__setattr__(self, "independent", ind)
        object.__setattr__(self, "dose_cut", np.where(ind == 1, 1.0, cut))
        object.__setattr__(self, "exposed", exp_)

    def as_array(self) -> np.ndarray:
        """participants x (independent, dose cut, exposed): the observed value of the model's insulin term."""
        return np.stack([self.independent, self.dose_cut, self.exposed.astype(float)], axis=1).astype(float)


@dataclass(frozen=True)
class GraftFunctionData:
    """Every published aggregate of the n full-dose participants that the joint model uses."""

    means: cpm.CohortMeans
    detectable: int
    tir_day365: RangeSummary
    hba1c_baseline: RangeSummary
    hba1c_day120: RangeSummary
    insulin_dose_baseline: RangeSummary
    insulin: InsulinOutcomes
    sources: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        n = self.means.n_participants
        for name in ("tir_day365", "hba1c_baseline", "hba1c_day120", "insulin_dose_baseline"):
            if getattr(self, name).n != n:
                raise ModelInputError(f"{name} is of {getattr(self, name).n} participants, the means of {n}",
                                      parameter=name)
        if self.insulin.independent.size != n:
            raise ModelInputError(f"insulin outcomes of {self.insulin.independent.size} participants, not {n}",
                                  parameter="insulin")
        if not 0 <= int(self.detectable) <= n:
            raise ModelInputError(f"detectable count {self.detectable} outside 0..{n}", parameter="detectable")

    @property
    def n_participants(self) -> int:
        return self.means.n_participants


def _one(frame: pd.DataFrame, **where) -> float:
    rows = frame
    for column, value in where.items():
        rows = rows[rows[column] == value]
    if len(rows) != 1:
        raise ModelInputError(f"expected one row with {where}, found {len(rows)}", parameter="published_tables")
    return float(rows["value"].iloc[0])


def graft_function_data_from_tables(cpeptide_means: pd.DataFrame, continuous: pd.DataFrame,
                                    counts: pd.DataFrame) -> GraftFunctionData:
    """:class:`GraftFunctionData` from the bundled tables (``isletbayes.data.load_cpeptide_means``,
    ``load_continuous`` and ``load_counts``; rows with ``used_by_default``).

    Read as: the two participants not insulin independent are the two with the reported cuts (70% and 36%) and the
    two with prohibited glucocorticoid exposure; none of the ten insulin-independent participants was exposed
    (no exposure is reported for them)."""
    cp = cpeptide_means[cpeptide_means["used_by_default"]].sort_values("day")
    cont = continuous[(continuous["used_by_default"]) & (continuous["cohort"] == "full_dose")]
    cnt = counts[counts["used_by_default"]]
    n = int(cp["n"].iloc[0])
    means = cpm.CohortMeans(days=cp["day"].to_numpy(dtype=float), means=cp["mean_pmol_l"].to_numpy(dtype=float),
                            n_participants=n, lod=float(cp["lod_pmol_l"].min()))
    tir = RangeSummary(n, _one(cont, measure="tir_70_180", day=365, statistic="min"),
                       _one(cont, measure="tir_70_180", day=365, statistic="max"),
                       _one(cont, measure="tir_70_180", day=365, statistic="mean"))
    h0 = RangeSummary(n, _one(cont, measure="hba1c", day=0, statistic="min"),
                      _one(cont, measure="hba1c", day=0, statistic="max"),
                      _one(cont, measure="hba1c", day=0, statistic="mean"))
    h120 = RangeSummary(n, _one(cont, measure="hba1c", day=120, statistic="min"),
                        _one(cont, measure="hba1c", day=120, statistic="max"))
    dose0 = RangeSummary(n, _one(cont, measure="insulin_dose", day=0, statistic="min"),
                         _one(cont, measure="insulin_dose", day=0, statistic="max"),
                         _one(cont, measure="insulin_dose", day=0, statistic="mean"))
    ii = cnt[(cnt["endpoint"] == "insulin_independence") & (cnt["cohort"] == "full_dose")
             & (cnt["timepoint_day"] == 365)]
    if len(ii) != 1 or int(ii["n"].iloc[0]) != n:
        raise ModelInputError("expected one day-365 insulin-independence count of the full-dose cohort",
                              parameter="published_tables")
    r = int(ii["r"].iloc[0])
    cuts_rows = continuous[(continuous["used_by_default"])
                           & (continuous["cohort"] == "full_dose_not_insulin_independent")
                           & (continuous["measure"] == "insulin_dose")]
    cuts = np.sort(-cuts_rows["value"].to_numpy(dtype=float) / 100.0)[::-1]
    if cuts.size != n - r:
        raise ModelInputError(f"{cuts.size} dose cuts for {n - r} participants not insulin independent",
                              parameter="published_tables")
    insulin = InsulinOutcomes(independent=np.r_[np.ones(r, int), np.zeros(n - r, int)],
                              dose_cut=np.r_[np.ones(r), cuts], exposed=np.r_[np.zeros(r, bool), np.ones(n - r, bool)])
    det = cnt[(cnt["endpoint"] == "c_peptide_positive") & (cnt["timepoint_day"] == 365)]
    if len(det) != 1 or int(det["r"].iloc[0]) != int(det["n"].iloc[0]):
        raise ModelInputError("expected C-peptide detectable in all dosed participants after infusion",
                              parameter="published_tables")
    # all dosed participants detectable: so are the n full-dose ones among them
    sources = tuple(sorted(set(cp["source_id"]) | set(cont["source_id"]) | set(ii["source_id"])
                           | set(det["source_id"]) | set(cuts_rows["source_id"])))
    return GraftFunctionData(means=means, detectable=n, tir_day365=tir, hba1c_baseline=h0, hba1c_day120=h120,
                             insulin_dose_baseline=dose0, insulin=insulin, sources=sources)


# -------------------------------------------------------------------------------------------------- priors
@dataclass(frozen=True)
class GraftFunctionPriors:
    """Priors of the joint model's own parameters (the module docstring states each; conventions)."""

    need_median_pmol_l: float = 500.0
    need_log_sd: float = 1.0
    need_spread_scale: float = 0.5
    tir_logit_mean: float = 1.5
    tir_logit_sd: float = 1.0
    tir_slope_mean: float = 0.5
    tir_slope_sd: float = 0.5
    tir_residual_mean: float = 0.5
    hba1c_baseline_median: float = 8.0
    hba1c_baseline_log_sd: float = 0.15
    hba1c_baseline_spread_scale: float = 0.2
    hba1c_change_mean: float = -0.1
    hba1c_change_sd: float = 0.2
    hba1c_slope_mean: float = -0.05
    hba1c_slope_sd: float = 0.05
    hba1c_residual_mean: float = 0.05
    insulin_dose_median: float = 40.0
    insulin_dose_log_sd: float = 0.5

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ModelInputError(f"must be a finite number, got {value!r}", parameter=name)
            if name.endswith(("_sd", "_scale", "_median", "_residual_mean")):
                if value <= 0:
                    raise ModelInputError(f"must be > 0, got {value!r}", parameter=name)

    def as_dict(self) -> dict:
        return asdict(self)


def draw_prior(priors: cpm.TrajectoryPriors, graft_priors: GraftFunctionPriors,
               rng: np.random.Generator) -> dict[str, float]:
    """One draw of every parameter of :func:`build_graft_function_model` from its prior (the model's priors)."""
    p, g = priors, graft_priors
    population = cpm.draw_prior_parameters(p, None, rng, rise_shape=True)
    out = {name: getattr(population, name) for name in cpm.POPULATION_PARAMETERS}
    out["rise_shape"] = population.rise_shape
    out["curve_misfit_sd"] = float(rng.gamma(2.0, p.curve_misfit_scale / 2.0))
    out["need_median_pmol_l"] = float(np.exp(rng.normal(math.log(g.need_median_pmol_l), g.need_log_sd)))
    out["sd_log_need"] = float(abs(rng.normal(0.0, g.need_spread_scale)))
    out["tir_logit_at_1000"] = float(rng.normal(g.tir_logit_mean, g.tir_logit_sd))
    out["tir_slope"] = float(rng.normal(g.tir_slope_mean, g.tir_slope_sd))
    out["tir_residual_sd"] = float(rng.gamma(2.0, g.tir_residual_mean / 2.0))
    out["hba1c_baseline_log_median"] = float(rng.normal(math.log(g.hba1c_baseline_median), g.hba1c_baseline_log_sd))
    out["hba1c_baseline_log_sd"] = float(abs(rng.normal(0.0, g.hba1c_baseline_spread_scale)))
    out["hba1c_day120_log_change"] = float(rng.normal(g.hba1c_change_mean, g.hba1c_change_sd))
    out["hba1c_slope"] = float(rng.normal(g.hba1c_slope_mean, g.hba1c_slope_sd))
    out["hba1c_residual_sd"] = float(rng.gamma(2.0, g.hba1c_residual_mean / 2.0))
    out["insulin_dose_log_median"] = float(rng.normal(math.log(g.insulin_dose_median), g.insulin_dose_log_sd))
    return out


def population_parameters(values: dict[str, float]) -> cpm.PopulationParameters:
    """The participant-level part of one parameter set (what simulating new participants uses: no curve misfit)."""
    return cpm.PopulationParameters(
        **{name: float(values[name]) for name in cpm.POPULATION_PARAMETERS}, rise_shape=float(values["rise_shape"]),
        need_median_pmol_l=float(values["need_median_pmol_l"]), sd_log_need=float(values["sd_log_need"]))


# ------------------------------------------------------------------------------------------------ simulation
#: How strongly a prohibited glucocorticoid course raises the insulin requirement in the calibration's simulator:
#: requirement x exp(|Normal(0, 0.5)|) (a convention; only its direction, never below x1, enters the model).
GLUCOCORTICOID_NEED_LOG_SD = 0.5


def simulate_graft_function_data(values: dict[str, float], rng: np.random.Generator, n_participants: int = 12,
                                 days=(90.0, 180.0, 270.0, 365.0), n_exposed: int = 2,
                                 strategy: IntercurrentStrategy | str = IntercurrentStrategy.HYPOTHETICAL,
                                 lod: float = cpm.DEFAULT_LOD_PMOL_L) -> GraftFunctionData:
    """Simulate the published aggregates of ``n_participants`` participants drawn jointly from the model.

    ``n_exposed`` participants (at random: the exposure is unrelated to graft function) have a glucocorticoid
    course that raises their insulin need (:data:`GLUCOCORTICOID_NEED_LOG_SD`) under the hypothetical strategy; under
    the treatment policy the observed outcome is the estimand, so exposure changes nothing.
    """
    strategy = IntercurrentStrategy(strategy)
    days = np.asarray(days, dtype=float)
    n = int(n_participants)
    params = population_parameters(values)
    z = rng.standard_normal((n, 2))
    log_a = math.log(params.plateau_pmol_l) + params.sd_log_plateau * z[:, 0]
    rate = cpm.rate_from_t_half(params.t_half_days, params.rise_shape) * np.exp(params.sd_log_rate * z[:, 1])

    def log_c(day):
        return cpm.log_trajectory(log_a, rate, day, rise_shape=params.rise_shape)

    log_c_visits = np.stack([log_c(d) for d in days], axis=1)
    measured = np.exp(log_c_visits + params.measurement_sd * rng.standard_normal(log_c_visits.shape))
    means = measured.mean(axis=0) * np.exp(values["curve_misfit_sd"] * rng.standard_normal(days.size))
    cohort_means = cpm.CohortMeans(days=days, means=means, n_participants=n, lod=lod)
    y_detect = np.exp(log_c(DETECTION_DAY) + params.measurement_sd * rng.standard_normal(n))
    detectable = int(np.sum(y_detect > lod))

    log_c365, log_c120 = log_c(TIR_DAY), log_c(HBA1C_DAY)
    tir = 100.0 / (1.0 + np.exp(-(values["tir_logit_at_1000"] + values["tir_slope"] * (log_c365 - LOG_REFERENCE)
                                  + values["tir_residual_sd"] * rng.standard_normal(n))))
    h0 = np.exp(values["hba1c_baseline_log_median"] + values["hba1c_baseline_log_sd"] * rng.standard_normal(n))
    h120 = np.exp(values["hba1c_baseline_log_median"] + values["hba1c_day120_log_change"]
                  + values["hba1c_slope"] * (log_c120 - LOG_REFERENCE)
                  + values["hba1c_residual_sd"] * rng.standard_normal(n))

    z_dose = rng.standard_normal(n)  # the need is proportional to the baseline insulin dose
    log_need = math.log(values["need_median_pmol_l"]) + values["sd_log_need"] * z_dose
    dose0 = np.exp(values["insulin_dose_log_median"] + values["sd_log_need"] * z_dose)
    exposed = np.zeros(n, bool)
    exposed[rng.choice(n, size=n_exposed, replace=False)] = True
    if strategy is IntercurrentStrategy.HYPOTHETICAL:
        log_need = log_need + exposed * np.abs(GLUCOCORTICOID_NEED_LOG_SD * rng.standard_normal(n))
    share = np.exp(log_c365 - log_need)
    independent = (share >= 1.0).astype(int)
    insulin = InsulinOutcomes(independent=independent, dose_cut=np.where(independent == 1, 1.0, share),
                              exposed=exposed)

    def summary(v, with_mean):
        return RangeSummary(n, float(v.min()), float(v.max()), float(v.mean()) if with_mean else None,
                            rounding_unit=0.0)

    return GraftFunctionData(means=cohort_means, detectable=detectable, tir_day365=summary(tir, True),
                             hba1c_baseline=summary(h0, True), hba1c_day120=summary(h120, False),
                             insulin_dose_baseline=summary(dose0, True), insulin=insulin)


# ----------------------------------------------------------------------------------------- likelihood terms
LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _normal_logpdf(x, mean, sd):
    """log Normal(x; mean, sd), elementwise."""
    return -0.5 * ((x - mean) / sd) ** 2 - pt.log(sd) - LOG_SQRT_2PI


def _normal_logcdf(u):
    return pm.logcdf(pm.Normal.dist(0.0, 1.0), u)


def _normal_logsf(u):
    return _normal_logcdf(-u)


def _log_normal_interval(a, b):
    """log(Phi(b) - Phi(a)) for a < b, accurate in both tails.

    Phi(b) - Phi(a) = Phi(-a) - Phi(-b), so the interval is first reflected, when needed, to (lo, hi) with
    lo + hi <= 0. Then Phi(lo) <= 1 - Phi(hi), Phi(lo) / Phi(hi) stays away from 1 unless the interval is narrow,
    and log Phi(hi) + log(1 - exp(log Phi(lo) - log Phi(hi))) loses no precision in either tail. The two sides of
    the reflection give the same value, so the density and its gradient are continuous across it."""
    flip = a + b > 0.0
    lo, hi = pt.switch(flip, -b, a), pt.switch(flip, -a, b)
    log_hi = _normal_logcdf(hi)
    return log_hi + pt.log1mexp(pt.minimum(_normal_logcdf(lo) - log_hi, -1e-12))


def range_logp(value, mean, sd, n: int, transform: str, rounding_var, has_mean: bool):
    """Log-likelihood of ``value`` = (minimum, maximum, mean) of n values (natural scale; the mean is used when
    ``has_mean``) whose model-scale values x (``transform``: 'log' or 'logit100') are Normal(mean, sd)
    (module docstring, term 3)."""
    if transform == "log":
        x = pt.log(value[:2])
    else:
        p = value[:2] / 100.0
        x = pt.log(p) - pt.log1p(-p)
    x_min, x_max = x[0], x[1]
    log_mass = _log_normal_interval((x_min - mean) / sd, (x_max - mean) / sd)  # log(F(x_max) - F(x_min))
    logp = math.log(n * (n - 1)) + pt.sum(_normal_logpdf(x, mean, sd)) + (n - 2) * log_mass
    if not has_mean:
        return logp
    # the mean of the n - 2 inner values, given the extremes (truncated moments by Gauss-Legendre on [x_min, x_max];
    # the density's constant cancels in the normalised weights)
    nodes, gl_weights = np.polynomial.legendre.leggauss(TRUNCATED_MOMENT_NODES)
    grid = x_min + (x_max - x_min) * (nodes + 1.0) / 2.0
    weights = pt.special.softmax(np.log(gl_weights) - 0.5 * ((grid - mean) / sd) ** 2)
    natural = pt.exp(grid) if transform == "log" else 100.0 * pt.sigmoid(grid)
    mu_t = pt.sum(weights * natural)
    var_t = pt.sum(weights * (natural - mu_t) ** 2)
    inner = (n * value[2] - value[0] - value[1]) / (n - 2)
    sd_inner = pt.sqrt(var_t / (n - 2) + rounding_var)
    return logp + _normal_logpdf(inner, mu_t, sd_inner)


def insulin_logp(value, log_share_mean, sd, strategy):
    """Per-participant log-likelihood of (independent, dose cut, exposed) rows (graft_link.insulin_outcome_loglik
    with one normal component: log phi_i ~ Normal(log_share_mean, sd)).

    ``strategy``: an :class:`IntercurrentStrategy`, or a 0-d tensor equal to 1 under the hypothetical strategy and 0
    under the treatment policy (the model's ``hypothetical_strategy`` container, so that both strategies share one
    compiled model)."""
    if isinstance(strategy, (str, IntercurrentStrategy)):
        strategy = float(IntercurrentStrategy(strategy) is IntercurrentStrategy.HYPOTHETICAL)
    hypothetical = pt.as_tensor(strategy) > 0.5
    independent = value[:, 0] > 0.5
    log_cut = pt.log(value[:, 1])
    exposed = value[:, 2] > 0.5
    density = _normal_logpdf(log_cut, log_share_mean, sd)
    bound = pt.switch(independent, 0.0, log_cut)
    above = _normal_logsf((bound - log_share_mean) / sd)  # P(log phi_i >= bound)
    # hypothetical: an exposed participant's dose cut is a lower bound on the share; treatment policy: as observed
    return pt.switch(independent | (exposed & hypothetical), above, density)


def _rounding_var(summary: RangeSummary) -> float:
    if summary.mean is None:
        return 0.0
    n = summary.n
    return (summary.rounding_unit / 2.0) ** 2 / 3.0 * (n / (n - 2)) ** 2


def _range_value(summary: RangeSummary) -> np.ndarray:
    """(minimum, maximum, mean); a summary without a mean carries 0 there, and its model term ignores it."""
    return np.array([summary.minimum, summary.maximum, 0.0 if summary.mean is None else summary.mean])


def graft_function_arrays(data: GraftFunctionData) -> dict[str, np.ndarray]:
    """The ``pm.Data`` values of :func:`build_graft_function_model`, by container name (for refits). A range
    without a published mean has no rounding variance (its term does not use one)."""
    out = {"cohort_mean_obs": data.means.means, "detectable_obs": np.asarray(int(data.detectable), dtype=np.int64),
           "insulin_obs": data.insulin.as_array()}
    for name, attr in RANGE_FIELDS.items():
        summary = getattr(data, attr)
        out[f"{name}_obs"] = _range_value(summary)
        if summary.mean is not None:
            out[f"{name}_rounding_var"] = np.asarray(_rounding_var(summary))
    return out


# ------------------------------------------------------------------------------------------------------ model
#: model term -> field of GraftFunctionData
RANGE_FIELDS = {"tir": "tir_day365", "hba1c_baseline": "hba1c_baseline", "hba1c_day120": "hba1c_day120",
                "insulin_dose_baseline": "insulin_dose_baseline"}


def build_graft_function_model(data: GraftFunctionData, priors: cpm.TrajectoryPriors = cpm.TrajectoryPriors(),
                               graft_priors: GraftFunctionPriors = GraftFunctionPriors(),
                               strategy: IntercurrentStrategy | str = IntercurrentStrategy.HYPOTHETICAL) -> pm.Model:
    """The joint model of every published aggregate (module docstring); ``strategy`` for the participants with
    prohibited glucocorticoid exposure. Every data array is a ``pm.Data`` container (:func:`graft_function_arrays`)."""
    strategy = IntercurrentStrategy(strategy)
    g = graft_priors
    n = data.n_participants
    days = data.means.days
    arrays = graft_function_arrays(data)
    z, w = rate_nodes()
    coords = {"visit": days.tolist(), "visit_other": days.tolist(), "participant": np.arange(n),
              "insulin_outcome": ["independent", "dose_cut", "exposed"]}
    with pm.Model(coords=coords) as model:
        model.strategy = strategy
        visit_day = pm.Data("visit_day", days, dims="visit")
        data_vars = {name: pm.Data(name, value) for name, value in arrays.items() if name != "cohort_mean_obs"}
        mean_obs = pm.Data("cohort_mean_obs", arrays["cohort_mean_obs"], dims="visit")
        plateau, t_half, sd_a, sd_k, sigma = cpm._population_parameters(priors)
        shape, _ = cpm._shape_and_decline(priors, late_decline=False, rise_shape=True)
        log_plateau = pt.log(plateau)
        log_rate, _ = cpm._log_median_rate(t_half, shape)
        # 1. cohort means (with the curve misfit)
        cpm.cohort_means_likelihood(log_plateau, log_rate, sd_a, sd_k, sigma, visit_day, n, mean_obs, priors,
                                    shape=shape, curve_misfit=True)

        def graft_function(day):
            """Mean and variance of log C_i(day) over the population (moments over the rate by Gauss-Hermite)."""
            log_g = pt.log1mexp(-pt.exp(shape * (log_rate + sd_k * z + math.log(day))))
            mean_g = pt.dot(w, log_g)
            return log_plateau + mean_g, sd_a**2 + pt.dot(w, (log_g - mean_g) ** 2)

        (m365, v365), (m120, v120) = graft_function(DETECTION_DAY), graft_function(HBA1C_DAY)
        pm.Deterministic("graft_function_365_log_sd", pt.sqrt(v365))
        # 2. detectable C-peptide at day 365
        u_lod = (math.log(data.means.lod) - m365) / pt.sqrt(v365 + sigma**2)
        pm.Binomial("detectable", n=n, logit_p=_normal_logsf(u_lod) - _normal_logcdf(u_lod),
                    observed=data_vars["detectable_obs"])
        # 3. ranges: time in range at day 365, HbA1c at baseline and day 120, insulin dose at baseline
        tir_a = pm.Normal("tir_logit_at_1000", g.tir_logit_mean, g.tir_logit_sd)
        tir_b = pm.Normal("tir_slope", g.tir_slope_mean, g.tir_slope_sd)
        tir_s = pm.Gamma("tir_residual_sd", alpha=2.0, beta=2.0 / g.tir_residual_mean)
        h_mu = pm.Normal("hba1c_baseline_log_median", math.log(g.hba1c_baseline_median), g.hba1c_baseline_log_sd)
        h0_s = pm.HalfNormal("hba1c_baseline_log_sd", g.hba1c_baseline_spread_scale)
        h_d = pm.Normal("hba1c_day120_log_change", g.hba1c_change_mean, g.hba1c_change_sd)
        h_b = pm.Normal("hba1c_slope", g.hba1c_slope_mean, g.hba1c_slope_sd)
        h_s = pm.Gamma("hba1c_residual_sd", alpha=2.0, beta=2.0 / g.hba1c_residual_mean)
        need = pm.LogNormal("need_median_pmol_l", math.log(g.need_median_pmol_l), g.need_log_sd)
        s_need = pm.HalfNormal("sd_log_need", g.need_spread_scale)
        dose_mu = pm.Normal("insulin_dose_log_median", math.log(g.insulin_dose_median), g.insulin_dose_log_sd)

        def range_term(name, mean, sd, transform):
            has_mean = getattr(data, RANGE_FIELDS[name]).mean is not None

            def logp(value, mean, sd, rounding_var):
                return range_logp(value, mean, sd, n, transform, rounding_var, has_mean)

            pm.CustomDist(name, mean, sd, data_vars.get(f"{name}_rounding_var", pt.as_tensor(0.0)), logp=logp,
                          observed=data_vars[f"{name}_obs"], signature="(),(),()->(3)")

        range_term("tir", tir_a + tir_b * (m365 - LOG_REFERENCE), pt.sqrt(tir_b**2 * v365 + tir_s**2), "logit100")
        range_term("hba1c_baseline", h_mu, h0_s, "log")
        range_term("hba1c_day120", h_mu + h_d + h_b * (m120 - LOG_REFERENCE), pt.sqrt(h_b**2 * v120 + h_s**2), "log")
        range_term("insulin_dose_baseline", dose_mu, s_need, "log")
        # 4. insulin outcomes under the need threshold: log phi_i ~ Normal(m365 - log N, sqrt(v365 + s_N^2))
        share_mean = m365 - pt.log(need)
        share_sd = pt.sqrt(v365 + s_need**2)

        # the strategy is a data flag: both strategies share one compiled model (compiled_models)
        hypothetical = pm.Data("hypothetical_strategy", float(strategy is IntercurrentStrategy.HYPOTHETICAL))

        def insulin(value, mean, sd, hypothetical):
            return insulin_logp(value, mean, sd, hypothetical)

        pm.CustomDist("insulin", share_mean, share_sd, hypothetical, logp=insulin, observed=data_vars["insulin_obs"],
                      signature="(),(),()->(3)", dims=("participant", "insulin_outcome"))
        pm.Deterministic("p_insulin_independent_population", pt.exp(_normal_logsf(-share_mean / share_sd)))
    return model


# ------------------------------------------------------------------------------------------------ contraction
CONTRACTION_RULE = ("posterior sd / prior sd (log scale for positive parameters): < 0.5 informed by the data, "
                    "0.5-0.9 partly informed, >= 0.9 prior only")


def contraction(prior_draws: dict[str, np.ndarray], idata, names=None) -> pd.DataFrame:
    """Posterior sd / prior sd per parameter, on the log scale for positive ones, with the verdict of
    :data:`CONTRACTION_RULE`. ``prior_draws`` maps names to prior draws (e.g. from :func:`prior_draws`)."""
    post = idata["posterior"]
    names = [n for n in (names or prior_draws) if n in post and n in prior_draws]
    rows = []
    for name in names:
        pr = np.asarray(prior_draws[name], dtype=float).ravel()
        po = np.asarray(post[name].values, dtype=float).ravel()
        positive = name in POSITIVE_PARAMETERS or (pr.min() > 0 and po.min() > 0 and name.endswith(("_sd", "_pmol_l")))
        if positive:
            pr, po = np.log(pr), np.log(po)
        ratio = float(po.std() / pr.std())
        rows.append({"parameter": name, "scale": "log" if positive else "natural", "prior_sd": float(pr.std()),
                     "posterior_sd": float(po.std()), "ratio": ratio,
                     "verdict": "informed by the data" if ratio < 0.5 else "partly informed" if ratio < 0.9
                     else "prior only"})
    return pd.DataFrame(rows)


def prior_draws(priors: cpm.TrajectoryPriors, graft_priors: GraftFunctionPriors, n: int,
                rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``n`` draws of every parameter of the joint model from its prior."""
    draws = [draw_prior(priors, graft_priors, rng) for _ in range(n)]
    return {name: np.array([d[name] for d in draws]) for name in GRAFT_FUNCTION_PARAMETERS}
