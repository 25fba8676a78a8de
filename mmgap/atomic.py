"""Every file mmgap writes goes through here: written to a temporary file beside it, flushed to disk and
renamed into place, so that a reader sees the old file or the new one, never half of one; digests of what
was written, so that damage is found on load; and reading of "finished" markers that names the file.

Temporary files are named ``.<name>.tmp-<pid>-<random>``: `mmgap.locks.remove_stale_tmp` removes those
of processes that are gone (a killed kernel, a full disk).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

DIGEST = "sha256"
_CHUNK = 1 << 22


class DamagedFile(RuntimeError):
    """A file mmgap wrote is unreadable, incomplete or differs from the digest written with it."""

    def __init__(self, path: str | Path, why: str, fix: str) -> None:
        self.path, self.why, self.fix = Path(path), why, fix
        super().__init__(f"damaged: {path} ({why}); {fix}")


def tmp_name(path: Path) -> Path:
    """The temporary file a write of `path` goes through: ``.<name>.tmp-<pid>-<random>`` beside it."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(3)}")


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", encoding: str | None = None,
                newline: str | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file beside `path` for writing; on success fsync it and rename it into place.

    On any error (a full disk, a kill signal turned into an exception) the temporary file is removed and
    the previous `path`, if any, is left as it was.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(path)
    try:
        with open(tmp, mode, encoding=encoding if "b" not in mode else None,
                  newline=newline if "b" not in mode else None) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
    return Path(path)


def write_json(path: str | Path, obj: Any, **dumps: Any) -> Path:
    """Write `obj` as JSON (``json.dumps(obj, **dumps)`` plus a newline) to `path` atomically."""
    return write_text(path, json.dumps(obj, **dumps) + "\n")


def write_with(path: str | Path, writer: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``writer(binary file handle)`` on a temporary file and rename it to `path` (np.save, torch.save,
    fig.savefig, ...)."""
    with atomic_open(path, "wb") as fh:
        writer(fh)
    return Path(path)


def save_npy(path: str | Path, array: Any) -> Path:
    """``np.save`` to `path` atomically (no pickle)."""
    import numpy as np

    return write_with(path, lambda fh: np.save(fh, np.asarray(array), allow_pickle=False))


def save_figure(fig: Any, path: str | Path, **kwargs: Any) -> Path:
    """``fig.savefig`` to `path` atomically (the format from the suffix)."""
    fmt = kwargs.pop("format", None) or Path(path).suffix.lstrip(".") or None
    return write_with(path, lambda fh: fig.savefig(fh, format=fmt, **kwargs))


def read_json(path: str | Path, fix: str) -> Any:
    """The JSON in `path`; `DamagedFile` naming the file and `fix` when it is empty, cut or not JSON."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
        if not text.strip():
            raise DamagedFile(path, "empty file: a write that never finished", fix)
        return json.loads(text)
    except UnicodeDecodeError as exc:
        raise DamagedFile(path, f"not UTF-8 text at byte {exc.start}", fix) from None
    except json.JSONDecodeError as exc:
        raise DamagedFile(path, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", fix) from None


def file_digest(path: str | Path) -> dict[str, Any]:
    """``{"size": bytes, "sha256": hex}`` of a file, hashed in chunks (no whole-file read into memory)."""
    h = hashlib.new(DIGEST)
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return {"size": size, DIGEST: h.hexdigest()}


def digest_mismatch(path: str | Path, expected: dict[str, Any]) -> str | None:
    """Why `path` differs from its recorded ``{"size", "sha256"}`` (size first: cheap), or None when it matches."""
    path = Path(path)
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if size != expected.get("size"):
        return f"{size} bytes, {expected.get('size')} written"
    if file_digest(path)[DIGEST] != expected.get(DIGEST):
        return f"its {DIGEST} differs from the one written with it: bytes changed after writing"
    return None
