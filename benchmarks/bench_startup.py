"""Start-up of the command line: `isletbayes --help`, the data commands and an exact design command, each a fresh
process as a user runs it, timed side by side with the version before the one-front-door restructuring
(commit f97be3b, checked out into a temporary folder and run on the same Python and packages).

Targets (issue 15): `--help` and the data commands under 0.5 s; an exact design command well under a second.
Besides wall time (which other load on the machine inflates), each row gives the CPU seconds of the process
(user + system, much less disturbed by load) and the share of it spent importing modules (``-X importtime``).

Two floor rows say how close an exact design command can come with the libraries it computes with: the design
command stopped as soon as its options are read and checked (a bad ``--estimand``: the command line, the typed
configuration, exit status 2) and a process that only imports numpy and scipy.special (the beta functions, tails
and quantiles of the exact layer). Their sum bounds any exact design command from below, with no pandas, no data
read, nothing computed and no result written.

:func:`baseline_tree` (the baseline's packages under a namespace shim) and :func:`cli_command` (the command line of
either version as a fresh process) are shared with the other side-by-side benchmarks (``bench_main_job``,
``bench_cpeptide``).
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "f97be3b"
COMPUTED, KEPT = "design defaults, panel computed", "design defaults, panel kept"
EXACT = "design --exact-only (n 20..100)"
TARGET_S = {"--help": 0.5, "data check": 0.5, "data summary": 0.5, EXACT: 1.0,
            COMPUTED: 1.0, KEPT: 1.0}
CACHE_OPTIONS = ("--no-cache", "--cache-dir")  # options the baseline does not have
_CLI = "import sys\nfrom isletbayes.analyses.cli import main\nsys.exit(main(sys.argv[1:]))"


def baseline_tree(dest: Path, commit: str = BEFORE) -> Path | None:
    """The four packages of ``commit`` extracted under ``dest``, importable as ``isletbayes.*`` through a namespace
    shim: returns the folder to put on PYTHONPATH (``dest/shim``), or None where git cannot give the commit.
    The sources are byte-compiled at once, as an installation does, so the first timed run pays no compile."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "data", "models", "analyses", "reports"],
                             capture_output=True)
    if archive.returncode != 0:
        return None
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    shim = dest / "shim" / "isletbayes"
    shim.mkdir(parents=True)
    for name in ("data", "models", "analyses", "reports"):
        (shim / name).symlink_to(dest / name)
    compile_tree(dest)
    return dest / "shim"


def compile_tree(root: Path) -> None:
    """Byte-compile the four packages under ``root``, as an installation (or ``scripts/bootstrap.sh``) does. A
    first run cannot be relied on for this: where PYTHONDONTWRITEBYTECODE is set it writes no bytecode, and every
    timed run would recompile the sources."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", *(str(root / n) for n in
                                                                ("data", "models", "analyses", "reports"))],
                   capture_output=True)


def cli_command(args: list[str]) -> list[str]:
    """The command line (``isletbayes ARGS``) of whichever version PYTHONPATH selects, as a fresh process."""
    return [sys.executable, "-c", _CLI, *args]


def cli_env(pythonpath: Path | None, **extra: str) -> dict[str, str]:
    """The environment of a fresh process: the baseline's packages first on the path where ``pythonpath`` is
    given, else the installed (current) version."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    env.update(extra)
    return env


def children_cpu_seconds() -> float:
    """User + system CPU seconds of the finished child processes (and theirs) so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


#: floor rows: (process arguments after the interpreter, the exit status it must give)
FLOORS = {
    "floor: design options read only": (cli_command(["design", "--n-min", "20", "--n-max", "100", "--estimand",
                                                     "not_an_estimand"])[1:], 2),
    "floor: import numpy, scipy.special": (["-c", "import numpy, scipy.special"], 0),
}


def _run(args: list[str], pythonpath: Path | None, status: int = 0) -> tuple[float, float]:
    """Wall and CPU seconds of one fresh process ``python ARGS``, which must exit with ``status``."""
    cpu0, t0 = children_cpu_seconds(), time.perf_counter()
    proc = subprocess.run([sys.executable, *args], env=cli_env(pythonpath), capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, children_cpu_seconds() - cpu0
    if proc.returncode != status:
        raise SystemExit(f"bench_startup: exit status {proc.returncode}, not {status} "
                         f"({'baseline' if pythonpath else 'now'}):\npython {' '.join(args)}\n{proc.stderr[-2000:]}")
    return wall, cpu


def _import_seconds(args: list[str], pythonpath: Path | None) -> float:
    """Seconds spent importing modules in one run (the sum of top-level cumulative times of -X importtime)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", *args], env=cli_env(pythonpath),
                          capture_output=True, text=True)
    total = 0
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = line.split("|", 2)
            if not name.startswith(" ") or name.startswith("  "):  # top level only: one space before the name
                continue
            try:
                total += int(cumulative)
            except ValueError:  # the header line
                continue
    return total / 1e6


def _time(args: list[str], pythonpath: Path | None, repeat: int, status: int = 0) -> dict[str, float]:
    """Medians of ``repeat`` runs of ``python ARGS`` (:func:`_run`), and the import seconds of one more."""
    runs = [_run(args, pythonpath, status) for _ in range(repeat)]
    return {"wall_s": statistics.median(w for w, _ in runs), "cpu_s": statistics.median(c for _, c in runs),
            "import_s": _import_seconds(args, pythonpath)}


def main(argv: list[str]) -> dict:
    repeat = 3 if "--quick" in argv else 7
    example = ROOT / "data" / "examples" / "participant_example.csv"
    commands = {"--help": ["--help"], "data check": ["data", "check", str(example)],
                "data summary": ["data", "summary"],
                # the exact path alone: design priors that need no MCMC (the phase 1/2 posterior, discounted and
                # robustified), the day-365 estimand (no durability model), the binomial rule
                EXACT: ["design", "--n-min", "20", "--n-max", "100", "--estimand", "insulin_independence_day365",
                        "--design-prior", "phase12,discounted,robust"],
                "design (n 20..100, defaults)": ["design", "--n-min", "20", "--n-max", "100"]}
    figures: dict[str, dict] = {}
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="isletbayes-bench-startup-") as tmp:
        old = baseline_tree(Path(tmp))
        # the default design computes its design-prior panel (MAP prior, durability model) unless it is kept in
        # the fit cache: timed both ways, the kept panel in a fresh cache folder that the warm-up run fills
        defaults = commands.pop("design (n 20..100, defaults)")
        commands[COMPUTED] = [*defaults, "--no-cache"]
        commands[KEPT] = [*defaults, "--cache-dir", str(Path(tmp) / "fit-cache")]
        compile_tree(ROOT)  # both versions timed with their bytecode compiled, as after installation
        for label, args in commands.items():
            process = cli_command(args)[1:]
            try:
                _run(process, None)  # warm-up: the operating system's file cache
            except SystemExit as err:
                print(f"  {label}: not run ({str(err).splitlines()[0]})")
                continue
            now = _time(process, None, 1 if label == COMPUTED else repeat)
            before = None
            if old is not None:
                before_args = args if label != EXACT else ["design", "--n-min", "20", "--n-max", "100"]
                if "--cache-dir" in before_args:
                    before_args = before_args[:before_args.index("--cache-dir")]
                before_args = [a for a in before_args if a not in CACHE_OPTIONS]
                try:
                    before = _time(cli_command(before_args)[1:], old, 1 if "defaults" in label else repeat)
                except SystemExit:
                    before = None
            figures[label] = {"now": now, "before": before,
                              "ratio_wall": (before["wall_s"] / now["wall_s"]) if before else None,
                              "target_s": TARGET_S[label], "meets_target": now["wall_s"] < TARGET_S[label]}
        floors = {}
        for label, (args, status) in FLOORS.items():
            _run(args, None, status)  # warm-up, as above
            floors[label] = _time(args, None, repeat, status)
    load_after = load_average()
    print(f"median of {repeat} fresh processes each (1 for the computed-panel design); before = commit {BEFORE}; "
          f"load average {load_before} -> {load_after} on {os.cpu_count()} cores")
    print(f"{'command':<34} {'before s':>9} {'now s':>7} {'before/now':>11} {'now CPU s':>10} {'imports s':>10} "
          f"{'target':>8}")
    for label, f in figures.items():
        b = f["before"]["wall_s"] if f["before"] else float("nan")
        ratio = f"{f['ratio_wall']:.1f}x" if f["ratio_wall"] else "-"
        ok = "meets" if f["meets_target"] else "MISSES"
        print(f"{label:<34} {b:>9.2f} {f['now']['wall_s']:>7.2f} {ratio:>11} {f['now']['cpu_s']:>10.2f} "
              f"{f['now']['import_s']:>10.2f} {'< ' + str(f['target_s']):>8}  {ok}")
    print("(before of the exact-only design row: the baseline's design command at its defaults, which were exact)")
    for label, f in floors.items():
        print(f"{label:<34} {'':>9} {f['wall_s']:>7.2f} {'':>11} {f['cpu_s']:>10.2f} {f['import_s']:>10.2f}")
    floor_s = sum(f["wall_s"] for f in floors.values())
    print(f"floor of an exact design command (the two floor rows added): {floor_s:.2f} s"
          + (f"; the exact-only design command: {figures[EXACT]['now']['wall_s']:.2f} s" if EXACT in figures else ""))
    kept_ratio = None
    if COMPUTED in figures and KEPT in figures:
        kept_ratio = figures[COMPUTED]["now"]["wall_s"] / figures[KEPT]["now"]["wall_s"]
        print(f"default design, design-prior panel computed / kept in the fit cache: {kept_ratio:.1f}x")
    return {"commands": figures, "load_average_before": load_before, "load_average_after": load_after,
            "repeat": repeat, "baseline_commit": BEFORE, "kept_panel_ratio_wall": kept_ratio, "floors": floors,
            "design_floor_s": floor_s}


if __name__ == "__main__":
    main(sys.argv[1:])
