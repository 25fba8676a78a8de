"""mmgap's fast data path against the field's per-item reference pipeline, same data, same machine (issue 7).

The reference pipeline is built here the way the field's public code (OGM-GE and its descendants) feeds a
model: per item, JPEG frames are listed and read from disk and decoded with PIL, each frame goes through
torchvision's RandomResizedCrop + flip + ToTensor + Normalize, the waveform is read and its spectrogram
computed on the fly (the protocol's own feature function: OGM-GE's log-STFT 512 / 353 at the paper's shapes),
and a DataLoader with worker processes collates the items. mmgap's path is the trainer's own: the same clips
in an in-memory `FeatureCache`, batches from `Trainer.batches` (the `TensorBatcher` fast path: gathered by
index, frame sampling / crop / flip done on the batch). Both feed the same training step (the trainer's
warm-up step, Eq. 10) on identically initialised models.

Measured in one run, with warm-up batches before timing and the best of ``--repeats`` alternating rounds:
  (1) the data path alone, samples per second delivered, at the paper's shapes (3 frames of 224 x 224,
      spectrogram 257 x 188, batch 64): target >= 10x. The reference decodes the source frames (CREMA-D's
      480 x 360), as the field's code does; (1b) repeats it with JPEGs already at the cache's 224 x 224;
  (2) whole training steps at the `demo` preset's shapes: target >= 1.5x;
  (3) whole training steps at the paper's shapes (ResNet-18 of width 64, arithmetic-bound on a CPU: a ratio
      near 1 is expected there; on a GPU this is the ratio that matters).

    python benchmarks/train_throughput.py            # the full measurement (several minutes on 2 cores)
    python benchmarks/train_throughput.py --quick    # tiny shapes, seconds: the smoke test's mode

Prints a table and writes ``runs/benchmarks/train_throughput.json`` (under ``$MMGAP_RUNS_DIR`` when set).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, RandomSampler
from torchvision import transforms as T

from mmgap import atomic
from mmgap.config import Preset, get_preset
from mmgap.data.cache import FeatureCache
from mmgap.data.features import audio_features, feature_shape
from mmgap.data.protocols import CREMA_D, Protocol, embedded_protocol
from mmgap.method import WarmupStrategy
from mmgap.paths import runs_root
from mmgap.trainer import Trainer, resolve_device

Batch = dict[str, torch.Tensor]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CREMA_D_VIDEO_SIZE = (480, 360)  # (W, H) of CREMA-D's VideoFlash clips: the frames the field's code decodes


@dataclass(frozen=True)
class Setup:
    """What both pipelines agree on: the preset (model width, input shapes, batch) and the data protocol."""

    name: str              # "paper" | "demo"
    preset: Preset         # model.width / num_frames / image_size, train.batch_size
    protocol: Protocol     # stored frames (count, size) and the audio feature (rate, length, STFT / log-mel)
    n_clips: int           # clips written to disk and held in the cache
    num_classes: int
    clip_seconds: float    # length of the written waveforms (the feature tiles / pads to the protocol's)
    source_size: tuple[int, int] | None = None  # (W, H) of the source video frames; None: the stored size

    @property
    def batch_size(self) -> int:
        """Batch size of both pipelines."""
        return self.preset.train.batch_size

    def describe(self) -> dict[str, Any]:
        """Plain-JSON summary of the shapes (for the results file)."""
        m, v = self.preset.model, self.protocol.visual
        return {"name": self.name, "n_clips": self.n_clips, "batch_size": self.batch_size, "width": m.width,
                "num_frames": m.num_frames, "image_size": m.image_size, "stored_frames": v.frames_per_clip,
                "stored_frame_size": v.frame_size, "audio_feature": list(feature_shape(self.protocol.audio)),
                "audio_protocol": dataclasses.asdict(self.protocol.audio), "clip_seconds": self.clip_seconds,
                "source_frame_size": list(self.source_size or (v.frame_size, v.frame_size))}


def paper_setup(n_clips: int, quick: bool = False) -> Setup:
    """The paper's shapes, CREMA-D as OGM-GE feeds it: 22,050 Hz tiled to 3 s, STFT 512 / 353 -> 257 x 188;
    frames from CREMA-D's 480 x 360 videos (mmgap caches them at 224 x 224), RandomResizedCrop to 224; batch 64;
    ResNet-18 of width 64; 6 classes."""
    preset, protocol = get_preset("paper"), CREMA_D
    if quick:  # the same code paths with tensors small enough for seconds on a CPU
        preset = preset.with_overrides(width=4, image_size=32, batch_size=8)
        protocol = dataclasses.replace(protocol, audio=dataclasses.replace(protocol.audio, duration_s=0.5),
                                       visual=dataclasses.replace(protocol.visual, frame_size=40))
    return Setup("paper", preset, protocol, n_clips, num_classes=6, clip_seconds=0.4 if quick else 2.5,
                 source_size=(60, 45) if quick else CREMA_D_VIDEO_SIZE)


def demo_setup(n_clips: int, quick: bool = False) -> Setup:
    """The `demo` preset's shapes: the embedded protocol (8 kHz, 1 s, 40-bin log-mel; 4 stored frames of
    24 px), a width-8 ResNet-18 on 2 frames cropped to 20 px, batch 64, 10 classes."""
    preset = get_preset("demo")
    if quick:
        preset = preset.with_overrides(width=4, batch_size=8)
    protocol = embedded_protocol(preset.embedded)
    return Setup("demo", preset, protocol, n_clips, num_classes=10, clip_seconds=preset.embedded.duration_s)


# ----------------------------------------------------------------------------------------------------------------
# Data: random clips written as JPEG frames + WAV (the reference reads these) and the same content as a
# FeatureCache (mmgap reads that).


@dataclass
class ClipSet:
    """The benchmark's clips: one folder per clip on disk, and the identical content as a feature cache."""

    dirs: list[Path]
    labels: np.ndarray
    cache: FeatureCache


def square(img: Image.Image, side: int) -> np.ndarray:
    """Shorter side resized to `side` (area filter), centre square cropped: what mmgap's cache stores."""
    w, h = img.size
    scale = side / min(w, h)
    nw, nh = max(side, round(w * scale)), max(side, round(h * scale))
    arr = np.asarray(img.resize((nw, nh), Image.BOX))
    y0, x0 = (nh - side) // 2, (nw - side) // 2
    return np.ascontiguousarray(arr[y0:y0 + side, x0:x0 + side])


def write_clips(root: Path, setup: Setup, seed: int = 0) -> ClipSet:
    """Write random clips and build the cache of the same content.

    Per clip: ``frames/`` holds the source frames as JPEGs (quality 90; smooth colour fields plus grain, which
    compress like video frames; pure noise would inflate the JPEGs and slow the reference unfairly),
    ``frames_stored/`` the same frames at the cache's stored size, ``audio.wav`` a tone in noise (16-bit).
    The cache holds the stored-size frames and the protocol's features of the written WAVs: exactly what the
    reference decodes and computes per item.
    """
    rng = np.random.default_rng(seed)
    v, a = setup.protocol.visual, setup.protocol.audio
    src_w, src_h = setup.source_size or (v.frame_size, v.frame_size)
    n_samples = int(round(a.sample_rate * setup.clip_seconds))
    t = np.arange(n_samples) / a.sample_rate
    frames = np.empty((setup.n_clips, v.frames_per_clip, v.frame_size, v.frame_size, 3), np.uint8)
    feats, dirs = [], []
    for i in range(setup.n_clips):
        d = root / f"clip{i:05d}"
        for sub in ("frames", "frames_stored"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        for k in range(v.frames_per_clip):
            coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
            img = np.asarray(coarse.resize((src_w, src_h), Image.BILINEAR), dtype=np.int16)
            img = np.clip(img + rng.integers(-12, 13, img.shape), 0, 255).astype(np.uint8)
            path = d / "frames" / f"frame_{k:03d}.jpg"
            Image.fromarray(img).save(path, quality=90)
            stored = square(Image.open(path).convert("RGB"), v.frame_size)
            Image.fromarray(stored).save(d / "frames_stored" / path.name, quality=90)
            frames[i, k] = np.asarray(Image.open(d / "frames_stored" / path.name).convert("RGB"))
        wave = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t) + 0.1 * rng.standard_normal(n_samples)
        sf.write(d / "audio.wav", wave.astype(np.float32), a.sample_rate, subtype="PCM_16")
        back, _ = sf.read(d / "audio.wav", dtype="float32")
        feats.append(audio_features(back, a))
        dirs.append(d)
    labels = rng.integers(0, setup.num_classes, setup.n_clips).astype(np.int64)
    labels[: setup.num_classes] = np.arange(min(setup.num_classes, setup.n_clips))  # every class present
    cache = FeatureCache.from_arrays(np.stack(feats), frames, labels, np.zeros(setup.n_clips, np.int8),
                                     [f"class{c}" for c in range(setup.num_classes)])
    return ClipSet(dirs, labels, cache)


# ----------------------------------------------------------------------------------------------------------------
# The reference pipeline: per item, the field's way.


class ReferenceDataset(Dataset):
    """OGM-GE-style per-item dataset: listdir, PIL decode, torchvision transforms, features on the fly."""

    def __init__(self, clips: ClipSet, setup: Setup, frames_dir: str = "frames") -> None:
        self.dirs, self.labels, self.frames_dir = clips.dirs, clips.labels, frames_dir
        self.audio_protocol = setup.protocol.audio
        self.num_frames, self.size = setup.preset.model.num_frames, setup.preset.model.image_size
        self.transform = T.Compose([T.RandomResizedCrop(self.size), T.RandomHorizontalFlip(), T.ToTensor(),
                                    T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])

    def __len__(self) -> int:
        return len(self.dirs)

    def __getitem__(self, idx: int) -> Batch:
        """One clip in the Batch layout of mmgap.strategy (audio [1, F, T], frames [T, 3, H, W])."""
        d = self.dirs[idx]
        wave, _ = sf.read(d / "audio.wav", dtype="float32")
        spec = torch.from_numpy(audio_features(wave, self.audio_protocol).astype(np.float32)).unsqueeze(0)
        names = sorted(os.listdir(d / self.frames_dir))
        # OGM-GE always took the first files in listdir order (its issue #41); we draw them at random, same cost.
        pick = np.sort(np.random.choice(len(names), size=self.num_frames, replace=len(names) < self.num_frames))
        images = torch.zeros((self.num_frames, 3, self.size, self.size))
        for k, j in enumerate(pick):
            images[k] = self.transform(Image.open(d / self.frames_dir / names[j]).convert("RGB"))
        return {"audio": spec, "frames": images, "label": torch.tensor(self.labels[idx]), "index": torch.tensor(idx)}


def reference_batches(clips: ClipSet, setup: Setup, workers: int, device: torch.device, seed: int,
                      frames_dir: str = "frames") -> Iterator[Batch]:
    """Endless shuffled batches from a DataLoader with `workers` persistent worker processes."""
    ds = ReferenceDataset(clips, setup, frames_dir)
    # One long sampler instead of epochs: worker start-up (paid every epoch by OGM-GE) is left out of the timing.
    sampler = RandomSampler(ds, num_samples=10**8, generator=torch.Generator().manual_seed(seed))
    loader = DataLoader(ds, batch_size=setup.batch_size, sampler=sampler, num_workers=workers, drop_last=True,
                        pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    return iter(loader)


# ----------------------------------------------------------------------------------------------------------------
# mmgap's path: the trainer's own batches and training step.


def make_trainer(clips: ClipSet, setup: Setup, device: torch.device, seed: int, run_dir: Path) -> Trainer:
    """A Trainer on the in-memory cache with the fast path on (fresh, seeded: same init on both sides)."""
    return Trainer(clips.cache, setup.preset, run_dir, seed=seed, device=device, fast_path=True, progress=False)


def mmgap_batches(tr: Trainer) -> Iterator[Batch]:
    """Endless training batches from `Trainer.batches` (TensorBatcher), a new shuffle per pass."""
    while True:
        yield from tr.batches("train", train=True)
        tr.epoch += 1


def make_step(tr: Trainer) -> Callable[[Batch], None]:
    """The body of Trainer's epoch loop for the warm-up stage (Eq. 10): zero_grad, loss, backward, step."""
    strategy = WarmupStrategy()
    strategy.setup(tr)

    def step(batch: Batch) -> None:
        b = to_device(batch, tr.device)
        tr.optimizer.zero_grad(set_to_none=True)
        loss, _ = strategy.training_step(tr, b, 0)
        loss.backward()
        strategy.after_backward(tr, 0)
        tr.optimizer.step()

    return step


# ----------------------------------------------------------------------------------------------------------------
# Timing.


def sync(device: torch.device) -> None:
    """Wait for queued device work so that wall-clock time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def to_device(batch: Batch, device: torch.device) -> Batch:
    """The batch on `device` (a no-op for tensors already there)."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def time_batches(batches: Iterator[Batch], consume: Callable[[Batch], Any], warmup: int, timed: int,
                 device: torch.device) -> dict[str, float]:
    """Samples per second over `timed` batches of `consume(next(batches))`, after `warmup` untimed ones."""
    for _ in range(warmup):
        consume(next(batches))
    sync(device)
    n, t0 = 0, time.perf_counter()
    for _ in range(timed):
        batch = next(batches)
        consume(batch)
        n += int(batch["label"].shape[0])
    sync(device)
    dt = time.perf_counter() - t0
    return {"samples_per_s": n / dt, "seconds": dt, "batches": timed, "samples": n}


def compare(m: Measurement, setup: Setup, clips: ClipSet, args: argparse.Namespace, device: torch.device,
            warmup: int, timed: int, repeats: int, tmp: Path) -> dict[str, Any]:
    """Both pipelines on the same clips in alternating rounds (reference first); the best round of each."""
    rounds: dict[str, list[dict[str, float]]] = {"reference": [], "mmgap": []}
    for r in range(repeats):
        for side in ("reference", "mmgap"):
            tr = make_trainer(clips, setup, device, args.seed, tmp / "trainer")
            if side == "reference":
                batches = reference_batches(clips, setup, args.workers, device, args.seed + r, m.frames_dir)
            else:
                tr.epoch = r
                batches = mmgap_batches(tr)
            consume = make_step(tr) if m.whole_step else (lambda b: to_device(b, device))
            res = time_batches(batches, consume, warmup, timed, device)
            del batches, tr  # shuts the reference's worker processes down, frees the model
            rounds[side].append(res)
            print(f"  {side:9s} round {r + 1}/{repeats}: {res['samples_per_s']:9.1f} samples/s "
                  f"({res['samples']} samples in {res['seconds']:.2f} s)", flush=True)
    best = {side: max(rs, key=lambda x: x["samples_per_s"]) for side, rs in rounds.items()}
    return {
        "measurement": m.label,
        "shapes": setup.describe(),
        "whole_step": m.whole_step,
        "reference_frames": m.frames_dir,
        "warmup_batches": warmup,
        "timed_batches": timed,
        "reference": best["reference"],
        "mmgap": best["mmgap"],
        "rounds": rounds,
        "ratio": best["mmgap"]["samples_per_s"] / best["reference"]["samples_per_s"],
    }


@dataclass(frozen=True)
class Measurement:
    """One row of the table."""

    label: str
    shapes: str        # "paper" | "demo"
    whole_step: bool   # False: the data path alone
    frames_dir: str    # which JPEGs the reference decodes: "frames" (source size) or "frames_stored" (cache size)
    target: str


MEASUREMENTS: dict[str, Measurement] = {
    "1": Measurement("(1) data path alone", "paper", False, "frames", ">= 10x"),
    "1b": Measurement("(1b) same, ref. 224px JPEGs", "paper", False, "frames_stored", "(stricter variant)"),
    "2": Measurement("(2) whole training step", "demo", True, "frames", ">= 1.5x"),
    "3": Measurement("(3) whole training step", "paper", True, "frames", "~1x on a CPU (arithmetic-bound)"),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny shapes and few batches (seconds; the smoke test)")
    ap.add_argument("--parts", default="1,1b,2,3",
                    help="measurements to run (default: all): 1 = data path, reference decoding the source-size "
                         "JPEGs (480 x 360, as the field's code does); 1b = the same with 224 px JPEGs; "
                         "2 = demo training steps; 3 = paper training steps")
    ap.add_argument("--clips", type=int, default=256, help="clips written to disk and held in the cache")
    ap.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1),
                    help="DataLoader worker processes of the reference pipeline (default: one per CPU, at most 16)")
    ap.add_argument("--batches", type=int, default=8, help="timed batches per round in parts 1-2")
    ap.add_argument("--repeats", type=int, default=2, help="alternating rounds per side in parts 1-2 (best kept)")
    ap.add_argument("--paper-steps", type=int, default=2,
                    help="timed steps in part 3, after one untimed (each ~30 s on a 2-core CPU)")
    ap.add_argument("--device", default="auto", help="'auto' (CUDA when available), 'cpu' or 'cuda'")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads of the main process (default: torch's own, one per core); the reference's "
                         "workers use one each, as DataLoader sets")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="JSON path (default: <runs>/benchmarks/train_throughput.json)")
    args = ap.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if not parts or not set(parts) <= set(MEASUREMENTS):
        ap.error(f"--parts must be a comma-separated subset of {','.join(MEASUREMENTS)}; got {args.parts!r}")
    args.parts = [k for k in MEASUREMENTS if k in parts]
    if args.clips < 16:
        ap.error(f"--clips must be >= 16 (got {args.clips})")
    if args.workers < 0 or min(args.batches, args.repeats, args.paper_steps) < 1:
        ap.error("--workers must be >= 0; --batches, --repeats and --paper-steps >= 1")
    if args.threads is not None and args.threads < 1:
        ap.error(f"--threads must be >= 1 (got {args.threads})")
    return args


def warn_if_busy() -> None:
    """Say so when the machine is busier than its cores and torch runs several threads (figures then wobble)."""
    load, cpus = (os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0), os.cpu_count() or 1
    if load > cpus and torch.get_num_threads() > 1:
        print(f"warning: load average {load:.1f} on {cpus} CPUs: multi-threaded torch ops oversubscribe the cores "
              "and slow down erratically (up to 50x measured here); --threads 1 gives steadier figures", flush=True)


def machine_info(device: torch.device) -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                            "torch": torch.__version__, "python": platform.python_version(),
                            "platform": platform.platform(), "device": str(device)}
    if hasattr(os, "getloadavg"):
        info["load_average_at_start"] = os.getloadavg()
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def print_table(results: dict[str, Any]) -> None:
    """The final table: both figures, their ratio and the target."""
    head = f"{'measurement':29s} {'shapes':6s} {'reference':>10s} {'mmgap':>10s} {'ratio':>8s}  target"
    print("\n" + head + "\n" + "-" * (len(head) + 24))
    for key, r in results["parts"].items():
        m = MEASUREMENTS[key]
        print(f"{m.label:29s} {m.shapes:6s} {r['reference']['samples_per_s']:10.1f} "
              f"{r['mmgap']['samples_per_s']:10.1f} "
              f"{r['ratio']:7.2f}x  {m.target}")
    print(f"(samples per second on {results['machine']['device']}; reference = per-item JPEG decode + "
          f"torchvision transforms + on-the-fly features + DataLoader with {results['args']['workers']} workers)")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the selected parts, print the table, write the JSON; returns the results."""
    args = parse_args(argv)
    device = resolve_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    warn_if_busy()
    n_clips = 24 if args.quick else args.clips
    setups = {"paper": paper_setup(n_clips, args.quick), "demo": demo_setup(n_clips, args.quick)}
    warmup, timed, repeats = (1, 2, 1) if args.quick else (2, args.batches, args.repeats)
    results: dict[str, Any] = {"benchmark": "train_throughput", "quick": args.quick, "machine": machine_info(device),
                               "args": dict(vars(args)), "parts": {}}
    print(f"train_throughput on {device}: {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, "
          f"{args.workers} reference workers{' [quick]' if args.quick else ''}", flush=True)
    with tempfile.TemporaryDirectory(prefix="mmgap_bench_") as tmp_name:
        tmp = Path(tmp_name)
        written: dict[str, ClipSet] = {}
        for key in args.parts:
            m = MEASUREMENTS[key]
            setup = setups[m.shapes]
            if m.shapes not in written:
                t0 = time.perf_counter()
                written[m.shapes] = write_clips(tmp / m.shapes, setup, args.seed)
                v, src = setup.protocol.visual, setup.describe()["source_frame_size"]
                print(f"wrote {setup.n_clips} {m.shapes}-shaped clips "
                      f"({v.frames_per_clip} frames of {src[0]} x {src[1]} "
                      f"as JPEG, cached at {v.frame_size} px, + a WAV each) in {time.perf_counter() - t0:.1f} s",
                      flush=True)
            print(f"{m.label} at the {m.shapes} shapes:", flush=True)
            if m.whole_step and m.shapes == "paper":
                w, t, reps = 1, 1 if args.quick else args.paper_steps, 1
            else:
                w, t, reps = warmup, timed, repeats
            results["parts"][key] = compare(m, setup, written[m.shapes], args, device, w, t, reps, tmp)
    if hasattr(os, "getloadavg"):
        results["machine"]["load_average_at_end"] = os.getloadavg()
    print_table(results)
    out = Path(args.out) if args.out else runs_root() / "benchmarks" / "train_throughput.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out, json.dumps(results, indent=2, default=str) + "\n")
    print(f"wrote {out}")
    return results


if __name__ == "__main__":
    main()
