"""A corpus of bad inputs, each given to the command line through the door a user would use.

Every case must end the same way (issue 13, items 1, 3, 5 and 10): exit status 2, exactly one line on stderr,
``isletbayes: error: ...``, naming the place (file, line, column; configuration key when the value came from a
file, option when it came from the command line), no traceback, and the output folder of a previous run left
exactly as it was (same files, same bytes). The cases cover every input kind: participant-level files, counts,
comparator and C-peptide means files, YAML configurations, command-line options and file-system faults.

They run in this process (``main([...])``), each in well under a second: every mistake is found before any
model is fitted.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hardening_support import no_map_comparators_text, siblings, snapshot

from isletbayes.data import PARTICIPANT_EXAMPLE

PUBLISHED = Path(PARTICIPANT_EXAMPLE).resolve().parents[1] / "published"
PARTICIPANT = Path(PARTICIPANT_EXAMPLE).read_text(encoding="utf-8")
COUNTS = (PUBLISHED / "zimislecel_counts.csv").read_text(encoding="utf-8")
COMPARATORS = (PUBLISHED / "comparators.csv").read_text(encoding="utf-8")
CPEPTIDE_MEANS = (PUBLISHED / "zimislecel_cpeptide.csv").read_text(encoding="utf-8")
#: With this comparator file the design fits no MAP prior (its mistakes are then found in milliseconds).
NO_MAP = {"nomap.csv": no_map_comparators_text()}
FAST_DESIGN = "--p0 0.44 --comparators-file {tmp}/nomap.csv"


def _split(text: str) -> list[list[str]]:
    import csv
    import io

    return [row for row in csv.reader(io.StringIO(text))]


def _join(rows: list[list[str]]) -> str:
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def edit(text: str, line: int, column: str, value: str) -> str:
    """``text`` with the cell at (line, column) replaced (line 1 is the header)."""
    rows = _split(text)
    rows[line - 1][rows[0].index(column)] = value
    return _join(rows)


def drop_column(text: str, column: str) -> str:
    rows = _split(text)
    i = rows[0].index(column)
    return _join([r[:i] + r[i + 1:] for r in rows])


def add_column(text: str, column: str, value: str) -> str:
    rows = _split(text)
    return _join([rows[0] + [column]] + [r + [value] for r in rows[1:]])


def append_row(text: str, cells: dict[str, str]) -> str:
    rows = _split(text)
    return _join(rows + [[cells.get(c, "") for c in rows[0]]])


def duplicate_line(text: str, line: int) -> str:
    rows = _split(text)
    return _join(rows + [rows[line - 1]])


def edit_participant_rows(text: str, participant: str, column: str, value: str) -> str:
    rows = _split(text)
    p, c = rows[0].index("participant"), rows[0].index(column)
    return _join([rows[0]] + [r[:c] + [value] + r[c + 1:] if r[p] == participant else r for r in rows[1:]])


@dataclass(frozen=True)
class Case:
    """One bad input: files written into the case's folder, the command line, what the one line must name.

    In ``argv`` and ``where``, ``{tmp}`` is the case's folder and ``{out}`` the output folder of a previous run.
    """

    id: str
    argv: tuple[str, ...]
    where: tuple[str, ...]
    files: dict[str, str | bytes] = field(default_factory=dict)
    folders: tuple[str, ...] = ()
    known: str = ""  # a known gap outside this suite's files: the case is an expected failure until it is fixed


CASES: list[Case] = []


def case(id: str, argv: str, *where: str, files: dict | None = None, folders: tuple[str, ...] = (),
         known: str = "") -> None:
    CASES.append(Case(id, tuple(argv.split()), where, files or {}, folders, known))




# --- participant-level files (data check, design --data, durability --data, report --data) ----------------

P = PARTICIPANT
PARTICIPANT_FILES = {
    "missing_column": (drop_column(P, "unit"), ("line 1", "column 'unit'")),
    "unexpected_column": (add_column(P, "visit", "1"), ("line 1", "column 'visit'")),
    "empty_file": ("", ("empty",)),
    "header_only": (P.splitlines()[0] + "\n", ("line 1",)),
    "not_utf8": (P.replace("958", "95\udcff8").encode("utf-8", "surrogateescape"), ("line 5", "UTF-8")),
    "nul_byte": (P.replace("hba1c,7.8", "hba1c,7\x00.8"), ("line 3", "NUL")),
    "extra_field": (P.replace("1410,pmol/L,false,13", "1410,pmol/L,false,13,x"), ("line 6",)),
    "stray_quote": (P.replace("958,pmol/L", '"958,pmol/L'), ("malformed", )),
    "duplicate_header": (P.replace("participant,cohort", "participant,participant", 1), ("column 'participant'",)),
    "empty_header_field": (P.replace("participant,cohort", "participant,", 1), ("line 1",)),
    "unknown_measure": (edit(P, 5, "measure", "c-peptide"), ("line 5", "column 'measure'")),
    "unknown_unit": (edit(P, 5, "unit", "mg/dL"), ("line 5", "column 'unit'")),
    "negative_cpeptide": (edit(P, 5, "value", "-958"), ("line 5", "column 'value'")),
    "cpeptide_1e300": (edit(P, 5, "value", "1e300"), ("line 5", "column 'value'")),
    "cpeptide_nmol_label": (edit(P, 5, "unit", "nmol/L"), ("line 5", "column 'value'")),
    "cpeptide_text": (edit(P, 5, "value", "high"), ("line 5", "column 'value'")),
    "cpeptide_nan": (edit(P, 5, "value", "nan"), ("line 5", "column 'value'")),
    "cpeptide_inf": (edit(P, 5, "value", "inf"), ("line 5", "column 'value'")),
    "day_1e20": (edit(P, 5, "day", "1e20"), ("line 5", "column 'day'")),
    "day_huge_integer": (edit(P, 5, "day", "100000000000000000000"), ("line 5", "column 'day'")),
    "day_negative": (edit(P, 5, "day", "-5"), ("line 5", "column 'day'")),
    "day_fraction": (edit(P, 5, "day", "90.5"), ("line 5", "column 'day'")),
    "day_55_years": (edit(P, 5, "day", "20000"), ("line 5", "column 'day'")),
    "hba1c_mmol_mol_as_percent": (edit(P, 3, "value", "53"), ("line 3", "column 'value'")),
    "hba1c_above_100": (edit(P, 3, "value", "120"), ("line 3", "column 'value'")),
    "insulin_dose_900": (edit(P, 4, "value", "900"), ("line 4", "column 'value'")),
    "insulin_dose_negative": (edit(P, 4, "value", "-1"), ("line 4", "column 'value'")),
    "insulin_independent_2": (edit(P, 13, "value", "2"), ("line 13", "column 'value'")),
    "below_lod_word": (edit(P, 5, "below_lod", "maybe"), ("line 5", "column 'below_lod'")),
    "below_lod_without_lod": (edit(P, 2, "lod", ""), ("line 2", "column 'lod'")),
    "below_lod_on_hba1c": (edit(P, 3, "below_lod", "true"), ("line 3", "column 'below_lod'")),
    "lod_negative": (edit(P, 5, "lod", "-13"), ("line 5", "column 'lod'")),
    "dose_implausible": (edit_participant_rows(P, "SYN01", "dose", "800"), ("line 2", "column 'dose'")),
    "dose_changes_within_participant": (edit(P, 5, "dose", "0.4"), ("line 5", "column 'dose'")),
    "dose_negative": (edit_participant_rows(P, "SYN01", "dose", "-0.8"), ("line 2", "column 'dose'")),
    "empty_participant_id": (edit(P, 5, "participant", ""), ("line 5", "column 'participant'")),
    "duplicated_row": (duplicate_line(P, 5), ("line 74",)),
    "time_in_range_150": (append_row(P, {"participant": "SYN01", "cohort": "synthetic_full_dose", "dose": "0.8",
                                         "day": "365", "measure": "tir_70_180", "value": "150", "unit": "%",
                                         "below_lod": "false"}), ("line 74", "column 'value'")),
    "glucose_cv_fraction": (append_row(P, {"participant": "SYN01", "cohort": "synthetic_full_dose", "dose": "0.8",
                                           "day": "365", "measure": "glucose_cv", "value": "0.36", "unit": "%",
                                           "below_lod": "false"}), ("line 74", "column 'value'")),
    "she_count_500": (append_row(P, {"participant": "SYN01", "cohort": "synthetic_full_dose", "dose": "0.8",
                                     "day": "365", "measure": "she_count", "value": "500", "unit": "events",
                                     "below_lod": "false"}), ("line 74", "column 'value'")),
}
for name, (content, where) in PARTICIPANT_FILES.items():
    case(f"participant-check-{name}", "data check --kind participant {tmp}/p.csv", "{tmp}/p.csv", *where,
         files={"p.csv": content})
    case(f"participant-design-{name}", "design --data {tmp}/p.csv --out {out}", "{tmp}/p.csv", *where,
         files={"p.csv": content})
for name in ("cpeptide_1e300", "day_1e20", "unknown_measure", "missing_column", "duplicated_row"):
    content, where = PARTICIPANT_FILES[name]
    case(f"participant-durability-{name}", "durability --data {tmp}/p.csv --out {out}", "{tmp}/p.csv", *where,
         files={"p.csv": content})
    case(f"participant-report-{name}", "report --config {tmp}/c.yaml --data {tmp}/p.csv --out {out} --no-pdf",
         "{tmp}/p.csv", *where, files={"p.csv": content, "c.yaml": "sections: {binary: false, cpeptide: false}\n"})
case("participant-missing", "design --data {tmp}/none.csv --out {out}", "{tmp}/none.csv", "not found")
case("participant-is-a-folder", "design --data {tmp}/folder --out {out}", "{tmp}/folder", "not a file",
     folders=("folder",))
case("participant-report-missing", "report --config {tmp}/c.yaml --data {tmp}/none.csv --out {out}", "--data",
     "{tmp}/none.csv", files={"c.yaml": "{}\n"})
case("participant-report-folder", "report --config {tmp}/c.yaml --data {tmp}/folder --out {out}", "--data",
     "{tmp}/folder", files={"c.yaml": "{}\n"}, folders=("folder",))

# --- counts files (data check, design --counts, durability --counts) -------------------------------------

C = COUNTS
COUNTS_FILES = {
    "r_above_n": (edit(C, 2, "r", "13"), ("line 2", "column 'r'")),
    "r_negative": (edit(C, 2, "r", "-1"), ("line 2", "column 'r'")),
    "n_zero": (edit(C, 2, "n", "0"), ("line 2", "column 'n'")),
    "r_fraction": (edit(C, 2, "r", "9.5"), ("line 2", "column 'r'")),
    "n_1e12": (edit(C, 2, "n", "1000000000000"), ("line 2", "column 'n'")),
    "endpoint_not_an_id": (edit(C, 2, "endpoint", "Insulin Independence"), ("line 2", "column 'endpoint'")),
    "unknown_source": (edit(C, 2, "source_id", "nosuch2025"), ("line 2", "column 'source_id'")),
    "evidence_type": (edit(C, 2, "evidence_type", "strong"), ("line 2", "column 'evidence_type'")),
    "used_by_default_word": (edit(C, 2, "used_by_default", "perhaps"), ("line 2", "column 'used_by_default'")),
    "day_1e20": (edit(C, 2, "timepoint_day", "1e20"), ("line 2", "column 'timepoint_day'")),
    "missing_column": (drop_column(C, "n"), ("line 1", "column 'n'")),
    "duplicated_row": (duplicate_line(C, 2), ("line",)),
}
for name, (content, where) in COUNTS_FILES.items():
    case(f"counts-check-{name}", "data check --kind counts {tmp}/c.csv", "{tmp}/c.csv", *where,
         files={"c.csv": content})
    case(f"counts-design-{name}", "design --counts {tmp}/c.csv --out {out}", "{tmp}/c.csv", *where,
         files={"c.csv": content})
for name in ("r_above_n", "n_1e12", "missing_column"):
    content, where = COUNTS_FILES[name]
    case(f"counts-durability-{name}", "durability --counts {tmp}/c.csv --out {out}", "{tmp}/c.csv", *where,
         files={"c.csv": content})
case("counts-missing", "design --counts {tmp}/none.csv --out {out}", "{tmp}/none.csv", "not found")

# --- comparator files (data check, binary --comparators-file) ---------------------------------------------

M = COMPARATORS
COMPARATOR_FILES = {
    "r_above_n": (edit(M, 2, "r", "40"), ("line 2", "column 'r'")),
    "n_negative": (edit(M, 2, "n", "-36"), ("line 2", "column 'n'")),
    "percent_disagrees": (edit(M, 2, "percent", "90"), ("line 2", "column 'percent'")),
    "time_anchor": (edit(M, 2, "time_anchor", "sometime"), ("line 2", "column 'time_anchor'")),
    "group": (edit(M, 2, "group", "animals"), ("line 2", "column 'group'")),
    "in_default_map_word": (edit(M, 2, "in_default_map", "sure"), ("line 2", "column 'in_default_map'")),
    "missing_column": (drop_column(M, "group"), ("line 1", "column 'group'")),
    "day_overflow": (edit(M, 2, "timepoint_day", "99999999999"), ("line 2", "column 'timepoint_day'")),
}
for name, (content, where) in COMPARATOR_FILES.items():
    case(f"comparators-check-{name}", "data check --kind comparators {tmp}/m.csv", "{tmp}/m.csv", *where,
         files={"m.csv": content})
    case(f"comparators-binary-{name}", "binary --comparators-file {tmp}/m.csv", "{tmp}/m.csv", *where,
         files={"m.csv": content})

# --- C-peptide means files (data check, the run's data.cpeptide_means) ------------------------------------

Q = CPEPTIDE_MEANS
MEANS_FILES = {
    "mean_negative": (edit(Q, 2, "mean_pmol_l", "-424"), ("line 2", "column 'mean_pmol_l'")),
    "mean_1e300": (edit(Q, 2, "mean_pmol_l", "1e300"), ("line 2", "column 'mean_pmol_l'")),
    "day_1e20": (edit(Q, 2, "day", "1e20"), ("line 2", "column 'day'")),
    "n_zero": (edit(Q, 2, "n", "0"), ("line 2", "column 'n'")),
    "spread_kind": (edit(Q, 2, "spread_kind", "iqr"), ("line 2", "column 'spread_kind'")),
    "series": (edit(Q, 2, "series", "random"), ("line 2", "column 'series'")),
    "missing_column": (drop_column(Q, "lod_pmol_l"), ("line 1", "column 'lod_pmol_l'")),
}
for name, (content, where) in MEANS_FILES.items():
    case(f"means-check-{name}", "data check --kind cpeptide {tmp}/q.csv", "{tmp}/q.csv", *where,
         files={"q.csv": content})
    case(f"means-run-{name}", "run --config {tmp}/c.yaml --out {out} --no-pdf --cache-dir {tmp}/cache",
         "{tmp}/q.csv", *where, files={"q.csv": content, "c.yaml": "data: {cpeptide_means: q.csv}\n"})

# --- YAML configurations (isletbayes run --config FILE) ----------------------------------------------------

FAST_DESIGN_YAML = "design: {p0: 0.44, design_priors: [phase12], %s}\ndata: {comparators: nomap.csv}\n"
YAML_CASES = {
    "not_yaml": ("sampler: [draws: 1\n", ("line",)),
    "top_level_list": ("- seed: 1\n", ("top level",)),
    "unknown_key": ("samplr: {draws: 100}\n", ("key 'samplr'",)),
    "unknown_nested_key": ("sampler: {drawz: 100}\n", ("key 'sampler.drawz'",)),
    "draws_not_a_number": ("sampler: {draws: many}\n", ("key 'sampler.draws'",)),
    "draws_1e12": ("sampler: {draws: 1000000000000}\n", ("key 'sampler.draws'",)),
    "chains_zero": ("sampler: {chains: 0}\n", ("key 'sampler.chains'",)),
    "sampler_name": ("sampler: {nuts_sampler: stan}\n", ("key 'sampler.nuts_sampler'",)),
    "target_accept_one": ("sampler: {target_accept: 1.0}\n", ("key 'sampler.target_accept'",)),
    "seed_negative": ("seed: -1\n", ("key 'seed'",)),
    "seed_2_32": ("seed: 4294967296\n", ("key 'seed'",)),
    "seed_text": ("seed: abc\n", ("key 'seed'",)),
    "seed_fraction": ("seed: 1.5\n", ("key 'seed'",)),
    "durability_simulations_1e12": ("durability: {follow_up_simulations: 1000000000000}\n",
                                    ("key 'durability.follow_up_simulations'",)),
    "durability_onset_window": ("durability: {onset_start_day: 300, onset_end_day: 100}\n", ("key 'durability'",)),
    "n_max_below_n_min": ("design: {n_min: 50, n_max: 20}\n", ("key 'design.n_max'",)),
    "p0_above_one": ("design: {p0: 1.5}\n", ("key 'design.p0'",)),
    "interim_above_one": ("design: {interim: [1.5]}\n", ("key 'design.interim'",)),
    "simulate_negative": ("design: {simulate: -1}\n", ("key 'design.simulate'",)),
    "simulate_1e9": ("design: {simulate: 1000000000}\n", ("key 'design.simulate'",)),
    "workers_zero": ("design: {workers: 0}\n", ("key 'design.workers'",)),
    "workers_100000": ("design: {workers: 100000}\n", ("key 'design.workers'",)),
    "estimand_unknown": ("design: {estimand: {preset: survival}}\n", ("key 'design.estimand.preset'",)),
    "design_prior_unreadable": (FAST_DESIGN_YAML % "design_priors: ['beta:x,y']", ("key 'design.design_priors'",)),
    "analysis_prior_unknown": (FAST_DESIGN_YAML % "analysis_prior: flat", ("key 'design.analysis_prior'",)),
    "discount_ess_too_big": (FAST_DESIGN_YAML % "design_priors: [discounted], discount_ess: 100",
                             ("key 'design.discount_ess'",)),
    "empty_panel": ("priors: {panel: []}\n", ("key 'priors.panel'",)),
    "unknown_panel_member": ("priors: {panel: [flat]}\n", ("key 'priors.panel",)),
    "tau_scale_negative": ("priors: {map: {tau_scale: -1}}\n", ("key 'priors.map.tau_scale'",)),
    "studies_empty": ("priors: {map: {studies: []}}\n", ("key 'priors.map.studies'",)),
    "threshold_two": ("binary: {thresholds: [2]}\n", ("key 'binary.thresholds'",)),
    "sections_not_a_mapping": ("sections: everything\n", ("key 'sections'",)),
    "simulate_without_cpeptide": ("sections: {cpeptide: false}\ndesign: {simulate: 5}\n",
                                  ("key 'sections.cpeptide'",)),
    "counts_missing_file": ("data: {counts: none.csv}\n", ("{tmp}/none.csv", "not found")),
    "participant_data_folder": ("data: {participant_data: folder}\n", ("{tmp}/folder",)),
}
for name, (text, where) in YAML_CASES.items():
    case(f"config-{name}", "run --config {tmp}/c.yaml --out {out} --no-pdf --cache-dir {tmp}/cache",
         "{tmp}/c.yaml" if not any(w.startswith("{tmp}/") for w in where) else "", *where,
         files={"c.yaml": text, **NO_MAP}, folders=("folder",) if "folder" in text else ())
case("config-missing", "run --config {tmp}/none.yaml --out {out}", "{tmp}/none.yaml", "not found")
case("config-is-a-folder", "run --config {tmp}/folder --out {out}", "{tmp}/folder", "folder",
     folders=("folder",))
case("config-binary-bytes", "run --config {tmp}/c.yaml --out {out}", "{tmp}/c.yaml",
     files={"c.yaml": b"\xff\xfe\x00seed: 1\n"})
case("config-tabs", "run --config {tmp}/c.yaml --out {out}", "{tmp}/c.yaml", "line",
     files={"c.yaml": "sampler:\n\tdraws: 100\n"})

# --- command-line options ----------------------------------------------------------------------------------

OPTION_CASES = [
    ("design-n-max-zero", "design --n-max 0", "option --n-max"),
    ("design-n-max-below-n-min", "design --n-min 30 --n-max 20", "option --n-max"),
    ("design-n-max-huge", "design --n-max 10000000", "option --n-max"),
    ("design-p0-two", "design --p0 2", "option --p0"),
    ("design-p0-text", "design --p0 half", "--p0"),
    ("design-rule", "design --rule frequentist", "option --rule"),
    ("design-estimand", "design --estimand survival", "option --estimand"),
    ("design-estimand-timing", "design --estimand composite_day365 --persistence-days 30",
     "option --persistence-days"),
    ("design-seed-negative", "design --seed -1", "option --seed"),
    ("design-seed-2-32", "design --seed 4294967296", "option --seed"),
    ("design-seed-text", "design --seed abc", "--seed"),
    ("design-simulate-negative", "design --simulate -1", "option --simulate"),
    ("design-simulate-without-out", "design --simulate 5", "option --out"),
    ("design-workers-zero", "design --workers 0 --simulate 2 --out {out}", "option --workers"),
    ("design-workers-100000", "design --workers 100000 --simulate 2 --out {out}", "option --workers"),
    ("design-scheduler-not-an-address", "design --simulate 2 --scheduler foo:bar --out {out}", "option --scheduler"),
    ("design-scheduler-http", "design --simulate 2 --scheduler http://127.0.0.1:8786 --out {out}",
     "option --scheduler"),
    ("design-scheduler-unreachable", "design --simulate 2 --scheduler tcp://127.0.0.1:9 --out {out}",
     "option --scheduler"),
    ("design-design-prior", f"design {FAST_DESIGN} --design-prior beta:1", "option --design-prior"),
    ("design-design-prior-unknown", f"design {FAST_DESIGN} --design-prior flat", "option --design-prior"),
    ("design-analysis-prior", f"design {FAST_DESIGN} --design-prior phase12 --analysis-prior mix:1,2",
     "option --analysis-prior"),
    ("design-discount-ess", f"design {FAST_DESIGN} --design-prior discounted --discount-ess 100",
     "option --discount-ess"),
    ("design-interim", "design --interim 1.5", "option --interim"),
    ("design-interim-text", "design --interim half", "option --interim"),
    ("design-cpeptide-without-simulate", "design --estimand cpeptide_day365", "option --simulate"),
    ("design-cpeptide-fraction", "design --estimand cpeptide_day365 --simulate 2 --cpeptide-fraction 1.5 --out {out}",
     "option --cpeptide-fraction"),
    ("design-unknown-option", "design --bogus 1", "--bogus", "isletbayes design --help"),
    ("design-missing-value", "design --n-max", "--n-max", "isletbayes design --help"),
    ("durability-simulations-few", "durability --follow-up-simulations 5", "option --follow-up-simulations"),
    ("durability-transfer-weight", "durability --transfer-weight 2", "option --transfer-weight"),
    ("durability-participants-zero", "durability --follow-up-participants 0", "option --follow-up-participants"),
    ("durability-seed-negative", "durability --seed -1", "option --seed"),
    ("binary-threshold-two", "binary --threshold 2", "option --threshold"),
    ("binary-prior-unknown", "binary --prior flat", "option --prior"),
    ("binary-tau-scale-negative", "binary --tau-scale -1", "option --tau-scale"),
    ("binary-predict-m-zero", "binary --predict-m 0", "option --predict-m"),
    ("binary-endpoint-unknown", "binary --endpoint survival", "option --endpoint"),
    ("binary-seed-negative", "binary --seed -1", "option --seed"),
    ("cpeptide-draws-few", "cpeptide --draws 5", "option --draws"),
    ("cpeptide-chains-zero", "cpeptide --chains 0", "option --chains"),
    ("cpeptide-target-accept", "cpeptide --target-accept 1.5", "option --target-accept"),
    ("cpeptide-sampler", "cpeptide --sampler stan", "option --sampler"),
    ("run-jobs-zero", "run --jobs 0 --out {out} --no-pdf", "option --jobs"),
    ("run-jobs-text", "run --jobs many --out {out}", "--jobs", "isletbayes run --help"),
    ("run-config-missing-value", "run --config", "--config"),
    ("report-without-config", "report --out {out}", "--config"),
    ("data-check-kind", "data check --kind spreadsheet {tmp}/x.csv", "option --kind"),
    ("data-check-no-file", "data check", "'file'", "isletbayes data check --help"),
    ("data-check-missing", "data check {tmp}/none.csv", "{tmp}/none.csv"),
    ("data-check-folder", "data check {tmp}/folder", "{tmp}/folder"),
    ("data-summary-unknown-option", "data summary --bogus", "--bogus"),
    ("unknown-command", "analyse", "analyse"),
]
for id, argv, *where in OPTION_CASES:
    case(f"option-{id}", argv, *where, folders=("folder",) if "folder" in argv else (),
         files=NO_MAP if "nomap" in argv else None)

# --- file-system faults a user can cause --------------------------------------------------------------------

case("fs-run-out-is-a-file", "run --out {tmp}/a_file --no-pdf", "{tmp}/a_file", "--out",
     files={"a_file": "x"})
case("fs-run-out-inside-a-file", "run --out {tmp}/a_file/out --no-pdf", "{tmp}/a_file", "--out",
     files={"a_file": "x"})
case("fs-run-out-foreign-folder", "run --out {tmp}/mine --no-pdf", "{tmp}/mine", "--out",
     files={"mine/thesis.tex": "my thesis"})
case("fs-run-cache-dir-is-a-file", "run --config {tmp}/c.yaml --out {out} --cache-dir {tmp}/a_file --no-pdf",
     "{tmp}/a_file", "--cache-dir", files={"a_file": "x", "c.yaml": "sections: {binary: false}\n"})
case("fs-run-cache-dir-inside-a-file",
     "run --config {tmp}/c.yaml --out {out} --cache-dir {tmp}/a_file/cache --no-pdf", "{tmp}/a_file",
     "--cache-dir", files={"a_file": "x", "c.yaml": "sections: {binary: false}\n"})
case("fs-report-out-is-a-file", "report --config {tmp}/c.yaml --out {tmp}/a_file", "{tmp}/a_file", "--out",
     files={"a_file": "x", "c.yaml": "{}\n"})
case("fs-design-out-is-a-file", "design --out {tmp}/a_file", "{tmp}/a_file", "--out", files={"a_file": "x"})
case("fs-design-out-inside-a-file", "design --out {tmp}/a_file/sub", "{tmp}/a_file", "--out",
     files={"a_file": "x"})
case("fs-design-out-foreign-folder", "design --out {tmp}/mine", "{tmp}/mine", "--out",
     files={"mine/notes.txt": "mine"})
case("fs-design-simulate-out-is-a-file", "design --simulate 3 --out {tmp}/a_file", "{tmp}/a_file", "--out",
     files={"a_file": "x"})
case("fs-run-out-root", "run --out / --no-pdf", "--out")
case("fs-config-is-dev-null-folder", "run --config {tmp}/folder/ --out {out}", "{tmp}/folder",
     folders=("folder",))


def _materialise(c: Case, tmp: Path) -> None:
    for name, content in c.files.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    for name in c.folders:
        (tmp / name).mkdir(exist_ok=True)


@pytest.fixture(scope="module")
def previous_output(tmp_path_factory) -> Path:
    """An output folder as a previous run left it (results, report, the design's and durability's files)."""
    folder = tmp_path_factory.mktemp("previous") / "out"
    for rel, text in {"results.json": '{"format": "isletbayes-results/2", "note": "a previous run"}\n',
                      "report.html": "<html>a previous report</html>\n",
                      "design.json": '{"note": "a previous design"}\n', "design_table.csv": "n\n10\n",
                      "durability.json": "{}\n",
                      "design/design.json": "{}\n", "durability/durability.json": "{}\n",
                      "simulation/simulation_manifest.json": '{"settings_sha256": "0"}\n'}.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    return folder


def test_the_corpus_is_large_and_covers_every_input_kind():
    kinds = {c.id.split("-")[0] for c in CASES}
    assert {"participant", "counts", "comparators", "means", "config", "option", "fs"} <= kinds
    assert len(CASES) >= 120
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("c", [pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=c.known))
                               if c.known else c for c in CASES], ids=[c.id for c in CASES])
def test_bad_input_exits_2_with_one_line_naming_the_place(c, cli, tmp_path, previous_output, monkeypatch):
    tmp = tmp_path / "case"
    tmp.mkdir()
    _materialise(c, tmp)
    out = tmp_path / "out"
    shutil.copytree(previous_output, out)
    monkeypatch.chdir(tmp)  # a relative default (reports/out, its cache) would land here, not in the checkout
    monkeypatch.delenv("ISLETBAYES_CACHE_DIR", raising=False)
    before = snapshot(out)
    fmt = {"tmp": str(tmp), "out": str(out)}
    result = cli(*(a.format(**fmt) for a in c.argv))
    assert result.code == 2, (result.code, result.err[-2000:])
    assert "Traceback" not in result.err
    assert len(result.lines) == 1, result.err
    line = result.lines[0]
    assert line.startswith("isletbayes: error: "), line
    for where in c.where:
        if where:
            assert where.format(**fmt) in line, (where.format(**fmt), line)
    assert snapshot(out) == before, "the previous output folder was changed"
    assert siblings(out) == [], "a staging folder was left beside the output folder"
    assert not (tmp / "reports").exists(), "something was written to the default output folder"
