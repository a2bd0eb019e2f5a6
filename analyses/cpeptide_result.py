"""The result of the C-peptide analysis (:func:`isletbayes.analyses.cpeptide.run_cpeptide`), kept apart from the
analysis so that reading one (the main job's cache, the report) imports neither PyMC nor ArviZ.

:class:`CpeptideResult` holds the trajectory model's population parameters, the contraction of each parameter
from prior to posterior (the rule in :data:`CONTRACTION_RULE`), the population trajectory, the link from day-365
C-peptide to insulin independence, the posterior predictive check, the sensitivity refits, the model check and the
leave-the-last-visit-out check, with every fit's diagnostics; its posterior draws (an ArviZ DataTree) are read only
when asked for. The models and their references are in :mod:`isletbayes.analyses.cpeptide`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from isletbayes.analyses.results import AnalysisResult, DataTreeField, FitCheck, Frame, ResultModel

#: the kept simulation-based calibration of the C-peptide models (``python -m isletbayes.analyses.calibration``);
#: every C-peptide result carries its summary, so the file is part of the section's cache key
KEPT_CALIBRATION_PATH = Path(__file__).resolve().parent / "results" / "sbc_cpeptide.json"

CONTRACTION_RULE = ("posterior sd / prior sd (log scale for positive parameters): < 0.5 informed by the data, "
                    "0.5-0.9 partly informed, >= 0.9 prior only")


class SensitivityFit(ResultModel):
    """One refit under an alternative prior or rise shape, beside the main fit."""

    group: Literal["glucocorticoid", "link", "spread", "shape"]
    label: str
    parameters: Frame
    diagnostics: FitCheck
    ppc: Frame | None = None
    early_rise: dict[str, Any] | None = None


class ModelCheck(ResultModel):
    """The report-facing model check (see :func:`isletbayes.analyses.cpeptide.model_check`)."""

    fit: str
    misfit_flagged: bool
    ppc_outside_90: list[float]
    early_rise: dict[str, Any] | None = None
    measurement_sd: dict[str, float]
    measurement_sd_prior: dict[str, Any]
    rise_shape: dict[str, float] | None = None
    shape_comparison: list[dict[str, Any]] = Field(default_factory=list)
    statement: str


class HoldoutCheck(ResultModel):
    """Leave the last visit out: from the posterior without it (the earlier visits and every other aggregate),
    predict the last visit's mean. ``method``: how that posterior was obtained, "psis" (the main fit reweighted by
    Pareto-smoothed importance sampling, reliable at ``pareto_k``) or "refit" (an exact refit, with its
    ``diagnostics``; what results saved before the reweighting existed hold)."""

    held_out_day: float
    observed: float
    predicted_median: float
    predicted_q05: float
    predicted_q95: float
    p_rep_below_observed: float
    outside_90: bool
    method: Literal["psis", "refit"] = "refit"
    pareto_k: float | None = None
    diagnostics: FitCheck | None = None
    statement: str


class CpeptideResult(AnalysisResult):
    """Everything the C-peptide analysis reports; draws in ``idata`` (cpeptide_posterior.nc)."""

    JSON_FILE: ClassVar[str] = "cpeptide_summary.json"
    NETCDF: ClassVar[dict[str, str]] = {"idata": "cpeptide_posterior.nc"}
    ANALYSIS: ClassVar[str] = "cpeptide"

    mode: Literal["graft_function", "cohort_means", "participant"]
    model_description: str
    parameters: Frame
    contraction: Frame
    contraction_rule: str = CONTRACTION_RULE
    trajectory: Frame
    link_curve: Frame | None = None  # P(II at day 365 | C-peptide): index cpeptide_pmol_l; q025, median, q975
    ppc: Frame
    diagnostics: FitCheck
    sensitivity: list[SensitivityFit] = Field(default_factory=list)
    psense: Frame | None = None
    model_check: ModelCheck
    holdout: HoldoutCheck | None = None
    calibration: Frame | None = None  # kept SBC per model (analyses/results/sbc_cpeptide.json)
    notes: list[str] = Field(default_factory=list)
    inputs: dict[str, Any] = Field(default_factory=dict)
    settings: dict[str, Any] = Field(default_factory=dict)
    idata: DataTreeField = None

    @property
    def ok(self) -> bool:
        return self.diagnostics_ok

    def fit_checks(self) -> list[FitCheck]:
        """The main fit, every sensitivity refit (a refit identical to the main fit is listed once) and the holdout
        refit when one ran."""
        # copies: the stored checks are the result's, and calling this twice must not list a fit twice in ``also``
        checks = [self.diagnostics.model_copy(deep=True)]
        for row in self.sensitivity:
            same = next((c for c in checks if _same_numbers(c, row.diagnostics)), None)
            if same is None:
                checks.append(row.diagnostics.model_copy(deep=True))
            else:
                same.also.append(row.diagnostics.fit)
        if self.holdout is not None and self.holdout.diagnostics is not None:
            checks.append(self.holdout.diagnostics.model_copy(deep=True))
        return checks

    def sensitivity_group(self, group: str) -> list[SensitivityFit]:
        return [row for row in self.sensitivity if row.group == group]

    def parameter_draws(self, n: int, seed: int):
        """``n`` posterior draws of the population parameters (what phase 3 simulations draw from)."""
        from isletbayes.models import cpeptide_trajectory as cpm

        return cpm.posterior_parameter_draws(self.idata, n, np.random.default_rng(seed),
                                             decline_start_day=float(self.settings.get("decline_start_day", 365.0)))


def _same_numbers(a: FitCheck, b: FitCheck) -> bool:
    keys = ("max_rhat", "min_ess_bulk", "min_ess_tail", "divergences", "min_ebfmi", "n_chains", "n_draws")
    return all(getattr(a, k) == getattr(b, k) for k in keys)
