"""Smoke tests of benchmarks/: every script runs end to end with --quick and writes sane results (no timing
assertions), plus the pieces whose values can be checked by hand."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from mmgap.paths import REPO_ROOT

BENCH = REPO_ROOT / "benchmarks"


def _load(name: str):
    """Import benchmarks/<name>.py as a module (benchmarks/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[spec.name] = module  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def _run(script: str, *args: str, runs_dir: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    """Run a benchmark script as the README says (python benchmarks/x.py ...), one torch thread, temp runs dir."""
    env = {**os.environ, "MMGAP_RUNS_DIR": str(runs_dir), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(BENCH / f"{script}.py"), *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture
def in_process(tmp_path, monkeypatch):
    """Run a script's main(argv) in this process (no second torch import): temp runs dir, one torch thread."""
    monkeypatch.setenv("MMGAP_RUNS_DIR", str(tmp_path))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the 2-core machine is shared: oversubscribed OpenMP threads crawl
    yield lambda script, *args: _load(script).main(list(args))
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------- unit checks


def test_union_seconds_merges_overlaps_by_hand():
    gpu = _load("gpu_epoch")
    # [0,2] and [1,3] overlap -> [0,3] (3); [5,6] alone (1); [5.5,5.8] inside it; [10,10] empty
    assert gpu.union_seconds([(1, 3), (0, 2), (5, 6), (5.5, 5.8), (10, 10)]) == pytest.approx(4.0)
    assert gpu.union_seconds([]) == 0.0
    assert gpu.union_seconds([(0, 1), (1, 2)]) == pytest.approx(2.0)  # touching intervals: no gap, no double count


def test_reference_and_cache_hold_the_same_clips(tmp_path):
    """The reference decodes exactly what the cache holds (same frames, same features), in mmgap's Batch layout."""
    tt = _load("train_throughput")
    setup = tt.paper_setup(16, quick=True)
    clips = tt.write_clips(tmp_path, setup, seed=3)
    cache = clips.cache
    v, m = setup.protocol.visual, setup.preset.model
    assert cache.frames.shape == (16, v.frames_per_clip, v.frame_size, v.frame_size, 3)
    item = tt.ReferenceDataset(clips, setup)[5]
    # the on-the-fly feature of the reference equals the cached feature of the same clip (float16 storage)
    np.testing.assert_allclose(item["audio"][0].numpy(), cache.audio[5].astype(np.float32), atol=2e-2, rtol=2e-3)
    assert item["frames"].shape == (m.num_frames, 3, m.image_size, m.image_size)
    assert int(item["label"]) == int(cache.labels[5]) and int(item["index"]) == 5
    # the stored-size JPEG decodes to the cached frame (it was written from it, re-read after JPEG coding)
    from PIL import Image

    stored = np.asarray(Image.open(clips.dirs[5] / "frames_stored" / "frame_000.jpg").convert("RGB"))
    np.testing.assert_array_equal(stored, cache.frames[5, 0])
    # the source JPEG keeps CREMA-D's aspect (4:3 at quick size 60 x 45)
    assert Image.open(clips.dirs[5] / "frames" / "frame_000.jpg").size == setup.source_size


def test_square_matches_shorter_side_then_centre_crop():
    tt = _load("train_throughput")
    from PIL import Image

    img = Image.fromarray(np.arange(8 * 4 * 3, dtype=np.uint8).reshape(4, 8, 3))  # W 8, H 4
    out = tt.square(img, 2)
    assert out.shape == (2, 2, 3)
    # shorter side 4 -> 2 halves the image (4 x 2); BOX averages 2x2 blocks; the centre crop keeps columns 1-2
    full = np.asarray(img, dtype=np.float64)
    box = full.reshape(2, 2, 4, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(out, np.round(box[:, 1:3]), atol=1)


def test_time_batches_counts_samples_after_warmup():
    tt = _load("train_throughput")
    seen = []
    batches = iter([{"label": torch.zeros(n)} for n in (7, 5, 3, 2)])
    res = tt.time_batches(batches, lambda b: seen.append(len(b["label"])), warmup=1, timed=2,
                          device=torch.device("cpu"))
    assert seen == [7, 5, 3] and res["samples"] == 8 and res["batches"] == 2
    assert res["samples_per_s"] == pytest.approx(8 / res["seconds"])


# ---------------------------------------------------------------------------------------------- scripts run


def test_train_throughput_quick(tmp_path):
    proc = _run("train_throughput", "--quick", "--workers", "1", runs_dir=tmp_path)
    res = json.loads((tmp_path / "benchmarks" / "train_throughput.json").read_text())
    assert list(res["parts"]) == ["1", "1b", "2", "3"]
    for part in res["parts"].values():
        for side in ("reference", "mmgap"):
            assert part[side]["samples_per_s"] > 0 and part[side]["samples"] > 0
        assert part["ratio"] == pytest.approx(part["mmgap"]["samples_per_s"] / part["reference"]["samples_per_s"])
    assert res["parts"]["1"]["whole_step"] is False and res["parts"]["2"]["whole_step"] is True
    assert res["parts"]["1"]["reference_frames"] == "frames"
    assert res["parts"]["1b"]["reference_frames"] == "frames_stored"
    assert res["parts"]["2"]["shapes"]["name"] == "demo" and res["parts"]["3"]["shapes"]["name"] == "paper"
    assert "(1) data path alone" in proc.stdout and "ratio" in proc.stdout


def test_train_throughput_rejects_unknown_parts(capsys):
    tt = _load("train_throughput")
    with pytest.raises(SystemExit) as exc:
        tt.parse_args(["--parts", "1,4"])
    assert exc.value.code == 2 and "--parts must be" in capsys.readouterr().err
    assert tt.parse_args(["--parts", "3,1b"]).parts == ["1b", "3"]  # table order, whatever the order asked


def test_adaptive_overhead_quick(tmp_path, in_process):
    in_process("adaptive_overhead", "--quick")
    res = json.loads((tmp_path / "benchmarks" / "adaptive_overhead.json").read_text())
    assert set(res["sources"]) == {"eval", "train"}
    for r in res["sources"].values():
        assert r["refit_seconds"] > 0 and r["train_seconds_per_epoch"] > 0
        assert r["overhead_vs_training"] == pytest.approx(r["refit_seconds"] / r["train_seconds_per_epoch"])
    # after the first adaptive epoch, the "train" source refits from the recorded gaps, not an eval pass
    assert res["sources"]["train"]["refit_gap_source_used"] == ["train"]
    assert res["sources"]["eval"]["refit_gap_source_used"] == ["eval", "eval"]
    # the gap pass covers exactly the training rows of the (seed 0) random smoke-shaped cache
    from mmgap.config import get_preset

    cache = _load("adaptive_overhead").random_cache(get_preset("smoke"), 0)
    assert res["refit_parts"]["train_clips"] == len(cache.indices("train")) < 200


def test_gpu_epoch_quick(tmp_path, in_process, capsys):
    in_process("gpu_epoch", "--quick", "--device", "cpu")
    res = json.loads((tmp_path / "benchmarks" / "gpu_epoch.json").read_text())
    assert "No CUDA GPU" in capsys.readouterr().out
    assert res["clips"] == 16 and res["samples"] == 16  # two full batches of 8: one epoch
    assert res["samples_per_s"] == pytest.approx(res["samples"] / res["seconds_per_epoch"])
    assert res["gpu_busy_fraction"] is None  # not measured on a CPU
    assert res["eval_seconds"] > 0 and res["refit_seconds"] > 0 and res["eval_clips"] == [4, 4]


def _tiny_notebook(folder: Path) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('preset = "demo"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell('assert preset == "smoke", preset\nprint("ran", preset)')]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / "01_tiny.ipynb")
    nbformat.write(nb, folder / "02_second.ipynb")


def test_demo_walltime_quick_runs_first_notebook_only(tmp_path, in_process):
    _tiny_notebook(tmp_path / "nbs")
    assert in_process("demo_walltime", "--quick", "--notebooks", str(tmp_path / "nbs"), "--out",
                      str(tmp_path / "executed")) == 0
    res = json.loads((tmp_path / "benchmarks" / "demo_walltime.json").read_text())
    assert res["preset"] == "smoke" and list(res["notebooks"]) == ["01_tiny.ipynb"]
    assert res["notebooks"]["01_tiny.ipynb"]["status"] == "ok"  # the injected preset reached the notebook
    assert (tmp_path / "executed" / "01_tiny.ipynb").is_file()
    assert res["total_seconds"] == pytest.approx(res["notebooks"]["01_tiny.ipynb"]["seconds"], abs=0.01)


def test_demo_walltime_report_reads_an_earlier_run(tmp_path, in_process, capsys):
    data = {"preset": "demo", "notebooks": {"01_a.ipynb": {"seconds": 30.0, "status": "ok"},
                                            "02_b.ipynb": {"seconds": 90.0, "status": "failed"}}}
    (tmp_path / "walltimes.json").write_text(json.dumps(data))
    assert in_process("demo_walltime", "--report", str(tmp_path / "walltimes.json")) == 0
    out = capsys.readouterr().out
    assert "02_b.ipynb" in out and "failed" in out
    assert "120.0" in out and "2.00" in out  # total seconds and minutes, by hand: 30 + 90 = 120 s = 2 min
    assert in_process("demo_walltime", "--report", str(tmp_path / "missing.json")) == 2


def test_demo_walltime_fresh_gives_notebooks_empty_folders(tmp_path, in_process, monkeypatch):
    """--fresh passes a new data_dir and runs folder to the notebooks, and restores the environment afterwards."""
    nbs = tmp_path / "nbs"
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('preset = "demo"\ndata_dir = None')
    params.metadata["tags"] = ["parameters"]
    check = ("import os, pathlib\n"
             "assert data_dir is not None and not pathlib.Path(data_dir).exists(), data_dir\n"
             "assert 'mmgap_fresh_' in os.environ['MMGAP_RUNS_DIR'], os.environ['MMGAP_RUNS_DIR']")
    nb.cells = [params, nbformat.v4.new_code_cell(check)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbs.mkdir()
    nbformat.write(nb, nbs / "01_fresh.ipynb")
    before = os.environ["MMGAP_RUNS_DIR"]
    assert in_process("demo_walltime", "--quick", "--fresh", "--notebooks", str(nbs), "--out",
                      str(tmp_path / "executed")) == 0
    assert os.environ["MMGAP_RUNS_DIR"] == before
    res = json.loads((tmp_path / "benchmarks" / "demo_walltime.json").read_text())
    assert res["fresh"] is True and res["notebooks"]["01_fresh.ipynb"]["status"] == "ok"


def test_embedded_calibration_smoke(tmp_path, monkeypatch, capsys):
    """The calibration script runs end to end at the smoke preset and reports every target with a verdict."""
    monkeypatch.setenv("MMGAP_RUNS_DIR", str(tmp_path / "runs"))
    mod = _load("embedded_calibration")
    summary = mod.main(["--preset", "smoke", "--seeds", "0", "--data-dir", str(tmp_path / "data")])
    assert set(summary["verdicts"]) == set(mod.TARGETS)
    assert set(summary["verdicts"].values()) <= {"PASS", "FAIL"}
    row = summary["rows"][0]
    assert row["margin"] == pytest.approx(row["vis_only"] - row["concat_acc_v"])
    assert 0.0 <= row["auroc_w1"] <= 1.0 and np.isfinite(row["bic_drop"]) and 0.0 <= row["vis_only_hard"] <= 1.0
    assert (tmp_path / "runs" / "benchmarks" / "embedded_calibration.json").is_file()
    assert "(c) AUROC of w1" in capsys.readouterr().out


def test_gpu_check_quick_on_the_cpu_says_what_it_skipped(tmp_path, in_process, capsys):
    rows = in_process("gpu_check", "--quick", "--device", "cpu", "--baselines", "ogm_ge", "--out", str(tmp_path))
    checks = {c: (r, d) for c, r, d in rows}
    assert checks["environment"][0] == "CPU only"
    assert checks["compile run"][0] == "skipped" and checks["memory: resident vs plan"][0] == "skipped"
    assert checks["memory plan vs meta: CREMA-D"][0] == "ok"
    assert checks["baseline ogm_ge"][0] == "ok" and "gradients changed" in checks["baseline ogm_ge"][1]
    assert checks["resume CUDA-state -> cpu (emulated)"][0] == "ok"
    assert "cannot be restored on cpu" in checks["resume CUDA-state -> cpu (emulated)"][1]  # the note, in the table
    assert checks["posteriors CPU vs GPU"][0] == "ok"
    text = (tmp_path / "gpu_check.md").read_text()
    assert text.startswith("| check | result | detail |") and "skipped (need a GPU)" in capsys.readouterr().out


def test_gpu_check_surgery_probe_counts_changed_gradients():
    check = _load("gpu_check")
    model = torch.nn.Linear(2, 1)
    model(torch.ones(1, 2)).sum().backward()

    class Halve:
        def after_backward(self, trainer, epoch):
            for p in trainer.model.parameters():
                p.grad.mul_(0.5 if epoch else 1.0)

    strategy = Halve()
    counts = check.probe_surgery(strategy)
    trainer = type("T", (), {"model": model})()
    strategy.after_backward(trainer, 0)
    strategy.after_backward(trainer, 1)
    assert counts == {"steps": 2, "changed": 1}


def test_memory_plan_table_matches_the_meta_measurement(in_process, tmp_path):
    rows = in_process("memory_plan", "--datasets", "AVE", "--out", str(tmp_path / "m.json"))
    (r,) = rows
    assert r["plan_total"] == r["measured_total"] and r["plan_data"] == r["stage_data"] == r["finetune_data"]
    assert r["finetune_never_freed"] > 1.9 * r["old_check"]  # what the trainer held before issue 23
