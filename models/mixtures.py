r"""Exact conjugate mixture priors: beta mixtures for binary endpoints, normal mixtures for normal endpoints.

No MCMC here. Every quantity is exact (closed form) or computed by deterministic 1-d numerics (root finding,
adaptive quadrature), vectorised over the data, so that design calculations can enumerate every outcome.

Beta mixture prior for a response rate :math:`\theta`, and its conjugate update with :math:`r` of :math:`n`::

    p(theta)      = sum_k w_k Beta(theta | a_k, b_k)
    p(theta | r)  = sum_k w_k' Beta(theta | a_k + r, b_k + n - r),
    w_k'          ∝ w_k B(a_k + r, b_k + n - r) / B(a_k, b_k)        (marginal-likelihood reweighting)
    p(k | n)      = sum_k w_k BetaBinomial(k | n, a_k, b_k)          (prior predictive of a new trial of size n)

Normal mixture prior for a mean :math:`\mu`, one observation having known sampling sd :math:`\sigma`, and the
update with the mean :math:`\bar y` of :math:`n` observations::

    p(mu)         = sum_k w_k N(mu | m_k, s_k^2)
    p(mu | ybar)  = sum_k w_k' N(mu | m_k', s_k'^2),  1/s_k'^2 = 1/s_k^2 + n/sigma^2,
                    m_k' = s_k'^2 (m_k / s_k^2 + n ybar / sigma^2),
    w_k'          ∝ w_k N(ybar | m_k, s_k^2 + sigma^2/n)

The definitions follow the RBesT R package (Weber et al. 2021, J Stat Softw 100(19), "Applying Meta-Analytic-
Predictive Priors with the R Bayesian Evidence Synthesis Tools"), whose source was read for each of them:

* ``robustify`` (Schmidli et al. 2014, Biometrics 70:1023): the mixture's weights are scaled by ``1 - weight`` and a
  component of weight ``weight`` is added. For a beta mixture RBesT uses the mean/sample-size parametrisation with
  ``n + 1`` as sample size, i.e. ``Beta(mean * (n + 1), (1 - mean) * (n + 1))`` (``Beta(1, 1)`` for the default
  ``mean = 1/2, n = 1``); for a normal mixture ``N(mean, sigma^2 / n)``.
* ``ess`` (effective sample size):

  - ``"elir"``: expected local-information ratio (Neuenschwander, Weber, Schmidli, O'Hagan 2020, Biometrics
    76:578): :math:`\int p(\theta)\, i_p(\theta) / i_F(\theta)\, d\theta` with :math:`i_p = -d^2 \log p/d\theta^2`
    and :math:`i_F` the Fisher information of one observation (:math:`1/(\theta(1-\theta))` for a Bernoulli,
    :math:`1/\sigma^2` for a normal). For a beta mixture it is only defined when every ``a_k, b_k >= 1``
    (otherwise the integral diverges); RBesT refuses such mixtures and so does this module. A single beta returns
    ``a + b`` (Neuenschwander et al. 2020), which is the integral for ``a, b > 1`` and its limit as ``a`` or ``b``
    tends to 1 from above. The integral itself jumps at exactly 1 (the boundary term ``(a - 1)(1 - x)/x`` vanishes
    identically), so a *mixture* with a component at ``a = 1`` (e.g. a robustifying Beta(1, 1)) gets the
    integral's value, exactly as RBesT computes it.
  - ``"moment"``: the conjugate distribution with the mixture's mean and sd (beta: ``a + b = m(1-m)/s^2 - 1``;
    normal: ``sigma^2 / s^2``).
  - ``"morita"``: Morita, Thall and Müller (2008, Biometrics 64:595) in RBesT's variant (Neuenschwander et al.
    2020, eq. 9): evaluated at the prior's (largest) mode rather than its mean, the "flattened" prior is
    ``Beta(mode/s, (1-mode)/s)`` (normal: variance ``s * max(s_k^2)``) with ``s = 100``, and the ESS is
    ``(i_p(mode) - i_flat(mode)) / E[i_F(mode)]`` without rounding to an integer.

  ELIR is the default everywhere (as in RBesT); :func:`ess_all` / :func:`ess_table` give all three. For one
  conjugate component they agree; for a mixture they differ because moment matching sees only the (tail-inflated)
  variance, Morita only the curvature at the mode, and ELIR the local information averaged over the prior.

* Quantiles invert the cdf by bracketing root finding (the mixture's q-quantile lies between the smallest and the
  largest component q-quantile). Highest-density intervals: see :meth:`BetaMixture.hdi` and
  :meth:`BetaMixture.hdr`.
* Prior-data conflict: Box (1980, J R Stat Soc A 143:383) prior-predictive p-values, the headline one-sided in the
  direction of the data, and "not applicable" (None) under a reference prior; see :func:`prior_data_conflict`.
* Comparisons carrying the comparator's uncertainty: P(theta_t - theta_c > delta) for independent mixtures (RBesT's
  ``pmixdiff``), vectorised over delta: closed form for normal mixtures, tanh-sinh quadrature for beta mixtures;
  see :func:`prob_difference_greater`.
* Tipping point: the borrowed ESS of a beta prior centred at the comparator mean at which
  P(theta > p0 | data) falls below the decision threshold, by root finding; see :func:`tipping_point`.
* ``fit_beta_mixture``: the EM algorithm of RBesT's ``mixfit`` for beta mixtures (weighted maximum-likelihood
  M-step; ``a_k, b_k > 1`` by default so the ELIR ESS is defined), with the number of components chosen by an
  information criterion (RBesT's ``automixfit`` uses AIC with penalty 6 per parameter: ``criterion="aic6"``);
  ``fit_normal_mixture``: the same for normal mixtures (closed-form M-step).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import scipy

from isletbayes.models.validation import ModelInputError

if TYPE_CHECKING:  # pandas is imported where a table is built, not with the exact layer
    import pandas as pd

__all__ = [
    "BetaMixture",
    "BetaBinomialMixture",
    "NormalMixture",
    "ConflictCheck",
    "MixtureFit",
    "TippingPoint",
    "ESS_METHODS",
    "DEFAULT_ESS_METHOD",
    "posterior_prob_above",
    "posterior_prob_below",
    "prob_difference_greater",
    "prior_data_conflict",
    "reference_prior_name",
    "ess_all",
    "ess_table",
    "tipping_point",
    "borrowed_prior",
    "prob_above_with_borrowing",
    "fit_beta_mixture",
    "fit_normal_mixture",
    "shortest_interval",
]

MORITA_S = 100.0
_EPS = np.finfo(float).eps


# --------------------------------------------------------------------------------------------------------------
# shared numerics (module-level functions, used by both mixture families)
# --------------------------------------------------------------------------------------------------------------
def _as_1d(name: str, values) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(values, dtype=float)).copy()
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr}")
    arr.setflags(write=False)
    return arr


def _check_weights(weights: np.ndarray) -> np.ndarray:
    if np.any(weights < 0):
        raise ValueError(f"mixture weights must be >= 0, got {weights}")
    total = weights.sum()
    if not abs(total - 1.0) < 1e-6:
        raise ValueError(f"mixture weights must sum to 1, got sum {total!r}")
    # remove rounding in the last digits, but leave weights that already sum to 1 up to rounding as they are, so
    # that rebuilding a mixture from its own weights (e.g. after a JSON round trip) gives the same numbers
    w = weights.copy() if abs(total - 1.0) <= 4 * _EPS * len(weights) else weights / total
    w.setflags(write=False)
    return w


def _ppf_by_root(dist, q, lo_k: np.ndarray, hi_k: np.ndarray, support: tuple[float, float]) -> np.ndarray:
    """Invert ``dist.cdf`` at probabilities ``q``; ``lo_k``/``hi_k`` are the component quantiles, shape q.shape+(K,).

    The mixture cdf at the smallest component q-quantile is <= q and at the largest is >= q, so they bracket
    the root exactly; Chandrupatla's method (scipy's elementwise ``find_root``) then runs on all q at once.
    """
    q = np.asarray(q, dtype=float)
    if np.any((q < 0) | (q > 1)) or np.any(np.isnan(q)):
        raise ValueError("probabilities must lie in [0, 1]")
    lo = np.min(lo_k, axis=-1)
    hi = np.max(hi_k, axis=-1)
    out = np.array(lo, dtype=float, copy=True)
    todo = (hi > lo) & (q > 0) & (q < 1)
    if np.any(todo):
        from scipy.optimize import elementwise

        qt = q[todo] if q.ndim else q
        res = elementwise.find_root(
            lambda x, p: dist.cdf(x) - p,
            (lo[todo] if q.ndim else lo, hi[todo] if q.ndim else hi),
            args=(qt,),
            tolerances={"xatol": 1e-14, "xrtol": 4 * _EPS, "fatol": 0.0, "frtol": 0.0},
        )
        if q.ndim:
            out[todo] = res.x
        else:
            out = np.asarray(res.x, dtype=float)
    out = np.where(q == 0, support[0], out)
    out = np.where(q == 1, support[1], out)
    return out[()] if out.ndim == 0 else out


def _shortest_interval(dist, prob: float) -> tuple[float, float]:
    """Shortest interval [ppf(p), ppf(p + prob)] over the lower-tail mass p in [0, 1 - prob].

    A coarse grid over p finds the best basin (a multimodal mixture can have several local minima of the width),
    then a bounded scalar minimisation refines it; both ends p = 0 and p = 1 - prob are candidates, which
    covers monotone and U-shaped densities whose shortest interval touches the support's edge.
    """
    if not 0 < prob < 1:
        raise ValueError(f"prob must lie in (0, 1), got {prob}")
    span = 1.0 - prob
    grid = np.linspace(0.0, span, 401)
    widths = dist.ppf(np.minimum(grid + prob, 1.0)) - dist.ppf(grid)
    i = int(np.argmin(widths))
    best_p, best_w = grid[i], widths[i]
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    if hi > lo:
        res = scipy.optimize.minimize_scalar(
            lambda p: float(dist.ppf(min(p + prob, 1.0)) - dist.ppf(p)),
            bounds=(lo, hi), method="bounded", options={"xatol": 1e-12},
        )
        if res.fun < best_w:
            best_p, best_w = float(res.x), float(res.fun)
    return float(dist.ppf(best_p)), float(dist.ppf(min(best_p + prob, 1.0)))


def _hdr(dist, prob: float, lower: float, upper: float) -> list[tuple[float, float]]:
    """Highest-density region {x : pdf(x) >= c} with mass ``prob``, as a list of disjoint intervals.

    The density is evaluated on a fine grid between ``lower`` and ``upper`` (quantiles far in the tails); the
    level c is found by root finding on the exact mass of the region, whose end points are located exactly
    (root finding on pdf - c inside each grid cell where the grid crosses c).
    """
    if not 0 < prob < 1:
        raise ValueError(f"prob must lie in (0, 1), got {prob}")
    x = np.linspace(lower, upper, 20001)
    dens = dist.pdf(x)

    def region(c: float) -> list[tuple[float, float]]:
        above = dens >= c
        intervals = []
        i = 0
        n = len(x)
        while i < n:
            if not above[i]:
                i += 1
                continue
            j = i
            while j + 1 < n and above[j + 1]:
                j += 1
            left = x[i] if i == 0 else scipy.optimize.brentq(lambda t: dist.pdf(t) - c, x[i - 1], x[i], xtol=1e-14)
            right = x[j] if j == n - 1 else scipy.optimize.brentq(lambda t: dist.pdf(t) - c, x[j], x[j + 1], xtol=1e-14)
            intervals.append((float(left), float(right)))
            i = j + 1
        return intervals

    def mass(c: float) -> float:
        return sum(float(dist.cdf(r) - dist.cdf(l)) for l, r in region(c))

    c_hi = float(np.max(dens))
    c = scipy.optimize.brentq(lambda c: mass(c) - prob, 0.0, c_hi * (1 - 1e-12), xtol=1e-13 * c_hi, rtol=1e-12)
    return region(c)


def _mixture_information(log_w: np.ndarray, logf: np.ndarray, grad: np.ndarray,
                         hess: np.ndarray) -> np.ndarray:
    """-d^2/dx^2 log p(x) of a mixture, from each component's log density, gradient and hessian (shape (..., K)).

    With responsibilities omega_k(x) = w_k f_k(x) / p(x): d^2 log p = sum omega_k (h_k + g_k^2) - (sum omega_k g_k)^2.
    """
    lw = log_w + logf
    omega = np.exp(lw - scipy.special.logsumexp(lw, axis=-1, keepdims=True))
    g = np.sum(omega * grad, axis=-1)
    return g**2 - np.sum(omega * (hess + grad**2), axis=-1)


# --------------------------------------------------------------------------------------------------------------
# beta-binomial mixture (the prior predictive of a binary endpoint)
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class BetaBinomialMixture:
    """sum_k w_k BetaBinomial(k | n, a_k, b_k): the number of responders among the next ``n``."""

    weights: np.ndarray
    a: np.ndarray
    b: np.ndarray
    n: int

    def __post_init__(self):
        if int(self.n) != self.n or self.n < 0:
            raise ValueError(f"n must be a non-negative integer, got {self.n}")
        object.__setattr__(self, "n", int(self.n))

    def logpmf(self, k) -> np.ndarray:
        k = np.asarray(k, dtype=float)[..., None]
        comp = scipy.stats.betabinom.logpmf(k, self.n, self.a, self.b)
        return scipy.special.logsumexp(np.log(self.weights) + comp, axis=-1)

    def pmf(self, k) -> np.ndarray:
        return np.exp(self.logpmf(k))

    def cdf(self, k) -> np.ndarray:
        """P(K <= k)."""
        k = np.asarray(k, dtype=float)[..., None]
        return np.clip(np.sum(self.weights * scipy.stats.betabinom.cdf(k, self.n, self.a, self.b), axis=-1), 0.0, 1.0)

    def sf(self, k) -> np.ndarray:
        """P(K > k) (scipy's convention)."""
        k = np.asarray(k, dtype=float)[..., None]
        return np.clip(np.sum(self.weights * scipy.stats.betabinom.sf(k, self.n, self.a, self.b), axis=-1), 0.0, 1.0)

    def support(self) -> np.ndarray:
        return np.arange(self.n + 1)

    def mean(self) -> float:
        return float(np.sum(self.weights * self.n * self.a / (self.a + self.b)))

    def var(self) -> float:
        k = self.support()
        p = self.pmf(k)
        m = float(np.sum(k * p))
        return float(np.sum((k - m) ** 2 * p))

    def sd(self) -> float:
        return float(np.sqrt(self.var()))

    def ppf(self, q) -> np.ndarray:
        """Smallest k with P(K <= k) >= q."""
        q = np.asarray(q, dtype=float)
        cdf = np.cumsum(self.pmf(self.support()))
        return np.minimum(np.searchsorted(cdf, q - 1e-12, side="left"), self.n)


# --------------------------------------------------------------------------------------------------------------
# beta mixtures
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class BetaMixture:
    """Mixture of beta distributions, sum_k weights[k] * Beta(a[k], b[k]) (arrays are read-only)."""

    weights: np.ndarray
    a: np.ndarray
    b: np.ndarray

    def __post_init__(self):
        w, a, b = _as_1d("weights", self.weights), _as_1d("a", self.a), _as_1d("b", self.b)
        if not len(w) == len(a) == len(b) or len(w) == 0:
            raise ValueError(f"weights, a and b must have the same non-zero length, got {len(w)}, {len(a)}, {len(b)}")
        if np.any(a <= 0) or np.any(b <= 0):
            raise ValueError(f"beta parameters must be > 0, got a={a}, b={b}")
        object.__setattr__(self, "weights", _check_weights(w))
        object.__setattr__(self, "a", a)
        object.__setattr__(self, "b", b)

    # constructors ---------------------------------------------------------------------------------------------
    @classmethod
    def single(cls, a: float, b: float) -> "BetaMixture":
        return cls([1.0], [a], [b])

    @classmethod
    def from_mean_n(cls, mean: float, n: float) -> "BetaMixture":
        """Beta(mean * n, (1 - mean) * n): a prior 'worth' n observations with the given mean (ESS n)."""
        if not 0 < mean < 1 or not n > 0:
            raise ValueError(f"need 0 < mean < 1 and n > 0, got mean={mean}, n={n}")
        return cls.single(mean * n, (1 - mean) * n)

    @classmethod
    def from_dict(cls, d: dict) -> "BetaMixture":
        return cls(d["weights"], d["a"], d["b"])

    def to_dict(self) -> dict:
        return {"family": "beta", "weights": self.weights.tolist(), "a": self.a.tolist(), "b": self.b.tolist()}

    @property
    def n_components(self) -> int:
        return len(self.weights)

    def __repr__(self) -> str:
        comps = " + ".join(f"{w:.4g}*Beta({a:.4g}, {b:.4g})" for w, a, b in zip(self.weights, self.a, self.b))
        return f"BetaMixture({comps})"

    def allclose(self, other: "BetaMixture", rtol: float = 1e-9, atol: float = 0.0) -> bool:
        return (isinstance(other, BetaMixture) and self.n_components == other.n_components
                and all(np.allclose(x, y, rtol=rtol, atol=atol) for x, y in
                        ((self.weights, other.weights), (self.a, other.a), (self.b, other.b))))

    # densities ------------------------------------------------------------------------------------------------
    def logpdf(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=float)[..., None]
        return scipy.special.logsumexp(np.log(self.weights) + scipy.stats.beta.logpdf(x, self.a, self.b), axis=-1)

    def pdf(self, x) -> np.ndarray:
        return np.exp(self.logpdf(x))

    # cdf, sf and ppf call the regularised incomplete beta function and its inverse directly: the same values,
    # bit for bit, as scipy.stats.beta's cdf, sf and ppf (which evaluate these functions, x clipped to [0, 1]), without
    # importing scipy.stats, which is the larger part of a warm report's start-up.
    def cdf(self, x) -> np.ndarray:
        x = np.clip(np.asarray(x, dtype=float), 0.0, 1.0)[..., None]
        return np.clip(np.sum(self.weights * scipy.special.betainc(self.a, self.b, x), axis=-1), 0.0, 1.0)

    def sf(self, x) -> np.ndarray:
        x = np.clip(np.asarray(x, dtype=float), 0.0, 1.0)[..., None]
        return np.clip(np.sum(self.weights * scipy.special.betaincc(self.a, self.b, x), axis=-1), 0.0, 1.0)

    def ppf(self, q) -> np.ndarray:
        """Quantiles (vectorised); exact to ~1e-14 by root finding on the cdf."""
        q = np.asarray(q, dtype=float)
        if self.n_components == 1:
            return scipy.special.betaincinv(self.a[0], self.b[0], q)
        comp = scipy.special.betaincinv(self.a, self.b, q[..., None])
        return _ppf_by_root(self, q, comp, comp, (0.0, 1.0))

    def rvs(self, size, rng=None) -> np.ndarray:
        rng = np.random.default_rng(rng)
        comp = rng.choice(self.n_components, size=size, p=self.weights)
        return rng.beta(self.a[comp], self.b[comp])

    # moments ----------------------------------------------------------------------------------------------------
    def mean(self) -> float:
        return float(np.sum(self.weights * self.a / (self.a + self.b)))

    def var(self) -> float:
        ab = self.a + self.b
        second = np.sum(self.weights * self.a * (self.a + 1) / (ab * (ab + 1)))
        return float(second - self.mean() ** 2)

    def sd(self) -> float:
        return float(np.sqrt(self.var()))

    def mode(self) -> float:
        """The global mode (RBesT's mixmode: maximise around each component, keep the highest density)."""
        if self.n_components == 1:
            a, b = self.a[0], self.b[0]
            if a > 1 and b > 1:
                return float((a - 1) / (a + b - 2))
        candidates = []
        for a, b in zip(self.a, self.b):
            lo, hi = scipy.stats.beta.ppf([0.005, 0.995], a, b)
            lo, hi = max(lo, _EPS), min(hi, 1 - _EPS)
            res = scipy.optimize.minimize_scalar(lambda x: -float(self.logpdf(x)), bounds=(lo, hi),
                                                 method="bounded", options={"xatol": 1e-12})
            candidates.extend([float(res.x), lo, hi])
        candidates = np.asarray(candidates)
        return float(candidates[np.argmax(self.logpdf(candidates))])

    # intervals --------------------------------------------------------------------------------------------------
    def eti(self, prob: float = 0.95) -> tuple[float, float]:
        """Equal-tailed interval."""
        lo, hi = self.ppf([(1 - prob) / 2, (1 + prob) / 2])
        return float(lo), float(hi)

    def hdi(self, prob: float = 0.95) -> tuple[float, float]:
        """The shortest single interval holding ``prob`` of the mass.

        For a unimodal (or monotone, or U-shaped single-beta) density this is exactly the highest-density interval;
        it is found by minimising ppf(p + prob) - ppf(p) over the lower-tail mass p. For a multimodal mixture the
        shortest interval can span a low-density valley: use :meth:`hdr` for the highest-density *region*, which
        may be a union of intervals.
        """
        return _shortest_interval(self, prob)

    def hdr(self, prob: float = 0.95) -> list[tuple[float, float]]:
        """Highest-density region {theta : pdf(theta) >= c} with mass ``prob``: a list of disjoint intervals."""
        lo = float(np.min(scipy.stats.beta.ppf(1e-10, self.a, self.b)))
        hi = float(np.max(scipy.stats.beta.ppf(1 - 1e-10, self.a, self.b)))
        return _hdr(self, prob, lo, hi)

    # conjugate updates ----------------------------------------------------------------------------------------
    def posterior(self, r: int, n: int) -> "BetaMixture":
        """Posterior after r responders of n: same components shifted by (r, n - r), weights by marginal likelihood."""
        r, n = _check_counts(r, n)
        a_post, b_post = self.a + r, self.b + n - r
        log_w = np.log(self.weights) + scipy.special.betaln(a_post, b_post) - scipy.special.betaln(self.a, self.b)
        return BetaMixture(np.exp(log_w - scipy.special.logsumexp(log_w)), a_post, b_post)

    def predictive(self, n: int) -> BetaBinomialMixture:
        """Prior predictive of the number of responders among the next n."""
        return BetaBinomialMixture(self.weights, self.a, self.b, n)

    def log_marginal_likelihood(self, r: int, n: int) -> float:
        """log P(r | n) under the mixture (the beta-binomial mixture pmf at r)."""
        return float(self.predictive(n).logpmf(r))

    def robustify(self, weight: float, mean: float = 0.5, n: float = 1.0) -> "BetaMixture":
        """RBesT's robustify: scale the weights by 1 - weight and add Beta(mean*(n+1), (1-mean)*(n+1)) with ``weight``.

        RBesT uses n + 1 as the component's sample size so that the default (mean 1/2, n 1) is the uniform Beta(1, 1)
        rather than the unit-information Beta(1/2, 1/2).
        """
        if not 0 <= weight <= 1:
            raise ValueError(f"robust weight must lie in [0, 1], got {weight}")
        if not 0 < mean < 1:
            raise ValueError(f"robust mean must lie in (0, 1), got {mean}")
        if not n >= 0:
            raise ValueError(f"robust n must be >= 0, got {n}")
        return BetaMixture(np.append(self.weights * (1 - weight), weight),
                           np.append(self.a, mean * (n + 1)), np.append(self.b, (1 - mean) * (n + 1)))

    # effective sample size --------------------------------------------------------------------------------------
    def _information(self, x: np.ndarray) -> np.ndarray:
        """-d^2/dtheta^2 log p(theta) (x clamped away from 0 and 1 as RBesT does)."""
        x = np.clip(np.asarray(x, dtype=float), _EPS, 1 - _EPS)[..., None]
        a, b = self.a, self.b
        logf = scipy.stats.beta.logpdf(x, a, b)
        grad = (a - 1) / x - (b - 1) / (1 - x)
        hess = -(a - 1) / x**2 - (b - 1) / (1 - x) ** 2
        return _mixture_information(np.log(self.weights), logf, grad, hess)

    def ess(self, method: str = "elir", s: float = MORITA_S) -> float:
        """Prior effective sample size (RBesT's ``ess``; see the module docstring). Not rounded."""
        if method == "moment":
            m, v = self.mean(), self.var()
            return float(m * (1 - m) / v - 1)
        if method == "elir":
            if self.n_components == 1:
                return float(self.a[0] + self.b[0])
            if np.any(self.a < 1) or np.any(self.b < 1):
                raise ValueError("ELIR ESS is undefined when a beta mixture has a parameter < 1 (the integral "
                                 "diverges); fit with a, b > 1 or use method='moment'")
            return self._elir()
        if method == "morita":
            mode = self.mode()
            x = np.clip(mode, _EPS, 1 - _EPS)
            info_prior = float(self._information(x))
            a0, b0 = x / s, (1 - x) / s
            info_flat = (a0 - 1) / x**2 + (b0 - 1) / (1 - x) ** 2
            p0 = float(self.predictive(1).pmf(0))
            expected_fisher = p0 / (1 - x) ** 2 + (1 - p0) / x**2
            return float((info_prior - info_flat) / expected_fisher)
        raise ValueError(f"unknown ESS method {method!r}; use 'elir', 'moment' or 'morita'")

    def _elir_integrand(self, logit_x) -> np.ndarray:
        """p(x) * lir(x) * dx/dl on the logit scale l = logit(x), computed without overflow in either tail
        (vectorised over ``logit_x``).

        With G_k = x(1-x) g_k and H_k = x^2(1-x)^2 h_k (bounded, g_k and h_k the component's first and second
        log-density derivatives), x^2 (1-x)^2 i_p(x) = (sum omega_k G_k)^2 - sum omega_k (H_k + G_k^2); since
        lir = x(1-x) i_p and dx = x(1-x) dl, the integrand is p(x) times that bounded expression.
        """
        l = np.asarray(logit_x, dtype=float)[..., None]
        log_x, log_1mx = scipy.special.log_expit(l), scipy.special.log_expit(-l)
        x, one_minus_x = np.exp(log_x), np.exp(log_1mx)
        a, b = self.a, self.b
        log_f = (a - 1) * log_x + (b - 1) * log_1mx - scipy.special.betaln(a, b)
        lw = np.log(self.weights) + log_f
        log_p = scipy.special.logsumexp(lw, axis=-1, keepdims=True)
        omega = np.exp(lw - log_p)
        big_g = (a - 1) * one_minus_x - (b - 1) * x
        big_h = -(a - 1) * one_minus_x**2 - (b - 1) * x**2
        q = np.sum(omega * big_g, axis=-1) ** 2 - np.sum(omega * (big_h + big_g**2), axis=-1)
        return np.exp(log_p[..., 0]) * q

    def _elir(self) -> float:
        # ELIR = integral of p(x) lir(x) dx, on the logit scale where the integrand is bounded and decays
        # exponentially in both tails (it behaves like x^(a_min - 1) near 0 when a_min > 1); the line is split at
        # the components' logit means so that no narrow peak is missed, and every piece is integrated at once by
        # tanh-sinh quadrature (to ~1e-11 relative)
        cuts = np.unique(scipy.special.logit(self.a / (self.a + self.b)))
        lo = np.array([-np.inf, *cuts.tolist()])
        hi = np.array([*cuts.tolist(), np.inf])
        res = scipy.integrate.tanhsinh(self._elir_integrand, lo, hi, atol=1e-13, rtol=1e-11, maxlevel=14)
        if not np.all(res.success):
            raise RuntimeError(f"ELIR quadrature did not converge (error {res.error})")
        return float(np.sum(res.integral))


def _check_counts(r, n) -> tuple[int, int]:
    if int(n) != n or int(r) != r or not 0 <= r <= n:
        raise ValueError(f"need integers 0 <= r <= n, got r={r}, n={n}")
    return int(r), int(n)


# --------------------------------------------------------------------------------------------------------------
# normal mixtures (known sampling sd)
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False, init=False)
class NormalMixture:
    """Mixture of normals, sum_k weights[k] N(means[k], sds[k]^2); ``sigma`` is the known sd of one observation.

    Constructed as ``NormalMixture(weights, mean, sd, sigma=None)``; the component parameters are the attributes
    ``means`` and ``sds`` (``mean()`` and ``sd()`` are the mixture's moments).
    """

    weights: np.ndarray
    means: np.ndarray
    sds: np.ndarray
    sigma: float | None = None

    def __init__(self, weights, mean, sd, sigma: float | None = None):
        w, m, s = _as_1d("weights", weights), _as_1d("mean", mean), _as_1d("sd", sd)
        if not len(w) == len(m) == len(s) or len(w) == 0:
            raise ValueError("weights, mean and sd must have the same non-zero length")
        if np.any(s <= 0):
            raise ValueError(f"sd must be > 0, got {s}")
        if sigma is not None and not (np.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be > 0, got {sigma}")
        object.__setattr__(self, "weights", _check_weights(w))
        object.__setattr__(self, "means", m)
        object.__setattr__(self, "sds", s)
        object.__setattr__(self, "sigma", None if sigma is None else float(sigma))

    @classmethod
    def single(cls, mean: float, sd: float, sigma: float | None = None) -> "NormalMixture":
        return cls([1.0], [mean], [sd], sigma)

    @classmethod
    def from_dict(cls, d: dict) -> "NormalMixture":
        return cls(d["weights"], d["mean"], d["sd"], d.get("sigma"))

    def to_dict(self) -> dict:
        return {"family": "normal", "weights": self.weights.tolist(), "mean": self.means.tolist(),
                "sd": self.sds.tolist(), "sigma": self.sigma}

    @property
    def n_components(self) -> int:
        return len(self.weights)

    def __repr__(self) -> str:
        comps = " + ".join(f"{w:.4g}*N({m:.4g}, {s:.4g}^2)" for w, m, s in zip(self.weights, self.means, self.sds))
        return f"NormalMixture({comps}; sigma={self.sigma})"

    def _need_sigma(self) -> float:
        if self.sigma is None:
            raise ValueError("this operation needs the sampling sd: construct the mixture with sigma=...")
        return self.sigma

    def logpdf(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=float)[..., None]
        return scipy.special.logsumexp(np.log(self.weights) + scipy.stats.norm.logpdf(x, self.means, self.sds), axis=-1)

    def pdf(self, x) -> np.ndarray:
        return np.exp(self.logpdf(x))

    def cdf(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=float)[..., None]
        return np.clip(np.sum(self.weights * scipy.stats.norm.cdf(x, self.means, self.sds), axis=-1), 0.0, 1.0)

    def sf(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=float)[..., None]
        return np.clip(np.sum(self.weights * scipy.stats.norm.sf(x, self.means, self.sds), axis=-1), 0.0, 1.0)

    def ppf(self, q) -> np.ndarray:
        q = np.asarray(q, dtype=float)
        if self.n_components == 1:
            return scipy.stats.norm.ppf(q, self.means[0], self.sds[0])
        comp = scipy.stats.norm.ppf(q[..., None], self.means, self.sds)
        return _ppf_by_root(self, q, comp, comp, (-np.inf, np.inf))

    def rvs(self, size, rng=None) -> np.ndarray:
        rng = np.random.default_rng(rng)
        comp = rng.choice(self.n_components, size=size, p=self.weights)
        return rng.normal(self.means[comp], self.sds[comp])

    def mean(self) -> float:
        return float(np.sum(self.weights * self.means))

    def var(self) -> float:
        return float(np.sum(self.weights * (self.sds**2 + self.means**2)) - self.mean() ** 2)

    def sd(self) -> float:
        return float(np.sqrt(self.var()))

    def mode(self) -> float:
        if self.n_components == 1:
            return float(self.means[0])
        candidates = []
        for m, s in zip(self.means, self.sds):
            res = scipy.optimize.minimize_scalar(lambda x: -float(self.logpdf(x)), bounds=(m - 3 * s, m + 3 * s),
                                                 method="bounded", options={"xatol": 1e-12 * max(1.0, s)})
            candidates.append(float(res.x))
        candidates = np.asarray(candidates)
        return float(candidates[np.argmax(self.logpdf(candidates))])

    def eti(self, prob: float = 0.95) -> tuple[float, float]:
        lo, hi = self.ppf([(1 - prob) / 2, (1 + prob) / 2])
        return float(lo), float(hi)

    def hdi(self, prob: float = 0.95) -> tuple[float, float]:
        """Shortest single interval with mass ``prob`` (the HDI when unimodal; see :meth:`BetaMixture.hdi`)."""
        return _shortest_interval(self, prob)

    def hdr(self, prob: float = 0.95) -> list[tuple[float, float]]:
        lo = float(np.min(self.means - 7 * self.sds))
        hi = float(np.max(self.means + 7 * self.sds))
        return _hdr(self, prob, lo, hi)

    def posterior(self, ybar: float, n: int) -> "NormalMixture":
        """Posterior after observing the mean ``ybar`` of ``n`` observations with known sampling sd ``sigma``."""
        sigma = self._need_sigma()
        if not n > 0:
            raise ValueError(f"n must be > 0, got {n}")
        se2 = sigma**2 / n
        prec = 1 / self.sds**2 + 1 / se2
        sd_post = np.sqrt(1 / prec)
        mean_post = (self.means / self.sds**2 + ybar / se2) / prec
        log_w = np.log(self.weights) + scipy.stats.norm.logpdf(ybar, self.means, np.sqrt(self.sds**2 + se2))
        return NormalMixture(np.exp(log_w - scipy.special.logsumexp(log_w)), mean_post, sd_post, sigma)

    def predictive(self, n: int) -> "NormalMixture":
        """Prior predictive of the mean of the next ``n`` observations."""
        sigma = self._need_sigma()
        return NormalMixture(self.weights, self.means, np.sqrt(self.sds**2 + sigma**2 / n), sigma)

    def robustify(self, weight: float, mean: float | None = None, n: float = 1.0) -> "NormalMixture":
        """RBesT's robustify: add N(mean, sigma^2 / n) with ``weight`` (default mean: the mixture's mean, as RBesT)."""
        sigma = self._need_sigma()
        if not 0 <= weight <= 1:
            raise ValueError(f"robust weight must lie in [0, 1], got {weight}")
        if not n > 0:
            raise ValueError(f"robust n must be > 0, got {n}")
        mean = self.mean() if mean is None else float(mean)
        return NormalMixture(np.append(self.weights * (1 - weight), weight), np.append(self.means, mean),
                             np.append(self.sds, sigma / np.sqrt(n)), sigma)

    def _information(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=float)[..., None]
        logf = scipy.stats.norm.logpdf(x, self.means, self.sds)
        grad = -(x - self.means) / self.sds**2
        hess = -np.ones_like(grad) / self.sds**2
        return _mixture_information(np.log(self.weights), logf, grad, hess)

    def ess(self, method: str = "elir", s: float = MORITA_S) -> float:
        """Effective sample size in units of observations with sd ``sigma`` (RBesT's ess, gaussian family)."""
        sigma = self._need_sigma()
        if method == "moment":
            return float(sigma**2 / self.var())
        if method == "elir":
            if self.n_components == 1:
                return float(sigma**2 / self.sds[0] ** 2)
            # sum_k w_k E_k[i_p(X)]: on each component's quantile scale the integrand is bounded (in the tails
            # the widest component dominates), so tanh-sinh quadrature runs over every component at once
            res = scipy.integrate.tanhsinh(lambda u, m, sd: self._information(scipy.stats.norm.ppf(u, m, sd)),
                                           0.0, 1.0, args=(self.means, self.sds), atol=0.0, rtol=1e-11, maxlevel=14)
            if not np.all(res.success):
                raise RuntimeError(f"ELIR quadrature did not converge (error {res.error})")
            return float(np.sum(self.weights * res.integral) * sigma**2)
        if method == "morita":
            mode = self.mode()
            info_prior = float(self._information(mode))
            info_flat = 1 / (s * float(np.max(self.sds**2)))
            return float((info_prior - info_flat) * sigma**2)
        raise ValueError(f"unknown ESS method {method!r}; use 'elir', 'moment' or 'morita'")


# --------------------------------------------------------------------------------------------------------------
# vectorised helpers for design calculations
# --------------------------------------------------------------------------------------------------------------
def _posterior_components(prior: BetaMixture, r, n):
    r = np.asarray(r, dtype=float)
    n = np.asarray(n, dtype=float)
    if np.any(r < 0) or np.any(r > n):
        raise ValueError("need 0 <= r <= n")
    r, n = np.broadcast_arrays(r, n)
    a_post = prior.a + r[..., None]
    b_post = prior.b + (n - r)[..., None]
    log_w = np.log(prior.weights) + scipy.special.betaln(a_post, b_post) - scipy.special.betaln(prior.a, prior.b)
    w = np.exp(log_w - scipy.special.logsumexp(log_w, axis=-1, keepdims=True))
    return w, a_post, b_post


def posterior_prob_above(prior: BetaMixture, r, n, p0) -> np.ndarray:
    """P(theta > p0 | r of n) for arrays r, n, p0 (broadcast), e.g. all r = 0..n at once."""
    w, a_post, b_post = _posterior_components(prior, r, n)
    p0 = np.asarray(p0, dtype=float)[..., None]
    return np.clip(np.sum(w * scipy.stats.beta.sf(p0, a_post, b_post), axis=-1), 0.0, 1.0)


def posterior_prob_below(prior: BetaMixture, r, n, p0) -> np.ndarray:
    """P(theta < p0 | r of n), vectorised as :func:`posterior_prob_above`."""
    w, a_post, b_post = _posterior_components(prior, r, n)
    p0 = np.asarray(p0, dtype=float)[..., None]
    return np.clip(np.sum(w * scipy.stats.beta.cdf(p0, a_post, b_post), axis=-1), 0.0, 1.0)


def prob_difference_greater(treatment: BetaMixture | NormalMixture, control: BetaMixture | NormalMixture,
                            delta=0.0):
    r"""P(theta_t - theta_c > delta) for independent mixtures, exactly, for a scalar or an array of ``delta``.

    RBesT's ``pmixdiff`` (upper tail). The control's uncertainty is carried: with theta_c from a (robust) MAP
    predictive this is the comparison "against the comparator", not against a fixed benchmark.

    * Two normal mixtures: the difference of components j, k is N(m_j - m_k, s_j^2 + s_k^2), so
      P = sum_jk w_j v_k Phi((m_j - m_k - delta) / sqrt(s_j^2 + s_k^2)) in closed form.
    * Two beta mixtures: P = sum_k w_k [F_k(-delta) 1{delta < 0} + int_{F_k(L)}^{F_k(U)} S_t(F_k^{-1}(u) + delta)
      du] with L = max(0, -delta), U = min(1, 1 - delta), F_k the control component's cdf and S_t the
      treatment's survival function (1 below 0, 0 above 1). On each component's quantile scale u the integrand
      is bounded and monotone (the control density's singularities at 0 and 1, for a parameter < 1, are gone).
      No closed form exists for general parameters; the integral is evaluated by tanh-sinh quadrature
      (scipy.integrate.tanhsinh, vectorised over every delta and component at once); absolute error below
      1e-12.

    Returns a float for a scalar ``delta``, else an array of the shape of ``delta``.
    """
    d = np.asarray(delta, dtype=float)
    if not np.all(np.isfinite(d)):
        raise ModelInputError("delta must be finite", parameter="delta")
    if isinstance(treatment, NormalMixture) and isinstance(control, NormalMixture):
        m = treatment.means[:, None] - control.means[None, :]
        s = np.sqrt(treatment.sds[:, None] ** 2 + control.sds[None, :] ** 2)
        w = treatment.weights[:, None] * control.weights[None, :]
        p = np.sum(w * scipy.stats.norm.sf(d[..., None, None], m, s), axis=(-2, -1))
    elif isinstance(treatment, BetaMixture) and isinstance(control, BetaMixture):
        if np.any((d <= -1) | (d >= 1)):
            raise ModelInputError(f"delta must lie in (-1, 1) for rates, got {delta}", parameter="delta")
        p = _prob_difference_beta(treatment, control, d)
    else:
        raise ModelInputError("treatment and control must both be beta mixtures or both normal mixtures, got "
                              f"{type(treatment).__name__} and {type(control).__name__}", parameter="control")
    p = np.clip(p, 0.0, 1.0)
    return float(p) if p.ndim == 0 else p


def _prob_difference_beta(treatment: BetaMixture, control: BetaMixture, d: np.ndarray) -> np.ndarray:
    dd = d[..., None]  # (..., K_control)
    a, b = control.a, control.b
    lower = scipy.stats.beta.cdf(np.maximum(0.0, -dd), a, b)  # the integral runs on each component's quantile scale
    upper = scipy.stats.beta.cdf(np.minimum(1.0, 1.0 - dd), a, b)
    below = np.where(dd < 0, lower, 0.0)  # x + delta <= 0: the treatment surely exceeds

    def integrand(u, delta_, a_, b_):
        # tanh-sinh's nodes come within 1e-300 of the ends, where boost's beta quantile may not converge; the
        # integrand is bounded by 1, so evaluating it at 1e-15 from the ends changes the integral by < 2e-15
        u = np.clip(u, 1e-15, 1 - 1e-15)
        y = np.clip(scipy.stats.beta.ppf(u, a_, b_) + delta_, 0.0, 1.0)
        return np.sum(treatment.weights * scipy.stats.beta.sf(y[..., None], treatment.a, treatment.b), axis=-1)

    shape = np.broadcast_shapes(dd.shape, a.shape)
    res = scipy.integrate.tanhsinh(integrand, np.broadcast_to(lower, shape), np.broadcast_to(upper, shape),
                                   args=(np.broadcast_to(dd, shape), np.broadcast_to(a, shape),
                                         np.broadcast_to(b, shape)),
                                   atol=1e-13, rtol=1e-12, maxlevel=14)
    if not np.all(res.success):
        raise RuntimeError(f"tanh-sinh quadrature did not converge for P(difference > delta): error {res.error}")
    return np.sum(control.weights * (below + res.integral), axis=-1)


# --------------------------------------------------------------------------------------------------------------
# effective sample size, all methods
# --------------------------------------------------------------------------------------------------------------
ESS_METHODS = ("elir", "moment", "morita")
DEFAULT_ESS_METHOD = "elir"


def ess_all(prior: BetaMixture | NormalMixture) -> dict[str, float]:
    r"""The prior's ESS by every method (ELIR first, the default; NaN where a method is undefined).

    For a single conjugate component the three agree. For a mixture they differ because they summarise different
    things: moment matching sees only the mixture's variance, which heavy tails (e.g. a robust component) inflate,
    so it is the smallest; Morita measures the information at the mode, where the dominant component is
    sharpest, so it is the largest; ELIR averages the local information ratio over the whole prior, lies in
    between, and is the only one that is predictively consistent (the posterior's expected ESS is the prior's plus
    the sample size; Neuenschwander, Weber, Schmidli, O'Hagan 2020, Biometrics 76:578). ELIR is the default
    everywhere, as in RBesT.
    """
    out = {}
    for method in ESS_METHODS:
        try:
            out[method] = float(prior.ess(method))
        except ValueError:
            out[method] = float("nan")  # ELIR of a beta mixture with a parameter < 1 diverges
    return out


def ess_table(priors) -> pd.DataFrame:
    """ESS by every method for named priors (a mapping name -> mixture): one row per prior, columns ESS_METHODS.

    ``table.attrs["default_method"]`` is "elir"; see :func:`ess_all` for why the methods differ for mixtures.
    """
    import pandas as pd

    table = pd.DataFrame({name: ess_all(mix) for name, mix in priors.items()}).T
    table = table.reindex(columns=list(ESS_METHODS)).astype(float)
    table.index.name = "prior"
    table.attrs["default_method"] = DEFAULT_ESS_METHOD
    return table


# --------------------------------------------------------------------------------------------------------------
# prior-data conflict
# --------------------------------------------------------------------------------------------------------------
REFERENCE_BETAS = {(1.0, 1.0): "uniform Beta(1, 1)", (0.5, 0.5): "Jeffreys Beta(1/2, 1/2)"}


def reference_prior_name(prior) -> str | None:
    """The name of a reference (non-informative) prior, or None: a single uniform or Jeffreys beta."""
    if isinstance(prior, BetaMixture) and prior.n_components == 1:
        return REFERENCE_BETAS.get((float(prior.a[0]), float(prior.b[0])))
    return None


@dataclass(frozen=True)
class ConflictCheck:
    """Box's (1980, J R Stat Soc A 143:383) prior-predictive check of an observation against a prior.

    ``observed``: r (responders of ``n``) for a beta prior, the mean of ``n`` observations for a normal prior.
    ``p_value`` is the headline: one-sided, in the direction of the data (``direction``: "upper" when the
    observation lies at or above the prior-predictive mean, so p_value = P(Y >= observed); "lower" otherwise,
    P(Y <= observed)). Small values (e.g. < 0.05) flag a conflict between prior and data.
    Also given: p_box = P(p(Y) <= p(observed)), the probability of an outcome no more likely than the one observed
    (two-sided by construction; for a discrete outcome only); p_lower = P(Y <= observed), p_upper = P(Y >=
    observed), and p_two_sided = min(1, 2 min(p_lower, p_upper)).
    Under a reference prior (uniform, Jeffreys) the prior predicts nothing, so the check is not applicable:
    ``applicable`` is False and every p-value is None.
    """

    observed: float
    n: int
    predictive_mean: float
    applicable: bool
    direction: str | None
    p_value: float | None
    p_box: float | None
    p_lower: float | None
    p_upper: float | None
    p_two_sided: float | None
    note: str = ""

    @property
    def r(self) -> int:
        """The observed count (binary endpoints)."""
        return int(self.observed)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def prior_data_conflict(prior: BetaMixture | NormalMixture, r, n: int, *, reference: bool | None = None
                        ) -> ConflictCheck:
    """Box's prior-predictive p-values of ``r`` responders of ``n`` (beta prior) or of the mean ``r`` of ``n``
    observations (normal prior, sampling sd ``prior.sigma``); see :class:`ConflictCheck`.

    ``reference``: whether ``prior`` is a reference prior, for which the check is not applicable; by default a
    single uniform or Jeffreys beta is recognised as one.
    """
    is_reference = reference_prior_name(prior) is not None if reference is None else bool(reference)
    if isinstance(prior, BetaMixture):
        r, n = _check_counts(r, n)
        pred = prior.predictive(n)
        mean = pred.mean()
        if is_reference:
            return ConflictCheck(r, n, mean, False, None, None, None, None, None, None,
                                 f"not applicable: {reference_prior_name(prior) or 'reference prior'} predicts "
                                 "nothing, so Box's p-value means nothing")
        pmf = pred.pmf(pred.support())
        # tolerance: outcomes whose probability equals p(r) up to rounding count as "no more likely"
        p_box = min(float(np.sum(pmf[pmf <= pmf[r] * (1 + 1e-9)])), 1.0)
        p_lower = min(float(np.sum(pmf[: r + 1])), 1.0)
        p_upper = min(float(np.sum(pmf[r:])), 1.0)
    elif isinstance(prior, NormalMixture):
        if not (int(n) == n and n >= 1):
            raise ModelInputError(f"n must be a positive integer, got {n}", parameter="n")
        n = int(n)
        pred = prior.predictive(n)
        mean = pred.mean()
        r = float(r)
        if is_reference:
            return ConflictCheck(r, n, mean, False, None, None, None, None, None, None,
                                 "not applicable: a reference prior predicts nothing")
        p_lower, p_upper = float(pred.cdf(r)), float(pred.sf(r))
        p_box = None  # a density is not an outcome probability: Box's ordinate p-value is for counts here
    else:
        raise ModelInputError(f"prior must be a BetaMixture or NormalMixture, got {type(prior).__name__}",
                              parameter="prior")
    direction = "upper" if r >= mean else "lower"
    p_value = p_upper if direction == "upper" else p_lower
    return ConflictCheck(r, n, mean, True, direction, p_value, p_box, p_lower, p_upper,
                         min(1.0, 2 * min(p_lower, p_upper)),
                         f"one-sided ({direction} tail, the direction of the data)")


# --------------------------------------------------------------------------------------------------------------
# tipping point: how much borrowing overturns the conclusion
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TippingPoint:
    r"""Where borrowing overturns "P(theta > p0 | r of n) >= gamma" (see :func:`tipping_point`).

    ``ess``: the prior effective sample size of Beta(m ESS, (1 - m) ESS), centred at the comparator mean m, at
    which the posterior probability first falls below ``gamma`` (exact root; ``None`` when the conclusion holds
    at every ESS up to ``ess_max``; 0.0 when it fails without any borrowing). ``table``: the conclusion as a
    function of the borrowed ESS, one row per ESS (prior a, b; posterior mean; P(theta > p0); success).
    """

    r: int
    n: int
    prior_mean: float
    p0: float
    gamma: float
    ess: float | None
    ess_max: float
    table: pd.DataFrame

    def as_dict(self) -> dict:
        return {"r": self.r, "n": self.n, "prior_mean": self.prior_mean, "p0": self.p0, "gamma": self.gamma,
                "ess": self.ess, "ess_max": self.ess_max, "table": self.table.to_dict(orient="list")}


def borrowed_prior(prior_mean: float, ess) -> tuple[np.ndarray, np.ndarray]:
    """Beta(m ESS, (1 - m) ESS): the beta prior with mean ``prior_mean`` worth ``ess`` observations."""
    ess = np.asarray(ess, dtype=float)
    return prior_mean * ess, (1 - prior_mean) * ess


def prob_above_with_borrowing(r: int, n: int, prior_mean: float, p0: float, ess) -> np.ndarray:
    """P(theta > p0 | r of n) under Beta(m ESS, (1 - m) ESS), vectorised over ``ess`` (> 0)."""
    a, b = borrowed_prior(prior_mean, ess)
    return scipy.stats.beta.sf(p0, a + r, b + n - r)


def tipping_point(r: int, n: int, prior_mean: float, p0: float, gamma: float = 0.95, *,
                  ess_max: float = 1000.0, ess_grid=None) -> TippingPoint:
    r"""The borrowed ESS at which the conclusion P(theta > p0 | r of n) >= gamma tips, exactly.

    The prior is Beta(m ESS, (1 - m) ESS) centred at the comparator mean m = ``prior_mean`` (ESS = a + b, exact
    for a beta), so the posterior is Beta(m ESS + r, (1 - m) ESS + n - r) and P(ESS) = P(theta > p0) is a smooth
    function of the ESS. A scan over a log-spaced grid (1e-3 to ``ess_max``) finds the first ESS where P < gamma;
    Brent's method then locates the crossing to ~1e-10 relative. Returned with a table of the conclusion at
    ``ess_grid`` (default: 0 = no borrowing, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000 up to ``ess_max``; ESS 0
    is evaluated at 1e-9, the limit of vanishing borrowing).
    """
    import pandas as pd

    r, n = _check_counts(r, n)
    if not 0 < prior_mean < 1:
        raise ModelInputError(f"prior_mean must lie in (0, 1), got {prior_mean}", parameter="prior_mean")
    if not 0 < p0 < 1:
        raise ModelInputError(f"p0 must lie in (0, 1), got {p0}", parameter="p0")
    if not 0 < gamma < 1:
        raise ModelInputError(f"gamma must lie in (0, 1), got {gamma}", parameter="gamma")
    if not ess_max > 1e-3:
        raise ModelInputError(f"ess_max must exceed 1e-3, got {ess_max}", parameter="ess_max")
    tiny = 1e-9

    def excess(ess: float) -> float:
        return float(prob_above_with_borrowing(r, n, prior_mean, p0, ess)) - gamma

    scan = np.concatenate([[tiny], np.geomspace(1e-3, ess_max, 2000)])
    vals = prob_above_with_borrowing(r, n, prior_mean, p0, scan) - gamma
    below = np.flatnonzero(vals < 0)
    if below.size == 0:
        tip = None
    elif below[0] == 0:
        tip = 0.0
    else:
        i = below[0]
        tip = float(scipy.optimize.brentq(excess, scan[i - 1], scan[i], xtol=1e-12, rtol=1e-12))
    if ess_grid is None:
        grid = [e for e in (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000) if e <= ess_max]
    else:
        grid = sorted(float(e) for e in ess_grid)
    grid = np.asarray(grid, dtype=float)
    if np.any(grid < 0):
        raise ModelInputError("ess_grid must be >= 0", parameter="ess_grid")
    eff = np.maximum(grid, tiny)
    a, b = borrowed_prior(prior_mean, eff)
    prob = prob_above_with_borrowing(r, n, prior_mean, p0, eff)
    table = pd.DataFrame({"ess": grid, "prior_a": a, "prior_b": b,
                          "posterior_mean": (a + r) / (a + b + n), "prob_above_p0": prob,
                          "success": prob >= gamma})
    return TippingPoint(r, n, float(prior_mean), float(p0), float(gamma), tip, float(ess_max), table)


# --------------------------------------------------------------------------------------------------------------
# EM fits of mixtures to draws
# --------------------------------------------------------------------------------------------------------------
@dataclass
class MixtureFit:
    """A beta or normal mixture fitted to draws, with how well it fits."""

    mixture: BetaMixture | NormalMixture
    n_components: int
    criterion: str
    criterion_values: dict[int, float]
    loglik: float
    n_iter: int
    converged: bool
    ks_distance: float
    quantile_probs: list[float]
    draw_quantiles: list[float]
    mixture_quantiles: list[float]
    max_abs_quantile_error: float
    excluded: dict[int, str] = field(default_factory=dict)  # numbers of components left out, and why

    def as_dict(self) -> dict:
        return {
            "mixture": self.mixture.to_dict(),
            "n_components": self.n_components,
            "criterion": self.criterion,
            "criterion_values": {str(k): v for k, v in self.criterion_values.items()},
            "loglik": self.loglik,
            "n_iter": self.n_iter,
            "converged": self.converged,
            "ks_distance": self.ks_distance,
            "quantile_probs": self.quantile_probs,
            "draw_quantiles": self.draw_quantiles,
            "mixture_quantiles": self.mixture_quantiles,
            "max_abs_quantile_error": self.max_abs_quantile_error,
            "excluded": {str(k): v for k, v in self.excluded.items()},
        }


QUANTILE_PROBS = (0.025, 0.1, 0.25, 0.5, 0.75, 0.9, 0.975)
N_RESTARTS = 3
DEAD_COMPONENT = 1e-8  # total responsibility (in draws) below which a component is not updated
MIN_COMPONENT_DRAWS = 5.0  # a fit with a component holding fewer draws' responsibility is a degenerate spike
PENALTIES = ("bic", "aic", "aic6")


def _beta_weighted_mle(c1: np.ndarray, c2: np.ndarray, a: np.ndarray, b: np.ndarray, lower: float):
    """Maximise c1 (a-1) + c2 (b-1) - log B(a, b) for every component at once (the M-step).

    This weighted beta log-likelihood (per unit weight) is concave in (a, b), so a projected Newton method with the
    exact trigamma Hessian converges in a few steps from the previous EM estimate. The bound a, b >= lower is
    handled by an active set: a coordinate sitting on its bound whose gradient points outwards is held fixed and
    the other coordinate takes its one-dimensional Newton step (projecting a full step onto the bound instead would
    stall the line search). Step halving keeps every step an ascent step. Arrays of any (common) shape.
    """
    a, b = a.copy(), b.copy()

    def objective(a, b):
        return c1 * (a - 1) + c2 * (b - 1) - scipy.special.betaln(a, b)

    for _ in range(100):
        dab = scipy.special.digamma(a + b)
        ga, gb = c1 - scipy.special.digamma(a) + dab, c2 - scipy.special.digamma(b) + dab
        t = scipy.special.zeta(2, a + b)  # trigamma(x) = zeta(2, x), without polygamma's wrapper overhead
        haa, hbb, hab = t - scipy.special.zeta(2, a), t - scipy.special.zeta(2, b), t
        det = haa * hbb - hab**2
        fixed_a = (a <= lower) & (ga <= 0)
        fixed_b = (b <= lower) & (gb <= 0)
        with np.errstate(divide="ignore", invalid="ignore"):  # a flat direction (det = 0) takes no step
            step_a = np.where(fixed_a, 0.0, np.where(fixed_b, -ga / haa, -(hbb * ga - hab * gb) / det))
            step_b = np.where(fixed_b, 0.0, np.where(fixed_a, -gb / hbb, -(haa * gb - hab * ga) / det))
        step_a = np.where(np.isfinite(step_a), step_a, 0.0)
        step_b = np.where(np.isfinite(step_b), step_b, 0.0)
        f0 = objective(a, b)
        scale = np.ones_like(a)
        for _ in range(40):
            a_new = np.maximum(a + scale * step_a, lower)
            b_new = np.maximum(b + scale * step_b, lower)
            worse = objective(a_new, b_new) < f0 - 1e-12 * np.abs(f0)
            if not np.any(worse):
                break
            scale = np.where(worse, scale / 2, scale)
        else:  # no ascent left along the Newton direction: at the (constrained) optimum to rounding
            a_new, b_new = np.where(worse, a, a_new), np.where(worse, b, b_new)
        moved = np.maximum(np.abs(a_new - a) / a, np.abs(b_new - b) / b)
        a, b = a_new, b_new
        if np.all(moved < 1e-10):
            break
    return a, b


def _moment_beta(m: float, v: float, lower: float) -> tuple[float, float]:
    n = max(m * (1 - m) / max(v, 1e-12) - 1, 2 * lower + 1e-3)
    return max(m * n, lower + 1e-3), max((1 - m) * n, lower + 1e-3)


def _restart_slices(n: int, k: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Initial partitions of the sorted draws: k equal-mass slices, then N_RESTARTS - 1 seeded random cuts."""
    cuts = [np.linspace(0, n, k + 1).astype(int)]
    for _ in range(N_RESTARTS - 1):
        cuts.append(np.sort(np.concatenate([[0, n], rng.choice(np.arange(1, n), size=k - 1, replace=False)])))
    return cuts


def _restart_starts(x: np.ndarray, k: int, rng: np.random.Generator) -> tuple[np.ndarray, list[list[np.ndarray]]]:
    """Each restart's initial weights, shape (R, K) (a slice's share of the draws, at least 1e-3, renormalised),
    and the sorted draws of each of its K slices (all draws for a slice of fewer than two), from which the
    component parameters are started."""
    n = len(x)
    order = np.sort(x)
    cuts = _restart_slices(n, k, rng)
    w = np.empty((len(cuts), k))
    segments = []
    for i, c in enumerate(cuts):
        w[i] = np.maximum(np.diff(c) / n, 1e-3)
        w[i] /= w[i].sum()
        segments.append([seg if len(seg) >= 2 else order for seg in (order[c[j]:c[j + 1]] for j in range(k))])
    return w, segments


def _em(x: np.ndarray, w: np.ndarray, p1: np.ndarray, p2: np.ndarray, log_comp, m_step, max_iter: int, tol: float):
    """EM for all restarts at once: w, p1, p2 have shape (R, K); returns the best restart's fit.

    Each restart follows its own EM trajectory and stops (is frozen) when its log-likelihood changes by less than
    ``tol`` per draw; the batch runs until every restart has stopped or ``max_iter`` iterations. The restart
    with the highest log-likelihood wins (the first among equals), among those whose every component holds at
    least MIN_COMPONENT_DRAWS draws' worth of responsibility: the likelihood of a mixture is unbounded as a
    component collapses onto a single draw, and such a spike is not an approximation of the distribution.
    Arrays are laid out (restart, component, draw) so that every reduction over components runs over contiguous
    rows of draws. Returns (ll, w, p1, p2, iterations, converged, smallest component's draws).
    """
    n = x.size
    n_restarts = w.shape[0]
    ll_old = np.full(n_restarts, -np.inf)
    ll_final = np.full(n_restarts, -np.inf)
    smallest = np.zeros(n_restarts)
    iters = np.zeros(n_restarts, dtype=int)
    active = np.ones(n_restarts, dtype=bool)
    for it in range(1, max_iter + 1):
        idx = np.flatnonzero(active)
        logp = log_comp(p1[idx], p2[idx])  # (r, K, N)
        logp += np.log(w[idx])[:, :, None]
        top = logp.max(axis=1)  # (r, N)
        resp = np.exp(logp - top[:, None, :])
        total = resp.sum(axis=1)
        ll = np.sum(np.log(total) + top, axis=1)
        resp /= total[:, None, :]
        nk = resp.sum(axis=2)  # (r, K)
        done = np.abs(ll - ll_old[idx]) < tol * n
        ll_final[idx] = ll
        smallest[idx] = nk.min(axis=1)
        iters[idx] = it
        ll_old[idx] = ll
        active[idx[done]] = False
        if np.all(done):
            break
        move = ~done
        idx, resp, nk = idx[move], resp[move], nk[move]
        w_new = np.maximum(nk / n, 1e-12)
        w[idx] = w_new / w_new.sum(axis=1, keepdims=True)
        # a component that has lost (almost) every draw keeps its parameters: its weighted statistics would be
        # 0/0, and its weight stays at the floor
        alive = nk > DEAD_COMPONENT
        p1[idx], p2[idx] = m_step(resp, np.where(alive, nk, 1.0), alive, p1[idx], p2[idx])
    converged = ~active
    valid = smallest >= MIN_COMPONENT_DRAWS
    candidates = np.where(valid, ll_final, -np.inf) if valid.any() else ll_final
    best = int(np.argmax(candidates))  # argmax returns the first maximum
    return (ll_final[best], w[best], p1[best], p2[best], int(iters[best]), bool(converged[best]),
            float(smallest[best]))


def _em_beta(x: np.ndarray, k: int, rng: np.random.Generator, constrain_gt1: bool, max_iter: int, tol: float):
    lx, l1x = np.log(x), np.log1p(-x)
    lower = 1.0 if constrain_gt1 else 1e-6
    w, segments = _restart_starts(x, k, rng)
    a = np.empty_like(w)
    b = np.empty_like(w)
    for i, segs in enumerate(segments):
        for j, seg in enumerate(segs):
            a[i, j], b[i, j] = _moment_beta(float(seg.mean()), float(seg.var()) * 1.5, lower)

    def log_comp(a_, b_):
        return (a_ - 1)[:, :, None] * lx + (b_ - 1)[:, :, None] * l1x - scipy.special.betaln(a_, b_)[:, :, None]

    def m_step(resp, nk, alive, a_, b_):
        # a dead component gets its own expected statistics, of which its parameters are the fixed point
        dab = scipy.special.digamma(a_ + b_)
        c1 = np.where(alive, (resp @ lx) / nk, scipy.special.digamma(a_) - dab)
        c2 = np.where(alive, (resp @ l1x) / nk, scipy.special.digamma(b_) - dab)
        return _beta_weighted_mle(c1, c2, a_, b_, lower)

    return _em(x, w, a, b, log_comp, m_step, max_iter, tol)


def _em_normal(x: np.ndarray, k: int, rng: np.random.Generator, max_iter: int, tol: float, sd_floor: float):
    w, segments = _restart_starts(x, k, rng)
    m = np.empty_like(w)
    s = np.empty_like(w)
    for i, segs in enumerate(segments):
        for j, seg in enumerate(segs):
            m[i, j] = seg.mean()
            s[i, j] = max(seg.std() * 1.5, sd_floor)

    def log_comp(m_, s_):
        z = (x - m_[:, :, None]) / s_[:, :, None]
        return -0.5 * z**2 - (np.log(s_) + 0.5 * np.log(2 * np.pi))[:, :, None]

    def m_step(resp, nk, alive, m_, s_):
        mean = np.where(alive, (resp @ x) / nk, m_)
        var = np.sum(resp * (x - mean[:, :, None]) ** 2, axis=2) / nk
        return mean, np.where(alive, np.maximum(np.sqrt(var), sd_floor), s_)

    return _em(x, w, m, s, log_comp, m_step, max_iter, tol)


def _check_fit_args(max_components: int, criterion: str) -> None:
    if criterion not in PENALTIES:
        raise ValueError(f"criterion must be 'bic', 'aic' or 'aic6', got {criterion!r}")
    if max_components < 1:
        raise ValueError("max_components must be >= 1")


def _mixture_fit(x: np.ndarray, fits: dict, criterion: str) -> MixtureFit:
    """The fit with the best criterion among those without a degenerate (spike) component; one component is
    never degenerate."""
    excluded = {k: f"a component holds only {v[5]:.2g} draws' worth of responsibility (a spike)"
                for k, v in fits.items() if k > 1 and v[5] < MIN_COMPONENT_DRAWS}
    best_k = min((k for k in fits if k not in excluded), key=lambda k: fits[k][4])
    ll, mix, it, conv, _, _ = fits[best_k]
    ks = float(scipy.stats.kstest(x, mix.cdf).statistic)
    probs = list(QUANTILE_PROBS)
    dq = np.quantile(x, probs)
    mq = mix.ppf(np.asarray(probs))
    return MixtureFit(
        mixture=mix, n_components=best_k, criterion=criterion,
        criterion_values={k: float(v[4]) for k, v in fits.items() if k not in excluded}, loglik=float(ll),
        n_iter=int(it), converged=bool(conv), ks_distance=ks, quantile_probs=probs,
        draw_quantiles=[float(v) for v in dq], mixture_quantiles=[float(v) for v in mq],
        max_abs_quantile_error=float(np.max(np.abs(dq - mq))), excluded=excluded,
    )


def fit_beta_mixture(draws, max_components: int = 4, criterion: str = "bic", seed: int | None = 0,
                     constrain_gt1: bool = True, max_iter: int = 500, tol: float = 1e-7) -> MixtureFit:
    """Fit beta mixtures with 1..max_components components by EM and keep the best by ``criterion``.

    EM as in RBesT's ``mixfit`` for beta mixtures: E-step responsibilities, M-step weights = mean responsibility
    and (a_k, b_k) = the responsibility-weighted beta maximum-likelihood estimate (the digamma equations, solved
    as a concave maximisation), with a_k, b_k >= 1 when ``constrain_gt1`` (RBesT's default, so that the ELIR ESS is
    defined). Each K is started from equal-mass slices of the sorted draws plus two seeded random restarts (the
    three run as one vectorised batch); the highest likelihood wins; EM stops when the log-likelihood changes by
    less than ``tol`` per draw (or after ``max_iter`` iterations: ``converged`` says which). ``criterion``: "bic"
    (-2 ll + p log N), "aic" (-2 ll + 2p) or "aic6" (-2 ll + 6p, RBesT automixfit's default), p = 3K - 1. Draws
    exactly 0 or 1 are moved to eps / 1 - eps (as RBesT does).
    """
    x = np.asarray(draws, dtype=float).ravel()
    if x.size < 10 or np.any(~np.isfinite(x)) or np.any((x < 0) | (x > 1)):
        raise ValueError("draws must be at least 10 finite values in [0, 1]")
    _check_fit_args(max_components, criterion)
    x = np.clip(x, _EPS, 1 - _EPS)
    rng = np.random.default_rng(seed)
    n = x.size
    penalty = {"bic": np.log(n), "aic": 2.0, "aic6": 6.0}[criterion]
    fits = {}
    for k in range(1, max_components + 1):
        ll, w, a, b, it, conv, smallest = _em_beta(x, k, rng, constrain_gt1, max_iter, tol)
        order = np.argsort(-w, kind="stable")
        fits[k] = (ll, BetaMixture(w[order], a[order], b[order]), it, conv, -2 * ll + penalty * (3 * k - 1),
                   smallest)
    return _mixture_fit(x, fits, criterion)


def fit_normal_mixture(draws, max_components: int = 4, criterion: str = "bic", seed: int | None = 0,
                       sigma: float | None = None, max_iter: int = 500, tol: float = 1e-7) -> MixtureFit:
    """Fit normal mixtures with 1..max_components components by EM and keep the best by ``criterion``.

    The EM of RBesT's ``mixfit`` for normal mixtures (Dempster, Laird, Rubin 1977): E-step responsibilities
    omega_ik, M-step in closed form, w_k = mean_i omega_ik, m_k = sum_i omega_ik x_i / sum_i omega_ik,
    s_k^2 = sum_i omega_ik (x_i - m_k)^2 / sum_i omega_ik (floored at 1e-6 times the draws' sd, so that no
    component collapses onto a single draw). Starts, restarts, stopping rule and ``criterion`` as in
    :func:`fit_beta_mixture` (p = 3K - 1). ``sigma`` (the sampling sd of one observation) is attached to the
    fitted mixture, as RBesT's reference scale.
    """
    x = np.asarray(draws, dtype=float).ravel()
    if x.size < 10 or np.any(~np.isfinite(x)):
        raise ValueError("draws must be at least 10 finite values")
    _check_fit_args(max_components, criterion)
    spread = float(np.std(x))
    if not spread > 0:
        raise ValueError("draws must not all be equal")
    rng = np.random.default_rng(seed)
    n = x.size
    penalty = {"bic": np.log(n), "aic": 2.0, "aic6": 6.0}[criterion]
    fits = {}
    for k in range(1, max_components + 1):
        ll, w, m, s, it, conv, smallest = _em_normal(x, k, rng, max_iter, tol, 1e-6 * spread)
        order = np.argsort(-w, kind="stable")
        fits[k] = (ll, NormalMixture(w[order], m[order], s[order], sigma), it, conv,
                   -2 * ll + penalty * (3 * k - 1), smallest)
    return _mixture_fit(x, fits, criterion)


def shortest_interval(dist, prob: float = 0.95) -> tuple[float, float]:
    """Shortest interval holding ``prob`` of a distribution with a vectorised ``ppf`` (the HDI when unimodal)."""
    return _shortest_interval(dist, prob)
