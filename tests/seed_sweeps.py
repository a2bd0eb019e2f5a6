"""Do the suite's fixed-seed fits hold at other seeds? Rerun them over many seeds and keep what they give.

A test that asserts a small fit converges, or that its draws match an exact answer within Monte Carlo error, must
hold at any seed (``ISLETBAYES_TEST_SEED_SHIFT`` moves them all). This script refits such a test's model at seeds
``base + s``, s = first .. first + n - 1, with the test's own settings, and records per seed what the test asserts:

* ``map_prior_exnex``: ``tests/models/test_map_prior.py``'s EXNEX fit with a definition shift; every diagnostic
  of :func:`isletbayes.models.sampling.check_diagnostics` (R-hat <= 1.01, bulk and tail ESS >= 100 per chain, no
  divergences, E-BFMI >= 0.3);
* ``mixture_prior_peaked``: ``tests/models/test_mixture_prior.py``'s three robust MAP priors in one model (a
  prior-data conflict, the prior alone, a three-component prior); the diagnostics, and the z-scores the test
  compares with 4: of the mean, (mean - exact) / MCSE, and at each quantile q of the exact posterior,
  (share of draws below it - q) / sqrt(q (1 - q) / ESS of that indicator).

``python tests/seed_sweeps.py map_prior_exnex --n 100 --draws 2000`` appends to ``tests/seed_sweeps.jsonl`` (one
line per fit, with the sweep's settings and package versions) and prints the summary.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "seed_sweeps.jsonl"
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)  # as tests/models/test_mixture_prior.py


def _test_module(name: str):
    sys.path.insert(0, str(HERE / "models"))
    try:
        return __import__(name)
    finally:
        sys.path.pop(0)


def map_prior_exnex(seed: int, draws: int) -> dict:
    from isletbayes.models.map_prior import ExNex, map_prior
    from isletbayes.models.sampling import SamplerSettings

    t = _test_module("test_map_prior")
    settings = SamplerSettings(draws=draws, tune=1000, chains=4, target_accept=0.95, seed=seed)
    fit = map_prior(t.EX_R, t.EX_N, settings=settings, exnex=ExNex(p_exchangeable=t.EX_P),
                    definition_class=t.EX_CLASSES, definition_shifts=[t.SHIFT],
                    study_names=["Shapiro 2006", "Lantidra", "outlier"])
    return _diagnostics(fit.diagnostics)


def mixture_prior_peaked(seed: int, draws: int) -> dict:
    import arviz_stats as azs
    import pymc as pm

    from isletbayes.models import mixture_prior as mp
    from isletbayes.models.sampling import SamplerSettings, check_diagnostics, fit

    t = _test_module("test_mixture_prior")
    cases = {"conflict": (t.PEAKED_ROBUST, 10, 12), "prior_only": (t.PEAKED_ROBUST, None, None),
             "map3": (t.MAP3_ROBUST, 6, 12)}
    with pm.Model() as model:
        for name, (mix, r, n) in cases.items():
            theta = mp.mixture_prior(name, mix)
            if r is not None:
                pm.Binomial(f"r_{name}", n=n, p=theta, observed=r)
    idata = fit(model, SamplerSettings(draws=draws, seed=seed))
    row = _diagnostics(check_diagnostics(idata))
    for name, (mix, r, n) in cases.items():
        exact = mix if r is None else mix.posterior(r, n)
        d = idata["posterior"][name].values
        z = [(d.mean() - exact.mean()) / float(azs.mcse(d, method="mean"))]
        for q in QUANTILES:
            below = (d < float(exact.ppf(q))).astype(float)
            z.append((below.mean() - q) / np.sqrt(q * (1 - q) / float(azs.ess(below, method="mean"))))
        row[f"z_{name}"] = [round(float(v), 3) for v in z]
    row["max_abs_z"] = max(abs(v) for k, vals in row.items() if k.startswith("z_") for v in vals)
    return row


def _diagnostics(d) -> dict:
    return {"ok": bool(d.ok), "max_rhat": float(d.max_rhat), "min_ess_bulk": float(d.min_ess_bulk),
            "min_ess_tail": float(d.min_ess_tail), "divergences": int(d.divergences), "failures": list(d.failures)}


SWEEPS = {"map_prior_exnex": (map_prior_exnex, 2016), "mixture_prior_peaked": (mixture_prior_peaked, 102)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tests/seed_sweeps.py", description=__doc__.split("\n")[0])
    parser.add_argument("sweep", choices=sorted(SWEEPS))
    parser.add_argument("--n", type=int, default=100, help="number of seeds")
    parser.add_argument("--first", type=int, default=0, help="first seed shift")
    parser.add_argument("--draws", type=int, default=1000, help="draws per chain")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    from isletbayes.analyses.provenance import provenance

    run, base = SWEEPS[args.sweep]
    rows = []
    for shift in range(args.first, args.first + args.n):
        row = {"sweep": args.sweep, "draws": args.draws, "seed": base + shift, **run(base + shift, args.draws)}
        rows.append(row)
        with args.out.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
    failing = [r["seed"] for r in rows if not r["ok"] or r.get("max_abs_z", 0.0) >= 4.0]
    summary = {"sweep": args.sweep, "draws": args.draws, "n_seeds": len(rows), "failing_seeds": failing,
               "max_rhat": max(r["max_rhat"] for r in rows), "min_ess_bulk": min(r["min_ess_bulk"] for r in rows),
               "min_ess_tail": min(r["min_ess_tail"] for r in rows),
               "max_abs_z": max((r["max_abs_z"] for r in rows if "max_abs_z" in r), default=None),
               "provenance": provenance(first_shift=args.first, n_seeds=args.n, draws=args.draws)}
    with args.out.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"summary": summary}, default=str) + "\n")
    print(json.dumps(summary, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
