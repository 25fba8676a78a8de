"""CREMA-D: `AudioWAV/*.wav` + `VideoFlash/*.flv`, labels from names like `1001_DFA_ANG_XX`.

Split: the paper's random 9:1 train/test (6,698 / 744 of 7,442), stratified by class and made
deterministic by `split_seed`; or the user's split files `train.csv` / `test.csv` (optionally `val.csv`) of
rows `clip,LABEL` (OGM-GE's format), found in the dataset folder or passed as `split_files`.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from mmgap.data.manifest import (SPLITS, DataError, Exclusion, Manifest, ManifestRow, drop_duplicates,
                                 require_dir)

CLASS_NAMES = ["NEU", "HAP", "SAD", "FEA", "DIS", "ANG"]  # OGM-GE's order
VIDEO_EXTS = (".flv", ".mp4")


def parse_name(stem: str) -> str:
    """The emotion code of a CREMA-D clip name `actor_sentence_EMOTION_level`, or ValueError."""
    parts = stem.split("_")
    if len(parts) != 4 or not parts[0].isdigit():
        raise ValueError(f"name {stem!r} is not of the form 1001_DFA_ANG_XX")
    return parts[2]


def read_split_file(path: Path) -> list[tuple[str, str]]:
    """Rows `clip,LABEL` (a header row `clip,label` is skipped)."""
    rows = []
    with open(path, newline="") as fh:
        for i, rec in enumerate(csv.reader(fh)):
            if not rec or not rec[0].strip():
                continue
            if len(rec) < 2:
                raise DataError(f"{path}: line {i + 1} has {len(rec)} field(s); expected `clip,LABEL`")
            if i == 0 and rec[1].strip().lower() == "label":
                continue
            rows.append((Path(rec[0].strip()).stem, rec[1].strip()))
    return rows


def build_manifest(root: str | Path, split_files: dict[str, str | Path] | None = None, split_seed: int = 0,
                   test_frac: float = 0.1) -> Manifest:
    """Manifest of a CREMA-D folder; unusable clips become exclusions (reason given), never crashes."""
    root = Path(root)
    require_dir(root, "CREMA-D", "crema_d")
    vdir = require_dir(root / "VideoFlash", "CREMA-D VideoFlash/", "crema_d")
    adir = require_dir(root / "AudioWAV", "CREMA-D AudioWAV/", "crema_d")
    ex: list[Exclusion] = []
    found: dict[str, list[Path]] = {}
    for p in sorted(vdir.iterdir()):
        if p.suffix.lower() in VIDEO_EXTS:
            found.setdefault(p.stem, []).append(p)
    videos = {k: v[0] for k, v in found.items() if len(v) == 1}
    for k, v in found.items():
        if len(v) > 1:  # ambiguous: which copy is right is unknown, so both are skipped
            ex.append(Exclusion(k, str(v[0]), f"duplicate id: {len(v)} files ({', '.join(q.name for q in v)})"))
    wavs = {p.stem: p for p in sorted(adir.glob("*.wav"))}
    for stem in sorted(set(wavs) - set(found)):
        ex.append(Exclusion(stem, str(wavs[stem]), "no video file (VideoFlash/)"))
    usable: dict[str, tuple[Path, Path, int]] = {}
    for stem, vpath in videos.items():
        try:
            code = parse_name(stem)
        except ValueError as e:
            ex.append(Exclusion(stem, str(vpath), f"unparseable name: {e}"))
            continue
        if code not in CLASS_NAMES:
            ex.append(Exclusion(stem, str(vpath), f"unknown label {code!r} (expected one of {CLASS_NAMES})"))
            continue
        if stem not in wavs:
            ex.append(Exclusion(stem, str(vpath), "no audio file (AudioWAV/)"))
            continue
        usable[stem] = (vpath, wavs[stem], CLASS_NAMES.index(code))

    if split_files is None:
        found = {s: root / f"{s}.csv" for s in SPLITS if (root / f"{s}.csv").is_file()}
        split_files = found or None
    rows: list[ManifestRow] = []
    if split_files:
        if "train" not in split_files or "test" not in split_files:
            raise DataError(f"crema_d: split files need at least train and test; got {sorted(split_files)}")
        for split, path in split_files.items():
            if split not in SPLITS:
                raise DataError(f"crema_d: unknown split {split!r} in split_files; expected {SPLITS}")
            for stem, label in read_split_file(Path(path)):
                where = f"{Path(path).name}"
                if label not in CLASS_NAMES:
                    ex.append(Exclusion(stem, where, f"unknown label {label!r} in {where}"))
                elif stem not in usable:
                    if stem in found or stem in wavs:
                        continue  # already excluded above with its own reason
                    ex.append(Exclusion(stem, where, f"listed in {where} but absent on disk"))
                elif CLASS_NAMES[usable[stem][2]] != label:
                    ex.append(Exclusion(stem, where, f"label {label!r} in {where} disagrees with the file name"))
                else:
                    v, a, y = usable[stem]
                    rows.append(ManifestRow(stem, str(v), str(a), y, CLASS_NAMES[y], split))
        rows = drop_duplicates(rows, ex)
    else:
        stems = sorted(usable)
        if len(stems) < 2:
            raise DataError(f"crema_d: only {len(stems)} usable clip(s) in {root}; see data/README.md")
        labels = np.array([usable[s][2] for s in stems])
        n_test = max(1, int(round(test_frac * len(stems))))
        _, counts = np.unique(labels, return_counts=True)
        strat = labels if counts.min() >= 2 and n_test >= len(counts) else None
        _, test_idx = train_test_split(np.arange(len(stems)), test_size=n_test, random_state=split_seed,
                                       stratify=strat)
        test = set(test_idx.tolist())
        for i, s in enumerate(stems):
            v, a, y = usable[s]
            rows.append(ManifestRow(s, str(v), str(a), y, CLASS_NAMES[y], "test" if i in test else "train"))
    return Manifest("crema_d", list(CLASS_NAMES), rows, ex)
