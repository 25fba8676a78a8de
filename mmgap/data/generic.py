"""A generic layout for users' own data: a CSV of `video,label,split` (optional `audio` column).

Paths are relative to the CSV's folder (or absolute); `\\` separators from Windows are accepted. A clip's id
is its video's path relative to that folder (`dog/0001.mp4` and `cat/0001.mp4` are two clips). Labels are
class names; the classes are the distinct labels sorted (numerically when every label is an integer), or
the lines of an optional `classes.txt` next to the CSV (then other labels are skipped as unknown). Split is
`train`, `val` or `test`; without any `val` row a validation split is carved from train when the cache is
built. The CSV may carry a byte-order mark and use `,`, `;` or tab (as Excel writes it).
"""

from __future__ import annotations

from pathlib import Path

from mmgap.data.identity import Listed, path_id, resolve_duplicates
from mmgap.data.label_lists import read_class_list, read_text_rows
from mmgap.data.manifest import SPLITS, DataError, Exclusion, Manifest, ManifestRow, no_usable_clips, require_dir

CSV_NAMES = ("dataset.csv", "manifest.csv", "clips.csv")
COLUMNS = ("video", "label", "split")


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


def read_records(path: Path) -> list[tuple[int, dict[str, str]]]:
    """(line, {column: value}) of the CSV's data rows, column names lower-cased; DataError when one is missing."""
    rows = read_text_rows(path)
    header = [c.lower() for c in rows[0][1]] if rows else []
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise DataError(f"generic: {path} lacks column(s) {missing}; its header is {header}; expected "
                        "video,label,split (optional audio)")
    return [(line, {k: (rec[i] if i < len(rec) else "") for i, k in enumerate(header)}) for line, rec in rows[1:]]


def _sorted_labels(labels: set[str]) -> list[str]:
    return sorted(labels, key=int) if labels and all(x.isdigit() for x in labels) else sorted(labels)


def _local(base: Path, name: str) -> Path:
    """`base / name`, trying `/` for `\\` when the name as written does not exist (a path written on Windows)."""
    p = base / name
    if not p.exists() and "\\" in name:
        p = base / name.replace("\\", "/")
    return p


def build_manifest(root: str | Path) -> Manifest:
    """Manifest from a `video,label,split[,audio]` CSV; bad rows become exclusions with the reason."""
    path = find_csv(Path(root))
    base = path.parent
    records = read_records(path)
    classes_txt = base / "classes.txt"
    if classes_txt.is_file():
        class_names = read_class_list(classes_txt).names
    else:
        class_names = _sorted_labels({r["label"] for _, r in records if r["label"]})
    ex: list[Exclusion] = []
    listed: list[Listed] = []
    for line, r in records:
        video = r["video"]
        vpath = _local(base, video) if video else Path()
        clip = path_id(vpath, base) if video else f"row{line}"
        apath = _local(base, r["audio"]) if r.get("audio") else None
        if r["label"] not in class_names:
            ex.append(Exclusion(clip, video, f"unknown label {r['label']!r} (row {line} of {path.name})",
                                kind="unknown label"))
        elif r["split"] not in SPLITS:
            ex.append(Exclusion(clip, video, f"unknown split {r['split']!r}; expected one of {SPLITS}",
                                kind="unknown split"))
        elif not video or not vpath.is_file():
            ex.append(Exclusion(clip, video, f"listed in {path.name} but absent on disk",
                                kind="absent on disk"))
        elif apath is not None and not apath.is_file():
            ex.append(Exclusion(clip, str(r["audio"]), f"audio listed in {path.name} but absent on disk",
                                kind="audio absent on disk"))
        else:
            row = ManifestRow(clip, str(vpath), str(apath) if apath else "", class_names.index(r["label"]),
                              r["label"], r["split"])
            listed.append(Listed(row, f"{path.name} row {line}"))
    rows = resolve_duplicates(listed, ex)
    if not rows:
        raise no_usable_clips("generic", f"no usable clip in {path}", ex)
    return Manifest("generic", class_names, rows, ex)
