"""Batches from a feature cache: `TensorBatcher` (fast path, whole split in memory) and `AVDataset` + loader.

Both yield the `Batch` dict of `mmgap.strategy`: ``audio`` [B, 1, F, T] float32, ``frames`` [B, T, 3, H, W]
uint8 raw pixels (the visual encoder normalises them with the ImageNet mean/std on the model's device, so a
batch moves 4x fewer bytes and the CPU does no float work on frames), ``label`` [B] int64 and ``index`` [B]
int64 (row in the cache).

Frame rule (S stored frames of side P, `num_frames` segments, output side I):
- segments: the S frames are split into `num_frames` equal segments; frame ``floor((k + u) * S / num_frames)``
  of segment k is taken, with u ~ U[0, 1) in training (a random frame per segment) and u = 0.5 in evaluation
  (the centre frame); with S < num_frames frames repeat.
- crop: when P > I, a square of side c = round(I * max(1, 0.8 P / I)) (so at most the central 80 % of a
  large frame is resized to I: 224 -> 20 keeps the centre 179 px; 24 -> 20 crops 20 px); when P <= I,
  c = round(0.875 P) in training and c = P in evaluation. Training draws the crop position at random (the
  same for every frame of a clip) and flips the clip horizontally with probability 1/2; evaluation takes
  the centre crop. A crop of side c != I is resized to I (bilinear, antialiased when shrinking).
Randomness is drawn from a generator seeded by (seed, epoch): `set_epoch` makes shuffling and augmentation a
pure function of (seed, epoch), which bit-identical resume relies on.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from mmgap.data.cache import FeatureCache

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
Batch = dict[str, torch.Tensor]


def epoch_generator(seed: int, epoch: int, salt: int = 0) -> torch.Generator:
    """A CPU generator that depends only on (seed, epoch, salt)."""
    mixed = np.random.SeedSequence([int(seed), int(epoch), int(salt), 0x6D6D67]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(mixed) & 0x7FFF_FFFF_FFFF_FFFF)


def crop_side(stored: int, image_size: int, train: bool) -> int:
    """Side of the square crop taken from a stored frame of side `stored` (rule in the module docstring)."""
    if stored > image_size:
        return min(stored, round(image_size * max(1.0, stored / (image_size / 0.8))))
    return max(1, round(0.875 * stored)) if train else stored


def transform_frames(frames: torch.Tensor, num_frames: int, image_size: int, train: bool,
                     gen: torch.Generator | None = None, rows: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 [N, S, P, P, 3] -> uint8 [B, num_frames, 3, I, I]: segment sampling, crop, flip (rule above).

    `rows` (CPU, [B]) picks the clips from `frames` (default: all N): crops are read straight from the stored
    tensor, so the batch never gathers whole frame stacks it would mostly throw away.
    """
    rows = torch.arange(frames.shape[0]) if rows is None else rows.cpu()
    b, s, p = rows.shape[0], frames.shape[1], frames.shape[2]
    k = torch.arange(num_frames, dtype=torch.float64)
    u = torch.rand(b, num_frames, generator=gen, dtype=torch.float64) if train else torch.full((b, num_frames), 0.5,
                                                                                               dtype=torch.float64)
    fidx = torch.floor((k + u) * s / num_frames).long().clamp_(0, s - 1)
    c = crop_side(p, image_size, train)
    if train:
        off = torch.randint(0, p - c + 1, (b, 2), generator=gen)
        flip = torch.rand(b, generator=gen) < 0.5
    else:
        off = torch.full((b, 2), (p - c) // 2, dtype=torch.long)
        flip = torch.zeros(b, dtype=torch.bool)
    crops = (_crop_gather if frames.device.type == "cuda" else _crop_slices)(frames, rows, fidx, off, flip, c)
    x = crops.permute(0, 1, 4, 2, 3)  # [B, T, 3, c, c], a view: each image stays channels-last in memory
    if c != image_size:  # resize in float, then back to uint8 pixels (the batch contract)
        x = F.interpolate(x.reshape(b * num_frames, 3, c, c).float(), size=(image_size, image_size), mode="bilinear",
                          align_corners=False, antialias=c > image_size)
        x = x.round_().clamp_(0, 255).to(torch.uint8).reshape(b, num_frames, 3, image_size, image_size)
    return x


def _crop_slices(frames: torch.Tensor, rows: torch.Tensor, fidx: torch.Tensor, off: torch.Tensor,
                 flip: torch.Tensor, c: int) -> torch.Tensor:
    """Crops by basic slicing into one uint8 buffer (CPU): a 4-D advanced-index gather computes an offset per
    byte and costs ~10x more on a CPU than these B*T contiguous row copies."""
    out = torch.empty((fidx.shape[0], fidx.shape[1], c, c, frames.shape[-1]), dtype=torch.uint8,
                      device=frames.device)
    per_row = zip(rows.tolist(), off.tolist(), flip.tolist(), fidx.tolist(), strict=True)
    for i, (r, (y, x), fl, fi) in enumerate(per_row):
        for t, f in enumerate(fi):
            src = frames[r, f, y:y + c, x:x + c]
            out[i, t] = src.flip(1) if fl else src
    return out


def _crop_gather(frames: torch.Tensor, rows: torch.Tensor, fidx: torch.Tensor, off: torch.Tensor,
                 flip: torch.Tensor, c: int) -> torch.Tensor:
    """The same crops as one advanced-index gather (CUDA: a single kernel instead of B*T small copies)."""
    dev = frames.device
    ar = torch.arange(c)
    ys = off[:, :1] + ar
    xs = torch.where(flip[:, None], off[:, 1:] + c - 1 - ar, off[:, 1:] + ar)  # a flip reverses the columns
    idx = [t.to(dev, non_blocking=True) for t in (rows[:, None, None, None], fidx[:, :, None, None],
                                                   ys[:, None, :, None], xs[:, None, None, :])]
    return frames[idx[0], idx[1], idx[2], idx[3]]


def _rows(cache: FeatureCache, split: str, indices: np.ndarray | None) -> np.ndarray:
    rows = cache.indices(split)
    if indices is not None:
        idx = np.asarray(indices, dtype=np.int64)
        bad = np.setdiff1d(idx, rows)
        if len(bad):
            raise ValueError(f"indices must be rows of the {split!r} split; {len(bad)} are not (e.g. {bad[:5]})")
        rows = idx
    return rows


def _gather(arr: Any, rows: np.ndarray) -> torch.Tensor:
    """Rows of a cache array (NumPy or memory-mapped; a torch tensor, e.g. on the meta device for a memory
    measurement) as a contiguous tensor."""
    if isinstance(arr, torch.Tensor):
        return arr[torch.as_tensor(rows, device=arr.device)].contiguous()
    return torch.from_numpy(np.ascontiguousarray(arr[rows]))


class TensorBatcher:
    """The split's rows as tensors on `device`; batches gathered by index, augmentation done on the batch."""

    def __init__(self, cache: FeatureCache, split: str, batch_size: int, train: bool, num_frames: int,
                 image_size: int, device: str | torch.device = "cpu", seed: int = 0, drop_last: bool = False,
                 indices: np.ndarray | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}; expected >= 1")
        self.rows = _rows(cache, split, indices)
        self.split, self.batch_size, self.train = split, batch_size, train
        self.num_frames, self.image_size, self.seed, self.drop_last = num_frames, image_size, seed, drop_last
        self.device = torch.device(device)
        self.epoch = 0
        pin = self.device.type == "cuda"
        audio = _gather(cache.audio, self.rows).float().unsqueeze(1)
        frames = _gather(cache.frames, self.rows)
        labels = torch.from_numpy(np.asarray(cache.labels)[self.rows].astype(np.int64))
        index = torch.from_numpy(self.rows.copy())
        if pin:
            audio, frames, labels, index = (t.pin_memory() for t in (audio, frames, labels, index))
        self.audio, self.frames = audio.to(self.device), frames.to(self.device)
        self.labels, self.index = labels.to(self.device), index.to(self.device)

    @property
    def num_samples(self) -> int:
        """Rows in this split (or subset)."""
        return len(self.rows)

    def __len__(self) -> int:
        n = self.num_samples
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration's order and augmentation a function of (seed, epoch)."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[Batch]:
        gen = epoch_generator(self.seed, self.epoch)
        n = self.num_samples
        order = torch.randperm(n, generator=gen) if self.train else torch.arange(n)
        yield from self._batches(order, gen, len(self))

    def _batches(self, order: torch.Tensor, gen: torch.Generator, count: int,
                 keep: torch.Tensor | None = None) -> Iterator[Batch]:
        """``count`` batches of the positions ``order`` (augmented from ``gen`` in training), with ``keep``."""
        order_dev = order.to(self.device, non_blocking=True)  # one copy per epoch, sliced per batch
        for i in range(count):
            part = slice(i * self.batch_size, (i + 1) * self.batch_size)
            sel = order_dev[part]
            batch = {
                "audio": self.audio[sel],
                "frames": transform_frames(self.frames, self.num_frames, self.image_size, self.train, gen,
                                           rows=order[part]),
                "label": self.labels[sel],
                "index": self.index[sel],
            }
            if keep is not None:
                batch["keep"] = keep[part].to(self.device, non_blocking=True)
            yield batch

    def plan_batches(self, rows: np.ndarray, keep: torch.Tensor, gen: torch.Generator,
                     drop_last: bool) -> Iterator[Batch]:
        """Batches of cache ``rows`` in this order (repeats allowed) with their [n, 2] ``keep`` masks."""
        pos = torch.from_numpy(positions_of(self.rows, rows))
        yield from self._batches(pos, gen, batch_count(len(rows), self.batch_size, drop_last), keep)


class AVDataset(Dataset):
    """Per-item access to a split (for caches that do not fit in memory); same outputs as TensorBatcher rows."""

    def __init__(self, cache: FeatureCache, split: str, train: bool, num_frames: int, image_size: int,
                 seed: int = 0, indices: np.ndarray | None = None) -> None:
        self.cache, self.rows = cache, _rows(cache, split, indices)
        self.split, self.train, self.num_frames, self.image_size, self.seed = split, train, num_frames, image_size, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Augmentation of item i becomes a function of (seed, epoch, row)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> Batch:
        row = int(self.rows[i])
        gen = epoch_generator(self.seed, self.epoch, salt=row + 1)
        frames = torch.from_numpy(np.ascontiguousarray(self.cache.frames[row]))[None]
        return {
            "audio": torch.from_numpy(np.asarray(self.cache.audio[row], dtype=np.float32))[None],
            "frames": transform_frames(frames, self.num_frames, self.image_size, self.train, gen)[0],
            "label": torch.tensor(int(self.cache.labels[row]), dtype=torch.long),
            "index": torch.tensor(row, dtype=torch.long),
        }


class EpochSampler(Sampler[int]):
    """Shuffled (training) or sequential positions; the order is a function of (seed, epoch)."""

    def __init__(self, n: int, shuffle: bool, seed: int = 0) -> None:
        self.n, self.shuffle, self.seed, self.epoch = n, shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch whose order the next iteration yields."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.n))
        return iter(torch.randperm(self.n, generator=epoch_generator(self.seed, self.epoch)).tolist())

    def __len__(self) -> int:
        return self.n


class AVLoader:
    """A DataLoader over `AVDataset` with the TensorBatcher interface (`set_epoch`, `num_samples`)."""

    def __init__(self, dataset: AVDataset, batch_size: int, shuffle: bool, num_workers: int = 0,
                 drop_last: bool = False, pin_memory: bool = False) -> None:
        self.dataset = dataset
        self.sampler = EpochSampler(len(dataset), shuffle, dataset.seed)
        self.loader = DataLoader(dataset, batch_size=batch_size, sampler=self.sampler, num_workers=num_workers,
                                 drop_last=drop_last, pin_memory=pin_memory)

    @property
    def num_samples(self) -> int:
        """Rows in this split (or subset)."""
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        """Order and augmentation of the next iteration depend on (seed, epoch) only."""
        self.dataset.set_epoch(epoch)
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        return iter(self.loader)

    def plan_batches(self, rows: np.ndarray, keep: torch.Tensor, gen: torch.Generator,
                     drop_last: bool) -> Iterator[Batch]:
        """Batches of cache ``rows`` in this order (repeats allowed) with their ``keep`` masks (per-item path:
        augmentation is the dataset's function of (seed, epoch, row), so ``gen`` is not used and the copies of
        a row share its augmentation in an epoch)."""
        pos = positions_of(self.dataset.rows, rows).tolist()
        bs = self.loader.batch_size
        count = batch_count(len(pos), bs, drop_last)
        sampler = [pos[i * bs:(i + 1) * bs] for i in range(count)]
        loader = DataLoader(self.dataset, batch_sampler=sampler, num_workers=self.loader.num_workers,
                            pin_memory=self.loader.pin_memory)
        for i, batch in enumerate(loader):
            batch["keep"] = keep[i * bs:(i + 1) * bs]
            yield batch


def batch_count(n: int, batch_size: int, drop_last: bool) -> int:
    """Batches of ``n`` rows: the last incomplete one dropped with ``drop_last``."""
    return n // batch_size if drop_last else math.ceil(n / batch_size)


def positions_of(stored: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Positions in ``stored`` (a batcher's cache rows, each once) of ``rows`` (cache rows, repeats allowed)."""
    stored = np.asarray(stored, dtype=np.int64)
    rows = np.asarray(rows, dtype=np.int64)
    sorter = np.argsort(stored, kind="stable")
    at = np.searchsorted(stored, rows, sorter=sorter).clip(0, max(len(stored) - 1, 0))
    pos = sorter[at] if len(stored) else at
    if len(rows) and not np.array_equal(stored[pos], rows):
        missing = np.setdiff1d(rows, stored)
        raise ValueError(f"{len(missing)} plan rows are not rows of this batcher (e.g. {missing[:5]})")
    return pos.astype(np.int64)


PLAN_SALT = 1 << 40
"""Salt of a plan group's generator (group g uses PLAN_SALT + g), apart from the per-item loader's row salts."""


class PlanIterable:
    """The batches of a `mmgap.strategy.SamplePlan` for one epoch from a training batcher (either path).

    Group g's rows are shuffled (when asked) and augmented from ``epoch_generator(seed, epoch, PLAN_SALT + g)``:
    a pure function of (seed, global epoch, plan), as bit-identical resume needs.
    """

    def __init__(self, batcher: Any, plan: Any, epoch: int) -> None:
        self.batcher, self.plan, self.epoch = batcher, plan, int(epoch)
        self.batch_size = int(batcher.batch_size if hasattr(batcher, "batch_size") else batcher.loader.batch_size)

    def _drop_last(self, n: int) -> bool:
        return n >= self.batch_size  # a lone short batch is kept (a group smaller than one batch still trains)

    def __len__(self) -> int:
        return sum(batch_count(len(g.rows), self.batch_size, self._drop_last(len(g.rows))) for g in self.plan.groups)

    def __iter__(self) -> Iterator[Batch]:
        if hasattr(self.batcher, "set_epoch"):
            self.batcher.set_epoch(self.epoch)
        seed = int(self.batcher.seed if hasattr(self.batcher, "seed") else self.batcher.dataset.seed)
        for g, group in enumerate(self.plan.groups):
            n = len(group.rows)
            if n == 0:
                continue
            gen = epoch_generator(seed, self.epoch, PLAN_SALT + g)
            perm = (torch.randperm(n, generator=gen) if group.shuffle else torch.arange(n)).numpy()
            rows = np.asarray(group.rows, dtype=np.int64)[perm]
            keep = torch.from_numpy(group.keep()[perm])
            yield from self.batcher.plan_batches(rows, keep, gen, self._drop_last(n))


def make_loader(cache: FeatureCache, split: str, batch_size: int, train: bool, num_frames: int, image_size: int,
                seed: int = 0, num_workers: int = 0, drop_last: bool = False, indices: np.ndarray | None = None,
                pin_memory: bool = False) -> AVLoader:
    """The per-item DataLoader path (shuffled in training), for caches that do not fit in memory."""
    ds = AVDataset(cache, split, train, num_frames, image_size, seed, indices)
    return AVLoader(ds, batch_size, shuffle=train, num_workers=num_workers, drop_last=drop_last,
                    pin_memory=pin_memory)
