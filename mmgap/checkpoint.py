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
import re
import time
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmgap.atomic import DIGEST, DamagedFile, digest_mismatch, file_digest, read_json, tmp_name, write_json


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated or holds objects that weights_only loading refuses."""


class DamagedCheckpoint(CheckpointError):
    """A checkpoint's bytes differ from the digest written beside it (or its zip records fail their CRC)."""


DIGEST_SUFFIX = ".sha256"
LOADED_BYTES = 256 * 2**20
"""At most this many bytes of checkpoints are kept loaded in a process (`load_safe`): a sweep's runs read the same
warm-up two or three times each (its compatibility check, its start, Table VII's starting point), and a sweep's
planning once per run; at `demo` a load (sha256 and weights-only unpickling of ~3 MB) takes ~60 ms."""
RACY_NS = 2_000_000_000
"""A file modified less than this long (ns) before it is read is not kept (`_remember`)."""
_loaded: OrderedDict[tuple, tuple[dict[str, Any], int]] = OrderedDict()


def digest_path(path: str | Path) -> Path:
    """The digest file written beside a checkpoint: ``<name>.sha256`` (JSON: size, sha256, previous)."""
    path = Path(path)
    return path.with_name(path.name + DIGEST_SUFFIX)


def save_atomic(obj: dict[str, Any], path: str | Path) -> Path:
    """Write `obj` with torch.save to a temporary file beside `path`, then os.replace it into place, with its
    size and sha256 in ``<name>.sha256``.

    A crash mid-write leaves the previous file intact (os.replace is atomic on one file system). The digest
    file is replaced first and also lists the previous checkpoint's digest, so whichever of the two a crash
    leaves in place still checks.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(path)
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        record = {"file": path.name, **file_digest(tmp)}
        old = _read_digest(path)
        if old is not None:
            record["previous"] = {k: old[k] for k in ("size", DIGEST) if k in old}
        write_json(digest_path(path), record, indent=1)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _read_digest(path: Path) -> dict[str, Any] | None:
    """The digest record beside `path`, or None when there is none or it is unreadable (re-written next save)."""
    try:
        rec = read_json(digest_path(path), fix="")
    except (DamagedFile, OSError):
        return None
    return rec if isinstance(rec, dict) else None


def verify(path: str | Path) -> None:
    """`DamagedCheckpoint` when `path` differs from its ``.sha256`` record (or, for a checkpoint written
    without one, when a record of its zip archive fails its CRC-32)."""
    path = Path(path)
    fix = (f"delete it ({path.name} and {digest_path(path).name}) and re-run: an interrupted run resumes "
           "from its other checkpoints or starts over; a warm-up is trained again")
    rec = None
    if digest_path(path).is_file():
        try:
            rec = read_json(digest_path(path), fix)
        except DamagedFile:
            rec = None  # an unreadable record is no evidence against the checkpoint: check the archive
    if isinstance(rec, dict):
        why = digest_mismatch(path, rec)
        if why is None or (rec.get("previous") and digest_mismatch(path, rec["previous"]) is None):
            return
        raise DamagedCheckpoint(f"damaged: {path} ({why}); {fix}")
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as exc:
        raise DamagedCheckpoint(f"damaged: {path} (not a complete checkpoint archive: {exc}); {fix}") from None
    if bad is not None:
        raise DamagedCheckpoint(f"damaged: {path} (record {bad} fails its CRC check); {fix}")


def _torch_reason(exc: BaseException) -> str:
    """torch's reason for refusing a file, without its advice to load it with weights_only=False."""
    text = str(exc)
    m = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    text = m.group(1) if m else text
    sentences = re.split(r"(?<=[.!?])\s+|\n+", text)
    advice = ("weights_only", "weights only", "trust", "documentation", "unsafe", "pytorch 2.6", "safe_globals",
              "allowlist")
    kept = [t for t in sentences if t.strip() and not any(a in t.lower() for a in advice)]
    return " ".join(kept[:2]).strip() or type(exc).__name__


def copy_state(value: Any, device: str | torch.device | None = None) -> Any:
    """`value` with every tensor detached and cloned (to `device` when given; dicts, lists and tuples rebuilt):
    a state that its source can no longer change, nor it its source. One tensor met twice stays one tensor."""
    memo: dict[int, torch.Tensor] = {}

    def copy(v: Any) -> Any:
        if isinstance(v, torch.Tensor):
            if id(v) not in memo:
                memo[id(v)] = v.detach().to(device, copy=True) if device is not None else v.detach().clone()
            return memo[id(v)]
        if isinstance(v, dict):
            return {k: copy(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return type(v)(copy(x) for x in v)
        return v

    return copy(value)


def _identity(path: Path) -> tuple:
    """What changes when a checkpoint's bytes or its digest record may have: path, and size, modification and
    change times (ns) and inode of both files (a rewrite by `save_atomic` is a new inode)."""
    parts: list[Any] = [str(path.resolve())]
    for p in (path, digest_path(path)):
        try:
            st = p.stat()
            parts.append((st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
        except OSError:
            parts.append(None)
    return tuple(parts)


def _remember(key: tuple, obj: dict[str, Any], read_at_ns: int) -> None:
    """Keep a private copy of a loaded checkpoint (the least recently used go beyond `LOADED_BYTES`).

    Only a file last modified over `RACY_NS` before it was read: a later write then always changes its
    modification time, even on a file system with coarse timestamps (as git treats "racily clean" files).
    """
    size, mtime_ns = key[1][0], key[1][1]
    if size > LOADED_BYTES or read_at_ns - mtime_ns < RACY_NS:
        return
    _loaded[key] = (copy_state(obj), size)
    while sum(n for _, n in _loaded.values()) > LOADED_BYTES:
        _loaded.popitem(last=False)


def load_safe(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)`` after checking its digest; clear errors for
    missing, damaged or unsafe files (never the advice to load them unsafely).

    A file this process loaded before and that is unchanged since (`_identity`: same inode, size and times,
    its digest record too; see `_remember`) is not hashed and unpickled again: a copy of the loaded state is
    returned.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist: train first (e.g. mmgap.method.run_two_stage) or pass the "
            "path of an existing .pt file"
        )
    read_at_ns = time.time_ns()
    key = (*_identity(path), str(map_location))
    hit = _loaded.get(key)
    if hit is not None:
        _loaded.move_to_end(key)
        return copy_state(hit[0])
    verify(path)
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"checkpoint {path} holds objects that safe loading refuses ({_torch_reason(exc)}); it was not "
            "written by mmgap, or was written with arbitrary Python objects. mmgap loads checkpoints only "
            "safely: delete it and re-run, or re-create it with mmgap.checkpoint.save_atomic from plain values"
        ) from None
    except (RuntimeError, EOFError, ValueError, KeyError) as exc:
        raise DamagedCheckpoint(
            f"damaged: {path} (unreadable: {_torch_reason(exc)}); delete it and re-run"
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(obj).__name__}, expected a dict")
    _remember(key, obj, read_at_ns)
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
