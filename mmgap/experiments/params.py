"""The notebooks' parameter checks: papermill does no type checking, so each notebook validates here.

Every check raises `mmgap.config.ConfigError` with the parameter, the value and what to pass instead.
Lists may arrive as text (``papermill -p seeds '[0, 1]'``).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch

from mmgap import baselines
from mmgap.config import ConfigError, Preset
from mmgap.data import DATASETS
from mmgap.experiments.settings import CONTROL, OURS, ordered_tables
from mmgap.experiments.workers import default_workers
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


def check_run_params(dataset: str, seed: Any, device: str, fresh: Any, workers: Any) -> tuple["torch.device", int]:
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
    return ordered_tables(_from_text(tables))


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
    return tuple(baselines.NAMES)
