r"""Phase 3 sample-size planning: design prior vs analysis prior, exact OC and assurance, interims, simulations.

Two priors are kept apart (O'Hagan, Stevens and Campbell 2005; Spiegelhalter, Abrams and Myles 2004, ch. 6):

* the **design prior** is what we believe the true rate of the phase 3 population to be. By default it is the
  phase 1/2 posterior under a uniform prior (10/12 insulin independent gives Beta(11, 3)), optionally discounted
  to a smaller effective sample size with a power prior, Beta(a_0 + d r, b_0 + d (n - r)) with
  :math:`d = (\text{ESS} - a_0 - b_0) / n` (Ibrahim and Chen 2000, Stat Sci 15:46-60), and/or robustified with a
  uniform component of weight w (Schmidli et al. 2014, Biometrics 70:1023-1032). It drives assurance.
* the **analysis prior** is what the phase 3 analysis itself will use (default uniform). It drives the decision
  rule, hence the boundaries, type I error and power.

Binary end points are computed exactly (:mod:`isletbayes.models.operating_characteristics`); the C-peptide end
point and insulin independence driven by graft function are simulated (:mod:`isletbayes.analyses.simulation`)
from draws of the C-peptide re-analysis posterior handed in by the caller.

Entry point: :func:`run_design` (the ``design`` configuration block in, :class:`DesignResult` out).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
import pandas as pd
from pydantic import Field

from isletbayes.analyses.config import DesignConfig
from isletbayes.analyses.provenance import provenance
from isletbayes.analyses.results import AnalysisResult, BetaMix, FitCheck, Frame, ResultModel
from isletbayes.data.errors import InputError
from isletbayes.models import operating_characteristics as oc
from isletbayes.models.mixtures import BetaMixture
from isletbayes.models.validation import ModelInputError

BINARY_ENDPOINTS = ("insulin_independence", "composite_primary")
PANEL_PRIORS = {"uniform": (1.0, 1.0), "jeffreys": (0.5, 0.5)}


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


class PriorSpec(ResultModel):
    """A prior as asked for (``spec``) and as built."""

    spec: str
    mixture: BetaMix
    mean: float
    ess_moment: float
    description: dict[str, Any] = Field(default_factory=dict)


def make_design_prior(r: int, n: int, spec: str = "phase12", discount_ess: float | None = None,
                      robust_weight: float = 0.0) -> PriorSpec:
    """The design prior and how it was built.

    ``spec``: 'phase12' (phase 1/2 posterior under a uniform prior), 'phase12-jeffreys', or any
    :func:`parse_prior` spec used as is. ``discount_ess`` (phase12 only) down-weights the phase 1/2 data with a power
    prior so that the design prior's ESS is the given number; ``robust_weight`` adds a uniform component.
    """
    text = str(spec).strip().lower()
    desc: dict[str, Any] = {"phase12_r": r, "phase12_n": n}
    if text in ("phase12", "phase12-uniform", "phase12-jeffreys"):
        panel = "jeffreys" if text.endswith("jeffreys") else "uniform"
        a0, b0 = PANEL_PRIORS[panel]
        weight = 1.0
        if discount_ess is not None:
            if not a0 + b0 < discount_ess <= a0 + b0 + n:
                raise InputError(f"must lie in ({a0 + b0:g}, {a0 + b0 + n:g}] (the panel prior's ESS up to the "
                                 f"full phase 1/2 posterior's), got {discount_ess:g}", key="design.discount_ess")
            weight = (discount_ess - a0 - b0) / n
        prior = BetaMixture.single(a0 + weight * r, b0 + weight * (n - r))
        desc.update(panel_prior=panel, power_prior_weight=weight)
    else:
        if discount_ess is not None:
            raise InputError("applies only to a phase12 design prior", key="design.discount_ess")
        prior = parse_prior(spec, "design.design_prior")
    if robust_weight:
        prior = prior.robustify(robust_weight, mean=0.5, n=1.0)
    desc["robust_weight"] = robust_weight
    return PriorSpec(spec=spec, mixture=prior, mean=prior.mean(), ess_moment=prior.ess("moment"), description=desc)


# --------------------------------------------------------------------------------------------------------------
# result
# --------------------------------------------------------------------------------------------------------------
class SmallestN(ResultModel):
    """The smallest n meeting a set of targets, and the n from which every larger n in the grid meets them
    (both: because of the sawtooth a design at the first n may fail at n + 1)."""

    first: int | None = None
    stable: int | None = None


class Recommendation(ResultModel):
    type1_power: SmallestN
    type1_power_assurance: SmallestN
    assurance_only: SmallestN
    max_assurance_n: int
    max_assurance: float
    assurance_limit: float | None = None  # P(rate > p0) under the design prior: assurance as n grows (Bayes rule)


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


class DesignResult(AnalysisResult):
    """Result of :func:`run_design`."""

    JSON_FILE: ClassVar[str] = "design.json"
    CSV: ClassVar[dict[str, str]] = {"table": "design_table.csv"}
    ANALYSIS: ClassVar[str] = "design"

    settings: dict[str, Any]
    design_prior: PriorSpec | None = None
    analysis_prior: PriorSpec | None = None
    table: Frame = Field(default_factory=pd.DataFrame)  # one row per n
    recommendation: Recommendation | None = None
    power_curve: Frame | None = None  # P(success | theta): index theta, one column per n
    interim: Frame | None = None
    simulation: SimulationSummary | None = None

    def fit_checks(self) -> list[FitCheck]:
        if self.simulation is None or self.simulation.source_fit is None:
            return []
        return [self.simulation.source_fit]

    def row(self, n: int) -> pd.Series | None:
        return self.table.loc[n] if n in self.table.index else None


# --------------------------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------------------------
def _interim_table(analysis_prior, n_values, boundaries, fractions, theta_l, p0, p1, design_prior) -> pd.DataFrame:
    """Exact OC of each n with futility looks at the given fractions (assurance by quadrature over the design
    prior)."""
    nodes, weights = oc._quadrature([], n_panels=100, order=16)
    dens = np.asarray(design_prior.pdf(nodes), dtype=float)
    rows = []
    for n, c in zip(n_values, boundaries):
        looks = sorted({int(round(f * n)) for f in fractions})
        looks = [k for k in looks if 0 < k < n]
        if not looks:
            continue
        des = oc.interim_design(analysis_prior, looks, int(n), int(c), theta_l, [p0, p1])
        success = oc.interim_oc(looks, int(n), int(c), des.futility, nodes)["success"]
        rows.append({"n": int(n), "looks": ",".join(map(str, looks)),
                     "futility_boundaries": ",".join(map(str, des.futility)),
                     "type1": float(des.success[0]), "power_p1": float(des.success[1]),
                     "early_stop_p0": float(des.early_stop[0]), "early_stop_p1": float(des.early_stop[1]),
                     "expected_n_p0": float(des.expected_n[0]), "expected_n_p1": float(des.expected_n[1]),
                     "assurance": float(np.sum(weights * dens * success))})
    return pd.DataFrame(rows).set_index("n") if rows else pd.DataFrame()


def _smallest(n_values, ok) -> SmallestN:
    return SmallestN(**oc.smallest_n(n_values, ok))


def run_design(config: DesignConfig, *, seed: int, phase12: tuple[int, int] | None = None,
               simulation_draws: Sequence | None = None, simulation_source: FitCheck | None = None,
               simulation_dir: str | Path | None = None,
               on_record: Callable[[dict], None] | None = None) -> DesignResult:
    """Exact OC/assurance over the n grid (binary end points), optional interims and simulation-based assurance.

    ``phase12``: the phase 1/2 (r, n) the design prior starts from (binary end points). For ``config.simulate``
    > 0: ``simulation_draws`` are draws of the C-peptide model's population parameters (the re-analysis
    posterior), ``simulation_source`` that fit's diagnostics, and ``simulation_dir`` the folder where each
    finished simulation is kept (a rerun resumes); ``on_record`` is called after each one.
    """
    n_values = np.arange(config.n_min, config.n_max + 1, config.n_step)
    result = DesignResult(settings=config.model_dump(mode="json"))
    if config.endpoint in BINARY_ENDPOINTS:
        if phase12 is None:
            raise InputError(f"the design needs the phase 1/2 count of {config.endpoint}", key="design.endpoint")
        dprior = make_design_prior(*phase12, config.design_prior, config.discount_ess, config.design_robust)
        aprior_mix = parse_prior(config.analysis_prior, "design.analysis_prior")
        aprior = PriorSpec(spec=config.analysis_prior, mixture=aprior_mix, mean=aprior_mix.mean(),
                           ess_moment=aprior_mix.ess("moment"))
        result.design_prior, result.analysis_prior = dprior, aprior
        theta = np.round(np.linspace(0, 1, 101), 2)
        ocs = oc.single_arm_oc(n_values, rule=config.rule, p0=config.p0, gamma=config.gamma, alpha=config.alpha,
                               analysis_prior=aprior_mix, design_prior=dprior.mixture, theta=theta)
        power_p1 = ocs.power_at(config.p1)
        meets_type1 = ocs.type1 <= config.alpha
        meets_power = power_p1 >= config.power_target
        meets_assurance = ocs.assurance >= config.assurance_target
        result.table = pd.DataFrame({
            "boundary": ocs.boundary.astype(int), "type1": ocs.type1, "power_p1": power_p1,
            "assurance": ocs.assurance, "meets_type1": meets_type1, "meets_power": meets_power,
            "meets_assurance": meets_assurance}, index=pd.Index(n_values.tolist(), name="n"))
        result.power_curve = pd.DataFrame(ocs.power.T, index=pd.Index(theta.tolist(), name="theta"),
                                          columns=[str(n) for n in n_values])
        best = int(np.argmax(ocs.assurance))
        result.recommendation = Recommendation(
            type1_power=_smallest(n_values, meets_type1 & meets_power),
            type1_power_assurance=_smallest(n_values, meets_type1 & meets_power & meets_assurance),
            assurance_only=_smallest(n_values, meets_assurance),
            max_assurance_n=int(n_values[best]), max_assurance=float(ocs.assurance[best]),
            assurance_limit=float(dprior.mixture.sf(config.p0)) if config.rule == "bayes" else None)
        if config.interim:
            result.interim = _interim_table(aprior_mix, n_values, ocs.boundary, config.interim, config.futility,
                                            config.p0, config.p1, dprior.mixture)
    if config.simulate:
        result.simulation = _simulate(result, config, seed, n_values, simulation_draws, simulation_source,
                                      simulation_dir, on_record)
    result.provenance = provenance(seed=seed, design=config.model_dump(mode="json"), phase12=phase12)
    return result


def _simulate(result: DesignResult, config: DesignConfig, seed: int, n_values, draws, source, folder,
              on_record) -> SimulationSummary:
    from isletbayes.analyses import simulation as sim

    if folder is None:
        raise InputError("simulations are written as they finish and need an output folder", key="design.simulate")
    if not draws:
        raise InputError("simulations need draws of the C-peptide re-analysis posterior", key="design.simulate")
    n = config.simulate_n
    if n is None:
        first = result.recommendation.type1_power.first if result.recommendation else None
        n = first or int(n_values[-1])
    simulator = sim.TrialSimulator(int(n))
    if config.endpoint == "cpeptide":
        try:
            analysis = sim.CpeptideDay365Analysis(threshold_pmol_l=config.cpeptide_threshold,
                                                  min_fraction_above=config.cpeptide_fraction, gamma=config.gamma)
        except ModelInputError as err:
            key = {"threshold_pmol_l": "design.cpeptide_threshold", "min_fraction_above": "design.cpeptide_fraction",
                   "gamma": "design.gamma"}.get(err.parameter, "design")
            raise InputError(err.message, key=key) from None
    else:
        prior = parse_prior(config.analysis_prior, "design.analysis_prior")
        analysis = sim.InsulinIndependenceAnalysis(rule=config.rule, p0=config.p0, gamma=config.gamma,
                                                   alpha=config.alpha, analysis_prior=prior.to_dict())
    summary = sim.run_simulations(simulator, analysis, draws, n_sims=config.simulate, seed=seed,
                                  outdir=Path(folder), workers=config.workers, scheduler=config.scheduler,
                                  on_record=on_record)
    return SimulationSummary(n=int(n), n_sims=summary.n_sims, n_success=summary.n_success,
                             assurance=summary.assurance, mcse=summary.mcse,
                             n_diagnostic_failures=summary.n_diagnostic_failures, settings=summary.settings,
                             source_fit=source)
