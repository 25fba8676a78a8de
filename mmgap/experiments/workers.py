"""Runs spread over worker processes: any `concurrent.futures.Executor` is the one seam.

A job is ``(function, kwargs)``: a module-level function called as ``function(cache=..., log=..., **kwargs)``
(the run functions of `mmgap.experiments.runs`). Each worker process loads the feature cache by path once and
trains with one torch thread; every run is seeded on its own, so a result does not depend on which worker, which
machine or which engine ran it. Three ways to run, one parameter (`executor`):

- ``"local"`` (default): spawned processes of this machine, one per CPU core on the CPU; on N GPUs,
  ``runs_per_gpu`` processes pinned to each GPU (``CUDA_VISIBLE_DEVICES``), one process on one GPU by default;
- ``"ray"``: Ray core tasks (`mmgap.experiments.cluster`) on a running cluster (``address`` / ``RAY_ADDRESS``)
  or a local one, each run reserving ``gpus_per_run`` of a GPU (0.25 packs four runs on one GPU);
- an `Executor` passed from Python (Dask's ``client.get_executor()``, a process pool, ...).

A run whose worker dies (killed, out of memory, preempted) is submitted again (`MAX_RETRIES` times) and resumes
from its last checkpoint (the run functions resume by default).

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
from concurrent.futures import Executor, Future, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from mmgap import paths
from mmgap.device import release_device_memory, resolve_device
from mmgap.progress import progress

Job = tuple[Callable[..., Any], dict[str, Any]]
"""A run to do: a module-level function (picklable by name) and its keyword arguments (without cache, log)."""

PARENT_CHECK_S = 1.0
"""How often a worker checks that the process that started it is still alive."""

EXECUTORS = ("local", "ray")
"""The engines named by text; an `Executor` object is the third way."""

MAX_RETRIES = 3
"""How often a run whose worker died is submitted again (it resumes from its last checkpoint)."""


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


_WORKER_CACHES: dict[str, Any] = {}
"""The feature caches this worker process opened, by path (each once per process)."""


def _worker_cache(cache_path: str) -> Any:
    """The cache at `cache_path`, loaded on the first run of this process; one torch thread per worker."""
    if cache_path not in _WORKER_CACHES:
        import torch

        from mmgap.data import load_cache

        torch.set_num_threads(1)  # the workers already fill the cores (and a run's result must not depend on it)
        _WORKER_CACHES[cache_path] = load_cache(cache_path)
    return _WORKER_CACHES[cache_path]


def _init_worker(cache_path: str, parent_pid: int, gpu_slots: Any = None) -> None:
    """Local worker start: tied to its parent, pinned to a GPU when `gpu_slots` hands one out, the cache once."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # an interrupt reaches the caller, which ends the workers
    signal.signal(signal.SIGTERM, _on_terminate)
    _exit_with_parent(parent_pid)
    if gpu_slots is not None:  # before CUDA starts in this process: it then sees one GPU, as cuda:0
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu_slots.get(timeout=60))
    _worker_cache(cache_path)


_IN_JOB = False
"""True while this worker runs a job (`call_in_worker`): a SIGTERM then unwinds it instead of killing it."""


def _on_terminate(signum: int, frame: Any) -> None:
    """SIGTERM from `_terminate`: a busy worker unwinds as after a Ctrl-C, so the trainer writes the epochs it
    holds in memory (its checkpoint policy) before the process ends; an idle worker just exits."""
    if _IN_JOB:
        raise KeyboardInterrupt("the sweep was stopped")
    os._exit(128 + signum)


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


def call_in_worker(
    fn: Callable[..., Any], kwargs: dict[str, Any], cache_path: str, runs_root: str,
) -> tuple[Any, list[str], list[tuple[str, str]]]:
    """One job on the cache at `cache_path` under the caller's runs folder; its log lines and warnings come back.

    This is what every engine runs in its worker processes (a process pool, a Ray task, a Dask worker).
    """
    global _IN_JOB
    os.environ["MMGAP_RUNS_DIR"] = runs_root
    logs: list[str] = []
    _IN_JOB = True
    try:
        out, caught = _recording_warnings(fn, cache=_worker_cache(cache_path), log=logs.append, **kwargs)
    finally:
        _IN_JOB = False
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
    executor: str | Executor = "local", address: str | None = None, gpus_per_run: float | None = None,
    runs_per_gpu: int = 1,
) -> list[Any]:
    """Run ``(function, kwargs)`` jobs on `executor`; results in job order.

    A function must be importable by name (defined at module level in a module, not in a notebook), since
    workers receive it by reference. ``executor="local"`` runs `workers` spawned processes on the CPU (on GPUs:
    ``runs_per_gpu`` per GPU); ``"ray"`` runs Ray tasks (`address`, `gpus_per_run`: see
    `mmgap.experiments.cluster.RayExecutor`); an `Executor` object runs them as it does.

    Each run is seeded on its own, so results do not depend on which worker ran it or when. Workers need a
    cache on disk (they load it by path); an in-memory cache runs serially (locally). The local workers start
    with the sweep and end with it (at once on an interrupt: their runs resume from their checkpoints next
    time). Warnings are not printed as they come: one line per kind closes the sweep, naming the runs that
    raised it (`warning_summary`).
    """
    if not jobs:
        return []
    check_executor(executor, address, gpus_per_run, runs_per_gpu)
    results: list[Any] = [None] * len(jobs)
    caught: list[Any] = [None] * len(jobs)  # (run name, its warnings), in job order
    path = getattr(cache, "path", None)
    slots = _gpu_slots(jobs, runs_per_gpu, log) if executor == "local" else None
    workers = len(slots) if slots else gpu_workers(jobs, workers, log) if executor == "local" else 0
    if executor == "local" and (workers <= 1 or path is None or len(jobs) == 1):
        for i, (fn, kw) in enumerate(progress(jobs, desc=desc, mininterval=2.0)):
            out, found = _recording_warnings(fn, cache=cache, log=log, **kw)
            results[i], caught[i] = _released(out), (_run_name(out, fn, kw), found)
    else:
        if path is None:
            raise ValueError(f"executor={executor!r} needs a feature cache on disk (its workers open it by path); "
                             "this one lives in memory: save it with mmgap.data or use executor='local'")
        for i, (out, logs, found) in _submitted(str(path), jobs, workers, slots, executor, address, gpus_per_run,
                                                log, desc):
            for line in logs:
                log(line)
            results[i], caught[i] = out, (_run_name(out, *jobs[i]), found)
    for line in warning_summary(caught, desc):
        log(line)
    return results


def check_executor(executor: Any, address: Any = None, gpus_per_run: Any = None, runs_per_gpu: Any = 1) -> None:
    """Refuse an engine that cannot run (a typo, a negative share of a GPU) with what to pass instead."""
    if not (isinstance(executor, Executor) or executor in EXECUTORS):
        raise ValueError(f"executor={executor!r} must be 'local', 'ray' or a concurrent.futures.Executor "
                         "(e.g. a Dask client's get_executor())")
    if address is not None and (not isinstance(address, str) or not address):
        raise ValueError(f"address={address!r} must be a Ray address such as '10.0.0.5:6379' or 'auto' "
                         "(or None: RAY_ADDRESS, else a local cluster)")
    if address is not None and executor != "ray":
        raise ValueError(f"address={address!r} is for executor='ray' (executor is {executor!r})")
    if gpus_per_run is not None and (isinstance(gpus_per_run, bool) or not isinstance(gpus_per_run, (int, float))
                                     or not 0 <= gpus_per_run <= 64):
        raise ValueError(f"gpus_per_run={gpus_per_run!r} must be a number of GPUs >= 0, e.g. 1, or 0.25 to pack "
                         "four runs on one GPU (None: 1 where the cluster has GPUs, else 0)")
    if gpus_per_run is not None and 1 < gpus_per_run != int(gpus_per_run):
        raise ValueError(f"gpus_per_run={gpus_per_run!r}: above 1 a run takes whole GPUs (2, not 1.5)")
    if isinstance(runs_per_gpu, bool) or not isinstance(runs_per_gpu, int) or runs_per_gpu < 1:
        raise ValueError(f"runs_per_gpu={runs_per_gpu!r} must be a positive integer (runs sharing one GPU)")


def _gpu_slots(jobs: Sequence[Job], runs_per_gpu: int, log: Any) -> list[int] | None:
    """The GPU each local worker is pinned to (``runs_per_gpu`` per GPU), or None: not a multi-process GPU sweep.

    Only jobs on ``device="auto"`` or ``"cuda"`` are spread: a job naming ``cuda:k`` keeps its own device.
    """
    import torch

    devices = {str(kw.get("device", "auto")) for _, kw in jobs}
    if not devices <= {"auto", "cuda"} or not torch.cuda.is_available():
        return None
    gpus = torch.cuda.device_count()
    if gpus * runs_per_gpu <= 1:
        return None
    log(f"{gpus} GPU(s) × {runs_per_gpu} run(s) per GPU: {gpus * runs_per_gpu} worker processes")
    return [g for _ in range(runs_per_gpu) for g in range(gpus)]


def _submitted(
    cache_path: str, jobs: Sequence[Job], workers: int, slots: list[int] | None, executor: str | Executor,
    address: str | None, gpus_per_run: float | None, log: Any, desc: str,
) -> Any:
    """(job index, worker's answer) as the runs finish; runs whose worker died are submitted again."""
    root = str(paths.runs_root())
    todo, tries = list(range(len(jobs))), 0
    while todo:
        pool, owned = _executor(cache_path, workers, slots, executor, address, gpus_per_run, log)
        futures: dict[Future, int] = {pool.submit(call_in_worker, *jobs[i], cache_path, root): i for i in todo}
        label = f"{desc} ({workers} workers)" if executor == "local" else f"{desc} ({_engine_name(executor)})"
        died: list[int] = []
        try:
            for fut in progress(as_completed(futures), total=len(futures), desc=label, mininterval=2.0):
                try:
                    answer = fut.result()
                except BrokenProcessPool as err:  # a local worker died: every run not finished goes again
                    if not owned:
                        raise RuntimeError(
                            f"{desc}: the executor passed in broke (one of its workers died: killed, out of "
                            "memory?); pass a new one and run the sweep again: finished runs are reused and the "
                            "others resume from their last checkpoints") from err
                    finished = [f for f, i in futures.items()
                                if i in todo and f.done() and not f.cancelled() and f.exception() is None]
                    for f in finished:  # runs that ended before the death keep their answers: never run again
                        todo.remove(futures[f])
                        yield futures[f], f.result()
                    died = list(todo)
                    break
                todo.remove(futures[fut])
                yield futures[fut], answer
        except BaseException:  # an interrupt or a failed run: no worker may go on training in the background
            _terminate(pool) if owned else pool.shutdown(wait=False, cancel_futures=True)
            raise
        if owned:
            _terminate(pool) if died else pool.shutdown(wait=True)  # idle workers are released with the sweep
        if died:
            tries += 1
            if tries > MAX_RETRIES:
                raise RuntimeError(f"{desc}: a worker died {tries} times (killed, out of memory?); "
                                   f"{len(died)} runs did not finish. Run the sweep again: they resume from "
                                   "their last checkpoints")
            log(f"note: a worker died; {len(died)} unfinished runs go again from their last checkpoints "
                f"(try {tries} of {MAX_RETRIES})")
            todo = died


def _engine_name(executor: str | Executor) -> str:
    return executor if isinstance(executor, str) else type(executor).__name__


def _executor(
    cache_path: str, workers: int, slots: list[int] | None, executor: str | Executor, address: str | None,
    gpus_per_run: float | None, log: Any,
) -> tuple[Executor, bool]:
    """The engine of one sweep and whether the sweep owns it (ends its workers); a passed Executor is the caller's."""
    if isinstance(executor, Executor):
        return executor, False
    if executor == "ray":
        from mmgap.experiments.cluster import RayExecutor

        return RayExecutor(address=address, gpus_per_run=gpus_per_run, paths_to_share={
            "feature cache": cache_path, "runs folder": str(paths.runs_root())}, log=log), True
    return _pool(cache_path, workers, slots), True


def _terminate(pool: Any) -> None:
    """End a pool's workers now (busy ones too) and wait for them; queued jobs are dropped."""
    if not hasattr(pool, "_processes"):  # another engine: it cancels its own tasks
        pool.shutdown(wait=False, cancel_futures=True)
        return
    # ProcessPoolExecutor has no public way to stop busy workers before Python 3.14 (terminate_workers):
    # its `_processes` map is the one handle on them.
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.join(timeout=10)  # a busy worker first writes the epochs it holds (see `_on_terminate`)
    for proc in procs:
        if proc.is_alive():  # still writing after 10 s (a slow filesystem): the atomic writes leave no damage
            proc.kill()
            proc.join(timeout=10)


def _pool(cache_path: str, workers: int, slots: list[int] | None = None) -> Any:
    """A process pool for one sweep: spawned workers, each tied to this process, with the cache loaded once;
    with `slots`, each worker takes one GPU index from them at start."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    ctx = get_context("spawn")
    queue = None
    if slots:
        queue = ctx.Queue()
        for gpu in slots:
            queue.put(gpu)
    return ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                               initargs=(cache_path, os.getpid(), queue))
