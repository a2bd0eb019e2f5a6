r"""Beta and normal mixture priors as PyMC random variables, usable in any user's model.

``mixture_prior(name, mixture)`` inside a ``with pm.Model():`` block creates a random variable whose distribution
is exactly the given :class:`~isletbayes.models.mixtures.BetaMixture` or
:class:`~isletbayes.models.mixtures.NormalMixture`, the Python counterpart of RBesT's ``mixstanvar`` (RBesT >= 1.7,
which hands RBesT's ``mixbeta``/``mixnorm`` priors to brms models; Weber et al. 2021, "Applying Meta-Analytic-
Predictive Priors with the R Bayesian Evidence Synthesis Tools", J Stat Softw 100(19)). A robust MAP prior
(``BetaMixture.robustify``) is a beta mixture like any other::

    with pm.Model():
        theta = mixture_prior("theta", robust_map)        # robust_map: a BetaMixture
        pm.Binomial("r", n=12, p=theta, observed=10)

Density and draws. For weights :math:`w_k` and component densities :math:`f_k` (Beta(a_k, b_k), or
N(m_k, s_k^2) whatever the NormalMixture's sampling sd ``sigma``, which plays no role in the prior density)::

    p(theta)      = sum_k w_k f_k(theta),     log p(theta) = logsumexp_k (log w_k + log f_k(theta))
    draw:         k ~ Categorical(w),  theta | k ~ f_k

The component indicator k is summed out of the density (as mixstanvar does: NUTS cannot sample a discrete k).
Both are PyMC's own :class:`pymc.Mixture` (one component: :class:`pymc.Beta` / :class:`pymc.Normal`).

Geometry. NUTS samples an unconstrained value z, and a mixture of a peaked component with a wide one (a robust
MAP prior: Beta(150, 350) and Beta(1, 1) differ 19-fold in scale on the logit scale) is a multi-scale target
there: one step size cannot both cross the wide component and stay stable inside the peaked one, and chains
stick in one component (R-hat > 1.01 at 4 x 1000 draws). So a mixture of two or more components is sampled on
the prior's own normal-scores scale: with F the mixture's cdf, the exact normalising map would be
z = Phi^{-1}(F(theta)), under which the prior is N(0, 1) and the posterior is N(0, 1) times the likelihood. This
module uses a smooth, exactly invertible approximation of it, a monotone rational-quadratic spline (Gregory and
Delbourgo 1982, IMA J Numer Anal 2:123; in the form of Durkan et al. 2019, "Neural Spline Flows", NeurIPS,
eqs. 4-8)::

    y = g(z),   theta = sigmoid(y) (beta) or theta = y (normal)
    knots z_j on [-Z, Z]:  y_j = logit(F^{-1}(Phi(z_j))),  g'(z_j) = phi(z_j) / (p(theta_j) theta_j (1 - theta_j))
    (normal: y_j = F^{-1}(Phi(z_j)), g'(z_j) = phi(z_j) / p(y_j)), linear beyond the end knots

g interpolates the exact quantile function's values and slopes at the knots (quantiles by root finding on the
log-cdf, each tail from its own side), is strictly increasing and continuously differentiable, and is inverted in
closed form. The density of theta stays exactly the mixture's whatever the spline's accuracy, because the
log-density of z carries the spline's exact Jacobian, log g'(z) (+ log theta (1 - theta) for the logit): only the
sampler's geometry depends on the spline. Where sigmoid(y) cannot be told from 1 in double precision (y > 36,
theta within 2e-16 of 1) y is held at 36 inside the prior density, so that its gradient stays finite.
A user who passes ``transform=`` or ``default_transform=`` gets theirs instead.

Measured (nutpie, 4 x 1000 draws, 3-4 seeds per case; tests/models/test_mixture_prior.py): with PyMC's default
logit transform, 0.8 Beta(150, 350) + 0.2 Beta(1, 1) failed the diagnostics with no data, with 0, 6 and 9 of 12
(R-hat up to 1.03, tail ESS down to 176); on the normal-scores scale it passes with no data and with 3, 6, 10 and
12 of 12. What stays hard is a posterior with two well-separated modes of comparable weight, or a small mode far
from the main one (0/12 or 9/12 against this prior; a normal prior N(0.5, 0.1^2) with data at 1.4 of 10 leaving
weights 0.3 / 0.7): R-hat reaches 1.01-1.02 at 4 x 1000 draws, and 4 x 2000 draws pass (6 of 6 seeds each).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pymc.logprob.transforms import Transform
from scipy import special, stats
from scipy.optimize import elementwise

from isletbayes.models.mixtures import BetaMixture, NormalMixture
from isletbayes.models.validation import ModelInputError

__all__ = ["mixture_prior", "mixture_prior_dist", "NormalScoresSplineTransform", "normal_scores_transform"]

SPLINE_Z_MAX = 6.0  # knots on [-6, 6]: the prior mass beyond the end knots is 2 Phi(-6) = 2e-9
SPLINE_KNOTS = 193  # knot spacing 0.0625 on the normal-scores scale
LOGIT_MIN, LOGIT_MAX = -700.0, 36.0  # sigmoid(36) = 1 - 2.3e-16, the last doubles below 1 that logit can tell apart


def _check(name: Any, mixture: Any) -> None:
    if not isinstance(name, str) or not name:
        raise ModelInputError(f"the random variable needs a non-empty name, got {name!r}", parameter="name")
    if not isinstance(mixture, (BetaMixture, NormalMixture)):
        raise ModelInputError(f"expected a BetaMixture or a NormalMixture, got {type(mixture).__name__}",
                              parameter="mixture")


def _components(mixture: BetaMixture | NormalMixture):
    if isinstance(mixture, BetaMixture):
        return pm.Beta.dist(alpha=mixture.a, beta=mixture.b)
    return pm.Normal.dist(mu=mixture.means, sigma=mixture.sds)


def mixture_prior_dist(mixture: BetaMixture | NormalMixture, **kwargs) -> pt.TensorVariable:
    """The unregistered random variable of ``mixture`` (as ``pm.Beta.dist``), e.g. for ``pm.CustomDist``.

    Parameters
    ----------
    mixture : BetaMixture or NormalMixture
        The prior. A NormalMixture's ``sigma`` (the sampling sd of one observation) is not used.
    **kwargs
        Passed to the PyMC distribution's ``dist`` (``shape``, ``size``).

    Examples
    --------
    >>> import pymc as pm
    >>> from isletbayes.models.mixtures import BetaMixture
    >>> draws = pm.draw(mixture_prior_dist(BetaMixture([0.8, 0.2], [11, 1], [4, 1])), draws=5, random_seed=1)
    >>> draws.shape
    (5,)
    """
    _check("dist", mixture)
    if mixture.n_components == 1:
        if isinstance(mixture, BetaMixture):
            return pm.Beta.dist(alpha=mixture.a[0], beta=mixture.b[0], **kwargs)
        return pm.Normal.dist(mu=mixture.means[0], sigma=mixture.sds[0], **kwargs)
    return pm.Mixture.dist(w=mixture.weights, comp_dists=_components(mixture), **kwargs)


def mixture_prior(name: str, mixture: BetaMixture | NormalMixture, **kwargs) -> pt.TensorVariable:
    """A random variable distributed as ``mixture`` in the current PyMC model (RBesT's ``mixstanvar``).

    Parameters
    ----------
    name : str
        The variable's name in the model.
    mixture : BetaMixture or NormalMixture
        The prior, e.g. a robust MAP prior. A NormalMixture's ``sigma`` is not used: the density is
        sum_k w_k N(m_k, s_k^2).
    **kwargs
        Passed to the PyMC distribution: ``dims``, ``shape``, ``observed``, ``initval``, ``transform``,
        ``default_transform``. Without a transform of the user's, a mixture of two or more components is sampled on
        its normal-scores scale (:class:`NormalScoresSplineTransform`; see the module docstring).

    Returns
    -------
    TensorVariable
        The model's random variable.

    Examples
    --------
    >>> import pymc as pm
    >>> from isletbayes.models.mixtures import BetaMixture
    >>> robust_map = BetaMixture([0.8, 0.2], [11, 1], [4, 1])
    >>> with pm.Model() as model:
    ...     theta = mixture_prior("theta", robust_map)
    ...     r = pm.Binomial("r", n=12, p=theta, observed=10)
    >>> sorted(model.named_vars)
    ['r', 'theta']
    """
    _check(name, mixture)
    if mixture.n_components == 1:
        if isinstance(mixture, BetaMixture):
            return pm.Beta(name, alpha=mixture.a[0], beta=mixture.b[0], **kwargs)
        return pm.Normal(name, mu=mixture.means[0], sigma=mixture.sds[0], **kwargs)
    if kwargs.get("observed") is None and "transform" not in kwargs and "default_transform" not in kwargs:
        kwargs["default_transform"] = normal_scores_transform(mixture)
    return pm.Mixture(name, w=mixture.weights, comp_dists=_components(mixture), **kwargs)


# --------------------------------------------------------------------------------------------------------------
# the normal-scores spline transform
# --------------------------------------------------------------------------------------------------------------
def _lower_tail_quantiles(weights, first, second, u: np.ndarray, beta: bool) -> np.ndarray:
    """y with F(theta(y)) = u for lower-tail probabilities u <= 1/2; theta(y) = sigmoid(y) for a beta mixture
    (components Beta(first, second)), y for a normal mixture (components N(first, second^2)).

    Chandrupatla's root finding (scipy's elementwise ``find_root``) on log F, bracketed by the smallest and largest
    component quantiles, to relative precision in y: the exact layer's ``ppf`` works to 1e-14 absolute in theta,
    too coarse for knots at probabilities near 1e-9 of a U-shaped beta component (theta near 1e-17).
    """
    log_w = np.log(weights)
    if beta:
        comp = special.logit(stats.beta.ppf(u[:, None], first, second))

        def log_cdf(y):
            return special.logsumexp(log_w + stats.beta.logcdf(special.expit(y)[..., None], first, second), axis=-1)
    else:
        comp = stats.norm.ppf(u[:, None], first, second)

        def log_cdf(y):
            return special.logsumexp(log_w + stats.norm.logcdf(y[..., None], first, second), axis=-1)
    lo, hi = comp.min(axis=1), comp.max(axis=1)
    pad = 1e-9 * (1.0 + np.maximum(np.abs(lo), np.abs(hi)))  # the bracket holds mathematically; keep it numerically
    res = elementwise.find_root(lambda y, log_u: log_cdf(y) - log_u, (lo - pad, hi + pad), args=(np.log(u),),
                                tolerances={"xatol": 1e-14, "xrtol": 4 * np.finfo(float).eps, "fatol": 0.0,
                                            "frtol": 0.0})
    if not np.all(res.success):
        raise ValueError("the mixture's quantiles at the spline knots could not be found")
    return np.asarray(res.x, dtype=float)


def _quantile_knots(mixture: BetaMixture | NormalMixture, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knot values y_j (logit scale for a beta mixture) and slopes dy/dz of the exact normal-scores quantile map.

    Each half is computed from the tail it lies in (the upper half by reflecting the mixture: theta -> 1 - theta,
    or x -> -x), so that quantiles at probabilities near 1 keep full precision.
    """
    lower = z <= 0
    u = stats.norm.cdf(-np.abs(z))  # lower-tail probability of |z|, never near 1
    w = mixture.weights
    if isinstance(mixture, BetaMixture):
        y = np.concatenate([_lower_tail_quantiles(w, mixture.a, mixture.b, u[lower], beta=True),
                            -_lower_tail_quantiles(w, mixture.b, mixture.a, u[~lower], beta=True)])
        # density of y = logit(theta): sum_k w_k sigmoid(y)^a_k sigmoid(-y)^b_k / B(a_k, b_k), kept in logs so that
        # theta near 0 or 1 loses nothing
        log_sig, log_sig_neg = -np.logaddexp(0.0, -y), -np.logaddexp(0.0, y)
        log_dens = special.logsumexp(np.log(w) + mixture.a * log_sig[:, None] + mixture.b * log_sig_neg[:, None]
                                     - special.betaln(mixture.a, mixture.b), axis=-1)
    else:
        y = np.concatenate([_lower_tail_quantiles(w, mixture.means, mixture.sds, u[lower], beta=False),
                            -_lower_tail_quantiles(w, -mixture.means, mixture.sds, u[~lower], beta=False)])
        log_dens = mixture.logpdf(y)
    slope = np.exp(stats.norm.logpdf(z) - log_dens)
    return y, slope


class NormalScoresSplineTransform(Transform):
    r"""theta = h(g(z)): g a monotone rational-quadratic spline through the knots (z_j, y_j) with slopes d_j.

    h is the sigmoid (``logit=True``, for a variable in (0, 1)) or the identity. Beyond the end knots g is linear
    with the end slopes. In bin j, with width w, rise r, s = r / w, xi = (z - z_j) / w in [0, 1] (Durkan et al.
    2019, eqs. 4-8)::

        g(z)  = y_j + r (s xi^2 + d_j xi (1 - xi)) / (s + (d_j + d_{j+1} - 2 s) xi (1 - xi))
        g'(z) = s^2 (d_{j+1} xi^2 + 2 s xi (1 - xi) + d_j (1 - xi)^2) / (s + (d_j + d_{j+1} - 2 s) xi (1 - xi))^2

    and the inverse solves a quadratic in xi. ``forward`` maps theta to z, ``backward`` z to theta.
    """

    name = "normalscores"  # no underscore: PyMC recovers the variable's name by splitting the value's on "_"
    ndim_supp = 0

    def __init__(self, z_knots, y_knots, slopes, logit: bool):
        z, y, d = (np.asarray(v, dtype=float) for v in (z_knots, y_knots, slopes))
        if not (z.ndim == y.ndim == d.ndim == 1 and len(z) == len(y) == len(d) >= 2):
            raise ValueError("knots and slopes must be 1-d arrays of one common length >= 2")
        if not (np.all(np.diff(z) > 0) and np.all(np.diff(y) > 0)):
            raise ValueError("spline knots must be strictly increasing in z and in y")
        if not (np.all(np.isfinite(y)) and np.all(np.isfinite(d)) and np.all(d > 0)):
            raise ValueError("spline slopes must be finite and > 0")
        h = np.diff(z)
        if not np.allclose(h, h[0], rtol=1e-12, atol=0.0):
            raise ValueError("z knots must be equally spaced")
        self.z, self.y, self.d, self.logit = z, y, d, bool(logit)
        self._h = float(h[0])

    def _bin(self, index):
        z, y, d = (pt.constant(v) for v in (self.z, self.y, self.d))
        zj, yj, dj, dj1 = z[index], y[index], d[index], d[index + 1]
        rise = y[index + 1] - yj
        return zj, yj, dj, dj1, rise, rise / self._h

    def _spline(self, value):
        """g(z) and log g'(z), elementwise."""
        nbins = len(self.z) - 1
        index = pt.clip(pt.floor((value - self.z[0]) / self._h), 0, nbins - 1).astype("int64")
        zj, yj, dj, dj1, rise, s = self._bin(index)
        xi = pt.clip((value - zj) / self._h, 0.0, 1.0)  # finite in every branch, so no NaN reaches a gradient
        cross = xi * (1 - xi)
        denom = s + (dj + dj1 - 2 * s) * cross
        g_in = yj + rise * (s * xi**2 + dj * cross) / denom
        log_dg_in = (2 * pt.log(s) + pt.log(dj1 * xi**2 + 2 * s * cross + dj * (1 - xi) ** 2) - 2 * pt.log(denom))
        below, above = value < self.z[0], value > self.z[-1]
        g = pt.switch(below, self.y[0] + self.d[0] * (value - self.z[0]),
                      pt.switch(above, self.y[-1] + self.d[-1] * (value - self.z[-1]), g_in))
        log_dg = pt.switch(below, np.log(self.d[0]), pt.switch(above, np.log(self.d[-1]), log_dg_in))
        return g, log_dg

    def backward(self, value, *inputs):
        g, _ = self._spline(value)
        if not self.logit:
            return g
        # sigmoid(y) rounds to 1 for y > 36.7 (and underflows to 0 below -745): hold y inside (LOGIT_MIN, LOGIT_MAX)
        # so that the prior's log density and its gradient stay finite there (the Jacobian below is not clipped)
        return pt.sigmoid(pt.clip(g, LOGIT_MIN, LOGIT_MAX))

    def log_jac_det(self, value, *inputs):
        g, log_dg = self._spline(value)
        if self.logit:  # d sigmoid(y)/dy = sigmoid(y) sigmoid(-y)
            return log_dg - pt.softplus(-g) - pt.softplus(g)
        return log_dg

    def forward(self, value, *inputs):
        yv = pt.log(value) - pt.log1p(-value) if self.logit else value
        nbins = len(self.z) - 1
        index = pt.clip(pt.extra_ops.searchsorted(pt.constant(self.y), yv, side="right") - 1, 0, nbins - 1)
        zj, yj, dj, dj1, rise, s = self._bin(index)
        dy = pt.clip(yv - yj, 0.0, rise)
        k = dj + dj1 - 2 * s
        a = rise * (s - dj) + dy * k
        b = rise * dj - dy * k
        c = -s * dy
        xi = 2 * c / (-b - pt.sqrt(b**2 - 4 * a * c))
        z_in = zj + self._h * xi
        return pt.switch(yv < self.y[0], self.z[0] + (yv - self.y[0]) / self.d[0],
                         pt.switch(yv > self.y[-1], self.z[-1] + (yv - self.y[-1]) / self.d[-1], z_in))


def normal_scores_transform(mixture: BetaMixture | NormalMixture, z_max: float = SPLINE_Z_MAX,
                            knots: int = SPLINE_KNOTS) -> NormalScoresSplineTransform:
    """The spline transform that maps ``mixture`` approximately onto N(0, 1) (module docstring).

    Examples
    --------
    >>> from isletbayes.models.mixtures import BetaMixture
    >>> t = normal_scores_transform(BetaMixture([0.8, 0.2], [150, 1], [350, 1]))
    >>> float(t.backward(0.0).eval())  # the prior median
    0.30...
    """
    _check("transform", mixture)
    if not (z_max > 0 and knots >= 3):
        raise ModelInputError("need z_max > 0 and at least 3 knots", parameter="knots")
    z = np.linspace(-z_max, z_max, int(knots))
    y, slope = _quantile_knots(mixture, z)
    return NormalScoresSplineTransform(z, y, slope, logit=isinstance(mixture, BetaMixture))
