"""The participant-level C-peptide model at 12, 50, 200 and 1,000 participants.

``python -m benchmarks cpeptide_scale`` (``--quick``: 12 and 50 participants). Run directly,
``python -m benchmarks.bench_cpeptide_scale [--quick] [--full] [--sizes=12,200] [--parametrisations=a,b]
[--mass-matrices=diag,low_rank] [--data-seeds=1,2,3] [--draws=1000] [--sampler-seed=20250620] [--no-rstan]
[--no-record]``, which appends its figures to ``benchmarks/results/cpeptide_scale.jsonl`` as the runner does.

Issue 15, item 4: the model must sample cleanly (every check of ``check_diagnostics``: R-hat <= 1.01, bulk and
tail ESS >= 100 per chain, no divergent transitions, E-BFMI >= 0.3, no saturated tree depth) at every size. For
each size, one simulated data set (4 visits, censored at 13 pmol/L, insulin independence at day 365) is fitted
with nutpie (4 chains x 1000 draws after 1000 tuning steps, target_accept 0.99, the participant model's setting,
``calibration.PARTICIPANT_TARGET_ACCEPT``) under each parametrisation of the participant effects side by side:
adaptive (the default: each effect standardised by its approximate conditional posterior), non-centred and
centred. The classical extremes are run at 1,000 participants only with ``--full`` (each costs tens of minutes on
2 cores there, and both already fail at 200). The table gives the sampling time (compilation apart), the minimum
bulk and tail ESS of the population parameters, ESS per second (the smaller ESS over the sampling time), the
leapfrog steps per draw, the largest R-hat, divergent transitions and the diagnostics; then each
parametrisation's ESS/s relative to its own at 12 participants (the growth from 12 to 1,000).

``--mass-matrices=diag,low_rank`` also fits each parametrisation with nutpie's low-rank mass matrix
(``SamplerSettings.mass_matrix``; rows labelled ", low-rank"). The default, diagonal, is what the participant
model samples with. ``--data-seeds=1,2,3`` fits each size to several simulated data sets (default: seed 1 only;
the sampler's seed is the same for all), each row with the z-score of each population parameter's posterior mean
against the truth, (mean - truth) / posterior sd: a check that the fits recover what was simulated.

rstan rows (optional, skipped when ``Rscript``, rstan or jsonlite is absent; up to 200 participants unless
``--full``, like the classical parametrisations): the same model and data in Stan (``STAN_MODEL``: non-centred
effects, as a Stan user writes this model, with the same priors, censored lognormal likelihood and logistic link),
rstan's NUTS with the same chains, draws, warm-up and adapt_delta, the same diagnostics on its draws; its time is
sampling only (compilation apart), as for nutpie. The model text is written for the rstan 2.21 of Debian 12
(``apt-get install r-cran-rstan r-cran-jsonlite``; Debian's ``r-cran-bh`` leaves the Boost headers in
``/usr/include``, where ``stan_model`` does not look: ``mkdir -p /usr/lib/R/site-library/BH/include && ln -s
/usr/include/boost /usr/lib/R/site-library/BH/include/boost``) and rewritten for newer Stan
(:func:`stan_model_code`). That both fit the same posterior is checked, not assumed: for each size the largest
difference of the two posterior means over its Monte Carlo error (``same_posterior_z``; about the largest of 7
standard normals when they agree, so above 4 is a disagreement) is printed with the ESS/s ratio.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import xarray as xr

from isletbayes.models import cpeptide_trajectory as cpm
from isletbayes.models.graft_link import LinkPriors
from isletbayes.models.sampling import MASS_MATRICES, SamplerSettings, check_diagnostics

SIZES = (12, 50, 200, 1000)
QUICK_SIZES = (12, 50)
EXTREMES_UP_TO = 200  # the classical parametrisations run up to this size unless --full
DAYS = (90.0, 180.0, 270.0, 365.0)
TRUTH = cpm.PopulationParameters(1200.0, 90.0, 0.35, 0.3, 0.18, alpha=1.5, beta=1.0)
PARAMS = list(cpm.POPULATION_PARAMETERS) + ["alpha", "beta"]
#: target_accept 0.99: the participant model's setting (analyses.calibration.PARTICIPANT_TARGET_ACCEPT)
SETTINGS = SamplerSettings(draws=1000, tune=1000, chains=4, cores=2, target_accept=0.99, seed=20250620)

#: Written with the integer-array declarations of Stan < 2.26 (``int x[N]``), which the rstan 2.21 of Debian 12
#: needs; :func:`stan_model_code` rewrites them as ``array[N] int x`` for Stan >= 2.26, which no longer reads the
#: old form from 2.33 on.
STAN_MODEL = r"""
data {
  int<lower=1> N; int<lower=1> P; int<lower=1, upper=P> who[N]; vector<lower=0>[N] day;
  vector<lower=0>[N] y; vector<lower=0>[N] lod; int<lower=0, upper=1> cens[N];
  int<lower=0> M; int<lower=1, upper=P> ii_who[M]; int<lower=0, upper=1> ii[M];
  real plateau_mu; real plateau_sd; real t_half_mu; real t_half_sd; real spread_a; real spread_k;
  real sigma_mu; real sigma_sd; real alpha_mean; real alpha_sd; real beta_mean; real beta_sd; real ref_log_c;
}
parameters {
  real<lower=0> plateau_pmol_l; real<lower=0> t_half_days; real<lower=0> sd_log_plateau;
  real<lower=0> sd_log_rate; real<lower=0> measurement_sd; real alpha; real beta;
  vector[P] z_a; vector[P] z_k;
}
transformed parameters {
  vector[P] log_a = log(plateau_pmol_l) + sd_log_plateau * z_a;
  vector[P] log_k = log(log(2)) - log(t_half_days) + sd_log_rate * z_k;
}
model {
  plateau_pmol_l ~ lognormal(plateau_mu, plateau_sd);
  t_half_days ~ lognormal(t_half_mu, t_half_sd);
  sd_log_plateau ~ normal(0, spread_a);
  sd_log_rate ~ normal(0, spread_k);
  measurement_sd ~ lognormal(sigma_mu, sigma_sd);
  alpha ~ normal(alpha_mean, alpha_sd);
  beta ~ normal(beta_mean, beta_sd);
  z_a ~ std_normal();
  z_k ~ std_normal();
  for (n in 1:N) {
    real mu = log_a[who[n]] + log1m_exp(-exp(log_k[who[n]]) * day[n]);
    if (cens[n] == 1) target += normal_lcdf(log(lod[n]) | mu, measurement_sd);
    else target += lognormal_lpdf(y[n] | mu, measurement_sd);
  }
  {
    vector[P] log_c365 = log_a + log1m_exp(-exp(log_k) * 365.0);
    for (m in 1:M) ii[m] ~ bernoulli_logit(alpha + beta * (log_c365[ii_who[m]] - ref_log_c));
  }
}
"""

RSCRIPT = r"""
suppressMessages(library(rstan))
args <- commandArgs(trailingOnly = TRUE)
d <- jsonlite::fromJSON(args[1])
settings <- d$settings; d$settings <- NULL
t0 <- proc.time()[["elapsed"]]
m <- stan_model(file = args[2])
compile_s <- proc.time()[["elapsed"]] - t0
t0 <- proc.time()[["elapsed"]]
fit <- sampling(m, data = d, chains = settings$chains, iter = settings$tune + settings$draws,
                warmup = settings$tune, cores = settings$cores, seed = settings$seed, refresh = 0,
                control = list(adapt_delta = settings$target_accept))
sample_s <- proc.time()[["elapsed"]] - t0
pars <- c("plateau_pmol_l", "t_half_days", "sd_log_plateau", "sd_log_rate", "measurement_sd", "alpha", "beta")
draws <- as.array(fit, pars = pars)  # iterations x chains x parameters
sp <- get_sampler_params(fit, inc_warmup = FALSE)
out <- list(rstan_version = as.character(packageVersion("rstan")), stan_version = stan_version(),
            compile_s = compile_s, sample_s = sample_s, pars = pars,
            draws = lapply(pars, function(p) t(draws[, , p])),
            divergent = sapply(sp, function(s) sum(s[, "divergent__"])),
            treedepth = sapply(sp, function(s) s[, "treedepth__"]), energy = lapply(sp, function(s) s[, "energy__"]),
            n_leapfrog = mean(sapply(sp, function(s) mean(s[, "n_leapfrog__"]))),
            max_treedepth = 10)
writeLines(jsonlite::toJSON(out, digits = NA, auto_unbox = TRUE), args[3])
"""


def stan_model_code(stan_version: str) -> str:
    """:data:`STAN_MODEL` in the array syntax of Stan ``stan_version`` (e.g. '2.21.0')."""
    if tuple(int(x) for x in stan_version.split(".")[:2]) < (2, 26):
        return STAN_MODEL
    return re.sub(r"\bint(<[^>]*>)? (\w+)\[(\w+)\]", r"array[\3] int\1 \2", STAN_MODEL)


def simulated_data(n: int, seed: int = 1) -> cpm.ParticipantData:
    return cpm.participant_data_from_long(cpm.simulate_participants(TRUTH, n, DAYS, rng=np.random.default_rng(seed)))


def posterior_summary(posterior: xr.Dataset) -> dict[str, dict[str, float]]:
    """Mean, sd and Monte Carlo standard error of the mean of each population parameter."""
    import arviz_stats as azs

    mcse = azs.mcse(posterior[PARAMS], method="mean")
    return {name: {"mean": float(posterior[name].mean()), "sd": float(posterior[name].std()),
                   "mcse": float(mcse[name])} for name in PARAMS}


def _row(n: int, label: str, sample_s: float, compile_s: float, d, steps: float, posterior: xr.Dataset,
         data_seed: int = 1) -> dict:
    ess = min(d.min_ess_bulk, d.min_ess_tail)
    summary = posterior_summary(posterior)
    z = {name: (v["mean"] - getattr(TRUTH, name)) / v["sd"] for name, v in summary.items()}
    return {"n_participants": n, "parametrisation": label, "data_seed": data_seed, "z_vs_truth": z,
            "posterior": summary,
            "compile_s": compile_s, "sample_s": sample_s,
            "min_ess_bulk": d.min_ess_bulk, "min_ess_tail": d.min_ess_tail, "ess_per_s": ess / sample_s,
            "steps_per_draw": steps, "max_rhat": d.max_rhat, "divergences": d.divergences, "min_ebfmi": d.min_ebfmi,
            "ok": d.ok, "failures": d.failures}


def fit_size(n: int, parametrisation: str, seed: int = 1, mass_matrix: str = "diag",
             settings: SamplerSettings = SETTINGS) -> dict:
    data = simulated_data(n, seed)
    start = time.perf_counter()
    refit = cpm.CompiledRefit(cpm.build_participant_model(data, parametrisation=parametrisation))
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    idata = refit.sample({}, replace(settings, mass_matrix=mass_matrix))
    sample_s = time.perf_counter() - start
    d = check_diagnostics(idata, var_names=PARAMS)
    label = parametrisation + (", low-rank" if mass_matrix == "low_rank" else "")
    return _row(n, label, sample_s, compile_s, d, float(idata["sample_stats"]["n_steps"].mean()),
                idata["posterior"].to_dataset(), seed)


def stan_language_version() -> str | None:
    """The Stan version of the installed rstan ('2.21.0'), or None when Rscript, rstan or jsonlite is absent."""
    if shutil.which("Rscript") is None:
        return None
    probe = subprocess.run(["Rscript", "-e", "suppressMessages(library(rstan)); library(jsonlite); "
                            "cat(stan_version())"], capture_output=True, text=True)
    return probe.stdout.strip() if probe.returncode == 0 else None


def fit_size_rstan(n: int, stan_version: str, seed: int = 1, settings: SamplerSettings = SETTINGS) -> dict:
    """The same data and priors in Stan (non-centred), sampled by rstan; the same diagnostics."""
    data = simulated_data(n, seed)
    priors, link = cpm.TrajectoryPriors(), LinkPriors()
    stan_data = {
        "N": int(data.obs_day.size), "P": data.n_participants, "who": (data.obs_participant + 1).tolist(),
        "day": data.obs_day.tolist(), "y": data.obs_value.tolist(), "lod": data.obs_lod.tolist(),
        "cens": data.obs_censored.astype(int).tolist(), "M": int(data.ii_value.size),
        "ii_who": (data.ii_participant + 1).tolist(), "ii": data.ii_value.tolist(),
        "plateau_mu": math.log(priors.plateau_median_pmol_l), "plateau_sd": priors.plateau_log_sd,
        "t_half_mu": math.log(priors.t_half_median_days), "t_half_sd": priors.t_half_log_sd,
        "spread_a": priors.spread_plateau_scale, "spread_k": priors.spread_rate_scale,
        "sigma_mu": math.log(priors.measurement_sd_median), "sigma_sd": priors.measurement_sd_log_sd,
        "alpha_mean": link.alpha_mean, "alpha_sd": link.alpha_sd, "beta_mean": link.beta_mean,
        "beta_sd": link.beta_sd, "ref_log_c": _link_reference(),
        "settings": {"chains": settings.chains, "draws": settings.draws, "tune": settings.tune,
                     "cores": settings.cores, "seed": settings.seed, "target_accept": settings.target_accept},
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "data.json").write_text(json.dumps(stan_data))
        (tmp / "model.stan").write_text(stan_model_code(stan_version))
        (tmp / "run.R").write_text(RSCRIPT)
        done = subprocess.run(["Rscript", str(tmp / "run.R"), str(tmp / "data.json"), str(tmp / "model.stan"),
                               str(tmp / "out.json")], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"rstan failed at n = {n} (exit {done.returncode}):\n{done.stderr[-3000:]}")
        out = json.loads((tmp / "out.json").read_text())
    posterior = xr.Dataset({p: (("chain", "draw"), np.asarray(v, dtype=float)) for p, v in zip(out["pars"], out["draws"])})
    depth = np.asarray(out["treedepth"], dtype=float).T  # chain x draw
    stats = xr.Dataset({
        "diverging": (("chain", "draw"), np.zeros_like(depth, dtype=bool)),
        "energy": (("chain", "draw"), np.asarray(out["energy"], dtype=float)),
        "reached_max_treedepth": (("chain", "draw"), depth >= out["max_treedepth"]),
    })
    # rstan reports divergences per chain as counts: mark that many draws of each chain divergent
    for c, k in enumerate(np.atleast_1d(out["divergent"])):
        stats["diverging"][c, : int(k)] = True
    idata = xr.DataTree.from_dict({"posterior": posterior, "sample_stats": stats})
    d = check_diagnostics(idata, var_names=PARAMS)
    row = _row(n, "rstan (non-centred)", float(out["sample_s"]), float(out["compile_s"]), d, float(out["n_leapfrog"]),
               posterior, seed)
    row["versions"] = {"rstan": out["rstan_version"], "stan": out["stan_version"]}
    return row


def _link_reference() -> float:
    """The reference log C-peptide of the link (``graft_link.link_logit``: alpha + beta (log C - reference))."""
    from isletbayes.models.graft_link import link_logit

    return float(-link_logit(0.0, 1.0, 0.0))


def same_posterior_z(a: dict, b: dict) -> float:
    """The largest |difference of posterior means| over its Monte Carlo error, over the population parameters of
    two rows fitted to the same data: about normal(0, 1) per parameter when both samplers target the same posterior."""
    pa, pb = a["posterior"], b["posterior"]
    return max(abs(pa[k]["mean"] - pb[k]["mean"]) / math.hypot(pa[k]["mcse"], pb[k]["mcse"]) for k in pa)


def _pairs(rows: list[dict]):
    """(n, adaptive row, rstan row) for every size and simulated data set fitted by both."""
    for r in rows:
        if r["parametrisation"].startswith("rstan"):
            for a in rows:
                if (a["parametrisation"] == "adaptive" and a["n_participants"] == r["n_participants"]
                        and a["data_seed"] == r["data_seed"]):
                    yield r["n_participants"], a, r


def _print_row(row: dict) -> None:
    print(f"{row['n_participants']:>5} {row['parametrisation']:>20} {row['data_seed']:>4} "
          f"{row['sample_s']:>9.1f} {row['min_ess_bulk']:>8.0f} "
          f"{row['min_ess_tail']:>8.0f} {row['ess_per_s']:>8.1f} {row['steps_per_draw']:>6.1f} {row['max_rhat']:>7.4f} "
          f"{row['divergences']:>4} {row['min_ebfmi']:>6.2f}  "
          f"{'ok' if row['ok'] else 'FAILED: ' + '; '.join(row['failures'])}", flush=True)


def main(argv: list[str] | None = None) -> dict:
    argv = list(argv or [])
    sizes = QUICK_SIZES if "--quick" in argv else SIZES
    parametrisations = cpm.PARAMETRISATIONS
    mass_matrices = ("diag",)
    data_seeds = (1,)
    settings = SETTINGS
    for arg in argv:
        if arg.startswith("--parametrisations="):
            parametrisations = tuple(arg.split("=", 1)[1].split(","))
        if arg.startswith("--sizes="):
            sizes = tuple(int(x) for x in arg.split("=", 1)[1].split(","))
        if arg.startswith("--data-seeds="):
            data_seeds = tuple(int(x) for x in arg.split("=", 1)[1].split(","))
        if arg.startswith("--mass-matrices="):
            mass_matrices = tuple(arg.split("=", 1)[1].split(","))
        if arg.startswith("--draws="):
            settings = replace(settings, draws=int(arg.split("=", 1)[1]))
        if arg.startswith("--sampler-seed="):
            settings = replace(settings, seed=int(arg.split("=", 1)[1]))
    unknown = sorted(set(mass_matrices) - set(MASS_MATRICES))
    if unknown:
        raise SystemExit(f"--mass-matrices: unknown {', '.join(unknown)} (choose from {', '.join(MASS_MATRICES)})")
    full = "--full" in argv
    stan_version = None if "--no-rstan" in argv else stan_language_version()
    with_rstan = stan_version is not None
    if "--no-rstan" not in argv and not with_rstan:
        print("(rstan column skipped: Rscript with rstan and jsonlite not found)")
    rows = []
    print(f"{'n':>5} {'parametrisation':>20} {'data':>4} {'sample s':>9} {'bulk ESS':>8} {'tail ESS':>8} {'ESS/s':>8} "
          f"{'steps':>6} "
          f"{'R-hat':>7} {'div':>4} {'E-BFMI':>6}  diagnostics")
    for n in sizes:
        for p in parametrisations:
            if p != "adaptive" and n > EXTREMES_UP_TO and not full:
                continue
            for mass_matrix in mass_matrices:
                for data_seed in data_seeds:
                    rows.append(fit_size(n, p, seed=data_seed, mass_matrix=mass_matrix, settings=settings))
                    _print_row(rows[-1])
        if with_rstan and (n <= EXTREMES_UP_TO or full):
            rows.append(fit_size_rstan(n, stan_version, settings=settings))
            _print_row(rows[-1])
    base = {r["parametrisation"]: r["ess_per_s"] for r in rows
            if r["n_participants"] == sizes[0] and r["data_seed"] == data_seeds[0]}
    print(f"ESS/s relative to the same parametrisation at {sizes[0]} participants: " + "; ".join(
        f"{r['parametrisation']} n={r['n_participants']}: {r['ess_per_s'] / base[r['parametrisation']]:.3f}"
        for r in rows if r["parametrisation"] in base and r["data_seed"] == data_seeds[0]))
    if with_rstan:
        adaptive = {r["n_participants"]: r["ess_per_s"] for r in rows if r["parametrisation"] == "adaptive"}  # diag
        print("adaptive (nutpie) ESS/s over rstan's: " + "; ".join(
            f"n={r['n_participants']}: {adaptive[r['n_participants']] / r['ess_per_s']:.2f}"
            for r in rows if r["parametrisation"].startswith("rstan") and r["n_participants"] in adaptive))
        print("same posterior? largest |mean(nutpie adaptive) - mean(rstan)| / sqrt(mcse^2 + mcse^2) over the "
              "population parameters: " + "; ".join(
                  f"n={n}: {same_posterior_z(a, r):.2f}" for n, a, r in _pairs(rows)))
    if len(data_seeds) > 1:
        for r in rows:
            print(f"n={r['n_participants']} {r['parametrisation']} data seed {r['data_seed']}: z vs truth "
                  + ", ".join(f"{k} {v:+.2f}" for k, v in r["z_vs_truth"].items()))
    return {"settings": settings.as_dict(), "mass_matrices": list(mass_matrices), "data_seeds": list(data_seeds),
            "truth": TRUTH.as_dict(), "rows": rows}


if __name__ == "__main__":  # run directly, with the options above: recorded as the runner records it
    from benchmarks.record import append_results

    figures = main(sys.argv[1:])
    if "--no-record" not in sys.argv[1:]:
        print(f"(figures appended to {append_results('cpeptide_scale', figures, quick='--quick' in sys.argv[1:])})")
