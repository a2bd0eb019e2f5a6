"""Console output of the command line: tables to stdout, progress and failures to stderr (rich)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterable


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
