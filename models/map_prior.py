r"""Meta-analytic-predictive (MAP) prior for a response rate from comparator studies (PyMC), with
non-exchangeability (EXNEX), definition shifts and differential discounting; one compiled model per structure.

Random-effects meta-analysis on the logit scale (Neuenschwander et al. 2010, Clin Trials 7:5; Schmidli et al.
2014, Biometrics 70:1023), parametrised non-centred so that NUTS copes with few studies::

    mu                 = m_mu + s_mu mu_std,          mu_std ~ Normal(0, 1)
    tau                = tau_scale tau_std,           tau_std ~ the tau prior family at scale 1 (see TAU_PRIORS)
    z_h                ~ Normal(0, 1)                                        h = 1..H comparator studies
    logit(theta_h)     = mu + delta_(c_h) + tau_(g_h) z_h                    (EX: exchangeable part)
    r_h                ~ Binomial(n_h, theta_h)
    theta_pred         = invlogit(mu + tau z_new),    z_new ~ Normal(0, 1)

``theta_pred`` (a Deterministic) is the rate in a new study exchangeable with the comparators, measured under
the reference end-point definition: its posterior is the MAP prior. Every prior enters through a scale or a shift
of a fixed standard distribution, so that the hyperparameters are data (see "Compile once" below).

Differential discounting (Neuenschwander, Roychoudhury, Schmidli 2016, Pharm Stat 15:59; RBesT's ``tau.strata``):
studies flagged in ``group`` get their own between-study sd ``tau_group`` (prior scale ``tau_scale_group``,
default twice ``tau_scale``), so that a less exchangeable group is discounted more; the new study is predicted
with the reference ``tau``.

Definition shifts (a bias model with an elicited prior): studies of an end-point-definition class c measure the
rate under a definition that differs from the reference (zimislecel's) one; on the logit scale

    delta_c = logit(rate under class c's definition) - logit(rate under the reference definition)
            ~ Normal(m_c, s_c^2)        (elicited: :class:`DefinitionShift`, non-centred as m_c + s_c e_c)

so mu is the mean logit rate under the reference definition and ``theta_pred`` is the comparator rate as it would
be measured under zimislecel's definition: the shift is applied before the comparison, not after. A negative m_c
says the class's definition gives lower rates (e.g. a comparator composite stricter than zimislecel's): the naive
comparison favours zimislecel and the shift corrects it upwards. A positive m_c (e.g. comparator insulin
independence counted from the last of up to three infusions) says the naive comparison favours the comparators.
With a single class the data cannot separate delta_c from mu: its elicited prior is carried into the MAP prior's
width, as it should be.

EXNEX (Neuenschwander, Wandel, Roychoudhury, Bailey 2016, Pharm Stat 15:123): each comparator study is
exchangeable (EX, the model above) with prior probability p_h, or non-exchangeable (NEX) with its own
weakly-informative prior logit(theta_h^NEX) = m_h + s_h u_h, u_h ~ Normal(0, 1) (default N(0, 2^2) on the logit
scale, about one observation's worth of information at a rate of 1/2). The indicator is marginalised in the
likelihood, so no discrete parameter is sampled::

    p(r_h | .) = p_h Binomial(r_h | n_h, theta_h^EX) + (1 - p_h) Binomial(r_h | n_h, theta_h^NEX)

(integrating z_h and u_h out gives exactly the EXNEX marginal of each study: the latent of the branch not taken
follows its prior). Only the EX part informs mu and tau. The posterior probability that study h is exchangeable
is reported (Rao-Blackwellised: the posterior mean of p_h B_EX / (p_h B_EX + (1 - p_h) B_NEX)).
The predictive for a new study: ``theta_pred`` is the rate of a new study that is exchangeable with the EX part,
i.e. the MAP prior after the non-exchangeable studies have been down-weighted. A new study that may itself be
non-exchangeable with probability 1 - p_new has the predictive p_new MAP + (1 - p_new) NEX prior: that is the
robust MAP prior, obtained with ``robust_weight = 1 - p_new`` (the robust component is RBesT's weakly-informative
Beta(1, 1) when ``robust_mean`` = 1/2, close to the NEX prior N(0, 2^2) on the logit scale).

:func:`map_prior` is the one-call chain of RBesT (``gMAP`` -> ``automixfit`` -> ``robustify`` -> ``ess``): fit,
check diagnostics, approximate the ``theta_pred`` draws by a beta mixture
(:func:`isletbayes.models.mixtures.fit_beta_mixture`), optionally robustify, and compute the three ESS (ELIR, the
default; moment; Morita). The posterior update for new data is then exact: ``result.mixture.posterior(r, n)``.

Compile once: the observed counts and every prior hyperparameter are ``pm.Data`` (shared variables), and the
parametrisation keeps every free variable's prior and initial value free of them. One model is built per
structure (number of studies, tau-prior family, whether a group has its own tau, EXNEX or not, number of
definition classes) and kept in-process (:func:`compiled_meta_analysis`); a later call with the same structure sets
the new data (``pm.set_data``) and samples without rebuilding. With nutpie the model is compiled once per install
(:mod:`isletbayes.models.compiled_models`, keyed by structure, not data; the data are swapped in with nutpie's
``compiled.with_data``), so every tau-prior scale, mu-prior sd and comparator data set of one structure shares
one compiled model. The same data and seed give the same draws whether the model was compiled for this call or
reused (tested).

Reference: RBesT's ankylosing-spondylitis example (Weber et al. 2021, J Stat Softw 100(19)) is reproduced in
tests/models/test_map_prior.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import arviz_stats as azs
import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from scipy import special, stats

from isletbayes.models.mixtures import (
    DEFAULT_ESS_METHOD,
    BetaMixture,
    MixtureFit,
    ess_all,
    ess_table,
    fit_beta_mixture,
)
from isletbayes.models.sampling import Diagnostics, SamplerSettings, check_diagnostics, fit
from isletbayes.models.validation import ModelInputError

# name -> description (every family is a scale family: tau = tau_scale * tau_std)
TAU_PRIORS: dict[str, str] = {
    "halfnormal": "HalfNormal(sigma=scale) (RBesT's recommended default, scale 1 for binary endpoints)",
    "halfcauchy": "HalfCauchy(beta=scale)",
    "halft": "HalfStudentT(nu=3, sigma=scale)",
    "lognormal": "LogNormal(mu=log(scale), sigma=1): median scale",
    "exponential": "Exponential(lam=1/scale): mean scale",
}
DEFAULT_NEX_MEAN = 0.0  # logit scale: a rate of 1/2
DEFAULT_NEX_SD = 2.0  # about one observation's information at a rate of 1/2 (1 / sqrt(1/2 * 1/2))


def _tau_std_rv(name: str, prior: str):
    """The tau prior family at scale 1 (HalfNormal(s) = s HalfNormal(1), LogNormal(log s, 1) = s LogNormal(0, 1),
    and so on for every family of TAU_PRIORS)."""
    if prior == "halfnormal":
        return pm.HalfNormal(name, sigma=1.0)
    if prior == "halfcauchy":
        return pm.HalfCauchy(name, beta=1.0)
    if prior == "halft":
        return pm.HalfStudentT(name, nu=3, sigma=1.0)
    if prior == "lognormal":
        return pm.LogNormal(name, mu=0.0, sigma=1.0)
    if prior == "exponential":
        return pm.Exponential(name, lam=1.0)
    raise ModelInputError(f"unknown tau prior {prior!r}; choose one of {sorted(TAU_PRIORS)}", parameter="tau_prior")


# --------------------------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExNex:
    """EXNEX specification: prior probability that each study is exchangeable, and each study's NEX prior.

    ``p_exchangeable``, ``nex_mean`` and ``nex_sd`` are one value for every study or one per study;
    ``nex_mean``/``nex_sd`` are on the logit scale (default N(0, 2^2): weakly informative, about one observation).
    """

    p_exchangeable: float | Sequence[float] = 0.5
    nex_mean: float | Sequence[float] = DEFAULT_NEX_MEAN
    nex_sd: float | Sequence[float] = DEFAULT_NEX_SD


@dataclass(frozen=True)
class DefinitionShift:
    """Elicited prior of one end-point-definition class's shift on the logit scale (see the module docstring).

    delta = logit(rate under this class's definition) - logit(rate under the reference definition)
    ~ Normal(mean, sd^2). ``mean`` < 0: this definition gives lower rates than the reference (a naive comparison
    favours the reference product, e.g. zimislecel); ``mean`` > 0: higher rates (it favours the comparators).
    """

    name: str
    mean: float
    sd: float
    rationale: str = ""

    @property
    def direction(self) -> str:
        if self.mean < 0:
            return "lower rates under this definition: a naive comparison favours the reference (zimislecel)"
        if self.mean > 0:
            return "higher rates under this definition: a naive comparison favours the comparators"
        return "no expected direction (centred at zero)"


def _per_study(name: str, value, h: int, lo: float, hi: float, open_lo: bool, open_hi: bool) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0:
        arr = np.full(h, float(arr))
    if arr.shape != (h,):
        raise ModelInputError(f"must be one value or one per study ({h}), got shape {arr.shape}", parameter=name)
    ok = np.isfinite(arr) & ((arr > lo) if open_lo else (arr >= lo)) & ((arr < hi) if open_hi else (arr <= hi))
    if not np.all(ok):
        raise ModelInputError(f"must lie in {'(' if open_lo else '['}{lo}, {hi}{')' if open_hi else ']'}, got {arr}",
                              parameter=name)
    return arr


@dataclass(frozen=True)
class MetaAnalysisInputs:
    """Validated inputs of the binary MAP meta-analysis: the structure key and the data of the shared model."""

    r: np.ndarray
    n: np.ndarray
    study_names: tuple[str, ...]
    group: np.ndarray | None
    mu_prior_mean: float
    mu_prior_sd: float
    tau_prior: str
    tau_scale: float
    tau_scale_group: float | None
    p_exchangeable: np.ndarray | None
    nex_mean: np.ndarray | None
    nex_sd: np.ndarray | None
    definition_class: tuple[str | None, ...] | None
    shifts: tuple[DefinitionShift, ...]

    @property
    def n_studies(self) -> int:
        return len(self.r)

    @property
    def structure(self) -> tuple:
        """What a compiled model depends on: (studies, tau family, own group tau, EXNEX, definition classes)."""
        return (self.n_studies, self.tau_prior, self.group is not None, self.p_exchangeable is not None,
                len(self.shifts))

    def design(self) -> np.ndarray:
        """(study, class) indicator matrix of the definition classes."""
        out = np.zeros((self.n_studies, len(self.shifts)))
        names = [s.name for s in self.shifts]
        for h, c in enumerate(self.definition_class or ()):
            if c is not None:
                out[h, names.index(c)] = 1.0
        return out

    def data(self) -> dict[str, np.ndarray]:
        """Values of the model's shared variables (``pm.Data``), by name."""
        d = {"r": self.r.astype(np.int64), "n": self.n.astype(np.int64),
             "mu_prior_mean": np.asarray(self.mu_prior_mean, dtype=float),
             "mu_prior_sd": np.asarray(self.mu_prior_sd, dtype=float),
             "tau_scale": np.asarray(self.tau_scale, dtype=float)}
        if self.group is not None:
            d["in_group"] = self.group.astype(float)
            d["tau_scale_group"] = np.asarray(self.tau_scale_group, dtype=float)
        if self.p_exchangeable is not None:
            d["p_exchangeable"] = self.p_exchangeable
            d["nex_mean"] = self.nex_mean
            d["nex_sd"] = self.nex_sd
        if self.shifts:
            d["definition_design"] = self.design()
            d["shift_mean"] = np.array([s.mean for s in self.shifts], dtype=float)
            d["shift_sd"] = np.array([s.sd for s in self.shifts], dtype=float)
        return d

    def as_dict(self) -> dict:
        return {
            "r": self.r.tolist(), "n": self.n.tolist(), "study_names": list(self.study_names),
            "group": None if self.group is None else self.group.tolist(),
            "mu_prior_mean": self.mu_prior_mean, "mu_prior_sd": self.mu_prior_sd,
            "tau_prior": self.tau_prior, "tau_prior_description": TAU_PRIORS[self.tau_prior],
            "tau_scale": self.tau_scale, "tau_scale_group": self.tau_scale_group,
            "exnex": None if self.p_exchangeable is None else {
                "p_exchangeable": self.p_exchangeable.tolist(), "nex_mean": self.nex_mean.tolist(),
                "nex_sd": self.nex_sd.tolist()},
            "definition_class": None if self.definition_class is None else list(self.definition_class),
            "definition_shifts": [{"name": s.name, "mean": s.mean, "sd": s.sd, "rationale": s.rationale,
                                   "direction": s.direction} for s in self.shifts],
        }


def meta_analysis_inputs(r, n, group=None, *, mu_prior_mean: float = 0.0, mu_prior_sd: float = 2.0,
                         tau_prior: str = "halfnormal", tau_scale: float = 1.0, tau_scale_group: float | None = None,
                         study_names: Sequence[str] | None = None, exnex: ExNex | None = None,
                         definition_class: Sequence[str | None] | None = None,
                         definition_shifts: Sequence[DefinitionShift] | Mapping[str, DefinitionShift] | None = None,
                         ) -> MetaAnalysisInputs:
    """Validate the inputs of the MAP meta-analysis (every error names its argument)."""
    r_arr, n_arr = np.asarray(r), np.asarray(n)
    if r_arr.ndim != 1 or r_arr.shape != n_arr.shape or r_arr.size == 0:
        raise ModelInputError("r and n must be 1-d arrays of the same non-zero length", parameter="r")
    if not (np.all(np.equal(np.mod(r_arr, 1), 0)) and np.all(np.equal(np.mod(n_arr, 1), 0))):
        raise ModelInputError("r and n must be integers", parameter="r")
    r_arr, n_arr = r_arr.astype(np.int64), n_arr.astype(np.int64)
    if np.any(n_arr < 1) or np.any(r_arr < 0) or np.any(r_arr > n_arr):
        raise ModelInputError("need 0 <= r <= n and n >= 1 for every study", parameter="r")
    h = len(r_arr)
    names = tuple(str(s) for s in study_names) if study_names is not None else tuple(
        f"study_{i + 1}" for i in range(h))
    if len(names) != h or len(set(names)) != h:
        raise ModelInputError("study_names must be unique, one per study", parameter="study_names")
    if tau_prior not in TAU_PRIORS:
        raise ModelInputError(f"unknown tau prior {tau_prior!r}; choose one of {sorted(TAU_PRIORS)}",
                              parameter="tau_prior")
    for name, value in (("mu_prior_sd", mu_prior_sd), ("tau_scale", tau_scale)):
        if not (np.isfinite(value) and value > 0):
            raise ModelInputError(f"must be > 0, got {value}", parameter=name)
    if not np.isfinite(mu_prior_mean):
        raise ModelInputError(f"must be finite, got {mu_prior_mean}", parameter="mu_prior_mean")
    group_arr = None
    if group is not None:
        group_arr = np.asarray(group, dtype=bool)
        if group_arr.shape != (h,):
            raise ModelInputError("group must have one flag per study", parameter="group")
        if not group_arr.any():
            group_arr = None
    scale_g = None
    if group_arr is not None:
        scale_g = 2.0 * tau_scale if tau_scale_group is None else float(tau_scale_group)
        if not (np.isfinite(scale_g) and scale_g > 0):
            raise ModelInputError(f"must be > 0, got {tau_scale_group}", parameter="tau_scale_group")
    p_ex = nex_mean = nex_sd = None
    if exnex is not None:
        p_ex = _per_study("exnex.p_exchangeable", exnex.p_exchangeable, h, 0.0, 1.0, True, True)
        nex_mean = _per_study("exnex.nex_mean", exnex.nex_mean, h, -np.inf, np.inf, True, True)
        nex_sd = _per_study("exnex.nex_sd", exnex.nex_sd, h, 0.0, np.inf, True, True)
    classes = None
    shifts: tuple[DefinitionShift, ...] = ()
    if definition_class is not None:
        classes = tuple(None if c is None or (isinstance(c, float) and np.isnan(c)) else str(c)
                        for c in definition_class)
        if len(classes) != h:
            raise ModelInputError(f"needs one class (or None) per study ({h})", parameter="definition_class")
        given = definition_shifts.values() if isinstance(definition_shifts, Mapping) else (definition_shifts or ())
        by_name = {}
        for s in given:
            if not isinstance(s, DefinitionShift):
                raise ModelInputError("each definition shift must be a DefinitionShift", parameter="definition_shifts")
            if s.name in by_name:
                raise ModelInputError(f"definition class {s.name!r} given twice", parameter="definition_shifts")
            if not (np.isfinite(s.mean) and np.isfinite(s.sd) and s.sd > 0):
                raise ModelInputError(f"class {s.name!r}: need a finite mean and sd > 0", parameter="definition_shifts")
            by_name[s.name] = s
        used = list(dict.fromkeys(c for c in classes if c is not None))
        missing = [c for c in used if c not in by_name]
        if missing:
            raise ModelInputError(f"no elicited shift prior for definition class(es) {missing}",
                                  parameter="definition_shifts")
        shifts = tuple(by_name[c] for c in used)
        if not shifts:
            classes = None
    elif definition_shifts:
        raise ModelInputError("definition shifts need definition_class (one class or None per study)",
                              parameter="definition_class")
    return MetaAnalysisInputs(r_arr, n_arr, names, group_arr, float(mu_prior_mean), float(mu_prior_sd), tau_prior,
                              float(tau_scale), scale_g, p_ex, nex_mean, nex_sd, classes, shifts)


# --------------------------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------------------------
def _build_model(inputs: MetaAnalysisInputs, study_names: Sequence[str], class_names: Sequence[str]) -> pm.Model:
    h, tau_prior, has_group, has_exnex, n_classes = inputs.structure
    data = inputs.data()
    coords = {"study": list(study_names)}
    if n_classes:
        coords["definition_class"] = list(class_names)
    with pm.Model(coords=coords) as model:
        r = pm.Data("r", data["r"], dims="study")
        n = pm.Data("n", data["n"], dims="study")
        mu_mean = pm.Data("mu_prior_mean", data["mu_prior_mean"])
        mu_sd = pm.Data("mu_prior_sd", data["mu_prior_sd"])
        tau_scale = pm.Data("tau_scale", data["tau_scale"])
        mu = pm.Deterministic("mu", mu_mean + mu_sd * pm.Normal("mu_std", 0.0, 1.0))
        tau = pm.Deterministic("tau", tau_scale * _tau_std_rv("tau_std", tau_prior))
        z = pm.Normal("z", 0.0, 1.0, dims="study")
        if has_group:
            in_group = pm.Data("in_group", data["in_group"], dims="study")
            scale_g = pm.Data("tau_scale_group", data["tau_scale_group"])
            tau_group = pm.Deterministic("tau_group", scale_g * _tau_std_rv("tau_group_std", tau_prior))
            tau_study = pt.switch(pt.gt(in_group, 0.5), tau_group, tau)
        else:
            tau_study = tau
        location = mu
        if n_classes:
            design = pm.Data("definition_design", data["definition_design"], dims=("study", "definition_class"))
            s_mean = pm.Data("shift_mean", data["shift_mean"], dims="definition_class")
            s_sd = pm.Data("shift_sd", data["shift_sd"], dims="definition_class")
            shift_std = pm.Normal("shift_std", 0.0, 1.0, dims="definition_class")
            shift = pm.Deterministic("definition_shift", s_mean + s_sd * shift_std, dims="definition_class")
            location = mu + pt.dot(design, shift)
        logit_theta = pm.Deterministic("logit_theta", location + tau_study * z, dims="study")
        pm.Deterministic("theta", pm.math.invlogit(logit_theta), dims="study")
        if has_exnex:
            p_ex = pm.Data("p_exchangeable", data["p_exchangeable"], dims="study")
            nex_mean = pm.Data("nex_mean", data["nex_mean"], dims="study")
            nex_sd = pm.Data("nex_sd", data["nex_sd"], dims="study")
            z_nex = pm.Normal("z_nex", 0.0, 1.0, dims="study")
            logit_nex = pm.Deterministic("logit_theta_nex", nex_mean + nex_sd * z_nex, dims="study")
            pm.Mixture("r_obs", w=pt.stack([p_ex, 1.0 - p_ex], axis=-1),
                       comp_dists=[pm.Binomial.dist(n=n, logit_p=logit_theta),
                                   pm.Binomial.dist(n=n, logit_p=logit_nex)],
                       observed=r, dims="study")
        else:
            pm.Binomial("r_obs", n=n, logit_p=logit_theta, observed=r, dims="study")
        z_new = pm.Normal("z_new", 0.0, 1.0)
        pm.Deterministic("theta_pred", pm.math.invlogit(mu + tau * z_new))
    return model


def meta_analysis_model(r, n, group=None, mu_prior_sd: float = 2.0, tau_prior: str = "halfnormal",
                        tau_scale: float = 1.0, tau_scale_group: float | None = None,
                        study_names: Sequence[str] | None = None, *, mu_prior_mean: float = 0.0,
                        exnex: ExNex | None = None, definition_class: Sequence[str | None] | None = None,
                        definition_shifts: Sequence[DefinitionShift] | Mapping[str, DefinitionShift] | None = None,
                        ) -> pm.Model:
    """The random-effects logit meta-analysis with the predictive rate ``theta_pred`` (see the module docstring).

    A fresh, uncompiled model labelled with the study names; :func:`map_prior` samples the shared compiled one.
    """
    inputs = meta_analysis_inputs(r, n, group, mu_prior_mean=mu_prior_mean, mu_prior_sd=mu_prior_sd,
                                  tau_prior=tau_prior, tau_scale=tau_scale, tau_scale_group=tau_scale_group,
                                  study_names=study_names, exnex=exnex, definition_class=definition_class,
                                  definition_shifts=definition_shifts)
    return _build_model(inputs, inputs.study_names, [s.name for s in inputs.shifts])


# --------------------------------------------------------------------------------------------------------------
# compile once, refit with new data
# --------------------------------------------------------------------------------------------------------------
class CompiledMetaAnalysis:
    """The MAP model of one structure, built once and refitted with new data and hyperparameters.

    Built with placeholder labels (study_1..H, class_1..C); :meth:`sample` sets the shared variables of the one
    model with ``pm.set_data`` and samples it with :func:`isletbayes.models.sampling.fit`, which compiles a
    nutpie model once per install (:mod:`isletbayes.models.compiled_models`: keyed by the model's structure, not
    its data, kept in memory and on disk) and swaps the data in (``compiled.with_data``); the draws are then
    relabelled with the real study and class names. Not thread-safe: one fit at a time per process (separate
    processes each hold their own models).
    """

    def __init__(self, inputs: MetaAnalysisInputs):
        self.structure = inputs.structure
        h, _, _, _, n_classes = self.structure
        self.model = _build_model(inputs, [f"study_{i + 1}" for i in range(h)],
                                  [f"class_{j + 1}" for j in range(n_classes)])

    def sample(self, inputs: MetaAnalysisInputs, settings: SamplerSettings):
        if inputs.structure != self.structure:
            raise ValueError(f"inputs of structure {inputs.structure} given to a model of {self.structure}")
        pm.set_data(inputs.data(), model=self.model)
        idata = fit(self.model, settings)
        return _relabel(idata, {"study": list(inputs.study_names),
                                "definition_class": [s.name for s in inputs.shifts]})


def _relabel(idata, coords: dict[str, list[str]]):
    for group in list(idata.children):
        ds = idata[group].to_dataset()
        new = {dim: labels for dim, labels in coords.items() if dim in ds.dims}
        if new:
            idata[group] = ds.assign_coords(new)
    return idata


_COMPILED: dict[tuple, CompiledMetaAnalysis] = {}


def compiled_meta_analysis(inputs: MetaAnalysisInputs) -> CompiledMetaAnalysis:
    """The in-process compiled model for the inputs' structure (built at the first request)."""
    model = _COMPILED.get(inputs.structure)
    if model is None:
        model = _COMPILED[inputs.structure] = CompiledMetaAnalysis(inputs)
    return model


def clear_compiled_models() -> None:
    """Forget every compiled MAP model (the next call compiles afresh)."""
    _COMPILED.clear()


# --------------------------------------------------------------------------------------------------------------
# result
# --------------------------------------------------------------------------------------------------------------
SUMMARY_COLUMNS = ("mean", "sd", "q2.5", "q25", "median", "q75", "q97.5", "mcse_mean", "mcse_sd", "mcse_q97.5",
                   "ess_bulk")


@dataclass
class MAPPrior:
    """Result of :func:`map_prior`: the fit, its diagnostics and the mixture approximations of the MAP prior.

    ``ess``: ESS of the mixture (and robust mixture) by every method, ELIR the default (see
    :func:`isletbayes.models.mixtures.ess_all` for why the methods differ for mixtures); as a table:
    :meth:`ess_table`. ``exchangeability`` (EXNEX only): each study's prior and posterior probability of being
    exchangeable. ``definition_shifts``: each class's elicited prior, its direction and its posterior.
    """

    idata: Any
    diagnostics: Diagnostics
    fit: MixtureFit
    mixture: BetaMixture
    robust_mixture: BetaMixture | None
    ess: dict[str, dict[str, float]]
    tau_summary: dict[str, float]
    theta_pred_summary: dict[str, float]
    inputs: dict[str, Any] = field(default_factory=dict)
    exchangeability: pd.DataFrame | None = None
    definition_shifts: pd.DataFrame | None = None

    def summary(self) -> pd.DataFrame:
        """Posterior summaries (with Monte Carlo errors) of mu, tau, tau_group, each definition shift and the
        MAP predictive theta_pred; one row per quantity."""
        post = _posterior(self.idata)
        rows = {}
        for var in ("mu", "tau", "tau_group"):
            if var in post:
                rows[var] = _summary(self.idata, var)
        if "definition_shift" in post:
            for label in post["definition_shift"].coords["definition_class"].values:
                rows[f"definition_shift[{label}]"] = _summary_draws(
                    post["definition_shift"].sel(definition_class=label))
        rows["theta_pred"] = _summary(self.idata, "theta_pred")
        table = pd.DataFrame(rows).T.reindex(columns=list(SUMMARY_COLUMNS))
        table.index.name = "quantity"
        return table

    def ess_table(self) -> pd.DataFrame:
        """ESS of the MAP mixture (and the robust one) by every method; ``attrs['default_method']`` = 'elir'."""
        priors = {"mixture": self.mixture}
        if self.robust_mixture is not None:
            priors["robust_mixture"] = self.robust_mixture
        table = ess_table(priors)
        table.index.name = "mixture"
        return table

    def as_dict(self) -> dict:
        """JSON-ready summary (without the draws)."""
        return {
            "inputs": self.inputs,
            "diagnostics": self.diagnostics.as_dict(),
            "mixture": self.mixture.to_dict(),
            "robust_mixture": None if self.robust_mixture is None else self.robust_mixture.to_dict(),
            "mixture_fit": self.fit.as_dict(),
            "ess": self.ess,
            "ess_default_method": DEFAULT_ESS_METHOD,
            "tau": self.tau_summary,
            "theta_pred": self.theta_pred_summary,
            "exchangeability": None if self.exchangeability is None
            else self.exchangeability.reset_index().to_dict(orient="records"),
            "definition_shifts": None if self.definition_shifts is None
            else self.definition_shifts.reset_index().to_dict(orient="records"),
        }


def _posterior(idata):
    post = idata["posterior"]
    return post.to_dataset() if hasattr(post, "to_dataset") else post


def _summary_draws(da) -> dict[str, float]:
    """Summary of one scalar quantity's draws (a (chain, draw) DataArray), with its Monte Carlo errors."""
    ds = da.rename("x").to_dataset()
    flat = np.asarray(da.values, dtype=float).ravel()
    q = np.quantile(flat, [0.025, 0.25, 0.5, 0.75, 0.975])
    mcse_mean = float(np.asarray(azs.mcse(ds, method="mean")["x"].values))
    mcse_sd = float(np.asarray(azs.mcse(ds, method="sd")["x"].values))
    mcse_q975 = float(np.asarray(azs.mcse(ds, method="quantile", prob=0.975)["x"].values))
    ess_bulk = float(np.asarray(azs.ess(ds, method="bulk")["x"].values))
    return {"mean": float(flat.mean()), "sd": float(flat.std(ddof=1)), "q2.5": float(q[0]), "q25": float(q[1]),
            "median": float(q[2]), "q75": float(q[3]), "q97.5": float(q[4]), "mcse_mean": mcse_mean,
            "mcse_sd": mcse_sd, "mcse_q97.5": mcse_q975, "ess_bulk": ess_bulk}


def _summary(idata, var: str) -> dict[str, float]:
    return _summary_draws(_posterior(idata)[var])


def _exchangeability(post, inputs: MetaAnalysisInputs) -> pd.DataFrame:
    """Each study's posterior probability of being exchangeable (Rao-Blackwellised over the draws)."""
    l_ex = np.asarray(post["logit_theta"].transpose("chain", "draw", "study").values, dtype=float)
    l_nex = np.asarray(post["logit_theta_nex"].transpose("chain", "draw", "study").values, dtype=float)
    r, n, p = inputs.r, inputs.n, inputs.p_exchangeable
    log_ex = np.log(p) + stats.binom.logpmf(r, n, special.expit(l_ex))
    log_nex = np.log1p(-p) + stats.binom.logpmf(r, n, special.expit(l_nex))
    prob = np.exp(log_ex - np.logaddexp(log_ex, log_nex)).reshape(-1, inputs.n_studies)
    table = pd.DataFrame({"r": r, "n": n, "prior_p_exchangeable": p,
                          "posterior_p_exchangeable": prob.mean(axis=0),
                          "mcse": prob.std(axis=0, ddof=1) / np.sqrt(prob.shape[0])},
                         index=pd.Index(list(inputs.study_names), name="study"))
    return table


def _shift_table(idata, inputs: MetaAnalysisInputs) -> pd.DataFrame:
    post = _posterior(idata)
    rows = []
    for s in inputs.shifts:
        draws = post["definition_shift"].sel(definition_class=s.name)
        studies = [name for name, c in zip(inputs.study_names, inputs.definition_class) if c == s.name]
        summ = _summary_draws(draws)
        rows.append({"definition_class": s.name, "studies": "; ".join(studies), "prior_mean": s.mean,
                     "prior_sd": s.sd, "direction": s.direction, "rationale": s.rationale,
                     "posterior_mean": summ["mean"], "posterior_sd": summ["sd"]})
    return pd.DataFrame(rows).set_index("definition_class")


def map_prior(r, n, group=None, *, mu_prior_sd: float = 2.0, tau_prior: str = "halfnormal", tau_scale: float = 1.0,
              tau_scale_group: float | None = None, study_names: Sequence[str] | None = None,
              settings: SamplerSettings = SamplerSettings(target_accept=0.95), mixture_components: int = 4,
              criterion: str = "bic", robust_weight: float | None = None, robust_mean: float = 0.5,
              mu_prior_mean: float = 0.0, exnex: ExNex | None = None, thin: int = 1,
              definition_class: Sequence[str | None] | None = None,
              definition_shifts: Sequence[DefinitionShift] | Mapping[str, DefinitionShift] | None = None,
              ) -> MAPPrior:
    """Meta-analysis -> beta-mixture MAP prior -> optional robustification -> ESS, in one call.

    ``mixture_components`` is the largest number of components tried; ``criterion`` picks among them (see
    :func:`fit_beta_mixture`). The mixture fit is seeded from ``settings.seed`` so the whole chain is reproducible.
    The model is compiled once per structure and reused (module docstring). ``exnex``: each study exchangeable
    with probability ``exnex.p_exchangeable``; ``definition_class`` (one class name or None per study) with
    ``definition_shifts`` (an elicited :class:`DefinitionShift` per class): the shift model; ``group``: studies
    with their own between-study sd. ``thin``: the mixture is fitted to every thin-th draw of each chain (the
    diagnostics use them all). Diagnostics failures are kept in ``result.diagnostics`` (callers must report
    them), never raised.
    """
    inputs = meta_analysis_inputs(r, n, group, mu_prior_mean=mu_prior_mean, mu_prior_sd=mu_prior_sd,
                                  tau_prior=tau_prior, tau_scale=tau_scale, tau_scale_group=tau_scale_group,
                                  study_names=study_names, exnex=exnex, definition_class=definition_class,
                                  definition_shifts=definition_shifts)
    if robust_weight is not None and not 0 <= robust_weight <= 1:
        raise ModelInputError(f"must lie in [0, 1], got {robust_weight}", parameter="robust_weight")
    idata = compiled_meta_analysis(inputs).sample(inputs, settings)
    post = _posterior(idata)
    var_names = [v for v in ("mu", "tau", "tau_group", "z", "z_nex", "shift_std", "z_new") if v in post]
    diagnostics = check_diagnostics(idata, var_names=var_names)
    if int(thin) != thin or thin < 1:
        raise ModelInputError(f"must be an integer >= 1, got {thin!r}", parameter="thin")
    # the mixture is fitted to every thin-th draw of each chain (RBesT keeps 1 in 4 of 4 x 4000 iterations)
    theta_pred = np.asarray(post["theta_pred"].values, dtype=float)[:, :: int(thin)].ravel()
    mix_fit = fit_beta_mixture(theta_pred, max_components=mixture_components, criterion=criterion,
                               seed=settings.seed)
    mixture = mix_fit.mixture
    robust = None if robust_weight is None else mixture.robustify(robust_weight, mean=robust_mean)
    ess = {"mixture": ess_all(mixture)}
    if robust is not None:
        ess["robust_mixture"] = ess_all(robust)
    record = inputs.as_dict()
    if study_names is None:
        record["study_names"] = None
    record.update({"mixture_components": mixture_components, "criterion": criterion,
                   "robust_weight": robust_weight, "robust_mean": robust_mean,
                   "sampler_settings": settings.as_dict()})
    return MAPPrior(idata=idata, diagnostics=diagnostics, fit=mix_fit, mixture=mixture, robust_mixture=robust,
                    ess=ess, tau_summary=_summary(idata, "tau"), theta_pred_summary=_summary(idata, "theta_pred"),
                    inputs=record,
                    exchangeability=None if inputs.p_exchangeable is None else _exchangeability(post, inputs),
                    definition_shifts=_shift_table(idata, inputs) if inputs.shifts else None)
