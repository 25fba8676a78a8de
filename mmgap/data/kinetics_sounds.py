"""Kinetics-Sounds: a folder of 10 s clips plus list files `train.txt` / `test.txt` (optional `val.txt`).

List rows are `ytid_start_end,10,label` where label is a class index (0-30) or name, or a CSV with
columns `clip,label` (a header row is skipped). Clips are found by id under the dataset folder (any
sub-folder; .mp4, .mkv, .webm, .avi). 31 classes, in the order of BML_TPAMI2024's split file.
"""

from __future__ import annotations

import csv
from pathlib import Path

from mmgap.data.manifest import (SPLITS, DataError, Exclusion, Manifest, ManifestRow, drop_duplicates,
                                 require_dir)

CLASS_NAMES = [
    "blowing_nose", "blowing_out_candles", "bowling", "chopping_wood", "dribbling_basketball", "laughing",
    "mowing_lawn", "playing_accordion", "playing_bagpipes", "playing_bass_guitar", "playing_clarinet",
    "playing_drums", "playing_guitar", "playing_harmonica", "playing_keyboard", "playing_organ", "playing_piano",
    "playing_saxophone", "playing_trombone", "playing_trumpet", "playing_violin", "playing_xylophone",
    "ripping_paper", "shoveling_snow", "shuffling_cards", "singing", "stomping_grapes", "tap_dancing",
    "tapping_guitar", "tapping_pen", "tickling",
]
VIDEO_EXTS = (".mp4", ".mkv", ".webm", ".avi")


def _label(raw: str) -> int | None:
    raw = raw.strip()
    if raw.isdigit():
        k = int(raw)
        return k if 0 <= k < len(CLASS_NAMES) else None
    name = raw.replace(" ", "_").lower()
    return CLASS_NAMES.index(name) if name in CLASS_NAMES else None


def _list_file(root: Path, split: str) -> Path | None:
    for ext in (".txt", ".csv"):
        for stem in (split, f"ks_{split}", f"{split}_list"):
            p = root / f"{stem}{ext}"
            if p.is_file():
                return p
    return None


def build_manifest(root: str | Path) -> Manifest:
    """Manifest of a Kinetics-Sounds folder; unusable rows become exclusions with the reason."""
    root = Path(root)
    require_dir(root, "Kinetics-Sounds", "kinetics_sounds")
    ex: list[Exclusion] = []
    found: dict[str, list[Path]] = {}
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() in VIDEO_EXTS and p.is_file():
            found.setdefault(p.stem, []).append(p)
    videos = {k: v[0] for k, v in found.items() if len(v) == 1}
    dup_files = {k: v for k, v in found.items() if len(v) > 1}  # ambiguous: which copy is right is unknown
    lists = {s: _list_file(root, s) for s in SPLITS}
    if lists["train"] is None or lists["test"] is None:
        raise DataError(f"kinetics_sounds: need train.txt and test.txt list files in {root} (rows "
                        "`ytid_start_end,10,label`); see data/README.md")
    rows: list[ManifestRow] = []
    for split, path in lists.items():
        if path is None:
            continue
        with open(path, newline="") as fh:
            for i, rec in enumerate(csv.reader(fh)):
                if not rec or not rec[0].strip():
                    continue
                if len(rec) < 2:
                    ex.append(Exclusion(rec[0], path.name, f"bad row {i + 1} of {path.name}: expected "
                                        "`ytid_start_end,10,label` or `clip,label`"))
                    continue
                clip, raw = Path(rec[0].strip()).stem, rec[-1]
                y = _label(raw)
                if y is None:
                    if i == 0 and raw.strip().lower() == "label":
                        continue
                    ex.append(Exclusion(clip, path.name, f"unknown label {raw.strip()!r} in {path.name}"))
                elif clip in dup_files:
                    ex.append(Exclusion(clip, str(dup_files[clip][0]), f"duplicate id: {len(dup_files[clip])} files "
                                        f"({', '.join(str(q) for q in dup_files[clip])})"))
                elif clip not in videos:
                    ex.append(Exclusion(clip, path.name, f"listed in {path.name} but absent on disk"))
                else:
                    rows.append(ManifestRow(clip, str(videos[clip]), "", y, CLASS_NAMES[y], split))
    rows = drop_duplicates(rows, ex)
    if not rows:
        raise DataError(f"kinetics_sounds: no usable clip in {root} ({len(ex)} skipped); see data/README.md")
    return Manifest("kinetics_sounds", list(CLASS_NAMES), rows, ex)
