"""isletbayes.data: the bundled published data and validated loaders for it and for a user's own files.

Files live in ``data/published/`` (documented in ``data/published/README.md``); every loader raises
:class:`InputError` naming file, line and column on the first problem it finds.
"""

from isletbayes.data.errors import InputError
from isletbayes.data.loaders import (
    KINDS,
    PARTICIPANT_EXAMPLE,
    PUBLISHED_DIR,
    check_file,
    detect_kind,
    load_comparators,
    load_continuous,
    load_counts,
    load_cpeptide_means,
    load_durability,
    load_file,
    load_participant_data,
    load_sources,
    published_count,
)
from isletbayes.data.units import MEASURES, PMOL_L_PER_NG_ML

__all__ = [
    "InputError",
    "KINDS",
    "MEASURES",
    "PARTICIPANT_EXAMPLE",
    "PMOL_L_PER_NG_ML",
    "PUBLISHED_DIR",
    "check_file",
    "detect_kind",
    "load_comparators",
    "load_continuous",
    "load_counts",
    "load_cpeptide_means",
    "load_durability",
    "load_file",
    "load_participant_data",
    "load_sources",
    "published_count",
]
