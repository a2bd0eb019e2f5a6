r"""Exact design tools for a normal endpoint with known sampling sd and a normal-mixture prior (pure numpy/scipy).

The model is RBesT's normal-normal model with fixed sampling standard deviation (Weber et al. 2021, J Stat Softw
100(19); its ``decision1S``, ``decision1S_boundary``, ``oc1S``, ``pos1S``, ``decision2S``, ``decision2S_boundary``,
``oc2S`` and ``pos2S``). One observation has sd :math:`\sigma`; a trial of :math:`n` reports the mean
:math:`\bar y \sim N(\theta, \sigma^2/n)`; the prior is a mixture
:math:`\pi(\theta) = \sum_k w_k N(m_k, s_k^2)` (:class:`isletbayes.models.mixtures.NormalMixture`), updated
conjugately:

.. math::
    \pi(\theta \mid \bar y) = \sum_k w'_k N(m'_k, s'^2_k), \quad s'^{-2}_k = s_k^{-2} + n/\sigma^2, \quad
    m'_k = s'^2_k (m_k / s_k^2 + n \bar y / \sigma^2), \quad w'_k \propto w_k N(\bar y; m_k, s_k^2 + \sigma^2/n).

**Decision rules** are lists of :class:`Criterion`: each is :math:`P(\theta > q \mid \bar y) \ge p` (upper tail,
larger is better) or :math:`P(\theta \le q \mid \bar y) \ge p` (lower tail: e.g. an HbA1c fall); success needs
every criterion (a dual criterion: significance and clinical relevance, Neuenschwander et al. 2011, Stat Med
30:1618). The normal likelihood has a monotone likelihood ratio in :math:`\bar y`, so the posterior is
stochastically increasing in :math:`\bar y` whatever the prior: an upper-tail criterion holds iff
:math:`\bar y \ge y_c` and a lower-tail one iff :math:`\bar y \le y_c`, and a rule's success region is an interval
:math:`[L_n, U_n]` (a half-line when all criteria point the same way; empty when they cannot all hold).
:math:`y_c` is the root of :math:`P(\theta > q \mid y) = p` (or :math:`1 - p`). The mixture's probability is a
convex combination of the components' probabilities, each increasing in :math:`y`, so the roots of the single
components (closed form: :math:`m'_k(y) = q + z_p s'_k`) bracket it exactly; Chandrupatla's method
(``scipy.optimize.elementwise.find_root``) refines it, vectorised over every :math:`n`.

**Operating characteristics and probability of success, one sample** (closed forms):

.. math::
    P(\text{success} \mid \theta) = \Phi\!\left(\frac{U_n - \theta}{\sigma/\sqrt n}\right)
        - \Phi\!\left(\frac{L_n - \theta}{\sigma/\sqrt n}\right), \qquad
    \mathrm{PoS} = \sum_k w^d_k \left[\Phi\!\left(\frac{U_n - m^d_k}{v_k}\right)
        - \Phi\!\left(\frac{L_n - m^d_k}{v_k}\right)\right],\ v_k^2 = s^{d\,2}_k + \sigma^2/n,

the probability of success (assurance, O'Hagan, Stevens and Campbell 2005, Pharm Stat 4:187) averaging over the
design prior :math:`\sum_k w^d_k N(m^d_k, s^{d\,2}_k)`, whose predictive for :math:`\bar y` is the normal mixture
above.

**Two samples** (:math:`\delta = \theta_1 - \theta_2`, sample 2 typically the control with a MAP prior):
:math:`P(\delta > q \mid \bar y_1, \bar y_2) = \sum_{jk} w'_{1j} w'_{2k}
\Phi((m'_{1j} - m'_{2k} - q) / \sqrt{s'^2_{1j} + s'^2_{2k}})` (RBesT's ``pmixdiff``). For a fixed :math:`\bar y_2` it
is increasing in :math:`\bar y_1`, so the success region in :math:`\bar y_1` is an interval
:math:`[L(\bar y_2), U(\bar y_2)]` (RBesT's ``decision2S_boundary``), bracketed by the closed-form roots of the
:math:`(j, k)` terms. Then

.. math::
    P(\text{success} \mid \theta_1, \theta_2) = \int N(y_2; \theta_2, \sigma_2^2/n_2)\,
        P\big(L(y_2) \le \bar y_1 \le U(y_2) \mid \theta_1\big)\, dy_2,

and the PoS is the same integral under the predictive normal mixtures of both means. The one-dimensional integral
is composite Gauss-Legendre over :math:`\pm 9` sd of :math:`y_2` (outside: < 1e-18 of the mass), with panels
narrow enough for the boundary's transition (their width scales with the ratio of the two standard errors); the
boundary is solved at every node, no interpolation. For single-component priors everything is closed form (the
boundary is linear in :math:`y_2`), which the tests use as a check.

**Where a normal approximation is adequate for this project's endpoints** (an assumption for design, to be stated
wherever these tools are used):

* *log C-peptide* (per participant, e.g. log stimulated C-peptide at day 365): C-peptide is roughly lognormal
  across graft recipients, so the mean of the logs of n participants is close to normal even for small n, and the
  known-sd model fits a design in which the sd of log C-peptide is taken from prior information (the phase 1/2
  cohort gives only cohort means, so this sd is assumed, not observed). It is *not* adequate when a material share
  of values lies below the assay's detection limit (13 pmol/L): early visits, baseline (undetectable in 14/14), or
  graft failure, where the distribution has a point mass at the limit; then the censored model of
  :mod:`isletbayes.models.cpeptide_endpoint` is needed. Nor is it when the endpoint is the *share* of participants
  above a threshold (e.g. 970 pmol/L), which is binary (:mod:`isletbayes.models.operating_characteristics`). With
  n of about 12, a sampling sd estimated from the same data would make a t rather than a normal the right
  reference (t with 11 df: 2.20 instead of 1.96 at 97.5%), which the known-sigma model ignores.
* *HbA1c* (change from baseline, percentage points): bounded below by physiology (about 4-5%) and, after a
  successful graft, piled up near normal values (5-6%), so individual changes are skewed and can be bimodal
  (responders vs graft failures: a mixture, not one normal). The normal model for the *mean* change relies on the
  central limit theorem: adequate at phase 3 sizes (n of about 50) when the sd is credible, doubtful at n of about
  12. Thresholded HbA1c endpoints (< 7%, or a fall of at least 1 point, the phase 1/2 composite) are binary and
  belong to the binary layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import special
from scipy.optimize import elementwise

from isletbayes.models.mixtures import NormalMixture
from isletbayes.models.validation import ModelInputError

__all__ = [
    "Criterion",
    "posterior_prob_above",
    "one_sample_boundary",
    "NormalOneSampleDesign",
    "one_sample_design",
    "two_sample_prob_above",
    "NormalTwoSampleDesign",
    "two_sample_design",
]

_Z_RANGE = 9.0  # integrate y2 over its mean +/- 9 sd: the mass outside is 2.3e-19
_GL_ORDER = 10


@dataclass(frozen=True)
class Criterion:
    """P(theta > threshold) >= probability (``lower_tail=False``) or P(theta <= threshold) >= probability.

    For two-sample designs theta is the difference theta_1 - theta_2. Lower-tail criteria say that *smaller* is
    better (an HbA1c fall, a hazard ratio below 1).
    """

    threshold: float
    probability: float
    lower_tail: bool = False

    def __post_init__(self):
        if not np.isfinite(self.threshold):
            raise ModelInputError(f"threshold must be finite, got {self.threshold}", parameter="threshold")
        if not 0.0 < float(self.probability) < 1.0:
            raise ModelInputError(f"probability must lie in (0, 1), got {self.probability}", parameter="probability")

    @property
    def upper_target(self) -> float:
        """The value of P(theta > threshold) at the decision boundary."""
        return 1.0 - self.probability if self.lower_tail else self.probability


def _criteria(criteria) -> tuple[Criterion, ...]:
    if isinstance(criteria, Criterion):
        criteria = (criteria,)
    criteria = tuple(criteria)
    if not criteria or not all(isinstance(c, Criterion) for c in criteria):
        raise ModelInputError("criteria must be one or more Criterion", parameter="criteria")
    return criteria


def _sigma(prior: NormalMixture, sigma: float | None, name: str = "sigma") -> float:
    if not isinstance(prior, NormalMixture):
        raise ModelInputError(f"expected a NormalMixture, got {type(prior).__name__}", parameter="prior")
    value = prior.sigma if sigma is None else sigma
    if value is None or not (np.isfinite(value) and value > 0):
        raise ModelInputError(f"{name} (the sampling sd of one observation) must be given and > 0, got {value}",
                              parameter=name)
    return float(value)


def _n_array(n_values, name: str = "n_values") -> np.ndarray:
    arr = np.atleast_1d(np.asarray(n_values, dtype=float))
    if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ModelInputError(f"{name} must be a non-empty 1-d sequence of sample sizes > 0, got {n_values}",
                              parameter=name)
    return arr


def _posterior(prior: NormalMixture, ybar, n, sigma: float):
    """Posterior mixture components (w, m, s), shape ybar.shape + (K,), for broadcast ybar and n."""
    ybar = np.asarray(ybar, dtype=float)[..., None]
    n = np.asarray(n, dtype=float)[..., None]
    se2 = sigma**2 / n
    prec = 1.0 / prior.sds**2 + 1.0 / se2
    s_post = np.sqrt(1.0 / prec)
    m_post = (prior.means / prior.sds**2 + ybar / se2) / prec
    if prior.n_components == 1:
        w = np.ones(np.broadcast_shapes(ybar.shape, n.shape))
        return w, m_post, np.broadcast_to(s_post, m_post.shape)
    v = prior.sds**2 + se2
    log_w = np.log(prior.weights) - 0.5 * np.log(v) - 0.5 * (ybar - prior.means) ** 2 / v
    log_w = log_w - log_w.max(axis=-1, keepdims=True)
    w = np.exp(log_w)
    w /= w.sum(axis=-1, keepdims=True)
    return w, m_post, np.broadcast_to(s_post, m_post.shape)


def posterior_prob_above(prior: NormalMixture, ybar, n, threshold, sigma: float | None = None) -> np.ndarray:
    """P(theta > threshold | mean ybar of n observations), elementwise over broadcast ybar, n, threshold."""
    sigma = _sigma(prior, sigma)
    w, m, s = _posterior(prior, ybar, n, sigma)
    q = np.asarray(threshold, dtype=float)[..., None]
    return np.clip(np.sum(w * special.ndtr((m - q) / s), axis=-1), 0.0, 1.0)


def _solve_increasing(f, lo, hi, args) -> np.ndarray:
    """Root of an increasing elementwise f within [lo, hi] (f(lo) <= 0 <= f(hi)), widened a hair for strict signs."""
    lo, hi = np.broadcast_arrays(np.asarray(lo, dtype=float), np.asarray(hi, dtype=float))
    pad = 1e-9 * np.maximum(1.0, np.maximum(np.abs(lo), np.abs(hi))) + 1e-9 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    res = elementwise.find_root(f, (lo, hi), args=args,
                                tolerances={"xatol": 1e-13, "xrtol": 4 * np.finfo(float).eps, "fatol": 0.0,
                                            "frtol": 0.0})
    if not np.all(res.success):
        bad = ~np.asarray(res.success)
        raise RuntimeError(f"decision boundary root finding failed (status {np.unique(res.status[bad])})")
    return np.asarray(res.x, dtype=float)


def _criterion_root_1s(prior: NormalMixture, n: np.ndarray, crit: Criterion, sigma: float) -> np.ndarray:
    """y_c(n): the mean at which P(theta > q | y, n) equals the criterion's target, for every n."""
    target = crit.upper_target
    z = special.ndtri(target)
    se2 = sigma**2 / n[:, None]
    prec = 1.0 / prior.sds**2 + 1.0 / se2
    # component k alone: m'_k(y) = q + z s'_k  <=>  y = ((q + z s'_k) prec_k - m_k / s_k^2) se2
    roots = ((crit.threshold + z / np.sqrt(prec)) * prec - prior.means / prior.sds**2) * se2
    lo, hi = roots.min(axis=1), roots.max(axis=1)
    if prior.n_components == 1:
        return lo

    def excess(y, n_, q_, t_):
        return posterior_prob_above(prior, y, n_, q_, sigma) - t_

    return _solve_increasing(excess, lo, hi, (n, np.full(n.shape, crit.threshold), np.full(n.shape, target)))


def one_sample_boundary(prior: NormalMixture, n_values, criteria, sigma: float | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Success region [lower, upper] of the sample mean for each n (RBesT's ``decision1S_boundary``).

    Success iff lower <= ybar <= upper; -inf / +inf where no criterion bounds that side; lower > upper: no ybar wins.
    """
    criteria = _criteria(criteria)
    sigma = _sigma(prior, sigma)
    n = _n_array(n_values)
    lower = np.full(n.shape, -np.inf)
    upper = np.full(n.shape, np.inf)
    for crit in criteria:
        root = _criterion_root_1s(prior, n, crit, sigma)
        if crit.lower_tail:
            upper = np.minimum(upper, root)
        else:
            lower = np.maximum(lower, root)
    return lower, upper


def _interval_prob(lower, upper, mean, sd) -> np.ndarray:
    """P(lower <= Y <= upper) for Y ~ N(mean, sd^2), elementwise, computed in the tail that avoids cancellation."""
    zl = (lower - mean) / sd
    zu = (upper - mean) / sd
    right = zl > 0  # the whole interval lies in the upper tail: use survival functions
    p = np.where(right, special.ndtr(-zl) - special.ndtr(-zu), special.ndtr(zu) - special.ndtr(zl))
    return np.clip(np.where(upper >= lower, p, 0.0), 0.0, 1.0)


@dataclass
class NormalOneSampleDesign:
    """A one-sample normal-endpoint design over a grid of n: success iff ``lower <= ybar <= upper``."""

    n: np.ndarray
    sigma: float
    criteria: tuple[Criterion, ...]
    lower: np.ndarray
    upper: np.ndarray

    def oc(self, theta) -> np.ndarray:
        """P(success | theta) (RBesT's ``oc1S``): rows n, columns theta."""
        theta = np.atleast_1d(np.asarray(theta, dtype=float))[None, :]
        se = (self.sigma / np.sqrt(self.n))[:, None]
        return _interval_prob(self.lower[:, None], self.upper[:, None], theta, se)

    def pos(self, design_prior: NormalMixture) -> np.ndarray:
        """Probability of success under a normal-mixture design prior, per n (RBesT's ``pos1S``)."""
        if not isinstance(design_prior, NormalMixture):
            raise ModelInputError("design_prior must be a NormalMixture", parameter="design_prior")
        v = np.sqrt(design_prior.sds[None, :] ** 2 + self.sigma**2 / self.n[:, None])
        comp = _interval_prob(self.lower[:, None], self.upper[:, None], design_prior.means[None, :], v)
        return np.clip(comp @ design_prior.weights, 0.0, 1.0)

    def to_frame(self, theta: Sequence[float] = (), design_prior: NormalMixture | None = None) -> pd.DataFrame:
        """One row per n: the success region of ybar, P(success) at each ``theta``, PoS under ``design_prior``."""
        frame = pd.DataFrame({"lower": self.lower, "upper": self.upper},
                             index=pd.Index(self.n, name="n"))
        theta = np.atleast_1d(np.asarray(theta, dtype=float))
        if theta.size:
            for t, col in zip(theta, self.oc(theta).T):
                frame[f"oc_{t:g}"] = col
        if design_prior is not None:
            frame["pos"] = self.pos(design_prior)
        return frame


def one_sample_design(prior: NormalMixture, n_values, criteria, sigma: float | None = None) -> NormalOneSampleDesign:
    """The decision boundaries of ``criteria`` under the analysis ``prior`` for each n (sampling sd ``sigma``,
    default ``prior.sigma``); the result gives OC and PoS in closed form."""
    criteria = _criteria(criteria)
    sigma = _sigma(prior, sigma)
    n = _n_array(n_values)
    lower, upper = one_sample_boundary(prior, n, criteria, sigma)
    return NormalOneSampleDesign(n, sigma, criteria, lower, upper)


# --------------------------------------------------------------------------------------------------------------
# two samples
# --------------------------------------------------------------------------------------------------------------
def two_sample_prob_above(prior1: NormalMixture, prior2: NormalMixture, y1, y2, n1, n2, threshold,
                          sigma1: float | None = None, sigma2: float | None = None) -> np.ndarray:
    """P(theta_1 - theta_2 > threshold | ybar_1, ybar_2), elementwise over broadcast y1, y2 (RBesT's pmixdiff)."""
    sigma1, sigma2 = _sigma(prior1, sigma1, "sigma1"), _sigma(prior2, sigma2, "sigma2")
    return _prob_diff(prior1, prior2, y1, y2, n1, n2, threshold, sigma1, sigma2)


def _prob_diff(prior1, prior2, y1, y2, n1, n2, threshold, sigma1, sigma2) -> np.ndarray:
    w1, m1, s1 = _posterior(prior1, y1, n1, sigma1)  # (..., K1)
    w2, m2, s2 = _posterior(prior2, y2, n2, sigma2)  # (..., K2)
    q = np.asarray(threshold, dtype=float)[..., None, None]
    z = (m1[..., :, None] - m2[..., None, :] - q) / np.sqrt(s1[..., :, None] ** 2 + s2[..., None, :] ** 2)
    p = np.sum(w1[..., :, None] * w2[..., None, :] * special.ndtr(z), axis=(-2, -1))
    return np.clip(p, 0.0, 1.0)


@dataclass
class NormalTwoSampleDesign:
    """A two-sample normal-endpoint design (RBesT's ``oc2S``/``pos2S``): difference theta_1 - theta_2.

    Success iff ``lower(y2) <= ybar_1 <= upper(y2)`` (:meth:`boundary`), the decision boundary as a function of the
    sample-2 mean.
    """

    prior1: NormalMixture
    prior2: NormalMixture
    n1: float
    n2: float
    sigma1: float
    sigma2: float
    criteria: tuple[Criterion, ...]

    @property
    def se1(self) -> float:
        return self.sigma1 / np.sqrt(self.n1)

    @property
    def se2(self) -> float:
        return self.sigma2 / np.sqrt(self.n2)

    def boundary(self, y2) -> tuple[np.ndarray, np.ndarray]:
        """Success region [lower, upper] of ybar_1 for each sample-2 mean ``y2`` (RBesT's decision2S_boundary)."""
        y2 = np.atleast_1d(np.asarray(y2, dtype=float))
        lower = np.full(y2.shape, -np.inf)
        upper = np.full(y2.shape, np.inf)
        for crit in self.criteria:
            root = self._root(y2, crit)
            if crit.lower_tail:
                upper = np.minimum(upper, root)
            else:
                lower = np.maximum(lower, root)
        return lower, upper

    def _root(self, y2: np.ndarray, crit: Criterion) -> np.ndarray:
        p1, p2 = self.prior1, self.prior2
        target = crit.upper_target
        z = special.ndtri(target)
        se1_2 = self.sigma1**2 / self.n1
        prec1 = 1.0 / p1.sds**2 + 1.0 / se1_2  # (K1,)
        _, m2, s2 = _posterior(p2, y2, self.n2, self.sigma2)  # (Y, K2)
        s_jk = np.sqrt(1.0 / prec1[None, :, None] + s2[:, None, :] ** 2)  # (Y, K1, K2)
        # term (j, k) alone equals the target where m'_1j(y1) = q + m'_2k + z s_jk
        needed = crit.threshold + m2[:, None, :] + z * s_jk
        roots = (needed * prec1[None, :, None] - (p1.means / p1.sds**2)[None, :, None]) * se1_2
        lo = roots.min(axis=(1, 2))
        hi = roots.max(axis=(1, 2))
        if p1.n_components == 1 and p2.n_components == 1:
            return lo

        def excess(y1, y2_, t_):
            return _prob_diff(p1, p2, y1, y2_, self.n1, self.n2, crit.threshold, self.sigma1, self.sigma2) - t_

        return _solve_increasing(excess, lo, hi, (y2, np.full(y2.shape, target)))

    def _nodes(self, scale_ratio: float) -> tuple[np.ndarray, np.ndarray]:
        """Composite Gauss-Legendre nodes and N(0, 1)-density weights on [-9, 9] (standardised y2)."""
        width = min(0.5, 0.5 * scale_ratio)
        panels = int(min(4000, np.ceil(2 * _Z_RANGE / width)))
        edges = np.linspace(-_Z_RANGE, _Z_RANGE, panels + 1)
        gx, gw = np.polynomial.legendre.leggauss(_GL_ORDER)
        lo, hi = edges[:-1, None], edges[1:, None]
        z = ((lo + hi) / 2 + (hi - lo) / 2 * gx[None, :]).ravel()
        wz = ((hi - lo) / 2 * gw[None, :]).ravel() * np.exp(-0.5 * z**2) / np.sqrt(2 * np.pi)
        return z, wz

    def oc(self, theta1, theta2) -> np.ndarray:
        """P(success | theta1, theta2) for paired (broadcast) true means (RBesT's ``oc2S``)."""
        theta1, theta2 = np.broadcast_arrays(np.atleast_1d(np.asarray(theta1, dtype=float)),
                                             np.atleast_1d(np.asarray(theta2, dtype=float)))
        z, wz = self._nodes(self.se1 / self.se2)
        y2 = theta2[:, None] + self.se2 * z[None, :]  # (P, M)
        lower, upper = self.boundary(y2.ravel())
        inside = _interval_prob(lower.reshape(y2.shape), upper.reshape(y2.shape), theta1[:, None], self.se1)
        return np.clip(inside @ wz, 0.0, 1.0)

    def to_frame(self, theta1, theta2) -> pd.DataFrame:
        """One row per pair of true means (broadcast): P(success | theta1, theta2)."""
        theta1, theta2 = np.broadcast_arrays(np.atleast_1d(np.asarray(theta1, dtype=float)),
                                             np.atleast_1d(np.asarray(theta2, dtype=float)))
        return pd.DataFrame({"theta1": theta1, "theta2": theta2, "difference": theta1 - theta2,
                             "success": self.oc(theta1, theta2)})

    def pos(self, design1: NormalMixture, design2: NormalMixture) -> float:
        """Probability of success with theta1, theta2 drawn from independent normal-mixture design priors."""
        if not isinstance(design1, NormalMixture) or not isinstance(design2, NormalMixture):
            raise ModelInputError("design priors must be NormalMixture", parameter="design1")
        v1 = np.sqrt(design1.sds**2 + self.se1**2)  # predictive sd of ybar_1 per component
        v2 = np.sqrt(design2.sds**2 + self.se2**2)
        total = 0.0
        for w2, m2, s2 in zip(design2.weights, design2.means, v2):
            z, wz = self._nodes(float(v1.min()) / s2)
            y2 = m2 + s2 * z
            lower, upper = self.boundary(y2)
            inside = _interval_prob(lower[:, None], upper[:, None], design1.means[None, :], v1[None, :])
            total += w2 * float(wz @ (inside @ design1.weights))
        return float(np.clip(total, 0.0, 1.0))


def two_sample_design(prior1: NormalMixture, prior2: NormalMixture, n1: float, n2: float, criteria,
                      sigma1: float | None = None, sigma2: float | None = None) -> NormalTwoSampleDesign:
    """A two-sample design on theta_1 - theta_2 with analysis priors ``prior1``, ``prior2`` and ``n1``, ``n2``."""
    criteria = _criteria(criteria)
    sigma1, sigma2 = _sigma(prior1, sigma1, "sigma1"), _sigma(prior2, sigma2, "sigma2")
    n1 = float(_n_array([n1], "n1")[0])
    n2 = float(_n_array([n2], "n2")[0])
    return NormalTwoSampleDesign(prior1, prior2, n1, n2, sigma1, sigma2, criteria)
