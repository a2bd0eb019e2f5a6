"""Run the benchmarks (``make bench``), or the ones named: ``python -m benchmarks design startup``. Options after
``--`` go to the one benchmark named: ``python -m benchmarks main_job --quick -- --before COMMIT``.

Each benchmark is a module ``benchmarks/bench_<name>.py`` with ``main(argv) -> dict``: it times what it is named
for side by side with the reference it is compared against (the previous implementation, a naive loop, a
hand-written limit), in one run, prints its ratio table, and returns its figures. This runner appends those
figures, with the machine, the package versions, the git commit and the load average, to
``benchmarks/results/<name>.jsonl`` (kept in the repository: the README quotes its timings from there).
"""

from __future__ import annotations

import argparse
import pkgutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def available() -> list[str]:
    return sorted(m.name.removeprefix("bench_") for m in pkgutil.iter_modules([str(HERE)])
                  if m.name.startswith("bench_"))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0],
        epilog="available benchmarks: " + ", ".join(available()) + ". Options after -- go to the one benchmark named "
               "(python -m benchmarks main_job --quick -- --before COMMIT).")
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all); a part of a name is enough")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--no-record", action="store_true", help="do not append to benchmarks/results/")
    split = argv.index("--") if "--" in argv else len(argv)  # what follows -- is the benchmark's, not the runner's
    args, extra = parser.parse_args(argv[:split]), argv[split + 1:]
    names = available()
    if args.list:
        print("\n".join(names))
        return 0
    if args.names:
        unknown = [w for w in args.names if not any(w in n for n in names)]
        if unknown:
            parser.error(f"no benchmark matches {', '.join(unknown)} (available: {', '.join(names)})")
        names = [n for n in names if any(w in n for w in args.names)]
    if extra and len(names) != 1:
        parser.error(f"{' '.join(extra)}: options of one benchmark; name exactly one (available: {', '.join(names)})")
    from benchmarks.record import append_results, run_benchmark

    for name in names:
        print(f"\n=== {name} ===", flush=True)
        figures = run_benchmark(name, (["--quick"] if args.quick else []) + extra)
        if isinstance(figures, dict) and not args.no_record:
            path = append_results(name, figures, quick=args.quick)
            print(f"(figures appended to {path.relative_to(HERE.parent)})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
