"""Graft function -> insulin independence: a logistic link on day-365 C-peptide (DESIGN.md, model 4).

For participant i with graft function C_i(365) (pmol/L, the latent trajectory of :mod:`isletbayes.models.cpeptide_trajectory`
at day 365, measurement error excluded),

    logit P(II_i) = alpha + beta * (log C_i(365) - log 1000),

so ``alpha`` is the log-odds of insulin independence for a participant whose day-365 C-peptide is 1000 pmol/L
and ``beta`` is the change in log-odds per e-fold change of C-peptide (``beta * log 2`` per doubling).

* With participant-level data each observed II_i ~ Bernoulli(P(II_i)).
* With the published count only (10 of 12), the count given the n participants' graft functions is a sum of
  independent, non-identical Bernoulli variables: the **Poisson-binomial** distribution, whose pmf
  :func:`poisson_binomial_pmf` computes exactly by the recursion (Chen & Liu 1997, Biometrika 84:875; also
  Hong 2013, Comput. Stat. Data Anal. 59:41)

      P_0 = (1, 0, ..., 0),   P_i(r) = P_{i-1}(r) (1 - p_i) + P_{i-1}(r - 1) p_i.

  Averaged over participants drawn independently from the population it is Binomial(n, p_bar), p_bar the
  population average of P(II_i): the cohort-means model uses that form (see :mod:`isletbayes.models.cpeptide_trajectory`;
  a test checks the identity by simulation). With aggregates only, the link is carried mostly by its prior: the
  count informs one combination of alpha and beta, and the report shows the posterior under several priors on
  beta side by side.

Default priors (documented, overridable through :class:`LinkPriors`): alpha ~ Normal(0, 1.5) (a 50% rate at
1000 pmol/L, anything from about 5% to 95% plausible), beta ~ Normal(1, 1) (a positive link expected, a null or
steep link not excluded). :data:`ALTERNATIVE_LINK_PRIORS` are the priors the sensitivity analysis compares.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

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
    """Exact pmf of the number of successes among independent Bernoulli(p_i), by the recursion above.

    ``p`` has the participants on its last axis; the result has length n + 1 on that axis.
    """
    p = np.asarray(p, dtype=float)
    n = p.shape[-1]
    pmf = np.zeros(p.shape[:-1] + (n + 1,))
    pmf[..., 0] = 1.0
    for i in range(n):
        p_i = p[..., i : i + 1]
        shifted = np.concatenate([np.zeros(p.shape[:-1] + (1,)), pmf[..., :-1]], axis=-1)
        pmf = pmf * (1.0 - p_i) + shifted * p_i
    return pmf
