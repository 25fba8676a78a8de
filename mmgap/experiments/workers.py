"""Runs spread over worker processes: one per CPU core on the CPU, one process on a GPU.

A job is ``(function, kwargs)``: a module-level function called as ``function(cache=..., log=..., **kwargs)``
(the run functions of `mmgap.experiments.runs`). Each worker loads the feature cache once and trains with one
torch thread; every run is seeded on its own, so a result does not depend on which worker ran it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import as_completed
from typing import Any

from mmgap import paths
from mmgap.device import release_device_memory, resolve_device
from mmgap.progress import progress

Job = tuple[Callable[..., Any], dict[str, Any]]
"""A run to do: a module-level function (picklable by name) and its keyword arguments (without cache, log)."""


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


def _init_worker(cache_path: str) -> None:
    """Worker start: one torch thread (the workers already fill the cores) and the cache, loaded once."""
    import signal

    import torch

    from mmgap.data import load_cache

    global _WORKER_CACHE
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # an interrupt stops the caller; the pool ends with it
    torch.set_num_threads(1)
    _WORKER_CACHE = load_cache(cache_path)


def _call_in_worker(fn: Callable[..., Any], kwargs: dict[str, Any], runs_root: str) -> tuple[Any, list[str]]:
    """One job on the worker's cache under the caller's runs folder; log lines come back with the result."""
    os.environ["MMGAP_RUNS_DIR"] = runs_root  # the pool may outlive a change of MMGAP_RUNS_DIR in the caller
    logs: list[str] = []
    out = _released(fn(cache=_WORKER_CACHE, log=logs.append, **kwargs))
    return out, logs


def run_jobs(
    cache: Any, jobs: Sequence[Job], workers: int = 1, log: Any = print, desc: str = "runs",
) -> list[Any]:
    """Run ``(function, kwargs)`` jobs on `workers` processes; results in job order.

    A function must be importable by name (defined at module level in a module, not in a notebook), since
    spawned workers receive it by reference.

    Each run is seeded on its own, so results do not depend on which worker ran it or when. Workers need a
    cache on disk (they load it by path); an in-memory cache runs serially.
    """
    if not jobs:
        return []
    workers = gpu_workers(jobs, workers, log)
    path = getattr(cache, "path", None)
    if workers <= 1 or path is None or len(jobs) == 1:
        return [_released(fn(cache=cache, log=log, **kw)) for fn, kw in progress(jobs, desc=desc, mininterval=2.0)]
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
