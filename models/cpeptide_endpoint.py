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

API
---
``Day365Priors``; ``Day365Data``; ``day365_data_from_long(df, source=..., day=365.0) -> Day365Data``;
``day365_arrays(data) -> dict`` (the ``pm.Data`` values, for ``compiled.with_data(**arrays)``);
``build_day365_model(data, priors) -> pm.Model``;
``fraction_above(log_median, sd_log, threshold_pmol_l) -> ndarray`` (posterior draws of :math:`\pi(c_0)`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from scipy.special import ndtr

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
