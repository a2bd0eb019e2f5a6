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
  (share of draws below it - q) / sqrt(q (1 - q) / ESS of that indicator);
* ``cpeptide_recovery_50``: ``tests/models/test_cpeptide_fits.py``'s 50-participant recovery fit (data and sampler
  seed 31 + s); the diagnostics on the population and link parameters. The model is compiled once, on the
  template the test compiles it on.

``python tests/seed_sweeps.py map_prior_exnex --n 100`` (``--draws N`` to try other than the test's draws per
chain) appends to ``tests/seed_sweeps.jsonl`` (one line per fit, with the sweep's settings and package versions)
and prints the summary.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "seed_sweeps.jsonl"


def _test_module(name: str):
    sys.path.insert(0, str(HERE / "models"))
    try:
        return __import__(name)
    finally:
        sys.path.pop(0)


def map_prior_exnex(seed: int, draws: int) -> dict:
    return _diagnostics(_test_module("test_map_prior").exnex_map_prior(seed, draws).diagnostics)


def mixture_prior_peaked(seed: int, draws: int) -> dict:
    from isletbayes.models.sampling import check_diagnostics

    t = _test_module("test_mixture_prior")
    idata = t.peaked_cases_fit(seed, draws)
    row = _diagnostics(check_diagnostics(idata))
    for name, (mix, r, n) in t.PEAKED_CASES.items():
        exact = mix if r is None else mix.posterior(r, n)
        row[f"z_{name}"] = [round(float(v), 3) for v in t.match_z_scores(idata["posterior"][name].values, exact)]
    row["max_abs_z"] = max(abs(v) for k, vals in row.items() if k.startswith("z_") for v in vals)
    return row


_RECOVERY_50_REFIT = []  # compiled once per process


def cpeptide_recovery_50(seed: int, draws: int) -> dict:
    from isletbayes.models.sampling import check_diagnostics

    t = _test_module("test_cpeptide_fits")
    if not _RECOVERY_50_REFIT:
        _RECOVERY_50_REFIT.append(t.recovery_50_refit())
    idata = t.recovery_fit(_RECOVERY_50_REFIT[0], t.RECOVERY_50_TRUTH, 50, seed, draws)
    return _diagnostics(check_diagnostics(idata, var_names=t.RECOVERY_PARAMETERS))


def _diagnostics(d) -> dict:
    return {"ok": bool(d.ok), "max_rhat": float(d.max_rhat), "min_ess_bulk": float(d.min_ess_bulk),
            "min_ess_tail": float(d.min_ess_tail), "divergences": int(d.divergences), "failures": list(d.failures)}


#: name -> (run, the test's base seed, the test module and its draws per chain)
SWEEPS = {"map_prior_exnex": (map_prior_exnex, 2016, "test_map_prior", "EXNEX_DRAWS"),
          "mixture_prior_peaked": (mixture_prior_peaked, 102, "test_mixture_prior", "PEAKED_DRAWS"),
          "cpeptide_recovery_50": (cpeptide_recovery_50, 31, "test_cpeptide_fits", "RECOVERY_DRAWS")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tests/seed_sweeps.py", description=__doc__.split("\n")[0])
    parser.add_argument("sweep", choices=sorted(SWEEPS))
    parser.add_argument("--n", type=int, default=100, help="number of seeds")
    parser.add_argument("--first", type=int, default=0, help="first seed shift")
    parser.add_argument("--draws", type=int, default=None, help="draws per chain (default: the test's)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    from isletbayes.analyses.provenance import provenance

    run, base, module, draws_name = SWEEPS[args.sweep]
    draws = args.draws or getattr(_test_module(module), draws_name)
    rows = []
    for shift in range(args.first, args.first + args.n):
        row = {"sweep": args.sweep, "draws": draws, "seed": base + shift, **run(base + shift, draws)}
        rows.append(row)
        with args.out.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
    failing = [r["seed"] for r in rows if not r["ok"] or r.get("max_abs_z", 0.0) >= 4.0]
    summary = {"sweep": args.sweep, "draws": draws, "n_seeds": len(rows), "failing_seeds": failing,
               "max_rhat": max(r["max_rhat"] for r in rows), "min_ess_bulk": min(r["min_ess_bulk"] for r in rows),
               "min_ess_tail": min(r["min_ess_tail"] for r in rows),
               "max_abs_z": max((r["max_abs_z"] for r in rows if "max_abs_z" in r), default=None),
               "provenance": provenance(first_shift=args.first, n_seeds=args.n, draws=draws)}
    with args.out.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"summary": summary}, default=str) + "\n")
    print(json.dumps(summary, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
