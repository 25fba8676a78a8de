"""The notebooks' parameter checks: papermill does no type checking, so each notebook validates here.

Every check raises `mmgap.config.ConfigError` with the parameter, the value and what to pass instead.
Lists may arrive as text (``papermill -p seeds '[0, 1]'``).
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import json
from collections.abc import Callable, MutableMapping
from typing import Any, NamedTuple

import numpy as np
import torch

from mmgap import baselines, hints, paths
from mmgap.config import ConfigError, Preset, get_preset
from mmgap.data import DATASETS
from mmgap.experiments.settings import CONTROL, OURS, adam_lr_for, ordered_tables
from mmgap.experiments.workers import check_executor, default_workers
from mmgap.trainer import resolve_device


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
    if dataset not in DATASETS:
        raise ConfigError(f"dataset={dataset!r} is unknown: choose one of {', '.join(DATASETS)} (see data/README.md)")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed={seed!r} must be a non-negative integer")
    if device not in ("auto", "cpu") and not str(device).startswith("cuda"):
        raise ConfigError(f"device={device!r} must be 'auto', 'cpu' or 'cuda'")


def check_run_params(dataset: str, seed: Any, device: str, fresh: Any, workers: Any) -> tuple[torch.device, int]:
    """Validate the parameters the sweep notebooks share; returns (device, workers) or raises ConfigError."""
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


def check_engine(executor: Any, address: Any, gpus_per_run: Any) -> None:
    """Validate where a notebook's runs go (``executor``, ``address``, ``gpus_per_run``); raises ConfigError.

    ``"ray"`` also needs Ray installed (checked here, before any work, rather than at the first sweep).
    """
    if not isinstance(executor, str) or executor not in ("local", "ray"):
        raise ConfigError(f"executor={executor!r} must be 'local' (this machine's processes) or 'ray' (a Ray "
                          "cluster, see docs/cluster.md)")
    if isinstance(gpus_per_run, str):  # papermill -p gpus_per_run 0.25 passes a number; the text form is forgiven
        gpus_per_run = _number(gpus_per_run)
    try:
        check_executor(executor, address, gpus_per_run)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if gpus_per_run is not None and executor != "ray":
        raise ConfigError(f"gpus_per_run={gpus_per_run!r} is for executor='ray' (local runs use one GPU each, or "
                          "several processes per GPU through mmgap.experiments.run_jobs(runs_per_gpu=...))")
    if executor == "ray" and importlib.util.find_spec("ray") is None:
        raise ConfigError('executor=\'ray\' needs Ray, which is not installed: pip install -e ".[ray]" '
                          "(or pip install ray), or use executor='local'")


def _engine_of(ns: MutableMapping[str, Any]) -> dict[str, Any]:
    """The engine parameters of a notebook that has them, checked; {} for one that has none."""
    if not any(k in ns for k in ("executor", "address", "gpus_per_run")):
        return {}
    executor, address, gpus = ns.get("executor", "local"), ns.get("address"), ns.get("gpus_per_run")
    check_engine(executor, address, gpus)
    return {"gpus_per_run": _number(gpus) if isinstance(gpus, str) else gpus}


def check_seeds(seeds: Any, preset: Preset, first: int = 0) -> list[int]:
    """The training seeds: ``None`` -> as many as the preset has, counting from `first` (0, 1, 2 at demo)."""
    seeds = _from_text(seeds)
    if seeds is None:
        return [int(first) + k for k in range(len(preset.seeds))]
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        raise ConfigError(f"seeds={seeds!r} is one number where a list is expected: pass seeds = [{seeds}] in the "
                          f"parameters cell (papermill: -p seeds '[{seeds}]'), or a longer list such as [0, 1, 2]")
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
    return ordered_tables(_from_text(tables))


def check_taus(taus: Any) -> list[float]:
    """Purification thresholds τ on w0: a non-empty list of numbers in (0, 1], sorted ascending."""
    taus = _from_text(taus)
    if isinstance(taus, (int, float)) and not isinstance(taus, bool):
        raise ConfigError(f"taus={taus!r} is one number where a list is expected: pass taus = [{taus}] in the "
                          f"parameters cell (papermill: -p taus '[{taus}]')")
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
    return tuple(baselines.NAMES)


# ------------------------------------------------------------------------------------------------ one call per notebook
class Checked(NamedTuple):
    """What a notebook's parameter check gives back: ``cfg, dev = experiments.check_params(globals(), ...)``."""

    preset: Preset
    device: torch.device


def check_params(namespace: MutableMapping[str, Any], notebook: str) -> Checked:
    """Validate a course notebook's parameters (its ``globals()``) in one call; raises ConfigError naming a bad one.

    `notebook` is the notebook's name or number ("04_adaptive" or "04"). Parameters that arrive as text or
    as None-for-the-default are written back resolved (``seeds``, ``tables``, ``taus``, ``methods``,
    ``workers``, ``adam_lr``, ``gpus_per_run``), so the cells below use them as they are. In a kernel it also
    installs the course's hints (`mmgap.hints`: a cell run too early names the cell to run first).
    """
    number = str(notebook)[:2]
    if number not in _CHECKS:
        raise ConfigError(f"notebook={notebook!r}: no parameter checks for it; expected one of {sorted(_CHECKS)}")
    hints.install(notebook=notebook)
    missing = [name for name in ("dataset", "preset", "seed", "device") if name not in namespace]
    if missing:
        raise ConfigError(f"parameters {missing} are not defined: run the parameters cell (the first code cell) "
                          "before this one")
    check_injected_names(namespace, number)
    if not isinstance(namespace.get("rebuild", False), bool):
        raise ConfigError(f"rebuild={namespace['rebuild']!r} must be True or False")
    preset, resolved = _CHECKS[number](namespace)
    resolved.update(_engine_of(namespace))
    namespace.update(resolved)
    try:
        device = resolve_device(namespace["device"])
    except ValueError as err:  # e.g. "cuda" asked for on a machine without a GPU
        raise ConfigError(str(err)) from None
    return Checked(preset, device)


def notebook_parameters(number: str) -> list[str] | None:
    """The names a course notebook's parameters cell defines (None when the notebook sources are not at hand)."""
    sources = sorted((paths.NOTEBOOKS_DIR / "src").glob(f"{number}_*.py"))
    if not sources:
        return None
    cell = sources[0].read_text(encoding="utf-8").split('# %% tags=["parameters"]', 1)[-1].split("\n# %%", 1)[0]
    return [t.id for node in ast.parse(cell).body if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name)]


def check_injected_names(namespace: MutableMapping[str, Any], number: str) -> None:
    """Refuse a parameter papermill injected that the notebook does not have (``-p rhoo 0.5``: a typo).

    papermill writes its ``-p`` values into a cell headed ``# Parameters`` run after the parameters cell, and
    otherwise only warns; IPython's input history (``In``) holds that cell's source, so the names come from it.
    """
    known = notebook_parameters(number)
    history = namespace.get("In")
    if known is None or not isinstance(history, list):
        return
    injected: list[str] = []
    for source in history:
        if isinstance(source, str) and source.lstrip().startswith("# Parameters"):
            try:
                tree = ast.parse(source)
            except SyntaxError:
                continue
            injected += [t.id for node in tree.body if isinstance(node, ast.Assign)
                         for t in node.targets if isinstance(t, ast.Name)]
    unknown = [name for name in dict.fromkeys(injected) if name not in known]
    if unknown:
        hints_ = []
        for name in unknown:
            close = difflib.get_close_matches(name, known, n=1)
            hints_.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigError(f"unknown parameter(s) {', '.join(hints_)} for notebook {number}: it takes "
                          f"{', '.join(known)}")


def _plain(ns: MutableMapping[str, Any]) -> tuple[Preset, dict[str, Any]]:
    """01 and 02: the common parameters and the preset."""
    check_common(ns["dataset"], ns["seed"], ns["device"])
    return get_preset(ns["preset"], dataset=ns["dataset"]), {}


def _gap_fitting(ns: MutableMapping[str, Any]) -> tuple[Preset, dict[str, Any]]:
    """03: the mixture family of Fig. 3 and how many clips to show."""
    check_common(ns["dataset"], ns["seed"], ns["device"])
    top_k = ns["top_k"]
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ConfigError(f"top_k={top_k!r} must be an integer >= 1")
    return get_preset(ns["preset"], dataset=ns["dataset"], mixture=ns["mixture"]), {}


_EQ11 = ("rho", "alpha", "beta", "gamma", "gap", "mixture", "refit_every", "optimizer", "reset_optimizer",
         "posterior")


def _adaptive(ns: MutableMapping[str, Any]) -> tuple[Preset, dict[str, Any]]:
    """04: Eq. 11's hyperparameters (None: the preset's value) and the t-SNE size."""
    check_common(ns["dataset"], ns["seed"], ns["device"])
    tsne_points = ns["tsne_points"]
    if isinstance(tsne_points, bool) or not isinstance(tsne_points, int) or tsne_points < 10:
        raise ConfigError(f"tsne_points={tsne_points!r} must be an integer >= 10")
    overrides = {k: ns[k] for k in _EQ11 if ns.get(k) is not None}
    for name in ("rho", "alpha", "beta", "gamma"):
        if name in overrides and (isinstance(overrides[name], bool) or not isinstance(overrides[name], (int, float))):
            raise ConfigError(f"{name}={overrides[name]!r} must be a number (or None for the preset's value)")
    if "reset_optimizer" in overrides and not isinstance(overrides["reset_optimizer"], bool):
        raise ConfigError(f"reset_optimizer={overrides['reset_optimizer']!r} must be True or False "
                          "(or None for the preset's value)")
    # ConfigError names an out-of-range value (rho 1.5, ...)
    return get_preset(ns["preset"], dataset=ns["dataset"], **overrides), {}


def _sweep(ns: MutableMapping[str, Any], preset: Preset) -> dict[str, Any]:
    """05-07: the run parameters and the seeds."""
    _, workers = check_run_params(ns["dataset"], ns["seed"], ns["device"], ns["fresh"], ns["workers"])
    return {"workers": workers, "seeds": check_seeds(ns["seeds"], preset, first=ns["seed"])}


def _ablations(ns: MutableMapping[str, Any]) -> tuple[Preset, dict[str, Any]]:
    """05: which tables, the adaptive epochs and Adam's learning rate."""
    epochs = ns["adaptive_epochs"]
    preset = get_preset(ns["preset"], dataset=ns["dataset"],
                        **({} if epochs is None else {"adaptive_epochs": epochs}))
    resolved = {**_sweep(ns, preset), "tables": check_tables(ns["tables"])}
    adam_lr = adam_lr_for(preset) if ns["adam_lr"] is None else ns["adam_lr"]
    if isinstance(adam_lr, bool) or not isinstance(adam_lr, (int, float)) or not adam_lr > 0:
        raise ConfigError(f"adam_lr={adam_lr!r} must be a positive learning rate (or None: 0.5 × the SGD rate)")
    return preset, {**resolved, "adam_lr": adam_lr}


def _purification(ns: MutableMapping[str, Any]) -> tuple[Preset, dict[str, Any]]:
    """06: the thresholds τ and the fine-tuning epochs."""
    epochs = ns["finetune_epochs"]
    preset = get_preset(ns["preset"], dataset=ns["dataset"],
                        **({} if epochs is None else {"finetune_epochs": epochs}))
    resolved = {**_sweep(ns, preset), "taus": check_taus(ns["taus"])}
    if preset.train.finetune_epochs < 1:
        raise ConfigError(f"finetune_epochs={preset.train.finetune_epochs} must be at least 1 "
                          "(fine-tuning needs an epoch)")
    return preset, resolved


def _baselines(ns: MutableMapping[str, Any]) -> tuple[Preset, dict[str, Any]]:
    """07: the Table II methods."""
    preset = get_preset(ns["preset"], dataset=ns["dataset"])
    return preset, {**_sweep(ns, preset), "methods": check_methods(ns["methods"])}


_CHECKS: dict[str, Callable[[MutableMapping[str, Any]], tuple[Preset, dict[str, Any]]]] = {
    "01": _plain, "02": _plain, "03": _gap_fitting, "04": _adaptive, "05": _ablations, "06": _purification,
    "07": _baselines,
}
