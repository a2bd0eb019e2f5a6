"""The validated inputs every analysis draws on, loaded once, with the hash of each file they came from.

:func:`load_inputs` reads the files named by the configuration's ``data`` block (the bundled published data by
default) through the data layer's validating loaders, so a bad file stops the run with one line naming file,
line and column before anything is computed. :meth:`AnalysisInputs.count` is the one (r, n) lookup, with
participant-level data overriding the published count where they hold the end point
(:func:`isletbayes.data.endpoint_count`), and :meth:`AnalysisInputs.cohort_means` the one adapter from the
C-peptide means table to the model's :class:`~isletbayes.models.cpeptide_trajectory.CohortMeans`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from isletbayes.analyses.provenance import sha256_of
from isletbayes.data.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from isletbayes.analyses.config import DataConfig


@dataclass
class AnalysisInputs:
    """Validated data frames (bundled or the user's) and, per file, where it came from and its SHA-256."""

    counts: pd.DataFrame
    cpeptide_means: pd.DataFrame
    comparators: pd.DataFrame
    continuous: pd.DataFrame
    durability: pd.DataFrame
    sources: pd.DataFrame
    participant: pd.DataFrame | None = None
    files: dict[str, dict[str, str]] = field(default_factory=dict)

    def count(self, endpoint: str) -> tuple[int, int]:
        """(r, n) of an end point: from participant-level data where they hold it, else the published count."""
        from isletbayes.data import endpoint_count

        return endpoint_count(endpoint, counts=self.counts, participant=self.participant)

    def default_rows(self, name: str) -> pd.DataFrame:
        frame = getattr(self, name)
        return frame[frame["used_by_default"]] if "used_by_default" in frame.columns else frame

    def cohort_means(self, with_insulin_independence: bool = True):
        """The default C-peptide means (and the day-365 insulin-independence count of the same cohort) as the
        model's CohortMeans."""
        import numpy as np

        from isletbayes.models import cpeptide_trajectory as cpt

        means = self.default_rows("cpeptide_means").sort_values("day")
        sizes = sorted(set(int(n) for n in means["n"]))
        if len(sizes) != 1:
            raise InputError(f"cohort means must share one cohort size, found {sizes}", column="n",
                             file=self.files.get("cpeptide_means", {}).get("path"))
        n = sizes[0]
        lods = [float(x) for x in means["lod_pmol_l"] if np.isfinite(x)]
        sd = np.full(len(means), np.nan)
        for j, (kind, value) in enumerate(zip(means["spread_kind"], means["spread_value"])):
            if isinstance(kind, str) and kind and np.isfinite(value):
                sd[j] = cpt.spread_to_sd(kind, float(value), n)
        ii_count = None
        if with_insulin_independence:
            r, n_ii = self.count("insulin_independence")
            if n_ii != n:
                raise InputError(f"the insulin-independence count is of {n_ii} participants but the C-peptide "
                                 f"means are of {n}", key="data.counts")
            ii_count = r
        return cpt.CohortMeans(days=means["day"].to_numpy(dtype=float),
                               means=means["mean_pmol_l"].to_numpy(dtype=float), n_participants=n,
                               lod=min(lods) if lods else cpt.DEFAULT_LOD_PMOL_L, spread_sd=sd, ii_count=ii_count)

    def describe_means(self) -> dict[str, Any]:
        means = self.default_rows("cpeptide_means")
        return {"source": "bundled published data" if self.files.get("cpeptide_means", {}).get("bundled")
                else self.files.get("cpeptide_means", {}).get("path", ""),
                "series": sorted(set(means["series"])), "source_ids": sorted(set(means["source_id"])),
                "caveats": sorted(set(c for c in means["caveat"] if isinstance(c, str) and c))}


def load_inputs(data: "DataConfig", participant_data: str | Path | None = None) -> AnalysisInputs:
    """Load and validate every input file named by ``data`` (``participant_data`` overrides
    ``data.participant_data``)."""
    from isletbayes import data as d

    files: dict[str, dict[str, str]] = {}

    def record(name: str, frame: pd.DataFrame, given: Path | None) -> pd.DataFrame:
        source = Path(frame.attrs.get("source_file", given or ""))
        files[name] = {"path": str(given) if given else f"bundled ({source.name})",
                       "sha256": sha256_of(source) if source.is_file() else "",
                       "bundled": "" if given else "yes"}
        return frame

    inc, outliers = data.include_unverified, data.allow_outliers
    counts = record("counts", d.load_counts(data.counts, include_unverified=inc), data.counts)
    means = record("cpeptide_means", d.load_cpeptide_means(data.cpeptide_means, include_unverified=inc,
                                                           allow_outliers=outliers), data.cpeptide_means)
    comparators = record("comparators", d.load_comparators(data.comparators, include_unverified=inc),
                         data.comparators)
    continuous = record("continuous", d.load_continuous(include_unverified=inc, allow_outliers=outliers), None)
    durability = record("durability", d.load_durability(include_unverified=inc), None)
    sources = record("sources", d.load_sources(), None)
    participant = None
    path = participant_data if participant_data is not None else data.participant_data
    if path is not None:
        path = Path(path)
        participant = record("participant_data", d.load_participant_data(path, allow_outliers=outliers), path)
    return AnalysisInputs(counts, means, comparators, continuous, durability, sources, participant, files)
