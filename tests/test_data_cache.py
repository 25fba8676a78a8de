"""Feature cache: shapes and dtypes, exclusions with reasons, the val carve, reuse and invalidation, loading."""

from __future__ import annotations

import csv
import hashlib

import numpy as np
import pytest

from media_fixtures import frames_ramp, tone, write_corrupt, write_video, write_wav
from mmgap.data import cache
from mmgap.data.cache import FeatureCache, build_cache, cache_key, carve_val, load_cache, manifest_digest
from mmgap.data.manifest import Manifest, ManifestRow
from mmgap.data.protocols import AudioProtocol, Protocol, VisualProtocol

PROTO = Protocol(
    name="tiny",
    audio=AudioProtocol(sample_rate=8000, duration_s=0.5, features="stft", n_fft=64, hop_length=32),
    visual=VisualProtocol(fps=2.0, frames_per_clip=2, frame_size=16),
    val_frac=0.25,
)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    rows = []
    for i in range(12):  # 3 classes x 4 clips; 8 train, 4 test
        p = write_video(d / f"c{i:02d}.mp4", frames_ramp(4), fps=2, audio=tone(300 + 100 * (i % 3), 1.0, 8000), sr=8000)
        rows.append(ManifestRow(f"c{i:02d}", str(p), "", i % 3, "abc"[i % 3], "test" if i >= 8 else "train"))
    bad = [
        ("corrupt", str(write_corrupt(d / "corrupt.mp4")), ""),
        ("mute", str(write_video(d / "mute.mp4", frames_ramp(4), fps=2)), ""),
        ("silent", str(write_video(d / "silent.mp4", frames_ramp(4), fps=2, audio=np.zeros(8000), sr=8000)), ""),
        ("wav", str(write_video(d / "wav.mp4", frames_ramp(4), fps=2)),
         str(write_wav(d / "w.wav", tone(500, 1, 8000), 8000))),
    ]
    good = open(rows[0].video, "rb").read()
    (d / "truncated.mp4").write_bytes(good[: len(good) // 2])
    bad.append(("truncated", str(d / "truncated.mp4"), ""))
    for cid, v, a in bad:
        rows.append(ManifestRow(cid, v, a, 0, "a", "train"))
    return Manifest("tiny", ["a", "b", "c"], rows)


@pytest.fixture(scope="module")
def built(manifest, tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    return root, build_cache(manifest, PROTO, root, workers=0, progress=False)


def test_shapes_dtypes_and_values(built):
    _, path = built
    c = load_cache(path)
    n = 13  # 12 good clips + the one with a separate WAV; 4 skipped
    assert c.audio.shape == (n, 33, 126) and c.audio.dtype == np.float16  # 64/2+1 bins, 1 + 4000/32 frames
    assert c.frames.shape == (n, 2, 16, 16, 3) and c.frames.dtype == np.uint8
    assert c.labels.dtype == np.int64 and c.split.dtype == np.int8
    assert isinstance(c.audio, np.memmap) and isinstance(c.frames, np.memmap)
    # 4 frames at 2 fps sampled at 2 fps -> 4 slots; 2 stored = frames floor((k + 0.5) * 4 / 2) = 1, 3,
    # whose grey levels are 20 + 40 k = 60 and 140
    assert abs(float(c.frames[0, 0].mean()) - 60) < 3 and abs(float(c.frames[0, 1].mean()) - 140) < 3
    assert c.clip_ids[:3] == ["c00", "c01", "c02"] and "wav" in c.clip_ids
    assert c.class_names == ["a", "b", "c"] and c.num_classes == 3 and c.imbalanced is None


def test_exclusions_written_with_reasons(built):
    _, path = built
    with open(path / "exclusions.csv") as fh:
        reasons = {r["clip_id"]: r["reason"] for r in csv.DictReader(fh)}
    assert set(reasons) == {"corrupt", "mute", "silent", "truncated"}
    assert reasons["corrupt"].startswith("undecodable") and reasons["truncated"].startswith("undecodable")
    assert reasons["mute"] == "no audio track"
    assert reasons["silent"].startswith("silent audio")


def test_val_carved_from_train_stratified_and_seeded(built):
    _, path = built
    c = load_cache(path)
    counts = c.counts()
    assert counts == {"train": 7, "val": 2, "test": 4}  # round(0.25 * 9 train clips) = 2 moved to val
    split_a = carve_val(np.arange(40) % 4, np.zeros(40, np.int8), 0.25, seed=0)
    split_b = carve_val(np.arange(40) % 4, np.zeros(40, np.int8), 0.25, seed=0)
    split_c = carve_val(np.arange(40) % 4, np.zeros(40, np.int8), 0.25, seed=1)
    assert (split_a == 1).sum() == 10 and np.array_equal(split_a, split_b) and not np.array_equal(split_a, split_c)
    assert sorted(np.bincount((np.arange(40) % 4)[split_a == 1]).tolist()) == [2, 2, 3, 3]  # stratified
    official = np.array([0, 0, 1, 2], np.int8)
    assert np.array_equal(carve_val(np.zeros(4, int), official, 0.25, 0), official)  # an official val is kept


def test_reuse_and_invalidation(built, manifest):
    root, path = built
    stamp = (path / "meta.json").stat().st_mtime_ns
    assert build_cache(manifest, PROTO, root, workers=0, progress=False) == path
    assert (path / "meta.json").stat().st_mtime_ns == stamp
    changed = PROTO.replace(audio=AudioProtocol(sample_rate=8000, duration_s=0.5, n_fft=64, hop_length=16))
    assert changed.key() != PROTO.key()
    fewer = Manifest(manifest.dataset, manifest.class_names, manifest.rows[:12])
    other = build_cache(fewer, changed, root, workers=0, progress=False)
    assert other != path and load_cache(other).audio.shape == (12, 33, 251)
    assert not list(root.glob(".*tmp*"))  # temporary folders renamed or removed


def test_key_follows_file_contents(manifest, tmp_path):
    rows = [ManifestRow(**vars(r)) for r in manifest.rows[:2]]
    before = cache_key(Manifest("tiny", ["a", "b", "c"], rows), PROTO)
    copy = tmp_path / "c00.mp4"  # same name, other content (another clip's bytes plus padding)
    copy.write_bytes(open(rows[1].video, "rb").read() + b"\0" * 7)
    rows[0].video = str(copy)
    assert cache_key(Manifest("tiny", ["a", "b", "c"], rows), PROTO) != before


def test_key_follows_the_decoder_checks(manifest, monkeypatch):
    before = hashlib.sha256(f"{PROTO.key()}:{manifest_digest(manifest)}".encode()).hexdigest()[:12]
    key = cache_key(manifest, PROTO)
    assert key != before  # a cache keyed before the checks existed is not reused: it is rebuilt once
    monkeypatch.setattr(cache, "CHECKS_VERSION", cache.CHECKS_VERSION + 1)
    assert cache_key(manifest, PROTO) != key


def test_parallel_build_equals_serial(manifest, built, tmp_path):
    _, path = built
    par = load_cache(build_cache(manifest, PROTO, tmp_path, workers=2, progress=False))
    ser = load_cache(path)
    assert np.array_equal(par.audio, ser.audio) and np.array_equal(par.frames, ser.frames)
    assert np.array_equal(par.split, ser.split) and par.clip_ids == ser.clip_ids


def test_from_arrays_and_indices():
    split = np.array([0, 0, 1, 2, 0, 2])
    c = FeatureCache.from_arrays(np.zeros((6, 4, 5)), np.zeros((6, 2, 8, 8, 3)), np.array([0, 1, 1, 0, 1, 0]), split,
                                 ["x", "y"])
    assert c.audio.dtype == np.float16 and c.frames.dtype == np.uint8 and c.path is None
    assert c.indices("train").tolist() == [0, 1, 4] and c.indices("val").tolist() == [2]
    assert c.indices("test").tolist() == [3, 5]
    with pytest.raises(ValueError, match="split"):
        c.indices("dev")
    with pytest.raises(ValueError, match="labels"):
        FeatureCache.from_arrays(np.zeros((2, 4, 5)), np.zeros((2, 1, 8, 8, 3)), np.array([0, 2]), np.zeros(2),
                                 ["x", "y"])


def test_load_cache_rejects_a_non_cache(tmp_path):
    with pytest.raises(ValueError, match="not a feature cache"):
        load_cache(tmp_path)
