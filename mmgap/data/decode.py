"""Decoding: video frames and audio tracks with PyAV, WAV/FLAC with soundfile, resampling with torchaudio.

Every failure becomes a `ClipError` whose message is the reason written to exclusions.csv, so a bad clip
is skipped and reported instead of crashing a worker. Before decoding, a file is checked for being there,
non-empty and not a git-lfs pointer; after decoding, `check_duration` compares what decoded with what the
file's header declares, so a truncated file is excluded with the numbers instead of padded. A track is held
to its own declared duration (MP4 / AVI headers, Matroska / WebM `DURATION` tags); where a container
declares only one duration for the whole file (FLV, Matroska without tags), that is the longest track's,
so a shorter track of a valid file passes and only a file whose longest track falls short is truncated.
"""

from __future__ import annotations

import math
import re
import wave as wavefile
from collections.abc import Iterator, Mapping
from pathlib import Path

import av
import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from mmgap.data.manifest import reason_kind

SOUNDFILE_EXTS = {".wav", ".flac", ".ogg"}
LFS_MAGIC = b"version https://git-lfs.github.com/spec/"
LFS_REASON = "git-lfs pointer file, not media: run `git lfs pull` in the dataset's git clone to download it"
# A track that decodes shorter than its header declares by more than this is truncated.
TRUNCATION_TOLERANCE_S = 0.5
TRUNCATION_TOLERANCE_FRAC = 0.1
# A WAV whose data chunk declares at least this many bytes was written by a streaming recorder that never
# went back to fill in the size (0x7FFFFFFF, SoX's 0x7FFFF000, 0xFFFFFFFF - 44, ...): its length is unknown.
STREAMED_WAV_SIZE = 0x7F000000
_TAG_DURATION = re.compile(r"^(\d+):(\d{2}):(\d{2}(?:\.\d*)?)$")


class ClipError(Exception):
    """A clip cannot be used; str(error) is the reason recorded in exclusions.csv, `kind` what summaries
    group it under (default: `manifest.reason_kind` of the reason)."""

    def __init__(self, reason: str, kind: str = "") -> None:
        super().__init__(reason)
        self.kind = kind or reason_kind(reason)


def is_lfs_pointer(path: str | Path) -> bool:
    """True when the file holds git-lfs pointer text instead of the media it stands for."""
    try:
        with open(path, "rb") as fh:
            return fh.read(len(LFS_MAGIC)) == LFS_MAGIC
    except OSError:
        return False


def check_file(path: Path) -> None:
    """Raise ClipError when the file is missing, empty or a git-lfs pointer."""
    if not path.is_file():
        raise ClipError("file missing")
    if path.stat().st_size == 0:
        raise ClipError("empty file")
    if is_lfs_pointer(path):
        raise ClipError(LFS_REASON)


def check_duration(decoded_s: float, declared_s: float | None, what: str) -> None:
    """Raise ClipError when `what` decoded shorter than its declared duration by more than the tolerance
    (max of TRUNCATION_TOLERANCE_S and TRUNCATION_TOLERANCE_FRAC of the declared duration)."""
    if falls_short(decoded_s, declared_s):
        raise ClipError(f"truncated file: {what} decodes {decoded_s:.1f} s of the {declared_s:.1f} s its header "
                        "declares; download or copy the file again")


def falls_short(decoded_s: float, declared_s: float | None) -> bool:
    """True when `decoded_s` is shorter than a known `declared_s` by more than the truncation tolerance."""
    if declared_s is None or not math.isfinite(declared_s) or declared_s <= 0:
        return False
    return decoded_s < declared_s - max(TRUNCATION_TOLERANCE_S, TRUNCATION_TOLERANCE_FRAC * declared_s)


def _track_declared(stream: av.stream.Stream) -> float | None:
    """The track's own declared duration in seconds (a Matroska / WebM `DURATION` tag, else its header's);
    None if the file declares none for this track."""
    tagged = _duration_tag(stream.metadata)
    if tagged is not None:  # FFmpeg may fill an untimed track's duration with the file's; a tag is its own
        return tagged
    return float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None


def _duration_tag(metadata: Mapping[str, str]) -> float | None:
    """Seconds of a Matroska / WebM `DURATION` tag (`00:00:05.000000000`; `DURATION-eng` from mkvmerge)."""
    for key, value in metadata.items():
        m = _TAG_DURATION.match(value.strip()) if key.upper().split("-")[0] == "DURATION" else None
        if m:
            return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    return None


def _media_streams(c: av.container.InputContainer) -> int:
    """How many audio and video tracks the file has."""
    return sum(s.type in ("audio", "video") for s in c.streams)


def _demux(c: av.container.InputContainer, stream: av.stream.Stream,
           spans: dict[int, tuple[float, float]]) -> Iterator[av.frame.Frame]:
    """The decoded frames of `stream`, reading every track's packets on the way and noting each audio or
    video track's (first, last) time in `spans` (the file's longest track, for `check_tracks`)."""
    for packet in c.demux():
        _note_span(packet, spans)
        if packet.stream.index == stream.index:
            yield from packet.decode()


def _note_span(packet: av.packet.Packet, spans: dict[int, tuple[float, float]]) -> None:
    """Widen the packet's track span in `spans` to cover the packet (flush packets carry no time)."""
    if packet.pts is None or packet.time_base is None or packet.stream.type not in ("audio", "video"):
        return
    t0 = float(packet.pts * packet.time_base)
    t1 = t0 + float((packet.duration or 0) * packet.time_base)
    a, b = spans.get(packet.stream.index, (t0, t1))
    spans[packet.stream.index] = (min(a, t0), max(b, t1))


def check_tracks(c: av.container.InputContainer, stream: av.stream.Stream, decoded_s: float, what: str,
                 spans: dict[int, tuple[float, float]]) -> None:
    """Raise ClipError when the decoded track falls short of the duration the file declares for it.

    A track is held to its own declared duration. A duration that is the whole file's (FLV, untagged
    Matroska, or a track's duration FFmpeg filled in from the file's) is the longest track's: with several
    tracks the shorter one of a valid file passes, and the file is truncated only when its longest track,
    measured in `spans`, falls short of it."""
    own = _track_declared(stream)
    whole = c.duration / av.time_base if c.duration else None
    if _media_streams(c) <= 1 or (own is not None and not _same_time(own, whole)):
        check_duration(decoded_s, own if own is not None else whole, what)
        return
    longest = max(b for _, b in spans.values()) - min(a for a, _ in spans.values()) if spans else None
    if longest is None or not falls_short(longest, whole):
        return  # the longest track reaches the file's duration: this track is shorter, not cut
    if own is not None:
        check_duration(decoded_s, own, what)
    else:
        check_duration(longest, whole, "the file's longest track")


def _same_time(a: float, b: float | None) -> bool:
    return b is not None and abs(a - b) < 2e-3


def _open(path: str | Path) -> av.container.InputContainer:
    p = Path(path)
    check_file(p)
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
                start: float | None = None, end: float | None = None,
                info: dict[str, float] | None = None) -> np.ndarray:
    """Frames sampled at `fps` (first frame of each 1/fps slot), `frames_per_clip` picked evenly: [S, H, W, 3].

    `info`, when given, receives ``video_s`` (seconds decoded in the window) and ``video_frames`` (distinct
    sampled frames, before repetition to `frames_per_clip`) for the data report."""
    slots: dict[int, av.VideoFrame] = {}
    with _open(path) as c:
        if not c.streams.video:
            raise ClipError("no video track")
        stream = c.streams.video[0]
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        t0: float | None = None
        rel, last_dur, stopped, error = 0.0, 1.0 / rate, False, None
        spans: dict[int, tuple[float, float]] = {}
        try:
            for i, frame in enumerate(_demux(c, stream, spans)):
                t = frame.time if frame.time is not None else i / rate
                if t0 is None:
                    t0 = t
                rel = t - t0
                if frame.duration and frame.time_base:
                    last_dur = float(frame.duration * frame.time_base)
                if start is not None and rel < start:
                    continue
                if end is not None and rel >= end:
                    stopped = True  # the window is complete; the rest of the file is not needed
                    break
                slot = math.floor((rel - (start or 0.0)) * fps + 1e-6)
                if slot not in slots:
                    slots[slot] = frame
        except (av.error.FFmpegError, ValueError) as e:
            error = e
        if t0 is None:
            if error is not None:
                raise ClipError(f"undecodable video ({type(error).__name__})") from error
            raise ClipError("no decodable frames")
        length = rel + last_dur
        if not stopped:  # decoded to the end (or to an error): it must reach the declared duration
            check_tracks(c, stream, length, "the video track", spans)
    if not slots:
        if start is not None and not stopped:
            raise ClipError(f"event window {_window(start, end)} starts after the video ends "
                            f"({length:.1f} s)", kind="event window after the end")
        raise ClipError("no decodable frames" + (f" in the event window {_window(start, end)}" if start is not None
                                                 else ""), kind="no decodable frames")
    kept = [slots[k] for k in sorted(slots)]
    if info is not None:
        info["video_s"] = (min(length, end) if end is not None else length) - (start or 0.0)
        info["video_frames"] = len(kept)
    pick = [min(len(kept) - 1, math.floor((k + 0.5) * len(kept) / frames_per_clip)) for k in range(frames_per_clip)]
    return np.stack([_square(kept[j], frame_size) for j in pick])


def _window(start: float, end: float | None) -> str:
    return f"{start:g}-{end:g} s" if end is not None else f"from {start:g} s"


def _resample(wave: np.ndarray, sr: int, target: int) -> np.ndarray:
    if sr == target:
        return wave.astype(np.float32, copy=False)
    return AF.resample(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)), sr, target).numpy()


def read_audio(path: str | Path, sample_rate: int, start: float | None = None,
               end: float | None = None, info: dict[str, float] | None = None) -> np.ndarray:
    """Mono float32 waveform at `sample_rate`, optionally cut to [start, end) seconds; ClipError when unusable.

    `info`, when given, receives ``audio_s`` (seconds of audio, in the window) for the data report."""
    p = Path(path)
    if p.suffix.lower() in SOUNDFILE_EXTS:
        wave, sr = _read_soundfile(p)
    else:
        wave, sr = _decode_audio_track(p)
    if start is not None:
        a = int(round(start * sr))
        b = int(round(end * sr)) if end is not None else len(wave)
        if a >= len(wave):
            raise ClipError(f"event window {_window(start, end)} starts after the audio ends "
                            f"({len(wave) / sr:.2f} s)", kind="event window after the end")
        wave = wave[a:b]
        if len(wave) == 0:
            raise ClipError(f"event window {_window(start, end)} holds no audio sample",
                            kind="event window without audio")
    bad = int(np.count_nonzero(~np.isfinite(wave)))
    if bad:
        raise ClipError(f"non-finite samples: {bad} of {len(wave)} are NaN or infinite (a corrupt float file)")
    if info is not None:
        info["audio_s"] = len(wave) / sr
    return _resample(wave, sr, sample_rate)


def _read_soundfile(p: Path) -> tuple[np.ndarray, int]:
    """A WAV / FLAC / OGG file downmixed to mono float32 (soundfile), checked against its declared length."""
    check_file(p)
    try:
        wave, sr = sf.read(str(p), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as e:
        raise ClipError(f"undecodable audio ({type(e).__name__})") from e
    if len(wave) == 0:
        raise ClipError(f"empty audio: the {p.suffix.lstrip('.').upper()} file has a header but no samples "
                        "(a blank recording)")
    declared = _declared_frames(p)
    if declared is not None:
        check_duration(len(wave) / sr, declared / sr, "the audio")
    return wave.mean(axis=1), int(sr)


def _declared_frames(p: Path) -> int | None:
    """Sample frames a WAV's data chunk declares (stdlib `wave`, PCM only); None when unknown or not PCM WAV."""
    if p.suffix.lower() != ".wav":
        return None
    try:
        with wavefile.open(str(p), "rb") as w:
            n, block = w.getnframes(), w.getsampwidth() * w.getnchannels()
    except (wavefile.Error, EOFError, OSError):
        return None
    if n == 0 or n * block >= STREAMED_WAV_SIZE:  # a placeholder size: unknown, not a declared length
        return None
    return n


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
        spans: dict[int, tuple[float, float]] = {}
        try:
            for frame in _demux(c, stream, spans):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except (av.error.FFmpegError, ValueError) as e:
            if not chunks:
                raise ClipError(f"undecodable audio track ({type(e).__name__})") from e
        n = sum(len(x) for x in chunks)
        if n == 0:
            raise ClipError("empty audio track")
        check_tracks(c, stream, n / sr, "the audio track", spans)
    return np.concatenate(chunks).astype(np.float32), int(sr)


def check_audio(wave: np.ndarray, sample_rate: int, min_duration_s: float, min_rms: float) -> None:
    """Raise ClipError for audio that is too short or silent (a wave from `read_audio`, which has already
    refused non-finite samples, counted in the file)."""
    if len(wave) < min_duration_s * sample_rate:
        raise ClipError(f"audio too short ({len(wave) / sample_rate:.3f} s < {min_duration_s} s)")
    rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64))))
    if rms < min_rms:
        raise ClipError(f"silent audio (rms {rms:.2e} < {min_rms:.0e})")
