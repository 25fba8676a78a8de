"""The first lent GPU's checklist (issue 23): one script, minutes, no data to download, one Markdown table.

Run it first on any new GPU; paste its table into the note. It answers at once:

1. environment: the GPU, its compute capability and the precision `mmgap.device.choose_precision` picks;
2. an epoch at the paper's shapes (CREMA-D-sized random data, `gpu_epoch.py`): seconds, samples/s and GPU
   busy time, plus the epoch's evaluation (val + test) and one refit (gap pass + mixture);
3. resident memory: the peak allocated during (2) against `Trainer.memory_plan`, and the plan against a
   ``meta``-device measurement at each dataset's paper size (`memory_plan.py`);
4. every baseline for two epochs at `smoke` shapes on the device, its gradient surgery verified firing (the
   gradients after ``after_backward`` differ from before it in some step; OPM's feature dropping: θ > 0);
5. posteriors of one checkpoint computed on the CPU and on the GPU: the largest difference of w1 (Eq. 9);
6. resume across devices: an OGM-GE run interrupted on one device and resumed on the other, both ways;
7. a ``torch.compile`` run of (2) on part of the epoch.

On a CPU it degrades to what a CPU can check and says what it skipped: (2) at tiny shapes, (4) on the CPU,
(5) the CPU's fp32 path against its bf16 emulation of the CUDA path, (6) a CUDA-shaped generator state
resumed on the CPU, (3) the meta measurement only, (7) skipped.

    python benchmarks/gpu_check.py              # on a GPU: minutes
    python benchmarks/gpu_check.py --quick      # tiny shapes, two baselines (the smoke test)

Writes ``runs/benchmarks/gpu_check.json`` and ``gpu_check.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling scripts gpu_epoch.py and memory_plan.py

import gpu_epoch  # noqa: E402
import memory_plan  # noqa: E402

from mmgap import baselines  # noqa: E402
from mmgap.config import get_preset  # noqa: E402
from mmgap.data.cache import FeatureCache  # noqa: E402
from mmgap.device import choose_precision, resolve_device  # noqa: E402
from mmgap.gap import compute_gap  # noqa: E402
from mmgap.method import WarmupStrategy, fit_gaps  # noqa: E402
from mmgap.paths import runs_root  # noqa: E402
from mmgap.trainer import Trainer, TrainingInterrupted, train_baseline  # noqa: E402

SURGERY = ("ogm_ge", "agm", "mla", "opm_ogm")
"""Baselines that change gradients between backward and step (their ``after_backward``)."""
DROPPING = ("opm", "opm_ogm")
"""Baselines that drop features in training (θ, the dropped share, in their history)."""
Row = tuple[str, str, str]


def smoke_cache(seed: int = 0, n: int = 128) -> FeatureCache:
    """4 classes with an audio band and a visual quadrant per class (a third of the clips without it): 64 x 64
    spectrograms, 2 stored frames of 40 px; 96 / 16 / 16 clips."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 4)
    audio = rng.normal(0.0, 1.0, (n, 64, 64))
    frames = rng.integers(0, 60, (n, 2, 40, 40, 3))
    for i, y in enumerate(labels):
        audio[i, 16 * y:16 * y + 16] += 2.0
        if rng.random() > 0.33:
            r, c = 20 * (y // 2), 20 * (y % 2)
            frames[i, :, r:r + 20, c:c + 20] += 150
    split = np.repeat(np.arange(3, dtype=np.int8), (n * 3 // 4, n // 8, n - n * 3 // 4 - n // 8))
    return FeatureCache.from_arrays(audio, frames, labels, split, [f"c{k}" for k in range(4)])


def smoke_preset(**kw: Any) -> Any:
    """The `smoke` preset at the shapes of `smoke_cache`."""
    return get_preset("smoke", **{"image_size": 32, "batch_size": 16, **kw})


def environment(device: torch.device) -> list[Row]:
    """The device, its capability and the chosen precision."""
    _, note = choose_precision(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        cap = ".".join(map(str, torch.cuda.get_device_capability(device)))
        free, total = torch.cuda.mem_get_info(device)
        return [("environment", "ok", f"{name}, capability {cap}, {free / 2**30:.1f} of {total / 2**30:.1f} GiB "
                 f"free; torch {torch.__version__}; precision: {note}")]
    return [("environment", "CPU only", f"no CUDA GPU visible; torch {torch.__version__}, Python "
             f"{platform.python_version()}; precision: {note}")]


def epoch(device: torch.device, quick: bool, out: Path, compile_: bool = False) -> tuple[list[Row], dict]:
    """gpu_epoch.py at the paper's shapes on CUDA (tiny shapes on a CPU or with --quick)."""
    cuda = device.type == "cuda"
    argv = ["--device", str(device), "--out", str(out / f"gpu_epoch{'_compile' if compile_ else ''}.json")]
    if quick or not cuda:
        argv.append("--quick")
    if compile_:
        argv += ["--compile", "--clips", "2048", "--profile-steps", "0"]
    with contextlib.redirect_stdout(io.StringIO()):
        res = gpu_epoch.main(argv)
    shapes = "paper shapes" if cuda and not quick else "tiny shapes (paper shapes: GPU only, ~2 samples/s on a CPU)"
    busy = "n/a" if res["gpu_busy_fraction"] is None else f"{100 * res['gpu_busy_fraction']:.1f} %"
    name = "compile run" if compile_ else "epoch"
    rows = [(name, "ok", f"{shapes}, {res['clips']} clips, batch {res['batch_size']}: {res['seconds_per_epoch']:.2f} "
             f"s/epoch ({res['samples_per_s']:.1f} samples/s), GPU busy {busy}; evaluation (val + test) "
             f"{res['eval_seconds']:.2f} s, refit {res['refit_seconds']:.2f} s; with both "
             f"{res['seconds_per_epoch_with_eval_and_refit']:.2f} s" + (f"; warm-up incl. compilation "
                                                                         f"{res['warmup_seconds']:.0f} s"
                                                                         if compile_ else ""))]
    return rows, res


def memory(device: torch.device, epoch_res: dict | None, quick: bool) -> list[Row]:
    """Peak allocated memory against the plan (CUDA), and the plan against the meta measurement."""
    rows: list[Row] = []
    if epoch_res and epoch_res.get("peak_gpu_memory_gib") is not None and epoch_res.get("plan_gib"):
        peak, plan = epoch_res["peak_gpu_memory_gib"], epoch_res["plan_gib"]
        ok = peak <= plan["total"] * 1.1
        rows.append(("memory: resident vs plan", "ok" if ok else "OVER PLAN",
                     f"peak allocated {peak:.2f} GiB vs plan {plan['total']:.2f} GiB (data {plan['data']:.2f}, model "
                     f"{plan['model']:.2f}, activations {plan['activations']:.2f}); "
                     f"data on {epoch_res['data_device']}"))
    else:
        rows.append(("memory: resident vs plan", "skipped", "needs CUDA (torch.cuda.max_memory_allocated)"))
    names = ["CREMA-D"] if quick else list(memory_plan.DATASETS)
    for name in names:
        r = memory_plan.measure(name)
        same = r["plan_total"] == r["measured_total"]
        rows.append((f"memory plan vs meta: {name}", "ok" if same else "DIFFERS",
                     f"plan {r['plan_total'] / 2**30:.2f} GiB, meta {r['measured_total'] / 2**30:.2f} GiB "
                     f"(data {r['plan_data'] / 2**30:.2f}, fine-tune peak {r['finetune_data'] / 2**30:.2f}, before the "
                     f"fix {r['finetune_never_freed'] / 2**30:.2f}; cache bytes {r['old_check'] / 2**30:.2f})"))
    return rows


def probe_surgery(strategy: Any) -> dict[str, int]:
    """Wrap `strategy.after_backward` to count steps in which it changed some gradient."""
    counts = {"steps": 0, "changed": 0}
    original: Callable[..., Any] = strategy.after_backward

    def probed(trainer: Any, epoch: int) -> None:
        params = [p for p in trainer.model.parameters() if p.grad is not None]
        before = [p.grad.clone() for p in params]
        original(trainer, epoch)
        counts["steps"] += 1
        counts["changed"] += int(any(not torch.equal(b, p.grad) for b, p in zip(before, params, strict=True)))

    strategy.after_backward = probed
    return counts


def baselines_check(device: torch.device, names: list[str], root: Path) -> list[Row]:
    """Two epochs of each baseline at smoke shapes on `device`; surgery and dropping verified."""
    cache, preset = smoke_cache(), smoke_preset()
    rows: list[Row] = []
    for name in names:
        strategy = baselines.get(name)
        counts = probe_surgery(strategy)
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = train_baseline(cache, preset, strategy, root / name, epochs=2, device=str(device),
                                     resume=False, progress=False)
        except Exception as exc:  # noqa: BLE001 - the table reports every failure, the other checks go on
            rows.append((f"baseline {name}", "FAILED", f"{type(exc).__name__}: {exc}"[:300]))
            continue
        fired = []
        ok = True
        if name in SURGERY:
            fired.append(f"gradients changed after backward in {counts['changed']} of {counts['steps']} steps")
            ok &= counts["changed"] > 0
        if name in DROPPING:
            theta = max(float(r.get("train_theta", 0.0)) for r in res["history"])
            fired.append(f"features dropped (max epoch-mean θ {theta:.3f})")
            ok &= theta > 0
        if not fired:
            fired.append("no after-backward surgery to verify (a loss- or epoch-level method)")
        rows.append((f"baseline {name}", "ok" if ok else "SURGERY DID NOT FIRE",
                     f"2 epochs on {device} in {time.perf_counter() - t0:.1f} s, test acc {res['test_acc']:.3f}; "
                     + "; ".join(fired)))
    return rows


def _posteriors(cache: Any, preset: Any, ckpt: Path, device: str, precision: str, tmp: Path) -> dict[str, Any]:
    """Logits and w1 (Eq. 5, 7-9) of the checkpoint's model over the training split on `device`."""
    from mmgap.checkpoint import load_safe

    tr = Trainer(cache, preset, tmp / f"{device}-{precision}", seed=0, device=device, progress=False,
                 precision=precision)
    tr.model.load_state_dict(load_safe(ckpt)["model"])
    out = tr.collect_outputs("train")
    g = compute_gap("prob", out["logit_a"], out["logit_v"], out["label"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        *_, w1, _ = fit_gaps(g, out["index"], cache, seed=0)
    return {"logit_a": out["logit_a"], "w1": np.asarray(w1)}


def posteriors(device: torch.device, root: Path) -> list[Row]:
    """w1 of one warm-up checkpoint on the CPU and on the GPU (on a CPU: fp32 vs the bf16 emulation)."""
    cache, preset = smoke_cache(), smoke_preset()
    tr = Trainer(cache, preset, root / "ckpt", seed=0, device=device, progress=False)
    tr.fit(WarmupStrategy(), 2, "warmup")
    ckpt = root / "ckpt" / "last.pt"
    ref = _posteriors(cache, preset, ckpt, "cpu", "fp32", root)
    if device.type == "cuda":
        other, what = _posteriors(cache, preset, ckpt, str(device), "auto", root), f"CPU fp32 vs {device} (auto)"
    else:
        other, what = _posteriors(cache, preset, ckpt, "cpu", "bf16", root), "CPU fp32 vs CPU bf16 (emulated CUDA path)"
    dw1 = float(np.abs(ref["w1"] - other["w1"]).max())
    dl = float((ref["logit_a"] - other["logit_a"]).abs().max())
    return [("posteriors CPU vs GPU", "ok" if dw1 < 0.05 else "DISAGREE",
             f"{what}, same checkpoint: largest Δw1 {dw1:.4f}, largest Δ logit_a {dl:.4f} over {len(ref['w1'])} clips")]


def resume(device: torch.device, root: Path) -> list[Row]:
    """OGM-GE interrupted after epoch 1 on one device, resumed on the other (both ways on CUDA)."""
    cache, preset = smoke_cache(), smoke_preset()
    cuda = device.type == "cuda"
    pairs = [(str(device), "cpu"), ("cpu", str(device))] if cuda else [("cpu", "cpu")]
    rows: list[Row] = []
    for first, second in pairs:
        run = root / f"resume-{first}-{second}".replace(":", "")
        try:
            train_baseline(cache, preset, baselines.get("ogm_ge"), run, epochs=2, device=first, progress=False,
                           interrupt_at_epoch=1)
        except TrainingInterrupted:
            pass
        if not cuda:  # emulate a checkpoint written on CUDA: its generator state is CUDA's 16 bytes
            from mmgap.checkpoint import load_safe, save_atomic

            ckpt = load_safe(run / "last.pt")
            ckpt["strategy"]["rng"] = {"device": "cuda", "state": torch.zeros(16, dtype=torch.uint8)}
            save_atomic(ckpt, run / "last.pt")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                res = train_baseline(cache, preset, baselines.get("ogm_ge"), run, epochs=2, device=second,
                                     progress=False)
            except Exception as exc:  # noqa: BLE001
                rows.append((f"resume {first} -> {second}", "FAILED", f"{type(exc).__name__}: {exc}"[:300]))
                continue
        notes = [str(w.message).split(":")[0] for w in caught if "seeded again" in str(w.message)]
        what = f"resume {first} -> {second}" if cuda else "resume CUDA-state -> cpu (emulated)"
        rows.append((what, "ok" if len(res["history"]) == 2 else "INCOMPLETE",
                     f"OGM-GE finished {len(res['history'])} epochs; " + (f"noted: {notes[0]}" if notes else
                                                                           "generator state restored exactly")))
    return rows


def markdown(rows: list[Row]) -> str:
    """The table to paste."""
    lines = ["| check | result | detail |", "|---|---|---|"]
    lines += [f"| {c} | {r} | {d.replace('|', '/')} |" for c, r, d in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[Row]:
    """Run every check the device allows; print and write the table."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--device", default="auto", help="'auto' (CUDA when available), 'cuda' or 'cpu'")
    ap.add_argument("--quick", action="store_true", help="tiny shapes, two baselines, one dataset's memory")
    ap.add_argument("--baselines", default=None, help="comma-separated baselines (default: all; --quick: ogm_ge,opm)")
    ap.add_argument("--out", default=None, help="folder for the JSON and Markdown (default: <runs>/benchmarks)")
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    names = (args.baselines.split(",") if args.baselines else
             (["ogm_ge", "opm"] if args.quick else list(baselines.NAMES)))
    unknown = [n for n in names if n not in baselines.NAMES]
    if unknown:
        ap.error(f"unknown baselines {unknown}; choose from {', '.join(baselines.NAMES)}")
    out = Path(args.out) if args.out else runs_root() / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows: list[Row] = environment(device)
    with tempfile.TemporaryDirectory(prefix="mmgap_gpu_check_") as tmp:
        root = Path(tmp)
        epoch_rows, epoch_res = epoch(device, args.quick, root)
        rows += epoch_rows
        rows += memory(device, epoch_res, args.quick)
        rows += baselines_check(device, names, root / "baselines")
        rows += posteriors(device, root / "posteriors")
        rows += resume(device, root / "resume")
        if cuda:
            rows += epoch(device, args.quick, root, compile_=True)[0]
        else:
            rows.append(("compile run", "skipped", "torch.compile is used on CUDA only (Trainer._maybe_compile)"))
    skipped = [r[0] for r in rows if r[1] == "skipped"]
    text = markdown(rows)
    print(text)
    print(f"\n{len(rows)} checks in {time.perf_counter() - t0:.0f} s on {device}"
          + (f"; skipped (need a GPU): {', '.join(skipped)}" if skipped else ""))
    (out / "gpu_check.md").write_text(text + "\n")
    (out / "gpu_check.json").write_text(json.dumps({"device": str(device), "rows": rows}, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
