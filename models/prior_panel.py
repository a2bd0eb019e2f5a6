r"""The prior panel: the priors under which a binary end point's rate is analysed side by side.

Every member is a beta mixture :math:`\pi(\theta) = \sum_k w_k \mathrm{Beta}(\theta; a_k, b_k)`
(:class:`~isletbayes.models.mixtures.BetaMixture`), so each posterior is exact.

* ``uniform`` Beta(1, 1) and ``jeffreys`` Beta(1/2, 1/2): reference priors.
* ``sceptical``: a beta prior with mean :math:`p_c`, the pooled comparator (donor-islet) rate, and effective sample
  size :data:`SCEPTICAL_ESS` = 10: a sceptic who expects zimislecel to do no better than donor islets, holding that
  belief with the weight of about as many participants as the trial itself, so the data can move it.
* ``enthusiastic``: the same ESS, centred halfway between :math:`p_c` and 1, mean :math:`p_c + (1 - p_c)/2`: an
  enthusiast who expects the cell product to close half the gap donor islets leave.
  (Both are conventions of this toolkit; Spiegelhalter, Abrams and Myles 2004, ch. 5, for the idea.)
* ``map``: the meta-analytic-predictive prior from the comparator studies, approximated by a beta mixture
  (:mod:`isletbayes.models.map_prior`); ``robust_map``: the same with a weakly-informative component of weight
  :math:`w_R` added (Schmidli et al. 2014, Biometrics 70:1023-1032; RBesT's ``robustify``).

:func:`prior_panel` is a pure function of those ingredients: no data are read and nothing is fitted here.
"""

from __future__ import annotations

from typing import Sequence

from isletbayes.models.mixtures import BetaMixture
from isletbayes.models.validation import ModelInputError

PANEL_MEMBERS = ("uniform", "jeffreys", "sceptical", "enthusiastic", "map", "robust_map")
NEEDS_COMPARATOR = ("sceptical", "enthusiastic", "map", "robust_map")
REFERENCE_PRIORS = ("uniform", "jeffreys")
SCEPTICAL_ESS = 10.0
ENTHUSIASTIC_ESS = 10.0
ROBUST_MEAN = 0.5
PRIOR_LABELS = {
    "uniform": "Uniform Beta(1, 1)",
    "jeffreys": "Jeffreys Beta(1/2, 1/2)",
    "sceptical": f"Sceptical: mean = comparator rate, ESS {SCEPTICAL_ESS:g} (convention)",
    "enthusiastic": f"Enthusiastic: mean halfway from comparator rate to 1, ESS {ENTHUSIASTIC_ESS:g} (convention)",
    "map": "MAP prior from comparator studies",
    "robust_map": "Robust MAP (MAP + weight x Beta(1, 1))",
}


def prior_panel(members: Sequence[str], *, comparator_rate: float | None = None,
                map_mixture: BetaMixture | None = None,
                robust_map_mixture: BetaMixture | None = None) -> dict[str, BetaMixture]:
    """The panel's members as beta mixtures, in the order asked for.

    Members that need a comparator (sceptical, enthusiastic) are left out when ``comparator_rate`` is None,
    and ``map``/``robust_map`` when their mixture is None: the caller says why in its notes.
    """
    unknown = [m for m in members if m not in PANEL_MEMBERS]
    if unknown:
        raise ModelInputError(f"unknown panel member(s) {unknown}; choose from {', '.join(PANEL_MEMBERS)}",
                              parameter="members")
    if comparator_rate is not None and not 0.0 < comparator_rate < 1.0:
        raise ModelInputError(f"must lie strictly between 0 and 1, got {comparator_rate!r}",
                              parameter="comparator_rate")
    out: dict[str, BetaMixture] = {}
    for name in dict.fromkeys(members):
        if name == "uniform":
            out[name] = BetaMixture.single(1.0, 1.0)
        elif name == "jeffreys":
            out[name] = BetaMixture.single(0.5, 0.5)
        elif name == "sceptical" and comparator_rate is not None:
            out[name] = BetaMixture.from_mean_n(comparator_rate, SCEPTICAL_ESS)
        elif name == "enthusiastic" and comparator_rate is not None:
            out[name] = BetaMixture.from_mean_n(comparator_rate + (1.0 - comparator_rate) / 2.0, ENTHUSIASTIC_ESS)
        elif name == "map" and map_mixture is not None:
            out[name] = map_mixture
        elif name == "robust_map" and robust_map_mixture is not None:
            out[name] = robust_map_mixture
    return out
