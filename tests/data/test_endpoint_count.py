"""endpoint_count: the one (r, n) lookup. Participant-level data override the published count for the end points
they determine (counted independently here from the raw file), the counts table answers otherwise, and a
lookup that does not find exactly one default row is one InputError naming the file and the end point."""

from __future__ import annotations

import csv
import doctest
from pathlib import Path

import pandas as pd
import pytest

from isletbayes.data import (
    PARTICIPANT_ENDPOINTS,
    PARTICIPANT_EXAMPLE,
    PUBLISHED_DIR,
    InputError,
    endpoint_count,
    load_counts,
    load_participant_data,
    published_count,
)

HEADER = ["participant", "cohort", "dose", "day", "measure", "value", "unit", "below_lod", "lod"]


def participant_file(tmp_path: Path, rows: list[list]) -> Path:
    path = tmp_path / "p.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path


def test_published_counts_by_default():
    assert endpoint_count("insulin_independence") == (10, 12)
    assert endpoint_count("serious_neutropenia") == (3, 14)
    assert endpoint_count("c_peptide_positive", day=0) == (0, 14)
    assert endpoint_count("c_peptide_positive") == (14, 14)
    assert endpoint_count("hba1c_below_7", day=365) == (12, 12)
    # the same lookup as published_count, which names no day
    assert published_count("insulin_independence") == endpoint_count("insulin_independence")


def test_counts_given_as_a_frame_or_a_file(tmp_path):
    frame = load_counts()
    frame.loc[(frame["endpoint"] == "insulin_independence") & frame["used_by_default"], ["r", "n"]] = [7, 9]
    assert endpoint_count("insulin_independence", counts=frame) == (7, 9)
    path = tmp_path / "counts.csv"
    frame.to_csv(path, index=False)
    (tmp_path / "sources.csv").write_bytes((PUBLISHED_DIR / "sources.csv").read_bytes())
    assert endpoint_count("insulin_independence", counts=path) == (7, 9)


def test_participant_data_override_the_published_count():
    raw = pd.read_csv(PARTICIPANT_EXAMPLE)
    ii = raw[(raw["measure"] == "insulin_independent") & (raw["day"] == 365)]
    expected = (int((ii["value"] == 1).sum()), int(ii["participant"].nunique()))
    assert expected != (10, 12)
    assert endpoint_count("insulin_independence", participant=PARTICIPANT_EXAMPLE) == expected
    assert endpoint_count("insulin_independence", participant=str(PARTICIPANT_EXAMPLE)) == expected
    frame = load_participant_data(PARTICIPANT_EXAMPLE)
    assert endpoint_count("insulin_independence", participant=frame) == expected
    # one cohort: filter the frame first
    full = frame[frame["cohort"] == "synthetic_full_dose"]
    sub = ii[ii["cohort"] == "synthetic_full_dose"]
    assert endpoint_count("insulin_independence", participant=full) == (int((sub["value"] == 1).sum()), len(sub))
    # HbA1c below 7% at each visit, counted from the raw file
    for day in (0, 180, 365):
        h = raw[(raw["measure"] == "hba1c") & (raw["day"] == day)]
        assert endpoint_count("hba1c_below_7", participant=frame, day=day) == (int((h["value"] < 7).sum()), len(h))


def test_each_derived_rule_at_its_threshold(tmp_path):
    path = participant_file(tmp_path, [
        ["A", "c", 0.8, 365, "hba1c", 7.0, "%", "", ""],           # exactly 7%: not below 7
        ["B", "c", 0.8, 365, "hba1c", 6.9, "%", "", ""],
        ["C", "c", 0.8, 365, "hba1c", 53, "mmol/mol", "", ""],    # 53 mmol/mol = 7.0% after conversion
        ["A", "c", 0.8, 365, "tir_70_180", 70.0, "%", "", ""],    # exactly 70%: not more than 70
        ["B", "c", 0.8, 365, "tir_70_180", 70.1, "%", "", ""],
        ["A", "c", 0.8, 180, "off_insulin", 1, "", "", ""],
        ["B", "c", 0.8, 180, "off_insulin", 0, "", "", ""],
        ["C", "c", 0.8, 180, "off_insulin", 1, "", "", ""],
        ["A", "c", 0.8, 365, "insulin_independent", 0, "", "", ""],
    ])
    frame = load_participant_data(path)
    assert endpoint_count("hba1c_below_7", participant=frame) == (1, 3)
    assert endpoint_count("tir_above_70", participant=frame) == (1, 2)
    assert endpoint_count("off_insulin", participant=frame, day=180) == (2, 3)
    assert endpoint_count("insulin_independence", participant=frame) == (0, 1)
    assert set(PARTICIPANT_ENDPOINTS) == {"insulin_independence", "off_insulin", "hba1c_below_7", "tir_above_70"}


def test_published_count_when_participant_data_do_not_hold_the_end_point(tmp_path):
    path = participant_file(tmp_path, [
        ["A", "c", 0.8, 180, "insulin_independent", 1, "", "", ""],  # another day
        ["A", "c", 0.8, 365, "she_count", 0, "events", "", ""],       # she_free is never derived
        ["A", "c", 0.8, 365, "cpeptide", 900, "pmol/L", "false", 13],  # nor c_peptide_positive
    ])
    assert endpoint_count("insulin_independence", participant=path) == (10, 12)
    assert endpoint_count("she_free", participant=path) == (12, 12)
    assert endpoint_count("c_peptide_positive", participant=path) == (14, 14)
    assert endpoint_count("insulin_independence", participant=path, day=180) == (1, 1)


def test_no_default_row_names_the_file_and_the_end_point():
    with pytest.raises(InputError, match="no default row for end point 'no_such_endpoint'") as info:
        endpoint_count("no_such_endpoint")
    err = info.value
    assert err.key == "no_such_endpoint"
    assert err.file == str(PUBLISHED_DIR / "zimislecel_counts.csv")
    assert "insulin_independence" in str(err) and "\n" not in str(err)
    with pytest.raises(InputError, match="at day 180.*its default rows: all_dosed, day 0; all_dosed, day 365"):
        endpoint_count("c_peptide_positive", day=180)


def test_several_default_rows_are_refused():
    frame = load_counts()
    extra = frame[frame["used_by_default"] & (frame["endpoint"] == "insulin_independence")].assign(
        cohort="another_cohort", r=1, n=2)
    frame = pd.concat([frame, extra], ignore_index=True)
    frame.attrs["source_file"] = "my_counts.csv"
    with pytest.raises(InputError, match="2 default rows for end point 'insulin_independence' at day 365") as info:
        endpoint_count("insulin_independence", counts=frame)
    assert (info.value.file, info.value.key) == ("my_counts.csv", "insulin_independence")
    assert "full_dose, day 365; another_cohort, day 365" in str(info.value)


def test_the_docstring_examples_run():
    from isletbayes.data import endpoints

    assert doctest.testmod(endpoints).failed == 0
