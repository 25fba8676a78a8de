"""Tests of mmgap.mixture: parameter recovery, Eq. (9) by hand, EM monotonicity, BIC, validation."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch

from mmgap.mixture import (
    AmbiguousBalancedWarning,
    MixtureConvergenceWarning,
    MixtureFit,
    bic_single,
    bimodality,
    fit_mixture,
)

N = 5000
TRUE_W = np.array([0.75, 0.25])
TRUE_MU = np.array([0.0, 3.0])
TRUE_S = np.array([0.5, 0.8])
TRUE_DOF = np.array([4.0, 6.0])


def _sample(family: str, n: int = N, seed: int = 0, w=TRUE_W, mu=TRUE_MU, s=TRUE_S) -> np.ndarray:
    """n draws from a known two-component mixture of `family` (components as in the TRUE_* constants)."""
    rng = np.random.default_rng(seed)
    comp = (rng.random(n) >= w[0]).astype(int)
    if family == "gmm":
        noise = rng.standard_normal(n)
    elif family == "smm":
        noise = rng.standard_t(TRUE_DOF[comp])
    else:
        noise = rng.laplace(0.0, 1.0, n)
    return mu[comp] + s[comp] * noise


def _fit(family: str, x, **kw) -> MixtureFit:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a well-posed fit must not warn
        return fit_mixture(x, family, **kw)


@pytest.mark.parametrize("family", ["gmm", "smm", "lmm"])
def test_recovers_known_parameters(family):
    fit = _fit(family, _sample(family))
    assert fit.family == family and fit.n == N and fit.converged
    np.testing.assert_allclose(fit.weights, TRUE_W, atol=0.02)
    np.testing.assert_allclose(fit.means, TRUE_MU, atol=0.06)
    np.testing.assert_allclose(fit.scales, TRUE_S, rtol=0.08)
    if family == "smm":
        assert fit.dof is not None
        assert 2.5 < fit.dof[0] < 7.0 and 3.0 < fit.dof[1] < 15.0
    else:
        assert fit.dof is None
    assert fit.balanced == 0 and fit.imbalanced == 1
    assert fit.balanced_mean == pytest.approx(fit.means[0])


def _given(family: str, balanced_first: bool = True) -> MixtureFit:
    """pi = (0.7, 0.3), locations (0, 2), scales (1, 0.5), dof 1 (Cauchy) for the t; optionally swapped."""
    w, mu, s, dof = [0.7, 0.3], [0.0, 2.0], [1.0, 0.5], [1.0, 1.0]
    if not balanced_first:
        w, mu, s = w[::-1], mu[::-1], s[::-1]
    return MixtureFit(family=family, weights=np.array(w), means=np.array(mu), scales=np.array(s),
                      dof=np.array(dof) if family == "smm" else None, loglik=0.0, bic=0.0, n=3,
                      balanced=0 if balanced_first else 1, converged=True, n_iter=0)


e = math.exp
# Eq. (9) by hand at g = 0, 1, 2. The common 1/sqrt(2 pi) (Gaussian), 1/2 (Laplace) and 1/pi (Cauchy)
# factors cancel; the 1/sigma factor turns pi_1 = 0.3 with sigma_1 = 0.5 into 0.6.
HAND_W0 = {
    "gmm": [0.7 / (0.7 + 0.6 * e(-8)), 0.7 * e(-0.5) / (0.7 * e(-0.5) + 0.6 * e(-2)),
            0.7 * e(-2) / (0.7 * e(-2) + 0.6)],
    "lmm": [0.7 / (0.7 + 0.6 * e(-4)), 0.7 * e(-1) / (0.7 * e(-1) + 0.6 * e(-2)), 0.7 * e(-2) / (0.7 * e(-2) + 0.6)],
    # Cauchy: f(g) = 1 / (pi s (1 + z^2)); at g=0: 0.7 vs 0.6/17; g=1: 0.35 vs 0.12; g=2: 0.14 vs 0.6.
    "smm": [0.7 / (0.7 + 0.6 / 17), 0.35 / (0.35 + 0.12), 0.14 / (0.14 + 0.6)],
}


@pytest.mark.parametrize("family", ["gmm", "smm", "lmm"])
@pytest.mark.parametrize("balanced_first", [True, False])
def test_posterior_matches_hand_computation(family, balanced_first):
    fit = _given(family, balanced_first)
    w0, w1 = fit.posterior(np.array([0.0, 1.0, 2.0]))
    np.testing.assert_allclose(w0, HAND_W0[family], rtol=1e-12)
    np.testing.assert_allclose(w0 + w1, 1.0, rtol=0, atol=1e-15)


def test_posterior_is_stable_far_in_the_tails_and_accepts_torch():
    # Equal scales 0.02 at 0 and 2: at g = 1 both densities are exp(-1250) (0.0 in float64), yet the
    # log-odds log(w1 / w0) = log(3/7) + 2 (g - 1) / 0.02^2 is finite: w0 = 0.7 at g = 1 and
    # w0 = 7 / (7 + 3 e) at g = 1.0002.
    tight = MixtureFit(family="gmm", weights=np.array([0.7, 0.3]), means=np.array([0.0, 2.0]),
                       scales=np.array([0.02, 0.02]), dof=None, loglik=0.0, bic=0.0, n=2, balanced=0,
                       converged=True, n_iter=0)
    assert np.all(np.exp(tight.log_pdf_components(np.array([1.0]))) == 0.0)
    w0, w1 = tight.posterior(np.array([1.0, 1.0002]))
    np.testing.assert_allclose(w0, [0.7, 7 / (7 + 3 * math.e)], rtol=1e-9)
    fit = _given("gmm")
    t0, t1 = fit.posterior(torch.tensor([0.0, 1.0, 2.0], dtype=torch.float32))
    assert isinstance(t0, torch.Tensor) and t0.dtype == torch.float32 and t0.shape == (3,)
    torch.testing.assert_close(t0 + t1, torch.ones(3))
    torch.testing.assert_close(t0, torch.tensor(HAND_W0["gmm"], dtype=torch.float32))


@pytest.mark.parametrize("family", ["gmm", "smm", "lmm"])
def test_pdf_integrates_to_one_and_matches_weighted_components(family):
    fit = _fit(family, _sample(family, n=1000))
    grid = np.linspace(-40, 40, 80001)
    p = fit.pdf(grid)
    assert float(np.sum(p) * (grid[1] - grid[0])) == pytest.approx(1.0, abs=0.01)  # t tails lose < 1 %
    comp = np.exp(fit.log_pdf_components(np.array([0.3])))
    assert comp.shape == (1, 2)
    assert fit.pdf(np.array([0.3]))[0] == pytest.approx(float(comp[0] @ fit.weights))


@pytest.mark.parametrize("family", ["gmm", "smm", "lmm"])
def test_em_log_likelihood_is_non_decreasing(family):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MixtureConvergenceWarning)  # a tiny tol so the trace is long
        fit = fit_mixture(_sample(family, n=2000, seed=3), family, tol=1e-10, max_iter=60)
    trace = np.array(fit.loglik_trace)
    assert trace.size >= 3
    assert np.all(np.diff(trace) >= -1e-8 * np.abs(trace[:-1]))
    assert trace[-1] > trace[0]
    assert fit.loglik == pytest.approx(trace[-1])


@pytest.mark.parametrize("family", ["gmm", "smm", "lmm"])
def test_balanced_is_the_smaller_mean_even_when_the_imbalanced_component_is_heavier(family):
    # 65 % of the samples sit in the imbalanced component at +2: the location rule still names the one at 0.
    x = _sample(family, seed=5, w=np.array([0.35, 0.65]), mu=np.array([0.0, 2.0]), s=np.array([0.5, 0.5]))
    fit = _fit(family, x)
    assert fit.balanced == 0 and fit.imbalanced == 1
    assert fit.weights[fit.imbalanced] == pytest.approx(0.65, abs=0.03)  # pi_1 > 0.5 is allowed
    assert fit.balanced_mean == pytest.approx(0.0, abs=0.1)
    w0, w1 = fit.posterior(np.array([0.0, 2.0]))
    assert w0[0] > 0.95 and w1[1] > 0.95


@pytest.mark.parametrize("family", ["gmm", "smm", "lmm"])
def test_labels_stay_with_the_location_across_refits_whatever_the_weights(family):
    # Three "refits" along which the imbalanced share shrinks from 0.6 to 0.2: the balanced label never moves.
    for k, pi1 in enumerate((0.6, 0.4, 0.2)):
        x = _sample(family, n=3000, seed=20 + k, w=np.array([1 - pi1, pi1]), mu=np.array([-0.5, 1.5]),
                    s=np.array([0.4, 0.6]))
        fit = _fit(family, x)
        assert fit.balanced == 0 and fit.balanced_mean == pytest.approx(-0.5, abs=0.1)
        assert fit.weights[1] == pytest.approx(pi1, abs=0.04)


def test_indistinguishable_means_warn_and_pick_the_concentrated_component():
    rng = np.random.default_rng(11)
    x = np.concatenate([rng.normal(0.0, 0.3, 1500), rng.normal(0.02, 2.0, 1500)])
    with pytest.warns(AmbiguousBalancedWarning, match="ambiguous"):
        fit = fit_mixture(x, "gmm")
    assert fit.ambiguous and abs(fit.means[0] - fit.means[1]) < 0.1
    assert fit.scales[fit.balanced] < fit.scales[fit.imbalanced]


def _wide_balanced(family: str) -> MixtureFit:
    """Balanced component at 0, wide (1.5); imbalanced at 2, narrow (0.4): Eq. 9's far-tail artifact."""
    return MixtureFit(family=family, weights=np.array([0.7, 0.3]), means=np.array([0.0, 2.0]),
                      scales=np.array([1.5, 0.4]), dof=np.array([5.0, 5.0]) if family == "smm" else None,
                      loglik=0.0, bic=0.0, n=3, balanced=0, converged=True, n_iter=0)


def test_eq9_far_tail_returns_the_most_imbalanced_gaps_to_the_balanced_component():
    fit = _wide_balanced("gmm")
    _, w1 = fit.posterior(np.array([2.0, 5.0]))
    assert w1[0] > 0.75 and w1[1] < 0.01  # the artifact, as printed: a gap of 5 counts as balanced
    # The monotone form holds w1 at its maximum, reached at the vertex of the log-ratio:
    # x* = (mu1 s0^2 - mu0 s1^2) / (s0^2 - s1^2) for two Gaussians.
    x_star = (2.0 * 1.5**2 - 0.0) / (1.5**2 - 0.4**2)
    lo, hi = fit.tail_bounds()
    assert hi == pytest.approx(x_star, abs=1e-4) and lo == -math.inf  # the wide balanced side never turns
    _, w1m = fit.posterior(np.array([2.0, x_star, 5.0, 50.0]), tail="monotone")
    _, w1_peak = fit.posterior(np.array([x_star]))
    assert w1m[0] == pytest.approx(w1[0]) and w1m[2] == pytest.approx(w1_peak[0]) == pytest.approx(w1m[3])


@pytest.mark.parametrize("family", ["gmm", "smm", "lmm"])
def test_monotone_posterior_never_decreases_and_keeps_eq9_between_the_means(family):
    for fit in (_wide_balanced(family), _given(family)):
        grid = np.linspace(-30, 30, 6001)
        _, w1 = fit.posterior(grid, tail="monotone")
        assert np.all(np.diff(w1) >= -1e-12)
        mid = (grid >= fit.means[0]) & (grid <= fit.means[1])
        np.testing.assert_allclose(w1[mid], fit.posterior(grid[mid])[1], rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="tail"):
        fit.posterior(grid, tail="clipped")


@pytest.mark.parametrize("family", ["gmm", "smm", "lmm"])
def test_bic_prefers_two_components_on_bimodal_and_one_on_unimodal(family):
    bimodal = _sample(family, n=2000, seed=1)
    b = bimodality(bimodal, family)
    assert b["delta"] == pytest.approx(b["bic1"] - b["bic2"])
    assert b["delta"] > 100
    unimodal = _sample(family, n=2000, seed=2, w=np.array([1.0, 0.0]))
    assert bic_single(unimodal, family) < _quiet_fit(unimodal, family).bic


def _quiet_fit(x, family):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_mixture(x, family)


def test_bic_single_gaussian_matches_closed_form():
    x = np.array([-1.0, 0.0, 1.0, 2.0])  # mean 0.5, MLE variance 1.25
    ll = -4 / 2 * math.log(2 * math.pi * 1.25) - 4 / 2  # sum of squares / (2 var) = n / 2 at the MLE
    assert bic_single(x, "gmm") == pytest.approx(-2 * ll + 2 * math.log(4))


@pytest.mark.parametrize("family", ["gmm", "smm", "lmm"])
def test_deterministic_for_a_seed_and_round_trips_through_json(family):
    x = _sample(family, n=1500, seed=7)
    a, b = _fit(family, x, seed=3), _fit(family, x, seed=3)
    assert a.to_dict() == b.to_dict()
    back = MixtureFit.from_dict(json.loads(json.dumps(a.to_dict())))
    assert back.to_dict() == a.to_dict()
    g = np.linspace(-2, 4, 7)
    np.testing.assert_array_equal(back.posterior(g)[0], a.posterior(g)[0])


def test_accepts_torch_input_like_numpy():
    x = _sample("gmm", n=800, seed=4)
    assert _fit("gmm", torch.from_numpy(x).float()).to_dict()["means"] == pytest.approx(
        _fit("gmm", x.astype(np.float32)).to_dict()["means"])


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.array([0.0, 1.0, np.nan, 2.0, 3.0]), "NaN or infinite"),
        (np.array([0.0, 1.0, np.inf, 2.0, 3.0]), "NaN or infinite"),
        (np.array([0.0, 1.0, 2.0]), "at least 4"),
        (np.full(50, 0.3), "zero variance"),
        (np.r_[np.zeros(50), 1e-13], "zero variance"),
        (np.zeros((10, 2)), "1-D"),
    ],
)
@pytest.mark.parametrize("family", ["gmm", "smm", "lmm"])
def test_degenerate_inputs_raise_clear_errors(bad, match, family):
    with pytest.raises(ValueError, match=match):
        fit_mixture(bad, family)
    with pytest.raises(ValueError, match=match):
        bic_single(bad, family)


def test_unknown_family_and_bad_posterior_input_raise():
    with pytest.raises(ValueError, match="unknown mixture family"):
        fit_mixture(np.arange(10.0), "beta")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NaN"):
        _given("gmm").posterior(np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="balanced"):
        MixtureFit.from_dict({**_given("gmm").to_dict(), "balanced": 2})
    with pytest.raises(ValueError, match="2 values"):
        MixtureFit.from_dict({**_given("gmm").to_dict(), "means": [0.0, 1.0, 2.0]})
    with pytest.raises(ValueError, match="dof"):
        MixtureFit.from_dict({**_given("smm").to_dict(), "dof": None})
    with pytest.raises(ValueError, match="read-only"):
        _given("gmm").weights[0] = 0.5  # a frozen fit cannot be changed behind the posterior's back


@pytest.mark.parametrize("family", ["smm", "lmm", "gmm"])
def test_iteration_cap_warns_and_reports_not_converged(family):
    with pytest.warns(MixtureConvergenceWarning, match="max_iter=2"):
        fit = fit_mixture(_sample(family, n=1000, seed=9), family, max_iter=2, tol=1e-12)
    assert not fit.converged and fit.n_iter == 2


@pytest.mark.parametrize("family, n_params", [("gmm", 5), ("smm", 7), ("lmm", 5)])
def test_bic_counts_the_family_parameters(family, n_params):
    x = _sample(family, n=1000, seed=8)
    fit = _fit(family, x)
    # total log-likelihood recomputed from the fitted parameters, independently of the EM's bookkeeping
    assert fit.loglik == pytest.approx(float(np.sum(np.log(fit.pdf(x)))), rel=1e-9)
    assert fit.bic == pytest.approx(-2 * fit.loglik + n_params * math.log(1000), rel=1e-12)
    if family == "gmm":  # scikit-learn's own BIC of the same model
        from sklearn.mixture import GaussianMixture

        gm = GaussianMixture(2, random_state=0, tol=1e-6, reg_covar=(1e-3 * x.std()) ** 2).fit(x[:, None])
        assert fit.bic == pytest.approx(gm.bic(x[:, None]), rel=1e-6)


def _weighted_median(x: np.ndarray, w: np.ndarray) -> float:
    o = np.argsort(x)
    cw = np.cumsum(w[o])
    return float(x[o][np.searchsorted(cw, cw[-1] / 2)])


@pytest.mark.parametrize("family", ["gmm", "smm", "lmm"])
def test_converged_fit_is_a_fixed_point_of_the_m_step(family):
    # Skewed (gamma) components, so a mean-based location differs from a median-based one.
    rng = np.random.default_rng(21)
    x = np.concatenate([rng.gamma(2.0, 0.4, 1500), 4.0 + rng.gamma(1.5, 0.8, 500)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MixtureConvergenceWarning)
        fit = fit_mixture(x, family, tol=1e-12, max_iter=2000)
    w0, w1 = fit.posterior(x)
    tau = np.stack([w0, w1], 1) if fit.balanced == 0 else np.stack([w1, w0], 1)
    np.testing.assert_allclose(fit.weights, tau.mean(0), atol=1e-5)
    for k in range(2):
        t = tau[:, k]
        if family == "lmm":  # location: weighted median; scale: weighted mean absolute deviation
            loc = _weighted_median(x, t)
            scale = np.sum(t * np.abs(x - loc)) / t.sum()
        else:
            u = np.ones_like(x)
            if family == "smm":  # latent scale weights u = (nu + 1) / (nu + delta)
                u = (fit.dof[k] + 1) / (fit.dof[k] + ((x - fit.means[k]) / fit.scales[k]) ** 2)
            loc = np.sum(t * u * x) / np.sum(t * u)
            scale = math.sqrt(np.sum(t * u * (x - loc) ** 2) / t.sum())
        assert fit.means[k] == pytest.approx(loc, abs=1e-3)
        assert fit.scales[k] == pytest.approx(scale, rel=1e-3)


def test_laplace_location_is_a_median_not_a_mean():
    # A single skewed cluster plus a far one: the Laplace location of the first must be its median.
    rng = np.random.default_rng(2)
    a = rng.exponential(1.0, 3000)  # median log 2 = 0.693, mean 1
    x = np.concatenate([a, 30.0 + rng.normal(0, 0.5, 1000)])
    fit = _fit("lmm", x)
    assert fit.means[0] == pytest.approx(math.log(2), abs=0.06)
    assert fit.scales[0] == pytest.approx(np.mean(np.abs(a - np.median(a))), rel=0.03)


def _fit_of(family: str, weights, means, scales, balanced: int, dof=(5.0, 5.0)) -> MixtureFit:
    return MixtureFit(family=family, weights=np.array(weights), means=np.array(means), scales=np.array(scales),
                      dof=np.array(dof) if family == "smm" else None, loglik=0.0, bic=0.0, n=3,
                      balanced=balanced, converged=True, n_iter=0)


@pytest.mark.parametrize("family", ["gmm", "smm", "lmm"])
def test_monotone_posterior_grows_with_the_gap_when_the_tie_break_names_the_right_hand_component(family):
    # Indistinguishable means: the narrow component (slightly to the right) is called balanced. Large positive
    # gaps belong to the wide one, and the monotone form must keep them imbalanced, as Eq. 9 does.
    fit = _fit_of(family, [0.5, 0.5], [0.0, 0.05], [2.0, 0.3], balanced=1)
    grid = np.linspace(-30, 30, 6001)
    _, w1m = fit.posterior(grid, tail="monotone")
    assert np.all(np.diff(w1m) >= -1e-12)
    _, w1 = fit.posterior(np.array([5.0]))
    _, w1m5 = fit.posterior(np.array([5.0]), tail="monotone")
    assert w1[0] > 0.9 and w1m5[0] == pytest.approx(w1[0], abs=1e-9)


def test_monotone_posterior_holds_the_first_peak_of_a_heavy_tailed_imbalanced_component():
    # Student-t: the imbalanced component is narrow but heavy-tailed (dof 1.5), the balanced one nearly Gaussian.
    # Beyond mu1, Eq. 9 first falls (the wide balanced body), then rises again (the heavy tail wins far out).
    fit = _fit_of("smm", [0.7, 0.3], [0.0, 2.0], [1.0, 0.3], balanced=0, dof=(30.0, 1.5))
    grid = np.linspace(-40, 40, 8001)
    _, w1 = fit.posterior(grid)
    _, w1m = fit.posterior(grid, tail="monotone")
    beyond = grid > 2.0
    assert np.min(np.diff(w1[beyond])) < -1e-3  # the artifact is there
    assert np.all(np.diff(w1m) >= -1e-12)  # and the monotone form has none of it
    assert np.all((w1m >= w1 - 1e-12)[grid >= 0.0])  # never below Eq. 9 on the imbalanced side
    np.testing.assert_allclose(w1m[(grid >= 0) & (grid <= 2.0)], w1[(grid >= 0) & (grid <= 2.0)], atol=1e-12)


# ----------------------------------------------- the balanced component is the one nearest a raw gap of 0


def _visual_ahead_gaps(family: str, seed: int = 3) -> np.ndarray:
    """Raw gaps: 70 % balanced clips near 0 (+0.05), 30 % whose *visual* branch leads (gaps near -0.6)."""
    return _sample(family, n=3000, seed=seed, w=np.array([0.7, 0.3]), mu=np.array([0.05, -0.6]),
                   s=np.array([0.06, 0.08]))


@pytest.mark.parametrize("family", ["gmm", "smm", "lmm"])
def test_a_visual_ahead_subgroup_is_imbalanced_not_balanced(family):
    from mmgap.gap import zscore, zscore_point

    g = _visual_ahead_gaps(family)
    g_hat, mean, std = zscore(g)
    old = _fit(family, g_hat)  # no raw origin: the smaller mean, i.e. the visual-ahead subgroup, is "balanced"
    assert unz(old.balanced_mean, mean, std) == pytest.approx(-0.6, abs=0.05)
    fit = _fit(family, g_hat, zero_at=zscore_point(0.0, mean, std))
    mu0_raw, mu1_raw = (unz(fit.means[k], mean, std) for k in (fit.balanced, fit.imbalanced))
    assert mu0_raw == pytest.approx(0.05, abs=0.03) and mu1_raw == pytest.approx(-0.6, abs=0.05)
    assert fit.weights[fit.balanced] == pytest.approx(0.7, abs=0.03)
    assert fit.towards_imbalanced == -1.0
    # the subgroup's clips get w1 near 1, the balanced ones near 0; the monotone form grows towards the left
    probe = zscore_point(np.array([-1.5, -0.6, 0.05, 0.5]), mean, std)
    for tail in ("eq9", "monotone"):
        _, w1 = fit.posterior(probe, tail=tail)
        assert w1[1] > 0.95 and w1[2] < 0.05
    _, w1m = fit.posterior(np.sort(zscore_point(np.linspace(-3, 1, 801), mean, std)), tail="monotone")
    assert np.all(np.diff(w1m) <= 1e-12)  # never increases walking away from the subgroup
    assert MixtureFit.from_dict(json.loads(json.dumps(fit.to_dict()))).balanced == fit.balanced


@pytest.mark.parametrize("family", ["gmm", "smm", "lmm"])
def test_where_the_dominant_modality_leads_the_raw_zero_rule_names_the_smaller_mean(family):
    from mmgap.gap import zscore, zscore_point

    g = _sample(family, n=3000, seed=9, w=np.array([0.7, 0.3]), mu=np.array([0.3, 0.9]), s=np.array([0.1, 0.1]))
    g_hat, mean, std = zscore(g)
    old, new = _fit(family, g_hat), _fit(family, g_hat, zero_at=zscore_point(0.0, mean, std))
    assert old.balanced == new.balanced == 0 and new.towards_imbalanced == 1.0
    grid = np.linspace(-3, 3, 101)
    for tail in ("eq9", "monotone"):
        np.testing.assert_array_equal(old.posterior(grid, tail=tail)[1], new.posterior(grid, tail=tail)[1])


def test_fit_gaps_passes_the_raw_zero_to_the_mixture():
    from mmgap.method import fit_gaps

    g = torch.as_tensor(_visual_ahead_gaps("gmm", seed=4), dtype=torch.float32)
    fit, mean, std, w0, w1, info = fit_gaps(g, torch.arange(g.numel()), cache=None)
    assert fit.zero_at == pytest.approx(-mean / std)
    assert info["mu0_raw"] == pytest.approx(0.05, abs=0.03) and info["mu1_raw"] == pytest.approx(-0.6, abs=0.05)
    assert info["pi1"] == pytest.approx(0.3, abs=0.03)


def test_equal_distances_to_zero_are_ambiguous():
    rng = np.random.default_rng(12)
    x = np.concatenate([rng.normal(-1.0, 0.2, 1500), rng.normal(1.02, 0.5, 1500)])
    with pytest.warns(AmbiguousBalancedWarning, match="nearest a raw gap of 0"):
        fit = fit_mixture(x, "gmm", zero_at=0.0)
    assert fit.ambiguous and fit.scales[fit.balanced] < fit.scales[fit.imbalanced]


def unz(z: float, mean: float, std: float) -> float:
    return float(z) * std + mean
