"""Runs spread over worker processes: one per CPU core on the CPU, one process on a GPU.

A job is ``(function, kwargs)``: a module-level function called as ``function(cache=..., log=..., **kwargs)``
(the run functions of `mmgap.experiments.runs`). Each worker loads the feature cache once and trains with one
torch thread; every run is seeded on its own, so a result does not depend on which worker ran it.

Workers live exactly as long as their sweep: the pool starts with it and ends with it; an interrupt (Ctrl-C,
JupyterLab's stop button) ends the busy workers at once, and a worker whose parent dies (a killed kernel)
ends itself within a second. Runs stopped that way resume from their last checkpoint next time.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import as_completed
from pathlib import Path
from typing import Any

from mmgap import paths
from mmgap.device import release_device_memory, resolve_device
from mmgap.progress import progress

Job = tuple[Callable[..., Any], dict[str, Any]]
"""A run to do: a module-level function (picklable by name) and its keyword arguments (without cache, log)."""

PARENT_CHECK_S = 1.0
"""How often a worker checks that the process that started it is still alive."""


def default_workers(device: str = "auto") -> int:
    """Runs at once: one per CPU core (at most 4) on the CPU, one on a GPU (a single process uses it best)."""
    if resolve_device(device).type != "cpu":
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, cores))


def gpu_workers(jobs: Sequence[Job], workers: int, log: Any = print) -> int:
    """`workers`, or 1 when the jobs train on a GPU: each process would hold its own CUDA context and its own
    copy of the data, and their memory checks (`mmgap.device.choose_data_path`) would race for one device."""
    if workers > 1 and any(resolve_device(kw.get("device", "auto")).type == "cuda" for _, kw in jobs):
        log(f"workers={workers} on a GPU: running 1 process (one CUDA context and one copy of the data per GPU; "
            "parallel processes would race for its memory)")
        return 1
    return workers


def _released(result: Any) -> Any:
    """A run's result, after the device memory the run held went back (the next run plans with all of it)."""
    release_device_memory()
    return result


_WORKER_CACHE: Any = None


def _init_worker(cache_path: str, parent_pid: int) -> None:
    """Worker start: tied to its parent, one torch thread (the workers already fill the cores), the cache once."""
    import signal

    import torch

    from mmgap.data import load_cache

    global _WORKER_CACHE
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # an interrupt reaches the caller, which ends the workers
    _exit_with_parent(parent_pid)
    torch.set_num_threads(1)
    _WORKER_CACHE = load_cache(cache_path)


def _exit_with_parent(parent_pid: int) -> None:
    """A daemon thread that ends this process when its parent is gone (a killed Jupyter kernel, SIGKILL).

    Checking the parent's pid works on every POSIX system (Linux's PR_SET_PDEATHSIG follows the parent *thread*);
    `os._exit` skips cleanup on purpose: checkpoints are written atomically, so an unfinished epoch is simply lost.
    """
    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(70)
            time.sleep(PARENT_CHECK_S)

    threading.Thread(target=watch, name="mmgap-parent-watch", daemon=True).start()


def _call_in_worker(
    fn: Callable[..., Any], kwargs: dict[str, Any], runs_root: str,
) -> tuple[Any, list[str], list[tuple[str, str]]]:
    """One job on the worker's cache under the caller's runs folder; its log lines and warnings come back."""
    os.environ["MMGAP_RUNS_DIR"] = runs_root
    logs: list[str] = []
    out, caught = _recording_warnings(fn, cache=_WORKER_CACHE, log=logs.append, **kwargs)
    return _released(out), logs, caught


def _recording_warnings(fn: Callable[..., Any], **kwargs: Any) -> tuple[Any, list[tuple[str, str]]]:
    """Call `fn`, keeping the warnings it raises as (category, message) instead of printing them."""
    with warnings.catch_warnings(record=True) as caught:  # entering resets the once-per-place registries
        out = fn(**kwargs)
    return out, [(w.category.__name__, str(w.message)) for w in caught]


def _run_name(out: Any, fn: Callable[..., Any], kwargs: dict[str, Any]) -> str:
    """How a summary names a run: its folder under the runs root, else the function and its seed."""
    run = out.get("run_dir") if isinstance(out, dict) else None
    if run:
        try:
            return Path(run).resolve().relative_to(paths.runs_root().resolve()).as_posix()
        except ValueError:
            return Path(run).name
    return f"{fn.__name__}(seed={kwargs.get('seed')})"


def warning_summary(caught: Sequence[tuple[str, list[tuple[str, str]]]], desc: str = "runs") -> list[str]:
    """One line per warning category over a sweep, naming the runs that raised it and the first message's gist.

    `caught` holds (run name, [(category, message), ...]) per run. The gist is the message up to its first
    ": " (the fact; the rest is advice for someone calling the function directly).
    """
    by_kind: dict[str, list[tuple[str, str]]] = {}
    for run, found in caught:
        for kind, message in found:
            names = [r for r, _ in by_kind.setdefault(kind, [])]
            if run not in names:
                by_kind[kind].append((run, message))
    lines = []
    for kind, hits in by_kind.items():
        shown = ", ".join(r for r, _ in hits[:4]) + (f" and {len(hits) - 4} more" if len(hits) > 4 else "")
        gist = hits[0][1].split(": ")[0].strip()
        lines.append(f"{desc}: {kind} in {len(hits)} of {len(caught)} runs ({shown}), e.g. {gist}")
    return lines


def run_jobs(
    cache: Any, jobs: Sequence[Job], workers: int = 1, log: Any = print, desc: str = "runs",
) -> list[Any]:
    """Run ``(function, kwargs)`` jobs on `workers` processes; results in job order.

    A function must be importable by name (defined at module level in a module, not in a notebook), since
    spawned workers receive it by reference.

    Each run is seeded on its own, so results do not depend on which worker ran it or when. Workers need a
    cache on disk (they load it by path); an in-memory cache runs serially. The workers start with the sweep
    and end with it (at once on an interrupt: their runs resume from their checkpoints next time). Warnings
    are not printed as they come: one line per kind closes the sweep, naming the runs that raised it
    (`warning_summary`).
    """
    if not jobs:
        return []
    workers = gpu_workers(jobs, workers, log)
    results: list[Any] = [None] * len(jobs)
    caught: list[Any] = [None] * len(jobs)  # (run name, its warnings), in job order
    path = getattr(cache, "path", None)
    if workers <= 1 or path is None or len(jobs) == 1:
        for i, (fn, kw) in enumerate(progress(jobs, desc=desc, mininterval=2.0)):
            out, found = _recording_warnings(fn, cache=cache, log=log, **kw)
            results[i], caught[i] = _released(out), (_run_name(out, fn, kw), found)
    else:
        pool = _pool(str(path), workers)
        root = str(paths.runs_root())
        futures = {pool.submit(_call_in_worker, fn, kw, root): i for i, (fn, kw) in enumerate(jobs)}
        try:
            for fut in progress(as_completed(futures), total=len(futures), desc=f"{desc} ({workers} workers)",
                                mininterval=2.0):
                out, logs, found = fut.result()
                for line in logs:
                    log(line)
                i = futures[fut]
                results[i], caught[i] = out, (_run_name(out, *jobs[i]), found)
        except BaseException:  # an interrupt or a failed run: no worker may go on training in the background
            _terminate(pool)
            raise
        pool.shutdown(wait=True)  # idle workers are released with the sweep
    for line in warning_summary(caught, desc):
        log(line)
    return results


def _terminate(pool: Any) -> None:
    """End a pool's workers now (busy ones too) and wait for them; queued jobs are dropped."""
    # ProcessPoolExecutor has no public way to stop busy workers before Python 3.14 (terminate_workers):
    # its `_processes` map is the one handle on them.
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.join(timeout=10)


def _pool(cache_path: str, workers: int) -> Any:
    """A process pool for one sweep: spawned workers, each tied to this process, with the cache loaded once."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    return ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker,
                               initargs=(cache_path, os.getpid()))
