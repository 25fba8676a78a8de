"""The feature cache: a folder of a few large memory-mappable arrays plus meta.json, keyed by protocol hash.

Layout of ``<cache_root>/<protocol.name>-<key>/``: ``audio.npy`` float16 [N, F, T], ``frames.npy`` uint8
[N, S, H, W, 3], ``labels.npy`` int64 [N], ``split.npy`` int8 [N] (0 train, 1 val, 2 test), optional
``imbalanced.npy`` bool [N] and ``visual_tier.npy`` str [N] (embedded only: ground truth), ``meta.json`` (clip ids,
class names, protocol, key, counts) and
``exclusions.csv`` (skipped clips with the reason). The key hashes the protocol, the manifest and
`CHECKS_VERSION`, so a changed parameter, clip list or decoder check builds a new cache and the same ones
reuse it. Built in a temporary folder
and renamed into place, so an interrupted build never leaves a half-written cache behind.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from mmgap import paths
from mmgap.atomic import DamagedFile, digest_mismatch, file_digest, read_json, save_npy, write_json
from mmgap.data.decode import ClipError, check_audio, read_audio, read_frames
from mmgap.data.features import audio_features, feature_shape
from mmgap.data.manifest import (
    SPLIT_CODES,
    SPLITS,
    DataError,
    Exclusion,
    Manifest,
    ManifestRow,
    no_usable_clips,
    read_exclusions,
    summarise_reasons,
    write_exclusions,
)
from mmgap.data.parallel import pmap
from mmgap.data.protocols import Protocol
from mmgap.data.report import DEFAULT_LIMITS, REPORT_TXT, DataReport, ReportLimits, check_clips, check_splits
from mmgap.locks import DiskFull, check_free_space, ensure_writable, file_lock, remove_stale_tmp, reserve

CACHE_FORMAT = 1
# What the decoder checks and featurises, as a version in the cache key: raised when a change makes clips
# pass or fail differently, so a cache built before it is rebuilt once instead of silently reused.
# 2: truncated files, empty / non-finite audio, event windows past the end, git-lfs pointers (issue 12);
#    per-track durations, streamed WAV sizes (its review).
CHECKS_VERSION = 2
# Written next to the caches when a build finds nothing usable (removed by the next successful build).
FAILED_EXCLUSIONS = "exclusions.csv"


@dataclass
class FeatureCache:
    """Cached arrays of one dataset under one protocol (memory-mapped when loaded from disk)."""

    audio: np.ndarray                 # float16 [N, F, T]
    frames: np.ndarray                # uint8 [N, S, H, W, 3]
    labels: np.ndarray                # int64 [N]
    split: np.ndarray                 # int8 [N]: 0 train, 1 val, 2 test
    clip_ids: list[str]
    class_names: list[str]
    imbalanced: np.ndarray | None = None   # bool [N], embedded only: ground truth, never fed to training
    visual_tier: np.ndarray | None = None  # str [N], embedded only: "clean" | "hard" | "corrupt" (ground truth)
    protocol: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.labels)

    def indices(self, split: str) -> np.ndarray:
        """Row indices (int64, ascending) of the "train", "val" or "test" split."""
        if split not in SPLIT_CODES:
            raise ValueError(f"split={split!r}; expected one of {SPLITS}")
        return np.flatnonzero(np.asarray(self.split) == SPLIT_CODES[split]).astype(np.int64)

    def counts(self) -> dict[str, int]:
        """Rows per split."""
        return {s: int(len(self.indices(s))) for s in SPLITS}

    @classmethod
    def from_arrays(cls, audio: np.ndarray, frames: np.ndarray, labels: np.ndarray, split: np.ndarray,
                    class_names: list[str], imbalanced: np.ndarray | None = None,
                    visual_tier: np.ndarray | None = None) -> FeatureCache:
        """An in-memory cache (tests, small experiments); arrays are validated and cast to the cache dtypes."""
        n = len(labels)
        audio, frames = np.asarray(audio), np.asarray(frames)
        if audio.ndim != 3 or frames.ndim != 5 or frames.shape[-1] != 3:
            raise ValueError(f"expected audio [N, F, T] and frames [N, S, H, W, 3]; got {audio.shape} and "
                             f"{frames.shape}")
        if len(audio) != n or len(frames) != n or len(split) != n:
            raise ValueError(f"row counts differ: audio {len(audio)}, frames {len(frames)}, labels {n}, "
                             f"split {len(split)}")
        labels = np.asarray(labels, dtype=np.int64)
        if n and (labels.min() < 0 or labels.max() >= len(class_names)):
            raise ValueError(f"labels must lie in [0, {len(class_names)}) for {len(class_names)} class names")
        audio16 = _finite_float16(audio)
        _check_frames(frames)
        return cls(audio=audio16, frames=frames.astype(np.uint8), labels=labels,
                   split=np.asarray(split, dtype=np.int8), clip_ids=[f"{i:05d}" for i in range(n)],
                   class_names=list(class_names),
                   imbalanced=None if imbalanced is None else np.asarray(imbalanced, dtype=bool),
                   visual_tier=None if visual_tier is None else np.asarray(visual_tier, dtype=str))


def _finite_float16(audio: np.ndarray) -> np.ndarray:
    """`audio` as float16, or ValueError naming the rows with NaN / inf (in the input or made by the cast)."""
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below, with the rows
        a16 = audio.astype(np.float16)
    bad = _nonfinite_rows(a16)
    if len(bad):
        cast = audio.dtype.kind == "f" and not len(_nonfinite_rows(audio))
        why = "values beyond float16's range (|x| > 65504)" if cast else "NaN or infinite values"
        raise ValueError(f"audio features have {why} in {len(bad)} row(s) (first: {bad[:5].tolist()}); fix or "
                         "drop those clips before building a cache (training would fail on them)")
    return a16


def _nonfinite_rows(x: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Indices of the rows of `x` holding a NaN or an infinity (checked in chunks to bound memory)."""
    if x.dtype.kind not in "fc":
        return np.zeros(0, dtype=np.int64)
    bad = [np.flatnonzero(~np.isfinite(x[s:s + chunk]).reshape(len(x[s:s + chunk]), -1).all(axis=1)) + s
           for s in range(0, len(x), chunk)]
    return np.concatenate(bad) if bad else np.zeros(0, dtype=np.int64)


def _check_frames(frames: np.ndarray) -> None:
    """ValueError when frames are not finite pixel values in 0..255 (a uint8 cast would wrap them silently)."""
    if frames.dtype == np.uint8 or frames.size == 0:
        return
    if frames.dtype.kind == "f" and not np.isfinite(frames).all():
        raise ValueError("frames hold NaN or infinite values; expected pixel values 0..255")
    lo, hi = frames.min(), frames.max()
    if lo < 0 or hi > 255:
        raise ValueError(f"frames span {lo:g}..{hi:g}; expected pixel values 0..255 (uint8)")


def manifest_digest(manifest: Manifest) -> str:
    """A hash of the clips (ids, file names, sizes and modification times, labels, splits, windows): a
    different clip list, or files re-exported in place (even at the same size), get a new cache. A copy that
    does not keep modification times (``cp`` without ``-p``) is therefore decoded once more."""
    h = hashlib.sha256()
    h.update(json.dumps(manifest.class_names).encode())
    for r in manifest.rows:
        files = "|".join(f"{Path(f).name}:{_stamp(f)}" for f in (r.video, r.audio) if f)
        h.update(f"{r.clip_id}|{files}|{r.label}|{r.split}|{r.start}|{r.end}|{r.visual_tier}\n".encode())
    return h.hexdigest()[:12]


def _stamp(path: str) -> str:
    """``<size>@<mtime in ns>`` of a file (``-1`` when it is missing)."""
    try:
        st = os.stat(path)
    except OSError:
        return "-1"
    return f"{st.st_size}@{st.st_mtime_ns}"


def cache_key(manifest: Manifest, protocol: Protocol) -> str:
    """The cache key: protocol hash + manifest hash + the decoder checks' version (`CHECKS_VERSION`)."""
    text = f"{protocol.key()}:{manifest_digest(manifest)}:checks{CHECKS_VERSION}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def carve_val(labels: np.ndarray, split: np.ndarray, val_frac: float, seed: int) -> np.ndarray:
    """Move a stratified, seeded `val_frac` of the train rows to val (when there is no val split yet)."""
    split = split.copy()
    train = np.flatnonzero(split == SPLIT_CODES["train"])
    if val_frac <= 0 or (split == SPLIT_CODES["val"]).any() or len(train) < 2:
        return split
    n_val = max(1, int(round(len(train) * val_frac)))
    y = labels[train]
    _, counts = np.unique(y, return_counts=True)
    stratify = y if counts.min() >= 2 and n_val >= len(counts) else None
    _, val_idx = train_test_split(train, test_size=n_val, random_state=seed, stratify=stratify)
    split[np.sort(val_idx)] = SPLIT_CODES["val"]
    return split


@dataclass(frozen=True)
class _Task:
    row: ManifestRow
    protocol: Protocol


def _process(task: _Task) -> tuple[str, Any, Any, dict[str, float]]:
    """Decode and featurise one clip: ("ok", features, frames, info), or ("error", reason, kind, {}), never
    raised; `info` holds the durations and frame count the data report reads."""
    r, p = task.row, task.protocol
    info: dict[str, float] = {}
    try:
        a_win = (r.start, r.end) if p.audio.window == "event" else (None, None)
        v_win = (r.start, r.end) if p.visual.window == "event" else (None, None)
        if not r.video:
            raise ClipError("no video file")
        frames = read_frames(r.video, p.visual.fps, p.visual.frames_per_clip, p.visual.frame_size, *v_win,
                             info=info)
        wave = read_audio(r.audio or r.video, p.audio.sample_rate, *a_win, info=info)
        check_audio(wave, p.audio.sample_rate, p.audio.min_duration_s, p.audio.min_rms)
        feat = audio_features(wave, p.audio)
        if not np.isfinite(feat).all():
            raise ClipError("non-finite audio features (NaN or inf after the spectrogram); check the protocol's "
                            "normalisation")
        return "ok", feat, frames, info
    except ClipError as e:
        return "error", str(e), e.kind, {}
    except Exception as e:  # noqa: BLE001 - a worker must report, not crash, on any unexpected decode failure
        return "error", f"unexpected {type(e).__name__}: {e}", f"unexpected {type(e).__name__}", {}


def cache_folder(manifest: Manifest, protocol: Protocol, cache_root: str | Path) -> Path:
    """Where the cache of (manifest, protocol) lives: ``<cache_root>/<protocol.name>-<key>``."""
    return Path(cache_root) / f"{protocol.name}-{cache_key(manifest, protocol)}"


def is_built(folder: Path, log: Any = print) -> bool:
    """Whether `folder` holds a finished cache (its meta.json, written last, readable); a cut or empty
    meta.json is a build that never finished: noted, and built again."""
    meta = folder / "meta.json"
    if not meta.is_file():
        return False
    try:
        read_json(meta, fix="the cache is built again")
    except DamagedFile as exc:
        log(f"note: {exc}")
        return False
    return True


def build_cache(manifest: Manifest, protocol: Protocol, cache_root: str | Path, workers: int | None = None,
                rebuild: bool = False, progress: bool = True, limits: ReportLimits = DEFAULT_LIMITS) -> Path:
    """Decode every clip into the cache folder for (manifest, protocol); reuse an existing identical one.

    One process builds a given cache at a time (a lock per cache key): a second one waits and reuses it.
    Leftovers of killed builds are removed; free space is checked (and reserved) before decoding.
    """
    cache_root = Path(cache_root)
    key = cache_key(manifest, protocol)
    final = cache_root / f"{protocol.name}-{key}"
    if not rebuild and is_built(final):  # no lock needed to reuse: a finished cache is renamed into place
        return final
    if not manifest.rows:
        raise no_usable_clips(manifest.dataset, "no usable clip in the manifest", manifest.exclusions,
                              written_to=write_failed(cache_root, manifest.exclusions))
    ensure_writable(cache_root, "feature cache", ELSEWHERE)
    with file_lock(cache_root / f".{protocol.name}-{key}.lock", f"the {manifest.dataset} cache {final.name} "
                   "(another notebook is building it)"):
        remove_stale_tmp(cache_root)
        if not rebuild and is_built(final, log=lambda _: None):  # built while this process waited
            return final
        tmp = cache_root / f".{protocol.name}-{key}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            meta = _build(manifest, protocol, key, tmp, workers, progress, limits, cache_root)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC and not isinstance(exc, DiskFull):
                raise DiskFull(errno.ENOSPC, f"disk full while building the {manifest.dataset} cache in "
                                             f"{cache_root} ({exc}); {WHERE_FIX}") from None
            raise
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    (cache_root / FAILED_EXCLUSIONS).unlink(missing_ok=True)
    if progress:
        counts, n_excl = meta["counts"], meta["excluded"]
        print(f"{manifest.dataset}: cached {len(meta['clip_ids'])} clips (train {counts['train']}, val "
              f"{counts['val']}, test {counts['test']}); skipped {n_excl} "
              f"(see {paths.shown(final / 'exclusions.csv')}) "
              f"in {meta['seconds']} s")
        if n_excl:
            print("main reasons:\n" + summarise_reasons(read_exclusions(final / "exclusions.csv")))
        print_report(final)
    return final


ELSEWHERE = "put the cache elsewhere: prepare(..., cache_dir=...) or the environment variable MMGAP_CACHE_DIR"
WHERE_FIX = f"free space there, or {ELSEWHERE}"


def _build(manifest: Manifest, protocol: Protocol, key: str, tmp: Path, workers: int | None, progress: bool,
           limits: ReportLimits, cache_root: Path) -> dict[str, Any]:
    """Decode, featurise and write every array of a cache into `tmp`; returns its meta (written last)."""
    t0 = time.time()
    tmp.mkdir(parents=True)
    n = len(manifest.rows)
    vp = protocol.visual
    f_bins, t_frames = feature_shape(protocol.audio)
    a_shape, f_shape = (n, f_bins, t_frames), (n, vp.frames_per_clip, vp.frame_size, vp.frame_size, 3)
    arrays = 2 * int(np.prod(a_shape)) + int(np.prod(f_shape))
    needed = arrays + min(64 << 20, arrays // 20) + (1 << 20)  # the arrays and a margin for the small files
    check_free_space(cache_root, needed, f"{manifest.dataset} cache ({n} clips)", WHERE_FIX)
    audio = _open_reserved(tmp / "audio.full.npy", np.float16, a_shape)
    frames = _open_reserved(tmp / "frames.full.npy", np.uint8, f_shape)
    ok = np.zeros(n, dtype=bool)
    exclusions: list[Exclusion] = list(manifest.exclusions)
    info: list[dict[str, float]] = [{} for _ in range(n)]
    tasks = (_Task(r, protocol) for r in manifest.rows)
    for i, (status, a, f, clip_info) in enumerate(pmap(_process, tasks, n, workers,
                                                       desc=f"caching {manifest.dataset}", progress=progress)):
        row = manifest.rows[i]
        if status == "ok":
            audio[i], frames[i], ok[i], info[i] = a, f, True, clip_info
        else:
            exclusions.append(Exclusion(row.clip_id, row.video or row.audio, a, kind=f))
    keep = np.flatnonzero(ok)
    if len(keep) == 0:
        raise no_usable_clips(manifest.dataset, f"none of the {n} clips could be used", exclusions,
                              written_to=write_failed(cache_root, exclusions))
    _compact(tmp, "audio", audio, keep)
    _compact(tmp, "frames", frames, keep)
    del audio, frames
    rows = [manifest.rows[i] for i in keep]
    labels = np.array([r.label for r in rows], dtype=np.int64)
    split = np.array([SPLIT_CODES[r.split] for r in rows], dtype=np.int8)
    split = carve_val(labels, split, protocol.val_frac, protocol.split_seed)
    save_npy(tmp / "labels.npy", labels)
    save_npy(tmp / "split.npy", split)
    has_flags = all(r.imbalanced is not None for r in rows)
    if has_flags:
        save_npy(tmp / "imbalanced.npy", np.array([bool(r.imbalanced) for r in rows]))
    has_tiers = bool(rows) and all(r.visual_tier for r in rows)
    if has_tiers:  # fixed-width unicode: loads without pickle
        save_npy(tmp / "visual_tier.npy", np.array([r.visual_tier for r in rows], dtype=str))
    write_exclusions(tmp / "exclusions.csv", exclusions)
    report = DataReport(manifest.dataset, limits)
    check_clips(report, rows, [info[i] for i in keep], protocol)
    check_splits(report, rows, manifest.class_names, split)
    report.save(tmp)
    counts = {s: int((split == c).sum()) for s, c in SPLIT_CODES.items()}
    files = {p.name: file_digest(p) for p in sorted(tmp.glob("*.npy"))}
    meta = {
        "format": CACHE_FORMAT, "checks_version": CHECKS_VERSION, "dataset": manifest.dataset, "key": key,
        "protocol_key": protocol.key(),
        "protocol": protocol.to_dict(), "class_names": manifest.class_names,
        "clip_ids": [r.clip_id for r in rows], "counts": counts, "excluded": len(exclusions),
        "has_imbalanced": has_flags, "has_visual_tier": has_tiers, "seconds": round(time.time() - t0, 1),
        "files": files, "warnings": len(report.cases),
    }
    write_json(tmp / "meta.json", meta)
    return meta


def _open_reserved(path: Path, dtype: Any, shape: tuple[int, ...]) -> np.memmap:
    """A writable .npy memory map whose disk blocks are allocated now: a full disk is an error here, never a
    SIGBUS (Bus error: a dead kernel) when a later write through the map finds no block."""
    arr = np.lib.format.open_memmap(path, "w+", dtype, shape)
    with open(path, "r+b") as fh:
        reserve(fh.fileno(), os.path.getsize(path), path, WHERE_FIX)
    return arr


def print_report(folder: Path, full: bool = True) -> None:
    """Print the data report saved in a cache folder (`full`: every kind with examples; else one line)."""
    path = folder / REPORT_TXT
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").rstrip("\n").split("\n")
    if len(lines) == 1:
        print(f"data report: {lines[0].split(': ', 1)[-1]} ({paths.shown(path)})")
    elif full:
        print("data report (" + paths.shown(path) + "):\n" + "\n".join(lines[1:]))
    else:
        print(f"data report: {lines[0].split(': ', 1)[-1]}; see {paths.shown(path)}")


def write_failed(cache_root: Path, exclusions: list[Exclusion]) -> Path:
    """Write the exclusions of a build that found nothing usable to `<cache_root>/exclusions.csv`."""
    ensure_writable(cache_root, "list of skipped clips", ELSEWHERE)
    return write_exclusions(cache_root / FAILED_EXCLUSIONS, exclusions)


def _compact(folder: Path, name: str, full: np.memmap, keep: np.ndarray) -> None:
    """Write rows `keep` of the full-size temporary array to `<name>.npy` (renamed when nothing was skipped)."""
    full.flush()
    src = folder / f"{name}.full.npy"
    if len(keep) == len(full):
        os.replace(src, folder / f"{name}.npy")
        return
    out = _open_reserved(folder / f"{name}.npy", full.dtype, (len(keep), *full.shape[1:]))
    for s in range(0, len(keep), 256):
        out[s:s + 256] = full[keep[s:s + 256]]
    out.flush()
    del out
    src.unlink()


def load_cache(path: str | Path, verify: bool | None = None) -> FeatureCache:
    """Open a cache folder written by `build_cache` (arrays memory-mapped, no pickle), its arrays checked
    against the sizes and sha256 digests in meta.json.

    `verify`: None (default) hashes each array unless it is unchanged (size, modification and change times,
    inode) since its last successful check, recorded in ``verified.json``; True always hashes; False checks
    sizes only. A mismatch raises `DamagedCache` naming the file and the fix.
    """
    path = Path(path)
    meta_path = path / "meta.json"
    fix = f"delete {path} and run mmgap.data.prepare again (or prepare(..., rebuild=True))"
    if not meta_path.is_file():
        raise DataError(f"{path} is not a feature cache (no meta.json); build one with mmgap.data.prepare")
    try:
        meta = read_json(meta_path, fix)
    except DamagedFile as exc:
        raise DamagedCache(str(exc), exc.path) from None
    if meta.get("format") != CACHE_FORMAT:
        raise DataError(f"{path}: cache format {meta.get('format')} != {CACHE_FORMAT}; rebuild it "
                        "(prepare(..., rebuild=True))")
    _verify_arrays(path, meta.get("files") or {}, verify, fix)

    def arr(name: str) -> np.ndarray:
        try:
            return np.load(path / f"{name}.npy", mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise DamagedCache(f"damaged: {path / f'{name}.npy'} ({exc}); {fix}", path / f"{name}.npy") from None

    return FeatureCache(
        audio=arr("audio"), frames=arr("frames"), labels=np.asarray(arr("labels")), split=np.asarray(arr("split")),
        clip_ids=list(meta["clip_ids"]), class_names=list(meta["class_names"]),
        imbalanced=np.asarray(arr("imbalanced")) if meta.get("has_imbalanced") else None,
        visual_tier=np.asarray(arr("visual_tier")) if meta.get("has_visual_tier") else None,
        protocol=meta["protocol"], path=path,
    )


class DamagedCache(DataError):
    """A cache file differs from the digest in meta.json, or cannot be read."""

    def __init__(self, message: str, file: Path) -> None:
        super().__init__(message)
        self.file = file


VERIFIED = "verified.json"


def _file_state(p: Path) -> list[int]:
    """What changes when a file's bytes may have: size, modification and change times (ns), inode."""
    st = p.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _verify_arrays(path: Path, files: dict[str, dict[str, Any]], verify: bool | None, fix: str) -> None:
    """`DamagedCache` for the first array whose size or sha256 differs from meta.json (see `load_cache`)."""
    try:
        seen = read_json(path / VERIFIED, fix="") if verify is None and (path / VERIFIED).is_file() else {}
    except DamagedFile:
        seen = {}
    checked = {}
    for name, rec in files.items():
        f = path / name
        if not f.is_file():
            raise DamagedCache(f"damaged: {f} (missing: the cache is incomplete); {fix}", f)
        state = _file_state(f)
        if verify is False or (verify is None and seen.get(name) == state):
            why = None if state[0] == rec.get("size") else f"{state[0]} bytes, {rec.get('size')} written"
        else:
            why = digest_mismatch(f, rec)
        if why is not None:
            raise DamagedCache(f"damaged: {f} ({why}); {fix}", f)
        checked[name] = state
    if verify is not False and checked and checked != seen:
        try:  # a read-only cache is simply hashed again next time
            write_json(path / VERIFIED, checked)
        except OSError:
            pass
