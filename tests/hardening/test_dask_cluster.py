"""Scale-out that works (issue 13, item 6): the simulations of ``isletbayes design`` on a real Dask cluster.

The test starts a ``dask scheduler`` and a ``dask worker`` (two worker processes) on the loopback interface, as
a user would on a cluster, and drives the command line against them: the records are those of local workers, to
the last digit, for the same seed. An unreachable scheduler, an address that is not a scheduler's and a scheduler
without workers are refused in seconds, before the posterior fit and before anything is written.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hardening_support import snapshot

import fake_posterior
from isletbayes.analyses import simulation as sim

N_SIMS = 24
DASK = shutil.which("dask", path=os.path.dirname(sys.executable)) or shutil.which("dask")

pytestmark = pytest.mark.skipif(DASK is None, reason="the dask command line is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """tcp://127.0.0.1:PORT of a real scheduler with two single-threaded worker processes."""
    logs = tmp_path_factory.mktemp("dask")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = []

    def start(args, log):
        procs.append(subprocess.Popen([DASK, *args], stdout=open(logs / log, "w"), stderr=subprocess.STDOUT,
                                      start_new_session=True))

    start(["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], "scheduler.log")
    start(["worker", address, "--nworkers", "2", "--nthreads", "1", "--no-dashboard", "--local-directory",
           str(logs / "work")], "worker.log")
    try:
        from distributed import Client

        deadline = time.time() + 120
        while True:
            try:
                with Client(address, timeout=5, set_as_default=False) as client:
                    client.wait_for_workers(2, timeout=max(1.0, deadline - time.time()))
                break
            except (OSError, TimeoutError):
                if time.time() > deadline:
                    raise
                time.sleep(0.5)
        yield address
    finally:
        for proc in reversed(procs):
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture
def design_args(design_sim):
    def args(seed_value: int, out: Path) -> list:
        return [*design_sim, "--simulate", N_SIMS, "--seed", seed_value, "--out", out]

    return args


def test_the_command_line_on_a_real_cluster_equals_local_workers(cluster, tmp_path, seed, cli, hand_made_posterior,
                                                                 design_args):
    on_dask = cli(*design_args(seed(17), tmp_path / "dask"), "--scheduler", cluster)
    assert on_dask.code == 0, on_dask.err
    assert "Traceback" not in on_dask.err
    one = cli(*design_args(seed(17), tmp_path / "one"), "--workers", "1")
    two = cli(*design_args(seed(17), tmp_path / "two"), "--workers", "2")
    assert one.code == 0 and two.code == 0
    records = {name: sim.scan_records(tmp_path / name / "simulation").records for name in ("dask", "one", "two")}
    assert len(records["dask"]) == N_SIMS
    assert records["dask"] == records["one"] == records["two"]
    # the same table and the same simulation-based assurance (the folders' names aside)
    assert on_dask.out.replace(str(tmp_path / "dask"), "OUT") == one.out.replace(str(tmp_path / "one"), "OUT")


def test_the_runner_on_a_real_cluster_resumes_what_local_workers_started(cluster, tmp_path, seed):
    """Half the simulations locally, the rest on the cluster: one folder, the same records as all locally."""
    draws = fake_posterior.draws()
    simulator, analysis = sim.TrialSimulator(20), sim.InsulinIndependenceAnalysis(gamma=0.9)
    local = sim.run_simulations(simulator, analysis, draws, n_sims=N_SIMS, seed=seed(5), outdir=tmp_path / "a")
    sim.run_simulations(simulator, analysis, draws, n_sims=N_SIMS // 2, seed=seed(5), outdir=tmp_path / "b")
    mixed = sim.run_simulations(simulator, analysis, draws, n_sims=N_SIMS, seed=seed(5), outdir=tmp_path / "b",
                                scheduler=cluster)
    assert mixed.records == local.records


@pytest.mark.parametrize("address, words", [
    ("tcp://127.0.0.1:{closed}", "cannot reach the Dask scheduler"),
    ("tcp://127.0.0.1:{http}", "the answer is not Dask's protocol"),
    ("tcp://127.0.0.1:{silent}", "no answer within"),
    ("foo:bar", "not a Dask scheduler address"),
], ids=["nothing-listening", "not-a-scheduler", "never-answers", "not-an-address"])
def test_an_unusable_scheduler_is_refused_in_seconds_before_any_work(address, words, tmp_path, cli,
                                                                    hand_made_posterior, monkeypatch, design_args):
    import threading

    monkeypatch.setattr(sim, "SCHEDULER_TIMEOUT_S", 3.0)
    http = socket.socket()  # a TCP service that is not Dask: it answers something else
    http.bind(("127.0.0.1", 0))
    http.listen()
    silent = socket.socket()  # one that accepts connections (the kernel's backlog) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen()

    def answer():
        while True:
            try:
                conn, _ = http.accept()
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n" * 64)
            except OSError:
                return

    threading.Thread(target=answer, daemon=True).start()
    fake_posterior.HandMadeFit.calls = 0
    before = snapshot(tmp_path)
    started = time.time()
    result = cli(*design_args(1, tmp_path / "out"), "--scheduler",
                 address.format(closed=free_port(), http=http.getsockname()[1], silent=silent.getsockname()[1]))
    took = time.time() - started
    http.close()
    silent.close()
    assert result.code == 2, result.err
    assert len(result.lines) == 1 and words in result.lines[0] and "option --scheduler" in result.lines[0], result.err
    assert took < 15
    assert fake_posterior.HandMadeFit.calls == 0  # no posterior fit
    assert snapshot(tmp_path) == before  # nothing written: no output folder, no lock beside it


def test_a_scheduler_without_workers_is_refused(tmp_path):
    from distributed import LocalCluster

    from isletbayes.data.errors import InputError

    with LocalCluster(n_workers=0, processes=False, protocol="tcp", dashboard_address=None) as empty:
        started = time.time()
        with pytest.raises(InputError, match="has no workers"):
            sim.check_scheduler(empty.scheduler_address, timeout=2)
        assert time.time() - started < 10
