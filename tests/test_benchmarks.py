"""The scale benchmark's rstan comparison (its Stan model text for old and new Stan, its same-posterior check) and
the runner's passing of one benchmark's options.

The benchmark itself needs R with rstan (optional, not on CI); these are the parts a reader of its figures relies
on and that run without R."""

from __future__ import annotations

import re

import pytest

from benchmarks.bench_cpeptide_scale import PARAMS, STAN_MODEL, same_posterior_z, stan_model_code

OLD_ARRAY = re.compile(r"\bint(<[^>]*>)? \w+\[\w+\]")


def test_stan_model_uses_the_array_syntax_of_the_installed_stan():
    assert stan_model_code("2.21.0") == STAN_MODEL  # rstan 2.21 (Debian 12) reads only int x[N]
    assert len(OLD_ARRAY.findall(STAN_MODEL)) == 4
    new = stan_model_code("2.32.2")
    assert not OLD_ARRAY.search(new)
    for name, size, bounds in (("who", "N", "<lower=1, upper=P>"), ("cens", "N", "<lower=0, upper=1>"),
                               ("ii_who", "M", "<lower=1, upper=P>"), ("ii", "M", "<lower=0, upper=1>")):
        assert f"array[{size}] int{bounds} {name};" in new
    # nothing else is rewritten: the two texts differ only in those four declarations
    assert OLD_ARRAY.sub("", STAN_MODEL) == re.sub(r"array\[\w+\] int(<[^>]*>)? \w+", "", new)


def _row(means: dict[str, float], mcse: float) -> dict:
    return {"posterior": {k: {"mean": means.get(k, 0.0), "sd": 1.0, "mcse": mcse} for k in PARAMS}}


def test_same_posterior_z_is_the_largest_mean_difference_over_its_monte_carlo_error():
    a = _row({}, 0.03)
    b = _row({"beta": 0.2, "alpha": -0.1}, 0.04)
    assert same_posterior_z(a, b) == pytest.approx(0.2 / 0.05)
    assert same_posterior_z(b, a) == same_posterior_z(a, b)
    assert same_posterior_z(a, a) == 0.0


def test_the_runner_passes_options_after_a_double_dash_to_the_one_benchmark_named(monkeypatch, capsys):
    import benchmarks.record
    from benchmarks.__main__ import main

    calls = []
    monkeypatch.setattr(benchmarks.record, "run_benchmark", lambda name, argv: calls.append((name, argv)))
    assert main(["main_job", "--quick", "--no-record", "--", "--before", "b7ae9b3"]) == 0
    assert calls == [("main_job", ["--quick", "--before", "b7ae9b3"])]
    # a benchmark's option never reaches the others, nor is its value read as a benchmark's name
    with pytest.raises(SystemExit) as stop:
        main(["--", "--before", "x"])
    assert stop.value.code == 2 and "name exactly one" in capsys.readouterr().err
    assert len(calls) == 1
