"""Console output of the command line: tables to stdout, progress and failures to stderr (rich).

Progress: :func:`progress_reporter` is the one switch. Commands wrap their analysis call in it::

    with progress_reporter(progress_enabled(quiet=quiet, as_json=as_json)) as progress:
        progress.status("fitting the MAP priors")   # optional: a spinner line for a phase without a fit
        result = run_binary(...)

Within the block every MCMC fit (:func:`isletbayes.models.sampling.fit`) draws a bar of its NUTS iterations (all
chains, warm-up included) below the command's own spinner lines, and loops reported with
:func:`isletbayes.models.sampling.reported_steps` draw theirs. Progress goes to stderr and only to a terminal:
with ``-q``, with ``--json``, or when stderr is not a terminal (a pipe, a file, a test) nothing is drawn, and
``progress`` is a :class:`NoProgress` that ignores every call. Bars are transient: a finished fit's bar is
removed; what the command prints afterwards is unchanged.
"""

from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator


def console_for(stderr: bool = False):
    """A rich console: a terminal gets its own width, a pipe or file the full width (no wrapping)."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(file=stream, width=None if stream.isatty() else 160, soft_wrap=not stream.isatty())


def print_failures(checks: Iterable) -> bool:
    """Print every failed convergence check in red with FAILED (to stderr, even when quiet); True if any."""
    from rich.markup import escape

    failed = [c for c in checks if not c.ok]
    if failed:
        err = console_for(stderr=True)
        for check in failed:
            err.print(f"[bold red]FAILED[/bold red] {escape(check.fit)}: {escape('; '.join(check.failures))}")
    return bool(failed)


def save_note(console, out: Path | None, *names: str) -> None:
    if out is not None:
        console.print("written: " + ", ".join(str(Path(out) / n) for n in names))


# --------------------------------------------------------------------------------------------------------------
# progress
# --------------------------------------------------------------------------------------------------------------
def progress_enabled(quiet: bool = False, as_json: bool = False) -> bool:
    """Whether a command draws progress: not ``-q``, not ``--json``, and stderr is a terminal."""
    return not quiet and not as_json and sys.stderr.isatty()


class NoProgress:
    """The reporter of a command that draws no progress: every call does nothing."""

    console = None

    @contextmanager
    def status(self, message: str) -> Iterator[None]:
        yield

    def fit_started(self, description: str, total_steps: int | None) -> None:
        pass

    def fit_advanced(self, completed_steps: int) -> None:
        pass

    def fit_finished(self) -> None:
        pass


class RichProgress:
    """A :class:`isletbayes.models.sampling.ProgressReporter` drawn with ``rich.progress`` on stderr.

    One live display for the whole command: spinner lines for the command's phases (:meth:`status`, or
    ``fit_started(description, None)``) and a bar for each fit or counted loop, indented by how deep it is
    nested. Thread-safe (nutpie reports from its own thread). Lines printed with :attr:`console` while the
    display runs appear above it.
    """

    def __init__(self, console=None):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self.console = console if console is not None else console_for(stderr=True)
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=30),
                                 MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=self.console, transient=True)
        self._stack: list = []
        self._lock = threading.RLock()

    def __enter__(self) -> "RichProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        with self._lock:
            for task in self._stack:
                self.progress.remove_task(task)
            self._stack.clear()
        self.progress.stop()

    # ProgressReporter
    def fit_started(self, description: str, total_steps: int | None) -> None:
        from rich.markup import escape

        with self._lock:
            indent = "  " * len(self._stack)
            self._stack.append(self.progress.add_task(indent + escape(description), total=total_steps))

    def fit_advanced(self, completed_steps: int) -> None:
        with self._lock:
            if self._stack:
                self.progress.update(self._stack[-1], completed=completed_steps)

    def fit_finished(self) -> None:
        with self._lock:
            if self._stack:
                self.progress.remove_task(self._stack.pop())

    # phases of a command
    @contextmanager
    def status(self, message: str) -> Iterator[None]:
        """A spinner line for the block (fits inside it draw their bars below it)."""
        self.fit_started(message, None)
        try:
            yield
        finally:
            self.fit_finished()


@contextmanager
def progress_reporter(enabled: bool) -> Iterator[RichProgress | NoProgress]:
    """Draw the progress of the fits (and reported loops) run in the block, if ``enabled``.

    ``enabled``: :func:`progress_enabled` (a terminal, not quiet, not JSON). Yields the reporter, whose
    :meth:`RichProgress.status` adds a spinner line for a phase; a :class:`NoProgress` when not enabled.
    """
    if not enabled:
        yield NoProgress()
        return
    from isletbayes.models.sampling import reporting_progress

    with RichProgress() as reporter, reporting_progress(reporter):
        yield reporter
