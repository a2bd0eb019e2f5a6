"""The benchmarks' kept results: one JSON line per run, with the machine and versions it ran on."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    from isletbayes.analyses.provenance import git_commit, package_versions

    return {"cpu_count": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor(),
            "load_average_1m": os.getloadavg()[0], "git_commit": git_commit(), "package_versions": package_versions()}


def append_results(name: str, figures: dict[str, Any], quick: bool = False) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.jsonl"
    line = {"benchmark": name, "utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "quick": quick, "machine": machine(), "figures": figures}
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(line, default=float) + "\n")
    return path


def run_benchmark(name: str, argv: list[str]):
    """Run ``benchmarks/bench_<name>.py``'s ``main(argv)``; returns its figures (a dict) or None."""
    import runpy

    module = runpy.run_path(str(Path(__file__).resolve().parent / f"bench_{name}.py"), run_name="bench")
    return module["main"](argv)
