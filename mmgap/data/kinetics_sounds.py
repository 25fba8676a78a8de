"""Kinetics-Sounds: a folder of 10 s clips plus list files `train.txt` / `test.txt` (optional `val.txt`).

List files (read by `mmgap.data.label_lists`): rows `ytid_start_end,10,label` or `clip,label`, where label
is a class index counted from 0 or a class name; or Kinetics' own annotation CSV
(`label,youtube_id,time_start,time_end,split`, e.g. its train.csv / validate.csv), whose rows of other
Kinetics classes are ignored. Integer labels counted from 1 (no 0, and 31 used) stop with an error that
says how to fix them; a `classes.txt` in the folder (or `class_list_file=`) replaces the built-in 31 names
and may give the indices your lists use (`1 blowing_nose`). Clips are found by id under the dataset folder
(any sub-folder; .mp4, .mkv, .webm, .avi in any case), or by the relative path a list row names. A clip's
id is the file found, as its path relative to the dataset folder without extension
(`videos/x_000001_000011`): rows naming one file in two ways are one clip (listed in two splits, it is kept
in the evaluation split only). 31 classes by default, in the order of BML_TPAMI2024's split file.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from mmgap.data.identity import Listed, ambiguous_reason, index_files, path_id, resolve_duplicates
from mmgap.data.label_lists import ClassList, LabelList, check_index_base, read_class_list, read_label_list
from mmgap.data.manifest import SPLITS, DataError, Exclusion, Manifest, ManifestRow, no_usable_clips, require_dir

CLASS_NAMES = [
    "blowing_nose", "blowing_out_candles", "bowling", "chopping_wood", "dribbling_basketball", "laughing",
    "mowing_lawn", "playing_accordion", "playing_bagpipes", "playing_bass_guitar", "playing_clarinet",
    "playing_drums", "playing_guitar", "playing_harmonica", "playing_keyboard", "playing_organ", "playing_piano",
    "playing_saxophone", "playing_trombone", "playing_trumpet", "playing_violin", "playing_xylophone",
    "ripping_paper", "shoveling_snow", "shuffling_cards", "singing", "stomping_grapes", "tap_dancing",
    "tapping_guitar", "tapping_pen", "tickling",
]
VIDEO_EXTS = (".mp4", ".mkv", ".webm", ".avi")
LIST_STEMS = {"train": ("train", "ks_train", "train_list"), "val": ("val", "ks_val", "val_list", "validate"),
              "test": ("test", "ks_test", "test_list")}


def _list_file(root: Path, split: str) -> Path | None:
    for ext in (".txt", ".csv"):
        for stem in LIST_STEMS[split]:
            p = root / f"{stem}{ext}"
            if p.is_file():
                return p
    return None


def class_list(root: Path, path: str | Path | None = None) -> ClassList:
    """The classes: `path`, else `<root>/classes.txt`, else the built-in 31 names (indexed from 0)."""
    if path is None and (root / "classes.txt").is_file():
        path = root / "classes.txt"
    return read_class_list(Path(path)) if path is not None else ClassList(list(CLASS_NAMES))


def build_manifest(root: str | Path, class_list_file: str | Path | None = None) -> Manifest:
    """Manifest of a Kinetics-Sounds folder; unusable rows become exclusions with the reason."""
    root = Path(root)
    require_dir(root, "Kinetics-Sounds", "kinetics_sounds")
    classes = class_list(root, class_list_file)
    videos, ambiguous = index_files(root, VIDEO_EXTS, recursive=True)
    paths = {s: _list_file(root, s) for s in SPLITS}
    if paths["train"] is None or paths["test"] is None:
        raise DataError(f"kinetics_sounds: need train.txt and test.txt list files in {root} (rows "
                        "`ytid_start_end,10,label`); see data/README.md")
    lists: dict[str, LabelList] = {s: read_label_list(p) for s, p in paths.items() if p is not None}
    check_index_base(list(lists.values()), classes, "kinetics_sounds", root)
    ex: list[Exclusion] = []
    listed: list[Listed] = []
    for split, lst in lists.items():
        name = lst.path.name
        known = 0
        for item in lst.rows:
            cid, file = _clip(item.clip, root, videos)
            y = classes.lookup(item.label) if not item.problem else None
            known += y is not None
            if item.problem:
                ex.append(Exclusion(cid, name, item.problem, kind="bad row"))
            elif y is None:
                if lst.kind == "kinetics_csv":
                    continue  # another Kinetics class: not part of Kinetics-Sounds
                last = classes.base + len(classes.names) - 1
                ex.append(Exclusion(cid, name, f"unknown label {item.label!r} in {name} (expected {classes.base}.."
                                    f"{last} or a class name of {classes.source})", kind="unknown label"))
            elif file is None and Path(cid).name in ambiguous:
                ex.append(Exclusion(cid, name, ambiguous_reason(ambiguous[Path(cid).name], root)))
            elif file is None:
                ex.append(Exclusion(cid, name, f"listed in {name} but absent on disk", kind="absent on disk"))
            else:
                listed.append(Listed(ManifestRow(cid, str(file), "", y, classes.names[y], split), item.where))
        if lst.kind == "kinetics_csv" and lst.rows and known == 0:
            labels = sorted({r.label for r in lst.rows})[:3]
            raise DataError(f"kinetics_sounds: {lst.path} is a Kinetics annotation CSV, but none of its "
                            f"{len(lst.rows)} rows has a class of {classes.source} (its labels include {labels}); "
                            "check the file, or give the class names with classes.txt")
    rows = resolve_duplicates(listed, ex)
    if not rows:
        raise no_usable_clips("kinetics_sounds", f"no usable clip in {root}", ex)
    return Manifest("kinetics_sounds", list(classes.names), rows, ex)


def _clip(named: str, root: Path, videos: dict[str, Path]) -> tuple[str, Path | None]:
    """(id, file) of the clip a list row names: a relative path that exists under `root`, else a name looked
    up anywhere under `root`. The id is the file's path relative to `root` without extension
    (`videos/x_000001_000011`), so rows naming one file in two ways are one clip; a row whose file is not
    found keeps the name it gives (without extension)."""
    p = Path(named)
    name_id = p.with_suffix("").as_posix() if p.suffix.lower() in VIDEO_EXTS else p.as_posix()
    file = _at_path(p, root) or videos.get(Path(name_id).name)
    return (PurePosixPath(path_id(file, root)).with_suffix("").as_posix() if file else name_id), file


def _at_path(p: Path, root: Path) -> Path | None:
    """The file a row's relative path names under `root` (with or without its extension), if it exists."""
    if len(p.parts) == 1 and p.suffix.lower() not in VIDEO_EXTS:
        return None  # a bare name: looked up by name
    cands = [root / p] if p.suffix.lower() in VIDEO_EXTS else [root / f"{p}{e}" for e in VIDEO_EXTS]
    return next((c for c in cands if c.is_file()), None)
