"""The embedded audio-visual digits dataset, generated from a seed and written as real MP4 files.

Ten classes, the digits. The audio track plays the digit's telephone-keypad (DTMF) tone pair as a short burst
at a random time in white noise: easy and fast to learn, the dominant modality. The visual track shows a real
handwritten scan from scikit-learn's bundled digits, upscaled and drifting over a cluttered, noisy background,
in one of three ground-truth tiers (the manifest's `visual_tier`; `imbalanced = tier != "clean"`):

- `clean`: a large, contrasted, light-on-dark digit, learned quickly;
- `hard` (`hard_frac` of the clips): a smaller, fainter, dark-on-light digit; it carries the label, but a
  visual model needs many more epochs to learn it, and inside joint training, where the audio already
  solves the clip, it is starved: the *optimisation* imbalance the paper and its baselines address;
- `corrupt` (`corrupt_frac`): no digit (by default), so no label information: *missing* information, which
  no rebalancing can recover.

The tiers are stratified (the same fractions in every class and split) and never fed to training: the
notebooks use them to grade the mixture (AUROC of w1) and to report accuracy per tier.

Clips are H.264 video + AAC audio in MP4 (PyAV), read back by the same decoder as the real datasets. Each
clip is rendered from its own generator seeded by (seed, clip index), so the files do not depend on the
number of worker processes. Test clips use scans held out from the training clips.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
from scipy import ndimage

from mmgap.atomic import DamagedFile, read_json, write_json
from mmgap.config import EmbeddedConfig
from mmgap.data.manifest import DataError, Manifest, ManifestRow
from mmgap.data.parallel import pmap
from mmgap.locks import file_lock, remove_stale_tmp

GENERATOR_VERSION = 4
CLASS_NAMES = [str(d) for d in range(10)]
# Standard DTMF keypad frequencies (Hz): low (row) and high (column) tone of each digit.
DTMF = {1: (697, 1209), 2: (697, 1336), 3: (697, 1477), 4: (770, 1209), 5: (770, 1336), 6: (770, 1477),
        7: (852, 1209), 8: (852, 1336), 9: (852, 1477), 0: (941, 1336)}
CORRUPTIONS = ("absent", "foreign")


@dataclass(frozen=True)
class EmbeddedDesign:
    """Difficulty knobs of the generator (calibrated by benchmarks/embedded_calibration.py at `demo`)."""

    # clean tier: a large, contrasted digit drifting over smooth clutter
    digit_scale: tuple[float, float] = (2.2, 2.6)     # upscaling of the 8x8 scans (for a 20 px canvas)
    jitter_px: float = 1.5                            # start position: centre +/- this
    speed_px: float = 0.5                             # drift per frame (px), plus 0.5 px jitter
    noise_std: float = 0.04                           # pixel noise (0..1 scale)
    clutter_std: float = 0.03                         # smooth background clutter
    contrast: tuple[float, float] = (0.7, 0.9)        # digit contrast against the background
    bg_range: tuple[float, float] = (0.2, 0.6)        # background colour channels
    # hard tier: the label is in the picture, but as a smaller, fainter, dark-on-light digit: features the
    # clean clips do not teach, learned from fewer examples, so slowly
    hard_scale: tuple[float, float] = (0.8, 0.9)      # digit size as a fraction of the clean size
    hard_contrast: tuple[float, float] = (0.35, 0.5)  # digit contrast
    hard_jitter_px: float = 2.5                       # start position: centre +/- this
    hard_distractors: int = 0                         # faint strokes of other scans (any class) around it
    hard_distractor_contrast: float = 0.5             # their contrast, relative to the digit's
    hard_invert: bool = True                          # dark digit on a light background
    # corrupt tier: no label information in the picture (kinds drawn uniformly)
    corruptions: tuple[str, ...] = ("absent",)        # "absent": clutter only; "foreign": a digit of a random class
    tone_s: tuple[float, float] = (0.1, 0.4)          # tone burst duration
    snr_db: tuple[float, float] = (-13.5, -3.5)       # tone-to-noise power ratio
    test_scan_frac: float = 0.25                      # scans reserved for test clips
    crf: int = 16                                     # H.264 quality (lower = closer to the render)


DEFAULT_DESIGN = EmbeddedDesign()


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

    d = load_digits()
    return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)


def _scan_pools(seed: int, design: EmbeddedDesign) -> dict[str, list[np.ndarray]]:
    """Per split, per digit: indices of the scans it may use (test scans held out from training)."""
    _, targets = _digits()
    rng = np.random.default_rng([seed, 7919])
    pools: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    for d in range(10):
        idx = rng.permutation(np.flatnonzero(targets == d))
        k = max(1, int(round(len(idx) * design.test_scan_frac)))
        pools["test"].append(idx[:k])
        pools["train"].append(idx[k:])
    return pools


def _glyph(scan: np.ndarray, scale: float) -> np.ndarray:
    """The 8x8 scan upscaled by `scale` (bilinear), values in [0, 1]."""
    return np.clip(ndimage.zoom(scan, max(scale, 0.25), order=1), 0.0, 1.0)


def _paste(mask: np.ndarray, glyph: np.ndarray, pos: np.ndarray, weight: float) -> None:
    """Add `weight` x `glyph` into `mask` at integer `pos` (clipped at the borders), keeping the max."""
    side = mask.shape[0]
    gh, gw = glyph.shape
    y, x = (int(v) for v in np.clip(np.round(pos), [0, 0], [max(0, side - gh), max(0, side - gw)]))
    part = glyph[: side - y, : side - x] * weight
    mask[y:y + part.shape[0], x:x + part.shape[1]] = np.maximum(mask[y:y + part.shape[0], x:x + part.shape[1]], part)


def _render_frames(rng: np.random.Generator, scan: np.ndarray | None, n_frames: int, side: int, tier: str,
                   design: EmbeddedDesign, distractors: tuple[np.ndarray, ...] = ()) -> np.ndarray:
    """[n_frames, side, side, 3] uint8: the scan (None: no digit) drifting over clutter and noise.

    `tier` sets the digit's size, contrast and placement ("clean" or "hard"; "corrupt" clips come here with
    ``scan=None`` or a foreign scan drawn at clean settings); `distractors` are faint scans of any class.
    """
    hard = tier == "hard"
    rel = rng.uniform(*design.hard_scale) if hard else 1.0
    scale = rng.uniform(*design.digit_scale) * rel * side / 20.0
    glyph = _glyph(scan, scale) if scan is not None else None
    contrast = rng.uniform(*(design.hard_contrast if hard else design.contrast))
    colour_bg = rng.uniform(*design.bg_range, size=3)
    if hard and design.hard_invert:  # light background, dark digit
        colour_bg = 1.0 - colour_bg
        contrast = -contrast
    colour_fg = np.clip(colour_bg + contrast, 0.0, 1.0)
    clutter = ndimage.gaussian_filter(rng.standard_normal((side, side)), 2.0)
    clutter *= design.clutter_std / (clutter.std() + 1e-8)
    jitter = design.hard_jitter_px if hard else design.jitter_px
    size = glyph.shape[0] if glyph is not None else 0
    pos = np.full(2, (side - size) / 2) + rng.uniform(-jitter, jitter, 2)
    vel = rng.uniform(-design.speed_px, design.speed_px, 2)
    extra = [(_glyph(d, scale * rng.uniform(0.8, 1.2)), rng.uniform(0, side, 2) - 2) for d in distractors]
    out = np.empty((n_frames, side, side, 3), dtype=np.uint8)
    for f in range(n_frames):
        mask = np.zeros((side, side), dtype=np.float32)
        for g, p in extra:
            _paste(mask, g, p + f * vel, design.hard_distractor_contrast)
        if glyph is not None:
            _paste(mask, glyph, pos + f * vel + rng.normal(0, 0.5, 2), 1.0)
        img = colour_bg + clutter[..., None] + mask[..., None] * (colour_fg - colour_bg)
        img = img + rng.normal(0, design.noise_std, (side, side, 1))
        out[f] = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return out


def _render_audio(rng: np.random.Generator, digit: int, sr: int, duration_s: float,
                  design: EmbeddedDesign) -> np.ndarray:
    """Mono float32 waveform: the digit's DTMF pair as a burst at a random time in white noise."""
    n = int(round(sr * duration_s))
    noise = rng.standard_normal(n)
    burst = min(duration_s, rng.uniform(*design.tone_s))
    m = max(1, int(round(burst * sr)))
    start = int(rng.integers(0, n - m + 1))
    t = np.arange(m) / sr
    lo, hi = DTMF[digit]
    ph = rng.uniform(0, 2 * np.pi, 2)
    tone = np.sin(2 * np.pi * lo * t + ph[0]) + np.sin(2 * np.pi * hi * t + ph[1])  # power 1.0
    ramp = min(m // 2, int(0.005 * sr))
    if ramp > 0:
        env = np.ones(m)
        env[:ramp] = env[-ramp:][::-1] = np.linspace(0, 1, ramp)
        tone *= env
    snr = rng.uniform(*design.snr_db)
    noise[start:start + m] += tone * 10 ** (snr / 20.0)
    return (0.25 * noise / (np.abs(noise).max() + 1e-8)).astype(np.float32)


def write_clip(path: str | Path, frames: np.ndarray, audio: np.ndarray, sample_rate: int, fps: int,
               crf: int = 16) -> None:
    """Write an MP4 with H.264 video (yuv420p) and AAC mono audio with PyAV."""
    with av.open(str(path), "w", format="mp4") as c:
        v = c.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        v.options = {"crf": str(crf), "preset": "ultrafast", "threads": "1"}
        a = c.add_stream("aac", rate=sample_rate)
        a.layout = "mono"
        # FFmpeg's "fast" AAC coder: 5x faster than the default two-loop search here, and closer to the input
        a.options = {"aac_coder": "fast"}
        for f in frames:
            for pkt in v.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(pkt)
        for pkt in v.encode():
            c.mux(pkt)
        af = av.AudioFrame.from_ndarray(audio[None].astype(np.float32), format="fltp", layout="mono")
        af.sample_rate, af.pts = sample_rate, 0
        for pkt in a.encode(af):
            c.mux(pkt)
        for pkt in a.encode(None):
            c.mux(pkt)


@dataclass(frozen=True)
class _Job:
    index: int
    path: str
    plan: dict[str, Any]
    seed: int
    cfg: EmbeddedConfig
    design: EmbeddedDesign


def _make_clip(job: _Job) -> str:
    # One stream per track: the audio of a clip does not change when the picture's design does.
    rng_video = np.random.default_rng([job.seed, job.index, 1])
    rng_audio = np.random.default_rng([job.seed, job.index, 2])
    images, _ = _digits()
    p = job.plan
    n_frames = max(1, int(round(job.cfg.duration_s * job.cfg.fps)))
    scan = images[p["scan"]] if p["scan"] >= 0 else None
    distractors = tuple(images[i] for i in p["distractors"])
    frames = _render_frames(rng_video, scan, n_frames, job.cfg.frame_size, p["visual_tier"], job.design,
                            distractors)
    audio = _render_audio(rng_audio, p["digit"], job.cfg.sample_rate, job.cfg.duration_s, job.design)
    write_clip(job.path, frames, audio, job.cfg.sample_rate, job.cfg.fps, job.design.crf)
    return job.path


def _plan(cfg: EmbeddedConfig, seed: int, design: EmbeddedDesign) -> list[dict[str, Any]]:
    """Per clip: digit, split, visual tier (and corruption), the scan shown and distractors, all from `seed`.

    Tiers are stratified: every class has the same hard and corrupt fractions in train and in test. A
    "foreign" corrupt clip shows a scan of a class drawn uniformly from all ten, independent of its label;
    an "absent" one shows no digit (``scan = -1``). Hard clips get distractor scans of uniformly drawn classes.
    """
    unknown = [k for k in design.corruptions if k not in CORRUPTIONS] or ([] if design.corruptions else ["(none)"])
    if unknown:
        raise DataError(f"EmbeddedDesign.corruptions has {unknown}: use a non-empty subset of {CORRUPTIONS}")
    rng = np.random.default_rng([seed, 1])
    n = cfg.n_clips
    digits = np.arange(n) % 10
    is_test = np.zeros(n, dtype=bool)
    tier = np.full(n, "clean", dtype=object)
    for d in range(10):  # stratified: the same test, hard and corrupt fractions in every class
        idx = rng.permutation(np.flatnonzero(digits == d))
        n_test = int(round(len(idx) * cfg.test_frac))
        is_test[idx[:n_test]] = True
        for part in (idx[:n_test], idx[n_test:]):
            n_hard = int(round(len(part) * cfg.hard_frac))
            n_corrupt = int(round(len(part) * cfg.corrupt_frac))
            tier[part[:n_hard]] = "hard"
            tier[part[n_hard:n_hard + n_corrupt]] = "corrupt"
    pools = _scan_pools(seed, design)
    # Separate streams, so that changing one knob (say, the number of distractors) leaves the other draws alone.
    rng_scan, rng_kind, rng_extra = (np.random.default_rng([seed, k]) for k in (2, 3, 4))

    def any_scan(split: str, r: np.random.Generator) -> int:
        pool = pools[split][int(r.integers(10))]
        return int(pool[r.integers(len(pool))])

    plan = []
    for i in range(n):
        split = "test" if is_test[i] else "train"
        pool = pools[split][digits[i]]
        own = int(pool[rng_scan.integers(len(pool))])
        kind = str(rng_kind.choice(list(design.corruptions)))
        foreign = any_scan(split, rng_kind)
        corruption = kind if tier[i] == "corrupt" else ""
        scan = {"": own, "absent": -1, "foreign": foreign}[corruption]
        distractors = [any_scan(split, rng_extra) for _ in range(design.hard_distractors)] if tier[i] == "hard" else []
        plan.append({"digit": int(digits[i]), "split": split, "visual_tier": str(tier[i]),
                     "corruption": corruption, "scan": scan, "distractors": distractors})
    return plan


def dataset_spec(cfg: EmbeddedConfig, seed: int, design: EmbeddedDesign = DEFAULT_DESIGN) -> dict[str, Any]:
    """What identifies a generated dataset (written to dataset.json; equal spec -> generation skipped)."""
    return {"generator_version": GENERATOR_VERSION, "seed": int(seed), "config": dataclasses.asdict(cfg),
            "design": dataclasses.asdict(design), "pyav": av.__version__}


def _is_complete(root: Path, spec: dict[str, Any], log: Any = print) -> bool:
    """Whether `root` holds the dataset of `spec` (a cut dataset.json is noted: the dataset is generated again)."""
    info = root / "dataset.json"
    if not info.is_file() or not (root / "manifest.csv").is_file():
        return False
    try:
        on_disk = read_json(info, fix="the dataset is generated again")
    except DamagedFile as exc:
        log(f"note: {exc}")
        return False
    if not isinstance(on_disk, dict) or on_disk.get("spec") != json.loads(json.dumps(spec)):
        return False
    n = spec["config"]["n_clips"]
    clips = root / "clips"
    return clips.is_dir() and sum(1 for p in clips.glob("*.mp4") if p.stat().st_size > 0) == n


def generate_embedded(root: str | Path, cfg: EmbeddedConfig, seed: int = 0, workers: int | None = None,
                      design: EmbeddedDesign = DEFAULT_DESIGN, rebuild: bool = False,
                      progress: bool = True) -> Path:
    """Write `n_clips` MP4 clips and manifest.csv under `root`; skipped when an identical dataset exists."""
    root = Path(root)
    if cfg.frame_size % 2:
        raise DataError(f"embedded frame_size={cfg.frame_size} must be even (H.264 with 4:2:0 chroma)")
    spec = dataset_spec(cfg, seed, design)
    if not rebuild and _is_complete(root, spec):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    # One generation per folder at a time: a second notebook waits and finds the dataset complete, instead
    # of replacing the folder under the first one.
    with file_lock(root.with_name(f".{root.name}.lock"), f"the embedded dataset {root.name} (another notebook "
                   "is generating it)"):
        remove_stale_tmp(root.parent)
        if not rebuild and _is_complete(root, spec, log=lambda _: None):
            return root
        return _generate(root, cfg, seed, workers, design, spec, progress)


def _generate(root: Path, cfg: EmbeddedConfig, seed: int, workers: int | None, design: EmbeddedDesign,
              spec: dict[str, Any], progress: bool) -> Path:
    """Write the clips and manifest in a temporary folder beside `root`, then rename it into place."""
    t0 = time.time()
    tmp = root.with_name(f".{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "clips").mkdir(parents=True)
    plan = _plan(cfg, seed, design)
    jobs = [_Job(i, str(tmp / "clips" / f"{i:05d}.mp4"), p, seed, cfg, design) for i, p in enumerate(plan)]
    for _ in pmap(_make_clip, jobs, len(jobs), workers, desc="generating embedded clips", progress=progress):
        pass
    rows = [ManifestRow(clip_id=f"{i:05d}", video=f"clips/{i:05d}.mp4", audio="", label=p["digit"],
                        label_name=CLASS_NAMES[p["digit"]], split=p["split"],
                        imbalanced=p["visual_tier"] != "clean", visual_tier=p["visual_tier"])
            for i, p in enumerate(plan)]
    Manifest("embedded", CLASS_NAMES, rows).to_csv(tmp / "manifest.csv")
    write_json(tmp / "dataset.json", {"spec": spec, "seconds": round(time.time() - t0, 1)}, indent=1)
    if root.exists():
        shutil.rmtree(root)
    os.replace(tmp, root)
    return root


def build_manifest(root: str | Path) -> Manifest:
    """The manifest of a generated embedded dataset, with absolute paths and the `imbalanced` flags."""
    root = Path(root)
    path = root / "manifest.csv"
    if not path.is_file():
        raise DataError(f"embedded: no manifest.csv in {root}; generate it with "
                        f"mmgap.data.generate_embedded or mmgap.data.prepare('embedded')")
    m = Manifest.from_csv(path, "embedded", CLASS_NAMES)
    for r in m.rows:
        r.video = str(root / r.video)
    return m
