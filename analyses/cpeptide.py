"""C-peptide trajectory and graft-function analysis (``isletbayes cpeptide``).

Fits the hierarchical trajectory model of :mod:`isletbayes.models.cpeptide`, jointly with the insulin-independence
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
* a model check of the rise shape (the default saturating exponential against a free Weibull-type shape).

Every fit is checked with :func:`~isletbayes.models.sampling.check_diagnostics`; failures are kept in the result
and printed as FAILED.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pymc as pm
import typer

from isletbayes.analyses.provenance import provenance, sha256_of
from isletbayes.data.errors import InputError
from isletbayes.data.io import write_datatree_atomic, write_json_atomic
from isletbayes.models import cpeptide as cpm
from isletbayes.models.graft_link import ALTERNATIVE_LINK_PRIORS, LinkPriors
from isletbayes.models.sampling import SamplerSettings, check_diagnostics, fit

#: Defaults for this analysis: target_accept 0.99 because the cohort-means likelihood couples the latent
#: participants tightly (at 0.9 a few divergent transitions remain; at 0.99 none in our runs).
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
                   shape_check=d["shape_check"], psense=d["psense"], notes=d["notes"], inputs=d["inputs"],
                   provenance=d["provenance"], idata=idata)


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
    """Replicated published means (the model's lognormal approximation to a mean of n) against the observed."""
    rng = np.random.default_rng(seed)
    expected = _flat(idata, "expected_cohort_mean")
    log_sd = _flat(idata, "cohort_mean_log_sd")
    rep = np.exp(np.log(expected) - log_sd**2 / 2 + log_sd * rng.standard_normal(expected.shape))
    return _ppc_rows(means.days, means.means, rep)


def ppc_participant_means(idata, data: cpm.ParticipantData, seed: int) -> list[dict]:
    """Replicated per-visit means of the measured values (censored at the LLOD as in the data) vs observed."""
    rng = np.random.default_rng(seed)
    plateau = _flat(idata, "plateau_participant")
    t_half = _flat(idata, "t_half_participant")
    sigma = _flat(idata, "measurement_sd")
    shape = _flat(idata, "rise_shape") if "rise_shape" in idata["posterior"] else np.ones(sigma.shape)
    delta = (_flat(idata, "decline_rate_per_year") if "decline_rate_per_year" in idata["posterior"]
             else np.zeros(sigma.shape))
    pick = _draw_subset(idata, 1000, rng)
    p = data.obs_participant
    rate = cpm.rate_from_t_half(t_half[pick][:, p], shape[pick][:, None])
    log_c = cpm.log_trajectory(np.log(plateau[pick][:, p]), rate, data.obs_day[None, :], delta[pick][:, None],
                               365.0, shape[pick][:, None])
    y = np.exp(log_c + sigma[pick][:, None] * rng.standard_normal(log_c.shape))
    y = np.where(y <= data.obs_lod[None, :], data.obs_lod[None, :], y)
    days = np.unique(data.obs_day)
    observed = np.array([data.obs_value[data.obs_day == d].mean() for d in days])
    rep = np.stack([y[:, data.obs_day == d].mean(axis=1) for d in days], axis=1)
    return _ppc_rows(days, observed, rep)


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
                 late_decline: bool = False, rise_shape: bool = False, cohort: str | None = None,
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
    if spec.mode == "cohort_means":
        ppc = ppc_cohort_means(idata, data, settings.seed)
    else:
        ppc = ppc_participant_means(idata, data, settings.seed)
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
            pp = ppc_cohort_means(i, data, settings.seed) if s.mode == "cohort_means" else \
                ppc_participant_means(i, data, settings.seed)
            result.shape_check.append({"label": label, "parameters": summarise_parameters(i, s.parameter_names(m)),
                                       "ppc": pp, "diagnostics": d.as_dict()})
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
    rise_shape: bool = typer.Option(False, "--rise-shape", help="free the rise shape (Weibull-type)"),
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
    except InputError as err:
        raise InputError(err.message, option=options.get(err.key, err.key)) from None
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
