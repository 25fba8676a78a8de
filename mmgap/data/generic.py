"""A generic layout for users' own data: a CSV of `video,label,split` (optional `audio` column).

Paths are relative to the CSV's folder (or absolute). Labels are class names; the classes are the sorted
distinct labels, or the lines of an optional `classes.txt` next to the CSV (then other labels are
skipped as unknown). Split is `train`, `val` or `test`; without any `val` row a validation split is carved
from train when the cache is built.
"""

from __future__ import annotations

import csv
from pathlib import Path

from mmgap.data.manifest import (SPLITS, DataError, Exclusion, Manifest, ManifestRow, drop_duplicates,
                                 require_dir)

CSV_NAMES = ("dataset.csv", "manifest.csv", "clips.csv")


def find_csv(root: Path) -> Path:
    """The dataset CSV: `root` itself when it is a file, else dataset.csv / manifest.csv / clips.csv in it."""
    if root.is_file():
        return root
    require_dir(root, "generic dataset", "generic")
    for name in CSV_NAMES:
        if (root / name).is_file():
            return root / name
    raise DataError(f"generic: no {' / '.join(CSV_NAMES)} in {root}; write a CSV with columns "
                    "video,label,split (optional audio); see data/README.md")


def build_manifest(root: str | Path) -> Manifest:
    """Manifest from a `video,label,split[,audio]` CSV; bad rows become exclusions with the reason."""
    path = find_csv(Path(root))
    base = path.parent
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        cols = {c.strip().lower() for c in (reader.fieldnames or [])}
        missing = {"video", "label", "split"} - cols
        if missing:
            raise DataError(f"generic: {path} lacks column(s) {sorted(missing)}; expected video,label,split "
                            "(optional audio)")
        records = [{k.strip().lower(): (v or "").strip() for k, v in d.items() if k} for d in reader]
    classes_txt = base / "classes.txt"
    if classes_txt.is_file():
        class_names = [ln.strip() for ln in classes_txt.read_text().splitlines() if ln.strip()]
    else:
        class_names = sorted({r["label"] for r in records if r["label"]})
    ex: list[Exclusion] = []
    rows: list[ManifestRow] = []
    for i, r in enumerate(records):
        video = r["video"]
        vpath = (base / video) if video else Path()
        clip = Path(video).stem or f"row{i + 2}"
        apath = (base / r["audio"]) if r.get("audio") else None
        if r["label"] not in class_names:
            ex.append(Exclusion(clip, video, f"unknown label {r['label']!r} (row {i + 2} of {path.name})"))
        elif r["split"] not in SPLITS:
            ex.append(Exclusion(clip, video, f"unknown split {r['split']!r}; expected one of {SPLITS}"))
        elif not video or not vpath.is_file():
            ex.append(Exclusion(clip, video, f"listed in {path.name} but absent on disk"))
        elif apath is not None and not apath.is_file():
            ex.append(Exclusion(clip, str(r["audio"]), f"audio listed in {path.name} but absent on disk"))
        else:
            rows.append(ManifestRow(clip, str(vpath), str(apath) if apath else "", class_names.index(r["label"]),
                                    r["label"], r["split"]))
    rows = drop_duplicates(rows, ex)
    if not rows:
        raise DataError(f"generic: no usable clip in {path} ({len(ex)} skipped); see data/README.md")
    return Manifest("generic", class_names, rows, ex)
