"""The interrupt guard (a Ctrl-C that a sampler swallows is raised again) and the work budget (work that cannot
fit this machine is refused before it starts, naming the setting; issue 13, items 2 and 7)."""

from __future__ import annotations

import os
import signal
import threading
import time
from types import SimpleNamespace

import pytest

from isletbayes.analyses import budget, interrupts
from isletbayes.analyses.config import MainJobConfig
from isletbayes.data.errors import InputError


def _ctrl_c_in(seconds: float) -> None:
    threading.Timer(seconds, os.kill, args=(os.getpid(), signal.SIGINT)).start()


def swallowing_sampler(seconds: float) -> str:
    """What nutpie and PyMC do: catch KeyboardInterrupt while sampling and return what they have."""
    try:
        time.sleep(seconds)
        return "whole trace"
    except KeyboardInterrupt:
        return "partial trace"


def test_a_swallowed_interrupt_is_raised_again_within_a_second():
    outcome = []
    with interrupts.InterruptGuard(repeat_s=0.2) as guard:
        _ctrl_c_in(0.2)
        started = time.time()
        with pytest.raises(KeyboardInterrupt):
            outcome.append(swallowing_sampler(30))  # swallowed here ...
            while time.time() - started < 10:  # ... the code after it goes on, until the guard raises again
                sum(range(1000))
        took = time.time() - started
    assert outcome == ["partial trace"]
    assert guard.interrupted and took < 2.0


def test_checkpoint_refuses_to_go_on_after_an_interrupt():
    with interrupts.InterruptGuard(repeat_s=60) as guard:
        interrupts.checkpoint()  # nothing happened: goes on
        _ctrl_c_in(0.1)
        assert swallowing_sampler(30) == "partial trace"
        assert interrupts.interrupted()
        with pytest.raises(KeyboardInterrupt):
            interrupts.checkpoint()  # before writing what the partial trace gave
    assert guard.interrupted
    assert not interrupts.interrupted()  # the guard is gone: the Python API is not affected
    interrupts.checkpoint()


def test_the_guard_restores_the_previous_handler():
    previous = signal.getsignal(signal.SIGINT)
    with interrupts.InterruptGuard():
        assert signal.getsignal(signal.SIGINT) is not previous
    assert signal.getsignal(signal.SIGINT) is previous


def test_an_interrupted_command_never_exits_0(monkeypatch, capsys):
    """A command whose interrupt was swallowed and which then returned normally still exits 130."""
    from isletbayes.analyses import cli

    def interrupted_but_returns(*args, **kwargs):
        interrupts.set_resume_hint("what was kept, and how to resume")
        assert swallowing_sampler(30) == "partial trace"
        return None

    monkeypatch.setattr(cli, "app", interrupted_but_returns)
    monkeypatch.setattr(interrupts, "REPEAT_S", 60.0)
    _ctrl_c_in(0.2)
    code = cli.main(["anything"])
    err = capsys.readouterr().err
    assert code == 130
    assert err.strip() == "isletbayes: interrupted; what was kept, and how to resume"


# --- the work budget ----------------------------------------------------------------------------------------


def test_a_fit_too_large_for_this_machine_is_refused_naming_the_setting():
    config = MainJobConfig.model_validate({"sampler": {"draws": 1_000_000, "tune": 1_000_000, "chains": 64}})
    estimates = budget.estimate_main_job(config)
    with pytest.raises(InputError, match="would need about .* of memory .*allow_large_jobs") as err:
        budget.check(estimates, memory_limit=16 * budget.GiB)
    assert err.value.key == "sampler.draws"
    budget.check(estimates, memory_limit=16 * budget.GiB, allow=True)  # the user means it
    budget.check(budget.estimate_main_job(MainJobConfig()), memory_limit=4 * budget.GiB)  # the defaults fit


def test_local_workers_beyond_memory_are_refused_naming_workers():
    design = SimpleNamespace(simulate=1000, workers=200, scheduler=None, estimand=SimpleNamespace(endpoint="cpeptide"))
    with pytest.raises(InputError) as err:
        budget.check(budget.simulation_estimates(design, "CpeptideDay365Analysis"), memory_limit=16 * budget.GiB)
    assert err.value.key == "design.workers" and "200 local simulation workers" in err.value.message


def test_a_job_longer_than_a_day_is_refused_unless_meant():
    design = SimpleNamespace(simulate=100_000, workers=1, scheduler=None)
    estimates = budget.simulation_estimates(design, "CpeptideTrajectoryAnalysis")
    with pytest.raises(InputError, match=r"would take about 55.6 h \(more than 24.0 h\)") as err:
        budget.check(estimates)
    assert err.value.key == "design.simulate"
    budget.check(estimates, allow=True)
    assert budget.allow_large(SimpleNamespace(allow_large_jobs=True))
    assert not budget.allow_large(MainJobConfig())


def test_the_refusal_names_the_option_on_the_command_line(cli, monkeypatch):
    monkeypatch.setattr(budget, "machine_memory", lambda: 1 * budget.GiB)
    result = cli("design", "--simulate", "10", "--workers", "64", "--out", "unused")
    assert result.code == 2 and len(result.lines) == 1, result.err
    assert "option --workers" in result.lines[0] and "the most this machine can hold is 1.0 GiB" in result.lines[0]


def test_machine_memory_is_positive_and_at_most_physical():
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert 0 < budget.machine_memory() <= physical
