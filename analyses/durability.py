r"""Durability of insulin independence over the 5-year follow-up: a multi-state model, not a table.

Zimislecel has one year of published follow-up. What share of a phase 3 cohort is still insulin independent at
years 2-5 depends on how fast insulin independence is lost after its onset, which no zimislecel data inform. This
analysis fits the multi-state model of :mod:`isletbayes.models.durability_multistate` (onset of insulin
independence after the infusion, loss of it since onset with a Weibull hazard, death from any state):

* the loss hazard's prior is built from the donor-islet durability figures (CITR 2008, Shapiro 2006, Ryan 2005;
  Tiwari et al. optionally), each at its own time origin, approximate denominators discounted, and the whole
  transferred to a single-infusion stem-cell product at the power-prior weight ``durability.transfer_weight``;
* the year-1 state is the phase 1/2 posterior (day-365 insulin independence under a uniform prior), deaths the
  phase 1/2 count over ``durability.death_exposure_years``;
* the posterior is computed on a grid (no MCMC, no Monte Carlo in the shares).

It reports the share still insulin independent (and alive) at years 1-5 with 95% intervals, the retention curve
since onset, the donor figures against the fit, and how long a phase 3 of ``durability.follow_up_participants``
must follow them to estimate 5-year retention to +/- ``durability.follow_up_half_width`` (preposterior Monte
Carlo). The numbers beyond year 1 are borrowed: the report labels them so.

Entry points: :func:`durability_model` (also used by the design's persistence estimand) and
:func:`run_durability`.
"""

from __future__ import annotations

from typing import ClassVar

import pandas as pd
from pydantic import Field

from isletbayes.analyses.config import DurabilityConfig
from isletbayes.analyses.provenance import provenance
from isletbayes.analyses.results import AnalysisResult, Frame
from isletbayes.models import durability_multistate as dm
from isletbayes.models.mixtures import BetaMixture

LABEL = ("BORROWED, NOT OBSERVED: loss of insulin independence after year 1 is learned from deceased-donor islet "
         "studies, discounted; no zimislecel data beyond one year inform it.")


def durability_model(config: DurabilityConfig, durability: pd.DataFrame, year1: BetaMixture) -> dm.DurabilityModel:
    """The multi-state model: donor retention figures, phase 1/2 deaths and year-1 state, onset window."""
    figures = dm.donor_retention_figures(durability, include_tiwari=config.include_tiwari,
                                         overdispersion=config.overdispersion)
    return dm.DurabilityModel(retention_figures=tuple(figures),
                              death=dm.DeathRate(deaths=config.deaths, exposure_years=config.death_exposure_years),
                              year1=year1, transfer_weight=config.transfer_weight,
                              onset=dm.OnsetTime(config.onset_start_day, config.onset_end_day))


def conventions(config: DurabilityConfig) -> list[str]:
    """What the durability model assumes rather than observes, in words."""
    return [
        f"Donor-islet attrition is transferred at power-prior weight {config.transfer_weight:g} (a convention).",
        f"Registry figures with approximate denominators are discounted with intra-class correlation "
        f"{config.overdispersion:g} (a convention).",
        f"Onset of insulin independence is uniform between days {config.onset_start_day:g} and "
        f"{config.onset_end_day:g} (a convention: time to insulin independence is not published).",
        f"Deaths: {config.deaths} among the phase 1/2 participants over {config.death_exposure_years:g} "
        "participant-years (each of 14 dosed followed at least 12 months: a lower bound on the exposure); death is "
        "all-cause and independent of insulin independence.",
        "Loss of insulin independence is permanent, with a Weibull hazard since onset.",
        "Shapiro 2006 and Tiwari et al. count from the 1-year assessment: the time since onset there is taken as "
        "uniform on 0.5-1 year (a convention).",
    ]


class DurabilityResult(AnalysisResult):
    """Result of :func:`run_durability`."""

    JSON_FILE: ClassVar[str] = "durability.json"
    ANALYSIS: ClassVar[str] = "durability"

    label: str
    year1: str
    shares: Frame  # index year: composite_median/low/high (death = failure), hypothetical_median/low/high
    retention: Frame  # index years since onset: median, lower, upper
    parameters: Frame
    figure_check: Frame
    follow_up: Frame  # index follow-up years: expected half-width of 5-year retention, MCSE
    follow_up_answer: float | None = None  # shortest follow-up reaching the target half-width (None: none does)
    conventions: list[str] = Field(default_factory=list)
    settings: dict = Field(default_factory=dict)


def run_durability(config: DurabilityConfig, *, seed: int, phase12: tuple[int, int],
                   durability: pd.DataFrame) -> DurabilityResult:
    """Fit the multi-state model and summarise it (see the module docstring).

    ``phase12``: the day-365 insulin-independence count (r, n), whose uniform-prior posterior is the year-1
    state; ``durability``: the validated durability table (:func:`isletbayes.data.load_durability`)."""
    r, n = phase12
    year1 = BetaMixture.single(1.0 + r, 1.0 + n - r)
    fit = dm.fit_durability(durability_model(config, durability, year1))
    shares = fit.share_insulin_independent(years=(1, 2, 3, 4, 5))
    retention = fit.retention(years_since_onset=(0.5, 1.0, 2.0, 3.0, 4.0, 5.0))
    precision = dm.follow_up_precision(fit, config.follow_up_years, [config.follow_up_participants], seed=seed,
                                       n_simulations=config.follow_up_simulations)
    follow = precision.table.set_index("follow_up_years")[["expected_half_width", "mcse", "n_simulations"]]
    answer = precision.smallest_follow_up(config.follow_up_half_width)["follow_up_years"].iloc[0]
    settings = {"config": config.model_dump(mode="json"), "phase12": [r, n], "seed": seed}
    return DurabilityResult(
        label=LABEL, year1=f"Beta({1 + r:g}, {1 + n - r:g}): {r}/{n} insulin independent at day 365, uniform prior",
        shares=shares, retention=retention, parameters=fit.parameter_summary(), figure_check=fit.figure_check(),
        follow_up=follow, follow_up_answer=None if pd.isna(answer) else float(answer),
        conventions=conventions(config), settings=settings, provenance=provenance(**settings))
