"""Process hygiene on shared folders: a lock per cache key and per run folder (so two notebooks at once
share the work or wait), removal of the leftovers of dead processes, and disk space and write checks that
fail with a message before a build starts rather than with a Bus error in the middle of it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

# `.<name>.tmp-<pid>` (cache and dataset builds) and `.<name>.tmp-<pid>-<hex>` (mmgap.atomic writes)
_TMP = re.compile(r"^\..+\.tmp-(\d+)(?:-[0-9a-f]+)?$")


class NotWritable(OSError):
    """The chosen folder cannot be written (read-only file system, permissions)."""

    def __str__(self) -> str:
        return str(self.strerror)


class DiskFull(OSError):
    """Not enough free space for a build."""

    def __str__(self) -> str:
        return str(self.strerror)


def _try_lock(fd: int, within_s: float) -> bool:
    """Take the lock if it is free or frees up within `within_s` seconds; False if it is still held."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


@contextlib.contextmanager
def file_lock(lock_path: str | Path, what: str, log: Callable[[str], None] = print,
              poll_s: float = 0.5, quiet_s: float = 2.0) -> Iterator[Path]:
    """Hold an exclusive `fcntl.flock` on `lock_path` (created) while the block runs; others wait.

    The lock dies with its process (a killed kernel frees it at once). A wait longer than `quiet_s` (two
    runs of a sweep passing through a finished warm-up's lock wait milliseconds) gets one note naming the
    lock and the process holding it, and one when it is released.
    """
    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if not _try_lock(fd, quiet_s):
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            log(f"note: waiting for {what}: {holder} holds its lock ({lock_path.name})")
            t0 = time.monotonic()
            fcntl.flock(fd, fcntl.LOCK_EX)
            log(f"note: {what}: released after {time.monotonic() - t0:.0f} s; going on")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)
        yield lock_path
    finally:
        os.close(fd)  # closing releases the lock


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (on this machine)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_tmp(folder: str | Path, log: Callable[[str], None] = print) -> list[Path]:
    """Remove ``.<name>.tmp-<pid>[...]`` files and folders in `folder` whose process is gone; returns them."""
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for p in entries:
        m = _TMP.match(p.name)
        if not m or int(m.group(1)) == os.getpid() or pid_alive(int(m.group(1))):
            continue
        try:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            log(f"note: could not remove {p}, left by a process that is gone: {exc}")
            continue
        removed.append(p)
    if removed:
        log(f"note: removed {len(removed)} leftover(s) of interrupted builds in {folder.name}: "
            + ", ".join(p.name for p in removed))
    return removed


def ensure_writable(folder: str | Path, what: str, fix: str) -> Path:
    """Create `folder` and check a file can be written in it; `NotWritable` naming it and `fix` otherwise."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test.tmp-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise NotWritable(exc.errno or errno.EACCES,
                          f"cannot write the {what} in {folder} ({exc.strerror or exc}); {fix}") from None
    return folder


def human(n: float) -> str:
    """Bytes in B / KiB / MiB / GiB / TiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def check_free_space(folder: str | Path, needed: int, what: str, fix: str) -> None:
    """`DiskFull` naming the folder, the bytes needed and those free, when `folder` has less than `needed`."""
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise DiskFull(errno.ENOSPC, f"not enough disk space for the {what} in {folder}: it needs "
                                     f"{human(needed)}, {human(free)} free; {fix}")


def reserve(fd: int, size: int, path: Path, fix: str) -> None:
    """Allocate `size` bytes of the open file now (`posix_fallocate`), so that writing through a memory map
    can never hit a full disk (which kills the process with SIGBUS); `DiskFull` when it cannot."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise DiskFull(errno.ENOSPC, f"disk full: cannot reserve {human(size)} for {path}; {fix}") from None
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)):
            raise
