"""What Ray costs against the local process pool (issue 18): cluster start, per-run overhead, same rows.

Run inside a network namespace with only loopback (as root), as tests/test_cluster.py does:

    unshare --net sh -c 'ip link set lo up && exec python benchmarks/cluster_overhead.py'

It starts a local Ray cluster (``executor="ray"``, all cores), then trains the same smoke runs (Table II's
``concat``, one per seed) three ways, each into a fresh runs folder: serially in this process, on the local
pool (``workers`` = cores) and on Ray; it reports the wall times, their difference per run, a no-op job's
round trip on each engine, and whether the rows are identical. It prints the TensorBoard scalars of one run
(what ``tensorboard --logdir`` shows) and writes ``runs/benchmarks/cluster_overhead.json``.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _noop(cache, log, seed: int) -> dict:
    """A job that does nothing: its wall time is the engine's overhead per run."""
    return {"seed": seed}


def main() -> None:
    if [name for _, name in socket.if_nameindex()] != ["lo"]:
        sys.exit("run inside a network namespace with only loopback: see this file's docstring")
    import torch

    from mmgap import events, paths
    from mmgap import experiments as ex
    from mmgap.config import get_preset
    from mmgap.data import load_cache
    from mmgap.data.cache import CACHE_FORMAT

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    os.environ.setdefault("RAY_AUTH_TOKEN", os.urandom(32).hex())
    tmp = Path(tempfile.mkdtemp(prefix="mmgap-cluster-"))
    rng = np.random.default_rng(0)
    n, k = 120, 4
    labels = np.arange(n) % k
    audio = rng.normal(size=(n, 16, 16)).astype(np.float32)
    audio[np.arange(n), labels * 4, :] += 3.0
    split = np.zeros(n, np.int8)
    split[64:88], split[88:] = 1, 2
    folder = tmp / "cache"
    folder.mkdir()
    for name, arr in (("audio", audio), ("frames", rng.integers(0, 255, (n, 2, 20, 20, 3)).astype(np.uint8)),
                      ("labels", labels), ("split", split)):
        np.save(folder / f"{name}.npy", arr)
    (folder / "meta.json").write_text(json.dumps({"format": CACHE_FORMAT, "clip_ids": [str(i) for i in range(n)],
                                                  "class_names": [f"c{i}" for i in range(k)], "protocol": {}}))
    cache = load_cache(folder)
    preset = get_preset("smoke", warmup_epochs=1, adaptive_epochs=1)
    seeds = [0, 1, 2, 3]
    cores = ex.default_workers("cpu")
    quiet = lambda *_: None  # noqa: E731

    def sweep(name: str, **engine) -> tuple[float, list]:
        os.environ["MMGAP_RUNS_DIR"] = str(tmp / f"runs-{name}")
        t0 = time.perf_counter()
        rows = ex.run_methods(cache, preset, ["concat"], seeds=seeds, log=quiet, **engine)
        return time.perf_counter() - t0, rows

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    serial_s, serial = sweep("serial", workers=1)
    torch.set_num_threads(threads)
    local_s, local = sweep("local", workers=cores)
    t0 = time.perf_counter()
    ex.cluster.connect(log=quiet)
    start_s = time.perf_counter() - t0
    ray_s, ray_rows = sweep("ray", executor="ray")
    noop = [(_noop, {"seed": s}) for s in range(8)]
    t0 = time.perf_counter()
    ex.run_jobs(cache, noop, workers=cores, log=quiet)
    noop_local = (time.perf_counter() - t0) / len(noop)
    t0 = time.perf_counter()
    ex.run_jobs(cache, noop, log=quiet, executor="ray")
    noop_ray = (time.perf_counter() - t0) / len(noop)
    cols = ["acc", "f1", "acc_a", "acc_v", "val_acc"]
    same = serial[cols].equals(local[cols]) and serial[cols].equals(ray_rows[cols])
    result = {"runs": len(seeds), "cores": cores, "ray_start_s": start_s, "serial_s": serial_s,
              "local_pool_s": local_s, "ray_s": ray_s, "ray_minus_local_per_run_s": (ray_s - local_s) / len(seeds),
              "noop_round_trip_local_s": noop_local, "noop_round_trip_ray_s": noop_ray, "rows_identical": same}
    for key, value in result.items():
        print(f"{key:28s} {value:.2f}" if isinstance(value, float) else f"{key:28s} {value}")
    run = ray_rows["run_dir"].iloc[0]
    print(f"\nTensorBoard scalars of {Path(run).relative_to(tmp)} (step: value):")
    for tag, points in sorted(events.read_events(run).items()):
        print(f"  {tag:22s} " + "  ".join(f"{s}: {v:.4g}" for s, v in points))
    os.environ.pop("MMGAP_RUNS_DIR")
    out = paths.run_dir("benchmarks") / "cluster_overhead.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("wrote", paths.shown(out))


if __name__ == "__main__":
    main()
