"""``isletbayes data check`` and ``isletbayes data summary``: exit 0 with a summary, exit 2 with one line."""

from __future__ import annotations

import json
import subprocess
import sys

from isletbayes.analyses.cli import main
from isletbayes.data import PARTICIPANT_EXAMPLE, PUBLISHED_DIR

HEADER = "participant,cohort,dose,day,measure,value,unit,below_lod,lod\n"


def bad_participant_file(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + "P01,full,0.8,90,cpeptide,400,pmol/L,false,13\n"
                             "P01,full,0.8,180,cpeptide,-3,pmol/L,false,13\n", encoding="utf-8")
    return path


def test_check_valid_file(capsys):
    assert main(["data", "check", str(PARTICIPANT_EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "valid participant file" in out
    assert "participants: 6" in out
    assert "converted cpeptide: nmol/L -> pmol/L" in out


def test_check_json(capsys):
    assert main(["data", "check", str(PUBLISHED_DIR / "zimislecel_counts.csv"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["kind"] == "counts"
    first = summary["default_counts"][0]
    assert (first["endpoint"], first["r"], first["n"]) == ("insulin_independence", 10, 12)


def test_check_with_kind(capsys):
    assert main(["data", "check", str(PUBLISHED_DIR / "comparators.csv"), "--kind", "comparators"]) == 0
    assert "default MAP set" in capsys.readouterr().out
    # a wrong kind is a clear error about the columns, not a guess
    assert main(["data", "check", str(PUBLISHED_DIR / "comparators.csv"), "--kind", "counts"]) == 2
    err = capsys.readouterr().err
    assert "missing column" in err and err.count("\n") == 1


def test_check_invalid_file(tmp_path, capsys):
    path = bad_participant_file(tmp_path)
    assert main(["data", "check", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert f"{path}, line 3, column 'value'" in captured.err
    assert "negative concentration" in captured.err


def test_check_unknown_kind_and_missing_file(tmp_path, capsys):
    assert main(["data", "check", str(PARTICIPANT_EXAMPLE), "--kind", "bogus"]) == 2
    assert "option --kind: unknown kind 'bogus'" in capsys.readouterr().err
    assert main(["data", "check", str(tmp_path / "missing.csv")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_summary(capsys):
    assert main(["data", "summary"]) == 0
    out = capsys.readouterr().out
    assert "insulin_independence   10/12" in out
    assert "day 90: 424 (n=12), day 180: 1036 (n=12), day 270: 1104 (n=12), day 365: 1274 (n=12)" in out
    assert "LLOD 13" in out and "no SD/CI published" in out
    assert "last_infusion" in out
    assert " * CIT-07 (Hering 2016)" in out  # * marks the default MAP set
    assert "   Shapiro 2000 (Edmonton)" in out
    assert "Excluded as unverified" in out and "lantidra_mirror" in out


def test_summary_json(capsys):
    assert main(["data", "summary", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert [m["mean_pmol_l"] for m in s["cpeptide_means"]] == [424.0, 1036.0, 1104.0, 1274.0]
    default_map = {(c["study"], c["r"], c["n"]) for c in s["comparators"] if c["in_default_map"]}
    assert ("CIT-06 (Markmann 2021)", 15, 24) in default_map
    assert all(e["evidence_type"] == "unverified" for e in s["excluded_unverified"])
    safety = {c["endpoint"]: (c["r"], c["n"]) for c in s["counts_default"] if c["kind"] == "safety"}
    assert safety == {"serious_neutropenia": (3, 14), "death": (2, 14), "acute_kidney_injury": (2, 14)}


def test_cli_as_a_subprocess(tmp_path):
    """The installed entry point: exit codes 0 and 2, and never a traceback."""
    command = [sys.executable, "-m", "isletbayes.analyses.cli", "data", "check"]
    good = subprocess.run([*command, str(PARTICIPANT_EXAMPLE)], capture_output=True, text=True, timeout=120)
    assert good.returncode == 0, good.stderr
    assert "valid participant file" in good.stdout
    bad = subprocess.run([*command, str(bad_participant_file(tmp_path))], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
    assert bad.stderr.startswith("isletbayes: error: ") and bad.stderr.count("\n") == 1
