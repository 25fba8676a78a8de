"""TensorBatcher / AVDataset / make_loader: shapes, frame rule, crops and flips, (seed, epoch) determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmgap.data.cache import FeatureCache
from mmgap.data.dataset import (
    AVDataset,
    TensorBatcher,
    _crop_gather,
    _crop_slices,
    crop_side,
    make_loader,
    transform_frames,
)

N, S, P = 10, 4, 24


def coded_cache(p: int = P) -> FeatureCache:
    """Channel 0 = pixel row, channel 1 = pixel column, channel 2 = 10 * stored frame + row % 5."""
    fr = np.zeros((N, S, p, p, 3), np.uint8)
    fr[..., 0] = np.arange(p)[:, None]
    fr[..., 1] = np.arange(p)[None, :]
    fr[..., 2] = (10 * np.arange(S))[None, :, None, None] + (np.arange(N) % 5)[:, None, None, None]
    audio = np.arange(N, dtype=np.float32)[:, None, None] * np.ones((N, 3, 7), np.float32)
    split = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2, 2])
    return FeatureCache.from_arrays(audio, fr, np.arange(N) % 3, split, ["a", "b", "c"])


def pixels(frames: torch.Tensor) -> torch.Tensor:
    """Batches carry raw uint8 pixels (the model normalises them): as float for comparisons."""
    assert frames.dtype == torch.uint8
    return frames.float()


def test_batch_contract_shapes_and_dtypes():
    b = TensorBatcher(coded_cache(), "train", batch_size=4, train=True, num_frames=2, image_size=20)
    batches = list(b)
    assert len(b) == len(batches) == 2 and b.num_samples == 6  # ceil(6 / 4)
    x = batches[0]
    assert x["audio"].shape == (4, 1, 3, 7) and x["audio"].dtype == torch.float32
    assert x["frames"].shape == (4, 2, 3, 20, 20) and x["frames"].dtype == torch.uint8
    assert x["label"].dtype == torch.int64 and x["index"].dtype == torch.int64
    seen = torch.cat([y["index"] for y in batches])
    assert sorted(seen.tolist()) == [0, 1, 2, 3, 4, 5]  # every train row once per epoch
    # rows travel together: audio value = row, label = row % 3
    for y in batches:
        assert torch.equal(y["audio"][:, 0, 0, 0].long(), y["index"]) and torch.equal(y["label"], y["index"] % 3)
    assert len(TensorBatcher(coded_cache(), "train", 4, True, 2, 20, drop_last=True)) == 1


def test_eval_takes_centre_frames_and_centre_crop():
    b = TensorBatcher(coded_cache(), "val", batch_size=8, train=False, num_frames=2, image_size=20)
    (x,) = list(b)
    assert x["index"].tolist() == [6, 7]
    px = pixels(x["frames"]).round()
    # segments of the 4 stored frames: {0, 1} and {2, 3}; centre = floor((k + 0.5) * 2) = frames 1 and 3
    assert px[0, :, 2, 0, 0].tolist() == [10 + 6 % 5, 30 + 6 % 5]
    # centre crop of 20 from 24: rows and columns 2..21
    assert px[0, 0, 0, :, 0].tolist() == list(range(2, 22)) and px[0, 0, 1, 0, :].tolist() == list(range(2, 22))


def test_train_random_frame_per_segment_crop_and_flip():
    b = TensorBatcher(coded_cache(), "train", batch_size=6, train=True, num_frames=2, image_size=20, seed=5)
    frames_seen, flips = set(), set()
    for epoch in range(6):
        b.set_epoch(epoch)
        x = next(iter(b))
        px = pixels(x["frames"]).round()
        for i in range(6):
            f0, f1 = (int(v) // 10 for v in px[i, :, 2, 0, 0])
            assert f0 in (0, 1) and f1 in (2, 3)  # one frame from each segment
            frames_seen.update((f0, f1))
            rows, cols = px[i, 0, 0, :, 0], px[i, 0, 1, 0, :]
            assert torch.equal(rows, rows[0] + torch.arange(20.0)) and 0 <= rows[0] <= 4  # a 20 px window
            flipped = bool(cols[0] > cols[-1])
            flips.add(flipped)
            step = -1.0 if flipped else 1.0
            assert torch.equal(cols, cols[0] + step * torch.arange(20.0))
            assert torch.equal(px[i, 0, :2], px[i, 1, :2])  # same crop and flip for every frame of a clip
    assert frames_seen == {0, 1, 2, 3} and flips == {True, False}


def test_seed_epoch_determinism():
    def run(seed, epoch):
        b = TensorBatcher(coded_cache(), "train", 4, True, 2, 20, seed=seed)
        b.set_epoch(epoch)
        return list(b)
    a, again, other_epoch, other_seed = run(0, 3), run(0, 3), run(0, 4), run(1, 3)
    for x, y in zip(a, again, strict=True):
        assert all(torch.equal(x[k], y[k]) for k in x)
    assert not all(torch.equal(x["frames"], y["frames"]) for x, y in zip(a, other_epoch, strict=True))
    assert not all(torch.equal(x["index"], y["index"]) for x, y in zip(a, other_seed, strict=True))


def test_indices_subset_and_validation():
    b = TensorBatcher(coded_cache(), "train", 8, False, 2, 20, indices=np.array([1, 4]))
    (x,) = list(b)
    assert x["index"].tolist() == [1, 4] and b.num_samples == 2
    with pytest.raises(ValueError, match="rows of the 'train' split"):
        TensorBatcher(coded_cache(), "train", 8, False, 2, 20, indices=np.array([1, 8]))


def test_small_stored_frames_are_resized_up():
    assert crop_side(24, 20, True) == 20 and crop_side(224, 20, False) == 179 and crop_side(8, 16, True) == 7
    c = coded_cache(p=8)
    x = next(iter(TensorBatcher(c, "val", 2, False, 2, 16)))
    assert x["frames"].shape == (2, 2, 3, 16, 16)
    px = pixels(x["frames"])
    assert torch.allclose(px[0, 0, 2], torch.full((16, 16), 11.0), atol=1e-3)  # a constant plane stays constant


def test_avdataset_and_loader_match_the_batcher_in_eval():
    c = coded_cache()
    (x,) = list(TensorBatcher(c, "test", 4, False, 2, 20))
    ds = AVDataset(c, "test", train=False, num_frames=2, image_size=20)
    item = ds[1]
    assert item["audio"].shape == (1, 3, 7) and item["frames"].shape == (2, 3, 20, 20)
    assert int(item["index"]) == 9 and torch.equal(item["frames"], x["frames"][1])
    loader = make_loader(c, "train", batch_size=4, train=True, num_frames=2, image_size=20, seed=2)
    loader.set_epoch(1)
    first = [y["index"].tolist() for y in loader]
    loader.set_epoch(1)
    assert [y["index"].tolist() for y in loader] == first and len(loader) == 2 and loader.num_samples == 6
    assert sorted(sum(first, [])) == [0, 1, 2, 3, 4, 5]


def test_cuda_gather_and_cpu_slices_crop_the_same_pixels():
    """The single-kernel gather used on CUDA and the slicing loop used on a CPU agree bit for bit."""
    gen = torch.Generator().manual_seed(3)
    frames = torch.randint(0, 256, (5, 4, 12, 12, 3), generator=gen, dtype=torch.uint8)
    fidx = torch.randint(0, 4, (5, 2), generator=gen)
    off = torch.randint(0, 12 - 9 + 1, (5, 2), generator=gen)
    flip = torch.tensor([True, False, True, True, False])
    rows = torch.tensor([4, 0, 2, 2, 1])  # clips picked straight from the stored tensor, repeats allowed
    a, b = _crop_slices(frames, rows, fidx, off, flip, 9), _crop_gather(frames, rows, fidx, off, flip, 9)
    assert a.shape == (5, 2, 9, 9, 3) and torch.equal(a, b)
    y, x = off[0].tolist()
    assert torch.equal(a[0, 1], frames[4, fidx[0, 1], y:y + 9, x:x + 9].flip(1))  # sample 0 is clip 4, flipped
    y, x = off[1].tolist()
    assert torch.equal(a[1, 0], frames[0, fidx[1, 0], y:y + 9, x:x + 9])  # sample 1 is clip 0, not flipped


def test_resized_crops_stay_uint8_pixels():
    frames = torch.full((2, 2, 10, 10, 3), 77, dtype=torch.uint8)
    out = transform_frames(frames, num_frames=1, image_size=16, train=False)
    assert out.dtype == torch.uint8 and out.shape == (2, 1, 3, 16, 16) and (out == 77).all()
