"""Faults injected the way bug reports describe them (issue 19): cut and damaged files, a full disk, a
read-only place, two processes at once, leftovers of killed builds, stale keys, data worth a warning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from media_fixtures import frames_ramp, tone, write_video, write_wav
from mmgap import atomic, paths
from mmgap.checkpoint import CheckpointError, DamagedCheckpoint, digest_path, load_safe, save_atomic
from mmgap.config import get_preset
from mmgap.data import cache as cache_mod
from mmgap.data.cache import DamagedCache, FeatureCache, build_cache, cache_key, is_built, load_cache
from mmgap.data.manifest import Manifest, ManifestRow
from mmgap.data.prepare import cache_root_for
from mmgap.data.protocols import AudioProtocol, Protocol, VisualProtocol
from mmgap.data.report import REPORT_JSON
from mmgap.experiments import runs
from mmgap.locks import DiskFull, NotWritable, file_lock, remove_stale_tmp
from mmgap.results import read_metrics, write_metrics

PROTO = Protocol(
    name="tiny",
    audio=AudioProtocol(sample_rate=8000, duration_s=0.5, features="stft", n_fft=64, hop_length=32),
    visual=VisualProtocol(fps=2.0, frames_per_clip=2, frame_size=16),
    val_frac=0.0,
)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    """9 good clips of classes a, b, c, one of a 0.15 s WAV beside a 2 s video, one 1-frame video; class d
    has no clip."""
    d = tmp_path_factory.mktemp("clips")
    rows = []
    for i in range(9):
        p = write_video(d / f"c{i:02d}.mp4", frames_ramp(4), fps=2, audio=tone(300 + 100 * (i % 3), 2.0, 8000),
                        sr=8000)
        rows.append(ManifestRow(f"c{i:02d}", str(p), "", i % 3, "abcd"[i % 3], "test" if i >= 6 else "train"))
    short = write_wav(d / "short.wav", tone(400, 0.15, 8000), 8000)
    rows.append(ManifestRow("short_audio", str(write_video(d / "long.mp4", frames_ramp(4), fps=2)), str(short),
                            1, "b", "train"))
    one = write_video(d / "one.mp4", frames_ramp(1), fps=2, audio=tone(500, 2.0, 8000), sr=8000)
    rows.append(ManifestRow("one_frame", str(one), "", 2, "c", "train"))
    return Manifest("tiny", ["a", "b", "c", "d"], rows)


@pytest.fixture()
def built(manifest, tmp_path):
    return build_cache(manifest, PROTO, tmp_path / "cache", workers=0, progress=False)


def _mount_tmpfs(folder: Path, options: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'mount failed'}): needs root in a "
                    "container that allows mounts")


def _umount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


# -------------------------------------------------------------------- 1. half-written files read as finished


def test_atomic_write_keeps_the_old_file_when_a_write_fails(tmp_path):
    path = atomic.write_json(tmp_path / "result.json", {"acc": 1})

    def fail(fh):
        fh.write(b"{\"acc\": ")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic.write_with(path, fail)
    assert json.loads(path.read_text()) == {"acc": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temporary file left


def test_empty_result_json_is_an_unfinished_run_named_in_a_note(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "result.json").write_text("")  # what a disk that filled between metrics.json and it left
    notes: list[str] = []
    assert not runs.is_finished(run, log=notes.append)
    assert notes == [(f"note: damaged: {run / 'result.json'} (empty file: a write that never finished); "
                      "the run is redone")]
    (run / "result.json").write_text('{"acc": 0.5')
    with pytest.raises(atomic.DamagedFile, match=r"damaged: .*result.json \(not valid JSON"):
        runs._load_result(run)


def test_cut_metrics_json_names_the_file(tmp_path):
    path = write_metrics(tmp_path, {"acc": 0.5})
    path.write_bytes(path.read_bytes()[:5])
    with pytest.raises(atomic.DamagedFile, match=r"damaged: .*metrics.json .*delete it and re-run"):
        read_metrics(tmp_path)


# --------------------------------------------------------------------------- 2. damage read as good: checkpoints


def _zero(path: Path, offset: int, n: int = 64) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\0" * n)


def test_zeroed_bytes_in_a_checkpoint_are_damage_never_weights_only_advice(tmp_path):
    path = save_atomic({"w": torch.randn(256, 64), "step": 3}, tmp_path / "last.pt")
    assert load_safe(path)["step"] == 3
    _zero(path, path.stat().st_size // 2)  # inside the weight tensor
    with pytest.raises(DamagedCheckpoint) as info:
        load_safe(path)
    msg = str(info.value)
    assert msg.startswith(f"damaged: {path} (its sha256 differs") and "delete it" in msg
    assert "weights_only" not in msg
    digest_path(path).unlink()  # a checkpoint written before digests: its zip records' CRC-32 still catch it
    with pytest.raises(DamagedCheckpoint, match="fails its CRC check"):
        load_safe(path)


def test_a_crash_between_digest_and_rename_leaves_a_checkpoint_that_checks(tmp_path, monkeypatch):
    path = save_atomic({"step": torch.tensor(1)}, tmp_path / "last.pt")
    monkeypatch.setattr("mmgap.checkpoint.os.replace", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        save_atomic({"step": torch.tensor(2)}, path)  # the digest file already names the new checkpoint
    monkeypatch.undo()
    assert int(load_safe(path)["step"]) == 1  # the old one is still accepted (listed as "previous")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "last.pt.sha256"]


def test_a_damaged_pickle_record_is_not_called_foreign_and_gives_no_unsafe_advice(tmp_path):
    path = save_atomic({"history": "[1, 2]", "w": torch.zeros(8)}, tmp_path / "best.pt")
    digest_path(path).unlink()
    raw = bytearray(path.read_bytes())
    at = raw.find(b"data.pkl") + 40
    raw[at:at + 16] = b"\xff" * 16
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError) as info:
        load_safe(path)
    assert str(info.value).startswith("damaged:") and "weights_only" not in str(info.value)


# ---------------------------------------------------------------------------- 2. damage read as good: caches


def test_half_zeroed_audio_array_is_damaged_not_silent_clips(built):
    audio = built / "audio.npy"
    _zero(audio, 256, audio.stat().st_size // 2)
    with pytest.raises(DamagedCache) as info:
        load_cache(built)
    assert str(info.value).startswith(f"damaged: {audio} (its sha256 differs from the one written with it")
    assert "rebuild=True" in str(info.value)


def test_cut_array_and_cut_meta_json_name_the_file(built):
    frames = built / "frames.npy"
    frames.write_bytes(frames.read_bytes()[:1000])
    with pytest.raises(DamagedCache, match=rf"damaged: {frames} \(1000 bytes, \d+ written\)"):
        load_cache(built)
    meta = built / "meta.json"
    meta.write_bytes(meta.read_bytes()[:50])
    with pytest.raises(DamagedCache, match=r"damaged: .*meta.json \(not valid JSON"):
        load_cache(built)
    notes: list[str] = []
    assert not is_built(built, log=notes.append) and "the cache is built again" in notes[0]


def test_prepare_like_reuse_rebuilds_a_cache_whose_meta_was_cut(manifest, built, capsys):
    (built / "meta.json").write_text("")
    again = build_cache(manifest, PROTO, built.parent, workers=0, progress=False)
    assert again == built and load_cache(again).labels.shape == (11,)
    assert "empty file" in capsys.readouterr().out


def test_verification_hashes_once_until_a_file_changes(built, monkeypatch):
    calls: list[str] = []
    real = cache_mod.digest_mismatch
    monkeypatch.setattr(cache_mod, "digest_mismatch", lambda f, rec: calls.append(Path(f).name) or real(f, rec))
    load_cache(built)
    first = len(calls)
    assert first >= 4 and "audio.npy" in calls  # every array hashed on the first load after the build
    load_cache(built)
    assert len(calls) == first  # unchanged since (size, mtime, ctime, inode): not hashed again
    os.utime(built / "labels.npy")  # touched: its change time moves
    load_cache(built)
    assert calls[first:] == ["labels.npy"]


def test_free_space_is_checked_and_reserved_before_a_build(manifest, tmp_path, monkeypatch):
    big = PROTO.replace(visual=VisualProtocol(fps=2.0, frames_per_clip=4, frame_size=224))  # ~600 KiB a clip
    disk = tmp_path / "small"
    _mount_tmpfs(disk, "size=2m")
    try:
        with pytest.raises(DiskFull) as info:
            build_cache(manifest, big, disk, workers=0, progress=False)
        msg = str(info.value)
        assert "not enough disk space for the tiny cache (11 clips) in" in msg and "MMGAP_CACHE_DIR" in msg
        assert "needs" in msg and "free" in msg
        # past the estimate (say, another writer filled the disk meanwhile): the reservation fails, no SIGBUS
        monkeypatch.setattr(cache_mod, "check_free_space", lambda *a, **k: None)
        with pytest.raises(DiskFull, match=r"disk full: cannot reserve .* for .*frames.full.npy"):
            build_cache(manifest, big, disk, workers=0, progress=False)
        assert not [p for p in disk.iterdir() if ".tmp-" in p.name]  # the partial build is removed
    finally:
        _umount(disk)


# ------------------------------------------------------------------------------------------------ 3. stale reuse


def test_key_changes_when_a_file_is_re_exported_in_place(manifest, tmp_path):
    rows = [ManifestRow(**vars(r)) for r in manifest.rows[:3]]
    clip = tmp_path / "same.mp4"
    clip.write_bytes(Path(rows[0].video).read_bytes())
    rows[0].video = str(clip)
    m = Manifest("tiny", ["a", "b", "c", "d"], rows)
    before = cache_key(m, PROTO)
    clip.write_bytes(Path(rows[1].video).read_bytes()[: clip.stat().st_size].ljust(clip.stat().st_size, b"\0"))
    os.utime(clip, ns=(time.time_ns(), time.time_ns() + 10**9))  # same size, a later modification
    assert cache_key(m, PROTO) != before


# ---------------------------------------------------------------------------------------- 4. orphans and races


def test_leftovers_of_dead_builds_are_removed_and_live_ones_kept(manifest, tmp_path, capsys):
    root = tmp_path / "cache"
    root.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (root / f".tiny-abc.tmp-{dead.pid}").mkdir()
        (root / f".tiny-abc.tmp-{dead.pid}" / "audio.full.npy").write_bytes(b"x" * 100)
        (root / f".meta.json.tmp-{dead.pid}-a1b2c3").write_text("{")
        (root / f".tiny-def.tmp-{alive.pid}").mkdir()
        build_cache(manifest, PROTO, root, workers=0, progress=False)
        left = sorted(p.name for p in root.iterdir() if ".tmp-" in p.name)
        assert left == [f".tiny-def.tmp-{alive.pid}"]
        assert "removed 2 leftover(s) of interrupted builds" in capsys.readouterr().out
    finally:
        alive.kill()
        alive.wait()


def test_a_second_holder_waits_for_the_lock(tmp_path):
    order: list[str] = []
    notes: list[str] = []
    held = threading.Event()

    def first():
        with file_lock(tmp_path / ".x.lock", "x"):
            held.set()
            time.sleep(0.5)
            order.append("first done")

    t = threading.Thread(target=first)
    t.start()
    held.wait()
    with file_lock(tmp_path / ".x.lock", "the cache x", log=notes.append, quiet_s=0.0):
        order.append("second in")
    t.join()
    assert order == ["first done", "second in"]
    assert notes[0].startswith(f"note: waiting for the cache x: pid {os.getpid()} holds its lock (.x.lock)")


def test_a_short_wait_for_a_lock_prints_nothing(tmp_path):
    notes: list[str] = []
    held, release = threading.Event(), threading.Event()

    def first():
        with file_lock(tmp_path / ".x.lock", "x"):
            held.set()
            release.wait()

    t = threading.Thread(target=first)
    t.start()
    held.wait()
    threading.Timer(0.3, release.set).start()
    with file_lock(tmp_path / ".x.lock", "the cache x", log=notes.append, quiet_s=2.0):
        pass
    t.join()
    assert notes == []  # a run passing through a finished warm-up's lock is not news


def test_two_notebooks_at_once_train_a_run_once(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    cache = FeatureCache.from_arrays(rng.normal(size=(12, 4, 6)), rng.integers(0, 255, (12, 1, 8, 8, 3)),
                                     np.arange(12) % 2, np.array([0] * 8 + [1, 1, 2, 2]), ["x", "y"])
    trained: list[Path] = []

    def fake_train(cache, preset, strategy, run, **kw):
        trained.append(Path(run))
        time.sleep(0.5)
        return {f"test_{m}": 0.5 for m in ("acc", "f1", "acc_a", "acc_v")} | {"val_acc": 0.5}

    monkeypatch.setattr(runs, "train_baseline", fake_train)
    preset = get_preset("smoke")
    out: list[dict] = []
    args = (cache, preset, "concat", 0, tmp_path / "runs", 2)
    threads = [threading.Thread(target=lambda: out.append(runs.baseline_one(*args, device="cpu", log=print)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(trained) == 1 and sorted(r["reused"] for r in out) == [False, True]
    assert trained[0] == runs.baseline_run_dir(*args) and (trained[0] / ".lock").is_file()


@pytest.mark.slow
def test_two_prepares_on_a_fresh_data_folder_share_the_work(tmp_path):
    code = ("import sys; from mmgap.config import get_preset; from mmgap.data import prepare; "
            "c = prepare('embedded', data_dir=sys.argv[1], preset=get_preset('smoke', n_clips=40), workers=0, "
            "progress=True); print('rows', len(c))")
    env = {**os.environ, "PYTHONPATH": str(paths.REPO_ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "data")], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert all("rows 40" in o for o in outs)
    both = "".join(outs)
    assert both.count("embedded: cached 40 clips") == 1  # one build; the other waited and reused it


# ------------------------------------------------------------------------------------------------- 7. places


def test_a_read_only_cache_place_says_where_to_put_it(manifest, tmp_path):
    ro = tmp_path / "ro"
    _mount_tmpfs(ro, "ro,size=1m")
    try:
        with pytest.raises(NotWritable) as info:
            build_cache(manifest, PROTO, ro / "cache", workers=0, progress=False)
        msg = str(info.value)
        assert f"cannot write the feature cache in {ro / 'cache'} (Read-only file system)" in msg
        assert "prepare(..., cache_dir=...)" in msg and "MMGAP_CACHE_DIR" in msg
    finally:
        _umount(ro)


def test_cache_place_parameter_and_environment_variable(tmp_path, monkeypatch):
    data = tmp_path / "crema"
    monkeypatch.delenv("MMGAP_CACHE_DIR", raising=False)
    assert cache_root_for("crema_d", data) == data / "cache"
    monkeypatch.setenv("MMGAP_CACHE_DIR", str(tmp_path / "env"))
    assert cache_root_for("crema_d", data) == tmp_path / "env" / "crema_d"
    assert cache_root_for("crema_d", data, tmp_path / "arg") == tmp_path / "arg" / "crema_d"


# --------------------------------------------------------------------------------------------- 8. data report


def test_the_data_report_flags_what_a_careful_user_would_want_to_know(manifest, tmp_path, capsys):
    folder = build_cache(manifest, PROTO, tmp_path / "cache", workers=0, progress=True)
    out = capsys.readouterr().out
    report = json.loads((folder / REPORT_JSON).read_text())
    flagged = {(c["kind"], c["item"]) for c in report["cases"]}
    assert ("audio and video durations differ by more than x1.5", "short_audio") in flagged
    assert ("audio under 50% of the 0.5 s window (tiled)", "short_audio") in flagged
    assert ("fewer distinct frames than the 2 sampled (repeated)", "one_frame") in flagged
    assert ("class with no training clip", "d") in flagged
    assert ("class with fewer than 5 training clips", "a") in flagged
    assert not any(item.startswith("c0") and "durations" in kind for kind, item in flagged)  # good clips pass
    assert "data report (" in out and "WARNING 2 x audio and video durations differ" in out
    assert json.loads((folder / "meta.json").read_text())["warnings"] == len(report["cases"])


def test_remove_stale_tmp_ignores_other_files(tmp_path):
    (tmp_path / "last.pt").write_bytes(b"")
    (tmp_path / ".last.pt.tmp-notapid").write_bytes(b"")
    assert remove_stale_tmp(tmp_path, log=lambda _: None) == []


def test_a_cut_dataset_json_regenerates_the_embedded_dataset_with_a_note(tmp_path, capsys):
    from mmgap.data.embedded import generate_embedded

    cfg = get_preset("smoke", n_clips=20).embedded
    root = generate_embedded(tmp_path / "smoke-seed0", cfg, 0, workers=0, progress=False)
    (root / "dataset.json").write_text('{"spec": {')
    assert generate_embedded(root, cfg, 0, workers=0, progress=False) == root
    out = capsys.readouterr().out
    assert f"note: damaged: {root / 'dataset.json'} (not valid JSON" in out and "generated again" in out
    assert json.loads((root / "dataset.json").read_text())["spec"]["config"]["n_clips"] == 20
