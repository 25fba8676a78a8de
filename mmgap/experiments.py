"""Sweeps behind notebooks 05-07: run each setting for each seed and collect one row per run.

The notebooks stay thin: they validate their parameters, call one function here, then turn the rows into
mean ± std tables (`mmgap.results.mean_std_table`) and figures. Rows are plain dicts with the test-split
metrics of the validation-selected epoch: ``acc``, ``f1`` (macro-F1), ``acc_a``, ``acc_v`` (per-modality
accuracy of the logits of Eq. 2), all fractions in [0, 1].

Work is shared wherever the paper's tables overlap:
- one warm-up (Eq. 10) per training seed serves every adaptive run (Tables III-VI, VII and "ours" in II);
  Adam rows of Table IV start from an Adam warm-up, since "same state" carries the warm-up's optimizer state;
- a distinct adaptive setting runs once per seed even when several tables list it (the full model of
  Table III is SGD-reset of IV, GMM(Prob) of V and ρ = 0.95 of VI);
- a finished run whose settings are identical is reused (its folder name holds a hash of every setting), so
  re-executing a notebook only trains what changed; ``fresh=True`` retrains.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmgap import paths
from mmgap.config import GAPS, MIXTURES, ConfigError, Preset
from mmgap.data.manifest import TIERS

TABLES = ("III", "IV", "V", "VI")
TABLE_TITLES = {
    "III": "Table III: ablation of the adaptive loss's terms (Eq. 11)",
    "IV": "Table IV: optimizer and its state between the stages",
    "V": "Table V: mixture family × modality gap",
    "VI": "Table VI: annealing decay rate ρ (λ_t = ρ^epoch)",
}
ABLATION_ROWS: tuple[tuple[str, str], ...] = (
    ("full", "Ours (full model)"),
    ("no_fusion", "w/o L_f (α = 0)"),
    ("no_gap_reg", "w/o |g|² (β = 0)"),
    ("no_align", "w/o |g − μ0|² (γ = 0)"),
    ("no_weights", "w/o w0, w1 (both set to 1)"),
    ("no_unimodal", "w/o L_a, L_v"),
)
OPTIMIZER_ROWS: tuple[tuple[str, bool, str], ...] = (
    ("sgd", True, "SGD (reset state)"),
    ("adam", True, "Adam (reset state)"),
    ("sgd", False, "SGD (same state)"),
    ("adam", False, "Adam (same state)"),
)
MIXTURE_LABELS = {"gmm": "GMM", "smm": "SMM", "lmm": "LMM"}
GAP_LABELS = {"prob": "Prob", "kl": "KL"}
RHOS: tuple[float, ...] = (1.0, 0.95, 0.9, 0.85, 0.8)
TAUS: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
ADAM_LR_RATIO = 0.5
"""Adam's learning rate in Table IV as a fraction of the preset's SGD rate (the paper does not state its rate).
Measured on the embedded data of generator v3 (Adam warm-up, 5 epochs, seed 0, fused / audio test accuracy):
3e-4 -> 42 / 12 %, 1e-3 -> 50 / 25 %, 3e-3 -> 81 / 67 %, 1e-2 -> 92 / 82 %: too small a rate leaves the audio
branch untrained. 0.5 gives 1e-2 at demo (SGD 0.02) and 1e-3, Adam's usual rate, at the paper's SGD 2e-3."""


def adam_lr_for(preset: Preset) -> float:
    """Adam's learning rate for a preset: ``ADAM_LR_RATIO`` × its SGD rate."""
    return ADAM_LR_RATIO * float(preset.train.lr)

OURS: dict[str, str] = {"ours_prob": "prob", "ours_kl": "kl"}
"""Table II's rows of the method itself: name -> gap (Eq. 5 or Eq. 6); as `mmgap.baselines.TWO_STAGE`."""
CONTROL = "control"
"""The adaptive stage's control arm: the warm-up loss (Eq. 10) continued from the same warm-up checkpoint for
the same epochs (`mmgap.train.run_control`). A row of Tables II and III, and the comparison of notebook 04."""
CONTROL_LABEL = "Control (warm-up loss continued)"
UNIMODAL = ("audio_only", "visual_only")
"""Reference rows of Table II (one encoder trained alone): not competitors, left out of the verdict."""
METRICS = ("acc", "f1", "acc_a", "acc_v")
TIER_METRICS = tuple(f"{m}_{t}" for m in ("acc_v", "acc") for t in TIERS)
"""Per ground-truth visual tier (embedded data): visual and fused test accuracy of the selected epoch."""
METRIC_LABELS = {"acc": "Accuracy (%)", "f1": "Macro F1 (%)", "acc_a": "Audio acc. (%)",
                 "acc_v": "Visual acc. (%)", "acc_v_clean": "Visual acc., clean (%)",
                 "acc_v_hard": "Visual acc., hard (%)", "acc_v_corrupt": "Visual acc., corrupt (%)"}
PURIFICATION_CONTROL = "Control: 100 % of the data (τ = 0)"
"""Table VII's control row: the same warm-up fine-tuned for the same epochs on every training clip."""


# ---------------------------------------------------------------------------------------------- parameters


def _from_text(value: Any) -> Any:
    """A list given as text (``papermill -p seeds '[0, 1]'`` passes a string): JSON, else comma-separated."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        items = [v.strip().strip("'\"") for v in value.strip("[]").split(",") if v.strip()]
        return [_number(v) for v in items]


def _number(text: str) -> Any:
    """An int or float when the text is one, else the text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def check_common(dataset: str, seed: Any, device: str) -> None:
    """Validate the parameters every notebook takes (dataset, seed, device); raises ConfigError."""
    from mmgap.data import DATASETS

    if dataset not in DATASETS:
        raise ConfigError(f"dataset={dataset!r} is unknown: choose one of {', '.join(DATASETS)} (see data/README.md)")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed={seed!r} must be a non-negative integer")
    if device not in ("auto", "cpu") and not str(device).startswith("cuda"):
        raise ConfigError(f"device={device!r} must be 'auto', 'cpu' or 'cuda'")


def check_run_params(dataset: str, seed: Any, device: str, fresh: Any, workers: Any) -> tuple["torch.device", int]:
    """Validate the parameters the sweep notebooks share; returns (device, workers) or raises ConfigError."""
    from mmgap.train import resolve_device

    check_common(dataset, seed, device)
    try:
        dev = resolve_device(device)
    except ValueError as err:  # e.g. "cuda" asked for on a machine without a GPU
        raise ConfigError(str(err)) from None
    if not isinstance(fresh, bool):
        raise ConfigError(f"fresh={fresh!r} must be True or False")
    workers = default_workers(str(dev)) if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers={workers!r} must be a positive integer (or None: one per CPU core)")
    return dev, workers


def check_seeds(seeds: Any, preset: Preset, first: int = 0) -> list[int]:
    """The training seeds: ``None`` -> as many as the preset has, counting from `first` (0, 1, 2 at demo)."""
    seeds = _from_text(seeds)
    if seeds is None:
        return [int(first) + k for k in range(len(preset.seeds))]
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        seeds = [int(seeds)]
    if not isinstance(seeds, (list, tuple)) or not seeds:
        raise ConfigError(f"seeds={seeds!r}: expected a non-empty list of integers, e.g. [0, 1, 2], or None")
    bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0]
    if bad:
        raise ConfigError(f"seeds={seeds!r}: {bad} are not non-negative integers")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds={seeds!r} repeats a seed; each seed must appear once")
    return [int(s) for s in seeds]


def check_tables(tables: Any) -> list[str]:
    """Table names to run, in the paper's order: a subset of III, IV, V, VI (a string or a list)."""
    tables = _from_text(tables)
    if not isinstance(tables, (list, tuple)) or not tables:
        raise ConfigError(f"tables={tables!r}: expected a non-empty list drawn from {list(TABLES)}")
    unknown = [t for t in tables if t not in TABLES]
    if unknown:
        raise ConfigError(f"tables={tables!r}: unknown {unknown}; choose from {list(TABLES)} "
                          "(Roman numerals)")
    return [t for t in TABLES if t in tables]


def check_taus(taus: Any) -> list[float]:
    """Purification thresholds τ on w0: a non-empty list of numbers in (0, 1], sorted ascending."""
    taus = _from_text(taus)
    if not isinstance(taus, (list, tuple)) or not taus:
        raise ConfigError(f"taus={taus!r}: expected a non-empty list of thresholds in (0, 1], "
                          "e.g. [0.5, 0.9]")
    bad = [t for t in taus if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 < t <= 1.0]
    if bad:
        raise ConfigError(f"taus={taus!r}: {bad} are not thresholds in (0, 1] "
                          "(w0 is a posterior probability)")
    return sorted({float(t) for t in taus})


def check_methods(methods: Any) -> list[str]:
    """Table II method names, validated against `mmgap.baselines.NAMES` and the two variants of ours."""
    known = list(_baseline_names()) + [CONTROL] + list(OURS)
    methods = _from_text(methods)
    if methods is None:
        return known
    if not isinstance(methods, (list, tuple)) or not methods:
        raise ConfigError(f"methods={methods!r}: expected a non-empty list drawn from {known}, "
                          "or None for all")
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise ConfigError(f"methods={methods!r}: unknown {unknown}; choose from {known}")
    if len(set(methods)) != len(methods):
        raise ConfigError(f"methods={methods!r} repeats a method")
    return list(methods)


def _baseline_names() -> tuple[str, ...]:
    """Names registered in mmgap.baselines, in Table II's order."""
    from mmgap import baselines

    return tuple(baselines.NAMES)


def method_label(name: str) -> str:
    """Table II's row label of a method name (`mmgap.baselines.LABELS`)."""
    from mmgap import baselines

    return CONTROL_LABEL if name == CONTROL else baselines.LABELS.get(name, name)


# ---------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class AdaptiveSetting:
    """One distinct configuration of the adaptive stage (Eq. 11): what Tables III-VI vary."""

    ablation: str = "full"        # a Table III row of AdaptiveLossConfig.ablation
    optimizer: str = "sgd"        # "sgd" | "adam", used in both stages (Table IV)
    reset_optimizer: bool = True  # fresh optimizer at the adaptive stage (True) or the warm-up's state
    mixture: str = "gmm"          # "gmm" | "smm" | "lmm" (Table V)
    gap: str = "prob"             # "prob" (Eq. 5) | "kl" (Eq. 6)
    rho: float = 0.95             # λ_t = ρ^epoch (Table VI)
    posterior: str = "eq9"        # "eq9" (as printed) | "monotone" (w1 held beyond μ1), see mmgap.mixture

    @classmethod
    def from_preset(cls, preset: Preset) -> "AdaptiveSetting":
        """The preset's own adaptive configuration (the 'full model' row of every table)."""
        t = preset.train
        return cls("full", t.optimizer, t.reset_optimizer, t.mixture, t.gap, float(t.rho), t.posterior)

    @property
    def is_control(self) -> bool:
        """Whether this is the control arm (Eq. 10 continued) rather than an adaptive setting."""
        return self.ablation == CONTROL

    @property
    def key(self) -> str:
        """A readable folder name, e.g. ``full-sgd-reset-gmm-prob-rho0.95`` (``control-sgd-reset-gmm-prob``)."""
        state = "reset" if self.reset_optimizer else "same"
        tail = "" if self.posterior == "eq9" else f"-{self.posterior}"
        if self.is_control:
            return f"{CONTROL}-{self.optimizer}-{state}-{self.mixture}-{self.gap}{tail}"
        return f"{self.ablation}-{self.optimizer}-{state}-{self.mixture}-{self.gap}-rho{self.rho:g}{tail}"

    def preset_overrides(self, adam_lr: float) -> dict[str, Any]:
        """Preset fields this setting sets (Adam also gets its own learning rate, see `adam_lr_for`)."""
        out: dict[str, Any] = dict(optimizer=self.optimizer, reset_optimizer=self.reset_optimizer,
                                   mixture=self.mixture, gap=self.gap, rho=self.rho, posterior=self.posterior)
        if self.optimizer == "adam":
            out["lr"] = adam_lr
        return out


POSTERIOR_ROWS = {"monotone": "Full model, monotone posterior (w1 held beyond μ1)",
                  "eq9": "Full model, Eq. 9 as printed"}


def control_setting(base: AdaptiveSetting) -> AdaptiveSetting:
    """The control arm for `base`: same optimizer handling, the warm-up loss instead of Eq. 11.

    The control trains without Eq. 11, so ρ is reset (as `setting_preset` resets α, β, γ and the refit
    cadence): every table, notebook and seed with the same optimizer handling shares one control run. The
    gap, mixture family and posterior stay: they say how the control's end state is *measured* (π1, μ1),
    so it is measured like the adaptive arm it is compared with.
    """
    return AdaptiveSetting(CONTROL, base.optimizer, base.reset_optimizer, base.mixture, base.gap,
                           posterior=base.posterior)


@dataclass(frozen=True)
class PlanRow:
    """One row of a paper table and the setting that produces it."""

    table: str
    row: str
    setting: AdaptiveSetting


def ablation_plan(tables: Sequence[str], base: AdaptiveSetting) -> list[PlanRow]:
    """The rows of Tables III-VI asked for, each mapped to its adaptive setting (base = the full model)."""
    plan: list[PlanRow] = []
    for table in check_tables(list(tables)):
        if table == "III":
            plan += [PlanRow(table, label, dataclasses.replace(base, ablation=name))
                     for name, label in ABLATION_ROWS]
            other = "monotone" if base.posterior == "eq9" else "eq9"
            plan.append(PlanRow(table, POSTERIOR_ROWS[other], dataclasses.replace(base, posterior=other)))
            plan.append(PlanRow(table, CONTROL_LABEL, control_setting(base)))
        elif table == "IV":
            plan += [PlanRow(table, label, dataclasses.replace(base, optimizer=opt, reset_optimizer=reset))
                     for opt, reset, label in OPTIMIZER_ROWS]
        elif table == "V":
            plan += [PlanRow(table, f"{MIXTURE_LABELS[fam]}({GAP_LABELS[gap]})",
                             dataclasses.replace(base, mixture=fam, gap=gap))
                     for fam in MIXTURES for gap in GAPS]
        elif table == "VI":
            plan += [PlanRow(table, f"{rho:.2f}", dataclasses.replace(base, rho=rho)) for rho in RHOS]
    return plan


def distinct_settings(plan: Iterable[PlanRow]) -> list[AdaptiveSetting]:
    """Each setting once, in order of first appearance (shared rows run once)."""
    seen: dict[AdaptiveSetting, None] = {}
    for row in plan:
        seen.setdefault(row.setting, None)
    return list(seen)


# ---------------------------------------------------------------------------------------------- runs


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


WARMUP_FIELDS = ("batch_size", "optimizer", "lr", "momentum", "weight_decay", "warmup_epochs", "val_frac")
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
    from mmgap.config import get_preset

    d = preset.to_dict()
    fields = {**d["embedded"], **d["model"], **{k: d["train"][k] for k in WARMUP_FIELDS}}
    return get_preset(preset.name, **fields)


def warmup_dir(preset: Preset, cache: Any, seed: int) -> Path:
    """The shared warm-up folder of (data, preset, seed): ``runs/<preset>/warmup/<id>/seed<k>``."""
    tag = f"{preset.train.optimizer}-{_digest(warmup_identity(preset, cache))}"
    return paths.run_dir(preset.name, "warmup", tag, f"seed{seed}")


def warmup_is_compatible(ckpt_path: str | Path, preset: Preset) -> tuple[bool, str]:
    """Whether a checkpoint is a completed warm-up whose model and warm-up schedule match `preset`."""
    from mmgap.checkpoint import CheckpointError, from_json, load_safe

    try:
        ck = load_safe(ckpt_path)
    except CheckpointError as exc:
        return False, str(exc)
    if ck.get("stage") != "warmup" or not ck.get("stage_complete", False):
        return False, f"{ckpt_path} is not a completed warm-up (stage {ck.get('stage')!r})"
    saved = from_json(ck["preset"])
    mine = json.loads(json.dumps(preset.to_dict()))
    diffs = [f"model.{k}" for k in mine["model"] if saved["model"].get(k) != mine["model"][k]]
    diffs += [f"embedded.{k}" for k in mine["embedded"] if saved["embedded"].get(k) != mine["embedded"][k]]
    diffs += [f"train.{k}" for k in WARMUP_FIELDS if saved["train"].get(k) != mine["train"][k]]
    if diffs:
        return False, f"{ckpt_path} was trained with other settings ({', '.join(diffs)})"
    return True, "compatible"


def ensure_warmup(
    cache: Any, preset: Preset, seed: int, device: str = "auto", candidates: Sequence[str | Path] = (),
    progress: bool = False, log: Any = print,
) -> Path:
    """A completed warm-up checkpoint (Eq. 10) for (data, preset, seed): reused when present, else trained.

    `candidates` are checkpoints to try first (e.g. the one notebook 02 wrote); the shared folder
    `warmup_dir` is tried next; otherwise the warm-up is trained there through `mmgap.train.run_warmup`.
    """
    from mmgap.train import run_warmup

    folder = warmup_dir(preset, cache, seed)
    for cand in (*[paths.resolve(c) for c in candidates], folder / "warmup.pt"):
        if Path(cand).is_file():
            ok, why = warmup_is_compatible(cand, preset)
            if ok:
                return Path(cand)
            log(f"note: not reusing {cand}: {why}")
    log(f"note: no warm-up checkpoint for seed {seed} ({preset.train.optimizer}); training one in {folder} "
        f"({preset.train.warmup_epochs} epochs)")
    try:  # an interrupted warm-up in the folder continues where it stopped
        res = run_warmup(cache, warmup_preset(preset), folder, seed=seed, device=device, resume=True,
                         progress=progress)
    except ValueError as exc:  # its last.pt was written with other settings: start over
        log(f"note: not resuming the warm-up in {folder}: {exc}")
        res = run_warmup(cache, warmup_preset(preset), folder, seed=seed, device=device, resume=False,
                         progress=progress)
    return Path(res["warmup_ckpt"])


def warmup_result(ckpt_path: str | Path) -> dict[str, Any]:
    """A finished warm-up checkpoint's history, timings and val-selected metrics (``val_acc``, ``test_acc``, ...)."""
    from mmgap.checkpoint import from_json, load_safe
    from mmgap.train import _best_row_summary, _stage_timings

    history = from_json(load_safe(ckpt_path)["history"])
    return {**_best_row_summary(history, "warmup"), "history": history,
            "timings": _stage_timings(history, "warmup"), "warmup_ckpt": str(ckpt_path)}


def warmup_test_acc(ckpt_path: str | Path) -> float | None:
    """Test accuracy of a warm-up checkpoint's validation-selected epoch (the starting point of Table VII)."""
    from mmgap.checkpoint import from_json, load_safe

    best = from_json(load_safe(ckpt_path)["best"]) or {}
    acc = (best.get("test") or {}).get("acc")
    return None if acc is None else float(acc)


def methods_root(preset: Preset) -> Path:
    """Where Table II's single-stage methods live (shared by notebooks 02 and 07): ``runs/<preset>/07_baselines/runs``."""
    return paths.run_dir(preset.name, "07_baselines", "runs")


def table_ii_epochs(preset: Preset) -> int:
    """Table II's budget for a single-stage method: warm-up + adaptive epochs, the two-stage method's total."""
    return preset.train.warmup_epochs + preset.train.adaptive_epochs


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
                    f"{tag}_mu1_raw": info["mu1_raw"], f"{tag}_mu_sep": info["mu1_raw"] - info["mu0_raw"],
                    f"{tag}_gap_mean": info["gap_mean"],
                    f"{tag}_auroc_w1": info.get("auroc_w1"), f"{tag}_bic_drop": info["bic1"] - info["bic2"]})
        out.update({f"{tag}_gap_mean_{t}": info[f"gap_mean_{t}"] for t in TIERS if f"gap_mean_{t}" in info})
    for tag, summary in (("warm", result.get("warmup_last")), ("last", result.get("last"))):
        for m in (*METRICS, *TIER_METRICS):
            if summary and f"test_{m}" in summary:
                out[f"{tag}_{m}"] = float(summary[f"test_{m}"])
    return out


def _finished(run: Path) -> bool:
    """Whether a run folder holds a completed run (its result.json, written last)."""
    return (run / "result.json").is_file()


def _save_result(run: Path, row: Mapping[str, Any]) -> None:
    from mmgap.results import write_metrics

    write_metrics(run, row)
    text = json.dumps(dict(row), sort_keys=True, default=str) + "\n"
    (run / "result.json").write_text(text, encoding="utf-8")


def _load_result(run: Path) -> dict[str, Any]:
    return json.loads((run / "result.json").read_text(encoding="utf-8"))


def run_adaptive(
    cache: Any, preset: Preset, setting: AdaptiveSetting, seed: int, root: str | Path | None = None,
    device: str = "auto", adam_lr: float | None = None, fresh: bool = False, log: Any = print,
    progress: bool = False,
) -> dict[str, Any]:
    """One adaptive run (Eq. 11) of `setting` for `seed` from the shared warm-up; returns its row."""
    from mmgap.train import run_control, run_two_stage

    adam_lr = adam_lr_for(preset) if adam_lr is None else adam_lr
    run_preset = setting_preset(preset, setting, adam_lr)
    run = _adaptive_run_dir(cache, preset, setting, seed, root, adam_lr)
    if _finished(run) and not fresh:
        return {**_load_result(run), "reused": True}
    warm_preset = _warm_preset(preset, setting, adam_lr)
    warm = ensure_warmup(cache, warm_preset, seed, device, log=log, progress=progress)
    t0 = time.perf_counter()
    if setting.is_control:
        res = run_control(cache, run_preset, run, warm, seed=seed, device=device, resume=not fresh,
                          progress=progress)
    else:
        res = run_two_stage(cache, run_preset, run, seed=seed, device=device, loss_cfg=_loss_cfg(run_preset, setting),
                            resume=not fresh, warmup_ckpt=warm, progress=progress)
    row = {"setting": setting.key, "seed": seed, **_test_metrics(res), "seconds": time.perf_counter() - t0,
           "warmup_acc": (res.get("warmup") or {}).get("test_acc"), "run_dir": str(run),
           **dataclasses.asdict(setting), **phenomena_fields(res)}
    _save_result(run, row)
    return {**row, "reused": False}


def run_arms(
    cache: Any, preset: Preset, setting: AdaptiveSetting, seed: int, device: str = "auto",
    adam_lr: float | None = None, workers: int = 1, fresh: bool = False, log: Any = print,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`setting`'s adaptive run and its control (`control_setting`) from one warm-up: (row, control row).

    The shared warm-up is made first (never twice at once); the two arms then train side by side on `workers`
    processes. Finished runs are reused, as everywhere.
    """
    adam_lr = adam_lr_for(preset) if adam_lr is None else adam_lr
    warm = _warm_preset(preset, setting, adam_lr)
    calls = [("run_adaptive", {"preset": preset, "setting": s, "seed": seed, "device": device, "adam_lr": adam_lr,
                               "fresh": fresh}) for s in (setting, control_setting(setting))]
    todo = [c for c in calls if fresh or not _finished(_adaptive_run_dir(cache, **c[1]))]
    if todo and not _warmup_ready(cache, warm, seed):
        run_jobs(cache, _warmup_jobs([(warm, seed)], device), 1, log, desc="warm-up")
    row, row_c = run_jobs(cache, calls, workers if len(todo) > 1 else 1, log, desc="adaptive and control")
    return row, row_c


def _warm_preset(preset: Preset, setting: AdaptiveSetting, adam_lr: float | None = None) -> Preset:
    """The preset of the warm-up a setting starts from (Adam rows: an Adam warm-up at Adam's rate)."""
    adam_lr = adam_lr_for(preset) if adam_lr is None else adam_lr
    if setting.optimizer == "adam":
        return preset.with_overrides(optimizer="adam", lr=adam_lr)
    return preset.with_overrides(optimizer=setting.optimizer)


def purify_one(
    cache: Any, preset: Preset, seed: int, tau: float, root: str | Path, epochs: int, device: str = "auto",
    fresh: bool = False, log: Any = print,
) -> dict[str, Any]:
    """One Table VII cell: fine-tune seed's warm-up (Eq. 10) on rows with w0 ≥ τ (τ = 0: all rows)."""
    from mmgap.train import finetune

    run = Path(root) / f"tau{tau:g}-{_digest(preset.to_dict(), cache_id(cache), epochs)}" / f"seed{seed}"
    label = PURIFICATION_CONTROL if tau == 0.0 else f"≥ {tau:.0%}"
    if _finished(run) and not fresh:
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
    _save_result(run, row)
    return {**row, "reused": False}


def baseline_one(
    cache: Any, preset: Preset, method: str, seed: int, root: str | Path, epochs: int, device: str = "auto",
    fresh: bool = False, log: Any = print,
) -> dict[str, Any]:
    """One Table II cell of a baseline: `mmgap.baselines.get(method)` trained for `epochs` (val-selected)."""
    from mmgap import baselines
    from mmgap.train import train_baseline

    run = Path(root) / f"{method}-{_digest(preset.to_dict(), cache_id(cache), epochs)}" / f"seed{seed}"
    if _finished(run) and not fresh:
        return {**_load_result(run), "reused": True}
    t0 = time.perf_counter()
    try:
        res = train_baseline(cache, preset, baselines.get(method), run, seed=seed, epochs=epochs,
                             device=device, resume=not fresh, progress=False, test_every_epoch=False)
    except (FloatingPointError, RuntimeError) as exc:  # one diverging method must not end a long sweep
        log(f"FAILED: {method}, seed {seed}: {type(exc).__name__}: {exc}")
        empty = {m: float("nan") for m in (*METRICS, "val_acc")}
        return {"seed": seed, **empty, "seconds": time.perf_counter() - t0, "run_dir": str(run),
                "error": f"{type(exc).__name__}: {exc}", "reused": False}
    row = {"seed": seed, **_test_metrics(res), "seconds": time.perf_counter() - t0, "run_dir": str(run)}
    _save_result(run, row)
    return {**row, "reused": False}


# ----------------------------------------------------------------------------------------- parallel runs


def default_workers(device: str = "auto") -> int:
    """Runs at once: one per CPU core (at most 4) on the CPU, one on a GPU (a single process uses it best)."""
    from mmgap.train import resolve_device

    if resolve_device(device).type != "cpu":
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, cores))


_WORKER_CACHE: Any = None


def _init_worker(cache_path: str) -> None:
    """Worker start: one torch thread (the workers already fill the cores) and the cache, loaded once."""
    import signal

    import torch

    from mmgap.data import load_cache

    global _WORKER_CACHE
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # an interrupt stops the caller; the pool ends with it
    torch.set_num_threads(1)
    _WORKER_CACHE = load_cache(cache_path)


def _call_in_worker(fn_name: str, kwargs: dict[str, Any], runs_root: str) -> tuple[Any, list[str]]:
    """One job on the worker's cache under the caller's runs folder; log lines come back with the result."""
    os.environ["MMGAP_RUNS_DIR"] = runs_root  # the pool may outlive a change of MMGAP_RUNS_DIR in the caller
    logs: list[str] = []
    out = globals()[fn_name](cache=_WORKER_CACHE, log=logs.append, **kwargs)
    return out, logs


def run_jobs(
    cache: Any, jobs: Sequence[tuple[str, dict[str, Any]]], workers: int = 1, log: Any = print,
    desc: str = "runs",
) -> list[Any]:
    """Run ``(function name, kwargs)`` jobs of this module on `workers` processes; results in job order.

    Each run is seeded on its own, so results do not depend on which worker ran it or when. Workers need a
    cache on disk (they load it by path); an in-memory cache runs serially.
    """
    from concurrent.futures import as_completed

    from mmgap.progress import progress

    if not jobs:
        return []
    path = getattr(cache, "path", None)
    if workers <= 1 or path is None or len(jobs) == 1:
        return [globals()[fn](cache=cache, log=log, **kw)
                for fn, kw in progress(jobs, desc=desc, mininterval=2.0)]
    results: list[Any] = [None] * len(jobs)
    pool = _pool(str(path), workers)
    root = str(paths.runs_root())
    futures = {pool.submit(_call_in_worker, fn, kw, root): i for i, (fn, kw) in enumerate(jobs)}
    try:
        for fut in progress(as_completed(futures), total=len(futures), desc=f"{desc} ({workers} workers)",
                        mininterval=2.0):
            out, logs = fut.result()
            for line in logs:
                log(line)
            results[futures[fut]] = out
    except BaseException:
        for fut in futures:
            fut.cancel()
        raise
    return results


_POOLS: dict[tuple[str, int], Any] = {}


def _pool(cache_path: str, workers: int) -> Any:
    """A process pool per (cache, size), kept for later sweeps of the same session (workers start once)."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    key = (cache_path, workers)
    pool = _POOLS.get(key)
    if pool is None or getattr(pool, "_broken", False):
        for other in _POOLS.values():
            other.shutdown(wait=False, cancel_futures=True)
        _POOLS.clear()
        pool = _POOLS[key] = ProcessPoolExecutor(workers, mp_context=get_context("spawn"),
                                                 initializer=_init_worker, initargs=(cache_path,))
    return pool


def _warmup_jobs(pairs: Iterable[tuple[Preset, int]], device: str) -> list[tuple[str, dict[str, Any]]]:
    """One ensure_warmup job per distinct (warm-up preset, seed), run first: runs never race for one."""
    seen: dict[tuple[str, int], tuple[str, dict[str, Any]]] = {}
    for warm, seed in pairs:
        key = (json.dumps(warmup_preset(warm).to_dict(), sort_keys=True), seed)
        seen.setdefault(key, ("ensure_warmup", {"preset": warm, "seed": seed, "device": device}))
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


# ---------------------------------------------------------------------------------------------- sweeps


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
    calls = [("run_adaptive", {"preset": preset, "setting": s, "seed": seed, "root": root, "device": device,
                               "adam_lr": adam_lr, "fresh": fresh}) for s, seed in jobs]
    todo = [(s, seed) for (s, seed), (_, kw) in zip(jobs, calls)
            if fresh or not _finished(_adaptive_run_dir(cache, **kw))]
    warm = [(_warm_preset(preset, s, adam_lr), seed) for s, seed in todo]
    warm = [(p, seed) for p, seed in warm if not _warmup_ready(cache, p, seed)]
    run_jobs(cache, _warmup_jobs(warm, device), workers, log, desc="warm-ups")
    done = run_jobs(cache, calls, workers, log, desc="adaptive runs")
    results = dict(zip(jobs, done))
    rows = [{"table": p.table, "row": p.row, **results[(p.setting, seed)]} for p in plan for seed in seeds]
    return pd.DataFrame(rows)


CONTROL_RESET = ("alpha", "beta", "gamma", "refit_every", "gap_source")
"""Eq. 11's settings a control run never uses: reset to the preset's defaults, so one control serves all."""


def setting_preset(preset: Preset, setting: AdaptiveSetting, adam_lr: float | None = None) -> Preset:
    """The preset a setting's run trains with (`preset` with the setting's fields; Adam at `adam_lr`)."""
    from mmgap.config import get_preset

    adam_lr = adam_lr_for(preset) if adam_lr is None else adam_lr
    run_preset = preset.with_overrides(**setting.preset_overrides(adam_lr))
    if setting.is_control:
        defaults = get_preset(preset.name).train
        run_preset = run_preset.with_overrides(**{f: getattr(defaults, f) for f in CONTROL_RESET})
    return run_preset


def _loss_cfg(run_preset: Preset, setting: AdaptiveSetting) -> Any:
    """Eq. 11's settings for an adaptive setting (its Table III row applied)."""
    from mmgap.losses import AdaptiveLossConfig

    return AdaptiveLossConfig.from_train_config(run_preset.train).ablation(setting.ablation)


def _adaptive_run_dir(cache: Any, preset: Preset, setting: AdaptiveSetting, seed: int,
                      root: str | Path | None = None, adam_lr: float | None = None, **_: Any) -> Path:
    """The folder of one adaptive run: ``<root>/<setting key>-<hash of all settings and data>/seed<k>``."""
    run_preset = setting_preset(preset, setting, adam_lr)
    cfg = None if setting.is_control else dataclasses.asdict(_loss_cfg(run_preset, setting))
    tag = _digest(run_preset.to_dict(), cache_id(cache), cfg)
    base = Path(root) if root is not None else adaptive_root(preset)
    return base / f"{setting.key}-{tag}" / f"seed{seed}"


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
    calls = [("purify_one", {"preset": preset, "seed": seed, "tau": tau, "root": root, "epochs": n_epochs,
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
                calls.append(("run_adaptive", {"preset": preset, "setting": setting, "seed": seed,
                                               "device": device, "fresh": fresh}))
            else:
                calls.append(("baseline_one", {"preset": preset, "method": method, "seed": seed, "root": root,
                                               "epochs": epochs, "device": device, "fresh": fresh}))
    done = run_jobs(cache, calls, workers, log, desc="method runs")
    rows = [{"method": m, "label": method_label(m), **row} for m, row in zip(names, done)]
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------- reporting


def table_of(rows: pd.DataFrame, group: str | Sequence[str],
             metrics: Sequence[str] = ("acc", "f1")) -> pd.DataFrame:
    """Mean ± std over seeds in percent, one row per group, in the order of the sweep."""
    from mmgap.results import mean_std_table

    cols = [group] if isinstance(group, str) else list(group)
    return mean_std_table(rows, cols, list(metrics), decimals=2, scale=100.0)


def purification_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Table VII: data kept and test accuracy / macro-F1 (%) per threshold, mean ± std over seeds."""
    from mmgap.results import mean_std_table

    data = mean_std_table(rows, ["row"], ["data_pct"], decimals=1)
    scores = table_of(rows, "row", metrics=("acc", "f1"))
    table = pd.DataFrame({"w0 threshold": scores["row"], "Data (%)": data["data_pct"],
                          "Accuracy (%)": scores["acc"], "Macro F1 (%)": scores["f1"]})
    kept = [c for c in (f"kept_{t}" for t in TIERS) if c in rows and rows[c].notna().any()]
    if kept:  # ground truth (embedded data): which clips each threshold keeps
        shares = mean_std_table(rows.assign(**{c: 100.0 * rows[c] for c in kept}), ["row"], kept, decimals=1)
        for c in kept:
            table[f"Kept, {c[5:]} (%)"] = shares[c]
    table["n"] = scores["n"]
    return table


def verdict(rows: pd.DataFrame, ours: Sequence[str] = tuple(OURS),
            metrics: Sequence[str] = ("acc", "f1")) -> str:
    """Plain-language comparison of ours against the best baseline per metric, from the per-seed rows.

    A difference counts as clear only when it exceeds the larger of the two stds over seeds: with three seeds
    a finer test would claim more than the data can carry.
    """
    df = rows[~rows["method"].isin(UNIMODAL)].copy()
    base = df[~df["method"].isin(ours)]
    mine = df[df["method"].isin(ours)]
    if mine.empty or base.empty:
        return "Only one side of the comparison was run (ours or the baselines): no verdict."
    lines: list[str] = []
    for metric in metrics:
        means = df.groupby("method", sort=False)[metric].agg(["mean", "std", "count"])
        b = means.loc[base["method"].unique()].sort_values("mean", ascending=False)
        o = means.loc[mine["method"].unique()].sort_values("mean", ascending=False)
        bo, bb = o.index[0], b.index[0]
        diff = 100.0 * (o.loc[bo, "mean"] - b.loc[bb, "mean"])
        spread = 100.0 * max(_nz(o.loc[bo, "std"]), _nz(b.loc[bb, "std"]))
        name = METRIC_LABELS.get(metric, metric).replace(" (%)", "")
        mo, mb = 100 * o.loc[bo, "mean"], 100 * b.loc[bb, "mean"]
        n = int(min(o.loc[bo, "count"], b.loc[bb, "count"]))
        head = (f"{name} ({n} seed{'s' if n != 1 else ''}): ours at its best, {method_label(bo)}, {mo:.2f} % "
                f"vs the best baseline, {method_label(bb)}, {mb:.2f} %")
        if o.loc[bo, "count"] < 2 or b.loc[bb, "count"] < 2:
            lines.append(f"{head}: difference {diff:+.2f} points from a single seed, so no claim either way.")
        elif abs(diff) <= spread:
            lines.append(f"{head}: difference {diff:+.2f} points, within the seed-to-seed spread "
                         f"({spread:.2f}): a tie.")
        elif diff > 0:
            lines.append(f"{head}: ours wins by {diff:.2f} points, more than the seed-to-seed spread "
                         f"({spread:.2f}).")
        else:
            lines.append(f"{head}: ours loses by {-diff:.2f} points, more than the seed-to-seed spread "
                         f"({spread:.2f}).")
        beaten = [m for m in b.index if b.loc[m, "mean"] > o.loc[bo, "mean"]]
        if beaten:
            names = ", ".join(method_label(m) for m in beaten)
            lines.append(f"  baselines above ours on {name.lower()}: {names}")
    return "\n".join(lines)


def compare(diff: float, spread: float, n: int) -> str:
    """'clear' when |diff| exceeds the seed spread (both in points), else 'tie'; 'one seed' for n < 2."""
    if n < 2:
        return "one seed"
    return "tie" if abs(diff) <= spread else "clear"


def describe_ablations(rows: pd.DataFrame, full_key: str) -> str:
    """Per table: each row's accuracy difference from the full model and whether it beats the seed spread."""
    full = rows[rows["setting"] == full_key].drop_duplicates("seed")["acc"]
    if full.empty:
        return "The full model was not among the runs: no comparison."
    from mmgap.results import format_mean_std

    f_mean, f_std = 100 * full.mean(), 100 * _nz(full.std())
    lines = [f"Full model: test accuracy {format_mean_std(f_mean, 100 * full.std())} % "
             f"over {len(full)} seed(s)."]
    warm = pd.to_numeric(rows[rows["setting"] == full_key].drop_duplicates("seed").get("warmup_acc"),
                         errors="coerce").dropna() if "warmup_acc" in rows else pd.Series(dtype=float)
    if len(warm):
        lines.append(f"Its warm-up alone (Eq. 10, before the adaptive stage): "
                     f"{format_mean_std(100 * warm.mean(), 100 * warm.std())} %.")
    for table in dict.fromkeys(rows["table"]):
        part = rows[rows["table"] == table]
        stats = part.groupby("row", sort=False).agg(setting=("setting", "first"), mean=("acc", "mean"),
                                                   std=("acc", "std"), n=("acc", "size"))
        lines.append(f"Table {table}:")
        best = stats["mean"].idxmax()
        for label, st in stats.iterrows():
            if st["setting"] == full_key:
                continue
            diff, spread = 100 * (st["mean"] - full.mean()), max(100 * _nz(st["std"]), f_std)
            kind = compare(diff, spread, int(min(st["n"], len(full))))
            word = {"tie": "within the seed spread", "one seed": "one seed only, no claim",
                    "clear": "better than the full model" if diff > 0 else "worse than the full model"}[kind]
            lines.append(f"  {label}: {100 * st['mean']:.2f} % ({diff:+.2f} points, {word})")
        top = stats[stats["mean"] == stats["mean"].max()]
        if len(top) > 1:
            lines.append(f"  best rows (tied): {', '.join(map(str, top.index))}")
        else:
            is_full = stats.loc[best, "setting"] == full_key
            which = " (the full model)" if is_full else " (not the full model)"
            lines.append(f"  best row: {best}{which}")
    return "\n".join(lines)


PHENOMENA: tuple[tuple[str, str, str, str, float], ...] = (
    # (label, start column, end column, direction the paper expects, display scale)
    ("π1, imbalanced weight", "start_pi1", "end_pi1", "down", 1.0),
    ("μ1, raw gap", "start_mu1_raw", "end_mu1_raw", "down", 1.0),
    ("μ1 − μ0, raw gap", "start_mu_sep", "end_mu_sep", "down", 1.0),
    ("mean gap, raw", "start_gap_mean", "end_gap_mean", "down", 1.0),
    ("visual acc., hard (%)", "warm_acc_v_hard", "last_acc_v_hard", "up", 100.0),
    ("visual acc. (%)", "warm_acc_v", "last_acc_v", "up", 100.0),
    ("fused acc. (%)", "warm_acc", "last_acc", "up", 100.0),
)
"""What notebook 04 checks on one seed and 05 over seeds: the mixture fitted on the last model (location-
labelled components) and the test accuracy of the last epoch, against the warm-up's and the control's."""


def phenomena_table(rows: pd.DataFrame, full_key: str, control_key: str) -> pd.DataFrame:
    """Adaptive (`full_key`) vs control (`control_key`) over seeds: start, ends, paired difference, verdict.

    Both arms of a seed start from the same warm-up, so the start values are the adaptive run's and the
    comparison is paired: a difference counts as clear when its mean over seeds exceeds its std.
    """
    from mmgap.results import format_mean_std

    full = rows[rows["setting"] == full_key].drop_duplicates("seed").set_index("seed")
    ctrl = rows[rows["setting"] == control_key].drop_duplicates("seed").set_index("seed")
    seeds = full.index.intersection(ctrl.index)
    if len(seeds) == 0:
        return pd.DataFrame()
    full, ctrl = full.loc[seeds].copy(), ctrl.loc[seeds].copy()
    same_measure = all(full[c].eq(ctrl[c]).all() for c in ("gap", "mixture", "posterior") if c in full and c in ctrl)
    out = []
    for label, start, end, direction, scale in PHENOMENA:
        if start not in full or end not in full or end not in ctrl or full[start].isna().all():
            continue
        if start.startswith("start_") and not same_measure:  # the two arms' mixtures are not comparable
            continue
        s, a, c = (scale * pd.to_numeric(x, errors="coerce") for x in (full[start], full[end], ctrl[end]))
        d = a - c
        n = int(d.notna().sum())
        good = d.mean() < 0 if direction == "down" else d.mean() > 0
        spread = _nz(d.std())
        verdict = ("one seed, no claim" if n < 2 else "within the seed spread" if abs(d.mean()) <= spread
                   else ("as the paper expects" if good else "against the paper's expectation"))
        out.append({"quantity": label, "expected": "falls" if direction == "down" else "rises",
                    "start (warm-up)": format_mean_std(s.mean(), s.std()),
                    "adaptive, end": format_mean_std(a.mean(), a.std()),
                    "control, end": format_mean_std(c.mean(), c.std()),
                    "adaptive − control": format_mean_std(d.mean(), d.std()), "n": n, "verdict": verdict})
    return pd.DataFrame(out)


def describe_purification(rows: pd.DataFrame) -> str:
    """Each τ's accuracy against the 100 % fine-tuning baseline, with its data fraction and seed spread."""
    stats = rows.groupby("tau", sort=True).agg(row=("row", "first"), mean=("acc", "mean"), std=("acc", "std"),
                                               n=("acc", "size"), data=("data_pct", "mean"))
    if 0.0 not in stats.index:
        return "The 100 % baseline was not run: no comparison."
    from mmgap.results import format_mean_std

    b = stats.loc[0.0]
    base_text = format_mean_std(100 * b["mean"], 100 * b["std"])
    lines = [f"Control (the warm-up fine-tuned on 100 % of the training data): {base_text} % "
             f"over {int(b['n'])} seed(s)."]
    if "warmup_acc" in rows and rows["warmup_acc"].notna().any():
        w = rows.drop_duplicates("seed")["warmup_acc"].astype(float)
        lines.append(f"The warm-up alone (before any fine-tuning): "
                     f"{format_mean_std(100 * w.mean(), 100 * w.std())} %.")
    wins = 0
    for tau, st in stats.drop(index=0.0).iterrows():
        if not math.isfinite(st["mean"]):
            lines.append(f"  w0 ≥ {tau:.2f}: {st['data']:.1f} % of the data, too few clips to fine-tune "
                         "(no result)")
            continue
        diff = 100 * (st["mean"] - b["mean"])
        spread = 100 * max(_nz(st["std"]), _nz(b["std"]))
        kind = compare(diff, spread, int(min(st["n"], b["n"])))
        wins += kind == "clear" and diff > 0
        word = {"tie": "within the seed spread", "one seed": "one seed only, no claim",
                "clear": "clearly better" if diff > 0 else "clearly worse"}[kind]
        lines.append(f"  w0 ≥ {tau:.2f}: {st['data']:.1f} % of the data, {100 * st['mean']:.2f} % accuracy "
                     f"({diff:+.2f} points, {word})")
    n_tau = len(stats) - 1
    lines.append(f"Purification beats training on all data beyond the seed spread at {wins} of {n_tau} "
                 "thresholds.")
    return "\n".join(lines)


def _nz(x: Any) -> float:
    return 0.0 if x is None or not math.isfinite(float(x)) else float(x)


def plot_method_bars(rows: pd.DataFrame, metrics: Sequence[str] = ("acc", "f1"),
                     path: str | Path | None = None) -> Any:
    """Bar chart of mean accuracy and macro-F1 per method with ± 1 std error bars over seeds (Table II)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    long = rows.melt(id_vars=["label"], value_vars=list(metrics), var_name="metric", value_name="value")
    long["value"] = 100.0 * long["value"]
    long["metric"] = long["metric"].map(lambda m: METRIC_LABELS.get(m, m).replace(" (%)", ""))
    order = list(dict.fromkeys(rows["label"]))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * len(order) + 2), 4.0))
    sns.barplot(data=long, x="label", y="value", hue="metric", order=order, errorbar="sd", capsize=0.15,
                ax=ax)
    ax.set_xlabel("method")
    ax.set_ylabel("test score (%)")
    ax.set_title("Table II on this dataset: mean ± 1 std over seeds")
    lo = max(0.0, float(long["value"].min()) - 10.0)
    ax.set_ylim(lo, min(100.0, float(long["value"].max()) + 5.0))
    ax.tick_params(axis="x", rotation=30)
    for t in ax.get_xticklabels():
        t.set_ha("right")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
