"""Preprocessing protocols: one frozen, typed config per dataset, hashed to key the feature cache.

A protocol fixes everything that turns a raw clip into cached arrays: audio sample rate, window, length
and tiling, the spectrogram or fbank parameters, the frame rate at which frames are sampled, how many
frames are stored per clip and at which size. Changing any field changes `Protocol.key()` and therefore
rebuilds the cache; the same fields reuse it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from mmgap.config import EmbeddedConfig

# Bump when the decoding/feature code changes in a way that changes cached values (invalidates caches).
FEATURE_VERSION = 1

AUDIO_FEATURES = ("stft", "fbank", "logmel")
WINDOWS = ("clip", "event")


@dataclass(frozen=True)
class AudioProtocol:
    """How the audio track becomes a [F, T] float16 feature map."""

    sample_rate: int                 # Hz, after resampling (torchaudio)
    duration_s: float                # fixed length in seconds after tiling / padding / cutting
    features: str = "stft"           # "stft" (log magnitude) | "fbank" (Kaldi) | "logmel"
    tile: bool = True                # repeat short audio to duration_s (else zero-pad)
    window: str = "clip"             # "clip" (whole track) | "event" (the manifest's start..end)
    clip_amplitude: bool = False     # clip the waveform to [-1, 1] (OGM-GE does)
    n_fft: int = 512                 # STFT / mel: FFT size
    hop_length: int = 353            # STFT / mel: hop in samples
    n_mels: int = 128                # fbank / logmel: mel bins
    target_frames: int | None = None  # fbank: pad or cut to this many 10 ms frames (KS: 1,024)
    log_eps: float = 1e-7            # log(|S| + eps)
    norm_mean: float = 0.0           # features -> (x - norm_mean) / norm_std after the log
    norm_std: float = 1.0
    min_rms: float = 1e-4            # a track quieter than this is "silent" and skipped
    min_duration_s: float = 0.1      # a track shorter than this is "too short" and skipped


@dataclass(frozen=True)
class VisualProtocol:
    """How the video track becomes [S, H, W, 3] uint8 frames."""

    fps: float = 1.0                 # sampling rate: one frame per 1/fps seconds (the first in each slot)
    frames_per_clip: int = 3         # stored frames S, picked evenly among the sampled ones
    frame_size: int = 256            # stored side (shorter side resized, centre-cropped); 224 crops are taken from it
    window: str = "clip"             # "clip" | "event" (only slots inside start..end)


@dataclass(frozen=True)
class Protocol:
    """A dataset's complete preprocessing protocol plus the seeded validation carve."""

    name: str
    audio: AudioProtocol
    visual: VisualProtocol
    val_frac: float = 0.1            # carved from train when the dataset has no official val split
    split_seed: int = 0              # seed of the val carve (and of CREMA-D's random 9:1 split)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.audio.features not in AUDIO_FEATURES:
            raise ValueError(f"audio.features={self.audio.features!r}; expected one of {AUDIO_FEATURES}")
        for part in (self.audio, self.visual):
            if part.window not in WINDOWS:
                raise ValueError(f"window={part.window!r}; expected one of {WINDOWS}")
        if not 0.0 <= self.val_frac < 0.5:
            raise ValueError(f"val_frac={self.val_frac!r}; expected a fraction in [0, 0.5)")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (written to the cache's meta.json)."""
        return dataclasses.asdict(self)

    def key(self) -> str:
        """A stable 12-hex hash of every field and the feature code version."""
        blob = json.dumps({"v": FEATURE_VERSION, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def replace(self, **changes: Any) -> Protocol:
        """A copy with top-level fields replaced (e.g. ``val_frac=0.2``)."""
        return dataclasses.replace(self, **changes)


# CREMA-D as in OGM-GE: 22,050 Hz, tiled to 3 s, clipped to ±1, STFT 512 / hop 353, log|S| -> 257 x 188;
# frames at 1 fps (3 stored, repeated when a clip is shorter than 3 s).
CREMA_D = Protocol(
    name="crema_d",
    audio=AudioProtocol(sample_rate=22050, duration_s=3.0, features="stft", tile=True, clip_amplitude=True,
                        n_fft=512, hop_length=353),
    visual=VisualProtocol(fps=1.0, frames_per_clip=3, frame_size=256),
)

# AVE: 16 kHz audio cut to the annotated event window and tiled to 10.24 s, Kaldi fbank 128 x 1,024
# (the KS normalisation); 4 frames at 1 fps inside the window. The official val split is used.
AVE = Protocol(
    name="ave",
    audio=AudioProtocol(sample_rate=16000, duration_s=10.24, features="fbank", tile=True, window="event",
                        n_mels=128, target_frames=1024, norm_mean=-4.503877, norm_std=2 * 5.141276),
    visual=VisualProtocol(fps=1.0, frames_per_clip=4, frame_size=256, window="event"),
)

# Kinetics-Sounds: 16 kHz, 10 s, Kaldi fbank (htk, hanning, 128 bins, 10 ms, no dither) after removing the
# mean, padded / cut to 1,024 frames, normalised (fbank + 4.503877) / (2 * 5.141276); 3 frames at 1 fps.
KINETICS_SOUNDS = Protocol(
    name="kinetics_sounds",
    audio=AudioProtocol(sample_rate=16000, duration_s=10.0, features="fbank", tile=False,
                        n_mels=128, target_frames=1024, norm_mean=-4.503877, norm_std=2 * 5.141276),
    visual=VisualProtocol(fps=1.0, frames_per_clip=3, frame_size=256),
)

# The generic CSV layout (users' own data): the CREMA-D spectrogram at 16 kHz over 4 s, 3 frames at 1 fps.
GENERIC = Protocol(
    name="generic",
    audio=AudioProtocol(sample_rate=16000, duration_s=4.0, features="stft", tile=True, clip_amplitude=True,
                        n_fft=512, hop_length=256),
    visual=VisualProtocol(fps=1.0, frames_per_clip=3, frame_size=256),
)

PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (CREMA_D, AVE, KINETICS_SOUNDS, GENERIC)}


def embedded_protocol(cfg: EmbeddedConfig, val_frac: float = 0.1, split_seed: int = 0) -> Protocol:
    """The embedded dataset's protocol: 40-bin log-mel (32 ms FFT, 20 ms hop) and every stored frame."""
    sr = cfg.sample_rate
    return Protocol(
        name="embedded",
        audio=AudioProtocol(sample_rate=sr, duration_s=cfg.duration_s, features="logmel", tile=False,
                            n_fft=2 ** round(math.log2(0.032 * sr)),
                            hop_length=max(1, int(round(0.02 * sr))), n_mels=40, log_eps=1e-6,
                            min_rms=1e-5),
        visual=VisualProtocol(fps=float(cfg.fps), frames_per_clip=cfg.frames_per_clip,
                              frame_size=cfg.frame_size),
        val_frac=val_frac,
        split_seed=split_seed,
    )
