"""The one (r, n) lookup: an end point's count from participant-level data where they hold it, else the
default row of the counts table.

For a binary end point :math:`E` at day :math:`d`,

.. math::

    (r, n) = \\Bigl(\\sum_{i \\in P_d} \\mathbb{1}[\\text{rule}_E(y_{i,d})],\\; |P_d|\\Bigr)

where :math:`P_d` is the set of participants with a value of :math:`E`'s measure at day :math:`d` in the
participant file and :math:`y_{i,d}` that value (canonical unit); when :math:`P_d` is empty (or no participant
file is given) the count is the one row of the counts table with ``used_by_default``, ``endpoint = E`` and
``timepoint_day = d``.

End points derivable from the participant format (:data:`PARTICIPANT_ENDPOINTS`), each a rule on one visit:

* ``insulin_independence``: ``insulin_independent`` = 1 at day d;
* ``off_insulin``: ``off_insulin`` = 1 at day d;
* ``hba1c_below_7``: ``hba1c`` < 7% at day d (compared at one decimal, the precision HbA1c is reported to, so
  53 mmol/mol = 6.9995% counts as 7.0%, not below);
* ``tir_above_70``: ``tir_70_180`` > 70% at day d.

Not derived, because the participant format does not determine them without a further assumption:
``composite_primary`` and ``she_free`` (severe hypoglycaemia free over days 90-365 needs events counted over
exactly that window, and ``she_count`` counts events since the previous visit, whose date the format does not
fix; the composite also needs HbA1c at one or more visits of days 180-365), ``c_peptide_positive`` (the
published count is detection at any visit after infusion, and detection depends on how each site recorded
values near its limit of detection), ``insulin_reduced`` (the published "marked reduction" has no cut), and
the safety end points (adverse events are not in the participant format). For these the counts table is
always used.

Participant-level counts are over every participant in the file (a file is one analysis population): filter
the frame first to count one cohort.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from isletbayes.data.errors import InputError

__all__ = ["PARTICIPANT_ENDPOINTS", "ParticipantEndpoint", "default_count", "default_row", "endpoint_count"]


@dataclass(frozen=True)
class ParticipantEndpoint:
    """How a binary end point is read from one visit of the participant format."""

    measure: str
    threshold: float
    compare: Callable[[np.ndarray, float], np.ndarray]
    rule: str  # the rule in words, for reports
    decimals: int | None = None  # compare at this reporting precision (canonical unit)

    def responders(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=float)
        if self.decimals is not None:
            values = np.round(values, self.decimals)
        return self.compare(values, self.threshold)


#: The end points :func:`endpoint_count` derives from participant-level data (module docstring).
PARTICIPANT_ENDPOINTS: dict[str, ParticipantEndpoint] = {
    "insulin_independence": ParticipantEndpoint("insulin_independent", 1.0, operator.eq,
                                                "insulin_independent = 1 at the visit"),
    "off_insulin": ParticipantEndpoint("off_insulin", 1.0, operator.eq, "off_insulin = 1 at the visit"),
    # HbA1c is compared at its reporting precision (0.1%): 53 mmol/mol converts to 6.9995% and is 7.0% as
    # laboratories report it, so not below 7%.
    "hba1c_below_7": ParticipantEndpoint("hba1c", 7.0, operator.lt, "HbA1c below 7.0% at the visit", decimals=1),
    "tir_above_70": ParticipantEndpoint("tir_70_180", 70.0, operator.gt,
                                        "more than 70% of CGM time in 70-180 mg/dL at the visit"),
}


def default_row(counts: pd.DataFrame, endpoint: str, *, cohort: str | None = None,
                day: int | None = None) -> pd.Series:
    """The one ``used_by_default`` row of a counts table for an end point (``cohort``/``day`` narrow the search;
    None = any). InputError naming the counts file and the end point when not exactly one row matches, listing
    the default rows there are."""
    used = counts[counts["used_by_default"]]
    rows = used[used["endpoint"] == endpoint]
    if cohort is not None:
        rows = rows[rows["cohort"] == cohort]
    if day is not None:
        rows = rows[rows["timepoint_day"] == day]
    if len(rows) == 1:
        return rows.iloc[0]
    where = "".join([f" in cohort '{cohort}'" if cohort is not None else "",
                     f" at day {day}" if day is not None else ""])
    what = "no default row" if len(rows) == 0 else f"{len(rows)} default rows"
    same = used[used["endpoint"] == endpoint]
    if len(same):
        listed = "; ".join(f"{c}, day {'' if pd.isna(d) else int(d)}"
                           for c, d in same[["cohort", "timepoint_day"]].itertuples(index=False))
        hint = f"its default rows: {listed}; give the cohort and day of one"
    else:
        known = sorted(set(used["endpoint"]))
        hint = f"end points with a default row: {', '.join(known) if known else 'none'}"
    raise InputError(f"{what} for end point '{endpoint}'{where} (used_by_default); {hint}",
                     file=counts.attrs.get("source_file"), key=endpoint)


def default_count(counts: pd.DataFrame, endpoint: str, *, cohort: str | None = None,
                  day: int | None = None) -> tuple[int, int]:
    """(r, n) of :func:`default_row`."""
    row = default_row(counts, endpoint, cohort=cohort, day=day)
    return int(row["r"]), int(row["n"])


def _participant_count(participant: pd.DataFrame, endpoint: str, day: int) -> tuple[int, int] | None:
    spec = PARTICIPANT_ENDPOINTS.get(endpoint)
    if spec is None:
        return None
    rows = participant[(participant["measure"] == spec.measure) & (participant["day"] == day)]
    rows = rows[rows["value"].notna()]
    if rows.empty:
        return None
    # one row per participant, visit and measure is a rule of the format (duplicates are refused on loading)
    return int(spec.responders(rows["value"].to_numpy()).sum()), int(rows["participant"].nunique())


def endpoint_count(endpoint: str, *, counts: pd.DataFrame | str | Path | None = None,
                   participant: pd.DataFrame | str | Path | None = None, day: int = 365) -> tuple[int, int]:
    """(r, n) of a binary end point at ``day``: from participant-level data when they hold the end point's
    measure at that day, else from the default row of the counts table.

    Parameters
    ----------
    endpoint : str
        An end point of the counts table, e.g. ``'insulin_independence'``.
    counts : DataFrame, path or None
        The counts table (a frame from :func:`~isletbayes.data.load_counts` or a file to load); None = the
        bundled ``zimislecel_counts.csv``. Read only when the participant data do not answer.
    participant : DataFrame, path or None
        Participant-level data (a frame from :func:`~isletbayes.data.load_participant_data` or a file to load).
        Used for the end points of :data:`PARTICIPANT_ENDPOINTS` when some participant has the measure at
        ``day``; n is then the number of such participants (every cohort in the file).
    day : int
        The visit, in days after infusion (default 365).

    Returns
    -------
    (r, n) : tuple of int

    Raises
    ------
    InputError
        When the counts table has not exactly one default row for the end point at ``day`` (naming the file
        and the end point).

    Examples
    --------
    >>> endpoint_count("insulin_independence")
    (10, 12)
    >>> from isletbayes.data import PARTICIPANT_EXAMPLE
    >>> endpoint_count("insulin_independence", participant=PARTICIPANT_EXAMPLE)
    (5, 6)
    """
    from isletbayes.data.loaders import load_counts, load_participant_data

    if participant is not None:
        frame = participant if isinstance(participant, pd.DataFrame) else load_participant_data(participant)
        found = _participant_count(frame, endpoint, day)
        if found is not None:
            return found
    table = counts if isinstance(counts, pd.DataFrame) else load_counts(counts)
    return default_count(table, endpoint, day=day)
