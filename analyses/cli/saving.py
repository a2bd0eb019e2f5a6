"""Writing a command's result folder: checked before any work, written beside its place under a lock, swapped in
whole (``isletbayes.analyses.outputs``), so a failed or interrupted run leaves the previous results as they were."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def checked_output(out: Path | None, result_type) -> Path | None:
    """The output folder, refused now (exit 2, naming --out) if it cannot be written or holds other files."""
    from isletbayes.analyses.outputs import check_output_folder

    if out is None:
        return None
    return check_output_folder(out, option="--out", marker=result_type.JSON_FILE)


@contextmanager
def locked_output(out: Path | None) -> Iterator[None]:
    """Hold the output folder's lock for the run (a second run on the same folder waits, with a warning)."""
    from isletbayes.analyses import interrupts
    from isletbayes.analyses.outputs import OutputLock

    if out is None:
        yield
        return
    interrupts.set_resume_hint(f"nothing was written; {out} is as it was: rerun the same command to start again")
    with OutputLock(out, on_wait=lambda m: print(f"isletbayes: warning: {m}", file=sys.stderr), option="--out"):
        yield


def save_result(result, out: Path | None) -> list[str]:
    """Save ``result`` into ``out`` as one swap (nothing when ``out`` is None); the files written."""
    from isletbayes.analyses.outputs import staging_folder

    if out is None:
        return []
    with staging_folder(out) as stage:
        return result.save(stage)
