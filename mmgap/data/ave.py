"""AVE: `AVE/*.mp4` + `Annotations.txt`, `trainSet.txt`, `valSet.txt`, `testSet.txt` (official splits).

Rows are `Category&VideoID&Quality&Start&End` (seconds); the event window [Start, End) cuts the audio and
bounds the frames. A sample is one annotation, so its id is the video plus its window (`VideoID@Start-End`,
`identity.window_id`): a video annotated with two events gives two samples. 28 classes in the order of the
original AVE code.
"""

from __future__ import annotations

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


def build_manifest(root: str | Path) -> Manifest:
    """Manifest of an AVE folder (the AVE_Dataset folder holding AVE/ and the four .txt files)."""
    root = Path(root)
    require_dir(root, "AVE", "ave")
    vdir = require_dir(root / "AVE", "AVE videos (AVE/)", "ave")
    require_file(root / "Annotations.txt", "AVE Annotations.txt", "ave")
    videos, ambiguous = index_files(vdir, [".mp4"])
    ex: list[Exclusion] = []
    listed: list[Listed] = []
    for split, name in SPLIT_FILES.items():
        path = require_file(root / name, f"AVE {name}", "ave")
        for i, line in enumerate(read_text(path).splitlines()):
            if not line.strip():
                continue
            try:
                cat, vid, s, e = parse_line(line)
            except ValueError as err:
                if i == 0:  # header row (Category&VideoID&Quality&StartTime&EndTime)
                    continue
                ex.append(Exclusion(line.split("&")[1] if line.count("&") >= 1 else line[:40], name,
                                    f"bad row {i + 1} of {name}: {err}"))
                continue
            cid = window_id(vid, s, e)
            if cat not in CLASS_NAMES:
                ex.append(Exclusion(cid, name, f"unknown label {cat!r} in {name}"))
            elif vid in ambiguous:
                ex.append(Exclusion(cid, name, ambiguous_reason(ambiguous[vid], vdir)))
            elif vid not in videos:
                ex.append(Exclusion(cid, name, f"listed in {name} but absent on disk (AVE/{vid}.mp4)"))
            else:
                row = ManifestRow(cid, str(videos[vid]), "", CLASS_NAMES.index(cat), cat, split, s, e)
                listed.append(Listed(row, f"{name} row {i + 1}"))
    rows = resolve_duplicates(listed, ex)
    if not rows:
        raise no_usable_clips("ave", f"no usable clip in {root}", ex)
    return Manifest("ave", list(CLASS_NAMES), rows, ex)
