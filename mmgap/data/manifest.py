"""Manifests (one row a clip) and exclusion lists (skipped clips with the reason), both as CSV."""

from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from mmgap.atomic import atomic_open

SPLITS = ("train", "val", "test")
TIERS = ("clean", "hard", "corrupt")
"""Ground-truth visual tiers of the embedded dataset (``ManifestRow.visual_tier``; see mmgap.data.embedded)."""
SPLIT_CODES = {name: i for i, name in enumerate(SPLITS)}
README_HINT = "see data/README.md for how to obtain the dataset and the expected layout"


class DataError(ValueError):
    """A dataset folder, file or argument is unusable; the message says which and what to do."""


@dataclass
class ManifestRow:
    """One clip: where its video and audio live, its label and split, an optional event window."""

    clip_id: str
    video: str                       # path of the video file ("" when the clip has no video file)
    audio: str                       # path of a separate audio file ("" -> the video's audio track)
    label: int
    label_name: str
    split: str                       # "train" | "val" | "test"
    start: float | None = None       # event window in seconds (AVE), else None
    end: float | None = None
    imbalanced: bool | None = None   # embedded dataset only: ground truth, visual_tier != "clean"
    visual_tier: str = ""            # embedded dataset only: "clean" | "hard" | "corrupt" ("" elsewhere)


@dataclass
class Exclusion:
    """A clip left out, with the file, the reason and the reason's kind (written to exclusions.csv)."""

    clip_id: str
    path: str
    reason: str
    kind: str = ""                   # what summaries group by (`bad row`); "" -> `reason_kind(reason)`

    def __post_init__(self) -> None:
        self.kind = self.kind or reason_kind(self.reason)


@dataclass
class Manifest:
    """The clips of one dataset with their class names; `exclusions` lists what was skipped and why."""

    dataset: str
    class_names: list[str]
    rows: list[ManifestRow] = field(default_factory=list)
    exclusions: list[Exclusion] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def num_classes(self) -> int:
        """Number of classes (length of `class_names`)."""
        return len(self.class_names)

    def counts(self) -> dict[str, int]:
        """Clips per split."""
        c = Counter(r.split for r in self.rows)
        return {s: c.get(s, 0) for s in SPLITS}

    def summary(self) -> str:
        """One line: clips per split, classes and skipped clips."""
        c = self.counts()
        return (f"{self.dataset}: {len(self)} clips (train {c['train']}, val {c['val']}, test {c['test']}), "
                f"{self.num_classes} classes, {len(self.exclusions)} skipped")

    def to_csv(self, path: str | Path) -> Path:
        """Write the rows as CSV (class names are recoverable from label/label_name)."""
        path = Path(path)
        names = [f.name for f in fields(ManifestRow)]
        with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=names)
            w.writeheader()
            for r in self.rows:
                w.writerow({k: ("" if v is None else v) for k, v in asdict(r).items()})
        return path

    @classmethod
    def from_csv(cls, path: str | Path, dataset: str, class_names: list[str]) -> Manifest:
        """Read rows written by `to_csv`."""
        rows = []
        with open(path, newline="", encoding="utf-8-sig") as fh:
            for d in csv.DictReader(fh):
                rows.append(ManifestRow(
                    clip_id=d["clip_id"], video=d["video"], audio=d["audio"], label=int(d["label"]),
                    label_name=d["label_name"], split=d["split"],
                    start=_opt_float(d.get("start")), end=_opt_float(d.get("end")),
                    imbalanced=_opt_bool(d.get("imbalanced")),
                    visual_tier=(d.get("visual_tier") or "").strip(),
                ))
        return cls(dataset=dataset, class_names=class_names, rows=rows)


def _opt_float(v: str | None) -> float | None:
    return None if v in (None, "") else float(v)


def _opt_bool(v: str | None) -> bool | None:
    return None if v in (None, "") else v.strip().lower() in ("1", "true", "yes")


def write_exclusions(path: str | Path, exclusions: list[Exclusion]) -> Path:
    """Write `clip_id,path,reason,kind` rows (header always present, so an empty file means none skipped)."""
    path = Path(path)
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["clip_id", "path", "reason", "kind"])
        for e in exclusions:
            w.writerow([e.clip_id, e.path, e.reason, e.kind])
    return path


def read_exclusions(path: str | Path) -> list[Exclusion]:
    """Read an exclusions CSV written by `write_exclusions` (without a kind column: the default kinds)."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        return [Exclusion(d["clip_id"], d["path"], d["reason"], d.get("kind") or "")
                for d in csv.DictReader(fh)]


def reason_kind(reason: str) -> str:
    """The default kind of a reason: its text before the first `:`, `(` or `;`, with numbers and quoted names
    generalised (`bad row 11 of x.txt` -> `bad row # of x.txt`), so reasons that differ only in them group."""
    head = re.split(r"[:(;]", reason, maxsplit=1)[0].strip() or reason
    head = re.sub(r"'[^']*'|\"[^\"]*\"", "'...'", head)
    return re.sub(r"\d+(?:\.\d+)?", "#", head)


def summarise_reasons(exclusions: list[Exclusion], top: int = 3) -> str:
    """The `top` most frequent kinds of skip reason, one line each: count, one full example and its clip."""
    kinds = Counter(e.kind for e in exclusions)
    lines = []
    for kind, n in kinds.most_common(top):
        ex = next(e for e in exclusions if e.kind == kind)
        lines.append(f"  {n} x {ex.reason} (e.g. {ex.clip_id}: {ex.path})")
    if len(kinds) > top:
        lines.append(f"  ... and {sum(kinds.values()) - sum(n for _, n in kinds.most_common(top))} more of "
                     f"{len(kinds) - top} other kind(s)")
    return "\n".join(lines)


class NoUsableClips(DataError):
    """No clip of a dataset can be used; `exclusions` says why for each one."""

    def __init__(self, message: str, dataset: str, headline: str, exclusions: list[Exclusion]):
        super().__init__(message)
        self.dataset, self.headline, self.exclusions = dataset, headline, exclusions


def no_usable_clips(dataset: str, headline: str, exclusions: list[Exclusion],
                    written_to: Path | None = None) -> NoUsableClips:
    """The error for a dataset with nothing usable: what happened, the main skip reasons, and where every
    skipped clip is listed (`headline` e.g. "no usable clip in data/ave")."""
    lines = [f"{dataset}: {headline} ({len(exclusions)} skipped)."]
    if exclusions:
        lines += ["Main reasons:", summarise_reasons(exclusions)]
    if written_to is not None:
        lines.append(f"Every skipped clip and its reason: {written_to}.")
    lines.append(f"Fix the files or lists named above; {README_HINT}.")
    return NoUsableClips("\n".join(lines), dataset, headline, exclusions)


def require_dir(path: Path, what: str, dataset: str) -> Path:
    """`path` if it is a folder, else a DataError saying where to put the dataset."""
    if not path.is_dir():
        raise DataError(f"{dataset}: {what} folder not found at {path}. Put the dataset there (or pass "
                        f"data_dir=...); {README_HINT}.")
    return path


def require_file(path: Path, what: str, dataset: str) -> Path:
    """`path` if it is a file, else a DataError naming it."""
    if not path.is_file():
        raise DataError(f"{dataset}: {what} not found at {path}; {README_HINT}.")
    return path
