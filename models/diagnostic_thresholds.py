"""The convergence thresholds every MCMC fit is checked against (:func:`isletbayes.models.sampling.check_diagnostics`),
in a module of their own so that reading a result, or a report quoting the thresholds, imports no MCMC package.

R-hat and ESS: Vehtari et al. (2021, "Rank-normalization, folding, and localization: an improved R-hat", Bayesian
Analysis 16:667-718); E-BFMI: Betancourt (2016, arXiv:1604.00695); the ESS-per-draw ratio and tree depth: the
defaults of ``arviz_stats.diagnose`` and CmdStan's ``diagnose``.
"""

RHAT_MAX = 1.01
ESS_MIN_PER_CHAIN = 100
ESS_MIN_RATIO = 0.001  # smallest ESS / number of draws (arviz_stats.diagnose's and CmdStan's default)
EBFMI_MIN = 0.3
TREEDEPTH_SATURATED_MAX = 0  # transitions allowed to hit the maximum tree depth (as diagnose and CmdStan)
