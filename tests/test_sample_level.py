"""The sample-level baselines (SMV, Remix, BSS) and the trainer's sample-plan hook: each core rule against
hand-computed values, the plan's batches, switching each method's distinctive part off, resume, and a smoke run
through mmgap.trainer.train_baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmgap import baselines
from mmgap.baselines.bss import difficulty, easiest, pacing
from mmgap.baselines.remix import assign, confidence, remix_plan
from mmgap.baselines.smv import contributions, copy_counts, smv_plan, visual_deficit
from mmgap.config import get_preset
from mmgap.models import AVClassifier
from mmgap.strategy import PlanGroup, SamplePlan
from tests.test_baselines import tiny_cache


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a loaded 2-core machine two spinning threads make tiny convs much slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_preset(**kw):
    return get_preset("smoke", batch_size=8, lr=0.05, warmup_epochs=2, adaptive_epochs=1, width=2, num_frames=2,
                      image_size=16, **kw)


def one_hot_logits(preds, k: int = 3) -> torch.Tensor:
    """Logits whose argmax is each of `preds`."""
    return torch.eye(k)[torch.tensor(preds)] * 5.0


# ---------------------------------------------------------------------------------------------- SMV


def test_smv_contributions_and_copy_counts_by_hand():
    y = torch.tensor([0, 0, 0, 0, 0])
    # (fused, audio alone, visual alone) right?  TTT, TTF, FFF, FTF, FFT
    fused = one_hot_logits([0, 0, 1, 1, 1])
    alone_a = one_hot_logits([0, 0, 1, 0, 1])
    alone_v = one_hot_logits([0, 1, 1, 1, 0])
    phi_a, phi_v = contributions(fused, alone_a, alone_v, y)
    # φ_a = (v_a + v_av − v_v)/2, φ_v = (v_v + v_av − v_a)/2 with v_av ∈ {0, 2}
    assert phi_a.tolist() == [1.0, 1.5, 0.0, 0.5, -0.5]
    assert phi_v.tolist() == [1.0, 0.5, 0.0, -0.5, 0.5]
    assert visual_deficit(phi_a, phi_v).tolist() == [0.0, 1.0, 0.0, 1.0, -1.0]
    assert copy_counts(phi_a).tolist() == [0, 0, 2, 1, 3]
    assert copy_counts(phi_v).tolist() == [0, 1, 2, 3, 1]
    plan = smv_plan(np.array([10, 11, 12, 13, 14]), phi_a.numpy(), phi_v.numpy())
    (group,) = plan.groups
    assert plan.num_rows == 5 + 6 + 7
    keep = group.keep()
    audio_copies = group.rows[(keep[:, 0] == 1) & (keep[:, 1] == 0)]
    visual_copies = group.rows[(keep[:, 0] == 0) & (keep[:, 1] == 1)]
    assert sorted(audio_copies.tolist()) == [12, 12, 13, 14, 14, 14]
    assert sorted(visual_copies.tolist()) == [11, 12, 12, 13, 13, 13, 14]
    assert sorted(group.rows[keep.sum(1) == 2].tolist()) == [10, 11, 12, 13, 14]


# ---------------------------------------------------------------------------------------------- Remix


def test_remix_confidence_uses_the_class_count():
    # p = [1/2, 1/4, 1/4] (M = 3): KL to uniform = 1/2·log2(3/2) + 2·1/4·log2(3/4) = 0.0849625 bits
    kl3 = confidence(torch.tensor([[math.log(2.0), 0.0, 0.0]]), 3)
    assert kl3.item() == pytest.approx(0.5 * math.log2(1.5) + 0.5 * math.log2(0.75), abs=1e-9)
    assert kl3.item() == pytest.approx(0.0849625, abs=1e-6)
    # p = [1/2, 1/6, 1/6, 1/6] (M = 4): 1/2·log2(2) + 3·1/6·log2(2/3) = 0.2075187 bits
    kl4 = confidence(torch.tensor([[math.log(3.0), 0.0, 0.0, 0.0]]), 4)
    assert kl4.item() == pytest.approx(0.2075187, abs=1e-6)
    assert confidence(torch.zeros(2, 5), 5).tolist() == pytest.approx([0.0, 0.0], abs=1e-12)
    with pytest.raises(ValueError, match="class count"):
        confidence(torch.zeros(1, 4), 6)


def test_remix_assigns_each_clip_to_its_less_confident_modality():
    confident, flat = torch.tensor([4.0, 0.0, 0.0, 0.0]), torch.zeros(4)
    la = torch.stack([flat, confident, flat, confident])
    lv = torch.stack([confident, flat, flat, confident])
    # audio flat -> audio subset; visual flat -> visual subset; ties -> visual (the authors' else branch)
    assert assign(la, lv, 4).tolist() == [True, False, False, False]
    plan = remix_plan(np.array([3, 4, 5, 6]), np.array([True, False, False, False]))
    visual, audio = plan.groups
    assert visual.rows.tolist() == [4, 5, 6] and audio.rows.tolist() == [3]
    assert visual.keep().tolist() == [[0.0, 1.0]] * 3 and audio.keep().tolist() == [[1.0, 0.0]]


def test_a_plan_trains_its_groups_in_order_and_each_batch_holds_one_modality(tmp_path):
    from mmgap.trainer import Trainer, split_rows

    cache = tiny_cache()
    tr = Trainer(cache, tiny_preset(), tmp_path, seed=0, device="cpu", progress=False)
    rows = split_rows(cache, "train")
    to_audio = np.arange(len(rows)) % 3 == 0
    plan = remix_plan(rows, to_audio)
    batches = list(tr.plan_batches(plan))
    keeps = [b["keep"] for b in batches]
    assert all(bool((k == k[0]).all()) for k in keeps)  # one modality per batch
    kinds = [tuple(k[0].tolist()) for k in keeps]
    first_audio = kinds.index((1.0, 0.0))
    assert set(kinds[:first_audio]) == {(0.0, 1.0)} and set(kinds[first_audio:]) == {(1.0, 0.0)}
    seen_v = torch.cat([b["index"] for b in batches[:first_audio]]).numpy()
    assert set(seen_v) <= set(rows[~to_audio]) and len(seen_v) == 8 * (int((~to_audio).sum()) // 8)
    seen_a = torch.cat([b["index"] for b in batches[first_audio:]]).numpy()
    assert sorted(seen_a) == sorted(rows[to_audio])  # 7 clips, less than a batch: kept whole
    again = list(tr.plan_batches(plan))  # the same (seed, epoch): the same batches
    assert all(torch.equal(a["index"], b["index"]) and torch.equal(a["frames"], b["frames"])
               for a, b in zip(batches, again, strict=True))
    with pytest.raises(ValueError, match="outside the training rows"):
        list(tr.plan_batches(SamplePlan((PlanGroup(np.array([len(cache) - 1])),))))


# ---------------------------------------------------------------------------------------------- BSS


def test_bss_difficulty_by_hand():
    y = torch.zeros(3, dtype=torch.long)
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0], [-2.0, 0.0]])
    # p_a = p_v: no disagreement; CE = softplus(−a) per branch, ℓ = 1.9·CE; min-max over the three:
    # softplus(2) − softplus(−2) = 2, so N(ℓ) = [0, (ln 2 − softplus(−2))/2, 1]
    d = difficulty(logits, logits, logits, y)
    mid = (math.log(2.0) - math.log1p(math.exp(-2.0))) / 2
    assert d.tolist() == pytest.approx([0.0, mid, 1.0], abs=1e-12)
    assert mid == pytest.approx(0.283110, abs=1e-6)
    # the disagreement term alone: same loss, p_a = p_v for clip 0, opposite for clip 1 -> N(1 − cos) = [0, 1]
    la = torch.tensor([[0.0, 3.0], [0.0, 3.0]])
    lv = torch.tensor([[0.0, 3.0], [3.0, 0.0]])
    f = torch.zeros(2, 2)
    yy = torch.tensor([0, 0])
    gap = difficulty(f, la, lv, yy) - difficulty(f, la, lv, yy, disagreement=False)
    assert gap.tolist() == pytest.approx([0.0, 1.0], abs=1e-12)


def test_bss_pacing_and_easiest_first():
    # λ_t = min(1, sqrt((1 − λ0²)/T·(t + 1) + λ0²)), λ0 = 0.1, T = 40
    assert pacing(0, 40) == pytest.approx(math.sqrt(0.99 / 40 + 0.01))
    assert pacing(0, 40) == pytest.approx(0.186414, abs=1e-6)
    assert pacing(9, 40) == pytest.approx(math.sqrt(0.2575))
    assert pacing(39, 40) == 1.0 and pacing(80, 40) == 1.0
    assert easiest(np.array([5, 6, 7, 8]), np.array([0.3, 0.1, 0.9, 0.1]), 0.5).tolist() == [6, 8]
    assert easiest(np.array([5, 6]), np.array([0.3, 0.1]), 0.01).tolist() == [6]  # at least one clip
    assert baselines.get("bss").schedule(120) == {"grow_epochs": 40}
    assert baselines.get("bss").schedule(12) == {"grow_epochs": 4}


# ---------------------------------------------------------------------------------------------- mechanism


def test_a_dropped_modality_gets_no_gradient_and_the_mask_changes_the_gradients():
    torch.manual_seed(0)
    model = AVClassifier(3, width=2)
    audio, frames = torch.randn(4, 1, 16, 16), torch.randn(4, 2, 3, 16, 16)
    y = torch.tensor([0, 1, 2, 0])

    def grads(keep):
        model.zero_grad()
        out = model(audio, frames, keep)
        torch.nn.functional.cross_entropy(out.fused, y).backward()
        return [p.grad.clone() for p in model.audio_encoder.parameters()], model.head.weight.grad.clone()

    full_a, full_w = grads(None)
    dropped_a, dropped_w = grads(torch.tensor([[0.0, 1.0]] * 4))
    assert all(bool((g == 0).all()) for g in dropped_a)
    assert any(bool((g != 0).any()) for g in full_a)
    assert not torch.allclose(full_w, dropped_w)
    assert bool((dropped_w[:, :model.feature_dim] == 0).all())  # W^a saw zero features


@pytest.mark.parametrize("name, kwargs, off", [
    ("smv", {}, {"copies": False}),
    ("remix", {"warmup": 0.0}, {"remix": False}),
    ("bss", {"grow": 1.0}, {"curriculum": False}),
])
def test_turning_the_distinctive_part_off_changes_the_plan(name, kwargs, off, tmp_path):
    from mmgap.trainer import Trainer

    cache = tiny_cache()
    tr = Trainer(cache, tiny_preset(), tmp_path, seed=0, device="cpu", progress=False)
    tr.stage_epochs = 3
    on_s, off_s = baselines.get(name, **kwargs), baselines.get(name, **kwargs, **off)
    on_s.setup(tr)
    off_s.setup(tr)
    on_plan, off_plan = on_s.sample_plan(tr, 0), off_s.sample_plan(tr, 0)
    n_train = len(cache.indices("train"))
    assert on_plan is not None
    if name == "smv":  # an untrained model is wrong on most clips: copies are added
        assert off_plan.num_rows == n_train < on_plan.num_rows
    else:
        assert off_plan is None
        assert on_plan.num_rows == n_train if name == "remix" else on_plan.num_rows < n_train


# ---------------------------------------------------------------------------------------------- training


@pytest.mark.parametrize("name, kwargs", [("smv", {}), ("remix", {"warmup": 1 / 3}), ("bss", {"grow": 1.0}),
                                          ("bss", {"grow": 1.0, "rescore": False})])
def test_sample_level_methods_train_and_resume_bit_identically(name, kwargs, tmp_path):
    """Smoke run through train_baseline, and an interrupted run resumed from last.pt ends with the same weights."""
    from mmgap.trainer import TrainingInterrupted, train_baseline

    cache, preset = tiny_cache(), tiny_preset()
    kw = dict(seed=0, epochs=3, device="cpu", progress=False, return_trainer=True)
    straight = train_baseline(cache, preset, baselines.get(name, **kwargs), tmp_path / "a", resume=False, **kw)
    hist = straight["history"]
    assert len(hist) == 3 and all(math.isfinite(r["train_loss"]) for r in hist)
    if name == "smv":
        assert all(r["smv_rows"] > len(cache.indices("train")) for r in hist)
    if name == "remix":
        assert "remix_audio_share" not in hist[0] and "remix_audio_share" in hist[1]
    if name == "bss":
        assert [r["bss_lambda"] for r in hist] == pytest.approx([pacing(t, 3) for t in range(3)])
    with pytest.raises(TrainingInterrupted):
        train_baseline(cache, preset, baselines.get(name, **kwargs), tmp_path / "b", resume=False,
                       interrupt_at_epoch=2, **kw)
    resumed = train_baseline(cache, preset, baselines.get(name, **kwargs), tmp_path / "b", resume=True, **kw)
    a, b = straight["trainer"].model.state_dict(), resumed["trainer"].model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [r["train_loss"] for r in hist] == [r["train_loss"] for r in resumed["history"]]


def test_sample_level_methods_are_grouped_and_scheduled():
    for name in ("smv", "remix", "bss"):
        assert baselines.FAMILIES[name] == "sample-level" and name in baselines.LABELS
    s = baselines.schedules(60, ["smv", "remix", "bss"])
    assert s == {"smv": {"warmup_epochs": 5}, "remix": {"warmup_epochs": 10}, "bss": {"grow_epochs": 20}}


def test_the_per_item_loader_serves_a_plan_too(tmp_path):
    """The path for caches that do not fit in memory yields the same rows, masks and labels as the fast path."""
    from mmgap.trainer import Trainer, split_rows

    cache = tiny_cache()
    rows = split_rows(cache, "train")
    plan = SamplePlan((PlanGroup(np.r_[rows, rows[:3]], keep_audio=np.r_[np.ones(len(rows), bool), np.zeros(3, bool)],
                                 shuffle=False),))
    got = {}
    for fast in (True, False):
        tr = Trainer(cache, tiny_preset(), tmp_path / str(fast), seed=0, device="cpu", progress=False,
                     fast_path=fast)
        batches = list(tr.plan_batches(plan))
        got[fast] = [(b["index"].tolist(), b["keep"].tolist(), b["label"].tolist()) for b in batches]
        assert sum(len(b["index"]) for b in batches) == 8 * ((len(rows) + 3) // 8)
    assert got[True] == got[False]
    first = got[True][0]
    assert first[0] == rows[:8].tolist() and first[1] == [[1.0, 1.0]] * 8
