"""When the trainer writes its checkpoints (mmgap.trainer's policy): after `checkpoint_every_s` seconds, at a
stage's end, at an interruption and on an exception, with the finished epochs held in memory in between, and
what a run loses to an exception or a hard kill."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mmgap.trainer as trainer_mod
from mmgap.checkpoint import copy_state, from_json, load_safe
from mmgap.config import get_preset
from mmgap.data import FeatureCache
from mmgap.method import WarmupStrategy
from mmgap.trainer import Trainer, TrainingInterrupted, train_baseline

pytestmark = pytest.mark.filterwarnings("ignore::mmgap.mixture.AmbiguousBalancedWarning")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cache() -> FeatureCache:
    """3 classes, 48 clips (60 % train), the class in an audio band and a picture quadrant."""
    rng = np.random.default_rng(0)
    n = 48
    labels = np.repeat(np.arange(3), n // 3)
    audio = rng.normal(0.0, 1.0, (n, 12, 12))
    frames = rng.integers(0, 60, (n, 2, 16, 16, 3))
    for i, y in enumerate(labels):
        audio[i, 4 * y:4 * y + 4, :] += 2.0
        frames[i, :, 8 * (y % 2):8 * (y % 2) + 8, :8, :] += 150
    split = np.array([0] * 29 + [1] * 9 + [2] * 10)[rng.permutation(n)]
    return FeatureCache.from_arrays(audio, frames, labels, split, ["a", "b", "c"])


def preset():
    return get_preset("smoke", batch_size=8, lr=0.05, width=2, num_frames=2, image_size=12)


class Scripted(WarmupStrategy):
    """The warm-up loss; advances a fake clock by `seconds` per epoch; raises `fail` in epoch `fail_at`."""

    name = "scripted"

    def __init__(self, clock: list[float] | None = None, seconds: float = 0.0, fail_at: int | None = None,
                 fail: type[BaseException] = KeyboardInterrupt) -> None:
        self.clock, self.seconds, self.fail_at, self.fail = clock, seconds, fail_at, fail

    def on_epoch_start(self, trainer, epoch):
        if self.fail_at is not None and trainer.epoch == self.fail_at:
            raise self.fail("stopped in the middle of an epoch")

    def on_epoch_end(self, trainer, epoch):
        if self.clock is not None:
            self.clock[0] += self.seconds
        return {}


def recorded_writes(monkeypatch) -> list[tuple[str, int]]:
    """(file name, epoch in the state) of every checkpoint the trainer writes, in order."""
    writes: list[tuple[str, int]] = []
    real = trainer_mod.save_atomic

    def save(state, path):
        writes.append((path.name, int(state["epoch"])))
        return real(state, path)

    monkeypatch.setattr(trainer_mod, "save_atomic", save)
    return writes


def scripted_val(monkeypatch, accs: list[float]) -> None:
    """Validation accuracies in this order (test: the same), so which epochs improve is known."""
    real = Trainer.evaluate
    it = {"val": iter(accs), "test": iter(accs)}

    def fake(self, split, strategy=None):
        out = real(self, split, strategy)
        out["acc"] = next(it[split])
        return out

    monkeypatch.setattr(Trainer, "evaluate", fake)


def test_checkpoints_wait_in_memory_until_the_stage_ends(cache, tmp_path, monkeypatch):
    """Within the interval, 4 epochs (val improving after epochs 1 and 2) write best.pt and last.pt once, at
    the end; the files hold the same states as when every epoch is written (interval 0)."""
    files = {}
    for every in (0.0, 3600.0):
        writes = recorded_writes(monkeypatch)
        scripted_val(monkeypatch, [0.5, 0.7, 0.6, 0.7])
        tr = Trainer(cache, preset(), tmp_path / f"every{every:g}", seed=0, device="cpu", progress=False)
        tr.checkpoint_every_s = every
        tr.fit(Scripted(), 4, "scripted")
        files[every] = {n: load_safe(tr.run_dir / n) for n in ("best.pt", "last.pt")}
        if every == 0.0:
            assert writes == [("best.pt", 1), ("last.pt", 1), ("best.pt", 2), ("last.pt", 2), ("last.pt", 3),
                              ("last.pt", 4)]
        else:
            assert writes == [("best.pt", 2), ("last.pt", 4)]
        monkeypatch.undo()
    for name in ("best.pt", "last.pt"):
        a, b = files[0.0][name], files[3600.0][name]
        assert a["epoch"] == b["epoch"] and a["stage_complete"] == b["stage_complete"]
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
        assert from_json(a["best"])["epoch"] == from_json(b["best"])["epoch"] == 1
    assert not torch.equal(files[0.0]["best.pt"]["model"]["head.weight"],
                           files[0.0]["last.pt"]["model"]["head.weight"])  # best.pt is epoch 1's own model


def test_checkpoints_are_written_once_the_interval_has_passed(cache, tmp_path, monkeypatch):
    """Epochs of 40 s against an interval of 60 s: last.pt is written after epochs 2 and 4 (80 s after the
    previous write each time) and at the stage's end (epoch 5); a hard kill loses at most 60 s plus an epoch."""
    clock = [1000.0]
    monkeypatch.setattr(trainer_mod, "_now", lambda: clock[0])
    writes = recorded_writes(monkeypatch)
    tr = Trainer(cache, preset(), tmp_path / "t", seed=0, device="cpu", progress=False)
    tr.checkpoint_every_s = 60.0
    tr.fit(Scripted(clock, seconds=40.0), 5, "scripted")
    assert [e for name, e in writes if name == "last.pt"] == [2, 4, 5]


def test_an_exception_writes_the_finished_epochs_and_resume_is_bit_identical(cache, tmp_path):
    """A Ctrl-C in epoch 3 (index 2), with nothing written yet: best.pt and last.pt of the two finished epochs
    are written on the way out, and the resumed run ends with the uninterrupted run's weights and history."""
    kw = dict(seed=0, epochs=4, device="cpu", progress=False, return_trainer=True)
    straight = train_baseline(cache, preset(), Scripted(), tmp_path / "a", resume=False, **kw)
    with pytest.raises(KeyboardInterrupt):
        train_baseline(cache, preset(), Scripted(fail_at=2), tmp_path / "b", resume=False, **kw)
    last = load_safe(tmp_path / "b" / "last.pt")
    assert last["epoch"] == 2 and not last["stage_complete"]
    assert (tmp_path / "b" / "best.pt").is_file()
    resumed = train_baseline(cache, preset(), Scripted(), tmp_path / "b", resume=True, **kw)
    a, b = straight["trainer"].model.state_dict(), resumed["trainer"].model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    timing = {"seconds", "train_seconds", "eval_seconds"}
    strip = [[{k: v for k, v in r.items() if k not in timing} for r in res["history"]] for res in (straight, resumed)]
    assert strip[0] == strip[1]


def test_interrupt_at_epoch_writes_at_once(cache, tmp_path, monkeypatch):
    """`interrupt_at_epoch` (the resume tests' cut) writes last.pt of that epoch whatever the interval."""
    writes = recorded_writes(monkeypatch)
    with pytest.raises(TrainingInterrupted):
        train_baseline(cache, preset(), Scripted(), tmp_path / "i", seed=0, epochs=4, device="cpu", progress=False,
                       interrupt_at_epoch=3)
    assert writes[-1] == ("last.pt", 3) and load_safe(tmp_path / "i" / "last.pt")["epoch"] == 3


def test_held_states_are_copies(cache, tmp_path):
    """A state held in memory does not follow the model as it trains on; one tensor met twice stays one."""
    t = torch.ones(3, requires_grad=True)
    state = {"a": t, "b": [t, (2, t)], "n": 5, "s": "x"}
    c = copy_state(state, "cpu")
    with torch.no_grad():
        t.add_(1.0)
    assert torch.equal(c["a"], torch.ones(3)) and not c["a"].requires_grad
    assert c["b"][0] is c["a"] and c["b"][1][1] is c["a"] and isinstance(c["b"][1], tuple)
    assert c["n"] == 5 and c["s"] == "x"



def test_an_unchanged_checkpoint_is_read_once_per_process_and_a_changed_one_again(tmp_path, monkeypatch):
    """A second load of an unchanged file unpickles nothing and returns an independent copy; a file written
    within the last 2 s is always read (its time could miss a write in the same tick); a rewrite (a new file by
    save_atomic, or bytes changed in place) is read, and checked, again."""
    import os
    import time

    import mmgap.checkpoint as ckpt_mod
    from mmgap.checkpoint import DamagedCheckpoint, save_atomic

    def age(p):  # as if written 10 s ago
        old = time.time_ns() - 10 * 10**9
        os.utime(p, ns=(old, old))

    path = save_atomic({"w": torch.arange(4.0), "step": 1}, tmp_path / "last.pt")
    reads = []
    real = torch.load
    monkeypatch.setattr(ckpt_mod.torch, "load", lambda *a, **k: reads.append(1) or real(*a, **k))
    load_safe(path)
    load_safe(path)
    assert len(reads) == 2  # just written: not kept
    age(path)
    first = load_safe(path)
    first["w"].add_(100.0)  # a caller changing what it got (an optimizer adopting a tensor) changes no other copy
    second = load_safe(path)
    assert len(reads) == 3 and torch.equal(second["w"], torch.arange(4.0)) and second["step"] == 1
    save_atomic({"w": torch.zeros(4), "step": 2}, path)
    age(path)
    assert load_safe(path)["step"] == 2 and len(reads) == 4
    with open(path, "r+b") as fh:  # damage in place: size and inode unchanged, the modification time not
        fh.seek(path.stat().st_size // 2)
        fh.write(b"\0" * 64)
    with pytest.raises(DamagedCheckpoint):
        load_safe(path)


def test_the_checkpoint_interval_comes_from_the_environment(monkeypatch):
    from mmgap.trainer import CHECKPOINT_EVERY_S, checkpoint_interval

    monkeypatch.delenv("MMGAP_CHECKPOINT_EVERY_S", raising=False)
    assert checkpoint_interval() == CHECKPOINT_EVERY_S
    monkeypatch.setenv("MMGAP_CHECKPOINT_EVERY_S", "0")
    assert checkpoint_interval() == 0.0
    for bad in ("-1", "soon", "inf", "nan"):
        monkeypatch.setenv("MMGAP_CHECKPOINT_EVERY_S", bad)
        with pytest.raises(ValueError, match="MMGAP_CHECKPOINT_EVERY_S"):
            checkpoint_interval()
