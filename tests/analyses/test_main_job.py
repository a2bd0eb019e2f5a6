"""The main job's plumbing on its fast (exact, no MCMC) sections: outputs, index, cache reuse, user errors.

The MCMC sections and the report's contents are exercised in tests/reports/ (one shared small run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from isletbayes.analyses.cli import main
from isletbayes.analyses.config import config_from_dict
from isletbayes.analyses.main_job import RESULTS_INDEX, read_index, run_main_job

FAST_SECTIONS = {"sections": {"binary": False, "safety": False, "cpeptide": False, "design": True,
                              "durability": True},
                 "design": {"n_min": 10, "n_max": 30, "p0": 0.44, "gamma": 0.975, "design_priors": ["phase12"],
                            "estimand": {"preset": "insulin_independence_day365"}},
                 "durability": {"follow_up_simulations": 10, "follow_up_years": [1.0]}}


@pytest.fixture(scope="module", autouse=True)
def _no_map_fit(tmp_path_factory):
    """The design fits a MAP prior (a PyMC fit of 20-40 s) when the comparator file holds studies of its end point;
    these plumbing tests give it the bundled studies of other end points only (and p0 is fixed)."""
    import csv
    import io

    from isletbayes.data import PARTICIPANT_EXAMPLE

    path = Path(PARTICIPANT_EXAMPLE).resolve().parents[1] / "published" / "comparators.csv"
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    column = rows[0].index("endpoint")
    target = tmp_path_factory.mktemp("data") / "comparators.csv"
    with target.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([rows[0]] + [r for r in rows[1:] if r[column] != "insulin_independence"])
    FAST_SECTIONS["data"] = {"comparators": str(target)}
    yield
    FAST_SECTIONS.pop("data", None)


def fast_config(**override):
    doc = json.loads(json.dumps(FAST_SECTIONS))
    for key, value in override.items():
        doc.setdefault(key, {}).update(value)
    return config_from_dict(doc)


def test_outputs_index_and_a_warm_rerun_from_cache(tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    first = run_main_job(fast_config(), out, cache_dir=cache)
    index = read_index(out)
    assert index.format == "isletbayes-results/2"
    assert {s: e.status for s, e in index.sections.items()} == {
        "binary": "skipped", "cpeptide": "skipped", "design": "ok", "durability": "ok"}
    assert index.sections["design"].cache["status"] == "miss"
    assert (out / "design" / "design.json").is_file() and (out / "durability" / "durability.json").is_file()
    assert index.sections["design"].files == ["design.json", "design_table.csv"]
    assert len(index.config_sha256) == 64 and index.data["counts"].sha256
    assert index.provenance.settings["seed"] == 20250620
    # the section summary in the index is the result's own summary, number for number
    assert index.sections["design"].summary == first.result("design").summary()

    first_index = json.loads((out / RESULTS_INDEX).read_text())
    second = run_main_job(fast_config(), out, cache_dir=cache)
    assert {n: s.cache.status for n, s in second.sections.items() if s.cache} == {"design": "hit",
                                                                                   "durability": "hit"}
    # a warm run copies and indexes the cached sections without loading them ...
    assert all(s.result is None for s in second.sections.values())
    # ... and writes the same index, summaries and diagnostics to the last digit
    second_index = json.loads((out / RESULTS_INDEX).read_text())
    for name in ("design", "durability"):
        for key in ("summary", "diagnostics", "files", "status"):
            assert second_index["sections"][name][key] == first_index["sections"][name][key], (name, key)
    assert second.result("design").summary() == first.result("design").summary()
    assert second.result("durability").summary() == first.result("durability").summary()


def test_a_cache_entry_without_its_record_is_loaded(tmp_path):
    """Entries stored before the manifest kept each section's record are still hits: they are loaded instead."""
    out, cache = tmp_path / "out", tmp_path / "cache"
    first = run_main_job(fast_config(), out, cache_dir=cache)
    first_index = json.loads((out / RESULTS_INDEX).read_text())
    manifest_path = cache / "design" / first.sections["design"].cache.key / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert set(manifest["record"]) == {"summary", "fit_checks"}
    del manifest["record"]
    manifest_path.write_text(json.dumps(manifest))
    again = run_main_job(fast_config(), out, cache_dir=cache)
    assert again.sections["design"].cache.status == "hit"
    assert again.sections["design"].result is not None  # loaded: there was no record to describe it
    index = json.loads((out / RESULTS_INDEX).read_text())
    assert index["sections"]["design"]["summary"] == first_index["sections"]["design"]["summary"]


def test_a_changed_setting_refits_only_its_section(tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    run_main_job(fast_config(), out, cache_dir=cache)
    again = run_main_job(fast_config(design={"p1": 0.75}), out, cache_dir=cache)
    assert again.sections["design"].cache.status == "miss"
    assert again.sections["durability"].cache.status == "hit"
    assert again.result("design").settings["p1"] == 0.75


def test_no_cache_recomputes_and_leaves_no_cache(tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    run = run_main_job(fast_config(), out, cache_dir=cache, use_cache=False)
    assert {s.cache.status for s in run.sections.values() if s.cache} == {"disabled"}
    assert not cache.exists()


def test_corrupt_cache_entry_is_refitted(tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    first = run_main_job(fast_config(), out, cache_dir=cache)
    entry = cache / "design" / first.sections["design"].cache.key
    (entry / "design.json").write_text("{}")
    again = run_main_job(fast_config(), out, cache_dir=cache)
    assert again.sections["design"].cache.status == "refit"
    assert "checksum mismatch" in again.sections["design"].cache.reason
    assert again.result("design").summary() == first.result("design").summary()


def test_run_writes_the_report_and_its_numbers(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(FAST_SECTIONS))
    out = tmp_path / "out"
    assert main(["run", "--config", str(cfg), "--out", str(out), "--no-pdf", "--quiet",
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    index = read_index(out)
    assert index.report["html"] == "report.html" and (out / "report.html").is_file()
    assert index.report["problems"] == []
    design = index.sections["design"].summary
    assert index.report["numbers"]["design"]["first_n"] == design["recommendations"][0]["n"]["first"]


def test_bad_data_file_exits_2_and_keeps_the_previous_results(tmp_path, capsys):
    out = tmp_path / "out"
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(FAST_SECTIONS))
    assert main(["run", "--config", str(good), "--out", str(out), "--no-pdf", "--quiet",
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    bad_counts = tmp_path / "counts.csv"
    bad_counts.write_text("endpoint,kind,cohort,timepoint_day,r,n\ninsulin_independence,efficacy,full_dose,365,13,12\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**FAST_SECTIONS, "data": {"counts": str(bad_counts)}}))
    capsys.readouterr()
    code = main(["run", "--config", str(bad), "--out", str(out), "--no-pdf", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("isletbayes: error: ") and "\n" not in err
    assert str(bad_counts) in err
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before


def test_out_must_be_a_folder(tmp_path, capsys):
    target = tmp_path / "a_file"
    target.write_text("x")
    code = main(["run", "--out", str(target), "--no-pdf", "--quiet"])
    assert code == 2
    assert "--out" in capsys.readouterr().err


def test_missing_participant_data_file_exits_2(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(FAST_SECTIONS))
    code = main(["report", "--config", str(cfg), "--data", str(tmp_path / "none.csv"), "--out",
                 str(tmp_path / "o"), "--no-pdf", "--quiet"])
    assert code == 2
    assert "--data" in capsys.readouterr().err


def test_report_with_participant_data_takes_the_count_from_it(tmp_path):
    import pandas as pd

    from isletbayes.data import PARTICIPANT_EXAMPLE

    frame = pd.read_csv(PARTICIPANT_EXAMPLE)
    ii = frame[(frame["measure"] == "insulin_independent") & (frame["day"] == 365)]
    expected = (int((ii["value"] > 0.5).sum()), int(ii["participant"].nunique()))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(FAST_SECTIONS))
    out = tmp_path / "out"
    assert main(["report", "--config", str(cfg), "--data", str(PARTICIPANT_EXAMPLE), "--out", str(out), "--no-pdf",
                 "--quiet", "--cache-dir", str(tmp_path / "cache")]) == 0
    index = read_index(out)
    assert index.data["participant_data"].sha256
    phase12 = index.sections["design"].summary["phase12"]
    assert (phase12["r"], phase12["n"]) == expected
    assert "Participant-level data were supplied" in (out / "report.html").read_text()
    assert json.loads((out / RESULTS_INDEX).read_text())["report"]["problems"] == []


def test_the_cpeptide_key_covers_every_table_the_joint_model_reads_and_the_kept_calibration(tmp_path, monkeypatch):
    """The joint model reads the continuous summaries (TIR, HbA1c, insulin dose) and the counts (detectable
    C-peptide, insulin outcomes) besides the means, and the result carries the kept SBC summary: a change to any
    of them must refit the section, not return the cached result."""
    import dataclasses

    from isletbayes.analyses import cpeptide_result
    from isletbayes.analyses.cache import fit_key
    from isletbayes.analyses.config import MainJobConfig
    from isletbayes.analyses.inputs import load_inputs
    from isletbayes.analyses.main_job import plan_section

    config = MainJobConfig()
    inputs = load_inputs(config.data)
    kept = tmp_path / "sbc_cpeptide.json"
    kept.write_text(cpeptide_result.KEPT_CALIBRATION_PATH.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setattr(cpeptide_result, "KEPT_CALIBRATION_PATH", kept)

    def key(inp) -> str:
        return fit_key(plan_section("cpeptide", config, inp).material)

    base = key(inputs)
    assert key(inputs) == base
    continuous = inputs.continuous.copy()
    continuous.loc[continuous.index[0], "value"] = continuous["value"].iloc[0] + 0.1
    assert key(dataclasses.replace(inputs, continuous=continuous)) != base
    counts = inputs.counts.copy()
    counts.loc[counts["endpoint"] == "c_peptide_positive", "r"] -= 1
    assert key(dataclasses.replace(inputs, counts=counts)) != base
    kept.write_text(kept.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    assert key(inputs) != base
