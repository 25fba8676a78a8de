"""Sweep workers end with their sweep: at once on an interrupt (Ctrl-C, JupyterLab's stop button) and by
themselves when the process that started them dies (a killed kernel); runs resume from checkpoints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mmgap.data import FeatureCache, load_cache
from mmgap.data.cache import CACHE_FORMAT
from mmgap.experiments import run_jobs


def _sleeping_job(cache, log, pid_dir: str, seed: int) -> dict:
    """A long job (module level: spawned workers import it by name) that says which process runs it."""
    Path(pid_dir, f"{seed}.pid").write_text(str(os.getpid()))
    try:
        time.sleep(120)
    except KeyboardInterrupt:  # what the trainer does here: write the epochs it holds in memory, then re-raise
        Path(pid_dir, f"{seed}.unwound").write_text("")
        raise
    return {"seed": seed}


def _disk_cache(folder: Path) -> FeatureCache:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    n = 8
    arrays = {"audio": rng.normal(size=(n, 4, 4)).astype(np.float16),
              "frames": rng.integers(0, 255, (n, 1, 8, 8, 3)).astype(np.uint8),
              "labels": np.arange(n) % 2, "split": np.zeros(n, np.int8)}
    for name, arr in arrays.items():
        np.save(folder / f"{name}.npy", arr)
    (folder / "meta.json").write_text(json.dumps({"format": CACHE_FORMAT, "clip_ids": [str(i) for i in range(n)],
                                                  "class_names": ["a", "b"], "protocol": {}}))
    return load_cache(folder)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.is_file() and "State:\tZ" in status.read_text())  # a zombie has ended


def _wait_for(pid_dir: Path, n: int, timeout: float = 60.0) -> list[int]:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        files = sorted(pid_dir.glob("*.pid"))
        if len(files) >= n and all(f.read_text() for f in files):
            return [int(f.read_text()) for f in files]
        time.sleep(0.2)
    raise AssertionError(f"the workers did not start within {timeout} s")


def test_an_interrupt_ends_busy_workers_at_once(tmp_path):
    cache = _disk_cache(tmp_path / "cache")
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    jobs = [(_sleeping_job, {"pid_dir": str(pid_dir), "seed": s}) for s in range(2)]
    main = threading.main_thread().ident

    def interrupt_when_busy() -> None:
        _wait_for(pid_dir, 2)
        signal.pthread_kill(main, signal.SIGINT)  # what Ctrl-C and the stop button send to a kernel

    threading.Thread(target=interrupt_when_busy, daemon=True).start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_jobs(cache, jobs, workers=2, log=lambda *_: None)
    pids = _wait_for(pid_dir, 2)
    assert time.monotonic() - t0 < 60  # not the jobs' 120 s: the busy workers did not finish their runs
    assert not any(_alive(pid) for pid in pids)
    # the busy workers unwound (as after a Ctrl-C) instead of dying: a trainer there flushes its held checkpoints
    assert sorted(p.name for p in pid_dir.glob("*.unwound")) == ["0.unwound", "1.unwound"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to follow the orphaned workers")
def test_workers_end_themselves_when_their_parent_is_killed(tmp_path):
    cache_dir, pid_dir = tmp_path / "cache", tmp_path / "pids"
    _disk_cache(cache_dir)
    pid_dir.mkdir()
    here = Path(__file__).parent
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(here)!r})
        from test_workers_lifetime import _sleeping_job
        from mmgap.data import load_cache
        from mmgap.experiments import run_jobs
        jobs = [(_sleeping_job, {{"pid_dir": {str(pid_dir)!r}, "seed": s}}) for s in range(2)]
        run_jobs(load_cache({str(cache_dir)!r}), jobs, workers=2, log=lambda *_: None)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script])  # stands for a Jupyter kernel
    try:
        pids = _wait_for(pid_dir, 2)
        parent.kill()  # SIGKILL: no handler runs, as when a kernel dies
        parent.wait()
        t0 = time.monotonic()
        while any(_alive(pid) for pid in pids) and time.monotonic() - t0 < 15:
            time.sleep(0.2)
        assert not any(_alive(pid) for pid in pids), "orphaned workers kept running after their parent died"
    finally:
        parent.kill()
        for f in pid_dir.glob("*.pid"):  # never leave a worker behind, whatever failed
            try:
                os.kill(int(f.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
