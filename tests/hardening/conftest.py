"""Fixtures of the hardening tests (helpers are in hardening_support.py): the hand-made posterior, small
configurations, the command line in this process, a read-only folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # hardening_support and fake_posterior, for the test modules

import fake_posterior  # noqa: E402
from hardening_support import SMALL_DESIGN, Cli, is_root, no_map_comparators_text  # noqa: E402


@pytest.fixture
def hand_made_posterior(monkeypatch):
    """``isletbayes design --simulate`` in this process draws from the hand-made posterior."""
    monkeypatch.setitem(sys.modules, "isletbayes.analyses.cpeptide", fake_posterior.module())


@pytest.fixture(scope="session")
def no_map_comparators(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "comparators_without_insulin_independence.csv"
    path.write_text(no_map_comparators_text(), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def exact_run(no_map_comparators) -> dict:
    """The main job's exact sections only (design and durability, small): a run takes a few seconds."""
    return {"sections": {"binary": False, "safety": False, "cpeptide": False, "design": True, "durability": True},
            "data": {"comparators": str(no_map_comparators)}, "design": dict(SMALL_DESIGN),
            "durability": {"follow_up_simulations": 10, "follow_up_years": [1.0]}}


@pytest.fixture(scope="session")
def design_sim(no_map_comparators) -> list[str]:
    """``isletbayes design`` options of a simulation-based design on the hand-made posterior (add --simulate N):
    n = 20 per simulated trial, the exact insulin-independence analysis."""
    return ["design", "--n-min", "10", "--n-max", "20", "--simulate-n", "20", "--p0", "0.44", "--gamma", "0.975",
            "--design-prior", "phase12", "--estimand", "insulin_independence_day365", "--comparators-file",
            str(no_map_comparators)]


@pytest.fixture
def exact_config(tmp_path, exact_run) -> Path:
    path = tmp_path / "exact.yaml"
    path.write_text(yaml.safe_dump(exact_run, sort_keys=False))
    return path


@pytest.fixture
def cli(capsys):
    """``cli("run", "--out", ...)``: the command line in this process, with its exit status and output."""
    from isletbayes.analyses.cli import main

    def call(*argv) -> Cli:
        capsys.readouterr()
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return Cli(code, captured.out, captured.err)

    return call


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nothing can be written in: a read-only tmpfs where this process may mount one (root), else a
    folder without write permission (which root would ignore)."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    if is_root():
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                              capture_output=True)
        if done.returncode != 0:
            pytest.skip("running as root without permission to mount a read-only file system")
        yield folder
        subprocess.run(["umount", str(folder)], capture_output=True)
    else:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
