"""Loaders for the bundled published data and for a user's files of the same kinds.

Every loader reads a UTF-8 CSV with one header row, validates each row against its schema
(:mod:`isletbayes.data.schemas`), then the rules across rows (duplicated keys, one default row per key,
source ids known to the sources table, one cohort and dose per participant), and returns a tidy
``pandas.DataFrame``. The first problem found is raised as one :class:`InputError` naming the file, the line
(header = line 1) and the column.

Validation and the table are two steps: :func:`validate_table` does all of the checking and returns the rows as
plain Python values (a :class:`ValidatedTable`, no pandas); ``load_*`` turn that into the DataFrame. The data
commands (:func:`check_file`, ``isletbayes data summary``) read the validated rows, so they answer without
importing pandas or numpy.

A file's kind is told by its header (:func:`detect_kind`). Source ids are checked against, in order: the
``sources_path`` given, a ``sources.csv`` beside the file, the bundled ``data/published/sources.csv``.
Rows whose ``evidence_type`` is ``unverified`` are dropped unless ``include_unverified=True``.

Plausibility (participant data, C-peptide means, continuous summaries): a value outside its plausibility bound
(:data:`isletbayes.data.units.PLAUSIBLE`: C-peptide, HbA1c, glucose CV, insulin dose, severe hypoglycaemic
events, day, cell dose) is refused like any other problem, with file, line and column and a message that names
the bound, its reason and the override. Called with ``allow_outliers=True`` (the command line's
``--allow-outliers``), the loader accepts such values, lists them in the returned frame's ``attrs['outliers']``
(``{'line', 'column', 'message'}`` each) and emits one :class:`ImplausibleValueWarning` per file. Hard limits
(a negative concentration, a percentage above 100, a day beyond 100 years, a count above ten million) are
never lifted.
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from pydantic import BaseModel, ValidationError

from isletbayes.data.errors import ImplausibleValueWarning, InputError
from isletbayes.data.schemas import (
    ComparatorRow,
    ContinuousRow,
    CountRow,
    CpeptideMeanRow,
    DurabilityRow,
    ParticipantRow,
    ReferenceRow,
    SourceRow,
    describe_validation_error,
    statistic_scale,
)
from isletbayes.data.units import MEASURES, normalise_unit, with_unit

if TYPE_CHECKING:
    import pandas as pd

PUBLISHED_DIR = Path(__file__).resolve().parent / "published"
EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
PARTICIPANT_EXAMPLE = EXAMPLES_DIR / "participant_example.csv"


@dataclass(frozen=True)
class FileKind:
    """What a kind of file holds and how its rows are keyed."""

    name: str
    row_model: type[BaseModel]
    columns: tuple[str, ...]
    bundled_file: str | None
    key: tuple[str, ...]  # no two rows may share it
    default_flag: str | None = None  # boolean column marking the rows used by default
    default_key: tuple[str, ...] = ()  # at most one default row per value of it
    has_sources: bool = True
    description: str = ""

    @property
    def bundled_path(self) -> Path | None:
        return None if self.bundled_file is None else PUBLISHED_DIR / self.bundled_file


_PROVENANCE = ("source_id", "locator", "caveat", "evidence_type")
KINDS: dict[str, FileKind] = {
    k.name: k
    for k in [
        FileKind("sources", SourceRow, ("source_id", "citation", "url", "evidence_type"), "sources.csv",
                 ("source_id",), has_sources=False, description="the source table"),
        FileKind("counts", CountRow,
                 ("endpoint", "kind", "cohort", "timepoint_day", "r", "n", "definition", *_PROVENANCE,
                  "used_by_default"),
                 "zimislecel_counts.csv", ("endpoint", "cohort", "timepoint_day", "source_id"),
                 "used_by_default", ("endpoint", "cohort", "timepoint_day"),
                 description="binary end points and adverse events as r of n"),
        FileKind("cpeptide", CpeptideMeanRow,
                 ("day", "mean_pmol_l", "n", "lod_pmol_l", "spread_kind", "spread_value", "series", *_PROVENANCE,
                  "used_by_default"),
                 "zimislecel_cpeptide.csv", ("series", "day", "source_id"), "used_by_default", ("series", "day"),
                 description="cohort-mean C-peptide by day"),
        FileKind("continuous", ContinuousRow,
                 ("measure", "cohort", "day", "statistic", "value", "unit", "n", *_PROVENANCE, "used_by_default"),
                 "zimislecel_continuous.csv", ("measure", "cohort", "day", "statistic", "source_id"),
                 "used_by_default", ("measure", "cohort", "day", "statistic"),
                 description="HbA1c, time in range, glucose CV, insulin dose summaries"),
        FileKind("comparators", ComparatorRow,
                 ("study", "endpoint", "r", "n", "percent", "timepoint", "timepoint_day", "time_anchor", "group",
                  "definition", "in_default_map", *_PROVENANCE),
                 "comparators.csv", ("study", "endpoint", "timepoint", "source_id"), "in_default_map",
                 ("study", "endpoint"), description="comparator studies (donor islets, registry, devices)"),
        FileKind("durability", DurabilityRow,
                 ("study", "measure", "statistic", "value", "unit", "lower", "upper", "interval_kind", "r", "n",
                  "timepoint", "population", "group", *_PROVENANCE),
                 "durability.csv", ("study", "measure", "timepoint", "source_id"),
                 description="durability of insulin independence and graft function"),
        FileKind("reference", ReferenceRow,
                 ("quantity", "value", "unit", "population", "definition", "used_for", *_PROVENANCE,
                  "used_by_default"),
                 "reference_values.csv", ("quantity", "source_id"), "used_by_default", ("quantity",),
                 description="published figures used as model inputs, thresholds or planning assumptions"),
        FileKind("participant", ParticipantRow,
                 ("participant", "cohort", "dose", "day", "measure", "value", "unit", "below_lod", "lod"), None,
                 ("participant", "day", "measure"), has_sources=False,
                 description="participant-level measurements, long format"),
    ]
}

_INT = "int64"
_NINT = "Int64"
_FLOAT = "float64"
_BOOL = "bool"
_DTYPES: dict[str, dict[str, str]] = {
    "sources": {},
    "counts": {"timepoint_day": _NINT, "r": _INT, "n": _INT, "used_by_default": _BOOL},
    "cpeptide": {"day": _INT, "mean_pmol_l": _FLOAT, "n": _INT, "lod_pmol_l": _FLOAT, "spread_value": _FLOAT,
                 "used_by_default": _BOOL},
    "continuous": {"day": _INT, "value": _FLOAT, "n": _NINT, "used_by_default": _BOOL},
    "comparators": {"r": _NINT, "n": _NINT, "percent": _FLOAT, "timepoint_day": _NINT, "in_default_map": _BOOL},
    "durability": {"value": _FLOAT, "lower": _FLOAT, "upper": _FLOAT, "r": _NINT, "n": _NINT},
    "reference": {"value": _FLOAT, "used_by_default": _BOOL},
    "participant": {"dose": _FLOAT, "day": _INT, "value": _FLOAT, "below_lod": _BOOL, "lod": _FLOAT},
}


# ------------------------------------------------------------------------------------------------ reading


def _read_csv(path: str | Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header and (line, {column: text}) for each non-blank data row; InputError on anything unreadable."""
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", file=path)
    if not path.is_file():
        raise InputError("is not a file", file=path)
    raw = path.read_bytes()
    if not raw.strip():
        raise InputError("file is empty (expected a header row and data rows)", file=path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise InputError(f"not valid UTF-8 (byte 0x{raw[err.start]:02x}); save the file as UTF-8 CSV",
                         file=path, line=line) from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise InputError("contains NUL bytes: not a text CSV file", file=path, line=line)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[tuple[int, dict[str, str]]] = []
    previous_end = 0
    try:
        header = [name.strip() for name in next(reader)]
        previous_end = reader.line_num
        for fields in reader:
            line = previous_end + 1
            previous_end = reader.line_num
            if not fields or all(not f.strip() for f in fields):
                continue
            if len(fields) != len(header):
                raise InputError(f"has {len(fields)} fields but the header has {len(header)}", file=path,
                                 line=line)
            rows.append((line, dict(zip(header, fields))))
    except csv.Error as err:
        raise InputError(f"malformed CSV ({err})", file=path, line=reader.line_num) from None
    for position, name in enumerate(header):
        if not name:
            raise InputError(f"header field {position + 1} is empty", file=path, line=1)
        if header.index(name) != position:
            raise InputError("column appears twice in the header", file=path, line=1, column=name)
    if not rows:
        raise InputError("has a header but no data rows", file=path, line=1)
    return header, rows


def read_header(path: str | Path) -> list[str]:
    header, _ = _read_csv(path)
    return header


def detect_kind(columns: Iterable[str], *, file: str | Path | None = None) -> str:
    """The kind whose columns best match a header (Jaccard overlap); InputError if none is close."""
    columns = list(columns)
    cols = set(columns)
    scores = {name: len(cols & set(kind.columns)) / len(cols | set(kind.columns)) for name, kind in KINDS.items()}
    best = max(scores, key=scores.get)
    if scores[best] < 0.5:
        raise InputError(
            f"cannot tell what kind of data file this is from its header ({', '.join(columns)}); the closest "
            f"kind, '{best}', has the columns {', '.join(KINDS[best].columns)}; pass --kind to choose one of "
            f"{', '.join(KINDS)}", file=file, line=1)
    return best


def _check_header(path: Path, header: list[str], kind: FileKind) -> None:
    missing = [c for c in kind.columns if c not in header]
    extra = [c for c in header if c not in kind.columns]
    if not missing and not extra:
        return
    parts = []
    if missing:
        parts.append("missing column" + ("s " if len(missing) > 1 else " ") + ", ".join(f"'{c}'" for c in missing))
    if extra:
        parts.append("unexpected column" + ("s " if len(extra) > 1 else " ") + ", ".join(f"'{c}'" for c in extra))
    raise InputError(f"{'; '.join(parts)} for a {kind.name} file (expected: {', '.join(kind.columns)})",
                     file=path, line=1, column=(missing or extra)[0])


def _validate(path: str | Path, kind_name: str, *, allow_outliers: bool = False,
              outliers: list[dict[str, Any]] | None = None) -> list[tuple[int, Any]]:
    """(line, validated row) for every row of a file of the given kind.

    A value outside its plausibility bound raises InputError, or with ``allow_outliers`` is appended to
    ``outliers`` as ``{'line', 'column', 'message'}``.
    """
    kind = KINDS[kind_name]
    path = Path(path)
    header, records = _read_csv(path)
    _check_header(path, header, kind)
    rows = []
    for line, record in records:
        try:
            row = kind.row_model.model_validate(record)
        except ValidationError as err:
            column, message = describe_validation_error(err)
            raise InputError(message, file=path, line=line, column=column) from None
        for column, message in row.implausible():
            if not allow_outliers:
                raise InputError(message, file=path, line=line, column=column)
            if outliers is not None:
                outliers.append({"line": line, "column": column, "message": message})
        rows.append((line, row))
    _check_keys(path, kind, rows)
    if kind_name == "continuous":
        _check_summary_order(path, rows)
    return rows


def _warn_outliers(path: Path, outliers: list[dict[str, Any]], stacklevel: int) -> None:
    """Say once that values outside a plausibility bound were accepted (a warning naming the first)."""
    if outliers:
        first = outliers[0]
        shown = str(InputError(first["message"], file=path, line=first["line"], column=first["column"]))
        warnings.warn(ImplausibleValueWarning(
            f"{len(outliers)} value(s) outside a plausibility bound accepted (allow_outliers=True); first: "
            f"{shown}"), stacklevel=stacklevel + 1)


_ORDER_ROLES = {"min": 0, "mean": 1, "median": 1, "max": 2}


def _check_summary_order(path: Path, rows: list[tuple[int, ContinuousRow]]) -> None:
    """Summaries of one measure, cohort, day and source must be ordered: min <= mean, median <= max."""
    groups: dict[tuple, list[tuple[int, int, str, float]]] = {}
    for line, row in rows:
        scale = statistic_scale(row.statistic)
        base = row.statistic if scale == "level" else (row.statistic.removeprefix(scale).lstrip("_") or "mean")
        if base not in _ORDER_ROLES:
            continue
        group = groups.setdefault((row.measure, row.cohort, row.day, row.source_id, scale), [])
        value = row.canonical()[0]
        for other_line, other_role, other_stat, other_value in group:
            role = _ORDER_ROLES[base]
            if role == other_role:
                continue
            low, high = (other_value, value) if other_role < role else (value, other_value)
            if low > high:
                relation = "above" if role < other_role else "below"
                unit = row.canonical()[1]
                raise InputError(f"{row.statistic} {with_unit(value, unit)} is {relation} the {other_stat} "
                                 f"{with_unit(other_value, unit)} on line {other_line} (same measure, cohort, day "
                                 "and source)", file=path, line=line, column="value")
        group.append((line, _ORDER_ROLES[base], row.statistic, value))


def _check_keys(path: Path, kind: FileKind, rows: list[tuple[int, Any]]) -> None:
    seen: dict[tuple, int] = {}
    for line, row in rows:
        key = tuple(getattr(row, c) for c in kind.key)
        if key in seen:
            shown = ", ".join(f"{c}={'' if v is None else v}" for c, v in zip(kind.key, key))
            raise InputError(f"duplicated row: {shown} already on line {seen[key]}", file=path, line=line,
                             column="+".join(kind.key))
        seen[key] = line
    if kind.default_flag:
        defaults: dict[tuple, int] = {}
        for line, row in rows:
            if not getattr(row, kind.default_flag):
                continue
            key = tuple(getattr(row, c) for c in kind.default_key)
            if key in defaults:
                shown = ", ".join(f"{c}={'' if v is None else v}" for c, v in zip(kind.default_key, key))
                raise InputError(f"two rows marked {kind.default_flag} for {shown} (the other is on line "
                                 f"{defaults[key]}); mark one of them false", file=path, line=line,
                                 column=kind.default_flag)
            defaults[key] = line


def _resolve_sources(path: Path, sources_path: str | Path | None) -> tuple[Path, dict[str, str]]:
    if sources_path is not None:
        chosen = Path(sources_path)
    elif (path.parent / "sources.csv").is_file():
        chosen = path.parent / "sources.csv"
    else:
        chosen = KINDS["sources"].bundled_path
    return chosen, {row.source_id: row.evidence_type for _, row in _validate(chosen, "sources")}


def _check_sources(path: Path, rows: list[tuple[int, Any]], sources_path: str | Path | None) -> None:
    chosen, sources = _resolve_sources(path, sources_path)
    for line, row in rows:
        if row.source_id not in sources:
            raise InputError(f"unknown source id '{row.source_id}': it is not in {chosen}", file=path, line=line,
                             column="source_id")
        if sources[row.source_id] == "unverified" and row.evidence_type != "unverified":
            raise InputError(f"source '{row.source_id}' is unverified, so the row's evidence_type must be "
                             f"'unverified' (got '{row.evidence_type}')", file=path, line=line,
                             column="evidence_type")


_MISSING_FLOAT = float("nan")


@dataclass(frozen=True)
class ValidatedTable:
    """A validated data file as plain Python values: what ``load_*`` turn into a DataFrame.

    ``records`` holds one dict per row, in file order, keyed by the kind's columns, with the values the frame
    holds: text as ``str`` ("" where empty), whole numbers as ``int`` (None where a nullable one is empty),
    decimals as ``float`` (NaN where empty), flags as ``bool``; values of measures are in their canonical units.
    ``outliers`` lists the values outside a plausibility bound that ``allow_outliers=True`` accepted;
    ``original_units`` (participant files) the units converted, per measure.
    """

    kind: str
    path: Path
    records: list[dict[str, Any]]
    outliers: list[dict[str, Any]] = field(default_factory=list)
    original_units: dict[str, list[str]] | None = None

    def column(self, name: str) -> list[Any]:
        return [record[name] for record in self.records]

    def flagged(self, flag: str, value: bool = True) -> list[dict[str, Any]]:
        """The rows whose boolean column ``flag`` is ``value``."""
        return [record for record in self.records if record[flag] is value]

    def to_frame(self) -> pd.DataFrame:
        """The DataFrame of the ``load_*`` functions, with the file (and the outliers, unit conversions) in
        ``attrs``."""
        import pandas as pd

        kind = KINDS[self.kind]
        dtypes = _DTYPES[self.kind]
        frame = pd.DataFrame(self.records, columns=list(kind.columns))
        for column in kind.columns:
            frame[column] = frame[column].astype(dtypes.get(column, str))
        frame.attrs["source_file"] = str(self.path)
        if self.original_units is not None:
            frame.attrs["original_units"] = self.original_units
        frame.attrs["outliers"] = self.outliers
        return frame


def _plain_record(kind_name: str, record: dict[str, Any]) -> dict[str, Any]:
    """A row's values as its frame column holds them (see :class:`ValidatedTable`)."""
    dtypes = _DTYPES[kind_name]
    plain = {}
    for column in KINDS[kind_name].columns:
        value = record[column]
        dtype = dtypes.get(column)
        if dtype is None:
            value = "" if value is None else str(value)
        elif dtype == _FLOAT and value is None:
            value = _MISSING_FLOAT
        plain[column] = value
    return plain


def _check_participants(path: Path, rows: list[tuple[int, ParticipantRow]]) -> None:
    """One cohort and one dose per participant."""
    first: dict[str, tuple[int, ParticipantRow]] = {}
    for line, row in rows:
        if row.participant not in first:
            first[row.participant] = (line, row)
            continue
        first_line, first_row = first[row.participant]
        for column in ("cohort", "dose"):
            if getattr(row, column) != getattr(first_row, column):
                raise InputError(f"participant '{row.participant}' has {column} '{getattr(row, column)}' here but "
                                 f"'{getattr(first_row, column)}' on line {first_line}", file=path, line=line,
                                 column=column)


def validate_table(kind_name: str, path: str | Path | None = None, *, include_unverified: bool = False,
                   sources_path: str | Path | None = None, allow_outliers: bool = False) -> ValidatedTable:
    """Validate a file of a kind (the bundled one if ``path`` is None) without building a DataFrame.

    Every check of the ``load_*`` functions is made here, and they read its result; ``include_unverified``,
    ``sources_path`` and ``allow_outliers`` mean what they mean there (the source table keeps its unverified
    sources either way). No warning is emitted: the accepted outliers are in the result.
    """
    if kind_name not in KINDS:
        raise InputError(f"unknown kind '{kind_name}' (one of: {', '.join(KINDS)})", option="--kind")
    kind = KINDS[kind_name]
    if path is None:
        if kind.bundled_path is None:
            raise InputError(f"a {kind_name} file has no bundled copy: give its path")
        path = kind.bundled_path
    path = Path(path)
    outliers: list[dict[str, Any]] = []
    rows = _validate(path, kind_name, allow_outliers=allow_outliers, outliers=outliers)
    if kind.has_sources:
        _check_sources(path, rows, sources_path)
    if kind_name == "participant":
        _check_participants(path, rows)
    if not include_unverified and kind.has_sources:  # the source table itself lists every source
        rows = [(line, row) for line, row in rows if row.evidence_type != "unverified"]
    records = []
    conversions: dict[str, set[str]] = {}
    for _, row in rows:
        record = row.model_dump()
        if kind_name == "continuous":
            record["value"], record["unit"] = row.canonical()
        elif kind_name == "participant":
            record["value"], record["lod"], record["unit"] = row.canonical()
            if normalise_unit(row.unit or "") != normalise_unit(MEASURES[row.measure].canonical_unit):
                conversions.setdefault(row.measure, set()).add(row.unit or "")
        records.append(_plain_record(kind_name, record))
    original_units = ({m: sorted(u) for m, u in conversions.items()} if kind_name == "participant" else None)
    return ValidatedTable(kind_name, path, records, outliers, original_units)


def _load(kind_name: str, path: str | Path | None, include_unverified: bool,
          sources_path: str | Path | None, allow_outliers: bool = False) -> pd.DataFrame:
    table = validate_table(kind_name, path, include_unverified=include_unverified, sources_path=sources_path,
                           allow_outliers=allow_outliers)
    _warn_outliers(table.path, table.outliers, stacklevel=3)
    return table.to_frame()


# ------------------------------------------------------------------------------------------------ public API


def load_sources(path: str | Path | None = None) -> pd.DataFrame:
    """The source table: ``source_id, citation, url, evidence_type`` (primary|secondary|unverified)."""
    return _load("sources", path, True, None)


def load_counts(path: str | Path | None = None, include_unverified: bool = False, *,
                sources_path: str | Path | None = None) -> pd.DataFrame:
    """Zimislecel binary end points and adverse events as r of n.

    Columns: ``endpoint, kind, cohort, timepoint_day, r, n, definition, source_id, locator, caveat,
    evidence_type, used_by_default``. The published default has one ``used_by_default`` row per
    (endpoint, cohort, timepoint_day): cohort ``full_dose`` (n = 12) for efficacy, ``all_dosed`` (n = 14) for
    safety; other rows (interim data cuts, earlier visits, part A) are kept for context. ``r`` and ``n`` are
    whole numbers with 0 <= r <= n and 1 <= n <= ``MAX_COUNT`` (ten million).
    """
    return _load("counts", path, include_unverified, sources_path)


def load_cpeptide_means(path: str | Path | None = None, include_unverified: bool = False, *,
                        sources_path: str | Path | None = None, allow_outliers: bool = False) -> pd.DataFrame:
    """Cohort-mean C-peptide by day: ``day, mean_pmol_l, n, lod_pmol_l, spread_kind, spread_value, series,
    source_id, locator, caveat, evidence_type, used_by_default``. Empty spread = none published.

    Means and LODs above the C-peptide plausibility bound are refused unless ``allow_outliers=True`` (then
    listed in ``attrs['outliers']``, with an :class:`ImplausibleValueWarning`)."""
    return _load("cpeptide", path, include_unverified, sources_path, allow_outliers)


def load_continuous(path: str | Path | None = None, include_unverified: bool = False, *,
                    sources_path: str | Path | None = None, allow_outliers: bool = False) -> pd.DataFrame:
    """Continuous summaries (HbA1c, time in range, glucose CV, insulin dose, single C-peptide values).

    Values are converted to the measure's canonical unit (C-peptide pmol/L, HbA1c %, insulin U/day); the
    ``unit`` column then names that unit. A change in a percentage is in percentage points. Summaries of one
    measure, cohort, day and source must be ordered (min <= mean, median <= max). A level (mean, median, min,
    max, individual value) outside its plausibility bound is refused unless ``allow_outliers=True``.
    """
    return _load("continuous", path, include_unverified, sources_path, allow_outliers)


def load_comparators(path: str | Path | None = None, include_unverified: bool = False, *,
                     sources_path: str | Path | None = None) -> pd.DataFrame:
    """Comparator studies: ``study, endpoint, r, n, percent, timepoint, timepoint_day, time_anchor, group,
    definition, in_default_map, source_id, locator, caveat, evidence_type``. ``r``/``n`` are empty where no
    count can be had from the source; ``in_default_map`` marks the default MAP set per endpoint."""
    return _load("comparators", path, include_unverified, sources_path)


def load_durability(path: str | Path | None = None, include_unverified: bool = False, *,
                    sources_path: str | Path | None = None) -> pd.DataFrame:
    """Durability of insulin independence and graft function in comparator cohorts."""
    return _load("durability", path, include_unverified, sources_path)


def load_reference_values(path: str | Path | None = None, include_unverified: bool = False, *,
                          sources_path: str | Path | None = None) -> pd.DataFrame:
    """Published figures isletbayes uses as model inputs, thresholds or planning assumptions.

    Columns: ``quantity, value, unit, population, definition, used_for, source_id, locator, caveat,
    evidence_type, used_by_default`` (at most one default row per quantity). Not trial results of zimislecel:
    e.g. ``mmtt_cpeptide_within_person_cv`` (repeatability of MMTT C-peptide, a prior on assay/visit noise),
    ``stimulated_cpeptide_cut_point`` (the CITR cut point behind the 970 pmol/L C-peptide end point),
    ``phase3_planned_size``.
    """
    return _load("reference", path, include_unverified, sources_path)


def load_participant_data(path: str | Path, *, allow_outliers: bool = False) -> pd.DataFrame:
    """Participant-level data in long format, one row per participant, visit and measure.

    Columns: ``participant, cohort, dose, day, measure, value, unit, below_lod, lod``. Values and LODs are
    converted to the measure's canonical unit (C-peptide to pmol/L from nmol/L or ng/mL; HbA1c to % from
    mmol/mol) and ``unit`` names it; a below-LOD value may be empty (NaN). ``attrs['original_units']`` records
    the conversions made.

    Plausibility: a value, LOD, day or cell dose outside its bound (:data:`isletbayes.data.units.PLAUSIBLE`,
    checked after conversion) raises :class:`InputError` naming file, line, column, the bound and its reason.
    ``allow_outliers=True`` keeps such deliberate outliers: they are loaded, listed in ``attrs['outliers']``
    and announced by one :class:`ImplausibleValueWarning`. Hard limits (negative values, a percentage above
    100, a binary measure other than 0/1, a day beyond 100 years) are refused either way.
    """
    return _load("participant", path, True, None, allow_outliers)


def _validate_file(path: str | Path, kind: str | None, allow_outliers: bool) -> ValidatedTable:
    """A file of any kind (told by its header unless given), all rows, unverified included; the accepted outliers
    are announced once, with a warning pointing at the caller of :func:`load_file` or :func:`check_file`."""
    kind = kind if kind is not None else detect_kind(read_header(path), file=path)
    table = validate_table(kind, path, include_unverified=True, allow_outliers=allow_outliers)
    _warn_outliers(table.path, table.outliers, stacklevel=3)
    return table


def load_file(path: str | Path, kind: str | None = None, *, allow_outliers: bool = False) -> tuple[str, pd.DataFrame]:
    """Validate a file of any kind (told by its header unless given); all rows, unverified included.

    ``allow_outliers`` keeps the values outside a plausibility bound (participant, cpeptide and continuous files,
    the kinds that have such bounds)."""
    table = _validate_file(path, kind, allow_outliers)
    return table.kind, table.to_frame()


def check_file(path: str | Path, kind: str | None = None, *, allow_outliers: bool = False) -> dict[str, Any]:
    """Validate a data file and summarise it; raises InputError on the first problem.

    The same checks as :func:`load_file`, read from the validated rows (no pandas). The summary always has
    ``file, kind, rows, columns`` and ``outliers`` (the values outside a plausibility bound that
    ``allow_outliers=True`` accepted, each ``{'line', 'column', 'message'}``; empty otherwise); per kind it adds
    what a reader wants to see (participants, measures and unit conversions; endpoints with their counts; rows
    left out by default).
    """
    table = _validate_file(path, kind, allow_outliers)
    kind = table.kind
    rows = table.records
    columns = KINDS[kind].columns
    summary: dict[str, Any] = {"file": str(path), "kind": kind, "description": KINDS[kind].description,
                               "rows": len(rows), "columns": list(columns), "outliers": list(table.outliers)}
    if "evidence_type" in columns:
        evidence = table.column("evidence_type")
        summary["evidence_types"] = dict(Counter(evidence).most_common())
        summary["unverified_rows"] = evidence.count("unverified")
    if "source_id" in columns and kind != "sources":
        summary["sources"] = sorted(set(table.column("source_id")))
    if kind == "participant":
        summary["participants"] = len(set(table.column("participant")))
        cohorts: dict[str, set[str]] = {}
        for row in rows:
            cohorts.setdefault(row["cohort"], set()).add(row["participant"])
        summary["cohorts"] = {cohort: len(cohorts[cohort]) for cohort in sorted(cohorts)}
        summary["measures"] = _tally(table.column("measure"))
        summary["days"] = sorted(set(table.column("day")))
        summary["below_lod_rows"] = sum(table.column("below_lod"))
        summary["converted_units"] = {m: {"from": u, "to": MEASURES[m].canonical_unit}
                                      for m, u in (table.original_units or {}).items()}
    elif kind == "counts":
        summary["default_counts"] = [
            {"endpoint": r["endpoint"], "cohort": r["cohort"], "timepoint_day": r["timepoint_day"], "r": r["r"],
             "n": r["n"], "source_id": r["source_id"]} for r in table.flagged("used_by_default")]
        summary["rows_not_used_by_default"] = len(table.flagged("used_by_default", False))
    elif kind == "cpeptide":
        summary["means"] = [{"day": r["day"], "mean_pmol_l": float(r["mean_pmol_l"]), "n": r["n"]} for r in rows]
    elif kind == "continuous":
        summary["measures"] = _tally(table.column("measure"))
        summary["rows_not_used_by_default"] = len(table.flagged("used_by_default", False))
    elif kind == "comparators":
        summary["default_map"] = [{"study": r["study"], "endpoint": r["endpoint"], "r": r["r"], "n": r["n"]}
                                  for r in table.flagged("in_default_map")]
    elif kind == "durability":
        summary["measures"] = _tally(table.column("measure"))
    elif kind == "reference":
        summary["default_values"] = [
            {"quantity": r["quantity"], "value": float(r["value"]), "unit": r["unit"], "source_id": r["source_id"]}
            for r in table.flagged("used_by_default")]
    return summary


def _tally(values: list[str]) -> dict[str, int]:
    """How many times each value occurs, by value."""
    counts = Counter(values)
    return {value: counts[value] for value in sorted(counts)}


def is_missing(value: Any) -> bool:
    """An empty cell of a :class:`ValidatedTable`: None (a whole number) or NaN (a decimal)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def published_count(endpoint: str, cohort: str | None = None, timepoint_day: int | None = None,
                    path: str | Path | None = None) -> tuple[int, int]:
    """(r, n) of the one default row for an end point, e.g. ``published_count('insulin_independence')``
    -> (10, 12). ``cohort``/``timepoint_day`` narrow the search (None = any). InputError, naming the counts
    file and the end point, if no row or several match. :func:`isletbayes.data.endpoint_count` is the same
    lookup with the participant-data override."""
    from isletbayes.data.endpoints import default_count

    return default_count(load_counts(path), endpoint, cohort=cohort, day=timepoint_day)
