r"""Re-analysis of zimislecel's binary end points under a panel of priors, with exact beta-mixture posteriors.

For each efficacy end point (r of n full-dose participants: insulin independence 10/12, composite primary 12/12,
SHE-free 12/12, HbA1c < 7% 12/12) and each prior :math:`p(\theta)` of the panel, the posterior is exact::

    theta | r  ~  sum_k w_k' Beta(a_k + r, b_k + n - r)        (isletbayes.models.mixtures)

The panel (every member a beta mixture):

* ``uniform`` Beta(1, 1) and ``jeffreys`` Beta(1/2, 1/2): reference priors.
* ``sceptical``: Beta with mean = the pooled comparator rate (sum r / sum n of the comparator studies used for the
  end point: by default the donor-islet studies marked ``in_default_map``) and effective sample size
  ``SCEPTICAL_ESS = 10``: a sceptic who expects zimislecel to do no better than deceased-donor islets, holding that
  belief with the weight of 10 participants (about the size of the trial itself, so the data can move it).
* ``enthusiastic``: the same ESS, centred halfway between the comparator rate and 100%, i.e. mean
  ``p_c + (1 - p_c) / 2``: an enthusiast who expects the cell product to close half of the gap that donor islets
  leave. (A convention of this toolkit; Spiegelhalter, Abrams & Myles 2004, ch. 5, for the sceptical/enthusiastic
  idea.)
* ``map``: the meta-analytic-predictive prior from the comparator studies (random-effects logit meta-analysis,
  :mod:`isletbayes.models.map_prior`), approximated by a beta mixture; ``robust_map``: the same robustified with a
  Beta(1, 1) component of weight ``robust_weight`` (default 0.2; RBesT's ``robustify(weight, mean = 1/2)``).

When an end point has no comparator study with counts, the priors that need one (sceptical, enthusiastic, MAP,
robust MAP) and the "comparator" threshold are left out and the result says so in ``notes``.

Per end point and prior: posterior mean, median, sd, 95% equal-tailed and highest-density intervals, P(rate >
threshold) for each threshold, the prior's ESS (ELIR, moment, Morita), Box's prior-data conflict p-values, and the
beta-binomial predictive distribution of responders among the next ``predictive_m`` participants. Clopper-Pearson
exact 95% intervals stand beside them. Safety rates (serious neutropenia 3/14, deaths 2/14, acute kidney injury
2/14) get exact posteriors under the uniform and Jeffreys priors and a sentence in plain language.

``run_binary(...) -> BinaryResult``; ``BinaryResult.save(outdir)`` writes ``binary.json`` (with provenance) and
``map_<endpoint>.nc`` (the MAP fits' draws); ``BinaryResult.load(outdir)`` reads them back. CLI: ``isletbayes
binary``.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import pandas as pd
import typer
from scipy import stats

from isletbayes.analyses.provenance import provenance, sha256_of
from isletbayes.data import load_comparators, load_counts
from isletbayes.data.errors import InputError
from isletbayes.data.io import to_json, write_datatree_atomic, write_json_atomic
from isletbayes.models.map_prior import TAU_PRIORS, MAPPrior, map_prior
from isletbayes.models.mixtures import BetaMixture, prior_data_conflict
from isletbayes.models.sampling import SamplerSettings

EFFICACY_ENDPOINTS = ("insulin_independence", "composite_primary", "she_free", "hba1c_below_7")
SAFETY_ENDPOINTS = ("serious_neutropenia", "death", "acute_kidney_injury")
PANEL = ("uniform", "jeffreys", "sceptical", "enthusiastic", "map", "robust_map")
NEEDS_COMPARATOR = ("sceptical", "enthusiastic", "map", "robust_map")
SCEPTICAL_ESS = 10.0
ENTHUSIASTIC_ESS = 10.0
ROBUST_MEAN = 0.5
DEFAULT_THRESHOLDS: tuple[float | str, ...] = (0.5, "comparator")
SAFETY_THRESHOLDS = (0.05, 0.10, 0.20)
DEFAULT_PREDICTIVE_M = 50  # about the size of the phase 3 (published plan: about 50 participants)
DEFAULT_SETTINGS = SamplerSettings(draws=2000, tune=1000, chains=4, target_accept=0.95, nuts_sampler="pymc")
RESULT_FILE = "binary.json"
PRIOR_LABELS = {
    "uniform": "Uniform Beta(1, 1)",
    "jeffreys": "Jeffreys Beta(1/2, 1/2)",
    "sceptical": f"Sceptical: mean = comparator rate, ESS {SCEPTICAL_ESS:g}",
    "enthusiastic": f"Enthusiastic: mean halfway from comparator rate to 1, ESS {ENTHUSIASTIC_ESS:g}",
    "map": "MAP prior from comparator studies",
    "robust_map": "Robust MAP (MAP + weight x Beta(1, 1))",
}


# --------------------------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------------------------
def _count_row(counts: pd.DataFrame, endpoint: str) -> pd.Series:
    rows = counts[(counts["endpoint"] == endpoint) & counts["used_by_default"]]
    if len(rows) != 1:
        raise InputError(f"expected one default count row for end point {endpoint!r}, found {len(rows)}",
                         key=endpoint)
    return rows.iloc[0]


def parse_comparator_names(values: Sequence[str] | None, known: Sequence[str]) -> list[str] | None:
    """Study names from ``--comparators`` values (comma separated; names that contain commas are recognised).

    Pieces are joined back while their concatenation is a prefix of a known name, so "CITR (Barton 2012), era
    1999-2002" is one study. Case-insensitive. An unknown name raises InputError naming it.
    """
    if values is None:
        return None
    lookup = {k.strip().lower(): k for k in known}
    chosen: list[str] = []
    for value in values:
        pieces = [p.strip() for p in str(value).split(",")]
        i = 0
        while i < len(pieces):
            if not pieces[i]:
                i += 1
                continue
            match, j, acc = None, i, ""
            while j < len(pieces):
                acc = pieces[j] if j == i else f"{acc}, {pieces[j]}"
                if acc.lower() in lookup:
                    match, end = lookup[acc.lower()], j
                if not any(name.startswith(acc.lower()) for name in lookup):
                    break
                j += 1
            if match is None:
                raise InputError(f"unknown comparator study {pieces[i]!r}; known studies: " + "; ".join(known),
                                 option="--comparators")
            if match not in chosen:
                chosen.append(match)
            i = end + 1
    if not chosen:
        raise InputError("no comparator study named", option="--comparators")
    return chosen


def comparator_set(comparators: pd.DataFrame, endpoint: str, studies: Sequence[str] | None) -> tuple[pd.DataFrame, str]:
    """The comparator rows (with counts) used for an end point, and a phrase saying how they were chosen."""
    rows = comparators[(comparators["endpoint"] == endpoint) & comparators["r"].notna() & comparators["n"].notna()]
    if studies is None:
        return rows[rows["in_default_map"]].reset_index(drop=True), "default MAP set (in_default_map)"
    return rows[rows["study"].isin(list(studies))].reset_index(drop=True), "studies selected with --comparators"


def _validate_thresholds(thresholds) -> list[float | str]:
    out: list[float | str] = []
    for t in thresholds:
        if isinstance(t, str) and t.strip().lower() == "comparator":
            out.append("comparator")
            continue
        try:
            value = float(t)
        except (TypeError, ValueError):
            raise InputError(f"threshold must be a number in (0, 1) or 'comparator', got {t!r}",
                             option="--threshold") from None
        if not 0 < value < 1:
            raise InputError(f"threshold must lie strictly between 0 and 1, got {value:g}", option="--threshold")
        out.append(value)
    return out


# --------------------------------------------------------------------------------------------------------------
# per-prior summaries
# --------------------------------------------------------------------------------------------------------------
def _ess(mix: BetaMixture) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for method in ("elir", "moment", "morita"):
        try:
            out[method] = mix.ess(method)
        except ValueError:
            out[method] = None  # ELIR undefined for a mixture with a parameter < 1
    return out


def clopper_pearson(r: int, n: int, level: float = 0.95) -> tuple[float, float]:
    ci = stats.binomtest(r, n).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def summarise_posterior(prior: BetaMixture, r: int, n: int, thresholds: dict[str, float],
                        predictive_m: int) -> dict[str, Any]:
    """Everything reported for one (end point, prior) pair."""
    post = prior.posterior(r, n)
    pred = post.predictive(predictive_m)
    pmf = pred.pmf(pred.support())
    return {
        "prior": prior.to_dict(),
        "prior_mean": prior.mean(),
        "prior_eti95": list(prior.eti(0.95)),
        "ess": _ess(prior),
        "conflict": prior_data_conflict(prior, r, n).as_dict(),
        "posterior": post.to_dict(),
        "mean": post.mean(),
        "median": float(post.ppf(0.5)),
        "sd": post.sd(),
        "eti95": list(post.eti(0.95)),
        "hdi95": list(post.hdi(0.95)),
        "p_above": {label: float(post.sf(value)) for label, value in thresholds.items()},
        "predictive": {
            "m": predictive_m,
            "mean": pred.mean(),
            "interval95": [int(pred.ppf(0.025)), int(pred.ppf(0.975))],
            "p_all": float(pmf[-1]),
            "pmf": [float(p) for p in pmf],
        },
    }


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%" if x >= 0.1 else f"{100 * x:.1f}%"


def safety_summary(endpoint: str, r: int, n: int, definition: str) -> dict[str, Any]:
    out: dict[str, Any] = {"r": r, "n": n, "definition": definition, "observed_rate": r / n,
                           "clopper_pearson95": list(clopper_pearson(r, n)), "priors": {}}
    for name, (a, b) in (("uniform", (1.0, 1.0)), ("jeffreys", (0.5, 0.5))):
        post = BetaMixture.single(a, b).posterior(r, n)
        lo, hi = post.eti(0.95)
        p_above = {f"{t:g}": float(post.sf(t)) for t in SAFETY_THRESHOLDS}
        sentence = (f"{r} of {n} participants ({endpoint.replace('_', ' ')}): under a {name} prior the rate is "
                    f"estimated at {_pct(post.mean())}, with 95% probability between {_pct(lo)} and {_pct(hi)}; "
                    f"the probability that it exceeds 10% is {_pct(p_above['0.1'])}.")
        out["priors"][name] = {"posterior": post.to_dict(), "mean": post.mean(), "median": float(post.ppf(0.5)),
                               "eti95": [lo, hi], "hdi95": list(post.hdi(0.95)), "p_above": p_above,
                               "plain_language": sentence}
    return out


# --------------------------------------------------------------------------------------------------------------
# result
# --------------------------------------------------------------------------------------------------------------
@dataclass
class BinaryResult:
    """Result of :func:`run_binary`: a JSON-ready summary plus the MAP fits' draws (DataTree) per end point."""

    summary: dict[str, Any]
    map_draws: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return self.summary

    @property
    def endpoints(self) -> list[str]:
        return list(self.summary["endpoints"])

    def posterior(self, endpoint: str, prior: str) -> BetaMixture:
        return BetaMixture.from_dict(self.summary["endpoints"][endpoint]["priors"][prior]["posterior"])

    def prior(self, endpoint: str, prior: str) -> BetaMixture:
        return BetaMixture.from_dict(self.summary["endpoints"][endpoint]["priors"][prior]["prior"])

    @property
    def diagnostics_ok(self) -> bool:
        return bool(self.summary["diagnostics_ok"])

    def save(self, outdir: str | Path) -> Path:
        outdir = Path(outdir)
        outdir.mkdir(parents=True, exist_ok=True)
        for endpoint, tree in self.map_draws.items():
            write_datatree_atomic(outdir / f"map_{endpoint}.nc", tree)
        return write_json_atomic(outdir / RESULT_FILE, self.summary)  # last: its presence means all is written

    @classmethod
    def load(cls, outdir: str | Path) -> "BinaryResult":
        import xarray as xr

        outdir = Path(outdir)
        path = outdir / RESULT_FILE
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError("no binary analysis result here (run `isletbayes binary --out DIR`)", file=path) from None
        except json.JSONDecodeError as err:
            raise InputError(f"not valid JSON: {err.msg}", file=path, line=err.lineno) from None
        draws = {}
        for endpoint in summary.get("endpoints", {}):
            nc = outdir / f"map_{endpoint}.nc"
            if nc.exists():
                with xr.open_datatree(nc, engine="h5netcdf") as tree:
                    draws[endpoint] = tree.load()
        return cls(summary=summary, map_draws=draws)


# --------------------------------------------------------------------------------------------------------------
# the analysis
# --------------------------------------------------------------------------------------------------------------
def run_binary(endpoints: Sequence[str] = EFFICACY_ENDPOINTS, priors: Sequence[str] = PANEL,
               thresholds: Sequence[float | str] = DEFAULT_THRESHOLDS, comparators: Sequence[str] | None = None,
               tau_prior: str = "halfnormal", tau_scale: float = 1.0, mu_prior_sd: float = 2.0,
               robust_weight: float = 0.2, predictive_m: int = DEFAULT_PREDICTIVE_M,
               settings: SamplerSettings | None = None, seed: int | None = None,
               counts_path: str | Path | None = None, comparators_path: str | Path | None = None,
               include_safety: bool = True) -> BinaryResult:
    """Posterior of each efficacy end point under each prior of the panel, plus safety rates (see module doc).

    ``comparators``: study names for the MAP/sceptical/enthusiastic priors (default: the rows marked
    ``in_default_map`` for each end point). ``seed`` overrides ``settings.seed``. Each distinct comparator set is
    fitted once per run.
    """
    endpoints = list(dict.fromkeys(endpoints))
    for e in endpoints:
        if e not in EFFICACY_ENDPOINTS:
            raise InputError(f"unknown end point {e!r}; choose from {', '.join(EFFICACY_ENDPOINTS)}",
                             option="--endpoint")
    priors = list(dict.fromkeys(priors))
    for p in priors:
        if p not in PANEL:
            raise InputError(f"unknown prior {p!r}; choose from {', '.join(PANEL)}", option="--prior")
    if not endpoints or not priors:
        raise InputError("need at least one end point and one prior", option="--endpoint/--prior")
    thresholds = _validate_thresholds(thresholds)
    if tau_prior not in TAU_PRIORS:
        raise InputError(f"unknown tau prior {tau_prior!r}; choose from {', '.join(TAU_PRIORS)}",
                         option="--tau-prior")
    if not (math.isfinite(tau_scale) and tau_scale > 0):
        raise InputError(f"tau scale must be > 0, got {tau_scale:g}", option="--tau-scale")
    if not 0 <= robust_weight <= 1:
        raise InputError(f"robust weight must lie in [0, 1], got {robust_weight:g}", option="--robust-weight")
    if int(predictive_m) != predictive_m or predictive_m < 1:
        raise InputError(f"predictive m must be a positive integer, got {predictive_m}", option="--predict-m")
    predictive_m = int(predictive_m)
    settings = settings or DEFAULT_SETTINGS
    if seed is not None:
        settings = SamplerSettings(**{**settings.as_dict(), "seed": int(seed)})

    counts = load_counts(counts_path)
    comp_table = load_comparators(comparators_path)
    studies = parse_comparator_names(comparators, sorted(comp_table["study"].unique()))

    fitted: dict[tuple, MAPPrior] = {}
    out_endpoints: dict[str, Any] = {}
    map_draws: dict[str, Any] = {}
    all_ok = True
    for endpoint in endpoints:
        row = _count_row(counts, endpoint)
        r, n = int(row["r"]), int(row["n"])
        notes: list[str] = []
        comp_rows, basis = comparator_set(comp_table, endpoint, studies)
        comp_info: dict[str, Any] = {
            "basis": basis,
            "studies": [{"study": s.study, "r": int(s.r), "n": int(s.n), "group": s.group, "source_id": s.source_id,
                         "time_anchor": s.time_anchor, "definition": s.definition}
                        for s in comp_rows.itertuples()],
        }
        pooled = None
        if len(comp_rows):
            pooled = float(comp_rows["r"].sum() / comp_rows["n"].sum())
        else:
            notes.append(f"no comparator study with counts for {endpoint} ({basis}): sceptical, enthusiastic, MAP "
                         "and robust MAP priors and the 'comparator' threshold are left out")
        comp_info["pooled_rate"] = pooled
        if pooled is not None:
            notes.append("comparator end-point definitions and time anchors differ from zimislecel's (single "
                         "infusion; comparators mostly 1 year after the last of up to 3 infusions): the "
                         "MAP/sceptical priors assume an exchangeability that is not established")

        thr = {}
        for t in thresholds:
            if t == "comparator":
                if pooled is not None:
                    thr["comparator"] = pooled
            else:
                thr[f"{t:g}"] = float(t)

        mixtures: dict[str, BetaMixture] = {}
        map_result: MAPPrior | None = None
        for name in priors:
            if name in NEEDS_COMPARATOR and pooled is None:
                continue
            if name == "uniform":
                mixtures[name] = BetaMixture.single(1.0, 1.0)
            elif name == "jeffreys":
                mixtures[name] = BetaMixture.single(0.5, 0.5)
            elif name == "sceptical":
                mixtures[name] = BetaMixture.from_mean_n(pooled, SCEPTICAL_ESS)
            elif name == "enthusiastic":
                mixtures[name] = BetaMixture.from_mean_n(pooled + (1 - pooled) / 2, ENTHUSIASTIC_ESS)
            elif name in ("map", "robust_map"):
                if map_result is None:
                    key = (tuple(comp_rows["study"]), tuple(comp_rows["r"].astype(int)),
                           tuple(comp_rows["n"].astype(int)))
                    if key not in fitted:
                        fitted[key] = map_prior(
                            comp_rows["r"].astype(int).to_numpy(), comp_rows["n"].astype(int).to_numpy(),
                            study_names=list(comp_rows["study"]), mu_prior_sd=mu_prior_sd, tau_prior=tau_prior,
                            tau_scale=tau_scale, settings=settings, robust_weight=robust_weight,
                            robust_mean=ROBUST_MEAN)
                    map_result = fitted[key]
                mixtures[name] = map_result.mixture if name == "map" else map_result.robust_mixture
        if map_result is not None:
            map_draws[endpoint] = map_result.idata
            all_ok &= map_result.diagnostics.ok
            if len(comp_rows) < 3:
                notes.append(f"only {len(comp_rows)} comparator studies: the between-study sd tau is informed "
                             "mostly by its prior, so the MAP prior's width reflects the tau prior")

        out_endpoints[endpoint] = {
            "r": r, "n": n, "observed_rate": r / n, "definition": row["definition"], "source_id": row["source_id"],
            "locator": row["locator"], "caveat": None if pd.isna(row["caveat"]) else row["caveat"],
            "evidence_type": row["evidence_type"], "clopper_pearson95": list(clopper_pearson(r, n)),
            "thresholds": thr, "comparators": comp_info,
            "map": None if map_result is None else map_result.as_dict(),
            "priors": {name: {"label": PRIOR_LABELS[name], **summarise_posterior(mix, r, n, thr, predictive_m)}
                       for name, mix in mixtures.items()},
            "notes": notes,
        }

    safety: dict[str, Any] = {}
    if include_safety:
        for endpoint in SAFETY_ENDPOINTS:
            row = _count_row(counts, endpoint)
            entry = safety_summary(endpoint, int(row["r"]), int(row["n"]), row["definition"])
            entry.update({"source_id": row["source_id"], "evidence_type": row["evidence_type"],
                          "caveat": None if pd.isna(row["caveat"]) else row["caveat"]})
            safety[endpoint] = entry

    summary = {
        "analysis": "binary",
        "endpoints": out_endpoints,
        "safety": safety,
        "diagnostics_ok": bool(all_ok),
        "settings": {
            "endpoints": endpoints, "priors": priors, "thresholds": [str(t) for t in thresholds],
            "comparators": studies, "tau_prior": tau_prior, "tau_scale": tau_scale, "mu_prior_sd": mu_prior_sd,
            "robust_weight": robust_weight, "robust_mean": ROBUST_MEAN, "predictive_m": predictive_m,
            "sceptical_ess": SCEPTICAL_ESS, "enthusiastic_ess": ENTHUSIASTIC_ESS,
        },
        "provenance": provenance(
            seed=settings.seed, sampler_settings=settings.as_dict(), analysis="binary",
            counts_sha256=sha256_of(counts.to_csv(index=False)),
            comparators_sha256=sha256_of(comp_table.to_csv(index=False)),
            comparator_set={e: [s["study"] for s in v["comparators"]["studies"]] for e, v in out_endpoints.items()},
        ),
    }
    return BinaryResult(summary=summary, map_draws=map_draws)


# --------------------------------------------------------------------------------------------------------------
# presentation
# --------------------------------------------------------------------------------------------------------------
def predictive_m_of(ep: dict) -> int | None:
    return next(iter(ep["priors"].values()))["predictive"]["m"] if ep["priors"] else None


def format_tables(result: BinaryResult):
    """One rich table per end point (rows: priors) plus a safety table, as a list of renderables."""
    from rich.table import Table
    from rich.text import Text

    items: list[Any] = []
    for endpoint, ep in result.summary["endpoints"].items():
        cp = ep["clopper_pearson95"]
        title = (f"{endpoint}: {ep['r']}/{ep['n']} (observed {ep['observed_rate']:.3f}; "
                 f"Clopper-Pearson exact 95% CI {cp[0]:.3f}-{cp[1]:.3f}); ESS = prior ELIR effective sample "
                 f"size; conflict p = Box's prior-predictive p; next {predictive_m_of(ep)}: predicted responders, "
                 f"mean (95% interval)")
        table = Table(title=title, title_justify="left")
        for col in ("prior", "prior mean", "ESS", "post. mean", "median", "95% ETI", "95% HDI"):
            table.add_column(col, justify="left" if col == "prior" else "right")
        for label in ep["thresholds"]:
            value = ep["thresholds"][label]
            table.add_column(f"P(>{value:.2f})" if label == "comparator" else f"P(>{label})", justify="right")
        table.add_column("conflict p", justify="right")
        m = next(iter(ep["priors"].values()))["predictive"]["m"] if ep["priors"] else None
        table.add_column(f"next {m}", justify="right")
        for name, pr in ep["priors"].items():
            ess = pr["ess"]["elir"]
            cells = [name, f"{pr['prior_mean']:.2f}", "-" if ess is None else f"{ess:.1f}", f"{pr['mean']:.3f}",
                     f"{pr['median']:.3f}", f"{pr['eti95'][0]:.2f}-{pr['eti95'][1]:.2f}",
                     f"{pr['hdi95'][0]:.2f}-{pr['hdi95'][1]:.2f}"]
            cells += [f"{pr['p_above'][label]:.3f}" for label in ep["thresholds"]]
            cells.append(f"{pr['conflict']['p_box']:.2f}")
            pred = pr["predictive"]
            cells.append(f"{pred['mean']:.1f} ({pred['interval95'][0]}-{pred['interval95'][1]})")
            table.add_row(*cells)
        items.append(table)
        if ep["map"] is not None:
            diag = ep["map"]["diagnostics"]
            studies = ", ".join(f"{s['study']} {s['r']}/{s['n']}" for s in ep["comparators"]["studies"])
            tau = ep["map"]["tau"]
            line = (f"MAP from {studies}; tau mean {tau['mean']:.3f} (97.5% {tau['q97.5']:.3f}); "
                    f"mixture: {BetaMixture.from_dict(ep['map']['mixture'])}")
            items.append(Text(line))
            if diag["ok"]:
                items.append(Text(f"MAP fit diagnostics passed (R-hat {diag['max_rhat']:.3f}, "
                                  f"min bulk ESS {diag['min_ess_bulk']:.0f}, {diag['divergences']} divergences)",
                                  style="green"))
            else:
                items.append(Text("MAP fit diagnostics FAILED: " + "; ".join(diag["failures"]), style="bold red"))
        for note in ep["notes"]:
            items.append(Text(f"note: {note}", style="yellow"))
    if result.summary.get("safety"):
        table = Table(title="Safety (exact posteriors)", title_justify="left")
        for col in ("event", "r/n", "prior", "mean", "95% ETI", "P(>5%)", "P(>10%)", "P(>20%)", "exact 95% CI"):
            table.add_column(col, justify="left" if col in ("event", "prior") else "right")
        for endpoint, sf in result.summary["safety"].items():
            for name, pr in sf["priors"].items():
                table.add_row(endpoint, f"{sf['r']}/{sf['n']}", name, f"{pr['mean']:.3f}",
                              f"{pr['eti95'][0]:.2f}-{pr['eti95'][1]:.2f}", f"{pr['p_above']['0.05']:.3f}",
                              f"{pr['p_above']['0.1']:.3f}", f"{pr['p_above']['0.2']:.3f}",
                              f"{sf['clopper_pearson95'][0]:.2f}-{sf['clopper_pearson95'][1]:.2f}")
        items.append(table)
        for endpoint, sf in result.summary["safety"].items():
            items.append(Text(sf["priors"]["uniform"]["plain_language"]))
    return items


typer_option = typer.Option


def cli(
    endpoint: Optional[list[str]] = typer_option(None, "--endpoint",
                                                 help=f"end point (repeatable): {', '.join(EFFICACY_ENDPOINTS)}"),
    prior: Optional[list[str]] = typer_option(None, "--prior", help=f"panel member (repeatable): {', '.join(PANEL)}"),
    comparators: Optional[str] = typer_option(None, "--comparators",
                                              help="comparator study names, comma separated (default: the "
                                                   "in_default_map rows per end point)"),
    tau_prior: str = typer_option("halfnormal", "--tau-prior", help=f"{', '.join(TAU_PRIORS)}"),
    tau_scale: float = typer_option(1.0, "--tau-scale", help="scale of the prior on the between-study sd"),
    robust_weight: float = typer_option(0.2, "--robust-weight", help="weight of Beta(1,1) in the robust MAP"),
    threshold: Optional[list[str]] = typer_option(None, "--threshold",
                                                  help="report P(rate > t) (repeatable; a number in (0,1) or "
                                                       "'comparator'); default 0.5 and comparator"),
    predict_m: int = typer_option(DEFAULT_PREDICTIVE_M, "--predict-m", help="predictive for the next m participants"),
    draws: int = typer_option(DEFAULT_SETTINGS.draws, "--draws", help="MCMC draws per chain (MAP fits)"),
    tune: int = typer_option(DEFAULT_SETTINGS.tune, "--tune", help="MCMC tuning steps per chain (MAP fits)"),
    seed: int = typer_option(DEFAULT_SETTINGS.seed, "--seed"),
    out: Optional[Path] = typer_option(None, "--out", help="output folder (binary.json, map_<endpoint>.nc)"),
    as_json: bool = typer_option(False, "--json", help="print the result as JSON"),
) -> None:
    """Posteriors of the binary end points under a panel of priors (exact), with MAP priors from comparators."""
    if draws < 1 or tune < 0:
        raise InputError("draws must be >= 1 and tune >= 0", option="--draws/--tune")
    settings = SamplerSettings(**{**DEFAULT_SETTINGS.as_dict(), "draws": draws, "tune": tune, "seed": seed})
    result = run_binary(
        endpoints=endpoint or EFFICACY_ENDPOINTS, priors=prior or PANEL,
        thresholds=threshold or DEFAULT_THRESHOLDS, comparators=None if comparators is None else [comparators],
        tau_prior=tau_prior, tau_scale=tau_scale, robust_weight=robust_weight, predictive_m=predict_m,
        settings=settings,
    )
    if out is not None:
        result.save(out)
    if as_json:
        print(to_json(result.to_dict()))
    else:
        from rich.console import Console

        # a pipe or file gets the full width (no wrapping); a terminal gets its own width
        console = Console() if sys.stdout.isatty() else Console(width=160)
        for item in format_tables(result):
            console.print(item)
        if out is not None:
            console.print(f"written: {Path(out) / RESULT_FILE}")
    if not result.diagnostics_ok:
        print("isletbayes: warning: a MAP fit FAILED its convergence diagnostics (see above)", file=sys.stderr)
