"""Work bounded before it starts: the memory and time a run would need, estimated from its settings and checked
against this machine before anything is fitted or written.

The configuration's bounds (``analyses/config.py``: ``sampler.draws`` <= 10^6, ``durability.follow_up_simulations`` <= 10^5,
``design.n_max`` <= 5000, ...) refuse absurd single values. What they cannot see is a product of sensible ones
(64 chains of 10^6 draws; 10^5 simulated trials on 200 local workers), so each command that runs heavy work adds
up an estimate first (:func:`estimate_main_job`, :func:`estimate_design`) and :func:`check` refuses it, naming
the setting that drives it, when

* the memory it would hold at once exceeds :func:`machine_memory` (physical memory, or the container's limit
  where that is smaller), or
* the time it would take exceeds :data:`LONG_JOB_S` (one day),

unless the configuration says the user means it (``allow_large_jobs: true``, option ``--allow-large``). The
estimates are deliberately rough (orders of magnitude: the point is to refuse 7 TiB before it is allocated,
not to plan a cluster); their constants were measured on the development machine (see each constant).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from isletbayes.data.errors import InputError

GiB = 2**30
#: Refuse (without the override) work estimated to take longer than this on the workers given.
LONG_JOB_S = 24 * 3600.0
#: Floats kept per posterior draw besides the parameters (sampler statistics: energy, step size, depth, ...).
SAMPLER_STATS_PER_DRAW = 16
#: Copies of a fit's draws alive at once (the raw trace, the DataTree, the summaries computed from it).
COPIES_PER_FIT = 3
#: Resident memory of one local simulation worker (PyMC imported, the analysis model compiled): measured
#: 0.45 GiB peak for the day-365 C-peptide analysis on the development machine.
WORKER_BYTES = 0.5 * GiB
#: Memory of one simulation record held while the summary is built (a dict of about 20 fields, diagnostics
#: included), bytes.
RECORD_BYTES = 8 * 1024
#: Seconds per simulated trial on one worker, measured on the development machine (2 cores, 2026):
#: the exact insulin-independence analysis 0.016 s, the day-365 C-peptide refit 0.05 s (+ 30 s to compile the
#: model once per worker), the trajectory refit about 2 s.
SECONDS_PER_TRIAL = {"InsulinIndependenceAnalysis": 0.016, "CpeptideDay365Analysis": 0.05,
                     "CpeptideTrajectoryAnalysis": 2.0}
COMPILE_S = 30.0


@dataclass(frozen=True)
class Estimate:
    """What one part of a run would need: memory held at once (bytes) and wall time (seconds)."""

    what: str
    key: str  # the configuration key that drives it (named in the refusal)
    memory: float = 0.0
    seconds: float = 0.0


def _cgroup_limit() -> int | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:
            return int(text)
    return None


def machine_memory() -> int:
    """Physical memory of this machine, or the container's memory limit where that is smaller (bytes)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        total = 16 * GiB
    limit = _cgroup_limit()
    return min(total, limit) if limit else total


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def human_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 3 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def fit_estimate(sampler: Any, n_values: int, what: str) -> Estimate:
    """One MCMC fit: chains x draws x (parameters + sampler statistics) float64 values, a few copies at once."""
    per_draw = (n_values + SAMPLER_STATS_PER_DRAW) * 8
    memory = COPIES_PER_FIT * sampler.chains * (sampler.draws + sampler.tune) * per_draw
    return Estimate(what, "sampler.draws", memory=memory)


def simulation_estimates(design: Any, analysis: str) -> list[Estimate]:
    """``design.simulate`` simulated trials: the time on ``design.workers`` workers and the records held for the
    summary (key ``design.simulate``), and the local workers' memory (key ``design.workers``). A Dask cluster's
    size is not known here: it is counted as one worker, and its memory is the cluster's."""
    n_sims = int(design.simulate)
    workers = 1 if design.scheduler else int(design.workers)
    compile_s = COMPILE_S if analysis != "InsulinIndependenceAnalysis" else 0.0
    seconds = compile_s + n_sims * SECONDS_PER_TRIAL.get(analysis, 1.0) / workers
    out = [Estimate(f"{n_sims} simulated trials ({analysis}) on {workers} worker(s)", "design.simulate",
                    memory=n_sims * RECORD_BYTES, seconds=seconds)]
    if not design.scheduler and workers > 1:
        out.append(Estimate(f"{workers} local simulation workers", "design.workers", memory=workers * WORKER_BYTES))
    return out


def durability_estimates(durability: Any) -> list[Estimate]:
    """Nothing to add up: the multi-state model computes on a fixed grid and its follow-up simulations are bounded
    one by one by the configuration (``durability.follow_up_simulations`` <= 10^5 data sets of at most 5,000
    participants per follow-up length), which keeps the section's memory and time small whatever the values."""
    return []


def cpeptide_parameter_count(n_participants: int = 12, n_observations: int = 48) -> int:
    """A generous count of the values per draw of the C-peptide fit: per participant a plateau, a rate, a
    shape and a day-365 value, per observation a log-likelihood, and the population parameters."""
    return 4 * n_participants + n_observations + 32


def design_analysis_name(design: Any) -> str:
    """The simulation runner's analysis for the design's end point (``design.estimand.endpoint``; the
    configuration of isletbayes 0.1 named it ``design.endpoint``)."""
    estimand = getattr(design, "estimand", None)
    endpoint = getattr(estimand, "endpoint", None) or getattr(design, "endpoint", None)
    return "CpeptideDay365Analysis" if endpoint == "cpeptide" else "InsulinIndependenceAnalysis"


def estimate_design(config: Any, *, n_participants: int = 12, n_observations: int = 48) -> list[Estimate]:
    """``isletbayes design``: the posterior fit its simulations draw from, and the simulations."""
    out: list[Estimate] = []
    if config.design.simulate:
        out.append(fit_estimate(config.sampler, cpeptide_parameter_count(n_participants, n_observations),
                                "the C-peptide fit the simulations draw from"))
        out += simulation_estimates(config.design, design_analysis_name(config.design))
    return out


def estimate_binary(config: Any, *, n_studies: int = 20) -> list[Estimate]:
    """``isletbayes binary``: the MAP prior fit (the prior panel is exact)."""
    return [fit_estimate(config.sampler, n_studies + 8, "the MAP prior fit")]


def estimate_cpeptide(config: Any, *, n_participants: int = 12, n_observations: int = 48) -> list[Estimate]:
    """``isletbayes cpeptide``: its fits are held one at a time (the sensitivity refits run one after another)."""
    return [fit_estimate(_cpeptide_sampler(config), cpeptide_parameter_count(n_participants, n_observations),
                         "the C-peptide fit")]


def _cpeptide_sampler(config: Any) -> Any:
    """The sampler block with the most draws per chain any C-peptide fit takes (the joint and means-only models have
    their own)."""
    draws = max(config.sampler.draws, config.cpeptide.graft_function_draws or 0, config.cpeptide.means_draws or 0)
    return config.sampler.model_copy(update={"draws": draws})


def estimate_main_job(config: Any, *, n_participants: int = 12, n_observations: int = 48,
                      n_studies: int = 20) -> list[Estimate]:
    """``isletbayes run``: every section switched on (sections run one after another or in parallel: memory is
    counted as if all MCMC fits were held at once, which is what ``--jobs`` allows)."""
    s = config.sections
    out: list[Estimate] = []
    if s.binary:
        out += estimate_binary(config, n_studies=n_studies)
    if s.cpeptide:
        out += estimate_cpeptide(config, n_participants=n_participants, n_observations=n_observations)
    if s.design and config.design.simulate:
        out += simulation_estimates(config.design, design_analysis_name(config.design))
    if s.durability:
        out += durability_estimates(config.durability)
    return out


def allow_large(config: Any) -> bool:
    """The user's override of :func:`check` (configuration key ``allow_large_jobs``, option ``--allow-large``)."""
    return bool(getattr(config, "allow_large_jobs", False))


def check(estimates: Iterable[Estimate], *, allow: bool = False, memory_limit: int | None = None,
          time_limit: float = LONG_JOB_S) -> None:
    """Refuse work that would not fit this machine's memory or would run longer than ``time_limit``: an
    InputError naming the setting that drives it (the command line names the option instead)."""
    if allow:
        return
    estimates = list(estimates)
    limit = machine_memory() if memory_limit is None else memory_limit
    total = sum(e.memory for e in estimates)
    if total > limit:
        worst = max(estimates, key=lambda e: e.memory)
        raise InputError(f"this run would need about {human_bytes(total)} of memory ({human_bytes(worst.memory)} "
                         f"for {worst.what}); the most this machine can hold is {human_bytes(limit)}. Lower it, or "
                         "set allow_large_jobs: true (--allow-large) if you mean it", key=worst.key)
    for e in estimates:
        if e.seconds > time_limit:
            raise InputError(f"{e.what} would take about {human_seconds(e.seconds)} (more than "
                             f"{human_seconds(time_limit)}); lower it, add workers, or set allow_large_jobs: true "
                             "(--allow-large) if you mean it", key=e.key)
