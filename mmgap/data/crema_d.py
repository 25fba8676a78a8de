"""CREMA-D: `AudioWAV/*.wav` + `VideoFlash/*.flv`, labels from names like `1001_DFA_ANG_XX`.

Split (`split_by`): "random" (default) is the paper's random 9:1 train/test (6,698 / 744 of 7,442),
stratified by class and made deterministic by `split_seed`; its actors appear in both train and test (the
paper's speaker-dependent protocol). "actor" is a speaker-independent split (sklearn's GroupShuffleSplit
over the 91 actors, seeded): about `test_frac` of the actors are test, and `val_frac` of the remaining
actors are validation, so no actor is in two splits. Or the user's split files `train.csv` / `test.csv`
(optionally `val.csv`) of rows `clip,LABEL` (OGM-GE's format), found in the dataset folder or passed as
`split_files`. Extensions are matched in any case (`x.WAV`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.model_selection import GroupShuffleSplit, train_test_split

from mmgap.data.identity import Listed, ambiguous_reason, index_files, resolve_duplicates
from mmgap.data.label_lists import read_label_list
from mmgap.data.manifest import SPLITS, DataError, Exclusion, Manifest, ManifestRow, no_usable_clips, require_dir

CLASS_NAMES = ["NEU", "HAP", "SAD", "FEA", "DIS", "ANG"]  # OGM-GE's order
VIDEO_EXTS = (".flv", ".mp4")
AUDIO_EXTS = (".wav",)
SPLIT_BY = ("random", "actor")


def parse_name(stem: str) -> str:
    """The emotion code of a CREMA-D clip name `actor_sentence_EMOTION_level`, or ValueError."""
    parts = stem.split("_")
    if len(parts) != 4 or not parts[0].isdigit():
        raise ValueError(f"name {stem!r} is not of the form 1001_DFA_ANG_XX")
    return parts[2]


def actor(clip_id: str) -> str:
    """The actor of a CREMA-D clip id (`1001_DFA_ANG_XX` -> `1001`)."""
    return clip_id.split("_", 1)[0]


def actors_in_both(manifest: Manifest, a: str = "train", b: str = "test") -> set[str]:
    """Actors with clips in both split `a` and split `b`."""
    def of(s: str) -> set[str]:
        return {actor(r.clip_id) for r in manifest.rows if r.split == s}
    return of(a) & of(b)


def build_manifest(root: str | Path, split_files: dict[str, str | Path] | None = None, split_seed: int = 0,
                   test_frac: float = 0.1, split_by: str = "random", val_frac: float = 0.0) -> Manifest:
    """Manifest of a CREMA-D folder; unusable clips become exclusions (reason given), never crashes.

    `val_frac` is used by `split_by="actor"` only (a validation split of whole actors); the random split
    leaves validation to the cache's stratified carve, as before."""
    if split_by not in SPLIT_BY:
        raise DataError(f"crema_d: split_by={split_by!r}; expected one of {SPLIT_BY}")
    root = Path(root)
    require_dir(root, "CREMA-D", "crema_d")
    vdir = require_dir(root / "VideoFlash", "CREMA-D VideoFlash/", "crema_d")
    adir = require_dir(root / "AudioWAV", "CREMA-D AudioWAV/", "crema_d")
    ex: list[Exclusion] = []
    videos, v_amb = index_files(vdir, VIDEO_EXTS)
    wavs, a_amb = index_files(adir, AUDIO_EXTS)
    for stem, paths in sorted({**v_amb, **a_amb}.items()):  # which copy is right is unknown: all skipped
        ex.append(Exclusion(stem, str(paths[0]), ambiguous_reason(paths, root)))
    for stem in sorted(set(wavs) - set(videos) - set(v_amb)):
        ex.append(Exclusion(stem, str(wavs[stem]), "no video file (VideoFlash/)"))
    usable: dict[str, tuple[Path, Path, int]] = {}
    for stem, vpath in videos.items():
        try:
            code = parse_name(stem)
        except ValueError as e:
            ex.append(Exclusion(stem, str(vpath), f"unparseable name: {e}"))
            continue
        if code not in CLASS_NAMES:
            ex.append(Exclusion(stem, str(vpath), f"unknown label {code!r} (expected one of {CLASS_NAMES})",
                                kind="unknown label"))
            continue
        if stem in a_amb:
            continue  # reported above
        if stem not in wavs:
            ex.append(Exclusion(stem, str(vpath), "no audio file (AudioWAV/*.wav)"))
            continue
        usable[stem] = (vpath, wavs[stem], CLASS_NAMES.index(code))

    if split_files is None:
        found = {s: root / f"{s}.csv" for s in SPLITS if (root / f"{s}.csv").is_file()}
        split_files = found or None
    on_disk = set(videos) | set(wavs) | set(v_amb) | set(a_amb)
    if split_files:
        rows = _rows_from_split_files(split_files, usable, on_disk, ex)
    else:
        stems = sorted(usable)
        if len(stems) < 2:
            raise no_usable_clips("crema_d", f"only {len(stems)} usable clip(s) in {root}", ex)
        split = (_random_split(stems, usable, test_frac, split_seed) if split_by == "random"
                 else _actor_split(stems, test_frac, val_frac, split_seed))
        rows = [ManifestRow(s, str(usable[s][0]), str(usable[s][1]), usable[s][2], CLASS_NAMES[usable[s][2]], sp)
                for s, sp in zip(stems, split, strict=True)]
    if not rows:
        raise no_usable_clips("crema_d", f"no usable clip in {root}", ex)
    return Manifest("crema_d", list(CLASS_NAMES), rows, ex)


def _rows_from_split_files(split_files: dict[str, str | Path], usable: dict[str, tuple[Path, Path, int]],
                           on_disk: set[str], ex: list[Exclusion]) -> list[ManifestRow]:
    """Rows listed in the user's split files (`clip,LABEL`); problems become exclusions."""
    if "train" not in split_files or "test" not in split_files:
        raise DataError(f"crema_d: split files need at least train and test; got {sorted(split_files)}")
    listed: list[Listed] = []
    for split, path in split_files.items():
        if split not in SPLITS:
            raise DataError(f"crema_d: unknown split {split!r} in split_files; expected {SPLITS}")
        where = Path(path).name
        for item in read_label_list(Path(path)).rows:
            stem = Path(item.clip).stem
            if item.problem:
                ex.append(Exclusion(stem, where, item.problem, kind="bad row"))
            elif item.label not in CLASS_NAMES:
                ex.append(Exclusion(stem, where, f"unknown label {item.label!r} in {where}",
                                    kind="unknown label"))
            elif stem not in usable:
                if stem not in on_disk:
                    ex.append(Exclusion(stem, where, f"listed in {where} but absent on disk",
                                        kind="absent on disk"))
                # else: already excluded above with its own reason
            elif CLASS_NAMES[usable[stem][2]] != item.label:
                ex.append(Exclusion(stem, where, f"label {item.label!r} in {where} disagrees with the file "
                                    "name", kind="label disagrees with the file name"))
            else:
                v, a, y = usable[stem]
                listed.append(Listed(ManifestRow(stem, str(v), str(a), y, CLASS_NAMES[y], split), item.where))
    return resolve_duplicates(listed, ex)


def _random_split(stems: list[str], usable: dict[str, tuple[Path, Path, int]], test_frac: float,
                  seed: int) -> list[str]:
    """The paper's random train/test split, stratified by class when every class allows it."""
    labels = np.array([usable[s][2] for s in stems])
    n_test = max(1, int(round(test_frac * len(stems))))
    _, counts = np.unique(labels, return_counts=True)
    strat = labels if counts.min() >= 2 and n_test >= len(counts) else None
    _, test_idx = train_test_split(np.arange(len(stems)), test_size=n_test, random_state=seed, stratify=strat)
    test = set(test_idx.tolist())
    return ["test" if i in test else "train" for i in range(len(stems))]


def _actor_split(stems: list[str], test_frac: float, val_frac: float, seed: int) -> list[str]:
    """A speaker-independent split: whole actors to test (then to val), by GroupShuffleSplit."""
    groups = np.array([actor(s) for s in stems])
    if len(set(groups)) < 2:
        raise DataError(f"crema_d: split_by='actor' needs clips of at least 2 actors; found {sorted(set(groups))}")
    idx = np.arange(len(stems))
    train, test = next(GroupShuffleSplit(1, test_size=test_frac, random_state=seed).split(idx, groups=groups))
    split = np.array(["train"] * len(stems), dtype=object)
    split[test] = "test"
    if val_frac > 0 and len(set(groups[train])) >= 2:
        _, val = next(GroupShuffleSplit(1, test_size=val_frac, random_state=seed).split(train, groups=groups[train]))
        split[train[val]] = "val"
    return split.tolist()
