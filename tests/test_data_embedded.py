"""The embedded generator: determinism, skip-when-identical, balanced labels, flags, DTMF audio, held-out scans."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import numpy as np
import pytest

from mmgap.config import EmbeddedConfig
from mmgap.data import embedded
from mmgap.data.decode import read_audio, read_frames
from mmgap.data.manifest import DataError

CFG = EmbeddedConfig(n_clips=40, imbalanced_frac=0.3, test_frac=0.2, frame_size=20, frames_per_clip=2,
                     sample_rate=8000, duration_s=1.0, fps=2)


def _digest(root):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((root / "clips").glob("*.mp4"))}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    base = tmp_path_factory.mktemp("emb")
    root = embedded.generate_embedded(base / "a", CFG, seed=3, workers=0, progress=False)
    return root, embedded.build_manifest(root)


def test_manifest_balanced_split_and_flags(generated):
    root, m = generated
    assert len(m) == 40 and m.class_names == [str(d) for d in range(10)]
    labels = np.array([r.label for r in m.rows])
    assert np.bincount(labels, minlength=10).tolist() == [4] * 10
    assert m.counts() == {"train": 30, "val": 0, "test": 10}  # round(0.2 * 4) = 1 test clip per class
    flags = np.array([r.imbalanced for r in m.rows])
    # per class: round(0.3 * 1 test) = 0 and round(0.3 * 3 train) = 1 -> 10 flagged clips
    assert flags.sum() == 10
    assert all(r.video.endswith(".mp4") and (root / "clips").is_dir() for r in m.rows)


def test_same_seed_same_bytes_any_worker_count_and_skip(generated, tmp_path):
    root, _ = generated
    other = embedded.generate_embedded(tmp_path / "b", CFG, seed=3, workers=2, progress=False)
    assert _digest(other) == _digest(root)
    assert (other / "manifest.csv").read_text() == (root / "manifest.csv").read_text()
    stamp = (other / "dataset.json").stat().st_mtime_ns
    embedded.generate_embedded(tmp_path / "b", CFG, seed=3, workers=0, progress=False)
    assert (other / "dataset.json").stat().st_mtime_ns == stamp  # identical dataset: skipped
    embedded.generate_embedded(tmp_path / "b", CFG, seed=4, workers=0, progress=False)
    assert json.loads((other / "dataset.json").read_text())["spec"]["seed"] == 4  # different seed: regenerated
    assert _digest(other) != _digest(root)


def test_audio_track_is_the_digits_dtmf_pair(tmp_path):
    loud = embedded.EmbeddedDesign(snr_db=(6.0, 6.0), tone_s=(0.4, 0.4))
    root = embedded.generate_embedded(tmp_path / "loud", replace(CFG, n_clips=20), seed=0, workers=0,
                                      design=loud, progress=False)
    keypad = (697, 770, 852, 941, 1209, 1336, 1477)
    for r in embedded.build_manifest(root).rows[:10]:
        wave = read_audio(r.video, 8000)[:8000]  # decoded from the AAC track
        spec = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
        freqs = np.fft.rfftfreq(len(wave), 1 / 8000)
        energy = {f: spec[(freqs > f - 10) & (freqs < f + 10)].max() for f in keypad}
        lows = sorted(keypad[:4], key=energy.get)[-1]
        highs = sorted(keypad[4:], key=energy.get)[-1]
        assert (lows, highs) == embedded.DTMF[r.label], r.clip_id


def test_degraded_clips_have_less_visual_structure(generated):
    _, m = generated
    def detail(r):
        f = read_frames(r.video, CFG.fps, CFG.frames_per_clip, CFG.frame_size).astype(np.float32).mean(-1)
        return float(np.abs(f - np.median(f)).mean())
    clean = np.mean([detail(r) for r in m.rows if not r.imbalanced])
    degraded = np.mean([detail(r) for r in m.rows if r.imbalanced])
    assert degraded < clean


def test_test_clips_use_held_out_scans():
    cfg = replace(CFG, n_clips=200)
    plan = embedded._plan(cfg, 0, embedded.DEFAULT_DESIGN)
    train = {p["scan"] for p in plan if p["split"] == "train"}
    test = {p["scan"] for p in plan if p["split"] == "test"}
    assert train and test and not train & test


def test_odd_frame_size_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="even"):
        embedded.generate_embedded(tmp_path / "x", replace(CFG, frame_size=21), progress=False)
