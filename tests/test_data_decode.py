"""Decoder faults reported by the field's users (issue 12): truncated files, empty audio, NaN samples, git-lfs
pointers; every one is a ClipError with a reason that says what is wrong, never a bare exception."""

from __future__ import annotations

import re
import struct

import numpy as np
import pytest

from media_fixtures import frames_ramp, tone, truncate, write_float_wav, write_lfs_pointer, write_video, write_wav
from mmgap.data.decode import LFS_REASON, ClipError, check_audio, read_audio, read_frames


def decoded_and_declared(reason: str) -> tuple[float, float]:
    m = re.fullmatch(r"truncated file: the (?:video track|audio track|audio|file's longest track) "
                     r"decodes ([\d.]+) s of the ([\d.]+) s "
                     r"its header declares; download or copy the file again", reason)
    assert m, reason
    return float(m.group(1)), float(m.group(2))


@pytest.fixture(scope="module")
def ten_seconds(tmp_path_factory):
    """A 10 s web-style MP4 (index first, 2 fps, AAC at 8 kHz) and a copy cut to a third of its bytes."""
    d = tmp_path_factory.mktemp("ks_clips")
    full = write_video(d / "full_000000_000010.mp4", frames_ramp(20, 16, 16, step=10), fps=2,
                       audio=tone(440, 10.0, 8000), sr=8000, faststart=True)
    cut = d / "cut_000000_000010.mp4"
    cut.write_bytes(full.read_bytes())
    return full, truncate(cut, 1 / 3)


def test_a_cut_faststart_mp4_is_truncated_not_padded(ten_seconds):
    full, cut = ten_seconds
    assert read_frames(full, 1.0, 3, 16).shape == (3, 16, 16, 3)  # the intact file passes the same check
    assert len(read_audio(full, 8000)) >= 10 * 8000
    with pytest.raises(ClipError) as video:
        read_frames(cut, 1.0, 3, 16)
    decoded, declared = decoded_and_declared(str(video.value))
    assert declared == 10.0 and 2.0 <= decoded <= 4.5 and "the video track" in str(video.value)
    with pytest.raises(ClipError) as audio:
        read_audio(cut, 8000)
    decoded, declared = decoded_and_declared(str(audio.value))
    assert declared == 10.0 and 2.0 <= decoded <= 4.5 and "the audio track" in str(audio.value)


def test_a_truncated_pcm_wav_is_truncated(tmp_path):
    wav = truncate(write_wav(tmp_path / "1001_DFA_ANG_XX.wav", tone(300, 3.0, 16000), 16000), 1 / 3)
    with pytest.raises(ClipError) as err:
        read_audio(wav, 16000)
    assert decoded_and_declared(str(err.value)) == (1.0, 3.0) and "the audio decodes" in str(err.value)
    streamed = write_wav(tmp_path / "streamed.wav", tone(300, 1.0, 16000), 16000)
    data = bytearray(streamed.read_bytes())
    data[40:44] = b"\xff\xff\xff\xff"  # the data size a streaming recorder leaves: unknown, not truncated
    streamed.write_bytes(bytes(data))
    assert len(read_audio(streamed, 16000)) == 16000


@pytest.mark.parametrize("size", [0x7FFFFFFF, 0x7FFFF000, 0xFFFFFFFF - 44, 0xFFFFFFF0])
def test_streamed_wav_placeholder_sizes_are_unknown_not_truncated(tmp_path, size):
    wav = write_wav(tmp_path / "streamed.wav", tone(300, 1.0, 16000), 16000)
    data = bytearray(wav.read_bytes())
    assert data[36:40] == b"data"
    data[40:44] = struct.pack("<I", size)  # 0x7FFFF000: SoX; 0x7FFFFFFF, 0xFFFFFFFF - 44: other recorders
    wav.write_bytes(bytes(data))
    assert len(read_audio(wav, 16000)) == 16000


@pytest.fixture(scope="module")
def unequal_tracks(tmp_path_factory):
    """MKV and FLV files (one duration for the file, or per-track tags) whose tracks differ in length:
    video 3 s + audio 6 s, and video 6 s + audio 3 s; and each cut to 40 % of its bytes."""
    d = tmp_path_factory.mktemp("unequal")
    files = {}
    for ext in ("mkv", "flv"):
        for name, seconds_v, seconds_a in (("short_video", 3, 6.0), ("short_audio", 6, 3.0)):
            full = write_video(d / f"{name}.{ext}", frames_ramp(2 * seconds_v, 16, 16, step=10), fps=2,
                               audio=tone(440, seconds_a, 8000), sr=8000)
            cut = d / f"{name}_cut.{ext}"
            cut.write_bytes(full.read_bytes())
            files[ext, name] = (full, truncate(cut, 0.4), seconds_v, seconds_a)
    return files


@pytest.mark.parametrize("ext", ["mkv", "flv"])
@pytest.mark.parametrize("name", ["short_video", "short_audio"])
def test_a_track_shorter_than_the_other_is_not_truncated(unequal_tracks, ext, name):
    full, _, seconds_v, seconds_a = unequal_tracks[ext, name]
    assert read_frames(full, 1.0, 3, 16).shape == (3, 16, 16, 3)
    assert len(read_audio(full, 8000)) == pytest.approx(seconds_a * 8000, abs=2048)  # AAC frames
    assert len(read_frames(full, 2.0, 2 * seconds_v, 16)) == 2 * seconds_v


@pytest.mark.parametrize("ext", ["mkv", "flv"])
@pytest.mark.parametrize("name", ["short_video", "short_audio"])
def test_a_cut_file_with_tracks_of_unequal_length_is_truncated(unequal_tracks, ext, name):
    _, cut, seconds_v, seconds_a = unequal_tracks[ext, name]
    for read, declared_track in ((lambda: read_frames(cut, 1.0, 3, 16), seconds_v),
                                 (lambda: read_audio(cut, 8000), seconds_a)):
        with pytest.raises(ClipError) as err:
            read()
        decoded, declared = decoded_and_declared(str(err.value))
        if ext == "mkv":  # per-track DURATION tags: each track against its own length
            assert declared == pytest.approx(declared_track, abs=0.15)
        else:  # FLV declares one duration, the longest track's: that track is checked
            assert declared == pytest.approx(6.0, abs=0.15) and "the file's longest track" in str(err.value)
        assert decoded < declared - 0.5


def test_empty_wav_and_a_window_after_the_audio_end(tmp_path):
    empty = write_wav(tmp_path / "AudioWAV" / "1076_MTI_SAD_XX.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(ClipError) as err:
        read_audio(empty, 22050)  # resampled: used to raise a bare RuntimeError (reshape of 0 elements)
    assert str(err.value) == "empty audio: the WAV file has a header but no samples (a blank recording)"
    clip = write_video(tmp_path / "AVE" / "short.mp4", frames_ramp(12, 16, 16), fps=2, audio=tone(300, 2.0, 16000),
                       sr=16000)
    with pytest.raises(ClipError) as err:
        read_audio(clip, 16000, 4.0, 6.0)
    assert re.fullmatch(r"event window 4-6 s starts after the audio ends \(2\.\d\d s\)", str(err.value))
    assert len(read_audio(clip, 16000, 1.0, 6.0)) == pytest.approx(16000, abs=1100)  # the part that exists
    with pytest.raises(ClipError) as err:
        read_frames(clip, 1.0, 2, 16, 8.0, 10.0)
    assert str(err.value) == "event window 8-10 s starts after the video ends (6.0 s)"


def test_non_finite_samples_are_named(tmp_path):
    x = tone(300, 1.0, 8000)
    x[100:200] = np.nan
    wav = write_float_wav(tmp_path / "nan.wav", x, 8000)
    with pytest.raises(ClipError) as err:
        read_audio(wav, 16000)
    assert str(err.value) == "non-finite samples: 100 of 8000 are NaN or infinite (a corrupt float file)"
    x[100:200] = 0.0
    x[5] = np.inf
    with pytest.raises(ClipError, match=r"^non-finite samples: 1 of 8000 are NaN or infinite \(a corrupt"):
        read_audio(write_float_wav(tmp_path / "inf.wav", x, 8000), 8000)  # counted in the file, before resampling


def test_git_lfs_pointers_say_to_pull(tmp_path):
    for name in ("VideoFlash/1001_DFA_ANG_XX.flv", "AudioWAV/1001_DFA_ANG_XX.wav"):
        pointer = write_lfs_pointer(tmp_path / name)
        with pytest.raises(ClipError) as err:
            read_audio(pointer, 16000) if name.endswith(".wav") else read_frames(pointer, 1.0, 3, 16)
        assert str(err.value) == LFS_REASON
    assert "git lfs pull" in LFS_REASON


@pytest.mark.parametrize("content", [
    b"RIFF\x24\x00\x00\x00WAVEfmt ",                  # a header cut inside the fmt chunk
    b"\x00" * 3000,                                    # zeros
    b"RIFF",                                           # four bytes
])
def test_read_audio_only_raises_explained_errors(tmp_path, content):
    p = tmp_path / "odd.wav"
    p.write_bytes(content)
    with pytest.raises(ClipError, match=r"^(undecodable audio|empty audio)"):
        read_audio(p, 22050)


def test_one_sample_resamples(tmp_path):
    one = write_wav(tmp_path / "one.wav", np.full(1, 0.5, np.float32), 16000)
    assert read_audio(one, 22050).shape == (2,)  # tiny but valid; too short for training (check_audio says so)
    with pytest.raises(ClipError, match=r"^audio too short"):
        check_audio(read_audio(one, 22050), 22050, 0.1, 1e-4)
