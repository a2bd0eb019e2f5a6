"""Pinned NUTS sampling and convergence diagnostics shared by every PyMC model.

A fit is ``fit(model, settings)``: every sampler setting lives in :class:`SamplerSettings`, so a result can
record exactly how it was produced. ``fit(..., groups=...)`` adds ArviZ's other groups (prior, prior_predictive,
posterior_predictive, log_likelihood, log_prior, observed_data) where the model has them, each drawn from its own
seed derived from ``settings.seed`` (:func:`add_groups`), so that ``az.loo``, ``az.summary`` and arviz-plots' PPC,
prior-posterior and power-scaling plots run on the result and the same settings give the same draws.

:func:`check_diagnostics` runs ArviZ's own ``arviz_stats.diagnose`` (the checks of CmdStan's ``diagnose``) and
applies the thresholds of Vehtari et al. (2021, "Rank-normalization, folding, and localization: an improved
R-hat", Bayesian Analysis 16:667-718), of Betancourt (2016, E-BFMI, arXiv:1604.00695) and of CmdStan/ArviZ for
tree depth:

    R-hat (rank-normalised, split, max of bulk and folded)  <= 1.01
    bulk ESS and tail ESS                                   >= 100 per chain (400 for the default 4 chains)
    ESS per draw (smaller of bulk and tail)                 >= 0.001 (ArviZ's and CmdStan's ratio check)
    divergent transitions                                   == 0
    E-BFMI (per chain)                                      >= 0.3
    transitions that hit the maximum tree depth             == 0 (ArviZ and CmdStan flag any)

``diagnose`` does the sampler checks (divergences, tree depth, E-BFMI) and flags variables; it reports values
only for the variables that fail, so the extremes a report shows (largest R-hat, smallest bulk and tail ESS)
come from the same estimators (``arviz_stats.rhat``, ``arviz_stats.ess``) called directly. Our ESS check is
stricter than ``diagnose``'s, which compares only the bulk ESS with the threshold: a fit that ``diagnose`` flags
always fails here. nutpie calls the tree-depth flag ``maxdepth_reached`` where PyMC (and ``diagnose``) say
``reached_max_treedepth``: it is renamed on the way in, or ``diagnose`` would skip the check.

A failing fit is never hidden: ``Diagnostics.ok`` is False, ``failures`` lists each failed check in words,
and callers print and report them.

Progress: a neutral hook, no console code. Whoever displays progress (the command line) sets a
:class:`ProgressReporter` for a block of code with :func:`reporting_progress`; :func:`fit` then tells it when a fit
starts (a description and the number of NUTS iterations of all chains, warm-up included), how many iterations are
done (from nutpie's ``progress_callback``, or PyMC's per-draw ``callback``) and when it ends. Other long loops
report through :func:`reported_steps`. Without a reporter (the default: library calls, tests, worker processes)
nothing is reported and nothing is drawn. Reporting never changes the draws (tested).
"""

from __future__ import annotations

import contextvars
import threading
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator, Protocol, Sequence

import arviz_stats as azs
import numpy as np
import pymc as pm
import xarray as xr

from isletbayes.models.diagnostic_thresholds import (EBFMI_MIN, ESS_MIN_PER_CHAIN, ESS_MIN_RATIO, RHAT_MAX,
                                                     TREEDEPTH_SATURATED_MAX)
from isletbayes.models.validation import ModelInputError


# groups fit() can add, and the key of each one's seed (SeedSequence(settings.seed, spawn_key=(key,)))
GROUPS = ("prior", "prior_predictive", "posterior_predictive", "log_likelihood", "log_prior", "observed_data")
_SEED_KEYS = {"prior": 1, "posterior_predictive": 2}
_TREEDEPTH_NAMES = ("reached_max_treedepth", "maxdepth_reached")  # PyMC's NUTS, nutpie
#: warm-up adaptations of the mass matrix (SamplerSettings.mass_matrix)
MASS_MATRICES = ("diag", "low_rank")


@dataclass(frozen=True)
class SamplerSettings:
    """Every setting of a NUTS run. ``nuts_sampler``: 'nutpie' (default: fastest passing sampler in benchmarks/bench_cpeptide.py) or 'pymc'.

    ``mass_matrix``: how warm-up adapts the metric. 'diag' (default) learns one scale per parameter; 'low_rank'
    (nutpie's low-rank modified mass matrix) also learns the few directions in which parameters move together, which
    a posterior with strongly correlated parameters needs (on a 0.995-correlated Gaussian it gives about 17 times the
    effective draws; tests/models/test_sampling.py). It is not the default of any model here: on the joint
    graft-function model it failed more calibration fits than 'diag' (analyses/results/sbc_rejected_settings.json).
    Under PyMC's own NUTS, 'low_rank' adapts a dense mass matrix (``init="jitter+adapt_full"``), the nearest it
    offers. ``cores`` never changes the draws (each chain has its own seed).
    """

    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    cores: int = 1
    target_accept: float = 0.9
    nuts_sampler: str = "nutpie"
    seed: int = 20250620
    mass_matrix: str = "diag"

    def __post_init__(self) -> None:
        if self.mass_matrix not in MASS_MATRICES:
            raise ValueError(f"mass_matrix must be one of {MASS_MATRICES}, got {self.mass_matrix!r}")

    def nutpie_options(self) -> dict:
        """The keyword arguments of ``nutpie.sample`` these settings fix besides draws, chains and seed."""
        return {"target_accept": self.target_accept, "adaptation": self.mass_matrix}

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Diagnostics:
    """Convergence summary of one fit against the module's thresholds.

    ``treedepth_saturated``: post-warm-up transitions that hit the sampler's maximum tree depth (None when the
    sampler did not record it, and then not checked).
    """

    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    divergences: int
    min_ebfmi: float
    n_chains: int
    n_draws: int
    failures: list[str] = field(default_factory=list)
    treedepth_saturated: int | None = None

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        return d


# --------------------------------------------------------------------------------------------------------------
# progress: a neutral hook (the command line supplies the display)
# --------------------------------------------------------------------------------------------------------------
class ProgressReporter(Protocol):
    """Receives the progress of long computations; calls nest (a fit inside a section, refits in a loop).

    ``fit_started(description, total_steps)`` opens a task (``total_steps`` None: no known length);
    ``fit_advanced(completed_steps)`` says how many steps of the innermost open task are done (an absolute
    count; it may be called from a sampler's background thread); ``fit_finished()`` closes the innermost task.
    """

    def fit_started(self, description: str, total_steps: int | None) -> None: ...

    def fit_advanced(self, completed_steps: int) -> None: ...

    def fit_finished(self) -> None: ...


_REPORTER: contextvars.ContextVar[ProgressReporter | None] = contextvars.ContextVar("isletbayes_progress_reporter",
                                                                                     default=None)


def progress_reporter() -> ProgressReporter | None:
    """The reporter set by :func:`reporting_progress` in this context, or None (report nothing)."""
    return _REPORTER.get()


@contextmanager
def reporting_progress(reporter: ProgressReporter | None) -> Iterator[ProgressReporter | None]:
    """Within the block, fits and :func:`reported_steps` loops report to ``reporter`` (None: to nobody)."""
    token = _REPORTER.set(reporter)
    try:
        yield reporter
    finally:
        _REPORTER.reset(token)


@contextmanager
def reported_steps(description: str, total_steps: int | None) -> Iterator[Callable[[int], None]]:
    """A task of ``total_steps`` steps for the current reporter; yields ``advance(completed_steps)``.

    Without a reporter ``advance`` does nothing, so a loop can always call it::

        with reported_steps("simulated trials", n) as advance:
            for i in range(n):
                ...
                advance(i + 1)
    """
    reporter = progress_reporter()
    if reporter is None:
        yield lambda completed_steps: None
        return
    reporter.fit_started(description, total_steps)
    lock = threading.Lock()
    last = [-1]
    open_ = [True]

    def advance(completed_steps: int) -> None:
        # sampler callbacks arrive from another thread: never backwards, never after the task is closed
        with lock:
            if open_[0] and completed_steps > last[0]:
                last[0] = int(completed_steps)
                reporter.fit_advanced(int(completed_steps))

    try:
        yield advance
    finally:
        with lock:
            open_[0] = False
            reporter.fit_finished()


def fit_description(model: pm.Model, settings: SamplerSettings, label: str | None = None) -> str:
    """What a progress display calls a fit: its label (else the model's free variables), sampler and length."""
    if label is None:
        names = [rv.name for rv in model.free_RVs]
        label = "NUTS: " + ", ".join(names[:4]) + (f" (+{len(names) - 4})" if len(names) > 4 else "")
    return (f"{label} [{settings.nuts_sampler}, {settings.chains} chains x "
            f"{settings.tune} + {settings.draws}]")


def total_iterations(settings: SamplerSettings) -> int:
    """NUTS iterations of all chains, warm-up included: the length of a fit's progress task."""
    return int(settings.chains) * (max(int(settings.tune), 0) + int(settings.draws))


def nutpie_progress_callback(advance: Callable[[int], None]) -> Callable:
    """A nutpie ``progress_callback``: the draws finished by all chains (warm-up included) to ``advance``."""

    def callback(chains) -> None:
        advance(sum(int(chain.finished_draws) for chain in chains))

    return callback


# --------------------------------------------------------------------------------------------------------------
# sampling
# --------------------------------------------------------------------------------------------------------------
def group_seed(seed: int, group: str) -> int:
    """The seed of an added group: independent of the NUTS seed and of the other groups, fixed by ``seed``."""
    return int(np.random.SeedSequence(int(seed), spawn_key=(_SEED_KEYS[group],)).generate_state(1)[0])


def _check_groups(groups: Sequence[str]) -> tuple[str, ...]:
    if isinstance(groups, str):
        groups = (groups,)
    groups = tuple(groups)
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        raise ModelInputError(f"unknown group(s) {unknown}; choose from {list(GROUPS)}", parameter="groups")
    return groups


def _check_posterior_kept(model: pm.Model, groups: tuple[str, ...], kept) -> None:
    """Posterior-predictive draws and the log-likelihood need every free variable's posterior draws."""
    needs_posterior = sorted({"posterior_predictive", "log_likelihood", "log_prior"} & set(groups))
    if not needs_posterior or kept is None or not (model.observed_RVs or "log_prior" in groups):
        return
    missing = sorted(rv.name for rv in model.free_RVs if rv.name not in set(kept))
    if missing:
        raise ModelInputError(f"{needs_posterior} need every free variable in the posterior; {missing} "
                              f"are left out by var_names", parameter="var_names")


def fit(model: pm.Model, settings: SamplerSettings = SamplerSettings(), var_names=None, progressbar: bool = False,
        groups: Sequence[str] = (), label: str | None = None):
    """Sample ``model`` with NUTS under ``settings``; return the ArviZ DataTree (same seed, same draws).

    Parameters
    ----------
    model : pm.Model
    settings : SamplerSettings
    var_names : list of str, optional
        Variables to keep in the posterior (all by default).
    progressbar : bool
    groups : sequence of str
        Groups to add besides posterior, sample_stats, observed_data and constant_data (which PyMC always
        returns): any of ``GROUPS``; see :func:`add_groups`. Default: none, the fit as before.
    label : str, optional
        What a progress display calls this fit (:func:`reporting_progress`); default: the free variables.

    Progress goes to the reporter of :func:`reporting_progress`, if one is set (``progressbar=True`` draws
    PyMC's own bar instead); it never changes the draws.

    Examples
    --------
    >>> import numpy as np, pymc as pm
    >>> with pm.Model() as model:
    ...     p = pm.Beta("p", 1, 1)
    ...     r = pm.Binomial("r", n=12, p=p, observed=10)
    >>> idata = fit(model, SamplerSettings(draws=200, tune=200, chains=2),
    ...             groups=("prior", "posterior_predictive", "log_likelihood"))  # doctest: +SKIP
    >>> sorted(idata.children)  # doctest: +SKIP
    ['constant_data', 'log_likelihood', 'observed_data', 'posterior', 'posterior_predictive', 'prior', ...]
    """
    groups = _check_groups(groups)
    _check_posterior_kept(model, groups, var_names)
    if settings.nuts_sampler == "nutpie" and not progressbar:
        # the same draws as pm.sample(nuts_sampler="nutpie"), the model compiled once per install
        # (isletbayes.models.compiled_models): refits and other processes load the compiled code from disk
        from isletbayes.models.compiled_models import sample_nutpie

        idata = sample_nutpie(model, settings, var_names, label=label)
        return add_groups(idata, model, groups, settings) if groups else idata
    # PyMC's NUTS reports each iteration through its per-draw callback (nutpie, here only with progressbar=True,
    # draws PyMC's own bar and takes no callback)
    report = not progressbar and settings.nuts_sampler == "pymc" and progress_reporter() is not None
    steps = (reported_steps(fit_description(model, settings, label), total_iterations(settings)) if report
             else nullcontext(None))
    with warnings.catch_warnings(), steps as advance:
        # PyMC's own convergence warnings are replaced by check_diagnostics(), which callers report.
        warnings.filterwarnings("ignore", message=".*(r_hat|R-hat|effective sample size|divergen).*")
        idata = pm.sample(
            draws=settings.draws,
            tune=settings.tune,
            chains=settings.chains,
            cores=settings.cores,
            random_seed=settings.seed,
            nuts_sampler=settings.nuts_sampler,
            progressbar=progressbar,
            compute_convergence_checks=False,
            var_names=var_names,
            model=model,
            target_accept=settings.target_accept,  # PyMC routes it to whichever NUTS implementation runs
            **({"init": "jitter+adapt_full"} if settings.mass_matrix == "low_rank" and settings.nuts_sampler == "pymc"
               else {}),
            **({"callback": _pymc_progress_callback(advance)} if advance is not None else {}),
        )
    return add_groups(idata, model, groups, settings) if groups else idata


def _pymc_progress_callback(advance: Callable[[int], None]) -> Callable:
    """PyMC's per-draw ``callback`` (once per iteration of each chain, warm-up included) counting into ``advance``."""
    done = [0]
    lock = threading.Lock()

    def callback(trace, draw) -> None:
        with lock:
            done[0] += 1
            count = done[0]
        advance(count)

    return callback


def add_groups(idata, model: pm.Model, groups: Sequence[str], settings: SamplerSettings = SamplerSettings()):
    """Add ArviZ groups to a fit of ``model`` (in place; also returned), where the model has them.

    * ``"prior"`` or ``"prior_predictive"``: ``pm.sample_prior_predictive`` with ``settings.draws`` draws
      (one chain), which gives both groups (prior_predictive only when the model has observed variables);
    * ``"posterior_predictive"``: ``pm.sample_posterior_predictive`` on every posterior draw;
    * ``"log_likelihood"``: ``pm.compute_log_likelihood``, pointwise, for ``az.loo`` / ``az.waic``;
    * ``"log_prior"``: ``pm.compute_log_prior``, each free variable's log prior density at each posterior draw
      (with the log-likelihood, what ArviZ's power-scaling sensitivity, ``psense`` / ``plot_psense_dist``, needs);
    * ``"observed_data"``: the observed values (PyMC's samplers already attach it; added when missing).

    Models without observed variables have no predictive or log-likelihood groups: those are skipped. The prior
    and posterior-predictive draws use seeds derived from ``settings.seed`` (:func:`group_seed`).
    """
    groups = _check_groups(groups)
    observed = list(model.observed_RVs)
    _check_posterior_kept(model, groups, list(idata["posterior"].data_vars))
    if {"prior", "prior_predictive"} & set(groups):
        prior = pm.sample_prior_predictive(draws=settings.draws, model=model,
                                           random_seed=group_seed(settings.seed, "prior"))
        idata.update({name: prior[name] for name in ("prior", "prior_predictive")
                      if name in prior.children and prior[name].data_vars})  # no observed: no prior_predictive
    if "observed_data" in groups and observed and "observed_data" not in idata.children:
        from pymc.backends.arviz import coords_and_dims_for_inferencedata, dict_to_dataset, find_observations

        coords, dims = coords_and_dims_for_inferencedata(model)
        idata["observed_data"] = xr.DataTree(dict_to_dataset(find_observations(model), inference_library=pm,
                                                             coords=coords, dims=dims, sample_dims=[]))
    if observed and "posterior_predictive" in groups:
        pm.sample_posterior_predictive(idata, model=model, extend_inferencedata=True, progressbar=False,
                                       random_seed=group_seed(settings.seed, "posterior_predictive"))
    if observed and "log_likelihood" in groups:
        pm.compute_log_likelihood(idata, model=model, extend_inferencedata=True, progressbar=False)
    if "log_prior" in groups and model.free_RVs:
        from pymc.stats import compute_log_prior

        compute_log_prior(idata, model=model, extend_inferencedata=True, progressbar=False)
    return idata


# --------------------------------------------------------------------------------------------------------------
# diagnostics
# --------------------------------------------------------------------------------------------------------------
def judge(max_rhat: float, min_ess_bulk: float, min_ess_tail: float, divergences: int, min_ebfmi: float,
          n_chains: int, n_draws: int, *, treedepth_saturated: int | None = None) -> Diagnostics:
    """Compare a fit's extreme diagnostics with the thresholds; every failed check is named in words.

    ``treedepth_saturated``: post-warm-up transitions that hit the maximum tree depth, None if not recorded
    (then not checked).
    """
    ess_min = ESS_MIN_PER_CHAIN * n_chains
    total = n_chains * n_draws
    failures = []
    if not max_rhat <= RHAT_MAX:
        failures.append(f"R-hat {max_rhat:.3f} > {RHAT_MAX}")
    if not min_ess_bulk >= ess_min:
        failures.append(f"bulk ESS {min_ess_bulk:.0f} < {ess_min}")
    if not min_ess_tail >= ess_min:
        failures.append(f"tail ESS {min_ess_tail:.0f} < {ess_min}")
    min_ess = min(min_ess_bulk, min_ess_tail)
    if total > 0 and min_ess / total < ESS_MIN_RATIO:  # NaN ESS fails above already
        failures.append(f"ESS per draw {min_ess / total:.4f} < {ESS_MIN_RATIO}")
    if divergences > 0:
        failures.append(f"{divergences} divergent transitions")
    if not min_ebfmi >= EBFMI_MIN:
        failures.append(f"E-BFMI {min_ebfmi:.2f} < {EBFMI_MIN}")
    if treedepth_saturated is not None and treedepth_saturated > TREEDEPTH_SATURATED_MAX:
        failures.append(f"{treedepth_saturated} of {total} transitions ({100 * treedepth_saturated / total:.1f}%) "
                        f"hit the maximum tree depth")
    return Diagnostics(max_rhat, min_ess_bulk, min_ess_tail, divergences, min_ebfmi, n_chains, n_draws, failures,
                       treedepth_saturated=None if treedepth_saturated is None else int(treedepth_saturated))


def _dataset(node) -> xr.Dataset:
    return node.to_dataset() if hasattr(node, "to_dataset") else node


def _extreme(ds: xr.Dataset, fn) -> float:
    vals = [np.asarray(v.values, dtype=float).ravel() for v in ds.data_vars.values()]
    vals = np.concatenate(vals) if vals else np.array([np.nan])
    return float(fn(vals))


def check_diagnostics(idata, var_names=None) -> Diagnostics:
    """R-hat, bulk/tail ESS, divergences, E-BFMI and tree depth of a fit, with every failed threshold named.

    Runs ``arviz_stats.diagnose`` on the posterior (``var_names`` only, when given) and the sampler statistics
    (module docstring).
    """
    post = _dataset(idata["posterior"])
    if var_names is not None:
        post = post[list(var_names)]
    n_chains, n_draws = post.sizes["chain"], post.sizes["draw"]
    children = idata.children if hasattr(idata, "children") else {}
    stats = _dataset(idata["sample_stats"]) if "sample_stats" in children else xr.Dataset()
    if "reached_max_treedepth" not in stats and "maxdepth_reached" in stats:
        stats = stats.rename({"maxdepth_reached": "reached_max_treedepth"})
    tree = xr.DataTree.from_dict({"posterior": post, **({"sample_stats": stats} if stats.data_vars else {})})
    flagged, found = azs.diagnose(tree, rhat_max=RHAT_MAX, ess_threshold=ESS_MIN_PER_CHAIN * n_chains,
                                  ess_min_ratio=ESS_MIN_RATIO, bfmi_threshold=EBFMI_MIN,
                                  show_diagnostics=False, return_diagnostics=True)

    max_rhat = _extreme(azs.rhat(post, method="rank"), np.nanmax)
    min_bulk = _extreme(azs.ess(post, method="bulk"), np.nanmin)
    min_tail = _extreme(azs.ess(post, method="tail"), np.nanmin)
    divergences = int(found["divergent"]["n_divergent"]) if "divergent" in found else 0
    min_ebfmi = float(np.min(found["bfmi"]["bfmi_values"])) if "bfmi" in found else float("nan")
    saturated = int(found["treedepth"]["n_max"]) if "treedepth" in found else None
    diagnostics = judge(max_rhat, min_bulk, min_tail, divergences, min_ebfmi, n_chains, n_draws,
                        treedepth_saturated=saturated)
    if flagged and diagnostics.ok:  # cannot happen with the thresholds above; never let it pass silently
        diagnostics.failures.append("arviz_stats.diagnose flagged the fit: "
                                    + ", ".join(k for k, v in found.items() if v.get("bad_params")))
    return diagnostics
