"""Print quality of the report's PDF, read from the PDF itself (pypdfium2): nothing runs off the page, headings
stay with what follows them, and the pages render to non-blank images."""

from __future__ import annotations

import re

import pytest

MM = 72 / 25.4  # PDF points per millimetre
MARGIN_MM = 12.0  # the template's smallest page margin (@page rules)


def pdf_pages(report):
    pdfium = pytest.importorskip("pypdfium2")
    if report.pdf is None:
        pytest.skip(f"no PDF was written here: {report.pdf_error}")
    doc = pdfium.PdfDocument(str(report.pdf))
    pages = []
    for i in range(len(doc)):
        page = doc[i]
        width, height = page.get_size()
        text = page.get_textpage()
        n = text.count_chars()
        boxes = [text.get_charbox(j) for j in range(n)]
        chars = text.get_text_range()
        pages.append({"width": width, "height": height, "boxes": boxes, "text": chars})
    doc.close()
    return pages


def test_no_text_runs_off_the_page(small_report):
    pages = pdf_pages(small_report)
    assert len(pages) >= 5
    for number, page in enumerate(pages, start=1):
        right = page["width"] - (MARGIN_MM - 2.0) * MM  # 2 mm of slack for glyph side bearings
        over = [box for box in page["boxes"] if box[2] > right and box[2] - box[0] > 0.1]
        assert not over, f"page {number}: {len(over)} characters beyond the right margin (table overflow)"


def test_wide_tables_are_printed_on_landscape_pages(small_report):
    pages = pdf_pages(small_report)
    assert any(p["width"] > p["height"] for p in pages), "no landscape page for the wide tables"
    assert any(p["width"] < p["height"] for p in pages)


def test_headings_are_not_left_at_the_bottom_of_a_page(small_report):
    html = small_report.html.read_text(encoding="utf-8")
    headings = [re.sub(r"\s+", " ", h).strip() for h in re.findall(r"<h[23][^>]*>(.*?)</h[23]>", html, re.S)]
    headings = [h for h in headings if "&" not in h and "<" not in h and len(h) > 12]
    pages = pdf_pages(small_report)
    for heading in headings:
        for number, page in enumerate(pages, start=1):
            flat = re.sub(r"\s+", " ", page["text"])
            at = flat.find(heading)
            if at < 0:
                continue
            after = flat[at + len(heading):].strip()
            assert len(after) > 40, f"heading {heading!r} ends page {number} with nothing after it"
