"""What donor-islet transplantation achieves on an end point: the comparator studies, their MAP prior, and one
benchmark rule shared by every analysis.

The benchmark of an end point (the "comparator rate" the re-analysis compares against, the null rate p0 of a
phase 3 design) is taken from the comparator studies *of that end point* by one documented rule,
``priors.benchmark``:

* ``pooled``: sum r / sum n over the comparator studies used for the MAP prior (default);
* ``map_median``: the median of the MAP prior, the predictive distribution of a new donor-islet study;
* ``study:NAME``: one named study's r / n. A study whose end point differs from the one it is applied to is
  refused (a composite benchmark applied to insulin independence, say), unless ``priors.benchmark_any_endpoint``.

The MAP prior of an end point (:func:`endpoint_map`) is the random-effects meta-analysis of
:func:`isletbayes.models.map_prior.map_prior` fitted with the ``priors.map`` settings, the ``sampler`` block and
the run's seed: the binary analysis, the design and the command line therefore get the same MAP prior for the same
question.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from isletbayes.analyses.config import PriorsConfig, SamplerConfig
from isletbayes.analyses.inputs import AnalysisInputs
from isletbayes.data.errors import InputError
from isletbayes.models.prior_panel import ROBUST_MEAN


@dataclass(frozen=True)
class ComparatorRows:
    """The comparator studies (with counts) used for one end point, and how they were chosen."""

    endpoint: str
    basis: str
    studies: pd.DataFrame  # study, r, n, group, source_id, time_anchor, definition

    @property
    def pooled_rate(self) -> float | None:
        return float(self.studies["r"].sum() / self.studies["n"].sum()) if len(self.studies) else None


def check_studies(studies: list[str] | str, known: list[str]) -> list[str] | None:
    """The chosen comparator studies (None = the default set), each checked against the comparators file.

    An entry may name several studies separated by commas; since study names contain commas themselves
    ("CITR (Barton 2012), era 1999-2002"), pieces are joined back while their concatenation is a prefix of a
    known name. Case-insensitive. An unknown name raises InputError naming it."""
    if studies == "default":
        return None
    lookup = {k.strip().lower(): k for k in known}
    chosen: list[str] = []
    for value in studies:
        pieces = [p.strip() for p in str(value).split(",")]
        i = 0
        while i < len(pieces):
            if not pieces[i]:
                i += 1
                continue
            match, end, acc = None, i, ""
            for j in range(i, len(pieces)):
                acc = pieces[j] if j == i else f"{acc}, {pieces[j]}"
                if acc.lower() in lookup:
                    match, end = lookup[acc.lower()], j
                if not any(name.startswith(acc.lower()) for name in lookup):
                    break
            if match is None:
                raise InputError(f"unknown comparator study {pieces[i]!r}; known studies: " + "; ".join(known),
                                 key="priors.map.studies")
            if match not in chosen:
                chosen.append(match)
            i = end + 1
    return chosen


def comparator_rows(inputs: AnalysisInputs, endpoint: str, priors: PriorsConfig) -> ComparatorRows:
    """The comparator rows with counts used for ``endpoint`` (the default MAP set, or priors.map.studies)."""
    comparators = inputs.comparators
    studies = check_studies(priors.map.studies, sorted(comparators["study"].unique()))
    rows = comparators[(comparators["endpoint"] == endpoint) & comparators["r"].notna() & comparators["n"].notna()]
    if studies is None:
        rows, basis = rows[rows["in_default_map"]], "default MAP set (in_default_map)"
    else:
        rows, basis = rows[rows["study"].isin(studies)], "studies chosen in priors.map.studies"
    table = rows[["study", "r", "n", "group", "source_id", "time_anchor", "definition"]].reset_index(drop=True)
    return ComparatorRows(endpoint, basis, table.astype({"r": int, "n": int}))


def definition_difference(endpoint: str, time_anchor: str) -> tuple[str | None, str, str]:
    """(definition class, how the comparator's end point differs from zimislecel's, whom the naive comparison
    favours) for a comparator row. Zimislecel: one infusion; insulin independence at day 365; the composite is free
    of severe hypoglycaemia on days 90-365 with HbA1c < 7% or a 1-point fall at a visit of days 180-365."""
    if endpoint == "insulin_independence" and time_anchor == "last_infusion":
        return ("counted_from_last_infusion", "counted 1 year after the last of up to three infusions, not after a "
                "single one", "the comparator")
    if endpoint == "composite_primary":
        return ("stricter_composite", "a stricter composite (HbA1c <= 6.5% or below 7% at a fixed day, and a longer "
                "window free of severe hypoglycaemia) than zimislecel's", "zimislecel")
    return (None, "no difference recorded", "neither")


def definition_table(rows: ComparatorRows, comparators: pd.DataFrame) -> pd.DataFrame:
    """Each comparator study's definition difference and its direction."""
    anchors = comparators.set_index(["study", "endpoint"])["time_anchor"]
    out = []
    for study in rows.studies["study"]:
        cls, difference, favours = definition_difference(rows.endpoint, anchors.get((study, rows.endpoint), ""))
        out.append({"study": study, "definition_class": cls, "difference": difference, "favours": favours})
    return pd.DataFrame(out).set_index("study")


_MAP_CACHE: dict[str, Any] = {}


def endpoint_map(rows: ComparatorRows, priors: PriorsConfig, sampler: SamplerConfig, seed: int,
                 comparators: pd.DataFrame):
    """The MAP prior (:class:`~isletbayes.models.map_prior.MAPPrior`) of an end point's comparator studies, fitted
    once per process for the same studies, settings and seed; None when there are no studies. ``priors.map``
    sets the tau prior, differential discounting (``group_studies``), EXNEX and definition shifts (these need
    ``comparators``, the table the rows came from, for each study's time anchor)."""
    if rows.studies.empty:
        return None
    from isletbayes.analyses.provenance import sha256_of
    from isletbayes.models.map_prior import DefinitionShift, ExNex, map_prior

    mp = priors.map
    key = sha256_of([rows.studies[["study", "r", "n"]].to_dict("list"), mp.model_dump(mode="json"),
                     sampler.model_dump(mode="json"), seed])
    if key not in _MAP_CACHE:
        studies = list(rows.studies["study"])
        group = None
        if mp.group_studies:
            chosen = check_studies(mp.group_studies, studies)
            group = [s in chosen for s in studies]
        classes = shifts = None
        if mp.definition_shifts:
            table = definition_table(rows, comparators)
            classes = [c if c in mp.definition_shifts else None for c in table["definition_class"]]
            used = sorted({c for c in classes if c is not None})
            shifts = [DefinitionShift(c, mp.definition_shifts[c].mean, mp.definition_shifts[c].sd) for c in used]
            if not shifts:
                classes = None
        _MAP_CACHE[key] = map_prior(
            rows.studies["r"].to_numpy(), rows.studies["n"].to_numpy(), group, study_names=studies,
            mu_prior_sd=mp.mu_prior_sd, tau_prior=mp.tau_prior, tau_scale=mp.tau_scale,
            tau_scale_group=mp.group_tau_scale,
            settings=sampler.model_copy(update={"draws": mp.draws}).settings(seed, mp.target_accept),
            thin=mp.thin, robust_weight=mp.robust_weight,
            robust_mean=ROBUST_MEAN, exnex=ExNex(mp.exnex_probability) if mp.exnex else None,
            definition_class=classes, definition_shifts=shifts)
    return _MAP_CACHE[key]


@dataclass(frozen=True)
class Benchmark:
    """The donor-islet benchmark rate of an end point and the rule that gave it."""

    endpoint: str
    value: float
    rule: str
    description: str


def benchmark(endpoint: str, inputs: AnalysisInputs, priors: PriorsConfig, sampler: SamplerConfig,
              seed: int) -> Benchmark | None:
    """The benchmark of ``endpoint`` by ``priors.benchmark`` (module docstring); None when no comparator study
    with counts exists for it."""
    rule = priors.benchmark.strip()
    rows = comparator_rows(inputs, endpoint, priors)
    if rule == "pooled":
        if rows.pooled_rate is None:
            return None
        listed = ", ".join(f"{s.study} {s.r}/{s.n}" for s in rows.studies.itertuples())
        return Benchmark(endpoint, rows.pooled_rate, rule,
                         f"pooled donor-islet rate {rows.studies['r'].sum()}/{rows.studies['n'].sum()} ({listed})")
    if rule == "map_median":
        fit = endpoint_map(rows, priors, sampler, seed, inputs.comparators)
        if fit is None:
            return None
        value = float(fit.mixture.ppf(0.5))
        return Benchmark(endpoint, value, rule, f"median of the MAP prior of {len(rows.studies)} donor-islet "
                                                "studies (the rate a new study is predicted to reach)")
    if rule.startswith("study:"):
        name = rule.removeprefix("study:").strip()
        comparators = inputs.comparators
        chosen = check_studies([name], sorted(comparators["study"].unique()))[0]
        own = comparators[(comparators["study"] == chosen) & comparators["r"].notna()]
        same = own[own["endpoint"] == endpoint]
        if same.empty:
            if not priors.benchmark_any_endpoint or own.empty:
                others = ", ".join(sorted(own["endpoint"])) or "none with counts"
                raise InputError(f"{chosen} reports no count for {endpoint} (its end points: {others}); a benchmark "
                                 "from another end point is refused unless priors.benchmark_any_endpoint is true",
                                 key="priors.benchmark")
            same = own.iloc[:1]
        row = same.iloc[0]
        note = "" if row["endpoint"] == endpoint else f" (its {row['endpoint']}, applied to {endpoint} by request)"
        return Benchmark(endpoint, float(row["r"] / row["n"]), rule, f"{chosen}: {int(row['r'])}/{int(row['n'])}{note}")
    raise InputError(f"unknown benchmark rule {rule!r}; use pooled, map_median or study:NAME", key="priors.benchmark")
