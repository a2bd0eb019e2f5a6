"""Plausibility bounds and hard limits: every measure's bound refuses a value with file, line and column and a
message naming the bound and the override; ``allow_outliers=True`` keeps a deliberate outlier (recorded and
warned about); hard limits hold whatever the caller asks, and huge numbers are refused instead of
overflowing."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from isletbayes.data import (
    KINDS,
    MAX_COUNT,
    MAX_DAY,
    MEASURES,
    PLAUSIBLE,
    PUBLISHED_DIR,
    ImplausibleValueWarning,
    InputError,
    check_file,
    load_continuous,
    load_counts,
    load_cpeptide_means,
    load_participant_data,
)

HEADER = ["participant", "cohort", "dose", "day", "measure", "value", "unit", "below_lod", "lod"]
GOOD = ["P01", "full", 0.8, 90, "cpeptide", 400, "pmol/L", "false", 13]


def write_rows(path: Path, header: list[str], rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def participant_file(tmp_path: Path, rows: list[list]) -> Path:
    return write_rows(tmp_path / "p.csv", HEADER, [dict(zip(HEADER, map(str, r))) for r in rows])


def edited(tmp_path: Path, kind: str, row_index: int, **changes: str) -> Path:
    with open(KINDS[kind].bundled_path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header, rows = list(reader.fieldnames), list(reader)
    rows[row_index] = {**rows[row_index], **changes}
    return write_rows(tmp_path / f"{kind}.csv", header, rows)


def refused(loader, path, *, line, column, match):
    with pytest.raises(InputError, match=match) as info:
        loader(path)
    err = info.value
    assert (err.file, err.line, err.column) == (str(path), line, column)
    assert "\n" not in str(err)
    return err


# one case per measure and bound: (row written on line 3 after a good row, column blamed, bound named)
CASES = {
    "cpeptide_high": (["P01", "full", 0.8, 180, "cpeptide", 25000, "pmol/L", "false", 13], "value", "cpeptide",
                      "above the plausible maximum of 10000 pmol/L"),
    "cpeptide_unit_slip": (["P01", "full", 0.8, 180, "cpeptide", 1274, "nmol/L", "false", 0.013], "value",
                           "cpeptide", r"1\.274e\+06 pmol/L \(given as 1274 nmol/L\) is above the plausible "
                                       "maximum of 10000"),
    "cpeptide_lod_high": (["P01", "full", 0.8, 180, "cpeptide", "", "pmol/L", "true", 20000], "lod", "cpeptide",
                          "cpeptide lod 20000 pmol/L is above the plausible maximum of 10000"),
    "cpeptide_fasting_high": (["P01", "full", 0.8, 180, "cpeptide_fasting", 8000, "pmol/L", "false", 13], "value",
                              "cpeptide_fasting", "above the plausible maximum of 5000 pmol/L"),
    "hba1c_high": (["P01", "full", 0.8, 180, "hba1c", 31, "%", "false", ""], "value", "hba1c",
                   "above the plausible maximum of 25%"),
    "hba1c_low": (["P01", "full", 0.8, 180, "hba1c", 2.5, "%", "false", ""], "value", "hba1c",
                  "below the plausible minimum of 3%"),
    "hba1c_percent_typed_as_mmol": (["P01", "full", 0.8, 180, "hba1c", 7, "mmol/mol", "false", ""], "value",
                                    "hba1c", r"\(given as 7 mmol/mol\) is below the plausible minimum of 3%"),
    "glucose_cv_high": (["P01", "full", 0.8, 180, "glucose_cv", 140, "%", "false", ""], "value", "glucose_cv",
                        "above the plausible maximum of 100%"),
    "glucose_cv_fraction": (["P01", "full", 0.8, 180, "glucose_cv", 0.36, "%", "false", ""], "value",
                            "glucose_cv", "below the plausible minimum of 5%"),
    "insulin_dose_high": (["P01", "full", 0.8, 180, "insulin_dose", 800, "U/day", "false", ""], "value",
                          "insulin_dose", "above the plausible maximum of 500 U/day"),
    "she_count_high": (["P01", "full", 0.8, 180, "she_count", 150, "events", "false", ""], "value", "she_count",
                       "above the plausible maximum of 100 events"),
    "she_count_huge": (["P01", "full", 0.8, 180, "she_count", 1e300, "events", "false", ""], "value", "she_count",
                       "she_count 1e\\+300 events is above the plausible maximum"),
    "day_beyond_30_years": (["P01", "full", 0.8, 12000, "hba1c", 6.5, "%", "false", ""], "day", "day",
                            "day 12000 is above the plausible maximum of 10958"),
    "dose_in_cells": (["P02", "full", 8e8, 180, "hba1c", 6.5, "%", "false", ""], "dose", "dose",
                      r"dose 8e\+08 x10\^9 cells is above the plausible maximum of 10"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_plausibility_bound_is_refused_then_kept_with_the_override(tmp_path, case):
    row, column, name, bound = CASES[case]
    path = participant_file(tmp_path, [GOOD, row])
    err = refused(load_participant_data, path, line=3, column=column, match=bound)
    # the message names the bound's reason and both spellings of the override
    assert PLAUSIBLE[name].reason in str(err)
    assert "allow_outliers=True" in str(err) and "--allow-outliers" in str(err)
    # a deliberate outlier is kept: loaded, recorded with its place, and announced once
    with pytest.warns(ImplausibleValueWarning, match=rf"1 value\(s\).*{re.escape(str(path))}, line 3, "
                                                      rf"column '{column}'"):
        frame = load_participant_data(path, allow_outliers=True)
    assert len(frame) == 2
    assert [(o["line"], o["column"]) for o in frame.attrs["outliers"]] == [(3, column)]
    assert re.search(bound, frame.attrs["outliers"][0]["message"])


def test_values_at_a_bound_are_plausible(tmp_path):
    path = participant_file(tmp_path, [
        ["P01", "full", 10, 0, "cpeptide", 10000, "pmol/L", "false", 13],
        ["P01", "full", 10, 10958, "hba1c", 25, "%", "false", ""],
        ["P01", "full", 10, 90, "hba1c", 3, "%", "false", ""],
        ["P01", "full", 10, 180, "insulin_dose", 500, "U/day", "false", ""],
        ["P01", "full", 10, 270, "glucose_cv", 5, "%", "false", ""],
        ["P01", "full", 10, 365, "she_count", 100, "events", "false", ""],
    ])
    frame = load_participant_data(path)
    assert frame.attrs["outliers"] == []
    assert frame["value"].max() == 10000.0


def test_every_plausibility_bound_belongs_to_a_measure_or_a_column():
    participant_columns = set(KINDS["participant"].columns)
    assert set(PLAUSIBLE) <= set(MEASURES) | participant_columns
    # every measure that is not binary or bounded by its definition has one
    assert set(MEASURES) - set(PLAUSIBLE) == {"tir_70_180", "insulin_independent", "off_insulin"}
    for bound in PLAUSIBLE.values():
        assert bound.reason and "\n" not in bound.reason
        assert bound.low is not None or bound.high is not None


def test_time_in_range_is_bounded_by_its_definition_even_with_the_override(tmp_path):
    path = participant_file(tmp_path, [GOOD, ["P01", "full", 0.8, 180, "tir_70_180", 103, "%", "false", ""]])
    refused(load_participant_data, path, line=3, column="value", match="above its maximum of 100")
    refused(lambda p: load_participant_data(p, allow_outliers=True), path, line=3, column="value",
            match="above its maximum of 100")
    path = participant_file(tmp_path, [GOOD, ["P01", "full", 0.8, 180, "tir_70_180", 0, "%", "false", ""]])
    assert load_participant_data(path).attrs["outliers"] == []  # 0% in range can happen


@pytest.mark.parametrize("text", ["36526", "100000000000000000000", str(10**400)])
def test_a_day_beyond_100_years_is_refused_not_overflowed(tmp_path, text):
    for allow in (False, True):
        path = participant_file(tmp_path, [GOOD, ["P01", "full", 0.8, text, "hba1c", 6.5, "%", "false", ""]])
        err = refused(lambda p: load_participant_data(p, allow_outliers=allow), path, line=3, column="day",
                      match="beyond any follow-up|not a whole number")
        if len(text) < 30:
            assert f"largest day accepted is {MAX_DAY}" in str(err)
    path = participant_file(tmp_path, [GOOD, ["P01", "full", 0.8, "1e20", "hba1c", 6.5, "%", "false", ""]])
    refused(load_participant_data, path, line=3, column="day", match="'1e20' is not a whole number")
    # the same hard limit on the day columns of the published kinds
    path = edited(tmp_path, "cpeptide", 1, day="100000000000000000000")
    refused(load_cpeptide_means, path, line=3, column="day", match=f"largest day accepted is {MAX_DAY}")
    path = edited(tmp_path, "counts", 1, timepoint_day="99999999")
    refused(load_counts, path, line=3, column="timepoint_day", match="beyond any follow-up")


def test_a_value_too_large_to_convert_is_refused(tmp_path):
    path = participant_file(tmp_path, [GOOD, ["P01", "full", 0.8, 180, "cpeptide", 1e306, "nmol/L", "false", ""]])
    for allow in (False, True):
        refused(lambda p: load_participant_data(p, allow_outliers=allow), path, line=3, column="value",
                match="too large to convert")
    path = participant_file(tmp_path, [GOOD, ["P01", "full", 0.8, 180, "cpeptide", 1e400, "pmol/L", "false", ""]])
    refused(load_participant_data, path, line=3, column="value", match="must be a finite number")


@pytest.mark.parametrize("column", ["n", "r"])
def test_counts_above_ten_million_are_refused(tmp_path, column):
    big = "100000000000000000000000"
    changes = {"n": big} if column == "n" else {"r": big, "n": big}
    path = edited(tmp_path, "counts", 0, **changes)
    err = refused(load_counts, path, line=2, column=column, match="above the largest count accepted")
    assert str(MAX_COUNT) in str(err)
    assert load_counts(edited(tmp_path, "counts", 0, n=str(MAX_COUNT)))["n"].max() == MAX_COUNT


def test_count_bound_holds_in_every_published_kind(tmp_path):
    for kind, row, column in [("cpeptide", 0, "n"), ("continuous", 0, "n"), ("comparators", 0, "n"),
                              ("durability", 2, "n")]:
        path = edited(tmp_path, kind, row, **{column: str(MAX_COUNT + 1)})
        with pytest.raises(InputError, match="above the largest count accepted") as info:
            check_file(path)
        assert (info.value.line, info.value.column) == (row + 2, column)


def test_cpeptide_means_file_bounds_and_override(tmp_path):
    path = edited(tmp_path, "cpeptide", 3, mean_pmol_l="1274000")  # nmol/L * 1000 typed twice
    err = refused(load_cpeptide_means, path, line=5, column="mean_pmol_l",
                  match="above the plausible maximum of 10000 pmol/L")
    assert "allow_outliers=True" in str(err)
    with pytest.warns(ImplausibleValueWarning):
        frame = load_cpeptide_means(path, allow_outliers=True)
    assert frame["mean_pmol_l"].max() == 1274000.0
    assert [(o["line"], o["column"]) for o in frame.attrs["outliers"]] == [(5, "mean_pmol_l")]
    path = edited(tmp_path, "cpeptide", 0, lod_pmol_l="13000")
    refused(load_cpeptide_means, path, line=2, column="lod_pmol_l", match="plausible maximum")


def test_continuous_file_bounds_levels_not_changes(tmp_path):
    path = edited(tmp_path, "continuous", 6, value="62")  # HbA1c day-180 mean (ADDRM) typed x10
    refused(load_continuous, path, line=8, column="value", match="hba1c 62% is above the plausible maximum of 25%")
    with pytest.warns(ImplausibleValueWarning):
        assert load_continuous(path, allow_outliers=True).loc[6, "value"] == 62.0
    path = edited(tmp_path, "continuous", 6, value="44", unit="mmol/mol")  # converted first: 6.2%, plausible
    assert load_continuous(path).loc[6, "value"] == pytest.approx(44 / 10.929 + 2.15)
    # a change from baseline is not a level: no plausibility bound applies to it
    header_row = 7  # hba1c change at day 365 (file line 9)
    assert load_continuous(edited(tmp_path, "continuous", header_row, value="-30")).loc[header_row, "value"] == -30


def test_continuous_summaries_must_be_ordered(tmp_path):
    path = edited(tmp_path, "continuous", 1, value="8.1")  # baseline HbA1c min above the mean of 7.8 (line 2)
    err = refused(load_continuous, path, line=3, column="value", match="min 8.1% is above the mean 7.8%")
    assert "on line 2" in str(err)
    path = edited(tmp_path, "continuous", 14, value="90")  # TIR max at day 365 below its mean of 93.3
    refused(load_continuous, path, line=16, column="value", match="max 90% is below the mean 93.3% on line 14")
    path = edited(tmp_path, "continuous", 23, value="-30")  # dose cut: min -30% above the max -36% (line 27)
    refused(load_continuous, path, line=27, column="value",
            match="percent_change_max -36% is below the percent_change_min -30% on line 25")
    # another source's summary is not compared: the ADDRM baseline mean of 10.5% sits outside the other range
    frame = load_continuous(edited(tmp_path, "continuous", 3, value="10.5"))
    assert frame.loc[3, "value"] == 10.5


def test_check_file_passes_the_override_and_lists_the_outliers(tmp_path):
    path = participant_file(tmp_path, [GOOD, ["P01", "full", 0.8, 180, "insulin_dose", 800, "U/day", "false", ""]])
    with pytest.raises(InputError, match="plausible maximum of 500 U/day"):
        check_file(path)
    with pytest.warns(ImplausibleValueWarning):
        summary = check_file(path, allow_outliers=True)
    assert [(o["line"], o["column"]) for o in summary["outliers"]] == [(3, "value")]
    assert check_file(PUBLISHED_DIR / "zimislecel_counts.csv")["outliers"] == []


def test_published_readme_documents_every_bound():
    text = (PUBLISHED_DIR / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Plausibility bounds"):]
    for name, bound in PLAUSIBLE.items():
        line = next((ln for ln in section.splitlines() if ln.startswith(f"| `{name}`")), None)
        assert line is not None, name
        for limit in (bound.low, bound.high):
            if limit is not None:
                assert f"{limit:g}" in line.replace(",", ""), (name, limit)
    assert f"{MAX_DAY}" in section.replace(",", "") and f"{MAX_COUNT}" in section.replace(",", "")
    assert "allow_outliers=True" in section and "--allow-outliers" in section
