"""NUTS samplers side by side on the C-peptide models (``python -m benchmarks cpeptide``).

For each model (participant-level, 12 simulated participants x 4 visits + day-365 insulin independence; and the
published cohort means with the free rise shape, the analysis default) and each available sampler, in one run on one machine:

* first fit: wall time to the first result, compilation included;
* refit: wall time of a second fit on new data of the same shape (``model.set_data`` then a fresh ``fit``; for
  nutpie also the compile-once path, ``compiled.with_data`` + ``nutpie.sample``, which the design simulations use);
* min bulk ESS of the population parameters per second of the refit;
* whether ``check_diagnostics`` passes (first fit and refit).

PyMC's own NUTS and nutpie always; numpyro / blackjax only if installed.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from dataclasses import replace
from functools import partial

import numpy as np

from isletbayes.analyses.cpeptide import DEFAULT_SETTINGS
from isletbayes.models import cpeptide_trajectory as cpm
from isletbayes.models.sampling import check_diagnostics, fit

PARAMS = list(cpm.POPULATION_PARAMETERS) + ["alpha", "beta"]


def _datasets():
    truth = cpm.PopulationParameters(1200.0, 90.0, 0.35, 0.3, 0.2, alpha=1.5, beta=1.0)
    days = [90.0, 180.0, 270.0, 365.0]
    participant = [cpm.participant_data_from_long(cpm.simulate_participants(truth, 12, days,
                                                                            rng=np.random.default_rng(s)))
                   for s in (1, 2)]
    published = cpm.CohortMeans(days=days, means=[424.0, 1036.0, 1104.0, 1274.0], n_participants=12, ii_count=10)
    other = cpm.simulate_cohort_means(truth, 12, days, rng=np.random.default_rng(3))
    return {
        "participant (12 x 4 visits)": (cpm.build_participant_model, cpm.participant_arrays, participant),
        "cohort means (published, free h)": (partial(cpm.build_means_model, rise_shape=True), cpm.means_arrays,
                                             [published, other]),
    }


def _params(idata) -> list[str]:
    return PARAMS + [n for n in ("rise_shape",) if n in idata["posterior"]]


def _min_ess(idata) -> float:
    import arviz as az

    ess = az.ess(idata["posterior"].to_dataset()[_params(idata)], method="bulk")
    return float(min(float(v.values.min()) for v in ess.data_vars.values()))


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _bench_pm_sample(build, arrays, data, sampler, settings):
    model = build(data[0])
    first, t_first = _timed(lambda: fit(model, replace(settings, nuts_sampler=sampler)))
    import pymc as pm

    pm.set_data(arrays(data[1]), model=model)
    second, t_refit = _timed(lambda: fit(model, replace(settings, nuts_sampler=sampler, seed=settings.seed + 1)))
    return first, t_first, second, t_refit


def _bench_nutpie_compiled(build, arrays, data, settings):
    model = build(data[0])

    def first_fit():
        refit = cpm.CompiledRefit(model)
        return refit, refit.sample({}, settings)

    (refit, first), t_first = _timed(first_fit)
    second, t_refit = _timed(lambda: refit.sample(arrays(data[1]), replace(settings, seed=settings.seed + 1)))
    return first, t_first, second, t_refit


def main(argv: list[str] | None = None) -> int:
    settings = replace(DEFAULT_SETTINGS, draws=1000, tune=1000)
    samplers = ["pymc", "nutpie"] + [s for s in ("numpyro", "blackjax") if importlib.util.find_spec(s)]
    print(f"settings: draws={settings.draws} tune={settings.tune} chains={settings.chains} cores={settings.cores} "
          f"target_accept={settings.target_accept} seed={settings.seed}; samplers: {', '.join(samplers)}")
    header = f"{'model':30s} {'sampler':34s} {'first fit s':>11s} {'refit s':>8s} {'min ESS':>8s} " \
             f"{'ESS/s':>7s} {'diagnostics':>12s}"
    rows, failures = [], []
    for model_name, (build, arrays, data) in _datasets().items():
        runs = [(f"{s} via fit()", lambda s=s: _bench_pm_sample(build, arrays, data, s, settings))
                for s in samplers]
        runs.append(("nutpie compiled once + with_data", lambda: _bench_nutpie_compiled(build, arrays, data,
                                                                                     settings)))
        for label, run in runs:
            first, t_first, second, t_refit = run()
            d1, d2 = check_diagnostics(first, _params(first)), check_diagnostics(second, _params(second))
            ess = _min_ess(second)
            rows.append((model_name, label, t_first, t_refit, ess, ess / t_refit,
                         "pass" if d1.ok and d2.ok else "FAILED"))
            for which, d in (("first fit", d1), ("refit", d2)):
                if not d.ok:
                    failures.append(f"{model_name} / {label} / {which}: FAILED {'; '.join(d.failures)}")
            print(f"  done: {model_name} / {label}", file=sys.stderr, flush=True)
    print(header)
    for r in rows:
        print(f"{r[0]:30s} {r[1]:34s} {r[2]:11.1f} {r[3]:8.1f} {r[4]:8.0f} {r[5]:7.1f} {r[6]:>12s}")
    for line in failures:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
