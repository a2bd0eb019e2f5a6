"""C-peptide trajectory and graft-function analysis.

Fits the hierarchical trajectory model of :mod:`isletbayes.models.cpeptide_trajectory`, jointly with the insulin-independence
link of :mod:`isletbayes.models.graft_link`, either to the published cohort means (the default: 424/1036/1104/1274
pmol/L at days 90/180/270/365, 10 of 12 insulin independent at day 365) or to participant-level data in the long
format (``--data FILE``). It reports

* the population trajectory (median participant, population mean, a new participant's predictive band);
* the plateau, time to half plateau, between-participant spread, measurement sd and the link;
* a posterior predictive check against the observed (published or per-visit) means;
* a prior-vs-posterior contraction table: posterior sd / prior sd per parameter (log scale for positive ones).
  Rule: ratio < 0.5 "informed by the data", 0.5-0.9 "partly informed", >= 0.9 "prior only";
* prior sensitivity: ArviZ power-scaling (Kallioinen et al. 2024, Stat. Comput. 34:57) and refits under
  alternative priors on the link slope and on the between-participant spread, side by side;
* a model check (``CpeptideResult.model_check``, :func:`model_check`): the PPC, the early-rise ratio (first
  visit's mean over the second's) against its predictive distribution, the measurement sd against its prior,
  and, with the sensitivity fits, the exponential rise and the free rise shape side by side, in one statement;
* a leave-one-visit-out check (:func:`holdout_check`): the last published mean predicted from the posterior without
  it, the main fit reweighted by Pareto-smoothed importance sampling (Vehtari, Simpson, Gelman, Yao & Gabry 2024,
  JMLR 25(72)), or an exact refit where the weights' Pareto k-hat says they are unreliable.

Default rise shape: free (h ~ LogNormal(0, 0.5)), not the exponential (h = 1). The evidence, from fits to the
published means at the default settings (seeds 1-4, all passing their diagnostics):

* h = 1 cannot produce the observed lag. Its expected day-90 mean is at least half the day-180 mean, while the
  published ratio is 0.41. The fit bridges the gap only with a measurement sd of 0.50 (90% CrI 0.28 to 0.89),
  a visit-to-visit coefficient of variation near 50%. Repeated MMTTs in one person vary by about 18% in
  C-peptide (Nutr. Metab. 2021, doi:10.1186/s12986-021-00556-1). The early-rise ratio's predictive
  P(replicate <= observed) is 0.08.
* With h free: h = 1.47 (0.77 to 2.70), P(h > 1) = 0.83, measurement sd 0.41 (0.18 to 0.84), early-rise
  P = 0.18. The plateau estimate moves from about 1420 to 1220 pmol/L and the time to half plateau from about
  180 to 130 days: the concave curve must still be rising at day 365 to reach the day-90 point.
* Both pass the per-visit PPC. With four means and a measurement sd learned from the same means, the PPC has
  little power, so that pass is no evidence for h = 1.

The free shape nests the exponential and loses nothing if h = 1 is true; its cost is one weakly informed
parameter (see the contraction table and the side-by-side fits). ``--exponential-rise`` fits h = 1.

Every fit of the joint model takes its own ``cpeptide.graft_function_draws`` draws per chain (2000 by default;
:meth:`ModelSpec.sampler_settings`): its slowest parameter, the plateau spread, has about 800 effective draws in
4 x 1000, where R-hat, itself an estimate, crosses 1.01 by chance in a few fits in a hundred (the kept calibration,
``analyses/calibration.py``). Every fit of the means-only model takes ``cpeptide.means_draws`` (2000): its
plateau and half-time trade off along a ridge, with 640 to 1,220 effective draws in 4 x 1000, where 5 of its 40
fits in the default job at 20 seeds crossed R-hat 1.01 (``analyses/seed_robustness.py``). Every fit is checked
with :func:`~isletbayes.models.sampling.check_diagnostics`; failures are kept in the result
(:meth:`CpeptideResult.fit_checks`). Entry point: :func:`run_cpeptide` (the ``cpeptide`` configuration block in,
:class:`CpeptideResult` out). The model it fits and its refits are :func:`model_spec` and :func:`sensitivity_specs`,
which the seed-robustness check (``analyses/seed_robustness.py``) fits too; :func:`compile_ahead` starts compiling
them in another process, for a caller (the main job) with other work to do first.
"""

from __future__ import annotations

import logging
import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
from scipy import stats

from isletbayes.analyses.config import CpeptideConfig, SamplerConfig
from isletbayes.analyses.cpeptide_result import (KEPT_CALIBRATION_PATH, CpeptideResult, HoldoutCheck, ModelCheck,
                                                 SensitivityFit)
from isletbayes.analyses.inputs import AnalysisInputs
from isletbayes.analyses.provenance import provenance
from isletbayes.analyses.results import FitCheck
from isletbayes.data.errors import InputError
from isletbayes.models import cpeptide_trajectory as cpm
from isletbayes.models.graft_link import ALTERNATIVE_LINK_PRIORS, LinkPriors, link_logit
from isletbayes.models.sampling import SamplerSettings, check_diagnostics, fit

SPREAD_SCALES = (0.3, 0.5, 1.0)
POSITIVE = {"plateau_pmol_l", "t_half_days", "sd_log_plateau", "sd_log_rate", "measurement_sd", "rise_shape",
            "decline_rate_per_year", "curve_misfit_sd", "need_median_pmol_l", "sd_log_need",
            "graft_function_365_log_sd"}
#: Derived quantities of the joint model reported beside its parameters: the total between-participant spread of
#: log C(365) (what the aggregates inform, whatever its split into plateau and rate) and the population share
#: insulin independent at day 365
DERIVED = ("graft_function_365_log_sd", "p_insulin_independent_population")
LABELS = {
    "curve_misfit_sd": "curve misfit of the published means (sd, log scale)",
    "graft_function_365_log_sd": "between-participant sd of log C(365) (plateau and rate together)",
    "p_insulin_independent_population": "share of participants insulin independent at day 365",
    "need_median_pmol_l": "insulin need threshold, median participant (pmol/L, day 365)",
    "sd_log_need": "between-participant sd of log need threshold",
    "plateau_pmol_l": "plateau, median participant (pmol/L)",
    "t_half_days": "time to half plateau, median participant (days)",
    "sd_log_plateau": "between-participant sd of log plateau",
    "sd_log_rate": "between-participant sd of log rate",
    "measurement_sd": "measurement sd (log scale)",
    "alpha": "link intercept: log-odds of II at 1000 pmol/L",
    "beta": "link slope: log-odds per e-fold of C-peptide",
    "rise_shape": "rise shape h (1 = exponential)",
    "decline_rate_per_year": "late decline rate (per year)",
}
LINK_GRID_PMOL_L = np.geomspace(50.0, 5000.0, 200)


# ------------------------------------------------------------------------------------------------ models
@dataclass(frozen=True)
class ModelSpec:
    """What to build: the data (published aggregates, cohort means, or participant-level), priors and options."""

    data: Any  # GraftFunctionData | CohortMeans | ParticipantData
    priors: cpm.TrajectoryPriors = cpm.TrajectoryPriors()
    link_priors: LinkPriors | None = LinkPriors()
    graft_priors: Any = None  # GraftFunctionPriors (joint model only)
    strategy: str = "hypothetical"  # glucocorticoid exposure (joint model only)
    late_decline: bool = False
    rise_shape: bool = False
    graft_function_draws: int | None = None  # draws per chain of the joint model's fits (None: the sampler's)
    means_draws: int | None = None  # draws per chain of the means-only model's fits (None: the sampler's)

    @property
    def mode(self) -> str:
        from isletbayes.models.graft_function import GraftFunctionData

        if isinstance(self.data, GraftFunctionData):
            return "graft_function"
        return "cohort_means" if isinstance(self.data, cpm.CohortMeans) else "participant"

    @property
    def means(self) -> cpm.CohortMeans | None:
        """The cohort means the model's PPC replicates (None for participant-level data)."""
        return self.data.means if self.mode == "graft_function" else self.data if self.mode == "cohort_means" else None

    def sampler_settings(self, settings: SamplerSettings) -> SamplerSettings:
        """The settings this model is fitted with: ``settings``, with the joint and means-only models' own draws
        per chain."""
        draws = {"graft_function": self.graft_function_draws, "cohort_means": self.means_draws}.get(self.mode)
        return settings if draws is None else replace(settings, draws=int(draws))

    def build(self) -> pm.Model:
        if self.mode == "graft_function":
            from isletbayes.models.graft_function import build_graft_function_model

            return build_graft_function_model(self.data, self.priors, self.graft_priors, strategy=self.strategy)
        builder = cpm.build_means_model if self.mode == "cohort_means" else cpm.build_participant_model
        return builder(self.data, self.priors, self.link_priors, late_decline=self.late_decline,
                       rise_shape=self.rise_shape)

    def parameter_names(self, model: pm.Model) -> list[str]:
        names = list(cpm.POPULATION_PARAMETERS)
        names += [n for n in ("curve_misfit_sd", "rise_shape", "decline_rate_per_year", "alpha", "beta",
                              *cpm.NEED_PARAMETERS, *DERIVED) if n in model.named_vars]
        return names

    def all_parameters(self, model: pm.Model) -> list[str]:
        """Every free parameter the contraction table reports (the joint model's outcome parameters too)."""
        if self.mode == "graft_function":
            from isletbayes.models.graft_function import GRAFT_FUNCTION_PARAMETERS

            return [n for n in (*GRAFT_FUNCTION_PARAMETERS, *DERIVED) if n in model.named_vars]
        return self.parameter_names(model)


def fit_checked(spec: ModelSpec, settings: SamplerSettings, model: pm.Model | None = None):
    """Build (unless ``model``, built from ``spec``, is given), fit and check one model (at
    ``spec.sampler_settings(settings)``); returns (model, idata, diagnostics)."""
    model = spec.build() if model is None else model
    idata = fit(model, spec.sampler_settings(settings))
    diagnostics = check_diagnostics(idata)
    return model, idata, diagnostics


# ------------------------------------------------------------------------------------------ summaries
def _flat(idata, name) -> np.ndarray:
    return np.asarray(idata["posterior"][name].values, dtype=float).reshape(-1, *idata["posterior"][name].shape[2:])


def summarise_parameters(idata, names) -> pd.DataFrame:
    """Posterior mean, sd, median and 90% interval of each named parameter (index: name)."""
    rows = []
    for name in names:
        x = _flat(idata, name)
        q05, q50, q95 = np.quantile(x, [0.05, 0.5, 0.95])
        rows.append({"name": name, "label": LABELS.get(name, name), "mean": float(x.mean()), "sd": float(x.std()),
                     "median": float(q50), "q05": float(q05), "q95": float(q95)})
    return pd.DataFrame(rows).set_index("name")


def contraction_table(model: pm.Model, idata, names, seed: int, n_prior: int = 4000) -> pd.DataFrame:
    """Posterior sd / prior sd per parameter (on the log scale for positive ones), with the stated rule. Uses the
    fit's ``prior`` group when it has one, else ``n_prior`` prior draws."""
    if "prior" in idata.children and all(name in idata["prior"] for name in names):
        prior = idata
    else:
        with _quiet_forward_sampling():
            prior = pm.sample_prior_predictive(draws=n_prior, model=model, random_seed=seed, var_names=list(names))
    rows = []
    for name in names:
        pr = np.asarray(prior["prior"][name].values, dtype=float).ravel()
        po = _flat(idata, name).ravel()
        scale = "log"
        if name in POSITIVE:
            pr, po = np.log(pr), np.log(po)
        else:
            scale = "natural"
        ratio = float(po.std() / pr.std())
        verdict = ("informed by the data" if ratio < 0.5 else "partly informed" if ratio < 0.9 else "prior only")
        rows.append({"name": name, "scale": scale, "prior_sd": float(pr.std()), "posterior_sd": float(po.std()),
                     "ratio": ratio, "verdict": verdict})
    return pd.DataFrame(rows).set_index("name")


def _draw_subset(idata, n: int, rng: np.random.Generator) -> np.ndarray:
    post = idata["posterior"]
    total = post.sizes["chain"] * post.sizes["draw"]
    return rng.choice(total, size=min(n, total), replace=False)


@np.errstate(divide="ignore")  # day 0 is on the grid: log C(0) = -inf, C(0) = 0 exactly
def population_trajectory(idata, days, seed: int, n_draws: int = 1000, n_new: int = 200,
                          decline_start_day: float = 365.0) -> pd.DataFrame:
    """Median-participant curve, population-mean curve (Monte Carlo over new participants) and a new
    participant's 90% predictive band (measurement error included), each as posterior 5/50/95% quantiles."""
    rng = np.random.default_rng(seed)
    days = np.asarray(days, dtype=float)
    pick = _draw_subset(idata, n_draws, rng)

    def col(name, default):
        return _flat(idata, name)[pick] if name in idata["posterior"] else np.full(pick.size, default)

    plateau, t_half = col("plateau_pmol_l", np.nan), col("t_half_days", np.nan)
    sd_a, sd_k, sigma = col("sd_log_plateau", 0), col("sd_log_rate", 0), col("measurement_sd", 0)
    shape, delta = col("rise_shape", 1.0), col("decline_rate_per_year", 0.0)
    rate = cpm.rate_from_t_half(t_half, shape)
    median_curve = np.exp(cpm.log_trajectory(np.log(plateau)[:, None], rate[:, None], days[None, :],
                                             delta[:, None], decline_start_day, shape[:, None]))
    z = rng.standard_normal((pick.size, n_new, 3))
    log_a = np.log(plateau)[:, None] + sd_a[:, None] * z[..., 0]
    k = rate[:, None] * np.exp(sd_k[:, None] * z[..., 1])
    log_c = cpm.log_trajectory(log_a[..., None], k[..., None], days[None, None, :], delta[:, None, None],
                               decline_start_day, shape[:, None, None])
    mean_curve = np.exp(log_c).mean(axis=1)
    new = np.exp(log_c[:, 0, :] + sigma[:, None] * z[:, 0, 2:3])

    columns = {}
    for name, curves in (("median_participant", median_curve), ("population_mean", mean_curve),
                         ("new_participant", new)):
        q = np.quantile(curves, [0.05, 0.5, 0.95], axis=0)
        columns.update({f"{name}_q05": q[0], f"{name}_median": q[1], f"{name}_q95": q[2]})
    return pd.DataFrame(columns, index=pd.Index(days.tolist(), name="day"))


def ppc_cohort_means(idata, means: cpm.CohortMeans, seed: int) -> pd.DataFrame:
    """Replicated published means (the model's joint lognormal law of the n-participant means) vs the observed."""
    return _ppc_rows(*replicate_cohort_means(idata, means, seed))


def replicate_cohort_means(idata, means: cpm.CohortMeans, seed: int, n_draws: int = 2000):
    """(days, observed, replicates draws x visits): one joint replicate of the means per posterior draw."""
    rng = np.random.default_rng(seed)
    pick = _draw_subset(idata, n_draws, rng)
    expected = _flat(idata, "expected_cohort_mean")[pick]
    if "cohort_mean_log_cov" in idata["posterior"]:
        cov = _flat(idata, "cohort_mean_log_cov")[pick]
    else:  # a result saved before the joint covariance was stored: visits replicated independently
        cov = np.stack([np.diag(v) for v in _flat(idata, "cohort_mean_log_sd")[pick] ** 2])
    var = np.diagonal(cov, axis1=1, axis2=2)
    # the model's centring: E log Ybar = log m - S_tt / 2 with S the sampling part only (the curve misfit is
    # median-zero on the log scale; models.cpeptide_trajectory.cohort_means_likelihood)
    misfit_var = _flat(idata, "curve_misfit_sd")[pick] ** 2 if "curve_misfit_sd" in idata["posterior"] else 0.0
    sampling_var = var - np.asarray(misfit_var)[..., None] if np.ndim(misfit_var) else var
    z = rng.standard_normal(expected.shape)
    log_rep = np.log(expected) - sampling_var / 2 + np.einsum("dij,dj->di", np.linalg.cholesky(cov), z)
    return means.days, means.means, np.exp(log_rep)


def ppc_participant_means(idata, data: cpm.ParticipantData, seed: int) -> pd.DataFrame:
    """Replicated per-visit means of the measured values (censored at the LLOD as in the data) vs observed."""
    return _ppc_rows(*replicate_participant_means(idata, data, seed))


def replicate_participant_means(idata, data: cpm.ParticipantData, seed: int, n_draws: int = 1000):
    """(visit days, observed per-visit means, replicates draws x visit days) from the participants' posteriors."""
    rng = np.random.default_rng(seed)
    plateau = _flat(idata, "plateau_participant")
    t_half = _flat(idata, "t_half_participant")
    sigma = _flat(idata, "measurement_sd")
    shape = _flat(idata, "rise_shape") if "rise_shape" in idata["posterior"] else np.ones(sigma.shape)
    delta = (_flat(idata, "decline_rate_per_year") if "decline_rate_per_year" in idata["posterior"]
             else np.zeros(sigma.shape))
    pick = _draw_subset(idata, n_draws, rng)
    p = data.obs_participant
    rate = cpm.rate_from_t_half(t_half[pick][:, p], shape[pick][:, None])
    log_c = cpm.log_trajectory(np.log(plateau[pick][:, p]), rate, data.obs_day[None, :], delta[pick][:, None],
                               365.0, shape[pick][:, None])
    y = np.exp(log_c + sigma[pick][:, None] * rng.standard_normal(log_c.shape))
    y = np.where(y <= data.obs_lod[None, :], data.obs_lod[None, :], y)
    days = np.unique(data.obs_day)
    observed = np.array([data.obs_value[data.obs_day == d].mean() for d in days])
    rep = np.stack([y[:, data.obs_day == d].mean(axis=1) for d in days], axis=1)
    return days, observed, rep


def _ppc_rows(days, observed, rep) -> pd.DataFrame:
    """Observed mean per visit against its posterior predictive replicates (index: day)."""
    rows = []
    for j, day in enumerate(days):
        r = rep[:, j]
        q05, q50, q95 = np.quantile(r, [0.05, 0.5, 0.95])
        p_below = float(np.mean(r <= observed[j]))
        rows.append({"day": float(day), "observed": float(observed[j]), "predicted_median": float(q50),
                     "predicted_q05": float(q05), "predicted_q95": float(q95),
                     "p_rep_below_observed": p_below, "outside_90": bool(p_below < 0.05 or p_below > 0.95)})
    return pd.DataFrame(rows).set_index("day")


def _interval(x) -> dict:
    q05, q50, q95 = np.quantile(np.asarray(x, dtype=float).ravel(), [0.05, 0.5, 0.95])
    return {"median": float(q50), "q05": float(q05), "q95": float(q95)}


def early_rise_check(days, observed, rep) -> dict | None:
    """The early-rise statistic: the first visit's mean over the second's, observed against its replicates.

    It is the check that separates the rise shapes: a participant's exponential rise is concave through the
    origin, so C(t1) >= (t1 / t2) C(t2) for t1 < t2, and the same bound holds for the expected cohort mean. A
    participant effect common to both visits cancels in the ratio, so only visit-specific noise can move it.
    """
    if len(days) < 2:
        return None
    ratio = rep[:, 0] / rep[:, 1]
    observed_ratio = float(observed[0] / observed[1])
    p_below = float(np.mean(ratio <= observed_ratio))
    return {"statistic": f"mean at day {days[0]:g} / mean at day {days[1]:g}", "observed": observed_ratio,
            **{f"predicted_{k}": v for k, v in _interval(ratio).items()}, "p_rep_below_observed": p_below,
            "outside_90": bool(p_below < 0.05 or p_below > 0.95),
            "exponential_bound": float(days[0] / days[1])}


def _replicates(spec: ModelSpec, idata, seed: int):
    if spec.means is not None:
        return replicate_cohort_means(idata, spec.means, seed)
    return replicate_participant_means(idata, spec.data, seed)


def without_last_visit(spec: ModelSpec) -> ModelSpec:
    """The same model with the last published visit's mean removed (every other aggregate kept)."""
    means = spec.means
    kept = replace(means, days=means.days[:-1], means=means.means[:-1],
                   spread_sd=None if means.spread_sd is None else means.spread_sd[:-1])
    data = replace(spec.data, means=kept) if spec.mode == "graft_function" else kept
    return replace(spec, data=data)


@np.errstate(divide="ignore")
def predict_cohort_mean(idata, day: float, n_participants: int, seed: int, n_draws: int = 4000,
                        draw_weights: np.ndarray | None = None) -> np.ndarray:
    """Replicates of the published mean of ``n_participants`` at ``day`` from a posterior: per draw, new
    participants' measured values (plateau and rate effects, measurement noise) averaged, times the curve misfit
    exp(delta), delta ~ Normal(0, curve_misfit_sd), which belongs to a published mean. ``draw_weights`` (one per
    draw, chains flattened): importance weights of another posterior, from which the draws are resampled."""
    rng = np.random.default_rng(seed)
    if draw_weights is None:
        pick = _draw_subset(idata, n_draws, rng)
    else:
        weights = np.asarray(draw_weights, dtype=float).ravel()
        pick = rng.choice(weights.size, size=n_draws, replace=True, p=weights / weights.sum())

    def col(name, default):
        return _flat(idata, name)[pick] if name in idata["posterior"] else np.full(pick.size, default)

    plateau, t_half = col("plateau_pmol_l", np.nan), col("t_half_days", np.nan)
    sd_a, sd_k, sigma = col("sd_log_plateau", 0.0), col("sd_log_rate", 0.0), col("measurement_sd", 0.0)
    shape, tau = col("rise_shape", 1.0), col("curve_misfit_sd", 0.0)
    z = rng.standard_normal((pick.size, n_participants, 3))
    log_a = np.log(plateau)[:, None] + sd_a[:, None] * z[..., 0]
    k = cpm.rate_from_t_half(t_half, shape)[:, None] * np.exp(sd_k[:, None] * z[..., 1])
    log_c = cpm.log_trajectory(log_a, k, float(day), 0.0, 365.0, shape[:, None])
    mean = np.exp(log_c + sigma[:, None] * z[..., 2]).mean(axis=1)
    return mean * np.exp(tau * rng.standard_normal(pick.size))


def holdout_log_weights(spec: ModelSpec, idata) -> tuple[np.ndarray, float]:
    """Pareto-smoothed importance log weights (chain, draw) that turn a fit of ``spec`` into the fit without the
    last published mean, and their Pareto k-hat.

    The means' joint law factorises as p(y_E | theta) p(y_T | y_E, theta), and the model without the last visit
    keeps the first factor exactly (the same law on the earlier visits; every other aggregate unchanged), so the
    raw weights are 1 / p(y_T | y_E, theta) (:func:`~isletbayes.models.cpeptide_trajectory.
    last_mean_conditional_logpdf`); PSIS smooths their largest values (Vehtari et al. 2024, JMLR 25(72), with the
    relative efficiency of the likelihood draws as in the loo package). A last visit with a published spread
    carries one more factor, which the posterior does not store: :func:`holdout_check` refits then."""
    import xarray as xr

    post = idata["posterior"]
    tau2 = post["curve_misfit_sd"].values[..., None] ** 2 if "curve_misfit_sd" in post else 0.0
    location = cpm.cohort_mean_log_location(np.log(post["expected_cohort_mean"].values),
                                            post["cohort_mean_log_sd"].values ** 2 - tau2)
    loglik = cpm.last_mean_conditional_logpdf(location, post["cohort_mean_log_cov"].values, spec.means.means)
    dims = ("chain", "draw")
    likelihood = xr.DataArray(np.exp(loglik - loglik.max()), dims=dims)
    r_eff = float(likelihood.azstats.ess(method="mean")) / loglik.size
    # arviz_stats' psislw takes the log-likelihood of what is left out (its raw log weights are minus that)
    log_weights, pareto_k = xr.DataArray(loglik, dims=dims).azstats.psislw(dim=list(dims), r_eff=r_eff)
    return np.asarray(log_weights.values), float(pareto_k)


def _last_visit_has_spread(spec: ModelSpec) -> bool:
    spread = spec.means.spread_sd
    return spread is not None and bool(np.isfinite(spread[-1]))


def holdout_check(spec: ModelSpec, settings: SamplerSettings, seed: int, main_idata=None) -> HoldoutCheck:
    """Leave-one-visit-out check of the last visit: predict the last published mean from the posterior without it
    (the earlier visits and every other aggregate; issue 10).

    That posterior is ``main_idata`` (the fit of ``spec``) reweighted by :func:`holdout_log_weights` when their
    Pareto k-hat is at most :func:`~isletbayes.models.diagnostic_thresholds.psis_k_max`; otherwise, or without
    ``main_idata``, an exact refit of :func:`without_last_visit`, whose diagnostics the result carries."""
    from isletbayes.models.diagnostic_thresholds import psis_k_max

    day, observed = float(spec.means.days[-1]), float(spec.means.means[-1])
    pareto_k = weights = None
    if main_idata is not None and not _last_visit_has_spread(spec):
        log_weights, pareto_k = holdout_log_weights(spec, main_idata)
        k_max = psis_k_max(log_weights.size)
        if pareto_k <= k_max:
            weights = np.exp(log_weights)
    if weights is None:
        _, idata, diag = fit_checked(without_last_visit(spec), settings)
        diagnostics = FitCheck.of(f"holdout check: without day {day:g}", diag)
        how = ("an exact refit" + (f" (the importance weights of the main fit were unreliable: Pareto k-hat "
                                   f"{pareto_k:.2f})" if pareto_k is not None else ""))
    else:
        idata, diagnostics = main_idata, None
        how = (f"the main fit reweighted by Pareto-smoothed importance sampling (Pareto k-hat {pareto_k:.2f}; an "
               f"exact refit runs above {k_max:.2f})")
    rep = predict_cohort_mean(idata, day, spec.means.n_participants, seed, draw_weights=weights)
    q05, q50, q95 = np.quantile(rep, [0.05, 0.5, 0.95])
    p_below = float(np.mean(rep <= observed))
    outside = bool(p_below < 0.05 or p_below > 0.95)
    others = (" and every other published aggregate (time in range, insulin outcomes and detectable C-peptide at "
              "day 365 among them)" if spec.mode == "graft_function" else "")
    statement = (f"Without the day-{day:g} mean (from the earlier visits{others}), the model predicts a day-{day:g} "
                 f"mean of {q50:.0f} pmol/L (90% predictive interval {q05:.0f} to {q95:.0f}); the published mean "
                 f"is {observed:.0f} (P(replicate <= observed) = {p_below:.2f}), "
                 + ("outside" if outside else "inside") + f" the interval. The fit without it is {how}.")
    return HoldoutCheck(held_out_day=day, observed=observed, predicted_median=float(q50), predicted_q05=float(q05),
                        predicted_q95=float(q95), p_rep_below_observed=p_below, outside_90=outside,
                        method="refit" if weights is None else "psis", pareto_k=pareto_k, diagnostics=diagnostics,
                        statement=statement)


#: Observed variables with a random generator, per model (the joint model's range and insulin likelihoods are
#: order-statistic and threshold laws without one: they have log-likelihoods but no posterior predictive draws)
PREDICTIVE_VARIABLES = {"graft_function": ("cohort_mean", "detectable")}


def add_arviz_groups(spec: ModelSpec, model: pm.Model, idata, settings: SamplerSettings, names) -> None:
    """Store the ArviZ groups a user needs for az.loo, PPC and prior-vs-posterior plots (in place): the prior of
    the parameters, pointwise log-likelihood, observed data, and posterior predictive draws of every observed
    variable that has a random generator."""
    from isletbayes.models.sampling import add_groups, group_seed

    add_groups(idata, model, ("observed_data", "log_likelihood"), settings)
    predictive = PREDICTIVE_VARIABLES.get(spec.mode)
    if predictive is None:
        predictive = [rv.name for rv in model.observed_RVs]
    with _quiet_forward_sampling():
        prior = pm.sample_prior_predictive(draws=settings.draws * settings.chains, model=model,
                                           var_names=list(names), random_seed=group_seed(settings.seed, "prior"))
        idata["prior"] = prior["prior"]
        pm.sample_posterior_predictive(idata, model=model, var_names=list(predictive), extend_inferencedata=True,
                                       progressbar=False,
                                       random_seed=group_seed(settings.seed, "posterior_predictive"))


@contextmanager
def _quiet_forward_sampling():
    """PyMC's "Sampling: [...]" log lines and the compiler's note that a custom distribution's random generator
    runs in Python are not for the user of an analysis."""
    forward = logging.getLogger("pymc.sampling.forward")
    level = forward.level
    forward.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*will use object mode.*", category=UserWarning)
            yield
    finally:
        forward.setLevel(level)


def _fit_check(label: str, spec: ModelSpec, idata, ppc: pd.DataFrame, seed: int) -> dict:
    """What the model check reports about one fit."""
    early = early_rise_check(*_replicates(spec, idata, seed))
    row = {"label": label, "rise_shape_free": spec.rise_shape,
           "measurement_sd": _interval(_flat(idata, "measurement_sd")),
           "ppc_outside_90": [float(d) for d in ppc.index[ppc["outside_90"]]], "early_rise": early}
    if spec.rise_shape:
        h = _flat(idata, "rise_shape")
        row["rise_shape"] = {**_interval(h), "p_above_1": float(np.mean(h > 1.0))}
    return row


def _sd_text(d: dict) -> str:
    cv = math.sqrt(math.expm1(d["median"] ** 2))
    return (f"{d['median']:.2f} (90% CrI {d['q05']:.2f} to {d['q95']:.2f}; a visit-to-visit coefficient of "
            f"variation of about {100 * cv:.0f}%)")


def model_check(main: dict, comparison: list[dict], priors: cpm.TrajectoryPriors, mode: str) -> dict:
    """The report-facing model check: the PPC, the early-rise statistic, the measurement sd against its prior and,
    when it was run, the two rise shapes side by side, with a plain statement of what they show."""
    dist = priors.measurement_sd_distribution()
    prior_sd = {"median": float(dist.median()), "q95": float(dist.ppf(0.95))}
    early = main["early_rise"]
    words = "exponential rise (h = 1)" if not main["rise_shape_free"] else "free rise shape h (Weibull-type)"
    parts = [f"Model check of the fitted model ({words})."]
    misfit = bool(main["ppc_outside_90"])
    if main["ppc_outside_90"]:
        parts.append("The observed mean lies outside its 90% predictive interval at day(s) "
                     + ", ".join(f"{d:g}" for d in main["ppc_outside_90"]) + ".")
    else:
        parts.append("Every observed mean lies inside its 90% predictive interval.")
    if early is not None:
        below_bound = early["observed"] < early["exponential_bound"]
        parts.append(f"Early rise: {early['statistic']} is {early['observed']:.2f} observed, "
                     f"{early['predicted_median']:.2f} predicted (90% {early['predicted_q05']:.2f} to "
                     f"{early['predicted_q95']:.2f}; P(replicate <= observed) = {early['p_rep_below_observed']:.2f}).")
        if below_bound and not main["rise_shape_free"]:
            misfit = True
            parts.append(f"An exponential rise is concave, so its expected ratio is at least "
                         f"{early['exponential_bound']:.2f}: this model cannot produce the observed lag, and only "
                         f"visit-to-visit noise can bridge the gap.")
        misfit = misfit or early["outside_90"]
    parts.append(f"Measurement sd (log scale, assay and visit-to-visit): {_sd_text(main['measurement_sd'])}, against "
                 f"an informative prior with median {prior_sd['median']:.2f} (MMTT repeatability). How far the means "
                 "scatter around the curve is a separate curve-misfit term, which new participants do not inherit.")
    if main.get("rise_shape"):
        h = main["rise_shape"]
        parts.append(f"Rise shape h = {h['median']:.2f} (90% CrI {h['q05']:.2f} to {h['q95']:.2f}); "
                     f"P(h > 1, a lag before the rise) = {h['p_above_1']:.2f}.")
    if comparison:
        cells = []
        for row in comparison:
            e = row["early_rise"]
            cells.append(f"{row['label']}: measurement sd {row['measurement_sd']['median']:.2f} "
                         f"({row['measurement_sd']['q05']:.2f} to {row['measurement_sd']['q95']:.2f})"
                         + (f", early-rise P = {e['p_rep_below_observed']:.2f}" if e else "")
                         + (f", h = {row['rise_shape']['median']:.2f}" if row.get("rise_shape") else ""))
        parts.append("Side by side: " + "; ".join(cells) + ".")
    if mode == "cohort_means":
        parts.append("With four means the check has little power: passing it does not show the curve is right.")
    return {"fit": words, "misfit_flagged": misfit, "ppc_outside_90": main["ppc_outside_90"],
            "early_rise": early, "measurement_sd": main["measurement_sd"],
            "measurement_sd_prior": {"family": f"LogNormal(log {priors.measurement_sd_median:g}, "
                                               f"{priors.measurement_sd_log_sd:g})", **prior_sd},
            "rise_shape": main.get("rise_shape"), "shape_comparison": comparison, "statement": " ".join(parts)}


def power_scaling(model: pm.Model, idata, names) -> pd.DataFrame:
    """ArviZ power-scaling sensitivity (prior and likelihood) of the named parameters. The pointwise log-likelihood
    and log prior are computed where ``idata`` lacks them (the main fit already has the log-likelihood:
    :func:`add_arviz_groups`)."""
    import arviz as az
    from pymc.stats import compute_log_likelihood, compute_log_prior

    psense_log = logging.getLogger("arviz_stats.psense")  # its generic warning; the diagnosis column says it
    level = psense_log.level
    psense_log.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if "log_likelihood" not in idata.children:
            compute_log_likelihood(idata, model=model, progressbar=False)
        if "log_prior" not in idata.children:
            compute_log_prior(idata, model=model, progressbar=False)
        table = az.psense_summary(idata, var_names=list(names))
    psense_log.setLevel(level)
    rows = [{"name": str(name), "prior": float(row["prior"]), "likelihood": float(row["likelihood"]),
             "diagnosis": "ok" if row["diagnosis"] == "\u2713" else str(row["diagnosis"])}
            for name, row in table.iterrows()]
    return pd.DataFrame(rows).set_index("name")


def model_spec(config: CpeptideConfig, data) -> ModelSpec:
    """The model ``config`` asks for on ``data`` (published aggregates, cohort means or participant-level data)."""
    from isletbayes.models.graft_function import GraftFunctionPriors

    return ModelSpec(data=data, priors=cpm.TrajectoryPriors(**config.priors.model_dump()),
                     link_priors=LinkPriors(**config.link_priors.model_dump()) if config.link else None,
                     graft_priors=GraftFunctionPriors(**config.graft_priors.model_dump()),
                     strategy=config.glucocorticoid, late_decline=config.late_decline, rise_shape=config.rise_shape,
                     graft_function_draws=config.graft_function_draws, means_draws=config.means_draws)


def sensitivity_specs(spec: ModelSpec, has_link: bool) -> list[tuple[str, str, ModelSpec]]:
    """The sensitivity refits of ``spec`` that ``cpeptide.sensitivity`` runs, as (group, label, model), in the
    order the report lists them: the other glucocorticoid strategy (joint model), the alternative link priors
    (``has_link``: the fitted model has the logit link), the spread priors of :data:`SPREAD_SCALES`, and both rise
    shapes (for the joint model, of the means-only model). A refit whose model is ``spec`` reuses the main fit."""
    out = []
    if spec.mode == "graft_function":
        other = "treatment_policy" if spec.strategy == "hypothetical" else "hypothetical"
        out.append(("glucocorticoid", f"{other.replace('_', ' ')} strategy", replace(spec, strategy=other)))
    if has_link:
        for label, lp in ALTERNATIVE_LINK_PRIORS.items():
            lp = replace(spec.link_priors, beta_mean=lp.beta_mean, beta_sd=lp.beta_sd)
            out.append(("link", label, replace(spec, link_priors=lp)))
    for scale in SPREAD_SCALES:
        out.append(("spread", f"spread sds ~ HalfNormal({scale:g})",
                    replace(spec, priors=spec.priors.with_spread_scale(scale))))
    shape_base = replace(spec, data=spec.means) if spec.mode == "graft_function" else spec
    for shape_free in (False, True):
        label = "free rise shape h (Weibull-type)" if shape_free else "exponential rise (h = 1)"
        if spec.mode == "graft_function":
            label += ", means-only model"
        out.append(("shape", label, replace(shape_base, rise_shape=shape_free)))
    return out


def compile_refits_in_background(spec: ModelSpec, model: pm.Model, settings: SamplerSettings) -> list[str]:
    """Start compiling the sensitivity refits' models in another process, so that on two cores their compiles
    overlap the main fit (``compiled_models.CompiledModelCache.compile_in_background``); returns the structure keys
    it compiles. ``model``: the main fit's, built from ``spec``; refits that share its compiled model (they differ
    in ``pm.Data`` values) are not sent. Only a speed-up: the draws are the same either way."""
    if settings.nuts_sampler != "nutpie":
        return []
    from isletbayes.models.compiled_models import default_cache

    refits = _refits_to_compile(spec, has_link="alpha" in model.named_vars)
    return default_cache().compile_in_background([s.build for s in refits], skip=[model]) if refits else []


def compile_ahead(config: CpeptideConfig, *, sampler: SamplerConfig, seed: int, inputs: AnalysisInputs) -> list[str]:
    """Start compiling every model :func:`run_cpeptide` will fit with these arguments (the main model first, then
    the sensitivity refits' when ``cpeptide.sensitivity``), in another process, onto the compiled-model cache;
    returns the structure keys it compiles (none for PyMC's own sampler, or when all are compiled already).

    For a caller with other work first: the main job calls it before its exact sections, so the compiles use the
    core those sections leave idle. :func:`run_cpeptide`, in any process, then loads each model from the disk
    cache, or waits for the entry being compiled (``compiled_models``: one compile per model across processes).
    Only a speed-up: the draws are the same either way."""
    settings = sampler.settings(seed, config.target_accept)
    if settings.nuts_sampler != "nutpie":
        return []
    from isletbayes.models.compiled_models import default_cache

    spec = model_spec(config, fit_data(config, inputs)[0])
    models = [spec]
    if config.sensitivity:
        models += _refits_to_compile(spec, has_link="alpha" in spec.build().named_vars)
    return default_cache().compile_in_background([s.build for s in models])


def _refits_to_compile(spec: ModelSpec, has_link: bool) -> list[ModelSpec]:
    """The sensitivity refits of ``spec`` (:func:`sensitivity_specs`) less those whose model is ``spec``'s or an
    earlier refit's (one fit, one compile, serves both)."""
    out: list[ModelSpec] = []
    for _, _, s in sensitivity_specs(spec, has_link=has_link):
        if not same_model(s, spec) and not any(same_model(s, r) for r in out):
            out.append(s)
    return out


def same_model(a: ModelSpec, b: ModelSpec) -> bool:
    """Whether ``a`` and ``b`` are one model with the same priors and options (then one fit serves both)."""
    return (a.mode, a.priors, a.link_priors, a.graft_priors, a.strategy, a.late_decline, a.rise_shape) == (
        b.mode, b.priors, b.link_priors, b.graft_priors, b.strategy, b.late_decline, b.rise_shape)


def _sensitivity_fit(spec: ModelSpec, settings: SamplerSettings, main: tuple):
    """Fit ``spec``, or reuse the main fit when ``spec`` is the main model (same priors and options)."""
    main_spec, model, idata, diag = main
    if same_model(spec, main_spec):
        return model, idata, diag
    return fit_checked(spec, settings)


def _sensitivity_fit_result(group: str, label: str, spec: ModelSpec, settings: SamplerSettings, names,
                            main: tuple) -> "SensitivityFit":
    model, idata, diag = _sensitivity_fit(spec, settings, main)
    return SensitivityFit(group=group, label=label,
                          parameters=summarise_parameters(idata, [n for n in names if n in idata["posterior"]]),
                          diagnostics=FitCheck.of(f"{group} sensitivity: {label}", diag))


# -------------------------------------------------------------------------------------------------- run
def link_curve(idata, grid: np.ndarray = LINK_GRID_PMOL_L) -> pd.DataFrame | None:
    """P(insulin independent at day 365 | a participant's day-365 C-peptide) over ``grid``: the posterior median
    and 95% band, from every posterior draw (no random numbers). The joint model's need threshold gives
    P(N_i <= C) = Phi((log C - log N) / s_N); the other models' logit link alpha + beta (log C - log 1000)."""
    if idata is None:
        return None
    post = idata["posterior"]
    log_grid = np.log(grid)[None, :]
    if all(name in post for name in cpm.NEED_PARAMETERS):
        need, spread = _flat(idata, "need_median_pmol_l").ravel(), _flat(idata, "sd_log_need").ravel()
        prob = stats.norm.cdf((log_grid - np.log(need)[:, None]) / spread[:, None])
    elif "alpha" in post and "beta" in post:
        alpha, beta = _flat(idata, "alpha").ravel(), _flat(idata, "beta").ravel()
        prob = 1.0 / (1.0 + np.exp(-link_logit(alpha[:, None], beta[:, None], log_grid)))
    else:
        return None
    lo, med, hi = np.quantile(prob, [0.025, 0.5, 0.975], axis=0)
    return pd.DataFrame({"q025": lo, "median": med, "q975": hi},
                        index=pd.Index(np.asarray(grid, dtype=float).tolist(), name="cpeptide_pmol_l"))


def model_sentence(spec: ModelSpec) -> str:
    """What was fitted, in words, generated from the fitted specification."""
    shape = spec.rise_shape or spec.mode == "graft_function"
    rise = ("C(t) = A (1 - exp(-(k t)^h)) with a free rise shape h (h = 1 is the saturating exponential)"
            if shape else "C(t) = A (1 - exp(-k t)), the saturating exponential (h = 1)")
    decline = f" times a late decline after day {spec.priors.decline_start_day:g}" if spec.late_decline else ""
    base = (f"Each participant's stimulated C-peptide rises from undetectable to a plateau, {rise}{decline}, with "
            "participant-level random effects on the plateau and the rate, and lognormal assay and visit-to-visit "
            "noise with an informative prior")
    if spec.mode == "graft_function":
        return (base + ". One latent graft function per participant is informed by every published aggregate of "
                "the 12 full-dose participants, each through a stated likelihood: the four cohort means (with a "
                "cohort-by-visit curve misfit that new participants do not inherit), C-peptide detectable in all, "
                "the ranges of time in range at day 365 and of HbA1c at baseline and day 120, the baseline insulin "
                "doses, and insulin independence (10 of 12) with the two dose cuts through an insulin-need "
                f"threshold; the participants are integrated out. Glucocorticoid exposure: {spec.strategy.replace('_', ' ')} "
                "strategy.")
    if spec.mode == "cohort_means":
        link = (" The probability of insulin independence at day 365 depends on a participant's day-365 C-peptide "
                "through a logistic link, fitted jointly." if spec.link_priors is not None else "")
        return (base + "; fitted to the published cohort means (participants integrated out: the means get the "
                "exact moments of a mean of 12 participants' values, plus a curve misfit)." + link)
    link = (" Insulin independence at day 365 follows a logistic link on the participant's day-365 C-peptide."
            if spec.link_priors is not None else "")
    return base + "; fitted to participant-level data (one observation per participant and visit, censored below " \
        "the detection limit)." + link


def _contraction_side_by_side(main: pd.DataFrame, means: pd.DataFrame | None) -> pd.DataFrame:
    """The joint model's contraction beside the means-only model's (same parameters where both have them)."""
    if means is None:
        return main
    other = means[["ratio", "verdict"]].rename(columns={"ratio": "ratio_means_only", "verdict": "verdict_means_only"})
    return main.join(other, how="left")


def fit_data(config: CpeptideConfig, inputs: AnalysisInputs) -> tuple[Any, dict, list[str]]:
    """What :func:`run_cpeptide` fits: the data of its model (the joint model's or the cohort means' on the published
    aggregates, the participants' when ``inputs`` has them, one cohort with ``cpeptide.cohort``), the description
    of those inputs that the result carries, and the notes that go with them."""
    from isletbayes.models.graft_function import graft_function_data_from_tables

    notes = []
    if inputs.participant is None:
        data_inputs = inputs.describe_means()
        if config.model == "graft_function":
            data = graft_function_data_from_tables(inputs.cpeptide_means, inputs.continuous, inputs.counts)
            notes.append("Fitted to every published aggregate of the 12 full-dose participants; participants are "
                         "latent. How much each parameter is informed is in the contraction table"
                         + (", beside the means-only model's (and see the spread sensitivity)."
                            if config.sensitivity else "."))
        else:
            data = inputs.cohort_means()
            notes.append("Fitted to published cohort means only: the latent participants' spread is not observed and "
                         "is carried by its prior" + (" (see the spread sensitivity)." if config.sensitivity else "."))
        notes.append("Assumed: the means are 90-min MMTT-stimulated C-peptide (the source does not say which "
                     "series).")
    else:
        frame = inputs.participant
        if config.cohort is not None:
            if config.cohort not in set(frame["cohort"]):
                raise InputError(f"no cohort {config.cohort!r} in the participant data (found "
                                 f"{sorted(set(frame['cohort']))})", key="cpeptide.cohort")
            frame = frame[frame["cohort"] == config.cohort]
        source = inputs.files["participant_data"]["path"]
        data = cpm.participant_data_from_long(frame, source=source)
        cohorts = sorted(set(frame["cohort"]))
        data_inputs = {"source": source, "sha256": inputs.files["participant_data"]["sha256"], "cohorts": cohorts,
                       "n_participants": data.n_participants, "n_observations": int(data.obs_day.size),
                       "n_censored": int(data.obs_censored.sum()), "n_baseline_excluded": data.n_baseline_excluded,
                       "n_insulin_independence": int(data.ii_value.size)}
        if len(cohorts) > 1:
            notes.append(f"All cohorts ({', '.join(cohorts)}) are pooled into one population; set cpeptide.cohort "
                         "(--cohort) to fit one.")
        if data.ii_value.size == 0:
            notes.append("No day-365 insulin-independence rows: the link is not fitted.")
    return data, data_inputs, notes


def run_cpeptide(config: CpeptideConfig, *, sampler: SamplerConfig, seed: int,
                 inputs: AnalysisInputs) -> CpeptideResult:
    """Fit the C-peptide model and summarise it (see the module docstring).

    On the published aggregates the default model is the joint graft-function model (``cpeptide.model``); with
    participant-level data, the participant-level model. Sensitivity refits (the other glucocorticoid strategy,
    alternative spread priors, the means-only model and both rise shapes) run with ``cpeptide.sensitivity``; their
    models that the main fit's compiled model does not serve compile meanwhile in another process
    (:func:`compile_refits_in_background`)."""
    settings = sampler.settings(seed, config.target_accept)
    data, data_inputs, notes = fit_data(config, inputs)
    spec = model_spec(config, data)
    if not config.late_decline:
        notes.append("No late decline is modelled (off by default): trajectories beyond the last visit are flat; the "
                     "plateau is a model extrapolation, C(365) the quantity the data cover.")
    model = spec.build()
    if config.sensitivity:
        compile_refits_in_background(spec, model, settings)
    model, idata, diag = fit_checked(spec, settings, model)
    main_settings = spec.sampler_settings(settings)  # what the main fit ran with (the joint model's own draws)
    names = spec.parameter_names(model)
    add_arviz_groups(spec, model, idata, main_settings, spec.all_parameters(model))
    last_day = 730.0 if config.late_decline else 365.0
    days = np.linspace(0.0, last_day, int(last_day // 5) + 1)
    ppc = _ppc_rows(*_replicates(spec, idata, seed))
    if ppc["outside_90"].any():
        bad = ", ".join(f"day {d:g}" for d in ppc.index[ppc["outside_90"]])
        notes.append(f"Posterior predictive check: the observed mean lies outside the 90% predictive interval at "
                     f"{bad}.")
    sensitivity: list[SensitivityFit] = []
    shape_rows: list[dict] = []
    means_contraction = None
    if config.sensitivity:
        main = (spec, model, idata, diag)
        for group, label, s in sensitivity_specs(spec, has_link="alpha" in model.named_vars):
            if group != "shape":
                sensitivity.append(_sensitivity_fit_result(group, label, s, settings, names, main))
                continue
            m, i, d = _sensitivity_fit(s, settings, main)
            pp = _ppc_rows(*_replicates(s, i, seed))
            check = _fit_check(label, s, i, pp, seed)
            sensitivity.append(SensitivityFit(group="shape", label=label,
                                              parameters=summarise_parameters(i, s.parameter_names(m)), ppc=pp,
                                              early_rise=check["early_rise"],
                                              diagnostics=FitCheck.of(f"shape check: {label}", d)))
            shape_rows.append(check)
            if spec.mode == "graft_function" and s.rise_shape:
                means_contraction = contraction_table(m, i, s.parameter_names(m), seed)
    main_check = _fit_check("fitted model", spec, idata, ppc, seed)
    run_settings = {"sampler": main_settings.as_dict(), "config": config.model_dump(mode="json"),
                    "decline_start_day": spec.priors.decline_start_day}
    contraction = contraction_table(model, idata, spec.all_parameters(model), seed)
    return CpeptideResult(
        mode=spec.mode,
        model_description=model_sentence(spec),
        parameters=summarise_parameters(idata, names),
        contraction=_contraction_side_by_side(contraction, means_contraction),
        trajectory=population_trajectory(idata, days, seed, decline_start_day=spec.priors.decline_start_day),
        link_curve=link_curve(idata),
        ppc=ppc,
        diagnostics=FitCheck.of("C-peptide model (main fit)", diag),
        sensitivity=sensitivity,
        psense=power_scaling(model, idata, names) if config.psense else None,
        model_check=ModelCheck(**model_check(main_check, shape_rows, spec.priors, spec.mode)),
        holdout=(holdout_check(spec, settings, seed, main_idata=idata) if config.holdout_check
                 and spec.means is not None
                 and spec.means.days.size >= 3 else None),
        calibration=kept_calibration(),
        notes=notes,
        inputs=data_inputs,
        settings=run_settings,
        idata=idata,
        provenance=provenance(seed=seed, sampler=main_settings.as_dict(), cpeptide=config.model_dump(mode="json"),
                              data=data_inputs),
    )


def kept_calibration() -> pd.DataFrame | None:
    """The kept simulation-based calibration of each C-peptide model (analyses/results/sbc_cpeptide.json): the
    smallest rank-uniformity p and the p below which a parameter's ranks fail (Bonferroni over the model's
    parameters), the share of fits failing a diagnostic, the replicates done."""
    import json

    from isletbayes.analyses.calibration import FAMILY_ALPHA

    if not KEPT_CALIBRATION_PATH.exists():
        return None
    doc = json.loads(KEPT_CALIBRATION_PATH.read_text(encoding="utf-8"))
    rows = []
    for res in doc.get("results", []):
        tests = res.get("tests", {})
        rows.append({"model": res["problem"], "replicates": res.get("n_replicates"),
                     "min_rank_p": min((t["p_value"] for t in tests.values()), default=float("nan")),
                     "rank_p_threshold": FAMILY_ALPHA / len(tests) if tests else float("nan"),
                     "uniform": bool(res.get("uniform")), "failing_fits": res.get("n_fits_failing_diagnostics"),
                     "description": res.get("description", "")})
    return pd.DataFrame(rows).set_index("model") if rows else None
