"""Presets `smoke` / `demo` / `paper` as typed, validated dataclasses.

A preset bundles what a run needs: the embedded dataset's size, the model's width and input shapes, and the
training schedule. Notebooks and scripts take a preset by name and override single fields, e.g.
``get_preset("demo", rho=0.9, gap="kl")``; every value is validated and a bad one raises `ConfigError`
naming the field, the value and the allowed range.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields, replace
from typing import Any

PRESET_NAMES = ("smoke", "demo", "paper")
GAPS = ("prob", "kl")
MIXTURES = ("gmm", "smm", "lmm")
OPTIMIZERS = ("sgd", "adam")
DEVICES = ("auto", "cpu", "cuda")
DOMINANT = ("audio", "visual", "auto")
GAP_SOURCES = ("eval", "train")
POSTERIORS = ("eq9", "monotone")
LR_SCHEDULES = ("none", "step")


class ConfigError(ValueError):
    """A parameter is unknown or out of range; the message says which and what is allowed."""


@dataclass(frozen=True)
class EmbeddedConfig:
    """Size and difficulty of the generated audio-visual digits dataset (see mmgap.data.embedded)."""

    n_clips: int = 2400            # clips in total (train + val + test), balanced over the 10 digits
    hard_frac: float = 0.3         # clips whose picture is "hard": small, faint, inverted, learnable but slowly
    corrupt_frac: float = 0.2      # clips whose picture is "corrupt": no label information (ground truth)
    test_frac: float = 0.2         # held-out test split
    frame_size: int = 24           # stored frame side in pixels (the model crops `image_size` from it)
    frames_per_clip: int = 4       # stored frames per clip (segments are sampled from these)
    sample_rate: int = 8000        # audio sample rate in Hz
    duration_s: float = 1.0        # clip length in seconds
    fps: int = 4                   # frame rate of the written video


@dataclass(frozen=True)
class ModelConfig:
    """Encoder width and the shapes the model sees."""

    width: int = 64                # channels of ResNet-18's first stage (64 = the paper's ResNet-18)
    num_frames: int = 3            # frames (segments) per clip fed to the visual encoder
    image_size: int = 224          # side of the (cropped) frame fed to the visual encoder


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation schedule and the adaptive loss's hyperparameters (Eq. 11)."""

    batch_size: int = 64
    optimizer: str = "sgd"         # "sgd" | "adam"
    lr: float = 2e-3               # the paper: SGD, momentum 0.9, lr 2e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_schedule: str = "none"      # "none" (constant) | "step": lr x lr_decay every lr_step epochs (StepLR), counted
                                   # over the whole run (both stages); see lr_at and mmgap.cards for each method's
    lr_step: int = 70              # epochs between decays of the "step" schedule
    lr_decay: float = 0.1          # factor of each decay
    warmup_epochs: int = 30        # stage 1 (Eq. 10)
    adaptive_epochs: int = 70      # stage 2 (Eq. 11)
    finetune_epochs: int = 10      # data purification fine-tuning (Table VII)
    refit_every: int = 1           # refit the mixture every K adaptive epochs
    gap_source: str = "eval"       # refit on an eval-mode pass over the training set ("eval": our reading of
                                   # the paper's aggregation over all training samples, about 1/3 of an epoch) or, a
                                   # cheaper approximation, on the gaps recorded in the previous epoch's training steps
                                   # ("train", free)
    posterior: str = "eq9"         # "eq9": Eq. 9 as printed | "monotone": w1 held at its max beyond μ1
    rho: float = 0.95              # annealing λ_t = ρ^epoch, ρ in (0, 1]
    # α, β, γ: the paper gives no values; these are this project's choice (documented in notebook 04).
    alpha: float = 1.0             # weight of w0·L_f
    beta: float = 0.1              # weight of |g|^2
    gamma: float = 1.0             # weight of w1·|g − μ0|^2
    gap: str = "prob"              # "prob" (Eq. 5) | "kl" (Eq. 6)
    mixture: str = "gmm"           # "gmm" | "smm" | "lmm"
    dominant: str = "audio"        # which modality the gap's sign favours: "audio" | "visual" | "auto"
    reset_optimizer: bool = True   # reset the optimizer between stages (Table IV)
    val_frac: float = 0.1          # validation split carved from the training data (seeded)
    num_workers: int = 0           # DataLoader workers for the per-item path
    compile: bool = False          # torch.compile the model on CUDA


@dataclass(frozen=True)
class Preset:
    """A named bundle of the three configs plus the seeds used for mean ± std tables."""

    name: str
    embedded: EmbeddedConfig = field(default_factory=EmbeddedConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seeds: tuple[int, ...] = (0, 1, 2)

    def with_overrides(self, **overrides: Any) -> Preset:
        """A copy with fields of any section replaced by name (``rho=0.9``, ``width=16``), validated."""
        sections = {"embedded": self.embedded, "model": self.model, "train": self.train}
        changes: dict[str, dict[str, Any]] = {k: {} for k in sections}
        top: dict[str, Any] = {}
        for key, value in overrides.items():
            if key == "seeds":
                top["seeds"] = tuple(int(s) for s in value)
                continue
            owners = [name for name, sec in sections.items() if key in {f.name for f in fields(sec)}]
            if not owners:
                known = sorted({f.name for sec in sections.values() for f in fields(sec)} | {"seeds"})
                raise ConfigError(f"unknown parameter {key!r}; known parameters: {', '.join(known)}")
            changes[owners[0]][key] = value
        new = replace(
            self,
            **{name: replace(sec, **changes[name]) for name, sec in sections.items() if changes[name]},
            **top,
        )
        validate(new)
        return new

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (for metrics.json)."""
        return dataclasses.asdict(self)


def _check(cond: bool, name: str, value: Any, allowed: str) -> None:
    if not cond:
        raise ConfigError(f"{name}={value!r} is out of range: expected {allowed}")


def validate(preset: Preset) -> Preset:
    """Raise ConfigError on any out-of-range value; returns the preset unchanged when valid."""
    e, m, t = preset.embedded, preset.model, preset.train
    _check(preset.name in PRESET_NAMES, "preset", preset.name, f"one of {PRESET_NAMES}")
    _check(isinstance(e.n_clips, int) and e.n_clips >= 20, "n_clips", e.n_clips, "an integer >= 20")
    _check(0.0 <= e.hard_frac < 1.0, "hard_frac", e.hard_frac, "a fraction in [0, 1)")
    _check(0.0 <= e.corrupt_frac < 1.0, "corrupt_frac", e.corrupt_frac, "a fraction in [0, 1)")
    _check(e.hard_frac + e.corrupt_frac < 1.0, "hard_frac + corrupt_frac", e.hard_frac + e.corrupt_frac,
           "a sum below 1 (some clips must be clean)")
    _check(0.0 < e.test_frac < 0.5, "test_frac", e.test_frac, "a fraction in (0, 0.5)")
    _check(e.frame_size >= 8, "frame_size", e.frame_size, "an integer >= 8")
    _check(e.frames_per_clip >= 1, "frames_per_clip", e.frames_per_clip, "an integer >= 1")
    _check(e.sample_rate >= 4000, "sample_rate", e.sample_rate, "at least 4000 Hz (DTMF tones reach 1633 Hz)")
    _check(e.duration_s > 0, "duration_s", e.duration_s, "a positive number of seconds")
    _check(e.fps >= 1, "fps", e.fps, "an integer >= 1")
    _check(isinstance(m.width, int) and m.width >= 2, "width", m.width, "an integer >= 2")
    _check(m.num_frames >= 1, "num_frames", m.num_frames, "an integer >= 1")
    _check(m.image_size >= 8, "image_size", m.image_size, "an integer >= 8")
    _check(t.batch_size >= 2, "batch_size", t.batch_size, "an integer >= 2")
    _check(t.optimizer in OPTIMIZERS, "optimizer", t.optimizer, f"one of {OPTIMIZERS}")
    _check(t.lr > 0, "lr", t.lr, "a positive learning rate")
    _check(0.0 <= t.momentum < 1.0, "momentum", t.momentum, "a value in [0, 1)")
    _check(t.weight_decay >= 0, "weight_decay", t.weight_decay, "a non-negative value")
    _check(t.lr_schedule in LR_SCHEDULES, "lr_schedule", t.lr_schedule, f"one of {LR_SCHEDULES}")
    _check(isinstance(t.lr_step, int) and not isinstance(t.lr_step, bool) and t.lr_step >= 1, "lr_step", t.lr_step,
           "an integer >= 1 (epochs between decays)")
    _check(0.0 < t.lr_decay <= 1.0, "lr_decay", t.lr_decay, "a factor in (0, 1]")
    for name in ("warmup_epochs", "adaptive_epochs", "finetune_epochs"):
        v = getattr(t, name)
        _check(isinstance(v, int) and v >= 0, name, v, "a non-negative integer")
    _check(isinstance(t.refit_every, int) and t.refit_every >= 1, "refit_every", t.refit_every, "an integer >= 1")
    _check(0.0 < t.rho <= 1.0, "rho", t.rho, "a decay rate in (0, 1]")
    for name in ("alpha", "beta", "gamma"):
        v = getattr(t, name)
        _check(v >= 0, name, v, "a non-negative weight")
    _check(t.gap in GAPS, "gap", t.gap, f"one of {GAPS}")
    _check(t.mixture in MIXTURES, "mixture", t.mixture, f"one of {MIXTURES}")
    _check(t.gap_source in GAP_SOURCES, "gap_source", t.gap_source, f"one of {GAP_SOURCES}")
    _check(t.posterior in POSTERIORS, "posterior", t.posterior, f"one of {POSTERIORS}")
    _check(t.dominant in DOMINANT, "dominant", t.dominant, f"one of {DOMINANT}")
    _check(0.0 < t.val_frac < 0.5, "val_frac", t.val_frac, "a fraction in (0, 0.5)")
    _check(t.num_workers >= 0, "num_workers", t.num_workers, "a non-negative integer")
    _check(len(preset.seeds) >= 1, "seeds", preset.seeds, "at least one seed")
    return preset


PRESETS: dict[str, Preset] = {
    # Seconds per notebook: a tiny dataset and a narrow network, for the test suite only.
    "smoke": Preset(
        name="smoke",
        embedded=EmbeddedConfig(n_clips=200, frame_size=20, frames_per_clip=2, fps=2),
        model=ModelConfig(width=4, num_frames=2, image_size=16),
        train=TrainConfig(batch_size=32, lr=0.05, warmup_epochs=2, adaptive_epochs=2, finetune_epochs=1),
        seeds=(0, 1),
    ),
    # Every notebook in minutes on a 2-core CPU, large enough to show the paper's phenomena.
    # 1,800 clips: 50 % clean, 30 % hard and 20 % corrupt pictures; calibrated with
    # benchmarks/embedded_calibration.py (data/README.md has the table) within `make demo`'s 15 min on 2 cores.
    "demo": Preset(
        name="demo",
        embedded=EmbeddedConfig(n_clips=1800, hard_frac=0.3, corrupt_frac=0.2),
        model=ModelConfig(width=8, num_frames=2, image_size=20),
        # lr 0.02 (0.05 before the tiered data): at 0.05 the warm-up's visual branch, and with it the mixture's
        # separation (AUROC of w1 0.76-0.92), varied twice as much across seeds (data/README.md).
        train=TrainConfig(batch_size=64, lr=0.02, warmup_epochs=12, adaptive_epochs=8, finetune_epochs=4),
        seeds=(0, 1, 2),
    ),
    # The paper's protocol: ResNet-18 from scratch, SGD momentum 0.9, initial lr 2e-3 (Section IV-B); batch 64,
    # 30 + 70 epochs and the step decay are this project's choices (the paper gives none; mmgap.cards says why).
    # Per-dataset values (rho from Table VI) come from PAPER_DATASET_DEFAULTS; for a GPU.
    "paper": Preset(
        name="paper",
        embedded=EmbeddedConfig(n_clips=6000, frame_size=64, frames_per_clip=6, fps=3, duration_s=2.0),
        model=ModelConfig(width=64, num_frames=3, image_size=224),
        train=TrainConfig(lr_schedule="step", lr_step=70, lr_decay=0.1),
        seeds=(0, 1, 2),
    ),
}

PAPER_DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    # Table VI: the best rho per dataset. Kinetics-Sounds ties at 72.61 for 0.90 and 0.80; 0.90 is the one whose
    # figure Table II reports and the nearer to the other datasets' 0.95.
    "crema_d": {"rho": 0.95},
    "ave": {"rho": 0.95},
    "kinetics_sounds": {"rho": 0.90},
}
"""The `paper` preset's per-dataset values (applied by ``get_preset("paper", dataset=...)`` before overrides)."""


def get_preset(name: str, dataset: str | None = None, **overrides: Any) -> Preset:
    """The preset called `name` (with the `paper` preset's values for `dataset`), then field overrides, validated."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESET_NAMES)}")
    preset = PRESETS[name]
    if name == "paper" and dataset in PAPER_DATASET_DEFAULTS:
        overrides = {**PAPER_DATASET_DEFAULTS[dataset], **overrides}
    return preset.with_overrides(**overrides) if overrides else validate(preset)


def lr_at(train: TrainConfig, epoch: int) -> float:
    """Learning rate of global epoch `epoch` (0-based, counted over every stage of a run) under the schedule."""
    if train.lr_schedule == "step":
        return train.lr * train.lr_decay ** (epoch // train.lr_step)
    return train.lr
