r"""Day-365 stimulated C-peptide as a phase 3 end point: a left-censored lognormal model (PyMC).

Model
-----
Participant i = 1..n of a trial has stimulated C-peptide :math:`y_i` (pmol/L) at day 365, measured by an assay
with lower limit of detection :math:`L_i` (13 pmol/L in the phase 1/2 trial):

.. math::
    \log y_i \sim \mathrm{Normal}(\mu, s^2), \qquad
    y_i \le L_i \text{ is left-censored: it contributes } \Phi\!\left(\frac{\log L_i - \mu}{s}\right),

    \mu \sim \mathrm{Normal}(\log m_0, \tau^2), \qquad s \sim \mathrm{HalfNormal}(\sigma_s),

with defaults :math:`\tau = 2` and :math:`\sigma_s = 1` (weakly informative on the log scale: a factor of
:math:`e^{4} \approx 55` either side of :math:`m_0` is within two prior sds). :math:`e^{\mu}` is the median
participant's C-peptide, :math:`s` the between-participant sd of log C-peptide (measurement error included).

End point and decision
----------------------
The quantity a phase 3 decides on is the **fraction of participants whose day-365 stimulated C-peptide reaches a
clinically meaningful level** :math:`c_0`:

.. math::
    \pi(c_0) = \mathrm{P}(y > c_0 \mid \mu, s) = \Phi\!\left(\frac{\mu - \log c_0}{s}\right), \qquad
    \text{success} \iff \mathrm{P}\big(\pi(c_0) > q_0 \mid y_{1..n}\big) \ge \gamma.

With :math:`q_0 = 1/2` (the default) the rule reads "more than half of the participants reach :math:`c_0`",
which under this model is the same as :math:`e^{\mu} > c_0`: the median participant reaches :math:`c_0`. The
analysis centres the prior on the threshold (:math:`m_0 = c_0`), so a priori :math:`\mathrm{P}(\pi(c_0) > 1/2) =
1/2`: the prior favours neither outcome.

Default level :math:`c_0 = 970` pmol/L (0.97 nmol/L): the MMTT-stimulated C-peptide cut point that best
predicted the "optimal" outcome of islet transplantation (insulin independence, HbA1c <= 6.5% and no severe
hypoglycaemia) in 677 islet-alone recipients of the Collaborative Islet Transplant Registry (Baidal et al. 2023,
Diabetes Care 46:697-703, doi:10.2337/dc22-1155). It is the level at which graft function is expected to carry
the clinical outcome the product is for. The DCCT level of 200 pmol/L (Palmer et al. 2004, Diabetes 53:250-264)
marks residual beta-cell function worth preserving in new-onset type 1 diabetes; a replacement product whose phase
1/2 cohort averaged 1274 pmol/L at day 365 clears it in virtually every simulated trial, so it cannot
discriminate between phase 3 designs (its assurance is 1). Both are user options.

The censored lognormal likelihood for assay detection limits follows Lynn (2001, Stat. Med. 20:3325-3336).

Computation
-----------
The likelihood is evaluated from sufficient statistics, exactly (not an approximation): with :math:`D` the
detected participants (:math:`n_D` of them, mean :math:`\bar\ell` and sum of squared deviations :math:`S` of
their log values) and :math:`m_k` participants censored at each distinct LLOD :math:`L_k`,

.. math::
    \log p(y \mid \mu, s) = -n_D \log s - \tfrac{n_D}{2}\log 2\pi
        - \frac{S + n_D(\bar\ell - \mu)^2}{2 s^2} - \sum_{i \in D} \log y_i
        + \sum_k m_k \log \Phi\!\left(\frac{\log L_k - \mu}{s}\right),

the same log density as one ``pm.Censored(LogNormal)`` term per participant (the tests check this), but one
normal CDF per distinct LLOD instead of one per participant. That matters because the phase 3 simulations refit
this model thousands of times: per participant, ``pm.Censored`` evaluates the censored branch (an ``erfcx``) for
every row and discards it for detected ones, which is most of the sampler's time at n = 50. The data containers
(:data:`DATA_CONTAINERS`) have fixed shapes for a fixed number of distinct LLODs (one, in simulated trials), so
one compiled model is refitted on any trial of the same design.

Deterministic quadrature (no MCMC)
----------------------------------
The posterior has two parameters, so the decision quantities can be computed by quadrature instead of NUTS,
for thousands of simulated trials at once (:func:`day365_posterior_quadrature`). With :math:`\eta = \log s`
and the normal part of the model (prior on :math:`\mu` and detected values) integrated in closed form, the
posterior of :math:`\mu` given :math:`s` is :math:`\mathrm{Normal}(M(s), V(s))` times the censoring factor:

.. math::
    V = \Big(\frac{n_D}{s^2} + \frac{1}{\tau^2}\Big)^{-1}, \qquad
    M = V\Big(\frac{n_D \bar\ell}{s^2} + \frac{\log m_0}{\tau^2}\Big), \qquad
    \mu = M + \sqrt{V}\, z,

    p(z, \eta \mid y) \propto \exp\Big((1 - n_D)\eta - \frac{s^2}{2\sigma_s^2} - \frac{S}{2 s^2}
        + \tfrac12 \log V - \frac{n_D (\bar\ell - \log m_0)^2}{2 (s^2 + n_D \tau^2)}\Big)\,
        \varphi(z) \prod_k \Phi\Big(\frac{\log L_k - \mu}{s}\Big)^{m_k}

(the HalfNormal prior and its Jacobian :math:`s` give :math:`\eta - s^2 / 2\sigma_s^2`). In :math:`(z, \eta)` the
posterior has no funnel however small :math:`n_D` is, and without censoring :math:`z` is exactly standard
normal. The three decision quantities, :math:`\mathrm{P}(\pi(c_0) > q_0 \mid y) = \mathrm{P}(z > \beta(\eta)
\mid y)` with :math:`\beta = (\log c_0 + s\,\Phi^{-1}(q_0) - M)/\sqrt{V}`, :math:`\mathrm{E}[e^{\mu} \mid y]` and
:math:`\mathrm{E}[\pi(c_0) \mid y]`, are integrals over a grid of cells:

* the box: found per trial by zooming (a coarse grid on a wide box around the prior, shrunk to the cells whose
  density is within :math:`e^{-36}` of the largest, widened where the mass touches an edge, repeated until
  stable), then checked: the share of the mass in the outermost cells of the final grid (also weighted by
  :math:`e^{\mu}`) must be below ``EDGE_MASS_TOL``, else the box is widened and the trial recomputed;
* the rule: the midpoint rule, whose error falls faster than any power of the cell width for smooth
  integrands that decay at both ends (Trefethen and Weideman 2014, SIAM Review 56:385-458), as both posterior
  means are; for the probability the :math:`z` cells of each :math:`\eta` row are shifted so that
  :math:`\beta(\eta)` is a cell edge, and the half-line sum is corrected by the Euler-Maclaurin end terms
  :math:`-\tfrac{h^2}{24} f^{(1)}(\beta) + \tfrac{7 h^4}{5760} f^{(3)}(\beta)` (derivatives from the four cells
  next to the edge; Davis and Rabinowitz 1984, Methods of Numerical Integration, 2nd ed., sec. 2.9), which
  leaves an error of order :math:`h^6`.

The tests check the quadrature against a closed form in :math:`z` (no censoring: given :math:`s`,
:math:`\mathrm{P}(z > \beta) = \Phi(-\beta)`, :math:`\mathrm{E}\,e^{\mu} = e^{M + V/2}` and
:math:`\mathrm{E}\,\pi = \Phi((M - \log c_0)/\sqrt{s^2 + V})`) integrated over :math:`\eta` by
``scipy.integrate.quad``, against nested ``scipy.integrate.quad`` with censoring, for convergence in the grid
size, and against NUTS on the same trials.

API
---
``Day365Priors``; ``Day365Data``; ``day365_data_from_long(df, source=..., day=365.0) -> Day365Data``;
``day365_arrays(data) -> dict`` (the ``pm.Data`` values, for ``compiled.with_data(**arrays)``);
``build_day365_model(data, priors) -> pm.Model``;
``fraction_above(log_median, sd_log, threshold_pmol_l) -> ndarray`` (posterior draws of :math:`\pi(c_0)`);
``Day365Statistics``; ``day365_statistics(trials) -> Day365Statistics`` (sufficient statistics of many trials);
``day365_statistics_of_values(cpeptide_pmol_l, lod_pmol_l) -> Day365Statistics`` (the same from a (trials,
participants) array, vectorised);
``day365_posterior_quadrature(trials, priors, threshold_pmol_l, min_fraction_above, grid) -> Day365Posterior``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from scipy.special import log_ndtr, ndtr, ndtri

from isletbayes.models.validation import ModelInputError

ENDPOINT_DAY = 365.0
#: Default clinically meaningful level (pmol/L): the CITR cut point of Baidal et al. 2023 (module docstring).
DEFAULT_THRESHOLD_PMOL_L = 970.0
#: Default fraction of participants that must reach the level (1/2: the median participant reaches it).
DEFAULT_MIN_FRACTION_ABOVE = 0.5
#: Names of the model's free parameters (for diagnostics) and of its data containers (for refits).
PARAMETERS = ("log_median_pmol_l", "sd_log")
DATA_CONTAINERS = ("n_detected", "mean_log_detected", "ssd_log_detected", "sum_log_detected", "log_lod_levels",
                   "n_censored_at_level")


@dataclass(frozen=True)
class Day365Priors:
    """mu ~ Normal(log median_centre_pmol_l, log_median_sd), s ~ HalfNormal(sd_log_scale)."""

    median_centre_pmol_l: float = DEFAULT_THRESHOLD_PMOL_L
    log_median_sd: float = 2.0
    sd_log_scale: float = 1.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
                    or value <= 0:
                raise ModelInputError(f"must be a finite number > 0, got {value!r}", parameter=name)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Day365Data:
    """One trial's day-365 C-peptide: values (pmol/L; a censored value is its LLOD), LLODs and censoring flags."""

    cpeptide_pmol_l: np.ndarray
    lod_pmol_l: np.ndarray
    censored: np.ndarray

    @property
    def n_participants(self) -> int:
        return int(self.cpeptide_pmol_l.size)


def day365_data_from_long(df: pd.DataFrame, source: str = "participant data", day: float = ENDPOINT_DAY) -> Day365Data:
    """Day-365 C-peptide rows of the long participant format (see :func:`isletbayes.data.load_participant_data`).

    One row per participant is required. A row flagged ``below_lod``, or whose value is at or under its LLOD,
    is censored at its LLOD.
    """
    missing = [c for c in ("participant", "day", "measure", "value", "below_lod", "lod") if c not in df.columns]
    if missing:
        raise ModelInputError(f"missing column(s) {', '.join(missing)}", source=source, column=missing[0])
    # numpy masks rather than pandas indexing: the phase 3 simulations call this once per simulated trial
    day_values = _numbers(df["day"])
    mask = (df["measure"].to_numpy(dtype=object) == "cpeptide") & (day_values == day)
    n_rows = int(mask.sum())
    if n_rows < 2:
        raise ModelInputError(f"need day-{day:g} C-peptide of at least 2 participants, found {n_rows}",
                         source=source, column="day")
    index = np.flatnonzero(mask)
    participants = df["participant"].to_numpy(dtype=object)[index]
    dup = pd.Series(participants).duplicated().to_numpy()
    if dup.any():
        raise ModelInputError(f"participant {participants[dup][0]!r} has more than one day-{day:g} C-peptide",
                         source=source, column="participant", line=_line(df.iloc[index[dup]]))
    value = _numbers(df["value"])[index]
    lod = _numbers(df["lod"])[index]
    flagged = df["below_lod"].to_numpy()
    if flagged.dtype != bool:
        flagged = df["below_lod"].astype(str).str.lower().isin(["true", "1", "yes"]).to_numpy()
    flagged = flagged[index]
    bad_lod = ~(np.isfinite(lod) & (lod > 0))
    if bad_lod.any():
        raise ModelInputError("the LLOD must be a number > 0", source=source, column="lod",
                         line=_line(df.iloc[index[bad_lod]]))
    bad_value = ~flagged & ~(np.isfinite(value) & (value > 0))
    if bad_value.any():
        raise ModelInputError("a detected C-peptide must be a number > 0", source=source, column="value",
                         line=_line(df.iloc[index[bad_value]]))
    censored = flagged | (value <= lod)
    return Day365Data(np.where(censored, lod, value), lod, censored)


def _numbers(column: pd.Series) -> np.ndarray:
    if column.dtype.kind == "f":
        return column.to_numpy()
    return pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)


def _line(rows: pd.DataFrame) -> int | None:
    idx = rows.index[0] if len(rows) else None
    return int(idx) + 2 if isinstance(idx, (int, np.integer)) else None


def day365_arrays(data: Day365Data) -> dict[str, np.ndarray]:
    """The model's ``pm.Data`` values (sufficient statistics) by container name, for ``compiled.with_data(**arrays)``.

    LLOD levels are the distinct LLODs of all participants (detected or not), so the shape depends on the assay,
    not on how many values happen to be censored in a given trial.
    """
    log_y = np.log(data.cpeptide_pmol_l[~data.censored])
    n_detected = log_y.size
    mean = float(log_y.mean()) if n_detected else 0.0
    levels, level_of = np.unique(data.lod_pmol_l, return_inverse=True)
    return {
        "n_detected": np.asarray(float(n_detected)),
        "mean_log_detected": np.asarray(mean),
        "ssd_log_detected": np.asarray(float(np.sum((log_y - mean) ** 2))),
        "sum_log_detected": np.asarray(float(log_y.sum())),
        "log_lod_levels": np.log(levels),
        "n_censored_at_level": np.bincount(level_of[data.censored], minlength=levels.size).astype(float),
    }


def build_day365_model(data: Day365Data, priors: Day365Priors = Day365Priors()) -> pm.Model:
    """The censored lognormal model of the module docstring; data in ``pm.Data`` containers (sufficient statistics)."""
    arrays = day365_arrays(data)
    with pm.Model() as model:
        d = {name: pm.Data(name, value) for name, value in arrays.items()}
        mu = pm.Normal("log_median_pmol_l", mu=math.log(priors.median_centre_pmol_l), sigma=priors.log_median_sd)
        s = pm.HalfNormal("sd_log", sigma=priors.sd_log_scale)
        n_d = d["n_detected"]
        detected = (-n_d * pt.log(s) - 0.5 * n_d * math.log(2.0 * math.pi)
                    - (d["ssd_log_detected"] + n_d * (d["mean_log_detected"] - mu) ** 2) / (2.0 * s**2)
                    - d["sum_log_detected"])
        censored = pt.sum(d["n_censored_at_level"] * pm.logcdf(pm.Normal.dist(mu=mu, sigma=s), d["log_lod_levels"]))
        pm.Potential("cpeptide_365_loglik", detected + censored)
    return model


def fraction_above(log_median, sd_log, threshold_pmol_l: float) -> np.ndarray:
    """pi(c0) = Phi((mu - log c0) / s): the fraction of participants above ``threshold_pmol_l``, per draw."""
    return ndtr((np.asarray(log_median, dtype=float) - math.log(threshold_pmol_l)) / np.asarray(sd_log, dtype=float))


def check_decision_settings(threshold_pmol_l: float, min_fraction_above: float, gamma: float) -> None:
    """The decision rule's settings, with the offending option named."""
    if not (isinstance(threshold_pmol_l, (int, float)) and math.isfinite(threshold_pmol_l) and threshold_pmol_l > 0):
        raise ModelInputError(f"must be a C-peptide level > 0 pmol/L, got {threshold_pmol_l!r}",
                         parameter="threshold_pmol_l")
    if not (0.0 <= min_fraction_above < 1.0):
        raise ModelInputError(f"must be in [0, 1), got {min_fraction_above!r}", parameter="min_fraction_above")
    if not (0.0 < gamma < 1.0):
        raise ModelInputError(f"must be in (0, 1), got {gamma!r}", parameter="gamma")


# --------------------------------------------------------------------------------------------------------------
# deterministic quadrature of the posterior (module docstring, "Deterministic quadrature")
# --------------------------------------------------------------------------------------------------------------
#: Default grid of the final quadrature: (cells in z, cells in log s). From the convergence study in
#: tests/models/test_cpeptide_endpoint.py: errors below 1e-6 in the probability, 1e-9 in the posterior means.
QUADRATURE_GRID = (96, 48)
#: Largest share of the posterior mass (and of the e^mu-weighted mass) allowed in the outermost grid cells.
EDGE_MASS_TOL = 1e-10
#: Trials with at most one detected value, or with (nearly) tied detected values (their sd below 1e-4 x
#: sd_log_scale), are computed on a grid this many times finer in each direction: their posterior of log s has a
#: heavy tail toward -inf (density ~ e^eta, or flat down to log of that sd), and with every value censored the
#: integrand has a step at the LLOD that the midpoint rule resolves to first order only (tests, against a grid 8
#: times finer than the default: P and E[pi] within 1e-8; E[e^mu] within 1e-3 relative when every value is
#: censored, 1e-9 otherwise).
HARD_TRIAL_GRID_FACTOR = 4
_ZOOM_GRID = (48, 48)  # the coarse grid that locates the mass
_KEEP_LOG = 36.0  # the box keeps the cells whose density is within e^-36 of the largest
_ZOOM_PASSES = 12
_ETA_RANGE = (-150.0, 10.0)  # log s relative to log sd_log_scale: the box never leaves it (floats stay finite)
_Z_RANGE = (-1e3, 1e3)
_WIDEN_TRIES = 4


@dataclass(frozen=True)
class Day365Statistics:
    """Sufficient statistics of T trials' day-365 C-peptide, one row per trial (see ``day365_arrays``).

    ``log_lod_levels`` and ``n_censored_at_level`` are (T, K): K distinct LLODs, a trial with fewer levels padded
    with zero counts.
    """

    n_detected: np.ndarray
    mean_log_detected: np.ndarray
    ssd_log_detected: np.ndarray
    log_lod_levels: np.ndarray
    n_censored_at_level: np.ndarray

    def __post_init__(self) -> None:
        t = np.shape(self.n_detected)
        if len(t) != 1 or np.shape(self.mean_log_detected) != t or np.shape(self.ssd_log_detected) != t:
            raise ModelInputError("n_detected, mean_log_detected and ssd_log_detected must be 1-d of one length",
                                  parameter="n_detected")
        if np.ndim(self.log_lod_levels) != 2 or np.shape(self.log_lod_levels) != np.shape(self.n_censored_at_level) \
                or np.shape(self.log_lod_levels)[0] != t[0]:
            raise ModelInputError("log_lod_levels and n_censored_at_level must be (trials, levels) arrays",
                                  parameter="log_lod_levels")
        n_d, counts = np.asarray(self.n_detected, float), np.asarray(self.n_censored_at_level, float)
        if not (np.all(n_d >= 0) and np.all(n_d == np.round(n_d))):
            raise ModelInputError("must be whole numbers >= 0", parameter="n_detected")
        if not (np.all(counts >= 0) and np.all(counts == np.round(counts))):
            raise ModelInputError("must be whole numbers >= 0", parameter="n_censored_at_level")
        if np.any(n_d + counts.sum(axis=1) < 1):
            raise ModelInputError("every trial needs at least one participant", parameter="n_detected")
        if not (np.all(np.isfinite(self.mean_log_detected)) and np.all(np.isfinite(self.log_lod_levels))):
            raise ModelInputError("must be finite", parameter="mean_log_detected")
        ssd = np.asarray(self.ssd_log_detected, float)
        if not (np.all(np.isfinite(ssd)) and np.all(ssd >= 0)):
            raise ModelInputError("must be finite and >= 0", parameter="ssd_log_detected")

    @property
    def n_trials(self) -> int:
        return int(np.shape(self.n_detected)[0])

    def take(self, index) -> Day365Statistics:
        """The statistics of the trials ``index`` selects (an index array or a boolean mask)."""
        return Day365Statistics(*(np.asarray(a)[index] for a in (self.n_detected, self.mean_log_detected,
                                                                   self.ssd_log_detected, self.log_lod_levels,
                                                                   self.n_censored_at_level)))


def day365_statistics(trials: Day365Data | Sequence[Day365Data] | Day365Statistics) -> Day365Statistics:
    """The sufficient statistics of one trial or of many (the values of :func:`day365_arrays`, stacked)."""
    if isinstance(trials, Day365Statistics):
        return trials
    if isinstance(trials, Day365Data):
        trials = [trials]
    arrays = [day365_arrays(t) for t in trials]
    if not arrays:
        raise ModelInputError("no trials given", parameter="trials")
    k = max(a["log_lod_levels"].size for a in arrays)
    levels, counts = np.zeros((len(arrays), k)), np.zeros((len(arrays), k))
    for i, a in enumerate(arrays):
        levels[i, :a["log_lod_levels"].size] = a["log_lod_levels"]
        counts[i, :a["n_censored_at_level"].size] = a["n_censored_at_level"]
    return Day365Statistics(np.array([float(a["n_detected"]) for a in arrays]),
                            np.array([float(a["mean_log_detected"]) for a in arrays]),
                            np.array([float(a["ssd_log_detected"]) for a in arrays]), levels, counts)


def day365_statistics_of_values(cpeptide_pmol_l, lod_pmol_l: float) -> Day365Statistics:
    """The sufficient statistics of T trials of n participants each from a (T, n) array of C-peptide values, all
    measured by one assay with LLOD ``lod_pmol_l``: a value at or under the LLOD is censored there (as
    :func:`day365_data_from_long` reads such a row). Vectorised over trials: the phase 3 simulations call it once
    for thousands of trials; the same statistics as :func:`day365_statistics` of the trials one by one (up to the
    order of summation)."""
    values = np.asarray(cpeptide_pmol_l, dtype=float)
    if values.ndim != 2 or values.shape[1] < 1:
        raise ModelInputError(f"must be a (trials, participants) array, got shape {values.shape}",
                              parameter="cpeptide_pmol_l")
    if not (isinstance(lod_pmol_l, (int, float)) and math.isfinite(lod_pmol_l) and lod_pmol_l > 0):
        raise ModelInputError(f"must be a number > 0, got {lod_pmol_l!r}", parameter="lod_pmol_l")
    if not np.all(np.isfinite(values)):
        raise ModelInputError("must be finite", parameter="cpeptide_pmol_l")
    detected = values > lod_pmol_l
    n_detected = detected.sum(axis=1)
    log_y = np.log(np.where(detected, values, 1.0))  # log 1 = 0 stands in for the censored values
    mean = np.divide(log_y.sum(axis=1), n_detected, out=np.zeros(values.shape[0]), where=n_detected > 0)
    ssd = np.sum(np.where(detected, (log_y - mean[:, None]) ** 2, 0.0), axis=1)
    censored = (values.shape[1] - n_detected).astype(float)
    return Day365Statistics(n_detected.astype(float), mean, ssd, np.full((values.shape[0], 1), math.log(lod_pmol_l)),
                            censored[:, None])


@dataclass(frozen=True)
class Day365Posterior:
    """Decision quantities of :func:`build_day365_model`'s posterior per trial, by quadrature (no Monte Carlo error).

    ``prob_fraction_above``: P(pi(c0) > q0 | y), what the decision rule compares with gamma;
    ``median_posterior_mean``: E[e^mu | y] (pmol/L); ``fraction_above_posterior_mean``: E[pi(c0) | y];
    ``edge_mass``: the larger share of the posterior mass (plain, or weighted by e^mu) in the outermost cells
    of the final grid, which bounds what the box leaves out (each below ``EDGE_MASS_TOL``).
    """

    prob_fraction_above: np.ndarray
    median_posterior_mean: np.ndarray
    fraction_above_posterior_mean: np.ndarray
    edge_mass: np.ndarray
    threshold_pmol_l: float
    min_fraction_above: float
    grid: tuple[int, int]

    def success(self, gamma: float) -> np.ndarray:
        """The decision rule per trial: P(pi(c0) > q0 | y) >= gamma."""
        check_decision_settings(self.threshold_pmol_l, self.min_fraction_above, gamma)
        return self.prob_fraction_above >= gamma


def day365_posterior_quadrature(trials: Day365Data | Sequence[Day365Data] | Day365Statistics,
                                priors: Day365Priors = Day365Priors(),
                                threshold_pmol_l: float = DEFAULT_THRESHOLD_PMOL_L,
                                min_fraction_above: float = DEFAULT_MIN_FRACTION_ABOVE,
                                grid: tuple[int, int] = QUADRATURE_GRID, batch_size: int = 32) -> Day365Posterior:
    """P(pi(c0) > q0 | y), E[e^mu | y] and E[pi(c0) | y] of every trial by quadrature (module docstring).

    ``grid`` is (cells in z, cells in log s) of the final grid; ``batch_size`` trials are computed together (a
    trial's result does not depend on the batch it is in: the same numbers one at a time or all at once).
    Raises ``RuntimeError`` if a trial's posterior mass cannot be enclosed to ``EDGE_MASS_TOL`` (an improper
    posterior: detected values all equal and none censored).
    """
    check_decision_settings(threshold_pmol_l, min_fraction_above, 0.5)
    if not isinstance(priors, Day365Priors):
        raise ModelInputError(f"must be Day365Priors, got {type(priors).__name__}", parameter="priors")
    n_z, n_eta = (int(g) for g in grid)
    if n_z < 16 or n_eta < 8:
        raise ModelInputError(f"needs at least 16 x 8 cells, got {grid!r}", parameter="grid")
    if int(batch_size) < 1:
        raise ModelInputError(f"must be >= 1, got {batch_size!r}", parameter="batch_size")
    stats = day365_statistics(trials)
    problem = _Problem(priors, math.log(threshold_pmol_l),
                       float(ndtri(min_fraction_above)) if min_fraction_above > 0 else -math.inf)
    out = np.empty((4, stats.n_trials))
    censored = stats.n_censored_at_level.sum(axis=1) > 0
    hard = (stats.n_detected <= 1) | (stats.ssd_log_detected <= stats.n_detected * (1e-4 * priors.sd_log_scale) ** 2)
    f = HARD_TRIAL_GRID_FACTOR
    for group, cells in (((~censored & ~hard), (n_z, n_eta)), ((censored & ~hard), (n_z, n_eta)),
                         (hard, (f * n_z, f * n_eta))):  # no normal CDFs in uncensored batches
        group = np.flatnonzero(group)
        for start in range(0, group.size, int(batch_size)):
            index = group[start:start + int(batch_size)]
            out[:, index] = _quadrature_batch(stats.take(index), problem, *cells, index)
    return Day365Posterior(out[0], out[1], out[2], out[3], float(threshold_pmol_l), float(min_fraction_above),
                           (n_z, n_eta))


@dataclass(frozen=True)
class _Problem:
    priors: Day365Priors
    log_threshold: float
    z_fraction: float  # Phi^-1(q0); -inf for q0 = 0 (then pi(c0) > q0 always)

    @property
    def m0(self) -> float:
        return math.log(self.priors.median_centre_pmol_l)


def _rows(st: Day365Statistics, pb: _Problem, eta: np.ndarray):
    """Per (trial, eta row): M, V and the log weight of the row's normal part (module docstring)."""
    n, lbar, ssd = (np.asarray(a, float)[:, None] for a in (st.n_detected, st.mean_log_detected, st.ssd_log_detected))
    tau2, sig2, m0 = pb.priors.log_median_sd ** 2, pb.priors.sd_log_scale ** 2, pb.m0
    s2 = np.exp(2.0 * eta)
    v = 1.0 / (n / s2 + 1.0 / tau2)
    m = v * (n * lbar / s2 + m0 / tau2)
    log_row = ((1.0 - n) * eta - s2 / (2.0 * sig2) - ssd / (2.0 * s2) + 0.5 * np.log(v)
               - n * (lbar - m0) ** 2 / (2.0 * (s2 + n * tau2)))
    return m, v, log_row


def _log_density(st: Day365Statistics, pb: _Problem, eta: np.ndarray, z: np.ndarray):
    """log p(z, eta | y) up to a constant on (trial, eta row, z cell), and mu there."""
    m, v, log_row = _rows(st, pb, eta)
    mu = m[:, :, None] + np.sqrt(v)[:, :, None] * z
    log_f = log_row[:, :, None] - 0.5 * z * z
    counts = np.asarray(st.n_censored_at_level, float)
    if counts.any():
        inv_s = np.exp(-eta)[:, :, None]
        levels = np.asarray(st.log_lod_levels, float)
        for k in range(counts.shape[1]):
            if counts[:, k].any():
                log_f = log_f + counts[:, k, None, None] * log_ndtr((levels[:, k, None, None] - mu) * inv_s)
    return log_f, mu


def _cells(box: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Midpoints of n equal cells over each row's [lo, hi] box, and the cell width."""
    h = (box[:, 1] - box[:, 0]) / n
    return box[:, :1] + (np.arange(n) + 0.5) * h[:, None], h


def _zoom(st: Day365Statistics, pb: _Problem, z_box: np.ndarray, eta_box: np.ndarray):
    """Shrink (or widen) each trial's box to the cells within e^-_KEEP_LOG of the largest density, until stable."""
    n_z, n_eta = _ZOOM_GRID
    eta_range = [math.log(pb.priors.sd_log_scale) + e for e in _ETA_RANGE]
    z_box, eta_box = z_box.copy(), eta_box.copy()
    todo = np.arange(st.n_trials)  # a trial whose box is stable is left alone: its result does not depend on the
    for _ in range(_ZOOM_PASSES):  # other trials of its batch
        part = st.take(todo)
        z, hz = _cells(z_box[todo], n_z)
        eta, he = _cells(eta_box[todo], n_eta)
        log_f, _ = _log_density(part, pb, eta, np.broadcast_to(z[:, None, :], (todo.size, n_eta, n_z)))
        keep = log_f > log_f.max(axis=(1, 2), keepdims=True) - _KEEP_LOG
        stable = np.ones(todo.size, dtype=bool)
        rows = np.arange(todo.size)
        for box, nodes, h, kept, n, limits in ((z_box, z, hz, keep.any(axis=1), n_z, _Z_RANGE),
                                               (eta_box, eta, he, keep.any(axis=2), n_eta, eta_range)):
            first = kept.argmax(axis=1)
            last = n - 1 - kept[:, ::-1].argmax(axis=1)
            old = box[todo]
            width = old[:, 1] - old[:, 0]
            lo = np.where(first == 0, old[:, 0] - width, nodes[rows, first] - 1.5 * h)
            hi = np.where(last == n - 1, old[:, 1] + width, nodes[rows, last] + 1.5 * h)
            stable &= (first > 0) & (last < n - 1) & (hi - lo > 0.5 * width)
            box[todo] = np.clip(np.stack([lo, hi], axis=1), *limits)
        todo = todo[~stable]
        if todo.size == 0:
            break
    return z_box, eta_box


def _final(st: Day365Statistics, pb: _Problem, z_box: np.ndarray, eta_box: np.ndarray, n_z: int, n_eta: int):
    """The three quantities and the edge mass on the final grid, each row's z cells aligned on its beta(eta)."""
    hz = (z_box[:, 1] - z_box[:, 0]) / (n_z - 1)  # n_z cells of this width cover the box from any aligned start
    eta, _ = _cells(eta_box, n_eta)
    m, v, _ = _rows(st, pb, eta)
    s = np.exp(eta)
    if math.isfinite(pb.z_fraction):
        beta = (pb.log_threshold + pb.z_fraction * s - m) / np.sqrt(v)
        k = np.ceil((beta - z_box[:, :1]) / hz[:, None])
        aligned = (k >= 2) & (k <= n_z - 2)  # two cells each side for the end corrections
    else:
        beta, k = np.full_like(eta, -np.inf), np.zeros_like(eta)
        aligned = np.zeros(eta.shape, dtype=bool)
    k = np.where(aligned, k, 0).astype(np.intp)
    start = np.where(aligned, beta - k * hz[:, None], z_box[:, :1])
    z = start[:, :, None] + (np.arange(n_z) + 0.5) * hz[:, None, None]
    log_f, mu = _log_density(st, pb, eta, z)
    w = np.exp(log_f - log_f.max(axis=(1, 2), keepdims=True))
    total = w.sum(axis=(1, 2))
    above = (w * (z > beta[:, :, None])).sum(axis=(1, 2))
    r, j = np.arange(st.n_trials)[:, None], np.arange(n_eta)[None, :]

    def cell(offset):
        return w[r, j, np.clip(k + offset, 0, n_z - 1)]

    d1, d3 = cell(0) - cell(-1), cell(1) - cell(-2)  # f(b + h/2) - f(b - h/2), f(b + 3h/2) - f(b - 3h/2)
    # (integral over [beta, inf)) / h = sum - h f1 / 24 + 7 h^3 f3 / 5760, f1 and f3 the 1st and 3rd derivatives
    # at beta: h f1 = (27 d1 - d3) / 24 + O(h^5), h^3 f3 = d3 - 3 d1 + O(h^5)
    end = np.where(aligned, (27.0 * d1 - d3) / 576.0 - 7.0 * (d3 - 3.0 * d1) / 5760.0, 0.0).sum(axis=1)
    prob = np.clip((above - end) / total, 0.0, 1.0)
    w_median = w * np.exp(mu)
    median = w_median.sum(axis=(1, 2)) / total
    fraction = (w * ndtr((mu - pb.log_threshold) / s[:, :, None])).sum(axis=(1, 2)) / total

    def edge_share(a):
        outer = (a[:, 0, :].sum(axis=1) + a[:, -1, :].sum(axis=1) + a[:, 1:-1, 0].sum(axis=1)
                 + a[:, 1:-1, -1].sum(axis=1))
        return outer / a.sum(axis=(1, 2))

    return np.stack([prob, median, fraction, np.maximum(edge_share(w), edge_share(w_median))])


def _quadrature_batch(st: Day365Statistics, pb: _Problem, n_z: int, n_eta: int, index: np.ndarray) -> np.ndarray:
    log_sd_scale = math.log(pb.priors.sd_log_scale)
    z_box = np.tile([-12.0, 12.0], (st.n_trials, 1))
    eta_box = np.tile([log_sd_scale - 30.0, log_sd_scale + 3.0], (st.n_trials, 1))
    with np.errstate(all="ignore"):  # an improper posterior runs to the limits of the box; it is reported below
        z_box, eta_box = _zoom(st, pb, z_box, eta_box)
        out = _final(st, pb, z_box, eta_box, n_z, n_eta)
    eta_range = [math.log(pb.priors.sd_log_scale) + e for e in _ETA_RANGE]
    for _ in range(_WIDEN_TRIES):
        wide = ~(out[3] <= EDGE_MASS_TOL)  # NaN counts as failed
        if not wide.any():
            return out
        for box, limits in ((z_box, _Z_RANGE), (eta_box, eta_range)):
            quarter = 0.25 * (box[wide, 1] - box[wide, 0])
            box[wide, 0] = np.maximum(box[wide, 0] - quarter, limits[0])
            box[wide, 1] = np.minimum(box[wide, 1] + quarter, limits[1])
        with np.errstate(all="ignore"):  # a failing trial may overflow; it is reported below
            out[:, wide] = _final(st.take(wide), pb, z_box[wide], eta_box[wide], n_z, n_eta)
    bad = np.flatnonzero(~(out[3] <= EDGE_MASS_TOL))
    if bad.size:
        raise RuntimeError(f"trial {int(index[bad[0]])}: the quadrature box leaves {out[3, bad[0]]:.1e} of the "
                           f"posterior mass in its edge cells (tolerance {EDGE_MASS_TOL:.0e}); is the posterior "
                           "proper? (tied detected values and nothing censored make it improper in s)")
    return out
