"""The posterior report built from one small main-job run (shared, see conftest.py): contents, self-containment,
escaping, failure highlighting, PDF, and machine-readable results beside it."""

from __future__ import annotations

import json
import re
import shutil
from html import unescape
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from isletbayes.analyses.binary import BinaryResult
from isletbayes.analyses.cli import main
from isletbayes.analyses.design import DesignResult
from isletbayes.data.loaders import PUBLISHED_DIR
from isletbayes.reports.report import build_report


def html_of(run) -> str:
    return Path(run.html).read_text(encoding="utf-8")


def test_the_report_lists_no_problems(small_report):
    # every section drew, every internal link resolves, and every "see the X" names a table or figure it holds
    assert small_report.index.report["problems"] == []


def test_every_part_of_the_report_is_there(small_report):
    html = html_of(small_report)
    for section_id in ("summary", "data", "binary", "safety", "cpeptide", "design", "durability", "diagnostics",
                       "assumptions", "provenance"):
        assert f'<section id="{section_id}">' in html, section_id
    for phrase in ("What the trial shows, and how sure we can be", "Forest plot of comparator studies",
                   "Posterior densities of each end point", "Posterior C-peptide trajectory",
                   "Probability of insulin independence against day-365 C-peptide", "Adverse-event rates",
                   "Type I error against phase 3 sample size", "Assurance against phase 3 sample size",
                   "the tau-prior block", "Tipping point of the insulin independence comparison",
                   "definition differences and their direction", "Model checks", "Holdout check",
                   "Assumed, not observed", "which C-peptide series the published means are",
                   "configuration SHA-256", "git commit", "PDF rendered by", "Package versions"):
        assert phrase in html, phrase
    assert "not part of this installation" not in html


def test_report_is_self_contained(small_report):
    html = html_of(small_report)
    images = re.findall(r'<img [^>]*src="([^"]+)"', html)
    assert len(images) >= 8
    assert all(src.startswith("data:image/png;base64,") for src in images)
    # nothing is fetched from anywhere: no scripts, stylesheets, fonts or frames by address
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<script" not in html and "<link" not in html and "@import" not in html
    assert not re.search(r"url\(", html)


def test_summary_numbers_are_the_results(small_report):
    numbers = small_report.index.report["numbers"]
    binary = BinaryResult.load(small_report.out / "binary")
    mean = binary.endpoints["insulin_independence"].table.loc["uniform", "mean"]
    assert numbers["binary"]["insulin_independence"]["posterior_mean"]["uniform"] == mean
    html = html_of(small_report)
    assert f"With a uniform prior the underlying rate is {100 * mean:.0f}%" in html
    design = DesignResult.load(small_report.out / "design")
    assert numbers["design"]["first_n"] == design.recommendations[0].n.first
    # the headline compares against the comparator as a distribution, and says so
    p_better = binary.endpoints["insulin_independence"].comparison.loc["uniform", "p_better"]
    assert f"the probability that zimislecel's rate is higher is {100 * p_better:.0f}%" in unescape(html)
    # the exact uniform posterior of 10/12 is Beta(11, 3)
    assert mean == pytest.approx(11 / 14)


def test_the_map_table_shows_its_effective_sample_sizes(small_report):
    html = html_of(small_report)
    for method in ("elir", "moment", "morita"):
        assert f"effective sample size of the MAP prior ({method})" in html
        assert f"effective sample size of the robust MAP prior ({method})" in html


def test_machine_readable_results_beside_the_report(small_report):
    index = json.loads(small_report.index_path.read_text())
    for name, entry in index["sections"].items():
        assert entry["status"] == "ok", name
        for rel in entry["files"]:
            path = small_report.out / entry["dir"] / rel
            assert path.is_file(), path
            if path.suffix == ".nc":
                with xr.open_datatree(path, engine="h5netcdf") as tree:
                    assert "posterior" in tree.children
    posterior = xr.open_datatree(small_report.out / "cpeptide" / "cpeptide_posterior.nc", engine="h5netcdf")
    assert posterior["posterior"].sizes["chain"] == 2 and posterior["posterior"].sizes["draw"] == 200
    posterior.close()
    # each section's summary in the index is exactly what its own JSON file holds
    saved = json.loads((small_report.out / "cpeptide" / "cpeptide_summary.json").read_text())
    assert index["sections"]["cpeptide"]["summary"]["parameters"] == saved["parameters"]
    assert posterior is not None
    assert index["diagnostics"] and all("max_rhat" in d for d in index["diagnostics"])
    assert index["all_diagnostics_ok"] == all(d["ok"] for d in index["diagnostics"])


def test_pdf_is_written_and_not_blank(small_report):
    import pypdfium2 as pdfium

    assert small_report.pdf is not None and small_report.pdf.read_bytes()[:5] == b"%PDF-"
    assert small_report.pdf_engine and small_report.pdf_engine in html_of(small_report)
    doc = pdfium.PdfDocument(str(small_report.pdf))
    try:
        assert len(doc) >= 5
        pixels = doc[0].render(scale=0.5).to_numpy()
    finally:
        doc.close()
    grey = pixels[..., :3].mean(axis=-1)
    assert (grey < 200).mean() > 0.01  # text and shading, not an empty page
    assert grey.std() > 10


def test_failed_fit_is_shown_in_red(small_report, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(small_report.out, out)
    # a failed fit, as its analysis would have saved it
    saved = out / "binary" / "binary.json"
    doc = json.loads(saved.read_text())
    diag = doc["endpoints"]["insulin_independence"]["map"]["diagnostics"]
    diag.update(ok=False, failures=["R-hat 1.250 > 1.01", "3 divergent transitions"])
    saved.write_text(json.dumps(doc))
    files = build_report(out, pdf=False)
    html = files.html.read_text()
    name = diag["fit"]
    assert f"Fit &#39;{name}&#39;" in html and "FAILED its convergence checks: R-hat 1.250 &gt; 1.01" in html
    assert re.search(r'<tr class="fail">\s*<td>' + re.escape(name), html)
    assert '<td class="fail">FAILED: R-hat 1.250 &gt; 1.01; 3 divergent transitions</td>' in html
    assert not (out / "report.pdf").exists()  # a PDF that no longer matches the HTML is removed


def test_text_from_data_is_escaped(tmp_path):
    rows = (PUBLISHED_DIR / "zimislecel_counts.csv").read_text().splitlines()
    header = rows[0].split(",")
    hostile = '"<script>alert(1)</script> & <b>bold</b>"'
    caveat_at = header.index("caveat")
    first = rows[1]
    # the first row's caveat is a quoted field; replace the whole row's caveat by the hostile text
    import csv
    import io

    fields = next(csv.reader(io.StringIO(first)))
    fields[caveat_at] = hostile.strip('"')
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(fields)
    counts = tmp_path / "counts.csv"
    counts.write_text("\n".join([rows[0], buf.getvalue().rstrip("\n"), *rows[2:]]) + "\n")
    sources = tmp_path / "sources.csv"
    shutil.copy(PUBLISHED_DIR / "sources.csv", sources)
    import yaml

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"sections": {"binary": False, "safety": False, "cpeptide": False,
                                                "design": True, "durability": False},
                                   "design": {"n_min": 10, "n_max": 20}, "data": {"counts": str(counts)}}))
    out = tmp_path / "out"
    assert main(["run", "--config", str(cfg), "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
                 "--no-pdf", "--quiet"]) == 0
    html = (out / "report.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in html
    assert "<script>" not in html and "<b>bold" not in html


def test_figures_are_deterministic(small_report, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(small_report.out, out)
    first = build_report(out, pdf=False).html.read_text()
    second = build_report(out, pdf=False).html.read_text()
    uris = lambda html: re.findall(r'src="(data:[^"]+)"', html)  # noqa: E731
    assert uris(first) == uris(second)
    assert np.all([len(u) > 1000 for u in uris(first)])


def test_a_section_that_cannot_be_drawn_is_flagged_not_fatal(small_report, tmp_path, monkeypatch):
    from isletbayes.reports import report

    out = tmp_path / "out"
    shutil.copytree(small_report.out, out)

    def broken(ctx, result):
        raise RuntimeError("boom")

    result_type, _ = report.SECTION_BUILDERS["durability"]
    monkeypatch.setitem(report.SECTION_BUILDERS, "durability", (result_type, (broken,)))
    files = build_report(out, pdf=False)
    html = files.html.read_text()
    assert "The durability section could not be drawn (RuntimeError: boom)" in html
    assert files.problems and "could not be drawn" in files.problems[0]
    assert '<section id="design">' in html  # the others are still there
