r"""Simulation-based assurance for phase 3 endpoints that have no exact answer (C-peptide, graft-driven insulin independence).

Assurance (O'Hagan, Stevens and Campbell 2005, Pharm Stat 4:187-201) is the probability that the phase 3 trial
succeeds, averaging over what we believe about the truth:

.. math::
    \text{assurance} = \int \mathrm{P}(\text{success} \mid \phi)\, p(\phi \mid \text{phase 1/2})\, d\phi
    \approx \frac{1}{S}\sum_{s=1}^{S} \mathbf{1}[\text{trial}_s \text{ succeeds}], \qquad
    \mathrm{MCSE} = \sqrt{\hat a (1 - \hat a) / S}.

Simulation s (i) takes population parameters :math:`\phi_s` (a draw from the C-peptide model's posterior,
:func:`isletbayes.models.cpeptide_trajectory.posterior_parameter_draws`), (ii) simulates n new participants' C-peptide
trajectories and day-365 insulin independence through the graft-function link
(:func:`isletbayes.models.cpeptide_trajectory.simulate_participants`), (iii) analyses that trial as phase 3 would, and (iv)
applies the decision rule. Three analyses are provided:

* :class:`InsulinIndependenceAnalysis`: r of n insulin independent, the exact beta-mixture rule of
  :mod:`isletbayes.models.operating_characteristics` (Bayesian or exact binomial); no MCMC.
* :class:`CpeptideDay365Analysis` (the default for the C-peptide endpoint): the endpoint as a phase 3 would analyse
  it, the censored lognormal model of day-365 stimulated C-peptide of :mod:`isletbayes.models.cpeptide_endpoint`;
  success when :math:`P(\pi(c_0) > q_0 \mid y) \ge \gamma`, :math:`\pi(c_0)` being the fraction of participants
  above :math:`c_0`. Defaults :math:`c_0 = 970` pmol/L (the CITR cut point of MMTT-stimulated C-peptide for the
  optimal outcome of islet transplantation, Baidal et al. 2023) and :math:`q_0 = 1/2` (the median participant
  reaches it); both are options, the reasoning is in the model's docstring. Its posterior has two parameters, so
  by default (``method="quadrature"``) it is computed by deterministic quadrature
  (:func:`~isletbayes.models.cpeptide_endpoint.day365_posterior_quadrature`), for a whole batch of trials at once:
  the day-365 values are simulated vectorised over trials (:meth:`TrialSimulator.simulate_cpeptide`, the same
  draws as the per-trial simulator), reduced to sufficient statistics and integrated, with no compile, no Monte
  Carlo error and no diagnostics to fail. ``method="mcmc"`` refits the same model by NUTS per trial (kept to
  check the quadrature against, ``tests/analyses/test_simulation_runner.py``, and as an explicit option: design
  ``simulate_analysis: mcmc``); its records carry the Monte Carlo standard error of the posterior probability.
* :class:`CpeptideTrajectoryAnalysis`: the hierarchical trajectory model of :mod:`isletbayes.models.cpeptide_trajectory`
  refitted to every visit of the simulated participants; success when P(median participant's C-peptide at day
  365 > c_0 | data) >= gamma, the median participant's value being :math:`A (1 - e^{-365 \ln 2 / t_{1/2}})`.
  Slower (seconds per fit) and harder to sample (four visits inform the between-participant spread of the rise
  rate weakly): its diagnostics are checked per fit and failures are counted in the summary.

Engineering (this is the expensive part of the toolkit):

* an MCMC analysis model is compiled **once per structure**, through the compile cache of
  :mod:`isletbayes.models.compiled_models` (in memory for the worker, and on disk: other workers, processes and
  later runs load the compiled code instead of compiling it), refitted with ``.with_data``;
* each refit keeps nutpie's raw Arrow trace and reads the draws, energies and divergence flags it needs as numpy
  arrays (:func:`sample_raw`); the convergence checks of :func:`isletbayes.models.sampling.check_diagnostics`
  (same estimators from :mod:`arviz_stats`, same thresholds) run on those arrays (:func:`array_diagnostics`),
  so no ArviZ DataTree is built per trial. Every trial's diagnostics are checked and kept in its record, and
  failures are counted in the summary;
* work is handed out in batches (:func:`plan_batches`, :func:`run_batch`): one trial per batch for an analysis
  that runs trial by trial, up to :data:`BATCH_TRIALS` for a batched one (the quadrature route);
* simulations run in parallel on local worker processes (``concurrent.futures``), or on an existing Dask cluster
  given its scheduler address (``dask.distributed.Client``). The scheduler is checked before any work
  (:func:`check_scheduler`: reachable within seconds, at least one worker, every worker running the same
  isletbayes code and numerical packages), so an unusable cluster is refused, not waited for;
* each finished batch is written at once as one JSON record file (``simulations/sim_<first index>.json``,
  written to a temporary name, fsynced, renamed), so an interrupted run keeps everything it finished and a rerun
  resumes where it stopped. A record file carries the SHA-256 of the settings its records were computed under
  and a checksum of its contents: a truncated, edited, foreign or misnamed file is reported
  (:class:`DamagedRecordWarning`), removed and its simulations recomputed, never used;
* simulation i draws all its randomness from ``numpy.random.SeedSequence(seed, spawn_key=(i, ...))``, and a
  batched analysis computes each trial independently of the others in its batch, so the records are identical
  whatever the number of workers (or the cluster), the batches and the order in which they complete;
* Ctrl-C (under the command line's :class:`~isletbayes.analyses.interrupts.InterruptGuard`): local workers ignore
  it and are killed by the runner, Dask tasks are cancelled, and a refit that nutpie cut short is never written.
"""

from __future__ import annotations

import math
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Literal, Protocol, Sequence

import numpy as np

from isletbayes.analyses import interrupts
from isletbayes.analyses.provenance import sha256_of
from isletbayes.data.errors import InputError
from isletbayes.data.io import atomic_path, to_json, write_json_atomic
from isletbayes.models.cpeptide_endpoint import (
    DEFAULT_MIN_FRACTION_ABOVE,
    DEFAULT_THRESHOLD_PMOL_L,
    ENDPOINT_DAY,
    PARAMETERS,
    QUADRATURE_GRID,
    Day365Data,
    Day365Priors,
    Day365Statistics,
    build_day365_model,
    check_decision_settings,
    day365_arrays,
    day365_data_from_long,
    day365_posterior_quadrature,
    day365_statistics,
    day365_statistics_of_values,
    fraction_above,
)
from isletbayes.models.validation import ModelInputError
from isletbayes.models.sampling import Diagnostics, SamplerSettings, judge

MANIFEST = "simulation_manifest.json"
SIM_DIR = "simulations"
RECORD_FORMAT = "isletbayes-simulation/3"  # /3: a record file holds a batch of records
#: Most simulated trials a batched analysis (the quadrature route) handles, and writes to one record file, per task.
BATCH_TRIALS = 500
PARAMETER_PICK_KEY = 1_000_000  # spawn key (i, PARAMETER_PICK_KEY): which posterior draw simulation i uses
CPEPTIDE_DAYS = (90.0, 180.0, 270.0, 365.0)  # the phase 1/2 visit schedule (days after infusion)


# --------------------------------------------------------------------------------------------------------------
# the two halves of one simulation: simulate a trial, analyse it
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrialSimulator:
    """Simulates one phase 3 trial of ``n_participants`` from one draw of the population parameters."""

    n_participants: int
    days: tuple[float, ...] = CPEPTIDE_DAYS
    lod: float = 13.0

    def simulate(self, params, rng: np.random.Generator):
        from isletbayes.models.cpeptide_trajectory import simulate_participants

        return simulate_participants(params, self.n_participants, np.asarray(self.days), lod=self.lod, rng=rng,
                                     link=True, cohort="phase3_simulated")

    def simulate_cpeptide(self, params: Sequence, rngs: Sequence[np.random.Generator]) -> np.ndarray:
        """Measured (uncensored) C-peptide of ``len(params)`` trials, (trial, participant, visit), vectorised over
        trials: trial t draws from ``rngs[t]`` exactly what :meth:`simulate` draws for its C-peptide, in the same
        order (participant effects, then measurement errors), so its values are :meth:`simulate`'s (there
        censored at ``lod``). No data frame and no insulin-independence draws (they come after these in the
        stream): what a C-peptide end point needs, at a few microseconds per trial."""
        from isletbayes.models.cpeptide_trajectory import _check_schedule, log_trajectory, rate_from_t_half

        days = _check_schedule(self.n_participants, self.days)
        n_trials, n = len(params), self.n_participants
        if len(rngs) != n_trials:
            raise ValueError(f"{len(rngs)} random generators for {n_trials} trials")
        z = np.empty((n_trials, n, 2))
        noise = np.empty((n_trials, n, days.size))
        for t, rng in enumerate(rngs):
            rng.standard_normal(out=z[t])
            rng.standard_normal(out=noise[t])

        def column(name):
            return np.array([float(getattr(p, name)) for p in params])[:, None]

        log_median = np.array([math.log(p.plateau_pmol_l) for p in params])[:, None]  # as simulate: math.log
        log_plateau = log_median + column("sd_log_plateau") * z[..., 0]
        shape = column("rise_shape")
        rate = rate_from_t_half(column("t_half_days"), shape) * np.exp(column("sd_log_rate") * z[..., 1])
        log_c = log_trajectory(log_plateau[..., None], rate[..., None], days,
                               column("decline_rate_per_year")[..., None], column("decline_start_day")[..., None],
                               shape[..., None])
        return np.exp(log_c + column("measurement_sd")[..., None] * noise)

    def visit(self, day: float) -> int:
        """The position of ``day`` in the visit schedule (an InputError naming the analysis if it is not a visit)."""
        days = [float(d) for d in self.days]
        if float(day) not in days:
            raise InputError(f"the simulated visits ({', '.join(f'{d:g}' for d in days)}) have no day {day:g}",
                             key="design.simulate")
        return days.index(float(day))

    def describe(self) -> dict:
        return {"simulator": type(self).__name__, **asdict(self)}


class Analysis(Protocol):
    """What the runner needs of an analysis: a picklable description, a per-process preparation, a decision."""

    def describe(self) -> dict: ...

    def prepare(self, example_trial) -> Any: ...  # compiled once per worker; ``model_key()`` (optional) names it

    def analyse(self, prepared: Any, trial, seed: int) -> dict: ...


@dataclass(frozen=True)
class InsulinIndependenceAnalysis:
    """Exact analysis of r of n insulin independent at day 365 (no MCMC; the rule of :mod:`models.operating_characteristics`)."""

    rule: str = "bayes"
    p0: float = 0.44
    gamma: float = 0.975
    alpha: float = 0.025
    analysis_prior: dict = field(default_factory=lambda: {"weights": [1.0], "a": [1.0], "b": [1.0]})

    def describe(self) -> dict:
        return {"analysis": type(self).__name__, **asdict(self)}

    def prepare(self, example_trial) -> Any:
        return {}  # boundaries are computed per n on first use (cheap)

    def analyse(self, prepared: dict, trial, seed: int) -> dict:
        from isletbayes.models import operating_characteristics as oc
        from isletbayes.models.mixtures import BetaMixture, posterior_prob_above

        ii = trial[trial["measure"] == "insulin_independent"]["value"].to_numpy()
        r, n = int(ii.sum()), int(ii.size)
        if n not in prepared:
            prior = BetaMixture.from_dict(self.analysis_prior)
            if self.rule == "bayes":
                prepared[n] = oc.bayes_boundary(prior, n, self.p0, self.gamma)
            else:
                prepared[n] = int(oc.binomial_boundaries([n], self.p0, self.alpha)[0])
        out = {"r": r, "n": n, "success": bool(r >= prepared[n])}
        if self.rule == "bayes":
            out["posterior_prob"] = float(posterior_prob_above(BetaMixture.from_dict(self.analysis_prior), r, n,
                                                               self.p0))
        return out


# --------------------------------------------------------------------------------------------------------------
# fast refit: nutpie's raw trace -> numpy arrays -> decision and convergence checks (no DataTree per trial)
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RawFit:
    """Post-warm-up draws of one fit as numpy arrays, (chain, draw) each, with the NUTS statistics checked."""

    draws: dict[str, np.ndarray]
    energy: np.ndarray
    diverging: np.ndarray
    maxdepth_reached: np.ndarray | None = None  # nutpie's flag of a transition at the maximum tree depth


def sample_raw(compiled, settings: SamplerSettings, var_names: Sequence[str]) -> RawFit:
    """Sample a nutpie compiled model (already given its data) and keep only what the checks and decision need.

    nutpie's raw trace is one Arrow record batch per chain, warm-up rows first (flagged by ``tuning``); reading
    a few columns out of it costs microseconds where building the ArviZ DataTree costs tens of milliseconds.
    """
    import nutpie

    raw = nutpie.sample(compiled, draws=settings.draws, tune=settings.tune, chains=settings.chains,
                        cores=settings.cores, seed=settings.seed, progress_bar=False, save_warmup=False,
                        return_raw_trace=True, **settings.nutpie_options())
    # nutpie catches Ctrl-C and returns the draws made so far: under the command line's interrupt guard this
    # raises KeyboardInterrupt instead (elsewhere the draw count below refuses a partial trace)
    interrupts.checkpoint()
    draw_batches, stat_batches = raw.get_arrow_trace()
    keeps = [~np.asarray(stats.column("tuning"), dtype=bool) for stats in stat_batches]
    if len(keeps) != settings.chains or any(int(k.sum()) != settings.draws for k in keeps):
        raise RuntimeError(f"nutpie returned {[int(k.sum()) for k in keeps]} draws per chain, expected "
                           f"{settings.chains} x {settings.draws}")

    def stacked(batches, name, dtype):
        return np.stack([np.asarray(b.column(name), dtype=dtype)[keep] for b, keep in zip(batches, keeps)])

    depth = ("maxdepth_reached" if all("maxdepth_reached" in b.schema.names for b in stat_batches) else None)
    return RawFit(draws={name: stacked(draw_batches, name, float) for name in var_names},
                  energy=stacked(stat_batches, "energy", float),
                  diverging=stacked(stat_batches, "diverging", bool),
                  maxdepth_reached=None if depth is None else stacked(stat_batches, depth, bool))


def array_diagnostics(fit: RawFit) -> Diagnostics:
    """:func:`isletbayes.models.sampling.check_diagnostics` on numpy arrays: same estimators, same thresholds.

    Rank-normalised split R-hat, bulk and tail ESS (tail at ArviZ's default ``stats.ci_prob`` quantiles, as
    ``az.ess(method="tail")``) and per-chain E-BFMI from :data:`arviz_stats.base.array_stats`, divergences and
    transitions at the maximum tree depth; the parameters are stacked into one array so each estimator is
    called once.
    """
    from arviz_stats.base import array_stats
    from arviz_stats.validate import validate_ci_prob

    stacked = np.stack(list(fit.draws.values()))  # (parameter, chain, draw)
    n_chains, n_draws = stacked.shape[1], stacked.shape[2]
    max_rhat = float(np.nanmax(array_stats.rhat(stacked, method="rank")))
    min_bulk = float(np.nanmin(array_stats.ess(stacked, method="bulk")))
    min_tail = float(np.nanmin(array_stats.ess(stacked, method="tail", prob=validate_ci_prob(None))))
    divergences = int(fit.diverging.sum())
    min_ebfmi = float(np.min(array_stats.bfmi(fit.energy)))
    saturated = None if fit.maxdepth_reached is None else int(fit.maxdepth_reached.sum())
    return judge(max_rhat, min_bulk, min_tail, divergences, min_ebfmi, n_chains, n_draws,
                 treedepth_saturated=saturated)


#: Routes of the day-365 C-peptide analysis: deterministic quadrature (default) or NUTS refits.
Day365Method = Literal["quadrature", "mcmc"]


@dataclass(frozen=True)
class CpeptideDay365Analysis:
    """Day-365 C-peptide end point (:mod:`isletbayes.models.cpeptide_endpoint`).

    Success when P(fraction of participants with C-peptide > threshold_pmol_l exceeds min_fraction_above | data)
    >= gamma; the defaults (970 pmol/L, 1/2) read "the median participant reaches the CITR level of optimal
    graft function" (see the model's docstring for the reasoning).

    ``method="quadrature"`` (default): the posterior's decision quantities by deterministic quadrature
    (:func:`~isletbayes.models.cpeptide_endpoint.day365_posterior_quadrature` on a ``grid`` of cells), for a
    batch of trials at once (:meth:`analyse_batch`): no compile, no Monte Carlo error, no diagnostics to fail.
    ``method="mcmc"``: NUTS refits of the same model (nutpie, compiled once through the compile cache of
    :mod:`isletbayes.models.compiled_models`, ``sampler`` settings), one trial at a time, each fit's diagnostics
    checked and the Monte Carlo standard error of its posterior probability recorded.
    """

    threshold_pmol_l: float = DEFAULT_THRESHOLD_PMOL_L
    min_fraction_above: float = DEFAULT_MIN_FRACTION_ABOVE
    gamma: float = 0.975
    method: Day365Method = "quadrature"
    sampler: SamplerSettings = SamplerSettings(draws=1000, tune=500, chains=2, cores=1, nuts_sampler="nutpie")
    grid: tuple[int, int] = QUADRATURE_GRID

    def __post_init__(self) -> None:
        check_decision_settings(self.threshold_pmol_l, self.min_fraction_above, self.gamma)
        if self.method not in ("quadrature", "mcmc"):
            raise ModelInputError(f"must be 'quadrature' or 'mcmc', got {self.method!r}", parameter="method")
        object.__setattr__(self, "grid", tuple(int(g) for g in self.grid))

    @property
    def batched(self) -> bool:
        """Whether the runner hands this analysis whole batches of trials (:meth:`analyse_batch`)."""
        return self.method == "quadrature"

    def describe(self) -> dict:
        """What the records depend on: the sampler for the MCMC route, the grid for the quadrature."""
        d = {"analysis": type(self).__name__, "method": self.method, "priors": self.priors().as_dict(),
             "threshold_pmol_l": self.threshold_pmol_l, "min_fraction_above": self.min_fraction_above,
             "gamma": self.gamma}
        if self.method == "mcmc":
            d["sampler"] = self.sampler.as_dict()
        else:
            d["grid"] = list(self.grid)
        return d

    def model_key(self) -> dict:
        """The compiled model depends on the priors only (sampler and decision settings reuse it)."""
        return {"model": "cpeptide_endpoint.build_day365_model", "method": self.method,
                "priors": self.priors().as_dict()}

    def priors(self) -> Day365Priors:
        # centred on the threshold: a priori P(median participant above it) = 1/2, favouring neither outcome
        return Day365Priors(median_centre_pmol_l=self.threshold_pmol_l)

    def data(self, trial) -> Day365Data:
        return day365_data_from_long(trial, source="simulated trial")

    def model(self, trial):
        """The analysis model for one trial (what the naive loop rebuilds and :meth:`prepare` compiles once)."""
        return build_day365_model(self.data(trial), self.priors())

    def prepare(self, example_trial) -> Any:
        if self.method == "quadrature":
            return None  # nothing to compile
        from isletbayes.models.compiled_models import compile_nutpie

        return compile_nutpie(self.model(example_trial))

    def analyse(self, prepared, trial, seed: int) -> dict:
        """One trial (a long data frame): the quadrature of its posterior, or a NUTS refit with ``seed``."""
        if self.method == "quadrature":
            return self.decide_exact(day365_statistics(self.data(trial)))[0]
        fit = sample_raw(prepared.with_data(**day365_arrays(self.data(trial))), replace(self.sampler, seed=seed),
                         PARAMETERS)
        return self.decide(fit.draws["log_median_pmol_l"], fit.draws["sd_log"], array_diagnostics(fit))

    def analyse_batch(self, simulator: TrialSimulator, params: Sequence,
                      rngs: Sequence[np.random.Generator]) -> list[dict]:
        """Simulate and analyse ``len(params)`` trials at once (quadrature route): the day-365 values of
        :meth:`TrialSimulator.simulate_cpeptide`, censored at the LLOD, their sufficient statistics, the
        quadrature and the rule, all vectorised over trials. Trial t's result is the one :meth:`analyse` gives on
        :meth:`TrialSimulator.simulate` with ``rngs[t]`` (up to the order of summation of its statistics)."""
        if self.method != "quadrature":
            raise ValueError("analyse_batch is the quadrature route; the MCMC route analyses one trial at a time")
        day365 = simulator.simulate_cpeptide(params, rngs)[:, :, simulator.visit(ENDPOINT_DAY)]
        return self.decide_exact(day365_statistics_of_values(day365, float(simulator.lod)))

    def decide_exact(self, stats: Day365Statistics) -> list[dict]:
        """The decision rule and the record's summaries of each trial, by quadrature."""
        post = day365_posterior_quadrature(stats, self.priors(), self.threshold_pmol_l, self.min_fraction_above,
                                           self.grid)
        success = post.success(self.gamma)
        below = np.asarray(stats.n_censored_at_level).sum(axis=1)
        return [{"posterior_prob": float(p), "success": bool(ok), "median_posterior_mean": float(m),
                 "fraction_above_posterior_mean": float(f), "n_below_lod": int(b), "quadrature_edge_mass": float(e)}
                for p, ok, m, f, b, e in zip(post.prob_fraction_above, success, post.median_posterior_mean,
                                             post.fraction_above_posterior_mean, below, post.edge_mass)]

    def decide(self, log_median: np.ndarray, sd_log: np.ndarray, diag: Diagnostics) -> dict:
        """The decision rule and the record's summaries from posterior draws (shared with the naive loop); the
        Monte Carlo standard error of the posterior probability (of the indicator's mean, :mod:`arviz_stats`)
        says how far from gamma a decision is in units of its own error."""
        from arviz_stats.base import array_stats

        fraction = fraction_above(log_median, sd_log, self.threshold_pmol_l)
        above = np.asarray(fraction > self.min_fraction_above, dtype=float)
        prob = float(np.mean(above))
        mcse = float(array_stats.mcse(above, method="mean")) if 0.0 < prob < 1.0 else 0.0
        return {"posterior_prob": prob, "posterior_prob_mcse": mcse, "success": bool(prob >= self.gamma),
                "median_posterior_mean": float(np.exp(np.asarray(log_median, dtype=float)).mean()),
                "fraction_above_posterior_mean": float(fraction.mean()),
                "diagnostics_ok": diag.ok, "diagnostics_failures": list(diag.failures),
                "diagnostics": diag.as_dict()}


@dataclass(frozen=True)
class CpeptideTrajectoryAnalysis:
    """The C-peptide trajectory model refitted on the simulated participants (compiled once per worker)."""

    threshold_pmol_l: float = DEFAULT_THRESHOLD_PMOL_L
    gamma: float = 0.975
    sampler: SamplerSettings = SamplerSettings(draws=500, tune=500, chains=2, cores=1, nuts_sampler="nutpie")

    def describe(self) -> dict:
        d = asdict(self)
        d["sampler"] = self.sampler.as_dict()
        return {"analysis": type(self).__name__, **d}

    def prepare(self, example_trial) -> Any:
        """The model compiled through the compile cache (:mod:`isletbayes.models.compiled_models`): in memory for
        this worker, and on disk, so that other workers and later runs load the compiled code instead of
        compiling it again."""
        from isletbayes.models.compiled_models import compile_nutpie
        from isletbayes.models.cpeptide_trajectory import build_participant_model, participant_data_from_long

        data = participant_data_from_long(example_trial, source="simulated trial")
        return compile_nutpie(build_participant_model(data, link_priors=None))

    def analyse(self, prepared, trial, seed: int) -> dict:
        from isletbayes.models.cpeptide_trajectory import participant_arrays, participant_data_from_long

        data = participant_data_from_long(trial, source="simulated trial")
        # the analysis model has no insulin-independence link: C-peptide is the endpoint; containers the compiled
        # density does not read (as CompiledRefit) are not passed on
        used = {v.name for v in prepared.shared_var_keys}
        arrays = {k: v for k, v in participant_arrays(data).items() if not k.startswith("ii_") and k in used}
        fit = sample_raw(prepared.with_data(**arrays), replace(self.sampler, seed=seed), TRAJECTORY_PARAMETERS)
        diag = array_diagnostics(fit)
        plateau = fit.draws["plateau_pmol_l"].ravel()
        t_half = fit.draws["t_half_days"].ravel()
        median_c365 = plateau * -np.expm1(-365.0 * math.log(2.0) / t_half)
        prob = float(np.mean(median_c365 > self.threshold_pmol_l))
        return {"posterior_prob": prob, "success": bool(prob >= self.gamma),
                "median_c365_posterior_mean": float(median_c365.mean()),
                "diagnostics_ok": diag.ok, "diagnostics_failures": list(diag.failures),
                "diagnostics": diag.as_dict()}


TRAJECTORY_PARAMETERS = ("plateau_pmol_l", "t_half_days", "sd_log_plateau", "sd_log_rate", "measurement_sd")


# --------------------------------------------------------------------------------------------------------------
# one simulation (runs in a worker)
# --------------------------------------------------------------------------------------------------------------
_PREPARED: dict[str, Any] = {}  # per process: analysis description hash -> compiled model (compile once, reuse)


def simulation_seeds(seed: int, index: int) -> tuple[np.random.SeedSequence, int]:
    """Simulation ``index``'s data seed sequence and its MCMC seed, from (master seed, index) only: the data from
    ``SeedSequence(seed, spawn_key=(index, 0))``, the fit from the first 32 bits of ``spawn_key=(index, 1)``.
    Each record keeps both (``data_spawn_key``, ``fit_seed``) and which posterior draw it used
    (``parameter_draw``, from ``spawn_key=(index, PARAMETER_PICK_KEY)``)."""
    data_seq, fit_seq = np.random.SeedSequence(seed, spawn_key=(index,)).spawn(2)
    return data_seq, int(fit_seq.generate_state(1, dtype=np.uint32)[0])


def run_one(simulator: TrialSimulator, analysis: Analysis, params, seed: int, index: int) -> dict:
    """Simulate and analyse trial ``index``; deterministic given (seed, index, params)."""
    data_seq, fit_seed = simulation_seeds(seed, index)
    trial = simulator.simulate(params, np.random.default_rng(data_seq))
    # what the compiled model depends on (an analysis may say, so that sampler or decision settings share it)
    key = sha256_of(getattr(analysis, "model_key", analysis.describe)()) + f"/n={simulator.n_participants}"
    if key not in _PREPARED:
        _PREPARED[key] = analysis.prepare(trial)
    result = analysis.analyse(_PREPARED[key], trial, fit_seed)
    return {"index": int(index), "data_spawn_key": [int(k) for k in data_seq.spawn_key], "fit_seed": fit_seed,
            "params": _params_dict(params), **result}


def run_batch(simulator: TrialSimulator, analysis: Analysis, params: Sequence, seed: int,
              indices: Sequence[int]) -> list[dict]:
    """Simulate and analyse trials ``indices`` (``params[k]`` the population parameters of trial ``indices[k]``);
    one worker task. A batched analysis (``analysis.batched``: the quadrature route) takes them all at once,
    vectorised; any other is run trial by trial (:func:`run_one`). Either way trial i's record depends on
    (seed, i, its parameters) only, not on the batch it is in."""
    if len(params) != len(indices):
        raise ValueError(f"{len(params)} parameter draws for {len(indices)} trials")
    if not getattr(analysis, "batched", False):
        return [run_one(simulator, analysis, p, seed, i) for p, i in zip(params, indices)]
    seeds = [simulation_seeds(seed, int(i)) for i in indices]
    results = analysis.analyse_batch(simulator, params, [np.random.default_rng(data_seq) for data_seq, _ in seeds])
    return [{"index": int(i), "data_spawn_key": [int(k) for k in data_seq.spawn_key], "fit_seed": fit_seed,
             "params": _params_dict(p), **result}
            for i, (data_seq, fit_seed), p, result in zip(indices, seeds, params, results)]


def _params_dict(params) -> dict:
    return params.as_dict() if hasattr(params, "as_dict") else dict(params)


# --------------------------------------------------------------------------------------------------------------
# records on disk: one checksummed file per finished simulation
# --------------------------------------------------------------------------------------------------------------
class DamagedRecordWarning(UserWarning):
    """A simulation record (or the folder's manifest) was damaged: it is discarded and recomputed."""


@dataclass
class SimulationSummary:
    """Assurance estimated from the finished simulations, with its Monte Carlo standard error."""

    n_sims: int
    n_success: int
    assurance: float
    mcse: float
    n_diagnostic_failures: int
    records: list[dict]
    settings: dict
    damaged: list[str] = field(default_factory=list)  # records found damaged on this run, and recomputed

    def as_dict(self, with_records: bool = False) -> dict:
        d = {"n_sims": self.n_sims, "n_success": self.n_success, "assurance": self.assurance, "mcse": self.mcse,
             "n_diagnostic_failures": self.n_diagnostic_failures, "settings": self.settings}
        if with_records:
            d["records"] = self.records
        return d


class DamagedRecord(ValueError):
    """Why a record file cannot be trusted."""


def _sim_path(outdir: Path, first_index: int) -> Path:
    """The record file of the batch whose first simulation is ``first_index``."""
    return outdir / SIM_DIR / f"sim_{first_index:06d}.json"


def _record_checksum(settings_sha256: str, records: list[dict]) -> str:
    import hashlib
    import json

    text = json.dumps({"settings_sha256": settings_sha256, "records": records}, sort_keys=True,
                      separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def record_file_text(records: list[dict], settings_sha256: str) -> str:
    """A record file: a batch of records (index order), the settings they were computed under (their SHA-256)
    and the SHA-256 of both."""
    import json

    try:  # plain Python values (as the analyses return them): json's C encoder, no indentation
        clean = json.loads(json.dumps(records, allow_nan=False))
    except (TypeError, ValueError):  # numpy values, NaN: as they read back (NaN -> null, numpy -> Python)
        clean = json.loads(to_json(records))
    return json.dumps({"format": RECORD_FORMAT, "settings_sha256": settings_sha256,
                       "sha256": _record_checksum(settings_sha256, clean), "records": clean},
                      separators=(",", ":")) + "\n"


def read_record_file(path: Path, settings_sha256: str | None = None) -> list[dict]:
    """The records in ``path``, checked: whole JSON, its checksum, its first index (the file's name), strictly
    increasing indices, and (when given) the settings they were computed under. Raises :class:`DamagedRecord`
    saying why not."""
    import json

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise DamagedRecord(f"unreadable ({err})") from None
    except ValueError as err:
        raise DamagedRecord(f"not whole JSON ({err})") from None
    records = doc.get("records") if isinstance(doc, dict) else None
    if (not isinstance(doc, dict) or doc.get("format") != RECORD_FORMAT or not isinstance(records, list)
            or not records or not all(isinstance(r, dict) for r in records)):
        raise DamagedRecord("not a simulation record of this version")
    if doc.get("sha256") != _record_checksum(str(doc.get("settings_sha256")), records):
        raise DamagedRecord("checksum mismatch (the file was changed after it was written)")
    if settings_sha256 is not None and doc.get("settings_sha256") != settings_sha256:
        raise DamagedRecord("computed under other settings")
    indices = [r.get("index") for r in records]
    if indices[0] != int(path.stem.split("_")[1]):
        raise DamagedRecord(f"holds simulation {indices[0]}, not the one its name says")
    if not all(isinstance(i, int) for i in indices) or any(b <= a for a, b in zip(indices, indices[1:])):
        raise DamagedRecord("its simulations are not in strictly increasing order")
    return records


def _write_records(outdir: Path, records: list[dict], settings_sha256: str) -> Path:
    """One batch's records in one file, atomic and durable: temp file, fsync, rename (a reader never sees half a
    file)."""
    path = _sim_path(outdir, records[0]["index"])
    text = record_file_text(records, settings_sha256)
    interrupts.checkpoint()  # a fit interrupted by Ctrl-C may have returned a partial trace: write nothing
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    return path


def _record_files(outdir: Path) -> dict[int, Path]:
    folder = Path(outdir) / SIM_DIR
    if not folder.is_dir():
        return {}
    out = {}
    for p in folder.glob("sim_*.json"):
        try:
            out[int(p.stem.split("_")[1])] = p
        except (IndexError, ValueError):
            continue  # not a record name
    return out


@dataclass
class RecordScan:
    """The records in a folder: whole ones by index, and damaged files with the reason."""

    records: dict[int, dict]
    damaged: list[tuple[Path, str]]


def _manifest_digest(outdir: Path) -> str | None:
    import json

    try:
        return json.loads((Path(outdir) / MANIFEST).read_text(encoding="utf-8")).get("settings_sha256")
    except (OSError, ValueError, AttributeError):
        return None


def scan_records(outdir: str | Path, settings_sha256: str | None = None) -> RecordScan:
    """Read and check every record file in ``outdir`` (against its manifest's settings when none are given); a
    file holding a simulation that an earlier file (by name) also holds is damaged (files are never written
    overlapping)."""
    outdir = Path(outdir)
    digest = settings_sha256 if settings_sha256 is not None else _manifest_digest(outdir)
    records, damaged, holder = {}, [], {}
    for _, path in sorted(_record_files(outdir).items()):
        try:
            batch = read_record_file(path, digest)
            twice = [r["index"] for r in batch if r["index"] in records]
            if twice:
                raise DamagedRecord(f"holds simulation {twice[0]}, which {holder[twice[0]].name} holds too")
        except DamagedRecord as err:
            damaged.append((path, str(err)))
            continue
        for r in batch:
            records[r["index"]] = r
            holder[r["index"]] = path
    return RecordScan(records, damaged)


def finished_indices(outdir: str | Path) -> set[int]:
    """Indices of the whole, checked records in ``outdir``."""
    return set(scan_records(outdir).records)


def read_records(outdir: str | Path, n_sims: int | None = None) -> list[dict]:
    """The whole records of ``outdir`` (the first ``n_sims`` simulations), in index order; damaged ones left out."""
    records = scan_records(outdir).records
    return [records[i] for i in sorted(records) if n_sims is None or i < n_sims]


def pick_parameters(parameter_draws: Sequence, seed: int, n_sims: int) -> list[int]:
    """Which parameter draw simulation i uses: from its own seed, so it does not depend on the number of workers."""
    picks = []
    for i in range(n_sims):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(i, PARAMETER_PICK_KEY)))
        picks.append(int(rng.integers(len(parameter_draws))))
    return picks


def _check_manifest(outdir: Path, settings: dict, digest: str, report: Callable[[str], None]) -> None:
    """The folder's settings must be this run's: refuse other settings; rewrite a damaged manifest (the records
    carry their own settings' SHA-256, so whichever are not this run's are discarded as damaged)."""
    import json

    path = outdir / MANIFEST
    if os.path.lexists(path):
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
            old_digest = old["settings_sha256"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            report(f"{path}: damaged manifest ({type(err).__name__}); rewritten, records checked one by one")
        else:
            if old_digest != digest:
                raise InputError(f"{outdir} holds simulations from different settings; use a new --out folder "
                                 "(or delete it) to start afresh", option="--out")
            return
    interrupts.checkpoint()
    write_json_atomic(path, {"format": RECORD_FORMAT, "settings": settings, "settings_sha256": digest})


def _warn_damaged(message: str) -> None:
    import warnings

    warnings.warn(DamagedRecordWarning(message), stacklevel=3)


def check_seed(seed: Any, key: str = "seed") -> int:
    """The master seed as numpy's SeedSequence and every sampler accept it: an integer in [0, 2**32)."""
    from isletbayes.analyses.config import SEED_MAX

    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < SEED_MAX:
        raise InputError(f"must be an integer from 0 to {SEED_MAX - 1}, got {seed!r}", key=key)
    return int(seed)


# --------------------------------------------------------------------------------------------------------------
# the runner
# --------------------------------------------------------------------------------------------------------------
def run_simulations(
    simulator: TrialSimulator,
    analysis: Analysis,
    parameter_draws: Sequence,
    *,
    n_sims: int,
    seed: int,
    outdir: str | Path,
    workers: int = 1,
    scheduler: str | Any | None = None,
    progress: bool = False,
    on_record: Callable[[dict], None] | None = None,
    on_damaged: Callable[[str], None] | None = None,
) -> SimulationSummary:
    """Run (or resume) ``n_sims`` simulations; every finished one is on disk before the next is awaited.

    ``scheduler`` is a Dask scheduler address (or a ``distributed.Client``); otherwise ``workers`` local processes
    (1: in this process). ``on_record`` is called after each record is written (progress hooks, tests);
    ``on_damaged`` with one line for each damaged record found (default: a :class:`DamagedRecordWarning`),
    which is then removed and recomputed.
    """
    seed = check_seed(seed)
    if n_sims < 1:
        raise InputError(f"must be >= 1, got {n_sims}", key="design.simulate")
    if workers < 1:
        raise InputError(f"must be >= 1, got {workers}", key="design.workers")
    if not parameter_draws:
        raise InputError("no parameter draws to simulate from", key="design.simulate")
    report = on_damaged or _warn_damaged
    outdir = Path(outdir)
    picks = pick_parameters(parameter_draws, seed, n_sims)
    settings = {"simulator": simulator.describe(), "analysis": analysis.describe(), "seed": seed,
                "record_format": RECORD_FORMAT,
                "parameter_draws_sha256": sha256_of([_params_dict(p) for p in parameter_draws])}
    digest = sha256_of(settings)
    # n_sims is not part of the manifest: a run may be extended to more simulations with the same settings
    _check_manifest(outdir, settings, digest, report)
    scan = scan_records(outdir, digest)
    damaged = []
    for path, reason in scan.damaged:
        damaged.append(f"{path}: {reason}")
        report(f"{path}: damaged simulation record ({reason}); it is recomputed")
        path.unlink(missing_ok=True)
    records = {i: r for i, r in scan.records.items() if i < n_sims}
    todo = [i for i in range(n_sims) if i not in records]
    batches = plan_batches(todo, analysis, workers)

    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=n_sims, initial=n_sims - len(todo), desc="simulated trials", unit="trial",
                   file=sys.stderr, dynamic_ncols=True)

    def done(batch: list[dict]) -> None:
        for record in batch:
            record["parameter_draw"] = picks[record["index"]]
        path = _write_records(outdir, batch, digest)
        for record in read_record_file(path, digest):  # what a resumed run will read
            records[record["index"]] = record
        if bar is not None:
            bar.update(len(batch))
        if on_record is not None:
            for record in batch:
                on_record(record)

    try:
        if batches:
            if scheduler is not None:
                _run_dask(scheduler, simulator, analysis, parameter_draws, picks, seed, batches, done)
            elif workers == 1:
                for batch in batches:
                    done(run_batch(simulator, analysis, [parameter_draws[picks[i]] for i in batch], seed, batch))
            else:
                _run_processes(workers, simulator, analysis, parameter_draws, picks, seed, batches, done)
    finally:
        if bar is not None:
            bar.close()
    return _summary([records[i] for i in range(n_sims)], settings, damaged)


def plan_batches(todo: Sequence[int], analysis: Analysis, workers: int = 1) -> list[list[int]]:
    """The simulations to run, in batches (one worker task and one record file each): one simulation per batch
    for an analysis that runs trial by trial (each record on disk as soon as it is finished); up to
    :data:`BATCH_TRIALS` for a batched one, split so that each of ``workers`` has work. The batches change the
    files and the tasks, never the records."""
    todo = [int(i) for i in todo]
    if not getattr(analysis, "batched", False):
        return [[i] for i in todo]
    size = max(1, min(BATCH_TRIALS, math.ceil(len(todo) / max(1, int(workers)))))
    return [todo[k:k + size] for k in range(0, len(todo), size)]


def _run_processes(workers, simulator, analysis, draws, picks, seed, batches, done) -> None:
    import multiprocessing

    # 'forkserver': workers are forked from a server process that has only imported modules (no sampler has run
    # there), never from this one, whose nutpie/PyTensor threads fork would not copy safely. The server imports
    # this module once for the life of this process, so workers start in milliseconds instead of each
    # re-importing PyMC as 'spawn' does (seconds per worker). Workers ignore Ctrl-C: on an interrupt this
    # process kills them at once (a worker in the middle of a fit would otherwise finish it first).
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=interrupts.worker_init,
                               initargs=(os.getpid(),))
    try:
        with interrupts.children_ignore_interrupts():  # workers (and the fork server) start here
            futures = [pool.submit(run_batch, simulator, analysis, [draws[picks[i]] for i in batch], seed, batch)
                       for batch in batches]
        for fut in as_completed(futures):
            done(fut.result())
    except BaseException:
        interrupts.acknowledge()
        interrupts.terminate_pool(pool)
        raise
    pool.shutdown(wait=True)


# --------------------------------------------------------------------------------------------------------------
# Dask: an existing cluster given its scheduler's address
# --------------------------------------------------------------------------------------------------------------
#: Seconds to reach a scheduler and to find a worker on it before the run is refused.
SCHEDULER_TIMEOUT_S = 10.0


def _worker_identity() -> dict:
    """What must agree between this machine and every Dask worker for the records to be the same numbers."""
    from isletbayes.analyses.cache import code_fingerprint
    from isletbayes.analyses.provenance import package_versions

    versions = package_versions()
    return {"python": versions["python"], "code_sha256": code_fingerprint(__name__),
            **{k: versions.get(k) for k in ("isletbayes", "numpy", "scipy", "pymc", "pytensor", "nutpie")}}


def _tcp_reachable(address: str, timeout: float) -> bool:
    """Open and close a TCP connection to the scheduler (no Dask client, which would leave threads behind on
    failure); raises InputError naming design.scheduler. False for a transport other than TCP (not probed)."""
    import socket

    from distributed.comm import parse_address
    from distributed.comm.addressing import parse_host_port

    try:
        scheme, location = parse_address(address)
        if scheme not in ("tcp", "tls"):
            return False  # other transports (ucx, ws, inproc) are left to Dask
        host, port = parse_host_port(location)
    except (ValueError, TypeError) as err:
        raise InputError(f"not a Dask scheduler address ({err}); write tcp://HOST:PORT", key="design.scheduler") \
            from None
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as err:
        words = "timed out" if isinstance(err, socket.timeout) else (err.strerror or str(err))
        raise InputError(f"cannot reach the Dask scheduler at {address} ({words}); start it with "
                         f"`dask scheduler`, or check the address", key="design.scheduler") from None
    return True


def _scheduler_identity(address: str, timeout: float) -> dict:
    """The scheduler's own description of itself, asked over Dask's protocol with a deadline on the whole
    exchange: a service that accepts the connection but never answers like a scheduler (a web server, a port
    forwarded to nothing) is refused in ``timeout`` seconds instead of hanging a Client forever."""
    import asyncio

    from distributed.core import rpc

    async def ask() -> dict:
        async with rpc(address, timeout=timeout) as scheduler:
            return await scheduler.identity()

    try:
        identity = asyncio.run(asyncio.wait_for(ask(), timeout))
    except Exception as err:  # noqa: BLE001 - a service that is not a Dask scheduler fails in many ways
        words = (f"no answer within {timeout:g} s" if isinstance(err, (TimeoutError, asyncio.TimeoutError)) else
                 f"the answer is not Dask's protocol: {type(err).__name__}")
        raise InputError(f"cannot connect to a Dask scheduler at {address} ({words}); is it a Dask scheduler's "
                         "address?", key="design.scheduler") from None
    if not isinstance(identity, dict) or identity.get("type") != "Scheduler":
        raise InputError(f"{address} answers, but not as a Dask scheduler", key="design.scheduler")
    return identity


def connect_scheduler(address: str, *, timeout: float | None = None):
    """A ``distributed.Client`` on the scheduler at ``address``, checked: reachable and answering as a Dask
    scheduler within ``timeout``, at least one worker (waited for up to ``timeout``), every worker running the
    same isletbayes code and numerical packages as this machine. Anything else is refused with an InputError
    naming ``design.scheduler``."""
    from distributed import Client

    timeout = SCHEDULER_TIMEOUT_S if timeout is None else float(timeout)
    if _tcp_reachable(address, timeout):
        _scheduler_identity(address, timeout)
    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except Exception as err:  # noqa: BLE001 - as above
        raise InputError(f"cannot connect to a Dask scheduler at {address} ({type(err).__name__}: "
                         f"{str(err)[:200]})", key="design.scheduler") from None
    try:
        try:
            client.wait_for_workers(1, timeout=timeout)
        except (TimeoutError, OSError):
            raise InputError(f"the Dask scheduler at {address} has no workers (start some with `dask worker "
                             f"{address}`)", key="design.scheduler") from None
        mine = _worker_identity()
        try:
            theirs = client.run(_worker_identity)
        except Exception as err:  # noqa: BLE001 - whatever a worker raises: it cannot run this code
            raise InputError(f"a worker of the Dask scheduler at {address} cannot run isletbayes "
                             f"({type(err).__name__}: {err}); install the same isletbayes on every worker",
                             key="design.scheduler") from None
        for worker, identity in sorted(theirs.items()):
            differ = sorted(k for k in mine if identity.get(k) != mine[k])
            if differ:
                raise InputError(f"Dask worker {worker} runs other code than this machine ({', '.join(differ)} "
                                 "differ): its results would not be the same numbers; install the same versions "
                                 "on every worker", key="design.scheduler")
    except BaseException:
        client.close()
        raise
    return client


def check_scheduler(address: str, *, timeout: float | None = None) -> int:
    """Refuse an unreachable or unusable scheduler before any work (see :func:`connect_scheduler`); returns the
    number of workers it has now."""
    client = connect_scheduler(address, timeout=timeout)
    try:
        return len(client.scheduler_info(n_workers=-1)["workers"])
    finally:
        client.close()


def _run_dask(scheduler, simulator, analysis, draws, picks, seed, batches, done) -> None:
    from distributed import Client
    from distributed import as_completed as dask_as_completed

    own_client = not isinstance(scheduler, Client)
    client = connect_scheduler(scheduler) if own_client else scheduler
    futures = []
    try:
        sim_f, ana_f = client.scatter([simulator, analysis], broadcast=True)
        futures = [client.submit(run_batch, sim_f, ana_f, [draws[picks[i]] for i in batch], seed, batch, pure=False,
                                 key=f"sim-{seed}-{batch[0]}-{len(batch)}")
                   for batch in batches]
        # as_completed must be given the client's loop: with set_as_default=False there is no default client
        # to take it from ("No clients found")
        for fut in dask_as_completed(futures, loop=client.loop):
            done(fut.result())
    except BaseException:
        interrupts.acknowledge()
        if futures:
            client.cancel(futures)
        raise
    finally:
        if own_client:
            client.close()


def _summary(records: list[dict], settings: dict, damaged: list[str] | None = None) -> SimulationSummary:
    s = len(records)
    success = sum(bool(r["success"]) for r in records)
    a = success / s if s else float("nan")
    mcse = math.sqrt(a * (1 - a) / s) if s else float("nan")
    failures = sum(not r.get("diagnostics_ok", True) for r in records)
    return SimulationSummary(s, success, a, mcse, failures, records, settings or {}, list(damaged or []))


def summarise(outdir: str | Path, n_sims: int, settings: dict | None = None) -> SimulationSummary:
    """The summary of the whole records in ``outdir`` (damaged ones left out)."""
    return _summary(read_records(outdir, n_sims), settings or {})
