"""The report as a person sees it: opened from disk in real headless Chromium (DevTools protocol), and its PDF
rendered to an image. Skips, saying why, where Chromium is not installed."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


def test_report_opens_in_chromium_without_errors(small_report, chromium_page_check, tmp_path_factory):
    shots = tmp_path_factory.mktemp("report-screenshots")
    seen = chromium_page_check(small_report.html.resolve().as_uri(), shots / "report.png")
    print(f"\nscreenshot: {seen.screenshot}")
    assert seen.title.startswith("Zimislecel (VX-880)")
    assert seen.console_errors == []
    assert seen.failed_requests == []
    assert seen.external_requests == []  # self-contained: nothing fetched from the network
    assert seen.n_images >= 8
    assert seen.broken_images == []
    import numpy as np
    from PIL import Image

    with Image.open(seen.screenshot) as img:
        width, height = img.size
        # the 1280-pixel viewport, less a vertical scrollbar where Chromium draws one; the whole page, not one screen
        assert 1280 - 20 <= width <= 1280 and height > 3000
        grey = np.asarray(img.convert("L"), dtype=float)
    assert (grey < 160).mean() > 0.01 and grey.std() > 10  # text and figures were painted, not a blank page


def test_pdf_renders_to_a_nonblank_image(small_report, tmp_path_factory):
    import pypdfium2 as pdfium

    if small_report.pdf is None:
        pytest.skip(f"no PDF was written here: {small_report.pdf_error}")
    shots = tmp_path_factory.mktemp("report-pdf-pages")
    doc = pdfium.PdfDocument(str(small_report.pdf))
    try:
        pages = len(doc)
        images = [doc[i].render(scale=1.0).to_pil() for i in range(min(pages, 3))]
    finally:
        doc.close()
    for i, img in enumerate(images):
        img.save(shots / f"page{i + 1}.png")
        grey = img.convert("L")
        extrema = grey.getextrema()
        assert extrema[0] < 60 and extrema[1] > 240, f"page {i + 1} looks blank"
    print(f"\nPDF pages: {pages}; first pages as images in {shots}")
