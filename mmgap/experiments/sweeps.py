"""The sweeps behind notebooks 04-07: the runs of a table for every seed, one row per run.

Each sweep plans its runs (`mmgap.experiments.settings`), trains the missing shared warm-ups first (runs
never race for one), then the runs themselves on worker processes (`mmgap.experiments.workers`), and returns
a DataFrame of rows for `mmgap.experiments.reporting`. Finished runs are read by the driver before anything is
submitted (`mmgap.experiments.runs.finished_row`): only missing runs reach the engine.

Every sweep takes the engine's parameters: ``executor`` (``"local"``, ``"ray"`` or an `Executor`), ``address``
(a Ray cluster), ``gpus_per_run`` (a Ray run's share of a GPU) and ``runs_per_gpu`` (local runs per GPU).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import pandas as pd

from mmgap import paths
from mmgap.config import Preset
from mmgap.experiments.params import check_methods, check_seeds, check_taus
from mmgap.experiments.runs import (
    adaptive_root,
    adaptive_run_dir,
    baseline_one,
    ensure_warmup,
    finished_row,
    is_finished,
    methods_root,
    purify_one,
    run_adaptive,
    warmup_dir,
    warmup_is_compatible,
    warmup_preset,
)
from mmgap.experiments.settings import (
    CONTROL,
    OURS,
    TABLES,
    TAUS,
    AdaptiveSetting,
    ablation_plan,
    adam_lr_for,
    control_setting,
    distinct_settings,
    method_label,
    setting_warmup_preset,
    table_ii_epochs,
)
from mmgap.experiments.workers import Job, check_executor, run_jobs


def _engine(executor: str | Executor, address: str | None, gpus_per_run: float | None,
            runs_per_gpu: int) -> dict[str, Any]:
    """The engine parameters of a sweep, checked before anything runs."""
    check_executor(executor, address, gpus_per_run, runs_per_gpu)
    return {"executor": executor, "address": address, "gpus_per_run": gpus_per_run, "runs_per_gpu": runs_per_gpu}


def run_missing(cache: Any, calls: Sequence[Job], workers: int = 1, log: Any = print, desc: str = "runs",
                **engine: Any) -> list[Any]:
    """`run_jobs` for the calls whose runs are not finished; finished ones are read here, in the driver."""
    rows: list[Any] = [finished_row(fn, cache, kw, log) for fn, kw in calls]
    todo = [i for i, row in enumerate(rows) if row is None]
    if len(todo) < len(calls):
        log(f"{desc}: {len(calls) - len(todo)} of {len(calls)} finished (reused); "
            + (f"submitting {len(todo)}" if todo else "nothing to submit"))
    done = run_jobs(cache, [calls[i] for i in todo], workers, log, desc=desc, **engine)
    for i, row in zip(todo, done, strict=True):
        rows[i] = row
    return rows


def run_arms(
    cache: Any, preset: Preset, setting: AdaptiveSetting, seed: int, device: str = "auto",
    adam_lr: float | None = None, workers: int = 1, fresh: bool = False, log: Any = print,
    executor: str | Executor = "local", address: str | None = None,
    gpus_per_run: float | None = None, runs_per_gpu: int = 1,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`setting`'s adaptive run and its control (`control_setting`) from one warm-up: (row, control row).

    The shared warm-up is made first (never twice at once); the two arms then train side by side on `workers`
    processes. Finished runs are reused, as everywhere.
    """
    engine = _engine(executor, address, gpus_per_run, runs_per_gpu)
    adam_lr = adam_lr_for(preset) if adam_lr is None else adam_lr
    warm = setting_warmup_preset(preset, setting, adam_lr)
    calls = [(run_adaptive, {"preset": preset, "setting": s, "seed": seed, "device": device, "adam_lr": adam_lr,
                               "fresh": fresh}) for s in (setting, control_setting(setting))]
    todo = [c for c in calls if fresh or not is_finished(adaptive_run_dir(cache, **c[1]))]
    if todo and not _warmup_ready(cache, warm, seed):
        run_jobs(cache, _warmup_jobs([(warm, seed)], device), 1, log, desc="warm-up", **engine)
    row, row_c = run_missing(cache, calls, workers if len(todo) > 1 else 1, log, "adaptive and control", **engine)
    return row, row_c


def _warmup_jobs(pairs: Iterable[tuple[Preset, int]], device: str) -> list[Job]:
    """One ensure_warmup job per distinct (warm-up preset, seed), run first: runs never race for one."""
    seen: dict[tuple[str, int], tuple[str, dict[str, Any]]] = {}
    for warm, seed in pairs:
        key = (json.dumps(warmup_preset(warm).to_dict(), sort_keys=True), seed)
        seen.setdefault(key, (ensure_warmup, {"preset": warm, "seed": seed, "device": device}))
    return list(seen.values())


def _warmup_ready(cache: Any, preset: Preset, seed: int) -> bool:
    """Whether the shared folder already holds a compatible warm-up for (preset, seed)."""
    ckpt = warmup_dir(preset, cache, seed) / "warmup.pt"
    return ckpt.is_file() and warmup_is_compatible(ckpt, preset)[0]


def ensure_warmups(
    cache: Any, preset: Preset, seeds: Sequence[int], device: str = "auto", workers: int = 1,
    log: Any = print, executor: str | Executor = "local", address: str | None = None,
    gpus_per_run: float | None = None, runs_per_gpu: int = 1,
) -> dict[int, Path]:
    """`ensure_warmup` for each seed (missing ones trained in parallel); seed -> checkpoint path."""
    engine = _engine(executor, address, gpus_per_run, runs_per_gpu)
    missing = [s for s in seeds if not _warmup_ready(cache, preset, s)]
    run_jobs(cache, _warmup_jobs([(preset, s) for s in missing], device), workers, log, desc="warm-ups", **engine)
    return {s: ensure_warmup(cache, preset, s, device, log=log) for s in seeds}


def run_ablations(
    cache: Any, preset: Preset, tables: Sequence[str] = TABLES, seeds: Sequence[int] | None = None,
    root: str | Path | None = None, device: str = "auto", adam_lr: float | None = None, fresh: bool = False,
    workers: int = 1, log: Any = print, executor: str | Executor = "local", address: str | None = None,
    gpus_per_run: float | None = None, runs_per_gpu: int = 1,
) -> pd.DataFrame:
    """Tables III-VI: every distinct adaptive setting once per seed, one row per (table, row, seed)."""
    seeds = check_seeds(seeds, preset)
    engine = _engine(executor, address, gpus_per_run, runs_per_gpu)
    adam_lr = adam_lr_for(preset) if adam_lr is None else float(adam_lr)
    plan = ablation_plan(tables, AdaptiveSetting.from_preset(preset))
    settings = distinct_settings(plan)
    root = Path(root) if root is not None else adaptive_root(preset)
    log(f"{len(plan)} table rows -> {len(settings)} distinct settings × {len(seeds)} seeds = "
        f"{len(settings) * len(seeds)} adaptive runs")
    jobs = [(s, seed) for seed in seeds for s in settings]
    calls = [(run_adaptive, {"preset": preset, "setting": s, "seed": seed, "root": root, "device": device,
                               "adam_lr": adam_lr, "fresh": fresh}) for s, seed in jobs]
    todo = [(s, seed) for (s, seed), (_, kw) in zip(jobs, calls, strict=True)
            if fresh or not is_finished(adaptive_run_dir(cache, **kw))]
    warm = [(setting_warmup_preset(preset, s, adam_lr), seed) for s, seed in todo]
    warm = [(p, seed) for p, seed in warm if not _warmup_ready(cache, p, seed)]
    run_jobs(cache, _warmup_jobs(warm, device), workers, log, desc="warm-ups", **engine)
    done = run_missing(cache, calls, workers, log, "adaptive runs", **engine)
    results = dict(zip(jobs, done, strict=True))
    rows = [{"table": p.table, "row": p.row, **results[(p.setting, seed)]} for p in plan for seed in seeds]
    return pd.DataFrame(rows)


def run_purification(
    cache: Any, preset: Preset, taus: Sequence[float] = TAUS, seeds: Sequence[int] | None = None,
    root: str | Path | None = None, device: str = "auto", epochs: int | None = None, fresh: bool = False,
    workers: int = 1, log: Any = print, executor: str | Executor = "local", address: str | None = None,
    gpus_per_run: float | None = None, runs_per_gpu: int = 1,
) -> pd.DataFrame:
    """Table VII: from each seed's warm-up, fine-tune (Eq. 10) on rows with w0 ≥ τ, plus the 100 % baseline.

    The baseline row continues the same warm-up on all training rows (τ = 0) for the same epochs: the fair
    comparison, which separates the effect of purification from that of training longer.
    """
    seeds = check_seeds(seeds, preset)
    taus = check_taus(list(taus))
    engine = _engine(executor, address, gpus_per_run, runs_per_gpu)
    n_epochs = preset.train.finetune_epochs if epochs is None else int(epochs)
    root = Path(root) if root is not None else paths.run_dir(preset.name, "06_purification", "runs")
    ensure_warmups(cache, preset, seeds, device, workers, log, **engine)
    calls = [(purify_one, {"preset": preset, "seed": seed, "tau": tau, "root": root, "epochs": n_epochs,
                             "device": device, "fresh": fresh}) for seed in seeds for tau in (0.0, *taus)]
    return pd.DataFrame(run_missing(cache, calls, workers, log, "fine-tuning runs", **engine))


def run_methods(
    cache: Any, preset: Preset, methods: Sequence[str] | None = None, seeds: Sequence[int] | None = None,
    root: str | Path | None = None, device: str = "auto", fresh: bool = False, workers: int = 1,
    log: Any = print, executor: str | Executor = "local", address: str | None = None,
    gpus_per_run: float | None = None, runs_per_gpu: int = 1,
) -> pd.DataFrame:
    """Table II: every method on the same data, model, split and seeds; one row per (method, seed).

    Baselines train for warm-up + adaptive epochs, the same budget as ours (two stages from the shared
    warm-up), with the defaults their modules document (`mmgap.baselines.get`). ``"control"`` is the same
    two-stage budget with the warm-up loss in both stages (`control_setting`, shared with notebooks 04-05).
    """
    seeds = check_seeds(seeds, preset)
    methods = check_methods(methods)
    engine = _engine(executor, address, gpus_per_run, runs_per_gpu)
    root = Path(root) if root is not None else methods_root(preset)
    base = AdaptiveSetting.from_preset(preset)
    epochs = table_ii_epochs(preset)
    if any(m in OURS or m == CONTROL for m in methods):
        ensure_warmups(cache, preset, seeds, device, workers, log, **engine)
    calls, names = [], []
    for seed in seeds:
        for method in methods:
            names.append(method)
            if method in OURS or method == CONTROL:
                setting = control_setting(base) if method == CONTROL else dataclasses.replace(base, gap=OURS[method])
                calls.append((run_adaptive, {"preset": preset, "setting": setting, "seed": seed,
                                               "device": device, "fresh": fresh}))
            else:
                calls.append((baseline_one, {"preset": preset, "method": method, "seed": seed, "root": root,
                                               "epochs": epochs, "device": device, "fresh": fresh}))
    done = run_missing(cache, calls, workers, log, "method runs", **engine)
    rows = [{"method": m, "label": method_label(m), **row} for m, row in zip(names, done, strict=True)]
    return pd.DataFrame(rows)
