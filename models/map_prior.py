r"""Meta-analytic-predictive (MAP) prior for a response rate from comparator studies (PyMC).

Random-effects meta-analysis on the logit scale (Neuenschwander et al. 2010, Clin Trials 7:5; Schmidli et al.
2014, Biometrics 70:1023), parametrised non-centred so that NUTS copes with few studies::

    mu                         ~ Normal(0, mu_prior_sd^2)
    tau                        ~ prior on the between-study sd (see TAU_PRIORS), scale tau_scale
    z_h                        ~ Normal(0, 1)                              h = 1..H comparator studies
    logit(theta_h)             = mu + tau_(g_h) * z_h
    r_h                        ~ Binomial(n_h, theta_h)
    theta_pred                 = invlogit(mu + tau * z_new),  z_new ~ Normal(0, 1)

``theta_pred`` (a Deterministic) is the rate in a new study exchangeable with the comparators: its posterior is the
MAP prior. Differential discounting (Neuenschwander, Roychoudhury, Schmidli 2016, Pharm Stat 15:59; RBesT's
``tau.strata``): studies flagged in ``group`` get their own between-study sd ``tau_group`` (prior scale
``tau_scale_group``, default twice ``tau_scale``), so that a less exchangeable group is discounted more; the new
study is predicted with the reference ``tau``.

:func:`map_prior` is the one-call chain of RBesT (``gMAP`` -> ``automixfit`` -> ``robustify`` -> ``ess``): fit with
:func:`isletbayes.models.sampling.fit`, check diagnostics, approximate the ``theta_pred`` draws by a beta mixture
(:func:`isletbayes.models.mixtures.fit_beta_mixture`), optionally robustify, and compute the three ESS. The
posterior update for new data is then exact: ``result.mixture.posterior(r, n)``.

Reference: RBesT's ankylosing-spondylitis example (Weber et al. 2021, J Stat Softw 100(19)) is reproduced in
tests/models/test_map_prior.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import arviz as az
import numpy as np
import pymc as pm

from isletbayes.models.mixtures import BetaMixture, MixtureFit, fit_beta_mixture
from isletbayes.models.sampling import Diagnostics, SamplerSettings, check_diagnostics, fit

# name -> (description, constructor(name, scale))
TAU_PRIORS: dict[str, str] = {
    "halfnormal": "HalfNormal(sigma=scale) (RBesT's recommended default, scale 1 for binary endpoints)",
    "halfcauchy": "HalfCauchy(beta=scale)",
    "halft": "HalfStudentT(nu=3, sigma=scale)",
    "lognormal": "LogNormal(mu=log(scale), sigma=1): median scale",
    "exponential": "Exponential(lam=1/scale): mean scale",
}


def _tau_rv(name: str, prior: str, scale: float):
    if prior == "halfnormal":
        return pm.HalfNormal(name, sigma=scale)
    if prior == "halfcauchy":
        return pm.HalfCauchy(name, beta=scale)
    if prior == "halft":
        return pm.HalfStudentT(name, nu=3, sigma=scale)
    if prior == "lognormal":
        return pm.LogNormal(name, mu=np.log(scale), sigma=1.0)
    if prior == "exponential":
        return pm.Exponential(name, lam=1.0 / scale)
    raise ValueError(f"unknown tau prior {prior!r}; choose one of {sorted(TAU_PRIORS)}")


def _validate(r, n, group):
    r = np.asarray(r)
    n = np.asarray(n)
    if r.ndim != 1 or r.shape != n.shape or r.size == 0:
        raise ValueError("r and n must be 1-d arrays of the same non-zero length")
    if not (np.all(np.equal(np.mod(r, 1), 0)) and np.all(np.equal(np.mod(n, 1), 0))):
        raise ValueError("r and n must be integers")
    r, n = r.astype(int), n.astype(int)
    if np.any(n < 1) or np.any(r < 0) or np.any(r > n):
        raise ValueError("need 0 <= r <= n and n >= 1 for every study")
    if group is not None:
        group = np.asarray(group, dtype=bool)
        if group.shape != r.shape:
            raise ValueError("group must have one flag per study")
        if not group.any():
            group = None
    return r, n, group


def meta_analysis_model(r, n, group=None, mu_prior_sd: float = 2.0, tau_prior: str = "halfnormal",
                        tau_scale: float = 1.0, tau_scale_group: float | None = None,
                        study_names: Sequence[str] | None = None) -> pm.Model:
    """The random-effects logit meta-analysis with the predictive rate ``theta_pred`` (see the module docstring)."""
    r, n, group = _validate(r, n, group)
    if tau_prior not in TAU_PRIORS:
        raise ValueError(f"unknown tau prior {tau_prior!r}; choose one of {sorted(TAU_PRIORS)}")
    if not (mu_prior_sd > 0 and tau_scale > 0):
        raise ValueError("mu_prior_sd and tau_scale must be > 0")
    names = list(study_names) if study_names is not None else [f"study_{i + 1}" for i in range(len(r))]
    if len(names) != len(r) or len(set(names)) != len(names):
        raise ValueError("study_names must be unique, one per study")
    with pm.Model(coords={"study": names}) as model:
        mu = pm.Normal("mu", 0.0, mu_prior_sd)
        tau = _tau_rv("tau", tau_prior, tau_scale)
        z = pm.Normal("z", 0.0, 1.0, dims="study")
        if group is None:
            tau_study = tau
        else:
            scale_g = 2.0 * tau_scale if tau_scale_group is None else tau_scale_group
            if not scale_g > 0:
                raise ValueError("tau_scale_group must be > 0")
            tau_group = _tau_rv("tau_group", tau_prior, scale_g)
            tau_study = pm.math.switch(group, tau_group, tau)
        logit_theta = pm.Deterministic("logit_theta", mu + tau_study * z, dims="study")
        pm.Deterministic("theta", pm.math.invlogit(logit_theta), dims="study")
        pm.Binomial("r_obs", n=n, logit_p=logit_theta, observed=r, dims="study")
        z_new = pm.Normal("z_new", 0.0, 1.0)
        pm.Deterministic("theta_pred", pm.math.invlogit(mu + tau * z_new))
    return model


@dataclass
class MAPPrior:
    """Result of :func:`map_prior`: the fit, its diagnostics and the mixture approximations of the MAP prior."""

    idata: Any
    diagnostics: Diagnostics
    fit: MixtureFit
    mixture: BetaMixture
    robust_mixture: BetaMixture | None
    ess: dict[str, dict[str, float]]
    tau_summary: dict[str, float]
    theta_pred_summary: dict[str, float]
    inputs: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict:
        """JSON-ready summary (without the draws)."""
        return {
            "inputs": self.inputs,
            "diagnostics": self.diagnostics.as_dict(),
            "mixture": self.mixture.to_dict(),
            "robust_mixture": None if self.robust_mixture is None else self.robust_mixture.to_dict(),
            "mixture_fit": self.fit.as_dict(),
            "ess": self.ess,
            "tau": self.tau_summary,
            "theta_pred": self.theta_pred_summary,
        }


def _summary(idata, var: str) -> dict[str, float]:
    post = idata["posterior"].to_dataset() if hasattr(idata["posterior"], "to_dataset") else idata["posterior"]
    draws = np.asarray(post[var].values, dtype=float)
    flat = draws.ravel()
    q = np.quantile(flat, [0.025, 0.25, 0.5, 0.75, 0.975])
    mcse_mean = float(np.asarray(az.mcse(post[[var]], method="mean")[var].values))
    mcse_sd = float(np.asarray(az.mcse(post[[var]], method="sd")[var].values))
    mcse_q975 = float(np.asarray(az.mcse(post[[var]], method="quantile", prob=0.975)[var].values))
    ess_bulk = float(np.asarray(az.ess(post[[var]], method="bulk")[var].values))
    return {"mean": float(flat.mean()), "sd": float(flat.std(ddof=1)), "q2.5": float(q[0]), "q25": float(q[1]),
            "median": float(q[2]), "q75": float(q[3]), "q97.5": float(q[4]), "mcse_mean": mcse_mean,
            "mcse_sd": mcse_sd, "mcse_q97.5": mcse_q975, "ess_bulk": ess_bulk}


def _ess_all(mix: BetaMixture) -> dict[str, float]:
    out = {}
    for method in ("elir", "moment", "morita"):
        try:
            out[method] = mix.ess(method)
        except ValueError:
            out[method] = float("nan")  # ELIR undefined (a parameter < 1); reported as null
    return out


def map_prior(r, n, group=None, *, mu_prior_sd: float = 2.0, tau_prior: str = "halfnormal", tau_scale: float = 1.0,
              tau_scale_group: float | None = None, study_names: Sequence[str] | None = None,
              settings: SamplerSettings = SamplerSettings(target_accept=0.95), mixture_components: int = 4,
              criterion: str = "bic", robust_weight: float | None = None, robust_mean: float = 0.5) -> MAPPrior:
    """Meta-analysis -> beta-mixture MAP prior -> optional robustification -> ESS, in one call.

    ``mixture_components`` is the largest number of components tried; ``criterion`` picks among them (see
    :func:`fit_beta_mixture`). The mixture fit is seeded from ``settings.seed`` so the whole chain is reproducible.
    Diagnostics failures are kept in ``result.diagnostics`` (callers must report them), never raised.
    """
    model = meta_analysis_model(r, n, group, mu_prior_sd, tau_prior, tau_scale, tau_scale_group, study_names)
    idata = fit(model, settings)
    var_names = [v for v in ("mu", "tau", "tau_group", "z", "z_new") if v in idata["posterior"]]
    diagnostics = check_diagnostics(idata, var_names=var_names)
    post = idata["posterior"]
    theta_pred = np.asarray(post["theta_pred"].values, dtype=float).ravel()
    mix_fit = fit_beta_mixture(theta_pred, max_components=mixture_components, criterion=criterion,
                               seed=settings.seed)
    mixture = mix_fit.mixture
    robust = None if robust_weight is None else mixture.robustify(robust_weight, mean=robust_mean)
    ess = {"mixture": _ess_all(mixture)}
    if robust is not None:
        ess["robust_mixture"] = _ess_all(robust)
    r_arr, n_arr, group_arr = _validate(r, n, group)
    inputs = {
        "r": r_arr.tolist(), "n": n_arr.tolist(),
        "group": None if group_arr is None else group_arr.tolist(),
        "study_names": None if study_names is None else list(study_names),
        "mu_prior_sd": mu_prior_sd, "tau_prior": tau_prior, "tau_prior_description": TAU_PRIORS[tau_prior],
        "tau_scale": tau_scale,
        "tau_scale_group": None if group_arr is None else (2.0 * tau_scale if tau_scale_group is None
                                                           else tau_scale_group),
        "mixture_components": mixture_components, "criterion": criterion, "robust_weight": robust_weight,
        "robust_mean": robust_mean, "sampler_settings": settings.as_dict(),
    }
    return MAPPrior(idata=idata, diagnostics=diagnostics, fit=mix_fit, mixture=mixture, robust_mixture=robust,
                    ess=ess, tau_summary=_summary(idata, "tau"), theta_pred_summary=_summary(idata, "theta_pred"),
                    inputs=inputs)
