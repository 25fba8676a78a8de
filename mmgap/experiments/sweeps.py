"""The sweeps behind notebooks 04-07: the runs of a table for every seed, one row per run.

Each sweep plans its runs (`mmgap.experiments.settings`), trains the missing shared warm-ups first (runs
never race for one), then the runs themselves on worker processes (`mmgap.experiments.workers`), reusing
finished ones (`mmgap.experiments.runs`), and returns a DataFrame of rows for `mmgap.experiments.reporting`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
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
from mmgap.experiments.workers import Job, run_jobs


def run_arms(
    cache: Any, preset: Preset, setting: AdaptiveSetting, seed: int, device: str = "auto",
    adam_lr: float | None = None, workers: int = 1, fresh: bool = False, log: Any = print,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`setting`'s adaptive run and its control (`control_setting`) from one warm-up: (row, control row).

    The shared warm-up is made first (never twice at once); the two arms then train side by side on `workers`
    processes. Finished runs are reused, as everywhere.
    """
    adam_lr = adam_lr_for(preset) if adam_lr is None else adam_lr
    warm = setting_warmup_preset(preset, setting, adam_lr)
    calls = [(run_adaptive, {"preset": preset, "setting": s, "seed": seed, "device": device, "adam_lr": adam_lr,
                               "fresh": fresh}) for s in (setting, control_setting(setting))]
    todo = [c for c in calls if fresh or not is_finished(adaptive_run_dir(cache, **c[1]))]
    if todo and not _warmup_ready(cache, warm, seed):
        run_jobs(cache, _warmup_jobs([(warm, seed)], device), 1, log, desc="warm-up")
    row, row_c = run_jobs(cache, calls, workers if len(todo) > 1 else 1, log, desc="adaptive and control")
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
    log: Any = print,
) -> dict[int, Path]:
    """`ensure_warmup` for each seed (missing ones trained in parallel); seed -> checkpoint path."""
    missing = [s for s in seeds if not _warmup_ready(cache, preset, s)]
    run_jobs(cache, _warmup_jobs([(preset, s) for s in missing], device), workers, log, desc="warm-ups")
    return {s: ensure_warmup(cache, preset, s, device, log=log) for s in seeds}


def run_ablations(
    cache: Any, preset: Preset, tables: Sequence[str] = TABLES, seeds: Sequence[int] | None = None,
    root: str | Path | None = None, device: str = "auto", adam_lr: float | None = None, fresh: bool = False,
    workers: int = 1, log: Any = print,
) -> pd.DataFrame:
    """Tables III-VI: every distinct adaptive setting once per seed, one row per (table, row, seed)."""
    seeds = check_seeds(seeds, preset)
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
    run_jobs(cache, _warmup_jobs(warm, device), workers, log, desc="warm-ups")
    done = run_jobs(cache, calls, workers, log, desc="adaptive runs")
    results = dict(zip(jobs, done, strict=True))
    rows = [{"table": p.table, "row": p.row, **results[(p.setting, seed)]} for p in plan for seed in seeds]
    return pd.DataFrame(rows)


def run_purification(
    cache: Any, preset: Preset, taus: Sequence[float] = TAUS, seeds: Sequence[int] | None = None,
    root: str | Path | None = None, device: str = "auto", epochs: int | None = None, fresh: bool = False,
    workers: int = 1, log: Any = print,
) -> pd.DataFrame:
    """Table VII: from each seed's warm-up, fine-tune (Eq. 10) on rows with w0 ≥ τ, plus the 100 % baseline.

    The baseline row continues the same warm-up on all training rows (τ = 0) for the same epochs: the fair
    comparison, which separates the effect of purification from that of training longer.
    """
    seeds = check_seeds(seeds, preset)
    taus = check_taus(list(taus))
    n_epochs = preset.train.finetune_epochs if epochs is None else int(epochs)
    root = Path(root) if root is not None else paths.run_dir(preset.name, "06_purification", "runs")
    ensure_warmups(cache, preset, seeds, device, workers, log)
    calls = [(purify_one, {"preset": preset, "seed": seed, "tau": tau, "root": root, "epochs": n_epochs,
                             "device": device, "fresh": fresh}) for seed in seeds for tau in (0.0, *taus)]
    return pd.DataFrame(run_jobs(cache, calls, workers, log, desc="fine-tuning runs"))


def run_methods(
    cache: Any, preset: Preset, methods: Sequence[str] | None = None, seeds: Sequence[int] | None = None,
    root: str | Path | None = None, device: str = "auto", fresh: bool = False, workers: int = 1,
    log: Any = print,
) -> pd.DataFrame:
    """Table II: every method on the same data, model, split and seeds; one row per (method, seed).

    Baselines train for warm-up + adaptive epochs, the same budget as ours (two stages from the shared
    warm-up), with the defaults their modules document (`mmgap.baselines.get`). ``"control"`` is the same
    two-stage budget with the warm-up loss in both stages (`control_setting`, shared with notebooks 04-05).
    """
    seeds = check_seeds(seeds, preset)
    methods = check_methods(methods)
    root = Path(root) if root is not None else methods_root(preset)
    base = AdaptiveSetting.from_preset(preset)
    epochs = table_ii_epochs(preset)
    if any(m in OURS or m == CONTROL for m in methods):
        ensure_warmups(cache, preset, seeds, device, workers, log)
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
    done = run_jobs(cache, calls, workers, log, desc="method runs")
    rows = [{"method": m, "label": method_label(m), **row} for m, row in zip(names, done, strict=True)]
    return pd.DataFrame(rows)
