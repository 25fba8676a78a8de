"""Sweeps on a real Ray cluster, on any Executor, and the Slurm recipe (issue 18).

Each Ray cluster starts inside a network namespace with only loopback (``unshare --net``, as root): outside
one, Ray talks over the machine's interface address even when told 127.0.0.1. The scenarios live in
tests/cluster_helper.py, run there as a script; the tests are skipped, saying why, where no namespace can be
made or Ray is not installed (``pip install -e ".[ray]"``).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pytest

from mmgap import experiments as ex
from mmgap.config import ConfigError

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SBATCH = ROOT / "scripts" / "slurm" / "mmgap-ray.sbatch"


def _namespace_problem() -> str | None:
    """Why no network namespace can be made here (None: it can)."""
    if not sys.platform.startswith("linux") or shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs Linux with unshare and ip (util-linux, iproute2)"
    probe = subprocess.run(["unshare", "--net", "sh", "-c", "ip link set lo up"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot make a network namespace here (needs root or user namespaces): {probe.stderr.strip()}"
    return None


def _ray_problem() -> str | None:
    try:
        import ray  # noqa: F401
    except ImportError:
        return 'Ray is not installed: pip install -e ".[ray]"'
    return None


NAMESPACE_PROBLEM = _namespace_problem()
needs_cluster = [
    pytest.mark.slow,
    pytest.mark.skipif(_ray_problem() is not None, reason=str(_ray_problem())),
    pytest.mark.skipif(NAMESPACE_PROBLEM is not None, reason=str(NAMESPACE_PROBLEM)),
]


def _in_namespace(scenario: str, out: Path, timeout: float = 600, **extra_env: str) -> dict:
    """Run a scenario of cluster_helper.py in a fresh network namespace (loopback only); its result.json."""
    # token authentication with a token of this test only (Ray would otherwise write one to ~/.ray/auth_token)
    home = out / "home"
    home.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)]), "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "HOME": str(home), **extra_env}
    env.pop("RAY_ADDRESS", None)
    cmd = f'ip link set lo up && exec "{sys.executable}" "{HERE / "cluster_helper.py"}" {scenario} "{out}"'
    proc = subprocess.Popen(["unshare", "--net", "sh", "-c", cmd], env=env, cwd=ROOT, start_new_session=True)
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:  # the helper ends its namespace's processes itself; this is the last resort
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    result = json.loads((out / "result.json").read_text())
    assert "exception" not in result, result.get("traceback")
    return result


def _cluster_test(fn):
    for mark in needs_cluster:
        fn = mark(fn)
    return fn


@_cluster_test
def test_a_local_ray_cluster_gives_the_serial_rows_and_resubmits_nothing(tmp_path):
    result = _in_namespace("sweep", tmp_path)
    assert result["cpus"] == 2
    assert [r["seed"] for r in result["ray"]] == [0, 1]
    assert not any(r["reused"] for r in result["ray"])
    assert [{k: v for k, v in r.items() if k != "reused"} for r in result["ray"]] == \
        [{k: v for k, v in r.items() if k != "reused"} for r in result["serial"]]  # bit-identical metrics
    assert result["submitted_first"] == 2 and result["submitted_again"] == 0
    assert all(r["reused"] for r in result["again"])
    assert "method runs: 2 of 2 finished (reused); nothing to submit" in result["logs"]


@_cluster_test
def test_a_killed_ray_worker_is_retried_and_the_run_resumes(tmp_path):
    # every epoch checkpointed (as on preemptible nodes): the kill after the first write falls inside the run
    result = _in_namespace("killed-worker", tmp_path, MMGAP_CHECKPOINT_EVERY_S="0")
    assert result["killed"], "the watcher found no worker to kill before the run finished"
    assert 1 <= result["epochs_at_kill"] < result["epochs"] == 4
    assert result["kept_epochs"] is True  # the epochs before the kill were not trained again
    strip = [{k: v for k, v in r.items() if k != "reused"} for r in result["serial"]]
    assert [{k: v for k, v in r.items() if k != "reused"} for r in result["ray"]] == strip


@_cluster_test
def test_a_node_without_the_runs_folder_stops_the_sweep_before_submitting(tmp_path):
    result = _in_namespace("no-shared-path", tmp_path)
    assert result["error"] is not None
    assert "runs folder" in result["error"] and str(tmp_path / "runs-ray") in result["error"]
    assert "MMGAP_RUNS_DIR" in result["error"] and "Nothing was submitted" in result["error"]
    assert result["submitted"] == 0 and result["runs"] == []  # no run started, no probe token left behind


def test_the_sbatch_script_parses():
    assert SBATCH.is_file()
    run = subprocess.run(["bash", "-n", str(SBATCH)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    text = SBATCH.read_text()
    assert "ray start --head" in text and "papermill" in text and "-p executor ray" in text


@_cluster_test
def test_the_sbatch_script_starts_a_head_and_a_worker_that_run_a_sweep(tmp_path):
    result = _in_namespace("sbatch", tmp_path)
    assert result["rc"] == 0, result["log"]
    assert result["nodes"] == 2 and result["address"].startswith("127.0.0.1:")
    assert [r["seed"] for r in result["rows"]] == [0, 1] and not any(r["reused"] for r in result["rows"])


# ------------------------------------------------------------------------------------------------ any Executor
def test_any_executor_runs_the_sweep_with_the_serial_rows(tmp_path, monkeypatch):
    """An Executor passed from Python (here a spawn process pool; a Dask client's get_executor() alike)."""
    import torch

    from cluster_helper import SMOKE, metric_rows, tiny_cache

    cache = tiny_cache(tmp_path / "cache")
    monkeypatch.setenv("MMGAP_RUNS_DIR", str(tmp_path / "runs"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        serial = metric_rows(ex.run_methods(cache, SMOKE, ["concat"], seeds=[0], root=tmp_path / "a",
                                            log=lambda *_: None))
    finally:
        torch.set_num_threads(threads)
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        logs: list[str] = []
        rows = metric_rows(ex.run_methods(cache, SMOKE, ["concat"], seeds=[0], root=tmp_path / "b", executor=pool,
                                          log=logs.append))
        again = ex.run_methods(cache, SMOKE, ["concat"], seeds=[0], root=tmp_path / "b", executor=pool,
                               log=logs.append)
    assert [{**r, "reused": False} for r in rows] == serial
    assert again["reused"].all() and "method runs: 1 of 1 finished (reused); nothing to submit" in logs


# ------------------------------------------------------------------------------------------------ checks
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"executor": "dask"}, "executor='dask' must be 'local', 'ray' or a concurrent.futures.Executor"),
        ({"executor": "local", "address": "10.0.0.5:6379"}, "address='10.0.0.5:6379' is for executor='ray'"),
        ({"gpus_per_run": -1}, "gpus_per_run=-1 must be a number of GPUs >= 0"),
        ({"gpus_per_run": 1.5}, "above 1 a run takes whole GPUs"),
        ({"runs_per_gpu": 0}, "runs_per_gpu=0 must be a positive integer"),
    ],
)
def test_check_executor_names_the_bad_value(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        ex.check_executor(**{"executor": "local", **kwargs})


@pytest.mark.parametrize("notebook", ["02", "04", "05", "06", "07"])
def test_the_sweep_notebooks_take_the_engine_and_refuse_bad_values(notebook):
    from test_experiments import _params

    ns = _params(notebook)
    assert (ns["executor"], ns["address"], ns["gpus_per_run"]) == ("local", None, None)
    ex.check_params(ns, notebook=notebook)
    for changes, message in (({"executor": "slurm"}, "executor='slurm' must be 'local'"),
                             ({"executor": "ray", "gpus_per_run": -0.5}, "gpus_per_run=-0.5 must be a number"),
                             ({"address": "head:6379"}, "address='head:6379' is for executor='ray'"),
                             ({"gpus_per_run": 0.25}, "gpus_per_run=0.25 is for executor='ray'")):
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
            ex.check_params(_params(notebook, **changes), notebook=notebook)
    ns = _params(notebook, executor="ray", gpus_per_run="0.25")
    if _ray_problem() is None:
        ex.check_params(ns, notebook=notebook)
        assert ns["gpus_per_run"] == 0.25  # papermill's text, resolved in place


# ------------------------------------------------------------------------------------------------ local faults
def _dies_once(cache, log, marker: str, seed: int) -> dict:
    """A job (module level: spawned workers import it by name) whose worker dies the first time it runs."""
    flag = Path(marker) / f"{seed}.died"
    if seed == 0 and not flag.exists():
        flag.write_text("x")
        os._exit(137)  # as the kernel's OOM killer or a SIGKILL would end it: no exception, no cleanup
    return {"seed": seed, "pid": os.getpid()}


def test_a_local_worker_that_dies_is_replaced_and_its_run_goes_again(tmp_path, monkeypatch):
    import multiprocessing

    from cluster_helper import tiny_cache

    monkeypatch.setenv("MMGAP_RUNS_DIR", str(tmp_path / "runs"))
    cache = tiny_cache(tmp_path / "cache")
    logs: list[str] = []
    jobs = [(_dies_once, {"marker": str(tmp_path), "seed": s}) for s in range(3)]
    out = ex.run_jobs(cache, jobs, workers=2, log=logs.append)
    assert [r["seed"] for r in out] == [0, 1, 2] and (tmp_path / "0.died").exists()
    assert any("a worker died" in line and "try 1 of 3" in line for line in logs), logs
    assert multiprocessing.active_children() == []


def test_local_gpu_workers_are_spread_over_the_gpus(monkeypatch):
    """On N GPUs the local pool starts runs_per_gpu workers per GPU; a job naming cuda:k, or one GPU, keeps one."""
    import torch

    from mmgap.experiments import workers

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    auto = [(_dies_once, {"device": "auto"})] * 3
    assert workers._gpu_slots(auto, 2, lambda *_: None) == [0, 1, 0, 1]
    assert workers._gpu_slots(auto, 1, lambda *_: None) == [0, 1]
    assert workers._gpu_slots([(_dies_once, {"device": "cuda:1"})], 4, lambda *_: None) is None
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert workers._gpu_slots(auto, 1, lambda *_: None) is None  # one GPU, one run: in-process, as before


class _PoolWithADeath:
    """A stand-in local pool: seed 0's first submission dies (BrokenProcessPool), every other run finishes."""

    def __init__(self, submitted: list[int]) -> None:
        self.submitted = submitted

    def submit(self, fn, job_fn, kwargs, cache_path, root):
        from concurrent.futures import Future
        from concurrent.futures.process import BrokenProcessPool

        seed = kwargs["seed"]
        self.submitted.append(seed)
        fut: Future = Future()
        if seed == 0 and self.submitted.count(0) == 1:
            fut.set_exception(BrokenProcessPool("a worker died"))
        else:
            fut.set_result(({"seed": seed}, [], []))
        return fut

    def shutdown(self, wait=True, cancel_futures=False):
        pass


def test_runs_that_finished_before_a_worker_died_are_not_run_again(monkeypatch):
    """The death is seen first (as_completed's order is not fixed); runs already done keep their answers."""
    from mmgap.experiments import workers

    submitted: list[int] = []
    monkeypatch.setattr(workers, "_executor", lambda *a, **k: (_PoolWithADeath(submitted), True))
    monkeypatch.setattr(workers, "_terminate", lambda pool: None)
    monkeypatch.setattr(workers, "as_completed", lambda fs: sorted(fs, key=lambda f: f.exception() is None))
    jobs = [(_dies_once, {"marker": "unused", "seed": s}) for s in range(3)]
    logs: list[str] = []
    got = dict(workers._submitted("cache", jobs, 2, None, "local", None, None, logs.append, "runs"))
    assert {i: out["seed"] for i, (out, _, _) in got.items()} == {0: 0, 1: 1, 2: 2}
    assert sorted(submitted) == [0, 0, 1, 2]  # only the run whose worker died went again
    assert any("1 unfinished runs go again" in line for line in logs), logs


def test_a_passed_executor_that_breaks_says_what_to_do(monkeypatch):
    from mmgap.experiments import workers

    monkeypatch.setattr(workers, "_executor", lambda *a, **k: (_PoolWithADeath([]), False))
    monkeypatch.setattr(workers, "as_completed", lambda fs: sorted(fs, key=lambda f: f.exception() is None))
    jobs = [(_dies_once, {"marker": "unused", "seed": s}) for s in range(2)]
    with pytest.raises(RuntimeError, match="the executor passed in broke"):
        list(workers._submitted("cache", jobs, 2, None, "local", None, None, lambda *_: None, "runs"))


@_cluster_test
def test_a_dask_executor_runs_the_sweep_as_docs_cluster_md_shows(tmp_path):
    pytest.importorskip("distributed", reason="Dask is a test dependency (the dev extra); install .[dev]")
    result = _in_namespace("dask", tmp_path)
    assert result["workers"] == 2
    strip = [{k: v for k, v in r.items() if k != "reused"} for r in result["serial"]]
    assert [{k: v for k, v in r.items() if k != "reused"} for r in result["dask"]] == strip  # bit-identical
    assert all(r["reused"] for r in result["again"])
    assert "method runs: 2 of 2 finished (reused); nothing to submit" in result["logs"]
