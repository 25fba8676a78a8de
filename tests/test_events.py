"""TensorBoard event files in every run folder: read back, they hold exactly the history of metrics.json."""

from __future__ import annotations

import numpy as np
import pytest

from mmgap import events
from mmgap import experiments as ex
from mmgap.results import read_metrics

pytest.importorskip("tensorboard", reason="the TensorBoard writer needs the tensorboard package")


def test_history_fields_get_tensorboard_tags():
    tags = {k: events.scalar_tag(k) for k in ("train_uni_a", "train_lambda_t", "val_acc_v", "test_acc", "pi1",
                                             "mu0_raw", "mu1_raw", "auroc_w1", "lr", "train_seconds", "epoch")}
    assert tags == {"train_uni_a": "train/uni_a", "train_lambda_t": "train/lambda_t", "val_acc_v": "val/acc_v",
                    "test_acc": "test/acc", "pi1": "gap/pi1", "mu0_raw": "gap/mu0_raw", "mu1_raw": "gap/mu1_raw",
                    "auroc_w1": "gap/auroc_w1", "lr": "run/lr", "train_seconds": "run/train_seconds", "epoch": None}
    rows = [{"epoch": 3, "stage": "adaptive", "val_acc": 0.5, "pi1": float("nan"), "is_best": True, "mixture": {}}]
    assert events.history_scalars(rows) == [("val/acc", 3, 0.5)]  # no text, flags, dicts or NaN


def test_every_run_folder_holds_events_that_match_its_metrics_json(tmp_path, monkeypatch):
    from cluster_helper import SMOKE, tiny_cache

    monkeypatch.setenv("MMGAP_RUNS_DIR", str(tmp_path / "runs"))
    cache = tiny_cache(tmp_path / "cache")
    rows = ex.run_methods(cache, SMOKE, ["concat", "ours_prob"], seeds=[0], log=lambda *_: None)
    for run in rows["run_dir"]:
        history = read_metrics(run)["history"]
        found = events.read_events(run)
        expected = events.history_scalars(history)
        assert expected and {tag for tag, _, _ in expected} == set(found)
        for tag, step, value in expected:  # TensorBoard stores float32
            assert (step, float(np.float32(value))) in found[tag], (run, tag, step)
    ours = events.read_events(rows["run_dir"].iloc[1])
    # per-branch losses, accuracies per split and modality, λ_t, and the mixture at the refit
    assert {"train/fusion", "train/uni_a", "train/uni_v", "val/acc", "val/acc_a", "val/acc_v", "test/acc_a",
            "train/lambda_t", "gap/pi1", "gap/mu0_raw", "gap/mu1_raw"} <= set(ours)
    assert [step for step, _ in ours["gap/pi1"]] == [1]  # the one refit: the first adaptive epoch
    warmup = next((tmp_path / "runs" / "smoke" / "warmup").rglob("seed0"))
    assert "val/acc" in events.read_events(warmup)  # the shared warm-up too
