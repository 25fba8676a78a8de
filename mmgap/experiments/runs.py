"""One run of a sweep, reused when finished: the shared warm-up, an adaptive run, a Table VII cell, a
baseline.

Run folders are keyed by a hash of every setting that shapes the run and of the data (`cache_id`), and a
finished run (its ``result.json``, written last) is reused, so re-executing a notebook only trains what
changed; an interrupted one resumes from its last checkpoint. Each function returns the run's row: the
test-split metrics of the validation-selected epoch (fractions in [0, 1]) and what the tables need.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import inspect
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from mmgap import atomic, baselines, events, paths
from mmgap.cards import ProtocolCard, method_kwargs, method_preset, protocol_card
from mmgap.checkpoint import CheckpointError, from_json, load_safe
from mmgap.config import Preset, get_preset
from mmgap.data.manifest import TIERS
from mmgap.experiments.settings import (
    METRICS,
    PURIFICATION_CONTROL,
    TIER_METRICS,
    AdaptiveSetting,
    adam_lr_for,
    loss_config,
    setting_preset,
    setting_warmup_preset,
)
from mmgap.history import best_row_summary, stage_timings
from mmgap.locks import file_lock, remove_stale_tmp
from mmgap.method import finetune, run_control, run_two_stage, run_warmup
from mmgap.results import write_metrics
from mmgap.trainer import load_history, train_baseline


def cache_id(cache: Any) -> str:
    """A short identity of the data a run trains on: the cache folder's name (it holds the cache key)."""
    path = getattr(cache, "path", None)
    if path is not None:
        return Path(path).name
    h = hashlib.sha256()  # an in-memory cache (tests): hash what decides the training data
    for name in ("labels", "split"):
        h.update(np.ascontiguousarray(np.asarray(getattr(cache, name))).tobytes())
    h.update(str(np.asarray(cache.audio).shape).encode())
    return f"mem-{h.hexdigest()[:10]}"


def _digest(*parts: Any) -> str:
    """A short stable hash of JSON-able parts (run folders are keyed by every setting that shapes the run)."""
    text = json.dumps([p for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


WARMUP_FIELDS = ("batch_size", "optimizer", "lr", "momentum", "weight_decay", "lr_schedule", "lr_step", "lr_decay",
                 "warmup_epochs", "val_frac")
"""TrainConfig fields that shape the warm-up stage: a warm-up checkpoint is reusable when they agree."""


def warmup_identity(preset: Preset, cache: Any) -> dict[str, Any]:
    """Everything a warm-up checkpoint depends on: data, embedded and model configs, warm-up schedule."""
    d = preset.to_dict()
    return {"data": cache_id(cache), "embedded": d["embedded"], "model": d["model"],
            "train": {k: d["train"][k] for k in WARMUP_FIELDS}}


def warmup_preset(preset: Preset) -> Preset:
    """The named preset with only what shapes the warm-up taken from `preset` (data, model, WARMUP_FIELDS).

    A warm-up trained with it carries the same settings as notebook 02's default run, so 02 resumes it
    instead of refusing a checkpoint written with, say, another ρ (which the warm-up never uses).
    """
    d = preset.to_dict()
    fields = {**d["embedded"], **d["model"], **{k: d["train"][k] for k in WARMUP_FIELDS}}
    return get_preset(preset.name, **fields)


def warmup_dir(preset: Preset, cache: Any, seed: int) -> Path:
    """The shared warm-up folder of (data, preset, seed): ``runs/<preset>/warmup/<id>/seed<k>``."""
    tag = f"{preset.train.optimizer}-{_digest(warmup_identity(preset, cache))}"
    return paths.run_dir(preset.name, "warmup", tag, f"seed{seed}")


def warmup_is_compatible(ckpt_path: str | Path, preset: Preset) -> tuple[bool, str]:
    """Whether a checkpoint is a completed warm-up whose model and warm-up schedule match `preset`."""
    try:
        ck = load_safe(ckpt_path)
    except CheckpointError as exc:
        return False, str(exc)
    if ck.get("stage") != "warmup" or not ck.get("stage_complete", False):
        return False, f"{paths.shown(ckpt_path)} is not a completed warm-up (stage {ck.get('stage')!r})"
    saved = from_json(ck["preset"])
    mine = json.loads(json.dumps(preset.to_dict()))
    diffs = [f"model.{k}" for k in mine["model"] if saved["model"].get(k) != mine["model"][k]]
    diffs += [f"embedded.{k}" for k in mine["embedded"] if saved["embedded"].get(k) != mine["embedded"][k]]
    diffs += [f"train.{k}" for k in WARMUP_FIELDS if saved["train"].get(k) != mine["train"][k]]
    if diffs:
        return False, f"{paths.shown(ckpt_path)} was trained with other settings ({', '.join(diffs)})"
    return True, "compatible"


def ensure_warmup(
    cache: Any, preset: Preset, seed: int, device: str = "auto", candidates: Sequence[str | Path] = (),
    progress: bool = False, log: Any = print,
) -> Path:
    """A completed warm-up checkpoint (Eq. 10) for (data, preset, seed): reused when present, else trained.

    `candidates` are checkpoints to try first (e.g. the one notebook 02 wrote); the shared folder
    `warmup_dir` is tried next; otherwise the warm-up is trained there through `mmgap.method.run_warmup`.
    """
    folder = warmup_dir(preset, cache, seed)
    with run_lock(folder, log):  # one process trains a warm-up; the others wait and reuse it
        for cand in (*[paths.resolve(c) for c in candidates], folder / "warmup.pt"):
            if Path(cand).is_file():
                ok, why = warmup_is_compatible(cand, preset)
                if ok:
                    return Path(cand)
                log(f"note: not reusing {paths.shown(cand)}: {why}")
        log(f"note: no warm-up checkpoint for seed {seed} ({preset.train.optimizer}); training one in "
            f"{paths.shown(folder)} ({preset.train.warmup_epochs} epochs)")
        try:  # an interrupted warm-up in the folder continues where it stopped
            res = run_warmup(cache, warmup_preset(preset), folder, seed=seed, device=device, resume=True,
                             progress=progress)
        except ValueError as exc:  # its last.pt was written with other settings: start over
            log(f"note: not resuming the warm-up in {paths.shown(folder)}: {exc}")
            res = run_warmup(cache, warmup_preset(preset), folder, seed=seed, device=device, resume=False,
                             progress=progress)
        events.write_history_events(folder, res["history"])
        return Path(res["warmup_ckpt"])


def warmup_result(ckpt_path: str | Path) -> dict[str, Any]:
    """A finished warm-up checkpoint's history, timings and val-selected metrics (``val_acc``, ``test_acc``, ...)."""
    history = from_json(load_safe(ckpt_path)["history"])
    return {**best_row_summary(history, "warmup"), "history": history,
            "timings": stage_timings(history, "warmup"), "warmup_ckpt": str(ckpt_path)}


def warmup_test_acc(ckpt_path: str | Path) -> float | None:
    """Test accuracy of a warm-up checkpoint's validation-selected epoch (the starting point of Table VII)."""
    best = from_json(load_safe(ckpt_path)["best"]) or {}
    acc = (best.get("test") or {}).get("acc")
    return None if acc is None else float(acc)


def methods_root(preset: Preset) -> Path:
    """Where Table II's single-stage methods live (shared by notebooks 02 and 07):
    ``runs/<preset>/07_baselines/runs``."""
    return paths.run_dir(preset.name, "07_baselines", "runs")


def adaptive_root(preset: Preset) -> Path:
    """Where adaptive runs live (shared by notebooks 05 and 07): ``runs/<preset>/adaptive/``."""
    return paths.run_dir(preset.name, "adaptive")


def _test_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """acc, f1, acc_a, acc_v of the val-selected epoch on the test split (fractions), plus val accuracy."""
    out = {m: float(result[f"test_{m}"]) for m in METRICS}
    out.update({m: float(result[f"test_{m}"]) for m in TIER_METRICS if f"test_{m}" in result})
    out["val_acc"] = float(result["val_acc"])
    return out


def phenomena_fields(result: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers notebook 04 and Table III's comparison with the control read, from a run's result.

    ``start_*``: the mixture at the first refit (the warm-up model; adaptive runs only), ``end_*``: the
    mixture fitted on the last model (an eval pass over the training set, both arms), in raw gap units with
    location-labelled components; ``warm_*``: test metrics of the last warm-up epoch (where both arms start);
    ``last_*``: test metrics of the stage's last epoch.
    """
    out: dict[str, Any] = {}
    first = next((r for r in result.get("history", []) if r.get("stage") == "adaptive" and r.get("refitted")),
                 None)
    for tag, info in (("start", first), ("end", result.get("gaps_end"))):
        if not info or "pi1" not in info:
            continue
        out.update({f"{tag}_pi1": info["pi1"], f"{tag}_mu0_raw": info["mu0_raw"],
                    f"{tag}_mu1_raw": info["mu1_raw"], f"{tag}_mu_sep": abs(info["mu1_raw"] - info["mu0_raw"]),
                    f"{tag}_gap_mean": info["gap_mean"],
                    f"{tag}_auroc_w1": info.get("auroc_w1"), f"{tag}_bic_drop": info["bic1"] - info["bic2"]})
        out.update({f"{tag}_gap_mean_{t}": info[f"gap_mean_{t}"] for t in TIERS if f"gap_mean_{t}" in info})
    for tag, summary in (("warm", result.get("warmup_last")), ("last", result.get("last"))):
        for m in (*METRICS, *TIER_METRICS):
            if summary and f"test_{m}" in summary:
                out[f"{tag}_{m}"] = float(summary[f"test_{m}"])
    return out


def is_finished(run: Path, log: Any = print) -> bool:
    """Whether a run folder holds a completed run: its result.json, written last, readable.

    A result.json that is empty or cut (a disk that filled, a copy that stopped) marks no finished run: the
    run is redone, with a note naming the file.
    """
    path = run / "result.json"
    if not path.is_file():
        return False
    try:
        atomic.read_json(path, fix="the run is redone")
    except atomic.DamagedFile as exc:
        log(f"note: {exc}")
        return False
    return True


@contextlib.contextmanager
def run_lock(run: Path, log: Any = print) -> Iterator[Path]:
    """Hold the lock of a run folder (``<run>/.lock``): a second process asking for the same run waits, then
    finds it finished (or resumes it); leftovers of killed writers in the folder are removed."""
    run.mkdir(parents=True, exist_ok=True)
    with file_lock(run / ".lock", f"the run in {paths.shown(run)} (another notebook or worker is on it)", log):
        remove_stale_tmp(run, log)
        yield run


_F = TypeVar("_F", bound=Callable[..., Any])


def _one_at_a_time(folder_of: Callable[..., Path]) -> Callable[[_F], _F]:
    """Run the decorated run function under `run_lock` of its folder, ``folder_of(**its arguments)``."""
    def wrap(fn: _F) -> _F:
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def locked(*args: Any, **kwargs: Any) -> Any:
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            log = bound.arguments.get("log", print)
            with run_lock(folder_of(**bound.arguments), log):
                return fn(*args, **kwargs)
        locked.run_folder = folder_of  # type: ignore[attr-defined]  # read by `finished_row`
        return locked  # type: ignore[return-value]
    return wrap


def finished_row(fn: Callable[..., Any], cache: Any, kwargs: Mapping[str, Any], log: Any = print) -> dict | None:
    """The row `fn(cache=cache, **kwargs)` would return without training (its run is finished), else None.

    This is how a sweep's driver leaves finished runs out before submitting anything: no worker process, no
    job, no GPU for a reused run. None too for ``fresh=True`` and for functions that are not run functions.
    """
    folder_of = getattr(fn, "run_folder", None)
    if folder_of is None or kwargs.get("fresh"):
        return None
    sig = inspect.signature(fn).bind(cache=cache, **kwargs)
    sig.apply_defaults()
    run = folder_of(**sig.arguments)
    if not is_finished(run, log):
        return None
    return {**_load_result(run), "reused": True}


def cache_dataset(cache: Any) -> str:
    """The dataset name a feature cache was built for (its protocol's name; "embedded" for arrays without one)."""
    return str((getattr(cache, "protocol", None) or {}).get("name", "embedded"))


def _save_result(run: Path, row: Mapping[str, Any], card: ProtocolCard) -> None:
    """metrics.json (the row, the run's protocol card and its epoch history), the TensorBoard events of that
    history (`mmgap.events`), then result.json (the row), which marks it finished."""
    history = load_history(run) if (run / "last.pt").is_file() else []
    write_metrics(run, {**row, "protocol": card.to_dict(), "history": history})
    events.write_history_events(run, history)
    text = json.dumps(dict(row), sort_keys=True, default=str) + "\n"
    atomic.write_text(run / "result.json", text)


def _load_result(run: Path) -> dict[str, Any]:
    return atomic.read_json(run / "result.json", fix="delete it: the run is redone")


def adaptive_run_dir(cache: Any, preset: Preset, setting: AdaptiveSetting, seed: int,
                      root: str | Path | None = None, adam_lr: float | None = None, **_: Any) -> Path:
    """The folder of one adaptive run: ``<root>/<setting key>-<hash of all settings and data>/seed<k>``."""
    run_preset = setting_preset(preset, setting, adam_lr)
    cfg = None if setting.is_control else dataclasses.asdict(loss_config(run_preset, setting))
    tag = _digest(run_preset.to_dict(), cache_id(cache), cfg)
    base = Path(root) if root is not None else adaptive_root(preset)
    return base / f"{setting.key}-{tag}" / f"seed{seed}"


def _adaptive_folder(cache: Any, preset: Preset, setting: AdaptiveSetting, seed: int, root: str | Path | None = None,
                     adam_lr: float | None = None, **_: Any) -> Path:
    """The folder `run_adaptive` trains in (the default learning rate of Adam filled in)."""
    return adaptive_run_dir(cache, preset, setting, seed, root, adam_lr_for(preset) if adam_lr is None else adam_lr)


@_one_at_a_time(_adaptive_folder)
def run_adaptive(
    cache: Any, preset: Preset, setting: AdaptiveSetting, seed: int, root: str | Path | None = None,
    device: str = "auto", adam_lr: float | None = None, fresh: bool = False, log: Any = print,
    progress: bool = False,
) -> dict[str, Any]:
    """One adaptive run (Eq. 11) of `setting` for `seed` from the shared warm-up; returns its row."""
    adam_lr = adam_lr_for(preset) if adam_lr is None else adam_lr
    run_preset = setting_preset(preset, setting, adam_lr)
    run = adaptive_run_dir(cache, preset, setting, seed, root, adam_lr)
    if is_finished(run) and not fresh:
        return {**_load_result(run), "reused": True}
    warm_preset = setting_warmup_preset(preset, setting, adam_lr)
    warm = ensure_warmup(cache, warm_preset, seed, device, log=log, progress=progress)
    t0 = time.perf_counter()
    if setting.is_control:
        res = run_control(cache, run_preset, run, warm, seed=seed, device=device, resume=not fresh,
                          progress=progress)
    else:
        res = run_two_stage(cache, run_preset, run, seed=seed, device=device, loss_cfg=loss_config(run_preset, setting),
                            resume=not fresh, warmup_ckpt=warm, progress=progress)
    row = {"setting": setting.key, "seed": seed, **_test_metrics(res), "seconds": time.perf_counter() - t0,
           "warmup_acc": (res.get("warmup") or {}).get("test_acc"), "run_dir": str(run),
           **dataclasses.asdict(setting), **phenomena_fields(res)}
    method = "control" if setting.is_control else f"ours_{setting.gap}"
    _save_result(run, row, protocol_card(run_preset, cache_dataset(cache), method, seeds=[seed], device=device))
    return {**row, "reused": False}


def _cell_dir(root: str | Path, tag: str, preset: Preset, cache: Any, epochs: int, seed: int) -> Path:
    """``<root>/<tag>-<hash of the preset, the data and the epochs>/seed<k>``: one folder per distinct run."""
    return Path(root) / f"{tag}-{_digest(preset.to_dict(), cache_id(cache), epochs)}" / f"seed{seed}"


def purify_run_dir(cache: Any, preset: Preset, seed: int, tau: float, root: str | Path, epochs: int,
                   **_: Any) -> Path:
    """The folder of one Table VII cell (`purify_one`)."""
    return _cell_dir(root, f"tau{tau:g}", preset, cache, epochs, seed)


@_one_at_a_time(purify_run_dir)
def purify_one(
    cache: Any, preset: Preset, seed: int, tau: float, root: str | Path, epochs: int, device: str = "auto",
    fresh: bool = False, log: Any = print,
) -> dict[str, Any]:
    """One Table VII cell: fine-tune seed's warm-up (Eq. 10) on rows with w0 ≥ τ (τ = 0: all rows)."""
    run = _cell_dir(root, f"tau{tau:g}", preset, cache, epochs, seed)
    label = PURIFICATION_CONTROL if tau == 0.0 else f"≥ {tau:.0%}"
    if is_finished(run) and not fresh:
        return {**_load_result(run), "reused": True}
    warm = ensure_warmup(cache, preset, seed, device, log=log)
    t0 = time.perf_counter()
    try:
        res = finetune(cache, preset, run, warm, tau, seed=seed, epochs=epochs, device=device,
                       resume=not fresh, progress=False, test_every_epoch=False)
    except ValueError as exc:  # fewer kept clips than one batch: report the threshold as empty, go on
        kept = re.search(r"only (\d+) training clips", str(exc))
        if kept is None:
            raise
        n_train = int(np.sum(np.asarray(cache.split) == 0))
        log(f"note: seed {seed}, τ = {tau}: {exc}; the row is left empty")
        return {"row": label, "tau": tau, "seed": seed, "data_pct": 100.0 * int(kept.group(1)) / n_train,
                "subset_size": int(kept.group(1)), "train_size": n_train,
                **{m: float("nan") for m in (*METRICS, "val_acc")}, "warmup_acc": warmup_test_acc(warm),
                "seconds": time.perf_counter() - t0, "run_dir": str(run), "reused": False}
    row = {"row": label, "tau": tau, "seed": seed, "data_pct": 100.0 * res["subset_size"] / res["train_size"],
           "subset_size": int(res["subset_size"]), "train_size": int(res["train_size"]),
           **{k: v for k, v in res.items() if k.startswith("kept_")},
           **_test_metrics(res), "warmup_acc": warmup_test_acc(warm), "seconds": time.perf_counter() - t0,
           "run_dir": str(run)}
    _save_result(run, row, protocol_card(preset, cache_dataset(cache), "control", seeds=[seed], device=device))
    return {**row, "reused": False}


def baseline_run_dir(cache: Any, preset: Preset, method: str, seed: int, root: str | Path, epochs: int,
                     **_: Any) -> Path:
    """The folder of one Table II cell of a baseline (`baseline_one`)."""
    return _cell_dir(root, method, method_preset(preset, method, epochs), cache, epochs, seed)


@_one_at_a_time(baseline_run_dir)
def baseline_one(
    cache: Any, preset: Preset, method: str, seed: int, root: str | Path, epochs: int, device: str = "auto",
    fresh: bool = False, log: Any = print,
) -> dict[str, Any]:
    """One Table II cell of a baseline: `mmgap.baselines.get(method)` trained for `epochs` (val-selected)."""
    dataset = cache_dataset(cache)
    run_preset = method_preset(preset, method, epochs)  # at `paper`: the authors' learning-rate decay (mmgap.cards)
    run = baseline_run_dir(cache, preset, method, seed, root, epochs)
    if is_finished(run) and not fresh:
        return {**_load_result(run), "reused": True}
    t0 = time.perf_counter()
    strategy = baselines.get(method, **method_kwargs(method, dataset, preset))
    try:
        res = train_baseline(cache, run_preset, strategy, run, seed=seed, epochs=epochs,
                             device=device, resume=not fresh, progress=False, test_every_epoch=False)
    except FloatingPointError as exc:  # a diverging method is a result (shown as failed); it must not end a sweep
        # Anything else (CUDA out of memory, a fault in the code) stops the sweep with its own error: finished
        # runs are reused when it is run again.
        log(f"FAILED: {method}, seed {seed}: {type(exc).__name__}: {exc}")
        empty = {m: float("nan") for m in (*METRICS, "val_acc")}
        return {"seed": seed, **empty, "seconds": time.perf_counter() - t0, "run_dir": str(run),
                "error": f"{type(exc).__name__}: {exc}", "reused": False}
    row = {"seed": seed, **_test_metrics(res), "seconds": time.perf_counter() - t0, "run_dir": str(run)}
    _save_result(run, row, protocol_card(preset, dataset, method, seeds=[seed], device=device, epochs=epochs))
    return {**row, "reused": False}
