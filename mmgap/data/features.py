"""Audio features with torchaudio / torch: log-magnitude STFT, Kaldi fbank, log-mel; fixed length by tiling."""

from __future__ import annotations

import functools

import numpy as np
import torch
import torchaudio.compliance.kaldi as kaldi
import torchaudio.transforms as T

from mmgap.data.protocols import AudioProtocol


def fix_length(wave: np.ndarray, n: int, tile: bool) -> np.ndarray:
    """Tile (repeat) or zero-pad `wave` to `n` samples, then cut to `n`."""
    if len(wave) == 0:
        return np.zeros(n, dtype=np.float32)
    if len(wave) < n:
        if tile:
            wave = np.tile(wave, -(-n // len(wave)))
        else:
            wave = np.pad(wave, (0, n - len(wave)))
    return np.ascontiguousarray(wave[:n], dtype=np.float32)


@functools.lru_cache(maxsize=8)
def _mel(sr: int, n_fft: int, hop: int, n_mels: int) -> T.MelSpectrogram:
    return T.MelSpectrogram(sample_rate=sr, n_fft=n_fft, hop_length=hop, n_mels=n_mels, power=2.0)


def audio_features(wave: np.ndarray, p: AudioProtocol) -> np.ndarray:
    """A [F, T] float16 feature map of a mono waveform at `p.sample_rate`, fixed to `p.duration_s`."""
    n = int(round(p.duration_s * p.sample_rate))
    w = fix_length(np.asarray(wave, dtype=np.float32), n, p.tile)
    if p.clip_amplitude:
        w = np.clip(w, -1.0, 1.0)
    x = torch.from_numpy(w)
    with torch.no_grad():
        if p.features == "stft":
            spec = torch.stft(x, n_fft=p.n_fft, hop_length=p.hop_length, window=torch.hann_window(p.n_fft),
                              center=True, pad_mode="constant", return_complex=True)
            feat = torch.log(spec.abs() + p.log_eps)
        elif p.features == "logmel":
            feat = torch.log(_mel(p.sample_rate, p.n_fft, p.hop_length, p.n_mels)(x) + p.log_eps)
        else:  # Kaldi fbank, as used for Kinetics-Sounds (AST-style)
            fb = kaldi.fbank((x - x.mean())[None], htk_compat=True, sample_frequency=p.sample_rate,
                             use_energy=False, window_type="hanning", num_mel_bins=p.n_mels, dither=0.0,
                             frame_shift=10)
            if p.target_frames is not None:
                pad = p.target_frames - fb.shape[0]
                fb = torch.nn.functional.pad(fb, (0, 0, 0, pad)) if pad > 0 else fb[: p.target_frames]
            feat = fb.T
        feat = (feat - p.norm_mean) / p.norm_std
    return feat.numpy().astype(np.float16)


def feature_shape(p: AudioProtocol) -> tuple[int, int]:
    """The (F, T) shape `audio_features` produces under protocol `p`."""
    return tuple(audio_features(np.full(16, 1e-3, dtype=np.float32), p).shape)  # type: ignore[return-value]
