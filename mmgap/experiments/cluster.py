"""Runs on a Ray cluster: `RayExecutor`, a `concurrent.futures.Executor` whose workers are Ray core tasks.

Ray is an optional extra (``pip install -e ".[ray]"``). Each run is one task reserving ``gpus_per_run`` of a
GPU (Ray sets ``CUDA_VISIBLE_DEVICES`` for it, so 0.25 packs four runs on one GPU) and ``cpus_per_run`` cores;
a task whose worker dies (killed, out of memory, a preempted node) is retried by Ray ``max_retries`` times, and
the run resumes from its last checkpoint. Ray Tune is not used: a fixed grid of runs needs no scheduler of
trials, and its trial folders and resume would duplicate the run folders of `mmgap.experiments.runs`.

Before anything is submitted, every node that can run tasks is asked to read the feature cache and the runs
folder (`check_shared_paths`): a cluster without a shared filesystem fails there, naming the node and the path.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

RAY_RETRIES = 3
"""How often Ray submits a run again whose worker died (Ray's own default for tasks)."""

PROBE_TIMEOUT_S = 120.0
"""How long the shared-filesystem check waits for every node to answer."""


class ClusterPathError(RuntimeError):
    """A node of the cluster cannot see a folder the runs need (no shared filesystem)."""


def _ray() -> Any:
    """The ray module, or an ImportError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ImportError('executor="ray" needs Ray: pip install -e ".[ray]" (or pip install ray), '
                          'or use executor="local"') from None
    return ray


def connect(address: str | None = None, log: Any = print) -> Any:
    """Join the Ray cluster at `address` (else ``RAY_ADDRESS``; ``"auto"``: one started on this machine with
    ``ray start``), or start a local one; returns the ray module."""
    ray = _ray()
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS") or "local"  # never a cluster found by chance
        log(f"Ray: joining the cluster at {address}" if address != "local" else "Ray: starting a local cluster")
        # log_to_driver=False: a run's log lines come back with its result (workers.call_in_worker)
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    return ray


def _call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The body of every Ray task: one call, in a Ray worker process."""
    return fn(*args, **kwargs)


class RayExecutor(Executor):
    """Ray core tasks behind the `Executor` interface: ``submit`` returns the task's `Future`.

    ``gpus_per_run=None`` reserves one GPU per run where the cluster has GPUs, none elsewhere; ``shutdown`` with
    ``cancel_futures=True`` (an interrupt) cancels the unfinished tasks, ending their worker processes. The
    cluster itself stays up for the next sweep of this process (Ray ends a local one when the process ends).
    """

    def __init__(self, address: str | None = None, gpus_per_run: float | None = None, cpus_per_run: float = 1,
                 max_retries: int = RAY_RETRIES, paths_to_share: Mapping[str, str] | None = None,
                 log: Any = print) -> None:
        self.ray = connect(address, log)
        if gpus_per_run is None:
            gpus_per_run = 1 if self.ray.cluster_resources().get("GPU", 0) > 0 else 0
        self.gpus_per_run = float(gpus_per_run)
        self._task = self.ray.remote(num_cpus=cpus_per_run, num_gpus=self.gpus_per_run, max_retries=max_retries,
                                     retry_exceptions=False)(_call)
        self._refs: list[Any] = []
        if paths_to_share:
            check_shared_paths(paths_to_share)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        ref = self._task.remote(fn, args, kwargs)
        self._refs.append(ref)
        return ref.future()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if cancel_futures:
            for ref in self._refs:
                try:
                    self.ray.cancel(ref, force=True)  # force: the busy worker process is ended, not just asked
                except Exception:  # noqa: BLE001 - a finished or already-cancelled task: nothing to end
                    pass
        elif wait and self._refs:
            self.ray.wait(self._refs, num_returns=len(self._refs))
        self._refs = []


def _sees(expected: dict[str, tuple[str, str, str]]) -> list[str]:
    """On one node: what it cannot see of `expected` (name -> (path, file in it, its sha256))."""
    import socket

    missing = []
    for name, (path, file, digest) in expected.items():
        target = Path(path) / file
        try:
            ok = hashlib.sha256(target.read_bytes()).hexdigest() == digest
        except OSError as exc:
            missing.append(f"{name} {path} ({type(exc).__name__}: {exc.strerror or exc})")
            continue
        if not ok:
            missing.append(f"{name} {path} (its {file} differs from the driver's: another folder)")
    return [f"node {socket.gethostname()}: {m}" for m in missing]


def check_shared_paths(folders: Mapping[str, str]) -> None:
    """Every node that can run tasks sees `folders` (name -> path) as the driver does; else ClusterPathError.

    A folder holding ``meta.json`` (a feature cache) is compared by that file (a copy with the same content on
    each node is fine); any other folder gets a token file written by the driver, which each node must read
    back: the runs folder must be one shared folder, since a run's checkpoints and results are written there.
    """
    ray = _ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    expected: dict[str, tuple[str, str, str]] = {}
    tokens: list[Path] = []
    try:
        for name, path in folders.items():
            meta = Path(path) / "meta.json"
            if meta.is_file():
                expected[name] = (str(path), "meta.json", hashlib.sha256(meta.read_bytes()).hexdigest())
                continue
            Path(path).mkdir(parents=True, exist_ok=True)
            token = Path(path) / f".mmgap-probe-{secrets.token_hex(6)}"
            token.write_text(secrets.token_hex(16))
            tokens.append(token)
            expected[name] = (str(path), token.name, hashlib.sha256(token.read_bytes()).hexdigest())
        nodes = [n for n in ray.nodes() if n.get("Alive") and (n.get("Resources", {}).get("CPU", 0) > 0
                                                               or n.get("Resources", {}).get("GPU", 0) > 0)]
        probe = ray.remote(num_cpus=0)(_sees)
        refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False),
                              max_retries=0).remote(expected) for n in nodes]
        problems = [f"{p} [Ray node {n['NodeManagerAddress']}]" for n, found in
                    zip(nodes, ray.get(refs, timeout=PROBE_TIMEOUT_S), strict=True) for p in found]
    finally:
        for token in tokens:
            token.unlink(missing_ok=True)
    if problems:
        raise ClusterPathError(
            "the cluster cannot see the folders the runs need (no shared filesystem?): " + "; ".join(problems)
            + ". Put them on a filesystem every node mounts (NFS, Lustre, the Slurm job's shared scratch) and "
            "point the runs there (MMGAP_RUNS_DIR for the runs folder, data_dir / MMGAP_DATA_DIR for the cache), "
            "or run with executor='local'. Nothing was submitted.")
