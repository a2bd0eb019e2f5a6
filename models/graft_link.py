"""Graft function -> insulin independence: a logistic link on day-365 C-peptide (DESIGN.md, model 4).

For participant i with graft function C_i(365) (pmol/L, the latent trajectory of
:mod:`isletbayes.models.cpeptide_trajectory` at day 365, measurement error excluded),

    logit P(II_i) = alpha + beta * (log C_i(365) - log 1000),

so ``alpha`` is the log-odds of insulin independence for a participant whose day-365 C-peptide is 1000 pmol/L
and ``beta`` is the change in log-odds per e-fold change of C-peptide (``beta * log 2`` per doubling).

* With participant-level data each observed II_i ~ Bernoulli(P(II_i)).
* With the published count only (10 of 12), the count given the n participants' graft functions is a sum of
  independent, non-identical Bernoulli variables: the **Poisson-binomial** distribution (Chen & Liu 1997,
  Biometrika 84:875; Hong 2013, Comput. Stat. Data Anal. 59:41), computed by :func:`poisson_binomial_pmf`
  through ``scipy.stats.poisson_binom``. Averaged over participants drawn independently from the population it
  is Binomial(n, p_bar), p_bar the population average of P(II_i): the cohort-means model uses that form (see
  :mod:`isletbayes.models.cpeptide_trajectory`; a test checks the identity by simulation). With aggregates
  only, the link is carried mostly by its prior: the count informs one combination of alpha and beta, and the
  report shows the posterior under several priors on beta side by side.

The insulin-need threshold (used by :mod:`isletbayes.models.graft_function`)
----------------------------------------------------------------------------
A logistic or probit link is a latent-threshold model (McCullagh & Nelder 1989, Generalized Linear Models,
section 4.3.1). Written with the threshold on the C-peptide scale it says what the link means: participant i
needs graft function N_i (pmol/L of stimulated C-peptide) to cover their whole insulin requirement,

    log N_i ~ Normal(log N, s_N),    phi_i = C_i(365) / N_i    (the share of the requirement the graft covers),

is insulin independent when phi_i >= 1, and otherwise needs exogenous insulin D_i = D_i0 (1 - phi_i), so the
reported dose cut 1 - D_i / D_i0 is phi_i itself. Given C_i(365) this is the probit link
P(II_i) = Phi((log C_i(365) - log N) / s_N). Assumed: baseline exogenous insulin is the whole requirement (C-peptide
was undetectable in all participants at baseline) and graft insulin replaces exogenous insulin one for one; the
day-to-day variation of the titrated dose is folded into s_N.

Intercurrent event: prohibited glucocorticoid exposure (ICH E9(R1), section A.3.2)
-----------------------------------------------------------------------------------
Both participants who were not insulin independent at day 365 had protocol-prohibited high-dose glucocorticoid
exposure (Reichman 2025 as quoted by seed 002). :class:`IntercurrentStrategy` selects what the likelihood does
with a participant so exposed:

* ``TREATMENT_POLICY``: the outcome is counted as observed (insulin independent or not, and the dose cut as
  phi_i). Assumes the exposure is part of what the treatment policy yields: the estimand is the outcome whatever
  else happened, and the graft-function parameters describe graft function as it was observed.
* ``HYPOTHETICAL``: the estimand is the outcome had no prohibited glucocorticoid been given. The exposed
  participant's insulin independence is not informative of that outcome and is left out. Their dose cut still
  informs it as a lower bound, phi_i >= (observed cut), because glucocorticoids raise the insulin requirement
  (steroid-induced insulin resistance) and can only lower, never raise, the share a given graft covers. Assumes
  the exposure happened for reasons unrelated to graft function (the events reported were sinus surgery and
  infection), so the unexposed participants are a fair sample of the population.

Default priors (documented, overridable through :class:`LinkPriors`): alpha ~ Normal(0, 1.5) (a 50% rate at
1000 pmol/L, anything from about 5% to 95% plausible), beta ~ Normal(1, 1) (a positive link expected, a null or
steep link not excluded). :data:`ALTERNATIVE_LINK_PRIORS` are the priors the sensitivity analysis compares.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import Enum

import numpy as np
from scipy import stats

from isletbayes.models.validation import ModelInputError

REFERENCE_CPEPTIDE_PMOL_L = 1000.0
INSULIN_INDEPENDENCE_DAY = 365


@dataclass(frozen=True)
class LinkPriors:
    """Normal priors on the link's intercept (log-odds at 1000 pmol/L) and slope (per e-fold of C-peptide)."""

    alpha_mean: float = 0.0
    alpha_sd: float = 1.5
    beta_mean: float = 1.0
    beta_sd: float = 1.0

    def __post_init__(self) -> None:
        for name in ("alpha_mean", "alpha_sd", "beta_mean", "beta_sd"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ModelInputError(f"must be a finite number, got {value!r}", parameter=name)
        for name in ("alpha_sd", "beta_sd"):
            if getattr(self, name) <= 0:
                raise ModelInputError(f"must be > 0, got {getattr(self, name)!r}", parameter=name)

    def as_dict(self) -> dict:
        return asdict(self)

    def label(self) -> str:
        return f"beta ~ Normal({self.beta_mean:g}, {self.beta_sd:g})"


#: Priors on the slope compared side by side in the sensitivity analysis (the first is the default).
ALTERNATIVE_LINK_PRIORS: dict[str, LinkPriors] = {
    "default: beta ~ N(1, 1)": LinkPriors(),
    "agnostic: beta ~ N(0, 1)": LinkPriors(beta_mean=0.0, beta_sd=1.0),
    "strong link: beta ~ N(2, 0.5)": LinkPriors(beta_mean=2.0, beta_sd=0.5),
}


def link_logit(alpha, beta, log_cpeptide_365):
    """The link's log-odds; works on numpy arrays and on PyTensor tensors alike."""
    return alpha + beta * (log_cpeptide_365 - math.log(REFERENCE_CPEPTIDE_PMOL_L))


def poisson_binomial_pmf(p: np.ndarray) -> np.ndarray:
    """Exact pmf of the number of successes among independent Bernoulli(p_i) (``scipy.stats.poisson_binom``).

    ``p`` has the participants on its last axis; the result has length n + 1 on that axis.
    """
    p = np.asarray(p, dtype=float)
    n = p.shape[-1]
    k = np.arange(n + 1).reshape((n + 1,) + (1,) * (p.ndim - 1))
    return np.moveaxis(stats.poisson_binom.pmf(k, p), 0, -1)


class IntercurrentStrategy(str, Enum):
    """How a participant with prohibited glucocorticoid exposure enters the link likelihood (module docstring)."""

    HYPOTHETICAL = "hypothetical"
    TREATMENT_POLICY = "treatment_policy"

    @property
    def assumption(self) -> str:
        if self is IntercurrentStrategy.HYPOTHETICAL:
            return ("hypothetical strategy: the outcome had no prohibited glucocorticoid been given; an exposed "
                    "participant's insulin independence is left out, and their dose cut enters only as a lower bound "
                    "on the share of the insulin requirement their graft covers (glucocorticoids raise the "
                    "requirement); assumes the exposure was unrelated to graft function")
        return ("treatment-policy strategy: every outcome is counted as observed, exposed or not; the graft-function "
                "parameters then describe graft function as it was observed, glucocorticoid exposure included")


def insulin_outcome_loglik(log_share_mean: np.ndarray, log_share_sd: float, weights: np.ndarray,
                           independent: np.ndarray, dose_cut: np.ndarray, exposed: np.ndarray,
                           strategy: IntercurrentStrategy | str) -> np.ndarray:
    """Per-participant log-likelihood of the insulin outcomes under the need threshold, for a population whose
    log share covered, log phi, is a mixture of Normal(log_share_mean[j], log_share_sd) with weights ``weights[j]``.

    Outcomes per participant: ``independent`` (0/1), ``dose_cut`` (fraction of the baseline dose cut, used when not
    independent) and ``exposed`` (prohibited glucocorticoid exposure). Not independent with cut c contributes the
    density of log phi at log c; independent contributes P(log phi >= 0); exposed under the hypothetical strategy
    contributes P(log phi >= log min(c, 1)). The PyMC model of :mod:`isletbayes.models.graft_function` computes
    the same terms; this numpy version is the reference it is tested against.
    """
    strategy = IntercurrentStrategy(strategy)
    m = np.asarray(log_share_mean, dtype=float)[None, :]
    w = np.asarray(weights, dtype=float)[None, :]
    independent = np.asarray(independent, dtype=bool)
    cut = np.asarray(dose_cut, dtype=float)
    exposed = np.asarray(exposed, dtype=bool)
    bound = np.where(independent, 0.0, np.log(np.where(independent, 1.0, cut)))
    log_c = np.log(np.where(independent, 1.0, cut))[:, None]
    density = np.log(np.sum(w * stats.norm.pdf(log_c, m, log_share_sd), axis=1))
    above = np.log(np.sum(w * stats.norm.sf(bound[:, None], m, log_share_sd), axis=1))
    if strategy is IntercurrentStrategy.HYPOTHETICAL:
        return np.where(exposed | independent, above, density)
    return np.where(independent, above, density)
