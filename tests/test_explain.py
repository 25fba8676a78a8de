"""The "why it does not help here" numbers (mmgap.experiments.explain), the verdict helpers and the new figures."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from mmgap import plots
from mmgap.experiments import explain
from mmgap.experiments.reporting import arm_verdicts, phenomena_table, resplit


def _logits_for(p_true: list[float], label: list[int], classes: int = 4) -> torch.Tensor:
    """Logits whose softmax gives the true class probability p and spreads the rest evenly."""
    out = torch.zeros(len(p_true), classes, dtype=torch.float64)
    for i, (p, y) in enumerate(zip(p_true, label, strict=True)):
        rest = (1 - p) / (classes - 1)
        out[i] = math.log(rest)
        out[i, y] = math.log(p)
    return out


def test_accuracy_noise_is_the_binomial_standard_error_in_points() -> None:
    assert explain.accuracy_noise(0.9, 360) == pytest.approx(100 * math.sqrt(0.09 / 360))  # 1.58 points
    with pytest.raises(ValueError, match="at least one"):
        explain.accuracy_noise(0.5, 0)


def test_branch_confidence_per_tier() -> None:
    label = torch.tensor([0, 1, 2, 3])
    la = _logits_for([0.999, 0.995, 0.999, 0.5], [0, 1, 2, 3])
    lv = _logits_for([0.9, 0.2, 0.3, 0.25], [0, 1, 2, 3])
    tiers = np.array(["clean", "hard", "corrupt", "corrupt"])
    t = explain.branch_confidence(la, lv, label, tiers).set_index("tier")
    assert t.loc["clean", "median s^a"] == pytest.approx(0.999)
    assert t.loc["corrupt", "median s^a"] == pytest.approx((0.999 + 0.5) / 2)
    assert t.loc["all", "share s^a > 0.99"] == pytest.approx(0.75)
    assert t.loc["hard", "median 1 − s^v"] == pytest.approx(0.8)


def test_posterior_by_tier_shares_and_means() -> None:
    w1 = np.array([0.1, 0.9, 0.8, 0.2, 0.6])
    tiers = np.array(["clean", "corrupt", "corrupt", "hard", "hard"])
    t = explain.posterior_by_tier(w1, tiers).set_index("tier")
    assert t.loc["corrupt", "share flagged (w1 > 0.5)"] == 1.0
    assert t.loc["hard", "share flagged (w1 > 0.5)"] == 0.5
    assert t.loc["hard", "mean w1"] == pytest.approx(0.4)
    assert t.loc["corrupt", "share of all w1"] == pytest.approx(1.7 / 2.6)


def test_balanced_peak_is_the_mode_nearest_a_raw_gap_of_zero() -> None:
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(-1.3, 0.2, 300), rng.normal(1.0, 0.15, 700)]  # the imbalanced peak is the taller one
    assert explain.balanced_peak(x, zero_at=-1.6) == pytest.approx(-1.3, abs=0.1)
    assert explain.balanced_peak(x, zero_at=0.8) == pytest.approx(1.0, abs=0.1)


def test_penalty_sides_lower_audio_as_they_raise_visual() -> None:
    label = torch.tensor([0, 1])
    la = _logits_for([0.999, 0.9], [0, 1])
    lv = _logits_for([0.2, 0.5], [0, 1])
    out = explain.penalty_sides(la, lv, label, w1=np.array([1.0, 1.0]), mu0_raw=0.1, beta=0.0, gamma=1.0)
    # ∂L/∂s^a = 2 γ w1 (g − μ0): g = 0.799 and 0.4, both above μ0 = 0.1
    assert out["share g > μ0"] == 1.0
    assert out["mean ∂L/∂s^a, g > μ0"] == pytest.approx(np.mean([2 * 0.699, 2 * 0.3]))
    assert out["mean ∂L/∂s^v, g > μ0"] == pytest.approx(-out["mean ∂L/∂s^a, g > μ0"])
    assert out["mean Δs^a per unit step, g > μ0"] < 0 < out["mean Δs^v per unit step, g > μ0"]
    # |∇z s|² = s² |e_y − p|²: tiny for the saturated audio clip
    p = torch.softmax(la[0], 0)
    e = torch.nn.functional.one_hot(torch.tensor(0), 4).double()
    slope0 = float((0.999**2) * ((e - p) ** 2).sum())
    assert slope0 < 1e-5


def test_explanation_reads_a_saturated_audio_branch_and_misplaced_weight() -> None:
    conf = pd.DataFrame([{"tier": t, "clips": 10, "median s^a": 0.997, "median s^v": 0.5,
                          "share s^a > 0.99": 0.67, "median 1 − s^v": 0.5, "median gap s^a − s^v": 0.49}
                         for t in ("all", "clean", "hard", "corrupt")])
    post = pd.DataFrame([{"tier": "all", "clips": 30, "share flagged (w1 > 0.5)": 0.4, "mean w1": 0.4,
                          "share of all w1": 1.0},
                         {"tier": "hard", "clips": 10, "share flagged (w1 > 0.5)": 0.36, "mean w1": 0.32,
                          "share of all w1": 0.3},
                         {"tier": "corrupt", "clips": 10, "share flagged (w1 > 0.5)": 0.89, "mean w1": 0.81,
                          "share of all w1": 0.6}])
    loc = {"mu0_z": -0.46, "mu1_z": 1.2, "pi1": 0.32, "balanced_peak_z": -1.3, "zero_z": -1.5, "mu0_raw": 0.31,
           "gap_mean_raw": 0.4, "gap_std_raw": 0.2}
    grad = {"share g > μ0": 0.4, "mean ∂L/∂s^a, g > μ0": 0.5, "mean ∂L/∂s^v, g > μ0": -0.5,
            "mean |∇z s^a|²": 1e-4, "mean |∇z s^v|²": 0.1}
    e = explain.Explanation(conf, post, loc, grad, explain.accuracy_noise(0.9, 360), 360, 0.9)
    f = e.findings()
    assert f["audio_saturated"] and f["w1_on_corrupt_more_than_hard"] and f["balanced_off_peak"]
    assert f["pull_target_off_zero"] and f["audio_side_frozen"]
    text = "\n".join(e.lines())
    assert "89 % of `corrupt` clips (mean w1" in text and "of all the weight w1" in text.lower()
    assert "±1.6 points" in text
    assert "What would have to change" in text and "not saturated" in text


def test_resplit_when_pi1_crosses_half_or_means_swap() -> None:
    assert resplit(0.32, 0.72, 0.31, 0.7, 0.1, 0.6)  # π1 doubled across one half
    assert not resplit(0.32, 0.20, 0.31, 0.7, 0.25, 0.6)  # π1 shrinks, the components keep their places
    assert resplit(0.3, 0.3, 0.0, 1.0, 0.9, 0.1)  # the means swapped
    assert not resplit(0.3, float("nan"), 0.0, 1.0, 0.9, 0.1)


def _row(**kw) -> dict:
    base = {"start_pi1": 0.3, "end_pi1": 0.2, "start_mu0_raw": 0.0, "start_mu1_raw": 0.8, "end_mu0_raw": 0.0,
            "end_mu1_raw": 0.6, "start_mu_sep": 0.8, "end_mu_sep": 0.6, "start_gap_mean": 0.43, "end_gap_mean": 0.44,
            "warm_acc": 0.88, "last_acc": 0.90, "acc": 0.903, "warm_acc_v": 0.5, "last_acc_v": 0.55, "acc_v": 0.55}
    return {**base, **kw}


def test_arm_verdicts_use_the_same_epoch_and_the_arms_own_start() -> None:
    row, row_c = _row(), _row(end_pi1=0.25, end_gap_mean=0.46, last_acc=0.89, acc=0.911)
    t = arm_verdicts(row, row_c, n_test=360).set_index(["quantity", "epoch"])
    # mean gap: below the control (0.44 < 0.46) but above its own start (0.43): not "yes"
    assert t.loc[("mean gap, raw", "last"), "verdict (one seed)"] == "beats the control, not its own start"
    # fused accuracy at the selected epoch: the control wins (0.911 vs 0.903), within 2 binomial errors: a tie
    sel = t.loc[("fused acc. (%)", "selected")]
    assert sel["adaptive"] == pytest.approx(90.3) and sel["control"] == pytest.approx(91.1)
    assert sel["verdict (one seed)"].startswith("a tie")
    assert t.loc[("π1, imbalanced weight", "last"), "verdict (one seed)"] == "yes, from its start and vs the control"
    # a tier's accuracy gets its own error: 6 points on 110 hard clips is a tie (±9.5), on 360 not (±5.3)
    tier_row = _row(warm_acc_v_hard=0.32, last_acc_v_hard=0.50, acc_v_hard=0.48)
    tier_c = _row(last_acc_v_hard=0.45, acc_v_hard=0.42)
    wide = arm_verdicts(tier_row, tier_c, n_test={"all": 360, "hard": 110}).set_index(["quantity", "epoch"])
    narrow = arm_verdicts(tier_row, tier_c, n_test=360).set_index(["quantity", "epoch"])
    assert wide.loc[("visual acc., hard (%)", "selected"), "verdict (one seed)"].startswith("a tie")
    assert narrow.loc[("visual acc., hard (%)", "selected"), "verdict (one seed)"].startswith("yes")
    split = arm_verdicts(_row(end_pi1=0.72), row_c, n_test=360).set_index(["quantity", "epoch"])
    assert split.loc[("π1, imbalanced weight", "last"), "verdict (one seed)"].startswith("not comparable")


def test_phenomena_table_requires_the_arms_own_start() -> None:
    rows = []
    for seed, (a_end, c_end) in enumerate([(0.44, 0.50), (0.445, 0.51), (0.44, 0.52)]):
        rows.append({"setting": "full", "seed": seed, **_row(end_gap_mean=a_end)})
        rows.append({"setting": "control", "seed": seed, **_row(end_gap_mean=c_end)})
    t = phenomena_table(pd.DataFrame(rows), "full", "control").set_index("quantity")
    assert t.loc["mean gap, raw", "verdict"].startswith("beats the control, but not its own start")


def test_new_figures_render(tmp_path) -> None:
    rows = pd.DataFrame({"method": ["concat", "concat", "ours_prob", "ours_prob", "control", "control"],
                         "label": ["Concat", "Concat", "Ours", "Ours", "Control", "Control"],
                         "seed": [0, 1] * 3, "acc": [0.8, 0.82, 0.85, 0.84, 0.86, 0.85],
                         "acc_v_hard": [0.3, 0.32, 0.35, 0.31, 0.36, 0.33]})
    fam = {"concat": "reference", "control": "control", "ours_prob": "ours"}
    fig = plots.plot_method_dots(rows, fam, ("reference", "control", "ours"), path=tmp_path / "t2.png")
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["Concat", "Control", "Ours"]
    assert len(fig.axes) == 2
    plots.plot_pipeline(path=tmp_path / "pipe.png")
    plots.plot_tier_gaps({"start": {"clean": 0.1, "hard": 0.4, "corrupt": 0.6}}, path=tmp_path / "tiers.png")
    for name in ("t2", "pipe", "tiers"):
        assert (tmp_path / f"{name}.png").stat().st_size > 2000
