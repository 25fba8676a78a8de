"""One training epoch at the paper's shapes on CREMA-D-sized random data, with its evaluation and a refit:
seconds, samples/s, GPU busy, resident memory against the plan (issues 7 and 23).

The data are random but shaped like the paper's CREMA-D protocol (6,028 training, 670 validation and 744 test
clips, spectrograms 257 x 188, 3 stored frames of 256 x 256 from which the model sees 224 x 224 crops, 6
classes), held in an in-memory `FeatureCache` and fed by the trainer's fast path (`Trainer.batches` ->
`TensorBatcher`). The step is the trainer's warm-up step (Eq. 10) with everything the trainer does on CUDA:
the precision `mmgap.device.choose_precision` picks (bf16 autocast from compute capability 8.0), channels-last,
no host synchronisation in the step, optional ``torch.compile`` (``--compile``). After ``--warmup-steps``
untimed steps (cuDNN autotuning, compilation) one full epoch is timed, then the epoch's evaluation (val and
test, `Trainer.evaluate`) and one refit of the adaptive stage (the eval-mode gap pass over the training set
and the mixture fit, `AdaptiveStrategy.refit`); then ``--profile-steps`` steps run under torch.profiler and
the GPU busy fraction is the union of the GPU's kernel and memcpy intervals divided by that window's wall
time. On CUDA the peak allocated memory is set against `Trainer.memory_plan`.

    python benchmarks/gpu_epoch.py                   # on a GPU: the whole epoch (6,028 clips)
    python benchmarks/gpu_epoch.py --compile         # the same with torch.compile
    python benchmarks/gpu_epoch.py --quick           # tiny shapes on any device, seconds (the smoke test)

Without a GPU it says so and runs the same code on the CPU with 64 training clips (``--clips`` to change): on
a CPU the paper's shapes run at about 2 samples per second. Writes ``runs/benchmarks/gpu_epoch.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmgap import atomic
from mmgap.config import get_preset
from mmgap.data.cache import FeatureCache
from mmgap.data.features import feature_shape
from mmgap.data.protocols import CREMA_D
from mmgap.losses import AdaptiveLossConfig
from mmgap.method import AdaptiveStrategy, WarmupStrategy
from mmgap.paths import runs_root
from mmgap.trainer import Trainer, resolve_device

CREMA_D_CLIPS = 6028
"""CREMA-D's training clips: 6,698 train + val split 9:1 (the paper), 744 test."""
CREMA_D_EVAL = (670, 744)
CREMA_D_CLASSES = 6
CPU_DEFAULT_CLIPS = 64


def union_seconds(intervals: Iterable[tuple[float, float]]) -> float:
    """Total length covered by possibly overlapping [start, end] intervals (kernels on several streams overlap)."""
    total, cur_start, cur_end = 0.0, None, None
    for start, end in sorted(intervals):
        if cur_end is None or start > cur_end:
            if cur_end is not None:
                total += cur_end - cur_start
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    if cur_end is not None:
        total += cur_end - cur_start
    return total


def device_intervals_us(prof: torch.profiler.profile) -> list[tuple[float, float]]:
    """[start, end] in microseconds of every event the profiler recorded on the GPU (kernels, memcpy, memset)."""
    from torch.autograd import DeviceType

    out = []
    for evt in prof.events():
        if evt.device_type == DeviceType.CUDA and evt.time_range.end > evt.time_range.start:
            out.append((float(evt.time_range.start), float(evt.time_range.end)))
    return out


def random_cache(n_clips: int, frame_size: int, audio_shape: tuple[int, int], seed: int,
                 n_eval: tuple[int, int] = (0, 0)) -> FeatureCache:
    """A CREMA-D-shaped cache of random content: `n_clips` training clips, then (val, test) = `n_eval`."""
    n = n_clips + sum(n_eval)
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (n, CREMA_D.visual.frames_per_clip, frame_size, frame_size, 3),
                           dtype=torch.uint8, generator=g).numpy()
    audio = (torch.randn((n, *audio_shape), generator=g) * 2 - 4).to(torch.float16).numpy()
    labels = np.arange(n) % CREMA_D_CLASSES
    split = np.repeat(np.arange(3, dtype=np.int8), (n_clips, *n_eval))
    return FeatureCache.from_arrays(audio, frames, labels, split, [f"class{c}" for c in range(CREMA_D_CLASSES)])


def eval_and_refit(tr: Trainer, sync: Any) -> tuple[float, float]:
    """Seconds of the epoch's evaluation (val and test) and of one eval-mode refit (gap pass + mixture fit)."""
    import warnings

    t0 = time.perf_counter()
    for split in ("val", "test"):
        tr.evaluate(split)
    sync()
    eval_s = time.perf_counter() - t0
    strategy = AdaptiveStrategy(AdaptiveLossConfig.from_train_config(tr.preset.train), seed=tr.seed)
    strategy.setup(tr)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random labels: the mixture may call its balanced component ambiguous
        strategy.refit(tr, 0)
    sync()
    return eval_s, time.perf_counter() - t0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=None,
                    help=f"clips in the epoch (default: {CREMA_D_CLIPS} on a GPU, {CPU_DEFAULT_CLIPS} on a CPU)")
    ap.add_argument("--device", default="auto", help="'auto' (CUDA when available), 'cuda' or 'cpu'")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (CUDA only, as the trainer does)")
    ap.add_argument("--warmup-steps", type=int, default=None,
                    help="untimed steps before the timed epoch (default: 10 on a GPU, 1 on a CPU)")
    ap.add_argument("--profile-steps", type=int, default=20, help="steps profiled for the GPU busy fraction (0: skip)")
    ap.add_argument("--quick", action="store_true", help="tiny shapes and 16 clips: seconds on any device")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="JSON path (default: <runs>/benchmarks/gpu_epoch.json)")
    args = ap.parse_args(argv)
    if args.clips is not None and args.clips < 2:
        ap.error(f"--clips must be >= 2 (got {args.clips})")
    if (args.warmup_steps is not None and args.warmup_steps < 0) or args.profile_steps < 0:
        ap.error("--warmup-steps and --profile-steps must be >= 0")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Time one epoch (and profile a window of steps on CUDA); print and write the figures."""
    args = parse_args(argv)
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    if not cuda:
        print("No CUDA GPU visible: running the same epoch on the CPU. The GPU busy fraction does not apply, and at "
              "the paper's shapes a CPU manages about 2 samples/s, so the epoch is cut to "
              f"{args.clips or CPU_DEFAULT_CLIPS} clips (--clips to change). Run this on a GPU for the real figures.",
              flush=True)
    preset = get_preset("paper", compile=bool(args.compile))
    frame_size, audio_shape = CREMA_D.visual.frame_size, feature_shape(CREMA_D.audio)
    n_clips = args.clips or (CREMA_D_CLIPS if cuda else CPU_DEFAULT_CLIPS)
    warmup_steps = args.warmup_steps if args.warmup_steps is not None else (10 if cuda else 1)
    n_eval = CREMA_D_EVAL if cuda and args.clips is None else (max(2, n_clips // 8),) * 2
    profile_steps = args.profile_steps
    if args.quick:
        preset = preset.with_overrides(width=4, image_size=32, batch_size=8)
        frame_size, audio_shape = 40, (33, 24)
        n_clips, warmup_steps, profile_steps = args.clips or 16, 1, min(profile_steps, 2)
        n_eval = (4, 4)
    batch = preset.train.batch_size
    if n_clips < batch:
        raise SystemExit(f"--clips {n_clips} is smaller than one batch ({batch}): use at least {batch} clips")

    t0 = time.perf_counter()
    cache = random_cache(n_clips, frame_size, audio_shape, args.seed, n_eval)
    print(f"random CREMA-D-shaped cache: {n_clips} training + {n_eval[0]} val + {n_eval[1]} test clips, "
          f"frames {cache.frames.shape[1:]}, audio "
          f"{cache.audio.shape[1:]}, {(cache.frames.nbytes + cache.audio.nbytes) / 2**30:.2f} GiB, built in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)

    with tempfile.TemporaryDirectory(prefix="mmgap_gpu_epoch_") as tmp:
        tr = Trainer(cache, preset, tmp, seed=args.seed, device=device, fast_path=True, progress=False)
        strategy = WarmupStrategy()
        strategy.setup(tr)
        tr._maybe_compile()  # what Trainer.fit does before its first epoch (torch.compile when asked, on CUDA)
        tr.model.train()

        def run_steps(limit: int | None) -> int:
            """The trainer's epoch-loop body over one pass of the training batches (at most `limit` steps)."""
            n = 0
            for b in tr.batches("train", train=True):
                tr.optimizer.zero_grad(set_to_none=True)
                loss, _ = strategy.training_step(tr, b, 0)
                loss.backward()
                strategy.after_backward(tr, 0)
                tr.optimizer.step()
                n += int(b["label"].shape[0])
                if limit is not None and n >= limit * batch:
                    break
            return n

        def sync() -> None:
            if cuda:
                torch.cuda.synchronize(device)

        t0 = time.perf_counter()
        if warmup_steps:
            run_steps(warmup_steps)
        sync()
        warmup_s = time.perf_counter() - t0
        tr.epoch += 1
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        samples = run_steps(None)
        sync()
        epoch_s = time.perf_counter() - t0
        print(f"epoch: {samples} samples in {epoch_s:.2f} s = {samples / epoch_s:.1f} samples/s "
              f"(after {warmup_steps} warm-up steps, {warmup_s:.1f} s)", flush=True)

        eval_s, refit_s = eval_and_refit(tr, sync)
        print(f"evaluation (val + test, {sum(n_eval)} clips) {eval_s:.2f} s; refit (gap pass over {n_clips} clips + "
              f"mixture) {refit_s:.2f} s; epoch with both {epoch_s + eval_s + refit_s:.2f} s", flush=True)
        peak = torch.cuda.max_memory_allocated(device) if cuda else None
        plan = tr.memory_plan

        busy: float | None = None
        window_s = None
        if cuda and profile_steps:
            from torch.profiler import ProfilerActivity, profile

            tr.epoch += 1
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                sync()
                t1 = time.perf_counter()
                run_steps(profile_steps)
                sync()
                window_s = time.perf_counter() - t1
            busy = union_seconds(device_intervals_us(prof)) * 1e-6 / window_s
            print(f"GPU busy {100 * busy:.1f} % of {window_s:.2f} s over {profile_steps} profiled steps", flush=True)

    result: dict[str, Any] = {
        "benchmark": "gpu_epoch",
        "quick": args.quick,
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if cuda else None,
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "clips": n_clips,
        "batch_size": batch,
        "shapes": {"frames": list(cache.frames.shape[1:]), "audio": list(cache.audio.shape[1:]),
                   "model": dataclasses.asdict(preset.model)},
        "compile": bool(args.compile and cuda),
        "amp_dtype": str(tr.amp_dtype),
        "warmup_steps": warmup_steps,
        "warmup_seconds": warmup_s,
        "seconds_per_epoch": epoch_s,
        "samples_per_s": samples / epoch_s,
        "samples": samples,
        "gpu_busy_fraction": busy,
        "profile_window_s": window_s,
        "profile_steps": profile_steps if busy is not None else 0,
        "eval_clips": list(n_eval),
        "eval_seconds": eval_s,
        "refit_seconds": refit_s,
        "seconds_per_epoch_with_eval_and_refit": epoch_s + eval_s + refit_s,
        "precision": tr.precision_note,
        "data_device": str(tr.data_device),
        "peak_gpu_memory_gib": peak / 2**30 if peak is not None else None,
        "plan_gib": {"data": plan.data / 2**30, "model": plan.model / 2**30, "activations": plan.activations / 2**30,
                     "total": plan.total / 2**30} if plan is not None else None,
    }
    print(f"\n{'device':10s} {'clips':>6s} {'s/epoch':>9s} {'+eval+refit':>12s} {'samples/s':>10s} {'GPU busy':>9s}")
    print(f"{str(device):10s} {n_clips:6d} {epoch_s:9.2f} {epoch_s + eval_s + refit_s:12.2f} {samples / epoch_s:10.1f} "
          f"{'n/a' if busy is None else f'{100 * busy:.1f} %':>9s}")
    if peak is not None and plan is not None:
        print(f"memory: peak allocated {peak / 2**30:.2f} GiB, plan {plan.describe()}")
    out = Path(args.out) if args.out else runs_root() / "benchmarks" / "gpu_epoch.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
