"""Decoding: video frames and audio tracks with PyAV, WAV/FLAC with soundfile, resampling with torchaudio.

Every failure becomes a `ClipError` whose message is the reason written to exclusions.csv, so a bad clip
is skipped and reported instead of crashing a worker.
"""

from __future__ import annotations

import math
from pathlib import Path

import av
import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

SOUNDFILE_EXTS = {".wav", ".flac", ".ogg"}


class ClipError(Exception):
    """A clip cannot be used; str(error) is the reason recorded in exclusions.csv."""


def _open(path: str | Path) -> av.container.InputContainer:
    p = Path(path)
    if not p.is_file():
        raise ClipError("file missing")
    if p.stat().st_size == 0:
        raise ClipError("empty file")
    try:
        return av.open(str(p))
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise ClipError(f"undecodable file ({type(e).__name__})") from e


def _square(img: av.VideoFrame, side: int) -> np.ndarray:
    """Resize the shorter side to `side` (area filter, libswscale) and centre-crop a square, RGB uint8."""
    w, h = img.width, img.height
    scale = side / min(w, h)
    nw, nh = max(side, round(w * scale)), max(side, round(h * scale))
    arr = img.reformat(width=nw, height=nh, format="rgb24", interpolation="AREA").to_ndarray()
    y0, x0 = (nh - side) // 2, (nw - side) // 2
    return np.ascontiguousarray(arr[y0:y0 + side, x0:x0 + side])


def read_frames(path: str | Path, fps: float, frames_per_clip: int, frame_size: int,
                start: float | None = None, end: float | None = None) -> np.ndarray:
    """Frames sampled at `fps` (first frame of each 1/fps slot), `frames_per_clip` picked evenly: [S, H, W, 3]."""
    slots: dict[int, av.VideoFrame] = {}
    with _open(path) as c:
        if not c.streams.video:
            raise ClipError("no video track")
        stream = c.streams.video[0]
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        t0: float | None = None
        try:
            for i, frame in enumerate(c.decode(stream)):
                t = frame.time if frame.time is not None else i / rate
                if t0 is None:
                    t0 = t
                rel = t - t0
                if start is not None and rel < start:
                    continue
                if end is not None and rel >= end:
                    break
                slot = math.floor((rel - (start or 0.0)) * fps + 1e-6)
                if slot not in slots:
                    slots[slot] = frame
        except (av.error.FFmpegError, ValueError) as e:
            if not slots:  # a truncated tail is tolerated when some frames decoded
                raise ClipError(f"undecodable video ({type(e).__name__})") from e
    if not slots:
        raise ClipError("no decodable frames" + (" in the event window" if start is not None else ""))
    kept = [slots[k] for k in sorted(slots)]
    pick = [min(len(kept) - 1, math.floor((k + 0.5) * len(kept) / frames_per_clip)) for k in range(frames_per_clip)]
    return np.stack([_square(kept[j], frame_size) for j in pick])


def _resample(wave: np.ndarray, sr: int, target: int) -> np.ndarray:
    if sr == target:
        return wave.astype(np.float32, copy=False)
    return AF.resample(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)), sr, target).numpy()


def read_audio(path: str | Path, sample_rate: int, start: float | None = None,
               end: float | None = None) -> np.ndarray:
    """Mono float32 waveform at `sample_rate`, optionally cut to [start, end) seconds."""
    p = Path(path)
    if p.suffix.lower() in SOUNDFILE_EXTS:
        if not p.is_file():
            raise ClipError("file missing")
        try:
            wave, sr = sf.read(str(p), dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, ValueError) as e:
            raise ClipError(f"undecodable audio ({type(e).__name__})") from e
        wave = wave.mean(axis=1)
    else:
        wave, sr = _decode_audio_track(p)
    if start is not None:
        a, b = int(round(start * sr)), int(round(end * sr)) if end is not None else len(wave)
        wave = wave[a:b]
    return _resample(wave, sr, sample_rate)


def _decode_audio_track(path: Path) -> tuple[np.ndarray, int]:
    """The first audio stream of a container, downmixed to mono float (libswresample), and its rate."""
    chunks: list[np.ndarray] = []
    with _open(path) as c:
        if not c.streams.audio:
            raise ClipError("no audio track")
        stream = c.streams.audio[0]
        sr = stream.rate or stream.codec_context.sample_rate
        if not sr:
            raise ClipError("audio track without a sample rate")
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=sr)
        try:
            for frame in c.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except (av.error.FFmpegError, ValueError) as e:
            if not chunks:
                raise ClipError(f"undecodable audio track ({type(e).__name__})") from e
    if not chunks:
        raise ClipError("empty audio track")
    return np.concatenate(chunks).astype(np.float32), int(sr)


def check_audio(wave: np.ndarray, sample_rate: int, min_duration_s: float, min_rms: float) -> None:
    """Raise ClipError for audio that is too short or silent."""
    if len(wave) < min_duration_s * sample_rate:
        raise ClipError(f"audio too short ({len(wave) / sample_rate:.3f} s < {min_duration_s} s)")
    rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64))))
    if not math.isfinite(rms) or rms < min_rms:
        raise ClipError(f"silent audio (rms {rms:.2e} < {min_rms:.0e})")
