"""Clip identity, decided in one place: which file a name means, what a sample's id is, and what happens when
several rows claim one id.

A clip's id is the *sample*, not the file name alone: an AVE annotation is its video plus its event window
(`window_id`, with its category when two annotations share the window), a clip of a folder layout is its
path relative to the root (`path_id`; Kinetics-Sounds: the file found, without extension), and CREMA-D,
whose names are unique by construction, uses the name. `resolve_duplicates` then keeps
one row per id and says what each dropped row was: a repeated row, the same clip in two splits (kept in the
evaluation split, so no clip is in two splits), or rows that disagree (both skipped).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mmgap.data.manifest import Exclusion, ManifestRow

# When one clip is listed in two splits it is kept in the first of these (a test clip never trains).
SPLIT_PRIORITY = ("test", "val", "train")


def index_files(folder: Path, exts: Iterable[str], recursive: bool = False) -> tuple[dict[str, Path],
                                                                                   dict[str, list[Path]]]:
    """Files under `folder` whose extension (any case) is in `exts`, by stem: (unique, ambiguous) where
    `ambiguous` holds the stems that several files share (`a.wav` and `a.WAV`, or `x/a.mp4` and `y/a.mp4`)."""
    wanted = {e.lower() for e in exts}
    found: dict[str, list[Path]] = {}
    for p in sorted(_walk(folder) if recursive else folder.iterdir()):
        if p.suffix.lower() in wanted and p.is_file():
            found.setdefault(p.stem, []).append(p)
    unique = {k: v[0] for k, v in found.items() if len(v) == 1}
    ambiguous = {k: v for k, v in found.items() if len(v) > 1}
    return unique, ambiguous


def _walk(folder: Path) -> list[Path]:
    """Every file under `folder`, following symlinked folders (a dataset often links its videos from another
    disk) and visiting each real folder once (a link cycle cannot loop)."""
    seen: set[str] = set()
    out: list[Path] = []
    for top, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        out += [Path(top) / f for f in files]
    return out


def ambiguous_reason(paths: list[Path], root: Path) -> str:
    """The exclusion reason for a name that several files share."""
    names = ", ".join(_rel(p, root) for p in paths)
    return (f"ambiguous id: {len(paths)} files share this name ({names}); remove the extra copies or name "
            "the file by its path in the list")


def window_id(video_id: str, start: float, end: float, tag: str = "") -> str:
    """A windowed sample's id: the video plus its event window in seconds, e.g. `VSaW8pYhd1U@2-5` (AVE), and
    `#tag` when given (`VSaW8pYhd1U@2-5#Bark`: two annotations of one window)."""
    return f"{video_id}@{start:g}-{end:g}" + (f"#{tag}" if tag else "")


def path_id(path: str | Path, root: Path) -> str:
    """A file's id in a folder layout: the path of `path` (as found, e.g. `root / name`) relative to `root`,
    with `/` separators and `.` / `..` resolved (absolute when the file lies outside `root`)."""
    return _rel(Path(path), root)


def _rel(p: Path, root: Path) -> str:
    """`p` relative to `root` (both made absolute first, so a relative root is not counted twice)."""
    p, root = Path(os.path.abspath(p)), Path(os.path.abspath(root))
    return p.relative_to(root).as_posix() if p.is_relative_to(root) else p.as_posix()


@dataclass(frozen=True)
class Listed:
    """A manifest row with where it was listed (e.g. `trainSet.txt row 3`), for duplicate reports."""

    row: ManifestRow
    source: str


def _same_sample(a: ManifestRow, b: ManifestRow) -> bool:
    return (a.label, a.video, a.audio, a.start, a.end) == (b.label, b.video, b.audio, b.start, b.end)


def resolve_duplicates(listed: list[Listed], exclusions: list[Exclusion]) -> list[ManifestRow]:
    """One row per clip id, in first-listed order; every other row becomes an exclusion saying what it was."""
    groups: dict[str, list[Listed]] = {}
    for item in listed:
        groups.setdefault(item.row.clip_id, []).append(item)
    kept: list[ManifestRow] = []
    for cid, items in groups.items():
        if len(items) == 1:
            kept.append(items[0].row)
            continue
        first = items[0]
        clash = [it for it in items[1:] if not _same_sample(it.row, first.row)]
        if clash:
            said = "; ".join(f"{it.source}: {_describe(it.row)}" for it in items)
            for it in items:
                exclusions.append(Exclusion(cid, it.row.video or it.row.audio,
                                            f"conflicting rows for one clip ({said}); skipped all of them: "
                                            "fix the list so the clip appears once"))
            continue
        keep = min(items, key=lambda it: (SPLIT_PRIORITY.index(it.row.split) if it.row.split in SPLIT_PRIORITY
                                          else len(SPLIT_PRIORITY)))
        kept.append(keep.row)
        for it in items:
            if it is keep:
                continue
            if it.row.split == keep.row.split:
                reason = f"duplicate row: {it.source} repeats {keep.source}; kept once"
            else:
                reason = (f"in two splits: {it.source} ({it.row.split}) and {keep.source} ({keep.row.split}); "
                          f"kept in {keep.row.split} only, since a clip belongs to one split")
            exclusions.append(Exclusion(cid, it.row.video or it.row.audio, reason))
    order = {id(r): i for i, r in enumerate(it.row for it in listed)}
    return sorted(kept, key=lambda r: order[id(r)])


def _describe(r: ManifestRow) -> str:
    what = f"label {r.label_name!r}"
    if r.audio:
        what += f", audio {Path(r.audio).name}"
    return f"{what}, video {Path(r.video).name}" if r.video else what
