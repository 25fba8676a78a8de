"""The memory plan against a `meta`-device measurement at each dataset's paper size (issue 23).

For CREMA-D, AVE and Kinetics-Sounds at the paper's sizes, shapes and preset (`paper`, batch 64, bf16 as on
a GPU of compute capability 8.0 or later), with no memory used: a `mmgap.device.MetaCache` of the dataset's
size feeds a real `Trainer` on the ``meta`` device, which builds the batchers a run builds, in the order it
builds them, and one training step measures weights, gradients and optimizer state.

- plan: `mmgap.device.plan_memory` (what the trainer uses to choose the data path);
- old check: the feature cache's bytes (audio float16 + frames), what "fits on the GPU" compared before;
- training stage: batchers of a stage (train, val, test) plus the adaptive stage's refit pass;
- fine-tune (Table VII, τ = 0): the selection's refit pass over the whole training split, then the stage on
  the subset; "never freed" keeps every batcher a run built, as the trainer did before issue 23.

    python benchmarks/memory_plan.py            # prints the Markdown table, writes <runs>/benchmarks/memory_plan.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import torch

from mmgap.config import get_preset
from mmgap.data.features import feature_shape
from mmgap.data.protocols import AVE, CREMA_D, KINETICS_SOUNDS, Protocol
from mmgap.device import GIB, MetaCache, resident_bytes
from mmgap.paths import runs_root
from mmgap.trainer import Trainer

DATASETS: dict[str, tuple[Protocol, tuple[int, int, int], int]] = {
    # (protocol, (train, val, test) clips, classes): data/README.md and the paper's section IV-A
    "CREMA-D": (CREMA_D, (6028, 670, 744), 6),          # 6,698 train+val (9:1), 744 test
    "AVE": (AVE, (3339, 402, 402), 28),                  # the official split
    "Kinetics-Sounds": (KINETICS_SOUNDS, (15000, 1900, 1900), 31),  # 15k / 1.9k / 1.9k
}


def meta_trainer(protocol: Protocol, sizes: tuple[int, int, int], classes: int, precision: str = "bf16") -> Trainer:
    """A paper-preset Trainer on the meta device over a MetaCache of the dataset's size and stored shapes."""
    v = protocol.visual
    cache = MetaCache(sizes, feature_shape(protocol.audio), (v.frames_per_clip, v.frame_size, v.frame_size, 3),
                      classes)
    return Trainer(cache, get_preset("paper"), tempfile.mkdtemp(prefix="mmgap_meta_"), device=torch.device("meta"),
                   progress=False, precision=precision)


def measured_model(tr: Trainer) -> int:
    """Weights, gradients, optimizer state and buffers after one meta training step."""
    m = tr.preset.model
    audio = torch.empty(2, 1, *tr.cache.audio.shape[1:], device="meta")
    frames = torch.empty(2, m.num_frames, 3, m.image_size, m.image_size, device="meta")
    tr.model(audio, frames).fused.sum().backward()
    tr.optimizer.step()
    tensors = [*tr.model.parameters(), *(p.grad for p in tr.model.parameters() if p.grad is not None),
               *tr.model.buffers(), *(v for s in tr.optimizer.state.values() for v in s.values()
                                      if isinstance(v, torch.Tensor))]
    return resident_bytes(tensors)


def measure(name: str) -> dict[str, Any]:
    """Plan and meta measurements of one dataset."""
    protocol, sizes, classes = DATASETS[name]
    tr = meta_trainer(protocol, sizes, classes)
    plan = tr.memory_plan
    assert plan is not None
    old_check = tr.cache.audio.nbytes + tr.cache.frames.nbytes
    held = lambda: resident_bytes(tr._batchers.values())  # noqa: E731
    for split, train in (("train", True), ("val", False), ("test", False), ("train", False)):
        tr.batches(split, train=train)
    stage = held()
    subset = tr.cache.indices("train")  # τ = 0 keeps every training clip, as a subset
    tr.release_batchers()  # the end of the warm-up stage
    tr.batches("train", train=False)  # the fine-tune's selection (a refit over the whole training split)
    before_stage = held()
    tr.release_batchers(keep_train_rows=subset)  # Trainer.fit, at the fine-tune's start
    for split, train, idx in (("train", True, subset), ("val", False, None), ("test", False, None)):
        tr.batches(split, train=train, indices=idx)
    finetune = max(before_stage, held())
    never_freed = stage + resident_bytes([b for k, b in tr._batchers.items() if k[0] == "train"])  # old: both kept
    return {"dataset": name, "clips": sum(sizes), "old_check": old_check, "plan_data": plan.data,
            "stage_data": stage, "finetune_data": finetune, "finetune_never_freed": never_freed,
            "plan_model": plan.model, "model": measured_model(tr), "activations": plan.activations,
            "plan_total": plan.total, "measured_total": max(stage, finetune) + measured_model(tr) + plan.activations}


def markdown(rows: list[dict[str, Any]]) -> str:
    """The table of the closing note (GiB)."""
    g = lambda b: f"{b / GIB:.2f}"  # noqa: E731
    out = ["| dataset | clips | old check (cache bytes) | plan: data | meta: training stage | meta: fine-tune "
           "(τ = 0) | fine-tune, never freed (before) | plan: model / meta | activations, bf16 (meta) | "
           "plan total | meta total |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['dataset']} | {r['clips']:,} | {g(r['old_check'])} | {g(r['plan_data'])} | "
                   f"{g(r['stage_data'])} ({r['stage_data'] / r['old_check']:.2f}× old) | {g(r['finetune_data'])} | "
                   f"{g(r['finetune_never_freed'])} ({r['finetune_never_freed'] / r['old_check']:.2f}× old) | "
                   f"{g(r['plan_model'])} / {g(r['model'])} | {g(r['activations'])} | {g(r['plan_total'])} | "
                   f"{g(r['measured_total'])} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Measure every dataset, print the table and write the JSON."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--datasets", default=",".join(DATASETS), help=f"comma-separated, of {', '.join(DATASETS)}")
    ap.add_argument("--out", default=None, help="JSON path (default: <runs>/benchmarks/memory_plan.json)")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    bad = [n for n in names if n not in DATASETS]
    if bad:
        ap.error(f"unknown dataset(s) {bad}; choose from {', '.join(DATASETS)}")
    rows = [measure(n) for n in names]
    print(markdown(rows))
    out = Path(args.out) if args.out else runs_root() / "benchmarks" / "memory_plan.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {out}")
    return rows


if __name__ == "__main__":
    main()
