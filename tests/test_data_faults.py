"""Dataset-level faults reported by the field's users (issue 12), rebuilt as tiny folders in the real layouts:
clip identity, label lists, reasons that mislead, nothing usable, non-finite arrays, CREMA-D actors."""

from __future__ import annotations

import numpy as np
import pytest

from media_fixtures import (
    frames_ramp,
    tone,
    truncate,
    write_corrupt,
    write_float_wav,
    write_lfs_pointer,
    write_video,
    write_wav,
)
from mmgap.data import AVE, DataError, FeatureCache, ave, crema_d, generic, kinetics_sounds, prepare
from mmgap.data.decode import LFS_REASON
from mmgap.data.manifest import NoUsableClips, read_exclusions
from mmgap.data.protocols import VisualProtocol

SMALL = VisualProtocol(fps=1.0, frames_per_clip=2, frame_size=16)


def reasons(cache) -> dict[str, str]:
    return {e.clip_id: e.reason for e in read_exclusions(cache.path / "exclusions.csv")}


# ---------------------------------------------------------------- 1. two samples, one id
def test_ave_two_events_of_one_video_are_two_samples(tmp_path):
    cats = ave.CLASS_NAMES
    for vid in ("twoev", "split", "other", "dup"):  # 8 s at 2 fps: frame k has grey level 20 + 10 k
        write_video(tmp_path / "AVE" / f"{vid}.mp4", frames_ramp(16, 16, 16, step=10), fps=2,
                    audio=tone(300, 8.0, 16000), sr=16000)
    train = [f"{cats[0]}&twoev&good&0&2", f"{cats[1]}&twoev&good&4&6", f"{cats[2]}&split&good&0&3",
             f"{cats[0]}&dup&good&1&3", f"{cats[0]}&dup&good&1&3"]
    test = [f"{cats[2]}&split&good&5&8", f"{cats[0]}&other&good&0&2"]
    (tmp_path / "trainSet.txt").write_text("\n".join(train) + "\n")
    (tmp_path / "valSet.txt").write_text(f"{cats[1]}&other&good&3&5\n")
    (tmp_path / "testSet.txt").write_text("\n".join(test) + "\n")
    header = "Category&VideoID&Quality&StartTime&EndTime"
    (tmp_path / "Annotations.txt").write_text("\n".join([header, *train, *test]) + "\n")
    m = ave.build_manifest(tmp_path)
    assert [(r.clip_id, r.label, r.split) for r in m.rows] == [
        ("twoev@0-2", 0, "train"), ("twoev@4-6", 1, "train"), ("split@0-3", 2, "train"), ("dup@1-3", 0, "train"),
        ("other@3-5", 1, "val"), ("split@5-8", 2, "test"), ("other@0-2", 0, "test")]
    assert [(e.clip_id, e.reason) for e in m.exclusions] == [
        ("dup@1-3", "duplicate row: trainSet.txt row 5 repeats trainSet.txt row 4; kept once")]
    proto = AVE.replace(visual=VisualProtocol(fps=1.0, frames_per_clip=2, frame_size=16, window="event"))
    c = prepare("ave", data_dir=tmp_path, preset="smoke", workers=0, protocol=proto, progress=False)
    assert c.counts() == {"train": 4, "val": 1, "test": 2} and len(set(c.clip_ids)) == 7
    # each sample has its own window: frames at 0 and 1 s (levels 20, 40) vs at 4 and 5 s (levels 100, 120)
    first, second = c.clip_ids.index("twoev@0-2"), c.clip_ids.index("twoev@4-6")
    assert np.allclose(c.frames[first].mean(axis=(1, 2, 3)), [20, 40], atol=3)
    assert np.allclose(c.frames[second].mean(axis=(1, 2, 3)), [100, 120], atol=3)


def test_ave_two_categories_of_one_window_are_two_samples(tmp_path):
    cats = ave.CLASS_NAMES
    for vid in ("both", "plain"):
        write_video(tmp_path / "AVE" / f"{vid}.mp4", frames_ramp(4, 16, 16), fps=2, audio=tone(300, 2.0, 16000))
    train = [f"{cats[0]}&both&good&0&2", f"{cats[1]}&both&good&0&2", f"{cats[1]}&both&good&0&2",
             f"{cats[0]}&plain&good&0&2"]
    (tmp_path / "trainSet.txt").write_text("\n".join(train) + "\n")
    (tmp_path / "valSet.txt").write_text("")
    (tmp_path / "testSet.txt").write_text(f"{cats[0]}&both&good&0&2\n")  # train row 1 again, in test
    (tmp_path / "Annotations.txt").write_text("\n".join(train) + f"\n{cats[0]}&both&good&0&2\n")
    m = ave.build_manifest(tmp_path)
    # each annotation row is a sample (as AVE's authors use them): the category joins the id only where two
    # categories share a window; the same annotation twice is still a duplicate, or kept in test only
    assert [(r.clip_id, r.label, r.label_name, r.split) for r in m.rows] == [
        ("both@0-2#Male speech, man speaking", 1, cats[1], "train"), ("plain@0-2", 0, cats[0], "train"),
        ("both@0-2#Church bell", 0, cats[0], "test")]
    assert sorted((e.clip_id, e.reason) for e in m.exclusions) == [
        ("both@0-2#Church bell", "in two splits: trainSet.txt row 1 (train) and testSet.txt row 1 (test); kept in "
                                 "test only, since a clip belongs to one split"),
        ("both@0-2#Male speech, man speaking", "duplicate row: trainSet.txt row 3 repeats trainSet.txt row 2; "
                                               "kept once")]
    c = prepare("ave", data_dir=tmp_path, preset="smoke", workers=0, progress=False,
                protocol=AVE.replace(visual=SMALL))
    assert c.clip_ids == [r.clip_id for r in m.rows] and c.labels.tolist() == [1, 0, 0]


def test_generic_same_file_name_in_two_class_folders(tmp_path):
    for cls in ("dog", "cat"):
        write_video(tmp_path / cls / "0001.mp4", frames_ramp(3, 16, 16), fps=1, audio=tone(500, 3.0, 16000))
    write_video(tmp_path / "cat" / "0002.mp4", frames_ramp(3, 16, 16), fps=1, audio=tone(600, 3.0, 16000))
    (tmp_path / "dataset.csv").write_text("video,label,split\ndog/0001.mp4,dog,train\ncat/0001.mp4,cat,train\n"
                                          "dog/0001.mp4,dog,train\ncat/0002.mp4,cat,train\ncat/0002.mp4,cat,test\n")
    m = generic.build_manifest(tmp_path)
    assert [(r.clip_id, r.label_name, r.split) for r in m.rows] == [
        ("dog/0001.mp4", "dog", "train"), ("cat/0001.mp4", "cat", "train"), ("cat/0002.mp4", "cat", "test")]
    assert sorted((e.clip_id, e.reason) for e in m.exclusions) == [
        ("cat/0002.mp4", "in two splits: dataset.csv row 5 (train) and dataset.csv row 6 (test); kept in test "
                         "only, since a clip belongs to one split"),
        ("dog/0001.mp4", "duplicate row: dataset.csv row 4 repeats dataset.csv row 2; kept once")]


def test_generic_relative_root_is_not_counted_twice(tmp_path, monkeypatch):
    write_video(tmp_path / "gen" / "dog" / "0001.mp4", frames_ramp(2, 16, 16), fps=1, audio=tone(400, 2.0, 16000))
    (tmp_path / "gen" / "dataset.csv").write_text("video,label,split\ndog/0001.mp4,dog,train\n"
                                                  "./dog/0001.mp4,dog,test\n")
    monkeypatch.chdir(tmp_path)
    for root in ("gen", "./gen", tmp_path / "gen"):
        m = generic.build_manifest(root)
        assert [(r.clip_id, r.split) for r in m.rows] == [("dog/0001.mp4", "test")]
        assert [e.clip_id for e in m.exclusions] == ["dog/0001.mp4"]  # in two splits: one clip, kept in test


# ---------------------------------------------------------------- 2. label lists
@pytest.fixture(scope="module")
def ks_clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("ks_lists")
    for cid in ("aaa_000014_000024", "bbb_000003_000013", "ccc_000000_000010"):
        write_video(root / "videos" / f"{cid}.mp4", frames_ramp(4, 16, 16), fps=1, audio=tone(400, 2.0, 16000))
    return root


def ks_folder(base, tmp_path, files: dict[str, str]):
    root = tmp_path / "ks"
    root.mkdir()
    (root / "videos").symlink_to(base / "videos")
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def test_ks_lists_counted_from_one_stop_with_the_fix(ks_clips, tmp_path):
    root = ks_folder(ks_clips, tmp_path, {"train.txt": "aaa_000014_000024,10,1\nbbb_000003_000013,10,31\n",
                                          "test.txt": "ccc_000000_000010,10,3\n"})
    with pytest.raises(DataError) as err:
        kinetics_sounds.build_manifest(root)
    msg = str(err.value)
    assert "the integer labels in train.txt, test.txt run 1..31 with no 0: the lists count classes from 1" in msg
    assert "0 = 'blowing_nose'" in msg and "Subtract 1" in msg and "`1 blowing_nose` ... `31 tickling`" in msg
    # the fix the message offers: a class list with the list's own indices
    (root / "classes.txt").write_text("".join(f"{i + 1} {n}\n" for i, n in enumerate(kinetics_sounds.CLASS_NAMES)))
    m = kinetics_sounds.build_manifest(root)
    assert [(r.clip_id, r.label, r.label_name) for r in m.rows] == [
        ("videos/aaa_000014_000024", 0, "blowing_nose"), ("videos/bbb_000003_000013", 30, "tickling"),
        ("videos/ccc_000000_000010", 2, "bowling")]


def test_ks_class_list_file_replaces_the_built_in_names(ks_clips, tmp_path):
    root = ks_folder(ks_clips, tmp_path, {"train.txt": "aaa_000014_000024,10,0\nbbb_000003_000013,10,harp\n",
                                          "test.txt": "ccc_000000_000010,10,2\n"})
    (tmp_path / "my_classes.txt").write_text("\ufeffbanjo\nharp\nkazoo\n")  # a BOM, as Notepad writes it
    m = kinetics_sounds.build_manifest(root, class_list_file=tmp_path / "my_classes.txt")
    assert m.class_names == ["banjo", "harp", "kazoo"] and [r.label for r in m.rows] == [0, 1, 2]


def test_ks_kinetics_annotation_csv_is_recognised(ks_clips, tmp_path):
    header = "label,youtube_id,time_start,time_end,split\n"
    root = ks_folder(ks_clips, tmp_path, {
        "train.csv": header + "playing drums,aaa,14,24,train\nabseiling,zzz,0,10,train\n"
                              "tickling,gone,5,15,train\n",
        "validate.csv": header + "bowling,ccc,0,10,validate\n",
        "test.csv": header + "tickling,bbb,3,13,test\n"})
    m = kinetics_sounds.build_manifest(root)
    assert [(r.clip_id, r.label_name, r.split) for r in m.rows] == [
        ("videos/aaa_000014_000024", "playing_drums", "train"), ("videos/ccc_000000_000010", "bowling", "val"),
        ("videos/bbb_000003_000013", "tickling", "test")]
    # abseiling is another Kinetics class (ignored, not a fault); a listed clip that is missing is reported
    assert [(e.clip_id, e.reason) for e in m.exclusions] == [
        ("gone_000005_000015", "listed in train.csv but absent on disk")]


def test_ks_kinetics_csv_refused_with_its_reasons(ks_clips, tmp_path):
    root = ks_folder(ks_clips, tmp_path, {"train.csv": "youtube_id,time_start,time_end,split\naaa,14,24,test\n",
                                          "test.csv": "label,youtube_id,time_start,time_end,split\n"})
    with pytest.raises(DataError, match=r"train.csv: a Kinetics annotation CSV .* without column\(s\) \['label'\] "
                                        r"\(an unlabelled test list"):
        kinetics_sounds.build_manifest(root)
    (root / "train.csv").write_text("label,youtube_id,time_start,time_end,split\nabseiling,aaa,14,24,train\n")
    with pytest.raises(DataError, match=r"none of its 1 rows has a class of the built-in class list .*'abseiling'"):
        kinetics_sounds.build_manifest(root)


def test_ks_list_row_naming_a_path_resolves_an_ambiguous_name(ks_clips, tmp_path):
    root = ks_folder(ks_clips, tmp_path, {"train.txt": "other/aaa_000014_000024.mp4,10,1\n"
                                                       "aaa_000014_000024,10,1\n",
                                          "test.txt": "ccc_000000_000010,10,2\n"})
    write_video(root / "other" / "aaa_000014_000024.mp4", frames_ramp(4, 16, 16), fps=1, audio=tone(300, 2.0, 16000))
    m = kinetics_sounds.build_manifest(root)
    assert [(r.clip_id, r.video.endswith("other/aaa_000014_000024.mp4")) for r in m.rows] == [
        ("other/aaa_000014_000024", True), ("videos/ccc_000000_000010", False)]
    assert [e.reason.split(" (")[0] for e in m.exclusions] == ["ambiguous id: 2 files share this name"]


def test_ks_one_file_named_two_ways_is_one_clip(ks_clips, tmp_path):
    root = ks_folder(ks_clips, tmp_path, {"train.txt": "videos/aaa_000014_000024.mp4,10,0\nbbb_000003_000013,10,1\n",
                                          "test.txt": "aaa_000014_000024,10,0\n"})
    m = kinetics_sounds.build_manifest(root)
    assert [(r.clip_id, r.split) for r in m.rows] == [("videos/bbb_000003_000013", "train"),
                                                      ("videos/aaa_000014_000024", "test")]
    assert [(e.clip_id, e.reason) for e in m.exclusions] == [
        ("videos/aaa_000014_000024", "in two splits: train.txt row 1 (train) and test.txt row 1 (test); kept in "
                                     "test only, since a clip belongs to one split")]


# ---------------------------------------------------------------- CREMA-D fixture (kinds 4-7)
@pytest.fixture(scope="module")
def crema(tmp_path_factory):
    root = tmp_path_factory.mktemp("CREMA-D")
    for actor in (1001, 1002, 1003, 1004):
        for k, emo in enumerate(crema_d.CLASS_NAMES[:3]):
            name = f"{actor}_DFA_{emo}_XX"
            write_video(root / "VideoFlash" / f"{name}.flv", frames_ramp(8, 16, 16, step=15), fps=4)
            ext = ".WAV" if actor == 1002 else ".wav"  # upper-case extensions, as some copies have
            write_wav(root / "AudioWAV" / f"{name}{ext}", tone(200 + 50 * k, 1.5, 16000), 16000)
    faults = {"1005_IEO_ANG_HI": "empty", "1005_IEO_ANG_LO": "nan", "1005_IEO_ANG_MD": "truncated",
              "1005_IEO_ANG_XX": "lfs", "1005_IEO_DIS_XX": "twice"}
    for name in faults:
        write_video(root / "VideoFlash" / f"{name}.flv", frames_ramp(8, 16, 16), fps=4)
    write_wav(root / "AudioWAV" / "1005_IEO_ANG_HI.wav", np.zeros(0, np.float32), 16000)
    x = tone(300, 1.5, 16000)
    x[:10] = np.nan
    write_float_wav(root / "AudioWAV" / "1005_IEO_ANG_LO.wav", x, 16000)
    truncate(write_wav(root / "AudioWAV" / "1005_IEO_ANG_MD.wav", tone(300, 3.0, 16000), 16000), 0.25)
    write_lfs_pointer(root / "AudioWAV" / "1005_IEO_ANG_XX.wav")
    write_wav(root / "AudioWAV" / "1005_IEO_DIS_XX.wav", tone(300, 1.5, 16000), 16000)
    write_wav(root / "AudioWAV" / "1005_IEO_DIS_XX.WAV", tone(300, 1.5, 16000), 16000)
    write_video(root / "VideoFlash" / "1006_IEO_NEU_XX.flv", frames_ramp(8, 16, 16), fps=4)  # no WAV at all
    return root


def test_crema_d_reasons_for_each_fault(crema):
    m = crema_d.build_manifest(crema)
    assert len(m) == 16 and {r.audio[-4:] for r in m.rows if r.clip_id.startswith("1002")} == {".WAV"}
    ex = {e.clip_id: e.reason for e in m.exclusions}
    assert ex["1005_IEO_DIS_XX"] == ("ambiguous id: 2 files share this name (AudioWAV/1005_IEO_DIS_XX.WAV, "
                                     "AudioWAV/1005_IEO_DIS_XX.wav); remove the extra copies or name the file by "
                                     "its path in the list")
    c = prepare("crema_d", data_dir=crema, preset="smoke", workers=0, progress=False,
                protocol=crema_d_protocol())
    r = reasons(c)
    assert r["1005_IEO_ANG_HI"] == "empty audio: the WAV file has a header but no samples (a blank recording)"
    assert r["1005_IEO_ANG_LO"] == "non-finite samples: 10 of 24000 are NaN or infinite (a corrupt float file)"
    assert r["1005_IEO_ANG_MD"].startswith("truncated file: the audio decodes 0.7 s of the 3.0 s")
    assert r["1005_IEO_ANG_XX"] == LFS_REASON
    assert len(c) == 12 and "1002_DFA_NEU_XX" in c.clip_ids


def crema_d_protocol():
    from mmgap.data import CREMA_D
    return CREMA_D.replace(visual=SMALL)


def test_crema_d_split_file_does_not_call_a_clip_on_disk_absent(crema, tmp_path):
    (tmp_path / "train.csv").write_text("\ufeffclip,label\n1001_DFA_NEU_XX,NEU\n1005_IEO_DIS_XX,DIS\n"
                                        "1006_IEO_NEU_XX,NEU\n")
    (tmp_path / "test.csv").write_text("1003_DFA_HAP_XX,HAP\n1099_DFA_HAP_XX,HAP\n")
    m = crema_d.build_manifest(crema, split_files={"train": tmp_path / "train.csv", "test": tmp_path / "test.csv"})
    assert [(r.clip_id, r.split) for r in m.rows] == [("1001_DFA_NEU_XX", "train"), ("1003_DFA_HAP_XX", "test")]
    ex = [(e.clip_id, e.reason.split(" (")[0]) for e in m.exclusions]
    assert ("1005_IEO_DIS_XX", "ambiguous id: 2 files share this name") in ex  # its own reason, once
    assert ("1006_IEO_NEU_XX", "no audio file") in ex
    assert not [c for c, r in ex if r.startswith("listed in train.csv")]  # both are on disk: not "absent"
    assert ("1099_DFA_HAP_XX", "listed in test.csv but absent on disk") in ex


# ---------------------------------------------------------------- 5. nothing usable, BOM / Excel CSVs
def test_all_git_lfs_pointers_fail_with_the_reason_and_the_list(tmp_path):
    for name in ("1001_DFA_ANG_XX", "1001_DFA_HAP_XX", "1002_DFA_SAD_XX"):
        write_lfs_pointer(tmp_path / "VideoFlash" / f"{name}.flv")
        write_lfs_pointer(tmp_path / "AudioWAV" / f"{name}.wav")
    with pytest.raises(NoUsableClips) as err:
        prepare("crema_d", data_dir=tmp_path, preset="smoke", workers=0, progress=False)
    msg = str(err.value)
    assert msg.startswith("crema_d: none of the 3 clips could be used (3 skipped).\nMain reasons:\n"
                          f"  3 x {LFS_REASON} (e.g. 1001_DFA_ANG_XX: ")
    written = tmp_path / "cache" / "exclusions.csv"
    assert f"Every skipped clip and its reason: {written}." in msg
    assert [(e.clip_id, e.reason) for e in read_exclusions(written)] == [
        (n, LFS_REASON) for n in ("1001_DFA_ANG_XX", "1001_DFA_HAP_XX", "1002_DFA_SAD_XX")]


def test_the_summary_groups_reasons_that_differ_in_numbers_and_names(tmp_path):
    cats = ave.CLASS_NAMES
    for ext in ("mp4", "MP4"):
        write_corrupt(tmp_path / "AVE" / f"twin.{ext}")
    rows = ["Category&VideoID&Quality&StartTime&EndTime"]
    rows += [f"{cats[0]}&v{k}&good&{k}&end" for k in range(39)]            # bad rows 2..40
    rows += [f"Kazoo {k}&v&good&0&2" for k in range(5)]                    # five different unknown labels
    rows += [f"{cats[0]}&gone{k}&good&0&2" for k in range(5)]              # absent on disk
    rows += [f"{cats[0]}&twin&good&{k}&{k + 1}" for k in range(5)]         # ambiguous id
    for name in ("trainSet.txt", "Annotations.txt"):
        (tmp_path / name).write_text("\n".join(rows) + "\n")
    for name in ("valSet.txt", "testSet.txt"):
        (tmp_path / name).write_text("")
    with pytest.raises(NoUsableClips) as err:
        prepare("ave", data_dir=tmp_path, preset="smoke", workers=0, progress=False)
    lines = str(err.value).splitlines()
    assert lines[:2] == ["ave: no usable clip in " + str(tmp_path) + " (54 skipped).", "Main reasons:"]
    assert lines[2].startswith("  39 x bad row 2 of trainSet.txt: ") and lines[2].endswith("(e.g. v0: trainSet.txt)")
    assert [ln.split(" (e.g.")[0] for ln in lines[3:6]] == [
        "  5 x unknown label 'Kazoo 0' in trainSet.txt",
        "  5 x listed in trainSet.txt but absent on disk (AVE/gone0.mp4)",
        "  ... and 5 more of 1 other kind(s)"]
    kinds = [e.kind for e in read_exclusions(tmp_path / "cache" / "exclusions.csv")]  # kept in the CSV
    assert {k: kinds.count(k) for k in kinds} == {"bad row": 39, "unknown label": 5, "absent on disk": 5,
                                                  "ambiguous id": 5}


def test_nothing_listed_is_on_disk(tmp_path):
    (tmp_path / "dataset.csv").write_text("video,label,split\na.mp4,x,train\nb.mp4,x,test\nc.mp4,y,dev\n")
    with pytest.raises(NoUsableClips) as err:
        prepare("generic", data_dir=tmp_path, preset="smoke", workers=0, progress=False)
    msg = str(err.value)
    assert "generic: no usable clip in" in msg and "(3 skipped)" in msg
    assert "  2 x listed in dataset.csv but absent on disk (e.g. a.mp4: a.mp4)" in msg
    assert "  1 x unknown split 'dev'" in msg
    assert len(read_exclusions(tmp_path / "cache" / "exclusions.csv")) == 3


def test_generic_csv_saved_by_excel(tmp_path):
    for i in range(3):
        write_video(tmp_path / "clips" / f"c{i}.mp4", frames_ramp(3, 16, 16), fps=1, audio=tone(500, 3.0, 16000))
    text = "video;label;split\r\nclips\\c0.mp4;2;train\r\nclips\\c1.mp4;10;train\r\nclips\\c2.mp4;2;test\r\n"
    (tmp_path / "dataset.csv").write_bytes(text.encode("utf-8-sig"))  # BOM, ';', CRLF, Windows paths
    m = generic.build_manifest(tmp_path)
    assert m.class_names == ["2", "10"]  # integer labels in numeric order, not "10" < "2"
    assert [(r.clip_id, r.label) for r in m.rows] == [("clips/c0.mp4", 0), ("clips/c1.mp4", 1), ("clips/c2.mp4", 0)]
    (tmp_path / "dataset.csv").write_bytes("video,label,split\nclips/c0.mp4,café,train\n".encode("cp1252"))
    with pytest.raises(DataError, match=r"not UTF-8 text .* save it as UTF-8 \(in Excel: 'CSV UTF-8'\)"):
        generic.build_manifest(tmp_path)


# ---------------------------------------------------------------- 6. non-finite arrays
def test_from_arrays_refuses_non_finite_input():
    frames, labels, split = np.zeros((3, 1, 8, 8, 3), np.uint8), np.array([0, 1, 0]), np.zeros(3)
    audio = np.zeros((3, 4, 5), np.float32)
    audio[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match=r"audio features have NaN or infinite values in 1 row\(s\) \(first: \[1\]\)"):
        FeatureCache.from_arrays(audio, frames, labels, split, ["x", "y"])
    audio[1, 2, 3] = 1e6
    with pytest.raises(ValueError, match=r"beyond float16's range .* \(first: \[1\]\)"):
        FeatureCache.from_arrays(audio, frames, labels, split, ["x", "y"])
    with pytest.raises(ValueError, match=r"frames span -1..300; expected pixel values 0..255"):
        FeatureCache.from_arrays(np.zeros((3, 4, 5)), np.linspace(-1, 300, 576).reshape(3, 1, 8, 8, 3), labels,
                                 split, ["x", "y"])


# ---------------------------------------------------------------- 7. CREMA-D actors
def split_actors(m) -> dict[str, set[str]]:
    return {s: {crema_d.actor(r.clip_id) for r in m.rows if r.split == s} for s in ("train", "val", "test")}


def test_crema_d_random_split_shares_actors_and_the_actor_split_does_not(crema):
    random = crema_d.build_manifest(crema, split_seed=0)
    assert random.counts() == {"train": 14, "val": 0, "test": 2} and crema_d.actors_in_both(random)
    actors = {crema_d.actor(r.clip_id) for r in random.rows}
    for seed in range(4):  # whichever actors the seeded draw picks: whole actors, none in two splits
        by_actor = crema_d.build_manifest(crema, split_seed=seed, split_by="actor", val_frac=0.25)
        split = split_actors(by_actor)
        assert split["train"] | split["val"] | split["test"] == actors
        assert not split["train"] & split["val"] and not split["train"] & split["test"]
        assert not split["val"] & split["test"]
        assert len(split["test"]) == 1 and len(split["val"]) == 1  # ceil(0.1 * 5) and ceil(0.25 * 4) actors
        assert crema_d.build_manifest(crema, split_seed=seed, split_by="actor", val_frac=0.25).rows == by_actor.rows
    c = prepare("crema_d", data_dir=crema, preset="smoke", workers=0, progress=False, split_by="actor",
                protocol=crema_d_protocol().replace(val_frac=0.25))
    cached = {s: {crema_d.actor(c.clip_ids[i]) for i in c.indices(s)} for s in ("train", "val", "test")}
    expected = split_actors(crema_d.build_manifest(crema, split_seed=0, split_by="actor", val_frac=0.25))
    assert cached == {s: a - {"1005"} for s, a in expected.items()}  # 1005's clips are all faulty
    with pytest.raises(DataError, match=r"split_by='speaker'; expected one of \('random', 'actor'\)"):
        crema_d.build_manifest(crema, split_by="speaker")


def test_crema_d_actor_split_of_91_actors_is_near_9_to_1():
    stems = [f"{1001 + a}_DFA_{emo}_XX" for a in range(91) for emo in crema_d.CLASS_NAMES]
    splits = [crema_d._actor_split(stems, 0.1, 0.0, seed) for seed in range(3)]
    for split in splits:
        by_actor: dict[str, set[str]] = {}
        for stem, s in zip(stems, split, strict=True):
            by_actor.setdefault(crema_d.actor(stem), set()).add(s)
        assert all(len(s) == 1 for s in by_actor.values())  # no actor in two splits
        assert 0.08 <= split.count("test") / len(stems) <= 0.12  # 10 of 91 actors: about 9:1
    assert splits[0] != splits[1]  # seeded: another seed, another draw
