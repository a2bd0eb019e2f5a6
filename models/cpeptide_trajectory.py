"""C-peptide trajectories after islet-cell infusion: a hierarchical, nonlinear PyMC model (DESIGN.md, model 3).

Model
-----
Participant i's graft function (stimulated C-peptide, pmol/L) rises from zero to a plateau:

    C_i(t)     = A_i (1 - exp(-(k_i t)^h)) [ * exp(-delta * max(t - t0, 0) / 365.25)   optional late decline ]
    log A_i    ~ Normal(log A, sd_A),   log k_i ~ Normal(log k, sd_k),   k = (ln 2)^(1/h) / t_half
    y_ij       ~ LogNormal(log C_i(t_ij), sigma)                     (assay + visit-to-visit error, within a participant)
    y_ij < LLOD  is left-censored: it contributes P(y_ij < LLOD) = Phi((log LLOD - log C_i(t_ij)) / sigma).

Priors (:class:`TrajectoryPriors`, all overridable) are stated on interpretable scales: the population plateau A
(the median participant's, pmol/L) ~ LogNormal(log 1000, 1); the time to half the plateau t_half = ln 2 / k (days)
~ LogNormal(log 60, 1); sd_A, sd_k ~ HalfNormal(0.5); the late decline rate delta (per year) ~ HalfNormal(0.2),
switched off by default (one year of data cannot inform it: with it switched on it is a prior-only extrapolation
device, unless participant-level data run beyond t0).

Noise, split honestly. sigma is what one participant's repeated measurements scatter by: assay error plus
visit-to-visit variation of the stimulated response. Its prior is informative, from published MMTT
repeatability: the within-person coefficient of variation of the C-peptide response to repeated identical mixed
meals was 18.2% (16.9% across two meals; 10 adults with type 2 diabetes, three repeats; "Impact of mixed meal
tolerance test composition on measures of beta-cell function in type 2 diabetes", Nutr. Metab. (Lond.) 2021,
doi:10.1186/s12986-021-00556-1), i.e. sigma = sqrt(log(1 + 0.182^2)) = 0.18. sigma ~ LogNormal(log 0.18, 0.3)
(95% 0.10 to 0.32): wider than that study's own precision, because a single 90-min value in islet recipients may
vary more than an incremental AUC in type 2 diabetes. Published cohort means carry a second, separate term: the
cohort-by-visit deviation delta_t ~ Normal(0, tau) of the observed mean from the smooth curve (the curve's
misfit: a three-parameter rise never fits a real cohort exactly), tau ~ Gamma(2, 2 / 0.1) (mean 0.1; a
convention, zero-avoiding because an exact fit is implausible, after Chung et al. 2013, Psychometrika 78:685).
tau belongs to the published means, not to any participant: :func:`simulate_participants` and
:func:`posterior_parameter_draws` carry sigma only.

Participant effects, adaptively standardised. With few or uninformative visits the non-centred form
(theta_i = mu + sd z_i) samples well; with many informative participants it does not (the posterior of each z_i
narrows as 1/sd, and R-hat of sd_k failed at 200 participants), and the centred form fails the other way. The
default 'adaptive' parametrisation standardises each effect by an approximation of its conditional posterior
(in the spirit of partial centring, Papaspiliopoulos, Roberts & Skold 2007, Stat. Sci. 22:59, and of Gorinova,
Moore & Hoffman 2020, ICML): given a normal summary theta_hat_i ~ Normal(theta_i, I_i^(-1/2)) of participant i's
likelihood, with information I_i and score b_i = I_i (theta_hat_i - mu), v_i = sd^2 I_i,

    theta_i = mu + sd^2 b_i / (1 + v_i) + sd / sqrt(1 + v_i) u_i,   u_i ~ Normal(-sd b_i / sqrt(1 + v_i), sqrt(1 + v_i)).

Given everything else the map u_i -> theta_i is affine and the law of u_i is the one that makes theta_i ~
Normal(mu, sd) exactly: the model is unchanged whatever I_i and b_i are (a test checks the log density against the
non-centred model). For the log rate, I_i and b_i come from participant i's curve linearised at a reference log
rate r_i computed from the data alone (:func:`participant_geometry` profiles each participant's detected values over
the level on a grid of rates), with the level integrated over its prior Normal(log A, sd_A) (generalised least
squares); for the log plateau given the rate they are exact (n_i / sigma^2). Both use the sampled population
parameters, never the effect they standardise. The population plateau itself is sampled as the median
participant's log C-peptide at a data-derived reference day (:func:`_population_parameters_sheared`, also an exact
change of variables), which removes the plateau-t_half ridge of a cohort still rising at its last visit, and the two
spreads sd_A, sd_k are sampled on their HalfNormal prior's normal-scores scale, z = Phi^(-1)(F(sd))
(:class:`HalfNormalScoresTransform`, exact too), where a posterior that stays flat down to sd = 0 is a Gaussian
tail rather than the long tail of log sd (on 20 simulated data sets of 50 participants,
``benchmarks/bench_cpeptide_scale.py``, the smallest ESS of a fit averaged 1,947 against 1,199 on the log scale;
a recovery fit that failed R-hat on the log scale passes). The data constants are ``pm.Data``
(:func:`participant_arrays` with ``centring=True``), so a refit on new data recomputes them. In the kept SBC
(``analyses/results/sbc_cpeptide.json``, 12 participants) 0 of 100 fits failed a diagnostic (1 of 100 with the
spreads on the log scale), against 11 of 55 with the non-centred effects; ``parametrisation='non_centred'`` and
``'centred'`` remain available, and ``benchmarks/bench_cpeptide_scale.py`` compares all three at 12 to 1,000 participants.

The rise shape h: h = 1 is the saturating exponential of DESIGN.md, concave from day 0, and the default of the
model builders (the phase 3 simulations refit that participant model). Each concave curve through the origin has
C(t1) >= (t1 / t2) C(t2) for t1 < t2, and so has their expected cohort mean. The published means break that
bound: 424/1036 = 0.41 < 90/180 (a lag, as stem-cell-derived islets mature over months), so with h = 1 only
a larger measurement sd can absorb it. ``rise_shape=True`` frees h ~ LogNormal(0, 0.5) (a Weibull-type rise,
sigmoid for h > 1; h = 1 recovers the exponential). ``isletbayes cpeptide`` fits the free shape by default and
the exponential beside it as a model check (:mod:`isletbayes.analyses.cpeptide` gives the evidence).

The same model has two likelihoods:

* :func:`build_participant_model`: one observation per participant and visit (the long format of
  :func:`isletbayes.data.load_participant_data`), censored below each row's LLOD. Every data array is a
  ``pm.Data`` container (:func:`participant_arrays` names them), so one compiled model is refitted on new data of
  the same shape: ``model.set_data(...)``/``pm.set_data`` or nutpie's ``compiled.with_data(**arrays)``
  (:class:`CompiledRefit` wraps the latter).
* :func:`build_means_model`: the published cohort means. The reported mean at day t is the mean
  Ybar_t = (1/n) sum_i Y_it of n participants' measured values (n = 12), Y_it = C_i(t) eps_it, drawn from the
  population above. The participants are integrated out (they are not sampled). Given the population
  parameters the n participants are independent and identically distributed, so Ybar has the exact moments

      m_t    = E Y_t = A e^{sd_A^2/2} e^{sigma^2/2} G1_t D_t,      G1_t = E_z[g_t(z)],
      M_tt'  = Cov(Ybar_t, Ybar_t') / (m_t m_t') = (e^{sd_A^2} R_tt' (1 + (e^{sigma^2} - 1) [t = t']) - 1) / n,
      R_tt'  = E_z[g_t(z) g_t'(z)] / (G1_t G1_t'),

  with g_t(z) = 1 - exp(-(k e^{sd_k z} t)^h) the fraction of the plateau reached by a participant of rate
  quantile z ~ Normal(0, 1), D_t the optional decline, and E_z by quadrature on a fine grid (see
  ``RATE_QUADRATURE``). M is written as a sum of positive semi-definite terms (R - 1 is a covariance), so it
  is positive definite for sigma > 0. The joint law of the means is approximated by a lognormal with these
  moments (Fenton 1960, IRE Trans. Commun. Syst. 8:57-67, "Fenton-Wilkinson", in its multivariate form):

      log Ybar ~ MvNormal(log m - diag(S)/2, S),   S_tt = log(1 + M_tt),
      S_tt' = M_tt' sqrt(S_tt S_t't' / (M_tt M_t't')),

  exact in the per-visit means and variances, and in the correlations to first order in M (the correlation of
  M is kept, so S stays positive definite). The shared participants make the four means correlated: a cohort
  with high plateaus is high at every visit. The curve misfit adds tau^2 to each visit's variance S_tt
  (``curve_misfit=True``, the default), centred so that it moves log Ybar by a median-zero amount. Where a
  between-participant SD is published it enters as
  log SD_t ~ Normal(log(m_t sqrt(n M_tt)), 1/sqrt(2(n-1))) (m_t sqrt(n M_tt) is the SD of one participant's
  measured value; 1/sqrt(2(n-1)) the normal-theory standard error of a log sample SD). The bundled data publish
  no spread, so the between-participant spread is then carried by its prior, and every report says so.
  Censoring below the LLOD is ignored for means: a value below 13 pmol/L moves a mean of 12 by at most ~1 pmol/L.

  Why the participants are integrated out: with 12 latent participants (24 non-centred effects) the posterior
  had a funnel. Where the measurement sd is small and the spread large, the means pin the latent participants
  to a thin set (their sample mean must match each published mean to within sigma / sqrt(n)) and NUTS
  diverged (1 to 3 divergent transitions per default fit even at target_accept 0.99; the divergent draws sat at
  the lowest measurement sds and the largest spreads). The marginal model has 7 parameters (8 with h) and no
  latent effects. It leaves one milder funnel: four means are matched more tightly by the curve when the noise
  of the means (sd_A, sd_k, sigma, tau) is small, so the curve's parameters narrow as it shrinks. The informative
  prior on sigma and the zero-avoiding prior on tau put a floor under that noise; at 0.9 the published-means
  fits still show a few divergent transitions per 4000 draws, none at the analysis default target_accept 0.99
  (``analyses/results/seed_robustness.json``; simulation-based calibration in
  ``analyses/results/sbc_cpeptide.json``).

  Two approximations, both checked by simulation-based calibration against the exact simulator
  (:func:`simulate_cohort_means` simulates the 12 participants): the lognormal law of the means above, and
  the insulin-independence count. The count is the number of insulin-independent participants among the same
  n; given the population parameters each participant is independently insulin independent with probability
  p_bar = E[sigmoid(alpha + beta (log C_i(365) - log 1000))] (two-dimensional quadrature over z_A, z_k), so
  the count is exactly Binomial(n, p_bar) on its own. The model treats it as independent of the means given
  the population. In truth both depend on the same participants, but the dependence is weak: a cohort whose
  mean is 10% above the population mean shifts the log-odds by about beta x 0.1.

Insulin independence at day 365 is linked to C_i(365) by :mod:`isletbayes.models.graft_link` (Bernoulli per
participant, or, with cohort means, Binomial(n, p_bar) as above) and fitted jointly.

Simulation API (stable: the phase 3 design simulations use it)
--------------------------------------------------------------
``PopulationParameters``                              the population-level parameters of one scenario/draw
``simulate_participants(params, n_participants, days, lod=13.0, rng=None, link=True, cohort="simulated",
                        dose=0.8) -> pd.DataFrame`` long format: participant, cohort, dose, day, measure
                        ('cpeptide' pmol/L; 'insulin_independent' 0/1 at day 365), value, unit, below_lod, lod
                        (a censored row carries value = lod and below_lod = True)
``simulate_cohort_means(params, n_participants, days, rng=None, link=True) -> CohortMeans``
``posterior_parameter_draws(idata, n, rng, decline_start_day=365.0) -> list[PopulationParameters]``
``draw_prior_parameters(priors, link_priors, rng, late_decline=False) -> PopulationParameters``
``participant_data_from_long(df) -> ParticipantData``;  ``participant_arrays(data) -> dict`` (for refits)

References: the saturating-exponential rise is the standard one-compartment "monomolecular" growth curve
(Pinheiro & Bates 2000, Mixed-Effects Models in S, ch. 6, for the nonlinear mixed-model form); non-centred random
effects after Betancourt & Girolami (2015, arXiv:1312.0906), partially centred as above; censored lognormal likelihood as in Lynn (2001,
Stat. Med. 20:3325) for assay detection limits.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from pymc.logprob.transforms import Transform

from isletbayes.models.validation import ModelInputError
from isletbayes.models.graft_link import (
    INSULIN_INDEPENDENCE_DAY,
    LinkPriors,
    link_logit,
)

DEFAULT_LOD_PMOL_L = 13.0
DAYS_PER_YEAR = 365.25
LN2 = math.log(2.0)

#: Population-level parameters, in the order used by calibration and reports.
POPULATION_PARAMETERS = ("plateau_pmol_l", "t_half_days", "sd_log_plateau", "sd_log_rate", "measurement_sd")
LINK_PARAMETERS = ("alpha", "beta")
NEED_PARAMETERS = ("need_median_pmol_l", "sd_log_need")


# --------------------------------------------------------------------------------------------- priors
@dataclass(frozen=True)
class TrajectoryPriors:
    """Priors of the trajectory model on interpretable scales (see the module docstring).

    plateau_median_pmol_l, plateau_log_sd:  population plateau A ~ LogNormal(log median, log_sd)
    t_half_median_days, t_half_log_sd:      time to half plateau ~ LogNormal(log median, log_sd)
    spread_plateau_scale, spread_rate_scale: between-participant sds of log A_i, log k_i ~ HalfNormal(scale)
    measurement_sd_median, measurement_sd_log_sd: assay and visit-to-visit sd of log C-peptide (within a
                                            participant) ~ LogNormal(log median, log_sd): informative, from
                                            published MMTT repeatability (module docstring)
    curve_misfit_scale:                     cohort-by-visit deviation of the published means from the curve,
                                            sd ~ Gamma(2, 2 / scale) (cohort-means likelihoods only; a convention)
    decline_rate_scale_per_year, decline_start_day: late decline delta ~ HalfNormal(scale), from day t0
    rise_shape_log_sd:                      rise shape h ~ LogNormal(0, log_sd) (only with ``rise_shape=True``)
    """

    plateau_median_pmol_l: float = 1000.0
    plateau_log_sd: float = 1.0
    t_half_median_days: float = 60.0
    t_half_log_sd: float = 1.0
    spread_plateau_scale: float = 0.5
    spread_rate_scale: float = 0.5
    measurement_sd_median: float = 0.18
    measurement_sd_log_sd: float = 0.3
    curve_misfit_scale: float = 0.1
    decline_rate_scale_per_year: float = 0.2
    decline_start_day: float = 365.0
    rise_shape_log_sd: float = 0.5

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ModelInputError(f"must be a finite number > 0, got {value!r}", parameter=name)

    def as_dict(self) -> dict:
        return asdict(self)

    def measurement_sd_distribution(self):
        """The prior of the measurement sd as a frozen ``scipy.stats`` distribution (for reports: median, quantiles)."""
        from scipy import stats

        return stats.lognorm(s=self.measurement_sd_log_sd, scale=self.measurement_sd_median)

    def with_spread_scale(self, scale: float) -> TrajectoryPriors:
        """The same priors with both between-participant sd scales set to ``scale``."""
        return TrajectoryPriors(**{**asdict(self), "spread_plateau_scale": scale, "spread_rate_scale": scale})


# ------------------------------------------------------------------------------------------ parameters
@dataclass(frozen=True)
class PopulationParameters:
    """Population-level parameters of the trajectory and link models (one scenario or one posterior draw)."""

    plateau_pmol_l: float
    t_half_days: float
    sd_log_plateau: float
    sd_log_rate: float
    measurement_sd: float
    alpha: float | None = None
    beta: float | None = None
    decline_rate_per_year: float = 0.0
    decline_start_day: float = 365.0
    rise_shape: float = 1.0
    need_median_pmol_l: float | None = None
    sd_log_need: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def has_need_threshold(self) -> bool:
        """Insulin independence by the need threshold of :mod:`isletbayes.models.graft_link` (else the logit link)."""
        return self.need_median_pmol_l is not None and self.sd_log_need is not None


def draw_prior_parameters(priors: TrajectoryPriors, link_priors: LinkPriors | None, rng: np.random.Generator,
                          late_decline: bool = False, rise_shape: bool = False) -> PopulationParameters:
    """One draw of the population parameters from the priors (exactly the PyMC model's priors)."""
    plateau = float(np.exp(rng.normal(math.log(priors.plateau_median_pmol_l), priors.plateau_log_sd)))
    t_half = float(np.exp(rng.normal(math.log(priors.t_half_median_days), priors.t_half_log_sd)))
    sd_a = float(abs(rng.normal(0.0, priors.spread_plateau_scale)))
    sd_k = float(abs(rng.normal(0.0, priors.spread_rate_scale)))
    sigma = float(np.exp(rng.normal(math.log(priors.measurement_sd_median), priors.measurement_sd_log_sd)))
    alpha = beta = None
    if link_priors is not None:
        alpha = float(rng.normal(link_priors.alpha_mean, link_priors.alpha_sd))
        beta = float(rng.normal(link_priors.beta_mean, link_priors.beta_sd))
    delta = float(abs(rng.normal(0.0, priors.decline_rate_scale_per_year))) if late_decline else 0.0
    shape = float(np.exp(rng.normal(0.0, priors.rise_shape_log_sd))) if rise_shape else 1.0
    return PopulationParameters(plateau, t_half, sd_a, sd_k, sigma, alpha, beta, delta, priors.decline_start_day,
                                shape)


def posterior_parameter_draws(idata, n: int, rng: np.random.Generator,
                              decline_start_day: float = 365.0) -> list[PopulationParameters]:
    """``n`` posterior draws of the population parameters (without replacement when the posterior has enough)."""
    post = idata["posterior"]
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    total = n_chain * n_draw
    picks = rng.choice(total, size=n, replace=n > total)

    def flat(name):
        return np.asarray(post[name].values, dtype=float).reshape(total)

    columns = {name: flat(name) for name in POPULATION_PARAMETERS}
    has_link = all(name in post for name in LINK_PARAMETERS)
    if has_link:
        columns.update({name: flat(name) for name in LINK_PARAMETERS})
    delta = flat("decline_rate_per_year") if "decline_rate_per_year" in post else np.zeros(total)
    shape = flat("rise_shape") if "rise_shape" in post else np.ones(total)
    has_need = all(name in post for name in NEED_PARAMETERS)
    if has_need:
        columns.update({name: flat(name) for name in NEED_PARAMETERS})
    out = []
    for j in picks:
        out.append(PopulationParameters(
            **{name: float(columns[name][j]) for name in POPULATION_PARAMETERS},
            alpha=float(columns["alpha"][j]) if has_link else None,
            beta=float(columns["beta"][j]) if has_link else None,
            decline_rate_per_year=float(delta[j]),
            decline_start_day=float(decline_start_day),
            rise_shape=float(shape[j]),
            need_median_pmol_l=float(columns["need_median_pmol_l"][j]) if has_need else None,
            sd_log_need=float(columns["sd_log_need"][j]) if has_need else None,
        ))
    return out


# ----------------------------------------------------------------------------------------- curves
def rate_from_t_half(t_half_days, rise_shape=1.0):
    """k such that C(t_half) = A / 2: (k t_half)^h = ln 2."""
    return np.log(2.0) ** (1.0 / rise_shape) / t_half_days


def log_trajectory(log_plateau, rate, day, decline_rate_per_year=0.0, decline_start_day=365.0, rise_shape=1.0):
    """log C(t) for numpy arrays (broadcasting); ``day`` > 0."""
    day = np.asarray(day, dtype=float)
    decline = decline_rate_per_year * np.maximum(day - decline_start_day, 0.0) / DAYS_PER_YEAR
    return log_plateau + np.log(-np.expm1(-((rate * day) ** rise_shape))) - decline


def _log_trajectory_tensor(log_plateau, log_rate, day, decline_rate, decline_start_day, rise_shape):
    # a Python day such as 365.0 would become a float32 constant (PyTensor keeps the narrowest exact type), and its
    # log would be taken in float32 (off by 2e-7): the cast makes it float64 and leaves a float64 tensor as it is
    log_kt = log_rate + pt.log(pt.cast(day, "float64"))
    if rise_shape is not None:
        log_kt = rise_shape * log_kt
    log_c = log_plateau + pt.log1mexp(-pt.exp(log_kt))
    if decline_rate is not None:
        log_c = log_c - decline_rate * pt.maximum(day - decline_start_day, 0.0) / DAYS_PER_YEAR
    return log_c


# ------------------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class ParticipantData:
    """Participant-level data as the model's arrays (indices are 0-based positions in ``participant_ids``)."""

    participant_ids: tuple[str, ...]
    obs_participant: np.ndarray
    obs_day: np.ndarray
    obs_value: np.ndarray
    obs_lod: np.ndarray
    obs_censored: np.ndarray
    ii_participant: np.ndarray
    ii_value: np.ndarray
    n_baseline_excluded: int = 0

    @property
    def n_participants(self) -> int:
        return len(self.participant_ids)


PARTICIPANT_COLUMNS = ("participant", "day", "measure", "value", "below_lod", "lod")


def participant_data_from_long(df: pd.DataFrame, source: str = "participant data") -> ParticipantData:
    """Arrays for :func:`build_participant_model` from the long format (C-peptide already in pmol/L).

    Visits at day <= 0 are dropped (the model has C(0) = 0: a baseline value below the LLOD carries no
    information, and a detectable one is rejected as incompatible with the model). A censored row's value is
    replaced by its LLOD. Insulin independence is read from ``measure == 'insulin_independent'`` at day 365.
    """
    missing = [c for c in PARTICIPANT_COLUMNS if c not in df.columns]
    if missing:
        raise ModelInputError(f"missing column(s) {', '.join(missing)}", source=source, column=missing[0])
    cp = df[df["measure"] == "cpeptide"]
    if cp.empty:
        raise ModelInputError("no rows with measure 'cpeptide'", source=source, column="measure")
    if "unit" in cp.columns:
        bad_unit = cp[cp["unit"].astype(str) != "pmol/L"]
        if not bad_unit.empty:
            raise ModelInputError(f"C-peptide must be in pmol/L, found {bad_unit['unit'].iloc[0]!r}", source=source,
                             column="unit", line=_line(bad_unit))
    day = pd.to_numeric(cp["day"], errors="coerce").to_numpy(dtype=float)
    value = pd.to_numeric(cp["value"], errors="coerce").to_numpy(dtype=float)
    lod = pd.to_numeric(cp["lod"], errors="coerce").to_numpy(dtype=float)
    below = cp["below_lod"].astype(str).str.lower().isin(["true", "1", "yes"]).to_numpy()
    for name, arr in (("day", day), ("lod", lod)):
        if not np.all(np.isfinite(arr)):
            raise ModelInputError("must be a number", source=source, column=name, line=_line(cp[~np.isfinite(arr)]))
    if np.any(lod <= 0):
        raise ModelInputError("must be > 0", source=source, column="lod", line=_line(cp[lod <= 0]))
    bad_value = ~below & ~(np.isfinite(value) & (value > 0))
    if bad_value.any():
        raise ModelInputError("a detected C-peptide must be a number > 0", source=source, column="value",
                         line=_line(cp[bad_value]))
    below = below | (value <= lod)  # a reported value at or under its LLOD is censored
    baseline = day <= 0
    if np.any(baseline & ~below):
        raise ModelInputError("detectable C-peptide at or before day 0 is incompatible with the model (C(0) = 0)",
                         source=source, column="value", line=_line(cp[baseline & ~below]))
    keep = ~baseline
    ids = tuple(pd.unique(df["participant"].astype(str)))
    index = {pid: i for i, pid in enumerate(ids)}
    participants = cp["participant"].astype(str).map(index).to_numpy()

    ii = df[(df["measure"] == "insulin_independent")]
    ii = ii[pd.to_numeric(ii["day"], errors="coerce") == INSULIN_INDEPENDENCE_DAY]
    ii_value = pd.to_numeric(ii["value"], errors="coerce").to_numpy(dtype=float)
    if ii_value.size and not np.all(np.isin(ii_value, (0.0, 1.0))):
        raise ModelInputError("insulin_independent must be 0 or 1", source=source, column="value",
                         line=_line(ii[~np.isin(ii_value, (0.0, 1.0))]))
    obs_value = np.where(below, lod, value)
    return ParticipantData(
        participant_ids=ids,
        obs_participant=participants[keep].astype(np.int64),
        obs_day=day[keep],
        obs_value=obs_value[keep],
        obs_lod=lod[keep],
        obs_censored=below[keep],
        ii_participant=ii["participant"].astype(str).map(index).to_numpy().astype(np.int64),
        ii_value=ii_value.astype(np.int64),
        n_baseline_excluded=int(baseline.sum()),
    )


def _line(rows: pd.DataFrame) -> int | None:
    """1-based file line of the first row (header = line 1) when the frame keeps the file's row order."""
    if rows.empty:
        return None
    idx = rows.index[0]
    return int(idx) + 2 if isinstance(idx, (int, np.integer)) else None


def participant_arrays(data: ParticipantData, centring: bool = True,
                       priors: TrajectoryPriors = TrajectoryPriors()) -> dict[str, np.ndarray]:
    """The ``pm.Data`` values of :func:`build_participant_model`, by container name (for refits). ``centring``
    (default): add the constants of :func:`participant_geometry`, which the 'adaptive' parametrisation (the default)
    reads; pass ``centring=False`` to refit a 'non_centred' or 'centred' model, which has no such containers."""
    out = {
        "obs_participant": data.obs_participant,
        "obs_day": data.obs_day,
        "obs_value": data.obs_value,
        "obs_lod": data.obs_lod,
    }
    if centring:
        out.update(participant_geometry(data, priors).as_arrays())
    if data.ii_value.size:
        out["ii_participant"] = data.ii_participant
        out["ii_value"] = data.ii_value
    return out


@dataclass(frozen=True)
class CohortMeans:
    """Published cohort means of C-peptide (pmol/L) at visit days, with the cohort size and the II count.

    ``spread_sd`` is the between-participant SD per visit (NaN where none is published); ``ii_count`` of
    ``n_participants`` were insulin independent at day 365 (None if not used).
    """

    days: np.ndarray
    means: np.ndarray
    n_participants: int
    lod: float = DEFAULT_LOD_PMOL_L
    spread_sd: np.ndarray | None = None
    ii_count: int | None = None
    sources: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        days = np.asarray(self.days, dtype=float)
        means = np.asarray(self.means, dtype=float)
        object.__setattr__(self, "days", days)
        object.__setattr__(self, "means", means)
        if days.shape != means.shape or days.ndim != 1 or days.size == 0:
            raise ModelInputError("days and means must be equal-length, non-empty lists", parameter="cohort_means")
        if np.any(days <= 0) or np.any(~np.isfinite(means)) or np.any(means <= 0):
            raise ModelInputError("visit days and cohort means must be > 0", parameter="cohort_means")
        if not (isinstance(self.n_participants, (int, np.integer)) and self.n_participants >= 2):
            raise ModelInputError(f"cohort size must be an integer >= 2, got {self.n_participants!r}", parameter="n")
        if self.spread_sd is not None:
            sd = np.asarray(self.spread_sd, dtype=float)
            if sd.shape != days.shape or np.any(sd[np.isfinite(sd)] <= 0):
                raise ModelInputError("spread SDs must match the visits and be > 0", parameter="spread_value")
            object.__setattr__(self, "spread_sd", sd if np.isfinite(sd).any() else None)
        if self.ii_count is not None and not (0 <= int(self.ii_count) <= self.n_participants):
            raise ModelInputError(f"insulin-independence count {self.ii_count} outside 0..{self.n_participants}",
                             parameter="r")

    @property
    def has_spread(self) -> bool:
        return self.spread_sd is not None


def spread_to_sd(kind: str, value: float, n: int) -> float:
    """A published spread of the participants' values as an SD: 'sd'; 'se'/'sem' (x sqrt n);
    'ci95' (half-width of a t-based 95% CI for the mean, x sqrt(n) / t_{0.975, n-1})."""
    from scipy import stats

    kind = str(kind).strip().lower()
    if kind == "sd":
        return float(value)
    if kind in ("se", "sem"):
        return float(value) * math.sqrt(n)
    if kind in ("ci95", "ci95_halfwidth"):
        return float(value) * math.sqrt(n) / float(stats.t.ppf(0.975, n - 1))
    raise ModelInputError(f"unknown spread kind {kind!r} (expected sd, se, sem or ci95)", column="spread_kind")


def means_arrays(means: CohortMeans) -> dict[str, np.ndarray]:
    """The ``pm.Data`` values of :func:`build_means_model`, by container name (for refits)."""
    out = {"visit_day": means.days, "cohort_mean_obs": means.means}
    if means.has_spread:
        has = np.isfinite(means.spread_sd)
        out["cohort_sd_obs"] = means.spread_sd[has]
    if means.ii_count is not None:
        out["ii_count"] = np.asarray(int(means.ii_count), dtype=np.int64)
    return out


# ----------------------------------------------------------------------------------------------- models
_ERFINV_HALF = 0.4769362762044699  # erfinv(1/2): the HalfNormal prior's median over s sqrt(2)


class HalfNormalScoresTransform(Transform):
    r"""A HalfNormal(s) variable sampled on its prior's normal-scores scale: sd = s sqrt(2) erfinv(Phi(z)).

    With F(sd) = erf(sd / (s sqrt 2)) the HalfNormal cdf, z = Phi^(-1)(F(sd)) is exactly Normal(0, 1) under the
    prior (the log Jacobian below plus the HalfNormal log density is the standard normal log density), so only
    the coordinates NUTS moves in change, not the model. Why: a spread the data leave near zero (the between-
    participant sd of the rise rate, when each participant's rate is weakly informed) has a posterior density
    that stays flat down to sd = 0. On the default log scale that boundary becomes a tail in which the density
    falls only as e^(log sd): in one 50-participant fit a chain spent 145 of its 1000 draws below sd = 0.05,
    down to log sd = -13, and the fit failed R-hat (1.019, bulk ESS 178). On this scale the same boundary is a
    Gaussian tail in z (sd near 0 is z below about -3), which NUTS crosses in a few steps.

    Each branch of erfinv(Phi(z)) is written where it is precise, erfinv(erfc(-z / sqrt 2) / 2) for z < 0 and
    erfcinv(erfc(z / sqrt 2) / 2) for z > 0, each on an argument clipped to its side so that neither the unused
    branch nor its gradient overflows. ``log_jac_det`` = log(dsd/dz) = log s + w^2 - z^2 / 2 - log 2,
    w = sd / (s sqrt 2)."""

    name = "halfnormalscores"  # no underscore: PyMC recovers the variable's name by splitting the value's on "_"
    ndim_supp = 0

    @staticmethod
    def _erfinv_phi(z):
        below = pt.erfinv(0.5 * pt.erfc(-pt.minimum(z, 0.0) / math.sqrt(2.0)))
        above = pt.erfcinv(0.5 * pt.erfc(pt.maximum(z, 0.0) / math.sqrt(2.0)))
        return pt.switch(z < 0.0, below, above)

    def backward(self, value, *inputs):
        return inputs[-1] * math.sqrt(2.0) * self._erfinv_phi(value)

    def forward(self, value, *inputs):
        # z = Phi^(-1)(erf(w)), through erf(w) below the prior median and erfc(w) = 1 - erf(w) above it
        w, median = value / (inputs[-1] * math.sqrt(2.0)), _ERFINV_HALF
        below = -math.sqrt(2.0) * pt.erfcinv(2.0 * pt.erf(pt.minimum(w, median)))
        above = math.sqrt(2.0) * pt.erfcinv(2.0 * pt.erfc(pt.maximum(w, median)))
        return pt.switch(w < median, below, above)

    def log_jac_det(self, value, *inputs):
        return pt.log(inputs[-1]) + self._erfinv_phi(value) ** 2 - 0.5 * value**2 - math.log(2.0)


def _spread_parameters(priors: TrajectoryPriors, normal_scores: bool = False):
    """sd_A ~ HalfNormal(spread_plateau_scale), sd_k ~ HalfNormal(spread_rate_scale), the scales held in ``pm.Data``
    containers (``prior_spread_plateau_scale``, ``prior_spread_rate_scale``): models that differ only in them
    (the spread-prior sensitivity refits) share one compiled model (``compiled_models``) and cost their sampling
    only. ``normal_scores``: sampled on their prior's normal-scores scale (:class:`HalfNormalScoresTransform`),
    as the adaptive participant model does; otherwise on PyMC's default log scale."""
    plateau_scale = pm.Data("prior_spread_plateau_scale", float(priors.spread_plateau_scale))
    rate_scale = pm.Data("prior_spread_rate_scale", float(priors.spread_rate_scale))
    kwargs = {"default_transform": HalfNormalScoresTransform()} if normal_scores else {}
    return (pm.HalfNormal("sd_log_plateau", sigma=plateau_scale, **kwargs),
            pm.HalfNormal("sd_log_rate", sigma=rate_scale, **kwargs))


def _population_parameters(priors: TrajectoryPriors):
    """Population-level priors (inside a model context): A, t_half, sd_A, sd_k, sigma."""
    plateau = pm.LogNormal("plateau_pmol_l", mu=math.log(priors.plateau_median_pmol_l), sigma=priors.plateau_log_sd)
    t_half = pm.LogNormal("t_half_days", mu=math.log(priors.t_half_median_days), sigma=priors.t_half_log_sd)
    sd_a, sd_k = _spread_parameters(priors)
    sigma = pm.LogNormal("measurement_sd", mu=math.log(priors.measurement_sd_median),
                         sigma=priors.measurement_sd_log_sd)
    return plateau, t_half, sd_a, sd_k, sigma


def _shape_and_decline(priors: TrajectoryPriors, late_decline: bool, rise_shape: bool):
    shape = pm.LogNormal("rise_shape", mu=0.0, sigma=priors.rise_shape_log_sd) if rise_shape else None
    decline = None
    if late_decline:
        decline = pm.HalfNormal("decline_rate_per_year", sigma=priors.decline_rate_scale_per_year)
    return shape, decline


def _log_median_rate(t_half, shape):
    """log k = log((ln 2)^(1/h) / t_half): t_half is the median participant's time to half plateau."""
    log_ln2_over_h = math.log(math.log(2.0)) if shape is None else math.log(math.log(2.0)) / shape
    return log_ln2_over_h - pt.log(t_half), log_ln2_over_h


#: Parametrisations of the participant effects (see the module docstring): ``adaptive`` standardises each
#: participant's effects by their approximate conditional posterior; the other two are the classical extremes.
PARAMETRISATIONS = ("adaptive", "non_centred", "centred")

#: grid of log rates (per day) on which :func:`participant_geometry` profiles each participant's data: t_half from
#: half a day to 20 years (rates outside it only ever occur in the prior's far tails)
_RATE_GRID = np.linspace(math.log(LN2 / 7300.0), math.log(LN2 / 0.5), 321)
#: sd of the broad reference prior on log k_i under which each participant's rate likelihood is summarised
_REFERENCE_RATE_SD = 1.0


def _effect(name: str, mu, sd, parametrisation: str, information=None, score=None):
    """A participant effect theta_i ~ Normal(mu, sd), in the coordinates of ``parametrisation``.

    'non_centred': theta_i = mu + sd z_i; 'centred': theta_i itself. 'adaptive': standardised by the conditional
    posterior that a normal likelihood theta_hat_i ~ Normal(theta_i, I_i^(-1/2)) would give, with
    ``information`` I_i and ``score`` b_i = I_i (theta_hat_i - mu) (both may depend on other sampled variables,
    never on theta_i):

        v_i = sd^2 I_i,    theta_i = mu + sd^2 b_i / (1 + v_i) + sd / sqrt(1 + v_i) u_i,
        u_i ~ Normal(-sd b_i / sqrt(1 + v_i), sqrt(1 + v_i)).

    Given everything else the map u_i -> theta_i is affine, and the law of u_i above is exactly the one that
    makes theta_i ~ Normal(mu, sd): the model is unchanged, whatever I_i and b_i. Where participant i's likelihood
    is that normal, the conditional posterior of u_i is Normal(0, 1) whatever mu and sd: the effects no longer
    pull on the population parameters (no funnel, at any sd). v_i -> 0 is the non-centred, v_i -> infinity the
    centred parametrisation (Papaspiliopoulos, Roberts & Skold 2007 partially centre by the weight v_i / (1 + v_i);
    this also shifts by the conditional mean, as a Laplace approximation would)."""
    if parametrisation == "non_centred":
        raw = pm.Normal(name, 0.0, 1.0, dims="participant")
        return mu + sd * raw
    if parametrisation == "centred":
        return pm.Normal(name, mu, sd, dims="participant")
    v = sd**2 * information
    root = pt.sqrt(1.0 + v)
    raw = pm.Normal(name, -sd * score / root, root, dims="participant")
    return mu + sd**2 * score / (1.0 + v) + sd / root * raw


@dataclass(frozen=True)
class ParticipantGeometry:
    """Data-derived constants of the 'adaptive' parametrisation (:func:`participant_geometry`), one per participant:
    ``rate_reference``, the log rate at which the model linearises participant i's curve, and, for reports and
    tests, the normal summary Normal(rate_estimate, rate_information^(-1/2)) of the participant's likelihood for
    log k_i with the level profiled out, at the pooled residual ``measurement_sd``. Any reference gives the same
    model (an exact change of variables); a good one gives a posterior that NUTS samples in few, even steps."""

    rate_reference: np.ndarray
    rate_estimate: np.ndarray
    rate_information: np.ndarray
    measurement_sd: float
    reference_day: float

    def as_arrays(self) -> dict[str, np.ndarray]:
        """The ``pm.Data`` containers of the adaptive model, by name."""
        return {"rate_reference": self.rate_reference, "reference_day": np.asarray(self.reference_day)}


def participant_geometry(data: ParticipantData, priors: TrajectoryPriors = TrajectoryPriors()) -> ParticipantGeometry:
    """The constants of the 'adaptive' parametrisation, from the data alone (a ``pm.Data`` container: a refit on
    new data passes new ones, ``participant_arrays``; the sampled parameters never enter them).

    Each participant's detected log values x_ij are profiled over the level on a grid of log rates g (exponential
    rise): RSS_i(g) = min_a sum_j (x_ij - a - log(1 - exp(-e^g t_ij)))^2; exp(-RSS_i / (2 s^2)) is the likelihood
    of the log rate with the level integrated out under a flat prior (up to a constant). s is the pooled residual
    sd at each participant's best rate (n_i - 2 degrees of freedom each; the prior median when fewer than 10 in
    all). Under a broad reference prior Normal(m, 1) (m the pooled best rate) that likelihood gives a posterior
    mean M_i (the reference log rate) and variance V_i; the normal likelihood with the same effect has information
    I_i = 1 / V_i - 1 and estimate (M_i / V_i - m) / I_i. Where the data say little (a rise already complete at
    the first visit makes the likelihood one-sided; censored values count as carrying nothing), I_i is small.
    """
    detected = ~np.asarray(data.obs_censored, dtype=bool)
    n = data.n_participants
    who, day, value = data.obs_participant[detected], data.obs_day[detected], data.obs_value[detected]
    n_det = np.bincount(who, minlength=n).astype(float)
    has = n_det > 0
    resid = np.log(value)[:, None] - np.log(-np.expm1(-np.exp(_RATE_GRID[None, :]) * day[:, None]))  # obs x grid
    s1 = np.zeros((n, _RATE_GRID.size))
    s2 = np.zeros((n, _RATE_GRID.size))
    np.add.at(s1, who, resid)
    np.add.at(s2, who, resid**2)
    rss = np.where(has[:, None], s2 - s1**2 / np.maximum(n_det, 1.0)[:, None], 0.0)
    several = n_det > 2  # residual degrees of freedom left after each participant's own level and rate
    dof = float(np.sum(n_det[several] - 2.0))
    sigma = math.sqrt(rss[several].min(axis=1).sum() / dof) if dof >= 10 else priors.measurement_sd_median
    sigma = max(sigma, 0.02)
    m = float(_RATE_GRID[np.argmin(rss.sum(axis=0))]) if has.any() else float(
        math.log(rate_from_t_half(priors.t_half_median_days)))
    log_post = -(rss - rss.min(axis=1, keepdims=True)) / (2.0 * sigma**2) - 0.5 * (
        (_RATE_GRID[None, :] - m) / _REFERENCE_RATE_SD) ** 2
    post = np.exp(log_post - log_post.max(axis=1, keepdims=True))
    post /= post.sum(axis=1, keepdims=True)
    mean = post @ _RATE_GRID
    var = np.maximum(post @ _RATE_GRID**2 - mean**2, 1e-8)
    information = np.maximum(1.0 / var - 1.0 / _REFERENCE_RATE_SD**2, 0.0)
    estimate = np.where(information > 1e-6, (mean / var - m / _REFERENCE_RATE_SD**2) / np.maximum(information, 1e-6), m)
    # the population reference day: where the sensitivity of the median curve to the log rate is its mean over
    # the detected visits (at the pooled rate), the level there is uncorrelated with the rate to first order
    sens = _rise_sensitivity(math.exp(m) * day) if day.size else np.array([0.5])
    reference_day = float(_inverse_rise_sensitivity(sens.mean()) / math.exp(m))
    return ParticipantGeometry(rate_reference=mean, rate_estimate=estimate, rate_information=information,
                               measurement_sd=sigma, reference_day=reference_day)


def _rise_sensitivity(u):
    """d log(1 - exp(-u)) / d log u = u / expm1(u): 1 at u = 0, falling to 0 once the rise is complete."""
    u = np.maximum(np.asarray(u, dtype=float), 1e-12)
    return u / np.expm1(u)


def _inverse_rise_sensitivity(s):
    """u with u / expm1(u) = s, 0 < s < 1 (bisection on log u; the sensitivity is decreasing)."""
    s = float(np.clip(s, 1e-9, 1.0 - 1e-9))
    lo, hi = -30.0, 6.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _rise_sensitivity(math.exp(mid)) > s else (lo, mid)
    return math.exp(0.5 * (lo + hi))


def _population_parameters_sheared(priors: TrajectoryPriors, late_decline: bool, rise_shape: bool, reference_day):
    """The population priors of :func:`_population_parameters`, with the plateau sampled as the median
    participant's log C-peptide at ``reference_day`` (a data constant), c = log A + log(1 - exp(-(k t_ref)^h)),
    given t_half (and h): when the cohort is still rising at its last visit, the data pin that level and leave
    A and t_half on a ridge along which A k is constant; c and t_half are not on it. Given t_half and h, c is
    log A shifted, so its prior is Normal(log A_median + log(1 - exp(-(k t_ref)^h)), plateau_log_sd) and
    ``plateau_pmol_l`` (a Deterministic) has exactly its LogNormal prior."""
    t_half = pm.LogNormal("t_half_days", mu=math.log(priors.t_half_median_days), sigma=priors.t_half_log_sd)
    sd_a, sd_k = _spread_parameters(priors, normal_scores=True)
    sigma = pm.LogNormal("measurement_sd", mu=math.log(priors.measurement_sd_median),
                         sigma=priors.measurement_sd_log_sd)
    shape, decline = _shape_and_decline(priors, late_decline, rise_shape)
    rise = _log_trajectory_tensor(0.0, _log_median_rate(t_half, shape)[0], reference_day, None, 0.0, shape)
    level = pm.Normal("log_median_cpeptide_reference_day", mu=math.log(priors.plateau_median_pmol_l) + rise,
                      sigma=priors.plateau_log_sd)
    plateau = pm.Deterministic("plateau_pmol_l", pt.exp(level - rise))
    return plateau, t_half, sd_a, sd_k, sigma, shape, decline


def _segment_sum(values, index, like):
    """sum of ``values`` per participant (``index`` the participant of each value; ``like`` has one per participant)."""
    return pt.inc_subtensor(pt.zeros_like(like)[index], values)


def _population(priors: TrajectoryPriors, late_decline: bool, rise_shape: bool, geometry, n_participants: int,
                parametrisation: str):
    """Population priors and the latent participants; returns the tensors the likelihoods need.

    'adaptive' (``geometry``: the data containers): log k_i standardised by a normal summary of participant i's
    likelihood for it (the curve linearised at a data-derived reference rate, the level integrated over its
    prior), then log A_i given k_i by its exact conditional likelihood (:func:`_effect`). Both summaries are
    computed in the model from the data and the sampled population parameters (sigma, sd_A, mu_A, h, decline),
    never from the effect they standardise."""
    if parametrisation not in PARAMETRISATIONS:
        raise ModelInputError(f"must be one of {', '.join(PARAMETRISATIONS)}, got {parametrisation!r}",
                              parameter="parametrisation")
    if parametrisation == "adaptive":
        plateau, t_half, sd_a, sd_k, sigma, shape, decline = _population_parameters_sheared(
            priors, late_decline, rise_shape, geometry["reference_day"])
    else:
        plateau, t_half, sd_a, sd_k, sigma = _population_parameters(priors)
        shape, decline = _shape_and_decline(priors, late_decline, rise_shape)
    log_rate, log_ln2_over_h = _log_median_rate(t_half, shape)
    if parametrisation == "adaptive":
        participant, day, value, detected, reference = (geometry[k] for k in (
            "participant", "day", "value", "detected", "rate_reference"))
        log_a, var_a, var_e = pt.log(plateau), sd_a**2, sigma**2
        # the rate: participant i's curve linearised in log k_i at the reference r_i (sensitivities s_ij, residuals
        # e_ij), the level integrated over its prior Normal(mu_A, sd_A): generalised least squares with the
        # covariance sigma^2 I + sd_A^2 11' of a participant's values gives the information and score about log k_i
        w = pt.exp(reference[participant] + pt.log(day))
        if shape is not None:
            w = w**shape
        sens = detected * w / pt.expm1(w) * (1.0 if shape is None else shape)
        resid = detected * (pt.log(value) - _log_trajectory_tensor(0.0, reference[participant], day, decline,
                                                                   priors.decline_start_day, shape))
        n_i = _segment_sum(detected, participant, reference)
        s1, s2 = _segment_sum(sens, participant, reference), _segment_sum(sens**2, participant, reference)
        se, e1 = _segment_sum(sens * resid, participant, reference), _segment_sum(resid, participant, reference)
        gamma = var_a / (var_e + n_i * var_a)  # <= 1 / n_i, so the information is >= 0 (Cauchy-Schwarz)
        info = s2 - gamma * s1**2
        score = se - log_a * s1 - gamma * s1 * (e1 - n_i * log_a) + info * (reference - log_rate)
        log_rate_i = _effect("log_rate_effect", log_rate, sd_k, parametrisation, info / var_e, score / var_e)
        # the level given the rate, exactly: participant i's detected log values are log A_i + f_ij(k_i) +
        # Normal(0, sigma), information n_i / sigma^2, score sum_j (x_ij - f_ij(k_i) - mu_A) / sigma^2
        curve = _log_trajectory_tensor(0.0, log_rate_i[participant], day, decline, priors.decline_start_day, shape)
        level_score = (_segment_sum(detected * (pt.log(value) - curve), participant, reference) - n_i * log_a) / var_e
        log_plateau_i = _effect("log_plateau_effect", log_a, sd_a, parametrisation, n_i / var_e, level_score)
    else:
        log_plateau_i = _effect("log_plateau_effect", pt.log(plateau), sd_a, parametrisation)
        log_rate_i = _effect("log_rate_effect", log_rate, sd_k, parametrisation)
    pm.Deterministic("plateau_participant", pt.exp(log_plateau_i), dims="participant")
    pm.Deterministic("t_half_participant", pt.exp(log_ln2_over_h - log_rate_i), dims="participant")
    return log_plateau_i, log_rate_i, sigma, decline, shape


def _link(link_priors: LinkPriors, log_c365):
    alpha = pm.Normal("alpha", link_priors.alpha_mean, link_priors.alpha_sd)
    beta = pm.Normal("beta", link_priors.beta_mean, link_priors.beta_sd)
    logit_p = link_logit(alpha, beta, log_c365)
    pm.Deterministic("p_insulin_independent", pm.math.sigmoid(logit_p), dims="participant")
    return logit_p


def build_participant_model(data: ParticipantData, priors: TrajectoryPriors = TrajectoryPriors(),
                            link_priors: LinkPriors | None = LinkPriors(), late_decline: bool = False,
                            rise_shape: bool = False, parametrisation: str = "adaptive") -> pm.Model:
    """The trajectory model (and, when the data hold day-365 insulin independence and ``link_priors`` is given,
    the link) on participant-level data; every data array is a ``pm.Data`` container (see :func:`participant_arrays`).
    ``parametrisation`` of the participant effects: 'adaptive' (default), 'non_centred' or 'centred' (module docstring).
    """
    coords = {"participant": list(data.participant_ids), "observation": np.arange(data.obs_day.size)}
    use_link = link_priors is not None and data.ii_value.size > 0
    if use_link:
        coords["ii_observation"] = np.arange(data.ii_value.size)
    with pm.Model(coords=coords) as model:
        obs_participant = pm.Data("obs_participant", data.obs_participant, dims="observation")
        obs_day = pm.Data("obs_day", data.obs_day, dims="observation")
        obs_value = pm.Data("obs_value", data.obs_value, dims="observation")
        obs_lod = pm.Data("obs_lod", data.obs_lod, dims="observation")
        geometry = None
        if parametrisation == "adaptive":  # data-derived constants: refits pass participant_arrays(..., centring=True)
            geometry = {name: pm.Data(name, value, dims="participant" if np.ndim(value) else None)
                        for name, value in participant_geometry(data, priors).as_arrays().items()}
            geometry.update(participant=obs_participant, day=obs_day, value=obs_value,
                            detected=pt.cast(pt.gt(obs_value, obs_lod), "float64"))
        log_plateau_i, log_rate_i, sigma, decline, shape = _population(
            priors, late_decline, rise_shape, geometry, data.n_participants, parametrisation)
        mu = _log_trajectory_tensor(log_plateau_i[obs_participant], log_rate_i[obs_participant], obs_day, decline,
                                    priors.decline_start_day, shape)
        pm.Censored("cpeptide", pm.LogNormal.dist(mu=mu, sigma=sigma), lower=obs_lod, upper=None,
                    observed=obs_value, dims="observation")
        log_c365 = _log_trajectory_tensor(log_plateau_i, log_rate_i, float(INSULIN_INDEPENDENCE_DAY), decline,
                                          priors.decline_start_day, shape)
        pm.Deterministic("cpeptide_365_participant", pt.exp(log_c365), dims="participant")
        if use_link:
            ii_participant = pm.Data("ii_participant", data.ii_participant, dims="ii_observation")
            ii_value = pm.Data("ii_value", data.ii_value, dims="ii_observation")
            logit_p = _link(link_priors, log_c365)
            pm.Bernoulli("insulin_independent", logit_p=logit_p[ii_participant], observed=ii_value,
                         dims="ii_observation")
    model.decline_start_day = priors.decline_start_day
    return model


#: Quadrature rules of the cohort-means likelihood: the trapezoid rule on an even grid of standard-normal z is
#: spectrally accurate for these smooth, Gaussian-weighted integrands. Against scipy.integrate.quad over prior
#: draws: relative error of G1 and of the covariance < 1e-8 (99% of draws < 1e-4 with every prior sd widened by
#: half); absolute error of p_bar < 1e-5 (< 4e-5 widened). tests/models/test_cpeptide.py checks them.
RATE_QUADRATURE = (81, 9.0)  # nodes, half-width in sd units: the population of rates
LINK_QUADRATURE = ((41, 8.0), (25, 6.0))  # plateau axis, rate axis of the two-dimensional average of the link


def normal_grid(nodes: int, half_width: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes z and weights w (summing to 1) with sum_j w_j f(z_j) ~ E f(Z), Z ~ Normal(0, 1)."""
    z = np.linspace(-half_width, half_width, nodes)
    w = np.exp(-0.5 * z**2)
    return z, w / w.sum()


def cohort_mean_moments_tensor(log_plateau, log_rate, sd_a, sd_k, sigma, day, n: int, decline_rate=None,
                               decline_start_day: float = 365.0, shape=None):
    """Exact mean m_t and relative covariance M_tt' = Cov(Ybar_t, Ybar_t') / (m_t m_t') of the mean of ``n``
    participants' measured values, given the population parameters (see the module docstring)."""
    z, w = normal_grid(*RATE_QUADRATURE)
    log_kt = log_rate + sd_k * z[:, None] + pt.log(day)[None, :]  # node x visit
    if shape is not None:
        log_kt = shape * log_kt
    g = -pt.expm1(-pt.exp(log_kt))  # fraction of the plateau reached, per rate node and visit
    g1 = pt.dot(w, g)
    rel = (g - g1[None, :]) / g1[None, :]
    rel_cov_g = pt.dot((w[:, None] * rel).T, rel)  # Cov(g_t, g_t') / (G1_t G1_t'), positive semi-definite
    log_m = log_plateau + sd_a**2 / 2.0 + sigma**2 / 2.0 + pt.log(g1)
    if decline_rate is not None:
        log_m = log_m - decline_rate * pt.maximum(day - decline_start_day, 0.0) / DAYS_PER_YEAR
    ratio = rel_cov_g + 1.0  # E[g_t g_t'] / (G1_t G1_t')
    eye = pt.eye(day.shape[0])
    em_a, em_s = pt.expm1(sd_a**2), pt.expm1(sigma**2)
    # E[Y_t Y_t'] / (m_t m_t') - 1, written as a sum of positive semi-definite terms (no cancellation)
    excess = em_a * ratio * (1.0 + em_s * eye) + rel_cov_g + em_s * ratio * eye
    return log_m, excess / n


def cohort_mean_log_covariance(rel_cov):
    """Covariance of log Ybar for the lognormal approximation: Fenton-Wilkinson variances log(1 + M_tt) on the
    diagonal, the correlations of M off it (positive definite whenever M is)."""
    var = pt.diagonal(rel_cov)
    log_var = pt.log1p(var)
    scale = pt.sqrt(log_var / var)
    return rel_cov * scale[:, None] * scale[None, :]


def population_share_insulin_independent_tensor(log_plateau, log_rate, sd_a, sd_k, alpha, beta, decline_rate=None,
                                                decline_start_day: float = 365.0, shape=None):
    """logit of p_bar = E[sigmoid(alpha + beta (log C_i(365) - log 1000))] over the population (2-D quadrature),
    computed on the log scale so that p_bar near 0 or 1 keeps its precision."""
    (z_a, w_a), (z_k, w_k) = normal_grid(*LINK_QUADRATURE[0]), normal_grid(*LINK_QUADRATURE[1])
    day = float(INSULIN_INDEPENDENCE_DAY)
    log_c365_rate = _log_trajectory_tensor(0.0, log_rate + sd_k * z_k, day, decline_rate, decline_start_day, shape)
    log_c = log_plateau + sd_a * z_a[:, None] + log_c365_rate[None, :]  # plateau node x rate node
    logit = link_logit(alpha, beta, log_c)
    weights = np.outer(w_a, w_k)
    # p_bar and 1 - p_bar each summed from its own sigmoid, so that neither loses precision near 0
    return pt.log(pt.sum(weights * pt.sigmoid(logit))) - pt.log(pt.sum(weights * pt.sigmoid(-logit)))


def _log_mv_normal_logp(value, mu, cov):
    """Density of Y with log Y ~ MvNormal(mu, cov): the normal density of log Y over prod Y (its Jacobian),
    through one Cholesky factor (cheaper than MvNormal's general logp: this runs at every gradient)."""
    log_value = pt.log(value)
    chol = pt.linalg.cholesky(cov)
    u = pt.linalg.solve_triangular(chol, log_value - mu, lower=True)
    return (-0.5 * pt.sum(u**2) - pt.sum(pt.log(pt.diagonal(chol))) - 0.5 * value.shape[-1] * math.log(2 * math.pi)
            - pt.sum(log_value))


def _log_mv_normal_random(mu, cov, rng=None, size=None):
    return np.exp(rng.multivariate_normal(mu, cov, size=size))


def cohort_means_likelihood(log_plateau, log_rate, sd_a, sd_k, sigma, visit_day, n: int, mean_obs,
                            priors: TrajectoryPriors, decline=None, shape=None, curve_misfit: bool = True):
    """The cohort-means likelihood term (inside a model context): the moment-matched lognormal law of the mean of
    ``n`` participants' measured values, times exp(delta_t) for the curve misfit when ``curve_misfit``.
    Returns (log m, M, covariance of log Ybar including the misfit)."""
    log_m, rel_cov = cohort_mean_moments_tensor(log_plateau, log_rate, sd_a, sd_k, sigma, visit_day, n, decline,
                                                priors.decline_start_day, shape)
    log_cov = cohort_mean_log_covariance(rel_cov)
    log_var_sampling = pt.diagonal(log_cov)
    if curve_misfit:
        tau = pm.Gamma("curve_misfit_sd", alpha=2.0, beta=2.0 / priors.curve_misfit_scale)
        log_cov = log_cov + tau**2 * pt.eye(visit_day.shape[0])
    log_var = pt.diagonal(log_cov)
    pm.Deterministic("expected_cohort_mean", pt.exp(log_m), dims="visit")
    pm.Deterministic("cohort_mean_log_sd", pt.sqrt(log_var), dims="visit")
    pm.Deterministic("cohort_mean_log_cov", log_cov, dims=("visit", "visit_other"))
    pm.CustomDist("cohort_mean", cohort_mean_log_location(log_m, log_var_sampling), log_cov,
                  logp=_log_mv_normal_logp, random=_log_mv_normal_random, signature="(n),(n,n)->(n)",
                  observed=mean_obs, dims="visit")
    return log_m, rel_cov, log_cov


def cohort_mean_log_location(log_m, log_var_sampling):
    """The location of log Ybar_t in :func:`cohort_means_likelihood`: log m_t - S_tt / 2, with S_tt the sampling part
    of the variance only (the curve misfit is median-zero on the log scale). Arithmetic only, so it serves PyTensor
    tensors (the model) and numpy arrays (posterior draws) alike."""
    return log_m - log_var_sampling / 2.0


def last_mean_conditional_logpdf(location, log_cov, means) -> np.ndarray:
    """Log density of the last published mean given the earlier ones, per posterior draw.

    With log Ybar ~ MvNormal(mu, S) (:func:`cohort_means_likelihood`; mu from :func:`cohort_mean_log_location`, S
    the posterior's ``cohort_mean_log_cov``), the last visit T given the earlier ones E is

        log Ybar_T | log Ybar_E ~ Normal(mu_T + S_TE S_EE^-1 (y_E - mu_E),  S_TT - S_TE S_EE^-1 S_ET),

    and the density of Ybar_T itself adds -log Ybar_T. ``location``: (..., T); ``log_cov``: (..., T, T); ``means``:
    the T published means (pmol/L). Returns an array of shape (...)."""
    from scipy import stats

    y = np.log(np.asarray(means, dtype=float))
    location, log_cov = np.asarray(location, dtype=float), np.asarray(log_cov, dtype=float)
    s_ee, s_te = log_cov[..., :-1, :-1], log_cov[..., -1, :-1]
    b = np.linalg.solve(s_ee, s_te[..., None])[..., 0]
    mean = location[..., -1] + np.einsum("...i,...i->...", b, y[:-1] - location[..., :-1])
    var = log_cov[..., -1, -1] - np.einsum("...i,...i->...", b, s_te)
    return stats.norm.logpdf(y[-1], mean, np.sqrt(var)) - y[-1]


def build_means_model(means: CohortMeans, priors: TrajectoryPriors = TrajectoryPriors(),
                      link_priors: LinkPriors | None = LinkPriors(), late_decline: bool = False,
                      rise_shape: bool = False, curve_misfit: bool = True) -> pm.Model:
    """The trajectory model on published cohort means, marginalised over the ``means.n_participants``
    participants behind them (see the module docstring); when ``means.ii_count`` and ``link_priors`` are given,
    their insulin-independence count is Binomial(n, p_bar). ``curve_misfit`` adds the cohort-by-visit deviation
    delta_t ~ Normal(0, curve_misfit_sd) of the published means from the curve."""
    n = int(means.n_participants)
    coords = {"visit": means.days.tolist(), "visit_other": means.days.tolist()}
    with pm.Model(coords=coords) as model:
        visit_day = pm.Data("visit_day", means.days, dims="visit")
        mean_obs = pm.Data("cohort_mean_obs", means.means, dims="visit")
        plateau, t_half, sd_a, sd_k, sigma = _population_parameters(priors)
        shape, decline = _shape_and_decline(priors, late_decline, rise_shape)
        log_plateau = pt.log(plateau)
        log_rate, _ = _log_median_rate(t_half, shape)
        log_m, rel_cov, log_cov = cohort_means_likelihood(log_plateau, log_rate, sd_a, sd_k, sigma, visit_day, n,
                                                          mean_obs, priors, decline, shape, curve_misfit)
        if means.has_spread:
            has = np.flatnonzero(np.isfinite(means.spread_sd))
            sd_obs = pm.Data("cohort_sd_obs", means.spread_sd[has])
            # SD of one participant's measured value: m_t sqrt(n M_tt)
            log_sd_model = log_m + 0.5 * pt.log(n * pt.diagonal(rel_cov))
            pm.LogNormal("cohort_sd", mu=log_sd_model[has], sigma=1.0 / math.sqrt(2.0 * (n - 1)), observed=sd_obs)
        if link_priors is not None and means.ii_count is not None:
            ii_count = pm.Data("ii_count", np.asarray(int(means.ii_count), dtype=np.int64))
            alpha = pm.Normal("alpha", link_priors.alpha_mean, link_priors.alpha_sd)
            beta = pm.Normal("beta", link_priors.beta_mean, link_priors.beta_sd)
            logit_p = population_share_insulin_independent_tensor(log_plateau, log_rate, sd_a, sd_k, alpha, beta,
                                                                  decline, priors.decline_start_day, shape)
            pm.Deterministic("p_insulin_independent_population", pm.math.sigmoid(logit_p))
            pm.Binomial("insulin_independent_count", n=n, logit_p=logit_p, observed=ii_count)
    model.decline_start_day = priors.decline_start_day
    return model


# ------------------------------------------------------------------------------------------- simulation
def _simulate_latent(params: PopulationParameters, n_participants: int, days: np.ndarray,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True log C_i(t) (participant x day), measured values (uncensored) and true log C_i(365)."""
    z = rng.standard_normal((n_participants, 2))
    log_plateau_i = math.log(params.plateau_pmol_l) + params.sd_log_plateau * z[:, 0]
    rate_i = rate_from_t_half(params.t_half_days, params.rise_shape) * np.exp(params.sd_log_rate * z[:, 1])
    log_c = log_trajectory(log_plateau_i[:, None], rate_i[:, None], days[None, :], params.decline_rate_per_year,
                           params.decline_start_day, params.rise_shape)
    measured = np.exp(log_c + params.measurement_sd * rng.standard_normal(log_c.shape))
    log_c365 = log_trajectory(log_plateau_i, rate_i, float(INSULIN_INDEPENDENCE_DAY), params.decline_rate_per_year,
                              params.decline_start_day, params.rise_shape)
    return log_c, measured, log_c365


def _draw_insulin_independence(params: PopulationParameters, log_c365: np.ndarray,
                               rng: np.random.Generator) -> np.ndarray:
    if params.has_need_threshold:  # the participant's own need: independent when the graft covers all of it
        log_need = math.log(params.need_median_pmol_l) + params.sd_log_need * rng.standard_normal(log_c365.shape)
        return (log_c365 >= log_need).astype(np.int64)
    if params.alpha is None or params.beta is None:
        raise ModelInputError("simulating insulin independence needs the link parameters alpha and beta", parameter="link")
    p = 1.0 / (1.0 + np.exp(-link_logit(params.alpha, params.beta, log_c365)))
    return (rng.random(p.shape) < p).astype(np.int64)


def _check_schedule(n_participants: int, days) -> np.ndarray:
    days = np.asarray(days, dtype=float).ravel()
    if not (isinstance(n_participants, (int, np.integer)) and n_participants >= 1):
        raise ModelInputError(f"n_participants must be an integer >= 1, got {n_participants!r}", parameter="n_participants")
    if days.size == 0 or np.any(~np.isfinite(days)) or np.any(days <= 0):
        raise ModelInputError("visit days must be a non-empty list of numbers > 0", parameter="days")
    return days


def simulate_participants(params: PopulationParameters, n_participants: int, days, lod: float = DEFAULT_LOD_PMOL_L,
                          rng: np.random.Generator | None = None, link: bool = True, cohort: str = "simulated",
                          dose: float = 0.8) -> pd.DataFrame:
    """Simulate participant-level data in the long format (see the module docstring) from population parameters.

    ``dose`` is written as given (the data layer's convention: 0.8, i.e. 0.8e9 cells, is zimislecel's full dose).
    """
    rng = np.random.default_rng() if rng is None else rng
    days = _check_schedule(n_participants, days)
    _, measured, log_c365 = _simulate_latent(params, n_participants, days, rng)
    ids = [f"P{i + 1:03d}" for i in range(n_participants)]
    below = measured <= lod
    cp = pd.DataFrame({
        "participant": np.repeat(ids, days.size),
        "cohort": cohort,
        "dose": dose,
        "day": np.tile(days, n_participants),
        "measure": "cpeptide",
        "value": np.where(below, lod, measured).ravel(),
        "unit": "pmol/L",
        "below_lod": below.ravel(),
        "lod": float(lod),
    })
    if not link:
        return cp
    ii = _draw_insulin_independence(params, log_c365, rng)
    ii_rows = pd.DataFrame({
        "participant": ids, "cohort": cohort, "dose": dose, "day": float(INSULIN_INDEPENDENCE_DAY),
        "measure": "insulin_independent", "value": ii.astype(float), "unit": "binary", "below_lod": False,
        "lod": np.nan,
    })
    return pd.concat([cp, ii_rows], ignore_index=True)


def simulate_cohort_means(params: PopulationParameters, n_participants: int, days,
                          rng: np.random.Generator | None = None, link: bool = True,
                          curve_misfit_sd: float = 0.0) -> CohortMeans:
    """Cohort means of ``n_participants`` simulated participants' measured values (uncensored), and the II count.

    ``curve_misfit_sd`` > 0 multiplies each visit's mean by exp(delta_t), delta_t ~ Normal(0, curve_misfit_sd): the
    cohort-by-visit deviation of the cohort-means likelihood. It belongs to the published means, not to any
    participant, so :func:`simulate_participants` has no such term.
    """
    rng = np.random.default_rng() if rng is None else rng
    days = _check_schedule(n_participants, days)
    _, measured, log_c365 = _simulate_latent(params, n_participants, days, rng)
    count = int(_draw_insulin_independence(params, log_c365, rng).sum()) if link else None
    means = measured.mean(axis=0)
    if curve_misfit_sd > 0:
        means = means * np.exp(curve_misfit_sd * rng.standard_normal(days.size))
    return CohortMeans(days=days, means=means, n_participants=int(n_participants), ii_count=count)


# ------------------------------------------------------------------------------------------------ refit
class CompiledRefit:
    """A model compiled once by nutpie and refitted on new data of the same shape.

    ``CompiledRefit(model).sample(arrays, settings)`` with ``arrays`` from :func:`participant_arrays` or
    :func:`means_arrays`; returns the DataTree (check it with ``check_diagnostics``). The phase 3 simulations
    and the calibration use this: compilation (seconds) happens once, each refit costs only sampling.
    """

    def __init__(self, model: pm.Model):
        import nutpie

        from isletbayes.models.compiled_models import exact_float_code

        self.model = model
        with exact_float_code():  # the code every other route compiles (compiled_models, "Reproducibility")
            self.compiled = nutpie.compile_pymc_model(model)
        self.data_names = {v.name for v in model.data_vars}
        # containers the compiled density reads (one the density does not read, such as the centring weights of a
        # non-centred participant model, cannot change the fit and is not passed on)
        self.used_data_names = {v.name for v in self.compiled.shared_var_keys}

    def sample(self, arrays: dict[str, Any], settings) -> Any:
        import nutpie

        unknown = set(arrays) - self.data_names
        if unknown:
            raise KeyError(f"not a data container of this model: {sorted(unknown)}")
        arrays = {name: value for name, value in arrays.items() if name in self.used_data_names}
        compiled = self.compiled.with_data(**arrays) if arrays else self.compiled
        return nutpie.sample(compiled, draws=settings.draws, tune=settings.tune, chains=settings.chains,
                             cores=settings.cores, seed=settings.seed, progress_bar=False,
                             **settings.nutpie_options())
