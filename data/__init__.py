"""isletbayes.data: the bundled published data and validated loaders for it and for a user's own files.

Files live in ``data/published/`` (documented in ``data/published/README.md``); every loader raises
:class:`InputError` naming file, line and column on the first problem it finds. Hard limits and plausibility
bounds on every value are defined once, in :mod:`isletbayes.data.units` (``MAX_DAY``, ``MAX_COUNT``,
``PLAUSIBLE``); a deliberate outlier is kept with ``allow_outliers=True``. :func:`endpoint_count` is the one
(r, n) lookup, participant-level data overriding the published count where they hold the end point.
"""

from isletbayes.data.errors import ImplausibleValueWarning, InputError

_LOADERS = ("KINDS", "PARTICIPANT_EXAMPLE", "PUBLISHED_DIR", "ValidatedTable", "check_file", "detect_kind",
            "load_comparators", "load_continuous", "load_counts", "load_cpeptide_means", "load_durability",
            "load_file", "load_participant_data", "load_reference_values", "load_sources", "published_count",
            "validate_table")
_UNITS = ("MAX_COUNT", "MAX_DAY", "MEASURES", "PLAUSIBLE", "PMOL_L_PER_NG_ML")
_ENDPOINTS = ("PARTICIPANT_ENDPOINTS", "endpoint_count")


def __getattr__(name: str):
    """The loaders (and pandas) are imported on first use, so that importing the error types is instant."""
    if name in _LOADERS:
        from isletbayes.data import loaders as module
    elif name in _UNITS:
        from isletbayes.data import units as module
    elif name in _ENDPOINTS:
        from isletbayes.data import endpoints as module
    else:
        raise AttributeError(f"module 'isletbayes.data' has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value
    return value


__all__ = [
    "ImplausibleValueWarning",
    "InputError",
    "KINDS",
    "MAX_COUNT",
    "MAX_DAY",
    "MEASURES",
    "PARTICIPANT_ENDPOINTS",
    "PLAUSIBLE",
    "PARTICIPANT_EXAMPLE",
    "PMOL_L_PER_NG_ML",
    "PUBLISHED_DIR",
    "ValidatedTable",
    "check_file",
    "detect_kind",
    "endpoint_count",
    "load_comparators",
    "load_continuous",
    "load_counts",
    "load_cpeptide_means",
    "load_durability",
    "load_file",
    "load_participant_data",
    "load_reference_values",
    "load_sources",
    "published_count",
    "validate_table",
]
