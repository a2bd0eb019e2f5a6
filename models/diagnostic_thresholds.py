"""The convergence thresholds every MCMC fit is checked against (:func:`isletbayes.models.sampling.check_diagnostics`),
in a module of their own so that reading a result, or a report quoting the thresholds, imports no MCMC package.

R-hat and ESS: Vehtari et al. (2021, "Rank-normalization, folding, and localization: an improved R-hat", Bayesian
Analysis 16:667-718); E-BFMI: Betancourt (2016, arXiv:1604.00695); the ESS-per-draw ratio and tree depth: the
defaults of ``arviz_stats.diagnose`` and CmdStan's ``diagnose``. Importance-sampling estimates computed from a fit
(the C-peptide holdout check) are checked against :func:`psis_k_max`.
"""

import math

RHAT_MAX = 1.01
ESS_MIN_PER_CHAIN = 100
ESS_MIN_RATIO = 0.001  # smallest ESS / number of draws (arviz_stats.diagnose's and CmdStan's default)
EBFMI_MIN = 0.3
TREEDEPTH_SATURATED_MAX = 0  # transitions allowed to hit the maximum tree depth (as diagnose and CmdStan)


def psis_k_max(n_draws: int) -> float:
    """The largest Pareto k-hat at which Pareto-smoothed importance sampling with ``n_draws`` draws is reliable:
    min(1 - 1 / log10(S), 0.7) (Vehtari, Simpson, Gelman, Yao & Gabry 2024, "Pareto smoothed importance sampling",
    JMLR 25(72); the threshold ``arviz_stats.loo`` uses)."""
    return min(1.0 - 1.0 / math.log10(n_draws), 0.7) if n_draws > 1 else 0.7
