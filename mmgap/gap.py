"""The per-sample modality gap (Eq. 5-6), its z-score (Eq. 7) and the choice of the dominant modality.

Sign convention: the gap is "dominant minus weaker", so a POSITIVE gap means the dominant modality is
more confident than the weaker one on that sample, zero means balanced, negative means the weaker modality
is ahead. ``dominant="audio"`` (the paper's default, Eq. 5-6 as printed) gives ``g = (audio) - (visual)``;
``dominant="visual"`` flips the sign. ``"auto"`` is resolved once, on the training set, by `pick_dominant`.

Units of the raw gap: ``prob`` is a difference of probabilities in [-1, 1]; ``kl`` is a difference of KL
divergences in nats, in [-log M, log M]. All functions take torch tensors (and stay differentiable), and
the ones marked so also accept numpy arrays (returning numpy).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

GAP_KINDS = ("prob", "kl")
DOMINANT_CHOICES = ("audio", "visual")

T = TypeVar("T", torch.Tensor, np.ndarray)


def _numpy_in_numpy_out(fn: Callable[..., torch.Tensor]) -> Callable[..., Any]:
    """Let a torch function take numpy arrays: convert them in, and the tensor result back out."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        was_numpy = any(isinstance(a, np.ndarray) for a in (*args, *kwargs.values()))
        conv = [torch.as_tensor(a) if isinstance(a, np.ndarray) else a for a in args]
        kconv = {k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
        out = fn(*conv, **kconv)
        return out.detach().cpu().numpy() if was_numpy and isinstance(out, torch.Tensor) else out

    return wrapper


def _check_dominant(dominant: str) -> None:
    if dominant not in DOMINANT_CHOICES:
        hint = ""
        if dominant == "auto":
            hint = " (resolve 'auto' first with mmgap.gap.pick_dominant on the training set)"
        raise ValueError(f"dominant={dominant!r} is not one of {DOMINANT_CHOICES}{hint}")


def _upcast(logits: torch.Tensor) -> torch.Tensor:
    """Half-precision logits (bf16/fp16 under autocast) go to float32; float32/float64 stay as they are."""
    low = logits.dtype in (torch.float16, torch.bfloat16) or not logits.is_floating_point()
    return logits.float() if low else logits


def _check_logits(logits: torch.Tensor, y: torch.Tensor | None = None) -> None:
    if logits.dim() != 2:
        raise ValueError(f"logits must be [B, M]; got shape {tuple(logits.shape)}")
    if y is not None and (y.dim() != 1 or y.shape[0] != logits.shape[0]):
        raise ValueError(f"labels must be [B] with B={logits.shape[0]}; got shape {tuple(y.shape)}")


@_numpy_in_numpy_out
def true_class_prob(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Confidence on the true class s_y = softmax(l)[y] (Eq. 3), per sample, [B]."""
    _check_logits(logits, y)
    logp = F.log_softmax(_upcast(logits), dim=1)
    return logp.gather(1, y.long().view(-1, 1)).squeeze(1).exp()


@_numpy_in_numpy_out
def kl_to_uniform(logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(l) || U) = log M - H(p) in nats, per sample, [B] (the per-modality term of Eq. 6)."""
    _check_logits(logits)
    # Computed from log_softmax (never log(softmax)), so confident rows neither underflow nor give NaN.
    logp = F.log_softmax(_upcast(logits), dim=1)
    return (logp.exp() * logp).sum(dim=1) + math.log(logits.shape[1])


def _signed(g_audio_minus_visual: torch.Tensor, dominant: str) -> torch.Tensor:
    _check_dominant(dominant)
    return g_audio_minus_visual if dominant == "audio" else -g_audio_minus_visual


@_numpy_in_numpy_out
def prob_gap(
    logit_a: torch.Tensor, logit_v: torch.Tensor, y: torch.Tensor, dominant: str = "audio"
) -> torch.Tensor:
    """Modality gap on the true-class probability g = s^a_y - s^v_y (dominant minus weaker), Eq. (5)."""
    return _signed(true_class_prob(logit_a, y) - true_class_prob(logit_v, y), dominant)


@_numpy_in_numpy_out
def kl_gap(logit_a: torch.Tensor, logit_v: torch.Tensor, dominant: str = "audio") -> torch.Tensor:
    """Modality gap g = KL(s^a || U) - KL(s^v || U) in nats (dominant minus weaker), Eq. (6)."""
    return _signed(kl_to_uniform(logit_a) - kl_to_uniform(logit_v), dominant)


def compute_gap(
    kind: str, logit_a: T, logit_v: T, y: T | None = None, dominant: str = "audio"
) -> T:
    """Raw per-sample gap of either kind: ``"prob"`` (Eq. 5, needs y) or ``"kl"`` (Eq. 6, ignores y)."""
    if kind == "prob":
        if y is None:
            raise ValueError("the 'prob' gap (Eq. 5) needs the labels y")
        return prob_gap(logit_a, logit_v, y, dominant=dominant)
    if kind == "kl":
        return kl_gap(logit_a, logit_v, dominant=dominant)
    raise ValueError(f"unknown gap kind {kind!r}; choose one of {GAP_KINDS}")


def zscore(g: T) -> tuple[T, float, float]:
    """Z-score ĝ = (g - μ_g) / σ_g with the population std (Eq. 7); returns (ĝ, μ_g, σ_g)."""
    is_tensor = isinstance(g, torch.Tensor)
    arr = g.detach().double().cpu().numpy() if is_tensor else np.asarray(g, dtype=np.float64)
    if arr.size == 0:
        raise ValueError("zscore got an empty set of gaps: compute the gaps over a non-empty training set")
    if not np.all(np.isfinite(arr)):
        bad = int((~np.isfinite(arr)).sum())
        raise ValueError(
            f"zscore got {bad} non-finite gap(s) (NaN/inf) out of {arr.size}: the model's logits diverged; "
            "lower the learning rate or check the inputs"
        )
    mean, std = float(arr.mean()), float(arr.std())
    if not std > 1e-12:
        raise ValueError(
            f"zscore: all {arr.size} gaps are (nearly) equal (std={std:.3g}, mean={mean:.4g}), so Eq. 7 is "
            "undefined and no mixture can be fitted; train the warm-up longer or check that both encoders "
            "learn"
        )
    return (g - mean) / std, mean, std


def zscore_point(g: Any, mean: float, std: float) -> Any:
    """A raw gap in the z-score units of a fitted set, ĝ = (g - μ_g) / σ_g (Eq. 7 with the set's μ_g, σ_g)."""
    return (g - mean) / std


def unzscore(g_hat: Any, mean: float, std: float) -> Any:
    """Back to raw gap units: g = ĝ · σ_g + μ_g (inverse of Eq. 7); works on floats, tensors and arrays."""
    return g_hat * std + mean


def pick_dominant(logit_a: Any, logit_v: Any, y: Any) -> str:
    """``"audio"`` or ``"visual"``: the modality with the higher mean true-class confidence (ties: audio)."""
    s_a = true_class_prob(logit_a, y).mean()
    s_v = true_class_prob(logit_v, y).mean()
    return "audio" if float(s_a) >= float(s_v) else "visual"
