"""Normal-endpoint design tools: closed forms, RBesT's documented examples, Monte Carlo checks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from isletbayes.models import normal_endpoint_design as nd
from isletbayes.models.mixtures import NormalMixture
from isletbayes.models.validation import ModelInputError

# RBesT finds decision boundaries with R's uniroot at its default tolerance .Machine$double.eps^0.25, so the numbers
# it prints are accurate to about this much in the boundary (and to this times the sampling density in an OC).
RBEST_UNIROOT_TOL = np.finfo(float).eps ** 0.25


def conjugate(prior: NormalMixture, n: float):
    """(A, B, s_post): posterior mean A + B ybar and sd for a single-component prior."""
    se2 = prior.sigma**2 / n
    prec = 1 / prior.sds[0] ** 2 + 1 / se2
    return prior.means[0] / prior.sds[0] ** 2 / prec, (1 / se2) / prec, np.sqrt(1 / prec)


# ----------------------------------------------------------------------------------------------------------------
# one sample
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lower_tail", [False, True])
def test_one_sample_single_normal_prior_closed_forms(lower_tail):
    prior = NormalMixture.single(-0.3, 0.8, sigma=1.2)
    n = np.array([5, 12, 50, 200])
    q, p = 0.1, 0.9
    design = nd.one_sample_design(prior, n, nd.Criterion(q, p, lower_tail))
    for i, ni in enumerate(n):
        a, b, s = conjugate(prior, ni)
        # P(theta > q) >= p  <=>  A + B y >= q + z_p s;  P(theta <= q) >= p  <=>  A + B y <= q - z_p s
        z = stats.norm.ppf(p)
        boundary_mean = q - z * s if lower_tail else q + z * s
        crit = (boundary_mean - a) / b
        bound = design.upper[i] if lower_tail else design.lower[i]
        assert bound == pytest.approx(crit, abs=1e-12)
        assert (design.lower[i] == -np.inf) if lower_tail else (design.upper[i] == np.inf)
        # the boundary is where the posterior probability equals p
        assert nd.posterior_prob_above(prior, crit, ni, q) == pytest.approx(1 - p if lower_tail else p, abs=1e-12)
    theta = np.array([-1.0, -0.3, 0.1, 0.6])
    se = prior.sigma / np.sqrt(n)[:, None]
    bound = (design.upper if lower_tail else design.lower)[:, None]
    expected = stats.norm.cdf(bound, theta, se) if lower_tail else stats.norm.sf(bound, theta, se)
    assert np.allclose(design.oc(theta), expected, atol=1e-14)
    # PoS under N(m, s^2): the predictive of ybar is N(m, s^2 + sigma^2 / n)
    design_prior = NormalMixture.single(0.2, 0.3, sigma=1.2)
    v = np.sqrt(0.3**2 + 1.2**2 / n)
    expected_pos = stats.norm.cdf(bound[:, 0], 0.2, v) if lower_tail else stats.norm.sf(bound[:, 0], 0.2, v)
    assert np.allclose(design.pos(design_prior), expected_pos, atol=1e-14)
    frame = design.to_frame(theta=theta, design_prior=design_prior)
    assert frame.index.tolist() == n.tolist() and np.allclose(frame["pos"], expected_pos, atol=1e-14)
    assert np.allclose(frame[[f"oc_{t:g}" for t in theta]].to_numpy(), expected, atol=1e-14)


def test_one_sample_mixture_boundary_solves_the_posterior_equation():
    prior = NormalMixture([0.6, 0.3, 0.1], [0.0, 1.0, -2.0], [0.3, 1.0, 3.0], sigma=2.0)
    n = np.arange(5, 300, 7)
    crit = [nd.Criterion(0.2, 0.975), nd.Criterion(0.8, 0.5)]
    lower, upper = nd.one_sample_boundary(prior, n, crit)
    assert np.all(np.isinf(upper))
    ok = np.stack([nd.posterior_prob_above(prior, lower, n, c.threshold) - c.probability for c in crit])
    # the binding criterion holds with equality, the other with room to spare
    assert np.allclose(ok.min(axis=0), 0.0, atol=1e-10)
    assert np.all(ok.max(axis=0) >= -1e-10)
    # the posterior probability is monotone in ybar, so just below the boundary the rule fails
    assert np.all(ok.min(axis=0) - 1e-9 < 0)
    below = np.stack([nd.posterior_prob_above(prior, lower - 1e-6, n, c.threshold) - c.probability for c in crit])
    assert np.all(below.min(axis=0) < 0)
    # PoS = OC averaged over the design prior, by quadrature
    design = nd.one_sample_design(prior, n[:4], crit)
    design_prior = NormalMixture([0.7, 0.3], [0.5, 0.0], [0.2, 0.6], sigma=2.0)
    for i in range(4):
        expected = integrate.quad(lambda t: design.oc([t])[i, 0] * design_prior.pdf(t), -6, 6, points=[0, 0.5],
                                  epsabs=1e-12, limit=200)[0]
        assert design.pos(design_prior)[i] == pytest.approx(expected, abs=1e-9)


def test_rbest_oc1S_decision1S_boundary_pos1S_documented_examples():
    """RBesT's help pages for oc1S, decision1S_boundary and pos1S (Neuenschwander et al. 2011 NI example)."""
    s, n_l, theta_ni, theta_a, alpha, beta = 2.0, 233, 0.4, 0.0, 0.05, 0.2
    flat = NormalMixture.single(0.0, 100.0, sigma=s)
    za, zb = stats.norm.ppf(1 - alpha), stats.norm.ppf(1 - beta)
    n1 = round((s * (za + zb) / (theta_ni - theta_a)) ** 2)
    theta_c = theta_ni - za * s / np.sqrt(n1)
    assert n1 == 155
    dec_a = [nd.Criterion(theta_ni, 1 - alpha, lower_tail=True)]
    dec_comb = [nd.Criterion(theta_ni, 1 - alpha, True), nd.Criterion(theta_c, 0.5, True)]
    theta_eval = [theta_a, theta_c, theta_ni]

    def oc_tol(n):  # RBesT's boundary tolerance times the largest sampling density of ybar
        return RBEST_UNIROOT_TOL * stats.norm.pdf(0) / (s / np.sqrt(n))

    oc_a = nd.one_sample_design(flat, [n1, n_l], dec_a).oc(theta_eval)
    assert np.allclose(oc_a[0], [0.80084529, 0.49980774, 0.04995032], atol=oc_tol(n1), rtol=0)
    assert np.allclose(oc_a[1], [0.92039728, 0.64489439, 0.04997268], atol=oc_tol(n_l), rtol=0)
    oc_c = nd.one_sample_design(flat, [n1, n_l], dec_comb).oc(theta_eval)
    assert np.allclose(oc_c[1], [0.84991646, 0.49995959, 0.02185859], atol=oc_tol(n_l), rtol=0)
    # the intermediate (two-sided) decision of the help page
    inter = [nd.Criterion(theta_ni, 1 - alpha, True), nd.Criterion(theta_c, 0.5, False), nd.Criterion(0.3, 0.8, True)]
    oc_i = nd.one_sample_design(flat, [n1, n_l], inter).oc(theta_eval)
    assert np.allclose(oc_i[0], 0.0, atol=2 * oc_tol(n1))
    assert np.allclose(oc_i[1], [0.07043191, 0.14485113, 0.02810313], atol=2 * oc_tol(n_l), rtol=0)
    # decision1S_boundary: 0.1357511 (dual) and 0.1844494 (significance only), accurate to uniroot's tolerance
    assert nd.one_sample_boundary(flat, [n_l], dec_comb)[1][0] == pytest.approx(0.1357511, abs=RBEST_UNIROOT_TOL)
    assert nd.one_sample_boundary(flat, [n_l], dec_a)[1][0] == pytest.approx(0.1844494, abs=RBEST_UNIROOT_TOL)
    # and exactly: with an almost flat prior the NI design has type I error 5% and its intended power (80%)
    assert oc_a[0, 2] == pytest.approx(0.05, abs=1e-6)
    assert oc_a[0, 0] == pytest.approx(stats.norm.cdf(theta_ni / (s / np.sqrt(n1)) - za), abs=1e-5)
    # pos1S: PoS at an interim (20 events, HR 0.8) of 10 more events: 0.534741
    post_ia = flat.posterior(np.log(0.8), 20)
    pos = nd.one_sample_design(post_ia, [10], dec_comb).pos(post_ia)[0]
    assert pos == pytest.approx(0.534741, abs=RBEST_UNIROOT_TOL * stats.norm.pdf(0) / (s / np.sqrt(10)))


def test_one_sample_oc_and_pos_against_monte_carlo(seed):
    rng = np.random.default_rng(seed(7101))
    prior = NormalMixture([0.7, 0.3], [-1.0, 0.0], [0.4, 1.5], sigma=1.1)  # e.g. HbA1c change, MAP-like prior
    n = 30
    crit = [nd.Criterion(-0.5, 0.95, lower_tail=True), nd.Criterion(-0.8, 0.5, lower_tail=True)]
    design = nd.one_sample_design(prior, [n], crit)
    draws = 40_000
    for theta in (-1.2, -0.8, -0.4):
        ybar = rng.normal(theta, prior.sigma / np.sqrt(n), draws)
        wins = np.all([nd.posterior_prob_above(prior, ybar, n, c.threshold) <= 1 - c.probability for c in crit],
                      axis=0)
        exact = design.oc([theta])[0, 0]
        mcse = np.sqrt(exact * (1 - exact) / draws)
        assert abs(wins.mean() - exact) < 4 * mcse + 1e-12
    design_prior = NormalMixture([0.5, 0.5], [-1.0, -0.5], [0.2, 0.3], sigma=1.1)
    theta = design_prior.rvs(draws, rng)
    ybar = rng.normal(theta, prior.sigma / np.sqrt(n))
    wins = np.all([nd.posterior_prob_above(prior, ybar, n, c.threshold) <= 1 - c.probability for c in crit], axis=0)
    exact = design.pos(design_prior)[0]
    assert abs(wins.mean() - exact) < 4 * np.sqrt(exact * (1 - exact) / draws)


# ----------------------------------------------------------------------------------------------------------------
# two samples
# ----------------------------------------------------------------------------------------------------------------
def closed_two_sample(p1, p2, n1, n2, crit, theta1, theta2):
    """Single-normal priors: success iff ybar_1 - beta ybar_2 >= c (upper tail) or <= c (lower tail)."""
    a1, b1, s1 = conjugate(p1, n1)
    a2, b2, s2 = conjugate(p2, n2)
    s = np.sqrt(s1**2 + s2**2)
    z = stats.norm.ppf(crit.upper_target)
    c = (crit.threshold + a2 + z * s - a1) / b1
    slope = b2 / b1
    sd = np.sqrt(p1.sigma**2 / n1 + slope**2 * p2.sigma**2 / n2)
    mean = np.asarray(theta1) - slope * np.asarray(theta2)
    return (stats.norm.cdf(c, mean, sd) if crit.lower_tail else stats.norm.sf(c, mean, sd)), c, slope


@pytest.mark.parametrize("lower_tail", [False, True])
def test_two_sample_single_normal_priors_closed_form(lower_tail):
    p1 = NormalMixture.single(0.0, 3.0, sigma=2.0)
    p2 = NormalMixture.single(0.5, 0.4, sigma=2.5)  # an informative control prior
    crit = nd.Criterion(0.3, 0.9, lower_tail)
    design = nd.two_sample_design(p1, p2, 40, 25, crit)
    th1, th2 = np.array([0.0, 0.5, 1.2, -0.4]), np.array([0.5, 0.5, 0.3, 0.0])
    expected, c, slope = closed_two_sample(p1, p2, 40, 25, crit, th1, th2)
    assert np.allclose(design.oc(th1, th2), expected, atol=1e-12)
    y2 = np.array([-1.0, 0.2, 2.0])
    lower, upper = design.boundary(y2)
    assert np.allclose(upper if lower_tail else lower, c + slope * y2, atol=1e-10)
    # PoS: ybar_1 - slope ybar_2 is normal under normal design priors
    d1 = NormalMixture.single(0.9, 0.3, sigma=2.0)
    d2 = NormalMixture.single(0.4, 0.2, sigma=2.5)
    mean = 0.9 - slope * 0.4
    sd = np.sqrt(0.3**2 + 2.0**2 / 40 + slope**2 * (0.2**2 + 2.5**2 / 25))
    pos = stats.norm.cdf(c, mean, sd) if lower_tail else stats.norm.sf(c, mean, sd)
    assert design.pos(d1, d2) == pytest.approx(pos, abs=1e-12)


def test_gsponer_table_1_via_rbest_oc2S_example():
    """Gsponer et al. 2014 (Pharm Stat 13:71) Table 1 as in RBesT's oc2S test: CDAI, sigma 88, placebo prior
    N(-49, 88^2/20), flat treatment prior, 10 placebo and 20 treated at the interim."""
    prior_t = NormalMixture.single(0.0, 88 / np.sqrt(0.001), sigma=88.0)
    prior_p = NormalMixture.single(-49.0, 88 / np.sqrt(20), sigma=88.0)
    success = [nd.Criterion(0.0, 0.95), nd.Criterion(50.0, 0.5)]
    futility = [nd.Criterion(40.0, 0.90, lower_tail=True)]
    delta = np.array([0.0, 40.0, 50.0, 60.0, 70.0])
    got_s = nd.two_sample_design(prior_p, prior_t, 10, 20, success).oc(-49.0, -49.0 - delta)
    got_f = nd.two_sample_design(prior_p, prior_t, 10, 20, futility).oc(-49.0, -49.0 - delta)
    # exact: both success boundaries are parallel lines in (ybar_1, ybar_2), so P(success) is the smaller of the two
    exact_s = np.minimum(*(closed_two_sample(prior_p, prior_t, 10, 20, c, -49.0, -49.0 - delta)[0] for c in success))
    exact_f = closed_two_sample(prior_p, prior_t, 10, 20, futility[0], -49.0, -49.0 - delta)[0]
    assert np.allclose(got_s, exact_s, atol=1e-12) and np.allclose(got_f, exact_f, atol=1e-12)
    frame = nd.two_sample_design(prior_p, prior_t, 10, 20, success).to_frame(-49.0, -49.0 - delta)
    assert np.allclose(frame["difference"], delta) and np.allclose(frame["success"], got_s)
    # the published table (percentages, one decimal) differs from these exact values by up to 0.1 point;
    # RBesT's own test accepts 2 points
    ref_success = np.array([1.1, 32.2, 50.0, 67.6, 82.2])
    ref_futile = np.array([63.3, 6.8, 2.5, 0.8, 0.2])
    assert np.all(np.abs(100 * got_s - ref_success) <= 0.15)
    assert np.all(np.abs(100 * got_f - ref_futile) <= 0.15)


def test_rbest_pos2S_documented_example():
    """RBesT's pos2S help page: PoS after another 20 placebo / 30 treated given the interim posteriors: 0.145567."""
    prior_t = NormalMixture.single(0.0, 88 / np.sqrt(0.001), sigma=88.0)
    prior_p = NormalMixture.single(-49.0, 88 / np.sqrt(20), sigma=88.0)
    post_p = prior_p.posterior(-50.0, 10)
    post_t = prior_t.posterior(-80.0, 20)
    assert post_p.means[0] == pytest.approx(-49.33333, abs=1e-5) and post_p.sds[0] == pytest.approx(16.06653, abs=1e-5)
    assert post_t.means[0] == pytest.approx(-79.99600, abs=1e-5) and post_t.sds[0] == pytest.approx(19.67691, abs=1e-5)
    design = nd.two_sample_design(post_p, post_t, 20, 30, [nd.Criterion(0.0, 0.95), nd.Criterion(50.0, 0.5)])
    assert design.pos(post_p, post_t) == pytest.approx(0.145567, abs=1e-6)


def test_two_sample_mixture_map_prior_oc_and_pos_against_monte_carlo(seed):
    rng = np.random.default_rng(seed(7102))
    sigma = 88.0
    weak = NormalMixture.single(-50.0, sigma, sigma=sigma)  # unit-information prior for the active arm
    map_prior = NormalMixture([0.5, 0.3, 0.2], [-50.0, -45.0, -50.0], [8.0, 15.0, sigma], sigma=sigma)  # robust MAP
    crit = [nd.Criterion(0.0, 0.95, lower_tail=True), nd.Criterion(-50.0, 0.5, lower_tail=True)]
    design = nd.two_sample_design(weak, map_prior, 40, 20, crit)
    y2 = np.linspace(-120, 20, 15)
    lower, upper = design.boundary(y2)
    assert np.all(np.isinf(lower))
    # at the boundary the binding criterion holds with equality
    vals = np.stack([1 - nd.two_sample_prob_above(weak, map_prior, upper, y2, 40, 20, c.threshold) - c.probability
                     for c in crit])
    assert np.allclose(vals.min(axis=0), 0.0, atol=1e-9)
    draws = 40_000
    for th1, th2 in [(-50.0, -50.0), (-110.0, -50.0), (-80.0, -30.0)]:
        y1 = rng.normal(th1, sigma / np.sqrt(40), draws)
        y2s = rng.normal(th2, sigma / np.sqrt(20), draws)
        wins = np.all([1 - nd.two_sample_prob_above(weak, map_prior, y1, y2s, 40, 20, c.threshold) >= c.probability
                       for c in crit], axis=0)
        exact = design.oc(th1, th2)[0]
        assert abs(wins.mean() - exact) < 4 * np.sqrt(exact * (1 - exact) / draws) + 1e-12
    d1 = NormalMixture.single(-100.0, 15.0, sigma=sigma)
    d2 = map_prior
    t1, t2 = d1.rvs(draws, rng), d2.rvs(draws, rng)
    y1 = rng.normal(t1, sigma / np.sqrt(40))
    y2s = rng.normal(t2, sigma / np.sqrt(20))
    wins = np.all([1 - nd.two_sample_prob_above(weak, map_prior, y1, y2s, 40, 20, c.threshold) >= c.probability
                   for c in crit], axis=0)
    exact = design.pos(d1, d2)
    assert abs(wins.mean() - exact) < 4 * np.sqrt(exact * (1 - exact) / draws)


def test_bad_inputs_raise_model_input_error():
    with pytest.raises(ModelInputError) as err:
        nd.one_sample_design(NormalMixture.single(0, 1), [10], nd.Criterion(0, 0.9))  # no sigma anywhere
    assert err.value.parameter == "sigma"
    with pytest.raises(ModelInputError):
        nd.Criterion(0.0, 1.0)
    with pytest.raises(ModelInputError):
        nd.one_sample_design(NormalMixture.single(0, 1, sigma=1), [0], nd.Criterion(0, 0.9))
    with pytest.raises(ModelInputError):
        nd.one_sample_design(NormalMixture.single(0, 1, sigma=1), [10], [])
