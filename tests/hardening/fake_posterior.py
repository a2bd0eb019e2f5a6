"""A stand-in for the C-peptide re-analysis posterior that ``isletbayes design --simulate`` draws trials from.

The hardening tests exercise the command line, the simulation runner, the output folder and the interrupts, not
the C-peptide model (tested in tests/models/ and tests/analyses/test_cpeptide_analysis.py): fitting it would
cost a minute per run. :func:`install` puts a module in place of ``isletbayes.analyses.cpeptide`` whose
``run_cpeptide`` returns a fit holding three hand-made draws of the population parameters (the scenarios of
tests/analyses/test_simulation_runner.py), so ``design --simulate`` runs its real simulations from them.
"""

from __future__ import annotations

import sys
import types

#: Population parameters (plateau pmol/L, days to half plateau, spreads, noise, link) of three scenarios.
SCENARIOS = (
    dict(plateau_pmol_l=1200.0, t_half_days=60.0, sd_log_plateau=0.8, sd_log_rate=0.3, measurement_sd=0.3,
         alpha=1.5, beta=1.0),
    dict(plateau_pmol_l=500.0, t_half_days=90.0, sd_log_plateau=1.0, sd_log_rate=0.3, measurement_sd=0.4,
         alpha=0.0, beta=1.5),
    dict(plateau_pmol_l=900.0, t_half_days=45.0, sd_log_plateau=0.6, sd_log_rate=0.2, measurement_sd=0.3,
         alpha=1.0, beta=0.5),
)


def draws():
    from isletbayes.models.cpeptide_trajectory import PopulationParameters

    return [PopulationParameters(**s) for s in SCENARIOS]


class HandMadeFit:
    """What ``design`` reads of a C-peptide fit: parameter draws and the fit's diagnostics."""

    calls = 0

    def __init__(self):
        from isletbayes.analyses.results import FitCheck

        self.diagnostics = FitCheck(fit="hand-made posterior draws (test)", ok=True)

    def parameter_draws(self, n: int, seed: int):
        return draws()


def run_cpeptide(config, *, sampler, seed, inputs):
    HandMadeFit.calls += 1
    return HandMadeFit()


def module() -> types.ModuleType:
    fake = types.ModuleType("isletbayes.analyses.cpeptide")
    fake.run_cpeptide = run_cpeptide
    fake.HandMadeFit = HandMadeFit
    return fake


def install() -> None:
    """For a subprocess: every later ``from isletbayes.analyses.cpeptide import run_cpeptide`` gets the stand-in."""
    sys.modules["isletbayes.analyses.cpeptide"] = module()
