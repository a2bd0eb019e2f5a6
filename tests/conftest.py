"""Shared by every test: one environment variable shifts every random seed the suite uses.

A test that draws random numbers or fits a model takes its seed through the ``seed`` fixture,
``seed(20250620)``, which adds ``ISLETBAYES_TEST_SEED_SHIFT`` (default 0). Running the whole suite at a few
shifts (``ISLETBAYES_TEST_SEED_SHIFT=1000 make test``) shows that no assertion holds at one lucky seed only:
statistical assertions are made against Monte Carlo error, and a fit asserted to converge must converge at
any seed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

SEED_SHIFT_ENV = "ISLETBAYES_TEST_SEED_SHIFT"


def seed_shift() -> int:
    value = os.environ.get(SEED_SHIFT_ENV, "0")
    try:
        shift = int(value)
    except ValueError:
        raise pytest.UsageError(f"{SEED_SHIFT_ENV} must be a non-negative integer, got {value!r}") from None
    if shift < 0:
        raise pytest.UsageError(f"{SEED_SHIFT_ENV} must be a non-negative integer, got {value!r}")
    return shift


@pytest.fixture(scope="session")
def seed():
    """``seed(base)`` is ``base`` shifted by $ISLETBAYES_TEST_SEED_SHIFT: use it for every seed in a test."""
    shift = seed_shift()

    def shifted(base: int) -> int:
        return (int(base) + shift) % 2**32

    return shifted


def pytest_report_header(config):
    return f"random seeds shifted by {seed_shift()} ({SEED_SHIFT_ENV})"


# --- one small main job, shared by the report tests and the same-numbers-through-every-door test ----------

#: A configuration small enough for the test suite: few draws, a short design grid. The numbers it produces are
#: real (the same models on the same data), only less precise than the main job's.
FAST_CONFIG = {
    "sampler": {"draws": 200, "tune": 300, "chains": 2, "cores": 1},
    "cpeptide": {"sensitivity": False, "graft_function_draws": 200},
    "design": {"n_min": 10, "n_max": 40, "n_step": 5},
    "durability": {"follow_up_simulations": 20},
}


@dataclass
class ReportRun:
    """What `isletbayes run` left in its output folder."""

    out: Path
    config_file: Path
    seed: int

    @property
    def index_path(self) -> Path:
        return self.out / "results.json"

    @property
    def html(self) -> Path:
        return self.out / "report.html"

    @property
    def index(self):
        from isletbayes.analyses.main_job import read_index

        return read_index(self.out)

    @property
    def pdf(self) -> Path | None:
        path = self.out / "report.pdf"
        return path if path.exists() else None

    @property
    def pdf_engine(self) -> str | None:
        return self.index.report.get("pdf_engine")

    @property
    def pdf_error(self) -> str | None:
        return self.index.report.get("pdf_error")


@pytest.fixture(scope="session")
def fast_config_file(tmp_path_factory, seed) -> Path:
    import yaml

    path = tmp_path_factory.mktemp("config") / "fast.yaml"
    path.write_text(yaml.safe_dump({**FAST_CONFIG, "seed": seed(20250620)}, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def small_report(tmp_path_factory, fast_config_file, seed) -> ReportRun:
    """The main job run once per test session, through the command line, on the fast configuration (PDF
    included). Under pytest-xdist the workers share it: the first to ask runs it in the session's common
    temporary folder while holding a lock, the others wait for that run and read its folder. Tests read this
    folder only; one that changes files works on a copy."""
    from filelock import FileLock

    from isletbayes.analyses.cli import main

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the folder above every worker's own
    out = shared / "small-report" / "out"
    out.parent.mkdir(exist_ok=True)
    with FileLock(str(out.parent / "run.lock")):
        if not (out / "results.json").exists():
            code = main(["run", "--config", str(fast_config_file), "--out", str(out), "--cache-dir",
                         str(out.parent / "cache"), "--quiet"])
            assert code == 0
    return ReportRun(out, fast_config_file, seed(20250620))


# --- a command in a fresh interpreter: what it printed and which modules it imported -------------------------


@dataclass(frozen=True)
class FreshCommand:
    """One ``isletbayes`` command run by :func:`isletbayes.analyses.cli.main` in a new Python process."""

    exit_code: int
    output: list[str]  # the lines it printed on stdout
    modules: frozenset[str]  # every module imported by the end of the command

    #: MCMC and posterior draws: a command that neither fits nor reads draws imports none of them
    MCMC_PACKAGES = ("pymc", "pytensor", "nutpie", "arviz", "arviz_base", "arviz_stats", "arviz_plots", "xarray")

    def loaded(self, *packages: str) -> list[str]:
        """The imported modules that are, or lie under, one of ``packages`` (dotted names: 'scipy.stats')."""
        return sorted(m for m in self.modules if any(m == p or m.startswith(p + ".") for p in packages))


_MODULES_MARK = "ISLETBAYES-TEST-MODULES "


def _run_in_fresh_process(argv: list[str], timeout: float = 300) -> FreshCommand:
    import json
    import subprocess
    import sys

    code = ("import json, sys\nfrom isletbayes.analyses.cli import main\ncode = main(%r)\n"
            "print('\\n%s' + json.dumps([code, sorted(sys.modules)]))" % (list(argv), _MODULES_MARK))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr
    printed, _, mark = out.stdout.rpartition("\n" + _MODULES_MARK)
    exit_code, modules = json.loads(mark)
    return FreshCommand(exit_code, printed.splitlines(), frozenset(modules))


@pytest.fixture(scope="session")
def fresh_command():
    """``fresh_command(argv)`` runs ``isletbayes *argv`` in a new interpreter: a :class:`FreshCommand`."""
    return _run_in_fresh_process
