"""AVE: `AVE/*.mp4` + `Annotations.txt`, `trainSet.txt`, `valSet.txt`, `testSet.txt` (official splits).

Rows are `Category&VideoID&Quality&Start&End` (seconds); the event window [Start, End) cuts the audio and
bounds the frames. A sample is one annotation row, as AVE's authors use them, so its id is the video plus
its window (`VideoID@Start-End`, `identity.window_id`): a video annotated with two events gives two
samples. When two categories annotate the same window of a video, each id also carries its category
(`VideoID@Start-End#Category`), so both stay samples with their own label; an id without a category is
unchanged. 28 classes in the order of the original AVE code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mmgap.data.identity import Listed, ambiguous_reason, index_files, resolve_duplicates, window_id
from mmgap.data.label_lists import read_text
from mmgap.data.manifest import Exclusion, Manifest, ManifestRow, no_usable_clips, require_dir, require_file

CLASS_NAMES = [
    "Church bell", "Male speech, man speaking", "Bark", "Fixed-wing aircraft, airplane", "Race car, auto racing",
    "Female speech, woman speaking", "Helicopter", "Violin, fiddle", "Flute", "Ukulele", "Frying (food)", "Truck",
    "Shofar", "Motorcycle", "Acoustic guitar", "Train horn", "Clock", "Banjo", "Goat", "Baby cry, infant cry",
    "Bus", "Chainsaw", "Cat", "Horse", "Toilet flush", "Rodents, rats, mice", "Accordion", "Mandolin",
]
SPLIT_FILES = {"train": "trainSet.txt", "val": "valSet.txt", "test": "testSet.txt"}


def parse_line(line: str) -> tuple[str, str, float, float]:
    """(category, video id, start, end) of a `Category&VideoID&Quality&Start&End` row, or ValueError."""
    parts = line.strip().split("&")
    if len(parts) != 5:
        raise ValueError(f"expected 5 '&'-separated fields, got {len(parts)}")
    cat, vid, _quality, start, end = (x.strip() for x in parts)
    s, e = float(start), float(end)
    if not e > s >= 0:
        raise ValueError(f"event window {s}..{e} is empty or negative")
    return cat, vid, s, e


@dataclass(frozen=True)
class _Annotation:
    """One parsed row of a split file."""

    split: str
    file: str                        # the split file's name, e.g. `trainSet.txt`
    line: int                        # 1-based
    category: str
    video: str
    start: float
    end: float


def _read_split(path: Path, split: str, ex: list[Exclusion]) -> list[_Annotation]:
    """The annotations of one split file; unparseable rows (other than a header) become exclusions."""
    out = []
    for i, line in enumerate(read_text(path).splitlines()):
        if not line.strip():
            continue
        try:
            cat, vid, s, e = parse_line(line)
        except ValueError as err:
            if i > 0:  # row 1 may be the header (Category&VideoID&Quality&StartTime&EndTime)
                ex.append(Exclusion(line.split("&")[1] if line.count("&") >= 1 else line[:40], path.name,
                                    f"bad row {i + 1} of {path.name}: {err}", kind="bad row"))
            continue
        out.append(_Annotation(split, path.name, i + 1, cat, vid, s, e))
    return out


def _shared_windows(annotations: list[_Annotation]) -> set[str]:
    """Window ids (`VideoID@Start-End`) that more than one known category annotates."""
    cats: dict[str, set[str]] = {}
    for a in annotations:
        if a.category in CLASS_NAMES:
            cats.setdefault(window_id(a.video, a.start, a.end), set()).add(a.category)
    return {w for w, c in cats.items() if len(c) > 1}


def build_manifest(root: str | Path) -> Manifest:
    """Manifest of an AVE folder (the AVE_Dataset folder holding AVE/ and the four .txt files)."""
    root = Path(root)
    require_dir(root, "AVE", "ave")
    vdir = require_dir(root / "AVE", "AVE videos (AVE/)", "ave")
    require_file(root / "Annotations.txt", "AVE Annotations.txt", "ave")
    videos, ambiguous = index_files(vdir, [".mp4"])
    ex: list[Exclusion] = []
    annotations = [a for split, name in SPLIT_FILES.items()
                   for a in _read_split(require_file(root / name, f"AVE {name}", "ave"), split, ex)]
    shared = _shared_windows(annotations)
    listed: list[Listed] = []
    for a in annotations:
        wid = window_id(a.video, a.start, a.end)
        cid = window_id(a.video, a.start, a.end, a.category if wid in shared else "")
        name = a.file
        if a.category not in CLASS_NAMES:
            ex.append(Exclusion(cid, name, f"unknown label {a.category!r} in {name}", kind="unknown label"))
        elif a.video in ambiguous:
            ex.append(Exclusion(cid, name, ambiguous_reason(ambiguous[a.video], vdir), kind="ambiguous id"))
        elif a.video not in videos:
            ex.append(Exclusion(cid, name, f"listed in {name} but absent on disk (AVE/{a.video}.mp4)",
                                kind="absent on disk"))
        else:
            y = CLASS_NAMES.index(a.category)
            row = ManifestRow(cid, str(videos[a.video]), "", y, a.category, a.split, a.start, a.end)
            listed.append(Listed(row, f"{name} row {a.line}"))
    rows = resolve_duplicates(listed, ex)
    if not rows:
        raise no_usable_clips("ave", f"no usable clip in {root}", ex)
    return Manifest("ave", list(CLASS_NAMES), rows, ex)
