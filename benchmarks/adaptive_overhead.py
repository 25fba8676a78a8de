"""The adaptive stage's extra work against one of its epochs, at the `demo` preset.

Issue 7 set a target of < 10 % of an epoch. The default refit is the paper's procedure, an eval-mode pass over
the whole training set (issue 10: fidelity is not traded for speed), which costs more than that; the cheaper
``gap_source="train"`` approximation meets it. Both are measured and reported.

At each refit (every `refit_every` adaptive epochs) the adaptive stage computes the modality gap of every
training clip (Eq. 5-7) and fits the two-component mixture (Eq. 8-9). This script warms a model up for one
epoch, then runs the adaptive stage (Eq. 11) with refits every epoch, twice:
- ``gap_source="eval"`` (the default, this code's reading of the paper's "modality gaps of all training
  samples", see `mmgap.method`): each refit is an eval-mode forward pass over the
  training set plus the mixture fit;
- ``gap_source="train"``: the gaps recorded during the previous epoch's training steps feed the refit (the
  first refit still makes the eval pass), so a refit is the mixture fit alone.
It reports the refit seconds against the training loop's seconds of an adaptive epoch (and against the whole
epoch with its val/test evaluation), and splits a refit into its gap pass and its mixture fit.

    python benchmarks/adaptive_overhead.py           # demo preset, embedded dataset (generated if missing)
    python benchmarks/adaptive_overhead.py --quick   # smoke preset on random data: seconds (the smoke test)

Writes ``runs/benchmarks/adaptive_overhead.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmgap import atomic
from mmgap.config import Preset, get_preset
from mmgap.data import FeatureCache, embedded_protocol, prepare
from mmgap.data.features import feature_shape
from mmgap.gap import compute_gap, zscore
from mmgap.losses import AdaptiveLossConfig
from mmgap.method import AdaptiveStrategy, WarmupStrategy
from mmgap.mixture import AmbiguousBalancedWarning, bic_single, fit_mixture
from mmgap.paths import runs_root
from mmgap.trainer import Trainer, resolve_device

TARGET = 0.10


def random_cache(preset: Preset, seed: int) -> FeatureCache:
    """A cache shaped like `preset`'s embedded dataset (counts, splits, feature shapes), random content."""
    e = preset.embedded
    proto = embedded_protocol(e)
    rng = np.random.default_rng(seed)
    n = e.n_clips
    audio = rng.standard_normal((n, *feature_shape(proto.audio))).astype(np.float16)
    frames = rng.integers(0, 256, (n, e.frames_per_clip, e.frame_size, e.frame_size, 3), dtype=np.uint8)
    labels = np.arange(n) % 10
    u = rng.random(n)
    val_edge = e.test_frac + (1 - e.test_frac) * preset.train.val_frac
    split = np.where(u < e.test_frac, 2, np.where(u < val_edge, 1, 0))
    return FeatureCache.from_arrays(audio, frames, labels, split.astype(np.int8), [str(d) for d in range(10)])


def refit_breakdown(tr: Trainer, cfg: AdaptiveLossConfig, family: str, seed: int) -> dict[str, float]:
    """Seconds of a refit's two parts: the eval-mode gap pass over the training set, and mixture fit + BIC."""
    t0 = time.perf_counter()
    out = tr.collect_outputs("train")
    g = compute_gap(cfg.gap, out["logit_a"], out["logit_v"], out["label"], dominant="audio")
    t1 = time.perf_counter()
    g_hat, _, _ = zscore(g)
    fit = fit_mixture(g_hat, family, seed=seed)
    fit.posterior(g_hat)
    bic_single(g_hat, family, seed=seed)
    t2 = time.perf_counter()
    return {"gap_pass_seconds": t1 - t0, "mixture_seconds": t2 - t1,
            "train_clips": int(out["label"].shape[0])}


def adaptive_epochs(tr: Trainer, preset: Preset, seed: int, gap_source: str,
                    epochs: int) -> list[dict[str, Any]]:
    """Run `epochs` adaptive epochs (refit every epoch) as their own stage; returns their history rows."""
    t = preset.train
    stage = f"adaptive_{gap_source}"
    strategy = AdaptiveStrategy(AdaptiveLossConfig.from_train_config(t), family=t.mixture, refit_every=1,
                                seed=seed, gap_source=gap_source)
    tr.fit(strategy, epochs, stage, reset_optimizer=True)
    return [r for r in tr.history if r["stage"] == stage]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--data", choices=["embedded", "random"], default="embedded",
                    help="the embedded dataset (generated and cached under data/ when missing) or random "
                         "content of the same shapes")
    ap.add_argument("--data-dir", default=None, help="where the embedded dataset lives (default: data/)")
    ap.add_argument("--epochs", type=int, default=2, help="adaptive epochs per gap source (>= 2)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default: torch's own); 1 gives steadier figures on a busy machine")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="smoke preset, random data: seconds (smoke test)")
    ap.add_argument("--out", default=None, help="JSON file (default: <runs>/benchmarks/adaptive_overhead.json)")
    args = ap.parse_args(argv)
    if args.epochs < 2:
        ap.error(f"--epochs must be >= 2: the 'train' gap source needs an epoch of recorded gaps "
                 f"(got {args.epochs})")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Warm up, run both gap sources, print the overhead table and write the JSON."""
    args = parse_args(argv)
    device = resolve_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    preset_name, data = ("smoke", "random") if args.quick else ("demo", args.data)
    preset = get_preset(preset_name)
    t0 = time.perf_counter()
    cache = prepare("embedded", args.data_dir, preset, progress=False) if data == "embedded" else \
        random_cache(preset, args.seed)
    print(f"{preset_name} preset, {data} data: {len(cache.labels)} clips {cache.counts()}, ready in "
          f"{time.perf_counter() - t0:.1f} s; device {device}", flush=True)
    cfg = AdaptiveLossConfig.from_train_config(preset.train)
    # After one warm-up epoch the gaps need not be bimodal yet; the mixture's "ambiguous balanced component"
    # warning is about the method's readiness, not this timing, so it is silenced here.
    warnings.filterwarnings("ignore", category=AmbiguousBalancedWarning)
    with tempfile.TemporaryDirectory(prefix="mmgap_overhead_") as tmp:
        tr = Trainer(cache, preset, tmp, seed=args.seed, device=device, fast_path=True, progress=False)
        tr.fit(WarmupStrategy(), 1, "warmup")
        sources: dict[str, Any] = {}
        for source in ("eval", "train"):
            rows = adaptive_epochs(tr, preset, args.seed, source, args.epochs)
            # "eval": every refit is the full one; "train": the first refit has no recorded gaps yet, skip it
            kept = rows if source == "eval" else rows[1:]
            train_s = float(np.mean([r["train_seconds"] for r in kept]))
            epoch_s = float(np.mean([r["seconds"] - r["refit_seconds"] for r in kept]))
            refit_s = float(np.mean([r["refit_seconds"] for r in kept]))
            sources[source] = {
                "refit_seconds": refit_s,
                "train_seconds_per_epoch": train_s,
                "epoch_seconds_with_eval": epoch_s,
                "overhead_vs_training": refit_s / train_s,
                "overhead_vs_epoch": refit_s / epoch_s,
                "epochs_measured": len(kept),
                "refit_gap_source_used": [r.get("gap_source") for r in kept],
            }
        parts = refit_breakdown(tr, cfg, preset.train.mixture, args.seed)
    result: dict[str, Any] = {
        "benchmark": "adaptive_overhead", "quick": args.quick, "preset": preset_name, "data": data,
        "device": str(device), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "python": platform.python_version(), "target": TARGET,
        "preset_gap_source": getattr(preset.train, "gap_source", None),
        "sources": sources, "refit_parts": parts,
    }
    print(f"\n{'gap source':10s} {'refit s':>8s} {'train s/epoch':>14s} {'overhead':>9s} "
          f"{'(vs epoch+eval)':>16s}  target")
    default = getattr(preset.train, "gap_source", "eval")
    for source, r in sources.items():
        ok = "ok" if r["overhead_vs_training"] < TARGET else "over (kept: the paper's procedure)" \
            if source == "eval" else "MISSED"
        name = f"{source}*" if source == default else source
        print(f"{name:10s} {r['refit_seconds']:8.3f} {r['train_seconds_per_epoch']:14.3f} "
              f"{100 * r['overhead_vs_training']:8.1f}% {100 * r['overhead_vs_epoch']:15.1f}%  "
              f"< {100 * TARGET:.0f} % "
              f"{ok}")
    print(f"(* the preset's default, TrainConfig.gap_source = {default!r})")
    print(f"a refit's parts: gap pass over {parts['train_clips']} training clips "
          f"{parts['gap_pass_seconds']:.3f} s, "
          f"mixture fit + BIC {parts['mixture_seconds']:.3f} s")
    out = Path(args.out) if args.out else runs_root() / "benchmarks" / "adaptive_overhead.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
