r"""Durability of insulin independence after a single infusion: a multi-state model in continuous time.

Exact layer (numpy/scipy only, no MCMC): every posterior below is computed deterministically on a grid.

**States and transitions.** Time :math:`t` in years from the infusion (convention: 1 year = 365 days, so the
trial's day-365 visit is :math:`t = 1`). States 1 "not yet insulin independent", 2 "insulin independent (II)",
3 "lost II", 4 "dead"; transitions 1 -> 2 (onset), 2 -> 3 (loss) and 1, 2, 3 -> 4 (death):

* **onset** (time from infusion): a participant ever becomes II with probability :math:`\pi`; the onset time
  :math:`T_{on}` of those who do has density :math:`g` and cdf :math:`G` (:class:`OnsetTime`: uniform between
  ``low_days`` and ``high_days``, default 90-365 days, a convention: time to insulin independence is not
  published). The 1 -> 2 hazard is the mixture-cure hazard :math:`\pi g(t) / (1 - \pi G(t))`.
* **loss** (time since onset, semi-Markov: the clock restarts at onset): :math:`V = T_{loss} - T_{on}` is Weibull,

  .. math:: S(u) = P(V > u) = \exp\{-(u/\lambda)^k\}, \qquad \beta(u) = (k/\lambda)(u/\lambda)^{k-1},

  with scale :math:`\lambda` (years) and shape :math:`k`; ``fixed_shape=1`` gives a constant (exponential) hazard.
  Because the loss clock is time since onset, each donor-islet figure enters at its own time origin (below).
* **death**: one constant hazard :math:`\mu` per year from every state, independent of the II process (an
  assumption; it makes the likelihood factorise and lets death act as a plain multiplier :math:`e^{-\mu t}`).

State occupancy: :math:`P(\text{II and alive at } t) = \pi\, e^{-\mu t} B_t(\theta)` with
:math:`B_t(\theta) = \int_0^t g(s) S(t - s)\, ds` and :math:`\theta = (\log\lambda, \log k)`.

**Interval-censored likelihood** (panel data as in Jackson 2011; the process is progressive, so the probability of
the observed state sequence needs only four visit days). Participant :math:`i` is seen not yet II last at day
:math:`a_i` (0, the infusion, if never), II first at :math:`b_i` and last at :math:`c_i`, lost II first at
:math:`d_i`; :math:`x_i` is the exit day (death day, or the last visit) and :math:`\delta_i` = 1 if they died
(death days are exact, as msm's ``deathexact``). With :math:`e_i = b_i` (or :math:`d_i` if never seen II),

.. math::
    L_i = \Big[\pi \int_{a_i}^{e_i} g(s)\,\{S(c_i - s) - S(d_i - s)\}\, ds\Big]^{\text{onset seen}}
          \big[1 - \pi G(a_i)\big]^{\text{never seen II}}\; \mu^{\delta_i} e^{-\mu x_i},

with :math:`S(c_i - s) \equiv 1` when no II visit was seen and :math:`S(d_i - s) \equiv 0` when no lost-II visit
was. Visits between :math:`b_i` and :math:`c_i` add nothing (II at both ends means II throughout). The integral
is computed by Gauss-Legendre quadrature after the substitution :math:`s = e - (e - a)t^2`, which smooths the
:math:`u^k` cusp of :math:`S` at :math:`u = 0`. A test checks it against brute-force two-dimensional integration.

**Donor-islet figures and their time origins** (:class:`RetentionFigure`, built by
:func:`donor_retention_figures` from ``data/published/durability.csv``). A figure says that of :math:`n` people in
II at its origin, the shares :math:`\hat r_1 > \dots > \hat r_m` were still II at :math:`t_1 < \dots < t_m` years
later. The time since onset at the origin, :math:`\tau`, is 0 when the origin is onset, otherwise uniform on a
stated range; each person's interval of loss is multinomial with

.. math::
    q_j(\theta) = E_\tau\big[\{S(\tau + t_{j-1}) - S(\tau + t_j)\}/S(\tau)\big]\ (t_0 = 0),\quad
    q_{m+1}(\theta) = E_\tau[S(\tau + t_m)/S(\tau)], \qquad
    \ell_f(\theta) = \sum_j n_{\text{eff}}\, \hat p_j \log q_j(\theta),

:math:`\hat p = (1 - \hat r_1, \hat r_1 - \hat r_2, \dots, \hat r_m)`.

* CITR 2008 (``citr2008``): of islet-alone recipients who ever became II, 71% were still II 1 year later and 52%
  2 years later. Origin: first II (:math:`\tau = 0`). Denominator about 0.70 x 325, not published.
* Shapiro 2006 (``shapiro2006``): 5 of the 16 who met the 1-year primary end point (II 1 year after the final
  infusion) were still II at 2 years. Origin: the 1-year assessment; the time since onset there is not published:
  :math:`\tau \sim U(0.5, 1)` years by default (a convention: II usually follows the final infusion within weeks
  to months). Exact count.
* Ryan 2005 (``ryan2005``): duration of II among the 44 who became II, median 15 months (IQR 6.2-25.5). Origin:
  onset. The quartiles split the 44 durations into four groups of 11: the multinomial kernel of the
  order-statistic likelihood (:math:`\hat r = 0.75, 0.5, 0.25` at 6.2, 15, 25.5 months). Exact denominator. Its
  "about 10% at 5 years" (of 47, from infusion, approximate) is not used.
* Tiwari et al. (``tiwari_citr``, optional, off by default): 69/54/44% of 1-year composite responders (free of
  severe hypoglycaemia with HbA1c <= 6.5%) kept the composite at 2/3/4 years (Kaplan-Meier). A different end
  point; origin: the 1-year assessment, :math:`\tau` as for Shapiro 2006. Denominator about 0.59 x 347.

**Approximate denominators: an effective-sample-size discount.** A figure whose denominator is approximate, or that
is a registry Kaplan-Meier estimate rather than a count, is read as an overdispersed (beta-binomial) observation
with intra-class correlation :math:`\rho`, whose information is that of a binomial of
:math:`n_{\text{eff}} = n / \{1 + (n - 1)\rho\}` (Kish's design effect). The likelihood uses the multinomial kernel
with the fractional counts :math:`n_{\text{eff}}\hat p` (a power likelihood with exponent :math:`n_{\text{eff}}/n`).
Why this and not the beta-binomial pmf itself: there is no integer count at which to evaluate a pmf, the kernel has
the beta-binomial's curvature at its mode, and its ESS is explicit and composes with the transfer weight below.
Why overdispersion at all: the denominator is itself a rounded share of 325 or 347, registry figures pool centres
and eras, and Kaplan-Meier figures rest on fewer people at risk at later times than at the origin. Default
:math:`\rho = 0.02` (:data:`DEFAULT_OVERDISPERSION`, a convention, not estimated): CITR's about 228 counts as 41.
Exact counts (Shapiro, Ryan) enter with :math:`\rho = 0`.

**Transfer to a single-infusion stem-cell product: power prior** (Ibrahim and Chen 2000). Donor-islet attrition
(repeated infusions, other immunosuppression, other end points) is discounted by a weight :math:`a_0 \in [0, 1]`
that the user sets:

.. math:: p(\theta \mid \text{donor}) \propto p_0(\theta) \exp\Big\{a_0 \sum_f \ell_f(\theta)\Big\},

default :math:`a_0 = 0.5` (:data:`DEFAULT_TRANSFER_WEIGHT`, a convention, "half weight"); the figures then count
as :math:`a_0 \sum_f n_{\text{eff},f}` participants, and :func:`transfer_weight_for_ess` gives the :math:`a_0`
that caps that at a chosen ESS. The initial prior :math:`p_0` (:class:`WeibullLossPrior`, a convention) is
:math:`\log\lambda \sim N(\log 3, 1.5^2)`, :math:`\log k \sim N(0, 0.75^2)`: scale between 0.16 and 57 years, shape
between 0.23 and 4.3 (95%).

**Year-1 state: the phase 1/2 posterior.** The caller gives the share II at day 365 among participants alive then,
:math:`p_1` (e.g. 10/12 under a uniform prior: Beta(11, 3), as a :class:`~isletbayes.models.mixtures.BetaMixture`).
In the model :math:`p_1 = \pi A(\theta)`, :math:`A(\theta) = B_1(\theta)`. The donor-islet posterior of
:math:`\theta` and the phase 1/2 posterior of :math:`p_1` are combined as independent evidence restricted to the
compatible set :math:`p_1 \le A(\theta)` (:math:`\pi \le 1`):

.. math::
    p(\theta, \pi) \propto p(\theta \mid \text{donor})\, f_{p_1}\{\pi A(\theta)\}\, A(\theta),
    \quad 0 \le \pi \le 1,

so the :math:`\theta` margin is reweighted by :math:`F_{p_1}\{A(\theta)\}`: losses so fast that 10/12 II at
day 365 would be implausible are down-weighted. ``year1=None`` puts a uniform prior on :math:`\pi` instead.

**Deaths.** :math:`\mu \sim \mathrm{Gamma}(\alpha_0 + d, \beta_0 + E)` from :math:`d` deaths in :math:`E`
participant-years (:class:`DeathRate`; phase 1/2: 2 deaths among 14 dosed, each followed at least 12 months,
neither attributed to the product by the sponsor; the caller gives the exposure), plus the deaths and exposure of
any participant-level data; default :math:`\alpha_0 = 1/2, \beta_0 = 0` (Jeffreys). Death is all-cause.

**Posterior on a grid.** :math:`p(\theta, \pi, \mu \mid D) = p(\theta, \pi \mid D)\, p(\mu \mid D)` (the
likelihood factorises). :math:`(\log\lambda, \log k)` lives on a uniform grid whose box adapts to the posterior
(:class:`GridSpec`): a coarse ``n_coarse`` x ``n_coarse`` grid over :math:`p_0`'s mean +/- 7 sd, then an
``n_fine`` x ``n_fine`` grid over the box where the log density is within ``log_density_drop`` (25) of its maximum
(one step of margin), widened while that region touches the border, zoomed while it spans fewer than half the steps,
and made finer (up to 4 x ``n_fine``) while one step holds more than ``max_cell_mass`` (20%) of a marginal. :math:`\pi`
lives on ``n_ever_ii`` equal cells of [0, 1] whose prior masses are exact (differences of :math:`F_{p_1}`);
within a cell it is uniform. :math:`\mu` is conjugate; summaries integrate over it by ``n_death_nodes``-point
generalised Gauss-Laguerre quadrature (and over a beta-mixture SHE-free factor by Gauss-Jacobi quadrature).
Quantiles of functions of :math:`\theta` spread each cell's mass over the range the function takes across the cell
(linear within the cell), which keeps them second-order accurate in the grid step; quantiles of shares are exact in
:math:`\pi` given the grid. Accuracy: :meth:`DurabilityFit.check_grid` refits on a grid twice as fine in every
direction and reports the largest change of any reported quantile (a test asserts < 0.002 for the bundled
figures); posterior means are exact to rounding and quantiles to about 1e-4 against beta closed forms (exponential
loss, a beta prior on :math:`S(1)`, exact and discounted counts, :math:`a_0` < 1: tested).

**Outputs.**

* share still II at year :math:`y`: :math:`\pi e^{-\mu y} B_y(\theta)` (``composite``: death counts as not II) and
  :math:`\pi B_y(\theta)` (``hypothetical``: had no one died); retention since onset :math:`S(u)`;
* the persistence end point (:class:`PersistenceEndpoint`), per-participant probability

  .. math::
      p_{\text{persist}} = \pi\, S(P) \int_{w_0}^{w_1} g(s) e^{-\mu (s + P)} ds \cdot q_{\text{SHE}}
      \quad (\text{anchor = onset: onset in } [w_0, w_1], \text{ II and alive } P \text{ later}),

  :math:`\pi e^{-\mu w_1}\int_0^{w_0} g(s) S(w_1 - s)\,ds \cdot q_{\text{SHE}}` (anchor = infusion: II and alive
  throughout :math:`[w_0, w_1]`); :math:`q_{\text{SHE}}` an optional, independent factor for freedom from severe
  hypoglycaemia (a number or a beta mixture). Its posterior (:class:`ShareDistribution`) is exact in :math:`\pi`
  given the grid and fits to a beta mixture with :func:`~isletbayes.models.mixtures.fit_beta_mixture`;
* follow-up length (:func:`follow_up_precision`): the expected half-width of the 95% interval of :math:`S(H)`,
  :math:`H = 5` years since onset, after a phase 3 of :math:`n` participants followed :math:`T` years with annual
  visits, analysed with this model's prior: a preposterior Monte Carlo (seeded) over the design prior (this fit's
  posterior), each simulated trial's posterior on its own adaptive grid; the average-length criterion of Joseph,
  Wolfson and du Berger (1995). Each follow-up length cuts the same simulated event times (common random numbers).
  Its default grid is coarser (``n_fine=31, n_ever_ii=60, max_cell_mass=0.3``): against a grid of 81 steps and
  ``max_cell_mass=0.1`` it moved the expected half-widths of the bundled default by at most 0.0007 (measured,
  n = 50, T = 1, 3, 5), below the Monte Carlo error of 200 simulations (about 0.0015).

**Assumptions** (each reported where used): lost II is absorbing (no regain); one Weibull loss hazard for all
(no covariates or frailty); onset time distribution fixed (not estimated); constant, state-independent, all-cause
death hazard; withdrawal non-informative; states at visits observed without error; donor-islet retention
transfers up to :math:`a_0`; "still II :math:`t` later" read as continuous retention; rounding of published
percentages ignored; Ryan's quartiles as 11/11/11/11; :math:`p_1` is II at day 365 among those alive.

References: Jackson CH (2011) Multi-state models for panel data: the msm package for R. J Stat Softw 38(8):1-29.
Commenges D (2003) Likelihood for interval-censored observations from multi-state models. SORT 27(1):1-12
(visits plus exact death times, as here).
Ibrahim JG, Chen M-H (2000) Power prior distributions for regression models. Stat Sci 15:46-60. Kish L (1965)
Survey Sampling (design effect). Joseph L, Wolfson DB, du Berger R (1995) Sample size calculations for binomial
proportions via highest posterior density intervals. The Statistician 44:143-154. Data: sources ``citr2008``,
``shapiro2006``, ``ryan2005``, ``tiwari_citr`` of ``data/published/sources.csv``.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np
import pandas as pd
import scipy

from isletbayes.models.mixtures import BetaMixture, MixtureFit, fit_beta_mixture
from isletbayes.models.validation import ModelInputError

__all__ = [
    "DAYS_PER_YEAR",
    "STATES",
    "DEFAULT_TRANSFER_WEIGHT",
    "DEFAULT_OVERDISPERSION",
    "DEFAULT_YEARS_SINCE_ONSET_AT_ASSESSMENT",
    "CITR2008_APPROXIMATE_DENOMINATOR",
    "TIWARI_APPROXIMATE_DENOMINATOR",
    "LossPrior",
    "WeibullLossPrior",
    "RetentionFigure",
    "OnsetTime",
    "DeathRate",
    "DurabilityModel",
    "GridSpec",
    "ProcessParameters",
    "PersistenceEndpoint",
    "ObservedStates",
    "EventTimes",
    "ShareDistribution",
    "GridCheck",
    "DurabilityFit",
    "FollowUpPrecision",
    "weibull_survival",
    "donor_retention_figures",
    "transfer_weight_for_ess",
    "observed_states",
    "log_likelihood",
    "simulate_event_times",
    "observe",
    "to_long_table",
    "share_insulin_independent_at",
    "persistence_probability",
    "fit_durability",
    "follow_up_precision",
]

DAYS_PER_YEAR = 365.0
STATES = ("not_ii", "ii", "lost_ii", "dead")
_RANK = {s: i for i, s in enumerate(STATES)}

#: Power-prior weight of the donor-islet figures (a convention: half weight).
DEFAULT_TRANSFER_WEIGHT = 0.5
#: Intra-class correlation applied to approximate denominators (a convention, not estimated).
DEFAULT_OVERDISPERSION = 0.02
#: Time since onset at a "1 year after the final infusion" assessment, uniform range in years (a convention).
DEFAULT_YEARS_SINCE_ONSET_AT_ASSESSMENT = (0.5, 1.0)
#: CITR 2008: "Seventy percent achieved II at least once" of 325 islet-alone recipients (not published as a count).
CITR2008_APPROXIMATE_DENOMINATOR = 0.70 * 325
#: Tiwari et al.: "approximately 59% of all [347] transplant recipients" were 1-year composite responders.
TIWARI_APPROXIMATE_DENOMINATOR = 0.59 * 347

_LOG_ZERO = -np.inf
_CHUNK = 2_000_000  # elements per vectorised block (memory bound)


# ------------------------------------------------------------------------------------------------------------------
# validation helpers
# ------------------------------------------------------------------------------------------------------------------
def _number(value, parameter: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ModelInputError(f"must be a number, got {value!r}", parameter=parameter)
    value = float(value)
    if not math.isfinite(value):
        raise ModelInputError(f"must be finite, got {value!r}", parameter=parameter)
    return value


def _positive(value, parameter: str) -> float:
    value = _number(value, parameter)
    if value <= 0:
        raise ModelInputError(f"must be > 0, got {value!r}", parameter=parameter)
    return value


def _non_negative(value, parameter: str) -> float:
    value = _number(value, parameter)
    if value < 0:
        raise ModelInputError(f"must be >= 0, got {value!r}", parameter=parameter)
    return value


def _count(value, parameter: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ModelInputError(f"must be an integer >= {minimum}, got {value!r}", parameter=parameter)
    return int(value)


@functools.lru_cache(maxsize=16)
def _gauss01(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on [0, 1]."""
    x, w = np.polynomial.legendre.leggauss(n)
    return (x + 1.0) / 2.0, w / 2.0


# ------------------------------------------------------------------------------------------------------------------
# Weibull loss
# ------------------------------------------------------------------------------------------------------------------
def _cumulative_hazard(u, log_scale, log_shape):
    """(u / lambda)^k, broadcasting; 0 at u = 0."""
    u = np.asarray(u, dtype=float)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        return np.exp(np.exp(log_shape) * (np.log(np.maximum(u, 0.0)) - log_scale))


def weibull_survival(u, log_scale, log_shape):
    """Retention since onset S(u) = exp(-(u / lambda)^k) for u >= 0 years (arrays broadcast)."""
    return np.exp(-_cumulative_hazard(u, log_scale, log_shape))


def _upper_cusp_nodes(lower, upper, n_nodes: int):
    """Nodes and weights of int_lower^upper f(s) ds with s = upper - (upper - lower) t^2 (rows: intervals)."""
    t, w = _gauss01(n_nodes)
    lower, upper = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
    width = np.maximum(upper - lower, 0.0)
    s = upper[..., None] - width[..., None] * t**2
    return s, 2.0 * width[..., None] * t * w


# ------------------------------------------------------------------------------------------------------------------
# priors and evidence
# ------------------------------------------------------------------------------------------------------------------
class LossPrior(Protocol):
    """An initial prior p0 on (log scale, log shape) of the Weibull loss: a log density and a box holding its mass."""

    def log_density(self, log_scale: np.ndarray, log_shape: np.ndarray) -> np.ndarray: ...

    def box(self) -> tuple[tuple[float, float], tuple[float, float]]: ...


@dataclass(frozen=True)
class WeibullLossPrior:
    """Independent normal priors on log scale (years) and log shape of the Weibull loss (a convention)."""

    log_scale_mean: float = math.log(3.0)
    log_scale_sd: float = 1.5
    log_shape_mean: float = 0.0
    log_shape_sd: float = 0.75

    def __post_init__(self) -> None:
        for name in ("log_scale_mean", "log_shape_mean"):
            _number(getattr(self, name), name)
        for name in ("log_scale_sd", "log_shape_sd"):
            _positive(getattr(self, name), name)

    def log_density(self, log_scale, log_shape):
        return (scipy.stats.norm.logpdf(log_scale, self.log_scale_mean, self.log_scale_sd)
                + scipy.stats.norm.logpdf(log_shape, self.log_shape_mean, self.log_shape_sd))

    def box(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """Mean +/- 7 sd on each axis (prior mass outside: about 3e-12 per axis)."""
        return ((self.log_scale_mean - 7 * self.log_scale_sd, self.log_scale_mean + 7 * self.log_scale_sd),
                (self.log_shape_mean - 7 * self.log_shape_sd, self.log_shape_mean + 7 * self.log_shape_sd))


@dataclass(frozen=True)
class RetentionFigure:
    """A published durability figure: of ``denominator`` people insulin independent at the figure's time origin,
    the shares ``retained`` were still insulin independent ``years_after_origin`` later.

    ``years_since_onset_at_origin``: the range (uniform) of the time since onset at the origin; (0, 0) when the
    origin is onset itself. ``overdispersion`` is the intra-class correlation rho of the effective-sample-size
    discount n_eff = n / (1 + (n - 1) rho); use 0 for an exact count.
    """

    source_id: str
    end_point: str
    time_origin: str
    years_after_origin: tuple[float, ...]
    retained: tuple[float, ...]
    denominator: float
    denominator_exact: bool
    overdispersion: float = 0.0
    years_since_onset_at_origin: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        times = tuple(_positive(t, "years_after_origin") for t in self.years_after_origin)
        kept = tuple(_number(r, "retained") for r in self.retained)
        if len(times) == 0 or len(times) != len(kept):
            raise ModelInputError(f"need as many retained shares as times (>= 1), got {len(kept)} and {len(times)}",
                                  parameter="retained")
        if any(b <= a for a, b in zip(times, times[1:])):
            raise ModelInputError(f"times must increase, got {times}", parameter="years_after_origin")
        if any(not 0 <= r <= 1 for r in kept) or any(b > a for a, b in zip(kept, kept[1:])):
            raise ModelInputError(f"retained shares must lie in [0, 1] and not increase, got {kept}",
                                  parameter="retained")
        n = _number(self.denominator, "denominator")
        if n < 1:
            raise ModelInputError(f"must be >= 1, got {n}", parameter="denominator")
        rho = _non_negative(self.overdispersion, "overdispersion")
        if rho >= 1:
            raise ModelInputError(f"must be < 1, got {rho}", parameter="overdispersion")
        lo, hi = (_non_negative(v, "years_since_onset_at_origin") for v in self.years_since_onset_at_origin)
        if hi < lo:
            raise ModelInputError(f"need low <= high, got {(lo, hi)}", parameter="years_since_onset_at_origin")
        object.__setattr__(self, "years_after_origin", times)
        object.__setattr__(self, "retained", kept)
        object.__setattr__(self, "denominator", n)
        object.__setattr__(self, "overdispersion", rho)
        object.__setattr__(self, "years_since_onset_at_origin", (lo, hi))

    @property
    def effective_denominator(self) -> float:
        """n / (1 + (n - 1) rho): the binomial sample size with the same information (Kish's design effect)."""
        return self.denominator / (1.0 + (self.denominator - 1.0) * self.overdispersion)

    def interval_counts(self) -> np.ndarray:
        """Effective counts losing II in (0, t1], (t1, t2], ..., and still II after t_m."""
        r = np.asarray(self.retained)
        return self.effective_denominator * np.concatenate([[1.0 - r[0]], r[:-1] - r[1:], [r[-1]]])

    def retained_probability(self, log_scale, log_shape, n_nodes: int = 32) -> np.ndarray:
        """E_tau[S(tau + t_j) / S(tau)] for every theta (rows) and figure time (columns)."""
        log_scale, log_shape = np.atleast_1d(log_scale), np.atleast_1d(log_shape)
        lo, hi = self.years_since_onset_at_origin
        if hi == lo:
            tau, w = np.array([lo]), np.array([1.0])
        else:  # tau = lo + (hi - lo) t^2 smooths the cusp of S at tau = 0
            t, gw = _gauss01(n_nodes)
            tau, w = lo + (hi - lo) * t**2, 2.0 * t * gw
        times = np.asarray(self.years_after_origin)
        ls, lk = log_scale[:, None, None], log_shape[:, None, None]
        h0 = _cumulative_hazard(tau[None, :, None], ls, lk)
        h1 = _cumulative_hazard(tau[None, :, None] + times[None, None, :], ls, lk)
        with np.errstate(invalid="ignore"):
            cond = np.nan_to_num(np.exp(-(h1 - h0)), nan=0.0)  # S(tau) = 0 (inf - inf): nobody left, retention 0
        return np.einsum("gqm,q->gm", cond, w)

    def log_likelihood(self, log_scale, log_shape, n_nodes: int = 32) -> np.ndarray:
        """Multinomial kernel sum_j n_eff p_j log q_j(theta) (fractional counts), one value per theta."""
        kept = self.retained_probability(log_scale, log_shape, n_nodes)
        q = np.concatenate([1.0 - kept[:, :1], kept[:, :-1] - kept[:, 1:], kept[:, -1:]], axis=1)
        counts = self.interval_counts()
        with np.errstate(divide="ignore"):
            terms = np.where(counts > 0, counts * np.log(np.maximum(q, 0.0)), 0.0)
        return terms.sum(axis=1)


def transfer_weight_for_ess(figures: Sequence[RetentionFigure], ess: float) -> float:
    """The power-prior weight a0 = min(1, ess / sum n_eff) that lets the figures count as at most ``ess`` people."""
    ess = _non_negative(ess, "ess")
    total = sum(f.effective_denominator for f in figures)
    if total <= 0:
        raise ModelInputError("no figures to weight", parameter="figures")
    return min(1.0, ess / total)


@dataclass(frozen=True)
class OnsetTime:
    """Time from infusion to first insulin independence among those who ever become II: uniform on
    [low_days, high_days] (default 90-365 days, a convention: time to insulin independence is not published)."""

    low_days: float = 90.0
    high_days: float = 365.0

    def __post_init__(self) -> None:
        lo, hi = _non_negative(self.low_days, "low_days"), _number(self.high_days, "high_days")
        if hi <= lo:
            raise ModelInputError(f"must exceed low_days ({lo}), got {hi}", parameter="high_days")
        object.__setattr__(self, "low_days", lo)
        object.__setattr__(self, "high_days", hi)

    @property
    def low_years(self) -> float:
        return self.low_days / DAYS_PER_YEAR

    @property
    def high_years(self) -> float:
        return self.high_days / DAYS_PER_YEAR

    @property
    def density_per_year(self) -> float:
        return 1.0 / (self.high_years - self.low_years)

    def cdf(self, years) -> np.ndarray:
        return np.clip((np.asarray(years, dtype=float) - self.low_years) * self.density_per_year, 0.0, 1.0)

    def sample_years(self, size: int, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(self.low_years, self.high_years, size=size)


@dataclass(frozen=True)
class DeathRate:
    """Deaths and exposure of earlier data on the same product, and a gamma prior on the death hazard per year.

    Phase 1/2: 2 deaths among 14 dosed (each followed >= 12 months); the caller gives the exposure. Prior default
    Gamma(1/2, 0) (Jeffreys; proper once any exposure is added).
    """

    deaths: int = 0
    exposure_years: float = 0.0
    prior_shape: float = 0.5
    prior_rate: float = 0.0

    def __post_init__(self) -> None:
        _count(self.deaths, "deaths")
        _non_negative(self.exposure_years, "exposure_years")
        _positive(self.prior_shape, "prior_shape")
        _non_negative(self.prior_rate, "prior_rate")

    def posterior(self, deaths: int = 0, exposure_years: float = 0.0) -> tuple[float, float]:
        """(shape, rate) of the gamma posterior after adding ``deaths`` in ``exposure_years``."""
        shape = self.prior_shape + self.deaths + deaths
        rate = self.prior_rate + self.exposure_years + exposure_years
        if rate <= 0:
            raise ModelInputError("the death-rate posterior is improper: give an exposure or a prior rate > 0",
                                  parameter="death")
        return float(shape), float(rate)


@dataclass(frozen=True)
class DurabilityModel:
    """Priors and evidence of the multi-state model (see the module docstring)."""

    retention_figures: tuple[RetentionFigure, ...]
    death: DeathRate
    year1: BetaMixture | None = None
    transfer_weight: float = DEFAULT_TRANSFER_WEIGHT
    loss_prior: LossPrior = field(default_factory=WeibullLossPrior)
    onset: OnsetTime = field(default_factory=OnsetTime)
    fixed_shape: float | None = None

    def __post_init__(self) -> None:
        figures = tuple(self.retention_figures)
        for f in figures:
            if not isinstance(f, RetentionFigure):
                raise ModelInputError(f"must hold RetentionFigure objects, got {type(f).__name__}",
                                      parameter="retention_figures")
        object.__setattr__(self, "retention_figures", figures)
        if not isinstance(self.death, DeathRate):
            raise ModelInputError("must be a DeathRate", parameter="death")
        if self.year1 is not None and not isinstance(self.year1, BetaMixture):
            raise ModelInputError("must be a BetaMixture or None", parameter="year1")
        a0 = _number(self.transfer_weight, "transfer_weight")
        if not 0 <= a0 <= 1:
            raise ModelInputError(f"must lie in [0, 1], got {a0}", parameter="transfer_weight")
        if not (callable(getattr(self.loss_prior, "log_density", None)) and callable(getattr(self.loss_prior, "box",
                                                                                             None))):
            raise ModelInputError("must have log_density(log_scale, log_shape) and box() (see LossPrior)",
                                  parameter="loss_prior")
        if not isinstance(self.onset, OnsetTime):
            raise ModelInputError("must be an OnsetTime", parameter="onset")
        if self.fixed_shape is not None:
            object.__setattr__(self, "fixed_shape", _positive(self.fixed_shape, "fixed_shape"))


@dataclass(frozen=True)
class GridSpec:
    """Grid sizes (see the module docstring); defaults are checked by :meth:`DurabilityFit.check_grid`."""

    n_coarse: int = 31
    n_fine: int = 61
    n_ever_ii: int = 200
    n_death_nodes: int = 12
    n_she_nodes: int = 12
    quadrature_nodes: int = 32
    log_density_drop: float = 25.0
    max_cell_mass: float = 0.2

    def __post_init__(self) -> None:
        for name in ("n_coarse", "n_fine", "n_ever_ii", "quadrature_nodes"):
            _count(getattr(self, name), name, minimum=5)
        for name in ("n_death_nodes", "n_she_nodes"):
            _count(getattr(self, name), name, minimum=1)
        _positive(self.log_density_drop, "log_density_drop")
        if not 0 < _number(self.max_cell_mass, "max_cell_mass") < 1:
            raise ModelInputError(f"must lie in (0, 1), got {self.max_cell_mass}", parameter="max_cell_mass")

    def refined(self) -> "GridSpec":
        return GridSpec(self.n_coarse, 2 * self.n_fine - 1, 2 * self.n_ever_ii, 2 * self.n_death_nodes,
                        2 * self.n_she_nodes, 2 * self.quadrature_nodes, self.log_density_drop,
                        self.max_cell_mass / 2)


@dataclass(frozen=True)
class ProcessParameters:
    """One set of true parameters of the process (for simulation and exact per-participant probabilities)."""

    loss_scale_years: float
    loss_shape: float
    ever_ii: float
    death_rate_per_year: float
    onset: OnsetTime = field(default_factory=OnsetTime)

    def __post_init__(self) -> None:
        _positive(self.loss_scale_years, "loss_scale_years")
        _positive(self.loss_shape, "loss_shape")
        p = _number(self.ever_ii, "ever_ii")
        if not 0 <= p <= 1:
            raise ModelInputError(f"must lie in [0, 1], got {p}", parameter="ever_ii")
        _non_negative(self.death_rate_per_year, "death_rate_per_year")

    @property
    def log_scale(self) -> float:
        return math.log(self.loss_scale_years)

    @property
    def log_shape(self) -> float:
        return math.log(self.loss_shape)


@dataclass(frozen=True)
class PersistenceEndpoint:
    """The persistence end point.

    ``anchor="onset"``: first II at a day s in ``window_days`` and still II (and, under the composite strategy,
    alive) at s + ``persistence_days`` (the phase 3 end point as described: one year after first becoming II).
    ``anchor="infusion"``: II throughout ``window_days`` (e.g. (365, 365): II at day 365); the window is the
    persistence, so ``persistence_days`` must be 0. ``she_free``: optional probability (or beta mixture) of
    freedom from severe hypoglycaemia, independent of the rest. ``death_strategy``: "composite" (death = failure)
    or "hypothetical" (as if no one died).
    """

    anchor: str = "onset"
    window_days: tuple[float, float] = (0.0, 365.0)
    persistence_days: float = 365.0
    she_free: float | BetaMixture | None = None
    death_strategy: str = "composite"

    def __post_init__(self) -> None:
        if self.anchor not in ("onset", "infusion"):
            raise ModelInputError(f"must be 'onset' or 'infusion', got {self.anchor!r}", parameter="anchor")
        w0, w1 = (_non_negative(v, "window_days") for v in self.window_days)
        if w1 < w0:
            raise ModelInputError(f"need start <= end, got {(w0, w1)}", parameter="window_days")
        object.__setattr__(self, "window_days", (w0, w1))
        p = _non_negative(self.persistence_days, "persistence_days")
        if self.anchor == "infusion" and p != 0:
            raise ModelInputError("with anchor='infusion' the window is the persistence requirement: set 0",
                                  parameter="persistence_days")
        object.__setattr__(self, "persistence_days", p)
        if self.she_free is not None and not isinstance(self.she_free, BetaMixture):
            q = _number(self.she_free, "she_free")
            if not 0 <= q <= 1:
                raise ModelInputError(f"must lie in [0, 1], got {q}", parameter="she_free")
            object.__setattr__(self, "she_free", q)
        if self.death_strategy not in ("composite", "hypothetical"):
            raise ModelInputError(f"must be 'composite' or 'hypothetical', got {self.death_strategy!r}",
                                  parameter="death_strategy")


# ------------------------------------------------------------------------------------------------------------------
# published figures
# ------------------------------------------------------------------------------------------------------------------
_YEARS_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s+years?\b")


def _rows(durability: pd.DataFrame, source_id: str, measure: str) -> pd.DataFrame:
    rows = durability[(durability["source_id"] == source_id) & (durability["measure"] == measure)]
    if rows.empty:
        raise ModelInputError(f"no '{measure}' row from '{source_id}'", source="durability table",
                              column="source_id")
    return rows


def _timepoint_years(row) -> float:
    match = _YEARS_RE.match(str(row["timepoint"]))
    if match is None:
        raise ModelInputError(f"cannot read a time in years from {row['timepoint']!r} ({row['source_id']})",
                              source="durability table", column="timepoint")
    return float(match.group(1))


def _percent(row) -> float:
    if row["unit"] != "percent":
        raise ModelInputError(f"expected a percent, got unit {row['unit']!r} ({row['source_id']})",
                              source="durability table", column="unit")
    return float(row["value"]) / 100.0


def donor_retention_figures(durability: pd.DataFrame, *, include_tiwari: bool = False,
                            overdispersion: float = DEFAULT_OVERDISPERSION,
                            years_since_onset_at_assessment: tuple[float, float] =
                            DEFAULT_YEARS_SINCE_ONSET_AT_ASSESSMENT,
                            citr2008_denominator: float = CITR2008_APPROXIMATE_DENOMINATOR,
                            tiwari_denominator: float = TIWARI_APPROXIMATE_DENOMINATOR,
                            ) -> tuple[RetentionFigure, ...]:
    """The donor-islet durability figures of the durability table (``isletbayes.data.load_durability()``), each
    with its time origin; ``overdispersion`` applies to the approximate denominators only (CITR 2008, Tiwari)."""
    for column in ("source_id", "measure", "value", "unit", "lower", "upper", "r", "n", "timepoint"):
        if column not in durability.columns:
            raise ModelInputError("missing column", source="durability table", column=column)
    figures = []
    citr = _rows(durability, "citr2008", "insulin_independence_retained")
    pairs = sorted((_timepoint_years(row), _percent(row)) for _, row in citr.iterrows())
    figures.append(RetentionFigure(
        "citr2008", "insulin_independence", "first insulin independence",
        tuple(t for t, _ in pairs), tuple(r for _, r in pairs), citr2008_denominator, False, overdispersion))

    row = _rows(durability, "shapiro2006", "insulin_independence_retained").iloc[0]
    r, n = int(row["r"]), int(row["n"])
    figures.append(RetentionFigure(  # the 16 were assessed 1 year after the final infusion: 2 years = 1 year later
        "shapiro2006", "insulin_independence", "1-year assessment after the final infusion",
        (_timepoint_years(row) - 1.0,), (r / n,), float(n), True, 0.0, years_since_onset_at_assessment))

    row = _rows(durability, "ryan2005", "insulin_independence_duration").iloc[0]
    if row["unit"] != "months" or row["interval_kind"] != "IQR":
        raise ModelInputError("expected a median and IQR in months", source="durability table", column="unit")
    quartiles = tuple(float(row[c]) / 12.0 for c in ("lower", "value", "upper"))
    figures.append(RetentionFigure(
        "ryan2005", "insulin_independence", "first insulin independence", quartiles, (0.75, 0.5, 0.25),
        float(int(row["n"])), True, 0.0))

    if include_tiwari:
        rows = _rows(durability, "tiwari_citr", "composite_retained")
        pairs = sorted((_timepoint_years(row) - 1.0, _percent(row)) for _, row in rows.iterrows())
        figures.append(RetentionFigure(
            "tiwari_citr", "composite (SHE-free, HbA1c <= 6.5%)", "1-year assessment",
            tuple(t for t, _ in pairs), tuple(r for _, r in pairs), tiwari_denominator, False, overdispersion,
            years_since_onset_at_assessment))
    return tuple(figures)


# ------------------------------------------------------------------------------------------------------------------
# participant-level data
# ------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ObservedStates:
    """Per participant, the four visit days that carry the interval-censored likelihood (NaN: never seen), the
    exit day (death day, or last visit) and whether they died. Days count from the infusion."""

    participant: np.ndarray
    last_not_ii_day: np.ndarray
    first_ii_day: np.ndarray
    last_ii_day: np.ndarray
    first_lost_day: np.ndarray
    died: np.ndarray
    exit_day: np.ndarray

    @property
    def n(self) -> int:
        return int(self.participant.size)

    @property
    def n_deaths(self) -> int:
        return int(self.died.sum())

    @property
    def exposure_years(self) -> float:
        return float(self.exit_day.sum() / DAYS_PER_YEAR)

    @property
    def onset_seen(self) -> np.ndarray:
        return ~np.isnan(self.first_ii_day) | ~np.isnan(self.first_lost_day)

    def concat(self, other: "ObservedStates") -> "ObservedStates":
        return ObservedStates(*(np.concatenate([getattr(self, f), getattr(other, f)]) for f in
                                ("participant", "last_not_ii_day", "first_ii_day", "last_ii_day",
                                 "first_lost_day", "died", "exit_day")))

    def subset(self, index) -> "ObservedStates":
        return ObservedStates(*(getattr(self, f)[index] for f in
                                ("participant", "last_not_ii_day", "first_ii_day", "last_ii_day",
                                 "first_lost_day", "died", "exit_day")))


def observed_states(table: pd.DataFrame, source: str = "participant states") -> ObservedStates:
    """Validate a long table (``participant, day, state``; state one of :data:`STATES`; ``day`` from infusion,
    the death day for ``dead``) and reduce it to :class:`ObservedStates`. Lost II is absorbing in this model: a
    sequence going back (e.g. II after lost II) is an error naming its line (header = line 1)."""
    for column in ("participant", "day", "state"):
        if column not in table.columns:
            raise ModelInputError("missing column", source=source, column=column)
    if len(table) == 0:
        raise ModelInputError("no rows", source=source)
    day = pd.to_numeric(table["day"], errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isfinite(day) | (day < 0))
    if bad.size:
        raise ModelInputError(f"day must be a number >= 0, got {table['day'].iloc[bad[0]]!r}", source=source,
                              column="day", line=int(bad[0]) + 2)
    state = table["state"].astype(str).to_numpy()
    unknown = np.flatnonzero(~np.isin(state, STATES))
    if unknown.size:
        raise ModelInputError(f"unknown state {state[unknown[0]]!r} (use one of {', '.join(STATES)})",
                              source=source, column="state", line=int(unknown[0]) + 2)
    rank = np.array([_RANK[s] for s in state])
    pid = table["participant"].astype(str).to_numpy()
    ids, first_row, code = np.unique(pid, return_index=True, return_inverse=True)
    order_ids = np.argsort(first_row, kind="stable")  # participants in order of first appearance
    out = {k: np.full(ids.size, np.nan) for k in ("a", "b", "c", "d", "x")}
    died = np.zeros(ids.size, dtype=bool)
    order = np.lexsort((np.arange(len(day)), day, code))
    bounds = np.searchsorted(code[order], np.arange(ids.size + 1))
    for p in range(ids.size):
        rows = order[bounds[p]:bounds[p + 1]]
        d, r = day[rows], rank[rows]
        for i in range(1, rows.size):
            if d[i] == d[i - 1] and r[i] != r[i - 1]:
                raise ModelInputError(f"participant {ids[p]!r} has two states on day {d[i]:g}", source=source,
                                      column="state", line=int(rows[i]) + 2)
            if r[i] < r[i - 1] or (r[i] == r[i - 1] == _RANK["dead"]):
                raise ModelInputError(
                    f"participant {ids[p]!r}: state {STATES[r[i]]!r} on day {d[i]:g} after {STATES[r[i - 1]]!r} on "
                    f"day {d[i - 1]:g}; states must follow not_ii -> ii -> lost_ii, death last (lost insulin "
                    "independence is absorbing in this model)", source=source, column="state", line=int(rows[i]) + 2)
        seen = {k: d[r == _RANK[s]] for k, s in zip("abdx", STATES)}
        if seen["b"].size and seen["b"][0] == 0:
            raise ModelInputError(f"participant {ids[p]!r} is insulin independent at the infusion (day 0)",
                                  source=source, column="state", line=int(rows[np.argmax(r == 1)]) + 2)
        out["a"][p] = seen["a"].max() if seen["a"].size else 0.0
        if seen["b"].size:
            out["b"][p], out["c"][p] = seen["b"].min(), seen["b"].max()
        if seen["d"].size:
            out["d"][p] = seen["d"].min()
        died[p] = seen["x"].size > 0
        out["x"][p] = seen["x"][0] if died[p] else d.max()
    o = order_ids
    return ObservedStates(ids[o].astype(object), out["a"][o], out["b"][o], out["c"][o], out["d"][o], died[o],
                          out["x"][o])


@dataclass(frozen=True)
class _Patterns:
    """Unique illness patterns (years) with counts, and the pi likelihood summary."""

    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    d: np.ndarray
    count: np.ndarray
    n_onset: int
    never_cdf: np.ndarray      # distinct G(a) of participants never seen II
    never_count: np.ndarray


def _patterns(states: ObservedStates | None, onset: OnsetTime) -> _Patterns:
    empty = np.zeros(0)
    if states is None or states.n == 0:
        return _Patterns(empty, empty, empty, empty, empty, 0, empty, empty)
    seen = states.onset_seen
    a, b, c, d = (getattr(states, f)[seen] / DAYS_PER_YEAR for f in
                  ("last_not_ii_day", "first_ii_day", "last_ii_day", "first_lost_day"))
    upper = np.where(np.isnan(b), d, b)
    lower_support = np.maximum(a, onset.low_years)
    upper_support = np.minimum(upper, onset.high_years)
    bad = np.flatnonzero(upper_support <= lower_support)
    if bad.size:
        who = states.participant[seen][bad[0]]
        raise ModelInputError(
            f"participant {who!r} first became insulin independent between days {a[bad[0]] * DAYS_PER_YEAR:g} and "
            f"{upper[bad[0]] * DAYS_PER_YEAR:g}, outside the onset-time distribution "
            f"({onset.low_days:g}-{onset.high_days:g} days): widen it", parameter="onset")
    key = np.nan_to_num(np.stack([a, b, c, d], axis=1), nan=-1.0)
    uniq, count = np.unique(key, axis=0, return_counts=True)
    uniq = np.where(uniq < 0, np.nan, uniq)
    never_g = onset.cdf(states.last_not_ii_day[~seen] / DAYS_PER_YEAR)
    g_vals, g_count = np.unique(never_g, return_counts=True)
    return _Patterns(uniq[:, 0], uniq[:, 1], uniq[:, 2], uniq[:, 3], count.astype(float), int(seen.sum()),
                     g_vals, g_count.astype(float))


def _illness_likelihood(p: _Patterns, onset: OnsetTime, log_scale, log_shape, n_nodes: int) -> np.ndarray:
    """int_a^e g(s) {S(c - s) - S(d - s)} ds for every theta (rows) and onset pattern (columns)."""
    log_scale, log_shape = np.atleast_1d(log_scale), np.atleast_1d(log_shape)
    has_b, has_d = ~np.isnan(p.b), ~np.isnan(p.d)
    upper = np.minimum(np.where(has_b, p.b, p.d), onset.high_years)
    s, ws = _upper_cusp_nodes(np.maximum(p.a, onset.low_years), upper, n_nodes)
    ws = ws * onset.density_per_year
    u1 = np.where(has_b[:, None], np.nan_to_num(p.c)[:, None] - s, 0.0)
    u2 = np.where(has_d[:, None], np.nan_to_num(p.d)[:, None] - s, 0.0)
    out = np.empty((log_scale.size, p.a.size))
    step = max(1, _CHUNK // max(1, s.size))
    for i in range(0, log_scale.size, step):
        ls, lk = log_scale[i:i + step, None, None], log_shape[i:i + step, None, None]
        s1 = np.where(has_b[None, :, None], weibull_survival(u1[None], ls, lk), 1.0)
        s2 = np.where(has_d[None, :, None], weibull_survival(u2[None], ls, lk), 0.0)
        out[i:i + step] = np.einsum("gpq,pq->gp", s1 - s2, ws)
    return out


def log_likelihood(states: ObservedStates | pd.DataFrame, parameters: ProcessParameters,
                   n_nodes: int = 32) -> np.ndarray:
    """Exact interval-censored log-likelihood of each participant's observed sequence (module docstring)."""
    if isinstance(states, pd.DataFrame):
        states = observed_states(states)
    pars = parameters
    onset = pars.onset
    seen = states.onset_seen
    out = np.empty(states.n)
    with np.errstate(divide="ignore"):
        if seen.any():
            single = states.subset(seen)
            _patterns(single, onset)  # validates the onset support
            a, b, c, d = (getattr(single, f) / DAYS_PER_YEAR for f in
                          ("last_not_ii_day", "first_ii_day", "last_ii_day", "first_lost_day"))
            lik = _illness_likelihood(_Patterns(a, b, c, d, np.ones(a.size), 0, np.zeros(0), np.zeros(0)), onset,
                                      pars.log_scale, pars.log_shape, n_nodes)[0]
            out[seen] = np.log(pars.ever_ii) + np.log(lik)
        never = ~seen
        out[never] = np.log1p(-pars.ever_ii * onset.cdf(states.last_not_ii_day[never] / DAYS_PER_YEAR))
        mu = pars.death_rate_per_year
        out += np.where(states.died, np.log(mu), 0.0) - mu * states.exit_day / DAYS_PER_YEAR
    return out


# ------------------------------------------------------------------------------------------------------------------
# simulation
# ------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class EventTimes:
    """True event times in years from infusion (inf: never): onset, loss of II, death."""

    onset_years: np.ndarray
    loss_years: np.ndarray
    death_years: np.ndarray

    @property
    def n(self) -> int:
        return int(self.onset_years.size)

    def subset(self, index) -> "EventTimes":
        return EventTimes(self.onset_years[index], self.loss_years[index], self.death_years[index])


def simulate_event_times(parameters: ProcessParameters, n: int, rng: np.random.Generator) -> EventTimes:
    """Draw n participants' onset, loss and death times from the process."""
    n = _count(n, "n", minimum=1)
    p = parameters
    ever = rng.random(n) < p.ever_ii
    onset = np.where(ever, p.onset.sample_years(n, rng), np.inf)
    duration = p.loss_scale_years * rng.exponential(1.0, n) ** (1.0 / p.loss_shape)
    loss = onset + duration
    death = rng.exponential(1.0 / p.death_rate_per_year, n) if p.death_rate_per_year > 0 else np.full(n, np.inf)
    return EventTimes(onset, loss, death)


def _visit_matrix(events: EventTimes, visit_days, withdrawal_years):
    visits = np.sort(np.unique(np.asarray(visit_days, dtype=float)))
    visits = visits[visits > 0]
    if visits.size == 0:
        raise ModelInputError("need at least one visit after day 0", parameter="visit_days")
    v = visits / DAYS_PER_YEAR
    wd = np.full(events.n, np.inf) if withdrawal_years is None else np.asarray(withdrawal_years, dtype=float)
    seen = (v[None, :] < events.death_years[:, None]) & (v[None, :] <= wd[:, None])
    state = np.where(v[None, :] < events.onset_years[:, None], 0,
                     np.where(v[None, :] < events.loss_years[:, None], 1, 2))
    died = (events.death_years <= v[-1]) & (events.death_years < wd)
    return visits, seen, state, died


def observe(events: EventTimes, visit_days: Sequence[float], withdrawal_years=None) -> ObservedStates:
    """Interval-censor event times at ``visit_days`` (follow-up ends at the last one; death days exact; a
    participant withdrawn at ``withdrawal_years`` is seen up to then)."""
    visits, seen, state, died = _visit_matrix(events, visit_days, withdrawal_years)
    day = np.broadcast_to(visits, seen.shape)

    def pick(mask, largest: bool, fill: float) -> np.ndarray:
        vals = np.where(mask, day, -np.inf if largest else np.inf)
        return np.where(mask.any(axis=1), vals.max(axis=1) if largest else vals.min(axis=1), fill)

    a = pick(seen & (state == 0), True, 0.0)
    b = pick(seen & (state == 1), False, np.nan)
    c = pick(seen & (state == 1), True, np.nan)
    d = pick(seen & (state == 2), False, np.nan)
    last = pick(seen, True, 0.0)
    exit_day = np.where(died, events.death_years * DAYS_PER_YEAR, last)
    ids = np.array([f"P{i + 1:04d}" for i in range(events.n)], dtype=object)
    return ObservedStates(ids, a, b, c, d, died, exit_day)


def to_long_table(events: EventTimes, visit_days: Sequence[float], withdrawal_years=None) -> pd.DataFrame:
    """The long table (participant, day, state) a trial would record: day 0 (not_ii), each visit seen, and the
    death day."""
    visits, seen, state, died = _visit_matrix(events, visit_days, withdrawal_years)
    rows = []
    for i in range(events.n):
        pid = f"P{i + 1:04d}"
        rows.append((pid, 0.0, "not_ii"))
        rows.extend((pid, float(visits[j]), STATES[state[i, j]]) for j in np.flatnonzero(seen[i]))
        if died[i]:
            rows.append((pid, float(events.death_years[i] * DAYS_PER_YEAR), "dead"))
    return pd.DataFrame(rows, columns=["participant", "day", "state"])


# ------------------------------------------------------------------------------------------------------------------
# exact per-participant probabilities
# ------------------------------------------------------------------------------------------------------------------
def _onset_then_retained(years, log_scale, log_shape, onset: OnsetTime, n_nodes: int) -> np.ndarray:
    """B_y(theta) = int_0^y g(s) S(y - s) ds, rows theta, columns y."""
    years = np.atleast_1d(np.asarray(years, dtype=float))
    upper = np.minimum(onset.high_years, years)
    s, ws = _upper_cusp_nodes(np.full(years.shape, onset.low_years), np.maximum(upper, onset.low_years), n_nodes)
    ws = ws * onset.density_per_year
    ls, lk = np.atleast_1d(log_scale)[:, None, None], np.atleast_1d(log_shape)[:, None, None]
    return np.einsum("gyq,yq->gy", weibull_survival(years[:, None] - s, ls, lk), ws)


def _endpoint_factors(endpoint: PersistenceEndpoint, onset: OnsetTime, log_scale, log_shape, death_rates,
                      n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """p_persist / (pi q_SHE) = theta part (per theta) x death part (per death rate)."""
    w0, w1 = (v / DAYS_PER_YEAR for v in endpoint.window_days)
    mu = np.atleast_1d(np.asarray(death_rates, dtype=float))
    if endpoint.death_strategy == "hypothetical":
        mu = np.zeros(1)
    if endpoint.anchor == "onset":
        p = endpoint.persistence_days / DAYS_PER_YEAR
        s0, s1 = max(w0, onset.low_years), min(w1, onset.high_years)
        theta = np.atleast_1d(weibull_survival(p, log_scale, log_shape))
        if s1 <= s0:
            return theta, np.zeros(mu.size)
        with np.errstate(invalid="ignore", divide="ignore"):
            integral = np.where(mu > 0, np.exp(-mu * s0) * -np.expm1(-mu * (s1 - s0)) / mu, s1 - s0)
        return theta, np.exp(-mu * p) * integral * onset.density_per_year
    upper = min(w0, onset.high_years)
    if upper <= onset.low_years:
        return np.zeros(np.atleast_1d(log_scale).size), np.exp(-mu * w1)
    s, ws = _upper_cusp_nodes(np.array([onset.low_years]), np.array([upper]), n_nodes)
    ls, lk = np.atleast_1d(log_scale)[:, None], np.atleast_1d(log_shape)[:, None]
    theta = (weibull_survival(w1 - s[0][None, :], ls, lk) * ws[0][None, :]).sum(axis=1) * onset.density_per_year
    return theta, np.exp(-mu * w1)


def _she_mean(she) -> float:
    if she is None:
        return 1.0
    return she.mean() if isinstance(she, BetaMixture) else float(she)


def share_insulin_independent_at(parameters: ProcessParameters, years: Sequence[float],
                                 n_nodes: int = 64) -> pd.DataFrame:
    """P(II and alive at year y) (composite) and P(II at y had no one died) (hypothetical) for given parameters."""
    p = parameters
    years = np.asarray(years, dtype=float)
    b = _onset_then_retained(years, p.log_scale, p.log_shape, p.onset, n_nodes)[0]
    hyp = p.ever_ii * b
    return pd.DataFrame({"year": years, "composite": hyp * np.exp(-p.death_rate_per_year * years),
                         "hypothetical": hyp})


def persistence_probability(parameters: ProcessParameters, endpoint: PersistenceEndpoint,
                            n_nodes: int = 64) -> float:
    """A participant's probability of meeting ``endpoint`` given the parameters (times the mean SHE-free factor)."""
    p = parameters
    theta, death = _endpoint_factors(endpoint, p.onset, p.log_scale, p.log_shape, p.death_rate_per_year, n_nodes)
    return float(p.ever_ii * theta[0] * death[0] * _she_mean(endpoint.she_free))


# ------------------------------------------------------------------------------------------------------------------
# grid posterior
# ------------------------------------------------------------------------------------------------------------------
class _LogPosterior:
    """Unnormalised log cell weights of (theta, pi) for a model and data, on any (log scale, log shape) grid."""

    def __init__(self, model: DurabilityModel, states: ObservedStates | None, grid: GridSpec):
        self.model = model
        self.grid = grid
        self.patterns = _patterns(states, model.onset)

    def __call__(self, log_scale_values: np.ndarray, log_shape_values: np.ndarray) -> np.ndarray:
        m, g = self.model, self.grid
        ls, lk = (v.ravel() for v in np.meshgrid(log_scale_values, log_shape_values, indexing="ij"))
        lp = np.asarray(m.loss_prior.log_density(ls, lk), dtype=float)
        if m.transfer_weight > 0:
            for figure in m.retention_figures:
                lp = lp + m.transfer_weight * figure.log_likelihood(ls, lk, g.quadrature_nodes)
        p = self.patterns
        with np.errstate(divide="ignore"):
            if p.count.size:
                lp = lp + np.log(_illness_likelihood(p, m.onset, ls, lk, g.quadrature_nodes)) @ p.count
            edges = np.linspace(0.0, 1.0, g.n_ever_ii + 1)
            mids = 0.5 * (edges[1:] + edges[:-1])
            if m.year1 is None:
                lpi = np.full((ls.size, g.n_ever_ii), -math.log(g.n_ever_ii))
            else:
                a = _onset_then_retained([1.0], ls, lk, m.onset, g.quadrature_nodes)[:, 0]
                x = edges[None, :] * a[:, None]
                cdf = sum(w * scipy.special.betainc(ak, bk, x)
                          for w, ak, bk in zip(m.year1.weights, m.year1.a, m.year1.b))
                lpi = np.log(np.maximum(np.diff(cdf, axis=1), 0.0))
            lpd = p.n_onset * np.log(mids)
            for gval, cnt in zip(p.never_cdf, p.never_count):
                lpd = lpd + cnt * np.log1p(-mids * gval)
        table = lp[:, None] + lpi + lpd[None, :]
        return np.where(np.isnan(table), _LOG_ZERO, table)


def _adaptive_grid(log_post: _LogPosterior, box_scale, box_shape, fixed_log_shape, grid: GridSpec,
                   start_fine: bool = False):
    """Coarse grid over the box, then fine grids over the box where the log density is within
    ``log_density_drop`` of its maximum (one step of margin), widened while that region touches the border, zoomed
    while it spans fewer than half the grid's steps, and made finer (in one jump, up to 4 x ``n_fine``) while one
    step holds more than ``max_cell_mass`` of an axis's marginal mass. ``start_fine``: the box already fits (skip
    the coarse stage)."""
    def evaluate(bs, bk, n):
        ls = np.linspace(*bs, n)
        lk = np.array([fixed_log_shape]) if fixed_log_shape is not None else np.linspace(*bk, n)
        return ls, lk, log_post(ls, lk)

    ls, lk, table = evaluate(box_scale, box_shape, grid.n_fine if start_fine else grid.n_coarse)
    n, fine = grid.n_fine, start_fine
    for _ in range(16):
        marg = scipy.special.logsumexp(table, axis=1).reshape(ls.size, lk.size)
        top = marg.max()
        if not np.isfinite(top):
            raise ModelInputError("the posterior is zero everywhere on the grid: the data and priors conflict "
                                  "(check the onset-time distribution and the loss prior)", parameter="model")
        keep = marg > top - grid.log_density_drop
        prob = np.exp(marg - scipy.special.logsumexp(marg))
        boxes, at_edge, narrow, peak = [], False, False, 0.0
        for values, idx, margin in ((ls, np.flatnonzero(keep.any(axis=1)), prob.sum(axis=1)),
                                    (lk, np.flatnonzero(keep.any(axis=0)), prob.sum(axis=0))):
            if values.size == 1:
                boxes.append(None)
                continue
            step, width = values[1] - values[0], values[-1] - values[0]
            lo = values[idx[0]] - step if idx[0] > 0 else values[0] - 0.5 * width
            hi = values[idx[-1]] + step if idx[-1] < values.size - 1 else values[-1] + 0.5 * width
            boxes.append((lo, hi))
            at_edge |= idx[0] == 0 or idx[-1] == values.size - 1
            narrow |= idx[-1] - idx[0] + 1 < values.size // 2
            peak = max(peak, float(margin.max()))
        if fine and not (at_edge or narrow):
            if peak <= grid.max_cell_mass or n >= 4 * grid.n_fine:
                return ls, lk, table
            n = min(int(math.ceil(1.1 * n * peak / grid.max_cell_mass)), 4 * grid.n_fine)
            boxes = [(ls[0], ls[-1]), None if lk.size == 1 else (lk[0], lk[-1])]
        ls, lk, table = evaluate(boxes[0], boxes[1], n)
        fine = True
    raise RuntimeError("the grid posterior did not settle after 16 refinements")


def _gamma_nodes(shape: float, rate: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss quadrature nodes and weights for E[f(mu)], mu ~ Gamma(shape, rate) (generalised Gauss-Laguerre)."""
    x, w = scipy.special.roots_genlaguerre(n, shape - 1.0)
    return x / rate, w / w.sum()


def _beta_mixture_nodes(mixture: BetaMixture, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Jacobi nodes and weights for E[f(q)], q ~ the beta mixture (n per component)."""
    nodes, weights = [], []
    for wk, a, b in zip(mixture.weights, mixture.a, mixture.b):
        x, w = scipy.special.roots_jacobi(n, b - 1.0, a - 1.0)
        nodes.append((1.0 + x) / 2.0)
        weights.append(wk * w / w.sum())
    return np.concatenate(nodes), np.concatenate(weights)


def _trapezoid_cdf(z: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """cdf at z of U(-a/2, a/2) + U(-b/2, b/2) (a value linear across a grid cell of widths a and b)."""
    a, b = np.maximum(a, b), np.minimum(a, b)
    half, flat = 0.5 * (a + b), 0.5 * (a - b)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ramp_lo = (z + half) ** 2 / (2 * a * b)
        ramp_hi = 1.0 - (half - z) ** 2 / (2 * a * b)
        middle = 0.5 + z / a
    out = np.where(z <= -flat, ramp_lo, np.where(z < flat, middle, ramp_hi))
    uniform = np.clip(middle, 0.0, 1.0)  # b = 0: a uniform spread
    out = np.where(b > 1e-12 * a, out, uniform)
    out = np.where(a > 0, out, (z >= 0).astype(float))  # no spread: a point
    return np.clip(np.where(z <= -half, 0.0, np.where(z >= half, 1.0, out)), 0.0, 1.0)


def _grid_quantiles(values: np.ndarray, weights: np.ndarray, steps: tuple[float, float], probs) -> np.ndarray:
    """Quantiles of a function of theta under the grid posterior, each cell's mass spread over the range the
    function takes across the cell (linear within the cell, slopes by central differences): second-order accurate
    in the grid step, where sorting the cell values is first-order in two dimensions."""
    probs = np.atleast_1d(np.asarray(probs, dtype=float))
    v = np.asarray(values, dtype=float)
    widths = []
    for axis, step in enumerate(steps):
        if v.shape[axis] > 1:
            widths.append(np.abs(np.gradient(v, step, axis=axis)) * step)
        else:
            widths.append(np.zeros_like(v))
    v, a, b, w = v.ravel(), widths[0].ravel(), widths[1].ravel(), np.asarray(weights, dtype=float).ravel()
    keep = w > 1e-16 * w.max()  # negligible cells (and no subnormal numbers, which are slow)
    v, a, b, w = v[keep], a[keep], b[keep], w[keep] / w[keep].sum()
    lo = np.full(probs.shape, float(np.min(v - 0.5 * (a + b))))
    hi = np.full(probs.shape, float(np.max(v + 0.5 * (a + b))))
    for _ in range(60):  # bisection on the (continuous, non-decreasing) cdf
        mid = 0.5 * (lo + hi)
        below = np.array([w @ _trapezoid_cdf(m - v, a, b) for m in mid]) < probs
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return np.clip(0.5 * (lo + hi), v.min(), v.max())  # a spread cannot leave the function's range on the grid


# ------------------------------------------------------------------------------------------------------------------
# distributions of shares (pi x multiplier)
# ------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ShareDistribution:
    """Posterior distribution of a probability of the form pi x c, where c depends on (theta, mu, q_SHE) and takes
    the value ``multipliers[k]`` with probability ``weights[k]``, and pi given theta has the piecewise-linear cdf
    ``ever_ii_cdf[row[k]]`` on ``n`` equal cells of [0, 1]. Exact in pi given the grid (no Monte Carlo)."""

    label: str
    weights: np.ndarray
    multipliers: np.ndarray
    row: np.ndarray
    ever_ii_cdf: np.ndarray

    @property
    def _cells(self) -> int:
        return self.ever_ii_cdf.shape[1] - 1

    def cdf(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        flat_x = np.atleast_1d(x).ravel()
        n = self._cells
        table = self.ever_ii_cdf.ravel()
        base = self.row * (n + 1)
        out = np.empty(flat_x.size)
        step = max(1, _CHUNK // max(1, self.weights.size))
        for i in range(0, flat_x.size, step):
            xs = flat_x[i:i + step, None]
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                z = np.where(self.multipliers > 0, xs / self.multipliers, np.where(xs >= 0, np.inf, -np.inf))
            z = np.clip(z, 0.0, 1.0) * n
            j = np.minimum(z.astype(np.int64), n - 1)
            frac = z - j
            f = table[base + j] * (1.0 - frac) + table[base + j + 1] * frac
            out[i:i + step] = f @ self.weights
        out = np.where(flat_x < 0, 0.0, np.clip(out, 0.0, 1.0))
        return out.reshape(x.shape) if x.ndim else out[0]

    def ppf(self, q) -> np.ndarray:
        q = np.asarray(q, dtype=float)
        if np.any((q < 0) | (q > 1)):
            raise ModelInputError("probabilities must lie in [0, 1]", parameter="q")
        flat = np.atleast_1d(q).ravel()
        top = float(self.multipliers.max())
        at_zero = float(self.cdf(0.0))
        out = np.where(flat <= at_zero, 0.0, top)
        todo = (flat > at_zero) & (flat < 1)
        if np.any(todo) and top > 0:
            from scipy.optimize import elementwise

            res = elementwise.find_root(lambda x, p: self.cdf(x) - p,
                                        (np.zeros(todo.sum()), np.full(todo.sum(), top)), args=(flat[todo],),
                                        tolerances={"xatol": 1e-10, "xrtol": 1e-12, "fatol": 0.0, "frtol": 0.0})
            out[todo] = res.x
        return out.reshape(q.shape) if q.ndim else float(out[0])

    def _ever_ii_moments(self) -> tuple[np.ndarray, np.ndarray]:
        n = self._cells
        e = np.linspace(0.0, 1.0, n + 1)
        mass = np.diff(self.ever_ii_cdf, axis=1)
        m1 = mass @ (0.5 * (e[1:] + e[:-1]))
        m2 = mass @ ((e[1:] ** 2 + e[1:] * e[:-1] + e[:-1] ** 2) / 3.0)
        return m1, m2

    def mean(self) -> float:
        m1, _ = self._ever_ii_moments()
        return float(self.weights @ (self.multipliers * m1[self.row]))

    def var(self) -> float:
        _, m2 = self._ever_ii_moments()
        return float(self.weights @ (self.multipliers**2 * m2[self.row]) - self.mean() ** 2)

    def sd(self) -> float:
        return math.sqrt(max(self.var(), 0.0))

    def median(self) -> float:
        return float(self.ppf(0.5))

    def interval(self, prob: float = 0.95) -> tuple[float, float]:
        lo, hi = self.ppf(np.array([(1 - prob) / 2, (1 + prob) / 2]))
        return float(lo), float(hi)

    def grid(self, n_points: int = 201) -> pd.DataFrame:
        """The cdf on an even grid of shares from 0 to the largest possible value."""
        x = np.linspace(0.0, float(self.multipliers.max()), _count(n_points, "n_points", minimum=2))
        return pd.DataFrame({"share": x, "cdf": self.cdf(x)})

    def sample(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """Independent draws (pi drawn exactly from its piecewise-linear cdf)."""
        size = _count(size, "size", minimum=1)
        k = rng.choice(self.weights.size, size=size, p=self.weights / self.weights.sum())
        rows = self.ever_ii_cdf[self.row[k]]
        u = rng.random(size)
        n = self._cells
        j = np.clip((rows <= u[:, None]).sum(axis=1) - 1, 0, n - 1)
        lo, hi = rows[np.arange(size), j], rows[np.arange(size), j + 1]
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(hi > lo, (u - lo) / (hi - lo), 0.5)
        return self.multipliers[k] * (j + np.clip(frac, 0.0, 1.0)) / n

    def fit_beta_mixture(self, n_draws: int = 4000, seed: int = 0, max_components: int = 3,
                         criterion: str = "bic") -> MixtureFit:
        """A beta mixture fitted (EM, :func:`~isletbayes.models.mixtures.fit_beta_mixture`) to seeded draws, for
        the exact design layer."""
        draws = self.sample(n_draws, np.random.default_rng(seed))
        return fit_beta_mixture(draws, max_components=max_components, criterion=criterion, seed=seed)


@dataclass(frozen=True)
class GridCheck:
    """Every reported quantile on the fit's grid and on a grid twice as fine."""

    table: pd.DataFrame
    max_abs_difference: float


# ------------------------------------------------------------------------------------------------------------------
# the fit
# ------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class DurabilityFit:
    """The grid posterior: (log scale, log shape) grid x ``n_ever_ii`` pi cells (``cell_probability``, rows
    theta in C order, columns pi), and the gamma posterior of the death hazard."""

    model: DurabilityModel
    data: ObservedStates | None
    grid: GridSpec
    log_scale: np.ndarray
    log_shape: np.ndarray
    cell_probability: np.ndarray
    death_posterior_shape: float
    death_posterior_rate: float

    # grid views --------------------------------------------------------------------------------------------------
    @property
    def theta_probability(self) -> np.ndarray:
        return self.cell_probability.sum(axis=1)

    def _theta(self) -> tuple[np.ndarray, np.ndarray]:
        ls, lk = np.meshgrid(self.log_scale, self.log_shape, indexing="ij")
        return ls.ravel(), lk.ravel()

    def _steps(self) -> tuple[float, float]:
        s = self.log_scale[1] - self.log_scale[0]
        k = self.log_shape[1] - self.log_shape[0] if self.log_shape.size > 1 else 0.0
        return float(s), float(k)

    def _theta_quantiles(self, values: np.ndarray, probs) -> np.ndarray:
        shape = (self.log_scale.size, self.log_shape.size)
        return _grid_quantiles(np.reshape(values, shape), self.theta_probability.reshape(shape), self._steps(), probs)

    def _death_nodes(self) -> tuple[np.ndarray, np.ndarray]:
        """Gauss quadrature for the gamma posterior of mu (generalised Gauss-Laguerre): nodes and weights."""
        return _gamma_nodes(self.death_posterior_shape, self.death_posterior_rate, self.grid.n_death_nodes)

    # summaries ---------------------------------------------------------------------------------------------------
    def retention(self, years_since_onset: Sequence[float] = tuple(np.arange(0.0, 5.01, 0.25)),
                  prob: float = 0.95) -> pd.DataFrame:
        """S(u) since onset: posterior mean, median and equal-tailed interval."""
        u = np.asarray(years_since_onset, dtype=float)
        ls, lk = self._theta()
        w = self.theta_probability
        s = weibull_survival(u[None, :], ls[:, None], lk[:, None])
        q = np.array([(1 - prob) / 2, 0.5, (1 + prob) / 2])
        quant = np.array([self._theta_quantiles(s[:, j], q) for j in range(u.size)]).reshape(u.size, 3)
        return pd.DataFrame({"years_since_onset": u, "mean": w @ s, "median": quant[:, 1],
                             "lower": quant[:, 0], "upper": quant[:, 2]})

    def parameter_summary(self, prob: float = 0.95) -> pd.DataFrame:
        """Posterior mean, median and interval of the loss scale and shape, median duration of II, pi and mu."""
        ls, lk = self._theta()
        w = self.theta_probability
        q = np.array([(1 - prob) / 2, 0.5, (1 + prob) / 2])
        rows = []
        for name, v in (("loss_scale_years", np.exp(ls)), ("loss_shape", np.exp(lk)),
                        ("median_duration_years", np.exp(ls) * math.log(2.0) ** (1.0 / np.exp(lk)))):
            lo, med, hi = self._theta_quantiles(v, q)
            rows.append((name, float(w @ v), med, lo, hi))
        e = np.linspace(0.0, 1.0, self.grid.n_ever_ii + 1)
        pi_mass = self.cell_probability.sum(axis=0)
        cdf = np.concatenate([[0.0], np.cumsum(pi_mass)])
        lo, med, hi = np.interp(q, cdf, e)
        rows.append(("ever_ii", float(pi_mass @ (0.5 * (e[1:] + e[:-1]))), med, lo, hi))
        a, r = self.death_posterior_shape, self.death_posterior_rate
        lo, med, hi = scipy.stats.gamma.ppf(q, a, scale=1.0 / r)
        rows.append(("death_rate_per_year", a / r, med, lo, hi))
        return pd.DataFrame(rows, columns=["parameter", "mean", "median", "lower", "upper"])

    def _share(self, label: str, theta_part: np.ndarray, death_part: np.ndarray, death_weights: np.ndarray,
               she) -> ShareDistribution:
        w = self.theta_probability
        order = np.argsort(w)
        drop = order[np.cumsum(w[order]) < 1e-12]
        keep = np.setdiff1d(np.arange(w.size), drop)
        mass = self.cell_probability[keep]
        rows = mass.sum(axis=1, keepdims=True)
        cdf = np.concatenate([np.zeros((keep.size, 1)), np.cumsum(mass, axis=1) / rows], axis=1)
        cdf[:, -1] = 1.0
        cdf[cdf < 1e-250] = 0.0
        if she is None:
            she_nodes, she_weights = np.ones(1), np.ones(1)
        elif isinstance(she, BetaMixture):
            she_nodes, she_weights = _beta_mixture_nodes(she, self.grid.n_she_nodes)
        else:
            she_nodes, she_weights = np.array([float(she)]), np.ones(1)
        mult = theta_part[keep][:, None, None] * death_part[None, :, None] * she_nodes[None, None, :]
        wt = ((rows[:, 0] / rows.sum())[:, None, None] * death_weights[None, :, None] * she_weights[None, None, :]
              * np.ones_like(mult))
        row = np.broadcast_to(np.arange(keep.size)[:, None, None], mult.shape)
        return ShareDistribution(label, wt.ravel(), mult.ravel(), row.ravel().copy(), cdf)

    def share_distribution(self, year: float, estimand: str = "composite") -> ShareDistribution:
        """Posterior of the share II (and alive, for ``composite``) ``year`` years after infusion."""
        if estimand not in ("composite", "hypothetical"):
            raise ModelInputError(f"must be 'composite' or 'hypothetical', got {estimand!r}", parameter="estimand")
        year = _non_negative(year, "year")
        ls, lk = self._theta()
        theta = _onset_then_retained([year], ls, lk, self.model.onset, self.grid.quadrature_nodes)[:, 0]
        nodes, weights = self._death_nodes() if estimand == "composite" else (np.zeros(1), np.ones(1))
        return self._share(f"share insulin independent at year {year:g} ({estimand})", theta,
                           np.exp(-nodes * year), weights, None)

    def share_insulin_independent(self, years: Sequence[float] = (1, 2, 3, 4, 5),
                                  prob: float = 0.95) -> pd.DataFrame:
        """Share still II at each year after infusion, under both death strategies: mean, median, interval."""
        rows = []
        for y in years:
            for estimand in ("composite", "hypothetical"):
                dist = self.share_distribution(float(y), estimand)
                lo, med, hi = dist.ppf(np.array([(1 - prob) / 2, 0.5, (1 + prob) / 2]))
                rows.append((float(y), estimand, dist.mean(), float(med), float(lo), float(hi)))
        return pd.DataFrame(rows, columns=["year", "estimand", "mean", "median", "lower", "upper"])

    def persistence(self, endpoint: PersistenceEndpoint = PersistenceEndpoint()) -> ShareDistribution:
        """Posterior of the per-participant probability p_persist of meeting the persistence end point."""
        ls, lk = self._theta()
        nodes, weights = self._death_nodes()
        if endpoint.death_strategy == "hypothetical":
            nodes, weights = np.zeros(1), np.ones(1)
        theta, death = _endpoint_factors(endpoint, self.model.onset, ls, lk, nodes, self.grid.quadrature_nodes)
        return self._share(f"p_persist ({endpoint.anchor} anchor, window {endpoint.window_days} days, "
                           f"{endpoint.persistence_days:g} days, {endpoint.death_strategy})", theta, death, weights,
                           endpoint.she_free)

    def figure_check(self, prob: float = 0.95) -> pd.DataFrame:
        """Each donor-islet figure's published retention against the posterior's (a conflict check)."""
        ls, lk = self._theta()
        w = self.theta_probability
        q = np.array([(1 - prob) / 2, (1 + prob) / 2])
        rows = []
        for f in self.model.retention_figures:
            kept = f.retained_probability(ls, lk, self.grid.quadrature_nodes)
            for j, t in enumerate(f.years_after_origin):
                lo, hi = self._theta_quantiles(kept[:, j], q)
                rows.append((f.source_id, f.end_point, f.time_origin, t, f.retained[j], f.denominator,
                             f.denominator_exact, f.effective_denominator, self.model.transfer_weight,
                             float(w @ kept[:, j]), lo, hi))
        return pd.DataFrame(rows, columns=["source_id", "end_point", "time_origin", "years_after_origin",
                                           "published_retained", "denominator", "denominator_exact",
                                           "effective_denominator", "transfer_weight", "fitted_mean",
                                           "fitted_lower", "fitted_upper"])

    def draw_parameters(self, size: int, rng: np.random.Generator) -> pd.DataFrame:
        """Parameter draws: a (theta, pi) cell by its probability, uniform within the cell; mu from its gamma."""
        size = _count(size, "size", minimum=1)
        flat = self.cell_probability.ravel()
        k = rng.choice(flat.size, size=size, p=flat / flat.sum())
        t, j = np.divmod(k, self.grid.n_ever_ii)
        i_s, i_k = np.divmod(t, self.log_shape.size)
        ds, dk = self._steps()
        ls = self.log_scale[i_s] + ds * (rng.random(size) - 0.5)
        lk = self.log_shape[i_k] + dk * (rng.random(size) - 0.5)
        pi = (j + rng.random(size)) / self.grid.n_ever_ii
        mu = rng.gamma(self.death_posterior_shape, 1.0 / self.death_posterior_rate, size=size)
        return pd.DataFrame({"log_scale": ls, "log_shape": lk, "ever_ii": pi, "death_rate_per_year": mu})

    def check_grid(self, years: Sequence[float] = (1, 2, 3, 4, 5),
                   years_since_onset: Sequence[float] = (1.0, 2.0, 5.0)) -> GridCheck:
        """Refit on :meth:`GridSpec.refined` (twice as fine in every direction, twice the quadrature and pi cells)
        and compare every reported quantile: retention at ``years_since_onset`` and the shares at ``years``."""
        finer = fit_durability(self.model, self.data, self.grid.refined())
        rows = []
        for name, a, b in (("retention", self.retention(years_since_onset), finer.retention(years_since_onset)),
                           ("share", self.share_insulin_independent(years), finer.share_insulin_independent(years))):
            for i in range(len(a)):
                at = (f"{a['years_since_onset'].iloc[i]:g} years since onset" if name == "retention" else
                      f"year {a['year'].iloc[i]:g}, {a['estimand'].iloc[i]}")
                for stat in ("mean", "median", "lower", "upper"):
                    rows.append((name, at, stat, float(a[stat].iloc[i]), float(b[stat].iloc[i])))
        table = pd.DataFrame(rows, columns=["quantity", "at", "statistic", "grid", "refined_grid"])
        table["abs_difference"] = (table["grid"] - table["refined_grid"]).abs()
        return GridCheck(table, float(table["abs_difference"].max()))


def fit_durability(model: DurabilityModel, data: ObservedStates | pd.DataFrame | None = None,
                   grid: GridSpec = GridSpec()) -> DurabilityFit:
    """The grid posterior of the model given optional participant-level data (a long table or
    :class:`ObservedStates`)."""
    if not isinstance(model, DurabilityModel):
        raise ModelInputError("must be a DurabilityModel", parameter="model")
    states = observed_states(data) if isinstance(data, pd.DataFrame) else data
    fixed = None if model.fixed_shape is None else math.log(model.fixed_shape)
    box_scale, box_shape = model.loss_prior.box()
    ls, lk, table = _adaptive_grid(_LogPosterior(model, states, grid), box_scale, box_shape, fixed, grid)
    prob = np.exp(table - scipy.special.logsumexp(table))
    prob[prob < 1e-250] = 0.0  # flush subnormal numbers (slow arithmetic; mass far below any reported digit)
    shape, rate = model.death.posterior(0 if states is None else states.n_deaths,
                                        0.0 if states is None else states.exposure_years)
    return DurabilityFit(model, states, grid, ls, lk, prob, shape, rate)


# ------------------------------------------------------------------------------------------------------------------
# follow-up length: preposterior
# ------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FollowUpPrecision:
    """Expected half-width of the ``prob`` interval of S(``horizon_years``) per (n, follow-up years), with its
    Monte Carlo standard error; ``half_widths`` holds each simulated trial's (simulation, n, T)."""

    table: pd.DataFrame
    half_widths: np.ndarray
    horizon_years: float
    prob: float
    seed: int

    def smallest_follow_up(self, half_width: float) -> pd.DataFrame:
        """Per n, the shortest follow-up (of those simulated) whose expected half-width is <= ``half_width`` (NaN
        when none is); a Monte Carlo estimate: near the boundary, read the MCSE."""
        x = _positive(half_width, "half_width")
        rows = []
        for n, group in self.table.groupby("n_participants", sort=True):
            ok = group[group["expected_half_width"] <= x].sort_values("follow_up_years")
            if ok.empty:
                rows.append((int(n), math.nan, math.nan, math.nan))
            else:
                r = ok.iloc[0]
                rows.append((int(n), float(r["follow_up_years"]), float(r["expected_half_width"]), float(r["mcse"])))
        return pd.DataFrame(rows, columns=["n_participants", "follow_up_years", "expected_half_width", "mcse"])


def follow_up_precision(fit: DurabilityFit, follow_up_years: Sequence[float], n_participants: Sequence[int], *,
                        seed: int, horizon_years: float = 5.0, prob: float = 0.95,
                        visit_interval_days: float = 365.0, n_simulations: int = 200,
                        withdrawal_rate_per_year: float = 0.0,
                        grid: GridSpec = GridSpec(n_fine=31, n_ever_ii=60, max_cell_mass=0.3),
                        ) -> FollowUpPrecision:
    """Preposterior Monte Carlo of the precision of S(``horizon_years``) since onset.

    Each simulation draws true parameters from ``fit`` (the design prior), simulates ``max(n_participants)``
    participants once (the first n form the smaller trials, and every follow-up length cuts the same event times:
    common random numbers), interval-censors them at visits every ``visit_interval_days`` up to T years, and
    computes the posterior of the loss hazard under ``fit.model`` (the discounted donor prior and the year-1
    state) plus ``fit.data`` plus the simulated trial, on its own adaptive grid.
    """
    if not isinstance(fit, DurabilityFit):
        raise ModelInputError("must be a DurabilityFit", parameter="fit")
    t_values = np.unique(np.asarray([_positive(t, "follow_up_years") for t in follow_up_years]))
    n_values = np.unique(np.asarray([_count(n, "n_participants", minimum=1) for n in n_participants]))
    horizon = _positive(horizon_years, "horizon_years")
    interval = _positive(visit_interval_days, "visit_interval_days")
    m = _count(n_simulations, "n_simulations", minimum=2)
    withdrawal = _non_negative(withdrawal_rate_per_year, "withdrawal_rate_per_year")
    if not 0 < prob < 1:
        raise ModelInputError(f"must lie in (0, 1), got {prob}", parameter="prob")
    if np.any(t_values * DAYS_PER_YEAR < interval):
        raise ModelInputError("every follow-up must hold at least one visit", parameter="follow_up_years")
    rng = np.random.default_rng(seed)
    draws = fit.draw_parameters(m, rng)
    ds, dk = fit._steps()
    box_scale = (fit.log_scale[0] - ds, fit.log_scale[-1] + ds)
    box_shape = (fit.log_shape[0] - dk, fit.log_shape[-1] + dk)
    fixed = None if fit.model.fixed_shape is None else math.log(fit.model.fixed_shape)
    q = np.array([(1 - prob) / 2, (1 + prob) / 2])
    half = np.empty((m, n_values.size, t_values.size))
    for sim in range(m):
        d = draws.iloc[sim]
        params = ProcessParameters(math.exp(d["log_scale"]), math.exp(d["log_shape"]), float(d["ever_ii"]),
                                   float(d["death_rate_per_year"]), fit.model.onset)
        events = simulate_event_times(params, int(n_values[-1]), rng)
        wd = rng.exponential(1.0 / withdrawal, events.n) if withdrawal > 0 else None
        for jn, n in enumerate(n_values):
            sub = events.subset(slice(0, int(n)))
            sub_wd = None if wd is None else wd[:int(n)]
            for jt, t in enumerate(t_values):
                visits = np.arange(interval, t * DAYS_PER_YEAR + 1e-9, interval)
                states = observe(sub, visits, sub_wd)
                if fit.data is not None:
                    states = fit.data.concat(states)
                ls, lk, table = _adaptive_grid(_LogPosterior(fit.model, states, grid), box_scale, box_shape,
                                               fixed, grid, start_fine=True)
                w = np.exp(scipy.special.logsumexp(table, axis=1)
                           - scipy.special.logsumexp(table)).reshape(ls.size, lk.size)
                lo, hi = _grid_quantiles(weibull_survival(horizon, ls[:, None], lk[None, :]), w,
                                         (ls[1] - ls[0], lk[1] - lk[0] if lk.size > 1 else 0.0), q)
                half[sim, jn, jt] = 0.5 * (hi - lo)
    mean = half.mean(axis=0)
    mcse = half.std(axis=0, ddof=1) / math.sqrt(m)
    nn, tt = np.meshgrid(n_values, t_values, indexing="ij")
    table = pd.DataFrame({"n_participants": nn.ravel(), "follow_up_years": tt.ravel(),
                          "expected_half_width": mean.ravel(), "mcse": mcse.ravel(), "n_simulations": m})
    return FollowUpPrecision(table, half, horizon, prob, int(seed))
