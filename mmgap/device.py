"""Devices, precision and memory placement: where a run computes, in which dtype, and where its data live.

- `resolve_device`, `seed_everything`, `deterministic` (deterministic kernels for one block, then the
  previous global setting back);
- `choose_precision`: bf16 autocast on CUDA from compute capability 8.0; fp32 below (bf16 convolutions fall
  back to slow kernels there, and fp16 would need a gradient scaler); fp32 on the CPU unless asked;
- `plan_memory`: what a run keeps resident on its data device, from the dtypes the batchers store (audio
  float32, frames uint8), every split a stage holds at once, the weights, gradients and optimizer state, and
  the activations of one training step at the batch size (measured on the ``meta`` device, no memory used);
- `choose_data_path`: device memory, host memory, or the per-item loader, with the numbers printed;
- `release_device_memory` between runs of a sweep; `resident_bytes` measures what batchers really hold.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import gc
import math
import os
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mmgap.config import ModelConfig, Preset
from mmgap.models import ModelOutput, build_model

PRECISIONS = ("auto", "fp32", "bf16")
BF16_CAPABILITY = (8, 0)
"""Ampere and later run bf16 convolutions on tensor cores; older GPUs (T4, V100, RTX 20xx) emulate them slowly."""
DEVICE_FRACTION = 0.9
"""Share of the device's free memory a plan may use (the rest: cuDNN workspaces, allocator fragmentation)."""
HOST_FRACTION = 0.25
"""Share of host memory the data may take on the host fast path (the rest: the process, other runs, the OS)."""
GIB = 2**30


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cpu"``; ``"cuda"`` / ``"cuda:N"`` (checked)."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if isinstance(device, str) and device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} was requested but no CUDA GPU is visible: use device='auto' or 'cpu'")
        return torch.device(device)
    raise ValueError(f"device={device!r} is not one of 'auto', 'cpu', 'cuda' (or 'cuda:N')")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices); determinism of kernels is `deterministic`'s business."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def deterministic(enabled: bool) -> Iterator[None]:
    """Deterministic kernels (``enabled``) or cuDNN autotuning (not) inside the block; the caller's settings after.

    warn_only: a kernel without a deterministic variant warns instead of failing (CPU kernels have one).
    """
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.benchmark = not enabled  # fixed input shapes: let cuDNN pick the fastest kernels
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.benchmark = before[2]


# ------------------------------------------------------------------------------------------------ precision


def choose_precision(device: torch.device, precision: str = "auto") -> tuple[torch.dtype | None, str]:
    """(autocast dtype or None for fp32, the reason): bf16 on CUDA from capability 8.0, else fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is not one of {PRECISIONS}")
    if precision == "fp32":
        return None, "fp32 (asked for)"
    if precision == "bf16":
        return torch.bfloat16, f"bf16 autocast on {device.type} (asked for)"
    if device.type != "cuda":
        return None, f"fp32 ({device.type})"
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) >= BF16_CAPABILITY:
        return torch.bfloat16, f"bf16 autocast (compute capability {major}.{minor} >= 8.0)"
    return None, (f"fp32 (compute capability {major}.{minor} < 8.0: bf16 convolutions would fall back to slow "
                  "kernels, and fp16 would need a gradient scaler)")


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """torch.autocast on `device` in `dtype`; a no-op for fp32 (dtype None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def float_output(out: ModelOutput) -> ModelOutput:
    """An autocast ModelOutput in float32 (the head's logits already are; features are bf16 copies)."""
    return ModelOutput(*(t.float() for t in out))


class OnDevice:
    """Wraps a batch iterable so every tensor lands on the device (a no-op for TensorBatcher's batches)."""

    def __init__(self, inner: Iterable[dict[str, Any]], device: torch.device) -> None:
        self.inner, self.device = inner, device

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in self.inner:
            yield {k: (v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v)
                   for k, v in batch.items()}


def release_device_memory() -> None:
    """Collect garbage and return the CUDA caching allocator's free blocks (between runs of a sweep)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------------------ memory


def host_memory_bytes() -> int:
    """Physical memory of this machine (0 when unknown)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 0


def num_classes_of(cache: Any) -> int:
    """Number of classes of a FeatureCache (its class names; max label + 1 as a fallback)."""
    n = getattr(cache, "num_classes", None)
    return int(n) if n else int(np.asarray(cache.labels).max()) + 1


def row_bytes(cache: Any) -> int:
    """Bytes one clip takes in a TensorBatcher: audio as float32 (the cache stores float16), frames as stored,
    label and row index as int64."""
    audio = math.prod(cache.audio.shape[1:]) * 4
    frames = math.prod(cache.frames.shape[1:]) * _itemsize(cache.frames)
    return int(audio + frames + 16)


def _itemsize(arr: Any) -> int:
    return int(arr.element_size()) if isinstance(arr, torch.Tensor) else int(np.dtype(arr.dtype).itemsize)


@dataclass(frozen=True)
class MemoryPlan:
    """Bytes a run keeps resident at its peak: data on the data device, model state and activations."""

    data: int
    model: int
    activations: int

    @property
    def compute(self) -> int:
        """What the compute device holds besides the data: weights, gradients, optimizer state, activations."""
        return self.model + self.activations

    @property
    def total(self) -> int:
        """Everything, when the data live on the compute device."""
        return self.data + self.compute

    def describe(self) -> str:
        """``data 5.6 GiB + model 0.2 GiB + activations 3.9 GiB = 9.7 GiB``."""
        return (f"data {self.data / GIB:.2f} GiB + model {self.model / GIB:.2f} GiB + activations "
                f"{self.activations / GIB:.2f} GiB = {self.total / GIB:.2f} GiB")


def plan_memory(cache: Any, preset: Preset, amp_dtype: torch.dtype | None, activations: bool = True) -> MemoryPlan:
    """The resident bytes of a run on `cache` with `preset`.

    Data: every row of the train, val and test splits once, as the batchers store them (`row_bytes`): a stage
    holds its training rows (shared by the training and eval-mode passes), val and test; a fine-tune's subset
    replaces the full training split at its stage's start, so it never adds to it. Model: weights, gradients
    and optimizer state (SGD momentum: one buffer; Adam: two) in float32, plus buffers. Activations: the
    tensors saved for backward in one training step at the batch size (`activation_bytes`). With
    ``activations=False`` only the data are planned (the host fast path's check on a CPU).
    """
    n = sum(len(cache.indices(s)) for s in ("train", "val", "test"))
    if not activations:
        return MemoryPlan(data=n * row_bytes(cache), model=0, activations=0)
    t, m = preset.train, preset.model
    num_classes = num_classes_of(cache)
    params, buffers = _model_sizes(m, num_classes)
    states = 2 if t.optimizer == "adam" else (1 if t.momentum else 0)
    model = params * 4 * (2 + states) + buffers
    audio = tuple(int(x) for x in cache.audio.shape[1:])
    acts = activation_bytes(m, num_classes, audio, t.batch_size, amp_dtype)
    return MemoryPlan(data=n * row_bytes(cache), model=model, activations=acts)


@functools.lru_cache(maxsize=32)
def _model_sizes(model_cfg: ModelConfig, num_classes: int) -> tuple[int, int]:
    """(parameter count, buffer bytes) of the model, built on the meta device."""
    with torch.device("meta"):
        model = build_model(num_classes, model_cfg)
    return (sum(p.numel() for p in model.parameters()),
            sum(b.numel() * b.element_size() for b in model.buffers()))


@functools.lru_cache(maxsize=32)
def activation_bytes(model_cfg: ModelConfig, num_classes: int, audio_shape: tuple[int, ...], batch_size: int,
                     amp_dtype: torch.dtype | None) -> int:
    """Bytes saved for backward by one training step at `batch_size`, measured on the meta device.

    The model runs in the autocast dtype (bf16 outputs, as autocast's convolutions give) on inputs of the
    run's shapes: audio [B, 1, *audio_shape], frames [B, num_frames, 3, image_size, image_size]. Each saved
    tensor counts once. Evaluation (4x batches, no autograd) keeps only a few layers' outputs at a time.
    """
    dtype = amp_dtype or torch.float32
    with torch.device("meta"):
        model = build_model(num_classes, model_cfg).to(memory_format=torch.channels_last)
        model.audio_encoder.to(dtype)  # the head stays float32, as under autocast (mmgap.models.ConcatHead)
        model.visual_encoder.to(dtype)
        audio = torch.empty(batch_size, 1, *audio_shape, dtype=dtype)
        frames = torch.empty(batch_size, model_cfg.num_frames, 3, model_cfg.image_size, model_cfg.image_size,
                             dtype=dtype)
    seen: dict[int, int] = {}

    def pack(x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.nn.Parameter):
            seen.setdefault(id(x), x.numel() * x.element_size())
        return x

    keep: list[Any] = []
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        keep.append(model(audio, frames))
    return int(sum(seen.values()))


def resident_bytes(tensors: Iterable[Any]) -> int:
    """Bytes of the distinct tensors among `tensors` and the tensor attributes of objects (e.g. batchers)."""
    seen: dict[int, int] = {}
    for obj in tensors:
        items = ([obj] if isinstance(obj, torch.Tensor)
                 else [v for v in vars(obj).values() if isinstance(v, torch.Tensor)])
        for t in items:
            seen.setdefault(id(t), t.numel() * t.element_size())
    return int(sum(seen.values()))


@dataclass(frozen=True)
class DataPath:
    """Where the training data live: `fast_path` (TensorBatcher) on `data_device`, or the per-item loader."""

    fast_path: bool
    data_device: torch.device
    message: str


def choose_data_path(plan: MemoryPlan, device: torch.device, fast_path: bool | None = None,
                     free_device: int | None = None, host: int | None = None) -> DataPath:
    """Device memory when the whole plan fits in `DEVICE_FRACTION` of the device's free memory; else
    host memory (batches copied per step) when the data take under `HOST_FRACTION` of the host; else the
    per-item loader. ``fast_path=False`` forces the loader, True the fast path (on the device when it fits)."""
    host = host_memory_bytes() if host is None else host
    gib = lambda b: f"{b / GIB:.1f} GiB"  # noqa: E731
    if fast_path is False:
        return DataPath(False, torch.device("cpu"), "data: per-item loader (asked for)")
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0] if free_device is None else free_device
        budget = int(DEVICE_FRACTION * free)
        if plan.total <= budget:
            return DataPath(True, device, f"data: on the GPU ({plan.describe()}; {gib(free)} free, "
                                          f"{DEVICE_FRACTION:.0%} of it usable)")
        why = f"the plan ({plan.describe()}) exceeds {DEVICE_FRACTION:.0%} of the GPU's {gib(free)} free"
    elif device.type == "meta":
        return DataPath(True, device, f"data: on the meta device ({plan.describe()})")
    else:
        why = ""
    if fast_path or host == 0 or plan.data < HOST_FRACTION * host:
        where = "host memory, batches copied to the GPU per step" if device.type == "cuda" else "host memory"
        return DataPath(True, torch.device("cpu"), f"data: in {where} ({gib(plan.data)} of {gib(host)} RAM)"
                                                   + (f"; {why}" if why else ""))
    return DataPath(False, torch.device("cpu"),
                    f"data: per-item loader ({gib(plan.data)} exceed {HOST_FRACTION:.0%} of {gib(host)} RAM)"
                    + (f"; {why}" if why else ""))


# ------------------------------------------------------------------------------------------------ batchers


def rows_key(indices: Any) -> int | None:
    """The key of a row subset (None: the whole split)."""
    return None if indices is None else hash(np.asarray(indices, dtype=np.int64).tobytes())


def pooled_batcher(pool: dict[tuple, Any], cache: Any, split: str, train: bool, indices: np.ndarray | None,
                   drop_last: bool, batch_size: int, seed: int, preset: Preset, path: DataPath,
                   device: torch.device) -> Any:
    """The batcher of (split, mode, rows) from `pool`, else a new one added to it: a TensorBatcher on the data
    device (fast path) sharing the tensors of a resident batcher of the same rows in another mode, or the
    per-item DataLoader path."""
    key = (split, train, drop_last, rows_key(indices))
    batcher = pool.get(key)
    if batcher is not None:
        return batcher
    sibling = next((b for k, b in pool.items() if k[0] == split and k[3] == key[3]), None)
    if path.fast_path and sibling is not None:  # same rows in another mode: no second copy
        batcher = copy.copy(sibling)
        batcher.train, batcher.drop_last, batcher.batch_size = train, drop_last, batch_size
    else:
        from mmgap.data import TensorBatcher, make_loader

        m = preset.model
        kwargs = dict(batch_size=batch_size, train=train, num_frames=m.num_frames, image_size=m.image_size,
                      seed=seed, drop_last=drop_last, indices=indices)
        if path.fast_path:
            batcher = TensorBatcher(cache, split, device=path.data_device, **kwargs)
        else:
            batcher = make_loader(cache, split, num_workers=preset.train.num_workers,
                                  pin_memory=device.type == "cuda", **kwargs)
    pool[key] = batcher
    return batcher


class MetaCache:
    """A FeatureCache stand-in of a dataset's real size whose audio (float16) and frames (uint8) live on the
    ``meta`` device: batchers built from it hold shapes and dtypes but no memory (for `resident_bytes`)."""

    def __init__(self, sizes: tuple[int, int, int], audio_shape: tuple[int, ...], frames_shape: tuple[int, ...],
                 num_classes: int) -> None:
        n = sum(sizes)
        self.audio = torch.empty((n, *audio_shape), dtype=torch.float16, device="meta")
        self.frames = torch.empty((n, *frames_shape), dtype=torch.uint8, device="meta")
        self.labels = np.arange(n, dtype=np.int64) % num_classes
        self.split = np.repeat(np.arange(3, dtype=np.int8), sizes)
        self.num_classes = num_classes

    def __len__(self) -> int:
        return len(self.labels)

    def indices(self, split: str) -> np.ndarray:
        """Rows of a split, ascending."""
        return np.flatnonzero(self.split == ("train", "val", "test").index(split))
