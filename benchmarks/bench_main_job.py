"""The main job (`isletbayes run`) timed cold (empty fit cache) and warm (every fit cached), side by side.

Each run is a fresh process, as a user runs it, writing the HTML and the PDF. Targets on 2 cores: cold under
3 minutes, warm under 20 seconds.

    python -m benchmarks main_job                      # the bundled configuration
    python -m benchmarks.bench_main_job --config FILE  # another configuration
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COLD_TARGET_S = 180.0
WARM_TARGET_S = 20.0


def _cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # finished child processes and their children
    return usage.ru_utime + usage.ru_stime


def _run(out: Path, cache: Path, config: str | None, jobs: int | None) -> tuple[float, float]:
    """Wall-clock and CPU seconds of one `isletbayes run` (CPU time is less disturbed by other load)."""
    cmd = [sys.executable, "-m", "isletbayes.analyses.cli", "run", "--out", str(out), "--cache-dir", str(cache),
           "--quiet"]
    if config:
        cmd += ["--config", config]
    if jobs:
        cmd += ["--jobs", str(jobs)]
    cpu0, started = _cpu_seconds(), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu0
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"bench_main_job: `{' '.join(cmd)}` exited with status {proc.returncode}")
    return seconds, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_main_job", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="configuration file (default: the bundled one)")
    parser.add_argument("--jobs", type=int, default=None, help="passed to `isletbayes run --jobs`")
    parser.add_argument("--keep", default=None, help="keep the output and cache in this folder")
    args = parser.parse_args(argv if argv is not None else [])

    with tempfile.TemporaryDirectory(prefix="isletbayes-bench-") as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        out, cache = root / "out", root / "cache"
        cold = _run(out, cache, args.config, args.jobs)
        sections = json.loads((out / "results.json").read_text())["sections"]
        misses = sorted(n for n, s in sections.items() if s.get("cache") and s["cache"]["status"] != "hit")
        warm = _run(out, cache, args.config, args.jobs)
        index = json.loads((out / "results.json").read_text())
        hits = sorted(n for n, s in index["sections"].items() if s.get("cache") and s["cache"]["status"] == "hit")
        engine = (index.get("report") or {}).get("pdf_engine")
    cores = os.cpu_count()
    print(f"main job on {cores} CPU cores ({'bundled configuration' if not args.config else args.config}); "
          f"PDF by {engine or 'none'}")
    (cold, cold_cpu), (warm, warm_cpu) = cold, warm
    load = os.getloadavg()[0]
    print(f"{'run':<6} {'wall s':>8} {'CPU s':>8} {'target':>8}  sections")
    print(f"{'cold':<6} {cold:>8.1f} {cold_cpu:>8.1f} {'< ' + format(COLD_TARGET_S, '.0f'):>8}  computed: "
          f"{', '.join(misses)}")
    print(f"{'warm':<6} {warm:>8.1f} {warm_cpu:>8.1f} {'< ' + format(WARM_TARGET_S, '.0f'):>8}  from cache: "
          f"{', '.join(hits)}")
    print(f"cold / warm = {cold / warm:.1f}x wall, {cold_cpu / warm_cpu:.1f}x CPU; cold "
          f"{'meets' if cold < COLD_TARGET_S else 'MISSES'} its target, warm "
          f"{'meets' if warm < WARM_TARGET_S else 'MISSES'} its target (load average now {load:.1f} on {cores} "
          f"cores: wall times grow with other load, CPU times much less)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
