"""mmgap.sample_scores: AUROC and per-tier means on tiny fixtures, the scores of one model against the pure
functions they come from, mean ± std over seeds, and the ROC figure."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from mmgap import plots, sample_scores
from mmgap.baselines import bss, remix, smv
from mmgap.gap import true_class_prob
from mmgap.models import AVClassifier

TIER_ROWS = np.array(["clean", "clean", "hard", "hard", "corrupt", "corrupt"])


def test_auroc_of_a_perfect_an_inverted_and_a_constant_score():
    assert sample_scores.auroc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 1.0
    assert sample_scores.auroc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 0.0
    assert sample_scores.auroc(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0.5
    # one pair of four out of order: 3/4
    assert sample_scores.auroc(np.array([0.0, 2.5]), np.array([2.0, 3.0])) == 0.75
    assert math.isnan(sample_scores.auroc(np.array([]), np.array([1.0])))


def test_grade_by_hand():
    scores = pd.DataFrame({"tier": TIER_ROWS, "up": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
                           "down": [5.0, 4.0, 3.0, 2.0, 1.0, 0.0], "hard_only": [0.0, 0.0, 1.0, 1.0, 0.0, 0.0]})
    g = sample_scores.grade(scores, ("up", "down", "hard_only"))
    assert g.loc["up", ["AUROC imbalanced", "AUROC hard vs clean", "AUROC corrupt vs clean"]].tolist() == [1, 1, 1]
    assert g.loc["down", ["AUROC imbalanced", "AUROC hard vs clean", "AUROC corrupt vs clean"]].tolist() == [0, 0, 0]
    # hard_only: hard > clean always; corrupt ties clean; imbalanced: 4 positives vs 2 negatives, 4 wins + 4 ties
    assert g.loc["hard_only", "AUROC hard vs clean"] == 1.0
    assert g.loc["hard_only", "AUROC corrupt vs clean"] == 0.5
    assert g.loc["hard_only", "AUROC imbalanced"] == pytest.approx((4 + 0.5 * 4) / 8)
    assert g.loc["up", ["mean clean", "mean hard", "mean corrupt"]].tolist() == [0.5, 2.5, 4.5]
    assert sample_scores.best_score(g, "hard vs clean")[1] == 1.0
    with pytest.raises(ValueError, match="ground-truth tier"):
        sample_scores.grade(pd.DataFrame({"tier": [None, None], "up": [0.0, 1.0]}), ("up",))


def test_over_seeds_is_mean_and_sample_std():
    a = pd.DataFrame({"AUROC imbalanced": [0.6, 0.9]}, index=pd.Index(["x", "y"], name="score"))
    b = pd.DataFrame({"AUROC imbalanced": [0.8, 0.9]}, index=pd.Index(["x", "y"], name="score"))
    t = sample_scores.over_seeds({0: a, 1: b})
    # x: mean 0.7, sample std sqrt(((0.1)² + (0.1)²)/1) = 0.1414
    assert t.loc["x", "AUROC imbalanced"] == "0.700 ± 0.141"
    assert t.loc["y", "AUROC imbalanced"] == "0.900 ± 0.000"
    assert list(t.index) == ["x", "y"]
    assert sample_scores.over_seeds({3: a}).loc["x", "AUROC imbalanced"] == "0.600 ± 0.000"


class TierCache:
    """The cache attributes per_sample_scores reads: ground truth per row."""

    def __init__(self, tiers):
        self.visual_tier = np.asarray(tiers)
        self.imbalanced = self.visual_tier != "clean"


def test_per_sample_scores_follow_the_methods_functions():
    torch.manual_seed(0)
    n, k = 60, 3
    y = torch.arange(n) % k
    tiers = np.array(["clean"] * 30 + ["hard"] * 15 + ["corrupt"] * 15)
    la = torch.nn.functional.one_hot(y, k).float() * 4.0 + 0.3 * torch.randn(n, k)
    lv = torch.nn.functional.one_hot(y, k).float() * torch.tensor([3.0] * 30 + [0.5] * 15 + [-1.0] * 15)[:, None]
    lv = lv + 0.3 * torch.randn(n, k)
    fused = la + lv
    out = {"fused": fused, "logit_a": la, "logit_v": lv, "label": y, "index": torch.arange(n) + 100}
    model = AVClassifier(k, width=2)
    with torch.no_grad():
        model.head.bias.copy_(torch.tensor([0.2, -0.2, 0.0]))
    cache = TierCache(np.r_[np.array(["clean"] * 100), tiers])
    s = sample_scores.per_sample_scores(out, model, cache)
    assert list(s.columns) == ["row", "tier", *sample_scores.SCORES]
    assert s["tier"].tolist() == tiers.tolist() and s["row"].tolist() == list(range(100, 160))
    gap = (true_class_prob(la, y) - true_class_prob(lv, y)).double().numpy()
    np.testing.assert_allclose(s["raw gap"], gap, rtol=1e-12)
    assert s["gap > t"].tolist() == (gap > 0).astype(float).tolist()
    half_b = torch.tensor([0.1, -0.1, 0.0])
    phi_a, phi_v = smv.contributions(fused, la + half_b, lv + half_b, y)
    np.testing.assert_array_equal(s["SMV deficit"], (phi_a - phi_v).double().numpy())
    np.testing.assert_array_equal(s["Remix → weak"], (~remix.assign(la, lv, k)).double().numpy())
    np.testing.assert_allclose(s["BSS difficulty"], bss.difficulty(fused, la, lv, y).numpy())
    assert ((s["w1 (Eq. 9)"] >= 0) & (s["w1 (Eq. 9)"] <= 1)).all()
    g = sample_scores.grade(s)
    # the visual branch is wrong on corrupt clips and right on clean ones: every gap-based score separates them
    assert g.loc["raw gap", "AUROC corrupt vs clean"] == 1.0
    assert g.loc["SMV deficit", "mean corrupt"] > g.loc["SMV deficit", "mean clean"]


def test_the_roc_figure_draws_every_score_per_contrast(tmp_path):
    scores = pd.DataFrame({"tier": TIER_ROWS, "up": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
                           "down": [5.0, 4.0, 3.0, 2.0, 1.0, 0.0]})
    fig = plots.plot_score_rocs(scores, ["up", "down"], path=tmp_path / "roc.png")
    assert (tmp_path / "roc.png").is_file()
    left, right = fig.axes
    labels = [line.get_label() for line in left.get_lines()]
    assert labels == ["up: 1.000", "down: 0.000", "chance: 0.500"]
    assert right.get_title() == "corrupt vs clean"


def test_warmup_scores_from_a_checkpoint(tmp_path):
    from mmgap.config import get_preset
    from mmgap.data.cache import FeatureCache
    from mmgap.trainer import Trainer

    rng = np.random.default_rng(0)
    n = 30
    labels = np.arange(n) % 3
    split = np.array([0] * 18 + [1] * 6 + [2] * 6)
    tiers = np.array(["clean", "hard", "corrupt"] * 10)
    cache = FeatureCache.from_arrays(rng.normal(size=(n, 12, 12)), rng.integers(0, 255, (n, 2, 16, 16, 3)),
                                     labels, split, ["a", "b", "c"], visual_tier=tiers, imbalanced=tiers != "clean")
    preset = get_preset("smoke", width=2, num_frames=2, image_size=16, batch_size=6)
    tr = Trainer(cache, preset, tmp_path / "w", seed=0, device="cpu", progress=False)
    path = tr.save_checkpoint("warmup.pt")
    s = sample_scores.warmup_scores(cache, preset, path, seed=0, device="cpu")
    assert len(s) == 18 and s["tier"].tolist() == tiers[:18].tolist()
    assert set(sample_scores.SCORES) <= set(s.columns)
