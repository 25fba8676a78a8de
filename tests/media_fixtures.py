"""Tiny media files written at test time (PyAV / soundfile) in the layouts of the real datasets."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import soundfile as sf


def tone(freq: float, seconds: float, sr: int, amp: float = 0.3) -> np.ndarray:
    """A sine tone (float32)."""
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def frames_ramp(n: int, h: int = 24, w: int = 32, step: int = 40) -> np.ndarray:
    """n RGB frames whose grey level encodes the frame index (frame k has level 20 + step * k)."""
    levels = (20 + step * np.arange(n)).clip(0, 255).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (n, h, w, 3)).copy()


def write_video(path: Path, frames: np.ndarray, fps: int = 5, audio: np.ndarray | None = None,
                sr: int = 16000, fmt: str | None = None, faststart: bool = False) -> Path:
    """An H.264 video (with an AAC track when `audio` is given) in the container of the file's extension;
    `faststart` puts an MP4's index before the media data (as web videos are), so a cut file still opens."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=fmt, options={"movflags": "faststart"} if faststart else {}) as c:
        v = c.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        v.options = {"preset": "ultrafast", "crf": "10", "threads": "1"}
        a = None
        if audio is not None:
            a = c.add_stream("aac", rate=sr)
            a.layout = "mono"
        for f in frames:
            for p in v.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        if a is not None:
            af = av.AudioFrame.from_ndarray(audio[None].astype(np.float32), format="fltp", layout="mono")
            af.sample_rate, af.pts = sr, 0
            for p in a.encode(af):
                c.mux(p)
            for p in a.encode(None):
                c.mux(p)
    return path


def write_wav(path: Path, wave: np.ndarray, sr: int) -> Path:
    """A 16-bit PCM WAV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave, sr, subtype="PCM_16")
    return path


def write_corrupt(path: Path) -> Path:
    """A file with the right extension and garbage content (an undecodable clip)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00\x01not a video at all" * 8)
    return path


def write_float_wav(path: Path, wave: np.ndarray, sr: int) -> Path:
    """A 32-bit float WAV (it can hold NaN, unlike PCM)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave, sr, subtype="FLOAT")
    return path


def write_lfs_pointer(path: Path, size: int = 123456) -> Path:
    """The text git-lfs leaves in place of a media file that was never pulled."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("version https://git-lfs.github.com/spec/v1\n"
                    "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
                    f"size {size}\n")
    return path


def truncate(path: Path, fraction: float) -> Path:
    """Cut a file to `fraction` of its bytes (an interrupted download or copy)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path
