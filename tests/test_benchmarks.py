"""The scale benchmark's rstan comparison: its Stan model text for old and new Stan, and its same-posterior check.

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
