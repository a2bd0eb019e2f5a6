"""Pinned NUTS sampling and convergence diagnostics shared by every PyMC model.

A fit is ``fit(model, settings)``: every sampler setting lives in :class:`SamplerSettings`, so a result can
record exactly how it was produced. :func:`check_diagnostics` applies the thresholds of Vehtari et al. (2021,
"Rank-normalization, folding, and localization: an improved R-hat", Bayesian Analysis 16:667-718) and of
Betancourt (2016, E-BFMI, arXiv:1604.00695):

    R-hat (rank-normalised, split)  <= 1.01
    bulk ESS and tail ESS           >= 100 per chain (400 for the default 4 chains)
    divergent transitions           == 0
    E-BFMI (per chain)              >= 0.3

A failing fit is never hidden: ``Diagnostics.ok`` is False, ``failures`` lists each failed check in words,
and callers print and report them.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field

import arviz as az
import numpy as np
import pymc as pm
import xarray as xr

RHAT_MAX = 1.01
ESS_MIN_PER_CHAIN = 100
EBFMI_MIN = 0.3


@dataclass(frozen=True)
class SamplerSettings:
    """Every setting of a NUTS run. ``nuts_sampler``: 'nutpie' (default: fastest passing sampler in benchmarks/bench_cpeptide.py) or 'pymc'."""

    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    cores: int = 1
    target_accept: float = 0.9
    nuts_sampler: str = "nutpie"
    seed: int = 20250620

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Diagnostics:
    """Convergence summary of one fit against the module's thresholds."""

    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    divergences: int
    min_ebfmi: float
    n_chains: int
    n_draws: int
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        return d


def fit(model: pm.Model, settings: SamplerSettings = SamplerSettings(), var_names=None, progressbar: bool = False):
    """Sample ``model`` with NUTS under ``settings``; return the ArviZ DataTree (same seed, same draws)."""
    with warnings.catch_warnings():
        # PyMC's own convergence warnings are replaced by check_diagnostics(), which callers report.
        warnings.filterwarnings("ignore", message=".*(r_hat|R-hat|effective sample size|divergen).*")
        return pm.sample(
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
        )


def judge(max_rhat: float, min_ess_bulk: float, min_ess_tail: float, divergences: int, min_ebfmi: float,
          n_chains: int, n_draws: int) -> Diagnostics:
    """Compare a fit's extreme diagnostics with the thresholds; every failed check is named in words."""
    ess_min = ESS_MIN_PER_CHAIN * n_chains
    failures = []
    if not max_rhat <= RHAT_MAX:
        failures.append(f"R-hat {max_rhat:.3f} > {RHAT_MAX}")
    if not min_ess_bulk >= ess_min:
        failures.append(f"bulk ESS {min_ess_bulk:.0f} < {ess_min}")
    if not min_ess_tail >= ess_min:
        failures.append(f"tail ESS {min_ess_tail:.0f} < {ess_min}")
    if divergences > 0:
        failures.append(f"{divergences} divergent transitions")
    if not min_ebfmi >= EBFMI_MIN:
        failures.append(f"E-BFMI {min_ebfmi:.2f} < {EBFMI_MIN}")
    return Diagnostics(max_rhat, min_ess_bulk, min_ess_tail, divergences, min_ebfmi, n_chains, n_draws, failures)


def check_diagnostics(idata, var_names=None) -> Diagnostics:
    """R-hat, bulk/tail ESS, divergences and E-BFMI of a fit, with every failed threshold named."""
    post = idata["posterior"].to_dataset() if hasattr(idata["posterior"], "to_dataset") else idata["posterior"]
    if var_names is not None:
        post = post[list(var_names)]
    n_chains, n_draws = post.sizes["chain"], post.sizes["draw"]
    rhat = az.rhat(post)
    ess_bulk = az.ess(post, method="bulk")
    ess_tail = az.ess(post, method="tail")

    def _extreme(ds: xr.Dataset, fn) -> float:
        vals = [np.asarray(v.values, dtype=float).ravel() for v in ds.data_vars.values()]
        vals = np.concatenate(vals) if vals else np.array([np.nan])
        return float(fn(vals))

    max_rhat = _extreme(rhat, np.nanmax)
    min_bulk = _extreme(ess_bulk, np.nanmin)
    min_tail = _extreme(ess_tail, np.nanmin)
    stats = idata["sample_stats"]
    divergences = int(np.asarray(stats["diverging"].values).sum()) if "diverging" in stats else 0
    if "energy" in stats:
        min_ebfmi = float(np.min(az.bfmi(idata)["energy"].values))
    else:
        min_ebfmi = float("nan")

    return judge(max_rhat, min_bulk, min_tail, divergences, min_ebfmi, n_chains, n_draws)
