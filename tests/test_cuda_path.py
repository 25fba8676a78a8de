"""The CUDA path's faults, checked on the CPU (issue 23).

bf16 autocast on the CPU (``Trainer(precision="bf16")``) runs the code the CUDA path runs; tensors on the
``meta`` device give shapes and dtypes without memory; `_DeviceTensor` refuses ``.numpy()`` until moved to the
CPU, as a CUDA tensor does.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from mmgap.baselines.agm import AGMStrategy
from mmgap.baselines.ogm_ge import OGMGEStrategy
from mmgap.baselines.opm import OPMOGMStrategy, OPMStrategy
from mmgap.config import get_preset
from mmgap.data.cache import FeatureCache
from mmgap.device import MetaCache, choose_data_path, choose_precision, plan_memory, resident_bytes
from mmgap.gap import compute_gap
from mmgap.method import WarmupStrategy, fit_gaps
from mmgap.metrics import accuracy_by_group
from mmgap.trainer import Trainer
from test_trainer_and_method import make_cache, preset

pytestmark = pytest.mark.filterwarnings("ignore::mmgap.mixture.AmbiguousBalancedWarning")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cache():
    return make_cache()


@pytest.fixture(scope="module")
def bf16_cache() -> FeatureCache:
    """4 classes (an audio band per class), 120 clips, 64 x 64 spectrograms and 40 px frames.

    Larger than `make_cache`'s 16 x 16: at those sizes ResNet-18's last stage sees 1 x 1 maps, where torch's
    CPU bf16 convolution backward (torch 2.14, oneDNN) now and then returns garbage weight gradients (1e25),
    a CPU kernel fault outside this code; from 2 x 2 maps on it is stable (20 of 20 repeats agreed).
    """
    rng = np.random.default_rng(0)
    n = 120
    labels = np.arange(n) % 4
    audio = rng.normal(0.0, 1.0, (n, 64, 64))
    for i, y in enumerate(labels):
        audio[i, 16 * y:16 * y + 16] += 2.0
    frames = rng.integers(0, 255, (n, 2, 40, 40, 3))
    split = np.array([0] * 72 + [1] * 24 + [2] * 24)
    return FeatureCache.from_arrays(audio, frames, labels, split, [f"c{k}" for k in range(4)])


def bf16_trainer(cache, path) -> Trainer:
    """A CPU trainer on the CUDA path's precision: bf16 autocast, float32 outputs."""
    return Trainer(cache, preset(image_size=32), path, seed=0, device="cpu", progress=False, precision="bf16")


# ------------------------------------------------------------------------------------------- AGM


def test_agm_modulates_the_encoders_under_bf16_autocast(bf16_cache, tmp_path):
    """Under autocast the trainer returns float32 copies of the features: hooks on them never fired, so AGM
    was plain CE on CUDA. Each encoder's gradient must be k_m times plain CE's, whatever the dtype."""
    tr = bf16_trainer(bf16_cache, tmp_path)
    assert tr.amp_dtype == torch.bfloat16
    ref = copy.deepcopy(tr.model)
    batch = next(iter(tr.batches("train", train=True)))
    strat = AGMStrategy(alpha=1.5, clip=False)
    strat.setup(tr)
    strat.iteration, strat.avg_a, strat.avg_v = 5, torch.tensor(5.0), torch.tensor(0.0)  # visual lagging
    tr.optimizer.zero_grad(set_to_none=True)
    loss, parts = strat.training_step(tr, batch, 0)
    loss.backward()
    strat.after_backward(tr, 0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = ref(batch["audio"], batch["frames"])
    torch.nn.functional.cross_entropy(out.fused.float(), batch["label"]).backward()
    k_a, k_v = parts["coeff_a"].item(), parts["coeff_v"].item()
    assert k_v == 2.0 and k_a < 0.9  # lr 0.02 > 1e-2: the speed-up is capped at 2
    for name, k in (("audio_encoder", k_a), ("visual_encoder", k_v)):
        g = torch.cat([p.grad.flatten() for p in getattr(tr.model, name).parameters()])
        g0 = torch.cat([p.grad.flatten() for p in getattr(ref, name).parameters()])
        ratio = (g.norm() / g0.norm()).item()
        assert ratio == pytest.approx(k, rel=1e-3), (name, ratio, k)
    torch.testing.assert_close(tr.model.head.weight.grad, ref.head.weight.grad)


# ------------------------------------------------------------------------------------------- fp32 logits


def test_gaps_and_posteriors_come_from_float32_head_logits_under_autocast(bf16_cache, tmp_path):
    """The head runs in float32 under autocast: logits, gaps and w1 equal the float32 head's on the same
    (bf16-computed) features, not bf16-rounded versions of them."""
    tr = bf16_trainer(bf16_cache, tmp_path)
    tr.fit(WarmupStrategy(), 1, "warmup")
    out = tr.collect_outputs("train")
    assert out["logit_a"].dtype == torch.float32
    with torch.no_grad():
        fused, la, lv = tr.model.head(out["feat_a"], out["feat_v"])  # float32 features, no autocast
    for got, want in ((out["fused"], fused), (out["logit_a"], la), (out["logit_v"], lv)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    g = compute_gap("prob", out["logit_a"], out["logit_v"], out["label"])
    g32 = compute_gap("prob", la, lv, out["label"])
    *_, w1, _ = fit_gaps(g, out["index"], bf16_cache, seed=0)
    *_, w1_32, _ = fit_gaps(g32, out["index"], bf16_cache, seed=0)
    assert np.abs(np.asarray(w1) - np.asarray(w1_32)).max() < 1e-4


# ------------------------------------------------------------------------------------------- generators


CUDA_LIKE_STATE = torch.tensor([7, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0], dtype=torch.uint8)
"""What a CUDA generator's get_state() returns (8-byte seed, 8-byte offset): 16 bytes, not a CPU state's 5,056."""


@pytest.mark.parametrize("make", [OGMGEStrategy, OPMStrategy, OPMOGMStrategy], ids=["ogm_ge", "opm", "opm_ogm"])
@pytest.mark.parametrize("saved", ["bare", "tagged"])
def test_a_generator_state_from_another_device_type_is_reseeded_deterministically(make, saved, cache, tmp_path):
    """A CUDA run resumed on a CPU: the state cannot be set, so the generator is seeded again from it (with a
    warning), identically on every resume. Before: RuntimeError 'Expected a CPUGeneratorImplState ...'."""
    tr = Trainer(cache, preset(), tmp_path, seed=0, device="cpu", progress=False)
    tr.stage_epochs = 4
    state = CUDA_LIKE_STATE if saved == "bare" else {"device": "cuda", "state": CUDA_LIKE_STATE}
    draws = []
    for _ in range(2):
        strat = make()
        full = strat.state_dict()
        full["rng"] = state
        strat.load_state_dict(full)
        with pytest.warns(RuntimeWarning, match="seeded again"):
            strat.setup(tr)
        draws.append(torch.randn(4, generator=strat._rng.gen))
    torch.testing.assert_close(draws[0], draws[1], rtol=0, atol=0)


def test_a_generator_state_from_the_same_device_type_is_restored_exactly(cache, tmp_path):
    tr = Trainer(cache, preset(), tmp_path, seed=0, device="cpu", progress=False)
    tr.stage_epochs = 4
    a = OGMGEStrategy()
    a.setup(tr)
    saved = a.state_dict()
    assert saved["rng"]["device"] == "cpu"
    expected = torch.randn(3, generator=a._rng.gen)
    b = OGMGEStrategy()
    b.load_state_dict(saved)
    b.setup(tr)
    assert torch.equal(torch.randn(3, generator=b._rng.gen), expected)
    c = OGMGEStrategy()  # a checkpoint of the earlier format: the bare CPU state
    c.load_state_dict({"rng": saved["rng"]["state"]})
    c.setup(tr)
    assert torch.equal(torch.randn(3, generator=c._rng.gen), expected)


# ------------------------------------------------------------------------------------------- failed runs


def test_a_failed_run_is_shown_as_failed_in_the_table_and_the_verdict():
    rows = pd.DataFrame([
        {"method": m, "seed": s, "acc": a, "f1": a, "error": None}
        for m, a in (("ours_prob", 0.8), ("ogm_ge", 0.7)) for s in (0, 1)
    ] + [{"method": "agm", "seed": 0, "acc": 0.75, "f1": 0.75, "error": None},
         {"method": "agm", "seed": 1, "acc": float("nan"), "f1": float("nan"),
          "error": "FloatingPointError: training loss became nan"}])
    from mmgap.experiments import table_of, verdict

    table = table_of(rows, "method").set_index("method")
    assert table.loc["agm", "n"] == 1  # the run that finished
    assert "seed 1: FloatingPointError" in table.loc["agm", "failed"]
    assert table.loc["ogm_ge", "failed"] == ""
    text = verdict(rows)
    assert "FAILED" in text and "AGM" in text and "seed 1" in text


def test_out_of_memory_stops_a_sweep_instead_of_becoming_a_nan_row(cache, tmp_path, monkeypatch):
    from mmgap.experiments import runs

    def oom(*a, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(runs, "train_baseline", oom)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        runs.baseline_one(cache, preset(), "ogm_ge", 0, tmp_path, epochs=1, device="cpu", log=lambda *_: None)

    def diverge(*a, **k):
        raise FloatingPointError("training loss became nan in ogm_ge epoch 0")

    monkeypatch.setattr(runs, "train_baseline", diverge)
    row = runs.baseline_one(cache, preset(), "ogm_ge", 0, tmp_path, epochs=1, device="cpu", log=lambda *_: None)
    assert np.isnan(row["acc"]) and row["error"].startswith("FloatingPointError")


# ------------------------------------------------------------------------------------------- determinism


def test_deterministic_mode_is_scoped_to_the_trainer_that_asked_for_it(cache, tmp_path):
    seen = []

    class Probe(WarmupStrategy):
        def training_step(self, trainer, batch, epoch):
            seen.append(torch.are_deterministic_algorithms_enabled())
            return super().training_step(trainer, batch, epoch)

    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(False)
    try:
        tr = Trainer(cache, preset(), tmp_path, seed=0, device="cpu", progress=False)
        assert not torch.are_deterministic_algorithms_enabled()
        tr.fit(Probe(), 1, "warmup")
        assert seen and all(seen)  # deterministic inside the CPU trainer's own passes
        assert not torch.are_deterministic_algorithms_enabled()  # and the caller's setting afterwards
    finally:
        torch.use_deterministic_algorithms(before)


# ------------------------------------------------------------------------------------------- .numpy()


class _DeviceTensor(torch.Tensor):
    """A tensor that, like a CUDA tensor, has no NumPy view until moved with .cpu() / .to("cpu")."""

    def numpy(self, *args, **kwargs):
        raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() first.")

    def cpu(self, *args, **kwargs):
        return super().cpu(*args, **kwargs).as_subclass(torch.Tensor)

    def to(self, *args, **kwargs):
        out = super().to(*args, **kwargs)
        moved = any(str(a) == "cpu" for a in (*args, kwargs.get("device")))  # an explicit move to the CPU
        return out.as_subclass(torch.Tensor) if moved else out


def test_gap_fits_and_group_accuracy_accept_device_tensors(cache):
    rng = np.random.default_rng(0)
    rows = torch.as_tensor(cache.indices("train"))
    half = len(rows) // 2
    g = torch.as_tensor(np.concatenate([rng.normal(0, 1, half), rng.normal(4, 1, len(rows) - half)]))
    *_, w1, info = fit_gaps(g.as_subclass(_DeviceTensor), rows.as_subclass(_DeviceTensor), cache, seed=0)
    *_, w1_ref, _ = fit_gaps(g, rows, cache, seed=0)
    np.testing.assert_allclose(np.asarray(w1), np.asarray(w1_ref))
    logits = torch.randn(6, 3)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    groups = np.array(["clean", "hard", "clean", "hard", "clean", "hard"])
    got = accuracy_by_group(logits.as_subclass(_DeviceTensor), y.as_subclass(_DeviceTensor), groups)
    assert got == accuracy_by_group(logits, y, groups)


# ------------------------------------------------------------------------------------------- precision


@pytest.mark.parametrize("capability,expected", [((9, 0), torch.bfloat16), ((8, 0), torch.bfloat16),
                                                 ((7, 5), None), ((7, 0), None)])
def test_precision_follows_the_compute_capability(capability, expected, monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    dtype, note = choose_precision(torch.device("cuda"))
    assert dtype == expected
    assert f"{capability[0]}.{capability[1]}" in note
    assert choose_precision(torch.device("cpu")) == (None, "fp32 (cpu)")
    assert choose_precision(torch.device("cpu"), "bf16")[0] == torch.bfloat16
    with pytest.raises(ValueError, match="precision"):
        choose_precision(torch.device("cpu"), "fp16")


# ------------------------------------------------------------------------------------------- memory


def meta_trainer(sizes=(600, 70, 80), precision="bf16") -> Trainer:
    cache = MetaCache(sizes, (257, 188), (3, 256, 256, 3), 6)
    import tempfile

    return Trainer(cache, get_preset("paper"), tempfile.mkdtemp(), device=torch.device("meta"), progress=False,
                   precision=precision)


def test_the_memory_plan_matches_what_the_batchers_hold_on_the_meta_device():
    """Audio stored as float32 (not the cache's float16), every split once; a fine-tune's subset replaces the
    full training split when its stage starts (before: both stayed resident)."""
    tr = meta_trainer()
    plan = tr.memory_plan
    old_check = tr.cache.audio.nbytes + tr.cache.frames.nbytes  # what "fits on the GPU" counted before
    for split, train in (("train", True), ("val", False), ("test", False), ("train", False)):  # a stage + refit
        tr.batches(split, train=train)
    stage = resident_bytes(tr._batchers.values())
    assert stage == plan.data > old_check
    tr.release_batchers()
    assert resident_bytes(tr._batchers.values()) == 0
    tr.batches("train", train=False)  # Table VII: the selection's refit over the whole training split
    subset = tr.cache.indices("train")  # tau = 0: every row, as a subset
    tr.release_batchers(keep_train_rows=subset)  # what Trainer.fit does at the start of the fine-tune
    for split, train, idx in (("train", True, subset), ("val", False, None), ("test", False, None)):
        tr.batches(split, train=train, indices=idx)
    assert resident_bytes(tr._batchers.values()) <= plan.data
    assert plan.activations > 0 and plan.model > 0


def test_fit_frees_its_batchers_at_the_end_of_a_stage(cache, tmp_path):
    tr = Trainer(cache, preset(), tmp_path, seed=0, device="cpu", progress=False)
    tr.fit(WarmupStrategy(), 1, "warmup")
    assert tr._batchers == {}


def test_the_data_path_is_chosen_from_the_plan_and_says_why(monkeypatch):
    tr = meta_trainer(precision="bf16")
    plan = tr.memory_plan
    gpu = torch.device("cuda")
    fits = choose_data_path(plan, gpu, free_device=2 * plan.total, host=64 * 2**30)
    assert fits.fast_path and fits.data_device == gpu and "on the GPU" in fits.message
    host = choose_data_path(plan, gpu, free_device=plan.total // 2, host=64 * 2**30)
    assert host.fast_path and host.data_device.type == "cpu" and "host memory, batches copied" in host.message
    assert "exceeds" in host.message
    loader = choose_data_path(plan, gpu, free_device=plan.total // 2, host=plan.data)
    assert not loader.fast_path and "per-item loader" in loader.message
    # bf16 activations: half of fp32's, but for the max-pooling indices (int64 either way)
    assert 1.7 * plan.activations < plan_memory(tr.cache, tr.preset, None).activations <= 2 * plan.activations


# ------------------------------------------------------------------------------------------- workers


def test_several_workers_on_a_gpu_run_as_one_process(monkeypatch):
    from mmgap.experiments import workers

    monkeypatch.setattr(workers, "resolve_device", lambda d="auto": torch.device("cuda"))
    released, lines = [], []
    monkeypatch.setattr(workers, "release_device_memory", lambda: released.append(1))

    class Cache:
        path = "somewhere"

    jobs = [(_job, {"k": k, "device": "cuda"}) for k in range(3)]
    out = workers.run_jobs(Cache(), jobs, workers=4, log=lines.append)
    assert out == [0, 1, 2]  # ran here, serially (a pool would have needed the cache on disk)
    assert any("1 process" in line for line in lines)
    assert len(released) == 3  # the device's memory goes back after every run


def _job(cache, log, k, device):
    return k

