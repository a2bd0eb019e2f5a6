"""Row schemas (pydantic) for every kind of data file isletbayes reads.

One model per file kind validates one CSV row: types, ranges and the rules that tie a row's columns together
(a count never above its denominator, a below-LOD value never above its LOD, a unit known for its measure).
Rules that span rows (duplicated keys, unknown source ids, one default row per key) live in
:mod:`isletbayes.data.loaders`, which also turns the first problem found into one
:class:`~isletbayes.data.errors.InputError` naming file, line and column.

Empty cells arrive as ``None``. Booleans accept true/false, yes/no, 1/0 (any case).

Hard limits (:data:`~isletbayes.data.units.MAX_DAY` on every day, :data:`~isletbayes.data.units.MAX_COUNT` on
every count and denominator, each measure's minimum/maximum, finite numbers only) are schema rules: a row that
breaks one is invalid whatever the caller asks. Plausibility bounds
(:data:`~isletbayes.data.units.PLAUSIBLE`) are not: a row model lists the values outside them through
:meth:`implausible`, and the loader refuses them or, with ``allow_outliers=True``, records them.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic import StringConstraints

from isletbayes.data.units import MAX_COUNT, MAX_DAY, MEASURES, PLAUSIBLE, known_units, normalise_unit

EvidenceType = Literal["primary", "secondary", "unverified"]
EVIDENCE_TYPES: tuple[str, ...] = ("primary", "secondary", "unverified")
TIME_ANCHORS: tuple[str, ...] = ("single_infusion", "first_infusion", "last_infusion", "implant", "any_time",
                                 "unspecified")
COMPARATOR_GROUPS: tuple[str, ...] = ("donor_islet", "registry", "stem_cell_device")
CPEPTIDE_SERIES: tuple[str, ...] = ("mmtt_stimulated_90min", "mmtt_stimulated_90min_assumed", "fasting",
                                    "unknown")
SPREAD_KINDS: tuple[str, ...] = ("sd", "se", "ci95_halfwidth")
_BASE_STATISTICS = ("mean", "median", "min", "max", "sd", "individual")
CONTINUOUS_STATISTICS: tuple[str, ...] = (
    *_BASE_STATISTICS,
    "change", *(f"change_{s}" for s in _BASE_STATISTICS if s != "mean"),
    "percent_change", *(f"percent_change_{s}" for s in _BASE_STATISTICS if s != "mean"),
)
DURABILITY_STATISTICS: tuple[str, ...] = ("percent", "km_percent", "cumulative_incidence_percent", "median", "count")
DURABILITY_UNITS: tuple[str, ...] = ("percent", "months", "years", "participants")


def _day_limit(day: int) -> int:
    if day > MAX_DAY:
        raise ValueError(f"day {day} is beyond any follow-up: the largest day accepted is {MAX_DAY} (100 years)")
    return day


def _count_limit(count: int) -> int:
    if count > MAX_COUNT:
        raise ValueError(f"{count} is above the largest count accepted, {MAX_COUNT} (more than all the people "
                         "living with type 1 diabetes)")
    return count


Identifier = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_]*$")]
SourceId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
Text = Annotated[str, StringConstraints(min_length=1)]
Count = Annotated[int, Field(ge=0), AfterValidator(_count_limit)]
Denominator = Annotated[int, Field(ge=1), AfterValidator(_count_limit)]
Day = Annotated[int, Field(ge=0), AfterValidator(_day_limit)]
NonNegative = Annotated[float, Field(ge=0)]
Percent = Annotated[float, Field(ge=0, le=100)]


class RowProblem(ValueError):
    """A rule broken inside one row, with the column to blame."""

    def __init__(self, column: str, message: str) -> None:
        self.column = column
        self.message = message
        super().__init__(message)


def percent_tolerance(percent: float) -> float:
    """Half a unit of the last published decimal: 87.5 -> 0.05, 44 -> 0.5 (percentages are rounded)."""
    text = repr(float(percent))
    decimals = 0 if text.endswith(".0") else len(text.split(".")[1]) if "." in text else 0
    return 0.5 * 10.0 ** (-decimals) + 1e-9


def check_percent(r: int, n: int, percent: float, column: str = "percent") -> None:
    exact = 100.0 * r / n
    if abs(exact - percent) > percent_tolerance(percent):
        raise RowProblem(column, f"{percent:g}% does not match r/n = {r}/{n} = {exact:.2f}%")


def finite_level(value: float, column: str, what: str) -> float:
    """A converted value, refused when the conversion overflowed to infinity."""
    if not math.isfinite(value):
        raise RowProblem(column, f"{what} is too large to convert to the canonical unit")
    return value


def plausibility_problem(name: str, value: float, given: str = "", label: str | None = None) -> str | None:
    """The message refusing ``value`` (canonical unit) of measure or column ``name`` (called ``label`` in the
    message), or None when it is plausible or ``name`` has no plausibility bound."""
    bound = PLAUSIBLE.get(name)
    return None if bound is None else bound.problem(label or name, value, given)


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, allow_inf_nan=False, frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_missing(cls, value):
        if isinstance(value, str) and value.strip() == "":
            return None
        return value

    def implausible(self) -> list[tuple[str, str]]:
        """(column, message) for every value of the row outside its plausibility bound (none by default)."""
        return []


class _Provenance(_Row):
    source_id: SourceId
    locator: Text
    caveat: str | None = None
    evidence_type: EvidenceType


class SourceRow(_Row):
    source_id: SourceId
    citation: Text
    url: str | None = None
    evidence_type: EvidenceType

    @field_validator("url")
    @classmethod
    def _url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError(f"'{url}' is not an http(s) address (leave the cell empty if there is none)")
        return url


class CountRow(_Provenance):
    endpoint: Identifier
    kind: Literal["efficacy", "safety"]
    cohort: Identifier
    timepoint_day: Day | None = None
    r: Count
    n: Denominator
    definition: Text
    used_by_default: bool

    @model_validator(mode="after")
    def _rules(self):
        if self.r > self.n:
            raise RowProblem("r", f"r = {self.r} is larger than its denominator n = {self.n}")
        if self.used_by_default and self.evidence_type == "unverified":
            raise RowProblem("used_by_default", "an unverified row cannot be used by default")
        if self.used_by_default and self.timepoint_day is None:
            raise RowProblem("timepoint_day", "a row used by default needs a timepoint_day")
        return self


class CpeptideMeanRow(_Provenance):
    day: Day
    mean_pmol_l: NonNegative
    n: Denominator
    lod_pmol_l: NonNegative | None = None
    spread_kind: Literal[SPREAD_KINDS] | None = None
    spread_value: NonNegative | None = None
    series: Literal[CPEPTIDE_SERIES]
    used_by_default: bool

    @model_validator(mode="after")
    def _rules(self):
        if (self.spread_kind is None) != (self.spread_value is None):
            missing = "spread_value" if self.spread_value is None else "spread_kind"
            raise RowProblem(missing, "spread_kind and spread_value go together: give both or neither")
        if self.used_by_default and self.evidence_type == "unverified":
            raise RowProblem("used_by_default", "an unverified row cannot be used by default")
        return self

    def implausible(self) -> list[tuple[str, str]]:
        measure = "cpeptide_fasting" if self.series == "fasting" else "cpeptide"
        found = [(column, plausibility_problem(measure, value))
                 for column, value in (("mean_pmol_l", self.mean_pmol_l), ("lod_pmol_l", self.lod_pmol_l))
                 if value is not None]
        return [(column, message) for column, message in found if message]


def statistic_scale(statistic: str) -> str:
    """'level', 'change' or 'percent_change': what a continuous statistic summarises."""
    if statistic.startswith("percent_change"):
        return "percent_change"
    if statistic.startswith("change"):
        return "change"
    return "level"


class ContinuousRow(_Provenance):
    measure: Identifier
    cohort: Identifier
    day: Day
    statistic: Literal[CONTINUOUS_STATISTICS]
    value: float
    unit: str | None = None
    n: Denominator | None = None
    used_by_default: bool

    @model_validator(mode="after")
    def _rules(self):
        measure = MEASURES.get(self.measure)
        if measure is None or measure.binary or self.measure == "she_count":
            known = ", ".join(m for m, spec in MEASURES.items() if not spec.binary and m != "she_count")
            raise RowProblem("measure", f"unknown measure '{self.measure}' (known: {known})")
        unit = normalise_unit(self.unit or "")
        scale = statistic_scale(self.statistic)
        if scale == "percent_change":
            if unit not in ("%", "percent"):
                raise RowProblem("unit", f"a percent change is in '%', not '{self.unit or ''}'")
            if self.value < -100:
                raise RowProblem("value", f"a percent change cannot be below -100% (got {self.value:g})")
        elif scale == "change":
            if not measure.has_unit(unit, change=True):
                raise RowProblem("unit", f"unknown unit '{self.unit or ''}' for a change in {self.measure} "
                                         f"(known: {known_units(measure, change=True)})")
        else:
            if not measure.has_unit(unit):
                raise RowProblem("unit", f"unknown unit '{self.unit or ''}' for {self.measure} "
                                         f"(known: {known_units(measure)})")
            level = finite_level(measure.level_to_canonical(self.value, unit), "value",
                                 f"{self.value:g} {self.unit}")
            if self.statistic == "sd":
                if self.value < 0:
                    raise RowProblem("value", f"a standard deviation cannot be negative (got {self.value:g})")
            else:
                if measure.minimum is not None and level < measure.minimum:
                    raise RowProblem("value", f"{self.measure} cannot be negative (got {self.value:g})")
                if measure.maximum is not None and level > measure.maximum:
                    raise RowProblem("value", f"{self.measure} above its maximum of {measure.maximum:g} "
                                              f"{measure.canonical_unit} (got {self.value:g} {self.unit})")
        if self.used_by_default and self.evidence_type == "unverified":
            raise RowProblem("used_by_default", "an unverified row cannot be used by default")
        return self

    def implausible(self) -> list[tuple[str, str]]:
        if statistic_scale(self.statistic) != "level" or self.statistic == "sd":
            return []
        value, unit = self.canonical()
        given = "" if normalise_unit(self.unit or "") == normalise_unit(unit) else f"{self.value:g} {self.unit}"
        message = plausibility_problem(self.measure, value, given)
        return [("value", message)] if message else []

    def canonical(self) -> tuple[float, str]:
        """The value in the measure's canonical unit, and that unit."""
        measure = MEASURES[self.measure]
        unit = normalise_unit(self.unit or "")
        scale = statistic_scale(self.statistic)
        if scale == "percent_change":
            return self.value, "%"
        if scale == "change":
            canonical_change_unit = ("percentage points" if measure.canonical_unit == "%"
                                     else measure.canonical_unit)
            return measure.change_to_canonical(self.value, unit), canonical_change_unit
        if self.statistic == "sd":  # a spread scales like a difference: no offset
            return measure.change_to_canonical(self.value, unit), measure.canonical_unit
        return measure.level_to_canonical(self.value, unit), measure.canonical_unit


class ComparatorRow(_Provenance):
    study: Text
    endpoint: Identifier
    r: Count | None = None
    n: Denominator | None = None
    percent: Percent | None = None
    timepoint: Text
    timepoint_day: Day | None = None
    time_anchor: Literal[TIME_ANCHORS]
    group: Literal[COMPARATOR_GROUPS]
    definition: Text
    in_default_map: bool

    @model_validator(mode="after")
    def _rules(self):
        if self.r is not None and self.n is None:
            raise RowProblem("n", "a count r needs its denominator n")
        if self.r is not None and self.n is not None and self.r > self.n:
            raise RowProblem("r", f"r = {self.r} is larger than its denominator n = {self.n}")
        if self.r is None and self.percent is None:
            raise RowProblem("r", "the row holds neither a count (r, n) nor a percent")
        if self.r is not None and self.percent is not None:
            check_percent(self.r, self.n, self.percent)
        if self.in_default_map:
            if self.r is None:
                raise RowProblem("in_default_map", "a study in the default MAP set needs a count r/n")
            if self.evidence_type == "unverified":
                raise RowProblem("in_default_map", "an unverified row cannot be in the default MAP set")
        return self


class DurabilityRow(_Provenance):
    study: Text
    measure: Identifier
    statistic: Literal[DURABILITY_STATISTICS]
    value: NonNegative
    unit: Literal[DURABILITY_UNITS]
    lower: float | None = None
    upper: float | None = None
    interval_kind: str | None = None
    r: Count | None = None
    n: Denominator | None = None
    timepoint: str | None = None
    population: Text
    group: Literal[COMPARATOR_GROUPS]

    @model_validator(mode="after")
    def _rules(self):
        if self.r is not None and self.n is None:
            raise RowProblem("n", "a count r needs its denominator n")
        if self.r is not None and self.r > self.n:
            raise RowProblem("r", f"r = {self.r} is larger than its denominator n = {self.n}")
        if (self.lower is None) != (self.upper is None):
            raise RowProblem("upper" if self.upper is None else "lower", "give both lower and upper, or neither")
        if self.lower is not None:
            if self.interval_kind is None:
                raise RowProblem("interval_kind", "an interval needs its kind (e.g. IQR, 95% CI)")
            if not self.lower <= self.value <= self.upper:
                raise RowProblem("value", f"{self.value:g} lies outside its interval "
                                          f"[{self.lower:g}, {self.upper:g}]")
        if self.unit == "percent" and self.value > 100:
            raise RowProblem("value", f"a percentage cannot exceed 100 (got {self.value:g})")
        if self.statistic in ("percent", "km_percent", "cumulative_incidence_percent") and self.unit != "percent":
            raise RowProblem("unit", f"statistic '{self.statistic}' is in percent, not {self.unit}")
        if self.statistic == "percent" and self.r is not None:
            check_percent(self.r, self.n, self.value, column="value")
        if self.statistic == "count" and self.r is not None and self.value != self.r:
            raise RowProblem("value", f"a count row's value ({self.value:g}) must equal r ({self.r})")
        return self


class ReferenceRow(_Provenance):
    """A published figure isletbayes uses as a model input, threshold or planning assumption (not a trial result
    of zimislecel): e.g. the within-person variation of MMTT C-peptide, the CITR C-peptide cut point."""

    quantity: Identifier
    value: float
    unit: str | None = None
    population: Text
    definition: Text
    used_for: str | None = None
    used_by_default: bool

    @model_validator(mode="after")
    def _rules(self):
        if self.used_by_default and self.evidence_type == "unverified":
            raise RowProblem("used_by_default", "an unverified row cannot be used by default")
        return self


class ParticipantRow(_Row):
    """One measurement of one participant at one visit (the participant-level long format)."""

    participant: Text
    cohort: Text
    dose: NonNegative
    day: int
    measure: str
    value: float | None = None
    unit: str | None = None
    below_lod: bool = False
    lod: float | None = None

    @field_validator("day")
    @classmethod
    def _day(cls, day: int) -> int:
        if day < 0:
            raise ValueError(f"day {day} is before the infusion: days count from the infusion (day 0 = "
                             "baseline, taken just before it)")
        return _day_limit(day)

    @field_validator("below_lod", mode="before")
    @classmethod
    def _missing_flag_is_false(cls, value):
        return False if value is None or (isinstance(value, str) and not value.strip()) else value

    @model_validator(mode="after")
    def _rules(self):
        measure = MEASURES.get(self.measure)
        if measure is None:
            raise RowProblem("measure", f"unknown measure '{self.measure}' (known: {', '.join(MEASURES)})")
        unit = normalise_unit(self.unit or "")
        if not measure.has_unit(unit):
            raise RowProblem("unit", f"unknown unit '{self.unit or ''}' for {self.measure} "
                                     f"(known: {known_units(measure)})")
        if self.below_lod:
            if not measure.censorable:
                raise RowProblem("below_lod", f"{self.measure} has no limit of detection; below_lod must be "
                                              "false")
            if self.lod is None:
                raise RowProblem("lod", "a below-LOD row needs its lod")
        if self.lod is not None:
            if not measure.censorable:
                raise RowProblem("lod", f"{self.measure} has no limit of detection; leave lod empty")
            if self.lod < 0:
                raise RowProblem("lod", f"a limit of detection cannot be negative (got {self.lod:g})")
            finite_level(measure.level_to_canonical(self.lod, unit), "lod", f"lod {self.lod:g} {self.unit}")
        if self.value is None:
            if not self.below_lod:
                raise RowProblem("value", "is empty; only a below-LOD row may leave the value empty")
            return self
        if measure.binary and self.value not in (0.0, 1.0):
            raise RowProblem("value", f"{self.measure} is 0 or 1 (got {self.value:g})")
        if self.measure == "she_count" and not float(self.value).is_integer():
            raise RowProblem("value", f"a number of events is a whole number (got {self.value:g})")
        level = finite_level(measure.level_to_canonical(self.value, unit), "value", f"{self.value:g} {self.unit}")
        if measure.minimum is not None and level < measure.minimum:
            kind = "concentration" if measure.censorable else "value"
            raise RowProblem("value", f"negative {kind} for {self.measure} (got {self.value:g})")
        if measure.maximum is not None and level > measure.maximum:
            raise RowProblem("value", f"{self.measure} above its maximum of {measure.maximum:g} "
                                      f"{measure.canonical_unit} (got {self.value:g})")
        if self.below_lod and self.value > self.lod:
            raise RowProblem("value", f"marked below the LOD but {self.value:g} is above lod = {self.lod:g}")
        return self

    def implausible(self) -> list[tuple[str, str]]:
        value, lod, unit = self.canonical()
        converted = normalise_unit(self.unit or "") != normalise_unit(unit)
        found = [("dose", plausibility_problem("dose", self.dose)), ("day", plausibility_problem("day", self.day))]
        if not math.isnan(value):
            found.append(("value", plausibility_problem(self.measure, value,
                                                        f"{self.value:g} {self.unit}" if converted else "")))
        if not math.isnan(lod):
            found.append(("lod", plausibility_problem(self.measure, lod, f"{self.lod:g} {self.unit}" if converted
                                                      else "", label=f"{self.measure} lod")))
        return [(column, message) for column, message in found if message]

    def canonical(self) -> tuple[float, float, str]:
        """(value, lod, unit) in the measure's canonical unit; NaN where empty."""
        measure = MEASURES[self.measure]
        unit = normalise_unit(self.unit or "")
        value = math.nan if self.value is None else measure.level_to_canonical(self.value, unit)
        lod = math.nan if self.lod is None else measure.level_to_canonical(self.lod, unit)
        return value, lod, measure.canonical_unit


_FRIENDLY = {
    "int_parsing": "is not a whole number",
    "int_from_float": "is not a whole number",
    "float_parsing": "is not a number",
    "bool_parsing": "is not a boolean (use true or false)",
    "finite_number": "must be a finite number",
    "string_pattern_mismatch": "is not an identifier (lower-case letters, digits and '_')",
}


def describe_validation_error(exc: ValidationError) -> tuple[str | None, str]:
    """(column, message) for the first problem pydantic found in a row."""
    err = exc.errors(include_url=False)[0]
    ctx = err.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, RowProblem):
        return cause.column, cause.message
    column = str(err["loc"][0]) if err.get("loc") else None
    value = err.get("input")
    kind = err["type"]
    if value is None:
        return column, "is empty; a value is required"
    if kind == "value_error":
        return column, err["msg"].removeprefix("Value error, ")
    if kind == "literal_error":
        return column, f"'{value}' is not one of {ctx.get('expected')}"
    if kind == "greater_than_equal":
        return column, f"must be >= {ctx.get('ge')} (got '{value}')"
    if kind == "less_than_equal":
        return column, f"must be <= {ctx.get('le')} (got '{value}')"
    if kind == "string_pattern_mismatch" and column == "source_id":
        return column, f"'{value}' is not a source id (letters, digits, '_', '.', '-')"
    message = _FRIENDLY.get(kind, err["msg"])
    return column, f"'{value}' {message}"
