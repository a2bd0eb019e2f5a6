"""Start-up of the command line: `isletbayes --help`, the data commands and an exact design command, each a fresh
process as a user runs it, timed side by side with the version before the one-front-door restructuring
(commit f97be3b, checked out into a temporary folder and run on the same Python and packages).

Targets (issue 15): `--help` and the data commands under 0.5 s; an exact design command well under a second.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "f97be3b"
TARGET_S = {"--help": 0.5, "data check": 0.5, "data summary": 0.5, "design (n 20..100)": 1.0}


def _checkout(commit: str, dest: Path) -> Path | None:
    """The four packages of ``commit`` under ``dest/shim/isletbayes`` (a namespace package), or None."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "data", "models", "analyses", "reports"],
                             capture_output=True)
    if archive.returncode != 0:
        return None
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    shim = dest / "shim" / "isletbayes"
    shim.mkdir(parents=True)
    for name in ("data", "models", "analyses", "reports"):
        (shim / name).symlink_to(dest / name)
    return dest / "shim"


def _time(argv: list[str], pythonpath: Path | None, repeat: int) -> float:
    env = dict(os.environ)
    code = "import sys\nfrom isletbayes.analyses.cli import main\nsys.exit(main(sys.argv[1:]))"
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", code, *argv], env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise SystemExit(f"bench_startup: {' '.join(argv)} failed:\n{proc.stderr[-2000:]}")
    return statistics.median(times)


def main(argv: list[str]) -> dict:
    repeat = 3 if "--quick" in argv else 7
    example = ROOT / "data" / "examples" / "participant_example.csv"
    commands = {"--help": ["--help"], "data check": ["data", "check", str(example)],
                "data summary": ["data", "summary"],
                "design (n 20..100)": ["design", "--n-min", "20", "--n-max", "100"]}
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="isletbayes-bench-startup-") as tmp:
        old = _checkout(BEFORE, Path(tmp))
        for label, args in commands.items():
            _time(args, None, 1)  # bytecode compiled once, as after installation
            now = _time(args, None, repeat)
            before = _time(args, old, repeat) if old is not None else float("nan")
            figures[label] = {"before_s": before, "now_s": now, "ratio": before / now}
    print(f"median of {repeat} fresh processes each; before = commit {BEFORE}; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'command':<22} {'before s':>9} {'now s':>8} {'before/now':>11} {'target':>8}")
    for label, f in figures.items():
        ok = "meets" if f["now_s"] < TARGET_S[label] else "MISSES"
        print(f"{label:<22} {f['before_s']:>9.2f} {f['now_s']:>8.2f} {f['ratio']:>10.1f}x {'< ' + str(TARGET_S[label]):>8}"
              f"  {ok}")
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
