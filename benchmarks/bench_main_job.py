"""The main job (`isletbayes run`), now and before, side by side in one run: cold (nothing cached) and warm (every
section from the fit cache), with and without the PDF.

"Before" is commit f97be3b (the version before the one-front-door restructuring; ``--before COMMIT`` for another),
checked out into a temporary folder and run on the same Python and packages (:func:`bench_startup.baseline_tree`).
Each run is a fresh process as a user runs it, with its own fit cache; "cold" also starts from an empty
compiled-model cache (``ISLETBAYES_COMPILE_CACHE`` pointed at an empty folder), but keeps PyTensor's own
compile folder (its C modules and numba's cache of the functions PyTensor generates per operation), as after an
upgrade of isletbayes only. "Fresh install" (``--fresh-install``) empties that folder too
(``PYTENSOR_FLAGS=base_compiledir=<empty folder>``), as on a new machine: every operation is compiled anew. For
each run: wall and CPU seconds (CPU time is much less disturbed by other load than wall time), and, for the current
version, the split that ``results.json`` records (analyses, report). "Compiled" is one more run with the
compiled-model cache that the cold run filled and an empty fit cache: every fit runs, no model compiles (as for a
user after the first run, once the data or a setting changed); its C-peptide section is the issue-10 figure without
the one-off compilation.

Targets (issue 15): warm without the PDF under 2 s; (README) cold under 3 minutes on 2 cores.

    python -m benchmarks main_job                     # cold with the PDF, warm with and without it, x2 versions
    python -m benchmarks main_job --quick             # no cold runs: warm only, on a cache filled by a cold run
                                                      #   without the PDF (still minutes: the cache must be filled)
    python benchmarks/bench_main_job.py --config FILE # another configuration (both versions must accept it)
    python -m benchmarks main_job --quick -- --before b7ae9b3  # against another commit
    python -m benchmarks main_job --quick -- --fresh-install   # also a run with PyTensor's compile folder empty
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    from benchmarks.bench_startup import (BEFORE, baseline_tree, children_cpu_seconds, cli_command, cli_env,
                                          ROOT, compile_tree, load_average)
except ModuleNotFoundError:  # run as a script: benchmarks/ itself is on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.bench_startup import (BEFORE, baseline_tree, children_cpu_seconds, cli_command, cli_env,
                                          ROOT, compile_tree, load_average)

COLD_TARGET_S = 180.0
WARM_NO_PDF_TARGET_S = 2.0
#: issue 10: the C-peptide section of the default main job, cold, with its sensitivity refits
CPEPTIDE_COLD_TARGET_S = 120.0


def run_main_job(root: Path, pythonpath: Path | None, *, pdf: bool, config: str | None = None,
                 jobs: int | None = None, compile_cache: Path | None = None, pytensor_dir: Path | None = None,
                 extra: list[str] | None = None) -> dict:
    """One ``isletbayes run`` into ``root/out`` with the fit cache ``root/cache``: wall and CPU seconds, the cache
    outcome of each section and the timings results.json records. ``pytensor_dir``: PyTensor's base compile
    folder for this run (default: the user's)."""
    args = ["run", "--out", str(root / "out"), "--cache-dir", str(root / "cache"), "--quiet",
            "--pdf" if pdf else "--no-pdf", *(extra or [])]
    if config:
        args += ["--config", config]
    if jobs:
        args += ["--jobs", str(jobs)]
    extra_env = {"ISLETBAYES_COMPILE_CACHE": str(compile_cache)} if compile_cache else {}
    if pytensor_dir is not None:
        flags = [f for f in os.environ.get("PYTENSOR_FLAGS", "").split(",") if f and "compiledir" not in f]
        extra_env["PYTENSOR_FLAGS"] = ",".join([*flags, f"base_compiledir={pytensor_dir}"])
    env = cli_env(pythonpath, **extra_env)
    load = load_average()
    cpu0, started = children_cpu_seconds(), time.perf_counter()
    proc = subprocess.run(cli_command(args), env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - started, children_cpu_seconds() - cpu0
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"bench_main_job: `isletbayes {' '.join(args)}` ({'before' if pythonpath else 'now'}) "
                         f"exited with status {proc.returncode}")
    index = json.loads((root / "out" / "results.json").read_text())
    sections = index.get("sections", {})
    status = {n: (s.get("cache") or {}).get("status", s.get("status")) for n, s in sections.items()}
    section_s = {n: s.get("seconds") for n, s in sections.items()}
    return {"wall_s": wall, "cpu_s": cpu, "load_average": load, "pdf": pdf, "cache": status,
            "section_s": section_s, "timings_s": index.get("timings_s", {})}


def _warm(root: Path, pythonpath: Path | None, pdf: bool, repeat: int, **kw) -> dict:
    runs = [run_main_job(root, pythonpath, pdf=pdf, **kw) for _ in range(repeat)]
    missed = sorted({n for r in runs for n, s in r["cache"].items() if s not in ("hit", "skipped")})
    best = min(runs, key=lambda r: r["wall_s"])
    return {"wall_s": statistics.median(r["wall_s"] for r in runs),
            "cpu_s": statistics.median(r["cpu_s"] for r in runs), "min_wall_s": best["wall_s"], "runs": repeat,
            "not_from_cache": missed, "timings_s": best["timings_s"], "load_average": runs[0]["load_average"]}


def _version(label: str, tmp: Path, pythonpath: Path | None, quick: bool, repeat: int, fresh_install: bool = False,
             **kw) -> dict:
    root = tmp / label
    compile_cache = tmp / f"{label}-compiled"
    compile_cache.mkdir(parents=True)
    out: dict = {}
    if fresh_install:
        print(f"  {label}: fresh-install run (PyTensor's compile folder empty too) ...", file=sys.stderr, flush=True)
        out["fresh_install"] = run_main_job(tmp / f"{label}-fresh", pythonpath, pdf=False,
                                            compile_cache=tmp / f"{label}-fresh-compiled",
                                            pytensor_dir=tmp / f"{label}-pytensor", **kw)
    print(f"  {label}: cold run ...", file=sys.stderr, flush=True)
    out["cold"] = run_main_job(root, pythonpath, pdf=not quick, compile_cache=compile_cache, **kw)
    print(f"  {label}: run with the models compiled (an empty fit cache) ...", file=sys.stderr, flush=True)
    out["compiled"] = run_main_job(tmp / f"{label}-refit", pythonpath, pdf=False, compile_cache=compile_cache, **kw)
    for pdf in (False, True):
        print(f"  {label}: warm runs ({'with' if pdf else 'without'} PDF) ...", file=sys.stderr, flush=True)
        out["warm_pdf" if pdf else "warm_no_pdf"] = _warm(root, pythonpath, pdf, repeat,
                                                         compile_cache=compile_cache, **kw)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="bench_main_job", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="configuration file (default: the bundled one)")
    parser.add_argument("--jobs", type=int, default=None, help="passed to `isletbayes run --jobs`")
    parser.add_argument("--quick", action="store_true", help="cold run without the PDF; fewer warm runs")
    parser.add_argument("--no-before", action="store_true", help="time the current version only")
    parser.add_argument("--fresh-install", action="store_true",
                        help="one more cold run per version with PyTensor's compile folder empty too (a new machine)")
    parser.add_argument("--before", default=BEFORE, metavar="COMMIT",
                        help=f"the version to compare with (default {BEFORE}, the version before the restructuring)")
    args = parser.parse_args(argv if argv is not None else [])
    repeat = 2 if args.quick else 3
    kw = {"config": args.config, "jobs": args.jobs}
    versions_kw = {**kw, "fresh_install": args.fresh_install}
    figures: dict = {"baseline_commit": args.before, "cpu_count": os.cpu_count(), "load_average_start": load_average()}
    with tempfile.TemporaryDirectory(prefix="isletbayes-bench-main-job-") as tmp_name:
        tmp = Path(tmp_name)
        compile_tree(ROOT)  # both versions with their bytecode compiled, as after installation
        figures["now"] = _version("now", tmp, None, args.quick, repeat, **versions_kw)
        old = None if args.no_before else baseline_tree(tmp / "baseline", args.before)
        figures["before"] = _version("before", tmp, old, args.quick, repeat, **versions_kw) if old is not None else None
    figures["load_average_end"] = load_average()

    now, before = figures["now"], figures["before"]
    rows = [("fresh install", "fresh_install", COLD_TARGET_S)] if args.fresh_install else []
    rows += [("cold" + ("" if args.quick else ", with PDF"), "cold", COLD_TARGET_S),
            ("warm, without PDF", "warm_no_pdf", WARM_NO_PDF_TARGET_S), ("warm, with PDF", "warm_pdf", None)]
    print(f"main job on {os.cpu_count()} CPU cores ({args.config or 'bundled configuration'}); before = commit "
          f"{args.before}; warm = median of {repeat} runs; load average {figures['load_average_start']} -> "
          f"{figures['load_average_end']}")
    print(f"{'run':<24} {'before s':>9} {'now s':>8} {'before/now':>11} {'before CPU':>11} {'now CPU':>8} "
          f"{'target':>8}")
    for label, key, target in rows:
        b = before[key] if before else None
        n = now[key]
        ratio = f"{b['wall_s'] / n['wall_s']:.1f}x" if b else "-"
        verdict = "" if target is None else ("meets" if n["wall_s"] < target else "MISSES")
        print(f"{label:<24} {b['wall_s'] if b else float('nan'):>9.1f} {n['wall_s']:>8.1f} {ratio:>11} "
              f"{b['cpu_s'] if b else float('nan'):>11.1f} {n['cpu_s']:>8.1f} "
              f"{('< ' + format(target, 'g')) if target else '':>8}  {verdict}")
    sections = [("fresh, C-peptide section", "fresh_install")] if args.fresh_install else []
    sections += [("cold, C-peptide section", "cold"), ("compiled, C-peptide", "compiled")]
    for label, key in sections:
        b = (before or {}).get(key, {}).get("section_s", {}).get("cpeptide") if before else None
        n = now[key]["section_s"].get("cpeptide")
        if n:
            ratio = f"{b / n:.2f}x" if b else "-"
            verdict = ""  # the target is for the cold section; the compiled run is shown beside it
            if key in ("cold", "fresh_install"):
                verdict = (f"{'< ' + format(CPEPTIDE_COLD_TARGET_S, 'g'):>8}  "
                           f"{'meets' if n < CPEPTIDE_COLD_TARGET_S else 'MISSES'}")
            print(f"{label:<24} {b if b else float('nan'):>9.1f} {n:>8.1f} {ratio:>11} {'':>11} {'':>8} {verdict}")
    for key in ("warm_no_pdf", "warm_pdf"):
        if now[key]["not_from_cache"]:
            print(f"note: sections not from the cache in the current version's {key} runs: "
                  f"{', '.join(now[key]['not_from_cache'])}")
    print(f"now, cold: sections {', '.join(f'{k} {v:.0f} s' for k, v in now['cold']['section_s'].items() if v)}; "
          f"warm without PDF: {', '.join(f'{k} {v:.2f} s' for k, v in now['warm_no_pdf']['timings_s'].items())}")
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
