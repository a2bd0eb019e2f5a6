"""Ctrl-C and ``kill -9`` at random points of ``isletbayes run`` and of a simulation-based ``isletbayes design``
(issue 13, items 7 and 9).

After each interruption: nothing half-written is visible (the output folder holds the previous run or the new
one, whole; every simulation record on disk is whole), Ctrl-C exits with status 130 within seconds and one line
saying how to resume, ``kill -9`` leaves no worker computing on; then the same command resumes and the final
results equal an uninterrupted run of the same seed, with no simulation lost or run twice.

The points are drawn from the suite's seed (``ISLETBAYES_TEST_SEED_SHIFT``): by progress for the design (after
k finished simulations, k random) and by time for the main job (a random moment of its run).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hardening_support import siblings, snapshot, start_cli, write_config

from isletbayes.analyses import simulation as sim
from isletbayes.analyses.main_job import read_index

N_SIMS = 200
#: Ctrl-C must end a run within this many seconds (measured: about 1-2 s; the margin is for a loaded CI box).
PROMPT_S = 15.0

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals and /proc: Linux")


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children, their children, ...), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry.name)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def alive(pids: set[int]) -> set[int]:
    out = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.add(pid)
    return out


def records_on_disk(folder: Path) -> dict[int, dict]:
    """Every visible record file, read and checked (a half-written one would fail here)."""
    scan = sim.scan_records(folder)
    assert scan.damaged == [], scan.damaged
    return scan.records


def wait_for_records(folder: Path, k: int, proc, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    sims = folder / sim.SIM_DIR
    while time.time() < deadline and proc.poll() is None:
        if sims.is_dir() and sum(1 for _ in sims.glob("sim_*.json")) >= k:
            return
        time.sleep(0.02)


@pytest.fixture(scope="module")
def design_reference(tmp_path_factory, seed, design_sim):
    """An uninterrupted simulation-based design (hand-made posterior), in this process."""
    import fake_posterior

    from isletbayes.analyses.cli import main

    out = tmp_path_factory.mktemp("design_ref") / "out"
    real = sys.modules.get("isletbayes.analyses.cpeptide")
    sys.modules["isletbayes.analyses.cpeptide"] = fake_posterior.module()
    try:
        code = main([*design_sim, "--simulate", str(N_SIMS), "--seed", str(seed(31)), "--out", str(out)])
    finally:
        if real is not None:
            sys.modules["isletbayes.analyses.cpeptide"] = real
        else:
            sys.modules.pop("isletbayes.analyses.cpeptide", None)
    assert code == 0
    return out, records_on_disk(out / "simulation"), json.loads((out / "design.json").read_text())


def design_summary(out: Path) -> dict:
    doc = json.loads((out / "design.json").read_text())
    return {"simulation": doc["simulation"], "table": doc["table"]}


def resume_design(design_sim: list, out: Path, seed_value: int, cli) -> None:
    result = cli(*design_sim, "--simulate", str(N_SIMS), "--seed", str(seed_value), "--out", out)
    assert result.code == 0, result.err


@pytest.mark.parametrize("workers", [1, 2])
def test_design_ctrl_c_then_resume(workers, design_reference, tmp_path, seed, cli, hand_made_posterior, design_sim):
    ref_out, ref_records, _ = design_reference
    rng = np.random.default_rng(seed(100 + workers))
    out = tmp_path / "out"
    for k in rng.integers(5, N_SIMS // 2, size=1):
        proc = start_cli(*design_sim, "--simulate", N_SIMS, "--seed", seed(31), "--workers", workers, "--out", out)
        wait_for_records(out / "simulation", int(k), proc)
        sent = time.time()
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: the whole process group
        _, err = proc.communicate(timeout=120)
        took = time.time() - sent
        lines = [line for line in err.splitlines() if line.strip()]
        kept = records_on_disk(out / "simulation")
        if proc.returncode == 0:  # it finished before the signal reached it
            continue
        assert proc.returncode == 130, err
        assert took < PROMPT_S, f"Ctrl-C took {took:.1f} s to stop the run"
        assert lines == [f"isletbayes: interrupted; {len(kept)} finished simulations are kept in "
                         f"{out / 'simulation'}: rerun the same command to resume (they are not run again)"], err
        assert all(kept[i] == ref_records[i] for i in kept)
    redone = []
    from isletbayes.analyses import simulation

    real_run_one = simulation.run_one

    def counting(simulator, analysis, params, seed_value, index):
        redone.append(index)
        return real_run_one(simulator, analysis, params, seed_value, index)

    before = set(records_on_disk(out / "simulation"))
    simulation.run_one = counting
    try:
        resume_design(design_sim, out, seed(31), cli)
    finally:
        simulation.run_one = real_run_one
    assert sorted(redone) == sorted(set(range(N_SIMS)) - before)  # nothing finished is run again
    assert records_on_disk(out / "simulation") == ref_records  # nothing lost, nothing duplicated
    assert design_summary(out) == design_summary(ref_out)
    assert siblings(out) == []


def test_design_kill_9_then_resume(design_reference, tmp_path, seed, cli, hand_made_posterior, design_sim):
    ref_out, ref_records, _ = design_reference
    rng = np.random.default_rng(seed(7))
    out = tmp_path / "out"
    points = [None, int(rng.integers(5, N_SIMS - 20))]  # None: a random moment of its start-up
    for k in points:
        proc = start_cli(*design_sim, "--simulate", N_SIMS, "--seed", seed(31), "--workers", 2, "--out", out)
        if k is None:
            time.sleep(float(rng.uniform(0.5, 3.0)))
        else:
            wait_for_records(out / "simulation", int(k), proc)
        workers = descendants(proc.pid)
        proc.send_signal(signal.SIGKILL)  # the run alone, not its group: its workers must not outlive it
        proc.communicate(timeout=60)
        deadline = time.time() + 10
        while alive(workers) and time.time() < deadline:
            time.sleep(0.1)
        assert not alive(workers), "worker processes outlived a killed run"
        kept = records_on_disk(out / "simulation") if (out / "simulation").exists() else {}
        assert all(kept[i] == ref_records[i] for i in kept)
    resume_design(design_sim, out, seed(31), cli)
    assert records_on_disk(out / "simulation") == ref_records
    assert design_summary(out) == design_summary(ref_out)
    assert siblings(out) == []


def run_summaries(out: Path) -> dict:
    return {name: entry.summary for name, entry in read_index(out).sections.items()}


def test_ctrl_c_while_a_finished_command_shuts_down_changes_nothing():
    """After the command's work, Ctrl-C is ignored until the process ends (cli.run): a Ctrl-C while the interpreter
    shuts down neither prints a traceback nor kills the process by the signal (status -2 instead of the command's)."""
    import subprocess

    code = ("import atexit, os, signal, time\n"
            "from isletbayes.analyses.cli import run\n"
            "atexit.register(lambda: (os.kill(os.getpid(), signal.SIGINT), time.sleep(0.2)))\n"
            "run(['data', 'summary'])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "KeyboardInterrupt" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    # a mistake keeps its status too
    mistake = code.replace("['data', 'summary']", "['data', 'check', 'nowhere.csv']")
    proc = subprocess.run([sys.executable, "-c", mistake], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "KeyboardInterrupt" not in proc.stderr, proc.stderr


def test_run_interrupted_or_killed_keeps_the_previous_results_then_resumes(tmp_path, seed, cli, exact_run):
    """A previous run (another seed) is in the folder; each interruption leaves it whole, or leaves the new run
    whole if it had finished; the final rerun equals an uninterrupted run of the new seed."""
    old = write_config(tmp_path / "old.yaml", {**exact_run, "seed": seed(1)})
    new = write_config(tmp_path / "new.yaml", {**exact_run, "seed": seed(2)})
    out, cache = tmp_path / "out", tmp_path / "cache"
    common = ["--out", out, "--cache-dir", cache, "--no-pdf", "--quiet"]
    assert cli("run", "--config", old, *common).code == 0
    reference = tmp_path / "reference"
    started = time.time()
    uninterrupted = start_cli("run", "--config", new, "--out", reference, "--cache-dir", tmp_path / "cache2",
                              "--no-pdf", "--quiet")
    assert uninterrupted.wait(timeout=300) == 0
    duration = time.time() - started  # how long a whole run takes here, start-up included
    rng = np.random.default_rng(seed(3))
    for how in (signal.SIGINT, signal.SIGKILL, signal.SIGINT):
        before = snapshot(out)
        proc = start_cli("run", "--config", new, *common)
        time.sleep(float(rng.uniform(0.3, 1.0)) * duration)
        sent = time.time()
        try:
            os.killpg(proc.pid, how) if how == signal.SIGINT else proc.send_signal(how)
        except ProcessLookupError:
            pass
        _, err = proc.communicate(timeout=120)
        took = time.time() - sent
        if how == signal.SIGINT and proc.returncode != 0:
            assert proc.returncode == 130, err
            assert took < PROMPT_S
            lines = [line for line in err.splitlines() if line.strip()]
            assert len(lines) == 1 and lines[0].startswith("isletbayes: interrupted; "), err
            # before the command began: nothing to resume; after: the cache keeps the finished sections
            assert lines[0].endswith("rerun the command to start again") or (
                "rerun the same command to resume" in lines[0] and str(cache) in lines[0]), lines[0]
        now = snapshot(out)
        if now != before:  # only if the new run had finished: then it is whole, and it is the new run
            assert proc.returncode == 0 or how == signal.SIGKILL
            assert read_index(out).config.seed == seed(2)
            assert run_summaries(out) == run_summaries(reference)
            assert (out / "report.html").is_file()
        assert not any(name.startswith(".") for name in os.listdir(out))
    assert cli("run", "--config", new, *common).code == 0
    assert run_summaries(out) == run_summaries(reference)
    assert siblings(out) == []


def test_run_ctrl_c_stops_its_section_processes_at_once(tmp_path, exact_run, seed):
    """Sections computed in worker processes (as the MCMC sections are): Ctrl-C while they compute ends the run
    within seconds, exit 130, and no worker is left (they ignore SIGINT: the run kills them)."""
    doc = {**exact_run, "durability": {"follow_up_simulations": 400}}  # long enough to be interrupted
    config = write_config(tmp_path / "slow.yaml", doc)
    rng = np.random.default_rng(seed(11))
    proc = start_cli("run", "--config", config, "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache",
                     "--no-pdf", "--jobs", "2", env={"ISLETBAYES_TEST_SECTION_PROCESSES": "1"})
    deadline = time.time() + 120
    while time.time() < deadline and len(alive(descendants(proc.pid))) < 3:  # two workers and their tracker
        time.sleep(0.1)
    time.sleep(float(rng.uniform(2.0, 5.0)))  # the workers are importing, or computing
    workers = descendants(proc.pid)
    assert len(alive(workers)) >= 2, "the sections were not computed in worker processes"
    sent = time.time()
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    took = time.time() - sent
    assert proc.returncode == 130, err
    assert took < PROMPT_S, f"Ctrl-C took {took:.1f} s"
    assert [line for line in err.splitlines() if line.startswith("isletbayes:")][-1].startswith(
        "isletbayes: interrupted; nothing was written to")
    assert "Traceback" not in err
    time.sleep(1)
    assert not alive(workers)
    assert not (tmp_path / "out").exists()
