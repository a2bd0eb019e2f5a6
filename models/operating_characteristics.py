r"""Exact operating characteristics of binary-endpoint trial designs (pure numpy/scipy, no Monte Carlo).

Priors are beta mixtures :math:`\pi(\theta) = \sum_k w_k \,\mathrm{Beta}(\theta; a_k, b_k)`
(:class:`isletbayes.models.mixtures.BetaMixture`); their conjugate updates come from :mod:`~isletbayes.models.mixtures`.

**Single-arm designs.** With :math:`r` successes of :math:`n`, a design declares success when

* Bayesian rule:  :math:`P(\theta > p_0 \mid r, n) \ge \gamma` under the *analysis* prior, or
* binomial rule: the one-sided exact binomial test of :math:`H_0: \theta \le p_0` rejects at level
  :math:`\alpha`, i.e. :math:`P(X \ge r \mid n, p_0) \le \alpha` (equivalently the one-sided
  :math:`1-\alpha` Clopper-Pearson lower bound exceeds :math:`p_0`).

Both rules are monotone in :math:`r` (the binomial likelihood has a monotone likelihood ratio, so posteriors are
stochastically ordered in :math:`r`), so each is a boundary :math:`c_n`: success iff :math:`r \ge c_n`
(:math:`c_n = n + 1` when no outcome wins). Then, exactly,

.. math::
    \mathrm{P}(\text{success} \mid \theta) = P(X \ge c_n),\ X \sim \mathrm{Bin}(n, \theta), \qquad
    \text{assurance} = \sum_{r \ge c_n} \sum_k w^d_k\, \mathrm{BetaBin}(r; n, a^d_k, b^d_k)

where the assurance (probability of success, O'Hagan, Stevens and Campbell 2005, Pharm Stat 4:187-201) averages
the power over the *design* prior :math:`(w^d, a^d, b^d)`: the prior predictive of :math:`r` is a beta-binomial
mixture. Type I error is the success probability at :math:`\theta = p_0`. Discreteness makes all of these saw-toothed
in :math:`n`; they are reported per :math:`n`, never smoothed.

**Two-sample designs** (treatment t vs control c, as RBesT's ``oc2S``, Weber et al. 2021, J Stat Softw 100(19)):
success when :math:`P(\theta_t - \theta_c > \delta \mid r_t, r_c) \ge \gamma`, where

.. math:: P(\theta_t - \theta_c > \delta) = \int_0^1 \pi_c(x \mid r_c)\, S_t(x + \delta \mid r_t)\, dx

(:math:`S_t` the posterior survival function of :math:`\theta_t`), computed for every :math:`(r_t, r_c)` at once by
composite Gauss-Legendre quadrature as one matrix product. The decision region :math:`D` is built once per
:math:`(n_t, n_c)`; then :math:`\mathrm{P}(\text{success}) = b_t^\top D\, b_c` with binomial (or, for assurance,
beta-binomial) probability vectors :math:`b_t, b_c`.

**Interim analyses** (Lee and Liu 2008, Clin Trials 5:93-106). At an interim look with :math:`x` successes of
:math:`n_1`, the predictive probability of success is

.. math:: PP(x) = \sum_{y} P(Y = y \mid x, n_1)\, \mathbf{1}[x + y \ge c_{N}], \quad
          Y \mid x \sim \text{beta-binomial mixture}(N - n_1) \text{ under the analysis posterior},

and the trial stops for futility when :math:`PP(x) < \theta_L`; :math:`PP` is non-decreasing in :math:`x`, so the
futility boundary is the largest :math:`x` with :math:`PP(x) < \theta_L`. Exact operating characteristics of a design
with any number of futility looks follow from a forward recursion over the number of successes among those still in
the trial (convolution with the binomial increment between looks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy import stats

from isletbayes.models.mixtures import BetaMixture, posterior_prob_above
# the vectorised (r-grid) posterior update shared with the mixture layer, so the two never disagree
from isletbayes.models.mixtures import _posterior_components

__all__ = [
    "posterior_prob_above_all",
    "bayes_boundary",
    "bayes_boundaries",
    "binomial_boundaries",
    "success_probability",
    "predictive_pmf",
    "assurance",
    "SingleArmOC",
    "single_arm_oc",
    "smallest_n",
    "two_sample_posterior_prob",
    "two_sample_decision",
    "two_sample_success_probability",
    "two_sample_assurance",
    "predictive_probability",
    "futility_boundary",
    "InterimOC",
    "interim_design",
    "interim_oc",
]


def _components(prior: BetaMixture) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(weights, a, b) of a beta mixture as float arrays of shape (K,)."""
    w = np.atleast_1d(np.asarray(prior.weights, dtype=float))
    a = np.atleast_1d(np.asarray(prior.a, dtype=float))
    b = np.atleast_1d(np.asarray(prior.b, dtype=float))
    return w / w.sum(), a, b


def posterior_prob_above_all(prior: BetaMixture, n: int, p0: float) -> np.ndarray:
    """P(theta > p0 | r, n) under ``prior`` for every r = 0..n (shape (n+1,))."""
    return posterior_prob_above(prior, np.arange(n + 1), n, p0)


def bayes_boundary(prior: BetaMixture, n: int, p0: float, gamma: float) -> int:
    """Least r of n with P(theta > p0 | r, n) >= gamma under ``prior`` (n + 1 if no r qualifies)."""
    wins = posterior_prob_above_all(prior, n, p0) >= gamma
    return int(np.argmax(wins)) if wins.any() else n + 1


def bayes_boundaries(prior: BetaMixture, n_values: Sequence[int], p0: float, gamma: float) -> np.ndarray:
    """Bayesian decision boundary c_n for each n: one vectorised pass over the padded (n, r) grid."""
    n_values = np.asarray(n_values, dtype=int)
    r = np.arange(n_values.max() + 1)
    valid = r[None, :] <= n_values[:, None]
    r_grid = np.where(valid, r[None, :], 0)
    prob = posterior_prob_above(prior, r_grid, n_values[:, None], p0)
    wins = (prob >= gamma) & valid
    return np.where(wins.any(axis=1), np.argmax(wins, axis=1), n_values + 1)


def binomial_boundaries(n_values: Sequence[int], p0: float, alpha: float) -> np.ndarray:
    """Least r with one-sided exact binomial p-value P(X >= r | n, p0) <= alpha, for each n (n + 1 if none)."""
    n_values = np.asarray(n_values, dtype=int)
    r = np.arange(n_values.max() + 1)
    valid = r[None, :] <= n_values[:, None]
    p_value = stats.binom.sf(r[None, :] - 1, n_values[:, None], p0)
    wins = (p_value <= alpha) & valid
    return np.where(wins.any(axis=1), np.argmax(wins, axis=1), n_values + 1)


def success_probability(boundaries, n_values, theta) -> np.ndarray:
    """P(X >= c_n | n, theta) for every n (rows) and theta (columns)."""
    c = np.asarray(boundaries)[:, None]
    n = np.asarray(n_values)[:, None]
    return stats.binom.sf(c - 1, n, np.atleast_1d(np.asarray(theta, dtype=float))[None, :])


def predictive_pmf(prior: BetaMixture, n: int) -> np.ndarray:
    """Prior predictive P(R = r), r = 0..n, of a beta mixture: a beta-binomial mixture."""
    return prior.predictive(n).pmf(np.arange(n + 1))


def assurance(boundaries, n_values, design_prior: BetaMixture) -> np.ndarray:
    """Probability of success P(R >= c_n) under the design prior's beta-binomial predictive, for each n."""
    w, a, b = _components(design_prior)
    c = np.asarray(boundaries)[:, None]
    n = np.asarray(n_values)[:, None]
    return np.sum(w * stats.betabinom.sf(c - 1, n, a, b), axis=-1)


@dataclass
class SingleArmOC:
    """Exact operating characteristics of a single-arm design over a grid of sample sizes."""

    rule: str
    p0: float
    n: np.ndarray
    boundary: np.ndarray  # least number of successes that wins, per n (n + 1: cannot win)
    type1: np.ndarray  # P(success | theta = p0), per n
    theta: np.ndarray  # grid of true rates for the power curve
    power: np.ndarray  # (len(n), len(theta))
    assurance: np.ndarray | None = None  # under the design prior, per n
    settings: dict = field(default_factory=dict)

    def power_at(self, p1: float) -> np.ndarray:
        return success_probability(self.boundary, self.n, [p1])[:, 0]


def single_arm_oc(
    n_values: Sequence[int],
    *,
    rule: str,
    p0: float,
    gamma: float = 0.975,
    alpha: float = 0.025,
    analysis_prior=None,
    design_prior=None,
    theta: Sequence[float] | None = None,
) -> SingleArmOC:
    """Boundaries, type I error, power curve and (given a design prior) assurance for each n, all exact."""
    n_values = np.asarray(n_values, dtype=int)
    if rule == "bayes":
        if analysis_prior is None:
            raise ValueError("the Bayesian rule needs an analysis prior")
        boundary = bayes_boundaries(analysis_prior, n_values, p0, gamma)
    elif rule == "binomial":
        boundary = binomial_boundaries(n_values, p0, alpha)
    else:
        raise ValueError(f"unknown rule {rule!r} (expected 'bayes' or 'binomial')")
    theta = np.linspace(0.0, 1.0, 101) if theta is None else np.asarray(theta, dtype=float)
    type1 = success_probability(boundary, n_values, [p0])[:, 0]
    power = success_probability(boundary, n_values, theta)
    assur = assurance(boundary, n_values, design_prior) if design_prior is not None else None
    settings = {"rule": rule, "p0": p0, "gamma": gamma if rule == "bayes" else None,
                "alpha": alpha if rule == "binomial" else None}
    return SingleArmOC(rule, p0, n_values, boundary, type1, theta, power, assur, settings)


def smallest_n(n_values, ok: np.ndarray) -> dict:
    """The smallest n in the grid meeting every target, and the smallest n from which every larger n meets them.

    Because of the sawtooth both are reported: a design at the first n may fail at n + 1.
    """
    n_values = np.asarray(n_values)
    ok = np.asarray(ok, dtype=bool)
    first = int(n_values[np.argmax(ok)]) if ok.any() else None
    # scan from the end: the start of the final run of True values
    stable = None
    if ok.any() and ok[-1]:
        last_bad = np.flatnonzero(~ok)
        stable = int(n_values[last_bad[-1] + 1]) if last_bad.size else int(n_values[0])
    return {"first": first, "stable": stable}


# --------------------------------------------------------------------------------------------------------------
# two-sample designs
# --------------------------------------------------------------------------------------------------------------

def _quadrature(breakpoints: Sequence[float], n_panels: int = 200, order: int = 16):
    """Composite Gauss-Legendre nodes/weights on [0, 1], with panel edges at the given interior breakpoints."""
    edges = np.unique(np.concatenate([np.linspace(0.0, 1.0, n_panels + 1),
                                      [x for x in breakpoints if 0.0 < x < 1.0]]))
    gl_x, gl_w = np.polynomial.legendre.leggauss(order)
    lo, hi = edges[:-1, None], edges[1:, None]
    nodes = (lo + hi) / 2 + (hi - lo) / 2 * gl_x[None, :]
    weights = (hi - lo) / 2 * gl_w[None, :]
    return nodes.ravel(), weights.ravel()


def _mixture_pdf(w, a, b, x):
    """Density of posterior mixtures (rows: outcomes) at nodes x: shape (rows, len(x))."""
    return np.einsum("rk,rkx->rx", w, stats.beta.pdf(x[None, None, :], a[..., None], b[..., None]))


def _mixture_sf(w, a, b, x):
    return np.einsum("rk,rkx->rx", w, stats.beta.sf(x[None, None, :], a[..., None], b[..., None]))


def two_sample_posterior_prob(prior_t, prior_c, n_t: int, n_c: int, delta: float = 0.0,
                              n_panels: int = 200) -> np.ndarray:
    """P(theta_t - theta_c > delta | r_t, r_c) for every r_t = 0..n_t (rows) and r_c = 0..n_c (columns)."""
    x, qw = _quadrature([1.0 - delta, -delta], n_panels=n_panels)
    wc, ac, bc = _posterior_components(prior_c, np.arange(n_c + 1), n_c)
    wt, at, bt = _posterior_components(prior_t, np.arange(n_t + 1), n_t)
    dens_c = _mixture_pdf(wc, ac, bc, x)  # (n_c+1, M)
    shifted = x + delta
    surv_t = np.where(shifted < 0.0, 1.0, np.where(shifted > 1.0, 0.0,
                      _mixture_sf(wt, at, bt, np.clip(shifted, 0.0, 1.0))))  # (n_t+1, M)
    return np.clip(surv_t @ (dens_c * qw[None, :]).T, 0.0, 1.0)


def two_sample_decision(prior_t, prior_c, n_t: int, n_c: int, delta: float, gamma: float) -> np.ndarray:
    """Decision region D[r_t, r_c] (True = success): computed once per (n_t, n_c)."""
    return two_sample_posterior_prob(prior_t, prior_c, n_t, n_c, delta) >= gamma


def two_sample_success_probability(decision: np.ndarray, theta_t, theta_c) -> np.ndarray:
    """P(success | theta_t, theta_c) for paired arrays of true rates: b_t(theta_t)^T D b_c(theta_c)."""
    theta_t = np.atleast_1d(np.asarray(theta_t, dtype=float))
    theta_c = np.atleast_1d(np.asarray(theta_c, dtype=float))
    n_t, n_c = decision.shape[0] - 1, decision.shape[1] - 1
    bt = stats.binom.pmf(np.arange(n_t + 1)[None, :], n_t, theta_t[:, None])
    bc = stats.binom.pmf(np.arange(n_c + 1)[None, :], n_c, theta_c[:, None])
    return np.einsum("pi,ij,pj->p", bt, decision.astype(float), bc)


def two_sample_assurance(decision: np.ndarray, design_t, design_c) -> float:
    """Probability of success with both arms' true rates drawn from their design priors (independent)."""
    n_t, n_c = decision.shape[0] - 1, decision.shape[1] - 1
    return float(predictive_pmf(design_t, n_t) @ decision.astype(float) @ predictive_pmf(design_c, n_c))


# --------------------------------------------------------------------------------------------------------------
# interim analyses (Lee and Liu 2008)
# --------------------------------------------------------------------------------------------------------------

def predictive_probability(prior: BetaMixture, n_interim: int, n_max: int, final_boundary: int) -> np.ndarray:
    """PP(x) for x = 0..n_interim: P(final successes >= final_boundary | x of n_interim) under the analysis posterior."""
    x = np.arange(n_interim + 1)
    m = n_max - n_interim
    w, a, b = _posterior_components(prior, x, n_interim)
    needed = final_boundary - x  # successes still needed among the remaining m
    return np.sum(w * stats.betabinom.sf(needed[:, None] - 1, m, a, b), axis=-1)


def futility_boundary(pp: np.ndarray, theta_l: float) -> int:
    """Largest interim count x with PP(x) < theta_L (stop for futility at x <= it); -1 if never."""
    stop = np.flatnonzero(np.asarray(pp) < theta_l)
    return int(stop.max()) if stop.size else -1


@dataclass
class InterimOC:
    """Exact operating characteristics of a single-arm design with futility looks."""

    looks: list[int]  # interim sample sizes
    n_max: int
    final_boundary: int
    futility: list[int]  # stop at look j if successes <= futility[j]
    theta: np.ndarray
    success: np.ndarray  # P(success | theta)
    early_stop: np.ndarray  # P(stopped at any interim | theta)
    stop_by_look: np.ndarray  # (len(looks), len(theta))
    expected_n: np.ndarray
    pp: list[np.ndarray] = field(default_factory=list)  # predictive probability per interim count, per look


def interim_oc(looks: Sequence[int], n_max: int, final_boundary: int, futility: Sequence[int], theta) -> dict:
    """Forward recursion: distribution of successes among continuing trials, look by look, for each theta."""
    theta = np.atleast_1d(np.asarray(theta, dtype=float))
    stages = list(looks) + [n_max]
    # p[x, t]: P(x successes so far and still running) for theta t
    p = np.zeros((1, theta.size))
    p[0] = 1.0
    n_prev = 0
    stop_by_look = []
    for j, n_j in enumerate(stages):
        m = n_j - n_prev
        inc = stats.binom.pmf(np.arange(m + 1)[:, None], m, theta[None, :])  # (m+1, T)
        new = np.zeros((p.shape[0] + m, theta.size))
        for k in range(m + 1):  # convolution over the increment, vectorised over x and theta
            new[k:k + p.shape[0]] += p * inc[k]
        p = new
        if j < len(looks):
            f = futility[j]
            stop_by_look.append(p[: f + 1].sum(axis=0) if f >= 0 else np.zeros(theta.size))
            if f >= 0:
                p[: f + 1] = 0.0
        n_prev = n_j
    success = p[final_boundary:].sum(axis=0) if final_boundary <= n_max else np.zeros(theta.size)
    stop_by_look = np.array(stop_by_look).reshape(len(looks), theta.size)
    increments = np.diff(np.array(stages))
    # a trial stopped at look j has n = looks[j]; otherwise n_max
    still_running = 1.0 - np.cumsum(stop_by_look, axis=0)
    expected_n = stages[0] + (increments[:, None] * still_running).sum(axis=0) if len(looks) else np.full(
        theta.size, float(n_max))
    return {"success": success, "early_stop": stop_by_look.sum(axis=0), "stop_by_look": stop_by_look,
            "expected_n": expected_n}


def interim_design(
    analysis_prior,
    looks: Sequence[int],
    n_max: int,
    final_boundary: int,
    theta_l: float,
    theta,
) -> InterimOC:
    """Futility boundaries from Lee-Liu predictive probabilities at each look, then the design's exact OC."""
    looks = [int(n) for n in looks]
    if any(not 0 < n < n_max for n in looks) or looks != sorted(set(looks)):
        raise ValueError(f"interim looks must be increasing and between 1 and n_max - 1 = {n_max - 1}: {looks}")
    pps = [predictive_probability(analysis_prior, n1, n_max, final_boundary) for n1 in looks]
    futility = [futility_boundary(pp, theta_l) for pp in pps]
    oc = interim_oc(looks, n_max, final_boundary, futility, theta)
    return InterimOC(looks, n_max, final_boundary, futility, np.atleast_1d(np.asarray(theta, dtype=float)),
                     oc["success"], oc["early_stop"], oc["stop_by_look"], oc["expected_n"], pps)
