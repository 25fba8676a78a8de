"""Real-dataset layouts (CREMA-D, AVE, Kinetics-Sounds, generic CSV) built as tiny fixtures at test time."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from media_fixtures import frames_ramp, tone, write_corrupt, write_video, write_wav
from mmgap.data import AVE, KINETICS_SOUNDS, DataError, ave, crema_d, generic, kinetics_sounds, prepare
from mmgap.data.protocols import VisualProtocol


def reasons(cache) -> dict[str, str]:
    with open(cache.path / "exclusions.csv") as fh:
        return {r["clip_id"]: r["reason"] for r in csv.DictReader(fh)}


# ---------------------------------------------------------------- CREMA-D
@pytest.fixture(scope="module")
def crema(tmp_path_factory):
    root = tmp_path_factory.mktemp("CREMA-D")
    v, a = root / "VideoFlash", root / "AudioWAV"
    for actor in (1001, 1002, 1003):
        for k, emo in enumerate(crema_d.CLASS_NAMES):
            name = f"{actor}_DFA_{emo}_XX"
            write_video(v / f"{name}.flv", frames_ramp(12, 16, 16, step=15), fps=5)
            write_wav(a / f"{name}.wav", tone(200 + 50 * k, 1.5, 16000), 16000)
    write_video(v / "1004_DFA_XXX_XX.flv", frames_ramp(4, 16, 16), fps=5)           # unknown label
    write_wav(a / "1004_DFA_XXX_XX.wav", tone(300, 1, 16000), 16000)
    write_corrupt(v / "1005_DFA_ANG_XX.flv")                                        # undecodable video
    write_wav(a / "1005_DFA_ANG_XX.wav", tone(300, 1, 16000), 16000)
    write_wav(a / "1006_DFA_HAP_XX.wav", tone(300, 1, 16000), 16000)               # no video
    write_video(v / "1007_DFA_SAD_XX.flv", frames_ramp(4, 16, 16), fps=5)           # no wav
    write_video(v / "1008_DFA_NEU_XX.flv", frames_ramp(4, 16, 16), fps=5)           # silent wav
    write_wav(a / "1008_DFA_NEU_XX.wav", np.zeros(16000, np.float32), 16000)
    write_video(v / "badname.flv", frames_ramp(4, 16, 16), fps=5)                    # unparseable
    return root


def test_crema_d_manifest_labels_split_and_exclusions(crema):
    m = crema_d.build_manifest(crema, split_seed=0)
    assert len(m) == 20 and m.counts() == {"train": 18, "val": 0, "test": 2}  # round(0.1 * 20) test clips
    row = next(r for r in m.rows if r.clip_id == "1002_DFA_FEA_XX")
    assert row.label == 3 and row.label_name == "FEA" and row.audio.endswith("1002_DFA_FEA_XX.wav")
    ex = {e.clip_id: e.reason for e in m.exclusions}
    assert ex["1004_DFA_XXX_XX"].startswith("unknown label 'XXX'")
    assert ex["1006_DFA_HAP_XX"].startswith("no video file") and ex["1007_DFA_SAD_XX"].startswith("no audio file")
    assert ex["badname"].startswith("unparseable name")
    again, other = crema_d.build_manifest(crema, split_seed=0), crema_d.build_manifest(crema, split_seed=1)
    test = lambda mm: {r.clip_id for r in mm.rows if r.split == "test"}  # noqa: E731
    assert test(again) == test(m) and test(other) != test(m)


def test_crema_d_split_files(crema, tmp_path):
    (tmp_path / "train.csv").write_text("clip,label\n1001_DFA_ANG_XX,ANG\n1002_DFA_ANG_XX,ANG\n"
                                        "1099_DFA_ANG_XX,ANG\n1003_DFA_HAP_XX,SAD\n1001_DFA_ANG_XX,ANG\n")
    (tmp_path / "test.csv").write_text("1003_DFA_ANG_XX,ANG\n1001_DFA_HAP_XX,BOR\n")
    m = crema_d.build_manifest(crema, split_files={"train": tmp_path / "train.csv", "test": tmp_path / "test.csv"})
    assert [(r.clip_id, r.split) for r in m.rows] == [("1001_DFA_ANG_XX", "train"), ("1002_DFA_ANG_XX", "train"),
                                                      ("1003_DFA_ANG_XX", "test")]
    ex = [(e.clip_id, e.reason) for e in m.exclusions]
    assert ("1099_DFA_ANG_XX", "listed in train.csv but absent on disk") in ex
    assert ("1003_DFA_HAP_XX", "label 'SAD' in train.csv disagrees with the file name") in ex
    assert ("1001_DFA_ANG_XX", "duplicate row: train.csv row 6 repeats train.csv row 2; kept once") in ex
    assert ("1001_DFA_HAP_XX", "unknown label 'BOR' in test.csv") in ex


def test_crema_d_cache_with_the_ogm_ge_protocol(crema):
    c = prepare("crema_d", data_dir=crema, preset="smoke", workers=0, progress=False)
    assert c.audio.shape == (18, 257, 188) and c.audio.dtype == np.float16  # OGM-GE: 3 s at 22,050 Hz
    assert c.frames.shape == (18, 3, 256, 256, 3) and c.num_classes == 6
    # 12 frames at 5 fps = 2.4 s -> 1 fps slots start at frames 0, 5, 10: levels 20, 95, 170
    k = c.clip_ids.index("1001_DFA_NEU_XX")
    assert np.allclose(c.frames[k].mean(axis=(1, 2, 3)), [20, 95, 170], atol=3)
    r = reasons(c)
    assert r["1005_DFA_ANG_XX"].startswith("undecodable") and r["1008_DFA_NEU_XX"].startswith("silent audio")
    assert r["badname"].startswith("unparseable")
    assert c.counts()["val"] == round(0.1 * c.counts()["train"] / 0.9)  # smoke val_frac 0.1 carved from train


# ---------------------------------------------------------------- AVE
@pytest.fixture(scope="module")
def ave_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("AVE_Dataset")
    cats = ave.CLASS_NAMES[:3]
    lines = {"train": [], "val": [], "test": []}
    i = 0
    for split, n in (("train", 2), ("val", 1), ("test", 1)):
        for cat in cats:
            for _ in range(n):
                vid = f"vid{i:03d}"
                write_video(root / "AVE" / f"{vid}.mp4", frames_ramp(12, 16, 16, step=20), fps=2,
                            audio=tone(300 + 40 * i, 6.0, 16000), sr=16000)
                lines[split].append(f"{cat}&{vid}&good&2&5")
                i += 1
    write_corrupt(root / "AVE" / "broken.mp4")
    write_video(root / "AVE" / "mute.mp4", frames_ramp(12, 16, 16), fps=2)
    lines["train"] += [f"{cats[0]}&broken&good&0&3", f"{cats[0]}&mute&good&0&3", f"{cats[0]}&gone&good&0&3",
                       "Kazoo&vid000&good&0&3", f"{cats[1]}&vid001&good&bad&3"]
    lines["test"] += [f"{cats[0]}&vid000&good&2&5"]  # duplicate of a train clip
    header = "Category&VideoID&Quality&StartTime&EndTime"
    for split, name in ave.SPLIT_FILES.items():
        (root / name).write_text("\n".join(lines[split]) + "\n")
    (root / "Annotations.txt").write_text("\n".join([header] + sum(lines.values(), [])) + "\n")
    return root


def test_ave_manifest_and_cache(ave_root):
    m = ave.build_manifest(ave_root)
    # vid000@2-5 is listed in train and in test: kept in test only, so the test split keeps all its rows
    assert m.counts() == {"train": 7, "val": 3, "test": 4} and m.num_classes == 28
    r0 = m.rows[0]
    assert (r0.clip_id, r0.label, r0.start, r0.end) == ("vid001@2-5", 0, 2.0, 5.0)
    ex = [(e.clip_id, e.reason) for e in m.exclusions]
    assert ("gone@0-3", "listed in trainSet.txt but absent on disk (AVE/gone.mp4)") in ex
    assert ("vid000@2-5", "in two splits: trainSet.txt row 1 (train) and testSet.txt row 4 (test); kept in test "
            "only, since a clip belongs to one split") in ex
    assert ("vid000@0-3", "unknown label 'Kazoo' in trainSet.txt") in ex
    assert any(c == "vid001" and r.startswith("bad row 11 of trainSet.txt") for c, r in ex)
    proto = AVE.replace(visual=VisualProtocol(fps=1.0, frames_per_clip=4, frame_size=16, window="event"))
    c = prepare("ave", data_dir=ave_root, preset="smoke", workers=0, protocol=proto, progress=False)
    assert c.audio.shape == (12, 128, 1024) and c.frames.shape == (12, 4, 16, 16, 3)
    assert c.counts() == {"train": 5, "val": 3, "test": 4}  # the official val split is kept, nothing carved
    # window 2..5 s at 2 fps: 1 fps slots start at frames 4, 6, 8 (levels 100, 140, 180); 4 picked of 3
    assert np.allclose(c.frames[0].mean(axis=(1, 2, 3)), [100, 140, 140, 180], atol=3)
    r = reasons(c)
    assert r["broken@0-3"].startswith("undecodable") and r["mute@0-3"] == "no audio track"


# ---------------------------------------------------------------- Kinetics-Sounds
@pytest.fixture(scope="module")
def ks_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ks")
    train, test = [], []
    for i in range(6):
        cid = f"yt{i:03d}_000001_000011"
        write_video(root / "videos" / f"{cid}.mp4", frames_ramp(6, 16, 16), fps=1, audio=tone(400, 2.0, 16000),
                    sr=16000)
        (train if i < 4 else test).append(f"{cid},10,{i % 3}" if i < 4
                                          else f"{cid},10,{kinetics_sounds.CLASS_NAMES[i % 3]}")
    write_corrupt(root / "videos" / "bad_000001_000011.mp4")
    write_video(root / "videos" / "mute_000001_000011.mp4", frames_ramp(6, 16, 16), fps=1)
    write_video(root / "other" / "yt000_000001_000011.mp4", frames_ramp(6, 16, 16), fps=1)  # duplicate file
    train += ["bad_000001_000011,10,1", "mute_000001_000011,10,1", "gone_000001_000011,10,1",
              "yt001_000001_000011,10,40"]
    (root / "train.txt").write_text("\n".join(train) + "\n")
    (root / "test.txt").write_text("\n".join(test) + "\n")
    return root


def test_kinetics_sounds_manifest_and_cache(ks_root):
    m = kinetics_sounds.build_manifest(ks_root)
    assert m.num_classes == 31 and m.counts() == {"train": 5, "val": 0, "test": 2}
    assert [r.label for r in m.rows if r.split == "test"] == [1, 2]  # class names resolved to indices
    ex = {(e.clip_id, e.reason.split(" (")[0]) for e in m.exclusions}
    assert ("gone_000001_000011", "listed in train.txt but absent on disk") in ex
    assert ("videos/yt001_000001_000011", "unknown label '40' in train.txt") in ex  # the id of the file found
    assert ("yt000_000001_000011", "ambiguous id: 2 files share this name") in ex  # which copy? both skipped
    proto = KINETICS_SOUNDS.replace(visual=VisualProtocol(fps=1.0, frames_per_clip=3, frame_size=16))
    c = prepare("kinetics_sounds", data_dir=ks_root, preset="smoke", workers=0, protocol=proto, progress=False)
    assert c.audio.shape == (5, 128, 1024) and c.frames.shape == (5, 3, 16, 16, 3)
    # 6 frames at 1 fps, 3 picked evenly: floor((k + 0.5) * 6 / 3) = 1, 3, 5 -> levels 60, 140, 220
    assert np.allclose(c.frames[0].mean(axis=(1, 2, 3)), [60, 140, 220], atol=3)
    # silence was padded: the normalised fbank of the padded tail is 0 -> (0 + 4.503877) / 10.282552
    assert abs(float(c.audio[0, 0, -1]) - 4.503877 / (2 * 5.141276)) < 1e-3
    r = reasons(c)
    assert r["videos/bad_000001_000011"].startswith("undecodable")
    assert r["videos/mute_000001_000011"] == "no audio track"


# ---------------------------------------------------------------- generic CSV and errors
def test_generic_csv(tmp_path):
    for i in range(4):
        write_video(tmp_path / "v" / f"c{i}.mp4", frames_ramp(3, 16, 16), fps=1, audio=tone(500, 3.0, 16000))
    write_wav(tmp_path / "a" / "c3.wav", tone(700, 2.0, 16000), 16000)
    (tmp_path / "dataset.csv").write_text(
        "video,label,split,audio\nv/c0.mp4,dog,train,\nv/c1.mp4,cat,train,\nv/c2.mp4,cat,val,\nv/c3.mp4,dog,test,a/c3.wav\n"
        "v/c1.mp4,dog,dev,\nv/missing.mp4,dog,train,\nv/c2.mp4,cat,test,a/none.wav\n")
    m = generic.build_manifest(tmp_path)
    assert m.class_names == ["cat", "dog"] and [r.label for r in m.rows] == [1, 0, 0, 1]
    assert m.rows[3].audio.endswith("c3.wav")
    assert sorted(e.reason.split(";")[0] for e in m.exclusions) == [
        "audio listed in dataset.csv but absent on disk", "listed in dataset.csv but absent on disk",
        "unknown split 'dev'"]
    c = prepare("generic", data_dir=tmp_path, preset="smoke", workers=0, progress=False)
    assert c.counts() == {"train": 2, "val": 1, "test": 1} and c.audio.shape[1:] == (257, 251)


def test_prepare_errors(tmp_path):
    with pytest.raises(ValueError, match="valid datasets: embedded, crema_d, ave, kinetics_sounds, generic"):
        prepare("vggsound", data_dir=tmp_path)
    with pytest.raises(DataError, match="README") as err:
        prepare("crema_d", data_dir=tmp_path / "nowhere", progress=False)
    assert "nowhere" in str(err.value)
    (tmp_path / "CREMA-D").mkdir()
    with pytest.raises(DataError, match="VideoFlash"):
        prepare("crema_d", data_dir=tmp_path / "CREMA-D", progress=False)
