"""isletbayes: Bayesian re-analysis of the zimislecel (VX-880) phase 1/2 trial and phase 3 planning.

``import isletbayes as ib`` gives the user-facing functions and classes of every layer; each name is loaded on
first use, so importing the package is instant and PyMC is imported only by what needs it.

Data (:mod:`isletbayes.data`)
    ``load_counts``, ``load_cpeptide_means``, ``load_comparators``, ``load_continuous``, ``load_durability``,
    ``load_sources``, ``load_participant_data``, ``check_file``, ``endpoint_count``, ``published_count``,
    ``InputError``
Exact layer (:mod:`isletbayes.models`)
    ``BetaMixture``, ``NormalMixture``, ``prior_panel``, ``prior_data_conflict``, ``prob_difference_greater``,
    ``single_arm_oc``, ``two_sample_decision``, ``two_sample_assurance``, ``interim_design``
PyMC models
    ``map_prior`` (meta-analytic-predictive prior), ``mixture_prior`` (a beta/normal mixture as a prior inside
    your own PyMC model), ``SamplerSettings``, ``fit``, ``check_diagnostics``
Analyses (:mod:`isletbayes.analyses`), each taking its configuration block
    ``MainJobConfig``, ``load_config``, ``load_inputs``, ``run_binary``, ``run_cpeptide``, ``run_design``,
    ``run_durability``, ``run_main_job``
Report
    ``build_report``

Examples
--------
>>> import isletbayes as ib
>>> ib.published_count("insulin_independence")
(10, 12)
>>> post = ib.BetaMixture.single(1, 1).posterior(10, 12)
>>> round(post.mean(), 4)
0.7857
"""

from __future__ import annotations

_DATA = ("load_counts", "load_cpeptide_means", "load_comparators", "load_continuous", "load_durability",
         "load_sources", "load_participant_data", "check_file", "endpoint_count", "published_count", "InputError")
_MIXTURES = ("BetaMixture", "NormalMixture", "prior_data_conflict", "prob_difference_greater")
_OC = ("single_arm_oc", "two_sample_decision", "two_sample_assurance", "interim_design")
_SAMPLING = ("SamplerSettings", "fit", "check_diagnostics")
_CONFIG = ("MainJobConfig", "load_config")

__all__ = [*_DATA, *_MIXTURES, *_OC, "prior_panel", "map_prior", "mixture_prior", *_SAMPLING, *_CONFIG,
           "load_inputs", "run_binary", "run_cpeptide", "run_design", "run_durability", "run_main_job",
           "build_report", "__version__"]


def __getattr__(name: str):
    """Load a public name on first use (PEP 562)."""
    if name == "__version__":
        from importlib import metadata

        try:
            return metadata.version("isletbayes")
        except metadata.PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
            return "0+unknown"
    if name in _DATA:
        from isletbayes import data as module
    elif name in _MIXTURES:
        from isletbayes.models import mixtures as module
    elif name in _OC:
        from isletbayes.models import operating_characteristics as module
    elif name == "prior_panel":
        from isletbayes.models import prior_panel as module
    elif name == "map_prior":
        from isletbayes.models import map_prior as module
    elif name == "mixture_prior":
        from isletbayes.models import mixture_prior as module
    elif name in _SAMPLING:
        from isletbayes.models import sampling as module
    elif name in _CONFIG:
        from isletbayes.analyses import config as module
    elif name == "load_inputs":
        from isletbayes.analyses import inputs as module
    elif name == "run_binary":
        from isletbayes.analyses import binary as module
    elif name == "run_cpeptide":
        from isletbayes.analyses import cpeptide as module
    elif name == "run_design":
        from isletbayes.analyses import design as module
    elif name == "run_durability":
        from isletbayes.analyses import durability as module
    elif name == "run_main_job":
        from isletbayes.analyses import main_job as module
    elif name == "build_report":
        from isletbayes.reports import report as module
    else:
        raise AttributeError(f"module 'isletbayes' has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
