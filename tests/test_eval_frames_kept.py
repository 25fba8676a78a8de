"""TensorBatcher keeps evaluation frames between passes: the same batches, no second transform, copies only."""

from __future__ import annotations

import numpy as np
import torch

import mmgap.data.dataset as dataset_mod
from mmgap.data.cache import FeatureCache
from mmgap.data.dataset import TensorBatcher

N, S, P = 12, 4, 24


def cache() -> FeatureCache:
    rng = np.random.default_rng(0)
    fr = rng.integers(0, 256, (N, S, P, P, 3), dtype=np.uint8)
    audio = rng.normal(size=(N, 3, 7)).astype(np.float32)
    split = np.array([0] * 8 + [1] * 2 + [2] * 2)
    return FeatureCache.from_arrays(audio, fr, np.arange(N) % 3, split, ["a", "b", "c"])


def counted(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = dataset_mod.transform_frames

    def transform(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(dataset_mod, "transform_frames", transform)
    return calls


def test_evaluation_frames_are_kept_and_served_as_copies(monkeypatch):
    """Eval batches of 3 over 8 rows: the first pass transforms 3 batches, the second none, with the same
    pixels as a fresh batcher's; a batch changed in place by its consumer leaves the next pass unchanged."""
    c = cache()
    calls = counted(monkeypatch)
    b = TensorBatcher(c, "train", 3, train=False, num_frames=2, image_size=20)
    first = [x["frames"] for x in b]
    assert len(calls) == 3
    first[0].zero_()  # a consumer zeroing a modality in place
    second = [x["frames"] for x in b]
    assert len(calls) == 3
    fresh = [x["frames"] for x in TensorBatcher(c, "train", 3, train=False, num_frames=2, image_size=20)]
    assert all(torch.equal(s, f) for s, f in zip(second, fresh, strict=True))
    assert second[0].abs().sum() > 0


def test_training_and_larger_than_stored_frames_are_not_kept(monkeypatch):
    """Training batches are drawn anew each pass; eval frames resized up (more bytes than stored) are not kept."""
    c = cache()
    calls = counted(monkeypatch)
    train = TensorBatcher(c, "train", 4, train=True, num_frames=2, image_size=20, drop_last=True)
    for _ in range(2):
        list(train)
    assert len(calls) == 4
    big = TensorBatcher(c, "val", 4, train=False, num_frames=4, image_size=48)  # 4 x 48^2 x 3 > 4 x 24^2 x 3
    for _ in range(2):
        list(big)
    assert len(calls) == 6
