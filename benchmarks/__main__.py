"""Run every benchmark in this folder (``make bench``), or the ones named: ``python -m benchmarks design``.

Flags (``--quick``) are passed on to each benchmark's ``main``."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name.startswith("bench_"))
    wanted = [a for a in argv if not a.startswith("-")]
    flags = [a for a in argv if a.startswith("-")]  # passed on to every benchmark, e.g. --quick
    if wanted:
        names = [n for n in names if any(w in n for w in wanted)]
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        importlib.import_module(f"benchmarks.{name}").main(flags)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
