"""The data report of a cache build: what was kept but deserves a look, printed and saved beside the cache.

Clips pass the decoder's checks (`mmgap.data.decode`) and still be poor training data: audio and video of
very different lengths (a wrong pairing, a cut export), a video with fewer distinct frames than the
protocol samples (frames repeated), audio much shorter than the protocol's window (tiled or zero-padded
to it), classes with few training clips or none, splits without a clip, files used by two clips. Each is
a warning (kept, not dropped): ``data_report.json`` (every case) and ``data_report.txt`` (the summary).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mmgap import atomic
from mmgap.data.manifest import SPLIT_CODES, SPLITS, ManifestRow
from mmgap.data.protocols import Protocol

REPORT_JSON = "data_report.json"
REPORT_TXT = "data_report.txt"


@dataclass(frozen=True)
class ReportLimits:
    """What the report flags (all warnings; nothing is dropped for them)."""

    max_duration_ratio: float = 1.5   # longer / shorter of a clip's audio and video durations
    min_audio_fill: float = 0.5       # audio shorter than this fraction of the protocol's duration
    min_train_clips: int = 5          # classes with fewer training clips than this
    max_class_ratio: float = 10.0     # largest / smallest class in the training split


DEFAULT_LIMITS = ReportLimits()


@dataclass
class DataReport:
    """Warnings of one build: ``cases`` (kind, clip or class, detail) and the limits that produced them."""

    dataset: str
    limits: ReportLimits = DEFAULT_LIMITS
    cases: list[dict[str, str]] = field(default_factory=list)

    def add(self, kind: str, item: str, detail: str) -> None:
        """One warning: `kind` groups it, `item` is the clip id or class, `detail` the numbers."""
        self.cases.append({"kind": kind, "item": item, "detail": detail})

    def summary(self, examples: int = 3) -> str:
        """One line per kind with its count and first examples (empty when nothing is flagged)."""
        by_kind: dict[str, list[dict[str, str]]] = defaultdict(list)
        for c in self.cases:
            by_kind[c["kind"]].append(c)
        lines = []
        for kind, cases in by_kind.items():
            shown = "; ".join(f"{c['item']}: {c['detail']}" for c in cases[:examples])
            more = f"; ... ({len(cases) - examples} more)" if len(cases) > examples else ""
            lines.append(f"  WARNING {len(cases)} x {kind} ({shown}{more})")
        return "\n".join(lines)

    def save(self, folder: Path) -> Path:
        """Write data_report.json (every case) and data_report.txt (the summary) into `folder`."""
        atomic.write_json(folder / REPORT_JSON, {"dataset": self.dataset, "limits": asdict(self.limits),
                                                 "warnings": len(self.cases), "cases": self.cases}, indent=1)
        text = (f"{self.dataset}: {len(self.cases)} warning(s)\n{self.summary(examples=10)}\n"
                if self.cases else f"{self.dataset}: no warnings\n")
        atomic.write_text(folder / REPORT_TXT, text)
        return folder / REPORT_TXT


def check_clips(report: DataReport, rows: list[ManifestRow], info: list[dict[str, Any]],
                protocol: Protocol) -> None:
    """Per kept clip: audio/video durations that disagree, too few distinct frames, too little audio."""
    lim, p = report.limits, protocol
    fill = "tiled" if p.audio.tile else "zero-padded"
    for r, i in zip(rows, info, strict=True):
        a, v, n = i.get("audio_s"), i.get("video_s"), i.get("video_frames")
        if a and v and max(a, v) / min(a, v) > lim.max_duration_ratio:
            report.add(f"audio and video durations differ by more than x{lim.max_duration_ratio:g}", r.clip_id,
                       f"audio {a:.2f} s, video {v:.2f} s")
        if n is not None and n < p.visual.frames_per_clip:
            report.add(f"fewer distinct frames than the {p.visual.frames_per_clip} sampled (repeated)", r.clip_id,
                       f"{n} frame(s) at {p.visual.fps:g} fps" + (f" in {v:.2f} s" if v else ""))
        if a and a < lim.min_audio_fill * p.audio.duration_s:
            report.add(f"audio under {lim.min_audio_fill:.0%} of the {p.audio.duration_s:g} s window ({fill})",
                       r.clip_id, f"{a:.2f} s {fill} to {p.audio.duration_s:g} s")
    used = Counter(f for r in rows for f in {r.video, r.audio} if f)
    for f, k in used.items():
        if k > 1:
            report.add("file used by several clips", Path(f).name, f"{k} clips")


def check_splits(report: DataReport, rows: list[ManifestRow], class_names: list[str],
                 split_codes: Any) -> None:
    """Per class and split: classes with few or no training clips, splits without clips, class imbalance."""
    lim = report.limits
    per = {s: Counter(r.label for r, c in zip(rows, split_codes, strict=True) if c == SPLIT_CODES[s]) for s in SPLITS}
    for s in SPLITS:
        if not sum(per[s].values()):
            report.add("empty split", s, "no clip (metrics on it are unavailable)")
    train = per["train"]
    for k, name in enumerate(class_names):
        n = train.get(k, 0)
        if n == 0:
            report.add("class with no training clip", name, "it cannot be learned; its test clips count as errors")
        elif n < lim.min_train_clips:
            report.add(f"class with fewer than {lim.min_train_clips} training clips", name, f"{n} clip(s)")
        if sum(per["test"].values()) and per["test"].get(k, 0) == 0:
            report.add("class with no test clip", name, "its accuracy is not measured")
    counts = [train.get(k, 0) for k in range(len(class_names)) if train.get(k, 0)]
    if counts and max(counts) / min(counts) > lim.max_class_ratio:
        report.add(f"training classes unbalanced beyond x{lim.max_class_ratio:g}", "train",
                   f"largest {max(counts)} clips, smallest {min(counts)}")
