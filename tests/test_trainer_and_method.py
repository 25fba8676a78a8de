"""The generic trainer (mmgap.trainer) and the two-stage method (mmgap.method): learning, history,
checkpoints, bit-identical resume, optimizer reset, posteriors, selection."""

from __future__ import annotations

import sys
from fractions import Fraction

import numpy as np
import pytest
import torch

import mmgap.method as method_mod
import mmgap.trainer as trainer_mod
from mmgap.checkpoint import CheckpointError, load_safe, save_atomic
from mmgap.config import get_preset
from mmgap.data import FeatureCache
from mmgap.losses import AdaptiveLossConfig
from mmgap.method import AdaptiveStrategy, WarmupStrategy, finetune, run_control, run_two_stage
from mmgap.strategy import Strategy
from mmgap.trainer import Trainer, TrainingInterrupted, load_history, load_run, resolve_device, train_baseline

N_CLASSES = 4
pytestmark = pytest.mark.filterwarnings("ignore::mmgap.mixture.AmbiguousBalancedWarning")  # tiny data, 2 epochs
TIMING_KEYS = {"seconds", "train_seconds", "eval_seconds", "refit_seconds"}


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: these models are tiny, and on a shared 2-core machine extra threads only spin."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_cache(n_per_class: int = 30, seed: int = 0) -> FeatureCache:
    """4 classes; audio: a bright frequency band per class; frames: a bright quadrant per class.

    A third of the clips have an uninformative visual track (no quadrant), so the gap has a second mode.
    Splits: 60 % train, 20 % val, 20 % test.
    """
    rng = np.random.default_rng(seed)
    n = n_per_class * N_CLASSES
    labels = rng.permutation(np.repeat(np.arange(N_CLASSES), n_per_class))
    audio = rng.normal(0.0, 1.0, (n, 16, 16))
    frames = rng.integers(0, 60, (n, 2, 16, 16, 3))
    imbalanced = rng.random(n) < 0.33
    for i, y in enumerate(labels):
        audio[i, 4 * y:4 * y + 4, :] += 2.0
        if not imbalanced[i]:
            r, c = 8 * (y // 2), 8 * (y % 2)
            frames[i, :, r:r + 8, c:c + 8, :] += 150
    split = np.array([0] * int(0.6 * n) + [1] * int(0.2 * n) + [2] * (n - int(0.6 * n) - int(0.2 * n)))
    return FeatureCache.from_arrays(audio, frames, labels, split, [f"c{k}" for k in range(N_CLASSES)],
                                    imbalanced=imbalanced)


@pytest.fixture(scope="module")
def cache() -> FeatureCache:
    return make_cache()


@pytest.fixture(scope="module")
def mech_cache() -> FeatureCache:
    """Another draw of the same task, for the mechanics tests (resume, reuse, optimizer state)."""
    return make_cache(seed=1)


@pytest.fixture(scope="module")
def full_runs(mech_cache, tmp_path_factory):
    """Uninterrupted reference runs, one per optimizer setting, shared by the resume tests."""
    runs = {}

    def get(keep_state: bool):
        if keep_state not in runs:
            d = tmp_path_factory.mktemp(f"full_keep{keep_state}")
            res = run_two_stage(mech_cache, preset(reset_optimizer=not keep_state), d, seed=3, device="cpu",
                                progress=False)
            runs[keep_state] = (res, load_safe(d / "last.pt"), d)
        return runs[keep_state]

    return get


def preset(**kw):
    base = dict(batch_size=8, lr=0.02, warmup_epochs=2, adaptive_epochs=2, width=4, num_frames=2, image_size=16)
    base.update(kw)
    return get_preset("smoke", **base)


def strip_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in history]


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ---------------------------------------------------------------------------------------------- unit


def test_resolve_device(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="not one of"):
        resolve_device("gpu")


def test_checkpoint_atomic_and_safe(tmp_path):
    path = save_atomic({"w": torch.arange(3), "name": "x", "n": 2}, tmp_path / "c.pt")
    # no temporary file left behind; the digest beside the checkpoint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt", "c.pt.sha256"]
    obj = load_safe(path)
    assert torch.equal(obj["w"], torch.arange(3)) and obj["name"] == "x" and obj["n"] == 2
    with pytest.raises(CheckpointError, match="does not exist"):
        load_safe(tmp_path / "missing.pt")

    torch.save({"obj": Fraction(1, 3)}, tmp_path / "evil.pt")  # an arbitrary Python object
    with pytest.raises(CheckpointError, match="safe loading refuses") as info:
        load_safe(tmp_path / "evil.pt")
    assert "weights_only" not in str(info.value)  # never the advice to load it unsafely
    (tmp_path / "trunc.pt").write_bytes(path.read_bytes()[:20])
    with pytest.raises(CheckpointError):
        load_safe(tmp_path / "trunc.pt")


# ---------------------------------------------------------------------------------------------- end to end


def test_two_stage_learns_history_and_checkpoints(cache, tmp_path):
    p = preset(warmup_epochs=4, adaptive_epochs=2, lr=0.05)
    res = run_two_stage(cache, p, tmp_path / "run", seed=0, device="cpu", progress=False)
    assert res["test_acc"] > 0.6  # chance is 0.25 for 4 balanced classes
    assert res["val_acc"] == max(r["val_acc"] for r in res["history"] if r["stage"] == "adaptive")
    hist = res["history"]
    assert [r["stage"] for r in hist] == ["warmup"] * 4 + ["adaptive"] * 2
    assert [r["epoch"] for r in hist] == list(range(6))
    assert [r["stage_epoch"] for r in hist] == [0, 1, 2, 3, 0, 1]
    common = {"train_loss", "train_fusion", "train_uni_a", "train_uni_v", "lr", "seconds", "is_best",
              *(f"{s}_{m}" for s in ("val", "test") for m in ("acc", "f1", "acc_a", "acc_v", "loss"))}
    for row in hist:
        assert common <= row.keys()
    n_train = len(cache.indices("train"))
    for row in hist[4:]:
        assert {"train_gap_reg", "train_align", "train_lambda_t", "mixture", "bic1", "bic2", "gap_hist",
                "refit_seconds", "mu0_raw", "auroc_w1"} <= row.keys()
        assert sum(row["gap_hist"]) == n_train  # every training clip is in the histogram
        assert len(row["gap_hist"]) == len(row["gap_hist_edges"]) - 1
        # μ_raw = μ_g + σ_g·μ0 (raw units of the balanced mean, Eq. 7 inverted)
        assert row["mu0_raw"] == pytest.approx(row["gap_mean"] + row["gap_std"] * row["mu0"], abs=1e-12)
    assert hist[4]["train_lambda_t"] == pytest.approx(1.0) and hist[5]["train_lambda_t"] == pytest.approx(0.95)
    assert res["timings"]["refit_seconds_mean"] > 0 and "refit_overhead" in res["timings"]
    for name in ("last.pt", "best.pt", "warmup.pt"):
        ck = torch.load(tmp_path / "run" / name, weights_only=True)  # loads under weights_only
        assert "model" in ck and "optimizer" in ck
    assert load_safe(tmp_path / "run" / "warmup.pt")["stage"] == "warmup"
    last = load_safe(tmp_path / "run" / "last.pt")
    assert last["stage"] == "adaptive" and last["epoch"] == 6 and last["stage_complete"]
    # A finished run resumes without training and reports the same result.
    again = run_two_stage(cache, p, tmp_path / "run", seed=0, device="cpu", progress=False)
    assert strip_timing(again["history"]) == strip_timing(hist) and again["test_acc"] == res["test_acc"]


@pytest.mark.parametrize("interrupt_at, keep_state", [(1, False), (2, True), (3, False)])
def test_resume_is_bit_identical(mech_cache, full_runs, tmp_path, interrupt_at, keep_state):
    """Interrupt mid warm-up (1), at the stage boundary (2) or mid adaptive (3); resume; compare to one run."""
    p = preset(reset_optimizer=not keep_state)
    full, a, _ = full_runs(keep_state)
    with pytest.raises(TrainingInterrupted):
        run_two_stage(mech_cache, p, tmp_path / "cut", seed=3, device="cpu", progress=False,
                      interrupt_at_epoch=interrupt_at)
    assert load_safe(tmp_path / "cut" / "last.pt")["epoch"] == interrupt_at
    resumed = run_two_stage(mech_cache, p, tmp_path / "cut", seed=3, device="cpu", progress=False)
    b = load_safe(tmp_path / "cut" / "last.pt")
    assert_same_state(a["model"], b["model"])
    for k in ("w0", "w1"):
        assert torch.equal(a["strategy"][k], b["strategy"][k])
    assert strip_timing(full["history"]) == strip_timing(resumed["history"])
    for k in ("val_acc", "val_f1", "test_acc", "test_f1", "test_acc_a", "test_acc_v", "best_epoch"):
        assert full[k] == resumed[k], k


def test_warmup_checkpoint_reuse_matches_full_run(mech_cache, full_runs, tmp_path):
    full, last, full_dir = full_runs(False)
    reuse = run_two_stage(mech_cache, preset(), tmp_path / "reuse", seed=3, device="cpu", progress=False,
                          warmup_ckpt=full_dir / "warmup.pt")
    assert strip_timing(reuse["history"]) == strip_timing(full["history"])
    assert_same_state(last["model"], load_safe(tmp_path / "reuse" / "last.pt")["model"])
    with pytest.raises(ValueError, match="different settings"):  # resuming a run with other settings is refused
        run_two_stage(mech_cache, preset(lr=0.01), full_dir, seed=3, device="cpu", progress=False)
    with pytest.raises(ValueError, match="seed"):
        run_two_stage(mech_cache, preset(), full_dir, seed=4, device="cpu", progress=False)


class _ProbeOptimizer(Strategy):
    """Records the optimizer state at the first batch of the stage, then trains with the warm-up loss."""

    name = "probe"

    def __init__(self) -> None:
        self.state_at_start: dict | None = None

    def on_epoch_start(self, trainer, epoch):
        if epoch == 0:
            self.state_at_start = {id(p): s["momentum_buffer"].clone() for p, s in trainer.optimizer.state.items()}

    def training_step(self, trainer, batch, epoch):
        return WarmupStrategy().training_step(trainer, batch, epoch)


def test_optimizer_reset_vs_keep(mech_cache, tmp_path):
    results = {}
    for keep in (False, True):
        tr = Trainer(mech_cache, preset(), tmp_path / f"k{keep}", seed=0, device="cpu", progress=False)
        tr.fit(WarmupStrategy(), 1, "warmup")
        buffers = {id(p): s["momentum_buffer"].clone() for p, s in tr.optimizer.state.items()}
        assert len(buffers) == sum(1 for _ in tr.model.parameters())
        probe = _ProbeOptimizer()
        tr.fit(probe, 1, "adaptive", reset_optimizer=not keep)
        if keep:  # the warm-up momentum carries over, buffer for buffer
            assert probe.state_at_start.keys() == buffers.keys()
            assert all(torch.equal(probe.state_at_start[k], buffers[k]) for k in buffers)
        else:  # a fresh optimizer: no momentum at all
            assert probe.state_at_start == {}
        results[keep] = {k: v.clone() for k, v in tr.model.state_dict().items()}
    assert not torch.equal(results[False]["head.weight"], results[True]["head.weight"])


def test_adaptive_posteriors_per_sample(cache, tmp_path, monkeypatch):
    tr = Trainer(cache, preset(), tmp_path / "r", seed=0, device="cpu", progress=False)
    tr.fit(WarmupStrategy(), 3, "warmup")
    strat = AdaptiveStrategy(AdaptiveLossConfig(), family="gmm", refit_every=2, seed=0)
    seen = []
    real = method_mod.adaptive_loss

    def spy(out, y, w0, w1, mu0_raw, epoch, cfg):
        seen.append((w0.clone(), w1.clone(), mu0_raw, epoch))
        return real(out, y, w0, w1, mu0_raw, epoch, cfg)

    monkeypatch.setattr(method_mod, "adaptive_loss", spy)
    batches_seen = []
    orig_step = strat.training_step

    def step(trainer, batch, epoch):
        batches_seen.append((batch["index"].clone(), strat.w0.clone(), strat.w1.clone()))
        return orig_step(trainer, batch, epoch)

    strat.training_step = step
    tr.fit(strat, 3, "adaptive")
    train_rows = torch.as_tensor(cache.indices("train"))
    other = torch.as_tensor(np.setdiff1d(np.arange(len(cache)), cache.indices("train")))
    w0, w1 = strat.w0, strat.w1
    assert w0.shape == (len(cache),) and w1.shape == (len(cache),)
    torch.testing.assert_close(w0[train_rows] + w1[train_rows], torch.ones(len(train_rows)), rtol=0, atol=1e-6)
    assert ((w0 >= 0) & (w0 <= 1)).all() and w0[train_rows].std() > 0.01  # per sample, not one shared value
    assert torch.equal(w0[other], torch.ones(len(other))) and torch.equal(w1[other], torch.zeros(len(other)))
    assert len(seen) == len(batches_seen) == 3 * (len(train_rows) // 8)
    # the batch's own rows' weights
    for (bw0, bw1, _mu, _ep), (idx, w0_now, w1_now) in zip(seen, batches_seen, strict=True):
        assert torch.equal(bw0, w0_now[idx]) and torch.equal(bw1, w1_now[idx])
    assert sorted({s[3] for s in seen}) == [0, 1, 2]  # λ_t's epoch counts adaptive epochs from 0
    refits = [r["refitted"] for r in tr.history if r["stage"] == "adaptive"]
    assert refits == [True, False, True]  # refit_every = 2


def test_selection_uses_validation_only(cache, tmp_path, monkeypatch):
    """Scripted metrics: val peaks at epoch 1, test at epoch 0; the result must be epoch 1's test score."""
    script = {"val": iter([0.5, 0.7, 0.6, 0.7]), "test": iter([0.9, 0.4, 0.8, 0.95])}

    def fake_eval(self, split, strategy=None):
        acc = next(script[split])
        return {"acc": acc, "f1": acc, "acc_a": 0.0, "acc_v": 0.0, "loss": 1.0}

    monkeypatch.setattr(Trainer, "evaluate", fake_eval)
    res = train_baseline(cache, preset(), WarmupStrategy(), tmp_path / "b", seed=0, epochs=4, device="cpu",
                         progress=False)
    assert res["best_epoch"] == 1 and res["val_acc"] == 0.7 and res["test_acc"] == 0.4
    assert load_safe(tmp_path / "b" / "best.pt")["epoch"] == 2  # saved after epoch index 1 completed
    assert [r["is_best"] for r in res["history"]] == [True, True, False, False]  # ties keep the earlier epoch
    with pytest.raises(ValueError, match="never used for selection"):
        Trainer(cache, preset(), tmp_path / "c", device="cpu").fit(WarmupStrategy(), 1, "x", select_on="test")


def test_collect_outputs_and_evaluate(cache, tmp_path):
    tr = Trainer(cache, preset(), tmp_path / "r", seed=0, device="cpu", progress=False)
    out = tr.collect_outputs("val")
    n_val = len(cache.indices("val"))
    assert out["fused"].shape == (n_val, N_CLASSES) and out["feat_a"].shape == (n_val, 32)
    assert sorted(out["index"].tolist()) == cache.indices("val").tolist()
    assert torch.equal(out["label"], torch.as_tensor(cache.labels[out["index"].numpy()]))
    m = tr.evaluate("val")
    expected_acc = (out["fused"].argmax(1) == out["label"]).float().mean().item()
    assert m["acc"] == pytest.approx(expected_acc)
    assert m["loss"] == pytest.approx(torch.nn.functional.cross_entropy(out["fused"], out["label"]).item(), rel=1e-5)


def test_finetune_on_balanced_subset(mech_cache, full_runs, tmp_path):
    p = preset(finetune_epochs=1)
    _, _, full_dir = full_runs(False)
    res = finetune(mech_cache, p, tmp_path / "ft", full_dir / "warmup.pt", tau=0.5, seed=3, device="cpu",
                   progress=False)
    assert 8 <= res["subset_size"] < res["train_size"] == len(mech_cache.indices("train"))
    assert [r["stage"] for r in res["history"]] == ["warmup", "warmup", "finetune"]
    with pytest.raises(ValueError, match="tau"):
        finetune(mech_cache, p, tmp_path / "ft2", full_dir / "warmup.pt", tau=1.5, device="cpu")


def test_per_item_loader_path_matches_fast_path(cache, tmp_path):
    """The DataLoader path (caches too big for memory) feeds the same evaluation inputs as the fast path."""
    fast = Trainer(cache, preset(), tmp_path / "f", seed=0, device="cpu", progress=False, fast_path=True)
    slow = Trainer(cache, preset(), tmp_path / "s", seed=0, device="cpu", progress=False, fast_path=False)
    kinds = {type(t.batches("val", train=False).inner).__name__ for t in (fast, slow)}
    assert kinds == {"TensorBatcher", "AVLoader"}
    assert fast.evaluate("val") == slow.evaluate("val")
    slow.fit(WarmupStrategy(), 1, "warmup")
    assert np.isfinite(slow.history[0]["train_loss"]) and len(slow.history) == 1


def test_no_host_sync_inside_training_steps(cache, tmp_path, monkeypatch):
    """Between the first training step and the epoch's one read-out, no tensor is converted to a Python value.

    (On CUDA each such conversion would stall the GPU; here any .item()/.tolist()/float()/bool()/.cpu() raises.)
    """
    import mmgap.metrics as metrics_mod

    state = {"in_steps": False, "steps": 0}

    def forbid(name):
        original = getattr(torch.Tensor, name)

        def guarded(self, *a, **k):
            # the batcher's augmentation parameters are drawn on the host by a CPU generator and read there as
            # Python ints (crop offsets); that is no device sync, so calls from the data module are allowed
            caller = sys._getframe(1).f_code.co_filename
            if state["in_steps"] and not (self.device.type == "cpu" and caller.endswith("mmgap/data/dataset.py")):
                raise AssertionError(f"host sync: Tensor.{name} called inside the training loop")
            return original(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, guarded)

    for name in ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__"):
        forbid(name)
    real_compute = metrics_mod.MeanAccumulator.compute

    def compute(self):  # the epoch's single read-out ends the guarded region
        state["in_steps"] = False
        return real_compute(self)

    monkeypatch.setattr(metrics_mod.MeanAccumulator, "compute", compute)

    class Guard(Strategy):
        def __init__(self, inner):
            self.inner, self.name = inner, inner.name

        def setup(self, trainer):
            self.inner.setup(trainer)

        def on_epoch_start(self, trainer, epoch):
            self.inner.on_epoch_start(trainer, epoch)

        def training_step(self, trainer, batch, epoch):
            state["in_steps"] = True
            state["steps"] += 1
            return self.inner.training_step(trainer, batch, epoch)

        def on_epoch_end(self, trainer, epoch):
            return self.inner.on_epoch_end(trainer, epoch)

        def state_dict(self):
            return self.inner.state_dict()

    tr = Trainer(cache, preset(), tmp_path / "r", seed=0, device="cpu", progress=False)
    tr.fit(Guard(WarmupStrategy()), 1, "warmup")
    tr.fit(Guard(AdaptiveStrategy(AdaptiveLossConfig(), seed=0)), 1, "adaptive")
    assert state["steps"] == 2 * (len(cache.indices("train")) // 8)
    assert len(tr.history) == 2

    class Syncing(WarmupStrategy):  # the guard itself works: a step that reads a loss value is caught
        def training_step(self, trainer, batch, epoch):
            loss, parts = super().training_step(trainer, batch, epoch)
            loss.item()
            return loss, parts

    with pytest.raises(AssertionError, match="host sync: Tensor.item"):
        tr.fit(Guard(Syncing()), 1, "syncing")
    state["in_steps"] = False


def test_gap_source_train_reuses_training_step_gaps(mech_cache, tmp_path):
    """gap_source="train": the first refit uses an eval pass, later ones the gaps recorded during training steps."""
    tr = Trainer(mech_cache, preset(), tmp_path / "r", seed=0, device="cpu", progress=False)
    tr.fit(WarmupStrategy(), 2, "warmup")
    strat = AdaptiveStrategy(AdaptiveLossConfig(), refit_every=1, seed=0, gap_source="train")
    recorded = []
    real_refit = strat.refit

    def refit(trainer, epoch):
        if strat._train_gap is not None:
            recorded.append(strat._train_gap.clone())
        real_refit(trainer, epoch)

    strat.refit = refit
    tr.fit(strat, 2, "adaptive")
    rows = [r for r in tr.history if r["stage"] == "adaptive"]
    assert [r["gap_source"] for r in rows] == ["eval", "train"]
    train_rows = torch.as_tensor(mech_cache.indices("train"))
    g = recorded[1][train_rows].double()
    assert rows[1]["gap_mean"] == pytest.approx(g.mean().item(), abs=1e-6)
    assert rows[1]["gap_std"] == pytest.approx(g.std(unbiased=False).item(), abs=1e-6)
    torch.testing.assert_close(strat.w0[train_rows] + strat.w1[train_rows], torch.ones(len(train_rows)), rtol=0,
                               atol=1e-6)


def test_train_baseline_single_stage_and_run_dir_guard(mech_cache, tmp_path):
    from mmgap.baselines.concat import ConcatStrategy

    res = train_baseline(mech_cache, preset(), ConcatStrategy(), tmp_path / "b", seed=0, epochs=1, device="cpu",
                         progress=False)
    assert res["method"] == "concat" and [r["stage"] for r in res["history"]] == ["concat"]
    assert {"train_fusion", "train_uni_a", "train_uni_v", "val_acc", "test_f1"} <= res["history"][0].keys()
    # Default budget: warm-up + adaptive epochs of the preset; a run_dir of another method is refused.
    with pytest.raises(ValueError, match="holds a 'concat' run"):
        train_baseline(mech_cache, preset(), WarmupStrategy(), tmp_path / "b", seed=0, device="cpu", progress=False)


def test_refits_default_to_an_eval_pass_over_the_training_set(mech_cache, full_runs, monkeypatch):
    """The paper aggregates the gaps of all training samples: every refit is an eval-mode pass by default."""
    assert get_preset("demo").train.gap_source == get_preset("paper").train.gap_source == "eval"
    res, _, _ = full_runs(False)
    rows = [r for r in res["history"] if r["stage"] == "adaptive"]
    assert [r["gap_source"] for r in rows] == ["eval", "eval"] and all(r["refitted"] for r in rows)
    # the refit's gaps are those of an eval pass with the model as it is at that epoch's start
    tr = Trainer(mech_cache, preset(), res["run_dir"], seed=3, device="cpu", progress=False)
    calls = []
    real = Trainer.collect_outputs

    def spy(self, split="train", train_mode_aug=False, indices=None):
        calls.append((split, train_mode_aug, self.model.training))
        return real(self, split, train_mode_aug, indices)

    monkeypatch.setattr(Trainer, "collect_outputs", spy)
    tr.fit(WarmupStrategy(), 1, "warmup")
    strat = AdaptiveStrategy(AdaptiveLossConfig(), refit_every=1, seed=0)
    tr.fit(strat, 2, "adaptive")
    assert calls == [("train", False, True)] * 2  # collect_outputs switches to eval mode itself


def test_control_arm_continues_the_warmup_loss_from_the_same_checkpoint(mech_cache, full_runs, tmp_path):
    full, last, full_dir = full_runs(False)
    ctrl = run_control(mech_cache, preset(), tmp_path / "ctrl", full_dir / "warmup.pt", seed=3, device="cpu",
                       progress=False)
    stages = [r["stage"] for r in ctrl["history"]]
    assert stages == ["warmup", "warmup", "control", "control"]
    # the shared start: the same warm-up rows and the same last warm-up epoch as the adaptive run
    assert strip_timing(ctrl["history"][:2]) == strip_timing(full["history"][:2])
    assert ctrl["warmup_last"] == full["warmup_last"]
    # the control trains Eq. 10: its training-loss parts are the warm-up's, not Eq. 11's
    assert {"train_fusion", "train_uni_a", "train_uni_v"} <= ctrl["history"][-1].keys()
    assert "train_align" in full["history"][-1] and "refitted" in full["history"][-1]
    assert "train_align" not in ctrl["history"][-1] and "refitted" not in ctrl["history"][-1]
    assert ctrl["history"][-1]["train_loss"] != full["history"][-1]["train_loss"]
    # both arms record the mixture of their last model, labelled by location
    for res in (ctrl, full):
        end = res["gaps_end"]
        m = end["mixture"]
        assert m["means"][m["balanced"]] <= m["means"][1 - m["balanced"]] or end["ambiguous_balanced"]
        assert end["pi1"] == pytest.approx(m["weights"][1 - m["balanced"]])
    # a finished control is reloaded, not retrained; a control folder is not an adaptive one
    again = run_control(mech_cache, preset(), tmp_path / "ctrl", full_dir / "warmup.pt", seed=3, device="cpu",
                        progress=False)
    assert strip_timing(again["history"]) == strip_timing(ctrl["history"])
    with pytest.raises(ValueError, match="holds a 'control' run"):
        run_two_stage(mech_cache, preset(), tmp_path / "ctrl", seed=3, device="cpu", progress=False)
    # load_run / load_history give the finished run back
    assert strip_timing(load_history(tmp_path / "ctrl")) == strip_timing(ctrl["history"])
    tr = load_run(mech_cache, preset(), tmp_path / "ctrl", seed=3, device="cpu", which="best")
    assert tr.evaluate("test")["acc"] == pytest.approx(ctrl["test_acc"])


def test_evaluation_reports_accuracy_per_visual_tier(tmp_path):
    base = make_cache(seed=2)
    tiers = np.where(np.asarray(base.imbalanced), "corrupt", "clean")
    tiers[::7] = "hard"
    cache = FeatureCache.from_arrays(base.audio, base.frames, base.labels, base.split, base.class_names,
                                     imbalanced=tiers != "clean", visual_tier=tiers)
    tr = Trainer(cache, preset(), tmp_path / "r", seed=0, device="cpu", progress=False)
    tr.fit(WarmupStrategy(), 1, "warmup")
    m = tr.evaluate("test")
    out = tr.collect_outputs("test")
    groups = tiers[out["index"].numpy()]
    for tier in ("clean", "hard", "corrupt"):
        mask = groups == tier
        pred_v = out["logit_v"][mask].argmax(1)
        pred_f = out["fused"][mask].argmax(1)
        assert m[f"acc_v_{tier}"] == pytest.approx((pred_v == out["label"][mask]).float().mean().item())
        assert m[f"acc_{tier}"] == pytest.approx((pred_f == out["label"][mask]).float().mean().item())
    assert {"test_acc_v_hard", "val_acc_corrupt"} <= tr.history[-1].keys()


def test_lazy_test_evaluation_gives_the_same_selected_result(cache, tmp_path, monkeypatch):
    """test_every_epoch=False: the test split is evaluated only where validation improves; same selected row."""
    script = {"val": [0.5, 0.7, 0.6, 0.7], "test": [0.9, 0.4, 0.8, 0.95]}
    calls: list[str] = []

    def fake_eval(self, split, strategy=None):
        calls.append(split)
        acc = script[split][self.stage_epoch]
        return {"acc": acc, "f1": acc, "acc_a": 0.0, "acc_v": 0.0, "loss": 1.0}

    monkeypatch.setattr(Trainer, "evaluate", fake_eval)
    full = train_baseline(cache, preset(), WarmupStrategy(), tmp_path / "full", seed=0, epochs=4, device="cpu",
                          progress=False)
    calls.clear()
    lazy = train_baseline(cache, preset(), WarmupStrategy(), tmp_path / "lazy", seed=0, epochs=4, device="cpu",
                          progress=False, test_every_epoch=False)
    assert calls == ["val", "test", "val", "test", "val", "val"]  # test only at epochs 0 and 1 (improvements)
    assert (lazy["best_epoch"], lazy["test_acc"]) == (full["best_epoch"], full["test_acc"]) == (1, 0.4)
    assert ["test_acc" in r for r in lazy["history"]] == [True, True, False, False]
    assert_same_state(load_safe(tmp_path / "full" / "last.pt")["model"],
                      load_safe(tmp_path / "lazy" / "last.pt")["model"])


@pytest.mark.parametrize("keep_state", [False, True])
def test_control_starts_like_the_adaptive_stage_and_resumes_bit_identically(mech_cache, full_runs, tmp_path,
                                                                          keep_state):
    """Same weights, optimizer handling and RNG as continuing the warm-up in memory; an interruption changes nothing."""
    _, _, full_dir = full_runs(keep_state)
    p = preset(reset_optimizer=not keep_state)
    ctrl = run_control(mech_cache, p, tmp_path / "c", full_dir / "warmup.pt", seed=3, device="cpu", progress=False)
    # reference: the same warm-up trained in memory, then Eq. 10 continued as stage "control"
    tr = Trainer(mech_cache, p, tmp_path / "ref", seed=3, device="cpu", progress=False)
    tr.fit(WarmupStrategy(), 2, "warmup")
    tr.fit(WarmupStrategy(), 2, "control", reset_optimizer=not keep_state)
    assert strip_timing(tr.history) == strip_timing(ctrl["history"])
    assert_same_state(tr.model.state_dict(), load_safe(tmp_path / "c" / "last.pt")["model"])
    with pytest.raises(TrainingInterrupted):
        run_control(mech_cache, p, tmp_path / "i", full_dir / "warmup.pt", seed=3, device="cpu", progress=False,
                    interrupt_at_epoch=3)
    resumed = run_control(mech_cache, p, tmp_path / "i", full_dir / "warmup.pt", seed=3, device="cpu",
                          progress=False)
    assert strip_timing(resumed["history"]) == strip_timing(ctrl["history"])
    assert_same_state(load_safe(tmp_path / "i" / "last.pt")["model"], load_safe(tmp_path / "c" / "last.pt")["model"])


def test_evaluation_does_not_depend_on_its_batch_size(cache, tmp_path, monkeypatch):
    tr = Trainer(cache, preset(), tmp_path / "r", seed=0, device="cpu", progress=False)
    tr.fit(WarmupStrategy(), 1, "warmup")
    big = tr.collect_outputs("train")
    monkeypatch.setattr(trainer_mod, "EVAL_BATCH_FACTOR", 1)
    tr._batchers.clear()
    small = tr.collect_outputs("train")
    for k in ("fused", "logit_a", "logit_v"):
        torch.testing.assert_close(big[k], small[k], rtol=1e-5, atol=1e-6)


def test_trainer_provides_every_member_of_the_strategy_contract(cache, tmp_path):
    """`mmgap.strategy.TrainerView` names what strategies may use; the real Trainer has all of it."""
    import inspect
    import typing

    from mmgap.strategy import TrainerView

    tr = Trainer(cache, preset(), tmp_path / "view", seed=0, device="cpu", progress=False)
    for name in typing.get_type_hints(TrainerView):
        assert hasattr(tr, name), f"Trainer lacks the attribute {name} that TrainerView promises"
    methods = [n for n, v in vars(TrainerView).items() if inspect.isfunction(v) and not n.startswith("_")]
    assert {"forward", "autocast", "batches", "collect_outputs"} <= set(methods)
    for name in methods:
        promised = list(inspect.signature(getattr(TrainerView, name)).parameters)
        actual = list(inspect.signature(getattr(Trainer, name)).parameters)
        assert actual[: len(promised)] == promised, (name, promised, actual)
