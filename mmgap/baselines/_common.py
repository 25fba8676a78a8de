"""Helpers shared by the baselines: true-class scores, encoder lookup, schedules, device RNG, autocast.

Everything here is small tensor glue that no library provides; the formulas themselves live in each
method's module.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import warnings
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmgap.strategy import Batch, TrainerView

MODALITIES = ("audio", "visual")
REFERENCE_EPOCHS = 100
"""The epoch budget the authors' schedule defaults (windows, re-init period, warm-up) were published for."""


def true_class_score(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Σ_i softmax(l_i)[y_i] over the batch (OGM-GE's and OPM's s_m), a 0-d float32 tensor."""
    probs = torch.softmax(logits.float(), dim=1)
    return probs.gather(1, y.view(-1, 1)).sum()


def ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy in float32 (stable under bf16/fp16 autocast)."""
    return F.cross_entropy(logits.float(), y)


def standard_parts(fused: torch.Tensor, logit_a: torch.Tensor, logit_v: torch.Tensor,
                   y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Detached per-branch CE for logging, named as mmgap.losses names them (fusion, uni_a, uni_v)."""
    with torch.no_grad():
        return {"fusion": ce(fused, y), "uni_a": ce(logit_a, y), "uni_v": ce(logit_v, y)}


def encoder(model: nn.Module, modality: str) -> nn.Module:
    """The encoder module of ``modality`` ("audio" | "visual")."""
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    return getattr(model, f"{modality}_encoder")


def grads(module: nn.Module) -> list[torch.Tensor]:
    """The existing gradients of a module's parameters (parameters without a gradient are skipped)."""
    return [p.grad for p in module.parameters() if p.grad is not None]


def head_linear(model: nn.Module) -> nn.Linear:
    """The concat head as an nn.Linear(2d, M) (W = [W^a, W^v], Eq. 1-2), with a clear error otherwise."""
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Linear):
        raise TypeError(
            f"this baseline needs model.head to be an nn.Linear concat head (ConcatHead), got {type(head).__name__}; "
            "build the model with mmgap.models.AVClassifier"
        )
    return head


def split_weight(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(W^a, W^v): the two column blocks of the concat head's weight (Eq. 2)."""
    head = head_linear(model)
    d_a = getattr(head, "dim_a", head.in_features // 2)
    return head.weight[:, :d_a], head.weight[:, d_a:]


def to_device(batch: Batch, device: torch.device | str) -> Batch:
    """The batch's tensors on ``device`` (a no-op when they already are)."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def autocast(trainer: TrainerView) -> contextlib.AbstractContextManager[Any]:
    """torch.autocast in the trainer's AMP dtype on its device (bf16 on CUDA; on a CPU only when asked, to
    emulate the CUDA path); a null context in fp32 (nesting is harmless)."""
    dtype = getattr(trainer, "amp_dtype", None)
    device = torch.device(getattr(trainer, "device", "cpu"))
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def device_generator(trainer: TrainerView, device: torch.device | str | None = None) -> torch.Generator:
    """A generator on ``device`` (default: the trainer's), seeded from ``trainer.generator`` (reproducible)."""
    device = torch.device(device if device is not None else getattr(trainer, "device", "cpu"))
    base = getattr(trainer, "generator", None)
    seed = int(torch.randint(0, 2**62, (1,), generator=base).item()) if base is not None else 0
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def total_epochs(trainer: TrainerView) -> int | None:
    """The run's epoch budget: ``trainer.stage_epochs`` when the trainer exposes it, else the preset's
    warm-up + adaptive epochs (mmgap.trainer.train_baseline's default budget), else None."""
    for name in ("stage_epochs", "epochs", "num_epochs"):
        value = getattr(trainer, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    t = getattr(getattr(trainer, "preset", None), "train", None)
    if t is not None:
        n = int(getattr(t, "warmup_epochs", 0)) + int(getattr(t, "adaptive_epochs", 0))
        return n if n > 0 else None
    return None


def epochs_of(fraction: float, total: int) -> int:
    """round(fraction · total), halves up: an epoch bound or period the authors published as a count for their
    run length, given here as a fraction of the run and resolved for this run's budget."""
    return math.floor(fraction * total + 0.5)


def check_fraction(owner: str, name: str, value: Any, positive: bool = False) -> float:
    """``value`` as a float in [0, 1] (in (0, 1] with ``positive``), else a ValueError naming the parameter."""
    low = "(0, 1]" if positive else "[0, 1]"
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (0.0 < value <= 1.0 if positive else 0.0 <= value <= 1.0):
        raise ValueError(f"{owner} {name} must be a fraction of the run in {low}, got {value!r}")
    return float(value)


def check_window(owner: str, name: str, window: Any) -> tuple[float, float]:
    """``window`` as (start, end) fractions of the run with 0 <= start <= end <= 1, else a ValueError."""
    if not isinstance(window, (tuple, list)) or len(window) != 2:
        raise ValueError(f"{owner} {name} must be a (start, end) pair of fractions of the run, got {window!r}")
    start = check_fraction(owner, f"{name}[0]", window[0])
    end = check_fraction(owner, f"{name}[1]", window[1])
    if start > end:
        raise ValueError(f"{owner} {name} must have start <= end (fractions in [0, 1]), got {window!r}")
    return start, end


def window_epochs(window: tuple[float, float], epochs: int) -> dict[str, int]:
    """An inclusive window given as fractions of the run, in epochs of a run of ``epochs``: starts <= e <= ends
    (each bound rounded half up, the end at most the last epoch)."""
    return {"modulation_starts": epochs_of(window[0], epochs),
            "modulation_ends": min(epochs_of(window[1], epochs), epochs - 1)}


def run_length(trainer: TrainerView, reference: int) -> int:
    """The epoch count schedules are resolved for: the run's budget, or ``reference`` (the authors') if unknown."""
    total = total_epochs(trainer)
    return total if total is not None else reference


def in_window(epoch: int, start: int, end: int | None) -> bool:
    """Whether ``epoch`` lies in the inclusive window [start, end] (end None = no end): the authors'
    ``modulation_starts <= epoch <= modulation_ends``."""
    return epoch >= start and (end is None or epoch <= end)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Run a block with the model in eval mode and no autograd, then restore its previous mode."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


class DeviceRng:
    """A reproducible generator on the trainer's device whose state travels with the checkpoint.

    A state saved on another device type (a CUDA run resumed on a CPU, or the reverse) cannot be set into this
    device's generator (CPU states are 5,056 bytes, CUDA states 16): the generator is then seeded again from a
    hash of the saved state, the same for every resume of that checkpoint, with a warning saying so.
    """

    def __init__(self) -> None:
        self._gen: torch.Generator | None = None
        self._pending: Any = None

    def setup(self, trainer: TrainerView) -> None:
        """Create the generator (once) and apply a state restored before setup."""
        if self._gen is None:
            self._gen = device_generator(trainer)
        if self._pending is not None:
            restore_generator(self._gen, self._pending)
            self._pending = None

    @property
    def gen(self) -> torch.Generator:
        """The generator (after setup)."""
        if self._gen is None:
            raise RuntimeError("call setup(trainer) before training (the device generator is created there)")
        return self._gen

    def state(self) -> dict[str, Any] | None:
        """The generator's state and device type for a checkpoint (None before setup)."""
        return None if self._gen is None else {"device": self._gen.device.type, "state": self._gen.get_state()}

    def load(self, state: Any) -> None:
        """Restore a checkpointed state now, or at setup when the generator does not exist yet."""
        if state is None:
            return
        if self._gen is None:
            self._pending = state
        else:
            restore_generator(self._gen, state)


def restore_generator(gen: torch.Generator, saved: Any) -> None:
    """Set a saved generator state (``{"device", "state"}``, or a bare state tensor from older checkpoints);
    one from another device type reseeds `gen` deterministically from the state's bytes, with a warning."""
    device, state = (saved["device"], saved["state"]) if isinstance(saved, dict) else (None, saved)
    if device == gen.device.type:
        gen.set_state(state)
        return
    if device is None:
        try:
            gen.set_state(state)
            return
        except RuntimeError:  # a bare state of another device type (its size differs)
            pass
    seed = int.from_bytes(hashlib.sha256(state.cpu().numpy().tobytes()).digest()[:8], "little") & (2**63 - 1)
    gen.manual_seed(seed)
    warnings.warn(
        f"a random-generator state saved on {device or 'another device type'} cannot be restored on "
        f"{gen.device.type}: the generator is seeded again from it (the same on every resume of this checkpoint), "
        "so the resumed run's random draws differ from an uninterrupted run's", RuntimeWarning, stacklevel=2)
