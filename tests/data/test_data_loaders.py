"""The bundled published data and the loaders: the numbers equal the published ones, every row's source
exists, and every kind of bad input gives one InputError naming file, line and column."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pandas as pd
import pytest

from isletbayes.data import (
    KINDS,
    PARTICIPANT_EXAMPLE,
    PMOL_L_PER_NG_ML,
    PUBLISHED_DIR,
    InputError,
    check_file,
    detect_kind,
    load_comparators,
    load_continuous,
    load_counts,
    load_cpeptide_means,
    load_durability,
    load_file,
    load_participant_data,
    load_reference_values,
    load_sources,
    published_count,
)
from isletbayes.data.loaders import is_missing, validate_table

BUNDLED = {name: kind.bundled_path for name, kind in KINDS.items() if kind.bundled_path is not None}
LOADERS = {"counts": load_counts, "cpeptide": load_cpeptide_means, "continuous": load_continuous,
           "comparators": load_comparators, "durability": load_durability, "reference": load_reference_values}


# ------------------------------------------------------------------------------------------------ helpers


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames), list(reader)


def write_rows(path: Path, header: list[str], rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def edited(tmp_path: Path, kind: str, row_index: int, **changes: str) -> Path:
    """A copy of a bundled file with cells of one data row changed (row_index 0 = file line 2)."""
    header, rows = read_rows(BUNDLED[kind])
    rows[row_index] = {**rows[row_index], **changes}
    return write_rows(tmp_path / f"{kind}.csv", header, rows)


def participant_file(tmp_path: Path, rows: list[list], name: str = "p.csv") -> Path:
    header = ["participant", "cohort", "dose", "day", "measure", "value", "unit", "below_lod", "lod"]
    return write_rows(tmp_path / name, header, [dict(zip(header, map(str, r))) for r in rows])


GOOD_P = ["P01", "full", 0.8, 90, "cpeptide", 400, "pmol/L", "false", 13]


def raises(path, loader, *, line, column, match):
    with pytest.raises(InputError, match=match) as info:
        loader(path)
    err = info.value
    assert err.file == str(path)
    assert err.line == line
    assert err.column == column
    assert "\n" not in str(err)
    return err


# ------------------------------------------------------------------------------------------------ bundled data


@pytest.mark.parametrize("kind", sorted(BUNDLED))
def test_bundled_files_load_and_are_detected(kind):
    summary = check_file(BUNDLED[kind])
    assert summary["kind"] == kind
    assert summary["rows"] > 0
    assert BUNDLED[kind].read_bytes().decode("utf-8")  # UTF-8


def test_counts_equal_the_published_figures():
    expected = {
        ("insulin_independence", "full_dose", 365): (10, 12),
        ("composite_primary", "full_dose", 365): (12, 12),
        ("she_free", "full_dose", 365): (12, 12),
        ("hba1c_below_7", "full_dose", 365): (12, 12),
        ("tir_above_70", "full_dose", 365): (12, 12),
        ("c_peptide_positive", "all_dosed", 0): (0, 14),
        ("c_peptide_positive", "all_dosed", 365): (14, 14),
        ("serious_neutropenia", "all_dosed", 365): (3, 14),
        ("death", "all_dosed", 365): (2, 14),
        ("acute_kidney_injury", "all_dosed", 365): (2, 14),
    }
    counts = load_counts()
    default = counts[counts["used_by_default"]]
    got = {(r.endpoint, r.cohort, int(r.timepoint_day)): (int(r.r), int(r.n)) for r in default.itertuples()}
    assert got == expected
    assert set(default.loc[default["kind"] == "safety", "endpoint"]) == {
        "serious_neutropenia", "death", "acute_kidney_injury"}
    assert published_count("insulin_independence") == (10, 12)
    assert published_count("serious_neutropenia") == (3, 14)
    # interim time points are there for context, never used by default
    interim = counts[counts["cohort"] == "full_dose_interim"]
    pairs = {(r.endpoint, int(r.r), int(r.n)) for r in interim.itertuples()}
    assert {("off_insulin", 7, 10), ("off_insulin", 9, 12), ("composite_primary", 4, 4),
            ("insulin_independence", 4, 4), ("composite_primary", 3, 3), ("insulin_independence", 3, 12),
            ("off_insulin", 10, 12), ("insulin_reduced", 11, 12)} <= pairs
    assert not interim["used_by_default"].any()


def test_published_count_refuses_an_ambiguous_request():
    with pytest.raises(InputError, match="2 default rows") as info:
        published_count("c_peptide_positive")
    assert info.value.key == "c_peptide_positive"
    assert published_count("c_peptide_positive", timepoint_day=365) == (14, 14)
    with pytest.raises(InputError, match="no default row"):
        published_count("no_such_endpoint")


def test_cpeptide_means_equal_the_published_figures():
    cp = load_cpeptide_means()
    assert cp["day"].tolist() == [90, 180, 270, 365]
    assert cp["mean_pmol_l"].tolist() == [424.0, 1036.0, 1104.0, 1274.0]
    assert (cp["n"] == 12).all() and (cp["lod_pmol_l"] == 13.0).all()
    # no spread is published, and the series is an assumption that the caveat states
    assert (cp["spread_kind"] == "").all() and cp["spread_value"].isna().all()
    assert (cp["series"] == "mmtt_stimulated_90min_assumed").all()
    assert cp["caveat"].str.contains("assumption").all() and cp["caveat"].str.contains("no SD or CI").all()


def test_continuous_default_values():
    cont = load_continuous()
    d = cont[cont["used_by_default"]].set_index(["measure", "cohort", "day", "statistic"])["value"]
    assert d[("hba1c", "full_dose", 0, "mean")] == 7.8
    assert d[("hba1c", "full_dose", 365, "change")] == -1.81
    assert d[("tir_70_180", "full_dose", 0, "mean")] == 49.5
    assert d[("tir_70_180", "full_dose", 365, "mean")] == 93.3
    assert d[("glucose_cv", "full_dose", 365, "mean")] == 20.0
    assert d[("insulin_dose", "full_dose", 0, "mean")] == 39.3
    assert d[("insulin_dose", "full_dose", 365, "percent_change")] == -92.0
    assert d[("insulin_dose", "full_dose_not_insulin_independent", 365, "percent_change_min")] == -70.0
    assert not d.index.duplicated().any()


def test_continuous_ranges_for_the_joint_cpeptide_model():
    """The published ranges and the two dose cuts, each a default row with source, locator and caveat."""
    cont = load_continuous()
    default = cont[cont["used_by_default"]].set_index(["measure", "cohort", "day", "statistic"])
    expected = {
        ("hba1c", "full_dose", 0, "mean"): 7.8, ("hba1c", "full_dose", 0, "min"): 7.1,
        ("hba1c", "full_dose", 0, "max"): 9.9,
        ("hba1c", "full_dose", 120, "min"): 5.7, ("hba1c", "full_dose", 120, "max"): 6.7,
        ("tir_70_180", "full_dose", 365, "mean"): 93.3, ("tir_70_180", "full_dose", 365, "min"): 79.5,
        ("tir_70_180", "full_dose", 365, "max"): 96.9,
        ("insulin_dose", "full_dose_not_insulin_independent", 365, "percent_change_min"): -70.0,
        ("insulin_dose", "full_dose_not_insulin_independent", 365, "percent_change_max"): -36.0,
    }
    for key, value in expected.items():
        row = default.loc[key]
        assert row["value"] == value, key
        assert row["source_id"] and row["locator"] and row["caveat"], key
    assert (default.loc[[k for k in expected if k[0] != "insulin_dose"], "n"] == 12).all()
    cuts = default.loc[[k for k in expected if k[0] == "insulin_dose"]]
    assert (cuts["n"] == 2).all() and cuts["caveat"].str.contains("glucocorticoid").all()
    # the two cuts have a second, independent source (provenance only)
    others = cont[~cont["used_by_default"] & (cont["cohort"] == "full_dose_not_insulin_independent")]
    assert sorted(others["value"]) == [-70.0, -36.0] and set(others["source_id"]) == {"usnews2025"}


def test_reference_values_used_by_the_models_and_the_design():
    ref = load_reference_values()
    default = ref[ref["used_by_default"]].set_index("quantity")
    assert not default.index.duplicated().any()
    cv = default.loc["mmtt_cpeptide_within_person_cv"]
    assert (cv["value"], cv["unit"], cv["source_id"]) == (18.2, "%", "mmtt_repeatability2021")
    assert "type 2 diabetes" in cv["caveat"] and "incremental AUC" in cv["caveat"]
    cut = default.loc["stimulated_cpeptide_cut_point"]
    assert (cut["value"], cut["unit"], cut["source_id"]) == (0.97, "nmol/L", "baidal2023")
    assert "677" in cut["population"]
    assert default.loc["phase3_planned_size", "value"] == 50
    assert default.loc["phase3_persistence_days", "evidence_type"] == "secondary"
    assert "paraphrase" in default.loc["phase3_persistence_days", "caveat"]
    # p1 = 0.70 of the design is a convention: no row may present it as a published figure
    assert not ref["quantity"].str.contains("p1|power").any()
    sources = load_sources().set_index("source_id")
    assert "10.2337/dc22-1155" in sources.loc["baidal2023", "citation"]
    assert "10.1186/s12986-021-00556-1" in sources.loc["mmtt_repeatability2021", "citation"]
    assert sources.loc["mhe_phase3_2025", "url"].startswith("https://www.managedhealthcareexecutive.com/")


def test_comparator_default_map_sets():
    comp = load_comparators()
    default = comp[comp["in_default_map"]]
    sets = {e: {(r.study.split(" (")[0].split(" /")[0], int(r.r), int(r.n)) for r in g.itertuples()}
            for e, g in default.groupby("endpoint")}
    assert sets == {
        "insulin_independence": {("Shapiro 2006", 16, 36), ("Lantidra", 20, 30)},
        "composite_primary": {("CIT-07", 42, 48), ("CIT-06", 15, 24), ("Lantidra", 19, 30)},
    }
    assert (default["group"] == "donor_islet").all()
    assert (default["timepoint_day"] == 365).all()
    assert (default["evidence_type"] != "unverified").all()
    # a count derived from a percentage says so in its caveat
    cit07 = default[default["study"].str.startswith("CIT-07")].iloc[0]
    assert cit07["percent"] == 87.5 and "derived" in cit07["caveat"]
    # other comparator figures with their anchors
    pec = comp[comp["group"] == "stem_cell_device"].iloc[0]
    assert (int(pec["r"]), int(pec["n"]), pec["time_anchor"]) == (6, 17, "implant")
    shapiro = comp[(comp["study"].str.startswith("Shapiro 2006")) & (comp["endpoint"] == "insulin_independence")]
    assert shapiro.iloc[0]["time_anchor"] == "last_infusion"
    # where no integer matches a percentage, no count is invented
    trimeco = comp[comp["endpoint"] == "beta_score_6"].iloc[0]
    assert pd.isna(trimeco["r"]) and trimeco["percent"] == 64.0


def test_durability_figures():
    dur = load_durability()
    by = {(r.study.split(" (")[0], r.measure, r.timepoint): r for r in dur.itertuples()}
    assert by[("CITR 2008 update", "insulin_independence_retained",
               "1 year after first becoming insulin independent")].value == 71
    assert by[("CITR 2008 update", "insulin_independence_retained",
               "2 years after first becoming insulin independent")].value == 52
    s = by[("Shapiro 2006", "insulin_independence_retained", "2 years")]
    assert (s.r, s.n) == (5, 16)
    assert by[("Ryan 2005", "insulin_independence_duration", "")].value == 15
    tiwari = dur[dur["measure"] == "composite_retained"]["value"].tolist()
    assert tiwari == [69.0, 54.0, 44.0]


def test_unverified_rows_are_excluded_by_default():
    assert not (load_comparators()["evidence_type"] == "unverified").any()
    with_u = load_comparators(include_unverified=True)
    unverified = with_u[with_u["evidence_type"] == "unverified"]
    assert len(unverified) >= 1 and not unverified["in_default_map"].any()
    assert (load_durability(include_unverified=True)["evidence_type"] == "unverified").sum() == 3
    assert not (load_durability()["evidence_type"] == "unverified").any()
    for kind in ("counts", "continuous", "cpeptide"):
        frame = LOADERS[kind](include_unverified=True)
        assert not frame.loc[frame["evidence_type"] == "unverified", "used_by_default"].any()


def test_every_row_names_an_existing_source_and_a_locator():
    sources = load_sources()
    ids = set(sources["source_id"])
    assert len(ids) == len(sources)
    used = set()
    for kind, loader in LOADERS.items():
        frame = loader(include_unverified=True)
        assert set(frame["source_id"]) <= ids, kind
        assert (frame["locator"].str.len() > 0).all(), kind
        used |= set(frame["source_id"])
    # the paper itself is listed for citation; every other source backs at least one figure
    assert ids - used == {"reichman2025"}
    by_id = sources.set_index("source_id")
    assert "40544428" in by_id.loc["reichman2025", "citation"]
    assert by_id.loc["nejm2025_abstract", "evidence_type"] == "primary"
    assert by_id.loc["nejm2025_abstract", "url"] == "https://pubmed.ncbi.nlm.nih.gov/40544428/"
    assert by_id.loc["diabeticme2025", "evidence_type"] == "secondary"


def test_source_ids_say_what_they_are_and_cite_documents_not_folders():
    """No source is named after a project seed file or cites a local folder; each citation names the document."""
    sources = load_sources()
    assert not sources["source_id"].str.contains(r"^seed\d", regex=True).any()
    for text in sources["citation"]:
        assert "seed" not in text.lower() and "shared/" not in text and "evidence file" not in text, text
    by_id = sources.set_index("source_id")
    assert "Diabetic Me" in by_id.loc["diabeticme2025", "citation"]
    assert by_id.loc["diabeticme2025", "url"].startswith("https://diabeticme.org/")
    assert "Mintdora" in by_id.loc["mintdora2025", "citation"] and "Nihal Thomas" in by_id.loc[
        "mintdora2025", "citation"]
    assert "video" in by_id.loc["video_summary2025", "citation"]
    # no data row points at a seed either, in its id, locator or caveat
    for kind, loader in LOADERS.items():
        frame = loader(include_unverified=True)
        text = " ".join(frame["source_id"]) + " ".join(frame["locator"]) + " ".join(frame["caveat"])
        assert "seed" not in text.lower() and "evidence file" not in text.lower(), kind


# ------------------------------------------------------------------------------------------------ participant data


def test_participant_example_loads_with_unit_conversion():
    frame = load_participant_data(PARTICIPANT_EXAMPLE)
    assert list(frame.columns) == ["participant", "cohort", "dose", "day", "measure", "value", "unit", "below_lod",
                                   "lod"]
    assert frame["participant"].str.startswith("SYN").all()  # clearly synthetic
    cp = frame[frame["measure"] == "cpeptide"]
    assert (cp["unit"] == "pmol/L").all()
    assert cp.loc[cp["below_lod"], "value"].isna().all()
    assert cp.loc[cp["below_lod"], "lod"].round(6).eq(13.0).all()
    raw = pd.read_csv(PARTICIPANT_EXAMPLE)
    nmol = raw[(raw["unit"] == "nmol/L") & raw["value"].notna()]
    assert len(nmol) > 0
    converted = frame.loc[nmol.index, "value"]
    assert converted.tolist() == pytest.approx((nmol["value"] * 1000).tolist())
    assert frame.attrs["original_units"] == {"cpeptide": ["nmol/L"]}
    assert frame.attrs["outliers"] == []  # every synthetic value lies inside the plausibility bounds


def test_cpeptide_and_hba1c_unit_conversions(tmp_path):
    path = participant_file(tmp_path, [
        ["P01", "full", 0.8, 90, "cpeptide", 1.0, "ng/mL", "false", 0.04],
        ["P01", "full", 0.8, 180, "cpeptide", 0.5, "nmol/L", "false", 0.013],
        ["P01", "full", 0.8, 270, "cpeptide", 500, "pmol/l", "false", ""],
        ["P01", "full", 0.8, 365, "hba1c", 53, "mmol/mol", "false", ""],
        ["P01", "full", 0.8, 365, "insulin_independent", 1, "", "", ""],
    ])
    frame = load_participant_data(path).set_index(["day", "measure"])
    assert PMOL_L_PER_NG_ML == 331.1
    assert frame.loc[(90, "cpeptide"), "value"] == pytest.approx(331.1)
    assert frame.loc[(90, "cpeptide"), "lod"] == pytest.approx(0.04 * 331.1)
    assert frame.loc[(180, "cpeptide"), "value"] == pytest.approx(500.0)
    assert frame.loc[(270, "cpeptide"), "value"] == 500.0
    assert frame.loc[(365, "hba1c"), "value"] == pytest.approx(53 / 10.929 + 2.15)  # 7.0%
    assert frame.loc[(365, "hba1c"), "unit"] == "%"
    assert not frame.loc[(365, "insulin_independent"), "below_lod"]
    # 1 ng/mL of C-peptide (3020.3 g/mol) is 331.1 pmol/L
    assert 1e-6 / 3020.3 * 1e12 == pytest.approx(331.1, abs=0.05)


# ------------------------------------------------------------------------------------------------ bad input


def test_missing_column(tmp_path):
    header, rows = read_rows(BUNDLED["counts"])
    header.remove("locator")
    for row in rows:
        del row["locator"]
    path = write_rows(tmp_path / "c.csv", header, rows)
    raises(path, load_counts, line=1, column="locator", match="missing column 'locator'")


def test_extra_column(tmp_path):
    header, rows = read_rows(BUNDLED["counts"])
    for row in rows:
        row["notes"] = "x"
    path = write_rows(tmp_path / "c.csv", [*header, "notes"], rows)
    raises(path, load_counts, line=1, column="notes", match="unexpected column 'notes'")


def test_non_numeric_value(tmp_path):
    path = edited(tmp_path, "counts", 2, r="twelve")
    raises(path, load_counts, line=4, column="r", match="'twelve' is not a whole number")
    path = participant_file(tmp_path, [GOOD_P, ["P01", "full", 0.8, 180, "cpeptide", "1,036", "pmol/L", "", 13]])
    raises(path, load_participant_data, line=3, column="value", match="'1,036' is not a number")


def test_count_above_denominator(tmp_path):
    path = edited(tmp_path, "counts", 0, r="13")
    raises(path, load_counts, line=2, column="r", match="r = 13 is larger than its denominator n = 12")
    path = edited(tmp_path, "comparators", 0, r="40", percent="")
    raises(path, load_comparators, line=2, column="r", match="larger than its denominator")


def test_negative_count(tmp_path):
    path = edited(tmp_path, "counts", 1, r="-1")
    raises(path, load_counts, line=3, column="r", match="must be >= 0")


def test_zero_denominator(tmp_path):
    path = edited(tmp_path, "counts", 1, r="0", n="0")
    raises(path, load_counts, line=3, column="n", match="must be >= 1")


def test_negative_concentration(tmp_path):
    path = participant_file(tmp_path, [GOOD_P, ["P01", "full", 0.8, 180, "cpeptide", -5, "pmol/L", "false", 13]])
    raises(path, load_participant_data, line=3, column="value", match="negative concentration")
    path = edited(tmp_path, "cpeptide", 3, mean_pmol_l="-1274")
    raises(path, load_cpeptide_means, line=5, column="mean_pmol_l", match="must be >= 0")


def test_unknown_unit(tmp_path):
    path = participant_file(tmp_path, [GOOD_P, ["P01", "full", 0.8, 180, "cpeptide", 1, "mg/dL", "false", 13]])
    raises(path, load_participant_data, line=3, column="unit", match="unknown unit 'mg/dL' for cpeptide")
    path = edited(tmp_path, "continuous", 0, unit="mmol/L")
    raises(path, load_continuous, line=2, column="unit", match="unknown unit 'mmol/L' for hba1c")


def test_unknown_measure(tmp_path):
    path = participant_file(tmp_path, [["P01", "full", 0.8, 90, "glucagon", 1, "pmol/L", "false", ""]])
    raises(path, load_participant_data, line=2, column="measure", match="unknown measure 'glucagon'")
    path = edited(tmp_path, "continuous", 4, measure="ketones")
    raises(path, load_continuous, line=6, column="measure", match="unknown measure 'ketones'")


def test_duplicated_key(tmp_path):
    path = participant_file(tmp_path, [GOOD_P, ["P02", "full", 0.8, 90, "cpeptide", 300, "pmol/L", "", 13],
                                       ["P01", "full", 0.8, 90, "cpeptide", 410, "pmol/L", "", 13]])
    err = raises(path, load_participant_data, line=4, column="participant+day+measure", match="duplicated row")
    assert "already on line 2" in str(err)
    header, rows = read_rows(BUNDLED["sources"])
    path = write_rows(tmp_path / "sources.csv", header, [*rows, rows[3]])
    raises(path, load_sources, line=len(rows) + 2, column="source_id", match="duplicated row")


def test_two_default_rows_for_one_key(tmp_path):
    path = edited(tmp_path, "counts", 3, used_by_default="true")  # she_free twice by default
    raises(path, load_counts, line=5, column="used_by_default", match="two rows marked used_by_default")


def test_day_before_infusion(tmp_path):
    path = participant_file(tmp_path, [["P01", "full", 0.8, -7, "hba1c", 8.1, "%", "false", ""]])
    raises(path, load_participant_data, line=2, column="day", match="before the infusion")
    path = edited(tmp_path, "cpeptide", 0, day="-90")
    raises(path, load_cpeptide_means, line=2, column="day", match="must be >= 0")


def test_empty_files(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    raises(empty, load_participant_data, line=None, column=None, match="file is empty")
    header_only = tmp_path / "header.csv"
    header_only.write_text("participant,cohort,dose,day,measure,value,unit,below_lod,lod\n", encoding="utf-8")
    raises(header_only, load_participant_data, line=1, column=None, match="no data rows")


def test_wrong_encoding(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("participant,cohort,dose,day,measure,value,unit,below_lod,lod\n"
                     "P01,full,0.8,90,cpeptide,400,pmol/L,false,13\n"
                     "Jos\u00e9,full,0.8,90,cpeptide,400,pmol/L,false,13\n".encode("latin-1"))
    raises(path, load_participant_data, line=3, column=None, match="not valid UTF-8")


def test_bad_boolean(tmp_path):
    path = edited(tmp_path, "counts", 0, used_by_default="maybe")
    raises(path, load_counts, line=2, column="used_by_default", match="'maybe' is not a boolean")
    path = participant_file(tmp_path, [["P01", "full", 0.8, 0, "cpeptide", "", "pmol/L", "below", 13]])
    raises(path, load_participant_data, line=2, column="below_lod", match="not a boolean")


def test_unknown_source_id(tmp_path):
    path = edited(tmp_path, "comparators", 5, source_id="nobody2099")
    err = raises(path, load_comparators, line=7, column="source_id", match="unknown source id 'nobody2099'")
    assert "sources.csv" in str(err)


def test_source_ids_from_a_sources_file_beside_the_data(tmp_path):
    header, rows = read_rows(BUNDLED["counts"])
    rows = [{**rows[0], "source_id": "mytrial2026", "locator": "table 2"}]
    path = write_rows(tmp_path / "counts.csv", header, rows)
    raises(path, load_counts, line=2, column="source_id", match="unknown source id 'mytrial2026'")
    write_rows(tmp_path / "sources.csv", ["source_id", "citation", "url", "evidence_type"],
               [{"source_id": "mytrial2026", "citation": "My trial, CSR", "url": "", "evidence_type": "primary"}])
    assert load_counts(path)["source_id"].tolist() == ["mytrial2026"]


def test_unverified_source_must_be_marked_unverified(tmp_path):
    path = edited(tmp_path, "comparators", 4, evidence_type="secondary")  # the Lantidra mirror-site row
    raises(path, load_comparators, line=6, column="evidence_type", match="source 'lantidra_mirror' is unverified")


def test_unverified_row_never_used_by_default(tmp_path):
    path = edited(tmp_path, "counts", 0, evidence_type="unverified")
    raises(path, load_counts, line=2, column="used_by_default", match="unverified row cannot be used by default")


def test_percent_inconsistent_with_count(tmp_path):
    path = edited(tmp_path, "comparators", 6, r="41")  # CIT-07: 41/48 is not 87.5%
    raises(path, load_comparators, line=8, column="percent", match=r"87.5% does not match r/n = 41/48")


def test_below_lod_rows_must_be_consistent(tmp_path):
    path = participant_file(tmp_path, [["P01", "full", 0.8, 0, "cpeptide", 20, "pmol/L", "true", 13]])
    raises(path, load_participant_data, line=2, column="value", match="below the LOD but 20 is above lod = 13")
    path = participant_file(tmp_path, [["P01", "full", 0.8, 0, "cpeptide", "", "pmol/L", "true", ""]])
    raises(path, load_participant_data, line=2, column="lod", match="needs its lod")
    path = participant_file(tmp_path, [["P01", "full", 0.8, 0, "cpeptide", "", "pmol/L", "false", 13]])
    raises(path, load_participant_data, line=2, column="value", match="only a below-LOD row may leave")
    path = participant_file(tmp_path, [["P01", "full", 0.8, 0, "hba1c", 5, "%", "true", 4]])
    raises(path, load_participant_data, line=2, column="below_lod", match="no limit of detection")


def test_binary_measure_takes_zero_or_one(tmp_path):
    path = participant_file(tmp_path, [["P01", "full", 0.8, 365, "insulin_independent", 2, "", "", ""]])
    raises(path, load_participant_data, line=2, column="value", match="is 0 or 1")


def test_participant_with_two_cohorts(tmp_path):
    path = participant_file(tmp_path, [GOOD_P, ["P01", "half", 0.8, 180, "cpeptide", 500, "pmol/L", "", 13]])
    raises(path, load_participant_data, line=3, column="cohort", match="'half' here but 'full' on line 2")


def test_ragged_row(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("participant,cohort,dose,day,measure,value,unit,below_lod,lod\n"
                    "P01,full,0.8,90,cpeptide,400,pmol/L,false\n", encoding="utf-8")
    raises(path, load_participant_data, line=2, column=None, match="has 8 fields but the header has 9")


def test_percentage_out_of_range(tmp_path):
    path = edited(tmp_path, "continuous", 12, value="103")  # TIR mean at day 365
    raises(path, load_continuous, line=14, column="value", match="above its maximum of 100")


def test_file_not_found_and_unknown_kind(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        load_counts(tmp_path / "nope.csv")
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(InputError, match="cannot tell what kind") as info:
        check_file(other)
    assert info.value.line == 1
    with pytest.raises(InputError, match="unknown kind 'bogus'"):
        check_file(other, kind="bogus")


def test_detect_kind_from_the_header():
    for name, kind in KINDS.items():
        assert detect_kind(reversed(kind.columns)) == name
    # a header with one column missing is still recognised, so the loader can say which one
    assert detect_kind(["participant", "cohort", "dose", "day", "measure", "value", "unit", "below_lod"]) == \
        "participant"


def test_check_file_summarises_participant_data():
    summary = check_file(PARTICIPANT_EXAMPLE)
    assert summary["kind"] == "participant"
    assert summary["participants"] == 6
    assert summary["converted_units"] == {"cpeptide": {"from": ["nmol/L"], "to": "pmol/L"}}
    assert summary["below_lod_rows"] == 6
    assert not math.isnan(summary["rows"])


def test_bundled_files_are_in_the_published_folder():
    assert {p.name for p in PUBLISHED_DIR.glob("*.csv")} == {k.bundled_file for k in KINDS.values()
                                                           if k.bundled_file}


# ------------------------------------------------------------------------------------------------ plain rows


TABLES = [(kind, BUNDLED[kind], unverified) for kind in sorted(BUNDLED) for unverified in (False, True)] + [
    ("participant", PARTICIPANT_EXAMPLE, False)]


@pytest.mark.parametrize("kind, path, include_unverified", TABLES)
def test_validated_rows_hold_what_the_frame_holds(kind, path, include_unverified):
    """The data commands read validate_table's plain rows, the analyses the loaders' DataFrame: cell by cell they
    agree (an empty number is None or NaN in the rows, NA in the frame), and the rows hold plain Python values."""
    table = validate_table(kind, path, include_unverified=include_unverified)
    frame = load_file(path, kind)[1] if kind in ("sources", "participant") else LOADERS[kind](
        path, include_unverified=include_unverified)
    assert list(frame.columns) == list(KINDS[kind].columns) and len(frame) == len(table.records)
    for record, (_, row) in zip(table.records, frame.iterrows()):
        assert list(record) == list(frame.columns)
        for column, value in record.items():
            assert type(value) in (str, int, float, bool, type(None)), (column, type(value))
            if is_missing(value):
                assert pd.isna(row[column]), (column, row[column])
            else:
                assert value == row[column] and type(value)(row[column]) == value, (column, value, row[column])
    if include_unverified or kind == "sources":
        assert len(table.records) == len(read_rows(path)[1])  # the source table keeps its unverified sources
    assert table.outliers == frame.attrs["outliers"]


@pytest.mark.parametrize("path", [*BUNDLED.values(), PARTICIPANT_EXAMPLE])
def test_check_file_summarises_what_the_frame_holds(path):
    """check_file counts from the plain rows; the same counts from the loaded DataFrame with pandas."""
    summary = check_file(path)
    frame = load_file(path)[1]
    assert summary["rows"] == len(frame) and summary["columns"] == list(frame.columns)
    if "evidence_type" in frame.columns:
        assert summary["evidence_types"] == frame["evidence_type"].value_counts().to_dict()
        assert summary["unverified_rows"] == (frame["evidence_type"] == "unverified").sum()
    if "source_id" in frame.columns and summary["kind"] != "sources":
        assert summary["sources"] == sorted(frame["source_id"].unique())
    if "measure" in frame.columns:
        assert summary["measures"] == frame["measure"].value_counts().sort_index().to_dict()
    flag = KINDS[summary["kind"]].default_flag
    if flag and "rows_not_used_by_default" in summary:
        assert summary["rows_not_used_by_default"] == (~frame[flag]).sum()
    if summary["kind"] == "participant":
        assert summary["cohorts"] == frame.groupby("cohort")["participant"].nunique().to_dict()
        assert summary["days"] == sorted(frame["day"].unique())
        assert summary["below_lod_rows"] == frame["below_lod"].sum()
    if summary["kind"] == "counts":
        used = frame[frame["used_by_default"]]
        assert [(c["endpoint"], c["r"], c["n"], c["timepoint_day"]) for c in summary["default_counts"]] == [
            (e, r, n, None if pd.isna(d) else d) for e, r, n, d in
            zip(used["endpoint"], used["r"], used["n"], used["timepoint_day"])]


def test_validate_table_names_what_it_cannot_do():
    with pytest.raises(InputError, match="unknown kind 'bogus'"):
        validate_table("bogus")
    with pytest.raises(InputError, match="participant file has no bundled copy"):
        validate_table("participant")
