"""The participant-level C-peptide model at 12, 50, 200 and 1,000 participants.

``python -m benchmarks cpeptide_scale``.

Issue 15, item 4: the model must sample cleanly (R-hat <= 1.01, no divergent transitions, and the rest of
``check_diagnostics``) at every size. For each size, one simulated data set (4 visits, censored at 13 pmol/L,
insulin independence at day 365) is fitted with nutpie (4 chains x 1000 draws after 1000 tuning steps,
target_accept 0.95, as the participant-level SBC) under each parametrisation of the participant effects side by
side: non-centred (the default), adaptively (partially) centred and centred (``--parametrisations=a,b`` picks
some; ``--quick`` runs 12 and 50). The table gives the sampling time (compilation apart), the minimum bulk ESS of
the population parameters, ESS per second, the leapfrog steps per draw and the diagnostics.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from isletbayes.models import cpeptide_trajectory as cpm
from isletbayes.models.sampling import SamplerSettings, check_diagnostics

SIZES = (12, 50, 200, 1000)
QUICK_SIZES = (12, 50)
DAYS = (90.0, 180.0, 270.0, 365.0)
TRUTH = cpm.PopulationParameters(1200.0, 90.0, 0.35, 0.3, 0.18, alpha=1.5, beta=1.0)
PARAMS = list(cpm.POPULATION_PARAMETERS) + ["alpha", "beta"]
SETTINGS = SamplerSettings(draws=1000, tune=1000, chains=4, cores=2, target_accept=0.95, seed=20250620)


def fit_size(n: int, parametrisation: str, seed: int = 1) -> dict:
    df = cpm.simulate_participants(TRUTH, n, DAYS, rng=np.random.default_rng(seed))
    data = cpm.participant_data_from_long(df)
    start = time.perf_counter()
    refit = cpm.CompiledRefit(cpm.build_participant_model(data, parametrisation=parametrisation))
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    idata = refit.sample({}, SETTINGS)
    sample_s = time.perf_counter() - start
    d = check_diagnostics(idata, var_names=PARAMS)
    steps = float(idata["sample_stats"]["n_steps"].mean())
    return {"n_participants": n, "parametrisation": parametrisation, "compile_s": compile_s, "sample_s": sample_s,
            "min_ess_bulk": d.min_ess_bulk, "min_ess_tail": d.min_ess_tail, "ess_per_s": d.min_ess_bulk / sample_s,
            "steps_per_draw": steps, "max_rhat": d.max_rhat, "divergences": d.divergences, "min_ebfmi": d.min_ebfmi,
            "ok": d.ok, "failures": d.failures}


def main(argv: list[str] | None = None) -> dict:
    argv = list(argv or [])
    sizes = QUICK_SIZES if "--quick" in argv else SIZES
    parametrisations = cpm.PARAMETRISATIONS
    for arg in argv:
        if arg.startswith("--parametrisations="):
            parametrisations = tuple(arg.split("=", 1)[1].split(","))
    rows = []
    print(f"{'n':>5} {'parametrisation':>15} {'sample s':>9} {'min ESS':>8} {'ESS/s':>8} {'steps':>6} "
          f"{'R-hat':>7} {'div':>4}  diagnostics")
    for n in sizes:
        for p in parametrisations:
            row = fit_size(n, p)
            rows.append(row)
            print(f"{n:>5} {p:>15} {row['sample_s']:>9.1f} {row['min_ess_bulk']:>8.0f} {row['ess_per_s']:>8.1f} "
                  f"{row['steps_per_draw']:>6.1f} {row['max_rhat']:>7.4f} {row['divergences']:>4}  "
                  f"{'ok' if row['ok'] else 'FAILED: ' + '; '.join(row['failures'])}", flush=True)
    base = {r["parametrisation"]: r["ess_per_s"] for r in rows if r["n_participants"] == sizes[0]}
    print("ESS/s relative to the smallest size: " + "; ".join(
        f"{r['parametrisation']} n={r['n_participants']}: {r['ess_per_s'] / base[r['parametrisation']]:.2f}"
        for r in rows))
    return {"settings": SETTINGS.as_dict(), "truth": TRUTH.as_dict(), "rows": rows}


if __name__ == "__main__":
    main(sys.argv[1:])
