"""The participant-level C-peptide model at 12, 50, 200 and 1,000 participants.

``python -m benchmarks cpeptide_scale`` (``--quick``: 12 and 50 participants). Run directly,
``python -m benchmarks.bench_cpeptide_scale [--quick] [--full] [--sizes=12,200] [--parametrisations=a,b]
[--mass-matrices=diag,low_rank] [--data-seeds=1,2,3] [--no-rstan]``.

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
``--full``, like the classical parametrisations): the same model and data in Stan
(``STAN_MODEL``: non-centred effects, as a Stan user writes this model, with the same priors, censored lognormal
likelihood and logistic link), rstan's NUTS with the same chains, draws, warm-up and adapt_delta, the same
diagnostics on its draws; its time is sampling only (compilation apart), as for nutpie.
"""

from __future__ import annotations

import json
import math
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

STAN_MODEL = r"""
data {
  int<lower=1> N; int<lower=1> P; array[N] int<lower=1, upper=P> who; vector<lower=0>[N] day;
  vector<lower=0>[N] y; vector<lower=0>[N] lod; array[N] int<lower=0, upper=1> cens;
  int<lower=0> M; array[M] int<lower=1, upper=P> ii_who; array[M] int<lower=0, upper=1> ii;
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
out <- list(compile_s = compile_s, sample_s = sample_s, pars = pars,
            draws = lapply(pars, function(p) t(draws[, , p])),
            divergent = sapply(sp, function(s) sum(s[, "divergent__"])),
            treedepth = sapply(sp, function(s) s[, "treedepth__"]), energy = lapply(sp, function(s) s[, "energy__"]),
            n_leapfrog = mean(sapply(sp, function(s) mean(s[, "n_leapfrog__"]))),
            max_treedepth = 10)
writeLines(jsonlite::toJSON(out, digits = NA, auto_unbox = TRUE), args[3])
"""


def simulated_data(n: int, seed: int = 1) -> cpm.ParticipantData:
    return cpm.participant_data_from_long(cpm.simulate_participants(TRUTH, n, DAYS, rng=np.random.default_rng(seed)))


def _row(n: int, label: str, sample_s: float, compile_s: float, d, steps: float, data_seed: int = 1,
         z: dict[str, float] | None = None) -> dict:
    ess = min(d.min_ess_bulk, d.min_ess_tail)
    return {"n_participants": n, "parametrisation": label, "data_seed": data_seed, "z_vs_truth": z or {},
            "compile_s": compile_s, "sample_s": sample_s,
            "min_ess_bulk": d.min_ess_bulk, "min_ess_tail": d.min_ess_tail, "ess_per_s": ess / sample_s,
            "steps_per_draw": steps, "max_rhat": d.max_rhat, "divergences": d.divergences, "min_ebfmi": d.min_ebfmi,
            "ok": d.ok, "failures": d.failures}


def fit_size(n: int, parametrisation: str, seed: int = 1, mass_matrix: str = "diag") -> dict:
    data = simulated_data(n, seed)
    start = time.perf_counter()
    refit = cpm.CompiledRefit(cpm.build_participant_model(data, parametrisation=parametrisation))
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    idata = refit.sample({}, replace(SETTINGS, mass_matrix=mass_matrix))
    sample_s = time.perf_counter() - start
    d = check_diagnostics(idata, var_names=PARAMS)
    label = parametrisation + (", low-rank" if mass_matrix == "low_rank" else "")
    post = idata["posterior"]
    z = {name: float((post[name].mean() - getattr(TRUTH, name)) / post[name].std()) for name in PARAMS}
    return _row(n, label, sample_s, compile_s, d, float(idata["sample_stats"]["n_steps"].mean()), seed, z)


def rstan_available() -> bool:
    if shutil.which("Rscript") is None:
        return False
    probe = subprocess.run(["Rscript", "-e", "suppressMessages(library(rstan)); library(jsonlite)"],
                           capture_output=True, text=True)
    return probe.returncode == 0


def fit_size_rstan(n: int, seed: int = 1) -> dict:
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
        "settings": {"chains": SETTINGS.chains, "draws": SETTINGS.draws, "tune": SETTINGS.tune,
                     "cores": SETTINGS.cores, "seed": SETTINGS.seed, "target_accept": SETTINGS.target_accept},
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "data.json").write_text(json.dumps(stan_data))
        (tmp / "model.stan").write_text(STAN_MODEL)
        (tmp / "run.R").write_text(RSCRIPT)
        subprocess.run(["Rscript", str(tmp / "run.R"), str(tmp / "data.json"), str(tmp / "model.stan"),
                        str(tmp / "out.json")], check=True, capture_output=True, text=True)
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
    return _row(n, "rstan (non-centred)", float(out["sample_s"]), float(out["compile_s"]), d, float(out["n_leapfrog"]))


def _link_reference() -> float:
    """The reference log C-peptide of the link (``graft_link.link_logit``: alpha + beta (log C - reference))."""
    from isletbayes.models.graft_link import link_logit

    return float(-link_logit(0.0, 1.0, 0.0))


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
    for arg in argv:
        if arg.startswith("--parametrisations="):
            parametrisations = tuple(arg.split("=", 1)[1].split(","))
        if arg.startswith("--sizes="):
            sizes = tuple(int(x) for x in arg.split("=", 1)[1].split(","))
        if arg.startswith("--data-seeds="):
            data_seeds = tuple(int(x) for x in arg.split("=", 1)[1].split(","))
        if arg.startswith("--mass-matrices="):
            mass_matrices = tuple(arg.split("=", 1)[1].split(","))
    unknown = sorted(set(mass_matrices) - set(MASS_MATRICES))
    if unknown:
        raise SystemExit(f"--mass-matrices: unknown {', '.join(unknown)} (choose from {', '.join(MASS_MATRICES)})")
    full = "--full" in argv
    with_rstan = "--no-rstan" not in argv and rstan_available()
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
                    rows.append(fit_size(n, p, seed=data_seed, mass_matrix=mass_matrix))
                    _print_row(rows[-1])
        if with_rstan and (n <= EXTREMES_UP_TO or full):
            rows.append(fit_size_rstan(n))
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
    if len(data_seeds) > 1:
        for r in rows:
            if r["z_vs_truth"]:  # the rstan rows have none
                print(f"n={r['n_participants']} {r['parametrisation']} data seed {r['data_seed']}: z vs truth "
                      + ", ".join(f"{k} {v:+.2f}" for k, v in r["z_vs_truth"].items()))
    return {"settings": SETTINGS.as_dict(), "mass_matrices": list(mass_matrices), "data_seeds": list(data_seeds),
            "truth": TRUTH.as_dict(), "rows": rows}


if __name__ == "__main__":
    main(sys.argv[1:])
