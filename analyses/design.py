r"""Phase 3 sample-size planning: design prior vs analysis prior, exact OC and assurance, interims, simulations.

Two priors are kept apart (O'Hagan, Stevens and Campbell 2005; Spiegelhalter, Abrams and Myles 2004, ch. 6):

* the **design prior** is what we believe the true rate of the phase 3 population to be. By default it is the
  phase 1/2 posterior under a chosen panel prior (uniform: 10/12 insulin independent gives Beta(11, 3)),
  optionally discounted to a smaller effective sample size with a power prior, Beta(a_0 + d r, b_0 + d (n - r))
  with :math:`d = (\text{ESS} - a_0 - b_0) / n` (Ibrahim and Chen 2000, Stat Sci 15:46-60), and/or robustified
  with a uniform component of weight w (Schmidli et al. 2014, Biometrics 70:1023-1032). It drives assurance.
* the **analysis prior** is what the phase 3 analysis itself will use (default uniform). It drives the decision
  rule, hence the boundaries, type I error and power.

Binary end points are computed exactly (:mod:`isletbayes.models.operating_characteristics`); the C-peptide end point and insulin
independence driven by graft function are simulated (:mod:`isletbayes.analyses.simulation`) from the posterior of
the C-peptide model fitted to the published cohort means.

CLI: ``isletbayes design`` (see :func:`cli`). ``run_design(...) -> DesignResult``; ``DesignResult.save(outdir)``
writes ``design.json`` (everything, with provenance) and ``design_table.csv``; ``DesignResult.load(outdir)`` reads
them back.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import typer

from isletbayes.analyses.provenance import provenance
from isletbayes.data.errors import InputError
from isletbayes.models.validation import ModelInputError
from isletbayes.data.io import write_json_atomic, write_text_atomic
from isletbayes.models import operating_characteristics as exact
from isletbayes.models.mixtures import BetaMixture
from isletbayes.models.cpeptide_endpoint import (DEFAULT_MIN_FRACTION_ABOVE, DEFAULT_THRESHOLD_PMOL_L,
                                                 check_decision_settings)

BINARY_ENDPOINTS = ("insulin_independence", "composite_primary")
ENDPOINTS = (*BINARY_ENDPOINTS, "cpeptide")
PANEL_PRIORS = {"uniform": (1.0, 1.0), "jeffreys": (0.5, 0.5)}
RESULT_FILE = "design.json"
TABLE_FILE = "design_table.csv"


# --------------------------------------------------------------------------------------------------------------
# priors
# --------------------------------------------------------------------------------------------------------------
def parse_prior(spec: str, option: str) -> BetaMixture:
    """'uniform' | 'jeffreys' | 'beta:A,B' | 'mix:W,A,B;W,A,B;...' -> BetaMixture (InputError naming ``option``)."""
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
        raise InputError(f"cannot read prior {spec!r}: {err}", option=option) from err
    raise InputError(f"unknown prior {spec!r}; use uniform, jeffreys, beta:A,B or mix:W,A,B;W,A,B", option=option)


def make_design_prior(r: int, n: int, spec: str = "phase12", discount_ess: float | None = None,
                      robust_weight: float = 0.0) -> tuple[BetaMixture, dict]:
    """The design prior and a description of how it was built.

    ``spec``: 'phase12' (phase 1/2 posterior under a uniform panel prior), 'phase12-jeffreys', or any
    :func:`parse_prior` spec used as is. ``discount_ess`` (phase12 only) down-weights the phase 1/2 data with a power
    prior so that the design prior's ESS is the given number; ``robust_weight`` adds a uniform component.
    """
    text = str(spec).strip().lower()
    desc: dict[str, Any] = {"spec": spec, "phase12_r": r, "phase12_n": n}
    if text in ("phase12", "phase12-uniform", "phase12-jeffreys"):
        panel = "jeffreys" if text.endswith("jeffreys") else "uniform"
        a0, b0 = PANEL_PRIORS[panel]
        weight = 1.0
        if discount_ess is not None:
            if not a0 + b0 < discount_ess <= a0 + b0 + n:
                raise InputError(f"must lie in ({a0 + b0:g}, {a0 + b0 + n:g}] (the panel prior's ESS up to the "
                                 f"full phase 1/2 posterior's), got {discount_ess:g}", option="--discount-ess")
            weight = (discount_ess - a0 - b0) / n
        prior = BetaMixture.single(a0 + weight * r, b0 + weight * (n - r))
        desc.update(panel_prior=panel, power_prior_weight=weight)
    else:
        if discount_ess is not None:
            raise InputError("applies only to a phase12 design prior", option="--discount-ess")
        prior = parse_prior(spec, "--design-prior")
    if robust_weight:
        if not 0 < robust_weight < 1:
            raise InputError(f"must lie in [0, 1), got {robust_weight:g}", option="--design-robust")
        prior = prior.robustify(robust_weight, mean=0.5, n=1.0)
    desc.update(robust_weight=robust_weight, prior=prior.to_dict(), mean=prior.mean(),
                ess_moment=prior.ess("moment"))
    return prior, desc


# --------------------------------------------------------------------------------------------------------------
# result
# --------------------------------------------------------------------------------------------------------------
@dataclass
class DesignResult:
    """Everything a design run produced; JSON round-trips through save/load."""

    settings: dict
    design_prior: dict | None
    analysis_prior: dict | None
    table: list[dict]  # one row per n: boundary, type I, power at p1, assurance, targets met
    recommendation: dict
    power_curve: dict | None = None  # theta grid and P(success | theta) per n
    interim: list[dict] | None = None
    simulation: dict | None = None
    provenance: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"settings": self.settings, "design_prior": self.design_prior, "analysis_prior": self.analysis_prior,
                "table": self.table, "recommendation": self.recommendation, "power_curve": self.power_curve,
                "interim": self.interim, "simulation": self.simulation, "provenance": self.provenance}

    def save(self, outdir: str | Path) -> Path:
        outdir = Path(outdir)
        write_json_atomic(outdir / RESULT_FILE, self.to_dict())
        if self.table:
            cols = list(self.table[0])
            lines = [",".join(cols)] + [",".join("" if row[c] is None else str(row[c]) for c in cols)
                                        for row in self.table]
            write_text_atomic(outdir / TABLE_FILE, "\n".join(lines) + "\n")
        return outdir / RESULT_FILE

    @classmethod
    def load(cls, outdir: str | Path) -> "DesignResult":
        path = Path(outdir) / RESULT_FILE
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            raise InputError("no design result here (run `isletbayes design --out DIR` first)", file=path) from err
        except json.JSONDecodeError as err:
            raise InputError(f"not valid JSON: {err.msg}", file=path, line=err.lineno) from err
        return cls(**d)


# --------------------------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------------------------
def _phase12_count(endpoint: str) -> tuple[int, int]:
    from isletbayes.data import published_count

    return published_count(endpoint)


def _interim_rows(analysis_prior, table_n, boundaries, fractions, theta_l, p0, p1, design_prior) -> list[dict]:
    """Exact OC of each n with futility looks at the given fractions (assurance by quadrature over the design prior)."""
    nodes, weights = exact._quadrature([], n_panels=100, order=16)
    dens = np.asarray(design_prior.pdf(nodes), dtype=float) if design_prior is not None else None
    rows = []
    for n, c in zip(table_n, boundaries):
        looks = sorted({int(round(f * n)) for f in fractions})
        looks = [k for k in looks if 0 < k < n]
        if not looks:
            continue
        des = exact.interim_design(analysis_prior, looks, int(n), int(c), theta_l, [p0, p1])
        row = {"n": int(n), "looks": looks, "futility_boundaries": des.futility,
               "type1": float(des.success[0]), "power_p1": float(des.success[1]),
               "early_stop_p0": float(des.early_stop[0]), "early_stop_p1": float(des.early_stop[1]),
               "expected_n_p0": float(des.expected_n[0]), "expected_n_p1": float(des.expected_n[1])}
        if dens is not None:
            oc = exact.interim_oc(looks, int(n), int(c), des.futility, nodes)
            row["assurance"] = float(np.sum(weights * dens * oc["success"]))
        rows.append(row)
    return rows


def run_design(
    *,
    endpoint: str = "insulin_independence",
    rule: str = "bayes",
    p0: float = 0.44,
    p1: float = 0.70,
    gamma: float = 0.975,
    alpha: float = 0.025,
    design_prior: str = "phase12",
    discount_ess: float | None = None,
    design_robust: float = 0.0,
    analysis_prior: str = "uniform",
    n_min: int = 20,
    n_max: int = 100,
    n_step: int = 1,
    power_target: float = 0.8,
    assurance_target: float = 0.8,
    interim: list[float] | None = None,
    futility: float = 0.05,
    simulate: int = 0,
    simulate_n: int | None = None,
    cpeptide_threshold: float = DEFAULT_THRESHOLD_PMOL_L,
    cpeptide_fraction: float = DEFAULT_MIN_FRACTION_ABOVE,
    workers: int = 1,
    scheduler: str | None = None,
    seed: int = 20250620,
    out: str | Path | None = None,
    phase12: tuple[int, int] | None = None,
    progress: bool = False,
) -> DesignResult:
    """Exact OC/assurance over the n grid (binary end points), optional interims and simulation-based assurance."""
    _validate(endpoint, rule, p0, p1, gamma, alpha, n_min, n_max, n_step, power_target, assurance_target,
              interim, futility, simulate, workers)
    if simulate and endpoint == "cpeptide":
        try:
            check_decision_settings(cpeptide_threshold, cpeptide_fraction, gamma)
        except ModelInputError as err:
            option = {"threshold_pmol_l": "--cpeptide-threshold", "min_fraction_above": "--cpeptide-fraction",
                      "gamma": "--gamma"}.get(err.parameter)
            raise InputError(err.message, option=option) from None
    settings = {k: v for k, v in locals().items() if k not in ("progress", "out")}
    settings["out"] = None if out is None else str(out)
    n_values = np.arange(n_min, n_max + 1, n_step)
    result = DesignResult(settings=settings, design_prior=None, analysis_prior=None, table=[], recommendation={})

    if endpoint in BINARY_ENDPOINTS:
        r12, n12 = phase12 if phase12 is not None else _phase12_count(endpoint)
        dprior, ddesc = make_design_prior(r12, n12, design_prior, discount_ess, design_robust)
        aprior = parse_prior(analysis_prior, "--analysis-prior")
        result.design_prior = ddesc
        result.analysis_prior = {"spec": analysis_prior, "prior": aprior.to_dict()}
        oc = exact.single_arm_oc(n_values, rule=rule, p0=p0, gamma=gamma, alpha=alpha, analysis_prior=aprior,
                                 design_prior=dprior, theta=np.round(np.linspace(0, 1, 101), 2))
        power_p1 = oc.power_at(p1)
        meets_type1 = oc.type1 <= alpha
        meets_power = power_p1 >= power_target
        meets_assurance = oc.assurance >= assurance_target
        for i, n in enumerate(n_values):
            result.table.append({
                "n": int(n), "boundary": int(oc.boundary[i]), "type1": float(oc.type1[i]),
                "power_p1": float(power_p1[i]), "assurance": float(oc.assurance[i]),
                "meets_type1": bool(meets_type1[i]), "meets_power": bool(meets_power[i]),
                "meets_assurance": bool(meets_assurance[i]),
            })
        result.power_curve = {"theta": oc.theta.tolist(), "n": n_values.tolist(), "power": oc.power.tolist()}
        result.recommendation = {
            "type1_power": exact.smallest_n(n_values, meets_type1 & meets_power),
            "type1_power_assurance": exact.smallest_n(n_values, meets_type1 & meets_power & meets_assurance),
            "assurance_only": exact.smallest_n(n_values, meets_assurance),
            "max_assurance": {"n": int(n_values[np.argmax(oc.assurance)]), "assurance": float(oc.assurance.max())},
            "assurance_limit": float(dprior.sf(p0)) if rule == "bayes" else None,
        }
        if interim:
            result.interim = _interim_rows(aprior, n_values, oc.boundary, interim, futility, p0, p1, dprior)

    if simulate:
        result.simulation = _simulate(result, endpoint=endpoint, rule=rule, p0=p0, gamma=gamma, alpha=alpha,
                                      analysis_prior=analysis_prior, n_values=n_values, simulate=simulate,
                                      simulate_n=simulate_n, threshold=cpeptide_threshold,
                                      fraction=cpeptide_fraction, workers=workers,
                                      scheduler=scheduler, seed=seed, out=out, progress=progress)
    result.provenance = provenance(seed=seed, **{k: v for k, v in settings.items() if k != "seed"})
    if out is not None:
        result.save(out)
    return result


def _validate(endpoint, rule, p0, p1, gamma, alpha, n_min, n_max, n_step, power_target, assurance_target,
              interim, futility, simulate, workers) -> None:
    if endpoint not in ENDPOINTS:
        raise InputError(f"unknown end point {endpoint!r}; choose from {', '.join(ENDPOINTS)}", option="--endpoint")
    if rule not in ("bayes", "binomial"):
        raise InputError(f"unknown rule {rule!r}; choose bayes or binomial", option="--rule")
    for name, value in (("--p0", p0), ("--p1", p1), ("--gamma", gamma), ("--alpha", alpha),
                        ("--power-target", power_target), ("--assurance-target", assurance_target)):
        if not (isinstance(value, (int, float)) and 0 < value < 1):
            raise InputError(f"must lie strictly between 0 and 1, got {value!r}", option=name)
    if not 0 <= futility < 1:
        raise InputError(f"must lie in [0, 1), got {futility!r}", option="--futility")
    if n_min < 1:
        raise InputError(f"must be >= 1, got {n_min}", option="--n-min")
    if n_max < n_min:
        raise InputError(f"must be >= --n-min ({n_min}), got {n_max}", option="--n-max")
    if n_step < 1:
        raise InputError(f"must be >= 1, got {n_step}", option="--n-step")
    if n_max > 5000:
        raise InputError(f"must be <= 5000, got {n_max}", option="--n-max")
    if interim and any(not 0 < f < 1 for f in interim):
        raise InputError(f"interim looks are fractions of n strictly between 0 and 1, got {interim}",
                         option="--interim")
    if simulate < 0:
        raise InputError(f"must be >= 0, got {simulate}", option="--simulate")
    if workers < 1:
        raise InputError(f"must be >= 1, got {workers}", option="--workers")
    if endpoint == "cpeptide" and not simulate:
        raise InputError("the C-peptide end point has no exact answer: give --simulate N", option="--simulate")


def cpeptide_posterior_draws(seed: int, n_draws: int = 4000):
    """Posterior draws of the C-peptide model (with the graft-function link) fitted to the published cohort means
    and the 10/12 insulin-independence count; the fit's diagnostics are returned to be reported."""
    from isletbayes.data import load_cpeptide_means
    from isletbayes.models.cpeptide_trajectory import CohortMeans, build_means_model, posterior_parameter_draws
    from isletbayes.models.sampling import SamplerSettings, check_diagnostics, fit

    df = load_cpeptide_means()
    df = df[df["used_by_default"]] if "used_by_default" in df.columns else df
    r, n = _phase12_count("insulin_independence")
    means = CohortMeans(days=df["day"].to_numpy(float), means=df["mean_pmol_l"].to_numpy(float),
                        n_participants=int(df["n"].iloc[0]), lod=float(df["lod_pmol_l"].iloc[0]), ii_count=r)
    settings = SamplerSettings(draws=1000, tune=1000, chains=4, cores=1, target_accept=0.99, nuts_sampler="nutpie",
                               seed=seed)
    idata = fit(build_means_model(means), settings)
    diag = check_diagnostics(idata, var_names=["plateau_pmol_l", "t_half_days", "sd_log_plateau", "sd_log_rate",
                                               "measurement_sd", "alpha", "beta"])
    draws = posterior_parameter_draws(idata, n_draws, np.random.default_rng(seed))
    return draws, diag, settings


def _simulate(result: DesignResult, *, endpoint, rule, p0, gamma, alpha, analysis_prior, n_values, simulate,
              simulate_n, threshold, fraction, workers, scheduler, seed, out, progress) -> dict:
    from isletbayes.analyses import simulation as sim

    if out is None:
        raise InputError("simulations are written as they finish and need an output folder", option="--out")
    if simulate_n is None:
        rec = result.recommendation.get("type1_power", {}) if result.recommendation else {}
        simulate_n = rec.get("first") or int(n_values[-1])
    draws, diag, fit_settings = cpeptide_posterior_draws(seed)
    simulator = sim.TrialSimulator(int(simulate_n))
    if endpoint == "cpeptide":
        analysis = sim.CpeptideDay365Analysis(threshold_pmol_l=threshold, min_fraction_above=fraction, gamma=gamma)
    else:
        prior = parse_prior(analysis_prior, "--analysis-prior")
        analysis = sim.InsulinIndependenceAnalysis(rule=rule, p0=p0, gamma=gamma, alpha=alpha,
                                                   analysis_prior=prior.to_dict())
    summary = sim.run_simulations(simulator, analysis, draws, n_sims=simulate, seed=seed,
                                  outdir=Path(out) / "simulation", workers=workers, scheduler=scheduler,
                                  progress=progress)
    d = summary.as_dict()
    d.update(n=int(simulate_n), design_prior_fit={"diagnostics": diag.as_dict(), "sampler": fit_settings.as_dict()})
    return d


# --------------------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------------------
def _fractions(text: Optional[str]) -> list[float] | None:
    if not text:
        return None
    try:
        return [float(x) for x in re.split(r"[,\s]+", text.strip()) if x]
    except ValueError as err:
        raise InputError(f"expected comma-separated fractions such as 0.5 or 0.33,0.67, got {text!r}",
                         option="--interim") from err


def format_table(result: DesignResult) -> str:
    """A plain-text table of the exact OC per n (every n: the sawtooth is visible)."""
    s = result.settings
    lines = []
    if result.design_prior:
        dp = result.design_prior
        lines.append(f"design prior: {dp['spec']} -> {_mix_label(dp['prior'])} (mean {dp['mean']:.3f}, "
                     f"ESS {dp['ess_moment']:.1f}); analysis prior: {result.analysis_prior['spec']} -> "
                     f"{_mix_label(result.analysis_prior['prior'])}")
        rule = (f"P(rate > {s['p0']:g} | data) >= {s['gamma']:g}" if s["rule"] == "bayes"
                else f"exact binomial test of rate <= {s['p0']:g} at one-sided alpha {s['alpha']:g}")
        lines.append(f"end point: {s['endpoint']}; success: {rule}; power at p1 = {s['p1']:g}")
        lines.append(f"{'n':>5} {'wins at':>8} {'type I':>8} {'power':>7} {'assurance':>10}  targets")
        for row in result.table:
            marks = "".join(m if ok else "-" for m, ok in (("T", row["meets_type1"]), ("P", row["meets_power"]),
                                                            ("A", row["meets_assurance"])))
            lines.append(f"{row['n']:>5} {row['boundary']:>8} {row['type1']:>8.4f} {row['power_p1']:>7.4f} "
                         f"{row['assurance']:>10.4f}  {marks}")
        rec = result.recommendation
        lines.append("targets: T type I <= alpha, P power >= target at p1, A assurance >= target")
        for key, label in (("type1_power", "type I + power"), ("type1_power_assurance", "type I + power + assurance")):
            r = rec[key]
            lines.append(f"smallest n meeting {label}: {r['first'] if r['first'] is not None else 'none in grid'}"
                         f" (all n from {r['stable'] if r['stable'] is not None else '-'} on)")
        lines.append(f"highest assurance in grid: {rec['max_assurance']['assurance']:.4f} at n = "
                     f"{rec['max_assurance']['n']}" + (f"; limit as n grows: P(rate > p0) under the design prior = "
                                                      f"{rec['assurance_limit']:.4f}" if rec['assurance_limit'] else ""))
    if result.interim:
        lines.append("with futility looks (Lee & Liu predictive probability < "
                     f"{s['futility']:g}):")
        lines.append(f"{'n':>5} {'looks':>12} {'stop if <=':>12} {'type I':>8} {'power':>7} {'PET(p0)':>8} "
                     f"{'E[N](p0)':>9} {'assurance':>10}")
        for row in result.interim:
            lines.append(f"{row['n']:>5} {','.join(map(str, row['looks'])):>12} "
                         f"{','.join(map(str, row['futility_boundaries'])):>12} {row['type1']:>8.4f} "
                         f"{row['power_p1']:>7.4f} {row['early_stop_p0']:>8.4f} {row['expected_n_p0']:>9.2f} "
                         f"{row.get('assurance', float('nan')):>10.4f}")
    if result.simulation:
        sm = result.simulation
        lines.append(f"simulation-based assurance at n = {sm['n']}: {sm['assurance']:.4f} "
                     f"(MCSE {sm['mcse']:.4f}, {sm['n_success']}/{sm['n_sims']} simulated trials succeeded)")
        if sm["n_diagnostic_failures"]:
            lines.append(f"FAILED diagnostics in {sm['n_diagnostic_failures']} of {sm['n_sims']} refits")
        dfit = sm["design_prior_fit"]["diagnostics"]
        if not dfit["ok"]:
            lines.append("FAILED diagnostics of the C-peptide fit the simulations draw from: "
                         + "; ".join(dfit["failures"]))
    return "\n".join(lines)


def _mix_label(d: dict) -> str:
    parts = [f"{w:.2f} Beta({a:g}, {b:g})" for w, a, b in zip(d["weights"], d["a"], d["b"])]
    return parts[0].split(" ", 1)[1] if len(parts) == 1 else " + ".join(parts)


typer_option = typer.Option


def cli(
    endpoint: str = typer_option("insulin_independence", "--endpoint",
                                 help="insulin_independence, composite_primary or cpeptide"),
    rule: str = typer_option("bayes", "--rule", help="bayes: P(rate > p0 | data) >= gamma; binomial: exact test"),
    p0: float = typer_option(0.44, "--p0", help="null rate (default: Shapiro 2006 donor-islet 16/36 = 0.44)"),
    p1: float = typer_option(0.70, "--p1", help="rate at which power is reported"),
    gamma: float = typer_option(0.975, "--gamma", help="posterior probability threshold of the Bayesian rule"),
    alpha: float = typer_option(0.025, "--alpha", help="one-sided type I error target (and binomial test level)"),
    design_prior: str = typer_option("phase12", "--design-prior",
                                     help="phase12, phase12-jeffreys, uniform, beta:A,B or mix:W,A,B;..."),
    discount_ess: Optional[float] = typer_option(None, "--discount-ess",
                                                 help="down-weight phase 1/2 to this prior ESS (power prior)"),
    design_robust: float = typer_option(0.0, "--design-robust", help="weight of a uniform robust component"),
    analysis_prior: str = typer_option("uniform", "--analysis-prior", help="uniform, jeffreys, beta:A,B, mix:..."),
    n_min: int = typer_option(20, "--n-min"),
    n_max: int = typer_option(100, "--n-max"),
    n_step: int = typer_option(1, "--n-step"),
    power_target: float = typer_option(0.8, "--power-target"),
    assurance_target: float = typer_option(0.8, "--assurance-target"),
    interim: Optional[str] = typer_option(None, "--interim", help="futility looks as fractions of n, e.g. 0.5"),
    futility: float = typer_option(0.05, "--futility", help="stop if the predictive probability is below this"),
    simulate: int = typer_option(0, "--simulate", help="number of simulated trials (simulation-based assurance)"),
    simulate_n: Optional[int] = typer_option(None, "--simulate-n", help="n of the simulated trials"),
    cpeptide_threshold: float = typer_option(DEFAULT_THRESHOLD_PMOL_L, "--cpeptide-threshold",
                                             help="pmol/L, C-peptide end point: stimulated C-peptide level at day 365"),
    cpeptide_fraction: float = typer_option(DEFAULT_MIN_FRACTION_ABOVE, "--cpeptide-fraction",
                                            help="C-peptide end point: fraction of participants above the level"),
    workers: int = typer_option(1, "--workers", help="local worker processes for simulations"),
    scheduler: Optional[str] = typer_option(None, "--scheduler", help="Dask scheduler address, e.g. tcp://h:8786"),
    seed: int = typer_option(20250620, "--seed"),
    out: Optional[Path] = typer_option(None, "--out", help="output folder (design.json, design_table.csv)"),
    as_json: bool = typer_option(False, "--json", help="print the result as JSON"),
) -> None:
    """Phase 3 sample size: exact OC and assurance over a grid of n, interims, simulation-based assurance."""
    try:
        result = run_design(
            endpoint=endpoint, rule=rule, p0=p0, p1=p1, gamma=gamma, alpha=alpha, design_prior=design_prior,
            discount_ess=discount_ess, design_robust=design_robust, analysis_prior=analysis_prior, n_min=n_min,
            n_max=n_max, n_step=n_step, power_target=power_target, assurance_target=assurance_target,
            interim=_fractions(interim), futility=futility, simulate=simulate, simulate_n=simulate_n,
            cpeptide_threshold=cpeptide_threshold, cpeptide_fraction=cpeptide_fraction, workers=workers,
            scheduler=scheduler, seed=seed, out=out,
            progress=not as_json and sys.stderr.isatty(),
        )
    except KeyboardInterrupt:
        done = ""
        if out is not None:
            from isletbayes.analyses.simulation import finished_indices

            done = f" {len(finished_indices(Path(out) / 'simulation'))} finished simulations are kept in {out};"
        print(f"isletbayes: interrupted;{done} rerun the same command to resume", file=sys.stderr)
        raise
    if as_json:
        from isletbayes.data.io import to_json

        print(to_json(result.to_dict()))
    else:
        print(format_table(result))
        if out is not None:
            print(f"written: {Path(out) / RESULT_FILE}, {Path(out) / TABLE_FILE}")
