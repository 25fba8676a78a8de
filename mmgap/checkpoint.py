"""Checkpoints written atomically and loaded safely (``torch.load(weights_only=True)``).

A checkpoint is a dict of tensors and plain values (str, int, float, bool, None, lists and dicts of them),
so it loads with ``weights_only=True``: nothing in it can run code. Richer values (the training history,
mixture parameters) are stored as JSON strings; `to_json` / `from_json` convert them.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated or holds objects that weights_only loading refuses."""


def save_atomic(obj: dict[str, Any], path: str | Path) -> Path:
    """Write `obj` with torch.save to a temporary file beside `path`, then os.replace it into place.

    A crash mid-write leaves the previous file intact (os.replace is atomic on one file system).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_safe(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)``; clear errors for missing or unsafe files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist: train first (e.g. mmgap.method.run_two_stage) or pass the "
            "path of an existing .pt file"
        )
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"checkpoint {path} holds objects that weights_only loading refuses ({exc}); it was not written "
            "by mmgap, or was written with arbitrary Python objects: re-create it with mmgap.checkpoint.save_atomic"
        ) from exc
    except (RuntimeError, EOFError) as exc:
        raise CheckpointError(
            f"checkpoint {path} is unreadable (truncated or corrupt?): {exc}; delete it and re-run"
        ) from exc
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(obj).__name__}, expected a dict")
    return obj


def plain(value: Any) -> Any:
    """Convert tensors, numpy values and tuples into JSON-friendly Python values (NaN/inf become None)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return plain(value.item() if value.numel() == 1 and value.dim() == 0 else value.tolist())
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        return plain(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return plain(to_dict())
    raise TypeError(f"cannot store a {type(value).__name__} in a checkpoint or metrics file: convert it first")


def to_json(value: Any) -> str:
    """JSON string of `value` after `plain` (for history rows and mixture parameters inside checkpoints)."""
    return json.dumps(plain(value))


def from_json(text: str) -> Any:
    """Inverse of `to_json`."""
    return json.loads(text)
