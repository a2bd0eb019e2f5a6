"""HTML -> PDF: headless Chromium's ``--print-to-pdf`` where a Chromium is installed, else WeasyPrint.

Chromium draws the page exactly as a reader's browser does, so it is preferred; WeasyPrint (pure Python plus
Pango) is the fallback. Which one rendered the PDF is recorded in the report's provenance. The browser runs
with networking features off and a throw-away profile: the report is self-contained and needs no network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from isletbayes.data.io import atomic_path

ENV_CHROMIUM = "ISLETBAYES_CHROMIUM"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# Flags for a quiet, offline, throw-away headless browser (also used by the report's browser test).
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def find_chromium() -> str | None:
    """Path of a Chromium executable: $ISLETBAYES_CHROMIUM, else the first of CHROMIUM_NAMES on PATH."""
    env = os.environ.get(ENV_CHROMIUM)
    if env:
        return env if Path(env).exists() or shutil.which(env) else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium_version(exe: str) -> str:
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.strip() or "chromium (version unknown)"
    except (OSError, subprocess.SubprocessError):
        return "chromium (version unknown)"


def weasyprint_version() -> str | None:
    """WeasyPrint's version if it imports (it needs the Pango system library), else None."""
    try:
        import weasyprint
    except Exception:  # noqa: BLE001 - OSError when Pango is missing, ImportError when not installed
        return None
    return f"WeasyPrint {weasyprint.__version__}"


@dataclass(frozen=True)
class PdfEngine:
    name: str  # 'chromium' | 'weasyprint'
    description: str  # what the provenance says
    executable: str | None = None


def available_engines() -> list[PdfEngine]:
    """Engines that can render here, best first."""
    engines = []
    exe = find_chromium()
    if exe:
        engines.append(PdfEngine("chromium", f"{chromium_version(exe)}, headless --print-to-pdf", exe))
    wp = weasyprint_version()
    if wp:
        engines.append(PdfEngine("weasyprint", wp))
    return engines


class PdfError(RuntimeError):
    """No engine could render the PDF."""


def render_pdf(html_path: Path, pdf_path: Path, engine: PdfEngine, timeout_s: float = 180.0) -> Path:
    """Render ``html_path`` to ``pdf_path`` (atomically) with ``engine``; raise PdfError on failure."""
    html_path, pdf_path = Path(html_path).resolve(), Path(pdf_path)
    with atomic_path(pdf_path) as tmp:
        if engine.name == "chromium":
            _chromium_pdf(engine.executable, html_path, tmp, timeout_s)
        elif engine.name == "weasyprint":
            import weasyprint

            weasyprint.HTML(filename=str(html_path)).write_pdf(str(tmp))
        else:  # pragma: no cover - engines come from available_engines()
            raise PdfError(f"unknown PDF engine {engine.name!r}")
        if not tmp.exists() or tmp.stat().st_size < 1000 or tmp.read_bytes()[:5] != b"%PDF-":
            raise PdfError(f"{engine.name} wrote no valid PDF")
    return pdf_path


def _chromium_pdf(exe: str, html_path: Path, out: Path, timeout_s: float) -> None:
    with tempfile.TemporaryDirectory(prefix="isletbayes-chromium-") as profile:
        cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--no-pdf-header-footer",
               f"--print-to-pdf={out}", html_path.as_uri()]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise PdfError(f"chromium did not finish within {timeout_s:.0f} s") from None
        except OSError as err:
            raise PdfError(f"chromium could not start ({err})") from None
        if proc.returncode != 0:
            tail = (proc.stderr or "").strip().splitlines()[-1:] or [""]
            raise PdfError(f"chromium exited with status {proc.returncode}: {tail[0]}")
