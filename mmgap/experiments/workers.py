"""Runs spread over worker processes: one per CPU core on the CPU, one process on a GPU.

A job is ``(function, kwargs)``: a module-level function called as ``function(cache=..., log=..., **kwargs)``
(the run functions of `mmgap.experiments.runs`). Each worker loads the feature cache once and trains with one
torch thread; every run is seeded on its own, so a result does not depend on which worker ran it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import as_completed
from pathlib import Path
from typing import Any

from mmgap import paths
from mmgap.progress import progress
from mmgap.trainer import resolve_device

Job = tuple[Callable[..., Any], dict[str, Any]]
"""A run to do: a module-level function (picklable by name) and its keyword arguments (without cache, log)."""


def default_workers(device: str = "auto") -> int:
    """Runs at once: one per CPU core (at most 4) on the CPU, one on a GPU (a single process uses it best)."""
    if resolve_device(device).type != "cpu":
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, cores))


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


def _call_in_worker(
    fn: Callable[..., Any], kwargs: dict[str, Any], runs_root: str,
) -> tuple[Any, list[str], list[tuple[str, str]]]:
    """One job on the worker's cache under the caller's runs folder; its log lines and warnings come back."""
    os.environ["MMGAP_RUNS_DIR"] = runs_root
    logs: list[str] = []
    out, caught = _recording_warnings(fn, cache=_WORKER_CACHE, log=logs.append, **kwargs)
    return out, logs, caught


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
    and end with it. Warnings are not printed as they come: one line per kind closes the sweep, naming the
    runs that raised it (`warning_summary`).
    """
    if not jobs:
        return []
    results: list[Any] = [None] * len(jobs)
    caught: list[Any] = [None] * len(jobs)  # (run name, its warnings), in job order
    path = getattr(cache, "path", None)
    if workers <= 1 or path is None or len(jobs) == 1:
        for i, (fn, kw) in enumerate(progress(jobs, desc=desc, mininterval=2.0)):
            results[i], found = _recording_warnings(fn, cache=cache, log=log, **kw)
            caught[i] = (_run_name(results[i], fn, kw), found)
    else:
        pool = _pool(str(path), workers)
        root = str(paths.runs_root())
        futures = {pool.submit(_call_in_worker, fn, kw, root): i for i, (fn, kw) in enumerate(jobs)}
        finished = False
        try:
            for fut in progress(as_completed(futures), total=len(futures), desc=f"{desc} ({workers} workers)",
                                mininterval=2.0):
                out, logs, found = fut.result()
                for line in logs:
                    log(line)
                i = futures[fut]
                results[i], caught[i] = out, (_run_name(out, *jobs[i]), found)
            finished = True
        finally:  # idle workers are released with the sweep (busy ones, after an interrupt, finish their run)
            pool.shutdown(wait=finished, cancel_futures=True)
    for line in warning_summary(caught, desc):
        log(line)
    return results


def _pool(cache_path: str, workers: int) -> Any:
    """A process pool for one sweep: spawned workers, each with the cache loaded once."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    return ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker,
                               initargs=(cache_path,))
