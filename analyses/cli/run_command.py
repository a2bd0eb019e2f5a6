"""``isletbayes run`` and ``isletbayes report``: the main job (every section, through the fit cache), then the
HTML and PDF report. This is the one place that composes the analyses with :mod:`isletbayes.reports`.

The report is built inside the folder the main job prepares (its ``finish`` hook), so the output folder is
replaced whole, results.json, the section files and the report of one run together, or not at all
(:mod:`isletbayes.analyses.outputs`). After Ctrl-C the previous results stay as they were and the finished
sections are in the fit cache: the command line says so, and the same command resumes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

DEFAULT_OUT = Path("reports/out")
CONFIG_HELP = "YAML configuration merged over the defaults (see analyses/default_config.yaml)"
CACHE_HELP = "fit cache folder (default: $ISLETBAYES_CACHE_DIR, else .isletbayes-cache/ beside --out)"
JOBS_HELP = "MCMC sections fitted at once in separate processes (default: CPU cores); results do not depend on it"


class Progress:
    """Progress lines on stderr for the main job's events: a spinner line while a section computes, with a bar
    under it for each MCMC fit run in this process (:func:`~isletbayes.analyses.cli.console.progress_reporter`);
    failures are printed even when quiet. ``reporter``: the command's progress display (a ``NoProgress`` draws
    nothing: quiet, or stderr is not a terminal)."""

    def __init__(self, quiet: bool, reporter=None):
        from isletbayes.analyses.cli.console import NoProgress, console_for

        self.quiet = quiet
        self.reporter = reporter if reporter is not None else NoProgress()
        # lines go through the display's own console, so that they print above its live lines
        self.console = self.reporter.console or console_for(stderr=True)
        self.spinning = False

    def _stop(self) -> None:
        if self.spinning:
            self.reporter.fit_finished()
            self.spinning = False

    def _start(self, message: str) -> None:
        self._stop()
        if not self.quiet:
            self.reporter.fit_started(message, None)
            self.spinning = True

    def line(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message)

    def warning(self, message: str) -> None:
        """One line, even when quiet (a cache skipped, a lock waited for): what the user would want to know."""
        from rich.markup import escape

        self.console.print(f"[yellow]isletbayes: warning: {escape(' '.join(message.split()))}[/yellow]")

    def failure(self, message: str) -> None:
        from rich.markup import escape

        self.console.print(f"[bold red]FAILED[/bold red] {escape(message)}")

    def __call__(self, event) -> None:
        from rich.markup import escape

        kind, name = event.kind, event.section
        if kind in ("loading", "computing"):
            self._start(f"{name}: {event.message}" if name else event.message)
            return
        self._stop()
        if kind == "skipped":
            self.line(f"[dim]- {name}: skipped ({escape(event.message)})[/dim]")
        elif kind == "computed":
            self.line(f"[green]\u2713[/green] {name}: computed in {event.seconds:.1f} s")
        elif kind == "cached":
            self.line(f"[green]\u2713[/green] {name}: from cache")
        elif kind == "damaged":
            self.line(f"[yellow]! {name}: cache entry was damaged ({escape(event.message)}); refitting[/yellow]")
        elif kind == "failed":
            self.failure(f"{name}: {event.message}")
        elif kind in ("warning", "waiting"):
            self.warning(event.message)

    def close(self) -> None:
        self._stop()


def shown_path(path: Path) -> Path:
    """``path`` as the user wrote it: relative to the working folder when it lies inside it (the main job works
    on the absolute path of its output folder), else absolute."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def _resume_hint(out: Path, cache_dir: Path | None, no_cache: bool) -> str:
    from isletbayes.analyses.cache import default_cache_dir

    kept = (f"the previous results in {out} are unchanged" if (Path(out) / "results.json").exists()
            else f"nothing was written to {out}")
    if no_cache:
        return f"{kept}; with --no-cache nothing else was kept: rerun the same command to start again"
    cache = Path(cache_dir) if cache_dir else default_cache_dir(out)
    return f"{kept}; finished sections are kept in the fit cache {cache}: rerun the same command to resume"


def main_job(config_file: Path | None, out: Path, data: Path | None, no_cache: bool, pdf: bool,
             cache_dir: Path | None, quiet: bool, jobs: int | None) -> Path:
    """Run the main job and build the report; returns the report's path."""
    from isletbayes.analyses import interrupts
    from isletbayes.analyses.cli.console import progress_enabled, progress_reporter
    from isletbayes.analyses.config import load_config
    from isletbayes.data.errors import InputError

    interrupts.set_resume_hint(lambda: _resume_hint(out, cache_dir, no_cache))
    config = load_config(config_file)
    if data is not None and not data.is_file():
        raise InputError("no such file" if not data.exists() else "is not a file", option="--data", file=data)
    if jobs is not None and jobs < 1:
        raise InputError(f"must be >= 1, got {jobs}", option="--jobs")
    started = time.perf_counter()
    with progress_reporter(progress_enabled(quiet)) as reporter:
        return _main_job(config, config_file, out, data, no_cache, pdf, cache_dir, jobs, started,
                         Progress(quiet, reporter))


def _main_job(config, config_file: Path | None, out: Path, data: Path | None, no_cache: bool, pdf: bool,
              cache_dir: Path | None, jobs: int | None, started: float, progress: Progress) -> Path:
    from isletbayes.analyses import interrupts
    from isletbayes.analyses.main_job import run_main_job
    from isletbayes.data.errors import InputError
    from isletbayes.reports.report import build_report

    built = {}

    def finish(job) -> dict:
        """Build the report in the folder being prepared (it replaces the output folder with the results)."""
        progress._start("building the report (figures, HTML" + (", PDF)" if pdf else ")"))
        t_report = time.perf_counter()
        # figures are kept beside the fits (--no-cache: drawn, not kept)
        files = build_report(job.out, pdf=pdf, figure_cache=job.cache.root / "figures" if job.cache.enabled else None)
        interrupts.checkpoint()
        job.timings["report"] = time.perf_counter() - t_report
        job.timings["total"] = time.perf_counter() - started
        built["files"] = files.as_dict(job.out)
        built["problems"], built["pdf_error"] = files.problems, files.pdf_error
        return built["files"]

    try:
        job = run_main_job(config, out, cache_dir=cache_dir, use_cache=not no_cache, config_path=config_file,
                           participant_data=data, jobs=jobs, listener=progress, finish=finish)
    except InputError as err:
        if err.key is not None and err.file is None and config_file is not None:
            # a configuration key found wrong after loading: the door is the configuration file
            raise InputError(err.message, file=config_file, key=err.key) from None
        raise
    finally:
        progress.close()
    html = shown_path(job.out / built["files"]["html"])
    pdf_path = shown_path(job.out / built["files"]["pdf"]) if built["files"].get("pdf") else None
    progress.line(f"[green]\u2713[/green] report: {html}" + (f" and {pdf_path}" if pdf_path else ""))
    if pdf and pdf_path is None:
        progress.failure(f"PDF not written: {built['pdf_error']}")
    for problem in built["problems"]:
        progress.failure(problem)
    if not job.diagnostics_ok:
        bad = [c.fit for c in job.fit_checks if not c.ok]
        progress.failure(f"convergence checks in {len(bad)} fit(s): {', '.join(bad)} (see the report)")
    progress.line(f"done in {job.timings['total']:.1f} s; results index: {shown_path(job.index_path)}")
    return html


def run(
    config_file: Optional[Path] = typer.Option(None, "--config", help=CONFIG_HELP),
    out: Path = typer.Option(DEFAULT_OUT, "--out", help="output folder for results and the report"),
    no_cache: bool = typer.Option(False, "--no-cache", help="refit everything; read and write no cache"),
    pdf: bool = typer.Option(True, "--pdf/--no-pdf", help="also render report.pdf"),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help=CACHE_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress lines (failures are still printed)"),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help=JOBS_HELP),
) -> None:
    """Run the whole re-analysis on the bundled published data and write the report."""
    print(main_job(config_file, out, None, no_cache, pdf, cache_dir, quiet, jobs))


def report(
    config_file: Path = typer.Option(..., "--config", help=CONFIG_HELP),
    out: Path = typer.Option(..., "--out", help="output folder for results and the report"),
    data: Optional[Path] = typer.Option(None, "--data", help="participant-level data (long format CSV)"),
    no_cache: bool = typer.Option(False, "--no-cache", help="refit everything; read and write no cache"),
    pdf: bool = typer.Option(True, "--pdf/--no-pdf", help="also render report.pdf"),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help=CACHE_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress lines (failures are still printed)"),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help=JOBS_HELP),
) -> None:
    """Run the re-analysis for a chosen configuration (and optionally your participant-level data) and write
    the report."""
    print(main_job(config_file, out, data, no_cache, pdf, cache_dir, quiet, jobs))
