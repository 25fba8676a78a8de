"""The embedded generator: determinism, skip-when-identical, balanced labels, visual tiers, DTMF audio,
held-out scans."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import numpy as np
import pytest

from mmgap.config import EmbeddedConfig
from mmgap.data import embedded
from mmgap.data.decode import read_audio
from mmgap.data.manifest import TIERS, DataError

CFG = EmbeddedConfig(n_clips=40, hard_frac=0.34, corrupt_frac=0.34, test_frac=0.2, frame_size=20,
                     frames_per_clip=2, sample_rate=8000, duration_s=1.0, fps=2)


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
    tiers = np.array([r.visual_tier for r in m.rows])
    flags = np.array([r.imbalanced for r in m.rows])
    # per class: 1 test clip (round(0.34) = 0 hard, 0 corrupt) and 3 train clips (round(1.02) = 1 hard, 1 corrupt)
    for d in range(10):
        assert sorted(tiers[labels == d]) == ["clean", "clean", "corrupt", "hard"]
    assert (flags == (tiers != "clean")).all() and flags.sum() == 20
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


def test_tiers_render_as_designed():
    """Clean: the own scan, large; hard: smaller, fainter, with distractors; corrupt: no digit or a foreign one."""
    cfg = replace(CFG, n_clips=400, frame_size=24, hard_frac=0.3, corrupt_frac=0.3)
    design = replace(embedded.DEFAULT_DESIGN, corruptions=("absent", "foreign"), hard_distractors=2)
    plan = embedded._plan(cfg, 0, design)
    _, targets = embedded._digits()
    by_tier = {t: [p for p in plan if p["visual_tier"] == t] for t in TIERS}
    assert all(targets[p["scan"]] == p["digit"] for p in by_tier["clean"] + by_tier["hard"])
    assert all(len(p["distractors"]) == design.hard_distractors for p in by_tier["hard"])
    corrupt = by_tier["corrupt"]
    assert {p["corruption"] for p in corrupt} == set(design.corruptions)
    assert all(p["scan"] == -1 for p in corrupt if p["corruption"] == "absent")
    foreign = [p for p in corrupt if p["corruption"] == "foreign"]
    # the foreign scan's class is drawn independently of the label: it matches about 1 time in 10
    same = np.mean([targets[p["scan"]] == p["digit"] for p in foreign])
    assert len(foreign) > 40 and same < 0.3

    def ink(p: dict) -> float:
        rng = np.random.default_rng(0)
        images, _ = embedded._digits()
        scan = images[p["scan"]] if p["scan"] >= 0 else None
        f = embedded._render_frames(rng, scan, 2, 24, p["visual_tier"], design,
                                    tuple(images[i] for i in p["distractors"])).astype(np.float32).mean(-1)
        return float(np.abs(f - np.median(f)).mean())

    clean = np.mean([ink(p) for p in by_tier["clean"]])
    hard = np.mean([ink(p) for p in by_tier["hard"]])
    absent = np.mean([ink(p) for p in corrupt if p["corruption"] == "absent"])
    assert absent < hard < clean


def test_audio_does_not_depend_on_the_picture_design(tmp_path):
    """Each track has its own random stream: a harder picture leaves every clip's audio unchanged."""
    small = replace(CFG, n_clips=10)
    a = embedded.generate_embedded(tmp_path / "a", small, seed=1, workers=0, progress=False)
    other = replace(embedded.DEFAULT_DESIGN, hard_contrast=(0.1, 0.2), hard_distractors=4)
    b = embedded.generate_embedded(tmp_path / "b", small, seed=1, workers=0, design=other, progress=False)
    for ra, rb in zip(embedded.build_manifest(a).rows, embedded.build_manifest(b).rows, strict=True):
        np.testing.assert_array_equal(read_audio(ra.video, 8000), read_audio(rb.video, 8000))


def test_test_clips_use_held_out_scans():
    cfg = replace(CFG, n_clips=200)
    plan = embedded._plan(cfg, 0, embedded.DEFAULT_DESIGN)
    def scans(split: str) -> set[int]:  # every scan a clip shows: its own (or foreign) one and distractors
        return {s for p in plan if p["split"] == split for s in (p["scan"], *p["distractors"]) if s >= 0}

    train, test = scans("train"), scans("test")
    assert train and test and not train & test


def test_odd_frame_size_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="even"):
        embedded.generate_embedded(tmp_path / "x", replace(CFG, frame_size=21), progress=False)
