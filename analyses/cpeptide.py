"""C-peptide trajectory and graft-function analysis (``isletbayes cpeptide``).

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
  and, with the sensitivity fits, the exponential rise and the free rise shape side by side, in one statement.

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

Every fit is checked with :func:`~isletbayes.models.sampling.check_diagnostics`; failures are kept in the result
and printed as FAILED.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pymc as pm
import typer

from isletbayes.analyses.provenance import provenance, sha256_of
from isletbayes.data.errors import InputError
from isletbayes.models.validation import ModelInputError
from isletbayes.data.io import write_datatree_atomic, write_json_atomic
from isletbayes.models import cpeptide_trajectory as cpm
from isletbayes.models.graft_link import ALTERNATIVE_LINK_PRIORS, LinkPriors
from isletbayes.models.sampling import SamplerSettings, check_diagnostics, fit

#: Defaults for this analysis: target_accept 0.99 because the cohort-means posterior keeps a mild funnel where all
#: noise sds are small (four means, three curve parameters: see models/cpeptide_trajectory.py). At 0.9 the published-means fits
#: show 5-26 divergent transitions per 6000 draws; at 0.99 none in our runs (seeds 1-4, each sensitivity fit too).
DEFAULT_SETTINGS = SamplerSettings(draws=1500, tune=1500, chains=4, target_accept=0.99)
SPREAD_SCALES = (0.3, 0.5, 1.0)
CONTRACTION_RULE = ("posterior sd / prior sd (log scale for positive parameters): < 0.5 informed by the data, "
                    "0.5-0.9 partly informed, >= 0.9 prior only")
POSITIVE = {"plateau_pmol_l", "t_half_days", "sd_log_plateau", "sd_log_rate", "measurement_sd", "rise_shape",
            "decline_rate_per_year"}
LABELS = {
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
PPC_VARIABLE = "cohort_mean"


@dataclass
class CpeptideResult:
    """Everything ``isletbayes cpeptide`` reports; ``save``/``load`` round-trip it through an output folder."""

    mode: str
    parameters: list[dict]
    trajectory: dict
    ppc: list[dict]
    contraction: list[dict]
    diagnostics: dict
    link_sensitivity: list[dict] = field(default_factory=list)
    spread_sensitivity: list[dict] = field(default_factory=list)
    shape_check: list[dict] = field(default_factory=list)
    psense: list[dict] = field(default_factory=list)
    model_check: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    inputs: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    idata: Any = None

    SUMMARY_FILE = "cpeptide_summary.json"
    POSTERIOR_FILE = "cpeptide_posterior.nc"

    @property
    def ok(self) -> bool:
        return bool(self.diagnostics.get("ok", False))

    def failures(self) -> list[str]:
        """Every failed diagnostic of every fit, named by fit."""
        out = [f"main fit: {f}" for f in self.diagnostics.get("failures", [])]
        for group in (self.link_sensitivity, self.spread_sensitivity, self.shape_check):
            for row in group:
                out += [f"{row['label']}: {f}" for f in row["diagnostics"].get("failures", [])]
        return out

    def to_dict(self) -> dict:
        return {
            "analysis": "cpeptide",
            "mode": self.mode,
            "ok": self.ok,
            "all_failures": self.failures(),
            "parameters": self.parameters,
            "trajectory": self.trajectory,
            "ppc": self.ppc,
            "model_check": self.model_check,
            "contraction": {"rule": CONTRACTION_RULE, "rows": self.contraction},
            "diagnostics": self.diagnostics,
            "link_sensitivity": self.link_sensitivity,
            "spread_sensitivity": self.spread_sensitivity,
            "shape_check": self.shape_check,
            "psense": self.psense,
            "notes": self.notes,
            "inputs": self.inputs,
            "provenance": self.provenance,
        }

    def save(self, outdir: str | Path) -> Path:
        outdir = Path(outdir)
        if self.idata is not None:
            write_datatree_atomic(outdir / self.POSTERIOR_FILE, self.idata)
        write_json_atomic(outdir / self.SUMMARY_FILE, self.to_dict())
        return outdir

    @classmethod
    def load(cls, outdir: str | Path) -> CpeptideResult:
        import xarray as xr

        outdir = Path(outdir)
        path = outdir / cls.SUMMARY_FILE
        if not path.exists():
            raise InputError("no C-peptide result here (run `isletbayes cpeptide --out DIR` first)", file=path)
        d = json.loads(path.read_text(encoding="utf-8"))
        idata = None
        if (outdir / cls.POSTERIOR_FILE).exists():
            idata = xr.open_datatree(outdir / cls.POSTERIOR_FILE, engine="h5netcdf").load()
        return cls(mode=d["mode"], parameters=d["parameters"], trajectory=d["trajectory"], ppc=d["ppc"],
                   contraction=d["contraction"]["rows"], diagnostics=d["diagnostics"],
                   link_sensitivity=d["link_sensitivity"], spread_sensitivity=d["spread_sensitivity"],
                   shape_check=d["shape_check"], psense=d["psense"], model_check=d.get("model_check", {}),
                   notes=d["notes"], inputs=d["inputs"], provenance=d["provenance"], idata=idata)


# ------------------------------------------------------------------------------------------------- inputs
def published_cohort_means() -> tuple[cpm.CohortMeans, dict]:
    """The bundled cohort means and the day-365 insulin-independence count, with their sources."""
    from isletbayes.data import load_counts, load_cpeptide_means

    means = load_cpeptide_means()
    means = means[means["used_by_default"]].sort_values("day")
    counts = load_counts()
    ii = counts[(counts["endpoint"] == "insulin_independence") & counts["used_by_default"]]
    return cohort_means_from_tables(means, ii), {
        "source": "bundled published data",
        "series": sorted(set(means["series"])),
        "source_ids": sorted(set(means["source_id"]) | set(ii["source_id"])),
        "caveats": sorted(set(c for c in means["caveat"] if c)),
    }


def cohort_means_from_tables(means, ii_counts=None) -> cpm.CohortMeans:
    """A :class:`CohortMeans` from ``load_cpeptide_means`` rows and (optionally) the II count row(s)."""
    ns = set(int(n) for n in means["n"])
    if len(ns) != 1:
        raise InputError(f"cohort means must share one cohort size, found {sorted(ns)}", column="n")
    n = ns.pop()
    lods = set(float(x) for x in means["lod_pmol_l"] if np.isfinite(x))
    sd = np.full(len(means), np.nan)
    for j, (kind, value) in enumerate(zip(means["spread_kind"], means["spread_value"])):
        if isinstance(kind, str) and kind and np.isfinite(value):
            sd[j] = cpm.spread_to_sd(kind, float(value), n)
    ii_count = None
    if ii_counts is not None and len(ii_counts):
        row = ii_counts[ii_counts["timepoint_day"] == 365] if "timepoint_day" in ii_counts else ii_counts
        if len(row) != 1:
            raise InputError("expected one day-365 insulin-independence count", key="insulin_independence")
        if int(row["n"].iloc[0]) != n:
            raise InputError(f"the insulin-independence count is of {int(row['n'].iloc[0])} participants but the "
                             f"C-peptide means are of {n}", key="insulin_independence")
        ii_count = int(row["r"].iloc[0])
    return cpm.CohortMeans(days=means["day"].to_numpy(dtype=float), means=means["mean_pmol_l"].to_numpy(dtype=float),
                           n_participants=n, lod=min(lods) if lods else cpm.DEFAULT_LOD_PMOL_L,
                           spread_sd=sd, ii_count=ii_count)


# ------------------------------------------------------------------------------------------------ models
@dataclass(frozen=True)
class ModelSpec:
    """What to build: data (means or participant-level), priors and options."""

    data: cpm.CohortMeans | cpm.ParticipantData
    priors: cpm.TrajectoryPriors = cpm.TrajectoryPriors()
    link_priors: LinkPriors | None = LinkPriors()
    late_decline: bool = False
    rise_shape: bool = False

    @property
    def mode(self) -> str:
        return "cohort_means" if isinstance(self.data, cpm.CohortMeans) else "participant"

    def build(self) -> pm.Model:
        builder = cpm.build_means_model if self.mode == "cohort_means" else cpm.build_participant_model
        return builder(self.data, self.priors, self.link_priors, late_decline=self.late_decline,
                       rise_shape=self.rise_shape)

    def parameter_names(self, model: pm.Model) -> list[str]:
        names = list(cpm.POPULATION_PARAMETERS)
        names += [n for n in ("rise_shape", "decline_rate_per_year", "alpha", "beta") if n in model.named_vars]
        return names


def fit_checked(spec: ModelSpec, settings: SamplerSettings):
    """Build, fit and check one model; returns (model, idata, diagnostics)."""
    model = spec.build()
    idata = fit(model, settings)
    diagnostics = check_diagnostics(idata)
    return model, idata, diagnostics


# ------------------------------------------------------------------------------------------ summaries
def _flat(idata, name) -> np.ndarray:
    return np.asarray(idata["posterior"][name].values, dtype=float).reshape(-1, *idata["posterior"][name].shape[2:])


def summarise_parameters(idata, names) -> list[dict]:
    rows = []
    for name in names:
        x = _flat(idata, name)
        q05, q50, q95 = np.quantile(x, [0.05, 0.5, 0.95])
        rows.append({"name": name, "label": LABELS.get(name, name), "mean": float(x.mean()), "sd": float(x.std()),
                     "median": float(q50), "q05": float(q05), "q95": float(q95)})
    return rows


def contraction_table(model: pm.Model, idata, names, seed: int, n_prior: int = 4000) -> list[dict]:
    """Posterior sd / prior sd per parameter (on the log scale for positive ones), with the stated rule."""
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
    return rows


def _draw_subset(idata, n: int, rng: np.random.Generator) -> np.ndarray:
    post = idata["posterior"]
    total = post.sizes["chain"] * post.sizes["draw"]
    return rng.choice(total, size=min(n, total), replace=False)


@np.errstate(divide="ignore")  # day 0 is on the grid: log C(0) = -inf, C(0) = 0 exactly
def population_trajectory(idata, days, seed: int, n_draws: int = 1000, n_new: int = 200,
                          decline_start_day: float = 365.0) -> dict:
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

    def bands(a):
        q = np.quantile(a, [0.05, 0.5, 0.95], axis=0)
        return {"q05": q[0].tolist(), "median": q[1].tolist(), "q95": q[2].tolist()}

    return {"days": days.tolist(), "median_participant": bands(median_curve), "population_mean": bands(mean_curve),
            "new_participant": bands(new)}


def ppc_cohort_means(idata, means: cpm.CohortMeans, seed: int) -> list[dict]:
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
    z = rng.standard_normal(expected.shape)
    log_rep = np.log(expected) - var / 2 + np.einsum("dij,dj->di", np.linalg.cholesky(cov), z)
    return means.days, means.means, np.exp(log_rep)


def ppc_participant_means(idata, data: cpm.ParticipantData, seed: int) -> list[dict]:
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


def _ppc_rows(days, observed, rep) -> list[dict]:
    rows = []
    for j, day in enumerate(days):
        r = rep[:, j]
        q05, q50, q95 = np.quantile(r, [0.05, 0.5, 0.95])
        p_below = float(np.mean(r <= observed[j]))
        rows.append({"day": float(day), "observed": float(observed[j]), "predicted_median": float(q50),
                     "predicted_q05": float(q05), "predicted_q95": float(q95),
                     "p_rep_below_observed": p_below, "outside_90": bool(p_below < 0.05 or p_below > 0.95)})
    return rows


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
    if spec.mode == "cohort_means":
        return replicate_cohort_means(idata, spec.data, seed)
    return replicate_participant_means(idata, spec.data, seed)


def _fit_check(label: str, spec: ModelSpec, idata, ppc_rows: list[dict], seed: int) -> dict:
    """What the model check reports about one fit."""
    early = early_rise_check(*_replicates(spec, idata, seed))
    row = {"label": label, "rise_shape_free": spec.rise_shape,
           "measurement_sd": _interval(_flat(idata, "measurement_sd")),
           "ppc_outside_90": [r["day"] for r in ppc_rows if r["outside_90"]], "early_rise": early}
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
    prior_sd = {"median": priors.measurement_sd_scale * 0.6745, "q95": priors.measurement_sd_scale * 1.96}
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
    parts.append(f"Measurement sd (log scale): {_sd_text(main['measurement_sd'])}, against a prior median of "
                 f"{prior_sd['median']:.2f}. It is learned from how far the means scatter around the curve, so a "
                 "curve that fits badly is compensated by a larger sd and wider predictive intervals.")
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
            "measurement_sd_prior": {"family": f"HalfNormal({priors.measurement_sd_scale:g})", **prior_sd},
            "rise_shape": main.get("rise_shape"), "shape_comparison": comparison, "statement": " ".join(parts)}


def power_scaling(model: pm.Model, idata, names) -> list[dict]:
    """ArviZ power-scaling sensitivity (prior and likelihood) of the named parameters."""
    import arviz as az
    from pymc.stats import compute_log_likelihood, compute_log_prior

    psense_log = logging.getLogger("arviz_stats.psense")  # its generic warning; the diagnosis column says it
    level = psense_log.level
    psense_log.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        compute_log_likelihood(idata, model=model, progressbar=False)
        compute_log_prior(idata, model=model, progressbar=False)
        table = az.psense_summary(idata, var_names=list(names))
    psense_log.setLevel(level)
    return [{"name": str(name), "prior": float(row["prior"]), "likelihood": float(row["likelihood"]),
             "diagnosis": "ok" if row["diagnosis"] == "✓" else str(row["diagnosis"])}
            for name, row in table.iterrows()]


def _same_model(a: ModelSpec, b: ModelSpec) -> bool:
    return (a.priors, a.link_priors, a.late_decline, a.rise_shape) == (b.priors, b.link_priors, b.late_decline,
                                                                      b.rise_shape)


def _sensitivity_fit(spec: ModelSpec, settings: SamplerSettings, main: tuple):
    """Fit ``spec``, or reuse the main fit when ``spec`` is the main model (same priors and options)."""
    main_spec, model, idata, diag = main
    if _same_model(spec, main_spec):
        return model, idata, diag
    return fit_checked(spec, settings)


def _sensitivity_row(label: str, spec: ModelSpec, settings: SamplerSettings, names, main: tuple) -> dict:
    model, idata, diag = _sensitivity_fit(spec, settings, main)
    return {"label": label, "parameters": summarise_parameters(idata, [n for n in names if n in idata["posterior"]]),
            "diagnostics": diag.as_dict()}


# -------------------------------------------------------------------------------------------------- run
def run_cpeptide(data_path: str | Path | None = None, *, priors: cpm.TrajectoryPriors = cpm.TrajectoryPriors(),
                 link_priors: LinkPriors | None = LinkPriors(), settings: SamplerSettings = DEFAULT_SETTINGS,
                 late_decline: bool = False, rise_shape: bool = True, cohort: str | None = None,
                 sensitivity: bool = True, psense: bool = True) -> CpeptideResult:
    """Fit the C-peptide trajectory + link model and summarise it (see the module docstring)."""
    notes = []
    if data_path is None:
        data, inputs = published_cohort_means()
        notes.append("Fitted to published cohort means only: the latent participants' spread is not observed. "
                     + ("A published spread enters the likelihood." if data.has_spread else
                        "No SD or CI is published for these means, so the between-participant spread (sd_log_plateau, "
                        "sd_log_rate) is carried by its prior; see the contraction table and the spread sensitivity."))
        notes.append("Assumed: the means are 90-min MMTT-stimulated C-peptide (the source does not say which series).")
        notes.append("With means only, measurement_sd is learned from how far the means scatter around the smooth "
                     "population curve, so it also absorbs any misfit of the curve's shape (see the shape check).")
        notes.append("With aggregates only, the link between C-peptide and insulin independence is informed by one "
                     "count (10/12): its slope is carried mostly by its prior (see the link sensitivity).")
    else:
        from isletbayes.data import load_participant_data

        frame = load_participant_data(data_path)
        if cohort is not None:
            if cohort not in set(frame["cohort"]):
                raise InputError(f"no cohort {cohort!r} in the file (found {sorted(set(frame['cohort']))})",
                                 option="--cohort")
            frame = frame[frame["cohort"] == cohort]
        data = cpm.participant_data_from_long(frame, source=str(data_path))
        cohorts = sorted(set(frame["cohort"]))
        inputs = {"source": str(data_path), "sha256": sha256_of(Path(data_path)), "cohorts": cohorts,
                  "n_participants": data.n_participants, "n_observations": int(data.obs_day.size),
                  "n_censored": int(data.obs_censored.sum()), "n_baseline_excluded": data.n_baseline_excluded,
                  "n_insulin_independence": int(data.ii_value.size)}
        if len(cohorts) > 1:
            notes.append(f"All cohorts ({', '.join(cohorts)}) are pooled into one population; use --cohort to fit "
                         "one.")
        if data.ii_value.size == 0:
            notes.append("No day-365 insulin-independence rows: the link is not fitted.")
    spec = ModelSpec(data=data, priors=priors, link_priors=link_priors, late_decline=late_decline,
                     rise_shape=rise_shape)
    if not late_decline:
        notes.append("No late decline is modelled (off by default): trajectories beyond the last visit are flat.")
    model, idata, diag = fit_checked(spec, settings)
    names = spec.parameter_names(model)
    last_day = 730.0 if late_decline else 365.0
    days = np.linspace(0.0, last_day, int(last_day // 5) + 1)
    ppc = _ppc_rows(*_replicates(spec, idata, settings.seed))
    if any(r["outside_90"] for r in ppc):
        bad = ", ".join(f"day {r['day']:g}" for r in ppc if r["outside_90"])
        notes.append(f"Posterior predictive check: the observed mean lies outside the 90% predictive interval at "
                     f"{bad}.")
    result = CpeptideResult(
        mode=spec.mode,
        parameters=summarise_parameters(idata, names),
        trajectory=population_trajectory(idata, days, settings.seed, decline_start_day=priors.decline_start_day),
        ppc=ppc,
        contraction=contraction_table(model, idata, names, settings.seed),
        diagnostics=diag.as_dict(),
        notes=notes,
        inputs=inputs,
        idata=idata,
    )
    if psense:
        result.psense = power_scaling(model, idata, names)
    shape_rows: list[dict] = []
    if sensitivity:
        main = (spec, model, idata, diag)
        if "alpha" in model.named_vars:
            for label, lp in ALTERNATIVE_LINK_PRIORS.items():
                lp = replace(link_priors, beta_mean=lp.beta_mean, beta_sd=lp.beta_sd)
                result.link_sensitivity.append(
                    _sensitivity_row(label, replace(spec, link_priors=lp), settings, names, main))
        for scale in SPREAD_SCALES:
            result.spread_sensitivity.append(_sensitivity_row(
                f"spread sds ~ HalfNormal({scale:g})", replace(spec, priors=priors.with_spread_scale(scale)),
                settings, names, main))
        for shape_free in (False, True):
            label = "free rise shape h (Weibull-type)" if shape_free else "exponential rise (h = 1)"
            s = replace(spec, rise_shape=shape_free)
            m, i, d = _sensitivity_fit(s, settings, main)
            pp = _ppc_rows(*_replicates(s, i, settings.seed))
            check = _fit_check(label, s, i, pp, settings.seed)
            result.shape_check.append({"label": label, "parameters": summarise_parameters(i, s.parameter_names(m)),
                                       "ppc": pp, "early_rise": check["early_rise"],
                                       "diagnostics": d.as_dict()})
            shape_rows.append(check)
    main_check = _fit_check("fitted model", spec, idata, ppc, settings.seed)
    result.model_check = model_check(main_check, shape_rows, priors, spec.mode)
    result.provenance = provenance(
        seed=settings.seed, sampler=settings.as_dict(), priors=priors.as_dict(),
        link_priors=None if link_priors is None else link_priors.as_dict(), late_decline=late_decline,
        rise_shape=rise_shape, cohort=cohort, data=inputs, sensitivity=sensitivity)
    return result


# -------------------------------------------------------------------------------------------------- CLI
def _print_result(result: CpeptideResult) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    title = "published cohort means" if result.mode == "cohort_means" else f"participant data {result.inputs['source']}"
    table = Table(title=f"C-peptide trajectory and link, fitted to {title}")
    for col in ("parameter", "median", "90% interval", "post sd / prior sd", "data inform it?"):
        table.add_column(col)
    contraction = {r["name"]: r for r in result.contraction}
    for row in result.parameters:
        c = contraction.get(row["name"], {})
        table.add_row(row["label"], f"{row['median']:.3g}", f"{row['q05']:.3g} - {row['q95']:.3g}",
                      f"{c.get('ratio', float('nan')):.2f}", c.get("verdict", ""))
    console.print(table)
    ppc = Table(title="Posterior predictive check of the means")
    for col in ("day", "observed", "predicted median", "90% predictive interval", "P(rep <= obs)"):
        ppc.add_column(col)
    for r in result.ppc:
        flag = " [red]outside[/red]" if r["outside_90"] else ""
        ppc.add_row(f"{r['day']:g}", f"{r['observed']:.0f}", f"{r['predicted_median']:.0f}",
                    f"{r['predicted_q05']:.0f} - {r['predicted_q95']:.0f}", f"{r['p_rep_below_observed']:.2f}{flag}")
    console.print(ppc)
    for name, group in (("link slope prior", result.link_sensitivity),
                        ("between-participant spread prior", result.spread_sensitivity),
                        ("rise shape", result.shape_check)):
        if not group:
            continue
        sens = Table(title=f"Sensitivity to the {name}: posterior median [90% interval]")
        sens.add_column("parameter")
        for row in group:
            sens.add_column(row["label"])
        names = [p["name"] for p in max(group, key=lambda r: len(r["parameters"]))["parameters"]]
        for n in names:
            cells = []
            for row in group:
                p = next((p for p in row["parameters"] if p["name"] == n), None)
                cells.append("-" if p is None else f"{p['median']:.3g} [{p['q05']:.3g}, {p['q95']:.3g}]")
            sens.add_row(n, *cells)
        console.print(sens)
    if result.psense:
        ps = Table(title="Power-scaling sensitivity (threshold 0.05)")
        for col in ("parameter", "prior", "likelihood", "diagnosis"):
            ps.add_column(col)
        for r in result.psense:
            ps.add_row(r["name"], f"{r['prior']:.3f}", f"{r['likelihood']:.3f}", r["diagnosis"])
        console.print(ps)
    check = result.model_check
    if check:
        colour = "red" if check["misfit_flagged"] else "yellow"
        head = "MODEL CHECK FLAGS A MISFIT" if check["misfit_flagged"] else "model check"
        console.print(f"[bold {colour}]{head}[/bold {colour}]: {check['statement']}")
    for note in result.notes:
        console.print(f"note: {note}")
    failures = result.failures()
    if failures:
        console.print("[bold red]DIAGNOSTICS FAILED[/bold red]")
        for f in failures:
            console.print(f"[red]  FAILED {f}[/red]")
    else:
        console.print("[green]diagnostics passed for every fit[/green]")


def cli(
    data: Path = typer.Option(None, "--data", help="participant-level long-format CSV (default: published means)"),
    out: Path = typer.Option(None, "--out", help="folder for cpeptide_posterior.nc and cpeptide_summary.json"),
    json_output: bool = typer.Option(False, "--json", help="print the JSON summary to stdout"),
    seed: int = typer.Option(DEFAULT_SETTINGS.seed, "--seed"),
    draws: int = typer.Option(DEFAULT_SETTINGS.draws, "--draws"),
    tune: int = typer.Option(DEFAULT_SETTINGS.tune, "--tune"),
    chains: int = typer.Option(DEFAULT_SETTINGS.chains, "--chains"),
    target_accept: float = typer.Option(DEFAULT_SETTINGS.target_accept, "--target-accept"),
    sampler: str = typer.Option(DEFAULT_SETTINGS.nuts_sampler, "--sampler", help="pymc or nutpie"),
    plateau_median: float = typer.Option(1000.0, "--plateau-median", help="prior median plateau (pmol/L)"),
    plateau_log_sd: float = typer.Option(1.0, "--plateau-log-sd"),
    t_half_median: float = typer.Option(60.0, "--t-half-median", help="prior median time to half plateau (days)"),
    t_half_log_sd: float = typer.Option(1.0, "--t-half-log-sd"),
    spread_sd: float = typer.Option(0.5, "--spread-sd", help="half-normal scale of the between-participant sds"),
    measurement_sd: float = typer.Option(0.5, "--measurement-sd", help="half-normal scale of the measurement sd"),
    beta_mean: float = typer.Option(1.0, "--beta-mean", help="prior mean of the link slope"),
    beta_sd: float = typer.Option(1.0, "--beta-sd"),
    late_decline: bool = typer.Option(False, "--late-decline", help="add a late decline after day 365"),
    rise_shape: bool = typer.Option(True, "--rise-shape/--exponential-rise",
                                    help="free rise shape h (Weibull-type, the default) or h = 1"),
    cohort: str = typer.Option(None, "--cohort", help="fit one cohort of the participant data"),
    no_sensitivity: bool = typer.Option(False, "--no-sensitivity", help="skip the alternative-prior refits"),
) -> None:
    """Fit the C-peptide trajectory and graft-function model; print and save the summary."""
    for option, value in (("--draws", draws), ("--tune", tune), ("--chains", chains)):
        if value < 1:
            raise InputError(f"must be >= 1, got {value}", option=option)
    if not 0.5 <= target_accept < 1:
        raise InputError(f"must be in [0.5, 1), got {target_accept}", option="--target-accept")
    if sampler not in ("pymc", "nutpie"):
        raise InputError(f"must be pymc or nutpie, got {sampler!r}", option="--sampler")
    if data is not None and not Path(data).is_file():
        raise InputError("no such file", file=data, option="--data")
    options = {"plateau_median_pmol_l": "--plateau-median", "plateau_log_sd": "--plateau-log-sd",
               "t_half_median_days": "--t-half-median", "t_half_log_sd": "--t-half-log-sd",
               "spread_plateau_scale": "--spread-sd", "spread_rate_scale": "--spread-sd",
               "measurement_sd_scale": "--measurement-sd", "beta_sd": "--beta-sd"}
    try:
        priors = cpm.TrajectoryPriors(plateau_median_pmol_l=plateau_median, plateau_log_sd=plateau_log_sd,
                                      t_half_median_days=t_half_median, t_half_log_sd=t_half_log_sd,
                                      spread_plateau_scale=spread_sd, spread_rate_scale=spread_sd,
                                      measurement_sd_scale=measurement_sd)
        link_priors = LinkPriors(beta_mean=beta_mean, beta_sd=beta_sd)
    except ModelInputError as err:
        raise InputError(err.message, option=options.get(err.parameter, err.parameter)) from None
    settings = SamplerSettings(draws=draws, tune=tune, chains=chains, cores=1, target_accept=target_accept,
                               nuts_sampler=sampler, seed=seed)
    result = run_cpeptide(data, priors=priors, link_priors=link_priors, settings=settings, late_decline=late_decline,
                          rise_shape=rise_shape, cohort=cohort, sensitivity=not no_sensitivity)
    if out is not None:
        result.save(out)
    if json_output:
        from isletbayes.data.io import to_json

        print(to_json(result.to_dict()))
    else:
        _print_result(result)
        if out is not None:
            print(f"wrote {Path(out) / CpeptideResult.POSTERIOR_FILE} and {Path(out) / CpeptideResult.SUMMARY_FILE}")
