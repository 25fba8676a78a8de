"""The generic trainer: the loop, the optimizer, evaluation, atomic checkpoints and resume, for any method.

`Trainer` runs a `mmgap.strategy.Strategy` (the paper's stages live in `mmgap.method`, the baselines in
`mmgap.baselines`); `train_baseline` runs any single-stage strategy; `load_run` / `load_history` reopen a
finished run. It imports nothing of the method: gaps, mixtures and Eq. 11 reach it only through a
Strategy's hooks (and the values a strategy adds to the history, such as a refit's duration).

Conventions (kept by every entry point built on it):
- epochs passed to strategy hooks count from 0 within the current stage (λ_t = ρ^epoch starts at the first
  adaptive epoch); `Trainer.epoch` is the global counter over all stages.
- the best checkpoint of a stage is chosen on VALIDATION accuracy only; the test split is evaluated every
  epoch for the history (or, with ``test_every_epoch=False``, only at epochs that could be selected) but
  never used for selection.
- CPU runs are bit-identical under a seed, including across an interruption and resume: batch order and
  augmentation come from ``batcher.set_epoch(global epoch)``, strategy randomness from `Trainer.generator`,
  and both (with the global torch RNG) are saved in every checkpoint.
- on CUDA: the precision, data path and memory plan of `mmgap.device` (printed), channels-last weights,
  optional torch.compile, no host synchronisation in the training step (loss terms are read once per epoch).
- checkpoints (``best.pt``, ``last.pt``) are written when `Trainer.checkpoint_every_s` seconds have passed
  since the last write, at the end of every stage, at `Trainer.interrupt_at_epoch` and when an exception (a
  Ctrl-C, a diverging loss, or the SIGTERM with which an interrupted local sweep ends its busy workers: they
  unwind as after a Ctrl-C) leaves the epoch loop; in between, the finished epochs' states wait in memory.
  What a run can lose is therefore bounded: an exception or an interrupted local sweep loses only the epoch in
  progress (as when every epoch was written); a hard kill (SIGKILL, power loss, a Ray sweep's interrupt, which
  cancels its tasks with SIGKILL) at most `checkpoint_every_s` seconds of training plus the epoch in progress.
  A resumed run replays the lost epochs and ends bit-identical (CPU).
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mmgap.checkpoint import copy_state, from_json, load_safe, plain, save_atomic, to_json
from mmgap.config import Preset, lr_at
from mmgap.data.dataset import PlanIterable
from mmgap.data.manifest import TIERS
from mmgap.device import (
    OnDevice,
    autocast,
    choose_data_path,
    choose_precision,
    deterministic,
    float_output,
    num_classes_of,
    plan_memory,
    pooled_batcher,
    release_device_memory,
    resolve_device,
    rows_key,
    seed_everything,
)
from mmgap.history import best_summary, stage_timings
from mmgap.metrics import MeanAccumulator, accuracy_by_group, evaluate_logits
from mmgap.models import ModelOutput, build_model
from mmgap.progress import progress as progress_bar
from mmgap.strategy import Batch, SamplePlan, Strategy

SPLITS = ("train", "val", "test")
EVAL_BATCH_FACTOR = 4
"""Evaluation passes (val/test metrics, the refit's gaps, t-SNE features) use batches this many times larger."""
CHECKPOINT_VERSION = 1
CHECKPOINT_EVERY_S = 30.0
"""Seconds of training between checkpoint writes (besides stage ends and interruptions; see the module docstring).

Measured on `demo` (one torch thread): writing best.pt and last.pt after every epoch took about 4-7 % of a run
(torch.save of ~3 MB, fsync, digest: 20-40 ms per file against 0.6-1.1 s per epoch); a demo stage (8-20 epochs,
5-25 s) now writes once, at its end. At `paper` shapes an epoch takes longer than this: every epoch is written.
The environment variable ``MMGAP_CHECKPOINT_EVERY_S`` overrides it (``0``: after every epoch, e.g. on preemptible
cluster nodes, where a Ray cancellation or a preemption is a hard kill)."""
CHECKPOINT_EVERY_ENV = "MMGAP_CHECKPOINT_EVERY_S"


def checkpoint_interval() -> float:
    """`CHECKPOINT_EVERY_S`, or the environment's ``MMGAP_CHECKPOINT_EVERY_S`` (seconds, >= 0)."""
    text = os.environ.get(CHECKPOINT_EVERY_ENV, "").strip()
    if not text:
        return CHECKPOINT_EVERY_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"{CHECKPOINT_EVERY_ENV}={text!r}: give the seconds between checkpoint writes as a number "
                         ">= 0 (0 writes after every epoch), or unset it for the default "
                         f"{CHECKPOINT_EVERY_S:g} s")
    return value

RESUME_IGNORED = frozenset({"num_workers"})
"""Settings that may differ between a run and its resumption (they do not change the result)."""


_now = time.monotonic
"""The clock of the checkpoint policy (a test replaces it)."""


class TrainingInterrupted(RuntimeError):
    """Raised after a checkpoint when `Trainer.interrupt_at_epoch` is reached (used to test resume)."""


# ------------------------------------------------------------------------------------------------ set-up


def _scoped(method: Any) -> Any:
    """Run a Trainer method with its own kernel determinism (CPU: deterministic), the caller's restored after."""
    @functools.wraps(method)
    def wrapper(self: Trainer, *args: Any, **kwargs: Any) -> Any:
        with deterministic(self.deterministic):
            return method(self, *args, **kwargs)
    return wrapper


def split_rows(cache: Any, split: str) -> np.ndarray:
    """Cache rows of a split, ascending (``FeatureCache.indices``)."""
    return np.asarray(cache.indices(split), dtype=np.int64)


# ------------------------------------------------------------------------------------------------ trainer


class Trainer:
    """Training loop, optimizer, evaluation, atomic checkpoints and resume, shared by every method.

    Public attributes (strategies rely on them): ``model``, ``optimizer``, ``device``, ``preset``, ``cache``,
    ``num_classes``, ``seed``, ``run_dir``, ``epoch`` (global epoch counter), ``stage``, ``stage_epoch``
    (epochs done in the current stage), ``stage_epochs`` (the current stage's budget), ``history`` (one dict
    per epoch), ``generator`` (CPU torch.Generator for strategy randomness, saved in checkpoints),
    ``amp_dtype`` (`mmgap.device.choose_precision`: bf16 on CUDA from capability 8.0, else None = fp32;
    ``precision="bf16"`` emulates the CUDA path on a CPU). Kernels are deterministic on the CPU, inside this
    trainer's passes only (`mmgap.device.deterministic`).
    """

    def __init__(
        self,
        cache: Any,
        preset: Preset,
        run_dir: str | Path,
        seed: int = 0,
        device: str | torch.device = "auto",
        fast_path: bool | None = None,
        progress: bool = True,
        precision: str = "auto",
    ) -> None:
        self.cache = cache
        self.preset = preset
        self.seed = int(seed)
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.device = resolve_device(device)
        self.progress = progress
        seed_everything(self.seed)
        self.deterministic = self.device.type == "cpu"
        self.num_classes = num_classes_of(cache)
        self.model = build_model(self.num_classes, preset.model).to(self.device)
        self.amp_dtype, self.precision_note = choose_precision(self.device, precision)
        # channels-last weights: on CUDA for the tensor cores, on the CPU because oneDNN's convolutions run
        # faster in that layout (measured: 48 -> 41 ms per demo training step on one core, about 15 %)
        self.model = self.model.to(memory_format=torch.channels_last)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.optimizer = self.make_optimizer()
        self.epoch = 0
        self.stage = ""
        self.stage_epoch = 0
        self.stage_epochs = 0
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.interrupt_at_epoch: int | None = None
        # Test metrics of every epoch feed the course's curves (Fig. 1, 6); sweeps that report only the
        # val-selected epoch set this False and evaluate the test split only when validation improves.
        self.test_every_epoch = True
        self._stage_done = False
        # The data path from what will be resident (mmgap.device.plan_memory), printed off the CPU.
        self.memory_plan = plan_memory(cache, preset, self.amp_dtype) if self.device.type != "cpu" else None
        path = choose_data_path(self.memory_plan or plan_memory(cache, preset, None, activations=False),
                                self.device, fast_path)
        self._data_path, self.fast_path, self.data_device = path, path.fast_path, path.data_device
        if self.device.type == "cuda":
            print(f"{self.device} ({torch.cuda.get_device_name(self.device)}): {self.precision_note}; {path.message}")
        self._batchers: dict[tuple, Any] = {}
        self._compiled: Any = None
        self._pending: dict[str, Any] | None = None
        # Checkpoint policy (module docstring): seconds between writes (0: after every epoch), the finished
        # epochs' states not yet written (file name -> state, tensors copied), the time of the last write.
        self.checkpoint_every_s = checkpoint_interval()
        self._unsaved: dict[str, dict[str, Any]] = {}
        self._last_write = _now()

    # -------------------------------------------------------------------------------------------- data

    def _batch_size(self, train: bool) -> int:
        """The training batch size, or EVAL_BATCH_FACTOR times it for evaluation passes (no gradients kept).

        Evaluation in eval mode treats every clip on its own, so the batch size changes only the speed:
        on the CPU at the demo shapes a batch of 256 infers 1.6x faster per clip than one of 64.
        """
        b = self.preset.train.batch_size
        return b if train else EVAL_BATCH_FACTOR * b

    def batches(self, split: str, train: bool, indices: Any = None, drop_last: bool | None = None) -> Iterable[Batch]:
        """Batches of a split on the device; training batches are shuffled and augmented per global epoch.

        `indices` restricts the split to those cache rows (Table VII's purified subset). Training drops the
        last incomplete batch by default (a batch of one would break BatchNorm).
        """
        if split not in SPLITS:
            raise ValueError(f"split={split!r} is not one of {SPLITS}")
        idx = None if indices is None else np.asarray(indices, dtype=np.int64)
        if drop_last is None:
            n = len(idx) if idx is not None else len(split_rows(self.cache, split))
            drop_last = train and n >= self.preset.train.batch_size
        batcher = pooled_batcher(self._batchers, self.cache, split, train, idx, drop_last, self._batch_size(train),
                                 self.seed, self.preset, self._data_path, self.device)
        if hasattr(batcher, "set_epoch"):
            batcher.set_epoch(self.epoch)
        return OnDevice(batcher, self.device)

    def plan_batches(self, plan: SamplePlan, train_indices: Any = None) -> Iterable[Batch]:
        """Training batches of a strategy's `SamplePlan` on the device: its groups in order, each group's rows
        shuffled and augmented as a function of (seed, global epoch, group) and batched on their own, with the
        ``keep`` mask. Batch size and drop_last follow `batches` (a group's last incomplete batch is dropped when
        the group holds at least one full batch)."""
        allowed = split_rows(self.cache, "train") if train_indices is None else np.asarray(train_indices)
        for g in plan.groups:
            bad = np.setdiff1d(np.asarray(g.rows, dtype=np.int64), allowed)
            if len(bad):
                raise ValueError(f"the sample plan holds {len(bad)} rows outside the training rows (e.g. {bad[:5]})")
        idx = None if train_indices is None else np.asarray(train_indices, dtype=np.int64)
        n = len(allowed)
        batcher = pooled_batcher(self._batchers, self.cache, "train", True, idx, n >= self.preset.train.batch_size,
                                 self._batch_size(True), self.seed, self.preset, self._data_path, self.device)
        return OnDevice(PlanIterable(batcher, plan, self.epoch), self.device)

    def forward(self, batch: Batch) -> ModelOutput:
        """The model's ModelOutput for a batch (bf16 autocast on CUDA, outputs cast back to float32)."""
        net = self._compiled if self._compiled is not None else self.model
        with self.autocast():
            keep = batch.get("keep")  # a SamplePlan's modality mask (absent otherwise)
            out = net(batch["audio"], batch["frames"]) if keep is None else net(batch["audio"], batch["frames"], keep)
        return float_output(out) if self.amp_dtype is not None else out

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast in `amp_dtype` (bf16 on CUDA from capability 8.0), a no-op in fp32."""
        return autocast(self.device, self.amp_dtype)

    def release_batchers(self, keep_train_rows: Any = ...) -> None:
        """Free the batchers' tensors (all, or the training split's other row sets) and the device's cache."""
        if keep_train_rows is ...:
            self._batchers.clear()
        else:
            key = rows_key(keep_train_rows)
            self._batchers = {k: b for k, b in self._batchers.items() if k[0] != "train" or k[3] == key}
        if self.device.type == "cuda":
            release_device_memory()

    # -------------------------------------------------------------------------------------------- eval

    @_scoped
    @torch.no_grad()
    def evaluate(self, split: str, strategy: Strategy | None = None) -> dict[str, float]:
        """Fused accuracy, macro-F1, per-modality accuracy and mean fused CE of a split (eval mode, centre frame)."""
        was_training = self.model.training
        self.model.eval()
        fused, la, lv, ys, rows = [], [], [], [], []
        for batch in self.batches(split, train=False):
            with self.autocast():
                if strategy is not None:
                    f, a, v = strategy.predict(self, batch)
                else:
                    out = self.model(batch["audio"], batch["frames"])
                    f, a, v = out.fused, out.logit_a, out.logit_v
            fused.append(f.float())
            la.append(a.float())
            lv.append(v.float())
            ys.append(batch["label"])
            rows.append(batch["index"])
        self.model.train(was_training)
        if not ys:
            raise ValueError(f"the {split!r} split is empty: rebuild the cache with a non-empty {split} split")
        f, a, v, y, idx = (torch.cat(x).cpu() for x in (fused, la, lv, ys, rows))
        metrics = evaluate_logits(f, a, v, y)
        metrics["loss"] = float(F.cross_entropy(f, y))
        tiers = getattr(self.cache, "visual_tier", None)
        if tiers is not None:  # embedded data: fused and visual accuracy per ground-truth visual tier
            groups = np.asarray(tiers)[idx.numpy()]
            for name, logits in (("acc", f), ("acc_v", v)):
                for tier, value in accuracy_by_group(logits, y, groups, TIERS).items():
                    metrics[f"{name}_{tier}"] = value
        return metrics

    @_scoped
    @torch.no_grad()
    def collect_outputs(
        self, split: str = "train", train_mode_aug: bool = False, indices: Any = None
    ) -> dict[str, torch.Tensor]:
        """Logits, features, labels and cache rows of a whole split in eval mode (CPU float32 tensors).

        With `train_mode_aug`, inputs get the training augmentation (random frame per segment) while the
        model stays in eval mode. Used for the gaps over the training set (Eq. 5-7) and for t-SNE (Fig. 4).
        """
        was_training = self.model.training
        self.model.eval()
        keys = ("fused", "logit_a", "logit_v", "feat_a", "feat_v")
        store: dict[str, list[torch.Tensor]] = {k: [] for k in (*keys, "label", "index")}
        for batch in self.batches(split, train=train_mode_aug, indices=indices, drop_last=False):
            out = self.forward(batch)
            for k in keys:
                store[k].append(getattr(out, k).float())
            store["label"].append(batch["label"])
            store["index"].append(batch["index"])
        self.model.train(was_training)
        if not store["label"]:
            raise ValueError(f"the {split!r} split is empty: nothing to collect")
        return {k: torch.cat(v).cpu() for k, v in store.items()}

    # -------------------------------------------------------------------------------------------- optim

    def make_optimizer(self) -> torch.optim.Optimizer:
        """A fresh optimizer from TrainConfig: SGD with momentum (the paper) or Adam (Table IV)."""
        t = self.preset.train
        params = [p for p in self.model.parameters() if p.requires_grad]
        if t.optimizer == "sgd":
            return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
        if t.optimizer == "adam":
            return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
        raise ValueError(f"optimizer={t.optimizer!r} is not one of 'sgd', 'adam'")

    # -------------------------------------------------------------------------------------------- checkpoints

    def _state(self, strategy: Strategy | None, complete: bool) -> dict[str, Any]:
        """Everything needed to resume (tensors and plain values only: loads with weights_only=True)."""
        state: dict[str, Any] = {
            "version": CHECKPOINT_VERSION,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "strategy": strategy.state_dict() if strategy is not None else {},
            "strategy_name": getattr(strategy, "name", ""),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "epoch": self.epoch,
            "stage": self.stage,
            "stage_epoch": self.stage_epoch,
            "stage_complete": complete,
            "history": to_json(self.history),
            "best": to_json(self.best),
            "seed": self.seed,
            "num_classes": self.num_classes,
            "preset": to_json(self.preset.to_dict()),
        }
        if torch.cuda.is_available() and self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def save_checkpoint(self, path: str | Path, strategy: Strategy | None = None, complete: bool = False) -> Path:
        """Write the full training state atomically to `path` (relative paths go under run_dir)."""
        return self._write(path, self._state(strategy, complete))

    def _write(self, path: str | Path, state: dict[str, Any]) -> Path:
        """`save_atomic` of a state to `path` (relative paths go under run_dir)."""
        path = Path(path)
        if not path.is_absolute():
            path = self.run_dir / path
        return save_atomic(state, path)

    def flush_checkpoints(self) -> None:
        """Write the finished epochs' states still held in memory: best.pt first, then last.pt (so a last.pt
        on disk never refers to a best epoch whose best.pt is missing)."""
        for name in ("best.pt", "last.pt"):
            state = self._unsaved.pop(name, None)
            if state is not None:
                self._write(name, state)
        self._last_write = _now()

    def _checkpoint_epoch(self, strategy: Strategy, improved: bool, done: bool, interrupt: bool) -> None:
        """After an epoch: write best.pt (when validation improved) and last.pt now, or keep them in memory.

        Written at a stage's end, at an interruption, or `checkpoint_every_s` after the last write; otherwise
        the state is copied (tensors detached and cloned to the CPU, the model trains on) and written later.
        """
        write_now = done or interrupt or _now() - self._last_write >= self.checkpoint_every_s
        state = self._state(strategy, complete=done)
        if not write_now:
            state = copy_state(state, "cpu")
        if improved:
            self._unsaved["best.pt"] = state
        self._unsaved["last.pt"] = state
        if write_now:
            self.flush_checkpoints()

    def resume(self, path: str | Path | None = None, check_preset: str = "all") -> bool:
        """Load counters and history from a checkpoint (default run_dir/last.pt); weights load in `fit`.

        Model, optimizer, strategy and RNG states are applied by the next `fit`, after its strategy's setup
        (a strategy may reshape the model). `check_preset`: ``"all"`` refuses a checkpoint from another
        preset (resume), ``"model"`` only checks the model config (starting from a warm-up checkpoint).
        Returns False when there is no checkpoint at the default path.
        """
        p = Path(path) if path is not None else self.run_dir / "last.pt"
        if path is None and not p.is_file():
            return False
        ckpt = load_safe(p)
        saved_preset = from_json(ckpt["preset"])
        mine = plain(self.preset.to_dict())
        diff = sorted(
            f"{sec}.{k}" for sec in ("embedded", "model", "train") for k in mine.get(sec, {})
            if k not in RESUME_IGNORED and saved_preset.get(sec, {}).get(k) != mine[sec][k]
        )
        if check_preset == "all" and diff:
            raise ValueError(
                f"checkpoint {p} was written with different settings ({', '.join(diff)}): resuming would mix two "
                "runs. Use another run_dir, delete the old one, or pass resume=False"
            )
        if saved_preset.get("model") != mine.get("model") or int(ckpt["num_classes"]) != self.num_classes:
            raise ValueError(
                f"checkpoint {p} holds a model of another shape (model config {saved_preset.get('model')}, "
                f"{ckpt['num_classes']} classes) than this run ({mine.get('model')}, {self.num_classes} classes)"
            )
        if check_preset == "all" and int(ckpt["seed"]) != self.seed:
            raise ValueError(
                f"checkpoint {p} belongs to seed {ckpt['seed']}, this run has seed {self.seed}: use another run_dir "
                "per seed, or pass resume=False"
            )
        self.epoch = int(ckpt["epoch"])
        self.stage = str(ckpt["stage"])
        self._stage_done = bool(ckpt.get("stage_complete", False))
        self.stage_epoch = int(ckpt["stage_epoch"])
        self.history = from_json(ckpt["history"])
        self.best = from_json(ckpt["best"])
        self._pending = ckpt
        return True

    def stage_complete(self) -> bool:
        """Whether the current (or resumed) stage finished all its epochs."""
        return self._stage_done

    def apply_resumed(self, strategy: Strategy, same_stage: bool, load_optimizer: bool) -> None:
        """Apply a resumed checkpoint: weights and RNG states always, optimizer state and strategy state on request."""
        ckpt = self._pending
        assert ckpt is not None
        self.model.load_state_dict(ckpt["model"])
        self.optimizer = self.make_optimizer()  # over the parameters as they are after the strategy's setup
        if load_optimizer:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        if same_stage:
            strategy.load_state_dict(ckpt["strategy"])
        self.generator.set_state(ckpt["generator"])
        torch.set_rng_state(ckpt["torch_rng"])
        if "cuda_rng" in ckpt and self.device.type == "cuda":
            torch.cuda.set_rng_state(ckpt["cuda_rng"], self.device)
        self._pending = None

    def load_best(self) -> dict[str, Any]:
        """Load run_dir/best.pt's weights into the model; returns its metrics (val-selected epoch)."""
        ckpt = load_safe(self.run_dir / "best.pt")
        self.model.load_state_dict(ckpt["model"])
        return from_json(ckpt["best"])

    # -------------------------------------------------------------------------------------------- loop

    def _maybe_compile(self) -> None:
        if self.device.type == "cuda" and self.preset.train.compile:
            self._compiled = torch.compile(self.model)
        else:
            self._compiled = None

    @_scoped
    def fit(
        self,
        strategy: Strategy,
        epochs: int,
        stage: str,
        reset_optimizer: bool = True,
        select_on: str = "val",
        train_indices: Any = None,
    ) -> dict[str, Any]:
        """Run `epochs` epochs of `strategy` as stage `stage` (continuing it after a resume); returns its summary.

        Each epoch: ``set_epoch`` on the batcher, ``on_epoch_start``, ``sample_plan`` (None: the split's rows;
        else the plan's groups, `plan_batches`), per batch ``training_step`` ->
        backward -> ``after_backward`` -> step (loss terms summed on the device), ``on_epoch_end``, evaluation on
        val and test, a history row, ``best.pt`` when val accuracy improves (``select_on="val"``; ``"last"``
        keeps the last epoch) and ``last.pt`` (written by the module's checkpoint policy: every
        `checkpoint_every_s` seconds, at the stage's end, at an interruption or exception; held in memory between).
        A new stage resets the optimizer unless `reset_optimizer` is False.
        Batchers of other training rows are freed at the start (a fine-tune's subset replaces the full split),
        all of them at the end.
        """
        if select_on not in ("val", "last"):
            raise ValueError(
                f"select_on={select_on!r}: checkpoints are selected on 'val' accuracy (or 'last'); the test split "
                "is never used for selection"
            )
        if not isinstance(epochs, int) or epochs < 0:
            raise ValueError(f"epochs={epochs!r} must be a non-negative integer")
        self.stage_epochs = epochs  # the stage's budget (schedules of some baselines read it in setup)
        strategy.setup(self)
        same_stage = self.stage == stage and (self._pending is not None or self.stage_epoch > 0)
        if self._pending is not None:
            self.apply_resumed(strategy, same_stage, load_optimizer=same_stage or not reset_optimizer)
        if not same_stage:
            self.stage, self.stage_epoch, self.best, self._stage_done = stage, 0, None, False
            if reset_optimizer:
                self.optimizer = self.make_optimizer()
        self._maybe_compile()
        self.release_batchers(keep_train_rows=train_indices)
        start_time = time.perf_counter()
        first = self.stage_epoch
        self._unsaved.clear()
        self._last_write = _now()
        try:
            for e in range(first, epochs):
                self._run_epoch(strategy, e, epochs, select_on, train_indices)
        except BaseException:
            # A Ctrl-C, a diverging loss or a failing hook: the finished epochs held in memory are written (only
            # the epoch in progress is lost); a failure of that write does not hide the original exception.
            with contextlib.suppress(Exception):
                self.flush_checkpoints()
            raise
        self._stage_done = True
        self.release_batchers()
        if first >= epochs:  # nothing ran (a finished stage was reloaded, or epochs=0): record this stage's state
            self.save_checkpoint("last.pt", strategy, complete=True)
        rows = [r for r in self.history if r["stage"] == stage]
        return {
            "stage": stage,
            "best": self.best,
            "last": rows[-1] if rows else None,
            "history": rows,
            "seconds": time.perf_counter() - start_time,
        }

    def _run_epoch(self, strategy: Strategy, e: int, epochs: int, select_on: str, train_indices: Any) -> None:
        """One epoch of training, evaluation, history and checkpoints."""
        t0 = time.perf_counter()
        # The rate is a pure function of the global epoch (no scheduler state): resume and the optimizer reset
        # between stages need nothing more, and every parameter group (heads added in setup too) follows it.
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.preset.train, self.epoch)
        self.model.train()
        strategy.on_epoch_start(self, e)
        plan = strategy.sample_plan(self, e)  # None: the normal epoch; a plan's scoring pass is not training time
        self.model.train()
        t_train = time.perf_counter()
        acc = MeanAccumulator()
        n_batches = 0
        if plan is None:
            batches = self.batches("train", train=True, indices=train_indices)
        else:
            batches = self.plan_batches(plan, train_indices)
        desc = f"{self.stage} {e + 1}/{epochs}"
        for batch in progress_bar(batches, desc=desc, leave=False, disable=not self.progress, mininterval=1.0):
            self.optimizer.zero_grad(set_to_none=True)
            loss, parts = strategy.training_step(self, batch, e)
            loss.backward()
            strategy.after_backward(self, e)
            self.optimizer.step()
            acc.add({"loss": loss.detach(), **parts}, n=int(batch["label"].shape[0]))  # stays on the device
            n_batches += 1
        if n_batches == 0:
            raise ValueError(
                "the training split gave no batch: it is smaller than batch_size with drop_last; lower batch_size"
            )
        train_means = acc.compute()  # the one host sync of the epoch's training loop
        train_seconds = time.perf_counter() - t_train
        if not np.isfinite(train_means["loss"]):
            raise FloatingPointError(
                f"training loss became {train_means['loss']} in {self.stage} epoch {e}: lower the learning rate "
                f"(lr={self.preset.train.lr}) or check the inputs"
            )
        extra = strategy.on_epoch_end(self, e) or {}
        t_eval = time.perf_counter()
        val = self.evaluate("val", strategy)
        improved = select_on == "last" or self.best is None or val["acc"] > self.best["val"]["acc"]
        test = self.evaluate("test", strategy) if improved or self.test_every_epoch else {}
        eval_seconds = time.perf_counter() - t_eval
        self.epoch += 1
        self.stage_epoch = e + 1
        row: dict[str, Any] = {"stage": self.stage, "epoch": self.epoch - 1, "stage_epoch": e}
        row.update({f"train_{k}": v for k, v in train_means.items()})
        row.update({f"val_{k}": v for k, v in val.items()})
        row.update({f"test_{k}": v for k, v in test.items()})
        row.update(lr=float(self.optimizer.param_groups[0]["lr"]), train_seconds=train_seconds,
                   eval_seconds=eval_seconds, seconds=time.perf_counter() - t0)
        row.update(plain(extra))
        row["is_best"] = bool(improved)
        self.history.append(row)
        done = self.stage_epoch >= epochs
        if improved:
            self.best = {"stage": self.stage, "epoch": self.epoch - 1, "stage_epoch": e, "val": val, "test": test}
        interrupt = self.interrupt_at_epoch is not None and self.epoch >= self.interrupt_at_epoch
        self._checkpoint_epoch(strategy, improved, done, interrupt)
        if interrupt:
            raise TrainingInterrupted(f"interrupted after global epoch {self.epoch} (interrupt_at_epoch)")


# ------------------------------------------------------------------------------------------------ runs


def resume_stages(tr: Trainer, resume: bool, allowed: tuple[str, ...]) -> bool:
    """Resume from run_dir/last.pt when asked; refuse a run_dir that holds another method's run."""
    if not (resume and tr.resume()):
        return False
    if tr.stage not in allowed:
        tr._pending = None
        raise ValueError(
            f"{tr.run_dir} holds a {tr.stage!r} run, not {' / '.join(allowed)}: use another run_dir for this method, "
            "or pass resume=False to start over (its checkpoints will be overwritten)"
        )
    return True


def load_history(run_dir: str | Path) -> list[dict[str, Any]]:
    """The epoch history of a run folder (from its last.pt), e.g. for a figure of a reused run."""
    path = Path(run_dir) / "last.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{Path(run_dir)} holds no run (no last.pt): train it first")
    return from_json(load_safe(path)["history"])


def with_weights(cache: Any, preset: Preset, checkpoint: str | Path, seed: int = 0, device: str = "auto") -> Trainer:
    """A Trainer (in the checkpoint's folder, nothing written) holding `checkpoint`'s model weights, for evaluation
    passes such as `collect_outputs` (a warm-up's gaps, its per-sample scores)."""
    checkpoint = Path(checkpoint)
    tr = Trainer(cache, preset, checkpoint.parent, seed, device, progress=False)
    tr.model.load_state_dict(load_safe(checkpoint)["model"])
    return tr


def load_run(cache: Any, preset: Preset, run_dir: str | Path, seed: int = 0, device: str = "auto",
             which: str = "last") -> Trainer:
    """A Trainer holding a finished run's history (from last.pt) and the weights of `which` ("last" | "best")."""
    if which not in ("last", "best"):
        raise ValueError(f"which={which!r} must be 'last' or 'best'")
    run_dir = Path(run_dir)
    if not (run_dir / "last.pt").is_file():
        raise FileNotFoundError(f"{run_dir} holds no run (no last.pt): train it first")
    tr = Trainer(cache, preset, run_dir, seed, device, progress=False)
    tr.resume(check_preset="model")
    ckpt = tr._pending if which == "last" else load_safe(run_dir / "best.pt")
    tr.model.load_state_dict(ckpt["model"])
    tr._pending = None
    return tr


def train_baseline(
    cache: Any,
    preset: Preset,
    strategy: Strategy,
    run_dir: str | Path,
    seed: int = 0,
    epochs: int | None = None,
    device: str = "auto",
    resume: bool = True,
    interrupt_at_epoch: int | None = None,
    progress: bool = True,
    return_trainer: bool = False,
    test_every_epoch: bool = True,
) -> dict[str, Any]:
    """A single-stage method (a baseline Strategy) for `epochs` (default warmup + adaptive epochs); val-selected.

    ``test_every_epoch=False`` evaluates the test split only at epochs where validation improves (the ones
    that can be selected): the same result, without per-epoch test curves.
    """
    n = epochs if epochs is not None else preset.train.warmup_epochs + preset.train.adaptive_epochs
    tr = Trainer(cache, preset, run_dir, seed, device, progress=progress)
    tr.interrupt_at_epoch = interrupt_at_epoch
    tr.test_every_epoch = test_every_epoch
    stage = getattr(strategy, "name", "baseline")
    resume_stages(tr, resume, (stage,))
    res = tr.fit(strategy, n, stage)
    result = {**best_summary(res), "history": tr.history, "timings": stage_timings(tr.history, stage),
              "run_dir": str(tr.run_dir), "seed": seed, "device": str(tr.device), "method": stage}
    if return_trainer:
        result["trainer"] = tr
    return result
