r"""Meta-analytic-predictive (MAP) prior for a continuous end point: a normal-normal random-effects meta-analysis
of estimates with known standard errors, computed exactly (quadrature over the heterogeneity, no MCMC).

Model (Neuenschwander et al. 2010, Clin Trials 7:5; Schmidli et al. 2014, Biometrics 70:1023; the normal-normal
hierarchical model of Röver 2020, J Stat Softw 93(6), "bayesmeta"), for H studies with estimates y_h (e.g. the
mean change in HbA1c, or mean log C-peptide, in a comparator arm) and known standard errors s_h::

    y_h | theta_h        ~ Normal(theta_h, s_h^2)
    theta_h              = mu + tau_(g_h) eta_h,          eta_h ~ Normal(0, 1)
    mu                   ~ Normal(m_mu, s_mu^2)           (s_mu = inf: the improper uniform prior)
    tau, tau_group       ~ the tau prior family at scales tau_scale, tau_scale_group (the same families as the
                           binary MAP prior: halfnormal, halfcauchy, halft (3 df), lognormal, exponential)
    theta_new            = mu + tau eta_new                (a new study: its law given y is the MAP prior)

``group`` flags studies with their own between-study sd tau_group (differential discounting; the new study is
predicted with the reference tau). Given the heterogeneity everything is Gaussian (v_h = s_h^2 + tau_(g_h)^2)::

    P(tau)               = 1/s_mu^2 + sum_h 1/v_h,        M(tau) = (m_mu/s_mu^2 + sum_h y_h/v_h) / P
    mu | tau, y          ~ Normal(M, 1/P)
    theta_new | tau, y   ~ Normal(M, 1/P + tau^2)
    theta_h | tau, y     : mean (y_h/s_h^2 + M/t^2)/(1/s_h^2 + 1/t^2), t = tau_(g_h) (bayesmeta's shrinkage)
    log p(y | tau)       = -1/2 sum_h log(2 pi v_h) - 1/2 log(s_mu^2 P)
                           - 1/2 (sum_h y_h^2/v_h + m_mu^2/s_mu^2 - P M^2)

so p(tau | y) ∝ p(tau) p(y | tau) is one-dimensional (two-dimensional with a group tau), and the posterior of mu
and the predictive of theta_new are normal mixtures over it. The integral is taken in the prior-quantile
variable u = F_tau(tau), where p(tau) dtau = du and the integrand p(y | tau(u)) is bounded: composite
Gauss-Legendre quadrature (16 nodes per panel; a tensor product with a group tau), first on (0, 1), then zoomed to
the range that holds all but ~1e-15 of the posterior mass. Each quadrature node is one component of an "exact"
normal mixture (:attr:`NormalMAPPrior.mu_posterior`, :attr:`NormalMAPPrior.predictive`); moments are exact to
the quadrature's accuracy (~1e-10 relative), quantiles are found by root finding on the mixture cdf.

As for binary end points (RBesT's ``gMAP`` -> ``automixfit`` -> ``robustify`` -> ``ess``), the predictive is then
approximated by a compact normal mixture, fitted by EM to ``n_draws`` independent draws from the exact predictive
(:func:`isletbayes.models.mixtures.fit_normal_mixture`, number of components by BIC), optionally robustified with
a unit-information component N(robust_mean, sigma^2), and its ESS computed by ELIR (the default), moment matching
and Morita. ``sigma`` is the sampling sd of one observation: the ESS is in units of observations with sd sigma
(RBesT's ``ess`` of a ``mixnorm`` with reference scale sigma), and the defaults follow RBesT's recommendations in
units of sigma (mu ~ N(0, sigma^2), the unit-information prior; tau ~ HalfNormal(sigma/2)).

Why exact rather than MCMC: with a normal likelihood mu and the study effects integrate out analytically, which
leaves a one- (two-) dimensional integral; quadrature is faster and free of Monte Carlo error and of convergence
diagnostics. References reproduced in tests/models/test_normal_map_prior.py: bayesmeta's worked examples (eight
schools, Rubin 1981; Crins et al. 2014) and RBesT's Crohn's disease example (introduction_normal vignette).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import optimize, special, stats
from scipy.optimize import elementwise

from isletbayes.models.mixtures import (
    DEFAULT_ESS_METHOD,
    MixtureFit,
    NormalMixture,
    ess_all,
    ess_table,
    fit_normal_mixture,
)
from isletbayes.models.validation import ModelInputError

# the tau prior families of the binary MAP prior (isletbayes.models.map_prior.TAU_PRIORS), as scipy distributions
TAU_PRIOR_FAMILIES: dict[str, str] = {
    "halfnormal": "HalfNormal(sigma=scale)",
    "halfcauchy": "HalfCauchy(beta=scale)",
    "halft": "HalfStudentT(nu=3, sigma=scale)",
    "lognormal": "LogNormal(mu=log(scale), sigma=1): median scale",
    "exponential": "Exponential(lam=1/scale): mean scale",
}
TANH_SINH_T = 6.0
FIRST_STEP, STEP = 1 / 16, 1 / 32  # tanh-sinh steps: first pass on (0, 1), zoomed passes (one tau)
FIRST_STEP_2D, STEP_2D = 1 / 8, 1 / 16  # with a group tau (tensor product)
MASS_EPS = 1e-16
TAU_CAP = 1e150  # nodes of a heavy-tailed prior beyond it carry no posterior mass (p(y | tau) ~ tau^-H)


def tau_prior_dist(prior: str, scale: float):
    """The frozen scipy distribution of a tau prior family at ``scale``."""
    if prior == "halfnormal":
        return stats.halfnorm(scale=scale)
    if prior == "halfcauchy":
        return stats.halfcauchy(scale=scale)
    if prior == "halft":
        return _HalfT3(scale)
    if prior == "lognormal":
        return stats.lognorm(s=1.0, scale=scale)
    if prior == "exponential":
        return stats.expon(scale=scale)
    raise ModelInputError(f"unknown tau prior {prior!r}; choose one of {sorted(TAU_PRIOR_FAMILIES)}",
                          parameter="tau_prior")


class _HalfT3:
    """|T| for T ~ scale * t(3 df): ppf, cdf, pdf."""

    def __init__(self, scale: float):
        self.scale = scale

    def ppf(self, u):
        return self.scale * stats.t.ppf((1 + np.asarray(u)) / 2, 3)

    def isf(self, q):
        return self.scale * stats.t.isf(np.asarray(q) / 2, 3)

    def cdf(self, x):
        return 2 * stats.t.cdf(np.asarray(x) / self.scale, 3) - 1

    def sf(self, x):
        return 2 * stats.t.sf(np.asarray(x) / self.scale, 3)

    def pdf(self, x):
        x = np.asarray(x, dtype=float)
        return np.where(x >= 0, 2 * stats.t.pdf(x / self.scale, 3) / self.scale, 0.0)


# --------------------------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NormalMetaAnalysisInputs:
    """Validated inputs of the normal MAP meta-analysis."""

    y: np.ndarray
    se: np.ndarray
    study_names: tuple[str, ...]
    group: np.ndarray | None
    sigma: float
    mu_prior_mean: float
    mu_prior_sd: float  # inf: improper uniform
    tau_prior: str
    tau_scale: float
    tau_scale_group: float | None

    def as_dict(self) -> dict:
        return {"y": self.y.tolist(), "se": self.se.tolist(), "study_names": list(self.study_names),
                "group": None if self.group is None else self.group.tolist(), "sigma": self.sigma,
                "mu_prior_mean": self.mu_prior_mean,
                "mu_prior_sd": None if np.isinf(self.mu_prior_sd) else self.mu_prior_sd,
                "mu_prior": "uniform (improper)" if np.isinf(self.mu_prior_sd) else "normal",
                "tau_prior": self.tau_prior, "tau_prior_description": TAU_PRIOR_FAMILIES[self.tau_prior],
                "tau_scale": self.tau_scale, "tau_scale_group": self.tau_scale_group}


def normal_meta_analysis_inputs(y, se, group=None, *, sigma: float, mu_prior_mean: float = 0.0,
                                mu_prior_sd: float | None = None, tau_prior: str = "halfnormal",
                                tau_scale: float | None = None, tau_scale_group: float | None = None,
                                study_names: Sequence[str] | None = None) -> NormalMetaAnalysisInputs:
    """Validate (every error names its argument); defaults in units of ``sigma`` as RBesT recommends."""
    y_arr = np.atleast_1d(np.asarray(y, dtype=float))
    se_arr = np.atleast_1d(np.asarray(se, dtype=float))
    if y_arr.ndim != 1 or y_arr.shape != se_arr.shape or y_arr.size == 0:
        raise ModelInputError("y and se must be 1-d arrays of the same non-zero length", parameter="y")
    if not np.all(np.isfinite(y_arr)):
        raise ModelInputError(f"estimates must be finite, got {y_arr}", parameter="y")
    if not np.all(np.isfinite(se_arr) & (se_arr > 0)):
        raise ModelInputError(f"standard errors must be finite and > 0, got {se_arr}", parameter="se")
    if not (np.isfinite(sigma) and sigma > 0):
        raise ModelInputError(f"the sampling sd must be > 0, got {sigma}", parameter="sigma")
    h = len(y_arr)
    names = tuple(str(s) for s in study_names) if study_names is not None else tuple(
        f"study_{i + 1}" for i in range(h))
    if len(names) != h or len(set(names)) != h:
        raise ModelInputError("study_names must be unique, one per study", parameter="study_names")
    if tau_prior not in TAU_PRIOR_FAMILIES:
        raise ModelInputError(f"unknown tau prior {tau_prior!r}; choose one of {sorted(TAU_PRIOR_FAMILIES)}",
                              parameter="tau_prior")
    mu_sd = float(sigma) if mu_prior_sd is None else float(mu_prior_sd)
    if not mu_sd > 0 or np.isnan(mu_sd):
        raise ModelInputError(f"must be > 0 (inf for a uniform prior), got {mu_prior_sd}", parameter="mu_prior_sd")
    if not np.isfinite(mu_prior_mean):
        raise ModelInputError(f"must be finite, got {mu_prior_mean}", parameter="mu_prior_mean")
    scale = float(sigma) / 2 if tau_scale is None else float(tau_scale)
    if not (np.isfinite(scale) and scale > 0):
        raise ModelInputError(f"must be > 0, got {tau_scale}", parameter="tau_scale")
    group_arr, scale_g = None, None
    if group is not None:
        group_arr = np.asarray(group, dtype=bool)
        if group_arr.shape != (h,):
            raise ModelInputError("group must have one flag per study", parameter="group")
        if not group_arr.any():
            group_arr = None
    if group_arr is not None:
        scale_g = 2.0 * scale if tau_scale_group is None else float(tau_scale_group)
        if not (np.isfinite(scale_g) and scale_g > 0):
            raise ModelInputError(f"must be > 0, got {tau_scale_group}", parameter="tau_scale_group")
    return NormalMetaAnalysisInputs(y_arr, se_arr, names, group_arr, float(sigma), float(mu_prior_mean), mu_sd,
                                    tau_prior, scale, scale_g)


# --------------------------------------------------------------------------------------------------------------
# conditional Gaussian algebra
# --------------------------------------------------------------------------------------------------------------
def _study_tau(inputs: NormalMetaAnalysisInputs, tau: np.ndarray, tau_group: np.ndarray | None) -> np.ndarray:
    """tau_(g_h) for every node and study: shape tau.shape + (H,)."""
    t = np.broadcast_to(tau[..., None], tau.shape + (len(inputs.y),))
    if inputs.group is None:
        return t
    return np.where(inputs.group, tau_group[..., None], t)


def _conditionals(inputs: NormalMetaAnalysisInputs, tau: np.ndarray, tau_group: np.ndarray | None):
    """log p(y | tau), P(tau) and M(tau) (module docstring), vectorised over nodes."""
    v = inputs.se**2 + _study_tau(inputs, tau, tau_group) ** 2
    y = inputs.y
    flat = np.isinf(inputs.mu_prior_sd)
    prec0 = 0.0 if flat else 1.0 / inputs.mu_prior_sd**2
    prec = prec0 + np.sum(1.0 / v, axis=-1)
    mean = (inputs.mu_prior_mean * prec0 + np.sum(y / v, axis=-1)) / prec
    quad = np.sum(y**2 / v, axis=-1) + inputs.mu_prior_mean**2 * prec0 - prec * mean**2
    if flat:  # improper uniform prior on mu: up to a constant, the -1/2 log(s_mu^2) term is dropped
        logdet = np.log(prec)
    else:
        logdet = np.log(prec / prec0)
    loglik = -0.5 * np.sum(np.log(2 * np.pi * v), axis=-1) - 0.5 * logdet - 0.5 * quad
    return loglik, prec, mean


# --------------------------------------------------------------------------------------------------------------
# quadrature over the heterogeneity
# --------------------------------------------------------------------------------------------------------------
def _tanh_sinh(a: float, b: float, b_c: float, step: float):
    """Tanh-sinh rule on [a, b] in the prior-quantile variable u: nodes u, their complements 1 - u, weights.

    u = a + (b - a) s with s = expit(pi sinh t), t on a grid of spacing ``step`` in [-T, T] (T = 6, so that
    min(s, 1 - s) ~ 1e-275). ``b_c`` = 1 - b is passed separately and 1 - u = (1 - b) + (b - a)(1 - s) is formed
    from it, so nodes next to u = 1 keep their precision (the prior's upper tail, where tau = F^{-1}(u) grows
    without bound). Weights (b - a) pi cosh(t) s (1 - s) step. The nodes cluster doubly
    exponentially at both ends, which absorbs the slowly decaying tail of p(y | tau(u)) as u -> 1 (Takahasi &
    Mori 1974).
    """
    t = np.arange(-TANH_SINH_T, TANH_SINH_T + step / 2, step)
    x = np.pi * np.sinh(t)
    s_lo, s_hi = special.expit(x), special.expit(-x)  # s and 1 - s
    width = b - a
    u = a + width * s_lo
    u_c = b_c + width * s_hi  # 1 - u = (1 - b) + (b - a)(1 - s)
    w = width * np.pi * np.cosh(t) * s_lo * s_hi * step
    keep = (w > 0) & (u > 0) & (u_c > 0)
    return u[keep], u_c[keep], w[keep]


def _tau_at(dist, u: np.ndarray, u_c: np.ndarray) -> np.ndarray:
    """F^{-1}(u), through the inverse survival function at 1 - u in the upper half (no loss of precision)."""
    u, u_c = np.asarray(u, dtype=float), np.asarray(u_c, dtype=float)
    tau = np.where(u <= 0.5, dist.ppf(np.minimum(u, 0.5)), dist.isf(np.minimum(u_c, 0.5)))
    return np.minimum(tau, TAU_CAP)


@dataclass(frozen=True)
class HeterogeneityQuadrature:
    """The posterior of (tau[, tau_group]) on a tensor-product quadrature grid in prior-quantile variables.

    Per dimension d (0: tau, 1: tau_group): the integration range ``ranges[d]`` = (a, b, 1 - a, 1 - b) in u, the
    nodes ``u[d]`` (with complements ``u_c[d]``) and weights ``wu[d]``; ``log_weight``: log of (quadrature
    weight x likelihood), shape (N0[, N1]), normalised so that its exp sums to one; ``log_norm``: the log of the
    likelihood's integral over u (the marginal likelihood, up to the constant of an improper mu prior).
    """

    inputs: NormalMetaAnalysisInputs
    ranges: tuple[tuple[float, float, float, float], ...]
    u: tuple[np.ndarray, ...]
    u_c: tuple[np.ndarray, ...]
    wu: tuple[np.ndarray, ...]
    log_weight: np.ndarray
    log_norm: float
    step: float

    @property
    def ndim(self) -> int:
        return len(self.u)

    @cached_property
    def _priors(self) -> tuple:
        dists = [tau_prior_dist(self.inputs.tau_prior, self.inputs.tau_scale)]
        if self.ndim == 2:
            dists.append(tau_prior_dist(self.inputs.tau_prior, self.inputs.tau_scale_group))
        return tuple(dists)

    def priors(self) -> tuple:
        """The frozen prior distributions of tau (and tau_group)."""
        return self._priors

    def axis_taus(self, dim: int) -> np.ndarray:
        return _tau_at(self.priors()[dim], self.u[dim], self.u_c[dim])

    def taus(self) -> tuple[np.ndarray, ...]:
        """tau (and tau_group) at every node, broadcast to the grid's shape."""
        if self.ndim == 1:
            return (self.axis_taus(0),)
        t0, t1 = np.meshgrid(self.axis_taus(0), self.axis_taus(1), indexing="ij")
        return t0, t1

    def weights(self) -> np.ndarray:
        return np.exp(self.log_weight)

    def marginal_cdf(self, dim: int, t) -> np.ndarray:
        """P(tau_dim <= t | y), exact to quadrature accuracy: the rule of dimension ``dim`` rebuilt on
        [a, min(F(t), b)] for each t, the other dimension integrated over its full rule."""
        t = np.asarray(t, dtype=float)
        dist = self.priors()[dim]
        a, b, _, _ = self.ranges[dim]
        flat_t = np.atleast_1d(t).ravel()
        out = np.empty(flat_t.shape)
        if self.ndim == 2:
            other = 1 - dim
            t_o, w_o = self.axis_taus(other), self.wu[other]
        for i, ti in enumerate(flat_t):
            upper = float(dist.cdf(max(ti, 0.0))) if ti > 0 else 0.0
            upper_c = float(dist.sf(max(ti, 0.0))) if ti > 0 else 1.0
            if upper <= a:
                out[i] = 0.0
                continue
            if upper >= b:
                out[i] = 1.0
                continue
            u, u_c, w = _tanh_sinh(a, upper, upper_c, self.step)
            tau_nodes = _tau_at(dist, u, u_c)
            if self.ndim == 1:
                loglik, _, _ = _conditionals(self.inputs, tau_nodes, None)
                out[i] = np.sum(w * np.exp(loglik - self.log_norm))
            else:
                tn, to = np.meshgrid(tau_nodes, t_o, indexing="ij")
                pair = (tn, to) if dim == 0 else (to, tn)
                loglik, _, _ = _conditionals(self.inputs, *pair)
                out[i] = np.sum(w[:, None] * w_o[None, :] * np.exp(loglik - self.log_norm))
        return np.clip(out.reshape(t.shape), 0.0, 1.0)


def heterogeneity_quadrature(inputs: NormalMetaAnalysisInputs, max_zoom: int = 3) -> HeterogeneityQuadrature:
    """Integrate the likelihood over the prior-quantile cube by tanh-sinh; zoom to the range holding the mass.

    The first pass covers u in (0, 1) (step ``FIRST_STEP``); each zoom rebuilds the rule (step ``STEP``) on the
    range outside which the nodes carry less than MASS_EPS of the posterior, until it stops shrinking.
    """
    two = inputs.group is not None
    first, later = (FIRST_STEP_2D, STEP_2D) if two else (FIRST_STEP, STEP)
    dists = [tau_prior_dist(inputs.tau_prior, inputs.tau_scale)]
    if two:
        dists.append(tau_prior_dist(inputs.tau_prior, inputs.tau_scale_group))
    ranges = [(0.0, 1.0, 1.0, 0.0)] * len(dists)
    for zoom in range(max_zoom + 1):
        step = first if zoom == 0 else later
        rules = [_tanh_sinh(a, b, b_c, step) for a, b, _, b_c in ranges]
        axes = [_tau_at(d, u, u_c) for d, (u, u_c, _) in zip(dists, rules)]
        if two:
            t0, t1 = np.meshgrid(axes[0], axes[1], indexing="ij")
            loglik, _, _ = _conditionals(inputs, t0, t1)
            logw = loglik + np.log(rules[0][2])[:, None] + np.log(rules[1][2])[None, :]
        else:
            loglik, _, _ = _conditionals(inputs, axes[0], None)
            logw = loglik + np.log(rules[0][2])
        log_norm = special.logsumexp(logw)
        mass = np.exp(logw - log_norm)
        new_ranges = []
        for d, (u, u_c, _) in enumerate(rules):
            other = tuple(i for i in range(mass.ndim) if i != d)
            m = mass.sum(axis=other) if other else mass
            below, above = np.cumsum(m), np.cumsum(m[::-1])[::-1]
            lo_i = np.flatnonzero(below < MASS_EPS)
            hi_i = np.flatnonzero(above < MASS_EPS)
            a, b, a_c, b_c = ranges[d]
            if lo_i.size:
                a, a_c = float(u[lo_i[-1]]), float(u_c[lo_i[-1]])
            if hi_i.size:
                b, b_c = float(u[hi_i[0]]), float(u_c[hi_i[0]])
            new_ranges.append((a, b, a_c, b_c))
        shrunk = any((nb - na) < 0.5 * (ob - oa) for (na, nb, _, _), (oa, ob, _, _) in zip(new_ranges, ranges))
        if zoom == max_zoom or (zoom > 0 and not shrunk):
            break
        ranges = new_ranges
    return HeterogeneityQuadrature(inputs, tuple(ranges), tuple(r[0] for r in rules), tuple(r[1] for r in rules),
                                   tuple(r[2] for r in rules), logw - log_norm, float(log_norm), later)


# --------------------------------------------------------------------------------------------------------------
# marginal posteriors
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class HeterogeneityPosterior:
    """Marginal posterior of one between-study sd (tau, or tau_group): moments, cdf, quantiles, density."""

    quadrature: HeterogeneityQuadrature
    dim: int

    def _nodes(self):
        taus = self.quadrature.taus()[self.dim].ravel()
        w = self.quadrature.weights().ravel()
        keep = w > 0
        return taus[keep], w[keep]

    def mean(self) -> float:
        t, w = self._nodes()
        return float(np.sum(w * t))

    def sd(self) -> float:
        t, w = self._nodes()
        m = np.sum(w * t)
        return float(np.sqrt(np.sum(w * (t - m) ** 2)))

    def cdf(self, t) -> np.ndarray:
        return self.quadrature.marginal_cdf(self.dim, t)

    def pdf(self, t) -> np.ndarray:
        """p(tau | y) = p(tau) E[p(y | tau, tau_other)] / p(y)."""
        t = np.asarray(t, dtype=float)
        q = self.quadrature
        dist = q.priors()[self.dim]
        if q.ndim == 1:
            loglik, _, _ = _conditionals(q.inputs, t, None)
            return dist.pdf(t) * np.exp(loglik - q.log_norm)
        other = 1 - self.dim
        t_o, w_o = q.axis_taus(other), q.wu[other]
        tt, to = np.broadcast_arrays(t[..., None], t_o)
        pair = (tt, to) if self.dim == 0 else (to, tt)
        loglik, _, _ = _conditionals(q.inputs, *pair)
        return dist.pdf(t) * np.sum(w_o * np.exp(loglik - q.log_norm), axis=-1)

    def ppf(self, p) -> np.ndarray:
        p = np.asarray(p, dtype=float)
        t, w = self._nodes()
        order = np.argsort(t)
        cum = np.cumsum(w[order])
        hi = float(t[order][min(np.searchsorted(cum, 1 - 1e-14), len(t) - 1)])
        p_max = float(np.max(p, initial=0.0))
        while float(self.cdf(hi)) < p_max and hi < 1e300:  # bracket the largest requested quantile
            hi *= 2
        res = elementwise.find_root(lambda x, q: self.cdf(x) - q, (np.zeros_like(p), np.full_like(p, hi)),
                                    args=(p,), tolerances={"xatol": 1e-12 * max(hi, 1e-300), "xrtol": 1e-12})
        return res.x

    def hdi(self, prob: float = 0.95) -> tuple[float, float]:
        """Shortest interval (the posterior is unimodal): [0, q_prob] when the density decreases from 0, else the
        interval whose ends have equal density."""
        return _unimodal_hdi(self, prob, lower_bound=0.0)

    def summary(self) -> dict[str, float]:
        q = self.ppf(np.array([0.025, 0.5, 0.975]))
        lo, hi = self.hdi(0.95)
        return {"mean": self.mean(), "sd": self.sd(), "q2.5": float(q[0]), "median": float(q[1]),
                "q97.5": float(q[2]), "hdi95_low": lo, "hdi95_high": hi}


def _unimodal_hdi(dist, prob: float, lower_bound: float | None = None) -> tuple[float, float]:
    """Shortest interval of a unimodal density with mass ``prob``: the lower-tail mass p at which the density at
    ppf(p) equals the density at ppf(p + prob) (root by Brent), or [lower bound, ppf(prob)] for a density that
    decreases from its lower bound."""
    if not 0 < prob < 1:
        raise ModelInputError(f"prob must lie in (0, 1), got {prob}", parameter="prob")

    def gap(p: float) -> float:
        lo, hi = dist.ppf(np.array([p, p + prob]))
        return float(dist.pdf(lo) - dist.pdf(hi))

    eps = 1e-12
    g0 = gap(eps)
    if lower_bound is not None and g0 >= 0:  # density decreasing from the bound: the interval starts there
        return float(lower_bound), float(dist.ppf(np.array([prob]))[0])
    g1 = gap(1 - prob - eps)
    if g0 * g1 > 0:  # monotone over the range: the shortest interval touches the side with higher density
        p = eps if g0 > 0 else 1 - prob - eps
    else:
        p = optimize.brentq(gap, eps, 1 - prob - eps, xtol=1e-13, rtol=1e-12)
    lo, hi = dist.ppf(np.array([p, p + prob]))
    return float(lo), float(hi)


def _mixture_summary(mix: NormalMixture) -> dict[str, float]:
    q = mix.ppf(np.array([0.025, 0.5, 0.975]))
    lo, hi = _unimodal_hdi(mix, 0.95)
    return {"mean": mix.mean(), "sd": mix.sd(), "q2.5": float(q[0]), "median": float(q[1]), "q97.5": float(q[2]),
            "hdi95_low": lo, "hdi95_high": hi}


# --------------------------------------------------------------------------------------------------------------
# the result
# --------------------------------------------------------------------------------------------------------------
SUMMARY_COLUMNS = ("mean", "sd", "q2.5", "median", "q97.5", "hdi95_low", "hdi95_high")
PRUNE_WEIGHT = 1e-16


@dataclass
class NormalMAPPrior:
    """Result of :func:`normal_map_prior`.

    ``tau`` (and ``tau_group``): marginal posteriors of the between-study sds. ``mu_posterior`` and
    ``predictive`` (the MAP prior): exact normal mixtures, one component per quadrature node. ``fit``/``mixture``:
    the compact normal-mixture approximation of the predictive (EM, BIC), ``robust_mixture`` its robustified
    version; ``ess``: their ESS by every method (ELIR the default), in observations of sd ``sigma``.
    """

    inputs: NormalMetaAnalysisInputs
    quadrature: HeterogeneityQuadrature
    tau: HeterogeneityPosterior
    tau_group: HeterogeneityPosterior | None
    mu_posterior: NormalMixture
    predictive: NormalMixture
    fit: MixtureFit
    mixture: NormalMixture
    robust_mixture: NormalMixture | None
    ess: dict[str, dict[str, float]]
    settings: dict = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        """tau (tau_group), mu and the MAP predictive theta_pred: mean, sd, equal-tailed quantiles and the 95%
        shortest interval (as bayesmeta quotes it)."""
        rows = {"tau": self.tau.summary()}
        if self.tau_group is not None:
            rows["tau_group"] = self.tau_group.summary()
        rows["mu"] = _mixture_summary(self.mu_posterior)
        rows["theta_pred"] = _mixture_summary(self.predictive)
        table = pd.DataFrame(rows).T.reindex(columns=list(SUMMARY_COLUMNS))
        table.index.name = "quantity"
        return table

    def study_summary(self) -> pd.DataFrame:
        """Each study's estimate and its shrinkage estimate (posterior mean and sd of theta_h)."""
        q = self.quadrature
        taus = q.taus()
        tau = taus[0].ravel()
        tau_g = taus[1].ravel() if q.ndim == 2 else None
        w = q.weights().ravel()
        _, prec, mean = _conditionals(q.inputs, tau, tau_g)
        t = _study_tau(q.inputs, tau, tau_g)  # (N, H)
        s2 = q.inputs.se**2
        with np.errstate(divide="ignore", invalid="ignore"):
            shrink = np.where(t > 0, (1 / t**2) / (1 / s2 + 1 / t**2), 1.0)  # weight on mu; 1 when tau = 0
            cond_mean = np.where(t > 0, (q.inputs.y / s2 + mean[:, None] / t**2) / (1 / s2 + 1 / t**2),
                                 mean[:, None])
            cond_var = np.where(t > 0, 1 / (1 / s2 + 1 / t**2), 0.0) + shrink**2 / prec[:, None]
        m = np.sum(w[:, None] * cond_mean, axis=0)
        v = np.sum(w[:, None] * (cond_var + (cond_mean - m) ** 2), axis=0)
        return pd.DataFrame({"y": q.inputs.y, "se": q.inputs.se, "shrinkage_mean": m, "shrinkage_sd": np.sqrt(v)},
                            index=pd.Index(list(q.inputs.study_names), name="study"))

    def ess_table(self) -> pd.DataFrame:
        priors = {"mixture": self.mixture}
        if self.robust_mixture is not None:
            priors["robust_mixture"] = self.robust_mixture
        table = ess_table(priors)
        table.index.name = "mixture"
        return table

    def as_dict(self) -> dict:
        return {"inputs": self.inputs.as_dict(), "summary": self.summary().reset_index().to_dict(orient="records"),
                "mixture": self.mixture.to_dict(),
                "robust_mixture": None if self.robust_mixture is None else self.robust_mixture.to_dict(),
                "mixture_fit": self.fit.as_dict(), "ess": self.ess, "ess_default_method": DEFAULT_ESS_METHOD,
                "settings": self.settings}


def _grid_mixtures(q: HeterogeneityQuadrature, sigma: float) -> tuple[NormalMixture, NormalMixture]:
    taus = q.taus()
    tau = taus[0].ravel()
    tau_g = taus[1].ravel() if q.ndim == 2 else None
    w = q.weights().ravel()
    keep = w > PRUNE_WEIGHT * w.max()
    tau, w = tau[keep], w[keep]
    tau_g = None if tau_g is None else tau_g[keep]
    _, prec, mean = _conditionals(q.inputs, tau, tau_g)
    w = w / w.sum()
    mu = NormalMixture(w, mean, np.sqrt(1 / prec), sigma)
    pred = NormalMixture(w, mean, np.sqrt(1 / prec + tau**2), sigma)
    return mu, pred


def normal_map_prior(y, se, group=None, *, sigma: float, mu_prior_mean: float = 0.0,
                     mu_prior_sd: float | None = None, tau_prior: str = "halfnormal", tau_scale: float | None = None,
                     tau_scale_group: float | None = None, study_names: Sequence[str] | None = None,
                     n_draws: int = 4000, seed: int = 20250620, mixture_components: int = 4,
                     criterion: str = "bic", robust_weight: float | None = None, robust_mean: float | None = None,
                     robust_n: float = 1.0) -> NormalMAPPrior:
    """Normal meta-analysis -> exact MAP predictive -> normal-mixture approximation -> robustification -> ESS.

    ``y``, ``se``: the studies' estimates and standard errors; ``sigma``: the sampling sd of one observation (the
    unit of the ESS; default priors mu ~ N(mu_prior_mean, sigma^2), tau ~ HalfNormal(sigma/2), as RBesT
    recommends); ``mu_prior_sd = inf`` gives bayesmeta's improper uniform prior on mu. ``n_draws`` independent
    draws (seeded by ``seed``) from the exact predictive are fitted by EM with 1..``mixture_components``
    components, chosen by ``criterion``. ``robust_weight``: weight of the unit-information robust component
    N(robust_mean, sigma^2 / robust_n) (``robust_mean`` defaults to the MAP mean; RBesT recommends choosing it).
    """
    inputs = normal_meta_analysis_inputs(y, se, group, sigma=sigma, mu_prior_mean=mu_prior_mean,
                                         mu_prior_sd=mu_prior_sd, tau_prior=tau_prior, tau_scale=tau_scale,
                                         tau_scale_group=tau_scale_group, study_names=study_names)
    if robust_weight is not None and not 0 <= robust_weight <= 1:
        raise ModelInputError(f"must lie in [0, 1], got {robust_weight}", parameter="robust_weight")
    if not (int(n_draws) == n_draws and n_draws >= 100):
        raise ModelInputError(f"must be an integer >= 100, got {n_draws}", parameter="n_draws")
    q = heterogeneity_quadrature(inputs)
    tau = HeterogeneityPosterior(q, 0)
    tau_group = HeterogeneityPosterior(q, 1) if q.ndim == 2 else None
    mu_post, pred = _grid_mixtures(q, inputs.sigma)
    draws = pred.rvs(int(n_draws), rng=np.random.default_rng(seed))
    mix_fit = fit_normal_mixture(draws, max_components=mixture_components, criterion=criterion, seed=seed,
                                 sigma=inputs.sigma)
    mixture = mix_fit.mixture
    robust = None
    if robust_weight is not None:
        robust = mixture.robustify(robust_weight, mean=robust_mean, n=robust_n)
    ess = {"mixture": ess_all(mixture)}
    if robust is not None:
        ess["robust_mixture"] = ess_all(robust)
    settings = {"n_draws": int(n_draws), "seed": seed, "mixture_components": mixture_components,
                "criterion": criterion, "robust_weight": robust_weight,
                "robust_mean": None if robust is None else float(robust.means[-1]), "robust_n": robust_n,
                "quadrature_nodes": int(q.log_weight.size)}
    return NormalMAPPrior(inputs, q, tau, tau_group, mu_post, pred, mix_fit, mixture, robust, ess, settings)
