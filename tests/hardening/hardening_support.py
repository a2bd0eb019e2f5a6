"""Helpers of the hardening tests (fixtures are in conftest.py): folder snapshots, small configurations, the
command line in a process of its own.

Everything here is sized for the continuous-integration budget: the main job runs only its exact sections
(design grid 10-20 without a MAP prior fit, durability with 10 follow-up simulations), simulations use the
exact insulin-independence analysis.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "cli_driver.py"


def no_map_comparators_text() -> str:
    """The bundled comparator studies without those of insulin independence: with them the design fits no MAP
    prior (a PyMC fit of 20-40 s per run, tested in tests/models/) and takes p0 as given."""
    import csv
    import io

    from isletbayes.data import PARTICIPANT_EXAMPLE

    path = Path(PARTICIPANT_EXAMPLE).resolve().parents[1] / "published" / "comparators.csv"
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    column = rows[0].index("endpoint")
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([rows[0]] + [r for r in rows[1:] if r[column] != "insulin_independence"])
    return out.getvalue()


#: The design settings of every small run: one design prior, a fixed p0 and gamma, the day-365 estimand.
SMALL_DESIGN = {"n_min": 10, "n_max": 20, "p0": 0.44, "gamma": 0.975, "design_priors": ["phase12"],
                "estimand": {"preset": "insulin_independence_day365"}}


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones included) -> SHA-256 of its bytes; folders as 'dir'."""
    out = {}
    if not folder.exists():
        return out
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        out[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def siblings(folder: Path) -> list[str]:
    """Names beside ``folder`` that a run leaves while it writes (staging folders, old folders)."""
    return sorted(p.name for p in folder.parent.glob(f".{folder.name}.isletbayes-*"))


def write_config(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@dataclass
class Cli:
    """What one in-process ``main([...])`` call did."""

    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


def start_cli(*argv, env: dict | None = None, cwd: Path | None = None) -> subprocess.Popen:
    """The command line in a process (group) of its own, as a terminal would run it (tests/hardening/cli_driver.py)."""
    return subprocess.Popen([sys.executable, str(DRIVER), *map(str, argv)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, **(env or {})}, cwd=cwd)


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0
