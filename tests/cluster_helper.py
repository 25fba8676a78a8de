"""Scenarios of tests/test_cluster.py, each run as a script inside a network namespace with only loopback.

``python tests/cluster_helper.py SCENARIO OUT_DIR`` writes ``OUT_DIR/result.json``. Every Ray process it
starts lives in its namespace; before it exits it ends every other process of that namespace, by process id.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from mmgap.config import get_preset
from mmgap.data import FeatureCache, load_cache
from mmgap.data.cache import CACHE_FORMAT

SMOKE = get_preset("smoke", warmup_epochs=1, adaptive_epochs=1)  # two epochs per Table II run
LONGER = get_preset("smoke", warmup_epochs=2, adaptive_epochs=2)  # four: time to kill a worker mid-run
METRIC_COLUMNS = ("acc", "f1", "acc_a", "acc_v", "val_acc")
PORT = 6390


def tiny_cache(folder: Path) -> FeatureCache:
    """120 clips, 4 classes (as tests/test_experiments.py), written as a cache folder (workers open it by path)."""
    rng = np.random.default_rng(0)
    n, k = 120, 4
    labels = np.arange(n) % k
    audio = rng.normal(size=(n, 16, 16)).astype(np.float32)
    audio[np.arange(n), labels * 4, :] += 3.0
    frames = rng.integers(0, 255, size=(n, 2, 20, 20, 3)).astype(np.uint8)
    split = np.zeros(n, np.int8)
    split[64:88] = 1
    split[88:] = 2
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in (("audio", audio), ("frames", frames), ("labels", labels), ("split", split)):
        np.save(folder / f"{name}.npy", arr)
    (folder / "meta.json").write_text(json.dumps({"format": CACHE_FORMAT, "clip_ids": [str(i) for i in range(n)],
                                                  "class_names": [f"class{i}" for i in range(k)], "protocol": {}}))
    return load_cache(folder)


def metric_rows(rows) -> list[dict]:
    return [{m: float(r[m]) for m in METRIC_COLUMNS} | {"seed": int(r["seed"]), "reused": bool(r["reused"])}
            for r in rows.to_dict(orient="records")]


def serial_rows(cache, preset, out: Path, seeds) -> list[dict]:
    """The reference: the same runs in this process, one torch thread (as every worker trains)."""
    import torch

    from mmgap import experiments as ex

    torch.set_num_threads(1)
    os.environ["MMGAP_RUNS_DIR"] = str(out / "runs-serial")
    return metric_rows(ex.run_methods(cache, preset, ["concat"], seeds=seeds, workers=1, log=lambda *_: None))


class Counting:
    """Counts RayExecutor.submit calls of this driver (what a sweep sends to the cluster)."""

    def __init__(self) -> None:
        from mmgap.experiments import cluster

        self.n = 0
        original = cluster.RayExecutor.submit

        def submit(executor, fn, /, *args, **kwargs):
            self.n += 1
            return original(executor, fn, *args, **kwargs)

        cluster.RayExecutor.submit = submit


def ray_start(*args: str, env: dict | None = None, prefix: tuple[str, ...] = ()) -> subprocess.Popen:
    """`ray start ... --block` as a child process (ended with the namespace)."""
    ray = str(Path(sys.executable).with_name("ray"))
    return subprocess.Popen([*prefix, ray, "start", "--block", "--disable-usage-stats", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def wait_for_nodes(address: str, n: int, timeout: float = 120.0) -> None:
    """Until the cluster at `address` has `n` alive nodes."""
    import ray

    t0 = time.monotonic()
    ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    while sum(node["Alive"] for node in ray.nodes()) < n:
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"the cluster at {address} did not reach {n} nodes within {timeout} s")
        time.sleep(0.5)


def sweep(out: Path) -> dict:
    """A local Ray cluster (2 CPUs) runs two smoke trainings through run_methods; a second call submits nothing."""
    from mmgap import experiments as ex

    cache = tiny_cache(out / "cache")
    reference = serial_rows(cache, SMOKE, out, [0, 1])
    os.environ["MMGAP_RUNS_DIR"] = str(out / "runs-ray")
    counter, logs = Counting(), []
    t0 = time.monotonic()
    first = ex.run_methods(cache, SMOKE, ["concat"], seeds=[0, 1], executor="ray", log=logs.append)
    first_s = time.monotonic() - t0
    submitted_first = counter.n
    again = ex.run_methods(cache, SMOKE, ["concat"], seeds=[0, 1], executor="ray", log=logs.append)
    import ray

    return {"serial": reference, "ray": metric_rows(first), "again": metric_rows(again),
            "submitted_first": submitted_first, "submitted_again": counter.n - submitted_first, "logs": logs,
            "cpus": ray.cluster_resources().get("CPU"), "first_s": first_s}


def _holder_of(lock: Path) -> int | None:
    """The process of this namespace that holds `lock` open (the worker training the run)."""
    mine = os.readlink("/proc/self/ns/net")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if os.readlink(proc / "ns" / "net") != mine:
                continue
            if any(os.readlink(fd) == str(lock) for fd in (proc / "fd").iterdir()):
                return int(proc.name)
        except OSError:
            continue
    return None


def killed_worker(out: Path) -> dict:
    """A worker killed mid-run (after its first checkpoint) is retried; the run resumes and gives the same rows."""
    from mmgap import experiments as ex
    from mmgap.checkpoint import from_json, load_safe
    from mmgap.results import read_metrics

    cache = tiny_cache(out / "cache")
    reference = serial_rows(cache, LONGER, out, [0])
    ray_start("--head", "--node-ip-address=127.0.0.1", f"--port={PORT}", "--num-cpus=2", "--include-dashboard=false")
    address = f"127.0.0.1:{PORT}"
    wait_for_nodes(address, 1)
    os.environ["MMGAP_RUNS_DIR"] = str(out / "runs-ray")
    root = out / "runs-ray" / "table2"
    run = ex.runs.baseline_run_dir(cache, LONGER, "concat", 0, root, ex.table_ii_epochs(LONGER))
    seen: dict = {}

    def kill_after_first_checkpoint() -> None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 300:
            pid = _holder_of(run / ".lock") if (run / "last.pt").is_file() else None
            if pid is not None and not (run / "result.json").exists():
                seen["epochs_at_kill"] = len(from_json(load_safe(run / "last.pt")["history"]))
                seen["history_at_kill"] = from_json(load_safe(run / "last.pt")["history"])
                os.kill(pid, signal.SIGKILL)
                seen["killed"] = pid
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=kill_after_first_checkpoint, daemon=True)
    watcher.start()
    rows = ex.run_methods(cache, LONGER, ["concat"], seeds=[0], root=root, executor="ray", address=address,
                          log=lambda *_: None)
    watcher.join(timeout=5)
    history = read_metrics(run)["history"]
    k = seen.get("epochs_at_kill", 0)
    return {"serial": reference, "ray": metric_rows(rows), "killed": seen.get("killed"), "epochs_at_kill": k,
            "epochs": len(history),
            "kept_epochs": [h["seconds"] for h in history[:k]] == [h["seconds"] for h in seen["history_at_kill"]]
            if k else None}


def no_shared_path(out: Path) -> dict:
    """A worker node that cannot see the runs folder (its own tmpfs there): the sweep stops before submitting."""
    from mmgap import experiments as ex

    cache = tiny_cache(out / "cache")
    runs = out / "runs-ray"
    runs.mkdir()
    ray_start("--head", "--node-ip-address=127.0.0.1", f"--port={PORT}", "--num-cpus=1", "--include-dashboard=false")
    address = f"127.0.0.1:{PORT}"
    # the worker node gets a mount namespace of its own, with an empty tmpfs over the runs folder
    ray_start(f"--address={address}", "--num-cpus=1",
              prefix=("unshare", "--mount", "--propagation", "private", "sh", "-c",
                      f'mount -t tmpfs tmpfs "{runs}" && exec "$0" "$@"'))
    wait_for_nodes(address, 2)
    os.environ["MMGAP_RUNS_DIR"] = str(runs)
    counter = Counting()
    try:
        ex.run_methods(cache, SMOKE, ["concat"], seeds=[0], executor="ray", address=address, log=lambda *_: None)
    except ex.ClusterPathError as exc:
        files = sorted(str(p.relative_to(runs)) for p in runs.rglob("*") if p.is_file())
        return {"error": str(exc), "submitted": counter.n, "runs": files}
    return {"error": None, "submitted": counter.n}


def sbatch(out: Path) -> dict:
    """The checked-in sbatch script with srun/scontrol/hostname stand-ins: its head and worker run a smoke sweep."""
    repo = Path(__file__).resolve().parents[1]
    stubs = out / "bin"
    stubs.mkdir()
    (stubs / "scontrol").write_text('#!/bin/sh\n[ "$1 $2" = "show hostnames" ] && printf "node0\\nnode1\\n"\n')
    (stubs / "hostname").write_text("#!/bin/sh\necho 127.0.0.1\n")
    (stubs / "srun").write_text('#!/bin/bash\nwhile [[ "$1" == -* ]]; do case "$1" in -w|--nodelist) shift 2;; '
                                '*) shift;; esac; done\nexec "$@"\n')
    for f in stubs.iterdir():
        f.chmod(0o755)
    cache = tiny_cache(out / "cache")
    env = {**os.environ, "PATH": f"{stubs}:{Path(sys.executable).parent}:{os.environ['PATH']}",
           "SLURM_JOB_NODELIST": "node[0-1]", "SLURM_JOB_ID": "4242", "SLURM_CPUS_PER_TASK": "1",
           "MMGAP_GPUS_PER_NODE": "0", "MMGAP_RAY_PORT": str(PORT), "MMGAP_RUNS_DIR": str(out / "runs-slurm"),
           "MMGAP_SWEEP": f"{sys.executable} {Path(__file__).resolve()} sweep-on-address {out}"}
    del cache
    t0 = time.monotonic()
    log = out / "sbatch.log"
    with log.open("w") as sink:  # a file, not a pipe: Ray's daemons keep their inherited output open
        done = subprocess.run(["bash", str(repo / "scripts" / "slurm" / "mmgap-ray.sbatch")], env=env, cwd=repo,
                              stdout=sink, stderr=subprocess.STDOUT, timeout=400)
    answer = out / "sweep-on-address.json"
    result = json.loads(answer.read_text()) if answer.exists() else {}
    return {"rc": done.returncode, "log": log.read_text()[-4000:], "seconds": time.monotonic() - t0, **result}


def sweep_on_address(out: Path) -> None:
    """What the sbatch script runs in the test: a smoke sweep on the cluster named by RAY_ADDRESS."""
    import ray

    from mmgap import experiments as ex

    cache = load_cache(out / "cache")
    rows = ex.run_methods(cache, SMOKE, ["concat"], seeds=[0, 1], executor="ray", log=lambda *_: None)
    nodes = sum(n["Alive"] for n in ray.nodes())
    (out / "sweep-on-address.json").write_text(json.dumps({"rows": metric_rows(rows), "nodes": nodes,
                                                           "address": os.environ.get("RAY_ADDRESS")}))


def end_namespace_processes() -> list[int]:
    """End every other process of this network namespace (all started here), by process id."""
    mine, me = os.readlink("/proc/self/ns/net"), os.getpid()
    ended = []
    for _ in range(3):
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == me:
                continue
            try:
                if os.readlink(proc / "ns" / "net") == mine:
                    os.kill(int(proc.name), signal.SIGKILL)
                    ended.append(int(proc.name))
            except OSError:
                continue
        time.sleep(0.5)
    return ended


def dask(out: Path) -> dict:
    """docs/cluster.md's Dask example: a local Dask cluster (2 worker processes on 127.0.0.1) runs the sweep through
    `client.get_executor()`; rows equal the serial ones and a second call submits nothing."""
    from dask.distributed import Client, LocalCluster

    from mmgap import experiments as ex

    cache = tiny_cache(out / "cache")
    reference = serial_rows(cache, SMOKE, out, [0, 1])
    os.environ["MMGAP_RUNS_DIR"] = str(out / "runs-dask")
    logs: list[str] = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        executor = client.get_executor()
        first = ex.run_methods(cache, SMOKE, ["concat"], seeds=[0, 1], executor=executor, log=logs.append)
        again = ex.run_methods(cache, SMOKE, ["concat"], seeds=[0, 1], executor=executor, log=logs.append)
        workers = len(client.scheduler_info()["workers"])
    return {"serial": reference, "dask": metric_rows(first), "again": metric_rows(again), "logs": logs,
            "workers": workers}


SCENARIOS = {"sweep": sweep, "killed-worker": killed_worker, "no-shared-path": no_shared_path, "sbatch": sbatch,
             "dask": dask}

if __name__ == "__main__":
    import socket

    if [name for _, name in socket.if_nameindex()] != ["lo"]:  # its cleanup ends every process of its namespace
        sys.exit("cluster_helper.py runs only in a network namespace with loopback alone (see tests/test_cluster.py)")
    scenario, out_dir = sys.argv[1], Path(sys.argv[2])
    if scenario == "sweep-on-address":  # a child of the sbatch scenario: its namespace's cleanup ends the rest
        sweep_on_address(out_dir)
        sys.exit(0)
    try:
        result = SCENARIOS[scenario](out_dir)
    except Exception as exc:  # noqa: BLE001 - reported to the test, which fails with it
        import traceback

        result = {"exception": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    finally:
        try:
            import ray

            ray.shutdown()
        except Exception:  # noqa: BLE001
            pass
    result["ended"] = len(end_namespace_processes())
    (out_dir / "result.json").write_text(json.dumps(result, default=str))
