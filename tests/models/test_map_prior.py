"""MAP prior: RBesT's ankylosing-spondylitis example reproduced within Monte Carlo error; EXNEX and definition
shifts against brute-force quadrature; one compiled model reused with identical results; model structure."""

from __future__ import annotations

import arviz as az
import numpy as np
import pymc as pm
import pytest
import xarray as xr
from scipy import special, stats

from isletbayes.models import compiled_models as cm
from isletbayes.models.map_prior import (
    TAU_PRIORS,
    DefinitionShift,
    ExNex,
    clear_compiled_models,
    compiled_meta_analysis,
    map_prior,
    meta_analysis_inputs,
    meta_analysis_model,
)
from isletbayes.models.sampling import SamplerSettings
from isletbayes.models.validation import ModelInputError

# RBesT's AS data set (placebo arms of 8 trials), gMAP with beta.prior = 2, HalfNormal(0, 1) on tau
AS_R = [23, 12, 19, 9, 39, 6, 9, 10]
AS_N = [107, 44, 51, 39, 139, 20, 78, 35]
# RBesT's printed results (introduction vignette); RBesT's own runs vary (tau mean 0.376-0.386, MAP sd 0.084-0.088)
RBEST_TAU_MEAN, RBEST_TAU_Q975 = 0.377, 0.893
RBEST_MAP_MEAN, RBEST_MAP_SD = 0.258, 0.0842
# RBesT's number is itself an MCMC estimate, of about our precision: compare with sqrt(2) x our MCSE, at 4 sigma
Z_MAX = 4.0


@pytest.fixture(scope="module")
def as_map(seed):
    # the default sampler (nutpie): PyMC's own NUTS at target_accept 0.95 leaves an isolated divergent transition
    # on this data at about one seed in three to six, with the parametrisation of the model before and after it
    # became compile-once alike (measured at six seeds each); nutpie had none at any of six seeds
    settings = SamplerSettings(draws=2000, tune=1000, chains=4, target_accept=0.95, seed=seed(34563))
    return map_prior(AS_R, AS_N, settings=settings, robust_weight=0.2, robust_mean=0.5)


def _z(estimate: float, reference: float, mcse: float) -> float:
    return abs(estimate - reference) / (np.sqrt(2.0) * mcse)


def test_as_map_fit_passes_diagnostics(as_map):
    assert as_map.diagnostics.ok, as_map.diagnostics.failures
    assert as_map.diagnostics.divergences == 0


def test_as_tau_matches_rbest_within_monte_carlo_error(as_map):
    tau = as_map.tau_summary
    assert _z(tau["mean"], RBEST_TAU_MEAN, tau["mcse_mean"]) < Z_MAX, tau
    assert _z(tau["q97.5"], RBEST_TAU_Q975, tau["mcse_q97.5"]) < Z_MAX, tau


def test_as_map_prior_matches_rbest_within_monte_carlo_error(as_map):
    pred = as_map.theta_pred_summary
    # RBesT prints 3-4 significant digits: add half a unit of the last printed digit to the allowance
    assert abs(pred["mean"] - RBEST_MAP_MEAN) < Z_MAX * np.sqrt(2) * pred["mcse_mean"] + 0.0005, pred
    assert abs(pred["sd"] - RBEST_MAP_SD) < Z_MAX * np.sqrt(2) * pred["mcse_sd"] + 0.00005, pred


def test_as_mixture_approximates_the_draws(as_map):
    fit = as_map.fit
    assert fit.ks_distance < 0.02 and fit.max_abs_quantile_error < 0.01
    draws = np.asarray(as_map.idata["posterior"]["theta_pred"].values).ravel()
    assert abs(as_map.mixture.mean() - draws.mean()) < 4 * as_map.theta_pred_summary["mcse_mean"]
    # every parameter > 1, so the ELIR ESS is defined; RBesT's documented ordering of the three ESS
    assert np.all(as_map.mixture.a > 1) and np.all(as_map.mixture.b > 1)
    ess = as_map.ess["mixture"]
    assert ess["moment"] < ess["elir"] < ess["morita"]
    # robustification lowers the ESS; weights scaled by 0.8
    assert as_map.ess["robust_mixture"]["elir"] < ess["elir"]
    assert np.allclose(as_map.robust_mixture.weights[:-1], 0.8 * as_map.mixture.weights)


def test_as_posterior_update_is_the_exact_conjugate_one(as_map):
    post = as_map.robust_mixture.posterior(1, 6)
    assert post.mean() < as_map.robust_mixture.mean()
    assert np.allclose(post.a, as_map.robust_mixture.a + 1) and np.allclose(post.b, as_map.robust_mixture.b + 5)


def test_result_as_dict_and_tables_are_complete(as_map):
    d = as_map.as_dict()
    assert d["inputs"]["r"] == AS_R and d["inputs"]["tau_prior"] == "halfnormal"
    assert set(d["ess"]["mixture"]) == {"elir", "moment", "morita"} and d["ess_default_method"] == "elir"
    assert d["diagnostics"]["ok"] is True and d["exchangeability"] is None
    summary = as_map.summary()
    assert list(summary.index) == ["mu", "tau", "theta_pred"]
    assert summary.loc["tau", "mean"] == pytest.approx(as_map.tau_summary["mean"])
    assert summary.loc["theta_pred", "sd"] == pytest.approx(as_map.theta_pred_summary["sd"])
    table = as_map.ess_table()
    assert list(table.index) == ["mixture", "robust_mixture"] and list(table.columns) == ["elir", "moment", "morita"]
    assert table.attrs["default_method"] == "elir"
    assert table.loc["mixture", "elir"] == pytest.approx(as_map.ess["mixture"]["elir"])
    # the draws carry the real study labels although the compiled model is shared by every 8-study fit
    assert list(as_map.idata["posterior"]["theta"].coords["study"].values) == [f"study_{i}" for i in range(1, 9)]


# --- compile once ----------------------------------------------------------------------------------------------
def test_one_compiled_model_is_reused_with_identical_results(seed, monkeypatch):
    settings = SamplerSettings(draws=300, tune=300, chains=2, target_accept=0.95, seed=seed(711))
    a = dict(r=[16, 20], n=[36, 30], tau_scale=1.0, mu_prior_sd=2.0, study_names=["Shapiro 2006", "Lantidra"])
    b = dict(r=[19, 42], n=[30, 48], tau_scale=0.25, mu_prior_sd=1.5, study_names=["x", "y"])
    monkeypatch.setenv(cm.CACHE_ENV, "off")  # compiled models in memory only: each forgotten one is compiled anew

    def forget_everything():
        clear_compiled_models()
        cm.default_cache().clear_memory()

    forget_everything()
    fresh = map_prior(**a, settings=settings)  # compiled for a
    assert cm.default_cache().last.source == "compiled"
    forget_everything()
    map_prior(**b, settings=settings)  # compiled for b (other data and hyperparameters, same structure) ...
    assert cm.default_cache().last.source == "compiled"
    reused = map_prior(**a, settings=settings)  # ... and reused for a, without compiling
    assert cm.default_cache().last.source == "memory"
    for var in ("mu", "tau", "z", "theta_pred"):
        assert np.array_equal(fresh.idata["posterior"][var].values, reused.idata["posterior"][var].values), var
    assert fresh.mixture.allclose(reused.mixture, rtol=0)
    assert list(reused.idata["posterior"]["theta"].coords["study"].values) == a["study_names"]
    # PyMC's sampler: the shared model's data are set with pm.set_data, with the same guarantee
    pymc_settings = SamplerSettings(draws=100, tune=100, chains=2, target_accept=0.95, nuts_sampler="pymc",
                                    seed=seed(712))
    first = map_prior(**a, settings=pymc_settings)
    map_prior(**b, settings=pymc_settings)
    again = map_prior(**a, settings=pymc_settings)
    assert np.array_equal(first.idata["posterior"]["theta_pred"].values, again.idata["posterior"]["theta_pred"].values)
    # a HalfNormal scale of 0.25 is data, not structure; a HalfCauchy prior is another structure
    assert meta_analysis_inputs([1, 2], [5, 5], tau_scale=0.25).structure == meta_analysis_inputs(
        [1, 2], [5, 5]).structure
    assert meta_analysis_inputs([1, 2], [5, 5], tau_prior="halfcauchy").structure != meta_analysis_inputs(
        [1, 2], [5, 5]).structure
    model = compiled_meta_analysis(meta_analysis_inputs([16, 20], [36, 30])).model
    assert cm.model_structure_key(model) == cm.model_structure_key(
        compiled_meta_analysis(meta_analysis_inputs([3, 4], [9, 9], tau_scale=0.5, mu_prior_sd=1.0)).model)


# --- EXNEX and definition shifts against brute-force quadrature ------------------------------------------------
EX_R = np.array([16, 20, 5])
EX_N = np.array([36, 30, 30])
EX_P = 0.7
SHIFT = DefinitionShift("last_infusion", mean=0.4, sd=0.3, rationale="insulin independence counted from the last "
                        "of up to three infusions")
EX_CLASSES = ["last_infusion", "last_infusion", None]


def _brute_force_exnex():
    """Posterior expectations of the EXNEX + shift model by quadrature over (mu, delta, tau) and each study's
    latent effect, with the indicators summed out explicitly:

        p(mu, delta, tau | r) ∝ N(mu | 0, 2^2) N(delta | 0.4, 0.3^2) HalfNormal(tau | 1)
                                 prod_h [p I_h(mu + delta c_h, tau) + (1 - p) C_h],
        I_h(l, tau) = int Bin(r_h | n_h, expit(l + tau z)) phi(z) dz,  C_h = the same under the NEX N(0, 2^2).

    mu and delta on one uniform grid of step 0.02 (so mu + delta falls on it), tau by Gauss-Legendre on
    [0, 6], z by the trapezoidal rule on [-8, 8] (spectrally accurate for these smooth integrands)."""
    step = 0.02
    mu = np.arange(-200, 201) * step  # [-4, 4]
    k = np.arange(round((SHIFT.mean - 8 * SHIFT.sd) / step), round((SHIFT.mean + 8 * SHIFT.sd) / step) + 1)
    delta = k * step
    loc = np.arange(-200 + k[0], 201 + k[-1]) * step  # every mu + delta
    x, w = np.polynomial.legendre.leggauss(20)
    edges = np.linspace(0.0, 6.0, 5)
    tau = ((edges[:-1, None] + edges[1:, None]) / 2 + np.diff(edges)[:, None] / 2 * x).ravel()
    w_tau = (np.diff(edges)[:, None] / 2 * w).ravel()
    z = np.linspace(-8, 8, 321)
    w_z = np.full(z.size, z[1] - z[0]) * stats.norm.pdf(z)
    w_z[[0, -1]] /= 2

    def integral(f):  # f(l + tau z) integrated over z: shape (loc, tau)
        return np.tensordot(f(loc[:, None, None] + tau[None, :, None] * z), w_z, axes=([2], [0]))

    like = [integral(lambda t, h=h: stats.binom.pmf(EX_R[h], EX_N[h], special.expit(t))) for h in range(3)]
    nex = [np.sum(w_z * stats.binom.pmf(EX_R[h], EX_N[h], special.expit(2.0 * z))) for h in range(3)]
    pred = integral(special.expit)
    i_mu = np.arange(mu.size)[:, None] + (k - k[0])[None, :]  # index of mu + delta in loc: (mu, delta)
    i_plain = np.arange(mu.size) - k[0]  # index of mu + 0 in loc
    prior = (stats.norm.pdf(mu, 0, 2)[:, None, None]
             * stats.norm.pdf(delta, SHIFT.mean, SHIFT.sd)[None, :, None]
             * (stats.halfnorm.pdf(tau) * w_tau)[None, None, :])
    ex_terms = []
    post = prior.copy()
    for h in range(3):
        ex = like[h][i_mu] if EX_CLASSES[h] else np.broadcast_to(like[h][i_plain][:, None, :], prior.shape)
        ex_terms.append(EX_P * ex)
        post = post * (EX_P * ex + (1 - EX_P) * nex[h])
    post /= post.sum()
    mu3 = mu[:, None, None]
    out = {"mu": np.sum(post * mu3), "tau": np.sum(post * tau[None, None, :]),
           "definition_shift": np.sum(post * delta[None, :, None]),
           "theta_pred": np.sum(post * np.broadcast_to(pred[i_plain][:, None, :], post.shape))}
    for h in range(3):
        out[f"p_ex_{h}"] = np.sum(post * ex_terms[h] / (ex_terms[h] + (1 - EX_P) * nex[h]))
    return out


def _mcse_mean(values: np.ndarray) -> float:
    ds = xr.Dataset({"x": (("chain", "draw"), values)})
    return float(az.mcse(ds, method="mean")["x"].values)


# 4 x 2000 draws: each study's effect switches between its exchangeable and non-exchangeable roles, and one chain
# can linger for a few hundred draws at large tau; at 4 x 1000 draws 1 of 42 seeds failed (R-hat 1.024, bulk ESS
# 256), at 4 x 2000 none of 100 (max R-hat 1.006, min bulk ESS 692: tests/seed_sweeps.py map_prior_exnex, kept in
# tests/seed_sweeps.jsonl)
EXNEX_DRAWS = 2000


def exnex_map_prior(seed: int, draws: int = EXNEX_DRAWS):
    """The EXNEX MAP prior with a definition shift of the tests below (also run by tests/seed_sweeps.py)."""
    settings = SamplerSettings(draws=draws, tune=1000, chains=4, target_accept=0.95, seed=seed)
    return map_prior(EX_R, EX_N, settings=settings, exnex=ExNex(p_exchangeable=EX_P),
                     definition_class=EX_CLASSES, definition_shifts=[SHIFT],
                     study_names=["Shapiro 2006", "Lantidra", "outlier"])


@pytest.fixture(scope="module")
def exnex_fit(seed):
    return exnex_map_prior(seed(2016))


def test_exnex_with_a_definition_shift_matches_brute_force_quadrature(exnex_fit):
    fit = exnex_fit
    assert fit.diagnostics.ok, fit.diagnostics.failures
    exact = _brute_force_exnex()
    post = fit.idata["posterior"]
    for var in ("mu", "tau", "theta_pred"):
        draws = np.asarray(post[var].values, dtype=float)
        assert abs(draws.mean() - exact[var]) < 4 * _mcse_mean(draws), (var, draws.mean(), exact[var])
    shift = np.asarray(post["definition_shift"].sel(definition_class="last_infusion").values)
    assert abs(shift.mean() - exact["definition_shift"]) < 4 * _mcse_mean(shift)
    # each study's posterior probability of exchangeability (Rao-Blackwellised per draw)
    l_ex = np.asarray(post["logit_theta"].transpose("chain", "draw", "study").values)
    l_nex = np.asarray(post["logit_theta_nex"].transpose("chain", "draw", "study").values)
    table = fit.exchangeability
    for h in range(3):
        a = EX_P * stats.binom.pmf(EX_R[h], EX_N[h], special.expit(l_ex[..., h]))
        b = (1 - EX_P) * stats.binom.pmf(EX_R[h], EX_N[h], special.expit(l_nex[..., h]))
        per_draw = a / (a + b)
        assert table["posterior_p_exchangeable"].iloc[h] == pytest.approx(per_draw.mean(), rel=1e-9)
        assert abs(per_draw.mean() - exact[f"p_ex_{h}"]) < 4 * _mcse_mean(per_draw), h
    assert np.all(table["prior_p_exchangeable"] == EX_P)


def test_definition_shift_table_states_the_direction(exnex_fit):
    table = exnex_fit.definition_shifts
    row = table.loc["last_infusion"]
    assert row["studies"] == "Shapiro 2006; Lantidra" and row["prior_mean"] == 0.4
    assert "favours the comparators" in row["direction"]
    assert "favours the reference" in DefinitionShift("strict_composite", -0.3, 0.2).direction
    assert "definition_shift[last_infusion]" in exnex_fit.summary().index
    d = exnex_fit.as_dict()
    assert d["inputs"]["exnex"]["p_exchangeable"] == [EX_P] * 3
    assert d["definition_shifts"][0]["definition_class"] == "last_infusion"


def test_differential_discounting_with_exnex_and_shift_samples_cleanly(seed):
    # all three extensions together: the less exchangeable group gets its own, wider tau
    settings = SamplerSettings(draws=2000, tune=1000, chains=4, target_accept=0.95, seed=seed(59))
    fit = map_prior([16, 20, 19, 42], [36, 30, 30, 48], group=[False, False, True, True], tau_scale=0.5,
                    exnex=ExNex(p_exchangeable=[0.9, 0.9, 0.6, 0.6]),
                    definition_class=["ii_last_infusion", "ii_last_infusion", None, None],
                    definition_shifts={"ii_last_infusion": DefinitionShift("ii_last_infusion", 0.3, 0.3)},
                    settings=settings)
    assert fit.diagnostics.ok, fit.diagnostics.failures
    assert "tau_group" in fit.summary().index
    assert fit.inputs["tau_scale_group"] == 1.0  # twice tau_scale by default


# --- structure (no sampling) -----------------------------------------------------------------------------------
@pytest.mark.parametrize("tau_prior", sorted(TAU_PRIORS))
def test_every_tau_prior_builds_a_finite_model(tau_prior):
    model = meta_analysis_model(AS_R, AS_N, tau_prior=tau_prior, tau_scale=0.5)
    logp = model.compile_logp()(model.initial_point())
    assert np.isfinite(logp)
    assert {"mu_std", "tau_std", "z", "z_new"} <= {v.name for v in model.free_RVs}
    assert {"mu", "tau", "theta_pred"} <= {v.name for v in model.deterministics}
    # tau = tau_scale x the family at scale 1: its prior is the family at tau_scale
    draws = pm.draw(model["tau"], draws=20000, random_seed=3)
    reference = {"halfnormal": stats.halfnorm(scale=0.5), "halfcauchy": stats.halfcauchy(scale=0.5),
                 "lognormal": stats.lognorm(s=1.0, scale=0.5), "exponential": stats.expon(scale=0.5)}
    if tau_prior in reference:
        assert stats.kstest(draws, reference[tau_prior].cdf).pvalue > 1e-4


def test_differential_discounting_adds_a_group_tau():
    group = [False] * 6 + [True, True]
    model = meta_analysis_model(AS_R, AS_N, group=group, tau_scale=0.5)
    assert "tau_group_std" in {v.name for v in model.free_RVs}
    # the group tau's prior scale defaults to twice tau_scale
    draws = pm.draw(model["tau_group"], draws=20000, random_seed=1)
    assert np.mean(draws) == pytest.approx(2 * 0.5 * np.sqrt(2 / np.pi), rel=0.05)
    # no flagged study: the plain model
    assert "tau_group" not in meta_analysis_model(AS_R, AS_N, group=[False] * 8).named_vars


def test_exnex_model_marginalises_the_indicator():
    model = meta_analysis_model(EX_R, EX_N, exnex=ExNex(p_exchangeable=EX_P))
    # no discrete parameter: the latent of each branch is continuous
    assert all(v.dtype.startswith("float") for v in model.free_RVs)
    # at one point, the observed term is log(p Bin_EX + (1 - p) Bin_NEX) per study
    point = model.initial_point()
    point["z_nex"] = np.array([0.3, -0.2, 1.1])
    point["z"] = np.array([-0.5, 0.4, 0.0])
    logp = model.compile_fn(model.logp(vars=[model["r_obs"]], sum=False)[0], inputs=model.value_vars,
                            on_unused_input="ignore")(point)
    tau = 1.0 * np.exp(point["tau_std_log__"])  # tau_scale 1
    l_ex = 2.0 * point["mu_std"] + tau * point["z"]  # mu = 0 + 2 mu_std
    l_nex = 2.0 * point["z_nex"]  # the default NEX prior N(0, 2^2)
    expected = np.log(EX_P * stats.binom.pmf(EX_R, EX_N, special.expit(l_ex))
                      + (1 - EX_P) * stats.binom.pmf(EX_R, EX_N, special.expit(l_nex)))
    assert np.allclose(logp, expected, rtol=1e-10)


def test_meta_analysis_inputs_are_validated():
    with pytest.raises(ValueError, match="tau prior"):
        meta_analysis_model(AS_R, AS_N, tau_prior="uniformish")
    with pytest.raises(ValueError, match="r <= n"):
        meta_analysis_model([5, 50], [10, 20])
    with pytest.raises(ValueError, match="same non-zero length"):
        meta_analysis_model([5], [10, 20])
    with pytest.raises(ValueError, match="unique"):
        meta_analysis_model([1, 2], [10, 20], study_names=["a", "a"])
    with pytest.raises(ModelInputError) as err:
        meta_analysis_inputs([1, 2], [10, 20], exnex=ExNex(p_exchangeable=1.0))
    assert err.value.parameter == "exnex.p_exchangeable"
    with pytest.raises(ModelInputError) as err:
        meta_analysis_inputs([1, 2], [10, 20], exnex=ExNex(nex_sd=[1.0, 2.0, 3.0]))
    assert err.value.parameter == "exnex.nex_sd"
    with pytest.raises(ModelInputError, match="no elicited shift") as err:
        meta_analysis_inputs([1, 2], [10, 20], definition_class=["a", None], definition_shifts=[])
    assert err.value.parameter == "definition_shifts"
    with pytest.raises(ModelInputError) as err:
        meta_analysis_inputs([1, 2], [10, 20], definition_shifts=[DefinitionShift("a", 0.0, 1.0)])
    assert err.value.parameter == "definition_class"
    with pytest.raises(ModelInputError) as err:
        meta_analysis_inputs([1, 2], [10, 20], definition_class=["a", "a"],
                             definition_shifts=[DefinitionShift("a", 0.0, 0.0)])
    assert err.value.parameter == "definition_shifts"
    with pytest.raises(ModelInputError) as err:
        map_prior([1, 2], [10, 20], robust_weight=2.0)
    assert err.value.parameter == "robust_weight"
